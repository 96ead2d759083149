//! Replays of the call sequences of real Hyper-V backup clients
//! (reference/hyperv-api.md §7) against the provider, with the return codes
//! and job states those clients check.
#![allow(clippy::tests_outside_test_module)]

mod wmi_support;

use std::collections::BTreeMap;

use refpoint::cim::{Instance, ObjectPath};
use refpoint::fixture::Fill;
use refpoint::wmi::{MethodMode, ParamValue, Provider};
use wmi_support::{
    Env, Shape, env, env_with, get_result, job_ref, reference, related, state, val, wait_job,
};

const SNAPSHOT_SERVICE: &str = "Msvm_VirtualSystemSnapshotService";
const RP_SERVICE: &str = "Msvm_VirtualSystemReferencePointService";
const IMAGE_SERVICE: &str = "Msvm_ImageManagementService";
const RECOVERY: &str = "Microsoft:Hyper-V:Snapshot:Recovery";

/// xHyper-VBackup's client-only snapshot settings (CimSerializer form).
fn xhvb_snapshot_settings(consistency: u8) -> String {
    format!(
        r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSnapshotSettingData"><PROPERTY NAME="ConsistencyLevel" TYPE="uint8"><VALUE>{consistency}</VALUE></PROPERTY><PROPERTY NAME="IgnoreNonSnapshottableDisks" TYPE="boolean"><VALUE>TRUE</VALUE></PROPERTY></INSTANCE>"#
    )
}

/// Bareos' settings, serialised as `GetText_(2)` (WMI DTD 2.0) writes them:
/// system properties, CLASSORIGIN, PROPAGATED, empty elements for NULL.
fn bareos_snapshot_settings() -> String {
    r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSnapshotSettingData"><QUALIFIER NAME="dynamic" PROPAGATED="true" TYPE="boolean" TOSUBCLASS="false"><VALUE>TRUE</VALUE></QUALIFIER><PROPERTY NAME="__PATH" CLASSORIGIN="___SYSTEM" TYPE="string"></PROPERTY><PROPERTY NAME="__NAMESPACE" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>root\virtualization\v2</VALUE></PROPERTY><PROPERTY NAME="__SERVER" CLASSORIGIN="___SYSTEM" TYPE="string"></PROPERTY><PROPERTY.ARRAY NAME="__DERIVATION" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE.ARRAY><VALUE>CIM_SettingData</VALUE><VALUE>CIM_ManagedElement</VALUE></VALUE.ARRAY></PROPERTY.ARRAY><PROPERTY NAME="__PROPERTY_COUNT" CLASSORIGIN="___SYSTEM" TYPE="sint32"><VALUE>3</VALUE></PROPERTY><PROPERTY NAME="__CLASS" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>Msvm_VirtualSystemSnapshotSettingData</VALUE></PROPERTY><PROPERTY NAME="__GENUS" CLASSORIGIN="___SYSTEM" TYPE="sint32"><VALUE>2</VALUE></PROPERTY><PROPERTY NAME="Caption" CLASSORIGIN="CIM_ManagedElement" PROPAGATED="true" TYPE="string"></PROPERTY><PROPERTY NAME="ConsistencyLevel" CLASSORIGIN="Msvm_VirtualSystemSnapshotSettingData" TYPE="uint8"><VALUE>2</VALUE></PROPERTY><PROPERTY NAME="GuestBackupType" CLASSORIGIN="Msvm_VirtualSystemSnapshotSettingData" TYPE="uint8"><VALUE>1</VALUE></PROPERTY><PROPERTY NAME="IgnoreNonSnapshottableDisks" CLASSORIGIN="Msvm_VirtualSystemSnapshotSettingData" TYPE="boolean"><VALUE>TRUE</VALUE></PROPERTY></INSTANCE>"#.to_owned()
}

fn create_snapshot(e: &Env, settings: &str) -> refpoint::wmi::MethodOutput {
    e.call(
        SNAPSHOT_SERVICE,
        "CreateSnapshot",
        &[
            ("AffectedSystem", reference(&e.vm_path())),
            ("SnapshotSettings", val(settings)),
            ("SnapshotType", val("32768")),
        ],
    )
}

fn reference_points_of_vm(e: &Env) -> Vec<(ObjectPath, Instance)> {
    e.provider
        .associators(
            &e.vm_path(),
            Some("Msvm_ReferencePointOfVirtualSystem"),
            Some("Msvm_VirtualSystemReferencePoint"),
            None,
            None,
        )
        .unwrap()
}

fn recovery_snapshots_of_vm(e: &Env) -> Vec<(ObjectPath, Instance)> {
    e.provider
        .associators(
            &e.vm_path(),
            Some("Msvm_SnapshotOfVirtualSystem"),
            None,
            None,
            None,
        )
        .unwrap()
        .into_iter()
        .filter(|(_, i)| i.get_string("VirtualSystemType").unwrap().as_deref() == Some(RECOVERY))
        .collect()
}

/// Microsoft's xHyper-VBackup module (§7.1): recovery snapshot → convert →
/// next snapshot → convert → destroy the old reference point; every
/// asynchronous step waited with the "loop while JobState is 4" client loop
/// and its result found with `GetRelated`.
#[test]
fn xhypervbackup_checkpoint_convert_rotate() {
    let e = env("xhvb", &Shape::default());

    // New-VmBackupCheckpoint
    let out = create_snapshot(&e, &xhvb_snapshot_settings(2));
    let job = job_ref(&out);
    let done = xhvb_wait(&e.provider, &job);
    let snapshots = related(&e.provider, &job, "Msvm_VirtualSystemSettingData");
    assert_eq!(state(&done), 7);
    assert_eq!(done.get_u16("JobType").unwrap(), Some(70));
    assert_eq!(snapshots.len(), 1);
    let (snapshot, snapshot_instance) = &snapshots[0];
    assert_eq!(
        snapshot_instance
            .get_string("VirtualSystemType")
            .unwrap()
            .as_deref(),
        Some(RECOVERY)
    );
    // Get-VmBackupCheckpoints finds it
    assert_eq!(recovery_snapshots_of_vm(&e).len(), 1);

    // Convert-VmBackupCheckpoint
    let out = e.call(
        SNAPSHOT_SERVICE,
        "ConvertToReferencePoint",
        &[("AffectedSnapshot", reference(snapshot))],
    );
    let job = job_ref(&out);
    let done = xhvb_wait(&e.provider, &job);
    let rps = related(&e.provider, &job, "Msvm_VirtualSystemReferencePoint");
    assert_eq!(state(&done), 7);
    assert_eq!(done.get_u16("JobType").unwrap(), Some(200));
    assert_eq!(rps.len(), 1);
    let first_rp = rps[0].0.clone();
    assert_eq!(
        e.provider.get_instance(snapshot).unwrap_err().status,
        refpoint::wmi::CimOpError::NOT_FOUND,
        "the snapshot disappears when converted"
    );
    assert!(recovery_snapshots_of_vm(&e).is_empty());

    // Next backup: checkpoint, convert, then Remove-VmReferencePoint of the old one.
    let out = create_snapshot(&e, &xhvb_snapshot_settings(2));
    let job = job_ref(&out);
    xhvb_wait(&e.provider, &job);
    let next_snapshot = related(&e.provider, &job, "Msvm_VirtualSystemSettingData")
        .remove(0)
        .0;
    let out = e.call(
        SNAPSHOT_SERVICE,
        "ConvertToReferencePoint",
        &[("AffectedSnapshot", reference(&next_snapshot))],
    );
    let job = job_ref(&out);
    xhvb_wait(&e.provider, &job);
    let second_rp = related(&e.provider, &job, "Msvm_VirtualSystemReferencePoint")
        .remove(0)
        .0;
    let out = e.call(
        RP_SERVICE,
        "DestroyReferencePoint",
        &[("AffectedReferencePoint", reference(&first_rp))],
    );
    let done = xhvb_wait(&e.provider, &job_ref(&out));
    let remaining: Vec<ObjectPath> = reference_points_of_vm(&e)
        .into_iter()
        .map(|(p, _)| p)
        .collect();

    assert_eq!(state(&done), 7);
    assert_eq!(done.get_u16("JobType").unwrap(), Some(202));
    assert!(remaining.iter().any(|p| p.same_instance(&second_rp)));
    assert!(!remaining.iter().any(|p| p.same_instance(&first_rp)));
    assert_eq!(
        remaining.len(),
        2,
        "the fixture's reference point and the second one"
    );
}

/// `while ($job.JobState -eq 4)`: xHyper-VBackup's and the VBScript
/// samples' loop (they also accept 3 as running); 7 is success.
fn xhvb_wait(provider: &Provider, job: &ObjectPath) -> Instance {
    let started = std::time::Instant::now();
    loop {
        let instance = provider.get_instance(job).unwrap();
        if !matches!(state(&instance), 2..=4) {
            return instance;
        }
        assert!(started.elapsed() < wmi_support::MUST);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Bareos' Hyper-V plugin (§7.2), full then incremental: recovery snapshot
/// with WMI-DTD-2.0 settings, `get_result` (job + exactly one related
/// object, or the out REF), snapshot disks through
/// `Msvm_VirtualSystemSettingDataComponent`, convert, store `__PATH`; then
/// re-open the stored path, pair `VirtualDiskIdentifiers[i]` with
/// `ResilientChangeTrackingIdentifiers[i]`, resolve the SASD by InstanceID,
/// page `GetVirtualDiskChanges` on `ProcessedByteLength`, and destroy the
/// other reference points after a full job.
#[test]
fn bareos_full_then_incremental_with_change_paging() {
    bareos_flow(MethodMode::Asynchronous);
}

/// The same flow when the methods complete synchronously (0 and the
/// `Resulting…` out REF): Bareos' `get_result` takes the other branch.
#[test]
fn bareos_flow_with_synchronous_results() {
    bareos_flow(MethodMode::Synchronous);
}

fn bareos_flow(mode: MethodMode) {
    let shape = Shape {
        disks: 2,
        size: 32 << 20,
        block_size: 1 << 20,
        fill: Fill::Scattered { writes: 10 },
        writes_after: 8,
    };
    let e = env_with("bareos", &shape, mode, |_| {});
    let provider = e.provider.clone().with_max_changed_ranges(2);
    // Find the VM by ElementName.
    let vm = provider
        .enumerate_instances("Msvm_ComputerSystem")
        .unwrap()
        .into_iter()
        .find(|(_, i)| i.get_string("ElementName").unwrap().as_deref() == Some("bareos"))
        .unwrap()
        .0;
    assert!(vm.same_instance(&e.vm_path()));

    // The fixture's reference point plays the previous full backup: its
    // __PATH was stored as the restore object.
    let stored_path = e.rp_path().to_string();

    // Incremental job: load the stored reference point by path.
    let rp = provider
        .get_instance(&stored_path.parse().unwrap())
        .unwrap();
    let disks = rp
        .get_string_array("VirtualDiskIdentifiers")
        .unwrap()
        .unwrap();
    let rct = rp
        .get_string_array("ResilientChangeTrackingIdentifiers")
        .unwrap()
        .unwrap();
    assert_eq!(
        disks.len(),
        rct.len(),
        "analyze_ref_point: arrays must pair"
    );
    let sasds = provider
        .enumerate_instances("Msvm_StorageAllocationSettingData")
        .unwrap();
    let mut rct_by_active_path = BTreeMap::new();
    for (disk, rct_id) in disks.iter().zip(&rct) {
        // select * from Msvm_StorageAllocationSettingData where InstanceID='…'
        let sasd = sasds
            .iter()
            .find(|(_, i)| i.get_string("InstanceID").unwrap().as_deref() == Some(disk.as_str()))
            .map(|(_, i)| i)
            .expect("SASD of the disk");
        let path = sasd.get_string_array("HostResource").unwrap().unwrap()[0].clone();
        rct_by_active_path.insert(disk.clone(), (path, rct_id.clone()));
    }

    // CreateSnapshot, get_result.
    let out = e.call(
        SNAPSHOT_SERVICE,
        "CreateSnapshot",
        &[
            ("AffectedSystem", reference(&vm)),
            ("SnapshotSettings", val(bareos_snapshot_settings())),
            ("SnapshotType", val("32768")),
        ],
    );
    let snapshot = get_result(
        &provider,
        &out,
        "ResultingSnapshot",
        "Msvm_VirtualSystemSettingData",
    );
    // The snapshot's disks (ResourceType 31, the VHD subtype).
    let snapshot_disks = provider
        .associators(
            &snapshot,
            Some("Msvm_VirtualSystemSettingDataComponent"),
            Some("Msvm_StorageAllocationSettingData"),
            None,
            None,
        )
        .unwrap();
    assert_eq!(snapshot_disks.len(), 2);

    // Data: GetVirtualDiskChanges on each frozen disk since the stored RCT ID.
    for (i, (_, sasd)) in snapshot_disks.iter().enumerate() {
        assert_eq!(sasd.get_u16("ResourceType").unwrap(), Some(31));
        let frozen = sasd.get_string_array("HostResource").unwrap().unwrap()[0].clone();
        let disk_id = &disks[i];
        let (_, limit_id) = &rct_by_active_path[disk_id];
        let ranges = query_all_changes(&e, &provider, &frozen, limit_id, shape.size);
        let written = &e.fixture.writes_after[i];
        for w in written {
            let covered = ranges
                .iter()
                .any(|&(o, l)| o <= w.offset && w.offset + w.length <= o + l);
            assert!(covered, "write {w:?} of disk {i} not in {ranges:?}");
        }
        let block = u64::from(shape.block_size);
        for &(o, l) in &ranges {
            assert!(o + l <= shape.size, "range past the disk");
            let touches_a_write = written.iter().any(|w| {
                let start = w.offset / block * block;
                let end = (w.offset + w.length).div_ceil(block) * block;
                o < end && start < o + l
            });
            assert!(
                touches_a_write,
                "range {o}+{l} of disk {i} changed by no write"
            );
        }
    }

    // End: ConvertToReferencePoint, store its path.
    let out = e.call(
        SNAPSHOT_SERVICE,
        "ConvertToReferencePoint",
        &[("AffectedSnapshot", reference(&snapshot))],
    );
    let new_rp = get_result(
        &provider,
        &out,
        "ResultingReferencePoint",
        "Msvm_VirtualSystemReferencePoint",
    );
    let reopened = provider
        .get_instance(&new_rp.to_string().parse().unwrap())
        .unwrap();
    assert_eq!(
        reopened.get_u16("ReferencePointType").unwrap(),
        Some(2),
        "RCT reference point"
    );

    // destroy_all_other_reference_points (after a full job).
    for (other, _) in reference_points_of_vm(&e) {
        if other.same_instance(&new_rp) {
            continue;
        }
        let out = e.call(
            RP_SERVICE,
            "DestroyReferencePoint",
            &[("AffectedReferencePoint", reference(&other))],
        );
        if out.return_value == 4096 {
            assert_eq!(state(&wait_job(&provider, &job_ref(&out))), 7);
        } else {
            assert_eq!(out.return_value, 0, "{out:?}");
        }
    }
    let left = reference_points_of_vm(&e);
    assert_eq!(left.len(), 1);
    assert!(left[0].0.same_instance(&new_rp));
}

/// Pages `GetVirtualDiskChanges` from offset 0 over `size` bytes, following
/// `ProcessedByteLength`, as Bareos does with `QueryChangesVirtualDisk`.
fn query_all_changes(
    e: &Env,
    provider: &Provider,
    path: &str,
    limit_id: &str,
    size: u64,
) -> Vec<(u64, u64)> {
    let service = e.service(IMAGE_SERVICE);
    let mut offset = 0;
    let mut ranges = Vec::new();
    let mut calls = 0;
    while offset < size {
        let out = provider
            .invoke_method(
                &service,
                "GetVirtualDiskChanges",
                &[
                    ("Path".to_owned(), val(path)),
                    ("LimitId".to_owned(), val(limit_id)),
                    ("ByteOffset".to_owned(), val(offset.to_string())),
                    ("ByteLength".to_owned(), val((size - offset).to_string())),
                ],
            )
            .unwrap();
        assert_eq!(out.return_value, 0, "{out:?}");
        let numbers = |name: &str| -> Vec<u64> {
            match out.out(name) {
                Some(ParamValue::Array(v)) => v.iter().map(|s| s.parse().unwrap()).collect(),
                other => panic!("{name}: {other:?}"),
            }
        };
        let offsets = numbers("ChangedByteOffsets");
        let lengths = numbers("ChangedByteLengths");
        assert_eq!(offsets.len(), lengths.len());
        assert!(offsets.len() <= 2, "at most max_changed_ranges per call");
        let processed: u64 = match out.out("ProcessedByteLength") {
            Some(ParamValue::Value(v)) => v.parse().unwrap(),
            other => panic!("ProcessedByteLength: {other:?}"),
        };
        assert!(processed > 0, "no progress at offset {offset}");
        ranges.extend(offsets.into_iter().zip(lengths));
        offset += processed;
        calls += 1;
        assert!(calls < 10_000);
    }
    assert!(
        calls > 1 || ranges.len() <= 2,
        "paging happened when needed"
    );
    ranges
}

/// Bareos on a failed or cancelled job: the snapshot it made is destroyed
/// with `DestroySnapshot`, and nothing of it stays.
#[test]
fn bareos_cancel_destroys_the_snapshot() {
    let e = env("bareos-cancel", &Shape::default());
    let out = create_snapshot(&e, &bareos_snapshot_settings());
    let snapshot = get_result(
        &e.provider,
        &out,
        "ResultingSnapshot",
        "Msvm_VirtualSystemSettingData",
    );

    let out = e.call(
        SNAPSHOT_SERVICE,
        "DestroySnapshot",
        &[("AffectedSnapshot", reference(&snapshot))],
    );
    let done = wait_job(&e.provider, &job_ref(&out));

    assert_eq!(state(&done), 7);
    assert_eq!(done.get_u16("JobType").unwrap(), Some(72));
    assert_eq!(
        e.provider.get_instance(&snapshot).unwrap_err().status,
        refpoint::wmi::CimOpError::NOT_FOUND
    );
    assert!(recovery_snapshots_of_vm(&e).is_empty());
}

/// nxmBackup (§7.3): application-consistent first; on failure retry crash
/// consistent. refpoint has no guest to quiesce: the first call returns 1
/// (Not supported, Table B) at once, the retry succeeds.
#[test]
fn nxmbackup_falls_back_to_crash_consistent() {
    let e = env("nxm", &Shape::default());

    let app = create_snapshot(&e, &xhvb_snapshot_settings(1));
    let crash = create_snapshot(&e, &xhvb_snapshot_settings(2));

    assert_eq!(app.return_value, 1, "{app:?}");
    assert!(app.error.as_deref().unwrap().contains("SnapshotSettings"));
    assert_eq!(state(&wait_job(&e.provider, &job_ref(&crash))), 7);
}

/// os-win's `stop_jobs` (§7.4): enumerate `Msvm_AffectedJobElement` of an
/// element, send `RequestStateChange(5)` to every cancellable job that is
/// not finished, then `_wait_for_job` (loop while `JobState` is 4) sees 9.
#[test]
fn oswin_stop_jobs_kills_the_running_export_found_through_affected_job_element() {
    let e = big_export_env("oswin");
    let target = e.path("export");
    let out = start_export(&e, &target);
    let job = job_ref(&out);
    // Hold the job where os-win would find it still running.
    suspend_and_wait(&e.provider, &job);

    let affecting = e
        .provider
        .associators(
            &e.vm_path(),
            Some("Msvm_AffectedJobElement"),
            Some("Msvm_ConcreteJob"),
            Some("AffectedElement"),
            Some("AffectingElement"),
        )
        .unwrap();
    let mut killed = Vec::new();
    for (path, instance) in &affecting {
        let cancellable = instance.get_bool("Cancellable").unwrap() == Some(true);
        let finished = [7, 8, 9, 32768].contains(&state(instance));
        if cancellable && !finished {
            let rv = e
                .provider
                .invoke_method(
                    path,
                    "RequestStateChange",
                    &[("RequestedState".to_owned(), val("5"))],
                )
                .unwrap();
            assert!(rv.return_value == 0 || rv.return_value == 4096, "{rv:?}");
            killed.push(path.clone());
        }
    }
    let after = e.provider.get_instance(&job).unwrap();
    let after = if state(&after) == 4 {
        xhvb_wait(&e.provider, &job)
    } else {
        wait_job(&e.provider, &job)
    };

    assert_eq!(killed.len(), 1);
    assert!(killed[0].same_instance(&job));
    assert_eq!(state(&after), 9);
    assert!(!target.join("oswin").exists(), "no export after a kill");
    assert_no_staging(&target);
}

/// The generic client loop of Microsoft's sample utilities and Bareos: poll
/// while `JobState` is not in {7, 32768, 8, 9, 10}; every state seen on the
/// way is one of New, Starting, Running (the export is never suspended
/// here), and the end is 7 with `PercentComplete` 100.
#[test]
fn generic_poll_loop_sees_only_running_states_then_completed() {
    let e = env("generic", &Shape::default());
    let out = start_export(&e, &e.path("export"));
    let job = job_ref(&out);

    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    let last = loop {
        let instance = e.provider.get_instance(&job).unwrap();
        let s = state(&instance);
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        if [7, 32768, 8, 9, 10].contains(&s) {
            break instance;
        }
        assert!(started.elapsed() < wmi_support::MUST);
        std::thread::sleep(std::time::Duration::from_millis(1));
    };

    assert!(
        seen[..seen.len() - 1].iter().all(|s| [2, 3, 4].contains(s)),
        "{seen:?}"
    );
    assert_eq!(state(&last), 7);
    assert_eq!(last.get_u16("PercentComplete").unwrap(), Some(100));
    assert_eq!(last.get_u16("ErrorCode").unwrap(), Some(0));
    let affected = related(&e.provider, &job, "Msvm_VirtualSystemReferencePoint");
    assert_eq!(affected.len(), 1);
    assert!(affected[0].0.same_instance(&e.rp_path()));
}

/// A fixture whose export takes many blocks: 2 × 48 MiB fully written in
/// 1 MiB blocks, one engine thread, a one-block buffer pool.
pub fn big_export_env(name: &str) -> Env {
    let shape = Shape {
        disks: 2,
        size: 48 << 20,
        block_size: 1 << 20,
        fill: Fill::Blocks { percent: 100 },
        writes_after: 2,
    };
    env_with(name, &shape, MethodMode::Asynchronous, |rp| {
        let cfg = rp.engine_config_mut();
        cfg.threads = 1;
        cfg.buffer_pool_bytes = 1 << 20;
    })
}

fn start_export(e: &Env, target: &std::path::Path) -> refpoint::wmi::MethodOutput {
    e.call(
        RP_SERVICE,
        "ExportReferencePoint",
        &[
            ("ReferencePoint", reference(&e.rp_path())),
            ("ExportDirectory", val(target.to_str().unwrap())),
        ],
    )
}

fn suspend_and_wait(provider: &Provider, job: &ObjectPath) {
    let out = provider
        .invoke_method(
            job,
            "RequestStateChange",
            &[("RequestedState".to_owned(), val("3"))],
        )
        .unwrap();
    assert_eq!(out.return_value, 4096, "{out:?}");
    let started = std::time::Instant::now();
    while state(&provider.get_instance(job).unwrap()) != 5 {
        assert!(started.elapsed() < wmi_support::MUST, "never suspended");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn assert_no_staging(target: &std::path::Path) {
    let staging: Vec<_> = std::fs::read_dir(target)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".refpoint-staging"))
                .collect()
        })
        .unwrap_or_default();
    assert!(staging.is_empty(), "staging left: {staging:?}");
}
