//! `verify` on damaged exports: each damage is reported on the right file
//! with the block index and offset; only unreadable input is an error.

mod common;

#[cfg(test)]
mod tests {

    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use crate::common::*;
    use refpoint_engine::{
        ErrorDetail, ErrorKind, ExportOutcome, FileReport, Finding, Unattended, VerifyError,
        VerifyReport, execute, plan, verify,
    };
    use refpoint_vhdx::{PayloadState, VhdxFile};

    fn export_standard(tmp: &Path) -> ExportOutcome {
        let source = standard_source(tmp);
        let req = request(
            &tmp.join("exports"),
            vec![disk("disk-0", "system disk", &[source])],
        );
        execute(plan(&req).expect("plan"), &Unattended, &config()).expect("export")
    }

    fn failures(report: &VerifyReport) -> Vec<&FileReport> {
        report.failures().map(|(_, f)| f).collect()
    }

    #[test]
    fn flipped_payload_byte_is_reported_on_the_vhdx_with_block_and_offset() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outcome = export_standard(tmp.path());
        let image = &outcome.disks[0].path;
        // Block 1 is stored; flip a byte 100 bytes into its payload.
        let (state, offset) = VhdxFile::open(image)
            .expect("open output")
            .payload_state(1)
            .expect("BAT entry");
        assert_eq!(state, PayloadState::FullyPresent);
        let at = offset.expect("payload offset") + 100;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(image)
            .expect("open rw");
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, at).expect("read byte");
        file.write_all_at(&[byte[0] ^ 0xff], at).expect("flip byte");

        let report = verify(&outcome.vm_folder).expect("verify");

        let failed = failures(&report);
        assert_eq!(failed.len(), 1, "{report}");
        assert_eq!(failed[0].path, "Virtual Hard Disks/system disk.vhdx");
        assert!(
            failed[0]
                .findings
                .iter()
                .any(|f| matches!(f, Finding::ChecksumMismatch { .. }))
        );
        assert!(
            failed[0]
                .findings
                .iter()
                .any(|f| matches!(f, Finding::ContentDigestMismatch { .. }))
        );
        let blocks: Vec<(u64, u64)> = failed[0]
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::BlockDigestMismatch { block, offset, .. } => Some((*block, *offset)),
                _ => None,
            })
            .collect();
        assert_eq!(blocks, vec![(1, 4 * MIB)]);
        assert!(
            report
                .to_string()
                .contains("block 1 (virtual offset 4194304)"),
            "{report}"
        );
    }

    #[test]
    fn flipped_sidecar_block_digest_is_reported_on_the_digests_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outcome = export_standard(tmp.path());
        let text = std::fs::read_to_string(&outcome.manifest_file).expect("read manifest");
        let manifest = refpoint_engine::manifest::Manifest::from_json(&text).expect("parse");
        let sidecar = manifest.disks[0].digests.as_ref().expect("digests record");
        let path = outcome.vm_folder.join(&sidecar.path);
        // Block 1's digest is unique (zero blocks share theirs).
        let mut bytes = std::fs::read(&path).expect("read sidecar");
        bytes[32] ^= 0x01;
        std::fs::write(&path, bytes).expect("rewrite sidecar");

        let report = verify(&outcome.vm_folder).expect("verify");

        let failed = failures(&report);
        assert_eq!(failed.len(), 1, "{report}");
        assert_eq!(failed[0].path, sidecar.path);
        assert!(
            failed[0]
                .findings
                .iter()
                .any(|f| matches!(f, Finding::ChecksumMismatch { .. }))
        );
        assert!(failed[0].findings.iter().any(
        |f| matches!(f, Finding::BlockDigestMismatch { block: 1, offset, .. } if *offset == 4 * MIB)
    ));
    }

    #[test]
    fn deleted_and_added_files_are_missing_and_unlisted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outcome = export_standard(tmp.path());
        std::fs::remove_file(&outcome.config_file).expect("delete config");
        std::fs::write(outcome.vm_folder.join("notes.txt"), b"extra").expect("add file");

        let report = verify(&tmp.path().join("exports")).expect("verify");

        let failed: Vec<(&str, &[Finding])> = failures(&report)
            .iter()
            .map(|f| (f.path.as_str(), f.findings.as_slice()))
            .collect();
        assert_eq!(
            failed,
            vec![
                (
                    "Virtual Machines/6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D.xml",
                    &[Finding::MissingFile][..]
                ),
                ("notes.txt", &[Finding::UnlistedFile][..]),
            ]
        );
    }

    #[test]
    fn truncated_manifest_is_reported_invalid_not_raised() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outcome = export_standard(tmp.path());
        std::fs::write(&outcome.manifest_file, b"{\"format\": ").expect("truncate manifest");

        let report = verify(&outcome.vm_folder).expect("verify");

        let failed = failures(&report);
        assert_eq!(failed.len(), 1, "{report}");
        assert_eq!(failed[0].path, "refpoint-export.json");
        assert!(
            failed[0]
                .findings
                .iter()
                .any(|f| matches!(f, Finding::ManifestInvalid { .. }))
        );
    }

    #[test]
    fn corrupt_vhdx_header_is_reported_as_image_invalid() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outcome = export_standard(tmp.path());
        let image = &outcome.disks[0].path;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .expect("open rw");
        // Both headers (64 KiB and 128 KiB) lose their signature.
        file.write_all_at(b"XXXX", 64 * 1024)
            .expect("break header 1");
        file.write_all_at(b"XXXX", 128 * 1024)
            .expect("break header 2");

        let report = verify(&outcome.vm_folder).expect("verify");

        let failed = failures(&report);
        assert_eq!(failed.len(), 1, "{report}");
        assert_eq!(failed[0].path, "Virtual Hard Disks/system disk.vhdx");
        assert!(
            failed[0]
                .findings
                .iter()
                .any(|f| matches!(f, Finding::ImageInvalid { .. }))
        );
    }

    #[test]
    fn verify_of_directory_without_export_is_invalid_parameter() {
        let tmp = tempfile::tempdir().expect("tempdir");

        let err = verify(tmp.path()).expect_err("no export");

        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        assert!(matches!(
            err.detail(),
            ErrorDetail::Verify(VerifyError::NotAnExport { .. })
        ));
    }

    #[test]
    fn verify_of_missing_directory_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");

        let err = verify(&tmp.path().join("nope")).expect_err("missing");

        assert_eq!(err.kind(), ErrorKind::Failed);
    }
}
