//! CIM operation requests (DSP0200 §5.3, DSP0201 `SIMPLEREQ`): decoding a
//! message body into a [`Request`] on the service side and encoding one on
//! the client side.
//!
//! Supported intrinsic methods: `GetInstance`, `EnumerateInstances`,
//! `EnumerateInstanceNames`, `Associators`, `AssociatorNames`, `References`,
//! `ReferenceNames`. Any other intrinsic method decodes to
//! `CIM_ERR_NOT_SUPPORTED` (so pywbem's `Iter…` functions fall back from the
//! pull operations). Parameters:
//!
//! * `ClassName`, `InstanceName`, `ObjectName`, `AssocClass`, `ResultClass`,
//!   `Role`, `ResultRole` are honoured; an `ObjectName` naming a class (class
//!   level association queries) is `CIM_ERR_NOT_SUPPORTED`;
//! * `IncludeQualifiers` (default false) and `IncludeClassOrigin` (default
//!   false) are honoured: qualifiers and `CLASSORIGIN`/`PROPAGATED` are
//!   removed from returned instances unless asked for;
//! * `PropertyList` is honoured: returned instances keep only the listed
//!   properties (case-insensitive; an empty list keeps none);
//! * `LocalOnly` and `DeepInheritance` are read and ignored: instances always
//!   carry all their properties, including those of subclasses (DSP0200 1.3
//!   deprecates `LocalOnly` for instance operations);
//! * an unknown parameter, a parameter given twice, or a value of the wrong
//!   element kind is `CIM_ERR_INVALID_PARAMETER` naming the parameter.
//!
//! Extrinsic calls (`METHODCALL`) target a `LOCALINSTANCEPATH` or
//! `LOCALCLASSPATH`; each `PARAMVALUE` becomes a [`ParamValue`]: `VALUE` text
//! (embedded instances stay CIM-XML text), `VALUE.ARRAY`, `VALUE.REFERENCE`,
//! `VALUE.REFARRAY`, an `INSTANCENAME` (as a reference), or an `INSTANCE`
//! element (as its CIM-XML text). A `PARAMTYPE` is checked against the value:
//! text that does not parse as the declared type, or a reference given as
//! text that does not parse as an object path, is `CIM_ERR_INVALID_PARAMETER`.

mod decode;
mod encode;

use refpoint_cim::ObjectPath;

use crate::serve::operations::{CimOpError, ParamValue};

pub(crate) use decode::open_message;
pub use decode::parse_request;
pub(crate) use encode::write_param_value;
pub use encode::{encode_intrinsic, encode_method_call};

/// Options of the instance-returning operations (see the module docs for
/// which are honoured).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceOptions {
    /// `LocalOnly` as sent (ignored).
    pub local_only: Option<bool>,
    /// `DeepInheritance` as sent (ignored).
    pub deep_inheritance: Option<bool>,
    /// `IncludeQualifiers` (default false).
    pub include_qualifiers: bool,
    /// `IncludeClassOrigin` (default false).
    pub include_class_origin: bool,
    /// `PropertyList`; `None` = all properties.
    pub property_list: Option<Vec<String>>,
}

/// Filters of `Associators`/`AssociatorNames`/`References`/`ReferenceNames`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssociationFilter {
    /// `AssocClass` (associators only).
    pub assoc_class: Option<String>,
    /// `ResultClass`.
    pub result_class: Option<String>,
    /// `Role`.
    pub role: Option<String>,
    /// `ResultRole` (associators only).
    pub result_role: Option<String>,
}

/// One supported intrinsic operation with its decoded parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrinsicOp {
    /// `GetInstance(InstanceName)`.
    GetInstance {
        /// The instance.
        instance_name: ObjectPath,
        /// Options.
        options: InstanceOptions,
    },
    /// `EnumerateInstances(ClassName)`.
    EnumerateInstances {
        /// The class.
        class_name: String,
        /// Options.
        options: InstanceOptions,
    },
    /// `EnumerateInstanceNames(ClassName)`.
    EnumerateInstanceNames {
        /// The class.
        class_name: String,
    },
    /// `Associators(ObjectName, AssocClass, ResultClass, Role, ResultRole)`.
    Associators {
        /// The source instance.
        object_name: ObjectPath,
        /// Filters.
        filter: AssociationFilter,
        /// Options.
        options: InstanceOptions,
    },
    /// `AssociatorNames(…)`.
    AssociatorNames {
        /// The source instance.
        object_name: ObjectPath,
        /// Filters.
        filter: AssociationFilter,
    },
    /// `References(ObjectName, ResultClass, Role)`.
    References {
        /// The target instance.
        object_name: ObjectPath,
        /// Filters (`result_class`, `role`).
        filter: AssociationFilter,
        /// Options.
        options: InstanceOptions,
    },
    /// `ReferenceNames(…)`.
    ReferenceNames {
        /// The target instance.
        object_name: ObjectPath,
        /// Filters (`result_class`, `role`).
        filter: AssociationFilter,
    },
}

impl IntrinsicOp {
    /// The DSP0200 method name (`IMETHODCALL NAME`).
    pub fn method_name(&self) -> &'static str {
        match self {
            IntrinsicOp::GetInstance { .. } => "GetInstance",
            IntrinsicOp::EnumerateInstances { .. } => "EnumerateInstances",
            IntrinsicOp::EnumerateInstanceNames { .. } => "EnumerateInstanceNames",
            IntrinsicOp::Associators { .. } => "Associators",
            IntrinsicOp::AssociatorNames { .. } => "AssociatorNames",
            IntrinsicOp::References { .. } => "References",
            IntrinsicOp::ReferenceNames { .. } => "ReferenceNames",
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `IMETHODCALL`: an intrinsic operation in `namespace` (`\` separators);
    /// `Err` when the operation or its parameters cannot be served.
    Intrinsic {
        /// `LOCALNAMESPACEPATH`.
        namespace: String,
        /// The decoded operation.
        op: Result<IntrinsicOp, CimOpError>,
    },
    /// `METHODCALL`: an extrinsic method on `target` (namespace set; no keys
    /// for a class path).
    Extrinsic {
        /// `LOCALINSTANCEPATH` or `LOCALCLASSPATH`.
        target: ObjectPath,
        /// True for `LOCALCLASSPATH`.
        target_is_class: bool,
        /// Decoded `PARAMVALUE`s.
        params: Result<Vec<(String, ParamValue)>, CimOpError>,
    },
}

/// A decoded `SIMPLEREQ` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `MESSAGE ID`, echoed in the response.
    pub message_id: String,
    /// `IMETHODCALL NAME` / `METHODCALL NAME` (must match the `CIMMethod` header).
    pub method: String,
    /// The call.
    pub call: Call,
}
