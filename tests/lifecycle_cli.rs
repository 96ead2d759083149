//! `refpoint changes` (GetVirtualDiskChanges), `rp destroy`, `rp remove-data`
//! and `snapshot-destroy` end to end: the JSON names of the WMI
//! out-parameters, the paging contract, and the return codes (32779 for a
//! missing file, 32775 for exporting a reference point without data,
//! 32773 for an unknown id).
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::path::Path;

use common::{host_with_fixture, refpoint};
use serde_json::Value;

/// (RP1, RP2) after a second reference point on the fixture VM.
fn two_reference_points(host: &Path) -> (Value, Value) {
    let (code, _, err) = refpoint(host, &["rp", "create", "vm1"]);
    assert_eq!(code, 0, "rp create: {err}");
    let (code, list, err) = refpoint(host, &["rp", "list", "vm1"]);
    assert_eq!(code, 0, "rp list: {err}");
    let list = list.as_array().expect("list").clone();
    assert_eq!(list.len(), 2);
    (list[0].clone(), list[1].clone())
}

fn top(rp: &Value) -> String {
    rp["Disks"][0]["Chain"][0]["Path"]
        .as_str()
        .expect("path")
        .to_owned()
}

fn rct(rp: &Value) -> String {
    format!(
        "rct:{{{}}}:{}",
        rp["Disks"][0]["DiskGuid"].as_str().expect("guid"),
        rp["Disks"][0]["RctEpoch"]
    )
}

fn ranges(v: &Value) -> Vec<(u64, u64)> {
    let offsets = v["ChangedByteOffsets"].as_array().expect("offsets");
    let lengths = v["ChangedByteLengths"].as_array().expect("lengths");
    assert_eq!(offsets.len(), lengths.len(), "index-parallel arrays");
    offsets
        .iter()
        .zip(lengths)
        .map(|(o, l)| (o.as_u64().expect("u64"), l.as_u64().expect("u64")))
        .collect()
}

#[test]
fn changes_pages_with_one_range_per_call_to_the_same_answer() {
    let (_tmp, host, _) = host_with_fixture("vm1", "1", "64M", "5");
    let (rp1, rp2) = two_reference_points(&host);
    let (path, limit) = (top(&rp2), rct(&rp1));

    let (code, whole, err) = refpoint(&host, &["changes", "--path", &path, "--limit-id", &limit]);
    assert_eq!(code, 0, "changes: {err}");
    assert_eq!(whole["ReturnValue"], 0);
    assert_eq!(whole["ProcessedByteLength"], 64 << 20);
    let all = ranges(&whole);
    assert!(
        !all.is_empty(),
        "the fixture writes after its reference point"
    );

    let mut paged = Vec::new();
    let mut offset = 0u64;
    let mut calls = 0;
    while offset < 64 << 20 {
        let (o, l) = (offset.to_string(), ((64u64 << 20) - offset).to_string());
        let (code, page, err) = refpoint(
            &host,
            &[
                "changes",
                "--path",
                &path,
                "--limit-id",
                &limit,
                "--offset",
                &o,
                "--length",
                &l,
                "--max-ranges",
                "1",
            ],
        );
        assert_eq!(code, 0, "page: {err}");
        let got = ranges(&page);
        assert!(got.len() <= 1);
        paged.extend(got);
        offset += page["ProcessedByteLength"].as_u64().expect("processed");
        calls += 1;
    }

    assert_eq!(paged, all);
    assert_eq!(
        calls,
        all.len().max(1),
        "one call per range (the last one also ends the region)"
    );
}

#[test]
fn changes_on_a_missing_file_is_32779() {
    let (_tmp, host, _) = host_with_fixture("vm1", "1", "64M", "6");
    let (rp1, _) = two_reference_points(&host);

    let (code, out, err) = refpoint(
        &host,
        &[
            "changes",
            "--path",
            "/nowhere/disk.avhdx",
            "--limit-id",
            &rct(&rp1),
        ],
    );

    assert_eq!(code, 1);
    assert_eq!(out["ReturnValue"], 32779, "{err}");
    assert!(err.contains("/nowhere/disk.avhdx"), "{err}");
}

#[test]
fn remove_data_keeps_the_reference_point_as_a_base_and_its_export_is_32775() {
    let (tmp, host, _) = host_with_fixture("vm1", "1", "64M", "7");
    let (rp1, rp2) = two_reference_points(&host);
    let id1 = rp1["InstanceID"].as_str().expect("id").to_owned();
    let (code, before, _) = refpoint(
        &host,
        &["changes", "--path", &top(&rp2), "--limit-id", &rct(&rp1)],
    );
    assert_eq!(code, 0);

    let (code, out, err) = refpoint(&host, &["rp", "remove-data", &id1]);

    assert_eq!(code, 0, "remove-data: {err}");
    assert_eq!(out["AffectedReferencePoint"]["HasAssociatedData"], false);
    let to = tmp.path().join("export");
    let (code, out, err) = refpoint(
        &host,
        &[
            "export",
            "--reference-point",
            &id1,
            "--to",
            to.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(out["ReturnValue"], 32775, "{err}");
    let (code, after, err) = refpoint(
        &host,
        &["changes", "--path", &top(&rp2), "--limit-id", &rct(&rp1)],
    );
    assert_eq!(code, 0, "still a base: {err}");
    assert_eq!(ranges(&after), ranges(&before));
}

#[test]
fn destroy_commands_remove_objects_and_unknown_ids_are_32773() {
    let (_tmp, host, _) = host_with_fixture("vm1", "1", "64M", "8");
    let (_, rp2) = two_reference_points(&host);
    let (code, snap, err) = refpoint(&host, &["snapshot", "vm1"]);
    assert_eq!(code, 0, "snapshot: {err}");
    let snap_id = snap["ResultingSnapshot"]["Settings"]["InstanceID"]
        .as_str()
        .expect("snapshot id")
        .to_owned();

    let (code, _, err) = refpoint(&host, &["snapshot-destroy", &snap_id]);
    assert_eq!(code, 0, "snapshot-destroy: {err}");
    let (code, _, err) = refpoint(
        &host,
        &["rp", "destroy", rp2["InstanceID"].as_str().expect("id")],
    );
    assert_eq!(code, 0, "rp destroy: {err}");

    let (_, shown, _) = refpoint(&host, &["vm", "show", "vm1"]);
    assert_eq!(shown["Snapshots"].as_array().map(Vec::len), Some(0));
    assert_eq!(shown["ReferencePoints"].as_array().map(Vec::len), Some(1));
    let (code, out, _) = refpoint(
        &host,
        &[
            "rp",
            "destroy",
            "Microsoft:00000000-0000-4000-8000-000000000001",
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(out["ReturnValue"], 32773);
    let (code, out, _) = refpoint(&host, &["snapshot-destroy", "not-a-guid"]);
    assert_eq!(code, 1);
    assert_eq!(out["ReturnValue"], 32773);
}
