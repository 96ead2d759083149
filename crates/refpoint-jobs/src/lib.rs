//! The refpoint job manager: `CIM_ConcreteJob`-shaped jobs with the Hyper-V
//! state machine (hyperv-api.md §4), progress, suspend/resume/terminate/kill,
//! errors as `Msvm_Error`, affected-element associations and retention.
//!
//! * [`JobManager`] submits work (`FnOnce(Arc<JobControl>) -> Result<JobOutput, JobFailure>`)
//!   on one of a bounded set of job threads and keeps [`Job`] records.
//! * [`JobControl`] is what the work sees: `set_total`, `add_progress`,
//!   `checkpoint()` (blocks while suspended, returns [`Interrupted`] on
//!   terminate/kill).
//! * [`Job::to_instance`] gives the `Msvm_ConcreteJob` /
//!   `Msvm_VirtualSystemReferencePointExportJob` instance; serde uses the CIM
//!   property names.

mod control;
mod job;
mod manager;
mod outcome;
mod runners;
mod state;
pub mod store;

pub use control::JobControl;
pub use job::{HEALTH_STATE_OK, Job, operational_status};
pub use manager::{
    AffectedElement, DEFAULT_TIME_BEFORE_REMOVAL, ELEMENT_EFFECTS_CREATE, JobManager, JobSpec,
    JobsError, RestoreReport,
};
pub use outcome::{
    CollectionExportParameters, ExportParameters, ExportResult, Interrupted, JobFailure, JobOutput,
};
pub use runners::DEFAULT_MAX_RUNNING_JOBS;
pub use state::{JobState, JobType, RequestedState, UnknownValue};
pub use store::{INTERRUPTED_REASON, JobStore, StoreError};
