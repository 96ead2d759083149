//! `refpoint bench --differential`: a differential export against a full
//! export of the same VM in the same run.
//!
//! The VM is the benchmark VM of `refpoint bench` (`--disks` × `--size`,
//! `--fill-percent` of the blocks written by qemu-io). Its fixture reference
//! point RP1 is exported full (the base, recorded in the host). Then
//! `--changed-percent` of the blocks of every disk are rewritten whole
//! through refpoint's writer (seeded, like `refpoint workload`) and RP2 is
//! taken. Measured, each on the same engine configuration: the full export
//! of RP2 and the differential export RP1→RP2 (change tracking from the
//! host), their wall time, source bytes read, blocks stored and output size.
//! Both exports of RP2 must have the same content digests, or the bench
//! fails.

use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use refpoint_engine::{EngineConfig, ExportOutcome, Unattended};
use serde_json::{Value, json};

use super::Output;
use super::args::BenchArgs;
use crate::error::{RefpointError, ReturnCode};
use crate::export::{self, ExportOptions};
use crate::fixture::{self, Fill, FixtureSpec};
use crate::service::Refpoint;

fn failed(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, message)
}

/// One measured export.
struct Measured {
    seconds: f64,
    outcome: ExportOutcome,
}

impl Measured {
    fn json(&self) -> Value {
        let size: u64 = self.outcome.disks.iter().map(|d| d.size).sum();
        json!({
            "seconds": self.seconds,
            "bytes_read": self.outcome.bytes_read,
            "blocks_stored": self.outcome.blocks_stored,
            "output_bytes": size,
            "read_gb_per_s": self.outcome.bytes_read as f64 / self.seconds / 1e9,
        })
    }
}

/// Validates like `ExportReferencePoint` and runs the engine on this thread
/// (so that the outcome's byte counts are available), timed.
fn measure(
    rp: &Refpoint,
    reference_point: &str,
    to: &Path,
    options: &ExportOptions,
    config: &EngineConfig,
) -> Result<Measured, RefpointError> {
    let prepared = export::validate(&rp.host(), reference_point, to, options)?;
    let start = Instant::now();
    let plan = refpoint_engine::plan(&prepared.request)?;
    let outcome = refpoint_engine::execute(plan, &Unattended, config)?;
    Ok(Measured {
        seconds: start.elapsed().as_secs_f64(),
        outcome,
    })
}

/// The benchmark VM with two reference points: RP1 (the fixture's,
/// exported full into `<root>/rp1-full` and recorded as the base) and RP2
/// after `--changed-percent` of every disk's blocks were rewritten.
pub(super) struct TwoPoints {
    pub(super) rp: Refpoint,
    pub(super) made: fixture::FixtureOutcome,
    pub(super) rp2: String,
    pub(super) changed_blocks: usize,
    pub(super) size: u64,
    pub(super) block_size: u32,
}

/// Builds [`TwoPoints`] in the host `<root>/host`.
///
/// # Errors
/// As the fixture, the export and the host operations it runs.
pub(super) fn two_points(
    out: &Output,
    args: &BenchArgs,
    root: &Path,
) -> Result<TwoPoints, RefpointError> {
    let size = fixture::parse_size(&args.size)?;
    let block_size: u32 = 2 << 20;
    let rp = Refpoint::init(&root.join("host"))?;
    let spec = FixtureSpec {
        name: "bench-vm".into(),
        disks: args.disks,
        size,
        seed: 42,
        block_size,
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
    let base = root.join("rp1-full");
    std::fs::create_dir_all(&base)
        .map_err(|e| failed(format!("make '{}': {e}", base.display())))?;
    let job = rp.wait(&rp.export(&made.reference_point, &base, &ExportOptions::default())?)?;
    if !job.job_state.is_success() {
        return Err(failed(format!(
            "base export ended in JobState {}: {}",
            job.job_state.value(),
            job.error_description.unwrap_or_default()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let mut changed_blocks = 0usize;
    let rp2 = {
        let mut host = rp.host();
        let vm = host.vm("bench-vm")?.clone();
        let vm_id = vm.name.to_string();
        for disk in &vm.disks {
            let writes = fixture::block_writes(&mut rng, size, block_size, args.changed_percent);
            changed_blocks += writes.len();
            let mut writer = host.open_disk_writer(&vm_id, &disk.instance_id)?;
            for w in &writes {
                writer.write_at(w.offset, &fixture::write_payload(&mut rng, w))?;
            }
            writer.flush()?;
        }
        host.refresh(&vm_id)?;
        host.create_reference_point(&vm_id)?.instance_id.clone()
    };
    Ok(TwoPoints {
        rp,
        made,
        rp2,
        changed_blocks,
        size,
        block_size,
    })
}

/// Runs the differential benchmark.
pub(super) fn run(out: &Output, args: &BenchArgs) -> Result<(), RefpointError> {
    let (_temp, root) = super::bench::work_dir(args.dir.as_ref(), "refpoint-bench-diff-")?;
    let TwoPoints {
        rp,
        made,
        rp2,
        changed_blocks,
        size,
        block_size,
    } = two_points(out, args, &root)?;

    let config = EngineConfig {
        threads: 0,
        buffer_pool_bytes: 64 << 20,
    };
    let full = measure(
        &rp,
        &rp2,
        &root.join("rp2-full"),
        &ExportOptions::default(),
        &config,
    )?;
    let differential = measure(
        &rp,
        &rp2,
        &root.join("rp2-diff"),
        &ExportOptions {
            base: Some(made.reference_point.clone()),
            ..ExportOptions::default()
        },
        &config,
    )?;
    let digests = |m: &Measured| -> Vec<String> {
        m.outcome
            .disks
            .iter()
            .map(|d| d.content_digest.clone())
            .collect()
    };
    if digests(&full) != digests(&differential) {
        return Err(failed(
            "the differential and the full export of RP2 have different content digests".into(),
        ));
    }
    let (cpu, sha_ni) = super::bench::cpu_facts();
    let total_blocks = size.div_ceil(u64::from(block_size)) * args.disks as u64;
    let value = json!({
        "cpu": cpu, "sha_ni": sha_ni,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "disks": args.disks, "disk_size_bytes": size, "block_size_bytes": block_size,
        "fill_percent": args.fill_percent, "changed_percent": args.changed_percent,
        "blocks_total": total_blocks, "blocks_changed": changed_blocks,
        "full_export": full.json(),
        "differential_export": differential.json(),
    });
    out.print(&value, || {
        println!(
            "cpu           {cpu} (SHA-NI {})",
            if sha_ni { "yes" } else { "no" }
        );
        println!(
            "VM            {} disks × {size} B, {}% of blocks with data, {changed_blocks} of {total_blocks} blocks changed since RP1",
            args.disks, args.fill_percent
        );
        for (name, m) in [("full", &full), ("differential", &differential)] {
            let size: u64 = m.outcome.disks.iter().map(|d| d.size).sum();
            println!(
                "{name:<13} {:.3} s, {} B read, {} blocks stored, {} B of VHDX",
                m.seconds, m.outcome.bytes_read, m.outcome.blocks_stored, size
            );
        }
    });
    Ok(())
}
