//! Collection exports: every member's VM folder, the collection manifest and
//! `SHA256SUMS`, committed together; failures and interruptions leave
//! nothing; verification of the collection.

mod common;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use refpoint_engine::collection_manifest::{
        COLLECTION_MANIFEST_FILE, CollectionManifest, CollectionRecord,
    };
    use refpoint_engine::{
        CollectionExportRequest, CollectionRecovery, ErrorKind, ExportRequest, Finding,
        Interrupted, ReferencePointIdentity, Unattended, execute_collection, plan_collection,
        verify_collection,
    };
    use uuid::Uuid;

    use super::common::{
        MIB, Recorder, config, disk, entries, qemu_create, qemu_raw, qemu_write, standard_source,
    };

    /// A member VM with one or two qemu-made disks.
    fn member(dir: &Path, export: &Path, index: u128, name: &str, disks: usize) -> ExportRequest {
        let vm = Uuid::from_u128(0x1000 + index);
        let src = dir.join(name);
        std::fs::create_dir_all(&src).unwrap();
        let mut list = Vec::new();
        for d in 0..disks {
            let path = if d == 0 {
                standard_source(&src)
            } else {
                let p = src.join(format!("data{d}.vhdx"));
                qemu_create(&p, 8 * MIB, 2);
                qemu_write(&p, 0x40 + u8::try_from(index).unwrap(), MIB, 2 * MIB);
                p
            };
            list.push(disk(
                &format!("Microsoft:{vm}\\D{d}\\0\\{d}\\D"),
                &format!("disk{d}"),
                &[path],
            ));
        }
        ExportRequest {
            export_directory: export.to_path_buf(),
            vm_name: vm,
            vm_element_name: name.to_owned(),
            reference_point: ReferencePointIdentity {
                instance_id: format!("Microsoft:{vm}\\RP"),
                virtual_system_identifier: vm.hyphenated().to_string().to_uppercase(),
                rct_ids: list
                    .iter()
                    .map(|d| format!("rct:{}", d.file_stem))
                    .collect(),
            },
            base: None,
            settings_xml: format!(
                "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSettingData\">{name}</INSTANCE>\n"
            ),
            disks: list,
            job_id: Uuid::new_v4(),
        }
    }

    fn collection(export: &Path, members: Vec<ExportRequest>) -> CollectionExportRequest {
        CollectionExportRequest {
            export_directory: export.to_path_buf(),
            job_id: Uuid::new_v4(),
            collection: CollectionRecord {
                collection_id: "C0".into(),
                element_name: "group".into(),
            },
            reference_point_collection: CollectionRecord {
                collection_id: "G1".into(),
                element_name: "group - (now)".into(),
            },
            base_reference_point_collection: None,
            members,
            removed_members: Vec::new(),
        }
    }

    /// Three members (2 + 1 + 2 disks) exporting into `<tmp>/out`.
    fn three(tmp: &Path) -> (PathBuf, CollectionExportRequest) {
        let out = tmp.join("out");
        let members = vec![
            member(tmp, &out, 3, "web 01", 2),
            member(tmp, &out, 1, "db", 1),
            member(tmp, &out, 2, "cache", 2),
        ];
        (out.clone(), collection(&out, members))
    }

    #[test]
    fn full_collection_export_writes_every_member_manifest_and_sums_that_check() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        let sources: Vec<(String, Vec<PathBuf>)> = req
            .members
            .iter()
            .map(|m| {
                (
                    m.vm_element_name.clone(),
                    m.disks.iter().map(|d| d.chain[0].clone()).collect(),
                )
            })
            .collect();

        let outcome =
            execute_collection(plan_collection(&req).unwrap(), &Unattended, &config()).unwrap();

        assert_eq!(
            entries(&out),
            vec![
                "SHA256SUMS",
                "cache",
                "db",
                "refpoint-collection.json",
                "web 01"
            ]
        );
        let check = Command::new("sha256sum")
            .args(["-c", "--quiet", "--strict", "SHA256SUMS"])
            .current_dir(&out)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        let listed = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
        assert!(
            listed.contains("  web 01/Virtual Hard Disks/disk1.vhdx\n"),
            "{listed}"
        );
        assert!(listed.contains("  db/SHA256SUMS\n"), "{listed}");
        for (name, disks) in sources {
            for (d, src) in disks.iter().enumerate() {
                let exported = out
                    .join(&name)
                    .join(format!("Virtual Hard Disks/disk{d}.vhdx"));
                assert_eq!(qemu_raw(&exported), qemu_raw(src), "{name} disk {d}");
            }
        }
        let manifest = CollectionManifest::from_json(
            &std::fs::read_to_string(out.join(COLLECTION_MANIFEST_FILE)).unwrap(),
        )
        .unwrap();
        let order: Vec<&str> = manifest
            .members
            .iter()
            .map(|m| m.element_name.as_str())
            .collect();
        assert_eq!(order, vec!["db", "cache", "web 01"], "ordered by VM GUID");
        assert_eq!(manifest.content_digest, outcome.content_digest);
        assert_eq!(
            manifest.computed_content_digest().unwrap(),
            manifest.content_digest
        );
        assert_eq!(outcome.members.len(), 3);
        assert_eq!(outcome.members[0].vm_folder, out.join("web 01"));
        let report = verify_collection(&out).unwrap();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.folders.len(), 4);
    }

    #[test]
    fn the_collection_digest_does_not_depend_on_member_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, req) = three(tmp.path());
        let mut reversed = req.clone();
        reversed.export_directory = tmp.path().join("out2");
        reversed.members.reverse();
        for m in &mut reversed.members {
            m.export_directory = reversed.export_directory.clone();
        }

        let a = execute_collection(plan_collection(&req).unwrap(), &Unattended, &config()).unwrap();
        let b = execute_collection(plan_collection(&reversed).unwrap(), &Unattended, &config())
            .unwrap();

        assert_eq!(a.content_digest, b.content_digest);
    }

    #[test]
    fn an_unreadable_member_source_fails_the_export_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        let plan = plan_collection(&req).unwrap();
        let victim = req.members[2].disks[1].chain[0].clone();
        // Planning read the metadata; now the data blocks cannot be read.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&victim)
            .unwrap()
            .set_len(2 * MIB)
            .unwrap();

        let err = execute_collection(plan, &Unattended, &config()).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Failed, "{err}");
        assert!(err.to_string().contains("data1.vhdx"), "{err}");
        assert!(entries(&out).is_empty(), "{:?}", entries(&out));
    }

    #[test]
    fn an_unwritable_export_directory_is_access_denied_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        std::fs::create_dir(&out).unwrap();
        let plan = plan_collection(&req).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();

        let result = execute_collection(plan, &Unattended, &config());

        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
        let uid = Command::new("id").arg("-u").output().unwrap().stdout;
        if String::from_utf8_lossy(&uid).trim() == "0" {
            return; // root writes anything: nothing to prove here
        }
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
        assert!(entries(&out).is_empty());
    }

    #[test]
    fn a_terminated_export_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        let control = Recorder {
            stop_at: Some((6, Interrupted::Terminated)),
            ..Recorder::default()
        };

        let err =
            execute_collection(plan_collection(&req).unwrap(), &control, &config()).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Interrupted(Interrupted::Terminated));
        assert!(entries(&out).is_empty());
    }

    #[test]
    fn progress_counts_every_member_once() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, req) = three(tmp.path());
        let plan = plan_collection(&req).unwrap();
        let total = plan.bytes_to_read();
        let control = Recorder::default();

        execute_collection(plan, &control, &config()).unwrap();

        use std::sync::atomic::Ordering;
        assert_eq!(control.total.load(Ordering::SeqCst), total);
        assert_eq!(control.progress.load(Ordering::SeqCst), total);
    }

    #[test]
    fn an_existing_member_folder_or_collection_file_is_target_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        std::fs::create_dir_all(out.join("db")).unwrap();
        let folder = plan_collection(&req).unwrap_err();
        std::fs::remove_dir(out.join("db")).unwrap();
        std::fs::write(out.join(COLLECTION_MANIFEST_FILE), b"older").unwrap();

        let file =
            execute_collection(plan_collection(&req).unwrap(), &Unattended, &config()).unwrap_err();

        assert_eq!(folder.kind(), ErrorKind::TargetExists, "{folder}");
        assert_eq!(file.kind(), ErrorKind::TargetExists, "{file}");
        assert!(
            file.to_string().contains(COLLECTION_MANIFEST_FILE),
            "{file}"
        );
        assert_eq!(entries(&out), vec![COLLECTION_MANIFEST_FILE]);
    }

    #[test]
    fn request_rules_are_invalid_parameters() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        let mut duplicate = req.clone();
        duplicate.members[1].vm_element_name = "WEB 01".into();
        let mut elsewhere = req.clone();
        elsewhere.members[0].export_directory = tmp.path().join("other");
        let mut empty = req.clone();
        empty.members.clear();

        for (what, bad) in [
            ("duplicate", duplicate),
            ("elsewhere", elsewhere),
            ("empty", empty),
        ] {
            let err = plan_collection(&bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{what}: {err}");
        }
        assert!(!out.exists());
    }

    #[test]
    fn a_stale_staging_left_by_a_crash_is_rolled_back_by_the_next_export() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        let stale = out.join(".refpoint-collection-dead");
        std::fs::create_dir_all(stale.join("db")).unwrap();
        std::fs::write(stale.join("db/partial"), b"half").unwrap();

        let outcome =
            execute_collection(plan_collection(&req).unwrap(), &Unattended, &config()).unwrap();

        assert!(
            matches!(&outcome.recovered[..], [CollectionRecovery::RolledBack { staging, .. }] if *staging == stale)
        );
        assert!(!stale.exists());
        assert!(verify_collection(&out).unwrap().is_ok());
    }

    #[test]
    fn verify_names_each_kind_of_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        execute_collection(plan_collection(&req).unwrap(), &Unattended, &config()).unwrap();
        std::fs::write(out.join("notes.txt"), b"extra").unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(COLLECTION_MANIFEST_FILE)).unwrap())
                .unwrap();
        manifest["members"][1]["content_digest"] = serde_json::json!("00".repeat(32));
        std::fs::write(
            out.join(COLLECTION_MANIFEST_FILE),
            serde_json::to_vec_pretty(&manifest).unwrap(),
        )
        .unwrap();

        let report = verify_collection(&out).unwrap();

        let top = &report.folders[0];
        let findings = |path: &str| -> Vec<Finding> {
            top.files
                .iter()
                .find(|f| f.path == path)
                .map(|f| f.findings.clone())
                .unwrap_or_default()
        };
        assert_eq!(findings("notes.txt"), vec![Finding::UnlistedFile]);
        let on_manifest = findings(COLLECTION_MANIFEST_FILE);
        assert!(
            on_manifest
                .iter()
                .any(|f| matches!(f, Finding::ChecksumMismatch { .. })),
            "{on_manifest:?}"
        );
        assert!(
            on_manifest
                .iter()
                .any(|f| matches!(f, Finding::ContentDigestMismatch { .. })),
            "{on_manifest:?}"
        );
        assert!(!report.is_ok());
    }

    #[test]
    fn verify_finds_a_damaged_member_image() {
        let tmp = tempfile::tempdir().unwrap();
        let (out, req) = three(tmp.path());
        execute_collection(plan_collection(&req).unwrap(), &Unattended, &config()).unwrap();
        let image = out.join("cache/Virtual Hard Disks/disk1.vhdx");
        let mut bytes = std::fs::read(&image).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&image, bytes).unwrap();

        let report = verify_collection(&out).unwrap();

        let bad: Vec<_> = report
            .failures()
            .map(|(folder, f)| (folder.to_path_buf(), f.path.clone()))
            .collect();
        assert!(
            bad.iter()
                .any(|(folder, path)| folder.ends_with("cache") && path.ends_with("disk1.vhdx")),
            "{bad:?}"
        );
    }
}
