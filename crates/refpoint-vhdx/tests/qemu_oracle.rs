//! Oracle tests against QEMU: images made by `qemu-img create -f vhdx` and
//! written by `qemu-io` at offsets crossing block and chunk boundaries, read
//! by our chain and compared byte for byte with `qemu-img convert -O raw`.
#![allow(
    clippy::tests_outside_test_module,
    reason = "integration test crate: every item is a test"
)]

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::{run, tool_available};
use refpoint_vhdx::format::MIB;
use refpoint_vhdx::{Chain, ExtentSource, PayloadState};

const GIB: u64 = 1024 * MIB;

/// Creates a VHDX with qemu-img (`options` for `-o`) and applies
/// `writes` = (pattern byte, offset, length) with qemu-io.
fn qemu_image(
    dir: &Path,
    options: &str,
    size: u64,
    writes: &[(u8, u64, u64)],
) -> std::path::PathBuf {
    let path = dir.join("q.vhdx");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "vhdx", "-o", options])
        .arg(&path)
        .arg(size.to_string()));
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "vhdx"]);
    for (pattern, offset, length) in writes {
        cmd.arg("-c")
            .arg(format!("write -q -P {pattern:#x} {offset} {length}"));
    }
    run(cmd.arg(&path));
    path
}

/// The data segments `[start, end)` of a sparse file (SEEK_DATA/SEEK_HOLE);
/// everything else reads as zeros.
fn data_segments(file: &File) -> Vec<(u64, u64)> {
    use rustix::fs::{SeekFrom, seek};
    let len = file.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < len {
        let Ok(start) = seek(file, SeekFrom::Data(pos)) else {
            break; // ENXIO: only a hole remains
        };
        let end = seek(file, SeekFrom::Hole(start)).unwrap().min(len);
        out.push((start, end));
        pos = end;
    }
    out
}

/// qemu-img convert -O raw, then compares every byte of our read with the
/// raw file. A direct comparison instead of two SHA-256 digests: as strict,
/// and it lets holes of the raw file and our zero extents be compared
/// without reading gigabytes of zeros.
fn assert_reads_like_qemu(vhdx: &Path) {
    let raw_path = vhdx.with_extension("raw");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "vhdx", "-O", "raw"])
        .arg(vhdx)
        .arg(&raw_path));
    let raw = File::open(&raw_path).unwrap();
    let raw_data = data_segments(&raw);
    let chain = Chain::open(vhdx).unwrap();
    assert_eq!(raw.metadata().unwrap().len(), chain.virtual_size());
    let mut ours = vec![0u8; 8 << 20];
    let mut theirs = vec![0u8; 8 << 20];
    let mut compare = |at: u64, len: u64, zero: bool| {
        let mut done = 0;
        while done < len {
            let n = usize::try_from((len - done).min(ours.len() as u64)).unwrap();
            let off = at + done;
            raw.read_exact_at(&mut theirs[..n], off).unwrap();
            if zero {
                ours[..n].fill(0);
            } else {
                chain.read_at(off, &mut ours[..n]).unwrap();
            }
            assert!(
                ours[..n] == theirs[..n],
                "content differs in [{off:#x}, +{n:#x})"
            );
            done += n as u64;
        }
    };
    for extent in chain.map_range(0, chain.virtual_size()).unwrap() {
        let (start, end) = (extent.virtual_offset, extent.virtual_offset + extent.length);
        match extent.source {
            ExtentSource::Layer { .. } => compare(start, extent.length, false),
            // Zeros on our side: only the raw file's data inside the extent needs reading.
            ExtentSource::Zero => {
                for &(ds, de) in &raw_data {
                    let (s, e) = (ds.max(start), de.min(end));
                    if s < e {
                        compare(s, e - s, true);
                    }
                }
            }
        }
    }
    std::fs::remove_file(&raw_path).unwrap();
}

fn qemu_available() -> bool {
    tool_available("qemu-img") && tool_available("qemu-io")
}

#[test]
fn one_mib_blocks_over_4_gib_cross_block_and_chunk_boundaries() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 4 GiB + 5 MiB + 512: not a block multiple; chunk 0 ends at 4 GiB (CR = 4096).
    let size = 4 * GIB + 5 * MIB + 512;
    let writes = [
        (0x11, MIB - 1024, 2048),
        (0x22, 4 * GIB - 3 * MIB - 512, 6 * MIB + 1024),
        (0x33, size - 4096, 4096),
        (0x44, 7 * MIB, 512),
    ];
    let path = qemu_image(dir.path(), "block_size=1M", size, &writes);

    assert_reads_like_qemu(&path);
}

#[test]
fn thirty_two_mib_blocks_with_a_short_last_block() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 100 * MIB + 7 * 512;
    let writes = [
        (0xA5, 32 * MIB - 4096, 8192),
        (0x5A, 96 * MIB + 512, 4 * MIB + 6 * 512),
    ];
    let path = qemu_image(dir.path(), "block_size=32M", size, &writes);

    assert_reads_like_qemu(&path);
}

#[test]
fn thirty_two_mib_blocks_over_8_gib_cross_the_second_chunk_boundary() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // CR = 128 for 32 MiB blocks: chunks end at 4 GiB and 8 GiB.
    let size = 9 * GIB;
    let writes = [
        (0x66, 8 * GIB - 16 * MIB, 48 * MIB),
        (0x77, 4 * GIB - 512, 1024),
    ];
    let path = qemu_image(dir.path(), "block_size=32M", size, &writes);

    assert_reads_like_qemu(&path);
}

#[test]
fn automatic_block_size_and_unaligned_writes() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 300 * MIB + 4096;
    let writes = [
        (0x01, 0, 512),
        (0x02, 8 * MIB - 1536, 3 * 512),
        (0x03, 300 * MIB, 4096),
    ];
    let path = qemu_image(dir.path(), "log_size=2M", size, &writes);

    assert_reads_like_qemu(&path);
}

#[test]
fn not_present_blocks_without_block_state_zero_read_as_zeros() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let writes = [(0xC3, 3 * MIB + 100 * 512, 512)];
    let path = qemu_image(
        dir.path(),
        "block_size=1M,block_state_zero=off",
        20 * MIB,
        &writes,
    );

    assert_reads_like_qemu(&path);

    let file = refpoint_vhdx::VhdxFile::open(&path).unwrap();
    assert_eq!(file.payload_state(0).unwrap().0, PayloadState::NotPresent);
    assert_eq!(file.present_blocks().unwrap(), vec![3]);
}

#[test]
fn qemu_fixed_subformat_reads_like_qemu() {
    if !qemu_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let writes = [(0x99, 2 * MIB - 512, 1024)];
    let path = qemu_image(
        dir.path(),
        "subformat=fixed,block_size=2M",
        16 * MIB,
        &writes,
    );

    assert_reads_like_qemu(&path);
}
