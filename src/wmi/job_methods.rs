//! The methods of the job classes (hyperv-api.md §4.4): `RequestStateChange`,
//! `GetError`, `GetErrorEx`, `KillJob`, on `Msvm_ConcreteJob` and the export
//! job class (semantics in `refpoint_jobs`' control table).
//!
//! * `RequestStateChange(RequestedState, TimeoutPeriod)` returns the codes
//!   of its own table: 0, 1 (Service, or Terminate/Kill on a job that is not
//!   `Cancellable`), 5 (RequestedState missing, not a number or outside
//!   2..=6; TimeoutPeriod not an interval), 4096, 4097 (finished job or an
//!   illegal transition), 4098 (a non-zero TimeoutPeriod).
//! * `GetError` → `Error` (one embedded `Msvm_Error`, CIM-XML) or nothing;
//!   `GetErrorEx` → `Errors[]`; both return 0.
//! * `KillJob(DeleteOnKill)` → 1 Not supported, as on Msvm jobs.

use refpoint_cim::ObjectPath;
use refpoint_cim::codes::RequestStateChangeCode;

use super::params::Params;
use super::provider::{CimOpError, MethodOutput, ParamValue, Provider};

fn not_found(e: impl std::fmt::Display) -> CimOpError {
    CimOpError::new(CimOpError::NOT_FOUND, e.to_string())
}

impl Provider {
    /// The InstanceID of the job `target` names.
    ///
    /// # Errors
    /// 6 when no kept job has the path's `InstanceID`.
    pub(crate) fn job_of(&self, target: &ObjectPath) -> Result<String, CimOpError> {
        let id = target.key("InstanceID").ok_or_else(|| {
            CimOpError::new(
                CimOpError::NOT_FOUND,
                format!("{target}: a job path needs the InstanceID key"),
            )
        })?;
        let job = self.refpoint().jobs().get(id).map_err(not_found)?;
        if !super::model::is_a(job.class_name(), &target.class_name) {
            return Err(CimOpError::new(
                CimOpError::NOT_FOUND,
                format!(
                    "job {id} is a {}, not a {}",
                    job.class_name(),
                    target.class_name
                ),
            ));
        }
        Ok(job.instance_id)
    }

    /// `RequestStateChange`.
    pub(crate) fn request_state_change(
        &self,
        id: &str,
        values: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError> {
        let params = Params::new(
            "RequestStateChange",
            values,
            &["RequestedState", "TimeoutPeriod"],
        )?;
        let invalid = |message: String| MethodOutput {
            return_value: RequestStateChangeCode::InvalidParameter.value(),
            out_params: Vec::new(),
            error: Some(message),
        };
        let requested = match params.uint16("RequestedState") {
            Ok(Some(v)) => v,
            Ok(None) => {
                return Ok(invalid(
                    "RequestStateChange.RequestedState: is required".to_owned(),
                ));
            }
            Err(e) => return Ok(invalid(e.message().to_owned())),
        };
        let timeout = match params.interval("TimeoutPeriod") {
            Ok(t) => t,
            Err(e) => return Ok(invalid(e.message().to_owned())),
        };
        let code = self
            .refpoint()
            .jobs()
            .request_state_change(id, requested, timeout)
            .map_err(not_found)?;
        let error = match code {
            RequestStateChangeCode::Completed | RequestStateChangeCode::TransitionStarted => None,
            other => {
                let state = self
                    .refpoint()
                    .jobs()
                    .get(id)
                    .map(|j| j.job_state.to_string())
                    .unwrap_or_default();
                Some(format!(
                    "RequestStateChange({requested}) on job {id} in state {state}: {other}"
                ))
            }
        };
        Ok(MethodOutput {
            return_value: code.value(),
            out_params: Vec::new(),
            error,
        })
    }

    /// `GetError` and `GetErrorEx`.
    pub(crate) fn get_error(
        &self,
        id: &str,
        ex: bool,
        values: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError> {
        let jobs = self.refpoint().jobs();
        if ex {
            Params::new("GetErrorEx", values, &[])?;
            let (code, errors) = jobs.get_error_ex(id).map_err(not_found)?;
            Ok(MethodOutput {
                return_value: code.value(),
                out_params: errors
                    .map(|e| ("Errors".to_owned(), ParamValue::Array(e)))
                    .into_iter()
                    .collect(),
                error: None,
            })
        } else {
            Params::new("GetError", values, &[])?;
            let (code, error) = jobs.get_error(id).map_err(not_found)?;
            Ok(MethodOutput {
                return_value: code.value(),
                out_params: error
                    .map(|e| ("Error".to_owned(), ParamValue::Value(e)))
                    .into_iter()
                    .collect(),
                error: None,
            })
        }
    }

    /// `KillJob(DeleteOnKill)`: 1 Not supported (use `RequestStateChange(5)`).
    pub(crate) fn kill_job(
        &self,
        id: &str,
        values: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError> {
        let params = Params::new("KillJob", values, &["DeleteOnKill"])?;
        let delete = params
            .boolean("DeleteOnKill")
            .ok()
            .flatten()
            .unwrap_or(false);
        let code = self
            .refpoint()
            .jobs()
            .kill_job(id, delete)
            .map_err(not_found)?;
        Ok(MethodOutput {
            return_value: code.value(),
            out_params: Vec::new(),
            error: Some(format!(
                "KillJob is not supported on job {id}; use RequestStateChange(5)"
            )),
        })
    }
}
