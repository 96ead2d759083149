//! The reference point lifecycle: DestroyReferencePoint / DestroySnapshot
//! reclaim unneeded frozen layers by merging them (journal first) while
//! every other content and later tracking stay the same; pins make
//! destroy/remove-data return InUse; the export history round-trips.
#![allow(clippy::tests_outside_test_module)]

mod scenario;

use refpoint_core::{
    ByteRange, ErrorKind, ExportRecord, ExportedDiskRecord, HostError, PinGuard,
    SNAPSHOT_TYPE_RECOVERY, Tracking,
};
use scenario::*;

const SIZE: u64 = 64 * MIB;

fn small(seed: u64) -> Scenario {
    Scenario::build(SIZE, seed, 10, false)
}

fn changes(s: &Scenario, base: &str, target: &str) -> Vec<ByteRange> {
    match s.host.changes_between(&s.disk, base, target).unwrap() {
        Tracking::Changes(c) => c,
        Tracking::Lost { reason } => panic!("lost: {reason}"),
    }
}

#[test]
fn destroying_the_middle_reference_point_merges_its_layer_and_keeps_later_tracking() {
    let mut s = small(31);
    let before = [s.rp_digest(0), s.rp_digest(2), s.live_digest()];
    let layer = frozen_top(s.rp(1)).to_owned();
    let (rp1, rp2, rp3) = (s.rps[0].clone(), s.rps[1].clone(), s.rps[2].clone());

    s.host.destroy_reference_point(&rp2).unwrap();

    assert!(matches!(
        s.host.reference_point(&rp2),
        Err(HostError::NotFound { .. })
    ));
    assert!(
        !layer.exists(),
        "the destroyed reference point's layer is merged away"
    );
    assert_eq!(
        s.host.reference_point(&rp3).unwrap().disks[0].chain.len(),
        2
    );
    assert_eq!(
        [
            content_digest(
                &s.host.reference_point(&rp1).unwrap().disks[0]
                    .open_chain()
                    .unwrap()
            ),
            content_digest(
                &s.host.reference_point(&rp3).unwrap().disks[0]
                    .open_chain()
                    .unwrap()
            ),
            s.live_digest()
        ],
        before
    );
    assert_eq!(changes(&s, &rp1, &rp3), s.expected(1, 3));
}

#[test]
fn destroying_the_oldest_reference_point_keeps_the_base_layer() {
    let mut s = small(32);
    let base = frozen_top(s.rp(0)).to_owned();
    let (rp1, rp2, rp3) = (s.rps[0].clone(), s.rps[1].clone(), s.rps[2].clone());

    s.host.destroy_reference_point(&rp1).unwrap();

    assert!(base.exists(), "a base layer is never merged");
    assert_eq!(changes(&s, &rp2, &rp3), s.expected(2, 3));
}

#[test]
fn destroying_a_snapshot_merges_its_layer_into_the_active_leaf() {
    let mut s = small(33);
    let snapshot = s
        .host
        .create_snapshot(&s.vm, SNAPSHOT_TYPE_RECOVERY)
        .unwrap()
        .instance_id()
        .to_owned();
    let frozen = s.host.snapshot(&snapshot).unwrap().disks[0]
        .frozen_leaf()
        .to_owned();
    let mut rng = Rng::new(99);
    let epoch4 = s.write_epoch(&mut rng, 6, false, None);
    let before = [
        s.rp_digest(0),
        s.rp_digest(1),
        s.rp_digest(2),
        s.live_digest(),
    ];
    let rp3 = s.rps[2].clone();

    s.host.destroy_snapshot(&snapshot).unwrap();

    assert!(
        !frozen.exists(),
        "the snapshot's layer is merged into the active leaf"
    );
    assert_eq!(
        [
            s.rp_digest(0),
            s.rp_digest(1),
            s.rp_digest(2),
            s.live_digest()
        ],
        before
    );
    assert_eq!(changes(&s, &s.rps[0], &rp3), s.expected(1, 3));
    // Live changes since RP3 cover epochs 3 and 4 (epoch 3 from the journal).
    let limit = s.rp(2).resilient_change_tracking_identifiers()[0].clone();
    let live = s
        .host
        .get_virtual_disk_changes(&s.active_leaf(), &limit, 0, SIZE, 0)
        .unwrap();
    let got: Vec<(u64, u64)> = live
        .changed_byte_offsets
        .iter()
        .copied()
        .zip(live.changed_byte_lengths.iter().copied())
        .collect();
    let mut want = s.written[2].clone();
    want.extend(epoch4);
    assert_eq!(union(&got), union(&want));
}

#[test]
fn pinned_reference_point_cannot_be_destroyed_or_emptied_until_the_pin_is_dropped() {
    let mut s = small(34);
    let rp2 = s.rps[1].clone();
    let pin = s.host.pin_reference_point(&rp2).unwrap();

    let destroy = s.host.destroy_reference_point(&rp2).unwrap_err();
    let remove = s.host.remove_associated_data(&rp2).unwrap_err();

    assert_eq!(destroy.kind(), ErrorKind::InUse);
    assert_eq!(remove.kind(), ErrorKind::InUse);
    assert!(destroy.to_string().contains(&rp2), "{destroy}");
    assert!(s.rp(1).has_associated_data);
    // Released from another thread, as a job thread would.
    std::thread::spawn(move || drop(pin)).join().unwrap();
    s.host.remove_associated_data(&rp2).unwrap();
    assert!(!s.rp(1).has_associated_data);
}

#[test]
fn merge_that_would_rewrite_a_pinned_reference_points_layer_is_refused() {
    let mut s = small(35);
    let (rp2, rp3) = (s.rps[1].clone(), s.rps[2].clone());
    let layer = frozen_top(s.rp(1)).to_owned();
    let pin = s.host.pin_reference_point(&rp3).unwrap();

    let err = s.host.remove_associated_data(&rp2).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::InUse);
    assert!(err.to_string().contains(&rp3), "{err}");
    assert!(s.rp(1).has_associated_data, "nothing committed");
    assert!(layer.exists());
    drop(pin);
    s.host.remove_associated_data(&rp2).unwrap();
    assert!(!layer.exists());
}

#[test]
fn pin_guard_is_send_and_static() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<PinGuard>();
}

#[test]
fn remove_associated_data_twice_is_harmless() {
    let mut s = small(36);
    let rp2 = s.rps[1].clone();
    s.host.remove_associated_data(&rp2).unwrap();
    let digest = s.live_digest();

    s.host.remove_associated_data(&rp2).unwrap();

    assert_eq!(s.live_digest(), digest);
    assert_eq!(changes(&s, &rp2, &s.rps[2]), s.expected(2, 3));
}

#[test]
fn a_layer_modified_outside_refpoint_is_not_merged() {
    let mut s = small(37);
    let rp2 = s.rps[1].clone();
    let layer = frozen_top(s.rp(1)).to_owned();
    {
        let mut w = refpoint_vhdx::VhdxWriter::open(&layer).unwrap();
        w.write_at(0, &[0x42; 512]).unwrap();
    }

    let err = s.host.remove_associated_data(&rp2).unwrap_err();

    assert!(
        matches!(err, HostError::LayerModified { ref path, .. } if *path == layer),
        "{err}"
    );
    assert!(layer.exists());
    assert!(
        !s.journal().exists(),
        "nothing journaled from a modified layer"
    );
}

#[test]
fn export_history_round_trips_survives_restart_and_remove_data() {
    let mut s = small(38);
    let rp2 = s.rps[1].clone();
    let dir = s.tmp.path().join("exports");
    let record = ExportRecord {
        export_directory: dir.clone(),
        vm_folder: dir.join("tracked"),
        manifest: dir.join("tracked/refpoint-export.json"),
        disks: vec![ExportedDiskRecord {
            instance_id: s.disk.clone(),
            file: dir.join("tracked/Virtual Hard Disks/base.vhdx"),
            data_write_guid: uuid::Uuid::from_u128(7),
        }],
    };

    s.host.record_export(&rp2, record.clone()).unwrap();
    s.reopen();
    s.host.remove_associated_data(&rp2).unwrap();

    assert_eq!(s.host.exports_of(&rp2).unwrap(), vec![record.clone()]);
    let relative = ExportRecord {
        manifest: "relative/refpoint-export.json".into(),
        ..record
    };
    let err = s.host.record_export(&rp2, relative).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    s.host.destroy_reference_point(&rp2).unwrap();
    assert_eq!(
        s.host.exports_of(&rp2).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}
