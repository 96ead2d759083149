//! [`Instance`] → minimal DSP0201 CIM-XML.
//!
//! Output shape (no XML declaration, no whitespace between elements):
//! `<INSTANCE CLASSNAME="C"><PROPERTY NAME="N" TYPE="string"><VALUE>v</VALUE></PROPERTY>…</INSTANCE>`.
//! NULL is an element without `VALUE`; the empty string is `<VALUE></VALUE>`;
//! booleans are `TRUE`/`FALSE`; embedded instances are escaped text; a property
//! with [`Property::embedded_instance`] set and no such qualifier gets an
//! `EmbeddedInstance` qualifier. Characters XML would normalise away (`\r`,
//! `\t`/`\n` in attributes) are written as character references so text
//! round-trips exactly. Other C0 controls (U+0001..U+001F) are also written as
//! character references: refpoint's reader accepts them (as XML 1.1 does), but
//! strict XML 1.0 parsers reject such documents and U+0000 cannot be written
//! at all (the reader rejects `&#0;`). Text meant for other tools, such as
//! [`MsvmError`](crate::MsvmError) messages, replaces them with visible `\xNN`.

use super::escape::{attr, escape_into};
use super::names::write_reference;
use crate::instance::{EMBEDDED_INSTANCE_QUALIFIERS, Instance, Property, Qualifier};
use crate::value::{CimType, CimValue, PropertyValue};

/// Serialises `inst` in the minimal form described in the module docs.
pub(crate) fn instance(inst: &Instance) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<INSTANCE");
    attr(&mut out, "CLASSNAME", &inst.class_name);
    out.push('>');
    for q in &inst.qualifiers {
        qualifier(&mut out, q);
    }
    for p in &inst.properties {
        property(&mut out, p);
    }
    out.push_str("</INSTANCE>");
    out
}

fn qualifier(out: &mut String, q: &Qualifier) {
    out.push_str("<QUALIFIER");
    attr(out, "NAME", &q.name);
    attr(out, "TYPE", q.cim_type.as_str());
    for (k, v) in &q.attributes {
        attr(out, k, v);
    }
    out.push('>');
    value(out, &q.value);
    out.push_str("</QUALIFIER>");
}

fn property(out: &mut String, p: &Property) {
    let element = if p.cim_type == CimType::Reference && !p.is_array {
        "PROPERTY.REFERENCE"
    } else if p.is_array {
        "PROPERTY.ARRAY"
    } else {
        "PROPERTY"
    };
    out.push('<');
    out.push_str(element);
    attr(out, "NAME", &p.name);
    if element != "PROPERTY.REFERENCE" {
        attr(out, "TYPE", p.cim_type.as_str());
    }
    if let Some(rc) = &p.reference_class {
        attr(out, "REFERENCECLASS", rc);
    }
    if let Some(co) = &p.class_origin {
        attr(out, "CLASSORIGIN", co);
    }
    if p.propagated {
        attr(out, "PROPAGATED", "true");
    }
    for (k, v) in &p.extra_attributes {
        attr(out, k, v);
    }
    out.push('>');
    if let Some(class) = &p.embedded_instance {
        let declared = p.qualifiers.iter().any(|q| {
            EMBEDDED_INSTANCE_QUALIFIERS
                .iter()
                .any(|n| q.name.eq_ignore_ascii_case(n))
        });
        if !declared {
            qualifier(
                out,
                &Qualifier {
                    name: "EmbeddedInstance".to_owned(),
                    cim_type: CimType::String,
                    value: PropertyValue::Scalar(CimValue::String(class.clone())),
                    attributes: Vec::new(),
                },
            );
        }
    }
    for q in &p.qualifiers {
        qualifier(out, q);
    }
    match (&p.value, p.is_array) {
        (PropertyValue::Scalar(v), false) => scalar(out, v),
        (PropertyValue::Array(items), _) => array(out, items),
        // A scalar stored in an array property is written as a one-element array.
        (PropertyValue::Scalar(v), true) => array(out, std::slice::from_ref(&Some(v.clone()))),
        (PropertyValue::Null, _) => {}
    }
    out.push_str("</");
    out.push_str(element);
    out.push('>');
}

fn value(out: &mut String, v: &PropertyValue) {
    match v {
        PropertyValue::Null => {}
        PropertyValue::Scalar(v) => scalar(out, v),
        PropertyValue::Array(items) => array(out, items),
    }
}

fn scalar(out: &mut String, v: &CimValue) {
    if let CimValue::Reference(p) = v {
        write_reference(out, p);
        return;
    }
    out.push_str("<VALUE>");
    escape_into(out, &v.to_text(), false);
    out.push_str("</VALUE>");
}

fn array(out: &mut String, items: &[Option<CimValue>]) {
    out.push_str("<VALUE.ARRAY>");
    for item in items {
        match item {
            // DSP0201 has no VALUE.REFERENCE inside VALUE.ARRAY (that is
            // VALUE.REFARRAY); reference arrays are written as path text.
            Some(CimValue::Reference(p)) => {
                out.push_str("<VALUE>");
                escape_into(out, &p.to_string(), false);
                out.push_str("</VALUE>");
            }
            Some(v) => scalar(out, v),
            None => out.push_str("<VALUE.NULL/>"),
        }
    }
    out.push_str("</VALUE.ARRAY>");
}
