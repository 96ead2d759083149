//! `RequestStateChange` acting on real exports (hyperv-api.md §4.4, §4.6):
//! Suspend pauses the I/O within one block and Start resumes it where it
//! stopped; Terminate and Kill leave neither an export nor a staging
//! directory; finished jobs answer 4097, timeouts 4098; the job's
//! properties stay truthful; a failed export reports through `GetError(Ex)`;
//! the history survives a restart and a killed process is recorded as
//! interrupted, its staging removed.
#![allow(clippy::tests_outside_test_module)]

mod wmi_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use refpoint::cim::{CimDateTime, Instance, MsvmError, ObjectPath};
use refpoint::fixture::Fill;
use refpoint::service::Refpoint;
use refpoint::wmi::{MethodMode, MethodOutput, ParamValue, Provider};
use wmi_support::{Env, MUST, Shape, env_with, job_ref, reference, state, val, wait_job};

/// How long a paused export must stay still to count as paused.
const STILL: Duration = Duration::from_millis(400);
/// One block of the big fixture, bytes.
const BLOCK: u64 = 1 << 20;

fn big_env(name: &str) -> Env {
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
        cfg.buffer_pool_bytes = BLOCK;
    })
}

fn export(e: &Env, target: &Path) -> ObjectPath {
    let out = e.call(
        "Msvm_VirtualSystemReferencePointService",
        "ExportReferencePoint",
        &[
            ("ReferencePoint", reference(&e.rp_path())),
            ("ExportDirectory", val(target.to_str().unwrap())),
        ],
    );
    job_ref(&out)
}

fn request(p: &Provider, job: &ObjectPath, state: u16) -> MethodOutput {
    p.invoke_method(
        job,
        "RequestStateChange",
        &[("RequestedState".to_owned(), val(state.to_string()))],
    )
    .unwrap()
}

fn wait_state(p: &Provider, job: &ObjectPath, want: u16) -> Instance {
    let started = Instant::now();
    loop {
        let i = p.get_instance(job).unwrap();
        if state(&i) == want {
            return i;
        }
        assert!(started.elapsed() < MUST, "job never reached {want}: {i:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn bytes_done(e: &Env, job: &ObjectPath) -> u64 {
    e.provider
        .refpoint()
        .jobs()
        .control(job.key("InstanceID").unwrap())
        .unwrap()
        .bytes_done()
}

/// Every file under the export directory's staging directories with its size.
fn staging_files(target: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for rel in wmi_support::files_under(target) {
        let path = target.join(&rel);
        let in_staging = rel.components().next().is_some_and(|c| {
            c.as_os_str()
                .to_string_lossy()
                .starts_with(".refpoint-staging")
        });
        if in_staging && path.is_file() {
            out.push((rel, std::fs::metadata(&path).map_or(0, |m| m.len())));
        }
    }
    out
}

fn staging_dirs(target: &Path) -> Vec<String> {
    std::fs::read_dir(target)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".refpoint-staging"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the export has read at least `bytes`.
fn wait_progress(e: &Env, job: &ObjectPath, bytes: u64) {
    let started = Instant::now();
    while bytes_done(e, job) < bytes {
        assert!(started.elapsed() < MUST, "no progress");
        assert!(
            !matches!(state(&e.provider.get_instance(job).unwrap()), 7..=10),
            "export finished before it could be paused"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the test observes of a paused export: progress and staging sizes.
fn observe(e: &Env, job: &ObjectPath, target: &Path) -> (u64, Vec<(PathBuf, u64)>) {
    (bytes_done(e, job), staging_files(target))
}

/// Waits (bounded) until two observations `STILL` apart are equal: the
/// block in flight when the suspension took effect has landed.
fn settle(e: &Env, job: &ObjectPath, target: &Path) -> (u64, Vec<(PathBuf, u64)>) {
    let started = Instant::now();
    let mut last = observe(e, job, target);
    loop {
        std::thread::sleep(STILL);
        let now = observe(e, job, target);
        if now == last {
            return now;
        }
        assert!(started.elapsed() < MUST, "export never went still");
        last = now;
    }
}

#[test]
fn suspend_stops_all_io_and_start_resumes_to_a_verified_export() {
    let e = big_env("suspend");
    let target = e.path("export");
    let job = export(&e, &target);
    wait_progress(&e, &job, 4 * BLOCK);

    let suspend = request(&e.provider, &job, 3);
    let suspended = wait_state(&e.provider, &job, 5);
    let at_suspend = bytes_done(&e, &job);
    let (settled_bytes, settled_files) = settle(&e, &job, &target);
    std::thread::sleep(STILL * 2);
    let (later_bytes, later_files) = observe(&e, &job, &target);
    let still_suspended = e.provider.get_instance(&job).unwrap();
    let again = request(&e.provider, &job, 3);
    let resume = request(&e.provider, &job, 2);
    let done = wait_job(&e.provider, &job);
    let verify = refpoint::engine::verify(&target).unwrap();

    assert_eq!(suspend.return_value, 4096);
    assert_eq!(again.return_value, 0, "Suspend on a suspended job");
    assert_eq!(resume.return_value, 4096);
    assert!(
        settled_bytes - at_suspend <= BLOCK,
        "more than one block after the suspension took effect: {at_suspend} → {settled_bytes}"
    );
    assert_eq!(later_bytes, settled_bytes, "bytes read while suspended");
    assert_eq!(later_files, settled_files, "bytes written while suspended");
    assert!(!settled_files.is_empty(), "the export had started writing");
    assert_eq!(state(&still_suspended), 5);
    let pct = still_suspended.get_u16("PercentComplete").unwrap().unwrap();
    assert!(pct > 0 && pct < 100, "{pct}");
    assert_eq!(
        suspended.get_datetime("TimeOfLastStateChange").unwrap(),
        still_suspended
            .get_datetime("TimeOfLastStateChange")
            .unwrap(),
        "no state change while suspended"
    );
    assert_eq!(state(&done), 7, "{done:?}");
    assert!(verify.is_ok(), "{verify}");
    assert!(staging_dirs(&target).is_empty());
    // Independent oracle: the exported disks equal the frozen sources (qemu-img compare).
    for (i, source) in e.fixture.base_disks.iter().enumerate() {
        let exported = target
            .join("suspend/Virtual Hard Disks")
            .join(format!("suspend-disk{i}.vhdx"));
        let compare = Command::new("qemu-img")
            .args(["compare", "-f", "vhdx", "-F", "vhdx"])
            .arg(source)
            .arg(&exported)
            .output()
            .unwrap();
        assert!(
            compare.status.success(),
            "qemu-img compare {i}: {}",
            String::from_utf8_lossy(&compare.stdout)
        );
    }
}

fn stop_midway(name: &str, requested: u16, expected_state: u16, suspend_first: bool) {
    let e = big_env(name);
    let target = e.path("export");
    let job = export(&e, &target);
    wait_progress(&e, &job, 2 * BLOCK);
    if suspend_first {
        assert_eq!(request(&e.provider, &job, 3).return_value, 4096);
        wait_state(&e.provider, &job, 5);
        assert!(
            !staging_dirs(&target).is_empty(),
            "staging exists while suspended"
        );
    }

    let out = request(&e.provider, &job, requested);
    let done = wait_job(&e.provider, &job);
    let after = request(&e.provider, &job, requested);

    assert_eq!(out.return_value, 4096, "{out:?}");
    assert_eq!(state(&done), expected_state, "{done:?}");
    assert_eq!(done.get_u16("ErrorCode").unwrap(), Some(0));
    assert!(!target.join(name).exists(), "no export folder after stop");
    assert!(staging_dirs(&target).is_empty(), "no staging after stop");
    assert_eq!(after.return_value, 4097, "request on a finished job");
    let (_, errors) = e
        .provider
        .refpoint()
        .jobs()
        .get_error_ex(job.key("InstanceID").unwrap())
        .unwrap();
    assert!(errors.is_none(), "a stopped job has no errors");
}

#[test]
fn terminate_while_running_leaves_no_export_and_no_staging() {
    stop_midway("term-run", 4, 8, false);
}

#[test]
fn terminate_while_suspended_leaves_no_export_and_no_staging() {
    stop_midway("term-susp", 4, 8, true);
}

#[test]
fn kill_while_running_leaves_no_export_and_no_staging() {
    stop_midway("kill-run", 5, 9, false);
}

#[test]
fn kill_while_suspended_leaves_no_export_and_no_staging() {
    stop_midway("kill-susp", 5, 9, true);
}

#[test]
fn illegal_requests_on_a_running_export_change_nothing() {
    let e = big_env("illegal");
    let target = e.path("export");
    let job = export(&e, &target);
    wait_progress(&e, &job, BLOCK);
    assert_eq!(request(&e.provider, &job, 3).return_value, 4096);
    let before = wait_state(&e.provider, &job, 5);

    let service = request(&e.provider, &job, 6);
    let unknown = request(&e.provider, &job, 7);
    let timeout = e
        .provider
        .invoke_method(
            &job,
            "RequestStateChange",
            &[
                ("RequestedState".to_owned(), val("4")),
                ("TimeoutPeriod".to_owned(), val("00000000000010.000000:000")),
            ],
        )
        .unwrap();
    let zero_timeout_start = e
        .provider
        .invoke_method(
            &job,
            "RequestStateChange",
            &[
                ("RequestedState".to_owned(), val("2")),
                ("TimeoutPeriod".to_owned(), val("00000000000000.000000:000")),
            ],
        )
        .unwrap();
    let running = wait_state(&e.provider, &job, 4);
    let start_running = request(&e.provider, &job, 2);
    let after_rejected = e.provider.get_instance(&job).unwrap();
    let kill_job = e
        .provider
        .invoke_method(&job, "KillJob", &[("DeleteOnKill".to_owned(), val("TRUE"))])
        .unwrap();
    let done = wait_job(&e.provider, &job);

    assert_eq!(service.return_value, 1, "Service is not supported");
    assert_eq!(unknown.return_value, 5, "RequestedState 7 is invalid");
    assert_eq!(timeout.return_value, 4098, "{timeout:?}");
    assert_eq!(state(&before), 5);
    assert_eq!(zero_timeout_start.return_value, 4096);
    assert_eq!(state(&running), 4);
    assert_eq!(start_running.return_value, 4097, "Start on a running job");
    assert!(start_running.error.unwrap().contains("Running"));
    assert_eq!(
        running.get_datetime("TimeOfLastStateChange").unwrap(),
        after_rejected
            .get_datetime("TimeOfLastStateChange")
            .unwrap(),
        "a rejected request does not change TimeOfLastStateChange"
    );
    assert_eq!(kill_job.return_value, 1, "KillJob is not supported");
    assert_eq!(
        state(&done),
        7,
        "the job went on after the rejected requests"
    );
}

#[test]
fn every_request_on_a_completed_export_is_4097_and_properties_are_final() {
    let e = big_env("final");
    let job = export(&e, &e.path("export"));
    let done = wait_job(&e.provider, &job);
    std::thread::sleep(Duration::from_millis(50));
    let later = e.provider.get_instance(&job).unwrap();

    let codes: Vec<u32> = (2..=6)
        .map(|s| request(&e.provider, &job, s).return_value)
        .collect();

    assert_eq!(codes, vec![4097; 5]);
    assert_eq!(state(&done), 7);
    assert_eq!(
        done, later,
        "a finished job's record no longer changes (ElapsedTime included)"
    );
    let submitted = done.get_datetime("TimeSubmitted").unwrap().unwrap();
    let started = done.get_datetime("StartTime").unwrap().unwrap();
    let changed = done.get_datetime("TimeOfLastStateChange").unwrap().unwrap();
    let t = |d: CimDateTime| d.to_offset_date_time().unwrap();
    assert!(t(submitted) <= t(started) && t(started) <= t(changed));
    let elapsed = done.get_interval("ElapsedTime").unwrap().unwrap();
    assert!(
        elapsed.as_duration()
            <= (t(changed) - t(started)).unsigned_abs() + Duration::from_millis(1)
    );
    assert_eq!(done.get_u16("PercentComplete").unwrap(), Some(100));
    assert_eq!(
        done.get_interval("TimeBeforeRemoval")
            .unwrap()
            .unwrap()
            .to_string(),
        "00000000000500.000000:000"
    );
    assert_eq!(done.get_bool("Cancellable").unwrap(), Some(true));
    let disks = done.get_string_array("ExportedDisks").unwrap().unwrap();
    assert_eq!(disks.len(), 2);
}

#[test]
fn failed_export_reports_through_error_code_get_error_and_get_error_ex() {
    let e = big_env("failing");
    let target = e.path("export");
    let job = export(&e, &target);
    assert_eq!(request(&e.provider, &job, 3).return_value, 4096);
    wait_state(&e.provider, &job, 5);
    // The source changes under the paused export: it must fail, not
    // produce a silently wrong export.
    let source = &e.fixture.base_disks[1];
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(source)
        .unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);

    assert_eq!(request(&e.provider, &job, 2).return_value, 4096);
    let done = wait_job(&e.provider, &job);
    let get_error = e.provider.invoke_method(&job, "GetError", &[]).unwrap();
    let get_error_ex = e.provider.invoke_method(&job, "GetErrorEx", &[]).unwrap();

    assert_eq!(state(&done), 10, "{done:?}");
    let code = u32::from(done.get_u16("ErrorCode").unwrap().unwrap());
    assert!(code == 32768 || code == 32775, "{code}");
    let description = done.get_string("ErrorDescription").unwrap().unwrap();
    let name = source.file_name().unwrap().to_str().unwrap();
    assert!(description.contains(name), "{description}");
    assert!(
        done.get_string("ErrorSummaryDescription")
            .unwrap()
            .is_some()
    );
    assert_eq!(get_error.return_value, 0);
    assert_eq!(get_error_ex.return_value, 0);
    let Some(ParamValue::Value(xml)) = get_error.out("Error") else {
        panic!("{get_error:?}")
    };
    let Some(ParamValue::Array(errors)) = get_error_ex.out("Errors") else {
        panic!("{get_error_ex:?}")
    };
    let one = MsvmError::from_xml(xml).unwrap();
    assert!(one.message.contains(name));
    assert_eq!(errors.len(), 1);
    assert_eq!(MsvmError::from_xml(&errors[0]).unwrap(), one);
    assert!(!target.join("failing").exists());
    assert!(staging_dirs(&target).is_empty());
    let codes: Vec<u32> = (2..=6)
        .map(|s| request(&e.provider, &job, s).return_value)
        .collect();
    assert_eq!(codes, vec![4097; 5], "requests on an Exception job");
}

#[test]
fn job_history_survives_reopening_the_host() {
    let e = big_env("history");
    let job = export(&e, &e.path("export"));
    let done = wait_job(&e.provider, &job);
    let affected_before =
        wmi_support::related(&e.provider, &job, "Msvm_VirtualSystemReferencePoint");
    let host_dir = e.host_dir.clone();
    let temp = e.temp;
    drop(e.provider);

    let reopened = Provider::new(std::sync::Arc::new(Refpoint::open(&host_dir).unwrap()));
    let restored = reopened.get_instance(&job).unwrap();
    let affected_after = wmi_support::related(&reopened, &job, "Msvm_VirtualSystemReferencePoint");
    let code = request(&reopened, &job, 5);
    drop(reopened);
    let expired = Refpoint::open_with_retention(&host_dir, Duration::ZERO).unwrap();
    let gone = expired.jobs().get(job.key("InstanceID").unwrap());
    let file_left = host_dir
        .join("jobs")
        .join(format!("{}.json", job.key("InstanceID").unwrap()))
        .exists();
    drop(temp);

    assert_eq!(restored, done);
    assert_eq!(affected_after.len(), 1);
    assert_eq!(affected_before[0].0, affected_after[0].0);
    assert_eq!(code.return_value, 4097);
    assert!(gone.is_err(), "removed after TimeBeforeRemoval");
    assert!(!file_left);
}

/// A process killed in the middle of an export: on the next open the job
/// is Exception ("interrupted: the host process ended", 32768) and its
/// staging directory is gone.
#[test]
fn export_of_a_killed_process_is_recorded_as_interrupted_and_its_staging_removed() {
    let shape = Shape {
        disks: 2,
        size: 128 << 20,
        block_size: 1 << 20,
        fill: Fill::Blocks { percent: 100 },
        writes_after: 1,
    };
    let e = env_with("crash", &shape, MethodMode::Asynchronous, |_| {});
    let rp_id = e.fixture.reference_point.clone();
    let host_dir = e.host_dir.clone();
    let target = e.path("export");
    std::fs::create_dir_all(&target).unwrap();
    let temp = e.temp;
    drop(e.provider);
    let mut child = Command::cargo_bin("refpoint")
        .unwrap()
        .arg("--host")
        .arg(&host_dir)
        .args(["--quiet", "export", "--reference-point", &rp_id, "--to"])
        .arg(&target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the job record says Running and output is being written.
    let started = Instant::now();
    let job_id = loop {
        let running = std::fs::read_dir(host_dir.join("jobs"))
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|f| {
                let text = std::fs::read_to_string(f.path()).ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                (v["Job"]["JobState"] == 4)
                    .then(|| v["Job"]["InstanceID"].as_str().map(str::to_owned))?
            });
        if let Some(id) = running
            && staging_files(&target).iter().any(|(_, size)| *size > 0)
        {
            break id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "export ended before it was killed"
        );
        assert!(started.elapsed() < MUST);
        std::thread::sleep(Duration::from_millis(1));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let staging_before = staging_dirs(&target);

    let rp = Refpoint::open(&host_dir).unwrap();
    let job = rp.jobs().get(&job_id).unwrap();
    let staging_after = staging_dirs(&target);
    drop(temp);

    assert_eq!(
        staging_before.len(),
        1,
        "the killed export left its staging"
    );
    assert_eq!(job.job_state.value(), 10);
    assert_eq!(job.error_code, 32768);
    assert_eq!(
        job.error_summary_description.as_deref(),
        Some(refpoint::jobs::INTERRUPTED_REASON)
    );
    assert!(job.error_description.unwrap().contains("Running (4)"));
    assert!(
        staging_after.is_empty(),
        "staging removed on open: {staging_after:?}"
    );
    assert!(!target.join("crash").exists());
}
