//! Recovery snapshots: new differencing leaves, frozen chains that keep the
//! point-in-time content, all-or-nothing failure, frozen-layer checks.

mod common;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use refpoint_core::{
        ErrorKind, HostError, SNAPSHOT_TYPE_FULL, SNAPSHOT_TYPE_RECOVERY, SnapshotSettings,
    };
    use refpoint_vhdx::VhdxFile;

    use super::common::{
        Fixture, chain_distinct_bytes, dissect_distinct_bytes, libvhdi_accepts_parent, listing,
        qemu_reads_pattern, qemu_write,
    };

    const MIB: u64 = 1 << 20;

    /// A host with VM "Alpha" whose disk `a.vhdx` holds 0x5a in its first MiB.
    fn alpha() -> (Fixture, PathBuf) {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("a.vhdx", "64M");
        qemu_write(&d0, 0x5a, "0", "1M");
        f.host
            .create_vm("Alpha", std::slice::from_ref(&d0))
            .unwrap();
        (f, d0.canonicalize().unwrap())
    }

    #[test]
    fn snapshot_puts_a_differencing_leaf_in_the_host_directory() {
        let (mut f, d0) = alpha();
        let base_guid = VhdxFile::open(&d0).unwrap().data_write_guid();

        let snap = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        let vm = f.host.vm("Alpha").unwrap();
        let snap_guid = refpoint_core::ids::cim_guid(&snap.guid);
        let leaf = f
            .host
            .vm_disk_dir(&vm.name)
            .join(format!("a_{snap_guid}.avhdx"));
        assert!(
            leaf.starts_with(
                f.host
                    .dir()
                    .join("vms")
                    .join(vm.cim_name())
                    .join("Virtual Hard Disks")
            )
        );
        assert_eq!(vm.disks[0].chain.paths(), vec![leaf.clone(), d0.clone()]);
        assert_eq!(vm.disks[0].rct_epoch, 1);
        assert_eq!(snap.settings.instance_id, format!("Microsoft:{snap_guid}"));
        assert_eq!(
            snap.settings.virtual_system_type,
            "Microsoft:Hyper-V:Snapshot:Recovery"
        );
        assert!(
            snap.settings.element_name.starts_with("Alpha - ("),
            "{}",
            snap.settings.element_name
        );
        assert_eq!(snap.settings.parent, None);
        assert_eq!(snap.vm_settings, vm.settings);
        let frozen = &snap.disks[0];
        assert_eq!(frozen.instance_id, vm.disks[0].instance_id);
        assert_eq!(frozen.chain.paths(), vec![d0.clone()]);
        assert_eq!(frozen.chain.leaf().data_write_guid, base_guid);
        assert_eq!(frozen.rct_epoch, 1);
        assert_eq!(frozen.epoch_layer, leaf);
        // Independent readers: libvhdi accepts the new leaf as d0's child
        // (parent_linkage), dissect finds d0 through the locator and reads its data.
        assert!(libvhdi_accepts_parent(&leaf, &d0));
        assert_eq!(dissect_distinct_bytes(&leaf, 0, MIB), vec![0x5a]);
        assert_eq!(dissect_distinct_bytes(&leaf, MIB, MIB), vec![0]);
    }

    #[test]
    fn second_snapshot_has_the_first_as_parent_and_a_three_layer_chain() {
        let (mut f, d0) = alpha();
        let first = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        let second = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        assert_eq!(second.settings.parent.as_deref(), Some(first.instance_id()));
        let vm = f.host.vm("Alpha").unwrap();
        assert_eq!(vm.disks[0].chain.len(), 3);
        assert_eq!(vm.disks[0].chain.base().path, d0);
        assert_eq!(
            second.disks[0].chain.paths(),
            vm.disks[0].chain.paths()[1..].to_vec()
        );
        assert_eq!(second.disks[0].rct_epoch, 2);
        assert_eq!(f.host.snapshots("Alpha").unwrap().len(), 2);
    }

    #[test]
    fn frozen_chain_reads_old_content_after_writes_to_the_new_leaf() {
        let (mut f, d0) = alpha();
        let snap = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();
        let disk_id = snap.disks[0].instance_id.clone();
        let guid_before = f.host.vm("Alpha").unwrap().disks[0]
            .chain
            .leaf()
            .data_write_guid;

        {
            let mut writer = f.host.open_disk_writer("Alpha", &disk_id).unwrap();
            writer.write_at(0, &vec![0xa5; 1 << 20]).unwrap();
            writer.flush().unwrap();
        }
        f.host.refresh("Alpha").unwrap();

        let vm = f.host.vm("Alpha").unwrap();
        let active = vm.disks[0].open_chain().unwrap();
        let frozen = f.host.snapshot(snap.instance_id()).unwrap().disks[0]
            .open_chain()
            .unwrap();
        assert_eq!(chain_distinct_bytes(&active, 0, 1 << 20), vec![0xa5]);
        assert_eq!(chain_distinct_bytes(&frozen, 0, 1 << 20), vec![0x5a]);
        // Independent readers: qemu reads the frozen base unchanged, dissect the new content.
        assert!(qemu_reads_pattern(&d0, 0x5a, "0", "1M"));
        assert_eq!(
            dissect_distinct_bytes(vm.disks[0].active_leaf(), 0, MIB),
            vec![0xa5]
        );
        // refresh recorded the leaf's new DataWriteGuid; the frozen layer's did not change.
        let leaf_guid = VhdxFile::open(vm.disks[0].active_leaf())
            .unwrap()
            .data_write_guid();
        assert_ne!(leaf_guid, guid_before);
        assert_eq!(vm.disks[0].chain.leaf().data_write_guid, leaf_guid);
        assert_eq!(
            VhdxFile::open(&d0).unwrap().data_write_guid(),
            snap.disks[0].chain.leaf().data_write_guid
        );
    }

    #[test]
    fn external_write_to_active_leaf_before_snapshot_is_frozen_with_its_new_guid() {
        let (mut f, d0) = alpha();
        let recorded = f.host.vm("Alpha").unwrap().disks[0]
            .chain
            .leaf()
            .data_write_guid;
        qemu_write(&d0, 0x33, "2M", "1M");
        let now = VhdxFile::open(&d0).unwrap().data_write_guid();
        assert_ne!(now, recorded, "qemu-io must change the DataWriteGuid");

        let snap = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap();

        assert_eq!(snap.disks[0].chain.leaf().data_write_guid, now);
    }

    #[test]
    fn full_snapshot_is_a_realized_snapshot() {
        let (mut f, _) = alpha();

        let snap = f.host.create_snapshot("Alpha", SNAPSHOT_TYPE_FULL).unwrap();

        assert_eq!(
            snap.settings.virtual_system_type,
            "Microsoft:Hyper-V:Snapshot:Realized"
        );
        assert_eq!(snap.snapshot_type, 2);
    }

    #[test]
    fn unsupported_snapshot_type_is_not_supported_and_creates_nothing() {
        let (mut f, _) = alpha();
        let catalog = std::fs::read(f.host.catalog_path()).unwrap();

        let err = f.host.create_snapshot("Alpha", 3).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::NotSupported, "{err:?}");
        assert!(listing(&f.host.dir().join("vms")).is_empty());
        assert_eq!(std::fs::read(f.host.catalog_path()).unwrap(), catalog);
    }

    #[test]
    fn application_consistent_snapshot_is_not_supported() {
        let (mut f, _) = alpha();

        let err = f
            .host
            .create_snapshot_with(
                "Alpha",
                SNAPSHOT_TYPE_RECOVERY,
                &SnapshotSettings {
                    consistency_level: Some(1),
                },
            )
            .unwrap_err();

        assert_eq!(err.kind(), ErrorKind::NotSupported, "{err:?}");
    }

    #[test]
    fn out_of_range_consistency_level_is_invalid_parameter() {
        let (mut f, _) = alpha();

        let err = f
            .host
            .create_snapshot_with(
                "Alpha",
                SNAPSHOT_TYPE_RECOVERY,
                &SnapshotSettings {
                    consistency_level: Some(7),
                },
            )
            .unwrap_err();

        assert!(
            matches!(
                err,
                HostError::InvalidParameter {
                    parameter: "ConsistencyLevel",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn snapshot_of_unknown_vm_is_not_found() {
        let (mut f, _) = alpha();

        let err = f
            .host
            .create_snapshot("Beta", SNAPSHOT_TYPE_RECOVERY)
            .unwrap_err();

        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn failed_snapshot_removes_new_leaves_and_keeps_the_catalog() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("one.vhdx", "16M");
        let d1 = f.qemu_disk("two.vhdx", "16M");
        f.host.create_vm("Pair", &[d0, d1.clone()]).unwrap();
        f.host
            .create_snapshot("Pair", SNAPSHOT_TYPE_RECOVERY)
            .unwrap();
        let vm_dir = f.host.vm_disk_dir(&f.host.vm("Pair").unwrap().name);
        let files_before = listing(&vm_dir);
        let catalog_before = std::fs::read(f.host.catalog_path()).unwrap();
        let frozen_guid = VhdxFile::open(&d1).unwrap().data_write_guid();
        // Disk 1's frozen base is written behind refpoint's back: disk 0
        // freezes fine, disk 1 must fail.
        qemu_write(&d1, 0x11, "0", "64k");
        let modified_guid = VhdxFile::open(&d1).unwrap().data_write_guid();

        let err = f
            .host
            .create_snapshot("Pair", SNAPSHOT_TYPE_RECOVERY)
            .unwrap_err();

        match &err {
            HostError::LayerModified {
                path,
                expected,
                found,
            } => {
                assert_eq!(path, &d1.canonicalize().unwrap());
                assert_eq!(*expected, frozen_guid);
                assert_eq!(*found, modified_guid);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("two.vhdx"), "{err}");
        assert!(err.to_string().contains(&frozen_guid.to_string()), "{err}");
        assert_eq!(
            listing(&vm_dir),
            files_before,
            "new leaf of disk 0 must be removed"
        );
        assert_eq!(
            std::fs::read(f.host.catalog_path()).unwrap(),
            catalog_before
        );
        assert_eq!(f.host.snapshots("Pair").unwrap().len(), 1);
    }

    #[test]
    fn writer_and_refresh_refuse_a_chain_whose_frozen_layer_was_modified() {
        let (mut f, d0) = alpha();
        let snap = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();
        qemu_write(&d0, 0x77, "0", "4k");

        let writer = f.host.open_disk_writer("Alpha", &snap.disks[0].instance_id);
        let refreshed = f.host.refresh("Alpha");

        assert!(
            matches!(writer, Err(HostError::LayerModified { ref path, .. }) if path == &d0),
            "{writer:?}"
        );
        assert!(
            matches!(refreshed, Err(HostError::LayerModified { .. })),
            "{refreshed:?}"
        );
    }

    #[test]
    fn writer_for_unknown_disk_is_not_found() {
        let (f, _) = alpha();

        let err = f
            .host
            .open_disk_writer("Alpha", "Microsoft:nope")
            .unwrap_err();

        assert!(
            matches!(
                err,
                HostError::NotFound {
                    what: refpoint_core::ObjectKind::VirtualDisk,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn destroy_snapshot_keeps_its_layers_and_reparents_children() {
        let (mut f, d0) = alpha();
        let first = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();
        let second = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        f.host.destroy_snapshot(first.instance_id()).unwrap();

        assert!(matches!(
            f.host.snapshot(first.instance_id()),
            Err(HostError::NotFound { .. })
        ));
        assert_eq!(
            f.host
                .snapshot(second.instance_id())
                .unwrap()
                .settings
                .parent,
            None
        );
        assert!(d0.exists());
        assert!(first.disks[0].epoch_layer.exists());
        f.host.vm("Alpha").unwrap().disks[0].open_chain().unwrap();
    }

    #[test]
    fn failed_first_snapshot_leaves_no_vm_directory() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("one.vhdx", "16M");
        let (child, parent) = super::common::specimen_chain(&f.tmp.path().join("chain"));
        f.host.create_vm("Mixed", &[d0, child]).unwrap();
        let catalog_before = std::fs::read(f.host.catalog_path()).unwrap();
        // The chain's parent is written behind refpoint's back: disk 0
        // freezes (creating the VM's directory), disk 1 must fail.
        qemu_write(&parent, 0x22, "0", "4k");

        let err = f
            .host
            .create_snapshot("Mixed", SNAPSHOT_TYPE_RECOVERY)
            .unwrap_err();

        assert!(
            matches!(err, HostError::LayerModified { ref path, .. } if path == &parent.canonicalize().unwrap()),
            "{err:?}"
        );
        assert!(listing(&f.host.dir().join("vms")).is_empty());
        assert_eq!(
            std::fs::read(f.host.catalog_path()).unwrap(),
            catalog_before
        );
    }

    #[test]
    fn snapshot_settings_xml_names_the_parent_snapshot_by_object_path() {
        let (mut f, _) = alpha();
        let first = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();
        let second = f
            .host
            .create_snapshot("Alpha", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        let parsed = super::common::instances(&second.settings_xml());

        assert_eq!(parsed.len(), 2);
        let vssd =
            refpoint_cim::classes::VirtualSystemSettingData::from_instance(&parsed[0]).unwrap();
        assert_eq!(vssd.instance_id, second.settings.instance_id);
        assert_eq!(
            vssd.virtual_system_type,
            "Microsoft:Hyper-V:Snapshot:Recovery"
        );
        let parent: refpoint_cim::ObjectPath = vssd.parent.unwrap().parse().unwrap();
        assert_eq!(parent.class_name, "Msvm_VirtualSystemSettingData");
        assert_eq!(parent.key("InstanceID"), Some(first.instance_id()));
        assert_eq!(
            parsed[1].get_string_array("HostResource").unwrap(),
            Some(vec![
                second.disks[0].frozen_leaf().to_string_lossy().into_owned()
            ])
        );
    }

    #[test]
    fn snapshot_of_imported_windows_chain_keeps_its_content() {
        let mut f = Fixture::new();
        let (child, _) = super::common::specimen_chain(&f.tmp.path().join("chain"));
        f.host
            .import_vm("Generation 1", child.parent().unwrap())
            .unwrap();
        let len = 8 * MIB;
        let before = super::common::dissect_read(&child, 0, len);
        assert!(
            before.iter().any(|&b| b != 0),
            "specimen region must hold data"
        );

        let snap = f
            .host
            .create_snapshot("Generation 1", SNAPSHOT_TYPE_RECOVERY)
            .unwrap()
            .clone();

        let vm = f.host.vm("Generation 1").unwrap();
        assert_eq!(vm.disks[0].chain.len(), 3);
        let usize_len = usize::try_from(len).unwrap();
        let frozen = snap.disks[0].open_chain().unwrap();
        let active = vm.disks[0].open_chain().unwrap();
        assert!(super::common::chain_read(&frozen, 0, usize_len) == before);
        assert!(super::common::chain_read(&active, 0, usize_len) == before);
        assert!(super::common::dissect_read(vm.disks[0].active_leaf(), 0, len) == before);
        assert!(libvhdi_accepts_parent(vm.disks[0].active_leaf(), &child));
    }
}
