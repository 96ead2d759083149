//! The provider surface the service serves: the operations are
//! [`CimOperations`] (implemented in-process by the WMI provider, remotely by
//! [`crate::client::ServiceClient`]), their value types the provider's; this
//! module adds the DSP0200 `CIM_ERR_*` status codes and names.

pub use crate::wmi::CimOperations;
pub use crate::wmi::provider::{CimOpError, MethodOutput, ParamValue};

/// `CIM_ERR_*` status codes used by the service (DSP0200 table 2), the same
/// values as the associated constants of [`CimOpError`].
pub mod status {
    use super::CimOpError;
    /// CIM_ERR_FAILED.
    pub const FAILED: u16 = CimOpError::FAILED;
    /// CIM_ERR_INVALID_NAMESPACE.
    pub const INVALID_NAMESPACE: u16 = CimOpError::INVALID_NAMESPACE;
    /// CIM_ERR_INVALID_PARAMETER.
    pub const INVALID_PARAMETER: u16 = CimOpError::INVALID_PARAMETER;
    /// CIM_ERR_NOT_FOUND.
    pub const NOT_FOUND: u16 = CimOpError::NOT_FOUND;
    /// CIM_ERR_NOT_SUPPORTED.
    pub const NOT_SUPPORTED: u16 = CimOpError::NOT_SUPPORTED;
}

/// DSP0200 name of a `CIM_ERR_*` code ("CIM_ERR_NOT_FOUND"); "unknown" otherwise.
pub fn status_name(code: u16) -> &'static str {
    match code {
        1 => "CIM_ERR_FAILED",
        2 => "CIM_ERR_ACCESS_DENIED",
        3 => "CIM_ERR_INVALID_NAMESPACE",
        4 => "CIM_ERR_INVALID_PARAMETER",
        5 => "CIM_ERR_INVALID_CLASS",
        6 => "CIM_ERR_NOT_FOUND",
        7 => "CIM_ERR_NOT_SUPPORTED",
        8 => "CIM_ERR_CLASS_HAS_CHILDREN",
        9 => "CIM_ERR_CLASS_HAS_INSTANCES",
        10 => "CIM_ERR_INVALID_SUPERCLASS",
        11 => "CIM_ERR_ALREADY_EXISTS",
        12 => "CIM_ERR_NO_SUCH_PROPERTY",
        13 => "CIM_ERR_TYPE_MISMATCH",
        14 => "CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED",
        15 => "CIM_ERR_INVALID_QUERY",
        16 => "CIM_ERR_METHOD_NOT_AVAILABLE",
        17 => "CIM_ERR_METHOD_NOT_FOUND",
        _ => "unknown",
    }
}
