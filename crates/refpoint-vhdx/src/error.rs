//! The crate-boundary error: a stable [`ErrorKind`] for control flow, the
//! context of the failure (file path, file offset, operation) and the
//! per-module [`ErrorDetail`] naming the MS-VHDX rule that was broken.
//!
//! Every module that parses or validates on-disk data has its own
//! `thiserror` enum with one variant per spec rule (`HeaderError`,
//! `RegionError`, `MetadataError`, `LocatorError`, `BatError`, `LogError`,
//! `ChainError`). They are wrapped here, once, with the path of the file and
//! the operation that failed, so a message reads for example:
//!
//! ```text
//! open /vms/disk.avhdx: header 1 at offset 0x10000: checksum mismatch (stored 0x12345678, computed 0x9abcdef0)
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::bat::BatError;
use crate::chain::ChainError;
use crate::header::HeaderError;
use crate::locator::LocatorError;
use crate::log::LogError;
use crate::metadata::MetadataError;
use crate::region::RegionError;

/// Stable classification of a [`VhdxError`], for callers that map errors to
/// return codes (e.g. CIM `ReturnValue` 32768 Failed vs 32773 Invalid parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system reported an I/O error.
    Io,
    /// The file violates MS-VHDX (bad checksum, overlapping structures, …).
    Corrupt,
    /// The file is valid but uses something this implementation refuses
    /// (unknown required region or metadata item, header Version ≠ 1, …).
    Unsupported,
    /// The caller asked for something impossible (read past the virtual size,
    /// block index out of range, buffer of the wrong length).
    InvalidArgument,
    /// A differencing chain cannot be assembled (missing parent, DataWriteGuid
    /// mismatch, cycle, too many layers, geometry mismatch).
    ChainBroken,
    /// A named file does not exist.
    NotFound,
}

/// What exactly went wrong: the per-module error that names the rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// An operating-system I/O error.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// File Type Identifier or header (MS-VHDX §2.2.1–2.2.2).
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Region table (MS-VHDX §2.2.3).
    #[error(transparent)]
    Region(#[from] RegionError),
    /// Metadata region (MS-VHDX §2.6).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Parent locator (MS-VHDX §2.6.2.6).
    #[error(transparent)]
    Locator(#[from] LocatorError),
    /// Block allocation table (MS-VHDX §2.5).
    #[error(transparent)]
    Bat(#[from] BatError),
    /// Log (MS-VHDX §2.3).
    #[error(transparent)]
    Log(#[from] LogError),
    /// Differencing chain and virtual reads (MS-VHDX §2.6.2.6, §2.5.1).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A module without its own variant here yet (e.g. the write path);
    /// the boxed error names the rule.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ErrorDetail {
    /// The kind this detail maps to when it reaches the crate boundary.
    fn kind(&self) -> ErrorKind {
        match self {
            ErrorDetail::Io(e) if e.kind() == io::ErrorKind::NotFound => ErrorKind::NotFound,
            ErrorDetail::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => ErrorKind::Corrupt,
            ErrorDetail::Io(_) => ErrorKind::Io,
            ErrorDetail::Header(e) => e.kind(),
            ErrorDetail::Region(e) => e.kind(),
            ErrorDetail::Metadata(e) => e.kind(),
            ErrorDetail::Locator(e) => e.kind(),
            ErrorDetail::Bat(e) => e.kind(),
            ErrorDetail::Log(e) => e.kind(),
            ErrorDetail::Chain(e) => e.kind(),
            ErrorDetail::Other(_) => ErrorKind::Corrupt,
        }
    }

    /// The file offset the detail names, if any.
    fn offset(&self) -> Option<u64> {
        match self {
            ErrorDetail::Header(e) => e.offset(),
            ErrorDetail::Region(e) => e.offset(),
            ErrorDetail::Metadata(e) => e.offset(),
            ErrorDetail::Bat(e) => e.offset(),
            ErrorDetail::Log(e) => e.offset(),
            ErrorDetail::Io(_)
            | ErrorDetail::Locator(_)
            | ErrorDetail::Chain(_)
            | ErrorDetail::Other(_) => None,
        }
    }
}

/// The error returned by every public function of this crate.
///
/// `Display` names the operation, the file, the offset (when known) and the
/// rule; [`VhdxError::detail`] gives the per-module variant for callers and
/// tests that need to tell rules apart.
pub struct VhdxError {
    kind: ErrorKind,
    path: Option<PathBuf>,
    offset: Option<u64>,
    operation: Option<&'static str>,
    detail: Box<ErrorDetail>,
}

/// `Result` with [`VhdxError`].
pub type Result<T> = std::result::Result<T, VhdxError>;

impl VhdxError {
    /// Wraps a detail; the kind is derived from it.
    pub fn new(detail: impl Into<ErrorDetail>) -> VhdxError {
        let detail = detail.into();
        VhdxError {
            kind: detail.kind(),
            path: None,
            offset: None,
            operation: None,
            detail: Box::new(detail),
        }
    }

    /// Wraps an error from a module that has no [`ErrorDetail`] variant, with
    /// an explicit kind.
    pub fn other(
        kind: ErrorKind,
        error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> VhdxError {
        VhdxError {
            kind,
            path: None,
            offset: None,
            operation: None,
            detail: Box::new(ErrorDetail::Other(error.into())),
        }
    }

    /// An I/O error at a file offset (bytes).
    pub(crate) fn io_at(error: io::Error, offset: u64) -> VhdxError {
        VhdxError::new(error).at_offset(offset)
    }

    /// Sets the file path, unless one is already set (the innermost file wins).
    #[must_use]
    pub fn with_path(mut self, path: &Path) -> VhdxError {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// Sets the operation (e.g. `"open"`, `"read"`), unless one is already set.
    #[must_use]
    pub fn with_operation(mut self, operation: &'static str) -> VhdxError {
        if self.operation.is_none() {
            self.operation = Some(operation);
        }
        self
    }

    /// Sets the file offset in bytes, unless one is already set.
    #[must_use]
    pub fn at_offset(mut self, offset: u64) -> VhdxError {
        if self.offset.is_none() {
            self.offset = Some(offset);
        }
        self
    }

    /// Stable classification for control flow.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file the error is about, if known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The file offset in bytes the error is about, if known.
    pub fn offset(&self) -> Option<u64> {
        self.offset.or_else(|| self.detail.offset())
    }

    /// The operation that failed (`"open"`, `"read"`, `"open chain"`…), if known.
    pub fn operation(&self) -> Option<&'static str> {
        self.operation
    }

    /// The per-module error naming the broken rule.
    pub fn detail(&self) -> &ErrorDetail {
        &self.detail
    }
}

impl fmt::Display for VhdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = self.operation {
            write!(f, "{op} ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{}", path.display())?;
        } else {
            write!(f, "VHDX")?;
        }
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset:#x}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl fmt::Debug for VhdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VhdxError")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("offset", &self.offset())
            .field("operation", &self.operation)
            .field("detail", &self.detail)
            .finish()
    }
}

impl std::error::Error for VhdxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The detail is already part of Display; expose only what lies below it.
        std::error::Error::source(&*self.detail)
    }
}

impl<E: Into<ErrorDetail>> From<E> for VhdxError {
    fn from(error: E) -> VhdxError {
        VhdxError::new(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_path_offset_and_rule() {
        let err = VhdxError::io_at(io::Error::other("disk on fire"), 0x20000)
            .with_path(Path::new("/vms/a.vhdx"))
            .with_operation("read");
        assert_eq!(
            err.to_string(),
            "read /vms/a.vhdx at offset 0x20000: disk on fire"
        );
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.offset(), Some(0x20000));
    }

    #[test]
    fn not_found_io_error_maps_to_not_found_kind() {
        let err = VhdxError::new(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn short_read_maps_to_corrupt_kind() {
        let err = VhdxError::new(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn first_path_wins_when_context_is_added_twice() {
        let err = VhdxError::other(ErrorKind::Corrupt, "x")
            .with_path(Path::new("/inner"))
            .with_path(Path::new("/outer"));
        assert_eq!(err.path(), Some(Path::new("/inner")));
    }
}
