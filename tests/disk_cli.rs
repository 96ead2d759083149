//! `refpoint disk hash` prints the ground-truth SHA-256 of every specimen's
//! raw content (`fixtures/specimens/PROVENANCE.md`): the dirty-log file only
//! after replay, the Hyper-V child only through its parent.

// Integration tests are their own crate: the lint meant for unit tests in
// library code does not apply here.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::path::Path;

use common::{refpoint, sha256_file, specimen};

fn disk_hash(path: &Path) -> String {
    let (code, out, err) = refpoint(
        Path::new("/nonexistent-host"),
        &["disk", "hash", path.to_str().expect("utf8")],
    );
    assert_eq!(code, 0, "disk hash {}: {err}", path.display());
    out["sha256"].as_str().expect("sha256").to_string()
}

#[test]
fn disk_hash_of_windows_fixed_specimen_is_ground_truth() {
    let temp = tempfile::tempdir().expect("tempdir");
    let file = specimen("fixed.vhdx.gz", temp.path(), "fixed.vhdx");
    assert_eq!(
        disk_hash(&file),
        "bc0be4623b15aa84216fb31ba24e3b621ec7f1c72d198c990ac0eced222d9f62"
    );
}

#[test]
fn disk_hash_of_windows_dynamic_specimen_is_ground_truth() {
    let temp = tempfile::tempdir().expect("tempdir");
    let file = specimen("dynamic.vhdx.gz", temp.path(), "dynamic.vhdx");
    assert_eq!(
        disk_hash(&file),
        "8e2b5e9265d694b42b81819e3bff29770eff4ed0f4f9f311693ff3dbdc93efac"
    );
}

#[test]
fn disk_hash_of_hyperv_2012_specimen_is_ground_truth() {
    let temp = tempfile::tempdir().expect("tempdir");
    let file = specimen("iotest-dynamic-1G.vhdx.gz", temp.path(), "d.vhdx");
    assert_eq!(
        disk_hash(&file),
        "d3d112d8dab7fd360609f7d5a7b769904b7a2a7d7b6b8c535f65a23293c05478"
    );
}

#[test]
fn disk_hash_of_dirty_log_specimen_replays_the_log_without_modifying_the_file() {
    let temp = tempfile::tempdir().expect("tempdir");
    let file = specimen("iotest-dirtylog-10G-4M.vhdx.gz", temp.path(), "dirty.vhdx");
    let before = sha256_file(&file);
    assert_eq!(
        disk_hash(&file),
        "179cefe8b0587f123393eedf2aa7aa8d25798591178e6bc3950a09762f38f96f"
    );
    assert_eq!(sha256_file(&file), before, "the source file was modified");
}

#[test]
fn disk_hash_of_hyperv_child_reads_through_its_parent() {
    let temp = tempfile::tempdir().expect("tempdir");
    let parent = "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx";
    let parent_path = specimen(&format!("{parent}.gz"), temp.path(), parent);
    let child = specimen("differencing.avhdx.gz", temp.path(), "differencing.avhdx");
    assert_eq!(
        disk_hash(&child),
        "3c9697ff9f79ddc29c15937a4fd8c938525e8ff2232815e6a0718c41ce3ef121"
    );
    assert_eq!(
        disk_hash(&parent_path),
        "3607bea7d088058c1537fe75791fd1cf4f9b6eb987c4e224b450c8171701dca8"
    );
}
