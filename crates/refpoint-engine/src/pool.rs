//! The buffer budget: the only large allocation of an export, shared by
//! every export of the process (see [`crate::Scheduler`]).
//!
//! Buffers of any length are handed out while the bytes in use stay within
//! the budget; they are allocated lazily with `try_reserve` (failure →
//! [`PoolError::Allocation`], CIM 32778) and recycled by length (idle
//! buffers count against the budget and are freed when a request of another
//! length needs their room). [`BufferPool::acquire`] blocks while the budget
//! is spent, which is what bounds memory whatever the disk size or the
//! number of exports. Waiters are served first come, first served, so
//! concurrent exports interleave fairly and none starves. Each call passes
//! its run's stop flag: a run that fails or is cancelled wakes its own
//! waiters with [`PoolError::Closed`] without disturbing the others.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::{ErrorContext, ErrorKind};

/// The buffer pool cannot serve a buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The allocator refused a buffer.
    #[error("cannot allocate a {bytes}-byte block buffer (out of memory)")]
    Allocation {
        /// Bytes asked for.
        bytes: usize,
    },
    /// `EngineConfig.buffer_pool_bytes` cannot hold one segment.
    #[error("the buffer pool of {pool_bytes} bytes cannot hold one {block_bytes}-byte block")]
    TooSmall {
        /// Configured pool size, bytes.
        pool_bytes: u64,
        /// Bytes of the buffer asked for.
        block_bytes: usize,
    },
    /// The run waiting for the buffer is stopping.
    #[error("the buffer pool was closed because the export is stopping")]
    Closed,
}

impl PoolError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            PoolError::Allocation { .. } | PoolError::TooSmall { .. } => ErrorKind::OutOfMemory,
            PoolError::Closed => ErrorKind::Failed,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        ErrorContext {
            operation: "allocate block buffer",
            ..ErrorContext::default()
        }
    }
}

#[derive(Debug, Default)]
struct PoolState {
    /// Idle buffers (their capacity is their length).
    free: Vec<Vec<u8>>,
    /// Bytes of buffers on loan.
    in_use: u64,
    /// Bytes of idle buffers.
    idle: u64,
    /// Tickets of waiting calls, first come first served.
    queue: VecDeque<u64>,
    next_ticket: u64,
}

/// A byte budget of reusable buffers shared by the export threads.
#[derive(Debug)]
pub(crate) struct BufferPool {
    budget: u64,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl BufferPool {
    /// A pool that never has more than `budget` bytes of buffers.
    pub(crate) fn new(budget: u64) -> BufferPool {
        BufferPool {
            budget,
            state: Mutex::new(PoolState::default()),
            returned: Condvar::new(),
        }
    }

    /// The budget, bytes.
    pub(crate) fn budget(&self) -> u64 {
        self.budget
    }

    /// Checks that a buffer of `len` bytes can ever be served.
    ///
    /// # Errors
    /// [`PoolError::TooSmall`].
    pub(crate) fn check(&self, len: usize) -> Result<(), PoolError> {
        if len as u64 > self.budget || len == 0 {
            return Err(PoolError::TooSmall {
                pool_bytes: self.budget,
                block_bytes: len,
            });
        }
        Ok(())
    }

    /// Bytes of buffers in use (for tests and figures).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> u64 {
        self.lock().in_use
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding the lock leaves the counters consistent
        // (they are updated together under the guard), so poison is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a buffer of `len` bytes (contents unspecified), waiting (in
    /// arrival order) while the budget is spent.
    ///
    /// # Errors
    /// [`PoolError::TooSmall`] if `len` exceeds the budget;
    /// [`PoolError::Allocation`] if the allocator refuses;
    /// [`PoolError::Closed`] once `stop` is set (see [`Self::wake_all`]).
    pub(crate) fn acquire(
        &self,
        len: usize,
        stop: &AtomicBool,
    ) -> Result<PooledBuffer<'_>, PoolError> {
        self.check(len)?;
        let want = len as u64;
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(ticket);
        loop {
            if stop.load(Ordering::SeqCst) {
                state.queue.retain(|t| *t != ticket);
                drop(state);
                self.returned.notify_all();
                return Err(PoolError::Closed);
            }
            let first = state.queue.front() == Some(&ticket);
            if first && state.in_use + want <= self.budget {
                state.queue.pop_front();
                state.in_use += want;
                let reused = state.free.iter().position(|b| b.len() == len);
                if let Some(i) = reused {
                    let buf = state.free.swap_remove(i);
                    state.idle -= want;
                    drop(state);
                    self.returned.notify_all();
                    return Ok(PooledBuffer {
                        pool: self,
                        buf: Some(buf),
                    });
                }
                // Free idle buffers of other lengths until the new one fits.
                while state.in_use + state.idle > self.budget {
                    let Some(b) = state.free.pop() else {
                        break;
                    };
                    state.idle -= b.len() as u64;
                }
                drop(state);
                self.returned.notify_all();
                return match allocate(len) {
                    Ok(buf) => Ok(PooledBuffer {
                        pool: self,
                        buf: Some(buf),
                    }),
                    Err(e) => {
                        self.lock().in_use -= want;
                        self.returned.notify_all();
                        Err(e)
                    }
                };
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Wakes every waiter so that those whose stop flag is set return.
    pub(crate) fn wake_all(&self) {
        let _guard = self.lock();
        self.returned.notify_all();
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut state = self.lock();
        let len = buf.len() as u64;
        state.in_use -= len;
        state.idle += len;
        state.free.push(buf);
        drop(state);
        self.returned.notify_all();
    }
}

fn allocate(len: usize) -> Result<Vec<u8>, PoolError> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| PoolError::Allocation { bytes: len })?;
    buf.resize(len, 0);
    Ok(buf)
}

/// A buffer on loan from a [`BufferPool`]; returned to it when dropped.
#[derive(Debug)]
pub(crate) struct PooledBuffer<'a> {
    pool: &'a BufferPool,
    buf: Option<Vec<u8>>,
}

impl PooledBuffer<'_> {
    /// The whole buffer.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or_default()
    }

    /// The whole buffer, read-only.
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or_default()
    }
}

impl Drop for PooledBuffer<'_> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.give_back(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go() -> AtomicBool {
        AtomicBool::new(false)
    }

    #[test]
    fn buffer_larger_than_the_budget_is_too_small() {
        let pool = BufferPool::new(1024);

        let result = pool.acquire(4096, &go()).map(|_| ());

        assert_eq!(
            result,
            Err(PoolError::TooSmall {
                pool_bytes: 1024,
                block_bytes: 4096
            })
        );
    }

    #[test]
    fn acquire_of_unallocatable_buffer_is_allocation_error() {
        // Larger than isize::MAX: the allocator must refuse it.
        let huge = usize::MAX / 2 + 1;
        let pool = BufferPool::new(u64::MAX);

        let result = pool.acquire(huge, &go()).map(|_| ());

        assert_eq!(result, Err(PoolError::Allocation { bytes: huge }));
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn dropped_buffer_is_reused_not_reallocated() {
        let pool = BufferPool::new(4096);
        let first = pool.acquire(4096, &go()).expect("first buffer");
        let address = first.as_slice().as_ptr();
        drop(first);

        let second = pool.acquire(4096, &go()).expect("second buffer");

        assert_eq!(second.as_slice().as_ptr(), address);
        assert_eq!(pool.in_use(), 4096);
    }

    #[test]
    fn idle_buffers_of_another_length_make_room() {
        let pool = BufferPool::new(8192);
        drop(pool.acquire(4096, &go()).expect("small"));

        let big = pool
            .acquire(8192, &go())
            .expect("big fits after freeing the idle one");

        assert_eq!(big.as_slice().len(), 8192);
    }

    #[test]
    fn acquire_waits_until_a_buffer_is_returned() {
        let pool = BufferPool::new(4096);
        let held = pool.acquire(4096, &go()).expect("only buffer");

        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.acquire(4096, &go()).map(|b| b.as_slice().len()));
            drop(held);
            assert_eq!(waiter.join().expect("waiter thread"), Ok(4096));
        });
    }

    #[test]
    fn stop_wakes_only_the_stopped_run() {
        let pool = BufferPool::new(4096);
        let held = pool.acquire(4096, &go()).expect("only buffer");
        let stopped = AtomicBool::new(false);
        let other = go();

        std::thread::scope(|s| {
            let cancelled = s.spawn(|| pool.acquire(4096, &stopped).map(|_| ()));
            let waiting = s.spawn(|| pool.acquire(4096, &other).map(|b| b.as_slice().len()));
            std::thread::sleep(std::time::Duration::from_millis(50));
            stopped.store(true, Ordering::SeqCst);
            pool.wake_all();
            assert_eq!(cancelled.join().expect("cancelled"), Err(PoolError::Closed));
            drop(held);
            assert_eq!(waiting.join().expect("waiting"), Ok(4096));
        });
    }
}
