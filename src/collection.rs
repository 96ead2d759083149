//! `Msvm_CollectionReferencePointService.ExportReferencePoint`: parameter
//! validation of a collection export (synchronous, before any job starts)
//! and the `Msvm_CollectionReferencePointExportJob` (JobType 206) that runs
//! the engine's collection export.
//!
//! Validation order: the reference point collection, the export directory,
//! the embedded `Msvm_CollectionReferencePointExportSettingData`
//! (`BaseReferencePointCollection`, `VirtualMachinesToDisksToExport[]` of
//! embedded `Msvm_VirtualMachineToDisks`), the base collection, the VMs and
//! disks asked for, then every member as a single-VM export
//! ([`crate::export::validate`]: state, base, disks, change tracking).
//!
//! Semantics (refpoint's, the Hyper-V pages say little):
//! - `VirtualMachinesToDisksToExport` empty: every member, every disk. Not
//!   empty: exactly the listed disks are exported (`DisksToExport` empty =
//!   all disks of that VM); members not listed are exported with their
//!   settings only, so the collection export keeps a folder per member.
//! - `BaseReferencePointCollection`: a reference point collection of the
//!   same `Msvm_VirtualSystemCollection`, older than the exported one. Each
//!   member is exported differential against the base collection's member
//!   of the same VM; a VM added since the base is exported full; a VM of the
//!   base that is no longer a member is recorded in the collection manifest
//!   as removed. The base members' exports are found as for a single VM
//!   (the latest export this host recorded).
//! - Return values: 4096 and a job, or a Table A code (the Hyper-V page
//!   lists none; `docs/return-codes.md`).
//!
//! The job pins every member reference point and its base, exports all
//! members at once (one buffer pool) and commits them together; on success
//! every member's export is recorded in the host ([`record_collection_export`]),
//! so the next differential collection export finds it. A collection export
//! interrupted by the end of its process is rolled forward or back when the
//! host is opened again ([`recover_interrupted_exports`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use refpoint_cim::classes::{
    COLLECTION_EXPORT_SETTING_DATA, VirtualMachineToDisks, expect_model_class,
};
use refpoint_cim::{Instance, ObjectPath};
use refpoint_core::ids::{cim_guid, instance_ids_equal};
use refpoint_core::{
    ExportRecord, ExportedDiskRecord, Host, ReferencePoint, ReferencePointCollection,
};
use refpoint_engine::collection_manifest::{
    COLLECTION_MANIFEST_FILE, CollectionManifest, CollectionRecord, RemovedMemberRecord,
};
use refpoint_engine::manifest::Manifest;
use refpoint_engine::{
    CHECKSUMS_FILE, CollectionExportRequest, CollectionOutcome, CollectionRecovery, ExportControl,
    Interrupted, MANIFEST_FILE, Scheduler, TrackingPolicy,
};
use refpoint_jobs::{
    CollectionExportParameters, ExportResult, JobControl, JobManager, JobOutput, JobSpec, JobType,
    RestoreReport,
};
use uuid::Uuid;

use crate::error::{RefpointError, ReturnCode, invalid};
use crate::export::{self, ExportOptions, PreparedExport};
use crate::service::Refpoint;

/// The values of `Msvm_CollectionReferencePointExportSettingData`, and
/// refpoint's tracking policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionExportOptions {
    /// `BaseReferencePointCollection`: object path or `CollectionID`; `None` for a full export.
    pub base: Option<String>,
    /// `VirtualMachinesToDisksToExport[]`; empty for every member and disk.
    pub virtual_machines_to_disks: Vec<VirtualMachineToDisks>,
    /// What to do when a member disk's change tracking is lost (default strict: 32775).
    pub tracking: TrackingPolicy,
}

/// Parses the embedded `ExportSettingData`
/// (`Msvm_CollectionReferencePointExportSettingData` in CIM-XML; empty
/// string = defaults), including the embedded `Msvm_VirtualMachineToDisks`
/// instances nested in `VirtualMachinesToDisksToExport[]`.
///
/// # Errors
/// 32776 for an instance (outer or nested) of another known class or a
/// property of the wrong CIM type; 32773 for malformed XML (outer or
/// nested), an unknown class, a nested instance without `VirtualMachineId`,
/// a malformed `BaseReferencePointCollection` path. Messages name the
/// property and, for nested instances, the array index.
pub fn options_from_setting_data(xml: &str) -> Result<CollectionExportOptions, RefpointError> {
    if xml.trim().is_empty() {
        return Ok(CollectionExportOptions::default());
    }
    let inst = Instance::from_xml(xml)?;
    expect_model_class(&inst, COLLECTION_EXPORT_SETTING_DATA)?;
    let base = match inst.get_string("BaseReferencePointCollection")? {
        Some(text) if !text.trim().is_empty() => {
            let path: ObjectPath = text.trim().parse().map_err(|e| {
                invalid(format!(
                    "{COLLECTION_EXPORT_SETTING_DATA}.BaseReferencePointCollection: malformed object path {text:?}: {e}"
                ))
            })?;
            Some(path.to_string())
        }
        _ => None,
    };
    let nested = inst
        .get_embedded_array("VirtualMachinesToDisksToExport")?
        .unwrap_or_default();
    let virtual_machines_to_disks = nested
        .iter()
        .enumerate()
        .map(|(i, item)| {
            VirtualMachineToDisks::from_instance(item).map_err(|e| {
                RefpointError::new(
                    e.return_code_a(),
                    format!(
                        "{COLLECTION_EXPORT_SETTING_DATA}.VirtualMachinesToDisksToExport[{i}]: {e}"
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CollectionExportOptions {
        base,
        virtual_machines_to_disks,
        tracking: TrackingPolicy::Strict,
    })
}

/// Accepts a `CollectionID` or an object path with a `CollectionID` key.
pub(crate) fn collection_id(text: &str, parameter: &str) -> Result<String, RefpointError> {
    if text.contains('=') {
        let path: ObjectPath = text
            .trim()
            .parse()
            .map_err(|e| invalid(format!("{parameter}: malformed object path {text:?}: {e}")))?;
        return path.key("CollectionID").map(str::to_owned).ok_or_else(|| {
            invalid(format!(
                "{parameter}: the path {text:?} has no CollectionID key"
            ))
        });
    }
    Ok(text.trim().to_owned())
}

/// A validated collection export: the engine request, the job's CIM
/// parameters and the pins of every member (and base) reference point.
#[derive(Debug)]
pub struct PreparedCollectionExport {
    /// What the engine does.
    pub request: CollectionExportRequest,
    /// `CollectionId`, `ReferencePointGroupId`, … of the job.
    pub parameters: CollectionExportParameters,
    members: Vec<PreparedExport>,
}

/// The reference point collection `text` names.
fn find_collection_point<'h>(
    host: &'h Host,
    text: &str,
    parameter: &str,
) -> Result<&'h ReferencePointCollection, RefpointError> {
    let id = collection_id(text, parameter)?;
    host.reference_point_collection(&id).map_err(|_| {
        invalid(format!(
            "{parameter}: no Msvm_ReferencePointCollection with CollectionID {id:?}"
        ))
    })
}

/// The member reference points of `point`.
fn members_of<'h>(
    host: &'h Host,
    point: &ReferencePointCollection,
) -> Result<Vec<&'h ReferencePoint>, RefpointError> {
    point
        .members
        .iter()
        .map(|m| {
            host.reference_point(m).map_err(|e| {
                RefpointError::new(
                    ReturnCode::Failed,
                    format!(
                        "member {m} of Msvm_ReferencePointCollection {}: {e}",
                        point.cim_id()
                    ),
                )
            })
        })
        .collect()
}

/// Validates every parameter of a collection export, builds the engine
/// request and pins the reference points it reads.
///
/// # Errors
/// 32773: unknown reference point collection or base, base of another
/// collection or not older, relative or malformed directory, a VM of
/// `VirtualMachinesToDisksToExport` that is unknown or not a member (named),
/// a disk not in that VM's reference point (named), a VM listed twice, an
/// entry of the collection export already at the target; 32775 a member
/// without associated data or (strict) with lost change tracking; 32774 a
/// member reference point being destroyed or merged; as
/// [`export::validate`] for each member (the message names the VM).
pub fn validate(
    host: &Host,
    reference_point_collection: &str,
    export_directory: &Path,
    options: &CollectionExportOptions,
) -> Result<PreparedCollectionExport, RefpointError> {
    let point =
        find_collection_point(host, reference_point_collection, "ReferencePointCollection")?;
    export::check_directory(export_directory)?;
    let members = members_of(host, point)?;
    let base = match &options.base {
        Some(text) => Some(find_base(host, point, text)?),
        None => None,
    };
    let base_members = match base {
        Some(b) => members_of(host, b)?,
        None => Vec::new(),
    };
    let selection = select_disks(host, point, &members, &options.virtual_machines_to_disks)?;
    let mut prepared = Vec::with_capacity(members.len());
    for (rp, disks) in members.iter().zip(&selection) {
        let vm = host.vm(&cim_guid(&rp.virtual_system_identifier))?;
        let base_member = base_members
            .iter()
            .find(|b| b.virtual_system_identifier == rp.virtual_system_identifier);
        let member_options = ExportOptions {
            base: match disks {
                Selection::SettingsOnly => None,
                _ => base_member.map(|b| b.instance_id.clone()),
            },
            disks: match disks {
                Selection::Disks(list) => list.clone(),
                Selection::All | Selection::SettingsOnly => Vec::new(),
            },
            base_export: None,
            tracking: options.tracking,
        };
        let mut member = export::validate(host, &rp.instance_id, export_directory, &member_options)
            .map_err(|e| {
                RefpointError::new(
                    e.code(),
                    format!(
                        "member {} ({}): {}",
                        vm.element_name,
                        vm.cim_name(),
                        e.message()
                    ),
                )
            })?;
        if matches!(disks, Selection::SettingsOnly) {
            member.request.disks.clear();
        }
        member.request.job_id = Uuid::new_v4();
        prepared.push(member);
    }
    for name in prepared
        .iter()
        .map(|m| m.request.vm_element_name.as_str())
        .chain([CHECKSUMS_FILE, COLLECTION_MANIFEST_FILE])
    {
        let target = export_directory.join(name);
        if target.symlink_metadata().is_ok() {
            return Err(invalid(format!(
                "'{}' already exists; a collection export never overwrites anything",
                target.display()
            )));
        }
    }
    let removed_members = base_members
        .iter()
        .filter(|b| {
            !members
                .iter()
                .any(|m| m.virtual_system_identifier == b.virtual_system_identifier)
        })
        .map(|b| RemovedMemberRecord {
            virtual_system_identifier: cim_guid(&b.virtual_system_identifier),
            element_name: host
                .vm(&cim_guid(&b.virtual_system_identifier))
                .map_or_else(
                    |_| cim_guid(&b.virtual_system_identifier),
                    |v| v.element_name.clone(),
                ),
            base_reference_point: b.instance_id.clone(),
        })
        .collect();
    let collection = host
        .collections()
        .iter()
        .find(|c| c.collection_id == point.virtual_system_collection_id);
    let job_id = Uuid::new_v4();
    let request = CollectionExportRequest {
        export_directory: export_directory.to_path_buf(),
        job_id,
        collection: CollectionRecord {
            collection_id: cim_guid(&point.virtual_system_collection_id),
            element_name: collection
                .map(|c| c.element_name.clone())
                .unwrap_or_default(),
        },
        reference_point_collection: CollectionRecord {
            collection_id: point.cim_id(),
            element_name: point.element_name.clone(),
        },
        base_reference_point_collection: base.map(|b| CollectionRecord {
            collection_id: b.cim_id(),
            element_name: b.element_name.clone(),
        }),
        members: prepared.iter().map(|m| m.request.clone()).collect(),
        removed_members,
    };
    request.validate()?;
    let parameters = CollectionExportParameters {
        export_directory: export_directory.display().to_string(),
        collection_id: cim_guid(&point.virtual_system_collection_id),
        reference_point_group_id: point.cim_id(),
        base_reference_point_group_id: base.map(ReferencePointCollection::cim_id),
        virtual_machine_ids: members
            .iter()
            .map(|m| cim_guid(&m.virtual_system_identifier))
            .collect(),
    };
    Ok(PreparedCollectionExport {
        request,
        parameters,
        members: prepared,
    })
}

/// The base reference point collection: of the same collection, older.
fn find_base<'h>(
    host: &'h Host,
    point: &ReferencePointCollection,
    text: &str,
) -> Result<&'h ReferencePointCollection, RefpointError> {
    let base = find_collection_point(host, text, "BaseReferencePointCollection")?;
    if base.collection_id == point.collection_id {
        return Err(invalid(format!(
            "BaseReferencePointCollection {} is the reference point collection being exported",
            base.cim_id()
        )));
    }
    if base.virtual_system_collection_id != point.virtual_system_collection_id {
        return Err(invalid(format!(
            "BaseReferencePointCollection {} belongs to collection {}, the exported one to {}",
            base.cim_id(),
            cim_guid(&base.virtual_system_collection_id),
            cim_guid(&point.virtual_system_collection_id)
        )));
    }
    if base.creation_time >= point.creation_time {
        return Err(invalid(format!(
            "BaseReferencePointCollection {} (taken {}) is not older than {} (taken {})",
            base.cim_id(),
            base.creation_time.to_display_string(),
            point.cim_id(),
            point.creation_time.to_display_string()
        )));
    }
    Ok(base)
}

/// What is exported of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selection {
    /// Every disk (no `VirtualMachinesToDisksToExport`, or the VM listed
    /// with an empty `DisksToExport`).
    All,
    /// These disks.
    Disks(Vec<String>),
    /// Only the settings (the VM is not listed).
    SettingsOnly,
}

/// Resolves `VirtualMachinesToDisksToExport` against the members, in
/// member order.
fn select_disks(
    host: &Host,
    point: &ReferencePointCollection,
    members: &[&ReferencePoint],
    wanted: &[VirtualMachineToDisks],
) -> Result<Vec<Selection>, RefpointError> {
    if wanted.is_empty() {
        return Ok(vec![Selection::All; members.len()]);
    }
    let mut selection = vec![Selection::SettingsOnly; members.len()];
    for (i, entry) in wanted.iter().enumerate() {
        let field = format!("VirtualMachinesToDisksToExport[{i}]");
        let vm = host.vm(entry.virtual_machine_id.trim()).map_err(|_| {
            invalid(format!(
                "{field}.VirtualMachineId: no virtual machine '{}'",
                entry.virtual_machine_id
            ))
        })?;
        let Some(index) = members
            .iter()
            .position(|m| m.virtual_system_identifier == vm.name)
        else {
            return Err(invalid(format!(
                "{field}.VirtualMachineId: virtual machine {} ({}) is not a member of Msvm_ReferencePointCollection {} (members: {})",
                vm.element_name,
                vm.cim_name(),
                point.cim_id(),
                members
                    .iter()
                    .map(|m| cim_guid(&m.virtual_system_identifier))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let (Some(rp), Some(slot)) = (members.get(index), selection.get_mut(index)) else {
            continue;
        };
        if *slot != Selection::SettingsOnly {
            return Err(invalid(format!(
                "{field}.VirtualMachineId: virtual machine {} is listed twice",
                vm.cim_name()
            )));
        }
        for disk in &entry.disks_to_export {
            if !rp
                .disks
                .iter()
                .any(|d| instance_ids_equal(&d.instance_id, disk))
            {
                return Err(invalid(format!(
                    "{field}.DisksToExport: disk '{disk}' is not in the reference point {} of virtual machine {} (VirtualDiskIdentifiers: {})",
                    rp.instance_id,
                    vm.element_name,
                    rp.virtual_disk_identifiers().join(", ")
                )));
            }
        }
        *slot = if entry.disks_to_export.is_empty() {
            Selection::All
        } else {
            Selection::Disks(entry.disks_to_export.clone())
        };
    }
    Ok(selection)
}

/// Adapts a job's control block to the engine's [`ExportControl`].
#[derive(Debug)]
struct JobExportControl(Arc<JobControl>);

impl ExportControl for JobExportControl {
    fn set_total(&self, bytes: u64) {
        self.0.set_total(bytes);
    }
    fn add_progress(&self, bytes: u64) {
        self.0.add_progress(bytes);
    }
    fn checkpoint(&self) -> Result<(), Interrupted> {
        self.0.checkpoint().map_err(|i| match i {
            refpoint_jobs::Interrupted::Terminated => Interrupted::Terminated,
            refpoint_jobs::Interrupted::Killed => Interrupted::Killed,
        })
    }
}

/// Starts the `Msvm_CollectionReferencePointExportJob` (JobType 206) and
/// returns its InstanceID. The job holds the pins until it ends and, on
/// success, records every member's export in `host` (a failure to record is
/// a warning: the export itself is committed). Tracking fallbacks of
/// members make it end CompletedWithWarnings.
///
/// # Errors
/// 32778 when the job's thread cannot be started.
pub fn start(
    jobs: &JobManager,
    host: &Arc<Mutex<Host>>,
    prepared: PreparedCollectionExport,
    scheduler: Arc<Scheduler>,
) -> Result<String, RefpointError> {
    let PreparedCollectionExport {
        request,
        parameters,
        members,
    } = prepared;
    let host = Arc::clone(host);
    let spec = JobSpec::new(
        JobType::ExportReferencePointOnCollection,
        format!(
            "Exporting reference point collection {} to {}",
            parameters.reference_point_group_id, parameters.export_directory
        ),
    )
    .collection_export(parameters);
    jobs.submit_spec(spec, move |control: Arc<JobControl>| {
        let _pins = members;
        let ctl = JobExportControl(control);
        let plan = refpoint_engine::plan_collection(&request).map_err(export::engine_failure)?;
        let outcome =
            refpoint_engine::execute_collection_on(plan, &ctl, &scheduler)
                .map_err(export::engine_failure)?;
        let mut warnings = outcome.warnings.clone();
        let recorded = {
            let mut host = host.lock().unwrap_or_else(PoisonError::into_inner);
            record_collection_export(&mut host, &request.export_directory)
        };
        if let Err(e) = recorded {
            warnings.push(format!(
                "the collection export is complete but could not be recorded in the host, so a later differential export cannot find it: {e}"
            ));
        }
        Ok(JobOutput {
            warnings,
            export: Some(export_result(&outcome)),
            ..JobOutput::default()
        })
    })
    .map_err(|e| {
        RefpointError::new(
            ReturnCode::OutOfMemory,
            format!("cannot start the collection export job: {e}"),
        )
    })
}

/// `ExportedDisks[]` / `ExportedLogFilePaths[]` (every member's disks, in
/// member order) and `ExportedConfigFilePaths[]` (one per member).
fn export_result(outcome: &CollectionOutcome) -> ExportResult {
    ExportResult {
        exported_disks: outcome
            .members
            .iter()
            .flat_map(|m| m.disks.iter().map(|d| d.instance_id.clone()))
            .collect(),
        exported_log_file_paths: outcome
            .members
            .iter()
            .flat_map(|m| m.disks.iter().map(|d| d.path.display().to_string()))
            .collect(),
        exported_config_file_paths: outcome
            .members
            .iter()
            .map(|m| m.config_file.display().to_string())
            .collect(),
        ..ExportResult::default()
    }
}

/// Records, for every member of the collection export in `export_directory`,
/// its export in the host (`Host::record_export` on the member reference
/// point), read from the committed manifests.
///
/// # Errors
/// 32768 when a manifest cannot be read or parsed; the host's error when a
/// member reference point no longer exists.
pub fn record_collection_export(
    host: &mut Host,
    export_directory: &Path,
) -> Result<(), RefpointError> {
    let failed = |what: &Path, e: String| {
        RefpointError::new(ReturnCode::Failed, format!("'{}': {e}", what.display()))
    };
    let path = export_directory.join(COLLECTION_MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| failed(&path, e.to_string()))?;
    let manifest = CollectionManifest::from_json(&text).map_err(|e| failed(&path, e))?;
    for member in &manifest.members {
        let folder = export_directory.join(&member.element_name);
        let member_path = folder.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&member_path)
            .map_err(|e| failed(&member_path, e.to_string()))?;
        let own = Manifest::from_json(&text).map_err(|e| failed(&member_path, e))?;
        let disks = own
            .disks
            .iter()
            .map(|d| {
                Ok(ExportedDiskRecord {
                    instance_id: d.instance_id.clone(),
                    file: folder.join(&d.output.path),
                    data_write_guid: Uuid::parse_str(&d.output.data_write_guid)
                        .map_err(|e| failed(&member_path, e.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, RefpointError>>()?;
        host.record_export(
            &member.reference_point,
            ExportRecord {
                export_directory: export_directory.to_path_buf(),
                vm_folder: folder,
                manifest: member_path,
                disks,
            },
        )?;
    }
    Ok(())
}

/// Resolves the collection exports that jobs interrupted by the end of
/// their process left in their `ExportDirectory` (see
/// `refpoint_engine::recover_collection_exports`): each is rolled forward
/// (then recorded in the host) or back, and no staging directory remains.
/// Failures are logged; they do not prevent opening the host.
pub fn recover_interrupted_exports(rp: &Refpoint, report: &RestoreReport) {
    for job in &report.interrupted {
        if job.job_type != JobType::ExportReferencePointOnCollection {
            continue;
        }
        let Some(dir) = job.export_directory.as_deref().map(PathBuf::from) else {
            continue;
        };
        match refpoint_engine::recover_collection_exports(&dir) {
            Ok(done) => {
                for outcome in done {
                    tracing::info!(job = %job.instance_id, ?outcome, "interrupted collection export resolved");
                    // Cleaned: the commit had finished, the process ended before recording it.
                    if matches!(
                        outcome,
                        CollectionRecovery::RolledForward { .. }
                            | CollectionRecovery::Cleaned { .. }
                    ) && let Err(e) = record_collection_export(&mut rp.host(), &dir)
                    {
                        tracing::warn!(job = %job.instance_id, error = %e, "rolled-forward collection export not recorded");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(job = %job.instance_id, error = %e, "cannot recover an interrupted collection export");
            }
        }
    }
}

impl Refpoint {
    /// Typed collection export: validates like
    /// `Msvm_CollectionReferencePointService.ExportReferencePoint` and starts
    /// the job. `reference_point_collection` is a `CollectionID` or an
    /// object path.
    ///
    /// # Errors
    /// The Table A code of the first parameter that fails validation.
    pub fn export_collection(
        &self,
        reference_point_collection: &str,
        export_directory: &Path,
        options: &CollectionExportOptions,
    ) -> Result<String, RefpointError> {
        let prepared = {
            let host = self.host();
            validate(&host, reference_point_collection, export_directory, options)?
        };
        start(
            self.jobs(),
            &self.shared_host(),
            prepared,
            self.scheduler()?,
        )
    }
}
