//! [`Host`]: the embedded store of the standalone host model (DESIGN.md "The
//! standalone host model"), the counterpart of Hyper-V's VMMS state.
//!
//! ```text
//! <dir>/refpoint-host.json   catalog (see crate::catalog), replaced atomically
//! <dir>/host.lock            exclusive advisory lock + holder's pid
//! <dir>/vms/<VM GUID>/Virtual Hard Disks/   differencing leaves made by snapshots
//! <dir>/jobs/                job records (refpoint-jobs)
//! ```
//!
//! A `Host` holds the lock for its whole lifetime, so every mutation of the
//! catalog and of the disk chains happens under it. Each mutation works on a
//! copy of the catalog and replaces the in-memory one only after the new
//! catalog is durably on disk: a failed operation leaves the host unchanged.

use std::path::{Path, PathBuf};

use refpoint_vhdx::merge::MergeOptions;
use uuid::Uuid;

use crate::catalog::{CATALOG_FILE_NAME, Catalog};
use crate::error::{HostError, ObjectKind, Result};
use crate::ids::{self, cim_guid};
use crate::lock::{HostLock, LOCK_FILE_NAME};
use crate::model::VirtualSystem;
use crate::pin::Pins;
use crate::reference_point::ReferencePoint;
use crate::snapshot::Snapshot;

/// Directory (inside the host directory) holding per-VM files.
pub const VMS_DIR_NAME: &str = "vms";
/// Directory (inside the host directory) holding job records.
pub const JOBS_DIR_NAME: &str = "jobs";
/// Per-VM directory of the VHDX files refpoint creates (Hyper-V's name).
pub const VIRTUAL_HARD_DISKS_DIR_NAME: &str = "Virtual Hard Disks";

/// An opened, locked host store.
#[derive(Debug)]
pub struct Host {
    pub(crate) dir: PathBuf,
    pub(crate) catalog: Catalog,
    lock: HostLock,
    pub(crate) pins: Pins,
    pub(crate) merge_options: MergeOptions,
}

impl Host {
    /// Creates a host store in `dir` (created if missing) and opens it:
    /// writes an empty catalog with a new host GUID and creates `vms/` and
    /// `jobs/`.
    ///
    /// # Errors
    /// [`HostError::AlreadyInitialised`] if `dir` already holds a catalog;
    /// [`HostError::Locked`] if another process holds the lock;
    /// [`HostError::Io`].
    pub fn init(dir: &Path) -> Result<Host> {
        std::fs::create_dir_all(dir).map_err(|e| HostError::io(dir, "create host directory", e))?;
        let dir = canonical_dir(dir)?;
        let lock = HostLock::acquire(&dir.join(LOCK_FILE_NAME))?;
        let catalog_path = dir.join(CATALOG_FILE_NAME);
        if catalog_path
            .try_exists()
            .map_err(|e| HostError::io(&catalog_path, "stat", e))?
        {
            return Err(HostError::AlreadyInitialised { path: catalog_path });
        }
        for sub in [VMS_DIR_NAME, JOBS_DIR_NAME] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| HostError::io(&p, "create directory", e))?;
        }
        let catalog = Catalog::new();
        catalog.save(&catalog_path)?;
        tracing::info!(host = %dir.display(), guid = %catalog.host_guid, "host initialised");
        Ok(Host {
            dir,
            catalog,
            lock,
            pins: Pins::default(),
            merge_options: MergeOptions::default(),
        })
    }

    /// Opens the host store in `dir` and takes its lock for the lifetime of
    /// the returned `Host`.
    ///
    /// Merges a crash left pending (see `lifecycle`) are finished here;
    /// a failure is logged and retried by the next lifecycle operation.
    ///
    /// # Errors
    /// [`HostError::NotInitialised`] if `dir` holds no catalog;
    /// [`HostError::Locked`] (with the holder's pid) if another process or
    /// another `Host` holds the lock; [`HostError::CatalogCorrupt`] if the
    /// catalog cannot be trusted; [`HostError::Io`].
    pub fn open(dir: &Path) -> Result<Host> {
        let not_initialised = || HostError::NotInitialised {
            dir: dir.to_owned(),
            catalog: dir.join(CATALOG_FILE_NAME),
        };
        let dir = canonical_dir(dir).map_err(|_| not_initialised())?;
        let catalog_path = dir.join(CATALOG_FILE_NAME);
        if !catalog_path
            .try_exists()
            .map_err(|e| HostError::io(&catalog_path, "stat", e))?
        {
            return Err(not_initialised());
        }
        let lock = HostLock::acquire(&dir.join(LOCK_FILE_NAME))?;
        let mut catalog = Catalog::load(&catalog_path)?;
        catalog.migrate_tracking();
        let mut host = Host {
            dir,
            catalog,
            lock,
            pins: Pins::default(),
            merge_options: MergeOptions::default(),
        };
        host.recover_pending_merges();
        Ok(host)
    }

    /// The host directory (canonical, absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The catalog file.
    pub fn catalog_path(&self) -> PathBuf {
        self.dir.join(CATALOG_FILE_NAME)
    }

    /// The lock file held by this `Host`.
    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    /// Directory for job records.
    pub fn jobs_dir(&self) -> PathBuf {
        self.dir.join(JOBS_DIR_NAME)
    }

    /// `<host>/vms/<VM GUID>/Virtual Hard Disks`, where snapshots put new leaves.
    pub fn vm_disk_dir(&self, vm: &Uuid) -> PathBuf {
        self.dir
            .join(VMS_DIR_NAME)
            .join(cim_guid(vm))
            .join(VIRTUAL_HARD_DISKS_DIR_NAME)
    }

    /// The host's GUID (made by `init`).
    pub fn host_guid(&self) -> Uuid {
        self.catalog.host_guid
    }

    /// Every virtual system, in creation order.
    pub fn vms(&self) -> &[VirtualSystem] {
        &self.catalog.virtual_systems
    }

    /// A virtual system by `Name` (VM GUID, any case, braces optional), by its
    /// settings `InstanceID` (`Microsoft:<VM GUID>`), or by `ElementName`
    /// (case-insensitive).
    ///
    /// # Errors
    /// [`HostError::NotFound`].
    pub fn vm(&self, name_or_guid: &str) -> Result<&VirtualSystem> {
        self.vm_index(name_or_guid)
            .and_then(|i| self.catalog.virtual_systems.get(i))
            .ok_or_else(|| HostError::NotFound {
                what: ObjectKind::VirtualSystem,
                id: name_or_guid.to_owned(),
            })
    }

    pub(crate) fn vm_index(&self, name_or_guid: &str) -> Option<usize> {
        let vms = &self.catalog.virtual_systems;
        if let Ok(guid) = ids::parse_settings_instance_id(name_or_guid)
            && let Some(i) = vms.iter().position(|v| v.name == guid)
        {
            return Some(i);
        }
        let wanted = name_or_guid.to_lowercase();
        vms.iter()
            .position(|v| v.element_name.to_lowercase() == wanted)
    }

    /// The snapshots of a virtual system, oldest first.
    ///
    /// # Errors
    /// [`HostError::NotFound`] for an unknown VM.
    pub fn snapshots(&self, vm: &str) -> Result<Vec<&Snapshot>> {
        let vm = self.vm(vm)?.name;
        Ok(self
            .catalog
            .snapshots
            .iter()
            .filter(|s| s.virtual_system() == vm)
            .collect())
    }

    /// A snapshot by `InstanceID` (`Microsoft:<SNAPSHOT GUID>`) or bare GUID.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for a malformed id;
    /// [`HostError::NotFound`].
    pub fn snapshot(&self, instance_id: &str) -> Result<&Snapshot> {
        let i = self.snapshot_index(instance_id)?;
        self.catalog
            .snapshots
            .get(i)
            .ok_or_else(|| not_found(ObjectKind::Snapshot, instance_id))
    }

    pub(crate) fn snapshot_index(&self, instance_id: &str) -> Result<usize> {
        let guid = ids::parse_settings_instance_id(instance_id).map_err(|e| {
            HostError::InvalidParameter {
                parameter: "AffectedSnapshot",
                reason: e.to_string(),
            }
        })?;
        self.catalog
            .snapshots
            .iter()
            .position(|s| s.guid == guid)
            .ok_or_else(|| not_found(ObjectKind::Snapshot, instance_id))
    }

    /// Reference points, oldest first; of one virtual system if `vm` is given
    /// (the `Msvm_ReferencePointOfVirtualSystem` association).
    ///
    /// # Errors
    /// [`HostError::NotFound`] for an unknown VM.
    pub fn reference_points(&self, vm: Option<&str>) -> Result<Vec<&ReferencePoint>> {
        let vm = vm.map(|v| self.vm(v).map(|v| v.name)).transpose()?;
        Ok(self
            .catalog
            .reference_points
            .iter()
            .filter(|r| vm.is_none_or(|v| r.virtual_system_identifier == v))
            .collect())
    }

    /// A reference point by `InstanceID` (`Microsoft:<VM GUID>\<RP GUID>`,
    /// the `InstanceID` key of its object path, backslashes possibly doubled)
    /// or by bare RP GUID.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for a malformed id;
    /// [`HostError::NotFound`].
    pub fn reference_point(&self, instance_id: &str) -> Result<&ReferencePoint> {
        let i = self.reference_point_index(instance_id)?;
        self.catalog
            .reference_points
            .get(i)
            .ok_or_else(|| not_found(ObjectKind::ReferencePoint, instance_id))
    }

    pub(crate) fn reference_point_index(&self, instance_id: &str) -> Result<usize> {
        let (vm, rp) = ids::parse_reference_point_id(instance_id).map_err(|e| {
            HostError::InvalidParameter {
                parameter: "ReferencePoint",
                reason: e.to_string(),
            }
        })?;
        self.catalog
            .reference_points
            .iter()
            .position(|r| r.guid == rp && vm.is_none_or(|v| v == r.virtual_system_identifier))
            .ok_or_else(|| not_found(ObjectKind::ReferencePoint, instance_id))
    }

    /// Durably writes `catalog` and makes it the current one.
    ///
    /// The new catalog is validated first, so that a catalog that could not
    /// be loaded back is never written.
    ///
    /// # Errors
    /// [`HostError::CatalogCorrupt`] if `catalog` breaks a rule;
    /// [`HostError::Io`]. The in-memory catalog is then unchanged.
    pub(crate) fn commit(&mut self, catalog: Catalog) -> Result<()> {
        let path = self.catalog_path();
        catalog
            .validate()
            .map_err(|detail| HostError::CatalogCorrupt {
                path: path.clone(),
                detail,
            })?;
        catalog.save(&path)?;
        self.catalog = catalog;
        Ok(())
    }
}

pub(crate) fn not_found(what: ObjectKind, id: &str) -> HostError {
    HostError::NotFound {
        what,
        id: id.to_owned(),
    }
}

fn canonical_dir(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize()
        .map_err(|e| HostError::io(dir, "resolve host directory", e))
}
