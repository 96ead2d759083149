//! Helpers shared by the integration tests: specimen decompression, hashing
//! of whole virtual disks (zero extents hashed without reading), external
//! oracle tools, and a synthetic VHDX image builder.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod image;

use std::path::{Path, PathBuf};
use std::process::Command;

use refpoint_vhdx::{Chain, ExtentSource};
use sha2::{Digest, Sha256};

/// `fixtures/specimens` of the workspace.
pub fn specimens_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/specimens")
}

/// Decompresses `fixtures/specimens/<name>.gz` into `dir/<name>` (gzip -dc).
pub fn gunzip_specimen(name: &str, dir: &Path) -> PathBuf {
    let src = specimens_dir().join(format!("{name}.gz"));
    let dst = dir.join(name);
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&src)
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip -dc {} failed", src.display());
    let tmp = dir.join(format!("{name}.partial"));
    std::fs::write(&tmp, out.stdout).expect("write decompressed specimen");
    std::fs::rename(&tmp, &dst).expect("rename decompressed specimen");
    dst
}

/// The decompressed specimen `name`, cached in cargo's per-test-target
/// scratch directory and decompressed again when its SHA-256 is not
/// `sha256` (the uncompressed hash from PROVENANCE.md).
pub fn cached_specimen(name: &str, sha256: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("specimens");
    std::fs::create_dir_all(&dir).expect("create specimen cache");
    let path = dir.join(name);
    if !path.is_file() || sha256_file(&path) != sha256 {
        gunzip_specimen(name, &dir);
        assert_eq!(
            sha256_file(&path),
            sha256,
            "{name}: decompressed specimen has the wrong hash"
        );
    }
    path
}

/// SHA-256 of a file's bytes, hex.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read file");
    hex::encode(Sha256::digest(&bytes))
}

/// SHA-256 of the whole virtual disk of `chain`, hex. Zero extents are fed
/// from a static zero buffer without reading; data extents are read in
/// pieces of at most 8 MiB.
pub fn sha256_chain(chain: &Chain) -> String {
    static ZEROS: [u8; 1 << 20] = [0u8; 1 << 20];
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 8 << 20];
    let size = chain.virtual_size();
    let window: u64 = 1 << 30;
    let mut pos = 0;
    while pos < size {
        let len = window.min(size - pos);
        for extent in chain.map_range(pos, len).expect("map_range") {
            match extent.source {
                ExtentSource::Zero => {
                    let mut left = extent.length;
                    while left > 0 {
                        let n = left.min(ZEROS.len() as u64);
                        hasher.update(&ZEROS[..usize::try_from(n).unwrap()]);
                        left -= n;
                    }
                }
                ExtentSource::Layer { layer, file_offset } => {
                    let mut done = 0;
                    while done < extent.length {
                        let n = (extent.length - done).min(buf.len() as u64);
                        let piece = refpoint_vhdx::Extent {
                            virtual_offset: extent.virtual_offset + done,
                            length: n,
                            source: ExtentSource::Layer {
                                layer,
                                file_offset: file_offset + done,
                            },
                        };
                        let dst = &mut buf[..usize::try_from(n).unwrap()];
                        chain.read_extent(&piece, dst).expect("read_extent");
                        hasher.update(&*dst);
                        done += n;
                    }
                }
            }
        }
        pos += len;
    }
    hex::encode(hasher.finalize())
}

/// SHA-256 of the virtual disk read with plain `read_at` in `piece`-byte reads.
pub fn sha256_chain_by_read_at(chain: &Chain, piece: usize) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; piece];
    let size = chain.virtual_size();
    let mut pos = 0u64;
    while pos < size {
        let n = usize::try_from((size - pos).min(piece as u64)).unwrap();
        chain.read_at(pos, &mut buf[..n]).expect("read_at");
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// Whether an external tool can be run; prints a notice when it cannot, so
/// a skipped oracle test is visible in the output.
pub fn tool_available(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("NOTICE: {tool} not available; oracle test skipped");
    }
    ok
}

/// Runs a command, panicking with its stderr on failure.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
