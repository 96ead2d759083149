//! `Msvm_VirtualSystemReferencePoint` (hyperv-api.md §1.3).

use super::required;
use crate::error::CimError;
use crate::instance::Instance;
use crate::path::ObjectPath;
use crate::value::CimType;

/// CIM class name.
pub const REFERENCE_POINT: &str = "Msvm_VirtualSystemReferencePoint";

/// `ReferencePointType` values of the instance property (§1.6).
pub mod reference_point_type {
    /// 1 Log based (Hyper-V Replica log).
    pub const LOG: u16 = 1;
    /// 2 RCT based.
    pub const RCT: u16 = 2;
}

/// `ConsistencyLevel` values of the VM-level classes (§1.6).
pub mod consistency_level {
    /// 0 Unknown.
    pub const UNKNOWN: u16 = 0;
    /// 1 Application consistent.
    pub const APPLICATION: u16 = 1;
    /// 2 Crash consistent.
    pub const CRASH: u16 = 2;
}

/// `Msvm_VirtualSystemReferencePoint`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualSystemReferencePoint {
    /// `InstanceID` (Key).
    pub instance_id: String,
    /// `VirtualSystemIdentifier` (Key): the VM GUID (`Msvm_ComputerSystem.Name`).
    pub virtual_system_identifier: String,
    /// `ReferencePointType` (uint16, see [`reference_point_type`]).
    pub reference_point_type: u16,
    /// `ConsistencyLevel` (uint16, see [`consistency_level`]).
    pub consistency_level: u16,
    /// `HasAssociatedData` (boolean).
    pub has_associated_data: bool,
    /// `VirtualDiskIdentifiers[]`: disk (SASD) InstanceIDs, index-parallel to
    /// `resilient_change_tracking_identifiers`.
    pub virtual_disk_identifiers: Vec<String>,
    /// `ResilientChangeTrackingIdentifiers[]`: one RCT ID per disk.
    pub resilient_change_tracking_identifiers: Vec<String>,
    /// `ElementName`.
    pub element_name: Option<String>,
}

impl VirtualSystemReferencePoint {
    /// The object path, with both documented keys:
    /// `Msvm_VirtualSystemReferencePoint.InstanceID="…",VirtualSystemIdentifier="…"`.
    pub fn object_path(&self) -> ObjectPath {
        ObjectPath::new(REFERENCE_POINT)
            .with_key("InstanceID", &self.instance_id)
            .with_key("VirtualSystemIdentifier", &self.virtual_system_identifier)
    }

    /// The instance.
    pub fn to_instance(&self) -> Instance {
        Instance::new(REFERENCE_POINT)
            .with("InstanceID", self.instance_id.as_str())
            .with(
                "VirtualSystemIdentifier",
                self.virtual_system_identifier.as_str(),
            )
            .with("ReferencePointType", self.reference_point_type)
            .with("ConsistencyLevel", self.consistency_level)
            .with("HasAssociatedData", self.has_associated_data)
            .with_typed(
                "VirtualDiskIdentifiers",
                self.virtual_disk_identifiers.as_slice(),
                CimType::String,
            )
            .with_typed(
                "ResilientChangeTrackingIdentifiers",
                self.resilient_change_tracking_identifiers.as_slice(),
                CimType::String,
            )
            .with_typed("ElementName", self.element_name.as_deref(), CimType::String)
    }

    /// Reads an instance.
    ///
    /// # Errors
    /// [`CimError::WrongClass`], [`CimError::TypeMismatch`],
    /// [`CimError::MissingProperty`] for missing keys, and
    /// [`CimError::InvalidValue`] when the two identifier arrays differ in length.
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, REFERENCE_POINT)?;
        let rp = VirtualSystemReferencePoint {
            instance_id: required(inst, "InstanceID", inst.get_string("InstanceID")?)?,
            virtual_system_identifier: required(
                inst,
                "VirtualSystemIdentifier",
                inst.get_string("VirtualSystemIdentifier")?,
            )?,
            reference_point_type: inst.get_u16("ReferencePointType")?.unwrap_or(0),
            consistency_level: inst.get_u16("ConsistencyLevel")?.unwrap_or(0),
            has_associated_data: inst.get_bool("HasAssociatedData")?.unwrap_or(false),
            virtual_disk_identifiers: inst
                .get_string_array("VirtualDiskIdentifiers")?
                .unwrap_or_default(),
            resilient_change_tracking_identifiers: inst
                .get_string_array("ResilientChangeTrackingIdentifiers")?
                .unwrap_or_default(),
            element_name: inst.get_string("ElementName")?,
        };
        if rp.virtual_disk_identifiers.len() != rp.resilient_change_tracking_identifiers.len()
            && !rp.resilient_change_tracking_identifiers.is_empty()
        {
            return Err(CimError::InvalidValue {
                class: REFERENCE_POINT.to_owned(),
                property: "ResilientChangeTrackingIdentifiers".to_owned(),
                value: format!("{} entries", rp.resilient_change_tracking_identifiers.len()),
                reason: format!(
                    "must be index-parallel to VirtualDiskIdentifiers ({} entries)",
                    rp.virtual_disk_identifiers.len()
                ),
            });
        }
        Ok(rp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CimErrorKind;

    fn sample() -> VirtualSystemReferencePoint {
        VirtualSystemReferencePoint {
            instance_id: r"Microsoft:VM\RP".into(),
            virtual_system_identifier: "VM".into(),
            reference_point_type: reference_point_type::RCT,
            consistency_level: consistency_level::CRASH,
            has_associated_data: true,
            virtual_disk_identifiers: vec![r"Microsoft:VM\D1\0\0\D".into()],
            resilient_change_tracking_identifiers: vec!["rct:1".into()],
            element_name: Some("nightly".into()),
        }
    }

    #[test]
    fn reference_point_round_trips_through_cim_xml() {
        let rp = sample();

        let back = VirtualSystemReferencePoint::from_instance(
            &Instance::from_xml(&rp.to_instance().to_xml()).unwrap(),
        )
        .unwrap();

        assert_eq!(back, rp);
    }

    #[test]
    fn object_path_carries_both_keys() {
        assert_eq!(
            sample().object_path().to_string(),
            r#"Msvm_VirtualSystemReferencePoint.InstanceID="Microsoft:VM\\RP",VirtualSystemIdentifier="VM""#
        );
    }

    #[test]
    fn unparallel_identifier_arrays_are_invalid() {
        let mut rp = sample();
        rp.resilient_change_tracking_identifiers
            .push("extra".into());

        let err = VirtualSystemReferencePoint::from_instance(&rp.to_instance()).unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::InvalidValue);
    }

    #[test]
    fn missing_instance_id_is_missing_property() {
        let inst = Instance::new(REFERENCE_POINT).with("VirtualSystemIdentifier", "VM");

        let err = VirtualSystemReferencePoint::from_instance(&inst).unwrap_err();

        assert_eq!(
            err,
            CimError::MissingProperty {
                class: REFERENCE_POINT.into(),
                property: "InstanceID".into()
            }
        );
    }

    #[test]
    fn reference_point_type_as_string_is_type_mismatch() {
        let inst = sample().to_instance().with("ReferencePointType", "2");

        let err = VirtualSystemReferencePoint::from_instance(&inst).unwrap_err();

        assert_eq!(err.return_code(), 32776);
    }
}
