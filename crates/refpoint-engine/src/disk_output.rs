//! The consumers of the segment pipeline: [`DiskOutput`] writes one disk's
//! output VHDX and its block-digest sidecar in one pass; [`Comparison`]
//! finds the blocks a tracking fallback must store.
//!
//! # Digest sidecar `<output file>.digests`
//!
//! The binary SHA-256 of every block of the virtual disk (output block
//! size, the last block possibly short), 32 bytes per block in block order,
//! no header: `virtual_size.div_ceil(block_size) × 32` bytes. Blocks the
//! output does not hold carry the zero digest (dynamic output) or the base
//! export's digest (differencing output). The file is exactly what the
//! content digest hashes, so **the sidecar's SHA-256 is the content
//! digest**, and it streams to disk as the output is written: memory does
//! not grow with the disk size.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use refpoint_vhdx::{BuilderKind, CreateOptions, FinishedImage, SequentialImage, VhdxError};
use sha2::{Digest, Sha256};

use crate::base::{DigestReader, ParentRef};
use crate::digest::Sha256Digest;
use crate::error::EngineError;
use crate::execute::TOOL_NAME;
use crate::identity::export_file_write_guid;
use crate::output::{OutputError, file_err};
use crate::pipeline::{BlockDigester, Consume, Segment};
use crate::plan::DiskPlan;
use crate::writeback::Writeback;

/// Suffix of a digest sidecar's file name.
pub const DIGESTS_SUFFIX: &str = ".digests";

/// Block counters of one disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Blocks stored with data.
    pub(crate) stored: u64,
    /// Bytes of those blocks.
    pub(crate) stored_bytes: u64,
    /// Planned blocks read as all-zero (holes in the output).
    pub(crate) zero: u64,
    /// Fallback: blocks read whose digest equals the base's (not stored).
    pub(crate) unchanged: u64,
}

/// Writes 32-byte digests to a sidecar file, hashing them as it goes.
#[derive(Debug)]
struct DigestSidecar {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    count: u64,
}

impl DigestSidecar {
    fn create(path: &Path) -> Result<DigestSidecar, OutputError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(file_err("create digests file", path))?;
        Ok(DigestSidecar {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            count: 0,
        })
    }

    fn push(&mut self, digest: &Sha256Digest) -> Result<(), OutputError> {
        self.hasher.update(digest);
        self.count += 1;
        self.out
            .write_all(digest)
            .map_err(file_err("write digests file", &self.path))
    }

    /// Flushes and fsyncs; returns (size, SHA-256 = content digest).
    fn finish(self) -> Result<(u64, Sha256Digest), OutputError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| file_err("write digests file", &self.path)(e.into_error()))?;
        file.sync_all().map_err(file_err("fsync", &self.path))?;
        Ok((self.count * 32, self.hasher.finalize().into()))
    }
}

/// What [`DiskOutput::finish`] returns.
#[derive(Debug)]
pub(crate) struct FinishedDisk {
    /// Output size, bytes, and SHA-256.
    pub(crate) size: u64,
    pub(crate) sha256: Sha256Digest,
    /// Sidecar size, bytes.
    pub(crate) digests_size: u64,
    /// The content digest (= the sidecar's SHA-256).
    pub(crate) content_digest: Sha256Digest,
    /// Differencing output: the locator's `relative_path`.
    pub(crate) parent_relative_path: Option<String>,
    pub(crate) counts: Counts,
}

/// One disk's output VHDX and digest sidecar, written front to back.
#[derive(Debug)]
pub(crate) struct DiskOutput<'a> {
    disk: &'a DiskPlan,
    /// Differencing output: the base and its digests, read along.
    parent: Option<(&'a ParentRef, DigestReader<'a>)>,
    path: PathBuf,
    image: SequentialImage,
    writeback: Writeback,
    digester: BlockDigester,
    sidecar: DigestSidecar,
    /// Next block whose digest the sidecar needs.
    next_digest: u64,
    pub(crate) counts: Counts,
}

impl<'a> DiskOutput<'a> {
    /// Creates the output of `disk` inside `vm_folder` holding `planned`
    /// (ascending block indices); a differencing output's relative parent
    /// path is computed from `final_folder`, where the commit moves it.
    ///
    /// # Errors
    /// [`OutputError::Create`], [`OutputError::File`];
    /// [`crate::BaseError::DigestsInvalid`] when the base's digests cannot
    /// be opened.
    pub(crate) fn create(
        disk: &'a DiskPlan,
        planned: Vec<u64>,
        vm_folder: &Path,
        final_folder: &Path,
    ) -> Result<DiskOutput<'a>, EngineError> {
        let relative = disk.output_relative_path();
        let path = vm_folder.join(&relative);
        let final_path = final_folder.join(&relative);
        let g = &disk.geometry;
        let opts = CreateOptions {
            virtual_size: g.virtual_size,
            block_size: g.block_size,
            logical_sector_size: g.logical_sector_size,
            physical_sector_size: g.physical_sector_size,
            virtual_disk_id: g.virtual_disk_id,
            data_write_guid: Some(disk.output_data_write_guid),
            file_write_guid: Some(export_file_write_guid(disk.output_data_write_guid)),
            creator: format!("{TOOL_NAME} {}", env!("CARGO_PKG_VERSION")),
        };
        let parent = disk.mode.parent();
        let kind = match parent {
            Some(parent) => BuilderKind::Differencing {
                parent_path: parent.path.clone(),
                parent_data_write_guid: parent.data_write_guid,
            },
            None => BuilderKind::Dynamic,
        };
        let image =
            SequentialImage::create(&path, &final_path, &opts, kind, planned).map_err(|cause| {
                OutputError::Create {
                    disk: disk.instance_id.clone(),
                    path: path.clone(),
                    cause: Box::new(cause),
                }
            })?;
        let sidecar = DigestSidecar::create(&vm_folder.join(disk.digests_relative_path()))?;
        let parent = match parent {
            Some(p) => Some((p, p.digest_reader(&disk.instance_id)?)),
            None => None,
        };
        Ok(DiskOutput {
            disk,
            parent,
            path,
            image,
            writeback: Writeback::default(),
            digester: BlockDigester::default(),
            sidecar,
            next_digest: 0,
            counts: Counts::default(),
        })
    }

    /// Writes the digests of the blocks before `block` that the output
    /// does not hold: the zero digest, or the base export's.
    fn fill_digests_to(&mut self, block: u64) -> Result<(), EngineError> {
        while self.next_digest < block {
            let i = self.next_digest;
            let digest = match &mut self.parent {
                Some((p, reader)) => reader
                    .get(i)
                    .map_err(|reason| p.digests_invalid(&self.disk.instance_id, reason))?,
                None => self.disk.zeros.for_len(self.disk.geometry.block_len(i)),
            };
            self.sidecar.push(&digest)?;
            self.next_digest += 1;
        }
        Ok(())
    }

    fn write_error(&self, block: u64, cause: VhdxError) -> OutputError {
        OutputError::WriteBlock {
            disk: self.disk.instance_id.clone(),
            path: self.path.clone(),
            block,
            offset: block.saturating_mul(u64::from(self.disk.geometry.block_size)),
            cause: Box::new(cause),
        }
    }

    /// Completes the sidecar, finishes (fsyncs) the image and drops both
    /// from the page cache.
    ///
    /// # Errors
    /// [`OutputError::Finish`], [`OutputError::File`].
    pub(crate) fn finish(mut self) -> Result<FinishedDisk, EngineError> {
        self.fill_digests_to(self.disk.geometry.block_count())?;
        if let Some((p, reader)) = self.parent.take() {
            let read = reader.finish();
            if read != p.content_digest {
                return Err(p
                    .digests_invalid(
                        &self.disk.instance_id,
                        format!(
                            "the base's block digests changed during the export (content digest {}, checked at plan time {})",
                            crate::digest::to_hex(&read),
                            crate::digest::to_hex(&p.content_digest)
                        ),
                    )
                    .into());
            }
        }
        let parent_relative_path = self.image.parent_relative_path().map(str::to_owned);
        let FinishedImage { file, size, sha256 } =
            self.image.finish().map_err(|cause| OutputError::Finish {
                disk: self.disk.instance_id.clone(),
                path: self.path.clone(),
                cause: Box::new(cause),
            })?;
        self.writeback.finish(&file);
        let (digests_size, content_digest) = self.sidecar.finish()?;
        Ok(FinishedDisk {
            size,
            sha256,
            digests_size,
            content_digest,
            parent_relative_path,
            counts: self.counts,
        })
    }
}

impl<'p> Consume<'p> for DiskOutput<'_> {
    fn consume(&mut self, segment: Segment<'p>) -> Result<(), EngineError> {
        self.image
            .write_payload(segment.block, segment.offset_in_block, segment.data())
            .map_err(|cause| self.write_error(segment.block, cause))?;
        self.writeback
            .advance(self.image.file(), self.image.position());
        if let Some(digest) = self.digester.add(&segment) {
            self.fill_digests_to(segment.block)?;
            if let Some((p, reader)) = &mut self.parent {
                // Keep the base's reader in step (it hashes what it passes).
                reader
                    .get(segment.block)
                    .map_err(|reason| p.digests_invalid(&self.disk.instance_id, reason))?;
            }
            self.sidecar.push(&digest)?;
            self.next_digest = segment.block + 1;
            if digest == self.disk.zeros.for_len(segment.block_len) {
                self.counts.zero += 1;
            } else {
                self.counts.stored += 1;
                self.counts.stored_bytes += segment.block_len;
            }
        }
        Ok(())
    }
}

/// The tracking fallback's first pass over a disk: which planned blocks
/// differ from the base export's digests (positions in the plan).
#[derive(Debug)]
pub(crate) struct Comparison<'a> {
    parent: &'a ParentRef,
    base: DigestReader<'a>,
    disk: String,
    digester: BlockDigester,
    /// Positions of the blocks whose digest differs from the base's.
    pub(crate) differing: Vec<usize>,
    /// Blocks whose digest equals the base's.
    pub(crate) unchanged: u64,
}

impl<'a> Comparison<'a> {
    /// # Errors
    /// [`crate::BaseError::DigestsInvalid`] when the base's digests cannot
    /// be opened.
    pub(crate) fn new(
        disk: &DiskPlan,
        parent: &'a ParentRef,
    ) -> Result<Comparison<'a>, crate::BaseError> {
        Ok(Comparison {
            parent,
            base: parent.digest_reader(&disk.instance_id)?,
            disk: disk.instance_id.clone(),
            digester: BlockDigester::default(),
            differing: Vec::new(),
            unchanged: 0,
        })
    }
}

impl<'p> Consume<'p> for Comparison<'_> {
    fn consume(&mut self, segment: Segment<'p>) -> Result<(), EngineError> {
        if let Some(digest) = self.digester.add(&segment) {
            let base = self
                .base
                .get(segment.block)
                .map_err(|reason| self.parent.digests_invalid(&self.disk, reason))?;
            if base == digest {
                self.unchanged += 1;
            } else {
                self.differing.push(segment.position);
            }
        }
        Ok(())
    }
}
