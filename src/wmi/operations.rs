//! [`CimOperations`]: the CIM operations the CLI (`refpoint wmi`, `refpoint
//! jobs`) needs, as a trait, so that the same command logic runs
//! in-process ([`Provider`]) or against a running host service (a remote
//! client implementing the trait over CIM-XML/HTTP).

use refpoint_cim::{Instance, ObjectPath};

use super::provider::{CimOpError, MethodOutput, ParamValue, Provider};

/// CIM operations on one host (DSP0200 names and semantics).
pub trait CimOperations {
    /// `InvokeMethod`.
    ///
    /// # Errors
    /// The operation's [`CimOpError`].
    fn invoke_method(
        &self,
        target: &ObjectPath,
        method: &str,
        params: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError>;

    /// `EnumerateInstances` (with subclasses).
    ///
    /// # Errors
    /// The operation's [`CimOpError`].
    fn enumerate_instances(&self, class: &str) -> Result<Vec<(ObjectPath, Instance)>, CimOpError>;

    /// `GetInstance`.
    ///
    /// # Errors
    /// The operation's [`CimOpError`] (6 when there is no such instance).
    fn get_instance(&self, path: &ObjectPath) -> Result<Instance, CimOpError>;

    /// `Associators` (`AssocClass`, `ResultClass`, `Role`, `ResultRole`).
    ///
    /// # Errors
    /// The operation's [`CimOpError`].
    fn associators(
        &self,
        path: &ObjectPath,
        assoc_class: Option<&str>,
        result_class: Option<&str>,
        role: Option<&str>,
        result_role: Option<&str>,
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
}
