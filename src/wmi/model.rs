//! The object space the provider serves: every instance of every class,
//! built from one consistent look at the host and the job manager, and the
//! class hierarchy used to match class filters and paths.
//!
//! Classes and their keys (hyperv-api.md §1, §4):
//!
//! | class | instances | keys |
//! |---|---|---|
//! | `Msvm_ComputerSystem` | one per VM | `CreationClassName`, `Name` (VM GUID) |
//! | `Msvm_VirtualSystemSettingData` | the realized settings of each VM, each snapshot (`…:Snapshot:Recovery`/`Realized`) | `InstanceID` |
//! | `Msvm_StorageAllocationSettingData` | each VM disk (active leaf); each snapshot disk (frozen leaf, InstanceID `Microsoft:<SNAPSHOT GUID>\<disk GUID>\0\<index>\D`) | `InstanceID` |
//! | `Msvm_VirtualSystemReferencePoint` | each reference point | `InstanceID`, `VirtualSystemIdentifier` (one-key paths accepted) |
//! | `Msvm_ConcreteJob`, `Msvm_VirtualSystemReferencePointExportJob` | each kept job | `InstanceID` |
//! | `Msvm_VirtualSystemSnapshotService`, `Msvm_VirtualSystemReferencePointService`, `Msvm_ImageManagementService` | one each | `CreationClassName`, `Name`, `SystemCreationClassName`, `SystemName` |
//! | associations | see [`super::associations`] | both references |
//!
//! Hierarchy simplification: the export job classes are treated as
//! subclasses of `Msvm_ConcreteJob` (on Hyper-V both derive from
//! `CIM_ConcreteJob`), so that clients polling `Msvm_ConcreteJob` — the
//! class most of them name — see export jobs too.

use refpoint_cim::classes::{
    COMPUTER_SYSTEM, REFERENCE_POINT, STORAGE_ALLOCATION_SETTING_DATA, VIRTUAL_SYSTEM_SETTING_DATA,
};
use refpoint_cim::{Instance, ObjectPath};
use refpoint_core::{FrozenDisk, Snapshot};

use super::associations::{self, Association};
use crate::service::Refpoint;

/// `Msvm_VirtualSystemSnapshotService`.
pub const SNAPSHOT_SERVICE: &str = "Msvm_VirtualSystemSnapshotService";
/// `Msvm_VirtualSystemReferencePointService`.
pub const REFERENCE_POINT_SERVICE: &str = "Msvm_VirtualSystemReferencePointService";
/// `Msvm_ImageManagementService`.
pub const IMAGE_MANAGEMENT_SERVICE: &str = "Msvm_ImageManagementService";
/// `CIM_ConcreteJob`, the base of every job class.
pub const CIM_CONCRETE_JOB: &str = "CIM_ConcreteJob";

/// The service singletons: class, `Name` key, `ElementName`.
///
/// `vssnapsvc` is Hyper-V's documented name; `vhdsvc` is the image
/// management service's name on Hyper-V; no source gives the reference
/// point service's `Name`, `vsrpsvc` is refpoint's choice.
pub const SERVICES: &[(&str, &str, &str)] = &[
    (
        SNAPSHOT_SERVICE,
        "vssnapsvc",
        "Hyper-V Virtual System Snapshot Service",
    ),
    (
        REFERENCE_POINT_SERVICE,
        "vsrpsvc",
        "Hyper-V Virtual System Reference Point Service",
    ),
    (
        IMAGE_MANAGEMENT_SERVICE,
        "vhdsvc",
        "Hyper-V Image Management Service",
    ),
    (
        super::collection_model::COLLECTION_MANAGEMENT_SERVICE,
        "vscollmgmtsvc",
        "Hyper-V Virtual System Collection Management Service",
    ),
    (
        super::collection_model::COLLECTION_REFERENCE_POINT_SERVICE,
        "vscollrpsvc",
        "Hyper-V Virtual System Collection Reference Point Service",
    ),
    (
        super::collection_model::COLLECTION_SNAPSHOT_SERVICE,
        "vscollsnapsvc",
        "Hyper-V Virtual System Collection Snapshot Service",
    ),
];

/// Direct superclass of each class refpoint serves or matches against.
const PARENTS: &[(&str, &str)] = &[
    ("Msvm_ComputerSystem", "CIM_ComputerSystem"),
    ("CIM_ComputerSystem", "CIM_ManagedElement"),
    (
        "Msvm_VirtualSystemSettingData",
        "CIM_VirtualSystemSettingData",
    ),
    ("CIM_VirtualSystemSettingData", "CIM_SettingData"),
    (
        "Msvm_StorageAllocationSettingData",
        "CIM_StorageAllocationSettingData",
    ),
    (
        "CIM_StorageAllocationSettingData",
        "CIM_ResourceAllocationSettingData",
    ),
    ("CIM_ResourceAllocationSettingData", "CIM_SettingData"),
    ("CIM_SettingData", "CIM_ManagedElement"),
    ("Msvm_VirtualSystemReferencePoint", "CIM_ManagedElement"),
    (
        "Msvm_VirtualSystemReferencePointExportJob",
        "Msvm_ConcreteJob",
    ),
    ("Msvm_CollectionReferencePointExportJob", "Msvm_ConcreteJob"),
    ("Msvm_ConcreteJob", "CIM_ConcreteJob"),
    ("CIM_ConcreteJob", "CIM_Job"),
    ("CIM_Job", "CIM_ManagedElement"),
    (
        "Msvm_VirtualSystemSnapshotService",
        "CIM_VirtualSystemSnapshotService",
    ),
    ("CIM_VirtualSystemSnapshotService", "CIM_Service"),
    ("Msvm_VirtualSystemReferencePointService", "CIM_Service"),
    ("Msvm_ImageManagementService", "CIM_Service"),
    ("CIM_Service", "CIM_ManagedElement"),
    ("Msvm_AffectedJobElement", "CIM_AffectedJobElement"),
    ("Msvm_ReferencePointOfVirtualSystem", "CIM_Dependency"),
    (
        "Msvm_SnapshotOfVirtualSystem",
        "CIM_SnapshotOfVirtualSystem",
    ),
    ("CIM_SnapshotOfVirtualSystem", "CIM_Dependency"),
    ("Msvm_SettingsDefineState", "CIM_SettingsDefineState"),
    (
        "Msvm_VirtualSystemSettingDataComponent",
        "CIM_VirtualSystemSettingDataComponent",
    ),
    ("CIM_VirtualSystemSettingDataComponent", "CIM_Component"),
];

/// The superclass of `class`, if refpoint knows it.
fn parent(class: &str) -> Option<&'static str> {
    PARENTS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(class))
        .map(|(_, p)| *p)
        .or_else(|| super::collection_model::parent(class))
}

/// True when `class` is `ancestor` or derives from it (names compare
/// case-insensitively, as CIM's do).
pub fn is_a(class: &str, ancestor: &str) -> bool {
    let mut current = Some(class);
    // The table has no cycles; the bound only guards against a future typo.
    for _ in 0..16 {
        match current {
            Some(c) if c.eq_ignore_ascii_case(ancestor) => return true,
            Some(c) => current = parent(c),
            None => return false,
        }
    }
    false
}

/// True when refpoint knows `class`: it serves it, matches against it, or it
/// is one of the Hyper-V classes of [`refpoint_cim::classes::KNOWN_CLASSES`]
/// (those have no instances here, e.g. `Msvm_VirtualSystemCollection`).
pub fn is_known(class: &str) -> bool {
    PARENTS
        .iter()
        .any(|(c, p)| c.eq_ignore_ascii_case(class) || p.eq_ignore_ascii_case(class))
        || refpoint_cim::classes::is_known_class(class)
        || super::collection_model::is_known(class)
}

/// True when the instance at `instance` is what `query` names: the query's
/// class is the instance's class or a superclass, and every key the query
/// gives has the instance's value (values compare case-insensitively, as WMI
/// does). A query without keys names a singleton. This is how one-key
/// `Msvm_VirtualSystemReferencePoint.InstanceID="…"` paths find reference
/// points whose canonical path has two keys.
pub fn names(query: &ObjectPath, instance: &ObjectPath) -> bool {
    if !is_a(&instance.class_name, &query.class_name) {
        return false;
    }
    if query.keys.is_empty() {
        return instance.keys.iter().all(|(k, _)| k != "InstanceID") && is_singleton(instance);
    }
    query
        .keys
        .iter()
        .all(|(k, v)| instance.key(k).is_some_and(|iv| iv.eq_ignore_ascii_case(v)))
}

fn is_singleton(path: &ObjectPath) -> bool {
    SERVICES
        .iter()
        .any(|(c, _, _)| c.eq_ignore_ascii_case(&path.class_name))
}

/// One object: its relative path and instance.
#[derive(Debug, Clone)]
pub struct Object {
    /// `Class.Key="…"` (no server or namespace).
    pub path: ObjectPath,
    /// The instance.
    pub instance: Instance,
}

/// Every object of a host at one instant.
#[derive(Debug)]
pub struct ObjectSpace {
    /// Non-association instances.
    pub objects: Vec<Object>,
    /// Association instances.
    pub associations: Vec<Association>,
}

impl ObjectSpace {
    /// Builds the object space (locks the host once).
    pub fn build(rp: &Refpoint) -> ObjectSpace {
        Self::build_for(rp, "CIM_ManagedElement")
    }

    /// Builds what a query about `class` needs: for a job class only the
    /// jobs, without locking the host — so that clients polling a job do not
    /// wait for a host operation in progress (a merge, a snapshot).
    pub fn build_for(rp: &Refpoint, class: &str) -> ObjectSpace {
        let mut objects = Vec::new();
        let mut associations = Vec::new();
        if !is_a(class, CIM_CONCRETE_JOB) {
            Self::host_objects(rp, &mut objects, &mut associations);
        }
        let jobs = rp.jobs();
        for job in jobs.list() {
            let path = job.object_path();
            for affected in jobs.affected_elements(&job.instance_id).unwrap_or_default() {
                associations.push(associations::affected_job_element(&affected));
            }
            objects.push(Object {
                path,
                instance: job.to_instance(),
            });
        }
        ObjectSpace {
            objects,
            associations,
        }
    }

    /// Services, VMs, settings, disks, snapshots, reference points and
    /// their associations.
    fn host_objects(rp: &Refpoint, objects: &mut Vec<Object>, associations: &mut Vec<Association>) {
        for (class, name, element_name) in SERVICES {
            let path = service_path(class, name, rp.host_name());
            let instance = Instance::new(class)
                .with("CreationClassName", *class)
                .with("Name", *name)
                .with("SystemCreationClassName", COMPUTER_SYSTEM)
                .with("SystemName", rp.host_name())
                .with("ElementName", *element_name)
                .with("Caption", *element_name)
                .with("EnabledState", 2u16)
                .with("HealthState", 5u16);
            objects.push(Object { path, instance });
        }
        {
            let host = rp.host();
            for vm in host.vms() {
                let vm_path = vm.object_path();
                objects.push(Object {
                    path: vm_path.clone(),
                    instance: vm.to_instance(),
                });
                let settings = vm.settings.to_cim();
                let settings_path = settings.object_path();
                objects.push(Object {
                    path: settings_path.clone(),
                    instance: settings.to_instance(),
                });
                associations.push(associations::settings_define_state(
                    &vm_path,
                    &settings_path,
                ));
                for disk in &vm.disks {
                    let sasd = disk.to_cim();
                    let sasd_path = sasd.object_path();
                    associations.push(associations::settings_component(&settings_path, &sasd_path));
                    objects.push(Object {
                        path: sasd_path,
                        instance: sasd.to_instance(),
                    });
                }
                for snapshot in host.snapshots(&vm.cim_name()).unwrap_or_default() {
                    let snapshot_path = snapshot.object_path();
                    objects.push(Object {
                        path: snapshot_path.clone(),
                        instance: snapshot.settings.to_instance(),
                    });
                    associations.push(associations::snapshot_of(&vm_path, &snapshot_path));
                    for disk in &snapshot.disks {
                        let sasd = snapshot_sasd(snapshot, disk);
                        let sasd_path = sasd.object_path();
                        associations
                            .push(associations::settings_component(&snapshot_path, &sasd_path));
                        objects.push(Object {
                            path: sasd_path,
                            instance: sasd.to_instance(),
                        });
                    }
                }
            }
            super::collection_model::host_objects(&host, objects, associations);
            for point in host.reference_points(None).unwrap_or_default() {
                let path = point.object_path();
                if let Ok(vm) = host.vm(&point.virtual_system_identifier.to_string()) {
                    associations.push(associations::reference_point_of(&vm.object_path(), &path));
                }
                objects.push(Object {
                    path,
                    instance: point.to_instance(),
                });
            }
        }
    }

    /// The objects of `class` and its subclasses.
    pub fn of_class<'s>(&'s self, class: &'s str) -> impl Iterator<Item = &'s Object> + 's {
        self.objects
            .iter()
            .filter(move |o| is_a(&o.path.class_name, class))
    }

    /// The object `query` names (see [`names`]).
    pub fn find(&self, query: &ObjectPath) -> Option<&Object> {
        self.objects.iter().find(|o| names(query, &o.path))
    }
}

/// The path of a service singleton (all four keys, as Hyper-V's).
pub fn service_path(class: &str, name: &str, host_name: &str) -> ObjectPath {
    ObjectPath::new(class)
        .with_key("CreationClassName", class)
        .with_key("Name", name)
        .with_key("SystemCreationClassName", COMPUTER_SYSTEM)
        .with_key("SystemName", host_name)
}

/// The point-in-time `Msvm_StorageAllocationSettingData` of a snapshot's
/// disk: the VM disk's InstanceID with the VM GUID replaced by the snapshot
/// GUID (so that it is unique, as Hyper-V's snapshot SASDs are), the frozen
/// leaf as `HostResource`.
pub fn snapshot_sasd(
    snapshot: &Snapshot,
    disk: &FrozenDisk,
) -> refpoint_cim::classes::StorageAllocationSettingData {
    let mut sasd = disk.to_cim();
    let rest = disk
        .instance_id
        .split_once('\\')
        .map_or(disk.instance_id.as_str(), |(_, r)| r);
    sasd.instance_id = format!(
        "Microsoft:{}\\{rest}",
        refpoint_core::ids::cim_guid(&snapshot.guid)
    );
    sasd
}

/// Class names whose instances this module builds (for documentation and
/// enumeration checks).
pub const SERVED_CLASSES: &[&str] = &[
    COMPUTER_SYSTEM,
    VIRTUAL_SYSTEM_SETTING_DATA,
    STORAGE_ALLOCATION_SETTING_DATA,
    REFERENCE_POINT,
    "Msvm_ConcreteJob",
    "Msvm_VirtualSystemReferencePointExportJob",
    SNAPSHOT_SERVICE,
    REFERENCE_POINT_SERVICE,
    IMAGE_MANAGEMENT_SERVICE,
];
