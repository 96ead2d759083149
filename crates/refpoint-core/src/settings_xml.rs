//! CIM instances of the model and the settings document (CIM-XML, DSP0201).
//!
//! The settings of a VM, snapshot or reference point are rendered as one
//! XML document: an XML declaration, then a root element
//! `<REFPOINT.CONFIGURATION VERSION="1">` holding, in this order,
//!
//! 1. the `Msvm_VirtualSystemSettingData` `INSTANCE`,
//! 2. one `Msvm_StorageAllocationSettingData` `INSTANCE` per disk
//!    (`ResourceType` 31, `ResourceSubType` "Microsoft:Hyper-V:Virtual Hard
//!    Disk", `HostResource` = [the leaf path at that point in time]),
//! 3. for a reference point, its `Msvm_VirtualSystemReferencePoint` `INSTANCE`.
//!
//! DSP0201 has no element for "a list of instances outside a CIM operation"
//! (its `DECLARATION` holds classes, `VALUE.NAMEDINSTANCE` needs instance
//! names), so the root is refpoint's own; each `INSTANCE` inside is plain
//! minimal CIM-XML that `Instance::from_xml` (or any DSP0201 reader) parses
//! on its own.

use std::path::Path;

use refpoint_cim::classes::{self, RESOURCE_SUBTYPE_VIRTUAL_HARD_DISK, RESOURCE_TYPE_LOGICAL_DISK};
use refpoint_cim::{Instance, ObjectPath};

use crate::frozen::FrozenDisk;
use crate::ids::{self, cim_guid};
use crate::model::{VirtualDisk, VirtualSystem, VirtualSystemSettingData};
use crate::reference_point::ReferencePoint;
use crate::snapshot::Snapshot;

/// Root element of a settings document.
pub const CONFIGURATION_ELEMENT: &str = "REFPOINT.CONFIGURATION";
/// `VERSION` attribute of the root element.
pub const CONFIGURATION_VERSION: &str = "1";

impl VirtualSystemSettingData {
    /// As the typed `Msvm_VirtualSystemSettingData`: `InstanceID`,
    /// `ElementName`, `VirtualSystemType`, `VirtualSystemIdentifier`,
    /// `ConfigurationID` (the GUID of the InstanceID), `CreationTime`, and
    /// for snapshots `Parent` (the parent snapshot's object path,
    /// `Msvm_VirtualSystemSettingData.InstanceID="…"`).
    pub fn to_cim(&self) -> classes::VirtualSystemSettingData {
        let parent = self.parent.as_ref().map(|p| {
            classes::VirtualSystemSettingData {
                instance_id: p.clone(),
                ..Default::default()
            }
            .object_path()
            .to_string()
        });
        classes::VirtualSystemSettingData {
            instance_id: self.instance_id.clone(),
            element_name: self.element_name.clone(),
            virtual_system_identifier: cim_guid(&self.virtual_system_identifier),
            virtual_system_type: self.virtual_system_type.clone(),
            configuration_id: ids::parse_settings_instance_id(&self.instance_id)
                .ok()
                .map(|g| cim_guid(&g)),
            creation_time: Some(self.creation_time.to_cim()),
            parent,
            notes: Vec::new(),
        }
    }

    /// As a `Msvm_VirtualSystemSettingData` instance (see [`Self::to_cim`]).
    pub fn to_instance(&self) -> Instance {
        self.to_cim().to_instance()
    }
}

fn sasd(
    instance_id: &str,
    element_name: &str,
    host_resource: &Path,
) -> classes::StorageAllocationSettingData {
    // Paths are checked to be UTF-8 when disks are defined, so this is exact.
    let path = host_resource.to_string_lossy().into_owned();
    classes::StorageAllocationSettingData {
        instance_id: instance_id.to_owned(),
        host_resource: vec![path],
        resource_type: RESOURCE_TYPE_LOGICAL_DISK,
        resource_sub_type: RESOURCE_SUBTYPE_VIRTUAL_HARD_DISK.to_owned(),
        parent: None,
        element_name: Some(element_name.to_owned()),
    }
}

impl VirtualDisk {
    /// As the typed `Msvm_StorageAllocationSettingData` (`ResourceType` 31,
    /// `ResourceSubType` "Microsoft:Hyper-V:Virtual Hard Disk"); `HostResource`
    /// is `[active leaf]`.
    pub fn to_cim(&self) -> classes::StorageAllocationSettingData {
        sasd(&self.instance_id, &self.element_name, self.active_leaf())
    }

    /// As a `Msvm_StorageAllocationSettingData` instance.
    pub fn to_instance(&self) -> Instance {
        self.to_cim().to_instance()
    }
}

impl FrozenDisk {
    /// As the point-in-time `Msvm_StorageAllocationSettingData`;
    /// `HostResource` is `[frozen leaf]`.
    pub fn to_cim(&self) -> classes::StorageAllocationSettingData {
        sasd(&self.instance_id, &self.element_name, self.frozen_leaf())
    }

    /// As a `Msvm_StorageAllocationSettingData` instance.
    pub fn to_instance(&self) -> Instance {
        self.to_cim().to_instance()
    }
}

impl VirtualSystem {
    /// As the typed `Msvm_ComputerSystem` (`Name` = VM GUID, `ElementName`).
    pub fn to_cim(&self) -> classes::ComputerSystem {
        classes::ComputerSystem {
            name: self.cim_name(),
            element_name: self.element_name.clone(),
            enabled_state: None,
        }
    }

    /// As a `Msvm_ComputerSystem` instance.
    pub fn to_instance(&self) -> Instance {
        self.to_cim().to_instance()
    }

    /// Object path `Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="<GUID>"`.
    pub fn object_path(&self) -> ObjectPath {
        self.to_cim().object_path()
    }

    /// The VM's current settings document (see the module docs): its
    /// settings and its disks with their active leaves.
    pub fn settings_xml(&self) -> String {
        let mut instances = vec![self.settings.to_instance()];
        instances.extend(self.disks.iter().map(VirtualDisk::to_instance));
        document(&instances)
    }
}

impl Snapshot {
    /// Object path `Msvm_VirtualSystemSettingData.InstanceID="Microsoft:<SNAPSHOT GUID>"`.
    pub fn object_path(&self) -> ObjectPath {
        self.settings.to_cim().object_path()
    }

    /// The snapshot's settings document: the snapshot's own
    /// `Msvm_VirtualSystemSettingData` and its frozen disks.
    pub fn settings_xml(&self) -> String {
        document(&point_in_time(&self.settings, &self.disks))
    }
}

impl ReferencePoint {
    /// As the typed `Msvm_VirtualSystemReferencePoint`: `InstanceID`,
    /// `VirtualSystemIdentifier`, `ElementName`, `ReferencePointType`,
    /// `ConsistencyLevel`, `HasAssociatedData`, and the index-parallel
    /// `VirtualDiskIdentifiers[]` / `ResilientChangeTrackingIdentifiers[]`.
    pub fn to_cim(&self) -> classes::VirtualSystemReferencePoint {
        classes::VirtualSystemReferencePoint {
            instance_id: self.instance_id.clone(),
            virtual_system_identifier: cim_guid(&self.virtual_system_identifier),
            reference_point_type: self.reference_point_type,
            consistency_level: self.consistency_level,
            has_associated_data: self.has_associated_data,
            virtual_disk_identifiers: self.virtual_disk_identifiers(),
            resilient_change_tracking_identifiers: self.resilient_change_tracking_identifiers(),
            element_name: Some(self.element_name.clone()),
        }
    }

    /// As a `Msvm_VirtualSystemReferencePoint` instance.
    pub fn to_instance(&self) -> Instance {
        self.to_cim().to_instance()
    }

    /// Object path with both keys:
    /// `Msvm_VirtualSystemReferencePoint.InstanceID="…",VirtualSystemIdentifier="…"`.
    pub fn object_path(&self) -> ObjectPath {
        self.to_cim().object_path()
    }

    /// The settings document at the reference point (see the module docs):
    /// the VM's settings at that instant, the point-in-time SASDs (frozen
    /// leaves), and the reference point itself. This is what an export
    /// writes as `Virtual Machines/<VM GUID>.xml`.
    pub fn settings_xml(&self) -> String {
        let mut instances = point_in_time(&self.settings, &self.disks);
        instances.push(self.to_instance());
        document(&instances)
    }
}

/// The settings and the point-in-time SASDs (frozen leaves) of a snapshot or
/// reference point.
fn point_in_time(settings: &VirtualSystemSettingData, disks: &[FrozenDisk]) -> Vec<Instance> {
    let mut instances = vec![settings.to_instance()];
    instances.extend(disks.iter().map(FrozenDisk::to_instance));
    instances
}

fn document(instances: &[Instance]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<{CONFIGURATION_ELEMENT} VERSION=\"{CONFIGURATION_VERSION}\">\n"
    );
    for i in instances {
        out.push_str(&i.to_xml());
        out.push('\n');
    }
    out.push_str(&format!("</{CONFIGURATION_ELEMENT}>\n"));
    out
}
