//! Reference points: `Msvm_VirtualSystemReferencePoint`, made by
//! `Msvm_VirtualSystemSnapshotService.ConvertToReferencePoint` from a
//! recovery snapshot (which disappears) or directly by
//! `Msvm_VirtualSystemReferencePointService.CreateReferencePoint`, and
//! removed by `DestroyReferencePoint` (`reference/hyperv-api.md` §1.3, §2.1,
//! §2.3).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Catalog;
use crate::error::{HostError, ObjectKind, Result};
use crate::export_history::ExportRecord;
use crate::frozen::{FrozenDisk, LeafPolicy, open_verified};
use crate::host::{Host, not_found};
use crate::ids::{self, reference_point_instance_id};
use crate::model::{VirtualSystemSettingData, guid_upper};
use crate::snapshot::{
    SNAPSHOT_TYPE_RECOVERY, consistency_level, remove_snapshot, snapshot_position,
};
use crate::timestamp::Timestamp;

/// `ReferencePointType` 1: log based (Hyper-V Replica logs) — not produced here.
pub const REFERENCE_POINT_TYPE_LOG: u16 = refpoint_cim::classes::reference_point_type::LOG;
/// `ReferencePointType` 2: resilient change tracking based.
pub const REFERENCE_POINT_TYPE_RCT: u16 = refpoint_cim::classes::reference_point_type::RCT;

/// `Msvm_VirtualSystemReferencePointSettingData`, the optional
/// `ReferencePointSettings` parameter (only what this host uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferencePointSettings {
    /// `ConsistencyLevel`: `None`/0 → the snapshot's level (2, crash
    /// consistent); 1 is refused (NotSupported) as for snapshots.
    pub consistency_level: Option<u16>,
}

/// A reference point of a virtual system: an immutable point in time with
/// its settings and, per disk, the frozen chain and an RCT identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferencePoint {
    /// `InstanceID`: `Microsoft:<VM GUID>\<RP GUID>`.
    #[serde(rename = "InstanceID")]
    pub instance_id: String,
    /// The RP GUID.
    #[serde(rename = "ReferencePointGuid", with = "guid_upper")]
    pub guid: Uuid,
    /// `VirtualSystemIdentifier`: the VM GUID.
    #[serde(rename = "VirtualSystemIdentifier", with = "guid_upper")]
    pub virtual_system_identifier: Uuid,
    /// `ElementName`: the converted snapshot's name.
    #[serde(rename = "ElementName")]
    pub element_name: String,
    /// `ReferencePointType`: always 2 (RCT) here.
    #[serde(rename = "ReferencePointType")]
    pub reference_point_type: u16,
    /// `ConsistencyLevel`: 2 crash consistent.
    #[serde(rename = "ConsistencyLevel")]
    pub consistency_level: u16,
    /// `HasAssociatedData`: true while the frozen layers are kept, i.e. while
    /// the reference point can be exported (refpoint's meaning, DESIGN.md).
    #[serde(rename = "HasAssociatedData")]
    pub has_associated_data: bool,
    /// The point in time: the `CreationTime` of the snapshot it was made from.
    #[serde(rename = "CreationTime")]
    pub creation_time: Timestamp,
    /// `InstanceID` of the snapshot it was converted from (now gone).
    #[serde(rename = "SourceSnapshot")]
    pub source_snapshot: String,
    /// Copy of the VM's settings at the point in time.
    #[serde(rename = "VirtualSystemSettings")]
    pub settings: VirtualSystemSettingData,
    /// Per disk: SASD InstanceID, frozen chain, tracking epoch. Index `i`
    /// gives `VirtualDiskIdentifiers[i]` and
    /// `ResilientChangeTrackingIdentifiers[i]`, so the arrays are always
    /// index-parallel.
    #[serde(rename = "Disks")]
    pub disks: Vec<FrozenDisk>,
    /// Completed exports of this reference point (see
    /// [`Host::record_export`](crate::Host::record_export)).
    #[serde(rename = "Exports", default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportRecord>,
}

impl ReferencePoint {
    /// `VirtualDiskIdentifiers[]`: SASD InstanceIDs, parallel to
    /// [`ReferencePoint::resilient_change_tracking_identifiers`].
    pub fn virtual_disk_identifiers(&self) -> Vec<String> {
        self.disks.iter().map(|d| d.instance_id.clone()).collect()
    }

    /// `ResilientChangeTrackingIdentifiers[]`: `rct:{<disk GUID>}:<epoch>`
    /// (see [`RctId`](crate::ids::RctId)), parallel to
    /// [`ReferencePoint::virtual_disk_identifiers`].
    pub fn resilient_change_tracking_identifiers(&self) -> Vec<String> {
        self.disks.iter().map(|d| d.rct_id().to_string()).collect()
    }

    /// The frozen disk whose SASD InstanceID is `instance_id` (compared as
    /// Hyper-V does).
    pub fn disk(&self, instance_id: &str) -> Option<&FrozenDisk> {
        self.disks
            .iter()
            .find(|d| ids::instance_ids_equal(&d.instance_id, instance_id))
    }
}

impl Host {
    /// `ConvertToReferencePoint(AffectedSnapshot, ReferencePointSettings = "")`:
    /// see [`Host::convert_to_reference_point_with`].
    ///
    /// # Errors
    /// As [`Host::convert_to_reference_point_with`].
    pub fn convert_to_reference_point(&mut self, snapshot: &str) -> Result<&ReferencePoint> {
        self.convert_to_reference_point_with(snapshot, &ReferencePointSettings::default())
    }

    /// `Msvm_VirtualSystemSnapshotService.ConvertToReferencePoint`: the
    /// recovery snapshot `snapshot` (InstanceID or GUID) disappears and a
    /// reference point with its frozen chains appears. Every frozen layer is
    /// checked against its recorded DataWriteGuid first.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`]/[`HostError::NotFound`] for the id;
    /// [`HostError::InvalidState`] for a snapshot that is not a recovery
    /// snapshot; [`HostError::NotSupported`] for application consistency;
    /// [`HostError::LayerModified`], [`HostError::Vhdx`], [`HostError::Io`].
    /// On error the catalog is unchanged.
    pub fn convert_to_reference_point_with(
        &mut self,
        snapshot: &str,
        settings: &ReferencePointSettings,
    ) -> Result<&ReferencePoint> {
        let index = self.snapshot_index(snapshot)?;
        if let Some(s) = self.catalog.snapshots.get(index) {
            self.ensure_not_collected_snapshot(&s.guid, "ConvertToReferencePoint")?;
        }
        let mut catalog = self.catalog.clone();
        let guid = convert(&mut catalog, index, settings)?;
        self.commit(catalog)?;
        self.reference_point_by_guid(guid)
    }

    /// `CreateReferencePoint(AffectedSystem, ReferencePointSettings = "")`:
    /// see [`Host::create_reference_point_with`].
    ///
    /// # Errors
    /// As [`Host::create_reference_point_with`].
    pub fn create_reference_point(&mut self, vm: &str) -> Result<&ReferencePoint> {
        self.create_reference_point_with(vm, &ReferencePointSettings::default())
    }

    /// `Msvm_VirtualSystemReferencePointService.CreateReferencePoint`: a
    /// recovery snapshot and its conversion in one step and one catalog
    /// update (no snapshot is ever visible).
    ///
    /// # Errors
    /// As [`Host::create_snapshot_with`] and
    /// [`Host::convert_to_reference_point_with`]; on error no new file
    /// remains and the catalog is unchanged.
    pub fn create_reference_point_with(
        &mut self,
        vm: &str,
        settings: &ReferencePointSettings,
    ) -> Result<&ReferencePoint> {
        let guid = self.snapshot_transaction(
            vm,
            SNAPSHOT_TYPE_RECOVERY,
            settings.consistency_level,
            |catalog, snapshot| {
                let index = snapshot_position(catalog, snapshot)?;
                convert(catalog, index, settings)
            },
        )?;
        self.reference_point_by_guid(guid)
    }

    /// `DestroyReferencePoint(AffectedReferencePoint)`: removes the reference
    /// point (and its export history) from the catalog, then reclaims the
    /// frozen layers no other snapshot or reference point needs by merging
    /// them into their child, journal first (see `lifecycle`): later
    /// reference points keep answering change queries from the journal.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for a malformed id;
    /// [`HostError::NotFound`]; [`HostError::InUse`] (32774) if it is
    /// pinned by a running export, or a merge would rewrite a layer of a
    /// pinned reference point; [`HostError::LayerModified`],
    /// [`HostError::Vhdx`], [`HostError::Io`] from the merge (the reference
    /// point is then gone and the merge pending: the next lifecycle
    /// operation or `Host::open` finishes it).
    pub fn destroy_reference_point(&mut self, instance_id: &str) -> Result<()> {
        let rp = self.reference_point(instance_id)?;
        let (guid, vm) = (rp.guid, rp.virtual_system_identifier);
        self.ensure_not_pinned(&guid, &rp.instance_id, "DestroyReferencePoint")?;
        self.ensure_not_collected_reference_point(&guid, &rp.instance_id, "DestroyReferencePoint")?;
        self.lifecycle_change(vm, "DestroyReferencePoint", |catalog| {
            catalog.reference_points.retain(|r| r.guid != guid);
            Ok(())
        })
    }

    pub(crate) fn reference_point_by_guid(&self, guid: Uuid) -> Result<&ReferencePoint> {
        self.catalog
            .reference_points
            .iter()
            .find(|r| r.guid == guid)
            .ok_or_else(|| not_found(ObjectKind::ReferencePoint, &guid.to_string()))
    }
}

/// Replaces `catalog.snapshots[index]` by a reference point; returns its GUID.
pub(crate) fn convert(
    catalog: &mut Catalog,
    index: usize,
    settings: &ReferencePointSettings,
) -> Result<Uuid> {
    let snapshot = catalog
        .snapshots
        .get(index)
        .ok_or_else(|| not_found(ObjectKind::Snapshot, &index.to_string()))?;
    if !snapshot.is_recovery() {
        return Err(HostError::InvalidState {
            operation: "ConvertToReferencePoint",
            object: snapshot.instance_id().to_owned(),
            reason: format!(
                "only recovery snapshots (SnapshotType 32768) can be converted; this one is {}",
                snapshot.settings.virtual_system_type
            ),
        });
    }
    let level = match settings.consistency_level {
        None | Some(0) => snapshot.consistency_level,
        requested => consistency_level(requested, "ConsistencyLevel")?,
    };
    for disk in &snapshot.disks {
        open_verified(&disk.chain, LeafPolicy::Frozen)?;
    }
    let guid = Uuid::new_v4();
    let vm = snapshot.virtual_system();
    let rp = ReferencePoint {
        instance_id: reference_point_instance_id(&vm, &guid),
        guid,
        virtual_system_identifier: vm,
        element_name: snapshot.settings.element_name.clone(),
        reference_point_type: REFERENCE_POINT_TYPE_RCT,
        consistency_level: level,
        has_associated_data: true,
        creation_time: snapshot.settings.creation_time,
        source_snapshot: snapshot.settings.instance_id.clone(),
        settings: snapshot.vm_settings.clone(),
        disks: snapshot.disks.clone(),
        exports: Vec::new(),
    };
    remove_snapshot(catalog, index)?;
    tracing::info!(reference_point = %rp.instance_id, "reference point created");
    catalog.reference_points.push(rp);
    Ok(guid)
}
