//! The collection classes of the object space (hyperv-api.md §1.1, §1.2,
//! §1.4, §1.5) and their place in the class hierarchy.
//!
//! | class | instances | keys |
//! |---|---|---|
//! | `Msvm_VirtualSystemCollection` | each collection | `CollectionID` |
//! | `Msvm_ReferencePointCollection` | each reference point collection | `CollectionID`, `VirtualSystemCollectionId` (one-key paths accepted) |
//! | `Msvm_SnapshotCollection` | each snapshot collection | `CollectionID` |
//! | `Msvm_CollectionManagementService`, `Msvm_CollectionReferencePointService`, `Msvm_CollectionSnapshotService` | one each | as the other services |
//!
//! | association | ends (role → class) |
//! |---|---|
//! | `Msvm_CollectedVirtualSystems` | `Collection` → `Msvm_VirtualSystemCollection`, `Member` → `Msvm_ComputerSystem` |
//! | `Msvm_ReferencePointOfVirtualSystemCollection` | `Antecedent` → `Msvm_VirtualSystemCollection`, `Dependent` → `Msvm_ReferencePointCollection` |
//! | `Msvm_CollectedReferencePoints` | `Collection` → `Msvm_ReferencePointCollection`, `Member` → `Msvm_VirtualSystemReferencePoint` |
//! | `Msvm_SnapshotOfVirtualSystemCollection` | `Antecedent` → `Msvm_VirtualSystemCollection`, `Dependent` → `Msvm_SnapshotCollection` |
//! | `Msvm_CollectedSnapshots` | `Collection` → `Msvm_SnapshotCollection`, `Member` → snapshot `Msvm_VirtualSystemSettingData` |
//!
//! Service `Name`s are refpoint's choice (no source gives them):
//! `vscollmgmtsvc`, `vscollrpsvc`, `vscollsnapsvc`.

use refpoint_cim::{CimType, Instance, ObjectPath};
use refpoint_core::ids::cim_guid;
use refpoint_core::{Host, ReferencePointCollection, SnapshotCollection, VirtualSystemCollection};

use super::associations::Association;
use super::model::Object;

/// `Msvm_CollectionManagementService`.
pub const COLLECTION_MANAGEMENT_SERVICE: &str = "Msvm_CollectionManagementService";
/// `Msvm_CollectionReferencePointService`.
pub const COLLECTION_REFERENCE_POINT_SERVICE: &str = "Msvm_CollectionReferencePointService";
/// `Msvm_CollectionSnapshotService`.
pub const COLLECTION_SNAPSHOT_SERVICE: &str = "Msvm_CollectionSnapshotService";
/// `Msvm_VirtualSystemCollection`.
pub const VIRTUAL_SYSTEM_COLLECTION: &str = "Msvm_VirtualSystemCollection";
/// `Msvm_ReferencePointCollection`.
pub const REFERENCE_POINT_COLLECTION: &str = "Msvm_ReferencePointCollection";
/// `Msvm_SnapshotCollection`.
pub const SNAPSHOT_COLLECTION: &str = "Msvm_SnapshotCollection";

/// Direct superclasses of the collection classes (DMTF CIM schema).
const PARENTS: &[(&str, &str)] = &[
    (VIRTUAL_SYSTEM_COLLECTION, "CIM_CollectionOfMSEs"),
    ("CIM_CollectionOfMSEs", "CIM_Collection"),
    ("CIM_Collection", "CIM_ManagedElement"),
    (REFERENCE_POINT_COLLECTION, "CIM_Collection"),
    (SNAPSHOT_COLLECTION, "CIM_Collection"),
    (COLLECTION_MANAGEMENT_SERVICE, "CIM_Service"),
    (COLLECTION_REFERENCE_POINT_SERVICE, "CIM_Service"),
    (COLLECTION_SNAPSHOT_SERVICE, "CIM_Service"),
    ("Msvm_CollectedVirtualSystems", "CIM_CollectedMSEs"),
    ("Msvm_CollectedReferencePoints", "CIM_CollectedMSEs"),
    ("Msvm_CollectedSnapshots", "CIM_CollectedMSEs"),
    ("CIM_CollectedMSEs", "CIM_MemberOfCollection"),
    (
        "Msvm_ReferencePointOfVirtualSystemCollection",
        "CIM_Dependency",
    ),
    ("Msvm_SnapshotOfVirtualSystemCollection", "CIM_Dependency"),
];

/// The superclass of a collection class, if it is one.
pub(crate) fn parent(class: &str) -> Option<&'static str> {
    PARENTS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(class))
        .map(|(_, p)| *p)
}

/// True for a class of this module (or one of its CIM bases).
pub(crate) fn is_known(class: &str) -> bool {
    PARENTS
        .iter()
        .any(|(c, p)| c.eq_ignore_ascii_case(class) || p.eq_ignore_ascii_case(class))
}

/// `Msvm_VirtualSystemCollection.CollectionID="<GUID>"`.
pub fn collection_path(c: &VirtualSystemCollection) -> ObjectPath {
    ObjectPath::new(VIRTUAL_SYSTEM_COLLECTION).with_key("CollectionID", &c.cim_id())
}

/// `Msvm_ReferencePointCollection.CollectionID="…",VirtualSystemCollectionId="…"`.
pub fn reference_point_collection_path(r: &ReferencePointCollection) -> ObjectPath {
    ObjectPath::new(REFERENCE_POINT_COLLECTION)
        .with_key("CollectionID", &r.cim_id())
        .with_key(
            "VirtualSystemCollectionId",
            &cim_guid(&r.virtual_system_collection_id),
        )
}

/// `Msvm_SnapshotCollection.CollectionID="…"`.
pub fn snapshot_collection_path(s: &SnapshotCollection) -> ObjectPath {
    ObjectPath::new(SNAPSHOT_COLLECTION).with_key("CollectionID", &s.cim_id())
}

/// The `Msvm_VirtualSystemCollection` instance (§1.5; no replication here:
/// `ReplicationMode` 0 None).
pub fn collection_instance(c: &VirtualSystemCollection) -> Instance {
    Instance::new(VIRTUAL_SYSTEM_COLLECTION)
        .with("CollectionID", c.cim_id().as_str())
        .with("ElementName", c.element_name.as_str())
        .with("ReplicationMode", 0u16)
        .with("ReplicationState", 0u16)
        .with("FailedOverReplicationType", 0u16)
}

/// The `Msvm_ReferencePointCollection` instance (§1.4): `ConsistencyLevel`
/// in the collection class's order (1 crash), `HasAssociatedLog` false.
pub fn reference_point_collection_instance(r: &ReferencePointCollection) -> Instance {
    Instance::new(REFERENCE_POINT_COLLECTION)
        .with("CollectionID", r.cim_id().as_str())
        .with("ElementName", r.element_name.as_str())
        .with("ReferencePointType", r.reference_point_type)
        .with("ConsistencyLevel", r.consistency_level)
        .with(
            "VirtualSystemCollectionId",
            cim_guid(&r.virtual_system_collection_id).as_str(),
        )
        .with("HasAssociatedLog", r.has_associated_log())
}

/// The `Msvm_SnapshotCollection` instance.
pub fn snapshot_collection_instance(s: &SnapshotCollection) -> Instance {
    Instance::new(SNAPSHOT_COLLECTION)
        .with("CollectionID", s.cim_id().as_str())
        .with("ElementName", s.element_name.as_str())
}

fn pair(
    class: &'static str,
    a: (&'static str, &ObjectPath),
    b: (&'static str, &ObjectPath),
) -> Association {
    Association {
        class,
        ends: [(a.0, a.1.relative()), (b.0, b.1.relative())],
        extra: Vec::<(&'static str, refpoint_cim::PropertyValue, CimType)>::new(),
    }
}

/// Adds the collection objects of `host` and their associations.
pub(crate) fn host_objects(
    host: &Host,
    objects: &mut Vec<Object>,
    associations: &mut Vec<Association>,
) {
    for c in host.collections() {
        let path = collection_path(c);
        for vm in c.member_guids() {
            if let Ok(system) = host.vm(&cim_guid(&vm)) {
                associations.push(pair(
                    "Msvm_CollectedVirtualSystems",
                    ("Collection", &path),
                    ("Member", &system.object_path()),
                ));
            }
        }
        objects.push(Object {
            path,
            instance: collection_instance(c),
        });
    }
    for r in host.reference_point_collections(None).unwrap_or_default() {
        let path = reference_point_collection_path(r);
        if let Some(c) = host
            .collections()
            .iter()
            .find(|c| c.collection_id == r.virtual_system_collection_id)
        {
            associations.push(pair(
                "Msvm_ReferencePointOfVirtualSystemCollection",
                ("Antecedent", &collection_path(c)),
                ("Dependent", &path),
            ));
        }
        for m in &r.members {
            if let Ok(point) = host.reference_point(m) {
                associations.push(pair(
                    "Msvm_CollectedReferencePoints",
                    ("Collection", &path),
                    ("Member", &point.object_path()),
                ));
            }
        }
        objects.push(Object {
            path,
            instance: reference_point_collection_instance(r),
        });
    }
    for s in host.snapshot_collections() {
        let path = snapshot_collection_path(s);
        if let Some(c) = host
            .collections()
            .iter()
            .find(|c| c.collection_id == s.virtual_system_collection_id)
        {
            associations.push(pair(
                "Msvm_SnapshotOfVirtualSystemCollection",
                ("Antecedent", &collection_path(c)),
                ("Dependent", &path),
            ));
        }
        for m in &s.members {
            if let Ok(snapshot) = host.snapshot(m) {
                associations.push(pair(
                    "Msvm_CollectedSnapshots",
                    ("Collection", &path),
                    ("Member", &snapshot.object_path()),
                ));
            }
        }
        objects.push(Object {
            path,
            instance: snapshot_collection_instance(s),
        });
    }
}
