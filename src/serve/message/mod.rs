//! The DSP0200/DSP0201 CIM-XML message codec shared by the service and the
//! client: [`request`] (`SIMPLEREQ` with `IMETHODCALL`/`METHODCALL`) and
//! [`response`] (`SIMPLERSP` with `IMETHODRESPONSE`/`METHODRESPONSE`/
//! `ERROR`). The element tree, object paths on the wire (`INSTANCENAME`,
//! `VALUE.REFERENCE`, `LOCALNAMESPACEPATH`, …), escaping and instances are
//! refpoint-cim's ([`refpoint_cim::xml`], [`refpoint_cim::Instance::from_xml`],
//! [`refpoint_cim::Instance::to_xml`]); this codec holds only the
//! message-level elements and rules.

mod error;
pub mod request;
pub mod response;

pub use error::MessageError;
pub(crate) use error::MessageRule;

/// Normalised namespace for comparisons: lower case, `/` separators, no
/// leading or trailing separator (`root\Virtualization\v2` →
/// `root/virtualization/v2`).
pub fn normalize_namespace(ns: &str) -> String {
    ns.replace('\\', "/").trim_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_normalisation_ignores_separators_and_case() {
        assert_eq!(
            normalize_namespace(r"\Root\Virtualization\V2"),
            normalize_namespace("root/virtualization/v2/")
        );
    }
}
