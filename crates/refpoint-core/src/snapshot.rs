//! Snapshots: `Msvm_VirtualSystemSnapshotService.CreateSnapshot` and
//! `DestroySnapshot` (`reference/hyperv-api.md` §2.3).
//!
//! Taking a snapshot freezes, for every disk, the current chain (recording
//! the DataWriteGuid of every layer) and creates a new differencing leaf on
//! top, as Hyper-V does with an AVHDX: the frozen chain is the point-in-time
//! image, and the VM's chain becomes `[new leaf, ...frozen]`. It is all
//! disks or none: on any failure the leaves created so far are removed and
//! the catalog is left unchanged.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use refpoint_vhdx::{Chain, create_differencing};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::atomic::sync_dir;
use crate::catalog::Catalog;
use crate::error::{HostError, ObjectKind, Result};
use crate::frozen::{FrozenDisk, LeafPolicy, open_verified};
use crate::host::{Host, not_found};
use crate::ids::{cim_guid, settings_instance_id};
use crate::model::{
    ChainLayer, LayerChain, VIRTUAL_SYSTEM_TYPE_SNAPSHOT_REALIZED,
    VIRTUAL_SYSTEM_TYPE_SNAPSHOT_RECOVERY, VirtualDisk, VirtualSystemSettingData, guid_upper,
};
use crate::timestamp::Timestamp;
use crate::tracking::EpochLayer;

/// `SnapshotType` 2: a full (standard) snapshot; disks are handled like a
/// recovery snapshot, but it cannot become a reference point.
pub const SNAPSHOT_TYPE_FULL: u16 = 2;
/// `SnapshotType` 32768: a recovery (backup) checkpoint, the kind backup
/// clients take and convert to reference points.
pub const SNAPSHOT_TYPE_RECOVERY: u16 = 32768;
/// `ConsistencyLevel` 1: application consistent.
pub const CONSISTENCY_LEVEL_APPLICATION: u16 =
    refpoint_cim::classes::consistency_level::APPLICATION;
/// `ConsistencyLevel` 2: crash consistent (the default).
pub const CONSISTENCY_LEVEL_CRASH: u16 = refpoint_cim::classes::consistency_level::CRASH;

/// `Msvm_VirtualSystemSnapshotSettingData`, the `SnapshotSettings` parameter
/// of `CreateSnapshot` (only what this host uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotSettings {
    /// `ConsistencyLevel`: `None` or 0 (unknown) → 2 crash consistent.
    /// 1 (application consistent) needs a guest to quiesce, which the
    /// standalone host does not have: refused with NotSupported.
    pub consistency_level: Option<u16>,
}

/// Checks a requested `ConsistencyLevel` (`parameter` names it in errors).
///
/// # Errors
/// [`HostError::NotSupported`] for 1 (application consistent);
/// [`HostError::InvalidParameter`] for values other than 0, 1, 2.
pub(crate) fn consistency_level(requested: Option<u16>, parameter: &'static str) -> Result<u16> {
    match requested {
        None | Some(0) | Some(CONSISTENCY_LEVEL_CRASH) => Ok(CONSISTENCY_LEVEL_CRASH),
        Some(CONSISTENCY_LEVEL_APPLICATION) => Err(HostError::NotSupported {
            what: format!(
                "{parameter} 1 (application consistent): the standalone host has no guest to quiesce"
            ),
        }),
        Some(other) => Err(HostError::InvalidParameter {
            parameter,
            reason: format!("ConsistencyLevel {other} is not 0, 1 or 2"),
        }),
    }
}

/// A snapshot of a virtual system: a snapshot `Msvm_VirtualSystemSettingData`
/// plus the frozen chains and the VM settings at that instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The snapshot's settings: `InstanceID` `Microsoft:<SNAPSHOT GUID>`,
    /// `VirtualSystemType` `Microsoft:Hyper-V:Snapshot:Recovery` (or
    /// `…:Snapshot:Realized` for type 2), `ElementName`
    /// `<VM name> - (<YYYY-MM-DD - HH:MM:SS>)` (UTC), `Parent`, `CreationTime`.
    #[serde(rename = "Settings")]
    pub settings: VirtualSystemSettingData,
    /// The snapshot GUID.
    #[serde(rename = "SnapshotGuid", with = "guid_upper")]
    pub guid: Uuid,
    /// `SnapshotType` as requested: 32768 or 2.
    #[serde(rename = "SnapshotType")]
    pub snapshot_type: u16,
    /// `ConsistencyLevel` (2 = crash consistent).
    #[serde(rename = "ConsistencyLevel")]
    pub consistency_level: u16,
    /// Copy of the VM's own settings at the instant of the snapshot.
    #[serde(rename = "VirtualSystemSettings")]
    pub vm_settings: VirtualSystemSettingData,
    /// Every disk's frozen chain, in the VM's disk order.
    #[serde(rename = "Disks")]
    pub disks: Vec<FrozenDisk>,
}

impl Snapshot {
    /// `InstanceID`: `Microsoft:<SNAPSHOT GUID>`.
    pub fn instance_id(&self) -> &str {
        &self.settings.instance_id
    }

    /// The VM GUID.
    pub fn virtual_system(&self) -> Uuid {
        self.settings.virtual_system_identifier
    }

    /// Whether this is a recovery snapshot (the only kind that converts to a
    /// reference point).
    pub fn is_recovery(&self) -> bool {
        self.snapshot_type == SNAPSHOT_TYPE_RECOVERY
    }
}

/// Files and directories created by an operation, removed again if it fails.
#[derive(Debug, Default)]
pub(crate) struct CreatedFiles {
    files: Vec<PathBuf>,
    /// Directories created, outermost first.
    dirs: Vec<PathBuf>,
}

impl CreatedFiles {
    fn push(&mut self, p: PathBuf) {
        self.files.push(p);
    }

    fn contains(&self, p: &Path) -> bool {
        self.files.iter().any(|c| c == p)
    }

    /// Creates `dir` and its missing ancestors, recording each one created.
    fn create_dir_all(&mut self, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if d.try_exists().map_err(|e| HostError::io(d, "stat", e))? {
                break;
            }
            missing.push(d.to_owned());
            cur = d.parent();
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).map_err(|e| HostError::io(&d, "create directory", e))?;
            self.dirs.push(d);
        }
        Ok(())
    }

    /// Removes every created file and directory (best effort, logged) and
    /// fsyncs the directories that held them.
    pub(crate) fn remove_all(self) {
        let mut dirs = HashSet::new();
        for p in self.files {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "rollback: cannot remove")
                }
            }
            if let Some(d) = p.parent() {
                dirs.insert(d.to_owned());
            }
        }
        for d in self.dirs.iter().rev() {
            if let Err(e) = std::fs::remove_dir(d) {
                tracing::warn!(path = %d.display(), error = %e, "rollback: cannot remove directory");
            }
            dirs.remove(d);
            if let Some(parent) = d.parent() {
                dirs.insert(parent.to_owned());
            }
        }
        for d in dirs {
            if let Err(e) = sync_dir(&d) {
                tracing::warn!(error = %e, "rollback: cannot fsync");
            }
        }
    }
}

impl Host {
    /// `CreateSnapshot(AffectedSystem, SnapshotSettings = "", SnapshotType)`:
    /// see [`Host::create_snapshot_with`].
    ///
    /// # Errors
    /// As [`Host::create_snapshot_with`].
    pub fn create_snapshot(&mut self, vm: &str, snapshot_type: u16) -> Result<&Snapshot> {
        self.create_snapshot_with(vm, snapshot_type, &SnapshotSettings::default())
    }

    /// `Msvm_VirtualSystemSnapshotService.CreateSnapshot`: freezes every disk
    /// of `vm` and puts a new differencing leaf on top, in
    /// `<host>/vms/<VM GUID>/Virtual Hard Disks/<base stem>_<SNAPSHOT GUID>.avhdx`.
    ///
    /// Before freezing, each disk's recorded parents are checked against
    /// their DataWriteGuids; the active leaf's current DataWriteGuid (it may
    /// have been written since) is what gets frozen. The disk's tracking
    /// epoch advances by one.
    ///
    /// # Errors
    /// [`HostError::NotSupported`] for a `snapshot_type` other than 32768 or
    /// 2, or application consistency; [`HostError::NotFound`] for an unknown
    /// VM; [`HostError::LayerModified`]; [`HostError::Vhdx`];
    /// [`HostError::Io`]. On error no new file remains and the catalog is
    /// unchanged.
    pub fn create_snapshot_with(
        &mut self,
        vm: &str,
        snapshot_type: u16,
        settings: &SnapshotSettings,
    ) -> Result<&Snapshot> {
        let guid =
            self.snapshot_transaction(vm, snapshot_type, settings.consistency_level, |_, guid| {
                Ok(guid)
            })?;
        self.snapshot_by_guid(guid)
    }

    /// Checks `consistency_level`, takes a snapshot of `vm` into a copy of
    /// the catalog, lets `then` turn it into the final object (given the
    /// snapshot's GUID, returning the object's GUID) and commits. On any
    /// error the new files are removed and the catalog is unchanged.
    ///
    /// # Errors
    /// [`HostError::NotSupported`] for the consistency level or
    /// `snapshot_type`; [`HostError::NotFound`] for an unknown VM; those of
    /// [`Host::take_snapshot`], `then` and the catalog commit.
    pub(crate) fn snapshot_transaction(
        &mut self,
        vm: &str,
        snapshot_type: u16,
        consistency_level_requested: Option<u16>,
        then: impl FnOnce(&mut Catalog, Uuid) -> Result<Uuid>,
    ) -> Result<Uuid> {
        let consistency = consistency_level(consistency_level_requested, "ConsistencyLevel")?;
        let vm_index = self
            .vm_index(vm)
            .ok_or_else(|| not_found(ObjectKind::VirtualSystem, vm))?;
        let mut catalog = self.catalog.clone();
        let mut created = CreatedFiles::default();
        let result = self
            .take_snapshot(
                &mut catalog,
                vm_index,
                snapshot_type,
                consistency,
                &mut created,
            )
            .and_then(|snapshot| then(&mut catalog, snapshot))
            .and_then(|guid| self.commit(catalog).map(|()| guid));
        if result.is_err() {
            created.remove_all();
        }
        result
    }

    /// `DestroySnapshot(AffectedSnapshot)`: removes the snapshot from the
    /// catalog (its children are re-parented to its parent), then reclaims
    /// the frozen layers no other snapshot or reference point needs by
    /// merging them into their child, journal first (see `lifecycle`).
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for a malformed id;
    /// [`HostError::NotFound`]; [`HostError::InUse`] if a merge would
    /// rewrite a layer of a pinned reference point; [`HostError::LayerModified`],
    /// [`HostError::Vhdx`], [`HostError::Io`] from the merge (the snapshot
    /// is then gone and the merge pending: the next lifecycle operation or
    /// `Host::open` finishes it).
    pub fn destroy_snapshot(&mut self, instance_id: &str) -> Result<()> {
        let index = self.snapshot_index(instance_id)?;
        let vm = self
            .catalog
            .snapshots
            .get(index)
            .map(Snapshot::virtual_system)
            .ok_or_else(|| not_found(ObjectKind::Snapshot, instance_id))?;
        if let Some(s) = self.catalog.snapshots.get(index) {
            self.ensure_not_collected_snapshot(&s.guid, "DestroySnapshot")?;
        }
        self.lifecycle_change(vm, "DestroySnapshot", |catalog| {
            remove_snapshot(catalog, index).map(drop)
        })
    }

    pub(crate) fn snapshot_by_guid(&self, guid: Uuid) -> Result<&Snapshot> {
        self.catalog
            .snapshots
            .iter()
            .find(|s| s.guid == guid)
            .ok_or_else(|| not_found(ObjectKind::Snapshot, &settings_instance_id(&guid)))
    }

    /// Freezes every disk of `catalog.virtual_systems[vm_index]` and records
    /// the snapshot in `catalog`. New files are added to `created` as soon as
    /// they may exist, so the caller can roll back.
    pub(crate) fn take_snapshot(
        &self,
        catalog: &mut Catalog,
        vm_index: usize,
        snapshot_type: u16,
        consistency_level: u16,
        created: &mut CreatedFiles,
    ) -> Result<Uuid> {
        let virtual_system_type = match snapshot_type {
            SNAPSHOT_TYPE_RECOVERY => VIRTUAL_SYSTEM_TYPE_SNAPSHOT_RECOVERY,
            SNAPSHOT_TYPE_FULL => VIRTUAL_SYSTEM_TYPE_SNAPSHOT_REALIZED,
            other => {
                return Err(HostError::NotSupported {
                    what: format!("SnapshotType {other} (only 32768 recovery and 2 full)"),
                });
            }
        };
        let guid = Uuid::new_v4();
        let now = Timestamp::now();
        let parent = {
            let vm = catalog
                .virtual_systems
                .get(vm_index)
                .ok_or_else(|| not_found(ObjectKind::VirtualSystem, &vm_index.to_string()))?;
            catalog
                .snapshots
                .iter()
                .rev()
                .find(|s| s.virtual_system() == vm.name)
                .map(|s| s.settings.instance_id.clone())
        };
        let vm = catalog
            .virtual_systems
            .get_mut(vm_index)
            .ok_or_else(|| not_found(ObjectKind::VirtualSystem, &vm_index.to_string()))?;
        let disk_dir = self.vm_disk_dir(&vm.name);
        let mut frozen = Vec::with_capacity(vm.disks.len());
        for disk in &mut vm.disks {
            frozen.push(freeze_disk(disk, &disk_dir, &guid, created)?);
        }
        let snapshot = Snapshot {
            settings: VirtualSystemSettingData {
                instance_id: settings_instance_id(&guid),
                element_name: format!("{} - ({})", vm.element_name, now.to_display_string()),
                virtual_system_type: virtual_system_type.to_owned(),
                virtual_system_identifier: vm.name,
                creation_time: now,
                parent,
            },
            guid,
            snapshot_type,
            consistency_level,
            vm_settings: vm.settings.clone(),
            disks: frozen,
        };
        tracing::info!(vm = %vm.element_name, snapshot = %snapshot.settings.instance_id, "snapshot taken");
        catalog.snapshots.push(snapshot);
        Ok(guid)
    }
}

/// Freezes one disk: verifies its chain, creates the new differencing leaf,
/// and updates `disk` (new chain, next epoch). Returns the frozen record.
fn freeze_disk(
    disk: &mut VirtualDisk,
    disk_dir: &Path,
    snapshot: &Uuid,
    created: &mut CreatedFiles,
) -> Result<FrozenDisk> {
    let leaf_guid = open_verified(&disk.chain, LeafPolicy::Active)?
        .leaf()
        .data_write_guid();
    let mut frozen_chain = disk.chain.clone();
    frozen_chain.set_leaf_data_write_guid(leaf_guid);
    let epoch = disk
        .rct_epoch
        .checked_add(1)
        .ok_or_else(|| HostError::InvalidState {
            operation: "CreateSnapshot",
            object: disk.instance_id.clone(),
            reason: "the change-tracking epoch counter is exhausted".to_owned(),
        })?;

    created.create_dir_all(disk_dir)?;
    let new_leaf = new_leaf_path(disk_dir, &frozen_chain, snapshot, created)?;
    created.push(new_leaf.clone());
    create_differencing(&new_leaf, &frozen_chain.leaf().path, None)?;
    let mut paths = vec![new_leaf.clone()];
    paths.extend(frozen_chain.paths());
    let new_guid = Chain::from_paths(&paths)?.leaf().data_write_guid();

    disk.chain = frozen_chain.with_new_leaf(ChainLayer {
        path: new_leaf.clone(),
        data_write_guid: new_guid,
    });
    disk.rct_epoch = epoch;
    disk.tracking.epoch_layers.insert(
        0,
        EpochLayer {
            path: new_leaf.clone(),
            first_epoch: epoch,
            last_epoch: epoch,
        },
    );
    Ok(FrozenDisk {
        instance_id: disk.instance_id.clone(),
        disk_guid: disk.disk_guid,
        element_name: disk.element_name.clone(),
        chain: frozen_chain,
        rct_epoch: epoch,
        epoch_layer: new_leaf,
    })
}

/// `<dir>/<base stem>_<SNAPSHOT GUID>.avhdx`, or `<base stem>-<n>_…` if
/// that name exists or another disk of this snapshot took it.
fn new_leaf_path(
    dir: &Path,
    chain: &LayerChain,
    snapshot: &Uuid,
    created: &CreatedFiles,
) -> Result<PathBuf> {
    let stem = chain
        .base()
        .path
        .file_stem()
        .map_or_else(|| "disk".to_owned(), |s| s.to_string_lossy().into_owned());
    let guid = cim_guid(snapshot);
    for n in 1..=1000u32 {
        let name = if n == 1 {
            format!("{stem}_{guid}.avhdx")
        } else {
            format!("{stem}-{n}_{guid}.avhdx")
        };
        let candidate = dir.join(name);
        let exists = candidate
            .try_exists()
            .map_err(|e| HostError::io(&candidate, "stat", e))?;
        if !exists && !created.contains(&candidate) {
            return Ok(candidate);
        }
    }
    Err(HostError::InvalidState {
        operation: "CreateSnapshot",
        object: dir.display().to_string(),
        reason: format!("no free file name for a new leaf of {stem}"),
    })
}

/// Removes `catalog.snapshots[index]`, re-parenting its children.
pub(crate) fn remove_snapshot(catalog: &mut Catalog, index: usize) -> Result<Snapshot> {
    if index >= catalog.snapshots.len() {
        return Err(not_found(ObjectKind::Snapshot, &index.to_string()));
    }
    let removed = catalog.snapshots.remove(index);
    for s in &mut catalog.snapshots {
        if s.settings.parent.as_deref() == Some(removed.settings.instance_id.as_str()) {
            s.settings.parent.clone_from(&removed.settings.parent);
        }
    }
    Ok(removed)
}

/// Index of snapshot `guid` in `catalog.snapshots`.
///
/// # Errors
/// [`HostError::NotFound`] naming the snapshot's InstanceID.
pub(crate) fn snapshot_position(catalog: &Catalog, guid: Uuid) -> Result<usize> {
    catalog
        .snapshots
        .iter()
        .position(|s| s.guid == guid)
        .ok_or_else(|| not_found(ObjectKind::Snapshot, &settings_instance_id(&guid)))
}
