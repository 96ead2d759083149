//! The DSP0200/DSP0201 CIM-XML message codec shared by the service and the
//! client: [`request`] (`SIMPLEREQ` with `IMETHODCALL`/`METHODCALL`),
//! [`response`] (`SIMPLERSP` with `IMETHODRESPONSE`/`METHODRESPONSE`/
//! `ERROR`), [`names`] (object paths on the wire) over a small element tree
//! ([`dom`]). Instances themselves are read and written by refpoint-cim
//! ([`refpoint_cim::Instance::from_xml`] / [`refpoint_cim::Instance::to_xml`]).

pub(crate) mod dom;
mod error;
pub mod names;
pub mod request;
pub mod response;

pub use error::MessageError;
