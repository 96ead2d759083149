//! [`CimOperations`]: every CIM operation refpoint serves on
//! `root/virtualization/v2`, as a trait, so that the same logic runs
//! in-process ([`Provider`]) or against a running host service
//! ([`crate::client::ServiceClient`], CIM-XML over HTTP): the CLI's `refpoint
//! wmi` and `refpoint jobs` commands take a `&dyn CimOperations`, and the
//! service (`refpoint serve`) dispatches decoded requests to one.

use refpoint_cim::{Instance, ObjectPath};

use super::provider::{CimOpError, MethodOutput, ParamValue, Provider};

/// CIM operations on one host (DSP0200 names and semantics); every method
/// maps to one DSP0200 operation. `Send + Sync`: the service shares one
/// implementation between its connections.
pub trait CimOperations: Send + Sync {
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
    /// `CIM_ERR_INVALID_CLASS` (5) for a class the provider does not know.
    fn enumerate_instances(&self, class: &str) -> Result<Vec<(ObjectPath, Instance)>, CimOpError>;

    /// `EnumerateInstanceNames` of `class` (and its subclasses).
    ///
    /// # Errors
    /// As [`CimOperations::enumerate_instances`].
    fn enumerate_instance_names(&self, class: &str) -> Result<Vec<ObjectPath>, CimOpError>;

    /// `GetInstance`.
    ///
    /// # Errors
    /// `CIM_ERR_NOT_FOUND` (6) when there is no such instance.
    fn get_instance(&self, path: &ObjectPath) -> Result<Instance, CimOpError>;

    /// `Associators` of the instance at `path`, filtered by `AssocClass`,
    /// `ResultClass`, `Role`, `ResultRole` as DSP0200 says.
    ///
    /// # Errors
    /// `CIM_ERR_NOT_FOUND` (6) for an unknown source instance.
    fn associators(
        &self,
        path: &ObjectPath,
        assoc_class: Option<&str>,
        result_class: Option<&str>,
        role: Option<&str>,
        result_role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError>;

    /// `References` to the instance at `path`, filtered by `ResultClass`
    /// and `Role`.
    ///
    /// # Errors
    /// `CIM_ERR_NOT_FOUND` (6) for an unknown source instance.
    fn references(
        &self,
        path: &ObjectPath,
        result_class: Option<&str>,
        role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError>;
}

impl CimOperations for Provider {
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
