//! The crate-boundary error of refpoint's method surface: a CIM return code
//! (Table A of `Msvm_VirtualSystemReferencePointService`) and a message that
//! names the file, offset, field or object involved.
//!
//! Every engine error reaches a caller through [`RefpointError`]; the
//! conversions below are the **one place** where errors of the lower crates
//! are mapped to return codes. The table is rendered in `docs/return-codes.md`.
//!
//! | source error | code |
//! |---|---|
//! | VHDX corrupt / unsupported / chain broken / I/O | 32768 Failed |
//! | VHDX file not found | 32768 Failed (32779 for `GetVirtualDiskChanges`) |
//! | permission denied (EACCES/EPERM) anywhere | 32769 Access Denied |
//! | host not initialised, host locked by another process | 32777 System is not available |
//! | unknown VM / snapshot / reference point, bad path, relative ExportDirectory, disk not in RP | 32773 Invalid parameter |
//! | base of another VM, not older, never exported; base export not matching; restore folders not chaining | 32773 Invalid parameter |
//! | embedded instance of the wrong class, property of the wrong CIM type | 32776 Incorrect data type |
//! | snapshot not of recovery type, RP without associated data, frozen layer whose DataWriteGuid changed, change tracking lost (strict) | 32775 Invalid state |
//! | target being written by another job; reference point pinned by a running export | 32774 System is in use |
//! | `GetVirtualDiskChanges` `Path` does not exist | 32779 File not found |
//! | export folder already present at the target | 32773 Invalid parameter |
//! | buffer pool not allocatable | 32778 Out of memory |
//! | feature not available (log-based RP type 1) | 32770 Not supported |
//! | `refpoint serve`: host held by another process; client: service socket unreachable | 32777 System is not available |
//! | `refpoint serve`: host directory world-writable | 32769 Access Denied |
//! | `refpoint serve`: non-loopback `--listen`, bad option combination, socket path too long | 32773 Invalid parameter |
//! | `refpoint serve`: TCP address in use | 32774 System is in use |
//! | client: no answer within the request timeout; a collection freeze waiting longer than its lock timeout for a writer | 32772 Timeout |
//! | client: `CIM_ERR_INVALID_PARAMETER`/`NOT_FOUND`/`INVALID_CLASS`/`INVALID_NAMESPACE` | 32773 Invalid parameter |
//! | client: `CIM_ERR_NOT_SUPPORTED`/`METHOD_NOT_FOUND` | 32770 Not supported |
//! | client: other CIM errors, HTTP or protocol failures; serve: bind/runtime failures | 32768 Failed |

use std::fmt;

pub use refpoint_cim::codes::ReturnCodeA as ReturnCode;

/// An error with its CIM return code (Table A) and a message naming what
/// failed (file, offset, field, object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefpointError {
    code: ReturnCode,
    message: String,
}

impl RefpointError {
    /// An error with `code` and `message`.
    pub fn new(code: ReturnCode, message: impl Into<String>) -> Self {
        RefpointError {
            code,
            message: message.into(),
        }
    }

    /// The CIM return code (Table A).
    pub fn code(&self) -> ReturnCode {
        self.code
    }

    /// The return code as the `uint32` a WMI method returns.
    pub fn return_value(&self) -> u32 {
        self.code.value()
    }

    /// The message (names the file, offset, field or object).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The code of Table B (CIM-style, hyperv-api.md §5) for methods
    /// documented with it (`CreateSnapshot`, `DestroySnapshot`,
    /// `ConvertToReferencePoint`, `CreateReferencePoint`): 32770 → 1 Not
    /// Supported; 32772 → 3 Timeout; 32773 → 4 Invalid Parameter; 32775 → 5
    /// Invalid State; 32776 → 6 Invalid Type; every other failure (32768,
    /// 32769, 32771, 32774, 32777, 32778, 32779) → 2 Failed; 0 and 4096 keep
    /// their values.
    pub fn table_b_code(&self) -> refpoint_cim::codes::ReturnCodeB {
        use refpoint_cim::codes::ReturnCodeB as B;
        match self.code {
            ReturnCode::Completed => B::Completed,
            ReturnCode::JobStarted => B::JobStarted,
            ReturnCode::NotSupported => B::NotSupported,
            ReturnCode::Timeout => B::Timeout,
            ReturnCode::InvalidParameter => B::InvalidParameter,
            ReturnCode::InvalidState => B::InvalidState,
            ReturnCode::IncorrectDataType => B::InvalidType,
            _ => B::Failed,
        }
    }
}

/// A 32773 *Invalid parameter* error; `message` names the method,
/// parameter and value at fault.
pub(crate) fn invalid(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::InvalidParameter, message)
}

impl fmt::Display for RefpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.value(),
            self.code.description(),
            self.message
        )
    }
}

impl std::error::Error for RefpointError {}

fn is_permission(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::PermissionDenied;
        }
        cur = err.source();
    }
    false
}

impl From<refpoint_vhdx::VhdxError> for RefpointError {
    fn from(e: refpoint_vhdx::VhdxError) -> Self {
        use refpoint_vhdx::ErrorKind;
        let code = if is_permission(&e) {
            ReturnCode::AccessDenied
        } else {
            match e.kind() {
                ErrorKind::InvalidArgument => ReturnCode::InvalidParameter,
                _ => ReturnCode::Failed,
            }
        };
        RefpointError::new(code, e.to_string())
    }
}

impl From<refpoint_cim::CimError> for RefpointError {
    fn from(e: refpoint_cim::CimError) -> Self {
        RefpointError::new(e.return_code_a(), e.to_string())
    }
}

impl From<refpoint_cim::PathError> for RefpointError {
    fn from(e: refpoint_cim::PathError) -> Self {
        RefpointError::new(ReturnCode::InvalidParameter, format!("object path: {e}"))
    }
}

impl From<refpoint_core::HostError> for RefpointError {
    fn from(e: refpoint_core::HostError) -> Self {
        use refpoint_core::ErrorKind as K;
        let code = if is_permission(&e) {
            ReturnCode::AccessDenied
        } else {
            match e.kind() {
                K::NotInitialised | K::Locked => ReturnCode::SystemNotAvailable,
                K::NotFound | K::InvalidParameter => ReturnCode::InvalidParameter,
                K::InvalidState => ReturnCode::InvalidState,
                K::NotSupported => ReturnCode::NotSupported,
                K::InUse => ReturnCode::SystemInUse,
                K::FileNotFound => ReturnCode::FileNotFound,
                K::Timeout => ReturnCode::Timeout,
                K::Vhdx(refpoint_vhdx::ErrorKind::InvalidArgument) => ReturnCode::InvalidParameter,
                _ => ReturnCode::Failed,
            }
        };
        RefpointError::new(code, e.to_string())
    }
}

impl From<refpoint_engine::EngineError> for RefpointError {
    fn from(e: refpoint_engine::EngineError) -> Self {
        use refpoint_engine::ErrorKind as K;
        let code = if is_permission(&e) {
            ReturnCode::AccessDenied
        } else {
            match e.kind() {
                K::InvalidParameter | K::TargetExists => ReturnCode::InvalidParameter,
                K::AccessDenied => ReturnCode::AccessDenied,
                K::NotSupported => ReturnCode::NotSupported,
                K::InUse => ReturnCode::SystemInUse,
                K::InvalidState => ReturnCode::InvalidState,
                K::OutOfMemory => ReturnCode::OutOfMemory,
                _ => ReturnCode::Failed,
            }
        };
        RefpointError::new(code, e.to_string())
    }
}

impl From<crate::serve::ServeError> for RefpointError {
    fn from(e: crate::serve::ServeError) -> Self {
        use crate::serve::ServeError as S;
        let code = match &e {
            S::Host(inner) => return inner.clone(),
            S::DirectoryWorldWritable { .. } => ReturnCode::AccessDenied,
            S::ListenNotLoopback { .. } | S::Options(_) | S::SocketPathTooLong { .. } => {
                ReturnCode::InvalidParameter
            }
            S::Listen { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => {
                ReturnCode::SystemInUse
            }
            S::Listen { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ReturnCode::AccessDenied
            }
            S::Listen { .. } | S::Runtime { .. } => ReturnCode::Failed,
        };
        RefpointError::new(code, e.to_string())
    }
}

impl From<crate::client::ClientError> for RefpointError {
    fn from(e: crate::client::ClientError) -> Self {
        use crate::client::ClientError as C;
        let code = match &e {
            C::Unreachable { .. } => ReturnCode::SystemNotAvailable,
            C::Timeout { .. } => ReturnCode::Timeout,
            C::Cim { source, .. } => match source.status {
                3..=6 => ReturnCode::InvalidParameter,
                7 | 16 | 17 => ReturnCode::NotSupported,
                _ => ReturnCode::Failed,
            },
            C::Http { .. } | C::Protocol { .. } => ReturnCode::Failed,
        };
        RefpointError::new(code, e.to_string())
    }
}
