//! `JobState`, `RequestedState` and `JobType` of `Msvm_ConcreteJob`
//! (hyperv-api.md §4.3, §4.4, §4.5).

use std::fmt;

/// An enum of `u16` wire values (`#[repr(u16)]`) with its `TryFrom<u16>`,
/// each value written once; an unknown value is an [`UnknownValue`] naming
/// the enum.
macro_rules! wire_enum {
    (
        $(#[$em:meta])*
        pub enum $name:ident { $( $(#[$m:meta])* $variant:ident = $value:literal, )* }
    ) => {
        $(#[$em])*
        #[repr(u16)]
        pub enum $name { $( $(#[$m])* $variant = $value, )* }

        impl TryFrom<u16> for $name {
            type Error = UnknownValue;
            fn try_from(v: u16) -> Result<Self, UnknownValue> {
                match v {
                    $( $value => Ok($name::$variant), )*
                    _ => Err(UnknownValue { what: stringify!($name), value: v }),
                }
            }
        }
    };
}

wire_enum! {
    /// `CIM_ConcreteJob.JobState` (§4.3), plus the vendor value 32768
    /// *CompletedWithWarnings* that Microsoft's own samples treat as success.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    #[serde(into = "u16", try_from = "u16")]
    pub enum JobState {
        /// 2: never started.
        New = 2,
        /// 3: moving from New, Suspended or Service into Running.
        Starting = 3,
        /// 4: running.
        Running = 4,
        /// 5: stopped, can be resumed with `RequestStateChange(2)`.
        Suspended = 5,
        /// 6: moving to Completed, Terminated or Killed.
        ShuttingDown = 6,
        /// 7: completed normally.
        Completed = 7,
        /// 8: stopped by a Terminate request.
        Terminated = 8,
        /// 9: stopped by a Kill request.
        Killed = 9,
        /// 10: failed; details in `ErrorCode`, `ErrorDescription`, `GetErrorEx`.
        Exception = 10,
        /// 11: vendor diagnostic state (never entered by refpoint).
        Service = 11,
        /// 32768: completed with warnings (success).
        CompletedWithWarnings = 32768,
    }
}

impl JobState {
    /// The wire value.
    pub const fn value(self) -> u16 {
        self as u16
    }

    /// True for the terminal states 7, 8, 9, 10 and 32768.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed
                | JobState::Terminated
                | JobState::Killed
                | JobState::Exception
                | JobState::CompletedWithWarnings
        )
    }

    /// True for 7 and 32768, the states clients treat as success.
    pub const fn is_success(self) -> bool {
        matches!(self, JobState::Completed | JobState::CompletedWithWarnings)
    }

    /// The documented name ("Shutting Down", "Completed", …).
    pub const fn name(self) -> &'static str {
        match self {
            JobState::New => "New",
            JobState::Starting => "Starting",
            JobState::Running => "Running",
            JobState::Suspended => "Suspended",
            JobState::ShuttingDown => "Shutting Down",
            JobState::Completed => "Completed",
            JobState::Terminated => "Terminated",
            JobState::Killed => "Killed",
            JobState::Exception => "Exception",
            JobState::Service => "Service",
            JobState::CompletedWithWarnings => "Completed with Warnings",
        }
    }
}

impl From<JobState> for u16 {
    fn from(s: JobState) -> u16 {
        s.value()
    }
}

/// A `u16` that is not a value of the named enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not a valid {what}")]
pub struct UnknownValue {
    /// Enumeration name.
    pub what: &'static str,
    /// The value.
    pub value: u16,
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.value())
    }
}

wire_enum! {
    /// `RequestStateChange.RequestedState` (§4.4).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RequestedState {
        /// 2: Start (resume a suspended job).
        Start = 2,
        /// 3: Suspend.
        Suspend = 3,
        /// 4: Terminate (orderly stop).
        Terminate = 4,
        /// 5: Kill (immediate stop).
        Kill = 5,
        /// 6: Service.
        Service = 6,
    }
}

macro_rules! job_types {
    ($( $(#[$m:meta])* $variant:ident = $value:literal => $desc:literal, )*) => {
        /// `Msvm_ConcreteJob.JobType` values refpoint uses (§4.5), with the
        /// documented descriptions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(into = "u16", try_from = "u16")]
        #[repr(u16)]
        pub enum JobType {
            $( $(#[$m])* $variant = $value, )*
        }

        impl JobType {
            /// Every value, ascending.
            pub const ALL: &'static [JobType] = &[ $( JobType::$variant, )* ];

            /// The wire value.
            pub const fn value(self) -> u16 {
                self as u16
            }

            /// The documented description, used for `Name`, `Caption` and `ElementName`.
            pub const fn description(self) -> &'static str {
                match self { $( JobType::$variant => $desc, )* }
            }
        }

        impl TryFrom<u16> for JobType {
            type Error = UnknownValue;
            fn try_from(v: u16) -> Result<Self, UnknownValue> {
                match v {
                    $( $value => Ok(JobType::$variant), )*
                    _ => Err(UnknownValue { what: "JobType", value: v }),
                }
            }
        }
    };
}

job_types! {
    /// 62
    ExportVirtualMachine = 62 => "Export Virtual Machine",
    /// 70
    SnapshotVirtualMachine = 70 => "Snapshot Virtual Machine",
    /// 71
    ApplySnapshot = 71 => "Apply Snapshot",
    /// 72
    DeleteSnapshot = 72 => "Delete Snapshot",
    /// 73
    ClearSnapshotState = 73 => "Clear Snapshot State",
    /// 170
    BackupVirtualMachine = 170 => "Backup Virtual Machine",
    /// 200
    ConvertSnapshotToReferencePoint = 200 => "Convert Snapshot to Reference Point",
    /// 201
    CreateReferencePoint = 201 => "Create Reference Point",
    /// 202
    DeleteReferencePoint = 202 => "Delete Reference Point",
    /// 203
    ExportReferencePoint = 203 => "Export Reference Point",
    /// 204
    RemoveAssociatedData = 204 => "Remove Associated Data from Reference Point",
    /// 205
    CreateReferencePointOnCollection = 205 => "Create Reference Point on Collection",
    /// 206
    ExportReferencePointOnCollection = 206 => "Export Reference Point on Collection",
    /// 207
    RemoveAssociatedDataOnCollection = 207 => "Remove Associated Data from Reference Point on Collection",
    /// 208
    DeleteReferencePointOnCollection = 208 => "Delete Reference Point on Collection",
    /// 209
    ImportReferencePointMetadata = 209 => "Import Reference Point metadata",
}

impl From<JobType> for u16 {
    fn from(t: JobType) -> u16 {
        t.value()
    }
}

impl JobType {
    /// The job class Hyper-V returns for this type:
    /// `Msvm_VirtualSystemReferencePointExportJob` (203),
    /// `Msvm_CollectionReferencePointExportJob` (206), else `Msvm_ConcreteJob`.
    pub const fn class_name(self) -> &'static str {
        match self {
            JobType::ExportReferencePoint => "Msvm_VirtualSystemReferencePointExportJob",
            JobType::ExportReferencePointOnCollection => "Msvm_CollectionReferencePointExportJob",
            _ => "Msvm_ConcreteJob",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_states_are_exactly_7_8_9_10_32768() {
        let all = [2u16, 3, 4, 5, 6, 7, 8, 9, 10, 11, 32768];

        let finished: Vec<u16> = all
            .iter()
            .map(|&v| JobState::try_from(v).unwrap())
            .filter(|s| s.is_finished())
            .map(JobState::value)
            .collect();

        assert_eq!(finished, vec![7, 8, 9, 10, 32768]);
    }

    #[test]
    fn success_states_are_completed_and_completed_with_warnings() {
        assert!(JobState::Completed.is_success());
        assert!(JobState::CompletedWithWarnings.is_success());
        assert!(!JobState::Exception.is_success());
    }

    #[test]
    fn unknown_job_state_value_is_rejected() {
        assert_eq!(
            JobState::try_from(12),
            Err(UnknownValue {
                what: "JobState",
                value: 12
            })
        );
    }

    #[test]
    fn job_state_serialises_as_its_number() {
        assert_eq!(
            serde_json::to_string(&JobState::CompletedWithWarnings).unwrap(),
            "32768"
        );
        assert_eq!(
            serde_json::from_str::<JobState>("10").unwrap(),
            JobState::Exception
        );
    }

    #[test]
    fn export_job_types_map_to_their_classes() {
        assert_eq!(JobType::ExportReferencePoint.value(), 203);
        assert_eq!(
            JobType::ExportReferencePoint.class_name(),
            "Msvm_VirtualSystemReferencePointExportJob"
        );
        assert_eq!(JobType::ExportReferencePointOnCollection.value(), 206);
        assert_eq!(
            JobType::SnapshotVirtualMachine.class_name(),
            "Msvm_ConcreteJob"
        );
    }

    #[test]
    fn requested_state_7_is_rejected() {
        assert!(RequestedState::try_from(7).is_err());
        assert_eq!(RequestedState::try_from(5), Ok(RequestedState::Kill));
    }
}
