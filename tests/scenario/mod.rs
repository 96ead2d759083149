//! The differential-export scenario shared by `tests/differential.rs` and
//! `tests/restore.rs`, driven through the `refpoint` binary: a VM with a
//! sparse 6 GiB disk (two 4 GiB chunks of 2 MiB blocks, so writes land past
//! the first chunk) and a 64 MiB disk (many overlapping writes), made by
//! qemu-img/qemu-io, then three reference points with seeded `refpoint
//! workload` writes between them, the content of every disk captured as a
//! raw image at each reference point, and oracles that read VHDX chains
//! (libvhdi) and raw images per 2 MiB block.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{refpoint, run_ok};

/// Output block size of every disk of the scenario (the base block size).
pub const BLOCK: u64 = 2 << 20;
/// Size of the large disk.
pub const BIG: u64 = 6 << 30;
/// Size of the small disk.
pub const SMALL: u64 = 64 << 20;
/// Bytes covered by one sector-bitmap chunk at 512-byte sectors and 2 MiB blocks.
pub const CHUNK: u64 = 4 << 30;
/// Digest text used for all-zero blocks by every oracle below.
pub const ZERO: &str = "zero";

/// The scenario after its three reference points.
pub struct Scenario {
    pub temp: tempfile::TempDir,
    pub host: PathBuf,
    /// VM GUID.
    pub vm: String,
    /// InstanceIDs of RP1, RP2, RP3.
    pub rps: Vec<String>,
    /// Disk InstanceIDs, in VM order (big, small).
    pub disks: Vec<String>,
    /// Raw images per reference point (index 0 = RP1), per disk.
    pub raws: Vec<Vec<PathBuf>>,
    /// Writes `(offset, length)` per epoch (0: RP1→RP2, 1: RP2→RP3), per disk.
    pub writes: Vec<Vec<Vec<(u64, u64)>>>,
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `refpoint …` that must succeed; returns its JSON.
pub fn ok(host: &Path, args: &[&str]) -> Value {
    let (code, json, err) = refpoint(host, args);
    assert_eq!(code, 0, "refpoint {args:?}: {err} {json}");
    json
}

fn qemu_io(path: &Path, pattern: u8, offset: u64, len: u64) {
    run_ok(
        Command::new("qemu-io")
            .args(["-f", "vhdx", "-c"])
            .arg(format!("write -q -P {pattern} {offset} {len}"))
            .arg(path),
    );
}

/// `qemu-img convert -O raw` (sparse) of a dynamic VHDX.
pub fn qemu_raw(vhdx: &Path, raw: &Path) {
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "vhdx", "-O", "raw"])
            .arg(vhdx)
            .arg(raw),
    );
}

fn writes_of(json: &Value) -> Vec<Vec<(u64, u64)>> {
    json["Disks"]
        .as_array()
        .expect("Disks")
        .iter()
        .map(|d| {
            d["Writes"]
                .as_array()
                .expect("Writes")
                .iter()
                .map(|w| {
                    (
                        w["offset"].as_u64().expect("offset"),
                        w["length"].as_u64().expect("length"),
                    )
                })
                .collect()
        })
        .collect()
}

fn raws_of(json: &Value) -> Vec<PathBuf> {
    json["Disks"]
        .as_array()
        .expect("Disks")
        .iter()
        .map(|d| PathBuf::from(d["RawImage"].as_str().expect("RawImage")))
        .collect()
}

/// Builds the scenario (see the module docs).
pub fn build(name: &str) -> Scenario {
    let temp = tempfile::tempdir().expect("tempdir");
    let host = temp.path().join("host");
    ok(&host, &["host", "init", s(&host)]);
    let big = temp.path().join("big.vhdx");
    let small = temp.path().join("small.vhdx");
    for (path, size) in [(&big, BIG), (&small, SMALL)] {
        run_ok(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "vhdx", "-o"])
                .arg(format!("subformat=dynamic,block_size={BLOCK}"))
                .arg(path)
                .arg(size.to_string()),
        );
    }
    qemu_io(&big, 0x11, 0, 3 << 20);
    qemu_io(&big, 0x12, CHUNK + (1 << 20), 2 << 20);
    qemu_io(&small, 0x21, 5 << 20, 1 << 20);
    qemu_io(&small, 0x22, 40 << 20, 7 << 20);
    let vm = ok(
        &host,
        &[
            "vm",
            "create",
            "--name",
            name,
            "--disk",
            s(&big),
            "--disk",
            s(&small),
        ],
    );
    let vm_guid = vm["Name"].as_str().expect("Name").to_owned();
    let disks: Vec<String> = vm["Disks"]
        .as_array()
        .expect("Disks")
        .iter()
        .map(|d| d["InstanceID"].as_str().expect("InstanceID").to_owned())
        .collect();
    let raw1_dir = temp.path().join("raw1");
    std::fs::create_dir(&raw1_dir).expect("mkdir");
    let raw1: Vec<PathBuf> = [("big", &big), ("small", &small)]
        .iter()
        .map(|(stem, vhdx)| {
            let raw = raw1_dir.join(format!("{stem}.raw"));
            qemu_raw(vhdx, &raw);
            raw
        })
        .collect();
    let mut rps = Vec::new();
    let mut raws = vec![raw1];
    let mut writes = Vec::new();
    for (epoch, seed) in [(2, "7"), (3, "8")] {
        rps.push(create_rp(&host, name));
        let dir = temp.path().join(format!("raw{epoch}"));
        let w = ok(
            &host,
            &[
                "workload",
                name,
                "--seed",
                seed,
                "--writes",
                "8",
                "--raw-capture",
                s(&dir),
            ],
        );
        writes.push(writes_of(&w));
        raws.push(raws_of(&w));
    }
    rps.push(create_rp(&host, name));
    Scenario {
        temp,
        host,
        vm: vm_guid,
        rps,
        disks,
        raws,
        writes,
    }
}

fn create_rp(host: &Path, vm: &str) -> String {
    ok(host, &["rp", "create", vm])["ResultingReferencePoint"]["InstanceID"]
        .as_str()
        .expect("InstanceID")
        .to_owned()
}

impl Scenario {
    /// A path inside the scenario's temporary directory.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    /// `refpoint export` of RP `target` (1-based), against RP `base` when
    /// given, into `<temp>/<to>`; returns (exit code, JSON, stderr).
    pub fn export(
        &self,
        target: usize,
        base: Option<usize>,
        to: &str,
        extra: &[&str],
    ) -> (i32, Value, String) {
        let dir = self.dir(to);
        let mut args = vec![
            "export",
            "--reference-point",
            &self.rps[target - 1],
            "--to",
            s(&dir),
        ];
        if let Some(b) = base {
            args.extend(["--base", &self.rps[b - 1]]);
        }
        args.extend_from_slice(extra);
        refpoint(&self.host, &args)
    }

    /// As [`Scenario::export`], asserting success; returns the exported files.
    pub fn export_ok(&self, target: usize, base: Option<usize>, to: &str) -> Vec<PathBuf> {
        let (code, json, err) = self.export(target, base, to, &[]);
        assert_eq!(code, 0, "export RP{target}: {err} {json}");
        exported_files(&json)
    }

    /// Every write of epoch `epoch` (0-based) to disk `disk`.
    pub fn epoch_writes(&self, epoch: usize, disk: usize) -> &[(u64, u64)] {
        &self.writes[epoch][disk]
    }
}

/// `ExportedLogFilePaths` of an export job's JSON.
pub fn exported_files(json: &Value) -> Vec<PathBuf> {
    json["Job"]["ExportedLogFilePaths"]
        .as_array()
        .expect("ExportedLogFilePaths")
        .iter()
        .map(|v| PathBuf::from(v.as_str().expect("path")))
        .collect()
}

/// The VM folder of an exported file (`<folder>/Virtual Hard Disks/<file>`).
pub fn vm_folder(file: &Path) -> PathBuf {
    file.parent()
        .and_then(Path::parent)
        .expect("VM folder")
        .to_path_buf()
}

/// Output blocks touched by `writes`, ascending.
pub fn blocks_touched(writes: &[(u64, u64)]) -> Vec<u64> {
    let mut blocks: Vec<u64> = writes
        .iter()
        .filter(|(_, l)| *l > 0)
        .flat_map(|(o, l)| (o / BLOCK)..=((o + l - 1) / BLOCK))
        .collect();
    blocks.sort_unstable();
    blocks.dedup();
    blocks
}

/// Per-block digest text of a raw image: [`ZERO`] for all-zero blocks,
/// else lower-case hex SHA-256. Only the file's data regions are read
/// (`SEEK_DATA`/`SEEK_HOLE`): blocks that lie in holes are zero without
/// reading gigabytes of them.
pub fn raw_digests(raw: &Path) -> Vec<String> {
    let script = "import os, sys, hashlib\n\
                  bs = int(sys.argv[1]); fd = os.open(sys.argv[2], os.O_RDONLY); n = os.fstat(fd).st_size\n\
                  data = set(); off = 0\n\
                  while off < n:\n    \
                  try: start = os.lseek(fd, off, os.SEEK_DATA)\n    \
                  except OSError: break\n    \
                  end = os.lseek(fd, start, os.SEEK_HOLE); data.update(range(start // bs, (end - 1) // bs + 1)); off = end\n\
                  z = bytes(bs); out = []\n\
                  for b in range((n + bs - 1) // bs):\n    \
                  if b not in data: out.append('zero'); continue\n    \
                  d = os.pread(fd, min(bs, n - b * bs), b * bs)\n    \
                  out.append('zero' if d == z[:len(d)] else hashlib.sha256(d).hexdigest())\n\
                  print('\\n'.join(out))\n";
    let out = run_ok(
        Command::new("python3")
            .args(["-c", script, &BLOCK.to_string()])
            .arg(raw),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The block digests an export lists for `disk` (a manifest disk record
/// of the export in VM folder `folder`), read from its digest sidecar, in
/// the same notation ([`ZERO`] for the digest of an all-zero block).
pub fn manifest_digests(folder: &Path, disk: &Value) -> Vec<String> {
    let zero = hex::encode(Sha256::digest(vec![0u8; BLOCK as usize]));
    let sidecar = disk["digests"]["path"].as_str().expect("digests.path");
    std::fs::read(folder.join(sidecar))
        .expect("read digest sidecar")
        .chunks(32)
        .map(|d| {
            let d = hex::encode(d);
            if d == zero { ZERO.to_owned() } else { d }
        })
        .collect()
}

/// Per-block digest text of a VHDX chain as libvhdi (pyvhdi) reads it;
/// `leaf_first` lists the files, each file's parent set with `set_parent`.
pub fn libvhdi_digests(leaf_first: &[PathBuf]) -> Vec<String> {
    let script = "import sys, hashlib, pyvhdi\n\
                  bs = int(sys.argv[1]); files = []\n\
                  for p in sys.argv[2:]:\n    f = pyvhdi.file(); f.open(p); files.append(f)\n\
                  for i in range(len(files) - 2, -1, -1): files[i].set_parent(files[i + 1])\n\
                  leaf = files[0]; n = leaf.get_media_size(); off = 0; z = bytes(bs)\n\
                  while off < n:\n    l = min(bs, n - off); d = leaf.read_buffer_at_offset(l, off)\n    \
                  print('zero' if d == z[:l] else hashlib.sha256(d).hexdigest()); off += l\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script, &BLOCK.to_string()]);
    cmd.args(leaf_first);
    let out = run_ok(&mut cmd);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The exported manifest of the VM folder holding `file`.
pub fn manifest_of(file: &Path) -> Value {
    folder_manifest(&vm_folder(file))
}

/// The manifest of an export's VM folder.
pub fn folder_manifest(folder: &Path) -> Value {
    let text = std::fs::read_to_string(folder.join("refpoint-export.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest JSON")
}

/// `disk info` block-state counts of the first layer of `file`'s chain.
pub fn block_states(host: &Path, file: &Path) -> Value {
    ok(host, &["disk", "info", s(file)])["Chain"][0]["BlockStates"].clone()
}
