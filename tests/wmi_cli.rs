//! `refpoint wmi invoke` and `refpoint jobs` end to end (in-process: no
//! service runs): CIM-XML and JSON output, parameters as paths, scalars,
//! arrays and `@FILE` embedded instances, the job history afterwards.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use common::{host_with_fixture, refpoint};
use refpoint::cim::Instance;
use serde_json::Value;

/// `refpoint --host HOST ARGS…` without `--json`: (exit code, stdout, stderr).
fn refpoint_text(host: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("refpoint")
        .unwrap()
        .arg("--host")
        .arg(host)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn vm_path(fixture: &Value) -> String {
    format!(
        r#"Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="{}""#,
        fixture["vm_name"].as_str().unwrap()
    )
}

fn rp_path(fixture: &Value) -> String {
    let id = fixture["reference_point"].as_str().unwrap();
    format!(
        r#"Msvm_VirtualSystemReferencePoint.InstanceID="{}""#,
        id.replace('\\', r"\\")
    )
}

#[test]
fn create_snapshot_through_wmi_invoke_then_find_it_through_jobs_show() {
    let (_t, host, fixture) = host_with_fixture("cli-snap", "1", "8M", "3");
    let system = format!("AffectedSystem={}", vm_path(&fixture));

    let (code, out, err) = refpoint(
        &host,
        &[
            "wmi",
            "invoke",
            "Msvm_VirtualSystemSnapshotService.CreateSnapshot",
            "--param",
            &system,
            "--param",
            "SnapshotType=32768",
        ],
    );
    let job = out["Job"].as_str().unwrap_or_default().to_owned();
    let (list_code, list, _) = refpoint(&host, &["jobs", "list"]);
    let (show_code, show, show_err) = refpoint(&host, &["jobs", "show", &job]);
    let (kill_code, kill, _) = refpoint(&host, &["jobs", "kill", &job]);
    let (wait_code, waited, _) = refpoint(&host, &["jobs", "wait", &job]);

    assert_eq!(code, 0, "{err}");
    assert_eq!(out["ReturnValue"], 4096);
    assert!(job.contains("Msvm_ConcreteJob.InstanceID="), "{job}");
    assert_eq!(list_code, 0);
    let jobs = list.as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["JobType"], 70);
    assert_eq!(
        jobs[0]["JobState"], 7,
        "the CLI waited for its in-process job"
    );
    assert_eq!(show_code, 0, "{show_err}");
    let affected: Vec<&str> = show["AffectedElements"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        affected
            .iter()
            .any(|p| p.contains("Msvm_VirtualSystemSettingData.InstanceID=")),
        "{affected:?}"
    );
    assert_eq!(kill_code, 1);
    assert_eq!(kill["ReturnValue"], 4097, "the job is finished");
    assert_eq!(wait_code, 0);
    assert_eq!(waited["JobState"], 7);
}

#[test]
fn export_through_wmi_invoke_with_embedded_setting_data_from_a_file() {
    let (t, host, fixture) = host_with_fixture("cli-export", "2", "8M", "4");
    let disk = fixture["base_disks"][0].as_str().unwrap().to_owned();
    // The first disk's InstanceID, from the reference point's VirtualDiskIdentifiers.
    let (_, rps, _) = refpoint(&host, &["rp", "list"]);
    let disk_id = rps
        .as_array()
        .and_then(|a| a.first())
        .and_then(|r| {
            r["Disks"]
                .as_array()
                .and_then(|d| d.first())
                .and_then(|d| d["InstanceID"].as_str())
        })
        .unwrap_or_default()
        .to_owned();
    assert!(!disk_id.is_empty(), "{rps}");
    let settings = t.path().join("esd.xml");
    std::fs::write(
        &settings,
        format!(
            r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData"><PROPERTY.ARRAY NAME="DisksToExport" TYPE="string"><VALUE.ARRAY><VALUE>{disk_id}</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>"#
        ),
    )
    .unwrap();
    let target = t.path().join("export");

    let (code, out, err) = refpoint_text(
        &host,
        &[
            "wmi",
            "invoke",
            "Msvm_VirtualSystemReferencePointService.ExportReferencePoint",
            "--param",
            &format!("ReferencePoint={}", rp_path(&fixture)),
            "--param",
            &format!("ExportDirectory={}", target.display()),
            "--param",
            &format!("ExportSettingData=@{}", settings.display()),
        ],
    );
    let params = Instance::from_xml(out.trim()).unwrap();
    let job = params.get_reference("Job").unwrap().unwrap();
    let exported: Vec<_> = std::fs::read_dir(target.join("cli-export/Virtual Hard Disks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let (wait_code, waited, _) = refpoint(&host, &["jobs", "wait", &job.to_string()]);

    assert_eq!(code, 0, "{err}");
    assert_eq!(params.class_name, "__PARAMETERS");
    assert_eq!(params.get_u32("ReturnValue").unwrap(), Some(4096));
    assert_eq!(job.class_name, "Msvm_VirtualSystemReferencePointExportJob");
    assert_eq!(exported.len(), 1, "only the disk asked for: {exported:?}");
    assert!(disk.contains("cli-export-disk0"));
    assert_eq!(wait_code, 0);
    assert_eq!(waited["JobState"], 7);
    assert_eq!(waited["ExportedDisks"][0], disk_id.as_str());
    let verify = Command::cargo_bin("refpoint")
        .unwrap()
        .arg("verify")
        .arg(&target)
        .output()
        .unwrap();
    assert!(verify.status.success());
}

#[test]
fn rejected_parameter_exits_1_with_the_return_value_and_the_parameter_named() {
    let (_t, host, fixture) = host_with_fixture("cli-bad", "1", "8M", "5");

    let (code, out, err) = refpoint(
        &host,
        &[
            "wmi",
            "invoke",
            "Msvm_VirtualSystemSnapshotService.CreateSnapshot",
            "--param",
            &format!("AffectedSystem={}", vm_path(&fixture)),
            "--param",
            "SnapshotType=32768",
            "--param",
            "SnapshotType=2",
        ],
    );
    let (class_code, _, class_err) = refpoint(&host, &["wmi", "invoke", "Msvm_Nope.Frob"]);
    let (job_code, _, job_err) = refpoint(&host, &["jobs", "show", "NOPE"]);

    assert_eq!(code, 1);
    assert_eq!(
        out["ReturnValue"], 6,
        "an array for the scalar SnapshotType (Table B)"
    );
    assert!(
        out["ErrorDescription"]
            .as_str()
            .unwrap()
            .contains("SnapshotType")
    );
    assert!(err.contains("SnapshotType"), "{err}");
    assert_eq!(class_code, 1);
    assert!(class_err.contains("CIM_ERR 5"), "{class_err}");
    assert_eq!(job_code, 1);
    assert!(job_err.contains("CIM_ERR 6"), "{job_err}");
}
