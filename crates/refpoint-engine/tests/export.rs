//! Full exports checked against independent oracles: qemu-img (check,
//! convert), sha256sum, libvhdi and dissect.hypervisor.

mod common;

#[cfg(test)]
mod tests {

    use std::path::PathBuf;
    use std::process::Command;

    use crate::common::*;
    use refpoint_engine::manifest::Manifest;
    use refpoint_engine::{
        ExportOutcome, Unattended, content_digest, execute, export_data_write_guid, plan, sha256,
        verify,
    };
    use refpoint_vhdx::{CreateOptions, VhdxFile, VhdxWriter, create_differencing, create_dynamic};

    /// Exports the standard source; returns (tempdir, source path, outcome).
    fn export_standard() -> (tempfile::TempDir, PathBuf, ExportOutcome) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = standard_source(tmp.path());
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "system disk", std::slice::from_ref(&source))],
        );
        let outcome = execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export");
        (tmp, source, outcome)
    }

    fn manifest_of(outcome: &ExportOutcome) -> Manifest {
        let text = std::fs::read_to_string(&outcome.manifest_file).expect("read manifest");
        Manifest::from_json(&text).expect("parse manifest")
    }

    #[test]
    fn full_export_content_equals_source_through_qemu_img() {
        let (_tmp, source, outcome) = export_standard();

        let exported = qemu_raw(&outcome.disks[0].path);

        assert_eq!(exported, qemu_raw(&source));
    }

    #[test]
    fn full_export_passes_qemu_img_check() {
        let (_tmp, _source, outcome) = export_standard();

        let out = run(
            "qemu-img",
            &[
                "check",
                "-f",
                "vhdx",
                outcome.disks[0].path.to_str().expect("utf-8"),
            ],
        );

        assert!(out.contains("No errors were found"), "{out}");
    }

    #[test]
    fn full_export_passes_sha256sum_check_with_spaces_in_paths() {
        let (_tmp, _source, outcome) = export_standard();

        let out = Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(&outcome.vm_folder)
            .output()
            .expect("run sha256sum");

        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert_eq!(stdout.matches(": OK").count(), 4, "{stdout}");
        assert!(stdout.contains("system disk.vhdx.digests: OK"), "{stdout}");
        assert!(
            stdout.contains("Virtual Hard Disks/system disk.vhdx: OK"),
            "{stdout}"
        );
    }

    #[test]
    fn full_export_is_read_identically_by_libvhdi_and_dissect() {
        let (_tmp, source, outcome) = export_standard();
        let expected = qemu_raw(&source);

        let by_libvhdi = libvhdi_raw(&outcome.disks[0].path);
        let by_dissect = dissect_raw(&outcome.disks[0].path);

        assert!(by_libvhdi == expected, "libvhdi content differs");
        assert!(by_dissect == expected, "dissect content differs");
    }

    #[test]
    fn full_export_block_digests_are_sha256_of_each_raw_block() {
        let (_tmp, source, outcome) = export_standard();
        let raw = qemu_raw(&source);

        let manifest = manifest_of(&outcome);

        let expected: Vec<String> = raw.chunks(4 * MIBU).map(|b| hex(&sha256(b))).collect();
        assert_eq!(block_digests(&outcome.vm_folder, 0), expected);
        let binary: Vec<_> = raw.chunks(4 * MIBU).map(sha256).collect();
        assert_eq!(
            manifest.disks[0].content_digest,
            hex(&content_digest(&binary))
        );
        assert_eq!(
            outcome.disks[0].content_digest,
            manifest.disks[0].content_digest
        );
    }

    #[test]
    fn full_export_stores_data_blocks_leaves_zero_blocks_as_holes_and_skips_absent_ones() {
        let (_tmp, _source, outcome) = export_standard();

        let d = &outcome.disks[0];

        assert_eq!((d.blocks_stored, d.blocks_zero, d.blocks_absent), (3, 1, 1));
        assert_eq!(outcome.bytes_read, 12 * MIB + MIB + 512);
        let out = VhdxFile::open(&d.path).expect("open output");
        // Block 2 reads all-zero: planned, so FULLY_PRESENT, over a hole.
        assert_eq!(
            out.present_blocks().expect("present blocks"),
            vec![0, 1, 2, 4]
        );
    }

    #[test]
    fn full_export_records_allocated_ranges_as_changed_ranges() {
        let (_tmp, _source, outcome) = export_standard();

        let manifest = manifest_of(&outcome);

        // qemu allocates whole 4 MiB blocks: 0, 1, 2 and the short block 4.
        assert_eq!(
            manifest.disks[0].changed_ranges,
            vec![[0, 12 * MIB], [16 * MIB, MIB + 512]]
        );
    }

    #[test]
    fn full_export_keeps_source_geometry_and_derives_data_write_guid() {
        let (_tmp, source, outcome) = export_standard();
        let src = VhdxFile::open(&source).expect("open source");

        let out = VhdxFile::open(&outcome.disks[0].path).expect("open output");

        assert_eq!(out.geometry().virtual_size, 17 * MIB + 512);
        assert_eq!(out.geometry().block_size, 4 * MIB32);
        assert_eq!(
            out.geometry().logical_sector_size,
            src.geometry().logical_sector_size
        );
        assert_eq!(
            out.geometry().physical_sector_size,
            src.geometry().physical_sector_size
        );
        assert_eq!(out.virtual_disk_id(), src.virtual_disk_id());
        assert_eq!(
            out.data_write_guid(),
            export_data_write_guid(RP_ID, "disk-0")
        );
        assert_eq!(outcome.disks[0].data_write_guid, out.data_write_guid());
    }

    #[test]
    fn full_export_leaves_sources_unchanged() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = standard_source(tmp.path());
        let before = file_sha(&source);
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "d", std::slice::from_ref(&source))],
        );

        execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export");

        assert_eq!(file_sha(&source), before);
    }

    #[test]
    fn zero_blocks_inside_allocated_source_blocks_read_back_as_zero_and_take_no_disk_space() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("zeros.vhdx");
        qemu_create(&source, 32 * MIB, 2);
        // Blocks 0-7 allocated by explicit zero writes; block 8 holds data.
        qemu_write(&source, 0, 0, 16 * MIB);
        qemu_write(&source, 0x6b, 16 * MIB, 2 * MIB);
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "zeros", std::slice::from_ref(&source))],
        );

        let outcome = execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export");

        let d = &outcome.disks[0];
        assert_eq!((d.blocks_stored, d.blocks_zero), (1, 8));
        assert_eq!(qemu_raw(&d.path), qemu_raw(&source));
        let check = run(
            "qemu-img",
            &["check", "-f", "vhdx", d.path.to_str().expect("utf-8")],
        );
        assert!(check.contains("No errors were found"), "{check}");
        let meta = std::fs::metadata(&d.path).expect("stat output");
        let allocated = meta.blocks() * 512;
        // The 2 MiB data block and the headers/metadata/BAT, not the 16 MiB of zeros.
        assert!(meta.len() >= 20 * MIB, "file length {}", meta.len());
        assert!(allocated < 4 * MIB, "{allocated} bytes allocated");
    }

    #[test]
    fn full_export_writes_hyperv_layout_and_manifest_identities() {
        let (tmp, _source, outcome) = export_standard();

        let manifest = manifest_of(&outcome);

        assert_eq!(
            outcome.vm_folder,
            tmp.path().join("exports").join(ELEMENT_NAME)
        );
        assert_eq!(
            entries(&outcome.vm_folder),
            vec![
                "SHA256SUMS",
                "Virtual Hard Disks",
                "Virtual Machines",
                "refpoint-export.json",
                "system disk.vhdx.digests"
            ]
        );
        assert_eq!(
            outcome.config_file,
            outcome
                .vm_folder
                .join("Virtual Machines/6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D.xml")
        );
        assert_eq!(manifest.format, "refpoint-export/2");
        assert_eq!(manifest.reference_point.instance_id, RP_ID);
        assert_eq!(manifest.base, None);
        assert_eq!(manifest.virtual_system.element_name, ELEMENT_NAME);
        assert_eq!(manifest.disks[0].output.kind, "dynamic");
        assert_eq!(
            manifest.disks[0].output.size,
            std::fs::metadata(&outcome.disks[0].path)
                .expect("stat")
                .len()
        );
        assert_eq!(
            manifest.disks[0].output.sha256,
            hex(&file_sha(&outcome.disks[0].path))
        );
        assert_eq!(manifest.config.sha256, hex(&file_sha(&outcome.config_file)));
        assert_eq!(entries(&tmp.path().join("exports")), vec![ELEMENT_NAME]);
    }

    #[test]
    fn full_export_verifies_clean() {
        let (tmp, _source, outcome) = export_standard();

        let report = verify(&tmp.path().join("exports")).expect("verify");

        assert!(report.is_ok(), "{report}");
        assert_eq!(report.folders.len(), 1);
        assert_eq!(report.folders[0].folder, outcome.vm_folder);
        assert_eq!(report.folders[0].files.len(), 5);
    }

    #[test]
    fn chain_export_flattens_differencing_layers_with_base_block_size() {
        // Base by qemu (2 MiB blocks); child by refpoint-vhdx (1 MiB blocks),
        // written with sub-block writes. Expected content is built here from
        // qemu's view of the base plus the child's writes.
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("base.vhdx");
        qemu_create(&base, 8 * MIB, 2);
        qemu_write(&base, 0xaa, 0, 3 * MIB);
        qemu_write(&base, 0xbb, 6 * MIB, 64 * 1024);
        let mut expected = qemu_raw(&base);
        let child = tmp.path().join("child.avhdx");
        create_differencing(&child, &base, Some(MIB32)).expect("create child");
        let writes: [(u64, Vec<u8>); 3] = [
            (MIB + 512, vec![0xcc; 4096]),
            (6 * MIB, vec![0; 64 * 1024]),
            (4 * MIB, vec![0xdd; 512]),
        ];
        let mut writer = VhdxWriter::open(&child).expect("open child");
        for (offset, data) in &writes {
            writer.write_at(*offset, data).expect("write child");
            let at = usize::try_from(*offset).expect("small offset");
            expected[at..at + data.len()].copy_from_slice(data);
        }
        writer.flush().expect("flush child");
        drop(writer);
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "chained", &[child.clone(), base.clone()])],
        );

        let outcome = execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export");

        let out = &outcome.disks[0];
        assert!(qemu_raw(&out.path) == expected, "flattened content differs");
        assert_eq!(
            VhdxFile::open(&out.path)
                .expect("open")
                .geometry()
                .block_size,
            2 * MIB32
        );
        // Block 3 (6–8 MiB): base data overwritten by zeros in the child.
        assert_eq!(
            (out.blocks_stored, out.blocks_zero, out.blocks_absent),
            (3, 1, 0)
        );
        let manifest = manifest_of(&outcome);
        let chain: Vec<&str> = manifest.disks[0]
            .source_chain
            .iter()
            .map(|l| l.path.as_str())
            .collect();
        assert_eq!(
            chain,
            vec![
                child.to_str().expect("utf-8"),
                base.to_str().expect("utf-8")
            ]
        );
    }

    #[test]
    fn export_keeps_4096_byte_logical_sectors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("4k.vhdx");
        let mut opts = CreateOptions::new(3 * MIB);
        opts.block_size = MIB32;
        opts.logical_sector_size = 4096;
        opts.physical_sector_size = 4096;
        create_dynamic(&source, &opts).expect("create 4K disk");
        let mut writer = VhdxWriter::open(&source).expect("open");
        writer.write_at(MIB + 8192, &[0x42; 8192]).expect("write");
        writer.flush().expect("flush");
        drop(writer);
        let mut expected = vec![0u8; 3 * MIBU];
        expected[MIBU + 8192..MIBU + 16384].fill(0x42);
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "4k", std::slice::from_ref(&source))],
        );

        let outcome = execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export");

        let out = VhdxFile::open(&outcome.disks[0].path).expect("open output");
        assert_eq!(out.geometry().logical_sector_size, 4096);
        assert_eq!(out.geometry().physical_sector_size, 4096);
        assert!(
            dissect_raw(&outcome.disks[0].path) == expected,
            "dissect content differs"
        );
    }

    #[test]
    fn two_disks_with_one_buffer_and_one_thread_complete() {
        // The smallest pool (one block) and one worker: the in-order writer must
        // not deadlock while blocks of two disks interleave.
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = standard_source(tmp.path());
        let b = tmp.path().join("second.vhdx");
        qemu_create(&b, 9 * MIB, 1);
        qemu_write(&b, 0x77, 0, 9 * MIB);
        let req = request(
            &tmp.path().join("exports"),
            vec![
                disk("disk-a", "a", std::slice::from_ref(&a)),
                disk("disk-b", "b", std::slice::from_ref(&b)),
            ],
        );
        let cfg = refpoint_engine::EngineConfig {
            threads: 1,
            buffer_pool_bytes: 4 * MIB,
        };

        let outcome = execute(plan(&req).expect("plan"), &Unattended, &cfg).expect("export");

        assert!(
            qemu_raw(&outcome.disks[0].path) == qemu_raw(&a),
            "disk a differs"
        );
        assert!(
            qemu_raw(&outcome.disks[1].path) == qemu_raw(&b),
            "disk b differs"
        );
    }

    #[test]
    fn progress_counts_every_source_byte_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = standard_source(tmp.path());
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "d", std::slice::from_ref(&source))],
        );
        let control = Recorder::default();

        let outcome = execute(plan(&req).expect("plan"), &control, &config()).expect("export");

        let total = control.total.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(total, 13 * MIB + 512);
        assert_eq!(
            control.progress.load(std::sync::atomic::Ordering::SeqCst),
            total
        );
        assert_eq!(outcome.bytes_read, total);
    }

    #[test]
    fn exporting_twice_gives_identical_manifest_content_and_layout() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = standard_source(tmp.path());
        let export = |dir: &str| {
            let req = request(
                &tmp.path().join(dir),
                vec![disk("disk-0", "d", std::slice::from_ref(&source))],
            );
            execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export")
        };

        let one = export("one");
        let two = export("two");

        let first = manifest_of(&one);
        let second = manifest_of(&two);
        let layout = |o: &ExportOutcome| {
            let f = VhdxFile::open(&o.disks[0].path).expect("open output");
            (0..5)
                .map(|b| f.payload_state(b).expect("BAT entry"))
                .collect::<Vec<_>>()
        };
        assert_eq!(layout(&one), layout(&two));

        assert_eq!(
            block_digests(&one.vm_folder, 0),
            block_digests(&two.vm_folder, 0)
        );
        assert_eq!(first.disks[0].output.sha256, second.disks[0].output.sha256);
        assert_eq!(
            first.disks[0].content_digest,
            second.disks[0].content_digest
        );
        assert_eq!(first.disks[0].output.size, second.disks[0].output.size);
        assert_eq!(
            first.disks[0].output.data_write_guid,
            second.disks[0].output.data_write_guid
        );
    }

    #[test]
    fn empty_disk_exports_no_payload_and_zero_digests() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let source = tmp.path().join("empty.vhdx");
        qemu_create(&source, 5 * MIB, 2);
        let req = request(
            &tmp.path().join("exports"),
            vec![disk("disk-0", "empty", std::slice::from_ref(&source))],
        );

        let outcome = execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export");

        let d = &outcome.disks[0];
        assert_eq!((d.blocks_stored, d.blocks_zero, d.blocks_absent), (0, 0, 3));
        assert_eq!(outcome.bytes_read, 0);
        let manifest = manifest_of(&outcome);
        assert_eq!(manifest.disks[0].changed_ranges, Vec::<[u64; 2]>::new());
        assert_eq!(
            block_digests(&outcome.vm_folder, 0),
            vec![
                hex(&sha256(&[0u8; 2 * MIBU])),
                hex(&sha256(&[0u8; 2 * MIBU])),
                hex(&sha256(&[0u8; MIBU]))
            ]
        );
        assert!(qemu_raw(&d.path) == vec![0u8; 5 * MIBU], "not all zeros");
    }

    fn hex(d: &[u8; 32]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
}
