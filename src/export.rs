//! `ExportReferencePoint`: parameter validation (synchronous, before any job
//! starts) and the export job that runs the engine.
//!
//! Validation order follows what a WMI provider checks: the reference point
//! reference, the export directory, the embedded setting data, then the
//! reference point's state, the base of a differential export and the disks
//! asked for. The first failure is returned with its Table A code; nothing
//! is written before all pass.
//!
//! A differential export (`BaseReferencePoint` set) also needs: a base of the
//! same VM, older than the target; an export of the base (the latest one this
//! host recorded with [`Host::record_export`], or the VM folder given as
//! [`ExportOptions::base_export`]); and per disk the changes between the two
//! reference points (`Host::changes_between`). Lost tracking under the
//! strict policy is refused here, before any job starts (32775 naming the
//! disk and the reason). The job pins the base and the target
//! (`Host::pin_reference_point`) so neither can be destroyed or merged while
//! it reads, and records the finished export ([`Host::record_export`]) so a
//! later differential export finds its parent files.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use refpoint_cim::ObjectPath;
use refpoint_cim::classes::ReferencePointExportSettingData;
use refpoint_core::{ExportRecord, ExportedDiskRecord, Host, PinGuard, ReferencePoint, Tracking};
use refpoint_engine::{
    BaseReferencePoint, ChangeTracking, DiskExport, ExportControl, ExportOutcome, ExportRequest,
    Interrupted, ReferencePointIdentity, Scheduler, TrackingPolicy,
};
use refpoint_jobs::{
    ExportParameters, ExportResult, JobControl, JobFailure, JobManager, JobOutput, JobSpec, JobType,
};
use uuid::Uuid;

use crate::error::{RefpointError, ReturnCode, invalid};

/// The values of `Msvm_VirtualSystemReferencePointExportSettingData`, and
/// refpoint's own options of a differential export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// `BaseReferencePoint`: object path or InstanceID of the base; `None` for a full export.
    pub base: Option<String>,
    /// `DisksToExport[]`: disk InstanceIDs; empty for all disks of the reference point.
    pub disks: Vec<String>,
    /// VM folder of the base's export (`<ExportDirectory>/<ElementName>`),
    /// for a base this host has no export record of (CLI `--base-export`).
    /// `None`: the latest export of the base recorded by this host.
    pub base_export: Option<PathBuf>,
    /// What to do when change tracking of a disk is lost (CLI `--tracking`);
    /// default strict (32775).
    pub tracking: TrackingPolicy,
}

/// A validated export: the engine request and the pins that keep its
/// reference points from being destroyed or merged while the job reads.
#[derive(Debug)]
pub struct PreparedExport {
    /// What the engine does.
    pub request: ExportRequest,
    pins: Vec<PinGuard>,
}

/// Parses the embedded `ExportSettingData` (CIM-XML; empty string = defaults)
/// with the typed `Msvm_VirtualSystemReferencePointExportSettingData` model.
///
/// # Errors
/// 32776 for an instance of another class or a property of the wrong CIM
/// type; 32773 for malformed XML or a malformed `BaseReferencePoint` path.
/// Messages name the property.
pub fn options_from_setting_data(xml: &str) -> Result<ExportOptions, RefpointError> {
    let settings = ReferencePointExportSettingData::from_embedded(xml)?;
    Ok(ExportOptions {
        base: settings.base_reference_point.map(|p| p.to_string()),
        disks: settings.disks_to_export,
        ..ExportOptions::default()
    })
}

/// Accepts an InstanceID or an object path of a reference point and returns
/// the InstanceID.
fn reference_point_id(text: &str) -> Result<String, RefpointError> {
    if text.contains(':') && text.contains('=') && text.contains('.') {
        let path: ObjectPath = text.parse()?;
        path.key("InstanceID").map(str::to_string).ok_or_else(|| {
            invalid(format!(
                "ReferencePoint path '{text}' has no InstanceID key"
            ))
        })
    } else {
        Ok(text.to_string())
    }
}

fn find_reference_point<'h>(
    host: &'h Host,
    text: &str,
) -> Result<&'h ReferencePoint, RefpointError> {
    let id = reference_point_id(text)?;
    host.reference_point(&id).map_err(|_| {
        invalid(format!(
            "ReferencePoint: no Msvm_VirtualSystemReferencePoint with InstanceID '{id}'"
        ))
    })
}

/// Validates every parameter, builds the engine request and pins the
/// reference points it reads.
///
/// # Errors
/// 32773 unknown reference point, relative or malformed directory, disk not in
/// the reference point, base unknown or destroyed, of another VM, newer than
/// the target, or never exported (and no `base_export`); 32775 reference
/// point without associated data, change tracking lost under the strict
/// policy (naming the disk and the reason); 32774 a reference point being
/// destroyed or merged.
pub fn validate(
    host: &Host,
    reference_point: &str,
    export_directory: &Path,
    options: &ExportOptions,
) -> Result<PreparedExport, RefpointError> {
    let rp = find_reference_point(host, reference_point)?;
    check_directory(export_directory)?;
    let base_rp = match &options.base {
        Some(base) => Some(find_base(host, rp, base)?),
        None if options.base_export.is_some() => {
            return Err(invalid(
                "base_export (--base-export) is only meaningful with a BaseReferencePoint"
                    .to_owned(),
            ));
        }
        None => None,
    };
    if !rp.has_associated_data {
        return Err(RefpointError::new(
            ReturnCode::InvalidState,
            format!(
                "reference point {} has no associated data (its layers were merged away); it can only serve as a base",
                rp.instance_id
            ),
        ));
    }
    for wanted in &options.disks {
        if !rp
            .disks
            .iter()
            .any(|d| d.instance_id.eq_ignore_ascii_case(wanted))
        {
            return Err(invalid(format!(
                "DisksToExport: disk '{wanted}' is not in reference point {} (VirtualDiskIdentifiers: {})",
                rp.instance_id,
                rp.disks
                    .iter()
                    .map(|d| d.instance_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let vm = host.vm(&rp.virtual_system_identifier.to_string())?;
    let stems = disk_file_stems(rp);
    let disks = rp
        .disks
        .iter()
        .zip(stems)
        .filter(|(d, _)| {
            options.disks.is_empty()
                || options
                    .disks
                    .iter()
                    .any(|w| w.eq_ignore_ascii_case(&d.instance_id))
        })
        .map(|(d, file_stem)| {
            let changes = match base_rp {
                Some(base) if base.disk(&d.instance_id).is_some() => Some(changes_of(
                    host,
                    &d.instance_id,
                    &base.instance_id,
                    &rp.instance_id,
                )?),
                _ => None,
            };
            Ok(DiskExport {
                instance_id: d.instance_id.clone(),
                file_stem,
                chain: d.chain.paths(),
                expected_data_write_guids: d.chain.layers().map(|l| l.data_write_guid).collect(),
                changes,
            })
        })
        .collect::<Result<Vec<_>, RefpointError>>()?;
    let base = match base_rp {
        Some(b) => Some(BaseReferencePoint {
            identity: identity(b),
            export_folder: base_export_folder(host, b, options)?,
            tracking: options.tracking,
            removed_disks: b
                .disks
                .iter()
                .filter(|d| rp.disk(&d.instance_id).is_none())
                .map(|d| d.instance_id.clone())
                .collect(),
        }),
        None => None,
    };
    let request = ExportRequest {
        export_directory: export_directory.to_path_buf(),
        vm_name: vm.name,
        vm_element_name: vm.element_name.clone(),
        reference_point: identity(rp),
        base,
        settings_xml: rp.settings_xml(),
        disks,
        job_id: Uuid::new_v4(),
    };
    request
        .validate()
        .map_err(refpoint_engine::EngineError::from)?;
    let mut pins = vec![host.pin_reference_point(&rp.instance_id)?];
    if let Some(b) = base_rp {
        pins.push(host.pin_reference_point(&b.instance_id)?);
    }
    Ok(PreparedExport { request, pins })
}

fn identity(rp: &ReferencePoint) -> ReferencePointIdentity {
    ReferencePointIdentity {
        instance_id: rp.instance_id.clone(),
        virtual_system_identifier: rp.virtual_system_identifier.to_string().to_uppercase(),
        rct_ids: rp.resilient_change_tracking_identifiers(),
    }
}

/// The base reference point of a differential export of `rp`: known, of the
/// same VM, older than `rp`.
fn find_base<'h>(
    host: &'h Host,
    rp: &ReferencePoint,
    text: &str,
) -> Result<&'h ReferencePoint, RefpointError> {
    let id = reference_point_id(text)?;
    let base = host.reference_point(&id).map_err(|_| {
        invalid(format!(
            "BaseReferencePoint: no Msvm_VirtualSystemReferencePoint with InstanceID '{id}' (unknown or destroyed)"
        ))
    })?;
    if base.guid == rp.guid {
        return Err(invalid(format!(
            "BaseReferencePoint {} is the reference point being exported",
            base.instance_id
        )));
    }
    if base.virtual_system_identifier != rp.virtual_system_identifier {
        return Err(invalid(format!(
            "BaseReferencePoint {} belongs to virtual system {}, the reference point {} to {}",
            base.instance_id,
            base.virtual_system_identifier.to_string().to_uppercase(),
            rp.instance_id,
            rp.virtual_system_identifier.to_string().to_uppercase()
        )));
    }
    let newer_epoch = base.disks.iter().find_map(|b| {
        rp.disk(&b.instance_id)
            .filter(|t| b.rct_epoch >= t.rct_epoch)
            .map(|t| (b, t))
    });
    if base.creation_time > rp.creation_time || newer_epoch.is_some() {
        let detail = newer_epoch.map_or_else(String::new, |(b, t)| {
            format!(
                "; disk {} is at tracking epoch {} in the base and {} in the reference point",
                b.instance_id, b.rct_epoch, t.rct_epoch
            )
        });
        return Err(invalid(format!(
            "BaseReferencePoint {} (created {}) is not older than the reference point {} (created {}){detail}",
            base.instance_id,
            base.creation_time.to_display_string(),
            rp.instance_id,
            rp.creation_time.to_display_string()
        )));
    }
    Ok(base)
}

/// The changes of one disk between the base and the target, as the engine
/// takes them.
fn changes_of(
    host: &Host,
    disk: &str,
    base: &str,
    target: &str,
) -> Result<ChangeTracking, RefpointError> {
    Ok(match host.changes_between(disk, base, target)? {
        Tracking::Changes(ranges) => {
            ChangeTracking::Changes(ranges.iter().map(|r| (r.offset, r.length)).collect())
        }
        Tracking::Lost { reason } => ChangeTracking::Lost { reason },
    })
}

/// The VM folder of the base's export: `options.base_export`, else the
/// latest export of the base this host recorded whose manifest still exists.
fn base_export_folder(
    host: &Host,
    base: &ReferencePoint,
    options: &ExportOptions,
) -> Result<PathBuf, RefpointError> {
    if let Some(folder) = &options.base_export {
        return std::path::absolute(folder).map_err(|e| {
            invalid(format!(
                "base_export '{}' is not a usable path: {e}",
                folder.display()
            ))
        });
    }
    let records = host.exports_of(&base.instance_id)?;
    records
        .iter()
        .rev()
        .find(|r| r.manifest.is_file())
        .map(|r| r.vm_folder.clone())
        .ok_or_else(|| {
            let known = if records.is_empty() {
                "this host has no record of an export of it".to_owned()
            } else {
                format!(
                    "none of its {} recorded exports still has its manifest (e.g. '{}')",
                    records.len(),
                    records.first().map(|r| r.manifest.display().to_string()).unwrap_or_default()
                )
            };
            invalid(format!(
                "BaseReferencePoint {}: {known}; export it first, or name the VM folder of its export (base_export, --base-export DIR)",
                base.instance_id
            ))
        })
}

/// Adapts a job's control block to the engine's [`ExportControl`].
#[derive(Debug)]
struct JobExportControl(Arc<JobControl>);

impl ExportControl for JobExportControl {
    fn set_total(&self, bytes: u64) {
        self.0.set_total(bytes);
    }
    fn add_progress(&self, bytes: u64) {
        self.0.add_progress(bytes);
    }
    fn checkpoint(&self) -> Result<(), Interrupted> {
        self.0.checkpoint().map_err(|i| match i {
            refpoint_jobs::Interrupted::Terminated => Interrupted::Terminated,
            refpoint_jobs::Interrupted::Killed => Interrupted::Killed,
        })
    }
}

/// Starts the export job (JobType 203) and returns its InstanceID. The job
/// holds the export's pins until it ends and, on success, records the export
/// in `host` (a failure to record is a job warning: the export itself is
/// committed). A tracking fallback makes the job end CompletedWithWarnings.
///
/// # Errors
/// 32778 when the job's thread cannot be started.
pub fn start(
    jobs: &JobManager,
    host: &Arc<Mutex<Host>>,
    prepared: PreparedExport,
    scheduler: Arc<Scheduler>,
) -> Result<String, RefpointError> {
    let PreparedExport { request, pins } = prepared;
    let host = Arc::clone(host);
    let spec = JobSpec::new(
        JobType::ExportReferencePoint,
        format!(
            "Exporting reference point {} to {}",
            request.reference_point.instance_id,
            request.export_directory.display()
        ),
    )
    .export(ExportParameters {
        export_directory: request.export_directory.display().to_string(),
        virtual_machine_id: request.vm_name.to_string().to_uppercase(),
        reference_point_id: request.reference_point.instance_id.clone(),
        base_reference_point_id: request
            .base
            .as_ref()
            .map(|b| b.identity.instance_id.clone()),
    });
    jobs.submit_spec(spec, move |control: Arc<JobControl>| {
        let _pins = pins;
        let ctl = JobExportControl(control);
        let plan = refpoint_engine::plan(&request).map_err(engine_failure)?;
        let outcome =
            refpoint_engine::execute_on(plan, &ctl, &scheduler).map_err(engine_failure)?;
        let mut warnings = outcome.warnings.clone();
        let recorded = host
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_export(&request.reference_point.instance_id, export_record(&request, &outcome));
        if let Err(e) = recorded {
            warnings.push(format!(
                "the export is complete but could not be recorded in the host, so a later differential export must name it with base_export: {e}"
            ));
        }
        Ok(JobOutput {
            warnings,
            export: Some(ExportResult {
                exported_disks: outcome
                    .disks
                    .iter()
                    .map(|d| d.instance_id.clone())
                    .collect(),
                exported_log_file_paths: outcome
                    .disks
                    .iter()
                    .map(|d| d.path.display().to_string())
                    .collect(),
                exported_config_file_path: Some(outcome.config_file.display().to_string()),
                ..ExportResult::default()
            }),
            ..JobOutput::default()
        })
    })
    .map_err(|e| {
        RefpointError::new(
            ReturnCode::OutOfMemory,
            format!("cannot start the export job: {e}"),
        )
    })
}

/// The host's record of a committed export.
fn export_record(request: &ExportRequest, outcome: &ExportOutcome) -> ExportRecord {
    ExportRecord {
        export_directory: request.export_directory.clone(),
        vm_folder: outcome.vm_folder.clone(),
        manifest: outcome.manifest_file.clone(),
        disks: outcome
            .disks
            .iter()
            .map(|d| ExportedDiskRecord {
                instance_id: d.instance_id.clone(),
                file: d.path.clone(),
                data_write_guid: d.data_write_guid,
            })
            .collect(),
    }
}

/// `ExportDirectory` checks shared by VM and collection exports.
///
/// # Errors
/// 32773 when `dir` is relative or has a `..` component, or exists and is
/// not a directory; the message names the directory.
pub(crate) fn check_directory(dir: &Path) -> Result<(), RefpointError> {
    if !dir.is_absolute() || dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid(format!(
            "ExportDirectory '{}' is not a fully qualified path",
            dir.display()
        )));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(invalid(format!(
            "ExportDirectory '{}' exists and is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// An engine error as the job's failure: an interruption stays one, any
/// other error becomes its CIM code and message.
pub(crate) fn engine_failure(e: refpoint_engine::EngineError) -> JobFailure {
    if let refpoint_engine::ErrorKind::Interrupted(i) = e.kind() {
        return JobFailure::Interrupted(match i {
            Interrupted::Terminated => refpoint_jobs::Interrupted::Terminated,
            Interrupted::Killed => refpoint_jobs::Interrupted::Killed,
        });
    }
    let err = RefpointError::from(e);
    JobFailure::failed(err.code(), err.message().to_string())
}

/// File stems of the exported disks: the stem of each disk's base VHDX (the
/// name the user gave the disk), made unique within the VM by appending the
/// disk's index when two bases share a name.
fn disk_file_stems(rp: &ReferencePoint) -> Vec<String> {
    let stems: Vec<String> = rp
        .disks
        .iter()
        .map(|d| {
            d.chain.base().path.file_stem().map_or_else(
                || d.disk_guid.to_string(),
                |s| s.to_string_lossy().into_owned(),
            )
        })
        .collect();
    stems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if stems.iter().filter(|t| *t == s).count() > 1 {
                format!("{s}-{i}")
            } else {
                s.clone()
            }
        })
        .collect()
}
