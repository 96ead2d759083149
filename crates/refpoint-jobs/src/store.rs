//! [`JobStore`]: the job history on disk, one JSON file per job,
//! `<dir>/<InstanceID>.json`, replaced atomically (temporary file, fsync,
//! rename, directory fsync) on every state change, so that a crash at any
//! moment leaves either the previous or the new record.
//!
//! File format (`Format` = [`JOB_RECORD_FORMAT`]):
//!
//! ```json
//! { "Format": "refpoint-job/1",
//!   "Job": { "InstanceID": "…", "JobState": 7, … every Msvm_ConcreteJob property … },
//!   "AffectedElements": [ { "AffectedElement": "Msvm_VirtualSystemReferencePoint.InstanceID=\"…\",…",
//!                           "ElementEffects": [5] } ] }
//! ```
//!
//! A job still unfinished in its file when the store is loaded was running
//! in a process that ended: [`crate::JobManager::restore`] records it as
//! Exception (see [`INTERRUPTED_REASON`]).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use refpoint_cim::ObjectPath;

use crate::job::Job;

/// `Format` of a job record file.
pub const JOB_RECORD_FORMAT: &str = "refpoint-job/1";

/// `ErrorSummaryDescription` of a job found unfinished when the history is
/// loaded: its work ran in a process that is gone. `ErrorCode` is 32768
/// (Failed): the outcome is known — the job did not complete.
pub const INTERRUPTED_REASON: &str = "interrupted: the host process ended";

/// Why the store could not read or write a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was done ("write job record", "read job directory", …).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record file is not a valid job record.
    #[error("job record {path} is invalid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (JSON error with line and column, or format).
        reason: String,
    },
}

/// One persisted `Msvm_AffectedJobElement`: the element's path and its
/// `ElementEffects[]` (the job end is the record's own job).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAffected {
    /// `AffectedElement`.
    #[serde(rename = "AffectedElement")]
    pub element: ObjectPath,
    /// `ElementEffects[]`.
    #[serde(rename = "ElementEffects")]
    pub effects: Vec<u16>,
}

/// The content of one record file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    /// [`JOB_RECORD_FORMAT`].
    #[serde(rename = "Format")]
    pub format: String,
    /// The job, with every CIM property.
    #[serde(rename = "Job")]
    pub job: Job,
    /// Its `Msvm_AffectedJobElement` associations.
    #[serde(rename = "AffectedElements", default)]
    pub affected: Vec<StoredAffected>,
}

/// A directory of job record files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStore {
    dir: PathBuf,
}

impl JobStore {
    /// A store in `dir` (created on the first write if missing).
    pub fn new(dir: &Path) -> JobStore {
        JobStore {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record file of job `id`. InstanceIDs are GUIDs made by the
    /// manager; anything else (a path separator, `..`) is refused.
    fn file(&self, id: &str) -> Option<PathBuf> {
        let safe = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        safe.then(|| self.dir.join(format!("{id}.json")))
    }

    /// Writes the record of `job` atomically.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the file; [`StoreError::Invalid`] for an
    /// InstanceID that cannot be a file name.
    pub fn save(&self, job: &Job, affected: &[StoredAffected]) -> Result<(), StoreError> {
        let path = self
            .file(&job.instance_id)
            .ok_or_else(|| StoreError::Invalid {
                path: self.dir.join(&job.instance_id),
                reason: "InstanceID is not a GUID-like name".to_owned(),
            })?;
        let record = JobRecord {
            format: JOB_RECORD_FORMAT.to_owned(),
            job: job.clone(),
            affected: affected.to_vec(),
        };
        let text = serde_json::to_vec_pretty(&record).map_err(|e| StoreError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fs::create_dir_all(&self.dir).map_err(io("create job directory", &self.dir))?;
        // A temp name unique to this save: two threads saving the same job
        // at once must not write into (or rename away) each other's file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            ".{}.{}.{seq}.tmp",
            job.instance_id.to_ascii_lowercase(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io("write job record", &tmp)(e));
        }
        fs::rename(&tmp, &path).map_err(io("replace job record", &path))?;
        sync_dir(&self.dir)
    }

    /// Removes the record of job `id` (absent is fine).
    ///
    /// # Errors
    /// [`StoreError::Io`].
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let Some(path) = self.file(id) else {
            return Ok(());
        };
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove job record", &path)(e)),
        }
    }

    /// Reads every record, oldest `TimeSubmitted` first. Files that are not
    /// valid records are returned as errors next to the good ones, so one
    /// damaged file does not hide the rest of the history. A missing
    /// directory is an empty history.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the directory cannot be listed.
    #[allow(clippy::type_complexity)] // (records, per-file errors) is the clearest shape here
    pub fn load(&self) -> Result<(Vec<JobRecord>, Vec<StoreError>), StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(e) => return Err(io("read job directory", &self.dir)(e)),
        };
        let mut records = Vec::new();
        let mut errors = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("read job directory", &self.dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write that never reached its rename: the previous record stands.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match read_record(&path) {
                Ok(r) => records.push(r),
                Err(e) => errors.push(e),
            }
        }
        records.sort_by(|a, b| {
            let key = |r: &JobRecord| r.job.time_submitted.to_offset_date_time();
            key(a).cmp(&key(b))
        });
        Ok((records, errors))
    }
}

fn read_record(path: &Path) -> Result<JobRecord, StoreError> {
    let text = fs::read(path).map_err(io("read job record", path))?;
    let record: JobRecord = serde_json::from_slice(&text).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if record.format != JOB_RECORD_FORMAT {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            reason: format!("Format {:?} is not {JOB_RECORD_FORMAT:?}", record.format),
        });
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if stem.as_deref() != Some(record.job.instance_id.as_str()) {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "InstanceID {:?} does not match the file name",
                record.job.instance_id
            ),
        });
    }
    Ok(record)
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync job directory", dir))
}
