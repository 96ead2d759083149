//! The HTTP side of DSP0200: one `POST` per operation, the CIM-XML extension
//! headers, HTTP Basic authentication on TCP, and the mapping of message
//! errors to HTTP status + `CIMError` header.
//!
//! Rules applied to every request, in order:
//!
//! 1. TCP only: `Authorization: Basic` must carry the configured credentials,
//!    else `401 Unauthorized` with `WWW-Authenticate: Basic realm="refpoint"`
//!    (the Unix socket is owner-only and needs none).
//! 2. `M-POST` → `501 Not Implemented` (DSP0200 clients then retry with
//!    `POST`); any method other than `POST` → `405` with `Allow: POST`.
//! 3. `CIMOperation` must be `MethodCall`, else `400` with
//!    `CIMError: unsupported-operation`; a `CIMProtocolVersion` other than 1.x
//!    → `501` `unsupported-protocol-version`.
//! 4. The body is at most [`MAX_BODY_BYTES`] (`413` otherwise) and UTF-8
//!    (`400` `request-not-well-formed` otherwise); message errors map as in
//!    [`MessageError::http_status`].
//! 5. `CIMMethod` must be present and name the called method, and
//!    `CIMObject` must be present and name the namespace (intrinsic) or the
//!    namespace and class of the target (extrinsic), both compared after
//!    %-decoding and case-insensitively; else `400` `header-mismatch`.
//! 6. The operation runs on a blocking thread; the response is `200` with
//!    `Content-Type: application/xml; charset="utf-8"` and
//!    `CIMOperation: MethodResponse`, operation failures being `ERROR`
//!    elements in the body. Responses are not chunked, so the trailer
//!    headers `CIMStatusCode`/`CIMStatusCodeDescription` are not used.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::dispatch::dispatch;
use super::message::MessageError;
use super::message::normalize_namespace;
use super::message::request::{Call, parse_request};
use super::message::response::Location;
use super::operations::CimOperations;

/// Largest request body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// HTTP Basic credentials required on the TCP listener.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Parses `USER:PASSWORD` (split at the first `:`; both non-empty).
    ///
    /// # Errors
    /// A message saying what is missing (never echoing the password).
    pub fn parse(text: &str) -> Result<Credentials, String> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(
                "credentials must be USER:PASSWORD with a non-empty user and password".to_owned(),
            ),
        }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// True when `header` (an `Authorization` value) carries exactly these
    /// credentials with the Basic scheme. The comparison does not stop at
    /// the first differing byte.
    pub fn accepts(&self, header: &str) -> bool {
        let Some((scheme, token)) = header.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", self.user, self.password).into_bytes();
        let mut diff = u8::from(decoded.len() != expected.len());
        for (i, e) in expected.iter().enumerate() {
            diff |= e ^ decoded.get(i).copied().unwrap_or(!e);
        }
        diff == 0
    }
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The owner-only Unix socket.
    Unix,
    /// The loopback TCP port (Basic credentials required).
    Tcp,
}

/// Everything a request handler needs.
pub struct ServiceState {
    /// The operations served.
    pub ops: Arc<dyn CimOperations>,
    /// Host and namespace of paths in responses.
    pub location: Location,
    /// Credentials required on TCP.
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceState")
            .field("location", &self.location)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

type HttpResponse = Response<Full<Bytes>>;

fn plain(status: StatusCode, headers: &[(&str, &str)], text: String) -> HttpResponse {
    let mut rsp = Response::new(Full::new(Bytes::from(text)));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, value);
        }
    }
    rsp
}

fn cim_error(status: StatusCode, cim_error: &str, detail: String) -> HttpResponse {
    tracing::info!(status = status.as_u16(), cim_error, %detail, "request rejected");
    plain(
        status,
        &[("CIMOperation", "MethodResponse"), ("CIMError", cim_error)],
        format!("{cim_error}: {detail}\n"),
    )
}

fn message_error(e: &MessageError) -> HttpResponse {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    cim_error(status, e.cim_error_header(), e.to_string())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// %-decodes a DSP0200 header value (invalid escapes are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks the `CIMMethod`/`CIMObject` headers against the decoded call.
fn check_headers(headers: &HeaderMap, method: &str, call: &Call) -> Result<(), String> {
    let cim_method = header(headers, "CIMMethod").ok_or("CIMMethod header missing")?;
    if !percent_decode(cim_method).eq_ignore_ascii_case(method) {
        return Err(format!(
            "CIMMethod header {cim_method:?} does not match method {method}"
        ));
    }
    let cim_object =
        percent_decode(header(headers, "CIMObject").ok_or("CIMObject header missing")?);
    let (ns, object) = match cim_object.split_once(':') {
        Some((ns, rest)) => (ns, Some(rest)),
        None => (cim_object.as_str(), None),
    };
    let (body_ns, body_class) = match call {
        Call::Intrinsic { namespace, .. } => (namespace.as_str(), None),
        Call::Extrinsic { target, .. } => (
            target.namespace.as_deref().unwrap_or(""),
            Some(target.class_name.as_str()),
        ),
    };
    if normalize_namespace(ns) != normalize_namespace(body_ns) {
        return Err(format!(
            "CIMObject header {cim_object:?} names another namespace than {body_ns}"
        ));
    }
    if let Some(class) = body_class {
        let header_class = object
            .map(|o| o.split(['.', '=']).next().unwrap_or("").trim())
            .unwrap_or("");
        if !header_class.eq_ignore_ascii_case(class) {
            return Err(format!(
                "CIMObject header {cim_object:?} does not name class {class}"
            ));
        }
    }
    Ok(())
}

/// Handles one HTTP request (see the module docs for the rules).
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<ServiceState>,
    transport: Transport,
) -> Result<HttpResponse, Infallible> {
    if transport == Transport::Tcp
        && let Some(creds) = &state.credentials
        && !header(req.headers(), "authorization").is_some_and(|h| creds.accepts(h))
    {
        tracing::info!("401: missing or wrong credentials on TCP");
        return Ok(plain(
            StatusCode::UNAUTHORIZED,
            &[("WWW-Authenticate", "Basic realm=\"refpoint\"")],
            "authentication required\n".to_owned(),
        ));
    }
    if req.method().as_str() == "M-POST" {
        return Ok(plain(
            StatusCode::NOT_IMPLEMENTED,
            &[],
            "M-POST is not supported; use POST\n".to_owned(),
        ));
    }
    if req.method() != Method::POST {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            &[("Allow", "POST")],
            "CIM operations are POSTed\n".to_owned(),
        ));
    }
    let headers = req.headers().clone();
    match header(&headers, "CIMOperation") {
        Some(op) if op.eq_ignore_ascii_case("MethodCall") => {}
        other => {
            return Ok(cim_error(
                StatusCode::BAD_REQUEST,
                "unsupported-operation",
                format!("CIMOperation header is {other:?}, expected MethodCall"),
            ));
        }
    }
    if let Some(v) = header(&headers, "CIMProtocolVersion")
        && !v.starts_with("1.")
        && v != "1"
    {
        return Ok(message_error(&MessageError::UnsupportedProtocolVersion {
            found: v.to_owned(),
        }));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &[],
                format!("request body rejected (limit {MAX_BODY_BYTES} bytes): {e}\n"),
            ));
        }
    };
    let text = match String::from_utf8(body.to_vec()) {
        Ok(t) => t,
        Err(e) => {
            return Ok(message_error(&MessageError::NotWellFormed {
                offset: e.utf8_error().valid_up_to(),
                detail: "body is not UTF-8".to_owned(),
            }));
        }
    };
    let request = match parse_request(&text) {
        Ok(r) => r,
        Err(e) => return Ok(message_error(&e)),
    };
    if let Err(detail) = check_headers(&headers, &request.method, &request.call) {
        return Ok(cim_error(
            StatusCode::BAD_REQUEST,
            "header-mismatch",
            detail,
        ));
    }
    tracing::debug!(method = %request.method, "operation");
    let worker_state = Arc::clone(&state);
    let body = tokio::task::spawn_blocking(move || {
        dispatch(worker_state.ops.as_ref(), &request, &worker_state.location)
    })
    .await;
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(%e, "operation panicked");
            return Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &[],
                "the operation failed unexpectedly\n".to_owned(),
            ));
        }
    };
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    let h = rsp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/xml; charset=\"utf-8\""),
    );
    h.insert("CIMOperation", HeaderValue::from_static("MethodResponse"));
    Ok(rsp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn credentials_accept_exactly_the_configured_pair() {
        let c = Credentials::parse("backup:s3cr:et").expect("parse");

        assert!(c.accepts(&basic("backup:s3cr:et")));
        assert!(c.accepts(&format!(
            "basic  {}",
            basic("backup:s3cr:et").trim_start_matches("Basic ")
        )));
        assert!(!c.accepts(&basic("backup:s3cr:eT")));
        assert!(!c.accepts(&basic("backup:s3cr:et2")));
        assert!(!c.accepts(&basic("backup:")));
        assert!(!c.accepts("Bearer abc"));
        assert!(!c.accepts("Basic !!!"));
    }

    #[test]
    fn credentials_need_user_and_password() {
        assert!(Credentials::parse("user").is_err());
        assert!(Credentials::parse(":pw").is_err());
        assert!(Credentials::parse("user:").is_err());
        assert!(!format!("{:?}", Credentials::parse("u:hunter2").expect("ok")).contains("hunter2"));
    }

    #[test]
    fn percent_decoding_handles_dsp0200_escapes() {
        assert_eq!(
            percent_decode("root%2Fvirtualization%2Fv2"),
            "root/virtualization/v2"
        );
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%22x%22"), "\"x\"");
    }

    #[test]
    fn header_check_compares_method_namespace_and_class() {
        let mut target =
            refpoint_cim::ObjectPath::new("Msvm_ConcreteJob").with_key("InstanceID", "J");
        target.namespace = Some(r"root\virtualization\v2".to_owned());
        let call = Call::Extrinsic {
            target,
            target_is_class: false,
            params: Ok(Vec::new()),
        };
        let mut h = HeaderMap::new();
        h.insert("CIMMethod", HeaderValue::from_static("RequestStateChange"));
        h.insert(
            "CIMObject",
            HeaderValue::from_static("root/virtualization/v2:Msvm_ConcreteJob.InstanceID=%22J%22"),
        );

        assert_eq!(check_headers(&h, "RequestStateChange", &call), Ok(()));
        assert!(check_headers(&h, "GetError", &call).is_err());
        h.insert(
            "CIMObject",
            HeaderValue::from_static("root/cimv2:Msvm_ConcreteJob.InstanceID=\"J\""),
        );
        assert!(check_headers(&h, "RequestStateChange", &call).is_err());
        h.insert(
            "CIMObject",
            HeaderValue::from_static("root/virtualization/v2:Msvm_Other.InstanceID=\"J\""),
        );
        assert!(check_headers(&h, "RequestStateChange", &call).is_err());
        h.remove("CIMObject");
        assert!(check_headers(&h, "RequestStateChange", &call).is_err());
    }
}
