//! The change-tracking journal of a virtual disk:
//! `<host>/vms/<VM GUID>/<disk GUID>.rctj` (DESIGN.md "Change tracking").
//!
//! Before a merge removes or rewrites the differencing layer that recorded
//! a tracking epoch, the epoch's changed sectors are appended here and the
//! file is fsynced; only then does the catalog commit the merge. The
//! catalog lists every *committed* record (epoch, DataWriteGuid, offset,
//! length — [`JournaledEpoch`]); bytes past the last committed record are
//! an interrupted append and are cut off by the next one. So a record is
//! never trusted unless the catalog committed it, and each committed record
//! is checked on its own: damage to one does not hide the others.
//!
//! # Record format (version 1)
//!
//! Append-only sequence of records; integers little-endian, GUIDs in
//! RFC 4122 byte order:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `RPRCTJNL` |
//! | 8 | 2 | version = 1 |
//! | 10 | 2 | flags: bit 0 SUPERSET — the layer also held sectors merged into it from earlier epochs, so the set may be larger than the epoch's own writes (never smaller) |
//! | 12 | 4 | header length = 96 |
//! | 16 | 8 | sequence number: the record's index in the journal, from 0 |
//! | 24 | 16 | disk GUID |
//! | 40 | 8 | epoch |
//! | 48 | 16 | DataWriteGuid of the layer the set was read from |
//! | 64 | 4 | block size of that layer, bytes |
//! | 68 | 4 | logical sector size, bytes |
//! | 72 | 8 | virtual size, bytes |
//! | 80 | 8 | range count `N` |
//! | 88 | 8 | reserved, 0 |
//! | 96 | 16·N | ranges: byte offset (u64), byte length (u64); ascending, non-overlapping, non-adjacent, sector aligned, inside the virtual size |
//! | 96 + 16·N | 32 | SHA-256 of bytes `0 .. 96 + 16·N` |

use std::fs::OpenOptions;
use std::io::ErrorKind as IoErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::atomic::sync_dir;
use crate::error::{HostError, Result};
use crate::ids::cim_guid;
use crate::tracking::{ByteRange, JournaledEpoch};

/// File extension of a journal.
pub const JOURNAL_EXTENSION: &str = "rctj";
/// Magic of every record.
pub const RECORD_MAGIC: [u8; 8] = *b"RPRCTJNL";
/// Record format version written and read.
pub const RECORD_VERSION: u16 = 1;
/// Flag: the range set may include sectors merged in from earlier epochs.
pub const FLAG_SUPERSET: u16 = 1;
/// Bytes before the ranges.
const HEADER_LENGTH: usize = 96;
/// Bytes of one range.
const RANGE_LENGTH: usize = 16;
/// Bytes of the trailing SHA-256.
const DIGEST_LENGTH: usize = 32;

/// Why a committed journal record cannot be used: one variant per rule.
/// `offset` is the record's byte offset in the journal file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The journal file does not exist.
    #[error("journal {} is missing", .path.display())]
    Missing {
        /// The journal file.
        path: PathBuf,
    },
    /// The file ends before the record does (truncated).
    #[error("journal {} is truncated: record {sequence} at offset {offset} needs {length} bytes, the file has {file_length}", .path.display())]
    Truncated {
        /// The journal file.
        path: PathBuf,
        /// Expected sequence number.
        sequence: u64,
        /// Record offset.
        offset: u64,
        /// Record length.
        length: u64,
        /// File length.
        file_length: u64,
    },
    /// The record does not start with [`RECORD_MAGIC`].
    #[error("journal {}: no record magic at offset {offset}", .path.display())]
    BadMagic {
        /// The journal file.
        path: PathBuf,
        /// Record offset.
        offset: u64,
    },
    /// A version this build does not read.
    #[error("journal {}: record at offset {offset} has version {version}, this build reads {RECORD_VERSION}", .path.display())]
    UnsupportedVersion {
        /// The journal file.
        path: PathBuf,
        /// Record offset.
        offset: u64,
        /// Version found.
        version: u16,
    },
    /// The SHA-256 does not match the record's bytes.
    #[error("journal {}: record at offset {offset} is corrupt (SHA-256 mismatch)", .path.display())]
    ChecksumMismatch {
        /// The journal file.
        path: PathBuf,
        /// Record offset.
        offset: u64,
    },
    /// The record's sequence number is not its index: records are missing
    /// before it (or it was moved).
    #[error("journal {}: gap — record at offset {offset} has sequence number {found}, expected {expected}", .path.display())]
    SequenceGap {
        /// The journal file.
        path: PathBuf,
        /// Record offset.
        offset: u64,
        /// Expected sequence number.
        expected: u64,
        /// Sequence number found.
        found: u64,
    },
    /// A header field disagrees with the catalog or with its own length.
    #[error("journal {}: record at offset {offset}: {field} is {found}, expected {expected}", .path.display())]
    FieldMismatch {
        /// The journal file.
        path: PathBuf,
        /// Record offset.
        offset: u64,
        /// The field.
        field: &'static str,
        /// Value found.
        found: String,
        /// Value expected.
        expected: String,
    },
    /// A range breaks the ordering, alignment or size rules.
    #[error("journal {}: record at offset {offset}, range {index} [{range_offset:#x}, +{range_length:#x}) is unordered, unaligned or outside the disk", .path.display())]
    BadRange {
        /// The journal file.
        path: PathBuf,
        /// Record offset.
        offset: u64,
        /// Index of the range.
        index: u64,
        /// Its offset.
        range_offset: u64,
        /// Its length.
        range_length: u64,
    },
    /// The file cannot be read.
    #[error("journal {}: {message}", .path.display())]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
}

/// One epoch's changed set, as written into or read from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// Record index in the journal.
    pub sequence: u64,
    /// The disk.
    pub disk: Uuid,
    /// The epoch.
    pub epoch: u64,
    /// DataWriteGuid of the layer the set was read from.
    pub data_write_guid: Uuid,
    /// [`FLAG_SUPERSET`] or 0.
    pub flags: u16,
    /// Block size of that layer, bytes.
    pub block_size: u32,
    /// Logical sector size, bytes.
    pub logical_sector_size: u32,
    /// Virtual size, bytes.
    pub virtual_size: u64,
    /// Changed ranges (bytes, ascending, coalesced).
    pub ranges: Vec<ByteRange>,
}

impl JournalRecord {
    /// The record's bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let count = self.ranges.len();
        let mut out = Vec::with_capacity(HEADER_LENGTH + count * RANGE_LENGTH + DIGEST_LENGTH);
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&u32::try_from(HEADER_LENGTH).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(self.disk.as_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(self.data_write_guid.as_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&self.logical_sector_size.to_le_bytes());
        out.extend_from_slice(&self.virtual_size.to_le_bytes());
        out.extend_from_slice(&u64::try_from(count).unwrap_or(u64::MAX).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        for r in &self.ranges {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.length.to_le_bytes());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Parses and checks the record at `offset` of `path` against what the
    /// catalog committed (`expected`, with its `sequence` and `disk`).
    ///
    /// # Errors
    /// The [`JournalError`] of the first rule broken.
    pub fn decode(
        bytes: &[u8],
        path: &Path,
        offset: u64,
        sequence: u64,
        disk: Uuid,
        expected: &JournaledEpoch,
    ) -> std::result::Result<JournalRecord, JournalError> {
        let path_buf = || path.to_path_buf();
        let mismatch =
            |field: &'static str, found: String, expected: String| JournalError::FieldMismatch {
                path: path_buf(),
                offset,
                field,
                found,
                expected,
            };
        if bytes.get(..8) != Some(&RECORD_MAGIC[..]) {
            return Err(JournalError::BadMagic {
                path: path_buf(),
                offset,
            });
        }
        let version = u16_at(bytes, 8);
        if version != RECORD_VERSION {
            return Err(JournalError::UnsupportedVersion {
                path: path_buf(),
                offset,
                version,
            });
        }
        let body_length = bytes.len().saturating_sub(DIGEST_LENGTH);
        let (body, digest) = bytes.split_at(body_length);
        if bytes.len() < HEADER_LENGTH + DIGEST_LENGTH || Sha256::digest(body)[..] != *digest {
            return Err(JournalError::ChecksumMismatch {
                path: path_buf(),
                offset,
            });
        }
        let header_length = u32_at(bytes, 12);
        if usize::try_from(header_length).ok() != Some(HEADER_LENGTH) {
            return Err(mismatch(
                "header length",
                header_length.to_string(),
                HEADER_LENGTH.to_string(),
            ));
        }
        let found_sequence = u64_at(bytes, 16);
        if found_sequence != sequence {
            return Err(JournalError::SequenceGap {
                path: path_buf(),
                offset,
                expected: sequence,
                found: found_sequence,
            });
        }
        let found_disk = guid_at(bytes, 24);
        if found_disk != disk {
            return Err(mismatch(
                "disk GUID",
                cim_guid(&found_disk),
                cim_guid(&disk),
            ));
        }
        let epoch = u64_at(bytes, 40);
        if epoch != expected.epoch {
            return Err(mismatch(
                "epoch",
                epoch.to_string(),
                expected.epoch.to_string(),
            ));
        }
        let data_write_guid = guid_at(bytes, 48);
        if data_write_guid != expected.data_write_guid {
            return Err(mismatch(
                "DataWriteGuid",
                cim_guid(&data_write_guid),
                cim_guid(&expected.data_write_guid),
            ));
        }
        let count = u64_at(bytes, 80);
        let ranges_length = body_length - HEADER_LENGTH;
        if u64::try_from(ranges_length / RANGE_LENGTH).ok() != Some(count)
            || !ranges_length.is_multiple_of(RANGE_LENGTH)
        {
            return Err(mismatch(
                "range count",
                count.to_string(),
                (ranges_length / RANGE_LENGTH).to_string(),
            ));
        }
        let logical_sector_size = u32_at(bytes, 68);
        let virtual_size = u64_at(bytes, 72);
        let lss = u64::from(logical_sector_size.max(1));
        let mut ranges = Vec::new();
        let mut previous_end: Option<u64> = None;
        for (index, chunk) in (0u64..).zip(
            body.get(HEADER_LENGTH..)
                .unwrap_or_default()
                .chunks_exact(RANGE_LENGTH),
        ) {
            let range = ByteRange {
                offset: u64_at(chunk, 0),
                length: u64_at(chunk, 8),
            };
            let ordered = previous_end.is_none_or(|end| range.offset > end);
            let aligned = range.offset.is_multiple_of(lss)
                && (range.length.is_multiple_of(lss) || range.end() == virtual_size);
            let inside = range.length > 0
                && range
                    .offset
                    .checked_add(range.length)
                    .is_some_and(|end| end <= virtual_size);
            if !(ordered && aligned && inside) {
                return Err(JournalError::BadRange {
                    path: path_buf(),
                    offset,
                    index,
                    range_offset: range.offset,
                    range_length: range.length,
                });
            }
            previous_end = Some(range.end());
            ranges.push(range);
        }
        Ok(JournalRecord {
            sequence,
            disk,
            epoch,
            data_write_guid,
            flags: u16_at(bytes, 10),
            block_size: u32_at(bytes, 64),
            logical_sector_size,
            virtual_size,
            ranges,
        })
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn guid_at(b: &[u8], at: usize) -> Uuid {
    let mut a = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        a.copy_from_slice(s);
    }
    Uuid::from_bytes(a)
}

/// `<vm dir>/<disk GUID>.rctj`.
pub fn journal_path(vm_dir: &Path, disk: &Uuid) -> PathBuf {
    vm_dir.join(format!("{}.{JOURNAL_EXTENSION}", cim_guid(disk)))
}

/// Reads committed record `sequence` (described by the catalog's `entry`).
///
/// # Errors
/// The [`JournalError`] of the first rule broken.
pub fn read_record(
    path: &Path,
    disk: Uuid,
    sequence: u64,
    entry: &JournaledEpoch,
) -> std::result::Result<JournalRecord, JournalError> {
    let io = |e: std::io::Error| {
        if e.kind() == IoErrorKind::NotFound {
            JournalError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            JournalError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        }
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let file_length = file.metadata().map_err(io)?.len();
    let truncated = || JournalError::Truncated {
        path: path.to_path_buf(),
        sequence,
        offset: entry.offset,
        length: entry.length,
        file_length,
    };
    let fits = |length: u64| {
        entry
            .offset
            .checked_add(length)
            .is_some_and(|end| end <= file_length)
    };
    if !fits(u64::try_from(HEADER_LENGTH).unwrap_or(u64::MAX)) {
        return Err(truncated());
    }
    // The record's own length (from its range count) decides what is read,
    // so that a record found at the wrong place is recognised as such (a
    // gap) rather than as damage.
    let mut header = [0u8; HEADER_LENGTH];
    file.read_exact_at(&mut header, entry.offset).map_err(io)?;
    let fixed = u64::try_from(HEADER_LENGTH + DIGEST_LENGTH).unwrap_or(u64::MAX);
    let own_length = if header.get(..8) == Some(&RECORD_MAGIC[..]) {
        u64_at(&header, 80)
            .checked_mul(u64::try_from(RANGE_LENGTH).unwrap_or(u64::MAX))
            .and_then(|r| r.checked_add(fixed))
            .filter(|&l| fits(l))
            .unwrap_or(entry.length)
    } else {
        entry.length
    };
    if !fits(own_length) {
        return Err(truncated());
    }
    let mut bytes = vec![0u8; usize::try_from(own_length).map_err(|_| truncated())?];
    file.read_exact_at(&mut bytes, entry.offset).map_err(io)?;
    let record = JournalRecord::decode(&bytes, path, entry.offset, sequence, disk, entry)?;
    if own_length != entry.length {
        return Err(JournalError::FieldMismatch {
            path: path.to_path_buf(),
            offset: entry.offset,
            field: "record length",
            found: own_length.to_string(),
            expected: entry.length.to_string(),
        });
    }
    Ok(record)
}

/// Appends `records` after the committed ones (`committed_length` bytes;
/// anything past it is an interrupted append and is cut off), fsyncs the
/// file (and its directory when it is created) and returns the catalog
/// entries to commit, in order.
///
/// # Errors
/// [`HostError::Io`] naming the journal.
pub fn append(
    path: &Path,
    committed_length: u64,
    records: &[JournalRecord],
) -> Result<Vec<JournaledEpoch>> {
    let created = !path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| HostError::io(path, "open journal", e))?;
    file.set_len(committed_length)
        .map_err(|e| HostError::io(path, "cut interrupted journal append", e))?;
    let mut offset = committed_length;
    let mut entries = Vec::with_capacity(records.len());
    for record in records {
        let bytes = record.encode();
        file.write_all_at(&bytes, offset)
            .map_err(|e| HostError::io(path, "append journal record", e))?;
        let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        entries.push(JournaledEpoch {
            epoch: record.epoch,
            data_write_guid: record.data_write_guid,
            offset,
            length,
            superset: record.flags & FLAG_SUPERSET != 0,
        });
        offset = offset.saturating_add(length);
    }
    file.sync_all()
        .map_err(|e| HostError::io(path, "fsync journal", e))?;
    if created && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: Uuid = Uuid::from_u128(0x1111_2222_3333_4444_8555_6666_7777_8888);
    const LAYER: Uuid = Uuid::from_u128(0x9999_aaaa_bbbb_4ccc_8ddd_eeee_ffff_0000);

    fn record(sequence: u64, ranges: Vec<ByteRange>) -> JournalRecord {
        JournalRecord {
            sequence,
            disk: DISK,
            epoch: 2,
            data_write_guid: LAYER,
            flags: 0,
            block_size: 2 << 20,
            logical_sector_size: 512,
            virtual_size: 1 << 30,
            ranges,
        }
    }

    fn ranges() -> Vec<ByteRange> {
        vec![
            ByteRange {
                offset: 0,
                length: 512,
            },
            ByteRange {
                offset: 4 << 20,
                length: 2 << 20,
            },
        ]
    }

    fn entry(bytes: &[u8]) -> JournaledEpoch {
        JournaledEpoch {
            epoch: 2,
            data_write_guid: LAYER,
            offset: 0,
            length: bytes.len() as u64,
            superset: false,
        }
    }

    fn decode(bytes: &[u8], sequence: u64) -> std::result::Result<JournalRecord, JournalError> {
        JournalRecord::decode(bytes, Path::new("j.rctj"), 0, sequence, DISK, &entry(bytes))
    }

    /// Re-seals a patched record with a valid digest (to reach the rules
    /// checked after the checksum).
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - DIGEST_LENGTH;
        let digest = Sha256::digest(&bytes[..body]);
        bytes[body..].copy_from_slice(&digest);
        bytes
    }

    #[test]
    fn record_round_trips() {
        let r = record(3, ranges());

        let back = decode(&r.encode(), 3).unwrap();

        assert_eq!(back, r);
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut bytes = record(0, ranges()).encode();
        bytes[0] = b'X';

        assert!(matches!(
            decode(&bytes, 0),
            Err(JournalError::BadMagic { offset: 0, .. })
        ));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = record(0, ranges()).encode();
        bytes[8] = 2;

        assert!(matches!(
            decode(&bytes, 0),
            Err(JournalError::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn a_flipped_bit_is_a_checksum_mismatch() {
        let mut bytes = record(0, ranges()).encode();
        bytes[HEADER_LENGTH + 3] ^= 1;

        assert!(matches!(
            decode(&bytes, 0),
            Err(JournalError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn a_record_with_another_sequence_number_is_a_gap() {
        let bytes = record(5, ranges()).encode();

        assert!(matches!(
            decode(&bytes, 4),
            Err(JournalError::SequenceGap {
                expected: 4,
                found: 5,
                ..
            })
        ));
    }

    #[test]
    fn a_record_of_another_disk_epoch_or_layer_disagrees_with_the_catalog() {
        for (at, field) in [(24, "disk GUID"), (40, "epoch"), (48, "DataWriteGuid")] {
            let mut bytes = record(0, ranges()).encode();
            bytes[at] ^= 0x10;
            let bytes = reseal(bytes);

            let err = decode(&bytes, 0).unwrap_err();

            assert!(
                matches!(err, JournalError::FieldMismatch { field: f, .. } if f == field),
                "{field}: {err:?}"
            );
        }
    }

    #[test]
    fn range_count_disagreeing_with_the_length_is_refused() {
        let mut bytes = record(0, ranges()).encode();
        bytes[80] = 7;
        let bytes = reseal(bytes);

        assert!(matches!(
            decode(&bytes, 0),
            Err(JournalError::FieldMismatch {
                field: "range count",
                ..
            })
        ));
    }

    #[test]
    fn unordered_unaligned_empty_or_outside_ranges_are_refused() {
        let r = |offset, length| ByteRange { offset, length };
        for (index, bad) in [
            (1, vec![r(4096, 512), r(0, 512)]),
            (1, vec![r(0, 512), r(512, 512)]),
            (0, vec![r(100, 512)]),
            (0, vec![r(0, 0)]),
            (0, vec![r((1 << 30) - 512, 1024)]),
        ] {
            let bytes = record(0, bad.clone()).encode();

            let err = decode(&bytes, 0).unwrap_err();

            assert!(
                matches!(err, JournalError::BadRange { index: i, .. } if i == index),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn missing_and_truncated_journals_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.rctj");
        let bytes = record(0, ranges()).encode();
        let e = entry(&bytes);

        assert!(matches!(
            read_record(&path, DISK, 0, &e),
            Err(JournalError::Missing { .. })
        ));
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            read_record(&path, DISK, 0, &e),
            Err(JournalError::Truncated { .. })
        ));
    }

    #[test]
    fn append_cuts_an_uncommitted_tail_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.rctj");
        let first = append(&path, 0, &[record(0, ranges())]).unwrap();
        // An interrupted append left garbage past the committed record.
        let committed = first[0].length;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"torn record").unwrap();

        let second = append(&path, committed, &[record(1, ranges())]).unwrap();

        assert_eq!(second[0].offset, committed);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            committed + second[0].length
        );
        assert_eq!(read_record(&path, DISK, 1, &second[0]).unwrap().sequence, 1);
        assert_eq!(read_record(&path, DISK, 0, &first[0]).unwrap().sequence, 0);
    }

    #[test]
    fn a_catalog_length_that_disagrees_with_the_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.rctj");
        let mut e = append(&path, 0, &[record(0, ranges())]).unwrap().remove(0);
        e.length -= 16;

        assert!(matches!(
            read_record(&path, DISK, 0, &e),
            Err(JournalError::FieldMismatch {
                field: "record length",
                ..
            })
        ));
    }
}
