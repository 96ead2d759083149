//! VhdxWriter::write_at against qemu-img / qemu-io, libvhdi and our reader:
//! seeded random write sequences on dynamic and differencing files, files
//! written by qemu first, 4096-byte sectors, identity GUIDs, refused requests.
// Integration tests are their own crate: the lint meant for unit tests in
// library code does not apply here.
#![allow(clippy::tests_outside_test_module)]

mod writer_support;

use std::path::{Path, PathBuf};

use refpoint_vhdx::error::ErrorDetail;
use refpoint_vhdx::write::WriteError;
use refpoint_vhdx::{
    BuilderKind, Chain, CreateOptions, ErrorKind, ImageBuilder, PayloadState, VhdxFile, VhdxWriter,
    create_differencing, create_dynamic,
};
use writer_support::*;

fn options(virtual_size: u64, block_size: u32, logical_sector_size: u32) -> CreateOptions {
    CreateOptions {
        block_size,
        logical_sector_size,
        ..CreateOptions::new(virtual_size)
    }
}

fn write_error(err: &refpoint_vhdx::VhdxError) -> Option<&WriteError> {
    match err.detail() {
        ErrorDetail::Other(e) => e.downcast_ref::<WriteError>(),
        _ => None,
    }
}

/// A random sector-aligned write inside `[window_start, window_start + window)`:
/// from one sector to three blocks, biased towards block boundaries.
fn random_write(
    rng: &mut Rng,
    window_start: u64,
    window: u64,
    block: u64,
    sector: u64,
) -> (u64, Vec<u8>) {
    let max_len = (3 * block).min(window);
    let len = match rng.below(4) {
        0 => sector * (1 + rng.below(8)),
        1 => block,
        _ => sector * (1 + rng.below(max_len / sector)),
    };
    let len = len.min(window);
    let slots = (window - len) / sector + 1;
    let mut offset = window_start + rng.below(slots) * sector;
    if rng.below(3) == 0 {
        // Straddle a block boundary.
        let boundary = window_start + (rng.below(window / block) + 1) * block;
        offset = boundary
            .saturating_sub(len / 2 / sector * sector)
            .clamp(window_start, window_start + window - len);
    }
    (offset, rng.bytes(usize::try_from(len).unwrap()))
}

fn apply(expected: &mut [u8], base: u64, offset: u64, data: &[u8]) {
    let at = usize::try_from(offset - base).unwrap();
    expected[at..at + data.len()].copy_from_slice(data);
}

#[test]
fn random_writes_to_a_dynamic_disk_read_back_identically_through_qemu_and_our_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");
    let size = 40 * MIB;
    create_dynamic(&path, &options(size, MIB32, 512)).unwrap();
    let mut expected = vec![0u8; usize::try_from(size).unwrap()];
    let mut rng = Rng::new(0x5EED_0001);
    let mut writer = VhdxWriter::open(&path).unwrap();

    for _ in 0..60 {
        let (offset, data) = random_write(&mut rng, 0, size, MIB, 512);
        writer.write_at(offset, &data).unwrap();
        apply(&mut expected, 0, offset, &data);
    }
    writer.flush().unwrap();

    qemu_check(&path);
    assert_same("qemu-img convert", &qemu_raw(&path), &expected);
    assert_same("our reader", &reader_read(&path, 0, size), &expected);
}

#[test]
fn writes_across_the_4_gib_chunk_boundary_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.vhdx");
    let size = (4 << 30) + 64 * MIB;
    create_dynamic(&path, &options(size, MIB32, 512)).unwrap();
    let window_start = (4 << 30) - 16 * MIB;
    let window = 32 * MIB;
    let mut expected = vec![0u8; usize::try_from(window).unwrap()];
    let mut rng = Rng::new(0x5EED_0002);
    let mut writer = VhdxWriter::open(&path).unwrap();

    writer.write_at((4 << 30) - 4096, &[0xC4; 8192]).unwrap();
    apply(&mut expected, window_start, (4 << 30) - 4096, &[0xC4; 8192]);
    for _ in 0..20 {
        let (offset, data) = random_write(&mut rng, window_start, window, MIB, 512);
        writer.write_at(offset, &data).unwrap();
        apply(&mut expected, window_start, offset, &data);
    }
    drop(writer);

    qemu_check(&path);
    let raw = dir.path().join("big.raw");
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "vhdx",
            "-O",
            "raw",
            path.to_str().unwrap(),
            raw.to_str().unwrap(),
        ],
    );
    let mut qemu_window = vec![0u8; expected.len()];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&raw).unwrap(),
        &mut qemu_window,
        window_start,
    )
    .unwrap();
    assert_same("qemu-img convert", &qemu_window, &expected);
    assert_same(
        "our reader",
        &reader_read(&path, window_start, window),
        &expected,
    );
}

/// A 24 MiB parent with random content and a differencing child of it.
fn parent_and_child(
    dir: &Path,
    logical_sector_size: u32,
    child_block: u32,
) -> (PathBuf, PathBuf, Vec<u8>) {
    let parent = dir.join("base.vhdx");
    let child = dir.join("child.avhdx");
    let size = 24 * MIB;
    let opts = options(size, 2 * MIB32, logical_sector_size);
    let base = Rng::new(0xBA5E).bytes(usize::try_from(size).unwrap());
    let builder = ImageBuilder::create(&parent, &opts, BuilderKind::Dynamic).unwrap();
    for (block, data) in (0u64..).zip(base.chunks(2 * MIBU)) {
        builder.write_block(block, data).unwrap();
    }
    builder.finish().unwrap();
    create_differencing(&child, &parent, Some(child_block)).unwrap();
    (parent, child, base)
}

#[test]
fn random_writes_to_a_differencing_disk_read_back_identically_through_libvhdi_and_our_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child, mut expected) = parent_and_child(dir.path(), 512, MIB32);
    let size = 24 * MIB;
    let mut rng = Rng::new(0x5EED_0003);
    let mut writer = VhdxWriter::open(&child).unwrap();

    for _ in 0..50 {
        let (offset, data) = random_write(&mut rng, 0, size, MIB, 512);
        writer.write_at(offset, &data).unwrap();
        apply(&mut expected, 0, offset, &data);
    }
    drop(writer);

    let file = VhdxFile::open(&child).unwrap();
    let states: Vec<PayloadState> = (0..24).map(|b| file.payload_state(b).unwrap().0).collect();
    assert!(
        states.contains(&PayloadState::PartiallyPresent),
        "{states:?}"
    );
    assert!(states.contains(&PayloadState::FullyPresent), "{states:?}");
    assert_same("our reader", &reader_read(&child, 0, size), &expected);
    assert_same(
        "libvhdi",
        &libvhdi_read(&child, Some(&parent), 0, size),
        &expected,
    );
}

#[test]
fn partial_write_to_a_differencing_block_keeps_the_parent_sectors_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child, mut expected) = parent_and_child(dir.path(), 512, 2 * MIB32);
    let mut writer = VhdxWriter::open(&child).unwrap();

    writer.write_at(3 * MIB + 512, &[0xD1; 1024]).unwrap();
    writer.write_at(3 * MIB + 8192, &[0xD2; 512]).unwrap();
    drop(writer);

    apply(&mut expected, 0, 3 * MIB + 512, &[0xD1; 1024]);
    apply(&mut expected, 0, 3 * MIB + 8192, &[0xD2; 512]);
    let file = VhdxFile::open(&child).unwrap();
    let bits = file.sector_bitmap(1).unwrap();
    let set: Vec<usize> = bits
        .iter()
        .enumerate()
        .filter(|(_, b)| **b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        set,
        vec![2049, 2050, 2064],
        "sectors of block 1 (2 MiB = 4096 sectors) written"
    );
    assert_same("our reader", &reader_read(&child, 0, 24 * MIB), &expected);
    assert_same(
        "libvhdi",
        &libvhdi_read(&child, Some(&parent), 0, 24 * MIB),
        &expected,
    );
}

#[test]
fn logical_sector_4096_disks_accept_writes_read_back_by_our_reader_and_libvhdi() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child, mut expected) = parent_and_child(dir.path(), 4096, MIB32);
    let mut dynamic_expected = vec![0u8; 8 << 20];
    let dynamic = dir.path().join("d4k.vhdx");
    create_dynamic(&dynamic, &options(8 * MIB, MIB32, 4096)).unwrap();
    let mut rng = Rng::new(0x5EED_0004);

    let mut child_writer = VhdxWriter::open(&child).unwrap();
    let mut dynamic_writer = VhdxWriter::open(&dynamic).unwrap();
    for _ in 0..20 {
        let (offset, data) = random_write(&mut rng, 0, 24 * MIB, MIB, 4096);
        child_writer.write_at(offset, &data).unwrap();
        apply(&mut expected, 0, offset, &data);
        let (offset, data) = random_write(&mut rng, 0, 8 * MIB, MIB, 4096);
        dynamic_writer.write_at(offset, &data).unwrap();
        apply(&mut dynamic_expected, 0, offset, &data);
    }
    drop((child_writer, dynamic_writer));

    assert_same(
        "our reader, child",
        &reader_read(&child, 0, 24 * MIB),
        &expected,
    );
    assert_same(
        "libvhdi, child",
        &libvhdi_read(&child, Some(&parent), 0, 24 * MIB),
        &expected,
    );
    assert_same(
        "our reader, dynamic",
        &reader_read(&dynamic, 0, 8 * MIB),
        &dynamic_expected,
    );
    assert_same(
        "libvhdi, dynamic",
        &libvhdi_read(&dynamic, None, 0, 8 * MIB),
        &dynamic_expected,
    );
}

#[test]
fn file_written_by_qemu_then_by_us_compares_equal_with_qemu_img_compare() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.vhdx");
    let p = path.to_str().unwrap();
    // qemu's own layout: BAT before metadata, Required = 0, new blocks in state ZERO.
    run(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "vhdx",
            "-o",
            "subformat=dynamic,block_size=1M",
            p,
            "16M",
        ],
    );
    qemu_io(&path, "write -P 0x11 1M 3M");
    qemu_io(&path, "write -P 0x22 9M 512");
    let mut expected = vec![0u8; 16 << 20];
    expected[1 << 20..4 << 20].fill(0x11);
    expected[9 << 20..(9 << 20) + 512].fill(0x22);
    let mut rng = Rng::new(0x5EED_0005);

    let mut writer = VhdxWriter::open(&path).unwrap();
    for (offset, len) in [
        (2 * MIB + 512, 4096u64),
        (3 * MIB - 512, MIB),
        (9 * MIB + 4096, 512),
        (15 * MIB, MIB),
    ] {
        let data = rng.bytes(usize::try_from(len).unwrap());
        writer.write_at(offset, &data).unwrap();
        apply(&mut expected, 0, offset, &data);
    }
    drop(writer);

    qemu_check(&path);
    let raw = dir.path().join("expected.raw");
    std::fs::write(&raw, &expected).unwrap();
    run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "vhdx",
            "-F",
            "raw",
            p,
            raw.to_str().unwrap(),
        ],
    );
    assert_same("our reader", &reader_read(&path, 0, 16 * MIB), &expected);
}

#[test]
fn hundreds_of_writes_wrap_the_log_and_stay_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrap.vhdx");
    let size = 160 * MIB;
    create_dynamic(&path, &options(size, MIB32, 512)).unwrap();
    let mut expected = vec![0u8; usize::try_from(size).unwrap()];
    let mut writer = VhdxWriter::open(&path).unwrap();

    // Each allocation logs a 2-sector entry: 150 of them go round the 256-sector log.
    for block in 0..150u64 {
        let data = [u8::try_from(block % 251).unwrap() + 1; 4096];
        writer.write_at(block * MIB + 8192, &data).unwrap();
        apply(&mut expected, 0, block * MIB + 8192, &data);
    }
    drop(writer);

    qemu_check(&path);
    assert_same("qemu-img convert", &qemu_raw(&path), &expected);
}

#[test]
fn open_renews_file_write_guid_and_first_write_renews_data_write_guid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 512)).unwrap();
    let before = VhdxFile::open(&path).unwrap();

    let mut writer = VhdxWriter::open(&path).unwrap();
    let after_open = VhdxFile::open(&path).unwrap();
    writer.write_at(0, &[]).unwrap();
    let after_empty_write = VhdxFile::open(&path).unwrap();
    writer.write_at(0, &[1; 512]).unwrap();
    let after_write = VhdxFile::open(&path).unwrap();

    assert_ne!(after_open.file_write_guid(), before.file_write_guid());
    assert_eq!(after_open.data_write_guid(), before.data_write_guid());
    assert_eq!(
        after_empty_write.data_write_guid(),
        before.data_write_guid()
    );
    assert_ne!(after_write.data_write_guid(), before.data_write_guid());
    assert_eq!(after_write.data_write_guid(), writer.data_write_guid());
    assert!(!after_write.log_replayed());
}

#[test]
fn writing_a_parent_breaks_its_child_link() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child, _) = parent_and_child(dir.path(), 512, MIB32);

    VhdxWriter::open(&parent)
        .unwrap()
        .write_at(0, &[9; 512])
        .unwrap();

    let err = Chain::open(&child).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ChainBroken);
}

#[test]
fn unaligned_offset_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 4096)).unwrap();
    let mut writer = VhdxWriter::open(&path).unwrap();

    let err = writer.write_at(512, &[0; 4096]).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        write_error(&err),
        Some(&WriteError::Unaligned {
            virtual_offset: 512,
            length: 4096,
            logical_sector_size: 4096
        })
    );
}

#[test]
fn unaligned_length_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 512)).unwrap();
    let mut writer = VhdxWriter::open(&path).unwrap();

    let err = writer.write_at(0, &[0; 100]).unwrap_err();

    assert_eq!(
        write_error(&err),
        Some(&WriteError::Unaligned {
            virtual_offset: 0,
            length: 100,
            logical_sector_size: 512
        })
    );
}

#[test]
fn write_past_the_virtual_size_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 512)).unwrap();
    let mut writer = VhdxWriter::open(&path).unwrap();

    let err = writer.write_at(8 * MIB - 512, &[0; 1024]).unwrap_err();

    assert_eq!(
        write_error(&err),
        Some(&WriteError::OutOfRange {
            virtual_offset: 8 * MIB - 512,
            length: 1024,
            virtual_size: 8 * MIB
        })
    );
    assert_eq!(err.path(), Some(path.as_path()));
}

#[test]
fn second_writer_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 512)).unwrap();
    let _first = VhdxWriter::open(&path).unwrap();

    let err = VhdxWriter::open(&path).unwrap_err();

    assert_eq!(write_error(&err), Some(&WriteError::Locked));
}

/// Rewrites both header slots of `path` with `edit` applied to the current header.
fn patch_headers(path: &Path, edit: impl Fn(&mut refpoint_vhdx::header::Header)) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut slots = [vec![0u8; 4096], vec![0u8; 4096]];
    file.read_exact_at(&mut slots[0], 64 << 10).unwrap();
    file.read_exact_at(&mut slots[1], 128 << 10).unwrap();
    let mut header = refpoint_vhdx::header::select_current(&slots[0], &slots[1])
        .unwrap()
        .current;
    edit(&mut header);
    file.write_all_at(&header.to_bytes(), 64 << 10).unwrap();
    file.write_all_at(&header.to_bytes(), 128 << 10).unwrap();
}

#[test]
fn file_without_a_log_cannot_be_opened_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nolog.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 512)).unwrap();
    patch_headers(&path, |h| h.log_length = 0);

    let err = VhdxWriter::open(&path).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(write_error(&err), Some(&WriteError::NoLog));
}

#[test]
fn header_sequence_number_at_its_maximum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 512)).unwrap();
    patch_headers(&path, |h| h.sequence_number = u64::MAX);

    let err = VhdxWriter::open(&path).unwrap_err();

    assert_eq!(write_error(&err), Some(&WriteError::SequenceOverflow));
}

#[test]
fn partial_write_in_the_second_chunk_of_a_differencing_disk_uses_that_chunk_bitmap() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("child.avhdx");
    create_dynamic(&parent, &options(5 << 30, 32 * MIB32, 512)).unwrap();
    VhdxWriter::open(&parent)
        .unwrap()
        .write_at((4 << 30) - MIB, &vec![0x5A; 2 * MIBU])
        .unwrap();
    create_differencing(&child, &parent, None).unwrap();
    let mut expected = vec![0u8; 4 << 20];
    expected[1 << 20..3 << 20].fill(0x5A); // the parent wrote [4 GiB - 1 MiB, 4 GiB + 1 MiB)

    let mut writer = VhdxWriter::open(&child).unwrap();
    writer.write_at((4 << 30) + 4096, &[0xE7; 1024]).unwrap();
    writer.write_at((4 << 30) - 8192, &[0xE8; 512]).unwrap();
    drop(writer);

    apply(
        &mut expected,
        (4 << 30) - 2 * MIB,
        (4 << 30) + 4096,
        &[0xE7; 1024],
    );
    apply(
        &mut expected,
        (4 << 30) - 2 * MIB,
        (4 << 30) - 8192,
        &[0xE8; 512],
    );
    let window = (4 << 30) - 2 * MIB;
    assert_same(
        "our reader",
        &reader_read(&child, window, 4 * MIB),
        &expected,
    );
    assert_same(
        "libvhdi",
        &libvhdi_read(&child, Some(&parent), window, 4 * MIB),
        &expected,
    );
    let file = VhdxFile::open(&child).unwrap();
    assert_eq!(
        file.payload_state(2048).unwrap().0,
        PayloadState::PartiallyPresent
    );
    assert_eq!(
        file.sector_bitmap(2048)
            .unwrap()
            .iter()
            .filter(|b| **b)
            .count(),
        2
    );
}

#[test]
fn corrupt_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.vhdx");
    create_dynamic(&path, &options(8 * MIB, MIB32, 512)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // Break the checksum of both headers (MS-VHDX §2.2.2).
    bytes[(64 << 10) + 100] ^= 1;
    bytes[(128 << 10) + 100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    let err = VhdxWriter::open(&path).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(matches!(err.detail(), ErrorDetail::Header(_)));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}
