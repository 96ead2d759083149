//! Helpers shared by the end-to-end tests: run the `refpoint` binary, the
//! qemu oracles, and hash files.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `refpoint --host HOST ARGS… --json`, returning (exit code, parsed stdout, stderr).
pub fn refpoint(host: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::cargo_bin("refpoint")
        .expect("refpoint binary")
        .arg("--host")
        .arg(host)
        .arg("--json")
        .args(args)
        .output()
        .expect("run refpoint");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// SHA-256 of a file's bytes, hex.
pub fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// SHA-256 of the raw content of a VHDX as qemu-img sees it
/// (`qemu-img convert -O raw` into a sparse scratch file).
pub fn qemu_raw_sha256(vhdx: &Path, scratch: &Path) -> String {
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "vhdx", "-O", "raw"])
            .arg(vhdx)
            .arg(scratch),
    );
    let digest = sha256_file(scratch);
    std::fs::remove_file(scratch).expect("remove scratch");
    digest
}

/// A fresh host with a fixture VM; returns (temp dir, host dir, fixture JSON).
pub fn host_with_fixture(
    name: &str,
    disks: &str,
    size: &str,
    seed: &str,
) -> (tempfile::TempDir, PathBuf, Value) {
    let temp = tempfile::tempdir().expect("tempdir");
    let host = temp.path().join("host");
    let (code, _, err) = refpoint(&host, &["host", "init", host.to_str().expect("utf8")]);
    assert_eq!(code, 0, "host init: {err}");
    let (code, fixture, err) = refpoint(
        &host,
        &[
            "fixture", "--name", name, "--disks", disks, "--size", size, "--seed", seed,
        ],
    );
    assert_eq!(code, 0, "fixture: {err}");
    (temp, host, fixture)
}

/// Gunzips a specimen from `fixtures/specimens/` into `dir` under `name`.
pub fn specimen(gz_name: &str, dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/specimens")
        .join(gz_name);
    let dst = dir.join(name);
    let out = run_ok(Command::new("gzip").arg("-dc").arg(&src));
    std::fs::write(&dst, out.stdout).expect("write specimen");
    dst
}
