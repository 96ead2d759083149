//! [`Provider`]: the one entry point for CIM operations on a host.
//!
//! Operation errors ([`CimOpError`]) are DSP0200 status codes for problems
//! with the *operation* (unknown class, unknown method, no such instance).
//! Problems with a method's *parameters* are not operation errors: as on
//! Hyper-V they come back as the method's `ReturnValue` (Table A or B,
//! hyperv-api.md §5) with [`MethodOutput::error`] naming the parameter and
//! property.

use std::fmt;
use std::sync::Arc;

use refpoint_cim::{Instance, ObjectPath};

use super::associations::{self, Filter};
use super::method::Table;
use super::model::{
    self, CIM_CONCRETE_JOB, IMAGE_MANAGEMENT_SERVICE, ObjectSpace, REFERENCE_POINT_SERVICE,
    SNAPSHOT_SERVICE, is_a, is_known,
};
use crate::service::Refpoint;

/// One method parameter value, as it travels in CIM-XML (DSP0201
/// `PARAMVALUE`): scalars as their `VALUE` text, embedded instances as a
/// `Value` holding the `<INSTANCE>` text, references as object paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// NULL (absent `VALUE`).
    Null,
    /// A scalar as CIM-XML `VALUE` text (numbers in decimal, booleans
    /// `TRUE`/`FALSE`, datetimes in DMTF form, embedded instances as XML text).
    Value(String),
    /// An array of scalars (`VALUE.ARRAY`).
    Array(Vec<String>),
    /// A reference (`VALUE.REFERENCE`).
    Reference(ObjectPath),
    /// An array of references (`VALUE.REFARRAY`).
    ReferenceArray(Vec<ObjectPath>),
}

/// Result of `InvokeMethod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodOutput {
    /// `ReturnValue` (uint32): 0, 4096, or a code of the method's table.
    pub return_value: u32,
    /// Out-parameters that have a value (NULL ones are left out), e.g.
    /// `("Job", Reference(..))`, `("ResultingSnapshot", Reference(..))`,
    /// `("Errors", Array(..))`.
    pub out_params: Vec<(String, ParamValue)>,
    /// Not a CIM out-parameter: when `return_value` is an error, the message
    /// naming the parameter, property, file or offset at fault.
    pub error: Option<String>,
}

impl MethodOutput {
    /// The out-parameter `name` (case-insensitive), if present.
    pub fn out(&self, name: &str) -> Option<&ParamValue> {
        self.out_params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// A failed CIM operation: a DSP0200 status code and a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CimOpError {
    /// `CIM_ERR_*`: 1 FAILED, 3 INVALID_NAMESPACE, 4 INVALID_PARAMETER,
    /// 5 INVALID_CLASS, 6 NOT_FOUND, 7 NOT_SUPPORTED, 17 METHOD_NOT_FOUND.
    pub status: u16,
    /// What was wrong, naming the class, key, method or parameter.
    pub description: String,
}

impl CimOpError {
    /// `CIM_ERR_FAILED` (1).
    pub const FAILED: u16 = 1;
    /// `CIM_ERR_INVALID_NAMESPACE` (3).
    pub const INVALID_NAMESPACE: u16 = 3;
    /// `CIM_ERR_INVALID_PARAMETER` (4).
    pub const INVALID_PARAMETER: u16 = 4;
    /// `CIM_ERR_INVALID_CLASS` (5).
    pub const INVALID_CLASS: u16 = 5;
    /// `CIM_ERR_NOT_FOUND` (6).
    pub const NOT_FOUND: u16 = 6;
    /// `CIM_ERR_NOT_SUPPORTED` (7).
    pub const NOT_SUPPORTED: u16 = 7;
    /// `CIM_ERR_METHOD_NOT_FOUND` (17).
    pub const METHOD_NOT_FOUND: u16 = 17;

    /// An error with `status` and `description`.
    pub fn new(status: u16, description: impl Into<String>) -> CimOpError {
        CimOpError {
            status,
            description: description.into(),
        }
    }
}

impl fmt::Display for CimOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CIM error {}: {}", self.status, self.description)
    }
}

impl std::error::Error for CimOpError {}

/// How methods that create or change objects run (`CreateSnapshot`,
/// `ConvertToReferencePoint`, `CreateReferencePoint`, `DestroySnapshot`,
/// `DestroyReferencePoint`, `RemoveAssociatedData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MethodMode {
    /// As Hyper-V: 4096 and a `Job` REF; the created object is found through
    /// `Msvm_AffectedJobElement` (`ElementEffects` 5) once the job is done.
    #[default]
    Asynchronous,
    /// 0 and the `Resulting…` out REF, no job. Exports and job methods are
    /// not affected (an export is always a job; `GetVirtualDiskChanges` is
    /// always synchronous).
    Synchronous,
}

/// Default cap on `ChangedByteOffsets[]` per `GetVirtualDiskChanges` call.
pub const DEFAULT_MAX_CHANGED_RANGES: usize = 4096;

/// The CIM operations of one host. `Send + Sync`; cheap to clone.
#[derive(Debug, Clone)]
pub struct Provider {
    rp: Arc<Refpoint>,
    mode: MethodMode,
    max_changed_ranges: usize,
}

/// Which method of which class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    CreateSnapshot,
    DestroySnapshot,
    ConvertToReferencePoint,
    CreateReferencePoint,
    DestroyReferencePoint,
    RemoveAssociatedData,
    ExportReferencePoint,
    GetVirtualDiskChanges,
    RequestStateChange,
    GetError,
    GetErrorEx,
    KillJob,
}

/// (class the method is declared on, name, method).
const METHODS: &[(&str, &str, Method)] = &[
    (SNAPSHOT_SERVICE, "CreateSnapshot", Method::CreateSnapshot),
    (SNAPSHOT_SERVICE, "DestroySnapshot", Method::DestroySnapshot),
    (
        SNAPSHOT_SERVICE,
        "ConvertToReferencePoint",
        Method::ConvertToReferencePoint,
    ),
    (
        REFERENCE_POINT_SERVICE,
        "CreateReferencePoint",
        Method::CreateReferencePoint,
    ),
    (
        REFERENCE_POINT_SERVICE,
        "DestroyReferencePoint",
        Method::DestroyReferencePoint,
    ),
    (
        REFERENCE_POINT_SERVICE,
        "RemoveAssociatedData",
        Method::RemoveAssociatedData,
    ),
    (
        REFERENCE_POINT_SERVICE,
        "ExportReferencePoint",
        Method::ExportReferencePoint,
    ),
    (
        IMAGE_MANAGEMENT_SERVICE,
        "GetVirtualDiskChanges",
        Method::GetVirtualDiskChanges,
    ),
    (
        CIM_CONCRETE_JOB,
        "RequestStateChange",
        Method::RequestStateChange,
    ),
    (CIM_CONCRETE_JOB, "GetError", Method::GetError),
    (CIM_CONCRETE_JOB, "GetErrorEx", Method::GetErrorEx),
    (CIM_CONCRETE_JOB, "KillJob", Method::KillJob),
];

impl Provider {
    /// The namespace of every class served.
    pub const NAMESPACE: &'static str = "root/virtualization/v2";

    /// A provider over an open host ([`MethodMode::Asynchronous`]).
    pub fn new(rp: Arc<Refpoint>) -> Provider {
        Provider {
            rp,
            mode: MethodMode::default(),
            max_changed_ranges: DEFAULT_MAX_CHANGED_RANGES,
        }
    }

    /// Builder: how object-creating methods run.
    pub fn with_mode(mut self, mode: MethodMode) -> Provider {
        self.mode = mode;
        self
    }

    /// Builder: at most `n` (≥ 1) ranges per `GetVirtualDiskChanges` call.
    pub fn with_max_changed_ranges(mut self, n: usize) -> Provider {
        self.max_changed_ranges = n.max(1);
        self
    }

    /// The host service behind this provider.
    pub fn refpoint(&self) -> &Arc<Refpoint> {
        &self.rp
    }

    /// The method mode.
    pub fn mode(&self) -> MethodMode {
        self.mode
    }

    /// The `GetVirtualDiskChanges` range cap.
    pub fn max_changed_ranges(&self) -> usize {
        self.max_changed_ranges
    }

    /// `path` with this host as server and [`Provider::NAMESPACE`], as
    /// `__PATH` is written: `\\HOST\root\virtualization\v2:Class.Key="…"`.
    pub fn locate(&self, path: &ObjectPath) -> ObjectPath {
        path.clone()
            .with_location(self.rp.host_name(), Self::NAMESPACE)
    }

    /// Checks the namespace of a path, if it has one.
    fn check_namespace(path: &ObjectPath) -> Result<(), CimOpError> {
        match &path.namespace {
            Some(ns) if !ns.replace('\\', "/").eq_ignore_ascii_case(Self::NAMESPACE) => {
                Err(CimOpError::new(
                    CimOpError::INVALID_NAMESPACE,
                    format!("namespace {ns} is not {}", Self::NAMESPACE),
                ))
            }
            _ => Ok(()),
        }
    }

    fn check_class(class: &str) -> Result<(), CimOpError> {
        if is_known(class) {
            Ok(())
        } else {
            Err(CimOpError::new(
                CimOpError::INVALID_CLASS,
                format!("class {class} does not exist in {}", Self::NAMESPACE),
            ))
        }
    }

    /// `InvokeMethod`: calls `method` on `target` (a service or job instance
    /// path; a class path for the service singletons is accepted too).
    ///
    /// Parameter problems are the method's `ReturnValue` (Table A or B per
    /// method, RequestStateChange's own table for jobs) with
    /// [`MethodOutput::error`] naming the parameter; see the method modules.
    ///
    /// # Errors
    /// 3 another namespace, 5 unknown class, 6 no such instance, 17 unknown
    /// method, 4 a parameter name the method does not have.
    pub fn invoke_method(
        &self,
        target: &ObjectPath,
        method: &str,
        params: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError> {
        Self::check_namespace(target)?;
        Self::check_class(&target.class_name)?;
        if let Some(out) = self.invoke_collection_method(target, method, params)? {
            return Ok(out);
        }
        let Some((declared_on, _, which)) = METHODS
            .iter()
            .find(|(c, m, _)| is_a(&target.class_name, c) && m.eq_ignore_ascii_case(method))
        else {
            return Err(CimOpError::new(
                CimOpError::METHOD_NOT_FOUND,
                format!("class {} has no method {method}", target.class_name),
            ));
        };
        if *declared_on == CIM_CONCRETE_JOB {
            let id = self.job_of(target)?;
            return match which {
                Method::RequestStateChange => self.request_state_change(&id, params),
                Method::GetError => self.get_error(&id, false, params),
                Method::GetErrorEx => self.get_error(&id, true, params),
                _ => self.kill_job(&id, params),
            };
        }
        if !target.keys.is_empty() {
            let space = ObjectSpace::build(&self.rp);
            if space.find(target).is_none() {
                return Err(CimOpError::new(
                    CimOpError::NOT_FOUND,
                    format!("no instance {target}"),
                ));
            }
        }
        let (table, result) = match which {
            Method::CreateSnapshot => (Table::B, self.create_snapshot(params)?),
            Method::DestroySnapshot => (Table::B, self.destroy_snapshot(params)?),
            Method::ConvertToReferencePoint => (Table::B, self.convert_to_reference_point(params)?),
            Method::CreateReferencePoint => (Table::B, self.create_reference_point(params)?),
            Method::DestroyReferencePoint => (Table::A, self.destroy_reference_point(params)?),
            Method::RemoveAssociatedData => (Table::A, self.remove_associated_data(params)?),
            Method::ExportReferencePoint => (Table::A, self.export_reference_point(params)?),
            Method::GetVirtualDiskChanges => (Table::A, self.get_virtual_disk_changes(params)?),
            Method::RequestStateChange
            | Method::GetError
            | Method::GetErrorEx
            | Method::KillJob => {
                return Err(CimOpError::new(
                    CimOpError::METHOD_NOT_FOUND,
                    format!("{method} is a job method"),
                ));
            }
        };
        Ok(result.unwrap_or_else(|e| table.failure(&e)))
    }

    /// `EnumerateInstances` of `class` and its subclasses
    /// (`CIM_ConcreteJob` → every job), paths with server and namespace.
    ///
    /// # Errors
    /// 5 unknown class.
    pub fn enumerate_instances(
        &self,
        class: &str,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        Self::check_class(class)?;
        let space = ObjectSpace::build_for(&self.rp, class);
        let mut out: Vec<(ObjectPath, Instance)> = space
            .of_class(class)
            .map(|o| (self.locate(&o.path), o.instance.clone()))
            .collect();
        let location = (self.rp.host_name(), Self::NAMESPACE);
        out.extend(
            space
                .associations
                .iter()
                .filter(|a| is_a(a.class, class))
                .map(|a| (self.locate(&a.path()), a.instance(Some(location)))),
        );
        Ok(out)
    }

    /// `EnumerateInstanceNames`: the paths of [`Provider::enumerate_instances`].
    ///
    /// # Errors
    /// 5 unknown class.
    pub fn enumerate_instance_names(&self, class: &str) -> Result<Vec<ObjectPath>, CimOpError> {
        Ok(self
            .enumerate_instances(class)?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    }

    /// `GetInstance`. Reference points are found by their one-key
    /// (`InstanceID`) or two-key path; a job by any job class of its
    /// hierarchy (`CIM_ConcreteJob`, `Msvm_ConcreteJob`, its own).
    ///
    /// # Errors
    /// 3 another namespace, 5 unknown class, 6 no such instance.
    pub fn get_instance(&self, path: &ObjectPath) -> Result<Instance, CimOpError> {
        Self::check_namespace(path)?;
        Self::check_class(&path.class_name)?;
        let space = ObjectSpace::build_for(&self.rp, &path.class_name);
        if let Some(o) = space.find(path) {
            return Ok(o.instance.clone());
        }
        let location = (self.rp.host_name(), Self::NAMESPACE);
        space
            .associations
            .iter()
            .find(|a| {
                is_a(a.class, &path.class_name)
                    && a.ends.iter().all(|(role, end)| {
                        path.key(role)
                            .and_then(|v| v.parse::<ObjectPath>().ok())
                            .is_some_and(|p| model::names(&p, end))
                    })
            })
            .map(|a| a.instance(Some(location)))
            .ok_or_else(|| CimOpError::new(CimOpError::NOT_FOUND, format!("no instance {path}")))
    }

    /// `Associators`: the objects associated with `path`, filtered as DSP0200
    /// says (association class, result class, the role of `path`, the role
    /// of the result).
    ///
    /// # Errors
    /// 3 another namespace, 5 unknown class, 6 when `path` names no instance.
    pub fn associators(
        &self,
        path: &ObjectPath,
        assoc_class: Option<&str>,
        result_class: Option<&str>,
        role: Option<&str>,
        result_role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        let space = self.source_space(path)?;
        let filter = Filter {
            assoc_class,
            result_class,
            role,
            result_role,
        };
        let mut out: Vec<(ObjectPath, Instance)> = Vec::new();
        for (assoc, other) in associations::matching(&space, path, filter) {
            let Some(object) = assoc.ends.get(other).and_then(|(_, p)| space.find(p)) else {
                continue;
            };
            let located = self.locate(&object.path);
            if !out.iter().any(|(p, _)| *p == located) {
                out.push((located, object.instance.clone()));
            }
        }
        Ok(out)
    }

    /// `References`: the association instances that refer to `path`.
    ///
    /// # Errors
    /// 3 another namespace, 5 unknown class, 6 when `path` names no instance.
    pub fn references(
        &self,
        path: &ObjectPath,
        result_class: Option<&str>,
        role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        let space = self.source_space(path)?;
        let filter = Filter {
            assoc_class: result_class,
            role,
            ..Filter::default()
        };
        let location = (self.rp.host_name(), Self::NAMESPACE);
        Ok(associations::matching(&space, path, filter)
            .into_iter()
            .map(|(a, _)| (self.locate(&a.path()), a.instance(Some(location))))
            .collect())
    }

    /// The object space, after checking that `path` names an object.
    fn source_space(&self, path: &ObjectPath) -> Result<ObjectSpace, CimOpError> {
        Self::check_namespace(path)?;
        Self::check_class(&path.class_name)?;
        let space = ObjectSpace::build(&self.rp);
        if space.find(path).is_none() {
            return Err(CimOpError::new(
                CimOpError::NOT_FOUND,
                format!("no instance {path}"),
            ));
        }
        Ok(space)
    }
}
