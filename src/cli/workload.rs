//! `refpoint workload VM --seed S --writes N [--raw-capture DIR]`: seeded
//! writes into a VM's active leaves, the stand-in for a running guest, and
//! `refpoint disk write PATH --offset O --length L --pattern BYTE`: one write
//! into any VHDX (e.g. a frozen layer, to simulate a modification outside
//! refpoint).
//!
//! Workload writes use [`fixture::scattered_writes`] (sector-aligned offsets
//! anywhere on the disk, lengths from one sector to three blocks of the
//! disk's base block size, so they cross block and chunk boundaries and
//! overwrite each other) with seeded random data ([`fixture::write_payload`]),
//! through `Host::open_disk_writer` (refpoint's crash-safe `VhdxWriter`),
//! then `Host::refresh` records the leaves' new `DataWriteGuid`s.
//!
//! `--raw-capture DIR` then writes `<DIR>/<disk>.raw` per disk: the current
//! virtual disk content as a sparse raw image (only extents the chain maps
//! to data are written, all-zero chunks are left as holes), named after the
//! disk's base VHDX like export file stems. Tests take one right before a
//! reference point to compare exports with.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use refpoint_core::VirtualDisk;
use refpoint_vhdx::{Chain, ExtentSource, VhdxWriter};
use serde_json::{Value, json};

use super::{Cli, Output, open};
use crate::error::{RefpointError, ReturnCode};
use crate::fixture::{self, DiskWrite};

/// Bytes read and written per step of a raw capture or a pattern write.
const CHUNK: u64 = 4 << 20;

/// `refpoint workload …`
#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// VM ElementName or GUID.
    pub vm: String,
    /// Seed of every offset, length and byte written.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Writes per disk.
    #[arg(long, default_value_t = 20)]
    pub writes: usize,
    /// After writing, capture each disk's content as a sparse raw image in this directory.
    #[arg(long = "raw-capture", value_name = "DIR")]
    pub raw_capture: Option<PathBuf>,
}

/// `refpoint disk write …`
#[derive(Debug, Args)]
pub struct DiskWriteArgs {
    /// VHDX or AVHDX to write (opened with refpoint's crash-safe writer).
    pub path: PathBuf,
    /// Virtual byte offset.
    #[arg(long)]
    pub offset: u64,
    /// Bytes to write.
    #[arg(long)]
    pub length: u64,
    /// Value of every byte written (0–255).
    #[arg(long)]
    pub pattern: u8,
}

fn failed(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, message)
}

/// Runs `workload`.
pub(super) fn run(cli: &Cli, out: &Output, args: &WorkloadArgs) -> Result<(), RefpointError> {
    let rp = open(cli)?;
    let mut host = rp.host();
    let vm = host.vm(&args.vm)?.clone();
    let vm_id = vm.name.to_string();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut written: Vec<Vec<DiskWrite>> = Vec::with_capacity(vm.disks.len());
    for disk in &vm.disks {
        let chain = disk.open_chain()?;
        let size = chain.virtual_size();
        let block_size = chain
            .layers()
            .last()
            .map_or(chain.geometry().block_size, |base| {
                base.geometry().block_size
            });
        drop(chain);
        let writes = fixture::scattered_writes(&mut rng, size, block_size, args.writes, false);
        let mut writer = host.open_disk_writer(&vm_id, &disk.instance_id)?;
        for w in &writes {
            let data = fixture::write_payload(&mut rng, w);
            writer.write_at(w.offset, &data)?;
        }
        writer.flush()?;
        written.push(writes);
    }
    host.refresh(&vm_id)?;
    let vm = host.vm(&vm_id)?.clone();
    let stems = file_stems(&vm.disks);
    let mut disks = Vec::with_capacity(vm.disks.len());
    for ((disk, writes), stem) in vm.disks.iter().zip(&written).zip(&stems) {
        let raw = match &args.raw_capture {
            Some(dir) => Some(capture_raw(&disk.open_chain()?, dir, stem)?),
            None => None,
        };
        disks.push(json!({
            "InstanceID": disk.instance_id,
            "HostResource": disk.active_leaf(),
            "DataWriteGuid": disk.chain.leaf().data_write_guid.to_string().to_uppercase(),
            "Writes": writes,
            "RawImage": raw,
        }));
    }
    let value = json!({"ReturnValue": 0, "VirtualSystem": vm_id.to_uppercase(), "Disks": disks});
    out.print(&value, || print_human(&value));
    Ok(())
}

fn print_human(value: &Value) {
    for disk in value["Disks"].as_array().into_iter().flatten() {
        println!(
            "{}: {} writes{}",
            disk["InstanceID"].as_str().unwrap_or_default(),
            disk["Writes"].as_array().map_or(0, Vec::len),
            disk["RawImage"]
                .as_str()
                .map_or_else(String::new, |p| format!(", raw image {p}"))
        );
    }
}

/// Names of the raw images: the stem of each disk's base VHDX, with the
/// disk's index appended when two bases share a name.
fn file_stems(disks: &[VirtualDisk]) -> Vec<String> {
    let stems: Vec<String> = disks
        .iter()
        .map(|d| {
            d.chain.base().path.file_stem().map_or_else(
                || d.disk_guid.to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
        })
        .collect();
    stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if stems.iter().filter(|t| *t == s).count() > 1 {
                format!("{s}-{i}")
            } else {
                s.clone()
            }
        })
        .collect()
}

/// Writes the content of `chain` as the sparse raw image `<dir>/<stem>.raw`
/// (replacing an older capture) and returns its path.
fn capture_raw(chain: &Chain, dir: &Path, stem: &str) -> Result<PathBuf, RefpointError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        failed(format!("cannot {what} '{}': {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let path = dir.join(format!("{stem}.raw"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io("create", &path, e))?;
    let size = chain.virtual_size();
    file.set_len(size).map_err(|e| io("size", &path, e))?;
    let mut buf = vec![0u8; usize::try_from(CHUNK).unwrap_or(1 << 22)];
    for extent in chain.map_range(0, size)? {
        if matches!(extent.source, ExtentSource::Zero) {
            continue;
        }
        let end = extent.virtual_offset.saturating_add(extent.length);
        let mut at = extent.virtual_offset;
        while at < end {
            let n = (end - at).min(CHUNK);
            let dst = buf
                .get_mut(..usize::try_from(n).unwrap_or(usize::MAX))
                .ok_or_else(|| failed(format!("raw capture chunk of {n} bytes")))?;
            chain.read_at(at, dst)?;
            if dst.iter().any(|b| *b != 0) {
                file.write_all_at(dst, at)
                    .map_err(|e| io("write", &path, e))?;
            }
            at += n;
        }
    }
    file.sync_all().map_err(|e| io("fsync", &path, e))?;
    Ok(path)
}

/// Runs `disk write`: one write of `length` bytes of `pattern` at `offset`
/// (in chunks of 4 MiB, each a crash-safe logged write).
pub(super) fn disk_write(out: &Output, args: &DiskWriteArgs) -> Result<(), RefpointError> {
    let mut writer = VhdxWriter::open(&args.path)?;
    let chunk = vec![args.pattern; usize::try_from(CHUNK.min(args.length)).unwrap_or(0)];
    let end = args.offset.checked_add(args.length).ok_or_else(|| {
        RefpointError::new(
            ReturnCode::InvalidParameter,
            format!(
                "--offset {} + --length {} overflows",
                args.offset, args.length
            ),
        )
    })?;
    let mut at = args.offset;
    while at < end {
        let n = (end - at).min(CHUNK);
        let data = chunk
            .get(..usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| failed(format!("write chunk of {n} bytes")))?;
        writer.write_at(at, data)?;
        at += n;
    }
    writer.flush()?;
    let guid = writer.data_write_guid().to_string().to_uppercase();
    drop(writer);
    out.print(
        &json!({"ReturnValue": 0, "Path": args.path, "DataWriteGuid": guid}),
        || {
            println!(
                "wrote {} bytes of {:#04x} at {} into {} (DataWriteGuid {guid})",
                args.length,
                args.pattern,
                args.offset,
                args.path.display()
            );
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn capture_of_a_qemu_disk_is_sparse_and_equals_qemu_raw() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vhdx = tmp.path().join("d.vhdx");
        fixture::qemu_create(&vhdx, 64 << 20, 2 << 20).expect("create");
        fixture::qemu_write(
            &vhdx,
            &[DiskWrite {
                offset: 5 << 20,
                length: 3 << 20,
                pattern: Some(0x5a),
            }],
        )
        .expect("write");
        let chain = Chain::open(&vhdx).expect("chain");

        let raw = capture_raw(&chain, &tmp.path().join("raw"), "d").expect("capture");

        let expected = tmp.path().join("qemu.raw");
        let status = std::process::Command::new("qemu-img")
            .args(["convert", "-f", "vhdx", "-O", "raw"])
            .arg(&vhdx)
            .arg(&expected)
            .status()
            .expect("qemu-img");
        assert!(status.success());
        assert_eq!(
            std::fs::read(&raw).expect("raw"),
            std::fs::read(&expected).expect("qemu raw")
        );
        let allocated = std::os::unix::fs::MetadataExt::blocks(
            &File::open(&raw).expect("open").metadata().expect("meta"),
        ) * 512;
        assert!(
            allocated < 8 << 20,
            "only the written 3 MiB (plus fs slack) are allocated: {allocated}"
        );
    }
}
