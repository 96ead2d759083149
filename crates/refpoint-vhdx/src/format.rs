//! MS-VHDX wire format: fixed offsets, signatures, GUIDs, little-endian raw
//! structures and the arithmetic of the BAT.
//!
//! Everything here is a *wire* definition: private-to-the-crate raw structs
//! (zerocopy, explicit little-endian fields, `Unaligned`) with compile-time
//! size checks, plus pure functions. Validation into domain types happens in
//! the modules named after each structure (`header`, `region`, `metadata`,
//! `locator`, `bat`, `log`).
//!
//! ```text
//! file offset   structure (MS-VHDX §2.2)
//! 0x00000       File Type Identifier  "vhdxfile" + UTF-16LE creator
//! 0x10000       Header 1              "head", 4 KiB, CRC-32C
//! 0x20000       Header 2              "head", 4 KiB, CRC-32C
//! 0x30000       Region Table 1        "regi", 64 KiB, CRC-32C
//! 0x40000       Region Table 2        "regi", 64 KiB, CRC-32C
//! 0x100000 ..   log, BAT, metadata, payload and sector bitmap blocks,
//!               each on a 1 MiB boundary, in any order
//! ```

use uuid::Uuid;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// 1 KiB in bytes.
pub const KIB: u64 = 1024;
/// 1 MiB in bytes; the alignment unit of every region and block (MS-VHDX §2.1).
pub const MIB: u64 = 1024 * 1024;

/// Offset of the File Type Identifier (MS-VHDX §2.2.1).
pub const FILE_IDENTIFIER_OFFSET: u64 = 0;
/// Offset of header 1 (MS-VHDX §2.2).
pub const HEADER1_OFFSET: u64 = 64 * KIB;
/// Offset of header 2 (MS-VHDX §2.2).
pub const HEADER2_OFFSET: u64 = 128 * KIB;
/// Offset of region table 1 (MS-VHDX §2.2).
pub const REGION_TABLE1_OFFSET: u64 = 192 * KIB;
/// Offset of region table 2 (MS-VHDX §2.2).
pub const REGION_TABLE2_OFFSET: u64 = 256 * KIB;
/// Size of the header section; the first region may start here (MS-VHDX §2.2).
pub const HEADER_SECTION_SIZE: u64 = MIB;
/// Size in bytes of one header structure, the span of its CRC (MS-VHDX §2.2.2).
pub const HEADER_SIZE: usize = 4096;
/// Size in bytes of one region table, the span of its CRC (MS-VHDX §2.2.3).
pub const REGION_TABLE_SIZE: usize = 64 * 1024;
/// Size in bytes of the metadata table at the start of the metadata region (MS-VHDX §2.6.1).
pub const METADATA_TABLE_SIZE: usize = 64 * 1024;
/// Log entries and their sectors are multiples of 4 KiB (MS-VHDX §2.3).
pub const LOG_SECTOR_SIZE: u64 = 4096;
/// Nothing below this offset may be written through the log (Region Table 1 and above).
pub const LOGGABLE_OFFSET: u64 = REGION_TABLE1_OFFSET;

/// `vhdxfile` as a little-endian u64 (MS-VHDX §2.2.1).
pub const FILE_IDENTIFIER_SIGNATURE: u64 = 0x656C_6966_7864_6876;
/// `head` (MS-VHDX §2.2.2).
pub const HEADER_SIGNATURE: u32 = 0x6461_6568;
/// `regi` (MS-VHDX §2.2.3).
pub const REGION_TABLE_SIGNATURE: u32 = 0x6967_6572;
/// `metadata` as a little-endian u64 (MS-VHDX §2.6.1.1).
pub const METADATA_TABLE_SIGNATURE: u64 = 0x6174_6164_6174_656D;
/// `loge` (MS-VHDX §2.3.1.1).
pub const LOG_ENTRY_SIGNATURE: u32 = 0x6567_6F6C;
/// `zero` (MS-VHDX §2.3.1.2).
pub const ZERO_DESCRIPTOR_SIGNATURE: u32 = 0x6F72_657A;
/// `desc` (MS-VHDX §2.3.1.3).
pub const DATA_DESCRIPTOR_SIGNATURE: u32 = 0x6373_6564;
/// `data` (MS-VHDX §2.3.1.4).
pub const DATA_SECTOR_SIGNATURE: u32 = 0x6174_6164;

/// Maximum region table entries (MS-VHDX §2.2.3.1).
pub const MAX_REGION_ENTRIES: u32 = 2047;
/// Maximum metadata table entries (MS-VHDX §2.6.1.1).
pub const MAX_METADATA_ENTRIES: u16 = 2047;
/// Maximum length of one metadata item in bytes (MS-VHDX §2.6.1.2).
pub const MAX_METADATA_ITEM_LENGTH: u32 = 1 << 20;
/// Smallest legal block size in bytes (MS-VHDX §2.6.2.1).
pub const MIN_BLOCK_SIZE: u32 = 1 << 20;
/// Largest legal block size in bytes (MS-VHDX §2.6.2.1).
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;
/// Largest legal virtual disk size in bytes, 64 TiB (MS-VHDX §2.6.2.2).
pub const MAX_VIRTUAL_DISK_SIZE: u64 = 64 * 1024 * 1024 * MIB;
/// Sectors described by one sector bitmap block: 2^23 bits in 1 MiB (MS-VHDX §2.4).
pub const SECTORS_PER_BITMAP_BLOCK: u64 = 1 << 23;
/// Size of one sector bitmap block in bytes (MS-VHDX §2.4).
pub const SECTOR_BITMAP_BLOCK_SIZE: u64 = MIB;

/// Region table entry GUID of the BAT (MS-VHDX §2.2.3.2).
pub const BAT_REGION_GUID: Uuid = Uuid::from_u128(0x2DC27766_F623_4200_9D64_115E9BFD4A08);
/// Region table entry GUID of the metadata region (MS-VHDX §2.2.3.2).
pub const METADATA_REGION_GUID: Uuid = Uuid::from_u128(0x8B7CA206_4790_4B9A_B8FE_575F050F886E);

/// Metadata item: File Parameters (MS-VHDX §2.6.2.1).
pub const FILE_PARAMETERS_GUID: Uuid = Uuid::from_u128(0xCAA16737_FA36_4D43_B3B6_33F0AA44E76B);
/// Metadata item: Virtual Disk Size (MS-VHDX §2.6.2.2).
pub const VIRTUAL_DISK_SIZE_GUID: Uuid = Uuid::from_u128(0x2FA54224_CD1B_4876_B211_5DBED83BF4B8);
/// Metadata item: Virtual Disk ID, "Page 83 Data" in spec v1.00 (MS-VHDX §2.6.2.3).
pub const VIRTUAL_DISK_ID_GUID: Uuid = Uuid::from_u128(0xBECA12AB_B2E6_4523_93EF_C309E000C746);
/// Metadata item: Logical Sector Size (MS-VHDX §2.6.2.4).
pub const LOGICAL_SECTOR_SIZE_GUID: Uuid = Uuid::from_u128(0x8141BF1D_A96F_4709_BA47_F233A8FAAB5F);
/// Metadata item: Physical Sector Size (MS-VHDX §2.6.2.5).
pub const PHYSICAL_SECTOR_SIZE_GUID: Uuid = Uuid::from_u128(0xCDA348C7_445D_4471_9CC9_E9885251C556);
/// Metadata item: Parent Locator (MS-VHDX §2.6.2.6).
pub const PARENT_LOCATOR_GUID: Uuid = Uuid::from_u128(0xA8D35F2D_B30B_454D_ABF7_D3D84834AB0C);
/// Parent locator type of a VHDX parent (MS-VHDX §2.6.2.6.3).
pub const VHDX_LOCATOR_TYPE_GUID: Uuid = Uuid::from_u128(0xB04AEFB7_D19E_4A81_B789_25B8E9445913);
/// Metadata item known to Microsoft's implementation: CHS parameters (openvmm), not required.
pub const CHS_PARAMETERS_GUID: Uuid = Uuid::from_u128(0xDA02D7BC_3D3A_423C_AC88_2A36AB21479B);
/// Metadata item present only while a create is in progress (openvmm): the file is unfinished.
pub const INCOMPLETE_FILE_GUID: Uuid = Uuid::from_u128(0x71CC85F0_1B69_4E28_9558_C3BF83AE75D3);

/// Metadata entry flag: IsUser (MS-VHDX §2.6.1.2).
pub const METADATA_FLAG_IS_USER: u32 = 1;
/// Metadata entry flag: IsVirtualDisk (MS-VHDX §2.6.1.2).
pub const METADATA_FLAG_IS_VIRTUAL_DISK: u32 = 2;
/// Metadata entry flag: IsRequired (MS-VHDX §2.6.1.2).
pub const METADATA_FLAG_IS_REQUIRED: u32 = 4;
/// File Parameters flag: LeaveBlockAllocated (MS-VHDX §2.6.2.1).
pub const FILE_PARAMETERS_LEAVE_BLOCK_ALLOCATED: u32 = 1;
/// File Parameters flag: HasParent (MS-VHDX §2.6.2.1).
pub const FILE_PARAMETERS_HAS_PARENT: u32 = 2;

/// Payload BAT entry state values (MS-VHDX §2.5.1.1).
pub mod payload_state {
    /// PAYLOAD_BLOCK_NOT_PRESENT
    pub const NOT_PRESENT: u8 = 0;
    /// PAYLOAD_BLOCK_UNDEFINED
    pub const UNDEFINED: u8 = 1;
    /// PAYLOAD_BLOCK_ZERO
    pub const ZERO: u8 = 2;
    /// PAYLOAD_BLOCK_UNMAPPED
    pub const UNMAPPED: u8 = 3;
    /// PAYLOAD_BLOCK_UNMAPPED as numbered in spec v0.95; qemu still accepts it.
    pub const UNMAPPED_V095: u8 = 5;
    /// PAYLOAD_BLOCK_FULLY_PRESENT
    pub const FULLY_PRESENT: u8 = 6;
    /// PAYLOAD_BLOCK_PARTIALLY_PRESENT
    pub const PARTIALLY_PRESENT: u8 = 7;
}

/// Sector bitmap BAT entry state values (MS-VHDX §2.5.1.2).
pub mod sector_bitmap_state {
    /// SB_BLOCK_NOT_PRESENT
    pub const NOT_PRESENT: u8 = 0;
    /// SB_BLOCK_PRESENT
    pub const PRESENT: u8 = 6;
}

/// Converts a GUID stored in Microsoft's mixed-endian layout (Data1..3 little
/// endian, Data4 raw) into a [`Uuid`] (MS-VHDX §2, "GUID").
pub fn guid_from_le(bytes: [u8; 16]) -> Uuid {
    Uuid::from_bytes_le(bytes)
}

/// Converts a [`Uuid`] into Microsoft's mixed-endian on-disk layout.
pub fn guid_to_le(guid: Uuid) -> [u8; 16] {
    guid.to_bytes_le()
}

/// Formats a GUID the way the parent locator stores `parent_linkage`:
/// braced, lower case, e.g. `{ff34003b-11ed-4cf8-a166-b2be05e20b80}`.
pub fn guid_braced(guid: Uuid) -> String {
    format!("{{{guid}}}")
}

/// Parses a GUID with or without braces, in either case (parent locator values,
/// CIM strings). Returns `None` when the text is not a GUID.
pub fn parse_guid(text: &str) -> Option<Uuid> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(trimmed);
    Uuid::parse_str(inner).ok()
}

/// CRC-32C (Castagnoli) of `bytes` computed with the 4-byte checksum field at
/// `field_offset` treated as zero, as every VHDX checksum is defined
/// (MS-VHDX §2). `bytes` is not modified. Panics never: a field offset past
/// the end simply contributes nothing.
pub fn crc32c_with_zeroed_field(bytes: &[u8], field_offset: usize) -> u32 {
    let end = field_offset.saturating_add(4).min(bytes.len());
    let start = field_offset.min(bytes.len());
    let crc = crc32c::crc32c(&bytes[..start]);
    let zeros = [0u8; 4];
    let crc = crc32c::crc32c_append(crc, &zeros[..end - start]);
    crc32c::crc32c_append(crc, &bytes[end..])
}

/// File Type Identifier (MS-VHDX §2.2.1): signature and UTF-16LE creator.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawFileIdentifier {
    pub signature: U64,
    pub creator: [u8; 512],
}
const _: () = assert!(size_of::<RawFileIdentifier>() == 520);

/// Header (MS-VHDX §2.2.2): the first 80 bytes; bytes 80..4096 are reserved.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawHeader {
    pub signature: U32,
    pub checksum: U32,
    pub sequence_number: U64,
    pub file_write_guid: [u8; 16],
    pub data_write_guid: [u8; 16],
    pub log_guid: [u8; 16],
    pub log_version: U16,
    pub version: U16,
    pub log_length: U32,
    pub log_offset: U64,
}
const _: () = assert!(size_of::<RawHeader>() == 80);
/// Byte offset of the checksum inside a header.
pub(crate) const HEADER_CHECKSUM_OFFSET: usize = 4;

/// Region table header (MS-VHDX §2.2.3.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawRegionTableHeader {
    pub signature: U32,
    pub checksum: U32,
    pub entry_count: U32,
    pub reserved: U32,
}
const _: () = assert!(size_of::<RawRegionTableHeader>() == 16);
/// Byte offset of the checksum inside a region table.
pub(crate) const REGION_TABLE_CHECKSUM_OFFSET: usize = 4;

/// Region table entry (MS-VHDX §2.2.3.2).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawRegionEntry {
    pub guid: [u8; 16],
    pub file_offset: U64,
    pub length: U32,
    /// Bit 0: Required.
    pub required: U32,
}
const _: () = assert!(size_of::<RawRegionEntry>() == 32);

/// Metadata table header (MS-VHDX §2.6.1.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawMetadataTableHeader {
    pub signature: U64,
    pub reserved: U16,
    pub entry_count: U16,
    pub reserved2: [u8; 20],
}
const _: () = assert!(size_of::<RawMetadataTableHeader>() == 32);

/// Metadata table entry (MS-VHDX §2.6.1.2).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawMetadataEntry {
    pub item_id: [u8; 16],
    pub offset: U32,
    pub length: U32,
    /// Bit 0 IsUser, bit 1 IsVirtualDisk, bit 2 IsRequired.
    pub flags: U32,
    pub reserved: U32,
}
const _: () = assert!(size_of::<RawMetadataEntry>() == 32);

/// File Parameters item (MS-VHDX §2.6.2.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawFileParameters {
    pub block_size: U32,
    pub flags: U32,
}
const _: () = assert!(size_of::<RawFileParameters>() == 8);

/// Parent locator header (MS-VHDX §2.6.2.6.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawParentLocatorHeader {
    pub locator_type: [u8; 16],
    pub reserved: U16,
    pub key_value_count: U16,
}
const _: () = assert!(size_of::<RawParentLocatorHeader>() == 20);

/// Parent locator key/value entry (MS-VHDX §2.6.2.6.2); offsets are relative
/// to the start of the locator item, lengths in bytes of UTF-16LE.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawParentLocatorEntry {
    pub key_offset: U32,
    pub value_offset: U32,
    pub key_length: U16,
    pub value_length: U16,
}
const _: () = assert!(size_of::<RawParentLocatorEntry>() == 12);

/// Log entry header (MS-VHDX §2.3.1.1).
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawLogEntryHeader {
    pub signature: U32,
    pub checksum: U32,
    pub entry_length: U32,
    pub tail: U32,
    pub sequence_number: U64,
    pub descriptor_count: U32,
    pub reserved: U32,
    pub log_guid: [u8; 16],
    pub flushed_file_offset: U64,
    pub last_file_offset: U64,
}
const _: () = assert!(size_of::<RawLogEntryHeader>() == 64);
/// Byte offset of the checksum inside a log entry.
pub(crate) const LOG_ENTRY_CHECKSUM_OFFSET: usize = 4;

/// Log descriptor, either `zero` (MS-VHDX §2.3.1.2) or `desc` (§2.3.1.3).
/// For `zero`: `trailing_bytes` is reserved and `leading_bytes` is ZeroLength.
/// For `desc`: TrailingBytes are the last 4 bytes and LeadingBytes the first
/// 8 bytes of the 4 KiB update.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawLogDescriptor {
    pub signature: U32,
    pub trailing_bytes: [u8; 4],
    pub leading_bytes: [u8; 8],
    pub file_offset: U64,
    pub sequence_number: U64,
}
const _: () = assert!(size_of::<RawLogDescriptor>() == 32);

/// Log data sector (MS-VHDX §2.3.1.4): 4 KiB holding bytes 8..4092 of an update.
#[derive(Debug, Clone, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawLogDataSector {
    pub signature: U32,
    pub sequence_high: U32,
    pub data: [u8; 4084],
    pub sequence_low: U32,
}
const _: () = assert!(size_of::<RawLogDataSector>() == 4096);

/// One 64-bit BAT entry (MS-VHDX §2.5.1): bits 0–2 state, 3–19 reserved,
/// 20–63 FileOffsetMB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatEntry(pub u64);

impl BatEntry {
    /// Builds an entry from a state value and a file offset in bytes (must be
    /// a multiple of 1 MiB; lower bits are dropped).
    pub fn new(state: u8, file_offset: u64) -> Self {
        BatEntry((file_offset & !(MIB - 1)) | u64::from(state & 7))
    }
    /// The 3-bit state field.
    pub fn state(self) -> u8 {
        (self.0 & 7) as u8
    }
    /// The reserved bits 3–19; must be zero.
    pub fn reserved_bits(self) -> u64 {
        self.0 & 0x000F_FFF8
    }
    /// FileOffsetMB converted to a byte offset.
    pub fn file_offset(self) -> u64 {
        self.0 & !(MIB - 1)
    }
}

/// Chunk ratio: payload blocks per sector bitmap block,
/// `2^23 × logical_sector_size / block_size` (MS-VHDX §2.4). Inputs must be
/// validated (power-of-two block size ≤ 256 MiB, sector 512 or 4096), which
/// makes the result a power of two ≥ 16.
pub fn chunk_ratio(logical_sector_size: u32, block_size: u32) -> u64 {
    SECTORS_PER_BITMAP_BLOCK * u64::from(logical_sector_size) / u64::from(block_size.max(1))
}

/// Number of payload blocks, `ceil(virtual_size / block_size)` (MS-VHDX §2.5).
pub fn data_blocks_count(virtual_size: u64, block_size: u32) -> u64 {
    virtual_size.div_ceil(u64::from(block_size.max(1)))
}

/// Number of sector bitmap blocks, `ceil(data_blocks / chunk_ratio)` (MS-VHDX §2.5).
pub fn sector_bitmap_blocks_count(data_blocks: u64, chunk_ratio: u64) -> u64 {
    data_blocks.div_ceil(chunk_ratio.max(1))
}

/// Total BAT entries (MS-VHDX §2.5): dynamic/fixed files omit the trailing
/// sector bitmap entry; differencing files include every chunk's entry.
pub fn total_bat_entries(data_blocks: u64, chunk_ratio: u64, has_parent: bool) -> u64 {
    if has_parent {
        sector_bitmap_blocks_count(data_blocks, chunk_ratio) * (chunk_ratio + 1)
    } else if data_blocks == 0 {
        0
    } else {
        data_blocks + (data_blocks - 1) / chunk_ratio.max(1)
    }
}

/// BAT index of payload block `block` (MS-VHDX §2.5): `i + floor(i / CR)`.
pub fn payload_bat_index(block: u64, chunk_ratio: u64) -> u64 {
    block + block / chunk_ratio.max(1)
}

/// BAT index of the sector bitmap entry of `chunk` (MS-VHDX §2.5): `k·(CR+1) + CR`.
pub fn sector_bitmap_bat_index(chunk: u64, chunk_ratio: u64) -> u64 {
    chunk * (chunk_ratio + 1) + chunk_ratio
}

/// Rounds `value` up to a multiple of 1 MiB, or `None` on overflow.
pub fn round_up_mib(value: u64) -> Option<u64> {
    value.checked_add(MIB - 1).map(|v| v & !(MIB - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bat_region_guid_round_trips_through_the_on_disk_byte_order() {
        // Bytes as stored in every VHDX region table (MS-VHDX §2.2.3.2 / vhdx.md §1).
        let on_disk = [
            0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd,
            0x4a, 0x08,
        ];
        assert_eq!(guid_from_le(on_disk), BAT_REGION_GUID);
        assert_eq!(guid_to_le(BAT_REGION_GUID), on_disk);
    }

    #[test]
    fn crc_with_zeroed_field_equals_crc_of_buffer_with_field_cleared() {
        let mut buf = vec![0xABu8; 64];
        let expected = {
            let mut copy = buf.clone();
            copy[4..8].fill(0);
            crc32c::crc32c(&copy)
        };
        buf[4..8].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        assert_eq!(crc32c_with_zeroed_field(&buf, 4), expected);
    }

    #[test]
    fn chunk_ratio_matches_windows_child_observation() {
        // Windows 8 GiB child, 2 MiB blocks, 512-byte sectors: CR 2048, 4098 entries (vhdx.md §7.3).
        let cr = chunk_ratio(512, 2 << 20);
        assert_eq!(cr, 2048);
        let blocks = data_blocks_count(8 * 1024 * MIB, 2 << 20);
        assert_eq!(total_bat_entries(blocks, cr, true), 4098);
        assert_eq!(sector_bitmap_bat_index(1, cr), 4097);
    }

    #[test]
    fn dynamic_bat_omits_trailing_sector_bitmap_entry() {
        // qemu 10 GiB, 1 MiB blocks: CR 4096, 10240 blocks → 10242 entries (vhdx.md §7.3).
        let cr = chunk_ratio(512, 1 << 20);
        assert_eq!(total_bat_entries(10240, cr, false), 10242);
        assert_eq!(total_bat_entries(4096, cr, false), 4096);
        assert_eq!(total_bat_entries(4096, cr, true), 4097);
    }

    #[test]
    fn bat_entry_packs_state_and_megabyte_offset() {
        let e = BatEntry::new(payload_state::FULLY_PRESENT, 3 * MIB);
        assert_eq!(e.state(), 6);
        assert_eq!(e.file_offset(), 3 * MIB);
        assert_eq!(e.reserved_bits(), 0);
    }

    #[test]
    fn parse_guid_accepts_braces_and_upper_case() {
        let g = parse_guid("{FF34003B-11ED-4CF8-A166-B2BE05E20B80}");
        assert_eq!(
            guid_braced(g.unwrap()),
            "{ff34003b-11ed-4cf8-a166-b2be05e20b80}"
        );
        assert!(parse_guid("not-a-guid").is_none());
    }
}
