//! The job history on disk: one record per job written on every state
//! change, restored after a restart, unfinished jobs recorded as
//! interrupted, expired ones removed.

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use refpoint_cim::codes::{RequestStateChangeCode, ReturnCodeA};
    use refpoint_cim::{CimDateTime, MsvmError, ObjectPath};
    use refpoint_jobs::store::{JOB_RECORD_FORMAT, JobRecord, StoredAffected};
    use refpoint_jobs::{
        ELEMENT_EFFECTS_CREATE, INTERRUPTED_REASON, JobManager, JobOutput, JobState, JobStore,
        JobType, StoreError,
    };

    const MUST: Duration = Duration::from_secs(10);
    const RETENTION: Duration = Duration::from_secs(300);

    fn read_record(store: &JobStore, id: &str) -> JobRecord {
        let text = std::fs::read(store.dir().join(format!("{id}.json"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    /// Waits until the record on disk has `state` (the write follows the
    /// state change under the job's lock, so it is there once the state is).
    fn stored_state(store: &JobStore, id: &str) -> JobState {
        read_record(store, id).job.job_state
    }

    fn rp_path() -> ObjectPath {
        ObjectPath::new("Msvm_VirtualSystemReferencePoint")
            .with_key("InstanceID", r"Microsoft:VM\RP")
            .with_key("VirtualSystemIdentifier", "VM")
    }

    #[test]
    fn every_state_change_is_written_to_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let m = JobManager::with_store(RETENTION, store.clone());
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let id = m
            .submit(JobType::ExportReferencePoint, "gated", true, move |c| {
                loop {
                    c.checkpoint()?;
                    if go_rx.recv_timeout(Duration::from_millis(5)).is_ok() {
                        return Ok(JobOutput::default());
                    }
                }
            })
            .unwrap();

        m.wait_until(&id, MUST, |s| s == JobState::Running).unwrap();
        let running = stored_state(&store, &id);
        m.request_state_change(&id, 3, None).unwrap();
        m.wait_until(&id, MUST, |s| s == JobState::Suspended)
            .unwrap();
        let suspended = stored_state(&store, &id);
        m.request_state_change(&id, 2, None).unwrap();
        m.wait_until(&id, MUST, |s| s == JobState::Running).unwrap();
        let resumed = stored_state(&store, &id);
        go_tx.send(()).unwrap();
        let done = m.wait_blocking(&id).unwrap();
        let record = read_record(&store, &id);

        assert_eq!(running, JobState::Running);
        assert_eq!(suspended, JobState::Suspended);
        assert_eq!(resumed, JobState::Running);
        assert_eq!(record.format, JOB_RECORD_FORMAT);
        assert_eq!(record.job, done);
        assert_eq!(record.job.job_state, JobState::Completed);
    }

    #[test]
    fn restore_keeps_finished_jobs_with_their_affected_elements() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let first = JobManager::with_store(RETENTION, store.clone());
        let id = first
            .submit(JobType::CreateReferencePoint, "create", false, |_| {
                Ok(JobOutput {
                    created: vec![rp_path()],
                    ..JobOutput::default()
                })
            })
            .unwrap();
        let before = first.wait_blocking(&id).unwrap();
        drop(first);

        let second = JobManager::with_store(RETENTION, store);
        let report = second.restore().unwrap();
        let after = second.get(&id).unwrap();
        let affected = second.affected_elements(&id).unwrap();

        assert_eq!(report.restored, 1);
        assert!(report.interrupted.is_empty());
        assert_eq!(after, before);
        assert_eq!(affected.len(), 1);
        assert!(affected[0].affected_element.same_instance(&rp_path()));
        assert_eq!(affected[0].element_effects, vec![ELEMENT_EFFECTS_CREATE]);
        assert_eq!(second.jobs_affecting(&rp_path()), vec![id.clone()]);
        assert_eq!(
            second.request_state_change(&id, 4, None).unwrap(),
            RequestStateChangeCode::InvalidStateTransition
        );
    }

    #[test]
    fn job_unfinished_at_restore_becomes_exception_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let first = JobManager::with_store(RETENTION, store.clone());
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let id = first
            .submit(
                JobType::ExportReferencePoint,
                "never ends here",
                true,
                move |c| {
                    c.checkpoint()?;
                    let _ = release_rx.recv();
                    Ok(JobOutput::default())
                },
            )
            .unwrap();
        first
            .wait_until(&id, MUST, |s| s == JobState::Running)
            .unwrap();
        // The process "ends" here: a second manager reads the store while
        // the record still says Running.
        let second = JobManager::with_store(RETENTION, store.clone());

        let report = second.restore().unwrap();
        let job = second.get(&id).unwrap();
        let (code, errors) = second.get_error_ex(&id).unwrap();
        let on_disk = read_record(&store, &id).job;
        release_tx.send(()).unwrap();

        assert_eq!(report.interrupted.len(), 1);
        assert_eq!(job.job_state, JobState::Exception);
        assert_eq!(u32::from(job.error_code), ReturnCodeA::Failed.value());
        assert_eq!(
            job.error_summary_description.as_deref(),
            Some(INTERRUPTED_REASON)
        );
        let description = job.error_description.clone().unwrap();
        assert!(description.contains("Running (4)"), "{description}");
        assert_eq!(code, ReturnCodeA::Completed);
        let errors = errors.unwrap();
        assert_eq!(errors.len(), 1);
        let error = MsvmError::from_xml(&errors[0]).unwrap();
        assert!(error.message.contains(INTERRUPTED_REASON));
        assert_eq!(on_disk.job_state, JobState::Exception);
    }

    #[test]
    fn restore_removes_finished_jobs_past_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let old = JobManager::new();
        let id = old
            .submit(JobType::DeleteReferencePoint, "old", false, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();
        let mut job = old.wait_blocking(&id).unwrap();
        job.time_of_last_state_change = "20000101000000.000000+000".parse::<CimDateTime>().unwrap();
        store.save(&job, &[]).unwrap();
        let m = JobManager::with_store(RETENTION, store.clone());

        let report = m.restore().unwrap();

        assert_eq!(report.expired, vec![id.clone()]);
        assert!(m.get(&id).is_err());
        assert!(!store.dir().join(format!("{id}.json")).exists());
    }

    #[test]
    fn purged_job_loses_its_record_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let m = JobManager::with_store(Duration::ZERO, store.clone());
        // The work waits for a go: with zero retention a job that finished
        // before the test looks at it may already be purged, so take its
        // control while it is still running and wait on that.
        let (go, wait_for_go) = mpsc::channel::<()>();
        let id = m
            .submit(
                JobType::DeleteReferencePoint,
                "short-lived",
                false,
                move |_| {
                    let _ = wait_for_go.recv();
                    Ok(JobOutput::default())
                },
            )
            .unwrap();
        let control = m.control(&id).unwrap();
        go.send(()).unwrap();
        control.wait_for_state(Duration::from_secs(60), JobState::is_finished);
        let file = store.dir().join(format!("{id}.json"));
        let existed = file.exists();

        let listed = m.list();

        assert!(existed);
        assert!(listed.is_empty());
        assert!(!file.exists());
    }

    #[test]
    fn damaged_record_is_reported_and_the_rest_restored() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let m0 = JobManager::with_store(RETENTION, store.clone());
        let id = m0
            .submit(JobType::CreateReferencePoint, "good", false, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();
        m0.wait_blocking(&id).unwrap();
        drop(m0);
        let bad = dir.path().join("0000-BAD.json");
        std::fs::write(&bad, b"{\"Format\": \"refpoint-job/1\", \"Job\": ").unwrap();
        let m = JobManager::with_store(RETENTION, store);

        let report = m.restore().unwrap();

        assert_eq!(report.restored, 1);
        assert_eq!(report.invalid.len(), 1);
        assert!(
            matches!(&report.invalid[0], StoreError::Invalid { path, .. } if *path == bad),
            "{:?}",
            report.invalid
        );
        assert!(m.get(&id).is_ok());
    }

    #[test]
    fn record_whose_name_differs_from_its_instance_id_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let m0 = JobManager::new();
        let id = m0
            .submit(JobType::CreateReferencePoint, "x", false, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();
        let job = m0.wait_blocking(&id).unwrap();
        store.save(&job, &[]).unwrap();
        std::fs::rename(
            dir.path().join(format!("{id}.json")),
            dir.path().join("OTHER.json"),
        )
        .unwrap();

        let (records, errors) = store.load().unwrap();

        assert!(records.is_empty());
        assert!(
            matches!(&errors[0], StoreError::Invalid { reason, .. } if reason.contains("file name"))
        );
    }

    #[test]
    fn added_affected_element_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let m = JobManager::with_store(RETENTION, store.clone());
        let id = m
            .submit(JobType::ExportReferencePoint, "x", false, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();
        m.wait_blocking(&id).unwrap();

        m.add_affected_element(&id, rp_path(), &[2]).unwrap();
        let record = read_record(&store, &id);

        assert_eq!(
            record.affected,
            vec![StoredAffected {
                element: rp_path(),
                effects: vec![2]
            }]
        );
    }
}
