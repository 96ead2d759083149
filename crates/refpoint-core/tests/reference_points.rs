//! Reference points: ConvertToReferencePoint, CreateReferencePoint,
//! DestroyReferencePoint, lookups, persistence, the settings document.

mod common;

#[cfg(test)]
mod tests {
    use refpoint_core::ids::cim_guid;
    use refpoint_core::{
        ErrorKind, Host, HostError, ObjectKind, RctId, ReferencePointSettings, SNAPSHOT_TYPE_FULL,
        SNAPSHOT_TYPE_RECOVERY,
    };

    use super::common::{Fixture, chain_distinct_bytes, instances, qemu_write};

    /// A host with VM "Pair" (two disks; the first holds 0x5a in its first MiB).
    fn pair() -> Fixture {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("one.vhdx", "64M");
        let d1 = f.qemu_disk("two.vhdx", "16M");
        qemu_write(&d0, 0x5a, "0", "1M");
        f.host.create_vm("Pair", &[d0, d1]).unwrap();
        f
    }

    #[test]
    fn convert_removes_the_snapshot_and_yields_rp_with_paired_arrays() {
        let mut f = pair();
        let snap = f
            .host
            .create_snapshot("Pair", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        let rp = f
            .host
            .convert_to_reference_point(snap.instance_id())
            .unwrap()
            .clone();

        assert!(f.host.snapshots("Pair").unwrap().is_empty());
        assert!(matches!(
            f.host.snapshot(snap.instance_id()),
            Err(HostError::NotFound { .. })
        ));
        let vm = f.host.vm("Pair").unwrap();
        assert_eq!(
            rp.instance_id,
            format!("Microsoft:{}\\{}", vm.cim_name(), cim_guid(&rp.guid))
        );
        assert_eq!(rp.virtual_system_identifier, vm.name);
        assert_eq!(rp.reference_point_type, 2);
        assert_eq!(rp.consistency_level, 2);
        assert!(rp.has_associated_data);
        assert_eq!(rp.creation_time, snap.settings.creation_time);
        assert_eq!(rp.element_name, snap.settings.element_name);
        assert_eq!(rp.source_snapshot, snap.settings.instance_id);
        assert_eq!(rp.settings, snap.vm_settings);
        let disks = rp.virtual_disk_identifiers();
        let rcts = rp.resilient_change_tracking_identifiers();
        assert_eq!(disks.len(), 2);
        assert_eq!(rcts.len(), 2);
        for (i, disk) in vm.disks.iter().enumerate() {
            assert_eq!(disks[i], disk.instance_id);
            assert_eq!(rcts[i], format!("rct:{{{}}}:1", cim_guid(&disk.disk_guid)));
            assert_eq!(
                rcts[i].parse::<RctId>().unwrap(),
                RctId {
                    disk: disk.disk_guid,
                    epoch: 1
                }
            );
            assert_eq!(rp.disks[i].chain, snap.disks[i].chain);
        }
    }

    #[test]
    fn each_reference_point_starts_a_new_epoch() {
        let mut f = pair();
        let first = f.host.create_reference_point("Pair").unwrap().clone();

        let second = f.host.create_reference_point("Pair").unwrap().clone();

        assert_eq!(first.disks[0].rct_epoch, 1);
        assert_eq!(second.disks[0].rct_epoch, 2);
        assert_eq!(f.host.vm("Pair").unwrap().disks[0].rct_epoch, 2);
        assert_ne!(
            first.resilient_change_tracking_identifiers(),
            second.resilient_change_tracking_identifiers()
        );
    }

    #[test]
    fn create_reference_point_leaves_no_snapshot_and_adds_a_leaf() {
        let mut f = pair();

        let rp = f.host.create_reference_point("Pair").unwrap().clone();

        assert!(f.host.snapshots("Pair").unwrap().is_empty());
        let vm = f.host.vm("Pair").unwrap();
        assert_eq!(vm.disks[0].chain.len(), 2);
        assert_eq!(vm.disks[0].active_leaf(), rp.disks[0].epoch_layer);
        assert!(rp.disks[0].epoch_layer.exists());
    }

    #[test]
    fn full_snapshot_cannot_be_converted() {
        let mut f = pair();
        let snap = f
            .host
            .create_snapshot("Pair", SNAPSHOT_TYPE_FULL)
            .unwrap()
            .clone();

        let err = f
            .host
            .convert_to_reference_point(snap.instance_id())
            .unwrap_err();

        assert_eq!(err.kind(), ErrorKind::InvalidState, "{err:?}");
        assert!(
            f.host.snapshot(snap.instance_id()).is_ok(),
            "the snapshot must stay"
        );
        assert!(f.host.reference_points(None).unwrap().is_empty());
    }

    #[test]
    fn application_consistency_on_conversion_is_not_supported() {
        let mut f = pair();
        let snap = f
            .host
            .create_snapshot("Pair", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        let err = f
            .host
            .convert_to_reference_point_with(
                snap.instance_id(),
                &ReferencePointSettings {
                    consistency_level: Some(1),
                },
            )
            .unwrap_err();

        assert_eq!(err.kind(), ErrorKind::NotSupported, "{err:?}");
        assert!(f.host.snapshot(snap.instance_id()).is_ok());
    }

    #[test]
    fn convert_after_a_frozen_layer_was_modified_fails_and_keeps_the_snapshot() {
        let mut f = pair();
        let snap = f
            .host
            .create_snapshot("Pair", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();
        let frozen = snap.disks[1].frozen_leaf().to_owned();
        qemu_write(&frozen, 0x01, "0", "4k");

        let err = f
            .host
            .convert_to_reference_point(snap.instance_id())
            .unwrap_err();

        assert!(
            matches!(err, HostError::LayerModified { ref path, .. } if path == &frozen),
            "{err:?}"
        );
        assert!(f.host.snapshot(snap.instance_id()).is_ok());
    }

    #[test]
    fn convert_of_unknown_or_malformed_snapshot_id() {
        let mut f = pair();

        let unknown = f
            .host
            .convert_to_reference_point("Microsoft:5A7C2C5E-0000-4000-8000-000000000000")
            .unwrap_err();
        let malformed = f
            .host
            .convert_to_reference_point("Microsoft:x\\y")
            .unwrap_err();

        assert!(
            matches!(
                unknown,
                HostError::NotFound {
                    what: ObjectKind::Snapshot,
                    ..
                }
            ),
            "{unknown:?}"
        );
        assert_eq!(
            malformed.kind(),
            ErrorKind::InvalidParameter,
            "{malformed:?}"
        );
    }

    #[test]
    fn reference_point_lookup_accepts_instance_id_forms() {
        let mut f = pair();
        let rp = f.host.create_reference_point("Pair").unwrap().clone();

        for key in [
            rp.instance_id.clone(),
            rp.instance_id.to_lowercase(),
            rp.instance_id.replace('\\', "\\\\"),
            rp.guid.to_string(),
        ] {
            assert_eq!(f.host.reference_point(&key).unwrap().guid, rp.guid, "{key}");
        }
        let wrong_vm = format!(
            "Microsoft:{}\\{}",
            cim_guid(&uuid::Uuid::from_u128(1)),
            cim_guid(&rp.guid)
        );
        assert!(matches!(
            f.host.reference_point(&wrong_vm),
            Err(HostError::NotFound {
                what: ObjectKind::ReferencePoint,
                ..
            })
        ));
        assert_eq!(
            f.host.reference_point("not an id").unwrap_err().kind(),
            ErrorKind::InvalidParameter
        );
    }

    #[test]
    fn reference_points_filter_by_vm() {
        let mut f = pair();
        let d = f.qemu_disk("solo.vhdx", "16M");
        f.host.create_vm("Solo", &[d]).unwrap();
        let a = f.host.create_reference_point("Pair").unwrap().guid;
        let b = f.host.create_reference_point("Solo").unwrap().guid;

        let pair_rps: Vec<_> = f
            .host
            .reference_points(Some("Pair"))
            .unwrap()
            .iter()
            .map(|r| r.guid)
            .collect();
        let all: Vec<_> = f
            .host
            .reference_points(None)
            .unwrap()
            .iter()
            .map(|r| r.guid)
            .collect();

        assert_eq!(pair_rps, vec![a]);
        assert_eq!(all, vec![a, b]);
        assert_eq!(
            f.host.reference_points(Some("Nobody")).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn destroy_reference_point_removes_only_the_record() {
        let mut f = pair();
        let rp = f.host.create_reference_point("Pair").unwrap().clone();

        f.host.destroy_reference_point(&rp.instance_id).unwrap();

        assert!(matches!(
            f.host.reference_point(&rp.instance_id),
            Err(HostError::NotFound {
                what: ObjectKind::ReferencePoint,
                ..
            })
        ));
        assert!(rp.disks[0].frozen_leaf().exists());
        f.host.vm("Pair").unwrap().disks[0].open_chain().unwrap();
        let again = f.host.destroy_reference_point(&rp.instance_id).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn reference_points_survive_reopen() {
        let mut f = pair();
        let rp = f.host.create_reference_point("Pair").unwrap().clone();
        let snap = f
            .host
            .create_snapshot("Pair", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();
        let dir = f.host.dir().to_owned();
        drop(f.host);

        let host = Host::open(&dir).unwrap();

        assert_eq!(host.reference_point(&rp.instance_id).unwrap(), &rp);
        assert_eq!(host.snapshot(snap.instance_id()).unwrap(), &snap);
    }

    #[test]
    fn reference_point_chain_keeps_point_in_time_content() {
        let mut f = pair();
        let rp = f.host.create_reference_point("Pair").unwrap().clone();
        {
            let mut w = f
                .host
                .open_disk_writer("Pair", &rp.disks[0].instance_id)
                .unwrap();
            w.write_at(0, &vec![0xee; 1 << 20]).unwrap();
            w.flush().unwrap();
        }
        f.host.refresh("Pair").unwrap();
        f.host.create_reference_point("Pair").unwrap();

        let old = f.host.reference_point(&rp.instance_id).unwrap().disks[0]
            .open_chain()
            .unwrap();

        assert_eq!(chain_distinct_bytes(&old, 0, 1 << 20), vec![0x5a]);
    }

    #[test]
    fn settings_xml_holds_vssd_frozen_sasds_and_the_reference_point() {
        let mut f = pair();
        let rp = f.host.create_reference_point("Pair").unwrap().clone();

        let parsed = instances(&rp.settings_xml());

        let classes: Vec<_> = parsed.iter().map(|i| i.class_name.as_str()).collect();
        assert_eq!(
            classes,
            vec![
                "Msvm_VirtualSystemSettingData",
                "Msvm_StorageAllocationSettingData",
                "Msvm_StorageAllocationSettingData",
                "Msvm_VirtualSystemReferencePoint"
            ]
        );
        let vm = f.host.vm("Pair").unwrap();
        assert_eq!(
            parsed[0].get_string("InstanceID").unwrap(),
            Some(format!("Microsoft:{}", vm.cim_name()))
        );
        assert_eq!(
            parsed[0]
                .get_string("VirtualSystemType")
                .unwrap()
                .as_deref(),
            Some("Microsoft:Hyper-V:System:Realized")
        );
        for (i, sasd) in parsed[1..3].iter().enumerate() {
            assert_eq!(
                sasd.get_string("InstanceID").unwrap(),
                Some(rp.disks[i].instance_id.clone())
            );
            assert_eq!(
                sasd.get_string_array("HostResource").unwrap(),
                Some(vec![
                    rp.disks[i].frozen_leaf().to_string_lossy().into_owned()
                ])
            );
            assert_eq!(sasd.get_u16("ResourceType").unwrap(), Some(31));
            assert_eq!(
                sasd.get_string("ResourceSubType").unwrap().as_deref(),
                Some("Microsoft:Hyper-V:Virtual Hard Disk")
            );
        }
        let cim =
            refpoint_cim::classes::VirtualSystemReferencePoint::from_instance(&parsed[3]).unwrap();
        assert_eq!(cim.instance_id, rp.instance_id);
        assert_eq!(cim.virtual_system_identifier, vm.cim_name());
        assert_eq!(cim.reference_point_type, 2);
        assert!(cim.has_associated_data);
        assert_eq!(cim.virtual_disk_identifiers, rp.virtual_disk_identifiers());
        assert_eq!(
            cim.resilient_change_tracking_identifiers,
            rp.resilient_change_tracking_identifiers()
        );
    }
}
