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
mod snapshot_settings;

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
pub use snapshot_settings::{
    REFERENCE_POINT_SETTING_DATA, SNAPSHOT_SETTING_DATA, VirtualSystemReferencePointSettingData,
    VirtualSystemSnapshotSettingData,
};

use crate::error::CimError;
use crate::instance::Instance;

/// Classes of the Hyper-V v2 namespace (and their CIM bases) that refpoint
/// knows by name (hyperv-api.md §1–§4). An embedded instance of one of these
/// where another is required is a *wrong class* (32776); any other class name
/// is an *unknown class* (32773).
pub const KNOWN_CLASSES: &[&str] = &[
    "CIM_Collection",
    "CIM_ConcreteJob",
    "CIM_Error",
    "CIM_ManagedElement",
    "CIM_SettingData",
    "Msvm_AffectedJobElement",
    "Msvm_CollectedReferencePoints",
    "Msvm_CollectionManagementService",
    "Msvm_CollectionReferencePointExportJob",
    "Msvm_CollectionReferencePointExportSettingData",
    "Msvm_CollectionReferencePointService",
    "Msvm_CollectionReferencePointSettingData",
    "Msvm_CollectionSnapshotExportSettingData",
    "Msvm_CollectionSnapshotService",
    "Msvm_ComputerSystem",
    "Msvm_ConcreteJob",
    "Msvm_Error",
    "Msvm_ImageManagementService",
    "Msvm_MemorySettingData",
    "Msvm_ProcessorSettingData",
    "Msvm_ReferencePointCollection",
    "Msvm_ReferencePointOfVirtualSystem",
    "Msvm_ResourceAllocationSettingData",
    "Msvm_SnapshotCollection",
    "Msvm_SnapshotOfVirtualSystem",
    "Msvm_StorageAllocationSettingData",
    "Msvm_StorageJob",
    "Msvm_SystemExportSettingData",
    "Msvm_VirtualMachineToDisks",
    "Msvm_VirtualSystemCollection",
    "Msvm_VirtualSystemExportSettingData",
    "Msvm_VirtualSystemManagementService",
    "Msvm_VirtualSystemReferencePoint",
    "Msvm_VirtualSystemReferencePointExportJob",
    "Msvm_VirtualSystemReferencePointExportSettingData",
    "Msvm_VirtualSystemReferencePointService",
    "Msvm_VirtualSystemReferencePointSettingData",
    "Msvm_VirtualSystemSettingData",
    "Msvm_VirtualSystemSnapshotService",
    "Msvm_VirtualSystemSnapshotSettingData",
];

/// True when `class_name` is in [`KNOWN_CLASSES`] (case-insensitive).
pub fn is_known_class(class_name: &str) -> bool {
    KNOWN_CLASSES
        .iter()
        .any(|k| k.eq_ignore_ascii_case(class_name))
}

/// Checks that `inst` is of class `expected`.
///
/// # Errors
/// [`CimError::WrongClass`] (→ 32776) for another known class,
/// [`CimError::UnknownClass`] (→ 32773) for a class refpoint does not know.
pub fn expect_model_class(inst: &Instance, expected: &str) -> Result<(), CimError> {
    if inst.is_class(expected) || is_known_class(&inst.class_name) {
        inst.expect_class(expected)
    } else {
        Err(CimError::UnknownClass {
            class: inst.class_name.clone(),
        })
    }
}

/// The value of a property that must be present and non-NULL.
pub(crate) fn required<T>(inst: &Instance, name: &str, value: Option<T>) -> Result<T, CimError> {
    value.ok_or_else(|| CimError::MissingProperty {
        class: inst.class_name.clone(),
        property: name.to_owned(),
    })
}
