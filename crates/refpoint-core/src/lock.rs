//! The host lock: an exclusive advisory lock (`flock` through std
//! `File::try_lock`) on `<host>/host.lock`, held for the lifetime of a
//! [`Host`](crate::Host). The holder writes its process id into the file so
//! that a refused opener can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{HostError, Result};

/// File name of the lock file inside the host directory.
pub const LOCK_FILE_NAME: &str = "host.lock";

/// An acquired host lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct HostLock {
    file: File,
    path: PathBuf,
}

impl HostLock {
    /// Takes the lock on `path` without waiting and writes this process's id
    /// into it.
    ///
    /// # Errors
    /// [`HostError::Locked`] with the holder's pid if another open file
    /// description (another process, or another `Host` in this process)
    /// holds it; [`HostError::Io`] if the file cannot be opened or written.
    pub(crate) fn acquire(path: &Path) -> Result<HostLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| HostError::io(path, "open lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(HostError::Locked {
                    pid: read_pid(&mut file),
                    path: path.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(HostError::io(path, "lock", e)),
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .and_then(|()| file.sync_all())
            .map_err(|e| HostError::io(path, "write pid into lock file", e))?;
        Ok(HostLock {
            file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        // Best effort: an empty file says "nobody"; the lock itself is what
        // counts and is released with the descriptor regardless.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The pid the holder wrote, if the file holds one (it may be empty for an
/// instant after the holder locked it).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_in_same_process_is_locked_with_our_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE_NAME);
        let _held = HostLock::acquire(&path).unwrap();

        let err = HostLock::acquire(&path).unwrap_err();

        assert!(
            matches!(err, HostError::Locked { pid: Some(p), ref path } if p == std::process::id() && path.ends_with(LOCK_FILE_NAME)),
            "{err:?}"
        );
    }

    #[test]
    fn lock_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE_NAME);
        drop(HostLock::acquire(&path).unwrap());

        let again = HostLock::acquire(&path);

        assert!(again.is_ok(), "{again:?}");
    }
}
