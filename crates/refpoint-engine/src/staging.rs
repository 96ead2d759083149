//! Atomic commit of an export directory.
//!
//! Everything is written under
//! `<ExportDirectory>/.refpoint-staging-<job id>/<ElementName>/`; the staging
//! directory holds a lock file (`refpoint.lock`, `flock`ed exclusively for
//! the job's lifetime) that marks it live. Commit = fsync files (done by the
//! writers), fsync the VM folder's directories, `renameat2(RENAME_NOREPLACE)`
//! the VM folder to `<ExportDirectory>/<ElementName>`, fsync the export
//! directory, remove the staging directory. Dropping an uncommitted
//! [`Staging`] removes the staging directory (error, interrupt, panic); a
//! crash leaves a staging directory whose lock nobody holds, which
//! [`cleanup_stale_staging`] (and every new export into the directory)
//! removes.
//!
//! Concurrency: the check "is another live export writing this VM folder?"
//! and the creation of the staging directory happen under an exclusive
//! `flock` of the export directory itself, so two exports racing for the same
//! target cannot both start (the loser gets [`StagingError::InUse`], CIM 32774).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{EngineError, ErrorContext, ErrorKind, io_kind};

/// Name prefix of staging directories inside an export directory.
pub const STAGING_PREFIX: &str = ".refpoint-staging-";
/// Lock file inside a staging directory.
pub const LOCK_FILE: &str = "refpoint.lock";

/// Staging, locking or committing failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// A file-system operation failed.
    #[error("cannot {operation} '{}': {cause}", path.display())]
    Io {
        /// What was attempted, e.g. `"create staging directory"`.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Another live export is writing the same VM folder.
    #[error(
        "export directory is in use: staging directory '{}' of another running export writes VM folder {element_name:?}",
        staging.display()
    )]
    InUse {
        /// The VM folder name.
        element_name: String,
        /// The other export's staging directory.
        staging: PathBuf,
    },
    /// The target VM folder exists; nothing is overwritten.
    #[error("'{}' already exists; an export never overwrites a VM folder", path.display())]
    TargetExists {
        /// The existing target.
        path: PathBuf,
    },
}

impl StagingError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            StagingError::Io { cause, .. } => io_kind(cause),
            StagingError::InUse { .. } => ErrorKind::InUse,
            StagingError::TargetExists { .. } => ErrorKind::TargetExists,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        let (operation, path) = match self {
            StagingError::Io {
                operation, path, ..
            } => (*operation, path),
            StagingError::InUse { staging, .. } => ("lock export directory", staging),
            StagingError::TargetExists { path } => ("commit export", path),
        };
        ErrorContext {
            operation,
            path: Some(path.clone()),
            ..ErrorContext::default()
        }
    }
}

fn io_err(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StagingError {
    let path = path.to_path_buf();
    move |cause| StagingError::Io {
        operation,
        path,
        cause,
    }
}

/// Fsyncs a directory (its entries become durable).
pub(crate) fn sync_dir(path: &Path) -> Result<(), StagingError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", path))
}

/// Fails with [`StagingError::TargetExists`] if `target` exists (as anything,
/// including a dangling symlink).
pub(crate) fn check_target_free(target: &Path) -> Result<(), StagingError> {
    match fs::symlink_metadata(target) {
        Ok(_) => Err(StagingError::TargetExists {
            path: target.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("inspect target", target)(e)),
    }
}

/// An exclusive `flock` on the export directory, held while staging
/// directories are inspected, created or removed.
struct DirectoryLock {
    _dir: File,
}

impl DirectoryLock {
    fn acquire(export_directory: &Path) -> Result<DirectoryLock, StagingError> {
        let dir = File::open(export_directory).map_err(io_err("open", export_directory))?;
        dir.lock()
            .map_err(io_err("lock export directory", export_directory))?;
        Ok(DirectoryLock { _dir: dir })
    }
}

/// Liveness of one staging directory.
enum Liveness {
    /// Its lock is held by a running export.
    Live,
    /// Nobody holds its lock (crash or kill leftover).
    Stale,
}

fn liveness(staging: &Path) -> Result<Liveness, StagingError> {
    let lock_path = staging.join(LOCK_FILE);
    let file = match File::open(&lock_path) {
        Ok(f) => f,
        // Created under the directory lock together with the directory: a
        // staging directory without one is a crash leftover.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Liveness::Stale),
        Err(e) => return Err(io_err("open lock file", &lock_path)(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(Liveness::Stale),
        Err(fs::TryLockError::WouldBlock) => Ok(Liveness::Live),
        Err(fs::TryLockError::Error(e)) => Err(io_err("test lock file", &lock_path)(e)),
    }
}

/// Staging directories in `export_directory` (full paths).
fn staging_dirs(export_directory: &Path) -> Result<Vec<PathBuf>, StagingError> {
    let mut found = Vec::new();
    let entries = fs::read_dir(export_directory).map_err(io_err("list", export_directory))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", export_directory))?;
        let is_staging = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(STAGING_PREFIX));
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_staging && is_dir {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Removes the staging directories of `export_directory` whose lock nobody
/// holds (leftovers of a crashed or killed export); live ones are kept.
///
/// # Errors
/// [`crate::ErrorKind::Failed`] / `AccessDenied` when the directory cannot be
/// listed, locked or a stale directory cannot be removed.
pub fn cleanup_stale_staging(export_directory: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let _guard = DirectoryLock::acquire(export_directory)?;
    Ok(remove_stale(export_directory)?)
}

fn remove_stale(export_directory: &Path) -> Result<Vec<PathBuf>, StagingError> {
    let mut removed = Vec::new();
    for dir in staging_dirs(export_directory)? {
        if matches!(liveness(&dir)?, Liveness::Stale) {
            fs::remove_dir_all(&dir).map_err(io_err("remove stale staging directory", &dir))?;
            tracing::info!(path = %dir.display(), "removed stale export staging directory");
            removed.push(dir);
        }
    }
    Ok(removed)
}

/// A live staging directory of one export.
#[derive(Debug)]
pub(crate) struct Staging {
    export_directory: PathBuf,
    root: PathBuf,
    vm_folder: PathBuf,
    target: PathBuf,
    lock_file: File,
    removed_stale: Vec<PathBuf>,
    committed: bool,
}

impl Staging {
    /// Creates `export_directory` if missing (its parent must exist), then,
    /// under the directory lock: checks the target is free and that no live
    /// export writes the same VM folder, removes stale staging directories,
    /// and creates and locks this job's staging directory.
    ///
    /// # Errors
    /// [`StagingError::TargetExists`], [`StagingError::InUse`],
    /// [`StagingError::Io`].
    pub(crate) fn begin(
        export_directory: &Path,
        element_name: &str,
        job_id: Uuid,
    ) -> Result<Staging, StagingError> {
        match fs::create_dir(export_directory) {
            Ok(()) => {
                if let Some(parent) = export_directory.parent() {
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create export directory", export_directory)(e)),
        }
        let guard = DirectoryLock::acquire(export_directory)?;
        let target = export_directory.join(element_name);
        check_target_free(&target)?;
        let removed_stale = remove_stale(export_directory)?;
        for other in staging_dirs(export_directory)? {
            if other.join(element_name).exists() {
                return Err(StagingError::InUse {
                    element_name: element_name.to_owned(),
                    staging: other,
                });
            }
        }
        let root = export_directory.join(format!("{STAGING_PREFIX}{}", job_id.hyphenated()));
        match fs::create_dir(&root) {
            Ok(()) => {}
            // The same job id is already running here.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StagingError::InUse {
                    element_name: element_name.to_owned(),
                    staging: root,
                });
            }
            Err(e) => return Err(io_err("create staging directory", &root)(e)),
        }
        // From here on, dropping `staging` removes `root`.
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path);
        let lock = match lock {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                return Err(io_err("create lock file", &lock_path)(e));
            }
        };
        let mut staging = Staging {
            export_directory: export_directory.to_path_buf(),
            vm_folder: root.join(element_name),
            root,
            target,
            lock_file: lock,
            removed_stale,
            committed: false,
        };
        staging
            .lock_file
            .try_lock()
            .map_err(|e| match e {
                fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
                fs::TryLockError::Error(e) => e,
            })
            .map_err(io_err("lock", &lock_path))?;
        writeln!(staging.lock_file, "{element_name}").map_err(io_err("write", &lock_path))?;
        fs::create_dir(&staging.vm_folder).map_err(io_err("create", &staging.vm_folder))?;
        drop(guard);
        Ok(staging)
    }

    /// `<staging>/<ElementName>`: where the export is written.
    pub(crate) fn vm_folder(&self) -> &Path {
        &self.vm_folder
    }

    /// Stale staging directories removed when this one was created.
    pub(crate) fn removed_stale(&self) -> &[PathBuf] {
        &self.removed_stale
    }

    /// Renames the (fsynced) VM folder into place and fsyncs the export
    /// directory; then removes the staging directory. Returns the final VM
    /// folder path.
    ///
    /// # Errors
    /// [`StagingError::TargetExists`] if the target appeared meanwhile (nothing
    /// is overwritten), [`StagingError::Io`].
    pub(crate) fn commit(mut self) -> Result<PathBuf, StagingError> {
        sync_dir(&self.vm_folder)?;
        sync_dir(&self.root)?;
        rename_no_replace(&self.vm_folder, &self.target)?;
        self.committed = true;
        sync_dir(&self.export_directory)?;
        if let Err(e) = fs::remove_dir_all(&self.root) {
            // The export is complete and durable; the leftover holds only the
            // lock file and is removed by the next cleanup.
            tracing::warn!(path = %self.root.display(), error = %e, "cannot remove staging directory");
        }
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed
            && let Err(e) = fs::remove_dir_all(&self.root)
        {
            tracing::warn!(path = %self.root.display(), error = %e, "cannot remove staging directory");
        }
    }
}

/// `rename(from, to)` that fails instead of replacing an existing `to`.
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), StagingError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NOTEMPTY) => {
            Err(StagingError::TargetExists {
                path: to.to_path_buf(),
            })
        }
        // File systems without RENAME_NOREPLACE: check, then rename. The
        // window is covered for refpoint writers by the staging lock rules.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            check_target_free(to)?;
            fs::rename(from, to).map_err(io_err("rename into place", to))
        }
        Err(errno) => Err(io_err("rename into place", to)(io::Error::from(errno))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Uuid {
        Uuid::from_u128(0x1234)
    }

    #[test]
    fn begin_when_target_exists_is_target_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("vm")).expect("existing target");

        let result = Staging::begin(dir.path(), "vm", job());

        assert!(matches!(result, Err(StagingError::TargetExists { .. })));
    }

    #[test]
    fn begin_while_other_export_of_same_folder_is_live_is_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Staging::begin(dir.path(), "vm", job()).expect("first export");

        let second = Staging::begin(dir.path(), "vm", Uuid::from_u128(0x5678));

        assert!(matches!(second, Err(StagingError::InUse { .. })));
        drop(first);
    }

    #[test]
    fn begin_for_other_folder_while_one_is_live_succeeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Staging::begin(dir.path(), "vm-a", job()).expect("first export");

        let second = Staging::begin(dir.path(), "vm-b", Uuid::from_u128(0x5678));

        assert!(second.is_ok());
    }

    #[test]
    fn drop_without_commit_removes_staging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::begin(dir.path(), "vm", job()).expect("staging");
        fs::write(staging.vm_folder().join("f"), b"x").expect("write");

        drop(staging);

        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn commit_moves_folder_and_removes_staging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::begin(dir.path(), "vm", job()).expect("staging");
        fs::write(staging.vm_folder().join("f"), b"x").expect("write");

        let target = staging.commit().expect("commit");

        assert_eq!(fs::read(target.join("f")).expect("committed file"), b"x");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("vm")]);
    }

    #[test]
    fn commit_when_target_appeared_meanwhile_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::begin(dir.path(), "vm", job()).expect("staging");
        fs::create_dir(dir.path().join("vm")).expect("concurrent target");
        fs::write(dir.path().join("vm").join("mine"), b"keep").expect("write");

        let result = staging.commit();

        assert!(matches!(result, Err(StagingError::TargetExists { .. })));
        assert_eq!(
            fs::read(dir.path().join("vm").join("mine")).expect("kept"),
            b"keep"
        );
    }

    #[test]
    fn cleanup_removes_unlocked_and_keeps_live_staging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join(format!("{STAGING_PREFIX}dead"));
        fs::create_dir_all(stale.join("vm")).expect("stale dir");
        fs::write(stale.join(LOCK_FILE), b"vm\n").expect("stale lock file");
        let live = Staging::begin(dir.path(), "other", job()).expect("live export");
        // `begin` already removed the stale one; make another.
        fs::create_dir_all(stale.join("vm")).expect("stale dir again");

        let removed = cleanup_stale_staging(dir.path()).expect("cleanup");

        assert_eq!(removed, vec![stale]);
        assert!(live.vm_folder().is_dir());
    }

    #[test]
    fn begin_creates_missing_export_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let export = dir.path().join("new");

        let staging = Staging::begin(&export, "vm", job()).expect("staging");

        assert!(staging.vm_folder().starts_with(&export));
    }
}
