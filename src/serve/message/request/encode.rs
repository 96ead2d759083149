//! Encoding a request (client side): `IMETHODCALL` and `METHODCALL`
//! messages with the XML declaration, as pywbem writes them.

use refpoint_cim::ObjectPath;
use refpoint_cim::xml;

use super::{AssociationFilter, InstanceOptions, IntrinsicOp};
use crate::serve::operations::ParamValue;

fn open(out: &mut String, message_id: &str) {
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE");
    xml::attr(out, "ID", message_id);
    out.push_str(" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ>");
}

fn close(out: &mut String) {
    out.push_str("</SIMPLEREQ></MESSAGE></CIM>");
}

fn iparam_class(out: &mut String, name: &str, class: Option<&str>) {
    if let Some(c) = class {
        out.push_str("<IPARAMVALUE");
        xml::attr(out, "NAME", name);
        out.push('>');
        xml::write_class_name(out, c);
        out.push_str("</IPARAMVALUE>");
    }
}

fn iparam_text(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        out.push_str("<IPARAMVALUE");
        xml::attr(out, "NAME", name);
        out.push_str("><VALUE>");
        xml::escape_into(out, v, false);
        out.push_str("</VALUE></IPARAMVALUE>");
    }
}

fn iparam_instance_name(out: &mut String, name: &str, path: &ObjectPath) {
    out.push_str("<IPARAMVALUE");
    xml::attr(out, "NAME", name);
    out.push('>');
    xml::write_instance_name(out, path);
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
            xml::escape_into(out, p, false);
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
    xml::attr(&mut out, "NAME", op.method_name());
    out.push('>');
    xml::write_local_namespace(&mut out, namespace);
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
    xml::attr(out, "NAME", name);
    let param_type = match value {
        ParamValue::Reference(_) | ParamValue::ReferenceArray(_) => Some("reference"),
        _ => param_type,
    };
    if let Some(t) = param_type {
        xml::attr(out, "PARAMTYPE", t);
    }
    out.push('>');
    match value {
        ParamValue::Null => {}
        ParamValue::Value(v) => {
            out.push_str("<VALUE>");
            xml::escape_into(out, v, false);
            out.push_str("</VALUE>");
        }
        ParamValue::Array(items) => {
            out.push_str("<VALUE.ARRAY>");
            for v in items {
                out.push_str("<VALUE>");
                xml::escape_into(out, v, false);
                out.push_str("</VALUE>");
            }
            out.push_str("</VALUE.ARRAY>");
        }
        ParamValue::Reference(p) => xml::write_reference(out, p),
        ParamValue::ReferenceArray(items) => {
            out.push_str("<VALUE.REFARRAY>");
            for p in items {
                xml::write_reference(out, p);
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
    xml::attr(&mut out, "NAME", method);
    out.push('>');
    let ns = target.namespace.as_deref().unwrap_or(namespace);
    if target.keys.is_empty() {
        xml::write_local_class_path(&mut out, &target.class_name, ns);
    } else {
        xml::write_local_instance_path(&mut out, target, ns);
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
    use crate::serve::message::request::{Call, parse_request};
    use crate::serve::operations::CimOpError;

    const NS: &str = r"root\virtualization\v2";

    fn op_of(req: &super::super::Request) -> &Result<IntrinsicOp, CimOpError> {
        match &req.call {
            Call::Intrinsic { op, .. } => op,
            Call::Extrinsic { .. } => panic!("expected an intrinsic call"),
        }
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
