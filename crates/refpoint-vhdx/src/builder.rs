//! Streaming output of an export: a new dynamic or differencing VHDX whose
//! payload blocks arrive in any order from many threads (MS-VHDX §2.5).
//!
//! [`ImageBuilder::create`] writes the header section, the metadata region
//! and an all-NOT_PRESENT BAT region (sparse; a differencing file also gets
//! its zeroed sector bitmap blocks, see `create::layout`) into a hidden temporary file
//! next to the target. Each [`ImageBuilder::write_block`] takes the next
//! free 1 MiB-aligned file offset under a mutex that guards only the
//! allocation counter and the in-memory BAT, then `pwrite`s the data without
//! holding it. [`ImageBuilder::finish`] writes the BAT once, sets the file
//! length, fsyncs and renames the file into place. Only written blocks
//! occupy space; the file is crash-safe by construction because nothing is
//! visible at the target path before `finish`.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

use crate::create::layout::{
    self, BAT_OFFSET, ImageLayout, LOG_LENGTH, LOG_OFFSET, METADATA_OFFSET,
};
use crate::create::{CreateError, CreateOptions, StagedFile, locator_path};
use crate::error::{ErrorKind, Result, VhdxError};
use crate::format::{
    self, BatEntry, HEADER1_OFFSET, HEADER2_OFFSET, MIB, REGION_TABLE1_OFFSET,
    REGION_TABLE2_OFFSET, payload_state, sector_bitmap_state,
};
use crate::header::Header;
use crate::locator;
use crate::region;

/// What kind of file an [`ImageBuilder`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuilderKind {
    /// A dynamic VHDX (no parent); unwritten blocks read as zeros.
    Dynamic,
    /// A differencing VHDX; unwritten blocks read from the parent.
    Differencing {
        /// The parent file; the locator stores its path relative to the
        /// output's directory and its absolute path.
        parent_path: PathBuf,
        /// The parent's DataWriteGuid, stored as `parent_linkage`.
        parent_data_write_guid: Uuid,
    },
}

/// A block request an [`ImageBuilder`] refuses (MS-VHDX §2.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuilderError {
    /// The block index is not below the number of payload blocks.
    #[error("block {block} is out of range: the disk has {data_blocks} payload blocks")]
    BlockOutOfRange {
        /// Requested block.
        block: u64,
        /// Payload blocks of the disk.
        data_blocks: u64,
    },
    /// Each block is stored at most once.
    #[error("block {block} was already written or zeroed")]
    BlockAlreadyWritten {
        /// Requested block.
        block: u64,
    },
    /// Data must be the whole block (the last block may be cut at the virtual size).
    #[error("block {block} data is {length} bytes, expected {expected} (or the block size)")]
    BlockLength {
        /// Requested block.
        block: u64,
        /// Bytes given.
        length: usize,
        /// Bytes of the block inside the virtual disk.
        expected: u64,
    },
    /// A payload offset would overflow a 64-bit file offset.
    #[error("file offset overflow allocating block {block}")]
    FileTooLarge {
        /// Requested block.
        block: u64,
    },
    /// A previous block write failed; the file is incomplete.
    #[error("an earlier block write failed; the image is incomplete")]
    EarlierWriteFailed,
}

impl BuilderError {
    fn at(self, path: &Path, operation: &'static str) -> VhdxError {
        let kind = match self {
            BuilderError::EarlierWriteFailed => ErrorKind::Io,
            _ => ErrorKind::InvalidArgument,
        };
        VhdxError::other(kind, self)
            .with_path(path)
            .with_operation(operation)
    }
}

/// The allocation counter and BAT shared by writer threads.
#[derive(Debug)]
struct Allocation {
    /// Next free file offset, a multiple of 1 MiB; also the file length.
    next_offset: u64,
    /// Raw BAT entries indexed by BAT index (payload and sector bitmap).
    bat: Vec<u64>,
}

/// Builds one VHDX file from whole payload blocks, thread-safe
/// (`Send + Sync`: share it by reference across a rayon pool).
#[derive(Debug)]
pub struct ImageBuilder {
    staged: StagedFile,
    layout: ImageLayout,
    allocation: Mutex<Allocation>,
    failed: AtomicBool,
}

impl ImageBuilder {
    /// Starts a file at `path` (which must not exist) with the geometry of
    /// `opts` and the parent of `kind`. The header section (sequence 1 and
    /// 2, LogGuid 0), metadata and BAT regions are written now; the file
    /// appears at `path` only in [`ImageBuilder::finish`].
    ///
    /// # Errors
    /// `InvalidArgument` with a [`CreateError`] for invalid options, an
    /// existing `path` or an unstorable parent path; `Io` on write failure.
    pub fn create(path: &Path, opts: &CreateOptions, kind: BuilderKind) -> Result<ImageBuilder> {
        Self::create_for(path, path, opts, kind)
    }

    /// As [`ImageBuilder::create`], for a file that the caller will move to
    /// `final_path` after [`ImageBuilder::finish`] (e.g. out of a staging
    /// directory): a differencing file's `relative_path` is computed from
    /// the directory of `final_path`, so it stays valid after the move.
    ///
    /// # Errors
    /// As [`ImageBuilder::create`].
    pub fn create_for(
        path: &Path,
        final_path: &Path,
        opts: &CreateOptions,
        kind: BuilderKind,
    ) -> Result<ImageBuilder> {
        let operation = "create";
        let prelude = Prelude::new(path, final_path, opts, &kind)?;
        let staged = StagedFile::create(path)?;
        let file = staged.file();
        for (offset, bytes) in prelude.pieces() {
            file.write_all_at(bytes, offset).map_err(|e| {
                VhdxError::io_at(e, offset)
                    .with_path(staged.temp_path())
                    .with_operation(operation)
            })?;
        }
        let layout = prelude.layout;
        let next_offset = layout.first_block_offset();
        file.set_len(next_offset).map_err(|e| {
            VhdxError::new(e)
                .with_path(staged.temp_path())
                .with_operation(operation)
        })?;
        let bat_entries = usize::try_from(layout.bat_entries).map_err(|_| {
            CreateError::BatTooLarge {
                virtual_size: opts.virtual_size,
                block_size: opts.block_size,
            }
            .at(path, operation)
        })?;
        let mut bat = vec![0u64; bat_entries];
        for chunk in 0..layout.sector_bitmap_blocks {
            let index = format::sector_bitmap_bat_index(chunk, layout.chunk_ratio);
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| bat.get_mut(i)) {
                *slot = BatEntry::new(
                    sector_bitmap_state::PRESENT,
                    layout.sector_bitmap_offset(chunk),
                )
                .0;
            }
        }
        Ok(ImageBuilder {
            staged,
            layout,
            allocation: Mutex::new(Allocation { next_offset, bat }),
            failed: AtomicBool::new(false),
        })
    }

    /// Payload blocks of the disk (`ceil(virtual_size / block_size)`).
    pub fn data_blocks(&self) -> u64 {
        self.layout.data_blocks
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.layout.block_size
    }

    /// Claims the BAT entry of `block`, setting it to `entry(offset)` where
    /// `offset` is a newly allocated block offset when `allocate` is true.
    fn claim(&self, block: u64, allocate: bool) -> std::result::Result<u64, BuilderError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(BuilderError::EarlierWriteFailed);
        }
        let data_blocks = self.layout.data_blocks;
        if block >= data_blocks {
            return Err(BuilderError::BlockOutOfRange { block, data_blocks });
        }
        let index = usize::try_from(format::payload_bat_index(block, self.layout.chunk_ratio))
            .map_err(|_| BuilderError::BlockOutOfRange { block, data_blocks })?;
        let mut allocation = self
            .allocation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next_offset = allocation.next_offset;
        let slot = allocation
            .bat
            .get_mut(index)
            .ok_or(BuilderError::BlockOutOfRange { block, data_blocks })?;
        if *slot != 0 {
            return Err(BuilderError::BlockAlreadyWritten { block });
        }
        if !allocate {
            *slot = BatEntry::new(payload_state::ZERO, 0).0;
            return Ok(0);
        }
        let end = next_offset
            .checked_add(u64::from(self.layout.block_size))
            .ok_or(BuilderError::FileTooLarge { block })?;
        *slot = BatEntry::new(payload_state::FULLY_PRESENT, next_offset).0;
        allocation.next_offset = end;
        Ok(next_offset)
    }

    /// Stores `data` as payload block `block` (PAYLOAD_BLOCK_FULLY_PRESENT).
    /// `data.len()` must be the block size, or for the last block of a disk
    /// whose size is not a block multiple, the bytes up to the virtual size
    /// (the rest of the block reads as zeros). Safe to call from many
    /// threads at once for different blocks.
    ///
    /// # Errors
    /// `InvalidArgument` with a [`BuilderError`] for an out-of-range block,
    /// a second write of a block, or a wrong length; `Io` if the positioned
    /// write fails (the builder then refuses further work).
    pub fn write_block(&self, block: u64, data: &[u8]) -> Result<()> {
        let operation = "write block";
        let path = self.staged.final_path();
        let expected = self.layout.block_length(block);
        let length = data.len();
        let length64 = u64::try_from(length).unwrap_or(u64::MAX);
        if block < self.layout.data_blocks
            && length64 != expected
            && length64 != u64::from(self.layout.block_size)
        {
            return Err(BuilderError::BlockLength {
                block,
                length,
                expected,
            }
            .at(path, operation));
        }
        let offset = self.claim(block, true).map_err(|e| e.at(path, operation))?;
        self.staged.file().write_all_at(data, offset).map_err(|e| {
            self.failed.store(true, Ordering::Release);
            VhdxError::io_at(e, offset)
                .with_path(self.staged.temp_path())
                .with_operation(operation)
        })
    }

    /// Marks `block` PAYLOAD_BLOCK_ZERO: it reads as zeros, also in a
    /// differencing file (where NOT_PRESENT would read the parent).
    ///
    /// # Errors
    /// `InvalidArgument` with a [`BuilderError`] for an out-of-range or
    /// already written block.
    pub fn zero_block(&self, block: u64) -> Result<()> {
        self.claim(block, false)
            .map(drop)
            .map_err(|e| e.at(self.staged.final_path(), "zero block"))
    }

    /// Writes the BAT (skipping all-zero MiB, which stay sparse), sets the
    /// file length to the end of the last block, fsyncs, renames the file
    /// to its path and fsyncs the directory. Returns the file size in bytes.
    ///
    /// # Errors
    /// `Io` if a block write failed earlier or any step fails; nothing is
    /// left at the target path then.
    pub fn finish(self) -> Result<u64> {
        let operation = "finish";
        if self.failed.load(Ordering::Acquire) {
            return Err(BuilderError::EarlierWriteFailed.at(self.staged.final_path(), operation));
        }
        let allocation = self
            .allocation
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let file = self.staged.file();
        let temp = self.staged.temp_path();
        let entries_per_mib = usize::try_from(MIB / 8).unwrap_or(usize::MAX);
        let mut offset = BAT_OFFSET;
        for chunk in allocation.bat.chunks(entries_per_mib) {
            if chunk.iter().any(|&e| e != 0) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|e| e.to_le_bytes()).collect();
                file.write_all_at(&bytes, offset).map_err(|e| {
                    VhdxError::io_at(e, offset)
                        .with_path(temp)
                        .with_operation(operation)
                })?;
            }
            offset = offset.saturating_add(MIB);
        }
        file.set_len(allocation.next_offset)
            .map_err(|e| VhdxError::new(e).with_path(temp).with_operation(operation))?;
        self.staged.commit()?;
        Ok(allocation.next_offset)
    }
}

/// Everything a new file holds before its BAT (MS-VHDX §2.2, §2.6): the
/// File Type Identifier, both headers (sequence 1 and 2, LogGuid 0), both
/// region tables and the metadata region, for the geometry of validated
/// options. Shared by [`ImageBuilder`] and
/// [`SequentialImage`](crate::stream::SequentialImage).
#[derive(Debug)]
pub(crate) struct Prelude {
    pub(crate) layout: ImageLayout,
    identifier: Vec<u8>,
    first: Vec<u8>,
    second: Vec<u8>,
    region_table: Vec<u8>,
    metadata: Vec<u8>,
    /// Differencing file: the locator's `relative_path` as stored.
    pub(crate) parent_relative_path: Option<String>,
}

impl Prelude {
    /// Validates `opts` and serialises the structures of a file that will
    /// live at `final_path` (a differencing file's `relative_path` is
    /// computed from there); `path` names the file in errors.
    ///
    /// # Errors
    /// `InvalidArgument` with a [`CreateError`] for invalid options or an
    /// unstorable parent path.
    pub(crate) fn new(
        path: &Path,
        final_path: &Path,
        opts: &CreateOptions,
        kind: &BuilderKind,
    ) -> Result<Prelude> {
        let operation = "create";
        let has_parent = matches!(kind, BuilderKind::Differencing { .. });
        let layout = opts
            .validate(has_parent)
            .map_err(|e| e.at(path, operation))?;
        let (locator, parent_relative_path) = match kind {
            BuilderKind::Dynamic => (None, None),
            BuilderKind::Differencing {
                parent_path,
                parent_data_write_guid,
            } => {
                let (bytes, relative) =
                    locator_bytes(path, final_path, parent_path, *parent_data_write_guid)?;
                (Some(bytes), Some(relative))
            }
        };
        let metadata =
            layout::metadata_region_bytes(&layout, opts.virtual_disk_id, locator.as_deref())
                .ok_or_else(|| {
                    CreateError::MetadataTooLarge {
                        length: locator.as_ref().map_or(0, Vec::len),
                    }
                    .at(path, operation)
                })?;
        let identifier = layout::file_identifier_bytes(&opts.creator).ok_or_else(|| {
            CreateError::CreatorTooLong {
                units: opts.creator.encode_utf16().count(),
            }
            .at(path, operation)
        })?;
        let first = Header {
            sequence_number: 1,
            file_write_guid: opts.file_write_guid.unwrap_or_else(Uuid::new_v4),
            data_write_guid: opts.data_write_guid.unwrap_or_else(Uuid::new_v4),
            log_guid: Uuid::nil(),
            log_version: 0,
            version: 1,
            log_length: LOG_LENGTH,
            log_offset: LOG_OFFSET,
        };
        let second = Header {
            sequence_number: 2,
            ..first.clone()
        };
        let region_table = region::table_to_bytes(&layout::region_entries(&layout));
        Ok(Prelude {
            layout,
            identifier,
            first: first.to_bytes(),
            second: second.to_bytes(),
            region_table,
            metadata,
            parent_relative_path,
        })
    }

    /// `(file offset, bytes)` of every structure, in ascending offset; the
    /// bytes between them (and up to the BAT) are zero.
    pub(crate) fn pieces(&self) -> [(u64, &[u8]); 6] {
        [
            (0, &self.identifier),
            (HEADER1_OFFSET, &self.first),
            (HEADER2_OFFSET, &self.second),
            (REGION_TABLE1_OFFSET, &self.region_table),
            (REGION_TABLE2_OFFSET, &self.region_table),
            (METADATA_OFFSET, &self.metadata),
        ]
    }
}

/// The parent locator item of a child that will live at `final_path` whose
/// parent is `parent_path` with DataWriteGuid `linkage` (MS-VHDX
/// §2.6.2.6.3), with the `relative_path` it stores. `child_path` names the
/// file in errors.
fn locator_bytes(
    child_path: &Path,
    final_path: &Path,
    parent_path: &Path,
    linkage: Uuid,
) -> Result<(Vec<u8>, String)> {
    let operation = "create";
    let io = |e| {
        VhdxError::new(e)
            .with_path(child_path)
            .with_operation(operation)
    };
    let parent = locator_path::absolute(parent_path).map_err(io)?;
    let child_dir = match final_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let child_dir = locator_path::absolute(child_dir).map_err(io)?;
    let not_unicode = || {
        CreateError::PathNotUnicode {
            path: parent.clone(),
        }
        .at(child_path, operation)
    };
    let relative =
        locator_path::relative_win32_path(&child_dir, &parent).ok_or_else(not_unicode)?;
    let absolute = locator_path::absolute_win32_path(&parent).ok_or_else(not_unicode)?;
    let linkage = format::guid_braced(linkage);
    let entries = [
        ("parent_linkage", linkage.as_str()),
        ("relative_path", relative.as_str()),
        ("absolute_win32_path", absolute.as_str()),
    ];
    // Key and value lengths are u16 byte counts (MS-VHDX §2.6.2.6.2).
    if let Some(long) = entries
        .iter()
        .find(|(_, v)| v.encode_utf16().count() > 0x7FFF)
    {
        return Err(CreateError::MetadataTooLarge {
            length: long.1.len(),
        }
        .at(child_path, operation));
    }
    Ok((locator::locator_to_bytes(&entries), relative.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB32: u32 = 1 << 20;
    const MIBU: usize = 1 << 20;

    fn builder(dir: &Path, size: u64) -> ImageBuilder {
        let opts = CreateOptions {
            block_size: MIB32,
            ..CreateOptions::new(size)
        };
        ImageBuilder::create(&dir.join("out.vhdx"), &opts, BuilderKind::Dynamic).unwrap()
    }

    fn detail(err: &VhdxError) -> Option<BuilderError> {
        match err.detail() {
            crate::error::ErrorDetail::Other(e) => e.downcast_ref::<BuilderError>().cloned(),
            _ => None,
        }
    }

    #[test]
    fn second_write_of_a_block_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 4 * MIB);
        b.write_block(1, &vec![1; MIBU]).unwrap();

        let err = b.write_block(1, &vec![2; MIBU]).unwrap_err();

        assert_eq!(
            detail(&err),
            Some(BuilderError::BlockAlreadyWritten { block: 1 })
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn zeroing_a_written_block_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 4 * MIB);
        b.write_block(0, &vec![1; MIBU]).unwrap();

        let err = b.zero_block(0).unwrap_err();

        assert_eq!(
            detail(&err),
            Some(BuilderError::BlockAlreadyWritten { block: 0 })
        );
    }

    #[test]
    fn block_past_the_last_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 4 * MIB);

        let err = b.write_block(4, &vec![1; MIBU]).unwrap_err();

        assert_eq!(
            detail(&err),
            Some(BuilderError::BlockOutOfRange {
                block: 4,
                data_blocks: 4
            })
        );
    }

    #[test]
    fn short_data_for_a_whole_block_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 4 * MIB);

        let err = b.write_block(0, &[1; 512]).unwrap_err();

        assert_eq!(
            detail(&err),
            Some(BuilderError::BlockLength {
                block: 0,
                length: 512,
                expected: MIB
            })
        );
    }

    #[test]
    fn nothing_appears_at_the_path_before_finish() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 4 * MIB);
        b.write_block(0, &vec![1; MIBU]).unwrap();

        let visible_before = dir.path().join("out.vhdx").exists();
        drop(b);

        assert!(!visible_before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn finish_returns_header_regions_plus_written_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let b = builder(dir.path(), 4 * MIB);
        b.write_block(2, &vec![1; MIBU]).unwrap();
        b.zero_block(3).unwrap();

        let size = b.finish().unwrap();

        // 1 MiB header section, log, metadata, 1 MiB BAT, one block.
        assert_eq!(size, 5 * MIB);
        assert_eq!(
            std::fs::metadata(dir.path().join("out.vhdx"))
                .unwrap()
                .len(),
            5 * MIB
        );
    }
}
