//! `ExportReferencePoint`: parameter validation (synchronous, before any job
//! starts) and the export job that runs the engine.
//!
//! Validation order follows what a WMI provider checks: the reference point
//! reference, the export directory, the embedded setting data, then the
//! reference point's state and the disks asked for. The first failure is
//! returned with its Table A code; nothing is written before all pass.

use std::path::{Component, Path};
use std::sync::Arc;

use refpoint_cim::ObjectPath;
use refpoint_cim::classes::ReferencePointExportSettingData;
use refpoint_core::{Host, ReferencePoint};
use refpoint_engine::{
    DiskExport, EngineConfig, ExportControl, ExportRequest, Interrupted, ReferencePointIdentity,
};
use refpoint_jobs::{
    ExportParameters, ExportResult, JobControl, JobFailure, JobManager, JobOutput, JobSpec, JobType,
};
use uuid::Uuid;

use crate::error::{RefpointError, ReturnCode};

/// The values of `Msvm_VirtualSystemReferencePointExportSettingData`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// `BaseReferencePoint`: object path or InstanceID of the base; `None` for a full export.
    pub base: Option<String>,
    /// `DisksToExport[]`: disk InstanceIDs; empty for all disks of the reference point.
    pub disks: Vec<String>,
}

fn invalid(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::InvalidParameter, message)
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

/// Validates every parameter and builds the engine request.
///
/// # Errors
/// 32773 unknown reference point, relative or malformed directory, disk not in
/// the reference point; 32775 reference point without associated data;
/// 32770 differential export (not available yet).
pub fn validate(
    host: &Host,
    reference_point: &str,
    export_directory: &Path,
    options: &ExportOptions,
) -> Result<ExportRequest, RefpointError> {
    let rp = find_reference_point(host, reference_point)?;
    if !export_directory.is_absolute()
        || export_directory
            .components()
            .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(invalid(format!(
            "ExportDirectory '{}' is not a fully qualified path",
            export_directory.display()
        )));
    }
    if export_directory.exists() && !export_directory.is_dir() {
        return Err(invalid(format!(
            "ExportDirectory '{}' exists and is not a directory",
            export_directory.display()
        )));
    }
    if let Some(base) = &options.base {
        let base_rp = find_reference_point(host, base)?;
        return Err(RefpointError::new(
            ReturnCode::NotSupported,
            format!(
                "BaseReferencePoint '{}': differential export is not available in this version",
                base_rp.instance_id
            ),
        ));
    }
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
        .map(|(d, file_stem)| DiskExport {
            instance_id: d.instance_id.clone(),
            file_stem,
            chain: d.chain.paths(),
            expected_data_write_guids: d.chain.layers().map(|l| l.data_write_guid).collect(),
        })
        .collect();
    Ok(ExportRequest {
        export_directory: export_directory.to_path_buf(),
        vm_name: vm.name,
        vm_element_name: vm.element_name.clone(),
        reference_point: ReferencePointIdentity {
            instance_id: rp.instance_id.clone(),
            virtual_system_identifier: rp.virtual_system_identifier.to_string().to_uppercase(),
            rct_ids: rp.resilient_change_tracking_identifiers(),
        },
        base: None,
        settings_xml: rp.settings_xml(),
        disks,
        job_id: Uuid::new_v4(),
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

/// Starts the export job (JobType 203) and returns its InstanceID.
///
/// # Errors
/// 32778 when the job's thread cannot be started.
pub fn start(
    jobs: &JobManager,
    request: ExportRequest,
    config: EngineConfig,
) -> Result<String, RefpointError> {
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
        base_reference_point_id: None,
    });
    jobs.submit_spec(spec, move |control: Arc<JobControl>| {
        let ctl = JobExportControl(control);
        let plan = refpoint_engine::plan(&request).map_err(engine_failure)?;
        let outcome = refpoint_engine::execute(plan, &ctl, &config).map_err(engine_failure)?;
        Ok(JobOutput {
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

fn engine_failure(e: refpoint_engine::EngineError) -> JobFailure {
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
