//! CIM primitives for refpoint: typed CIM instances and their DSP0201 CIM-XML
//! form, WMI object paths, DSP0004 datetimes and intervals, Hyper-V return
//! code tables, `Msvm_Error`, and typed models of the Hyper-V classes refpoint
//! uses. [`xml`] also exposes its element tree and the readers/writers of
//! CIM-XML object paths, for DSP0200 message codecs.
//!
//! Sources: DMTF DSP0004 (CIM infrastructure), DSP0201 (CIM-XML),
//! Microsoft "Hyper-V WMI provider (V2)" class pages, summarised in
//! `reference/hyperv-api.md`.
//!
//! Errors: module errors ([`XmlError`], [`PathError`], [`DateTimeError`],
//! [`ValueError`]) are wrapped in the crate error [`CimError`], whose
//! [`CimError::return_code`] is the Hyper-V Table A code a method returns for
//! it (32776 for type errors, 32773 otherwise).

pub mod classes;
pub mod codes;
mod datetime;
mod error;
mod instance;
mod msvm_error;
mod path;
mod value;
pub mod xml;

pub use datetime::{CimDateTime, CimInterval, DateTimeError};
pub use error::{CimError, CimErrorKind};
pub use instance::{EMBEDDED_INSTANCE_QUALIFIERS, Instance, Property, Qualifier};
pub use msvm_error::{MSVM_ERROR, MsvmError, error_type, severity};
pub use path::{ObjectPath, PathError};
pub use value::{CimType, CimValue, PropertyValue, UnknownCimType, ValueError};
pub use xml::XmlError;
