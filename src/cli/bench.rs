//! `refpoint bench`: the full suite against the machine's limit and the
//! peers ([`super::bench_suite`]), or with `--differential` / `--collection`
//! the focused comparisons; and the machine facts every bench reports.

use std::path::PathBuf;

use super::Output;
use super::args::BenchArgs;
use crate::error::{RefpointError, ReturnCode};

/// The bench's work directory: `--dir`, or a temporary directory named
/// `<prefix>…` that is removed when the returned guard drops.
///
/// # Errors
/// 32768 when the temporary directory cannot be made.
pub(super) fn work_dir(
    dir: Option<&PathBuf>,
    prefix: &str,
) -> Result<(Option<tempfile::TempDir>, PathBuf), RefpointError> {
    if let Some(d) = dir {
        return Ok((None, d.clone()));
    }
    let temp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| RefpointError::new(ReturnCode::Failed, format!("temporary directory: {e}")))?;
    let path = temp.path().to_path_buf();
    Ok((Some(temp), path))
}

/// CPU model name and SHA-NI flag from /proc/cpuinfo.
pub fn cpu_facts() -> (String, bool) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or_else(|| "unknown".to_string(), |s| s.trim().to_string());
    let sha_ni = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
    (model, sha_ni)
}

/// Peak resident set size of this process in bytes (VmHWM).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub(super) fn run(out: &Output, args: &BenchArgs) -> Result<(), RefpointError> {
    if args.differential {
        return super::bench_differential::run(out, args);
    }
    if args.collection {
        return super::bench_collection::run(out, args);
    }
    super::bench_suite::run(out, args)
}
