//! Planning one disk of a differential export: which output blocks to read
//! and how the output is built (MS-VHDX §2.5 payload block states).
//!
//! - **Tracked** (change tracking answered): every output block touched by a
//!   changed byte range is read whole through the target chain and stored
//!   `PAYLOAD_BLOCK_FULLY_PRESENT`, or `PAYLOAD_BLOCK_ZERO` when it reads
//!   all-zero (so the child reads zeros, not the parent's data). Other blocks
//!   stay `PAYLOAD_BLOCK_NOT_PRESENT` and read from the parent; their digests
//!   are the base manifest's.
//! - **Fallback** (tracking lost, policy `fallback`): every block that holds
//!   data in the target chain is read and hashed; a block whose digest equals
//!   the base manifest's is left NOT_PRESENT, any other is stored as above.
//!   Blocks the chain maps to zero are not read: they are marked ZERO when
//!   the base block was not all-zero.
//! - **Full** (the disk is not in the base export, no tracking was given, or
//!   its geometry changed since the base): a dynamic VHDX as in a full export.

use crate::base::{ExportFolder, ParentRef};
use crate::digest::ZeroDigests;
use crate::error::{ErrorContext, ErrorKind};
use crate::request::{ChangeTracking, DiskExport, RequestError, TrackingPolicy};
use crate::source::{DataBlock, DiskMap, OutputGeometry};

/// How one disk's output is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DiskMode {
    /// Dynamic VHDX holding the whole disk. `reason` says why a disk of a
    /// differential export is exported full (`None` in a full export).
    Full {
        /// Why, inside a differential export.
        reason: Option<String>,
    },
    /// Differencing VHDX of the blocks change tracking reported.
    Tracked {
        /// The base export's file.
        parent: ParentRef,
        /// Changed byte ranges, sorted, coalesced, inside the disk.
        ranges: Vec<(u64, u64)>,
    },
    /// Differencing VHDX of the blocks whose digest differs from the base.
    Fallback {
        /// The base export's file.
        parent: ParentRef,
        /// Why tracking was lost.
        reason: String,
    },
}

impl DiskMode {
    /// The parent of a differencing output.
    pub(crate) fn parent(&self) -> Option<&ParentRef> {
        match self {
            DiskMode::Full { .. } => None,
            DiskMode::Tracked { parent, .. } | DiskMode::Fallback { parent, .. } => Some(parent),
        }
    }
}

/// Change tracking given for a disk cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DifferentialError {
    /// The range ends past the virtual size or overflows.
    #[error(
        "disk {disk}: change tracking reports bytes [{offset}, +{length}) outside the {virtual_size}-byte disk"
    )]
    RangeOutsideDisk {
        /// Disk `InstanceID`.
        disk: String,
        /// Range start, bytes.
        offset: u64,
        /// Range length, bytes.
        length: u64,
        /// Virtual size, bytes.
        virtual_size: u64,
    },
}

impl DifferentialError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            DifferentialError::RangeOutsideDisk { .. } => ErrorKind::InvalidParameter,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        match self {
            DifferentialError::RangeOutsideDisk { disk, offset, .. } => ErrorContext {
                operation: "plan differential disk",
                path: None,
                offset: Some(*offset),
                disk: Some(disk.clone()),
            },
        }
    }
}

/// The planned mode and blocks of `disk` in a differential export against
/// `base`.
///
/// # Errors
/// [`crate::BaseError`] when the base export's file of the disk is unusable;
/// [`DifferentialError::RangeOutsideDisk`]; [`RequestError::TrackingLost`]
/// for lost tracking under the strict policy.
pub(crate) fn plan_disk(
    base: &ExportFolder,
    base_id: &str,
    policy: TrackingPolicy,
    disk: &DiskExport,
    geometry: &OutputGeometry,
    map: DiskMap,
) -> Result<(DiskMode, Vec<DataBlock>), crate::EngineError> {
    let full = |reason: String| {
        (
            DiskMode::Full {
                reason: Some(reason),
            },
            map.blocks.clone(),
        )
    };
    let Some(record) = base.disk(&disk.instance_id) else {
        return Ok(full(format!(
            "the disk is not in the base export '{}' (added since the base, or not exported then)",
            base.folder.display()
        )));
    };
    let changed = [
        ("virtual size", record.virtual_size, geometry.virtual_size),
        (
            "block size",
            u64::from(record.block_size),
            u64::from(geometry.block_size),
        ),
        (
            "logical sector size",
            u64::from(record.logical_sector_size),
            u64::from(geometry.logical_sector_size),
        ),
    ];
    if let Some((what, was, now)) = changed.into_iter().find(|(_, b, t)| b != t) {
        return Ok(full(format!(
            "its {what} changed since the base ({was} → {now} bytes)"
        )));
    }
    let Some(changes) = &disk.changes else {
        return Ok(full("no change tracking was given for the disk".to_owned()));
    };
    let parent = base.parent_of(record)?;
    match changes {
        ChangeTracking::Changes(ranges) => {
            let ranges = checked_ranges(&disk.instance_id, ranges, geometry.virtual_size)?;
            let blocks = changed_blocks(&ranges, geometry, &map);
            Ok((DiskMode::Tracked { parent, ranges }, blocks))
        }
        ChangeTracking::Lost { reason } => match policy {
            TrackingPolicy::Strict => Err(RequestError::TrackingLost {
                disk: disk.instance_id.clone(),
                base: base_id.to_owned(),
                reason: reason.clone(),
            }
            .into()),
            TrackingPolicy::Fallback => {
                let blocks = fallback_blocks(&disk.instance_id, &parent, geometry, &map)?;
                Ok((
                    DiskMode::Fallback {
                        parent,
                        reason: reason.clone(),
                    },
                    blocks,
                ))
            }
        },
    }
}

/// Sorts and coalesces `ranges` (dropping empty ones) after checking each
/// lies inside `[0, virtual_size)`.
fn checked_ranges(
    disk: &str,
    ranges: &[(u64, u64)],
    virtual_size: u64,
) -> Result<Vec<(u64, u64)>, DifferentialError> {
    let mut sorted = Vec::with_capacity(ranges.len());
    for &(offset, length) in ranges {
        let inside = offset
            .checked_add(length)
            .is_some_and(|end| end <= virtual_size);
        if !inside {
            return Err(DifferentialError::RangeOutsideDisk {
                disk: disk.to_owned(),
                offset,
                length,
                virtual_size,
            });
        }
        if length > 0 {
            sorted.push((offset, length));
        }
    }
    Ok(coalesce(sorted))
}

/// Sorts `ranges` and merges overlapping or touching ones.
pub(crate) fn coalesce(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (offset, length) in ranges {
        let end = offset.saturating_add(length);
        match out.last_mut() {
            Some((start, len)) if *start + *len >= offset => {
                *len = (*start + *len).max(end) - *start;
            }
            _ => out.push((offset, length)),
        }
    }
    out
}

/// The block of `map` with index `index`, or an empty one (the chain maps
/// it to zero: nothing to read, it reads as zeros).
fn block_at(map: &DiskMap, geometry: &OutputGeometry, index: u64) -> DataBlock {
    match map.blocks.binary_search_by_key(&index, |b| b.index) {
        Ok(pos) => map.blocks.get(pos).cloned().unwrap_or_else(|| DataBlock {
            index,
            length: geometry.block_len(index),
            pieces: Vec::new(),
        }),
        Err(_) => DataBlock {
            index,
            length: geometry.block_len(index),
            pieces: Vec::new(),
        },
    }
}

/// Every output block touched by `ranges` (sorted, coalesced), ascending.
fn changed_blocks(ranges: &[(u64, u64)], g: &OutputGeometry, map: &DiskMap) -> Vec<DataBlock> {
    let bs = u64::from(g.block_size.max(1));
    let mut blocks: Vec<DataBlock> = Vec::new();
    for &(offset, length) in ranges {
        let first = offset / bs;
        let last = (offset + length - 1) / bs;
        for index in first..=last {
            if blocks.last().is_some_and(|b| b.index >= index) {
                continue;
            }
            blocks.push(block_at(map, g, index));
        }
    }
    blocks
}

/// Every block holding data in the chain, plus every block the chain maps
/// to zero whose base digest is not the zero digest, ascending.
fn fallback_blocks(
    disk: &str,
    parent: &ParentRef,
    g: &OutputGeometry,
    map: &DiskMap,
) -> Result<Vec<DataBlock>, crate::BaseError> {
    let zeros = ZeroDigests::new(g.virtual_size, u64::from(g.block_size));
    let mut base = parent.digest_reader(disk)?;
    let mut out = Vec::with_capacity(map.blocks.len());
    let mut data = map.blocks.iter().peekable();
    for index in 0..g.block_count() {
        let digest = base
            .get(index)
            .map_err(|reason| parent.digests_invalid(disk, reason))?;
        if let Some(block) = data.next_if(|b| b.index == index) {
            out.push(block.clone());
            continue;
        }
        if digest != zeros.for_len(g.block_len(index)) {
            out.push(DataBlock {
                index,
                length: g.block_len(index),
                pieces: Vec::new(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Piece;
    use uuid::Uuid;

    const MIB: u64 = 1024 * 1024;

    fn geometry() -> OutputGeometry {
        OutputGeometry {
            virtual_size: 8 * MIB,
            block_size: 2 * 1024 * 1024,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            virtual_disk_id: Uuid::nil(),
        }
    }

    fn data_block(index: u64) -> DataBlock {
        DataBlock {
            index,
            length: 2 * MIB,
            pieces: vec![Piece {
                offset_in_block: 0,
                length: 2 * MIB,
                layer: 0,
                file_offset: 4 * MIB,
            }],
        }
    }

    #[test]
    fn coalesce_merges_overlapping_and_touching_ranges() {
        let ranges = vec![(10, 5), (0, 10), (30, 1), (12, 10)];

        assert_eq!(coalesce(ranges), vec![(0, 22), (30, 1)]);
    }

    #[test]
    fn range_past_the_virtual_size_is_outside_disk() {
        let result = checked_ranges("d", &[(8 * MIB - 512, 1024)], 8 * MIB);

        assert!(matches!(
            result,
            Err(DifferentialError::RangeOutsideDisk { offset, .. }) if offset == 8 * MIB - 512
        ));
    }

    #[test]
    fn range_overflowing_u64_is_outside_disk() {
        let result = checked_ranges("d", &[(u64::MAX, 2)], 8 * MIB);

        assert!(matches!(
            result,
            Err(DifferentialError::RangeOutsideDisk { .. })
        ));
    }

    #[test]
    fn changed_blocks_cover_each_touched_block_once() {
        // One sector at the end of block 0 and into block 1, and a range in block 1 again.
        let map = DiskMap {
            blocks: vec![data_block(1)],
            allocated: Vec::new(),
        };
        let ranges = coalesce(vec![(2 * MIB - 512, 1024), (3 * MIB, 512)]);

        let blocks = changed_blocks(&ranges, &geometry(), &map);

        let indices: Vec<u64> = blocks.iter().map(|b| b.index).collect();
        assert_eq!(indices, vec![0, 1]);
        assert!(
            blocks[0].pieces.is_empty(),
            "block 0 maps to zero: nothing to read"
        );
        assert_eq!(blocks[1].pieces.len(), 1);
    }

    #[test]
    fn fallback_reads_data_blocks_and_zeroes_blocks_that_were_data_in_the_base() {
        let g = geometry();
        let zeros = ZeroDigests::new(g.virtual_size, u64::from(g.block_size));
        let mut digests = vec![zeros.for_len(2 * MIB); 4];
        digests[3] = [7; 32];
        let parent = ParentRef {
            path: "/base.vhdx".into(),
            data_write_guid: Uuid::nil(),
            content_digest: [0; 32],
            digests: crate::base::BlockDigests::Inline(digests),
        };
        let map = DiskMap {
            blocks: vec![data_block(1)],
            allocated: Vec::new(),
        };

        let blocks = fallback_blocks("d", &parent, &g, &map).expect("blocks");

        let indices: Vec<u64> = blocks.iter().map(|b| b.index).collect();
        assert_eq!(indices, vec![1, 3]);
        assert!(blocks[1].pieces.is_empty());
    }
}
