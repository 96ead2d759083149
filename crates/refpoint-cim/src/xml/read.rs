//! Element tree → [`Instance`] following the DSP0201 content rules.

use super::XmlError;
use super::dom::Element;
use super::names::read_reference;
use crate::error::CimError;
use crate::instance::{EMBEDDED_INSTANCE_QUALIFIERS, Instance, Property, Qualifier};
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
                _ => PropertyValue::Scalar(CimValue::Reference(read_reference(child)?)),
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
        .into_iter()
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
