//! `refpoint restore` end to end: synthetic fulls from a full export of RP1
//! and differential exports, checked with `qemu-img convert -O raw` against
//! the raw images captured at each reference point, verified by `refpoint
//! verify` and `qemu-img check`; atomic (a failing restore leaves nothing).
#![allow(clippy::tests_outside_test_module)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "block indices and offsets of the test disks fit usize"
)]

mod common;
mod scenario;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{refpoint, run_ok};
use scenario::{build, manifest_of, ok, qemu_raw, raw_digests, vm_folder};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn restore(host: &Path, folders: &[PathBuf], to: &Path) -> (i32, serde_json::Value, String) {
    let mut args = vec!["restore"];
    args.extend(folders.iter().map(|f| s(f)));
    args.extend(["--to", s(to)]);
    refpoint(host, &args)
}

fn restored_files(json: &serde_json::Value) -> Vec<PathBuf> {
    json["Disks"]
        .as_array()
        .expect("Disks")
        .iter()
        .map(|d| PathBuf::from(d["Path"].as_str().expect("Path")))
        .collect()
}

#[test]
fn restore_of_each_chain_reads_through_qemu_as_the_raw_image_at_its_reference_point() {
    // Arrange
    let sc = build("restore-vm");
    let e1 = sc.export_ok(1, None, "e1");
    let e12 = sc.export_ok(2, Some(1), "e12");
    let e23 = sc.export_ok(3, Some(2), "e23");
    let e13 = sc.export_ok(3, Some(1), "e13");
    let chains = [
        (vec![vm_folder(&e1[0])], 0),
        (vec![vm_folder(&e1[0]), vm_folder(&e12[0])], 1),
        (
            vec![vm_folder(&e1[0]), vm_folder(&e12[0]), vm_folder(&e23[0])],
            2,
        ),
        (vec![vm_folder(&e1[0]), vm_folder(&e13[0])], 2),
    ];

    for (i, (folders, rp)) in chains.iter().enumerate() {
        // Act
        let to = sc.dir(&format!("restored-{i}"));
        let (code, json, err) = restore(&sc.host, folders, &to);

        // Assert
        assert_eq!(code, 0, "restore {folders:?}: {err} {json}");
        let files = restored_files(&json);
        assert_eq!(files.len(), 2);
        for (d, file) in files.iter().enumerate() {
            let check = run_ok(
                Command::new("qemu-img")
                    .args(["check", "-f", "vhdx"])
                    .arg(file),
            );
            assert!(
                String::from_utf8_lossy(&check.stdout).contains("No errors"),
                "{}",
                file.display()
            );
            let raw = sc.dir(&format!("restored-{i}-{d}.raw"));
            qemu_raw(file, &raw);
            assert_eq!(
                raw_digests(&raw),
                raw_digests(&sc.raws[*rp][d]),
                "chain {i}, disk {d}"
            );
            std::fs::remove_file(&raw).expect("remove scratch");
        }
        let m = manifest_of(&files[0]);
        assert_eq!(m["export_type"], "synthetic-full");
        assert_eq!(m["reference_point"]["instance_id"], sc.rps[*rp]);
        assert_eq!(
            m["restored_from"].as_array().map(Vec::len),
            Some(folders.len())
        );
        let last = scenario::folder_manifest(folders.last().expect("last"));
        for d in 0..2 {
            assert_eq!(
                m["disks"][d]["content_digest"],
                last["disks"][d]["content_digest"]
            );
        }
        let (vcode, report, verr) = refpoint(&sc.host, &["verify", s(&vm_folder(&files[0]))]);
        assert_eq!(vcode, 0, "{verr} {report}");
    }
}

#[test]
fn synthetic_full_can_be_the_base_of_the_next_differential() {
    let sc = build("synth-vm");
    let e1 = sc.export_ok(1, None, "e1");
    let e12 = sc.export_ok(2, Some(1), "e12");
    let (code, json, err) = restore(
        &sc.host,
        &[vm_folder(&e1[0]), vm_folder(&e12[0])],
        &sc.dir("synthetic"),
    );
    assert_eq!(code, 0, "{err} {json}");
    let synthetic = restored_files(&json);

    let (code, job, err) = sc.export(
        3,
        Some(2),
        "e23",
        &["--base-export", s(&vm_folder(&synthetic[0]))],
    );

    assert_eq!(code, 0, "{err} {job}");
    let files = scenario::exported_files(&job);
    for d in 0..2 {
        assert_eq!(
            scenario::libvhdi_digests(&[files[d].clone(), synthetic[d].clone()]),
            raw_digests(&sc.raws[2][d])
        );
    }
}

#[test]
fn restore_that_does_not_reproduce_the_last_manifest_fails_and_leaves_nothing() {
    let sc = build("bad-vm");
    let e1 = sc.export_ok(1, None, "e1");
    let e12 = sc.export_ok(2, Some(1), "e12");
    // Flip a byte inside a stored payload block of the base export's small
    // disk that RP2 did not change (so the differential reads it from there).
    let info = ok(&sc.host, &["disk", "info", s(&e1[1])]);
    assert!(info["Chain"][0]["BlockStates"]["FullyPresent"].as_u64() > Some(0));
    let changed = scenario::blocks_touched(sc.epoch_writes(0, 1));
    let m1 = manifest_of(&e1[1]);
    let zero = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(vec![
        0u8;
        scenario::BLOCK
            as usize
    ]));
    let victim = scenario::manifest_digests(&vm_folder(&e1[1]), &m1["disks"][1])
        .iter()
        .enumerate()
        .position(|(b, d)| {
            d != scenario::ZERO && d != zero.as_str() && !changed.contains(&(b as u64))
        })
        .expect("a stored block unchanged in RP2");
    let offset = refpoint::vhdx::VhdxFile::open(&e1[1])
        .expect("open")
        .payload_state(victim as u64)
        .expect("state")
        .1
        .expect("stored");
    let mut bytes = std::fs::read(&e1[1]).expect("read");
    bytes[offset as usize + 100] ^= 0x40;
    std::fs::write(&e1[1], &bytes).expect("write");
    let to = sc.dir("restored");

    let (code, json, err) = restore(&sc.host, &[vm_folder(&e1[0]), vm_folder(&e12[0])], &to);

    assert_eq!(code, 1, "{json}");
    assert_eq!(json["ReturnValue"], 32768, "{json} {err}");
    assert!(
        json["ErrorDescription"]
            .as_str()
            .is_some_and(|d| d.contains(&sc.disks[1]) && d.contains("nothing was committed"))
    );
    let left: Vec<_> = std::fs::read_dir(&to)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(
        left.is_empty() || left == vec![0],
        "no VM folder, no staging directory: {left:?}"
    );
}

#[test]
fn restore_of_exports_out_of_order_is_32773() {
    let sc = build("order-vm");
    let e1 = sc.export_ok(1, None, "e1");
    let e12 = sc.export_ok(2, Some(1), "e12");
    let e23 = sc.export_ok(3, Some(2), "e23");

    let (code, json, _) = restore(
        &sc.host,
        &[vm_folder(&e1[0]), vm_folder(&e23[0]), vm_folder(&e12[0])],
        &sc.dir("r"),
    );

    assert_eq!(code, 1);
    assert_eq!(json["ReturnValue"], 32773, "{json}");
}
