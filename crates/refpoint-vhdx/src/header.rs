//! File Type Identifier and the two headers (MS-VHDX §2.2.1–2.2.2).
//!
//! The identifier at offset 0 carries the `vhdxfile` signature and an
//! informational UTF-16LE creator string. Two 4 KiB headers at 64 KiB and
//! 128 KiB carry the sequence number, the FileWriteGuid / DataWriteGuid /
//! LogGuid identities and the log location. The *current* header is the only
//! valid one, or the valid one with the strictly greater SequenceNumber;
//! equal sequence numbers are accepted only when both 80-byte structures are
//! identical (Disk2VHD writes such files).

use uuid::Uuid;
use zerocopy::{FromBytes, IntoBytes};

use crate::error::ErrorKind;
use crate::format::{
    FILE_IDENTIFIER_SIGNATURE, HEADER_CHECKSUM_OFFSET, HEADER_SECTION_SIZE, HEADER_SIGNATURE,
    HEADER_SIZE, HEADER1_OFFSET, HEADER2_OFFSET, MIB, RawFileIdentifier, RawHeader,
    crc32c_with_zeroed_field, guid_from_le, guid_to_le,
};

/// Which of the two header slots a header was read from (MS-VHDX §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderSlot {
    /// Header 1 at 64 KiB.
    First,
    /// Header 2 at 128 KiB.
    Second,
}

impl HeaderSlot {
    /// File offset of the slot in bytes.
    pub fn offset(self) -> u64 {
        match self {
            HeaderSlot::First => HEADER1_OFFSET,
            HeaderSlot::Second => HEADER2_OFFSET,
        }
    }

    /// The other slot.
    pub fn other(self) -> HeaderSlot {
        match self {
            HeaderSlot::First => HeaderSlot::Second,
            HeaderSlot::Second => HeaderSlot::First,
        }
    }

    /// 1 or 2, as the spec numbers the headers.
    pub fn number(self) -> u8 {
        match self {
            HeaderSlot::First => 1,
            HeaderSlot::Second => 2,
        }
    }
}

/// Violations of MS-VHDX §2.2.1–2.2.2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// §2.2: the file is shorter than the 1 MiB header section.
    #[error("file of {file_size} bytes is shorter than the 1 MiB VHDX header section")]
    TooSmall {
        /// File size (bytes).
        file_size: u64,
    },
    /// §2.2.1: the file does not start with `vhdxfile`.
    #[error("file type identifier at offset 0x0: signature {found:#018x} is not \"vhdxfile\"")]
    BadIdentifierSignature {
        /// The u64 found at offset 0.
        found: u64,
    },
    /// §2.2.2: the Signature field is not `head`.
    #[error("header {} at offset {:#x}: signature {found:#010x} is not \"head\"", slot.number(), slot.offset())]
    BadSignature {
        /// Slot read.
        slot: HeaderSlot,
        /// The u32 found.
        found: u32,
    },
    /// §2.2.2: CRC-32C over the 4 KiB header (checksum field zeroed) does not match.
    #[error("header {} at offset {:#x}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})", slot.number(), slot.offset())]
    BadChecksum {
        /// Slot read.
        slot: HeaderSlot,
        /// Checksum field.
        stored: u32,
        /// CRC-32C computed.
        computed: u32,
    },
    /// §2.2.2: no current header — neither slot holds a valid header.
    #[error("no valid header: header 1: {first}; header 2: {second}")]
    NoValidHeader {
        /// Why header 1 is invalid.
        first: Box<HeaderError>,
        /// Why header 2 is invalid.
        second: Box<HeaderError>,
    },
    /// §2.2.2: both headers are valid with the same SequenceNumber but differ.
    #[error("headers 1 and 2 both have SequenceNumber {sequence_number} but different contents")]
    AmbiguousCurrentHeader {
        /// The shared sequence number.
        sequence_number: u64,
    },
    /// §2.2.2: Version must be 1.
    #[error("header {} at offset {:#x}: Version {version} is not 1", slot.number(), slot.offset())]
    UnsupportedVersion {
        /// Slot of the current header.
        slot: HeaderSlot,
        /// Version field.
        version: u16,
    },
    /// §2.2.2: LogVersion must be 0 unless LogGuid is zero.
    #[error("header {} at offset {:#x}: LogVersion {log_version} is not 0 and LogGuid is set", slot.number(), slot.offset())]
    UnsupportedLogVersion {
        /// Slot of the current header.
        slot: HeaderSlot,
        /// LogVersion field.
        log_version: u16,
    },
    /// §2.2.2: LogOffset must be a multiple of 1 MiB and ≥ 1 MiB.
    #[error("header {} at offset {:#x}: LogOffset {log_offset:#x} is not a multiple of 1 MiB at or after 1 MiB", slot.number(), slot.offset())]
    BadLogOffset {
        /// Slot of the current header.
        slot: HeaderSlot,
        /// LogOffset field (bytes).
        log_offset: u64,
    },
    /// §2.2.2: LogLength must be a multiple of 1 MiB.
    #[error("header {} at offset {:#x}: LogLength {log_length:#x} is not a multiple of 1 MiB", slot.number(), slot.offset())]
    BadLogLength {
        /// Slot of the current header.
        slot: HeaderSlot,
        /// LogLength field (bytes).
        log_length: u32,
    },
    /// §2.2.2: the log (LogOffset + LogLength) lies beyond the end of the file.
    #[error("header {} at offset {:#x}: log [{log_offset:#x}, +{log_length:#x}) extends past end of file {file_size:#x}", slot.number(), slot.offset())]
    LogBeyondEof {
        /// Slot of the current header.
        slot: HeaderSlot,
        /// LogOffset (bytes).
        log_offset: u64,
        /// LogLength (bytes).
        log_length: u32,
        /// File size (bytes).
        file_size: u64,
    },
}

impl HeaderError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            HeaderError::UnsupportedVersion { .. } | HeaderError::UnsupportedLogVersion { .. } => {
                ErrorKind::Unsupported
            }
            _ => ErrorKind::Corrupt,
        }
    }

    pub(crate) fn offset(&self) -> Option<u64> {
        match self {
            HeaderError::BadIdentifierSignature { .. } => Some(0),
            HeaderError::BadSignature { slot, .. }
            | HeaderError::BadChecksum { slot, .. }
            | HeaderError::UnsupportedVersion { slot, .. }
            | HeaderError::UnsupportedLogVersion { slot, .. }
            | HeaderError::BadLogOffset { slot, .. }
            | HeaderError::BadLogLength { slot, .. }
            | HeaderError::LogBeyondEof { slot, .. } => Some(slot.offset()),
            HeaderError::TooSmall { .. }
            | HeaderError::NoValidHeader { .. }
            | HeaderError::AmbiguousCurrentHeader { .. } => None,
        }
    }
}

/// Parses the File Type Identifier (MS-VHDX §2.2.1) from at least its first
/// 520 bytes and returns the creator string (UTF-16LE up to the first NUL,
/// decoded lossily: it is informational only).
///
/// # Errors
/// [`HeaderError::BadIdentifierSignature`].
pub fn parse_file_identifier(bytes: &[u8]) -> Result<String, HeaderError> {
    let (raw, _) = RawFileIdentifier::read_from_prefix(bytes)
        .map_err(|_| HeaderError::BadIdentifierSignature { found: 0 })?;
    let signature = raw.signature.get();
    if signature != FILE_IDENTIFIER_SIGNATURE {
        return Err(HeaderError::BadIdentifierSignature { found: signature });
    }
    let units: Vec<u16> = raw
        .creator
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// One validated header (MS-VHDX §2.2.2): native integers and GUIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// SequenceNumber; the greater of two valid headers is current.
    pub sequence_number: u64,
    /// FileWriteGuid: changes on the first modification of each open session.
    pub file_write_guid: Uuid,
    /// DataWriteGuid: changes before the first user-visible change; the chain link.
    pub data_write_guid: Uuid,
    /// LogGuid: zero means there is nothing to replay.
    pub log_guid: Uuid,
    /// LogVersion (0).
    pub log_version: u16,
    /// Version (1).
    pub version: u16,
    /// LogLength in bytes (multiple of 1 MiB).
    pub log_length: u32,
    /// LogOffset in bytes (multiple of 1 MiB, ≥ 1 MiB).
    pub log_offset: u64,
}

impl Header {
    /// Parses one 4 KiB header slot, checking Signature and Checksum (the
    /// validity test of §2.2.2). Version rules are checked on the current
    /// header only, by [`select_current`].
    ///
    /// # Errors
    /// [`HeaderError::BadSignature`], [`HeaderError::BadChecksum`] (also
    /// when `bytes` is shorter than 4 KiB).
    pub fn parse(bytes: &[u8], slot: HeaderSlot) -> Result<Header, HeaderError> {
        let Some(structure) = bytes.get(..HEADER_SIZE) else {
            return Err(HeaderError::BadChecksum {
                slot,
                stored: 0,
                computed: 0,
            });
        };
        let (raw, _) = RawHeader::read_from_prefix(structure)
            .map_err(|_| HeaderError::BadSignature { slot, found: 0 })?;
        if raw.signature.get() != HEADER_SIGNATURE {
            return Err(HeaderError::BadSignature {
                slot,
                found: raw.signature.get(),
            });
        }
        let computed = crc32c_with_zeroed_field(structure, HEADER_CHECKSUM_OFFSET);
        if computed != raw.checksum.get() {
            return Err(HeaderError::BadChecksum {
                slot,
                stored: raw.checksum.get(),
                computed,
            });
        }
        Ok(Header {
            sequence_number: raw.sequence_number.get(),
            file_write_guid: guid_from_le(raw.file_write_guid),
            data_write_guid: guid_from_le(raw.data_write_guid),
            log_guid: guid_from_le(raw.log_guid),
            log_version: raw.log_version.get(),
            version: raw.version.get(),
            log_length: raw.log_length.get(),
            log_offset: raw.log_offset.get(),
        })
    }

    /// Serialises the header into its 4 KiB on-disk form with a correct
    /// checksum (reserved bytes zero). Used by writers and tests.
    pub fn to_bytes(&self) -> Vec<u8> {
        let raw = RawHeader {
            signature: HEADER_SIGNATURE.into(),
            checksum: 0.into(),
            sequence_number: self.sequence_number.into(),
            file_write_guid: guid_to_le(self.file_write_guid),
            data_write_guid: guid_to_le(self.data_write_guid),
            log_guid: guid_to_le(self.log_guid),
            log_version: self.log_version.into(),
            version: self.version.into(),
            log_length: self.log_length.into(),
            log_offset: self.log_offset.into(),
        };
        let mut bytes = vec![0u8; HEADER_SIZE];
        bytes[..80].copy_from_slice(raw.as_bytes());
        let crc = crc32c_with_zeroed_field(&bytes, HEADER_CHECKSUM_OFFSET);
        bytes[HEADER_CHECKSUM_OFFSET..HEADER_CHECKSUM_OFFSET + 4]
            .copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// True when the log must be replayed: LogGuid ≠ 0 and LogLength ≠ 0
    /// (MS-VHDX §2.3.3; the LogLength shortcut is qemu's).
    pub fn log_is_dirty(&self) -> bool {
        !self.log_guid.is_nil() && self.log_length != 0
    }

    /// The log region `[offset, offset + length)` in bytes, or `None` when
    /// LogLength is 0.
    pub fn log_range(&self) -> Option<(u64, u64)> {
        (self.log_length != 0).then(|| {
            (
                self.log_offset,
                self.log_offset.saturating_add(u64::from(self.log_length)),
            )
        })
    }

    /// Checks the log location against §2.2.2 and the file size in bytes.
    ///
    /// # Errors
    /// [`HeaderError::BadLogOffset`], [`HeaderError::BadLogLength`],
    /// [`HeaderError::LogBeyondEof`].
    pub fn validate_log_location(
        &self,
        slot: HeaderSlot,
        file_size: u64,
    ) -> Result<(), HeaderError> {
        if self.log_length == 0 {
            return Ok(());
        }
        if !self.log_offset.is_multiple_of(MIB) || self.log_offset < HEADER_SECTION_SIZE {
            return Err(HeaderError::BadLogOffset {
                slot,
                log_offset: self.log_offset,
            });
        }
        if !u64::from(self.log_length).is_multiple_of(MIB) {
            return Err(HeaderError::BadLogLength {
                slot,
                log_length: self.log_length,
            });
        }
        let end = self.log_offset.checked_add(u64::from(self.log_length));
        if end.is_none_or(|end| end > file_size) {
            return Err(HeaderError::LogBeyondEof {
                slot,
                log_offset: self.log_offset,
                log_length: self.log_length,
                file_size,
            });
        }
        Ok(())
    }
}

/// The current header and the state of both slots.
#[derive(Debug, Clone)]
pub struct HeaderPair {
    /// The current header.
    pub current: Header,
    /// The slot the current header was read from.
    pub current_slot: HeaderSlot,
    /// The other slot's header when it is valid.
    pub other: Option<Header>,
}

/// Selects the current header from the two 4 KiB slots (MS-VHDX §2.2.2) and
/// checks its Version and LogVersion.
///
/// # Errors
/// [`HeaderError::NoValidHeader`], [`HeaderError::AmbiguousCurrentHeader`],
/// [`HeaderError::UnsupportedVersion`], [`HeaderError::UnsupportedLogVersion`].
pub fn select_current(first: &[u8], second: &[u8]) -> Result<HeaderPair, HeaderError> {
    let h1 = Header::parse(first, HeaderSlot::First);
    let h2 = Header::parse(second, HeaderSlot::Second);
    let pair = match (h1, h2) {
        (Err(e1), Err(e2)) => {
            return Err(HeaderError::NoValidHeader {
                first: Box::new(e1),
                second: Box::new(e2),
            });
        }
        (Ok(h), Err(_)) => HeaderPair {
            current: h,
            current_slot: HeaderSlot::First,
            other: None,
        },
        (Err(_), Ok(h)) => HeaderPair {
            current: h,
            current_slot: HeaderSlot::Second,
            other: None,
        },
        (Ok(a), Ok(b)) => {
            if a.sequence_number > b.sequence_number {
                HeaderPair {
                    current: a,
                    current_slot: HeaderSlot::First,
                    other: Some(b),
                }
            } else if b.sequence_number > a.sequence_number {
                HeaderPair {
                    current: b,
                    current_slot: HeaderSlot::Second,
                    other: Some(a),
                }
            } else if first.get(..80) == second.get(..80) {
                HeaderPair {
                    current: a,
                    current_slot: HeaderSlot::First,
                    other: Some(b),
                }
            } else {
                return Err(HeaderError::AmbiguousCurrentHeader {
                    sequence_number: a.sequence_number,
                });
            }
        }
    };
    let h = &pair.current;
    if h.version != 1 {
        return Err(HeaderError::UnsupportedVersion {
            slot: pair.current_slot,
            version: h.version,
        });
    }
    if h.log_version != 0 && !h.log_guid.is_nil() {
        return Err(HeaderError::UnsupportedLogVersion {
            slot: pair.current_slot,
            log_version: h.log_version,
        });
    }
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64) -> Header {
        Header {
            sequence_number: seq,
            file_write_guid: Uuid::from_u128(1),
            data_write_guid: Uuid::from_u128(2),
            log_guid: Uuid::nil(),
            log_version: 0,
            version: 1,
            log_length: 1 << 20,
            log_offset: MIB,
        }
    }

    #[test]
    fn header_round_trips_through_bytes() {
        let h = header(7);
        assert_eq!(Header::parse(&h.to_bytes(), HeaderSlot::First), Ok(h));
    }

    #[test]
    fn greater_sequence_number_is_current() {
        let pair = select_current(&header(4).to_bytes(), &header(5).to_bytes()).unwrap();
        assert_eq!(pair.current_slot, HeaderSlot::Second);
        assert_eq!(pair.current.sequence_number, 5);
    }

    #[test]
    fn only_valid_header_is_current() {
        let mut bad = header(9).to_bytes();
        bad[100] ^= 1;
        let pair = select_current(&header(4).to_bytes(), &bad).unwrap();
        assert_eq!(pair.current_slot, HeaderSlot::First);
        assert!(pair.other.is_none());
    }

    #[test]
    fn identical_headers_with_equal_sequence_pick_header_one() {
        let bytes = header(1).to_bytes();
        let pair = select_current(&bytes, &bytes).unwrap();
        assert_eq!(pair.current_slot, HeaderSlot::First);
    }

    #[test]
    fn differing_headers_with_equal_sequence_are_ambiguous() {
        let mut other = header(1);
        other.data_write_guid = Uuid::from_u128(99);
        let err = select_current(&header(1).to_bytes(), &other.to_bytes()).unwrap_err();
        assert_eq!(
            err,
            HeaderError::AmbiguousCurrentHeader { sequence_number: 1 }
        );
    }

    #[test]
    fn bad_checksum_in_both_slots_names_both() {
        let mut a = header(1).to_bytes();
        a[4] ^= 0xff;
        let mut b = header(2).to_bytes();
        b[0] = b'x';
        let err = select_current(&a, &b).unwrap_err();
        assert!(matches!(
            err,
            HeaderError::NoValidHeader { ref first, ref second }
                if matches!(**first, HeaderError::BadChecksum { slot: HeaderSlot::First, .. })
                && matches!(**second, HeaderError::BadSignature { slot: HeaderSlot::Second, .. })
        ));
    }

    #[test]
    fn version_two_is_unsupported() {
        let mut h = header(3);
        h.version = 2;
        let err = select_current(&h.to_bytes(), &[]).unwrap_err();
        assert_eq!(
            err,
            HeaderError::UnsupportedVersion {
                slot: HeaderSlot::First,
                version: 2
            }
        );
    }

    #[test]
    fn log_version_nonzero_with_log_guid_is_unsupported() {
        let mut h = header(3);
        h.log_version = 1;
        h.log_guid = Uuid::from_u128(5);
        let err = select_current(&[], &h.to_bytes()).unwrap_err();
        assert!(matches!(
            err,
            HeaderError::UnsupportedLogVersion { log_version: 1, .. }
        ));
    }

    #[test]
    fn log_version_nonzero_without_log_guid_is_accepted() {
        let mut h = header(3);
        h.log_version = 1;
        assert!(select_current(&[], &h.to_bytes()).is_ok());
    }

    #[test]
    fn misaligned_log_offset_is_rejected() {
        let mut h = header(1);
        h.log_offset = MIB + 4096;
        let err = h
            .validate_log_location(HeaderSlot::First, 16 * MIB)
            .unwrap_err();
        assert!(matches!(err, HeaderError::BadLogOffset { .. }));
    }

    #[test]
    fn log_in_header_section_is_rejected() {
        let mut h = header(1);
        h.log_offset = 0;
        let err = h
            .validate_log_location(HeaderSlot::First, 16 * MIB)
            .unwrap_err();
        assert!(matches!(
            err,
            HeaderError::BadLogOffset { log_offset: 0, .. }
        ));
    }

    #[test]
    fn misaligned_log_length_is_rejected() {
        let mut h = header(1);
        h.log_length = 4096;
        let err = h
            .validate_log_location(HeaderSlot::First, 16 * MIB)
            .unwrap_err();
        assert!(matches!(
            err,
            HeaderError::BadLogLength {
                log_length: 4096,
                ..
            }
        ));
    }

    #[test]
    fn log_past_end_of_file_is_rejected() {
        let h = header(1);
        let err = h
            .validate_log_location(HeaderSlot::Second, MIB)
            .unwrap_err();
        assert!(matches!(err, HeaderError::LogBeyondEof { file_size, .. } if file_size == MIB));
    }

    #[test]
    fn identifier_without_signature_is_rejected() {
        let err = parse_file_identifier(&[0u8; 1024]).unwrap_err();
        assert_eq!(err, HeaderError::BadIdentifierSignature { found: 0 });
    }

    #[test]
    fn identifier_creator_is_decoded_up_to_nul() {
        let mut bytes = vec![0u8; 1024];
        bytes[..8].copy_from_slice(b"vhdxfile");
        for (i, u) in "QEMU v10".encode_utf16().enumerate() {
            bytes[8 + 2 * i..10 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        assert_eq!(parse_file_identifier(&bytes).unwrap(), "QEMU v10");
    }
}
