//! [`ServedOperations`]: every CIM operation the service exposes, as a trait
//! with exactly the shape of the WMI provider ([`Provider`]), so the codec
//! and transport are tested against any implementation. It is a superset of
//! the CLI's [`crate::wmi::CimOperations`] (it adds
//! `EnumerateInstanceNames` and `References`); the value types are the
//! provider's.

use refpoint_cim::{Instance, ObjectPath};

use crate::wmi::provider::Provider;
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

/// The operations of `root/virtualization/v2` the service serves; the WMI
/// provider implements it in-process, [`crate::client::ServiceClient`]
/// remotely. Every method maps to one DSP0200 operation.
pub trait ServedOperations: Send + Sync {
    /// `InvokeMethod` (extrinsic `METHODCALL`) on an instance or class path.
    ///
    /// # Errors
    /// `CIM_ERR_*` when the target or method does not exist or the
    /// parameters cannot be read; method-level failures are a non-zero
    /// `ReturnValue` instead.
    fn invoke_method(
        &self,
        target: &ObjectPath,
        method: &str,
        params: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError>;

    /// `EnumerateInstances` of `class` (and its subclasses).
    ///
    /// # Errors
    /// `CIM_ERR_INVALID_CLASS` for a class the provider does not know.
    fn enumerate_instances(&self, class: &str) -> Result<Vec<(ObjectPath, Instance)>, CimOpError>;

    /// `EnumerateInstanceNames` of `class`.
    ///
    /// # Errors
    /// As [`ServedOperations::enumerate_instances`].
    fn enumerate_instance_names(&self, class: &str) -> Result<Vec<ObjectPath>, CimOpError>;

    /// `GetInstance`.
    ///
    /// # Errors
    /// `CIM_ERR_NOT_FOUND` when no such instance exists.
    fn get_instance(&self, path: &ObjectPath) -> Result<Instance, CimOpError>;

    /// `Associators` of the instance at `path`, filtered as DSP0200 says.
    ///
    /// # Errors
    /// `CIM_ERR_NOT_FOUND` for an unknown source instance.
    fn associators(
        &self,
        path: &ObjectPath,
        assoc_class: Option<&str>,
        result_class: Option<&str>,
        role: Option<&str>,
        result_role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError>;

    /// `References` to the instance at `path`.
    ///
    /// # Errors
    /// `CIM_ERR_NOT_FOUND` for an unknown source instance.
    fn references(
        &self,
        path: &ObjectPath,
        result_class: Option<&str>,
        role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError>;
}

impl ServedOperations for Provider {
    fn invoke_method(
        &self,
        target: &ObjectPath,
        method: &str,
        params: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError> {
        Provider::invoke_method(self, target, method, params)
    }

    fn enumerate_instances(&self, class: &str) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        Provider::enumerate_instances(self, class)
    }

    fn enumerate_instance_names(&self, class: &str) -> Result<Vec<ObjectPath>, CimOpError> {
        Provider::enumerate_instance_names(self, class)
    }

    fn get_instance(&self, path: &ObjectPath) -> Result<Instance, CimOpError> {
        Provider::get_instance(self, path)
    }

    fn associators(
        &self,
        path: &ObjectPath,
        assoc_class: Option<&str>,
        result_class: Option<&str>,
        role: Option<&str>,
        result_role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        Provider::associators(self, path, assoc_class, result_class, role, result_role)
    }

    fn references(
        &self,
        path: &ObjectPath,
        result_class: Option<&str>,
        role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        Provider::references(self, path, result_class, role)
    }
}
