//! Restore / synthetic full: one standalone dynamic VHDX per disk from a base
//! export and any number of differential exports, as a full export of the
//! last export's reference point (what peers call a synthetic full).
//!
//! The exports are given base first. Per disk of the last export, its chain
//! of exported files is formed from the folders (each differencing output's
//! parent is the previous export's file of the disk; `refpoint-vhdx` checks
//! every `parent_linkage` when the chain opens), and exported like a source
//! chain by the ordinary pipeline ([`crate::plan`] / [`crate::execute`]):
//! staged, fsynced, renamed into `<to>/<ElementName>` atomically. Before the
//! commit, each disk's content digest (over the block digests just computed
//! from what was read) must equal the last manifest's; otherwise nothing is
//! committed.
//!
//! The output is a full export (manifest `export_type` `synthetic-full`,
//! `restored_from` listing the exports); its VHDX has the `DataWriteGuid` a
//! full export of the same reference point gets, so it can serve as the base
//! of later differential exports.

use std::fs;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::base::ExportFolder;
use crate::control::{EngineConfig, ExportControl};
use crate::digest::{from_hex, sha256, to_hex};
use crate::error::{EngineError, ErrorContext, ErrorKind};
use crate::execute::{ExportOutcome, execute};
use crate::manifest::{EXPORT_TYPE_SYNTHETIC_FULL, ExportLinkRecord, is_contained};
use crate::plan::{ExportPlan, VIRTUAL_HARD_DISKS_DIR, plan};
use crate::request::{DiskExport, ExportRequest};
use crate::verify_chain::chain_paths;

/// The exports given to [`restore`] do not form a chain, or the result does
/// not reproduce the last manifest.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No export folder was given.
    #[error("restore needs at least one export folder")]
    NoExports,
    /// An export is not a differential export of the previous one.
    #[error("'{}' does not follow the previous export: {reason}", folder.display())]
    NotAChain {
        /// The export's VM folder.
        folder: PathBuf,
        /// What does not line up.
        reason: String,
    },
    /// A disk's files cannot be formed into a chain.
    #[error("{reason}")]
    DiskChain {
        /// Disk `InstanceID`.
        disk: String,
        /// What is missing (names the export folder).
        reason: String,
    },
    /// A manifest value cannot be used (GUID text, file name).
    #[error("'{}': {field} {value:?} is not usable", manifest.display())]
    ManifestValue {
        /// The manifest.
        manifest: PathBuf,
        /// The field.
        field: String,
        /// Its value.
        value: String,
    },
    /// The settings file of the last export differs from its manifest.
    #[error("settings file '{}' has SHA-256 {actual}, its manifest records {expected}", path.display())]
    ConfigMismatch {
        /// The settings file.
        path: PathBuf,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// The restored disk's content digest differs from the last manifest's.
    #[error(
        "disk {disk}: the content read through the chain of exports has digest {actual}, the last manifest records {expected}; nothing was committed"
    )]
    ContentDigestMismatch {
        /// Disk `InstanceID`.
        disk: String,
        /// Content digest in the last manifest.
        expected: String,
        /// Content digest of what was read.
        actual: String,
    },
}

impl RestoreError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            RestoreError::ConfigMismatch { .. } | RestoreError::ContentDigestMismatch { .. } => {
                ErrorKind::Failed
            }
            _ => ErrorKind::InvalidParameter,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        let (disk, path) = match self {
            RestoreError::NoExports => (None, None),
            RestoreError::NotAChain { folder, .. } => (None, Some(folder.clone())),
            RestoreError::DiskChain { disk, .. }
            | RestoreError::ContentDigestMismatch { disk, .. } => (Some(disk.clone()), None),
            RestoreError::ManifestValue { manifest, .. } => (None, Some(manifest.clone())),
            RestoreError::ConfigMismatch { path, .. } => (None, Some(path.clone())),
        };
        ErrorContext {
            operation: "restore",
            path,
            offset: None,
            disk,
        }
    }
}

/// Plans the synthetic full of `folders` (base first) into
/// `<to>/<ElementName>`; metadata and manifests only.
///
/// # Errors
/// [`RestoreError`] (32773 for folders that do not chain, 32768 for a
/// settings file that differs from its manifest); [`crate::BaseError`] for
/// an unreadable manifest; the errors of [`crate::plan`] (the chain of
/// exported files is opened and checked like a source chain).
pub fn plan_restore(folders: &[PathBuf], to: &Path) -> Result<ExportPlan, EngineError> {
    let exports = folders
        .iter()
        .map(|f| ExportFolder::open(f))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(last) = exports.last() else {
        return Err(RestoreError::NoExports.into());
    };
    check_links(&exports)?;
    let top = exports.len() - 1;
    let m = &last.manifest;
    let vm_name = parse_guid(last, "virtual_system.name", &m.virtual_system.name)?;
    let mut disks = Vec::with_capacity(m.disks.len());
    let mut expected = Vec::with_capacity(m.disks.len());
    for record in &m.disks {
        let chain = chain_paths(&exports, top, &record.instance_id).map_err(|reason| {
            RestoreError::DiskChain {
                disk: record.instance_id.clone(),
                reason,
            }
        })?;
        let mut guids = Vec::with_capacity(chain.len());
        for (i, _) in chain.iter().enumerate() {
            let export = exports.get(top - i).unwrap_or(last);
            let rec = export.disk(&record.instance_id).unwrap_or(record);
            guids.push(parse_guid(
                export,
                "output.data_write_guid",
                &rec.output.data_write_guid,
            )?);
        }
        let base_export = exports.get(top + 1 - chain.len()).unwrap_or(last);
        let base_record = base_export.disk(&record.instance_id).unwrap_or(record);
        let stem = base_record
            .output
            .path
            .strip_prefix(&format!("{VIRTUAL_HARD_DISKS_DIR}/"))
            .and_then(|p| p.strip_suffix(".vhdx"))
            .ok_or_else(|| RestoreError::ManifestValue {
                manifest: base_export.manifest_path(),
                field: "output.path".to_owned(),
                value: base_record.output.path.clone(),
            })?;
        let content =
            from_hex(&record.content_digest).ok_or_else(|| RestoreError::ManifestValue {
                manifest: last.manifest_path(),
                field: "content_digest".to_owned(),
                value: record.content_digest.clone(),
            })?;
        expected.push(content);
        disks.push(DiskExport {
            instance_id: record.instance_id.clone(),
            file_stem: stem.to_owned(),
            chain,
            expected_data_write_guids: guids,
            changes: None,
        });
    }
    let settings_xml = read_config(last)?;
    let request = ExportRequest {
        export_directory: to.to_path_buf(),
        vm_name,
        vm_element_name: m.virtual_system.element_name.clone(),
        reference_point: m.reference_point.clone(),
        base: None,
        settings_xml,
        disks,
        job_id: Uuid::new_v4(),
    };
    let mut planned = plan(&request)?;
    for (disk, content) in planned.disks.iter_mut().zip(expected) {
        disk.expected_content = Some(content);
    }
    planned.export_type = EXPORT_TYPE_SYNTHETIC_FULL;
    planned.restored_from = exports
        .iter()
        .map(|e| ExportLinkRecord {
            vm_folder: e.folder.to_string_lossy().into_owned(),
            manifest_sha256: to_hex(&e.manifest_sha256),
            reference_point: e.manifest.reference_point.instance_id.clone(),
        })
        .collect();
    Ok(planned)
}

/// `restore(folders, to)`: plans ([`plan_restore`]) and executes the
/// synthetic full; returns the committed export's outcome.
///
/// # Errors
/// As [`plan_restore`] and [`crate::execute`];
/// [`RestoreError::ContentDigestMismatch`] (32768) when a disk read through
/// the chain does not reproduce the last manifest's content digest.
pub fn restore(
    folders: &[PathBuf],
    to: &Path,
    control: &dyn ExportControl,
    cfg: &EngineConfig,
) -> Result<ExportOutcome, EngineError> {
    execute(plan_restore(folders, to)?, control, cfg)
}

/// Each export after the first must be a differential export whose base is
/// the previous export's reference point.
fn check_links(exports: &[ExportFolder]) -> Result<(), RestoreError> {
    for pair in exports.windows(2) {
        let [prev, this] = pair else { continue };
        let prev_rp = &prev.manifest.reference_point.instance_id;
        match &this.manifest.base {
            Some(base) if base.instance_id.eq_ignore_ascii_case(prev_rp) => {}
            Some(base) => {
                return Err(RestoreError::NotAChain {
                    folder: this.folder.clone(),
                    reason: format!(
                        "its base is reference point {}, the previous export '{}' is of {prev_rp}",
                        base.instance_id,
                        prev.folder.display()
                    ),
                });
            }
            None => {
                return Err(RestoreError::NotAChain {
                    folder: this.folder.clone(),
                    reason: format!(
                        "it is a {} export, not a differential export",
                        this.manifest.export_type
                    ),
                });
            }
        }
    }
    Ok(())
}

fn parse_guid(export: &ExportFolder, field: &str, text: &str) -> Result<Uuid, RestoreError> {
    Uuid::parse_str(text).map_err(|_| RestoreError::ManifestValue {
        manifest: export.manifest_path(),
        field: field.to_owned(),
        value: text.to_owned(),
    })
}

/// The settings XML of `export`, checked against its manifest.
fn read_config(export: &ExportFolder) -> Result<String, EngineError> {
    let record = &export.manifest.config;
    if !is_contained(&record.path) {
        return Err(RestoreError::ManifestValue {
            manifest: export.manifest_path(),
            field: "config.path".to_owned(),
            value: record.path.clone(),
        }
        .into());
    }
    let path = export.folder.join(&record.path);
    let bytes = fs::read(&path).map_err(|cause| crate::base::BaseError::Io {
        operation: "read",
        path: path.clone(),
        cause,
    })?;
    let actual = to_hex(&sha256(&bytes));
    if actual != record.sha256 {
        return Err(RestoreError::ConfigMismatch {
            path,
            expected: record.sha256.clone(),
            actual,
        }
        .into());
    }
    String::from_utf8(bytes).map_err(|_| {
        RestoreError::ManifestValue {
            manifest: export.manifest_path(),
            field: "config.path (not UTF-8)".to_owned(),
            value: record.path.clone(),
        }
        .into()
    })
}
