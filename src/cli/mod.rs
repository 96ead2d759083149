//! The `refpoint` command line: parses arguments, runs one command in-process
//! against a host, prints human output or `--json` (CIM property names).

mod args;
mod bench;
mod bench_collection;
mod bench_differential;
mod bench_plot;
mod bench_suite;
mod collection;
mod demo;
mod jobs;
mod lifecycle;
mod restore;
mod serve;
mod wmi;
mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use args::Cli;
use args::{Command, DiskCommand, ExportArgs, FixtureArgs, HostCommand, RpCommand, VmCommand};
pub use bench::peak_rss_bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::error::{RefpointError, ReturnCode};
use crate::export::ExportOptions;
use crate::fixture::{self, Fill, FixtureSpec};
use crate::service::Refpoint;

/// Runs a parsed command line and returns the process exit code: 0 on
/// success, 1 when the command failed (the CIM return code and message are
/// printed), 3 when `verify` found a mismatch.
pub fn run(cli: Cli) -> i32 {
    let out = Output {
        json: cli.json,
        quiet: cli.quiet || cli.json,
    };
    match dispatch(&cli, &out) {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            1
        }
    }
}

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    pub(crate) fn print(&self, value: &Value, human: impl FnOnce()) {
        if self.json {
            // A closed pipe (`| head`) is not worth a panic.
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        } else {
            human();
        }
    }

    fn error(&self, e: &RefpointError) {
        if self.json {
            println!(
                "{}",
                json!({"ReturnValue": e.return_value(), "ErrorDescription": e.message()})
            );
        }
        eprintln!(
            "refpoint: error {} ({}): {}",
            e.return_value(),
            e.code().description(),
            e.message()
        );
    }

    pub(crate) fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }
}

fn host_dir(cli: &Cli) -> Result<PathBuf, RefpointError> {
    cli.host.clone().ok_or_else(|| {
        RefpointError::new(
            ReturnCode::SystemNotAvailable,
            "no host directory: pass --host DIR or set REFPOINT_HOST (create one with `refpoint host init DIR`)",
        )
    })
}

/// The engine settings of `--threads` and `--memory`.
fn engine_config(cli: &Cli) -> Result<refpoint_engine::EngineConfig, RefpointError> {
    Ok(refpoint_engine::EngineConfig {
        threads: cli.threads,
        buffer_pool_bytes: crate::fixture::parse_size(&cli.memory)?,
    })
}

fn open(cli: &Cli) -> Result<Refpoint, RefpointError> {
    let mut rp = Refpoint::open(&host_dir(cli)?)?;
    *rp.engine_config_mut() = engine_config(cli)?;
    Ok(rp)
}

/// The in-process CIM provider over the host (`wmi`, `jobs`).
fn provider(cli: &Cli) -> Result<crate::wmi::Provider, RefpointError> {
    Ok(crate::wmi::Provider::new(std::sync::Arc::new(open(cli)?)))
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn dispatch(cli: &Cli, out: &Output) -> Result<i32, RefpointError> {
    if let Some(code) = serve::route(cli, out)? {
        return Ok(code);
    }
    match &cli.command {
        Command::Host(HostCommand::Init { dir }) => {
            let rp = Refpoint::init(dir)?;
            out.print(&json!({"ReturnValue": 0, "Host": rp.root()}), || {
                println!("initialised host {}", rp.root().display());
            });
        }
        Command::Vm(cmd) => vm(cli, out, cmd)?,
        Command::Snapshot { vm } => {
            let rp = open(cli)?;
            let snap = rp
                .host()
                .create_snapshot(vm, refpoint_core::SNAPSHOT_TYPE_RECOVERY)?
                .clone();
            out.print(
                &json!({"ReturnValue": 0, "ResultingSnapshot": to_json(&snap)}),
                || {
                    println!("snapshot {} of {vm}", snap.instance_id());
                },
            );
        }
        Command::SnapshotDestroy { id } => lifecycle::destroy_snapshot(cli, out, id)?,
        Command::Changes(args) => lifecycle::changes(cli, out, args)?,
        Command::Rp(RpCommand::Create {
            collection: Some(c),
            ..
        }) => return collection::rp_create(&provider(cli)?, out, c),
        Command::Rp(cmd) => reference_points(cli, out, cmd)?,
        Command::Export(args) if args.collection.collection_reference_point.is_some() => {
            return collection::export(&provider(cli)?, out, args);
        }
        Command::Export(args) => return export(cli, out, args),
        Command::Collection(cmd) => return collection::run(&provider(cli)?, out, cmd),
        Command::Verify { dir: Some(dir), .. } => return verify(out, dir),
        Command::Verify { chain, .. } => return restore::verify_chain(out, chain),
        Command::Restore(args) => return restore::run(cli, out, args),
        Command::Workload(args) => workload::run(cli, out, args)?,
        Command::Disk(cmd) => disk(out, cmd)?,
        Command::Fixture(args) => make_fixture(cli, out, args)?,
        Command::Demo { keep, size } => return demo::run(out, keep.as_deref(), size),
        Command::Bench(args) => bench::run(out, args)?,
        Command::Serve(args) => return serve::run(cli, out, args),
        Command::Wmi(cmd) => return wmi::run(&provider(cli)?, out.json, true, cmd),
        Command::Jobs(cmd) => return jobs::run(&provider(cli)?, out.json, cmd),
    }
    Ok(0)
}

fn vm(cli: &Cli, out: &Output, cmd: &VmCommand) -> Result<(), RefpointError> {
    let rp = open(cli)?;
    let mut host = rp.host();
    match cmd {
        VmCommand::Create { name, disks } => {
            let vm = host.create_vm(name, disks)?.clone();
            out.print(&to_json(&vm), || {
                println!("created VM {} ({})", vm.element_name, vm.name)
            });
        }
        VmCommand::Import { name, dir } => {
            let vm = host.import_vm(name, dir)?.clone();
            out.print(&to_json(&vm), || {
                println!(
                    "imported VM {} ({}) with {} disk(s)",
                    vm.element_name,
                    vm.name,
                    vm.disks.len()
                );
            });
        }
        VmCommand::List => {
            let vms: Vec<_> = host.vms().to_vec();
            out.print(&to_json(&vms), || {
                for vm in &vms {
                    println!(
                        "{}  {}  {} disk(s)",
                        vm.name.to_string().to_uppercase(),
                        vm.element_name,
                        vm.disks.len()
                    );
                }
            });
        }
        VmCommand::Show { vm } => {
            let vm = host.vm(vm)?.clone();
            let rps: Vec<_> = host
                .reference_points(Some(&vm.name.to_string()))?
                .into_iter()
                .cloned()
                .collect();
            let snaps: Vec<_> = host
                .snapshots(&vm.name.to_string())?
                .into_iter()
                .cloned()
                .collect();
            let value = json!({"VirtualSystem": to_json(&vm), "Snapshots": to_json(&snaps), "ReferencePoints": to_json(&rps)});
            out.print(&value, || {
                println!(
                    "{} ({})",
                    vm.element_name,
                    vm.name.to_string().to_uppercase()
                );
                for d in &vm.disks {
                    println!("  disk {}", d.instance_id);
                    for p in d.chain.layers() {
                        println!("    {}", p.path.display());
                    }
                }
                for s in &snaps {
                    println!("  snapshot {}", s.instance_id());
                }
                for r in &rps {
                    println!("  reference point {}", r.instance_id);
                }
            });
        }
    }
    Ok(())
}

fn reference_points(cli: &Cli, out: &Output, cmd: &RpCommand) -> Result<(), RefpointError> {
    let rp = open(cli)?;
    let mut host = rp.host();
    match cmd {
        RpCommand::Convert { snapshot } => {
            let r = host.convert_to_reference_point(snapshot)?.clone();
            out.print(
                &json!({"ReturnValue": 0, "ResultingReferencePoint": to_json(&r)}),
                || {
                    println!("reference point {}", r.instance_id);
                },
            );
        }
        RpCommand::Create { vm, .. } => {
            let r = host.create_reference_point(vm)?.clone();
            out.print(
                &json!({"ReturnValue": 0, "ResultingReferencePoint": to_json(&r)}),
                || {
                    println!("reference point {}", r.instance_id);
                },
            );
        }
        RpCommand::List { vm } => {
            let rps: Vec<_> = host
                .reference_points(vm.as_deref())?
                .into_iter()
                .cloned()
                .collect();
            out.print(&to_json(&rps), || {
                for r in &rps {
                    println!("{}  {}", r.instance_id, r.creation_time.to_cim());
                }
            });
        }
        RpCommand::Destroy { id } => lifecycle::destroy_reference_point(out, &mut host, id)?,
        RpCommand::RemoveData { id } => lifecycle::remove_associated_data(out, &mut host, id)?,
    }
    Ok(())
}

/// Runs an export to the end with a progress bar; exit 0 only on Completed.
fn export(cli: &Cli, out: &Output, args: &ExportArgs) -> Result<i32, RefpointError> {
    let rp = open(cli)?;
    let options = ExportOptions {
        base: args.base.clone(),
        disks: args.disks.clone(),
        base_export: args.base_export.clone(),
        tracking: match args.tracking {
            args::TrackingArg::Strict => refpoint_engine::TrackingPolicy::Strict,
            args::TrackingArg::Fallback => refpoint_engine::TrackingPolicy::Fallback,
        },
    };
    let id = rp.export(&args.reference_point, &args.to, &options)?;
    let job = wait_with_progress(&rp, out, &id, "export")?;
    let completed = job.job_state.is_success();
    let value = json!({
        "ReturnValue": ReturnCode::JobStarted.value(),
        "Job": to_json(&job),
    });
    out.print(&value, || {
        println!("ReturnValue 4096, job {}", job.instance_id);
        println!("JobState {} ({:?})", job.job_state.value(), job.job_state);
        if completed {
            for w in &job.errors {
                println!("warning: {}", w.message);
            }
            for p in &job.exported_log_file_paths {
                println!("  {p}");
            }
            println!(
                "  {}",
                job.exported_config_file_path.as_deref().unwrap_or("")
            );
        } else {
            println!(
                "ErrorCode {}: {}",
                job.error_code,
                job.error_description.as_deref().unwrap_or("")
            );
        }
    });
    if !completed && !out.json {
        eprintln!(
            "refpoint: export job {} ended in JobState {} with ErrorCode {}: {}",
            job.instance_id,
            job.job_state.value(),
            job.error_code,
            job.error_description.as_deref().unwrap_or("")
        );
    }
    Ok(if completed { 0 } else { 1 })
}

pub(crate) fn wait_with_progress(
    rp: &Refpoint,
    out: &Output,
    id: &str,
    what: &str,
) -> Result<refpoint_jobs::Job, RefpointError> {
    let bar = out.bar(100, what);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    loop {
        let job = rp
            .jobs()
            .wait_until(
                id,
                Duration::from_millis(200),
                refpoint_jobs::JobState::is_finished,
            )
            .map_err(|e| {
                RefpointError::new(ReturnCode::InvalidParameter, format!("job {id}: {e}"))
            })?;
        bar.set_position(u64::from(job.percent_complete));
        if job.job_state.is_finished() {
            bar.finish_and_clear();
            return Ok(job);
        }
    }
}

fn verify(out: &Output, dir: &Path) -> Result<i32, RefpointError> {
    let report = if refpoint_engine::is_collection_export(dir) {
        refpoint_engine::verify_collection(dir)?
    } else {
        refpoint_engine::verify(dir)?
    };
    let ok = report.is_ok();
    out.print(&to_json(&report), || print!("{report}"));
    if !ok && !out.json {
        eprintln!("refpoint: verify found mismatches in {}", dir.display());
    }
    Ok(if ok { 0 } else { 3 })
}

fn disk(out: &Output, cmd: &DiskCommand) -> Result<(), RefpointError> {
    match cmd {
        DiskCommand::Info { path } => {
            let chain = refpoint_vhdx::Chain::open(path)?;
            let infos = chain
                .layers()
                .iter()
                .map(crate::disk::file_info)
                .collect::<Result<Vec<_>, _>>()?;
            out.print(&json!({"Chain": to_json(&infos)}), || {
                for (i, info) in infos.iter().enumerate() {
                    println!("layer {i}: {}", info.Path);
                    println!("  creator {}", info.Creator);
                    println!(
                        "  virtual size {} B, block {} B, sectors {}/{} B, chunk ratio {}",
                        info.VirtualDiskSize,
                        info.BlockSize,
                        info.LogicalSectorSize,
                        info.PhysicalSectorSize,
                        info.ChunkRatio
                    );
                    println!(
                        "  VirtualDiskId {}  DataWriteGuid {}",
                        info.VirtualDiskId, info.DataWriteGuid
                    );
                    if info.LogReplayed {
                        println!("  dirty log replayed in memory");
                    }
                    for (k, v) in &info.ParentLocator {
                        println!("  {k} = {v}");
                    }
                    println!("  blocks {:?}", info.BlockStates);
                }
            });
        }
        DiskCommand::Hash { path } => {
            let size = refpoint_vhdx::Chain::open(path)?.virtual_size();
            let bar = out.bar(size, "hash");
            let digest = crate::disk::hash_virtual_disk(path, |done| bar.set_position(done))?;
            bar.finish_and_clear();
            let hex = hex::encode(digest);
            out.print(&json!({"sha256": hex, "Path": path}), || {
                println!("{hex}  {}", path.display())
            });
        }
        DiskCommand::Write(args) => workload::disk_write(out, args)?,
        DiskCommand::Check { path } => {
            let chain = refpoint_vhdx::Chain::open(path)?;
            for layer in chain.layers() {
                layer.present_blocks()?;
            }
            let layers: Vec<_> = chain
                .layers()
                .iter()
                .map(|l| l.path().display().to_string())
                .collect();
            out.print(&json!({"ReturnValue": 0, "Chain": layers}), || {
                println!("ok: {} layer(s) valid", layers.len());
            });
        }
    }
    Ok(())
}

fn make_fixture(cli: &Cli, out: &Output, args: &FixtureArgs) -> Result<(), RefpointError> {
    let rp = open(cli)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| rp.root().join("vms").join(format!("{}-disks", args.name)));
    let spec = FixtureSpec {
        name: args.name.clone(),
        disks: args.disks,
        size: fixture::parse_size(&args.size)?,
        seed: args.seed,
        block_size: u32::try_from(fixture::parse_size(&args.block_size)?).map_err(|_| {
            RefpointError::new(ReturnCode::InvalidParameter, "block size too large")
        })?,
        fill: match args.fill_percent {
            Some(percent) => Fill::Blocks { percent },
            None => Fill::Scattered {
                writes: args.writes,
            },
        },
        writes_after: args.writes_after,
        directory: dir,
    };
    let outcome = fixture::make_fixture(&mut rp.host(), &spec)?;
    out.print(&to_json(&outcome), || {
        println!("VM {} ({})", outcome.element_name, outcome.vm_name);
        println!("reference point {}", outcome.reference_point);
    });
    Ok(())
}
