//! pywbem (PyPI, unmodified) against `refpoint serve` on a loopback TCP port
//! with Basic credentials: `tests/pywbem/flow.py` runs a backup client's
//! sequence (enumerations, ExportReferencePoint with an embedded
//! ExportSettingData, job polling, Msvm_AffectedJobElement, the resulting
//! object of CreateReferencePoint, GetErrorEx of a failed job); this test
//! prepares the host and checks the export it made with `sha256sum -c`.
#![allow(clippy::tests_outside_test_module)]

mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{host_with_fixture, refpoint};
use serde_json::Value;
use serve_support::{PASSWORD, Service, USER};

fn flow_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pywbem/flow.py")
}

#[test]
fn pywbem_runs_a_backup_clients_sequence_against_the_service() {
    // Arrange: a good VM, and a second VM whose frozen base is then destroyed.
    let (temp, host, good) = host_with_fixture("good", "2", "64M", "51");
    let (code, bad, err) = refpoint(
        &host,
        &[
            "fixture", "--name", "bad", "--disks", "1", "--size", "32M", "--seed", "52",
        ],
    );
    assert_eq!(code, 0, "fixture: {err}");
    let bad_base = PathBuf::from(bad["base_disks"][0].as_str().expect("base"));
    let len = std::fs::metadata(&bad_base).expect("base").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bad_base)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let export_dir = temp.path().join("export");
    let service = Service::start(&host, true);
    let url = format!("http://{}", service.listen.as_deref().expect("tcp"));

    // Act
    let out = Command::new("python3")
        .arg(flow_script())
        .args(["--url", &url, "--user", USER, "--password", PASSWORD])
        .args(["--good-vm", "good"])
        .args(["--good-rp", good["reference_point"].as_str().expect("rp")])
        .args(["--bad-rp", bad["reference_point"].as_str().expect("rp")])
        .args([
            "--bad-file",
            &bad_base.file_name().expect("name").to_string_lossy(),
        ])
        .arg("--export-dir")
        .arg(&export_dir)
        .output()
        .expect("python3 (pywbem is installed by scripts/test.sh)");

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flow.py failed:\n{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).expect("summary JSON");
    eprintln!("flow.py summary: {summary}");
    assert!(
        summary["error_messages"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
    let check = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(export_dir.join("good"))
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let failed_dir = PathBuf::from(format!("{}-failed", export_dir.display()));
    assert!(
        serve_support::entries(&failed_dir).is_empty(),
        "failed export left files: {:?}",
        serve_support::entries(&failed_dir)
    );
    let stopped = service.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}
