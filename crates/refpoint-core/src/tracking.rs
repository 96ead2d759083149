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

use serde::{Deserialize, Serialize};

use crate::error::{HostError, Result};
use crate::host::Host;

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
    pub data_write_guid: uuid::Uuid,
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
}

impl Host {
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
        let _ = (disk_instance_id, base_rp, target_rp);
        Err(HostError::NotSupported {
            what: "changes_between (in progress)".to_owned(),
        })
    }

    /// `Msvm_ImageManagementService.GetVirtualDiskChanges`: `path` is a
    /// disk file of a VM (a frozen layer of a snapshot or reference point,
    /// or the active leaf); `limit_id` an RCT ID of the same disk. Returns
    /// the changes since `limit_id` up to the state `path` represents, within
    /// `[byte_offset, byte_offset + byte_length)`, at most `max_ranges`
    /// ranges (`0` = no limit); `processed_byte_length` says how far the
    /// region was covered (paging contract of `QueryChangesVirtualDisk`).
    ///
    /// # Errors
    /// [`HostError::FileNotFound`] (32779) if `path` does not exist;
    /// [`HostError::InvalidParameter`] for a file that is no tracked layer
    /// of a VM disk, a malformed or foreign `limit_id`, or a region outside
    /// the disk; [`HostError::InvalidState`] when tracking is lost (the
    /// message names the disk and the cause).
    pub fn get_virtual_disk_changes(
        &self,
        path: &Path,
        limit_id: &str,
        byte_offset: u64,
        byte_length: u64,
        max_ranges: usize,
    ) -> Result<DiskChanges> {
        let _ = (path, limit_id, byte_offset, byte_length, max_ranges);
        Err(HostError::NotSupported {
            what: "GetVirtualDiskChanges (in progress)".to_owned(),
        })
    }
}
