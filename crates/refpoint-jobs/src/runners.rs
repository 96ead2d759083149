//! The threads jobs run on: each job's work runs whole on one OS thread
//! (never on an async executor), and at most a bounded number of such
//! threads exist. Jobs submitted while all runners are busy wait in
//! submission order (their `JobState` stays New) and start as runners free
//! up, so a burst of a thousand jobs costs a bounded number of threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Default bound on job threads (running jobs).
pub const DEFAULT_MAX_RUNNING_JOBS: usize = 64;

type Work = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    queue: VecDeque<Work>,
    threads: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("threads", &self.threads)
            .finish()
    }
}

/// A bounded set of job threads fed from one FIFO queue.
#[derive(Debug)]
pub(crate) struct Runners {
    state: Mutex<State>,
    limit: AtomicUsize,
}

impl Runners {
    pub(crate) fn new(limit: usize) -> Runners {
        Runners {
            state: Mutex::new(State::default()),
            limit: AtomicUsize::new(limit.max(1)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the bound (at least 1); running threads are not stopped.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::SeqCst);
    }

    /// Job threads alive now.
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.lock().threads
    }

    /// Queues `work`, starting a runner thread if fewer than the bound exist.
    ///
    /// # Errors
    /// The OS error when no runner exists and none can be started (the work
    /// is then dropped, never run).
    pub(crate) fn push(self: &Arc<Self>, work: Work) -> std::io::Result<()> {
        let mut state = self.lock();
        state.queue.push_back(work);
        if state.threads >= self.limit.load(Ordering::SeqCst) {
            return Ok(());
        }
        state.threads += 1;
        let n = state.threads;
        drop(state);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("refpoint-job-{n}"))
            .spawn(move || me.work_loop());
        if let Err(e) = spawned {
            let mut state = self.lock();
            state.threads -= 1;
            if state.threads == 0 {
                // Nobody would ever run it.
                state.queue.pop_back();
                return Err(e);
            }
        }
        Ok(())
    }

    fn work_loop(&self) {
        loop {
            let work = {
                let mut state = self.lock();
                match state.queue.pop_front() {
                    Some(w) => w,
                    None => {
                        state.threads -= 1;
                        return;
                    }
                }
            };
            work();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::mpsc;

    #[test]
    fn at_most_the_limit_of_threads_run_jobs_and_all_jobs_run() {
        let runners = Arc::new(Runners::new(3));
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new(Barrier::new(4));
        for i in 0..30 {
            let tx = tx.clone();
            let gate = Arc::clone(&gate);
            runners
                .push(Box::new(move || {
                    if i < 3 {
                        gate.wait();
                    }
                    tx.send(i).expect("send");
                }))
                .expect("push");
        }
        let busy = runners.threads();
        gate.wait();
        let mut done: Vec<i32> = (0..30).map(|_| rx.recv().expect("recv")).collect();
        done.sort_unstable();

        assert_eq!(busy, 3);
        assert_eq!(done, (0..30).collect::<Vec<_>>());
    }
}
