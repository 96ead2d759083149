//! The source side: opening a disk's frozen VHDX chain read-only, checking it
//! against the reference point (`DataWriteGuid` of every layer, geometry
//! along the chain), and reading planned blocks from it.
//!
//! Output geometry (MS-VHDX §2.6.2): virtual size, logical/physical sector
//! sizes and virtual disk ID come from the leaf (the chain's own view of the
//! disk); the **block size comes from the base layer** (the last file of the
//! chain). Why the base: it is the only layer every reference point of the
//! disk shares, so exports of successive reference points cut the disk into
//! the same blocks and their per-block digests line up (what a differential
//! export or a tracking fallback compares); differencing layers are often
//! created with other block sizes (Hyper-V uses 1 or 2 MiB for AVHDX files
//! over a 32 MiB base), and the base block size is what the user created the
//! disk with.

use std::path::PathBuf;

use refpoint_vhdx::{Chain, Extent, ExtentSource, VhdxError};
use uuid::Uuid;

use crate::error::{ErrorContext, ErrorKind, vhdx_kind};
use crate::request::DiskExport;

/// A source chain does not match the reference point or cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The chain does not open (missing file, corrupt VHDX, broken parent link).
    #[error("disk {disk}: cannot open VHDX chain: {cause}")]
    Open {
        /// Disk `InstanceID`.
        disk: String,
        /// The `refpoint-vhdx` error (names file, offset and rule).
        cause: Box<VhdxError>,
    },
    /// The chain opened with another number of layers than requested.
    #[error("disk {disk}: chain has {actual} layers, the reference point recorded {expected}")]
    LayerCount {
        /// Disk `InstanceID`.
        disk: String,
        /// Layers in the request.
        expected: usize,
        /// Layers opened.
        actual: usize,
    },
    /// A layer was written after the reference point was taken.
    #[error(
        "disk {disk}: '{}' has DataWriteGuid {actual}, the reference point recorded {expected}",
        path.display()
    )]
    DataWriteGuidMismatch {
        /// Disk `InstanceID`.
        disk: String,
        /// The layer's file.
        path: PathBuf,
        /// `DataWriteGuid` recorded in the reference point.
        expected: Uuid,
        /// `DataWriteGuid` in the file's current header.
        actual: Uuid,
    },
    /// A layer's virtual size or logical sector size differs from the leaf's.
    #[error(
        "disk {disk}: '{}' has {field} {actual}, the leaf has {expected}",
        path.display()
    )]
    GeometryMismatch {
        /// Disk `InstanceID`.
        disk: String,
        /// The layer's file.
        path: PathBuf,
        /// Metadata item (MS-VHDX §2.6.2): `VirtualDiskSize` or `LogicalSectorSize`.
        field: &'static str,
        /// The leaf's value.
        expected: u64,
        /// The layer's value.
        actual: u64,
    },
    /// Mapping the virtual disk through the chain's BATs failed.
    #[error("disk {disk}: cannot map the virtual disk: {cause}")]
    Map {
        /// Disk `InstanceID`.
        disk: String,
        /// The `refpoint-vhdx` error.
        cause: Box<VhdxError>,
    },
    /// The chain's map leaves a hole or overlaps (a `refpoint-vhdx` contract breach).
    #[error("disk {disk}: the extent map jumps from byte {expected} to byte {found}")]
    MapNotContiguous {
        /// Disk `InstanceID`.
        disk: String,
        /// Virtual offset the next extent should start at.
        expected: u64,
        /// Virtual offset it starts at.
        found: u64,
    },
    /// A block does not fit the buffer it is read into (an engine bug, never
    /// caused by file contents: blocks are at most the largest block size).
    #[error("disk {disk}: block {block} needs {needed} bytes, its buffer has {have}")]
    BufferTooSmall {
        /// Disk `InstanceID`.
        disk: String,
        /// Block index.
        block: u64,
        /// Block length, bytes.
        needed: u64,
        /// Buffer length, bytes.
        have: usize,
    },
    /// Reading a planned block failed.
    #[error("disk {disk}: cannot read block {block} (virtual offset {offset}): {cause}")]
    Read {
        /// Disk `InstanceID`.
        disk: String,
        /// Block index (output block size).
        block: u64,
        /// Virtual byte offset of the failed extent.
        offset: u64,
        /// The `refpoint-vhdx` error (names the layer file and file offset).
        cause: Box<VhdxError>,
    },
}

impl SourceError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            SourceError::Open { cause, .. }
            | SourceError::Map { cause, .. }
            | SourceError::Read { cause, .. } => vhdx_kind(cause),
            SourceError::LayerCount { .. }
            | SourceError::DataWriteGuidMismatch { .. }
            | SourceError::GeometryMismatch { .. } => ErrorKind::InvalidState,
            SourceError::MapNotContiguous { .. } | SourceError::BufferTooSmall { .. } => {
                ErrorKind::Failed
            }
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        let (operation, disk, path, offset) = match self {
            SourceError::Open { disk, cause } => (
                "open source chain",
                disk,
                cause.path().map(PathBuf::from),
                cause.offset(),
            ),
            SourceError::LayerCount { disk, .. } => ("open source chain", disk, None, None),
            SourceError::DataWriteGuidMismatch { disk, path, .. }
            | SourceError::GeometryMismatch { disk, path, .. } => {
                ("check source chain", disk, Some(path.clone()), None)
            }
            SourceError::Map { disk, cause } => (
                "map source chain",
                disk,
                cause.path().map(PathBuf::from),
                cause.offset(),
            ),
            SourceError::MapNotContiguous { disk, found, .. } => {
                ("map source chain", disk, None, Some(*found))
            }
            SourceError::BufferTooSmall { disk, .. } => ("read source block", disk, None, None),
            SourceError::Read {
                disk,
                offset,
                cause,
                ..
            } => (
                "read source block",
                disk,
                cause.path().map(PathBuf::from),
                Some(*offset),
            ),
        };
        ErrorContext {
            operation,
            path,
            offset,
            disk: Some(disk.clone()),
        }
    }
}

/// Geometry of an exported VHDX (MS-VHDX §2.6.2 metadata items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputGeometry {
    /// `VirtualDiskSize`, bytes (the leaf's).
    pub virtual_size: u64,
    /// `BlockSize`, bytes (the base layer's; see the module docs).
    pub block_size: u32,
    /// `LogicalSectorSize`, bytes (the leaf's).
    pub logical_sector_size: u32,
    /// `PhysicalSectorSize`, bytes (the leaf's).
    pub physical_sector_size: u32,
    /// `VirtualDiskId` (the leaf's).
    pub virtual_disk_id: Uuid,
}

impl OutputGeometry {
    /// Number of blocks of the virtual disk (the last one may be short).
    #[must_use]
    pub fn block_count(&self) -> u64 {
        self.virtual_size
            .div_ceil(u64::from(self.block_size.max(1)))
    }

    /// Byte length of block `index` (short for the last block of a disk
    /// whose size is not a multiple of the block size; 0 past the end).
    #[must_use]
    pub fn block_len(&self, index: u64) -> u64 {
        let bs = u64::from(self.block_size);
        let start = index.saturating_mul(bs);
        self.virtual_size.saturating_sub(start).min(bs)
    }
}

/// Opens `disk`'s chain read-only and checks it against the reference point.
///
/// # Errors
/// [`SourceError::Open`], [`SourceError::LayerCount`],
/// [`SourceError::DataWriteGuidMismatch`] (names the file and both GUIDs),
/// [`SourceError::GeometryMismatch`].
pub(crate) fn open_chain(disk: &DiskExport) -> Result<(Chain, OutputGeometry), SourceError> {
    let chain = Chain::from_paths(&disk.chain).map_err(|cause| SourceError::Open {
        disk: disk.instance_id.clone(),
        cause: Box::new(cause),
    })?;
    let layers = chain.layers();
    if layers.len() != disk.expected_data_write_guids.len() {
        return Err(SourceError::LayerCount {
            disk: disk.instance_id.clone(),
            expected: disk.expected_data_write_guids.len(),
            actual: layers.len(),
        });
    }
    let leaf = chain.leaf();
    let leaf_geometry = leaf.geometry();
    for (layer, expected) in layers.iter().zip(&disk.expected_data_write_guids) {
        let actual = layer.data_write_guid();
        if actual != *expected {
            return Err(SourceError::DataWriteGuidMismatch {
                disk: disk.instance_id.clone(),
                path: layer.path().to_path_buf(),
                expected: *expected,
                actual,
            });
        }
        let g = layer.geometry();
        let checks = [
            (
                "VirtualDiskSize",
                leaf_geometry.virtual_size,
                g.virtual_size,
            ),
            (
                "LogicalSectorSize",
                u64::from(leaf_geometry.logical_sector_size),
                u64::from(g.logical_sector_size),
            ),
        ];
        if let Some((field, expected, actual)) = checks.into_iter().find(|(_, e, a)| e != a) {
            return Err(SourceError::GeometryMismatch {
                disk: disk.instance_id.clone(),
                path: layer.path().to_path_buf(),
                field,
                expected,
                actual,
            });
        }
    }
    let base = layers.last().unwrap_or(leaf);
    let geometry = OutputGeometry {
        virtual_size: leaf_geometry.virtual_size,
        block_size: base.geometry().block_size,
        logical_sector_size: leaf_geometry.logical_sector_size,
        physical_sector_size: leaf_geometry.physical_sector_size,
        virtual_disk_id: leaf.virtual_disk_id(),
    };
    Ok((chain, geometry))
}

/// One contiguous run of a block that holds data in one chain layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Offset inside the block, bytes.
    pub(crate) offset_in_block: u64,
    /// Length, bytes.
    pub(crate) length: u64,
    /// Chain layer index (0 = leaf).
    pub(crate) layer: usize,
    /// Byte offset in that layer's file.
    pub(crate) file_offset: u64,
}

/// A block of the output that holds data somewhere in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataBlock {
    /// Block index (output block size).
    pub(crate) index: u64,
    /// Block length, bytes (short for a short last block).
    pub(crate) length: u64,
    /// Data runs in ascending offset; the gaps read as zeros.
    pub(crate) pieces: Vec<Piece>,
}

impl DataBlock {
    /// Source bytes this block reads (sum of its pieces).
    pub(crate) fn bytes_to_read(&self) -> u64 {
        self.pieces.iter().map(|p| p.length).sum()
    }
}

/// Reads bytes `[from, from + buf.len())` of `block` of the virtual disk
/// into `buf` (the range must lie inside the block's `length`): the parts of
/// its pieces inside the range by positioned reads from their layer, gaps
/// zero-filled. Returns the source bytes read.
///
/// # Errors
/// [`SourceError::Read`] naming the block and the virtual offset;
/// [`SourceError::BufferTooSmall`] when the range runs past the block.
pub(crate) fn read_block_range(
    chain: &Chain,
    disk: &str,
    block_size: u64,
    block: &DataBlock,
    from: u64,
    buf: &mut [u8],
) -> Result<u64, SourceError> {
    let block_start = block.index.saturating_mul(block_size);
    let to = from.saturating_add(buf.len() as u64);
    if to > block.length {
        return Err(SourceError::BufferTooSmall {
            disk: disk.to_owned(),
            block: block.index,
            needed: to,
            have: usize::try_from(block.length).unwrap_or(usize::MAX),
        });
    }
    let mut cursor = 0usize;
    let mut read = 0u64;
    for piece in &block.pieces {
        let p_start = piece.offset_in_block.max(from);
        let p_end = piece.offset_in_block.saturating_add(piece.length).min(to);
        if p_start >= p_end {
            continue;
        }
        let start = usize::try_from(p_start - from).unwrap_or(usize::MAX);
        let end = usize::try_from(p_end - from).unwrap_or(usize::MAX);
        if let Some(gap) = buf.get_mut(cursor..start) {
            gap.fill(0);
        }
        let virtual_offset = block_start.saturating_add(p_start);
        let extent = Extent {
            virtual_offset,
            length: p_end - p_start,
            source: ExtentSource::Layer {
                layer: piece.layer,
                file_offset: piece
                    .file_offset
                    .saturating_add(p_start - piece.offset_in_block),
            },
        };
        let buf_len = buf.len();
        let Some(dst) = buf.get_mut(start..end) else {
            return Err(SourceError::BufferTooSmall {
                disk: disk.to_owned(),
                block: block.index,
                needed: block.length,
                have: buf_len,
            });
        };
        chain
            .read_extent(&extent, dst)
            .map_err(|cause| SourceError::Read {
                disk: disk.to_owned(),
                block: block.index,
                offset: virtual_offset,
                cause: Box::new(cause),
            })?;
        read += p_end - p_start;
        cursor = end;
    }
    if let Some(tail) = buf.get_mut(cursor..) {
        tail.fill(0);
    }
    Ok(read)
}

/// The planned shape of one disk: its data blocks (ascending) and its
/// allocated byte ranges (coalesced), from one metadata-only map of the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DiskMap {
    pub(crate) blocks: Vec<DataBlock>,
    pub(crate) allocated: Vec<(u64, u64)>,
}

/// Maps the whole virtual disk through the chain (metadata only) and cuts
/// the extents at output block boundaries.
///
/// # Errors
/// [`SourceError::Map`], [`SourceError::MapNotContiguous`].
pub(crate) fn map_disk(
    chain: &Chain,
    disk: &str,
    geometry: &OutputGeometry,
) -> Result<DiskMap, SourceError> {
    let extents = chain
        .map_range(0, geometry.virtual_size)
        .map_err(|cause| SourceError::Map {
            disk: disk.to_owned(),
            cause: Box::new(cause),
        })?;
    let extents = extents.into_iter().map(|e| {
        let source = match e.source {
            ExtentSource::Zero => None,
            ExtentSource::Layer { layer, file_offset } => Some((layer, file_offset)),
        };
        (e.virtual_offset, e.length, source)
    });
    cut_into_blocks(extents, disk, geometry)
}

/// Cuts `(virtual_offset, length, Some((layer, file_offset)) | None for zero)`
/// extents, which must tile `[0, virtual_size)` in order, into data blocks.
pub(crate) fn cut_into_blocks(
    extents: impl IntoIterator<Item = (u64, u64, Option<(usize, u64)>)>,
    disk: &str,
    geometry: &OutputGeometry,
) -> Result<DiskMap, SourceError> {
    let bs = u64::from(geometry.block_size.max(1));
    let mut map = DiskMap::default();
    let mut expected = 0u64;
    for (offset, length, source) in extents {
        let end = offset.checked_add(length).filter(|_| offset == expected);
        let Some(end) = end.filter(|e| *e <= geometry.virtual_size) else {
            return Err(SourceError::MapNotContiguous {
                disk: disk.to_owned(),
                expected,
                found: offset,
            });
        };
        expected = end;
        let Some((layer, file_offset)) = source else {
            continue;
        };
        match map.allocated.last_mut() {
            Some((start, len)) if *start + *len == offset => *len += length,
            _ => map.allocated.push((offset, length)),
        }
        let mut at = offset;
        while at < end {
            let index = at / bs;
            let block_start = index * bs;
            let piece_end = end.min(block_start.saturating_add(bs));
            let piece = Piece {
                offset_in_block: at - block_start,
                length: piece_end - at,
                layer,
                file_offset: file_offset.saturating_add(at - offset),
            };
            match map.blocks.last_mut() {
                Some(b) if b.index == index => b.pieces.push(piece),
                _ => map.blocks.push(DataBlock {
                    index,
                    length: geometry.block_len(index),
                    pieces: vec![piece],
                }),
            }
            at = piece_end;
        }
    }
    if expected != geometry.virtual_size {
        return Err(SourceError::MapNotContiguous {
            disk: disk.to_owned(),
            expected,
            found: geometry.virtual_size,
        });
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const MIB32: u32 = 1024 * 1024;

    fn geometry(virtual_size: u64, block_size: u32) -> OutputGeometry {
        OutputGeometry {
            virtual_size,
            block_size,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            virtual_disk_id: Uuid::nil(),
        }
    }

    #[test]
    fn cut_splits_an_extent_spanning_two_blocks() {
        // 4 MiB disk, 2 MiB blocks; one data extent covering [1 MiB, 3 MiB).
        let g = geometry(4 * MIB, 2 * MIB32);
        let extents = [
            (0, MIB, None),
            (MIB, 2 * MIB, Some((1, 10 * MIB))),
            (3 * MIB, MIB, None),
        ];

        let map = cut_into_blocks(extents, "d", &g).expect("map");

        assert_eq!(map.allocated, vec![(MIB, 2 * MIB)]);
        assert_eq!(
            map.blocks,
            vec![
                DataBlock {
                    index: 0,
                    length: 2 * MIB,
                    pieces: vec![Piece {
                        offset_in_block: MIB,
                        length: MIB,
                        layer: 1,
                        file_offset: 10 * MIB
                    }]
                },
                DataBlock {
                    index: 1,
                    length: 2 * MIB,
                    pieces: vec![Piece {
                        offset_in_block: 0,
                        length: MIB,
                        layer: 1,
                        file_offset: 11 * MIB
                    }]
                },
            ]
        );
    }

    #[test]
    fn cut_merges_pieces_of_two_layers_into_one_block_and_one_range() {
        let g = geometry(2 * MIB, 2 * MIB32);
        let extents = [
            (0, 4096, Some((0, 5 * MIB))),
            (4096, 2 * MIB - 4096, Some((1, 9 * MIB))),
        ];

        let map = cut_into_blocks(extents, "d", &g).expect("map");

        assert_eq!(map.allocated, vec![(0, 2 * MIB)]);
        assert_eq!(map.blocks.len(), 1);
        assert_eq!(map.blocks[0].pieces.len(), 2);
        assert_eq!(map.blocks[0].bytes_to_read(), 2 * MIB);
    }

    #[test]
    fn cut_gives_short_last_block_its_length() {
        let g = geometry(MIB + 512, MIB32);
        let extents = [(0, MIB, None), (MIB, 512, Some((0, 3 * MIB)))];

        let map = cut_into_blocks(extents, "d", &g).expect("map");

        assert_eq!(map.blocks[0].index, 1);
        assert_eq!(map.blocks[0].length, 512);
    }

    #[test]
    fn cut_with_hole_between_extents_is_not_contiguous() {
        let g = geometry(2 * MIB, MIB32);
        let extents = [(0, MIB, None), (MIB + 512, MIB - 512, None)];

        let result = cut_into_blocks(extents, "d", &g);

        assert!(matches!(
            result,
            Err(SourceError::MapNotContiguous { expected, found, .. }) if expected == MIB && found == MIB + 512
        ));
    }

    #[test]
    fn cut_with_map_short_of_virtual_size_is_not_contiguous() {
        let g = geometry(2 * MIB, MIB32);

        let result = cut_into_blocks([(0, MIB, None)], "d", &g);

        assert!(matches!(
            result,
            Err(SourceError::MapNotContiguous { expected, .. }) if expected == MIB
        ));
    }

    #[test]
    fn cut_with_extent_past_virtual_size_is_not_contiguous() {
        let g = geometry(MIB, MIB32);

        let result = cut_into_blocks([(0, 2 * MIB, None)], "d", &g);

        assert!(matches!(result, Err(SourceError::MapNotContiguous { .. })));
    }
}
