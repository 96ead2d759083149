//! Log (MS-VHDX §2.3): parsing and validating entries, finding the active
//! sequence, and replaying it — in memory, as an [`Overlay`] that every later
//! read of the file goes through, so a read-only open never modifies the file.
//!
//! ```text
//! entry (n × 4 KiB, 4 KiB aligned in the circular log, may wrap):
//!   sector 0:  header (64 B) + up to 126 descriptors (32 B each)
//!   sector 1…: 128 descriptors each            (ceil((count + 2) / 128) sectors)
//!   then one data sector per data descriptor:  "data" SeqHigh data[4084] SeqLow
//! a 4 KiB update = LeadingBytes(8, descriptor) ‖ data[4084] ‖ TrailingBytes(4, descriptor)
//! ```
//!
//! The active sequence (§2.3.2–2.3.3) is the complete run of valid entries
//! (back to back, sequence numbers +1, tail of the head inside the run) with
//! the highest head sequence number. Replay applies the entries from the
//! head's Tail through the head, in order.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Bound;
use std::os::unix::fs::FileExt;

use uuid::Uuid;
use zerocopy::FromBytes;

use crate::error::{ErrorKind, VhdxError};
use crate::format::{
    DATA_DESCRIPTOR_SIGNATURE, DATA_SECTOR_SIGNATURE, LOG_ENTRY_CHECKSUM_OFFSET,
    LOG_ENTRY_SIGNATURE, LOG_SECTOR_SIZE, LOGGABLE_OFFSET, MIB, RawLogDataSector, RawLogDescriptor,
    RawLogEntryHeader, ZERO_DESCRIPTOR_SIGNATURE, crc32c_with_zeroed_field, guid_from_le,
};
use crate::header::Header;

/// Largest log this implementation loads (bytes); the whole log is read into
/// memory when it must be replayed. Hyper-V and qemu use 1 MiB.
pub const MAX_LOG_LENGTH: u64 = 1024 * MIB;

const SECTOR: usize = 4096;
const _: () = assert!(SECTOR as u64 == LOG_SECTOR_SIZE);
/// Descriptors per further descriptor sector.
const DESCRIPTORS_PER_SECTOR: u64 = 128;

/// Violations of MS-VHDX §2.3. `entry_offset` fields are file offsets of
/// the entry in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// §2.3.1.1: Signature is not `loge`.
    #[error("log entry at {entry_offset:#x}: signature {found:#010x} is not \"loge\"")]
    BadEntrySignature {
        /// File offset of the entry.
        entry_offset: u64,
        /// The u32 found.
        found: u32,
    },
    /// §2.3.1.1: EntryLength must be a non-zero multiple of 4 KiB no larger than the log.
    #[error(
        "log entry at {entry_offset:#x}: EntryLength {length:#x} is not a non-zero multiple of 4 KiB within the log"
    )]
    BadEntryLength {
        /// File offset of the entry.
        entry_offset: u64,
        /// EntryLength.
        length: u32,
    },
    /// §2.3.1.1: Tail must be a multiple of 4 KiB inside the log.
    #[error(
        "log entry at {entry_offset:#x}: Tail {tail:#x} is not a 4 KiB-aligned offset inside the log"
    )]
    BadTail {
        /// File offset of the entry.
        entry_offset: u64,
        /// Tail field.
        tail: u32,
    },
    /// §2.3.1.1: SequenceNumber must be greater than 0.
    #[error("log entry at {entry_offset:#x}: SequenceNumber is 0")]
    ZeroSequenceNumber {
        /// File offset of the entry.
        entry_offset: u64,
    },
    /// §2.3.1.1: LogGuid must equal the header's LogGuid.
    #[error(
        "log entry at {entry_offset:#x}: LogGuid {found} does not match the header's {expected}"
    )]
    LogGuidMismatch {
        /// File offset of the entry.
        entry_offset: u64,
        /// LogGuid of the entry.
        found: Uuid,
        /// LogGuid of the current header.
        expected: Uuid,
    },
    /// §2.3.1.1: descriptor and data sectors must fit in EntryLength.
    #[error(
        "log entry at {entry_offset:#x}: {count} descriptors need more than EntryLength {length:#x}"
    )]
    DescriptorsDoNotFit {
        /// File offset of the entry.
        entry_offset: u64,
        /// DescriptorCount.
        count: u32,
        /// EntryLength.
        length: u32,
    },
    /// §2.3.1.1: CRC-32C over the whole entry does not match.
    #[error(
        "log entry at {entry_offset:#x}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    BadEntryChecksum {
        /// File offset of the entry.
        entry_offset: u64,
        /// Checksum field.
        stored: u32,
        /// CRC-32C computed.
        computed: u32,
    },
    /// §2.3.1.2–2.3.1.3: descriptor signature is neither `zero` nor `desc`.
    #[error(
        "log entry at {entry_offset:#x}: descriptor {index} signature {found:#010x} is neither \"zero\" nor \"desc\""
    )]
    BadDescriptorSignature {
        /// File offset of the entry.
        entry_offset: u64,
        /// Descriptor index.
        index: u32,
        /// The u32 found.
        found: u32,
    },
    /// §2.3.1.2–2.3.1.3: descriptor SequenceNumber must equal the entry's.
    #[error(
        "log entry at {entry_offset:#x}: descriptor {index} SequenceNumber {found} differs from the entry's {expected}"
    )]
    DescriptorSequenceMismatch {
        /// File offset of the entry.
        entry_offset: u64,
        /// Descriptor index.
        index: u32,
        /// Descriptor SequenceNumber.
        found: u64,
        /// Entry SequenceNumber.
        expected: u64,
    },
    /// §2.3.1.2–2.3.1.3: FileOffset (and ZeroLength) must be multiples of 4 KiB.
    #[error(
        "log entry at {entry_offset:#x}: descriptor {index} range [{file_offset:#x}, +{length:#x}) is not 4 KiB aligned"
    )]
    UnalignedDescriptor {
        /// File offset of the entry.
        entry_offset: u64,
        /// Descriptor index.
        index: u32,
        /// Target FileOffset.
        file_offset: u64,
        /// Bytes written (4096 for data, ZeroLength for zero).
        length: u64,
    },
    /// §2.2.1: nothing below 192 KiB may be written through the log, nor the log itself.
    #[error(
        "log entry at {entry_offset:#x}: descriptor {index} targets [{file_offset:#x}, +{length:#x}), below 192 KiB or inside the log"
    )]
    ForbiddenTarget {
        /// File offset of the entry.
        entry_offset: u64,
        /// Descriptor index.
        index: u32,
        /// Target FileOffset.
        file_offset: u64,
        /// Bytes written.
        length: u64,
    },
    /// §2.3.1.4: data sector signature is not `data`.
    #[error(
        "log entry at {entry_offset:#x}: data sector {index} signature {found:#010x} is not \"data\""
    )]
    BadDataSectorSignature {
        /// File offset of the entry.
        entry_offset: u64,
        /// Data sector index (= data descriptor order).
        index: u32,
        /// The u32 found.
        found: u32,
    },
    /// §2.3.1.4: SequenceHigh/SequenceLow must equal the entry's sequence number.
    #[error(
        "log entry at {entry_offset:#x}: data sector {index} sequence {found:#x} differs from the entry's {expected:#x}"
    )]
    DataSectorSequenceMismatch {
        /// File offset of the entry.
        entry_offset: u64,
        /// Data sector index.
        index: u32,
        /// SequenceHigh:SequenceLow.
        found: u64,
        /// Entry SequenceNumber.
        expected: u64,
    },
    /// §2.3.3: LogGuid is set but no complete valid sequence exists.
    #[error(
        "log at {log_offset:#x} (+{log_length:#x}): LogGuid {log_guid} is set but the log holds no complete valid sequence"
    )]
    NoValidSequence {
        /// LogOffset.
        log_offset: u64,
        /// LogLength.
        log_length: u32,
        /// LogGuid of the current header.
        log_guid: Uuid,
    },
    /// §2.3.3: the file is shorter than the head entry's FlushedFileOffset.
    #[error(
        "log head entry at {entry_offset:#x}: FlushedFileOffset {flushed_file_offset:#x} is past end of file {file_size:#x} (file truncated)"
    )]
    FlushedOffsetBeyondEof {
        /// File offset of the head entry.
        entry_offset: u64,
        /// FlushedFileOffset.
        flushed_file_offset: u64,
        /// File size.
        file_size: u64,
    },
    /// Implementation limit: the log is larger than [`MAX_LOG_LENGTH`].
    #[error("log of {log_length:#x} bytes exceeds this implementation's limit of {limit:#x} bytes")]
    LogTooLarge {
        /// LogLength.
        log_length: u32,
        /// The limit.
        limit: u64,
    },
}

impl LogError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            LogError::LogTooLarge { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Corrupt,
        }
    }

    pub(crate) fn offset(&self) -> Option<u64> {
        match self {
            LogError::BadEntrySignature { entry_offset, .. }
            | LogError::BadEntryLength { entry_offset, .. }
            | LogError::BadTail { entry_offset, .. }
            | LogError::ZeroSequenceNumber { entry_offset }
            | LogError::LogGuidMismatch { entry_offset, .. }
            | LogError::DescriptorsDoNotFit { entry_offset, .. }
            | LogError::BadEntryChecksum { entry_offset, .. }
            | LogError::BadDescriptorSignature { entry_offset, .. }
            | LogError::DescriptorSequenceMismatch { entry_offset, .. }
            | LogError::UnalignedDescriptor { entry_offset, .. }
            | LogError::ForbiddenTarget { entry_offset, .. }
            | LogError::BadDataSectorSignature { entry_offset, .. }
            | LogError::DataSectorSequenceMismatch { entry_offset, .. }
            | LogError::FlushedOffsetBeyondEof { entry_offset, .. } => Some(*entry_offset),
            LogError::NoValidSequence { log_offset, .. } => Some(*log_offset),
            LogError::LogTooLarge { .. } => None,
        }
    }
}

/// One write a replay applies to the file (MS-VHDX §2.3.1.2–2.3.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogWrite {
    /// A data descriptor: 4 KiB rebuilt from LeadingBytes, the data sector and TrailingBytes.
    Data {
        /// Target file offset (bytes, 4 KiB aligned).
        file_offset: u64,
        /// The 4 KiB to write.
        data: Box<[u8; SECTOR]>,
    },
    /// A zero descriptor.
    Zero {
        /// Target file offset (bytes, 4 KiB aligned).
        file_offset: u64,
        /// ZeroLength (bytes, multiple of 4 KiB).
        length: u64,
    },
}

impl LogWrite {
    /// `[start, end)` of the write in bytes, `None` on overflow.
    pub fn range(&self) -> Option<(u64, u64)> {
        match self {
            LogWrite::Data { file_offset, .. } => file_offset
                .checked_add(LOG_SECTOR_SIZE)
                .map(|e| (*file_offset, e)),
            LogWrite::Zero {
                file_offset,
                length,
            } => file_offset.checked_add(*length).map(|e| (*file_offset, e)),
        }
    }
}

/// A validated log entry (MS-VHDX §2.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Offset of the entry inside the log (bytes).
    pub log_offset: u64,
    /// EntryLength (bytes).
    pub length: u64,
    /// Tail: log offset of the oldest entry of this sequence (bytes).
    pub tail: u64,
    /// SequenceNumber.
    pub sequence_number: u64,
    /// FlushedFileOffset (bytes).
    pub flushed_file_offset: u64,
    /// LastFileOffset (bytes).
    pub last_file_offset: u64,
    /// The writes of the entry, in descriptor order.
    pub writes: Vec<LogWrite>,
}

/// Everything a replay of the active sequence does (MS-VHDX §2.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// Writes in the order they must be applied.
    pub writes: Vec<LogWrite>,
    /// The file must be at least this long afterwards (head's LastFileOffset, bytes).
    pub last_file_offset: u64,
    /// SequenceNumber of the head entry.
    pub head_sequence_number: u64,
    /// Number of entries replayed (tail through head).
    pub entries: usize,
}

/// The log as read into memory, with the context needed to name offsets.
struct LogBuffer<'a> {
    bytes: &'a [u8],
    /// File offset of the log (bytes).
    file_offset: u64,
    log_guid: Uuid,
}

impl LogBuffer<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// `length` bytes starting at `pos`, wrapping at the end of the log.
    fn wrapped(&self, pos: u64, length: u64) -> Option<Vec<u8>> {
        let n = self.len();
        if n == 0 || pos >= n || length > n {
            return None;
        }
        let start = usize::try_from(pos).ok()?;
        let length = usize::try_from(length).ok()?;
        let first = self.bytes.get(start..)?;
        let mut out = Vec::with_capacity(length);
        out.extend_from_slice(first.get(..length.min(first.len()))?);
        let rest = length - out.len();
        out.extend_from_slice(self.bytes.get(..rest)?);
        Some(out)
    }

    /// Parses and validates the entry at log offset `pos`.
    fn entry_at(&self, pos: u64) -> Result<LogEntry, LogError> {
        let entry_offset = self.file_offset.saturating_add(pos);
        let head = self
            .wrapped(pos, LOG_SECTOR_SIZE)
            .ok_or(LogError::BadEntrySignature {
                entry_offset,
                found: 0,
            })?;
        parse_entry(&head, entry_offset, self.log_guid, self.len(), |len| {
            self.wrapped(pos, len)
        })
    }
}

/// Validates one entry. `first_sector` is its first 4 KiB; `read_entry(len)`
/// returns the whole entry of `len` bytes. `log_length` bounds EntryLength
/// and Tail; `entry_offset` is used in errors.
fn parse_entry(
    first_sector: &[u8],
    entry_offset: u64,
    log_guid: Uuid,
    log_length: u64,
    read_entry: impl FnOnce(u64) -> Option<Vec<u8>>,
) -> Result<LogEntry, LogError> {
    let (h, _) = RawLogEntryHeader::read_from_prefix(first_sector).map_err(|_| {
        LogError::BadEntrySignature {
            entry_offset,
            found: 0,
        }
    })?;
    if h.signature.get() != LOG_ENTRY_SIGNATURE {
        return Err(LogError::BadEntrySignature {
            entry_offset,
            found: h.signature.get(),
        });
    }
    let found_guid = guid_from_le(h.log_guid);
    if found_guid != log_guid {
        return Err(LogError::LogGuidMismatch {
            entry_offset,
            found: found_guid,
            expected: log_guid,
        });
    }
    let length = h.entry_length.get();
    if length == 0 || u64::from(length) % LOG_SECTOR_SIZE != 0 || u64::from(length) > log_length {
        return Err(LogError::BadEntryLength {
            entry_offset,
            length,
        });
    }
    let tail = h.tail.get();
    if u64::from(tail) % LOG_SECTOR_SIZE != 0 || u64::from(tail) >= log_length {
        return Err(LogError::BadTail { entry_offset, tail });
    }
    let seq = h.sequence_number.get();
    if seq == 0 {
        return Err(LogError::ZeroSequenceNumber { entry_offset });
    }
    let count = h.descriptor_count.get();
    let descriptor_sectors = (u64::from(count) + 2).div_ceil(DESCRIPTORS_PER_SECTOR);
    let sectors = u64::from(length) / LOG_SECTOR_SIZE;
    let too_many = LogError::DescriptorsDoNotFit {
        entry_offset,
        count,
        length,
    };
    if descriptor_sectors > sectors {
        return Err(too_many);
    }
    let bytes = read_entry(u64::from(length)).ok_or(LogError::BadEntryLength {
        entry_offset,
        length,
    })?;
    let computed = crc32c_with_zeroed_field(&bytes, LOG_ENTRY_CHECKSUM_OFFSET);
    if computed != h.checksum.get() {
        return Err(LogError::BadEntryChecksum {
            entry_offset,
            stored: h.checksum.get(),
            computed,
        });
    }
    let mut writes = Vec::new();
    let mut data_sector = descriptor_sectors;
    let mut data_index: u32 = 0;
    for index in 0..count {
        let slot = u64::from(index) + 2; // header occupies the first two 32-byte slots
        let at = usize::try_from(slot * 32).map_err(|_| too_many.clone())?;
        let raw = bytes
            .get(at..at + 32)
            .and_then(|b| RawLogDescriptor::read_from_bytes(b).ok())
            .ok_or_else(|| too_many.clone())?;
        let signature = raw.signature.get();
        if signature != ZERO_DESCRIPTOR_SIGNATURE && signature != DATA_DESCRIPTOR_SIGNATURE {
            return Err(LogError::BadDescriptorSignature {
                entry_offset,
                index,
                found: signature,
            });
        }
        if raw.sequence_number.get() != seq {
            return Err(LogError::DescriptorSequenceMismatch {
                entry_offset,
                index,
                found: raw.sequence_number.get(),
                expected: seq,
            });
        }
        let file_offset = raw.file_offset.get();
        let write = if signature == ZERO_DESCRIPTOR_SIGNATURE {
            let zero_length = u64::from_le_bytes(raw.leading_bytes);
            if file_offset % LOG_SECTOR_SIZE != 0 || zero_length % LOG_SECTOR_SIZE != 0 {
                return Err(LogError::UnalignedDescriptor {
                    entry_offset,
                    index,
                    file_offset,
                    length: zero_length,
                });
            }
            LogWrite::Zero {
                file_offset,
                length: zero_length,
            }
        } else {
            if file_offset % LOG_SECTOR_SIZE != 0 {
                return Err(LogError::UnalignedDescriptor {
                    entry_offset,
                    index,
                    file_offset,
                    length: LOG_SECTOR_SIZE,
                });
            }
            if data_sector >= sectors {
                return Err(too_many);
            }
            let at =
                usize::try_from(data_sector * LOG_SECTOR_SIZE).map_err(|_| too_many.clone())?;
            let sector = bytes
                .get(at..at + SECTOR)
                .and_then(|b| RawLogDataSector::read_from_bytes(b).ok())
                .ok_or_else(|| too_many.clone())?;
            if sector.signature.get() != DATA_SECTOR_SIGNATURE {
                return Err(LogError::BadDataSectorSignature {
                    entry_offset,
                    index: data_index,
                    found: sector.signature.get(),
                });
            }
            let found = (u64::from(sector.sequence_high.get()) << 32)
                | u64::from(sector.sequence_low.get());
            if found != seq {
                return Err(LogError::DataSectorSequenceMismatch {
                    entry_offset,
                    index: data_index,
                    found,
                    expected: seq,
                });
            }
            let mut data = Box::new([0u8; SECTOR]);
            data[..8].copy_from_slice(&raw.leading_bytes);
            data[8..SECTOR - 4].copy_from_slice(&sector.data);
            data[SECTOR - 4..].copy_from_slice(&raw.trailing_bytes);
            data_sector += 1;
            data_index += 1;
            LogWrite::Data { file_offset, data }
        };
        writes.push(write);
    }
    Ok(LogEntry {
        log_offset: 0,
        length: u64::from(length),
        tail: u64::from(tail),
        sequence_number: seq,
        flushed_file_offset: h.flushed_file_offset.get(),
        last_file_offset: h.last_file_offset.get(),
        writes,
    })
}

/// Checks that no write targets the first 192 KiB or the log itself.
fn check_targets(entry: &LogEntry, entry_offset: u64, log: (u64, u64)) -> Result<(), LogError> {
    for (index, w) in entry.writes.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let (file_offset, length) = match w {
            LogWrite::Data { file_offset, .. } => (*file_offset, LOG_SECTOR_SIZE),
            LogWrite::Zero {
                file_offset,
                length,
            } => (*file_offset, *length),
        };
        let forbidden = LogError::ForbiddenTarget {
            entry_offset,
            index,
            file_offset,
            length,
        };
        let Some((start, end)) = w.range() else {
            return Err(forbidden);
        };
        if start < LOGGABLE_OFFSET || (start < log.1 && log.0 < end) {
            return Err(forbidden);
        }
    }
    Ok(())
}

/// Finds the active sequence (MS-VHDX §2.3.2–2.3.3): the entries from the
/// head's Tail through the head, or `None` when no complete sequence exists.
fn active_sequence(log: &LogBuffer<'_>) -> Result<Option<Vec<LogEntry>>, LogError> {
    let n = log.len();
    let log_range = (log.file_offset, log.file_offset.saturating_add(n));
    let mut best: Option<Vec<LogEntry>> = None;
    let mut start: u64 = 0;
    while start < n {
        let mut run: Vec<LogEntry> = Vec::new();
        let mut pos = start;
        let mut covered: u64 = 0;
        while let Ok(mut entry) = log.entry_at(pos) {
            if run.last().is_some_and(|last| {
                last.sequence_number.checked_add(1) != Some(entry.sequence_number)
            }) {
                break;
            }
            if covered + entry.length > n {
                break;
            }
            check_targets(&entry, log.file_offset.saturating_add(pos), log_range)?;
            entry.log_offset = pos;
            covered += entry.length;
            pos = (pos + entry.length) % n;
            run.push(entry);
            if covered == n {
                break;
            }
        }
        let Some(head) = run.last() else {
            start += LOG_SECTOR_SIZE;
            continue;
        };
        if let Some(tail_index) = run.iter().position(|e| e.log_offset == head.tail) {
            let head_seq = head.sequence_number;
            if best
                .as_ref()
                .and_then(|b| b.last())
                .is_none_or(|b| head_seq > b.sequence_number)
            {
                run.drain(..tail_index);
                best = Some(run);
            }
        }
        start += covered;
    }
    Ok(best)
}

/// Computes the writes a replay of the current header's log would apply,
/// without applying them (MS-VHDX §2.3.3). Returns `None` when the log is
/// clean (LogGuid zero or LogLength zero). `file_size` is the physical file
/// size in bytes. Used for the in-memory overlay of read-only opens and by
/// the writer to replay in place.
///
/// # Errors
/// I/O errors reading the log; [`LogError::NoValidSequence`],
/// [`LogError::FlushedOffsetBeyondEof`], [`LogError::LogTooLarge`],
/// [`LogError::ForbiddenTarget`].
pub(crate) fn plan_replay(
    file: &File,
    header: &Header,
    file_size: u64,
) -> Result<Option<ReplayPlan>, VhdxError> {
    if !header.log_is_dirty() {
        return Ok(None);
    }
    let log_length = u64::from(header.log_length);
    if log_length > MAX_LOG_LENGTH {
        return Err(LogError::LogTooLarge {
            log_length: header.log_length,
            limit: MAX_LOG_LENGTH,
        }
        .into());
    }
    let mut bytes = vec![0u8; usize::try_from(log_length).unwrap_or(0)];
    file.read_exact_at(&mut bytes, header.log_offset)
        .map_err(|e| VhdxError::io_at(e, header.log_offset))?;
    plan_replay_from_bytes(&bytes, header, file_size).map_err(VhdxError::from)
}

/// [`plan_replay`] over a log already in memory.
///
/// # Errors
/// As [`plan_replay`], without I/O.
pub(crate) fn plan_replay_from_bytes(
    log_bytes: &[u8],
    header: &Header,
    file_size: u64,
) -> Result<Option<ReplayPlan>, LogError> {
    if !header.log_is_dirty() {
        return Ok(None);
    }
    let log = LogBuffer {
        bytes: log_bytes,
        file_offset: header.log_offset,
        log_guid: header.log_guid,
    };
    let entries = active_sequence(&log)?.ok_or(LogError::NoValidSequence {
        log_offset: header.log_offset,
        log_length: header.log_length,
        log_guid: header.log_guid,
    })?;
    let Some(head) = entries.last() else {
        return Ok(None);
    };
    if head.flushed_file_offset > file_size {
        return Err(LogError::FlushedOffsetBeyondEof {
            entry_offset: header.log_offset.saturating_add(head.log_offset),
            flushed_file_offset: head.flushed_file_offset,
            file_size,
        });
    }
    let last_file_offset = head.last_file_offset;
    let head_sequence_number = head.sequence_number;
    let count = entries.len();
    Ok(Some(ReplayPlan {
        writes: entries.into_iter().flat_map(|e| e.writes).collect(),
        last_file_offset,
        head_sequence_number,
        entries: count,
    }))
}

/// Serialises one log entry with a correct checksum (MS-VHDX §2.3.1).
/// `tail` is a log offset in bytes. Used by writers and tests.
pub fn encode_entry(
    log_guid: Uuid,
    sequence_number: u64,
    tail: u32,
    flushed_file_offset: u64,
    last_file_offset: u64,
    writes: &[LogWrite],
) -> Vec<u8> {
    let count = writes.len() as u64;
    let descriptor_sectors = (count + 2).div_ceil(DESCRIPTORS_PER_SECTOR);
    let data_count = writes
        .iter()
        .filter(|w| matches!(w, LogWrite::Data { .. }))
        .count() as u64;
    let total = usize::try_from((descriptor_sectors + data_count) * LOG_SECTOR_SIZE).unwrap_or(0);
    let mut out = vec![0u8; total];
    let put = |out: &mut [u8], at: usize, bytes: &[u8]| {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(&mut out, 0, &LOG_ENTRY_SIGNATURE.to_le_bytes());
    put(
        &mut out,
        8,
        &u32::try_from(total).unwrap_or(0).to_le_bytes(),
    );
    put(&mut out, 12, &tail.to_le_bytes());
    put(&mut out, 16, &sequence_number.to_le_bytes());
    put(
        &mut out,
        24,
        &u32::try_from(count).unwrap_or(0).to_le_bytes(),
    );
    put(&mut out, 32, &log_guid.to_bytes_le());
    put(&mut out, 48, &flushed_file_offset.to_le_bytes());
    put(&mut out, 56, &last_file_offset.to_le_bytes());
    let mut data_at = usize::try_from(descriptor_sectors * LOG_SECTOR_SIZE).unwrap_or(0);
    for (i, w) in writes.iter().enumerate() {
        let d = (i + 2) * 32;
        match w {
            LogWrite::Zero {
                file_offset,
                length,
            } => {
                put(&mut out, d, &ZERO_DESCRIPTOR_SIGNATURE.to_le_bytes());
                put(&mut out, d + 8, &length.to_le_bytes());
                put(&mut out, d + 16, &file_offset.to_le_bytes());
            }
            LogWrite::Data { file_offset, data } => {
                put(&mut out, d, &DATA_DESCRIPTOR_SIGNATURE.to_le_bytes());
                put(&mut out, d + 4, &data[SECTOR - 4..]);
                put(&mut out, d + 8, &data[..8]);
                put(&mut out, d + 16, &file_offset.to_le_bytes());
                put(&mut out, data_at, &DATA_SECTOR_SIGNATURE.to_le_bytes());
                put(
                    &mut out,
                    data_at + 4,
                    &sequence_high(sequence_number).to_le_bytes(),
                );
                put(&mut out, data_at + 8, &data[8..SECTOR - 4]);
                put(
                    &mut out,
                    data_at + SECTOR - 4,
                    &sequence_low(sequence_number).to_le_bytes(),
                );
                data_at += SECTOR;
            }
        }
        put(&mut out, d + 24, &sequence_number.to_le_bytes());
    }
    let crc = crc32c_with_zeroed_field(&out, LOG_ENTRY_CHECKSUM_OFFSET);
    put(&mut out, 4, &crc.to_le_bytes());
    out
}

/// High 32 bits of a sequence number (data sector SequenceHigh).
fn sequence_high(seq: u64) -> u32 {
    u32::try_from(seq >> 32).unwrap_or(u32::MAX)
}

/// Low 32 bits of a sequence number (data sector SequenceLow).
fn sequence_low(seq: u64) -> u32 {
    u32::try_from(seq & 0xFFFF_FFFF).unwrap_or(u32::MAX)
}

/// One replayed span of the file: zeros, or bytes.
#[derive(Debug, Clone)]
struct Segment {
    end: u64,
    /// `None` = zeros; otherwise exactly `end - start` bytes.
    data: Option<Box<[u8]>>,
}

/// The in-memory result of a log replay: non-overlapping spans of the file
/// replaced by replayed data or zeros, and the logical file size after replay.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overlay {
    segments: BTreeMap<u64, Segment>,
    logical_size: u64,
}

impl Overlay {
    /// Applies `plan` over a file of `physical_size` bytes.
    pub fn from_plan(plan: &ReplayPlan, physical_size: u64) -> Overlay {
        let mut overlay = Overlay {
            segments: BTreeMap::new(),
            logical_size: physical_size.max(plan.last_file_offset),
        };
        for w in &plan.writes {
            let Some((start, end)) = w.range() else {
                continue;
            };
            if start == end {
                continue;
            }
            let data = match w {
                LogWrite::Data { data, .. } => Some(data.to_vec().into_boxed_slice()),
                LogWrite::Zero { .. } => None,
            };
            overlay.insert(start, end, data);
            overlay.logical_size = overlay.logical_size.max(end);
        }
        overlay
    }

    /// File size after replay (bytes).
    pub fn logical_size(&self) -> u64 {
        self.logical_size
    }

    fn insert(&mut self, start: u64, end: u64, data: Option<Box<[u8]>>) {
        let mut hit: Vec<u64> = Vec::new();
        if let Some((&k, s)) = self.segments.range(..start).next_back()
            && s.end > start
        {
            hit.push(k);
        }
        hit.extend(self.segments.range(start..end).map(|(&k, _)| k));
        for k in hit {
            let Some(s) = self.segments.remove(&k) else {
                continue;
            };
            let slice = |from: u64, to: u64| {
                s.data.as_ref().and_then(|d| {
                    let a = usize::try_from(from - k).ok()?;
                    let b = usize::try_from(to - k).ok()?;
                    d.get(a..b).map(Box::from)
                })
            };
            if k < start {
                let left = slice(k, start);
                self.segments.insert(
                    k,
                    Segment {
                        end: start,
                        data: left,
                    },
                );
            }
            if s.end > end {
                let right = slice(end, s.end);
                self.segments.insert(
                    end,
                    Segment {
                        end: s.end,
                        data: right,
                    },
                );
            }
        }
        self.segments.insert(start, Segment { end, data });
    }

    /// Overwrites the parts of `buf` (the file bytes at `offset`) that the
    /// replay changed.
    pub fn apply(&self, offset: u64, buf: &mut [u8]) {
        let end = offset.saturating_add(buf.len() as u64);
        let before = self
            .segments
            .range(..offset)
            .next_back()
            .filter(|(_, s)| s.end > offset);
        let within = self
            .segments
            .range((Bound::Included(offset), Bound::Excluded(end)));
        for (&k, s) in before.into_iter().chain(within) {
            let from = k.max(offset);
            let to = s.end.min(end);
            if from >= to {
                continue;
            }
            let (Ok(b0), Ok(b1)) = (usize::try_from(from - offset), usize::try_from(to - offset))
            else {
                continue;
            };
            let Some(dst) = buf.get_mut(b0..b1) else {
                continue;
            };
            match &s.data {
                None => dst.fill(0),
                Some(d) => {
                    let (Ok(s0), Ok(s1)) = (usize::try_from(from - k), usize::try_from(to - k))
                    else {
                        continue;
                    };
                    if let Some(src) = d.get(s0..s1) {
                        dst.copy_from_slice(src);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: Uuid = Uuid::from_u128(0xABCD);
    const LOG_OFFSET: u64 = MIB;
    const LOG_LEN: u64 = MIB;
    const LOG_LEN_USIZE: usize = 1 << 20;

    fn data_write(file_offset: u64, fill: u8) -> LogWrite {
        LogWrite::Data {
            file_offset,
            data: Box::new([fill; SECTOR]),
        }
    }

    fn header() -> Header {
        Header {
            sequence_number: 1,
            file_write_guid: Uuid::from_u128(1),
            data_write_guid: Uuid::from_u128(2),
            log_guid: GUID,
            log_version: 0,
            version: 1,
            log_length: 1 << 20,
            log_offset: LOG_OFFSET,
        }
    }

    fn log_with(entries: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut log = vec![0u8; LOG_LEN_USIZE];
        for (at, bytes) in entries {
            let at = usize::try_from(*at).unwrap();
            for (i, b) in bytes.iter().enumerate() {
                log[(at + i) % LOG_LEN_USIZE] = *b;
            }
        }
        log
    }

    fn parse(bytes: &[u8]) -> Result<LogEntry, LogError> {
        parse_entry(bytes, LOG_OFFSET, GUID, LOG_LEN, |len| {
            bytes
                .get(..usize::try_from(len).unwrap())
                .map(<[u8]>::to_vec)
        })
    }

    /// Re-computes the checksum after a test mutated the entry.
    fn fix_crc(bytes: &mut [u8]) {
        let crc = crc32c_with_zeroed_field(bytes, 4);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    fn one_entry() -> Vec<u8> {
        encode_entry(
            GUID,
            10,
            0,
            4 * MIB,
            4 * MIB,
            &[
                data_write(3 * MIB, 0xA5),
                LogWrite::Zero {
                    file_offset: 3 * MIB + 8192,
                    length: 8192,
                },
            ],
        )
    }

    #[test]
    fn entry_round_trips_with_split_data_sector() {
        let mut data = [0x11u8; SECTOR];
        data[0] = 0xEE;
        data[SECTOR - 1] = 0xDD;
        let w = LogWrite::Data {
            file_offset: 0x40_0000,
            data: Box::new(data),
        };
        let bytes = encode_entry(GUID, 5, 0, MIB, MIB, std::slice::from_ref(&w));
        let entry = parse(&bytes).unwrap();
        assert_eq!(entry.writes, vec![w]);
        assert_eq!(entry.length, 2 * LOG_SECTOR_SIZE);
    }

    #[test]
    fn bad_entry_signature_is_rejected() {
        let mut b = one_entry();
        b[0] = b'X';
        assert!(matches!(parse(&b), Err(LogError::BadEntrySignature { .. })));
    }

    #[test]
    fn foreign_log_guid_is_rejected() {
        let b = encode_entry(Uuid::from_u128(7), 10, 0, MIB, MIB, &[]);
        assert!(matches!(parse(&b), Err(LogError::LogGuidMismatch { .. })));
    }

    #[test]
    fn entry_length_not_multiple_of_4k_is_rejected() {
        let mut b = one_entry();
        b[8..12].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(
            parse(&b),
            Err(LogError::BadEntryLength { length: 5000, .. })
        ));
    }

    #[test]
    fn entry_longer_than_log_is_rejected() {
        let mut b = one_entry();
        b[8..12].copy_from_slice(&(2u32 << 20).to_le_bytes());
        assert!(matches!(parse(&b), Err(LogError::BadEntryLength { .. })));
    }

    #[test]
    fn unaligned_tail_is_rejected() {
        let mut b = one_entry();
        b[12..16].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            parse(&b),
            Err(LogError::BadTail { tail: 100, .. })
        ));
    }

    #[test]
    fn zero_sequence_number_is_rejected() {
        let b = encode_entry(GUID, 0, 0, MIB, MIB, &[]);
        assert!(matches!(
            parse(&b),
            Err(LogError::ZeroSequenceNumber { .. })
        ));
    }

    #[test]
    fn descriptor_count_beyond_entry_is_rejected() {
        let mut b = one_entry();
        b[24..28].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            parse(&b),
            Err(LogError::DescriptorsDoNotFit { count: 1000, .. })
        ));
    }

    #[test]
    fn data_descriptors_without_data_sectors_do_not_fit() {
        let mut b = one_entry();
        // Turn the zero descriptor into a data descriptor: no data sector left for it.
        b[96..100].copy_from_slice(&DATA_DESCRIPTOR_SIGNATURE.to_le_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            parse(&b),
            Err(LogError::DescriptorsDoNotFit { .. })
        ));
    }

    #[test]
    fn checksum_mismatch_is_rejected() {
        let mut b = one_entry();
        b[5000] ^= 1;
        assert!(matches!(parse(&b), Err(LogError::BadEntryChecksum { .. })));
    }

    #[test]
    fn unknown_descriptor_signature_is_rejected() {
        let mut b = one_entry();
        b[64..68].copy_from_slice(b"junk");
        fix_crc(&mut b);
        assert!(matches!(
            parse(&b),
            Err(LogError::BadDescriptorSignature { index: 0, .. })
        ));
    }

    #[test]
    fn descriptor_sequence_mismatch_is_rejected() {
        let mut b = one_entry();
        b[96 + 24..96 + 32].copy_from_slice(&11u64.to_le_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            parse(&b),
            Err(LogError::DescriptorSequenceMismatch {
                index: 1,
                found: 11,
                expected: 10,
                ..
            })
        ));
    }

    #[test]
    fn unaligned_data_descriptor_offset_is_rejected() {
        let mut b = one_entry();
        b[64 + 16..64 + 24].copy_from_slice(&(3 * MIB + 512).to_le_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            parse(&b),
            Err(LogError::UnalignedDescriptor { index: 0, .. })
        ));
    }

    #[test]
    fn unaligned_zero_length_is_rejected() {
        let mut b = one_entry();
        b[96 + 8..96 + 16].copy_from_slice(&100u64.to_le_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            parse(&b),
            Err(LogError::UnalignedDescriptor {
                index: 1,
                length: 100,
                ..
            })
        ));
    }

    #[test]
    fn bad_data_sector_signature_is_rejected() {
        let mut b = one_entry();
        b[4096..4100].copy_from_slice(b"nope");
        fix_crc(&mut b);
        assert!(matches!(
            parse(&b),
            Err(LogError::BadDataSectorSignature { index: 0, .. })
        ));
    }

    #[test]
    fn data_sector_sequence_mismatch_is_rejected() {
        let mut b = one_entry();
        b[8188..8192].copy_from_slice(&9u32.to_le_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            parse(&b),
            Err(LogError::DataSectorSequenceMismatch {
                index: 0,
                found: 9,
                expected: 10,
                ..
            })
        ));
    }

    #[test]
    fn write_below_192_kib_is_forbidden() {
        let e = encode_entry(GUID, 1, 0, MIB, MIB, &[data_write(0x10000, 1)]);
        let err = plan_replay_from_bytes(&log_with(&[(0, e)]), &header(), 8 * MIB).unwrap_err();
        assert!(matches!(
            err,
            LogError::ForbiddenTarget {
                file_offset: 0x10000,
                ..
            }
        ));
    }

    #[test]
    fn write_into_the_log_is_forbidden() {
        let e = encode_entry(GUID, 1, 0, MIB, MIB, &[data_write(LOG_OFFSET + 4096, 1)]);
        let err = plan_replay_from_bytes(&log_with(&[(0, e)]), &header(), 8 * MIB).unwrap_err();
        assert!(matches!(err, LogError::ForbiddenTarget { .. }));
    }

    #[test]
    fn log_above_the_implementation_limit_is_unsupported() {
        let file = tempfile::tempfile().unwrap();
        let mut h = header();
        h.log_length = 2048 << 20;
        let err = plan_replay(&file, &h, 8 * MIB).unwrap_err();
        assert!(matches!(
            err.detail(),
            crate::error::ErrorDetail::Log(LogError::LogTooLarge { .. })
        ));
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn clean_log_plans_nothing() {
        let mut h = header();
        h.log_guid = Uuid::nil();
        assert_eq!(
            plan_replay_from_bytes(&log_with(&[]), &h, 8 * MIB),
            Ok(None)
        );
    }

    #[test]
    fn dirty_log_without_entries_is_corrupt() {
        let err = plan_replay_from_bytes(&log_with(&[]), &header(), 8 * MIB).unwrap_err();
        assert!(matches!(err, LogError::NoValidSequence { .. }));
    }

    #[test]
    fn tail_outside_run_is_incomplete() {
        // A single entry whose tail points at an empty sector: not a complete sequence.
        let e = encode_entry(GUID, 1, 0x8000, MIB, MIB, &[data_write(3 * MIB, 1)]);
        let err = plan_replay_from_bytes(&log_with(&[(0, e)]), &header(), 8 * MIB).unwrap_err();
        assert!(matches!(err, LogError::NoValidSequence { .. }));
    }

    #[test]
    fn replay_runs_from_heads_tail_through_head() {
        // Entries 5 (@0), 6 (@8K, tail 8K), 7 (@16K, tail 8K): replay 6 and 7 only.
        let e5 = encode_entry(GUID, 5, 0, MIB, MIB, &[data_write(3 * MIB, 5)]);
        let e6 = encode_entry(GUID, 6, 8192, MIB, MIB, &[data_write(3 * MIB + 4096, 6)]);
        let e7 = encode_entry(
            GUID,
            7,
            8192,
            MIB,
            5 * MIB,
            &[data_write(3 * MIB + 8192, 7)],
        );
        let log = log_with(&[(0, e5), (8192, e6), (16384, e7)]);
        let plan = plan_replay_from_bytes(&log, &header(), 8 * MIB)
            .unwrap()
            .unwrap();
        assert_eq!(plan.entries, 2);
        assert_eq!(plan.head_sequence_number, 7);
        assert_eq!(plan.last_file_offset, 5 * MIB);
        assert_eq!(
            plan.writes,
            vec![data_write(3 * MIB + 4096, 6), data_write(3 * MIB + 8192, 7)]
        );
    }

    #[test]
    fn sequence_wrapping_around_the_log_end_is_found() {
        // Entry 20 at the last 8 KiB of the log (tail = itself), entry 21 at 0 wraps.
        let at = LOG_LEN - 8192;
        let e20 = encode_entry(
            GUID,
            20,
            u32::try_from(at).unwrap(),
            MIB,
            MIB,
            &[data_write(3 * MIB, 20)],
        );
        let e21 = encode_entry(
            GUID,
            21,
            u32::try_from(at).unwrap(),
            MIB,
            MIB,
            &[data_write(3 * MIB, 21)],
        );
        let log = log_with(&[(at, e20), (0, e21)]);
        let plan = plan_replay_from_bytes(&log, &header(), 8 * MIB)
            .unwrap()
            .unwrap();
        assert_eq!(plan.entries, 2);
        assert_eq!(plan.writes.last(), Some(&data_write(3 * MIB, 21)));
    }

    #[test]
    fn entry_itself_wrapping_the_log_end_is_parsed() {
        // One 8 KiB entry starting 4 KiB before the end: its data sector is at log offset 0.
        let at = LOG_LEN - 4096;
        let e = encode_entry(
            GUID,
            3,
            u32::try_from(at).unwrap(),
            MIB,
            MIB,
            &[data_write(3 * MIB, 3)],
        );
        let plan = plan_replay_from_bytes(&log_with(&[(at, e)]), &header(), 8 * MIB)
            .unwrap()
            .unwrap();
        assert_eq!(plan.writes, vec![data_write(3 * MIB, 3)]);
    }

    #[test]
    fn highest_complete_sequence_wins() {
        let a = encode_entry(GUID, 100, 0, MIB, MIB, &[data_write(3 * MIB, 1)]);
        let b = encode_entry(GUID, 50, 0x40000, MIB, MIB, &[data_write(3 * MIB, 2)]);
        let log = log_with(&[(0, a), (0x40000, b)]);
        let plan = plan_replay_from_bytes(&log, &header(), 8 * MIB)
            .unwrap()
            .unwrap();
        assert_eq!(plan.head_sequence_number, 100);
    }

    #[test]
    fn flushed_offset_past_end_of_file_is_truncation() {
        let e = encode_entry(GUID, 1, 0, 16 * MIB, 16 * MIB, &[data_write(3 * MIB, 1)]);
        let err = plan_replay_from_bytes(&log_with(&[(0, e)]), &header(), 8 * MIB).unwrap_err();
        assert!(
            matches!(err, LogError::FlushedOffsetBeyondEof { flushed_file_offset, .. } if flushed_file_offset == 16 * MIB)
        );
    }

    #[test]
    fn overlay_applies_writes_in_order() {
        let plan = ReplayPlan {
            writes: vec![
                data_write(0x30_0000, 1),
                LogWrite::Zero {
                    file_offset: 0x2F_F000,
                    length: 0x3000,
                },
                data_write(0x30_1000, 2),
            ],
            last_file_offset: 0,
            head_sequence_number: 1,
            entries: 1,
        };
        let overlay = Overlay::from_plan(&plan, 0x40_0000);
        let mut buf = vec![0xFFu8; 0x4000];
        overlay.apply(0x2F_F000, &mut buf);
        assert!(buf[..0x2000].iter().all(|&b| b == 0));
        assert!(buf[0x2000..0x3000].iter().all(|&b| b == 2));
        assert!(buf[0x3000..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn overlay_zero_range_cut_by_later_data_keeps_both_sides() {
        let plan = ReplayPlan {
            writes: vec![
                LogWrite::Zero {
                    file_offset: 0x30_0000,
                    length: 0x3000,
                },
                data_write(0x30_1000, 9),
            ],
            last_file_offset: 0x80_0000,
            head_sequence_number: 1,
            entries: 1,
        };
        let overlay = Overlay::from_plan(&plan, 0x40_0000);
        let mut buf = vec![0xFFu8; 0x3000];
        overlay.apply(0x30_0800, &mut buf[..0x2000]);
        assert!(buf[..0x800].iter().all(|&b| b == 0));
        assert!(buf[0x800..0x1800].iter().all(|&b| b == 9));
        assert!(buf[0x1800..0x2000].iter().all(|&b| b == 0));
        assert_eq!(overlay.logical_size(), 0x80_0000);
    }
}
