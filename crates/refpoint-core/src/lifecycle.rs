//! The reference point lifecycle: `RemoveAssociatedData`,
//! `DestroyReferencePoint`, `DestroySnapshot`, and reclaiming the frozen
//! layers they leave unneeded (DESIGN.md "The standalone host model").
//!
//! **Policy.** A layer of a disk's chain is *needed* while it is the frozen
//! top of a snapshot or of a reference point that has associated data:
//! merging it away would change that object's content. The other tracking
//! layers (epoch ≥ 1, neither the active leaf nor the base) are merged into
//! their child, which keeps every other object's content and the live
//! disk unchanged (their chains read the same through the child). Base
//! layers (epoch 0, no parent) are never merged.
//!
//! **One merge of layer `L` into its child `C` (parent `P`):**
//!
//! ```text
//! 1. journal: every epoch L holds, and C's if C is frozen, that has no
//!    committed record yet, is appended and fsynced   (L, C: DataWriteGuids checked)
//! 2. catalog: the records + PendingMerge{L, C, P}                       ← commit
//! 3. refpoint_vhdx::merge: copy L's sectors into C, re-link C to P (crash-safe)
//! 4. catalog: L out of every chain, C's epoch span widened, relinked     ← commit
//! 5. delete L, fsync its directory
//! 6. catalog: PendingMerge cleared                                      ← commit
//! ```
//!
//! A crash anywhere leaves a chain that opens and reads the same; a
//! pending merge is finished by `Host::open` and by the next lifecycle
//! operation on the VM. Journal records count only once committed (step
//! 2), so the journal never claims changes a crash kept it from recording.
//! When `C` is the active leaf its own (live) epoch cannot be journaled;
//! afterwards it answers that epoch with a superset (module docs of
//! [`crate::tracking`]).

use std::path::{Path, PathBuf};

use refpoint_vhdx::VhdxFile;
use refpoint_vhdx::merge::{MergeOptions, merge_into_child_with};
use uuid::Uuid;

use crate::atomic::sync_dir;
use crate::catalog::Catalog;
use crate::error::{HostError, ObjectKind, Result};
use crate::host::{Host, not_found};
use crate::ids::cim_guid;
use crate::journal::{self, FLAG_SUPERSET, JournalRecord};
use crate::tracking::{PendingMerge, layer_changes};

/// A layer planned to be merged away: VM, disk index, layer path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unneeded {
    disk: usize,
    layer: PathBuf,
    child: PathBuf,
}

impl Host {
    /// Tuning of the merges done by lifecycle operations (smaller
    /// transactions: more, shorter commits).
    pub fn set_merge_options(&mut self, options: MergeOptions) {
        self.merge_options = options;
    }

    /// `Msvm_VirtualSystemReferencePointService.RemoveAssociatedData`: sets
    /// `HasAssociatedData` = false and merges the frozen layers that no
    /// other snapshot or reference point needs into their child (journal
    /// first, module docs). The reference point stays usable as a base of
    /// change queries and differential exports (its epochs come from the
    /// journal); exporting it is refused by the facade (32775). Calling it
    /// again is harmless.
    ///
    /// # Errors
    /// [`HostError::InUse`] (32774) if it is pinned or a merge would rewrite
    /// a layer of a pinned reference point; as [`Host::reference_point`];
    /// [`HostError::LayerModified`] if a layer to journal was written
    /// outside refpoint; [`HostError::Vhdx`], [`HostError::Io`] from the
    /// merge (then pending, finished by the next operation).
    pub fn remove_associated_data(&mut self, rp: &str) -> Result<()> {
        let found = self.reference_point(rp)?;
        let (guid, vm) = (found.guid, found.virtual_system_identifier);
        self.ensure_not_pinned(&guid, &found.instance_id, "RemoveAssociatedData")?;
        self.lifecycle_change(vm, "RemoveAssociatedData", |catalog| {
            if let Some(r) = catalog.reference_points.iter_mut().find(|r| r.guid == guid) {
                r.has_associated_data = false;
            }
            Ok(())
        })
    }

    /// Applies `change` to the catalog of VM `vm` and reclaims the layers it
    /// leaves unneeded. Pending merges are finished first; pins are checked
    /// against the planned merges before anything is committed.
    pub(crate) fn lifecycle_change(
        &mut self,
        vm: Uuid,
        operation: &'static str,
        change: impl FnOnce(&mut Catalog) -> Result<()>,
    ) -> Result<()> {
        self.finish_pending_merges(vm)?;
        let mut catalog = self.catalog.clone();
        change(&mut catalog)?;
        for planned in unneeded_layers(&catalog, vm) {
            self.check_pins(&catalog, vm, &planned, operation)?;
        }
        if catalog != self.catalog {
            self.commit(catalog)?;
        }
        self.reclaim(vm)
    }

    /// Merges unneeded layers of `vm` away, lowest first, until none is left.
    fn reclaim(&mut self, vm: Uuid) -> Result<()> {
        while let Some(next) = unneeded_layers(&self.catalog, vm).pop() {
            self.merge_layer(vm, &next)?;
        }
        Ok(())
    }

    /// [`HostError::InUse`] if merging `planned` would rewrite a layer of a
    /// pinned reference point.
    fn check_pins(
        &self,
        catalog: &Catalog,
        vm: Uuid,
        planned: &Unneeded,
        operation: &'static str,
    ) -> Result<()> {
        let Some(disk) = vm_disk(catalog, vm, planned.disk) else {
            return Ok(());
        };
        for rp in catalog
            .reference_points
            .iter()
            .filter(|r| r.virtual_system_identifier == vm && self.pins.is_pinned(&r.guid))
        {
            let touched = rp.disks.iter().any(|d| {
                d.disk_guid == disk.disk_guid
                    && (d.chain.contains(&planned.layer) || d.chain.contains(&planned.child))
            });
            if touched {
                return Err(HostError::InUse {
                    operation,
                    object: rp.instance_id.clone(),
                    reason: format!(
                        "merging {} into {} would rewrite a layer of this reference point, pinned by a running export",
                        planned.layer.display(),
                        planned.child.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Steps 1–2 of the module docs, then the rest via [`Host::finish_pending_merge`].
    fn merge_layer(&mut self, vm: Uuid, planned: &Unneeded) -> Result<()> {
        let disk = vm_disk(&self.catalog, vm, planned.disk)
            .ok_or_else(|| not_found(ObjectKind::VirtualDisk, &planned.disk.to_string()))?;
        let position = disk
            .chain
            .layers()
            .position(|l| l.path == planned.layer)
            .ok_or_else(|| {
                not_found(
                    ObjectKind::VirtualDisk,
                    &planned.layer.display().to_string(),
                )
            })?;
        let layer_parent = disk
            .chain
            .layers()
            .nth(position + 1)
            .map(|l| l.path.clone())
            .ok_or_else(|| HostError::InvalidState {
                operation: "merge",
                object: planned.layer.display().to_string(),
                reason: "the layer has no parent in the chain".to_owned(),
            })?;
        let child_is_active = position == 1;
        let mut records = Vec::new();
        let mut sequence = u64::try_from(disk.tracking.journal.len()).unwrap_or(u64::MAX);
        let mut to_journal = vec![planned.layer.as_path()];
        if !child_is_active {
            to_journal.push(planned.child.as_path());
        }
        for path in to_journal {
            let Some(epochs) = disk.tracking.layer_at(path) else {
                continue;
            };
            let pending: Vec<u64> = (epochs.first_epoch..=epochs.last_epoch)
                .filter(|&e| disk.tracking.journal_entry(e).is_none())
                .collect();
            if pending.is_empty() {
                continue;
            }
            let file = VhdxFile::open(path)?;
            let recorded = disk
                .chain
                .layers()
                .find(|l| l.path == path)
                .map_or(Uuid::nil(), |l| l.data_write_guid);
            if recorded != file.data_write_guid() {
                return Err(HostError::LayerModified {
                    path: path.to_owned(),
                    expected: recorded,
                    found: file.data_write_guid(),
                });
            }
            let ranges = layer_changes(&file)?;
            let g = file.geometry();
            for epoch in pending {
                records.push(JournalRecord {
                    sequence,
                    disk: disk.disk_guid,
                    epoch,
                    data_write_guid: recorded,
                    flags: if epochs.first_epoch < epochs.last_epoch {
                        FLAG_SUPERSET
                    } else {
                        0
                    },
                    block_size: g.block_size,
                    logical_sector_size: g.logical_sector_size,
                    virtual_size: g.virtual_size,
                    ranges: ranges.clone(),
                });
                sequence = sequence.saturating_add(1);
            }
        }
        let disk_guid = disk.disk_guid;
        let entries = if records.is_empty() {
            Vec::new()
        } else {
            journal::append(
                &self.journal_path(&vm, &disk_guid),
                disk.tracking.committed_length(),
                &records,
            )?
        };
        let mut catalog = self.catalog.clone();
        if let Some(d) = vm_disk_mut(&mut catalog, vm, planned.disk) {
            d.tracking.journal.extend(entries);
            d.tracking.pending_merge = Some(PendingMerge {
                layer: planned.layer.clone(),
                into: planned.child.clone(),
                layer_parent,
                relinked: false,
            });
        }
        self.commit(catalog)?;
        tracing::info!(layer = %planned.layer.display(), into = %planned.child.display(), "merging layer into its child");
        self.finish_pending_merge(vm, planned.disk)
    }

    /// Finishes the pending merges of every disk of `vm`.
    pub(crate) fn finish_pending_merges(&mut self, vm: Uuid) -> Result<()> {
        let count = self
            .catalog
            .virtual_systems
            .iter()
            .find(|v| v.name == vm)
            .map_or(0, |v| v.disks.len());
        for disk in 0..count {
            self.finish_pending_merge(vm, disk)?;
        }
        Ok(())
    }

    /// Finishes every pending merge of the host, logging (not returning)
    /// failures: used by `Host::open`, whose caller may not care.
    pub(crate) fn recover_pending_merges(&mut self) {
        let vms: Vec<Uuid> = self
            .catalog
            .virtual_systems
            .iter()
            .map(|v| v.name)
            .collect();
        for vm in vms {
            if let Err(e) = self.finish_pending_merges(vm) {
                tracing::warn!(vm = %cim_guid(&vm), error = %e, "pending merge not finished; retried by the next lifecycle operation");
            }
        }
    }

    /// Steps 3–6 of the module docs for disk `disk` of `vm`, if a merge is
    /// pending there.
    fn finish_pending_merge(&mut self, vm: Uuid, disk: usize) -> Result<()> {
        let Some(pending) =
            vm_disk(&self.catalog, vm, disk).and_then(|d| d.tracking.pending_merge.clone())
        else {
            return Ok(());
        };
        if !pending.relinked {
            let report = merge_into_child_with(
                &pending.into,
                &pending.layer,
                &pending.layer_parent,
                &self.merge_options,
                &mut |_| {},
            )?;
            tracing::debug!(?report, "merge copied and re-linked");
            let mut catalog = self.catalog.clone();
            drop_layer(&mut catalog, vm, disk, &pending);
            self.commit(catalog)?;
        }
        match std::fs::remove_file(&pending.layer) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HostError::io(&pending.layer, "delete merged layer", e)),
        }
        if let Some(dir) = pending.layer.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir)?;
        }
        let mut catalog = self.catalog.clone();
        if let Some(d) = vm_disk_mut(&mut catalog, vm, disk) {
            d.tracking.pending_merge = None;
        }
        self.commit(catalog)
    }
}

/// Step 4: `pending.layer` leaves the disk's chain and every frozen chain
/// of an object that keeps data; the child takes over its epochs.
fn drop_layer(catalog: &mut Catalog, vm: Uuid, disk: usize, pending: &PendingMerge) {
    let Some(d) = vm_disk_mut(catalog, vm, disk) else {
        return;
    };
    let disk_guid = d.disk_guid;
    if let Some(chain) = d.chain.without(&pending.layer) {
        d.chain = chain;
    }
    let merged = d
        .tracking
        .epoch_layers
        .iter()
        .find(|l| l.path == pending.layer)
        .map(|l| (l.first_epoch, l.last_epoch));
    if let (Some((first, last)), Some(child)) = (
        merged,
        d.tracking
            .epoch_layers
            .iter_mut()
            .find(|l| l.path == pending.into),
    ) {
        child.first_epoch = child.first_epoch.min(first);
        child.last_epoch = child.last_epoch.max(last);
    }
    d.tracking.epoch_layers.retain(|l| l.path != pending.layer);
    if let Some(p) = d.tracking.pending_merge.as_mut() {
        p.relinked = true;
    }
    let frozen = catalog
        .snapshots
        .iter_mut()
        .flat_map(|s| s.disks.iter_mut())
        .chain(
            catalog
                .reference_points
                .iter_mut()
                .filter(|r| r.has_associated_data)
                .flat_map(|r| r.disks.iter_mut()),
        );
    for f in frozen.filter(|f| f.disk_guid == disk_guid) {
        if let Some(chain) = f.chain.without(&pending.layer) {
            f.chain = chain;
        }
    }
}

/// The tracking layers of `vm`'s disks that no snapshot and no reference
/// point with data has as its frozen top, ordered by disk then from the
/// top of the chain down (so `pop()` gives the lowest of the last disk).
fn unneeded_layers(catalog: &Catalog, vm: Uuid) -> Vec<Unneeded> {
    let Some(system) = catalog.virtual_systems.iter().find(|v| v.name == vm) else {
        return Vec::new();
    };
    let tops: Vec<(&Uuid, &Path)> = catalog
        .snapshots
        .iter()
        .flat_map(|s| s.disks.iter())
        .chain(
            catalog
                .reference_points
                .iter()
                .filter(|r| r.has_associated_data)
                .flat_map(|r| r.disks.iter()),
        )
        .map(|f| (&f.disk_guid, f.frozen_leaf()))
        .collect();
    let mut out = Vec::new();
    for (index, disk) in system.disks.iter().enumerate() {
        let layers: Vec<&Path> = disk.chain.layers().map(|l| l.path.as_path()).collect();
        for position in 1..layers.len().saturating_sub(1) {
            let (Some(&layer), Some(&child)) = (layers.get(position), layers.get(position - 1))
            else {
                continue;
            };
            let tracked = disk.tracking.layer_at(layer).is_some();
            let needed = tops
                .iter()
                .any(|&(g, top)| *g == disk.disk_guid && top == layer);
            if tracked && !needed {
                out.push(Unneeded {
                    disk: index,
                    layer: layer.to_owned(),
                    child: child.to_owned(),
                });
            }
        }
    }
    out
}

fn vm_disk(catalog: &Catalog, vm: Uuid, disk: usize) -> Option<&crate::model::VirtualDisk> {
    catalog
        .virtual_systems
        .iter()
        .find(|v| v.name == vm)
        .and_then(|v| v.disks.get(disk))
}

fn vm_disk_mut(
    catalog: &mut Catalog,
    vm: Uuid,
    disk: usize,
) -> Option<&mut crate::model::VirtualDisk> {
    catalog
        .virtual_systems
        .iter_mut()
        .find(|v| v.name == vm)
        .and_then(|v| v.disks.get_mut(disk))
}
