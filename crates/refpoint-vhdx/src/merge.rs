//! Merging a differencing layer into its child: the VHDX primitive of
//! `RemoveAssociatedData` and of reclaiming frozen layers (the policy —
//! which layers, the change-tracking journal — lives in `refpoint-core`).
//!
//! Given a chain `child → layer → parent`, [`merge_into_child`] copies into
//! `child` every sector that `layer` defines and `child` does not (data,
//! and zeros for the layer's ZERO/UNMAPPED ranges), then re-links `child`
//! to `parent`. `child` reads the same virtual disk before, during and
//! after: a sector copied into it holds the bytes it used to read through
//! `layer`. Afterwards `layer` is referenced by nothing in this chain and
//! can be deleted by the caller.
//!
//! Crash safety (a kill at any point): the copy goes through metadata
//! transactions (`transaction.rs`: payload first, then one VHDX log entry
//! per batch of blocks), each content-neutral; the re-link is one more
//! transaction rewriting the parent locator item. Until it commits the
//! child links to `layer`, after it to `parent` — both files still exist,
//! so the chain opens and reads the same at every instant. Running the
//! merge again after a crash finishes it (copied sectors are not copied
//! twice; an already re-linked child is reported as such).
//!
//! The child keeps its DataWriteGuid (its own children link to it): no
//! reader of the child's virtual disk can observe the merge, which is when
//! MS-VHDX §2.2.2 allows keeping it. Hence no `parent_linkage2` is needed
//! either (footnote <12> covers a parent whose DataWriteGuid changes). The
//! parent is opened read-only and never modified.

pub mod coverage;
mod relink;
mod transaction;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{ErrorKind, Result, VhdxError};
use crate::file::VhdxFile;
use crate::format::{
    BatEntry, SECTOR_BITMAP_BLOCK_SIZE, payload_bat_index, payload_state, sector_bitmap_bat_index,
    sector_bitmap_state,
};
use crate::log_writer::LogWriteError;
use coverage::{Defined, Definition};
use transaction::{MAX_SECTORS_PER_TRANSACTION, Sector, Target};

/// Bits (logical sectors) described by one 4 KiB sector bitmap sector.
const BITS_PER_SECTOR: u64 = 4096 * 8;
/// Largest piece of payload copied at once, bytes.
const COPY_BUFFER: u64 = 4 * 1024 * 1024;

/// A merge request the primitive refuses, or a rule it would break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The layer has no parent: merging a base into its child would turn
    /// the child into a base (not supported).
    #[error("{} has no parent: a base layer cannot be merged into its child", .layer.display())]
    LayerIsBase {
        /// The layer.
        layer: PathBuf,
    },
    /// The child links neither to the layer nor to the layer's parent
    /// (MS-VHDX §2.6.2.6.3 `parent_linkage`).
    #[error("{} is not a child of {}: its parent_linkage is {{{found}}}, the layer's DataWriteGuid is {{{layer_guid}}}", .child.display(), .layer.display())]
    NotLinked {
        /// The child.
        child: PathBuf,
        /// The layer.
        layer: PathBuf,
        /// The child's `parent_linkage` (nil if it has no parent).
        found: Uuid,
        /// The layer's DataWriteGuid.
        layer_guid: Uuid,
    },
    /// The layer's `parent_linkage` does not accept the given parent.
    #[error("{} is not the parent of {}: its DataWriteGuid {{{found}}} is not the layer's parent_linkage", .parent.display(), .layer.display())]
    ParentMismatch {
        /// The layer.
        layer: PathBuf,
        /// The given parent.
        parent: PathBuf,
        /// The parent's DataWriteGuid.
        found: Uuid,
    },
    /// Virtual size and logical sector size must agree (MS-VHDX §2.6.2.2, §2.6.2.4).
    #[error("{} and {} differ in {field}: {child_value} vs {layer_value}", .child.display(), .layer.display())]
    GeometryMismatch {
        /// The child.
        child: PathBuf,
        /// The layer.
        layer: PathBuf,
        /// `"virtual size"` or `"logical sector size"`.
        field: &'static str,
        /// The child's value, bytes.
        child_value: u64,
        /// The layer's value, bytes.
        layer_value: u64,
    },
    /// Metadata changes go through the log (§2.3); the child has none.
    #[error(
        "the child has no log (LogLength 0); its metadata cannot be updated safely (MS-VHDX 2.3)"
    )]
    NoLog,
    /// The child's log was not empty when the merge opened it.
    #[error("the child's log is not empty after replay")]
    DirtyLog,
    /// The child has no parent locator item to rewrite.
    #[error("the child has no parent locator metadata item (MS-VHDX 2.6.2.6)")]
    NoLocator,
    /// The new parent locator does not fit in the metadata region.
    #[error(
        "a parent locator of {length} bytes does not fit in the metadata region (MS-VHDX 2.6.1)"
    )]
    LocatorTooLarge {
        /// Item length, bytes.
        length: usize,
    },
    /// A locator stores UTF-16 paths; this path is not Unicode.
    #[error("path {} is not valid Unicode and cannot be stored in a parent locator", .path.display())]
    PathNotUnicode {
        /// The path.
        path: PathBuf,
    },
    /// Another process (or writer) holds the child.
    #[error("the child is locked by another writer")]
    Locked,
    /// A file offset would overflow 64 bits.
    #[error("file offset overflow allocating at {frontier:#x}")]
    FileTooLarge {
        /// Allocation frontier, bytes.
        frontier: u64,
    },
    /// A header sequence number would overflow (§2.2.2).
    #[error("header SequenceNumber overflow")]
    SequenceOverflow,
    /// A log rule (§2.3).
    #[error(transparent)]
    Log(#[from] LogWriteError),
}

impl MergeError {
    fn kind(&self) -> ErrorKind {
        match self {
            MergeError::NotLinked { .. }
            | MergeError::ParentMismatch { .. }
            | MergeError::GeometryMismatch { .. } => ErrorKind::ChainBroken,
            MergeError::PathNotUnicode { .. } => ErrorKind::InvalidArgument,
            MergeError::Locked | MergeError::DirtyLog => ErrorKind::Io,
            MergeError::Log(e) => e.kind(),
            MergeError::LayerIsBase { .. }
            | MergeError::NoLog
            | MergeError::NoLocator
            | MergeError::LocatorTooLarge { .. }
            | MergeError::FileTooLarge { .. }
            | MergeError::SequenceOverflow => ErrorKind::Unsupported,
        }
    }
}

/// Wraps a merge rule into the crate-boundary error.
pub(crate) fn fail(e: MergeError) -> VhdxError {
    VhdxError::other(e.kind(), e)
}

/// Tuning of a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeOptions {
    /// Most child payload blocks changed per metadata transaction (≥ 1);
    /// fewer means more, smaller commits. A transaction is also closed
    /// before it would exceed the log entry budget.
    pub blocks_per_transaction: usize,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            blocks_per_transaction: 64,
        }
    }
}

/// A durable step of a merge, reported to the caller's progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStep {
    /// The files are open and checked; `blocks` child blocks will change.
    Planned {
        /// Child payload blocks that receive sectors.
        blocks: u64,
    },
    /// A copy transaction committed; `blocks_done` of the planned blocks are in.
    Copied {
        /// Blocks committed so far.
        blocks_done: u64,
    },
    /// The child now links to the layer's parent.
    Relinked,
}

/// What a merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Logical sectors that received the layer's data.
    pub sectors_copied: u64,
    /// Logical sectors made to read zeros (the layer's ZERO/UNMAPPED ranges).
    pub sectors_zeroed: u64,
    /// Bytes of payload copied from the layer.
    pub bytes_copied: u64,
    /// Payload blocks newly allocated in the child.
    pub blocks_allocated: u64,
    /// Metadata transactions committed (copy batches and the re-link).
    pub transactions: u64,
    /// The child already linked to the layer's parent: an interrupted merge
    /// had finished; nothing was done.
    pub already_relinked: bool,
}

/// Merges `layer` into its child `child` and re-links `child` to
/// `layer_parent` (the layer's parent, given by path so the locator can
/// name it). See the module docs; [`merge_into_child_with`] for options.
///
/// # Errors
/// As [`merge_into_child_with`].
pub fn merge_into_child(child: &Path, layer: &Path, layer_parent: &Path) -> Result<MergeReport> {
    merge_into_child_with(
        child,
        layer,
        layer_parent,
        &MergeOptions::default(),
        &mut |_| {},
    )
}

/// [`merge_into_child`] with options and a callback told each durable step.
///
/// A child that already links to `layer_parent` (and not to `layer`) is
/// taken for one whose merge finished before an interruption: nothing is
/// done and [`MergeReport::already_relinked`] is set. (A DataWriteGuid link
/// cannot tell it from any other child of `layer_parent`; the caller names
/// the child it merged into.)
///
/// # Errors
/// `Unsupported` ([`MergeError::LayerIsBase`], [`MergeError::NoLog`],
/// [`MergeError::LocatorTooLarge`]); `ChainBroken`
/// ([`MergeError::NotLinked`], [`MergeError::ParentMismatch`],
/// [`MergeError::GeometryMismatch`]); `Io` ([`MergeError::Locked`], I/O
/// failures); every error of [`VhdxFile::open`] for the three files. After
/// an error the child still reads the same; run the merge again to finish.
pub fn merge_into_child_with(
    child: &Path,
    layer: &Path,
    layer_parent: &Path,
    options: &MergeOptions,
    progress: &mut dyn FnMut(MergeStep),
) -> Result<MergeReport> {
    merge(child, layer, layer_parent, options, progress)
        .map_err(|e| e.with_operation("merge into child"))
}

fn merge(
    child: &Path,
    layer: &Path,
    layer_parent: &Path,
    options: &MergeOptions,
    progress: &mut dyn FnMut(MergeStep),
) -> Result<MergeReport> {
    let layer_view = VhdxFile::open(layer)?;
    let parent_view = VhdxFile::open(layer_parent)?;
    let layer_locator = layer_view
        .parent_locator()
        .filter(|_| layer_view.geometry().has_parent)
        .ok_or_else(|| {
            fail(MergeError::LayerIsBase {
                layer: layer.to_path_buf(),
            })
        })?;
    if !layer_locator.accepts(parent_view.data_write_guid()) {
        return Err(fail(MergeError::ParentMismatch {
            layer: layer.to_path_buf(),
            parent: layer_parent.to_path_buf(),
            found: parent_view.data_write_guid(),
        }));
    }
    // Replays a dirty log of the child in place (e.g. of a merge killed
    // mid-transaction) with the writer's own recovery, then releases it.
    drop(crate::write::VhdxWriter::open(child)?);
    let mut target = Target::open(child).map_err(|e| e.with_path(child))?;
    let linkage = target
        .view()
        .parent_locator()
        .filter(|_| target.geometry().has_parent)
        .map(|l| {
            (
                l.accepts(layer_view.data_write_guid()),
                l.accepts(parent_view.data_write_guid()),
                l.parent_linkage(),
            )
        });
    match linkage {
        Some((true, _, _)) => {}
        Some((false, true, _)) => {
            return Ok(MergeReport {
                already_relinked: true,
                ..MergeReport::default()
            });
        }
        other => {
            return Err(fail(MergeError::NotLinked {
                child: child.to_path_buf(),
                layer: layer.to_path_buf(),
                found: other.map_or(Uuid::nil(), |(_, _, g)| g),
                layer_guid: layer_view.data_write_guid(),
            }));
        }
    }
    check_geometry(&target, &layer_view)?;
    check_geometry_pair(layer, &layer_view, layer_parent, &parent_view)?;

    let fills = plan_fills(target.view(), &layer_view)?;
    let mut report = MergeReport::default();
    copy(
        &mut target,
        &layer_view,
        &fills,
        options,
        progress,
        &mut report,
    )
    .map_err(|e| e.with_path(child))?;
    relink::relink(&mut target, layer_parent, parent_view.data_write_guid())
        .map_err(|e| e.with_path(child))?;
    report.transactions += 1;
    progress(MergeStep::Relinked);
    Ok(report)
}

fn check_geometry(target: &Target, layer: &VhdxFile) -> Result<()> {
    check_geometry_pair(target.path(), target.view(), layer.path(), layer)
}

fn check_geometry_pair(child: &Path, c: &VhdxFile, layer: &Path, l: &VhdxFile) -> Result<()> {
    let (cg, lg) = (c.geometry(), l.geometry());
    let mismatch = if cg.virtual_size != lg.virtual_size {
        Some(("virtual size", cg.virtual_size, lg.virtual_size))
    } else if cg.logical_sector_size != lg.logical_sector_size {
        Some((
            "logical sector size",
            u64::from(cg.logical_sector_size),
            u64::from(lg.logical_sector_size),
        ))
    } else {
        None
    };
    match mismatch {
        Some((field, child_value, layer_value)) => Err(fail(MergeError::GeometryMismatch {
            child: child.to_path_buf(),
            layer: layer.to_path_buf(),
            field,
            child_value,
            layer_value,
        })),
        None => Ok(()),
    }
}

/// The ranges the layer defines where the child defers to its parent:
/// what the child must receive. Ascending, non-overlapping.
fn plan_fills(child: &VhdxFile, layer: &VhdxFile) -> Result<Vec<Defined>> {
    let size = child.geometry().virtual_size;
    // Complement of the child's own definitions: where it reads its parent.
    let mut deferred: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    for d in coverage::defined(child)? {
        if d.offset > pos {
            deferred.push((pos, d.offset));
        }
        pos = pos.max(d.end());
    }
    if pos < size {
        deferred.push((pos, size));
    }
    let mut fills = Vec::new();
    let mut gaps = deferred.iter().peekable();
    for d in coverage::defined(layer)? {
        while let Some(&&(_, gap_end)) = gaps.peek() {
            if gap_end <= d.offset {
                gaps.next();
            } else {
                break;
            }
        }
        for &(gap_start, gap_end) in gaps.clone() {
            if gap_start >= d.end() {
                break;
            }
            let start = gap_start.max(d.offset);
            let end = gap_end.min(d.end());
            if start < end {
                let definition = match d.definition {
                    Definition::Data { file_offset } => Definition::Data {
                        file_offset: file_offset + (start - d.offset),
                    },
                    Definition::Zero => Definition::Zero,
                };
                fills.push(Defined {
                    offset: start,
                    length: end - start,
                    definition,
                });
            }
        }
    }
    Ok(fills)
}

/// Changes of one copy transaction.
#[derive(Default)]
struct Batch {
    /// BAT index → new raw entry.
    bat: BTreeMap<u64, u64>,
    /// Metadata sector images by file offset.
    sectors: BTreeMap<u64, Sector>,
    /// Sector bitmap blocks allocated in this batch, by chunk (file offset).
    new_bitmaps: BTreeMap<u64, u64>,
    /// Blocks in this batch.
    blocks: usize,
}

fn copy(
    target: &mut Target,
    layer: &VhdxFile,
    fills: &[Defined],
    options: &MergeOptions,
    progress: &mut dyn FnMut(MergeStep),
    report: &mut MergeReport,
) -> Result<()> {
    let g = *target.geometry();
    let bs = u64::from(g.block_size);
    // Split fills at the child's block boundaries, grouped by block.
    let mut by_block: BTreeMap<u64, Vec<Defined>> = BTreeMap::new();
    for f in fills {
        let mut pos = f.offset;
        while pos < f.end() {
            let block = pos / bs;
            let end = f.end().min((block + 1).saturating_mul(bs));
            let definition = match f.definition {
                Definition::Data { file_offset } => Definition::Data {
                    file_offset: file_offset + (pos - f.offset),
                },
                Definition::Zero => Definition::Zero,
            };
            by_block.entry(block).or_default().push(Defined {
                offset: pos,
                length: end - pos,
                definition,
            });
            pos = end;
        }
    }
    progress(MergeStep::Planned {
        blocks: u64::try_from(by_block.len()).unwrap_or(u64::MAX),
    });
    let per_transaction = options.blocks_per_transaction.max(1);
    // Worst case of one block: its BAT sector, its chunk's bitmap BAT
    // sector, and every bitmap sector of the block.
    let sectors_per_block = u64::from(g.block_size / g.logical_sector_size.max(1));
    let block_budget =
        usize::try_from(sectors_per_block.div_ceil(BITS_PER_SECTOR) + 2).unwrap_or(usize::MAX);
    let mut buffer = vec![0u8; usize::try_from(COPY_BUFFER.min(bs)).unwrap_or(1 << 20)];
    let mut batch = Batch::default();
    let mut done = 0u64;
    for (&block, parts) in &by_block {
        if batch.blocks >= per_transaction
            || batch.sectors.len().saturating_add(block_budget) > MAX_SECTORS_PER_TRANSACTION
        {
            done += u64::try_from(batch.blocks).unwrap_or(0);
            commit(target, std::mem::take(&mut batch), report)?;
            progress(MergeStep::Copied { blocks_done: done });
        }
        fill_block(target, layer, &mut batch, block, parts, &mut buffer, report)?;
        batch.blocks += 1;
    }
    if batch.blocks > 0 {
        done += u64::try_from(batch.blocks).unwrap_or(0);
        commit(target, batch, report)?;
        progress(MergeStep::Copied { blocks_done: done });
    }
    Ok(())
}

fn commit(target: &mut Target, batch: Batch, report: &mut MergeReport) -> Result<()> {
    let mut sectors = batch.sectors;
    for (&index, &entry) in &batch.bat {
        let (sector_offset, at) = target.bat_sector_of(index);
        let sector = load(target, &mut sectors, sector_offset, false)?;
        if let Some(dst) = sector.get_mut(at..at + 8) {
            dst.copy_from_slice(&entry.to_le_bytes());
        }
    }
    target.commit(sectors, &batch.bat)?;
    report.transactions += 1;
    Ok(())
}

/// The sector image at `offset` in the batch, read from the file (or zeros
/// for a sector of a bitmap block allocated in this batch) on first use.
fn load<'a>(
    target: &Target,
    sectors: &'a mut BTreeMap<u64, Sector>,
    offset: u64,
    fresh: bool,
) -> Result<&'a mut Sector> {
    match sectors.entry(offset) {
        std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
        std::collections::btree_map::Entry::Vacant(e) => {
            let sector = if fresh {
                Box::new([0u8; 4096])
            } else {
                target.read_sector(offset)?
            };
            Ok(e.insert(sector))
        }
    }
}

/// Stages the fills of one child block: payload written now, metadata
/// changes recorded in `batch`.
fn fill_block(
    target: &mut Target,
    layer: &VhdxFile,
    batch: &mut Batch,
    block: u64,
    parts: &[Defined],
    buffer: &mut [u8],
    report: &mut MergeReport,
) -> Result<()> {
    let g = *target.geometry();
    let bs = u64::from(g.block_size);
    let lss = u64::from(g.logical_sector_size.max(1));
    let cr = g.chunk_ratio.max(1);
    let block_start = block * bs;
    let block_bytes = g.virtual_size.saturating_sub(block_start).min(bs);
    let index = payload_bat_index(block, cr);
    let entry = batch
        .bat
        .get(&index)
        .map_or_else(|| target.bat_entry(index), |&e| BatEntry(e));
    let filled: u64 = parts.iter().map(|p| p.length).sum();
    let (offset, fresh) = match entry.state() {
        payload_state::NOT_PRESENT => (target.allocate(bs)?, true),
        payload_state::PARTIALLY_PRESENT => (entry.file_offset(), false),
        // FULLY_PRESENT, ZERO, UNDEFINED, UNMAPPED: the child defines the
        // whole block; plan_fills gave it nothing.
        _ => return Ok(()),
    };
    for part in parts {
        let at = offset + (part.offset - block_start);
        match part.definition {
            Definition::Data { file_offset } => {
                copy_bytes(target, layer, file_offset, at, part.length, buffer)?;
                report.sectors_copied += part.length.div_ceil(lss);
                report.bytes_copied += part.length;
            }
            Definition::Zero => {
                if !fresh {
                    // Sectors of a partial block whose bit is clear may hold
                    // stale bytes; fresh space past the end reads zeros.
                    zero_bytes(target, at, part.length, buffer)?;
                }
                report.sectors_zeroed += part.length.div_ceil(lss);
            }
        }
    }
    if fresh {
        report.blocks_allocated += 1;
    }
    if fresh && filled >= block_bytes {
        batch
            .bat
            .insert(index, BatEntry::new(payload_state::FULLY_PRESENT, offset).0);
        return Ok(());
    }
    let chunk = block / cr;
    let sb = match (
        target.sector_bitmap_offset(chunk),
        batch.new_bitmaps.get(&chunk),
    ) {
        (Some(sb), _) => (sb, false),
        (None, Some(&sb)) => (sb, true),
        (None, None) => {
            let sb = target.allocate(SECTOR_BITMAP_BLOCK_SIZE)?;
            batch.new_bitmaps.insert(chunk, sb);
            batch.bat.insert(
                sector_bitmap_bat_index(chunk, cr),
                BatEntry::new(sector_bitmap_state::PRESENT, sb).0,
            );
            (sb, true)
        }
    };
    let first_bit = (block % cr) * (bs / lss);
    if fresh {
        // A block that was NOT_PRESENT may have stale bits: clear them all.
        set_bits(target, batch, sb, first_bit, bs / lss, false)?;
        batch.bat.insert(
            index,
            BatEntry::new(payload_state::PARTIALLY_PRESENT, offset).0,
        );
    }
    for part in parts {
        let bit = first_bit + (part.offset - block_start) / lss;
        set_bits(target, batch, sb, bit, part.length.div_ceil(lss), true)?;
    }
    Ok(())
}

fn set_bits(
    target: &Target,
    batch: &mut Batch,
    (sb_offset, fresh): (u64, bool),
    first: u64,
    count: u64,
    value: bool,
) -> Result<()> {
    let mut bit = first;
    let end = first.saturating_add(count);
    while bit < end {
        let sector_first_bit = bit / BITS_PER_SECTOR * BITS_PER_SECTOR;
        let stop = end.min(sector_first_bit + BITS_PER_SECTOR);
        let sector = load(
            target,
            &mut batch.sectors,
            sb_offset + sector_first_bit / 8,
            fresh,
        )?;
        for b in bit - sector_first_bit..stop - sector_first_bit {
            if let Some(byte) = usize::try_from(b / 8).ok().and_then(|i| sector.get_mut(i)) {
                let mask = 1u8 << (b % 8);
                if value {
                    *byte |= mask;
                } else {
                    *byte &= !mask;
                }
            }
        }
        bit = stop;
    }
    Ok(())
}

fn copy_bytes(
    target: &mut Target,
    layer: &VhdxFile,
    from: u64,
    to: u64,
    length: u64,
    buffer: &mut [u8],
) -> Result<()> {
    let mut done = 0u64;
    while done < length {
        let n = (length - done).min(u64::try_from(buffer.len()).unwrap_or(u64::MAX));
        let piece = buffer
            .get_mut(..usize::try_from(n).unwrap_or(0))
            .unwrap_or_default();
        layer.read_file_at(from + done, piece)?;
        target.write_payload(to + done, piece)?;
        done += n;
    }
    Ok(())
}

fn zero_bytes(target: &mut Target, to: u64, length: u64, buffer: &mut [u8]) -> Result<()> {
    buffer.fill(0);
    let mut done = 0u64;
    while done < length {
        let n = (length - done).min(u64::try_from(buffer.len()).unwrap_or(u64::MAX));
        let piece = buffer
            .get(..usize::try_from(n).unwrap_or(0))
            .unwrap_or_default();
        target.write_payload(to + done, piece)?;
        done += n;
    }
    Ok(())
}
