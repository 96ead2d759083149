//! CIM operation requests (DSP0200 §5.3, DSP0201 `SIMPLEREQ`): decoding a
//! message body into a [`Request`] on the service side and encoding one on
//! the client side.
//!
//! Supported intrinsic methods: `GetInstance`, `EnumerateInstances`,
//! `EnumerateInstanceNames`, `Associators`, `AssociatorNames`, `References`,
//! `ReferenceNames`. Any other intrinsic method decodes to
//! `CIM_ERR_NOT_SUPPORTED` (so pywbem's `Iter…` functions fall back from the
//! pull operations). Parameters:
//!
//! * `ClassName`, `InstanceName`, `ObjectName`, `AssocClass`, `ResultClass`,
//!   `Role`, `ResultRole` are honoured; an `ObjectName` naming a class (class
//!   level association queries) is `CIM_ERR_NOT_SUPPORTED`;
//! * `IncludeQualifiers` (default false) and `IncludeClassOrigin` (default
//!   false) are honoured: qualifiers and `CLASSORIGIN`/`PROPAGATED` are
//!   removed from returned instances unless asked for;
//! * `PropertyList` is honoured: returned instances keep only the listed
//!   properties (case-insensitive; an empty list keeps none);
//! * `LocalOnly` and `DeepInheritance` are read and ignored: instances always
//!   carry all their properties, including those of subclasses (DSP0200 1.3
//!   deprecates `LocalOnly` for instance operations);
//! * an unknown parameter, a parameter given twice, or a value of the wrong
//!   element kind is `CIM_ERR_INVALID_PARAMETER` naming the parameter.
//!
//! Extrinsic calls (`METHODCALL`) target a `LOCALINSTANCEPATH` or
//! `LOCALCLASSPATH`; each `PARAMVALUE` becomes a [`ParamValue`]: `VALUE` text
//! (embedded instances stay CIM-XML text), `VALUE.ARRAY`, `VALUE.REFERENCE`,
//! `VALUE.REFARRAY`, an `INSTANCENAME` (as a reference), or an `INSTANCE`
//! element (as its CIM-XML text). A `PARAMTYPE` is checked against the value:
//! text that does not parse as the declared type, or a reference given as
//! text that does not parse as an object path, is `CIM_ERR_INVALID_PARAMETER`.

use refpoint_cim::{CimType, CimValue, ObjectPath};

use super::dom::{self, Element};
use super::error::MessageError;
use super::names;
use crate::serve::operations::{CimOpError, ParamValue, status};

/// Options of the instance-returning operations (see the module docs for
/// which are honoured).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceOptions {
    /// `LocalOnly` as sent (ignored).
    pub local_only: Option<bool>,
    /// `DeepInheritance` as sent (ignored).
    pub deep_inheritance: Option<bool>,
    /// `IncludeQualifiers` (default false).
    pub include_qualifiers: bool,
    /// `IncludeClassOrigin` (default false).
    pub include_class_origin: bool,
    /// `PropertyList`; `None` = all properties.
    pub property_list: Option<Vec<String>>,
}

/// Filters of `Associators`/`AssociatorNames`/`References`/`ReferenceNames`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssociationFilter {
    /// `AssocClass` (associators only).
    pub assoc_class: Option<String>,
    /// `ResultClass`.
    pub result_class: Option<String>,
    /// `Role`.
    pub role: Option<String>,
    /// `ResultRole` (associators only).
    pub result_role: Option<String>,
}

/// One supported intrinsic operation with its decoded parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrinsicOp {
    /// `GetInstance(InstanceName)`.
    GetInstance {
        /// The instance.
        instance_name: ObjectPath,
        /// Options.
        options: InstanceOptions,
    },
    /// `EnumerateInstances(ClassName)`.
    EnumerateInstances {
        /// The class.
        class_name: String,
        /// Options.
        options: InstanceOptions,
    },
    /// `EnumerateInstanceNames(ClassName)`.
    EnumerateInstanceNames {
        /// The class.
        class_name: String,
    },
    /// `Associators(ObjectName, AssocClass, ResultClass, Role, ResultRole)`.
    Associators {
        /// The source instance.
        object_name: ObjectPath,
        /// Filters.
        filter: AssociationFilter,
        /// Options.
        options: InstanceOptions,
    },
    /// `AssociatorNames(…)`.
    AssociatorNames {
        /// The source instance.
        object_name: ObjectPath,
        /// Filters.
        filter: AssociationFilter,
    },
    /// `References(ObjectName, ResultClass, Role)`.
    References {
        /// The target instance.
        object_name: ObjectPath,
        /// Filters (`result_class`, `role`).
        filter: AssociationFilter,
        /// Options.
        options: InstanceOptions,
    },
    /// `ReferenceNames(…)`.
    ReferenceNames {
        /// The target instance.
        object_name: ObjectPath,
        /// Filters (`result_class`, `role`).
        filter: AssociationFilter,
    },
}

impl IntrinsicOp {
    /// The DSP0200 method name (`IMETHODCALL NAME`).
    pub fn method_name(&self) -> &'static str {
        match self {
            IntrinsicOp::GetInstance { .. } => "GetInstance",
            IntrinsicOp::EnumerateInstances { .. } => "EnumerateInstances",
            IntrinsicOp::EnumerateInstanceNames { .. } => "EnumerateInstanceNames",
            IntrinsicOp::Associators { .. } => "Associators",
            IntrinsicOp::AssociatorNames { .. } => "AssociatorNames",
            IntrinsicOp::References { .. } => "References",
            IntrinsicOp::ReferenceNames { .. } => "ReferenceNames",
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `IMETHODCALL`: an intrinsic operation in `namespace` (`\` separators);
    /// `Err` when the operation or its parameters cannot be served.
    Intrinsic {
        /// `LOCALNAMESPACEPATH`.
        namespace: String,
        /// The decoded operation.
        op: Result<IntrinsicOp, CimOpError>,
    },
    /// `METHODCALL`: an extrinsic method on `target` (namespace set; no keys
    /// for a class path).
    Extrinsic {
        /// `LOCALINSTANCEPATH` or `LOCALCLASSPATH`.
        target: ObjectPath,
        /// True for `LOCALCLASSPATH`.
        target_is_class: bool,
        /// Decoded `PARAMVALUE`s.
        params: Result<Vec<(String, ParamValue)>, CimOpError>,
    },
}

/// A decoded `SIMPLEREQ` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `MESSAGE ID`, echoed in the response.
    pub message_id: String,
    /// `IMETHODCALL NAME` / `METHODCALL NAME` (must match the `CIMMethod` header).
    pub method: String,
    /// The call.
    pub call: Call,
}

fn version_major(v: &str) -> &str {
    v.split('.').next().unwrap_or("").trim()
}

/// Checks `CIM CIMVERSION`/`DTDVERSION` and `MESSAGE PROTOCOLVERSION` and
/// returns the `MESSAGE` element and its ID.
pub(crate) fn open_message(root: &Element) -> Result<(&Element, String), MessageError> {
    if root.name != "CIM" {
        return Err(root.invalid(format!("root element is {}, expected CIM", root.name)));
    }
    let cim_version = root.required("CIMVERSION")?;
    if version_major(cim_version) != "2" {
        return Err(MessageError::UnsupportedCimVersion {
            found: cim_version.to_owned(),
        });
    }
    let dtd_version = root.required("DTDVERSION")?;
    if version_major(dtd_version) != "2" {
        return Err(MessageError::UnsupportedDtdVersion {
            found: dtd_version.to_owned(),
        });
    }
    let message = root.only_child("MESSAGE")?;
    let id = message.required("ID")?.to_owned();
    let protocol = message.required("PROTOCOLVERSION")?;
    if version_major(protocol) != "1" {
        return Err(MessageError::UnsupportedProtocolVersion {
            found: protocol.to_owned(),
        });
    }
    Ok((message, id))
}

/// Decodes a request body.
///
/// # Errors
/// [`MessageError`] for a body that is not well-formed or not a valid
/// `SIMPLEREQ` (answered with HTTP 400/501 and a `CIMError` header);
/// problems of the operation itself are inside the returned [`Call`].
pub fn parse_request(text: &str) -> Result<Request, MessageError> {
    let root = dom::parse(text)?;
    let (message, message_id) = open_message(&root)?;
    let body = match message.elements()?.as_slice() {
        [one] if one.name == "SIMPLEREQ" => *one,
        [one] if one.name == "MULTIREQ" => return Err(MessageError::MultipleRequests),
        [one] => return Err(message.unexpected(one)),
        _ => return Err(message.invalid("MESSAGE must hold one SIMPLEREQ")),
    };
    // DSP0201 2.4 allows CORRELATOR elements before the call.
    let calls: Vec<&Element> = body
        .elements()?
        .into_iter()
        .filter(|e| e.name != "CORRELATOR")
        .collect();
    let call_el = match calls.as_slice() {
        [one] => *one,
        _ => return Err(body.invalid("SIMPLEREQ must hold one IMETHODCALL or METHODCALL")),
    };
    let method = call_el.required("NAME")?.to_owned();
    let call = match call_el.name.as_str() {
        "IMETHODCALL" => parse_intrinsic(call_el, &method)?,
        "METHODCALL" => parse_extrinsic(text, call_el)?,
        _ => return Err(body.unexpected(call_el)),
    };
    Ok(Request {
        message_id,
        method,
        call,
    })
}

fn invalid_param(name: &str, why: impl std::fmt::Display) -> CimOpError {
    CimOpError::new(
        status::INVALID_PARAMETER,
        format!("parameter {name}: {why}"),
    )
}

/// The `IPARAMVALUE`s of a call: name and optional value element.
struct IParams<'a> {
    items: Vec<(String, Option<&'a Element>)>,
}

impl<'a> IParams<'a> {
    fn take(&mut self, name: &str) -> Option<Option<&'a Element>> {
        let i = self
            .items
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(self.items.remove(i).1)
    }

    fn finish(self, method: &str) -> Result<(), CimOpError> {
        match self.items.first() {
            Some((name, _)) => Err(invalid_param(
                name,
                format!("{method} has no such parameter"),
            )),
            None => Ok(()),
        }
    }

    fn class(&mut self, name: &str) -> Result<Option<String>, CimOpError> {
        match self.take(name).flatten() {
            None => Ok(None),
            Some(el) => names::read_class_name(el)
                .map(Some)
                .map_err(|e| invalid_param(name, e)),
        }
    }

    fn required_class(&mut self, name: &str) -> Result<String, CimOpError> {
        self.class(name)?
            .ok_or_else(|| invalid_param(name, "missing (a CLASSNAME is required)"))
    }

    fn instance_name(&mut self, name: &str) -> Result<ObjectPath, CimOpError> {
        let el = self
            .take(name)
            .flatten()
            .ok_or_else(|| invalid_param(name, "missing (an INSTANCENAME is required)"))?;
        match el.name.as_str() {
            "INSTANCENAME" => names::read_instance_name(el).map_err(|e| invalid_param(name, e)),
            "CLASSNAME" => Err(CimOpError::new(
                status::NOT_SUPPORTED,
                format!(
                    "parameter {name}: class-level operations are not supported; pass an INSTANCENAME"
                ),
            )),
            other => Err(invalid_param(
                name,
                format!("expected INSTANCENAME, found {other}"),
            )),
        }
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, CimOpError> {
        match self.take(name).flatten() {
            None => Ok(None),
            Some(el) if el.name == "VALUE" => {
                el.text().map(Some).map_err(|e| invalid_param(name, e))
            }
            Some(el) => Err(invalid_param(
                name,
                format!("expected VALUE, found {}", el.name),
            )),
        }
    }

    fn boolean(&mut self, name: &str) -> Result<Option<bool>, CimOpError> {
        match self.string(name)? {
            None => Ok(None),
            Some(t) if t.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(t) if t.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(t) => Err(invalid_param(name, format!("{t:?} is not a boolean"))),
        }
    }

    fn string_array(&mut self, name: &str) -> Result<Option<Vec<String>>, CimOpError> {
        match self.take(name).flatten() {
            None => Ok(None),
            Some(el) if el.name == "VALUE.ARRAY" => {
                let mut out = Vec::new();
                for v in el.elements().map_err(|e| invalid_param(name, e))? {
                    if v.name != "VALUE" {
                        return Err(invalid_param(name, format!("{} in VALUE.ARRAY", v.name)));
                    }
                    out.push(v.text().map_err(|e| invalid_param(name, e))?);
                }
                Ok(Some(out))
            }
            Some(el) => Err(invalid_param(
                name,
                format!("expected VALUE.ARRAY, found {}", el.name),
            )),
        }
    }

    fn options(&mut self, names: &[&str]) -> Result<InstanceOptions, CimOpError> {
        let mut o = InstanceOptions::default();
        for n in names {
            match *n {
                "LocalOnly" => o.local_only = self.boolean(n)?,
                "DeepInheritance" => o.deep_inheritance = self.boolean(n)?,
                "IncludeQualifiers" => o.include_qualifiers = self.boolean(n)?.unwrap_or(false),
                "IncludeClassOrigin" => o.include_class_origin = self.boolean(n)?.unwrap_or(false),
                "PropertyList" => o.property_list = self.string_array(n)?,
                _ => {}
            }
        }
        Ok(o)
    }

    fn filter(&mut self, associators: bool) -> Result<AssociationFilter, CimOpError> {
        let mut f = AssociationFilter::default();
        if associators {
            f.assoc_class = self.class("AssocClass")?;
        }
        f.result_class = self.class("ResultClass")?;
        f.role = self.string("Role")?;
        if associators {
            f.result_role = self.string("ResultRole")?;
        }
        Ok(f)
    }
}

const INSTANCE_OPTIONS: [&str; 4] = [
    "LocalOnly",
    "IncludeQualifiers",
    "IncludeClassOrigin",
    "PropertyList",
];
const ENUM_OPTIONS: [&str; 5] = [
    "LocalOnly",
    "DeepInheritance",
    "IncludeQualifiers",
    "IncludeClassOrigin",
    "PropertyList",
];
const ASSOC_OPTIONS: [&str; 3] = ["IncludeQualifiers", "IncludeClassOrigin", "PropertyList"];

fn parse_intrinsic(call: &Element, method: &str) -> Result<Call, MessageError> {
    let children = call.elements()?;
    let (ns_el, rest) = match children.split_first() {
        Some((first, rest)) if first.name == "LOCALNAMESPACEPATH" => (*first, rest),
        _ => return Err(call.invalid("IMETHODCALL must start with LOCALNAMESPACEPATH")),
    };
    let namespace = names::read_local_namespace(ns_el)?;
    let mut items: Vec<(String, Option<&Element>)> = Vec::new();
    let mut duplicate = None;
    for p in rest {
        if p.name != "IPARAMVALUE" {
            return Err(call.unexpected(p));
        }
        let name = p.required("NAME")?.to_owned();
        let value = match p.elements()?.as_slice() {
            [] => None,
            [v] => Some(*v),
            [_, extra, ..] => return Err(p.unexpected(extra)),
        };
        if items.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            duplicate = Some(name.clone());
        }
        items.push((name, value));
    }
    let op = match duplicate {
        Some(name) => Err(invalid_param(&name, "given twice")),
        None => intrinsic_op(method, IParams { items }),
    };
    Ok(Call::Intrinsic { namespace, op })
}

fn intrinsic_op(method: &str, mut p: IParams<'_>) -> Result<IntrinsicOp, CimOpError> {
    let op = match method {
        "GetInstance" => IntrinsicOp::GetInstance {
            instance_name: p.instance_name("InstanceName")?,
            options: p.options(&INSTANCE_OPTIONS)?,
        },
        "EnumerateInstances" => IntrinsicOp::EnumerateInstances {
            class_name: p.required_class("ClassName")?,
            options: p.options(&ENUM_OPTIONS)?,
        },
        "EnumerateInstanceNames" => IntrinsicOp::EnumerateInstanceNames {
            class_name: p.required_class("ClassName")?,
        },
        "Associators" => IntrinsicOp::Associators {
            object_name: p.instance_name("ObjectName")?,
            filter: p.filter(true)?,
            options: p.options(&ASSOC_OPTIONS)?,
        },
        "AssociatorNames" => IntrinsicOp::AssociatorNames {
            object_name: p.instance_name("ObjectName")?,
            filter: p.filter(true)?,
        },
        "References" => IntrinsicOp::References {
            object_name: p.instance_name("ObjectName")?,
            filter: p.filter(false)?,
            options: p.options(&ASSOC_OPTIONS)?,
        },
        "ReferenceNames" => IntrinsicOp::ReferenceNames {
            object_name: p.instance_name("ObjectName")?,
            filter: p.filter(false)?,
        },
        other => {
            return Err(CimOpError::new(
                status::NOT_SUPPORTED,
                format!(
                    "intrinsic method {other} is not supported (refpoint serves GetInstance, \
                     EnumerateInstances, EnumerateInstanceNames, Associators, AssociatorNames, \
                     References, ReferenceNames and InvokeMethod)"
                ),
            ));
        }
    };
    p.finish(method)?;
    Ok(op)
}

fn parse_extrinsic(text: &str, call: &Element) -> Result<Call, MessageError> {
    let children = call.elements()?;
    let (target_el, rest) = children
        .split_first()
        .ok_or_else(|| call.invalid("METHODCALL lacks LOCALINSTANCEPATH or LOCALCLASSPATH"))?;
    let (target, target_is_class) = match target_el.name.as_str() {
        "LOCALINSTANCEPATH" => (names::read_local_instance_path(target_el)?, false),
        "LOCALCLASSPATH" => (names::read_local_class_path(target_el)?, true),
        _ => return Err(call.unexpected(target_el)),
    };
    let mut params: Vec<(String, ParamValue)> = Vec::new();
    let mut failure = None;
    for p in rest {
        if p.name != "PARAMVALUE" {
            return Err(call.unexpected(p));
        }
        let name = p.required("NAME")?.to_owned();
        if params.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            failure.get_or_insert_with(|| invalid_param(&name, "given twice"));
            continue;
        }
        match param_value(text, p, &name) {
            Ok(v) => params.push((name, v)),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    Ok(Call::Extrinsic {
        target,
        target_is_class,
        params: match failure {
            Some(e) => Err(e),
            None => Ok(params),
        },
    })
}

/// Checks that `text` parses as CIM type `type_name` (PARAMTYPE).
fn check_type(name: &str, type_name: &str, text: &str) -> Result<(), CimOpError> {
    let t: CimType = type_name
        .parse()
        .map_err(|_| invalid_param(name, format!("unknown PARAMTYPE {type_name:?}")))?;
    if t == CimType::Reference {
        return Ok(());
    }
    CimValue::parse(t, text)
        .map(|_| ())
        .map_err(|e| invalid_param(name, format!("value {text:?} is not a {type_name}: {e}")))
}

fn param_value(text: &str, p: &Element, name: &str) -> Result<ParamValue, CimOpError> {
    let declared = p.attr("PARAMTYPE");
    let value = match p.elements().map_err(|e| invalid_param(name, e))?.as_slice() {
        [] => return Ok(ParamValue::Null),
        [v] => *v,
        [_, extra, ..] => return Err(invalid_param(name, format!("unexpected {}", extra.name))),
    };
    let in_err = |e: MessageError| invalid_param(name, e);
    match value.name.as_str() {
        "VALUE" => {
            let v = value.text().map_err(in_err)?;
            match declared {
                Some(t) if t.eq_ignore_ascii_case("reference") => {
                    let path: ObjectPath = v
                        .trim()
                        .parse()
                        .map_err(|e| invalid_param(name, format!("object path {v:?}: {e}")))?;
                    Ok(ParamValue::Reference(path))
                }
                Some(t) => {
                    check_type(name, t, &v)?;
                    Ok(ParamValue::Value(v))
                }
                None => Ok(ParamValue::Value(v)),
            }
        }
        "VALUE.ARRAY" => {
            let mut items = Vec::new();
            for item in value.elements().map_err(in_err)? {
                match item.name.as_str() {
                    "VALUE" => {
                        let v = item.text().map_err(in_err)?;
                        if let Some(t) = declared {
                            check_type(name, t, &v)?;
                        }
                        items.push(v);
                    }
                    "VALUE.NULL" => {
                        return Err(invalid_param(
                            name,
                            "NULL array elements (VALUE.NULL) are not supported",
                        ));
                    }
                    other => return Err(invalid_param(name, format!("{other} in VALUE.ARRAY"))),
                }
            }
            Ok(ParamValue::Array(items))
        }
        "VALUE.REFERENCE" => names::read_value_reference(value)
            .map(ParamValue::Reference)
            .map_err(in_err),
        "VALUE.REFARRAY" => {
            let mut items = Vec::new();
            for item in value.elements().map_err(in_err)? {
                match item.name.as_str() {
                    "VALUE.REFERENCE" => {
                        items.push(names::read_value_reference(item).map_err(in_err)?)
                    }
                    other => return Err(invalid_param(name, format!("{other} in VALUE.REFARRAY"))),
                }
            }
            Ok(ParamValue::ReferenceArray(items))
        }
        "INSTANCENAME" => names::read_instance_name(value)
            .map(ParamValue::Reference)
            .map_err(in_err),
        "INSTANCE" => value
            .source(text)
            .map(|s| ParamValue::Value(s.to_owned()))
            .ok_or_else(|| invalid_param(name, "INSTANCE text out of range")),
        other => Err(CimOpError::new(
            status::NOT_SUPPORTED,
            format!("parameter {name}: {other} values are not supported"),
        )),
    }
}

// ---- encoding (client side) ------------------------------------------------

fn open(out: &mut String, message_id: &str) {
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE");
    names::attr(out, "ID", message_id);
    out.push_str(" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ>");
}

fn close(out: &mut String) {
    out.push_str("</SIMPLEREQ></MESSAGE></CIM>");
}

fn iparam_class(out: &mut String, name: &str, class: Option<&str>) {
    if let Some(c) = class {
        out.push_str("<IPARAMVALUE");
        names::attr(out, "NAME", name);
        out.push('>');
        names::write_class_name(out, c);
        out.push_str("</IPARAMVALUE>");
    }
}

fn iparam_text(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        out.push_str("<IPARAMVALUE");
        names::attr(out, "NAME", name);
        out.push_str("><VALUE>");
        names::escape_into(out, v, false);
        out.push_str("</VALUE></IPARAMVALUE>");
    }
}

fn iparam_instance_name(out: &mut String, name: &str, path: &ObjectPath) {
    out.push_str("<IPARAMVALUE");
    names::attr(out, "NAME", name);
    out.push('>');
    names::write_instance_name(out, path);
    out.push_str("</IPARAMVALUE>");
}

fn iparam_options(out: &mut String, o: &InstanceOptions) {
    let flag = |b: bool| if b { "TRUE" } else { "FALSE" };
    iparam_text(out, "LocalOnly", o.local_only.map(flag));
    iparam_text(out, "DeepInheritance", o.deep_inheritance.map(flag));
    if o.include_qualifiers {
        iparam_text(out, "IncludeQualifiers", Some("TRUE"));
    }
    if o.include_class_origin {
        iparam_text(out, "IncludeClassOrigin", Some("TRUE"));
    }
    if let Some(list) = &o.property_list {
        out.push_str("<IPARAMVALUE NAME=\"PropertyList\"><VALUE.ARRAY>");
        for p in list {
            out.push_str("<VALUE>");
            names::escape_into(out, p, false);
            out.push_str("</VALUE>");
        }
        out.push_str("</VALUE.ARRAY></IPARAMVALUE>");
    }
}

fn iparam_filter(out: &mut String, f: &AssociationFilter) {
    iparam_class(out, "AssocClass", f.assoc_class.as_deref());
    iparam_class(out, "ResultClass", f.result_class.as_deref());
    iparam_text(out, "Role", f.role.as_deref());
    iparam_text(out, "ResultRole", f.result_role.as_deref());
}

/// Encodes an `IMETHODCALL` message (with XML declaration) for `op` in `namespace`.
pub fn encode_intrinsic(message_id: &str, namespace: &str, op: &IntrinsicOp) -> String {
    let mut out = String::with_capacity(512);
    open(&mut out, message_id);
    out.push_str("<IMETHODCALL");
    names::attr(&mut out, "NAME", op.method_name());
    out.push('>');
    names::write_local_namespace(&mut out, namespace);
    match op {
        IntrinsicOp::GetInstance {
            instance_name,
            options,
        } => {
            iparam_instance_name(&mut out, "InstanceName", instance_name);
            iparam_options(&mut out, options);
        }
        IntrinsicOp::EnumerateInstances {
            class_name,
            options,
        } => {
            iparam_class(&mut out, "ClassName", Some(class_name));
            iparam_options(&mut out, options);
        }
        IntrinsicOp::EnumerateInstanceNames { class_name } => {
            iparam_class(&mut out, "ClassName", Some(class_name));
        }
        IntrinsicOp::Associators {
            object_name,
            filter,
            options,
        }
        | IntrinsicOp::References {
            object_name,
            filter,
            options,
        } => {
            iparam_instance_name(&mut out, "ObjectName", object_name);
            iparam_filter(&mut out, filter);
            iparam_options(&mut out, options);
        }
        IntrinsicOp::AssociatorNames {
            object_name,
            filter,
        }
        | IntrinsicOp::ReferenceNames {
            object_name,
            filter,
        } => {
            iparam_instance_name(&mut out, "ObjectName", object_name);
            iparam_filter(&mut out, filter);
        }
    }
    out.push_str("</IMETHODCALL>");
    close(&mut out);
    out
}

/// Appends a `PARAMVALUE` (method parameters in requests, out parameters in
/// responses); `param_type` is written as `PARAMTYPE` when known.
pub(crate) fn write_param_value(
    out: &mut String,
    name: &str,
    value: &ParamValue,
    param_type: Option<&str>,
) {
    out.push_str("<PARAMVALUE");
    names::attr(out, "NAME", name);
    let param_type = match value {
        ParamValue::Reference(_) | ParamValue::ReferenceArray(_) => Some("reference"),
        _ => param_type,
    };
    if let Some(t) = param_type {
        names::attr(out, "PARAMTYPE", t);
    }
    out.push('>');
    match value {
        ParamValue::Null => {}
        ParamValue::Value(v) => {
            out.push_str("<VALUE>");
            names::escape_into(out, v, false);
            out.push_str("</VALUE>");
        }
        ParamValue::Array(items) => {
            out.push_str("<VALUE.ARRAY>");
            for v in items {
                out.push_str("<VALUE>");
                names::escape_into(out, v, false);
                out.push_str("</VALUE>");
            }
            out.push_str("</VALUE.ARRAY>");
        }
        ParamValue::Reference(p) => names::write_value_reference(out, p),
        ParamValue::ReferenceArray(items) => {
            out.push_str("<VALUE.REFARRAY>");
            for p in items {
                names::write_value_reference(out, p);
            }
            out.push_str("</VALUE.REFARRAY>");
        }
    }
    out.push_str("</PARAMVALUE>");
}

/// Encodes a `METHODCALL` message (with XML declaration): `method` on
/// `target` (an instance path, or a class path when it has no keys) in
/// `namespace` unless the target carries one.
pub fn encode_method_call(
    message_id: &str,
    namespace: &str,
    target: &ObjectPath,
    method: &str,
    params: &[(String, ParamValue)],
) -> String {
    let mut out = String::with_capacity(1024);
    open(&mut out, message_id);
    out.push_str("<METHODCALL");
    names::attr(&mut out, "NAME", method);
    out.push('>');
    let ns = target.namespace.as_deref().unwrap_or(namespace);
    if target.keys.is_empty() {
        names::write_local_class_path(&mut out, &target.class_name, ns);
    } else {
        names::write_local_instance_path(&mut out, target, ns);
    }
    for (name, value) in params {
        write_param_value(&mut out, name, value, None);
    }
    out.push_str("</METHODCALL>");
    close(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = r"root\virtualization\v2";

    fn intrinsic(body: &str, method: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8" ?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="{method}"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH>{body}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#
        )
    }

    fn op_of(req: &Request) -> &Result<IntrinsicOp, CimOpError> {
        match &req.call {
            Call::Intrinsic { op, .. } => op,
            Call::Extrinsic { .. } => panic!("expected an intrinsic call"),
        }
    }

    #[test]
    fn enumerate_instances_as_pywbem_sends_it_decodes() {
        let text = intrinsic(
            r#"<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="Msvm_ComputerSystem"/></IPARAMVALUE><IPARAMVALUE NAME="LocalOnly"><VALUE>FALSE</VALUE></IPARAMVALUE><IPARAMVALUE NAME="PropertyList"><VALUE.ARRAY><VALUE>Name</VALUE></VALUE.ARRAY></IPARAMVALUE>"#,
            "EnumerateInstances",
        );

        let req = parse_request(&text).expect("parse");

        assert_eq!(req.message_id, "1001");
        assert_eq!(req.method, "EnumerateInstances");
        let Call::Intrinsic { namespace, op } = &req.call else {
            panic!("intrinsic")
        };
        assert_eq!(namespace, NS);
        assert_eq!(
            op,
            &Ok(IntrinsicOp::EnumerateInstances {
                class_name: "Msvm_ComputerSystem".to_owned(),
                options: InstanceOptions {
                    local_only: Some(false),
                    property_list: Some(vec!["Name".to_owned()]),
                    ..InstanceOptions::default()
                }
            })
        );
    }

    #[test]
    fn encoded_intrinsic_calls_decode_to_the_same_operation() {
        let path = ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J\"1\\");
        let ops = [
            IntrinsicOp::GetInstance {
                instance_name: path.clone(),
                options: InstanceOptions {
                    include_class_origin: true,
                    ..InstanceOptions::default()
                },
            },
            IntrinsicOp::EnumerateInstanceNames {
                class_name: "CIM_ConcreteJob".to_owned(),
            },
            IntrinsicOp::Associators {
                object_name: path.clone(),
                filter: AssociationFilter {
                    assoc_class: Some("Msvm_AffectedJobElement".to_owned()),
                    result_class: Some("Msvm_VirtualSystemReferencePoint".to_owned()),
                    role: Some("AffectingElement".to_owned()),
                    result_role: Some("AffectedElement".to_owned()),
                },
                options: InstanceOptions::default(),
            },
            IntrinsicOp::ReferenceNames {
                object_name: path,
                filter: AssociationFilter {
                    result_class: Some("Msvm_AffectedJobElement".to_owned()),
                    ..AssociationFilter::default()
                },
            },
        ];
        for op in ops {
            let text = encode_intrinsic("7", NS, &op);

            let req = parse_request(&text).expect("parse");

            assert_eq!(op_of(&req), &Ok(op.clone()), "{text}");
        }
    }

    #[test]
    fn method_call_with_every_parameter_form_round_trips() {
        let mut target = ObjectPath::new("Msvm_VirtualSystemReferencePointService")
            .with_key(
                "CreationClassName",
                "Msvm_VirtualSystemReferencePointService",
            )
            .with_key("Name", "vsrps");
        target.namespace = Some(NS.to_owned());
        let rp = ObjectPath::new("Msvm_VirtualSystemReferencePoint")
            .with_key("InstanceID", r"Microsoft:A\B")
            .with_location("h", NS);
        let params = vec![
            ("ReferencePoint".to_owned(), ParamValue::Reference(rp.clone())),
            ("ExportDirectory".to_owned(), ParamValue::Value("/x <y>".to_owned())),
            (
                "ExportSettingData".to_owned(),
                ParamValue::Value(r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="P" TYPE="string"><VALUE>&amp;</VALUE></PROPERTY></INSTANCE>"#.to_owned()),
            ),
            ("Disks".to_owned(), ParamValue::Array(vec!["a".to_owned(), String::new()])),
            ("Refs".to_owned(), ParamValue::ReferenceArray(vec![rp])),
            ("Nothing".to_owned(), ParamValue::Null),
        ];

        let text = encode_method_call("9", NS, &target, "ExportReferencePoint", &params);
        let req = parse_request(&text).expect("parse");

        assert_eq!(req.method, "ExportReferencePoint");
        assert_eq!(
            req.call,
            Call::Extrinsic {
                target,
                target_is_class: false,
                params: Ok(params)
            }
        );
    }

    #[test]
    fn paramvalue_holding_an_instance_element_passes_its_cim_xml_text() {
        let text = r#"<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><METHODCALL NAME="M"><LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/></LOCALNAMESPACEPATH><CLASSNAME NAME="C"/></LOCALCLASSPATH><PARAMVALUE NAME="S" PARAMTYPE="string" EmbeddedObject="instance"><INSTANCE CLASSNAME="X"><PROPERTY NAME="A" TYPE="uint8"><VALUE>1</VALUE></PROPERTY></INSTANCE></PARAMVALUE></METHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;

        let req = parse_request(text).expect("parse");

        let Call::Extrinsic {
            params,
            target_is_class,
            ..
        } = req.call
        else {
            panic!("extrinsic")
        };
        assert!(target_is_class);
        assert_eq!(
            params,
            Ok(vec![(
                "S".to_owned(),
                ParamValue::Value(
                    r#"<INSTANCE CLASSNAME="X"><PROPERTY NAME="A" TYPE="uint8"><VALUE>1</VALUE></PROPERTY></INSTANCE>"#.to_owned()
                )
            )])
        );
    }

    #[test]
    fn value_not_of_its_paramtype_is_invalid_parameter_naming_it() {
        let text = r#"<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><METHODCALL NAME="RequestStateChange"><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/></LOCALNAMESPACEPATH><INSTANCENAME CLASSNAME="Msvm_ConcreteJob"><KEYBINDING NAME="InstanceID"><KEYVALUE>J</KEYVALUE></KEYBINDING></INSTANCENAME></LOCALINSTANCEPATH><PARAMVALUE NAME="RequestedState" PARAMTYPE="uint16"><VALUE>four</VALUE></PARAMVALUE></METHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;

        let req = parse_request(text).expect("parse");

        let Call::Extrinsic { params, .. } = req.call else {
            panic!("extrinsic")
        };
        let err = params.expect_err("bad uint16");
        assert_eq!(err.status, status::INVALID_PARAMETER);
        assert!(
            err.description.contains("RequestedState"),
            "{}",
            err.description
        );
    }

    #[test]
    fn reference_paramtype_with_a_bad_escape_is_invalid_parameter() {
        let text = r#"<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><METHODCALL NAME="M"><LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/></LOCALNAMESPACEPATH><CLASSNAME NAME="C"/></LOCALCLASSPATH><PARAMVALUE NAME="ReferencePoint" PARAMTYPE="reference"><VALUE>C.K="a\qb"</VALUE></PARAMVALUE></METHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;

        let Call::Extrinsic { params, .. } = parse_request(text).expect("parse").call else {
            panic!("extrinsic")
        };
        let err = params.expect_err("bad escape");

        assert_eq!(err.status, status::INVALID_PARAMETER);
        assert!(
            err.description.contains("ReferencePoint"),
            "{}",
            err.description
        );
    }

    #[test]
    fn unsupported_intrinsic_method_is_not_supported() {
        let text = intrinsic(
            r#"<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="C"/></IPARAMVALUE>"#,
            "OpenEnumerateInstances",
        );

        let req = parse_request(&text).expect("parse");

        assert!(matches!(op_of(&req), Err(e) if e.status == status::NOT_SUPPORTED));
    }

    #[test]
    fn unknown_or_repeated_iparamvalue_is_invalid_parameter() {
        let unknown = intrinsic(
            r#"<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="C"/></IPARAMVALUE><IPARAMVALUE NAME="Bogus"><VALUE>1</VALUE></IPARAMVALUE>"#,
            "EnumerateInstanceNames",
        );
        let repeated = intrinsic(
            r#"<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="C"/></IPARAMVALUE><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="D"/></IPARAMVALUE>"#,
            "EnumerateInstanceNames",
        );

        for text in [unknown, repeated] {
            let req = parse_request(&text).expect("parse");
            assert!(
                matches!(op_of(&req), Err(e) if e.status == status::INVALID_PARAMETER),
                "{:?}",
                op_of(&req)
            );
        }
    }

    #[test]
    fn missing_class_name_is_invalid_parameter_naming_it() {
        let req = parse_request(&intrinsic("", "EnumerateInstances")).expect("parse");

        assert!(
            matches!(op_of(&req), Err(e) if e.status == status::INVALID_PARAMETER && e.description.contains("ClassName"))
        );
    }

    #[test]
    fn class_level_associators_are_not_supported() {
        let text = intrinsic(
            r#"<IPARAMVALUE NAME="ObjectName"><CLASSNAME NAME="Msvm_ConcreteJob"/></IPARAMVALUE>"#,
            "Associators",
        );

        let req = parse_request(&text).expect("parse");

        assert!(matches!(op_of(&req), Err(e) if e.status == status::NOT_SUPPORTED));
    }

    #[test]
    fn non_boolean_flag_is_invalid_parameter() {
        let text = intrinsic(
            r#"<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="C"/></IPARAMVALUE><IPARAMVALUE NAME="IncludeQualifiers"><VALUE>yes</VALUE></IPARAMVALUE>"#,
            "EnumerateInstances",
        );

        let req = parse_request(&text).expect("parse");

        assert!(matches!(op_of(&req), Err(e) if e.description.contains("IncludeQualifiers")));
    }

    #[test]
    fn message_rules_map_to_their_cim_error_headers() {
        let cases = [
            ("<CIM", "request-not-well-formed"),
            (
                "<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ></SIMPLEREQ></MESSAGE>",
                "request-not-well-formed",
            ),
            ("<FOO/>", "request-not-valid"),
            (
                "<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ/></MESSAGE></CIM>",
                "request-not-valid",
            ),
            (
                "<CIM CIMVERSION=\"3.0\" DTDVERSION=\"2.0\"/>",
                "unsupported-cim-version",
            ),
            (
                "<CIM CIMVERSION=\"2.0\" DTDVERSION=\"1.1\"/>",
                "unsupported-dtd-version",
            ),
            (
                "<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"2.0\"/></CIM>",
                "unsupported-protocol-version",
            ),
            (
                "<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><MULTIREQ/></MESSAGE></CIM>",
                "multiple-requests-unsupported",
            ),
            (
                "<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"GetInstance\"><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME=\"InstanceName\"><INSTANCENAME CLASSNAME=\"C\"><KEYBINDING NAME=\"K\"><KEYVALUE>&bogus;</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>",
                "request-not-well-formed",
            ),
        ];
        for (text, header) in cases {
            let err = parse_request(text).expect_err(text);
            assert_eq!(err.cim_error_header(), header, "{text}: {err}");
        }
    }

    #[test]
    fn truncations_of_a_valid_request_never_panic() {
        let text = encode_method_call(
            "1",
            NS,
            &ObjectPath::new("C").with_key("K", "v"),
            "M",
            &[(
                "P".to_owned(),
                ParamValue::Reference(ObjectPath::new("D").with_key("K", "w")),
            )],
        );
        for end in 0..text.len() {
            if let Some(prefix) = text.get(..end) {
                let _ = parse_request(prefix);
            }
        }
    }
}
