//! The method surface, shaped like the WMI services of
//! `root\virtualization\v2`: same class and method names, parameters as
//! object paths and CIM-XML strings, results as a `ReturnValue` plus
//! out-parameters and a job reference; and a typed API on top.
//!
//! [`Refpoint`] is the in-process counterpart of vmms.exe: it owns one host
//! (holding its lock) and runs the jobs its methods start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use refpoint_cim::ObjectPath;
use refpoint_core::Host;
use refpoint_engine::{EngineConfig, Scheduler};
use refpoint_jobs::{DEFAULT_TIME_BEFORE_REMOVAL, Job, JobManager, JobStore, RestoreReport};

use crate::error::{RefpointError, ReturnCode};
use crate::export::{self, ExportOptions};

/// CIM namespace of every object refpoint serves.
pub const NAMESPACE: &str = r"root\virtualization\v2";

/// Result of a WMI-shaped method call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MethodResult {
    /// `ReturnValue` (uint32): 0, 4096 or a Table A/B error code.
    #[serde(rename = "ReturnValue")]
    pub return_value: u32,
    /// `Job` out-parameter: object path of the `Msvm_ConcreteJob` when 4096.
    #[serde(rename = "Job", skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Job InstanceID when a job was started.
    #[serde(skip)]
    pub job_id: Option<String>,
    /// Error message when `return_value` is an error code.
    #[serde(rename = "ErrorDescription", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MethodResult {
    fn started(host_name: &str, job_id: String) -> Self {
        MethodResult {
            return_value: ReturnCode::JobStarted.value(),
            job: Some(job_path(host_name, &job_id)),
            job_id: Some(job_id),
            error: None,
        }
    }

    fn failed(e: &RefpointError) -> Self {
        MethodResult {
            return_value: e.return_value(),
            job: None,
            job_id: None,
            error: Some(e.message().to_string()),
        }
    }
}

/// Object path of a job: `\\HOST\root\virtualization\v2:Msvm_ConcreteJob.InstanceID="GUID"`.
pub fn job_path(host_name: &str, job_id: &str) -> String {
    format!(r#"\\{host_name}\{NAMESPACE}:Msvm_ConcreteJob.InstanceID="{job_id}""#)
}

/// One open host with its job manager: the in-process "vmms".
#[derive(Debug)]
pub struct Refpoint {
    host: Arc<Mutex<Host>>,
    jobs: JobManager,
    engine: EngineConfig,
    /// The one I/O scheduler of the process's exports, made from `engine`
    /// at the first export (and again after [`Refpoint::engine_config_mut`]).
    scheduler: Mutex<Option<Arc<Scheduler>>>,
    host_name: String,
    root: PathBuf,
}

impl Refpoint {
    /// Opens the host store in `dir`, taking its lock for the lifetime of the
    /// returned value, and loads the job history of `<host>/jobs/`: finished
    /// jobs are kept for the rest of their `TimeBeforeRemoval`, jobs that
    /// were still running when their process ended are recorded as
    /// Exception ([`refpoint_jobs::INTERRUPTED_REASON`], `ErrorCode` 32768),
    /// and the staging directories those exports left in their
    /// `ExportDirectory` are removed.
    ///
    /// # Errors
    /// 32777 when `dir` is not a host or another process holds it (the
    /// message names that process's pid); 32768 when the job directory
    /// cannot be listed.
    pub fn open(dir: &Path) -> Result<Self, RefpointError> {
        Self::open_with_retention(dir, DEFAULT_TIME_BEFORE_REMOVAL)
    }

    /// [`Refpoint::open`] with a `TimeBeforeRemoval` other than the
    /// documented 5 minutes (tests of retention).
    ///
    /// # Errors
    /// As [`Refpoint::open`].
    pub fn open_with_retention(dir: &Path, retention: Duration) -> Result<Self, RefpointError> {
        let host = Host::open(dir)?;
        let rp = Self::with_host(host, dir, retention);
        let report = rp.jobs.restore().map_err(|e| {
            RefpointError::new(
                ReturnCode::Failed,
                format!("cannot load the job history: {e}"),
            )
        })?;
        rp.clean_up_after(&report);
        crate::collection::recover_interrupted_exports(&rp, &report);
        Ok(rp)
    }

    /// Creates a host store in `dir` and opens it.
    ///
    /// # Errors
    /// 32773 when `dir` already holds a host; 32769 when it can't be written.
    pub fn init(dir: &Path) -> Result<Self, RefpointError> {
        let host = Host::init(dir)?;
        Ok(Self::with_host(host, dir, DEFAULT_TIME_BEFORE_REMOVAL))
    }

    fn with_host(host: Host, dir: &Path, retention: Duration) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let store = JobStore::new(&host.jobs_dir());
        Refpoint {
            host: Arc::new(Mutex::new(host)),
            jobs: JobManager::with_store(retention, store),
            engine: EngineConfig {
                threads,
                buffer_pool_bytes: 64 << 20,
            },
            scheduler: Mutex::new(None),
            host_name: hostname(),
            root: dir.to_path_buf(),
        }
    }

    /// Removes what interrupted export jobs left behind: the staging
    /// directories in their `ExportDirectory` (the engine's
    /// `cleanup_stale_staging` only removes staging that no live export
    /// holds). Failures are logged; they do not prevent opening the host.
    fn clean_up_after(&self, report: &RestoreReport) {
        for invalid in &report.invalid {
            tracing::warn!(error = %invalid, "job record not restored");
        }
        for job in &report.interrupted {
            let Some(dir) = &job.export_directory else {
                continue;
            };
            let dir = Path::new(dir);
            if !dir.is_dir() {
                continue;
            }
            match refpoint_engine::cleanup_stale_staging(dir) {
                Ok(removed) => {
                    for path in removed {
                        tracing::info!(job = %job.instance_id, staging = %path.display(), "removed staging of an interrupted export");
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %job.instance_id, error = %e, "cannot clean up after an interrupted export");
                }
            }
        }
    }

    /// The host directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host model, locked for the caller.
    pub fn host(&self) -> MutexGuard<'_, Host> {
        self.host
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shared host, for jobs that outlive the call that starts them.
    pub(crate) fn shared_host(&self) -> Arc<Mutex<Host>> {
        Arc::clone(&self.host)
    }

    /// The job manager.
    pub fn jobs(&self) -> &JobManager {
        &self.jobs
    }

    /// Engine settings (threads, buffer pool bytes) used by new exports;
    /// changing them makes the next export start a new scheduler.
    pub fn engine_config_mut(&mut self) -> &mut EngineConfig {
        *self
            .scheduler
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = None;
        &mut self.engine
    }

    /// The I/O scheduler every export of this host shares: one worker pool
    /// of `engine_config().threads` and one buffer budget of
    /// `engine_config().buffer_pool_bytes`, made at the first call.
    ///
    /// # Errors
    /// 32773 when the worker threads cannot be started.
    pub fn scheduler(&self) -> Result<Arc<Scheduler>, RefpointError> {
        let mut slot = self
            .scheduler
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = slot.as_ref() {
            return Ok(Arc::clone(s));
        }
        let made = Arc::new(Scheduler::new(&self.engine)?);
        *slot = Some(Arc::clone(&made));
        Ok(made)
    }

    /// Engine settings used by new exports.
    pub fn engine_config(&self) -> &EngineConfig {
        &self.engine
    }

    /// Name used as `__SERVER` in object paths.
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// `Msvm_VirtualSystemReferencePointService`.
    pub fn reference_point_service(&self) -> VirtualSystemReferencePointService<'_> {
        VirtualSystemReferencePointService { rp: self }
    }

    /// Typed export: validates like `ExportReferencePoint` and starts the job.
    /// `reference_point` is an InstanceID or an object path.
    ///
    /// # Errors
    /// The Table A code of the first parameter that fails validation.
    pub fn export(
        &self,
        reference_point: &str,
        export_directory: &Path,
        options: &ExportOptions,
    ) -> Result<String, RefpointError> {
        let request = {
            let host = self.host();
            export::validate(&host, reference_point, export_directory, options)?
        };
        export::start(&self.jobs, &self.host, request, self.scheduler()?)
    }

    /// Blocks until job `id` is finished and returns its final record.
    ///
    /// # Errors
    /// 32773 when no such job exists.
    pub fn wait(&self, id: &str) -> Result<Job, RefpointError> {
        self.jobs
            .wait_blocking(id)
            .map_err(|e| RefpointError::new(ReturnCode::InvalidParameter, format!("job {id}: {e}")))
    }
}

/// `Msvm_VirtualSystemReferencePointService` (hyperv-api.md §2.1).
#[derive(Debug)]
pub struct VirtualSystemReferencePointService<'a> {
    rp: &'a Refpoint,
}

impl VirtualSystemReferencePointService<'_> {
    /// `ExportReferencePoint(ReferencePoint REF, ExportDirectory, ExportSettingData)`.
    ///
    /// `reference_point` is the object path of a
    /// `Msvm_VirtualSystemReferencePoint` (one-key or two-key form);
    /// `export_directory` must be absolute; `export_setting_data` is an
    /// embedded `Msvm_VirtualSystemReferencePointExportSettingData` in CIM-XML
    /// or empty. Returns 4096 and a job path when the parameters check out,
    /// otherwise the Table A code (32773 unknown RP / relative directory /
    /// disk not in RP, 32776 wrong class or type, 32775 RP without data,
    /// 32774 target in use, 32777 host unavailable).
    pub fn export_reference_point(
        &self,
        reference_point: &str,
        export_directory: &str,
        export_setting_data: &str,
    ) -> MethodResult {
        let result = (|| {
            let path: ObjectPath = reference_point.parse().map_err(RefpointError::from)?;
            if !path
                .class_name
                .eq_ignore_ascii_case("Msvm_VirtualSystemReferencePoint")
            {
                return Err(RefpointError::new(
                    ReturnCode::InvalidParameter,
                    format!(
                        "ReferencePoint: expected a Msvm_VirtualSystemReferencePoint path, got class {}",
                        path.class_name
                    ),
                ));
            }
            let options = export::options_from_setting_data(export_setting_data)?;
            self.rp
                .export(reference_point, Path::new(export_directory), &options)
        })();
        match result {
            Ok(id) => MethodResult::started(&self.rp.host_name, id),
            Err(e) => MethodResult::failed(&e),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
