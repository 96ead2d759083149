//! The crash-safe write path of an active leaf (MS-VHDX §2.2.2.1, §2.3,
//! §2.5; vhdx.md §10 "Modification").
//!
//! [`VhdxWriter::open`] validates the file with the reader, takes an
//! exclusive `flock`, replays a dirty log in place, and updates both headers
//! (new FileWriteGuid, SequenceNumber + 1, non-current slot first).
//! The first [`VhdxWriter::write_at`] of a session sets a new DataWriteGuid.
//!
//! One `write_at` runs these steps; a crash between any two leaves either
//! the old or the new content of the written range's *newly allocated*
//! blocks (in-place writes to present blocks are, as on any disk, not atomic):
//!
//! ```text
//! 1. payload: pwrite data (new blocks at the 1 MiB-aligned end of file,
//!    unwritten parts are fresh zeros), grow the file, fdatasync
//! 2. log entry (new LogGuid, Tail = itself) with every changed BAT and
//!    sector bitmap sector, written at the log head, fdatasync
//! 3. header with LogGuid = that GUID (non-current slot), fdatasync  ← committed
//! 4. apply the sectors to their final location, fdatasync
//! 5. header with LogGuid = 0 (non-current slot), fdatasync          ← clean
//! ```
//!
//! The entry is written *before* the header names its LogGuid, so a crash
//! never leaves a header whose LogGuid has no valid entry (a file the spec
//! calls corrupt). After step 5 the file is clean, as qemu leaves it, so
//! read-only openers that do not replay (qemu) accept it.

use std::collections::{BTreeMap, btree_map::Entry};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{ErrorKind, Result, VhdxError};
use crate::file::{Geometry, VhdxFile};
use crate::format::{
    BatEntry, LOG_SECTOR_SIZE, MIB, SECTOR_BITMAP_BLOCK_SIZE, payload_bat_index, payload_state,
    sector_bitmap_bat_index, sector_bitmap_state,
};
use crate::header::{Header, HeaderSlot};
use crate::log::{self, LogWrite};
use crate::log_writer::{LogWriteError, LogWriter};
pub(crate) use allocation::allocation_frontier;
use allocation::{BitRange, Plan, set_bits};

/// Largest number of sector updates in one log entry: `(count + 2) / 128`
/// descriptor sectors plus `count` data sectors stay well inside a 1 MiB log.
const MAX_UPDATES_PER_ENTRY: usize = 192;
/// Bits (logical sectors) described by one 4 KiB sector bitmap sector.
const BITS_PER_SECTOR: u64 = LOG_SECTOR_SIZE * 8;

/// A write request or writer state the write path refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Offset and length must be multiples of the logical sector size (§2.6.2.4).
    #[error(
        "write of {length} bytes at virtual offset {virtual_offset:#x} is not aligned to the {logical_sector_size}-byte logical sector"
    )]
    Unaligned {
        /// Virtual offset, bytes.
        virtual_offset: u64,
        /// Length, bytes.
        length: u64,
        /// Logical sector size, bytes.
        logical_sector_size: u32,
    },
    /// The range must lie inside the virtual disk (§2.6.2.2).
    #[error(
        "write of {length} bytes at virtual offset {virtual_offset:#x} ends past the virtual size {virtual_size}"
    )]
    OutOfRange {
        /// Virtual offset, bytes.
        virtual_offset: u64,
        /// Length, bytes.
        length: u64,
        /// Virtual disk size, bytes.
        virtual_size: u64,
    },
    /// Metadata changes go through the log (§2.3); a file without a log cannot be written.
    #[error(
        "the file has no log (LogLength 0); its metadata cannot be updated safely (MS-VHDX 2.3)"
    )]
    NoLog,
    /// Another process (or writer) holds the file.
    #[error("the file is locked by another writer")]
    Locked,
    /// A file offset would overflow 64 bits.
    #[error("file offset overflow allocating at {frontier:#x}")]
    FileTooLarge {
        /// Allocation frontier, bytes.
        frontier: u64,
    },
    /// An earlier write failed part-way; reopen the file to recover through the log.
    #[error("an earlier write failed part-way; reopen the file to recover")]
    Poisoned,
    /// A header sequence number would overflow (§2.2.2).
    #[error("header SequenceNumber overflow")]
    SequenceOverflow,
    /// A log rule (§2.3).
    #[error(transparent)]
    Log(#[from] LogWriteError),
    /// A test failpoint stopped the write.
    #[cfg(test)]
    #[error("injected failure at {0:?}")]
    Injected(FailPoint),
}

impl WriteError {
    fn kind(&self) -> ErrorKind {
        match self {
            WriteError::Unaligned { .. } | WriteError::OutOfRange { .. } => {
                ErrorKind::InvalidArgument
            }
            WriteError::NoLog | WriteError::FileTooLarge { .. } | WriteError::SequenceOverflow => {
                ErrorKind::Unsupported
            }
            WriteError::Log(e) => e.kind(),
            WriteError::Locked | WriteError::Poisoned => ErrorKind::Io,
            #[cfg(test)]
            WriteError::Injected(_) => ErrorKind::Io,
        }
    }
}

/// Points of `write_at` where a test can stop, simulating a crash.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After the payload is durable, before the log entry is written.
    BeforeLogWrite,
    /// After the entry is durable, before the header names its LogGuid.
    BeforeLogCommit,
    /// After the entry is committed (header LogGuid set), before it is applied.
    AfterLogFlush,
}

/// The write path of one VHDX file (typically a chain's leaf).
#[derive(Debug)]
pub struct VhdxWriter {
    path: PathBuf,
    file: File,
    geometry: Geometry,
    header: Header,
    current_slot: HeaderSlot,
    /// File offset of the BAT region, bytes.
    bat_offset: u64,
    /// Raw BAT entries, as applied to the file.
    bat: Vec<u64>,
    /// Current file length, bytes.
    file_length: u64,
    /// Next allocation offset: a multiple of 1 MiB past every structure.
    frontier: u64,
    log: LogWriter,
    data_write_guid_renewed: bool,
    poisoned: bool,
    #[cfg(test)]
    failpoint: Option<FailPoint>,
}

impl VhdxWriter {
    /// Opens `path` for writing: validates it as [`VhdxFile::open`] does,
    /// locks it exclusively, replays a dirty log in place (then empties the
    /// log), and writes both headers with a new FileWriteGuid.
    ///
    /// # Errors
    /// Every error of [`VhdxFile::open`]; `Io` ([`WriteError::Locked`]) if
    /// another writer holds the file; `Unsupported` ([`WriteError::NoLog`])
    /// for a file without a log; `Io` on write failure.
    pub fn open(path: &Path) -> Result<VhdxWriter> {
        Self::open_inner(path).map_err(|e| e.with_path(path).with_operation("open for write"))
    }

    fn open_inner(path: &Path) -> Result<VhdxWriter> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        lock_exclusive(&file, || fail(WriteError::Locked))?;
        let view = VhdxFile::open(path)?;
        let pair = view.header_pair();
        let mut header = pair.current.clone();
        let mut slot = pair.current_slot;
        if header.log_length == 0 {
            return Err(fail(WriteError::NoLog));
        }
        let file_write_guid = Uuid::new_v4();
        if view.log_replayed() {
            // New FileWriteGuid before the first modification, LogGuid kept
            // until the replay is durable (§2.2.2.1, §2.3.3).
            (header, slot) = write_header(&file, &header, slot, |h| {
                h.file_write_guid = file_write_guid
            })?;
            replay_in_place(&file, &header)?;
            (header, slot) = write_header(&file, &header, slot, |h| h.log_guid = Uuid::nil())?;
        } else {
            (header, slot) = write_header(&file, &header, slot, |h| {
                h.file_write_guid = file_write_guid
            })?;
        }
        (header, slot) = write_header(&file, &header, slot, |_| {})?;
        drop(view);
        // Reopen: the view now reflects the replayed file and the new headers.
        let view = VhdxFile::open(path)?;
        let geometry = *view.geometry();
        let bat: Vec<u64> = view.bat_entries().iter().map(|e| e.0).collect();
        let bat_region = view.bat_region();
        let file_length = view.physical_size();
        let frontier = allocation_frontier(&view, &geometry, &bat, file_length).ok_or(fail(
            WriteError::FileTooLarge {
                frontier: file_length,
            },
        ))?;
        let (log_offset, log_length) = view.log_location();
        Ok(VhdxWriter {
            path: path.to_path_buf(),
            file,
            geometry,
            header,
            current_slot: slot,
            bat_offset: bat_region.file_offset,
            bat,
            file_length,
            frontier,
            log: LogWriter::new(log_offset, log_length, Uuid::new_v4(), 1),
            data_write_guid_renewed: false,
            poisoned: false,
            #[cfg(test)]
            failpoint: None,
        })
    }

    /// The file's geometry (virtual size, block size, sector sizes …).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// DataWriteGuid of the current header (changes on the first write of a session).
    pub fn data_write_guid(&self) -> Uuid {
        self.header.data_write_guid
    }

    /// The path the writer was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data` at `virtual_offset` (bytes) of the virtual disk.
    /// Both must be multiples of the logical sector size and the range must
    /// lie inside the virtual size. Blocks are allocated as needed: dynamic
    /// files get FULLY_PRESENT blocks with the rest zero; differencing files
    /// get FULLY_PRESENT for whole-block writes and PARTIALLY_PRESENT with
    /// sector bitmap bits for partial writes to NOT_PRESENT blocks. BAT and
    /// sector bitmap changes go through one log entry per call (more only
    /// for writes touching hundreds of metadata sectors).
    ///
    /// # Errors
    /// `InvalidArgument` ([`WriteError::Unaligned`], [`WriteError::OutOfRange`]);
    /// `Io` on a failed write (the writer then refuses further writes:
    /// [`WriteError::Poisoned`]; reopening recovers through the log).
    pub fn write_at(&mut self, virtual_offset: u64, data: &[u8]) -> Result<()> {
        if self.poisoned {
            return Err(self.context(fail(WriteError::Poisoned)));
        }
        let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let lss = self.geometry.logical_sector_size;
        if !virtual_offset.is_multiple_of(u64::from(lss)) || !length.is_multiple_of(u64::from(lss))
        {
            return Err(self.context(fail(WriteError::Unaligned {
                virtual_offset,
                length,
                logical_sector_size: lss,
            })));
        }
        let virtual_size = self.geometry.virtual_size;
        if virtual_offset
            .checked_add(length)
            .is_none_or(|end| end > virtual_size)
        {
            return Err(self.context(fail(WriteError::OutOfRange {
                virtual_offset,
                length,
                virtual_size,
            })));
        }
        if data.is_empty() {
            return Ok(());
        }
        let result = self.write_inner(virtual_offset, data);
        if result.is_err() {
            self.poisoned = true;
        }
        result.map_err(|e| self.context(e))
    }

    /// fsyncs the file (data and metadata).
    ///
    /// # Errors
    /// `Io`.
    pub fn flush(&mut self) -> Result<()> {
        self.file.sync_all().map_err(|e| self.context(e.into()))
    }

    fn context(&self, e: VhdxError) -> VhdxError {
        e.with_path(&self.path).with_operation("write")
    }

    #[cfg(test)]
    pub(crate) fn set_failpoint(&mut self, failpoint: Option<FailPoint>) {
        self.failpoint = failpoint;
    }

    /// Places the next log entry at log position `position` (bytes).
    #[cfg(test)]
    pub(crate) fn reposition_log(&mut self, position: u32) {
        self.log.reposition(position);
    }

    #[cfg(test)]
    fn check_failpoint(&self, here: FailPoint) -> Result<()> {
        if self.failpoint == Some(here) {
            return Err(fail(WriteError::Injected(here)));
        }
        Ok(())
    }

    fn write_inner(&mut self, virtual_offset: u64, data: &[u8]) -> Result<()> {
        if !self.data_write_guid_renewed {
            // §2.2.2: a new DataWriteGuid before the first user-visible change.
            let guid = Uuid::new_v4();
            let (h, s) = write_header(&self.file, &self.header, self.current_slot, |h| {
                h.data_write_guid = guid
            })?;
            let (h, s) = write_header(&self.file, &h, s, |_| {})?;
            (self.header, self.current_slot) = (h, s);
            self.data_write_guid_renewed = true;
        }
        let mut plan = Plan {
            frontier: self.frontier,
            ..Plan::default()
        };
        let block_size = u64::from(self.geometry.block_size);
        let mut position = virtual_offset;
        let end = virtual_offset.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        while position < end {
            let block = position / block_size;
            let in_block = position % block_size;
            let length = (block_size - in_block).min(end - position);
            let from = usize::try_from(position - virtual_offset).unwrap_or(usize::MAX);
            let to = usize::try_from(position - virtual_offset + length).unwrap_or(usize::MAX);
            let chunk = data.get(from..to).unwrap_or_default();
            let target = self.place_segment(&mut plan, block, in_block, length)?;
            self.file
                .write_all_at(chunk, target)
                .map_err(|e| VhdxError::io_at(e, target))?;
            position += length;
        }
        if plan.bat.is_empty() && plan.bits.is_empty() {
            // Only in-place writes: no metadata changes, nothing to log.
            return Ok(());
        }
        if plan.frontier > self.file_length {
            self.file.set_len(plan.frontier)?;
            self.file_length = plan.frontier;
        }
        self.file.sync_data()?;
        self.frontier = plan.frontier;
        #[cfg(test)]
        self.check_failpoint(FailPoint::BeforeLogWrite)?;
        let updates = self.metadata_sectors(&plan)?;
        for batch in updates.chunks(MAX_UPDATES_PER_ENTRY) {
            self.log_and_apply(batch)?;
        }
        for (&index, &entry) in &plan.bat {
            if let Some(slot) = usize::try_from(index)
                .ok()
                .and_then(|i| self.bat.get_mut(i))
            {
                *slot = entry;
            }
        }
        Ok(())
    }

    /// The BAT entry at `index`, as changed by `plan` so far.
    fn entry(&self, plan: &Plan, index: u64) -> u64 {
        plan.bat.get(&index).copied().unwrap_or_else(|| {
            usize::try_from(index)
                .ok()
                .and_then(|i| self.bat.get(i))
                .copied()
                .unwrap_or(0)
        })
    }

    /// Decides where the `length` bytes at `in_block` of `block` go, records
    /// the BAT / sector bitmap changes in `plan`, and returns the file offset.
    fn place_segment(
        &self,
        plan: &mut Plan,
        block: u64,
        in_block: u64,
        length: u64,
    ) -> Result<u64> {
        let g = &self.geometry;
        let block_size = u64::from(g.block_size);
        let index = payload_bat_index(block, g.chunk_ratio);
        let entry = BatEntry(self.entry(plan, index));
        let block_bytes = g
            .virtual_size
            .saturating_sub(block * block_size)
            .min(block_size);
        let whole = in_block == 0 && length >= block_bytes;
        let state = entry.state();
        let target = |offset: u64| offset.saturating_add(in_block);
        match state {
            payload_state::FULLY_PRESENT => Ok(target(entry.file_offset())),
            payload_state::PARTIALLY_PRESENT => {
                if whole {
                    plan.bat.insert(
                        index,
                        BatEntry::new(payload_state::FULLY_PRESENT, entry.file_offset()).0,
                    );
                } else {
                    let sb = self.ensure_sector_bitmap(plan, block)?;
                    plan.bits
                        .push(self.bit_range(sb, block, in_block, length, true));
                }
                Ok(target(entry.file_offset()))
            }
            _ => {
                // NOT_PRESENT, UNDEFINED, ZERO, UNMAPPED: a fresh block whose
                // unwritten bytes are zeros (new space past the end of file).
                let offset = plan.allocate(block_size)?;
                let partial_over_parent =
                    g.has_parent && !whole && state == payload_state::NOT_PRESENT;
                if partial_over_parent {
                    plan.bat.insert(
                        index,
                        BatEntry::new(payload_state::PARTIALLY_PRESENT, offset).0,
                    );
                    let sb = self.ensure_sector_bitmap(plan, block)?;
                    // Stale bits of a block that was NOT_PRESENT must not leak.
                    plan.bits
                        .push(self.bit_range(sb, block, 0, block_size, false));
                    plan.bits
                        .push(self.bit_range(sb, block, in_block, length, true));
                } else {
                    plan.bat
                        .insert(index, BatEntry::new(payload_state::FULLY_PRESENT, offset).0);
                }
                Ok(target(offset))
            }
        }
    }

    /// File offset of the sector bitmap block of `block`'s chunk, allocating
    /// it (SB_BLOCK_PRESENT, zeroed) when absent.
    fn ensure_sector_bitmap(&self, plan: &mut Plan, block: u64) -> Result<u64> {
        let chunk_ratio = self.geometry.chunk_ratio.max(1);
        let index = sector_bitmap_bat_index(block / chunk_ratio, chunk_ratio);
        let entry = BatEntry(self.entry(plan, index));
        if entry.state() == sector_bitmap_state::PRESENT {
            return Ok(entry.file_offset());
        }
        let offset = plan.allocate(SECTOR_BITMAP_BLOCK_SIZE)?;
        plan.bat
            .insert(index, BatEntry::new(sector_bitmap_state::PRESENT, offset).0);
        Ok(offset)
    }

    /// The bits of `length` bytes at `in_block` of `block` inside the
    /// sector bitmap block at `sb_offset`.
    fn bit_range(
        &self,
        sb_offset: u64,
        block: u64,
        in_block: u64,
        length: u64,
        value: bool,
    ) -> BitRange {
        let g = &self.geometry;
        let lss = u64::from(g.logical_sector_size.max(1));
        let sectors_per_block = u64::from(g.block_size) / lss;
        let first = (block % g.chunk_ratio.max(1)) * sectors_per_block + in_block / lss;
        BitRange {
            sb_offset,
            first,
            count: length / lss,
            value,
        }
    }

    /// The 4 KiB sectors of the BAT and of sector bitmap blocks that `plan`
    /// changes, read from the file and patched, ordered by file offset.
    fn metadata_sectors(&self, plan: &Plan) -> Result<Vec<LogWrite>> {
        let mut sectors: BTreeMap<u64, Box<[u8; 4096]>> = BTreeMap::new();
        for (&index, &entry) in &plan.bat {
            let byte = index.saturating_mul(8);
            let sector_offset = self.bat_offset + byte / LOG_SECTOR_SIZE * LOG_SECTOR_SIZE;
            let sector = self.load_sector(&mut sectors, sector_offset)?;
            let at = usize::try_from(byte % LOG_SECTOR_SIZE).unwrap_or(0);
            if let Some(dst) = sector.get_mut(at..at + 8) {
                dst.copy_from_slice(&entry.to_le_bytes());
            }
        }
        for bits in &plan.bits {
            let mut bit = bits.first;
            let end = bits.first.saturating_add(bits.count);
            while bit < end {
                let sector_first_bit = bit / BITS_PER_SECTOR * BITS_PER_SECTOR;
                let stop = end.min(sector_first_bit + BITS_PER_SECTOR);
                let sector_offset = bits.sb_offset + sector_first_bit / 8;
                let sector = self.load_sector(&mut sectors, sector_offset)?;
                set_bits(sector, bit - sector_first_bit, stop - bit, bits.value);
                bit = stop;
            }
        }
        Ok(sectors
            .into_iter()
            .map(|(file_offset, data)| LogWrite::Data { file_offset, data })
            .collect())
    }

    fn load_sector<'a>(
        &self,
        sectors: &'a mut BTreeMap<u64, Box<[u8; 4096]>>,
        offset: u64,
    ) -> Result<&'a mut Box<[u8; 4096]>> {
        match sectors.entry(offset) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let mut sector = Box::new([0u8; 4096]);
                self.file
                    .read_exact_at(&mut sector[..], offset)
                    .map_err(|err| VhdxError::io_at(err, offset))?;
                Ok(e.insert(sector))
            }
        }
    }

    /// Steps 2–5 of the module docs for one batch of sector updates.
    fn log_and_apply(&mut self, updates: &[LogWrite]) -> Result<()> {
        let log_guid = Uuid::new_v4();
        self.log.set_log_guid(log_guid);
        let flushed = self.file_length / MIB * MIB;
        self.log
            .append(&self.file, updates, flushed, self.frontier)?
            .map_err(|e| fail(WriteError::Log(e)))?;
        self.file.sync_data()?;
        #[cfg(test)]
        self.check_failpoint(FailPoint::BeforeLogCommit)?;
        (self.header, self.current_slot) =
            write_header(&self.file, &self.header, self.current_slot, |h| {
                h.log_guid = log_guid
            })?;
        #[cfg(test)]
        self.check_failpoint(FailPoint::AfterLogFlush)?;
        apply_writes(&self.file, updates)?;
        self.file.sync_data()?;
        self.log.mark_applied();
        (self.header, self.current_slot) =
            write_header(&self.file, &self.header, self.current_slot, |h| {
                h.log_guid = Uuid::nil()
            })?;
        Ok(())
    }
}

/// Attempts to take the lock before reporting [`WriteError::Locked`].
const LOCK_ATTEMPTS: u32 = 50;
/// Pause between lock attempts.
const LOCK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// Takes an exclusive `flock` on `file`. The lock belongs to the open file
/// description, which a child forked by another thread shares until its
/// `exec` closes it (O_CLOEXEC); a lock released just before such a fork
/// therefore lingers for a moment, hence a short bounded retry (≈ 100 ms)
/// before reporting `locked()` ([`WriteError::Locked`] here, the merge's
/// own error there).
pub(crate) fn lock_exclusive(file: &File, locked: impl FnOnce() -> VhdxError) -> Result<()> {
    for _ in 1..LOCK_ATTEMPTS {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => std::thread::sleep(LOCK_RETRY_PAUSE),
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
    }
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(locked()),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Wraps a write-path rule into the crate-boundary error.
fn fail(e: WriteError) -> VhdxError {
    VhdxError::other(e.kind(), e)
}

/// Writes `update(current)` with SequenceNumber + 1 into the non-current
/// slot and flushes it (MS-VHDX §2.2.2.1); returns the new current header.
fn write_header(
    file: &File,
    current: &Header,
    slot: HeaderSlot,
    update: impl FnOnce(&mut Header),
) -> Result<(Header, HeaderSlot)> {
    write_next_header(file, current, slot, update, || {
        fail(WriteError::SequenceOverflow)
    })
}

/// [`write_header`] with the caller's error for a SequenceNumber that would
/// overflow (the merge reports its own).
pub(crate) fn write_next_header(
    file: &File,
    current: &Header,
    slot: HeaderSlot,
    update: impl FnOnce(&mut Header),
    overflow: impl FnOnce() -> VhdxError,
) -> Result<(Header, HeaderSlot)> {
    let mut next = current.clone();
    update(&mut next);
    next.sequence_number = current
        .sequence_number
        .checked_add(1)
        .ok_or_else(overflow)?;
    let target = slot.other();
    file.write_all_at(&next.to_bytes(), target.offset())
        .map_err(|e| VhdxError::io_at(e, target.offset()))?;
    file.sync_data()?;
    Ok((next, target))
}

/// Applies the active log sequence to the file itself and makes it durable
/// (MS-VHDX §2.3.3): writes in order, then the file grows to LastFileOffset.
fn replay_in_place(file: &File, header: &Header) -> Result<()> {
    let size = file.metadata()?.len();
    let Some(plan) = log::plan_replay(file, header, size)? else {
        return Ok(());
    };
    apply_writes(file, &plan.writes)?;
    let size = file.metadata()?.len();
    if plan.last_file_offset > size {
        file.set_len(plan.last_file_offset)?;
    }
    file.sync_data()?;
    Ok(())
}

/// Writes log updates to their final locations (not flushed).
pub(crate) fn apply_writes(file: &File, writes: &[LogWrite]) -> Result<()> {
    let zeros = vec![0u8; usize::try_from(MIB).unwrap_or(1 << 20)];
    for write in writes {
        match write {
            LogWrite::Data { file_offset, data } => {
                file.write_all_at(&data[..], *file_offset)
                    .map_err(|e| VhdxError::io_at(e, *file_offset))?;
            }
            LogWrite::Zero {
                file_offset,
                length,
            } => {
                let mut done = 0u64;
                while done < *length {
                    let n = (*length - done).min(MIB);
                    let at = file_offset.saturating_add(done);
                    let part = zeros
                        .get(..usize::try_from(n).unwrap_or(0))
                        .unwrap_or_default();
                    file.write_all_at(part, at)
                        .map_err(|e| VhdxError::io_at(e, at))?;
                    done += n;
                }
            }
        }
    }
    Ok(())
}

mod allocation;

#[cfg(test)]
mod crash_tests;
