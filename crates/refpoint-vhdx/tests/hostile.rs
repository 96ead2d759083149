//! Hostile input through `VhdxFile::open`: a valid synthetic image with one
//! field broken per test, asserting the exact rule variant (MS-VHDX §2.2–2.6).
#![allow(
    clippy::tests_outside_test_module,
    reason = "integration test crate: every item is a test"
)]

mod common;

use common::image::{
    BAT_OFFSET, Image, LOG_OFFSET, MD_FILE_PARAMETERS, MD_PARENT_LOCATOR, MD_VIRTUAL_DISK_SIZE,
    METADATA_OFFSET, Spec, metadata_entry_offset,
};
use refpoint_vhdx::bat::{BatError, Occupant};
use refpoint_vhdx::error::ErrorDetail;
use refpoint_vhdx::format::{
    BAT_REGION_GUID, BatEntry, HEADER1_OFFSET, HEADER2_OFFSET, INCOMPLETE_FILE_GUID,
    METADATA_REGION_GUID, MIB, REGION_TABLE1_OFFSET, payload_state, sector_bitmap_state,
};
use refpoint_vhdx::header::HeaderError;
use refpoint_vhdx::locator::LocatorError;
use refpoint_vhdx::log::{LogError, LogWrite, encode_entry};
use refpoint_vhdx::metadata::MetadataError;
use refpoint_vhdx::region::{RegionEntry, RegionError};
use refpoint_vhdx::{Chain, ErrorKind, VhdxError, VhdxFile};
use uuid::Uuid;

const BS: u32 = 1 << 20;

fn base() -> Image {
    let mut img = Image::new(Spec::dynamic(8 * MIB, BS));
    img.full_block(0, |i| (i % 251) as u8);
    img
}

fn open(img: &Image) -> Result<VhdxFile, VhdxError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.vhdx");
    img.write_to(&path);
    VhdxFile::open(&path)
}

fn open_err(img: &Image) -> VhdxError {
    open(img).expect_err("open must fail")
}

fn regions_with(bat_len: u32, extra: Option<RegionEntry>) -> Vec<RegionEntry> {
    let mut v = vec![
        RegionEntry {
            guid: BAT_REGION_GUID,
            file_offset: BAT_OFFSET,
            length: bat_len,
            required: true,
        },
        RegionEntry {
            guid: METADATA_REGION_GUID,
            file_offset: METADATA_OFFSET,
            length: 1 << 20,
            required: true,
        },
    ];
    v.extend(extra);
    v
}

#[test]
fn valid_synthetic_image_opens() {
    let file = open(&base()).unwrap();

    assert_eq!(file.geometry().virtual_size, 8 * MIB);
    assert_eq!(file.creator(), "refpoint-test");
    assert!(!file.log_replayed());
}

// ----- File Type Identifier and headers (§2.2.1–2.2.2) -----

#[test]
fn open_without_vhdxfile_signature_is_rejected() {
    let mut img = base();
    img.patch(0, b"vhdxfilX");

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Header(HeaderError::BadIdentifierSignature { .. })
    ));
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(err.offset(), Some(0));
}

#[test]
fn open_with_both_header_checksums_bad_names_both_slots() {
    let mut img = base();
    img.patch(HEADER1_OFFSET + 4, &[0xde, 0xad, 0xbe, 0xef]);
    img.patch(HEADER2_OFFSET + 200, &[1]);

    let err = open_err(&img);

    let ErrorDetail::Header(HeaderError::NoValidHeader { first, second }) = err.detail() else {
        panic!("unexpected {err}");
    };
    assert!(matches!(**first, HeaderError::BadChecksum { .. }));
    assert!(matches!(**second, HeaderError::BadChecksum { .. }));
    assert!(err.to_string().contains("offset 0x20000"), "{err}");
}

#[test]
fn open_with_corrupt_current_header_uses_the_older_valid_one() {
    let mut img = base();
    img.patch(HEADER2_OFFSET + 300, &[1]);

    let file = open(&img).unwrap();

    assert_eq!(file.data_write_guid(), img.spec.data_write_guid);
}

#[test]
fn open_with_equal_sequence_numbers_and_different_headers_is_ambiguous() {
    let mut img = base();
    let mut other = img.header.clone();
    other.file_write_guid = Uuid::new_v4();
    img.patch(HEADER1_OFFSET, &other.to_bytes());

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Header(HeaderError::AmbiguousCurrentHeader { sequence_number: 2 })
    ));
}

#[test]
fn open_with_identical_headers_of_equal_sequence_succeeds() {
    let mut img = base();
    img.patch(HEADER1_OFFSET, &img.header.to_bytes());

    assert!(open(&img).is_ok());
}

#[test]
fn open_with_header_version_2_is_unsupported() {
    let mut img = base();
    img.header.version = 2;
    img.write_headers();

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Header(HeaderError::UnsupportedVersion { version: 2, .. })
    ));
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn open_with_log_version_1_and_a_log_guid_is_unsupported() {
    let mut img = base();
    img.header.log_version = 1;
    img.header.log_guid = Uuid::new_v4();
    img.write_headers();

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Header(HeaderError::UnsupportedLogVersion { .. })
    ));
}

#[test]
fn open_with_log_past_end_of_file_is_rejected() {
    let mut img = base();
    img.header.log_offset = 1024 * MIB;
    img.write_headers();

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Header(HeaderError::LogBeyondEof { .. })
    ));
}

#[test]
fn open_with_unaligned_log_offset_is_rejected() {
    let mut img = base();
    img.header.log_offset = MIB + 4096;
    img.write_headers();

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Header(HeaderError::BadLogOffset { .. })
    ));
}

// ----- Region table (§2.2.3) -----

#[test]
fn open_with_region_table_1_checksum_bad_falls_back_to_table_2() {
    let mut img = base();
    img.patch(REGION_TABLE1_OFFSET + 40, &[0xff]);

    assert!(open(&img).is_ok());
}

#[test]
fn open_with_both_region_tables_bad_is_rejected() {
    let mut img = base();
    img.patch(REGION_TABLE1_OFFSET + 40, &[0xff]);
    img.patch(REGION_TABLE1_OFFSET + 0x10000 + 40, &[0xff]);

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Region(RegionError::NoValidTable { .. })
    ));
}

#[test]
fn open_with_unknown_required_region_is_refused() {
    let mut img = base();
    let extra = RegionEntry {
        guid: Uuid::from_u128(0x1234),
        file_offset: 5 * MIB,
        length: 1 << 20,
        required: true,
    };
    img.alloc(4);
    img.set_regions(&regions_with(1 << 20, Some(extra)));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Region(RegionError::UnknownRequiredRegion { .. })
    ));
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn open_with_required_flag_clear_on_bat_and_metadata_succeeds() {
    let mut img = base();
    let mut r = regions_with(1 << 20, None);
    r.iter_mut().for_each(|e| e.required = false);
    img.set_regions(&r);

    assert!(open(&img).is_ok());
}

#[test]
fn open_with_region_overlapping_the_log_is_rejected() {
    let mut img = base();
    let mut r = regions_with(1 << 20, None);
    r[0].file_offset = LOG_OFFSET;
    img.set_regions(&r);

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Region(RegionError::OverlapsLog { .. })
    ));
}

#[test]
fn open_with_region_past_end_of_file_is_rejected() {
    let mut img = base();
    let mut r = regions_with(1 << 20, None);
    r[1].file_offset = 100 * MIB;
    img.set_regions(&r);

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Region(RegionError::BeyondEof { .. })
    ));
}

#[test]
fn open_with_duplicate_region_guid_is_rejected() {
    let mut img = base();
    let dup = RegionEntry {
        guid: BAT_REGION_GUID,
        file_offset: 5 * MIB,
        length: 1 << 20,
        required: true,
    };
    img.alloc(4);
    img.set_regions(&regions_with(1 << 20, Some(dup)));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Region(RegionError::DuplicateGuid { .. })
    ));
}

// ----- Metadata (§2.6) -----

#[test]
fn open_with_bad_metadata_signature_is_rejected() {
    let mut img = base();
    img.patch(METADATA_OFFSET, b"metadatX");

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Metadata(MetadataError::BadSignature { .. })
    ));
    assert_eq!(err.offset(), Some(METADATA_OFFSET));
}

#[test]
fn open_of_unfinished_create_is_refused() {
    let mut img = base();
    // Turn the File Parameters entry's id into the "incomplete file" item.
    img.patch(
        metadata_entry_offset(MD_FILE_PARAMETERS),
        &INCOMPLETE_FILE_GUID.to_bytes_le(),
    );

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Metadata(MetadataError::IncompleteFile)
    ));
}

#[test]
fn open_with_unknown_required_metadata_item_is_refused() {
    let mut img = base();
    img.patch(
        metadata_entry_offset(MD_VIRTUAL_DISK_SIZE),
        &Uuid::from_u128(77).to_bytes_le(),
    );

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Metadata(MetadataError::UnknownRequiredItem { .. })
    ));
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn open_with_metadata_item_outside_region_is_rejected() {
    let mut img = base();
    img.patch(
        metadata_entry_offset(MD_VIRTUAL_DISK_SIZE) + 16,
        &0x10_0000u32.to_le_bytes(),
    );

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Metadata(MetadataError::ItemOutsideRegion { .. })
    ));
}

#[test]
fn open_with_block_size_not_power_of_two_is_rejected() {
    let mut img = base();
    let at = u64::from(img.read_u32(metadata_entry_offset(MD_FILE_PARAMETERS) + 16));
    img.patch(METADATA_OFFSET + at, &(3u32 << 20).to_le_bytes());

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Metadata(MetadataError::BadBlockSize { .. })
    ));
}

#[test]
fn open_with_virtual_size_not_a_sector_multiple_is_rejected() {
    let mut img = base();
    let at = u64::from(img.read_u32(metadata_entry_offset(MD_VIRTUAL_DISK_SIZE) + 16));
    img.patch(METADATA_OFFSET + at, &(8 * MIB + 100).to_le_bytes());

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Metadata(MetadataError::VirtualSizeNotSectorMultiple { .. })
    ));
}

#[test]
fn open_with_has_parent_but_no_locator_is_rejected() {
    let mut img = base();
    let at = u64::from(img.read_u32(metadata_entry_offset(MD_FILE_PARAMETERS) + 16));
    img.patch(METADATA_OFFSET + at + 4, &2u32.to_le_bytes());

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Metadata(MetadataError::MissingParentLocator)
    ));
}

// ----- Parent locator (§2.6.2.6) -----

fn child() -> Image {
    Image::new(Spec::child(8 * MIB, BS, Uuid::new_v4(), r".\parent.vhdx"))
}

#[test]
fn open_with_locator_of_unknown_type_is_refused() {
    let mut img = child();
    let at = u64::from(img.read_u32(metadata_entry_offset(MD_PARENT_LOCATOR) + 16));
    img.patch(METADATA_OFFSET + at, &Uuid::from_u128(5).to_bytes_le());

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Locator(LocatorError::UnknownType { .. })
    ));
}

#[test]
fn open_with_locator_missing_parent_linkage_is_rejected() {
    let mut spec = Spec::dynamic(8 * MIB, BS);
    spec.locator = Some(vec![("relative_path".into(), "p.vhdx".into())]);

    let err = open_err(&Image::new(spec));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Locator(LocatorError::MissingParentLinkage)
    ));
}

// ----- BAT (§2.5) -----

#[test]
fn open_with_bat_region_smaller_than_the_bat_is_rejected() {
    // 128 GiB at 1 MiB blocks needs 131104 entries > 1 MiB of BAT.
    let mut img = Image::new(Spec::dynamic(128 * 1024 * MIB, BS));
    img.set_regions(&regions_with(1 << 20, None));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::RegionTooSmall { .. })
    ));
}

#[test]
fn open_with_reserved_bat_bits_names_the_entry_offset() {
    let mut img = base();
    img.set_bat_entry(1, BatEntry(u64::from(payload_state::ZERO) | 0x8));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::ReservedBitsSet { index: 1, .. })
    ));
    assert_eq!(err.offset(), Some(BAT_OFFSET + 8));
}

#[test]
fn open_with_reserved_payload_state_is_rejected() {
    let mut img = base();
    img.set_bat_entry(2, BatEntry(4));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::ReservedPayloadState {
            block: 2,
            state: 4,
            ..
        })
    ));
}

#[test]
fn open_with_partially_present_block_in_base_file_is_rejected() {
    let mut img = base();
    let at = img.alloc(1);
    img.set_bat_entry(3, BatEntry::new(payload_state::PARTIALLY_PRESENT, at));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::PartialWithoutParent { block: 3, .. })
    ));
}

#[test]
fn open_with_partially_present_block_without_sector_bitmap_is_rejected() {
    let mut img = child();
    let at = img.alloc(1);
    img.set_bat_entry(0, BatEntry::new(payload_state::PARTIALLY_PRESENT, at));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::PartialWithoutBitmap { block: 0, chunk: 0 })
    ));
}

#[test]
fn open_with_block_past_end_of_file_is_rejected() {
    let mut img = base();
    img.set_bat_entry(1, BatEntry::new(payload_state::FULLY_PRESENT, 200 * MIB));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::BlockBeyondEof { .. })
    ));
}

#[test]
fn open_with_block_inside_header_section_is_rejected() {
    let mut img = base();
    img.set_bat_entry(1, BatEntry::new(payload_state::FULLY_PRESENT, 0));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::BlockInHeaderSection { .. })
    ));
}

#[test]
fn open_with_block_over_the_metadata_region_is_rejected() {
    let mut img = base();
    img.set_bat_entry(
        1,
        BatEntry::new(payload_state::FULLY_PRESENT, METADATA_OFFSET),
    );

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::Overlap { other: Occupant::Region(g), .. }) if *g == METADATA_REGION_GUID
    ));
}

#[test]
fn open_with_block_over_the_log_is_rejected() {
    let mut img = base();
    img.set_bat_entry(1, BatEntry::new(payload_state::FULLY_PRESENT, LOG_OFFSET));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::Overlap {
            other: Occupant::Log,
            ..
        })
    ));
}

#[test]
fn open_with_two_blocks_at_one_offset_is_rejected() {
    let mut img = base();
    let first = BatEntry(img.read_u64(BAT_OFFSET));
    img.set_bat_entry(5, first);

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::DuplicateOffset { .. })
    ));
}

#[test]
fn open_with_sector_bitmap_present_in_base_file_is_rejected() {
    // 4097 one-MiB blocks: the dynamic BAT has chunk 0's SB entry at index 4096.
    let mut img = Image::new(Spec::dynamic(4097 * MIB, BS));
    let at = img.alloc(1);
    img.set_bat_entry(4096, BatEntry::new(sector_bitmap_state::PRESENT, at));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::BitmapInNonDifferencing { chunk: 0, .. })
    ));
}

#[test]
fn open_with_reserved_sector_bitmap_state_is_rejected() {
    let mut img = child();
    let sb = img.bitmap_index(0);
    img.set_bat_entry(sb, BatEntry::new(1, 0));

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::ReservedBitmapState { state: 1, .. })
    ));
}

// ----- Log (§2.3) -----

/// A BAT sector with block 1 FULLY_PRESENT at `at`, as a log data write.
fn bat_sector_write(img: &Image, block1_at: u64) -> LogWrite {
    let mut sector = [0u8; 4096];
    let at = usize::try_from(BAT_OFFSET).unwrap();
    sector.copy_from_slice(&img.bytes[at..at + 4096]);
    sector[8..16].copy_from_slice(
        &BatEntry::new(payload_state::FULLY_PRESENT, block1_at)
            .0
            .to_le_bytes(),
    );
    LogWrite::Data {
        file_offset: BAT_OFFSET,
        data: Box::new(sector),
    }
}

#[test]
fn dirty_log_is_replayed_in_memory_and_the_file_is_untouched() {
    let mut img = base();
    let at = img.alloc(1);
    img.patch(at, &[0x5A; 1 << 20]);
    let write = bat_sector_write(&img, at);
    img.dirty_log(&[write]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.vhdx");
    img.write_to(&path);
    let before = std::fs::read(&path).unwrap();

    let chain = Chain::open(&path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    chain.read_at(MIB, &mut buf).unwrap();

    assert!(chain.leaf().log_replayed());
    assert!(buf.iter().all(|&b| b == 0x5A));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn replayed_log_changes_what_metadata_reads_see() {
    let mut img = base();
    let item_at = u64::from(img.read_u32(metadata_entry_offset(MD_VIRTUAL_DISK_SIZE) + 16));
    let sector_at = (METADATA_OFFSET + item_at) & !4095;
    let mut sector = [0u8; 4096];
    let s = usize::try_from(sector_at).unwrap();
    sector.copy_from_slice(&img.bytes[s..s + 4096]);
    let in_sector = usize::try_from(METADATA_OFFSET + item_at - sector_at).unwrap();
    sector[in_sector..in_sector + 8].copy_from_slice(&(4 * MIB).to_le_bytes());
    img.dirty_log(&[LogWrite::Data {
        file_offset: sector_at,
        data: Box::new(sector),
    }]);

    let file = open(&img).unwrap();

    assert_eq!(file.geometry().virtual_size, 4 * MIB);
}

#[test]
fn replay_may_extend_the_file_and_new_space_reads_as_zeros() {
    let mut img = base();
    let end = img.bytes.len() as u64;
    let new_block = format_round(end);
    let write = bat_sector_write(&img, new_block);
    let guid = Uuid::new_v4();
    let entry = encode_entry(guid, 1, 0, end, new_block + MIB, &[write]);
    img.set_log(guid, &[(0, entry)]);

    let file = open(&img).unwrap();
    let mut buf = vec![0xFFu8; 4096];
    file.read_file_at(new_block, &mut buf).unwrap();

    assert!(buf.iter().all(|&b| b == 0));
}

fn format_round(v: u64) -> u64 {
    refpoint_vhdx::format::round_up_mib(v).unwrap()
}

#[test]
fn dirty_log_without_a_valid_sequence_refuses_to_open() {
    let mut img = base();
    img.set_log(Uuid::new_v4(), &[]);

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Log(LogError::NoValidSequence { .. })
    ));
    assert_eq!(err.kind(), ErrorKind::Corrupt);
}

#[test]
fn dirty_log_whose_entries_carry_another_log_guid_refuses_to_open() {
    let mut img = base();
    let stale = encode_entry(Uuid::new_v4(), 1, 0, MIB, MIB, &[]);
    img.set_log(Uuid::new_v4(), &[(0, stale)]);

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Log(LogError::NoValidSequence { .. })
    ));
}

#[test]
fn stale_log_entries_are_ignored_when_log_guid_is_zero() {
    let mut img = base();
    let stale = encode_entry(Uuid::new_v4(), 1, 0, MIB, MIB, &[bat_sector_write(&img, 0)]);
    img.set_log(Uuid::nil(), &[(0, stale)]);

    let file = open(&img).unwrap();

    assert!(!file.log_replayed());
}

#[test]
fn truncated_file_below_flushed_file_offset_refuses_to_open() {
    let mut img = base();
    let guid = Uuid::new_v4();
    let entry = encode_entry(guid, 1, 0, 512 * MIB, 512 * MIB, &[]);
    img.set_log(guid, &[(0, entry)]);

    let err = open_err(&img);

    assert!(matches!(
        err.detail(),
        ErrorDetail::Log(LogError::FlushedOffsetBeyondEof { .. })
    ));
}
