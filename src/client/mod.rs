//! Client mode: the CLI talks to a running `refpoint serve` for its host over
//! the service's Unix socket, with the same CIM-XML codec the service uses
//! ([`crate::serve::message`]), and runs in-process when no service runs.
//!
//! Detection ([`ServiceClient::connect`]): the socket `<host>/refpoint.sock`
//! exists **and** accepts a connection. A socket file nobody listens on (a
//! service that was killed) counts as no service.
//!
//! Every operation is one HTTP/1.1 `POST /cimom` on a fresh connection,
//! bounded by [`REQUEST_TIMEOUT`], so the CLI never hangs on a stuck service.

mod json;
mod ops;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

pub use json::instance_to_json;
pub use ops::{
    FINISHED_JOB_STATES, JOB_POLL_INTERVAL, find_singleton, job_state,
    resolve_reference_point_path, wait_for_job,
};

use crate::serve::message::MessageError;
use crate::serve::message::request::{IntrinsicOp, encode_intrinsic, encode_method_call};
use crate::serve::message::response::{IReturnValue, ResponseBody, parse_response};
use crate::serve::operations::{CimOpError, MethodOutput, ParamValue};
use crate::serve::socket_path;
use crate::service::NAMESPACE;
use crate::wmi::CimOperations;
use refpoint_cim::{Instance, ObjectPath};

/// Upper bound of one operation, connection to last response byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest response body accepted (bytes).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Why a call to the service failed. Mapped to return codes in
/// [`crate::error`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected to (service gone, permission denied).
    #[error("cannot reach the refpoint service at {socket}: {source}")]
    Unreachable {
        /// The socket.
        socket: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No complete response within [`REQUEST_TIMEOUT`].
    #[error("the refpoint service at {socket} did not answer {method} within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// The CIM method.
        method: String,
    },
    /// HTTP-level failure (connection broken, non-200 status).
    #[error("HTTP exchange with the refpoint service failed for {method}: {detail}")]
    Http {
        /// The CIM method.
        method: String,
        /// HTTP status, if a response came.
        status: Option<u16>,
        /// `CIMError` header, if any.
        cim_error: Option<String>,
        /// What happened.
        detail: String,
    },
    /// The response is not a valid CIM-XML response to the request.
    #[error("invalid response to {method}: {source}")]
    Protocol {
        /// The CIM method.
        method: String,
        /// The codec error.
        source: MessageError,
    },
    /// The operation failed on the service (`ERROR` element).
    #[error("{method}: {source}")]
    Cim {
        /// The CIM method.
        method: String,
        /// The CIM status and description.
        source: CimOpError,
    },
}

impl ClientError {
    /// The CIM operation error, when the service answered with one.
    pub fn cim_status(&self) -> Option<&CimOpError> {
        match self {
            ClientError::Cim { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A connection point to a running `refpoint serve`.
#[derive(Debug)]
pub struct ServiceClient {
    socket: PathBuf,
    runtime: tokio::runtime::Runtime,
    next_id: AtomicU64,
}

/// %-encodes what may not appear raw in a header value (DSP0200 §6.3.x
/// two-step encoding: UTF-8, then `%XX` for controls, non-ASCII and `%`).
fn header_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'%' || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ServiceClient {
    /// The service of host `host_dir`, if one runs: `Ok(None)` when the
    /// socket does not exist or refuses connections (stale socket).
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when the socket exists but cannot be
    /// used for another reason (e.g. permission denied: the service belongs
    /// to another user).
    pub fn connect(host_dir: &Path) -> Result<Option<ServiceClient>, ClientError> {
        let socket = socket_path(host_dir);
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(source) => return Err(ClientError::Unreachable { socket, source }),
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ClientError::Unreachable {
                socket: socket.clone(),
                source,
            })?;
        Ok(Some(ServiceClient {
            socket,
            runtime,
            next_id: AtomicU64::new(1001),
        }))
    }

    /// The service socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn post(
        socket: &Path,
        method: &str,
        cim_object: &str,
        body: String,
    ) -> Result<Bytes, ClientError> {
        let http_err =
            |status: Option<u16>, cim_error: Option<String>, detail: String| ClientError::Http {
                method: method.to_owned(),
                status,
                cim_error,
                detail,
            };
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Unreachable {
                socket: socket.to_path_buf(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http_err(None, None, e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::post("/cimom")
            .header("host", "localhost")
            .header("content-type", "application/xml; charset=\"utf-8\"")
            .header("CIMProtocolVersion", "1.0")
            .header("CIMOperation", "MethodCall")
            .header("CIMMethod", header_encode(method))
            .header("CIMObject", header_encode(cim_object))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http_err(None, None, e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http_err(None, None, e.to_string()))?;
        let status = response.status();
        let cim_error = response
            .headers()
            .get("CIMError")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| http_err(Some(status.as_u16()), cim_error.clone(), e.to_string()))?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            return Err(http_err(
                Some(status.as_u16()),
                cim_error,
                format!("HTTP {status}: {text}"),
            ));
        }
        Ok(bytes)
    }

    fn exchange(
        &self,
        method: &str,
        cim_object: &str,
        body: String,
    ) -> Result<ResponseBody, ClientError> {
        let fut = Self::post(&self.socket, method, cim_object, body);
        let bytes = self
            .runtime
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, fut).await })
            .map_err(|_| ClientError::Timeout {
                socket: self.socket.clone(),
                method: method.to_owned(),
            })??;
        let protocol = |source| ClientError::Protocol {
            method: method.to_owned(),
            source,
        };
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
            protocol(MessageError::NotWellFormed {
                offset: e.utf8_error().valid_up_to(),
                detail: "response is not UTF-8".to_owned(),
            })
        })?;
        Ok(parse_response(&text).map_err(protocol)?.body)
    }

    fn message_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    fn intrinsic(&self, op: &IntrinsicOp) -> Result<IReturnValue, ClientError> {
        let method = op.method_name();
        let ns = NAMESPACE.replace('\\', "/");
        let body = encode_intrinsic(&self.message_id(), NAMESPACE, op);
        match self.exchange(method, &ns, body)? {
            ResponseBody::Intrinsic { method: m, result } if m == method => {
                result.map_err(|source| ClientError::Cim {
                    method: method.to_owned(),
                    source,
                })
            }
            other => Err(ClientError::Protocol {
                method: method.to_owned(),
                source: MessageError::NotValid {
                    offset: 0,
                    detail: format!("expected IMETHODRESPONSE NAME={method}, got {other:?}"),
                },
            }),
        }
    }

    fn unexpected(method: &str, got: &IReturnValue) -> ClientError {
        ClientError::Protocol {
            method: method.to_owned(),
            source: MessageError::NotValid {
                offset: 0,
                detail: format!("unexpected IRETURNVALUE content {got:?}"),
            },
        }
    }

    /// `InvokeMethod`: `method` on `target` (instance path, or class path when
    /// it has no keys).
    ///
    /// # Errors
    /// [`ClientError`]; a failed method is `Ok` with a non-zero `ReturnValue`.
    pub fn invoke(
        &self,
        target: &ObjectPath,
        method: &str,
        params: &[(String, ParamValue)],
    ) -> Result<MethodOutput, ClientError> {
        let ns = target.namespace.as_deref().unwrap_or(NAMESPACE);
        let object = if target.keys.is_empty() {
            format!("{}:{}", ns.replace('\\', "/"), target.class_name)
        } else {
            format!("{}:{}", ns.replace('\\', "/"), target.relative())
        };
        let body = encode_method_call(&self.message_id(), NAMESPACE, target, method, params);
        match self.exchange(method, &object, body)? {
            ResponseBody::Extrinsic { method: m, result } if m == method => {
                result.map_err(|source| ClientError::Cim {
                    method: method.to_owned(),
                    source,
                })
            }
            other => Err(ClientError::Protocol {
                method: method.to_owned(),
                source: MessageError::NotValid {
                    offset: 0,
                    detail: format!("expected METHODRESPONSE NAME={method}, got {other:?}"),
                },
            }),
        }
    }

    /// `GetInstance`.
    ///
    /// # Errors
    /// [`ClientError`] (`CIM_ERR_NOT_FOUND` inside [`ClientError::Cim`]).
    pub fn get(&self, path: &ObjectPath) -> Result<Instance, ClientError> {
        let op = IntrinsicOp::GetInstance {
            instance_name: path.relative(),
            options: Default::default(),
        };
        match self.intrinsic(&op)? {
            IReturnValue::Instance(i) => Ok(i),
            other => Err(Self::unexpected("GetInstance", &other)),
        }
    }

    /// `EnumerateInstances`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn enumerate(&self, class: &str) -> Result<Vec<(ObjectPath, Instance)>, ClientError> {
        let op = IntrinsicOp::EnumerateInstances {
            class_name: class.to_owned(),
            options: Default::default(),
        };
        match self.intrinsic(&op)? {
            IReturnValue::NamedInstances(items) => Ok(items),
            IReturnValue::Empty => Ok(Vec::new()),
            other => Err(Self::unexpected("EnumerateInstances", &other)),
        }
    }

    /// `EnumerateInstanceNames`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn enumerate_names(&self, class: &str) -> Result<Vec<ObjectPath>, ClientError> {
        let op = IntrinsicOp::EnumerateInstanceNames {
            class_name: class.to_owned(),
        };
        match self.intrinsic(&op)? {
            IReturnValue::InstanceNames(items) => Ok(items),
            IReturnValue::Empty => Ok(Vec::new()),
            other => Err(Self::unexpected("EnumerateInstanceNames", &other)),
        }
    }

    /// `Associators`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn associators_of(
        &self,
        path: &ObjectPath,
        filter: crate::serve::message::request::AssociationFilter,
    ) -> Result<Vec<(ObjectPath, Instance)>, ClientError> {
        let op = IntrinsicOp::Associators {
            object_name: path.relative(),
            filter,
            options: Default::default(),
        };
        match self.intrinsic(&op)? {
            IReturnValue::ObjectsWithPath(items) => Ok(items),
            IReturnValue::Empty => Ok(Vec::new()),
            other => Err(Self::unexpected("Associators", &other)),
        }
    }

    /// `References`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn references_of(
        &self,
        path: &ObjectPath,
        result_class: Option<&str>,
        role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, ClientError> {
        let op = IntrinsicOp::References {
            object_name: path.relative(),
            filter: crate::serve::message::request::AssociationFilter {
                result_class: result_class.map(str::to_owned),
                role: role.map(str::to_owned),
                ..Default::default()
            },
            options: Default::default(),
        };
        match self.intrinsic(&op)? {
            IReturnValue::ObjectsWithPath(items) => Ok(items),
            IReturnValue::Empty => Ok(Vec::new()),
            other => Err(Self::unexpected("References", &other)),
        }
    }
}

/// A transport failure seen through the provider surface: `CIM_ERR_FAILED`
/// naming the socket and what happened; the service's own `ERROR` is kept.
fn as_op_error(e: ClientError) -> CimOpError {
    match e {
        ClientError::Cim { source, .. } => source,
        other => CimOpError::new(CimOpError::FAILED, other.to_string()),
    }
}

/// The full operation surface, remotely: `refpoint wmi` and `refpoint jobs`
/// run their command logic unchanged against a service. Transport failures
/// are `CIM_ERR_FAILED` naming the socket; the service's own `ERROR`s are kept.
impl CimOperations for ServiceClient {
    fn invoke_method(
        &self,
        target: &ObjectPath,
        method: &str,
        params: &[(String, ParamValue)],
    ) -> Result<MethodOutput, CimOpError> {
        self.invoke(target, method, params).map_err(as_op_error)
    }

    fn enumerate_instances(&self, class: &str) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        self.enumerate(class).map_err(as_op_error)
    }

    fn enumerate_instance_names(&self, class: &str) -> Result<Vec<ObjectPath>, CimOpError> {
        self.enumerate_names(class).map_err(as_op_error)
    }

    fn get_instance(&self, path: &ObjectPath) -> Result<Instance, CimOpError> {
        self.get(path).map_err(as_op_error)
    }

    fn associators(
        &self,
        path: &ObjectPath,
        assoc_class: Option<&str>,
        result_class: Option<&str>,
        role: Option<&str>,
        result_role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        let filter = crate::serve::message::request::AssociationFilter {
            assoc_class: assoc_class.map(str::to_owned),
            result_class: result_class.map(str::to_owned),
            role: role.map(str::to_owned),
            result_role: result_role.map(str::to_owned),
        };
        self.associators_of(path, filter).map_err(as_op_error)
    }

    fn references(
        &self,
        path: &ObjectPath,
        result_class: Option<&str>,
        role: Option<&str>,
    ) -> Result<Vec<(ObjectPath, Instance)>, CimOpError> {
        self.references_of(path, result_class, role)
            .map_err(as_op_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_encoding_escapes_percent_controls_and_non_ascii() {
        assert_eq!(
            header_encode("root/v2:C.K=\"a%b\u{e9}\n\""),
            "root/v2:C.K=\"a%25b%C3%A9%0A\""
        );
        assert_eq!(
            crate::serve::http::percent_decode(&header_encode("x:C.K=\"%\u{e9}\"")),
            "x:C.K=\"%\u{e9}\""
        );
    }

    #[test]
    fn no_socket_means_no_service() {
        let dir = tempfile::tempdir().expect("tempdir");

        assert!(
            ServiceClient::connect(dir.path())
                .expect("connect")
                .is_none()
        );
    }

    #[test]
    fn stale_socket_nobody_listens_on_means_no_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).expect("bind"));

        assert!(
            ServiceClient::connect(dir.path())
                .expect("connect")
                .is_none()
        );
    }
}
