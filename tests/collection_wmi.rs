//! The collection services through the WMI provider, as WMI clients drive
//! them: return codes of every method (Table A + 32779 for the management
//! service, Table B for the reference point and snapshot services), the
//! collection classes and associations, and `ExportReferencePoint` with
//! the nested `Msvm_VirtualMachineToDisks` embedded instances.
#![allow(clippy::tests_outside_test_module)]

mod wmi_support;

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use refpoint::cim::classes::{
        CollectionReferencePointExportSettingData, VirtualMachineToDisks,
    };
    use refpoint::cim::{Instance, ObjectPath};
    use refpoint::fixture::{Fill, FixtureOutcome, FixtureSpec, make_fixture};
    use refpoint::service::Refpoint;
    use refpoint::wmi::{MethodOutput, ParamValue, Provider};

    use super::wmi_support::{get_result, job_ref, reference, related, state, val, wait_job};

    const MANAGEMENT: &str = "Msvm_CollectionManagementService";
    const POINTS: &str = "Msvm_CollectionReferencePointService";
    const SNAPSHOTS: &str = "Msvm_CollectionSnapshotService";

    struct Env {
        temp: tempfile::TempDir,
        provider: Provider,
        vms: Vec<FixtureOutcome>,
    }

    /// Three fixture VMs (two disks of 8 MiB each).
    fn env() -> Env {
        let temp = tempfile::tempdir().unwrap();
        let rp = Refpoint::init(&temp.path().join("host")).unwrap();
        let vms = ["web", "app", "db"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                make_fixture(
                    &mut rp.host(),
                    &FixtureSpec {
                        name: (*name).to_owned(),
                        disks: 2,
                        size: 8 << 20,
                        seed: 11 + i as u64,
                        block_size: 1 << 20,
                        fill: Fill::Scattered { writes: 6 },
                        writes_after: 3,
                        directory: temp.path().join("disks").join(name),
                    },
                )
                .unwrap()
            })
            .collect();
        Env {
            temp,
            provider: Provider::new(Arc::new(rp)),
            vms,
        }
    }

    impl Env {
        fn service(&self, class: &str) -> ObjectPath {
            self.provider
                .enumerate_instance_names(class)
                .unwrap()
                .remove(0)
        }
        fn call(&self, class: &str, method: &str, params: &[(&str, ParamValue)]) -> MethodOutput {
            let owned: Vec<(String, ParamValue)> = params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.clone()))
                .collect();
            self.provider
                .invoke_method(&self.service(class), method, &owned)
                .unwrap()
        }
        fn vm(&self, i: usize) -> ObjectPath {
            ObjectPath::new("Msvm_ComputerSystem")
                .with_key("CreationClassName", "Msvm_ComputerSystem")
                .with_key("Name", &self.vms[i].vm_name)
        }
        /// DefineCollection("group") + AddMember of `members`; its path.
        fn group(&self, members: &[usize]) -> ObjectPath {
            let out = self.call(
                MANAGEMENT,
                "DefineCollection",
                &[("Name", val("group")), ("Type", val("0"))],
            );
            assert_eq!(out.return_value, 0, "{out:?}");
            let Some(ParamValue::Reference(path)) = out.out("DefinedCollection") else {
                panic!("{out:?}")
            };
            for i in members {
                let added = self.call(
                    MANAGEMENT,
                    "AddMember",
                    &[
                        ("Member", reference(&self.vm(*i))),
                        ("Collection", reference(path)),
                    ],
                );
                assert_eq!(added.return_value, 0, "{added:?}");
            }
            path.clone()
        }
        /// CreateReferencePoint on the collection; the created
        /// `Msvm_ReferencePointCollection` (through the job).
        fn point(&self, collection: &ObjectPath) -> ObjectPath {
            let out = self.call(
                POINTS,
                "CreateReferencePoint",
                &[("Collection", reference(collection))],
            );
            get_result(
                &self.provider,
                &out,
                "ResultingReferencePointCollection",
                "Msvm_ReferencePointCollection",
            )
        }
        fn export(&self, point: &ObjectPath, dir: &Path, settings: &str) -> MethodOutput {
            self.call(
                POINTS,
                "ExportReferencePoint",
                &[
                    ("ReferencePointCollection", reference(point)),
                    ("ExportDirectory", val(dir.to_str().unwrap())),
                    ("ExportSettingData", val(settings)),
                ],
            )
        }
    }

    fn error(out: &MethodOutput) -> &str {
        out.error.as_deref().unwrap_or("")
    }

    #[test]
    fn management_methods_return_table_a_with_32779_for_missing_objects() {
        let e = env();
        let group = e.group(&[0]);
        let nobody = ObjectPath::new("Msvm_ComputerSystem")
            .with_key("CreationClassName", "Msvm_ComputerSystem")
            .with_key("Name", "00000000-0000-0000-0000-0000000000AA");
        let nothing = ObjectPath::new("Msvm_VirtualSystemCollection")
            .with_key("CollectionID", "00000000-0000-0000-0000-0000000000BB");

        let unknown_vm = e.call(
            MANAGEMENT,
            "AddMember",
            &[
                ("Member", reference(&nobody)),
                ("Collection", reference(&group)),
            ],
        );
        let unknown_collection = e.call(
            MANAGEMENT,
            "AddMember",
            &[
                ("Member", reference(&e.vm(1))),
                ("Collection", reference(&nothing)),
            ],
        );
        let twice = e.call(
            MANAGEMENT,
            "AddMember",
            &[
                ("Member", reference(&e.vm(0))),
                ("Collection", reference(&group)),
            ],
        );
        let not_member = e.call(
            MANAGEMENT,
            "RemoveMember",
            &[
                ("Member", reference(&e.vm(2))),
                ("Collection", reference(&group)),
            ],
        );
        let wrong_class = e.call(
            MANAGEMENT,
            "AddMember",
            &[
                ("Member", reference(&group)),
                ("Collection", reference(&group)),
            ],
        );
        let nested = e.call(
            MANAGEMENT,
            "DefineCollection",
            &[("Name", val("n")), ("Type", val("1"))],
        );
        let duplicate = e.call(MANAGEMENT, "DefineCollection", &[("Name", val("GROUP"))]);
        let destroy_missing = e.call(
            MANAGEMENT,
            "DestroyCollection",
            &[("Collection", reference(&nothing))],
        );

        assert_eq!(unknown_vm.return_value, 32779, "{unknown_vm:?}");
        assert!(
            error(&unknown_vm).contains("0000000000AA"),
            "{unknown_vm:?}"
        );
        assert_eq!(unknown_collection.return_value, 32779);
        assert!(error(&unknown_collection).contains("0000000000BB"));
        assert_eq!(twice.return_value, 32775);
        assert_eq!(not_member.return_value, 32775);
        assert_eq!(wrong_class.return_value, 32773);
        assert_eq!(nested.return_value, 32770);
        assert_eq!(duplicate.return_value, 32773);
        assert_eq!(destroy_missing.return_value, 32779);
    }

    #[test]
    fn collection_classes_and_associations_are_served() {
        let e = env();
        let group = e.group(&[0, 1, 2]);
        let point = e.point(&group);

        let members = e
            .provider
            .associators(
                &group,
                Some("Msvm_CollectedVirtualSystems"),
                Some("Msvm_ComputerSystem"),
                None,
                None,
            )
            .unwrap();
        let points = e
            .provider
            .associators(
                &group,
                Some("Msvm_ReferencePointOfVirtualSystemCollection"),
                None,
                None,
                None,
            )
            .unwrap();
        let collected = e
            .provider
            .associators(
                &point,
                Some("Msvm_CollectedReferencePoints"),
                Some("Msvm_VirtualSystemReferencePoint"),
                None,
                None,
            )
            .unwrap();
        let instance = e.provider.get_instance(&point).unwrap();
        let by_one_key = ObjectPath::new("Msvm_ReferencePointCollection")
            .with_key("CollectionID", point.key("CollectionID").unwrap());

        assert_eq!(members.len(), 3);
        assert_eq!(points.len(), 1);
        assert_eq!(collected.len(), 3);
        assert_eq!(instance.get_u16("ReferencePointType").unwrap(), Some(2));
        assert_eq!(
            instance.get_u16("ConsistencyLevel").unwrap(),
            Some(1),
            "collection order: 1 = crash"
        );
        assert_eq!(instance.get_bool("HasAssociatedLog").unwrap(), Some(false));
        assert_eq!(
            instance.get_string("VirtualSystemCollectionId").unwrap(),
            group.key("CollectionID").map(str::to_owned)
        );
        assert!(e.provider.get_instance(&by_one_key).is_ok());
        for (_, rp) in &collected {
            assert_eq!(
                rp.get_u16("ConsistencyLevel").unwrap(),
                Some(2),
                "VM order: 2 = crash"
            );
        }
        assert_eq!(
            e.provider
                .enumerate_instances("CIM_Collection")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn create_reference_point_returns_table_b_codes() {
        let e = env();
        let group = e.group(&[0]);
        let empty = {
            let out = e.call(MANAGEMENT, "DefineCollection", &[("Name", val("empty"))]);
            match out.out("DefinedCollection") {
                Some(ParamValue::Reference(p)) => p.clone(),
                other => panic!("{other:?}"),
            }
        };
        let app_settings = Instance::new("Msvm_CollectionReferencePointSettingData")
            .with("ConsistencyLevel", 2u8)
            .to_xml();

        let log = e.call(
            POINTS,
            "CreateReferencePoint",
            &[
                ("Collection", reference(&group)),
                ("ReferencePointType", val("1")),
            ],
        );
        let unknown_type = e.call(
            POINTS,
            "CreateReferencePoint",
            &[
                ("Collection", reference(&group)),
                ("ReferencePointType", val("0")),
            ],
        );
        let application = e.call(
            POINTS,
            "CreateReferencePoint",
            &[
                ("Collection", reference(&group)),
                ("ReferencePointSettings", val(app_settings)),
            ],
        );
        let wrong_settings = e.call(
            POINTS,
            "CreateReferencePoint",
            &[
                ("Collection", reference(&group)),
                (
                    "ReferencePointSettings",
                    val(Instance::new("Msvm_VirtualSystemSnapshotSettingData").to_xml()),
                ),
            ],
        );
        let no_members = e.call(
            POINTS,
            "CreateReferencePoint",
            &[("Collection", reference(&empty))],
        );
        let no_members = wait_job(&e.provider, &job_ref(&no_members));

        assert_eq!(log.return_value, 1, "{log:?}");
        assert_eq!(unknown_type.return_value, 4);
        assert_eq!(application.return_value, 1);
        assert_eq!(wrong_settings.return_value, 6, "{wrong_settings:?}");
        assert_eq!(state(&no_members), 10);
        assert_eq!(no_members.get_u16("ErrorCode").unwrap(), Some(32775));
    }

    #[test]
    fn recovery_snapshot_collection_converts_and_standard_one_does_not() {
        let e = env();
        let group = e.group(&[0, 1]);
        let snap = |kind: &str| {
            let out = e.call(
                SNAPSHOTS,
                "CreateSnapshot",
                &[
                    ("Collection", reference(&group)),
                    ("SnapshotType", val(kind)),
                ],
            );
            get_result(
                &e.provider,
                &out,
                "ResultingSnapshotCollection",
                "Msvm_SnapshotCollection",
            )
        };
        let recovery = snap("2");
        let standard = snap("1");
        let members = e
            .provider
            .associators(&recovery, Some("Msvm_CollectedSnapshots"), None, None, None)
            .unwrap();

        let converted = e.call(
            SNAPSHOTS,
            "ConvertToReferencePoint",
            &[("AffectedSnapshotCollection", reference(&recovery))],
        );
        let point = get_result(
            &e.provider,
            &converted,
            "ResultingReferencePointCollection",
            "Msvm_ReferencePointCollection",
        );
        let refused = e.call(
            SNAPSHOTS,
            "ConvertToReferencePoint",
            &[("AffectedSnapshotCollection", reference(&standard))],
        );
        let bad_type = e.call(
            SNAPSHOTS,
            "CreateSnapshot",
            &[
                ("Collection", reference(&group)),
                ("SnapshotType", val("32768")),
            ],
        );
        let destroyed = e.call(
            SNAPSHOTS,
            "DestroySnapshot",
            &[("AffectedSnapshotCollection", reference(&standard))],
        );
        let destroyed = wait_job(&e.provider, &job_ref(&destroyed));

        assert_eq!(members.len(), 2);
        assert_eq!(
            e.provider
                .get_instance(&point)
                .unwrap()
                .get_u16("ReferencePointType")
                .unwrap(),
            Some(2)
        );
        assert!(
            e.provider.get_instance(&recovery).is_err(),
            "the snapshot collection is gone"
        );
        assert_eq!(refused.return_value, 5, "{refused:?}");
        assert_eq!(bad_type.return_value, 4);
        assert_eq!(state(&destroyed), 7);
    }

    #[test]
    fn export_job_is_a_collection_export_job_with_its_fields() {
        let e = env();
        let group = e.group(&[0, 1, 2]);
        let point = e.point(&group);
        let out_dir = e.temp.path().join("out");

        let out = e.export(&point, &out_dir, "");
        let job = job_ref(&out);
        let done = wait_job(&e.provider, &job);

        assert_eq!(job.class_name, "Msvm_CollectionReferencePointExportJob");
        assert_eq!(state(&done), 7, "{done:?}");
        assert_eq!(done.get_u16("JobType").unwrap(), Some(206));
        assert_eq!(
            done.get_string("ReferencePointGroupId").unwrap(),
            point.key("CollectionID").map(str::to_owned)
        );
        assert_eq!(
            done.get_string("CollectionId").unwrap(),
            group.key("CollectionID").map(str::to_owned)
        );
        assert_eq!(done.get_string("BaseReferencePointGroupId").unwrap(), None);
        assert_eq!(
            done.get_string_array("VirtualMachineId")
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            done.get_string_array("ExportedDisks")
                .unwrap()
                .unwrap()
                .len(),
            6
        );
        assert_eq!(
            done.get_string_array("ExportedConfigFilePaths")
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            related(&e.provider, &job, "Msvm_ReferencePointCollection").len(),
            1
        );
        assert!(
            refpoint::engine::verify_collection(&out_dir)
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn virtual_machines_to_disks_to_export_selects_exactly_the_listed_disks() {
        let e = env();
        let group = e.group(&[0, 1, 2]);
        let point = e.point(&group);
        let out_dir = e.temp.path().join("out");
        let web_disk = e.provider.refpoint().host().vm("web").unwrap().disks[1]
            .instance_id
            .clone();
        let settings = CollectionReferencePointExportSettingData {
            base_reference_point_collection: None,
            virtual_machines_to_disks_to_export: vec![
                VirtualMachineToDisks {
                    virtual_machine_id: e.vms[0].vm_name.clone(),
                    disks_to_export: vec![web_disk.clone()],
                },
                VirtualMachineToDisks {
                    virtual_machine_id: e.vms[2].vm_name.clone(),
                    disks_to_export: Vec::new(),
                },
            ],
        };

        let out = e.export(&point, &out_dir, &settings.to_instance().to_xml());
        let done = wait_job(&e.provider, &job_ref(&out));

        assert_eq!(state(&done), 7, "{done:?}");
        assert_eq!(
            done.get_string_array("ExportedDisks").unwrap().unwrap()[0],
            web_disk
        );
        let vhdx = |vm: &str| -> usize {
            std::fs::read_dir(out_dir.join(vm).join("Virtual Hard Disks"))
                .unwrap()
                .count()
        };
        assert_eq!(vhdx("web"), 1);
        assert_eq!(vhdx("app"), 0, "not listed: settings only");
        assert_eq!(vhdx("db"), 2, "listed without disks: all");
        assert!(out_dir.join("app/Virtual Machines").is_dir());
        assert!(
            refpoint::engine::verify_collection(&out_dir)
                .unwrap()
                .is_ok()
        );
    }

    #[test]
    fn unknown_vm_or_disk_in_the_nested_instances_is_32773_naming_it() {
        let e = env();
        let group = e.group(&[0, 1]);
        let point = e.point(&group);
        let settings = |vm: &str, disks: Vec<String>| {
            CollectionReferencePointExportSettingData {
                base_reference_point_collection: None,
                virtual_machines_to_disks_to_export: vec![VirtualMachineToDisks {
                    virtual_machine_id: vm.to_owned(),
                    disks_to_export: disks,
                }],
            }
            .to_instance()
            .to_xml()
        };
        let out_dir = e.temp.path().join("out");

        let unknown_vm = e.export(
            &point,
            &out_dir,
            &settings("6B1F2C44-0000-4000-8000-00000000FFFF", Vec::new()),
        );
        let outsider = e.export(&point, &out_dir, &settings(&e.vms[2].vm_name, Vec::new()));
        let unknown_disk = e.export(
            &point,
            &out_dir,
            &settings(
                &e.vms[1].vm_name,
                vec!["Microsoft:NOPE\\D\\0\\0\\D".to_owned()],
            ),
        );

        assert_eq!(unknown_vm.return_value, 32773);
        assert!(
            error(&unknown_vm).contains("6B1F2C44-0000-4000-8000-00000000FFFF"),
            "{unknown_vm:?}"
        );
        assert!(
            error(&unknown_vm).contains("VirtualMachinesToDisksToExport[0].VirtualMachineId"),
            "{unknown_vm:?}"
        );
        assert_eq!(outsider.return_value, 32773);
        assert!(error(&outsider).contains("not a member"), "{outsider:?}");
        assert_eq!(unknown_disk.return_value, 32773);
        assert!(
            error(&unknown_disk).contains("Microsoft:NOPE\\D\\0\\0\\D"),
            "{unknown_disk:?}"
        );
        assert!(
            error(&unknown_disk).contains("DisksToExport"),
            "{unknown_disk:?}"
        );
        assert!(!out_dir.exists());
    }

    #[test]
    fn malformed_nested_instances_are_rejected_naming_the_property() {
        let e = env();
        let group = e.group(&[0]);
        let point = e.point(&group);
        let with_items = |items: &[&str]| {
            Instance::new("Msvm_CollectionReferencePointExportSettingData")
                .with("VirtualMachinesToDisksToExport", items.to_vec())
                .to_xml()
        };
        let vm = &e.vms[0].vm_name;
        let good = VirtualMachineToDisks {
            virtual_machine_id: vm.clone(),
            disks_to_export: Vec::new(),
        }
        .to_instance()
        .to_xml();
        let out_dir = e.temp.path().join("out");

        let broken_xml = e.export(
            &point,
            &out_dir,
            &with_items(&[
                &good,
                "<INSTANCE CLASSNAME=\"Msvm_VirtualMachineToDisks\"><PROPERTY",
            ]),
        );
        let wrong_class = e.export(
            &point,
            &out_dir,
            &with_items(&[&Instance::new("Msvm_VirtualSystemSettingData").to_xml()]),
        );
        let no_vm = e.export(
            &point,
            &out_dir,
            &with_items(&[&Instance::new("Msvm_VirtualMachineToDisks").to_xml()]),
        );
        let scalar_disks = e.export(
            &point,
            &out_dir,
            &with_items(&[&Instance::new("Msvm_VirtualMachineToDisks")
                .with("VirtualMachineId", vm.as_str())
                .with("DisksToExport", 5u32)
                .to_xml()]),
        );
        let outer_wrong = e.export(
            &point,
            &out_dir,
            &Instance::new("Msvm_VirtualSystemReferencePointExportSettingData").to_xml(),
        );

        assert_eq!(broken_xml.return_value, 32773, "{broken_xml:?}");
        assert!(
            error(&broken_xml).contains("VirtualMachinesToDisksToExport"),
            "{broken_xml:?}"
        );
        assert!(error(&broken_xml).contains("[1]"), "{broken_xml:?}");
        assert_eq!(wrong_class.return_value, 32776, "{wrong_class:?}");
        assert!(
            error(&wrong_class).contains("VirtualMachinesToDisksToExport[0]"),
            "{wrong_class:?}"
        );
        assert_eq!(no_vm.return_value, 32773, "{no_vm:?}");
        assert!(error(&no_vm).contains("VirtualMachineId"), "{no_vm:?}");
        assert_eq!(scalar_disks.return_value, 32776, "{scalar_disks:?}");
        assert!(
            error(&scalar_disks).contains("DisksToExport"),
            "{scalar_disks:?}"
        );
        assert_eq!(outer_wrong.return_value, 32776, "{outer_wrong:?}");
        assert!(!out_dir.exists());
    }

    #[test]
    fn destroy_and_remove_data_run_as_jobs_and_export_then_fails_with_32775() {
        let e = env();
        let group = e.group(&[0, 1]);
        let point = e.point(&group);
        let remove = |p: &ObjectPath| {
            e.call(
                POINTS,
                "RemoveAssociatedData",
                &[("AffectedReferencePointCollection", reference(p))],
            )
        };

        let removed = wait_job(&e.provider, &job_ref(&remove(&point)));
        let again = remove(&point);
        let export = e.export(&point, &e.temp.path().join("out"), "");
        let destroyed = e.call(
            POINTS,
            "DestroyReferencePoint",
            &[("AffectedReferencePointCollection", reference(&point))],
        );
        let destroyed = wait_job(&e.provider, &job_ref(&destroyed));
        let unknown = e.call(
            POINTS,
            "DestroyReferencePoint",
            &[("AffectedReferencePointCollection", reference(&point))],
        );

        assert_eq!(state(&removed), 7);
        assert_eq!(again.return_value, 5, "{again:?}");
        assert_eq!(export.return_value, 32775, "{export:?}");
        assert_eq!(state(&destroyed), 7);
        assert_eq!(unknown.return_value, 4);
        assert!(
            e.provider
                .enumerate_instances("Msvm_ReferencePointCollection")
                .unwrap()
                .is_empty()
        );
        assert!(
            e.provider
                .enumerate_instances("Msvm_VirtualSystemReferencePoint")
                .unwrap()
                .len()
                == 3,
            "the fixtures' own points stay"
        );
    }
}
