//! The collection services (hyperv-api.md §1.5, §2.2, §2.3):
//!
//! | class.method | table | success |
//! |---|---|---|
//! | `Msvm_CollectionManagementService.DefineCollection(Name, Id, Type)` | A + 32779 | 0 + `DefinedCollection` |
//! | `….AddMember(Member, Collection)`, `RemoveMember`, `DestroyCollection(Collection)` | A + 32779 | 0 |
//! | `Msvm_CollectionReferencePointService.CreateReferencePoint(Collection, ReferencePointSettings, ReferencePointType)` | B | 4096, JobType 205 (0 + `ResultingReferencePointCollection`) |
//! | `….DestroyReferencePoint(AffectedReferencePointCollection)` | B | 4096, JobType 208 |
//! | `….RemoveAssociatedData(AffectedReferencePointCollection)` | B | 4096, JobType 207 |
//! | `….ExportReferencePoint(ReferencePointCollection, ExportDirectory, ExportSettingData)` | A (refpoint's choice) | 4096, JobType 206, `Msvm_CollectionReferencePointExportJob` |
//! | `Msvm_CollectionSnapshotService.CreateSnapshot(Collection, SnapshotSettings, SnapshotType)` | B | 4096, JobType 70 (0 + `ResultingSnapshotCollection`) |
//! | `….ConvertToReferencePoint(AffectedSnapshotCollection)` | B | 4096, JobType 200 (0 + `ResultingReferencePointCollection`) |
//! | `….DestroySnapshot(AffectedSnapshotCollection)` | B | 4096, JobType 72 |
//!
//! The management methods finish at once (the documented `Job` "can be
//! null if the task is completed"). Their 32779 *File not found* is
//! refpoint's answer for a `Member` or `Collection` REF that names nothing
//! (32773 stays for malformed paths and REFs to another class).
//!
//! Value orders: the collection service's `ReferencePointType` is 0 Unknown,
//! 1 Log, 2 RCT (NULL = RCT; 1 → 1 Not supported; 0 and others → 4).
//! `Msvm_CollectionReferencePointSettingData.ConsistencyLevel` has swapped
//! descriptions in its documentation (§1.6); refpoint reads it in the order
//! of `Msvm_ReferencePointCollection.ConsistencyLevel`: 0/NULL/1 crash
//! consistent, 2 application consistent → 1 Not supported (no guest to
//! quiesce). `SnapshotSettings` of the collection snapshot service is read
//! as an embedded `Msvm_VirtualSystemSnapshotSettingData` (VM order).

use std::path::Path;

use refpoint_cim::classes::expect_model_class;
use refpoint_cim::{Instance, ObjectPath};
use refpoint_core::ids::cim_guid;
use refpoint_core::{
    COLLECTION_SNAPSHOT_TYPE_RECOVERY, COLLECTION_SNAPSHOT_TYPE_STANDARD, CollectionPointSettings,
    ErrorKind, HostError,
};
use refpoint_jobs::{JobSpec, JobType};

use super::collection_model::{
    COLLECTION_MANAGEMENT_SERVICE, COLLECTION_REFERENCE_POINT_SERVICE, COLLECTION_SNAPSHOT_SERVICE,
    REFERENCE_POINT_COLLECTION, SNAPSHOT_COLLECTION, collection_path,
    reference_point_collection_path, snapshot_collection_path,
};
use super::method::{Call, Table};
use super::model::{ObjectSpace, is_a};
use super::params::Params;
use super::provider::{CimOpError, MethodOutput, ParamValue, Provider};
use super::snapshot_service::snapshot_settings_consistency;
use crate::collection::{self, collection_id};
use crate::error::{RefpointError, ReturnCode, invalid};

/// Class name of the collection reference point settings.
const COLLECTION_REFERENCE_POINT_SETTING_DATA: &str = "Msvm_CollectionReferencePointSettingData";

/// The methods of the collection services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CollectionMethod {
    DefineCollection,
    AddMember,
    RemoveMember,
    DestroyCollection,
    CreateReferencePoint,
    DestroyReferencePoint,
    RemoveAssociatedData,
    ExportReferencePoint,
    CreateSnapshot,
    ConvertToReferencePoint,
    DestroySnapshot,
}

/// (service class, method name, method).
const METHODS: &[(&str, &str, CollectionMethod)] = &[
    (
        COLLECTION_MANAGEMENT_SERVICE,
        "DefineCollection",
        CollectionMethod::DefineCollection,
    ),
    (
        COLLECTION_MANAGEMENT_SERVICE,
        "AddMember",
        CollectionMethod::AddMember,
    ),
    (
        COLLECTION_MANAGEMENT_SERVICE,
        "RemoveMember",
        CollectionMethod::RemoveMember,
    ),
    (
        COLLECTION_MANAGEMENT_SERVICE,
        "DestroyCollection",
        CollectionMethod::DestroyCollection,
    ),
    (
        COLLECTION_REFERENCE_POINT_SERVICE,
        "CreateReferencePoint",
        CollectionMethod::CreateReferencePoint,
    ),
    (
        COLLECTION_REFERENCE_POINT_SERVICE,
        "DestroyReferencePoint",
        CollectionMethod::DestroyReferencePoint,
    ),
    (
        COLLECTION_REFERENCE_POINT_SERVICE,
        "RemoveAssociatedData",
        CollectionMethod::RemoveAssociatedData,
    ),
    (
        COLLECTION_REFERENCE_POINT_SERVICE,
        "ExportReferencePoint",
        CollectionMethod::ExportReferencePoint,
    ),
    (
        COLLECTION_SNAPSHOT_SERVICE,
        "CreateSnapshot",
        CollectionMethod::CreateSnapshot,
    ),
    (
        COLLECTION_SNAPSHOT_SERVICE,
        "ConvertToReferencePoint",
        CollectionMethod::ConvertToReferencePoint,
    ),
    (
        COLLECTION_SNAPSHOT_SERVICE,
        "DestroySnapshot",
        CollectionMethod::DestroySnapshot,
    ),
];

/// The service classes this module answers for.
const SERVICES: [&str; 3] = [
    COLLECTION_MANAGEMENT_SERVICE,
    COLLECTION_REFERENCE_POINT_SERVICE,
    COLLECTION_SNAPSHOT_SERVICE,
];

type Outcome = Result<Result<MethodOutput, RefpointError>, CimOpError>;

fn not_found(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::FileNotFound, message)
}

impl Provider {
    /// `InvokeMethod` on a collection service; `Ok(None)` when `target` is
    /// not one (the caller dispatches it).
    ///
    /// # Errors
    /// 17 unknown method of a collection service, 6 no such service
    /// instance, 4 an undeclared parameter name.
    pub(crate) fn invoke_collection_method(
        &self,
        target: &ObjectPath,
        method: &str,
        params: &[(String, ParamValue)],
    ) -> Result<Option<MethodOutput>, CimOpError> {
        if !SERVICES.iter().any(|s| is_a(&target.class_name, s)) {
            return Ok(None);
        }
        let Some((_, _, which)) = METHODS
            .iter()
            .find(|(c, m, _)| is_a(&target.class_name, c) && m.eq_ignore_ascii_case(method))
        else {
            return Err(CimOpError::new(
                CimOpError::METHOD_NOT_FOUND,
                format!("class {} has no method {method}", target.class_name),
            ));
        };
        if !target.keys.is_empty() && ObjectSpace::build(self.refpoint()).find(target).is_none() {
            return Err(CimOpError::new(
                CimOpError::NOT_FOUND,
                format!("no instance {target}"),
            ));
        }
        let (table, result) = match which {
            CollectionMethod::DefineCollection => (Table::A, self.define_collection(params)?),
            CollectionMethod::AddMember => (Table::A, self.change_member(params, true)?),
            CollectionMethod::RemoveMember => (Table::A, self.change_member(params, false)?),
            CollectionMethod::DestroyCollection => (Table::A, self.destroy_collection(params)?),
            CollectionMethod::CreateReferencePoint => {
                (Table::B, self.create_collection_reference_point(params)?)
            }
            CollectionMethod::DestroyReferencePoint => {
                (Table::B, self.collection_point_lifecycle(params, true)?)
            }
            CollectionMethod::RemoveAssociatedData => {
                (Table::B, self.collection_point_lifecycle(params, false)?)
            }
            CollectionMethod::ExportReferencePoint => {
                (Table::A, self.export_collection_reference_point(params)?)
            }
            CollectionMethod::CreateSnapshot => {
                (Table::B, self.create_collection_snapshot(params)?)
            }
            CollectionMethod::ConvertToReferencePoint => {
                (Table::B, self.convert_collection_snapshot(params)?)
            }
            CollectionMethod::DestroySnapshot => {
                (Table::B, self.destroy_collection_snapshot(params)?)
            }
        };
        Ok(Some(result.unwrap_or_else(|e| table.failure(&e))))
    }

    /// The collection a `Msvm_VirtualSystemCollection` REF names: its
    /// `CollectionID`, and its path followed by its member VMs' paths (what
    /// a job on the collection affects). `missing` makes the error for a
    /// REF that names nothing.
    fn collection_of(
        &self,
        params: &Params<'_>,
        name: &str,
        path: &ObjectPath,
        missing: fn(String) -> RefpointError,
    ) -> Result<(String, Vec<ObjectPath>), RefpointError> {
        let method = params.method();
        let id = path.key("CollectionID").ok_or_else(|| {
            invalid(format!(
                "{method}.{name}: the path {path} has no CollectionID key"
            ))
        })?;
        let host = self.refpoint().host();
        let c = host.collection(id).map_err(|_| {
            missing(format!(
                "{method}.{name}: no Msvm_VirtualSystemCollection with CollectionID {id:?}"
            ))
        })?;
        let affects = std::iter::once(collection_path(c))
            .chain(
                c.member_guids()
                    .filter_map(|vm| host.vm(&cim_guid(&vm)).ok().map(|v| v.object_path())),
            )
            .collect();
        Ok((c.cim_id(), affects))
    }

    /// `DefineCollection(Name, Id, Type)`: synchronous, 0 + `DefinedCollection`.
    fn define_collection(&self, values: &[(String, ParamValue)]) -> Outcome {
        let params = Params::new("DefineCollection", values, &["Name", "Id", "Type"])?;
        Ok((|| {
            let name = params.required_string("Name")?;
            let id = params.string("Id")?;
            let collection_type = params.uint16("Type")?.unwrap_or(0);
            let path = {
                let mut host = self.refpoint().host();
                collection_path(
                    host.define_collection(name, id, collection_type)
                        .map_err(|e| prefixed("DefineCollection", e))?,
                )
            };
            Ok(completed(vec![(
                "DefinedCollection".to_owned(),
                ParamValue::Reference(self.locate(&path)),
            )]))
        })())
    }

    /// `AddMember` / `RemoveMember(Member, Collection)`: synchronous.
    fn change_member(&self, values: &[(String, ParamValue)], add: bool) -> Outcome {
        let method = if add { "AddMember" } else { "RemoveMember" };
        let params = Params::new(method, values, &["Member", "Collection"])?;
        Ok((|| {
            let member = params.required_reference("Member", "Msvm_ComputerSystem")?;
            let collection = params.required_reference("Collection", "CIM_CollectionOfMSEs")?;
            let (id, _) = self.collection_of(&params, "Collection", &collection, not_found)?;
            let vm = member.key("Name").ok_or_else(|| {
                invalid(format!(
                    "{method}.Member: the path {member} has no Name key"
                ))
            })?;
            let mut host = self.refpoint().host();
            let vm = host
                .vm(vm)
                .map_err(|_| {
                    not_found(format!(
                        "{method}.Member: no Msvm_ComputerSystem with Name {vm:?}"
                    ))
                })?
                .cim_name();
            let result = if add {
                host.add_member(&id, &vm).map(drop)
            } else {
                host.remove_member(&id, &vm).map(drop)
            };
            result.map_err(|e| prefixed(method, e))?;
            Ok(completed(Vec::new()))
        })())
    }

    /// `DestroyCollection(Collection)`: synchronous; 32775 while reference
    /// point or snapshot collections of it exist.
    fn destroy_collection(&self, values: &[(String, ParamValue)]) -> Outcome {
        let params = Params::new("DestroyCollection", values, &["Collection"])?;
        Ok((|| {
            let collection = params.required_reference("Collection", "CIM_CollectionOfMSEs")?;
            let (id, _) = self.collection_of(&params, "Collection", &collection, not_found)?;
            self.refpoint()
                .host()
                .destroy_collection(&id)
                .map_err(|e| prefixed("DestroyCollection", e))?;
            Ok(completed(Vec::new()))
        })())
    }

    /// `CreateReferencePoint(Collection, ReferencePointSettings,
    /// ReferencePointType, ResultingReferencePointCollection)` (Table B).
    fn create_collection_reference_point(&self, values: &[(String, ParamValue)]) -> Outcome {
        let params = Params::new(
            "CreateReferencePoint",
            values,
            &[
                "Collection",
                "ReferencePointSettings",
                "ReferencePointType",
                "ResultingReferencePointCollection",
            ],
        )?;
        Ok((|| {
            let collection = params.required_reference("Collection", "CIM_CollectionOfMSEs")?;
            let settings = params.string("ReferencePointSettings")?.unwrap_or("");
            let consistency = collection_consistency(settings)
                .map_err(|e| params.context("ReferencePointSettings", e))?;
            match params.uint16("ReferencePointType")? {
                None | Some(2) => {}
                Some(1) => {
                    return Err(RefpointError::new(
                        ReturnCode::NotSupported,
                        "CreateReferencePoint.ReferencePointType: 1 (log based, Hyper-V Replica logs) is not supported; 2 (RCT) is",
                    ));
                }
                Some(other) => {
                    return Err(invalid(format!(
                        "CreateReferencePoint.ReferencePointType: {other} is not a reference point type (2: RCT)"
                    )));
                }
            }
            params.reference("ResultingReferencePointCollection", "CIM_Collection")?;
            let (id, affects) = self.collection_of(&params, "Collection", &collection, invalid)?;
            let settings = CollectionPointSettings {
                consistency_level: consistency,
                ..CollectionPointSettings::default()
            };
            self.run(Call {
                spec: JobSpec::new(
                    JobType::CreateReferencePointOnCollection,
                    format!("Creating a reference point of collection {id}"),
                )
                .cancellable(false),
                affects,
                result_param: Some("ResultingReferencePointCollection"),
                work: Box::new(move |rp| {
                    let mut host = rp.host();
                    let point = host.create_collection_reference_point(&id, &settings)?;
                    Ok(vec![reference_point_collection_path(point)])
                }),
            })
        })())
    }

    /// The reference point collection an `Affected…`/`ReferencePointCollection`
    /// REF names: `CollectionID`, canonical path, its collection's path.
    fn collection_point_of(
        &self,
        params: &Params<'_>,
        name: &str,
        path: &ObjectPath,
    ) -> Result<(String, ObjectPath, Option<ObjectPath>, bool), RefpointError> {
        let method = params.method();
        if !is_a(&path.class_name, REFERENCE_POINT_COLLECTION) {
            return Err(invalid(format!(
                "{method}.{name}: expected a reference to {REFERENCE_POINT_COLLECTION}, got one to {} ({path})",
                path.class_name
            )));
        }
        let id = collection_id(&path.to_string(), &format!("{method}.{name}"))?;
        let host = self.refpoint().host();
        let point = host.reference_point_collection(&id).map_err(|_| {
            invalid(format!(
                "{method}.{name}: no {REFERENCE_POINT_COLLECTION} with CollectionID {id:?}"
            ))
        })?;
        if let Some(owner) = path.key("VirtualSystemCollectionId")
            && !owner.eq_ignore_ascii_case(&cim_guid(&point.virtual_system_collection_id))
        {
            return Err(invalid(format!(
                "{method}.{name}: reference point collection {id:?} belongs to collection {}, not {owner}",
                cim_guid(&point.virtual_system_collection_id)
            )));
        }
        let owner = host
            .collections()
            .iter()
            .find(|c| c.collection_id == point.virtual_system_collection_id)
            .map(collection_path);
        let has_data = host.collection_has_associated_data(point);
        Ok((
            point.cim_id(),
            reference_point_collection_path(point),
            owner,
            has_data,
        ))
    }

    /// `DestroyReferencePoint` (`destroy`) or `RemoveAssociatedData` of a
    /// reference point collection (Table B).
    fn collection_point_lifecycle(
        &self,
        values: &[(String, ParamValue)],
        destroy: bool,
    ) -> Outcome {
        let method = if destroy {
            "DestroyReferencePoint"
        } else {
            "RemoveAssociatedData"
        };
        let params = Params::new(method, values, &["AffectedReferencePointCollection"])?;
        Ok((|| {
            let path =
                params.required_reference("AffectedReferencePointCollection", "CIM_Collection")?;
            let (id, point_path, owner, has_data) =
                self.collection_point_of(&params, "AffectedReferencePointCollection", &path)?;
            if !destroy && !has_data {
                return Err(RefpointError::new(
                    ReturnCode::InvalidState,
                    format!(
                        "RemoveAssociatedData.AffectedReferencePointCollection: the members of {id} have no associated data"
                    ),
                ));
            }
            let mut affects = vec![point_path];
            affects.extend(owner);
            let (job_type, description) = if destroy {
                (
                    JobType::DeleteReferencePointOnCollection,
                    format!("Deleting reference point collection {id}"),
                )
            } else {
                (
                    JobType::RemoveAssociatedDataOnCollection,
                    format!("Removing the associated data of reference point collection {id}"),
                )
            };
            self.run(Call {
                spec: JobSpec::new(job_type, description).cancellable(false),
                affects,
                result_param: None,
                work: Box::new(move |rp| {
                    let mut host = rp.host();
                    if destroy {
                        host.destroy_collection_reference_point(&id)?;
                    } else {
                        host.remove_collection_associated_data(&id)?;
                    }
                    Ok(Vec::new())
                }),
            })
        })())
    }

    /// `ExportReferencePoint(ReferencePointCollection, ExportDirectory,
    /// ExportSettingData)`: validation and job by `crate::collection`;
    /// always a job (4096, `Msvm_CollectionReferencePointExportJob`).
    fn export_collection_reference_point(&self, values: &[(String, ParamValue)]) -> Outcome {
        let params = Params::new(
            "ExportReferencePoint",
            values,
            &[
                "ReferencePointCollection",
                "ExportDirectory",
                "ExportSettingData",
            ],
        )?;
        Ok((|| {
            let path = params.required_reference("ReferencePointCollection", "CIM_Collection")?;
            let directory = params.required_string("ExportDirectory")?;
            let settings = params.string("ExportSettingData")?.unwrap_or("");
            let options = collection::options_from_setting_data(settings)
                .map_err(|e| params.context("ExportSettingData", e))?;
            let (id, point_path, owner, _) =
                self.collection_point_of(&params, "ReferencePointCollection", &path)?;
            let job = self
                .refpoint()
                .export_collection(&id, Path::new(directory), &options)?;
            let mut affects = vec![point_path];
            affects.extend(owner);
            self.associate(&job, &affects);
            Ok(self.job_started(&job))
        })())
    }

    /// `Msvm_CollectionSnapshotService.CreateSnapshot(Collection,
    /// SnapshotSettings, SnapshotType, ResultingSnapshotCollection)`:
    /// `SnapshotType` 2 recovery or 1 standard (else 4).
    fn create_collection_snapshot(&self, values: &[(String, ParamValue)]) -> Outcome {
        let params = Params::new(
            "CreateSnapshot",
            values,
            &[
                "Collection",
                "SnapshotSettings",
                "SnapshotType",
                "ResultingSnapshotCollection",
            ],
        )?;
        Ok((|| {
            let collection = params.required_reference("Collection", "CIM_CollectionOfMSEs")?;
            let consistency = snapshot_settings_consistency(&params, "SnapshotSettings")?;
            let snapshot_type = match params.uint16("SnapshotType")? {
                Some(
                    t @ (COLLECTION_SNAPSHOT_TYPE_RECOVERY | COLLECTION_SNAPSHOT_TYPE_STANDARD),
                ) => t,
                other => {
                    return Err(invalid(format!(
                        "CreateSnapshot.SnapshotType: {} is not 1 (standard) or 2 (recovery)",
                        other.map_or_else(|| "NULL".to_owned(), |t| t.to_string())
                    )));
                }
            };
            params.reference("ResultingSnapshotCollection", "CIM_Collection")?;
            let (id, affects) = self.collection_of(&params, "Collection", &collection, invalid)?;
            let settings = CollectionPointSettings {
                consistency_level: consistency,
                ..CollectionPointSettings::default()
            };
            self.run(Call {
                spec: JobSpec::new(
                    JobType::SnapshotVirtualMachine,
                    format!("Creating a snapshot (type {snapshot_type}) of collection {id}"),
                )
                .cancellable(false),
                affects,
                result_param: Some("ResultingSnapshotCollection"),
                work: Box::new(move |rp| {
                    let mut host = rp.host();
                    let snapshots =
                        host.create_collection_snapshot(&id, snapshot_type, &settings)?;
                    Ok(vec![snapshot_collection_path(snapshots)])
                }),
            })
        })())
    }

    /// The snapshot collection a REF names: id, path, recovery or not.
    fn snapshot_collection_of(
        &self,
        params: &Params<'_>,
        path: &ObjectPath,
    ) -> Result<(String, ObjectPath, bool), RefpointError> {
        let method = params.method();
        let id = path.key("CollectionID").ok_or_else(|| {
            invalid(format!(
                "{method}.AffectedSnapshotCollection: the path {path} has no CollectionID key"
            ))
        })?;
        let host = self.refpoint().host();
        let s = host.snapshot_collection(id).map_err(|_| {
            invalid(format!(
                "{method}.AffectedSnapshotCollection: no {SNAPSHOT_COLLECTION} with CollectionID {id:?}"
            ))
        })?;
        Ok((s.cim_id(), snapshot_collection_path(s), s.is_recovery()))
    }

    /// `ConvertToReferencePoint(AffectedSnapshotCollection,
    /// ResultingReferencePointCollection)` (no settings parameter): recovery
    /// snapshot collections only (else 5).
    fn convert_collection_snapshot(&self, values: &[(String, ParamValue)]) -> Outcome {
        let params = Params::new(
            "ConvertToReferencePoint",
            values,
            &[
                "AffectedSnapshotCollection",
                "ResultingReferencePointCollection",
            ],
        )?;
        Ok((|| {
            let path =
                params.required_reference("AffectedSnapshotCollection", SNAPSHOT_COLLECTION)?;
            params.reference(
                "ResultingReferencePointCollection",
                REFERENCE_POINT_COLLECTION,
            )?;
            let (id, snapshot_path, recovery) = self.snapshot_collection_of(&params, &path)?;
            if !recovery {
                return Err(RefpointError::new(
                    ReturnCode::InvalidState,
                    format!(
                        "ConvertToReferencePoint.AffectedSnapshotCollection: {id} is not a recovery snapshot collection (SnapshotType 2)"
                    ),
                ));
            }
            self.run(Call {
                spec: JobSpec::new(
                    JobType::ConvertSnapshotToReferencePoint,
                    format!("Converting snapshot collection {id} to a reference point collection"),
                )
                .cancellable(false),
                affects: vec![snapshot_path],
                result_param: Some("ResultingReferencePointCollection"),
                work: Box::new(move |rp| {
                    let mut host = rp.host();
                    let point = host.convert_collection_snapshot(&id)?;
                    Ok(vec![reference_point_collection_path(point)])
                }),
            })
        })())
    }

    /// `DestroySnapshot(AffectedSnapshotCollection)`: the member snapshots go too.
    fn destroy_collection_snapshot(&self, values: &[(String, ParamValue)]) -> Outcome {
        let params = Params::new("DestroySnapshot", values, &["AffectedSnapshotCollection"])?;
        Ok((|| {
            let path =
                params.required_reference("AffectedSnapshotCollection", SNAPSHOT_COLLECTION)?;
            let (id, snapshot_path, _) = self.snapshot_collection_of(&params, &path)?;
            self.run(Call {
                spec: JobSpec::new(
                    JobType::DeleteSnapshot,
                    format!("Deleting snapshot collection {id}"),
                )
                .cancellable(false),
                affects: vec![snapshot_path],
                result_param: None,
                work: Box::new(move |rp| {
                    rp.host().destroy_snapshot_collection(&id)?;
                    Ok(Vec::new())
                }),
            })
        })())
    }
}

/// 0 with `out_params`.
fn completed(out_params: Vec<(String, ParamValue)>) -> MethodOutput {
    MethodOutput {
        return_value: ReturnCode::Completed.value(),
        out_params,
        error: None,
    }
}

/// A host error of a management method: its code (an object that does
/// not exist is 32779 there), the message prefixed with the method.
fn prefixed(method: &str, e: HostError) -> RefpointError {
    let missing = e.kind() == ErrorKind::NotFound;
    let err = RefpointError::from(e);
    let code = if missing {
        ReturnCode::FileNotFound
    } else {
        err.code()
    };
    RefpointError::new(code, format!("{method}: {}", err.message()))
}

/// `ConsistencyLevel` of an embedded `Msvm_CollectionReferencePointSettingData`,
/// as the member reference points' (VM order) value (module docs).
fn collection_consistency(xml: &str) -> Result<Option<u16>, RefpointError> {
    if xml.trim().is_empty() {
        return Ok(None);
    }
    let inst = Instance::from_xml(xml)?;
    expect_model_class(&inst, COLLECTION_REFERENCE_POINT_SETTING_DATA)?;
    match inst.get_u8("ConsistencyLevel")? {
        None | Some(0 | 1) => Ok(None),
        Some(2) => Err(RefpointError::new(
            ReturnCode::NotSupported,
            "ConsistencyLevel 2 (application consistent) needs guests to quiesce; the standalone host takes crash-consistent (1) collection reference points only",
        )),
        Some(other) => Err(invalid(format!(
            "ConsistencyLevel {other} is not 0, 1 (crash) or 2 (application)"
        ))),
    }
}
