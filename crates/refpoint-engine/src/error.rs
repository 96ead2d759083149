//! The crate-boundary error: [`EngineError`] = a stable [`ErrorKind`] (which
//! the facade maps to a CIM return code: `impl From<EngineError> for
//! RefpointError` in the `refpoint` crate is the one authoritative mapping), an
//! [`ErrorContext`] (operation, path, offset, disk), and the module error that
//! names the broken rule ([`ErrorDetail`]).
//!
//! Mapping to `ExportReferencePoint` return codes (Table A), as the facade
//! applies it:
//!
//! | kind | code | raised for |
//! |---|---|---|
//! | `Failed` | 32768 | I/O error, corrupt or unreadable source VHDX, output write failure |
//! | `AccessDenied` | 32769 | permission denied / read-only file system on the export directory or a source |
//! | `NotSupported` | 32770 | (reserved: nothing the engine is asked today) |
//! | `InvalidParameter` | 32773 | malformed request: path, names, chain/GUID counts, thread count; base of another VM or the target itself; base export missing, of another reference point or not matching its manifest; restore folders that do not form a chain |
//! | `TargetExists` | 32773 | `<ExportDirectory>/<ElementName>` already exists (nothing is overwritten) |
//! | `InUse` | 32774 | another live export writes the same VM folder of the same directory |
//! | `InvalidState` | 32775 | a source layer's `DataWriteGuid` or geometry no longer matches the reference point; change tracking lost under the strict policy |
//! | `OutOfMemory` | 32778 | the buffer pool cannot be allocated or cannot hold one block |
//! | `Interrupted` | 32768 | terminated/killed; the job's `JobState` (8/9) carries the reason |

use std::io;
use std::path::{Path, PathBuf};

use refpoint_vhdx::VhdxError;

use crate::base::BaseError;
use crate::collection_commit::CollectionError;
use crate::control::Interrupted;
use crate::differential::DifferentialError;
use crate::output::OutputError;
use crate::pool::PoolError;
use crate::request::RequestError;
use crate::restore::RestoreError;
use crate::source::SourceError;
use crate::staging::StagingError;
use crate::verify::VerifyError;

/// Stable classification of an [`EngineError`]; see the module table for the
/// CIM return codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// I/O error or corrupt source (32768).
    Failed,
    /// A directory or source is not accessible (32769).
    AccessDenied,
    /// The request asks for something this engine does not do (32770).
    NotSupported,
    /// A request parameter is invalid (32773).
    InvalidParameter,
    /// The target VM folder already exists (32773).
    TargetExists,
    /// Another export is writing the same target (32774).
    InUse,
    /// The sources no longer match the reference point (32775).
    InvalidState,
    /// The buffer pool could not be allocated (32778).
    OutOfMemory,
    /// Stopped by the caller through [`crate::ExportControl::checkpoint`].
    Interrupted(Interrupted),
}

impl ErrorKind {
    /// The `ExportReferencePoint` return code (Table A) for this kind, for
    /// [`EngineError::return_code`] only. `Interrupted` maps to 32768; the
    /// job's `JobState` (Terminated 8, Killed 9) is what tells the caller why.
    fn return_code(self) -> u32 {
        match self {
            ErrorKind::Failed | ErrorKind::Interrupted(_) => 32768,
            ErrorKind::AccessDenied => 32769,
            ErrorKind::NotSupported => 32770,
            ErrorKind::InvalidParameter | ErrorKind::TargetExists => 32773,
            ErrorKind::InUse => 32774,
            ErrorKind::InvalidState => 32775,
            ErrorKind::OutOfMemory => 32778,
        }
    }
}

/// Where an error happened, for machines (the message says it for humans).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorContext {
    /// What the engine was doing, e.g. `"read source block"`.
    pub operation: &'static str,
    /// The file or directory concerned.
    pub path: Option<PathBuf>,
    /// Byte offset concerned (virtual-disk offset for block reads/writes,
    /// file offset for VHDX structure errors).
    pub offset: Option<u64>,
    /// Disk `InstanceID` concerned.
    pub disk: Option<String>,
}

/// The module error behind an [`EngineError`]: one variant per module, each
/// with one variant per rule.
#[derive(Debug, thiserror::Error)]
pub enum ErrorDetail {
    /// Request validation ([`RequestError`]).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// Source chain validation and reads ([`SourceError`]).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Staging directory, locks and commit ([`StagingError`]).
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// Buffer pool ([`PoolError`]).
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Output files ([`OutputError`]).
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Reading an export to verify it ([`VerifyError`]).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The base export of a differential export ([`BaseError`]).
    #[error(transparent)]
    Base(#[from] BaseError),
    /// Change tracking of a differential export ([`DifferentialError`]).
    #[error(transparent)]
    Differential(#[from] DifferentialError),
    /// Building a synthetic full from a chain of exports ([`RestoreError`]).
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The caller stopped the export.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// A collection export's rule, staging, commit or recovery.
    #[error(transparent)]
    Collection(#[from] CollectionError),
}

/// The error of every public engine function.
///
/// `Display` is one sentence naming the file, offset or field and the rule;
/// [`EngineError::kind`] gives the CIM code.
#[derive(Debug)]
pub struct EngineError {
    kind: ErrorKind,
    context: ErrorContext,
    detail: Box<ErrorDetail>,
}

impl EngineError {
    /// The stable kind (→ CIM return code).
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The Table A code of [`EngineError::kind`], a convenience for this
    /// crate's tests. Callers use the facade's mapping (`RefpointError`),
    /// which is authoritative: it also turns any permission-denied cause
    /// into 32769.
    #[must_use]
    pub fn return_code(&self) -> u32 {
        self.kind.return_code()
    }
    /// Operation, path, offset and disk of the failure.
    #[must_use]
    pub fn context(&self) -> &ErrorContext {
        &self.context
    }
    /// The path concerned, if any.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.context.path.as_deref()
    }
    /// The byte offset concerned, if any.
    #[must_use]
    pub fn offset(&self) -> Option<u64> {
        self.context.offset
    }
    /// The module error naming the exact rule.
    #[must_use]
    pub fn detail(&self) -> &ErrorDetail {
        &self.detail
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The module error's message already names path/offset/field and
        // includes its cause; it is deliberately not repeated by `source()`.
        write!(f, "{}", self.detail)
    }
}

impl std::error::Error for EngineError {}

impl From<ErrorDetail> for EngineError {
    fn from(detail: ErrorDetail) -> Self {
        let (kind, context) = match &detail {
            ErrorDetail::Request(e) => (e.kind(), e.context()),
            ErrorDetail::Source(e) => (e.kind(), e.context()),
            ErrorDetail::Staging(e) => (e.kind(), e.context()),
            ErrorDetail::Pool(e) => (e.kind(), e.context()),
            ErrorDetail::Output(e) => (e.kind(), e.context()),
            ErrorDetail::Verify(e) => (e.kind(), e.context()),
            ErrorDetail::Base(e) => (e.kind(), e.context()),
            ErrorDetail::Differential(e) => (e.kind(), e.context()),
            ErrorDetail::Restore(e) => (e.kind(), e.context()),
            ErrorDetail::Collection(e) => (e.kind(), e.context()),
            ErrorDetail::Interrupted(i) => (
                ErrorKind::Interrupted(*i),
                ErrorContext {
                    operation: "export",
                    ..ErrorContext::default()
                },
            ),
        };
        EngineError {
            kind,
            context,
            detail: Box::new(detail),
        }
    }
}

macro_rules! engine_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for EngineError {
            fn from(err: $t) -> Self {
                EngineError::from(ErrorDetail::from(err))
            }
        }
    )*};
}

engine_error_from!(
    RequestError,
    SourceError,
    StagingError,
    PoolError,
    OutputError,
    VerifyError,
    BaseError,
    DifferentialError,
    RestoreError,
    Interrupted,
    CollectionError
);

impl RequestError {
    fn kind(&self) -> ErrorKind {
        match self {
            RequestError::TrackingLost { .. } => ErrorKind::InvalidState,
            _ => ErrorKind::InvalidParameter,
        }
    }

    fn context(&self) -> ErrorContext {
        let mut ctx = ErrorContext {
            operation: "validate export request",
            ..ErrorContext::default()
        };
        match self {
            RequestError::ExportDirectoryNotAbsolute { path }
            | RequestError::ExportDirectoryParentMissing { path }
            | RequestError::ExportDirectoryNotADirectory { path } => ctx.path = Some(path.clone()),
            RequestError::InvalidChainPath { disk, path } => {
                ctx.path = Some(path.clone());
                ctx.disk = Some(disk.clone());
            }
            RequestError::InvalidFileStem { disk, .. }
            | RequestError::DuplicateDisk { disk }
            | RequestError::EmptyChain { disk }
            | RequestError::DataWriteGuidCount { disk, .. }
            | RequestError::TrackingLost { disk, .. }
            | RequestError::ChangesWithoutBase { disk } => ctx.disk = Some(disk.clone()),
            RequestError::DuplicateFileStem { second, .. } => ctx.disk = Some(second.clone()),
            RequestError::InvalidElementName { .. }
            | RequestError::BaseIsTarget { .. }
            | RequestError::BaseOfAnotherVm { .. }
            | RequestError::ThreadPool { .. } => {}
        }
        ctx
    }
}

/// Kind of an I/O error on an export directory, output or source file.
pub(crate) fn io_kind(err: &io::Error) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            ErrorKind::AccessDenied
        }
        io::ErrorKind::OutOfMemory => ErrorKind::OutOfMemory,
        _ => ErrorKind::Failed,
    }
}

/// Kind of a `refpoint-vhdx` error: invalid arguments are parameters, a
/// permission problem is access denied, everything else (I/O, corrupt,
/// unsupported, broken chain, missing file) fails the export.
pub(crate) fn vhdx_kind(err: &VhdxError) -> ErrorKind {
    if matches!(err.kind(), refpoint_vhdx::ErrorKind::InvalidArgument) {
        return ErrorKind::InvalidParameter;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return match io_kind(io) {
                ErrorKind::AccessDenied => ErrorKind::AccessDenied,
                _ => ErrorKind::Failed,
            };
        }
        cause = c.source();
    }
    ErrorKind::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_follow_table_a() {
        let table = [
            (ErrorKind::Failed, 32768),
            (ErrorKind::AccessDenied, 32769),
            (ErrorKind::NotSupported, 32770),
            (ErrorKind::InvalidParameter, 32773),
            (ErrorKind::TargetExists, 32773),
            (ErrorKind::InUse, 32774),
            (ErrorKind::InvalidState, 32775),
            (ErrorKind::OutOfMemory, 32778),
            (ErrorKind::Interrupted(Interrupted::Killed), 32768),
        ];

        let codes: Vec<u32> = table.iter().map(|(k, _)| k.return_code()).collect();

        let expected: Vec<u32> = table.iter().map(|(_, c)| *c).collect();
        assert_eq!(codes, expected);
    }

    #[test]
    fn permission_denied_io_is_access_denied() {
        let err = io::Error::from(io::ErrorKind::PermissionDenied);

        assert_eq!(io_kind(&err), ErrorKind::AccessDenied);
    }

    #[test]
    fn interrupted_keeps_its_reason() {
        let err = EngineError::from(Interrupted::Terminated);

        assert_eq!(err.kind(), ErrorKind::Interrupted(Interrupted::Terminated));
    }
}
