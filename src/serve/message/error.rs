//! Why a CIM-XML message was rejected before any operation ran, with the
//! DSP0200 `CIMError` header value and HTTP status each case answers with;
//! how refpoint-cim's element-tree and object-path errors become message
//! errors (`From<CimError>`).

use refpoint_cim::CimError;
use refpoint_cim::xml::{Element, XmlError};

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

/// refpoint-cim's errors on the element tree and the naming elements:
/// [`CimError::Xml`] keeps its byte offset and rule text (the element and
/// attribute it names) and is [`MessageError::NotWellFormed`] for XML's own
/// rules ([`XmlError::is_well_formedness`]), [`MessageError::NotValid`] for
/// DSP0201's; any other [`CimError`] (object path text that does not parse,
/// its context naming the element and its offset) is `NotValid` at offset 0
/// with the error's text.
impl From<CimError> for MessageError {
    fn from(e: CimError) -> MessageError {
        match e {
            CimError::Xml { offset, source } => {
                let offset = usize::try_from(offset).unwrap_or(usize::MAX);
                if source.is_well_formedness() {
                    let detail = match source {
                        XmlError::Syntax(detail) => detail,
                        other => other.to_string(),
                    };
                    MessageError::NotWellFormed { offset, detail }
                } else {
                    MessageError::NotValid {
                        offset,
                        detail: source.to_string(),
                    }
                }
            }
            other => MessageError::NotValid {
                offset: 0,
                detail: other.to_string(),
            },
        }
    }
}

/// A message-level DSP0200/DSP0201 rule broken at an element (one refpoint-cim
/// has no name for: `MESSAGE must hold one SIMPLEREQ`, …).
pub(crate) trait MessageRule {
    /// [`MessageError::NotValid`] at this element's start with `detail`.
    fn invalid(&self, detail: impl Into<String>) -> MessageError;
}

impl MessageRule for Element {
    fn invalid(&self, detail: impl Into<String>) -> MessageError {
        MessageError::NotValid {
            offset: self.start,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use refpoint_cim::xml::{parse, read_instance_name};

    #[test]
    fn xml_rules_become_not_well_formed_with_their_offset() {
        let err = MessageError::from(parse("<A><B></A>").expect_err("mismatched"));

        assert!(
            matches!(err, MessageError::NotWellFormed { offset, .. } if offset > 0),
            "{err:?}"
        );
        assert_eq!(err.cim_error_header(), "request-not-well-formed");
    }

    #[test]
    fn content_rules_become_not_valid_naming_the_element() {
        let text = r#"<X><INSTANCENAME CLASSNAME="C"><KEYBINDING NAME="K"><KEYVALUE>1</KEYVALUE></KEYBINDING><KEYBINDING NAME="k"><KEYVALUE>2</KEYVALUE></KEYBINDING></INSTANCENAME></X>"#;
        let root = parse(text).expect("parse");
        let name = root.only_child("INSTANCENAME").expect("child");

        let err = MessageError::from(read_instance_name(name).expect_err("duplicate"));

        assert_eq!(
            err,
            MessageError::NotValid {
                offset: text.find("<KEYBINDING NAME=\"k\"").expect("second binding"),
                detail: "key k is bound twice".to_owned()
            }
        );
    }
}
