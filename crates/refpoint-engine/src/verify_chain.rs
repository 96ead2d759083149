//! Verifying differential exports: a differencing output on its own
//! ([`verify_differencing`], part of [`crate::verify`]) and a chain of
//! exports, base first ([`verify_chain`], `refpoint verify --chain`).
//!
//! On its own, a differencing output can only vouch for the blocks it holds:
//! each `PAYLOAD_BLOCK_FULLY_PRESENT` block is read from the file and hashed,
//! each `PAYLOAD_BLOCK_ZERO` block must have the zero digest; blocks that
//! read from the parent are left to the chain check.
//!
//! A chain check trusts no single file. Each folder is first verified on its
//! own (`SHA256SUMS`, manifest, its own blocks). Then each differential
//! export must name the previous export's reference point as its base and
//! pin the previous manifest's SHA-256; each differencing output's parent
//! locator must carry the previous export's file's `DataWriteGuid` as
//! `parent_linkage` and its relative (or absolute) path must resolve to that
//! file. Finally every block of every disk is read through the chain of
//! exported files (`refpoint-vhdx` [`Chain`], opened from the given folders,
//! not from the locators) and the digests must reproduce each manifest's
//! block digests and content digest.

use std::fs;
use std::path::{Path, PathBuf};

use refpoint_vhdx::{Chain, VhdxFile};

use crate::base::BlockDigests;
use crate::base::ExportFolder;
use crate::digest::to_hex;
use crate::error::EngineError;
use crate::identity::guid_upper;
use crate::manifest::{DiskRecord, OUTPUT_KIND_DIFFERENCING, is_contained};
use crate::plan::MANIFEST_FILE;
use crate::verify::{
    Finding, Findings, FolderReport, Mismatches, Scanned, VerifyError, VerifyReport,
    check_listed_content, listing_file, recompute_digests, report_digests, verify_folder,
};

/// Checks a differencing output on its own: geometry and identity against
/// the manifest, the parent locator against the manifest's `parent`, and the
/// digest of every block the file holds.
pub(crate) fn verify_differencing(
    index: usize,
    disk: &DiskRecord,
    listed: &BlockDigests,
    scan: &Scanned,
    findings: &mut Findings,
) -> Result<(), EngineError> {
    let image = disk.output.path.as_str();
    let listing = listing_file(disk);
    let field = |name: &str| format!("disks[{index}].{name}");
    let scan = match scan {
        Ok(s) => s,
        Err(reason) => {
            findings.add(
                image,
                Finding::ImageInvalid {
                    reason: reason.clone(),
                },
            );
            return Ok(());
        }
    };
    let file = &scan.file;
    let linkage = file
        .parent_locator()
        .map(|l| guid_upper(l.parent_linkage()));
    let relative = file
        .parent_locator()
        .and_then(|l| l.relative_path())
        .map(str::to_owned);
    let parent = disk.parent.as_ref();
    let mut checks = crate::verify::geometry_checks(disk, file, true);
    checks.extend([
        (
            "parent.data_write_guid",
            parent.map_or_else(String::new, |p| p.data_write_guid.to_ascii_uppercase()),
            linkage.unwrap_or_default(),
        ),
        (
            "parent.relative_path",
            parent.map_or_else(String::new, |p| p.relative_path.clone()),
            relative.unwrap_or_default(),
        ),
    ]);
    let mut aligned = true;
    for (name, manifest, actual) in checks {
        if manifest != actual {
            if matches!(name, "virtual_size" | "block_size" | "has_parent") {
                aligned = false;
            }
            findings.add(
                image,
                Finding::ManifestMismatch {
                    field: field(name),
                    manifest,
                    actual,
                },
            );
        }
    }
    if !aligned {
        return Ok(());
    }
    let mut reader = match listed.reader() {
        Ok(r) => r,
        Err(reason) => {
            findings.add(listing, Finding::ManifestInvalid { reason });
            return Ok(());
        }
    };
    // Only the blocks this file holds can be checked without the parent.
    let mut own = scan.own.iter().peekable();
    let mut mismatches = Mismatches::new(u64::from(disk.block_size));
    for block in 0..disk
        .virtual_size
        .div_ceil(u64::from(disk.block_size).max(1))
    {
        let want = match reader.get(block) {
            Ok(w) => w,
            Err(reason) => {
                findings.add(listing, Finding::ManifestInvalid { reason });
                return Ok(());
            }
        };
        if let Some((_, got)) = own.next_if(|(b, _)| *b == block) {
            mismatches.check(block, &want, got);
        }
    }
    check_listed_content(disk, index, reader, findings);
    mismatches.report(image, findings);
    Ok(())
}

/// Verifies a chain of exports: `folders[0]` is the base (any export), each
/// later folder a differential export whose base is the folder before it.
///
/// # Errors
/// As [`crate::verify`] for a folder that cannot be read at all;
/// [`VerifyError::NotAnExport`] for an empty list.
pub fn verify_chain(folders: &[PathBuf]) -> Result<VerifyReport, EngineError> {
    let Some(first) = folders.first() else {
        return Err(VerifyError::NotAnExport {
            path: PathBuf::new(),
        }
        .into());
    };
    for folder in folders {
        if !folder.is_dir() {
            return Err(VerifyError::NotAnExport {
                path: folder.clone(),
            }
            .into());
        }
    }
    let mut reports = folders
        .iter()
        .map(|f| verify_folder(f))
        .collect::<Result<Vec<_>, EngineError>>()?;
    let mut exports = Vec::with_capacity(folders.len());
    for (folder, report) in folders.iter().zip(reports.iter_mut()) {
        match ExportFolder::open(folder) {
            Ok(e) => exports.push(e),
            Err(e) => {
                report.add(
                    MANIFEST_FILE,
                    Finding::ChainBroken {
                        reason: format!("the chain cannot be followed: {e}"),
                    },
                );
                return Ok(VerifyReport { folders: reports });
            }
        }
    }
    tracing::debug!(base = %first.display(), exports = exports.len(), "verifying chain");
    for (i, report) in reports.iter_mut().enumerate().skip(1) {
        let (Some(prev), Some(this)) = (exports.get(i - 1), exports.get(i)) else {
            continue;
        };
        check_link(prev, this, report);
        for disk in &this.manifest.disks {
            if disk.output.kind == OUTPUT_KIND_DIFFERENCING {
                check_parent(prev, this, disk, report);
            }
        }
    }
    for (i, report) in reports.iter_mut().enumerate() {
        let Some(this) = exports.get(i) else { continue };
        for disk in &this.manifest.disks {
            if disk.output.kind == OUTPUT_KIND_DIFFERENCING {
                check_chain_content(&exports, i, disk, report);
            }
        }
    }
    Ok(VerifyReport { folders: reports })
}

/// `this` must be a differential export whose base is `prev`'s reference
/// point and whose `base_export` pins `prev`'s manifest.
fn check_link(prev: &ExportFolder, this: &ExportFolder, report: &mut FolderReport) {
    let m = &this.manifest;
    let prev_rp = &prev.manifest.reference_point.instance_id;
    let broken = |reason: String| Finding::ChainBroken { reason };
    match &m.base {
        None => report.add(
            MANIFEST_FILE,
            broken(format!(
                "a {} export, not a differential export of base {prev_rp}",
                m.export_type
            )),
        ),
        Some(base) if !base.instance_id.eq_ignore_ascii_case(prev_rp) => report.add(
            MANIFEST_FILE,
            broken(format!(
                "its base is reference point {}, the previous export is of {prev_rp}",
                base.instance_id
            )),
        ),
        Some(_) => {}
    }
    let pinned = m.base_export.as_ref().map(|b| b.manifest_sha256.as_str());
    let actual = to_hex(&prev.manifest_sha256);
    if pinned.is_some_and(|p| !p.eq_ignore_ascii_case(&actual)) {
        report.add(
            MANIFEST_FILE,
            broken(format!(
                "base_export.manifest_sha256 is {}, the previous export's manifest '{}' has SHA-256 {actual}",
                pinned.unwrap_or_default(),
                prev.manifest_path().display()
            )),
        );
    }
}

/// The parent locator of `disk`'s output in `this` must point at `prev`'s
/// file of the same disk: `parent_linkage` = its `DataWriteGuid`, and the
/// relative or absolute path resolves to it.
fn check_parent(
    prev: &ExportFolder,
    this: &ExportFolder,
    disk: &DiskRecord,
    report: &mut FolderReport,
) {
    let image = disk.output.path.as_str();
    let Some(prev_disk) = prev.disk(&disk.instance_id) else {
        report.add(
            image,
            Finding::ChainBroken {
                reason: format!(
                    "disk {} is not in the previous export '{}'",
                    disk.instance_id,
                    prev.folder.display()
                ),
            },
        );
        return;
    };
    if !is_contained(image) || !is_contained(&prev_disk.output.path) {
        return; // reported as UnsafePath by the folder check
    }
    let child_path = this.folder.join(image);
    let parent_path = prev.folder.join(&prev_disk.output.path);
    let mismatch = |reason: String| Finding::ParentMismatch { reason };
    let (child, parent) = match (VhdxFile::open(&child_path), VhdxFile::open(&parent_path)) {
        (Ok(c), Ok(p)) => (c, p),
        _ => return, // reported as ImageInvalid by the folder check
    };
    let Some(locator) = child.parent_locator() else {
        report.add(image, mismatch("the file has no parent locator".to_owned()));
        return;
    };
    if locator.parent_linkage() != parent.data_write_guid() {
        report.add(
            image,
            mismatch(format!(
                "parent_linkage {} is not the DataWriteGuid {} of '{}'",
                guid_upper(locator.parent_linkage()),
                guid_upper(parent.data_write_guid()),
                parent_path.display()
            )),
        );
    }
    let target = fs::canonicalize(&parent_path).ok();
    let resolves = |text: Option<&str>, base: Option<&Path>| {
        text.map(|t| t.replace('\\', "/")).is_some_and(|t| {
            let candidate = match base {
                Some(dir) => dir.join(t),
                None => PathBuf::from(t),
            };
            fs::canonicalize(candidate)
                .ok()
                .is_some_and(|c| Some(c) == target)
        })
    };
    let relative_ok = resolves(locator.relative_path(), child_path.parent());
    let absolute_ok = resolves(locator.absolute_win32_path(), None);
    if !relative_ok && !absolute_ok {
        report.add(
            image,
            mismatch(format!(
                "neither relative_path {:?} nor absolute_win32_path {:?} resolves to '{}'",
                locator.relative_path().unwrap_or_default(),
                locator.absolute_win32_path().unwrap_or_default(),
                parent_path.display()
            )),
        );
    }
}

/// Reads `disk` through the chain of exported files ending in export `top`
/// and compares the digests with `top`'s manifest.
fn check_chain_content(
    exports: &[ExportFolder],
    top: usize,
    disk: &DiskRecord,
    report: &mut FolderReport,
) {
    let image = disk.output.path.as_str();
    let paths = match chain_paths(exports, top, &disk.instance_id) {
        Ok(p) => p,
        Err(reason) => {
            report.add(image, Finding::ChainBroken { reason });
            return;
        }
    };
    let chain = match Chain::from_paths(&paths) {
        Ok(c) => c,
        Err(e) => {
            report.add(
                image,
                Finding::ParentMismatch {
                    reason: format!("the exported files do not open as one chain: {e}"),
                },
            );
            return;
        }
    };
    let Some(folder) = exports.get(top).map(|e| e.folder.as_path()) else {
        return;
    };
    let Some(listed) = BlockDigests::of(folder, disk).ok() else {
        return; // reported as ManifestInvalid/ManifestMismatch by the folder check
    };
    if chain.virtual_size() != disk.virtual_size {
        return; // reported as ManifestMismatch by the folder check
    }
    let mut findings = Findings::default();
    match recompute_digests(&chain, disk.virtual_size, u64::from(disk.block_size)) {
        Ok(recomputed) => report_digests(image, disk, top, &listed, recomputed, &mut findings),
        Err(reason) => findings.add(image, Finding::ImageInvalid { reason }),
    }
    for file in findings.into_report(Path::new("")).files {
        for finding in file.findings {
            report.add(&file.path, finding);
        }
    }
}

/// The exported files of disk `disk` from export `top` down to the dynamic
/// output it builds on, leaf first; each differencing output's parent is the
/// previous export's file.
///
/// # Errors
/// A message naming the export that lacks the disk or the chain's start.
pub(crate) fn chain_paths(
    exports: &[ExportFolder],
    top: usize,
    disk: &str,
) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    let mut at = top;
    loop {
        let Some(export) = exports.get(at) else {
            return Err(format!("disk {disk}: export {at} of the chain is missing"));
        };
        let Some(record) = export.disk(disk) else {
            return Err(format!(
                "disk {disk} is not in export '{}'",
                export.folder.display()
            ));
        };
        if !is_contained(&record.output.path) {
            return Err(format!(
                "disk {disk}: output path {:?} in '{}' leaves the folder",
                record.output.path,
                export.folder.display()
            ));
        }
        paths.push(export.folder.join(&record.output.path));
        if record.output.kind != OUTPUT_KIND_DIFFERENCING {
            return Ok(paths);
        }
        let Some(previous) = at.checked_sub(1) else {
            return Err(format!(
                "disk {disk}: '{}' is a differencing export whose base export was not given",
                export.folder.display()
            ));
        };
        at = previous;
    }
}
