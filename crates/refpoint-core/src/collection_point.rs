//! Reference points and snapshots of collections
//! (`reference/hyperv-api.md` §1.4, §2.2, §2.3):
//! `Msvm_ReferencePointCollection` (one member reference point per VM,
//! `Msvm_CollectedReferencePoints`) made by
//! `Msvm_CollectionReferencePointService.CreateReferencePoint` or by
//! `Msvm_CollectionSnapshotService.ConvertToReferencePoint` from a
//! `Msvm_SnapshotCollection`; `DestroyReferencePoint` and
//! `RemoveAssociatedData` on collections.
//!
//! **One instant for every member.** Taking a collection's reference point
//! (or snapshot) freezes every disk of every member while holding, besides
//! the host lock, the write lock of every member's active leaf
//! ([`crate::collection_freeze`]): the exclusive `flock` a
//! `refpoint_vhdx::VhdxWriter` takes for its whole life. A writer holding a
//! leaf is waited for (up to the settings' lock timeout, then
//! [`HostError::Timeout`], 32772); a writer that tries to open a leaf
//! meanwhile waits or fails with `Locked` and retries. Since writers open
//! the *current* active leaf through [`Host::open_disk_writer`] (under the
//! host lock), no member disk can be written between the first and the last
//! freeze, and writes after the freeze go to the new leaves. All member
//! snapshots, their conversion and the collection record are one catalog
//! commit: all members or none.
//!
//! Member reference points keep the VM-level classes' meaning
//! (`ConsistencyLevel` 2 = crash); the collection's own `ConsistencyLevel`
//! uses the collection class's order (1 = crash, 2 = application).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogError};
use crate::collection::VirtualSystemCollection;
use crate::collection_freeze::LeafLocks;
use crate::error::{HostError, ObjectKind, Result};
use crate::host::{Host, not_found};
use crate::ids::{self, cim_guid, reference_point_instance_id, settings_instance_id};
use crate::model::guid_upper;
use crate::reference_point::{REFERENCE_POINT_TYPE_RCT, ReferencePointSettings, convert};
use crate::snapshot::{
    CreatedFiles, SNAPSHOT_TYPE_FULL, SNAPSHOT_TYPE_RECOVERY, consistency_level, snapshot_position,
};
use crate::timestamp::Timestamp;

/// `Msvm_ReferencePointCollection.ConsistencyLevel` 1: crash consistent
/// (the collection class's order, opposite to the VM classes).
pub const COLLECTION_CONSISTENCY_CRASH: u16 = 1;
/// `Msvm_ReferencePointCollection.ConsistencyLevel` 2: application consistent.
pub const COLLECTION_CONSISTENCY_APPLICATION: u16 = 2;
/// `Msvm_CollectionSnapshotService.CreateSnapshot.SnapshotType` 1: standard.
pub const COLLECTION_SNAPSHOT_TYPE_STANDARD: u16 = 1;
/// `Msvm_CollectionSnapshotService.CreateSnapshot.SnapshotType` 2: recovery
/// (backup; the VM-level value is 32768).
pub const COLLECTION_SNAPSHOT_TYPE_RECOVERY: u16 = 2;
/// How long a collection freeze waits for writers to release the active
/// leaves, by default.
pub const DEFAULT_FREEZE_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings of a collection freeze (`Msvm_CollectionReferencePointSettingData`
/// and refpoint's lock timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionPointSettings {
    /// `ConsistencyLevel` of the member reference points, in the VM classes'
    /// order: `None`/0/2 crash consistent; 1 (application) is refused with
    /// [`HostError::NotSupported`] (no guest to quiesce).
    pub consistency_level: Option<u16>,
    /// How long to wait for the active leaves' write locks.
    pub lock_timeout: Duration,
}

impl Default for CollectionPointSettings {
    fn default() -> Self {
        CollectionPointSettings {
            consistency_level: None,
            lock_timeout: DEFAULT_FREEZE_LOCK_TIMEOUT,
        }
    }
}

/// `Msvm_ReferencePointCollection`: the reference points of a collection's
/// members taken at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferencePointCollection {
    /// `CollectionID` (key): a GUID.
    #[serde(rename = "CollectionID", with = "guid_upper")]
    pub collection_id: Uuid,
    /// `ElementName`: `<collection name> - (<UTC time>)`.
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// `ReferencePointType`: 2 (RCT).
    #[serde(rename = "ReferencePointType")]
    pub reference_point_type: u16,
    /// `ConsistencyLevel` in the collection class's order: 1 crash.
    #[serde(rename = "ConsistencyLevel")]
    pub consistency_level: u16,
    /// `VirtualSystemCollectionId` (key): the collection it was taken of.
    #[serde(rename = "VirtualSystemCollectionId", with = "guid_upper")]
    pub virtual_system_collection_id: Uuid,
    /// The instant every member was frozen at (taken with all locks held).
    #[serde(rename = "CreationTime")]
    pub creation_time: Timestamp,
    /// Member reference points (`Msvm_CollectedReferencePoints`), InstanceIDs
    /// in the collection's member order at that instant.
    #[serde(rename = "Members")]
    pub members: Vec<String>,
    /// `CollectionID` of the snapshot collection it was converted from.
    #[serde(
        rename = "SourceSnapshotCollection",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub source_snapshot_collection: Option<String>,
}

impl ReferencePointCollection {
    /// `CollectionID` in CIM form.
    pub fn cim_id(&self) -> String {
        cim_guid(&self.collection_id)
    }

    /// `HasAssociatedLog`: true only for log-based points; always false here.
    pub fn has_associated_log(&self) -> bool {
        false
    }
}

/// `Msvm_SnapshotCollection`: snapshots of a collection's members taken at
/// one instant (`Msvm_CollectedSnapshots`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCollection {
    /// `CollectionID` (key): a GUID.
    #[serde(rename = "CollectionID", with = "guid_upper")]
    pub collection_id: Uuid,
    /// `ElementName`: `<collection name> - (<UTC time>)`.
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// The collection it was taken of.
    #[serde(rename = "VirtualSystemCollectionId", with = "guid_upper")]
    pub virtual_system_collection_id: Uuid,
    /// `SnapshotType` of `Msvm_CollectionSnapshotService.CreateSnapshot`:
    /// 1 standard, 2 recovery.
    #[serde(rename = "SnapshotType")]
    pub snapshot_type: u16,
    /// When every member was frozen.
    #[serde(rename = "CreationTime")]
    pub creation_time: Timestamp,
    /// Member snapshots' InstanceIDs (`Microsoft:<SNAPSHOT GUID>`).
    #[serde(rename = "Members")]
    pub members: Vec<String>,
}

impl SnapshotCollection {
    /// `CollectionID` in CIM form.
    pub fn cim_id(&self) -> String {
        cim_guid(&self.collection_id)
    }

    /// True for a recovery snapshot collection (`SnapshotType` 2), the only
    /// kind `ConvertToReferencePoint` accepts.
    pub fn is_recovery(&self) -> bool {
        self.snapshot_type == COLLECTION_SNAPSHOT_TYPE_RECOVERY
    }
}

impl Host {
    /// Every reference point collection, oldest first; of one collection if
    /// `collection` is given (`Msvm_ReferencePointOfVirtualSystemCollection`).
    ///
    /// # Errors
    /// [`HostError::NotFound`] for an unknown collection.
    pub fn reference_point_collections(
        &self,
        collection: Option<&str>,
    ) -> Result<Vec<&ReferencePointCollection>> {
        let id = collection
            .map(|c| self.collection(c).map(|c| c.collection_id))
            .transpose()?;
        Ok(self
            .catalog
            .reference_point_collections
            .iter()
            .filter(|r| id.is_none_or(|i| r.virtual_system_collection_id == i))
            .collect())
    }

    /// A reference point collection by `CollectionID` (GUID, any case).
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for a malformed id;
    /// [`HostError::NotFound`] ([`ObjectKind::ReferencePointCollection`]).
    pub fn reference_point_collection(&self, id: &str) -> Result<&ReferencePointCollection> {
        let guid = parse_collection_id(id, "ReferencePointCollection")?;
        self.catalog
            .reference_point_collections
            .iter()
            .find(|r| r.collection_id == guid)
            .ok_or_else(|| not_found(ObjectKind::ReferencePointCollection, id))
    }

    /// Every snapshot collection, oldest first.
    pub fn snapshot_collections(&self) -> &[SnapshotCollection] {
        &self.catalog.snapshot_collections
    }

    /// A snapshot collection by `CollectionID`.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for a malformed id;
    /// [`HostError::NotFound`] ([`ObjectKind::SnapshotCollection`]).
    pub fn snapshot_collection(&self, id: &str) -> Result<&SnapshotCollection> {
        let guid = parse_collection_id(id, "SnapshotCollection")?;
        self.catalog
            .snapshot_collections
            .iter()
            .find(|s| s.collection_id == guid)
            .ok_or_else(|| not_found(ObjectKind::SnapshotCollection, id))
    }

    /// The reference point collection reference point `rp` (GUID) belongs
    /// to, if any.
    pub fn collection_of_reference_point(&self, rp: &Uuid) -> Option<&ReferencePointCollection> {
        self.catalog.reference_point_collections.iter().find(|c| {
            c.members
                .iter()
                .any(|m| ids::parse_reference_point_id(m).is_ok_and(|(_, guid)| guid == *rp))
        })
    }

    /// The snapshot collection snapshot `snapshot` (GUID) belongs to, if any.
    pub fn collection_of_snapshot(&self, snapshot: &Uuid) -> Option<&SnapshotCollection> {
        self.catalog.snapshot_collections.iter().find(|c| {
            c.members
                .iter()
                .any(|m| ids::parse_settings_instance_id(m).is_ok_and(|g| g == *snapshot))
        })
    }

    /// [`HostError::InvalidState`] if reference point `rp` is a member of a
    /// reference point collection (it goes with the collection).
    pub(crate) fn ensure_not_collected_reference_point(
        &self,
        rp: &Uuid,
        instance_id: &str,
        operation: &'static str,
    ) -> Result<()> {
        match self.collection_of_reference_point(rp) {
            Some(c) => Err(HostError::InvalidState {
                operation,
                object: instance_id.to_owned(),
                reason: format!(
                    "it is a member of Msvm_ReferencePointCollection {}; use the collection's method",
                    c.cim_id()
                ),
            }),
            None => Ok(()),
        }
    }

    /// [`HostError::InvalidState`] if snapshot `snapshot` is a member of a
    /// snapshot collection.
    pub(crate) fn ensure_not_collected_snapshot(
        &self,
        snapshot: &Uuid,
        operation: &'static str,
    ) -> Result<()> {
        match self.collection_of_snapshot(snapshot) {
            Some(c) => Err(HostError::InvalidState {
                operation,
                object: settings_instance_id(snapshot),
                reason: format!(
                    "it is a member of Msvm_SnapshotCollection {}; use the collection's method",
                    c.cim_id()
                ),
            }),
            None => Ok(()),
        }
    }

    /// `Msvm_CollectionReferencePointService.CreateReferencePoint(Collection,
    /// ReferencePointSettings, ReferencePointType 2)`: one reference point
    /// per member, all frozen at one instant (module docs), recorded with
    /// the new `Msvm_ReferencePointCollection` in one catalog commit.
    ///
    /// # Errors
    /// [`HostError::NotFound`] for the collection; [`HostError::InvalidState`]
    /// for a collection without members; [`HostError::NotSupported`] for
    /// application consistency; [`HostError::Timeout`] if a writer holds an
    /// active leaf longer than `settings.lock_timeout`;
    /// [`HostError::LayerModified`], [`HostError::Vhdx`], [`HostError::Io`].
    /// On error no new file remains and the catalog is unchanged.
    pub fn create_collection_reference_point(
        &mut self,
        collection: &str,
        settings: &CollectionPointSettings,
    ) -> Result<&ReferencePointCollection> {
        let consistency = consistency_level(settings.consistency_level, "ConsistencyLevel")?;
        let source = self.collection(collection)?.clone();
        let _locks = self.freeze_locks(&source, settings.lock_timeout, "CreateReferencePoint")?;
        let now = Timestamp::now();
        let mut catalog = self.catalog.clone();
        let mut created = CreatedFiles::default();
        let result = (|| {
            let mut members = Vec::with_capacity(source.members.len());
            for vm in source.member_guids() {
                let snapshot = self.freeze_member(
                    &mut catalog,
                    vm,
                    SNAPSHOT_TYPE_RECOVERY,
                    consistency,
                    &mut created,
                )?;
                let index = snapshot_position(&catalog, snapshot)?;
                let rp = convert(&mut catalog, index, &ReferencePointSettings::default())?;
                members.push(reference_point_instance_id(&vm, &rp));
            }
            let guid = Uuid::new_v4();
            catalog
                .reference_point_collections
                .push(ReferencePointCollection {
                    collection_id: guid,
                    element_name: point_name(&source, now),
                    reference_point_type: REFERENCE_POINT_TYPE_RCT,
                    consistency_level: COLLECTION_CONSISTENCY_CRASH,
                    virtual_system_collection_id: source.collection_id,
                    creation_time: now,
                    members,
                    source_snapshot_collection: None,
                });
            self.commit(catalog).map(|()| guid)
        })();
        match result {
            Ok(guid) => {
                tracing::info!(collection = %source.cim_id(), reference_point_collection = %cim_guid(&guid), "collection reference point created");
                self.reference_point_collection(&cim_guid(&guid))
            }
            Err(e) => {
                created.remove_all();
                Err(e)
            }
        }
    }

    /// `Msvm_CollectionSnapshotService.CreateSnapshot(Collection,
    /// SnapshotSettings, SnapshotType)`: one snapshot per member, frozen at
    /// one instant, recorded with the new `Msvm_SnapshotCollection`.
    /// `snapshot_type` is the collection service's: 2 recovery (member
    /// snapshots of type 32768), 1 standard (type 2).
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for another `snapshot_type`; else as
    /// [`Host::create_collection_reference_point`].
    pub fn create_collection_snapshot(
        &mut self,
        collection: &str,
        snapshot_type: u16,
        settings: &CollectionPointSettings,
    ) -> Result<&SnapshotCollection> {
        let member_type = match snapshot_type {
            COLLECTION_SNAPSHOT_TYPE_RECOVERY => SNAPSHOT_TYPE_RECOVERY,
            COLLECTION_SNAPSHOT_TYPE_STANDARD => SNAPSHOT_TYPE_FULL,
            other => {
                return Err(HostError::InvalidParameter {
                    parameter: "SnapshotType",
                    reason: format!("{other} is not 1 (standard) or 2 (recovery)"),
                });
            }
        };
        let consistency = consistency_level(settings.consistency_level, "ConsistencyLevel")?;
        let source = self.collection(collection)?.clone();
        let _locks = self.freeze_locks(&source, settings.lock_timeout, "CreateSnapshot")?;
        let now = Timestamp::now();
        let mut catalog = self.catalog.clone();
        let mut created = CreatedFiles::default();
        let result = (|| {
            let mut members = Vec::with_capacity(source.members.len());
            for vm in source.member_guids() {
                let snapshot =
                    self.freeze_member(&mut catalog, vm, member_type, consistency, &mut created)?;
                members.push(settings_instance_id(&snapshot));
            }
            let guid = Uuid::new_v4();
            catalog.snapshot_collections.push(SnapshotCollection {
                collection_id: guid,
                element_name: point_name(&source, now),
                virtual_system_collection_id: source.collection_id,
                snapshot_type,
                creation_time: now,
                members,
            });
            self.commit(catalog).map(|()| guid)
        })();
        match result {
            Ok(guid) => self.snapshot_collection(&cim_guid(&guid)),
            Err(e) => {
                created.remove_all();
                Err(e)
            }
        }
    }

    /// `Msvm_CollectionSnapshotService.ConvertToReferencePoint(AffectedSnapshotCollection)`:
    /// every member snapshot becomes a reference point and the snapshot
    /// collection becomes a reference point collection (one commit).
    ///
    /// # Errors
    /// [`HostError::NotFound`]; [`HostError::InvalidState`] for a standard
    /// (non-recovery) snapshot collection; as
    /// [`Host::convert_to_reference_point`] for each member.
    pub fn convert_collection_snapshot(
        &mut self,
        snapshot_collection: &str,
    ) -> Result<&ReferencePointCollection> {
        let source = self.snapshot_collection(snapshot_collection)?.clone();
        if !source.is_recovery() {
            return Err(HostError::InvalidState {
                operation: "ConvertToReferencePoint",
                object: source.cim_id(),
                reason: format!(
                    "only recovery snapshot collections (SnapshotType 2) can be converted; this one is of type {}",
                    source.snapshot_type
                ),
            });
        }
        let mut catalog = self.catalog.clone();
        let mut members = Vec::with_capacity(source.members.len());
        for snapshot in &source.members {
            let guid = ids::parse_settings_instance_id(snapshot).map_err(|e| {
                HostError::InvalidParameter {
                    parameter: "AffectedSnapshotCollection",
                    reason: e.to_string(),
                }
            })?;
            let index = snapshot_position(&catalog, guid)?;
            let vm = catalog
                .snapshots
                .get(index)
                .map(crate::snapshot::Snapshot::virtual_system)
                .ok_or_else(|| not_found(ObjectKind::Snapshot, snapshot))?;
            let rp = convert(&mut catalog, index, &ReferencePointSettings::default())?;
            members.push(reference_point_instance_id(&vm, &rp));
        }
        catalog
            .snapshot_collections
            .retain(|s| s.collection_id != source.collection_id);
        let guid = Uuid::new_v4();
        catalog
            .reference_point_collections
            .push(ReferencePointCollection {
                collection_id: guid,
                element_name: source.element_name.clone(),
                reference_point_type: REFERENCE_POINT_TYPE_RCT,
                consistency_level: COLLECTION_CONSISTENCY_CRASH,
                virtual_system_collection_id: source.virtual_system_collection_id,
                creation_time: source.creation_time,
                members,
                source_snapshot_collection: Some(source.cim_id()),
            });
        self.commit(catalog)?;
        self.reference_point_collection(&cim_guid(&guid))
    }

    /// Removes a snapshot collection and destroys its member snapshots
    /// (each as [`Host::destroy_snapshot`]).
    ///
    /// # Errors
    /// [`HostError::NotFound`]; as [`Host::destroy_snapshot`] (the
    /// collection record is then gone and the remaining members are
    /// ordinary snapshots).
    pub fn destroy_snapshot_collection(&mut self, snapshot_collection: &str) -> Result<()> {
        let source = self.snapshot_collection(snapshot_collection)?.clone();
        let mut catalog = self.catalog.clone();
        catalog
            .snapshot_collections
            .retain(|s| s.collection_id != source.collection_id);
        self.commit(catalog)?;
        for member in &source.members {
            self.destroy_snapshot(member)?;
        }
        Ok(())
    }

    /// `Msvm_CollectionReferencePointService.DestroyReferencePoint(AffectedReferencePointCollection)`:
    /// removes the collection record, then destroys every member reference
    /// point ([`Host::destroy_reference_point`]: frozen layers nothing else
    /// needs are merged away).
    ///
    /// # Errors
    /// [`HostError::NotFound`]; [`HostError::InUse`] (32774) if a member is
    /// pinned by a running export (nothing is changed then); as
    /// [`Host::destroy_reference_point`] (the collection record is then gone
    /// and the remaining members are ordinary reference points).
    pub fn destroy_collection_reference_point(&mut self, id: &str) -> Result<()> {
        let source = self.reference_point_collection(id)?.clone();
        self.ensure_members_not_pinned(&source, "DestroyReferencePoint")?;
        let mut catalog = self.catalog.clone();
        catalog
            .reference_point_collections
            .retain(|r| r.collection_id != source.collection_id);
        self.commit(catalog)?;
        for member in &source.members {
            self.destroy_reference_point(member)?;
        }
        tracing::info!(reference_point_collection = %source.cim_id(), "collection reference point destroyed");
        Ok(())
    }

    /// `Msvm_CollectionReferencePointService.RemoveAssociatedData(AffectedReferencePointCollection)`:
    /// [`Host::remove_associated_data`] of every member (idempotent).
    ///
    /// # Errors
    /// [`HostError::NotFound`]; [`HostError::InUse`] if a member is pinned
    /// (nothing is changed then); as [`Host::remove_associated_data`].
    pub fn remove_collection_associated_data(&mut self, id: &str) -> Result<()> {
        let source = self.reference_point_collection(id)?.clone();
        self.ensure_members_not_pinned(&source, "RemoveAssociatedData")?;
        for member in &source.members {
            self.remove_associated_data(member)?;
        }
        Ok(())
    }

    /// True when every member reference point still has its frozen layers
    /// (the collection can be exported).
    pub fn collection_has_associated_data(&self, collection: &ReferencePointCollection) -> bool {
        collection
            .members
            .iter()
            .all(|m| self.reference_point(m).is_ok_and(|r| r.has_associated_data))
    }

    fn ensure_members_not_pinned(
        &self,
        collection: &ReferencePointCollection,
        operation: &'static str,
    ) -> Result<()> {
        for member in &collection.members {
            let rp = self.reference_point(member)?;
            self.ensure_not_pinned(&rp.guid, &rp.instance_id, operation)?;
        }
        Ok(())
    }

    /// Takes the write locks of every member's active leaves (see
    /// [`crate::collection_freeze`]).
    fn freeze_locks(
        &self,
        collection: &VirtualSystemCollection,
        timeout: Duration,
        operation: &'static str,
    ) -> Result<LeafLocks> {
        if collection.members.is_empty() {
            return Err(HostError::InvalidState {
                operation,
                object: collection.cim_id(),
                reason: "the collection has no members".to_owned(),
            });
        }
        let mut leaves = Vec::new();
        for vm in collection.member_guids() {
            let system = self.vm(&cim_guid(&vm))?;
            leaves.extend(system.disks.iter().map(|d| d.active_leaf().to_owned()));
        }
        LeafLocks::acquire(&leaves, timeout, operation)
    }

    /// Snapshot of member `vm` inside `catalog` (leaf locks held).
    fn freeze_member(
        &self,
        catalog: &mut Catalog,
        vm: Uuid,
        snapshot_type: u16,
        consistency: u16,
        created: &mut CreatedFiles,
    ) -> Result<Uuid> {
        let vm_index = catalog
            .virtual_systems
            .iter()
            .position(|v| v.name == vm)
            .ok_or_else(|| not_found(ObjectKind::VirtualSystem, &cim_guid(&vm)))?;
        self.take_snapshot(catalog, vm_index, snapshot_type, consistency, created)
    }
}

fn point_name(collection: &VirtualSystemCollection, at: Timestamp) -> String {
    format!("{} - ({})", collection.element_name, at.to_display_string())
}

fn parse_collection_id(id: &str, parameter: &'static str) -> Result<Uuid> {
    ids::parse_guid(id).map_err(|e| HostError::InvalidParameter {
        parameter,
        reason: e.to_string(),
    })
}

/// The catalog rules of reference point and snapshot collections: unique
/// ids, the collection they name exists, members exist and belong to
/// distinct virtual systems.
pub(crate) fn validate_point_collections(
    catalog: &Catalog,
    collections: &HashSet<Uuid>,
) -> std::result::Result<(), CatalogError> {
    let mut seen = HashSet::new();
    for r in &catalog.reference_point_collections {
        let id = r.cim_id();
        if !seen.insert(r.collection_id) {
            return Err(CatalogError::DuplicateIdentifier {
                what: ObjectKind::ReferencePointCollection,
                id,
            });
        }
        check_collection_exists(collections, &id, r.virtual_system_collection_id)?;
        let mut vms = HashSet::new();
        for m in &r.members {
            let point = catalog
                .reference_points
                .iter()
                .find(|p| ids::instance_ids_equal(&p.instance_id, m));
            let Some(point) = point else {
                return Err(member_error(&id, m, "no such reference point"));
            };
            if !vms.insert(point.virtual_system_identifier) {
                return Err(member_error(&id, m, "a second member of the same VM"));
            }
        }
    }
    for s in &catalog.snapshot_collections {
        let id = s.cim_id();
        if !seen.insert(s.collection_id) {
            return Err(CatalogError::DuplicateIdentifier {
                what: ObjectKind::SnapshotCollection,
                id,
            });
        }
        check_collection_exists(collections, &id, s.virtual_system_collection_id)?;
        let mut vms = HashSet::new();
        for m in &s.members {
            let snapshot = catalog
                .snapshots
                .iter()
                .find(|p| ids::instance_ids_equal(&p.settings.instance_id, m));
            let Some(snapshot) = snapshot else {
                return Err(member_error(&id, m, "no such snapshot"));
            };
            if !vms.insert(snapshot.virtual_system()) {
                return Err(member_error(&id, m, "a second member of the same VM"));
            }
        }
    }
    Ok(())
}

fn check_collection_exists(
    collections: &HashSet<Uuid>,
    id: &str,
    collection: Uuid,
) -> std::result::Result<(), CatalogError> {
    if collections.contains(&collection) {
        Ok(())
    } else {
        Err(CatalogError::CollectionMember {
            collection: id.to_owned(),
            member: cim_guid(&collection),
            reason: "VirtualSystemCollectionId names no Msvm_VirtualSystemCollection".to_owned(),
        })
    }
}

fn member_error(collection: &str, member: &str, reason: &str) -> CatalogError {
    CatalogError::CollectionMember {
        collection: collection.to_owned(),
        member: member.to_owned(),
        reason: reason.to_owned(),
    }
}
