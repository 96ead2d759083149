//! The base export of a differential export: its manifest, and per disk the
//! exported file that becomes the parent of the differencing output.
//!
//! Nothing of the base export is trusted blindly: the manifest must name the
//! base reference point and the VM being exported, the parent file must lie
//! inside the base's VM folder, open as a VHDX and carry the
//! `DataWriteGuid`, virtual size, block size and sector size its manifest
//! records, and the manifest's block digests must reproduce its content
//! digest. The parent's blocks are not re-read here (that is
//! `verify --chain`'s job); its digests are what unchanged blocks of the
//! target are recorded with.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use refpoint_vhdx::{VhdxError, VhdxFile};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::digest::{Sha256Digest, from_hex, sha256, to_hex};
use crate::error::{ErrorContext, ErrorKind, io_kind, vhdx_kind};
use crate::identity::guid_upper;
use crate::manifest::{DiskRecord, Manifest, is_contained};
use crate::plan::MANIFEST_FILE;
use crate::request::{BaseReferencePoint, ReferencePointIdentity};

/// The base export (or the exports given to restore) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The export folder or its manifest cannot be read.
    #[error("cannot {operation} '{}': {cause}", path.display())]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// The folder holds no `refpoint-export.json`.
    #[error("'{}' holds no export manifest ({MANIFEST_FILE}): not the VM folder of an export", folder.display())]
    NoManifest {
        /// The folder given.
        folder: PathBuf,
    },
    /// The manifest does not parse or is not `refpoint-export/1`.
    #[error("'{}' is not a valid export manifest: {reason}", path.display())]
    ManifestInvalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The manifest is the export of another reference point than the base.
    #[error(
        "'{}' is an export of reference point {found}, not of BaseReferencePoint {expected}",
        path.display()
    )]
    WrongReferencePoint {
        /// The manifest file.
        path: PathBuf,
        /// The base's `InstanceID`.
        expected: String,
        /// The manifest's `reference_point.instance_id`.
        found: String,
    },
    /// The manifest is the export of another virtual system.
    #[error(
        "'{}' is an export of virtual system {found}, not of {expected}",
        path.display()
    )]
    WrongVirtualSystem {
        /// The manifest file.
        path: PathBuf,
        /// The VM GUID being exported.
        expected: String,
        /// The manifest's `virtual_system.name`.
        found: String,
    },
    /// A manifest path leaves the export's VM folder.
    #[error("disk {disk}: output path {path:?} in '{}' leaves the export folder", manifest.display())]
    UnsafePath {
        /// Disk `InstanceID`.
        disk: String,
        /// The manifest file.
        manifest: PathBuf,
        /// The offending relative path.
        path: String,
    },
    /// A disk's exported file does not open as a VHDX.
    #[error("disk {disk}: exported file '{}' cannot be opened: {cause}", path.display())]
    FileOpen {
        /// Disk `InstanceID`.
        disk: String,
        /// The exported file.
        path: PathBuf,
        /// The `refpoint-vhdx` error.
        cause: Box<VhdxError>,
    },
    /// A disk's exported file differs from what its manifest records.
    #[error(
        "disk {disk}: exported file '{}' has {field} {actual}, its manifest records {manifest}",
        path.display()
    )]
    FileMismatch {
        /// Disk `InstanceID`.
        disk: String,
        /// The exported file.
        path: PathBuf,
        /// The field: `DataWriteGuid`, `VirtualDiskSize`, `BlockSize`, `LogicalSectorSize`.
        field: &'static str,
        /// Value in the manifest.
        manifest: String,
        /// Value in the file.
        actual: String,
    },
    /// A disk's block digests are malformed or do not reproduce its content digest.
    #[error("disk {disk}: block digests in '{}' are unusable: {reason}", path.display())]
    DigestsInvalid {
        /// Disk `InstanceID`.
        disk: String,
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl BaseError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            BaseError::Io { cause, .. } if cause.kind() != io::ErrorKind::NotFound => {
                io_kind(cause)
            }
            BaseError::FileOpen { cause, .. } if vhdx_kind(cause) == ErrorKind::AccessDenied => {
                ErrorKind::AccessDenied
            }
            _ => ErrorKind::InvalidParameter,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        let (disk, path) = match self {
            BaseError::Io { path, .. }
            | BaseError::ManifestInvalid { path, .. }
            | BaseError::WrongReferencePoint { path, .. }
            | BaseError::WrongVirtualSystem { path, .. } => (None, path.clone()),
            BaseError::NoManifest { folder } => (None, folder.clone()),
            BaseError::UnsafePath { disk, manifest, .. } => (Some(disk), manifest.clone()),
            BaseError::FileOpen { disk, path, .. }
            | BaseError::FileMismatch { disk, path, .. }
            | BaseError::DigestsInvalid { disk, path, .. } => (Some(disk), path.clone()),
        };
        ErrorContext {
            operation: "read base export",
            path: Some(path),
            offset: None,
            disk: disk.cloned(),
        }
    }
}

/// One export's VM folder with its parsed manifest.
#[derive(Debug, Clone)]
pub(crate) struct ExportFolder {
    /// The VM folder, canonical.
    pub(crate) folder: PathBuf,
    /// Its manifest.
    pub(crate) manifest: Manifest,
    /// SHA-256 of the manifest file.
    pub(crate) manifest_sha256: Sha256Digest,
}

impl ParentRef {
    /// A sequential reader of the base's block digests.
    ///
    /// # Errors
    /// [`BaseError::DigestsInvalid`] when the sidecar cannot be opened.
    pub(crate) fn digest_reader(&self, disk: &str) -> Result<DigestReader<'_>, BaseError> {
        self.digests
            .reader()
            .map_err(|reason| self.digests_invalid(disk, reason))
    }

    /// [`BaseError::DigestsInvalid`] for the base's digests of `disk`.
    pub(crate) fn digests_invalid(&self, disk: &str, reason: String) -> BaseError {
        BaseError::DigestsInvalid {
            disk: disk.to_owned(),
            path: match &self.digests {
                BlockDigests::Sidecar { path, .. } => path.clone(),
                BlockDigests::Inline(_) => self.path.clone(),
            },
            reason,
        }
    }
}

/// The parent of one differencing output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParentRef {
    /// The base export's file of the disk (canonical absolute path).
    pub(crate) path: PathBuf,
    /// Its `DataWriteGuid` (checked against the file).
    pub(crate) data_write_guid: Uuid,
    /// Block digests of the base content, read in block order.
    pub(crate) digests: BlockDigests,
    /// Content digest of the base content.
    pub(crate) content_digest: Sha256Digest,
}

impl ExportFolder {
    /// Reads `<folder>/refpoint-export.json`.
    ///
    /// # Errors
    /// [`BaseError::NoManifest`], [`BaseError::Io`], [`BaseError::ManifestInvalid`].
    pub(crate) fn open(folder: &Path) -> Result<ExportFolder, BaseError> {
        let canonical = fs::canonicalize(folder).map_err(|cause| BaseError::Io {
            operation: "open export folder",
            path: folder.to_path_buf(),
            cause,
        })?;
        let path = canonical.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BaseError::NoManifest { folder: canonical });
            }
            Err(cause) => {
                return Err(BaseError::Io {
                    operation: "read",
                    path,
                    cause,
                });
            }
        };
        let manifest = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(Manifest::from_json)
            .map_err(|reason| BaseError::ManifestInvalid {
                path: path.clone(),
                reason,
            })?;
        Ok(ExportFolder {
            folder: canonical,
            manifest_sha256: sha256(&bytes),
            manifest,
        })
    }

    /// Path of the manifest file.
    pub(crate) fn manifest_path(&self) -> PathBuf {
        self.folder.join(MANIFEST_FILE)
    }

    /// The manifest record of disk `instance_id` (case-insensitive).
    pub(crate) fn disk(&self, instance_id: &str) -> Option<&DiskRecord> {
        self.manifest
            .disks
            .iter()
            .find(|d| d.instance_id.eq_ignore_ascii_case(instance_id))
    }

    /// Checks that this export is of reference point `identity` of VM `vm`.
    ///
    /// # Errors
    /// [`BaseError::WrongReferencePoint`], [`BaseError::WrongVirtualSystem`].
    pub(crate) fn check_identity(
        &self,
        identity: &ReferencePointIdentity,
        vm: Uuid,
    ) -> Result<(), BaseError> {
        let found = &self.manifest.reference_point.instance_id;
        if !found.eq_ignore_ascii_case(&identity.instance_id) {
            return Err(BaseError::WrongReferencePoint {
                path: self.manifest_path(),
                expected: identity.instance_id.clone(),
                found: found.clone(),
            });
        }
        let name = &self.manifest.virtual_system.name;
        if !name.eq_ignore_ascii_case(&guid_upper(vm)) {
            return Err(BaseError::WrongVirtualSystem {
                path: self.manifest_path(),
                expected: guid_upper(vm),
                found: name.clone(),
            });
        }
        Ok(())
    }

    /// The exported file of `record`, after checking that it stays inside
    /// the folder, opens, and matches the manifest (`DataWriteGuid` and
    /// geometry), and that the record's block digests are well formed and
    /// reproduce its content digest.
    ///
    /// # Errors
    /// [`BaseError::UnsafePath`], [`BaseError::FileOpen`],
    /// [`BaseError::FileMismatch`], [`BaseError::DigestsInvalid`].
    pub(crate) fn parent_of(&self, record: &DiskRecord) -> Result<ParentRef, BaseError> {
        let disk = &record.instance_id;
        if !is_contained(&record.output.path) {
            return Err(BaseError::UnsafePath {
                disk: disk.clone(),
                manifest: self.manifest_path(),
                path: record.output.path.clone(),
            });
        }
        let path = self.folder.join(&record.output.path);
        let file = VhdxFile::open(&path).map_err(|cause| BaseError::FileOpen {
            disk: disk.clone(),
            path: path.clone(),
            cause: Box::new(cause),
        })?;
        let g = file.geometry();
        let checks = [
            (
                "DataWriteGuid",
                record.output.data_write_guid.to_ascii_uppercase(),
                guid_upper(file.data_write_guid()),
            ),
            (
                "VirtualDiskSize",
                record.virtual_size.to_string(),
                g.virtual_size.to_string(),
            ),
            (
                "BlockSize",
                record.block_size.to_string(),
                g.block_size.to_string(),
            ),
            (
                "LogicalSectorSize",
                record.logical_sector_size.to_string(),
                g.logical_sector_size.to_string(),
            ),
        ];
        if let Some((field, manifest, actual)) = checks.into_iter().find(|(_, m, a)| m != a) {
            return Err(BaseError::FileMismatch {
                disk: disk.clone(),
                path,
                field,
                manifest,
                actual,
            });
        }
        let invalid = |reason: String| BaseError::DigestsInvalid {
            disk: disk.clone(),
            path: self.manifest_path(),
            reason,
        };
        let digests = BlockDigests::of(&self.folder, record).map_err(invalid)?;
        let content = digests.content_digest().map_err(invalid)?;
        if to_hex(&content) != record.content_digest {
            return Err(invalid(format!(
                "they hash to content digest {}, the manifest records {}",
                to_hex(&content),
                record.content_digest
            )));
        }
        Ok(ParentRef {
            path,
            data_write_guid: file.data_write_guid(),
            digests,
            content_digest: content,
        })
    }
}

/// Where an export's block digests of one disk are: its sidecar (format
/// 2, read sequentially, never held whole: memory does not grow with the
/// disk) or the manifest (format 1, inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockDigests {
    /// Parsed from a format-1 manifest.
    Inline(Vec<Sha256Digest>),
    /// A digest sidecar of `count` digests.
    Sidecar {
        /// The sidecar file.
        path: PathBuf,
        /// Digests it holds (blocks of the disk).
        count: u64,
    },
}

impl BlockDigests {
    /// The digests of `record` of the export in `folder`, checked for
    /// count (the sidecar's length) but not read.
    ///
    /// # Errors
    /// A message naming the sidecar or field that is missing or malformed.
    pub(crate) fn of(folder: &Path, record: &DiskRecord) -> Result<BlockDigests, String> {
        let bs = u64::from(record.block_size);
        if bs == 0 {
            return Err("block_size is 0".to_owned());
        }
        let count = record.virtual_size.div_ceil(bs);
        let Some(sidecar) = &record.digests else {
            return inline_digests(record, count).map(BlockDigests::Inline);
        };
        if !is_contained(&sidecar.path) {
            return Err(format!(
                "digests.path {:?} leaves the export folder",
                sidecar.path
            ));
        }
        let path = folder.join(&sidecar.path);
        let len = fs::metadata(&path)
            .map_err(|e| format!("cannot read '{}': {e}", path.display()))?
            .len();
        if len != count.saturating_mul(32) {
            return Err(format!(
                "'{}' holds {len} bytes, {count} blocks need {}",
                path.display(),
                count.saturating_mul(32)
            ));
        }
        Ok(BlockDigests::Sidecar { path, count })
    }

    /// A reader from block 0.
    ///
    /// # Errors
    /// The sidecar cannot be opened (message names it).
    pub(crate) fn reader(&self) -> Result<DigestReader<'_>, String> {
        let source = match self {
            BlockDigests::Inline(d) => Source::Inline(d),
            BlockDigests::Sidecar { path, .. } => Source::File {
                path,
                file: io::BufReader::with_capacity(
                    64 * 1024,
                    fs::File::open(path)
                        .map_err(|e| format!("cannot open '{}': {e}", path.display()))?,
                ),
            },
        };
        Ok(DigestReader {
            source,
            next: 0,
            hasher: Sha256::new(),
        })
    }

    /// The content digest: SHA-256 over all digests, by one sequential read.
    ///
    /// # Errors
    /// A read failure (message names the sidecar).
    pub(crate) fn content_digest(&self) -> Result<Sha256Digest, String> {
        let count = match self {
            BlockDigests::Inline(d) => d.len() as u64,
            BlockDigests::Sidecar { count, .. } => *count,
        };
        let mut reader = self.reader()?;
        if count > 0 {
            reader.get(count - 1)?;
        }
        Ok(reader.finish())
    }
}

#[derive(Debug)]
enum Source<'a> {
    Inline(&'a [Sha256Digest]),
    File {
        path: &'a Path,
        file: io::BufReader<fs::File>,
    },
}

/// Reads block digests in ascending block order, hashing every digest it
/// passes (so the caller can check the content digest at the end).
#[derive(Debug)]
pub(crate) struct DigestReader<'a> {
    source: Source<'a>,
    next: u64,
    hasher: Sha256,
}

impl DigestReader<'_> {
    /// The digest of `block`, which must not precede the previous call's.
    ///
    /// # Errors
    /// A block before the previous one, past the end, or a read failure.
    pub(crate) fn get(&mut self, block: u64) -> Result<Sha256Digest, String> {
        use io::Read;
        if block < self.next {
            return Err(format!(
                "block digest {block} asked for after block {}",
                self.next - 1
            ));
        }
        loop {
            let digest = match &mut self.source {
                Source::Inline(d) => usize::try_from(self.next)
                    .ok()
                    .and_then(|i| d.get(i))
                    .copied()
                    .ok_or_else(|| format!("no block digest {}", self.next))?,
                Source::File { path, file } => {
                    let mut d = [0u8; 32];
                    file.read_exact(&mut d).map_err(|e| {
                        format!(
                            "cannot read block digest {} from '{}': {e}",
                            self.next,
                            path.display()
                        )
                    })?;
                    d
                }
            };
            self.hasher.update(digest);
            self.next += 1;
            if self.next > block {
                return Ok(digest);
            }
        }
    }

    /// SHA-256 over the digests read so far.
    pub(crate) fn finish(self) -> Sha256Digest {
        self.hasher.finalize().into()
    }
}

/// The block digests of `record` of the export in `folder`: read from its
/// digest sidecar (format 2) or parsed from the manifest (format 1); their
/// number must match the virtual size and block size. Holds them all (32
/// bytes per block); the engine itself reads them with [`DigestReader`].
///
/// # Errors
/// A message naming the sidecar or field that is missing or malformed.
pub fn record_digests(folder: &Path, record: &DiskRecord) -> Result<Vec<Sha256Digest>, String> {
    match BlockDigests::of(folder, record)? {
        BlockDigests::Inline(d) => Ok(d),
        digests @ BlockDigests::Sidecar { count, .. } => {
            let mut reader = digests.reader()?;
            (0..count).map(|b| reader.get(b)).collect()
        }
    }
}

/// Parses format-1 inline `block_digests`, checking their number.
fn inline_digests(record: &DiskRecord, blocks: u64) -> Result<Vec<Sha256Digest>, String> {
    if record.block_digests.len() as u64 != blocks {
        return Err(format!(
            "{} block digests for {blocks} blocks of {} bytes in {} bytes",
            record.block_digests.len(),
            record.block_size,
            record.virtual_size
        ));
    }
    record
        .block_digests
        .iter()
        .enumerate()
        .map(|(i, hex)| {
            from_hex(hex).ok_or_else(|| format!("block_digests[{i}] is not a SHA-256 digest"))
        })
        .collect()
}

/// Opens and checks the base export of a differential export.
///
/// # Errors
/// As [`ExportFolder::open`] and [`ExportFolder::check_identity`].
pub(crate) fn load_base(base: &BaseReferencePoint, vm: Uuid) -> Result<ExportFolder, BaseError> {
    let folder = ExportFolder::open(&base.export_folder)?;
    folder.check_identity(&base.identity, vm)?;
    Ok(folder)
}
