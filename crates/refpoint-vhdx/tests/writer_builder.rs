//! ImageBuilder: concurrent block writes, sparse output, differencing output,
//! checked against qemu-img, libvhdi and our reader.
// Integration tests are their own crate: the lint meant for unit tests in
// library code does not apply here.
#![allow(clippy::tests_outside_test_module)]

mod writer_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use refpoint_vhdx::builder::BuilderError;
use refpoint_vhdx::error::ErrorDetail;
use refpoint_vhdx::{BuilderKind, CreateOptions, ImageBuilder, PayloadState, VhdxFile};
use uuid::Uuid;
use writer_support::*;

fn options(virtual_size: u64, block_size: u32) -> CreateOptions {
    CreateOptions {
        block_size,
        ..CreateOptions::new(virtual_size)
    }
}

/// Builds `path` from `content` (whole disk): blocks listed in `zeroed` are
/// marked ZERO, all-zero blocks are skipped, the rest written by `threads`
/// threads at once, each taking every `threads`-th block from the end.
fn build(
    path: &Path,
    opts: &CreateOptions,
    kind: BuilderKind,
    content: &[u8],
    zeroed: &[u64],
    threads: u64,
) -> u64 {
    let builder = ImageBuilder::create(path, opts, kind).unwrap();
    let block_size = usize::try_from(opts.block_size).unwrap();
    let blocks: Vec<(u64, &[u8])> = (0u64..).zip(content.chunks(block_size)).collect();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let builder = &builder;
            let blocks = &blocks;
            scope.spawn(move || {
                for &(block, data) in blocks.iter().rev().filter(|(b, _)| b % threads == t) {
                    if zeroed.contains(&block) {
                        builder.zero_block(block).unwrap();
                    } else if data.iter().any(|&b| b != 0) {
                        builder.write_block(block, data).unwrap();
                    }
                }
            });
        }
    });
    builder.finish().unwrap()
}

/// Random disk content with every fourth block left zero.
fn content(rng: &mut Rng, virtual_size: u64, block_size: u64) -> Vec<u8> {
    let mut bytes = rng.bytes(usize::try_from(virtual_size).unwrap());
    for block in (0..virtual_size.div_ceil(block_size)).step_by(4) {
        let start = usize::try_from(block * block_size).unwrap();
        let end = usize::try_from(((block + 1) * block_size).min(virtual_size)).unwrap();
        bytes[start..end].fill(0);
    }
    bytes
}

#[test]
fn three_threads_produce_an_image_qemu_accepts_and_reads_as_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.vhdx");
    // 40 MiB + 512: the last block holds one sector.
    let size = 40 * MIB + 512;
    let mut input = content(&mut Rng::new(1), size, MIB);
    input[6 << 20..8 << 20].fill(0); // blocks 6 and 7 are marked ZERO

    let file_size = build(
        &path,
        &options(size, MIB32),
        BuilderKind::Dynamic,
        &input,
        &[6, 7],
        3,
    );

    qemu_check(&path);
    assert_same("qemu-img convert", &qemu_raw(&path), &input);
    assert_same("our reader", &reader_read(&path, 0, size), &input);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), file_size);
    let file = VhdxFile::open(&path).unwrap();
    assert_eq!(file.payload_state(6).unwrap().0, PayloadState::Zero);
    assert_eq!(file.payload_state(4).unwrap().0, PayloadState::NotPresent);
    assert_eq!(file.present_blocks().unwrap().len(), 41 - 11 - 2);
}

#[test]
fn only_written_blocks_occupy_disk_space() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.vhdx");
    let builder =
        ImageBuilder::create(&path, &options(64 << 30, 32 * MIB32), BuilderKind::Dynamic).unwrap();
    builder.write_block(1000, &vec![0xA5; 32 * MIBU]).unwrap();

    let file_size = builder.finish().unwrap();

    let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
    assert_eq!(file_size, 4 * MIB + 32 * MIB);
    assert!(
        allocated < 34 * MIB,
        "allocated {allocated} bytes for one 32 MiB block"
    );
}

#[test]
fn blocks_above_4_gib_land_after_the_skipped_sector_bitmap_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("six.vhdx");
    let builder =
        ImageBuilder::create(&path, &options(6 << 30, MIB32), BuilderKind::Dynamic).unwrap();
    // Block 4096 is the first of chunk 1 (CR 4096): BAT index 4097 (vhdx.md §7.3).
    builder.write_block(4095, &vec![0x11; MIBU]).unwrap();
    builder.write_block(4096, &vec![0x22; MIBU]).unwrap();
    builder.write_block(6143, &vec![0x33; MIBU]).unwrap();

    builder.finish().unwrap();

    qemu_check(&path);
    let p = path.to_str().unwrap();
    run(
        "qemu-io",
        &[
            "-r",
            "-f",
            "vhdx",
            "-c",
            "read -P 0x11 4095M 1M",
            "-c",
            "read -P 0x22 4096M 1M",
            "-c",
            "read -P 0x33 6143M 1M",
            "-c",
            "read -P 0 4097M 1M",
            "-c",
            "read -P 0 4094M 1M",
            "-c",
            "read -P 0 6142M 1M",
            p,
        ],
    );
    assert_eq!(reader_read(&path, 4096 * MIB, MIB), vec![0x22; MIBU]);
}

#[test]
fn differencing_output_reads_parent_plus_blocks_through_libvhdi_and_our_reader() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("diff.avhdx");
    let size = 24 * MIB;
    let mut rng = Rng::new(2);
    let base = rng.bytes(usize::try_from(size).unwrap());
    let opts = options(size, 2 * MIB32);
    build(&parent, &opts, BuilderKind::Dynamic, &base, &[], 1);
    let parent_guid = VhdxFile::open(&parent).unwrap().data_write_guid();
    // The child replaces blocks 1, 5 and 11; everything else comes from the parent.
    let mut changed = vec![0u8; base.len()];
    let mut expected = base.clone();
    for block in [1usize, 5, 11] {
        let fresh = rng.bytes(2 * MIBU);
        changed[block * 2 * MIBU..(block + 1) * 2 * MIBU].copy_from_slice(&fresh);
        expected[block * 2 * MIBU..(block + 1) * 2 * MIBU].copy_from_slice(&fresh);
    }
    let kind = BuilderKind::Differencing {
        parent_path: parent.clone(),
        parent_data_write_guid: parent_guid,
    };

    build(
        &child,
        &CreateOptions {
            data_write_guid: Some(Uuid::from_u128(5)),
            ..opts
        },
        kind,
        &changed,
        &[],
        3,
    );

    assert_same("our reader", &reader_read(&child, 0, size), &expected);
    assert_same(
        "libvhdi",
        &libvhdi_read(&child, Some(&parent), 0, size),
        &expected,
    );
    let c = VhdxFile::open(&child).unwrap();
    assert_eq!(c.data_write_guid(), Uuid::from_u128(5));
    assert_eq!(c.parent_locator().unwrap().parent_linkage(), parent_guid);
}

#[test]
fn zero_block_in_differencing_output_hides_the_parent_for_our_reader() {
    // libvhdi returns the parent's data for ZERO blocks in a child (vhdx.md §7.4),
    // so only our reader is asked here.
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("diff.avhdx");
    let base = vec![0x77u8; 4 << 20];
    build(
        &parent,
        &options(4 * MIB, MIB32),
        BuilderKind::Dynamic,
        &base,
        &[],
        1,
    );
    let parent_guid = VhdxFile::open(&parent).unwrap().data_write_guid();
    let kind = BuilderKind::Differencing {
        parent_path: parent.clone(),
        parent_data_write_guid: parent_guid,
    };
    let builder = ImageBuilder::create(&child, &options(4 * MIB, MIB32), kind).unwrap();

    builder.zero_block(2).unwrap();
    builder.finish().unwrap();

    let mut expected = base;
    expected[2 << 20..3 << 20].fill(0);
    assert_same("our reader", &reader_read(&child, 0, 4 * MIB), &expected);
}

#[test]
fn logical_sector_4096_images_read_back_through_our_reader_and_libvhdi() {
    // qemu refuses 4096-byte logical sectors (vhdx.md §8).
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base4k.vhdx");
    let child = dir.path().join("diff4k.avhdx");
    let size = 12 * MIB;
    let opts = CreateOptions {
        logical_sector_size: 4096,
        ..options(size, MIB32)
    };
    let mut rng = Rng::new(3);
    let base = content(&mut rng, size, MIB);
    build(&parent, &opts, BuilderKind::Dynamic, &base, &[], 2);
    let parent_guid = VhdxFile::open(&parent).unwrap().data_write_guid();
    let mut changed = vec![0u8; base.len()];
    changed[3 << 20..4 << 20].copy_from_slice(&rng.bytes(MIBU));
    let mut expected = base.clone();
    expected[3 << 20..4 << 20].copy_from_slice(&changed[3 << 20..4 << 20]);
    let kind = BuilderKind::Differencing {
        parent_path: parent.clone(),
        parent_data_write_guid: parent_guid,
    };

    build(&child, &opts, kind, &changed, &[], 2);

    assert_eq!(
        VhdxFile::open(&child).unwrap().geometry().chunk_ratio,
        32768
    );
    assert_same("our reader, base", &reader_read(&parent, 0, size), &base);
    assert_same(
        "libvhdi, base",
        &libvhdi_read(&parent, None, 0, size),
        &base,
    );
    assert_same(
        "our reader, child",
        &reader_read(&child, 0, size),
        &expected,
    );
    assert_same(
        "libvhdi, child",
        &libvhdi_read(&child, Some(&parent), 0, size),
        &expected,
    );
}

#[test]
fn block_data_longer_than_the_block_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let builder = ImageBuilder::create(
        &dir.path().join("x.vhdx"),
        &options(4 * MIB, MIB32),
        BuilderKind::Dynamic,
    )
    .unwrap();

    let err = builder.write_block(0, &vec![1; MIBU + 512]).unwrap_err();

    let detail = match err.detail() {
        ErrorDetail::Other(e) => e.downcast_ref::<BuilderError>().cloned(),
        _ => None,
    };
    assert_eq!(
        detail,
        Some(BuilderError::BlockLength {
            block: 0,
            length: MIBU + 512,
            expected: MIB
        })
    );
}

#[test]
fn short_last_block_is_zero_padded_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.vhdx");
    let builder =
        ImageBuilder::create(&path, &options(MIB + 4096, MIB32), BuilderKind::Dynamic).unwrap();
    builder.write_block(1, &[0xEE; 4096]).unwrap();

    let size = builder.finish().unwrap();

    let (_, offset) = VhdxFile::open(&path).unwrap().payload_state(1).unwrap();
    let offset = offset.unwrap();
    assert_eq!(size, offset + MIB, "the whole block is in the file");
    let raw = std::fs::read(&path).unwrap();
    let at = usize::try_from(offset).unwrap();
    assert!(raw[at..at + 4096].iter().all(|&b| b == 0xEE));
    assert!(raw[at + 4096..at + MIBU].iter().all(|&b| b == 0));
    qemu_check(&path);
}

fn builder_create_error(
    err: &refpoint_vhdx::VhdxError,
) -> Option<&refpoint_vhdx::create::CreateError> {
    match err.detail() {
        ErrorDetail::Other(e) => e.downcast_ref::<refpoint_vhdx::create::CreateError>(),
        _ => None,
    }
}

#[test]
fn locator_relative_path_is_computed_from_the_final_directory() {
    // The export engine builds in <dir>/.staging/<vm>/ and renames to <dir>/<vm>/.
    let dir = tempfile::tempdir().unwrap();
    for sub in ["base/vm", ".staging/vm", "vm"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let parent = dir.path().join("base/vm/d.vhdx");
    refpoint_vhdx::create_dynamic(&parent, &options(4 * MIB, MIB32)).unwrap();
    let guid = VhdxFile::open(&parent).unwrap().data_write_guid();
    let staged = dir.path().join(".staging/vm/d-rp.avhdx");
    let final_path = dir.path().join("vm/d-rp.avhdx");
    let kind = BuilderKind::Differencing {
        parent_path: parent.clone(),
        parent_data_write_guid: guid,
    };

    ImageBuilder::create_for(&staged, &final_path, &options(4 * MIB, MIB32), kind)
        .unwrap()
        .finish()
        .unwrap();
    std::fs::rename(&staged, &final_path).unwrap();

    let child = VhdxFile::open(&final_path).unwrap();
    assert_eq!(
        child.parent_locator().unwrap().relative_path(),
        Some("..\\base\\vm\\d.vhdx")
    );
    assert_eq!(
        refpoint_vhdx::Chain::open(&final_path)
            .unwrap()
            .layers()
            .len(),
        2
    );
}

#[test]
fn parent_path_that_is_not_unicode_is_rejected() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join(std::ffi::OsStr::from_bytes(b"p\xff.vhdx"));
    let kind = BuilderKind::Differencing {
        parent_path: parent,
        parent_data_write_guid: Uuid::from_u128(1),
    };

    let err = ImageBuilder::create(&dir.path().join("c.avhdx"), &options(4 * MIB, MIB32), kind)
        .unwrap_err();

    assert!(matches!(
        builder_create_error(&err),
        Some(refpoint_vhdx::create::CreateError::PathNotUnicode { .. })
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn parent_path_too_long_for_a_locator_value_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    // Locator values are at most 65535 bytes of UTF-16 (MS-VHDX §2.6.2.6.2).
    let parent = Path::new("/").join("x".repeat(40_000)).join("p.vhdx");
    let kind = BuilderKind::Differencing {
        parent_path: parent,
        parent_data_write_guid: Uuid::from_u128(1),
    };

    let err = ImageBuilder::create(&dir.path().join("c.avhdx"), &options(4 * MIB, MIB32), kind)
        .unwrap_err();

    assert!(matches!(
        builder_create_error(&err),
        Some(refpoint_vhdx::create::CreateError::MetadataTooLarge { .. })
    ));
}

#[test]
fn target_without_a_file_name_is_rejected() {
    let err = ImageBuilder::create(
        Path::new("/"),
        &options(4 * MIB, MIB32),
        BuilderKind::Dynamic,
    )
    .unwrap_err();

    assert!(matches!(
        builder_create_error(&err),
        Some(refpoint_vhdx::create::CreateError::NotAFilePath { .. })
    ));
}
