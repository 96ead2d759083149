//! The output side: small files written durably (settings, manifest,
//! `SHA256SUMS`), and [`DiskWriter`], which hands one disk's stored blocks to
//! the `refpoint-vhdx` [`ImageBuilder`] in ascending block order.
//!
//! Why ascending order: blocks are read and hashed in parallel and finish in
//! any order, but the builder allocates payload space as blocks arrive; a
//! reorder buffer per disk makes the file layout (and so the file's SHA-256)
//! independent of thread timing. Memory stays bounded: a block waiting for
//! its turn holds a pool buffer, and the blocks before it were dispatched
//! earlier and already hold theirs, so the oldest waiting block can always
//! be written.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use refpoint_vhdx::{ImageBuilder, VhdxError};

use crate::digest::{Sha256Digest, sha256};
use crate::error::{ErrorContext, ErrorKind, io_kind, vhdx_kind};
use crate::pool::PooledBuffer;

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

/// What the output gets for one block handed to [`DiskWriter::submit`].
#[derive(Debug)]
pub(crate) enum BlockPayload<'p> {
    /// Store the data (`PAYLOAD_BLOCK_FULLY_PRESENT`).
    Store(PooledBuffer<'p>),
    /// Mark the block `PAYLOAD_BLOCK_ZERO` (a differencing output whose
    /// block became all-zero: reads zeros, not the parent's data).
    Zero,
    /// Nothing: the block stays `PAYLOAD_BLOCK_NOT_PRESENT` (zero in a
    /// dynamic output, the parent's data in a differencing one).
    Skip,
}

type Pending<'p> = (u64, usize, BlockPayload<'p>);

#[derive(Debug)]
struct WriteOrder<'p> {
    /// Position (in the disk's data-block list) of the next block to write.
    next: usize,
    /// Blocks done reading, waiting for their turn: position → (block index,
    /// block length, what to write).
    pending: BTreeMap<usize, Pending<'p>>,
    /// A thread is currently writing; others only enqueue.
    draining: bool,
}

/// One output VHDX being built, with its in-order write queue.
#[derive(Debug)]
pub(crate) struct DiskWriter<'p> {
    disk: String,
    path: PathBuf,
    block_size: u64,
    builder: ImageBuilder,
    order: Mutex<WriteOrder<'p>>,
}

impl<'p> DiskWriter<'p> {
    /// Wraps a created builder for disk `disk` writing `path`.
    pub(crate) fn new(disk: &str, path: &Path, block_size: u64, builder: ImageBuilder) -> Self {
        DiskWriter {
            disk: disk.to_owned(),
            path: path.to_path_buf(),
            block_size,
            builder,
            order: Mutex::new(WriteOrder {
                next: 0,
                pending: BTreeMap::new(),
                draining: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, WriteOrder<'p>> {
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands over the block at `position` of the disk's planned-block list.
    /// Whoever completes the next
    /// position in order writes every consecutive ready block; buffers are
    /// returned to the pool as soon as they are written.
    ///
    /// # Errors
    /// [`OutputError::WriteBlock`]; after an error this writer writes nothing more.
    pub(crate) fn submit(
        &self,
        position: usize,
        block: u64,
        length: usize,
        payload: BlockPayload<'p>,
    ) -> Result<(), OutputError> {
        let mut order = self.lock();
        order.pending.insert(position, (block, length, payload));
        if order.draining {
            return Ok(());
        }
        order.draining = true;
        loop {
            let next = order.next;
            let Some((block, length, payload)) = order.pending.remove(&next) else {
                order.draining = false;
                return Ok(());
            };
            order.next += 1;
            drop(order);
            let written = match &payload {
                BlockPayload::Store(buffer) => {
                    let data = buffer.as_slice().get(..length).unwrap_or_default();
                    self.builder.write_block(block, data)
                }
                BlockPayload::Zero => self.builder.zero_block(block),
                BlockPayload::Skip => Ok(()),
            };
            drop(payload);
            if let Err(cause) = written {
                // `draining` stays set: nothing is written after a failure.
                return Err(OutputError::WriteBlock {
                    disk: self.disk.clone(),
                    path: self.path.clone(),
                    block,
                    offset: block.saturating_mul(self.block_size),
                    cause: Box::new(cause),
                });
            }
            order = self.lock();
        }
    }

    /// Writes the BAT, flushes and fsyncs; returns the file size in bytes.
    ///
    /// # Errors
    /// [`OutputError::Finish`].
    pub(crate) fn finish(self) -> Result<u64, OutputError> {
        let DiskWriter {
            disk,
            path,
            builder,
            ..
        } = self;
        builder.finish().map_err(|cause| OutputError::Finish {
            disk,
            path,
            cause: Box::new(cause),
        })
    }
}
