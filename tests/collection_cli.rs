//! Collections end to end through the `refpoint` binary: `collection
//! create|add|remove|list|show`, `rp create --collection`, full and
//! differential collection exports checked with `refpoint verify`,
//! `sha256sum -c`, qemu-img and libvhdi against raw captures taken at the
//! reference points, membership changes, `--vm-disks`, and faults (an I/O
//! error in one member, a killed export process) that leave nothing.
#![allow(clippy::tests_outside_test_module)]

mod common;

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use assert_cmd::cargo::CommandCargoExt;
    use serde_json::Value;

    use super::common::{qemu_raw_sha256, refpoint, run_ok, sha256_file};

    struct Env {
        temp: tempfile::TempDir,
        host: PathBuf,
    }

    impl Env {
        fn new() -> Env {
            let temp = tempfile::tempdir().unwrap();
            let host = temp.path().join("host");
            let (code, _, err) = refpoint(&host, &["host", "init", host.to_str().unwrap()]);
            assert_eq!(code, 0, "{err}");
            Env { temp, host }
        }
        fn ok(&self, args: &[&str]) -> Value {
            let (code, json, err) = refpoint(&self.host, args);
            assert_eq!(code, 0, "refpoint {args:?}: {err}");
            json
        }
        fn fails(&self, args: &[&str]) -> String {
            let (code, _, err) = refpoint(&self.host, args);
            assert_eq!(code, 1, "refpoint {args:?} should fail: {err}");
            err
        }
        fn fixture(&self, name: &str, size: &str, extra: &[&str]) {
            let mut args = vec![
                "fixture",
                "--name",
                name,
                "--disks",
                "2",
                "--size",
                size,
                "--block-size",
                "1M",
            ];
            args.extend_from_slice(extra);
            self.ok(&args);
        }
        fn path(&self, name: &str) -> PathBuf {
            self.temp.path().join(name)
        }
        /// Writes into `vm` and captures its disks' content as raw images in `dir`.
        fn write_and_capture(&self, vm: &str, seed: &str, dir: &Path) {
            self.ok(&[
                "workload",
                vm,
                "--seed",
                seed,
                "--writes",
                "8",
                "--raw-capture",
                dir.to_str().unwrap(),
            ]);
        }
        fn rp_create(&self, collection: &str) -> String {
            let json = self.ok(&["rp", "create", "--collection", collection]);
            json["CollectionID"].as_str().unwrap().to_owned()
        }
        fn export(&self, point: &str, to: &Path, extra: &[&str]) -> Value {
            let mut args = vec![
                "export",
                "--collection-reference-point",
                point,
                "--to",
                to.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            self.ok(&args)
        }
    }

    fn manifest(dir: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(dir.join("refpoint-collection.json")).unwrap())
            .unwrap()
    }

    fn sha256sum_checks(dir: &Path) {
        let out = Command::new("sha256sum")
            .args(["-c", "--quiet", "--strict", "SHA256SUMS"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sha256sum -c in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn verify_ok(env: &Env, dir: &Path) {
        let (code, _, err) = refpoint(&env.host, &["verify", dir.to_str().unwrap()]);
        assert_eq!(code, 0, "verify {}: {err}", dir.display());
    }

    /// `qemu-img check` passes and the content equals the raw capture.
    fn full_output_matches(vhdx: &Path, capture: &Path, scratch: &Path) {
        run_ok(
            Command::new("qemu-img")
                .args(["check", "-q", "-f", "vhdx"])
                .arg(vhdx),
        );
        assert_eq!(
            qemu_raw_sha256(vhdx, scratch),
            sha256_file(capture),
            "{}",
            vhdx.display()
        );
    }

    /// SHA-256 of a differencing VHDX's content read with libvhdi (pyvhdi),
    /// its parent given explicitly.
    fn libvhdi_sha256(child: &Path, parent: &Path) -> String {
        let script = "import sys, hashlib, pyvhdi\n\
                      p = pyvhdi.file(); p.open(sys.argv[2])\n\
                      c = pyvhdi.file(); c.open(sys.argv[1]); c.set_parent(p)\n\
                      h = hashlib.sha256(); n = c.get_media_size(); off = 0\n\
                      while off < n:\n    l = min(1 << 20, n - off); h.update(c.read_buffer_at_offset(l, off)); off += l\n\
                      print(h.hexdigest())\n";
        let out = run_ok(
            Command::new("python3")
                .args(["-c", script])
                .arg(child)
                .arg(parent),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn only_file(dir: &Path) -> PathBuf {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 1, "{files:?}");
        files.remove(0)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn collection_commands_manage_membership_with_documented_codes() {
        let env = Env::new();
        env.fixture("alpha", "8M", &[]);
        env.fixture("beta", "8M", &[]);

        let created = env.ok(&["collection", "create", "grp"]);
        env.ok(&["collection", "add", "grp", "alpha"]);
        env.ok(&["collection", "add", "GRP", "beta"]);
        env.ok(&["collection", "remove", "grp", "alpha"]);
        let shown = env.ok(&["collection", "show", "grp"]);
        let listed = env.ok(&["collection", "list"]);
        let unknown_vm = env.fails(&["collection", "add", "grp", "nobody"]);
        let unknown_collection = env.fails(&["collection", "add", "nothing", "alpha"]);
        let twice = env.fails(&["collection", "add", "grp", "beta"]);
        let duplicate = env.fails(&["collection", "create", "grp"]);
        let empty_point = env.fails(&["rp", "create", "--collection", "grp2"]);

        let id = created["CollectionID"].as_str().unwrap();
        assert_eq!(shown["CollectionID"], id);
        let members: Vec<&str> = shown["Members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["ElementName"].as_str().unwrap())
            .collect();
        assert_eq!(members, vec!["beta"]);
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert!(
            unknown_vm.contains("32779") && unknown_vm.contains("nobody"),
            "{unknown_vm}"
        );
        assert!(
            unknown_collection.contains("32779") && unknown_collection.contains("nothing"),
            "{unknown_collection}"
        );
        assert!(twice.contains("32775"), "{twice}");
        assert!(duplicate.contains("32773"), "{duplicate}");
        assert!(empty_point.contains("grp2"), "{empty_point}");
        env.ok(&["collection", "destroy", "grp"]);
        assert_eq!(env.ok(&["collection", "list"]).as_array().unwrap().len(), 0);
    }

    #[test]
    fn full_and_differential_collection_exports_verify_and_read_back_exactly() {
        let env = Env::new();
        for vm in ["alpha", "beta"] {
            env.fixture(
                vm,
                "16M",
                &["--seed", if vm == "alpha" { "3" } else { "4" }],
            );
        }
        env.ok(&["collection", "create", "grp"]);
        env.ok(&["collection", "add", "grp", "alpha"]);
        env.ok(&["collection", "add", "grp", "beta"]);
        let cap1 = env.path("cap1");
        env.write_and_capture("alpha", "21", &cap1.join("alpha"));
        env.write_and_capture("beta", "22", &cap1.join("beta"));
        let rpc1 = env.rp_create("grp");
        let out1 = env.path("out1");
        let job1 = env.export(&rpc1, &out1, &[]);
        assert_eq!(job1["Job"]["JobState"], 7, "{job1}");
        assert_eq!(job1["Job"]["JobType"], 206);
        let scratch = env.path("scratch.raw");
        for vm in ["alpha", "beta"] {
            for d in 0..2 {
                let stem = format!("{vm}-disk{d}");
                full_output_matches(
                    &out1
                        .join(vm)
                        .join(format!("Virtual Hard Disks/{stem}.vhdx")),
                    &cap1.join(vm).join(format!("{stem}.raw")),
                    &scratch,
                );
            }
        }
        sha256sum_checks(&out1);
        verify_ok(&env, &out1);

        // Membership changes: gamma joins, beta leaves; alpha keeps being written.
        env.fixture("gamma", "16M", &["--seed", "5"]);
        env.ok(&["collection", "add", "grp", "gamma"]);
        env.ok(&["collection", "remove", "grp", "beta"]);
        let cap2 = env.path("cap2");
        env.write_and_capture("alpha", "31", &cap2.join("alpha"));
        env.write_and_capture("gamma", "32", &cap2.join("gamma"));
        let rpc2 = env.rp_create("grp");
        let out2 = env.path("out2");
        let job2 = env.export(&rpc2, &out2, &["--base", &rpc1]);
        assert_eq!(job2["Job"]["BaseReferencePointGroupId"], rpc1.as_str());

        let m = manifest(&out2);
        assert_eq!(m["export_type"], "differential");
        let member = |name: &str| {
            m["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["element_name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(member("alpha")["export_type"], "differential");
        assert_eq!(member("gamma")["export_type"], "full");
        assert_eq!(member("gamma")["base_reference_point"], Value::Null);
        assert_eq!(m["removed_members"][0]["element_name"], "beta");
        assert!(!out2.join("beta").exists());
        for d in 0..2 {
            let stem = format!("alpha-disk{d}");
            let child = only_file_matching(&out2.join("alpha/Virtual Hard Disks"), &stem);
            assert_eq!(child.extension().unwrap(), "avhdx");
            let parent = out1.join(format!("alpha/Virtual Hard Disks/{stem}.vhdx"));
            assert_eq!(
                libvhdi_sha256(&child, &parent),
                sha256_file(&cap2.join(format!("alpha/{stem}.raw"))),
                "{stem}"
            );
            let stem = format!("gamma-disk{d}");
            full_output_matches(
                &out2.join(format!("gamma/Virtual Hard Disks/{stem}.vhdx")),
                &cap2.join(format!("gamma/{stem}.raw")),
                &scratch,
            );
        }
        sha256sum_checks(&out2);
        verify_ok(&env, &out2);
        let (code, _, err) = refpoint(
            &env.host,
            &[
                "verify",
                "--chain",
                out1.join("alpha").to_str().unwrap(),
                out2.join("alpha").to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "verify --chain: {err}");

        // The differential collection has the content digest of a full export.
        let out3 = env.path("out3");
        env.export(&rpc2, &out3, &[]);
        assert_eq!(manifest(&out3)["content_digest"], m["content_digest"]);
    }

    fn only_file_matching(dir: &Path, stem: &str) -> PathBuf {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(stem))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    #[test]
    fn vm_disks_selects_exactly_the_listed_disks_and_names_unknown_ones() {
        let env = Env::new();
        env.fixture("alpha", "8M", &[]);
        env.fixture("beta", "8M", &["--seed", "2"]);
        env.ok(&["collection", "create", "grp"]);
        env.ok(&["collection", "add", "grp", "alpha"]);
        env.ok(&["collection", "add", "grp", "beta"]);
        let rpc = env.rp_create("grp");
        let vm = env.ok(&["vm", "show", "alpha"]);
        let disk1 = vm["VirtualSystem"]["Disks"][1]["InstanceID"]
            .as_str()
            .unwrap()
            .to_owned();
        let out = env.path("out");

        let job = env.export(&rpc, &out, &["--vm-disks", &format!("alpha={disk1}")]);
        let unknown_vm = env.fails(&[
            "export",
            "--collection-reference-point",
            &rpc,
            "--to",
            env.path("x").to_str().unwrap(),
            "--vm-disks",
            "nosuchvm",
        ]);
        let unknown_disk = env.fails(&[
            "export",
            "--collection-reference-point",
            &rpc,
            "--to",
            env.path("y").to_str().unwrap(),
            "--vm-disks",
            "beta=Microsoft:BAD\\0\\0\\D",
        ]);

        assert_eq!(job["Job"]["ExportedDisks"], serde_json::json!([disk1]));
        assert!(only_file(&out.join("alpha/Virtual Hard Disks")).ends_with("alpha-disk1.vhdx"));
        assert!(entries(&out.join("beta/Virtual Hard Disks")).is_empty());
        assert!(out.join("beta/Virtual Machines").is_dir());
        verify_ok(&env, &out);
        assert!(
            unknown_vm.contains("32773") && unknown_vm.contains("nosuchvm"),
            "{unknown_vm}"
        );
        assert!(
            unknown_disk.contains("32773") && unknown_disk.contains("Microsoft:BAD\\0\\0\\D"),
            "{unknown_disk}"
        );
        assert!(!env.path("x").exists() && !env.path("y").exists());
    }

    #[test]
    fn an_io_error_in_one_member_leaves_no_member_exported_and_no_staging() {
        let env = Env::new();
        for (vm, seed) in [("alpha", "1"), ("beta", "2"), ("gamma", "3")] {
            env.fixture(vm, "16M", &["--seed", seed, "--fill-percent", "60"]);
        }
        env.ok(&["collection", "create", "grp"]);
        for vm in ["alpha", "beta", "gamma"] {
            env.ok(&["collection", "add", "grp", vm]);
        }
        let rpc = env.rp_create("grp");
        // beta's base disk loses its last MiB of payload: its BAT now
        // points past the end of the file.
        let base = env.temp.path().join("host/vms/beta-disks/beta-disk1.vhdx");
        let len = std::fs::metadata(&base).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&base)
            .unwrap()
            .set_len(len - (1 << 20))
            .unwrap();
        let out = env.path("out");

        let (code, json, err) = refpoint(
            &env.host,
            &[
                "export",
                "--collection-reference-point",
                &rpc,
                "--to",
                out.to_str().unwrap(),
            ],
        );

        assert_eq!(code, 1, "{json}");
        assert_eq!(json["Job"]["JobState"], 10, "{json}");
        assert_eq!(json["Job"]["ErrorCode"], 32768, "{json}");
        assert!(
            json["Job"]["ErrorDescription"]
                .as_str()
                .unwrap()
                .contains("beta-disk1.vhdx"),
            "{json} {err}"
        );
        env.ok(&["vm", "list"]);
        assert!(entries(&out).is_empty(), "{:?}", entries(&out));
    }

    #[test]
    fn a_killed_export_process_leaves_no_member_exported_and_no_staging_after_the_next_start() {
        let env = Env::new();
        for (vm, seed) in [("alpha", "1"), ("beta", "2"), ("gamma", "3")] {
            env.fixture(vm, "64M", &["--seed", seed, "--fill-percent", "50"]);
        }
        env.ok(&["collection", "create", "grp"]);
        for vm in ["alpha", "beta", "gamma"] {
            env.ok(&["collection", "add", "grp", vm]);
        }
        let rpc = env.rp_create("grp");
        let mut killed_before_commit = false;
        for attempt in 0..3 {
            let out = env.path(&format!("out{attempt}"));
            let mut child = Command::cargo_bin("refpoint")
                .unwrap()
                .arg("--host")
                .arg(&env.host)
                .args([
                    "--quiet",
                    "export",
                    "--collection-reference-point",
                    &rpc,
                    "--to",
                ])
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            let staged = loop {
                let staging = entries(&out)
                    .iter()
                    .any(|n| n.starts_with(".refpoint-collection-"));
                if staging || started.elapsed() > Duration::from_secs(60) {
                    break staging;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            assert!(staged, "no staging directory appeared");
            run_ok(
                Command::new("kill")
                    .arg("-KILL")
                    .arg(child.id().to_string()),
            );
            child.wait().unwrap();

            // The next start resolves what the killed process left.
            env.ok(&["vm", "list"]);

            let left = entries(&out);
            assert!(
                !left.iter().any(|n| n.starts_with('.')),
                "staging left: {left:?}"
            );
            if left.is_empty() {
                killed_before_commit = true;
                let jobs = env.ok(&["jobs", "list"]);
                assert!(jobs.to_string().contains("interrupted"), "{jobs}");
                break;
            }
            // Killed after the commit point: rolled forward, complete.
            assert_eq!(
                left,
                vec![
                    "SHA256SUMS",
                    "alpha",
                    "beta",
                    "gamma",
                    "refpoint-collection.json"
                ]
            );
            verify_ok(&env, &out);
        }
        assert!(
            killed_before_commit,
            "every kill came after the commit point"
        );
    }
}
