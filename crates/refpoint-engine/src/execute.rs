//! Executing a plan: the parallel read → hash → write pipeline, the output
//! files' digests, the manifest and `SHA256SUMS`, and the atomic commit.
//!
//! Pipeline: the calling thread dispatches the data blocks of all disks
//! (interleaved across disks) onto a rayon pool of `EngineConfig.threads`
//! workers. Before each block it calls [`ExportControl::checkpoint`] and
//! takes a buffer from the bounded pool (waiting while all are in use). A
//! worker reads the whole block with positioned reads from the chain layers,
//! detects all-zero content (not stored; the digest is the precomputed zero
//! digest), otherwise hashes it, records the block digest and hands the
//! buffer to the disk's in-order writer. The first error stops dispatch,
//! closes the pool and is returned; the staging directory is then removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use refpoint_vhdx::{BuilderKind, CreateOptions, ImageBuilder, VhdxFile};
use uuid::Uuid;

use crate::control::{EngineConfig, ExportControl, Interrupted};
use crate::differential::{DiskMode, coalesce};
use crate::digest::{
    Sha256Digest, ZeroDigests, content_digest, file_digest, is_zero, sha256, to_hex,
};
use crate::error::EngineError;
use crate::identity::guid_upper;
use crate::manifest::{
    BaseExportRecord, DiskRecord, FallbackRecord, FileRecord, MANIFEST_FORMAT, Manifest,
    OUTPUT_KIND_DIFFERENCING, OUTPUT_KIND_DYNAMIC, OutputRecord, ParentRecord, SourceLayerRecord,
    ToolRecord, VirtualSystemRecord, render_checksums,
};
use crate::output::{
    BlockPayload, DiskWriter, OutputError, create_dir, file_err, write_file_synced,
};
use crate::plan::{
    CHECKSUMS_FILE, DiskPlan, ExportPlan, MANIFEST_FILE, VIRTUAL_HARD_DISKS_DIR,
    VIRTUAL_MACHINES_DIR,
};
use crate::pool::{BufferPool, PooledBuffer};
use crate::request::RequestError;
use crate::restore::RestoreError;
use crate::source::{DataBlock, read_block};
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

/// Per-disk results shared by the workers.
struct DiskStats {
    zeros: ZeroDigests,
    digests: Mutex<Vec<Sha256Digest>>,
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    zero: AtomicU64,
    unchanged: AtomicU64,
}

/// The first error of a run; later ones are dropped.
struct FirstError<'a> {
    error: Mutex<Option<EngineError>>,
    failed: AtomicBool,
    pool: &'a BufferPool,
}

impl FirstError<'_> {
    fn set(&self, err: EngineError) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(err);
        }
        drop(slot);
        self.failed.store(true, Ordering::SeqCst);
        self.pool.close();
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    fn take(self) -> Option<EngineError> {
        self.error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
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
    let started = Instant::now();
    let threads = cfg.effective_threads();
    let workers = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("refpoint-export-{i}"))
        .build()
        .map_err(|e| RequestError::ThreadPool {
            threads,
            reason: e.to_string(),
        })?;
    let max_block = plan
        .disks
        .iter()
        .map(|d| d.geometry.block_size)
        .max()
        .unwrap_or(1024 * 1024);
    let buffers = BufferPool::new(
        cfg.buffer_pool_bytes,
        usize::try_from(max_block).unwrap_or(usize::MAX),
    )?;
    control.checkpoint()?;
    let staging = Staging::begin(&plan.export_directory, &plan.element_name, plan.job_id)?;
    tracing::info!(
        target = %plan.target_folder().display(),
        disks = plan.disks.len(),
        bytes_to_read = plan.bytes_to_read(),
        threads,
        buffers = buffers.capacity(),
        "export started"
    );
    let written = write_export(
        &plan,
        staging.vm_folder(),
        &plan.target_folder(),
        control,
        &workers,
        &buffers,
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

/// Block counters of one disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    stored: u64,
    zero: u64,
    unchanged: u64,
}

/// Writes the whole VM folder under `vm_folder` (the staging copy, to be
/// renamed to `final_folder`), every file fsynced, and its two
/// sub-directories fsynced.
pub(crate) fn write_export(
    plan: &ExportPlan,
    vm_folder: &Path,
    final_folder: &Path,
    control: &dyn ExportControl,
    workers: &rayon::ThreadPool,
    buffers: &BufferPool,
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

    let mut writers = Vec::with_capacity(plan.disks.len());
    let mut stats = Vec::with_capacity(plan.disks.len());
    for disk in &plan.disks {
        writers.push(start_disk(disk, vm_folder, final_folder)?);
        stats.push(DiskStats::new(disk)?);
    }
    control.set_total(plan.bytes_to_read());
    let bytes_read = AtomicU64::new(0);
    run_blocks(
        plan,
        &writers,
        &stats,
        control,
        workers,
        buffers,
        &bytes_read,
    )?;

    let sizes = workers.install(|| {
        writers
            .into_par_iter()
            .map(DiskWriter::finish)
            .collect::<Result<Vec<u64>, OutputError>>()
    })?;
    let outputs: Vec<PathBuf> = plan
        .disks
        .iter()
        .map(|d| vm_folder.join(d.output_relative_path()))
        .collect();
    let file_digests = workers.install(|| {
        outputs
            .par_iter()
            .map(|path| hash_output(path, control, buffers))
            .collect::<Result<Vec<(Sha256Digest, u64)>, EngineError>>()
    })?;

    let mut disks = Vec::with_capacity(plan.disks.len());
    let mut bytes_written = config_size;
    for (((disk, stat), size), (digest, hashed_len)) in
        plan.disks.iter().zip(stats).zip(sizes).zip(file_digests)
    {
        if hashed_len != size {
            tracing::warn!(
                disk = %disk.instance_id,
                finish_size = size,
                hashed_len,
                "output size reported by the builder differs from the file length"
            );
        }
        let counts = Counts {
            stored: stat.stored.into_inner(),
            zero: stat.zero.into_inner(),
            unchanged: stat.unchanged.into_inner(),
        };
        bytes_written += stat.stored_bytes.into_inner();
        let digests = stat
            .digests
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(expected) = disk.expected_content {
            let actual = content_digest(&digests);
            if actual != expected {
                return Err(RestoreError::ContentDigestMismatch {
                    disk: disk.instance_id.clone(),
                    expected: to_hex(&expected),
                    actual: to_hex(&actual),
                }
                .into());
            }
        }
        let output_path = vm_folder.join(disk.output_relative_path());
        let record = disk_record(disk, &digests, hashed_len, &digest, &output_path, counts)?;
        disks.push((record, counts));
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
    sums.extend(
        manifest
            .disks
            .iter()
            .map(|d| (d.output.path.clone(), d.output.sha256.clone())),
    );
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

impl DiskStats {
    /// Digests preset to what blocks that are not read keep: the zero
    /// digest (dynamic output) or the base's digest (differencing output).
    fn new(disk: &DiskPlan) -> Result<DiskStats, EngineError> {
        let g = &disk.geometry;
        let zeros = ZeroDigests::new(g.virtual_size, u64::from(g.block_size));
        let count = usize::try_from(g.block_count()).unwrap_or(usize::MAX);
        let mut digests = Vec::new();
        digests
            .try_reserve_exact(count)
            .map_err(|_| crate::pool::PoolError::Allocation {
                bytes: count.saturating_mul(32),
            })?;
        match disk.mode.parent() {
            Some(parent) => digests.extend(parent.digests.iter().take(count).copied()),
            None => {
                digests.resize(count, zeros.for_len(u64::from(g.block_size)));
                if let Some(last) = digests.last_mut() {
                    *last = zeros.for_len(g.block_len(g.block_count().saturating_sub(1)));
                }
            }
        }
        Ok(DiskStats {
            unchanged: AtomicU64::new(0),
            zeros,
            digests: Mutex::new(digests),
            stored: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            zero: AtomicU64::new(0),
        })
    }
}

/// Creates the output VHDX of `disk` inside `vm_folder` (a differencing
/// output's relative parent path is computed from `final_folder`, where the
/// commit moves it).
fn start_disk<'p>(
    disk: &DiskPlan,
    vm_folder: &Path,
    final_folder: &Path,
) -> Result<DiskWriter<'p>, OutputError> {
    let path = vm_folder.join(disk.output_relative_path());
    let final_path = final_folder.join(disk.output_relative_path());
    let g = &disk.geometry;
    let opts = CreateOptions {
        virtual_size: g.virtual_size,
        block_size: g.block_size,
        logical_sector_size: g.logical_sector_size,
        physical_sector_size: g.physical_sector_size,
        virtual_disk_id: g.virtual_disk_id,
        data_write_guid: Some(disk.output_data_write_guid),
        creator: format!("{TOOL_NAME} {}", env!("CARGO_PKG_VERSION")),
    };
    let kind = match disk.mode.parent() {
        Some(parent) => BuilderKind::Differencing {
            parent_path: parent.path.clone(),
            parent_data_write_guid: parent.data_write_guid,
        },
        None => BuilderKind::Dynamic,
    };
    let builder = ImageBuilder::create_for(&path, &final_path, &opts, kind).map_err(|cause| {
        OutputError::Create {
            disk: disk.instance_id.clone(),
            path: path.clone(),
            cause: Box::new(cause),
        }
    })?;
    Ok(DiskWriter::new(
        &disk.instance_id,
        &path,
        u64::from(g.block_size),
        builder,
    ))
}

/// `(disk, position)` of every data block, interleaved across disks
/// (position 0 of each disk, then position 1, ...).
fn interleaved(disks: &[DiskPlan]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let longest = disks.iter().map(|d| d.blocks.len()).max().unwrap_or(0);
    (0..longest).flat_map(move |pos| {
        disks
            .iter()
            .enumerate()
            .filter(move |(_, d)| pos < d.blocks.len())
            .map(move |(i, _)| (i, pos))
    })
}

/// The block pipeline (see the module docs).
fn run_blocks<'p>(
    plan: &ExportPlan,
    writers: &[DiskWriter<'p>],
    stats: &[DiskStats],
    control: &dyn ExportControl,
    workers: &rayon::ThreadPool,
    buffers: &'p BufferPool,
    bytes_read: &AtomicU64,
) -> Result<(), EngineError> {
    let first_error = FirstError {
        error: Mutex::new(None),
        failed: AtomicBool::new(false),
        pool: buffers,
    };
    let errors = &first_error;
    workers.in_place_scope(|scope| {
        for (d, position) in interleaved(&plan.disks) {
            if errors.failed() {
                break;
            }
            if let Err(stop) = control.checkpoint() {
                errors.set(stop.into());
                break;
            }
            let buffer = match buffers.acquire() {
                Ok(b) => b,
                Err(e) => {
                    errors.set(e.into());
                    break;
                }
            };
            let (Some(disk), Some(writer), Some(stat)) =
                (plan.disks.get(d), writers.get(d), stats.get(d))
            else {
                break;
            };
            let Some(block) = disk.blocks.get(position) else {
                break;
            };
            scope.spawn(move |_| {
                if errors.failed() {
                    return;
                }
                let job = BlockJob {
                    disk,
                    writer,
                    stat,
                    block,
                    position,
                };
                match job.run(buffer, control, bytes_read) {
                    Ok(()) => {}
                    Err(e) => errors.set(e),
                }
            });
        }
    });
    match first_error.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One data block: read, zero-detect or hash, record, hand to the writer.
struct BlockJob<'a, 'p> {
    disk: &'a DiskPlan,
    writer: &'a DiskWriter<'p>,
    stat: &'a DiskStats,
    block: &'a DataBlock,
    position: usize,
}

impl<'p> BlockJob<'_, 'p> {
    fn run(
        self,
        mut buffer: PooledBuffer<'p>,
        control: &dyn ExportControl,
        bytes_read: &AtomicU64,
    ) -> Result<(), EngineError> {
        let bs = u64::from(self.disk.geometry.block_size);
        read_block(
            &self.disk.chain,
            &self.disk.instance_id,
            bs,
            self.block,
            buffer.as_mut_slice(),
        )?;
        let len = usize::try_from(self.block.length).unwrap_or(usize::MAX);
        let data = buffer.as_slice().get(..len).unwrap_or_default();
        let zero = is_zero(data);
        let digest = if zero {
            self.stat.zeros.for_len(self.block.length)
        } else {
            sha256(data)
        };
        {
            let mut digests = self
                .stat
                .digests
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let slot = usize::try_from(self.block.index)
                .ok()
                .and_then(|i| digests.get_mut(i));
            if let Some(slot) = slot {
                *slot = digest;
            }
        }
        let read = self.block.bytes_to_read();
        bytes_read.fetch_add(read, Ordering::Relaxed);
        control.add_progress(read);
        let unchanged = match &self.disk.mode {
            DiskMode::Fallback { parent, .. } => usize::try_from(self.block.index)
                .ok()
                .and_then(|i| parent.digests.get(i))
                .is_some_and(|base| *base == digest),
            DiskMode::Full { .. } | DiskMode::Tracked { .. } => false,
        };
        let payload = if unchanged {
            self.stat.unchanged.fetch_add(1, Ordering::Relaxed);
            BlockPayload::Skip
        } else if zero {
            self.stat.zero.fetch_add(1, Ordering::Relaxed);
            match self.disk.mode {
                DiskMode::Full { .. } => BlockPayload::Skip,
                DiskMode::Tracked { .. } | DiskMode::Fallback { .. } => BlockPayload::Zero,
            }
        } else {
            self.stat.stored.fetch_add(1, Ordering::Relaxed);
            self.stat
                .stored_bytes
                .fetch_add(self.block.length, Ordering::Relaxed);
            BlockPayload::Store(buffer)
        };
        self.writer
            .submit(self.position, self.block.index, len, payload)?;
        Ok(())
    }
}

/// Why hashing an output file stopped.
enum HashStop {
    Io(std::io::Error),
    Interrupted(Interrupted),
}

impl From<std::io::Error> for HashStop {
    fn from(e: std::io::Error) -> Self {
        HashStop::Io(e)
    }
}

/// Whole-file SHA-256 of an output, by a sequential re-read through a pool
/// buffer; checks for cancellation between chunks.
fn hash_output(
    path: &Path,
    control: &dyn ExportControl,
    buffers: &BufferPool,
) -> Result<(Sha256Digest, u64), EngineError> {
    let mut buffer = buffers.acquire()?;
    let result = file_digest(path, buffer.as_mut_slice(), || {
        control.checkpoint().map_err(HashStop::Interrupted)
    });
    match result {
        Ok(r) => Ok(r),
        Err(HashStop::Interrupted(i)) => Err(i.into()),
        Err(HashStop::Io(e)) => Err(file_err("hash output file", path)(e).into()),
    }
}

/// The manifest record of `disk`; `output_path` is the finished output
/// (read back for a differencing output's parent locator).
fn disk_record(
    disk: &DiskPlan,
    digests: &[Sha256Digest],
    size: u64,
    file_digest: &Sha256Digest,
    output_path: &Path,
    counts: Counts,
) -> Result<DiskRecord, OutputError> {
    let g = &disk.geometry;
    let bs = u64::from(g.block_size);
    let (kind, parent) = match disk.mode.parent() {
        None => (OUTPUT_KIND_DYNAMIC, None),
        Some(parent) => {
            let file = VhdxFile::open(output_path).map_err(|cause| OutputError::Finish {
                disk: disk.instance_id.clone(),
                path: output_path.to_path_buf(),
                cause: Box::new(cause),
            })?;
            let relative_path = file
                .parent_locator()
                .and_then(|l| l.relative_path())
                .unwrap_or_default()
                .to_owned();
            (
                OUTPUT_KIND_DIFFERENCING,
                Some(ParentRecord {
                    path: parent.path.to_string_lossy().into_owned(),
                    relative_path,
                    data_write_guid: guid_upper(parent.data_write_guid),
                    content_digest: to_hex(&parent.content_digest),
                }),
            )
        }
    };
    let changed: Vec<(u64, u64)> = match &disk.mode {
        DiskMode::Full { .. } => disk.allocated.clone(),
        DiskMode::Tracked { ranges, .. } => ranges.clone(),
        DiskMode::Fallback { parent, .. } => coalesce(
            digests
                .iter()
                .zip(&parent.digests)
                .enumerate()
                .filter(|(_, (now, base))| now != base)
                .map(|(i, _)| {
                    let index = i as u64;
                    (index * bs, g.block_len(index))
                })
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
    Ok(DiskRecord {
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
            size,
            sha256: to_hex(file_digest),
            data_write_guid: guid_upper(disk.output_data_write_guid),
            kind: kind.to_owned(),
        },
        changed_ranges: changed.iter().map(|(o, l)| [*o, *l]).collect(),
        content_digest: to_hex(&content_digest(digests)),
        block_digests: digests.iter().map(to_hex).collect(),
        parent,
        fallback,
        full_reason: disk.full_reason().map(str::to_owned),
    })
}
