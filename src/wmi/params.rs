//! Decoding method parameters ([`ParamValue`]) into typed values, with
//! errors that name the method and the parameter.
//!
//! Error codes (Table A; Table B methods convert with
//! [`RefpointError::table_b_code`]):
//! * a value of the wrong shape (an array where a scalar is declared, a
//!   reference for a string, …) or text that does not parse as the declared
//!   CIM type → 32776 *Incorrect data type*;
//! * a malformed object path, a reference to another class, a missing
//!   required parameter → 32773 *Invalid parameter*;
//! * embedded instances: the code of the [`refpoint_cim::CimError`]
//!   (32776 wrong class or property type, 32773 malformed XML or unknown
//!   class), the message naming the parameter, class and property.
//!
//! Parameter *names* the method does not declare are an operation error
//! (`CIM_ERR_INVALID_PARAMETER`), as DSP0200 has it.

use refpoint_cim::{CimInterval, ObjectPath};

use super::model::is_a;
use super::provider::{CimOpError, ParamValue};
use crate::error::{RefpointError, ReturnCode};

/// The parameters of one call, checked against the declared names.
#[derive(Debug)]
pub(crate) struct Params<'a> {
    method: &'static str,
    values: &'a [(String, ParamValue)],
}

fn type_error(method: &str, name: &str, message: String) -> RefpointError {
    RefpointError::new(
        ReturnCode::IncorrectDataType,
        format!("{method}.{name}: {message}"),
    )
}

fn invalid(method: &str, name: &str, message: String) -> RefpointError {
    RefpointError::new(
        ReturnCode::InvalidParameter,
        format!("{method}.{name}: {message}"),
    )
}

fn shape(v: &ParamValue) -> &'static str {
    match v {
        ParamValue::Null => "NULL",
        ParamValue::Value(_) => "a scalar value",
        ParamValue::Array(_) => "an array",
        ParamValue::Reference(_) => "a reference",
        ParamValue::ReferenceArray(_) => "an array of references",
    }
}

impl<'a> Params<'a> {
    /// Checks that every name in `values` is one of `declared`
    /// (case-insensitive) and appears once.
    ///
    /// # Errors
    /// `CIM_ERR_INVALID_PARAMETER` naming the parameter.
    pub(crate) fn new(
        method: &'static str,
        values: &'a [(String, ParamValue)],
        declared: &[&str],
    ) -> Result<Params<'a>, CimOpError> {
        for (i, (name, _)) in values.iter().enumerate() {
            if !declared.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                return Err(CimOpError::new(
                    CimOpError::INVALID_PARAMETER,
                    format!(
                        "{method} has no parameter {name:?} (parameters: {})",
                        declared.join(", ")
                    ),
                ));
            }
            if values
                .iter()
                .skip(i + 1)
                .any(|(other, _)| other.eq_ignore_ascii_case(name))
            {
                return Err(CimOpError::new(
                    CimOpError::INVALID_PARAMETER,
                    format!("{method}: parameter {name} is given twice"),
                ));
            }
        }
        Ok(Params { method, values })
    }

    /// The method name (for messages).
    pub(crate) fn method(&self) -> &'static str {
        self.method
    }

    /// The value of `name`; NULL and absent are both `None`.
    fn get(&self, name: &str) -> Option<&'a ParamValue> {
        self.values
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, ParamValue::Null))
    }

    /// A scalar's text.
    fn scalar(&self, name: &str, cim_type: &str) -> Result<Option<&'a str>, RefpointError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Value(text)) => Ok(Some(text.as_str())),
            Some(other) => Err(type_error(
                self.method,
                name,
                format!("declared {cim_type}, got {}", shape(other)),
            )),
        }
    }

    /// A `string` parameter (embedded instances are strings too).
    ///
    /// # Errors
    /// 32776 for another shape.
    pub(crate) fn string(&self, name: &str) -> Result<Option<&'a str>, RefpointError> {
        self.scalar(name, "string")
    }

    /// A required `string` parameter.
    ///
    /// # Errors
    /// 32773 when absent or NULL; 32776 for another shape.
    pub(crate) fn required_string(&self, name: &str) -> Result<&'a str, RefpointError> {
        self.string(name)?
            .ok_or_else(|| invalid(self.method, name, "is required".into()))
    }

    /// A `uint16` parameter.
    ///
    /// # Errors
    /// 32776 for another shape or text that is not a uint16.
    pub(crate) fn uint16(&self, name: &str) -> Result<Option<u16>, RefpointError> {
        self.number(name, "uint16")
    }

    /// A `uint64` parameter.
    ///
    /// # Errors
    /// 32776 for another shape or text that is not a uint64.
    pub(crate) fn uint64(&self, name: &str) -> Result<Option<u64>, RefpointError> {
        self.number(name, "uint64")
    }

    fn number<T: std::str::FromStr>(
        &self,
        name: &str,
        cim_type: &str,
    ) -> Result<Option<T>, RefpointError> {
        let Some(text) = self.scalar(name, cim_type)? else {
            return Ok(None);
        };
        let trimmed = text.trim();
        let digits = trimmed.strip_prefix('+').unwrap_or(trimmed);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(type_error(
                self.method,
                name,
                format!("{text:?} is not a {cim_type}"),
            ));
        }
        digits.parse::<T>().map(Some).map_err(|_| {
            type_error(
                self.method,
                name,
                format!("{text:?} is out of range for {cim_type}"),
            )
        })
    }

    /// A `boolean` parameter (`TRUE`/`FALSE`, any case).
    ///
    /// # Errors
    /// 32776 for another shape or text.
    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, RefpointError> {
        let Some(text) = self.scalar(name, "boolean")? else {
            return Ok(None);
        };
        match text.trim() {
            t if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
            t if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
            _ => Err(type_error(
                self.method,
                name,
                format!("{text:?} is not a boolean (TRUE or FALSE)"),
            )),
        }
    }

    /// A `datetime` parameter that must be an interval
    /// (`ddddddddHHMMSS.mmmmmm:000`).
    ///
    /// # Errors
    /// 32776 for another shape or text that is not an interval.
    pub(crate) fn interval(&self, name: &str) -> Result<Option<CimInterval>, RefpointError> {
        let Some(text) = self.scalar(name, "datetime")? else {
            return Ok(None);
        };
        text.trim().parse::<CimInterval>().map(Some).map_err(|e| {
            type_error(
                self.method,
                name,
                format!("{text:?} is not a CIM interval: {e}"),
            )
        })
    }

    /// A `REF` parameter to an instance of `class` or a subclass. A path
    /// given as text (in-process WMI callers pass `__PATH` strings) is
    /// parsed.
    ///
    /// # Errors
    /// 32773 for a malformed path or a path of another class; 32776 for
    /// another shape.
    pub(crate) fn reference(
        &self,
        name: &str,
        class: &str,
    ) -> Result<Option<ObjectPath>, RefpointError> {
        let path = match self.get(name) {
            None => return Ok(None),
            Some(ParamValue::Reference(p)) => p.clone(),
            Some(ParamValue::Value(text)) => text.trim().parse::<ObjectPath>().map_err(|e| {
                invalid(
                    self.method,
                    name,
                    format!("malformed object path {text:?}: {e}"),
                )
            })?,
            Some(other) => {
                return Err(type_error(
                    self.method,
                    name,
                    format!("declared {class} REF, got {}", shape(other)),
                ));
            }
        };
        if !is_a(&path.class_name, class) {
            return Err(invalid(
                self.method,
                name,
                format!(
                    "expected a reference to {class}, got one to {} ({path})",
                    path.class_name
                ),
            ));
        }
        Ok(Some(path))
    }

    /// A required `REF` parameter.
    ///
    /// # Errors
    /// As [`Params::reference`]; 32773 when absent or NULL.
    pub(crate) fn required_reference(
        &self,
        name: &str,
        class: &str,
    ) -> Result<ObjectPath, RefpointError> {
        self.reference(name, class)?
            .ok_or_else(|| invalid(self.method, name, "is required".into()))
    }

    /// Prefixes an error about parameter `name` (e.g. from parsing its
    /// embedded instance) with `Method.Name: `.
    pub(crate) fn context(&self, name: &str, e: RefpointError) -> RefpointError {
        RefpointError::new(e.code(), format!("{}.{name}: {}", self.method, e.message()))
    }
}
