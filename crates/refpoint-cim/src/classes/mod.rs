//! Typed models of the Hyper-V classes refpoint reads and writes, each with
//! `to_instance()` and `from_instance()` (class checked, property types
//! checked against the MOF).
//!
//! Sources: MSDN "Hyper-V WMI provider (V2)" class pages, summarised in
//! hyperv-api.md §1.3 (reference point), §3 (settings), §6 (wire formats).

mod computer_system;
mod export_settings;
mod reference_point;
mod settings;

pub use computer_system::{COMPUTER_SYSTEM, ComputerSystem};
pub use export_settings::{
    COLLECTION_EXPORT_SETTING_DATA, CollectionReferencePointExportSettingData, EXPORT_SETTING_DATA,
    ReferencePointExportSettingData, VIRTUAL_MACHINE_TO_DISKS, VirtualMachineToDisks,
};
pub use reference_point::{
    REFERENCE_POINT, VirtualSystemReferencePoint, consistency_level, reference_point_type,
};
pub use settings::{
    RESOURCE_SUBTYPE_VIRTUAL_HARD_DISK, RESOURCE_TYPE_LOGICAL_DISK,
    STORAGE_ALLOCATION_SETTING_DATA, StorageAllocationSettingData, VIRTUAL_SYSTEM_SETTING_DATA,
    VirtualSystemSettingData, virtual_system_type,
};

use crate::error::CimError;
use crate::instance::Instance;

/// The value of a property that must be present and non-NULL.
pub(crate) fn required<T>(inst: &Instance, name: &str, value: Option<T>) -> Result<T, CimError> {
    value.ok_or_else(|| CimError::MissingProperty {
        class: inst.class_name.clone(),
        property: name.to_owned(),
    })
}
