//! [`JobControl`]: the handle shared between a job's record and its running
//! work — progress counters, the `JobState` machine of hyperv-api.md §4.6 and
//! the suspend/terminate/kill requests that [`JobControl::checkpoint`] acts on.
//!
//! `RequestStateChange` semantics implemented by [`JobControl::request_state_change`]
//! (rows: current state, columns: RequestedState; 0 = done, 4096 = transition
//! started, 4097 = invalid transition, 1 = not supported):
//!
//! | state \ request        | 2 Start | 3 Suspend | 4 Terminate | 5 Kill | 6 Service |
//! |------------------------|---------|-----------|-------------|--------|-----------|
//! | New, Starting          | 0 ¹     | 4096      | 4096        | 4096   | 1         |
//! | Running                | 4097 ¹  | 4096      | 4096        | 4096   | 1         |
//! | Suspended              | 4096    | 0         | 4096        | 4096   | 1         |
//! | Shutting Down          | 4097    | 4097      | 4097        | 4096 ² | 1         |
//! | 7, 8, 9, 10, 32768     | 4097    | 4097      | 4097        | 4097   | 4097      |
//!
//! ¹ a Start while a Suspend is still pending cancels the Suspend and returns 0.
//! ² 0 when a Kill is already pending. Terminate and Kill on a job that is not
//! `Cancellable` return 1 (not supported).
//!
//! Suspend takes effect at the work's next `checkpoint()`, which then blocks
//! (state Suspended) until Start, Terminate or Kill. Terminate and Kill move
//! the job to Shutting Down at once; `checkpoint()` returns the matching
//! [`Interrupted`] and the job ends Terminated / Killed when the work returns.
//! `TimeOfLastStateChange` changes only when `JobState` does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use refpoint_cim::codes::{RequestStateChangeCode, ReturnCodeA};
use refpoint_cim::{CimDateTime, CimInterval, MsvmError};

use crate::outcome::{ExportResult, Interrupted, JobFailure, JobOutput};
use crate::state::{JobState, RequestedState};

/// A request that the work has not acted on yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    None,
    Suspend,
    Terminate,
    Kill,
}

/// Error fields of a job that ended in Exception.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ErrorInfo {
    pub code: ReturnCodeA,
    pub description: String,
    pub summary: String,
    pub errors: Vec<MsvmError>,
}

/// Mutable job state behind the control's mutex.
#[derive(Debug)]
pub(crate) struct Shared {
    pub state: JobState,
    pub pending: Pending,
    pub time_of_last_state_change: CimDateTime,
    pub start_time: Option<CimDateTime>,
    pub started_at: Option<Instant>,
    pub ended_at: Option<Instant>,
    pub error: Option<ErrorInfo>,
    pub warnings: Vec<String>,
    pub export: Option<ExportResult>,
}

impl Shared {
    /// `ElapsedTime`: from the start to now, or to the end once finished; zero before the start.
    pub fn elapsed(&self) -> CimInterval {
        match (self.started_at, self.ended_at) {
            (Some(s), Some(e)) => {
                CimInterval::saturating_from_duration(e.saturating_duration_since(s))
            }
            (Some(s), None) => CimInterval::saturating_from_duration(s.elapsed()),
            _ => CimInterval::ZERO,
        }
    }
}

/// Called with the job's state after every `JobState` change (under the
/// control's lock): the manager persists the record with it.
pub(crate) struct Observer(pub Box<dyn Fn(&Shared) + Send + Sync>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// The control handle of one job (`Arc`-shared, `Send + Sync`).
///
/// The work calls [`JobControl::set_total`] once, [`JobControl::add_progress`]
/// as bytes complete, and [`JobControl::checkpoint`] between blocks.
#[derive(Debug)]
pub struct JobControl {
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    cancellable: bool,
    /// Fast path of `checkpoint()`: true while a request is pending.
    request_flag: AtomicBool,
    shared: Mutex<Shared>,
    changed: Condvar,
    watch: tokio::sync::watch::Sender<JobState>,
    observer: OnceLock<Observer>,
}

impl JobControl {
    /// A control in state New, not attached to a manager (useful to drive an
    /// engine directly in tests).
    pub fn new(cancellable: bool) -> Arc<JobControl> {
        let (watch, _) = tokio::sync::watch::channel(JobState::New);
        Arc::new(JobControl {
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            cancellable,
            request_flag: AtomicBool::new(false),
            shared: Mutex::new(Shared {
                state: JobState::New,
                pending: Pending::None,
                time_of_last_state_change: CimDateTime::now_utc(),
                start_time: None,
                started_at: None,
                ended_at: None,
                error: None,
                warnings: Vec::new(),
                export: None,
            }),
            changed: Condvar::new(),
            watch,
            observer: OnceLock::new(),
        })
    }

    /// Sets the number of bytes the work will process (for `PercentComplete`).
    pub fn set_total(&self, bytes: u64) {
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    /// Adds `bytes` processed bytes.
    pub fn add_progress(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes processed so far.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// Bytes the work said it will process.
    pub fn bytes_total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }

    /// `PercentComplete` from the byte counters: `done * 100 / total`,
    /// clamped to 0..=100; 0 while the total is unknown (0); 100 once the job
    /// completed successfully.
    pub fn percent_complete(&self) -> u16 {
        if self.state().is_success() {
            return 100;
        }
        let total = u128::from(self.bytes_total());
        if total == 0 {
            return 0;
        }
        let pct = (u128::from(self.bytes_done()) * 100 / total).min(100);
        u16::try_from(pct).unwrap_or(100)
    }

    /// True if Terminate and Kill are accepted (`Cancellable`).
    pub fn cancellable(&self) -> bool {
        self.cancellable
    }

    /// The current `JobState`.
    pub fn state(&self) -> JobState {
        self.lock().state
    }

    /// Called by the work between blocks. Returns at once when nothing is
    /// requested; blocks while the job is suspended; returns
    /// `Err(Interrupted::Terminated | Interrupted::Killed)` once Terminate or
    /// Kill was requested (the work should then clean up and return that error).
    ///
    /// # Errors
    /// [`Interrupted`] as described.
    pub fn checkpoint(&self) -> Result<(), Interrupted> {
        if !self.request_flag.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut g = self.lock();
        loop {
            match g.pending {
                Pending::Kill => return Err(Interrupted::Killed),
                Pending::Terminate => return Err(Interrupted::Terminated),
                Pending::Suspend => {
                    if g.state != JobState::Suspended {
                        self.set_state(&mut g, JobState::Suspended);
                    }
                    g = self
                        .changed
                        .wait(g)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                Pending::None => {
                    if matches!(g.state, JobState::Starting | JobState::Suspended) {
                        self.set_state(&mut g, JobState::Running);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// `RequestStateChange(RequestedState)` per the table in the module docs.
    pub fn request_state_change(&self, requested: RequestedState) -> RequestStateChangeCode {
        use RequestStateChangeCode as C;
        let mut g = self.lock();
        if g.state.is_finished() {
            return C::InvalidStateTransition;
        }
        let code = match requested {
            RequestedState::Service => C::NotSupported,
            RequestedState::Start => match (g.state, g.pending) {
                (JobState::Suspended, Pending::Suspend) => {
                    g.pending = Pending::None;
                    self.set_state(&mut g, JobState::Starting);
                    C::TransitionStarted
                }
                (JobState::New | JobState::Starting | JobState::Running, Pending::Suspend) => {
                    g.pending = Pending::None;
                    C::Completed
                }
                (JobState::New | JobState::Starting, Pending::None) => C::Completed,
                _ => C::InvalidStateTransition,
            },
            RequestedState::Suspend => match (g.state, g.pending) {
                (JobState::Suspended, _) => C::Completed,
                (
                    JobState::New | JobState::Starting | JobState::Running,
                    Pending::None | Pending::Suspend,
                ) => {
                    g.pending = Pending::Suspend;
                    C::TransitionStarted
                }
                _ => C::InvalidStateTransition,
            },
            RequestedState::Terminate | RequestedState::Kill if !self.cancellable => {
                C::NotSupported
            }
            RequestedState::Terminate => match g.state {
                JobState::ShuttingDown => C::InvalidStateTransition,
                _ => {
                    g.pending = Pending::Terminate;
                    self.set_state(&mut g, JobState::ShuttingDown);
                    C::TransitionStarted
                }
            },
            RequestedState::Kill => match g.pending {
                Pending::Kill => C::Completed,
                _ => {
                    g.pending = Pending::Kill;
                    if g.state != JobState::ShuttingDown {
                        self.set_state(&mut g, JobState::ShuttingDown);
                    }
                    C::TransitionStarted
                }
            },
        };
        self.request_flag
            .store(g.pending != Pending::None, Ordering::Release);
        self.changed.notify_all();
        code
    }

    /// Blocks until the state satisfies `pred` or `timeout` passes; returns the
    /// last state seen.
    pub fn wait_for_state(&self, timeout: Duration, pred: impl Fn(JobState) -> bool) -> JobState {
        // `None`: the timeout is too large to represent — wait without one.
        let deadline = Instant::now().checked_add(timeout);
        let mut g = self.lock();
        while !pred(g.state) {
            g = match deadline {
                None => self
                    .changed
                    .wait(g)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    self.changed
                        .wait_timeout(g, deadline - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0)
                }
            };
        }
        g.state
    }

    /// A receiver that observes every `JobState` change (for async waiting).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<JobState> {
        self.watch.subscribe()
    }

    /// Installs the state-change observer (once; later calls are ignored).
    pub(crate) fn set_observer(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_state(&self, g: &mut Shared, state: JobState) {
        if g.state == state {
            return;
        }
        g.state = state;
        g.time_of_last_state_change = CimDateTime::now_utc();
        if state == JobState::Running && g.started_at.is_none() {
            g.started_at = Some(Instant::now());
            g.start_time = Some(g.time_of_last_state_change);
        }
        if state.is_finished() {
            g.ended_at = Some(Instant::now());
        }
        if let Some(observer) = self.observer.get() {
            (observer.0)(g);
        }
        self.watch.send_replace(state);
        self.changed.notify_all();
    }

    /// Worker side: New → Starting → (checkpoint) → Running.
    ///
    /// # Errors
    /// The [`Interrupted`] requested before the work began.
    pub(crate) fn begin(&self) -> Result<(), Interrupted> {
        {
            let mut g = self.lock();
            if g.state == JobState::New {
                self.set_state(&mut g, JobState::Starting);
            }
        }
        self.checkpoint()?;
        let mut g = self.lock();
        if g.state == JobState::Starting {
            self.set_state(&mut g, JobState::Running);
        }
        Ok(())
    }

    /// Worker side: records the outcome and enters the terminal state
    /// (passing through Shutting Down in the same critical section).
    pub(crate) fn finish(&self, result: Result<JobOutput, JobFailure>) {
        let mut g = self.lock();
        let final_state = match result {
            Ok(output) => {
                g.export = output.export;
                g.warnings = output.warnings;
                if g.warnings.is_empty() {
                    JobState::Completed
                } else {
                    JobState::CompletedWithWarnings
                }
            }
            Err(JobFailure::Interrupted(Interrupted::Terminated)) => JobState::Terminated,
            Err(JobFailure::Interrupted(Interrupted::Killed)) => JobState::Killed,
            Err(JobFailure::Failed {
                code,
                description,
                summary,
                errors,
            }) => {
                g.error = Some(ErrorInfo {
                    code,
                    summary: summary.unwrap_or_else(|| code.description().to_owned()),
                    description,
                    errors,
                });
                JobState::Exception
            }
        };
        if g.state != JobState::ShuttingDown {
            self.set_state(&mut g, JobState::ShuttingDown);
        }
        g.pending = Pending::None;
        self.request_flag.store(false, Ordering::Release);
        self.set_state(&mut g, final_state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;

    /// Bound for waits on conditions that must happen (never reached when correct).
    const MUST: Duration = Duration::from_secs(10);
    /// Bound for observing that something does *not* happen.
    const MUST_NOT: Duration = Duration::from_millis(200);

    fn running() -> Arc<JobControl> {
        let c = JobControl::new(true);
        c.begin().unwrap();
        c
    }

    #[test]
    fn begin_moves_new_to_running_and_sets_start_time() {
        let c = JobControl::new(true);

        c.begin().unwrap();

        assert_eq!(c.state(), JobState::Running);
        assert!(c.lock().start_time.is_some());
    }

    #[test]
    fn checkpoint_without_request_returns_immediately() {
        let c = running();

        assert_eq!(c.checkpoint(), Ok(()));
    }

    #[test]
    fn suspend_blocks_checkpoint_until_start() {
        let c = running();
        let (tx, rx) = mpsc::channel();
        assert_eq!(
            c.request_state_change(RequestedState::Suspend),
            RequestStateChangeCode::TransitionStarted
        );
        let worker = {
            let c = Arc::clone(&c);
            thread::spawn(move || tx.send(c.checkpoint()).unwrap())
        };

        let suspended = c.wait_for_state(MUST, |s| s == JobState::Suspended);
        let while_suspended = rx.recv_timeout(MUST_NOT);
        let resume = c.request_state_change(RequestedState::Start);
        let after_resume = rx.recv_timeout(MUST);

        assert_eq!(suspended, JobState::Suspended);
        assert!(
            while_suspended.is_err(),
            "checkpoint returned while suspended"
        );
        assert_eq!(resume, RequestStateChangeCode::TransitionStarted);
        assert_eq!(after_resume, Ok(Ok(())));
        assert_eq!(c.state(), JobState::Running);
        worker.join().unwrap();
    }

    #[test]
    fn terminate_while_suspended_wakes_checkpoint_with_terminated() {
        let c = running();
        c.request_state_change(RequestedState::Suspend);
        let worker = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.checkpoint())
        };
        c.wait_for_state(MUST, |s| s == JobState::Suspended);

        let code = c.request_state_change(RequestedState::Terminate);

        assert_eq!(code, RequestStateChangeCode::TransitionStarted);
        assert_eq!(worker.join().unwrap(), Err(Interrupted::Terminated));
        assert_eq!(c.state(), JobState::ShuttingDown);
    }

    #[test]
    fn kill_makes_checkpoint_return_killed() {
        let c = running();

        let code = c.request_state_change(RequestedState::Kill);

        assert_eq!(code, RequestStateChangeCode::TransitionStarted);
        assert_eq!(c.checkpoint(), Err(Interrupted::Killed));
    }

    #[test]
    fn kill_escalates_a_pending_terminate() {
        let c = running();
        c.request_state_change(RequestedState::Terminate);

        let code = c.request_state_change(RequestedState::Kill);

        assert_eq!(code, RequestStateChangeCode::TransitionStarted);
        assert_eq!(c.checkpoint(), Err(Interrupted::Killed));
    }

    #[test]
    fn second_kill_returns_completed() {
        let c = running();
        c.request_state_change(RequestedState::Kill);

        assert_eq!(
            c.request_state_change(RequestedState::Kill),
            RequestStateChangeCode::Completed
        );
    }

    #[test]
    fn terminate_while_shutting_down_is_invalid() {
        let c = running();
        c.request_state_change(RequestedState::Kill);

        assert_eq!(
            c.request_state_change(RequestedState::Terminate),
            RequestStateChangeCode::InvalidStateTransition
        );
    }

    #[test]
    fn terminate_on_non_cancellable_job_is_not_supported() {
        let c = JobControl::new(false);
        c.begin().unwrap();

        assert_eq!(
            c.request_state_change(RequestedState::Terminate),
            RequestStateChangeCode::NotSupported
        );
        assert_eq!(
            c.request_state_change(RequestedState::Kill),
            RequestStateChangeCode::NotSupported
        );
        assert_eq!(c.state(), JobState::Running);
    }

    #[test]
    fn start_on_running_job_is_invalid() {
        let c = running();

        assert_eq!(
            c.request_state_change(RequestedState::Start),
            RequestStateChangeCode::InvalidStateTransition
        );
    }

    #[test]
    fn start_cancels_a_suspend_not_yet_reached() {
        let c = running();
        c.request_state_change(RequestedState::Suspend);

        let code = c.request_state_change(RequestedState::Start);

        assert_eq!(code, RequestStateChangeCode::Completed);
        assert_eq!(c.checkpoint(), Ok(()));
        assert_eq!(c.state(), JobState::Running);
    }

    #[test]
    fn service_is_not_supported() {
        let c = running();

        assert_eq!(
            c.request_state_change(RequestedState::Service),
            RequestStateChangeCode::NotSupported
        );
    }

    #[test]
    fn suspend_before_begin_parks_the_job_in_suspended() {
        let c = JobControl::new(true);
        c.request_state_change(RequestedState::Suspend);
        let worker = {
            let c = Arc::clone(&c);
            thread::spawn(move || c.begin())
        };

        let parked = c.wait_for_state(MUST, |s| s == JobState::Suspended);
        c.request_state_change(RequestedState::Start);

        assert_eq!(parked, JobState::Suspended);
        assert_eq!(worker.join().unwrap(), Ok(()));
        assert_eq!(c.state(), JobState::Running);
    }

    #[test]
    fn every_request_on_a_finished_job_is_4097() {
        let c = running();
        c.finish(Ok(JobOutput::default()));

        let codes: Vec<u32> = [
            RequestedState::Start,
            RequestedState::Suspend,
            RequestedState::Terminate,
            RequestedState::Kill,
            RequestedState::Service,
        ]
        .into_iter()
        .map(|r| c.request_state_change(r).value())
        .collect();

        assert_eq!(codes, vec![4097; 5]);
    }

    #[test]
    fn percent_follows_bytes_and_clamps() {
        let c = running();
        c.set_total(400);

        c.add_progress(100);
        let quarter = c.percent_complete();
        c.add_progress(1000);
        let clamped = c.percent_complete();

        assert_eq!(quarter, 25);
        assert_eq!(clamped, 100);
    }

    #[test]
    fn percent_is_zero_without_total_and_100_when_completed() {
        let c = running();
        c.add_progress(5);
        let before = c.percent_complete();

        c.finish(Ok(JobOutput::default()));

        assert_eq!(before, 0);
        assert_eq!(c.percent_complete(), 100);
    }

    #[test]
    fn percent_handles_huge_counters_without_overflow() {
        let c = running();
        c.set_total(u64::MAX);
        c.add_progress(u64::MAX / 2);

        assert_eq!(c.percent_complete(), 49);
    }

    #[test]
    fn rejected_request_does_not_touch_time_of_last_state_change() {
        let c = running();
        let before = c.lock().time_of_last_state_change;

        c.request_state_change(RequestedState::Start);

        assert_eq!(c.lock().time_of_last_state_change, before);
    }

    #[test]
    fn terminate_before_begin_stops_the_job_before_the_work_runs() {
        let c = JobControl::new(true);

        let code = c.request_state_change(RequestedState::Terminate);
        let begun = c.begin();
        c.finish(Err(JobFailure::Interrupted(Interrupted::Terminated)));

        assert_eq!(code, RequestStateChangeCode::TransitionStarted);
        assert_eq!(begun, Err(Interrupted::Terminated));
        assert_eq!(c.state(), JobState::Terminated);
        assert!(c.lock().start_time.is_none());
    }

    #[test]
    fn kill_before_begin_stops_the_job_before_the_work_runs() {
        let c = JobControl::new(true);

        c.request_state_change(RequestedState::Kill);
        let begun = c.begin();
        c.finish(Err(JobFailure::Interrupted(Interrupted::Killed)));

        assert_eq!(begun, Err(Interrupted::Killed));
        assert_eq!(c.state(), JobState::Killed);
    }

    #[test]
    fn failure_records_error_fields_and_exception() {
        let c = running();

        c.finish(Err(JobFailure::failed(
            ReturnCodeA::AccessDenied,
            "cannot write /exports",
        )));

        let g = c.lock();
        assert_eq!(g.state, JobState::Exception);
        let e = g.error.as_ref().unwrap();
        assert_eq!(e.code, ReturnCodeA::AccessDenied);
        assert_eq!(e.summary, "Access Denied");
        assert_eq!(e.description, "cannot write /exports");
    }

    #[test]
    fn work_finishing_after_terminate_request_still_completes() {
        let c = running();
        c.request_state_change(RequestedState::Terminate);

        c.finish(Ok(JobOutput::default()));

        assert_eq!(c.state(), JobState::Completed);
    }

    #[test]
    fn state_changes_are_published_to_subscribers() {
        let c = JobControl::new(true);
        let rx = c.subscribe();

        c.begin().unwrap();

        assert_eq!(*rx.borrow(), JobState::Running);
    }
}
