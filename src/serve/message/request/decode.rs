//! Decoding a request body (service side): `CIM`/`MESSAGE`/`SIMPLEREQ`
//! version checks, `IMETHODCALL` with its `IPARAMVALUE`s, `METHODCALL` with
//! its target and `PARAMVALUE`s (rules in the parent module's docs).

use refpoint_cim::xml::{self, Element};
use refpoint_cim::{CimError, CimType, CimValue, ObjectPath};

use super::super::{MessageError, MessageRule};
use super::{AssociationFilter, Call, InstanceOptions, IntrinsicOp, Request};
use crate::serve::operations::{CimOpError, ParamValue, status};

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
    let root = xml::parse(text)?;
    let (message, message_id) = open_message(&root)?;
    let body = match message.elements()?.as_slice() {
        [one] if one.name == "SIMPLEREQ" => *one,
        [one] if one.name == "MULTIREQ" => return Err(MessageError::MultipleRequests),
        [one] => return Err(message.unexpected(one).into()),
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
        _ => return Err(body.unexpected(call_el).into()),
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

/// [`invalid_param`] for an element error, described as the message error
/// it would be (offset, rule, element).
fn param_element_error(name: &str) -> impl Fn(CimError) -> CimOpError + Copy + '_ {
    move |e| invalid_param(name, MessageError::from(e))
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
            Some(el) => xml::read_class_name(el)
                .map(Some)
                .map_err(param_element_error(name)),
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
            "INSTANCENAME" => xml::read_instance_name(el).map_err(param_element_error(name)),
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
                el.text().map(Some).map_err(param_element_error(name))
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
                for v in el.elements().map_err(param_element_error(name))? {
                    if v.name != "VALUE" {
                        return Err(invalid_param(name, format!("{} in VALUE.ARRAY", v.name)));
                    }
                    out.push(v.text().map_err(param_element_error(name))?);
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
    let namespace = xml::read_local_namespace(ns_el)?;
    let mut items: Vec<(String, Option<&Element>)> = Vec::new();
    let mut duplicate = None;
    for p in rest {
        if p.name != "IPARAMVALUE" {
            return Err(call.unexpected(p).into());
        }
        let name = p.required("NAME")?.to_owned();
        let value = match p.elements()?.as_slice() {
            [] => None,
            [v] => Some(*v),
            [_, extra, ..] => return Err(p.unexpected(extra).into()),
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
        "LOCALINSTANCEPATH" => (xml::read_local_instance_path(target_el)?, false),
        "LOCALCLASSPATH" => (xml::read_local_class_path(target_el)?, true),
        _ => return Err(call.unexpected(target_el).into()),
    };
    let mut params: Vec<(String, ParamValue)> = Vec::new();
    let mut failure = None;
    for p in rest {
        if p.name != "PARAMVALUE" {
            return Err(call.unexpected(p).into());
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
    let value = match p.elements().map_err(param_element_error(name))?.as_slice() {
        [] => return Ok(ParamValue::Null),
        [v] => *v,
        [_, extra, ..] => return Err(invalid_param(name, format!("unexpected {}", extra.name))),
    };
    let in_err = param_element_error(name);
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
        "VALUE.REFERENCE" => xml::read_reference(value)
            .map(ParamValue::Reference)
            .map_err(in_err),
        "VALUE.REFARRAY" => {
            let mut items = Vec::new();
            for item in value.elements().map_err(in_err)? {
                match item.name.as_str() {
                    "VALUE.REFERENCE" => items.push(xml::read_reference(item).map_err(in_err)?),
                    other => return Err(invalid_param(name, format!("{other} in VALUE.REFARRAY"))),
                }
            }
            Ok(ParamValue::ReferenceArray(items))
        }
        "INSTANCENAME" => xml::read_instance_name(value)
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
}
