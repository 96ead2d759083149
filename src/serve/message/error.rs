//! Why a CIM-XML message was rejected before any operation ran, with the
//! DSP0200 `CIMError` header value and HTTP status each case answers with.

/// A message-level rule of DSP0200/DSP0201 that was broken. Operation-level
/// problems (unknown class, bad parameter value) are not here: they are
/// answered inside the message as `<ERROR CODE=…>` (see
/// [`CimOpError`](crate::serve::CimOpError)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not well-formed XML (DSP0200 `request-not-well-formed`).
    #[error("CIM-XML message is not well-formed at byte {offset}: {detail}")]
    NotWellFormed {
        /// Byte offset into the message body.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
    /// Well-formed, but breaks a DSP0201 content rule (`request-not-valid`).
    #[error("CIM-XML message is not valid at byte {offset}: {detail}")]
    NotValid {
        /// Byte offset of the offending element.
        offset: usize,
        /// The rule, naming the element and attribute.
        detail: String,
    },
    /// `CIM CIMVERSION` is not 2.x (`unsupported-cim-version`).
    #[error("unsupported CIMVERSION {found:?}; refpoint speaks 2.x")]
    UnsupportedCimVersion {
        /// The attribute value.
        found: String,
    },
    /// `CIM DTDVERSION` is not 2.x (`unsupported-dtd-version`).
    #[error("unsupported DTDVERSION {found:?}; refpoint speaks 2.x")]
    UnsupportedDtdVersion {
        /// The attribute value.
        found: String,
    },
    /// `MESSAGE PROTOCOLVERSION` or the `CIMProtocolVersion` header is not 1.x
    /// (`unsupported-protocol-version`).
    #[error("unsupported protocol version {found:?}; refpoint speaks DSP0200 1.x")]
    UnsupportedProtocolVersion {
        /// The value found.
        found: String,
    },
    /// `MULTIREQ` (`multiple-requests-unsupported`).
    #[error("MULTIREQ (several operations in one message) is not supported")]
    MultipleRequests,
}

impl MessageError {
    /// Value of the DSP0200 `CIMError` response header for this error.
    pub fn cim_error_header(&self) -> &'static str {
        match self {
            MessageError::NotWellFormed { .. } => "request-not-well-formed",
            MessageError::NotValid { .. } => "request-not-valid",
            MessageError::UnsupportedCimVersion { .. } => "unsupported-cim-version",
            MessageError::UnsupportedDtdVersion { .. } => "unsupported-dtd-version",
            MessageError::UnsupportedProtocolVersion { .. } => "unsupported-protocol-version",
            MessageError::MultipleRequests => "multiple-requests-unsupported",
        }
    }

    /// HTTP status DSP0200 prescribes: 400 Bad Request for malformed or
    /// invalid messages, 501 Not Implemented for unsupported versions and
    /// multiple requests.
    pub fn http_status(&self) -> u16 {
        match self {
            MessageError::NotWellFormed { .. } | MessageError::NotValid { .. } => 400,
            _ => 501,
        }
    }
}
