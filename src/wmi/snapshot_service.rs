//! `Msvm_VirtualSystemSnapshotService` (hyperv-api.md §2.3): `CreateSnapshot`,
//! `DestroySnapshot`, `ConvertToReferencePoint` — all Table B.
//!
//! Each runs as a job (4096, `JobType` 70 / 72 / 200, not cancellable: the
//! work is one catalog transaction) in the provider's default mode, or
//! synchronously (0 with the `Resulting…` REF) in
//! [`super::MethodMode::Synchronous`]. Parameters and states are checked
//! before the job starts, so that their errors are the `ReturnValue`.

use refpoint_cim::ObjectPath;
use refpoint_cim::classes::{
    VirtualSystemReferencePointSettingData, VirtualSystemSnapshotSettingData,
};
use refpoint_core::{ReferencePointSettings, SNAPSHOT_TYPE_RECOVERY, SnapshotSettings};
use refpoint_jobs::{JobSpec, JobType};

use super::method::Call;
use super::params::Params;
use super::provider::{CimOpError, MethodOutput, ParamValue, Provider};
use crate::error::{RefpointError, ReturnCode, invalid};

/// `SnapshotType` 2: a full (standard) snapshot.
pub const SNAPSHOT_TYPE_FULL: u16 = 2;

/// Checks a requested `ConsistencyLevel` (uint8 in the settings classes)
/// the way the host does: 0/NULL/2 crash consistent, 1 application
/// consistent is not supported (no guest to quiesce), anything else is
/// invalid.
pub(crate) fn consistency_level(
    method: &str,
    param: &str,
    level: Option<u8>,
) -> Result<Option<u16>, RefpointError> {
    match level {
        None => Ok(None),
        Some(0 | 2) => Ok(level.map(u16::from)),
        Some(1) => Err(RefpointError::new(
            ReturnCode::NotSupported,
            format!(
                "{method}.{param}: ConsistencyLevel 1 (application consistent) needs a guest to quiesce; the standalone host takes crash-consistent (2) points only"
            ),
        )),
        Some(other) => Err(invalid(format!(
            "{method}.{param}: ConsistencyLevel {other} is not 0, 1 or 2"
        ))),
    }
}

/// `param` read as an embedded `Msvm_VirtualSystemSnapshotSettingData`
/// (empty or NULL: defaults) and its `ConsistencyLevel` checked by
/// [`consistency_level`].
///
/// # Errors
/// A malformed instance with the CIM model's code, or as
/// [`consistency_level`]; messages start `Method.param`.
pub(crate) fn snapshot_settings_consistency(
    params: &Params<'_>,
    param: &str,
) -> Result<Option<u16>, RefpointError> {
    let xml = params.string(param)?.unwrap_or("");
    let settings = VirtualSystemSnapshotSettingData::from_embedded(xml)
        .map_err(|e| params.context(param, e.into()))?;
    consistency_level(params.method(), param, settings.consistency_level)
}

/// As [`snapshot_settings_consistency`], for an embedded
/// `Msvm_VirtualSystemReferencePointSettingData`.
///
/// # Errors
/// As [`snapshot_settings_consistency`].
pub(crate) fn reference_point_settings_consistency(
    params: &Params<'_>,
    param: &str,
) -> Result<Option<u16>, RefpointError> {
    let xml = params.string(param)?.unwrap_or("");
    let settings = VirtualSystemReferencePointSettingData::from_embedded(xml)
        .map_err(|e| params.context(param, e.into()))?;
    consistency_level(params.method(), param, settings.consistency_level)
}

impl Provider {
    /// The VM an `AffectedSystem` REF names: its GUID and object path.
    pub(crate) fn vm_of(
        &self,
        params: &Params<'_>,
        name: &str,
        path: &ObjectPath,
    ) -> Result<(String, ObjectPath), RefpointError> {
        let key = path.key("Name").ok_or_else(|| {
            invalid(format!(
                "{}.{name}: the path {path} has no Name key",
                params.method()
            ))
        })?;
        let host = self.refpoint().host();
        let vm = host.vm(key).map_err(|_| {
            invalid(format!(
                "{}.{name}: no Msvm_ComputerSystem with Name {key:?}",
                params.method()
            ))
        })?;
        Ok((vm.cim_name(), vm.object_path()))
    }

    /// The snapshot an `AffectedSnapshot` REF names: its InstanceID, path,
    /// whether it is a recovery snapshot, and its VM's path.
    fn snapshot_of(
        &self,
        params: &Params<'_>,
        path: &ObjectPath,
    ) -> Result<(String, ObjectPath, bool, Option<ObjectPath>), RefpointError> {
        let method = params.method();
        let id = path.key("InstanceID").ok_or_else(|| {
            invalid(format!(
                "{method}.AffectedSnapshot: the path {path} has no InstanceID key"
            ))
        })?;
        let host = self.refpoint().host();
        let snapshot = host.snapshot(id).map_err(|_| {
            invalid(format!(
                "{method}.AffectedSnapshot: no snapshot Msvm_VirtualSystemSettingData with InstanceID {id:?}"
            ))
        })?;
        let vm = host
            .vm(&snapshot.virtual_system().to_string())
            .ok()
            .map(|v| v.object_path());
        Ok((
            snapshot.instance_id().to_owned(),
            snapshot.object_path(),
            snapshot.is_recovery(),
            vm,
        ))
    }

    /// `CreateSnapshot(AffectedSystem, SnapshotSettings, SnapshotType,
    /// ResultingSnapshot)`.
    ///
    /// `SnapshotType` 32768 (recovery) or 2 (full; NULL means 2); others →
    /// 1 Not supported. `SnapshotSettings`: empty, or an embedded
    /// `Msvm_VirtualSystemSnapshotSettingData` (`ConsistencyLevel` 1 → 1 Not
    /// supported; `IgnoreNonSnapshottableDisks`, `GuestBackupType` accepted:
    /// every disk is a VHDX and there is no guest).
    pub(crate) fn create_snapshot(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new(
            "CreateSnapshot",
            values,
            &[
                "AffectedSystem",
                "SnapshotSettings",
                "SnapshotType",
                "ResultingSnapshot",
            ],
        )?;
        Ok((|| {
            let system = params.required_reference("AffectedSystem", "CIM_ComputerSystem")?;
            let consistency = snapshot_settings_consistency(&params, "SnapshotSettings")?;
            let snapshot_type = params.uint16("SnapshotType")?.unwrap_or(SNAPSHOT_TYPE_FULL);
            if snapshot_type != SNAPSHOT_TYPE_RECOVERY && snapshot_type != SNAPSHOT_TYPE_FULL {
                return Err(RefpointError::new(
                    ReturnCode::NotSupported,
                    format!(
                        "CreateSnapshot.SnapshotType: {snapshot_type} is not supported (32768 recovery, 2 full)"
                    ),
                ));
            }
            params.reference("ResultingSnapshot", "CIM_VirtualSystemSettingData")?;
            let (vm, vm_path) = self.vm_of(&params, "AffectedSystem", &system)?;
            let description = format!("Creating snapshot (type {snapshot_type}) of {vm}");
            self.run(Call {
                spec: JobSpec::new(JobType::SnapshotVirtualMachine, description).cancellable(false),
                affects: vec![vm_path],
                result_param: Some("ResultingSnapshot"),
                work: Box::new(move |rp| {
                    let mut host = rp.host();
                    let snapshot = host.create_snapshot_with(
                        &vm,
                        snapshot_type,
                        &SnapshotSettings {
                            consistency_level: consistency,
                        },
                    )?;
                    Ok(vec![snapshot.object_path()])
                }),
            })
        })())
    }

    /// `DestroySnapshot(AffectedSnapshot)`.
    pub(crate) fn destroy_snapshot(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new("DestroySnapshot", values, &["AffectedSnapshot"])?;
        Ok((|| {
            let path =
                params.required_reference("AffectedSnapshot", "CIM_VirtualSystemSettingData")?;
            let (id, snapshot_path, _, vm_path) = self.snapshot_of(&params, &path)?;
            let mut affects = vec![snapshot_path];
            affects.extend(vm_path);
            self.run(Call {
                spec: JobSpec::new(JobType::DeleteSnapshot, format!("Deleting snapshot {id}"))
                    .cancellable(false),
                affects,
                result_param: None,
                work: Box::new(move |rp| {
                    rp.host().destroy_snapshot(&id)?;
                    Ok(Vec::new())
                }),
            })
        })())
    }

    /// `ConvertToReferencePoint(AffectedSnapshot, ReferencePointSettings,
    /// ResultingReferencePoint)`: only recovery snapshots (else 5 Invalid
    /// state); the snapshot disappears, the reference point appears.
    pub(crate) fn convert_to_reference_point(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new(
            "ConvertToReferencePoint",
            values,
            &[
                "AffectedSnapshot",
                "ReferencePointSettings",
                "ResultingReferencePoint",
            ],
        )?;
        Ok((|| {
            let path =
                params.required_reference("AffectedSnapshot", "CIM_VirtualSystemSettingData")?;
            let consistency =
                reference_point_settings_consistency(&params, "ReferencePointSettings")?;
            params.reference(
                "ResultingReferencePoint",
                "Msvm_VirtualSystemReferencePoint",
            )?;
            let (id, snapshot_path, recovery, vm_path) = self.snapshot_of(&params, &path)?;
            if !recovery {
                return Err(RefpointError::new(
                    ReturnCode::InvalidState,
                    format!(
                        "ConvertToReferencePoint.AffectedSnapshot: {id} is not a recovery snapshot (SnapshotType 32768); only recovery snapshots can be converted"
                    ),
                ));
            }
            let mut affects = vec![snapshot_path];
            affects.extend(vm_path);
            self.run(Call {
                spec: JobSpec::new(
                    JobType::ConvertSnapshotToReferencePoint,
                    format!("Converting snapshot {id} to a reference point"),
                )
                .cancellable(false),
                affects,
                result_param: Some("ResultingReferencePoint"),
                work: Box::new(move |rp| {
                    let mut host = rp.host();
                    let point = host.convert_to_reference_point_with(
                        &id,
                        &ReferencePointSettings {
                            consistency_level: consistency,
                        },
                    )?;
                    Ok(vec![point.object_path()])
                }),
            })
        })())
    }
}
