//! The segment pipeline: read → (hash) → consume in file order, in parallel
//! across segments and disks, with memory bounded by the buffer pool.
//!
//! A planned block is cut into segments of [`segment_len`] bytes (the whole
//! block when the pool holds enough of them, smaller for big blocks so that
//! the pool always holds several per worker). The calling thread dispatches
//! segments of all disks, interleaved across disks, onto the rayon pool:
//! before each it calls [`ExportControl::checkpoint`] and takes a pool
//! buffer (waiting while all are in use). A worker reads the segment with
//! positioned reads and, for a block that is one segment, computes the
//! block digest (so block hashing runs on every core; a block that reads
//! all-zero gets the precomputed zero digest without hashing). Blocks cut
//! into several segments are hashed in order by the consumer. It then hands the segment to its disk's [`Ordered`] queue: whoever
//! completes the next segment in order drains every consecutive ready one
//! into the disk's [`Consume`]r (the one-pass output writer, or the
//! tracking fallback's comparison), which sees them strictly in file order.
//!
//! No deadlock whatever the pool size: buffers are taken in dispatch order,
//! so the oldest segment not yet consumed already holds its buffer and can
//! always be drained; later ones only wait for it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

use crate::control::ExportControl;
use crate::digest::{Sha256Digest, is_zero, sha256};
use crate::error::EngineError;
use crate::plan::DiskPlan;
use crate::pool::{BufferPool, PooledBuffer};
use crate::source::{DataBlock, read_block_range};

/// Smallest segment, bytes (the smallest VHDX block size).
const MIN_SEGMENT: u64 = 1024 * 1024;

/// Segment length for blocks of at most `max_block` bytes: the largest
/// power-of-two fraction of `max_block` (at least 1 MiB) of which the pool
/// of `pool_bytes` holds four per worker thread.
#[must_use]
pub(crate) fn segment_len(max_block: u64, pool_bytes: u64, threads: usize) -> u64 {
    let want = pool_bytes / (4 * threads as u64).max(1);
    let mut len = max_block.max(1);
    while len > MIN_SEGMENT && len > want && len.is_multiple_of(2) {
        len /= 2;
    }
    len
}

/// One read segment of a planned block, on its way to the consumer.
#[derive(Debug)]
pub(crate) struct Segment<'p> {
    /// Block index.
    pub(crate) block: u64,
    /// Position of the block in the disk's planned-block list.
    pub(crate) position: usize,
    /// Offset of the segment inside the block, bytes.
    pub(crate) offset_in_block: u64,
    /// Segment length, bytes.
    pub(crate) len: usize,
    /// Length of the whole block, bytes.
    pub(crate) block_len: u64,
    /// True for the block's last segment.
    pub(crate) last: bool,
    /// The block digest, when the block is this one segment (computed by
    /// the worker).
    pub(crate) digest: Option<Sha256Digest>,
    buffer: PooledBuffer<'p>,
}

impl Segment<'_> {
    /// The segment's bytes.
    pub(crate) fn data(&self) -> &[u8] {
        self.buffer.as_slice().get(..self.len).unwrap_or_default()
    }
}

/// Takes one disk's segments strictly in file order.
pub(crate) trait Consume<'p>: Send {
    /// Consumes the next segment.
    ///
    /// # Errors
    /// Whatever the consumer's write or check fails with; the pipeline
    /// then stops.
    fn consume(&mut self, segment: Segment<'p>) -> Result<(), EngineError>;
}

/// Computes a block's digest over its segments, in order.
#[derive(Debug, Default)]
pub(crate) struct BlockDigester {
    hasher: Sha256,
}

impl BlockDigester {
    /// Feeds `segment`; returns the block digest at its last segment (the
    /// worker's digest when the block is one segment).
    pub(crate) fn add(&mut self, segment: &Segment<'_>) -> Option<Sha256Digest> {
        if let Some(d) = segment.digest {
            return Some(d);
        }
        self.hasher.update(segment.data());
        segment
            .last
            .then(|| std::mem::take(&mut self.hasher).finalize().into())
    }
}

#[derive(Debug)]
struct Queue<'p> {
    next: u64,
    pending: BTreeMap<u64, Segment<'p>>,
    draining: bool,
}

/// One disk's reorder queue in front of its consumer.
#[derive(Debug)]
pub(crate) struct Ordered<'p, C> {
    queue: Mutex<Queue<'p>>,
    consumer: Mutex<C>,
}

impl<'p, C: Consume<'p>> Ordered<'p, C> {
    pub(crate) fn new(consumer: C) -> Self {
        Ordered {
            queue: Mutex::new(Queue {
                next: 0,
                pending: BTreeMap::new(),
                draining: false,
            }),
            consumer: Mutex::new(consumer),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<'p>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands over segment number `seq` of the disk (0, 1, 2, … in file
    /// order) and drains what is ready; buffers return to the pool as soon
    /// as they are consumed.
    ///
    /// # Errors
    /// The consumer's error; after it this queue consumes nothing more.
    fn submit(&self, seq: u64, segment: Segment<'p>) -> Result<(), EngineError> {
        let mut q = self.queue();
        q.pending.insert(seq, segment);
        if q.draining {
            return Ok(());
        }
        q.draining = true;
        loop {
            let next = q.next;
            let Some(segment) = q.pending.remove(&next) else {
                q.draining = false;
                return Ok(());
            };
            q.next += 1;
            drop(q);
            let done = self
                .consumer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .consume(segment);
            // On error `draining` stays set: nothing is consumed after a failure.
            done?;
            q = self.queue();
        }
    }

    /// The consumer, once every segment was submitted.
    pub(crate) fn into_inner(self) -> C {
        self.consumer
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One disk's share of a pipeline run: its plan and the blocks to read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lane<'a> {
    pub(crate) disk: &'a DiskPlan,
    pub(crate) blocks: &'a [DataBlock],
    /// Whether reading these blocks counts as progress.
    pub(crate) progress: bool,
}

/// The first error of a run; later ones are dropped. Setting it raises
/// the run's stop flag and wakes the run's buffer waiters.
struct FirstError<'a> {
    error: Mutex<Option<EngineError>>,
    stop: &'a AtomicBool,
    pool: &'a BufferPool,
}

impl FirstError<'_> {
    fn set(&self, err: EngineError) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(err);
        }
        drop(slot);
        self.stop.store(true, Ordering::SeqCst);
        self.pool.wake_all();
    }

    fn failed(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What every task of a run shares.
pub(crate) struct Run<'r, 'p> {
    pub(crate) control: &'r dyn ExportControl,
    pub(crate) workers: &'r rayon::ThreadPool,
    pub(crate) buffers: &'p BufferPool,
    pub(crate) bytes_read: &'r AtomicU64,
    pub(crate) segment_len: u64,
    /// Raised by the first error (a collection's members share it).
    pub(crate) stop: &'r AtomicBool,
}

/// `(lane, position)` of every planned block, interleaved across lanes
/// (position 0 of each lane, then position 1, ...).
fn interleaved<'l>(lanes: &'l [Lane<'_>]) -> impl Iterator<Item = (usize, usize)> + 'l {
    let longest = lanes.iter().map(|l| l.blocks.len()).max().unwrap_or(0);
    (0..longest).flat_map(move |pos| {
        lanes
            .iter()
            .enumerate()
            .filter(move |(_, l)| pos < l.blocks.len())
            .map(move |(i, _)| (i, pos))
    })
}

impl<'p> Run<'_, 'p> {
    /// Reads every block of every lane and feeds lane `i`'s segments, in
    /// file order, to `sinks[i]`.
    ///
    /// # Errors
    /// The first error of any read or consumer, or the interruption
    /// returned by `checkpoint`; dispatch stops at once.
    pub(crate) fn execute<C: Consume<'p>>(
        &self,
        lanes: &[Lane<'_>],
        sinks: &[Ordered<'p, C>],
    ) -> Result<(), EngineError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(crate::pool::PoolError::Closed.into());
        }
        let first_error = FirstError {
            error: Mutex::new(None),
            stop: self.stop,
            pool: self.buffers,
        };
        let errors = &first_error;
        let mut seqs = vec![0u64; lanes.len()];
        let seg_len = self.segment_len.max(1);
        self.workers.in_place_scope(|scope| {
            'dispatch: for (l, position) in interleaved(lanes) {
                let (Some(lane), Some(sink), Some(seq)) =
                    (lanes.get(l), sinks.get(l), seqs.get_mut(l))
                else {
                    break;
                };
                let Some(block) = lane.blocks.get(position) else {
                    break;
                };
                let mut offset = 0u64;
                while offset < block.length {
                    if errors.failed() {
                        break 'dispatch;
                    }
                    if let Err(stop) = self.control.checkpoint() {
                        errors.set(stop.into());
                        break 'dispatch;
                    }
                    let len = seg_len.min(block.length - offset);
                    let want = usize::try_from(len).unwrap_or(usize::MAX);
                    let buffer = match self.buffers.acquire(want, self.stop) {
                        Ok(b) => b,
                        Err(e) => {
                            errors.set(e.into());
                            break 'dispatch;
                        }
                    };
                    let task = Task {
                        lane: *lane,
                        block,
                        position,
                        offset,
                        len,
                        seq: *seq,
                    };
                    *seq += 1;
                    offset += len;
                    let run = self;
                    scope.spawn(move |_| {
                        if errors.failed() {
                            return;
                        }
                        if let Err(e) = task.run(run, buffer, sink) {
                            errors.set(e);
                        }
                    });
                }
            }
        });
        match first_error
            .error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            Some(e) => Err(e),
            // Stopped by another run sharing the flag (a collection member).
            None if self.stop.load(Ordering::SeqCst) => Err(crate::pool::PoolError::Closed.into()),
            None => Ok(()),
        }
    }
}

/// One segment to read.
struct Task<'a> {
    lane: Lane<'a>,
    block: &'a DataBlock,
    position: usize,
    offset: u64,
    len: u64,
    seq: u64,
}

impl Task<'_> {
    fn run<'p, C: Consume<'p>>(
        self,
        run: &Run<'_, 'p>,
        mut buffer: PooledBuffer<'p>,
        sink: &Ordered<'p, C>,
    ) -> Result<(), EngineError> {
        let disk = self.lane.disk;
        let len = usize::try_from(self.len).unwrap_or(usize::MAX);
        let bs = u64::from(disk.geometry.block_size);
        let dst = buffer.as_mut_slice();
        let have = dst.len();
        let dst = dst.get_mut(..len).ok_or_else(|| {
            EngineError::from(crate::source::SourceError::BufferTooSmall {
                disk: disk.instance_id.clone(),
                block: self.block.index,
                needed: self.len,
                have,
            })
        })?;
        let read = read_block_range(
            &disk.chain,
            &disk.instance_id,
            bs,
            self.block,
            self.offset,
            dst,
        )?;
        let whole = self.offset == 0 && self.len == self.block.length;
        let digest = whole.then(|| {
            // Zero detection is an order of magnitude cheaper than SHA-256.
            if is_zero(dst) {
                disk.zeros.for_len(self.block.length)
            } else {
                sha256(dst)
            }
        });
        run.bytes_read.fetch_add(read, Ordering::Relaxed);
        if self.lane.progress {
            run.control.add_progress(read);
        }
        let segment = Segment {
            block: self.block.index,
            position: self.position,
            offset_in_block: self.offset,
            len,
            block_len: self.block.length,
            last: self.offset + self.len >= self.block.length,
            digest,
            buffer,
        };
        sink.submit(self.seq, segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn segment_is_the_whole_block_when_the_pool_holds_enough() {
        assert_eq!(segment_len(2 * MIB, 128 * MIB, 2), 2 * MIB);
    }

    #[test]
    fn segment_of_a_big_block_leaves_four_buffers_per_worker() {
        assert_eq!(segment_len(64 * MIB, 64 * MIB, 2), 8 * MIB);
    }

    #[test]
    fn segment_is_never_below_one_mib() {
        assert_eq!(segment_len(32 * MIB, 4 * MIB, 8), MIB);
    }
}
