//! Helpers for the `refpoint serve` end-to-end tests: a service child
//! process on a temporary host, stopped by SIGTERM or killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// Longest wait for the service to report that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the service to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Credentials used by the TCP tests.
pub const USER: &str = "backup";
/// Password used by the TCP tests.
pub const PASSWORD: &str = "s3cret:with-colon";

/// A running `refpoint serve`; killed (SIGKILL) when dropped unless stopped.
pub struct Service {
    child: Option<Child>,
    /// Its pid.
    pub pid: u32,
    /// The Unix socket it reported.
    pub socket: PathBuf,
    /// The loopback TCP address it reported, if asked to listen.
    pub listen: Option<String>,
    stderr: mpsc::Receiver<String>,
}

/// Exit status and stderr of a stopped service.
pub struct Stopped {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Service {
    /// Starts `refpoint --host HOST --json serve [--listen 127.0.0.1:0
    /// --credentials USER:PASSWORD]` and waits for its ready line.
    pub fn start(host: &Path, tcp: bool) -> Service {
        let mut cmd = Command::cargo_bin("refpoint").expect("refpoint binary");
        cmd.arg("--host").arg(host).arg("--json").arg("serve");
        if tcp {
            cmd.args(["--listen", "127.0.0.1:0"])
                .env("REFPOINT_SERVE_CREDENTIALS", format!("{USER}:{PASSWORD}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn refpoint serve");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = line_tx.send(line);
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        let mut service = Service {
            child: Some(child),
            pid,
            socket: PathBuf::new(),
            listen: None,
            stderr: err_rx,
        };
        let line = line_rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let ready: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if ready["Socket"].is_null() {
            let stopped = service.kill();
            panic!(
                "refpoint serve did not start: stdout {line:?}, stderr {}",
                stopped.stderr
            );
        }
        service.socket = PathBuf::from(ready["Socket"].as_str().expect("socket"));
        service.listen = ready["Listen"].as_str().map(str::to_owned);
        assert_eq!(ready["ProcessId"].as_u64(), Some(u64::from(pid)));
        service
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn collect(&mut self, status: ExitStatus) -> Stopped {
        self.child = None;
        Stopped {
            status,
            stderr: self
                .stderr
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_default(),
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(self) -> Stopped {
        self.signal("-TERM")
    }

    /// Sends `signal` (`-TERM`, `-INT`) and waits (bounded) for the exit.
    pub fn signal(mut self, signal: &str) -> Stopped {
        let sent = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {} failed", self.pid);
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => self.collect(status),
            None => {
                let stopped = self.kill();
                panic!(
                    "service did not exit after SIGTERM; stderr: {}",
                    stopped.stderr
                );
            }
        }
    }

    /// Kills the service (SIGKILL) and reaps it.
    pub fn kill(&mut self) -> Stopped {
        let status = match self.child.as_mut() {
            Some(child) => {
                let _ = child.kill();
                child.wait().expect("wait")
            }
            None => {
                return Stopped {
                    status: std::process::ExitStatus::default(),
                    stderr: String::new(),
                };
            }
        };
        self.collect(status)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.kill();
        }
    }
}

/// Names of the entries of `dir` (empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
