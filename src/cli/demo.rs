//! `refpoint demo`: the main job end to end on a bundled default.

use std::path::Path;

use serde_json::json;

use super::{Output, wait_with_progress};
use crate::error::{RefpointError, ReturnCode};
use crate::export::ExportOptions;
use crate::fixture::{self, Fill, FixtureSpec};
use crate::service::Refpoint;

fn io_err(what: &str, e: &std::io::Error) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, format!("{what}: {e}"))
}

/// Makes a fixture VM (2 disks) in a fresh host, exports its reference point,
/// verifies the export and prints where everything is. Exit 0 when the
/// export completed and verified.
pub(super) fn run(out: &Output, keep: Option<&Path>, size: &str) -> Result<i32, RefpointError> {
    let temp;
    let root = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| io_err(&dir.display().to_string(), &e))?;
            std::fs::canonicalize(dir).map_err(|e| io_err(&dir.display().to_string(), &e))?
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("refpoint-demo-")
                .tempdir()
                .map_err(|e| io_err("temporary directory", &e))?;
            temp.path().to_path_buf()
        }
    };
    let host_dir = root.join("host");
    let export_dir = root.join("export");
    let rp = Refpoint::init(&host_dir)?;
    if !out.quiet {
        eprintln!("host: {}", host_dir.display());
        eprintln!(
            "making fixture VM 'demo-vm': 2 disks of {size} (qemu-img + qemu-io), recovery snapshot, reference point, more writes …"
        );
    }
    let spec = FixtureSpec {
        name: "demo-vm".into(),
        disks: 2,
        size: fixture::parse_size(size)?,
        seed: 2026,
        block_size: 2 << 20,
        fill: Fill::Scattered { writes: 60 },
        writes_after: 20,
        directory: root.join("disks"),
    };
    let made = fixture::make_fixture(&mut rp.host(), &spec)?;
    let id = rp.export(
        &made.reference_point,
        &export_dir,
        &ExportOptions::default(),
    )?;
    let job = wait_with_progress(&rp, out, &id, "export")?;
    let vm_folder = export_dir.join(&made.element_name);
    let report = if job.job_state == refpoint_jobs::JobState::Completed {
        Some(refpoint_engine::verify(&vm_folder)?)
    } else {
        None
    };
    let ok = report
        .as_ref()
        .is_some_and(refpoint_engine::VerifyReport::is_ok);
    let value = json!({
        "Host": host_dir,
        "VirtualSystem": {"Name": made.vm_name, "ElementName": made.element_name},
        "ReferencePoint": made.reference_point,
        "ReturnValue": 4096,
        "Job": serde_json::to_value(&job).unwrap_or_default(),
        "ExportFolder": vm_folder,
        "Verified": ok,
    });
    out.print(&value, || {
        println!("VM            {} ({})", made.element_name, made.vm_name);
        println!("reference pt  {}", made.reference_point);
        println!(
            "ExportReferencePoint → ReturnValue 4096, job {}",
            job.instance_id
        );
        println!(
            "JobState      {} ({:?}), ErrorCode {}",
            job.job_state.value(),
            job.job_state,
            job.error_code
        );
        println!("export        {}", vm_folder.display());
        for p in &job.exported_log_file_paths {
            println!("  disk        {p}");
        }
        if let Some(c) = &job.exported_config_file_path {
            println!("  settings    {c}");
        }
        println!(
            "verify        {}",
            if ok { "all checksums match" } else { "FAILED" }
        );
        println!("check it yourself:");
        println!(
            "  (cd '{}' && sha256sum -c SHA256SUMS)",
            vm_folder.display()
        );
        println!(
            "  qemu-img check '{}'",
            job.exported_log_file_paths
                .first()
                .map_or("", String::as_str)
        );
        if keep.is_none() {
            println!("(temporary directory; pass --keep DIR to keep it)");
        }
    });
    Ok(if ok { 0 } else { 1 })
}
