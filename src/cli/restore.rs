//! `refpoint restore EXPORT_VM_FOLDER… --to DIR` (synthetic full) and
//! `refpoint verify --chain BASE_VM_FOLDER DIFF_VM_FOLDER…`: the commands
//! that read a chain of exports. Neither needs a host: they read only the
//! export folders.

use std::path::PathBuf;

use clap::Args;
use indicatif::ProgressBar;
use refpoint_engine::{EngineConfig, ExportControl, Interrupted};
use serde_json::json;

use super::{Output, to_json};
use crate::error::{RefpointError, ReturnCode};

/// `refpoint restore …`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// VM folders of the exports, base first: a full export (or synthetic
    /// full), then each differential export built on the one before it.
    #[arg(required = true, value_name = "EXPORT_VM_FOLDER")]
    pub folders: Vec<PathBuf>,
    /// Directory to restore into; `<DIR>/<VM ElementName>/` is created
    /// atomically, laid out like a full export.
    #[arg(long = "to")]
    pub to: PathBuf,
}

/// Progress of a restore on a bar (bytes read through the chains).
#[derive(Debug)]
struct BarControl(ProgressBar);

impl ExportControl for BarControl {
    fn set_total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn add_progress(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn checkpoint(&self) -> Result<(), Interrupted> {
        Ok(())
    }
}

/// Runs `restore`: exit 0 when the synthetic full is committed.
pub(super) fn run(
    _cli: &super::Cli,
    out: &Output,
    args: &RestoreArgs,
) -> Result<i32, RefpointError> {
    let to = std::path::absolute(&args.to).map_err(|e| {
        RefpointError::new(
            ReturnCode::InvalidParameter,
            format!("--to '{}' is not a usable path: {e}", args.to.display()),
        )
    })?;
    let bar = out.bar(0, "restore");
    let config = EngineConfig {
        threads: 0,
        buffer_pool_bytes: 64 << 20,
    };
    let outcome = refpoint_engine::restore(&args.folders, &to, &BarControl(bar.clone()), &config);
    bar.finish_and_clear();
    let outcome = outcome?;
    let disks: Vec<_> = outcome
        .disks
        .iter()
        .map(|d| {
            json!({
                "InstanceID": d.instance_id,
                "Path": d.path,
                "Size": d.size,
                "Sha256": d.sha256,
                "DataWriteGuid": d.data_write_guid.to_string().to_uppercase(),
                "ContentDigest": d.content_digest,
            })
        })
        .collect();
    let value = json!({
        "ReturnValue": 0,
        "VmFolder": outcome.vm_folder,
        "Manifest": outcome.manifest_file,
        "ConfigFile": outcome.config_file,
        "Disks": disks,
        "BytesRead": outcome.bytes_read,
    });
    out.print(&value, || {
        println!("restored {}", outcome.vm_folder.display());
        for d in &outcome.disks {
            println!(
                "  {}  {}  content {}",
                d.instance_id,
                d.path.display(),
                d.content_digest
            );
        }
    });
    Ok(0)
}

/// `verify --chain`: exit 0 when every folder, link and chain content
/// verifies, 3 on any finding.
pub(super) fn verify_chain(out: &Output, folders: &[PathBuf]) -> Result<i32, RefpointError> {
    let report = refpoint_engine::verify_chain(folders)?;
    let ok = report.is_ok();
    out.print(&to_json(&report), || print!("{report}"));
    if !ok && !out.json {
        eprintln!(
            "refpoint: verify --chain found mismatches in the chain starting at {}",
            folders
                .first()
                .map_or_else(String::new, |f| f.display().to_string())
        );
    }
    Ok(if ok { 0 } else { 3 })
}
