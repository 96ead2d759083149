//! The host lock across processes. This test binary runs without the libtest
//! harness: started with `REFPOINT_TEST_HOLD_LOCK=<dir>` it is the child
//! that opens the host, prints `LOCKED <pid>` and holds the lock until its
//! stdin closes; otherwise it is the parent running the scenario.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use refpoint_core::{ErrorKind, Host, HostError};

const CHILD_ENV: &str = "REFPOINT_TEST_HOLD_LOCK";

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let host = Host::open(std::path::Path::new(&dir)).expect("child opens the host");
        println!("LOCKED {}", std::process::id());
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        drop(host);
        return;
    }
    second_process_gets_locked_with_the_holders_pid();
    println!("test second_process_gets_locked_with_the_holders_pid ... ok");
}

fn second_process_gets_locked_with_the_holders_pid() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Host::init(tmp.path()).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("LOCKED {}", child.id()),
        "child did not lock"
    );

    let err = Host::open(tmp.path()).unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(
        matches!(err, HostError::Locked { pid: Some(p), .. } if p == child.id()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("process {}", child.id())),
        "{err}"
    );

    drop(child.stdin.take()); // the child exits, releasing the lock
    assert!(child.wait().unwrap().success());
    Host::open(tmp.path()).expect("lock released when the holder exits");
}
