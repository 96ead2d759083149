//! `refpoint serve` and client mode: the commands that go through a running
//! service for the host instead of opening it in-process.
//!
//! Routed through the service when one runs for `--host` (socket exists and
//! connects): `export` (with `--detach`), `vm list`, `rp list`, `rp create`,
//! `snapshot`, `wmi invoke` and `jobs list|show|wait|suspend|resume|terminate|kill`
//! (their command logic runs over [`ServiceClient`]'s `CimOperations`). Other commands that need the host (`vm create|import|show`,
//! `rp convert`, `fixture`) fail at once with 32777 naming the service's pid;
//! commands that do not use the host run as usual.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use refpoint_cim::ObjectPath;
use refpoint_cim::classes::ReferencePointExportSettingData;
use serde_json::{Value, json};

use super::Output;
use super::args::{Cli, Command, ExportArgs, RpCommand, VmCommand};
use crate::client::{
    ClientError, ServiceClient, find_singleton, instance_to_json, resolve_reference_point_path,
    wait_for_job,
};
use crate::error::{RefpointError, ReturnCode};
use crate::serve::{Credentials, ParamValue, ServeError, ServeOptions};

/// `refpoint serve …`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Also listen on this loopback TCP address (port 0: any free port);
    /// requires --credentials. Non-loopback addresses are refused (no TLS).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// HTTP Basic credentials USER:PASSWORD required on the TCP listener
    /// (prefer the environment variable: argv is visible to other users).
    #[arg(long, env = "REFPOINT_SERVE_CREDENTIALS", hide_env_values = true)]
    pub credentials: Option<String>,
}

/// Runs the service until SIGTERM/SIGINT; exit 0 after a clean shutdown.
pub(crate) fn run(cli: &Cli, out: &Output, args: &ServeArgs) -> Result<i32, RefpointError> {
    let host_dir = super::host_dir(cli)?;
    let credentials = args
        .credentials
        .as_deref()
        .map(Credentials::parse)
        .transpose()
        .map_err(|m| RefpointError::from(ServeError::Options(m)))?;
    let opts = ServeOptions {
        host_dir,
        listen: args.listen,
        credentials,
        engine: super::engine_config(cli)?,
    };
    let json = out.json;
    let summary = crate::serve::run(
        &opts,
        |rp| Arc::new(crate::wmi::Provider::new(rp)),
        |info| {
            use std::io::Write;
            let line = if json {
                let mut v = serde_json::to_value(info).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("ReturnValue".to_owned(), json!(0));
                }
                v.to_string()
            } else {
                let tcp = info
                    .listen
                    .map(|a| format!(", http://{a}/cimom (Basic auth)"))
                    .unwrap_or_default();
                format!(
                    "refpoint serve: pid {}, listening on {}{tcp}",
                    info.process_id,
                    info.socket.display()
                )
            };
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        },
    )
    .map_err(RefpointError::from)?;
    eprintln!(
        "refpoint serve: {} received, {} job(s) terminated, socket removed",
        summary.signal,
        summary.terminated_jobs.len()
    );
    Ok(0)
}

/// Pid of the process holding the host lock, as written in `<host>/host.lock`.
fn lock_holder(cli: &Cli) -> Option<u32> {
    let dir = cli.host.as_ref()?;
    std::fs::read_to_string(dir.join(refpoint_core::LOCK_FILE_NAME))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What a command does with the host when a service may hold it.
enum Routing {
    /// Goes through the service.
    Remote,
    /// Opens the host in-process and is not available through the service.
    LocalOnly(&'static str),
    /// Does not open the host (or is unknown here): runs as usual.
    Unaffected,
}

fn routing(command: &Command) -> Routing {
    match command {
        Command::Export(_)
        | Command::Snapshot { .. }
        | Command::Vm(VmCommand::List)
        | Command::Rp(RpCommand::List { .. } | RpCommand::Create { .. })
        | Command::Wmi(_)
        | Command::Jobs(_)
        | Command::Collection(_) => Routing::Remote,
        Command::Vm(VmCommand::Create { .. }) => Routing::LocalOnly("vm create"),
        Command::Vm(VmCommand::Import { .. }) => Routing::LocalOnly("vm import"),
        Command::Vm(VmCommand::Show { .. }) => Routing::LocalOnly("vm show"),
        Command::Rp(RpCommand::Convert { .. }) => Routing::LocalOnly("rp convert"),
        Command::Fixture(_) => Routing::LocalOnly("fixture"),
        _ => Routing::Unaffected,
    }
}

/// Runs `cli`'s command through the host's service when one runs and the
/// command is routed; `Ok(None)` to run it in-process.
///
/// # Errors
/// 32777 for a command that needs the host but does not go through the
/// service while one holds the host; the command's own errors otherwise.
pub(crate) fn route(cli: &Cli, out: &Output) -> Result<Option<i32>, RefpointError> {
    let Some(host) = cli.host.as_ref() else {
        return Ok(None);
    };
    let routing = routing(&cli.command);
    if matches!(routing, Routing::Unaffected) {
        return Ok(None);
    }
    let Some(client) = ServiceClient::connect(host)? else {
        if let Command::Export(ExportArgs { detach: true, .. }) = &cli.command {
            return Err(RefpointError::new(
                ReturnCode::SystemNotAvailable,
                format!(
                    "--detach needs a running `refpoint serve` for host {} (a job started in-process ends with this process)",
                    host.display()
                ),
            ));
        }
        return Ok(None);
    };
    let code = match (&routing, &cli.command) {
        (Routing::LocalOnly(what), _) => {
            let pid = lock_holder(cli).map_or_else(|| "unknown".to_owned(), |p| p.to_string());
            return Err(RefpointError::new(
                ReturnCode::SystemNotAvailable,
                format!(
                    "host {} is held by `refpoint serve` (pid {pid}, socket {}); `refpoint {what}` does not go through the service — stop the service (SIGTERM) first",
                    host.display(),
                    client.socket().display()
                ),
            ));
        }
        (_, Command::Export(args)) if args.collection.collection_reference_point.is_some() => {
            super::collection::export(&client, out, args)?
        }
        (_, Command::Export(args)) => export(&client, out, args)?,
        (_, Command::Snapshot { vm }) => snapshot(&client, out, vm)?,
        (_, Command::Vm(VmCommand::List)) => vm_list(&client, out)?,
        (_, Command::Rp(RpCommand::List { vm })) => rp_list(&client, out, vm.as_deref())?,
        (
            _,
            Command::Rp(RpCommand::Create {
                collection: Some(c),
                ..
            }),
        ) => super::collection::rp_create(&client, out, c)?,
        (_, Command::Rp(RpCommand::Create { vm, .. })) => rp_create(&client, out, vm)?,
        (_, Command::Collection(cmd)) => super::collection::run(&client, out, cmd)?,
        // The service runs the jobs: `wmi invoke` returns without waiting.
        (_, Command::Wmi(cmd)) => super::wmi::run(&client, out.json, false, cmd)?,
        (_, Command::Jobs(cmd)) => super::jobs::run(&client, out.json, cmd)?,
        _ => return Ok(None),
    };
    Ok(Some(code))
}

/// `Msvm_ComputerSystem` instances that are virtual machines (the hosting
/// computer system, if the provider lists it, is left out).
fn virtual_machines(
    client: &ServiceClient,
) -> Result<Vec<(ObjectPath, refpoint_cim::Instance)>, ClientError> {
    Ok(client
        .enumerate("Msvm_ComputerSystem")?
        .into_iter()
        .filter(|(_, i)| {
            i.get_string("Caption").ok().flatten().as_deref() != Some("Hosting Computer System")
        })
        .collect())
}

/// The VM named by GUID (`Name`) or `ElementName` (case-insensitive).
fn find_vm(
    client: &ServiceClient,
    vm: &str,
) -> Result<(ObjectPath, refpoint_cim::Instance), RefpointError> {
    let wanted = vm.trim_start_matches("Microsoft:");
    virtual_machines(client)?
        .into_iter()
        .find(|(_, i)| {
            ["Name", "ElementName"].iter().any(|p| {
                i.get_string(p)
                    .ok()
                    .flatten()
                    .is_some_and(|v| v.eq_ignore_ascii_case(wanted))
            })
        })
        .ok_or_else(|| {
            RefpointError::new(
                ReturnCode::InvalidParameter,
                format!("no virtual machine named {vm:?} (by GUID or ElementName)"),
            )
        })
}

fn method_failed(method: &str, out: &crate::serve::MethodOutput) -> RefpointError {
    let code = ReturnCode::try_from(out.return_value).unwrap_or(ReturnCode::Failed);
    RefpointError::new(
        code,
        format!(
            "{method} returned {}: {}",
            out.return_value,
            out.error.as_deref().unwrap_or("no description")
        ),
    )
}

fn out_reference(out: &crate::serve::MethodOutput, name: &str) -> Option<ObjectPath> {
    match out.out(name) {
        Some(ParamValue::Reference(p)) => Some(p.clone()),
        Some(ParamValue::Value(text)) => text.parse().ok(),
        _ => None,
    }
}

/// The object a method created: its out REF when it finished synchronously
/// (0), else, after waiting for the job, the job's `Msvm_AffectedJobElement`
/// associator of `result_class` (hyperv-api.md §6.4).
fn created_object(
    client: &ServiceClient,
    method: &str,
    output: &crate::serve::MethodOutput,
    out_param: &str,
    result_class: &str,
) -> Result<(u32, refpoint_cim::Instance), RefpointError> {
    match output.return_value {
        0 => {
            let path = out_reference(output, out_param).ok_or_else(|| {
                RefpointError::new(
                    ReturnCode::Failed,
                    format!("{method} returned 0 without {out_param}"),
                )
            })?;
            Ok((0, client.get(&path)?))
        }
        4096 => {
            let job_path = out_reference(output, "Job").ok_or_else(|| {
                RefpointError::new(
                    ReturnCode::Failed,
                    format!("{method} returned 4096 without Job"),
                )
            })?;
            let job = wait_for_job(client, &job_path, |_| {})?;
            finished_ok(&job, method)?;
            let created = client.associators_of(
                &job_path,
                crate::serve::message::request::AssociationFilter {
                    assoc_class: Some("Msvm_AffectedJobElement".to_owned()),
                    result_class: Some(result_class.to_owned()),
                    ..Default::default()
                },
            )?;
            let (_, inst) = created.into_iter().next().ok_or_else(|| {
                RefpointError::new(
                    ReturnCode::Failed,
                    format!("{method}: job completed but no {result_class} is associated with it"),
                )
            })?;
            Ok((4096, inst))
        }
        _ => Err(method_failed(method, output)),
    }
}

fn finished_ok(job: &refpoint_cim::Instance, what: &str) -> Result<(), RefpointError> {
    let state = crate::client::job_state(job);
    if state == 7 || state == 32768 {
        return Ok(());
    }
    let code = job
        .get_u16("ErrorCode")
        .ok()
        .flatten()
        .and_then(|c| ReturnCode::try_from(u32::from(c)).ok())
        .unwrap_or(ReturnCode::Failed);
    Err(RefpointError::new(
        code,
        format!(
            "{what} job {} ended in JobState {state}: {}",
            job.get_string("InstanceID")
                .ok()
                .flatten()
                .unwrap_or_default(),
            job.get_string("ErrorDescription")
                .ok()
                .flatten()
                .unwrap_or_default()
        ),
    ))
}

fn snapshot(client: &ServiceClient, out: &Output, vm: &str) -> Result<i32, RefpointError> {
    let (vm_path, _) = find_vm(client, vm)?;
    let service = find_singleton(client, "Msvm_VirtualSystemSnapshotService")?;
    let output = client.invoke(
        &service,
        "CreateSnapshot",
        &[
            ("AffectedSystem".to_owned(), ParamValue::Reference(vm_path)),
            (
                "SnapshotSettings".to_owned(),
                ParamValue::Value(String::new()),
            ),
            (
                "SnapshotType".to_owned(),
                ParamValue::Value(refpoint_core::SNAPSHOT_TYPE_RECOVERY.to_string()),
            ),
        ],
    )?;
    let (rv, snap) = created_object(
        client,
        "CreateSnapshot",
        &output,
        "ResultingSnapshot",
        "Msvm_VirtualSystemSettingData",
    )?;
    let id = snap
        .get_string("InstanceID")
        .ok()
        .flatten()
        .unwrap_or_default();
    out.print(
        &json!({"ReturnValue": rv, "ResultingSnapshot": instance_to_json(&snap)}),
        || println!("snapshot {id} of {vm}"),
    );
    Ok(0)
}

fn rp_create(client: &ServiceClient, out: &Output, vm: &str) -> Result<i32, RefpointError> {
    let (vm_path, _) = find_vm(client, vm)?;
    let service = find_singleton(client, "Msvm_VirtualSystemReferencePointService")?;
    let output = client.invoke(
        &service,
        "CreateReferencePoint",
        &[
            ("AffectedSystem".to_owned(), ParamValue::Reference(vm_path)),
            (
                "ReferencePointSettings".to_owned(),
                ParamValue::Value(String::new()),
            ),
            (
                "ReferencePointType".to_owned(),
                ParamValue::Value(refpoint_core::REFERENCE_POINT_TYPE_RCT.to_string()),
            ),
        ],
    )?;
    let (rv, rp) = created_object(
        client,
        "CreateReferencePoint",
        &output,
        "ResultingReferencePoint",
        "Msvm_VirtualSystemReferencePoint",
    )?;
    let id = rp
        .get_string("InstanceID")
        .ok()
        .flatten()
        .unwrap_or_default();
    out.print(
        &json!({"ReturnValue": rv, "ResultingReferencePoint": instance_to_json(&rp)}),
        || println!("reference point {id}"),
    );
    Ok(0)
}

fn vm_list(client: &ServiceClient, out: &Output) -> Result<i32, RefpointError> {
    let vms = virtual_machines(client)?;
    let values: Vec<Value> = vms.iter().map(|(_, i)| instance_to_json(i)).collect();
    out.print(&Value::Array(values), || {
        for (_, i) in &vms {
            println!(
                "{}  {}",
                i.get_string("Name")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                    .to_uppercase(),
                i.get_string("ElementName")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            );
        }
    });
    Ok(0)
}

fn rp_list(client: &ServiceClient, out: &Output, vm: Option<&str>) -> Result<i32, RefpointError> {
    let vm_guid = match vm {
        Some(v) => {
            let (_, inst) = find_vm(client, v)?;
            Some(inst.get_string("Name").ok().flatten().unwrap_or_default())
        }
        None => None,
    };
    let rps: Vec<_> = client
        .enumerate("Msvm_VirtualSystemReferencePoint")?
        .into_iter()
        .filter(|(_, i)| {
            vm_guid.as_deref().is_none_or(|g| {
                i.get_string("VirtualSystemIdentifier")
                    .ok()
                    .flatten()
                    .is_some_and(|v| v.eq_ignore_ascii_case(g))
            })
        })
        .collect();
    let values: Vec<Value> = rps.iter().map(|(_, i)| instance_to_json(i)).collect();
    out.print(&Value::Array(values), || {
        for (_, i) in &rps {
            let created = i
                .property("CreationTime")
                .and_then(|p| match &p.value {
                    refpoint_cim::PropertyValue::Scalar(v) => Some(v.to_text()),
                    _ => None,
                })
                .unwrap_or_default();
            println!(
                "{}  {created}",
                i.get_string("InstanceID")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            );
        }
    });
    Ok(0)
}

/// `ExportReferencePoint` through the service; with `--detach` returns at
/// once (4096 and the job), else polls the job with a progress bar.
fn export(client: &ServiceClient, out: &Output, args: &ExportArgs) -> Result<i32, RefpointError> {
    if args.base_export.is_some() || args.tracking != super::args::TrackingArg::Strict {
        return Err(RefpointError::new(
            ReturnCode::NotSupported,
            "--base-export and --tracking fallback have no ExportSettingData property and cannot go through `refpoint serve`; stop the service to use them in-process",
        ));
    }
    let settings = ReferencePointExportSettingData {
        instance_id: None,
        base_reference_point: args.base.as_deref().map(resolve_reference_point_path),
        disks_to_export: args.disks.clone(),
    };
    let service = find_singleton(client, "Msvm_VirtualSystemReferencePointService")?;
    let output = client.invoke(
        &service,
        "ExportReferencePoint",
        &[
            (
                "ReferencePoint".to_owned(),
                ParamValue::Reference(resolve_reference_point_path(&args.reference_point)),
            ),
            (
                "ExportDirectory".to_owned(),
                ParamValue::Value(args.to.to_string_lossy().into_owned()),
            ),
            (
                "ExportSettingData".to_owned(),
                ParamValue::Value(settings.to_embedded()),
            ),
        ],
    )?;
    if output.return_value != ReturnCode::JobStarted.value() {
        if output.return_value == 0 {
            out.print(&json!({"ReturnValue": 0}), || println!("ReturnValue 0"));
            return Ok(0);
        }
        return Err(method_failed("ExportReferencePoint", &output));
    }
    let job_path = out_reference(&output, "Job").ok_or_else(|| {
        RefpointError::new(
            ReturnCode::Failed,
            "ExportReferencePoint returned 4096 without Job",
        )
    })?;
    let job_id = job_path.key("InstanceID").unwrap_or_default().to_owned();
    if args.detach {
        out.print(
            &json!({"ReturnValue": 4096, "Job": job_path.to_string(), "InstanceID": job_id}),
            || println!("ReturnValue 4096, job {job_id}"),
        );
        return Ok(0);
    }
    let bar = out.bar(100, "export");
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}% {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let job = wait_for_job(client, &job_path, |j| {
        bar.set_position(u64::from(
            j.get_u16("PercentComplete").ok().flatten().unwrap_or(0),
        ));
    })?;
    bar.finish_and_clear();
    let state = crate::client::job_state(&job);
    let ok = state == 7 || state == 32768;
    let text = |name: &str| job.get_string(name).ok().flatten().unwrap_or_default();
    out.print(
        &json!({"ReturnValue": 4096, "Job": instance_to_json(&job)}),
        || {
            println!("ReturnValue 4096, job {job_id}");
            println!("JobState {state}");
            if ok {
                for p in job
                    .get_string_array("ExportedLogFilePaths")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                {
                    println!("  {p}");
                }
                println!("  {}", text("ExportedConfigFilePath"));
            } else {
                println!(
                    "ErrorCode {}: {}",
                    job.get_u16("ErrorCode").ok().flatten().unwrap_or(0),
                    text("ErrorDescription")
                );
            }
        },
    );
    if !ok && !out.json {
        eprintln!(
            "refpoint: export job {job_id} ended in JobState {state} with ErrorCode {}: {}",
            job.get_u16("ErrorCode").ok().flatten().unwrap_or(0),
            text("ErrorDescription")
        );
    }
    Ok(if ok { 0 } else { 1 })
}
