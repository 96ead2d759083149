//! Malformed CIM-XML, object paths and parameter values through
//! `invoke_method`: each returns the code of the method's table (A:
//! 32773/32776, B: 4/6, RequestStateChange: 5) with a message naming the
//! parameter and property — never a panic, never a started job.
#![allow(clippy::tests_outside_test_module)]

mod wmi_support;

use refpoint::cim::ObjectPath;
use refpoint::wmi::{MethodOutput, ParamValue};
use wmi_support::{Env, Shape, env, job_ref, reference, state, val, wait_job};

const RP_SERVICE: &str = "Msvm_VirtualSystemReferencePointService";
const SNAPSHOT_SERVICE: &str = "Msvm_VirtualSystemSnapshotService";
const IMAGE_SERVICE: &str = "Msvm_ImageManagementService";
const ESD: &str = "Msvm_VirtualSystemReferencePointExportSettingData";

fn export_with(e: &Env, rp: ParamValue, dir: ParamValue, settings: &str) -> MethodOutput {
    e.call(
        RP_SERVICE,
        "ExportReferencePoint",
        &[
            ("ReferencePoint", rp),
            ("ExportDirectory", dir),
            ("ExportSettingData", val(settings)),
        ],
    )
}

fn export_settings(e: &Env, settings: &str) -> MethodOutput {
    export_with(
        e,
        reference(&e.rp_path()),
        val(e.path("export").to_str().unwrap()),
        settings,
    )
}

fn assert_fails(out: &MethodOutput, code: u32, needles: &[&str]) {
    assert_eq!(out.return_value, code, "{out:?}");
    assert!(
        out.out("Job").is_none(),
        "no job for a rejected call: {out:?}"
    );
    let message = out.error.as_deref().unwrap_or_default();
    for n in needles {
        assert!(
            message.contains(n),
            "message {message:?} does not name {n:?}"
        );
    }
}

#[test]
fn export_setting_data_errors_are_table_a_codes_naming_the_property() {
    let e = env("malformed-a", &Shape::default());
    let unclosed = format!(
        r#"<INSTANCE CLASSNAME="{ESD}"><PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE>x</VALUE>"#
    );
    let unknown_class = r#"<INSTANCE CLASSNAME="Msvm_Bogus"></INSTANCE>"#;
    let wrong_class = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSnapshotSettingData"></INSTANCE>"#;
    let wrong_type = format!(
        r#"<INSTANCE CLASSNAME="{ESD}"><PROPERTY.ARRAY NAME="DisksToExport" TYPE="uint16"><VALUE.ARRAY><VALUE>1</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>"#
    );
    let array_for_scalar = format!(
        r#"<INSTANCE CLASSNAME="{ESD}"><PROPERTY.ARRAY NAME="BaseReferencePoint" TYPE="string"><VALUE.ARRAY><VALUE>a</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>"#
    );
    let bad_path_escape = format!(
        r#"<INSTANCE CLASSNAME="{ESD}"><PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE>Msvm_VirtualSystemReferencePoint.InstanceID="a\q"</VALUE></PROPERTY></INSTANCE>"#
    );
    let bad_entity = format!(
        r#"<INSTANCE CLASSNAME="{ESD}"><PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE>&bogus;</VALUE></PROPERTY></INSTANCE>"#
    );

    assert_fails(
        &export_settings(&e, &unclosed),
        32773,
        &["ExportSettingData"],
    );
    assert_fails(
        &export_settings(&e, unknown_class),
        32773,
        &["ExportSettingData", "Msvm_Bogus"],
    );
    assert_fails(
        &export_settings(&e, wrong_class),
        32776,
        &["ExportSettingData", "Msvm_VirtualSystemSnapshotSettingData"],
    );
    assert_fails(
        &export_settings(&e, &wrong_type),
        32776,
        &["ExportSettingData", "DisksToExport"],
    );
    assert_fails(
        &export_settings(&e, &array_for_scalar),
        32776,
        &["ExportSettingData", "BaseReferencePoint"],
    );
    assert_fails(
        &export_settings(&e, &bad_path_escape),
        32773,
        &["ExportSettingData", "BaseReferencePoint"],
    );
    assert_fails(
        &export_settings(&e, &bad_entity),
        32773,
        &["ExportSettingData"],
    );
    assert!(
        !e.path("export").exists(),
        "nothing written for rejected calls"
    );
}

#[test]
fn export_parameter_shape_and_path_errors_are_table_a_codes_naming_the_parameter() {
    let e = env("params-a", &Shape::default());
    let dir = val(e.path("export").to_str().unwrap());
    let bad_escape = val(r#"Msvm_VirtualSystemReferencePoint.InstanceID="Microsoft:\q""#);
    let unterminated = val(r#"Msvm_VirtualSystemReferencePoint.InstanceID="Microsoft:"#);
    let other_class = reference(&e.vm_path());
    let unknown_rp = reference(
        &ObjectPath::new("Msvm_VirtualSystemReferencePoint").with_key("InstanceID", "nope"),
    );
    let other_vm = reference(
        &ObjectPath::new("Msvm_VirtualSystemReferencePoint")
            .with_key("InstanceID", &e.fixture.reference_point)
            .with_key(
                "VirtualSystemIdentifier",
                "11111111-1111-1111-1111-111111111111",
            ),
    );

    assert_fails(
        &export_with(&e, bad_escape, dir.clone(), ""),
        32773,
        &["ReferencePoint", "escape"],
    );
    assert_fails(
        &export_with(&e, unterminated, dir.clone(), ""),
        32773,
        &["ReferencePoint"],
    );
    assert_fails(
        &export_with(&e, other_class, dir.clone(), ""),
        32773,
        &["ReferencePoint", "Msvm_ComputerSystem"],
    );
    assert_fails(
        &export_with(&e, unknown_rp, dir.clone(), ""),
        32773,
        &["ReferencePoint", "nope"],
    );
    assert_fails(
        &export_with(&e, other_vm, dir.clone(), ""),
        32773,
        &["ReferencePoint", "11111111"],
    );
    assert_fails(
        &export_with(
            &e,
            ParamValue::ReferenceArray(vec![e.rp_path()]),
            dir.clone(),
            "",
        ),
        32776,
        &["ReferencePoint"],
    );
    assert_fails(
        &export_with(
            &e,
            reference(&e.rp_path()),
            ParamValue::Array(vec!["/a".into()]),
            "",
        ),
        32776,
        &["ExportDirectory"],
    );
    assert_fails(
        &export_with(&e, reference(&e.rp_path()), val(r"D:\Export"), ""),
        32773,
        &["ExportDirectory"],
    );
    assert_fails(
        &export_with(&e, reference(&e.rp_path()), ParamValue::Null, ""),
        32773,
        &["ExportDirectory"],
    );
    assert_fails(
        &export_with(&e, ParamValue::Null, dir, ""),
        32773,
        &["ReferencePoint"],
    );
}

fn create_snapshot(e: &Env, system: ParamValue, settings: &str, kind: ParamValue) -> MethodOutput {
    e.call(
        SNAPSHOT_SERVICE,
        "CreateSnapshot",
        &[
            ("AffectedSystem", system),
            ("SnapshotSettings", val(settings)),
            ("SnapshotType", kind),
        ],
    )
}

#[test]
fn snapshot_service_errors_are_table_b_codes() {
    let e = env("malformed-b", &Shape::default());
    let vm = reference(&e.vm_path());
    let wrong_type = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSnapshotSettingData"><PROPERTY NAME="ConsistencyLevel" TYPE="uint16"><VALUE>2</VALUE></PROPERTY></INSTANCE>"#;
    let bad_value = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSnapshotSettingData"><PROPERTY NAME="ConsistencyLevel" TYPE="uint8"><VALUE>300</VALUE></PROPERTY></INSTANCE>"#;
    let unclosed = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSnapshotSettingData"><PROPERTY NAME="ConsistencyLevel" TYPE="uint8">"#;

    assert_fails(
        &create_snapshot(&e, vm.clone(), unclosed, val("32768")),
        4,
        &["SnapshotSettings"],
    );
    assert_fails(
        &create_snapshot(&e, vm.clone(), wrong_type, val("32768")),
        6,
        &["SnapshotSettings", "ConsistencyLevel"],
    );
    assert_fails(
        &create_snapshot(&e, vm.clone(), bad_value, val("32768")),
        6,
        &["SnapshotSettings", "ConsistencyLevel"],
    );
    assert_fails(
        &create_snapshot(&e, vm.clone(), "", val("abc")),
        6,
        &["SnapshotType"],
    );
    assert_fails(
        &create_snapshot(&e, vm.clone(), "", ParamValue::Array(vec!["32768".into()])),
        6,
        &["SnapshotType"],
    );
    assert_fails(
        &create_snapshot(&e, vm.clone(), "", val("5")),
        1,
        &["SnapshotType"],
    );
    assert_fails(
        &create_snapshot(&e, val(r#"Msvm_ComputerSystem.Name="x"#), "", val("32768")),
        4,
        &["AffectedSystem"],
    );
    assert_fails(
        &create_snapshot(
            &e,
            reference(
                &ObjectPath::new("Msvm_ComputerSystem")
                    .with_key("CreationClassName", "Msvm_ComputerSystem")
                    .with_key("Name", "NOPE"),
            ),
            "",
            val("32768"),
        ),
        4,
        &["AffectedSystem", "NOPE"],
    );
    assert!(
        e.provider
            .enumerate_instances("Msvm_ConcreteJob")
            .unwrap()
            .is_empty(),
        "no job started"
    );
}

#[test]
fn create_reference_point_type_numbering_accepts_1_and_2_as_rct() {
    let e = env("rp-type", &Shape::default());
    let call = |t: &str| {
        e.call(
            RP_SERVICE,
            "CreateReferencePoint",
            &[
                ("AffectedSystem", reference(&e.vm_path())),
                ("ReferencePointType", val(t)),
            ],
        )
    };

    let log = call("0");
    let other = call("3");
    let rct1 = call("1");
    let rct1_done = wait_job(&e.provider, &job_ref(&rct1));
    let rct2 = call("2");
    let rct2_done = wait_job(&e.provider, &job_ref(&rct2));

    assert_fails(&log, 1, &["ReferencePointType", "log"]);
    assert_fails(&other, 4, &["ReferencePointType"]);
    assert_eq!(state(&rct1_done), 7);
    assert_eq!(state(&rct2_done), 7);
    assert_eq!(rct1_done.get_u16("JobType").unwrap(), Some(201));
    let created = wmi_support::related(
        &e.provider,
        &job_ref(&rct2),
        "Msvm_VirtualSystemReferencePoint",
    );
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].1.get_u16("ReferencePointType").unwrap(), Some(2));
}

#[test]
fn state_errors_are_invalid_state_in_each_table() {
    let e = env("states", &Shape::default());
    // A full (type 2) snapshot cannot be converted: B 5.
    let full = e.call(
        SNAPSHOT_SERVICE,
        "CreateSnapshot",
        &[
            ("AffectedSystem", reference(&e.vm_path())),
            ("SnapshotType", val("2")),
        ],
    );
    let full_job = job_ref(&full);
    wait_job(&e.provider, &full_job);
    let snapshot = wmi_support::related(&e.provider, &full_job, "Msvm_VirtualSystemSettingData")
        .remove(0)
        .0;
    let convert = e.call(
        SNAPSHOT_SERVICE,
        "ConvertToReferencePoint",
        &[("AffectedSnapshot", reference(&snapshot))],
    );
    // RemoveAssociatedData: once fine, then A 32775; export of it A 32775.
    let rp = e.rp_path();
    let remove = e.call(
        RP_SERVICE,
        "RemoveAssociatedData",
        &[("AffectedReferencePoint", reference(&rp))],
    );
    let removed = wait_job(&e.provider, &job_ref(&remove));
    let again = e.call(
        RP_SERVICE,
        "RemoveAssociatedData",
        &[("AffectedReferencePoint", reference(&rp))],
    );
    let export = export_settings(&e, "");

    assert_fails(&convert, 5, &["AffectedSnapshot", "recovery"]);
    assert_eq!(state(&removed), 7, "{removed:?}");
    assert_eq!(removed.get_u16("JobType").unwrap(), Some(204));
    assert_eq!(
        e.provider
            .get_instance(&rp)
            .unwrap()
            .get_bool("HasAssociatedData")
            .unwrap(),
        Some(false)
    );
    assert_fails(&again, 32775, &["HasAssociatedData"]);
    assert_fails(&export, 32775, &["associated data"]);
}

#[test]
fn get_virtual_disk_changes_errors_are_table_a_plus_32779() {
    let e = env("gvdc", &Shape::default());
    let rp = e.provider.get_instance(&e.rp_path()).unwrap();
    let rct = rp
        .get_string_array("ResilientChangeTrackingIdentifiers")
        .unwrap()
        .unwrap()[0]
        .clone();
    let active = e
        .provider
        .enumerate_instances("Msvm_StorageAllocationSettingData")
        .unwrap()[0]
        .1
        .get_string_array("HostResource")
        .unwrap()
        .unwrap()[0]
        .clone();
    let call = |path: &str, limit: &str, target: &str, offset: ParamValue| {
        e.call(
            IMAGE_SERVICE,
            "GetVirtualDiskChanges",
            &[
                ("Path", val(path)),
                ("LimitId", val(limit)),
                ("TargetSnapshotId", val(target)),
                ("ByteOffset", offset),
                ("ByteLength", val("1048576")),
            ],
        )
    };
    let missing = e.path("missing.vhdx");

    let ok = call(&active, &rct, "", val("0"));
    let not_found = call(missing.to_str().unwrap(), &rct, "", val("0"));
    let vhd_set = call(&active, &rct, "{snapshot}", val("0"));
    let bad_limit = call(&active, "rct:not-an-id", "", val("0"));
    let bad_offset = call(&active, &rct, "", val("x"));

    assert_eq!(ok.return_value, 0, "{ok:?}");
    assert!(ok.out("Job").is_none(), "synchronous: no job");
    assert!(ok.out("ProcessedByteLength").is_some());
    assert_fails(&not_found, 32779, &["missing.vhdx"]);
    assert_fails(&vhd_set, 32770, &["TargetSnapshotId"]);
    assert_eq!(bad_limit.return_value, 32773, "{bad_limit:?}");
    assert_fails(&bad_offset, 32776, &["ByteOffset"]);
}

#[test]
fn request_state_change_parameter_errors_are_its_code_5() {
    let e = env("rsc-params", &Shape::default());
    let out = e.call(
        RP_SERVICE,
        "DestroyReferencePoint",
        &[("AffectedReferencePoint", reference(&e.rp_path()))],
    );
    let job = job_ref(&out);
    wait_job(&e.provider, &job);
    let call = |params: Vec<(String, ParamValue)>| {
        e.provider
            .invoke_method(&job, "RequestStateChange", &params)
            .unwrap()
    };

    let not_a_number = call(vec![("RequestedState".into(), val("abc"))]);
    let missing = call(vec![]);
    let bad_interval = call(vec![
        ("RequestedState".into(), val("2")),
        ("TimeoutPeriod".into(), val("20240101000000.000000+000")),
    ]);

    assert_eq!(not_a_number.return_value, 5);
    assert!(not_a_number.error.unwrap().contains("RequestedState"));
    assert_eq!(missing.return_value, 5);
    assert_eq!(bad_interval.return_value, 5);
    assert!(bad_interval.error.unwrap().contains("TimeoutPeriod"));
}

/// Every truncation and many byte substitutions of a valid embedded
/// instance and of a valid path: the answer is always a documented code,
/// never a panic and never a job.
#[test]
fn mutated_xml_and_paths_never_panic_and_keep_to_the_documented_codes() {
    let e = env("fuzz", &Shape::default());
    let nope = ObjectPath::new("Msvm_VirtualSystemReferencePoint").with_key("InstanceID", "nope");
    let valid_settings = format!(
        r#"<INSTANCE CLASSNAME="{ESD}"><PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE>Msvm_VirtualSystemReferencePoint.InstanceID="a\\b&quot;c"</VALUE></PROPERTY><PROPERTY.ARRAY NAME="DisksToExport" TYPE="string"><VALUE.ARRAY><VALUE>Microsoft:x</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>"#
    );
    let valid_path = e.rp_path().to_string();
    let dir = val(e.path("export").to_str().unwrap());
    let substitutes = ['<', '>', '"', '&', '\\', '/', '=', ',', '\0', 'é', ' '];
    let mut variants: Vec<(String, String)> = Vec::new();
    for (i, _) in valid_settings.char_indices() {
        variants.push((valid_settings[..i].to_owned(), nope.to_string()));
    }
    for (i, c) in valid_settings.char_indices().step_by(3) {
        let sub = substitutes[i % substitutes.len()];
        let mut s = valid_settings.clone();
        s.replace_range(i..i + c.len_utf8(), &sub.to_string());
        variants.push((s, nope.to_string()));
    }
    for (i, c) in valid_path.char_indices() {
        variants.push(("<INSTANCE".to_owned(), valid_path[..i].to_owned()));
        let sub = substitutes[i % substitutes.len()];
        let mut p = valid_path.clone();
        p.replace_range(i..i + c.len_utf8(), &sub.to_string());
        variants.push(("<INSTANCE".to_owned(), p));
    }

    for (settings, path) in &variants {
        let out = export_with(&e, val(path.as_str()), dir.clone(), settings);
        assert!(
            out.return_value == 32773 || out.return_value == 32776,
            "{settings:?} / {path:?} → {out:?}"
        );
        assert!(out.error.as_deref().is_some_and(|m| !m.is_empty()));
    }
    assert!(
        e.provider
            .enumerate_instances("CIM_ConcreteJob")
            .unwrap()
            .is_empty(),
        "no variant started a job"
    );
}
