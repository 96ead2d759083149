//! Disk set changes between the base and the target of a differential
//! export (issue 3, item 6): a disk added to the VM after the base reference
//! point is exported full inside the differential export, next to the
//! differencing files of the disks the base already had. No "run a new full".

// Integration tests are their own crate: the lint meant for unit tests in
// library code does not apply here.
#![allow(clippy::tests_outside_test_module)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{qemu_raw_sha256, run_ok};
use refpoint::export::ExportOptions;
use refpoint::fixture::{DiskWrite, Fill, FixtureSpec, make_fixture, qemu_create, qemu_write};
use refpoint::service::Refpoint;
use serde_json::Value;

fn export_completed(rp: &Refpoint, id: &str, to: &Path, base: Option<&str>) {
    let options = ExportOptions {
        base: base.map(str::to_string),
        ..ExportOptions::default()
    };
    let job_id = rp.export(id, to, &options).expect("export starts");
    let job = rp.wait(&job_id).expect("job");
    assert_eq!(
        job.job_state.value(),
        7,
        "export ended with {:?}: {:?}",
        job.job_state,
        job.error_description
    );
}

#[test]
fn disk_added_after_the_base_is_exported_full_inside_the_differential_export() {
    // Arrange: a one-disk VM with RP1 exported full.
    let temp = tempfile::tempdir().expect("tempdir");
    let rp = Refpoint::init(&temp.path().join("host")).expect("host");
    let spec = FixtureSpec {
        name: "grow".into(),
        disks: 1,
        size: 16 << 20,
        seed: 31,
        block_size: 2 << 20,
        fill: Fill::Scattered { writes: 10 },
        writes_after: 5,
        directory: temp.path().join("disks"),
    };
    let made = make_fixture(&mut rp.host(), &spec).expect("fixture");
    let rp1 = made.reference_point.clone();
    export_completed(&rp, &rp1, &temp.path().join("e1"), None);

    // A second disk, made and written by qemu, joins the VM; then RP2.
    let added = temp.path().join("disks/added.vhdx");
    qemu_create(&added, 8 << 20, 1 << 20).expect("qemu-img create");
    let writes = [DiskWrite {
        offset: 1 << 20,
        length: 3 << 20,
        pattern: Some(0x6b),
    }];
    qemu_write(&added, &writes).expect("qemu-io write");
    let rp2 = {
        let mut host = rp.host();
        host.add_disk(&made.vm_name, &added).expect("add disk");
        host.create_reference_point(&made.vm_name)
            .expect("rp2")
            .instance_id
            .clone()
    };

    // Act: differential RP1 → RP2.
    let e2 = temp.path().join("e2");
    export_completed(&rp, &rp2, &e2, Some(&rp1));

    // Assert: the old disk is a differencing file, the new one a full dynamic
    // VHDX whose content (by qemu-img) is the added disk's at RP2.
    let folder = e2.join("grow");
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(folder.join("refpoint-export.json")).expect("manifest"),
    )
    .expect("json");
    let text = manifest.to_string();
    let disks_dir = folder.join("Virtual Hard Disks");
    let names: Vec<String> = std::fs::read_dir(&disks_dir)
        .expect("disk folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".avhdx")), "{names:?}");
    let full = disks_dir.join("added.vhdx");
    assert!(
        full.exists(),
        "added disk not exported full: {names:?} {text}"
    );
    run_ok(
        Command::new("qemu-img")
            .args(["check", "-f", "vhdx"])
            .arg(&full),
    );
    let scratch = temp.path().join("raw");
    assert_eq!(
        qemu_raw_sha256(&full, &scratch),
        qemu_raw_sha256(&added, &scratch)
    );
    run_ok(
        Command::new("sha256sum")
            .args(["-c", "--quiet", "SHA256SUMS"])
            .current_dir(&folder),
    );
}
