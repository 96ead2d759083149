//! Writing the VHDX log (MS-VHDX §2.3, vhdx.md §6.6): building log entries
//! and placing them in the circular log.
//!
//! An entry is `n × 4 KiB`: descriptor sectors (the 64-byte entry header,
//! then 32-byte descriptors, `ceil((count + 2) / 128)` sectors), followed by
//! one data sector per data descriptor. A data sector holds bytes 8..4092
//! of the 4 KiB update between `data` + SequenceHigh and SequenceLow; the
//! first 8 and last 4 bytes live in the descriptor. The CRC-32C covers the
//! whole entry. [`build_entry`] is the exact inverse of the reader's parser
//! (`log.rs`), checked by round-trip tests; unlike `log::encode_entry` (a
//! test helper) it refuses entries that break a rule.
//!
//! [`LogWriter`] appends entries at the head of the circular log, wrapping
//! sector by sector at its end, and never lets the head reach the tail
//! (one sector always stays free, as qemu does): Tail is the offset of the
//! oldest entry not yet applied to its final location.

use std::fs::File;
use std::os::unix::fs::FileExt;

use uuid::Uuid;
use zerocopy::IntoBytes;
use zerocopy::little_endian::{U32, U64};

use crate::format::{
    self, DATA_DESCRIPTOR_SIGNATURE, DATA_SECTOR_SIGNATURE, LOG_ENTRY_CHECKSUM_OFFSET,
    LOG_ENTRY_SIGNATURE, LOG_SECTOR_SIZE, LOGGABLE_OFFSET, MIB, RawLogDataSector, RawLogDescriptor,
    RawLogEntryHeader, ZERO_DESCRIPTOR_SIGNATURE,
};
use crate::log::LogWrite;

/// Bytes of one log sector (MS-VHDX §2.3).
const SECTOR: usize = 4096;
/// Bytes of one descriptor or of the entry header's descriptor slots.
const DESCRIPTOR_SIZE: usize = 32;

/// Offset and length in bytes of the file range an update covers.
fn update_span(update: &LogWrite) -> (u64, u64) {
    match update {
        LogWrite::Data { file_offset, .. } => (*file_offset, LOG_SECTOR_SIZE),
        LogWrite::Zero {
            file_offset,
            length,
        } => (*file_offset, *length),
    }
}

/// Entry header fields a writer chooses (MS-VHDX §2.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    /// > 0; the descriptors and data sectors repeat it.
    pub sequence_number: u64,
    /// Byte offset in the log of the oldest entry of this entry's sequence,
    /// a multiple of 4 KiB.
    pub tail: u32,
    /// The header's LogGuid; non-zero.
    pub log_guid: Uuid,
    /// A file size known stable on disk, multiple of 1 MiB.
    pub flushed_file_offset: u64,
    /// A file size all allocated structures fit in, multiple of 1 MiB.
    pub last_file_offset: u64,
}

/// A log entry or log placement rule a writer would break (MS-VHDX §2.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogWriteError {
    /// Entry sequence numbers must be greater than zero (§2.3.1.1).
    #[error("log entry sequence number must be greater than zero (MS-VHDX 2.3.1.1)")]
    ZeroSequence,
    /// LogGuid of an entry must be non-zero (§2.2.2).
    #[error("log entry LogGuid must not be zero (MS-VHDX 2.2.2)")]
    NilLogGuid,
    /// Tail must be a multiple of 4 KiB (§2.3.1.1).
    #[error("log tail {tail:#x} is not a multiple of 4 KiB (MS-VHDX 2.3.1.1)")]
    UnalignedTail {
        /// The tail offset in the log.
        tail: u32,
    },
    /// FlushedFileOffset and LastFileOffset must be multiples of 1 MiB (§2.3.1.1).
    #[error("{field} {value:#x} is not a multiple of 1 MiB (MS-VHDX 2.3.1.1)")]
    UnalignedFileOffset {
        /// `FlushedFileOffset` or `LastFileOffset`.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// Descriptor FileOffset and ZeroLength must be multiples of 4 KiB, ZeroLength > 0 (§2.3.1.2–3).
    #[error(
        "log update at {file_offset:#x} of {length} bytes is not 4 KiB aligned (MS-VHDX 2.3.1.2)"
    )]
    UnalignedUpdate {
        /// Target file offset.
        file_offset: u64,
        /// Bytes covered.
        length: u64,
    },
    /// Nothing below Region Table 1 (192 KiB) may be written through the log (§2.2.1).
    #[error("log update at {file_offset:#x} targets the first 192 KiB (MS-VHDX 2.2.1)")]
    UpdateBelowRegionTable {
        /// Target file offset.
        file_offset: u64,
    },
    /// An update must not target the log itself.
    #[error("log update at {file_offset:#x} overlaps the log (MS-VHDX 2.3)")]
    UpdateOverlapsLog {
        /// Target file offset.
        file_offset: u64,
    },
    /// The entry does not fit in the free space between head and tail.
    #[error("log entry of {entry_length} bytes does not fit: {free} bytes free before the tail")]
    LogFull {
        /// Entry length, bytes.
        entry_length: u64,
        /// Free bytes (one sector always stays free).
        free: u64,
    },
}

impl LogWriteError {
    /// The crate-boundary kind: a writer bug or an unsuitable log, never user data.
    pub(crate) fn kind(&self) -> crate::error::ErrorKind {
        match self {
            LogWriteError::LogFull { .. } => crate::error::ErrorKind::Unsupported,
            _ => crate::error::ErrorKind::InvalidArgument,
        }
    }
}

/// Number of descriptor sectors for `count` descriptors: `ceil((count + 2) / 128)`.
pub(crate) fn descriptor_sectors(count: usize) -> usize {
    count.saturating_add(2).div_ceil(SECTOR / DESCRIPTOR_SIZE)
}

/// Entry length in bytes for these updates.
pub(crate) fn entry_length(updates: &[LogWrite]) -> usize {
    let data = updates
        .iter()
        .filter(|u| matches!(u, LogWrite::Data { .. }))
        .count();
    descriptor_sectors(updates.len())
        .saturating_add(data)
        .saturating_mul(SECTOR)
}

/// Builds one complete log entry (MS-VHDX §2.3.1): header, descriptors in
/// `updates` order, data sectors in the same order, CRC-32C over the whole
/// entry. Returns the entry bytes (a multiple of 4 KiB).
///
/// # Errors
/// A [`LogWriteError`] naming the field that breaks a rule.
pub(crate) fn build_entry(
    header: &EntryHeader,
    updates: &[LogWrite],
) -> Result<Vec<u8>, LogWriteError> {
    let seq = header.sequence_number;
    if seq == 0 {
        return Err(LogWriteError::ZeroSequence);
    }
    if header.log_guid.is_nil() {
        return Err(LogWriteError::NilLogGuid);
    }
    if !u64::from(header.tail).is_multiple_of(LOG_SECTOR_SIZE) {
        return Err(LogWriteError::UnalignedTail { tail: header.tail });
    }
    for (field, value) in [
        ("FlushedFileOffset", header.flushed_file_offset),
        ("LastFileOffset", header.last_file_offset),
    ] {
        if !value.is_multiple_of(MIB) {
            return Err(LogWriteError::UnalignedFileOffset { field, value });
        }
    }
    for update in updates {
        let (file_offset, length) = update_span(update);
        if !file_offset.is_multiple_of(LOG_SECTOR_SIZE)
            || !length.is_multiple_of(LOG_SECTOR_SIZE)
            || length == 0
        {
            return Err(LogWriteError::UnalignedUpdate {
                file_offset,
                length,
            });
        }
        if file_offset < LOGGABLE_OFFSET {
            return Err(LogWriteError::UpdateBelowRegionTable { file_offset });
        }
    }
    let length = entry_length(updates);
    let entry_len32 = u32::try_from(length).map_err(|_| LogWriteError::LogFull {
        entry_length: u64::try_from(length).unwrap_or(u64::MAX),
        free: u64::from(u32::MAX),
    })?;
    let descriptor_count = u32::try_from(updates.len()).map_err(|_| LogWriteError::LogFull {
        entry_length: u64::from(entry_len32),
        free: u64::from(u32::MAX),
    })?;
    let mut entry = vec![0u8; length];
    let raw_header = RawLogEntryHeader {
        signature: U32::new(LOG_ENTRY_SIGNATURE),
        checksum: U32::new(0),
        entry_length: U32::new(entry_len32),
        tail: U32::new(header.tail),
        sequence_number: U64::new(seq),
        descriptor_count: U32::new(descriptor_count),
        reserved: U32::new(0),
        log_guid: format::guid_to_le(header.log_guid),
        flushed_file_offset: U64::new(header.flushed_file_offset),
        last_file_offset: U64::new(header.last_file_offset),
    };
    let mut cursor = Writer {
        bytes: &mut entry,
        at: 0,
    };
    cursor.put(raw_header.as_bytes());
    for update in updates {
        let descriptor = match update {
            LogWrite::Data {
                file_offset,
                data: sector,
            } => RawLogDescriptor {
                signature: U32::new(DATA_DESCRIPTOR_SIGNATURE),
                trailing_bytes: sector_bytes::<4>(sector, SECTOR - 4),
                leading_bytes: sector_bytes::<8>(sector, 0),
                file_offset: U64::new(*file_offset),
                sequence_number: U64::new(seq),
            },
            LogWrite::Zero {
                file_offset,
                length,
            } => RawLogDescriptor {
                signature: U32::new(ZERO_DESCRIPTOR_SIGNATURE),
                trailing_bytes: [0; 4],
                leading_bytes: length.to_le_bytes(),
                file_offset: U64::new(*file_offset),
                sequence_number: U64::new(seq),
            },
        };
        cursor.put(descriptor.as_bytes());
    }
    cursor.at = descriptor_sectors(updates.len()).saturating_mul(SECTOR);
    for update in updates {
        if let LogWrite::Data { data: sector, .. } = update {
            let mut data = [0u8; 4084];
            data.copy_from_slice(sector.get(8..SECTOR - 4).unwrap_or(&[0; 4084]));
            let raw = RawLogDataSector {
                signature: U32::new(DATA_SECTOR_SIGNATURE),
                sequence_high: U32::new(u32::try_from(seq >> 32).unwrap_or(u32::MAX)),
                data,
                sequence_low: U32::new(u32::try_from(seq & 0xFFFF_FFFF).unwrap_or(u32::MAX)),
            };
            cursor.put(raw.as_bytes());
        }
    }
    let crc = format::crc32c_with_zeroed_field(&entry, LOG_ENTRY_CHECKSUM_OFFSET);
    if let Some(field) = entry.get_mut(LOG_ENTRY_CHECKSUM_OFFSET..LOG_ENTRY_CHECKSUM_OFFSET + 4) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(entry)
}

/// `N` bytes of a sector starting at `at` (constant, in-bounds positions).
fn sector_bytes<const N: usize>(sector: &[u8; SECTOR], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = sector.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Sequential writer into a pre-sized buffer (sizes computed by `entry_length`).
struct Writer<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, src: &[u8]) {
        let end = self.at.saturating_add(src.len());
        if let Some(dst) = self.bytes.get_mut(self.at..end) {
            dst.copy_from_slice(src);
        }
        self.at = end;
    }
}

/// Where an entry landed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppendedEntry {
    /// Byte offset of the entry inside the log.
    pub log_position: u32,
    /// Entry length, bytes.
    pub length: u32,
    /// Its sequence number.
    pub sequence_number: u64,
}

/// The circular log of one open file (MS-VHDX §2.3): appends entries at the
/// head, wraps at the end, keeps Tail at the oldest unapplied entry.
#[derive(Debug)]
pub(crate) struct LogWriter {
    /// File offset of the log, bytes.
    log_offset: u64,
    /// Log length, bytes (multiple of 1 MiB).
    log_length: u32,
    log_guid: Uuid,
    next_sequence: u64,
    /// Log position where the next entry goes.
    head: u32,
    /// Log position of the oldest entry not yet applied; equals `head` when
    /// every entry has been applied.
    tail: u32,
}

impl LogWriter {
    /// A log at (`log_offset`, `log_length`) whose entries carry `log_guid`,
    /// starting at log position 0 with sequence number `first_sequence`
    /// (0 is bumped to 1).
    pub(crate) fn new(
        log_offset: u64,
        log_length: u32,
        log_guid: Uuid,
        first_sequence: u64,
    ) -> LogWriter {
        LogWriter {
            log_offset,
            log_length,
            log_guid,
            next_sequence: first_sequence.max(1),
            head: 0,
            tail: 0,
        }
    }

    /// Starts a new session of the log: entries carry `log_guid` from now on.
    /// Only valid when every entry has been applied.
    pub(crate) fn set_log_guid(&mut self, log_guid: Uuid) {
        self.log_guid = log_guid;
    }

    /// Bytes the next entry may use without the head reaching the tail.
    pub(crate) fn free_bytes(&self) -> u64 {
        let length = u64::from(self.log_length);
        if length == 0 {
            return 0;
        }
        let used = (u64::from(self.head) + length - u64::from(self.tail)) % length;
        length.saturating_sub(used).saturating_sub(LOG_SECTOR_SIZE)
    }

    /// Builds an entry for `updates` and writes it at the head (wrapping at
    /// the end of the log), with Tail = the oldest unapplied entry. The
    /// caller flushes the file afterwards. FlushedFileOffset and
    /// LastFileOffset are given by the caller (multiples of 1 MiB).
    ///
    /// # Errors
    /// `Ok(Err(..))` for a rule the entry would break (including
    /// [`LogWriteError::LogFull`]); `Err(io)` if the write fails.
    pub(crate) fn append(
        &mut self,
        file: &File,
        updates: &[LogWrite],
        flushed_file_offset: u64,
        last_file_offset: u64,
    ) -> std::io::Result<Result<AppendedEntry, LogWriteError>> {
        let log_end = self.log_offset.saturating_add(u64::from(self.log_length));
        for update in updates {
            let (file_offset, length) = update_span(update);
            let end = file_offset.saturating_add(length);
            if file_offset < log_end && end > self.log_offset {
                return Ok(Err(LogWriteError::UpdateOverlapsLog { file_offset }));
            }
        }
        let length = entry_length(updates);
        let length64 = u64::try_from(length).unwrap_or(u64::MAX);
        let free = self.free_bytes();
        if length64 > free {
            return Ok(Err(LogWriteError::LogFull {
                entry_length: length64,
                free,
            }));
        }
        let sequence_number = self.next_sequence;
        let header = EntryHeader {
            sequence_number,
            tail: self.tail,
            log_guid: self.log_guid,
            flushed_file_offset,
            last_file_offset,
        };
        let entry = match build_entry(&header, updates) {
            Ok(entry) => entry,
            Err(e) => return Ok(Err(e)),
        };
        let position = self.head;
        // Split at the end of the log: the entry continues at log position 0.
        let room = usize::try_from(self.log_length - position).unwrap_or(usize::MAX);
        let (first, second) = entry.split_at(room.min(entry.len()));
        file.write_all_at(first, self.log_offset + u64::from(position))?;
        if !second.is_empty() {
            file.write_all_at(second, self.log_offset)?;
        }
        let length32 = u32::try_from(length).unwrap_or(u32::MAX);
        self.head = u32::try_from((u64::from(position) + length64) % u64::from(self.log_length))
            .unwrap_or(0);
        self.next_sequence = sequence_number.saturating_add(1);
        Ok(Ok(AppendedEntry {
            log_position: position,
            length: length32,
            sequence_number,
        }))
    }

    /// Moves the head (and the tail, the log being fully applied) to log
    /// position `position` (bytes, a multiple of 4 KiB), to test wrapping.
    #[cfg(test)]
    pub(crate) fn reposition(&mut self, position: u32) {
        self.head = position % self.log_length.max(1);
        self.tail = self.head;
    }

    /// Records that every appended entry has reached its final location:
    /// the next entry starts a new sequence (Tail = itself).
    pub(crate) fn mark_applied(&mut self) {
        self.tail = self.head;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB32: u32 = 1 << 20;

    fn sector(fill: u8) -> Box<[u8; SECTOR]> {
        let mut s = Box::new([fill; SECTOR]);
        s[0] = 0xA0;
        s[SECTOR - 1] = 0xAF;
        s
    }

    fn header(seq: u64) -> EntryHeader {
        EntryHeader {
            sequence_number: seq,
            tail: 0,
            log_guid: Uuid::from_u128(0x1234),
            flushed_file_offset: 4 * MIB,
            last_file_offset: 5 * MIB,
        }
    }

    #[test]
    fn entry_with_two_data_updates_is_three_sectors_with_split_sequence() {
        let seq = 0x0000_0001_0000_0002;
        let updates = vec![
            LogWrite::Data {
                file_offset: 3 * MIB,
                data: sector(1),
            },
            LogWrite::Zero {
                file_offset: 4 * MIB,
                length: 8192,
            },
            LogWrite::Data {
                file_offset: 3 * MIB + 4096,
                data: sector(2),
            },
        ];

        let entry = build_entry(&header(seq), &updates).unwrap();

        assert_eq!(entry.len(), 3 * SECTOR);
        // Second data sector (sector index 2) holds the second Data update.
        let ds = &entry[2 * SECTOR..3 * SECTOR];
        assert_eq!(&ds[0..4], b"data");
        assert_eq!(u32::from_le_bytes(ds[4..8].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(ds[4092..4096].try_into().unwrap()), 2);
        assert_eq!(ds[8], 2);
        // Third descriptor's leading bytes hold the first 8 bytes of its sector.
        let d3 = &entry[64 + 2 * 32..64 + 3 * 32];
        assert_eq!(&d3[0..4], b"desc");
        assert_eq!(d3[4 + 3], 0xAF);
        assert_eq!(d3[8], 0xA0);
    }

    #[test]
    fn entry_checksum_covers_data_sectors() {
        let updates = vec![LogWrite::Data {
            file_offset: 3 * MIB,
            data: sector(7),
        }];

        let entry = build_entry(&header(9), &updates).unwrap();

        let stored = u32::from_le_bytes(entry[4..8].try_into().unwrap());
        assert_eq!(stored, format::crc32c_with_zeroed_field(&entry, 4));
        let mut corrupted = entry.clone();
        corrupted[SECTOR + 100] ^= 1;
        assert_ne!(stored, format::crc32c_with_zeroed_field(&corrupted, 4));
    }

    #[test]
    fn descriptor_sectors_grow_after_126_descriptors() {
        assert_eq!(descriptor_sectors(0), 1);
        assert_eq!(descriptor_sectors(126), 1);
        assert_eq!(descriptor_sectors(127), 2);
        assert_eq!(descriptor_sectors(254), 2);
        assert_eq!(descriptor_sectors(255), 3);
    }

    #[test]
    fn sequence_zero_is_rejected() {
        assert_eq!(
            build_entry(&header(0), &[]),
            Err(LogWriteError::ZeroSequence)
        );
    }

    #[test]
    fn nil_log_guid_is_rejected() {
        let h = EntryHeader {
            log_guid: Uuid::nil(),
            ..header(1)
        };

        assert_eq!(build_entry(&h, &[]), Err(LogWriteError::NilLogGuid));
    }

    #[test]
    fn unaligned_tail_is_rejected() {
        let h = EntryHeader {
            tail: 512,
            ..header(1)
        };

        assert_eq!(
            build_entry(&h, &[]),
            Err(LogWriteError::UnalignedTail { tail: 512 })
        );
    }

    #[test]
    fn flushed_file_offset_not_mib_multiple_is_rejected() {
        let h = EntryHeader {
            flushed_file_offset: MIB + 4096,
            ..header(1)
        };

        assert_eq!(
            build_entry(&h, &[]),
            Err(LogWriteError::UnalignedFileOffset {
                field: "FlushedFileOffset",
                value: MIB + 4096
            })
        );
    }

    #[test]
    fn unaligned_zero_length_is_rejected() {
        let u = [LogWrite::Zero {
            file_offset: 3 * MIB,
            length: 100,
        }];

        assert_eq!(
            build_entry(&header(1), &u),
            Err(LogWriteError::UnalignedUpdate {
                file_offset: 3 * MIB,
                length: 100
            })
        );
    }

    #[test]
    fn update_of_the_header_area_is_rejected() {
        let u = [LogWrite::Data {
            file_offset: 0x20000,
            data: sector(0),
        }];

        assert_eq!(
            build_entry(&header(1), &u),
            Err(LogWriteError::UpdateBelowRegionTable {
                file_offset: 0x20000
            })
        );
    }

    #[test]
    fn update_of_the_log_itself_is_rejected() {
        let file = tempfile::tempfile().unwrap();
        let mut log = LogWriter::new(MIB, MIB32, Uuid::from_u128(1), 1);
        let u = [LogWrite::Data {
            file_offset: MIB + 8192,
            data: sector(0),
        }];

        let result = log.append(&file, &u, 4 * MIB, 4 * MIB).unwrap();

        assert_eq!(
            result,
            Err(LogWriteError::UpdateOverlapsLog {
                file_offset: MIB + 8192
            })
        );
    }

    #[test]
    fn entries_wrap_at_the_end_of_the_log() {
        let file = tempfile::tempfile().unwrap();
        let mut log = LogWriter::new(MIB, MIB32, Uuid::from_u128(1), 1);
        // 3-sector entries: 85 × 12 KiB = 1020 KiB, the 86th has one sector before the end.
        let updates = vec![
            LogWrite::Data {
                file_offset: 3 * MIB,
                data: sector(1),
            },
            LogWrite::Data {
                file_offset: 3 * MIB + 4096,
                data: sector(2),
            },
        ];
        for _ in 0..85 {
            log.append(&file, &updates, 4 * MIB, 4 * MIB)
                .unwrap()
                .unwrap();
            log.mark_applied();
        }

        let wrapped = log
            .append(&file, &updates, 4 * MIB, 4 * MIB)
            .unwrap()
            .unwrap();

        assert_eq!(wrapped.log_position, 85 * 12 * 1024);
        let mut tail_part = vec![0u8; 8192];
        file.read_exact_at(&mut tail_part, MIB).unwrap();
        assert_eq!(
            &tail_part[4096 + 8..4096 + 16],
            &[2u8; 8],
            "third sector wrapped to log start"
        );
    }

    #[test]
    fn head_never_reaches_an_unapplied_tail() {
        let file = tempfile::tempfile().unwrap();
        let mut log = LogWriter::new(MIB, MIB32, Uuid::from_u128(1), 1);
        let updates: Vec<LogWrite> = (0..63)
            .map(|i| LogWrite::Data {
                file_offset: 3 * MIB + i * 4096,
                data: sector(1),
            })
            .collect();
        // 64-sector entries: 3 use 192 of 256 sectors; a 4th would leave none free.
        for _ in 0..3 {
            log.append(&file, &updates, 4 * MIB, 4 * MIB)
                .unwrap()
                .unwrap();
        }

        let full = log.append(&file, &updates, 4 * MIB, 4 * MIB).unwrap();

        assert_eq!(
            full,
            Err(LogWriteError::LogFull {
                entry_length: 64 * 4096,
                free: 63 * 4096
            })
        );
    }

    fn dirty_header(log_guid: Uuid) -> crate::header::Header {
        crate::header::Header {
            sequence_number: 3,
            file_write_guid: Uuid::from_u128(7),
            data_write_guid: Uuid::from_u128(8),
            log_guid,
            log_version: 0,
            version: 1,
            log_length: MIB32,
            log_offset: MIB,
        }
    }

    #[test]
    fn entry_equals_the_reader_test_encoder_byte_for_byte() {
        let writes = vec![
            LogWrite::Data {
                file_offset: 3 * MIB,
                data: sector(4),
            },
            LogWrite::Zero {
                file_offset: 6 * MIB,
                length: MIB,
            },
        ];
        let h = header(0x1_0000_0005);

        let ours = build_entry(&h, &writes).unwrap();

        let theirs = crate::log::encode_entry(
            h.log_guid,
            h.sequence_number,
            h.tail,
            4 * MIB,
            5 * MIB,
            &writes,
        );
        assert_eq!(ours, theirs);
    }

    #[test]
    fn reader_replays_an_entry_that_wraps_the_end_of_the_log() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(8 * MIB).unwrap();
        let guid = Uuid::from_u128(0xBEEF);
        let mut log = LogWriter::new(MIB, MIB32, guid, 41);
        log.reposition(255 * 4096);
        let writes: Vec<LogWrite> = (0..3)
            .map(|i| LogWrite::Data {
                file_offset: 3 * MIB + i * 4096,
                data: sector(10 + u8::try_from(i).unwrap()),
            })
            .collect();

        let entry = log
            .append(&file, &writes, 8 * MIB, 8 * MIB)
            .unwrap()
            .unwrap();

        assert_eq!(entry.log_position, 255 * 4096);
        let mut bytes = vec![0u8; 1 << 20];
        file.read_exact_at(&mut bytes, MIB).unwrap();
        let plan = crate::log::plan_replay_from_bytes(&bytes, &dirty_header(guid), 8 * MIB)
            .unwrap()
            .unwrap();
        assert_eq!(plan.writes, writes);
        assert_eq!(plan.head_sequence_number, 41);
        assert_eq!(plan.last_file_offset, 8 * MIB);
    }

    #[test]
    fn reader_replays_a_sequence_from_the_oldest_unapplied_entry() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(8 * MIB).unwrap();
        let guid = Uuid::from_u128(0xCAFE);
        let mut log = LogWriter::new(MIB, MIB32, guid, 1);
        let first = vec![LogWrite::Data {
            file_offset: 3 * MIB,
            data: sector(1),
        }];
        let second = vec![LogWrite::Zero {
            file_offset: 4 * MIB,
            length: 8192,
        }];
        log.append(&file, &first, 8 * MIB, 8 * MIB)
            .unwrap()
            .unwrap();

        let head = log
            .append(&file, &second, 8 * MIB, 8 * MIB)
            .unwrap()
            .unwrap();

        // The second entry's Tail still points at the first (not yet applied).
        let mut bytes = vec![0u8; 1 << 20];
        file.read_exact_at(&mut bytes, MIB).unwrap();
        let tail = u32::from_le_bytes(bytes[8192 + 12..8192 + 16].try_into().unwrap());
        assert_eq!((head.log_position, tail), (8192, 0));
        let plan = crate::log::plan_replay_from_bytes(&bytes, &dirty_header(guid), 8 * MIB)
            .unwrap()
            .unwrap();
        assert_eq!(plan.entries, 2);
        assert_eq!(plan.writes, [first, second].concat());
    }
}
