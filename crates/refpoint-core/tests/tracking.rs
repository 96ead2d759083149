//! Change tracking through three reference points on a sparse 6 GiB disk:
//! `changes_between` and `GetVirtualDiskChanges` report exactly the bytes
//! written (sector granularity, hence also block granularity), paging
//! gives the same union, `RemoveAssociatedData` keeps every other content
//! and the answers (then from the journal, also after a restart), and each
//! cause of lost tracking is reported with the disk named.
#![allow(clippy::tests_outside_test_module)]

mod scenario;

use refpoint_core::{ByteRange, ErrorKind, HostError, Tracking};
use scenario::*;

const SIZE: u64 = 6 * GIB;

fn three_rps(seed: u64) -> Scenario {
    Scenario::build(SIZE, seed, 24, true)
}

fn changes(s: &Scenario, base: usize, target: usize) -> Vec<ByteRange> {
    match s
        .host
        .changes_between(&s.disk, &s.rps[base], &s.rps[target])
        .unwrap()
    {
        Tracking::Changes(c) => c,
        Tracking::Lost { reason } => panic!("tracking lost: {reason}"),
    }
}

fn lost_reason(s: &Scenario, base: usize, target: usize) -> String {
    match s
        .host
        .changes_between(&s.disk, &s.rps[base], &s.rps[target])
        .unwrap()
    {
        Tracking::Lost { reason } => reason,
        Tracking::Changes(c) => panic!("expected lost tracking, got {} ranges", c.len()),
    }
}

/// All pages of GetVirtualDiskChanges over the whole disk, in windows of
/// `window` bytes with at most `max_ranges` ranges per call.
fn paged(
    s: &Scenario,
    path: &std::path::Path,
    limit: &str,
    window: u64,
    max_ranges: usize,
) -> Vec<ByteRange> {
    let mut all = Vec::new();
    let mut offset = 0;
    let mut calls = 0;
    while offset < SIZE {
        let length = window.min(SIZE - offset);
        let page = s
            .host
            .get_virtual_disk_changes(path, limit, offset, length, max_ranges)
            .unwrap();
        if max_ranges > 0 {
            assert!(page.changed_byte_offsets.len() <= max_ranges);
        }
        assert_eq!(
            page.changed_byte_offsets.len(),
            page.changed_byte_lengths.len()
        );
        assert!(page.processed_byte_length > 0 && page.processed_byte_length <= length);
        for (o, l) in page
            .changed_byte_offsets
            .iter()
            .zip(&page.changed_byte_lengths)
        {
            assert!(
                *o >= offset && o + l <= offset + page.processed_byte_length,
                "range outside the processed part"
            );
            all.push((*o, *l));
        }
        offset += page.processed_byte_length;
        calls += 1;
    }
    assert!(calls >= 1);
    union(&all)
}

#[test]
fn changes_between_reference_points_are_exactly_the_bytes_written() {
    let s = three_rps(7);
    assert!(
        s.written.iter().flatten().any(|&(o, _)| o > 4 * GIB),
        "some writes lie past the first 4 GiB"
    );

    for (base, target) in [(0, 1), (1, 2), (0, 2)] {
        let got = changes(&s, base, target);
        let want = s.expected(base + 1, target + 1);

        assert_eq!(got, want, "RP{} → RP{}", base + 1, target + 1);
        assert_eq!(blocks(&got, LEAF_BLOCK), blocks(&want, LEAF_BLOCK));
    }
    assert_eq!(
        changes(&s, 1, 1),
        Vec::new(),
        "a reference point against itself"
    );
}

#[test]
fn get_virtual_disk_changes_answers_for_frozen_layers_and_the_active_leaf() {
    let s = three_rps(8);
    let rct = |i: usize| s.rp(i).resilient_change_tracking_identifiers()[0].clone();

    // RP3's frozen top represents RP3: changes since RP1 = epochs 1 and 2.
    let top3 = frozen_top(s.rp(2)).to_owned();
    let all = s
        .host
        .get_virtual_disk_changes(&top3, &rct(0), 0, SIZE, 0)
        .unwrap();
    let got = union(
        &all.changed_byte_offsets
            .iter()
            .copied()
            .zip(all.changed_byte_lengths.iter().copied())
            .collect::<Vec<_>>(),
    );
    assert_eq!(got, s.expected(1, 3));
    assert_eq!(all.processed_byte_length, SIZE);

    // The active leaf is the live disk: changes since RP3 = epoch 3.
    let live = paged(&s, &s.active_leaf(), &rct(2), SIZE, 0);
    assert_eq!(live, s.expected(3, 4));

    // RP1's frozen top (the base) against RP1 itself: nothing.
    let base = frozen_top(s.rp(0)).to_owned();
    let none = s
        .host
        .get_virtual_disk_changes(&base, &rct(0), 0, SIZE, 0)
        .unwrap();
    assert!(none.changed_byte_offsets.is_empty());
}

#[test]
fn paging_with_one_range_per_call_and_small_windows_gives_the_same_union() {
    let s = three_rps(9);
    let limit = s.rp(0).resilient_change_tracking_identifiers()[0].clone();
    let top3 = frozen_top(s.rp(2)).to_owned();

    let one_by_one = paged(&s, &top3, &limit, 256 * MIB, 1);
    let windows = paged(&s, &top3, &limit, 64 * MIB + 512, 3);

    assert_eq!(one_by_one, s.expected(1, 3));
    assert_eq!(windows, s.expected(1, 3));
}

#[test]
fn remove_associated_data_keeps_other_contents_and_answers_from_the_journal() {
    let mut s = three_rps(10);
    let before = [s.rp_digest(0), s.rp_digest(2), s.live_digest()];
    let answers = [changes(&s, 0, 2), changes(&s, 1, 2), changes(&s, 0, 1)];
    let merged_layer = frozen_top(s.rp(1)).to_owned();

    s.host.remove_associated_data(&s.rps[1]).unwrap();

    assert!(!s.rp(1).has_associated_data);
    assert!(!merged_layer.exists(), "RP2's frozen layer is merged away");
    assert_eq!([s.rp_digest(0), s.rp_digest(2), s.live_digest()], before);
    assert_eq!(
        [changes(&s, 0, 2), changes(&s, 1, 2), changes(&s, 0, 1)],
        answers
    );
    assert!(s.journal().exists());
    // A restart: RCT IDs and answers stay valid.
    s.reopen();
    assert_eq!(
        [changes(&s, 0, 2), changes(&s, 1, 2)],
        [answers[0].clone(), answers[1].clone()]
    );
    assert_eq!([s.rp_digest(0), s.rp_digest(2), s.live_digest()], before);
    // They come from the journal: without it, tracking is lost.
    std::fs::remove_file(s.journal()).unwrap();
    let reason = lost_reason(&s, 1, 2);
    assert!(
        reason.contains(&s.disk) && reason.contains("missing"),
        "{reason}"
    );
}

#[test]
fn remove_associated_data_of_the_newest_reference_point_merges_into_the_active_leaf() {
    let s = {
        let mut s = three_rps(11);
        let before = [s.rp_digest(0), s.rp_digest(1), s.live_digest()];
        let answers = [changes(&s, 0, 2), changes(&s, 1, 2)];

        s.host.remove_associated_data(&s.rps[2]).unwrap();

        assert_eq!([s.rp_digest(0), s.rp_digest(1), s.live_digest()], before);
        assert_eq!([changes(&s, 0, 2), changes(&s, 1, 2)], answers);
        s
    };
    // Live changes since RP3 now come from an active leaf that also holds
    // epoch 2's sectors: a superset, never missing a write.
    let limit = s.rp(2).resilient_change_tracking_identifiers()[0].clone();
    let live = paged(&s, &s.active_leaf(), &limit, SIZE, 0);
    let written = s.expected(3, 4);
    for r in &written {
        assert!(
            live.iter()
                .any(|l| l.offset <= r.offset && r.offset + r.length <= l.offset + l.length),
            "write {r:?} not covered"
        );
    }
}

#[test]
fn lost_when_the_journal_record_is_corrupt() {
    let mut s = three_rps(12);
    s.host.remove_associated_data(&s.rps[1]).unwrap();
    let mut bytes = std::fs::read(s.journal()).unwrap();
    bytes[120] ^= 0x40;
    std::fs::write(s.journal(), bytes).unwrap();

    let reason = lost_reason(&s, 0, 1);

    assert!(
        reason.contains(&s.disk) && reason.contains("corrupt"),
        "{reason}"
    );
    s.reopen();
    assert!(lost_reason(&s, 0, 2).contains("corrupt"));
}

#[test]
fn lost_when_the_journal_has_a_gap() {
    let s = three_rps(13);
    let mut s = s;
    s.host.remove_associated_data(&s.rps[1]).unwrap();
    // Drop the first record: the second now sits where the catalog expects record 0.
    let bytes = std::fs::read(s.journal()).unwrap();
    let first_length = 96 + 16 * u64::from_le_bytes(bytes[80..88].try_into().unwrap()) + 32;
    let mut rest = bytes[usize::try_from(first_length).unwrap()..].to_vec();
    rest.resize(bytes.len(), 0);
    std::fs::write(s.journal(), rest).unwrap();

    let reason = lost_reason(&s, 0, 1);

    assert!(
        reason.contains(&s.disk) && reason.contains("gap"),
        "{reason}"
    );
}

#[test]
fn lost_when_the_journal_is_truncated() {
    let mut s = three_rps(14);
    s.host.remove_associated_data(&s.rps[1]).unwrap();
    let length = std::fs::metadata(s.journal()).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.journal())
        .unwrap()
        .set_len(length - 10)
        .unwrap();

    let reason = lost_reason(&s, 1, 2);

    assert!(
        reason.contains(&s.disk) && reason.contains("truncated"),
        "{reason}"
    );
}

#[test]
fn lost_when_a_frozen_layer_was_modified_outside_refpoint() {
    let s = three_rps(15);
    let top3 = frozen_top(s.rp(2)).to_owned();
    {
        let mut w = refpoint_vhdx::VhdxWriter::open(&top3).unwrap();
        w.write_at(0, &[0xEE; 512]).unwrap();
    }

    let reason = lost_reason(&s, 1, 2);

    assert!(
        reason.contains(&s.disk) && reason.contains("modified outside refpoint"),
        "{reason}"
    );
    let limit = s.rp(1).resilient_change_tracking_identifiers()[0].clone();
    let err = s
        .host
        .get_virtual_disk_changes(&top3, &limit, 0, SIZE, 0)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains(&s.disk), "{err}");
}

#[test]
fn lost_when_the_base_is_newer_than_the_target() {
    let s = three_rps(16);

    let reason = lost_reason(&s, 2, 0);

    assert!(
        reason.contains(&s.disk) && reason.contains("newer"),
        "{reason}"
    );
}

#[test]
fn lost_when_the_disk_did_not_exist_at_the_base() {
    let mut s = Scenario::build(64 * MIB, 17, 6, false);
    let extra = s.tmp.path().join("disks/extra.vhdx");
    refpoint_vhdx::create_dynamic(&extra, &refpoint_vhdx::CreateOptions::new(64 * MIB)).unwrap();
    let added = s.host.add_disk(&s.vm, &extra).unwrap().instance_id.clone();
    let rp4 = s
        .host
        .create_reference_point(&s.vm)
        .unwrap()
        .instance_id
        .clone();

    let got = s.host.changes_between(&added, &s.rps[0], &rp4).unwrap();

    match got {
        Tracking::Lost { reason } => {
            assert!(
                reason.contains(&added) && reason.contains("did not exist"),
                "{reason}"
            );
        }
        Tracking::Changes(c) => panic!("expected lost, got {c:?}"),
    }
}

#[test]
fn get_virtual_disk_changes_on_a_missing_file_is_file_not_found() {
    let s = Scenario::build(64 * MIB, 18, 4, false);
    let limit = s.rp(0).resilient_change_tracking_identifiers()[0].clone();
    let missing = s.tmp.path().join("nowhere.avhdx");

    let err = s
        .host
        .get_virtual_disk_changes(&missing, &limit, 0, MIB, 0)
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::FileNotFound);
    assert!(matches!(err, HostError::FileNotFound { ref path, .. } if *path == missing));
}

#[test]
fn get_virtual_disk_changes_refuses_foreign_newer_or_malformed_limit_ids() {
    let s = Scenario::build(64 * MIB, 19, 4, false);
    let top2 = frozen_top(s.rp(1)).to_owned();
    let rct3 = s.rp(2).resilient_change_tracking_identifiers()[0].clone();
    let foreign = "rct:{00000000-0000-4000-8000-000000000001}:1";

    for limit in [
        rct3.as_str(),
        foreign,
        "not-an-rct-id",
        "rct:{00000000-0000-4000-8000-000000000001}:x",
    ] {
        let err = s
            .host
            .get_virtual_disk_changes(&top2, limit, 0, MIB, 0)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{limit}: {err}");
    }
    let limit = s.rp(0).resilient_change_tracking_identifiers()[0].clone();
    let err = s
        .host
        .get_virtual_disk_changes(&top2, &limit, 60 * MIB, 8 * MIB, 0)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidParameter,
        "region past the end: {err}"
    );
    let stranger = s.tmp.path().join("disks/stranger.vhdx");
    refpoint_vhdx::create_dynamic(&stranger, &refpoint_vhdx::CreateOptions::new(MIB * 8)).unwrap();
    let err = s
        .host
        .get_virtual_disk_changes(&stranger, &limit, 0, MIB, 0)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidParameter,
        "not a layer of a VM: {err}"
    );
}
