//! Early writeback and page-cache hygiene for the files an export streams.
//!
//! An export writes each output front to back. Left alone, the kernel keeps
//! every written page dirty until the final fsync (a long stall at the end)
//! and then keeps them cached, evicting the host's working set for data
//! nobody will read soon. [`Writeback`] follows the output as it grows, in
//! windows of [`WINDOW`] bytes: when a window is complete it asks the kernel
//! to start writing it (`posix_fadvise(POSIX_FADV_DONTNEED)` on dirty pages
//! starts asynchronous writeback on Linux, `mm/fadvise.c`), and it drops the
//! window before it, whose pages are clean by then, from the page cache.
//! After the final fsync the whole file is dropped. Source pages are not
//! dropped: a running guest may share the frozen layers' pages.
//!
//! `sync_file_range(2)` would be the other way to start writeback; rustix
//! does not wrap it and refpoint forbids `unsafe`, and `fadvise` gives the
//! same effect for a file written once. Advice is best effort: an error is
//! logged, never fatal, since it never changes what is written.

use std::fs::File;
use std::num::NonZeroU64;

use rustix::fs::{Advice, fadvise};

/// Bytes between two writeback requests.
pub(crate) const WINDOW: u64 = 32 * 1024 * 1024;

/// Tracks how far an output has been handed to writeback.
#[derive(Debug, Default)]
pub(crate) struct Writeback {
    /// End of the last window whose writeback was started.
    started: u64,
    /// End of the last window dropped from the cache.
    dropped: u64,
}

impl Writeback {
    /// Called after each write with the file's length so far (bytes).
    pub(crate) fn advance(&mut self, file: &File, written: u64) {
        while written >= self.started + WINDOW {
            let from = self.started;
            advise(file, from, WINDOW, Advice::DontNeed);
            // The window before this one was queued a window ago: drop it.
            if from > self.dropped {
                advise(file, self.dropped, from - self.dropped, Advice::DontNeed);
                self.dropped = from;
            }
            self.started = from + WINDOW;
        }
    }

    /// After the file is fsynced: drops all of it from the page cache.
    pub(crate) fn finish(self, file: &File) {
        advise(file, 0, 0, Advice::DontNeed);
    }
}

/// `posix_fadvise` over `[offset, offset + len)` (`len` 0: to the end).
fn advise(file: &File, offset: u64, len: u64, advice: Advice) {
    if let Err(e) = fadvise(file, offset, NonZeroU64::new(len), advice) {
        tracing::debug!(error = %e, ?advice, offset, len, "posix_fadvise failed (ignored)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_starts_one_request_per_complete_window() {
        let file = tempfile::tempfile().expect("temp file");
        let mut wb = Writeback::default();

        wb.advance(&file, WINDOW - 1);
        let before = wb.started;
        wb.advance(&file, 2 * WINDOW + 5);

        assert_eq!(before, 0);
        assert_eq!(wb.started, 2 * WINDOW);
        assert_eq!(wb.dropped, WINDOW);
    }
}
