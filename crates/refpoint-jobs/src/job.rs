//! [`Job`]: the `Msvm_ConcreteJob` / `Msvm_VirtualSystemReferencePointExportJob`
//! record (hyperv-api.md §4.1, §4.2), serialisable with the CIM property names.

use refpoint_cim::codes::ReturnCodeA;
use refpoint_cim::{CimDateTime, CimInterval, CimType, Instance, MsvmError, ObjectPath};

use crate::state::{JobState, JobType};

/// `OperationalStatus` values used (CIM_ManagedSystemElement).
pub mod operational_status {
    /// 2 OK.
    pub const OK: u16 = 2;
    /// 3 Degraded (completed with warnings).
    pub const DEGRADED: u16 = 3;
    /// 6 Error (Exception).
    pub const ERROR: u16 = 6;
    /// 10 Stopped (Terminated, Killed).
    pub const STOPPED: u16 = 10;
    /// 17 Completed (any finished job).
    pub const COMPLETED: u16 = 17;
}

/// `HealthState` 5 (OK), the only value Msvm jobs report.
pub const HEALTH_STATE_OK: u16 = 5;

/// A snapshot of one job, with every `Msvm_ConcreteJob` property of §4.2 and
/// the export-job properties. Serde names are the CIM property names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Job {
    /// `InstanceID`: upper-case GUID.
    #[serde(rename = "InstanceID")]
    pub instance_id: String,
    /// `Name`: the job type's description.
    pub name: String,
    /// `Caption`: same as `Name`.
    pub caption: String,
    /// `Description`: what the submitter said the job does.
    pub description: String,
    /// `ElementName`: same as `Name`.
    pub element_name: String,
    /// `JobState`.
    pub job_state: JobState,
    /// `JobStatus`: free text for the state.
    pub job_status: String,
    /// `JobType`.
    pub job_type: JobType,
    /// `PercentComplete`: 0..=100, from bytes done / bytes total.
    pub percent_complete: u16,
    /// `TimeSubmitted`.
    pub time_submitted: CimDateTime,
    /// `StartTime`: unknown (all zeros) until the job ran.
    pub start_time: CimDateTime,
    /// `ElapsedTime`: running time so far, or the total once finished.
    pub elapsed_time: CimInterval,
    /// `TimeOfLastStateChange`.
    pub time_of_last_state_change: CimDateTime,
    /// `TimeBeforeRemoval`: retention after finishing (5 minutes by default).
    pub time_before_removal: CimInterval,
    /// `DeleteOnCompletion`: true — the record is removed `TimeBeforeRemoval` after finishing.
    pub delete_on_completion: bool,
    /// `Cancellable`: Terminate/Kill accepted.
    pub cancellable: bool,
    /// `ErrorCode`: the Table A code of an Exception, else 0.
    pub error_code: u16,
    /// `ErrorDescription`: the detailed message of an Exception.
    pub error_description: Option<String>,
    /// `ErrorSummaryDescription`: the short message of an Exception.
    pub error_summary_description: Option<String>,
    /// `OperationalStatus[]` (see [`operational_status`]).
    pub operational_status: Vec<u16>,
    /// `StatusDescriptions[]`, index-parallel to `OperationalStatus`.
    pub status_descriptions: Vec<String>,
    /// `HealthState`: always 5 (OK), as documented for Msvm jobs.
    pub health_state: u16,
    /// `ExportDirectory` (export jobs).
    pub export_directory: Option<String>,
    /// `VirtualMachineId` (export jobs).
    pub virtual_machine_id: Option<String>,
    /// `ReferencePointId` (export jobs).
    pub reference_point_id: Option<String>,
    /// `BaseReferencePointId` (differential export jobs).
    pub base_reference_point_id: Option<String>,
    /// `ExportedDisks[]` (export jobs, once completed).
    #[serde(default)]
    pub exported_disks: Vec<String>,
    /// `ExportedLogFilePaths[]` (export jobs, once completed).
    #[serde(default)]
    pub exported_log_file_paths: Vec<String>,
    /// `ExportedConfigFilePath`.
    pub exported_config_file_path: Option<String>,
    /// `ExportedRuntimeFilePath`.
    pub exported_runtime_file_path: Option<String>,
    /// `ExportedGuestStateFilePath`.
    pub exported_guest_state_file_path: Option<String>,
    /// `ExportedConfigFilePaths[]` (collection export jobs, once completed).
    #[serde(default)]
    pub exported_config_file_paths: Vec<String>,
    /// `CollectionId` (collection export jobs).
    #[serde(default)]
    pub collection_id: Option<String>,
    /// `ReferencePointGroupId` (collection export jobs).
    #[serde(default)]
    pub reference_point_group_id: Option<String>,
    /// `BaseReferencePointGroupId` (differential collection export jobs).
    #[serde(default)]
    pub base_reference_point_group_id: Option<String>,
    /// `VirtualMachineId[]` (collection export jobs).
    #[serde(default, rename = "VirtualMachineIds")]
    pub virtual_machine_ids: Vec<String>,
    /// Not a CIM property: the `Msvm_Error` instances `GetErrorEx` returns
    /// (failure details, or one per warning). Kept for persistence.
    #[serde(default)]
    pub errors: Vec<MsvmError>,
}

impl Job {
    /// The CIM class of this job (by `JobType`).
    pub fn class_name(&self) -> &'static str {
        self.job_type.class_name()
    }

    /// `<class>.InstanceID="<id>"`.
    pub fn object_path(&self) -> ObjectPath {
        ObjectPath::new(self.class_name()).with_key("InstanceID", &self.instance_id)
    }

    /// True for the reference point export job class (203).
    fn is_export(&self) -> bool {
        self.job_type == JobType::ExportReferencePoint
    }

    /// The job as a CIM instance of [`Job::class_name`], with the MOF types.
    pub fn to_instance(&self) -> Instance {
        let mut i = Instance::new(self.class_name())
            .with("InstanceID", self.instance_id.as_str())
            .with("Name", self.name.as_str())
            .with("Caption", self.caption.as_str())
            .with("Description", self.description.as_str())
            .with("ElementName", self.element_name.as_str())
            .with("JobState", self.job_state.value())
            .with("JobStatus", self.job_status.as_str())
            .with("JobType", self.job_type.value())
            .with("PercentComplete", self.percent_complete)
            .with("TimeSubmitted", self.time_submitted)
            .with("StartTime", self.start_time)
            .with("ElapsedTime", self.elapsed_time)
            .with("TimeOfLastStateChange", self.time_of_last_state_change)
            .with("TimeBeforeRemoval", self.time_before_removal)
            .with("DeleteOnCompletion", self.delete_on_completion)
            .with("Cancellable", self.cancellable)
            .with("ErrorCode", self.error_code)
            .with_typed(
                "ErrorDescription",
                self.error_description.as_deref(),
                CimType::String,
            )
            .with_typed(
                "ErrorSummaryDescription",
                self.error_summary_description.as_deref(),
                CimType::String,
            )
            .with_typed(
                "OperationalStatus",
                self.operational_status.clone(),
                CimType::Uint16,
            )
            .with_typed(
                "StatusDescriptions",
                self.status_descriptions.as_slice(),
                CimType::String,
            )
            .with("HealthState", self.health_state);
        if self.is_export() {
            i = i
                .with_typed(
                    "ExportDirectory",
                    self.export_directory.as_deref(),
                    CimType::String,
                )
                .with_typed(
                    "VirtualMachineId",
                    self.virtual_machine_id.as_deref(),
                    CimType::String,
                )
                .with_typed(
                    "ReferencePointId",
                    self.reference_point_id.as_deref(),
                    CimType::String,
                )
                .with_typed(
                    "BaseReferencePointId",
                    self.base_reference_point_id.as_deref(),
                    CimType::String,
                )
                .with_typed(
                    "ExportedDisks",
                    self.exported_disks.as_slice(),
                    CimType::String,
                )
                .with_typed(
                    "ExportedLogFilePaths",
                    self.exported_log_file_paths.as_slice(),
                    CimType::String,
                )
                .with_typed(
                    "ExportedConfigFilePath",
                    self.exported_config_file_path.as_deref(),
                    CimType::String,
                )
                .with_typed(
                    "ExportedRuntimeFilePath",
                    self.exported_runtime_file_path.as_deref(),
                    CimType::String,
                )
                .with_typed(
                    "ExportedGuestStateFilePath",
                    self.exported_guest_state_file_path.as_deref(),
                    CimType::String,
                );
        }
        if self.job_type == JobType::ExportReferencePointOnCollection {
            i = self.collection_export_properties(i);
        }
        i
    }

    /// The `Msvm_CollectionReferencePointExportJob` properties (§4.1):
    /// `VirtualMachineId` and the exported paths are arrays, index-parallel
    /// per VM (`ExportedConfigFilePaths`) or per disk (`ExportedDisks`,
    /// `ExportedLogFilePaths`); refpoint writes no runtime or guest-state files.
    fn collection_export_properties(&self, i: Instance) -> Instance {
        let none: &[String] = &[];
        i.with_typed(
            "ExportDirectory",
            self.export_directory.as_deref(),
            CimType::String,
        )
        .with_typed(
            "CollectionId",
            self.collection_id.as_deref(),
            CimType::String,
        )
        .with_typed(
            "ReferencePointGroupId",
            self.reference_point_group_id.as_deref(),
            CimType::String,
        )
        .with_typed(
            "BaseReferencePointGroupId",
            self.base_reference_point_group_id.as_deref(),
            CimType::String,
        )
        .with_typed(
            "VirtualMachineId",
            self.virtual_machine_ids.as_slice(),
            CimType::String,
        )
        .with_typed(
            "ExportedDisks",
            self.exported_disks.as_slice(),
            CimType::String,
        )
        .with_typed(
            "ExportedLogFilePaths",
            self.exported_log_file_paths.as_slice(),
            CimType::String,
        )
        .with_typed(
            "ExportedConfigFilePaths",
            self.exported_config_file_paths.as_slice(),
            CimType::String,
        )
        .with_typed("ExportedRuntimeFilePaths", none, CimType::String)
        .with_typed("ExportedGuestStateFilePaths", none, CimType::String)
    }

    /// `GetError`: `(0, first Msvm_Error as CIM-XML)`, or `(0, None)` when
    /// the job has no error (OK, running, terminated, killed).
    pub fn get_error(&self) -> (ReturnCodeA, Option<String>) {
        (
            ReturnCodeA::Completed,
            self.errors.first().map(MsvmError::to_xml),
        )
    }

    /// `GetErrorEx`: `(0, every Msvm_Error as CIM-XML)`, or `(0, None)` when none.
    pub fn get_error_ex(&self) -> (ReturnCodeA, Option<Vec<String>>) {
        let errors: Vec<String> = self.errors.iter().map(MsvmError::to_xml).collect();
        (
            ReturnCodeA::Completed,
            (!errors.is_empty()).then_some(errors),
        )
    }
}

/// `JobStatus` text for a state.
pub(crate) fn status_text(state: JobState) -> &'static str {
    match state {
        JobState::New => "Job is queued",
        JobState::Starting => "Job is starting",
        JobState::Running => "Job is running",
        JobState::Suspended => "Job is suspended",
        JobState::ShuttingDown => "Job is shutting down",
        JobState::Completed => "Job completed successfully",
        JobState::CompletedWithWarnings => "Job completed with warnings",
        JobState::Terminated => "Job was terminated",
        JobState::Killed => "Job was killed",
        JobState::Exception => "Job failed",
        JobState::Service => "Job is in service",
    }
}

/// `OperationalStatus` / `StatusDescriptions` for a state.
pub(crate) fn operational(state: JobState) -> (Vec<u16>, Vec<String>) {
    use operational_status as os;
    let (codes, texts): (Vec<u16>, Vec<&str>) = match state {
        JobState::Completed => (vec![os::OK, os::COMPLETED], vec!["OK", "Completed"]),
        JobState::CompletedWithWarnings => (
            vec![os::DEGRADED, os::COMPLETED],
            vec!["Degraded", "Completed"],
        ),
        JobState::Exception => (vec![os::ERROR, os::COMPLETED], vec!["Error", "Completed"]),
        JobState::Terminated | JobState::Killed => (
            vec![os::STOPPED, os::COMPLETED],
            vec!["Stopped", "Completed"],
        ),
        _ => (vec![os::OK], vec!["OK"]),
    };
    (codes, texts.into_iter().map(str::to_owned).collect())
}
