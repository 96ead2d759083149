//! `Msvm_CollectionReferencePointExportJob` (JobType 206): its own class and
//! properties (`CollectionId`, `ReferencePointGroupId`,
//! `BaseReferencePointGroupId`, `VirtualMachineId[]`, `ExportedDisks[]`,
//! `ExportedLogFilePaths[]`, `ExportedConfigFilePaths[]`), persisted.

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use refpoint_cim::Instance;
    use refpoint_jobs::{
        CollectionExportParameters, ExportResult, Job, JobManager, JobOutput, JobSpec, JobStore,
        JobType,
    };

    fn collection_job(m: &JobManager) -> Job {
        let spec = JobSpec::new(JobType::ExportReferencePointOnCollection, "export group")
            .collection_export(CollectionExportParameters {
                export_directory: "/exports".into(),
                collection_id: "C0".into(),
                reference_point_group_id: "G2".into(),
                base_reference_point_group_id: Some("G1".into()),
                virtual_machine_ids: vec!["VM1".into(), "VM2".into()],
            });
        let id = m
            .submit_spec(spec, |_| {
                Ok(JobOutput {
                    export: Some(ExportResult {
                        exported_disks: vec!["D1".into(), "D2".into(), "D3".into()],
                        exported_log_file_paths: vec!["/a".into(), "/b".into(), "/c".into()],
                        exported_config_file_paths: vec!["/x.xml".into(), "/y.xml".into()],
                        ..ExportResult::default()
                    }),
                    ..JobOutput::default()
                })
            })
            .unwrap();
        m.wait_blocking(&id).unwrap()
    }

    #[test]
    fn collection_export_job_has_its_class_and_array_properties() {
        let m = JobManager::new();
        let job = collection_job(&m);

        let inst = Instance::from_xml(&job.to_instance().to_xml()).unwrap();

        assert_eq!(inst.class_name, "Msvm_CollectionReferencePointExportJob");
        assert_eq!(inst.get_u16("JobType").unwrap(), Some(206));
        assert_eq!(
            inst.get_string("CollectionId").unwrap().as_deref(),
            Some("C0")
        );
        assert_eq!(
            inst.get_string("ReferencePointGroupId").unwrap().as_deref(),
            Some("G2")
        );
        assert_eq!(
            inst.get_string("BaseReferencePointGroupId")
                .unwrap()
                .as_deref(),
            Some("G1")
        );
        assert_eq!(
            inst.get_string_array("VirtualMachineId").unwrap(),
            Some(vec!["VM1".to_owned(), "VM2".to_owned()])
        );
        assert_eq!(
            inst.get_string_array("ExportedDisks")
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            inst.get_string_array("ExportedConfigFilePaths").unwrap(),
            Some(vec!["/x.xml".to_owned(), "/y.xml".to_owned()])
        );
        assert_eq!(
            inst.get_string("ExportDirectory").unwrap().as_deref(),
            Some("/exports")
        );
        assert!(inst.property("ReferencePointId").is_none());
        assert!(
            inst.get_string("VirtualMachineId").is_err(),
            "an array, not a scalar"
        );
    }

    #[test]
    fn collection_export_fields_survive_the_job_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::new(dir.path());
        let first = JobManager::with_store(Duration::from_secs(300), store.clone());
        let job = collection_job(&first);
        drop(first);

        let second = JobManager::with_store(Duration::from_secs(300), store);
        second.restore().unwrap();
        let back = second.get(&job.instance_id).unwrap();

        assert_eq!(back.collection_id.as_deref(), Some("C0"));
        assert_eq!(back.virtual_machine_ids, vec!["VM1", "VM2"]);
        assert_eq!(
            back.exported_config_file_paths,
            job.exported_config_file_paths
        );
        assert_eq!(back.export_directory.as_deref(), Some("/exports"));
    }
}
