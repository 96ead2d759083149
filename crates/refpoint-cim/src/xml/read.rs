//! Element tree → [`Instance`] following the DSP0201 content rules.

use super::XmlError;
use super::dom::Element;
use crate::error::CimError;
use crate::instance::{EMBEDDED_INSTANCE_QUALIFIERS, Instance, Property, Qualifier};
use crate::path::ObjectPath;
use crate::value::{CimType, CimValue, PropertyValue};

/// Attributes mapped onto `Property` fields; everything else is kept in `extra_attributes`.
const PROPERTY_KNOWN_ATTRS: [&str; 5] = [
    "NAME",
    "TYPE",
    "CLASSORIGIN",
    "PROPAGATED",
    "REFERENCECLASS",
];

/// Converts the root element (which must be `INSTANCE`).
pub(crate) fn instance(el: &Element) -> Result<Instance, CimError> {
    if el.name != "INSTANCE" {
        return Err(el.err(XmlError::UnexpectedRoot {
            found: el.name.clone(),
        }));
    }
    let mut inst = Instance::new(el.required("CLASSNAME")?);
    // Names seen so far, lower-cased: keeps the duplicate check linear.
    let mut seen = std::collections::HashSet::new();
    for child in el.elements()? {
        match child.name.as_str() {
            "QUALIFIER" => inst.qualifiers.push(qualifier(child)?),
            "PROPERTY" | "PROPERTY.ARRAY" | "PROPERTY.REFERENCE" => {
                let p = property(&inst.class_name, child)?;
                if !seen.insert(p.name.to_ascii_lowercase()) {
                    return Err(child.err(XmlError::DuplicateProperty { property: p.name }));
                }
                inst.properties.push(p);
            }
            _ => return Err(el.unexpected(child)),
        }
    }
    Ok(inst)
}

fn declared_type(el: &Element, name: &str) -> Result<CimType, CimError> {
    let t = el.required("TYPE")?;
    t.parse().map_err(|_| {
        el.err(XmlError::UnknownType {
            property: name.to_owned(),
            found: t.to_owned(),
        })
    })
}

fn bool_attr(el: &Element, attr: &str) -> Result<bool, CimError> {
    match el.attr(attr) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(el.err(XmlError::BadBooleanAttribute {
            element: el.name.clone(),
            attribute: attr.to_owned(),
            found: v.to_owned(),
        })),
    }
}

fn property(class: &str, el: &Element) -> Result<Property, CimError> {
    let name = el.required("NAME")?.to_owned();
    let (cim_type, is_array) = match el.name.as_str() {
        "PROPERTY.REFERENCE" => (CimType::Reference, false),
        "PROPERTY.ARRAY" => (declared_type(el, &name)?, true),
        _ => (declared_type(el, &name)?, false),
    };
    let mut p = Property::new(&name, cim_type, PropertyValue::Null);
    p.is_array = is_array;
    p.class_origin = el.attr("CLASSORIGIN").map(str::to_owned);
    p.propagated = bool_attr(el, "PROPAGATED")?;
    p.reference_class = el.attr("REFERENCECLASS").map(str::to_owned);
    p.extra_attributes = el
        .attrs
        .iter()
        .filter(|(k, _)| !PROPERTY_KNOWN_ATTRS.contains(&k.as_str()))
        .cloned()
        .collect();

    let mut value_seen = false;
    for child in el.elements()? {
        let allowed_value = match el.name.as_str() {
            "PROPERTY" => "VALUE",
            "PROPERTY.ARRAY" => "VALUE.ARRAY",
            _ => "VALUE.REFERENCE",
        };
        if child.name == "QUALIFIER" && !value_seen {
            p.qualifiers.push(qualifier(child)?);
        } else if child.name == allowed_value && !value_seen {
            value_seen = true;
            p.value = match child.name.as_str() {
                "VALUE" => PropertyValue::Scalar(scalar(class, &name, cim_type, child)?),
                "VALUE.ARRAY" => PropertyValue::Array(array(class, &name, cim_type, child)?),
                _ => PropertyValue::Scalar(CimValue::Reference(reference(child)?)),
            };
        } else {
            return Err(el.unexpected(child));
        }
    }
    p.embedded_instance = p
        .qualifiers
        .iter()
        .find(|q| {
            EMBEDDED_INSTANCE_QUALIFIERS
                .iter()
                .any(|n| q.name.eq_ignore_ascii_case(n))
        })
        .and_then(|q| match &q.value {
            PropertyValue::Scalar(CimValue::String(s)) => Some(s.clone()),
            _ => None,
        });
    Ok(p)
}

fn scalar(
    class: &str,
    property: &str,
    cim_type: CimType,
    el: &Element,
) -> Result<CimValue, CimError> {
    let text = el.text()?;
    CimValue::parse(cim_type, &text).map_err(|source| CimError::BadValue {
        class: class.to_owned(),
        property: property.to_owned(),
        source,
    })
}

fn array(
    class: &str,
    property: &str,
    cim_type: CimType,
    el: &Element,
) -> Result<Vec<Option<CimValue>>, CimError> {
    el.elements()?
        .map(|item| match item.name.as_str() {
            "VALUE" => scalar(class, property, cim_type, item).map(Some),
            "VALUE.NULL" => Ok(None),
            _ => Err(el.unexpected(item)),
        })
        .collect()
}

fn qualifier(el: &Element) -> Result<Qualifier, CimError> {
    let name = el.required("NAME")?.to_owned();
    let cim_type = declared_type(el, &name)?;
    let mut value = PropertyValue::Null;
    for child in el.elements()? {
        if !value.is_null() {
            return Err(el.unexpected(child));
        }
        value = match child.name.as_str() {
            "VALUE" => PropertyValue::Scalar(scalar("QUALIFIER", &name, cim_type, child)?),
            "VALUE.ARRAY" => PropertyValue::Array(array("QUALIFIER", &name, cim_type, child)?),
            _ => return Err(el.unexpected(child)),
        };
    }
    let attributes = el
        .attrs
        .iter()
        .filter(|(k, _)| k != "NAME" && k != "TYPE")
        .cloned()
        .collect();
    Ok(Qualifier {
        name,
        cim_type,
        value,
        attributes,
    })
}

/// `VALUE.REFERENCE` → object path. Also accepts a path written as text.
pub(crate) fn reference(el: &Element) -> Result<ObjectPath, CimError> {
    let mut children = el.children.iter().filter_map(|n| match n {
        super::dom::Node::Element(e) => Some(e),
        super::dom::Node::Text(_) => None,
    });
    let Some(inner) = children.next() else {
        let text = el.text()?;
        let text = text.trim();
        return text.parse().map_err(|e| CimError::path(text, None, e));
    };
    if let Some(extra) = children.next() {
        return Err(el.unexpected(extra));
    }
    // Rejects stray text next to the element.
    let _ = el.elements()?.count();
    match inner.name.as_str() {
        "INSTANCEPATH" => {
            let mut host = None;
            let mut namespace = None;
            let mut name = None;
            for c in inner.elements()? {
                match c.name.as_str() {
                    "NAMESPACEPATH" if host.is_none() => {
                        let (h, ns) = namespace_path(c)?;
                        host = Some(h);
                        namespace = Some(ns);
                    }
                    "INSTANCENAME" if name.is_none() && host.is_some() => {
                        name = Some(instance_name(c)?)
                    }
                    _ => return Err(inner.unexpected(c)),
                }
            }
            let mut path = name.ok_or_else(|| missing(inner, "INSTANCENAME"))?;
            path.server = host;
            path.namespace = namespace;
            Ok(path)
        }
        "LOCALINSTANCEPATH" => {
            let mut namespace = None;
            let mut name = None;
            for c in inner.elements()? {
                match c.name.as_str() {
                    "LOCALNAMESPACEPATH" if namespace.is_none() => {
                        namespace = Some(local_namespace(c)?)
                    }
                    "INSTANCENAME" if name.is_none() && namespace.is_some() => {
                        name = Some(instance_name(c)?)
                    }
                    _ => return Err(inner.unexpected(c)),
                }
            }
            let mut path = name.ok_or_else(|| missing(inner, "INSTANCENAME"))?;
            path.namespace = namespace;
            Ok(path)
        }
        "INSTANCENAME" => instance_name(inner),
        _ => Err(el.unexpected(inner)),
    }
}

fn missing(el: &Element, child: &'static str) -> CimError {
    el.err(XmlError::MissingElement {
        element: el.name.clone(),
        child,
    })
}

fn namespace_path(el: &Element) -> Result<(String, String), CimError> {
    let mut host = None;
    let mut ns = None;
    for c in el.elements()? {
        match c.name.as_str() {
            "HOST" if host.is_none() => host = Some(c.text()?.trim().to_owned()),
            "LOCALNAMESPACEPATH" if ns.is_none() && host.is_some() => {
                ns = Some(local_namespace(c)?)
            }
            _ => return Err(el.unexpected(c)),
        }
    }
    Ok((
        host.ok_or_else(|| missing(el, "HOST"))?,
        ns.ok_or_else(|| missing(el, "LOCALNAMESPACEPATH"))?,
    ))
}

fn local_namespace(el: &Element) -> Result<String, CimError> {
    let mut parts = Vec::new();
    for c in el.elements()? {
        if c.name != "NAMESPACE" {
            return Err(el.unexpected(c));
        }
        parts.push(c.required("NAME")?.to_owned());
    }
    if parts.is_empty() {
        return Err(missing(el, "NAMESPACE"));
    }
    Ok(parts.join("\\"))
}

fn instance_name(el: &Element) -> Result<ObjectPath, CimError> {
    let mut path = ObjectPath::new(el.required("CLASSNAME")?);
    for c in el.elements()? {
        match c.name.as_str() {
            "KEYBINDING" => {
                let name = c.required("NAME")?.to_owned();
                let mut value = None;
                for v in c.elements()? {
                    if value.is_some() {
                        return Err(c.unexpected(v));
                    }
                    value = Some(match v.name.as_str() {
                        "KEYVALUE" => v.text()?,
                        "VALUE.REFERENCE" => reference(v)?.to_string(),
                        _ => return Err(c.unexpected(v)),
                    });
                }
                let value = value.ok_or_else(|| missing(c, "KEYVALUE"))?;
                path.keys.push((name, value));
            }
            _ => return Err(el.unexpected(c)),
        }
    }
    Ok(path)
}
