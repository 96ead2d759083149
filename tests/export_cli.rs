//! End to end through the `refpoint` binary: a fixture VM whose disks qemu
//! made, a reference point, an export, and independent checks of the result
//! (qemu-img check, qemu-img convert, sha256sum -c), then refpoint's own verify.
// Integration tests are their own crate: the lint meant for unit tests in
// library code does not apply here.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{host_with_fixture, qemu_raw_sha256, refpoint, run_ok};
use serde_json::Value;

fn export(host: &Path, rp: &str, to: &Path) -> (i32, Value, String) {
    refpoint(
        host,
        &[
            "export",
            "--reference-point",
            rp,
            "--to",
            to.to_str().expect("utf8"),
        ],
    )
}

fn exported_disks(job: &Value) -> Vec<PathBuf> {
    job["Job"]["ExportedLogFilePaths"]
        .as_array()
        .expect("ExportedLogFilePaths")
        .iter()
        .map(|v| PathBuf::from(v.as_str().expect("path")))
        .collect()
}

#[test]
fn export_of_fixture_vm_matches_the_reference_point_content_by_qemu_img() {
    // Arrange: 2 disks × 256 MiB made by qemu, RP, then writes after the RP.
    let (temp, host, fixture) = host_with_fixture("vm-a", "2", "256M", "11");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");

    // Act
    let (code, job, err) = export(&host, rp, &target);

    // Assert: Completed, and every exported VHDX passes qemu-img check and
    // reads (through qemu) exactly as the frozen base disk at the RP.
    assert_eq!(code, 0, "export failed: {err} {job}");
    assert_eq!(job["ReturnValue"], 4096);
    assert_eq!(job["Job"]["JobState"], 7);
    let outputs = exported_disks(&job);
    assert_eq!(outputs.len(), 2);
    let bases: Vec<PathBuf> = fixture["base_disks"]
        .as_array()
        .expect("base_disks")
        .iter()
        .map(|v| PathBuf::from(v.as_str().expect("path")))
        .collect();
    let scratch = temp.path().join("scratch.raw");
    for (out, base) in outputs.iter().zip(&bases) {
        run_ok(
            Command::new("qemu-img")
                .args(["check", "-f", "vhdx"])
                .arg(out),
        );
        assert_eq!(
            qemu_raw_sha256(out, &scratch),
            qemu_raw_sha256(base, &scratch),
            "{}",
            out.display()
        );
    }
}

#[test]
fn export_holds_the_reference_point_not_the_writes_made_after_it() {
    // Arrange
    let (temp, host, fixture) = host_with_fixture("vm-b", "1", "64M", "12");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    let (code, _, err) = export(&host, rp, &target);
    assert_eq!(code, 0, "{err}");
    let vm = fixture["vm_name"].as_str().expect("vm");
    let (_, shown, _) = refpoint(&host, &["vm", "show", vm]);
    let leaf = shown["VirtualSystem"]["Disks"][0]["Chain"][0]["Path"]
        .as_str()
        .expect("active leaf path")
        .to_string();

    // Act: hash the live disk (through its new leaf) and the export.
    let (_, live, _) = refpoint(&host, &["disk", "hash", &leaf]);
    let exported = target.join("vm-b/Virtual Hard Disks");
    let file = std::fs::read_dir(&exported)
        .expect("disk folder")
        .next()
        .expect("one disk")
        .expect("entry")
        .path();
    let (_, at_rp, _) = refpoint(&host, &["disk", "hash", file.to_str().expect("utf8")]);

    // Assert
    assert!(live["sha256"].is_string() && at_rp["sha256"].is_string());
    assert_ne!(
        live["sha256"], at_rp["sha256"],
        "writes after the RP leaked into the export"
    );
}

#[test]
fn export_checksums_pass_sha256sum_and_verify_and_a_flipped_byte_is_named() {
    // Arrange
    let (temp, host, fixture) = host_with_fixture("vm-c", "2", "64M", "13");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    let (code, job, err) = export(&host, rp, &target);
    assert_eq!(code, 0, "{err}");
    let folder = target.join("vm-c");

    // Act + Assert: standard tool and refpoint agree the export is intact.
    run_ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg("--quiet")
            .arg("SHA256SUMS")
            .current_dir(&folder),
    );
    let (code, _, err) = refpoint(&host, &["verify", folder.to_str().expect("utf8")]);
    assert_eq!(code, 0, "verify: {err}");

    // Flip one byte inside the first payload block of the first disk.
    let victim = exported_disks(&job).remove(0);
    let (_, info, _) = refpoint(&host, &["disk", "info", victim.to_str().expect("utf8")]);
    assert!(
        info["Chain"][0]["BlockStates"]["FullyPresent"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&victim)
        .expect("open");
    let len = f.metadata().expect("meta").len();
    let pos = len - 4096; // inside the last payload block written
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, pos).expect("read");
    byte[0] ^= 0xFF;
    f.write_all_at(&byte, pos).expect("write");
    drop(f);

    let (code, report, err) = refpoint(&host, &["verify", folder.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    let name = victim
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        report.to_string().contains(&name) || err.contains(&name),
        "verify output does not name {name}: {report} {err}"
    );
}

#[test]
fn specimen_chain_imported_exports_to_the_ground_truth_content() {
    // Arrange: the Hyper-V checkpoint child and its parent, as the child's
    // relative_path expects them.
    let temp = tempfile::tempdir().expect("tempdir");
    let disks = temp.path().join("specimen-vm");
    std::fs::create_dir_all(&disks).expect("mkdir");
    let parent = "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx";
    common::specimen(&format!("{parent}.gz"), &disks, parent);
    common::specimen("differencing.avhdx.gz", &disks, "differencing.avhdx");
    let host = temp.path().join("host");
    assert_eq!(
        refpoint(&host, &["host", "init", host.to_str().expect("utf8")]).0,
        0
    );
    let (code, vm, err) = refpoint(
        &host,
        &[
            "vm",
            "import",
            "--name",
            "spec",
            disks.to_str().expect("utf8"),
        ],
    );
    assert_eq!(code, 0, "import: {err}");
    assert_eq!(vm["Disks"].as_array().map(Vec::len), Some(1));
    let (code, rp, err) = refpoint(&host, &["rp", "create", "spec"]);
    assert_eq!(code, 0, "rp create: {err}");
    let rp_id = rp["ResultingReferencePoint"]["InstanceID"]
        .as_str()
        .expect("InstanceID")
        .to_string();

    // Act
    let target = temp.path().join("export");
    let (code, job, err) = export(&host, &rp_id, &target);

    // Assert: both qemu-img and refpoint read the ground-truth SHA-256.
    assert_eq!(code, 0, "export: {err} {job}");
    let out = exported_disks(&job).remove(0);
    let expected = "3c9697ff9f79ddc29c15937a4fd8c938525e8ff2232815e6a0718c41ce3ef121";
    assert_eq!(qemu_raw_sha256(&out, &temp.path().join("raw")), expected);
    let (_, hash, _) = refpoint(&host, &["disk", "hash", out.to_str().expect("utf8")]);
    assert_eq!(hash["sha256"], expected);
}

#[test]
fn memory_budget_too_small_for_one_segment_fails_the_job_out_of_memory() {
    // Arrange: a buffer budget below the smallest segment (1 MiB).
    let (temp, host, fixture) = host_with_fixture("vm-mem", "1", "16M", "5");
    let rp = fixture["reference_point"].as_str().expect("rp");
    let target = temp.path().join("export");
    std::fs::create_dir(&target).expect("export dir");

    // Act
    let (code, job, err) = refpoint(
        &host,
        &[
            "--memory",
            "512K",
            "export",
            "--reference-point",
            rp,
            "--to",
            target.to_str().expect("utf8"),
        ],
    );

    // Assert: the job ends Exception with 32778 (Out of memory), nothing written.
    assert_ne!(code, 0, "{job} {err}");
    assert_eq!(job["Job"]["JobState"], 10, "{job}");
    assert_eq!(job["Job"]["ErrorCode"], 32778, "{job}");
    assert_eq!(std::fs::read_dir(&target).expect("list").count(), 0);
}
