//! `refpoint serve`: the host service, refpoint's counterpart of vmms.exe.
//!
//! It opens one host ([`Refpoint::open`], which holds the host lock, so a
//! second service or in-process CLI on the same host gets 32777 naming this
//! process), runs every job started through it (a job outlives the request
//! that started it), and serves the WMI provider's operations as CIM
//! operations over HTTP (DMTF DSP0200, CIM-XML DSP0201, namespace
//! `root/virtualization/v2`):
//!
//! * always on the Unix socket `<host>/refpoint.sock` ([`SOCKET_FILE_NAME`]),
//!   created owner-only (mode 0600, bound under a temporary name with umask
//!   0177 and renamed into place, so the path never exists with wider
//!   permissions); the service refuses to start when the host directory is
//!   world-writable. No authentication beyond the file permissions;
//! * optionally on a loopback TCP address (`--listen 127.0.0.1:PORT`, port 0
//!   picks a free port) that requires HTTP Basic credentials
//!   (`--credentials USER:PASSWORD`). Non-loopback addresses are refused:
//!   there is no TLS, so credentials would cross the network in clear text
//!   (use an SSH tunnel to the loopback port instead).
//!
//! Once listening it prints one line to stdout (JSON with `--json`: `Socket`,
//! `Listen`, `ProcessId`). On SIGTERM or SIGINT it stops accepting, finishes
//! in-flight requests, sends `RequestStateChange(Terminate)` to every
//! unfinished job and waits for each to end ([`JOB_STOP_WAIT`], then Kill),
//! removes the socket, releases the host and returns (exit 0).
//!
//! Modules: [`message`] (the CIM-XML codec shared with the client),
//! [`dispatch`] (operations against a [`CimOperations`]), [`http`] (headers,
//! authentication, status codes), [`operations`] (the provider surface).

pub mod dispatch;
pub mod http;
pub mod message;
pub mod operations;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

pub use http::{Credentials, Transport};
pub use message::response::Location;
pub use operations::{CimOpError, CimOperations, MethodOutput, ParamValue};

use crate::error::RefpointError;
use crate::service::{NAMESPACE, Refpoint};

/// File name of the service socket inside the host directory.
pub const SOCKET_FILE_NAME: &str = "refpoint.sock";

/// How long shutdown waits for a terminated job to end before killing it.
pub const JOB_STOP_WAIT: Duration = Duration::from_secs(60);

/// How long shutdown waits for open connections to finish their request.
const CONNECTION_DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The service socket of host `host_dir`.
pub fn socket_path(host_dir: &Path) -> PathBuf {
    host_dir.join(SOCKET_FILE_NAME)
}

/// What `refpoint serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The host directory.
    pub host_dir: PathBuf,
    /// Loopback TCP address to listen on as well (port 0: any free port).
    pub listen: Option<SocketAddr>,
    /// Basic credentials for the TCP listener (required with `listen`).
    pub credentials: Option<Credentials>,
    /// The I/O scheduler's threads and buffer budget (bytes) for the
    /// host's exports.
    pub engine: refpoint_engine::EngineConfig,
}

/// Where the service listens, reported once it is ready.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServeInfo {
    /// The Unix socket.
    #[serde(rename = "Socket")]
    pub socket: PathBuf,
    /// The bound TCP address, if any (the real port when 0 was asked).
    #[serde(rename = "Listen")]
    pub listen: Option<SocketAddr>,
    /// This process.
    #[serde(rename = "ProcessId")]
    pub process_id: u32,
}

/// How the service ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServeSummary {
    /// The signal that stopped it (`SIGTERM`, `SIGINT`).
    #[serde(rename = "Signal")]
    pub signal: String,
    /// InstanceIDs of the jobs it terminated (or killed) on the way out.
    #[serde(rename = "TerminatedJobs")]
    pub terminated_jobs: Vec<String>,
}

/// Why the service could not start or run. Mapped to return codes in
/// [`crate::error`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The host could not be opened (32777 when another process holds it).
    #[error(transparent)]
    Host(#[from] RefpointError),
    /// `--listen` names an address that is not loopback.
    #[error(
        "--listen {addr}: only loopback addresses (127.0.0.0/8, ::1) are served; there is no TLS, use an SSH tunnel for remote access"
    )]
    ListenNotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// `--listen` without `--credentials` or the reverse, or malformed credentials.
    #[error("{0}")]
    Options(String),
    /// The host directory is writable by everyone: the socket would not be private.
    #[error(
        "host directory {dir} is world-writable; the service socket would not be private (chmod o-w it)"
    )]
    DirectoryWorldWritable {
        /// The directory.
        dir: PathBuf,
    },
    /// The socket path exceeds `sun_path`.
    #[error("socket path {path} is longer than {MAX_SOCKET_PATH} bytes")]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
    },
    /// Binding or preparing a listener failed.
    #[error("{what} {target}: {source}")]
    Listen {
        /// What was being done ("bind", "chmod", "rename").
        what: &'static str,
        /// The socket path or address.
        target: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The async runtime or a signal handler could not be set up.
    #[error("{what}: {source}")]
    Runtime {
        /// What failed.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

fn listen_err(
    what: &'static str,
    target: impl std::fmt::Display,
) -> impl FnOnce(std::io::Error) -> ServeError {
    let target = target.to_string();
    move |source| ServeError::Listen {
        what,
        target,
        source,
    }
}

/// Checks the option combination and the loopback rule.
///
/// # Errors
/// [`ServeError::Options`] or [`ServeError::ListenNotLoopback`].
pub fn check_options(opts: &ServeOptions) -> Result<(), ServeError> {
    match (&opts.listen, &opts.credentials) {
        (Some(addr), Some(_)) if !addr.ip().is_loopback() => {
            Err(ServeError::ListenNotLoopback { addr: *addr })
        }
        (Some(_), None) => Err(ServeError::Options(
            "--listen needs --credentials USER:PASSWORD (TCP requires HTTP Basic authentication)"
                .to_owned(),
        )),
        (None, Some(_)) => Err(ServeError::Options(
            "--credentials only applies to a TCP listener; add --listen 127.0.0.1:PORT".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// Binds the owner-only socket at `<host>/refpoint.sock` (see module docs).
fn bind_socket(host_dir: &Path) -> Result<(std::os::unix::net::UnixListener, PathBuf), ServeError> {
    let mode = std::fs::metadata(host_dir)
        .map_err(listen_err("stat", host_dir.display()))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 {
        return Err(ServeError::DirectoryWorldWritable {
            dir: host_dir.to_path_buf(),
        });
    }
    let path = socket_path(host_dir);
    let temp = host_dir.join(format!(".{SOCKET_FILE_NAME}.{}", std::process::id()));
    for p in [&path, &temp] {
        if p.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ServeError::SocketPathTooLong { path: p.clone() });
        }
    }
    // A leftover of a crashed service with our pid; we hold the host lock.
    let _ = std::fs::remove_file(&temp);
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = std::os::unix::net::UnixListener::bind(&temp);
    rustix::process::umask(old);
    let listener = bound.map_err(listen_err("bind", temp.display()))?;
    let prepared = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
        .map_err(listen_err("chmod", temp.display()))
        .and_then(|()| {
            // Replaces a stale socket of a service that died without cleanup.
            std::fs::rename(&temp, &path).map_err(listen_err("rename", path.display()))
        })
        .and_then(|()| {
            listener
                .set_nonblocking(true)
                .map_err(listen_err("set non-blocking", path.display()))
        });
    if let Err(e) = prepared {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok((listener, path))
}

fn bind_tcp(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let listener = std::net::TcpListener::bind(addr).map_err(listen_err("bind", addr))?;
    listener
        .set_nonblocking(true)
        .map_err(listen_err("set non-blocking", addr))?;
    Ok(listener)
}

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

/// Resolves once shutdown has been signalled.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Serves one connection until it closes or shutdown is signalled.
async fn serve_connection<S>(
    io: S,
    state: Arc<http::ServiceState>,
    transport: Transport,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| http::handle(req, Arc::clone(&state), transport));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CONNECTION_DRAIN_WAIT, conn).await;
        }
    }
}

/// Accepts until shutdown, then drains the open connections.
async fn accept_loop(
    listener: Listener,
    state: Arc<http::ServiceState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut stop) => break,
            a = async {
                match &listener {
                    Listener::Unix(l) => l.accept().await.map(|(s, _)| Ok(s)),
                    Listener::Tcp(l) => l.accept().await.map(|(s, _)| Err(s)),
                }
            } => a,
        };
        match accepted {
            Ok(Ok(unix)) => {
                connections.spawn(serve_connection(
                    unix,
                    Arc::clone(&state),
                    Transport::Unix,
                    stop.clone(),
                ));
            }
            Ok(Err(tcp)) => {
                connections.spawn(serve_connection(
                    tcp,
                    Arc::clone(&state),
                    Transport::Tcp,
                    stop.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(CONNECTION_DRAIN_WAIT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Terminates every unfinished job and waits for it to end (staging cleaned
/// by the export); a job still running after [`JOB_STOP_WAIT`] is killed.
/// Returns the InstanceIDs of the jobs it stopped.
pub fn terminate_jobs(rp: &Refpoint) -> Vec<String> {
    let jobs = rp.jobs();
    let running: Vec<String> = jobs
        .list()
        .into_iter()
        .filter(|j| !j.job_state.is_finished())
        .map(|j| j.instance_id)
        .collect();
    for id in &running {
        match jobs.request_state_change(id, 4, None) {
            Ok(code) => tracing::info!(job = %id, code = code.value(), "terminate requested"),
            Err(e) => tracing::warn!(job = %id, error = %e, "terminate failed"),
        }
    }
    for id in &running {
        let finished = |j: &refpoint_jobs::Job| j.job_state.is_finished();
        let done = jobs
            .wait_until(id, JOB_STOP_WAIT, refpoint_jobs::JobState::is_finished)
            .is_ok_and(|j| finished(&j));
        if !done {
            tracing::warn!(job = %id, "job did not stop after Terminate; killing it");
            let _ = jobs.request_state_change(id, 5, None);
            let _ = jobs.wait_until(
                id,
                Duration::from_secs(10),
                refpoint_jobs::JobState::is_finished,
            );
        }
    }
    running
}

/// SIGTERM and SIGINT handlers.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, ServeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime_err = |source| ServeError::Runtime {
            what: "install signal handler",
            source,
        };
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(runtime_err)?,
            int: signal(SignalKind::interrupt()).map_err(runtime_err)?,
        })
    }

    async fn next(&mut self) -> String {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
        .to_owned()
    }
}

/// Runs the service until SIGTERM/SIGINT (see the module docs).
///
/// `make_ops` builds the operations served over the open host (the WMI
/// provider in production); `ready` is called once both listeners are bound.
///
/// # Errors
/// [`ServeError`] when the options are refused, the host cannot be opened
/// (32777 if another process holds it) or a listener cannot be bound.
pub fn run(
    opts: &ServeOptions,
    make_ops: impl FnOnce(Arc<Refpoint>) -> Arc<dyn CimOperations>,
    ready: impl FnOnce(&ServeInfo),
) -> Result<ServeSummary, ServeError> {
    check_options(opts)?;
    let mut rp = Refpoint::open(&opts.host_dir)?;
    *rp.engine_config_mut() = opts.engine.clone();
    let rp = Arc::new(rp);
    let (unix, socket) = bind_socket(&opts.host_dir)?;
    let result = serve(opts, &rp, make_ops(Arc::clone(&rp)), unix, &socket, ready);
    let _ = std::fs::remove_file(&socket);
    result
}

fn serve(
    opts: &ServeOptions,
    rp: &Arc<Refpoint>,
    ops: Arc<dyn CimOperations>,
    unix: std::os::unix::net::UnixListener,
    socket: &Path,
    ready: impl FnOnce(&ServeInfo),
) -> Result<ServeSummary, ServeError> {
    let tcp = opts.listen.map(bind_tcp).transpose()?;
    let listen = match &tcp {
        Some(l) => Some(l.local_addr().map_err(listen_err("local address", "tcp"))?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("refpoint-serve")
        .build()
        .map_err(|source| ServeError::Runtime {
            what: "start the async runtime",
            source,
        })?;
    let state = Arc::new(http::ServiceState {
        ops,
        location: Location {
            host: rp.host_name().to_owned(),
            namespace: NAMESPACE.to_owned(),
        },
        credentials: opts.credentials.clone(),
    });
    runtime.block_on(async {
        let unix = tokio::net::UnixListener::from_std(unix)
            .map_err(listen_err("register", socket.display()))?;
        let tcp = tcp
            .map(tokio::net::TcpListener::from_std)
            .transpose()
            .map_err(listen_err("register", "tcp"))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = vec![tokio::spawn(accept_loop(
            Listener::Unix(unix),
            Arc::clone(&state),
            stop_rx.clone(),
        ))];
        if let Some(l) = tcp {
            loops.push(tokio::spawn(accept_loop(
                Listener::Tcp(l),
                Arc::clone(&state),
                stop_rx.clone(),
            )));
        }
        // Signal handlers are installed before anyone is told we are ready.
        let mut signals = Signals::install()?;
        ready(&ServeInfo {
            socket: socket.to_path_buf(),
            listen,
            process_id: std::process::id(),
        });
        let signal = signals.next().await;
        tracing::info!(%signal, "shutting down");
        let _ = stop_tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        let rp = Arc::clone(rp);
        let terminated = tokio::task::spawn_blocking(move || terminate_jobs(&rp))
            .await
            .unwrap_or_default();
        Ok(ServeSummary {
            signal,
            terminated_jobs: terminated,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(listen: Option<&str>, creds: Option<&str>) -> ServeOptions {
        ServeOptions {
            host_dir: PathBuf::from("/nonexistent"),
            listen: listen.map(|a| a.parse().expect("addr")),
            credentials: creds.map(|c| Credentials::parse(c).expect("creds")),
            engine: refpoint_engine::EngineConfig::default(),
        }
    }

    #[test]
    fn non_loopback_listen_is_refused() {
        let err = check_options(&opts(Some("0.0.0.0:5988"), Some("u:p"))).expect_err("refused");

        assert!(matches!(err, ServeError::ListenNotLoopback { .. }));
    }

    #[test]
    fn listen_and_credentials_go_together() {
        assert!(matches!(
            check_options(&opts(Some("127.0.0.1:0"), None)),
            Err(ServeError::Options(_))
        ));
        assert!(matches!(
            check_options(&opts(None, Some("u:p"))),
            Err(ServeError::Options(_))
        ));
        assert!(check_options(&opts(Some("[::1]:0"), Some("u:p"))).is_ok());
        assert!(check_options(&opts(None, None)).is_ok());
    }

    #[test]
    fn socket_is_owner_only_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(socket_path(dir.path()), b"stale").expect("stale");

        let (_listener, path) = bind_socket(dir.path()).expect("bind");

        let meta = std::fs::metadata(&path).expect("stat");
        use std::os::unix::fs::FileTypeExt;
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }

    #[test]
    fn world_writable_host_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");

        let err = bind_socket(dir.path()).expect_err("refused");

        assert!(matches!(err, ServeError::DirectoryWorldWritable { .. }));
        assert!(!socket_path(dir.path()).exists());
    }
}
