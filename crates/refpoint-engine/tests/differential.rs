//! Differential exports, `verify_chain` and `restore`, on a disk that goes
//! through three reference points: a qemu-made base (RP1), a differencing
//! layer written through `refpoint-vhdx` (RP2), another on top (RP3).
//! Content is checked with libvhdi (pyvhdi, parents set explicitly) reading
//! both the source chain and the chain of exports, and with qemu-img for
//! restored files.

mod common;

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    reason = "block indices, lengths and seeds of a 40 MiB test disk fit usize and u8 by construction"
)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::common::*;
    use refpoint_engine::manifest::{Manifest, OUTPUT_KIND_DIFFERENCING, OUTPUT_KIND_DYNAMIC};
    use refpoint_engine::{
        BaseError, BaseReferencePoint, ChangeTracking, DifferentialError, DiskExport, ErrorDetail,
        ExportOutcome, ExportRequest, Finding, ReferencePointIdentity, RequestError, RestoreError,
        TrackingPolicy, Unattended, execute, plan, restore, sha256, verify, verify_chain,
    };
    use refpoint_vhdx::{Chain, PayloadState, VhdxFile, VhdxWriter, create_differencing};
    use uuid::Uuid;

    const SIZE: u64 = 40 * MIB;
    const BLOCK: u64 = 2 * MIB;
    const DISK: &str = "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D\\D0\\0\\0\\D";
    const RP1: &str =
        "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D\\11111111-1111-4111-8111-111111111111";
    const RP2: &str =
        "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D\\22222222-2222-4222-8222-222222222222";
    const RP3: &str =
        "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D\\33333333-3333-4333-8333-333333333333";

    /// Writes between RP1 and RP2: a partial block, a write across two
    /// blocks, a whole-block overwrite of base data.
    const WRITES_2: [(u64, u64); 3] = [
        (MIB + 512, 4096),
        (10 * MIB + 51_200, 3 * MIB),
        (14 * MIB, 2 * MIB),
    ];
    /// Writes between RP2 and RP3: an overwrite of an RP2 write, a new
    /// block, the last sector of the disk.
    const WRITES_3: [(u64, u64); 3] = [
        (10 * MIB + 102_400, 8192),
        (30 * MIB + 4096, 512),
        (SIZE - 512, 512),
    ];

    /// The disk at three reference points.
    struct Disk {
        tmp: tempfile::TempDir,
        base: PathBuf,
        l1: PathBuf,
        l2: PathBuf,
    }

    impl Disk {
        /// RP1 = [base]; RP2 = [l1, base]; RP3 = [l2, l1, base].
        fn chain(&self, rp: usize) -> Vec<PathBuf> {
            match rp {
                1 => vec![self.base.clone()],
                2 => vec![self.l1.clone(), self.base.clone()],
                _ => vec![self.l2.clone(), self.l1.clone(), self.base.clone()],
            }
        }
        fn dir(&self, name: &str) -> PathBuf {
            self.tmp.path().join(name)
        }
    }

    fn seeded(len: u64, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed | 1)
            .collect()
    }

    fn write_layer(path: &Path, writes: &[(u64, u64)], seed: u8) {
        let mut w = VhdxWriter::open(path).expect("open writer");
        for (i, (offset, len)) in writes.iter().enumerate() {
            w.write_at(*offset, &seeded(*len, seed.wrapping_add(i as u8)))
                .expect("write");
        }
        w.flush().expect("flush");
    }

    fn make_disk() -> Disk {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("disk.vhdx");
        qemu_create(&base, SIZE, 2);
        qemu_write(&base, 0x11, 0, 3 * MIB);
        qemu_write(&base, 0x22, 14 * MIB, MIB);
        qemu_write(&base, 0x33, 20 * MIB, 2 * MIB);
        let l1 = tmp.path().join("disk-rp2.avhdx");
        create_differencing(&l1, &base, Some(1 << 20)).expect("l1");
        write_layer(&l1, &WRITES_2, 0x40);
        let l2 = tmp.path().join("disk-rp3.avhdx");
        create_differencing(&l2, &l1, None).expect("l2");
        write_layer(&l2, &WRITES_3, 0x80);
        Disk { tmp, base, l1, l2 }
    }

    fn identity(rp: &str) -> ReferencePointIdentity {
        ReferencePointIdentity {
            instance_id: rp.to_owned(),
            virtual_system_identifier: VM_NAME.hyphenated().to_string().to_uppercase(),
            rct_ids: vec![format!("rct:{rp}")],
        }
    }

    fn disk_export(chain: &[PathBuf], changes: Option<ChangeTracking>) -> DiskExport {
        DiskExport {
            changes,
            ..disk(DISK, "disk", chain)
        }
    }

    fn req(rp: &str, to: &Path, disks: Vec<DiskExport>) -> ExportRequest {
        let mut r = request(to, disks);
        r.reference_point = identity(rp);
        r
    }

    fn with_base(
        mut r: ExportRequest,
        base_rp: &str,
        folder: &Path,
        tracking: TrackingPolicy,
    ) -> ExportRequest {
        r.base = Some(BaseReferencePoint {
            identity: identity(base_rp),
            export_folder: folder.to_path_buf(),
            tracking,
            removed_disks: Vec::new(),
        });
        r
    }

    fn run(r: &ExportRequest) -> ExportOutcome {
        execute(plan(r).expect("plan"), &Unattended, &config()).expect("export")
    }

    fn manifest(outcome: &ExportOutcome) -> Manifest {
        Manifest::from_json(&std::fs::read_to_string(&outcome.manifest_file).expect("read"))
            .expect("parse")
    }

    fn ranges(writes: &[(u64, u64)]) -> Vec<(u64, u64)> {
        writes.to_vec()
    }

    /// Full RP1, differentials RP1→RP2, RP2→RP3 and RP1→RP3.
    struct Exports {
        disk: Disk,
        e1: ExportOutcome,
        e2: ExportOutcome,
        e3: ExportOutcome,
        e13: ExportOutcome,
    }

    fn export_all() -> Exports {
        let disk = make_disk();
        let e1 = run(&req(
            RP1,
            &disk.dir("e1"),
            vec![disk_export(&disk.chain(1), None)],
        ));
        let changes2 = ChangeTracking::Changes(ranges(&WRITES_2));
        let e2 = run(&with_base(
            req(
                RP2,
                &disk.dir("e2"),
                vec![disk_export(&disk.chain(2), Some(changes2))],
            ),
            RP1,
            &e1.vm_folder,
            TrackingPolicy::Strict,
        ));
        let changes3 = ChangeTracking::Changes(ranges(&WRITES_3));
        let e3 = run(&with_base(
            req(
                RP3,
                &disk.dir("e3"),
                vec![disk_export(&disk.chain(3), Some(changes3))],
            ),
            RP2,
            &e2.vm_folder,
            TrackingPolicy::Strict,
        ));
        let mut both = ranges(&WRITES_2);
        both.extend(WRITES_3);
        let e13 = run(&with_base(
            req(
                RP3,
                &disk.dir("e13"),
                vec![disk_export(
                    &disk.chain(3),
                    Some(ChangeTracking::Changes(both)),
                )],
            ),
            RP1,
            &e1.vm_folder,
            TrackingPolicy::Strict,
        ));
        Exports {
            disk,
            e1,
            e2,
            e3,
            e13,
        }
    }

    fn file(o: &ExportOutcome) -> PathBuf {
        o.disks[0].path.clone()
    }

    fn blocks_touched(writes: &[(u64, u64)]) -> Vec<u64> {
        let mut blocks: Vec<u64> = writes
            .iter()
            .flat_map(|(o, l)| (o / BLOCK)..=((o + l - 1) / BLOCK))
            .collect();
        blocks.sort_unstable();
        blocks.dedup();
        blocks
    }

    fn state_of(path: &Path) -> Vec<PayloadState> {
        let f = VhdxFile::open(path).expect("open");
        (0..SIZE / BLOCK)
            .map(|b| f.payload_state(b).expect("state").0)
            .collect()
    }

    fn refpoint_digests(chain: &Chain) -> Vec<String> {
        (0..SIZE / BLOCK)
            .map(|b| {
                let mut buf = vec![0u8; BLOCK as usize];
                chain.read_at(b * BLOCK, &mut buf).expect("read");
                hex::encode(sha256(&buf))
            })
            .collect()
    }

    #[test]
    fn chains_of_exports_read_by_libvhdi_and_refpoint_equal_the_sources() {
        let x = export_all();

        let cases = [
            (vec![file(&x.e2), file(&x.e1)], x.disk.chain(2)),
            (vec![file(&x.e3), file(&x.e2), file(&x.e1)], x.disk.chain(3)),
            (vec![file(&x.e13), file(&x.e1)], x.disk.chain(3)),
        ];

        for (exported, source) in cases {
            let truth = libvhdi_chain_digests(&source, BLOCK);
            assert_eq!(
                libvhdi_chain_digests(&exported, BLOCK),
                truth,
                "libvhdi {exported:?}"
            );
            let through_locators = Chain::open(&exported[0]).expect("open chain through locators");
            assert_eq!(through_locators.layers().len(), exported.len());
            assert_eq!(
                refpoint_digests(&through_locators),
                truth,
                "refpoint {exported:?}"
            );
        }
    }

    #[test]
    fn differential_holds_exactly_the_blocks_written_between_the_reference_points() {
        let x = export_all();

        let cases = [
            (file(&x.e2), blocks_touched(&WRITES_2)),
            (file(&x.e3), blocks_touched(&WRITES_3)),
            (file(&x.e13), blocks_touched(&[WRITES_2, WRITES_3].concat())),
        ];

        for (path, touched) in cases {
            let states = state_of(&path);
            let present: Vec<u64> = (0..SIZE / BLOCK)
                .filter(|b| states[*b as usize] == PayloadState::FullyPresent)
                .collect();
            assert_eq!(present, touched, "{}", path.display());
            assert!(
                states
                    .iter()
                    .all(|s| matches!(s, PayloadState::FullyPresent | PayloadState::NotPresent))
            );
        }
        assert_eq!(
            x.e2.disks[0].blocks_stored,
            blocks_touched(&WRITES_2).len() as u64
        );
    }

    #[test]
    fn differential_manifest_records_base_parent_ranges_and_full_digests() {
        let x = export_all();
        let m1 = manifest(&x.e1);

        let m = manifest(&x.e2);

        assert_eq!(m.export_type, "differential");
        assert_eq!(m.base.as_ref().map(|b| b.instance_id.as_str()), Some(RP1));
        let base_export = m.base_export.as_ref().expect("base_export");
        assert_eq!(
            base_export.manifest_sha256,
            hex::encode(file_sha(&x.e1.manifest_file))
        );
        let d = &m.disks[0];
        assert_eq!(d.output.kind, OUTPUT_KIND_DIFFERENCING);
        assert_eq!(
            d.output.path,
            "Virtual Hard Disks/disk-22222222-2222-4222-8222-222222222222.avhdx"
        );
        let parent = d.parent.as_ref().expect("parent");
        assert_eq!(parent.data_write_guid, m1.disks[0].output.data_write_guid);
        assert_eq!(parent.content_digest, m1.disks[0].content_digest);
        assert_eq!(
            parent.relative_path,
            "..\\..\\..\\e1\\Test VM 01\\Virtual Hard Disks\\disk.vhdx"
        );
        let mut expected_ranges: Vec<[u64; 2]> = WRITES_2.iter().map(|(o, l)| [*o, *l]).collect();
        expected_ranges.sort_unstable();
        assert_eq!(d.changed_ranges, expected_ranges);
        let own = block_digests(&x.e2.vm_folder, 0);
        let base = block_digests(&x.e1.vm_folder, 0);
        assert_eq!(own, libvhdi_chain_digests(&x.disk.chain(2), BLOCK));
        assert!(d.fallback.is_none());
        let unchanged = (0..SIZE / BLOCK).filter(|b| !blocks_touched(&WRITES_2).contains(b));
        for b in unchanged {
            assert_eq!(own[b as usize], base[b as usize]);
        }
    }

    #[test]
    fn differential_output_keeps_geometry_and_links_to_the_base_file() {
        let x = export_all();

        let child = VhdxFile::open(&file(&x.e2)).expect("open");
        let parent = VhdxFile::open(&file(&x.e1)).expect("open");

        let locator = child.parent_locator().expect("locator");
        assert_eq!(locator.parent_linkage(), parent.data_write_guid());
        assert_eq!(child.geometry().virtual_size, SIZE);
        assert_eq!(u64::from(child.geometry().block_size), BLOCK);
        assert_eq!(child.virtual_disk_id(), parent.virtual_disk_id());
        assert_eq!(
            child.data_write_guid(),
            refpoint_engine::export_data_write_guid(RP2, DISK),
            "deterministic identity of the RP2 content"
        );
        assert_eq!(
            x.e3.disks[0].data_write_guid,
            x.e13.disks[0].data_write_guid
        );
    }

    #[test]
    fn every_export_and_the_chains_verify_clean() {
        let x = export_all();

        for o in [&x.e1, &x.e2, &x.e3, &x.e13] {
            let report = verify(&o.vm_folder).expect("verify");
            assert!(report.is_ok(), "{report}");
        }
        let chain = verify_chain(&[
            x.e1.vm_folder.clone(),
            x.e2.vm_folder.clone(),
            x.e3.vm_folder.clone(),
        ])
        .expect("verify chain");
        assert!(chain.is_ok(), "{chain}");
        let short =
            verify_chain(&[x.e1.vm_folder.clone(), x.e13.vm_folder.clone()]).expect("verify chain");
        assert!(short.is_ok(), "{short}");
    }

    #[test]
    fn sha256sum_checks_a_differential_export() {
        let x = export_all();

        let out = std::process::Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(&x.e2.vm_folder)
            .output()
            .expect("sha256sum");

        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn verify_chain_in_the_wrong_order_reports_a_broken_chain() {
        let x = export_all();

        let report =
            verify_chain(&[x.e1.vm_folder.clone(), x.e3.vm_folder.clone()]).expect("verify chain");

        let findings: Vec<&Finding> = report.folders[1]
            .files
            .iter()
            .flat_map(|f| &f.findings)
            .collect();
        assert!(
            findings
                .iter()
                .any(|f| matches!(f, Finding::ChainBroken { reason } if reason.contains(RP2))),
            "{report}"
        );
        assert!(
            findings
                .iter()
                .any(|f| matches!(f, Finding::ParentMismatch { .. })),
            "{report}"
        );
    }

    #[test]
    fn verify_chain_finds_a_base_block_changed_behind_its_checksums() {
        let x = export_all();
        // One payload byte of the base export's block 1 (unchanged in RP2,
        // so the differential reads it from the base) is flipped.
        let base_file = file(&x.e1);
        let f = VhdxFile::open(&base_file).expect("open");
        let (_, offset) = f.payload_state(1).expect("state");
        let offset = offset.expect("block 1 stored");
        drop(f);
        let mut bytes = std::fs::read(&base_file).expect("read");
        bytes[offset as usize + 5] ^= 0xff;
        std::fs::write(&base_file, &bytes).expect("write");

        let report =
            verify_chain(&[x.e1.vm_folder.clone(), x.e2.vm_folder.clone()]).expect("verify chain");

        assert!(!report.is_ok());
        let e2_findings: Vec<&Finding> = report.folders[1]
            .files
            .iter()
            .flat_map(|f| &f.findings)
            .collect();
        assert!(
            e2_findings
                .iter()
                .any(|f| matches!(f, Finding::ContentDigestMismatch { .. })),
            "the differential's content through the chain must not verify: {report}"
        );
        assert!(
            verify(&x.e2.vm_folder).expect("verify").is_ok(),
            "on its own the differential is intact"
        );
    }

    #[test]
    fn restore_builds_a_standalone_vhdx_whose_qemu_content_is_the_target() {
        let x = export_all();
        let to = x.disk.dir("restored");

        let outcome = restore(
            &[
                x.e1.vm_folder.clone(),
                x.e2.vm_folder.clone(),
                x.e3.vm_folder.clone(),
            ],
            &to,
            &Unattended,
            &config(),
        )
        .expect("restore");

        let restored = &outcome.disks[0];
        assert!(
            !VhdxFile::open(&restored.path)
                .expect("open")
                .geometry()
                .has_parent
        );
        let raw = qemu_raw(&restored.path);
        let digests: Vec<String> = raw
            .chunks(BLOCK as usize)
            .map(|c| hex::encode(sha256(c)))
            .collect();
        assert_eq!(digests, libvhdi_chain_digests(&x.disk.chain(3), BLOCK));
        assert_eq!(restored.content_digest, x.e3.disks[0].content_digest);
        assert_eq!(
            restored.data_write_guid,
            refpoint_engine::export_data_write_guid(RP3, DISK)
        );
        let m = manifest(&outcome);
        assert_eq!(m.export_type, "synthetic-full");
        assert_eq!(m.restored_from.len(), 3);
        assert_eq!(m.disks[0].output.kind, OUTPUT_KIND_DYNAMIC);
        assert_eq!(m.disks[0].output.path, "Virtual Hard Disks/disk.vhdx");
        assert!(verify(&outcome.vm_folder).expect("verify").is_ok());
    }

    #[test]
    fn restore_of_exports_that_do_not_chain_is_invalid_parameter() {
        let x = export_all();

        let err = restore(
            &[x.e1.vm_folder.clone(), x.e3.vm_folder.clone()],
            &x.disk.dir("restored"),
            &Unattended,
            &config(),
        )
        .expect_err("e3's base is RP2");

        assert_eq!(err.return_code(), 32773);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Restore(RestoreError::NotAChain { .. })
        ));
        assert!(!x.disk.dir("restored").join(ELEMENT_NAME).exists());
    }

    #[test]
    fn restore_from_a_changed_base_block_fails_and_commits_nothing() {
        let x = export_all();
        let base_file = file(&x.e1);
        let f = VhdxFile::open(&base_file).expect("open");
        let offset = f
            .payload_state(1)
            .expect("state")
            .1
            .expect("block 1 stored");
        drop(f);
        let mut bytes = std::fs::read(&base_file).expect("read");
        bytes[offset as usize] ^= 1;
        std::fs::write(&base_file, &bytes).expect("write");
        let to = x.disk.dir("restored");

        let err = restore(
            &[x.e1.vm_folder.clone(), x.e2.vm_folder.clone()],
            &to,
            &Unattended,
            &config(),
        )
        .expect_err("content differs");

        assert_eq!(err.return_code(), 32768);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Restore(RestoreError::ContentDigestMismatch { disk, .. }) if disk == DISK
        ));
        assert_eq!(entries(&to), Vec::<String>::new());
    }

    #[test]
    fn fallback_compares_digests_and_stores_only_differing_blocks() {
        let x = export_all();
        let lost = ChangeTracking::Lost {
            reason: "journal record 2 is missing".to_owned(),
        };

        let o = run(&with_base(
            req(
                RP2,
                &x.disk.dir("fb"),
                vec![disk_export(&x.disk.chain(2), Some(lost))],
            ),
            RP1,
            &x.e1.vm_folder,
            TrackingPolicy::Fallback,
        ));

        let touched = blocks_touched(&WRITES_2);
        let states = state_of(&file(&o));
        let present: Vec<u64> = (0..SIZE / BLOCK)
            .filter(|b| states[*b as usize] == PayloadState::FullyPresent)
            .collect();
        assert_eq!(present, touched);
        assert_eq!(
            o.blocks_unchanged, 2,
            "blocks 1 and 10 hold unchanged base data"
        );
        assert_eq!(o.warnings.len(), 1);
        assert!(
            o.warnings[0].contains(DISK) && o.warnings[0].contains("journal record 2 is missing")
        );
        let m = manifest(&o);
        let fb = m.disks[0].fallback.as_ref().expect("fallback recorded");
        assert_eq!(fb.reason, "journal record 2 is missing");
        assert_eq!(fb.blocks_differing, touched.len() as u64);
        assert_eq!(
            libvhdi_chain_digests(&[file(&o), file(&x.e1)], BLOCK),
            libvhdi_chain_digests(&x.disk.chain(2), BLOCK)
        );
        let full = run(&req(
            RP2,
            &x.disk.dir("full2"),
            vec![disk_export(&x.disk.chain(2), None)],
        ));
        assert!(o.blocks_stored < full.blocks_stored);
        let len = |p: PathBuf| std::fs::metadata(p).expect("meta").len();
        assert!(
            len(file(&o)) < len(file(&full)),
            "fallback output smaller than a full export"
        );
    }

    #[test]
    fn lost_tracking_under_strict_policy_is_invalid_state_naming_the_disk() {
        let x = export_all();
        let lost = ChangeTracking::Lost {
            reason: "layer modified outside refpoint".to_owned(),
        };
        let r = with_base(
            req(
                RP2,
                &x.disk.dir("strict"),
                vec![disk_export(&x.disk.chain(2), Some(lost))],
            ),
            RP1,
            &x.e1.vm_folder,
            TrackingPolicy::Strict,
        );

        let err = plan(&r).expect_err("strict");

        assert_eq!(err.return_code(), 32775);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Request(RequestError::TrackingLost { disk, .. }) if disk == DISK
        ));
        assert!(
            err.to_string().contains(DISK)
                && err.to_string().contains("layer modified outside refpoint")
        );
    }

    #[test]
    fn block_that_became_all_zero_is_stored_as_a_hole_not_left_to_the_parent() {
        // Checked with refpoint's reader only: libvhdi reads a child's ZERO
        // block as the parent's data.
        let disk = make_disk();
        let e1 = run(&req(
            RP1,
            &disk.dir("e1"),
            vec![disk_export(&disk.chain(1), None)],
        ));
        let l3 = disk.dir("zeroed.avhdx");
        create_differencing(&l3, &disk.base, None).expect("layer");
        let mut w = VhdxWriter::open(&l3).expect("writer");
        w.write_at(20 * MIB, &vec![0u8; 2 * MIB as usize])
            .expect("zero write");
        w.flush().expect("flush");
        drop(w);
        let chain = vec![l3.clone(), disk.base.clone()];

        let o = run(&with_base(
            req(
                RP2,
                &disk.dir("e2"),
                vec![disk_export(
                    &chain,
                    Some(ChangeTracking::Changes(vec![(20 * MIB, 2 * MIB)])),
                )],
            ),
            RP1,
            &e1.vm_folder,
            TrackingPolicy::Strict,
        ));

        // FULLY_PRESENT over a sparse hole: reads zeros, not the parent's data.
        let states = state_of(&file(&o));
        assert_eq!(states[10], PayloadState::FullyPresent);
        let through = Chain::open(&file(&o)).expect("chain");
        let mut buf = vec![1u8; BLOCK as usize];
        through.read_at(20 * MIB, &mut buf).expect("read");
        assert!(buf.iter().all(|b| *b == 0));
        assert_eq!(
            block_digests(&o.vm_folder, 0)[10],
            hex::encode(sha256(&buf))
        );
        assert!(
            verify_chain(&[e1.vm_folder.clone(), o.vm_folder.clone()])
                .expect("verify")
                .is_ok()
        );
    }

    #[test]
    fn disk_added_since_the_base_is_exported_full_and_removed_disk_is_recorded() {
        let x = export_all();
        let added = x.disk.dir("added.vhdx");
        qemu_create(&added, 8 * MIB, 2);
        qemu_write(&added, 0x77, MIB, MIB);
        let mut r = with_base(
            req(
                RP2,
                &x.disk.dir("e2b"),
                vec![
                    disk_export(
                        &x.disk.chain(2),
                        Some(ChangeTracking::Changes(ranges(&WRITES_2))),
                    ),
                    disk(
                        "Microsoft:VM\\ADDED\\0\\1\\D",
                        "added",
                        std::slice::from_ref(&added),
                    ),
                ],
            ),
            RP1,
            &x.e1.vm_folder,
            TrackingPolicy::Strict,
        );
        if let Some(b) = r.base.as_mut() {
            b.removed_disks = vec!["Microsoft:VM\\GONE\\0\\2\\D".to_owned()];
        }

        let o = run(&r);

        let m = manifest(&o);
        assert_eq!(m.disks[1].output.kind, OUTPUT_KIND_DYNAMIC);
        assert_eq!(m.disks[1].output.path, "Virtual Hard Disks/added.vhdx");
        assert!(
            m.disks[1]
                .full_reason
                .as_deref()
                .is_some_and(|r| r.contains("not in the base export"))
        );
        assert_eq!(qemu_raw(&o.disks[1].path), qemu_raw(&added));
        assert_eq!(
            m.removed_disks,
            vec!["Microsoft:VM\\GONE\\0\\2\\D".to_owned()]
        );
        assert!(verify(&o.vm_folder).expect("verify").is_ok());
    }

    #[test]
    fn base_export_of_another_reference_point_is_invalid_parameter() {
        let x = export_all();
        let r = with_base(
            req(
                RP3,
                &x.disk.dir("bad"),
                vec![disk_export(
                    &x.disk.chain(3),
                    Some(ChangeTracking::Changes(ranges(&WRITES_3))),
                )],
            ),
            RP2,
            &x.e1.vm_folder,
            TrackingPolicy::Strict,
        );

        let err = plan(&r).expect_err("wrong base export");

        assert_eq!(err.return_code(), 32773);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Base(BaseError::WrongReferencePoint { .. })
        ));
    }

    #[test]
    fn base_export_folder_without_manifest_is_invalid_parameter_naming_it() {
        let x = export_all();
        let empty = x.disk.dir("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let r = with_base(
            req(
                RP2,
                &x.disk.dir("bad"),
                vec![disk_export(
                    &x.disk.chain(2),
                    Some(ChangeTracking::Changes(ranges(&WRITES_2))),
                )],
            ),
            RP1,
            &empty,
            TrackingPolicy::Strict,
        );

        let err = plan(&r).expect_err("no manifest");

        assert_eq!(err.return_code(), 32773);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Base(BaseError::NoManifest { .. })
        ));
        assert!(err.to_string().contains("empty"));
    }

    #[test]
    fn base_file_written_after_its_export_is_invalid_parameter_naming_the_file() {
        let x = export_all();
        let mut w = VhdxWriter::open(&file(&x.e1)).expect("writer");
        w.write_at(0, &[9u8; 512]).expect("write");
        w.flush().expect("flush");
        drop(w);
        let r = with_base(
            req(
                RP2,
                &x.disk.dir("bad"),
                vec![disk_export(
                    &x.disk.chain(2),
                    Some(ChangeTracking::Changes(ranges(&WRITES_2))),
                )],
            ),
            RP1,
            &x.e1.vm_folder,
            TrackingPolicy::Strict,
        );

        let err = plan(&r).expect_err("base file modified");

        assert_eq!(err.return_code(), 32773);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Base(BaseError::FileMismatch {
                field: "DataWriteGuid",
                ..
            })
        ));
    }

    #[test]
    fn changed_range_past_the_disk_is_invalid_parameter() {
        let x = export_all();
        let r = with_base(
            req(
                RP2,
                &x.disk.dir("bad"),
                vec![disk_export(
                    &x.disk.chain(2),
                    Some(ChangeTracking::Changes(vec![(SIZE - 512, 1024)])),
                )],
            ),
            RP1,
            &x.e1.vm_folder,
            TrackingPolicy::Strict,
        );

        let err = plan(&r).expect_err("range outside");

        assert_eq!(err.return_code(), 32773);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Differential(DifferentialError::RangeOutsideDisk { .. })
        ));
    }

    #[test]
    fn changes_without_a_base_are_invalid_parameter() {
        let disk = make_disk();
        let r = req(
            RP2,
            &disk.dir("e"),
            vec![disk_export(
                &disk.chain(2),
                Some(ChangeTracking::Changes(Vec::new())),
            )],
        );

        let err = plan(&r).expect_err("changes without base");

        assert!(matches!(
            err.detail(),
            ErrorDetail::Request(RequestError::ChangesWithoutBase { .. })
        ));
    }

    #[test]
    fn base_of_another_virtual_system_is_invalid_parameter() {
        let x = export_all();
        let mut r = with_base(
            req(
                RP2,
                &x.disk.dir("bad"),
                vec![disk_export(&x.disk.chain(2), None)],
            ),
            RP1,
            &x.e1.vm_folder,
            TrackingPolicy::Strict,
        );
        if let Some(b) = r.base.as_mut() {
            b.identity.virtual_system_identifier = Uuid::nil().to_string();
        }

        let err = plan(&r).expect_err("other VM");

        assert_eq!(err.return_code(), 32773);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Request(RequestError::BaseOfAnotherVm { .. })
        ));
    }
}

/// One test per rule of the base export and restore checks: each edits one
/// thing of a valid chain of exports and expects the exact error variant.
#[cfg(test)]
mod hostile {
    use std::path::{Path, PathBuf};

    use crate::common::*;
    use refpoint_engine::{
        BaseError, BaseReferencePoint, ChangeTracking, EngineError, ErrorDetail, ExportOutcome,
        ExportRequest, ReferencePointIdentity, RestoreError, TrackingPolicy, Unattended, execute,
        plan, restore,
    };
    use serde_json::Value;

    const RP1: &str =
        "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D\\AAAAAAAA-1111-4111-8111-111111111111";
    const RP2: &str =
        "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D\\BBBBBBBB-2222-4222-8222-222222222222";

    fn identity(rp: &str) -> ReferencePointIdentity {
        ReferencePointIdentity {
            instance_id: rp.to_owned(),
            virtual_system_identifier: VM_NAME.hyphenated().to_string().to_uppercase(),
            rct_ids: Vec::new(),
        }
    }

    struct Setup {
        tmp: tempfile::TempDir,
        chain2: Vec<PathBuf>,
        e1: ExportOutcome,
    }

    /// A 8 MiB disk exported full at RP1, and RP2's chain with one write.
    fn setup() -> Setup {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("d.vhdx");
        qemu_create(&base, 8 * MIB, 2);
        qemu_write(&base, 0x31, 0, MIB);
        let layer = tmp.path().join("d2.avhdx");
        refpoint_vhdx::create_differencing(&layer, &base, None).expect("layer");
        let mut w = refpoint_vhdx::VhdxWriter::open(&layer).expect("writer");
        w.write_at(4 * MIB, &[0x44; 4096]).expect("write");
        w.flush().expect("flush");
        drop(w);
        let mut r1 = request(
            &tmp.path().join("e1"),
            vec![disk("d", "d", std::slice::from_ref(&base))],
        );
        r1.reference_point = identity(RP1);
        let e1 = execute(plan(&r1).expect("plan"), &Unattended, &config()).expect("export");
        Setup {
            chain2: vec![layer, base],
            tmp,
            e1,
        }
    }

    fn differential(s: &Setup, to: &str) -> ExportRequest {
        let mut d = disk("d", "d", &s.chain2);
        d.changes = Some(ChangeTracking::Changes(vec![(4 * MIB, 4096)]));
        let mut r = request(&s.tmp.path().join(to), vec![d]);
        r.reference_point = identity(RP2);
        r.base = Some(BaseReferencePoint {
            identity: identity(RP1),
            export_folder: s.e1.vm_folder.clone(),
            tracking: TrackingPolicy::Strict,
            removed_disks: Vec::new(),
        });
        r
    }

    fn edit_manifest(folder: &Path, edit: impl FnOnce(&mut Value)) {
        let path = folder.join("refpoint-export.json");
        let mut m: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        edit(&mut m);
        std::fs::write(&path, serde_json::to_string_pretty(&m).expect("json")).expect("write");
    }

    /// Plans the differential against the (edited) base export: 32773.
    fn base_error(s: &Setup) -> EngineError {
        let err = plan(&differential(s, "e2")).expect_err("base export unusable");
        assert_eq!(err.return_code(), 32773, "{err}");
        err
    }

    #[test]
    fn base_manifest_that_is_not_json_is_manifest_invalid() {
        let s = setup();
        std::fs::write(s.e1.vm_folder.join("refpoint-export.json"), b"{ not json").expect("write");

        assert!(matches!(
            base_error(&s).detail(),
            ErrorDetail::Base(BaseError::ManifestInvalid { .. })
        ));
    }

    #[test]
    fn base_manifest_of_another_vm_is_wrong_virtual_system() {
        let s = setup();
        edit_manifest(&s.e1.vm_folder, |m| {
            m["virtual_system"]["name"] = "00000000-0000-0000-0000-000000000001".into()
        });

        assert!(matches!(
            base_error(&s).detail(),
            ErrorDetail::Base(BaseError::WrongVirtualSystem { .. })
        ));
    }

    #[test]
    fn base_manifest_output_path_leaving_the_folder_is_unsafe_path() {
        let s = setup();
        edit_manifest(&s.e1.vm_folder, |m| {
            m["disks"][0]["output"]["path"] = "../../d.vhdx".into()
        });

        assert!(matches!(
            base_error(&s).detail(),
            ErrorDetail::Base(BaseError::UnsafePath { .. })
        ));
    }

    #[test]
    fn base_file_missing_is_file_open_naming_it() {
        let s = setup();
        std::fs::remove_file(&s.e1.disks[0].path).expect("remove");

        let err = base_error(&s);

        assert!(matches!(
            err.detail(),
            ErrorDetail::Base(BaseError::FileOpen { path, .. })
                if path.file_name() == s.e1.disks[0].path.file_name()
        ));
    }

    #[test]
    fn base_block_digest_edited_is_digests_invalid() {
        let s = setup();
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(s.e1.vm_folder.join("refpoint-export.json")).expect("read"),
        )
        .expect("json");
        let sidecar =
            s.e1.vm_folder
                .join(m["disks"][0]["digests"]["path"].as_str().expect("path"));
        let mut bytes = std::fs::read(&sidecar).expect("read sidecar");
        bytes[32..64].fill(0);
        std::fs::write(&sidecar, bytes).expect("write sidecar");

        assert!(matches!(
            base_error(&s).detail(),
            ErrorDetail::Base(BaseError::DigestsInvalid { .. })
        ));
    }

    #[test]
    fn restore_of_nothing_is_no_exports() {
        let s = setup();

        let err =
            restore(&[], &s.tmp.path().join("r"), &Unattended, &config()).expect_err("nothing");

        assert!(matches!(
            err.detail(),
            ErrorDetail::Restore(RestoreError::NoExports)
        ));
    }

    #[test]
    fn restore_of_a_differential_without_its_base_is_disk_chain() {
        let s = setup();
        let e2 = execute(
            plan(&differential(&s, "e2")).expect("plan"),
            &Unattended,
            &config(),
        )
        .expect("export");

        let err = restore(
            &[e2.vm_folder],
            &s.tmp.path().join("r"),
            &Unattended,
            &config(),
        )
        .expect_err("no base");

        assert_eq!(err.return_code(), 32773);
        assert!(
            matches!(err.detail(), ErrorDetail::Restore(RestoreError::DiskChain { disk, .. }) if disk == "d")
        );
    }

    #[test]
    fn restore_with_a_malformed_data_write_guid_is_manifest_value() {
        let s = setup();
        edit_manifest(&s.e1.vm_folder, |m| {
            m["disks"][0]["output"]["data_write_guid"] = "not-a-guid".into()
        });

        let err = restore(
            std::slice::from_ref(&s.e1.vm_folder),
            &s.tmp.path().join("r"),
            &Unattended,
            &config(),
        )
        .expect_err("bad guid");

        assert!(
            matches!(err.detail(), ErrorDetail::Restore(RestoreError::ManifestValue { field, .. }) if field == "output.data_write_guid")
        );
    }

    #[test]
    fn restore_with_a_changed_settings_file_is_config_mismatch() {
        let s = setup();
        std::fs::write(s.e1.config_file.clone(), b"<INSTANCE/>").expect("write");

        let err = restore(
            std::slice::from_ref(&s.e1.vm_folder),
            &s.tmp.path().join("r"),
            &Unattended,
            &config(),
        )
        .expect_err("config");

        assert_eq!(err.return_code(), 32768);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Restore(RestoreError::ConfigMismatch { .. })
        ));
    }
}
