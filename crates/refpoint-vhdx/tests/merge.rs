//! `merge::merge_into_child`: a differencing layer merged into its child
//! keeps the child's virtual disk bit for bit (checked with our reader
//! before, libvhdi after), keeps the child's DataWriteGuid so grandchildren
//! still open, and refuses requests that are not a merge of a parent into
//! its child, each with its own error.
#![allow(clippy::tests_outside_test_module)]

mod writer_support;

use std::path::{Path, PathBuf};

use refpoint_vhdx::error::ErrorDetail;
use refpoint_vhdx::merge::coverage::{self, Definition};
use refpoint_vhdx::merge::{
    MergeError, MergeOptions, MergeStep, merge_into_child, merge_into_child_with,
};
use refpoint_vhdx::{
    BuilderKind, Chain, CreateOptions, ErrorKind, ImageBuilder, VhdxFile, VhdxWriter,
    create_differencing, create_dynamic,
};
use writer_support::*;

const SIZE: u64 = 64 * MIB;

fn merge_error(err: &refpoint_vhdx::VhdxError) -> Option<&MergeError> {
    match err.detail() {
        ErrorDetail::Other(e) => e.downcast_ref::<MergeError>(),
        _ => None,
    }
}

fn options(block_size: u32, lss: u32) -> CreateOptions {
    CreateOptions {
        block_size,
        logical_sector_size: lss,
        ..CreateOptions::new(SIZE)
    }
}

/// Seeded writes into `path`: single sectors, partial blocks, whole blocks
/// and ranges across block boundaries.
fn scribble(path: &Path, seed: u64, writes: usize) {
    let mut rng = Rng::new(seed);
    let mut w = VhdxWriter::open(path).unwrap();
    let lss = u64::from(w.geometry().logical_sector_size);
    let bs = u64::from(w.geometry().block_size);
    for i in 0..writes {
        let length = match i % 4 {
            0 => lss,
            1 => lss * (1 + rng.below(64)),
            2 => bs,
            _ => bs + lss * (1 + rng.below(128)),
        };
        let offset = rng.below((SIZE - length) / lss) * lss;
        let data = rng.bytes(usize::try_from(length).unwrap());
        w.write_at(offset, &data).unwrap();
    }
    w.flush().unwrap();
}

/// base ← layer ← child, with seeded writes in each; block sizes and sector
/// size as given.
fn three_layers(dir: &Path, base_bs: u32, diff_bs: Option<u32>, lss: u32) -> [PathBuf; 3] {
    let base = dir.join("base.vhdx");
    let layer = dir.join("layer.avhdx");
    let child = dir.join("child.avhdx");
    create_dynamic(&base, &options(base_bs, lss)).unwrap();
    scribble(&base, 1, 12);
    create_differencing(&layer, &base, diff_bs).unwrap();
    scribble(&layer, 2, 16);
    create_differencing(&child, &layer, diff_bs).unwrap();
    scribble(&child, 3, 10);
    [base, layer, child]
}

fn merged_matches_before(base_bs: u32, diff_bs: Option<u32>, lss: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, child] = three_layers(tmp.path(), base_bs, diff_bs, lss);
    let before = reader_read(&child, 0, SIZE);
    let guid = VhdxFile::open(&child).unwrap().data_write_guid();

    let report = merge_into_child(&child, &layer, &base).unwrap();

    let chain = Chain::open(&child).unwrap();
    assert_eq!(chain.layers().len(), 2, "child now links to the base");
    assert_eq!(chain.layers()[1].path(), base.as_path());
    assert_eq!(chain.leaf().data_write_guid(), guid, "DataWriteGuid kept");
    assert!(
        report.sectors_copied > 0 && report.transactions >= 2,
        "{report:?}"
    );
    assert_same(
        "our reader after merge",
        &reader_read(&child, 0, SIZE),
        &before,
    );
    // libvhdi reads the merged child with the base as its only parent.
    assert_same(
        "libvhdi after merge",
        &libvhdi_read(&child, Some(&base), 0, SIZE),
        &before,
    );
}

#[test]
fn merge_keeps_the_child_content_with_equal_block_sizes() {
    merged_matches_before(2 * MIB32, None, 512);
}

#[test]
fn merge_keeps_the_child_content_when_child_blocks_are_larger_than_the_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.vhdx");
    let layer = tmp.path().join("layer.avhdx");
    let child = tmp.path().join("child.avhdx");
    create_dynamic(&base, &options(4 * MIB32, 512)).unwrap();
    scribble(&base, 11, 8);
    create_differencing(&layer, &base, Some(MIB32)).unwrap();
    scribble(&layer, 12, 20);
    create_differencing(&child, &layer, Some(8 * MIB32)).unwrap();
    scribble(&child, 13, 6);
    let before = reader_read(&child, 0, SIZE);

    merge_into_child(&child, &layer, &base).unwrap();

    assert_same("after merge", &reader_read(&child, 0, SIZE), &before);
    assert_same(
        "libvhdi after merge",
        &libvhdi_read(&child, Some(&base), 0, SIZE),
        &before,
    );
}

#[test]
fn merge_keeps_the_child_content_with_4096_byte_sectors() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, child] = three_layers(tmp.path(), MIB32, Some(MIB32), 4096);
    let before = reader_read(&child, 0, SIZE);

    merge_into_child(&child, &layer, &base).unwrap();

    assert_same("after merge", &reader_read(&child, 0, SIZE), &before);
}

#[test]
fn merge_into_an_untouched_child_copies_every_sector_of_the_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.vhdx");
    let layer = tmp.path().join("layer.avhdx");
    let child = tmp.path().join("child.avhdx");
    create_dynamic(&base, &options(2 * MIB32, 512)).unwrap();
    scribble(&base, 21, 6);
    create_differencing(&layer, &base, None).unwrap();
    scribble(&layer, 22, 9);
    create_differencing(&child, &layer, None).unwrap();
    let before = reader_read(&child, 0, SIZE);
    let layer_defined = coverage::defined_ranges(&VhdxFile::open(&layer).unwrap()).unwrap();

    merge_into_child(&child, &layer, &base).unwrap();

    let child_defined = coverage::defined_ranges(&VhdxFile::open(&child).unwrap()).unwrap();
    assert_eq!(
        child_defined, layer_defined,
        "the child now defines what the layer did"
    );
    assert_same("after merge", &reader_read(&child, 0, SIZE), &before);
}

#[test]
fn zero_blocks_of_the_layer_read_as_zeros_in_the_child_after_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.vhdx");
    let layer = tmp.path().join("layer.avhdx");
    let child = tmp.path().join("child.avhdx");
    create_dynamic(&base, &options(2 * MIB32, 512)).unwrap();
    {
        let mut w = VhdxWriter::open(&base).unwrap();
        w.write_at(0, &vec![0xAB; usize::try_from(8 * MIB).unwrap()])
            .unwrap();
    }
    let base_guid = VhdxFile::open(&base).unwrap().data_write_guid();
    let opts = CreateOptions {
        virtual_disk_id: VhdxFile::open(&base).unwrap().virtual_disk_id(),
        ..options(2 * MIB32, 512)
    };
    let builder = ImageBuilder::create(
        &layer,
        &opts,
        BuilderKind::Differencing {
            parent_path: base.clone(),
            parent_data_write_guid: base_guid,
        },
    )
    .unwrap();
    builder.zero_block(1).unwrap();
    builder.zero_block(2).unwrap();
    builder.write_block(3, &vec![0x5A; 2 << 20]).unwrap();
    builder.finish().unwrap();
    create_differencing(&child, &layer, None).unwrap();
    {
        // The child covers the first half of block 2 itself.
        let mut w = VhdxWriter::open(&child).unwrap();
        w.write_at(2 * 2 * MIB, &vec![0x11; 1 << 20]).unwrap();
    }
    let defined = coverage::defined(&VhdxFile::open(&layer).unwrap()).unwrap();
    assert!(
        defined.iter().any(|d| d.definition == Definition::Zero),
        "the layer has ZERO blocks: {defined:?}"
    );
    let before = reader_read(&child, 0, SIZE);

    let report = merge_into_child(&child, &layer, &base).unwrap();

    assert_eq!(report.sectors_zeroed, (2 * MIB + MIB) / 512, "{report:?}");
    let after = reader_read(&child, 0, SIZE);
    assert_same("after merge", &after, &before);
    assert!(
        after[usize::try_from(2 * MIB).unwrap()..usize::try_from(4 * MIB).unwrap()]
            .iter()
            .all(|&b| b == 0)
    );
    assert_same(
        "libvhdi after merge",
        &libvhdi_read(&child, Some(&base), 0, SIZE),
        &before,
    );
}

#[test]
fn grandchild_still_opens_and_reads_the_same_after_merge_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, child] = three_layers(tmp.path(), 2 * MIB32, None, 512);
    let grandchild = tmp.path().join("grandchild.avhdx");
    create_differencing(&grandchild, &child, None).unwrap();
    scribble(&grandchild, 4, 5);
    let before = reader_read(&grandchild, 0, SIZE);

    merge_into_child(&child, &layer, &base).unwrap();

    let chain = Chain::open(&grandchild).unwrap();
    assert_eq!(chain.layers().len(), 3);
    assert_same(
        "grandchild after merge",
        &reader_read(&grandchild, 0, SIZE),
        &before,
    );
}

#[test]
fn merging_again_after_the_relink_reports_already_relinked_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, child] = three_layers(tmp.path(), 2 * MIB32, None, 512);
    merge_into_child(&child, &layer, &base).unwrap();
    let bytes = std::fs::read(&child).unwrap();

    let report = merge_into_child(&child, &layer, &base).unwrap();

    assert!(report.already_relinked, "{report:?}");
    assert_eq!(report.sectors_copied, 0);
    let after = std::fs::read(&child).unwrap();
    // Only the headers (FileWriteGuid of the writer's recovery open) may differ.
    assert_eq!(after.len(), bytes.len());
    assert!(
        after[1 << 20..] == bytes[1 << 20..],
        "nothing past the header section changed"
    );
}

#[test]
fn small_transactions_report_each_durable_step_and_give_the_same_content() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, child] = three_layers(tmp.path(), 2 * MIB32, None, 512);
    let before = reader_read(&child, 0, SIZE);
    let mut steps = Vec::new();

    let report = merge_into_child_with(
        &child,
        &layer,
        &base,
        &MergeOptions {
            blocks_per_transaction: 1,
        },
        &mut |s| steps.push(s),
    )
    .unwrap();

    let Some(MergeStep::Planned { blocks }) = steps.first().copied() else {
        panic!("first step is the plan: {steps:?}");
    };
    let copied = steps
        .iter()
        .filter(|s| matches!(s, MergeStep::Copied { .. }))
        .count();
    assert_eq!(
        u64::try_from(copied).unwrap(),
        blocks,
        "one transaction per block"
    );
    assert_eq!(steps.last(), Some(&MergeStep::Relinked));
    assert_eq!(report.transactions, blocks + 1);
    assert_same("after merge", &reader_read(&child, 0, SIZE), &before);
}

#[test]
fn locator_that_grows_is_moved_after_the_last_metadata_item() {
    let tmp = tempfile::tempdir().unwrap();
    let deep = tmp
        .path()
        .join("a-rather-long-directory-name-for-the-base-image".repeat(3));
    std::fs::create_dir_all(&deep).unwrap();
    let base = deep.join("base-with-a-long-name.vhdx");
    create_dynamic(&base, &options(2 * MIB32, 512)).unwrap();
    scribble(&base, 31, 4);
    let layer = tmp.path().join("l.avhdx");
    create_differencing(&layer, &base, None).unwrap();
    scribble(&layer, 32, 4);
    let child = tmp.path().join("c.avhdx");
    create_differencing(&child, &layer, None).unwrap();
    let before = reader_read(&child, 0, SIZE);

    merge_into_child(&child, &layer, &base).unwrap();

    let file = VhdxFile::open(&child).unwrap();
    let locator = file.parent_locator().unwrap();
    assert!(
        locator
            .relative_path()
            .unwrap()
            .contains("base-with-a-long-name.vhdx")
    );
    assert_same("after merge", &reader_read(&child, 0, SIZE), &before);
}

#[test]
fn merging_a_base_layer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, _child] = three_layers(tmp.path(), 2 * MIB32, None, 512);
    let other = tmp.path().join("other.vhdx");
    create_dynamic(&other, &options(2 * MIB32, 512)).unwrap();

    let err = merge_into_child(&layer, &base, &other).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(
        matches!(merge_error(&err), Some(MergeError::LayerIsBase { .. })),
        "{err}"
    );
}

#[test]
fn merging_into_a_file_that_is_not_the_layers_child_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, _child] = three_layers(tmp.path(), 2 * MIB32, None, 512);
    let unrelated = tmp.path().join("unrelated.vhdx");
    create_dynamic(&unrelated, &options(2 * MIB32, 512)).unwrap();
    let stranger = tmp.path().join("stranger.avhdx");
    create_differencing(&stranger, &unrelated, None).unwrap();

    let err = merge_into_child(&stranger, &layer, &base).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::ChainBroken);
    assert!(
        matches!(merge_error(&err), Some(MergeError::NotLinked { .. })),
        "{err}"
    );
}

#[test]
fn merging_towards_a_file_that_is_not_the_layers_parent_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let [_base, layer, child] = three_layers(tmp.path(), 2 * MIB32, None, 512);
    let other = tmp.path().join("other.vhdx");
    create_dynamic(&other, &options(2 * MIB32, 512)).unwrap();
    let before = std::fs::read(&child).unwrap();

    let err = merge_into_child(&child, &layer, &other).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::ChainBroken);
    assert!(
        matches!(merge_error(&err), Some(MergeError::ParentMismatch { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read(&child).unwrap(), before, "child untouched");
}

#[test]
fn merge_into_a_child_locked_by_a_writer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, layer, child] = three_layers(tmp.path(), 2 * MIB32, None, 512);
    let _writer = VhdxWriter::open(&child).unwrap();

    let err = merge_into_child(&child, &layer, &base).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Io);
}
