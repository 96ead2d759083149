//! `refpoint bench`: export throughput and peak memory on a synthetic VM,
//! next to `qemu-img convert -O vhdx` + `sha256sum` of the same disks in the
//! same run. Reports the CPU and whether SHA-NI is available.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use super::Output;
use super::args::BenchArgs;
use crate::error::{RefpointError, ReturnCode};
use crate::export::ExportOptions;
use crate::fixture::{self, Fill, FixtureSpec};
use crate::service::Refpoint;

fn failed(msg: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, msg)
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

fn run_all(cmds: Vec<Command>) -> Result<(), RefpointError> {
    let mut children = Vec::new();
    for mut c in cmds {
        children.push(
            c.spawn()
                .map_err(|e| failed(format!("spawn {:?}: {e}", c.get_program())))?,
        );
    }
    for mut child in children {
        let status = child.wait().map_err(|e| failed(format!("wait: {e}")))?;
        if !status.success() {
            return Err(failed(format!("baseline command failed: {status}")));
        }
    }
    Ok(())
}

/// `qemu-img convert -O vhdx` of every disk (in parallel) followed by
/// `sha256sum` of every output (in parallel); returns seconds.
fn baseline(disks: &[PathBuf], dir: &Path) -> Result<f64, RefpointError> {
    let outs: Vec<PathBuf> = (0..disks.len())
        .map(|i| dir.join(format!("baseline-{i}.vhdx")))
        .collect();
    let start = Instant::now();
    run_all(
        disks
            .iter()
            .zip(&outs)
            .map(|(src, dst)| {
                let mut c = Command::new("qemu-img");
                c.args(["convert", "-f", "vhdx", "-O", "vhdx"])
                    .arg(src)
                    .arg(dst);
                c
            })
            .collect(),
    )?;
    run_all(
        outs.iter()
            .map(|o| {
                let mut c = Command::new("sha256sum");
                c.arg(o).stdout(std::process::Stdio::null());
                c
            })
            .collect(),
    )?;
    Ok(start.elapsed().as_secs_f64())
}

pub(super) fn run(out: &Output, args: &BenchArgs) -> Result<(), RefpointError> {
    if args.differential {
        return super::bench_differential::run(out, args);
    }
    if args.collection {
        return super::bench_collection::run(out, args);
    }
    let temp;
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("refpoint-bench-")
                .tempdir()
                .map_err(|e| failed(format!("temporary directory: {e}")))?;
            temp.path().to_path_buf()
        }
    };
    let size = fixture::parse_size(&args.size)?;
    let rp = Refpoint::init(&root.join("host"))?;
    let spec = FixtureSpec {
        name: "bench-vm".into(),
        disks: args.disks,
        size,
        seed: 42,
        block_size: 2 << 20,
        fill: Fill::Blocks {
            percent: args.fill_percent,
        },
        writes_after: 0,
        directory: root.join("disks"),
    };
    if !out.quiet {
        eprintln!(
            "making {} × {} disks with {}% of blocks written …",
            args.disks, args.size, args.fill_percent
        );
    }
    let made = fixture::make_fixture(&mut rp.host(), &spec)?;
    // Drop the page cache's advantage as far as we can without root tricks:
    // both runs below read the same (cached) sources.
    let export_dir = root.join("export");
    let rss_before = peak_rss_bytes();
    let start = Instant::now();
    let id = rp.export(
        &made.reference_point,
        &export_dir,
        &ExportOptions::default(),
    )?;
    let job = rp.wait(&id)?;
    let secs = start.elapsed().as_secs_f64();
    if job.job_state != refpoint_jobs::JobState::Completed {
        return Err(failed(format!(
            "bench export ended in JobState {}: {}",
            job.job_state.value(),
            job.error_description.unwrap_or_default()
        )));
    }
    let rss = peak_rss_bytes();
    let data_bytes: u64 = made.writes_before.iter().flatten().map(|w| w.length).sum();
    let baseline_secs = if args.no_baseline {
        None
    } else {
        Some(baseline(&made.base_disks, &root)?)
    };
    let (cpu, sha_ni) = cpu_facts();
    let gbps = data_bytes as f64 / secs / 1e9;
    let value = json!({
        "cpu": cpu, "sha_ni": sha_ni, "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "disks": args.disks, "disk_size_bytes": size, "source_data_bytes": data_bytes,
        "export_seconds": secs, "export_gb_per_s": gbps,
        "peak_rss_bytes": rss, "peak_rss_before_export_bytes": rss_before,
        "baseline_qemu_img_convert_plus_sha256sum_seconds": baseline_secs,
        "baseline_gb_per_s": baseline_secs.map(|b| data_bytes as f64 / b / 1e9),
    });
    out.print(&value, || {
        println!(
            "cpu           {cpu} (SHA-NI {})",
            if sha_ni { "yes" } else { "no" }
        );
        println!(
            "VM            {} disks × {} B, {} B of data",
            args.disks, size, data_bytes
        );
        println!(
            "refpoint      {secs:.2} s  {gbps:.2} GB/s of source data, peak RSS {:.1} MiB",
            rss as f64 / 1048576.0
        );
        if let Some(b) = baseline_secs {
            println!(
                "qemu-img convert + sha256sum  {b:.2} s  {:.2} GB/s",
                data_bytes as f64 / b / 1e9
            );
        }
    });
    Ok(())
}
