//! Exporting a reference point collection
//! (`Msvm_CollectionReferencePointService.ExportReferencePoint`): one VM
//! folder per member, exactly as [`crate::execute`] writes it (full or
//! differential against the member's base), plus the collection manifest
//! ([`crate::collection_manifest`]) and a `SHA256SUMS` over everything,
//! committed all together or not at all ([`crate::collection_commit`]).
//!
//! Execution: every member is planned first (metadata only), then all
//! members are written at once, one dispatching thread per member, sharing
//! one rayon pool of `EngineConfig.threads` workers and one buffer pool of
//! `EngineConfig.buffer_pool_bytes` (so memory stays bounded whatever the
//! number of members). Each member is written into the staging directory
//! with its final location as the reference for differencing outputs'
//! relative parent paths. The first failing member stops the others (the
//! shared buffer pool is closed and their checkpoints report an
//! interruption); its error is the collection's. Progress counts the bytes
//! of all members; cancellation is checked between blocks and before the
//! commit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::collection_commit::{
    CollectionError, CollectionRecovery, CollectionStaging, IntentEntry, file_entry, folder_entry,
    recover_collection_exports,
};
use crate::collection_manifest::{
    COLLECTION_MANIFEST_FILE, COLLECTION_MANIFEST_FORMAT, CollectionManifest, CollectionRecord,
    MemberDiskRecord, MemberRecord, RemovedMemberRecord, digest_of_digests,
};
use crate::control::{EngineConfig, ExportControl, Interrupted};
use crate::digest::{sha256, to_hex};
use crate::error::{EngineError, ErrorDetail};
use crate::execute::{ExportOutcome, Resources, TOOL_NAME, Written, write_export};
use crate::identity::guid_upper;
use crate::manifest::{
    EXPORT_TYPE_DIFFERENTIAL, EXPORT_TYPE_FULL, Manifest, ToolRecord, parse_checksums,
    render_checksums,
};
use crate::output::write_file_synced;
use crate::plan::{CHECKSUMS_FILE, ExportPlan, MANIFEST_FILE, plan};
use crate::pool::PoolError;
use crate::request::ExportRequest;
use crate::scheduler::Scheduler;

/// An export of one `Msvm_ReferencePointCollection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionExportRequest {
    /// `ExportDirectory`: absolute; created if missing (its parent must exist).
    pub export_directory: PathBuf,
    /// `InstanceID` of the export job; names the staging directory.
    pub job_id: Uuid,
    /// The `Msvm_VirtualSystemCollection`.
    pub collection: CollectionRecord,
    /// The exported `Msvm_ReferencePointCollection`.
    pub reference_point_collection: CollectionRecord,
    /// `BaseReferencePointCollection` of a differential export.
    pub base_reference_point_collection: Option<CollectionRecord>,
    /// One export per member, each with the same `export_directory`; a
    /// member with a `base` is exported differential against it, the others
    /// full (e.g. a VM added since the base collection).
    pub members: Vec<ExportRequest>,
    /// Members of the base collection the exported one no longer has.
    pub removed_members: Vec<RemovedMemberRecord>,
}

impl CollectionExportRequest {
    /// Checks the collection-level rules, then every member's request.
    ///
    /// # Errors
    /// `InvalidParameter`: no member ([`CollectionError::NoMembers`]), two
    /// members with the same folder name, a member with another export
    /// directory, or a member's [`crate::RequestError`].
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.members.is_empty() {
            return Err(CollectionError::NoMembers.into());
        }
        for (i, member) in self.members.iter().enumerate() {
            if member.export_directory != self.export_directory {
                return Err(CollectionError::MemberDirectory {
                    member: guid_upper(member.vm_name),
                    directory: member.export_directory.clone(),
                    expected: self.export_directory.clone(),
                }
                .into());
            }
            if let Some(first) = self.members.iter().take(i).find(|m| {
                m.vm_element_name
                    .eq_ignore_ascii_case(&member.vm_element_name)
            }) {
                return Err(CollectionError::DuplicateMember {
                    name: member.vm_element_name.clone(),
                    first: guid_upper(first.vm_name),
                    second: guid_upper(member.vm_name),
                }
                .into());
            }
            member.validate()?;
        }
        Ok(())
    }
}

/// A planned collection export, ready for [`execute_collection`].
#[derive(Debug)]
pub struct CollectionPlan {
    export_directory: PathBuf,
    job_id: Uuid,
    collection: CollectionRecord,
    reference_point_collection: CollectionRecord,
    base_reference_point_collection: Option<CollectionRecord>,
    removed_members: Vec<RemovedMemberRecord>,
    members: Vec<ExportPlan>,
}

impl CollectionPlan {
    /// The members' plans, in request order.
    #[must_use]
    pub fn members(&self) -> &[ExportPlan] {
        &self.members
    }

    /// Source bytes the export will read, all members.
    #[must_use]
    pub fn bytes_to_read(&self) -> u64 {
        self.members.iter().map(ExportPlan::bytes_to_read).sum()
    }

    /// `ExportDirectory`.
    #[must_use]
    pub fn export_directory(&self) -> &std::path::Path {
        &self.export_directory
    }
}

/// Validates `req` and plans every member ([`crate::plan`]: metadata only).
///
/// # Errors
/// As [`CollectionExportRequest::validate`] and [`crate::plan`] (the first
/// member that fails).
pub fn plan_collection(req: &CollectionExportRequest) -> Result<CollectionPlan, EngineError> {
    req.validate()?;
    let members = req
        .members
        .iter()
        .map(plan)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CollectionPlan {
        export_directory: req.export_directory.clone(),
        job_id: req.job_id,
        collection: req.collection.clone(),
        reference_point_collection: req.reference_point_collection.clone(),
        base_reference_point_collection: req.base_reference_point_collection.clone(),
        removed_members: req.removed_members.clone(),
        members,
    })
}

/// Result of a committed collection export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionOutcome {
    /// `<ExportDirectory>/refpoint-collection.json`.
    pub manifest_file: PathBuf,
    /// `<ExportDirectory>/SHA256SUMS`.
    pub checksums_file: PathBuf,
    /// The collection's content digest (lower-case hex).
    pub content_digest: String,
    /// Per member, in request order (final paths).
    pub members: Vec<ExportOutcome>,
    /// Source bytes read, all members.
    pub bytes_read: u64,
    /// Bytes written, all members plus the collection files.
    pub bytes_written: u64,
    /// The members' warnings (tracking fallbacks), each naming its VM.
    pub warnings: Vec<String>,
    /// Wall time of [`execute_collection`].
    pub elapsed: Duration,
    /// Interrupted collection exports found in the directory and resolved first.
    pub recovered: Vec<CollectionRecovery>,
}

/// The job's control as one member sees it: progress is the collection's
/// (the total is set once for all members), and a failure of another
/// member interrupts it.
struct MemberControl<'a> {
    inner: &'a dyn ExportControl,
    abort: &'a AtomicBool,
}

impl ExportControl for MemberControl<'_> {
    fn set_total(&self, _bytes: u64) {}
    fn add_progress(&self, bytes: u64) {
        self.inner.add_progress(bytes);
    }
    fn checkpoint(&self) -> Result<(), Interrupted> {
        if self.abort.load(Ordering::SeqCst) {
            return Err(Interrupted::Killed);
        }
        self.inner.checkpoint()
    }
}

/// Runs `plan`: resolves interrupted collection exports of the directory,
/// writes every member and the collection files into one staging directory
/// and commits them together (module docs).
///
/// # Errors
/// - `InUse` / `TargetExists`: a live export stages a member folder, or an
///   entry exists at the target (nothing is overwritten);
/// - the first member's error (`Failed`, `AccessDenied`, `OutOfMemory`,
///   `Interrupted`, …, naming file, block and offset); nothing is published
///   and the staging directory is removed;
/// - `InvalidParameter`: the thread pool cannot be built.
pub fn execute_collection(
    plan: CollectionPlan,
    control: &dyn ExportControl,
    cfg: &EngineConfig,
) -> Result<CollectionOutcome, EngineError> {
    execute_collection_on(plan, control, &Scheduler::new(cfg)?)
}

/// As [`execute_collection`], on a shared [`Scheduler`].
///
/// # Errors
/// As [`execute_collection`].
pub fn execute_collection_on(
    plan: CollectionPlan,
    control: &dyn ExportControl,
    scheduler: &Scheduler,
) -> Result<CollectionOutcome, EngineError> {
    let started = Instant::now();
    let recovered = recover_collection_exports(&plan.export_directory)?;
    let max_block = plan
        .members
        .iter()
        .flat_map(|m| m.disks.iter().map(|d| d.geometry.block_size))
        .max()
        .unwrap_or(1024 * 1024);
    // One stop flag for every member: a failure in one stops them all.
    let abort = AtomicBool::new(false);
    let res = scheduler.resources(u64::from(max_block), &abort)?;
    control.checkpoint()?;
    let names: Vec<&str> = plan
        .members
        .iter()
        .map(|m| m.element_name.as_str())
        .collect();
    let staging = CollectionStaging::begin(
        &plan.export_directory,
        plan.job_id,
        &names,
        &[CHECKSUMS_FILE, COLLECTION_MANIFEST_FILE],
    )?;
    control.set_total(plan.bytes_to_read());
    tracing::info!(
        target = %plan.export_directory.display(),
        members = plan.members.len(),
        bytes_to_read = plan.bytes_to_read(),
        threads = scheduler.threads(),
        budget = scheduler.budget_bytes(),
        "collection export started"
    );
    let written = write_members(&plan, &staging, control, &res)?;
    let (manifest, entries, collection_bytes) = write_collection_files(&plan, &staging)?;
    control.checkpoint()?;
    staging.commit(&entries)?;

    let elapsed = started.elapsed();
    let mut outcome = CollectionOutcome {
        manifest_file: plan.export_directory.join(COLLECTION_MANIFEST_FILE),
        checksums_file: plan.export_directory.join(CHECKSUMS_FILE),
        content_digest: manifest.content_digest,
        members: Vec::with_capacity(plan.members.len()),
        bytes_read: 0,
        bytes_written: collection_bytes,
        warnings: Vec::new(),
        elapsed,
        recovered,
    };
    for (member, w) in plan.members.iter().zip(written) {
        let o = w.into_outcome(member, member.target_folder(), elapsed, Vec::new());
        outcome.bytes_read += o.bytes_read;
        outcome.bytes_written += o.bytes_written;
        outcome.warnings.extend(
            o.warnings
                .iter()
                .map(|w| format!("{}: {w}", member.element_name)),
        );
        outcome.members.push(o);
    }
    tracing::info!(
        target = %plan.export_directory.display(),
        bytes_read = outcome.bytes_read,
        elapsed_ms = elapsed.as_millis(),
        "collection export committed"
    );
    Ok(outcome)
}

/// Writes every member into the staging directory at once (module docs).
fn write_members(
    plan: &CollectionPlan,
    staging: &CollectionStaging,
    control: &dyn ExportControl,
    res: &Resources<'_>,
) -> Result<Vec<Written>, EngineError> {
    let buffers = res.buffers;
    let abort = AtomicBool::new(false);
    // A failure stops the members' pipelines too (the shared stop flag).
    let stop_all = || {
        res.stop.store(true, Ordering::SeqCst);
        buffers.wake_all();
    };
    let results: Vec<Result<Written, EngineError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .members
            .iter()
            .map(|member| {
                let folder = staging.root().join(&member.element_name);
                let final_folder = member.target_folder();
                let abort = &abort;
                let name = member.element_name.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("refpoint-member-{name}"))
                    .spawn_scoped(scope, move || {
                        let ctl = MemberControl {
                            inner: control,
                            abort,
                        };
                        let result = write_export(member, &folder, &final_folder, &ctl, res);
                        // An interruption reaches every member through the
                        // job's own control; a failure must stop the others.
                        if let Err(e) = &result
                            && !matches!(e.detail(), ErrorDetail::Interrupted(_))
                        {
                            abort.store(true, Ordering::SeqCst);
                            stop_all();
                        }
                        result
                    });
                (name, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(member, handle)| match handle {
                Ok(h) => h.join().unwrap_or_else(|_| {
                    abort.store(true, Ordering::SeqCst);
                    stop_all();
                    Err(CollectionError::MemberPanicked { member }.into())
                }),
                Err(cause) => {
                    abort.store(true, Ordering::SeqCst);
                    stop_all();
                    Err(CollectionError::MemberThread { member, cause }.into())
                }
            })
            .collect()
    });
    let mut ok = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(w) => ok.push(w),
            Err(e) => errors.push(e),
        }
    }
    match first_cause(errors) {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}

/// The error that caused a failure: one that is neither an interruption nor
/// the closed pool (consequences of another member's failure), else an
/// interruption (the job was terminated or killed), else the first.
fn first_cause(errors: Vec<EngineError>) -> Option<EngineError> {
    let rank = |e: &EngineError| match e.detail() {
        ErrorDetail::Pool(PoolError::Closed) => 2,
        ErrorDetail::Interrupted(_) => 1,
        _ => 0,
    };
    errors.into_iter().min_by_key(rank)
}

/// Reads the staged members back, writes `refpoint-collection.json` and
/// `SHA256SUMS` into the staging directory and returns the manifest, the
/// commit entries (members, then `SHA256SUMS`, then the manifest) and the
/// bytes written.
fn write_collection_files(
    plan: &CollectionPlan,
    staging: &CollectionStaging,
) -> Result<(CollectionManifest, Vec<IntentEntry>, u64), EngineError> {
    let mut members = Vec::with_capacity(plan.members.len());
    let mut sums = Vec::new();
    for member in &plan.members {
        let name = &member.element_name;
        let folder = staging.root().join(name);
        let manifest_path = folder.join(MANIFEST_FILE);
        let text = std::fs::read(&manifest_path).map_err(|e| CollectionError::StagedMember {
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
        let manifest = std::str::from_utf8(&text)
            .map_err(|e| e.to_string())
            .and_then(Manifest::from_json)
            .map_err(|reason| CollectionError::StagedMember {
                path: manifest_path.clone(),
                reason,
            })?;
        let disks: Vec<MemberDiskRecord> = manifest
            .disks
            .iter()
            .map(|d| MemberDiskRecord {
                instance_id: d.instance_id.clone(),
                content_digest: d.content_digest.clone(),
            })
            .collect();
        let content = digest_of_digests(disks.iter().map(|d| d.content_digest.as_str())).map_err(
            |reason| CollectionError::StagedMember {
                path: manifest_path.clone(),
                reason,
            },
        )?;
        members.push(MemberRecord {
            virtual_system_identifier: manifest.virtual_system.name.clone(),
            element_name: name.clone(),
            reference_point: manifest.reference_point.instance_id.clone(),
            base_reference_point: manifest.base.as_ref().map(|b| b.instance_id.clone()),
            export_type: manifest.export_type.clone(),
            manifest: format!("{name}/{MANIFEST_FILE}"),
            manifest_sha256: to_hex(&sha256(&text)),
            disks,
            content_digest: to_hex(&content),
        });
        let sums_path = folder.join(CHECKSUMS_FILE);
        let sums_text = std::fs::read(&sums_path).map_err(|e| CollectionError::StagedMember {
            path: sums_path.clone(),
            reason: e.to_string(),
        })?;
        let lines = std::str::from_utf8(&sums_text)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_checksums(t).map_err(|e| e.to_string()))
            .map_err(|reason| CollectionError::StagedMember {
                path: sums_path.clone(),
                reason,
            })?;
        sums.extend(
            lines
                .into_iter()
                .map(|(path, hex)| (format!("{name}/{path}"), hex)),
        );
        sums.push((
            format!("{name}/{CHECKSUMS_FILE}"),
            to_hex(&sha256(&sums_text)),
        ));
    }
    members.sort_by(|a, b| {
        a.virtual_system_identifier
            .cmp(&b.virtual_system_identifier)
    });
    let content =
        digest_of_digests(members.iter().map(|m| m.content_digest.as_str())).map_err(|reason| {
            CollectionError::StagedMember {
                path: staging.root().to_path_buf(),
                reason,
            }
        })?;
    let export_type = if plan.base_reference_point_collection.is_some() {
        EXPORT_TYPE_DIFFERENTIAL
    } else {
        EXPORT_TYPE_FULL
    };
    let manifest = CollectionManifest {
        format: COLLECTION_MANIFEST_FORMAT.to_owned(),
        tool: ToolRecord {
            name: TOOL_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        job_id: guid_upper(plan.job_id),
        export_type: export_type.to_owned(),
        collection: plan.collection.clone(),
        reference_point_collection: plan.reference_point_collection.clone(),
        base_reference_point_collection: plan.base_reference_point_collection.clone(),
        members,
        removed_members: plan.removed_members.clone(),
        content_digest: to_hex(&content),
    };
    let manifest_path = staging.root().join(COLLECTION_MANIFEST_FILE);
    let text = manifest
        .to_json()
        .map_err(|e| CollectionError::StagedMember {
            path: manifest_path.clone(),
            reason: e.to_string(),
        })?;
    let (manifest_digest, manifest_size) =
        write_file_synced(&manifest_path, text.as_bytes(), "write collection manifest")?;
    sums.push((
        COLLECTION_MANIFEST_FILE.to_owned(),
        to_hex(&manifest_digest),
    ));
    let sums_text = render_checksums(&sums);
    let (sums_digest, sums_size) = write_file_synced(
        &staging.root().join(CHECKSUMS_FILE),
        sums_text.as_bytes(),
        "write collection checksums",
    )?;
    let mut entries = plan
        .members
        .iter()
        .map(|m| folder_entry(staging.root(), &m.element_name))
        .collect::<Result<Vec<_>, _>>()?;
    entries.push(file_entry(CHECKSUMS_FILE, to_hex(&sums_digest)));
    entries.push(file_entry(
        COLLECTION_MANIFEST_FILE,
        to_hex(&manifest_digest),
    ));
    Ok((manifest, entries, manifest_size + sums_size))
}
