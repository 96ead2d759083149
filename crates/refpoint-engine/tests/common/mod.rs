//! Shared fixtures of the engine's integration tests: source images made by
//! `qemu-img`/`qemu-io` (an independent writer) or by `refpoint-vhdx` (for
//! differencing layers, which qemu cannot create), requests, and oracles.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use refpoint_engine::{
    DiskExport, EngineConfig, ExportControl, ExportRequest, Interrupted, ReferencePointIdentity,
    Sha256Digest, sha256,
};
use refpoint_vhdx::VhdxFile;
use uuid::Uuid;

pub const MIB: u64 = 1024 * 1024;
pub const MIBU: usize = 1024 * 1024;
pub const MIB32: u32 = 1024 * 1024;

/// VM GUID of every fixture request.
pub const VM_NAME: Uuid = Uuid::from_u128(0x6d1c_2d54_8a0e_4f5e_9f8c_21a3_44b6_0c7d);
/// VM folder name (with spaces, as Hyper-V names often have).
pub const ELEMENT_NAME: &str = "Test VM 01";
/// Reference point InstanceID.
pub const RP_ID: &str = "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D:RP-1";

/// Runs a command, panics with its stderr when it fails, returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img create -f vhdx` (dynamic) of `size` bytes and `block_mib` MiB blocks.
pub fn qemu_create(path: &Path, size: u64, block_mib: u64) {
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vhdx",
            "-o",
            &format!("subformat=dynamic,block_size={block_mib}M"),
            path.to_str().expect("utf-8 path"),
            &size.to_string(),
        ],
    );
}

/// `qemu-io -c "write -P <pattern> <offset> <len>"`.
pub fn qemu_write(path: &Path, pattern: u8, offset: u64, len: u64) {
    run(
        "qemu-io",
        &[
            "-f",
            "vhdx",
            "-c",
            &format!("write -P {pattern} {offset} {len}"),
            path.to_str().expect("utf-8 path"),
        ],
    );
}

/// The virtual disk content of a (non-differencing) VHDX as qemu reads it.
pub fn qemu_raw(path: &Path) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("disk.raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "vhdx",
            "-O",
            "raw",
            path.to_str().expect("utf-8 path"),
            raw.to_str().expect("utf-8 path"),
        ],
    );
    std::fs::read(raw).expect("read raw image")
}

/// The virtual disk content of a VHDX as libvhdi (pyvhdi) reads it.
pub fn libvhdi_raw(path: &Path) -> Vec<u8> {
    let script = "import sys, pyvhdi\n\
                  f = pyvhdi.file(); f.open(sys.argv[1]); n = f.get_media_size()\n\
                  out = bytearray()\n\
                  while len(out) < n: out += f.read_buffer(min(1 << 20, n - len(out)))\n\
                  sys.stdout.buffer.write(bytes(out))\n";
    let out = Command::new("python3")
        .args(["-c", script, path.to_str().expect("utf-8 path")])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "pyvhdi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The virtual disk content as dissect.hypervisor reads it.
pub fn dissect_raw(path: &Path) -> Vec<u8> {
    let script = "import sys\n\
                  from dissect.hypervisor.disk.vhdx import VHDX\n\
                  with open(sys.argv[1], 'rb') as fh:\n    \
                      v = VHDX(fh); sys.stdout.buffer.write(v.read(v.size))\n";
    let out = Command::new("python3")
        .args(["-c", script, path.to_str().expect("utf-8 path")])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "dissect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// SHA-256 of a file's bytes.
/// Hex SHA-256 of every block of disk `index` of an export, from its
/// manifest and digest sidecar.
pub fn block_digests(vm_folder: &Path, index: usize) -> Vec<String> {
    let text =
        std::fs::read_to_string(vm_folder.join("refpoint-export.json")).expect("read manifest");
    let manifest = refpoint_engine::manifest::Manifest::from_json(&text).expect("parse manifest");
    refpoint_engine::read_block_digests(vm_folder, &manifest.disks[index])
        .expect("block digests")
        .iter()
        .map(hex::encode)
        .collect()
}

pub fn file_sha(path: &Path) -> Sha256Digest {
    sha256(&std::fs::read(path).expect("read file"))
}

/// A disk of the request, with the chain's current DataWriteGuids.
pub fn disk(instance_id: &str, stem: &str, chain: &[PathBuf]) -> DiskExport {
    DiskExport {
        instance_id: instance_id.to_owned(),
        file_stem: stem.to_owned(),
        chain: chain.to_vec(),
        expected_data_write_guids: chain
            .iter()
            .map(|p| VhdxFile::open(p).expect("open source").data_write_guid())
            .collect(),
        changes: None,
    }
}

/// A full-export request of the fixture VM.
pub fn request(export_directory: &Path, disks: Vec<DiskExport>) -> ExportRequest {
    ExportRequest {
        export_directory: export_directory.to_path_buf(),
        vm_name: VM_NAME,
        vm_element_name: ELEMENT_NAME.to_owned(),
        reference_point: ReferencePointIdentity {
            instance_id: RP_ID.to_owned(),
            virtual_system_identifier: VM_NAME.hyphenated().to_string().to_uppercase(),
            rct_ids: disks
                .iter()
                .map(|d| format!("rct:{}", d.file_stem))
                .collect(),
        },
        base: None,
        settings_xml: "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\"></INSTANCE>\n"
            .to_owned(),
        disks,
        job_id: Uuid::new_v4(),
    }
}

/// Two threads, a 64 MiB pool.
pub fn config() -> EngineConfig {
    EngineConfig {
        threads: 2,
        buffer_pool_bytes: 64 * MIB,
    }
}

/// Names of the entries of a directory, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// An [`ExportControl`] that records progress and stops at checkpoint `stop_at`.
#[derive(Debug, Default)]
pub struct Recorder {
    pub total: AtomicU64,
    pub progress: AtomicU64,
    pub checkpoints: AtomicUsize,
    pub stop_at: Option<(usize, Interrupted)>,
}

impl ExportControl for Recorder {
    fn set_total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::SeqCst);
    }
    fn add_progress(&self, bytes: u64) {
        self.progress.fetch_add(bytes, Ordering::SeqCst);
    }
    fn checkpoint(&self) -> Result<(), Interrupted> {
        let n = self.checkpoints.fetch_add(1, Ordering::SeqCst) + 1;
        match self.stop_at {
            Some((at, why)) if n >= at => Err(why),
            _ => Ok(()),
        }
    }
}

/// An [`ExportControl`] that, at its `pause_at`-th checkpoint, reports that it
/// is paused and blocks until released (a suspended job).
#[derive(Debug)]
pub struct Pausing {
    pub pause_at: usize,
    pub checkpoints: AtomicUsize,
    pub state: Mutex<(bool, bool)>, // (paused, released)
    pub changed: std::sync::Condvar,
}

impl Pausing {
    pub fn new(pause_at: usize) -> Pausing {
        Pausing {
            pause_at,
            checkpoints: AtomicUsize::new(0),
            state: Mutex::new((false, false)),
            changed: std::sync::Condvar::new(),
        }
    }
    pub fn wait_paused(&self) {
        let mut s = self.state.lock().expect("lock");
        while !s.0 {
            s = self.changed.wait(s).expect("wait");
        }
    }
    pub fn release(&self) {
        self.state.lock().expect("lock").1 = true;
        self.changed.notify_all();
    }
}

impl ExportControl for Pausing {
    fn set_total(&self, _bytes: u64) {}
    fn add_progress(&self, _bytes: u64) {}
    fn checkpoint(&self) -> Result<(), Interrupted> {
        let n = self.checkpoints.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.pause_at {
            let mut s = self.state.lock().expect("lock");
            s.0 = true;
            self.changed.notify_all();
            while !s.1 {
                s = self.changed.wait(s).expect("wait");
            }
        }
        Ok(())
    }
}

/// The standard source: 17 MiB + 512 bytes, 4 MiB blocks (five blocks, the
/// last one 1 MiB + 512 bytes), written by qemu-io:
/// - block 0: 1 MiB of 0xab;
/// - block 1: 1 MiB of zeros then 4 KiB of 0x11 (stored, non-zero);
/// - block 2: 1 MiB of explicit zeros (allocated, all-zero → not stored);
/// - block 3: never written (absent);
/// - block 4: its last 512-byte sector 0x5c.
pub fn standard_source(dir: &Path) -> PathBuf {
    let path = dir.join("source disk.vhdx");
    qemu_create(&path, 17 * MIB + 512, 4);
    qemu_write(&path, 0xab, 0, MIB);
    qemu_write(&path, 0, 4 * MIB, MIB);
    qemu_write(&path, 0x11, 5 * MIB, 4096);
    qemu_write(&path, 0, 8 * MIB, MIB);
    qemu_write(&path, 0x5c, 17 * MIB, 512);
    path
}

/// SHA-256 (hex) of every `block`-byte block of a VHDX chain as libvhdi
/// (pyvhdi) reads it; `leaf_first` lists the files leaf first, each file's
/// parent given explicitly with `set_parent` (libvhdi's API for chains).
pub fn libvhdi_chain_digests(leaf_first: &[PathBuf], block: u64) -> Vec<String> {
    let script = "import sys, hashlib, pyvhdi\n\
                  bs = int(sys.argv[1]); files = []\n\
                  for p in sys.argv[2:]:\n    f = pyvhdi.file(); f.open(p); files.append(f)\n\
                  for i in range(len(files) - 2, -1, -1): files[i].set_parent(files[i + 1])\n\
                  leaf = files[0]; n = leaf.get_media_size(); off = 0\n\
                  while off < n:\n    l = min(bs, n - off); print(hashlib.sha256(leaf.read_buffer_at_offset(l, off)).hexdigest()); off += l\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &block.to_string()]);
    for p in leaf_first {
        cmd.arg(p);
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "pyvhdi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
