//! What every method shares: its return-code table, how it runs (as a job
//! returning 4096, or synchronously returning 0), and how its result is
//! handed back (the `Job` REF and `Msvm_AffectedJobElement` with
//! `ElementEffects` 5, or the `Resulting…` out REF).

use std::sync::Arc;

use refpoint_cim::ObjectPath;
use refpoint_jobs::{JobFailure, JobOutput, JobSpec};

use super::provider::{MethodMode, MethodOutput, ParamValue, Provider};
use crate::error::{RefpointError, ReturnCode};
use crate::service::Refpoint;

/// `ElementEffects` 0 (Unknown): what a job works on without creating it.
pub const ELEMENT_EFFECTS_UNKNOWN: u16 = 0;

/// The return-code table a method is documented with (hyperv-api.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Table A: 0, 4096, 32768..=32778 (+32779 for GetVirtualDiskChanges).
    A,
    /// Table B: 0..=6, 4096.
    B,
}

impl Table {
    /// The `ReturnValue` for an error under this table.
    pub fn code(self, e: &RefpointError) -> u32 {
        match self {
            Table::A => e.return_value(),
            Table::B => e.table_b_code().value(),
        }
    }

    /// The failed [`MethodOutput`] for `e`.
    pub fn failure(self, e: &RefpointError) -> MethodOutput {
        MethodOutput {
            return_value: self.code(e),
            out_params: Vec::new(),
            error: Some(e.message().to_owned()),
        }
    }
}

/// Work of a method that creates or changes objects; returns the paths of
/// the objects it created (relative paths).
pub type Work = Box<dyn FnOnce(&Refpoint) -> Result<Vec<ObjectPath>, RefpointError> + Send>;

/// A method call ready to run: job spec, the objects it works on, the
/// out-parameter that names what it creates.
pub struct Call {
    /// `JobType`, description, `Cancellable`.
    pub spec: JobSpec,
    /// Objects associated with the job with `ElementEffects` 0.
    pub affects: Vec<ObjectPath>,
    /// `ResultingSnapshot` / `ResultingReferencePoint`, if the method has one.
    pub result_param: Option<&'static str>,
    /// The work.
    pub work: Work,
}

impl Provider {
    /// Runs `call` as the provider's [`MethodMode`] says:
    ///
    /// * asynchronous: submits a job and returns 4096 with the `Job` REF;
    ///   the objects the work creates are associated to the job with
    ///   `ElementEffects` 5 when it ends, the objects it works on at once
    ///   with `ElementEffects` 0; `Resulting…` stays NULL;
    /// * synchronous: runs the work now and returns 0 with the `Resulting…`
    ///   REF (no job).
    ///
    /// # Errors
    /// The work's error (synchronous) or 32778 when no job thread can start.
    pub(crate) fn run(&self, call: Call) -> Result<MethodOutput, RefpointError> {
        match self.mode() {
            MethodMode::Synchronous => {
                let created = (call.work)(self.refpoint())?;
                let mut out_params = Vec::new();
                if let (Some(name), Some(first)) = (call.result_param, created.first()) {
                    out_params.push((name.to_owned(), ParamValue::Reference(self.locate(first))));
                }
                Ok(MethodOutput {
                    return_value: ReturnCode::Completed.value(),
                    out_params,
                    error: None,
                })
            }
            MethodMode::Asynchronous => {
                let rp = Arc::clone(self.refpoint());
                let work = call.work;
                let id = self
                    .refpoint()
                    .jobs()
                    .submit_spec(call.spec, move |_control| {
                        let created = work(&rp)
                            .map_err(|e| JobFailure::failed(e.code(), e.message().to_owned()))?;
                        Ok(JobOutput {
                            created,
                            ..JobOutput::default()
                        })
                    })
                    .map_err(|e| {
                        RefpointError::new(
                            ReturnCode::OutOfMemory,
                            format!("cannot start the job: {e}"),
                        )
                    })?;
                self.associate(&id, &call.affects);
                Ok(self.job_started(&id))
            }
        }
    }

    /// Associates the objects job `id` works on (`ElementEffects` 0).
    pub(crate) fn associate(&self, id: &str, affects: &[ObjectPath]) {
        for path in affects {
            // The job was just submitted: it exists (kept at least TimeBeforeRemoval).
            let _ = self.refpoint().jobs().add_affected_element(
                id,
                path.relative(),
                &[ELEMENT_EFFECTS_UNKNOWN],
            );
        }
    }

    /// 4096 with the `Job` REF of job `id` (its own class: the export job
    /// class for exports).
    pub(crate) fn job_started(&self, id: &str) -> MethodOutput {
        let class = self
            .refpoint()
            .jobs()
            .get(id)
            .map_or("Msvm_ConcreteJob", |j| j.class_name());
        let job = ObjectPath::new(class).with_key("InstanceID", id);
        MethodOutput {
            return_value: ReturnCode::JobStarted.value(),
            out_params: vec![("Job".to_owned(), ParamValue::Reference(self.locate(&job)))],
            error: None,
        }
    }
}
