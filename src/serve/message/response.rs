//! CIM operation responses (DSP0201 `SIMPLERSP`): encoding on the service
//! side, decoding on the client side.
//!
//! * `IMETHODRESPONSE` carries an `IRETURNVALUE` whose content depends on the
//!   operation: `VALUE.NAMEDINSTANCE*` (EnumerateInstances), `INSTANCENAME*`
//!   (EnumerateInstanceNames), one `INSTANCE` (GetInstance),
//!   `VALUE.OBJECTWITHPATH*` (Associators, References), `OBJECTPATH*`
//!   (AssociatorNames, ReferenceNames);
//! * `METHODRESPONSE` carries `RETURNVALUE PARAMTYPE="uint32"` and one
//!   `PARAMVALUE` per out parameter. References are `PARAMTYPE="reference"`;
//!   the type of other out parameters comes from [`out_param_type`];
//! * a failure is `<ERROR CODE="n" DESCRIPTION="…"/>` in place of the result,
//!   inside an HTTP 200 response (DSP0200 §5.3.3).

use refpoint_cim::xml::{self, Element};
use refpoint_cim::{Instance, ObjectPath};

use super::request::{open_message, write_param_value};
use super::{MessageError, MessageRule};
use crate::serve::operations::{CimOpError, MethodOutput, ParamValue};

/// The result of an intrinsic operation.
#[derive(Debug, Clone, PartialEq)]
pub enum IReturnValue {
    /// Empty `IRETURNVALUE` (an empty enumeration of any kind).
    Empty,
    /// `VALUE.NAMEDINSTANCE*`.
    NamedInstances(Vec<(ObjectPath, Instance)>),
    /// `INSTANCENAME*`.
    InstanceNames(Vec<ObjectPath>),
    /// One `INSTANCE`.
    Instance(Instance),
    /// `VALUE.OBJECTWITHPATH*` (paths carry host and namespace).
    ObjectsWithPath(Vec<(ObjectPath, Instance)>),
    /// `OBJECTPATH*`.
    ObjectPaths(Vec<ObjectPath>),
}

/// A decoded response body.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseBody {
    /// `IMETHODRESPONSE`.
    Intrinsic {
        /// `NAME`.
        method: String,
        /// Result or `ERROR`.
        result: Result<IReturnValue, CimOpError>,
    },
    /// `METHODRESPONSE`.
    Extrinsic {
        /// `NAME`.
        method: String,
        /// Result or `ERROR`.
        result: Result<MethodOutput, CimOpError>,
    },
}

/// A decoded `SIMPLERSP` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// `MESSAGE ID` (the request's).
    pub message_id: String,
    /// The body.
    pub body: ResponseBody,
}

/// Where paths without server or namespace are located in responses:
/// `HOST` and namespace of `INSTANCEPATH`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Host name.
    pub host: String,
    /// Namespace (`\` or `/` separators).
    pub namespace: String,
}

/// Name of the extra string out parameter carrying
/// [`MethodOutput::error`] (the message naming the parameter, property, file
/// or offset at fault) when `ReturnValue` is an error code. Hyper-V's
/// methods have no such out parameter; WBEM clients see one more out
/// parameter, refpoint's client reads it back into `MethodOutput::error`.
pub const ERROR_DESCRIPTION: &str = "ErrorDescription";

/// `PARAMTYPE` of a non-reference out parameter: `uint64` for
/// `GetVirtualDiskChanges`' `ProcessedByteLength`, `ChangedByteOffsets` and
/// `ChangedByteLengths` (Msvm_ImageManagementService MOF); `string` for every
/// other out parameter refpoint's methods have (`Errors`, `Error`, embedded
/// instances).
pub fn out_param_type(name: &str) -> &'static str {
    const UINT64: [&str; 3] = [
        "ProcessedByteLength",
        "ChangedByteOffsets",
        "ChangedByteLengths",
    ];
    if UINT64.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        "uint64"
    } else {
        "string"
    }
}

fn open(out: &mut String, message_id: &str) {
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE");
    xml::attr(out, "ID", message_id);
    out.push_str(" PROTOCOLVERSION=\"1.0\"><SIMPLERSP>");
}

fn close(out: &mut String) {
    out.push_str("</SIMPLERSP></MESSAGE></CIM>");
}

fn error(out: &mut String, e: &CimOpError) {
    out.push_str("<ERROR");
    xml::attr(out, "CODE", &e.status.to_string());
    xml::attr(out, "DESCRIPTION", &e.description);
    out.push_str("/>");
}

/// Encodes an `IMETHODRESPONSE` for `method`.
pub fn encode_intrinsic_response(
    message_id: &str,
    method: &str,
    result: &Result<IReturnValue, CimOpError>,
    location: &Location,
) -> String {
    let mut out = String::with_capacity(4096);
    open(&mut out, message_id);
    out.push_str("<IMETHODRESPONSE");
    xml::attr(&mut out, "NAME", method);
    out.push('>');
    match result {
        Err(e) => error(&mut out, e),
        Ok(value) => {
            out.push_str("<IRETURNVALUE>");
            match value {
                IReturnValue::Empty => {}
                IReturnValue::NamedInstances(items) => {
                    for (path, inst) in items {
                        out.push_str("<VALUE.NAMEDINSTANCE>");
                        xml::write_instance_name(&mut out, path);
                        out.push_str(&inst.to_xml());
                        out.push_str("</VALUE.NAMEDINSTANCE>");
                    }
                }
                IReturnValue::InstanceNames(paths) => {
                    for p in paths {
                        xml::write_instance_name(&mut out, p);
                    }
                }
                IReturnValue::Instance(inst) => out.push_str(&inst.to_xml()),
                IReturnValue::ObjectsWithPath(items) => {
                    for (path, inst) in items {
                        out.push_str("<VALUE.OBJECTWITHPATH>");
                        xml::write_instance_path(
                            &mut out,
                            path,
                            &location.host,
                            &location.namespace,
                        );
                        out.push_str(&inst.to_xml());
                        out.push_str("</VALUE.OBJECTWITHPATH>");
                    }
                }
                IReturnValue::ObjectPaths(paths) => {
                    for p in paths {
                        out.push_str("<OBJECTPATH>");
                        xml::write_instance_path(&mut out, p, &location.host, &location.namespace);
                        out.push_str("</OBJECTPATH>");
                    }
                }
            }
            out.push_str("</IRETURNVALUE>");
        }
    }
    out.push_str("</IMETHODRESPONSE>");
    close(&mut out);
    out
}

/// Encodes a `METHODRESPONSE` for `method`.
pub fn encode_method_response(
    message_id: &str,
    method: &str,
    result: &Result<MethodOutput, CimOpError>,
) -> String {
    let mut out = String::with_capacity(1024);
    open(&mut out, message_id);
    out.push_str("<METHODRESPONSE");
    xml::attr(&mut out, "NAME", method);
    out.push('>');
    match result {
        Err(e) => error(&mut out, e),
        Ok(output) => {
            out.push_str("<RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>");
            out.push_str(&output.return_value.to_string());
            out.push_str("</VALUE></RETURNVALUE>");
            for (name, value) in &output.out_params {
                write_param_value(&mut out, name, value, Some(out_param_type(name)));
            }
            if let Some(message) = &output.error
                && output.out(ERROR_DESCRIPTION).is_none()
            {
                write_param_value(
                    &mut out,
                    ERROR_DESCRIPTION,
                    &ParamValue::Value(message.clone()),
                    Some("string"),
                );
            }
        }
    }
    out.push_str("</METHODRESPONSE>");
    close(&mut out);
    out
}

// ---- decoding (client side) -------------------------------------------------

fn read_error(el: &Element) -> Result<CimOpError, MessageError> {
    let code = el.required("CODE")?;
    let status = code
        .trim()
        .parse::<u16>()
        .map_err(|_| el.invalid(format!("ERROR CODE {code:?} is not a number")))?;
    Ok(CimOpError {
        status,
        description: el.attr("DESCRIPTION").unwrap_or_default().to_owned(),
    })
}

fn read_instance(text: &str, el: &Element) -> Result<Instance, MessageError> {
    let source = el
        .source(text)
        .ok_or_else(|| el.invalid("INSTANCE span out of range"))?;
    Instance::from_xml(source).map_err(|e| el.invalid(format!("INSTANCE: {e}")))
}

fn pair<'a>(el: &'a Element, first: &str) -> Result<(&'a Element, &'a Element), MessageError> {
    match el.elements()?.as_slice() {
        [a, b] if a.name == first && b.name == "INSTANCE" => Ok((*a, *b)),
        _ => Err(el.invalid(format!("{} must hold {first} and INSTANCE", el.name))),
    }
}

/// `VALUE.NAMEDINSTANCE`/`VALUE.OBJECTWITHPATH` items: each a path element
/// named `first`, read with `read_path`, and an `INSTANCE`.
fn read_pairs(
    text: &str,
    items: &[&Element],
    first: &str,
    read_path: fn(&Element) -> Result<ObjectPath, refpoint_cim::CimError>,
) -> Result<Vec<(ObjectPath, Instance)>, MessageError> {
    items
        .iter()
        .map(|e| {
            let (path, inst) = pair(e, first)?;
            Ok((read_path(path)?, read_instance(text, inst)?))
        })
        .collect()
}

fn read_ireturn(text: &str, el: &Element) -> Result<IReturnValue, MessageError> {
    let items = el.elements()?;
    let Some(first) = items.first() else {
        return Ok(IReturnValue::Empty);
    };
    let kind = first.name.clone();
    if let Some(other) = items.iter().find(|e| e.name != kind) {
        return Err(el.unexpected(other).into());
    }
    Ok(match kind.as_str() {
        "VALUE.NAMEDINSTANCE" => IReturnValue::NamedInstances(read_pairs(
            text,
            &items,
            "INSTANCENAME",
            xml::read_instance_name,
        )?),
        "VALUE.OBJECTWITHPATH" => IReturnValue::ObjectsWithPath(read_pairs(
            text,
            &items,
            "INSTANCEPATH",
            xml::read_instance_path,
        )?),
        "INSTANCENAME" => IReturnValue::InstanceNames(
            items
                .iter()
                .map(|e| xml::read_instance_name(e))
                .collect::<Result<_, _>>()?,
        ),
        "OBJECTPATH" => IReturnValue::ObjectPaths(
            items
                .iter()
                .map(|e| xml::read_object_path(e))
                .collect::<Result<_, _>>()?,
        ),
        "INSTANCE" if items.len() == 1 => IReturnValue::Instance(read_instance(text, first)?),
        _ => return Err(el.unexpected(first).into()),
    })
}

fn read_out_param(el: &Element) -> Result<ParamValue, MessageError> {
    let value = match el.elements()?.as_slice() {
        [] => return Ok(ParamValue::Null),
        [v] => *v,
        [_, extra, ..] => return Err(el.unexpected(extra).into()),
    };
    let param = match value.name.as_str() {
        "VALUE" => ParamValue::Value(value.text()?),
        "VALUE.ARRAY" => ParamValue::Array(
            value
                .elements()?
                .iter()
                .map(|v| {
                    if v.name == "VALUE" {
                        v.text()
                    } else {
                        Err(value.unexpected(v))
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        "VALUE.REFERENCE" => ParamValue::Reference(xml::read_reference(value)?),
        "VALUE.REFARRAY" => ParamValue::ReferenceArray(
            value
                .elements()?
                .iter()
                .map(|v| xml::read_reference(v))
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(el.unexpected(value).into()),
    };
    Ok(param)
}

fn read_method_result(el: &Element) -> Result<Result<MethodOutput, CimOpError>, MessageError> {
    let children = el.elements()?;
    if let [only] = children.as_slice()
        && only.name == "ERROR"
    {
        return Ok(Err(read_error(only)?));
    }
    let mut return_value = None;
    let mut out_params = Vec::new();
    for c in children {
        match c.name.as_str() {
            "RETURNVALUE" if return_value.is_none() && out_params.is_empty() => {
                let text = c.only_child("VALUE")?.text()?;
                return_value = Some(
                    text.trim()
                        .parse::<u32>()
                        .map_err(|_| c.invalid(format!("RETURNVALUE {text:?} is not a uint32")))?,
                );
            }
            "PARAMVALUE" => out_params.push((c.required("NAME")?.to_owned(), read_out_param(c)?)),
            _ => return Err(el.unexpected(c).into()),
        }
    }
    let return_value =
        return_value.ok_or_else(|| el.invalid("METHODRESPONSE lacks RETURNVALUE"))?;
    let error = match out_params
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(ERROR_DESCRIPTION))
    {
        Some(i) => match out_params.remove(i).1 {
            ParamValue::Value(text) => Some(text),
            _ => None,
        },
        None => None,
    };
    Ok(Ok(MethodOutput {
        return_value,
        out_params,
        error,
    }))
}

/// Decodes a response body.
///
/// # Errors
/// [`MessageError`] when the body is not a well-formed, valid `SIMPLERSP`.
pub fn parse_response(text: &str) -> Result<Response, MessageError> {
    let root = xml::parse(text)?;
    let (message, message_id) = open_message(&root)?;
    let rsp = message.only_child("SIMPLERSP")?;
    let body_el = match rsp.elements()?.as_slice() {
        [one] => *one,
        _ => return Err(rsp.invalid("SIMPLERSP must hold one response")),
    };
    let method = body_el.required("NAME")?.to_owned();
    let body = match body_el.name.as_str() {
        "IMETHODRESPONSE" => {
            let result = match body_el.elements()?.as_slice() {
                [] => Ok(IReturnValue::Empty),
                [one] if one.name == "ERROR" => Err(read_error(one)?),
                [one] if one.name == "IRETURNVALUE" => Ok(read_ireturn(text, one)?),
                [one, ..] => return Err(body_el.unexpected(one).into()),
            };
            ResponseBody::Intrinsic { method, result }
        }
        "METHODRESPONSE" => ResponseBody::Extrinsic {
            method,
            result: read_method_result(body_el)?,
        },
        _ => return Err(rsp.unexpected(body_el).into()),
    };
    Ok(Response { message_id, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> Location {
        Location {
            host: "hv1".to_owned(),
            namespace: r"root\virtualization\v2".to_owned(),
        }
    }

    fn sample_instance() -> Instance {
        Instance::new("Msvm_ConcreteJob")
            .with("InstanceID", "J1")
            .with("JobState", 7u16)
            .with("ErrorDescription", "a <b> & \"c\"")
    }

    #[test]
    fn every_intrinsic_result_kind_round_trips() {
        let path = ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J1");
        let located = path.clone().with_location("hv1", r"root\virtualization\v2");
        let cases = [
            IReturnValue::Empty,
            IReturnValue::NamedInstances(vec![(path.clone(), sample_instance())]),
            IReturnValue::InstanceNames(vec![path.clone(), path.clone()]),
            IReturnValue::Instance(sample_instance()),
            IReturnValue::ObjectsWithPath(vec![(located.clone(), sample_instance())]),
            IReturnValue::ObjectPaths(vec![located]),
        ];
        for value in cases {
            let text = encode_intrinsic_response("5", "X", &Ok(value.clone()), &location());

            let back = parse_response(&text).expect("parse");

            assert_eq!(back.message_id, "5");
            assert_eq!(
                back.body,
                ResponseBody::Intrinsic {
                    method: "X".to_owned(),
                    result: Ok(value)
                },
                "{text}"
            );
        }
    }

    #[test]
    fn relative_paths_get_the_service_location_in_objects_with_path() {
        let path = ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J1");
        let text = encode_intrinsic_response(
            "1",
            "References",
            &Ok(IReturnValue::ObjectsWithPath(vec![(
                path.clone(),
                sample_instance(),
            )])),
            &location(),
        );

        let ResponseBody::Intrinsic { result, .. } = parse_response(&text).expect("parse").body
        else {
            panic!("intrinsic")
        };

        let Ok(IReturnValue::ObjectsWithPath(items)) = result else {
            panic!("objects")
        };
        assert_eq!(
            items.first().map(|(p, _)| p.clone()),
            Some(path.with_location("hv1", r"root\virtualization\v2"))
        );
    }

    #[test]
    fn method_response_round_trips_with_typed_out_params() {
        let job = ObjectPath::new("Msvm_ConcreteJob")
            .with_key("InstanceID", "J1")
            .with_location("hv1", r"root\virtualization\v2");
        let output = MethodOutput {
            return_value: 4096,
            out_params: vec![
                ("Job".to_owned(), ParamValue::Reference(job)),
                (
                    "ChangedByteOffsets".to_owned(),
                    ParamValue::Array(vec!["0".to_owned()]),
                ),
                (
                    "Errors".to_owned(),
                    ParamValue::Array(vec![sample_instance().to_xml()]),
                ),
                ("ResultingSnapshot".to_owned(), ParamValue::Null),
            ],
            error: None,
        };

        let text = encode_method_response("3", "ExportReferencePoint", &Ok(output.clone()));

        assert!(text.contains(r#"<RETURNVALUE PARAMTYPE="uint32"><VALUE>4096</VALUE>"#));
        assert!(text.contains(r#"<PARAMVALUE NAME="ChangedByteOffsets" PARAMTYPE="uint64">"#));
        assert!(text.contains(r#"<PARAMVALUE NAME="Job" PARAMTYPE="reference">"#));
        assert_eq!(
            parse_response(&text).expect("parse").body,
            ResponseBody::Extrinsic {
                method: "ExportReferencePoint".to_owned(),
                result: Ok(output)
            }
        );
    }

    #[test]
    fn method_error_message_travels_as_error_description_out_param() {
        let output = MethodOutput {
            return_value: 32773,
            out_params: Vec::new(),
            error: Some("ExportDirectory \"rel\" is not absolute".to_owned()),
        };

        let text = encode_method_response("3", "ExportReferencePoint", &Ok(output.clone()));

        assert!(text.contains(r#"<PARAMVALUE NAME="ErrorDescription" PARAMTYPE="string">"#));
        assert_eq!(
            parse_response(&text).expect("parse").body,
            ResponseBody::Extrinsic {
                method: "ExportReferencePoint".to_owned(),
                result: Ok(output)
            }
        );
    }

    #[test]
    fn errors_round_trip_with_code_and_description() {
        let err = CimOpError::new(6, "no Msvm_ConcreteJob with InstanceID \"x\"");

        let i = encode_intrinsic_response("1", "GetInstance", &Err(err.clone()), &location());
        let m = encode_method_response("1", "RequestStateChange", &Err(err.clone()));

        assert!(i.contains(
            r#"<ERROR CODE="6" DESCRIPTION="no Msvm_ConcreteJob with InstanceID &quot;x&quot;"/>"#
        ));
        assert!(
            matches!(parse_response(&i).expect("i").body, ResponseBody::Intrinsic { result: Err(ref e), .. } if *e == err)
        );
        assert!(
            matches!(parse_response(&m).expect("m").body, ResponseBody::Extrinsic { result: Err(ref e), .. } if *e == err)
        );
    }

    #[test]
    fn mixed_ireturnvalue_content_is_not_valid() {
        let text = r#"<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLERSP><IMETHODRESPONSE NAME="X"><IRETURNVALUE><INSTANCENAME CLASSNAME="A"/><OBJECTPATH/></IRETURNVALUE></IMETHODRESPONSE></SIMPLERSP></MESSAGE></CIM>"#;

        assert!(matches!(
            parse_response(text),
            Err(MessageError::NotValid { .. })
        ));
    }
}
