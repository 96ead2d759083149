//! Collections through a running `refpoint serve`: the CLI's collection
//! commands, `rp create --collection` and a collection export with nested
//! `Msvm_VirtualMachineToDisks` instances travel as CIM-XML over the
//! service's socket; the jobs run in the service.
#![allow(clippy::tests_outside_test_module)]

mod common;
mod serve_support;

#[cfg(test)]
mod tests {
    use super::common::refpoint;
    use super::serve_support::Service;

    #[test]
    fn collection_commands_and_a_collection_export_go_through_the_service() {
        let temp = tempfile::tempdir().unwrap();
        let host = temp.path().join("host");
        let ok = |args: &[&str]| {
            let (code, json, err) = refpoint(&host, args);
            assert_eq!(code, 0, "refpoint {args:?}: {err}");
            json
        };
        ok(&["host", "init", host.to_str().unwrap()]);
        for (vm, seed) in [("alpha", "1"), ("beta", "2")] {
            ok(&[
                "fixture", "--name", vm, "--disks", "2", "--size", "8M", "--seed", seed,
            ]);
        }
        let disk0 = ok(&["vm", "show", "alpha"])["VirtualSystem"]["Disks"][0]["InstanceID"]
            .as_str()
            .unwrap()
            .to_owned();
        let service = Service::start(&host, false);

        ok(&["collection", "create", "grp"]);
        ok(&["collection", "add", "grp", "alpha"]);
        ok(&["collection", "add", "grp", "beta"]);
        let listed = ok(&["collection", "list"]);
        let rpc = ok(&["rp", "create", "--collection", "grp"])["CollectionID"]
            .as_str()
            .unwrap()
            .to_owned();
        let out = temp.path().join("out");
        let exported = ok(&[
            "export",
            "--collection-reference-point",
            &rpc,
            "--to",
            out.to_str().unwrap(),
            "--vm-disks",
            &format!("alpha={disk0}"),
        ]);
        let (code, _, err) = refpoint(&host, &["collection", "add", "grp", "nobody"]);
        let stopped = service.terminate();

        assert!(stopped.status.success(), "{}", stopped.stderr);
        assert_eq!(listed[0]["Members"].as_array().unwrap().len(), 2);
        assert_eq!(exported["Job"]["JobState"], 7, "{exported}");
        assert_eq!(exported["Job"]["ExportedDisks"], serde_json::json!([disk0]));
        assert_eq!(code, 1);
        assert!(err.contains("32779") && err.contains("nobody"), "{err}");
        let (code, _, err) = refpoint(&host, &["verify", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert!(out.join("beta/Virtual Machines").is_dir());
    }
}
