//! CIM data types and values (DSP0004 §5.2 "Datatypes", DSP0201 `TYPE` attribute).
//!
//! A [`CimValue`] is one typed scalar; a [`PropertyValue`] is what a property
//! holds: NULL, one scalar, or an array whose elements may themselves be NULL
//! (DSP0201 `VALUE.NULL`).

use std::fmt;
use std::str::FromStr;

use crate::datetime::{CimDateTime, CimInterval};
use crate::path::ObjectPath;

/// The CIM intrinsic data types as spelled in the DSP0201 `TYPE` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CimType {
    /// `boolean`
    Boolean,
    /// `string`
    String,
    /// `char16`
    Char16,
    /// `uint8`
    Uint8,
    /// `uint16`
    Uint16,
    /// `uint32`
    Uint32,
    /// `uint64`
    Uint64,
    /// `sint8`
    Sint8,
    /// `sint16`
    Sint16,
    /// `sint32`
    Sint32,
    /// `sint64`
    Sint64,
    /// `real32`
    Real32,
    /// `real64`
    Real64,
    /// `datetime` (timestamp or interval)
    Datetime,
    /// `reference` (an object path; `PROPERTY.REFERENCE`)
    Reference,
}

impl CimType {
    /// The DSP0201 spelling (`"uint16"`, `"string"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CimType::Boolean => "boolean",
            CimType::String => "string",
            CimType::Char16 => "char16",
            CimType::Uint8 => "uint8",
            CimType::Uint16 => "uint16",
            CimType::Uint32 => "uint32",
            CimType::Uint64 => "uint64",
            CimType::Sint8 => "sint8",
            CimType::Sint16 => "sint16",
            CimType::Sint32 => "sint32",
            CimType::Sint64 => "sint64",
            CimType::Real32 => "real32",
            CimType::Real64 => "real64",
            CimType::Datetime => "datetime",
            CimType::Reference => "reference",
        }
    }
}

impl fmt::Display for CimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`CimType::from_str`]: the text names no CIM type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown CIM type {0:?}")]
pub struct UnknownCimType(pub String);

impl FromStr for CimType {
    type Err = UnknownCimType;

    /// Parses the DSP0201 spelling, case-insensitively (WMI emits lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = match s.to_ascii_lowercase().as_str() {
            "boolean" => CimType::Boolean,
            "string" => CimType::String,
            "char16" => CimType::Char16,
            "uint8" => CimType::Uint8,
            "uint16" => CimType::Uint16,
            "uint32" => CimType::Uint32,
            "uint64" => CimType::Uint64,
            "sint8" => CimType::Sint8,
            "sint16" => CimType::Sint16,
            "sint32" => CimType::Sint32,
            "sint64" => CimType::Sint64,
            "real32" => CimType::Real32,
            "real64" => CimType::Real64,
            "datetime" => CimType::Datetime,
            "reference" => CimType::Reference,
            _ => return Err(UnknownCimType(s.to_owned())),
        };
        Ok(t)
    }
}

/// One typed CIM scalar.
///
/// A `datetime` value is either a timestamp ([`CimValue::Datetime`]) or an
/// interval ([`CimValue::Interval`]); both have [`CimType::Datetime`].
#[derive(Debug, Clone, PartialEq)]
pub enum CimValue {
    /// `boolean`, written `TRUE`/`FALSE`.
    Boolean(bool),
    /// `string`.
    String(String),
    /// `char16` (one UTF-16 code unit; kept as a `char`).
    Char16(char),
    /// `uint8`.
    Uint8(u8),
    /// `uint16`.
    Uint16(u16),
    /// `uint32`.
    Uint32(u32),
    /// `uint64`.
    Uint64(u64),
    /// `sint8`.
    Sint8(i8),
    /// `sint16`.
    Sint16(i16),
    /// `sint32`.
    Sint32(i32),
    /// `sint64`.
    Sint64(i64),
    /// `real32`.
    Real32(f32),
    /// `real64`.
    Real64(f64),
    /// `datetime` holding a timestamp `yyyymmddHHMMSS.mmmmmmsUUU`.
    Datetime(CimDateTime),
    /// `datetime` holding an interval `ddddddddHHMMSS.mmmmmm:000`.
    Interval(CimInterval),
    /// `reference`: an object path.
    Reference(ObjectPath),
}

impl CimValue {
    /// The CIM type of this value.
    pub fn cim_type(&self) -> CimType {
        match self {
            CimValue::Boolean(_) => CimType::Boolean,
            CimValue::String(_) => CimType::String,
            CimValue::Char16(_) => CimType::Char16,
            CimValue::Uint8(_) => CimType::Uint8,
            CimValue::Uint16(_) => CimType::Uint16,
            CimValue::Uint32(_) => CimType::Uint32,
            CimValue::Uint64(_) => CimType::Uint64,
            CimValue::Sint8(_) => CimType::Sint8,
            CimValue::Sint16(_) => CimType::Sint16,
            CimValue::Sint32(_) => CimType::Sint32,
            CimValue::Sint64(_) => CimType::Sint64,
            CimValue::Real32(_) => CimType::Real32,
            CimValue::Real64(_) => CimType::Real64,
            CimValue::Datetime(_) | CimValue::Interval(_) => CimType::Datetime,
            CimValue::Reference(_) => CimType::Reference,
        }
    }

    /// The text written inside `<VALUE>` (booleans `TRUE`/`FALSE`, datetimes in
    /// DMTF form, references as object-path strings).
    pub fn to_text(&self) -> String {
        match self {
            CimValue::Boolean(true) => "TRUE".to_owned(),
            CimValue::Boolean(false) => "FALSE".to_owned(),
            CimValue::String(s) => s.clone(),
            CimValue::Char16(c) => c.to_string(),
            CimValue::Uint8(v) => v.to_string(),
            CimValue::Uint16(v) => v.to_string(),
            CimValue::Uint32(v) => v.to_string(),
            CimValue::Uint64(v) => v.to_string(),
            CimValue::Sint8(v) => v.to_string(),
            CimValue::Sint16(v) => v.to_string(),
            CimValue::Sint32(v) => v.to_string(),
            CimValue::Sint64(v) => v.to_string(),
            CimValue::Real32(v) => format!("{v:?}"),
            CimValue::Real64(v) => format!("{v:?}"),
            CimValue::Datetime(v) => v.to_string(),
            CimValue::Interval(v) => v.to_string(),
            CimValue::Reference(v) => v.to_string(),
        }
    }

    /// Parses `<VALUE>` text as `cim_type`.
    ///
    /// Numbers are decimal (a `0x` prefix is accepted for integers, as DSP0201
    /// allows hex); booleans are `true`/`false` in any case; a `datetime` is a
    /// timestamp or, if its 22nd character is `:`, an interval.
    ///
    /// # Errors
    /// [`ValueError`] naming the type and the reason when the text does not
    /// parse as that type.
    pub fn parse(cim_type: CimType, text: &str) -> Result<CimValue, ValueError> {
        let bad = |reason: String| ValueError {
            cim_type,
            text: text.to_owned(),
            reason,
        };
        let t = text.trim();
        let v = match cim_type {
            CimType::String => CimValue::String(text.to_owned()),
            CimType::Boolean => match t.to_ascii_lowercase().as_str() {
                "true" => CimValue::Boolean(true),
                "false" => CimValue::Boolean(false),
                _ => return Err(bad("expected TRUE or FALSE".to_owned())),
            },
            CimType::Char16 => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if u32::from(c) <= 0xFFFF => CimValue::Char16(c),
                    _ => return Err(bad("expected exactly one UCS-2 character".to_owned())),
                }
            }
            CimType::Uint8 => CimValue::Uint8(parse_int(t).map_err(bad)?),
            CimType::Uint16 => CimValue::Uint16(parse_int(t).map_err(bad)?),
            CimType::Uint32 => CimValue::Uint32(parse_int(t).map_err(bad)?),
            CimType::Uint64 => CimValue::Uint64(parse_int(t).map_err(bad)?),
            CimType::Sint8 => CimValue::Sint8(parse_int(t).map_err(bad)?),
            CimType::Sint16 => CimValue::Sint16(parse_int(t).map_err(bad)?),
            CimType::Sint32 => CimValue::Sint32(parse_int(t).map_err(bad)?),
            CimType::Sint64 => CimValue::Sint64(parse_int(t).map_err(bad)?),
            CimType::Real32 => CimValue::Real32(t.parse().map_err(|e| bad(format!("{e}")))?),
            CimType::Real64 => CimValue::Real64(t.parse().map_err(|e| bad(format!("{e}")))?),
            CimType::Datetime => {
                if t.as_bytes().get(21) == Some(&b':') {
                    CimValue::Interval(t.parse().map_err(|e| bad(format!("{e}")))?)
                } else {
                    CimValue::Datetime(t.parse().map_err(|e| bad(format!("{e}")))?)
                }
            }
            CimType::Reference => CimValue::Reference(t.parse().map_err(|e| bad(format!("{e}")))?),
        };
        Ok(v)
    }
}

/// Parses a DSP0201 integer: optional sign, then decimal digits or `0x` hex digits.
fn parse_int<T>(t: &str) -> Result<T, String>
where
    T: TryFrom<i128>,
{
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (digits, radix) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (body, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err("not an integer".to_owned());
    }
    let magnitude =
        i128::from_str_radix(digits, radix).map_err(|_| "out of range for the type".to_owned())?;
    let value = if neg { -magnitude } else { magnitude };
    T::try_from(value).map_err(|_| "out of range for the type".to_owned())
}

/// A `<VALUE>` text that does not parse as its declared type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {cim_type}: {reason}")]
pub struct ValueError {
    /// Declared type.
    pub cim_type: CimType,
    /// The offending text.
    pub text: String,
    /// Why it does not parse.
    pub reason: String,
}

/// What a property holds.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    /// CIM NULL: no `<VALUE>` element (distinct from the empty string).
    Null,
    /// One value.
    Scalar(CimValue),
    /// An array; `None` elements are `VALUE.NULL`.
    Array(Vec<Option<CimValue>>),
}

impl PropertyValue {
    /// True for [`PropertyValue::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, PropertyValue::Null)
    }

    /// The CIM type of the first non-NULL value, if any.
    pub fn inferred_type(&self) -> Option<CimType> {
        match self {
            PropertyValue::Null => None,
            PropertyValue::Scalar(v) => Some(v.cim_type()),
            PropertyValue::Array(items) => items.iter().flatten().next().map(CimValue::cim_type),
        }
    }
}

macro_rules! scalar_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(
            impl From<$t> for CimValue {
                fn from(v: $t) -> Self { CimValue::$variant(v) }
            }
            impl From<$t> for PropertyValue {
                fn from(v: $t) -> Self { PropertyValue::Scalar(CimValue::$variant(v)) }
            }
            impl From<Option<$t>> for PropertyValue {
                fn from(v: Option<$t>) -> Self {
                    match v { Some(v) => PropertyValue::Scalar(CimValue::$variant(v)), None => PropertyValue::Null }
                }
            }
            impl From<Vec<$t>> for PropertyValue {
                fn from(v: Vec<$t>) -> Self {
                    PropertyValue::Array(v.into_iter().map(|x| Some(CimValue::$variant(x))).collect())
                }
            }
        )*
    };
}

scalar_from!(
    bool => Boolean,
    String => String,
    u8 => Uint8,
    u16 => Uint16,
    u32 => Uint32,
    u64 => Uint64,
    i8 => Sint8,
    i16 => Sint16,
    i32 => Sint32,
    i64 => Sint64,
    f32 => Real32,
    f64 => Real64,
    CimDateTime => Datetime,
    CimInterval => Interval,
    ObjectPath => Reference,
);

impl From<&str> for CimValue {
    fn from(v: &str) -> Self {
        CimValue::String(v.to_owned())
    }
}

impl From<&str> for PropertyValue {
    fn from(v: &str) -> Self {
        PropertyValue::Scalar(CimValue::String(v.to_owned()))
    }
}

impl From<Option<&str>> for PropertyValue {
    fn from(v: Option<&str>) -> Self {
        v.map_or(PropertyValue::Null, PropertyValue::from)
    }
}

impl From<Vec<&str>> for PropertyValue {
    fn from(v: Vec<&str>) -> Self {
        PropertyValue::Array(
            v.into_iter()
                .map(|x| Some(CimValue::String(x.to_owned())))
                .collect(),
        )
    }
}

impl From<&[String]> for PropertyValue {
    fn from(v: &[String]) -> Self {
        PropertyValue::Array(
            v.iter()
                .map(|x| Some(CimValue::String(x.clone())))
                .collect(),
        )
    }
}

impl From<CimValue> for PropertyValue {
    fn from(v: CimValue) -> Self {
        PropertyValue::Scalar(v)
    }
}
