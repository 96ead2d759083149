//! Resilient change tracking (DESIGN.md "Change tracking"): epochs per disk,
//! "changed between two reference points", and
//! `Msvm_ImageManagementService.GetVirtualDiskChanges`
//! (`reference/hyperv-api.md` §2.5).
//!
//! Epochs: epoch `n ≥ 1` of a disk is the set of logical sectors written
//! while the differencing layer made by the disk's `n`-th snapshot was the
//! active leaf; a reference point made from that snapshot carries
//! `rct:{<disk GUID>}:<n>`. The changes after reference point `a` (epoch
//! `a`) up to reference point `b` (epoch `b`) are the union of epochs
//! `a ..= b - 1`: the writes made while the layers of snapshots `a … b-1`
//! were active.
//!
//! Each epoch is answered from the first source that can:
//! 1. a committed record of the disk's change-tracking journal
//!    ([`crate::journal`]) — written (and fsynced) before a merge removes
//!    or rewrites the layer that recorded the epoch;
//! 2. the layer that recorded it, if it holds only that epoch: its sectors
//!    that do not defer to the parent (FULLY_PRESENT blocks, sector-bitmap
//!    bits of PARTIALLY_PRESENT blocks, ZERO/UNMAPPED blocks). A frozen
//!    layer must still carry its recorded DataWriteGuid;
//! 3. the active leaf after a merge into it (it then also holds the merged
//!    epochs): its sectors are a superset of the live epoch — never missing
//!    a change, possibly reporting merged-in sectors too.
//!
//! When none can, tracking is [`Tracking::Lost`] with a reason naming the
//! disk and the cause; the answer is never guessed.

use std::path::{Path, PathBuf};

use refpoint_vhdx::merge::coverage;
use refpoint_vhdx::{ErrorKind as VhdxErrorKind, VhdxFile};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{HostError, Result};
use crate::host::{Host, VMS_DIR_NAME};
use crate::ids::{RctId, cim_guid};
use crate::journal;
use crate::model::VirtualDisk;

/// A byte range of the virtual disk: `[offset, offset + length)`, bytes.
/// Lists of ranges are sorted by offset, non-overlapping and coalesced
/// (adjacent ranges merged), aligned to the logical sector size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ByteRange {
    /// First byte, virtual offset.
    pub offset: u64,
    /// Length in bytes (> 0).
    pub length: u64,
}

impl ByteRange {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// The answer of a change query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracking {
    /// The changed ranges (sorted, coalesced, bytes).
    Changes(Vec<ByteRange>),
    /// Tracking cannot answer; `reason` names the disk and the cause
    /// (journal missing/corrupt/gap, layer modified outside refpoint, base
    /// newer than the target, disk absent at the base).
    Lost {
        /// Why, naming the disk.
        reason: String,
    },
}

/// Out-parameters of `GetVirtualDiskChanges`: index-parallel
/// `ChangedByteOffsets[]` / `ChangedByteLengths[]` (bytes, sorted,
/// coalesced, clipped to the queried region) and `ProcessedByteLength`
/// (bytes of the region processed; the caller continues at
/// `ByteOffset + ProcessedByteLength` while it is less than `ByteLength`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskChanges {
    /// `ChangedByteOffsets[]`.
    pub changed_byte_offsets: Vec<u64>,
    /// `ChangedByteLengths[]`.
    pub changed_byte_lengths: Vec<u64>,
    /// `ProcessedByteLength`.
    pub processed_byte_length: u64,
}

/// Change-tracking state of one virtual disk, kept in the catalog with the
/// disk (`ChangeTracking`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DiskTracking {
    /// Layers of the disk's chain that recorded epochs ≥ 1, top (active
    /// leaf) first; a layer holds several epochs after a merge into it.
    #[serde(default)]
    pub epoch_layers: Vec<EpochLayer>,
    /// The committed records of the disk's journal, in journal order
    /// (record `i` has sequence number `i`); records past these in the
    /// file are uncommitted and ignored.
    #[serde(default)]
    pub journal: Vec<JournaledEpoch>,
    /// A merge that started and has not finished (completed on the next
    /// `Host::open` or lifecycle operation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_merge: Option<PendingMerge>,
}

/// A layer of the disk's chain and the epochs whose writes it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EpochLayer {
    /// The layer (absolute path, a layer of the disk's chain).
    pub path: PathBuf,
    /// First epoch it holds.
    pub first_epoch: u64,
    /// Last epoch it holds (`>= first_epoch`).
    pub last_epoch: u64,
}

/// One committed journal record as the catalog knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct JournaledEpoch {
    /// The epoch the record describes.
    pub epoch: u64,
    /// The DataWriteGuid of the layer it was taken from.
    pub data_write_guid: Uuid,
    /// Byte offset of the record in the journal file.
    pub offset: u64,
    /// Byte length of the record.
    pub length: u64,
    /// The set may include sectors merged in from earlier epochs
    /// ([`crate::journal::FLAG_SUPERSET`]).
    #[serde(default)]
    pub superset: bool,
}

/// A merge of `layer` into its child `into` that has begun: the journal
/// records it relies on are committed; the copy and the re-link of `into`
/// to `layer_parent` may be partly done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PendingMerge {
    /// The layer being merged away.
    pub layer: PathBuf,
    /// Its child, receiving its sectors.
    pub into: PathBuf,
    /// Its parent, the child's parent afterwards.
    pub layer_parent: PathBuf,
    /// `true` once the catalog no longer lists `layer` (only its file
    /// remains to be deleted).
    #[serde(default)]
    pub relinked: bool,
}

impl DiskTracking {
    /// The epoch layer holding `epoch`.
    pub fn layer_of(&self, epoch: u64) -> Option<&EpochLayer> {
        self.epoch_layers
            .iter()
            .find(|l| l.first_epoch <= epoch && epoch <= l.last_epoch)
    }

    /// The epoch layer at `path`.
    pub fn layer_at(&self, path: &Path) -> Option<&EpochLayer> {
        self.epoch_layers.iter().find(|l| l.path == path)
    }

    /// The latest committed journal record of `epoch`, with its sequence number.
    pub fn journal_entry(&self, epoch: u64) -> Option<(u64, &JournaledEpoch)> {
        (0u64..)
            .zip(&self.journal)
            .filter(|(_, e)| e.epoch == epoch)
            .last()
    }

    /// Bytes of the journal covered by committed records.
    pub fn committed_length(&self) -> u64 {
        self.journal
            .iter()
            .map(|e| e.offset.saturating_add(e.length))
            .max()
            .unwrap_or(0)
    }
}

/// Sorts `ranges` and merges overlapping or adjacent ones; drops empty ones.
pub fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.retain(|r| r.length > 0);
    ranges.sort_unstable();
    let mut out: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.offset <= last.end() => {
                let end = last.end().max(r.end());
                last.length = end - last.offset;
            }
            _ => out.push(r),
        }
    }
    out
}

/// The ranges a layer file defines by itself (its epoch's changed sectors).
///
/// # Errors
/// [`HostError::Vhdx`] reading sector bitmaps.
pub(crate) fn layer_changes(file: &VhdxFile) -> Result<Vec<ByteRange>> {
    Ok(coverage::defined_ranges(file)?
        .into_iter()
        .map(|(offset, length)| ByteRange { offset, length })
        .collect())
}

fn lost(disk: &VirtualDisk, cause: impl std::fmt::Display) -> Tracking {
    Tracking::Lost {
        reason: format!(
            "change tracking of disk {} is lost: {cause}",
            disk.instance_id
        ),
    }
}

impl Host {
    /// `<host>/vms/<VM GUID>`: per-VM files (journals, `Virtual Hard Disks/`).
    pub fn vm_dir(&self, vm: &Uuid) -> PathBuf {
        self.dir.join(VMS_DIR_NAME).join(cim_guid(vm))
    }

    /// The change-tracking journal of disk `disk` of VM `vm`:
    /// `<host>/vms/<VM GUID>/<disk GUID>.rctj` (format: [`crate::journal`]).
    pub fn journal_path(&self, vm: &Uuid, disk: &Uuid) -> PathBuf {
        journal::journal_path(&self.vm_dir(vm), disk)
    }

    /// Union of epochs `from .. to` of `disk` (of VM `vm`).
    pub(crate) fn epochs_changes(
        &self,
        vm: &Uuid,
        disk: &VirtualDisk,
        from: u64,
        to: u64,
    ) -> Result<Tracking> {
        let mut all = Vec::new();
        for epoch in from..to {
            match self.epoch_changes(vm, disk, epoch)? {
                Tracking::Changes(ranges) => all.extend(ranges),
                lost => return Ok(lost),
            }
        }
        Ok(Tracking::Changes(coalesce(all)))
    }

    /// One epoch, from the journal, else from its layer (module docs).
    fn epoch_changes(&self, vm: &Uuid, disk: &VirtualDisk, epoch: u64) -> Result<Tracking> {
        if let Some((sequence, entry)) = disk.tracking.journal_entry(epoch) {
            let path = self.journal_path(vm, &disk.disk_guid);
            return Ok(
                match journal::read_record(&path, disk.disk_guid, sequence, entry) {
                    Ok(record) => Tracking::Changes(record.ranges),
                    Err(e) => lost(disk, format_args!("epoch {epoch}: {e}")),
                },
            );
        }
        let Some(layer) = disk.tracking.layer_of(epoch) else {
            return Ok(lost(
                disk,
                format_args!(
                    "gap: epoch {epoch} is neither in a layer of the chain nor in the journal"
                ),
            ));
        };
        if epoch < layer.last_epoch {
            return Ok(lost(
                disk,
                format_args!(
                    "gap: epoch {epoch} was merged into {} without a journal record",
                    layer.path.display()
                ),
            ));
        }
        let file = match VhdxFile::open(&layer.path) {
            Ok(file) => file,
            Err(e) if e.kind() == VhdxErrorKind::NotFound => {
                return Ok(lost(
                    disk,
                    format_args!("epoch {epoch}: layer {} is missing", layer.path.display()),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if layer.path != disk.active_leaf() {
            let recorded = disk
                .chain
                .layers()
                .find(|l| l.path == layer.path)
                .map(|l| l.data_write_guid);
            match recorded {
                Some(guid) if guid == file.data_write_guid() => {}
                Some(guid) => {
                    return Ok(lost(
                        disk,
                        format_args!(
                            "epoch {epoch}: layer {} was modified outside refpoint (DataWriteGuid {}, recorded {})",
                            layer.path.display(),
                            cim_guid(&file.data_write_guid()),
                            cim_guid(&guid)
                        ),
                    ));
                }
                None => {
                    return Ok(lost(
                        disk,
                        format_args!(
                            "epoch {epoch}: layer {} is not in the disk's chain",
                            layer.path.display()
                        ),
                    ));
                }
            }
        }
        Ok(Tracking::Changes(layer_changes(&file)?))
    }

    /// Changes of disk `disk_instance_id` after reference point `base_rp`
    /// up to reference point `target_rp` (same VM): the union of epochs
    /// `base epoch ..= target epoch - 1` (see the module docs).
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] / [`HostError::NotFound`] for an
    /// unknown reference point or a disk not in `target_rp`;
    /// [`HostError::InvalidParameter`] for reference points of different
    /// VMs; [`HostError::Vhdx`] / [`HostError::Io`] reading layers. Lost
    /// tracking is not an error: [`Tracking::Lost`].
    pub fn changes_between(
        &self,
        disk_instance_id: &str,
        base_rp: &str,
        target_rp: &str,
    ) -> Result<Tracking> {
        let base = self.reference_point(base_rp)?;
        let target = self.reference_point(target_rp)?;
        if base.virtual_system_identifier != target.virtual_system_identifier {
            return Err(HostError::InvalidParameter {
                parameter: "BaseReferencePoint",
                reason: format!(
                    "{} belongs to virtual system {}, {} to {}",
                    base.instance_id,
                    cim_guid(&base.virtual_system_identifier),
                    target.instance_id,
                    cim_guid(&target.virtual_system_identifier)
                ),
            });
        }
        let target_disk =
            target
                .disk(disk_instance_id)
                .ok_or_else(|| HostError::InvalidParameter {
                    parameter: "VirtualDiskIdentifier",
                    reason: format!(
                        "disk {disk_instance_id} is not in reference point {}",
                        target.instance_id
                    ),
                })?;
        let vm_guid = target.virtual_system_identifier;
        let vm = self.vm(&cim_guid(&vm_guid))?;
        let Some(disk) = vm
            .disks
            .iter()
            .find(|d| d.disk_guid == target_disk.disk_guid)
        else {
            return Ok(Tracking::Lost {
                reason: format!(
                    "change tracking of disk {disk_instance_id} is lost: the disk is no longer attached to {}",
                    vm.element_name
                ),
            });
        };
        let Some(base_disk) = base.disks.iter().find(|d| d.disk_guid == disk.disk_guid) else {
            return Ok(lost(
                disk,
                format_args!("the disk did not exist at base {}", base.instance_id),
            ));
        };
        if base_disk.rct_epoch > target_disk.rct_epoch || base.creation_time > target.creation_time
        {
            return Ok(lost(
                disk,
                format_args!(
                    "base {} (epoch {}) is newer than target {} (epoch {})",
                    base.instance_id,
                    base_disk.rct_epoch,
                    target.instance_id,
                    target_disk.rct_epoch
                ),
            ));
        }
        self.epochs_changes(&vm_guid, disk, base_disk.rct_epoch, target_disk.rct_epoch)
    }

    /// `Msvm_ImageManagementService.GetVirtualDiskChanges`: `path` is a
    /// disk file of a VM (a frozen layer of a snapshot or reference point,
    /// or the active leaf); `limit_id` an RCT ID of the same disk. Returns
    /// the changes since `limit_id` up to the state `path` represents, within
    /// `[byte_offset, byte_offset + byte_length)`, at most `max_ranges`
    /// ranges (`0` = no limit); `processed_byte_length` says how far the
    /// region was covered (paging contract of `QueryChangesVirtualDisk`):
    /// when the budget runs out it ends at the end of the last range
    /// returned, and the caller continues at `byte_offset +
    /// processed_byte_length`.
    ///
    /// The state a file represents: the active leaf, the live disk (every
    /// epoch so far); a layer that recorded epochs `x ..= y`, the end of
    /// epoch `y`; the top layer of the chain below the first tracked layer,
    /// the start of epoch 1.
    ///
    /// # Errors
    /// [`HostError::FileNotFound`] (32779) if `path` does not exist;
    /// [`HostError::InvalidParameter`] for a file that is no tracked layer
    /// of a VM disk, a malformed, foreign or newer `limit_id`, or a region
    /// outside the disk; [`HostError::InvalidState`] when tracking is lost
    /// (the message names the disk and the cause); [`HostError::Vhdx`].
    pub fn get_virtual_disk_changes(
        &self,
        path: &Path,
        limit_id: &str,
        byte_offset: u64,
        byte_length: u64,
        max_ranges: usize,
    ) -> Result<DiskChanges> {
        const OPERATION: &str = "GetVirtualDiskChanges";
        let exists = path
            .try_exists()
            .map_err(|e| HostError::io(path, "stat", e))?;
        if !exists {
            return Err(HostError::FileNotFound {
                parameter: "Path",
                path: path.to_owned(),
            });
        }
        let invalid = |parameter: &'static str, reason: String| HostError::InvalidParameter {
            parameter,
            reason,
        };
        let limit: RctId = limit_id
            .parse()
            .map_err(|e: crate::ids::IdError| invalid("LimitId", e.to_string()))?;
        let (vm_guid, disk, position) = self.disk_of_layer(path).ok_or_else(|| {
            invalid(
                "Path",
                format!(
                    "{} is not a layer of any virtual disk of this host",
                    path.display()
                ),
            )
        })?;
        if limit.disk != disk.disk_guid {
            return Err(invalid(
                "LimitId",
                format!(
                    "{limit_id} is an identifier of disk {{{}}}, but {} is a layer of disk {}",
                    cim_guid(&limit.disk),
                    path.display(),
                    disk.instance_id
                ),
            ));
        }
        if limit.epoch == 0 || limit.epoch > disk.rct_epoch {
            return Err(invalid(
                "LimitId",
                format!(
                    "{limit_id} was never issued for disk {} (its epochs are 1 to {})",
                    disk.instance_id, disk.rct_epoch
                ),
            ));
        }
        let layer_path = disk
            .chain
            .layers()
            .nth(position)
            .map(|l| l.path.clone())
            .unwrap_or_default();
        let end = if position == 0 {
            disk.rct_epoch.saturating_add(1)
        } else if let Some(layer) = disk.tracking.layer_at(&layer_path) {
            layer.last_epoch.saturating_add(1)
        } else if disk
            .chain
            .layers()
            .nth(position.saturating_sub(1))
            .is_some_and(|above| disk.tracking.layer_at(&above.path).is_some())
        {
            1
        } else {
            return Err(invalid(
                "Path",
                format!(
                    "{} lies below the first tracked point of disk {}",
                    path.display(),
                    disk.instance_id
                ),
            ));
        };
        if limit.epoch > end {
            return Err(invalid(
                "LimitId",
                format!(
                    "{limit_id} is newer than the state {} represents (epoch {end})",
                    path.display()
                ),
            ));
        }
        let virtual_size = VhdxFile::open(path)?.geometry().virtual_size;
        let region_end = byte_offset
            .checked_add(byte_length)
            .filter(|&e| e <= virtual_size)
            .ok_or_else(|| {
                invalid(
                    "ByteLength",
                    format!(
                        "[{byte_offset:#x}, +{byte_length:#x}) is outside the virtual disk of {virtual_size:#x} bytes"
                    ),
                )
            })?;
        let ranges = match self.epochs_changes(&vm_guid, disk, limit.epoch, end)? {
            Tracking::Changes(ranges) => ranges,
            Tracking::Lost { reason } => {
                return Err(HostError::InvalidState {
                    operation: OPERATION,
                    object: disk.instance_id.clone(),
                    reason,
                });
            }
        };
        Ok(page(&ranges, byte_offset, region_end, max_ranges))
    }

    /// The disk whose current chain holds `path`, with the layer's position
    /// (0 = active leaf).
    fn disk_of_layer(&self, path: &Path) -> Option<(Uuid, &VirtualDisk, usize)> {
        let wanted = path.canonicalize().ok()?;
        self.catalog.virtual_systems.iter().find_map(|vm| {
            vm.disks.iter().find_map(|disk| {
                disk.chain
                    .layers()
                    .position(|l| {
                        l.path == wanted || l.path.canonicalize().is_ok_and(|c| c == wanted)
                    })
                    .map(|position| (vm.name, disk, position))
            })
        })
    }
}

/// Clips `ranges` to `[start, end)` and applies the range budget.
fn page(ranges: &[ByteRange], start: u64, end: u64, max_ranges: usize) -> DiskChanges {
    let mut out = DiskChanges::default();
    for r in ranges {
        let from = r.offset.max(start);
        let to = r.end().min(end);
        if from >= to {
            continue;
        }
        if max_ranges != 0 && out.changed_byte_offsets.len() == max_ranges {
            // Budget spent: processed up to the end of the last range returned.
            out.processed_byte_length = out
                .changed_byte_offsets
                .last()
                .zip(out.changed_byte_lengths.last())
                .map_or(0, |(o, l)| o + l - start);
            return out;
        }
        out.changed_byte_offsets.push(from);
        out.changed_byte_lengths.push(to - from);
    }
    out.processed_byte_length = end - start;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(offset: u64, length: u64) -> ByteRange {
        ByteRange { offset, length }
    }

    #[test]
    fn coalesce_merges_overlapping_and_adjacent_ranges() {
        let out = coalesce(vec![r(100, 10), r(0, 10), r(10, 5), r(105, 20), r(50, 0)]);

        assert_eq!(out, vec![r(0, 15), r(100, 25)]);
    }

    #[test]
    fn page_clips_to_the_region() {
        let out = page(&[r(0, 100), r(200, 100)], 50, 250, 0);

        assert_eq!(out.changed_byte_offsets, vec![50, 200]);
        assert_eq!(out.changed_byte_lengths, vec![50, 50]);
        assert_eq!(out.processed_byte_length, 200);
    }

    #[test]
    fn page_with_a_spent_budget_stops_at_the_end_of_the_last_range() {
        let out = page(&[r(0, 100), r(200, 100), r(400, 10)], 0, 1000, 2);

        assert_eq!(out.changed_byte_offsets, vec![0, 200]);
        assert_eq!(out.processed_byte_length, 300);
    }

    #[test]
    fn page_with_exactly_the_budget_processes_the_whole_region() {
        let out = page(&[r(0, 100)], 0, 1000, 1);

        assert_eq!(out.processed_byte_length, 1000);
    }
}
