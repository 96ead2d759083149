//! The WMI method surface of refpoint as CIM operations: one [`Provider`]
//! that answers `InvokeMethod`, `EnumerateInstances`,
//! `EnumerateInstanceNames`, `GetInstance`, `Associators` and `References`
//! for the classes of `root/virtualization/v2` that refpoint implements
//! (hyperv-api.md §1–§5, §7). It is used in-process (tests, CLI) and by the
//! host service (`refpoint serve`), which only adds the CIM-XML/HTTP wire.
//!
//! - [`provider`]: the entry point, operation dispatch and the data types of
//!   the operations ([`ParamValue`], [`MethodOutput`], [`CimOpError`]).
//! - [`model`]: the object space (every instance, class hierarchy, keys).
//! - [`associations`]: association classes, `Associators`, `References`.
//! - [`collection_model`], `collection_service`: collections, their
//!   reference points and snapshots, and the three collection services.
//! - `snapshot_service`, `reference_point_service`, `image_management`,
//!   `job_methods`: the methods, each with its return-code table.
//! - `method`: job vs synchronous execution, `Job`/`Resulting…` REFs.
//! - [`operations`]: the [`CimOperations`] trait (in-process or remote).

pub mod associations;
pub mod collection_model;
mod collection_service;
mod image_management;
mod job_methods;
mod method;
pub mod model;
pub mod operations;
mod params;
pub mod provider;
mod reference_point_service;
mod snapshot_service;

pub use method::{ELEMENT_EFFECTS_UNKNOWN, Table};
pub use operations::CimOperations;
pub use provider::{
    CimOpError, DEFAULT_MAX_CHANGED_RANGES, MethodMode, MethodOutput, ParamValue, Provider,
};
