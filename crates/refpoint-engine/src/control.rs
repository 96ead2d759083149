//! How the caller drives an export: progress, suspension and cancellation
//! ([`ExportControl`]), and the engine's resources ([`EngineConfig`]).
//!
//! The job manager implements [`ExportControl`] over its `CIM_ConcreteJob`
//! record: `set_total`/`add_progress` feed `PercentComplete`, and
//! `checkpoint` blocks while the job is `Suspended` and fails once
//! `RequestStateChange` asked for `Terminated` (4) or `Killed` (hard stop).

use std::num::NonZeroUsize;

/// Why the caller stopped an export (CIM `RequestStateChange`: Terminate or Kill).
///
/// Returned by [`ExportControl::checkpoint`]; the engine then removes its
/// staging directory and returns [`crate::ErrorKind::Interrupted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error, serde::Serialize)]
pub enum Interrupted {
    /// Orderly cancel (`RequestStateChange(4)`): the job ends in `JobState` 8 (Terminated).
    #[error("the export was terminated by request")]
    Terminated,
    /// Hard stop (`RequestStateChange` Kill): the job ends in `JobState` 9 (Killed).
    #[error("the export was killed by request")]
    Killed,
}

/// The caller's side of a running export.
///
/// All methods are called from engine threads (hence `Send + Sync`) and must
/// be cheap; `checkpoint` is called between blocks and between output files.
pub trait ExportControl: Send + Sync {
    /// Announces the amount of work: source bytes the export will read
    /// (bytes, the sum of the data extents of all disks). Called once, before
    /// the first block.
    fn set_total(&self, bytes: u64);
    /// Reports `bytes` more source bytes read, hashed and handed to the writer.
    fn add_progress(&self, bytes: u64);
    /// Returns `Ok(())` to continue. Blocks while the job is suspended.
    ///
    /// # Errors
    /// [`Interrupted`] once the job was terminated or killed; the engine stops
    /// at the next block boundary and removes everything it wrote.
    fn checkpoint(&self) -> Result<(), Interrupted>;
}

/// An [`ExportControl`] that ignores progress and never interrupts: for
/// synchronous callers and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unattended;

impl ExportControl for Unattended {
    fn set_total(&self, _bytes: u64) {}
    fn add_progress(&self, _bytes: u64) {}
    fn checkpoint(&self) -> Result<(), Interrupted> {
        Ok(())
    }
}

/// Engine resources for one [`crate::execute`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Worker threads of the export's rayon pool (read, hash, zero-detect,
    /// write). `0` means one per available CPU.
    pub threads: usize,
    /// Upper bound of the block buffer pool, in bytes. The engine holds at
    /// most `buffer_pool_bytes / segment` buffers whatever the disk size,
    /// where a segment is the largest block size or a power-of-two fraction
    /// of it (at least 1 MiB) of which the pool holds four per thread; the
    /// pool must hold at least one 1 MiB segment (else
    /// [`crate::ErrorKind::OutOfMemory`], CIM 32778).
    pub buffer_pool_bytes: u64,
}

impl EngineConfig {
    /// The number of worker threads this configuration asks for (`threads`,
    /// or the number of available CPUs when it is 0; at least 1).
    #[must_use]
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
        }
    }
}

impl Default for EngineConfig {
    /// One thread per CPU and a 64 MiB pool: with the export's metadata
    /// (BATs, plan) it keeps an export's peak RSS under 128 MiB whatever the
    /// disk size; blocks larger than the pool allows are read in segments
    /// (see `pipeline::segment_len`).
    fn default() -> Self {
        EngineConfig {
            threads: 0,
            buffer_pool_bytes: 64 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_threads_zero_means_available_cpus() {
        let cfg = EngineConfig {
            threads: 0,
            buffer_pool_bytes: 1,
        };

        let threads = cfg.effective_threads();

        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(threads, cpus);
    }

    #[test]
    fn effective_threads_keeps_explicit_count() {
        let cfg = EngineConfig {
            threads: 3,
            buffer_pool_bytes: 1,
        };

        assert_eq!(cfg.effective_threads(), 3);
    }
}
