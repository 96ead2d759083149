//! `refpoint bench --collection`: the export of a collection of three VMs
//! with two disks each next to the export of one VM with six disks of the
//! same size and fill, in the same run, on the same engine configuration.
//!
//! Every disk is `--size` with `--fill-percent` of its blocks written by
//! qemu-io (each VM with its own seed); both reference points have the
//! same chain shape (the base and the fixture's epoch layer). Measured per export (engine run on
//! this thread, after validation): wall time, source bytes read and the
//! throughput in GB/s of source data; the collection export also commits
//! three VM folders and its collection manifest. Each export runs three
//! times, alternating, and the fastest run of each counts (the sources are in the
//! page cache for both; which one runs first alternates per round, and each
//! output is removed before the next export).

use std::path::Path;
use std::time::Instant;

use refpoint_engine::{EngineConfig, Unattended};
use serde_json::{Value, json};

use super::Output;
use super::args::BenchArgs;
use super::bench::cpu_facts;
use crate::collection::{self, CollectionExportOptions};
use crate::error::{RefpointError, ReturnCode};
use crate::export::{self, ExportOptions};
use crate::fixture::{self, Fill, FixtureSpec};
use crate::service::Refpoint;

fn failed(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, message)
}

/// VMs of the collection, and disks of each.
const MEMBERS: usize = 3;
const DISKS_PER_MEMBER: usize = 2;
/// Alternating runs of each export; the fastest of each counts.
const ROUNDS: usize = 3;

/// One timed export: seconds and source bytes read.
#[derive(Debug, Clone, Copy)]
struct Timed {
    seconds: f64,
    bytes_read: u64,
}

impl Timed {
    fn gbps(self) -> f64 {
        self.bytes_read as f64 / self.seconds / 1e9
    }
    fn json(self) -> Value {
        json!({"seconds": self.seconds, "bytes_read": self.bytes_read, "read_gb_per_s": self.gbps()})
    }
}

fn single(
    rp: &Refpoint,
    point: &str,
    to: &Path,
    config: &EngineConfig,
) -> Result<Timed, RefpointError> {
    let prepared = export::validate(&rp.host(), point, to, &ExportOptions::default())?;
    let start = Instant::now();
    let plan = refpoint_engine::plan(&prepared.request)?;
    let outcome = refpoint_engine::execute(plan, &Unattended, config)?;
    Ok(Timed {
        seconds: start.elapsed().as_secs_f64(),
        bytes_read: outcome.bytes_read,
    })
}

fn group(
    rp: &Refpoint,
    point: &str,
    to: &Path,
    config: &EngineConfig,
) -> Result<Timed, RefpointError> {
    let prepared =
        collection::validate(&rp.host(), point, to, &CollectionExportOptions::default())?;
    let start = Instant::now();
    let plan = refpoint_engine::plan_collection(&prepared.request)?;
    let outcome = refpoint_engine::execute_collection(plan, &Unattended, config)?;
    Ok(Timed {
        seconds: start.elapsed().as_secs_f64(),
        bytes_read: outcome.bytes_read,
    })
}

/// Runs the collection benchmark.
pub(super) fn run(out: &Output, args: &BenchArgs) -> Result<(), RefpointError> {
    let (_temp, root) = super::bench::work_dir(args.dir.as_ref(), "refpoint-bench-collection-")?;
    let size = fixture::parse_size(&args.size)?;
    let rp = Refpoint::init(&root.join("host"))?;
    let spec = |name: String, disks: usize, seed: u64| FixtureSpec {
        directory: root.join("disks").join(&name),
        name,
        disks,
        size,
        seed,
        block_size: 2 << 20,
        fill: Fill::Blocks {
            percent: args.fill_percent,
        },
        writes_after: 0,
    };
    if !out.quiet {
        eprintln!(
            "making {MEMBERS} VMs × {DISKS_PER_MEMBER} disks and one VM × {} disks of {} with {}% of blocks written …",
            MEMBERS * DISKS_PER_MEMBER,
            args.size,
            args.fill_percent
        );
    }
    let solo = fixture::make_fixture(
        &mut rp.host(),
        &spec("solo".into(), MEMBERS * DISKS_PER_MEMBER, 100),
    )?;
    let point = {
        let mut host = rp.host();
        for i in 0..MEMBERS {
            let made = fixture::make_fixture(
                &mut host,
                &spec(format!("member{i}"), DISKS_PER_MEMBER, 200 + i as u64),
            )?;
            if i == 0 {
                host.define_collection("bench", None, 0)?;
            }
            host.add_member("bench", &made.vm_name)?;
        }
        host.create_collection_reference_point(
            "bench",
            &refpoint_core::CollectionPointSettings::default(),
        )?
        .cim_id()
    };
    // Same chain shape as the members' (the fixture's epoch layer on top).
    let solo_point = rp
        .host()
        .create_reference_point(&solo.vm_name)?
        .instance_id
        .clone();
    let config = rp.engine_config().clone();
    let mut best_single: Option<Timed> = None;
    let mut best_group: Option<Timed> = None;
    for round in 0..ROUNDS {
        // Alternate which export goes first; each output is synced to
        // storage by the export and removed before the next one runs.
        for first in [round % 2 == 0, round % 2 != 0] {
            let to = root.join(format!("round-{round}"));
            if first {
                let s = single(&rp, &solo_point, &to, &config)?;
                best_single =
                    Some(best_single.map_or(s, |b| if s.seconds < b.seconds { s } else { b }));
            } else {
                let g = group(&rp, &point, &to, &config)?;
                best_group =
                    Some(best_group.map_or(g, |b| if g.seconds < b.seconds { g } else { b }));
            }
            std::fs::remove_dir_all(&to)
                .map_err(|e| failed(format!("remove a bench export: {e}")))?;
        }
    }
    let (Some(s), Some(g)) = (best_single, best_group) else {
        return Err(failed("no bench round ran".to_owned()));
    };
    if s.bytes_read != g.bytes_read {
        return Err(failed(format!(
            "the single VM read {} bytes, the collection {}: not the same amount of data",
            s.bytes_read, g.bytes_read
        )));
    }
    let (cpu, sha_ni) = cpu_facts();
    let value = json!({
        "cpu": cpu, "sha_ni": sha_ni, "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "threads": config.threads, "buffer_pool_bytes": config.buffer_pool_bytes,
        "disk_size_bytes": size, "fill_percent": args.fill_percent,
        "single_vm": {"vms": 1, "disks": MEMBERS * DISKS_PER_MEMBER, "export": s.json()},
        "collection": {"vms": MEMBERS, "disks_per_vm": DISKS_PER_MEMBER, "export": g.json()},
        "collection_over_single_throughput": g.gbps() / s.gbps(),
    });
    out.print(&value, || {
        println!(
            "cpu           {cpu} (SHA-NI {})",
            if sha_ni { "yes" } else { "no" }
        );
        println!(
            "data          {} B read per export ({} disks × {size} B, {}% written)",
            s.bytes_read,
            MEMBERS * DISKS_PER_MEMBER,
            args.fill_percent
        );
        println!(
            "single VM     1 × {} disks   {:.2} s  {:.2} GB/s",
            MEMBERS * DISKS_PER_MEMBER,
            s.seconds,
            s.gbps()
        );
        println!(
            "collection    {MEMBERS} × {DISKS_PER_MEMBER} disks   {:.2} s  {:.2} GB/s",
            g.seconds,
            g.gbps()
        );
        println!("ratio         {:.2}", g.gbps() / s.gbps());
    });
    Ok(())
}
