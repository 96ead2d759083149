//! DSP0201 CIM-XML: instances, object paths, and the element tree both are
//! read from.
//!
//! Reading is two steps: [`parse`] turns text into a small element tree
//! ([`Element`], [`Node`]) with quick-xml's event reader (entities resolved,
//! whitespace-only text between elements ignored, depth bounded, byte spans
//! kept); then [`Instance::from_xml`] maps an `INSTANCE` onto [`Instance`]
//! with the DTD's content rules and the declared CIM types, and the `read_*`
//! functions map the naming elements (`INSTANCENAME`, `VALUE.REFERENCE`,
//! `INSTANCEPATH`, …) onto [`ObjectPath`](crate::ObjectPath). Writing is the
//! minimal form: [`Instance::to_xml`], the `write_*` functions for paths, and
//! [`escape_into`]/[`attr`] for text and attributes.
//!
//! The tree and the path readers/writers are public so that a DSP0200
//! message codec (refpoint's host service and its client) reads and writes
//! the same elements with the same rules; message-level elements (`CIM`,
//! `MESSAGE`, `SIMPLEREQ`, `IMETHODCALL`, …) are that codec's business.
//!
//! Errors are [`CimError::Xml`] with the byte offset of the offending
//! element and the [`XmlError`] rule, except path text that does not parse
//! ([`CimError::Path`]) and values that do not parse as their declared type
//! ([`CimError::BadValue`]).

mod dom;
mod escape;
mod names;
mod read;
mod write;

pub use dom::{Element, MAX_DEPTH, Node, parse};
pub use escape::{attr, escape_into};
pub use names::{
    read_class_name, read_class_path, read_instance_name, read_instance_path,
    read_local_class_path, read_local_instance_path, read_local_namespace, read_namespace_path,
    read_object_path, read_reference, write_class_name, write_instance_name, write_instance_path,
    write_local_class_path, write_local_instance_path, write_local_namespace, write_reference,
};

/// A CIM-XML document rule that was broken. The byte offset is carried by
/// [`CimError::Xml`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML (quick-xml's diagnosis).
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    /// An entity reference other than the five predefined ones or a character reference.
    #[error("unknown or invalid entity reference &{0};")]
    Entity(String),
    /// The document holds no element.
    #[error("document holds no element")]
    NoElement,
    /// The root element is not `INSTANCE`.
    #[error("root element is {found}, expected INSTANCE")]
    UnexpectedRoot {
        /// Root element found.
        found: String,
    },
    /// Content after the root element.
    #[error("content after the root element")]
    TrailingContent,
    /// The document ends inside an element.
    #[error("document ends inside element {element}")]
    Unclosed {
        /// Innermost open element.
        element: String,
    },
    /// Elements nested deeper than the limit.
    #[error("elements nested deeper than {max}")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// An element not allowed in its parent by DSP0201.
    #[error("element {element} is not allowed in {parent}")]
    UnexpectedElement {
        /// The element.
        element: String,
        /// Its parent.
        parent: String,
    },
    /// Non-whitespace text in an element that allows only elements.
    #[error("text is not allowed in {element}")]
    UnexpectedText {
        /// The element.
        element: String,
    },
    /// A required attribute is missing.
    #[error("element {element} lacks attribute {attribute}")]
    MissingAttribute {
        /// The element.
        element: String,
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute appears twice.
    #[error("element {element} repeats attribute {attribute}")]
    DuplicateAttribute {
        /// The element.
        element: String,
        /// The attribute.
        attribute: String,
    },
    /// A required child element is missing.
    #[error("element {element} lacks child {child}")]
    MissingElement {
        /// The element.
        element: String,
        /// The child required.
        child: &'static str,
    },
    /// `TYPE` names no CIM type.
    #[error("property {property} declares unknown TYPE {found:?}")]
    UnknownType {
        /// Property or qualifier name.
        property: String,
        /// The `TYPE` text.
        found: String,
    },
    /// The same property name appears twice in one instance.
    #[error("property {property} appears twice")]
    DuplicateProperty {
        /// The property name.
        property: String,
    },
    /// A `PROPAGATED` or similar boolean attribute is neither `true` nor `false`.
    #[error("attribute {attribute} of {element} must be true or false, found {found:?}")]
    BadBooleanAttribute {
        /// The element.
        element: String,
        /// The attribute.
        attribute: String,
        /// The text found.
        found: String,
    },
    /// Non-whitespace text before the root element.
    #[error("text outside the root element")]
    TextOutsideRoot,
    /// A naming element was expected and another one found (e.g. a
    /// `CLASSNAME` where an `INSTANCENAME` is required).
    #[error("expected {expected}, found {found}")]
    WrongElement {
        /// The element required.
        expected: &'static str,
        /// The element found.
        found: String,
    },
    /// An attribute that must not be empty is empty (`CLASSNAME NAME=""`).
    #[error("element {element} has an empty {attribute}")]
    EmptyAttribute {
        /// The element.
        element: String,
        /// The attribute.
        attribute: &'static str,
    },
    /// Two `KEYBINDING`s of one `INSTANCENAME` name the same key (names
    /// compare case-insensitively, as in object path text).
    #[error("key {key} is bound twice")]
    DuplicateKey {
        /// The key name of the second binding.
        key: String,
    },
}

impl XmlError {
    /// True for the rules of XML itself rather than of DSP0201's content
    /// model: not well-formed text, an unknown entity, a repeated
    /// attribute, no or more than one root, text outside the root, an
    /// unclosed element, and nesting beyond [`MAX_DEPTH`] (a parser limit
    /// reported with them). A DSP0200 service answers these with
    /// `request-not-well-formed`, the others with `request-not-valid`.
    pub fn is_well_formedness(&self) -> bool {
        matches!(
            self,
            XmlError::Syntax(_)
                | XmlError::Entity(_)
                | XmlError::NoElement
                | XmlError::TrailingContent
                | XmlError::TextOutsideRoot
                | XmlError::Unclosed { .. }
                | XmlError::TooDeep { .. }
                | XmlError::DuplicateAttribute { .. }
        )
    }
}

use crate::error::CimError;
use crate::instance::Instance;

impl Instance {
    /// The instance as minimal DSP0201 CIM-XML (`<INSTANCE CLASSNAME=…>…</INSTANCE>`,
    /// no declaration): no whitespace between elements, NULL as an element
    /// without `VALUE`, booleans `TRUE`/`FALSE`, embedded instances as
    /// escaped text with an `EmbeddedInstance` qualifier, C0 controls as
    /// character references.
    pub fn to_xml(&self) -> String {
        write::instance(self)
    }

    /// [`Instance::to_xml`] preceded by `<?xml version="1.0" encoding="utf-8"?>`.
    pub fn to_xml_document(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>{}",
            self.to_xml()
        )
    }

    /// Parses one `INSTANCE` in CIM-XML: the minimal form, or the verbose WMI
    /// `GetText_(1)`/`GetText_(2)` form (`CLASSORIGIN`, `PROPAGATED`, system
    /// properties, qualifiers, empty elements for NULL), with or without an
    /// XML declaration and whitespace between elements.
    ///
    /// Values are converted to the declared `TYPE` while parsing.
    ///
    /// # Errors
    /// * [`CimError::Xml`] with the byte offset and the broken rule for
    ///   malformed documents (→ 32773);
    /// * [`CimError::BadValue`] naming class and property for a value that
    ///   does not parse as its declared type (→ 32776).
    pub fn from_xml(text: &str) -> Result<Instance, CimError> {
        // A byte-order mark survives decoding of UTF-16 text (PowerShell, CimSerializer).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let root = parse(text)?;
        read::instance(&root)
    }
}
