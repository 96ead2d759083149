//! Crash-safe metadata transactions on the merge target, without a new
//! DataWriteGuid.
//!
//! [`VhdxWriter`](crate::VhdxWriter) renews the DataWriteGuid on its first
//! write, as MS-VHDX §2.2.2 requires before a change readers of the virtual
//! disk can observe. A merge makes no such change — the child reads the
//! same before, during and after it ("moving blocks around inside the file
//! does not count", vhdx.md §3) — and must keep the DataWriteGuid, because
//! the child's own children link to it (`parent_linkage`). So the merge has
//! this small transaction writer of its own; the procedure is the writer's
//! (module docs of `write.rs`):
//!
//! ```text
//! 1. payload bytes into space no metadata references yet, grow, fdatasync
//! 2. one log entry with every changed metadata sector (BAT, sector bitmap,
//!    metadata region), fdatasync
//! 3. header LogGuid = the entry's GUID (non-current slot), fdatasync  ← committed
//! 4. sectors applied in place, fdatasync
//! 5. header LogGuid = 0, fdatasync                                     ← clean
//! ```
//!
//! A crash before 3 leaves the old metadata (the payload written is
//! unreferenced); after 3, readers and the next writer replay the entry.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{MergeError, fail};
use crate::error::{Result, VhdxError};
use crate::file::{Geometry, VhdxFile};
use crate::format::{BatEntry, LOG_SECTOR_SIZE, MIB, sector_bitmap_state};
use crate::header::{Header, HeaderSlot};
use crate::log::LogWrite;
use crate::log_writer::LogWriter;
use crate::write::{allocation_frontier, apply_writes, lock_exclusive, write_next_header};

/// Most metadata sectors one transaction may change: with its descriptor
/// sectors the entry stays well inside a 1 MiB log (as in `write.rs`).
pub(super) const MAX_SECTORS_PER_TRANSACTION: usize = 192;

/// A 4 KiB metadata sector image, patched before it is logged.
pub(super) type Sector = Box<[u8; 4096]>;

/// The open merge target.
#[derive(Debug)]
pub(super) struct Target {
    path: PathBuf,
    file: File,
    view: VhdxFile,
    header: Header,
    slot: HeaderSlot,
    log: LogWriter,
    bat: Vec<u64>,
    file_length: u64,
    frontier: u64,
    file_write_guid_renewed: bool,
}

impl Target {
    /// Opens `path` read-write under an exclusive `flock`. The file must
    /// have a log and a clean one (the caller replays a dirty log first
    /// with `VhdxWriter::open`).
    pub(super) fn open(path: &Path) -> Result<Target> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        lock_exclusive(&file, || fail(MergeError::Locked))?;
        let view = VhdxFile::open(path)?;
        if view.log_replayed() {
            return Err(fail(MergeError::DirtyLog));
        }
        let pair = view.header_pair();
        let header = pair.current.clone();
        if header.log_length == 0 {
            return Err(fail(MergeError::NoLog));
        }
        let bat: Vec<u64> = view.bat_entries().iter().map(|e| e.0).collect();
        let file_length = view.physical_size();
        let frontier = allocation_frontier(&view, view.geometry(), &bat, file_length).ok_or(
            fail(MergeError::FileTooLarge {
                frontier: file_length,
            }),
        )?;
        let (log_offset, log_length) = view.log_location();
        Ok(Target {
            path: path.to_path_buf(),
            slot: pair.current_slot,
            header,
            log: LogWriter::new(log_offset, log_length, Uuid::new_v4(), 1),
            file,
            view,
            bat,
            file_length,
            frontier,
            file_write_guid_renewed: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The target as opened (metadata of the time of opening).
    pub(super) fn view(&self) -> &VhdxFile {
        &self.view
    }

    pub(super) fn geometry(&self) -> &Geometry {
        self.view.geometry()
    }

    /// Current raw BAT entry `index` (with committed transactions applied).
    pub(super) fn bat_entry(&self, index: u64) -> BatEntry {
        BatEntry(
            usize::try_from(index)
                .ok()
                .and_then(|i| self.bat.get(i))
                .copied()
                .unwrap_or(0),
        )
    }

    /// Reserves `length` bytes (a multiple of 1 MiB) at the allocation
    /// frontier; returns their file offset. The space reads as zeros once
    /// the file is grown (it is past the end of the file).
    pub(super) fn allocate(&mut self, length: u64) -> Result<u64> {
        let offset = self.frontier;
        self.frontier = offset
            .checked_add(length)
            .ok_or(fail(MergeError::FileTooLarge { frontier: offset }))?;
        Ok(offset)
    }

    /// Step 1 (part): bytes at `file_offset`, not yet durable.
    pub(super) fn write_payload(&mut self, file_offset: u64, data: &[u8]) -> Result<()> {
        self.renew_file_write_guid()?;
        self.file
            .write_all_at(data, file_offset)
            .map_err(|e| VhdxError::io_at(e, file_offset))
    }

    /// The 4 KiB sector at `file_offset` as it is in the file now.
    pub(super) fn read_sector(&self, file_offset: u64) -> Result<Sector> {
        let mut sector = Box::new([0u8; 4096]);
        self.file
            .read_exact_at(&mut sector[..], file_offset)
            .map_err(|e| VhdxError::io_at(e, file_offset))?;
        Ok(sector)
    }

    /// File offset of the 4 KiB BAT sector holding entry `index`, and the
    /// entry's byte position in it.
    pub(super) fn bat_sector_of(&self, index: u64) -> (u64, usize) {
        let byte = index.saturating_mul(8);
        let sector = self.view.bat_region().file_offset + byte / LOG_SECTOR_SIZE * LOG_SECTOR_SIZE;
        (sector, usize::try_from(byte % LOG_SECTOR_SIZE).unwrap_or(0))
    }

    /// Steps 1–5: makes the payload durable, then logs, commits and applies
    /// `sectors` (file offset → new 4 KiB content) and `bat` (index → new
    /// entry, already patched into `sectors`) as one log entry.
    pub(super) fn commit(
        &mut self,
        sectors: BTreeMap<u64, Sector>,
        bat: &BTreeMap<u64, u64>,
    ) -> Result<()> {
        if sectors.is_empty() {
            return Ok(());
        }
        self.renew_file_write_guid()?;
        if self.frontier > self.file_length {
            self.file.set_len(self.frontier)?;
            self.file_length = self.frontier;
        }
        self.file.sync_data()?;
        let updates: Vec<LogWrite> = sectors
            .into_iter()
            .map(|(file_offset, data)| LogWrite::Data { file_offset, data })
            .collect();
        let log_guid = Uuid::new_v4();
        self.log.set_log_guid(log_guid);
        let flushed = self.file_length / MIB * MIB;
        self.log
            .append(&self.file, &updates, flushed, self.frontier)?
            .map_err(|e| fail(MergeError::Log(e)))?;
        self.file.sync_data()?;
        self.write_header(|h| h.log_guid = log_guid)?;
        apply_writes(&self.file, &updates)?;
        self.file.sync_data()?;
        self.log.mark_applied();
        self.write_header(|h| h.log_guid = Uuid::nil())?;
        for (&index, &entry) in bat {
            if let Some(slot) = usize::try_from(index)
                .ok()
                .and_then(|i| self.bat.get_mut(i))
            {
                *slot = entry;
            }
        }
        Ok(())
    }

    /// Whether a sector bitmap block is present for `chunk`, and where.
    pub(super) fn sector_bitmap_offset(&self, chunk: u64) -> Option<u64> {
        let cr = self.geometry().chunk_ratio.max(1);
        let entry = self.bat_entry(crate::format::sector_bitmap_bat_index(chunk, cr));
        (entry.state() == sector_bitmap_state::PRESENT).then(|| entry.file_offset())
    }

    /// A new FileWriteGuid before the first modification of this session
    /// (MS-VHDX §2.2.2); the DataWriteGuid is kept.
    fn renew_file_write_guid(&mut self) -> Result<()> {
        if !self.file_write_guid_renewed {
            let guid = Uuid::new_v4();
            self.write_header(|h| h.file_write_guid = guid)?;
            self.write_header(|_| {})?;
            self.file_write_guid_renewed = true;
        }
        Ok(())
    }

    /// Writes `update(current)` with SequenceNumber + 1 into the
    /// non-current slot and flushes it (MS-VHDX §2.2.2.1).
    fn write_header(&mut self, update: impl FnOnce(&mut Header)) -> Result<()> {
        (self.header, self.slot) =
            write_next_header(&self.file, &self.header, self.slot, update, || {
                fail(MergeError::SequenceOverflow)
            })?;
        Ok(())
    }
}
