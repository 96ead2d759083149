//! All-or-nothing commit of a collection export, and its recovery.
//!
//! A collection export puts several entries into the export directory `D`
//! (one VM folder per member, `SHA256SUMS`, `refpoint-collection.json`);
//! no single rename can publish them. The protocol:
//!
//! ```text
//! R = D/.refpoint-collection-<job id>/      created with refpoint.lock (flock) under D's flock
//!   <ElementName>/ ...                      every member, written and fsynced
//!   SHA256SUMS, refpoint-collection.json    written and fsynced
//! 1. fsync the member folders and R                          (staged)
//! 2. under D's flock: every target D/<entry> must be free
//! 3. R/refpoint-commit-intent.json: the entries in rename order with their
//!    digests, written to a temp file, fsynced, renamed, R fsynced  ← COMMIT POINT
//! 4. rename each entry R/x → D/x with RENAME_NOREPLACE (members first,
//!    refpoint-collection.json last); fsync D
//! 5. remove the intent, then R; fsync D
//! ```
//!
//! A target that appears during step 4 (another writer) makes the job move
//! back what it moved, remove the intent and fail (`TargetExists`, 32773):
//! nothing is published. A crash or kill is resolved by
//! [`recover_collection_exports`], run by the next collection export into
//! `D` and by the host when it finds the interrupted job (next start), for
//! every `R` whose lock nobody holds:
//!
//! - no intent (crash before step 3): `R` is removed — **rolled back**;
//! - an intent: the entries still in `R` are renamed into `D` — **rolled
//!   forward** — unless one of their targets exists meanwhile; then the
//!   entries already in `D` (recognised by the digest the intent records:
//!   a member folder's `refpoint-export.json`, a file's own SHA-256) are
//!   moved back and `R` is removed — **rolled back**.
//!
//! Either way no staging directory is left and `D` holds every entry of the
//! collection export or none of them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::digest::{file_digest, to_hex};
use crate::error::{EngineError, ErrorContext, ErrorKind, io_kind};
use crate::plan::MANIFEST_FILE;
use crate::staging::{LOCK_FILE, STAGING_PREFIX};

/// Name prefix of collection staging directories inside an export directory.
pub const COLLECTION_STAGING_PREFIX: &str = ".refpoint-collection-";
/// The commit intent record inside a collection staging directory.
pub const INTENT_FILE: &str = "refpoint-commit-intent.json";
/// Value of the intent's `format`.
const INTENT_FORMAT: &str = "refpoint-collection-commit/1";

/// A collection export's request, staging, commit or recovery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionError {
    /// The request names no member.
    #[error("the collection export has no member to export")]
    NoMembers,
    /// Two members would write the same folder (VM names compare
    /// case-insensitively).
    #[error("members {first} and {second} are both named {name:?}: their folders would collide")]
    DuplicateMember {
        /// The shared `ElementName`.
        name: String,
        /// VM GUID of the first member.
        first: String,
        /// VM GUID of the second member.
        second: String,
    },
    /// A member request names another export directory than the collection's.
    #[error("member {member} exports to '{}', the collection to '{}'", directory.display(), expected.display())]
    MemberDirectory {
        /// VM GUID of the member.
        member: String,
        /// Its export directory.
        directory: PathBuf,
        /// The collection's export directory.
        expected: PathBuf,
    },
    /// A file-system operation failed.
    #[error("cannot {operation} '{}': {cause}", path.display())]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// An entry of the collection export exists at the target already.
    #[error("'{}' already exists; a collection export never overwrites anything", path.display())]
    TargetExists {
        /// The existing target.
        path: PathBuf,
    },
    /// A live export is writing an entry of the same name into the directory.
    #[error("export directory is in use: staging directory '{}' of a running export writes {name:?}", staging.display())]
    InUse {
        /// The entry name (a VM folder).
        name: String,
        /// The other export's staging directory.
        staging: PathBuf,
    },
    /// A staged member's manifest or checksums cannot be read back.
    #[error("staged member file '{}' is unusable: {reason}", path.display())]
    StagedMember {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A member's export thread cannot be started.
    #[error("cannot start the export thread of member {member}: {cause}")]
    MemberThread {
        /// The member's `ElementName`.
        member: String,
        /// The OS error.
        cause: io::Error,
    },
    /// A member's export thread panicked.
    #[error("the export thread of member {member} panicked")]
    MemberPanicked {
        /// The member's `ElementName`.
        member: String,
    },
    /// A simulated crash (tests of the commit protocol).
    #[cfg(test)]
    #[error("simulated crash at {0}")]
    Crashed(String),
}

impl CollectionError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            CollectionError::NoMembers
            | CollectionError::DuplicateMember { .. }
            | CollectionError::MemberDirectory { .. } => ErrorKind::InvalidParameter,
            CollectionError::Io { cause, .. } => io_kind(cause),
            CollectionError::TargetExists { .. } => ErrorKind::TargetExists,
            CollectionError::InUse { .. } => ErrorKind::InUse,
            CollectionError::StagedMember { .. } | CollectionError::MemberPanicked { .. } => {
                ErrorKind::Failed
            }
            CollectionError::MemberThread { .. } => ErrorKind::OutOfMemory,
            #[cfg(test)]
            CollectionError::Crashed(_) => ErrorKind::Failed,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        let (operation, path) = match self {
            CollectionError::NoMembers
            | CollectionError::DuplicateMember { .. }
            | CollectionError::MemberPanicked { .. } => ("validate collection export", None),
            CollectionError::MemberThread { .. } => ("start member thread", None),
            CollectionError::MemberDirectory { directory, .. } => {
                ("validate collection export", Some(directory))
            }
            CollectionError::Io {
                operation, path, ..
            } => (*operation, Some(path)),
            CollectionError::TargetExists { path } => ("commit collection export", Some(path)),
            CollectionError::InUse { staging, .. } => ("lock export directory", Some(staging)),
            CollectionError::StagedMember { path, .. } => ("read staged member", Some(path)),
            #[cfg(test)]
            CollectionError::Crashed(_) => ("commit collection export", None),
        };
        ErrorContext {
            operation,
            path: path.cloned(),
            ..ErrorContext::default()
        }
    }
}

fn io_err(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CollectionError {
    let path = path.to_path_buf();
    move |cause| CollectionError::Io {
        operation,
        path,
        cause,
    }
}

fn sync_dir(path: &Path) -> Result<(), CollectionError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", path))
}

/// True when `path` exists as anything (a dangling symlink included).
fn exists(path: &Path) -> Result<bool, CollectionError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// An exclusive `flock` of the export directory (the same lock the
/// single-VM staging takes), held while staging directories are created,
/// committed or recovered.
struct DirectoryLock {
    _dir: File,
}

impl DirectoryLock {
    fn acquire(dir: &Path) -> Result<DirectoryLock, CollectionError> {
        let file = File::open(dir).map_err(io_err("open", dir))?;
        file.lock().map_err(io_err("lock export directory", dir))?;
        Ok(DirectoryLock { _dir: file })
    }
}

/// What one entry of the intent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EntryKind {
    /// A member's VM folder; recognised by its `refpoint-export.json` digest.
    Folder,
    /// A file; recognised by its own digest.
    File,
}

/// One entry to publish, in rename order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IntentEntry {
    /// Name inside the staging directory and the export directory.
    pub(crate) name: String,
    /// Folder or file.
    pub(crate) kind: EntryKind,
    /// SHA-256 that identifies it (see [`EntryKind`]), lower-case hex.
    pub(crate) sha256: String,
}

/// The commit intent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Intent {
    format: String,
    job_id: String,
    entries: Vec<IntentEntry>,
}

/// The steps of [`CollectionStaging::commit`] a test can stop after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // inspected only by the crash injection of tests
pub(crate) enum CommitStep {
    /// Everything staged and fsynced, no intent.
    Staged,
    /// The intent is durable.
    IntentWritten,
    /// The n-th entry (0-based) was renamed into place.
    Renamed(usize),
    /// The intent was removed; the staging directory remains.
    IntentRemoved,
}

/// The live staging directory of one collection export.
#[derive(Debug)]
pub(crate) struct CollectionStaging {
    export_directory: PathBuf,
    root: PathBuf,
    lock_file: Option<File>,
    job_id: Uuid,
    done: bool,
    #[cfg(test)]
    pub(crate) crash_at: Option<CommitStep>,
}

impl CollectionStaging {
    /// Creates the export directory if missing (its parent must exist), then
    /// under its lock: checks that no target entry exists and that no live
    /// export stages a folder of the same name, and creates the staging
    /// directory with its lock and one empty folder per member.
    ///
    /// # Errors
    /// [`CollectionError::TargetExists`], [`CollectionError::InUse`],
    /// [`CollectionError::Io`].
    pub(crate) fn begin(
        export_directory: &Path,
        job_id: Uuid,
        members: &[&str],
        files: &[&str],
    ) -> Result<CollectionStaging, CollectionError> {
        match fs::create_dir(export_directory) {
            Ok(()) => {
                if let Some(parent) = export_directory.parent() {
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create export directory", export_directory)(e)),
        }
        let _guard = DirectoryLock::acquire(export_directory)?;
        for name in members.iter().chain(files) {
            let target = export_directory.join(name);
            if exists(&target)? {
                return Err(CollectionError::TargetExists { path: target });
            }
        }
        for other in staging_dirs(
            export_directory,
            &[STAGING_PREFIX, COLLECTION_STAGING_PREFIX],
        )? {
            if !is_live(&other)? {
                continue;
            }
            if let Some(name) = members.iter().find(|m| other.join(m).exists()) {
                return Err(CollectionError::InUse {
                    name: (*name).to_owned(),
                    staging: other,
                });
            }
        }
        let root = export_directory.join(format!(
            "{COLLECTION_STAGING_PREFIX}{}",
            job_id.hyphenated()
        ));
        fs::create_dir(&root).map_err(io_err("create staging directory", &root))?;
        let mut staging = CollectionStaging {
            export_directory: export_directory.to_path_buf(),
            root,
            lock_file: None,
            job_id,
            done: false,
            #[cfg(test)]
            crash_at: None,
        };
        let lock_path = staging.root.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
            .map_err(io_err("create lock file", &lock_path))?;
        lock.try_lock()
            .map_err(|e| match e {
                fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
                fs::TryLockError::Error(e) => e,
            })
            .map_err(io_err("lock", &lock_path))?;
        writeln!(lock, "{}", job_id.hyphenated()).map_err(io_err("write", &lock_path))?;
        staging.lock_file = Some(lock);
        for name in members {
            let folder = staging.root.join(name);
            fs::create_dir(&folder).map_err(io_err("create member folder", &folder))?;
        }
        Ok(staging)
    }

    /// The staging directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Publishes `entries` (module docs, steps 1–5).
    ///
    /// # Errors
    /// [`CollectionError::TargetExists`] when a target exists (before the
    /// intent, or appearing during the renames: what was moved is moved
    /// back); [`CollectionError::Io`]. After a failure before the commit
    /// point nothing is published; after it, a failed rename leaves the
    /// intent for [`recover_collection_exports`].
    pub(crate) fn commit(mut self, entries: &[IntentEntry]) -> Result<(), CollectionError> {
        for e in entries.iter().filter(|e| e.kind == EntryKind::Folder) {
            sync_dir(&self.root.join(&e.name))?;
        }
        sync_dir(&self.root)?;
        self.step(CommitStep::Staged)?;
        let guard = DirectoryLock::acquire(&self.export_directory)?;
        for e in entries {
            let target = self.export_directory.join(&e.name);
            if exists(&target)? {
                return Err(CollectionError::TargetExists { path: target });
            }
        }
        write_intent(&self.root, self.job_id, entries)?;
        self.step(CommitStep::IntentWritten)?;
        let mut moved: Vec<&IntentEntry> = Vec::with_capacity(entries.len());
        for (k, e) in entries.iter().enumerate() {
            let from = self.root.join(&e.name);
            let to = self.export_directory.join(&e.name);
            match rename_no_replace(&from, &to) {
                Ok(()) => moved.push(e),
                Err(err) => {
                    // Keep the staging (and intent) if moving back fails:
                    // recovery then finishes the job.
                    self.done = true;
                    self.move_back(&moved)?;
                    self.done = false;
                    return Err(err);
                }
            }
            self.step(CommitStep::Renamed(k))?;
        }
        sync_dir(&self.export_directory)?;
        let intent = self.root.join(INTENT_FILE);
        fs::remove_file(&intent).map_err(io_err("remove commit intent", &intent))?;
        sync_dir(&self.root)?;
        self.done = true;
        self.step(CommitStep::IntentRemoved)?;
        self.lock_file = None;
        if let Err(e) = fs::remove_dir_all(&self.root) {
            tracing::warn!(path = %self.root.display(), error = %e, "cannot remove collection staging directory (the export is committed)");
        }
        sync_dir(&self.export_directory)?;
        drop(guard);
        Ok(())
    }

    /// Moves published entries back into the staging directory and removes
    /// the intent (a target appeared during the renames).
    fn move_back(&self, moved: &[&IntentEntry]) -> Result<(), CollectionError> {
        for e in moved.iter().rev() {
            let from = self.export_directory.join(&e.name);
            let to = self.root.join(&e.name);
            fs::rename(&from, &to).map_err(io_err("move back", &from))?;
        }
        sync_dir(&self.export_directory)?;
        let intent = self.root.join(INTENT_FILE);
        fs::remove_file(&intent).map_err(io_err("remove commit intent", &intent))?;
        sync_dir(&self.root)
    }

    /// A point of the protocol; the test build can simulate a crash here.
    fn step(&mut self, step: CommitStep) -> Result<(), CollectionError> {
        #[cfg(test)]
        if self.crash_at == Some(step) {
            // A crash: the lock goes with the process, nothing is cleaned up.
            self.done = true;
            self.lock_file = None;
            return Err(CollectionError::Crashed(format!("{step:?}")));
        }
        let _ = step;
        Ok(())
    }
}

impl Drop for CollectionStaging {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = fs::remove_dir_all(&self.root)
        {
            tracing::warn!(path = %self.root.display(), error = %e, "cannot remove collection staging directory");
        }
    }
}

/// Writes the intent atomically: temp file, fsync, rename, fsync of `root`.
fn write_intent(root: &Path, job_id: Uuid, entries: &[IntentEntry]) -> Result<(), CollectionError> {
    let intent = Intent {
        format: INTENT_FORMAT.to_owned(),
        job_id: job_id.hyphenated().to_string(),
        entries: entries.to_vec(),
    };
    let path = root.join(INTENT_FILE);
    let tmp = root.join(format!("{INTENT_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(&intent)
        .map_err(|e| io_err("serialise commit intent", &path)(io::Error::other(e)))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err("write commit intent", &tmp))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write commit intent", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("commit intent", &path))?;
    sync_dir(root)
}

/// `rename(from, to)` that fails instead of replacing an existing `to`.
fn rename_no_replace(from: &Path, to: &Path) -> Result<(), CollectionError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NOTEMPTY) => {
            Err(CollectionError::TargetExists {
                path: to.to_path_buf(),
            })
        }
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            if exists(to)? {
                return Err(CollectionError::TargetExists {
                    path: to.to_path_buf(),
                });
            }
            fs::rename(from, to).map_err(io_err("rename into place", to))
        }
        Err(errno) => Err(io_err("rename into place", to)(io::Error::from(errno))),
    }
}

/// Directories of `dir` whose names start with one of `prefixes`.
fn staging_dirs(dir: &Path, prefixes: &[&str]) -> Result<Vec<PathBuf>, CollectionError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        let matches = name
            .to_str()
            .is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p)));
        if matches && entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// True while the staging directory's lock is held by a running export.
fn is_live(staging: &Path) -> Result<bool, CollectionError> {
    let lock_path = staging.join(LOCK_FILE);
    let file = match File::open(&lock_path) {
        Ok(f) => f,
        // Created under the directory lock together with the directory.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("open lock file", &lock_path)(e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(fs::TryLockError::WouldBlock) => Ok(true),
        Err(fs::TryLockError::Error(e)) => Err(io_err("test lock file", &lock_path)(e)),
    }
}

/// How [`recover_collection_exports`] resolved one leftover staging directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionRecovery {
    /// The commit point had been passed: the remaining entries were moved
    /// into the export directory.
    RolledForward {
        /// The staging directory (now removed).
        staging: PathBuf,
        /// The entries moved by the recovery.
        moved: Vec<String>,
    },
    /// The commit had finished; only the empty staging directory was left.
    Cleaned {
        /// The staging directory (now removed).
        staging: PathBuf,
    },
    /// Nothing of that export is published.
    RolledBack {
        /// The staging directory (now removed).
        staging: PathBuf,
        /// Why: no intent, or the target that blocked the roll forward.
        reason: String,
    },
}

/// Resolves the collection staging directories of `export_directory` that
/// no running export holds (module docs): each is rolled forward or back
/// and removed. A missing export directory has nothing to recover.
///
/// # Errors
/// `Failed` / `AccessDenied` when the directory cannot be listed or locked,
/// or an entry cannot be moved or removed.
pub fn recover_collection_exports(
    export_directory: &Path,
) -> Result<Vec<CollectionRecovery>, EngineError> {
    if !export_directory.is_dir() {
        return Ok(Vec::new());
    }
    let _guard = DirectoryLock::acquire(export_directory)?;
    let mut done = Vec::new();
    for staging in staging_dirs(export_directory, &[COLLECTION_STAGING_PREFIX])? {
        if is_live(&staging)? {
            continue;
        }
        let outcome = recover_one(export_directory, &staging)?;
        fs::remove_dir_all(&staging).map_err(io_err("remove staging directory", &staging))?;
        sync_dir(export_directory)?;
        tracing::info!(staging = %staging.display(), outcome = ?outcome, "recovered an interrupted collection export");
        done.push(outcome);
    }
    Ok(done)
}

fn recover_one(dir: &Path, staging: &Path) -> Result<CollectionRecovery, CollectionError> {
    let intent_path = staging.join(INTENT_FILE);
    let rolled_back = |reason: String| CollectionRecovery::RolledBack {
        staging: staging.to_path_buf(),
        reason,
    };
    let text = match fs::read(&intent_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(if holds_entries(staging)? {
                rolled_back("interrupted before the commit point (no intent)".to_owned())
            } else {
                CollectionRecovery::Cleaned {
                    staging: staging.to_path_buf(),
                }
            });
        }
        Err(e) => return Err(io_err("read commit intent", &intent_path)(e)),
    };
    let intent: Intent = match serde_json::from_slice(&text) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(path = %intent_path.display(), error = %e, "unreadable commit intent; rolling back");
            return Ok(rolled_back(format!("unreadable commit intent: {e}")));
        }
    };
    let mut pending = Vec::new();
    for e in &intent.entries {
        if exists(&staging.join(&e.name))? {
            if exists(&dir.join(&e.name))? {
                let blocked = dir.join(&e.name);
                move_back_published(dir, staging, &intent.entries)?;
                return Ok(rolled_back(format!(
                    "'{}' appeared before the commit finished",
                    blocked.display()
                )));
            }
            pending.push(e);
        }
    }
    for e in &pending {
        rename_no_replace(&staging.join(&e.name), &dir.join(&e.name))?;
    }
    sync_dir(dir)?;
    Ok(CollectionRecovery::RolledForward {
        staging: staging.to_path_buf(),
        moved: pending.iter().map(|e| e.name.clone()).collect(),
    })
}

/// True when a staging directory holds anything besides its lock file and
/// a temporary intent: entries not yet published.
fn holds_entries(staging: &Path) -> Result<bool, CollectionError> {
    let tmp = format!("{INTENT_FILE}.tmp");
    for entry in fs::read_dir(staging).map_err(io_err("list", staging))? {
        let entry = entry.map_err(io_err("list", staging))?;
        let name = entry.file_name();
        if name != LOCK_FILE && name.to_str() != Some(tmp.as_str()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves entries of this export already in `dir` back into `staging`
/// (those the intent recognises by digest).
fn move_back_published(
    dir: &Path,
    staging: &Path,
    entries: &[IntentEntry],
) -> Result<(), CollectionError> {
    for e in entries.iter().rev() {
        let published = dir.join(&e.name);
        if exists(&staging.join(&e.name))? || !exists(&published)? {
            continue;
        }
        if identity_digest(&published, e.kind)?.as_deref() == Some(e.sha256.as_str()) {
            fs::rename(&published, staging.join(&e.name))
                .map_err(io_err("move back", &published))?;
        }
    }
    sync_dir(dir)
}

/// The digest that identifies an entry (see [`EntryKind`]); `None` when the
/// file to hash is missing.
fn identity_digest(path: &Path, kind: EntryKind) -> Result<Option<String>, CollectionError> {
    let file = match kind {
        EntryKind::Folder => path.join(MANIFEST_FILE),
        EntryKind::File => path.to_path_buf(),
    };
    let mut buf = vec![0u8; 1 << 16];
    match file_digest::<io::Error>(&file, &mut buf, || Ok(())) {
        Ok((d, _)) => Ok(Some(to_hex(&d))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("hash", &file)(e)),
    }
}

/// The intent entry of a staged member folder.
pub(crate) fn folder_entry(staging: &Path, name: &str) -> Result<IntentEntry, CollectionError> {
    let path = staging.join(name);
    let sha256 = identity_digest(&path, EntryKind::Folder)?.ok_or_else(|| {
        CollectionError::StagedMember {
            path: path.join(MANIFEST_FILE),
            reason: "missing".to_owned(),
        }
    })?;
    Ok(IntentEntry {
        name: name.to_owned(),
        kind: EntryKind::Folder,
        sha256,
    })
}

/// The intent entry of a staged file whose digest is known.
pub(crate) fn file_entry(name: &str, sha256: String) -> IntentEntry {
    IntentEntry {
        name: name.to_owned(),
        kind: EntryKind::File,
        sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    const MEMBERS: [&str; 2] = ["vm-a", "vm-b"];
    const FILES: [&str; 2] = ["SHA256SUMS", "refpoint-collection.json"];

    fn job() -> Uuid {
        Uuid::from_u128(0xC0_11EC)
    }

    /// A staging directory with both members and both files staged; returns
    /// it with its intent entries.
    fn staged(dir: &Path) -> (CollectionStaging, Vec<IntentEntry>) {
        let staging = CollectionStaging::begin(dir, job(), &MEMBERS, &FILES).unwrap();
        let mut entries = Vec::new();
        for m in MEMBERS {
            let folder = staging.root().join(m);
            fs::write(folder.join(MANIFEST_FILE), format!("manifest of {m}")).unwrap();
            fs::write(folder.join("data"), m).unwrap();
            entries.push(folder_entry(staging.root(), m).unwrap());
        }
        for f in FILES {
            fs::write(staging.root().join(f), f).unwrap();
            entries.push(file_entry(f, to_hex(&sha256(f.as_bytes()))));
        }
        (staging, entries)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn everything() -> Vec<String> {
        let mut v: Vec<String> = MEMBERS
            .iter()
            .chain(&FILES)
            .map(|s| (*s).to_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_publishes_every_entry_and_removes_the_staging() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, entries) = staged(dir.path());

        staging.commit(&entries).unwrap();

        assert_eq!(names(dir.path()), everything());
        assert_eq!(
            fs::read_to_string(dir.path().join("vm-b/data")).unwrap(),
            "vm-b"
        );
    }

    #[test]
    fn dropping_an_uncommitted_staging_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, _) = staged(dir.path());

        drop(staging);

        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn begin_refuses_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("SHA256SUMS"), b"x").unwrap();

        let err = CollectionStaging::begin(dir.path(), job(), &MEMBERS, &FILES).unwrap_err();

        assert!(
            matches!(err, CollectionError::TargetExists { ref path } if path.ends_with("SHA256SUMS")),
            "{err:?}"
        );
    }

    #[test]
    fn begin_refuses_a_member_a_live_export_stages() {
        let dir = tempfile::tempdir().unwrap();
        let _other =
            CollectionStaging::begin(dir.path(), Uuid::from_u128(7), &["vm-b"], &[]).unwrap();

        let err = CollectionStaging::begin(dir.path(), job(), &MEMBERS, &FILES).unwrap_err();

        assert!(
            matches!(err, CollectionError::InUse { ref name, .. } if name == "vm-b"),
            "{err:?}"
        );
    }

    #[test]
    fn a_target_appearing_during_the_renames_moves_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut staging, entries) = staged(dir.path());
        staging.crash_at = None;
        fs::create_dir(dir.path().join("refpoint-collection.json")).unwrap();

        let err = staging.commit(&entries).unwrap_err();

        assert!(
            matches!(err, CollectionError::TargetExists { .. }),
            "{err:?}"
        );
        assert_eq!(
            names(dir.path()),
            vec!["refpoint-collection.json".to_owned()]
        );
    }

    /// Crash after each step, then recover: all entries or none, no staging.
    #[test]
    fn a_crash_at_any_step_is_rolled_forward_or_back_by_recovery() {
        let steps = [
            (CommitStep::Staged, Some(false)),
            (CommitStep::IntentWritten, Some(true)),
            (CommitStep::Renamed(0), Some(true)),
            (CommitStep::Renamed(1), Some(true)),
            (CommitStep::Renamed(2), Some(true)),
            (CommitStep::Renamed(3), Some(true)),
            (CommitStep::IntentRemoved, None),
        ];
        for (step, forward) in steps {
            let dir = tempfile::tempdir().unwrap();
            let (mut staging, entries) = staged(dir.path());
            staging.crash_at = Some(step);

            let err = staging.commit(&entries).unwrap_err();
            let recovered = recover_collection_exports(dir.path()).unwrap();

            assert!(
                matches!(err, CollectionError::Crashed(ref s) if *s == format!("{step:?}")),
                "{step:?}: {err:?}"
            );
            assert_eq!(recovered.len(), 1, "{step:?}");
            let expected = if forward == Some(false) {
                Vec::new()
            } else {
                everything()
            };
            assert_eq!(names(dir.path()), expected, "{step:?}");
            match (&recovered[0], forward) {
                (CollectionRecovery::RolledForward { .. }, Some(true))
                | (CollectionRecovery::RolledBack { .. }, Some(false))
                | (CollectionRecovery::Cleaned { .. }, None) => {}
                (other, _) => panic!("{step:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn recovery_rolls_back_when_a_target_appeared_after_the_crash() {
        let dir = tempfile::tempdir().unwrap();
        let (mut staging, entries) = staged(dir.path());
        staging.crash_at = Some(CommitStep::Renamed(0));
        staging.commit(&entries).unwrap_err();
        fs::create_dir(dir.path().join("vm-b")).unwrap();
        fs::write(dir.path().join("vm-b/someone-elses"), b"keep").unwrap();

        let recovered = recover_collection_exports(dir.path()).unwrap();

        assert!(
            matches!(&recovered[0], CollectionRecovery::RolledBack { reason, .. } if reason.contains("vm-b")),
            "{recovered:?}"
        );
        assert_eq!(names(dir.path()), vec!["vm-b".to_owned()]);
        assert_eq!(
            fs::read(dir.path().join("vm-b/someone-elses")).unwrap(),
            b"keep"
        );
    }

    #[test]
    fn recovery_leaves_a_live_staging_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, _) = staged(dir.path());

        let recovered = recover_collection_exports(dir.path()).unwrap();

        assert!(recovered.is_empty());
        assert!(staging.root().is_dir());
    }

    #[test]
    fn recovery_of_a_missing_directory_is_empty() {
        let dir = tempfile::tempdir().unwrap();

        let recovered = recover_collection_exports(&dir.path().join("none")).unwrap();

        assert!(recovered.is_empty());
    }
}
