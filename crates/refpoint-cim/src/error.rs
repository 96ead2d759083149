//! The crate-boundary error [`CimError`] and its stable [`CimErrorKind`].
//!
//! Module errors ([`XmlError`], [`PathError`], [`DateTimeError`],
//! [`ValueError`]) are wrapped with context: the class and property they were
//! found in, or the byte offset in the document.
//!
//! Mapping to Hyper-V Table A ([`CimError::return_code`]):
//! * type errors — a property whose declared `TYPE` differs from the one
//!   required, an array where a scalar is required or vice versa, a value that
//!   does not parse as its type, an embedded instance of the wrong class —
//!   → 32776 *Incorrect data type*;
//! * everything else — malformed XML, unknown class, malformed object path or
//!   datetime, a missing required property — → 32773 *Invalid parameter*.

use crate::codes::ReturnCodeA;
use crate::datetime::DateTimeError;
use crate::path::PathError;
use crate::value::ValueError;
use crate::xml::XmlError;

/// Stable classification of a [`CimError`] for control flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CimErrorKind {
    /// The document is not well-formed XML or not DSP0201 CIM-XML.
    MalformedXml,
    /// An object path does not parse.
    MalformedPath,
    /// A DMTF datetime or interval does not parse.
    MalformedDateTime,
    /// A class this crate does not model.
    UnknownClass,
    /// An instance of another class than the one required.
    WrongClass,
    /// Declared type, arity or value text does not fit what is required.
    TypeMismatch,
    /// A required property is absent or NULL.
    MissingProperty,
    /// A property value is well-typed but not acceptable (e.g. an out-of-range enum).
    InvalidValue,
}

/// Error of the CIM layer, carrying the class/property or offset it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CimError {
    /// Malformed CIM-XML.
    #[error("malformed CIM-XML at byte {offset}: {source}")]
    Xml {
        /// Byte offset in the document where the problem was detected.
        offset: u64,
        /// The rule that was broken.
        #[source]
        source: XmlError,
    },
    /// Malformed object path (in a REF parameter or a path-valued property).
    #[error("malformed object path {text:?}{}: {source}", context_suffix(.context))]
    Path {
        /// The text.
        text: String,
        /// Where it came from (`Class.Property`), if known.
        context: Option<String>,
        /// The rule that was broken.
        #[source]
        source: PathError,
    },
    /// Malformed DMTF datetime/interval outside of an instance.
    #[error("malformed CIM datetime {text:?}: {source}")]
    DateTime {
        /// The text.
        text: String,
        /// The rule that was broken.
        #[source]
        source: DateTimeError,
    },
    /// The class is not one this crate models.
    #[error("unknown CIM class {class}")]
    UnknownClass {
        /// The class found.
        class: String,
    },
    /// An instance of a different class than required.
    #[error("expected an instance of {expected}, found {found}")]
    WrongClass {
        /// Required class.
        expected: String,
        /// Class found.
        found: String,
    },
    /// The property's declared type or arity differs from the one required.
    #[error("property {class}.{property} has type {found}, expected {expected}")]
    TypeMismatch {
        /// Class of the instance.
        class: String,
        /// Property name.
        property: String,
        /// Required type, e.g. `uint16` or `string[]`.
        expected: String,
        /// Declared type, e.g. `string` or `uint16[]`.
        found: String,
    },
    /// A `<VALUE>` that does not parse as the property's declared type.
    #[error("property {class}.{property}: {source}")]
    BadValue {
        /// Class of the instance.
        class: String,
        /// Property name.
        property: String,
        /// Parse failure.
        #[source]
        source: ValueError,
    },
    /// A required property is absent or NULL.
    #[error("required property {class}.{property} is missing or NULL")]
    MissingProperty {
        /// Class.
        class: String,
        /// Property.
        property: String,
    },
    /// An embedded instance (string property holding CIM-XML) that is invalid.
    #[error("embedded instance in {class}.{property}{}: {source}", index_suffix(*.index))]
    Embedded {
        /// Class of the outer instance.
        class: String,
        /// Property holding the embedded instance.
        property: String,
        /// Array element index, for embedded-instance arrays.
        index: Option<usize>,
        /// What is wrong inside; [`CimError::kind`] and
        /// [`CimError::return_code`] are those of this inner error.
        #[source]
        source: Box<CimError>,
    },
    /// A well-typed value that is not acceptable for the property.
    #[error("property {class}.{property} value {value:?} is invalid: {reason}")]
    InvalidValue {
        /// Class.
        class: String,
        /// Property.
        property: String,
        /// The value as text.
        value: String,
        /// Why.
        reason: String,
    },
}

fn index_suffix(index: Option<usize>) -> String {
    index.map(|i| format!("[{i}]")).unwrap_or_default()
}

fn context_suffix(context: &Option<String>) -> String {
    context
        .as_ref()
        .map(|c| format!(" in {c}"))
        .unwrap_or_default()
}

impl CimError {
    /// The stable kind.
    pub fn kind(&self) -> CimErrorKind {
        match self {
            CimError::Xml { .. } => CimErrorKind::MalformedXml,
            CimError::Path { .. } => CimErrorKind::MalformedPath,
            CimError::DateTime { .. } => CimErrorKind::MalformedDateTime,
            CimError::UnknownClass { .. } => CimErrorKind::UnknownClass,
            CimError::WrongClass { .. } => CimErrorKind::WrongClass,
            CimError::TypeMismatch { .. } | CimError::BadValue { .. } => CimErrorKind::TypeMismatch,
            CimError::MissingProperty { .. } => CimErrorKind::MissingProperty,
            CimError::InvalidValue { .. } => CimErrorKind::InvalidValue,
            CimError::Embedded { source, .. } => source.kind(),
        }
    }

    /// The Hyper-V Table A code: 32776 for type errors (type/arity mismatch,
    /// unparsable value, wrong class), 32773 for everything else.
    pub fn return_code(&self) -> u32 {
        self.return_code_a().value()
    }

    /// [`CimError::return_code`] as a [`ReturnCodeA`].
    pub fn return_code_a(&self) -> ReturnCodeA {
        match self.kind() {
            CimErrorKind::TypeMismatch | CimErrorKind::WrongClass => ReturnCodeA::IncorrectDataType,
            _ => ReturnCodeA::InvalidParameter,
        }
    }

    /// The property the error names, if any.
    pub fn property(&self) -> Option<&str> {
        match self {
            CimError::TypeMismatch { property, .. }
            | CimError::BadValue { property, .. }
            | CimError::MissingProperty { property, .. }
            | CimError::InvalidValue { property, .. }
            | CimError::Embedded { property, .. } => Some(property),
            _ => None,
        }
    }

    /// Wraps a path error with the text and optional `Class.Property` context.
    pub fn path(text: &str, context: Option<String>, source: PathError) -> CimError {
        CimError::Path {
            text: text.to_owned(),
            context,
            source,
        }
    }
}
