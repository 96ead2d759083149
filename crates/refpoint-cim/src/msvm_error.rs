//! `Msvm_Error` (: `CIM_Error`), the embedded instance returned by the jobs'
//! `GetError`/`GetErrorEx` (hyperv-api.md §4.4; MSDN "Msvm_Error class").

use crate::codes::{CimStatusCode, ReturnCodeA};
use crate::error::CimError;
use crate::instance::Instance;
use crate::value::CimType;

/// CIM class name.
pub const MSVM_ERROR: &str = "Msvm_Error";

/// `CIM_Error.PerceivedSeverity` values listed for `Msvm_Error`.
pub mod severity {
    /// 0 Unknown.
    pub const UNKNOWN: u16 = 0;
    /// 2 Low.
    pub const LOW: u16 = 2;
    /// 3 Medium.
    pub const MEDIUM: u16 = 3;
    /// 4 High.
    pub const HIGH: u16 = 4;
    /// 5 Fatal.
    pub const FATAL: u16 = 5;
}

/// `CIM_Error.ErrorType` values.
pub mod error_type {
    /// 0 Unknown.
    pub const UNKNOWN: u16 = 0;
    /// 1 Other (see `OtherErrorType`).
    pub const OTHER: u16 = 1;
    /// 2 Communications Error.
    pub const COMMUNICATIONS: u16 = 2;
    /// 4 Software Error.
    pub const SOFTWARE: u16 = 4;
    /// 5 Hardware Error.
    pub const HARDWARE: u16 = 5;
    /// 6 Environmental Error.
    pub const ENVIRONMENTAL: u16 = 6;
    /// 7 Security Error.
    pub const SECURITY: u16 = 7;
    /// 9 Unavailable Resource Error.
    pub const UNAVAILABLE_RESOURCE: u16 = 9;
    /// 10 Unsupported Operation Error.
    pub const UNSUPPORTED_OPERATION: u16 = 10;
}

/// One `Msvm_Error` instance. Optional strings are CIM NULL when `None`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MsvmError {
    /// `ErrorType` (uint16, see [`error_type`]).
    pub error_type: u16,
    /// `OtherErrorType`.
    pub other_error_type: Option<String>,
    /// `OwningEntity`: who defines `MessageID` (`"refpoint"`).
    pub owning_entity: Option<String>,
    /// `MessageID`: here the Table A return code as decimal text.
    #[serde(rename = "MessageID")]
    pub message_id: Option<String>,
    /// `Message`: the human-readable text, naming file, offset or field.
    pub message: String,
    /// `MessageArguments[]`: the values substituted into the message.
    pub message_arguments: Vec<String>,
    /// `PerceivedSeverity` (uint16, see [`severity`]).
    pub perceived_severity: u16,
    /// `ProbableCause` (uint16; 0 Unknown, 1 Other).
    pub probable_cause: u16,
    /// `ProbableCauseDescription`.
    pub probable_cause_description: Option<String>,
    /// `RecommendedActions[]`.
    pub recommended_actions: Vec<String>,
    /// `ErrorSource`: object path (or file path) of the failing element.
    pub error_source: Option<String>,
    /// `ErrorSourceFormat` (uint16; always 0 Unknown on Hyper-V).
    pub error_source_format: u16,
    /// `OtherErrorSourceFormat`.
    pub other_error_source_format: Option<String>,
    /// `CIMStatusCode` (uint32, DSP0200 status).
    #[serde(rename = "CIMStatusCode")]
    pub cim_status_code: u32,
    /// `CIMStatusCodeDescription`.
    #[serde(rename = "CIMStatusCodeDescription")]
    pub cim_status_code_description: Option<String>,
}

impl MsvmError {
    /// An error for Table A `code` with `message`: severity High, software
    /// error, `MessageID` = the code, `CIMStatusCode` derived from the code.
    pub fn new(code: ReturnCodeA, message: &str) -> MsvmError {
        let status: CimStatusCode = code.cim_status_code();
        MsvmError {
            error_type: error_type::SOFTWARE,
            other_error_type: None,
            owning_entity: Some("refpoint".to_owned()),
            message_id: Some(code.value().to_string()),
            message: message.to_owned(),
            message_arguments: Vec::new(),
            perceived_severity: severity::HIGH,
            probable_cause: 0,
            probable_cause_description: Some(code.description().to_owned()),
            recommended_actions: Vec::new(),
            error_source: None,
            error_source_format: 0,
            other_error_source_format: None,
            cim_status_code: status.value(),
            cim_status_code_description: Some(status.description().to_owned()),
        }
    }

    /// Builder: sets `ErrorSource`.
    pub fn with_source(mut self, source: &str) -> MsvmError {
        self.error_source = Some(source.to_owned());
        self
    }

    /// Builder: sets `PerceivedSeverity`.
    pub fn with_severity(mut self, severity: u16) -> MsvmError {
        self.perceived_severity = severity;
        self
    }

    /// The instance, with every property present (NULL when unset).
    ///
    /// C0 control characters other than tab, line feed and carriage return
    /// cannot appear in XML 1.0 documents, not even as character references,
    /// so in the text fields they are written visibly as `\xNN` (a path
    /// `bad\u{1}name` becomes `bad\x01name`): `GetErrorEx` output must parse
    /// with any XML parser.
    pub fn to_instance(&self) -> Instance {
        let s = |v: &Option<String>| v.as_deref().map(visible_controls);
        let list = |v: &[String]| {
            v.iter()
                .map(|x| visible_controls(x))
                .collect::<Vec<String>>()
        };
        let mut i = Instance::new(MSVM_ERROR)
            .with("ErrorType", self.error_type)
            .with_typed("OtherErrorType", s(&self.other_error_type), CimType::String)
            .with_typed("OwningEntity", s(&self.owning_entity), CimType::String)
            .with_typed("MessageID", s(&self.message_id), CimType::String)
            .with("Message", visible_controls(&self.message))
            .with_typed(
                "MessageArguments",
                list(&self.message_arguments),
                CimType::String,
            )
            .with("PerceivedSeverity", self.perceived_severity)
            .with("ProbableCause", self.probable_cause)
            .with_typed(
                "ProbableCauseDescription",
                s(&self.probable_cause_description),
                CimType::String,
            )
            .with_typed(
                "RecommendedActions",
                list(&self.recommended_actions),
                CimType::String,
            )
            .with_typed("ErrorSource", s(&self.error_source), CimType::String)
            .with("ErrorSourceFormat", self.error_source_format)
            .with_typed(
                "OtherErrorSourceFormat",
                s(&self.other_error_source_format),
                CimType::String,
            )
            .with("CIMStatusCode", self.cim_status_code)
            .with_typed(
                "CIMStatusCodeDescription",
                s(&self.cim_status_code_description),
                CimType::String,
            );
        // Arrays keep their PROPERTY.ARRAY form even when empty.
        for name in ["MessageArguments", "RecommendedActions"] {
            if let Some(p) = i.property_mut(name) {
                p.is_array = true;
            }
        }
        i
    }

    /// CIM-XML of [`MsvmError::to_instance`], the `GetError`/`GetErrorEx` wire form.
    pub fn to_xml(&self) -> String {
        self.to_instance().to_xml()
    }

    /// Reads an `Msvm_Error` (or `CIM_Error`) instance; absent numeric
    /// properties read as 0, absent arrays as empty, absent `Message` as "".
    ///
    /// # Errors
    /// [`CimError::WrongClass`] for another class; [`CimError::TypeMismatch`]
    /// when a property has another type than the MOF declares.
    pub fn from_instance(i: &Instance) -> Result<MsvmError, CimError> {
        if !i.is_class("CIM_Error") {
            i.expect_class(MSVM_ERROR)?;
        }
        Ok(MsvmError {
            error_type: i.get_u16("ErrorType")?.unwrap_or(0),
            other_error_type: i.get_string("OtherErrorType")?,
            owning_entity: i.get_string("OwningEntity")?,
            message_id: i.get_string("MessageID")?,
            message: i.get_string("Message")?.unwrap_or_default(),
            message_arguments: i.get_string_array("MessageArguments")?.unwrap_or_default(),
            perceived_severity: i.get_u16("PerceivedSeverity")?.unwrap_or(0),
            probable_cause: i.get_u16("ProbableCause")?.unwrap_or(0),
            probable_cause_description: i.get_string("ProbableCauseDescription")?,
            recommended_actions: i
                .get_string_array("RecommendedActions")?
                .unwrap_or_default(),
            error_source: i.get_string("ErrorSource")?,
            error_source_format: i.get_u16("ErrorSourceFormat")?.unwrap_or(0),
            other_error_source_format: i.get_string("OtherErrorSourceFormat")?,
            cim_status_code: i.get_u32("CIMStatusCode")?.unwrap_or(0),
            cim_status_code_description: i.get_string("CIMStatusCodeDescription")?,
        })
    }

    /// Parses CIM-XML produced by [`MsvmError::to_xml`] or by Hyper-V.
    ///
    /// # Errors
    /// As [`Instance::from_xml`] and [`MsvmError::from_instance`].
    pub fn from_xml(text: &str) -> Result<MsvmError, CimError> {
        MsvmError::from_instance(&Instance::from_xml(text)?)
    }
}

impl From<&MsvmError> for Instance {
    fn from(e: &MsvmError) -> Instance {
        e.to_instance()
    }
}

/// Replaces C0 controls other than `\t`, `\n`, `\r` by the visible text `\xNN`.
fn visible_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if u32::from(c) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}
