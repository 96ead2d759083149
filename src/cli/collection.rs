//! `refpoint collection create|add|remove|list|show|destroy`, `refpoint rp
//! create --collection NAME` and `refpoint export
//! --collection-reference-point ID`: the collection services driven through
//! [`CimOperations`], so that the same code runs in-process (a
//! [`crate::wmi::Provider`]) or through a running `refpoint serve`.
//!
//! Collections and VMs are named by `ElementName` or by `CollectionID` /
//! VM GUID. Jobs are waited for (the created reference point collection is
//! found through `Msvm_AffectedJobElement`), except `export --detach`.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};
use refpoint_cim::classes::{CollectionReferencePointExportSettingData, VirtualMachineToDisks};
use refpoint_cim::{Instance, ObjectPath};
use serde_json::{Value, json};

use super::Output;
use super::args::ExportArgs;
use super::wmi::{instance_json, op_error};
use crate::error::{RefpointError, ReturnCode};
use crate::wmi::collection_model::{
    COLLECTION_MANAGEMENT_SERVICE, COLLECTION_REFERENCE_POINT_SERVICE, REFERENCE_POINT_COLLECTION,
    VIRTUAL_SYSTEM_COLLECTION,
};
use crate::wmi::{CimOperations, MethodOutput, ParamValue};

/// Poll interval of job waits.
const POLL: Duration = Duration::from_millis(20);

/// `refpoint collection …` (Msvm_VirtualSystemCollection).
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Define a new, empty collection of VMs (DefineCollection, Type 0).
    Create {
        /// ElementName of the collection.
        name: String,
        /// CollectionID to use (a GUID; default: a new one).
        #[arg(long)]
        id: Option<String>,
    },
    /// Add a VM to a collection (AddMember).
    Add {
        /// Collection ElementName or CollectionID.
        collection: String,
        /// VM ElementName or GUID.
        vm: String,
    },
    /// Remove a VM from a collection (RemoveMember).
    Remove {
        /// Collection ElementName or CollectionID.
        collection: String,
        /// VM ElementName or GUID.
        vm: String,
    },
    /// List collections with their members.
    List,
    /// Show one collection: members and reference point collections.
    Show {
        /// Collection ElementName or CollectionID.
        collection: String,
    },
    /// Destroy a collection (DestroyCollection); its reference point collections must be destroyed first.
    Destroy {
        /// Collection ElementName or CollectionID.
        collection: String,
    },
}

/// Options of `export --collection-reference-point` (inserted into `ExportArgs`).
#[derive(Debug, Args)]
pub struct CollectionExportArgs {
    /// Export a reference point collection (CollectionID or object path) instead of a reference point.
    #[arg(long = "collection-reference-point", value_name = "ID", conflicts_with_all = ["reference_point", "disks", "base_export"])]
    pub collection_reference_point: Option<String>,
    /// With --collection-reference-point: export only these disks of VM (`VM=DISK,DISK`, or `VM` for all its disks); other members get their settings only.
    #[arg(
        long = "vm-disks",
        value_name = "VM=DISK,…",
        requires = "collection_reference_point",
        conflicts_with = "reference_point"
    )]
    pub vm_disks: Vec<String>,
}

fn failed(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, message)
}

fn text(i: &Instance, name: &str) -> String {
    i.get_string(name).ok().flatten().unwrap_or_default()
}

/// The singleton path of `class`.
fn service(ops: &dyn CimOperations, class: &str) -> Result<ObjectPath, RefpointError> {
    ops.enumerate_instance_names(class)
        .map_err(|e| op_error(&e))?
        .into_iter()
        .next()
        .ok_or_else(|| failed(format!("no {class} instance")))
}

/// The collection named `name` (ElementName, case-insensitive, or
/// CollectionID); a name that matches nothing is passed on as a
/// CollectionID so that the method reports it.
fn collection_path(ops: &dyn CimOperations, name: &str) -> Result<ObjectPath, RefpointError> {
    let all = ops
        .enumerate_instances(VIRTUAL_SYSTEM_COLLECTION)
        .map_err(|e| op_error(&e))?;
    Ok(all
        .into_iter()
        .find(|(_, i)| {
            text(i, "ElementName").eq_ignore_ascii_case(name)
                || text(i, "CollectionID").eq_ignore_ascii_case(name.trim_matches(['{', '}']))
        })
        .map_or_else(
            || ObjectPath::new(VIRTUAL_SYSTEM_COLLECTION).with_key("CollectionID", name),
            |(p, _)| p,
        ))
}

/// The VM named `name` (ElementName or GUID), as a path; unknown names are
/// passed on as `Name` so that the method reports them.
fn vm_path(ops: &dyn CimOperations, name: &str) -> Result<ObjectPath, RefpointError> {
    Ok(vm_lookup(ops, name)?.map_or_else(
        || {
            ObjectPath::new("Msvm_ComputerSystem")
                .with_key("CreationClassName", "Msvm_ComputerSystem")
                .with_key("Name", name)
        },
        |(p, _)| p,
    ))
}

fn vm_lookup(
    ops: &dyn CimOperations,
    name: &str,
) -> Result<Option<(ObjectPath, Instance)>, RefpointError> {
    let all = ops
        .enumerate_instances("Msvm_ComputerSystem")
        .map_err(|e| op_error(&e))?;
    Ok(all.into_iter().find(|(_, i)| {
        text(i, "ElementName").eq_ignore_ascii_case(name)
            || text(i, "Name").eq_ignore_ascii_case(name.trim_matches(['{', '}']))
    }))
}

/// 0 (or 4096 then the job's success) or an error naming the method.
fn check(method: &str, output: &MethodOutput) -> Result<(), RefpointError> {
    match output.return_value {
        0 | 4096 => Ok(()),
        code => Err(RefpointError::new(
            ReturnCode::try_from(code).unwrap_or(ReturnCode::Failed),
            format!(
                "{method} returned {code}: {}",
                output.error.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// Waits for the job an output names, if any; its final instance.
fn wait_job(
    ops: &dyn CimOperations,
    output: &MethodOutput,
) -> Result<Option<Instance>, RefpointError> {
    let Some(ParamValue::Reference(job)) = output.out("Job") else {
        return Ok(None);
    };
    super::jobs::wait(ops, &job.to_string(), None, POLL).map(Some)
}

/// Fails unless the finished job succeeded (7 or 32768).
fn job_succeeded(method: &str, job: &Instance) -> Result<(), RefpointError> {
    let state = super::jobs::job_state(job).unwrap_or(0);
    if state == 7 || state == 32768 {
        return Ok(());
    }
    let code = job.get_u16("ErrorCode").ok().flatten().unwrap_or(0);
    Err(RefpointError::new(
        ReturnCode::try_from(u32::from(code)).unwrap_or(ReturnCode::Failed),
        format!(
            "{method} job {} ended in JobState {state}: {}",
            text(job, "InstanceID"),
            text(job, "ErrorDescription")
        ),
    ))
}

/// Members and reference point collections of the collection at `path`.
fn describe(
    ops: &dyn CimOperations,
    path: &ObjectPath,
    instance: &Instance,
) -> Result<Value, RefpointError> {
    let members = ops
        .associators(path, Some("Msvm_CollectedVirtualSystems"), None, None, None)
        .map_err(|e| op_error(&e))?;
    let points = ops
        .associators(
            path,
            Some("Msvm_ReferencePointOfVirtualSystemCollection"),
            None,
            None,
            None,
        )
        .map_err(|e| op_error(&e))?;
    let mut point_values = Vec::new();
    for (p, i) in &points {
        let collected = ops
            .associators(p, Some("Msvm_CollectedReferencePoints"), None, None, None)
            .map_err(|e| op_error(&e))?;
        let mut v = instance_json(i);
        v["Members"] = collected.iter().map(|(_, m)| instance_json(m)).collect();
        point_values.push(v);
    }
    let mut v = instance_json(instance);
    v["Members"] = members.iter().map(|(_, m)| instance_json(m)).collect();
    v["ReferencePointCollections"] = Value::Array(point_values);
    Ok(v)
}

fn print_collection(v: &Value) {
    println!(
        "{}  {}",
        v["CollectionID"].as_str().unwrap_or(""),
        v["ElementName"].as_str().unwrap_or("")
    );
    for m in v["Members"].as_array().into_iter().flatten() {
        println!(
            "  member {}  {}",
            m["Name"].as_str().unwrap_or(""),
            m["ElementName"].as_str().unwrap_or("")
        );
    }
    for r in v["ReferencePointCollections"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  reference point collection {}  {}",
            r["CollectionID"].as_str().unwrap_or(""),
            r["ElementName"].as_str().unwrap_or("")
        );
        for m in r["Members"].as_array().into_iter().flatten() {
            println!("    {}", m["InstanceID"].as_str().unwrap_or(""));
        }
    }
}

/// Runs `refpoint collection …`; exit code 0 on success.
///
/// # Errors
/// The method's return code and message; CIM operation errors.
pub fn run(
    ops: &dyn CimOperations,
    out: &Output,
    cmd: &CollectionCommand,
) -> Result<i32, RefpointError> {
    let management = || service(ops, COLLECTION_MANAGEMENT_SERVICE);
    match cmd {
        CollectionCommand::Create { name, id } => {
            let mut params = vec![
                ("Name".to_owned(), ParamValue::Value(name.clone())),
                ("Type".to_owned(), ParamValue::Value("0".to_owned())),
            ];
            if let Some(id) = id {
                params.push(("Id".to_owned(), ParamValue::Value(id.clone())));
            }
            let output = ops
                .invoke_method(&management()?, "DefineCollection", &params)
                .map_err(|e| op_error(&e))?;
            check("DefineCollection", &output)?;
            let Some(ParamValue::Reference(path)) = output.out("DefinedCollection") else {
                return Err(failed(
                    "DefineCollection returned no DefinedCollection".to_owned(),
                ));
            };
            let id = path.key("CollectionID").unwrap_or_default().to_owned();
            out.print(
                &json!({"ReturnValue": output.return_value, "DefinedCollection": path.to_string(), "CollectionID": id}),
                || println!("collection {id}  {name}"),
            );
        }
        CollectionCommand::Add { collection, vm }
        | CollectionCommand::Remove { collection, vm } => {
            let method = if matches!(cmd, CollectionCommand::Add { .. }) {
                "AddMember"
            } else {
                "RemoveMember"
            };
            let params = [
                (
                    "Member".to_owned(),
                    ParamValue::Reference(vm_path(ops, vm)?),
                ),
                (
                    "Collection".to_owned(),
                    ParamValue::Reference(collection_path(ops, collection)?),
                ),
            ];
            let output = ops
                .invoke_method(&management()?, method, &params)
                .map_err(|e| op_error(&e))?;
            check(method, &output)?;
            if let Some(job) = wait_job(ops, &output)? {
                job_succeeded(method, &job)?;
            }
            out.print(&json!({"ReturnValue": output.return_value}), || {
                println!(
                    "{method}: {vm} {} {collection}",
                    if method == "AddMember" { "to" } else { "from" }
                );
            });
        }
        CollectionCommand::Destroy { collection } => {
            let params = [(
                "Collection".to_owned(),
                ParamValue::Reference(collection_path(ops, collection)?),
            )];
            let output = ops
                .invoke_method(&management()?, "DestroyCollection", &params)
                .map_err(|e| op_error(&e))?;
            check("DestroyCollection", &output)?;
            out.print(&json!({"ReturnValue": output.return_value}), || {
                println!("destroyed collection {collection}");
            });
        }
        CollectionCommand::List => {
            let all = ops
                .enumerate_instances(VIRTUAL_SYSTEM_COLLECTION)
                .map_err(|e| op_error(&e))?;
            let values = all
                .iter()
                .map(|(p, i)| describe(ops, p, i))
                .collect::<Result<Vec<_>, _>>()?;
            out.print(&Value::Array(values.clone()), || {
                for v in &values {
                    print_collection(v);
                }
            });
        }
        CollectionCommand::Show { collection } => {
            let path = collection_path(ops, collection)?;
            let instance = ops.get_instance(&path).map_err(|e| {
                RefpointError::new(
                    ReturnCode::InvalidParameter,
                    format!(
                        "no collection {collection:?}: CIM_ERR {}: {}",
                        e.status, e.description
                    ),
                )
            })?;
            let v = describe(ops, &path, &instance)?;
            out.print(&v, || print_collection(&v));
        }
    }
    Ok(0)
}

/// `refpoint rp create --collection NAME`: CreateReferencePoint on the
/// collection service, then the new `Msvm_ReferencePointCollection`
/// (through the job's `Msvm_AffectedJobElement`, or the synchronous out
/// parameter); prints its `CollectionID`.
///
/// # Errors
/// The method's return code, or the job's `ErrorCode` and description.
pub fn rp_create(
    ops: &dyn CimOperations,
    out: &Output,
    collection: &str,
) -> Result<i32, RefpointError> {
    let params = [(
        "Collection".to_owned(),
        ParamValue::Reference(collection_path(ops, collection)?),
    )];
    let output = ops
        .invoke_method(
            &service(ops, COLLECTION_REFERENCE_POINT_SERVICE)?,
            "CreateReferencePoint",
            &params,
        )
        .map_err(|e| op_error(&e))?;
    check("CreateReferencePoint", &output)?;
    let created = match (
        output.out("ResultingReferencePointCollection"),
        wait_job(ops, &output)?,
    ) {
        (Some(ParamValue::Reference(p)), _) => ops.get_instance(p).map_err(|e| op_error(&e))?,
        (_, Some(job)) => {
            job_succeeded("CreateReferencePoint", &job)?;
            let job_path = ObjectPath::new("Msvm_ConcreteJob")
                .with_key("InstanceID", &text(&job, "InstanceID"));
            ops.associators(
                &job_path,
                Some("Msvm_AffectedJobElement"),
                Some(REFERENCE_POINT_COLLECTION),
                None,
                None,
            )
            .map_err(|e| op_error(&e))?
            .into_iter()
            .next()
            .map(|(_, i)| i)
            .ok_or_else(|| {
                failed(
                    "the CreateReferencePoint job names no created Msvm_ReferencePointCollection"
                        .to_owned(),
                )
            })?
        }
        _ => {
            return Err(failed(
                "CreateReferencePoint returned neither a job nor a result".to_owned(),
            ));
        }
    };
    let id = text(&created, "CollectionID");
    out.print(
        &json!({"ReturnValue": output.return_value, "ResultingReferencePointCollection": instance_json(&created), "CollectionID": id}),
        || println!("{id}"),
    );
    Ok(0)
}

/// `VM=DISK,DISK` (or `VM`) into a `Msvm_VirtualMachineToDisks`, the VM
/// resolved to its GUID when known.
fn vm_disks(ops: &dyn CimOperations, spec: &str) -> Result<VirtualMachineToDisks, RefpointError> {
    let (vm, disks) = spec.split_once('=').unwrap_or((spec, ""));
    let id =
        vm_lookup(ops, vm.trim())?.map_or_else(|| vm.trim().to_owned(), |(_, i)| text(&i, "Name"));
    Ok(VirtualMachineToDisks {
        virtual_machine_id: id,
        disks_to_export: disks
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// `refpoint export --collection-reference-point ID --to DIR [--base ID]
/// [--vm-disks VM=DISK,…]`: ExportReferencePoint on the collection service;
/// waits for the job (unless `--detach`) and prints its fields.
///
/// # Errors
/// The method's return code and message.
pub fn export(
    ops: &dyn CimOperations,
    out: &Output,
    args: &ExportArgs,
) -> Result<i32, RefpointError> {
    let id = args
        .collection
        .collection_reference_point
        .as_deref()
        .unwrap_or_default();
    if args.tracking != super::args::TrackingArg::Strict {
        return Err(RefpointError::new(
            ReturnCode::NotSupported,
            "--tracking fallback has no Msvm_CollectionReferencePointExportSettingData property; collection exports use the strict policy",
        ));
    }
    let point_path = |text: &str| {
        if text.contains('=') {
            text.parse::<ObjectPath>().map_err(|e| {
                RefpointError::new(
                    ReturnCode::InvalidParameter,
                    format!("object path {text:?}: {e}"),
                )
            })
        } else {
            Ok(ObjectPath::new(REFERENCE_POINT_COLLECTION).with_key("CollectionID", text))
        }
    };
    let settings = CollectionReferencePointExportSettingData {
        base_reference_point_collection: args.base.as_deref().map(point_path).transpose()?,
        virtual_machines_to_disks_to_export: args
            .collection
            .vm_disks
            .iter()
            .map(|s| vm_disks(ops, s))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let params = [
        (
            "ReferencePointCollection".to_owned(),
            ParamValue::Reference(point_path(id)?),
        ),
        (
            "ExportDirectory".to_owned(),
            ParamValue::Value(absolute(&args.to).display().to_string()),
        ),
        (
            "ExportSettingData".to_owned(),
            ParamValue::Value(settings.to_instance().to_xml()),
        ),
    ];
    let output = ops
        .invoke_method(
            &service(ops, COLLECTION_REFERENCE_POINT_SERVICE)?,
            "ExportReferencePoint",
            &params,
        )
        .map_err(|e| op_error(&e))?;
    check("ExportReferencePoint", &output)?;
    let Some(ParamValue::Reference(job_path)) = output.out("Job") else {
        return Err(failed(
            "ExportReferencePoint returned 4096 without Job".to_owned(),
        ));
    };
    let job_id = job_path.key("InstanceID").unwrap_or_default().to_owned();
    if args.detach {
        out.print(
            &json!({"ReturnValue": 4096, "Job": job_path.to_string(), "InstanceID": job_id}),
            || println!("ReturnValue 4096, job {job_id}"),
        );
        return Ok(0);
    }
    let job = super::jobs::wait(ops, &job_path.to_string(), None, POLL)?;
    let state = super::jobs::job_state(&job).unwrap_or(0);
    let ok = state == 7 || state == 32768;
    out.print(
        &json!({"ReturnValue": 4096, "Job": instance_json(&job)}),
        || {
            println!("ReturnValue 4096, job {job_id}");
            println!("JobState {state}");
            if ok {
                for p in job
                    .get_string_array("ExportedConfigFilePaths")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                {
                    println!("  {p}");
                }
                for p in job
                    .get_string_array("ExportedLogFilePaths")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
                {
                    println!("  {p}");
                }
            } else {
                println!(
                    "ErrorCode {}: {}",
                    job.get_u16("ErrorCode").ok().flatten().unwrap_or(0),
                    text(&job, "ErrorDescription")
                );
            }
        },
    );
    if !ok && !out.json {
        eprintln!(
            "refpoint: collection export job {job_id} ended in JobState {state} with ErrorCode {}: {}",
            job.get_u16("ErrorCode").ok().flatten().unwrap_or(0),
            text(&job, "ErrorDescription")
        );
    }
    Ok(i32::from(!ok))
}

/// `dir` made absolute against the working directory (the method itself
/// refuses relative paths; the CLI resolves them as other commands do).
fn absolute(dir: &Path) -> std::path::PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}
