//! Durable atomic file replacement: temp file in the same directory, write,
//! fsync, rename over the target, fsync the directory
//! (`reference/crates-style.md` §1.7: `tempfile::persist` alone syncs neither
//! the data nor the directory).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{HostError, Result};

/// Replaces `target` with `contents` so that after a crash it holds either the
/// old or the new bytes, never a mix or nothing.
///
/// # Errors
/// [`HostError::Io`] naming the file or directory and the failed step.
pub(crate) fn write_atomically(target: &Path, contents: &[u8]) -> Result<()> {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".refpoint-tmp-")
        .tempfile_in(dir)
        .map_err(|e| HostError::io(dir, "create temporary file in", e))?;
    tmp.write_all(contents)
        .map_err(|e| HostError::io(tmp.path(), "write", e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| HostError::io(tmp.path(), "fsync", e))?;
    tmp.persist(target)
        .map_err(|e| HostError::io(target, "rename temporary file onto", e.error))?;
    sync_dir(dir)
}

/// fsyncs a directory so that entries created or renamed in it are durable.
///
/// # Errors
/// [`HostError::Io`] naming the directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| HostError::io(dir, "fsync directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_existing_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("catalog.json");
        std::fs::write(&target, b"old").unwrap();

        write_atomically(&target, b"new contents").unwrap();

        assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("catalog.json")]);
    }

    #[test]
    fn missing_directory_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("absent").join("catalog.json");

        let err = write_atomically(&target, b"x").unwrap_err();

        assert!(
            matches!(err, HostError::Io { ref path, .. } if path == &dir.path().join("absent"))
        );
    }
}
