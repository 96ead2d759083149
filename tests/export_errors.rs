//! Bad input gets the CIM return code and a message naming the file, offset
//! or field, and an export over it writes nothing at the target.
// Integration tests are their own crate: the lint meant for unit tests in
// library code does not apply here.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{host_with_fixture, refpoint, run_ok};
use refpoint::service::Refpoint;
use serde_json::Value;

fn base_disk(fixture: &Value) -> PathBuf {
    PathBuf::from(fixture["base_disks"][0].as_str().expect("base disk"))
}

/// Runs the export and asserts it failed with `code` naming `needle`, and
/// that neither the VM folder nor a staging directory exists at the target.
fn assert_export_fails(host: &Path, rp: &str, target: &Path, code: u64, needle: &str) {
    let (exit, job, err) = refpoint(
        host,
        &[
            "export",
            "--reference-point",
            rp,
            "--to",
            target.to_str().expect("utf8"),
        ],
    );
    assert_ne!(exit, 0, "export unexpectedly succeeded: {job}");
    let text = format!("{job} {err}");
    let reported = job["Job"]["ErrorCode"]
        .as_u64()
        .or_else(|| job["ReturnValue"].as_u64());
    assert_eq!(reported, Some(code), "{text}");
    assert!(
        text.contains(needle),
        "message does not name {needle}: {text}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(target)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "target not empty: {leftovers:?}");
}

#[test]
fn export_over_a_source_with_bad_header_crcs_fails_32768_and_writes_nothing() {
    // Arrange: corrupt the checksum of both headers of the frozen base.
    let (temp, host, fixture) = host_with_fixture("bad-crc", "1", "32M", "21");
    let base = base_disk(&fixture);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&base)
        .expect("open");
    f.write_all_at(&[0xEE; 4], 0x10004)
        .expect("header 1 checksum");
    f.write_all_at(&[0xEE; 4], 0x20004)
        .expect("header 2 checksum");
    drop(f);
    let rp = fixture["reference_point"].as_str().expect("rp");

    // Act + Assert
    let name = base
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_export_fails(&host, rp, &temp.path().join("export"), 32768, &name);
}

#[test]
fn export_over_a_truncated_source_fails_32768_naming_it() {
    // Arrange: cut the frozen base in the middle of its payload blocks.
    let (temp, host, fixture) = host_with_fixture("truncated", "1", "32M", "26");
    let base = base_disk(&fixture);
    let len = std::fs::metadata(&base).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&base)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let rp = fixture["reference_point"].as_str().expect("rp");

    // Act + Assert
    let name = base
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_export_fails(&host, rp, &temp.path().join("export"), 32768, &name);
}

#[test]
fn export_over_a_missing_parent_fails_32768_naming_it() {
    // Arrange: the frozen base disappears.
    let (temp, host, fixture) = host_with_fixture("missing", "1", "32M", "22");
    let base = base_disk(&fixture);
    std::fs::rename(&base, base.with_extension("moved")).expect("rename");
    let rp = fixture["reference_point"].as_str().expect("rp");

    // Act + Assert
    let name = base
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_export_fails(&host, rp, &temp.path().join("export"), 32768, &name);
}

#[test]
fn export_over_a_frozen_layer_modified_outside_refpoint_fails_32775_naming_the_file() {
    // Arrange: qemu-io writes into the frozen base: its DataWriteGuid changes.
    let (temp, host, fixture) = host_with_fixture("modified", "1", "32M", "23");
    let base = base_disk(&fixture);
    run_ok(
        Command::new("qemu-io")
            .args(["-f", "vhdx", "-c", "write -P 0x77 0 64k"])
            .arg(&base),
    );
    let rp = fixture["reference_point"].as_str().expect("rp");

    // Act + Assert: the reference point no longer describes its sources (32775).
    let name = base
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_export_fails(&host, rp, &temp.path().join("export"), 32775, &name);
}

#[test]
fn second_process_opening_a_held_host_gets_32777_naming_the_holder_pid() {
    // Arrange: this process holds the host.
    let (_temp, host, _) = host_with_fixture("locked", "1", "8M", "24");
    let _held = Refpoint::open(&host).expect("open host");

    // Act
    let (code, out, _) = refpoint(&host, &["vm", "list"]);

    // Assert
    assert_eq!(code, 1);
    assert_eq!(out["ReturnValue"], 32777);
    let pid = std::process::id().to_string();
    assert!(
        out["ErrorDescription"]
            .as_str()
            .unwrap_or("")
            .contains(&pid),
        "{out}"
    );
}

fn open_fixture_host(name: &str) -> (tempfile::TempDir, Refpoint, String, String) {
    let (temp, host, fixture) = host_with_fixture(name, "1", "8M", "25");
    let service = Refpoint::open(&host).expect("open host");
    let rp = fixture["reference_point"].as_str().expect("rp").to_string();
    let path = format!(
        r#"\\localhost\root\virtualization\v2:Msvm_VirtualSystemReferencePoint.InstanceID="{}""#,
        rp.replace('\\', r"\\")
    );
    (temp, service, rp, path)
}

#[test]
fn export_reference_point_with_relative_directory_returns_32773() {
    let (_temp, service, _, path) = open_fixture_host("rel");
    let result =
        service
            .reference_point_service()
            .export_reference_point(&path, "relative/dir", "");
    assert_eq!(result.return_value, 32773);
    assert!(result.error.unwrap_or_default().contains("ExportDirectory"));
}

#[test]
fn export_reference_point_with_unknown_reference_point_returns_32773() {
    let (temp, service, _, _) = open_fixture_host("unknown");
    let path = r#"Msvm_VirtualSystemReferencePoint.InstanceID="Microsoft:00000000-0000-0000-0000-000000000000\\11111111-1111-1111-1111-111111111111""#;
    let dir = temp.path().join("x");
    let result = service.reference_point_service().export_reference_point(
        path,
        dir.to_str().expect("utf8"),
        "",
    );
    assert_eq!(result.return_value, 32773);
}

#[test]
fn export_reference_point_with_wrong_embedded_class_returns_32776() {
    let (temp, service, _, path) = open_fixture_host("class");
    let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSettingData"><PROPERTY NAME="ElementName" TYPE="string"><VALUE>x</VALUE></PROPERTY></INSTANCE>"#;
    let dir = temp.path().join("x");
    let result = service.reference_point_service().export_reference_point(
        &path,
        dir.to_str().expect("utf8"),
        xml,
    );
    assert_eq!(result.return_value, 32776);
}

#[test]
fn export_reference_point_with_wrong_property_type_returns_32776_naming_it() {
    let (temp, service, _, path) = open_fixture_host("type");
    let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData"><PROPERTY NAME="DisksToExport" TYPE="uint16"><VALUE>3</VALUE></PROPERTY></INSTANCE>"#;
    let dir = temp.path().join("x");
    let result = service.reference_point_service().export_reference_point(
        &path,
        dir.to_str().expect("utf8"),
        xml,
    );
    assert_eq!(result.return_value, 32776);
    assert!(result.error.unwrap_or_default().contains("DisksToExport"));
}

#[test]
fn export_reference_point_with_disk_not_in_reference_point_returns_32773_naming_it() {
    let (temp, service, _, path) = open_fixture_host("disk");
    let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData"><PROPERTY.ARRAY NAME="DisksToExport" TYPE="string"><VALUE.ARRAY><VALUE>Microsoft:NOPE\0\0\D</VALUE></VALUE.ARRAY></PROPERTY.ARRAY></INSTANCE>"#;
    let dir = temp.path().join("x");
    let result = service.reference_point_service().export_reference_point(
        &path,
        dir.to_str().expect("utf8"),
        xml,
    );
    assert_eq!(result.return_value, 32773);
    assert!(result.error.unwrap_or_default().contains("Microsoft:NOPE"));
}

#[test]
fn export_reference_point_with_valid_parameters_returns_4096_and_a_job_path() {
    let (temp, service, _, path) = open_fixture_host("ok");
    let dir = temp.path().join("out");
    let result = service.reference_point_service().export_reference_point(
        &path,
        dir.to_str().expect("utf8"),
        "",
    );
    assert_eq!(result.return_value, 4096, "{:?}", result.error);
    let job = result.job.expect("job path");
    assert!(job.contains("Msvm_ConcreteJob.InstanceID="), "{job}");
    let done = service.wait(&result.job_id.expect("job id")).expect("wait");
    assert_eq!(done.job_state.value(), 7);
    assert_eq!(done.percent_complete, 100);
}
