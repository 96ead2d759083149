//! The crate-boundary error of the host model: [`HostError`] with a stable
//! [`ErrorKind`] that the facade maps to Hyper-V return codes.
//!
//! Module-level detail lives in the per-module enums
//! ([`CatalogError`](crate::catalog::CatalogError),
//! [`IdError`](crate::ids::IdError)); this type adds the context (path,
//! object, operation) a caller needs to act.

use std::fmt;
use std::io;
use std::path::PathBuf;

use refpoint_vhdx::VhdxError;
use uuid::Uuid;

use crate::catalog::CatalogError;

/// Which kind of model object a [`HostError::NotFound`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A `Msvm_ComputerSystem` (looked up by `Name` = VM GUID or `ElementName`).
    VirtualSystem,
    /// A `Msvm_StorageAllocationSettingData` of a virtual system (by `InstanceID`).
    VirtualDisk,
    /// A snapshot `Msvm_VirtualSystemSettingData` (by `InstanceID`).
    Snapshot,
    /// A `Msvm_VirtualSystemReferencePoint` (by `InstanceID`).
    ReferencePoint,
    /// A `Msvm_VirtualSystemCollection` (by `CollectionID` or `ElementName`).
    Collection,
    /// A `Msvm_ReferencePointCollection` (by `CollectionID`).
    ReferencePointCollection,
    /// A `Msvm_SnapshotCollection` (by `CollectionID`).
    SnapshotCollection,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::VirtualSystem => "virtual system",
            ObjectKind::VirtualDisk => "virtual disk",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::ReferencePoint => "reference point",
            ObjectKind::Collection => "virtual system collection",
            ObjectKind::ReferencePointCollection => "reference point collection",
            ObjectKind::SnapshotCollection => "snapshot collection",
        })
    }
}

/// Stable classification of a [`HostError`], for mapping to CIM return codes.
///
/// Intended mapping (Hyper-V Table A, `reference/hyperv-api.md` §5; the
/// facade owns the authoritative table): `NotInitialised`/`Locked` → 32777
/// System is not available; `NotFound` → 32773 Invalid parameter (for a
/// reference point) ; `InvalidParameter` → 32773; `InvalidState` → 32775;
/// `NotSupported` → 32770; `InUse` → 32774; `FileNotFound` → 32779;
/// `Vhdx(_)`/`Io`/`CatalogCorrupt` → 32768 Failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The directory holds no host catalog.
    NotInitialised,
    /// Another process holds the host lock.
    Locked,
    /// A named object does not exist.
    NotFound,
    /// A caller-supplied value is invalid.
    InvalidParameter,
    /// The object is not in a state that allows the operation.
    InvalidState,
    /// The operation or value is valid CIM but not implemented here.
    NotSupported,
    /// A VHDX file could not be opened, read, created or written; carries the
    /// VHDX crate's own kind.
    Vhdx(refpoint_vhdx::ErrorKind),
    /// A file-system operation on the host store failed.
    Io,
    /// The catalog file exists but cannot be trusted.
    CatalogCorrupt,
    /// The object is in use by a running operation (an export pinned it);
    /// maps to 32774 System is in use.
    InUse,
    /// A file named by the caller does not exist (`GetVirtualDiskChanges`
    /// `Path`); maps to 32779 File not found.
    FileNotFound,
    /// A lock was not obtained in time (a writer held an active leaf while a
    /// collection was frozen); maps to 32772 Timeout.
    Timeout,
}

/// Error of every host operation.
///
/// Display names the file, object or field concerned; the underlying cause is
/// available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// `Host::open` on a directory without `refpoint-host.json`.
    #[error("no refpoint host at {}: {} does not exist (run `refpoint host init`)", .dir.display(), .catalog.display())]
    NotInitialised {
        /// The host directory.
        dir: PathBuf,
        /// The catalog path that is missing.
        catalog: PathBuf,
    },
    /// `Host::init` on a directory that already holds a catalog.
    #[error("{} already holds a refpoint host catalog", .path.display())]
    AlreadyInitialised {
        /// The existing catalog.
        path: PathBuf,
    },
    /// The host lock is held by another process (or another `Host` in this one).
    #[error("host is locked by {} ({})", match .pid { Some(p) => format!("process {p}"), None => "another process".to_owned() }, .path.display())]
    Locked {
        /// Process id written into the lock file by the holder, if readable.
        pid: Option<u32>,
        /// The lock file.
        path: PathBuf,
    },
    /// A looked-up object does not exist.
    #[error("{what} not found: {id}")]
    NotFound {
        /// What was looked up.
        what: ObjectKind,
        /// The identifier as given by the caller.
        id: String,
    },
    /// A caller-supplied value is invalid.
    #[error("invalid parameter {parameter}: {reason}")]
    InvalidParameter {
        /// The parameter (CIM name where one exists).
        parameter: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The object's state does not allow the operation.
    #[error("invalid state for {operation} on {object}: {reason}")]
    InvalidState {
        /// The operation (CIM method name where one exists).
        operation: &'static str,
        /// The object concerned (InstanceID or path).
        object: String,
        /// Why.
        reason: String,
    },
    /// A frozen (read-only by contract) layer's DataWriteGuid differs from the
    /// one recorded when it was frozen: it was written outside refpoint.
    #[error("layer modified outside refpoint: {} has DataWriteGuid {found}, the catalog recorded {expected}", .path.display())]
    LayerModified {
        /// The modified layer.
        path: PathBuf,
        /// DataWriteGuid recorded in the catalog.
        expected: Uuid,
        /// DataWriteGuid found in the file's current header.
        found: Uuid,
    },
    /// A valid CIM value this implementation does not support.
    #[error("not supported: {what}")]
    NotSupported {
        /// What is unsupported.
        what: String,
    },
    /// `import_vm`: files in the directory that could not be placed in any
    /// openable chain.
    #[error("cannot import {}: {} belong(s) to no chain that can be opened: {source}", .dir.display(), display_paths(.files))]
    ImportUnresolved {
        /// The imported directory.
        dir: PathBuf,
        /// Every file of the directory left without a chain.
        files: Vec<PathBuf>,
        /// The error of the first such file.
        #[source]
        source: Box<VhdxError>,
    },
    /// The object is pinned by a running export (or another operation).
    #[error("{object} is in use: {operation} refused: {reason}")]
    InUse {
        /// The operation refused (CIM method name).
        operation: &'static str,
        /// The object concerned (InstanceID or path).
        object: String,
        /// Why it is in use.
        reason: String,
    },
    /// A file named by the caller does not exist.
    #[error("{parameter} {}: file not found", .path.display())]
    FileNotFound {
        /// The parameter that named it (`Path`).
        parameter: &'static str,
        /// The missing file.
        path: PathBuf,
    },
    /// A lock was not obtained in time.
    #[error("{operation} timed out after {} ms waiting for the write lock of {object}", .waited.as_millis())]
    Timeout {
        /// The operation (CIM method name).
        operation: &'static str,
        /// What was waited for (the locked file).
        object: String,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// A VHDX operation failed (the error names the file and offset).
    #[error(transparent)]
    Vhdx(Box<VhdxError>),
    /// A file-system operation on the host store failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (e.g. "write catalog").
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The catalog cannot be trusted; it is never silently reset.
    #[error("host catalog {} is corrupt: {detail}", .path.display())]
    CatalogCorrupt {
        /// The catalog file.
        path: PathBuf,
        /// Which rule it breaks (for JSON errors: line and column).
        #[source]
        detail: CatalogError,
    },
}

impl From<VhdxError> for HostError {
    fn from(e: VhdxError) -> Self {
        HostError::Vhdx(Box::new(e))
    }
}

fn display_paths(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl HostError {
    /// The stable kind of this error (see [`ErrorKind`] for the code mapping).
    pub fn kind(&self) -> ErrorKind {
        match self {
            HostError::NotInitialised { .. } => ErrorKind::NotInitialised,
            HostError::Locked { .. } => ErrorKind::Locked,
            HostError::NotFound { .. } => ErrorKind::NotFound,
            HostError::InvalidParameter { .. } => ErrorKind::InvalidParameter,
            HostError::AlreadyInitialised { .. }
            | HostError::InvalidState { .. }
            | HostError::LayerModified { .. } => ErrorKind::InvalidState,
            HostError::NotSupported { .. } => ErrorKind::NotSupported,
            HostError::ImportUnresolved { source, .. } => ErrorKind::Vhdx(source.kind()),
            HostError::Vhdx(e) => ErrorKind::Vhdx(e.kind()),
            HostError::Io { .. } => ErrorKind::Io,
            HostError::CatalogCorrupt { .. } => ErrorKind::CatalogCorrupt,
            HostError::InUse { .. } => ErrorKind::InUse,
            HostError::FileNotFound { .. } => ErrorKind::FileNotFound,
            HostError::Timeout { .. } => ErrorKind::Timeout,
        }
    }

    /// The VHDX error behind this one, if any.
    pub fn vhdx(&self) -> Option<&VhdxError> {
        match self {
            HostError::Vhdx(e) | HostError::ImportUnresolved { source: e, .. } => Some(e),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        HostError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

/// Result of host operations.
pub type Result<T> = std::result::Result<T, HostError>;
