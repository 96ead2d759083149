//! Defining virtual systems: `create_vm` from disk files made by qemu-img,
//! `import_vm` of a directory holding the Windows-made specimen chain.

mod common;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use refpoint_core::{ErrorKind, Host, HostError, ObjectKind};
    use refpoint_vhdx::VhdxFile;

    use super::common::{Fixture, specimen_chain};

    #[test]
    fn create_vm_records_disks_with_hyper_v_ids_and_guids() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("sys.vhdx", "64M");
        let d1 = f.qemu_disk("data.vhdx", "32M");
        let guid0 = VhdxFile::open(&d0).unwrap().data_write_guid();

        let vm = f
            .host
            .create_vm("web01", &[d0.clone(), d1.clone()])
            .unwrap()
            .clone();

        let name = vm.cim_name();
        assert_eq!(name, name.to_uppercase());
        assert_eq!(vm.settings.instance_id, format!("Microsoft:{name}"));
        assert_eq!(
            vm.settings.virtual_system_type,
            "Microsoft:Hyper-V:System:Realized"
        );
        assert_eq!(vm.disks.len(), 2);
        for (i, disk) in vm.disks.iter().enumerate() {
            let expected = format!(
                "Microsoft:{name}\\{}\\0\\{i}\\D",
                refpoint_core::ids::cim_guid(&disk.disk_guid)
            );
            assert_eq!(disk.instance_id, expected);
            assert_eq!(disk.element_name, "Hard Disk Image");
            assert_eq!(disk.chain.len(), 1);
        }
        assert_eq!(vm.disks[0].active_leaf(), d0.canonicalize().unwrap());
        assert_eq!(
            vm.disks[0].host_resource(),
            vec![d0.canonicalize().unwrap()]
        );
        assert_eq!(vm.disks[0].chain.leaf().data_write_guid, guid0);
    }

    #[test]
    fn create_vm_with_relative_path_records_absolute_path() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("rel.vhdx", "16M");
        let cwd = std::env::current_dir().unwrap();
        let relative: PathBuf = pathdiff(&d0, &cwd);

        let vm = f.host.create_vm("rel", &[relative]).unwrap();

        assert!(vm.disks[0].active_leaf().is_absolute());
        assert_eq!(vm.disks[0].active_leaf(), d0.canonicalize().unwrap());
    }

    /// `target` relative to `base` through `..` components.
    fn pathdiff(target: &std::path::Path, base: &std::path::Path) -> PathBuf {
        let depth = base.components().count() - 1;
        let mut p = PathBuf::new();
        for _ in 0..depth {
            p.push("..");
        }
        p.join(target.strip_prefix("/").unwrap())
    }

    #[test]
    fn vm_lookup_by_guid_instance_id_and_name() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("a.vhdx", "16M");
        let name = f.host.create_vm("Alpha", &[d0]).unwrap().name;

        for key in [
            name.to_string(),
            refpoint_core::ids::cim_guid(&name),
            format!("{{{name}}}"),
            format!("Microsoft:{}", refpoint_core::ids::cim_guid(&name)),
            "Alpha".to_owned(),
            "alpha".to_owned(),
        ] {
            assert_eq!(f.host.vm(&key).unwrap().name, name, "{key}");
        }
        let err = f.host.vm("Beta").unwrap_err();
        assert!(
            matches!(
                err,
                HostError::NotFound {
                    what: ObjectKind::VirtualSystem,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_element_name_is_invalid_parameter() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("a.vhdx", "16M");
        let d1 = f.qemu_disk("b.vhdx", "16M");
        f.host.create_vm("Alpha", &[d0]).unwrap();

        let err = f.host.create_vm("ALPHA", &[d1]).unwrap_err();

        assert!(
            matches!(
                err,
                HostError::InvalidParameter {
                    parameter: "ElementName",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(f.host.vms().len(), 1);
    }

    #[test]
    fn element_name_with_path_separator_is_invalid_parameter() {
        let mut f = Fixture::new();

        let err = f.host.create_vm("a/../../b", &[]).unwrap_err();

        assert!(
            matches!(
                err,
                HostError::InvalidParameter {
                    parameter: "ElementName",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn disk_of_another_vm_is_refused() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("a.vhdx", "16M");
        f.host
            .create_vm("Alpha", std::slice::from_ref(&d0))
            .unwrap();

        let err = f.host.create_vm("Beta", &[d0]).unwrap_err();

        assert!(
            matches!(err, HostError::InvalidParameter { parameter: "HostResource", ref reason } if reason.contains("Alpha")),
            "{err:?}"
        );
    }

    #[test]
    fn same_disk_twice_is_refused() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("a.vhdx", "16M");

        let err = f.host.create_vm("Alpha", &[d0.clone(), d0]).unwrap_err();

        assert!(
            matches!(err, HostError::InvalidParameter { parameter: "HostResource", ref reason } if reason.contains("twice")),
            "{err:?}"
        );
    }

    #[test]
    fn corrupt_disk_propagates_vhdx_error_with_kind_and_path() {
        let mut f = Fixture::new();
        let bad = f.disk_path("garbage.vhdx");
        std::fs::write(&bad, vec![0x42u8; 2 << 20]).unwrap();

        let err = f
            .host
            .create_vm("Alpha", std::slice::from_ref(&bad))
            .unwrap_err();

        assert_eq!(
            err.kind(),
            ErrorKind::Vhdx(refpoint_vhdx::ErrorKind::Corrupt),
            "{err}"
        );
        assert!(err.to_string().contains("garbage.vhdx"), "{err}");
        assert!(f.host.vms().is_empty());
    }

    #[test]
    fn missing_disk_is_a_vhdx_error_naming_it() {
        let mut f = Fixture::new();
        let missing = f.disk_path("absent.vhdx");

        let err = f.host.create_vm("Alpha", &[missing]).unwrap_err();

        assert!(matches!(err.kind(), ErrorKind::Vhdx(_)), "{err:?}");
        assert!(err.to_string().contains("absent.vhdx"), "{err}");
    }

    #[test]
    fn vms_survive_reopen() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("a.vhdx", "16M");
        let vm = f.host.create_vm("Alpha", &[d0]).unwrap().clone();
        let dir = f.host.dir().to_owned();
        drop(f.host);

        let host = Host::open(&dir).unwrap();

        assert_eq!(host.vms(), &[vm]);
    }

    #[test]
    fn import_specimen_chain_finds_one_disk_with_two_layers() {
        let mut f = Fixture::new();
        let dir = f.tmp.path().join("import");
        let (child, parent) = specimen_chain(&dir);
        let parent_guid = VhdxFile::open(&parent).unwrap().data_write_guid();

        let vm = f.host.import_vm("Generation 1", &dir).unwrap();

        assert_eq!(vm.disks.len(), 1);
        let chain = &vm.disks[0].chain;
        assert_eq!(
            chain.paths(),
            vec![
                child.canonicalize().unwrap(),
                parent.canonicalize().unwrap()
            ]
        );
        // The specimen's README: the parent's DataWriteGuid is the child's parent_linkage.
        assert_eq!(
            parent_guid.to_string(),
            "ff34003b-11ed-4cf8-a166-b2be05e20b80"
        );
        assert_eq!(chain.base().data_write_guid, parent_guid);
    }

    #[test]
    fn import_with_two_independent_disks_gives_two_disks_in_path_order() {
        let mut f = Fixture::new();
        let dir = f.tmp.path().join("two");
        std::fs::create_dir_all(&dir).unwrap();
        super::common::qemu_img_create(&dir.join("b.vhdx"), "16M");
        super::common::qemu_img_create(&dir.join("a.VHDX"), "16M");
        std::fs::write(dir.join("notes.txt"), "not a disk").unwrap();

        let vm = f.host.import_vm("Two", &dir).unwrap();

        let leaves: Vec<_> = vm
            .disks
            .iter()
            .map(|d| d.active_leaf().file_name().unwrap().to_owned())
            .collect();
        assert_eq!(leaves, vec!["a.VHDX", "b.vhdx"]);
    }

    #[test]
    fn import_with_unopenable_file_names_it_and_keeps_vhdx_kind() {
        let mut f = Fixture::new();
        let dir = f.tmp.path().join("import");
        specimen_chain(&dir);
        std::fs::write(dir.join("stray.avhdx"), vec![0u8; 1 << 20]).unwrap();

        let err = f.host.import_vm("Generation 1", &dir).unwrap_err();

        match &err {
            HostError::ImportUnresolved { files, .. } => {
                assert_eq!(
                    files,
                    &vec![dir.join("stray.avhdx").canonicalize().unwrap()]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.kind(),
            ErrorKind::Vhdx(refpoint_vhdx::ErrorKind::Corrupt)
        );
        assert!(err.to_string().contains("stray.avhdx"), "{err}");
        assert!(f.host.vms().is_empty());
    }

    #[test]
    fn import_of_child_without_its_parent_names_the_child() {
        let mut f = Fixture::new();
        let dir = f.tmp.path().join("import");
        let (_, parent) = specimen_chain(&dir);
        std::fs::remove_file(parent).unwrap();

        let err = f.host.import_vm("Orphan", &dir).unwrap_err();

        assert!(
            matches!(&err, HostError::ImportUnresolved { files, .. } if files.len() == 1 && files[0].ends_with("differencing.avhdx")),
            "{err:?}"
        );
    }

    #[test]
    fn import_of_directory_without_vhdx_is_invalid_parameter() {
        let mut f = Fixture::new();
        let dir = f.tmp.path().join("empty");
        std::fs::create_dir_all(&dir).unwrap();

        let err = f.host.import_vm("Empty", &dir).unwrap_err();

        assert!(matches!(err, HostError::InvalidParameter { .. }), "{err:?}");
    }

    #[test]
    fn vm_settings_xml_lists_settings_and_one_sasd_per_disk() {
        let mut f = Fixture::new();
        let d0 = f.qemu_disk("a.vhdx", "16M");
        let vm = f
            .host
            .create_vm("Alpha", std::slice::from_ref(&d0))
            .unwrap();

        let xml = vm.settings_xml();

        let instances = super::common::instances(&xml);
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].class_name, "Msvm_VirtualSystemSettingData");
        assert_eq!(instances[1].class_name, "Msvm_StorageAllocationSettingData");
        assert_eq!(
            instances[1].get_string_array("HostResource").unwrap(),
            Some(vec![
                d0.canonicalize().unwrap().to_string_lossy().into_owned()
            ])
        );
        assert_eq!(instances[1].get_u16("ResourceType").unwrap(), Some(31));
    }
}
