//! What to export: [`ExportRequest`], built by the facade from an
//! `Msvm_VirtualSystemReferencePoint` and the `ExportReferencePoint`
//! parameters, and its parameter checks (CIM 32773 on failure).
//!
//! The engine is independent of the host model: the request carries plain
//! values (GUIDs, names, paths), never `refpoint-core` types.

use std::path::{Path, PathBuf};

use uuid::Uuid;

/// Identity of a reference point as recorded in the manifest
/// (`Msvm_VirtualSystemReferencePoint`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReferencePointIdentity {
    /// `InstanceID` of the reference point.
    pub instance_id: String,
    /// `VirtualSystemIdentifier`: the VM GUID the reference point belongs to.
    pub virtual_system_identifier: String,
    /// `ResilientChangeTrackingIdentifiers[]`, index-parallel to the disks.
    pub rct_ids: Vec<String>,
}

/// What the caller wants when change tracking of a disk is lost
/// (`refpoint export --tracking strict|fallback`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TrackingPolicy {
    /// Refuse the export: CIM 32775 naming the disk and the reason.
    #[default]
    Strict,
    /// Read every block of the disk, compare its digest with the base
    /// manifest's block digest and store only the blocks that differ; the
    /// manifest records the fallback and the job ends CompletedWithWarnings.
    Fallback,
}

/// Change tracking of one disk between the base and the target reference
/// point, as the host model answered it (`Host::changes_between`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeTracking {
    /// Byte ranges `(offset, length)` of the virtual disk written after the
    /// base up to the target (any order; overlaps allowed; bytes).
    Changes(Vec<(u64, u64)>),
    /// Tracking cannot answer; `reason` says why (journal missing, corrupt or
    /// with a gap, a layer modified outside refpoint, …).
    Lost {
        /// Why, naming the file or record.
        reason: String,
    },
}

/// The base of a differential export (`BaseReferencePoint`) and where its
/// export lies.
///
/// The base export's manifest (`<export_folder>/refpoint-export.json`) gives,
/// per disk, the exported file that becomes the parent of the differencing
/// output, that file's `DataWriteGuid` (the output's `parent_linkage`) and
/// the block digests of the base content (copied for unchanged blocks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseReferencePoint {
    /// Identity of the base reference point; must equal the base manifest's
    /// `reference_point` (`instance_id` compared case-insensitively).
    pub identity: ReferencePointIdentity,
    /// VM folder of the base's export (holds its `refpoint-export.json`):
    /// a full export, a differential export, or a restored synthetic full.
    pub export_folder: PathBuf,
    /// What to do for a disk whose [`DiskExport::changes`] is
    /// [`ChangeTracking::Lost`].
    pub tracking: TrackingPolicy,
    /// `InstanceID`s of disks the base had and the target no longer has;
    /// recorded as `removed_disks` in the manifest.
    pub removed_disks: Vec<String>,
}

/// One virtual disk to export (`Msvm_StorageAllocationSettingData` at the
/// reference point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskExport {
    /// Disk `InstanceID`, e.g. `Microsoft:<VM GUID>\<disk GUID>\0\0\D`.
    pub instance_id: String,
    /// Output file name without extension: `Virtual Hard Disks/<file_stem>.vhdx`.
    /// Same rules as a folder name (see [`check_name`]) plus no `\` and no
    /// control characters (the name goes into `SHA256SUMS` lines verbatim).
    pub file_stem: String,
    /// The frozen VHDX chain at the reference point, leaf first, base last.
    pub chain: Vec<PathBuf>,
    /// The `DataWriteGuid` each chain layer had when the reference point was
    /// taken; index-parallel to `chain`.
    pub expected_data_write_guids: Vec<Uuid>,
    /// Differential export only: what changed on this disk since the base.
    /// `None` (or a disk the base export does not hold) exports the disk
    /// full, as a dynamic VHDX, inside the differential export. Must be
    /// `None` for a full export.
    pub changes: Option<ChangeTracking>,
}

/// An export of one reference point (`ExportReferencePoint`): full when
/// `base` is `None`, differential otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// `ExportDirectory`: absolute; created if missing (its parent must exist).
    pub export_directory: PathBuf,
    /// VM `Name` (GUID): the settings file is `Virtual Machines/<GUID upper>.xml`.
    pub vm_name: Uuid,
    /// VM `ElementName`: the folder created under the export directory.
    /// Refused (never rewritten) when empty, longer than 255 bytes, or when it
    /// contains `/`, NUL or `..`, or starts with `.`.
    pub vm_element_name: String,
    /// The reference point being exported.
    pub reference_point: ReferencePointIdentity,
    /// `None`: full export. `Some`: differential against this base.
    pub base: Option<BaseReferencePoint>,
    /// The VM settings at the reference point, CIM-XML, written verbatim.
    pub settings_xml: String,
    /// Disks to export (`DisksToExport`, already resolved by the caller).
    pub disks: Vec<DiskExport>,
    /// `InstanceID` of the export job; names the staging directory.
    pub job_id: Uuid,
}

/// The rule a folder or file name broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameRule {
    /// The name is empty.
    #[error("it is empty")]
    Empty,
    /// Longer than a Linux file name may be (255 bytes).
    #[error("it is longer than 255 bytes")]
    TooLong,
    /// Contains `/` (would create nested folders).
    #[error("it contains '/'")]
    Slash,
    /// Contains NUL.
    #[error("it contains a NUL character")]
    Nul,
    /// Contains `..`.
    #[error("it contains '..'")]
    DotDot,
    /// Starts with `.` (hidden, and reserved for staging directories).
    #[error("it starts with '.'")]
    LeadingDot,
    /// Contains `\` (file stems only: `SHA256SUMS` would need escaping).
    #[error("it contains '\\'")]
    Backslash,
    /// Contains a control character (file stems only).
    #[error("it contains a control character")]
    Control,
}

/// A parameter of the request is invalid (CIM 32773, or 32770 for a base).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// `ExportDirectory` is not an absolute path.
    #[error("ExportDirectory '{}' is not an absolute path", path.display())]
    ExportDirectoryNotAbsolute {
        /// The path given.
        path: PathBuf,
    },
    /// `ExportDirectory` does not exist and neither does its parent.
    #[error("ExportDirectory '{}' does not exist and its parent directory is missing", path.display())]
    ExportDirectoryParentMissing {
        /// The path given.
        path: PathBuf,
    },
    /// `ExportDirectory` exists but is not a directory.
    #[error("ExportDirectory '{}' is not a directory", path.display())]
    ExportDirectoryNotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The VM `ElementName` cannot be a folder name.
    #[error("VM ElementName {name:?} cannot be used as a folder name: {rule}")]
    InvalidElementName {
        /// The name given.
        name: String,
        /// The rule it broke.
        rule: NameRule,
    },
    /// A disk's `file_stem` cannot be a file name.
    #[error("disk {disk}: file name {stem:?} is not usable: {rule}")]
    InvalidFileStem {
        /// Disk `InstanceID`.
        disk: String,
        /// The stem given.
        stem: String,
        /// The rule it broke.
        rule: NameRule,
    },
    /// Two disks would write the same output file.
    #[error("disks {first} and {second} both use the file name {stem:?}")]
    DuplicateFileStem {
        /// The shared stem.
        stem: String,
        /// `InstanceID` of the first disk.
        first: String,
        /// `InstanceID` of the second disk.
        second: String,
    },
    /// The same disk `InstanceID` appears twice.
    #[error("disk {disk} is listed twice")]
    DuplicateDisk {
        /// The repeated `InstanceID`.
        disk: String,
    },
    /// A disk has no chain.
    #[error("disk {disk} has an empty VHDX chain")]
    EmptyChain {
        /// Disk `InstanceID`.
        disk: String,
    },
    /// `expected_data_write_guids` is not index-parallel to `chain`.
    #[error("disk {disk}: {guids} expected DataWriteGuids for a chain of {layers} files")]
    DataWriteGuidCount {
        /// Disk `InstanceID`.
        disk: String,
        /// Chain length.
        layers: usize,
        /// Number of GUIDs given.
        guids: usize,
    },
    /// A chain path is relative or not UTF-8 (the manifest records it as text).
    #[error("disk {disk}: chain path '{}' must be absolute and UTF-8", path.display())]
    InvalidChainPath {
        /// Disk `InstanceID`.
        disk: String,
        /// The path given.
        path: PathBuf,
    },
    /// Change tracking of a disk is lost and the policy is
    /// [`TrackingPolicy::Strict`] (CIM 32775).
    #[error("disk {disk}: change tracking since base reference point {base} is lost: {reason}")]
    TrackingLost {
        /// Disk `InstanceID`.
        disk: String,
        /// `InstanceID` of the base reference point.
        base: String,
        /// Why tracking is lost.
        reason: String,
    },
    /// A disk carries change tracking in a full export (no base).
    #[error("disk {disk}: change tracking given for a full export (no BaseReferencePoint)")]
    ChangesWithoutBase {
        /// Disk `InstanceID`.
        disk: String,
    },
    /// The base is the target itself.
    #[error("BaseReferencePoint {base} is the reference point being exported")]
    BaseIsTarget {
        /// `InstanceID` of both.
        base: String,
    },
    /// The base belongs to another virtual system.
    #[error(
        "BaseReferencePoint {base} belongs to virtual system {base_vm}, the reference point to {target_vm}"
    )]
    BaseOfAnotherVm {
        /// `InstanceID` of the base.
        base: String,
        /// The base's `VirtualSystemIdentifier`.
        base_vm: String,
        /// The target's `VirtualSystemIdentifier`.
        target_vm: String,
    },
    /// `EngineConfig.threads` could not be honoured.
    #[error("cannot start {threads} export threads: {reason}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Why rayon refused.
        reason: String,
    },
}

/// Checks that `name` can be used verbatim as one folder or file name.
///
/// Rules, in order: not empty, at most 255 bytes, no `/`, no NUL, no `..`,
/// no leading `.`. Names are refused, never rewritten.
///
/// # Errors
/// The first [`NameRule`] broken.
pub fn check_name(name: &str) -> Result<(), NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    if name.len() > 255 {
        return Err(NameRule::TooLong);
    }
    if name.contains('/') {
        return Err(NameRule::Slash);
    }
    if name.contains('\0') {
        return Err(NameRule::Nul);
    }
    if name.contains("..") {
        return Err(NameRule::DotDot);
    }
    if name.starts_with('.') {
        return Err(NameRule::LeadingDot);
    }
    Ok(())
}

/// [`check_name`] plus the extra rules of an output file stem: no `\` and no
/// control characters, so that `SHA256SUMS` lines need no escaping.
///
/// # Errors
/// The first [`NameRule`] broken.
pub fn check_file_stem(stem: &str) -> Result<(), NameRule> {
    check_name(stem)?;
    if stem.contains('\\') {
        return Err(NameRule::Backslash);
    }
    if stem.chars().any(char::is_control) {
        return Err(NameRule::Control);
    }
    Ok(())
}

impl ExportRequest {
    /// Checks every parameter that needs no file access except the export
    /// directory's existence.
    ///
    /// # Errors
    /// The first [`RequestError`] found, in field order.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.check_base()?;
        check_export_directory(&self.export_directory)?;
        check_name(&self.vm_element_name).map_err(|rule| RequestError::InvalidElementName {
            name: self.vm_element_name.clone(),
            rule,
        })?;
        for (index, disk) in self.disks.iter().enumerate() {
            check_disk(disk)?;
            for earlier in self.disks.iter().take(index) {
                if earlier.instance_id == disk.instance_id {
                    return Err(RequestError::DuplicateDisk {
                        disk: disk.instance_id.clone(),
                    });
                }
                if earlier.file_stem.eq_ignore_ascii_case(&disk.file_stem) {
                    return Err(RequestError::DuplicateFileStem {
                        stem: disk.file_stem.clone(),
                        first: earlier.instance_id.clone(),
                        second: disk.instance_id.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl ExportRequest {
    /// The base rules: identity of another VM or of the target itself,
    /// changes without a base, and lost tracking under the strict policy.
    fn check_base(&self) -> Result<(), RequestError> {
        let Some(base) = &self.base else {
            return match self.disks.iter().find(|d| d.changes.is_some()) {
                Some(d) => Err(RequestError::ChangesWithoutBase {
                    disk: d.instance_id.clone(),
                }),
                None => Ok(()),
            };
        };
        let (b, t) = (&base.identity, &self.reference_point);
        if b.instance_id.eq_ignore_ascii_case(&t.instance_id) {
            return Err(RequestError::BaseIsTarget {
                base: b.instance_id.clone(),
            });
        }
        if !b
            .virtual_system_identifier
            .eq_ignore_ascii_case(&t.virtual_system_identifier)
        {
            return Err(RequestError::BaseOfAnotherVm {
                base: b.instance_id.clone(),
                base_vm: b.virtual_system_identifier.clone(),
                target_vm: t.virtual_system_identifier.clone(),
            });
        }
        if base.tracking == TrackingPolicy::Strict {
            for disk in &self.disks {
                if let Some(ChangeTracking::Lost { reason }) = &disk.changes {
                    return Err(RequestError::TrackingLost {
                        disk: disk.instance_id.clone(),
                        base: b.instance_id.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn check_export_directory(path: &Path) -> Result<(), RequestError> {
    if !path.is_absolute() {
        return Err(RequestError::ExportDirectoryNotAbsolute {
            path: path.to_path_buf(),
        });
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(RequestError::ExportDirectoryNotADirectory {
            path: path.to_path_buf(),
        }),
        Err(_) => match path.parent().map(std::fs::metadata) {
            Some(Ok(parent)) if parent.is_dir() => Ok(()),
            _ => Err(RequestError::ExportDirectoryParentMissing {
                path: path.to_path_buf(),
            }),
        },
    }
}

fn check_disk(disk: &DiskExport) -> Result<(), RequestError> {
    check_file_stem(&disk.file_stem).map_err(|rule| RequestError::InvalidFileStem {
        disk: disk.instance_id.clone(),
        stem: disk.file_stem.clone(),
        rule,
    })?;
    if disk.chain.is_empty() {
        return Err(RequestError::EmptyChain {
            disk: disk.instance_id.clone(),
        });
    }
    if disk.chain.len() != disk.expected_data_write_guids.len() {
        return Err(RequestError::DataWriteGuidCount {
            disk: disk.instance_id.clone(),
            layers: disk.chain.len(),
            guids: disk.expected_data_write_guids.len(),
        });
    }
    if let Some(bad) = disk
        .chain
        .iter()
        .find(|p| !p.is_absolute() || p.to_str().is_none())
    {
        return Err(RequestError::InvalidChainPath {
            disk: disk.instance_id.clone(),
            path: bad.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_request(dir: &Path) -> ExportRequest {
        ExportRequest {
            export_directory: dir.to_path_buf(),
            vm_name: Uuid::nil(),
            vm_element_name: "vm".to_owned(),
            reference_point: ReferencePointIdentity {
                instance_id: "rp".to_owned(),
                virtual_system_identifier: "vm".to_owned(),
                rct_ids: Vec::new(),
            },
            base: None,
            settings_xml: String::new(),
            disks: vec![DiskExport {
                instance_id: "disk-0".to_owned(),
                file_stem: "d0".to_owned(),
                chain: vec![PathBuf::from("/sources/d0.vhdx")],
                expected_data_write_guids: vec![Uuid::nil()],
                changes: None,
            }],
            job_id: Uuid::nil(),
        }
    }

    #[test]
    fn validate_accepts_valid_request() {
        let dir = tempfile::tempdir().expect("tempdir");

        assert!(valid_request(dir.path()).validate().is_ok());
    }

    #[test]
    fn validate_export_directory_that_is_a_file_is_not_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write file");

        let result = valid_request(&file).validate();

        assert!(matches!(
            result,
            Err(RequestError::ExportDirectoryNotADirectory { .. })
        ));
    }

    #[test]
    fn validate_file_stem_with_backslash_is_invalid_file_stem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut req = valid_request(dir.path());
        req.disks[0].file_stem = "a\\b".to_owned();

        let result = req.validate();

        assert!(matches!(
            result,
            Err(RequestError::InvalidFileStem {
                rule: NameRule::Backslash,
                ..
            })
        ));
    }

    #[test]
    fn validate_same_disk_twice_is_duplicate_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut req = valid_request(dir.path());
        let mut again = req.disks[0].clone();
        again.file_stem = "other".to_owned();
        req.disks.push(again);

        let result = req.validate();

        assert!(matches!(result, Err(RequestError::DuplicateDisk { .. })));
    }

    #[test]
    fn validate_empty_chain_is_empty_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut req = valid_request(dir.path());
        req.disks[0].chain.clear();
        req.disks[0].expected_data_write_guids.clear();

        let result = req.validate();

        assert!(matches!(result, Err(RequestError::EmptyChain { .. })));
    }

    #[test]
    fn validate_relative_chain_path_is_invalid_chain_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut req = valid_request(dir.path());
        req.disks[0].chain = vec![PathBuf::from("relative.vhdx")];

        let result = req.validate();

        assert!(matches!(result, Err(RequestError::InvalidChainPath { .. })));
    }

    fn with_lost_tracking(dir: &Path, tracking: TrackingPolicy) -> ExportRequest {
        let mut req = valid_request(dir);
        let mut base = req.reference_point.clone();
        base.instance_id = "base-rp".to_owned();
        req.base = Some(BaseReferencePoint {
            identity: base,
            export_folder: dir.to_path_buf(),
            tracking,
            removed_disks: Vec::new(),
        });
        req.disks[0].changes = Some(ChangeTracking::Lost {
            reason: "journal missing".to_owned(),
        });
        req
    }

    #[test]
    fn validate_lost_tracking_under_strict_policy_is_tracking_lost() {
        let dir = tempfile::tempdir().expect("tempdir");

        let result = with_lost_tracking(dir.path(), TrackingPolicy::Strict).validate();

        assert!(matches!(
            result,
            Err(RequestError::TrackingLost { ref disk, ref reason, .. })
                if disk == "disk-0" && reason == "journal missing"
        ));
    }

    #[test]
    fn validate_lost_tracking_under_fallback_policy_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");

        let result = with_lost_tracking(dir.path(), TrackingPolicy::Fallback).validate();

        assert!(result.is_ok());
    }

    #[test]
    fn tracking_policy_defaults_to_strict() {
        assert_eq!(TrackingPolicy::default(), TrackingPolicy::Strict);
    }

    #[test]
    fn check_name_accepts_spaces_and_unicode() {
        assert_eq!(check_name("Web Server 01 (prod) – ü"), Ok(()));
    }

    #[test]
    fn check_name_rejects_empty() {
        assert_eq!(check_name(""), Err(NameRule::Empty));
    }

    #[test]
    fn check_name_rejects_over_255_bytes() {
        assert_eq!(check_name(&"a".repeat(256)), Err(NameRule::TooLong));
    }

    #[test]
    fn check_name_rejects_slash() {
        assert_eq!(check_name("a/b"), Err(NameRule::Slash));
    }

    #[test]
    fn check_name_rejects_nul() {
        assert_eq!(check_name("a\0b"), Err(NameRule::Nul));
    }

    #[test]
    fn check_name_rejects_dot_dot() {
        assert_eq!(check_name("a..b"), Err(NameRule::DotDot));
    }

    #[test]
    fn check_name_rejects_leading_dot() {
        assert_eq!(check_name(".hidden"), Err(NameRule::LeadingDot));
    }

    #[test]
    fn check_file_stem_rejects_backslash() {
        assert_eq!(check_file_stem("a\\b"), Err(NameRule::Backslash));
    }

    #[test]
    fn check_file_stem_rejects_newline() {
        assert_eq!(check_file_stem("a\nb"), Err(NameRule::Control));
    }
}
