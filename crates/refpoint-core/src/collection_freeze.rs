//! The write locks of active leaves held while a collection is frozen
//! ([`crate::collection_point`]).
//!
//! A `refpoint_vhdx::VhdxWriter` holds an exclusive `flock` on its file for
//! as long as it is open (MS-VHDX writes go through it only). Taking the
//! same lock on every member's active leaf therefore waits for writers in
//! progress to finish and keeps new ones out until [`LeafLocks`] is
//! dropped: between the first and the last freeze no member is written.
//! The lock is advisory: external tools that write a leaf without
//! `flock` are not stopped (DESIGN.md: external tools write a leaf while
//! the host is not using it).
//!
//! Locks are taken in path order (no two freezes can deadlock each other)
//! and polled every millisecond until the timeout; a writer blocked by a
//! held lock fails its open with `Locked` after about 100 ms and retries.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{HostError, Result};

/// Pause between two attempts at a held lock.
const POLL: Duration = Duration::from_millis(1);

/// Exclusive `flock`s on a set of files, released when dropped.
#[derive(Debug)]
pub(crate) struct LeafLocks {
    held: Vec<(PathBuf, File)>,
}

impl LeafLocks {
    /// Locks every file of `paths` (duplicates once), waiting up to
    /// `timeout` in total for writers to let go.
    ///
    /// # Errors
    /// [`HostError::Timeout`] naming the file still held and `operation`;
    /// [`HostError::Io`] if a file cannot be opened or locked. Locks taken
    /// so far are released.
    pub(crate) fn acquire(
        paths: &[PathBuf],
        timeout: Duration,
        operation: &'static str,
    ) -> Result<LeafLocks> {
        let mut sorted: Vec<&PathBuf> = paths.iter().collect();
        sorted.sort();
        sorted.dedup();
        let deadline = Instant::now().checked_add(timeout);
        let started = Instant::now();
        let mut locks = LeafLocks {
            held: Vec::with_capacity(sorted.len()),
        };
        for path in sorted {
            let file = File::open(path).map_err(|e| HostError::io(path, "open leaf to lock", e))?;
            lock_until(&file, path, deadline, started, operation)?;
            locks.held.push((path.clone(), file));
        }
        tracing::debug!(
            leaves = locks.held.len(),
            waited_ms = started.elapsed().as_millis(),
            "active leaves locked"
        );
        Ok(locks)
    }

    /// The locked files, in lock order.
    #[cfg(test)]
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.held.iter().map(|(p, _)| p.as_path())
    }
}

impl Drop for LeafLocks {
    fn drop(&mut self) {
        for (path, file) in &self.held {
            if let Err(e) = file.unlock() {
                tracing::warn!(path = %path.display(), error = %e, "cannot unlock leaf (released on close)");
            }
        }
    }
}

fn lock_until(
    file: &File,
    path: &Path,
    deadline: Option<Instant>,
    started: Instant,
    operation: &'static str,
) -> Result<()> {
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(HostError::io(path, "lock leaf", e)),
            Err(TryLockError::WouldBlock) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(HostError::Timeout {
                        operation,
                        object: path.display().to_string(),
                        waited: started.elapsed(),
                    });
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn files(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("leaf{i}.vhdx"));
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn acquire_locks_every_file_once_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = files(dir.path(), 3);
        paths.reverse();
        paths.push(paths[0].clone());

        let locks = LeafLocks::acquire(&paths, Duration::from_secs(1), "test").unwrap();

        let got: Vec<&Path> = locks.paths().collect();
        let mut want: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        want.sort();
        want.dedup();
        assert_eq!(got, want);
    }

    #[test]
    fn held_locks_keep_another_locker_out_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 2);
        let locks = LeafLocks::acquire(&paths, Duration::from_secs(1), "test").unwrap();
        let other = OpenOptions::new().read(true).open(&paths[1]).unwrap();

        let while_held = other.try_lock();
        drop(locks);
        let after = other.try_lock();

        assert!(matches!(while_held, Err(TryLockError::WouldBlock)));
        assert!(after.is_ok(), "{after:?}");
    }

    #[test]
    fn a_writer_holding_a_leaf_past_the_timeout_is_a_timeout_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 2);
        let writer = File::open(&paths[1]).unwrap();
        writer.lock().unwrap();

        let err = LeafLocks::acquire(&paths, Duration::from_millis(20), "CreateReferencePoint")
            .unwrap_err();

        assert!(
            matches!(&err, HostError::Timeout { operation: "CreateReferencePoint", object, .. } if object.ends_with("leaf1.vhdx")),
            "{err:?}"
        );
        // The first file's lock was released with the failed attempt.
        let first = File::open(&paths[0]).unwrap();
        assert!(first.try_lock().is_ok());
    }

    #[test]
    fn a_writer_that_lets_go_in_time_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let paths = files(dir.path(), 1);
        let writer = File::open(&paths[0]).unwrap();
        writer.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let releaser = std::thread::spawn(move || {
            rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(30));
            drop(writer);
        });

        tx.send(()).unwrap();
        let locks = LeafLocks::acquire(&paths, Duration::from_secs(10), "test");

        releaser.join().unwrap();
        assert!(locks.is_ok(), "{locks:?}");
    }
}
