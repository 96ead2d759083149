//! The host store: init, open, the lock within a process, catalog
//! persistence and corruption.

#[cfg(test)]
mod tests {
    use refpoint_core::{
        CATALOG_FILE_NAME, CatalogError, ErrorKind, Host, HostError, JOBS_DIR_NAME, LOCK_FILE_NAME,
        VMS_DIR_NAME,
    };

    #[test]
    fn init_creates_catalog_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("h");

        let host = Host::init(&dir).unwrap();

        for name in [
            CATALOG_FILE_NAME,
            LOCK_FILE_NAME,
            VMS_DIR_NAME,
            JOBS_DIR_NAME,
        ] {
            assert!(dir.join(name).exists(), "{name}");
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(CATALOG_FILE_NAME)).unwrap())
                .unwrap();
        assert_eq!(json["FormatVersion"], 1);
        assert_eq!(
            json["HostGuid"],
            refpoint_core::ids::cim_guid(&host.host_guid())
        );
        assert_eq!(json["VirtualSystems"], serde_json::json!([]));
        assert_eq!(json["Collections"], serde_json::json!([]));
    }

    #[test]
    fn init_twice_is_refused_and_keeps_the_catalog() {
        let tmp = tempfile::tempdir().unwrap();
        let guid = Host::init(tmp.path()).unwrap().host_guid();

        let err = Host::init(tmp.path()).unwrap_err();

        assert!(
            matches!(err, HostError::AlreadyInitialised { .. }),
            "{err:?}"
        );
        assert_eq!(Host::open(tmp.path()).unwrap().host_guid(), guid);
    }

    #[test]
    fn open_of_uninitialised_directory_is_not_initialised() {
        let tmp = tempfile::tempdir().unwrap();

        let err = Host::open(tmp.path()).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::NotInitialised);
        assert!(err.to_string().contains(CATALOG_FILE_NAME), "{err}");
        assert!(
            !tmp.path().join(LOCK_FILE_NAME).exists(),
            "open must not create files"
        );
    }

    #[test]
    fn open_of_missing_directory_is_not_initialised() {
        let tmp = tempfile::tempdir().unwrap();

        let err = Host::open(&tmp.path().join("nowhere")).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::NotInitialised);
    }

    #[test]
    fn second_open_while_held_is_locked_with_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = Host::init(tmp.path()).unwrap();

        let err = Host::open(tmp.path()).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::Locked);
        assert!(
            matches!(err, HostError::Locked { pid: Some(p), .. } if p == std::process::id()),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
    }

    #[test]
    fn host_can_be_reopened_after_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let guid = Host::init(tmp.path()).unwrap().host_guid();

        let host = Host::open(tmp.path()).unwrap();

        assert_eq!(host.host_guid(), guid);
    }

    #[test]
    fn corrupted_catalog_names_file_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Host::init(tmp.path()).unwrap());
        let path = tmp.path().join(CATALOG_FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen("\"VirtualSystems\": []", "\"VirtualSystems\": [}", 1),
        )
        .unwrap();

        let err = Host::open(tmp.path()).unwrap_err();

        assert_eq!(err.kind(), ErrorKind::CatalogCorrupt);
        match &err {
            HostError::CatalogCorrupt {
                path: p,
                detail: CatalogError::Parse { line, column, .. },
            } => {
                assert_eq!(p.file_name().unwrap(), CATALOG_FILE_NAME);
                assert_eq!(*line, 4, "{err}");
                assert!(*column > 0);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("line 4"), "{err}");
        // Never silently reset: the broken file is left as it was.
        assert!(std::fs::read_to_string(&path).unwrap().contains("[}"));
    }

    #[test]
    fn truncated_catalog_is_corrupt_not_empty() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Host::init(tmp.path()).unwrap());
        std::fs::write(tmp.path().join(CATALOG_FILE_NAME), b"").unwrap();

        let err = Host::open(tmp.path()).unwrap_err();

        assert!(
            matches!(
                err,
                HostError::CatalogCorrupt {
                    detail: CatalogError::Parse { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<HostError>();
        assert_send_sync::<Host>();
    }
}
