//! Block Allocation Table (MS-VHDX §2.5): one u64 per payload block, with a
//! sector bitmap entry interleaved after every *chunk ratio* payload entries.
//!
//! ```text
//! BAT index:  0 .. CR-1        CR          CR+1 .. 2CR    2CR+1  …
//!             payload 0..CR-1  SB chunk 0  payload CR..   SB chunk 1
//! entry bits: 0–2 state · 3–19 reserved (0) · 20–63 FileOffsetMB
//! ```
//!
//! Validation (once, at open): reserved bits zero; payload states valid for
//! the file type (PARTIALLY_PRESENT only in a differencing file whose chunk
//! has its sector bitmap PRESENT; 4 is reserved, 5 is the v0.95 UNMAPPED);
//! sector bitmap PRESENT only in a differencing file; every allocated block
//! after the header section, inside the file, not overlapping the log, a
//! region or another block. FileOffsetMB is in MiB units, so every offset is
//! MiB-aligned by construction.
//!
//! The validated BAT is also summarised as *runs* of consecutive blocks that
//! read alike (go to parent / zeros / contiguous data), so mapping a virtual
//! range costs O(log blocks + extents).

use uuid::Uuid;

use crate::error::ErrorKind;
use crate::format::{
    BatEntry, HEADER_SECTION_SIZE, MIB, SECTOR_BITMAP_BLOCK_SIZE, payload_bat_index,
    payload_state as ps, round_up_mib, sector_bitmap_bat_index, sector_bitmap_state as sbs,
    total_bat_entries,
};

/// State of a payload block (MS-VHDX §2.5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadState {
    /// PAYLOAD_BLOCK_NOT_PRESENT (0): read from the parent; zeros in a base file.
    NotPresent,
    /// PAYLOAD_BLOCK_UNDEFINED (1): contents undefined; read as zeros.
    Undefined,
    /// PAYLOAD_BLOCK_ZERO (2): reads as zeros, also in a differencing file.
    Zero,
    /// PAYLOAD_BLOCK_UNMAPPED (3, or 5 as in spec v0.95): read as zeros.
    Unmapped,
    /// PAYLOAD_BLOCK_FULLY_PRESENT (6): all data in this file.
    FullyPresent,
    /// PAYLOAD_BLOCK_PARTIALLY_PRESENT (7): per-sector bitmap selects this file or the parent.
    PartiallyPresent,
}

impl PayloadState {
    /// Decodes a 3-bit state; `None` for the reserved value 4.
    pub fn from_bits(state: u8) -> Option<PayloadState> {
        match state {
            ps::NOT_PRESENT => Some(PayloadState::NotPresent),
            ps::UNDEFINED => Some(PayloadState::Undefined),
            ps::ZERO => Some(PayloadState::Zero),
            ps::UNMAPPED | ps::UNMAPPED_V095 => Some(PayloadState::Unmapped),
            ps::FULLY_PRESENT => Some(PayloadState::FullyPresent),
            ps::PARTIALLY_PRESENT => Some(PayloadState::PartiallyPresent),
            _ => None,
        }
    }

    /// Whether the block holds data in this file (FULLY or PARTIALLY present).
    pub fn has_data(self) -> bool {
        matches!(
            self,
            PayloadState::FullyPresent | PayloadState::PartiallyPresent
        )
    }
}

/// A BAT entry named by what it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatItem {
    /// Payload block (index of the block, not of the BAT entry).
    Payload {
        /// Payload block index.
        block: u64,
    },
    /// Sector bitmap block of a chunk.
    SectorBitmap {
        /// Chunk index.
        chunk: u64,
    },
}

impl std::fmt::Display for BatItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatItem::Payload { block } => write!(f, "payload block {block}"),
            BatItem::SectorBitmap { chunk } => write!(f, "sector bitmap block of chunk {chunk}"),
        }
    }
}

/// Something else occupying file space, for overlap errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupant {
    /// The 1 MiB header section.
    HeaderSection,
    /// The log.
    Log,
    /// A region from the region table.
    Region(Uuid),
    /// Another BAT-described block.
    Block(BatItem),
}

impl std::fmt::Display for Occupant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Occupant::HeaderSection => f.write_str("the header section"),
            Occupant::Log => f.write_str("the log"),
            Occupant::Region(g) => write!(f, "region {g}"),
            Occupant::Block(item) => write!(f, "{item}"),
        }
    }
}

/// Violations of MS-VHDX §2.5, plus out-of-range block queries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatError {
    /// §2.5: the BAT region is smaller than the number of entries the geometry needs.
    #[error("BAT region at {region_offset:#x} holds {region_length} bytes but {entries_needed} entries ({} bytes) are needed", entries_needed.saturating_mul(8))]
    RegionTooSmall {
        /// File offset of the BAT region.
        region_offset: u64,
        /// Region length (bytes).
        region_length: u32,
        /// Entries required by §2.5.
        entries_needed: u64,
    },
    /// §2.5.1: bits 3–19 are reserved and must be zero.
    #[error(
        "BAT entry {index} ({item}) at offset {entry_offset:#x}: reserved bits set in {entry:#018x}"
    )]
    ReservedBitsSet {
        /// BAT index.
        index: u64,
        /// What the entry describes.
        item: BatItem,
        /// File offset of the entry.
        entry_offset: u64,
        /// Raw entry.
        entry: u64,
    },
    /// §2.5.1.1: state 4 is reserved.
    #[error(
        "BAT entry for payload block {block} at offset {entry_offset:#x}: reserved state {state}"
    )]
    ReservedPayloadState {
        /// Payload block.
        block: u64,
        /// File offset of the entry.
        entry_offset: u64,
        /// State value.
        state: u8,
    },
    /// §2.5.1.1: PARTIALLY_PRESENT is only valid in a differencing file.
    #[error(
        "payload block {block} (entry at {entry_offset:#x}) is PARTIALLY_PRESENT in a file without a parent"
    )]
    PartialWithoutParent {
        /// Payload block.
        block: u64,
        /// File offset of the entry.
        entry_offset: u64,
    },
    /// §2.5.1.1: PARTIALLY_PRESENT requires the chunk's sector bitmap PRESENT.
    #[error(
        "payload block {block} is PARTIALLY_PRESENT but the sector bitmap of chunk {chunk} is not present"
    )]
    PartialWithoutBitmap {
        /// Payload block.
        block: u64,
        /// Chunk index.
        chunk: u64,
    },
    /// §2.5.1.2: SB_BLOCK_PRESENT only in a differencing file.
    #[error(
        "sector bitmap entry of chunk {chunk} (at {entry_offset:#x}) is PRESENT in a file without a parent"
    )]
    BitmapInNonDifferencing {
        /// Chunk index.
        chunk: u64,
        /// File offset of the entry.
        entry_offset: u64,
    },
    /// §2.5.1.2: sector bitmap states other than 0 and 6 are reserved.
    #[error("sector bitmap entry of chunk {chunk} (at {entry_offset:#x}): reserved state {state}")]
    ReservedBitmapState {
        /// Chunk index.
        chunk: u64,
        /// File offset of the entry.
        entry_offset: u64,
        /// State value.
        state: u8,
    },
    /// §2.5.1: allocated blocks lie after the 1 MiB header section.
    #[error("{item}: FileOffset {file_offset:#x} lies inside the 1 MiB header section")]
    BlockInHeaderSection {
        /// The block.
        item: BatItem,
        /// FileOffsetMB as bytes.
        file_offset: u64,
    },
    /// §2.5.1: allocated blocks lie inside the file.
    #[error("{item}: [{file_offset:#x}, {end:#x}) extends past end of file {file_size:#x}")]
    BlockBeyondEof {
        /// The block.
        item: BatItem,
        /// FileOffsetMB as bytes.
        file_offset: u64,
        /// End of the block's data (bytes).
        end: u64,
        /// File size (bytes).
        file_size: u64,
    },
    /// §2.5.1: two blocks have the same FileOffsetMB.
    #[error("{first} and {second} both start at file offset {file_offset:#x}")]
    DuplicateOffset {
        /// One block.
        first: BatItem,
        /// The other block.
        second: BatItem,
        /// Shared offset (bytes).
        file_offset: u64,
    },
    /// §2.5.1: blocks must not overlap other structures or blocks.
    #[error("{item} at {file_offset:#x} overlaps {other}")]
    Overlap {
        /// The block.
        item: BatItem,
        /// FileOffsetMB as bytes.
        file_offset: u64,
        /// What it overlaps.
        other: Occupant,
    },
    /// A payload block index beyond DataBlocksCount was asked for.
    #[error("payload block {block} out of range: the disk has {data_blocks} blocks")]
    BlockOutOfRange {
        /// Block asked for.
        block: u64,
        /// DataBlocksCount.
        data_blocks: u64,
    },
    /// A sector bitmap was asked for a block that is not PARTIALLY_PRESENT.
    #[error("payload block {block} is {state:?}, it has no sector bitmap")]
    NotPartiallyPresent {
        /// Block asked for.
        block: u64,
        /// Its state.
        state: PayloadState,
    },
}

impl BatError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            BatError::BlockOutOfRange { .. } | BatError::NotPartiallyPresent { .. } => {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::Corrupt,
        }
    }

    pub(crate) fn offset(&self) -> Option<u64> {
        match self {
            BatError::RegionTooSmall { region_offset, .. } => Some(*region_offset),
            BatError::ReservedBitsSet { entry_offset, .. }
            | BatError::ReservedPayloadState { entry_offset, .. }
            | BatError::PartialWithoutParent { entry_offset, .. }
            | BatError::BitmapInNonDifferencing { entry_offset, .. }
            | BatError::ReservedBitmapState { entry_offset, .. } => Some(*entry_offset),
            BatError::BlockInHeaderSection { file_offset, .. }
            | BatError::BlockBeyondEof { file_offset, .. }
            | BatError::DuplicateOffset { file_offset, .. }
            | BatError::Overlap { file_offset, .. } => Some(*file_offset),
            _ => None,
        }
    }
}

/// The BAT geometry of one file (derived from the metadata, MS-VHDX §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatGeometry {
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Payload blocks per sector bitmap block.
    pub chunk_ratio: u64,
    /// Payload blocks (DataBlocksCount).
    pub data_blocks: u64,
    /// Differencing file.
    pub has_parent: bool,
}

impl BatGeometry {
    /// Total BAT entries required (MS-VHDX §2.5).
    pub fn total_entries(&self) -> u64 {
        total_bat_entries(self.data_blocks, self.chunk_ratio, self.has_parent)
    }

    /// Bytes of file data of payload block `block` that the virtual disk
    /// maps (the last block may be cut by the virtual size), rounded up to
    /// 1 MiB: the span that must lie inside the file and not overlap.
    fn payload_span(&self, block: u64) -> u64 {
        let bs = u64::from(self.block_size);
        let start = block.saturating_mul(bs);
        let used = self.virtual_size.saturating_sub(start).min(bs);
        round_up_mib(used).unwrap_or(bs)
    }
}

/// How a run of consecutive payload blocks reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunKind {
    /// NOT_PRESENT: the parent's data (zeros in a base file).
    Parent,
    /// ZERO, UNDEFINED, UNMAPPED: zeros.
    Zero,
    /// FULLY_PRESENT blocks stored back to back from this file offset (bytes).
    Data { file_offset: u64 },
    /// One PARTIALLY_PRESENT block at this file offset (bytes).
    Partial { file_offset: u64 },
}

/// A run of consecutive payload blocks with the same [`RunKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub first_block: u64,
    pub blocks: u64,
    pub kind: RunKind,
}

/// A validated BAT.
#[derive(Debug, Clone)]
pub(crate) struct Bat {
    geometry: BatGeometry,
    region_offset: u64,
    entries: Vec<BatEntry>,
    runs: Vec<Run>,
}

/// File space already taken by other structures, `[start, end)` in bytes.
pub(crate) type Occupied = Vec<(u64, u64, Occupant)>;

impl Bat {
    /// Decodes raw little-endian BAT bytes (as many whole entries as present).
    pub fn decode(bytes: &[u8]) -> Vec<BatEntry> {
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                BatEntry(u64::from_le_bytes(a))
            })
            .collect()
    }

    /// Validates `entries` (exactly `geometry.total_entries()` of them, read
    /// from the BAT region at `region_offset`) against the file size and the
    /// space taken by the header section, the log and the regions.
    ///
    /// # Errors
    /// Every structural [`BatError`] variant.
    pub fn validate(
        geometry: BatGeometry,
        region_offset: u64,
        entries: Vec<BatEntry>,
        file_size: u64,
        mut occupied: Occupied,
    ) -> Result<Bat, BatError> {
        let cr = geometry.chunk_ratio.max(1);
        let entry_offset = |index: u64| region_offset.saturating_add(index.saturating_mul(8));
        for (index, entry) in (0u64..).zip(entries.iter()) {
            let is_bitmap = index % (cr + 1) == cr;
            let item = if is_bitmap {
                BatItem::SectorBitmap {
                    chunk: index / (cr + 1),
                }
            } else {
                BatItem::Payload {
                    block: index - index / (cr + 1),
                }
            };
            if entry.reserved_bits() != 0 {
                return Err(BatError::ReservedBitsSet {
                    index,
                    item,
                    entry_offset: entry_offset(index),
                    entry: entry.0,
                });
            }
            let span = match item {
                BatItem::SectorBitmap { chunk } => {
                    Self::check_bitmap_state(&geometry, chunk, *entry, entry_offset(index))?
                }
                BatItem::Payload { block } => Self::check_payload_state(
                    &geometry,
                    &entries,
                    block,
                    *entry,
                    entry_offset(index),
                )?,
            };
            if let Some(span) = span {
                let start = entry.file_offset();
                if start < HEADER_SECTION_SIZE {
                    return Err(BatError::BlockInHeaderSection {
                        item,
                        file_offset: start,
                    });
                }
                let end = start.saturating_add(span);
                if end > file_size {
                    return Err(BatError::BlockBeyondEof {
                        item,
                        file_offset: start,
                        end,
                        file_size,
                    });
                }
                occupied.push((start, end, Occupant::Block(item)));
            }
        }
        check_overlaps(occupied)?;
        let runs = build_runs(&geometry, &entries);
        Ok(Bat {
            geometry,
            region_offset,
            entries,
            runs,
        })
    }

    /// Checks a payload entry's state; returns the span it occupies in the file.
    fn check_payload_state(
        geometry: &BatGeometry,
        entries: &[BatEntry],
        block: u64,
        entry: BatEntry,
        entry_offset: u64,
    ) -> Result<Option<u64>, BatError> {
        let state =
            PayloadState::from_bits(entry.state()).ok_or(BatError::ReservedPayloadState {
                block,
                entry_offset,
                state: entry.state(),
            })?;
        match state {
            PayloadState::FullyPresent => Ok(Some(geometry.payload_span(block))),
            PayloadState::PartiallyPresent => {
                if !geometry.has_parent {
                    return Err(BatError::PartialWithoutParent {
                        block,
                        entry_offset,
                    });
                }
                let chunk = block / geometry.chunk_ratio.max(1);
                let sb = usize::try_from(sector_bitmap_bat_index(chunk, geometry.chunk_ratio))
                    .ok()
                    .and_then(|i| entries.get(i));
                if sb.is_none_or(|e| e.state() != sbs::PRESENT) {
                    return Err(BatError::PartialWithoutBitmap { block, chunk });
                }
                Ok(Some(geometry.payload_span(block)))
            }
            _ => Ok(None),
        }
    }

    /// Checks a sector bitmap entry's state; returns the span it occupies.
    fn check_bitmap_state(
        geometry: &BatGeometry,
        chunk: u64,
        entry: BatEntry,
        entry_offset: u64,
    ) -> Result<Option<u64>, BatError> {
        match entry.state() {
            sbs::NOT_PRESENT => Ok(None),
            sbs::PRESENT if geometry.has_parent => Ok(Some(SECTOR_BITMAP_BLOCK_SIZE)),
            sbs::PRESENT => Err(BatError::BitmapInNonDifferencing {
                chunk,
                entry_offset,
            }),
            state => Err(BatError::ReservedBitmapState {
                chunk,
                entry_offset,
                state,
            }),
        }
    }

    /// The geometry the BAT was validated against.
    #[allow(dead_code, reason = "consumed by the write-path modules of this crate")]
    pub fn geometry(&self) -> &BatGeometry {
        &self.geometry
    }

    /// File offset of the BAT region in bytes.
    #[allow(dead_code, reason = "consumed by the write-path modules of this crate")]
    pub fn region_offset(&self) -> u64 {
        self.region_offset
    }

    /// Raw entries, BAT order (payload and sector bitmap entries interleaved).
    pub fn entries(&self) -> &[BatEntry] {
        &self.entries
    }

    /// The raw entry of payload block `block`.
    ///
    /// # Errors
    /// [`BatError::BlockOutOfRange`].
    pub fn payload_entry(&self, block: u64) -> Result<BatEntry, BatError> {
        let out_of_range = BatError::BlockOutOfRange {
            block,
            data_blocks: self.geometry.data_blocks,
        };
        if block >= self.geometry.data_blocks {
            return Err(out_of_range);
        }
        usize::try_from(payload_bat_index(block, self.geometry.chunk_ratio))
            .ok()
            .and_then(|i| self.entries.get(i).copied())
            .ok_or(out_of_range)
    }

    /// State and (for FULLY/PARTIALLY_PRESENT) file offset of payload block `block`.
    ///
    /// # Errors
    /// [`BatError::BlockOutOfRange`].
    pub fn payload_state(&self, block: u64) -> Result<(PayloadState, Option<u64>), BatError> {
        let entry = self.payload_entry(block)?;
        // Validated at open: reserved states cannot occur.
        let state = PayloadState::from_bits(entry.state()).unwrap_or(PayloadState::Undefined);
        Ok((state, state.has_data().then(|| entry.file_offset())))
    }

    /// File offset in bytes of the sector bitmap block of `chunk`, when PRESENT.
    pub fn sector_bitmap_offset(&self, chunk: u64) -> Option<u64> {
        let index = sector_bitmap_bat_index(chunk, self.geometry.chunk_ratio);
        usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .filter(|e| e.state() == sbs::PRESENT)
            .map(|e| e.file_offset())
    }

    /// Payload blocks holding data in this file, ascending.
    pub fn present_blocks(&self) -> Vec<u64> {
        self.runs
            .iter()
            .filter(|r| matches!(r.kind, RunKind::Data { .. } | RunKind::Partial { .. }))
            .flat_map(|r| r.first_block..r.first_block + r.blocks)
            .collect()
    }

    /// Runs covering `block` and the blocks after it, in order.
    pub fn runs_from(&self, block: u64) -> &[Run] {
        let i = self
            .runs
            .partition_point(|r| r.first_block.saturating_add(r.blocks) <= block);
        self.runs.get(i..).unwrap_or_default()
    }
}

/// Rejects any overlap among the occupied ranges (sorted sweep keeping the
/// range that reaches furthest).
fn check_overlaps(mut occupied: Occupied) -> Result<(), BatError> {
    occupied.sort_unstable_by_key(|&(start, end, _)| (start, end));
    let mut furthest: Option<(u64, u64, Occupant)> = None;
    for &(start, end, who) in &occupied {
        if let Some((f_start, f_end, f_who)) = furthest
            && start < f_end
        {
            return Err(overlap_error(start, who, f_start, f_who));
        }
        if furthest.is_none_or(|(_, f_end, _)| end > f_end) {
            furthest = Some((start, end, who));
        }
    }
    Ok(())
}

fn overlap_error(start: u64, who: Occupant, other_start: u64, other: Occupant) -> BatError {
    match (who, other) {
        (Occupant::Block(a), Occupant::Block(b)) if start == other_start => {
            BatError::DuplicateOffset {
                first: b,
                second: a,
                file_offset: start,
            }
        }
        (Occupant::Block(item), other) => BatError::Overlap {
            item,
            file_offset: start,
            other,
        },
        (who, Occupant::Block(item)) => BatError::Overlap {
            item,
            file_offset: other_start,
            other: who,
        },
        // Structures were checked against each other before; report anyway.
        (who, other) => BatError::Overlap {
            item: BatItem::Payload { block: 0 },
            file_offset: start.max(other_start).max(MIB),
            other: if matches!(who, Occupant::HeaderSection) {
                other
            } else {
                who
            },
        },
    }
}

fn build_runs(geometry: &BatGeometry, entries: &[BatEntry]) -> Vec<Run> {
    let bs = u64::from(geometry.block_size);
    let mut runs: Vec<Run> = Vec::new();
    for block in 0..geometry.data_blocks {
        let entry = usize::try_from(payload_bat_index(block, geometry.chunk_ratio))
            .ok()
            .and_then(|i| entries.get(i))
            .copied()
            .unwrap_or_default();
        let kind = match PayloadState::from_bits(entry.state()) {
            Some(PayloadState::NotPresent) => RunKind::Parent,
            Some(PayloadState::FullyPresent) => RunKind::Data {
                file_offset: entry.file_offset(),
            },
            Some(PayloadState::PartiallyPresent) => RunKind::Partial {
                file_offset: entry.file_offset(),
            },
            _ => RunKind::Zero,
        };
        if let Some(last) = runs.last_mut() {
            let extends = match (last.kind, kind) {
                (RunKind::Parent, RunKind::Parent) | (RunKind::Zero, RunKind::Zero) => true,
                (RunKind::Data { file_offset: a }, RunKind::Data { file_offset: b }) => {
                    a.checked_add(last.blocks.saturating_mul(bs)) == Some(b)
                }
                _ => false,
            };
            if extends {
                last.blocks += 1;
                continue;
            }
        }
        runs.push(Run {
            first_block: block,
            blocks: 1,
            kind,
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::chunk_ratio;

    fn geometry(virtual_size: u64, block_size: u32, has_parent: bool) -> BatGeometry {
        let cr = chunk_ratio(512, block_size);
        BatGeometry {
            virtual_size,
            block_size,
            logical_sector_size: 512,
            chunk_ratio: cr,
            data_blocks: virtual_size.div_ceil(u64::from(block_size)),
            has_parent,
        }
    }

    fn occupied() -> Occupied {
        vec![
            (0, MIB, Occupant::HeaderSection),
            (MIB, 2 * MIB, Occupant::Log),
            (2 * MIB, 3 * MIB, Occupant::Region(Uuid::from_u128(1))),
        ]
    }

    const BS: u32 = 1 << 20;

    #[test]
    fn contiguous_fully_present_blocks_form_one_run() {
        let g = geometry(4 * MIB, BS, false);
        let e = (0..4)
            .map(|i| BatEntry::new(ps::FULLY_PRESENT, (3 + i) * MIB))
            .collect();
        let bat = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap();
        assert_eq!(bat.runs.len(), 1);
        assert_eq!(bat.present_blocks(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn runs_from_finds_the_run_holding_the_block() {
        let g = geometry(4 * MIB, BS, false);
        let e = vec![
            BatEntry::new(ps::ZERO, 0),
            BatEntry::new(ps::ZERO, 0),
            BatEntry::new(ps::FULLY_PRESENT, 3 * MIB),
            BatEntry::new(ps::NOT_PRESENT, 0),
        ];
        let bat = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap();
        assert_eq!(bat.runs_from(1)[0].kind, RunKind::Zero);
        assert_eq!(
            bat.runs_from(2)[0].kind,
            RunKind::Data {
                file_offset: 3 * MIB
            }
        );
        assert_eq!(bat.runs_from(3).len(), 1);
    }

    #[test]
    fn reserved_bits_are_rejected() {
        let g = geometry(MIB, BS, false);
        let e = vec![BatEntry(BatEntry::new(ps::ZERO, 0).0 | 0x100)];
        let err = Bat::validate(g, 0x30_0000, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::ReservedBitsSet {
                index: 0,
                entry_offset: 0x30_0000,
                ..
            }
        ));
    }

    #[test]
    fn state_four_is_reserved() {
        let g = geometry(MIB, BS, false);
        let err = Bat::validate(g, 0, vec![BatEntry(4)], 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::ReservedPayloadState {
                block: 0,
                state: 4,
                ..
            }
        ));
    }

    #[test]
    fn state_five_reads_as_unmapped() {
        let g = geometry(MIB, BS, false);
        let bat = Bat::validate(g, 0, vec![BatEntry(5)], 16 * MIB, occupied()).unwrap();
        assert_eq!(
            bat.payload_state(0).unwrap(),
            (PayloadState::Unmapped, None)
        );
    }

    #[test]
    fn block_in_header_section_is_rejected() {
        let g = geometry(MIB, BS, false);
        let e = vec![BatEntry::new(ps::FULLY_PRESENT, 0)];
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(err, BatError::BlockInHeaderSection { .. }));
    }

    #[test]
    fn block_past_end_of_file_is_rejected() {
        let g = geometry(MIB, BS, false);
        let e = vec![BatEntry::new(ps::FULLY_PRESENT, 16 * MIB)];
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(err, BatError::BlockBeyondEof { end, .. } if end == 17 * MIB));
    }

    #[test]
    fn last_block_only_needs_its_virtual_part_in_the_file() {
        // 3 MiB disk with 2 MiB blocks: block 1 maps 1 MiB only.
        let g = geometry(3 * MIB, 2 * BS, false);
        let e = vec![
            BatEntry::new(ps::ZERO, 0),
            BatEntry::new(ps::FULLY_PRESENT, 3 * MIB),
        ];
        assert!(Bat::validate(g, 0, e, 4 * MIB, occupied()).is_ok());
    }

    #[test]
    fn block_overlapping_a_region_is_rejected() {
        let g = geometry(MIB, BS, false);
        let e = vec![BatEntry::new(ps::FULLY_PRESENT, 2 * MIB)];
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::Overlap {
                other: Occupant::Region(_),
                ..
            }
        ));
    }

    #[test]
    fn block_overlapping_the_log_is_rejected() {
        let g = geometry(MIB, BS, false);
        let e = vec![BatEntry::new(ps::FULLY_PRESENT, MIB)];
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::Overlap {
                other: Occupant::Log,
                ..
            }
        ));
    }

    #[test]
    fn two_blocks_at_one_offset_are_rejected() {
        let g = geometry(2 * MIB, BS, false);
        let e = vec![
            BatEntry::new(ps::FULLY_PRESENT, 5 * MIB),
            BatEntry::new(ps::FULLY_PRESENT, 5 * MIB),
        ];
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(
            matches!(err, BatError::DuplicateOffset { file_offset, .. } if file_offset == 5 * MIB)
        );
    }

    #[test]
    fn overlapping_blocks_are_rejected() {
        let g = geometry(4 * MIB, 2 * BS, false);
        let e = vec![
            BatEntry::new(ps::FULLY_PRESENT, 5 * MIB),
            BatEntry::new(ps::FULLY_PRESENT, 6 * MIB),
        ];
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::Overlap {
                item: BatItem::Payload { block: 1 },
                other: Occupant::Block(BatItem::Payload { block: 0 }),
                ..
            }
        ));
    }

    #[test]
    fn partially_present_in_base_file_is_rejected() {
        let g = geometry(MIB, BS, false);
        let e = vec![BatEntry::new(ps::PARTIALLY_PRESENT, 5 * MIB)];
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::PartialWithoutParent { block: 0, .. }
        ));
    }

    #[test]
    fn partially_present_without_bitmap_is_rejected() {
        let g = geometry(MIB, BS, true);
        let mut e = vec![BatEntry::default(); usize::try_from(g.total_entries()).unwrap()];
        e[0] = BatEntry::new(ps::PARTIALLY_PRESENT, 5 * MIB);
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert_eq!(err, BatError::PartialWithoutBitmap { block: 0, chunk: 0 });
    }

    #[test]
    fn partially_present_with_bitmap_is_accepted() {
        let g = geometry(MIB, BS, true);
        let mut e = vec![BatEntry::default(); usize::try_from(g.total_entries()).unwrap()];
        e[0] = BatEntry::new(ps::PARTIALLY_PRESENT, 5 * MIB);
        let sb = usize::try_from(sector_bitmap_bat_index(0, g.chunk_ratio)).unwrap();
        e[sb] = BatEntry::new(sbs::PRESENT, 6 * MIB);
        let bat = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap();
        assert_eq!(bat.sector_bitmap_offset(0), Some(6 * MIB));
        assert_eq!(
            bat.payload_state(0).unwrap(),
            (PayloadState::PartiallyPresent, Some(5 * MIB))
        );
    }

    #[test]
    fn bitmap_present_in_base_file_is_rejected() {
        // 4096 blocks of 1 MiB = one full chunk: entry 4096 is the SB entry in a dynamic BAT
        // only if a second chunk exists, so use 4097 blocks.
        let g = geometry(4097 * MIB, BS, false);
        let mut e = vec![BatEntry::default(); usize::try_from(g.total_entries()).unwrap()];
        e[4096] = BatEntry::new(sbs::PRESENT, 5 * MIB);
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::BitmapInNonDifferencing { chunk: 0, .. }
        ));
    }

    #[test]
    fn reserved_bitmap_state_is_rejected() {
        let g = geometry(MIB, BS, true);
        let mut e = vec![BatEntry::default(); usize::try_from(g.total_entries()).unwrap()];
        let sb = usize::try_from(sector_bitmap_bat_index(0, g.chunk_ratio)).unwrap();
        e[sb] = BatEntry::new(3, 5 * MIB);
        let err = Bat::validate(g, 0, e, 16 * MIB, occupied()).unwrap_err();
        assert!(matches!(
            err,
            BatError::ReservedBitmapState {
                chunk: 0,
                state: 3,
                ..
            }
        ));
    }

    #[test]
    fn block_query_past_the_end_is_out_of_range() {
        let g = geometry(MIB, BS, false);
        let bat = Bat::validate(g, 0, vec![BatEntry::default()], 16 * MIB, occupied()).unwrap();
        assert_eq!(
            bat.payload_state(1),
            Err(BatError::BlockOutOfRange {
                block: 1,
                data_blocks: 1
            })
        );
    }
}
