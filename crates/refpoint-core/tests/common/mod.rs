//! Shared helpers of the integration tests: hosts in temporary directories,
//! VHDX files made and written by QEMU (an independent implementation), and
//! the Windows-made specimen chain.
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::process::Command;

use refpoint_core::Host;

/// A temporary directory with a fresh host in `<tmp>/host`.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub host: Host,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let host = Host::init(&tmp.path().join("host")).unwrap();
        Fixture { tmp, host }
    }

    /// `<tmp>/disks/<name>`, directory created.
    pub fn disk_path(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join("disks");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A dynamic VHDX of `size` bytes made by qemu-img.
    pub fn qemu_disk(&self, name: &str, size: &str) -> PathBuf {
        let p = self.disk_path(name);
        qemu_img_create(&p, size);
        p
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img create -f vhdx -o subformat=dynamic <path> <size>`.
pub fn qemu_img_create(path: &Path, size: &str) {
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "vhdx", "-o", "subformat=dynamic"])
        .arg(path)
        .arg(size));
}

/// `qemu-io -c 'write -P <pattern> <offset> <len>'`: an external writer
/// (changes the file's DataWriteGuid).
pub fn qemu_write(path: &Path, pattern: u8, offset: &str, len: &str) {
    run(Command::new("qemu-io")
        .args(["-f", "vhdx", "-c"])
        .arg(format!("write -P {pattern:#x} {offset} {len}"))
        .arg(path));
}

/// `qemu-io -r -c 'read -P <pattern> <offset> <len>'`: true if the range reads
/// back as `pattern` (qemu-io reports a mismatch as "Pattern verification failed").
pub fn qemu_reads_pattern(path: &Path, pattern: u8, offset: &str, len: &str) -> bool {
    let out = Command::new("qemu-io")
        .args(["-r", "-f", "vhdx", "-c"])
        .arg(format!("read -P {pattern:#x} {offset} {len}"))
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success() && !text.contains("verification failed") && text.contains("read ")
}

/// The specimen chain (Windows-made differencing child + synthetic parent),
/// decompressed into `dir`. Returns (child, parent).
pub fn specimen_chain(dir: &Path) -> (PathBuf, PathBuf) {
    const PARENT: &str = "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx";
    const CHILD: &str = "differencing.avhdx";
    let sources = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/specimens"),
        PathBuf::from("/work/shared/specimens/chain"),
    ];
    let src = sources
        .iter()
        .find(|s| s.join(format!("{CHILD}.gz")).exists())
        .expect("specimen chain (.gz) in fixtures/specimens or /work/shared/specimens/chain");
    std::fs::create_dir_all(dir).unwrap();
    for name in [PARENT, CHILD] {
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(src.join(format!("{name}.gz")))
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(dir.join(name), out.stdout).unwrap();
    }
    (dir.join(CHILD), dir.join(PARENT))
}

/// Names of the entries of `dir`, sorted (empty if it does not exist).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Checks a settings document with an independent XML parser (Python's
/// `xml.dom.minidom`: well-formed, root `REFPOINT.CONFIGURATION`), then
/// parses each `INSTANCE` with `Instance::from_xml`.
pub fn instances(xml: &str) -> Vec<refpoint_cim::Instance> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom as m; d = m.parseString(sys.stdin.buffer.read()); \
             r = d.documentElement; assert r.tagName == 'REFPOINT.CONFIGURATION', r.tagName; \
             print(len(r.getElementsByTagName('INSTANCE')))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(xml.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not well-formed: {}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<INSTANCE ") {
        let end = rest[start..].find("</INSTANCE>").unwrap() + start + "</INSTANCE>".len();
        found.push(refpoint_cim::Instance::from_xml(&rest[start..end]).unwrap());
        rest = &rest[end..];
    }
    assert_eq!(found.len(), count, "python and Instance::from_xml disagree");
    found
}

/// Reads `[offset, offset+len)` of the chain whose leaf is `leaf` with
/// dissect.hypervisor (which finds parents through the locator's relative
/// path) and returns the distinct byte values found, sorted.
///
/// libvhdi is not used for reading: it misreads NOT_PRESENT blocks of a
/// child whose sector bitmap block is SB_BLOCK_NOT_PRESENT (valid per
/// MS-VHDX §2.5.1.2), which is what a fresh differencing file holds.
pub fn dissect_distinct_bytes(leaf: &Path, offset: u64, len: u64) -> Vec<u8> {
    distinct(&dissect_read(leaf, offset, len))
}

/// Reads `[offset, offset+len)` of the chain whose leaf is `leaf` with
/// dissect.hypervisor.
pub fn dissect_read(leaf: &Path, offset: u64, len: u64) -> Vec<u8> {
    let script = "import sys\n\
        from dissect.hypervisor.disk.vhdx import VHDX\n\
        v = VHDX(sys.argv[1]); v.seek(int(sys.argv[2])); d = v.read(int(sys.argv[3]))\n\
        assert len(d) == int(sys.argv[3]), len(d)\n\
        sys.stdout.buffer.write(d)\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(leaf)
        .arg(offset.to_string())
        .arg(len.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dissect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn distinct(data: &[u8]) -> Vec<u8> {
    let mut seen = [false; 256];
    for b in data {
        seen[usize::from(*b)] = true;
    }
    (0..=255u8).filter(|b| seen[usize::from(*b)]).collect()
}

/// Whether libvhdi (`pyvhdi`) accepts `parent` as the parent of `child`
/// (`set_parent` checks the child's parent_linkage / identifier).
pub fn libvhdi_accepts_parent(child: &Path, parent: &Path) -> bool {
    let script = "import sys, pyvhdi\n\
        c = pyvhdi.file(); c.open(sys.argv[1])\n\
        p = pyvhdi.file(); p.open(sys.argv[2])\n\
        c.set_parent(p)\n";
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(child)
        .arg(parent)
        .output()
        .unwrap()
        .status
        .success()
}

/// Reads `[offset, offset+len)` through a refpoint-vhdx chain and returns the
/// distinct byte values found, sorted.
pub fn chain_distinct_bytes(chain: &refpoint_vhdx::Chain, offset: u64, len: usize) -> Vec<u8> {
    distinct(&chain_read(chain, offset, len))
}

/// Reads `[offset, offset+len)` through a refpoint-vhdx chain.
pub fn chain_read(chain: &refpoint_vhdx::Chain, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    chain.read_at(offset, &mut buf).unwrap();
    buf
}
