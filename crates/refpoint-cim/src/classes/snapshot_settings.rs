//! The embedded settings of `CreateSnapshot` and `CreateReferencePoint` /
//! `ConvertToReferencePoint` (hyperv-api.md §3):
//! `Msvm_VirtualSystemSnapshotSettingData` and
//! `Msvm_VirtualSystemReferencePointSettingData`.

use crate::error::CimError;
use crate::instance::Instance;
use crate::value::CimType;

/// CIM class name of [`VirtualSystemSnapshotSettingData`].
pub const SNAPSHOT_SETTING_DATA: &str = "Msvm_VirtualSystemSnapshotSettingData";
/// CIM class name of [`VirtualSystemReferencePointSettingData`].
pub const REFERENCE_POINT_SETTING_DATA: &str = "Msvm_VirtualSystemReferencePointSettingData";

/// `Msvm_VirtualSystemSnapshotSettingData` (`SnapshotSettings` of `CreateSnapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtualSystemSnapshotSettingData {
    /// `ConsistencyLevel` (uint8): 0 Unknown, 1 Application, 2 Crash.
    pub consistency_level: Option<u8>,
    /// `IgnoreNonSnapshottableDisks` (boolean).
    pub ignore_non_snapshottable_disks: Option<bool>,
    /// `GuestBackupType` (uint8): 0 Undefined, 1 Full, 2 Copy.
    pub guest_backup_type: Option<u8>,
}

impl VirtualSystemSnapshotSettingData {
    /// Reads an instance.
    ///
    /// # Errors
    /// [`CimError::WrongClass`] / [`CimError::UnknownClass`] for another class,
    /// [`CimError::TypeMismatch`] when a property is not of its MOF type.
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, SNAPSHOT_SETTING_DATA)?;
        Ok(VirtualSystemSnapshotSettingData {
            consistency_level: inst.get_u8("ConsistencyLevel")?,
            ignore_non_snapshottable_disks: inst.get_bool("IgnoreNonSnapshottableDisks")?,
            guest_backup_type: inst.get_u8("GuestBackupType")?,
        })
    }

    /// Parses the embedded-instance string; an empty string (allowed by
    /// `CreateSnapshot`) gives the defaults.
    ///
    /// # Errors
    /// As [`Instance::from_xml`] and [`Self::from_instance`].
    pub fn from_embedded(xml: &str) -> Result<Self, CimError> {
        if xml.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_instance(&Instance::from_xml(xml)?)
    }

    /// The instance (unset properties are NULL).
    pub fn to_instance(&self) -> Instance {
        Instance::new(SNAPSHOT_SETTING_DATA)
            .with_typed("ConsistencyLevel", self.consistency_level, CimType::Uint8)
            .with_typed(
                "IgnoreNonSnapshottableDisks",
                self.ignore_non_snapshottable_disks,
                CimType::Boolean,
            )
            .with_typed("GuestBackupType", self.guest_backup_type, CimType::Uint8)
    }
}

/// `Msvm_VirtualSystemReferencePointSettingData` (`ReferencePointSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VirtualSystemReferencePointSettingData {
    /// `ConsistencyLevel` (uint8; values undocumented, clients send 1 app / 2 crash).
    pub consistency_level: Option<u8>,
}

impl VirtualSystemReferencePointSettingData {
    /// Reads an instance.
    ///
    /// # Errors
    /// [`CimError::WrongClass`] / [`CimError::UnknownClass`],
    /// [`CimError::TypeMismatch`].
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, REFERENCE_POINT_SETTING_DATA)?;
        Ok(VirtualSystemReferencePointSettingData {
            consistency_level: inst.get_u8("ConsistencyLevel")?,
        })
    }

    /// Parses the embedded-instance string; empty gives the defaults.
    ///
    /// # Errors
    /// As [`Instance::from_xml`] and [`Self::from_instance`].
    pub fn from_embedded(xml: &str) -> Result<Self, CimError> {
        if xml.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_instance(&Instance::from_xml(xml)?)
    }

    /// The instance.
    pub fn to_instance(&self) -> Instance {
        Instance::new(REFERENCE_POINT_SETTING_DATA).with_typed(
            "ConsistencyLevel",
            self.consistency_level,
            CimType::Uint8,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CimErrorKind;

    #[test]
    fn observed_minimal_reference_point_settings_parse() {
        // The minimal form a PowerShell client was observed to send (hyperv-api.md §6.1).
        let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointSettingData">
  <PROPERTY NAME="ConsistencyLevel" TYPE="uint8"><VALUE>1</VALUE></PROPERTY>
</INSTANCE>"#;

        let s = VirtualSystemReferencePointSettingData::from_embedded(xml).unwrap();

        assert_eq!(s.consistency_level, Some(1));
    }

    #[test]
    fn snapshot_settings_round_trip() {
        let s = VirtualSystemSnapshotSettingData {
            consistency_level: Some(2),
            ignore_non_snapshottable_disks: Some(true),
            guest_backup_type: Some(1),
        };

        let back =
            VirtualSystemSnapshotSettingData::from_embedded(&s.to_instance().to_xml()).unwrap();

        assert_eq!(back, s);
    }

    #[test]
    fn consistency_level_as_uint16_is_type_mismatch() {
        let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemSnapshotSettingData"><PROPERTY NAME="ConsistencyLevel" TYPE="uint16"><VALUE>2</VALUE></PROPERTY></INSTANCE>"#;

        let err = VirtualSystemSnapshotSettingData::from_embedded(xml).unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::TypeMismatch);
        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn empty_snapshot_settings_are_defaults() {
        assert_eq!(
            VirtualSystemSnapshotSettingData::from_embedded("").unwrap(),
            VirtualSystemSnapshotSettingData::default()
        );
    }
}
