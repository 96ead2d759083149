//! `Msvm_VirtualSystemReferencePointExportSettingData` (the `ExportSettingData`
//! of `ExportReferencePoint`) and its collection counterpart with the nested
//! `Msvm_VirtualMachineToDisks` embedded instances (hyperv-api.md §3).

use crate::error::CimError;
use crate::instance::Instance;
use crate::path::ObjectPath;
use crate::value::CimType;

/// CIM class name of [`ReferencePointExportSettingData`].
pub const EXPORT_SETTING_DATA: &str = "Msvm_VirtualSystemReferencePointExportSettingData";
/// CIM class name of [`CollectionReferencePointExportSettingData`].
pub const COLLECTION_EXPORT_SETTING_DATA: &str = "Msvm_CollectionReferencePointExportSettingData";
/// CIM class name of [`VirtualMachineToDisks`].
pub const VIRTUAL_MACHINE_TO_DISKS: &str = "Msvm_VirtualMachineToDisks";

/// Parses a path-valued string property: NULL or `""` → `None`.
fn optional_path(inst: &Instance, name: &str) -> Result<Option<ObjectPath>, CimError> {
    match inst.get_string(name)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e| CimError::path(&text, Some(format!("{}.{name}", inst.class_name)), e)),
    }
}

/// `Msvm_VirtualSystemReferencePointExportSettingData`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferencePointExportSettingData {
    /// `InstanceID` (optional; clients rarely set it).
    pub instance_id: Option<String>,
    /// `BaseReferencePoint` (string holding an object path of an
    /// `Msvm_VirtualSystemReferencePoint`): `None` (NULL or `""`) = full export.
    pub base_reference_point: Option<ObjectPath>,
    /// `DisksToExport[]`: disk InstanceIDs; empty (or NULL) = all disks.
    pub disks_to_export: Vec<String>,
}

impl ReferencePointExportSettingData {
    /// Reads the typed settings from an instance.
    ///
    /// # Errors
    /// * [`CimError::WrongClass`] (→ 32776) for another class;
    /// * [`CimError::TypeMismatch`] (→ 32776) if `BaseReferencePoint` is not a
    ///   `string` or `DisksToExport` not a `string[]`;
    /// * [`CimError::Path`] (→ 32773) if `BaseReferencePoint` is not an object path.
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, EXPORT_SETTING_DATA)?;
        Ok(ReferencePointExportSettingData {
            instance_id: inst.get_string("InstanceID")?,
            base_reference_point: optional_path(inst, "BaseReferencePoint")?,
            disks_to_export: inst.get_string_array("DisksToExport")?.unwrap_or_default(),
        })
    }

    /// Parses the embedded-instance string passed as `ExportSettingData`.
    /// An empty (or whitespace) string means "all defaults" (full export, all disks).
    ///
    /// # Errors
    /// As [`Instance::from_xml`] (malformed XML → 32773) and
    /// [`ReferencePointExportSettingData::from_instance`].
    pub fn from_embedded(xml: &str) -> Result<Self, CimError> {
        if xml.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_instance(&Instance::from_xml(xml)?)
    }

    /// The instance (`BaseReferencePoint` NULL when `None`).
    pub fn to_instance(&self) -> Instance {
        Instance::new(EXPORT_SETTING_DATA)
            .with_typed("InstanceID", self.instance_id.as_deref(), CimType::String)
            .with_typed(
                "BaseReferencePoint",
                self.base_reference_point.as_ref().map(ToString::to_string),
                CimType::String,
            )
            .with_typed(
                "DisksToExport",
                self.disks_to_export.as_slice(),
                CimType::String,
            )
    }

    /// CIM-XML of [`Self::to_instance`], ready to pass as `ExportSettingData`.
    pub fn to_embedded(&self) -> String {
        self.to_instance().to_xml()
    }
}

/// `Msvm_VirtualMachineToDisks`: the disks of one VM to export in a collection export.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualMachineToDisks {
    /// `VirtualMachineId`: VM GUID.
    pub virtual_machine_id: String,
    /// `DisksToExport[]`: disk InstanceIDs of that VM; empty = all.
    pub disks_to_export: Vec<String>,
}

impl VirtualMachineToDisks {
    /// Reads an instance.
    ///
    /// # Errors
    /// [`CimError::WrongClass`], [`CimError::TypeMismatch`],
    /// [`CimError::MissingProperty`] for a missing `VirtualMachineId`.
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, VIRTUAL_MACHINE_TO_DISKS)?;
        Ok(VirtualMachineToDisks {
            virtual_machine_id: super::required(
                inst,
                "VirtualMachineId",
                inst.get_string("VirtualMachineId")?,
            )?,
            disks_to_export: inst.get_string_array("DisksToExport")?.unwrap_or_default(),
        })
    }

    /// The instance.
    pub fn to_instance(&self) -> Instance {
        Instance::new(VIRTUAL_MACHINE_TO_DISKS)
            .with("VirtualMachineId", self.virtual_machine_id.as_str())
            .with_typed(
                "DisksToExport",
                self.disks_to_export.as_slice(),
                CimType::String,
            )
    }
}

/// `Msvm_CollectionReferencePointExportSettingData`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionReferencePointExportSettingData {
    /// `BaseReferencePointCollection`: path of the base `Msvm_ReferencePointCollection`; `None` = full.
    pub base_reference_point_collection: Option<ObjectPath>,
    /// `VirtualMachinesToDisksToExport[]`: embedded `Msvm_VirtualMachineToDisks`; empty = all.
    pub virtual_machines_to_disks_to_export: Vec<VirtualMachineToDisks>,
}

impl CollectionReferencePointExportSettingData {
    /// Reads an instance, parsing the nested embedded instances.
    ///
    /// # Errors
    /// [`CimError::WrongClass`] (also for a nested element of another class),
    /// [`CimError::TypeMismatch`], [`CimError::Path`], [`CimError::Embedded`].
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, COLLECTION_EXPORT_SETTING_DATA)?;
        let items = inst
            .get_embedded_array("VirtualMachinesToDisksToExport")?
            .unwrap_or_default()
            .iter()
            .map(VirtualMachineToDisks::from_instance)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CollectionReferencePointExportSettingData {
            base_reference_point_collection: optional_path(inst, "BaseReferencePointCollection")?,
            virtual_machines_to_disks_to_export: items,
        })
    }

    /// Parses the embedded-instance string; empty = defaults.
    ///
    /// # Errors
    /// As [`Instance::from_xml`] and [`Self::from_instance`].
    pub fn from_embedded(xml: &str) -> Result<Self, CimError> {
        if xml.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::from_instance(&Instance::from_xml(xml)?)
    }

    /// The instance, with `VirtualMachinesToDisksToExport` as an array of
    /// embedded-instance strings qualified `EmbeddedInstance("Msvm_VirtualMachineToDisks")`.
    pub fn to_instance(&self) -> Instance {
        let items: Vec<Instance> = self
            .virtual_machines_to_disks_to_export
            .iter()
            .map(VirtualMachineToDisks::to_instance)
            .collect();
        Instance::new(COLLECTION_EXPORT_SETTING_DATA)
            .with_typed(
                "BaseReferencePointCollection",
                self.base_reference_point_collection
                    .as_ref()
                    .map(ToString::to_string),
                CimType::String,
            )
            .with_embedded_array(
                "VirtualMachinesToDisksToExport",
                VIRTUAL_MACHINE_TO_DISKS,
                &items,
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CimErrorKind;

    const CONSTRUCTED: &str = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData">
  <PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE>\\HOST\root\virtualization\v2:Msvm_VirtualSystemReferencePoint.InstanceID="Microsoft:VM\\RP"</VALUE></PROPERTY>
  <PROPERTY.ARRAY NAME="DisksToExport" TYPE="string"><VALUE.ARRAY><VALUE>Microsoft:VM\D1\0\0\D</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>
</INSTANCE>"#;

    #[test]
    fn documented_example_parses_into_typed_settings() {
        let s = ReferencePointExportSettingData::from_embedded(CONSTRUCTED).unwrap();

        let base = s.base_reference_point.unwrap();
        assert_eq!(base.class_name, "Msvm_VirtualSystemReferencePoint");
        assert_eq!(base.key("InstanceID"), Some(r"Microsoft:VM\RP"));
        assert_eq!(s.disks_to_export, vec![r"Microsoft:VM\D1\0\0\D".to_owned()]);
    }

    #[test]
    fn empty_base_reference_point_means_full_export() {
        let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData"><PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE></VALUE></PROPERTY></INSTANCE>"#;

        let s = ReferencePointExportSettingData::from_embedded(xml).unwrap();

        assert_eq!(s, ReferencePointExportSettingData::default());
    }

    #[test]
    fn empty_embedded_string_means_defaults() {
        assert_eq!(
            ReferencePointExportSettingData::from_embedded("  ").unwrap(),
            ReferencePointExportSettingData::default()
        );
    }

    #[test]
    fn wrong_class_is_32776() {
        let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemExportSettingData"></INSTANCE>"#;

        let err = ReferencePointExportSettingData::from_embedded(xml).unwrap_err();

        assert_eq!(
            err,
            CimError::WrongClass {
                expected: EXPORT_SETTING_DATA.into(),
                found: "Msvm_VirtualSystemExportSettingData".into()
            }
        );
        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn unknown_class_is_32773() {
        let xml = r#"<INSTANCE CLASSNAME="Contoso_ExportSettings"></INSTANCE>"#;

        let err = ReferencePointExportSettingData::from_embedded(xml).unwrap_err();

        assert_eq!(
            err,
            CimError::UnknownClass {
                class: "Contoso_ExportSettings".into()
            }
        );
        assert_eq!(err.return_code(), 32773);
    }

    #[test]
    fn class_name_compares_case_insensitively() {
        let xml = r#"<INSTANCE CLASSNAME="msvm_virtualsystemreferencepointexportsettingdata"></INSTANCE>"#;

        assert!(ReferencePointExportSettingData::from_embedded(xml).is_ok());
    }

    #[test]
    fn disks_to_export_as_scalar_is_32776() {
        let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData"><PROPERTY NAME="DisksToExport" TYPE="string"><VALUE>x</VALUE></PROPERTY></INSTANCE>"#;

        let err = ReferencePointExportSettingData::from_embedded(xml).unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::TypeMismatch);
        assert_eq!(err.property(), Some("DisksToExport"));
        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn base_reference_point_as_uint32_is_32776() {
        let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData"><PROPERTY NAME="BaseReferencePoint" TYPE="uint32"><VALUE>7</VALUE></PROPERTY></INSTANCE>"#;

        let err = ReferencePointExportSettingData::from_embedded(xml).unwrap_err();

        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn malformed_base_path_is_32773_naming_property() {
        let xml = r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData"><PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE>Msvm_VirtualSystemReferencePoint.InstanceID="open</VALUE></PROPERTY></INSTANCE>"#;

        let err = ReferencePointExportSettingData::from_embedded(xml).unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::MalformedPath);
        assert_eq!(err.return_code(), 32773);
        assert!(err.to_string().contains("BaseReferencePoint"));
    }

    #[test]
    fn malformed_xml_is_32773() {
        let err = ReferencePointExportSettingData::from_embedded("<INSTANCE").unwrap_err();

        assert_eq!(err.return_code(), 32773);
    }

    #[test]
    fn typed_settings_round_trip_through_embedded_xml() {
        let s = ReferencePointExportSettingData {
            instance_id: None,
            base_reference_point: Some(
                ObjectPath::new("Msvm_VirtualSystemReferencePoint")
                    .with_key("InstanceID", r"Microsoft:A\B"),
            ),
            disks_to_export: vec!["d1".into(), "d2".into()],
        };

        let back = ReferencePointExportSettingData::from_embedded(&s.to_embedded()).unwrap();

        assert_eq!(back, s);
    }

    #[test]
    fn collection_settings_round_trip_with_nested_embedded_array() {
        let s = CollectionReferencePointExportSettingData {
            base_reference_point_collection: None,
            virtual_machines_to_disks_to_export: vec![
                VirtualMachineToDisks {
                    virtual_machine_id: "VM1".into(),
                    disks_to_export: vec!["a".into()],
                },
                VirtualMachineToDisks {
                    virtual_machine_id: "VM2".into(),
                    disks_to_export: vec![],
                },
            ],
        };

        let back =
            CollectionReferencePointExportSettingData::from_embedded(&s.to_instance().to_xml())
                .unwrap();

        assert_eq!(back, s);
    }

    #[test]
    fn nested_element_of_wrong_class_is_32776() {
        let bad = Instance::new("Msvm_ComputerSystem").with("VirtualMachineId", "x");
        let inst = Instance::new(COLLECTION_EXPORT_SETTING_DATA).with_embedded_array(
            "VirtualMachinesToDisksToExport",
            VIRTUAL_MACHINE_TO_DISKS,
            &[bad],
        );

        let err = CollectionReferencePointExportSettingData::from_instance(&inst).unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::WrongClass);
        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn embedded_form_is_the_documented_minimal_cim_xml() {
        let s = ReferencePointExportSettingData {
            instance_id: None,
            base_reference_point: Some(
                ObjectPath::new("Msvm_VirtualSystemReferencePoint")
                    .with_key("InstanceID", r"Microsoft:VM\RP"),
            ),
            disks_to_export: vec![r"Microsoft:VM\D1\0\0\D".into()],
        };

        let xml = s.to_embedded();

        assert_eq!(
            xml,
            concat!(
                r#"<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData">"#,
                r#"<PROPERTY NAME="InstanceID" TYPE="string"></PROPERTY>"#,
                r#"<PROPERTY NAME="BaseReferencePoint" TYPE="string"><VALUE>Msvm_VirtualSystemReferencePoint.InstanceID="Microsoft:VM\\RP"</VALUE></PROPERTY>"#,
                r#"<PROPERTY.ARRAY NAME="DisksToExport" TYPE="string"><VALUE.ARRAY><VALUE>Microsoft:VM\D1\0\0\D</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"#,
                r#"</INSTANCE>"#
            )
        );
    }
}
