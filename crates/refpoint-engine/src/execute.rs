//! Executing a plan: the one-pass read → hash → write pipeline, the
//! manifest and `SHA256SUMS`, and the atomic commit.
//!
//! Every output is written front to back by a [`DiskOutput`]: its layout is
//! fixed by the plan (every planned block gets its payload slot before the
//! first byte), so the file's SHA-256, each block digest and the digest
//! sidecar are computed from the buffers while they are in memory, and no
//! output byte is read back. The segment pipeline ([`crate::pipeline`])
//! reads each source byte once.
//!
//! A disk under the tracking fallback is the one exception: which of its
//! blocks the output holds is only known after comparing their digests with
//! the base export's, so a first pass reads and hashes its blocks (nothing
//! written) and the main pass re-reads the blocks that differ. Fallback is
//! the degraded mode for lost tracking; a tracked disk reads each changed
//! byte once.
//!
//! The first error stops dispatch and is returned; the staging directory is
//! then removed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use uuid::Uuid;

use crate::control::{EngineConfig, ExportControl};
use crate::differential::{DiskMode, coalesce};
use crate::digest::to_hex;
use crate::disk_output::{Comparison, Counts, DiskOutput, FinishedDisk};
use crate::error::EngineError;
use crate::identity::guid_upper;
use crate::manifest::{
    BaseExportRecord, DiskRecord, FallbackRecord, FileRecord, MANIFEST_FORMAT, Manifest,
    OUTPUT_KIND_DIFFERENCING, OUTPUT_KIND_DYNAMIC, OutputRecord, ParentRecord, SourceLayerRecord,
    ToolRecord, VirtualSystemRecord, render_checksums,
};
use crate::output::{OutputError, create_dir, write_file_synced};
use crate::pipeline::{Lane, Ordered, Run};
use crate::plan::{
    CHECKSUMS_FILE, DiskPlan, ExportPlan, MANIFEST_FILE, VIRTUAL_HARD_DISKS_DIR,
    VIRTUAL_MACHINES_DIR,
};
use crate::pool::BufferPool;
use crate::restore::RestoreError;
use crate::scheduler::Scheduler;
use crate::source::DataBlock;
use crate::staging::{Staging, sync_dir};

/// Name written into the `Creator` field of exported VHDX files and the manifest.
pub const TOOL_NAME: &str = "refpoint-engine";

/// One exported disk, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedDisk {
    /// Disk `InstanceID`.
    pub instance_id: String,
    /// Final path of the exported VHDX.
    pub path: PathBuf,
    /// File size, bytes.
    pub size: u64,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    /// The file's `DataWriteGuid`.
    pub data_write_guid: Uuid,
    /// Content digest of the virtual disk, lower-case hex.
    pub content_digest: String,
    /// Blocks stored in the file (non-zero data).
    pub blocks_stored: u64,
    /// Blocks read and found all-zero (not stored).
    pub blocks_zero: u64,
    /// Blocks neither read nor written: the chain maps them to zero (full
    /// export), or they are unchanged since the base (differential).
    pub blocks_absent: u64,
    /// Fallback only: blocks read whose digest equals the base's (not stored).
    pub blocks_unchanged: u64,
    /// Differencing output: the base export's file that is its parent.
    pub parent: Option<PathBuf>,
    /// Differencing output made by the tracking fallback: why tracking was lost.
    pub fallback: Option<String>,
    /// Dynamic output inside a differential export: why the disk was exported full.
    pub full_reason: Option<String>,
}

/// Result of a committed export, with its costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    /// `<ExportDirectory>/<ElementName>`.
    pub vm_folder: PathBuf,
    /// The settings file (`ExportedConfigFilePath`).
    pub config_file: PathBuf,
    /// `refpoint-export.json`.
    pub manifest_file: PathBuf,
    /// `SHA256SUMS`.
    pub checksums_file: PathBuf,
    /// Per disk, in request order (`ExportedDisks[]`).
    pub disks: Vec<ExportedDisk>,
    /// Source bytes read.
    pub bytes_read: u64,
    /// Bytes handed to write calls: stored payload blocks plus the settings,
    /// manifest and `SHA256SUMS` files (VHDX headers and BAT excluded).
    pub bytes_written: u64,
    /// Blocks stored, all disks.
    pub blocks_stored: u64,
    /// Blocks read and found all-zero, all disks.
    pub blocks_zero: u64,
    /// Blocks neither read nor written, all disks.
    pub blocks_absent: u64,
    /// Blocks read by a tracking fallback and found unchanged, all disks.
    pub blocks_unchanged: u64,
    /// `"full"`, `"differential"` or `"synthetic-full"` (the manifest's `export_type`).
    pub export_type: String,
    /// One line per disk exported by the tracking fallback (naming the disk
    /// and why tracking was lost): the job's warnings (CompletedWithWarnings).
    pub warnings: Vec<String>,
    /// Wall time of [`execute`].
    pub elapsed: Duration,
    /// Stale staging directories removed before starting.
    pub stale_staging_removed: Vec<PathBuf>,
}

/// Runs `plan`: writes the export into a staging directory, fsyncs it and
/// renames it into `<ExportDirectory>/<ElementName>`.
///
/// Sources are only read. On any error or interruption the staging
/// directory is removed and no target folder exists.
///
/// # Errors
/// - `Interrupted`: [`ExportControl::checkpoint`] returned an error.
/// - `OutOfMemory`: the buffer pool cannot hold or allocate a block.
/// - `InUse` / `TargetExists`: another export writes the same VM folder, or it exists.
/// - `Failed` / `AccessDenied`: reading a source or writing an output failed
///   (the message names the file, block and offset).
/// - `InvalidParameter`: the thread pool cannot be built.
pub fn execute(
    plan: ExportPlan,
    control: &dyn ExportControl,
    cfg: &EngineConfig,
) -> Result<ExportOutcome, EngineError> {
    execute_on(plan, control, &Scheduler::new(cfg)?)
}

/// As [`execute`], on a shared [`Scheduler`] (its workers and buffer budget
/// are shared with every other export running on it).
///
/// # Errors
/// As [`execute`].
pub fn execute_on(
    plan: ExportPlan,
    control: &dyn ExportControl,
    scheduler: &Scheduler,
) -> Result<ExportOutcome, EngineError> {
    let started = Instant::now();
    let max_block = plan
        .disks
        .iter()
        .map(|d| d.geometry.block_size)
        .max()
        .unwrap_or(1024 * 1024);
    let stop = AtomicBool::new(false);
    let res = scheduler.resources(u64::from(max_block), &stop)?;
    control.checkpoint()?;
    let staging = Staging::begin(&plan.export_directory, &plan.element_name, plan.job_id)?;
    tracing::info!(
        target = %plan.target_folder().display(),
        disks = plan.disks.len(),
        bytes_to_read = plan.bytes_to_read(),
        threads = scheduler.threads(),
        budget = scheduler.budget_bytes(),
        segment_len = res.segment_len,
        "export started"
    );
    let written = write_export(
        &plan,
        staging.vm_folder(),
        &plan.target_folder(),
        control,
        &res,
    )?;
    control.checkpoint()?;
    let stale_staging_removed = staging.removed_stale().to_vec();
    let vm_folder = staging.commit()?;
    let outcome = written.into_outcome(&plan, vm_folder, started.elapsed(), stale_staging_removed);
    tracing::info!(
        target = %outcome.vm_folder.display(),
        bytes_read = outcome.bytes_read,
        blocks_stored = outcome.blocks_stored,
        elapsed_ms = outcome.elapsed.as_millis(),
        "export committed"
    );
    Ok(outcome)
}

/// What [`write_export`] produced (relative paths, digests, counters).
pub(crate) struct Written {
    config: FileRecord,
    disks: Vec<(DiskRecord, Counts)>,
    bytes_read: u64,
    bytes_written: u64,
}

impl Written {
    pub(crate) fn into_outcome(
        self,
        plan: &ExportPlan,
        vm_folder: PathBuf,
        elapsed: Duration,
        stale_staging_removed: Vec<PathBuf>,
    ) -> ExportOutcome {
        let mut outcome = ExportOutcome {
            export_type: plan.export_type.to_owned(),
            warnings: Vec::new(),
            blocks_unchanged: 0,
            config_file: vm_folder.join(&self.config.path),
            manifest_file: vm_folder.join(MANIFEST_FILE),
            checksums_file: vm_folder.join(CHECKSUMS_FILE),
            disks: Vec::with_capacity(self.disks.len()),
            bytes_read: self.bytes_read,
            bytes_written: self.bytes_written,
            blocks_stored: 0,
            blocks_zero: 0,
            blocks_absent: 0,
            elapsed,
            stale_staging_removed,
            vm_folder,
        };
        for ((record, counts), plan) in self.disks.into_iter().zip(&plan.disks) {
            let Counts {
                stored,
                zero,
                unchanged,
                ..
            } = counts;
            let absent = plan.block_count().saturating_sub(plan.data_block_count());
            outcome.blocks_stored += stored;
            outcome.blocks_zero += zero;
            outcome.blocks_absent += absent;
            outcome.blocks_unchanged += unchanged;
            if let Some(reason) = plan.fallback_reason() {
                outcome.warnings.push(format!(
                    "disk {}: change tracking lost ({reason}); fell back to comparing every block with the base export's block digests: {} blocks differ and were exported",
                    plan.instance_id,
                    stored + zero
                ));
            }
            outcome.disks.push(ExportedDisk {
                blocks_unchanged: unchanged,
                parent: plan.parent_path().map(Path::to_path_buf),
                fallback: plan.fallback_reason().map(str::to_owned),
                full_reason: plan.full_reason().map(str::to_owned),
                instance_id: record.instance_id,
                path: outcome.vm_folder.join(&record.output.path),
                size: record.output.size,
                sha256: record.output.sha256,
                data_write_guid: plan.output_data_write_guid,
                content_digest: record.content_digest,
                blocks_stored: stored,
                blocks_zero: zero,
                blocks_absent: absent,
            });
        }
        outcome
    }
}

/// The shared resources of a run: the worker pool, the buffer budget, the
/// segment length of its buffers, and the flag that stops it (set by its
/// first error; a collection's members share one).
pub(crate) struct Resources<'r> {
    pub(crate) workers: &'r rayon::ThreadPool,
    pub(crate) buffers: &'r BufferPool,
    pub(crate) segment_len: u64,
    pub(crate) stop: &'r AtomicBool,
}

/// Writes the whole VM folder under `vm_folder` (the staging copy, to be
/// renamed to `final_folder`), every file fsynced, and its two
/// sub-directories fsynced.
pub(crate) fn write_export(
    plan: &ExportPlan,
    vm_folder: &Path,
    final_folder: &Path,
    control: &dyn ExportControl,
    res: &Resources<'_>,
) -> Result<Written, EngineError> {
    let machines = vm_folder.join(VIRTUAL_MACHINES_DIR);
    let hard_disks = vm_folder.join(VIRTUAL_HARD_DISKS_DIR);
    create_dir(&machines)?;
    create_dir(&hard_disks)?;

    let config_path = plan.config_relative_path();
    let (config_digest, config_size) = write_file_synced(
        &vm_folder.join(&config_path),
        plan.settings_xml.as_bytes(),
        "write settings file",
    )?;
    let config = FileRecord {
        path: config_path,
        size: config_size,
        sha256: to_hex(&config_digest),
    };

    control.set_total(plan.bytes_to_read());
    let bytes_read = AtomicU64::new(0);
    let run = Run {
        control,
        workers: res.workers,
        buffers: res.buffers,
        bytes_read: &bytes_read,
        segment_len: res.segment_len,
        stop: res.stop,
    };
    let (blocks, unchanged) = fallback_pass(plan, &run)?;

    let mut sinks = Vec::with_capacity(plan.disks.len());
    let mut lanes = Vec::with_capacity(plan.disks.len());
    for (disk, blocks) in plan.disks.iter().zip(&blocks) {
        let planned = blocks.iter().map(|b| b.index).collect();
        let output = DiskOutput::create(disk, planned, vm_folder, final_folder)?;
        sinks.push(Ordered::new(output));
        lanes.push(Lane {
            disk,
            blocks,
            // A fallback disk's progress was counted by its first pass.
            progress: disk.fallback_reason().is_none(),
        });
    }
    run.execute(&lanes, &sinks)?;
    let finished = res.workers.install(|| {
        sinks
            .into_par_iter()
            .map(|s| s.into_inner().finish())
            .collect::<Result<Vec<FinishedDisk>, EngineError>>()
    })?;

    let mut disks = Vec::with_capacity(plan.disks.len());
    let mut bytes_written = config_size;
    for (((disk, mut done), unchanged), blocks) in
        plan.disks.iter().zip(finished).zip(unchanged).zip(&blocks)
    {
        done.counts.unchanged = unchanged;
        bytes_written += done.counts.stored_bytes + done.digests_size;
        if let Some(expected) = disk.expected_content
            && done.content_digest != expected
        {
            return Err(RestoreError::ContentDigestMismatch {
                disk: disk.instance_id.clone(),
                expected: to_hex(&expected),
                actual: to_hex(&done.content_digest),
            }
            .into());
        }
        let counts = done.counts;
        disks.push((disk_record(disk, blocks, &done), counts));
    }

    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_owned(),
        tool: ToolRecord {
            name: TOOL_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        job_id: guid_upper(plan.job_id),
        export_type: plan.export_type.to_owned(),
        reference_point: plan.reference_point.clone(),
        base: plan.base.as_ref().map(|b| b.identity.clone()),
        virtual_system: VirtualSystemRecord {
            name: guid_upper(plan.vm_name),
            element_name: plan.element_name.clone(),
        },
        config: config.clone(),
        disks: disks.iter().map(|(r, _)| r.clone()).collect(),
        base_export: plan.base.as_ref().map(|b| BaseExportRecord {
            vm_folder: b.export.folder.to_string_lossy().into_owned(),
            manifest_sha256: to_hex(&b.export.manifest_sha256),
        }),
        removed_disks: plan
            .base
            .as_ref()
            .map(|b| b.removed_disks.clone())
            .unwrap_or_default(),
        restored_from: plan.restored_from.clone(),
    };
    let manifest_path = vm_folder.join(MANIFEST_FILE);
    let manifest_text = manifest.to_json().map_err(|cause| OutputError::Manifest {
        path: manifest_path.clone(),
        cause,
    })?;
    let (manifest_digest, manifest_size) =
        write_file_synced(&manifest_path, manifest_text.as_bytes(), "write manifest")?;

    let mut sums = vec![
        (config.path.clone(), config.sha256.clone()),
        (MANIFEST_FILE.to_owned(), to_hex(&manifest_digest)),
    ];
    for d in &manifest.disks {
        sums.push((d.output.path.clone(), d.output.sha256.clone()));
        if let Some(digests) = &d.digests {
            sums.push((digests.path.clone(), digests.sha256.clone()));
        }
    }
    let sums_text = render_checksums(&sums);
    let (_, sums_size) = write_file_synced(
        &vm_folder.join(CHECKSUMS_FILE),
        sums_text.as_bytes(),
        "write checksums",
    )?;
    sync_dir(&machines)?;
    sync_dir(&hard_disks)?;

    Ok(Written {
        config,
        disks,
        bytes_read: bytes_read.into_inner(),
        bytes_written: bytes_written + manifest_size + sums_size,
    })
}

/// Per disk, the blocks its output holds, and how many blocks the tracking
/// fallback found unchanged.
type OutputBlocks<'a> = (Vec<Cow<'a, [DataBlock]>>, Vec<u64>);

/// The tracking fallback's first pass: for every disk under the fallback,
/// reads and hashes its planned blocks and keeps those whose digest differs
/// from the base export's. Returns the blocks each disk's output holds (the
/// plan's own list for every other disk) and, per disk, how many were found
/// unchanged.
fn fallback_pass<'a>(
    plan: &'a ExportPlan,
    run: &Run<'_, '_>,
) -> Result<OutputBlocks<'a>, EngineError> {
    let mut blocks: Vec<Cow<'a, [DataBlock]>> = plan
        .disks
        .iter()
        .map(|d| Cow::Borrowed(d.blocks.as_slice()))
        .collect();
    let mut unchanged = vec![0u64; plan.disks.len()];
    let mut fallback = Vec::new();
    let mut lanes = Vec::new();
    let mut sinks = Vec::new();
    for (i, disk) in plan.disks.iter().enumerate() {
        if let (DiskMode::Fallback { .. }, Some(parent)) = (&disk.mode, disk.mode.parent()) {
            fallback.push((i, disk));
            lanes.push(Lane {
                disk,
                blocks: &disk.blocks,
                progress: true,
            });
            sinks.push(Ordered::new(Comparison::new(disk, parent)?));
        }
    }
    if fallback.is_empty() {
        return Ok((blocks, unchanged));
    }
    run.execute(&lanes, &sinks)?;
    for ((i, disk), sink) in fallback.into_iter().zip(sinks) {
        let compared = sink.into_inner();
        if let (Some(slot), Some(count)) = (blocks.get_mut(i), unchanged.get_mut(i)) {
            *slot = compared
                .differing
                .iter()
                .filter_map(|p| disk.blocks.get(*p).cloned())
                .collect();
            *count = compared.unchanged;
        }
    }
    Ok((blocks, unchanged))
}

/// The manifest record of `disk`, whose output holds `blocks`.
fn disk_record(disk: &DiskPlan, blocks: &[DataBlock], done: &FinishedDisk) -> DiskRecord {
    let g = &disk.geometry;
    let bs = u64::from(g.block_size);
    let counts = done.counts;
    let (kind, parent) = match disk.mode.parent() {
        None => (OUTPUT_KIND_DYNAMIC, None),
        Some(parent) => (
            OUTPUT_KIND_DIFFERENCING,
            Some(ParentRecord {
                path: parent.path.to_string_lossy().into_owned(),
                relative_path: done.parent_relative_path.clone().unwrap_or_default(),
                data_write_guid: guid_upper(parent.data_write_guid),
                content_digest: to_hex(&parent.content_digest),
            }),
        ),
    };
    let changed: Vec<(u64, u64)> = match &disk.mode {
        DiskMode::Full { .. } => disk.allocated.clone(),
        DiskMode::Tracked { ranges, .. } => ranges.clone(),
        DiskMode::Fallback { .. } => coalesce(
            blocks
                .iter()
                .map(|b| (b.index * bs, g.block_len(b.index)))
                .collect(),
        ),
    };
    let fallback = match &disk.mode {
        DiskMode::Fallback { reason, .. } => Some(FallbackRecord {
            reason: reason.clone(),
            blocks_compared: disk.data_block_count(),
            blocks_differing: counts.stored + counts.zero,
        }),
        _ => None,
    };
    DiskRecord {
        instance_id: disk.instance_id.clone(),
        virtual_disk_id: guid_upper(g.virtual_disk_id),
        virtual_size: g.virtual_size,
        block_size: g.block_size,
        logical_sector_size: g.logical_sector_size,
        physical_sector_size: g.physical_sector_size,
        source_chain: disk
            .chain_paths
            .iter()
            .zip(&disk.chain_guids)
            .map(|(path, guid)| SourceLayerRecord {
                path: path.to_string_lossy().into_owned(),
                data_write_guid: guid_upper(*guid),
            })
            .collect(),
        output: OutputRecord {
            path: disk.output_relative_path(),
            size: done.size,
            sha256: to_hex(&done.sha256),
            data_write_guid: guid_upper(disk.output_data_write_guid),
            kind: kind.to_owned(),
        },
        changed_ranges: changed.iter().map(|(o, l)| [*o, *l]).collect(),
        content_digest: to_hex(&done.content_digest),
        digests: Some(FileRecord {
            path: disk.digests_relative_path(),
            size: done.digests_size,
            sha256: to_hex(&done.content_digest),
        }),
        block_digests: Vec::new(),
        parent,
        fallback,
        full_reason: disk.full_reason().map(str::to_owned),
    }
}
