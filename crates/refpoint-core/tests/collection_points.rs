//! Collections: DefineCollection/AddMember/RemoveMember/DestroyCollection,
//! reference point and snapshot collections frozen at one instant under the
//! active leaves' write locks, their lifecycle and catalog rules.

mod common;

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use refpoint_core::{
        COLLECTION_CONSISTENCY_CRASH, COLLECTION_SNAPSHOT_TYPE_RECOVERY,
        COLLECTION_SNAPSHOT_TYPE_STANDARD, CatalogError, CollectionPointSettings, ErrorKind, Host,
        HostError, ObjectKind,
    };
    use refpoint_vhdx::VhdxWriter;

    use super::common::{Fixture, dissect_distinct_bytes, listing, qemu_reads_pattern};

    /// A host with VMs "alpha" and "beta" (two disks each) and "gamma" (one).
    fn three_vms() -> Fixture {
        let mut f = Fixture::new();
        for (vm, disks) in [("alpha", 2), ("beta", 2), ("gamma", 1)] {
            let paths: Vec<_> = (0..disks)
                .map(|i| f.qemu_disk(&format!("{vm}-{i}.vhdx"), "8M"))
                .collect();
            f.host.create_vm(vm, &paths).unwrap();
        }
        f
    }

    fn group(f: &mut Fixture, vms: &[&str]) -> String {
        let id = f.host.define_collection("group", None, 0).unwrap().cim_id();
        for vm in vms {
            f.host.add_member("group", vm).unwrap();
        }
        id
    }

    fn settings(timeout: Duration) -> CollectionPointSettings {
        CollectionPointSettings {
            lock_timeout: timeout,
            ..CollectionPointSettings::default()
        }
    }

    fn reopen(f: Fixture) -> Fixture {
        let Fixture { tmp, host } = f;
        drop(host);
        let host = Host::open(&tmp.path().join("host")).unwrap();
        Fixture { tmp, host }
    }

    #[test]
    fn define_add_remove_destroy_persist_across_reopen() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta", "gamma"]);
        f.host.remove_member(&id, "beta").unwrap();

        let f = reopen(f);

        let c = f.host.collection("GROUP").unwrap();
        assert_eq!(c.cim_id(), id);
        let members: Vec<_> = c.member_guids().collect();
        assert_eq!(
            members,
            vec![
                f.host.vm("alpha").unwrap().name,
                f.host.vm("gamma").unwrap().name
            ]
        );
        let mut f = f;
        f.host.destroy_collection(&id).unwrap();
        assert!(f.host.collections().is_empty());
    }

    #[test]
    fn define_with_a_given_id_uses_it_and_refuses_it_twice() {
        let mut f = three_vms();
        let given = "{6f0c8e4a-1d2b-4c3d-9e8f-0a1b2c3d4e5f}";

        let id = f
            .host
            .define_collection("one", Some(given), 0)
            .unwrap()
            .cim_id();
        let again = f.host.define_collection("two", Some(given), 0).unwrap_err();

        assert_eq!(id, "6F0C8E4A-1D2B-4C3D-9E8F-0A1B2C3D4E5F");
        assert!(
            matches!(
                again,
                HostError::InvalidParameter {
                    parameter: "Id",
                    ..
                }
            ),
            "{again:?}"
        );
    }

    #[test]
    fn define_rules_each_have_their_error() {
        let mut f = three_vms();
        f.host.define_collection("taken", None, 0).unwrap();

        let nested = f.host.define_collection("n", None, 1).unwrap_err();
        let bad_type = f.host.define_collection("t", None, 7).unwrap_err();
        let duplicate = f.host.define_collection("TAKEN", None, 0).unwrap_err();
        let empty = f.host.define_collection("", None, 0).unwrap_err();
        let not_guid = f.host.define_collection("g", Some("abc"), 0).unwrap_err();

        assert_eq!(nested.kind(), ErrorKind::NotSupported);
        assert!(matches!(
            bad_type,
            HostError::InvalidParameter {
                parameter: "Type",
                ..
            }
        ));
        assert!(matches!(
            duplicate,
            HostError::InvalidParameter {
                parameter: "Name",
                ..
            }
        ));
        assert!(matches!(
            empty,
            HostError::InvalidParameter {
                parameter: "Name",
                ..
            }
        ));
        assert!(matches!(
            not_guid,
            HostError::InvalidParameter {
                parameter: "Id",
                ..
            }
        ));
        assert_eq!(f.host.collections().len(), 1);
    }

    #[test]
    fn membership_errors_name_the_object() {
        let mut f = three_vms();
        group(&mut f, &["alpha"]);

        let unknown_vm = f.host.add_member("group", "nobody").unwrap_err();
        let unknown_collection = f.host.add_member("nothing", "alpha").unwrap_err();
        let twice = f.host.add_member("group", "alpha").unwrap_err();
        let not_member = f.host.remove_member("group", "beta").unwrap_err();

        assert!(matches!(
            unknown_vm,
            HostError::NotFound { what: ObjectKind::VirtualSystem, ref id } if id == "nobody"
        ));
        assert!(matches!(
            unknown_collection,
            HostError::NotFound { what: ObjectKind::Collection, ref id } if id == "nothing"
        ));
        assert!(matches!(
            twice,
            HostError::InvalidState {
                operation: "AddMember",
                ..
            }
        ));
        assert!(matches!(
            not_member,
            HostError::InvalidState {
                operation: "RemoveMember",
                ..
            }
        ));
    }

    #[test]
    fn collection_reference_point_freezes_every_disk_of_every_member_in_one_commit() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta", "gamma"]);
        let leaves_before: Vec<_> = ["alpha", "beta", "gamma"]
            .iter()
            .flat_map(|vm| {
                f.host
                    .vm(vm)
                    .unwrap()
                    .disks
                    .iter()
                    .map(|d| d.active_leaf().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();

        let point = f
            .host
            .create_collection_reference_point(&id, &CollectionPointSettings::default())
            .unwrap()
            .clone();

        assert_eq!(point.reference_point_type, 2);
        assert_eq!(point.consistency_level, COLLECTION_CONSISTENCY_CRASH);
        assert_eq!(
            point
                .virtual_system_collection_id
                .to_string()
                .to_uppercase(),
            id
        );
        assert!(!point.has_associated_log());
        assert_eq!(point.members.len(), 3);
        let frozen: Vec<_> = point
            .members
            .iter()
            .flat_map(|m| {
                let rp = f.host.reference_point(m).unwrap();
                assert_eq!(rp.consistency_level, 2, "member RPs use the VM order");
                rp.disks
                    .iter()
                    .map(|d| d.frozen_leaf().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(frozen, leaves_before);
        for vm in ["alpha", "beta", "gamma"] {
            for d in &f.host.vm(vm).unwrap().disks {
                assert!(!leaves_before.contains(&d.active_leaf().to_owned()));
            }
        }
        let f = reopen(f);
        assert_eq!(
            f.host.reference_point_collection(&point.cim_id()).unwrap(),
            &point
        );
        assert_eq!(
            f.host
                .reference_point_collections(Some("group"))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_writer_holding_a_leaf_makes_the_freeze_time_out_and_change_nothing() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta"]);
        let leaf = f.host.vm("beta").unwrap().disks[1].active_leaf().to_owned();
        let catalog = std::fs::read(f.host.catalog_path()).unwrap();
        let files_before = listing(&f.host.dir().join("vms"));
        let writer = VhdxWriter::open(&leaf).unwrap();

        let err = f
            .host
            .create_collection_reference_point(&id, &settings(Duration::from_millis(50)))
            .unwrap_err();

        drop(writer);
        assert!(
            matches!(&err, HostError::Timeout { operation: "CreateReferencePoint", object, .. } if object == &leaf.display().to_string()),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(std::fs::read(f.host.catalog_path()).unwrap(), catalog);
        assert_eq!(listing(&f.host.dir().join("vms")), files_before);
        assert!(f.host.reference_point_collections(None).unwrap().is_empty());
    }

    #[test]
    fn a_write_in_progress_is_waited_for_and_lands_in_the_frozen_layer() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "gamma"]);
        let leaf = f.host.vm("gamma").unwrap().disks[0]
            .active_leaf()
            .to_owned();
        let mut writer = VhdxWriter::open(&leaf).unwrap();
        let (opened, go) = mpsc::channel();
        let slow_writer = std::thread::spawn(move || {
            opened.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            writer.write_at(0, &[0x77; 4096]).unwrap();
            writer.flush().unwrap();
        });
        go.recv().unwrap();

        let point = f
            .host
            .create_collection_reference_point(&id, &settings(Duration::from_secs(20)))
            .unwrap()
            .clone();

        slow_writer.join().unwrap();
        let gamma = f.host.vm("gamma").unwrap().name;
        let member = point
            .members
            .iter()
            .map(|m| f.host.reference_point(m).unwrap())
            .find(|r| r.virtual_system_identifier == gamma)
            .unwrap();
        assert_eq!(member.disks[0].frozen_leaf(), leaf);
        assert!(qemu_reads_pattern(&leaf, 0x77, "0", "4K"));
        member.disks[0].open_chain().unwrap();
    }

    #[test]
    fn an_empty_collection_cannot_be_frozen() {
        let mut f = three_vms();
        let id = group(&mut f, &[]);

        let err = f
            .host
            .create_collection_reference_point(&id, &CollectionPointSettings::default())
            .unwrap_err();

        assert!(matches!(err, HostError::InvalidState { .. }), "{err:?}");
    }

    #[test]
    fn application_consistency_is_not_supported() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha"]);

        let err = f
            .host
            .create_collection_reference_point(
                &id,
                &CollectionPointSettings {
                    consistency_level: Some(1),
                    ..CollectionPointSettings::default()
                },
            )
            .unwrap_err();

        assert_eq!(err.kind(), ErrorKind::NotSupported);
    }

    #[test]
    fn members_go_with_their_collection() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta"]);
        let point = f
            .host
            .create_collection_reference_point(&id, &CollectionPointSettings::default())
            .unwrap()
            .clone();
        let member = point.members[0].clone();

        let alone = f.host.destroy_reference_point(&member).unwrap_err();
        let collection = f.host.destroy_collection(&id).unwrap_err();
        f.host
            .destroy_collection_reference_point(&point.cim_id())
            .unwrap();

        assert!(matches!(
            alone,
            HostError::InvalidState {
                operation: "DestroyReferencePoint",
                ..
            }
        ));
        assert!(matches!(
            collection,
            HostError::InvalidState {
                operation: "DestroyCollection",
                ..
            }
        ));
        assert!(f.host.reference_points(None).unwrap().is_empty());
        assert!(matches!(
            f.host.reference_point_collection(&point.cim_id()),
            Err(HostError::NotFound {
                what: ObjectKind::ReferencePointCollection,
                ..
            })
        ));
        f.host.destroy_collection(&id).unwrap();
    }

    #[test]
    fn a_pinned_member_blocks_destroy_and_remove_data_without_change() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta"]);
        let point = f
            .host
            .create_collection_reference_point(&id, &CollectionPointSettings::default())
            .unwrap()
            .clone();
        let pin = f.host.pin_reference_point(&point.members[1]).unwrap();

        let destroy = f
            .host
            .destroy_collection_reference_point(&point.cim_id())
            .unwrap_err();
        let remove = f
            .host
            .remove_collection_associated_data(&point.cim_id())
            .unwrap_err();

        drop(pin);
        assert_eq!(destroy.kind(), ErrorKind::InUse);
        assert_eq!(remove.kind(), ErrorKind::InUse);
        assert!(
            f.host
                .reference_point(&point.members[0])
                .unwrap()
                .has_associated_data
        );
        assert!(f.host.reference_point_collection(&point.cim_id()).is_ok());
    }

    #[test]
    fn remove_associated_data_clears_every_member() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta"]);
        let point = f
            .host
            .create_collection_reference_point(&id, &CollectionPointSettings::default())
            .unwrap()
            .clone();
        assert!(f.host.collection_has_associated_data(&point));

        f.host
            .remove_collection_associated_data(&point.cim_id())
            .unwrap();
        f.host
            .remove_collection_associated_data(&point.cim_id())
            .unwrap();

        for m in &point.members {
            assert!(!f.host.reference_point(m).unwrap().has_associated_data);
        }
        assert!(!f.host.collection_has_associated_data(&point));
    }

    #[test]
    fn recovery_snapshot_collection_converts_into_a_reference_point_collection() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta", "gamma"]);
        let snaps = f
            .host
            .create_collection_snapshot(
                &id,
                COLLECTION_SNAPSHOT_TYPE_RECOVERY,
                &CollectionPointSettings::default(),
            )
            .unwrap()
            .clone();
        assert_eq!(snaps.members.len(), 3);
        let alone = f
            .host
            .convert_to_reference_point(&snaps.members[0])
            .unwrap_err();

        let point = f
            .host
            .convert_collection_snapshot(&snaps.cim_id())
            .unwrap()
            .clone();

        assert!(matches!(alone, HostError::InvalidState { .. }), "{alone:?}");
        assert_eq!(
            point.source_snapshot_collection.as_deref(),
            Some(snaps.cim_id().as_str())
        );
        assert_eq!(point.creation_time, snaps.creation_time);
        assert_eq!(point.members.len(), 3);
        assert!(f.host.snapshot_collections().is_empty());
        for vm in ["alpha", "beta", "gamma"] {
            assert!(f.host.snapshots(vm).unwrap().is_empty());
        }
    }

    #[test]
    fn standard_snapshot_collection_cannot_be_converted_and_bad_types_are_refused() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha"]);
        let standard = f
            .host
            .create_collection_snapshot(
                &id,
                COLLECTION_SNAPSHOT_TYPE_STANDARD,
                &CollectionPointSettings::default(),
            )
            .unwrap()
            .cim_id();

        let convert = f.host.convert_collection_snapshot(&standard).unwrap_err();
        let zero = f
            .host
            .create_collection_snapshot(&id, 0, &CollectionPointSettings::default())
            .unwrap_err();
        f.host.destroy_snapshot_collection(&standard).unwrap();

        assert!(matches!(
            convert,
            HostError::InvalidState {
                operation: "ConvertToReferencePoint",
                ..
            }
        ));
        assert!(matches!(
            zero,
            HostError::InvalidParameter {
                parameter: "SnapshotType",
                ..
            }
        ));
        assert!(f.host.snapshots("alpha").unwrap().is_empty());
    }

    #[test]
    fn catalog_without_collection_lists_loads_and_stays_readable() {
        let f = three_vms();
        let path = f.host.catalog_path();
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["Collections"], serde_json::json!([]));
        assert!(json.get("ReferencePointCollections").is_none());
        json.as_object_mut()
            .unwrap()
            .remove("ReferencePointCollections");
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

        let f = reopen(f);

        assert!(f.host.collections().is_empty());
        assert_eq!(f.host.vms().len(), 3);
    }

    #[test]
    fn catalog_whose_collection_names_a_missing_member_is_corrupt() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha", "beta"]);
        f.host
            .create_collection_reference_point(&id, &CollectionPointSettings::default())
            .unwrap();
        let path = f.host.catalog_path();
        let Fixture { tmp, host } = f;
        drop(host);
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        json["ReferencePointCollections"][0]["Members"][0] = serde_json::json!(
            "Microsoft:11111111-1111-4111-8111-111111111111\\22222222-2222-4222-8222-222222222222"
        );
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

        let err = Host::open(&tmp.path().join("host")).unwrap_err();

        assert!(
            matches!(
                err,
                HostError::CatalogCorrupt {
                    detail: CatalogError::CollectionMember { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn catalog_with_a_collection_member_twice_is_corrupt() {
        let mut f = three_vms();
        group(&mut f, &["alpha"]);
        let path = f.host.catalog_path();
        let Fixture { tmp, host } = f;
        drop(host);
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let first = json["Collections"][0]["Members"][0].clone();
        json["Collections"][0]["Members"]
            .as_array_mut()
            .unwrap()
            .push(first);
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

        let err = Host::open(&tmp.path().join("host")).unwrap_err();

        assert!(
            matches!(err, HostError::CatalogCorrupt { detail: CatalogError::CollectionMember { ref reason, .. }, .. } if reason.contains("twice")),
            "{err:?}"
        );
    }

    #[test]
    fn writes_after_the_freeze_go_to_the_new_leaves() {
        let mut f = three_vms();
        let id = group(&mut f, &["alpha"]);
        let old = f.host.vm("alpha").unwrap().disks[0]
            .active_leaf()
            .to_owned();
        f.host
            .create_collection_reference_point(&id, &CollectionPointSettings::default())
            .unwrap();
        let disk = f.host.vm("alpha").unwrap().disks[0].instance_id.clone();

        let mut writer = f.host.open_disk_writer("alpha", &disk).unwrap();
        writer.write_at(0, &[0x31; 4096]).unwrap();
        drop(writer);

        let new = f.host.vm("alpha").unwrap().disks[0]
            .active_leaf()
            .to_owned();
        assert_ne!(new, old);
        assert_eq!(dissect_distinct_bytes(&new, 0, 4096), vec![0x31]);
        assert!(qemu_reads_pattern(&old, 0, "0", "4K"));
    }
}
