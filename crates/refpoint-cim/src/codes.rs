//! Hyper-V method return codes (hyperv-api.md §5) and `RequestStateChange`
//! codes of `CIM_ConcreteJob` (§4.4).
//!
//! * [`ReturnCodeA`] — the vendor-style table documented for
//!   `Msvm_VirtualSystemReferencePointService.ExportReferencePoint`,
//!   `DestroyReferencePoint`, `RemoveAssociatedData`,
//!   `ImportReferencePointMetadata`, `ExportSystemDefinition`,
//!   `GetVirtualDiskChanges` (which alone adds 32779) and the jobs'
//!   `GetError`/`GetErrorEx`.
//! * [`ReturnCodeB`] — the CIM-style table of `CreateReferencePoint`,
//!   `CreateSnapshot`, `DestroySnapshot`, `ConvertToReferencePoint` and the
//!   collection service methods.
//! * [`RequestStateChangeCode`] — `CIM_ConcreteJob.RequestStateChange`.
//!
//! Every enum converts to its `u32` wire value with `u32::from` and back with
//! `TryFrom<u32>` (unknown values → [`UnknownCode`]).

use std::fmt;

/// A `u32` that is not a value of the named table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a {table} value")]
pub struct UnknownCode {
    /// The table name.
    pub table: &'static str,
    /// The value.
    pub value: u32,
}

macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $name:ident, $table:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $desc:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(into = "u32", try_from = "u32")]
        #[repr(u32)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )*
        }

        impl $name {
            /// Every value of the table, in ascending order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )* ];

            /// The wire value.
            pub const fn value(self) -> u32 {
                self as u32
            }

            /// The description documented for the value.
            pub const fn description(self) -> &'static str {
                match self {
                    $( $name::$variant => $desc, )*
                }
            }
        }

        impl From<$name> for u32 {
            fn from(c: $name) -> u32 {
                c.value()
            }
        }

        impl TryFrom<u32> for $name {
            type Error = UnknownCode;
            fn try_from(value: u32) -> Result<Self, UnknownCode> {
                match value {
                    $( $value => Ok($name::$variant), )*
                    _ => Err(UnknownCode { table: $table, value }),
                }
            }
        }

        impl fmt::Display for $name {
            /// `"<description> (<value>)"`, e.g. `Invalid parameter (32773)`.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} ({})", self.description(), self.value())
            }
        }
    };
}

code_table! {
    /// Table A — vendor-style return codes of the Hyper-V service methods.
    ReturnCodeA, "Table A return code" {
        /// 0
        Completed = 0 => "Completed with No Error",
        /// 4096
        JobStarted = 4096 => "Method Parameters Checked – Job Started",
        /// 32768
        Failed = 32768 => "Failed",
        /// 32769
        AccessDenied = 32769 => "Access Denied",
        /// 32770
        NotSupported = 32770 => "Not Supported",
        /// 32771
        StatusUnknown = 32771 => "Status is unknown",
        /// 32772
        Timeout = 32772 => "Timeout",
        /// 32773
        InvalidParameter = 32773 => "Invalid parameter",
        /// 32774
        SystemInUse = 32774 => "System is in use",
        /// 32775
        InvalidState = 32775 => "Invalid state for this operation",
        /// 32776
        IncorrectDataType = 32776 => "Incorrect data type",
        /// 32777
        SystemNotAvailable = 32777 => "System is not available",
        /// 32778
        OutOfMemory = 32778 => "Out of memory",
        /// 32779 (documented only for GetVirtualDiskChanges, DefineCollection, AddMember)
        FileNotFound = 32779 => "File not found",
    }
}

code_table! {
    /// Table B — CIM-style return codes (7..4095 DMTF reserved, 4097..32767
    /// method reserved, 32768..65535 vendor specific are not values of this enum).
    ReturnCodeB, "Table B return code" {
        /// 0
        Completed = 0 => "Completed with No Error",
        /// 1
        NotSupported = 1 => "Not Supported",
        /// 2
        Failed = 2 => "Failed",
        /// 3
        Timeout = 3 => "Timeout",
        /// 4
        InvalidParameter = 4 => "Invalid Parameter",
        /// 5
        InvalidState = 5 => "Invalid State",
        /// 6
        InvalidType = 6 => "Invalid Type",
        /// 4096
        JobStarted = 4096 => "Method Parameters Checked – Job Started",
    }
}

code_table! {
    /// Return codes of `CIM_ConcreteJob.RequestStateChange` (§4.4).
    RequestStateChangeCode, "RequestStateChange return code" {
        /// 0
        Completed = 0 => "Completed with No Error",
        /// 1
        NotSupported = 1 => "Not Supported",
        /// 2
        UnknownError = 2 => "Unknown or Unspecified Error",
        /// 3
        CannotCompleteWithinTimeout = 3 => "Cannot complete within Timeout Period",
        /// 4
        Failed = 4 => "Failed",
        /// 5
        InvalidParameter = 5 => "Invalid Parameter",
        /// 6
        InUse = 6 => "In Use",
        /// 4096
        TransitionStarted = 4096 => "Method Parameters Checked – Transition Started",
        /// 4097
        InvalidStateTransition = 4097 => "Invalid State Transition",
        /// 4098
        TimeoutNotSupported = 4098 => "Use of Timeout Parameter Not Supported",
        /// 4099
        Busy = 4099 => "Busy",
    }
}

code_table! {
    /// `CIM_Error.CIMStatusCode` values (DSP0200 status codes) used in `Msvm_Error`.
    CimStatusCode, "CIMStatusCode" {
        /// 1
        Failed = 1 => "CIM_ERR_FAILED",
        /// 2
        AccessDenied = 2 => "CIM_ERR_ACCESS_DENIED",
        /// 3
        InvalidNamespace = 3 => "CIM_ERR_INVALID_NAMESPACE",
        /// 4
        InvalidParameter = 4 => "CIM_ERR_INVALID_PARAMETER",
        /// 5
        InvalidClass = 5 => "CIM_ERR_INVALID_CLASS",
        /// 6
        NotFound = 6 => "CIM_ERR_NOT_FOUND",
        /// 7
        NotSupported = 7 => "CIM_ERR_NOT_SUPPORTED",
        /// 8
        ClassHasChildren = 8 => "CIM_ERR_CLASS_HAS_CHILDREN",
        /// 9
        ClassHasInstances = 9 => "CIM_ERR_CLASS_HAS_INSTANCES",
        /// 10
        InvalidSuperclass = 10 => "CIM_ERR_INVALID_SUPERCLASS",
        /// 11
        AlreadyExists = 11 => "CIM_ERR_ALREADY_EXISTS",
        /// 12
        NoSuchProperty = 12 => "CIM_ERR_NO_SUCH_PROPERTY",
        /// 13
        TypeMismatch = 13 => "CIM_ERR_TYPE_MISMATCH",
        /// 14
        QueryLanguageNotSupported = 14 => "CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED",
        /// 15
        InvalidQuery = 15 => "CIM_ERR_INVALID_QUERY",
        /// 16
        MethodNotAvailable = 16 => "CIM_ERR_METHOD_NOT_AVAILABLE",
        /// 17
        MethodNotFound = 17 => "CIM_ERR_METHOD_NOT_FOUND",
    }
}

impl ReturnCodeA {
    /// True for 0 and 4096, the two codes clients treat as success.
    pub const fn is_success(self) -> bool {
        matches!(self, ReturnCodeA::Completed | ReturnCodeA::JobStarted)
    }

    /// The `CIMStatusCode` an `Msvm_Error` for this return code carries.
    pub const fn cim_status_code(self) -> CimStatusCode {
        match self {
            ReturnCodeA::AccessDenied => CimStatusCode::AccessDenied,
            ReturnCodeA::NotSupported => CimStatusCode::NotSupported,
            ReturnCodeA::InvalidParameter => CimStatusCode::InvalidParameter,
            ReturnCodeA::IncorrectDataType => CimStatusCode::TypeMismatch,
            ReturnCodeA::FileNotFound => CimStatusCode::NotFound,
            _ => CimStatusCode::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_a_values_and_descriptions_match_the_documentation() {
        let rows: Vec<(u32, &str)> = ReturnCodeA::ALL
            .iter()
            .map(|c| (c.value(), c.description()))
            .collect();

        assert_eq!(
            rows,
            vec![
                (0, "Completed with No Error"),
                (4096, "Method Parameters Checked – Job Started"),
                (32768, "Failed"),
                (32769, "Access Denied"),
                (32770, "Not Supported"),
                (32771, "Status is unknown"),
                (32772, "Timeout"),
                (32773, "Invalid parameter"),
                (32774, "System is in use"),
                (32775, "Invalid state for this operation"),
                (32776, "Incorrect data type"),
                (32777, "System is not available"),
                (32778, "Out of memory"),
                (32779, "File not found"),
            ]
        );
    }

    #[test]
    fn table_b_values_match_the_documentation() {
        let values: Vec<u32> = ReturnCodeB::ALL.iter().map(|c| c.value()).collect();

        assert_eq!(values, vec![0, 1, 2, 3, 4, 5, 6, 4096]);
        assert_eq!(ReturnCodeB::InvalidType.description(), "Invalid Type");
    }

    #[test]
    fn request_state_change_codes_include_4097_to_4099() {
        assert_eq!(
            RequestStateChangeCode::try_from(4097),
            Ok(RequestStateChangeCode::InvalidStateTransition)
        );
        assert_eq!(RequestStateChangeCode::TimeoutNotSupported.value(), 4098);
        assert_eq!(RequestStateChangeCode::Busy.value(), 4099);
    }

    #[test]
    fn every_code_round_trips_through_u32() {
        for code in ReturnCodeA::ALL {
            assert_eq!(ReturnCodeA::try_from(u32::from(*code)), Ok(*code));
        }
        for code in ReturnCodeB::ALL {
            assert_eq!(ReturnCodeB::try_from(u32::from(*code)), Ok(*code));
        }
        for code in RequestStateChangeCode::ALL {
            assert_eq!(
                RequestStateChangeCode::try_from(u32::from(*code)),
                Ok(*code)
            );
        }
    }

    #[test]
    fn unknown_value_is_rejected_with_table_name() {
        let err = ReturnCodeA::try_from(7).unwrap_err();

        assert_eq!(
            err,
            UnknownCode {
                table: "Table A return code",
                value: 7
            }
        );
    }

    #[test]
    fn display_shows_description_and_value() {
        assert_eq!(
            ReturnCodeA::InvalidParameter.to_string(),
            "Invalid parameter (32773)"
        );
    }

    #[test]
    fn serde_uses_the_wire_value() {
        let json = serde_json::to_string(&ReturnCodeA::IncorrectDataType).unwrap();

        assert_eq!(json, "32776");
        assert_eq!(
            serde_json::from_str::<ReturnCodeA>("32776").unwrap(),
            ReturnCodeA::IncorrectDataType
        );
    }
}
