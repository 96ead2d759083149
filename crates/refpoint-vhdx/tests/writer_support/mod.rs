//! Oracles and helpers shared by the writer tests (`tests/writer_*.rs`):
//! qemu-img / qemu-io, libvhdi (python `pyvhdi`), our own chain reader, and
//! a seeded random generator. A missing oracle tool fails the test loudly.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::Command;

use refpoint_vhdx::Chain;

/// 1 MiB in bytes, as the size unit of the tests.
pub const MIB: u64 = 1 << 20;
/// 1 MiB as `u32` (block sizes).
pub const MIB32: u32 = 1 << 20;
/// 1 MiB as `usize` (buffer lengths).
pub const MIBU: usize = 1 << 20;

/// Runs a command, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (oracle tool missing?): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// `qemu-img check` must report no errors.
pub fn qemu_check(path: &Path) {
    let out = run("qemu-img", &["check", "-f", "vhdx", s(path)]);
    assert!(
        out.contains("No errors were found"),
        "qemu-img check {}: {out}",
        path.display()
    );
}

/// The whole virtual disk as qemu reads it (`qemu-img convert -O raw`).
pub fn qemu_raw(path: &Path) -> Vec<u8> {
    let raw = path.with_extension("qemu.raw");
    run(
        "qemu-img",
        &["convert", "-f", "vhdx", "-O", "raw", s(path), s(&raw)],
    );
    let bytes = std::fs::read(&raw).expect("read converted raw");
    std::fs::remove_file(&raw).expect("remove converted raw");
    bytes
}

/// `qemu-io -c <command>` on a VHDX opened read-write (the command may write).
pub fn qemu_io(path: &Path, command: &str) {
    run("qemu-io", &["-f", "vhdx", "-c", command, s(path)]);
}

/// Bytes `[offset, offset + length)` of the virtual disk of `child` as
/// libvhdi reads it, with `parent` attached when given.
pub fn libvhdi_read(child: &Path, parent: Option<&Path>, offset: u64, length: u64) -> Vec<u8> {
    let out = child.with_extension("libvhdi.bin");
    let script = r#"
import sys, pyvhdi
child, parent, offset, length, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
f = pyvhdi.file(); f.open(child)
if parent:
    p = pyvhdi.file(); p.open(parent); f.set_parent(p)
with open(out, "wb") as o:
    done = 0
    while done < length:
        n = min(8 << 20, length - done)
        o.write(f.read_buffer_at_offset(n, offset + done))
        done += n
"#;
    let parent = parent.map_or("", s);
    run(
        "python3",
        &[
            "-c",
            script,
            s(child),
            parent,
            &offset.to_string(),
            &length.to_string(),
            s(&out),
        ],
    );
    let bytes = std::fs::read(&out).expect("read libvhdi output");
    std::fs::remove_file(&out).expect("remove libvhdi output");
    bytes
}

/// Bytes `[offset, offset + length)` of the chain whose leaf is `leaf`, as
/// refpoint's reader reads it.
pub fn reader_read(leaf: &Path, offset: u64, length: u64) -> Vec<u8> {
    let chain = Chain::open(leaf).expect("our reader opens the chain");
    let mut buf = vec![0u8; usize::try_from(length).expect("test lengths fit usize")];
    chain.read_at(offset, &mut buf).expect("our reader reads");
    buf
}

/// A file name inside `dir`.
pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// xorshift64*: a small seeded generator, so failures reproduce.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Index of the first differing byte, for readable assertion messages.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// Asserts two disk images are equal, naming the first differing offset.
pub fn assert_same(what: &str, actual: &[u8], expected: &[u8]) {
    assert!(
        first_difference(actual, expected).is_none(),
        "{what}: differs at byte {:?} (lengths {} / {})",
        first_difference(actual, expected),
        actual.len(),
        expected.len()
    );
}
