//! Differential exports end to end through the `refpoint` binary: a VM goes
//! through three reference points with seeded `refpoint workload` writes in
//! between (overwrites, partial blocks, writes past the first 4 GiB chunk);
//! full export of RP1, differentials RP1→RP2, RP2→RP3 and RP1→RP3. Each
//! chain of exports is read by libvhdi (pyvhdi, parents set explicitly) and
//! by refpoint (`verify --chain`, `disk hash` through the parent locators)
//! and compared with the raw images captured at each reference point.
//!
//! libvhdi reads a child's PAYLOAD_BLOCK_ZERO block as the parent's data;
//! the seeded workload writes random (never all-zero) data, so no block of
//! these differentials becomes all-zero. The ZERO case is checked with
//! refpoint's reader only, in the engine's tests.
#![allow(clippy::tests_outside_test_module)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "block indices and lengths of the test disks fit usize"
)]

mod common;
mod scenario;

use std::path::{Path, PathBuf};

use common::refpoint;
use scenario::{
    CHUNK, Scenario, block_states, blocks_touched, build, libvhdi_digests, manifest_digests,
    manifest_of, ok, raw_digests, vm_folder,
};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Full RP1 and the three differentials: files per export, per disk.
struct Exports {
    e1: Vec<PathBuf>,
    e12: Vec<PathBuf>,
    e23: Vec<PathBuf>,
    e13: Vec<PathBuf>,
}

fn export_all(sc: &Scenario) -> Exports {
    Exports {
        e1: sc.export_ok(1, None, "e1"),
        e12: sc.export_ok(2, Some(1), "e12"),
        e23: sc.export_ok(3, Some(2), "e23"),
        e13: sc.export_ok(3, Some(1), "e13"),
    }
}

#[test]
fn chains_of_exports_read_by_libvhdi_and_refpoint_equal_the_raw_images_at_each_rp() {
    // Arrange
    let sc = build("diff-vm");
    let writes_past_chunk = sc
        .writes
        .iter()
        .flat_map(|e| &e[0])
        .filter(|(o, l)| o + l > CHUNK)
        .count();
    assert!(
        writes_past_chunk > 0,
        "the seeded workload writes past the first chunk"
    );
    let overwrites = sc.epoch_writes(1, 1).iter().filter(|(o, l)| {
        sc.epoch_writes(0, 1)
            .iter()
            .any(|(p, m)| *o < p + m && *p < o + l)
    });
    assert!(
        overwrites.count() > 0,
        "the seeded workload overwrites earlier writes"
    );

    // Act
    let x = export_all(&sc);

    // Assert
    for d in 0..2 {
        let cases = [
            (vec![x.e12[d].clone(), x.e1[d].clone()], 1),
            (vec![x.e23[d].clone(), x.e12[d].clone(), x.e1[d].clone()], 2),
            (vec![x.e13[d].clone(), x.e1[d].clone()], 2),
        ];
        for (chain, rp) in cases {
            let truth = raw_digests(&sc.raws[rp][d]);
            assert_eq!(
                libvhdi_digests(&chain),
                truth,
                "libvhdi, disk {d}, chain {chain:?}"
            );
            assert_eq!(
                manifest_digests(&vm_folder(&chain[0]), &manifest_of(&chain[0])["disks"][d]),
                truth,
                "manifest digests, disk {d}, {chain:?}"
            );
        }
    }
    for chain in [
        vec![&x.e1[0], &x.e12[0], &x.e23[0]],
        vec![&x.e1[0], &x.e13[0]],
    ] {
        let folders: Vec<PathBuf> = chain.iter().map(|f| vm_folder(f)).collect();
        let mut args = vec!["verify", "--chain"];
        args.extend(folders.iter().map(|f| s(f)));
        let (code, report, err) = refpoint(&sc.host, &args);
        assert_eq!(code, 0, "verify --chain {folders:?}: {err} {report}");
    }
    // refpoint reading the small disk through the parent locators alone.
    let hash = ok(&sc.host, &["disk", "hash", s(&x.e23[1])]);
    let raw = std::fs::read(&sc.raws[2][1]).expect("raw");
    assert_eq!(
        hash["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw))
    );
}

#[test]
fn differential_holds_exactly_the_blocks_written_between_the_reference_points() {
    let sc = build("count-vm");

    let x = export_all(&sc);

    for d in 0..2 {
        let cases = [
            (&x.e12[d], blocks_touched(sc.epoch_writes(0, d))),
            (&x.e23[d], blocks_touched(sc.epoch_writes(1, d))),
            (
                &x.e13[d],
                blocks_touched(&[sc.epoch_writes(0, d), sc.epoch_writes(1, d)].concat()),
            ),
        ];
        for (file, touched) in cases {
            let states = block_states(&sc.host, file);
            assert_eq!(
                states["FullyPresent"],
                touched.len() as u64,
                "{}",
                file.display()
            );
            assert_eq!(states["Zero"], 0);
            assert_eq!(states["PartiallyPresent"], 0);
            let m = manifest_of(file);
            let disk = &m["disks"][d];
            assert_eq!(disk["output"]["kind"], "differencing");
            assert!(file.extension().is_some_and(|e| e == "avhdx"));
        }
    }
    let m = manifest_of(&x.e12[0]);
    assert_eq!(m["export_type"], "differential");
    assert_eq!(m["base"]["instance_id"], sc.rps[0]);
    assert_eq!(m["reference_point"]["instance_id"], sc.rps[1]);
    let parent = &m["disks"][0]["parent"];
    assert_eq!(
        parent["data_write_guid"],
        manifest_of(&x.e1[0])["disks"][0]["output"]["data_write_guid"]
    );
}

#[test]
fn lost_tracking_is_32775_under_strict_and_a_smaller_correct_export_under_fallback() {
    // Arrange: RP2's layers merged away (their epoch goes to the journal),
    // then the journal deleted: RP1→RP3 can no longer be answered.
    let sc = build("lost-vm");
    let e1 = sc.export_ok(1, None, "e1");
    let full3 = sc.export_ok(3, None, "full3");
    {
        let mut host = refpoint::core::Host::open(&sc.host).expect("open host");
        host.remove_associated_data(&sc.rps[1])
            .expect("remove data of RP2");
        let vm = host.vm(&sc.vm).expect("vm").clone();
        for disk in &vm.disks {
            let journal = host.journal_path(&vm.name, &disk.disk_guid);
            std::fs::remove_file(&journal)
                .unwrap_or_else(|e| panic!("remove {}: {e}", journal.display()));
        }
    }

    // Act
    let (strict_code, strict, strict_err) = sc.export(3, Some(1), "strict", &[]);
    let (code, job, err) = sc.export(3, Some(1), "fallback", &["--tracking", "fallback"]);

    // Assert: strict → 32775 naming a disk; nothing written.
    assert_eq!(strict_code, 1, "{strict}");
    assert_eq!(strict["ReturnValue"], 32775, "{strict} {strict_err}");
    let description = strict["ErrorDescription"]
        .as_str()
        .expect("ErrorDescription");
    assert!(
        sc.disks.iter().any(|d| description.contains(d.as_str())),
        "{description}"
    );
    assert!(!sc.dir("strict").join("lost-vm").exists());
    // fallback → CompletedWithWarnings, correct, smaller, recorded.
    assert_eq!(code, 0, "{err} {job}");
    assert_eq!(job["Job"]["JobState"], 32768);
    let files = scenario::exported_files(&job);
    let m = manifest_of(&files[0]);
    for d in 0..2 {
        assert_eq!(
            libvhdi_digests(&[files[d].clone(), e1[d].clone()]),
            raw_digests(&sc.raws[2][d]),
            "disk {d}"
        );
        let fallback = &m["disks"][d]["fallback"];
        assert!(
            fallback["reason"]
                .as_str()
                .is_some_and(|r| r.contains("lost")),
            "{fallback}"
        );
        let stored = block_states(&sc.host, &files[d])["FullyPresent"]
            .as_u64()
            .expect("count");
        let full_stored = block_states(&sc.host, &full3[d])["FullyPresent"]
            .as_u64()
            .expect("count");
        assert!(
            stored < full_stored,
            "disk {d}: {stored} blocks vs {full_stored} in a full export"
        );
        let len = |p: &Path| std::fs::metadata(p).expect("meta").len();
        assert!(
            len(&files[d]) < len(&full3[d]),
            "disk {d}: fallback file smaller than the full export"
        );
    }
    let chain = [vm_folder(&e1[0]), vm_folder(&files[0])];
    let (vcode, report, verr) =
        refpoint(&sc.host, &["verify", "--chain", s(&chain[0]), s(&chain[1])]);
    assert_eq!(vcode, 0, "{verr} {report}");
}

#[test]
fn base_rules_are_checked_before_any_job_starts() {
    let sc = build("rules-vm");
    let (code, newer, _) = sc.export(1, Some(2), "newer", &[]);
    let (code_same, same, _) = sc.export(2, Some(2), "same", &[]);
    let (code_never, never, _) = sc.export(3, Some(2), "never", &[]);
    let e2 = sc.export_ok(2, None, "e2");

    let (code_unknown, unknown, _) = refpoint(
        &sc.host,
        &[
            "export",
            "--reference-point",
            &sc.rps[2],
            "--base",
            "Microsoft:00000000-0000-0000-0000-000000000000\\11111111-1111-1111-1111-111111111111",
            "--to",
            s(&sc.dir("unknown")),
        ],
    );
    let with_record = sc.export_ok(3, Some(2), "recorded");
    let with_override = {
        let folder = vm_folder(&e2[0]);
        let (c, j, e) = sc.export(3, Some(2), "override", &["--base-export", s(&folder)]);
        assert_eq!(c, 0, "{e} {j}");
        scenario::exported_files(&j)
    };

    assert_eq!(
        (code, newer["ReturnValue"].as_u64()),
        (1, Some(32773)),
        "{newer}"
    );
    assert!(
        newer["ErrorDescription"]
            .as_str()
            .is_some_and(|d| d.contains("not older")),
        "{newer}"
    );
    assert_eq!(same["ReturnValue"], 32773, "{same}");
    assert_eq!(code_same, 1);
    assert_eq!(never["ReturnValue"], 32773, "{never}");
    assert_eq!(code_never, 1);
    assert!(
        never["ErrorDescription"]
            .as_str()
            .is_some_and(|d| d.contains(&sc.rps[1]) && d.contains("base-export")),
        "{never}"
    );
    assert_eq!(
        (code_unknown, unknown["ReturnValue"].as_u64()),
        (1, Some(32773)),
        "{unknown}"
    );
    for d in 0..2 {
        assert_eq!(
            libvhdi_digests(&[with_record[d].clone(), e2[d].clone()]),
            raw_digests(&sc.raws[2][d])
        );
        assert_eq!(
            libvhdi_digests(&[with_override[d].clone(), e2[d].clone()]),
            raw_digests(&sc.raws[2][d])
        );
    }
}

#[test]
fn base_of_another_vm_is_32773() {
    let sc = build("vm-one");
    let other_disk = sc.dir("other.vhdx");
    common::run_ok(
        std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "vhdx"])
            .arg(&other_disk)
            .arg("8M"),
    );
    ok(
        &sc.host,
        &["vm", "create", "--name", "vm-two", "--disk", s(&other_disk)],
    );
    let other_rp =
        ok(&sc.host, &["rp", "create", "vm-two"])["ResultingReferencePoint"]["InstanceID"]
            .as_str()
            .expect("InstanceID")
            .to_owned();

    let (code, json, _) = refpoint(
        &sc.host,
        &[
            "export",
            "--reference-point",
            &sc.rps[2],
            "--base",
            &other_rp,
            "--to",
            s(&sc.dir("x")),
        ],
    );

    assert_eq!(code, 1);
    assert_eq!(json["ReturnValue"], 32773, "{json}");
    assert!(
        json["ErrorDescription"]
            .as_str()
            .is_some_and(|d| d.contains("belongs to virtual system"))
    );
}

#[test]
fn workload_is_seeded_and_disk_write_changes_the_data_write_guid() {
    let sc = build("wl-vm");
    let shown = ok(&sc.host, &["vm", "show", "wl-vm"]);
    let leaf = shown["VirtualSystem"]["Disks"][1]["Chain"][0]["Path"]
        .as_str()
        .expect("leaf")
        .to_owned();
    let again = build("wl-vm");

    let before = ok(&sc.host, &["disk", "info", &leaf])["Chain"][0]["DataWriteGuid"].clone();
    let written = ok(
        &sc.host,
        &[
            "disk",
            "write",
            &leaf,
            "--offset",
            "1048576",
            "--length",
            "4096",
            "--pattern",
            "171",
        ],
    );
    let after = ok(&sc.host, &["disk", "info", &leaf])["Chain"][0]["DataWriteGuid"].clone();

    assert_eq!(sc.writes, again.writes, "same seeds, same writes");
    for (a, b) in sc.raws.iter().flatten().zip(again.raws.iter().flatten()) {
        assert_eq!(raw_digests(a), raw_digests(b));
    }
    assert_ne!(before, after);
    assert_eq!(
        written["DataWriteGuid"].as_str().map(str::to_lowercase),
        after.as_str().map(str::to_lowercase)
    );
    let out = common::run_ok(
        std::process::Command::new("python3")
            .args(["-c", "import sys, pyvhdi\nfiles=[]\nfor p in sys.argv[1:]:\n    f=pyvhdi.file(); f.open(p); files.append(f)\nfor i in range(len(files)-2,-1,-1): files[i].set_parent(files[i+1])\nsys.stdout.write(files[0].read_buffer_at_offset(4096, 1048576).hex())"])
            .args(
                shown["VirtualSystem"]["Disks"][1]["Chain"]
                    .as_array()
                    .expect("chain")
                    .iter()
                    .map(|l| l["Path"].as_str().expect("path").to_owned()),
            ),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ab".repeat(4096));
}
