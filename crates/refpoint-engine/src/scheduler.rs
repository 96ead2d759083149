//! One I/O scheduler for the process: every export of a host shares one
//! bounded rayon worker pool and one buffer budget ([`Scheduler`]), so N
//! concurrent jobs never run N pools or hold N budgets.
//!
//! Fairness: each export's dispatcher takes one buffer at a time from the
//! shared budget, and waiters are served in arrival order, so concurrent
//! exports interleave segment by segment; workers run whatever was
//! dispatched, oldest first per worker queue. Memory stays within the
//! budget whatever the number of exports; threads stay at the pool size
//! plus one dispatcher per running export (the job's own thread).

use std::sync::atomic::AtomicBool;

use crate::control::EngineConfig;
use crate::error::EngineError;
use crate::execute::Resources;
use crate::pipeline::segment_len;
use crate::pool::BufferPool;
use crate::request::RequestError;

/// The worker pool and buffer budget shared by exports (module docs).
#[derive(Debug)]
pub struct Scheduler {
    workers: rayon::ThreadPool,
    buffers: BufferPool,
    threads: usize,
}

impl Scheduler {
    /// A scheduler of `cfg.effective_threads()` workers and a budget of
    /// `cfg.buffer_pool_bytes` bytes.
    ///
    /// # Errors
    /// `InvalidParameter` ([`RequestError::ThreadPool`]) when the worker
    /// threads cannot be started.
    pub fn new(cfg: &EngineConfig) -> Result<Scheduler, EngineError> {
        let threads = cfg.effective_threads();
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("refpoint-io-{i}"))
            .build()
            .map_err(|e| RequestError::ThreadPool {
                threads,
                reason: e.to_string(),
            })?;
        Ok(Scheduler {
            workers,
            buffers: BufferPool::new(cfg.buffer_pool_bytes),
            threads,
        })
    }

    /// Worker threads.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The buffer budget, bytes.
    #[must_use]
    pub fn budget_bytes(&self) -> u64 {
        self.buffers.budget()
    }

    /// The resources of one run over blocks of at most `max_block` bytes,
    /// stopped by `stop`.
    ///
    /// # Errors
    /// `OutOfMemory` when the budget cannot hold one segment.
    pub(crate) fn resources<'s>(
        &'s self,
        max_block: u64,
        stop: &'s AtomicBool,
    ) -> Result<Resources<'s>, EngineError> {
        let segment = segment_len(max_block, self.buffers.budget(), self.threads);
        self.buffers
            .check(usize::try_from(segment).unwrap_or(usize::MAX))?;
        Ok(Resources {
            workers: &self.workers,
            buffers: &self.buffers,
            segment_len: segment,
            stop,
        })
    }
}
