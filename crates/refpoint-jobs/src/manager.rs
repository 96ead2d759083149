//! [`JobManager`]: submits work as `CIM_ConcreteJob`-shaped jobs, keeps their
//! records, answers `RequestStateChange`, `GetError`/`GetErrorEx`, `KillJob`,
//! keeps `Msvm_AffectedJobElement` associations, and removes finished jobs
//! after `TimeBeforeRemoval`.
//!
//! With a [`JobStore`] ([`JobManager::with_store`]) every job's record is
//! written on submission, on every `JobState` change and when an affected
//! element is added, and removed with the job; [`JobManager::restore`]
//! loads the history after a restart (jobs found unfinished become
//! Exception, [`crate::store::INTERRUPTED_REASON`]).
//!
//! Each job's work runs whole on one OS thread (never on an async
//! executor), taken from a bounded set of runner threads
//! ([`JobManager::set_max_running`], default
//! [`crate::runners::DEFAULT_MAX_RUNNING_JOBS`]); jobs beyond the bound
//! wait in submission order, New. Waiting is available both blocking and
//! async (tokio `watch`).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use refpoint_cim::codes::{RequestStateChangeCode, ReturnCodeA, ReturnCodeB};
use refpoint_cim::{CimDateTime, CimInterval, CimType, Instance, MsvmError, ObjectPath, severity};
use uuid::Uuid;

use crate::control::{JobControl, Observer, Shared};
use crate::job::{HEALTH_STATE_OK, Job, operational, status_text};
use crate::outcome::{CollectionExportParameters, ExportParameters, JobFailure, JobOutput};
use crate::runners::{DEFAULT_MAX_RUNNING_JOBS, Runners};
use crate::state::{JobState, JobType, RequestedState};
use crate::store::{INTERRUPTED_REASON, JobStore, StoreError, StoredAffected};

/// `ElementEffects` value 5 (Create) of `CIM_AffectedJobElement`.
pub const ELEMENT_EFFECTS_CREATE: u16 = 5;

/// Default `TimeBeforeRemoval` of Msvm jobs: 5 minutes.
pub const DEFAULT_TIME_BEFORE_REMOVAL: Duration = Duration::from_secs(300);

/// Errors of the job manager's own operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    /// No job with this InstanceID (never existed, or removed after `TimeBeforeRemoval`).
    #[error("no job with InstanceID {id}")]
    NotFound {
        /// The InstanceID asked for.
        id: String,
    },
    /// The OS refused to start the job's thread.
    #[error("cannot start a thread for job {id}: {source}")]
    Spawn {
        /// The job's InstanceID.
        id: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl JobsError {
    /// Table A code: 32773 (Invalid parameter) for an unknown job, 32778 (Out of memory) for a spawn failure.
    pub fn return_code(&self) -> ReturnCodeA {
        match self {
            JobsError::NotFound { .. } => ReturnCodeA::InvalidParameter,
            JobsError::Spawn { .. } => ReturnCodeA::OutOfMemory,
        }
    }
}

/// What to submit: type, description, `Cancellable`, and export parameters.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// `JobType`.
    pub job_type: JobType,
    /// `Description`.
    pub description: String,
    /// `Cancellable`.
    pub cancellable: bool,
    /// Export-job input fields (`ExportDirectory`, `VirtualMachineId`, …).
    pub export: Option<ExportParameters>,
    /// Collection export-job input fields (`CollectionId`, `ReferencePointGroupId`, …).
    pub collection_export: Option<CollectionExportParameters>,
}

impl JobSpec {
    /// A cancellable job of `job_type`.
    pub fn new(job_type: JobType, description: impl Into<String>) -> JobSpec {
        JobSpec {
            job_type,
            description: description.into(),
            cancellable: true,
            export: None,
            collection_export: None,
        }
    }

    /// Builder: sets `Cancellable`.
    pub fn cancellable(mut self, cancellable: bool) -> JobSpec {
        self.cancellable = cancellable;
        self
    }

    /// Builder: sets the export parameters.
    pub fn export(mut self, export: ExportParameters) -> JobSpec {
        self.export = Some(export);
        self
    }

    /// Builder: sets the collection export parameters (JobType 206).
    pub fn collection_export(mut self, export: CollectionExportParameters) -> JobSpec {
        self.collection_export = Some(export);
        self
    }
}

/// One `Msvm_AffectedJobElement` association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedElement {
    /// `AffectedElement`: the element's object path.
    pub affected_element: ObjectPath,
    /// `AffectingElement`: the job's object path.
    pub affecting_element: ObjectPath,
    /// `ElementEffects[]` (5 = Create).
    pub element_effects: Vec<u16>,
}

impl AffectedElement {
    /// The association instance `Msvm_AffectedJobElement`.
    pub fn to_instance(&self) -> Instance {
        Instance::new("Msvm_AffectedJobElement")
            .with("AffectedElement", self.affected_element.clone())
            .with("AffectingElement", self.affecting_element.clone())
            .with_typed(
                "ElementEffects",
                self.element_effects.clone(),
                CimType::Uint16,
            )
    }
}

/// Fields fixed at submission.
#[derive(Debug)]
struct Static {
    id: String,
    seq: u64,
    spec: JobSpec,
    time_submitted: CimDateTime,
}

#[derive(Debug)]
enum Body {
    Live(Arc<JobControl>),
    /// A finished job restored from persistence.
    Archived(Box<Job>),
}

#[derive(Debug)]
struct Entry {
    fixed: Static,
    body: Body,
    affected: Mutex<Vec<AffectedElement>>,
    /// When an archived entry was imported (its retention starts then).
    imported_at: Instant,
}

impl Entry {
    fn finished_at(&self) -> Option<Instant> {
        match &self.body {
            Body::Live(c) => c.lock().ended_at,
            Body::Archived(_) => Some(self.imported_at),
        }
    }

    fn object_path(&self) -> ObjectPath {
        ObjectPath::new(self.fixed.spec.job_type.class_name())
            .with_key("InstanceID", &self.fixed.id)
    }

    fn affected(&self) -> MutexGuard<'_, Vec<AffectedElement>> {
        self.affected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, retention: CimInterval) -> Job {
        match &self.body {
            Body::Archived(job) => (**job).clone(),
            Body::Live(c) => self.record_with(c, &c.lock(), retention),
        }
    }

    fn stored_affected(&self) -> Vec<StoredAffected> {
        self.affected()
            .iter()
            .map(|a| StoredAffected {
                element: a.affected_element.clone(),
                effects: a.element_effects.clone(),
            })
            .collect()
    }

    /// The record of a live job from its locked state `g`.
    fn record_with(&self, control: &JobControl, g: &Shared, retention: CimInterval) -> Job {
        let done = control.bytes_done();
        let total = control.bytes_total();
        let spec = &self.fixed.spec;
        let (operational_status, status_descriptions) = operational(g.state);
        let export = spec.export.clone().unwrap_or_default();
        let result = g.export.clone().unwrap_or_default();
        let is_export = spec.export.is_some();
        let group = spec.collection_export.clone();
        let directory = match &group {
            Some(g) => Some(g.export_directory.clone()),
            None => is_export.then(|| export.export_directory.clone()),
        };
        Job {
            instance_id: self.fixed.id.clone(),
            name: spec.job_type.description().to_owned(),
            caption: spec.job_type.description().to_owned(),
            description: spec.description.clone(),
            element_name: spec.job_type.description().to_owned(),
            job_state: g.state,
            job_status: status_text(g.state).to_owned(),
            job_type: spec.job_type,
            percent_complete: percent(g.state, done, total),
            time_submitted: self.fixed.time_submitted,
            start_time: g.start_time.unwrap_or(CimDateTime::unknown()),
            elapsed_time: g.elapsed(),
            time_of_last_state_change: g.time_of_last_state_change,
            time_before_removal: retention,
            delete_on_completion: true,
            cancellable: spec.cancellable,
            error_code: g
                .error
                .as_ref()
                .map_or(0, |e| u16::try_from(e.code.value()).unwrap_or(u16::MAX)),
            error_description: g.error.as_ref().map(|e| e.description.clone()),
            error_summary_description: g.error.as_ref().map(|e| e.summary.clone()),
            operational_status,
            status_descriptions,
            health_state: HEALTH_STATE_OK,
            export_directory: directory,
            virtual_machine_id: is_export.then(|| export.virtual_machine_id.clone()),
            reference_point_id: is_export.then(|| export.reference_point_id.clone()),
            base_reference_point_id: export.base_reference_point_id.clone(),
            exported_disks: result.exported_disks,
            exported_log_file_paths: result.exported_log_file_paths,
            exported_config_file_path: result.exported_config_file_path,
            exported_runtime_file_path: result.exported_runtime_file_path,
            exported_guest_state_file_path: result.exported_guest_state_file_path,
            exported_config_file_paths: result.exported_config_file_paths,
            collection_id: group.as_ref().map(|g| g.collection_id.clone()),
            reference_point_group_id: group.as_ref().map(|g| g.reference_point_group_id.clone()),
            base_reference_point_group_id: group
                .as_ref()
                .and_then(|g| g.base_reference_point_group_id.clone()),
            virtual_machine_ids: group.map(|g| g.virtual_machine_ids).unwrap_or_default(),
            errors: errors_of(g),
        }
    }
}

/// `PercentComplete` as [`JobControl::percent_complete`], computed under the lock.
fn percent(state: JobState, done: u64, total: u64) -> u16 {
    if state.is_success() {
        return 100;
    }
    if total == 0 {
        return 0;
    }
    u16::try_from((u128::from(done) * 100 / u128::from(total)).min(100)).unwrap_or(100)
}

/// The `Msvm_Error` list `GetErrorEx` returns for the job's current outcome.
fn errors_of(g: &Shared) -> Vec<MsvmError> {
    if let Some(e) = &g.error {
        if e.errors.is_empty() {
            return vec![MsvmError::new(e.code, &e.description)];
        }
        return e.errors.clone();
    }
    g.warnings
        .iter()
        .map(|w| {
            let mut m = MsvmError::new(ReturnCodeA::Completed, w).with_severity(severity::MEDIUM);
            m.cim_status_code = 0;
            m.cim_status_code_description = None;
            m.probable_cause_description = Some("Completed with warnings".to_owned());
            m
        })
        .collect()
}

#[derive(Debug)]
struct Inner {
    jobs: Mutex<HashMap<String, Arc<Entry>>>,
    next_seq: Mutex<u64>,
    retention: Duration,
    store: Option<JobStore>,
    runners: Arc<Runners>,
}

/// The job manager. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

impl Default for JobManager {
    fn default() -> Self {
        JobManager::new()
    }
}

impl JobManager {
    /// A manager with the documented 5-minute `TimeBeforeRemoval`.
    pub fn new() -> JobManager {
        JobManager::with_retention(DEFAULT_TIME_BEFORE_REMOVAL)
    }

    /// A manager removing finished jobs `retention` after they finish (tests use short values).
    pub fn with_retention(retention: Duration) -> JobManager {
        JobManager {
            inner: Arc::new(Inner {
                jobs: Mutex::new(HashMap::new()),
                next_seq: Mutex::new(0),
                retention,
                store: None,
                runners: Arc::new(Runners::new(DEFAULT_MAX_RUNNING_JOBS)),
            }),
        }
    }

    /// A manager that persists every job in `store` (see the module docs)
    /// and removes finished jobs `retention` after they finish. Call
    /// [`JobManager::restore`] to load the history already in the store.
    pub fn with_store(retention: Duration, store: JobStore) -> JobManager {
        JobManager {
            inner: Arc::new(Inner {
                jobs: Mutex::new(HashMap::new()),
                next_seq: Mutex::new(0),
                retention,
                store: Some(store),
                runners: Arc::new(Runners::new(DEFAULT_MAX_RUNNING_JOBS)),
            }),
        }
    }

    /// Bounds the jobs running at once (their threads) to `limit` (at least
    /// 1); later jobs wait, New, in submission order.
    pub fn set_max_running(&self, limit: usize) {
        self.inner.runners.set_limit(limit);
    }

    /// The store, if the manager persists its jobs.
    pub fn store(&self) -> Option<&JobStore> {
        self.inner.store.as_ref()
    }

    /// Writes the current record of `entry` (no-op without a store). A
    /// failed write is logged: the job itself goes on.
    fn persist(&self, entry: &Entry) {
        if let Some(store) = &self.inner.store {
            let job = entry.record(self.retention_interval());
            if let Err(e) = store.save(&job, &entry.stored_affected()) {
                tracing::warn!(job = %job.instance_id, error = %e, "cannot persist job record");
            }
        }
    }

    fn retention_interval(&self) -> CimInterval {
        CimInterval::saturating_from_duration(self.inner.retention)
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes finished jobs whose `TimeBeforeRemoval` has passed.
    fn purge(&self) {
        let retention = self.inner.retention;
        let now = Instant::now();
        let mut removed = Vec::new();
        self.jobs().retain(|id, e| {
            let keep = match e.finished_at() {
                Some(t) => now.saturating_duration_since(t) < retention,
                None => true,
            };
            if !keep {
                removed.push(id.clone());
            }
            keep
        });
        if let Some(store) = &self.inner.store {
            for id in removed {
                if let Err(e) = store.remove(&id) {
                    tracing::warn!(job = %id, error = %e, "cannot remove expired job record");
                }
            }
        }
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, JobsError> {
        self.purge();
        let jobs = self.jobs();
        jobs.get(id)
            .or_else(|| jobs.get(&id.to_ascii_uppercase()))
            .cloned()
            .ok_or_else(|| JobsError::NotFound { id: id.to_owned() })
    }

    fn next_seq(&self) -> u64 {
        let mut s = self
            .inner
            .next_seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s += 1;
        *s
    }

    /// Submits `work` as a new cancellable-or-not job of `job_type`; returns its InstanceID.
    ///
    /// # Errors
    /// [`JobsError::Spawn`] when no thread can be started.
    pub fn submit<F>(
        &self,
        job_type: JobType,
        description: &str,
        cancellable: bool,
        work: F,
    ) -> Result<String, JobsError>
    where
        F: FnOnce(Arc<JobControl>) -> Result<JobOutput, JobFailure> + Send + 'static,
    {
        self.submit_spec(
            JobSpec::new(job_type, description).cancellable(cancellable),
            work,
        )
    }

    /// Submits `work` described by `spec`; returns the job's InstanceID (upper-case GUID).
    ///
    /// The job is New when this returns; its thread moves it to Starting and
    /// Running, then to the terminal state given by the work's result:
    /// `Ok` → Completed (or CompletedWithWarnings with warnings),
    /// `Err(Interrupted)` → Terminated / Killed, `Err(Failed)` → Exception.
    /// A panic in the work is caught and reported as Exception 32768.
    ///
    /// # Errors
    /// [`JobsError::Spawn`] when no runner thread exists and none can be started.
    pub fn submit_spec<F>(&self, spec: JobSpec, work: F) -> Result<String, JobsError>
    where
        F: FnOnce(Arc<JobControl>) -> Result<JobOutput, JobFailure> + Send + 'static,
    {
        self.purge();
        let id = Uuid::new_v4().to_string().to_ascii_uppercase();
        let control = JobControl::new(spec.cancellable);
        let entry = Arc::new(Entry {
            fixed: Static {
                id: id.clone(),
                seq: self.next_seq(),
                spec,
                time_submitted: CimDateTime::now_utc(),
            },
            body: Body::Live(Arc::clone(&control)),
            affected: Mutex::new(Vec::new()),
            imported_at: Instant::now(),
        });
        if let Some(store) = &self.inner.store {
            let weak: Weak<Entry> = Arc::downgrade(&entry);
            let store = store.clone();
            let retention = self.retention_interval();
            control.set_observer(Observer(Box::new(move |g: &Shared| {
                let Some(entry) = weak.upgrade() else {
                    return;
                };
                let Body::Live(control) = &entry.body else {
                    return;
                };
                let job = entry.record_with(control, g, retention);
                if let Err(e) = store.save(&job, &entry.stored_affected()) {
                    tracing::warn!(job = %job.instance_id, error = %e, "cannot persist job record");
                }
            })));
            self.persist(&entry);
        }
        self.jobs().insert(id.clone(), Arc::clone(&entry));
        let spawned = self
            .inner
            .runners
            .push(Box::new(move || run(&entry, &control, work)));
        if let Err(source) = spawned {
            self.jobs().remove(&id);
            if let Some(store) = &self.inner.store {
                let _ = store.remove(&id);
            }
            return Err(JobsError::Spawn { id, source });
        }
        Ok(id)
    }

    /// The current record of job `id`.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn get(&self, id: &str) -> Result<Job, JobsError> {
        Ok(self.entry(id)?.record(self.retention_interval()))
    }

    /// All jobs still kept, in submission order.
    pub fn list(&self) -> Vec<Job> {
        self.purge();
        let mut entries: Vec<Arc<Entry>> = self.jobs().values().cloned().collect();
        entries.sort_by_key(|e| e.fixed.seq);
        let retention = self.retention_interval();
        entries.iter().map(|e| e.record(retention)).collect()
    }

    /// The control handle of a live job (progress, state, waiting).
    ///
    /// # Errors
    /// [`JobsError::NotFound`] (also for archived jobs, which have no control).
    pub fn control(&self, id: &str) -> Result<Arc<JobControl>, JobsError> {
        match &self.entry(id)?.body {
            Body::Live(c) => Ok(Arc::clone(c)),
            Body::Archived(_) => Err(JobsError::NotFound { id: id.to_owned() }),
        }
    }

    /// Waits (async) until job `id` is finished and returns its final record.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub async fn wait(&self, id: &str) -> Result<Job, JobsError> {
        let entry = self.entry(id)?;
        if let Body::Live(c) = &entry.body {
            let mut rx = c.subscribe();
            // The sender lives in the control, which `entry` keeps alive.
            let _ = rx.wait_for(|s| s.is_finished()).await;
        }
        Ok(entry.record(self.retention_interval()))
    }

    /// Waits (blocking) until job `id` is finished and returns its final record.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn wait_blocking(&self, id: &str) -> Result<Job, JobsError> {
        let entry = self.entry(id)?;
        if let Body::Live(c) = &entry.body {
            c.wait_for_state(Duration::MAX, JobState::is_finished);
        }
        Ok(entry.record(self.retention_interval()))
    }

    /// Waits (blocking) up to `timeout` until the state of job `id` satisfies
    /// `pred`; returns the record then (which may not satisfy `pred` on timeout).
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(JobState) -> bool,
    ) -> Result<Job, JobsError> {
        let entry = self.entry(id)?;
        if let Body::Live(c) = &entry.body {
            c.wait_for_state(timeout, pred);
        }
        Ok(entry.record(self.retention_interval()))
    }

    /// `RequestStateChange(RequestedState, TimeoutPeriod)` on job `id`
    /// (semantics in [`crate::control`]): a non-zero `timeout` → 4098;
    /// `requested` outside 2..=6 → 5 (invalid parameter); a finished job → 4097.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn request_state_change(
        &self,
        id: &str,
        requested: u16,
        timeout: Option<CimInterval>,
    ) -> Result<RequestStateChangeCode, JobsError> {
        let entry = self.entry(id)?;
        if timeout.is_some_and(|t| t != CimInterval::ZERO) {
            return Ok(RequestStateChangeCode::TimeoutNotSupported);
        }
        let Ok(requested) = RequestedState::try_from(requested) else {
            return Ok(RequestStateChangeCode::InvalidParameter);
        };
        Ok(match &entry.body {
            Body::Live(c) => c.request_state_change(requested),
            Body::Archived(_) => RequestStateChangeCode::InvalidStateTransition,
        })
    }

    /// `GetError`: `(0, Msvm_Error CIM-XML)` for a failed job (or the first
    /// warning), `(0, None)` when OK or still running.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn get_error(&self, id: &str) -> Result<(ReturnCodeA, Option<String>), JobsError> {
        Ok(self.get(id)?.get_error())
    }

    /// `GetErrorEx`: `(0, [Msvm_Error CIM-XML, …])` for a failed job or one
    /// with warnings, `(0, None)` when OK or still running.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn get_error_ex(&self, id: &str) -> Result<(ReturnCodeA, Option<Vec<String>>), JobsError> {
        Ok(self.get(id)?.get_error_ex())
    }

    /// `KillJob(DeleteOnKill)`: not supported on Msvm jobs (returns 1); use
    /// `RequestStateChange(5)`.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn kill_job(&self, id: &str, _delete_on_kill: bool) -> Result<ReturnCodeB, JobsError> {
        self.entry(id)?;
        Ok(ReturnCodeB::NotSupported)
    }

    /// Associates `element` with job `id` (`Msvm_AffectedJobElement`), e.g.
    /// `ElementEffects` `[5]` (Create) for the object the job creates.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn add_affected_element(
        &self,
        id: &str,
        element: ObjectPath,
        effects: &[u16],
    ) -> Result<(), JobsError> {
        let entry = self.entry(id)?;
        add_affected(&entry, element, effects);
        self.persist(&entry);
        Ok(())
    }

    /// The `Msvm_AffectedJobElement` associations of job `id`.
    ///
    /// # Errors
    /// [`JobsError::NotFound`].
    pub fn affected_elements(&self, id: &str) -> Result<Vec<AffectedElement>, JobsError> {
        Ok(self.entry(id)?.affected().clone())
    }

    /// InstanceIDs of the kept jobs associated with `element` (class and keys
    /// compared as CIM does), in submission order — what os-win's `stop_jobs` enumerates.
    pub fn jobs_affecting(&self, element: &ObjectPath) -> Vec<String> {
        self.purge();
        let mut hits: Vec<(u64, String)> = self
            .jobs()
            .values()
            .filter(|e| {
                e.affected()
                    .iter()
                    .any(|a| a.affected_element.same_instance(element))
            })
            .map(|e| (e.fixed.seq, e.fixed.id.clone()))
            .collect();
        hits.sort();
        hits.into_iter().map(|(_, id)| id).collect()
    }

    /// Restores a job record (from persistence) with no affected elements;
    /// its retention starts now. An unfinished record is restored as
    /// Exception ([`INTERRUPTED_REASON`]): its work did not survive.
    pub fn import_record(&self, mut job: Job) {
        if !job.job_state.is_finished() {
            mark_interrupted(&mut job);
        }
        self.insert_archived(job, Vec::new(), Duration::ZERO);
    }

    fn insert_archived(&self, job: Job, affected: Vec<AffectedElement>, finished_ago: Duration) {
        let now = Instant::now();
        let entry = Arc::new(Entry {
            fixed: Static {
                id: job.instance_id.clone(),
                seq: self.next_seq(),
                spec: JobSpec::new(job.job_type, job.description.clone())
                    .cancellable(job.cancellable),
                time_submitted: job.time_submitted,
            },
            body: Body::Archived(Box::new(job)),
            affected: Mutex::new(affected),
            imported_at: now.checked_sub(finished_ago).unwrap_or(now),
        });
        self.jobs().insert(entry.fixed.id.clone(), entry);
    }

    /// Loads the job history from the store (no-op without one).
    ///
    /// * A finished job whose `TimeBeforeRemoval` has passed since its
    ///   `TimeOfLastStateChange` is deleted.
    /// * Another finished job is kept for the rest of its retention, with its
    ///   `Msvm_AffectedJobElement` associations.
    /// * An unfinished job (its process ended) becomes Exception with
    ///   `ErrorCode` 32768, `ErrorSummaryDescription` [`INTERRUPTED_REASON`]
    ///   and an `ErrorDescription` naming the state it was in; the new record
    ///   is written back. These jobs are returned in
    ///   [`RestoreReport::interrupted`] so the caller can clean up after them.
    ///
    /// Jobs already known to this manager are left alone.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the job directory cannot be listed; damaged
    /// record files are reported in [`RestoreReport::invalid`] instead.
    pub fn restore(&self) -> Result<RestoreReport, StoreError> {
        let mut report = RestoreReport::default();
        let Some(store) = &self.inner.store else {
            return Ok(report);
        };
        let (records, invalid) = store.load()?;
        report.invalid = invalid;
        let now = time::OffsetDateTime::now_utc();
        for record in records {
            let mut job = record.job;
            if self.jobs().contains_key(&job.instance_id) {
                continue;
            }
            let job_path =
                ObjectPath::new(job.job_type.class_name()).with_key("InstanceID", &job.instance_id);
            let affected: Vec<AffectedElement> = record
                .affected
                .into_iter()
                .map(|a| AffectedElement {
                    affected_element: a.element,
                    affecting_element: job_path.clone(),
                    element_effects: a.effects,
                })
                .collect();
            let finished_ago = if job.job_state.is_finished() {
                let changed = job.time_of_last_state_change.to_offset_date_time();
                let age = changed
                    .map(|t| now - t)
                    .and_then(|d| Duration::try_from(d).ok())
                    .unwrap_or(Duration::ZERO);
                if age >= self.inner.retention {
                    if let Err(e) = store.remove(&job.instance_id) {
                        tracing::warn!(job = %job.instance_id, error = %e, "cannot remove expired job record");
                    }
                    report.expired.push(job.instance_id);
                    continue;
                }
                age
            } else {
                mark_interrupted(&mut job);
                let stored: Vec<StoredAffected> = affected
                    .iter()
                    .map(|a| StoredAffected {
                        element: a.affected_element.clone(),
                        effects: a.element_effects.clone(),
                    })
                    .collect();
                if let Err(e) = store.save(&job, &stored) {
                    tracing::warn!(job = %job.instance_id, error = %e, "cannot persist interrupted job record");
                }
                report.interrupted.push(job.clone());
                Duration::ZERO
            };
            report.restored += 1;
            self.insert_archived(job, affected, finished_ago);
        }
        Ok(report)
    }
}

/// What [`JobManager::restore`] did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Jobs now kept again (finished ones and interrupted ones).
    pub restored: usize,
    /// Jobs that were unfinished in the store, as now recorded (Exception).
    pub interrupted: Vec<Job>,
    /// InstanceIDs of finished jobs whose retention had passed (deleted).
    pub expired: Vec<String>,
    /// Record files that could not be read (left in place).
    pub invalid: Vec<StoreError>,
}

/// Turns the record of a job whose process ended before it finished into
/// Exception: `ErrorCode` 32768 (Failed), `ErrorSummaryDescription`
/// [`INTERRUPTED_REASON`], `ErrorDescription` naming the state it was in,
/// one `Msvm_Error` for `GetErrorEx`; `TimeOfLastStateChange` is now.
fn mark_interrupted(job: &mut Job) {
    let was = job.job_state;
    let description = format!(
        "{INTERRUPTED_REASON} while job {} ({}) was {was}",
        job.instance_id,
        job.job_type.description()
    );
    job.job_state = JobState::Exception;
    job.job_status = status_text(JobState::Exception).to_owned();
    let (ops, texts) = operational(JobState::Exception);
    job.operational_status = ops;
    job.status_descriptions = texts;
    job.error_code = u16::try_from(ReturnCodeA::Failed.value()).unwrap_or(u16::MAX);
    job.error_summary_description = Some(INTERRUPTED_REASON.to_owned());
    job.errors = vec![MsvmError::new(ReturnCodeA::Failed, &description)];
    job.error_description = Some(description);
    job.time_of_last_state_change = CimDateTime::now_utc();
}

fn add_affected(entry: &Entry, element: ObjectPath, effects: &[u16]) {
    let job_path = entry.object_path();
    let mut list = entry.affected();
    if let Some(existing) = list
        .iter_mut()
        .find(|a| a.affected_element.same_instance(&element))
    {
        for e in effects {
            if !existing.element_effects.contains(e) {
                existing.element_effects.push(*e);
            }
        }
    } else {
        list.push(AffectedElement {
            affected_element: element,
            affecting_element: job_path,
            element_effects: effects.to_vec(),
        });
    }
}

/// The job thread: begin, run the work (panics caught), register created
/// elements, finish.
fn run<F>(entry: &Entry, control: &Arc<JobControl>, work: F)
where
    F: FnOnce(Arc<JobControl>) -> Result<JobOutput, JobFailure>,
{
    let result = match control.begin() {
        Err(interrupted) => Err(JobFailure::Interrupted(interrupted)),
        Ok(()) => {
            catch_unwind(AssertUnwindSafe(|| work(Arc::clone(control)))).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(JobFailure::failed(
                    ReturnCodeA::Failed,
                    format!("internal error: the job's work panicked: {what}"),
                ))
            })
        }
    };
    if let Ok(output) = &result {
        for created in &output.created {
            add_affected(entry, created.clone(), &[ELEMENT_EFFECTS_CREATE]);
        }
    }
    control.finish(result);
}
