//! The bounded block-buffer pool: the only large allocation of an export.
//!
//! Holds at most `pool_bytes / buffer_len` buffers of `buffer_len` bytes,
//! allocated lazily with `try_reserve` (failure → [`PoolError::Allocation`],
//! CIM 32778) and recycled. [`BufferPool::acquire`] blocks while all buffers
//! are in use, which is what bounds memory whatever the disk size;
//! [`BufferPool::close`] wakes every waiter when the export fails.

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
    /// `EngineConfig.buffer_pool_bytes` cannot hold one block.
    #[error("the buffer pool of {pool_bytes} bytes cannot hold one {block_bytes}-byte block")]
    TooSmall {
        /// Configured pool size, bytes.
        pool_bytes: u64,
        /// Largest block size of the export, bytes.
        block_bytes: usize,
    },
    /// The pool was closed because the export is stopping.
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

#[derive(Debug)]
struct PoolState {
    free: Vec<Vec<u8>>,
    allocated: usize,
    closed: bool,
}

/// A bounded pool of equally sized byte buffers shared by the export threads.
#[derive(Debug)]
pub(crate) struct BufferPool {
    buffer_len: usize,
    capacity: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl BufferPool {
    /// A pool of up to `pool_bytes / buffer_len` buffers of `buffer_len` bytes.
    ///
    /// # Errors
    /// [`PoolError::TooSmall`] when not even one buffer fits.
    pub(crate) fn new(pool_bytes: u64, buffer_len: usize) -> Result<BufferPool, PoolError> {
        let len = u64::try_from(buffer_len.max(1)).unwrap_or(u64::MAX);
        let capacity = usize::try_from(pool_bytes / len).unwrap_or(usize::MAX);
        if capacity == 0 {
            return Err(PoolError::TooSmall {
                pool_bytes,
                block_bytes: buffer_len,
            });
        }
        Ok(BufferPool {
            buffer_len,
            capacity,
            state: Mutex::new(PoolState {
                free: Vec::new(),
                allocated: 0,
                closed: false,
            }),
            returned: Condvar::new(),
        })
    }

    /// Maximum number of buffers alive at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding the lock leaves the free list consistent
        // (push/pop are atomic with respect to the guard), so poison is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a buffer of `buffer_len` bytes (contents unspecified),
    /// allocating one if fewer than the capacity exist, else waiting for one.
    ///
    /// # Errors
    /// [`PoolError::Allocation`] if the allocator refuses; [`PoolError::Closed`]
    /// once [`Self::close`] was called.
    pub(crate) fn acquire(&self) -> Result<PooledBuffer<'_>, PoolError> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(PoolError::Closed);
            }
            if let Some(buf) = state.free.pop() {
                return Ok(PooledBuffer {
                    pool: self,
                    buf: Some(buf),
                });
            }
            if state.allocated < self.capacity {
                state.allocated += 1;
                drop(state);
                return match allocate(self.buffer_len) {
                    Ok(buf) => Ok(PooledBuffer {
                        pool: self,
                        buf: Some(buf),
                    }),
                    Err(e) => {
                        self.lock().allocated -= 1;
                        self.returned.notify_one();
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

    /// Refuses further [`Self::acquire`] calls and wakes all waiters.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.returned.notify_all();
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut state = self.lock();
        if state.closed {
            state.allocated -= 1;
        } else {
            state.free.push(buf);
        }
        drop(state);
        self.returned.notify_one();
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
    /// The whole buffer (the pool's `buffer_len` bytes).
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

    #[test]
    fn new_with_pool_smaller_than_one_block_is_too_small() {
        let result = BufferPool::new(1024, 4096);

        assert!(matches!(
            result,
            Err(PoolError::TooSmall {
                pool_bytes: 1024,
                block_bytes: 4096
            })
        ));
    }

    #[test]
    fn acquire_of_unallocatable_buffer_is_allocation_error() {
        // Larger than isize::MAX: the allocator must refuse it.
        let huge = usize::MAX / 2 + 1;
        let pool = BufferPool::new(u64::MAX, huge).expect("pool with room for one buffer");

        let result = pool.acquire().map(|_| ());

        assert_eq!(result, Err(PoolError::Allocation { bytes: huge }));
    }

    #[test]
    fn capacity_is_pool_bytes_over_buffer_len() {
        let pool = BufferPool::new(10 * 4096 + 17, 4096).expect("pool");

        assert_eq!(pool.capacity(), 10);
    }

    #[test]
    fn dropped_buffer_is_reused_not_reallocated() {
        let pool = BufferPool::new(4096, 4096).expect("pool");
        let first = pool.acquire().expect("first buffer");
        drop(first);

        let second = pool.acquire().expect("second buffer");

        assert_eq!(second.as_slice().len(), 4096);
        assert_eq!(pool.lock().allocated, 1);
    }

    #[test]
    fn acquire_waits_until_a_buffer_is_returned() {
        let pool = BufferPool::new(4096, 4096).expect("pool");
        let held = pool.acquire().expect("only buffer");

        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.acquire().map(|b| b.as_slice().len()));
            drop(held);
            assert_eq!(waiter.join().expect("waiter thread"), Ok(4096));
        });
    }

    #[test]
    fn close_wakes_waiters_with_closed() {
        let pool = BufferPool::new(4096, 4096).expect("pool");
        let _held = pool.acquire().expect("only buffer");

        std::thread::scope(|s| {
            let waiter = s.spawn(|| pool.acquire().map(|_| ()));
            pool.close();
            assert_eq!(
                waiter.join().expect("waiter thread"),
                Err(PoolError::Closed)
            );
        });
    }
}
