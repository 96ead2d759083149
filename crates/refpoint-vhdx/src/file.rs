//! One VHDX file, opened read-only and validated (MS-VHDX §2).
//!
//! Open order (§2.3.3: replay before any other I/O apart from headers and
//! log): File Type Identifier → headers → log (a dirty log is replayed *in
//! memory* into an overlay; the file is never written) → region table →
//! metadata → BAT. Every read after the headers and the log goes through the
//! overlay, so the view is exactly the file as it would be after replay.
//!
//! Reads use positioned I/O (`pread`) on a shared `&File`: a [`VhdxFile`] is
//! `Send + Sync` and can serve many threads without locking.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::bat::{Bat, BatError, BatGeometry, Occupant, PayloadState, Run};
use crate::error::{Result, VhdxError};
use crate::format::{
    BatEntry, FILE_IDENTIFIER_OFFSET, HEADER_SECTION_SIZE, HEADER_SIZE, HEADER1_OFFSET,
    HEADER2_OFFSET, METADATA_TABLE_SIZE, MIB, PARENT_LOCATOR_GUID, REGION_TABLE_SIZE,
    REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET, chunk_ratio, data_blocks_count,
};
use crate::header::{HeaderError, HeaderPair, parse_file_identifier, select_current};
use crate::locator::ParentLocator;
use crate::log::{Overlay, plan_replay};
use crate::metadata::{MetadataEntry, SystemItems, find_system_item, parse_system_items};
use crate::region::{RegionEntry, RegionTable};

/// Bytes read per `pread` when loading the BAT.
const BAT_READ_CHUNK: u64 = 8 * MIB;

/// Shape of the virtual disk and of the file's block layout (MS-VHDX §2.4–2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// Payload block size in bytes (power of two, 1–256 MiB).
    pub block_size: u32,
    /// Logical sector size in bytes, 512 or 4096.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes, 512 or 4096.
    pub physical_sector_size: u32,
    /// Payload blocks per sector bitmap block: `2^23 × LSS / block_size`.
    pub chunk_ratio: u64,
    /// Payload blocks: `ceil(virtual_size / block_size)`.
    pub data_blocks: u64,
    /// Differencing file (File Parameters HasParent).
    pub has_parent: bool,
    /// Fixed, fully provisioned file (File Parameters LeaveBlockAllocated).
    pub leave_block_allocated: bool,
}

/// Positioned reads of the file as it is after the in-memory log replay.
#[derive(Clone, Copy)]
struct View<'a> {
    file: &'a File,
    physical_size: u64,
    logical_size: u64,
    overlay: Option<&'a Overlay>,
}

impl View<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len() as u64;
        let end = offset.checked_add(len).filter(|&e| e <= self.logical_size);
        let Some(end) = end else {
            let msg = format!(
                "read of {len} bytes at offset {offset:#x} past end of file ({:#x} bytes)",
                self.logical_size
            );
            return Err(VhdxError::io_at(
                io::Error::new(io::ErrorKind::UnexpectedEof, msg),
                offset,
            ));
        };
        let Some(overlay) = self.overlay else {
            return self
                .file
                .read_exact_at(buf, offset)
                .map_err(|e| VhdxError::io_at(e, offset));
        };
        let physical_end = end.min(self.physical_size);
        let split = usize::try_from(physical_end.saturating_sub(offset)).unwrap_or(0);
        let (on_disk, beyond) = buf.split_at_mut(split.min(buf.len()));
        if !on_disk.is_empty() {
            self.file
                .read_exact_at(on_disk, offset)
                .map_err(|e| VhdxError::io_at(e, offset))?;
        }
        beyond.fill(0);
        overlay.apply(offset, buf);
        Ok(())
    }

    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_at(offset, &mut buf)?;
        Ok(buf)
    }
}

/// One VHDX/AVHDX file, opened read-only, validated, with a dirty log
/// replayed in memory (MS-VHDX §2, §2.3.3 footnote <5>).
pub struct VhdxFile {
    path: PathBuf,
    file: File,
    physical_size: u64,
    overlay: Option<Overlay>,
    creator: String,
    headers: HeaderPair,
    regions: RegionTable,
    metadata_entries: Vec<MetadataEntry>,
    items: SystemItems,
    locator: Option<ParentLocator>,
    geometry: Geometry,
    bat: Bat,
}

impl std::fmt::Debug for VhdxFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the BAT or the replayed sectors: they can be megabytes.
        f.debug_struct("VhdxFile")
            .field("path", &self.path)
            .field("creator", &self.creator)
            .field("geometry", &self.geometry)
            .field("data_write_guid", &self.data_write_guid())
            .field("parent_locator", &self.locator)
            .field("log_replayed", &self.log_replayed())
            .finish_non_exhaustive()
    }
}

impl VhdxFile {
    /// Opens and validates `path` read-only; never writes to it.
    ///
    /// # Errors
    /// `NotFound`/`Io` when the file cannot be read; `Corrupt` or
    /// `Unsupported` with the header, region, log, metadata, locator or BAT
    /// rule that is broken (see [`crate::error::ErrorDetail`]).
    pub fn open(path: &Path) -> Result<VhdxFile> {
        Self::open_inner(path).map_err(|e| e.with_path(path).with_operation("open"))
    }

    fn open_inner(path: &Path) -> Result<VhdxFile> {
        let file = File::open(path)?;
        let physical_size = file.metadata()?.len();
        if physical_size < HEADER_SECTION_SIZE {
            return Err(HeaderError::TooSmall {
                file_size: physical_size,
            }
            .into());
        }
        let raw = View {
            file: &file,
            physical_size,
            logical_size: physical_size,
            overlay: None,
        };
        let creator = parse_file_identifier(&raw.read_vec(FILE_IDENTIFIER_OFFSET, 520)?)?;
        let headers = select_current(
            &raw.read_vec(HEADER1_OFFSET, HEADER_SIZE)?,
            &raw.read_vec(HEADER2_OFFSET, HEADER_SIZE)?,
        )?;
        let header = &headers.current;
        header.validate_log_location(headers.current_slot, physical_size)?;

        let overlay = plan_replay(&file, header, physical_size)?
            .map(|plan| Overlay::from_plan(&plan, physical_size));
        let view = View {
            file: &file,
            physical_size,
            logical_size: overlay
                .as_ref()
                .map_or(physical_size, Overlay::logical_size),
            overlay: overlay.as_ref(),
        };

        let (table_offset, entries) = crate::region::choose_table(
            &view.read_vec(REGION_TABLE1_OFFSET, REGION_TABLE_SIZE)?,
            &view.read_vec(REGION_TABLE2_OFFSET, REGION_TABLE_SIZE)?,
        )?;
        let log_range = header.log_range();
        let regions = crate::region::validate(table_offset, entries, view.logical_size, log_range)?;

        let md = regions.metadata;
        let metadata_entries = crate::metadata::parse_table(
            &view.read_vec(md.file_offset, METADATA_TABLE_SIZE)?,
            md.file_offset,
            md.length,
        )?;
        let items = parse_system_items(&metadata_entries, |e: &MetadataEntry| {
            view.read_vec(md.file_offset + u64::from(e.offset), e.length as usize)
        })?;
        let locator = match find_system_item(&metadata_entries, PARENT_LOCATOR_GUID) {
            Some(e) if items.has_parent => {
                let bytes =
                    view.read_vec(md.file_offset + u64::from(e.offset), e.length as usize)?;
                Some(ParentLocator::parse(&bytes)?)
            }
            _ => None,
        };

        let geometry = Geometry {
            virtual_size: items.virtual_size,
            block_size: items.block_size,
            logical_sector_size: items.logical_sector_size,
            physical_sector_size: items.physical_sector_size,
            chunk_ratio: chunk_ratio(items.logical_sector_size, items.block_size),
            data_blocks: data_blocks_count(items.virtual_size, items.block_size),
            has_parent: items.has_parent,
            leave_block_allocated: items.leave_block_allocated,
        };
        let bat = load_bat(&view, &geometry, &regions, log_range)?;
        Ok(VhdxFile {
            path: path.to_path_buf(),
            file,
            physical_size,
            overlay,
            creator,
            headers,
            regions,
            metadata_entries,
            items,
            locator,
            geometry,
            bat,
        })
    }

    fn view(&self) -> View<'_> {
        View {
            file: &self.file,
            physical_size: self.physical_size,
            logical_size: self.logical_size(),
            overlay: self.overlay.as_ref(),
        }
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Virtual disk and block layout.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Virtual Disk ID metadata item (MS-VHDX §2.6.2.3).
    pub fn virtual_disk_id(&self) -> Uuid {
        self.items.virtual_disk_id
    }

    /// DataWriteGuid of the current header (MS-VHDX §2.2.2): the identity a
    /// child's `parent_linkage` refers to.
    pub fn data_write_guid(&self) -> Uuid {
        self.headers.current.data_write_guid
    }

    /// FileWriteGuid of the current header (MS-VHDX §2.2.2).
    pub fn file_write_guid(&self) -> Uuid {
        self.headers.current.file_write_guid
    }

    /// Parent locator of a differencing file (MS-VHDX §2.6.2.6); `None` for
    /// a base file.
    pub fn parent_locator(&self) -> Option<&ParentLocator> {
        self.locator.as_ref()
    }

    /// True if the file had a dirty log that was replayed in memory.
    pub fn log_replayed(&self) -> bool {
        self.overlay.is_some()
    }

    /// Creator string of the File Type Identifier (informational).
    pub fn creator(&self) -> &str {
        &self.creator
    }

    /// State of payload block `block` and, for FULLY/PARTIALLY_PRESENT, the
    /// file offset of its data in bytes (MS-VHDX §2.5.1.1).
    ///
    /// # Errors
    /// `InvalidArgument` ([`BatError::BlockOutOfRange`]) when
    /// `block >= data_blocks`.
    pub fn payload_state(&self, block: u64) -> Result<(PayloadState, Option<u64>)> {
        self.bat
            .payload_state(block)
            .map_err(|e| self.context(e.into(), "payload state"))
    }

    /// Sector-present bits of a PARTIALLY_PRESENT block: one bool per logical
    /// sector of the block, true = the sector's data is in this file
    /// (MS-VHDX §2.5.1.2, bits LSB first).
    ///
    /// # Errors
    /// `InvalidArgument` when the block is out of range or not
    /// PARTIALLY_PRESENT; I/O errors reading the bitmap.
    pub fn sector_bitmap(&self, block: u64) -> Result<Vec<bool>> {
        let bytes = self.sector_bitmap_bytes(block)?;
        Ok(bytes
            .iter()
            .flat_map(|&b| (0..8).map(move |bit| b >> bit & 1 == 1))
            .collect())
    }

    /// Raw sector bitmap bytes of a PARTIALLY_PRESENT block
    /// (`block_size / logical_sector_size / 8` bytes, LSB first).
    pub(crate) fn sector_bitmap_bytes(&self, block: u64) -> Result<Vec<u8>> {
        let (state, _) = self.payload_state(block)?;
        if state != PayloadState::PartiallyPresent {
            return Err(self.context(
                BatError::NotPartiallyPresent { block, state }.into(),
                "read sector bitmap",
            ));
        }
        let g = &self.geometry;
        let cr = g.chunk_ratio.max(1);
        let chunk = block / cr;
        let sectors_per_block = u64::from(g.block_size / g.logical_sector_size.max(1));
        let sb_offset = self.bat.sector_bitmap_offset(chunk).ok_or_else(|| {
            self.context(
                BatError::PartialWithoutBitmap { block, chunk }.into(),
                "read sector bitmap",
            )
        })?;
        let offset = sb_offset + (block % cr) * sectors_per_block / 8;
        let len = usize::try_from(sectors_per_block / 8).unwrap_or(0);
        let mut buf = vec![0u8; len];
        self.read_file_at(offset, &mut buf)?;
        Ok(buf)
    }

    /// Payload blocks holding data in this file (FULLY_PRESENT or
    /// PARTIALLY_PRESENT), ascending.
    ///
    /// # Errors
    /// None at present (the BAT was validated at open); kept fallible for
    /// lazily loaded BATs.
    pub fn present_blocks(&self) -> Result<Vec<u64>> {
        Ok(self.bat.present_blocks())
    }

    /// Positioned read of `buf.len()` bytes at `file_offset` through the
    /// replayed-log overlay.
    ///
    /// # Errors
    /// `Corrupt` (UnexpectedEof) past the end of the file; `Io`.
    pub fn read_file_at(&self, file_offset: u64, buf: &mut [u8]) -> Result<()> {
        self.view()
            .read_at(file_offset, buf)
            .map_err(|e| e.with_path(&self.path).with_operation("read"))
    }

    fn context(&self, e: VhdxError, operation: &'static str) -> VhdxError {
        e.with_path(&self.path).with_operation(operation)
    }

    /// Runs of payload blocks starting with the one holding `block`.
    pub(crate) fn runs_from(&self, block: u64) -> &[Run] {
        self.bat.runs_from(block)
    }
}

/// Accessors for the write path (create/builder/write/log_writer).
#[allow(dead_code, reason = "consumed by the write-path modules of this crate")]
impl VhdxFile {
    /// The current header, its slot, and the other slot's header if valid.
    pub(crate) fn header_pair(&self) -> &HeaderPair {
        &self.headers
    }

    /// The region table in use (entries, BAT and metadata regions, which copy).
    pub(crate) fn region_table(&self) -> &RegionTable {
        &self.regions
    }

    /// The metadata region entry (file offset and length in bytes).
    pub(crate) fn metadata_region(&self) -> RegionEntry {
        self.regions.metadata
    }

    /// Metadata table entries (item offsets relative to the metadata region).
    pub(crate) fn metadata_entries(&self) -> &[MetadataEntry] {
        &self.metadata_entries
    }

    /// The BAT region entry (file offset and length in bytes).
    pub(crate) fn bat_region(&self) -> RegionEntry {
        self.regions.bat
    }

    /// Raw BAT entries in BAT order (payload and sector bitmap interleaved).
    pub(crate) fn bat_entries(&self) -> &[BatEntry] {
        self.bat.entries()
    }

    /// Log location `(LogOffset, LogLength)` in bytes from the current header.
    pub(crate) fn log_location(&self) -> (u64, u32) {
        (
            self.headers.current.log_offset,
            self.headers.current.log_length,
        )
    }

    /// The underlying read-only file handle.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// File size on disk in bytes.
    pub(crate) fn physical_size(&self) -> u64 {
        self.physical_size
    }

    /// File size after the in-memory log replay in bytes.
    pub(crate) fn logical_size(&self) -> u64 {
        self.overlay
            .as_ref()
            .map_or(self.physical_size, Overlay::logical_size)
    }
}

/// Reads the BAT in large chunks and validates it (MS-VHDX §2.5).
fn load_bat(
    view: &View<'_>,
    geometry: &Geometry,
    regions: &RegionTable,
    log_range: Option<(u64, u64)>,
) -> Result<Bat> {
    let bat_geometry = BatGeometry {
        virtual_size: geometry.virtual_size,
        block_size: geometry.block_size,
        logical_sector_size: geometry.logical_sector_size,
        chunk_ratio: geometry.chunk_ratio,
        data_blocks: geometry.data_blocks,
        has_parent: geometry.has_parent,
    };
    let needed = bat_geometry.total_entries();
    let region = regions.bat;
    if needed.saturating_mul(8) > u64::from(region.length) {
        return Err(BatError::RegionTooSmall {
            region_offset: region.file_offset,
            region_length: region.length,
            entries_needed: needed,
        }
        .into());
    }
    let total = needed * 8;
    let mut entries: Vec<BatEntry> = Vec::with_capacity(usize::try_from(needed).unwrap_or(0));
    let mut done = 0u64;
    while done < total {
        let len = (total - done).min(BAT_READ_CHUNK);
        let chunk = view.read_vec(region.file_offset + done, usize::try_from(len).unwrap_or(0))?;
        entries.extend(Bat::decode(&chunk));
        done += len;
    }
    let mut occupied = vec![(0, HEADER_SECTION_SIZE, Occupant::HeaderSection)];
    if let Some((start, end)) = log_range {
        occupied.push((start, end, Occupant::Log));
    }
    occupied.extend(
        regions
            .entries
            .iter()
            .map(|r| (r.file_offset, r.end(), Occupant::Region(r.guid))),
    );
    Ok(Bat::validate(
        bat_geometry,
        region.file_offset,
        entries,
        view.logical_size,
        occupied,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn vhdx_file_is_send_and_sync() {
        assert_send_sync::<VhdxFile>();
    }

    #[test]
    fn opening_a_missing_file_is_not_found() {
        let err = VhdxFile::open(Path::new("/nonexistent/x.vhdx")).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::NotFound);
        assert_eq!(err.path(), Some(Path::new("/nonexistent/x.vhdx")));
    }

    #[test]
    fn tiny_file_is_too_small() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.vhdx");
        std::fs::write(&p, b"vhdxfile").unwrap();
        let err = VhdxFile::open(&p).unwrap_err();
        assert!(matches!(
            err.detail(),
            crate::error::ErrorDetail::Header(HeaderError::TooSmall { file_size: 8 })
        ));
    }
}
