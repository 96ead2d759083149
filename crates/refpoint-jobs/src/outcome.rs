//! What a job's work returns: [`JobOutput`] on success, [`JobFailure`]
//! otherwise, and the export-specific parameters and results of
//! `Msvm_VirtualSystemReferencePointExportJob` (hyperv-api.md §4.1).

use refpoint_cim::codes::ReturnCodeA;
use refpoint_cim::{MsvmError, ObjectPath};

/// Why [`JobControl::checkpoint`](crate::JobControl::checkpoint) stopped the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Interrupted {
    /// `RequestStateChange(4)`: stop in an orderly way; the job ends Terminated (8).
    #[error("job terminated by request")]
    Terminated,
    /// `RequestStateChange(5)`: stop now; the job ends Killed (9).
    #[error("job killed by request")]
    Killed,
}

/// Export-job input fields, known when the job is submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportParameters {
    /// `ExportDirectory`: the absolute target directory.
    pub export_directory: String,
    /// `VirtualMachineId`: VM GUID.
    pub virtual_machine_id: String,
    /// `ReferencePointId`: the exported reference point's identifier.
    pub reference_point_id: String,
    /// `BaseReferencePointId`: the base of a differential export, `None` for a full one.
    pub base_reference_point_id: Option<String>,
}

/// Input fields of a collection export job
/// (`Msvm_CollectionReferencePointExportJob`, JobType 206, hyperv-api.md §4.1),
/// known when the job is submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollectionExportParameters {
    /// `ExportDirectory`: the absolute target directory.
    pub export_directory: String,
    /// `CollectionId`: `CollectionID` of the `Msvm_VirtualSystemCollection`.
    pub collection_id: String,
    /// `ReferencePointGroupId`: `CollectionID` of the exported `Msvm_ReferencePointCollection`.
    pub reference_point_group_id: String,
    /// `BaseReferencePointGroupId`: the base collection of a differential export.
    pub base_reference_point_group_id: Option<String>,
    /// `VirtualMachineId[]`: the member VM GUIDs exported.
    pub virtual_machine_ids: Vec<String>,
}

/// Export-job output fields, known when the export has committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportResult {
    /// `ExportedDisks[]`: disk InstanceIDs, index-parallel to `exported_log_file_paths`.
    pub exported_disks: Vec<String>,
    /// `ExportedLogFilePaths[]`: the exported file of each disk (absolute paths).
    pub exported_log_file_paths: Vec<String>,
    /// `ExportedConfigFilePath`: the exported settings file.
    pub exported_config_file_path: Option<String>,
    /// `ExportedRuntimeFilePath`: the runtime-state file (refpoint has none).
    pub exported_runtime_file_path: Option<String>,
    /// `ExportedGuestStateFilePath`: the guest-state file (refpoint has none).
    pub exported_guest_state_file_path: Option<String>,
    /// `ExportedConfigFilePaths[]` (collection exports): one settings file
    /// per exported VM, index-parallel to `VirtualMachineId[]`.
    #[serde(default)]
    pub exported_config_file_paths: Vec<String>,
}

/// Successful result of a job's work.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOutput {
    /// Warnings; non-empty ⇒ the job ends CompletedWithWarnings (32768) and
    /// `GetErrorEx` returns one `Msvm_Error` (severity Medium) per warning.
    pub warnings: Vec<String>,
    /// Elements the job created, associated to it with `ElementEffects` 5 (Create).
    pub created: Vec<ObjectPath>,
    /// Export results (export jobs only).
    pub export: Option<ExportResult>,
}

/// Unsuccessful result of a job's work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobFailure {
    /// The work stopped because [`JobControl::checkpoint`](crate::JobControl::checkpoint) said so.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// The work failed: the job ends in Exception (10) with these fields.
    #[error("{description} (return code {code})")]
    Failed {
        /// Becomes `ErrorCode`.
        code: ReturnCodeA,
        /// Becomes `ErrorDescription`: the full message naming file, offset or field.
        description: String,
        /// Becomes `ErrorSummaryDescription`; `None` → the code's description.
        summary: Option<String>,
        /// Returned by `GetErrorEx`; empty → one `Msvm_Error` built from code and description.
        errors: Vec<MsvmError>,
    },
}

impl JobFailure {
    /// A failure with `code` and a detailed `description`.
    pub fn failed(code: ReturnCodeA, description: impl Into<String>) -> JobFailure {
        JobFailure::Failed {
            code,
            description: description.into(),
            summary: None,
            errors: Vec::new(),
        }
    }

    /// Builder: appends an explicit `Msvm_Error` (ignored for `Interrupted`).
    pub fn with_error(mut self, error: MsvmError) -> JobFailure {
        if let JobFailure::Failed { errors, .. } = &mut self {
            errors.push(error);
        }
        self
    }

    /// Builder: sets `ErrorSummaryDescription` (ignored for `Interrupted`).
    pub fn with_summary(mut self, text: impl Into<String>) -> JobFailure {
        if let JobFailure::Failed { summary, .. } = &mut self {
            *summary = Some(text.into());
        }
        self
    }
}
