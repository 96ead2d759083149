//! The layout refpoint gives a new VHDX file, and the serializers of the
//! structures written at creation: File Type Identifier, headers, region
//! tables (via `region`), metadata table and items (MS-VHDX §2.2, §2.6).
//!
//! ```text
//! 0x000000  header section (identifier, 2 headers, 2 region tables)
//! 0x100000  log, 1 MiB (LogGuid 0: empty)
//! 0x200000  metadata region, 1 MiB (table, items from 0x10000)
//! 0x300000  BAT region, ceil(entries·8 / 1 MiB) MiB
//! ....      differencing only: one zeroed sector bitmap block per chunk
//! ....      payload blocks, appended on 1 MiB boundaries
//! ```
//!
//! This is the Windows layout (metadata before the BAT, vhdx.md §2).
//!
//! A differencing file gets every chunk's sector bitmap block at creation
//! (SB_BLOCK_PRESENT, all bits 0, a sparse hole on disk). The spec allows it
//! (§2.5.1.2), readers that follow the spec never look at it for
//! NOT_PRESENT blocks, and libvhdi needs it: for every non-FULLY_PRESENT
//! block of a differencing file it reads the bitmap at the chunk's SB entry
//! offset even when that entry is NOT_PRESENT (offset 0, i.e. the header
//! section), returning file header bytes as disk data
//! (`libvhdi_block_allocation_table.c`, read_element_data). Cost: 1 MiB of
//! file length, no disk space, per 4 GiB (512-byte sectors) or 32 GiB
//! (4096-byte sectors) of virtual size.

use uuid::Uuid;
use zerocopy::IntoBytes;
use zerocopy::little_endian::{U16, U32, U64};

use crate::format::{
    self, BAT_REGION_GUID, FILE_IDENTIFIER_SIGNATURE, FILE_PARAMETERS_GUID,
    FILE_PARAMETERS_HAS_PARENT, LOGICAL_SECTOR_SIZE_GUID, METADATA_FLAG_IS_REQUIRED,
    METADATA_FLAG_IS_VIRTUAL_DISK, METADATA_REGION_GUID, METADATA_TABLE_SIGNATURE,
    METADATA_TABLE_SIZE, MIB, PARENT_LOCATOR_GUID, PHYSICAL_SECTOR_SIZE_GUID, RawFileIdentifier,
    RawFileParameters, RawMetadataEntry, RawMetadataTableHeader, VIRTUAL_DISK_ID_GUID,
    VIRTUAL_DISK_SIZE_GUID,
};
use crate::region::RegionEntry;

/// File offset of the log in a file refpoint creates, bytes.
pub(crate) const LOG_OFFSET: u64 = MIB;
/// Length of the log in a file refpoint creates, bytes.
pub(crate) const LOG_LENGTH: u32 = 1024 * 1024;
/// File offset of the metadata region, bytes.
pub(crate) const METADATA_OFFSET: u64 = 2 * MIB;
/// Length of the metadata region, bytes.
pub(crate) const METADATA_LENGTH: u32 = 1024 * 1024;
/// File offset of the BAT region, bytes.
pub(crate) const BAT_OFFSET: u64 = 3 * MIB;
/// First metadata item offset inside the region (MS-VHDX §2.6.1.2: at least 64 KiB).
const METADATA_ITEMS_OFFSET: usize = METADATA_TABLE_SIZE;
/// Maximum creator length in UTF-16 code units (512 bytes, MS-VHDX §2.2.1).
pub(crate) const MAX_CREATOR_UNITS: usize = 256;

/// Geometry and positions of a file about to be created. All sizes in bytes
/// unless named otherwise. Built from validated options only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageLayout {
    pub virtual_size: u64,
    pub block_size: u32,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub has_parent: bool,
    /// Payload blocks per sector bitmap block.
    pub chunk_ratio: u64,
    /// Payload blocks of the virtual disk.
    pub data_blocks: u64,
    /// BAT entries (payload and sector bitmap) the BAT region holds.
    pub bat_entries: u64,
    /// BAT region length, a multiple of 1 MiB.
    pub bat_length: u64,
    /// Sector bitmap blocks allocated at creation: one per chunk in a
    /// differencing file, none otherwise.
    pub sector_bitmap_blocks: u64,
}

impl ImageLayout {
    /// Computes the BAT size (MS-VHDX §2.5, vhdx.md §7.3) for validated
    /// parameters. `None` only if the arithmetic overflows, which validated
    /// inputs (≤ 64 TiB, block ≥ 1 MiB) never do.
    pub(crate) fn new(
        virtual_size: u64,
        block_size: u32,
        logical_sector_size: u32,
        physical_sector_size: u32,
        has_parent: bool,
    ) -> Option<ImageLayout> {
        let chunk_ratio = format::chunk_ratio(logical_sector_size, block_size);
        let data_blocks = format::data_blocks_count(virtual_size, block_size);
        let bat_entries = format::total_bat_entries(data_blocks, chunk_ratio, has_parent);
        let bat_length = format::round_up_mib(bat_entries.checked_mul(8)?)?.max(MIB);
        // The region table stores the length as u32.
        u32::try_from(bat_length).ok()?;
        let sector_bitmap_blocks = if has_parent {
            format::sector_bitmap_blocks_count(data_blocks, chunk_ratio)
        } else {
            0
        };
        Some(ImageLayout {
            virtual_size,
            block_size,
            logical_sector_size,
            physical_sector_size,
            has_parent,
            chunk_ratio,
            data_blocks,
            bat_entries,
            bat_length,
            sector_bitmap_blocks,
        })
    }

    /// File offset of the sector bitmap block of `chunk` (differencing files):
    /// the 1 MiB blocks right after the BAT region, in chunk order.
    pub(crate) fn sector_bitmap_offset(&self, chunk: u64) -> u64 {
        BAT_OFFSET
            .saturating_add(self.bat_length)
            .saturating_add(chunk.saturating_mul(MIB))
    }

    /// Bytes of payload block `block` inside the virtual disk: the block
    /// size, or less for the last block of a disk whose size is not a block
    /// multiple (0 past the end).
    pub(crate) fn block_length(&self, block: u64) -> u64 {
        let bs = u64::from(self.block_size);
        self.virtual_size
            .saturating_sub(block.saturating_mul(bs))
            .min(bs)
    }

    /// First byte after the BAT region and the sector bitmap blocks: where
    /// payload blocks start, and the size of a freshly created file.
    pub(crate) fn first_block_offset(&self) -> u64 {
        self.sector_bitmap_offset(self.sector_bitmap_blocks)
    }
}

/// The File Type Identifier (MS-VHDX §2.2.1): `vhdxfile` and the UTF-16LE
/// creator, 520 bytes. `None` if the creator exceeds 256 UTF-16 units.
pub(crate) fn file_identifier_bytes(creator: &str) -> Option<Vec<u8>> {
    let units: Vec<u16> = creator.encode_utf16().collect();
    if units.len() > MAX_CREATOR_UNITS {
        return None;
    }
    let mut raw = RawFileIdentifier {
        signature: U64::new(FILE_IDENTIFIER_SIGNATURE),
        creator: [0; 512],
    };
    for (slot, unit) in raw.creator.chunks_exact_mut(2).zip(units) {
        slot.copy_from_slice(&unit.to_le_bytes());
    }
    Some(raw.as_bytes().to_vec())
}

/// The two region table entries of `layout`: BAT and metadata, both
/// Required (MS-VHDX §2.2.3.2); serialised by [`crate::region::table_to_bytes`].
pub(crate) fn region_entries(layout: &ImageLayout) -> [RegionEntry; 2] {
    [
        RegionEntry {
            guid: BAT_REGION_GUID,
            file_offset: BAT_OFFSET,
            // ImageLayout::new guarantees the BAT length fits in u32.
            length: u32::try_from(layout.bat_length).unwrap_or(u32::MAX),
            required: true,
        },
        RegionEntry {
            guid: METADATA_REGION_GUID,
            file_offset: METADATA_OFFSET,
            length: METADATA_LENGTH,
            required: true,
        },
    ]
}

/// The metadata region content (MS-VHDX §2.6): the 64 KiB table followed by
/// the items at 0x10000 in Windows order — File Parameters, Virtual Disk
/// Size, Logical and Physical Sector Size, Virtual Disk ID, then the Parent
/// Locator when `parent_locator` is given. Returns the bytes from the region
/// start to the end of the last item; `None` if they do not fit in the
/// 1 MiB region.
pub(crate) fn metadata_region_bytes(
    layout: &ImageLayout,
    virtual_disk_id: Uuid,
    parent_locator: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let file_parameters = RawFileParameters {
        block_size: U32::new(layout.block_size),
        flags: U32::new(if layout.has_parent {
            FILE_PARAMETERS_HAS_PARENT
        } else {
            0
        }),
    };
    let virtual_disk_flags = METADATA_FLAG_IS_VIRTUAL_DISK | METADATA_FLAG_IS_REQUIRED;
    let mut items: Vec<(Uuid, u32, Vec<u8>)> = vec![
        (
            FILE_PARAMETERS_GUID,
            METADATA_FLAG_IS_REQUIRED,
            file_parameters.as_bytes().to_vec(),
        ),
        (
            VIRTUAL_DISK_SIZE_GUID,
            virtual_disk_flags,
            layout.virtual_size.to_le_bytes().to_vec(),
        ),
        (
            LOGICAL_SECTOR_SIZE_GUID,
            virtual_disk_flags,
            layout.logical_sector_size.to_le_bytes().to_vec(),
        ),
        (
            PHYSICAL_SECTOR_SIZE_GUID,
            virtual_disk_flags,
            layout.physical_sector_size.to_le_bytes().to_vec(),
        ),
        (
            VIRTUAL_DISK_ID_GUID,
            virtual_disk_flags,
            format::guid_to_le(virtual_disk_id).to_vec(),
        ),
    ];
    if let Some(locator) = parent_locator {
        items.push((
            PARENT_LOCATOR_GUID,
            METADATA_FLAG_IS_REQUIRED,
            locator.to_vec(),
        ));
    }
    let header = RawMetadataTableHeader {
        signature: U64::new(METADATA_TABLE_SIGNATURE),
        reserved: U16::new(0),
        entry_count: U16::new(u16::try_from(items.len()).ok()?),
        reserved2: [0; 20],
    };
    let mut bytes = Vec::with_capacity(METADATA_ITEMS_OFFSET + 4096);
    bytes.extend_from_slice(header.as_bytes());
    let mut item_bytes = Vec::new();
    for (guid, flags, data) in &items {
        let offset = METADATA_ITEMS_OFFSET.checked_add(item_bytes.len())?;
        let entry = RawMetadataEntry {
            item_id: format::guid_to_le(*guid),
            offset: U32::new(u32::try_from(offset).ok()?),
            length: U32::new(u32::try_from(data.len()).ok()?),
            flags: U32::new(*flags),
            reserved: U32::new(0),
        };
        bytes.extend_from_slice(entry.as_bytes());
        item_bytes.extend_from_slice(data);
    }
    bytes.resize(METADATA_ITEMS_OFFSET, 0);
    bytes.extend_from_slice(&item_bytes);
    (bytes.len() <= METADATA_LENGTH as usize).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB32: u32 = 1 << 20;

    fn layout(size: u64, block: u32, lss: u32, has_parent: bool) -> ImageLayout {
        ImageLayout::new(size, block, lss, 4096, has_parent).unwrap()
    }

    #[test]
    fn layout_of_64_tib_disk_with_1_mib_blocks_needs_513_mib_bat() {
        // 2^26 blocks + 2^26/4096 SB entries - 1 → 513 MiB after rounding (openvmm's cap).
        let l = layout(format::MAX_VIRTUAL_DISK_SIZE, MIB32, 512, false);

        assert_eq!(l.bat_length, 513 * MIB);
        assert_eq!(l.first_block_offset(), 516 * MIB);
    }

    #[test]
    fn differencing_layout_counts_the_trailing_sector_bitmap_entry() {
        // 8 GiB, 2 MiB blocks: 4096 blocks, CR 2048 → 4098 entries (Windows child, vhdx.md §7.3).
        let l = layout(8 << 30, 2 * MIB32, 512, true);

        assert_eq!(l.bat_entries, 4098);
        assert_eq!(l.bat_length, MIB);
        assert_eq!(l.sector_bitmap_blocks, 2);
        assert_eq!(l.sector_bitmap_offset(1), 5 * MIB);
        assert_eq!(l.first_block_offset(), 6 * MIB);
    }

    #[test]
    fn creator_longer_than_256_utf16_units_is_refused() {
        assert!(file_identifier_bytes(&"x".repeat(256)).is_some());
        assert!(file_identifier_bytes(&"x".repeat(257)).is_none());
    }
}
