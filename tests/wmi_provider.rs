//! The provider's CIM operations: enumeration with subclasses, GetInstance
//! by one-key and two-key paths, associations both ways, and the operation
//! errors (unknown class 5, no instance 6, namespace 3, method 17,
//! parameter name 4).
#![allow(clippy::tests_outside_test_module)]

mod wmi_support;

use refpoint::cim::ObjectPath;
use refpoint::wmi::{CimOpError, ParamValue, Provider};
use wmi_support::{Shape, env, reference, val};

#[test]
fn enumerations_find_the_vm_its_settings_disks_reference_point_and_services() {
    let e = env("enum-vm", &Shape::default());
    let p = &e.provider;

    let vms = p.enumerate_instances("Msvm_ComputerSystem").unwrap();
    let settings = p
        .enumerate_instances("Msvm_VirtualSystemSettingData")
        .unwrap();
    let sasds = p
        .enumerate_instances("Msvm_StorageAllocationSettingData")
        .unwrap();
    let rps = p
        .enumerate_instances("Msvm_VirtualSystemReferencePoint")
        .unwrap();
    let services = p.enumerate_instance_names("CIM_Service").unwrap();

    assert_eq!(vms.len(), 1);
    let (vm_path, vm) = &vms[0];
    assert_eq!(
        vm.get_string("Name").unwrap().as_deref(),
        Some(e.fixture.vm_name.as_str())
    );
    assert_eq!(
        vm.get_string("ElementName").unwrap().as_deref(),
        Some("enum-vm")
    );
    assert_eq!(
        vm_path.server.as_deref(),
        Some(e.provider.refpoint().host_name())
    );
    assert_eq!(
        vm_path.namespace.as_deref(),
        Some(r"root\virtualization\v2")
    );
    assert_eq!(
        vm_path.key("CreationClassName"),
        Some("Msvm_ComputerSystem")
    );
    assert_eq!(
        settings.len(),
        1,
        "realized settings only: the fixture's snapshot became the RP"
    );
    assert_eq!(
        settings[0]
            .1
            .get_string("VirtualSystemType")
            .unwrap()
            .as_deref(),
        Some("Microsoft:Hyper-V:System:Realized")
    );
    assert_eq!(sasds.len(), 2);
    assert_eq!(rps.len(), 1);
    let rp = &rps[0].1;
    assert_eq!(
        rp.get_string("InstanceID").unwrap().as_deref(),
        Some(e.fixture.reference_point.as_str())
    );
    assert_eq!(
        rp.get_string_array("VirtualDiskIdentifiers")
            .unwrap()
            .unwrap()
            .len(),
        rp.get_string_array("ResilientChangeTrackingIdentifiers")
            .unwrap()
            .unwrap()
            .len()
    );
    let classes: Vec<&str> = services.iter().map(|s| s.class_name.as_str()).collect();
    assert_eq!(
        classes,
        vec![
            "Msvm_VirtualSystemSnapshotService",
            "Msvm_VirtualSystemReferencePointService",
            "Msvm_ImageManagementService",
            "Msvm_CollectionManagementService",
            "Msvm_CollectionReferencePointService",
            "Msvm_CollectionSnapshotService"
        ]
    );
    assert!(services.iter().all(|s| s.keys.len() == 4));
}

#[test]
fn reference_point_is_found_by_one_key_and_two_key_paths() {
    let e = env("rp-paths", &Shape::default());
    let two_key = e.rp_path();
    let one_key = ObjectPath::new("Msvm_VirtualSystemReferencePoint")
        .with_key("InstanceID", &e.fixture.reference_point);
    let wrong_vm = ObjectPath::new("Msvm_VirtualSystemReferencePoint")
        .with_key("InstanceID", &e.fixture.reference_point)
        .with_key(
            "VirtualSystemIdentifier",
            "00000000-0000-0000-0000-000000000000",
        );

    let by_two = e.provider.get_instance(&two_key).unwrap();
    let by_one = e.provider.get_instance(&one_key).unwrap();
    let by_text = e
        .provider
        .get_instance(&two_key.to_string().parse().unwrap())
        .unwrap();
    let err = e.provider.get_instance(&wrong_vm).unwrap_err();

    assert_eq!(two_key.keys.len(), 2);
    assert_eq!(by_two, by_one);
    assert_eq!(by_two, by_text);
    assert_eq!(err.status, CimOpError::NOT_FOUND);
}

#[test]
fn operation_errors_carry_dsp0200_status_codes() {
    let e = env("op-errors", &Shape::default());
    let p: &Provider = &e.provider;
    let rps = e.service("Msvm_VirtualSystemReferencePointService");

    let unknown_class = p.enumerate_instances("Msvm_NoSuchThing").unwrap_err();
    let no_instance = p
        .get_instance(
            &ObjectPath::new("Msvm_ComputerSystem")
                .with_key("CreationClassName", "Msvm_ComputerSystem")
                .with_key("Name", "NOPE"),
        )
        .unwrap_err();
    let namespace = p
        .get_instance(&e.vm_path().with_location("h", r"root\cimv2"))
        .unwrap_err();
    let method = p.invoke_method(&rps, "Frobnicate", &[]).unwrap_err();
    let param = p
        .invoke_method(
            &rps,
            "DestroyReferencePoint",
            &[("NoSuchParameter".to_owned(), val("x"))],
        )
        .unwrap_err();
    let job = p
        .invoke_method(
            &ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "NOPE"),
            "RequestStateChange",
            &[("RequestedState".to_owned(), val("2"))],
        )
        .unwrap_err();
    let known_but_empty = p
        .enumerate_instances("Msvm_VirtualSystemCollection")
        .unwrap();

    assert_eq!(unknown_class.status, CimOpError::INVALID_CLASS);
    assert!(unknown_class.description.contains("Msvm_NoSuchThing"));
    assert_eq!(no_instance.status, CimOpError::NOT_FOUND);
    assert_eq!(namespace.status, CimOpError::INVALID_NAMESPACE);
    assert_eq!(method.status, CimOpError::METHOD_NOT_FOUND);
    assert_eq!(param.status, CimOpError::INVALID_PARAMETER);
    assert!(param.description.contains("NoSuchParameter"));
    assert_eq!(job.status, CimOpError::NOT_FOUND);
    assert!(known_but_empty.is_empty());
}

#[test]
fn associations_lead_from_vm_to_reference_point_and_back() {
    let e = env("assoc", &Shape::default());
    let vm = e.vm_path();
    let rp = e.rp_path();

    let rps = e
        .provider
        .associators(
            &vm,
            Some("Msvm_ReferencePointOfVirtualSystem"),
            None,
            Some("Antecedent"),
            Some("Dependent"),
        )
        .unwrap();
    let back = e
        .provider
        .associators(&rp, None, Some("CIM_ComputerSystem"), None, None)
        .unwrap();
    let wrong_role = e
        .provider
        .associators(
            &vm,
            Some("Msvm_ReferencePointOfVirtualSystem"),
            None,
            Some("Dependent"),
            None,
        )
        .unwrap();
    let refs = e
        .provider
        .references(&rp, Some("CIM_Dependency"), Some("Dependent"))
        .unwrap();
    let settings = e
        .provider
        .associators(&vm, Some("Msvm_SettingsDefineState"), None, None, None)
        .unwrap();
    let disks = e
        .provider
        .associators(
            &settings[0].0,
            Some("Msvm_VirtualSystemSettingDataComponent"),
            Some("Msvm_StorageAllocationSettingData"),
            None,
            None,
        )
        .unwrap();

    assert_eq!(rps.len(), 1);
    assert!(rps[0].0.same_instance(&rp));
    assert_eq!(back.len(), 1);
    assert!(back[0].0.same_instance(&vm));
    assert!(wrong_role.is_empty());
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].1.class_name, "Msvm_ReferencePointOfVirtualSystem");
    let antecedent = refs[0].1.get_reference("Antecedent").unwrap().unwrap();
    assert!(antecedent.same_instance(&vm));
    assert_eq!(settings.len(), 1);
    assert_eq!(disks.len(), 2);
    assert!(
        disks
            .iter()
            .all(|(_, d)| d.get_u16("ResourceType").unwrap() == Some(31))
    );
}

#[test]
fn snapshot_disks_have_their_own_instance_ids_and_frozen_host_resource() {
    let e = env("snap-sasd", &Shape::default());
    let vm = e.vm_path();
    let out = e.call(
        "Msvm_VirtualSystemSnapshotService",
        "CreateSnapshot",
        &[
            ("AffectedSystem", reference(&vm)),
            ("SnapshotType", val("32768")),
        ],
    );
    let job = wmi_support::job_ref(&out);
    wmi_support::wait_job(&e.provider, &job);
    let snapshot = wmi_support::related(&e.provider, &job, "Msvm_VirtualSystemSettingData");

    let frozen = e
        .provider
        .associators(
            &snapshot[0].0,
            Some("Msvm_VirtualSystemSettingDataComponent"),
            Some("Msvm_StorageAllocationSettingData"),
            None,
            None,
        )
        .unwrap();
    let active = e
        .provider
        .enumerate_instances("Msvm_StorageAllocationSettingData")
        .unwrap();

    assert_eq!(frozen.len(), 2);
    let snapshot_guid = snapshot[0]
        .1
        .get_string("InstanceID")
        .unwrap()
        .unwrap()
        .trim_start_matches("Microsoft:")
        .to_owned();
    for (path, sasd) in &frozen {
        let id = path.key("InstanceID").unwrap();
        assert!(
            id.starts_with(&format!("Microsoft:{snapshot_guid}\\")),
            "{id}"
        );
        let host_resource = sasd.get_string_array("HostResource").unwrap().unwrap();
        assert!(std::path::Path::new(&host_resource[0]).exists());
        assert_eq!(e.provider.get_instance(path).unwrap(), *sasd);
    }
    assert_eq!(active.len(), 4, "2 active + 2 snapshot disks");
    let unique: std::collections::HashSet<String> = active
        .iter()
        .map(|(p, _)| p.key("InstanceID").unwrap().to_owned())
        .collect();
    assert_eq!(unique.len(), 4);
}

#[test]
fn jobs_are_enumerated_under_cim_concrete_job_and_found_by_any_job_class() {
    let e = env("job-classes", &Shape::default());
    let out = e.call(
        "Msvm_VirtualSystemReferencePointService",
        "ExportReferencePoint",
        &[
            ("ReferencePoint", reference(&e.rp_path())),
            ("ExportDirectory", val(e.path("export").to_str().unwrap())),
        ],
    );
    let job = wmi_support::job_ref(&out);
    let done = wmi_support::wait_job(&e.provider, &job);
    let id = job.key("InstanceID").unwrap();

    let all = e
        .provider
        .enumerate_instance_names("CIM_ConcreteJob")
        .unwrap();
    let msvm = e
        .provider
        .enumerate_instance_names("Msvm_ConcreteJob")
        .unwrap();
    let export_jobs = e
        .provider
        .enumerate_instance_names("Msvm_VirtualSystemReferencePointExportJob")
        .unwrap();
    let as_concrete = e
        .provider
        .get_instance(&ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", id))
        .unwrap();
    let as_cim = e
        .provider
        .get_instance(&ObjectPath::new("CIM_ConcreteJob").with_key("InstanceID", id))
        .unwrap();

    assert_eq!(job.class_name, "Msvm_VirtualSystemReferencePointExportJob");
    assert_eq!(wmi_support::state(&done), 7, "{done:?}");
    assert_eq!(done.get_u16("JobType").unwrap(), Some(203));
    assert_eq!(all.len(), 1);
    assert_eq!(msvm.len(), 1);
    assert_eq!(export_jobs.len(), 1);
    assert_eq!(as_concrete, done);
    assert_eq!(as_cim, done);
}

#[test]
fn reference_given_as_path_text_works_like_a_reference() {
    let e = env("ref-text", &Shape::default());

    let out = e.call(
        "Msvm_VirtualSystemReferencePointService",
        "ExportReferencePoint",
        &[
            ("ReferencePoint", ParamValue::Value(e.rp_path().to_string())),
            ("ExportDirectory", val(e.path("export").to_str().unwrap())),
        ],
    );
    let done = wmi_support::wait_job(&e.provider, &wmi_support::job_ref(&out));

    assert_eq!(wmi_support::state(&done), 7);
}

#[test]
fn polling_a_job_does_not_wait_for_the_host_lock() {
    let e = env("poll-unlocked", &Shape::default());
    let out = e.call(
        "Msvm_VirtualSystemReferencePointService",
        "DestroyReferencePoint",
        &[("AffectedReferencePoint", reference(&e.rp_path()))],
    );
    let job = wmi_support::job_ref(&out);
    wmi_support::wait_job(&e.provider, &job);
    let (tx, rx) = std::sync::mpsc::channel();

    let host = e.provider.refpoint().host(); // a long host operation in progress
    let poller = {
        let p = e.provider.clone();
        let job = job.clone();
        std::thread::spawn(move || {
            let state = p.get_instance(&job).map(|i| wmi_support::state(&i));
            let listed = p
                .enumerate_instance_names("CIM_ConcreteJob")
                .map(|v| v.len());
            tx.send((state, listed)).unwrap();
        })
    };
    let answered = rx.recv_timeout(wmi_support::MUST);
    drop(host);
    poller.join().unwrap();

    let (state, listed) = answered.expect("job polling blocked on the host lock");
    assert_eq!(state.unwrap(), 7);
    assert_eq!(listed.unwrap(), 1);
}
