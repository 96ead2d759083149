//! DSP0201 CIM-XML for instances: reading (minimal form and the verbose WMI
//! `GetText_(1)`/`GetText_(2)` form) and writing (minimal form).
//!
//! Reading is two steps: [`dom`] turns text into a small element tree with
//! quick-xml's event reader (entities resolved, whitespace-only text between
//! elements dropped, depth bounded), then [`read`] maps the tree onto
//! [`Instance`](crate::Instance) with the DTD's content rules and the declared
//! CIM types. [`write`] produces the minimal form.

pub(crate) mod dom;
pub(crate) mod read;
pub(crate) mod write;

/// A CIM-XML document rule that was broken. The byte offset is carried by
/// [`CimError::Xml`](crate::CimError::Xml).
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
}

use crate::error::CimError;
use crate::instance::Instance;

impl Instance {
    /// The instance as minimal DSP0201 CIM-XML (`<INSTANCE CLASSNAME=…>…</INSTANCE>`,
    /// no declaration); see [`write`] for the exact shape.
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
        let root = dom::parse(text)?;
        read::instance(&root)
    }
}
