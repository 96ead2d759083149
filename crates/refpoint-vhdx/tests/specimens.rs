//! Real VHDX files made by Windows, Hyper-V and QEMU read to their
//! ground-truth content hashes (fixtures/specimens/PROVENANCE.md).
#![allow(
    clippy::tests_outside_test_module,
    reason = "integration test crate: every item is a test"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{cached_specimen, sha256_chain, sha256_chain_by_read_at, sha256_file};
use refpoint_vhdx::{Chain, PayloadState, VhdxFile};

// SHA-256 of the uncompressed specimens (PROVENANCE.md).
const FIXED: &str = "f2d743755f1872335fb1554116feecda67825719080ebb875b97dfacf7c1f590";
const DYNAMIC: &str = "72e9aa1af9cc53c84585a8017246f14f7c9f2dd54bb3f52e3b70919b2af600b9";
const IOTEST_1G: &str = "a4fb24fa51fb4852d5a6bdc2b390a91b0a4e19b47696edc5a00c816067257402";
const DIRTYLOG: &str = "511daba998dba208ffc57a7814194d5dd3afb7c314731b904ff1682e3fb4951a";
const CHILD: &str = "a4bf6f9ccaaf8f90b0e9a5b6f964e2b21ca3a9b1675c3a92e73206b04cfb1fbf";
const PARENT: &str = "85fa003778b37a70f104326b6cd3e73666b7a5fe59b9d427315e46684af7ed58";

/// Opens a decompressed specimen as a chain, hashes the whole virtual disk,
/// and checks the file was not modified.
fn chain_hash(path: &Path) -> String {
    let before = sha256_file(path);
    let chain = Chain::open(path).expect("open chain");
    let hash = sha256_chain(&chain);
    drop(chain);
    assert_eq!(
        sha256_file(path),
        before,
        "{} was modified by reading",
        path.display()
    );
    hash
}

#[test]
fn windows_fixed_specimen_reads_to_ground_truth() {
    let path = cached_specimen("fixed.vhdx", FIXED);

    let hash = chain_hash(&path);

    assert_eq!(
        hash,
        "bc0be4623b15aa84216fb31ba24e3b621ec7f1c72d198c990ac0eced222d9f62"
    );
}

#[test]
fn windows_fixed_specimen_has_windows_geometry() {
    let path = cached_specimen("fixed.vhdx", FIXED);

    let file = VhdxFile::open(&path).unwrap();

    let g = file.geometry();
    assert_eq!(g.virtual_size, 10 << 20);
    assert_eq!(g.block_size, 2 << 20);
    assert_eq!(g.physical_sector_size, 4096);
    assert!(g.leave_block_allocated);
    assert!(
        !file.log_replayed(),
        "stale log entries with an old LogGuid must be ignored"
    );
    assert_eq!(file.creator(), "Microsoft Windows 10.0.18363.0");
}

#[test]
fn windows_dynamic_specimen_with_block_larger_than_disk_reads_to_ground_truth() {
    let path = cached_specimen("dynamic.vhdx", DYNAMIC);

    let hash = chain_hash(&path);

    assert_eq!(
        hash,
        "8e2b5e9265d694b42b81819e3bff29770eff4ed0f4f9f311693ff3dbdc93efac"
    );
}

#[test]
fn hyper_v_2012_dynamic_specimen_reads_to_ground_truth() {
    let path = cached_specimen("iotest-dynamic-1G.vhdx", IOTEST_1G);

    let hash = chain_hash(&path);

    assert_eq!(
        hash,
        "d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478"
    );
}

#[test]
fn hyper_v_2012_dynamic_specimen_reads_the_same_through_read_at() {
    let path = cached_specimen("iotest-dynamic-1G.vhdx", IOTEST_1G);
    let chain = Chain::open(&path).unwrap();

    // 3 MiB + 512 reads straddle block boundaries at varying positions.
    let hash = sha256_chain_by_read_at(&chain, (3 << 20) + 512);

    assert_eq!(
        hash,
        "d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478"
    );
}

#[test]
fn hyper_v_2012_dynamic_specimen_has_three_present_and_29_zero_blocks() {
    let path = cached_specimen("iotest-dynamic-1G.vhdx", IOTEST_1G);

    let file = VhdxFile::open(&path).unwrap();

    assert_eq!(file.present_blocks().unwrap(), vec![0, 1, 2]);
    let zero = (0..32)
        .filter(|&b| file.payload_state(b).unwrap().0 == PayloadState::Zero)
        .count();
    assert_eq!(zero, 29);
}

#[test]
fn qemu_dirty_log_specimen_is_replayed_in_memory_to_ground_truth() {
    let path = cached_specimen("iotest-dirtylog-10G-4M.vhdx", DIRTYLOG);

    let file = VhdxFile::open(&path).unwrap();
    let hash = chain_hash(&path);

    assert!(file.log_replayed());
    assert_eq!(
        hash,
        "179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f"
    );
    assert_eq!(
        sha256_file(&path),
        DIRTYLOG,
        "the specimen must be unchanged on disk"
    );
}

#[test]
fn qemu_dirty_log_specimen_reads_0xa5_for_the_first_18_mib_after_replay() {
    let path = cached_specimen("iotest-dirtylog-10G-4M.vhdx", DIRTYLOG);
    let chain = Chain::open(&path).unwrap();
    let mut buf = vec![0u8; 18 << 20];

    chain.read_at(0, &mut buf).unwrap();

    assert!(buf.iter().all(|&b| b == 0xA5));
}

/// The Hyper-V child and its synthetic parent, decompressed into one
/// directory under the parent's original name.
fn differencing_pair() -> (PathBuf, PathBuf) {
    let child = cached_specimen("differencing.avhdx", CHILD);
    let parent = cached_specimen(
        "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx",
        PARENT,
    );
    (child, parent)
}

#[test]
fn hyper_v_checkpoint_reads_through_its_parent_to_ground_truth() {
    let (child, parent) = differencing_pair();
    let parent_before = sha256_file(&parent);

    let hash = chain_hash(&child);

    assert_eq!(
        hash,
        "3c9697ff9f79ddc29c15937a4fd8c938525e8ff2232815e6a0718c41ce3ef121"
    );
    assert_eq!(
        sha256_file(&parent),
        parent_before,
        "parent modified by reading"
    );
}

#[test]
fn hyper_v_checkpoint_chain_has_two_layers_linked_by_data_write_guid() {
    let (child, _) = differencing_pair();

    let chain = Chain::open(&child).unwrap();

    assert_eq!(chain.layers().len(), 2);
    let locator = chain.leaf().parent_locator().unwrap();
    assert_eq!(
        locator.parent_linkage(),
        chain.layers()[1].data_write_guid()
    );
    assert_eq!(locator.parent_linkage2(), None);
    assert_eq!(locator.entries().len(), 5);
}

#[test]
fn hyper_v_checkpoint_has_32_partially_present_blocks() {
    let (child, _) = differencing_pair();

    let file = VhdxFile::open(&child).unwrap();

    let present = file.present_blocks().unwrap();
    assert_eq!(present.len(), 32);
    for block in present {
        assert_eq!(
            file.payload_state(block).unwrap().0,
            PayloadState::PartiallyPresent
        );
        assert_eq!(file.sector_bitmap(block).unwrap().len(), 4096);
    }
}

#[test]
fn synthetic_parent_alone_reads_to_ground_truth() {
    let (_, parent) = differencing_pair();

    let hash = chain_hash(&parent);

    assert_eq!(
        hash,
        "3607bea7d088058c1537fe75791fd1cf4f9b6eb987c4e224b450c8171701dca8"
    );
}

#[test]
fn hyper_v_checkpoint_chain_from_explicit_paths_maps_like_discovery() {
    let (child, parent) = differencing_pair();
    let discovered = Chain::open(&child).unwrap();

    let explicit = Chain::from_paths(&[child, parent]).unwrap();

    let size = explicit.virtual_size();
    assert_eq!(
        explicit.map_range(0, size).unwrap(),
        discovered.map_range(0, size).unwrap()
    );
}
