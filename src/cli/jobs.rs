//! `refpoint jobs list|show|wait|suspend|resume|terminate|kill JOB`: the
//! job history and job control, through CIM operations ([`CimOperations`]):
//! in-process (the history in `<host>/jobs/`, where jobs of ended processes
//! are finished or recorded as interrupted) or against a running host
//! service (live jobs).
//!
//! JOB is a job's `InstanceID` or its object path. `suspend`, `resume`,
//! `terminate`, `kill` are `RequestStateChange` 3, 2, 4, 5 and print its
//! return code (0, 4096, 4097 on a finished job, …); `wait` polls `JobState`
//! until it is one of 7, 8, 9, 10, 32768 (the generic client loop).

use std::time::{Duration, Instant};

use clap::Subcommand;
use refpoint_cim::{Instance, ObjectPath};
use serde_json::{Value, json};

use super::wmi::{instance_json, op_error, output_json};
use crate::error::{RefpointError, ReturnCode};
use crate::wmi::{CimOperations, MethodOutput, ParamValue};

/// `refpoint jobs …`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List every job kept (CIM_ConcreteJob and subclasses).
    List,
    /// One job with its affected elements (Msvm_AffectedJobElement) and errors (GetErrorEx).
    Show {
        /// InstanceID or object path.
        job: String,
    },
    /// Wait until the job is finished (JobState 7, 8, 9, 10 or 32768).
    Wait {
        /// InstanceID or object path.
        job: String,
        /// Give up after this many seconds (exit 1, 32772 Timeout).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// RequestStateChange(3): suspend.
    Suspend {
        /// InstanceID or object path.
        job: String,
    },
    /// RequestStateChange(2): resume a suspended job.
    Resume {
        /// InstanceID or object path.
        job: String,
    },
    /// RequestStateChange(4): terminate (orderly stop).
    Terminate {
        /// InstanceID or object path.
        job: String,
    },
    /// RequestStateChange(5): kill.
    Kill {
        /// InstanceID or object path.
        job: String,
    },
}

/// `JobState` values a client stops polling at.
pub const FINISHED_STATES: [u16; 5] = [7, 8, 9, 10, 32768];

/// The path of JOB (an InstanceID → `Msvm_ConcreteJob.InstanceID="…"`,
/// which finds export jobs too).
///
/// # Errors
/// 32773 for a malformed path.
pub fn job_path(job: &str) -> Result<ObjectPath, RefpointError> {
    if job.contains('=') {
        job.parse::<ObjectPath>().map_err(|e| {
            RefpointError::new(
                ReturnCode::InvalidParameter,
                format!("job path {job:?}: {e}"),
            )
        })
    } else {
        Ok(ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", job))
    }
}

/// Every job (`EnumerateInstances CIM_ConcreteJob`).
///
/// # Errors
/// The CIM operation error.
pub fn list(ops: &dyn CimOperations) -> Result<Vec<(ObjectPath, Instance)>, RefpointError> {
    ops.enumerate_instances("CIM_ConcreteJob")
        .map_err(|e| op_error(&e))
}

/// A job: its instance, the elements it affects, its `GetErrorEx` errors.
#[derive(Debug, Clone)]
pub struct JobDetails {
    /// The job instance.
    pub instance: Instance,
    /// `(path, instance)` of each affected element still present.
    pub affected: Vec<(ObjectPath, Instance)>,
    /// `GetErrorEx` `Errors[]` (embedded `Msvm_Error` CIM-XML).
    pub errors: Vec<String>,
}

/// `GetInstance`, `Associators(AssocClass=Msvm_AffectedJobElement)`, `GetErrorEx`.
///
/// # Errors
/// The CIM operation error (6 for an unknown job).
pub fn show(ops: &dyn CimOperations, job: &str) -> Result<JobDetails, RefpointError> {
    let path = job_path(job)?;
    let instance = ops.get_instance(&path).map_err(|e| op_error(&e))?;
    let affected = ops
        .associators(&path, Some("Msvm_AffectedJobElement"), None, None, None)
        .map_err(|e| op_error(&e))?;
    let errors = match ops
        .invoke_method(&path, "GetErrorEx", &[])
        .map_err(|e| op_error(&e))?
        .out("Errors")
    {
        Some(ParamValue::Array(e)) => e.clone(),
        _ => Vec::new(),
    };
    Ok(JobDetails {
        instance,
        affected,
        errors,
    })
}

/// The `JobState` of an instance.
pub fn job_state(instance: &Instance) -> Option<u16> {
    instance.get_u16("JobState").ok().flatten()
}

/// Polls the job every `interval` until its `JobState` is finished (see
/// [`FINISHED_STATES`]) and returns the final instance.
///
/// # Errors
/// The CIM operation error; 32772 when `timeout` passes first.
pub fn wait(
    ops: &dyn CimOperations,
    job: &str,
    timeout: Option<Duration>,
    interval: Duration,
) -> Result<Instance, RefpointError> {
    let path = job_path(job)?;
    let started = Instant::now();
    loop {
        let instance = ops.get_instance(&path).map_err(|e| op_error(&e))?;
        if job_state(&instance).is_some_and(|s| FINISHED_STATES.contains(&s)) {
            return Ok(instance);
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Err(RefpointError::new(
                ReturnCode::Timeout,
                format!(
                    "job {job} still in JobState {} after {:?}",
                    job_state(&instance).unwrap_or(0),
                    started.elapsed()
                ),
            ));
        }
        std::thread::sleep(interval);
    }
}

/// `RequestStateChange(requested)` on the job.
///
/// # Errors
/// The CIM operation error (6 for an unknown job).
pub fn request(
    ops: &dyn CimOperations,
    job: &str,
    requested: u16,
) -> Result<MethodOutput, RefpointError> {
    let path = job_path(job)?;
    ops.invoke_method(
        &path,
        "RequestStateChange",
        &[(
            "RequestedState".to_owned(),
            ParamValue::Value(requested.to_string()),
        )],
    )
    .map_err(|e| op_error(&e))
}

fn text(instance: &Instance, name: &str) -> String {
    instance
        .property(name)
        .map(|p| match &p.value {
            refpoint_cim::PropertyValue::Scalar(v) => v.to_text(),
            _ => String::new(),
        })
        .unwrap_or_default()
}

/// Runs `refpoint jobs …` and prints; returns the exit code (`wait`: 0 when
/// the job succeeded (7, 32768), 1 otherwise; state requests: 0 for 0/4096,
/// 1 otherwise).
///
/// # Errors
/// As the functions above.
pub fn run(ops: &dyn CimOperations, json: bool, cmd: &JobsCommand) -> Result<i32, RefpointError> {
    let print = |value: &Value| {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    };
    match cmd {
        JobsCommand::List => {
            let jobs = list(ops)?;
            if json {
                print(&Value::Array(
                    jobs.iter().map(|(_, i)| instance_json(i)).collect(),
                ));
            } else {
                println!(
                    "{:<36}  {:>7}  {:>8}  {:>4}  {:<25}  DESCRIPTION",
                    "INSTANCEID", "JOBTYPE", "JOBSTATE", "PCT", "TIMESUBMITTED"
                );
                for (_, i) in &jobs {
                    println!(
                        "{:<36}  {:>7}  {:>8}  {:>4}  {:<25}  {}",
                        text(i, "InstanceID"),
                        text(i, "JobType"),
                        text(i, "JobState"),
                        text(i, "PercentComplete"),
                        text(i, "TimeSubmitted"),
                        text(i, "Description")
                    );
                }
            }
            Ok(0)
        }
        JobsCommand::Show { job } => {
            let details = show(ops, job)?;
            if json {
                print(&json!({
                    "Job": instance_json(&details.instance),
                    "AffectedElements": details.affected.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(),
                    "Errors": details.errors,
                }));
            } else {
                println!("{}", details.instance.to_xml());
                for (p, _) in &details.affected {
                    println!("affected: {p}");
                }
                for e in &details.errors {
                    println!("error: {e}");
                }
            }
            Ok(0)
        }
        JobsCommand::Wait { job, timeout } => {
            let instance = wait(
                ops,
                job,
                timeout.map(Duration::from_secs),
                Duration::from_millis(100),
            )?;
            if json {
                print(&instance_json(&instance));
            } else {
                println!(
                    "job {} JobState {} ErrorCode {} {}",
                    text(&instance, "InstanceID"),
                    text(&instance, "JobState"),
                    text(&instance, "ErrorCode"),
                    text(&instance, "ErrorDescription")
                );
            }
            let state = job_state(&instance).unwrap_or(0);
            Ok(i32::from(state != 7 && state != 32768))
        }
        JobsCommand::Suspend { job }
        | JobsCommand::Resume { job }
        | JobsCommand::Terminate { job }
        | JobsCommand::Kill { job } => {
            let requested = match cmd {
                JobsCommand::Suspend { .. } => 3,
                JobsCommand::Resume { .. } => 2,
                JobsCommand::Terminate { .. } => 4,
                _ => 5,
            };
            let output = request(ops, job, requested)?;
            if json {
                print(&output_json(&output));
            } else {
                println!(
                    "RequestStateChange({requested}) returned {}",
                    output.return_value
                );
            }
            let ok = output.return_value == 0 || output.return_value == 4096;
            if !ok {
                eprintln!(
                    "refpoint: RequestStateChange({requested}) on {job} returned {}: {}",
                    output.return_value,
                    output.error.as_deref().unwrap_or("")
                );
            }
            Ok(i32::from(!ok))
        }
    }
}
