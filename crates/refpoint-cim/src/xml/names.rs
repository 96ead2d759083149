//! Object paths in CIM-XML (DSP0201 §3.2.5 "naming and location
//! elements"): reading and writing `LOCALNAMESPACEPATH`, `NAMESPACEPATH`,
//! `CLASSNAME`, `LOCALCLASSPATH`, `CLASSPATH`, `INSTANCENAME` with
//! `KEYBINDING`/`KEYVALUE`/`VALUE.REFERENCE`, `LOCALINSTANCEPATH`,
//! `INSTANCEPATH`, `VALUE.REFERENCE` and `OBJECTPATH`, onto [`ObjectPath`].
//!
//! Namespaces are kept with `\` separators, as [`ObjectPath`] does; on the
//! wire each segment is one `NAMESPACE NAME`. Key values are strings; a key
//! bound to a `VALUE.REFERENCE` (association keys) is kept as the
//! reference's path text. Keys are written with `VALUETYPE="string"`. A class
//! path reads as an [`ObjectPath`] without keys.

use super::XmlError;
use super::dom::{Element, Node};
use super::escape::{attr, escape_into};
use crate::error::CimError;
use crate::path::ObjectPath;

// ---- reading -------------------------------------------------------------

fn expect_name(el: &Element, expected: &'static str) -> Result<(), CimError> {
    if el.name == expected {
        Ok(())
    } else {
        Err(el.err(XmlError::WrongElement {
            expected,
            found: el.name.clone(),
        }))
    }
}

/// The two children of `el`, which must be `first` then `second`.
fn two_children<'a>(
    el: &'a Element,
    first: &'static str,
    second: &'static str,
) -> Result<(&'a Element, &'a Element), CimError> {
    let children = el.elements()?;
    let expected = [first, second];
    for (i, c) in children.iter().enumerate() {
        if expected.get(i) != Some(&c.name.as_str()) {
            return Err(el.unexpected(c));
        }
    }
    match children.as_slice() {
        [a, b] => Ok((a, b)),
        [_] => Err(el.missing(second)),
        _ => Err(el.missing(first)),
    }
}

/// `LOCALNAMESPACEPATH` → namespace with `\` separators (`root\virtualization\v2`).
///
/// # Errors
/// [`CimError::Xml`]: a child other than `NAMESPACE`
/// ([`XmlError::UnexpectedElement`]), a `NAMESPACE` without `NAME`, or none
/// at all ([`XmlError::MissingElement`]).
pub fn read_local_namespace(el: &Element) -> Result<String, CimError> {
    let mut parts = Vec::new();
    for c in el.elements()? {
        if c.name != "NAMESPACE" {
            return Err(el.unexpected(c));
        }
        parts.push(c.required("NAME")?.to_owned());
    }
    if parts.is_empty() {
        return Err(el.missing("NAMESPACE"));
    }
    Ok(parts.join("\\"))
}

/// `NAMESPACEPATH` (`HOST`, `LOCALNAMESPACEPATH`) → (host, namespace).
///
/// # Errors
/// [`CimError::Xml`] for children other than those two in that order.
pub fn read_namespace_path(el: &Element) -> Result<(String, String), CimError> {
    let (host, local) = two_children(el, "HOST", "LOCALNAMESPACEPATH")?;
    Ok((host.text()?.trim().to_owned(), read_local_namespace(local)?))
}

/// `CLASSNAME NAME=…` → the class name.
///
/// # Errors
/// [`XmlError::WrongElement`] for another element, a missing or empty `NAME`.
pub fn read_class_name(el: &Element) -> Result<String, CimError> {
    expect_name(el, "CLASSNAME")?;
    let name = el.required("NAME")?;
    if name.is_empty() {
        return Err(el.err(XmlError::EmptyAttribute {
            element: el.name.clone(),
            attribute: "NAME",
        }));
    }
    Ok(name.to_owned())
}

/// `INSTANCENAME` → relative path (no server, no namespace). Each
/// `KEYBINDING` holds one `KEYVALUE` or `VALUE.REFERENCE`.
///
/// # Errors
/// [`XmlError::WrongElement`] for another element; a missing `CLASSNAME` or
/// key `NAME`; a child other than `KEYBINDING` (DSP0201's lone
/// `KEYVALUE`/`VALUE.REFERENCE` for one unnamed key is not supported: no
/// class refpoint models has one); a binding with no or two values; a key
/// bound twice, names compared case-insensitively
/// ([`XmlError::DuplicateKey`]).
pub fn read_instance_name(el: &Element) -> Result<ObjectPath, CimError> {
    expect_name(el, "INSTANCENAME")?;
    let mut path = ObjectPath::new(el.required("CLASSNAME")?);
    for c in el.elements()? {
        if c.name != "KEYBINDING" {
            return Err(el.unexpected(c));
        }
        let name = c.required("NAME")?.to_owned();
        let value = match c.elements()?.as_slice() {
            [v] if v.name == "KEYVALUE" => v.text()?,
            [v] if v.name == "VALUE.REFERENCE" => read_reference(v)?.to_string(),
            [] => return Err(c.missing("KEYVALUE")),
            [v] => return Err(c.unexpected(v)),
            [_, extra, ..] => return Err(c.unexpected(extra)),
        };
        if path.key(&name).is_some() {
            return Err(c.err(XmlError::DuplicateKey { key: name }));
        }
        path.keys.push((name, value));
    }
    Ok(path)
}

/// `LOCALINSTANCEPATH` (`LOCALNAMESPACEPATH`, `INSTANCENAME`) → path with namespace.
///
/// # Errors
/// [`CimError::Xml`] for other children or the rules of the two readers.
pub fn read_local_instance_path(el: &Element) -> Result<ObjectPath, CimError> {
    let (ns, name) = two_children(el, "LOCALNAMESPACEPATH", "INSTANCENAME")?;
    let namespace = read_local_namespace(ns)?;
    let mut path = read_instance_name(name)?;
    path.namespace = Some(namespace);
    Ok(path)
}

/// `INSTANCEPATH` (`NAMESPACEPATH`, `INSTANCENAME`) → path with server and namespace.
///
/// # Errors
/// [`CimError::Xml`] for other children or the rules of the two readers.
pub fn read_instance_path(el: &Element) -> Result<ObjectPath, CimError> {
    let (ns, name) = two_children(el, "NAMESPACEPATH", "INSTANCENAME")?;
    let (host, namespace) = read_namespace_path(ns)?;
    let mut path = read_instance_name(name)?;
    path.server = Some(host);
    path.namespace = Some(namespace);
    Ok(path)
}

/// `LOCALCLASSPATH` (`LOCALNAMESPACEPATH`, `CLASSNAME`) → class path (no
/// keys) with namespace.
///
/// # Errors
/// [`CimError::Xml`] for other children or the rules of the two readers.
pub fn read_local_class_path(el: &Element) -> Result<ObjectPath, CimError> {
    let (ns, class) = two_children(el, "LOCALNAMESPACEPATH", "CLASSNAME")?;
    let namespace = read_local_namespace(ns)?;
    let mut path = ObjectPath::new(&read_class_name(class)?);
    path.namespace = Some(namespace);
    Ok(path)
}

/// `CLASSPATH` (`NAMESPACEPATH`, `CLASSNAME`) → class path with server and namespace.
///
/// # Errors
/// [`CimError::Xml`] for other children or the rules of the two readers.
pub fn read_class_path(el: &Element) -> Result<ObjectPath, CimError> {
    let (ns, class) = two_children(el, "NAMESPACEPATH", "CLASSNAME")?;
    let (host, namespace) = read_namespace_path(ns)?;
    let mut path = ObjectPath::new(&read_class_name(class)?);
    path.server = Some(host);
    path.namespace = Some(namespace);
    Ok(path)
}

/// `VALUE.REFERENCE` → path. Accepts its six DSP0201 forms (`INSTANCEPATH`,
/// `LOCALINSTANCEPATH`, `INSTANCENAME`, `CLASSPATH`, `LOCALCLASSPATH`,
/// `CLASSNAME`) and, as some WMI producers write it, a path as text
/// (`\\host\root\virtualization\v2:Class.Key="v"`).
///
/// # Errors
/// [`CimError::Xml`] for another element, two elements or text beside an
/// element; [`CimError::Path`] for path text that does not parse, its
/// context naming `VALUE.REFERENCE` and its byte offset.
pub fn read_reference(el: &Element) -> Result<ObjectPath, CimError> {
    let has_element = el.children.iter().any(|n| matches!(n, Node::Element(_)));
    let children = if has_element {
        el.elements()?
    } else {
        Vec::new()
    };
    let inner = match children.as_slice() {
        [] => {
            let text = el.text()?;
            let text = text.trim();
            return text.parse().map_err(|e| {
                CimError::path(text, Some(format!("{} at byte {}", el.name, el.start)), e)
            });
        }
        [one] => *one,
        [_, extra, ..] => return Err(el.unexpected(extra)),
    };
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

/// `OBJECTPATH` (one `INSTANCEPATH` or `CLASSPATH`) → path.
///
/// # Errors
/// [`CimError::Xml`] for no child, another or a second child, or the rules
/// of the path readers.
pub fn read_object_path(el: &Element) -> Result<ObjectPath, CimError> {
    let inner = match el.elements()?.as_slice() {
        [one] => *one,
        [] => return Err(el.missing("INSTANCEPATH")),
        [_, extra, ..] => return Err(el.unexpected(extra)),
    };
    match inner.name.as_str() {
        "INSTANCEPATH" => read_instance_path(inner),
        "CLASSPATH" => read_class_path(inner),
        _ => Err(el.unexpected(inner)),
    }
}

// ---- writing -------------------------------------------------------------

/// Appends `<LOCALNAMESPACEPATH><NAMESPACE NAME=…/>…</LOCALNAMESPACEPATH>`,
/// one `NAMESPACE` per segment of `ns` (`\` or `/` separators).
pub fn write_local_namespace(out: &mut String, ns: &str) {
    out.push_str("<LOCALNAMESPACEPATH>");
    for part in ns.split(['\\', '/']).filter(|s| !s.is_empty()) {
        out.push_str("<NAMESPACE");
        attr(out, "NAME", part);
        out.push_str("/>");
    }
    out.push_str("</LOCALNAMESPACEPATH>");
}

/// Appends `<CLASSNAME NAME=…/>`.
pub fn write_class_name(out: &mut String, class: &str) {
    out.push_str("<CLASSNAME");
    attr(out, "NAME", class);
    out.push_str("/>");
}

/// Appends `<INSTANCENAME CLASSNAME=…>` with one
/// `<KEYBINDING NAME=…><KEYVALUE VALUETYPE="string">…` per key of `p`
/// (server and namespace are not written).
pub fn write_instance_name(out: &mut String, p: &ObjectPath) {
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

/// Appends `<LOCALINSTANCEPATH>` with `p`'s namespace, or `default_ns`
/// when it has none.
pub fn write_local_instance_path(out: &mut String, p: &ObjectPath, default_ns: &str) {
    out.push_str("<LOCALINSTANCEPATH>");
    write_local_namespace(out, p.namespace.as_deref().unwrap_or(default_ns));
    write_instance_name(out, p);
    out.push_str("</LOCALINSTANCEPATH>");
}

/// Appends `<LOCALCLASSPATH>` of class `class` in namespace `ns`.
pub fn write_local_class_path(out: &mut String, class: &str, ns: &str) {
    out.push_str("<LOCALCLASSPATH>");
    write_local_namespace(out, ns);
    write_class_name(out, class);
    out.push_str("</LOCALCLASSPATH>");
}

/// Appends `<INSTANCEPATH>` with `p`'s server and namespace, or
/// `default_host` / `default_ns` where it has none.
pub fn write_instance_path(out: &mut String, p: &ObjectPath, default_host: &str, default_ns: &str) {
    out.push_str("<INSTANCEPATH><NAMESPACEPATH><HOST>");
    escape_into(out, p.server.as_deref().unwrap_or(default_host), false);
    out.push_str("</HOST>");
    write_local_namespace(out, p.namespace.as_deref().unwrap_or(default_ns));
    out.push_str("</NAMESPACEPATH>");
    write_instance_name(out, p);
    out.push_str("</INSTANCEPATH>");
}

/// Appends `<VALUE.REFERENCE>`: `INSTANCEPATH` when `p` has server and
/// namespace, `LOCALINSTANCEPATH` when it has a namespace only,
/// `INSTANCENAME` otherwise.
pub fn write_reference(out: &mut String, p: &ObjectPath) {
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
    use crate::xml::dom::parse;

    fn round_trip(p: &ObjectPath) -> ObjectPath {
        let mut s = String::new();
        write_reference(&mut s, p);
        read_reference(&parse(&s).expect("parse")).expect("read")
    }

    fn rule(result: Result<ObjectPath, CimError>) -> XmlError {
        match result {
            Err(CimError::Xml { source, .. }) => source,
            other => panic!("expected an XML error, got {other:?}"),
        }
    }

    #[test]
    fn instance_path_with_escaped_key_round_trips() {
        let p = ObjectPath::new("Msvm_VirtualSystemReferencePoint")
            .with_key("InstanceID", r#"Microsoft:A\B "q" <&>"#)
            .with_location("host1", r"root\virtualization\v2");

        assert_eq!(round_trip(&p), p);
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
    fn slash_separated_namespace_is_written_as_segments() {
        let mut out = String::new();

        write_local_namespace(&mut out, "root/virtualization/v2");

        assert_eq!(
            read_local_namespace(&parse(&out).expect("parse")).expect("read"),
            r"root\virtualization\v2"
        );
    }

    #[test]
    fn class_paths_read_as_paths_without_keys() {
        let mut local = String::new();
        write_local_class_path(&mut local, "Msvm_ConcreteJob", r"root\v2");
        let reference = format!("<VALUE.REFERENCE>{local}</VALUE.REFERENCE>");
        let object_path = r#"<OBJECTPATH><CLASSPATH><NAMESPACEPATH><HOST>h</HOST><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/></LOCALNAMESPACEPATH></NAMESPACEPATH><CLASSNAME NAME="C"/></CLASSPATH></OBJECTPATH>"#;

        let from_reference = read_reference(&parse(&reference).expect("parse")).expect("read");
        let from_object_path = read_object_path(&parse(object_path).expect("parse")).expect("read");

        let mut expected = ObjectPath::new("Msvm_ConcreteJob");
        expected.namespace = Some(r"root\v2".to_owned());
        assert_eq!(from_reference, expected);
        assert_eq!(
            from_object_path,
            ObjectPath::new("C").with_location("h", "root")
        );
    }

    #[test]
    fn reference_as_path_text_is_read() {
        let xml = r#"<VALUE.REFERENCE> Msvm_ConcreteJob.InstanceID="J1" </VALUE.REFERENCE>"#;

        let p = read_reference(&parse(xml).expect("parse")).expect("read");

        assert_eq!(
            p,
            ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J1")
        );
    }

    #[test]
    fn reference_text_that_is_no_path_names_element_and_offset() {
        let xml = r#"<A><VALUE.REFERENCE>C.K="a\q"</VALUE.REFERENCE></A>"#;
        let root = parse(xml).expect("parse");
        let el = root.only_child("VALUE.REFERENCE").expect("child");

        let err = read_reference(el).expect_err("bad escape");

        assert!(
            matches!(&err, CimError::Path { context: Some(c), .. } if c == "VALUE.REFERENCE at byte 3"),
            "{err:?}"
        );
    }

    #[test]
    fn keybinding_bound_to_a_reference_keeps_the_path_text() {
        let xml = r#"<INSTANCENAME CLASSNAME="Msvm_AffectedJobElement"><KEYBINDING NAME="AffectingElement"><VALUE.REFERENCE><INSTANCENAME CLASSNAME="Msvm_ConcreteJob"><KEYBINDING NAME="InstanceID"><KEYVALUE>J1</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></KEYBINDING></INSTANCENAME>"#;

        let p = read_instance_name(&parse(xml).expect("parse")).expect("read");

        assert_eq!(
            p.key("AffectingElement"),
            Some(r#"Msvm_ConcreteJob.InstanceID="J1""#)
        );
    }

    #[test]
    fn key_bound_twice_is_duplicate_key() {
        let xml = r#"<INSTANCENAME CLASSNAME="C"><KEYBINDING NAME="K"><KEYVALUE>1</KEYVALUE></KEYBINDING><KEYBINDING NAME="k"><KEYVALUE>2</KEYVALUE></KEYBINDING></INSTANCENAME>"#;

        assert_eq!(
            rule(read_instance_name(&parse(xml).expect("parse"))),
            XmlError::DuplicateKey { key: "k".into() }
        );
    }

    #[test]
    fn keybinding_without_value_lacks_keyvalue() {
        let xml = r#"<INSTANCENAME CLASSNAME="C"><KEYBINDING NAME="K"/></INSTANCENAME>"#;

        assert_eq!(
            rule(read_instance_name(&parse(xml).expect("parse"))),
            XmlError::MissingElement {
                element: "KEYBINDING".into(),
                child: "KEYVALUE"
            }
        );
    }

    #[test]
    fn keybinding_with_two_values_is_unexpected_element() {
        let xml = r#"<INSTANCENAME CLASSNAME="C"><KEYBINDING NAME="K"><KEYVALUE>1</KEYVALUE><KEYVALUE>2</KEYVALUE></KEYBINDING></INSTANCENAME>"#;

        assert_eq!(
            rule(read_instance_name(&parse(xml).expect("parse"))),
            XmlError::UnexpectedElement {
                element: "KEYVALUE".into(),
                parent: "KEYBINDING".into()
            }
        );
    }

    #[test]
    fn other_element_than_instancename_is_wrong_element() {
        assert_eq!(
            rule(read_instance_name(
                &parse(r#"<CLASSNAME NAME="C"/>"#).expect("parse")
            )),
            XmlError::WrongElement {
                expected: "INSTANCENAME",
                found: "CLASSNAME".into()
            }
        );
    }

    #[test]
    fn empty_class_name_is_empty_attribute() {
        assert_eq!(
            rule(
                read_class_name(&parse(r#"<CLASSNAME NAME=""/>"#).expect("parse"))
                    .map(|c| ObjectPath::new(&c))
            ),
            XmlError::EmptyAttribute {
                element: "CLASSNAME".into(),
                attribute: "NAME"
            }
        );
    }

    #[test]
    fn empty_local_namespace_lacks_namespace() {
        let result = read_local_namespace(&parse("<LOCALNAMESPACEPATH/>").expect("parse"));

        assert!(matches!(
            result,
            Err(CimError::Xml {
                source: XmlError::MissingElement {
                    child: "NAMESPACE",
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn instance_path_children_out_of_order_are_unexpected() {
        let xml = r#"<INSTANCEPATH><INSTANCENAME CLASSNAME="C"/><NAMESPACEPATH/></INSTANCEPATH>"#;

        assert_eq!(
            rule(read_instance_path(&parse(xml).expect("parse"))),
            XmlError::UnexpectedElement {
                element: "INSTANCENAME".into(),
                parent: "INSTANCEPATH".into()
            }
        );
    }

    #[test]
    fn local_instance_path_without_instancename_lacks_it() {
        let xml = r#"<LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/></LOCALNAMESPACEPATH></LOCALINSTANCEPATH>"#;

        assert_eq!(
            rule(read_local_instance_path(&parse(xml).expect("parse"))),
            XmlError::MissingElement {
                element: "LOCALINSTANCEPATH".into(),
                child: "INSTANCENAME"
            }
        );
    }

    #[test]
    fn empty_object_path_lacks_a_path() {
        assert_eq!(
            rule(read_object_path(&parse("<OBJECTPATH/>").expect("parse"))),
            XmlError::MissingElement {
                element: "OBJECTPATH".into(),
                child: "INSTANCEPATH"
            }
        );
    }

    #[test]
    fn two_paths_in_a_reference_are_unexpected() {
        let xml = r#"<VALUE.REFERENCE><INSTANCENAME CLASSNAME="A"/><INSTANCENAME CLASSNAME="B"/></VALUE.REFERENCE>"#;

        assert!(matches!(
            rule(read_reference(&parse(xml).expect("parse"))),
            XmlError::UnexpectedElement { .. }
        ));
    }
}
