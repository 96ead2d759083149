//! The virtual-system model: [`VirtualSystem`] (`Msvm_ComputerSystem`), its
//! settings [`VirtualSystemSettingData`] (`Msvm_VirtualSystemSettingData`),
//! and its [`VirtualDisk`]s (`Msvm_StorageAllocationSettingData`), each a
//! VHDX chain ([`LayerChain`]).
//!
//! Field names in the catalog are the CIM property names where one exists
//! (`Name`, `ElementName`, `InstanceID`, `VirtualSystemType`, …).

use std::path::{Path, PathBuf};

use refpoint_cim::classes::virtual_system_type;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{self, cim_guid};
use crate::timestamp::Timestamp;
use crate::tracking::DiskTracking;

/// `VirtualSystemType` of a virtual system's own settings.
pub const VIRTUAL_SYSTEM_TYPE_REALIZED: &str = virtual_system_type::SYSTEM_REALIZED;
/// `VirtualSystemType` of a recovery (backup) snapshot, `SnapshotType` 32768.
pub const VIRTUAL_SYSTEM_TYPE_SNAPSHOT_RECOVERY: &str = virtual_system_type::SNAPSHOT_RECOVERY;
/// `VirtualSystemType` of a standard snapshot, `SnapshotType` 2 (Full).
pub const VIRTUAL_SYSTEM_TYPE_SNAPSHOT_REALIZED: &str = virtual_system_type::SNAPSHOT_REALIZED;
/// `ElementName` Hyper-V gives a virtual hard disk's SASD.
pub const DISK_ELEMENT_NAME: &str = "Hard Disk Image";
/// Longest `ElementName` Hyper-V accepts for a virtual machine, in characters.
pub const MAX_VM_NAME_CHARS: usize = 100;

/// Serde for GUIDs in their CIM form (upper case), accepting any case.
pub(crate) mod guid_upper {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub(crate) fn serialize<S: Serializer>(g: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::ids::cim_guid(g))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        crate::ids::parse_guid(&text).map_err(serde::de::Error::custom)
    }
}

/// `Msvm_VirtualSystemSettingData`: the settings of a virtual system or of a
/// snapshot (`reference/hyperv-api.md` §1.1, §1.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualSystemSettingData {
    /// `Microsoft:<VM GUID>` for a VM, `Microsoft:<SNAPSHOT GUID>` for a snapshot.
    #[serde(rename = "InstanceID")]
    pub instance_id: String,
    /// Display name: the VM's name, or `<VM name> - (<UTC time>)` for a snapshot.
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// One of the `VIRTUAL_SYSTEM_TYPE_*` constants.
    #[serde(rename = "VirtualSystemType")]
    pub virtual_system_type: String,
    /// The VM GUID (`Msvm_ComputerSystem.Name`) these settings belong to.
    #[serde(rename = "VirtualSystemIdentifier", with = "guid_upper")]
    pub virtual_system_identifier: Uuid,
    /// When the VM or snapshot was created.
    #[serde(rename = "CreationTime")]
    pub creation_time: Timestamp,
    /// Snapshots only: `InstanceID` of the parent snapshot (the VM's most
    /// recent snapshot when this one was taken); rendered in CIM as that
    /// snapshot's object path.
    #[serde(rename = "Parent", default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// One layer of a VHDX chain as recorded in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ChainLayer {
    /// Absolute path of the VHDX/AVHDX file.
    pub path: PathBuf,
    /// The file's `DataWriteGuid` when refpoint last saw it (MS-VHDX §2.2.2).
    /// For frozen layers this must never change.
    pub data_write_guid: Uuid,
}

/// A non-empty VHDX chain, leaf (active or frozen top layer) first, then its
/// parents down to the base. Serialised as a JSON array of [`ChainLayer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<ChainLayer>", into = "Vec<ChainLayer>")]
pub struct LayerChain {
    leaf: ChainLayer,
    parents: Vec<ChainLayer>,
}

impl LayerChain {
    /// Builds a chain from layers, leaf first.
    ///
    /// # Errors
    /// A message if `layers` is empty or a path is not absolute.
    pub fn new(layers: Vec<ChainLayer>) -> Result<LayerChain, String> {
        if let Some(l) = layers.iter().find(|l| !l.path.is_absolute()) {
            return Err(format!(
                "chain layer path {} is not absolute",
                l.path.display()
            ));
        }
        let mut it = layers.into_iter();
        let leaf = it.next().ok_or("a disk chain has no layer")?;
        Ok(LayerChain {
            leaf,
            parents: it.collect(),
        })
    }

    /// The top layer: the active leaf of a VM's disk, or the frozen top of a
    /// snapshot or reference point.
    pub fn leaf(&self) -> &ChainLayer {
        &self.leaf
    }

    /// The layers below the leaf, nearest parent first.
    pub fn parents(&self) -> &[ChainLayer] {
        &self.parents
    }

    /// Every layer, leaf first.
    pub fn layers(&self) -> impl Iterator<Item = &ChainLayer> {
        std::iter::once(&self.leaf).chain(self.parents.iter())
    }

    /// Every layer's path, leaf first (the input of `Chain::from_paths`).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.layers().map(|l| l.path.clone()).collect()
    }

    /// Number of layers (at least 1).
    pub fn len(&self) -> usize {
        self.parents.len().saturating_add(1)
    }

    /// Always false: a chain has at least its leaf.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The base (bottom) layer.
    pub fn base(&self) -> &ChainLayer {
        self.parents.last().unwrap_or(&self.leaf)
    }

    /// Whether `path` is one of the layers.
    pub fn contains(&self, path: &Path) -> bool {
        self.layers().any(|l| l.path == path)
    }

    /// A chain with `new_leaf` on top of all of this chain's layers.
    pub(crate) fn with_new_leaf(&self, new_leaf: ChainLayer) -> LayerChain {
        let mut parents = Vec::with_capacity(self.len());
        parents.extend(self.layers().cloned());
        LayerChain {
            leaf: new_leaf,
            parents,
        }
    }

    /// This chain without the layer at `path` (a parent merged away);
    /// `None` if `path` is the leaf or not a layer.
    pub(crate) fn without(&self, path: &Path) -> Option<LayerChain> {
        if self.leaf.path == path || !self.parents.iter().any(|l| l.path == path) {
            return None;
        }
        Some(LayerChain {
            leaf: self.leaf.clone(),
            parents: self
                .parents
                .iter()
                .filter(|l| l.path != path)
                .cloned()
                .collect(),
        })
    }

    /// The leaf's recorded DataWriteGuid replaced.
    pub(crate) fn set_leaf_data_write_guid(&mut self, guid: Uuid) {
        self.leaf.data_write_guid = guid;
    }
}

impl TryFrom<Vec<ChainLayer>> for LayerChain {
    type Error = String;

    fn try_from(layers: Vec<ChainLayer>) -> Result<Self, Self::Error> {
        LayerChain::new(layers)
    }
}

impl From<LayerChain> for Vec<ChainLayer> {
    fn from(c: LayerChain) -> Self {
        let mut v = Vec::with_capacity(c.len());
        v.push(c.leaf);
        v.extend(c.parents);
        v
    }
}

/// A virtual hard disk of a VM: `Msvm_StorageAllocationSettingData` with
/// `ResourceType` 31, `ResourceSubType` "Microsoft:Hyper-V:Virtual Hard Disk".
/// `HostResource` = `[active leaf path]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualDisk {
    /// `Microsoft:<VM GUID>\<disk GUID>\0\<index>\D` (controller 0, location = index).
    #[serde(rename = "InstanceID")]
    pub instance_id: String,
    /// The disk's GUID (refpoint's own; not the VHDX VirtualDiskId).
    #[serde(rename = "DiskGuid", with = "guid_upper")]
    pub disk_guid: Uuid,
    /// Location on controller 0 (the `<index>` of the InstanceID).
    #[serde(rename = "Address")]
    pub address: u32,
    /// "Hard Disk Image".
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// The disk's chain, active leaf first.
    #[serde(rename = "Chain")]
    pub chain: LayerChain,
    /// Current change-tracking epoch: the number of snapshots taken of this
    /// disk (see [`RctId`](crate::ids::RctId)).
    #[serde(rename = "RctEpoch")]
    pub rct_epoch: u64,
    /// Change-tracking state: which layers hold which epochs, the committed
    /// journal records, a pending merge (see [`crate::tracking`]).
    #[serde(rename = "ChangeTracking", default)]
    pub tracking: DiskTracking,
}

impl VirtualDisk {
    /// The active leaf (the only layer ever written).
    pub fn active_leaf(&self) -> &Path {
        &self.chain.leaf().path
    }

    /// `HostResource`: the active leaf's path, as a one-element list.
    pub fn host_resource(&self) -> Vec<PathBuf> {
        vec![self.active_leaf().to_owned()]
    }
}

/// A virtual system (`Msvm_ComputerSystem`) with its settings and disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualSystem {
    /// `Name`: the VM GUID (upper case in CIM).
    #[serde(rename = "Name", with = "guid_upper")]
    pub name: Uuid,
    /// `ElementName`: the display name, unique on the host (case-insensitive),
    /// also the folder name of its exports.
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// Its `Msvm_VirtualSystemSettingData` (`InstanceID` `Microsoft:<VM GUID>`).
    #[serde(rename = "Settings")]
    pub settings: VirtualSystemSettingData,
    /// Its virtual hard disks in controller order.
    #[serde(rename = "Disks")]
    pub disks: Vec<VirtualDisk>,
}

impl VirtualSystem {
    /// `Name` in CIM form: the upper-case VM GUID.
    pub fn cim_name(&self) -> String {
        cim_guid(&self.name)
    }

    /// The disk with this SASD `InstanceID` (compared as Hyper-V does:
    /// case-insensitive, doubled `\` tolerated).
    pub fn disk(&self, instance_id: &str) -> Option<&VirtualDisk> {
        self.disks
            .iter()
            .find(|d| ids::instance_ids_equal(&d.instance_id, instance_id))
    }
}

/// Checks a VM `ElementName`: it names the VM's export folder, so it must be a
/// portable file name (Windows rules, as Hyper-V's export folders): 1 to 100
/// characters, no control characters, none of `/ \ : * ? " < > |`, not `.` or
/// `..`, no leading/trailing space and no trailing dot.
///
/// # Errors
/// The reason, as text.
pub fn check_vm_element_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err("is empty".to_owned());
    }
    if chars > MAX_VM_NAME_CHARS {
        return Err(format!(
            "has {chars} characters, at most {MAX_VM_NAME_CHARS} allowed"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || "/\\:*?\"<>|".contains(*c))
    {
        return Err(format!("contains {c:?}, not allowed in a folder name"));
    }
    if name == "." || name == ".." {
        return Err("is a relative directory name".to_owned());
    }
    if name.starts_with(' ') || name.ends_with(' ') || name.ends_with('.') {
        return Err("starts or ends with a space, or ends with a dot".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(p: &str) -> ChainLayer {
        ChainLayer {
            path: PathBuf::from(p),
            data_write_guid: Uuid::from_u128(7),
        }
    }

    #[test]
    fn layer_chain_keeps_leaf_first_order_through_serde() {
        let chain = LayerChain::new(vec![layer("/a.avhdx"), layer("/b.vhdx")]).unwrap();

        let json = serde_json::to_string(&chain).unwrap();
        let back: LayerChain = serde_json::from_str(&json).unwrap();

        assert_eq!(back.leaf().path, Path::new("/a.avhdx"));
        assert_eq!(back.base().path, Path::new("/b.vhdx"));
        assert_eq!(
            back.paths(),
            vec![PathBuf::from("/a.avhdx"), PathBuf::from("/b.vhdx")]
        );
    }

    #[test]
    fn empty_layer_chain_is_refused() {
        let err = serde_json::from_str::<LayerChain>("[]").unwrap_err();
        assert!(err.to_string().contains("no layer"), "{err}");
    }

    #[test]
    fn relative_layer_path_is_refused() {
        let err = LayerChain::new(vec![layer("disk.vhdx")]).unwrap_err();
        assert!(err.contains("disk.vhdx"), "{err}");
    }

    #[test]
    fn new_leaf_goes_on_top_of_every_layer() {
        let chain = LayerChain::new(vec![layer("/a.avhdx"), layer("/b.vhdx")]).unwrap();

        let grown = chain.with_new_leaf(layer("/c.avhdx"));

        assert_eq!(
            grown.paths(),
            vec![
                PathBuf::from("/c.avhdx"),
                PathBuf::from("/a.avhdx"),
                PathBuf::from("/b.vhdx")
            ]
        );
    }

    #[test]
    fn vm_names_that_cannot_be_folder_names_are_refused() {
        for bad in ["", "a/b", "a\\b", "..", "x.", " x", "a:b", "tab\there"] {
            assert!(check_vm_element_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_vm_element_name(&"n".repeat(101)).is_err());
        assert!(check_vm_element_name("Generation 1 (SQL)").is_ok());
    }
}
