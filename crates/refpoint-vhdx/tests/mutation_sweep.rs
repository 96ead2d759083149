//! Mutation sweep: flip bytes at many offsets of small valid images (every
//! on-disk structure: identifier, headers, region tables, log, metadata,
//! locator, BAT, sector bitmap) and check that opening and reading returns
//! `Ok` or `Err` — never a panic, never a hang.
#![allow(
    clippy::tests_outside_test_module,
    reason = "integration test crate: every item is a test"
)]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::image::{BAT_OFFSET, Image, LOG_OFFSET, METADATA_OFFSET, Spec};
use refpoint_vhdx::format::{BatEntry, MIB, payload_state};
use refpoint_vhdx::log::LogWrite;
use refpoint_vhdx::{Chain, ErrorKind};

/// Offsets covering each structure of an image built by `common::image`.
fn structure_offsets(img: &Image) -> Vec<u64> {
    let mut v: Vec<u64> = Vec::new();
    v.extend((0..520).step_by(7));
    for header in [0x10000u64, 0x20000] {
        v.extend(header..header + 80);
    }
    for table in [0x30000u64, 0x40000] {
        v.extend(table..table + 80);
    }
    v.extend((LOG_OFFSET..LOG_OFFSET + 8192).step_by(11));
    v.extend(METADATA_OFFSET..METADATA_OFFSET + 32 + 6 * 32);
    v.extend(METADATA_OFFSET + 0x10000..METADATA_OFFSET + 0x10000 + 300);
    v.extend(BAT_OFFSET..BAT_OFFSET + 64);
    let sb = Image::bat_entry_offset(img.bitmap_index(0));
    v.extend(sb..sb + 8);
    // A deterministic spread over the whole file as well.
    let len = img.bytes.len() as u64;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x % len);
    }
    v
}

/// Flips `offset` with each mask in turn, opens the chain at `leaf` and
/// reads; restores the byte. Returns how many mutated opens failed.
fn sweep(target: &Path, leaf: &Path, offsets: &[u64]) -> usize {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .unwrap();
    let mut failures = 0;
    for &offset in offsets {
        let mut original = [0u8; 1];
        file.read_exact_at(&mut original, offset).unwrap();
        for mask in [0x01u8, 0x80, 0xFF] {
            file.write_all_at(&[original[0] ^ mask], offset).unwrap();
            match Chain::open(leaf) {
                Err(e) => {
                    failures += 1;
                    assert!(!e.to_string().is_empty());
                }
                Ok(chain) => exercise(&chain),
            }
        }
        file.write_all_at(&original, offset).unwrap();
    }
    failures
}

/// Maps the whole disk and reads its first, a middle and its last MiB.
fn exercise(chain: &Chain) {
    let size = chain.virtual_size();
    let _ = chain.map_range(0, size);
    let mut buf = vec![0u8; usize::try_from(size.min(MIB)).unwrap()];
    let len = buf.len() as u64;
    for at in [0, (size / 2).saturating_sub(len / 2), size - len] {
        if let Err(e) = chain.read_at(at, &mut buf) {
            assert_ne!(
                e.kind(),
                ErrorKind::InvalidArgument,
                "in-range read refused: {e}"
            );
        }
    }
}

fn child_and_parent(dir: &Path) -> (Image, std::path::PathBuf) {
    let size = 8 * MIB;
    let mut parent = Image::new(Spec::dynamic(size, 1 << 20));
    parent.full_block(0, |i| (i % 7) as u8 + 1);
    parent.full_block(5, |i| (i % 5) as u8 + 1);
    let mut child = Image::new(Spec::child(
        size,
        1 << 20,
        parent.spec.data_write_guid,
        "p.vhdx",
    ));
    child.full_block(1, |_| 0xC1);
    child.partial_block(2, |_| 0xC2, &[3..9, 100..2000]);
    child.set_state(3, payload_state::ZERO);
    // A dirty log that marks block 6 FULLY_PRESENT at a block already in the file.
    let at = child.alloc(1);
    let mut sector = [0u8; 4096];
    let bat = usize::try_from(BAT_OFFSET).unwrap();
    sector.copy_from_slice(&child.bytes[bat..bat + 4096]);
    let entry = BatEntry::new(payload_state::FULLY_PRESENT, at)
        .0
        .to_le_bytes();
    sector[48..56].copy_from_slice(&entry);
    child.dirty_log(&[LogWrite::Data {
        file_offset: BAT_OFFSET,
        data: Box::new(sector),
    }]);
    parent.write_to(&dir.join("p.vhdx"));
    let leaf = dir.join("c.avhdx");
    child.write_to(&leaf);
    (child, leaf)
}

#[test]
fn mutated_differencing_child_with_dirty_log_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (child, leaf) = child_and_parent(dir.path());
    let chain = Chain::open(&leaf).expect("the unmutated chain opens");
    assert!(chain.leaf().log_replayed());
    drop(chain);

    let failures = sweep(&leaf, &leaf, &structure_offsets(&child));

    assert!(failures > 0, "some mutations must be detected");
}

#[test]
fn mutated_parent_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (_, leaf) = child_and_parent(dir.path());
    let parent_path = dir.path().join("p.vhdx");
    let parent = Image::new(Spec::dynamic(8 * MIB, 1 << 20));

    let failures = sweep(&parent_path, &leaf, &structure_offsets(&parent));

    assert!(failures > 0, "some mutations must be detected");
}
