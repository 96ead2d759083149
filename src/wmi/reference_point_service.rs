//! `Msvm_VirtualSystemReferencePointService` (hyperv-api.md §2.1):
//! `CreateReferencePoint` (Table B), `DestroyReferencePoint`,
//! `RemoveAssociatedData`, `ExportReferencePoint` (Table A).
//!
//! `CreateReferencePoint.ReferencePointType` has two documented numberings
//! (§1.6: the method page says 0 Log / 1 RCT, the instance property and the
//! collection method 1 Log / 2 RCT; real callers pass 1 or 2 for RCT).
//! refpoint accepts **1 and 2 as RCT** (and NULL), and **0 as log-based →
//! 1 Not supported**; any other value is 4 Invalid parameter.
//!
//! `ExportReferencePoint` always starts a job (4096, class
//! `Msvm_VirtualSystemReferencePointExportJob`, JobType 203); validation and
//! the job are `crate::export`'s (`validate`, `start`).

use refpoint_cim::ObjectPath;
use refpoint_core::ReferencePointSettings;
use refpoint_jobs::{JobSpec, JobType};

use super::method::Call;
use super::params::Params;
use super::provider::{CimOpError, MethodOutput, ParamValue, Provider};
use super::snapshot_service::reference_point_settings_consistency;
use crate::error::{RefpointError, ReturnCode, invalid};
use crate::export;

/// The reference point class.
const REFERENCE_POINT: &str = "Msvm_VirtualSystemReferencePoint";

/// What a reference point REF resolved to.
pub(crate) struct ResolvedPoint {
    /// `InstanceID`.
    pub instance_id: String,
    /// Canonical two-key path.
    pub path: ObjectPath,
    /// The VM's path, if the VM still exists.
    pub vm_path: Option<ObjectPath>,
    /// `HasAssociatedData`.
    pub has_associated_data: bool,
}

impl Provider {
    /// Resolves a `Msvm_VirtualSystemReferencePoint` REF (one-key or
    /// two-key; a `VirtualSystemIdentifier` key must be the reference
    /// point's VM).
    pub(crate) fn reference_point_of(
        &self,
        params: &Params<'_>,
        name: &str,
        path: &ObjectPath,
    ) -> Result<ResolvedPoint, RefpointError> {
        let method = params.method();
        let id = path.key("InstanceID").ok_or_else(|| {
            invalid(format!(
                "{method}.{name}: the path {path} has no InstanceID key"
            ))
        })?;
        let host = self.refpoint().host();
        let point = host.reference_point(id).map_err(|_| {
            invalid(format!(
                "{method}.{name}: no Msvm_VirtualSystemReferencePoint with InstanceID {id:?}"
            ))
        })?;
        let canonical = point.object_path();
        if let Some(vm) = path.key("VirtualSystemIdentifier") {
            let own = canonical.key("VirtualSystemIdentifier").unwrap_or_default();
            if !vm.eq_ignore_ascii_case(own) {
                return Err(invalid(format!(
                    "{method}.{name}: reference point {id:?} belongs to virtual system {own}, not {vm}"
                )));
            }
        }
        let vm_path = host
            .vm(&point.virtual_system_identifier.to_string())
            .ok()
            .map(|v| v.object_path());
        Ok(ResolvedPoint {
            instance_id: point.instance_id.clone(),
            path: canonical,
            vm_path,
            has_associated_data: point.has_associated_data,
        })
    }

    /// `CreateReferencePoint(AffectedSystem, ReferencePointSettings,
    /// ReferencePointType, ResultingReferencePoint)` (Table B).
    pub(crate) fn create_reference_point(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new(
            "CreateReferencePoint",
            values,
            &[
                "AffectedSystem",
                "ReferencePointSettings",
                "ReferencePointType",
                "ResultingReferencePoint",
            ],
        )?;
        Ok((|| {
            let system = params.required_reference("AffectedSystem", "CIM_ComputerSystem")?;
            let consistency =
                reference_point_settings_consistency(&params, "ReferencePointSettings")?;
            match params.uint16("ReferencePointType")? {
                None | Some(1 | 2) => {}
                Some(0) => {
                    return Err(RefpointError::new(
                        ReturnCode::NotSupported,
                        "CreateReferencePoint.ReferencePointType: 0 (log based, Hyper-V Replica logs) is not supported; 1 or 2 (RCT) are",
                    ));
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "CreateReferencePoint.ReferencePointType: {other} is not a reference point type (1 or 2: RCT)"
                    )));
                }
            }
            params.reference("ResultingReferencePoint", REFERENCE_POINT)?;
            let (vm, vm_path) = self.vm_of(&params, "AffectedSystem", &system)?;
            self.run(Call {
                spec: JobSpec::new(
                    JobType::CreateReferencePoint,
                    format!("Creating a reference point of {vm}"),
                )
                .cancellable(false),
                affects: vec![vm_path],
                result_param: Some("ResultingReferencePoint"),
                work: Box::new(move |rp| {
                    let mut host = rp.host();
                    let point = host.create_reference_point_with(
                        &vm,
                        &ReferencePointSettings {
                            consistency_level: consistency,
                        },
                    )?;
                    Ok(vec![point.object_path()])
                }),
            })
        })())
    }

    /// `DestroyReferencePoint(AffectedReferencePoint)` (Table A).
    pub(crate) fn destroy_reference_point(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new("DestroyReferencePoint", values, &["AffectedReferencePoint"])?;
        Ok((|| {
            let path = params.required_reference("AffectedReferencePoint", REFERENCE_POINT)?;
            let point = self.reference_point_of(&params, "AffectedReferencePoint", &path)?;
            let id = point.instance_id.clone();
            let mut affects = vec![point.path];
            affects.extend(point.vm_path);
            self.run(Call {
                spec: JobSpec::new(
                    JobType::DeleteReferencePoint,
                    format!("Deleting reference point {id}"),
                )
                .cancellable(false),
                affects,
                result_param: None,
                work: Box::new(move |rp| {
                    rp.host().destroy_reference_point(&id)?;
                    Ok(Vec::new())
                }),
            })
        })())
    }

    /// `RemoveAssociatedData(AffectedReferencePoint)` (Table A): 32775 when
    /// the reference point has no associated data left.
    pub(crate) fn remove_associated_data(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new("RemoveAssociatedData", values, &["AffectedReferencePoint"])?;
        Ok((|| {
            let path = params.required_reference("AffectedReferencePoint", REFERENCE_POINT)?;
            let point = self.reference_point_of(&params, "AffectedReferencePoint", &path)?;
            let id = point.instance_id.clone();
            if !point.has_associated_data {
                return Err(RefpointError::new(
                    ReturnCode::InvalidState,
                    format!(
                        "RemoveAssociatedData.AffectedReferencePoint: {id} has no associated data (HasAssociatedData is FALSE)"
                    ),
                ));
            }
            let mut affects = vec![point.path];
            affects.extend(point.vm_path);
            self.run(Call {
                spec: JobSpec::new(
                    JobType::RemoveAssociatedData,
                    format!("Removing the associated data of reference point {id}"),
                )
                .cancellable(false),
                affects,
                result_param: None,
                work: Box::new(move |rp| {
                    rp.host().remove_associated_data(&id)?;
                    Ok(Vec::new())
                }),
            })
        })())
    }

    /// `ExportReferencePoint(ReferencePoint, ExportDirectory,
    /// ExportSettingData)` (Table A): validation and job by
    /// `crate::export`; the job is associated with the reference point and
    /// its VM (`ElementEffects` 0).
    pub(crate) fn export_reference_point(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new(
            "ExportReferencePoint",
            values,
            &["ReferencePoint", "ExportDirectory", "ExportSettingData"],
        )?;
        Ok((|| {
            let path = params.required_reference("ReferencePoint", REFERENCE_POINT)?;
            let directory = params.required_string("ExportDirectory")?;
            let settings = params.string("ExportSettingData")?.unwrap_or("");
            let options = export::options_from_setting_data(settings)
                .map_err(|e| params.context("ExportSettingData", e))?;
            let point = self.reference_point_of(&params, "ReferencePoint", &path)?;
            let id = self.refpoint().export(
                &point.instance_id,
                std::path::Path::new(directory),
                &options,
            )?;
            let mut affects = vec![point.path];
            affects.extend(point.vm_path);
            self.associate(&id, &affects);
            Ok(self.job_started(&id))
        })())
    }
}
