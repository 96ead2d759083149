//! The output side's small files written durably (settings, manifest,
//! `SHA256SUMS`) and its errors; the VHDX outputs are written by
//! [`crate::disk_output`].

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use refpoint_vhdx::VhdxError;

use crate::digest::{Sha256Digest, sha256};
use crate::error::{ErrorContext, ErrorKind, io_kind, vhdx_kind};

/// Writing an output file failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output VHDX could not be created.
    #[error("disk {disk}: cannot create '{}': {cause}", path.display())]
    Create {
        /// Disk `InstanceID`.
        disk: String,
        /// The output file.
        path: PathBuf,
        /// The `refpoint-vhdx` error.
        cause: Box<VhdxError>,
    },
    /// A payload block could not be written.
    #[error("disk {disk}: cannot write block {block} (virtual offset {offset}) to '{}': {cause}", path.display())]
    WriteBlock {
        /// Disk `InstanceID`.
        disk: String,
        /// The output file.
        path: PathBuf,
        /// Block index.
        block: u64,
        /// Virtual byte offset of the block.
        offset: u64,
        /// The `refpoint-vhdx` error.
        cause: Box<VhdxError>,
    },
    /// Writing the BAT, flushing or fsyncing the output VHDX failed.
    #[error("disk {disk}: cannot finish '{}': {cause}", path.display())]
    Finish {
        /// Disk `InstanceID`.
        disk: String,
        /// The output file.
        path: PathBuf,
        /// The `refpoint-vhdx` error.
        cause: Box<VhdxError>,
    },
    /// A plain file operation failed.
    #[error("cannot {operation} '{}': {cause}", path.display())]
    File {
        /// What was attempted, e.g. `"write manifest"`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// The manifest could not be serialised.
    #[error("cannot serialise the manifest '{}': {cause}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The serde_json error.
        cause: serde_json::Error,
    },
}

impl OutputError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            OutputError::Create { cause, .. }
            | OutputError::WriteBlock { cause, .. }
            | OutputError::Finish { cause, .. } => vhdx_kind(cause),
            OutputError::File { cause, .. } => io_kind(cause),
            OutputError::Manifest { .. } => ErrorKind::Failed,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        match self {
            OutputError::Create { disk, path, .. } => ErrorContext {
                operation: "create output VHDX",
                path: Some(path.clone()),
                offset: None,
                disk: Some(disk.clone()),
            },
            OutputError::WriteBlock {
                disk, path, offset, ..
            } => ErrorContext {
                operation: "write output block",
                path: Some(path.clone()),
                offset: Some(*offset),
                disk: Some(disk.clone()),
            },
            OutputError::Finish { disk, path, .. } => ErrorContext {
                operation: "finish output VHDX",
                path: Some(path.clone()),
                offset: None,
                disk: Some(disk.clone()),
            },
            OutputError::File {
                operation, path, ..
            } => ErrorContext {
                operation,
                path: Some(path.clone()),
                ..ErrorContext::default()
            },
            OutputError::Manifest { path, .. } => ErrorContext {
                operation: "write manifest",
                path: Some(path.clone()),
                ..ErrorContext::default()
            },
        }
    }
}

/// Closure mapping an I/O error to [`OutputError::File`].
pub(crate) fn file_err(
    operation: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |cause| OutputError::File {
        operation,
        path,
        cause,
    }
}

/// Creates `path` (must not exist), writes `bytes`, fsyncs it; returns the
/// SHA-256 and length of what was written.
///
/// # Errors
/// [`OutputError::File`].
pub(crate) fn write_file_synced(
    path: &Path,
    bytes: &[u8],
    operation: &'static str,
) -> Result<(Sha256Digest, u64), OutputError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(file_err(operation, path))?;
    file.write_all(bytes).map_err(file_err(operation, path))?;
    file.sync_all().map_err(file_err("fsync", path))?;
    Ok((sha256(bytes), bytes.len() as u64))
}

/// Creates directory `path` (must not exist).
pub(crate) fn create_dir(path: &Path) -> Result<(), OutputError> {
    std::fs::create_dir(path).map_err(file_err("create directory", path))
}
