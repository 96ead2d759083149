//! JobManager behaviour: the §4.6 state machine through RequestStateChange,
//! progress, errors, affected elements, retention, CIM and JSON forms.

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use refpoint_cim::codes::{RequestStateChangeCode, ReturnCodeA, ReturnCodeB};
    use refpoint_cim::{CimInterval, Instance, MsvmError, ObjectPath};
    use refpoint_jobs::{
        ExportParameters, ExportResult, Interrupted, Job, JobControl, JobFailure, JobManager,
        JobOutput, JobSpec, JobState, JobType, JobsError,
    };

    /// Bound for waits on conditions that must happen (only reached on a bug).
    const MUST: Duration = Duration::from_secs(10);

    /// Work that reports each checkpoint result and loops until interrupted
    /// or told to finish through `finish`.
    fn gated_work(
        started: mpsc::Sender<()>,
        finish: mpsc::Receiver<()>,
        seen: mpsc::Sender<Result<(), Interrupted>>,
    ) -> impl FnOnce(Arc<JobControl>) -> Result<JobOutput, JobFailure> + Send + 'static {
        move |control| {
            started.send(()).unwrap();
            loop {
                let r = control.checkpoint();
                let _ = seen.send(r);
                r?;
                if finish.recv_timeout(Duration::from_millis(5)).is_ok() {
                    return Ok(JobOutput::default());
                }
            }
        }
    }

    struct Gated {
        id: String,
        finish: mpsc::Sender<()>,
        seen: mpsc::Receiver<Result<(), Interrupted>>,
    }

    fn start_gated(m: &JobManager) -> Gated {
        let (started_tx, started_rx) = mpsc::channel();
        let (finish_tx, finish_rx) = mpsc::channel();
        let (seen_tx, seen_rx) = mpsc::channel();
        let id = m
            .submit(
                JobType::ExportReferencePoint,
                "gated",
                true,
                gated_work(started_tx, finish_rx, seen_tx),
            )
            .unwrap();
        started_rx.recv_timeout(MUST).unwrap();
        Gated {
            id,
            finish: finish_tx,
            seen: seen_rx,
        }
    }

    #[test]
    fn successful_job_reaches_completed_with_truthful_record() {
        let m = JobManager::new();

        let id = m
            .submit(JobType::CreateReferencePoint, "create rp", true, |c| {
                c.set_total(10);
                c.add_progress(10);
                Ok(JobOutput::default())
            })
            .unwrap();
        let job = m.wait_blocking(&id).unwrap();

        assert_eq!(job.job_state, JobState::Completed);
        assert_eq!(job.percent_complete, 100);
        assert_eq!(job.instance_id, id.to_ascii_uppercase());
        assert!(uuid::Uuid::parse_str(&job.instance_id).is_ok());
        assert_eq!(job.name, "Create Reference Point");
        assert_eq!(job.description, "create rp");
        assert!(!job.start_time.is_unknown());
        assert_eq!(
            job.time_before_removal.to_string(),
            "00000000000500.000000:000"
        );
        assert_eq!(job.error_code, 0);
        assert_eq!(job.operational_status, vec![2, 17]);
        assert_eq!(job.health_state, 5);
        assert_eq!(m.get_error_ex(&id).unwrap(), (ReturnCodeA::Completed, None));
        assert_eq!(m.get_error(&id).unwrap(), (ReturnCodeA::Completed, None));
    }

    #[test]
    fn warnings_give_completed_with_warnings_and_get_error_ex_lists_them() {
        let m = JobManager::new();

        let id = m
            .submit(JobType::ExportReferencePoint, "export", true, |_| {
                Ok(JobOutput {
                    warnings: vec!["tracking lost for disk D1; full read".into()],
                    ..Default::default()
                })
            })
            .unwrap();
        let job = m.wait_blocking(&id).unwrap();
        let (code, errors) = m.get_error_ex(&id).unwrap();
        let parsed = MsvmError::from_xml(&errors.unwrap()[0]).unwrap();

        assert_eq!(job.job_state, JobState::CompletedWithWarnings);
        assert!(job.job_state.is_success());
        assert_eq!(code, ReturnCodeA::Completed);
        assert_eq!(parsed.message, "tracking lost for disk D1; full read");
        assert_eq!(parsed.perceived_severity, 3);
    }

    #[test]
    fn failure_gives_exception_with_code_descriptions_and_get_error_ex() {
        let m = JobManager::new();

        let id = m
            .submit(JobType::ExportReferencePoint, "export", true, |_| {
                Err(JobFailure::failed(
                    ReturnCodeA::Failed,
                    "read error in /vms/d1.avhdx at offset 1048576",
                )
                .with_error(
                    MsvmError::new(
                        ReturnCodeA::Failed,
                        "read error in /vms/d1.avhdx at offset 1048576",
                    )
                    .with_source("/vms/d1.avhdx"),
                ))
            })
            .unwrap();
        let job = m.wait_blocking(&id).unwrap();
        let (_, errors) = m.get_error_ex(&id).unwrap();
        let xml = &errors.unwrap()[0];
        let inst = Instance::from_xml(xml).unwrap();

        assert_eq!(job.job_state, JobState::Exception);
        assert_eq!(job.error_code, 32768);
        assert_eq!(
            job.error_description.as_deref(),
            Some("read error in /vms/d1.avhdx at offset 1048576")
        );
        assert_eq!(job.error_summary_description.as_deref(), Some("Failed"));
        assert_eq!(job.operational_status, vec![6, 17]);
        assert_eq!(inst.class_name, "Msvm_Error");
        assert_eq!(
            inst.get_string("Message").unwrap().as_deref(),
            Some("read error in /vms/d1.avhdx at offset 1048576")
        );
        assert_eq!(
            inst.get_string("ErrorSource").unwrap().as_deref(),
            Some("/vms/d1.avhdx")
        );
    }

    #[test]
    fn failure_without_explicit_errors_synthesises_one_msvm_error() {
        let m = JobManager::new();

        let id = m
            .submit(JobType::ExportReferencePoint, "export", true, |_| {
                Err(JobFailure::failed(
                    ReturnCodeA::InvalidState,
                    "reference point has no associated data",
                ))
            })
            .unwrap();
        m.wait_blocking(&id).unwrap();
        let (_, error) = m.get_error(&id).unwrap();
        let e = MsvmError::from_xml(&error.unwrap()).unwrap();

        assert_eq!(e.message, "reference point has no associated data");
        assert_eq!(e.message_id.as_deref(), Some("32775"));
    }

    #[test]
    fn panicking_work_ends_in_exception_32768() {
        let m = JobManager::new();

        let id = m
            .submit(JobType::ExportReferencePoint, "boom", true, |_| {
                panic!("bug")
            })
            .unwrap();
        let job = m.wait_blocking(&id).unwrap();

        assert_eq!(job.job_state, JobState::Exception);
        assert_eq!(job.error_code, 32768);
        assert!(job.error_description.unwrap().contains("bug"));
    }

    #[test]
    fn suspend_blocks_the_work_and_start_resumes_it() {
        let m = JobManager::new();
        let g = start_gated(&m);

        let suspend = m.request_state_change(&g.id, 3, None).unwrap();
        let suspended = m
            .wait_until(&g.id, MUST, |s| s == JobState::Suspended)
            .unwrap();
        while g.seen.try_recv().is_ok() {}
        let quiet = g.seen.recv_timeout(Duration::from_millis(200));
        let resume = m.request_state_change(&g.id, 2, None).unwrap();
        let after = g.seen.recv_timeout(MUST);
        let running = m
            .wait_until(&g.id, MUST, |s| s == JobState::Running)
            .unwrap();
        g.finish.send(()).unwrap();
        let done = m.wait_blocking(&g.id).unwrap();

        assert_eq!(suspend, RequestStateChangeCode::TransitionStarted);
        assert_eq!(suspended.job_state, JobState::Suspended);
        assert!(quiet.is_err(), "work passed a checkpoint while suspended");
        assert_eq!(resume, RequestStateChangeCode::TransitionStarted);
        assert_eq!(after, Ok(Ok(())));
        assert_eq!(running.job_state, JobState::Running);
        assert_eq!(done.job_state, JobState::Completed);
    }

    #[test]
    fn terminate_makes_checkpoint_return_terminated_and_job_terminated() {
        let m = JobManager::new();
        let g = start_gated(&m);

        let code = m.request_state_change(&g.id, 4, None).unwrap();
        let job = m.wait_blocking(&g.id).unwrap();
        let last = g.seen.iter().last();

        assert_eq!(code, RequestStateChangeCode::TransitionStarted);
        assert_eq!(job.job_state, JobState::Terminated);
        assert_eq!(last, Some(Err(Interrupted::Terminated)));
        assert_eq!(job.operational_status, vec![10, 17]);
    }

    #[test]
    fn kill_makes_checkpoint_return_killed_and_job_killed() {
        let m = JobManager::new();
        let g = start_gated(&m);

        let code = m.request_state_change(&g.id, 5, None).unwrap();
        let job = m.wait_blocking(&g.id).unwrap();
        let last = g.seen.iter().last();

        assert_eq!(code, RequestStateChangeCode::TransitionStarted);
        assert_eq!(job.job_state, JobState::Killed);
        assert_eq!(last, Some(Err(Interrupted::Killed)));
    }

    #[test]
    fn kill_while_suspended_ends_killed() {
        let m = JobManager::new();
        let g = start_gated(&m);
        m.request_state_change(&g.id, 3, None).unwrap();
        m.wait_until(&g.id, MUST, |s| s == JobState::Suspended)
            .unwrap();

        let code = m.request_state_change(&g.id, 5, None).unwrap();
        let job = m.wait_blocking(&g.id).unwrap();

        assert_eq!(code, RequestStateChangeCode::TransitionStarted);
        assert_eq!(job.job_state, JobState::Killed);
    }

    #[test]
    fn every_request_on_a_finished_job_returns_4097() {
        let m = JobManager::new();
        let id = m
            .submit(JobType::ExportReferencePoint, "x", true, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();
        m.wait_blocking(&id).unwrap();

        let codes: Vec<u32> = (2..=6)
            .map(|r| m.request_state_change(&id, r, None).unwrap().value())
            .collect();

        assert_eq!(codes, vec![4097; 5]);
    }

    #[test]
    fn start_on_running_job_is_4097_and_state_unchanged() {
        let m = JobManager::new();
        let g = start_gated(&m);
        let before = m.get(&g.id).unwrap();

        let code = m.request_state_change(&g.id, 2, None).unwrap();
        let after = m.get(&g.id).unwrap();
        g.finish.send(()).unwrap();

        assert_eq!(code, RequestStateChangeCode::InvalidStateTransition);
        assert_eq!(after.job_state, JobState::Running);
        assert_eq!(
            after.time_of_last_state_change,
            before.time_of_last_state_change
        );
    }

    #[test]
    fn non_zero_timeout_is_4098_and_zero_timeout_is_accepted() {
        let m = JobManager::new();
        let g = start_gated(&m);
        let five_seconds = CimInterval::try_from(Duration::from_secs(5)).unwrap();

        let with_timeout = m
            .request_state_change(&g.id, 4, Some(five_seconds))
            .unwrap();
        let state_after = m.get(&g.id).unwrap().job_state;
        let zero = m
            .request_state_change(&g.id, 4, Some(CimInterval::ZERO))
            .unwrap();
        m.wait_blocking(&g.id).unwrap();

        assert_eq!(with_timeout, RequestStateChangeCode::TimeoutNotSupported);
        assert_eq!(state_after, JobState::Running);
        assert_eq!(zero, RequestStateChangeCode::TransitionStarted);
    }

    #[test]
    fn service_request_is_not_supported_and_unknown_state_is_invalid_parameter() {
        let m = JobManager::new();
        let g = start_gated(&m);

        let service = m.request_state_change(&g.id, 6, None).unwrap();
        let seven = m.request_state_change(&g.id, 7, None).unwrap();
        g.finish.send(()).unwrap();

        assert_eq!(service, RequestStateChangeCode::NotSupported);
        assert_eq!(seven, RequestStateChangeCode::InvalidParameter);
    }

    #[test]
    fn terminate_on_non_cancellable_job_is_not_supported() {
        let m = JobManager::new();
        let (tx, rx) = mpsc::channel::<()>();
        let id = m
            .submit(
                JobType::ConvertSnapshotToReferencePoint,
                "convert",
                false,
                move |_| {
                    rx.recv_timeout(MUST).ok();
                    Ok(JobOutput::default())
                },
            )
            .unwrap();

        let code = m.request_state_change(&id, 4, None).unwrap();
        tx.send(()).unwrap();

        assert_eq!(code, RequestStateChangeCode::NotSupported);
        assert_eq!(m.wait_blocking(&id).unwrap().job_state, JobState::Completed);
    }

    #[test]
    fn percent_complete_follows_bytes() {
        let m = JobManager::new();
        let (at_quarter_tx, at_quarter_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let id = m
            .submit(JobType::ExportReferencePoint, "x", true, move |c| {
                c.set_total(1000);
                c.add_progress(250);
                at_quarter_tx.send(()).unwrap();
                go_rx.recv_timeout(MUST).ok();
                c.add_progress(500);
                Ok(JobOutput::default())
            })
            .unwrap();

        at_quarter_rx.recv_timeout(MUST).unwrap();
        let quarter = m.get(&id).unwrap().percent_complete;
        go_tx.send(()).unwrap();
        let done = m.wait_blocking(&id).unwrap().percent_complete;

        assert_eq!(quarter, 25);
        assert_eq!(done, 100);
    }

    #[test]
    fn unknown_job_is_not_found_with_32773() {
        let m = JobManager::new();

        let err = m.get("00000000-0000-0000-0000-000000000000").unwrap_err();

        assert!(matches!(err, JobsError::NotFound { .. }));
        assert_eq!(err.return_code(), ReturnCodeA::InvalidParameter);
    }

    #[test]
    fn kill_job_method_is_not_supported() {
        let m = JobManager::new();
        let id = m
            .submit(JobType::ExportReferencePoint, "x", true, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();

        assert_eq!(m.kill_job(&id, true).unwrap(), ReturnCodeB::NotSupported);
    }

    #[test]
    fn created_elements_are_associated_with_effect_5() {
        let m = JobManager::new();
        let rp = ObjectPath::new("Msvm_VirtualSystemReferencePoint").with_key("InstanceID", "RP1");
        let rp2 = rp.clone();
        let id = m
            .submit(
                JobType::ConvertSnapshotToReferencePoint,
                "convert",
                true,
                move |_| {
                    Ok(JobOutput {
                        created: vec![rp2],
                        ..Default::default()
                    })
                },
            )
            .unwrap();
        m.wait_blocking(&id).unwrap();

        let affected = m.affected_elements(&id).unwrap();
        let inst = affected[0].to_instance();

        assert_eq!(affected.len(), 1);
        assert_eq!(affected[0].affected_element, rp);
        assert_eq!(affected[0].element_effects, vec![5]);
        assert_eq!(
            affected[0].affecting_element.key("InstanceID"),
            Some(id.as_str())
        );
        assert_eq!(m.jobs_affecting(&rp), vec![id]);
        assert_eq!(inst.get_u16_array("ElementEffects").unwrap(), Some(vec![5]));
    }

    #[test]
    fn add_affected_element_merges_effects() {
        let m = JobManager::new();
        let id = m
            .submit(JobType::ExportReferencePoint, "x", true, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();
        let vm = ObjectPath::new("Msvm_ComputerSystem").with_key("Name", "VM1");

        m.add_affected_element(&id, vm.clone(), &[3]).unwrap();
        m.add_affected_element(&id, vm.clone(), &[5, 3]).unwrap();

        assert_eq!(
            m.affected_elements(&id).unwrap()[0].element_effects,
            vec![3, 5]
        );
    }

    #[test]
    fn finished_jobs_are_removed_after_time_before_removal() {
        let m = JobManager::with_retention(Duration::ZERO);
        let g = start_gated(&m);
        let control = m.control(&g.id).unwrap();
        let while_running = m.get(&g.id).unwrap();
        g.finish.send(()).unwrap();

        let final_state = control.wait_for_state(MUST, JobState::is_finished);
        let after = m.get(&g.id);

        assert_eq!(while_running.time_before_removal, CimInterval::ZERO);
        assert_eq!(final_state, JobState::Completed);
        assert!(matches!(after, Err(JobsError::NotFound { .. })));
        assert!(m.list().is_empty());
    }

    #[test]
    fn finished_jobs_are_kept_within_time_before_removal() {
        let m = JobManager::new();
        let id = m
            .submit(JobType::ExportReferencePoint, "x", true, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();
        m.wait_blocking(&id).unwrap();

        assert_eq!(m.get(&id).unwrap().job_state, JobState::Completed);
        assert_eq!(m.list().len(), 1);
    }

    #[test]
    fn running_jobs_are_never_removed() {
        let m = JobManager::with_retention(Duration::ZERO);
        let g = start_gated(&m);

        let listed = m.list().len();
        g.finish.send(()).unwrap();

        assert_eq!(listed, 1);
    }

    #[tokio::test]
    async fn async_wait_returns_final_record() {
        let m = JobManager::new();
        let id = m
            .submit(JobType::ExportReferencePoint, "x", true, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();

        let job = m.wait(&id).await.unwrap();

        assert_eq!(job.job_state, JobState::Completed);
    }

    fn export_job(m: &JobManager) -> Job {
        let spec =
            JobSpec::new(JobType::ExportReferencePoint, "export rp").export(ExportParameters {
                export_directory: "/exports".into(),
                virtual_machine_id: "VM1".into(),
                reference_point_id: "RP2".into(),
                base_reference_point_id: Some("RP1".into()),
            });
        let id = m
            .submit_spec(spec, |_| {
                Ok(JobOutput {
                    export: Some(ExportResult {
                        exported_disks: vec![r"Microsoft:VM1\D1\0\0\D".into()],
                        exported_log_file_paths: vec![
                            "/exports/vm1/Virtual Hard Disks/d1-RP2.avhdx".into(),
                        ],
                        exported_config_file_path: Some(
                            "/exports/vm1/Virtual Machines/VM1.xml".into(),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            })
            .unwrap();
        m.wait_blocking(&id).unwrap()
    }

    #[test]
    fn export_job_instance_has_export_class_and_fields_with_cim_types() {
        let m = JobManager::new();
        let job = export_job(&m);

        let inst = Instance::from_xml(&job.to_instance().to_xml()).unwrap();

        assert_eq!(inst.class_name, "Msvm_VirtualSystemReferencePointExportJob");
        assert_eq!(inst.get_u16("JobState").unwrap(), Some(7));
        assert_eq!(inst.get_u16("JobType").unwrap(), Some(203));
        assert_eq!(
            inst.get_string("ExportDirectory").unwrap().as_deref(),
            Some("/exports")
        );
        assert_eq!(
            inst.get_string("BaseReferencePointId").unwrap().as_deref(),
            Some("RP1")
        );
        assert_eq!(
            inst.get_string_array("ExportedDisks")
                .unwrap()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            inst.get_interval("TimeBeforeRemoval").unwrap(),
            Some(job.time_before_removal)
        );
        assert_eq!(
            inst.get_datetime("TimeSubmitted").unwrap(),
            Some(job.time_submitted)
        );
        assert_eq!(inst.get_bool("Cancellable").unwrap(), Some(true));
        assert_eq!(
            inst.get_u16_array("OperationalStatus").unwrap(),
            Some(vec![2, 17])
        );
        assert_eq!(
            job.object_path().to_string(),
            format!(
                r#"Msvm_VirtualSystemReferencePointExportJob.InstanceID="{}""#,
                job.instance_id
            )
        );
    }

    #[test]
    fn non_export_job_is_a_plain_concrete_job_without_export_fields() {
        let m = JobManager::new();
        let id = m
            .submit(JobType::SnapshotVirtualMachine, "snap", true, |_| {
                Ok(JobOutput::default())
            })
            .unwrap();

        let inst = m.wait_blocking(&id).unwrap().to_instance();

        assert_eq!(inst.class_name, "Msvm_ConcreteJob");
        assert!(inst.property("ExportDirectory").is_none());
    }

    #[test]
    fn job_serialises_with_cim_property_names_and_round_trips() {
        let m = JobManager::new();
        let job = export_job(&m);

        let json = serde_json::to_value(&job).unwrap();
        let back: Job = serde_json::from_value(json.clone()).unwrap();

        assert_eq!(json["InstanceID"], job.instance_id.as_str());
        assert_eq!(json["JobState"], 7);
        assert_eq!(json["JobType"], 203);
        assert_eq!(json["TimeBeforeRemoval"], "00000000000500.000000:000");
        assert_eq!(json["ExportedDisks"][0], r"Microsoft:VM1\D1\0\0\D");
        assert_eq!(back, job);
    }

    #[test]
    fn imported_record_is_listed_and_rejects_state_changes() {
        let source = JobManager::new();
        let job = export_job(&source);
        let m = JobManager::new();

        m.import_record(job.clone());

        assert_eq!(m.get(&job.instance_id).unwrap(), job);
        assert_eq!(
            m.request_state_change(&job.instance_id, 4, None).unwrap(),
            RequestStateChangeCode::InvalidStateTransition
        );
    }

    #[test]
    fn imported_unfinished_record_becomes_exception_interrupted() {
        let source = JobManager::new();
        let g = start_gated(&source);
        let running = source.get(&g.id).unwrap();
        g.finish.send(()).unwrap();
        let m = JobManager::new();

        m.import_record(running);
        let job = m.get(&g.id).unwrap();

        assert_eq!(job.job_state, JobState::Exception);
        assert_eq!(u32::from(job.error_code), ReturnCodeA::Failed.value());
        assert_eq!(
            job.error_summary_description.as_deref(),
            Some(refpoint_jobs::INTERRUPTED_REASON)
        );
    }
}
