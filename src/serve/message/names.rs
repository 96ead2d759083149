//! Object paths in CIM-XML (DSP0201 §3.2.5): reading and writing
//! `LOCALNAMESPACEPATH`, `NAMESPACEPATH`, `CLASSNAME`, `LOCALCLASSPATH`,
//! `INSTANCENAME` with `KEYBINDING`/`KEYVALUE`/`VALUE.REFERENCE`,
//! `LOCALINSTANCEPATH`, `INSTANCEPATH`, `VALUE.REFERENCE` and `OBJECTPATH`,
//! onto refpoint-cim's [`ObjectPath`].
//!
//! Namespaces are kept with `\` separators, as [`ObjectPath`] does; on the
//! wire each segment is a `NAMESPACE NAME`. Key values are strings; a key
//! bound to a `VALUE.REFERENCE` (association keys) is kept as the reference's
//! path text. Keys are written with `VALUETYPE="string"`.

use std::fmt::Write as _;

use refpoint_cim::ObjectPath;

use super::dom::Element;
use super::error::MessageError;

/// Appends `text` XML-escaped (attribute-safe when `attribute`).
pub(crate) fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' | '\t' if !attribute => out.push(c),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Appends ` NAME="value"`.
pub(crate) fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value, true);
    out.push('"');
}

/// Normalised namespace for comparisons: lower case, `/` separators, no
/// leading or trailing separator (`root\Virtualization\v2` → `root/virtualization/v2`).
pub fn normalize_namespace(ns: &str) -> String {
    ns.replace('\\', "/").trim_matches('/').to_ascii_lowercase()
}

// ---- reading -------------------------------------------------------------

/// `LOCALNAMESPACEPATH` → `root\virtualization\v2`.
pub(crate) fn read_local_namespace(el: &Element) -> Result<String, MessageError> {
    let mut parts = Vec::new();
    for c in el.elements()? {
        if c.name != "NAMESPACE" {
            return Err(el.unexpected(c));
        }
        parts.push(c.required("NAME")?.to_owned());
    }
    if parts.is_empty() {
        return Err(el.invalid("LOCALNAMESPACEPATH holds no NAMESPACE"));
    }
    Ok(parts.join("\\"))
}

/// `NAMESPACEPATH` → (host, namespace).
fn read_namespace_path(el: &Element) -> Result<(String, String), MessageError> {
    match el.elements()?.as_slice() {
        [host, local] if host.name == "HOST" && local.name == "LOCALNAMESPACEPATH" => {
            Ok((host.text()?.trim().to_owned(), read_local_namespace(local)?))
        }
        _ => Err(el.invalid("NAMESPACEPATH must hold HOST and LOCALNAMESPACEPATH")),
    }
}

/// `CLASSNAME NAME=…` → the name.
pub(crate) fn read_class_name(el: &Element) -> Result<String, MessageError> {
    if el.name != "CLASSNAME" {
        return Err(el.invalid(format!("expected CLASSNAME, found {}", el.name)));
    }
    let name = el.required("NAME")?;
    if name.is_empty() {
        return Err(el.invalid("CLASSNAME has an empty NAME"));
    }
    Ok(name.to_owned())
}

/// `INSTANCENAME` → relative path (no server, no namespace).
pub(crate) fn read_instance_name(el: &Element) -> Result<ObjectPath, MessageError> {
    if el.name != "INSTANCENAME" {
        return Err(el.invalid(format!("expected INSTANCENAME, found {}", el.name)));
    }
    let mut path = ObjectPath::new(el.required("CLASSNAME")?);
    for c in el.elements()? {
        if c.name != "KEYBINDING" {
            // DSP0201 also allows a lone KEYVALUE/VALUE.REFERENCE for a
            // single unnamed key; no class refpoint serves has one.
            return Err(el.unexpected(c));
        }
        let name = c.required("NAME")?.to_owned();
        let value = match c.elements()?.as_slice() {
            [v] if v.name == "KEYVALUE" => v.text()?,
            [v] if v.name == "VALUE.REFERENCE" => read_value_reference(v)?.to_string(),
            [v, ..] => return Err(c.unexpected(v)),
            [] => return Err(c.invalid(format!("KEYBINDING {name} holds no KEYVALUE"))),
        };
        if path.key(&name).is_some() {
            return Err(c.invalid(format!("key {name} is bound twice")));
        }
        path.keys.push((name, value));
    }
    Ok(path)
}

/// `LOCALINSTANCEPATH` → path with namespace.
pub(crate) fn read_local_instance_path(el: &Element) -> Result<ObjectPath, MessageError> {
    match el.elements()?.as_slice() {
        [ns, name] if ns.name == "LOCALNAMESPACEPATH" => {
            let mut path = read_instance_name(name)?;
            path.namespace = Some(read_local_namespace(ns)?);
            Ok(path)
        }
        _ => Err(el.invalid("LOCALINSTANCEPATH must hold LOCALNAMESPACEPATH and INSTANCENAME")),
    }
}

/// `INSTANCEPATH` → path with server and namespace.
pub(crate) fn read_instance_path(el: &Element) -> Result<ObjectPath, MessageError> {
    match el.elements()?.as_slice() {
        [ns, name] if ns.name == "NAMESPACEPATH" => {
            let (host, namespace) = read_namespace_path(ns)?;
            let mut path = read_instance_name(name)?;
            path.server = Some(host);
            path.namespace = Some(namespace);
            Ok(path)
        }
        _ => Err(el.invalid("INSTANCEPATH must hold NAMESPACEPATH and INSTANCENAME")),
    }
}

/// `LOCALCLASSPATH` → class path (no keys) with namespace.
pub(crate) fn read_local_class_path(el: &Element) -> Result<ObjectPath, MessageError> {
    match el.elements()?.as_slice() {
        [ns, class] if ns.name == "LOCALNAMESPACEPATH" => {
            let mut path = ObjectPath::new(&read_class_name(class)?);
            path.namespace = Some(read_local_namespace(ns)?);
            Ok(path)
        }
        _ => Err(el.invalid("LOCALCLASSPATH must hold LOCALNAMESPACEPATH and CLASSNAME")),
    }
}

/// `CLASSPATH` → class path with server and namespace.
fn read_class_path(el: &Element) -> Result<ObjectPath, MessageError> {
    match el.elements()?.as_slice() {
        [ns, class] if ns.name == "NAMESPACEPATH" => {
            let (host, namespace) = read_namespace_path(ns)?;
            let mut path = ObjectPath::new(&read_class_name(class)?);
            path.server = Some(host);
            path.namespace = Some(namespace);
            Ok(path)
        }
        _ => Err(el.invalid("CLASSPATH must hold NAMESPACEPATH and CLASSNAME")),
    }
}

/// `VALUE.REFERENCE` (any of its six path forms) → path.
pub(crate) fn read_value_reference(el: &Element) -> Result<ObjectPath, MessageError> {
    let inner = el
        .elements()?
        .into_iter()
        .next()
        .ok_or_else(|| el.invalid("VALUE.REFERENCE holds no path"))?;
    if el.elements()?.len() > 1 {
        return Err(el.invalid("VALUE.REFERENCE holds more than one path"));
    }
    match inner.name.as_str() {
        "INSTANCEPATH" => read_instance_path(inner),
        "LOCALINSTANCEPATH" => read_local_instance_path(inner),
        "INSTANCENAME" => read_instance_name(inner),
        "CLASSPATH" => read_class_path(inner),
        "LOCALCLASSPATH" => read_local_class_path(inner),
        "CLASSNAME" => Ok(ObjectPath::new(&read_class_name(inner)?)),
        _ => Err(el.unexpected(inner)),
    }
}

/// `OBJECTPATH` (`INSTANCEPATH` or `CLASSPATH`) → path.
pub(crate) fn read_object_path(el: &Element) -> Result<ObjectPath, MessageError> {
    let inner = match el.elements()?.as_slice() {
        [one] => *one,
        _ => return Err(el.invalid("OBJECTPATH must hold one path")),
    };
    match inner.name.as_str() {
        "INSTANCEPATH" => read_instance_path(inner),
        "CLASSPATH" => read_class_path(inner),
        _ => Err(el.unexpected(inner)),
    }
}

// ---- writing -------------------------------------------------------------

/// `<LOCALNAMESPACEPATH><NAMESPACE NAME=…/>…</LOCALNAMESPACEPATH>`.
pub(crate) fn write_local_namespace(out: &mut String, ns: &str) {
    out.push_str("<LOCALNAMESPACEPATH>");
    for part in ns.split(['\\', '/']).filter(|s| !s.is_empty()) {
        out.push_str("<NAMESPACE");
        attr(out, "NAME", part);
        out.push_str("/>");
    }
    out.push_str("</LOCALNAMESPACEPATH>");
}

/// `<CLASSNAME NAME=…/>`.
pub(crate) fn write_class_name(out: &mut String, class: &str) {
    out.push_str("<CLASSNAME");
    attr(out, "NAME", class);
    out.push_str("/>");
}

/// `<INSTANCENAME CLASSNAME=…><KEYBINDING NAME=…><KEYVALUE VALUETYPE="string">…`.
pub(crate) fn write_instance_name(out: &mut String, p: &ObjectPath) {
    out.push_str("<INSTANCENAME");
    attr(out, "CLASSNAME", &p.class_name);
    out.push('>');
    for (k, v) in &p.keys {
        out.push_str("<KEYBINDING");
        attr(out, "NAME", k);
        out.push_str("><KEYVALUE VALUETYPE=\"string\">");
        escape_into(out, v, false);
        out.push_str("</KEYVALUE></KEYBINDING>");
    }
    out.push_str("</INSTANCENAME>");
}

/// `<LOCALINSTANCEPATH>` with `p`'s namespace, or `default_ns` when it has none.
pub(crate) fn write_local_instance_path(out: &mut String, p: &ObjectPath, default_ns: &str) {
    out.push_str("<LOCALINSTANCEPATH>");
    write_local_namespace(out, p.namespace.as_deref().unwrap_or(default_ns));
    write_instance_name(out, p);
    out.push_str("</LOCALINSTANCEPATH>");
}

/// `<LOCALCLASSPATH>` of class `class` in namespace `ns`.
pub(crate) fn write_local_class_path(out: &mut String, class: &str, ns: &str) {
    out.push_str("<LOCALCLASSPATH>");
    write_local_namespace(out, ns);
    write_class_name(out, class);
    out.push_str("</LOCALCLASSPATH>");
}

/// `<INSTANCEPATH>` with `p`'s server and namespace, or the defaults.
pub(crate) fn write_instance_path(
    out: &mut String,
    p: &ObjectPath,
    default_host: &str,
    default_ns: &str,
) {
    out.push_str("<INSTANCEPATH><NAMESPACEPATH><HOST>");
    escape_into(out, p.server.as_deref().unwrap_or(default_host), false);
    out.push_str("</HOST>");
    write_local_namespace(out, p.namespace.as_deref().unwrap_or(default_ns));
    out.push_str("</NAMESPACEPATH>");
    write_instance_name(out, p);
    out.push_str("</INSTANCEPATH>");
}

/// `<VALUE.REFERENCE>`: `INSTANCEPATH` when `p` has server and namespace,
/// `LOCALINSTANCEPATH` when it has a namespace, `INSTANCENAME` otherwise.
pub(crate) fn write_value_reference(out: &mut String, p: &ObjectPath) {
    out.push_str("<VALUE.REFERENCE>");
    match (&p.server, &p.namespace) {
        (Some(host), Some(ns)) => write_instance_path(out, p, host, ns),
        (None, Some(ns)) => write_local_instance_path(out, p, ns),
        _ => write_instance_name(out, p),
    }
    out.push_str("</VALUE.REFERENCE>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::message::dom;

    fn round_trip(p: &ObjectPath) -> ObjectPath {
        let mut s = String::new();
        write_value_reference(&mut s, p);
        read_value_reference(&dom::parse(&s).expect("parse")).expect("read")
    }

    #[test]
    fn instance_path_with_escaped_key_round_trips() {
        let p = ObjectPath::new("Msvm_VirtualSystemReferencePoint")
            .with_key("InstanceID", r#"Microsoft:A\B "q" <&>"#)
            .with_location("host1", r"root\virtualization\v2");

        let back = round_trip(&p);

        assert_eq!(back, p);
    }

    #[test]
    fn local_and_relative_paths_round_trip() {
        let mut local = ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J1");
        local.namespace = Some(r"root\virtualization\v2".to_owned());
        let relative = ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J1");

        assert_eq!(round_trip(&local), local);
        assert_eq!(round_trip(&relative), relative);
    }

    #[test]
    fn keybinding_bound_to_a_reference_keeps_the_path_text() {
        let xml = r#"<INSTANCENAME CLASSNAME="Msvm_AffectedJobElement"><KEYBINDING NAME="AffectingElement"><VALUE.REFERENCE><INSTANCENAME CLASSNAME="Msvm_ConcreteJob"><KEYBINDING NAME="InstanceID"><KEYVALUE>J1</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></KEYBINDING></INSTANCENAME>"#;

        let p = read_instance_name(&dom::parse(xml).expect("parse")).expect("read");

        assert_eq!(
            p.key("AffectingElement"),
            Some(r#"Msvm_ConcreteJob.InstanceID="J1""#)
        );
    }

    #[test]
    fn duplicate_key_binding_is_not_valid() {
        let xml = r#"<INSTANCENAME CLASSNAME="C"><KEYBINDING NAME="K"><KEYVALUE>1</KEYVALUE></KEYBINDING><KEYBINDING NAME="k"><KEYVALUE>2</KEYVALUE></KEYBINDING></INSTANCENAME>"#;

        let err = read_instance_name(&dom::parse(xml).expect("parse")).expect_err("duplicate");

        assert!(
            matches!(err, MessageError::NotValid { ref detail, .. } if detail.contains("bound twice"))
        );
    }

    #[test]
    fn empty_local_namespace_is_not_valid() {
        let err = read_local_namespace(&dom::parse("<LOCALNAMESPACEPATH/>").expect("parse"))
            .expect_err("empty");

        assert!(matches!(err, MessageError::NotValid { .. }));
    }

    #[test]
    fn namespace_normalisation_ignores_separators_and_case() {
        assert_eq!(
            normalize_namespace(r"\Root\Virtualization\V2"),
            normalize_namespace("root/virtualization/v2/")
        );
    }
}
