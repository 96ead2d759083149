//! Region table (MS-VHDX §2.2.3): where the BAT and the metadata region live.
//!
//! Two copies at 192 KiB and 256 KiB, each 64 KiB with a CRC-32C over the
//! whole table. Table 1 is used; table 2 only when table 1 fails its
//! signature or checksum. Entries must be MiB-aligned, at least 1 MiB long,
//! inside the file, not overlap each other, the header section or the log,
//! and have unique GUIDs. An unknown region marked Required refuses the file;
//! the Required flag of the BAT and metadata regions is *not* relied upon
//! (qemu writes 0 there).

use uuid::Uuid;
use zerocopy::FromBytes;

use crate::error::ErrorKind;
use crate::format::{
    BAT_REGION_GUID, HEADER_SECTION_SIZE, MAX_REGION_ENTRIES, METADATA_REGION_GUID, MIB,
    REGION_TABLE_CHECKSUM_OFFSET, REGION_TABLE_SIGNATURE, REGION_TABLE_SIZE, REGION_TABLE1_OFFSET,
    REGION_TABLE2_OFFSET, RawRegionEntry, RawRegionTableHeader, crc32c_with_zeroed_field,
    guid_from_le,
};

/// Size of the region table header in bytes.
const TABLE_HEADER_SIZE: usize = 16;
/// Size of one region table entry in bytes.
const ENTRY_SIZE: usize = 32;

/// Violations of MS-VHDX §2.2.3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// §2.2.3.1: Signature is not `regi`.
    #[error("region table at offset {table_offset:#x}: signature {found:#010x} is not \"regi\"")]
    BadSignature {
        /// Offset of the table (192 KiB or 256 KiB).
        table_offset: u64,
        /// The u32 found.
        found: u32,
    },
    /// §2.2.3.1: CRC-32C over the 64 KiB table does not match.
    #[error(
        "region table at offset {table_offset:#x}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BadChecksum {
        /// Offset of the table.
        table_offset: u64,
        /// Checksum field.
        stored: u32,
        /// CRC-32C computed.
        computed: u32,
    },
    /// §2.2.3: neither copy of the region table is intact.
    #[error("no intact region table: table 1: {first}; table 2: {second}")]
    NoValidTable {
        /// Why table 1 was rejected.
        first: Box<RegionError>,
        /// Why table 2 was rejected.
        second: Box<RegionError>,
    },
    /// §2.2.3.1: EntryCount must be ≤ 2047.
    #[error("region table at offset {table_offset:#x}: EntryCount {count} exceeds 2047")]
    TooManyEntries {
        /// Offset of the table.
        table_offset: u64,
        /// EntryCount field.
        count: u32,
    },
    /// §2.2.3.2: FileOffset must be a multiple of 1 MiB.
    #[error("region {guid}: FileOffset {file_offset:#x} is not a multiple of 1 MiB")]
    UnalignedOffset {
        /// Region GUID.
        guid: Uuid,
        /// FileOffset (bytes).
        file_offset: u64,
    },
    /// §2.2.3.2: FileOffset must be ≥ 1 MiB (after the header section).
    #[error("region {guid}: FileOffset {file_offset:#x} lies inside the 1 MiB header section")]
    OffsetInHeaderSection {
        /// Region GUID.
        guid: Uuid,
        /// FileOffset (bytes).
        file_offset: u64,
    },
    /// §2.2.3.2: Length must be a non-zero multiple of 1 MiB.
    #[error("region {guid}: Length {length:#x} is not a non-zero multiple of 1 MiB")]
    BadLength {
        /// Region GUID.
        guid: Uuid,
        /// Length (bytes).
        length: u32,
    },
    /// §2.2.3.2: the region must lie inside the file.
    #[error(
        "region {guid}: [{file_offset:#x}, +{length:#x}) extends past end of file {file_size:#x}"
    )]
    BeyondEof {
        /// Region GUID.
        guid: Uuid,
        /// FileOffset (bytes).
        file_offset: u64,
        /// Length (bytes).
        length: u32,
        /// File size (bytes).
        file_size: u64,
    },
    /// §2.2.3.2: regions must not overlap each other.
    #[error("regions {first} and {second} overlap at offset {offset:#x}")]
    Overlap {
        /// One region.
        first: Uuid,
        /// The other region.
        second: Uuid,
        /// Start of the later region (bytes).
        offset: u64,
    },
    /// §2.2.3.2: regions must not overlap the log.
    #[error("region {guid} at {file_offset:#x} overlaps the log [{log_offset:#x}, {log_end:#x})")]
    OverlapsLog {
        /// Region GUID.
        guid: Uuid,
        /// FileOffset (bytes).
        file_offset: u64,
        /// LogOffset (bytes).
        log_offset: u64,
        /// LogOffset + LogLength (bytes).
        log_end: u64,
    },
    /// §2.2.3.2: each GUID may appear once.
    #[error("region {guid} appears more than once in the region table")]
    DuplicateGuid {
        /// Region GUID.
        guid: Uuid,
    },
    /// §2.2.3.2: an unknown region with Required set refuses the file.
    #[error("unknown region {guid} is marked Required")]
    UnknownRequiredRegion {
        /// Region GUID.
        guid: Uuid,
    },
    /// §2.2.3.2: the BAT region is mandatory.
    #[error("region table has no BAT region (2DC27766-F623-4200-9D64-115E9BFD4A08)")]
    MissingBat,
    /// §2.2.3.2: the metadata region is mandatory.
    #[error("region table has no metadata region (8B7CA206-4790-4B9A-B8FE-575F050F886E)")]
    MissingMetadata,
}

impl RegionError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            RegionError::UnknownRequiredRegion { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Corrupt,
        }
    }

    pub(crate) fn offset(&self) -> Option<u64> {
        match self {
            RegionError::BadSignature { table_offset, .. }
            | RegionError::BadChecksum { table_offset, .. }
            | RegionError::TooManyEntries { table_offset, .. } => Some(*table_offset),
            RegionError::UnalignedOffset { file_offset, .. }
            | RegionError::OffsetInHeaderSection { file_offset, .. }
            | RegionError::BeyondEof { file_offset, .. }
            | RegionError::OverlapsLog { file_offset, .. } => Some(*file_offset),
            RegionError::Overlap { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// One region table entry (MS-VHDX §2.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionEntry {
    /// Region GUID.
    pub guid: Uuid,
    /// FileOffset in bytes (multiple of 1 MiB, ≥ 1 MiB).
    pub file_offset: u64,
    /// Length in bytes (non-zero multiple of 1 MiB).
    pub length: u32,
    /// Required flag (bit 0).
    pub required: bool,
}

impl RegionEntry {
    /// End offset in bytes (exclusive); saturates on absurd values.
    pub fn end(&self) -> u64 {
        self.file_offset.saturating_add(u64::from(self.length))
    }
}

/// The validated region table in use.
#[derive(Debug, Clone)]
pub struct RegionTable {
    /// Offset of the copy that was used (192 KiB or 256 KiB).
    pub table_offset: u64,
    /// All entries, in table order.
    pub entries: Vec<RegionEntry>,
    /// The BAT region.
    pub bat: RegionEntry,
    /// The metadata region.
    pub metadata: RegionEntry,
}

/// Parses one 64 KiB copy: signature, checksum, entry count, entries.
///
/// # Errors
/// [`RegionError::BadSignature`], [`RegionError::BadChecksum`],
/// [`RegionError::TooManyEntries`].
pub fn parse_table(bytes: &[u8], table_offset: u64) -> Result<Vec<RegionEntry>, RegionError> {
    let table = bytes.get(..REGION_TABLE_SIZE).unwrap_or(bytes);
    let (header, _) =
        RawRegionTableHeader::read_from_prefix(table).map_err(|_| RegionError::BadSignature {
            table_offset,
            found: 0,
        })?;
    if header.signature.get() != REGION_TABLE_SIGNATURE {
        return Err(RegionError::BadSignature {
            table_offset,
            found: header.signature.get(),
        });
    }
    let computed = crc32c_with_zeroed_field(table, REGION_TABLE_CHECKSUM_OFFSET);
    if table.len() != REGION_TABLE_SIZE || computed != header.checksum.get() {
        return Err(RegionError::BadChecksum {
            table_offset,
            stored: header.checksum.get(),
            computed,
        });
    }
    let count = header.entry_count.get();
    if count > MAX_REGION_ENTRIES {
        return Err(RegionError::TooManyEntries {
            table_offset,
            count,
        });
    }
    let entries_bytes = table.get(TABLE_HEADER_SIZE..).unwrap_or_default();
    let entries = entries_bytes
        .chunks_exact(ENTRY_SIZE)
        .take(count as usize)
        .filter_map(|chunk| RawRegionEntry::read_from_bytes(chunk).ok())
        .map(|raw| RegionEntry {
            guid: guid_from_le(raw.guid),
            file_offset: raw.file_offset.get(),
            length: raw.length.get(),
            required: raw.required.get() & 1 == 1,
        })
        .collect();
    Ok(entries)
}

/// Chooses table 1, or table 2 when table 1 fails its signature or checksum.
///
/// # Errors
/// [`RegionError::NoValidTable`] when both copies fail; otherwise the error
/// of table 1 if it is intact but has too many entries.
pub fn choose_table(table1: &[u8], table2: &[u8]) -> Result<(u64, Vec<RegionEntry>), RegionError> {
    match parse_table(table1, REGION_TABLE1_OFFSET) {
        Ok(entries) => Ok((REGION_TABLE1_OFFSET, entries)),
        Err(e1 @ (RegionError::BadSignature { .. } | RegionError::BadChecksum { .. })) => {
            match parse_table(table2, REGION_TABLE2_OFFSET) {
                Ok(entries) => Ok((REGION_TABLE2_OFFSET, entries)),
                Err(e2) => Err(RegionError::NoValidTable {
                    first: Box::new(e1),
                    second: Box::new(e2),
                }),
            }
        }
        Err(e) => Err(e),
    }
}

/// Validates the entries of the chosen table against §2.2.3.2, the file
/// size and the log range (`[start, end)` in bytes, `None` without a log).
///
/// # Errors
/// Every [`RegionError`] variant about entries.
pub fn validate(
    table_offset: u64,
    entries: Vec<RegionEntry>,
    file_size: u64,
    log: Option<(u64, u64)>,
) -> Result<RegionTable, RegionError> {
    let mut bat = None;
    let mut metadata = None;
    for (i, e) in entries.iter().enumerate() {
        if entries
            .get(..i)
            .unwrap_or_default()
            .iter()
            .any(|p| p.guid == e.guid)
        {
            return Err(RegionError::DuplicateGuid { guid: e.guid });
        }
        if e.guid == BAT_REGION_GUID {
            bat = Some(*e);
        } else if e.guid == METADATA_REGION_GUID {
            metadata = Some(*e);
        } else if e.required {
            return Err(RegionError::UnknownRequiredRegion { guid: e.guid });
        }
        if !e.file_offset.is_multiple_of(MIB) {
            return Err(RegionError::UnalignedOffset {
                guid: e.guid,
                file_offset: e.file_offset,
            });
        }
        if e.file_offset < HEADER_SECTION_SIZE {
            return Err(RegionError::OffsetInHeaderSection {
                guid: e.guid,
                file_offset: e.file_offset,
            });
        }
        if e.length == 0 || !u64::from(e.length).is_multiple_of(MIB) {
            return Err(RegionError::BadLength {
                guid: e.guid,
                length: e.length,
            });
        }
        if e.file_offset
            .checked_add(u64::from(e.length))
            .is_none_or(|end| end > file_size)
        {
            return Err(RegionError::BeyondEof {
                guid: e.guid,
                file_offset: e.file_offset,
                length: e.length,
                file_size,
            });
        }
        if let Some((log_offset, log_end)) = log
            && e.file_offset < log_end
            && log_offset < e.end()
        {
            return Err(RegionError::OverlapsLog {
                guid: e.guid,
                file_offset: e.file_offset,
                log_offset,
                log_end,
            });
        }
    }
    let mut sorted: Vec<&RegionEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.file_offset);
    for pair in sorted.windows(2) {
        if let [a, b] = pair
            && b.file_offset < a.end()
        {
            return Err(RegionError::Overlap {
                first: a.guid,
                second: b.guid,
                offset: b.file_offset,
            });
        }
    }
    let bat = bat.ok_or(RegionError::MissingBat)?;
    let metadata = metadata.ok_or(RegionError::MissingMetadata)?;
    Ok(RegionTable {
        table_offset,
        entries,
        bat,
        metadata,
    })
}

/// Serialises entries into a 64 KiB region table with a correct checksum.
/// Used by writers and tests.
pub fn table_to_bytes(entries: &[RegionEntry]) -> Vec<u8> {
    let mut bytes = vec![0u8; REGION_TABLE_SIZE];
    bytes[0..4].copy_from_slice(&REGION_TABLE_SIGNATURE.to_le_bytes());
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    bytes[8..12].copy_from_slice(&count.to_le_bytes());
    for (e, chunk) in entries
        .iter()
        .zip(bytes[TABLE_HEADER_SIZE..].chunks_exact_mut(ENTRY_SIZE))
    {
        chunk[0..16].copy_from_slice(&e.guid.to_bytes_le());
        chunk[16..24].copy_from_slice(&e.file_offset.to_le_bytes());
        chunk[24..28].copy_from_slice(&e.length.to_le_bytes());
        chunk[28..32].copy_from_slice(&u32::from(e.required).to_le_bytes());
    }
    let crc = crc32c_with_zeroed_field(&bytes, REGION_TABLE_CHECKSUM_OFFSET);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 1 << 20;

    fn entry(guid: Uuid, mib: u64, len_mib: u32) -> RegionEntry {
        RegionEntry {
            guid,
            file_offset: mib * MIB,
            length: len_mib * M,
            required: true,
        }
    }

    fn standard() -> Vec<RegionEntry> {
        vec![
            entry(BAT_REGION_GUID, 2, 1),
            entry(METADATA_REGION_GUID, 3, 1),
        ]
    }

    const LOG: Option<(u64, u64)> = Some((MIB, 2 * MIB));

    #[test]
    fn standard_table_round_trips_and_validates() {
        let bytes = table_to_bytes(&standard());
        let entries = parse_table(&bytes, REGION_TABLE1_OFFSET).unwrap();
        let table = validate(REGION_TABLE1_OFFSET, entries, 8 * MIB, LOG).unwrap();
        assert_eq!(table.bat.file_offset, 2 * MIB);
        assert_eq!(table.metadata.file_offset, 3 * MIB);
    }

    #[test]
    fn table_two_is_used_when_table_one_checksum_fails() {
        let mut t1 = table_to_bytes(&standard());
        t1[100] ^= 1;
        let t2 = table_to_bytes(&standard());
        let (offset, _) = choose_table(&t1, &t2).unwrap();
        assert_eq!(offset, REGION_TABLE2_OFFSET);
    }

    #[test]
    fn both_tables_corrupt_is_an_error() {
        let mut t1 = table_to_bytes(&standard());
        t1[100] ^= 1;
        let err = choose_table(&t1, &[0u8; REGION_TABLE_SIZE]).unwrap_err();
        assert!(matches!(err, RegionError::NoValidTable { .. }));
    }

    #[test]
    fn bad_signature_is_reported() {
        let mut t1 = table_to_bytes(&standard());
        t1[0] = b'R';
        let err = parse_table(&t1, REGION_TABLE1_OFFSET).unwrap_err();
        assert!(matches!(
            err,
            RegionError::BadSignature {
                table_offset: REGION_TABLE1_OFFSET,
                ..
            }
        ));
    }

    #[test]
    fn bad_checksum_is_reported() {
        let mut t1 = table_to_bytes(&standard());
        t1[4] ^= 1;
        let err = parse_table(&t1, REGION_TABLE1_OFFSET).unwrap_err();
        assert!(matches!(err, RegionError::BadChecksum { .. }));
    }

    #[test]
    fn entry_count_above_2047_is_rejected() {
        let mut t = table_to_bytes(&standard());
        t[8..12].copy_from_slice(&2048u32.to_le_bytes());
        let crc = crc32c_with_zeroed_field(&t, 4);
        t[4..8].copy_from_slice(&crc.to_le_bytes());
        let err = parse_table(&t, REGION_TABLE1_OFFSET).unwrap_err();
        assert!(matches!(
            err,
            RegionError::TooManyEntries { count: 2048, .. }
        ));
    }

    #[test]
    fn unaligned_region_offset_is_rejected() {
        let mut e = standard();
        e[0].file_offset += 4096;
        let err = validate(0, e, 8 * MIB, LOG).unwrap_err();
        assert!(matches!(err, RegionError::UnalignedOffset { .. }));
    }

    #[test]
    fn region_in_header_section_is_rejected() {
        let mut e = standard();
        e[0].file_offset = 0;
        let err = validate(0, e, 8 * MIB, LOG).unwrap_err();
        assert!(matches!(err, RegionError::OffsetInHeaderSection { .. }));
    }

    #[test]
    fn zero_length_region_is_rejected() {
        let mut e = standard();
        e[1].length = 0;
        let err = validate(0, e, 8 * MIB, LOG).unwrap_err();
        assert!(matches!(err, RegionError::BadLength { length: 0, .. }));
    }

    #[test]
    fn region_past_end_of_file_is_rejected() {
        let err = validate(0, standard(), 3 * MIB, LOG).unwrap_err();
        assert!(matches!(err, RegionError::BeyondEof { .. }));
    }

    #[test]
    fn overlapping_regions_are_rejected() {
        let e = vec![
            entry(BAT_REGION_GUID, 2, 2),
            entry(METADATA_REGION_GUID, 3, 1),
        ];
        let err = validate(0, e, 8 * MIB, LOG).unwrap_err();
        assert!(matches!(err, RegionError::Overlap { offset, .. } if offset == 3 * MIB));
    }

    #[test]
    fn region_overlapping_log_is_rejected() {
        let e = vec![
            entry(BAT_REGION_GUID, 1, 1),
            entry(METADATA_REGION_GUID, 3, 1),
        ];
        let err = validate(0, e, 8 * MIB, LOG).unwrap_err();
        assert!(matches!(err, RegionError::OverlapsLog { .. }));
    }

    #[test]
    fn duplicate_region_guid_is_rejected() {
        let mut e = standard();
        e.push(entry(BAT_REGION_GUID, 5, 1));
        let err = validate(0, e, 8 * MIB, LOG).unwrap_err();
        assert_eq!(
            err,
            RegionError::DuplicateGuid {
                guid: BAT_REGION_GUID
            }
        );
    }

    #[test]
    fn unknown_required_region_is_refused() {
        let mut e = standard();
        e.push(entry(Uuid::from_u128(42), 5, 1));
        let err = validate(0, e, 8 * MIB, LOG).unwrap_err();
        assert_eq!(
            err,
            RegionError::UnknownRequiredRegion {
                guid: Uuid::from_u128(42)
            }
        );
    }

    #[test]
    fn unknown_optional_region_is_accepted() {
        let mut e = standard();
        let mut extra = entry(Uuid::from_u128(42), 5, 1);
        extra.required = false;
        e.push(extra);
        assert!(validate(0, e, 8 * MIB, LOG).is_ok());
    }

    #[test]
    fn known_regions_with_required_zero_are_accepted() {
        let mut e = standard();
        e[0].required = false;
        e[1].required = false;
        assert!(validate(0, e, 8 * MIB, LOG).is_ok());
    }

    #[test]
    fn missing_bat_region_is_rejected() {
        let e = vec![entry(METADATA_REGION_GUID, 3, 1)];
        assert_eq!(
            validate(0, e, 8 * MIB, LOG).unwrap_err(),
            RegionError::MissingBat
        );
    }

    #[test]
    fn missing_metadata_region_is_rejected() {
        let e = vec![entry(BAT_REGION_GUID, 3, 1)];
        assert_eq!(
            validate(0, e, 8 * MIB, LOG).unwrap_err(),
            RegionError::MissingMetadata
        );
    }
}
