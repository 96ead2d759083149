//! One-pass output of an export: a new dynamic or differencing VHDX whose
//! layout is fixed before its first byte, written strictly front to back
//! and hashed (SHA-256, in file order) while it is written. It is never read
//! back: the file's SHA-256 is known when [`SequentialImage::finish`] returns.
//!
//! Layout (the `create::layout` prelude, then the planned payload):
//!
//! ```text
//! 0x000000  header section, log (empty), metadata region
//! 0x300000  BAT region: every planned block FULLY_PRESENT at its slot
//! ....      differencing only: one zeroed sector bitmap block per chunk
//! ....      slot k = payload block planned[k], block_size bytes each,
//!           in ascending block order
//! ```
//!
//! Because the slot of every planned block is known when the file is
//! created, the BAT is written before the payload and the whole file is one
//! sequential stream. Any 64 KiB-aligned run of zeros (inside the prelude, a
//! payload block, the tail of a short last block) is not written: it stays a
//! sparse hole of the new file, reads as zeros, costs no disk space, and is
//! hashed as zeros. A planned block whose data is all zero therefore costs
//! nothing on disk and still reads as zeros — also in a differencing file,
//! where it is FULLY_PRESENT and so does not read the parent.
//!
//! The file is written at `path` directly (created with `O_EXCL`): it is
//! complete only after `finish`, and making it visible atomically is the
//! caller's job (refpoint's export engine writes it inside a staging
//! directory that the commit renames).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::builder::{BuilderKind, Prelude};
use crate::create::CreateOptions;
use crate::create::layout::{BAT_OFFSET, ImageLayout};
use crate::error::{ErrorKind, Result, VhdxError};
use crate::format::{self, BatEntry, MIB, payload_state, sector_bitmap_state};

/// Granularity of hole detection, bytes: zero runs of this size, aligned to
/// it in the file, are left unwritten.
pub const HOLE_GRANULE: u64 = 64 * 1024;

/// A request a [`SequentialImage`] refuses: the planned block list or the
/// order of the payload (MS-VHDX §2.5; the layout rule of this module).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Planned blocks must be strictly ascending.
    #[error(
        "planned block {block} follows block {previous}: planned blocks must be strictly ascending"
    )]
    PlanNotAscending {
        /// The block before it.
        previous: u64,
        /// The offending block.
        block: u64,
    },
    /// A planned block index is not below the number of payload blocks.
    #[error("planned block {block} is out of range: the disk has {data_blocks} payload blocks")]
    BlockOutOfRange {
        /// The offending block.
        block: u64,
        /// Payload blocks of the disk.
        data_blocks: u64,
    },
    /// The planned payload does not fit a 64-bit file offset.
    #[error("{planned} planned blocks of {block_size} bytes overflow a 64-bit file offset")]
    FileTooLarge {
        /// Planned blocks.
        planned: usize,
        /// Block size, bytes.
        block_size: u32,
    },
    /// Payload must arrive in file order: the next planned block, from the
    /// byte after the last one written.
    #[error(
        "payload out of order: got block {block} at byte {offset_in_block}, expected block {expected_block} at byte {expected_offset}"
    )]
    OutOfOrder {
        /// Block given.
        block: u64,
        /// Offset inside the block given, bytes.
        offset_in_block: u64,
        /// Block expected next (`u64::MAX` when every block is complete).
        expected_block: u64,
        /// Offset expected next inside it, bytes.
        expected_offset: u64,
    },
    /// Data runs past the block's bytes inside the virtual disk.
    #[error(
        "block {block}: {length} bytes at byte {offset_in_block} run past its {block_length} bytes"
    )]
    PastBlockEnd {
        /// Block given.
        block: u64,
        /// Offset inside the block, bytes.
        offset_in_block: u64,
        /// Bytes given.
        length: usize,
        /// Bytes of the block inside the virtual disk.
        block_length: u64,
    },
    /// `finish` before every planned block was written whole.
    #[error("{written} of {planned} planned blocks were written: the image is incomplete")]
    Incomplete {
        /// Blocks written whole.
        written: usize,
        /// Blocks planned.
        planned: usize,
    },
    /// A previous write failed; the file is incomplete.
    #[error("an earlier write failed; the image is incomplete")]
    EarlierWriteFailed,
}

impl StreamError {
    fn at(self, path: &Path, operation: &'static str) -> VhdxError {
        let kind = match self {
            StreamError::EarlierWriteFailed => ErrorKind::Io,
            _ => ErrorKind::InvalidArgument,
        };
        VhdxError::other(kind, self)
            .with_path(path)
            .with_operation(operation)
    }
}

/// What [`SequentialImage::finish`] returns.
#[derive(Debug)]
pub struct FinishedImage {
    /// The file, fsynced (for the caller's cache advice).
    pub file: File,
    /// File length, bytes.
    pub size: u64,
    /// SHA-256 of the whole file as `sha256sum` computes it.
    pub sha256: [u8; 32],
}

/// A VHDX being written front to back (module docs). Not `Sync`: one
/// writer per file, fed in file order.
#[derive(Debug)]
pub struct SequentialImage {
    file: File,
    path: PathBuf,
    layout: ImageLayout,
    parent_relative_path: Option<String>,
    planned: Vec<u64>,
    /// Index into `planned` of the block being written.
    next: usize,
    /// Bytes of that block written so far.
    in_block: u64,
    /// File offset of the next byte: bytes produced (written or holes).
    position: u64,
    hasher: Sha256,
    failed: bool,
}

impl SequentialImage {
    /// Creates `path` (which must not exist) for a file that will live at
    /// `final_path` (a differencing file's `relative_path` is computed from
    /// there) with the geometry of `opts`, the parent of `kind` and the
    /// payload blocks `planned` (strictly ascending block indices), and
    /// writes everything before the payload.
    ///
    /// # Errors
    /// `InvalidArgument` with a [`crate::create::CreateError`] for invalid
    /// options or an existing `path`, or a [`StreamError`] for a bad plan;
    /// `Io` on write failure (the error names the file and offset).
    pub fn create(
        path: &Path,
        final_path: &Path,
        opts: &CreateOptions,
        kind: BuilderKind,
        planned: Vec<u64>,
    ) -> Result<SequentialImage> {
        let operation = "create";
        let prelude = Prelude::new(path, final_path, opts, &kind)?;
        let layout = prelude.layout.clone();
        check_plan(&planned, &layout).map_err(|e| e.at(path, operation))?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| VhdxError::new(e).with_path(path).with_operation(operation))?;
        let mut image = SequentialImage {
            file,
            path: path.to_path_buf(),
            layout,
            parent_relative_path: prelude.parent_relative_path.clone(),
            planned,
            next: 0,
            in_block: 0,
            position: 0,
            hasher: Sha256::new(),
            failed: false,
        };
        for (offset, bytes) in prelude.pieces() {
            image.emit_zeros(offset.saturating_sub(image.position));
            image.emit(bytes)?;
        }
        image.emit_zeros(BAT_OFFSET.saturating_sub(image.position));
        image.emit_bat()?;
        let first = image.layout.first_block_offset();
        image.emit_zeros(first.saturating_sub(image.position));
        Ok(image)
    }

    /// The open file (for the caller's writeback and cache advice).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes produced so far (written or left as holes) = the file offset
    /// of the next byte.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Differencing file: the parent locator's `relative_path` as stored
    /// (MS-VHDX §2.6.2.6.3, `\`-separated, from the final path's directory).
    pub fn parent_relative_path(&self) -> Option<&str> {
        self.parent_relative_path.as_deref()
    }

    /// The block the next payload byte belongs to, with the offset inside
    /// it; `None` once every planned block is complete.
    pub fn next_payload(&self) -> Option<(u64, u64)> {
        self.planned.get(self.next).map(|b| (*b, self.in_block))
    }

    /// Appends `data` to the payload: bytes `[offset_in_block, +len)` of
    /// planned block `block`, which must be exactly what comes next in file
    /// order (module docs). When the block's last byte inside the virtual
    /// disk is written, the rest of its slot (a short last block) is added
    /// as a hole.
    ///
    /// # Errors
    /// `InvalidArgument` with a [`StreamError`] for out-of-order or
    /// oversized data; `Io` if a write fails (the writer then refuses
    /// further work).
    pub fn write_payload(&mut self, block: u64, offset_in_block: u64, data: &[u8]) -> Result<()> {
        let operation = "write block";
        if self.failed {
            return Err(StreamError::EarlierWriteFailed.at(&self.path, operation));
        }
        let (expected_block, expected_offset) = self.next_payload().unwrap_or((u64::MAX, 0));
        if block != expected_block || offset_in_block != expected_offset {
            return Err(StreamError::OutOfOrder {
                block,
                offset_in_block,
                expected_block,
                expected_offset,
            }
            .at(&self.path, operation));
        }
        let block_length = self.layout.block_length(block);
        let end = offset_in_block.saturating_add(data.len() as u64);
        if end > block_length {
            return Err(StreamError::PastBlockEnd {
                block,
                offset_in_block,
                length: data.len(),
                block_length,
            }
            .at(&self.path, operation));
        }
        self.emit(data)?;
        self.in_block = end;
        if end == block_length {
            self.emit_zeros(u64::from(self.layout.block_size).saturating_sub(block_length));
            self.next += 1;
            self.in_block = 0;
        }
        Ok(())
    }

    /// Sets the file length, fsyncs the file and returns it with its size
    /// and SHA-256.
    ///
    /// # Errors
    /// `InvalidArgument` with [`StreamError::Incomplete`] before every
    /// planned block was written; `Io` if a write failed or a step fails.
    pub fn finish(self) -> Result<FinishedImage> {
        let operation = "finish";
        if self.failed {
            return Err(StreamError::EarlierWriteFailed.at(&self.path, operation));
        }
        if self.next < self.planned.len() {
            return Err(StreamError::Incomplete {
                written: self.next,
                planned: self.planned.len(),
            }
            .at(&self.path, operation));
        }
        let io = |e| {
            VhdxError::new(e)
                .with_path(&self.path)
                .with_operation(operation)
        };
        self.file.set_len(self.position).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        Ok(FinishedImage {
            size: self.position,
            sha256: self.hasher.finalize().into(),
            file: self.file,
        })
    }

    /// Hashes `bytes` and writes them at the current position, leaving
    /// aligned all-zero granules unwritten.
    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        let start = self.position;
        let mut run: Option<(usize, usize)> = None;
        let mut at = 0usize;
        while at < bytes.len() {
            let file_offset = start + at as u64;
            let to_boundary = HOLE_GRANULE - file_offset % HOLE_GRANULE;
            let len = usize::try_from(to_boundary)
                .unwrap_or(usize::MAX)
                .min(bytes.len() - at);
            let granule = bytes.get(at..at + len).unwrap_or_default();
            if is_zero(granule) {
                if let Some((from, to)) = run.take() {
                    self.write_run(bytes, from, to, start)?;
                }
            } else {
                run = match run {
                    Some((from, _)) => Some((from, at + len)),
                    None => Some((at, at + len)),
                };
            }
            at += len;
        }
        if let Some((from, to)) = run {
            self.write_run(bytes, from, to, start)?;
        }
        self.position = start + bytes.len() as u64;
        Ok(())
    }

    fn write_run(&mut self, bytes: &[u8], from: usize, to: usize, start: u64) -> Result<()> {
        let offset = start + from as u64;
        let data = bytes.get(from..to).unwrap_or_default();
        self.file.write_all_at(data, offset).map_err(|e| {
            self.failed = true;
            VhdxError::io_at(e, offset)
                .with_path(&self.path)
                .with_operation("write")
        })
    }

    /// Hashes `len` zero bytes and advances past them (a hole).
    fn emit_zeros(&mut self, len: u64) {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left).map_or(ZEROS.len(), |l| l.min(ZEROS.len()));
            self.hasher.update(ZEROS.get(..n).unwrap_or(&ZEROS));
            left -= n as u64;
        }
        self.position = self.position.saturating_add(len);
    }

    /// The BAT region, 1 MiB at a time, generated from the plan: planned
    /// blocks FULLY_PRESENT at their slots, a differencing file's sector
    /// bitmap entries PRESENT (MS-VHDX §2.5).
    fn emit_bat(&mut self) -> Result<()> {
        let per_mib = MIB / 8;
        let layout = self.layout.clone();
        let first = layout.first_block_offset();
        let bs = u64::from(layout.block_size);
        let mut slot = 0usize;
        let mut chunk_bytes = vec![0u8; usize::try_from(MIB).unwrap_or(1 << 20)];
        let chunks = layout.bat_length / MIB;
        for c in 0..chunks {
            chunk_bytes.fill(0);
            let lo = c * per_mib;
            let hi = lo + per_mib;
            let mut put = |index: u64, entry: BatEntry| {
                let at = usize::try_from((index - lo) * 8).unwrap_or(usize::MAX);
                if let Some(dst) = chunk_bytes.get_mut(at..at + 8) {
                    dst.copy_from_slice(&entry.0.to_le_bytes());
                }
            };
            while let Some(&block) = self.planned.get(slot) {
                let index = format::payload_bat_index(block, layout.chunk_ratio);
                if index >= hi {
                    break;
                }
                let offset = first + slot as u64 * bs;
                put(index, BatEntry::new(payload_state::FULLY_PRESENT, offset));
                slot += 1;
            }
            if layout.has_parent {
                // Sector bitmap entry of chunk j sits at index (j+1)·(ratio+1)−1.
                let stride = layout.chunk_ratio + 1;
                let mut j = (lo + 1).div_ceil(stride).saturating_sub(1);
                while j < layout.sector_bitmap_blocks {
                    let index = format::sector_bitmap_bat_index(j, layout.chunk_ratio);
                    if index >= hi {
                        break;
                    }
                    if index >= lo {
                        put(
                            index,
                            BatEntry::new(
                                sector_bitmap_state::PRESENT,
                                layout.sector_bitmap_offset(j),
                            ),
                        );
                    }
                    j += 1;
                }
            }
            let bytes = std::mem::take(&mut chunk_bytes);
            let result = self.emit(&bytes);
            chunk_bytes = bytes;
            result?;
        }
        Ok(())
    }
}

fn check_plan(planned: &[u64], layout: &ImageLayout) -> std::result::Result<(), StreamError> {
    for pair in planned.windows(2) {
        if let [previous, block] = *pair
            && block <= previous
        {
            return Err(StreamError::PlanNotAscending { previous, block });
        }
    }
    if let Some(&block) = planned.last()
        && block >= layout.data_blocks
    {
        return Err(StreamError::BlockOutOfRange {
            block,
            data_blocks: layout.data_blocks,
        });
    }
    (planned.len() as u64)
        .checked_mul(u64::from(layout.block_size))
        .and_then(|p| p.checked_add(layout.first_block_offset()))
        .ok_or(StreamError::FileTooLarge {
            planned: planned.len(),
            block_size: layout.block_size,
        })?;
    Ok(())
}

/// True when every byte of `data` is zero (compared in 16-byte words,
/// which the compiler vectorises: an order of magnitude cheaper than
/// SHA-256 of the same bytes).
#[must_use]
pub fn is_zero(data: &[u8]) -> bool {
    let (words, tail) = data.as_chunks::<16>();
    words.iter().all(|w| u128::from_ne_bytes(*w) == 0) && tail.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VhdxFile;
    use crate::chain::Chain;

    const MIBU: usize = 1 << 20;

    fn opts(size: u64) -> CreateOptions {
        CreateOptions {
            block_size: 1 << 20,
            ..CreateOptions::new(size)
        }
    }

    fn detail(err: &VhdxError) -> Option<StreamError> {
        match err.detail() {
            crate::error::ErrorDetail::Other(e) => e.downcast_ref::<StreamError>().cloned(),
            _ => None,
        }
    }

    fn create(dir: &Path, size: u64, planned: Vec<u64>) -> SequentialImage {
        let path = dir.join("out.vhdx");
        SequentialImage::create(&path, &path, &opts(size), BuilderKind::Dynamic, planned).unwrap()
    }

    #[test]
    fn written_file_reads_back_its_blocks_and_hashes_to_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = create(dir.path(), 4 * MIB, vec![1, 3]);
        img.write_payload(1, 0, &vec![7; MIBU]).unwrap();
        img.write_payload(3, 0, &vec![9; MIBU / 2]).unwrap();
        img.write_payload(3, MIB / 2, &vec![0; MIBU / 2]).unwrap();

        let done = img.finish().unwrap();

        let bytes = std::fs::read(dir.path().join("out.vhdx")).unwrap();
        assert_eq!(done.size, bytes.len() as u64);
        assert_eq!(done.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
        let chain = Chain::open(&dir.path().join("out.vhdx")).unwrap();
        let mut buf = vec![0u8; 4 * MIBU];
        chain.read_at(0, &mut buf).unwrap();
        assert!(buf[..MIBU].iter().all(|b| *b == 0));
        assert!(buf[MIBU..2 * MIBU].iter().all(|b| *b == 7));
        assert!(buf[3 * MIBU..3 * MIBU + MIBU / 2].iter().all(|b| *b == 9));
        assert!(buf[3 * MIBU + MIBU / 2..].iter().all(|b| *b == 0));
    }

    #[test]
    fn planned_blocks_are_fully_present_at_consecutive_slots() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = create(dir.path(), 8 * MIB, vec![2, 5]);
        let first = img.layout.first_block_offset();
        img.write_payload(2, 0, &vec![1; MIBU]).unwrap();
        img.write_payload(5, 0, &vec![0; MIBU]).unwrap();
        img.finish().unwrap();

        let file = VhdxFile::open(&dir.path().join("out.vhdx")).unwrap();

        assert_eq!(
            file.payload_state(2).unwrap(),
            (crate::PayloadState::FullyPresent, Some(first))
        );
        assert_eq!(
            file.payload_state(5).unwrap(),
            (crate::PayloadState::FullyPresent, Some(first + MIB))
        );
        assert_eq!(
            file.payload_state(3).unwrap().0,
            crate::PayloadState::NotPresent
        );
    }

    #[test]
    fn out_of_order_payload_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = create(dir.path(), 4 * MIB, vec![0, 1]);

        let err = img.write_payload(1, 0, &vec![1; MIBU]).unwrap_err();

        assert_eq!(
            detail(&err),
            Some(StreamError::OutOfOrder {
                block: 1,
                offset_in_block: 0,
                expected_block: 0,
                expected_offset: 0
            })
        );
    }

    #[test]
    fn data_past_the_block_end_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = create(dir.path(), 4 * MIB, vec![0]);

        let err = img.write_payload(0, 0, &vec![1; MIBU + 1]).unwrap_err();

        assert!(matches!(
            detail(&err),
            Some(StreamError::PastBlockEnd { .. })
        ));
    }

    #[test]
    fn plan_not_ascending_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.vhdx");

        let err = SequentialImage::create(
            &path,
            &path,
            &opts(4 * MIB),
            BuilderKind::Dynamic,
            vec![2, 2],
        )
        .unwrap_err();

        assert_eq!(
            detail(&err),
            Some(StreamError::PlanNotAscending {
                previous: 2,
                block: 2
            })
        );
        assert!(!path.exists());
    }

    #[test]
    fn planned_block_past_the_disk_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.vhdx");

        let err =
            SequentialImage::create(&path, &path, &opts(4 * MIB), BuilderKind::Dynamic, vec![4])
                .unwrap_err();

        assert_eq!(
            detail(&err),
            Some(StreamError::BlockOutOfRange {
                block: 4,
                data_blocks: 4
            })
        );
    }

    #[test]
    fn finish_before_every_block_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = create(dir.path(), 4 * MIB, vec![0, 1]);
        img.write_payload(0, 0, &vec![1; MIBU]).unwrap();

        let err = img.finish().unwrap_err();

        assert_eq!(
            detail(&err),
            Some(StreamError::Incomplete {
                written: 1,
                planned: 2
            })
        );
    }

    #[test]
    fn zero_granules_are_holes_on_disk() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut img = create(dir.path(), 64 * MIB, (0..32).collect());
        for b in 0..32 {
            img.write_payload(b, 0, &vec![0; MIBU]).unwrap();
        }
        img.finish().unwrap();

        let meta = std::fs::metadata(dir.path().join("out.vhdx")).unwrap();

        assert!(meta.len() >= 36 * MIB);
        // Only the header section, metadata and BAT bytes are allocated.
        assert!(
            meta.blocks() * 512 < 4 * MIB,
            "{} bytes allocated",
            meta.blocks() * 512
        );
    }

    #[test]
    fn differencing_output_has_a_present_sector_bitmap_per_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("p.vhdx");
        crate::create_dynamic(&parent, &opts(8 * MIB)).unwrap();
        let parent_guid = VhdxFile::open(&parent).unwrap().data_write_guid();
        let child = dir.path().join("c.avhdx");
        let kind = BuilderKind::Differencing {
            parent_path: parent.clone(),
            parent_data_write_guid: parent_guid,
        };
        let mut img =
            SequentialImage::create(&child, &child, &opts(8 * MIB), kind, vec![1]).unwrap();
        img.write_payload(1, 0, &vec![5; MIBU]).unwrap();
        img.finish().unwrap();

        let chain = Chain::open(&child).unwrap();
        let mut buf = vec![1u8; 2 * MIBU];
        chain.read_at(0, &mut buf).unwrap();

        assert!(buf[..MIBU].iter().all(|b| *b == 0));
        assert!(buf[MIBU..].iter().all(|b| *b == 5));
        let bytes = std::fs::read(&child).unwrap();
        let ratio = format::chunk_ratio(512, 1 << 20);
        let at =
            usize::try_from(BAT_OFFSET + format::sector_bitmap_bat_index(0, ratio) * 8).unwrap();
        let entry = BatEntry(u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()));
        assert_eq!(entry.state(), sector_bitmap_state::PRESENT);
        let bitmap = usize::try_from(entry.file_offset()).unwrap();
        assert!(bytes[bitmap..bitmap + MIBU].iter().all(|b| *b == 0));
    }
}
