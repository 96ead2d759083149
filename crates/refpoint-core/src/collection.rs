//! Virtual system collections (`Msvm_VirtualSystemCollection`,
//! `reference/hyperv-api.md` §1.5): named groups of virtual systems whose
//! reference points are taken at one instant and exported together, managed
//! by `Msvm_CollectionManagementService.DefineCollection` / `AddMember` /
//! `RemoveMember` / `DestroyCollection`.
//!
//! The catalog (`Collections`, see [`crate::catalog`]) holds each
//! collection's `CollectionID` (a GUID), `ElementName`, type (0: collection
//! of virtual systems; 1, collection of collections, is not supported) and
//! its members as VM GUIDs in the order they were added. The reference
//! points and snapshots of collections are in [`crate::collection_point`].
//!
//! Rules (checked by every operation and when the catalog is loaded):
//! - `CollectionID`s are unique; `ElementName`s are unique too
//!   (case-insensitive). Hyper-V says names are "not guaranteed unique";
//!   refpoint refuses duplicates so that the CLI can name a collection.
//! - members are VMs of the catalog, each at most once per collection;
//! - a collection that still has reference point collections or snapshot
//!   collections cannot be destroyed (they name it by
//!   `VirtualSystemCollectionId`).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogError};
use crate::error::{HostError, ObjectKind, Result};
use crate::host::{Host, not_found};
use crate::ids::{self, cim_guid};
use crate::model::guid_upper;
use crate::timestamp::Timestamp;

/// `DefineCollection.Type` 0: a collection of virtual systems.
pub const COLLECTION_TYPE_VIRTUAL_SYSTEMS: u16 = 0;
/// `DefineCollection.Type` 1: a collection of collections (not supported).
pub const COLLECTION_TYPE_COLLECTIONS: u16 = 1;
/// Longest `ElementName` of a collection, in characters (the CIM MaxLen of
/// `CollectionID`, applied to names too).
pub const MAX_COLLECTION_NAME_CHARS: usize = 256;

/// `Msvm_VirtualSystemCollection`: a group of virtual systems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualSystemCollection {
    /// `CollectionID` (key): a GUID, upper case in CIM.
    #[serde(rename = "CollectionID", with = "guid_upper")]
    pub collection_id: Uuid,
    /// `ElementName`: the name given to `DefineCollection`.
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// `DefineCollection.Type`: always 0 (virtual systems).
    #[serde(rename = "CollectionType")]
    pub collection_type: u16,
    /// When the collection was defined.
    #[serde(rename = "CreationTime")]
    pub creation_time: Timestamp,
    /// Members (`Msvm_CollectedVirtualSystems`): VM GUIDs in the order added.
    #[serde(rename = "Members")]
    pub members: Vec<MemberGuid>,
}

/// One member VM GUID, serialised upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberGuid(#[serde(with = "guid_upper")] pub Uuid);

impl VirtualSystemCollection {
    /// `CollectionID` in CIM form (upper-case GUID).
    pub fn cim_id(&self) -> String {
        cim_guid(&self.collection_id)
    }

    /// The member VM GUIDs, in the order they were added.
    pub fn member_guids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.members.iter().map(|m| m.0)
    }

    /// True if VM `vm` is a member.
    pub fn has_member(&self, vm: &Uuid) -> bool {
        self.members.iter().any(|m| m.0 == *vm)
    }
}

/// Checks a collection `ElementName`: 1 to 256 characters, no control
/// characters, no leading or trailing space.
///
/// # Errors
/// The reason, as text.
pub fn check_collection_name(name: &str) -> std::result::Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err("is empty".to_owned());
    }
    if chars > MAX_COLLECTION_NAME_CHARS {
        return Err(format!(
            "has {chars} characters, at most {MAX_COLLECTION_NAME_CHARS} allowed"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character".to_owned());
    }
    if name.trim() != name {
        return Err("starts or ends with white space".to_owned());
    }
    Ok(())
}

impl Host {
    /// Every virtual system collection, in definition order.
    pub fn collections(&self) -> &[VirtualSystemCollection] {
        &self.catalog.collections
    }

    /// A collection by `CollectionID` (GUID, any case, braces optional) or
    /// by `ElementName` (case-insensitive).
    ///
    /// # Errors
    /// [`HostError::NotFound`] ([`ObjectKind::Collection`]).
    pub fn collection(&self, id_or_name: &str) -> Result<&VirtualSystemCollection> {
        self.collection_index(id_or_name)
            .and_then(|i| self.catalog.collections.get(i))
            .ok_or_else(|| not_found(ObjectKind::Collection, id_or_name))
    }

    pub(crate) fn collection_index(&self, id_or_name: &str) -> Option<usize> {
        let all = &self.catalog.collections;
        if let Ok(guid) = ids::parse_guid(id_or_name)
            && let Some(i) = all.iter().position(|c| c.collection_id == guid)
        {
            return Some(i);
        }
        let wanted = id_or_name.to_lowercase();
        all.iter()
            .position(|c| c.element_name.to_lowercase() == wanted)
    }

    /// The collections VM `vm` (GUID) is a member of.
    pub fn collections_of(&self, vm: &Uuid) -> Vec<&VirtualSystemCollection> {
        self.catalog
            .collections
            .iter()
            .filter(|c| c.has_member(vm))
            .collect()
    }

    /// `Msvm_CollectionManagementService.DefineCollection(Name, Id, Type)`:
    /// a new, empty collection of virtual systems.
    ///
    /// `id` is the `CollectionID` to use (a GUID); `None` or empty makes a
    /// new one.
    ///
    /// # Errors
    /// [`HostError::NotSupported`] for `collection_type` 1 (collection of
    /// collections); [`HostError::InvalidParameter`] for another type, a
    /// name that breaks [`check_collection_name`] or is taken, an `id` that
    /// is not a GUID or is taken; [`HostError::Io`]. The catalog is
    /// unchanged on error.
    pub fn define_collection(
        &mut self,
        name: &str,
        id: Option<&str>,
        collection_type: u16,
    ) -> Result<&VirtualSystemCollection> {
        match collection_type {
            COLLECTION_TYPE_VIRTUAL_SYSTEMS => {}
            COLLECTION_TYPE_COLLECTIONS => {
                return Err(HostError::NotSupported {
                    what: "DefineCollection Type 1 (collection of collections)".to_owned(),
                });
            }
            other => {
                return Err(HostError::InvalidParameter {
                    parameter: "Type",
                    reason: format!("{other} is not 0 (virtual systems) or 1 (collections)"),
                });
            }
        }
        check_collection_name(name).map_err(|reason| HostError::InvalidParameter {
            parameter: "Name",
            reason: format!("collection name {name:?} {reason}"),
        })?;
        if self
            .catalog
            .collections
            .iter()
            .any(|c| c.element_name.eq_ignore_ascii_case(name))
        {
            return Err(HostError::InvalidParameter {
                parameter: "Name",
                reason: format!("a collection named {name:?} already exists"),
            });
        }
        let collection_id = match id.map(str::trim).filter(|s| !s.is_empty()) {
            None => Uuid::new_v4(),
            Some(text) => ids::parse_guid(text).map_err(|e| HostError::InvalidParameter {
                parameter: "Id",
                reason: e.to_string(),
            })?,
        };
        if self
            .catalog
            .collections
            .iter()
            .any(|c| c.collection_id == collection_id)
        {
            return Err(HostError::InvalidParameter {
                parameter: "Id",
                reason: format!(
                    "a collection with CollectionID {} already exists",
                    cim_guid(&collection_id)
                ),
            });
        }
        let mut catalog = self.catalog.clone();
        catalog.collections.push(VirtualSystemCollection {
            collection_id,
            element_name: name.to_owned(),
            collection_type,
            creation_time: Timestamp::now(),
            members: Vec::new(),
        });
        self.commit(catalog)?;
        tracing::info!(collection = %cim_guid(&collection_id), name, "collection defined");
        self.collection(&cim_guid(&collection_id))
    }

    /// `Msvm_CollectionManagementService.AddMember(Member, Collection)`.
    ///
    /// # Errors
    /// [`HostError::NotFound`] for an unknown collection or VM;
    /// [`HostError::InvalidState`] if the VM is already a member;
    /// [`HostError::Io`].
    pub fn add_member(&mut self, collection: &str, vm: &str) -> Result<&VirtualSystemCollection> {
        let index = self
            .collection_index(collection)
            .ok_or_else(|| not_found(ObjectKind::Collection, collection))?;
        let vm_guid = self.vm(vm)?.name;
        let mut catalog = self.catalog.clone();
        let entry = catalog
            .collections
            .get_mut(index)
            .ok_or_else(|| not_found(ObjectKind::Collection, collection))?;
        if entry.has_member(&vm_guid) {
            return Err(HostError::InvalidState {
                operation: "AddMember",
                object: entry.cim_id(),
                reason: format!("virtual system {} is already a member", cim_guid(&vm_guid)),
            });
        }
        entry.members.push(MemberGuid(vm_guid));
        let id = entry.cim_id();
        self.commit(catalog)?;
        self.collection(&id)
    }

    /// `Msvm_CollectionManagementService.RemoveMember(Member, Collection)`.
    /// Reference point collections taken before keep their member reference
    /// points.
    ///
    /// # Errors
    /// [`HostError::NotFound`] for an unknown collection or VM;
    /// [`HostError::InvalidState`] if the VM is not a member;
    /// [`HostError::Io`].
    pub fn remove_member(
        &mut self,
        collection: &str,
        vm: &str,
    ) -> Result<&VirtualSystemCollection> {
        let index = self
            .collection_index(collection)
            .ok_or_else(|| not_found(ObjectKind::Collection, collection))?;
        let vm_guid = self.vm(vm)?.name;
        let mut catalog = self.catalog.clone();
        let entry = catalog
            .collections
            .get_mut(index)
            .ok_or_else(|| not_found(ObjectKind::Collection, collection))?;
        if !entry.has_member(&vm_guid) {
            return Err(HostError::InvalidState {
                operation: "RemoveMember",
                object: entry.cim_id(),
                reason: format!("virtual system {} is not a member", cim_guid(&vm_guid)),
            });
        }
        entry.members.retain(|m| m.0 != vm_guid);
        let id = entry.cim_id();
        self.commit(catalog)?;
        self.collection(&id)
    }

    /// `Msvm_CollectionManagementService.DestroyCollection(Collection)`.
    ///
    /// # Errors
    /// [`HostError::NotFound`]; [`HostError::InvalidState`] while reference
    /// point collections or snapshot collections of it exist (naming them);
    /// [`HostError::Io`].
    pub fn destroy_collection(&mut self, collection: &str) -> Result<()> {
        let index = self
            .collection_index(collection)
            .ok_or_else(|| not_found(ObjectKind::Collection, collection))?;
        let mut catalog = self.catalog.clone();
        let removed = catalog.collections.remove(index);
        let dependents: Vec<String> = catalog
            .reference_point_collections
            .iter()
            .filter(|r| r.virtual_system_collection_id == removed.collection_id)
            .map(|r| format!("Msvm_ReferencePointCollection {}", r.cim_id()))
            .chain(
                catalog
                    .snapshot_collections
                    .iter()
                    .filter(|s| s.virtual_system_collection_id == removed.collection_id)
                    .map(|s| format!("Msvm_SnapshotCollection {}", s.cim_id())),
            )
            .collect();
        if !dependents.is_empty() {
            return Err(HostError::InvalidState {
                operation: "DestroyCollection",
                object: removed.cim_id(),
                reason: format!("it still has {}; destroy them first", dependents.join(", ")),
            });
        }
        self.commit(catalog)?;
        tracing::info!(collection = %removed.cim_id(), "collection destroyed");
        Ok(())
    }
}

/// The catalog rules of collections (module docs): unique ids and names,
/// known members without repetition.
pub(crate) fn validate_collections(catalog: &Catalog) -> std::result::Result<(), CatalogError> {
    let vms: HashSet<Uuid> = catalog.virtual_systems.iter().map(|v| v.name).collect();
    let mut ids = HashSet::new();
    let mut names = HashSet::new();
    for c in &catalog.collections {
        if !ids.insert(c.collection_id) {
            return Err(CatalogError::DuplicateIdentifier {
                what: ObjectKind::Collection,
                id: c.cim_id(),
            });
        }
        if !names.insert(c.element_name.to_lowercase()) {
            return Err(CatalogError::DuplicateCollectionName {
                name: c.element_name.clone(),
            });
        }
        let mut seen = HashSet::new();
        for m in c.member_guids() {
            if !vms.contains(&m) {
                return Err(CatalogError::UnknownVirtualSystem {
                    what: ObjectKind::Collection,
                    id: c.cim_id(),
                    vm: cim_guid(&m),
                });
            }
            if !seen.insert(m) {
                return Err(CatalogError::CollectionMember {
                    collection: c.cim_id(),
                    member: cim_guid(&m),
                    reason: "listed twice".to_owned(),
                });
            }
        }
    }
    crate::collection_point::validate_point_collections(catalog, &ids)
}
