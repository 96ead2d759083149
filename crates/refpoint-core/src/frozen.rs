//! Frozen layers: the point-in-time image of one disk held by a snapshot or a
//! reference point ([`FrozenDisk`]), and the check every use of a chain makes
//! that its frozen (read-only by contract) layers are unchanged.
//!
//! A frozen layer's `DataWriteGuid` (MS-VHDX §2.2.2) is recorded when it is
//! frozen. Any write changes it, so a mismatch proves the layer was modified
//! outside refpoint: [`HostError::LayerModified`] names the file and both
//! GUIDs. Only a VM's *active* leaf may change.

use std::path::{Path, PathBuf};

use refpoint_vhdx::{Chain, VhdxFile};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{HostError, Result};
use crate::ids::RctId;
use crate::model::{LayerChain, guid_upper};

/// One disk of a snapshot or reference point: the SASD it was taken from and
/// its frozen chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrozenDisk {
    /// The disk's SASD `InstanceID` (`Microsoft:<VM>\<disk>\0\<index>\D`);
    /// this is `VirtualDiskIdentifiers[i]` of a reference point.
    #[serde(rename = "InstanceID")]
    pub instance_id: String,
    /// The disk's GUID.
    #[serde(rename = "DiskGuid", with = "guid_upper")]
    pub disk_guid: Uuid,
    /// The SASD's `ElementName` ("Hard Disk Image").
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// The frozen chain, top first; every layer's DataWriteGuid is fixed.
    /// `HostResource` of the point-in-time SASD = `[chain.leaf().path]`.
    #[serde(rename = "Chain")]
    pub chain: LayerChain,
    /// The change-tracking epoch started by the snapshot that froze this
    /// chain (see [`RctId`]).
    #[serde(rename = "RctEpoch")]
    pub rct_epoch: u64,
    /// The differencing layer created on top of the frozen chain by that
    /// snapshot: it records the writes of epoch `rct_epoch`.
    #[serde(rename = "EpochLayer")]
    pub epoch_layer: PathBuf,
}

impl FrozenDisk {
    /// The resilient change-tracking identifier of this disk at the point in
    /// time (`ResilientChangeTrackingIdentifiers[i]`).
    pub fn rct_id(&self) -> RctId {
        RctId {
            disk: self.disk_guid,
            epoch: self.rct_epoch,
        }
    }

    /// The frozen top layer (`HostResource` of the point-in-time SASD).
    pub fn frozen_leaf(&self) -> &Path {
        &self.chain.leaf().path
    }

    /// Opens the frozen chain read-only, after checking that no layer was
    /// modified since it was frozen.
    ///
    /// # Errors
    /// [`HostError::LayerModified`] for a changed layer; [`HostError::Vhdx`]
    /// if a layer cannot be opened or the chain does not link.
    pub fn open_chain(&self) -> Result<Chain> {
        open_verified(&self.chain, LeafPolicy::Frozen)
    }
}

/// Whether the leaf of a chain may have changed since it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeafPolicy {
    /// A VM's active leaf: written by design; its new GUID is reported.
    Active,
    /// A frozen chain: every layer must be unchanged.
    Frozen,
}

/// Opens `chain` with `Chain::from_paths` and checks the recorded
/// DataWriteGuids (all layers, or all but the leaf for [`LeafPolicy::Active`]).
///
/// When the chain does not open (a modified parent breaks its child's
/// `parent_linkage`), each layer is opened alone to report which one was
/// modified, rather than the less specific linkage error.
///
/// # Errors
/// [`HostError::LayerModified`], [`HostError::Vhdx`].
pub(crate) fn open_verified(chain: &LayerChain, policy: LeafPolicy) -> Result<Chain> {
    let skip = usize::from(policy == LeafPolicy::Active);
    match Chain::from_paths(&chain.paths()) {
        Ok(opened) => {
            for (recorded, layer) in chain.layers().zip(opened.layers()).skip(skip) {
                check_guid(
                    &recorded.path,
                    recorded.data_write_guid,
                    layer.data_write_guid(),
                )?;
            }
            Ok(opened)
        }
        Err(chain_error) => {
            for recorded in chain.layers().skip(skip) {
                // A layer that does not open at all is reported by the chain error.
                if let Ok(file) = VhdxFile::open(&recorded.path) {
                    check_guid(
                        &recorded.path,
                        recorded.data_write_guid,
                        file.data_write_guid(),
                    )?;
                }
            }
            Err(chain_error.into())
        }
    }
}

fn check_guid(path: &Path, expected: Uuid, found: Uuid) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(HostError::LayerModified {
            path: path.to_owned(),
            expected,
            found,
        })
    }
}
