//! create_dynamic / create_differencing against qemu-img, libvhdi and our reader.
// Integration tests are their own crate: the lint meant for unit tests in
// library code does not apply here.
#![allow(clippy::tests_outside_test_module)]

mod writer_support;

use std::path::Path;

use refpoint_vhdx::create::{CreateError, DEFAULT_CREATOR};
use refpoint_vhdx::error::ErrorDetail;
use refpoint_vhdx::{
    Chain, CreateOptions, ErrorKind, PayloadState, VhdxFile, create_differencing, create_dynamic,
};
use uuid::Uuid;
use writer_support::*;

fn options(virtual_size: u64, block_size: u32) -> CreateOptions {
    CreateOptions {
        virtual_size,
        block_size,
        logical_sector_size: 512,
        physical_sector_size: 4096,
        virtual_disk_id: Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888),
        data_write_guid: Some(Uuid::from_u128(0xAAAA)),
        file_write_guid: None,
        creator: DEFAULT_CREATOR.to_string(),
    }
}

fn create_error(err: &refpoint_vhdx::VhdxError) -> Option<&CreateError> {
    match err.detail() {
        ErrorDetail::Other(e) => e.downcast_ref::<CreateError>(),
        _ => None,
    }
}

#[test]
fn new_dynamic_file_passes_qemu_check_and_reads_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");

    create_dynamic(&path, &options(64 * MIB, 2 * MIB32)).unwrap();

    qemu_check(&path);
    assert_eq!(qemu_raw(&path), vec![0u8; 64 << 20]);
    let info = run("qemu-img", &["info", path.to_str().unwrap()]);
    assert!(info.contains("virtual size: 64 MiB"), "{info}");
}

#[test]
fn new_dynamic_file_carries_requested_identity_and_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");
    let opts = options(10 * MIB + 512, MIB32);

    create_dynamic(&path, &opts).unwrap();

    let file = VhdxFile::open(&path).unwrap();
    let g = file.geometry();
    assert_eq!(
        (g.virtual_size, g.block_size, g.data_blocks),
        (10 * MIB + 512, MIB32, 11)
    );
    assert_eq!((g.logical_sector_size, g.physical_sector_size), (512, 4096));
    assert!(!g.has_parent && !g.leave_block_allocated);
    assert_eq!(file.virtual_disk_id(), opts.virtual_disk_id);
    assert_eq!(file.data_write_guid(), Uuid::from_u128(0xAAAA));
    assert_eq!(file.creator(), DEFAULT_CREATOR);
    assert!(!file.log_replayed());
    assert!(file.present_blocks().unwrap().is_empty());
    assert_eq!(
        file.payload_state(10).unwrap(),
        (PayloadState::NotPresent, None)
    );
}

#[test]
fn new_dynamic_file_is_header_log_metadata_and_bat_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");

    create_dynamic(&path, &options(64 * MIB, 2 * MIB32)).unwrap();

    // Header section, 1 MiB log, 1 MiB metadata, 1 MiB BAT (vhdx.md §10).
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * MIB);
}

#[test]
fn libvhdi_reads_a_new_dynamic_file_with_512_and_4096_byte_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("s512.vhdx");
    let large = dir.path().join("s4096.vhdx");

    create_dynamic(&small, &options(8 * MIB, MIB32)).unwrap();
    create_dynamic(
        &large,
        &CreateOptions {
            logical_sector_size: 4096,
            ..options(8 * MIB, MIB32)
        },
    )
    .unwrap();

    let info = run("vhdiinfo", &[large.to_str().unwrap()]);
    assert!(info.contains("Bytes per sector\t: 4096"), "{info}");
    assert_eq!(libvhdi_read(&small, None, 0, 8 * MIB), vec![0u8; 8 << 20]);
    assert_eq!(libvhdi_read(&large, None, 0, 8 * MIB), vec![0u8; 8 << 20]);
}

#[test]
fn existing_file_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");
    std::fs::write(&path, b"precious").unwrap();

    let err = create_dynamic(&path, &options(8 * MIB, MIB32)).unwrap_err();

    assert!(matches!(
        create_error(&err),
        Some(CreateError::AlreadyExists { .. })
    ));
    assert_eq!(err.path(), Some(path.as_path()));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn rejected_options_leave_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.vhdx");

    let err = create_dynamic(&path, &options(8 * MIB, 3 * MIB32)).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        create_error(&err),
        Some(&CreateError::BlockSizeNotPowerOfTwo {
            block_size: 3 * MIB32
        })
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn differencing_child_copies_parent_identity_and_links_to_its_data_write_guid() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("child.avhdx");
    create_dynamic(
        &parent,
        &CreateOptions {
            physical_sector_size: 512,
            ..options(48 * MIB, 8 * MIB32)
        },
    )
    .unwrap();

    create_differencing(&child, &parent, None).unwrap();

    let p = VhdxFile::open(&parent).unwrap();
    let c = VhdxFile::open(&child).unwrap();
    let (pg, cg) = (p.geometry(), c.geometry());
    assert!(cg.has_parent);
    assert_eq!(cg.block_size, 2 * MIB32, "Hyper-V's differencing default");
    assert_eq!(
        (
            cg.virtual_size,
            cg.logical_sector_size,
            cg.physical_sector_size
        ),
        (
            pg.virtual_size,
            pg.logical_sector_size,
            pg.physical_sector_size
        )
    );
    assert_eq!(c.virtual_disk_id(), p.virtual_disk_id());
    let locator = c.parent_locator().unwrap();
    assert_eq!(locator.parent_linkage(), p.data_write_guid());
    assert_eq!(locator.relative_path(), Some(".\\base.vhdx"));
    let canonical = parent.canonicalize().unwrap();
    let expected_abs = canonical.to_str().unwrap().replace('/', "\\");
    assert_eq!(locator.absolute_win32_path(), Some(expected_abs.as_str()));
    assert_eq!(
        locator.get("parent_linkage"),
        Some(format!("{{{}}}", p.data_write_guid()).as_str())
    );
}

#[test]
fn differencing_child_in_another_directory_stores_a_dot_dot_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/base")).unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let parent = dir.path().join("a/base/p.vhdx");
    let child = dir.path().join("b/c.avhdx");
    create_dynamic(&parent, &options(8 * MIB, MIB32)).unwrap();

    create_differencing(&child, &parent, Some(MIB32)).unwrap();

    let c = VhdxFile::open(&child).unwrap();
    assert_eq!(
        c.parent_locator().unwrap().relative_path(),
        Some("..\\a\\base\\p.vhdx")
    );
    assert_eq!(Chain::open(&child).unwrap().layers().len(), 2);
}

#[test]
fn differencing_child_reads_its_parent_through_our_reader_and_libvhdi() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("child.avhdx");
    create_dynamic(&parent, &options(16 * MIB, MIB32)).unwrap();
    let content = Rng::new(7).bytes(3 * MIBU);
    {
        let mut w = refpoint_vhdx::VhdxWriter::open(&parent).unwrap();
        w.write_at(5 * MIB, &content).unwrap();
    }

    create_differencing(&child, &parent, None).unwrap();

    let mut expected = vec![0u8; 16 << 20];
    expected[5 << 20..8 << 20].copy_from_slice(&content);
    assert_same("our reader", &reader_read(&child, 0, 16 * MIB), &expected);
    assert_same(
        "libvhdi",
        &libvhdi_read(&child, Some(&parent), 0, 16 * MIB),
        &expected,
    );
}

#[test]
fn differencing_child_of_a_missing_parent_is_not_found_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let child = dir.path().join("child.avhdx");

    let err =
        create_differencing(&child, Path::new("/nonexistent/refpoint/p.vhdx"), None).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn differencing_child_with_bad_block_size_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    create_dynamic(&parent, &options(8 * MIB, MIB32)).unwrap();

    let err =
        create_differencing(&dir.path().join("c.avhdx"), &parent, Some(512 * MIB32)).unwrap_err();

    assert_eq!(
        create_error(&err),
        Some(&CreateError::BlockSizeOutOfRange {
            block_size: 512 * MIB32
        })
    );
}

#[test]
fn large_differencing_child_has_a_trailing_sector_bitmap_entry_per_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("child.avhdx");
    // 8 GiB, 2 MiB blocks: two 4 GiB chunks, 4098 BAT entries (vhdx.md §7.3).
    create_dynamic(&parent, &options(8 << 30, 32 * MIB32)).unwrap();

    create_differencing(&child, &parent, None).unwrap();

    let c = VhdxFile::open(&child).unwrap();
    assert_eq!(c.geometry().chunk_ratio, 2048);
    assert_eq!(c.geometry().data_blocks, 4096);
    // Header section, log, metadata, BAT, then one zeroed sector bitmap block per chunk.
    assert_eq!(std::fs::metadata(&child).unwrap().len(), 6 * MIB);
    let info = run("vhdiinfo", &[child.to_str().unwrap()]);
    assert!(info.contains("Differential"), "{info}");
}
