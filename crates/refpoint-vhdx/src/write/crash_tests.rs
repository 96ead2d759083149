//! Crash safety of [`VhdxWriter::write_at`]: a failpoint stops the write at
//! each step of the protocol (module docs of `write`), the writer is dropped
//! as a crashed process would leave the file, and the file is then read by
//! our reader (in-memory replay), reopened by a writer (in-place replay)
//! and, as an independent oracle, repaired by `qemu-img check -r all`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::builder::BuilderKind;
use crate::chain::Chain;
use crate::create::{CreateOptions, create_differencing, create_dynamic};

const MIBU: usize = 1 << 20;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (oracle tool missing?): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// qemu's view after it replays the log on a copy (`check -r all`).
fn qemu_replayed_raw(path: &Path) -> Vec<u8> {
    let copy = path.with_extension("copy.vhdx");
    let raw = path.with_extension("raw");
    std::fs::copy(path, &copy).unwrap();
    run(
        "qemu-img",
        &["check", "-r", "all", "-f", "vhdx", text(&copy)],
    );
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "vhdx",
            "-O",
            "raw",
            text(&copy),
            text(&raw),
        ],
    );
    std::fs::read(&raw).unwrap()
}

fn reader_raw(path: &Path) -> Vec<u8> {
    let chain = Chain::open(path).unwrap();
    let mut buf = vec![0u8; usize::try_from(chain.virtual_size()).unwrap()];
    chain.read_at(0, &mut buf).unwrap();
    buf
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 512).to_le_bytes()[0]) ^ i.to_le_bytes()[0])
        .collect()
}

/// A 16 MiB dynamic disk (1 MiB blocks) with block 0 written.
struct Disk {
    _dir: tempfile::TempDir,
    path: PathBuf,
    expected_before: Vec<u8>,
}

fn dynamic_disk() -> Disk {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leaf.vhdx");
    let opts = CreateOptions {
        block_size: 1 << 20,
        ..CreateOptions::new(16 << 20)
    };
    create_dynamic(&path, &opts).unwrap();
    let first = pattern(1, MIBU);
    VhdxWriter::open(&path)
        .unwrap()
        .write_at(0, &first)
        .unwrap();
    let mut expected_before = vec![0u8; 16 << 20];
    expected_before[..MIBU].copy_from_slice(&first);
    Disk {
        _dir: dir,
        path,
        expected_before,
    }
}

/// Writes 64 KiB at 5 MiB + 4 KiB (a new block) and stops at `failpoint`.
fn crash_at(path: &Path, failpoint: FailPoint, log_position: Option<u32>) -> (u64, Vec<u8>) {
    let mut writer = VhdxWriter::open(path).unwrap();
    if let Some(position) = log_position {
        writer.reposition_log(position);
    }
    writer.set_failpoint(Some(failpoint));
    let offset = (5 << 20) + 4096;
    let data = pattern(9, 64 << 10);
    let err = writer.write_at(offset, &data).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    drop(writer);
    (offset, data)
}

fn with_write(before: &[u8], offset: u64, data: &[u8]) -> Vec<u8> {
    let mut after = before.to_vec();
    let at = usize::try_from(offset).unwrap();
    after[at..at + data.len()].copy_from_slice(data);
    after
}

#[test]
fn crash_after_log_commit_is_replayed_in_memory_by_the_reader() {
    let disk = dynamic_disk();
    let (offset, data) = crash_at(&disk.path, FailPoint::AfterLogFlush, None);

    let file = VhdxFile::open(&disk.path).unwrap();

    assert!(file.log_replayed());
    assert_eq!(
        reader_raw(&disk.path),
        with_write(&disk.expected_before, offset, &data)
    );
}

#[test]
fn crash_after_log_commit_is_replayed_by_qemu() {
    let disk = dynamic_disk();
    let (offset, data) = crash_at(&disk.path, FailPoint::AfterLogFlush, None);

    let raw = qemu_replayed_raw(&disk.path);

    assert_eq!(raw, with_write(&disk.expected_before, offset, &data));
}

#[test]
fn crash_after_log_commit_is_replayed_in_place_by_the_next_writer() {
    let disk = dynamic_disk();
    let (offset, data) = crash_at(&disk.path, FailPoint::AfterLogFlush, None);

    drop(VhdxWriter::open(&disk.path).unwrap());

    let file = VhdxFile::open(&disk.path).unwrap();
    assert!(
        !file.log_replayed(),
        "the log is empty after an in-place replay"
    );
    assert!(file.header_pair().current.log_guid.is_nil());
    assert_eq!(
        reader_raw(&disk.path),
        with_write(&disk.expected_before, offset, &data)
    );
    run("qemu-img", &["check", "-f", "vhdx", text(&disk.path)]);
}

#[test]
fn crash_with_an_entry_wrapping_the_log_end_is_replayed_by_reader_and_qemu() {
    let disk = dynamic_disk();
    // The entry (descriptor sector + BAT sector) starts in the last log sector.
    let (offset, data) = crash_at(&disk.path, FailPoint::AfterLogFlush, Some(255 * 4096));
    let expected = with_write(&disk.expected_before, offset, &data);

    let in_memory = reader_raw(&disk.path);
    let qemu = qemu_replayed_raw(&disk.path);
    drop(VhdxWriter::open(&disk.path).unwrap());

    assert_eq!(in_memory, expected);
    assert_eq!(qemu, expected);
    assert_eq!(reader_raw(&disk.path), expected);
}

#[test]
fn crash_before_the_log_entry_is_written_leaves_the_old_content() {
    let disk = dynamic_disk();
    crash_at(&disk.path, FailPoint::BeforeLogWrite, None);

    let file = VhdxFile::open(&disk.path).unwrap();

    assert!(!file.log_replayed());
    assert_eq!(reader_raw(&disk.path), disk.expected_before);
    run("qemu-img", &["check", "-f", "vhdx", text(&disk.path)]);
}

#[test]
fn crash_before_the_header_names_the_entry_leaves_the_old_content() {
    let disk = dynamic_disk();
    crash_at(&disk.path, FailPoint::BeforeLogCommit, None);

    let file = VhdxFile::open(&disk.path).unwrap();
    drop(VhdxWriter::open(&disk.path).unwrap());

    assert!(
        !file.log_replayed(),
        "an entry the header does not name is ignored"
    );
    assert_eq!(reader_raw(&disk.path), disk.expected_before);
    assert_eq!(qemu_replayed_raw(&disk.path), disk.expected_before);
}

#[test]
fn crashed_writer_refuses_further_writes() {
    let disk = dynamic_disk();
    let mut writer = VhdxWriter::open(&disk.path).unwrap();
    writer.set_failpoint(Some(FailPoint::AfterLogFlush));
    writer.write_at(8 << 20, &[1; 512]).unwrap_err();
    writer.set_failpoint(None);

    let err = writer.write_at(0, &[2; 512]).unwrap_err();

    assert!(matches!(
        err.detail(),
        crate::error::ErrorDetail::Other(e) if e.downcast_ref::<WriteError>() == Some(&WriteError::Poisoned)
    ));
}

#[test]
fn crash_in_a_partial_differencing_write_replays_bitmap_and_bat() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("child.avhdx");
    let opts = CreateOptions {
        block_size: 1 << 20,
        ..CreateOptions::new(8 << 20)
    };
    let base_content = pattern(3, 8 << 20);
    {
        let builder =
            crate::builder::ImageBuilder::create(&parent, &opts, BuilderKind::Dynamic).unwrap();
        for (block, chunk) in (0u64..).zip(base_content.chunks(MIBU)) {
            builder.write_block(block, chunk).unwrap();
        }
        builder.finish().unwrap();
    }
    create_differencing(&child, &parent, Some(1 << 20)).unwrap();
    let (offset, data) = crash_at(&child, FailPoint::AfterLogFlush, None);
    let expected = with_write(&base_content, offset, &data);

    let in_memory = reader_raw(&child);
    drop(VhdxWriter::open(&child).unwrap());
    let file = VhdxFile::open(&child).unwrap();

    assert_eq!(in_memory, expected);
    assert!(!file.log_replayed());
    assert_eq!(
        file.payload_state(5).unwrap().0,
        crate::bat::PayloadState::PartiallyPresent
    );
    assert_eq!(reader_raw(&child), expected);
}

#[test]
fn crash_in_a_bitmap_only_update_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("base.vhdx");
    let child = dir.path().join("child.avhdx");
    create_dynamic(
        &parent,
        &CreateOptions {
            block_size: 1 << 20,
            ..CreateOptions::new(4 << 20)
        },
    )
    .unwrap();
    create_differencing(&child, &parent, Some(1 << 20)).unwrap();
    VhdxWriter::open(&child)
        .unwrap()
        .write_at(512, &[0x61; 512])
        .unwrap();
    let mut writer = VhdxWriter::open(&child).unwrap();
    writer.set_failpoint(Some(FailPoint::AfterLogFlush));

    // Block 0 is already PARTIALLY_PRESENT: only its bitmap changes.
    writer.write_at(4096, &[0x62; 1024]).unwrap_err();
    drop(writer);

    let mut expected = vec![0u8; 4 << 20];
    expected[512..1024].fill(0x61);
    expected[4096..5120].fill(0x62);
    assert!(VhdxFile::open(&child).unwrap().log_replayed());
    assert_eq!(reader_raw(&child), expected);
}
