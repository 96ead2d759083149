//! `Msvm_VirtualSystemSettingData` and `Msvm_StorageAllocationSettingData`
//! (hyperv-api.md §1.1, §1.7, §7.2).

use super::required;
use crate::datetime::CimDateTime;
use crate::error::CimError;
use crate::instance::Instance;
use crate::path::ObjectPath;
use crate::value::CimType;

/// CIM class name of [`VirtualSystemSettingData`].
pub const VIRTUAL_SYSTEM_SETTING_DATA: &str = "Msvm_VirtualSystemSettingData";
/// CIM class name of [`StorageAllocationSettingData`].
pub const STORAGE_ALLOCATION_SETTING_DATA: &str = "Msvm_StorageAllocationSettingData";
/// `ResourceType` of a virtual hard disk allocation (31, Logical Disk).
pub const RESOURCE_TYPE_LOGICAL_DISK: u16 = 31;
/// `ResourceSubType` of a VHD/VHDX allocation.
pub const RESOURCE_SUBTYPE_VIRTUAL_HARD_DISK: &str = "Microsoft:Hyper-V:Virtual Hard Disk";

/// `VirtualSystemType` strings of `Msvm_VirtualSystemSettingData` (§1.7).
pub mod virtual_system_type {
    /// A realized VM's current configuration.
    pub const SYSTEM_REALIZED: &str = "Microsoft:Hyper-V:System:Realized";
    /// A planned VM.
    pub const SYSTEM_PLANNED: &str = "Microsoft:Hyper-V:System:Planned";
    /// A standard (user) snapshot.
    pub const SNAPSHOT_REALIZED: &str = "Microsoft:Hyper-V:Snapshot:Realized";
    /// A recovery (backup) snapshot, `SnapshotType` 32768.
    pub const SNAPSHOT_RECOVERY: &str = "Microsoft:Hyper-V:Snapshot:Recovery";
    /// A planned snapshot.
    pub const SNAPSHOT_PLANNED: &str = "Microsoft:Hyper-V:Snapshot:Planned";
    /// A snapshot whose files are missing.
    pub const SNAPSHOT_MISSING: &str = "Microsoft:Hyper-V:Snapshot:Missing";
}

/// `Msvm_VirtualSystemSettingData`: a VM configuration or a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualSystemSettingData {
    /// `InstanceID` (Key), `Microsoft:<GUID>` in Hyper-V.
    pub instance_id: String,
    /// `ElementName`: display name.
    pub element_name: String,
    /// `VirtualSystemIdentifier`: the VM GUID.
    pub virtual_system_identifier: String,
    /// `VirtualSystemType` (see [`virtual_system_type`]).
    pub virtual_system_type: String,
    /// `ConfigurationID`: GUID of this configuration.
    pub configuration_id: Option<String>,
    /// `CreationTime`.
    pub creation_time: Option<CimDateTime>,
    /// `Parent`: object path of the parent snapshot, if any.
    pub parent: Option<String>,
    /// `Notes[]`.
    pub notes: Vec<String>,
}

impl VirtualSystemSettingData {
    /// Object path `Msvm_VirtualSystemSettingData.InstanceID="…"`.
    pub fn object_path(&self) -> ObjectPath {
        ObjectPath::new(VIRTUAL_SYSTEM_SETTING_DATA).with_key("InstanceID", &self.instance_id)
    }

    /// The instance.
    pub fn to_instance(&self) -> Instance {
        Instance::new(VIRTUAL_SYSTEM_SETTING_DATA)
            .with("InstanceID", self.instance_id.as_str())
            .with("ElementName", self.element_name.as_str())
            .with(
                "VirtualSystemIdentifier",
                self.virtual_system_identifier.as_str(),
            )
            .with("VirtualSystemType", self.virtual_system_type.as_str())
            .with_typed(
                "ConfigurationID",
                self.configuration_id.as_deref(),
                CimType::String,
            )
            .with_typed("CreationTime", self.creation_time, CimType::Datetime)
            .with_typed("Parent", self.parent.as_deref(), CimType::String)
            .with_typed("Notes", self.notes.as_slice(), CimType::String)
    }

    /// Reads an instance.
    ///
    /// # Errors
    /// [`CimError::WrongClass`], [`CimError::TypeMismatch`],
    /// [`CimError::MissingProperty`] for a missing `InstanceID`.
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, VIRTUAL_SYSTEM_SETTING_DATA)?;
        Ok(VirtualSystemSettingData {
            instance_id: required(inst, "InstanceID", inst.get_string("InstanceID")?)?,
            element_name: inst.get_string("ElementName")?.unwrap_or_default(),
            virtual_system_identifier: inst
                .get_string("VirtualSystemIdentifier")?
                .unwrap_or_default(),
            virtual_system_type: inst.get_string("VirtualSystemType")?.unwrap_or_default(),
            configuration_id: inst.get_string("ConfigurationID")?,
            creation_time: inst.get_datetime("CreationTime")?,
            parent: inst.get_string("Parent")?,
            notes: inst.get_string_array("Notes")?.unwrap_or_default(),
        })
    }
}

/// `Msvm_StorageAllocationSettingData`: one virtual hard disk attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAllocationSettingData {
    /// `InstanceID` (Key), `Microsoft:<VM GUID>\<disk GUID>\0\0\D`.
    pub instance_id: String,
    /// `HostResource[]`: path of the active VHDX (one element).
    pub host_resource: Vec<String>,
    /// `ResourceType` (31 for a virtual hard disk).
    pub resource_type: u16,
    /// `ResourceSubType` (`Microsoft:Hyper-V:Virtual Hard Disk`).
    pub resource_sub_type: String,
    /// `Parent`: object path of the controller/drive this disk hangs off.
    pub parent: Option<String>,
    /// `ElementName`.
    pub element_name: Option<String>,
}

impl Default for StorageAllocationSettingData {
    fn default() -> Self {
        StorageAllocationSettingData {
            instance_id: String::new(),
            host_resource: Vec::new(),
            resource_type: RESOURCE_TYPE_LOGICAL_DISK,
            resource_sub_type: RESOURCE_SUBTYPE_VIRTUAL_HARD_DISK.to_owned(),
            parent: None,
            element_name: None,
        }
    }
}

impl StorageAllocationSettingData {
    /// Object path `Msvm_StorageAllocationSettingData.InstanceID="…"`.
    pub fn object_path(&self) -> ObjectPath {
        ObjectPath::new(STORAGE_ALLOCATION_SETTING_DATA).with_key("InstanceID", &self.instance_id)
    }

    /// True for a VHD/VHDX allocation (`ResourceType` 31 and the VHD sub-type).
    pub fn is_virtual_hard_disk(&self) -> bool {
        self.resource_type == RESOURCE_TYPE_LOGICAL_DISK
            && self.resource_sub_type == RESOURCE_SUBTYPE_VIRTUAL_HARD_DISK
    }

    /// The instance.
    pub fn to_instance(&self) -> Instance {
        Instance::new(STORAGE_ALLOCATION_SETTING_DATA)
            .with("InstanceID", self.instance_id.as_str())
            .with_typed(
                "HostResource",
                self.host_resource.as_slice(),
                CimType::String,
            )
            .with("ResourceType", self.resource_type)
            .with("ResourceSubType", self.resource_sub_type.as_str())
            .with_typed("Parent", self.parent.as_deref(), CimType::String)
            .with_typed("ElementName", self.element_name.as_deref(), CimType::String)
    }

    /// Reads an instance.
    ///
    /// # Errors
    /// [`CimError::WrongClass`], [`CimError::TypeMismatch`],
    /// [`CimError::MissingProperty`] for a missing `InstanceID` or `ResourceType`.
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, STORAGE_ALLOCATION_SETTING_DATA)?;
        Ok(StorageAllocationSettingData {
            instance_id: required(inst, "InstanceID", inst.get_string("InstanceID")?)?,
            host_resource: inst.get_string_array("HostResource")?.unwrap_or_default(),
            resource_type: required(inst, "ResourceType", inst.get_u16("ResourceType")?)?,
            resource_sub_type: inst.get_string("ResourceSubType")?.unwrap_or_default(),
            parent: inst.get_string("Parent")?,
            element_name: inst.get_string("ElementName")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CimErrorKind;

    #[test]
    fn sasd_round_trips_and_is_a_virtual_hard_disk() {
        let sasd = StorageAllocationSettingData {
            instance_id: r"Microsoft:VM\D1\0\0\D".into(),
            host_resource: vec!["/vms/a/disk.vhdx".into()],
            element_name: Some("Hard Disk Image".into()),
            ..Default::default()
        };

        let back = StorageAllocationSettingData::from_instance(
            &Instance::from_xml(&sasd.to_instance().to_xml()).unwrap(),
        )
        .unwrap();

        assert_eq!(back, sasd);
        assert!(back.is_virtual_hard_disk());
    }

    #[test]
    fn sasd_host_resource_as_scalar_is_type_mismatch() {
        let inst = Instance::new(STORAGE_ALLOCATION_SETTING_DATA)
            .with("InstanceID", "x")
            .with("ResourceType", 31u16)
            .with("HostResource", "/a.vhdx");

        let err = StorageAllocationSettingData::from_instance(&inst).unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::TypeMismatch);
        assert_eq!(err.property(), Some("HostResource"));
    }

    #[test]
    fn vssd_round_trips_with_creation_time() {
        let vssd = VirtualSystemSettingData {
            instance_id: "Microsoft:CFG".into(),
            element_name: "vm1".into(),
            virtual_system_identifier: "VM".into(),
            virtual_system_type: virtual_system_type::SNAPSHOT_RECOVERY.into(),
            configuration_id: Some("CFG".into()),
            creation_time: Some("20240102030405.000000+000".parse().unwrap()),
            parent: None,
            notes: vec!["n".into()],
        };

        let back = VirtualSystemSettingData::from_instance(
            &Instance::from_xml(&vssd.to_instance().to_xml()).unwrap(),
        )
        .unwrap();

        assert_eq!(back, vssd);
    }

    #[test]
    fn vssd_of_wrong_class_is_rejected() {
        let err = VirtualSystemSettingData::from_instance(&Instance::new("Msvm_ComputerSystem"))
            .unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::WrongClass);
    }
}
