//! `refpoint wmi invoke CLASS.METHOD [--target PATH] --param NAME=VALUE…`:
//! calls one method of the WMI surface and prints its out-parameters as
//! CIM-XML (an `__PARAMETERS` instance, as WMI's `GetText_(1)` of an
//! out-parameters object) or, with `--json`, as `{"ReturnValue": …, <out
//! params>}`.
//!
//! Values of `--param NAME=VALUE`:
//! * text starting with `<` is CIM-XML (an embedded instance) and passed as is;
//! * `@FILE` reads the value from FILE (e.g. an embedded instance);
//! * an object path of a known class (`Class.Key="v"`, `\\host\ns:Class…`,
//!   `Class=@`) is a reference;
//! * anything else is a scalar (`32768`, `TRUE`, `/srv/export`);
//! * the same NAME given several times is an array.
//!
//! The logic takes a [`CimOperations`], so a remote backend plugs in.

use std::path::Path;

use clap::Args;
use refpoint_cim::{CimType, CimValue, Instance, ObjectPath, PropertyValue};
use serde_json::{Map, Value, json};

use crate::error::{RefpointError, ReturnCode};
use crate::wmi::model::is_known;
use crate::wmi::{CimOpError, CimOperations, MethodOutput, ParamValue};

/// `refpoint wmi …`
#[derive(Debug, clap::Subcommand)]
pub enum WmiCommand {
    /// Invoke a method: `refpoint wmi invoke Msvm_VirtualSystemSnapshotService.CreateSnapshot --param AffectedSystem='Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="…"' --param SnapshotType=32768`.
    Invoke(InvokeArgs),
}

/// `refpoint wmi invoke …`
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// `Class.Method`, e.g. `Msvm_VirtualSystemReferencePointService.ExportReferencePoint`.
    pub method: String,
    /// Object path of the target instance (default: the class's singleton, for services).
    #[arg(long)]
    pub target: Option<String>,
    /// `NAME=VALUE` (repeat NAME for arrays; `@FILE` reads VALUE from FILE).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
}

/// A CIM operation error as a CLI error (exit 1): the DSP0200 status in the message.
pub(crate) fn op_error(e: &CimOpError) -> RefpointError {
    let code = match e.status {
        CimOpError::NOT_FOUND | CimOpError::INVALID_PARAMETER | CimOpError::INVALID_CLASS => {
            ReturnCode::InvalidParameter
        }
        CimOpError::NOT_SUPPORTED | CimOpError::METHOD_NOT_FOUND => ReturnCode::NotSupported,
        _ => ReturnCode::Failed,
    };
    RefpointError::new(code, format!("CIM_ERR {}: {}", e.status, e.description))
}

/// Splits `Class.Method`.
///
/// # Errors
/// 32773 when there is no `.`.
pub fn split_method(text: &str) -> Result<(&str, &str), RefpointError> {
    text.rsplit_once('.')
        .filter(|(c, m)| !c.is_empty() && !m.is_empty())
        .ok_or_else(|| {
            RefpointError::new(
                ReturnCode::InvalidParameter,
                format!("{text:?} is not CLASS.METHOD"),
            )
        })
}

/// One `--param` value as a [`ParamValue`] (see the module docs).
///
/// # Errors
/// 32773 when `@FILE` cannot be read.
pub fn parse_value(text: &str) -> Result<ParamValue, RefpointError> {
    if let Some(file) = text.strip_prefix('@') {
        let content = std::fs::read_to_string(Path::new(file)).map_err(|e| {
            RefpointError::new(
                ReturnCode::InvalidParameter,
                format!("cannot read parameter file {file}: {e}"),
            )
        })?;
        return Ok(ParamValue::Value(content));
    }
    if text.trim_start().starts_with('<') {
        return Ok(ParamValue::Value(text.to_owned()));
    }
    if let Ok(path) = text.parse::<ObjectPath>() {
        let shaped = text.contains('=');
        if shaped && is_known(&path.class_name) {
            return Ok(ParamValue::Reference(path));
        }
    }
    Ok(ParamValue::Value(text.to_owned()))
}

/// `NAME=VALUE…` → parameters; repeated names become arrays.
///
/// # Errors
/// 32773 for an entry without `=` or an unreadable `@FILE`.
pub fn parse_params(entries: &[String]) -> Result<Vec<(String, ParamValue)>, RefpointError> {
    let mut out: Vec<(String, ParamValue)> = Vec::new();
    for entry in entries {
        let (name, value) = entry.split_once('=').ok_or_else(|| {
            RefpointError::new(
                ReturnCode::InvalidParameter,
                format!("--param {entry:?} is not NAME=VALUE"),
            )
        })?;
        let value = parse_value(value)?;
        match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            None => out.push((name.to_owned(), value)),
            Some((_, existing)) => {
                let merged = match (std::mem::replace(existing, ParamValue::Null), value) {
                    (ParamValue::Reference(a), ParamValue::Reference(b)) => {
                        ParamValue::ReferenceArray(vec![a, b])
                    }
                    (ParamValue::ReferenceArray(mut a), ParamValue::Reference(b)) => {
                        a.push(b);
                        ParamValue::ReferenceArray(a)
                    }
                    (ParamValue::Array(mut a), ParamValue::Value(b)) => {
                        a.push(b);
                        ParamValue::Array(a)
                    }
                    (ParamValue::Value(a), ParamValue::Value(b)) => ParamValue::Array(vec![a, b]),
                    (a, b) => {
                        return Err(RefpointError::new(
                            ReturnCode::IncorrectDataType,
                            format!("--param {name}: mixes references and values ({a:?}, {b:?})"),
                        ));
                    }
                };
                *existing = merged;
            }
        }
    }
    Ok(out)
}

/// Invokes `CLASS.METHOD` on `target` (or the class) through `ops`.
///
/// # Errors
/// The CIM operation error (exit 1), or a malformed argument (32773).
pub fn invoke(ops: &dyn CimOperations, args: &InvokeArgs) -> Result<MethodOutput, RefpointError> {
    let (class, method) = split_method(&args.method)?;
    let target = match &args.target {
        Some(t) => t.parse::<ObjectPath>().map_err(|e| {
            RefpointError::new(ReturnCode::InvalidParameter, format!("--target: {e}"))
        })?,
        None => ObjectPath::new(class),
    };
    if !target.class_name.eq_ignore_ascii_case(class) && args.target.is_some() {
        // The method is looked up on the target's class; say so if they differ.
        tracing::debug!(target = %target, class, "target class differs from CLASS");
    }
    let params = parse_params(&args.params)?;
    ops.invoke_method(&target, method, &params)
        .map_err(|e| op_error(&e))
}

/// The out-parameters as a WMI `__PARAMETERS` instance (CIM-XML).
pub fn output_instance(output: &MethodOutput) -> Instance {
    let mut i = Instance::new("__PARAMETERS").with("ReturnValue", output.return_value);
    for (name, value) in &output.out_params {
        i = match value {
            ParamValue::Null => i.with_typed(name, PropertyValue::Null, CimType::String),
            ParamValue::Value(v) => i.with(name, v.as_str()),
            ParamValue::Array(v) => i.with_typed(name, v.as_slice(), CimType::String),
            ParamValue::Reference(p) => i.with(name, p.clone()),
            ParamValue::ReferenceArray(v) => i.with_typed(
                name,
                PropertyValue::Array(
                    v.iter()
                        .cloned()
                        .map(|p| Some(CimValue::Reference(p)))
                        .collect(),
                ),
                CimType::Reference,
            ),
        };
    }
    i
}

/// A parameter value as JSON (strings, arrays of strings, paths as text).
pub fn param_json(value: &ParamValue) -> Value {
    match value {
        ParamValue::Null => Value::Null,
        ParamValue::Value(v) => json!(v),
        ParamValue::Array(v) => json!(v),
        ParamValue::Reference(p) => json!(p.to_string()),
        ParamValue::ReferenceArray(v) => {
            Value::Array(v.iter().map(|p| json!(p.to_string())).collect())
        }
    }
}

/// `{"ReturnValue": …, <out params>…, "ErrorDescription": … (when failed)}`.
pub fn output_json(output: &MethodOutput) -> Value {
    let mut map = Map::new();
    map.insert("ReturnValue".to_owned(), json!(output.return_value));
    for (name, value) in &output.out_params {
        map.insert(name.clone(), param_json(value));
    }
    if let Some(e) = &output.error {
        map.insert("ErrorDescription".to_owned(), json!(e));
    }
    Value::Object(map)
}

/// A CIM value as JSON: booleans and integers as JSON numbers/booleans,
/// everything else as its CIM-XML text.
pub fn value_json(value: &CimValue) -> Value {
    match value {
        CimValue::Boolean(b) => json!(b),
        CimValue::Uint8(v) => json!(v),
        CimValue::Uint16(v) => json!(v),
        CimValue::Uint32(v) => json!(v),
        CimValue::Uint64(v) => json!(v),
        CimValue::Sint8(v) => json!(v),
        CimValue::Sint16(v) => json!(v),
        CimValue::Sint32(v) => json!(v),
        CimValue::Sint64(v) => json!(v),
        other => json!(other.to_text()),
    }
}

/// An instance as a JSON object of its properties (NULL → null).
pub fn instance_json(instance: &Instance) -> Value {
    let mut map = Map::new();
    for p in &instance.properties {
        let v = match &p.value {
            PropertyValue::Null => Value::Null,
            PropertyValue::Scalar(v) => value_json(v),
            PropertyValue::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.as_ref().map_or(Value::Null, value_json))
                    .collect(),
            ),
        };
        map.insert(p.name.clone(), v);
    }
    Value::Object(map)
}

/// Runs `refpoint wmi …` and prints; exit code 0 when `ReturnValue` is 0
/// or 4096, else 1 (the message on stderr).
///
/// `in_process`: the jobs run in this process, so a started job (4096) is
/// waited for before returning — it cannot outlive the process — after the
/// output was printed. A remote backend passes `false` and returns at once.
///
/// # Errors
/// As [`invoke`].
pub fn run(
    ops: &dyn CimOperations,
    json: bool,
    in_process: bool,
    cmd: &WmiCommand,
) -> Result<i32, RefpointError> {
    match cmd {
        WmiCommand::Invoke(args) => {
            let output = invoke(ops, args)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output_json(&output)).unwrap_or_default()
                );
            } else {
                println!("{}", output_instance(&output).to_xml());
            }
            let ok = output.return_value == ReturnCode::Completed.value()
                || output.return_value == ReturnCode::JobStarted.value();
            if in_process && let Some(ParamValue::Reference(job)) = output.out("Job") {
                super::jobs::wait(
                    ops,
                    &job.to_string(),
                    None,
                    std::time::Duration::from_millis(20),
                )?;
            }
            if !ok {
                eprintln!(
                    "refpoint: {} returned {}: {}",
                    args.method,
                    output.return_value,
                    output.error.as_deref().unwrap_or("")
                );
            }
            Ok(i32::from(!ok))
        }
    }
}
