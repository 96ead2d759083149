//! Differencing chains built from synthetic images: read semantics of every
//! payload state (vhdx.md §7.4, §9), parent discovery, and each chain rule.
#![allow(
    clippy::tests_outside_test_module,
    reason = "integration test crate: every item is a test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::image::{Image, Spec};
use common::{run, sha256_chain, tool_available};
use refpoint_vhdx::bat::BatError;
use refpoint_vhdx::chain::{ChainError, MAX_CHAIN_LAYERS};
use refpoint_vhdx::error::ErrorDetail;
use refpoint_vhdx::format::{MIB, guid_braced, payload_state};
use refpoint_vhdx::{Chain, ErrorKind, Extent, ExtentSource, PayloadState, VhdxError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Parent content: a per-sector stamp, never zero.
fn parent_byte(voff: u64) -> u8 {
    ((voff / 512) % 250) as u8 + 1
}

/// Child content: a different per-sector stamp, never zero.
fn child_byte(voff: u64) -> u8 {
    ((voff / 512) % 100) as u8 + 0x80
}

const SIZE: u64 = 16 * MIB + 3 * 512;

/// Parent: 16 MiB + 3 sectors, 2 MiB blocks, every block FULLY_PRESENT.
fn parent_image() -> Image {
    let mut img = Image::new(Spec::dynamic(SIZE, 2 << 20));
    for block in 0..img.spec.data_blocks() {
        img.full_block(block, |o| parent_byte(block * (2 << 20) + o));
    }
    img
}

/// Present sector ranges of the PARTIALLY_PRESENT child block 5 (1 MiB = 2048 sectors).
const PRESENT: [std::ops::Range<u64>; 3] = [0..8, 100..300, 2040..2048];

/// Child: 1 MiB blocks; 0 NOT_PRESENT, 1 ZERO, 2 UNMAPPED, 3 UNDEFINED,
/// 4 FULLY_PRESENT, 5 PARTIALLY_PRESENT, 16 (last, 3 sectors) FULLY_PRESENT, rest NOT_PRESENT.
fn child_image(parent_dwg: Uuid) -> Image {
    let bs = 1 << 20;
    let mut img = Image::new(Spec::child(SIZE, bs, parent_dwg, r".\parent.vhdx"));
    img.set_state(1, payload_state::ZERO);
    img.set_state(2, payload_state::UNMAPPED);
    img.set_state(3, payload_state::UNDEFINED);
    img.full_block(4, |o| child_byte(4 * MIB + o));
    img.partial_block(5, |o| child_byte(5 * MIB + o), &PRESENT);
    img.full_block(16, |o| child_byte(16 * MIB + o));
    img
}

/// The expected virtual disk of child over parent, by the rules of §7.4.
fn expected_child_over_parent() -> Vec<u8> {
    (0..SIZE)
        .map(|v| {
            let block = v / MIB;
            let sector = (v % MIB) / 512;
            match block {
                1..=3 => 0,
                4 | 16 => child_byte(v),
                5 if PRESENT.iter().any(|r| r.contains(&sector)) => child_byte(v),
                _ => parent_byte(v),
            }
        })
        .collect()
}

struct Pair {
    _dir: tempfile::TempDir,
    child: PathBuf,
    parent: PathBuf,
}

fn write_pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let parent = parent_image();
    let child = child_image(parent.spec.data_write_guid);
    let parent_path = dir.path().join("parent.vhdx");
    let child_path = dir.path().join("child.avhdx");
    parent.write_to(&parent_path);
    child.write_to(&child_path);
    Pair {
        _dir: dir,
        child: child_path,
        parent: parent_path,
    }
}

fn chain_err(result: Result<Chain, VhdxError>) -> VhdxError {
    result.expect_err("chain must not open")
}

#[test]
fn every_payload_state_reads_as_the_spec_says() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();
    let mut buf = vec![0u8; usize::try_from(SIZE).unwrap()];

    chain.read_at(0, &mut buf).unwrap();

    assert_eq!(chain.layers().len(), 2);
    assert!(
        buf == expected_child_over_parent(),
        "virtual disk differs from the §7.4 model"
    );
}

#[test]
fn reads_at_odd_offsets_match_the_model() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();
    let expected = expected_child_over_parent();
    // Crosses the partial block's bitmap runs and the child/parent block boundaries.
    let (off, len) = (5 * MIB - 700, 300 * 512 + 1234);
    let mut buf = vec![0u8; len];

    chain.read_at(off, &mut buf).unwrap();

    let start = usize::try_from(off).unwrap();
    assert!(buf == expected[start..start + len]);
}

#[test]
fn map_range_splits_a_partial_block_at_bitmap_runs() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();

    let extents = chain.map_range(5 * MIB, MIB).unwrap();

    let layers: Vec<(u64, u64, usize)> = extents
        .iter()
        .map(|e| match e.source {
            ExtentSource::Layer { layer, .. } => (e.virtual_offset - 5 * MIB, e.length, layer),
            ExtentSource::Zero => panic!("no zeros expected"),
        })
        .collect();
    assert_eq!(
        layers,
        vec![
            (0, 8 * 512, 0),
            (8 * 512, 92 * 512, 1),
            (100 * 512, 200 * 512, 0),
            (300 * 512, 1740 * 512, 1),
            (2040 * 512, 8 * 512, 0),
        ]
    );
}

#[test]
fn map_range_coalesces_zero_states_into_one_extent() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();

    let extents = chain.map_range(MIB, 3 * MIB).unwrap();

    assert_eq!(
        extents,
        vec![Extent {
            virtual_offset: MIB,
            length: 3 * MIB,
            source: ExtentSource::Zero
        }]
    );
}

#[test]
fn map_range_coalesces_contiguous_blocks_of_one_layer() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = Image::new(Spec::dynamic(8 * MIB, 1 << 20));
    for b in 0..8 {
        img.full_block(b, |_| 1);
    }
    let path = dir.path().join("fixed-like.vhdx");
    img.write_to(&path);
    let chain = Chain::open(&path).unwrap();

    let extents = chain.map_range(0, 8 * MIB).unwrap();

    assert_eq!(extents.len(), 1);
    assert_eq!(extents[0].length, 8 * MIB);
}

#[test]
fn independent_reader_dissect_agrees_with_the_chain() {
    if !tool_available("python3") {
        return;
    }
    let pair = write_pair();
    let script = "import sys, hashlib\n\
        from dissect.hypervisor.disk.vhdx import VHDX\n\
        v = VHDX(sys.argv[1]); h = hashlib.sha256(); left = v.size; v.seek(0)\n\
        while left:\n    d = v.read(min(left, 1 << 22)); h.update(d); left -= len(d)\n\
        print(h.hexdigest())";
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&pair.child));
    let theirs = String::from_utf8(out).unwrap().trim().to_owned();

    let ours = sha256_chain(&Chain::open(&pair.child).unwrap());

    assert_eq!(ours, theirs);
    assert_eq!(
        ours,
        hex::encode(Sha256::digest(expected_child_over_parent()))
    );
}

#[test]
fn three_layers_with_different_block_sizes_read_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let size = 64 * MIB + 512;
    let mut base = Image::new(Spec::dynamic(size, 1 << 20));
    for b in 0..base.spec.data_blocks() {
        base.full_block(b, |o| parent_byte(b * MIB + o));
    }
    let mut mid = Image::new(Spec::child(
        size,
        32 << 20,
        base.spec.data_write_guid,
        "base.vhdx",
    ));
    mid.partial_block(1, |_| 0xEE, std::slice::from_ref(&(0..1))); // sector 65536 = virtual 32 MiB
    let mut leaf = Image::new(Spec::child(
        size,
        2 << 20,
        mid.spec.data_write_guid,
        r".\mid.avhdx",
    ));
    leaf.set_state(16, payload_state::ZERO); // virtual 32–34 MiB
    leaf.full_block(32, |_| 0x77); // virtual 64 MiB + 512 (last, short block)
    base.write_to(&dir.path().join("base.vhdx"));
    mid.write_to(&dir.path().join("mid.avhdx"));
    leaf.write_to(&dir.path().join("leaf.avhdx"));
    let chain = Chain::open(&dir.path().join("leaf.avhdx")).unwrap();
    let mut buf = vec![0u8; usize::try_from(size).unwrap()];

    chain.read_at(0, &mut buf).unwrap();

    assert_eq!(chain.layers().len(), 3);
    let expected: Vec<u8> = (0..size)
        .map(|v| match v {
            v if (32 * MIB..34 * MIB).contains(&v) => 0,
            v if v >= 64 * MIB => 0x77,
            v => parent_byte(v),
        })
        .collect();
    assert!(buf == expected);
}

#[test]
fn partial_sector_of_middle_layer_shows_through_a_not_present_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let size = 64 * MIB;
    let base = Image::new(Spec::dynamic(size, 1 << 20));
    let mut mid = Image::new(Spec::child(
        size,
        32 << 20,
        base.spec.data_write_guid,
        "base.vhdx",
    ));
    mid.partial_block(1, |_| 0xEE, std::slice::from_ref(&(3..4)));
    let leaf = Image::new(Spec::child(
        size,
        2 << 20,
        mid.spec.data_write_guid,
        "mid.avhdx",
    ));
    base.write_to(&dir.path().join("base.vhdx"));
    mid.write_to(&dir.path().join("mid.avhdx"));
    leaf.write_to(&dir.path().join("leaf.avhdx"));
    let chain = Chain::open(&dir.path().join("leaf.avhdx")).unwrap();
    let mut buf = vec![0xFFu8; 4 * 512];

    chain.read_at(32 * MIB, &mut buf).unwrap();

    assert!(buf[..3 * 512].iter().all(|&b| b == 0));
    assert!(buf[3 * 512..].iter().all(|&b| b == 0xEE));
}

#[test]
fn logical_sector_4096_child_uses_4k_bitmap_bits() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8 * MIB;
    let mut pspec = Spec::dynamic(size, 1 << 20);
    pspec.logical_sector_size = 4096;
    let mut parent = Image::new(pspec);
    for b in 0..8 {
        parent.full_block(b, |o| parent_byte(b * MIB + o));
    }
    let mut cspec = Spec::child(size, 1 << 20, parent.spec.data_write_guid, "parent.vhdx");
    cspec.logical_sector_size = 4096;
    let mut child = Image::new(cspec);
    // 1 MiB block = 256 sectors of 4 KiB; chunk ratio is 32768.
    child.partial_block(3, |_| 0xAB, &[0..2, 100..101]);
    parent.write_to(&dir.path().join("parent.vhdx"));
    let path = dir.path().join("child.avhdx");
    child.write_to(&path);
    let chain = Chain::open(&path).unwrap();
    let mut buf = vec![0u8; usize::try_from(MIB).unwrap()];

    chain.read_at(3 * MIB, &mut buf).unwrap();

    assert_eq!(chain.geometry().chunk_ratio, 32768);
    let expected: Vec<u8> = (0..MIB)
        .map(|o| match o / 4096 {
            0 | 1 | 100 => 0xAB,
            _ => parent_byte(3 * MIB + o),
        })
        .collect();
    assert!(buf == expected);
}

#[test]
fn partial_block_in_the_second_chunk_uses_the_second_bitmap_block() {
    let dir = tempfile::tempdir().unwrap();
    let size = 4 * 1024 * MIB + 4 * MIB;
    let mut parent = Image::new(Spec::dynamic(size, 1 << 20));
    parent.full_block(4096, |_| 0x11);
    let mut child = Image::new(Spec::child(
        size,
        1 << 20,
        parent.spec.data_write_guid,
        "parent.vhdx",
    ));
    child.partial_block(4095, |_| 0x22, std::slice::from_ref(&(2047..2048)));
    child.partial_block(4096, |_| 0x33, std::slice::from_ref(&(1..2)));
    parent.write_to(&dir.path().join("parent.vhdx"));
    let path = dir.path().join("child.avhdx");
    child.write_to(&path);
    let chain = Chain::open(&path).unwrap();
    let mut buf = vec![0u8; 3 * 512];

    chain.read_at(4096 * MIB - 512, &mut buf).unwrap();

    assert!(
        buf[..512].iter().all(|&b| b == 0x22),
        "last sector of chunk 0 from the child"
    );
    assert!(
        buf[512..1024].iter().all(|&b| b == 0x11),
        "first sector of chunk 1 from the parent"
    );
    assert!(
        buf[1024..].iter().all(|&b| b == 0x33),
        "second sector of chunk 1 from the child"
    );
}

// ----- parent discovery -----

#[test]
fn missing_parent_names_the_paths_tried() {
    let pair = write_pair();
    std::fs::remove_file(&pair.parent).unwrap();

    let err = chain_err(Chain::open(&pair.child));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::ParentNotFound { .. })
    ));
    assert_eq!(err.kind(), ErrorKind::ChainBroken);
    assert!(err.to_string().contains("parent.vhdx"), "{err}");
}

#[test]
fn parent_with_another_data_write_guid_is_refused_naming_both_guids_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let parent = parent_image();
    let expected = Uuid::new_v4();
    let child = child_image(expected);
    parent.write_to(&dir.path().join("parent.vhdx"));
    child.write_to(&dir.path().join("child.avhdx"));

    let err = chain_err(Chain::open(&dir.path().join("child.avhdx")));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::LinkageMismatch { expected: e, found, .. })
            if *e == expected && *found == parent.spec.data_write_guid
    ));
    let msg = err.to_string();
    assert!(
        msg.contains(&expected.to_string())
            && msg.contains(&parent.spec.data_write_guid.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("child.avhdx") && msg.contains("parent.vhdx"),
        "{msg}"
    );
}

#[test]
fn parent_matching_parent_linkage2_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let parent = parent_image();
    let mut spec = Spec::dynamic(SIZE, 1 << 20);
    spec.locator = Some(vec![
        ("parent_linkage".into(), guid_braced(Uuid::new_v4())),
        (
            "parent_linkage2".into(),
            guid_braced(parent.spec.data_write_guid).to_uppercase(),
        ),
        ("relative_path".into(), "parent.vhdx".into()),
    ]);
    parent.write_to(&dir.path().join("parent.vhdx"));
    Image::new(spec).write_to(&dir.path().join("child.avhdx"));

    let chain = Chain::open(&dir.path().join("child.avhdx")).unwrap();

    assert_eq!(chain.layers().len(), 2);
}

fn child_with_locator(dir: &Path, parent_dwg: Uuid, entries: &[(&str, &str)]) -> PathBuf {
    let mut spec = Spec::dynamic(SIZE, 1 << 20);
    let mut loc = vec![("parent_linkage".to_owned(), guid_braced(parent_dwg))];
    loc.extend(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    spec.locator = Some(loc);
    let path = dir.join("child.avhdx");
    Image::new(spec).write_to(&path);
    path
}

#[test]
fn stale_relative_path_falls_back_to_the_absolute_paths_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let parent = parent_image();
    parent.write_to(&dir.path().join("parent.vhdx"));
    let child = child_with_locator(
        dir.path(),
        parent.spec.data_write_guid,
        &[
            ("relative_path", r"..\moved\parent.vhdx"),
            ("absolute_win32_path", r"C:\Hyper-V\parent.vhdx"),
        ],
    );

    let chain = Chain::open(&child).unwrap();

    assert_eq!(chain.layers()[1].path(), dir.path().join("parent.vhdx"));
}

#[test]
fn volume_path_file_name_is_tried_in_the_childs_directory() {
    let dir = tempfile::tempdir().unwrap();
    let parent = parent_image();
    parent.write_to(&dir.path().join("parent.vhdx"));
    let child = child_with_locator(
        dir.path(),
        parent.spec.data_write_guid,
        &[(
            "volume_path",
            r"\\?\Volume{0eba351e-0000-0000-0000-000000000000}\VMs\parent.vhdx",
        )],
    );

    assert_eq!(Chain::open(&child).unwrap().layers().len(), 2);
}

#[test]
fn absolute_path_with_backslashes_is_resolved_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let parent = parent_image();
    let parent_path = elsewhere.path().join("parent.vhdx");
    parent.write_to(&parent_path);
    let win = parent_path.to_str().unwrap().replace('/', "\\");
    let child = child_with_locator(
        dir.path(),
        parent.spec.data_write_guid,
        &[("absolute_win32_path", &win)],
    );

    let chain = Chain::open(&child).unwrap();

    assert_eq!(chain.layers()[1].path(), parent_path);
}

#[test]
fn file_naming_itself_as_parent_is_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = Spec::dynamic(SIZE, 1 << 20);
    spec.locator = Some(vec![
        ("parent_linkage".into(), guid_braced(spec.data_write_guid)),
        ("relative_path".into(), "self.avhdx".into()),
    ]);
    let path = dir.path().join("self.avhdx");
    Image::new(spec).write_to(&path);

    let err = chain_err(Chain::open(&path));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::Cycle { .. })
    ));
}

#[test]
fn two_files_naming_each_other_are_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let (ga, gb) = (Uuid::new_v4(), Uuid::new_v4());
    let mut a = Spec::child(SIZE, 1 << 20, gb, "b.avhdx");
    a.data_write_guid = ga;
    let mut b = Spec::child(SIZE, 1 << 20, ga, "a.avhdx");
    b.data_write_guid = gb;
    Image::new(a).write_to(&dir.path().join("a.avhdx"));
    Image::new(b).write_to(&dir.path().join("b.avhdx"));

    let err = chain_err(Chain::open(&dir.path().join("a.avhdx")));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::Cycle { .. })
    ));
}

#[test]
fn chain_of_65_layers_is_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let mut below = Image::new(Spec::dynamic(MIB, 1 << 20));
    below.write_to(&dir.path().join("l0.vhdx"));
    for i in 1..=MAX_CHAIN_LAYERS {
        let name = if i == 1 {
            "l0.vhdx".to_owned()
        } else {
            format!("l{}.avhdx", i - 1)
        };
        let img = Image::new(Spec::child(MIB, 1 << 20, below.spec.data_write_guid, &name));
        img.write_to(&dir.path().join(format!("l{i}.avhdx")));
        below = img;
    }
    let leaf = dir.path().join(format!("l{MAX_CHAIN_LAYERS}.avhdx"));

    let err = chain_err(Chain::open(&leaf));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::TooLong { limit: 64, .. })
    ));
    let ok = Chain::open(&dir.path().join(format!("l{}.avhdx", MAX_CHAIN_LAYERS - 1))).unwrap();
    assert_eq!(ok.layers().len(), MAX_CHAIN_LAYERS);
}

#[test]
fn parent_of_another_virtual_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let parent = Image::new(Spec::dynamic(SIZE + 512, 1 << 20));
    parent.write_to(&dir.path().join("parent.vhdx"));
    child_image(parent.spec.data_write_guid).write_to(&dir.path().join("child.avhdx"));

    let err = chain_err(Chain::open(&dir.path().join("child.avhdx")));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::GeometryMismatch {
            field: "virtual size",
            ..
        })
    ));
}

#[test]
fn parent_of_another_logical_sector_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = Spec::dynamic(SIZE - 3 * 512, 1 << 20);
    spec.logical_sector_size = 4096;
    let parent = Image::new(spec);
    parent.write_to(&dir.path().join("parent.vhdx"));
    let child = Image::new(Spec::child(
        SIZE - 3 * 512,
        1 << 20,
        parent.spec.data_write_guid,
        "parent.vhdx",
    ));
    child.write_to(&dir.path().join("child.avhdx"));

    let err = chain_err(Chain::open(&dir.path().join("child.avhdx")));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::GeometryMismatch {
            field: "logical sector size",
            ..
        })
    ));
}

// ----- from_paths -----

#[test]
fn from_paths_reads_like_open() {
    let pair = write_pair();

    let a = Chain::from_paths(&[pair.child.clone(), pair.parent.clone()]).unwrap();
    let b = Chain::open(&pair.child).unwrap();

    assert_eq!(a.map_range(0, SIZE).unwrap(), b.map_range(0, SIZE).unwrap());
}

#[test]
fn from_paths_without_paths_is_invalid() {
    let err = chain_err(Chain::from_paths(&[]));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::Empty)
    ));
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn from_paths_ending_at_a_differencing_file_is_missing_its_base() {
    let pair = write_pair();

    let err = chain_err(Chain::from_paths(std::slice::from_ref(&pair.child)));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::MissingBase { .. })
    ));
}

#[test]
fn from_paths_with_a_layer_after_the_base_is_refused() {
    let pair = write_pair();
    let other = pair.parent.with_file_name("other.vhdx");
    parent_image().write_to(&other);

    let err = chain_err(Chain::from_paths(&[pair.parent.clone(), other]));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::LayerAfterBase { .. })
    ));
}

#[test]
fn from_paths_with_the_wrong_parent_is_a_linkage_mismatch() {
    let pair = write_pair();
    let other = pair.parent.with_file_name("other.vhdx");
    parent_image().write_to(&other);

    let err = chain_err(Chain::from_paths(&[pair.child.clone(), other]));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::LinkageMismatch { .. })
    ));
}

#[test]
fn from_paths_listing_a_file_twice_is_a_cycle() {
    let pair = write_pair();

    let err = chain_err(Chain::from_paths(&[pair.child.clone(), pair.child.clone()]));

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::Cycle { .. })
    ));
}

// ----- invalid requests -----

#[test]
fn read_past_the_virtual_size_is_invalid() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();
    let mut buf = [0u8; 1024];

    let err = chain.read_at(SIZE - 512, &mut buf).unwrap_err();

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::OutOfRange { .. })
    ));
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn map_range_with_overflowing_length_is_invalid() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();

    let err = chain.map_range(1, u64::MAX).unwrap_err();

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::OutOfRange { .. })
    ));
}

#[test]
fn read_extent_with_a_short_buffer_is_invalid() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();
    let extent = chain.map_range(0, MIB).unwrap()[0];
    let mut buf = vec![0u8; 10];

    let err = chain.read_extent(&extent, &mut buf).unwrap_err();

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::BufferMismatch { .. })
    ));
}

#[test]
fn read_extent_naming_a_missing_layer_is_invalid() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();
    let extent = Extent {
        virtual_offset: 0,
        length: 4,
        source: ExtentSource::Layer {
            layer: 9,
            file_offset: 0,
        },
    };

    let err = chain.read_extent(&extent, &mut [0u8; 4]).unwrap_err();

    assert!(matches!(
        err.detail(),
        ErrorDetail::Chain(ChainError::NoSuchLayer {
            layer: 9,
            layers: 2
        })
    ));
}

#[test]
fn sector_bitmap_of_a_fully_present_block_is_invalid() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();

    let err = chain.leaf().sector_bitmap(4).unwrap_err();

    assert!(matches!(
        err.detail(),
        ErrorDetail::Bat(BatError::NotPartiallyPresent {
            block: 4,
            state: PayloadState::FullyPresent
        })
    ));
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn sector_bitmap_reports_present_sectors_lsb_first() {
    let pair = write_pair();
    let chain = Chain::open(&pair.child).unwrap();

    let bits = chain.leaf().sector_bitmap(5).unwrap();

    let present: Vec<u64> = (0u64..)
        .zip(&bits)
        .filter(|(_, b)| **b)
        .map(|(i, _)| i)
        .collect();
    let expected: Vec<u64> = PRESENT.iter().flat_map(|r| r.clone()).collect();
    assert_eq!(present, expected);
}
