//! Metadata region (MS-VHDX §2.6): the 64 KiB metadata table and the system
//! items that define the virtual disk (File Parameters, Virtual Disk Size,
//! Virtual Disk ID, Logical/Physical Sector Size, Parent Locator).
//!
//! The table has no checksum (its integrity comes from the log). Entries
//! must start at ≥ 64 KiB inside the region, be ≤ 1 MiB long, not overlap
//! and be unique per (ItemId, IsUser). An unknown item flagged IsRequired
//! refuses the file, and so does the "incomplete file" item Microsoft's
//! implementation keeps while a create is in progress.

use uuid::Uuid;
use zerocopy::FromBytes;

use crate::error::ErrorKind;
use crate::format::{
    CHS_PARAMETERS_GUID, FILE_PARAMETERS_GUID, FILE_PARAMETERS_HAS_PARENT,
    FILE_PARAMETERS_LEAVE_BLOCK_ALLOCATED, INCOMPLETE_FILE_GUID, LOGICAL_SECTOR_SIZE_GUID,
    MAX_BLOCK_SIZE, MAX_METADATA_ENTRIES, MAX_METADATA_ITEM_LENGTH, MAX_VIRTUAL_DISK_SIZE,
    METADATA_FLAG_IS_REQUIRED, METADATA_FLAG_IS_USER, METADATA_FLAG_IS_VIRTUAL_DISK,
    METADATA_TABLE_SIGNATURE, METADATA_TABLE_SIZE, MIN_BLOCK_SIZE, PARENT_LOCATOR_GUID,
    PHYSICAL_SECTOR_SIZE_GUID, RawFileParameters, RawMetadataEntry, RawMetadataTableHeader,
    VIRTUAL_DISK_ID_GUID, VIRTUAL_DISK_SIZE_GUID, guid_from_le,
};

/// Size of the metadata table header in bytes.
const TABLE_HEADER_SIZE: usize = 32;
/// Size of one metadata table entry in bytes.
const ENTRY_SIZE: usize = 32;

/// Violations of MS-VHDX §2.6. `region_offset` fields are the file offset of
/// the metadata region; item offsets are relative to it, as on disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// §2.6.1.1: Signature is not `metadata`.
    #[error(
        "metadata table at offset {region_offset:#x}: signature {found:#018x} is not \"metadata\""
    )]
    BadSignature {
        /// File offset of the metadata region.
        region_offset: u64,
        /// The u64 found.
        found: u64,
    },
    /// §2.6.1.1: EntryCount must be ≤ 2047.
    #[error("metadata table at offset {region_offset:#x}: EntryCount {count} exceeds 2047")]
    TooManyEntries {
        /// File offset of the metadata region.
        region_offset: u64,
        /// EntryCount field.
        count: u16,
    },
    /// §2.6.1.2: a non-empty item must start at ≥ 64 KiB from the region start.
    #[error("metadata item {item}: Offset {offset:#x} lies inside the 64 KiB metadata table")]
    ItemInsideTable {
        /// ItemId.
        item: Uuid,
        /// Offset field (relative to the region).
        offset: u32,
    },
    /// §2.6.1.2: an empty item (Length 0) must have Offset 0.
    #[error("metadata item {item}: Length 0 but Offset {offset:#x} is not 0")]
    EmptyItemWithOffset {
        /// ItemId.
        item: Uuid,
        /// Offset field.
        offset: u32,
    },
    /// §2.6.1.2: Length must be ≤ 1 MiB.
    #[error("metadata item {item}: Length {length:#x} exceeds 1 MiB")]
    ItemTooLong {
        /// ItemId.
        item: Uuid,
        /// Length field.
        length: u32,
    },
    /// §2.6.1.2: the item must lie inside the metadata region.
    #[error(
        "metadata item {item}: [{offset:#x}, +{length:#x}) extends past the metadata region length {region_length:#x}"
    )]
    ItemOutsideRegion {
        /// ItemId.
        item: Uuid,
        /// Offset field.
        offset: u32,
        /// Length field.
        length: u32,
        /// Length of the metadata region (bytes).
        region_length: u32,
    },
    /// §2.6.1.2: items must not overlap.
    #[error("metadata items {first} and {second} overlap at region offset {offset:#x}")]
    ItemsOverlap {
        /// One item.
        first: Uuid,
        /// The other item.
        second: Uuid,
        /// Offset of the later item (relative to the region).
        offset: u32,
    },
    /// §2.6.1.2: (ItemId, IsUser) must be unique.
    #[error("metadata item {item} (IsUser {is_user}) appears more than once")]
    DuplicateItem {
        /// ItemId.
        item: Uuid,
        /// IsUser flag.
        is_user: bool,
    },
    /// §2.6.1.2: an unknown item flagged IsRequired refuses the file.
    #[error("unknown metadata item {item} is marked IsRequired")]
    UnknownRequiredItem {
        /// ItemId.
        item: Uuid,
    },
    /// The "incomplete file" item (71CC85F0-…) marks a create that never finished.
    #[error(
        "metadata item 71CC85F0-1B69-4E28-9558-C3BF83AE75D3 present: the file's creation never completed"
    )]
    IncompleteFile,
    /// §2.6.2: a required system item is missing.
    #[error("required metadata item {name} ({item}) is missing")]
    MissingItem {
        /// Item name as in MS-VHDX.
        name: &'static str,
        /// ItemId.
        item: Uuid,
    },
    /// §2.6.2: a system item has the wrong length.
    #[error("metadata item {name}: Length {found} bytes, expected {expected}")]
    BadItemLength {
        /// Item name as in MS-VHDX.
        name: &'static str,
        /// Expected length (bytes).
        expected: u32,
        /// Length field (bytes).
        found: u32,
    },
    /// §2.6.2.1: BlockSize must be a power of two between 1 MiB and 256 MiB.
    #[error(
        "File Parameters: BlockSize {block_size:#x} is not a power of two between 1 MiB and 256 MiB"
    )]
    BadBlockSize {
        /// BlockSize (bytes).
        block_size: u32,
    },
    /// §2.6.2.2: VirtualDiskSize must be a multiple of LogicalSectorSize.
    #[error(
        "Virtual Disk Size {virtual_size} is not a multiple of the logical sector size {logical_sector_size}"
    )]
    VirtualSizeNotSectorMultiple {
        /// VirtualDiskSize (bytes).
        virtual_size: u64,
        /// LogicalSectorSize (bytes).
        logical_sector_size: u32,
    },
    /// §2.6.2.2: VirtualDiskSize must be ≤ 64 TiB.
    #[error("Virtual Disk Size {virtual_size} exceeds 64 TiB")]
    VirtualSizeTooLarge {
        /// VirtualDiskSize (bytes).
        virtual_size: u64,
    },
    /// §2.6.2.4: LogicalSectorSize must be 512 or 4096.
    #[error("Logical Sector Size {value} is neither 512 nor 4096")]
    BadLogicalSectorSize {
        /// Field value (bytes).
        value: u32,
    },
    /// §2.6.2.5: PhysicalSectorSize must be 512 or 4096.
    #[error("Physical Sector Size {value} is neither 512 nor 4096")]
    BadPhysicalSectorSize {
        /// Field value (bytes).
        value: u32,
    },
    /// §2.6.2.1: HasParent requires a Parent Locator item.
    #[error("File Parameters has HasParent set but there is no Parent Locator item")]
    MissingParentLocator,
}

impl MetadataError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            MetadataError::UnknownRequiredItem { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Corrupt,
        }
    }

    pub(crate) fn offset(&self) -> Option<u64> {
        match self {
            MetadataError::BadSignature { region_offset, .. }
            | MetadataError::TooManyEntries { region_offset, .. } => Some(*region_offset),
            _ => None,
        }
    }
}

/// One metadata table entry (MS-VHDX §2.6.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataEntry {
    /// ItemId.
    pub item_id: Uuid,
    /// Offset of the item relative to the start of the metadata region (bytes).
    pub offset: u32,
    /// Length of the item (bytes).
    pub length: u32,
    /// IsUser flag.
    pub is_user: bool,
    /// IsVirtualDisk flag.
    pub is_virtual_disk: bool,
    /// IsRequired flag.
    pub is_required: bool,
}

impl MetadataEntry {
    fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.length)
    }
}

/// Parses and validates the 64 KiB metadata table (MS-VHDX §2.6.1).
/// `region_offset` is the file offset of the region, `region_length` its
/// length in bytes.
///
/// # Errors
/// [`MetadataError::BadSignature`], [`MetadataError::TooManyEntries`],
/// [`MetadataError::ItemInsideTable`], [`MetadataError::EmptyItemWithOffset`],
/// [`MetadataError::ItemTooLong`], [`MetadataError::ItemOutsideRegion`],
/// [`MetadataError::ItemsOverlap`], [`MetadataError::DuplicateItem`],
/// [`MetadataError::UnknownRequiredItem`], [`MetadataError::IncompleteFile`].
pub fn parse_table(
    bytes: &[u8],
    region_offset: u64,
    region_length: u32,
) -> Result<Vec<MetadataEntry>, MetadataError> {
    let table = bytes.get(..METADATA_TABLE_SIZE).unwrap_or(bytes);
    let (header, _) = RawMetadataTableHeader::read_from_prefix(table).map_err(|_| {
        MetadataError::BadSignature {
            region_offset,
            found: 0,
        }
    })?;
    if header.signature.get() != METADATA_TABLE_SIGNATURE {
        return Err(MetadataError::BadSignature {
            region_offset,
            found: header.signature.get(),
        });
    }
    let count = header.entry_count.get();
    if count > MAX_METADATA_ENTRIES {
        return Err(MetadataError::TooManyEntries {
            region_offset,
            count,
        });
    }
    let entries: Vec<MetadataEntry> = table
        .get(TABLE_HEADER_SIZE..)
        .unwrap_or_default()
        .chunks_exact(ENTRY_SIZE)
        .take(usize::from(count))
        .filter_map(|chunk| RawMetadataEntry::read_from_bytes(chunk).ok())
        .map(|raw| {
            let flags = raw.flags.get();
            MetadataEntry {
                item_id: guid_from_le(raw.item_id),
                offset: raw.offset.get(),
                length: raw.length.get(),
                is_user: flags & METADATA_FLAG_IS_USER != 0,
                is_virtual_disk: flags & METADATA_FLAG_IS_VIRTUAL_DISK != 0,
                is_required: flags & METADATA_FLAG_IS_REQUIRED != 0,
            }
        })
        .collect();
    for (i, e) in entries.iter().enumerate() {
        let earlier = entries.get(..i).unwrap_or_default();
        if earlier
            .iter()
            .any(|p| p.item_id == e.item_id && p.is_user == e.is_user)
        {
            return Err(MetadataError::DuplicateItem {
                item: e.item_id,
                is_user: e.is_user,
            });
        }
        if e.item_id == INCOMPLETE_FILE_GUID {
            return Err(MetadataError::IncompleteFile);
        }
        if e.is_required && !is_known_item(e.item_id) {
            return Err(MetadataError::UnknownRequiredItem { item: e.item_id });
        }
        if e.length == 0 {
            if e.offset != 0 {
                return Err(MetadataError::EmptyItemWithOffset {
                    item: e.item_id,
                    offset: e.offset,
                });
            }
            continue;
        }
        if (e.offset as usize) < METADATA_TABLE_SIZE {
            return Err(MetadataError::ItemInsideTable {
                item: e.item_id,
                offset: e.offset,
            });
        }
        if e.length > MAX_METADATA_ITEM_LENGTH {
            return Err(MetadataError::ItemTooLong {
                item: e.item_id,
                length: e.length,
            });
        }
        if e.end() > u64::from(region_length) {
            return Err(MetadataError::ItemOutsideRegion {
                item: e.item_id,
                offset: e.offset,
                length: e.length,
                region_length,
            });
        }
    }
    let mut sorted: Vec<&MetadataEntry> = entries.iter().filter(|e| e.length != 0).collect();
    sorted.sort_by_key(|e| e.offset);
    for pair in sorted.windows(2) {
        if let [a, b] = pair
            && u64::from(b.offset) < a.end()
        {
            return Err(MetadataError::ItemsOverlap {
                first: a.item_id,
                second: b.item_id,
                offset: b.offset,
            });
        }
    }
    Ok(entries)
}

/// Items this implementation understands (system items of §2.6.2 plus the
/// informational CHS item).
fn is_known_item(item: Uuid) -> bool {
    [
        FILE_PARAMETERS_GUID,
        VIRTUAL_DISK_SIZE_GUID,
        VIRTUAL_DISK_ID_GUID,
        LOGICAL_SECTOR_SIZE_GUID,
        PHYSICAL_SECTOR_SIZE_GUID,
        PARENT_LOCATOR_GUID,
        CHS_PARAMETERS_GUID,
    ]
    .contains(&item)
}

/// The system items, validated (MS-VHDX §2.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemItems {
    /// BlockSize in bytes: power of two, 1 MiB–256 MiB.
    pub block_size: u32,
    /// LeaveBlockAllocated flag (fixed, fully provisioned file).
    pub leave_block_allocated: bool,
    /// HasParent flag (differencing file).
    pub has_parent: bool,
    /// VirtualDiskSize in bytes.
    pub virtual_size: u64,
    /// Virtual Disk ID (SCSI page 0x83 identity).
    pub virtual_disk_id: Uuid,
    /// LogicalSectorSize in bytes (512 or 4096).
    pub logical_sector_size: u32,
    /// PhysicalSectorSize in bytes (512 or 4096).
    pub physical_sector_size: u32,
}

/// The non-user table entry of a system item, if present.
pub fn find_system_item(entries: &[MetadataEntry], item: Uuid) -> Option<&MetadataEntry> {
    entries.iter().find(|e| e.item_id == item && !e.is_user)
}

/// Reads and validates the system items. `read_item` returns the bytes of
/// an entry (its offset and length were validated by [`parse_table`]).
///
/// # Errors
/// [`MetadataError::MissingItem`], [`MetadataError::BadItemLength`],
/// [`MetadataError::BadBlockSize`], [`MetadataError::BadLogicalSectorSize`],
/// [`MetadataError::BadPhysicalSectorSize`],
/// [`MetadataError::VirtualSizeNotSectorMultiple`],
/// [`MetadataError::VirtualSizeTooLarge`], [`MetadataError::MissingParentLocator`];
/// `E` from `read_item`.
pub fn parse_system_items<E: From<MetadataError>>(
    entries: &[MetadataEntry],
    mut read_item: impl FnMut(&MetadataEntry) -> Result<Vec<u8>, E>,
) -> Result<SystemItems, E> {
    let mut fixed_item = |name: &'static str, item: Uuid, expected: u32| -> Result<Vec<u8>, E> {
        let entry =
            find_system_item(entries, item).ok_or(MetadataError::MissingItem { name, item })?;
        if entry.length != expected {
            return Err(MetadataError::BadItemLength {
                name,
                expected,
                found: entry.length,
            }
            .into());
        }
        read_item(entry)
    };
    let params = fixed_item("File Parameters", FILE_PARAMETERS_GUID, 8)?;
    let size = fixed_item("Virtual Disk Size", VIRTUAL_DISK_SIZE_GUID, 8)?;
    let disk_id = fixed_item("Virtual Disk ID", VIRTUAL_DISK_ID_GUID, 16)?;
    let lss = fixed_item("Logical Sector Size", LOGICAL_SECTOR_SIZE_GUID, 4)?;
    let pss = fixed_item("Physical Sector Size", PHYSICAL_SECTOR_SIZE_GUID, 4)?;

    let params =
        RawFileParameters::read_from_bytes(&params).map_err(|_| MetadataError::BadItemLength {
            name: "File Parameters",
            expected: 8,
            found: 0,
        })?;
    let block_size = params.block_size.get();
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(MetadataError::BadBlockSize { block_size }.into());
    }
    let flags = params.flags.get();
    let has_parent = flags & FILE_PARAMETERS_HAS_PARENT != 0;
    let leave_block_allocated = flags & FILE_PARAMETERS_LEAVE_BLOCK_ALLOCATED != 0;

    let u32_of = |b: &[u8]| b.try_into().map(u32::from_le_bytes).unwrap_or(0);
    let logical_sector_size = u32_of(&lss);
    if logical_sector_size != 512 && logical_sector_size != 4096 {
        return Err(MetadataError::BadLogicalSectorSize {
            value: logical_sector_size,
        }
        .into());
    }
    let physical_sector_size = u32_of(&pss);
    if physical_sector_size != 512 && physical_sector_size != 4096 {
        return Err(MetadataError::BadPhysicalSectorSize {
            value: physical_sector_size,
        }
        .into());
    }
    let virtual_size = size
        .as_slice()
        .try_into()
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    if virtual_size > MAX_VIRTUAL_DISK_SIZE {
        return Err(MetadataError::VirtualSizeTooLarge { virtual_size }.into());
    }
    if virtual_size % u64::from(logical_sector_size) != 0 {
        return Err(MetadataError::VirtualSizeNotSectorMultiple {
            virtual_size,
            logical_sector_size,
        }
        .into());
    }
    let virtual_disk_id = disk_id
        .as_slice()
        .try_into()
        .map(guid_from_le)
        .unwrap_or_default();
    if has_parent && find_system_item(entries, PARENT_LOCATOR_GUID).is_none_or(|e| e.length == 0) {
        return Err(MetadataError::MissingParentLocator.into());
    }
    Ok(SystemItems {
        block_size,
        leave_block_allocated,
        has_parent,
        virtual_size,
        virtual_disk_id,
        logical_sector_size,
        physical_sector_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: u64 = 0x20_0000;
    const REGION_LEN: u32 = 0x10_0000;

    fn raw_entry(item: Uuid, offset: u32, length: u32, flags: u32) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..16].copy_from_slice(&item.to_bytes_le());
        b[16..20].copy_from_slice(&offset.to_le_bytes());
        b[20..24].copy_from_slice(&length.to_le_bytes());
        b[24..28].copy_from_slice(&flags.to_le_bytes());
        b
    }

    fn table(entries: &[[u8; 32]]) -> Vec<u8> {
        let mut t = vec![0u8; METADATA_TABLE_SIZE];
        t[0..8].copy_from_slice(&METADATA_TABLE_SIGNATURE.to_le_bytes());
        t[10..12].copy_from_slice(&u16::try_from(entries.len()).unwrap().to_le_bytes());
        for (i, e) in entries.iter().enumerate() {
            t[32 + 32 * i..64 + 32 * i].copy_from_slice(e);
        }
        t
    }

    fn standard_entries() -> Vec<MetadataEntry> {
        let t = table(&[
            raw_entry(FILE_PARAMETERS_GUID, 0x10000, 8, 4),
            raw_entry(VIRTUAL_DISK_SIZE_GUID, 0x10008, 8, 6),
            raw_entry(VIRTUAL_DISK_ID_GUID, 0x10010, 16, 6),
            raw_entry(LOGICAL_SECTOR_SIZE_GUID, 0x10020, 4, 6),
            raw_entry(PHYSICAL_SECTOR_SIZE_GUID, 0x10024, 4, 6),
        ]);
        parse_table(&t, REGION, REGION_LEN).unwrap()
    }

    /// Item values: block size, flags, virtual size, LSS, PSS.
    fn items(
        block_size: u32,
        flags: u32,
        size: u64,
        lss: u32,
        pss: u32,
    ) -> impl FnMut(&MetadataEntry) -> Result<Vec<u8>, MetadataError> {
        move |e| {
            Ok(match e.item_id {
                id if id == FILE_PARAMETERS_GUID => {
                    [block_size.to_le_bytes(), flags.to_le_bytes()].concat()
                }
                id if id == VIRTUAL_DISK_SIZE_GUID => size.to_le_bytes().to_vec(),
                id if id == VIRTUAL_DISK_ID_GUID => vec![7u8; 16],
                id if id == LOGICAL_SECTOR_SIZE_GUID => lss.to_le_bytes().to_vec(),
                _ => pss.to_le_bytes().to_vec(),
            })
        }
    }

    #[test]
    fn standard_items_parse() {
        let s =
            parse_system_items(&standard_entries(), items(1 << 25, 0, 1 << 30, 512, 4096)).unwrap();
        assert_eq!(s.block_size, 1 << 25);
        assert_eq!(s.virtual_size, 1 << 30);
        assert_eq!(s.physical_sector_size, 4096);
        assert!(!s.has_parent);
    }

    #[test]
    fn bad_signature_is_rejected() {
        let mut t = table(&[]);
        t[0] = b'X';
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert!(matches!(
            err,
            MetadataError::BadSignature {
                region_offset: REGION,
                ..
            }
        ));
    }

    #[test]
    fn entry_count_above_2047_is_rejected() {
        let mut t = table(&[]);
        t[10..12].copy_from_slice(&2048u16.to_le_bytes());
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert!(matches!(
            err,
            MetadataError::TooManyEntries { count: 2048, .. }
        ));
    }

    #[test]
    fn item_inside_table_is_rejected() {
        let t = table(&[raw_entry(FILE_PARAMETERS_GUID, 0x8000, 8, 4)]);
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert!(matches!(
            err,
            MetadataError::ItemInsideTable { offset: 0x8000, .. }
        ));
    }

    #[test]
    fn empty_item_with_offset_is_rejected() {
        let t = table(&[raw_entry(Uuid::from_u128(9), 0x10000, 0, 0)]);
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert!(matches!(err, MetadataError::EmptyItemWithOffset { .. }));
    }

    #[test]
    fn item_longer_than_1_mib_is_rejected() {
        let t = table(&[raw_entry(Uuid::from_u128(9), 0x10000, 0x10_0001, 0)]);
        let err = parse_table(&t, REGION, 4 * REGION_LEN).unwrap_err();
        assert!(matches!(err, MetadataError::ItemTooLong { .. }));
    }

    #[test]
    fn item_outside_region_is_rejected() {
        let t = table(&[raw_entry(Uuid::from_u128(9), 0xF_FFF0, 0x20, 0)]);
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert!(matches!(err, MetadataError::ItemOutsideRegion { .. }));
    }

    #[test]
    fn overlapping_items_are_rejected() {
        let t = table(&[
            raw_entry(FILE_PARAMETERS_GUID, 0x10000, 8, 4),
            raw_entry(VIRTUAL_DISK_SIZE_GUID, 0x10004, 8, 6),
        ]);
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert!(matches!(
            err,
            MetadataError::ItemsOverlap {
                offset: 0x10004,
                ..
            }
        ));
    }

    #[test]
    fn duplicate_item_is_rejected() {
        let t = table(&[
            raw_entry(FILE_PARAMETERS_GUID, 0x10000, 8, 4),
            raw_entry(FILE_PARAMETERS_GUID, 0x10010, 8, 4),
        ]);
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert!(matches!(
            err,
            MetadataError::DuplicateItem { is_user: false, .. }
        ));
    }

    #[test]
    fn same_item_id_as_user_item_is_not_a_duplicate() {
        let t = table(&[
            raw_entry(FILE_PARAMETERS_GUID, 0x10000, 8, 4),
            raw_entry(FILE_PARAMETERS_GUID, 0x10010, 8, 1),
        ]);
        assert!(parse_table(&t, REGION, REGION_LEN).is_ok());
    }

    #[test]
    fn unknown_required_item_is_refused() {
        let t = table(&[raw_entry(Uuid::from_u128(9), 0x10000, 8, 4)]);
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert_eq!(
            err,
            MetadataError::UnknownRequiredItem {
                item: Uuid::from_u128(9)
            }
        );
    }

    #[test]
    fn unknown_optional_item_is_accepted() {
        let t = table(&[raw_entry(Uuid::from_u128(9), 0x10000, 8, 1)]);
        assert!(parse_table(&t, REGION, REGION_LEN).is_ok());
    }

    #[test]
    fn incomplete_file_item_is_refused() {
        let t = table(&[raw_entry(INCOMPLETE_FILE_GUID, 0, 0, 0)]);
        let err = parse_table(&t, REGION, REGION_LEN).unwrap_err();
        assert_eq!(err, MetadataError::IncompleteFile);
    }

    #[test]
    fn missing_virtual_disk_id_is_rejected() {
        let entries: Vec<_> = standard_entries()
            .into_iter()
            .filter(|e| e.item_id != VIRTUAL_DISK_ID_GUID)
            .collect();
        let err = parse_system_items(&entries, items(1 << 20, 0, 1 << 30, 512, 512)).unwrap_err();
        assert!(matches!(
            err,
            MetadataError::MissingItem {
                name: "Virtual Disk ID",
                ..
            }
        ));
    }

    #[test]
    fn wrong_item_length_is_rejected() {
        let mut entries = standard_entries();
        entries[3].length = 8;
        let err = parse_system_items(&entries, items(1 << 20, 0, 1 << 30, 512, 512)).unwrap_err();
        assert!(matches!(
            err,
            MetadataError::BadItemLength {
                expected: 4,
                found: 8,
                ..
            }
        ));
    }

    #[test]
    fn block_size_not_power_of_two_is_rejected() {
        let err = parse_system_items(&standard_entries(), items(3 << 20, 0, 1 << 30, 512, 512))
            .unwrap_err();
        assert_eq!(
            err,
            MetadataError::BadBlockSize {
                block_size: 3 << 20
            }
        );
    }

    #[test]
    fn block_size_above_256_mib_is_rejected() {
        let err = parse_system_items(&standard_entries(), items(1 << 29, 0, 1 << 30, 512, 512))
            .unwrap_err();
        assert_eq!(
            err,
            MetadataError::BadBlockSize {
                block_size: 1 << 29
            }
        );
    }

    #[test]
    fn block_size_below_1_mib_is_rejected() {
        let err = parse_system_items(&standard_entries(), items(1 << 19, 0, 1 << 30, 512, 512))
            .unwrap_err();
        assert_eq!(
            err,
            MetadataError::BadBlockSize {
                block_size: 1 << 19
            }
        );
    }

    #[test]
    fn virtual_size_not_sector_multiple_is_rejected() {
        let err = parse_system_items(
            &standard_entries(),
            items(1 << 20, 0, 4096 + 512, 4096, 4096),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            MetadataError::VirtualSizeNotSectorMultiple { .. }
        ));
    }

    #[test]
    fn virtual_size_above_64_tib_is_rejected() {
        let size = MAX_VIRTUAL_DISK_SIZE + 512;
        let err =
            parse_system_items(&standard_entries(), items(1 << 20, 0, size, 512, 512)).unwrap_err();
        assert_eq!(
            err,
            MetadataError::VirtualSizeTooLarge { virtual_size: size }
        );
    }

    #[test]
    fn logical_sector_size_1024_is_rejected() {
        let err = parse_system_items(&standard_entries(), items(1 << 20, 0, 1 << 30, 1024, 512))
            .unwrap_err();
        assert_eq!(err, MetadataError::BadLogicalSectorSize { value: 1024 });
    }

    #[test]
    fn physical_sector_size_2048_is_rejected() {
        let err = parse_system_items(&standard_entries(), items(1 << 20, 0, 1 << 30, 512, 2048))
            .unwrap_err();
        assert_eq!(err, MetadataError::BadPhysicalSectorSize { value: 2048 });
    }

    #[test]
    fn has_parent_without_locator_is_rejected() {
        let err = parse_system_items(&standard_entries(), items(1 << 20, 2, 1 << 30, 512, 512))
            .unwrap_err();
        assert_eq!(err, MetadataError::MissingParentLocator);
    }
}
