//! Path values of a VHDX parent locator written by refpoint (MS-VHDX
//! §2.6.2.6.3): `relative_path` from the child's directory and
//! `absolute_win32_path`, both with `\` separators as Windows writes them.
//!
//! On Linux the absolute path is the canonical POSIX path with `/` turned
//! into `\` (e.g. `\srv\vms\base.vhdx`); refpoint's reader maps it back.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The absolute, normalised form of `path`: canonical (symlinks resolved)
/// when it exists, otherwise made absolute against the current directory
/// and cleaned of `.` and `..` lexically.
///
/// # Errors
/// The current directory cannot be read.
pub(crate) fn absolute(path: &Path) -> io::Result<PathBuf> {
    if let Ok(canonical) = path.canonicalize() {
        return Ok(canonical);
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// Normal components of an absolute, normalised path as UTF-8, or `None`
/// if one is not UTF-8 (a locator stores UTF-16).
fn names(path: &Path) -> Option<Vec<&str>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_str()),
            _ => None,
        })
        .collect()
}

/// `relative_path` of `parent` seen from the directory `child_dir` (both
/// absolute and normalised): `.\name` in the same directory, otherwise
/// `..\` steps then the parent's remaining components, `\`-separated.
/// `None` if a component is not UTF-8.
pub(crate) fn relative_win32_path(child_dir: &Path, parent: &Path) -> Option<String> {
    let from = names(child_dir)?;
    let to = names(parent)?;
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let ups = from.len().saturating_sub(common);
    let mut parts: Vec<&str> = if ups == 0 { vec!["."] } else { vec![".."; ups] };
    parts.extend(to.iter().skip(common));
    Some(parts.join("\\"))
}

/// `absolute_win32_path` of `parent` (absolute and normalised): its
/// components joined with `\` after a leading `\`. `None` if a component is
/// not UTF-8.
pub(crate) fn absolute_win32_path(parent: &Path) -> Option<String> {
    let parts = names(parent)?;
    Some(format!("\\{}", parts.join("\\")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_in_the_same_directory_gets_dot_backslash_prefix() {
        let rel = relative_win32_path(Path::new("/srv/vm"), Path::new("/srv/vm/base.vhdx"));

        assert_eq!(rel.as_deref(), Some(".\\base.vhdx"));
    }

    #[test]
    fn parent_in_a_sibling_directory_climbs_with_dot_dot() {
        let rel = relative_win32_path(
            Path::new("/exp/b/VM/Disks"),
            Path::new("/exp/a/VM/Disks/d.vhdx"),
        );

        assert_eq!(rel.as_deref(), Some("..\\..\\..\\a\\VM\\Disks\\d.vhdx"));
    }

    #[test]
    fn parent_below_the_child_directory_is_a_plain_descent() {
        let rel = relative_win32_path(Path::new("/a"), Path::new("/a/b/p.vhdx"));

        assert_eq!(rel.as_deref(), Some(".\\b\\p.vhdx"));
    }

    #[test]
    fn absolute_win32_path_uses_backslashes() {
        let abs = absolute_win32_path(Path::new("/srv/vms/base disk.vhdx"));

        assert_eq!(abs.as_deref(), Some("\\srv\\vms\\base disk.vhdx"));
    }

    #[test]
    fn absolute_cleans_dot_dot_of_a_missing_path() {
        let abs = absolute(Path::new("/nonexistent-refpoint/x/../y.vhdx")).unwrap();

        assert_eq!(abs, PathBuf::from("/nonexistent-refpoint/y.vhdx"));
    }
}
