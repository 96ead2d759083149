//! Reproducible synthetic VMs for tests, demos and benchmarks.
//!
//! A fixture VM's disks are made by tools other than refpoint, so that the
//! export is tested on files refpoint did not write: `qemu-img create -f vhdx`
//! creates each disk and `qemu-io` fills it with writes at seeded offsets and
//! lengths. Then a recovery snapshot is taken (`CreateSnapshot`, type 32768)
//! and converted to a reference point (`ConvertToReferencePoint`), and more
//! seeded writes go through refpoint's own write path into the new active
//! leaves, the stand-in for a guest that keeps running after the backup
//! checkpoint. The same seed gives the same VM, byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use refpoint_core::Host;

use crate::error::{RefpointError, ReturnCode};

/// One write made into a disk: `length` bytes at virtual byte `offset`, every
/// byte equal to `pattern` (qemu-io `write -P`), or seeded random bytes when
/// `pattern` is `None` (writes made through refpoint).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskWrite {
    /// Virtual byte offset; a multiple of 512.
    pub offset: u64,
    /// Length in bytes; a multiple of 512.
    pub length: u64,
    /// Fill byte, or `None` for seeded random data.
    pub pattern: Option<u8>,
}

/// How the disks of a fixture are filled before the reference point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// `writes` seeded writes, one sector to three blocks long, anywhere on
    /// the disk: crosses block and chunk boundaries and overwrites.
    Scattered {
        /// Number of qemu-io writes per disk.
        writes: usize,
    },
    /// Whole-block writes into a seeded `percent` of the payload blocks (the
    /// benchmark VM: "data in about half the blocks").
    Blocks {
        /// Share of blocks written, 0..=100.
        percent: u8,
    },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    /// The VM's ElementName.
    pub name: String,
    /// Number of virtual disks.
    pub disks: usize,
    /// Virtual size of each disk in bytes (multiple of 512).
    pub size: u64,
    /// Seed of every offset, length and pattern.
    pub seed: u64,
    /// VHDX block size in bytes passed to qemu-img (power of two, 1–256 MiB).
    pub block_size: u32,
    /// Writes made by qemu-io before the reference point.
    pub fill: Fill,
    /// Writes made through refpoint into the new leaves after the reference point.
    pub writes_after: usize,
    /// Directory for the disk files (created if missing).
    pub directory: PathBuf,
}

/// What was built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FixtureOutcome {
    /// VM GUID (`Msvm_ComputerSystem.Name`).
    pub vm_name: String,
    /// VM ElementName.
    pub element_name: String,
    /// InstanceID of the reference point taken after the qemu-io writes.
    pub reference_point: String,
    /// Base VHDX of each disk, as qemu-img created it.
    pub base_disks: Vec<PathBuf>,
    /// Writes made before the reference point, per disk.
    pub writes_before: Vec<Vec<DiskWrite>>,
    /// Writes made through refpoint after it, per disk.
    pub writes_after: Vec<Vec<DiskWrite>>,
}

fn tool_error(what: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, what)
}

/// Runs a command and turns a non-zero exit into an error naming it and its stderr.
fn run(cmd: &mut Command) -> Result<(), RefpointError> {
    let out = cmd
        .output()
        .map_err(|e| tool_error(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(tool_error(format!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `qemu-img create -f vhdx -o subformat=dynamic,block_size=… PATH SIZE`.
///
/// # Errors
/// [`ReturnCode::Failed`] when qemu-img is missing or fails (message has its stderr).
pub fn qemu_create(path: &Path, size: u64, block_size: u32) -> Result<(), RefpointError> {
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "vhdx", "-o"])
        .arg(format!("subformat=dynamic,block_size={block_size}"))
        .arg(path)
        .arg(size.to_string()))
}

/// Applies `writes` (all with a pattern) with one `qemu-io` process.
///
/// # Errors
/// [`ReturnCode::Failed`] when qemu-io is missing or fails.
pub fn qemu_write(path: &Path, writes: &[DiskWrite]) -> Result<(), RefpointError> {
    for batch in writes.chunks(256) {
        let mut cmd = Command::new("qemu-io");
        cmd.args(["-f", "vhdx"]);
        for w in batch {
            let pattern = w.pattern.unwrap_or(0);
            cmd.arg("-c")
                .arg(format!("write -q -P {pattern} {} {}", w.offset, w.length));
        }
        cmd.arg(path);
        run(&mut cmd)?;
    }
    Ok(())
}

/// Seeded scattered writes: sector-aligned offsets anywhere, lengths from one
/// sector to three blocks, clipped to the disk.
pub fn scattered_writes(
    rng: &mut ChaCha8Rng,
    size: u64,
    block_size: u32,
    count: usize,
    patterned: bool,
) -> Vec<DiskWrite> {
    let sectors = size / 512;
    let max_len_sectors = (3 * u64::from(block_size) / 512).max(1);
    (0..count)
        .map(|_| {
            let start = rng.random_range(0..sectors);
            let len = rng.random_range(1..=max_len_sectors).min(sectors - start);
            DiskWrite {
                offset: start * 512,
                length: len * 512,
                pattern: patterned.then(|| rng.random_range(1..=255u8)),
            }
        })
        .collect()
}

/// Seeded whole-block writes into `percent` % of the blocks.
pub fn block_writes(
    rng: &mut ChaCha8Rng,
    size: u64,
    block_size: u32,
    percent: u8,
) -> Vec<DiskWrite> {
    let bs = u64::from(block_size);
    let mut writes = Vec::new();
    for b in 0..size.div_ceil(bs) {
        let chosen = rng.random_range(0..100u8) < percent;
        let pattern = rng.random_range(1..=255u8);
        if chosen {
            writes.push(DiskWrite {
                offset: b * bs,
                length: bs.min(size - b * bs),
                pattern: Some(pattern),
            });
        }
    }
    writes
}

/// The bytes of a refpoint-made write: seeded random data.
pub fn write_payload(rng: &mut ChaCha8Rng, write: &DiskWrite) -> Vec<u8> {
    match write.pattern {
        Some(p) => vec![p; usize::try_from(write.length).unwrap_or(0)],
        None => {
            let mut buf = vec![0u8; usize::try_from(write.length).unwrap_or(0)];
            rng.fill(&mut buf[..]);
            buf
        }
    }
}

/// Builds the fixture VM in `host` (see the module docs).
///
/// # Errors
/// qemu tool failures ([`ReturnCode::Failed`]); host errors with their code
/// (e.g. 32773 for a duplicate ElementName).
pub fn make_fixture(host: &mut Host, spec: &FixtureSpec) -> Result<FixtureOutcome, RefpointError> {
    std::fs::create_dir_all(&spec.directory)
        .map_err(|e| tool_error(format!("cannot create {}: {e}", spec.directory.display())))?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut base_disks = Vec::new();
    let mut writes_before = Vec::new();
    for i in 0..spec.disks {
        let path = spec.directory.join(format!("{}-disk{i}.vhdx", spec.name));
        qemu_create(&path, spec.size, spec.block_size)?;
        let writes = match spec.fill {
            Fill::Scattered { writes } => {
                scattered_writes(&mut rng, spec.size, spec.block_size, writes, true)
            }
            Fill::Blocks { percent } => block_writes(&mut rng, spec.size, spec.block_size, percent),
        };
        qemu_write(&path, &writes)?;
        base_disks.push(path);
        writes_before.push(writes);
    }
    let vm_guid = host.create_vm(&spec.name, &base_disks)?.name.to_string();
    let snapshot = host
        .create_snapshot(&vm_guid, refpoint_core::SNAPSHOT_TYPE_RECOVERY)?
        .instance_id()
        .to_string();
    let rp_id = host
        .convert_to_reference_point(&snapshot)?
        .instance_id
        .clone();
    let vm = host.vm(&vm_guid)?.clone();
    let mut writes_after = Vec::new();
    for disk in &vm.disks {
        let writes = scattered_writes(
            &mut rng,
            spec.size,
            spec.block_size,
            spec.writes_after,
            false,
        );
        let mut writer = host.open_disk_writer(&vm_guid, &disk.instance_id)?;
        for w in &writes {
            let data = write_payload(&mut rng, w);
            writer
                .write_at(w.offset, &data)
                .map_err(RefpointError::from)?;
        }
        writer.flush().map_err(RefpointError::from)?;
        drop(writer);
        writes_after.push(writes);
    }
    host.refresh(&vm_guid)?;
    Ok(FixtureOutcome {
        vm_name: vm.name.to_string().to_uppercase(),
        element_name: vm.element_name.clone(),
        reference_point: rp_id,
        base_disks,
        writes_before,
        writes_after,
    })
}

/// Parses a size like `256M`, `2G`, `4096`, `1T` (binary units) into bytes.
///
/// # Errors
/// [`ReturnCode::InvalidParameter`] naming the text.
pub fn parse_size(text: &str) -> Result<u64, RefpointError> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => 0,
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            RefpointError::new(
                ReturnCode::InvalidParameter,
                format!("size '{text}' is not a positive number with an optional K/M/G/T suffix"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_accepts_binary_suffixes() {
        assert_eq!(parse_size("256M").ok(), Some(256 << 20));
        assert_eq!(parse_size("2g").ok(), Some(2 << 30));
        assert_eq!(parse_size("4096").ok(), Some(4096));
    }

    #[test]
    fn parse_size_rejects_garbage_with_invalid_parameter() {
        let err = parse_size("12Q").err();
        assert_eq!(err.map(|e| e.code()), Some(ReturnCode::InvalidParameter));
    }

    #[test]
    fn scattered_writes_stay_inside_the_disk_and_are_sector_aligned() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let writes = scattered_writes(&mut rng, 64 << 20, 2 << 20, 500, true);
        assert!(writes.iter().all(|w| w.offset % 512 == 0
            && w.length % 512 == 0
            && w.length > 0
            && w.offset + w.length <= 64 << 20));
    }

    #[test]
    fn same_seed_gives_same_writes() {
        let a = scattered_writes(
            &mut ChaCha8Rng::seed_from_u64(9),
            1 << 30,
            1 << 21,
            50,
            true,
        );
        let b = scattered_writes(
            &mut ChaCha8Rng::seed_from_u64(9),
            1 << 30,
            1 << 21,
            50,
            true,
        );
        assert_eq!(a, b);
    }
}
