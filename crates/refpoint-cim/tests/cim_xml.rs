//! CIM-XML reading and writing of instances (DSP0201), including the verbose
//! WMI GetText_ form and embedded instances.

#[cfg(test)]
mod tests {

    use refpoint_cim::{
        CimDateTime, CimError, CimErrorKind, CimInterval, CimType, CimValue, Instance, ObjectPath,
        PropertyValue, XmlError,
    };

    /// A verbose `GetText_(1)` document in the shape recorded from a real host
    /// (system properties with CLASSORIGIN="___SYSTEM", PROPAGATED inherited
    /// properties, NULL as an empty element, declaration and indentation).
    const VERBOSE: &str = r#"<?xml version="1.0" encoding="utf-16"?>
<INSTANCE CLASSNAME="Msvm_VirtualSystemReferencePointExportSettingData">
  <PROPERTY NAME="__PATH" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>\\HOST\root\virtualization\v2:Msvm_VirtualSystemReferencePointExportSettingData.InstanceID="x"</VALUE></PROPERTY>
  <PROPERTY NAME="__CLASS" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>Msvm_VirtualSystemReferencePointExportSettingData</VALUE></PROPERTY>
  <PROPERTY.ARRAY NAME="__DERIVATION" CLASSORIGIN="___SYSTEM" TYPE="string">
    <VALUE.ARRAY><VALUE>CIM_SettingData</VALUE><VALUE>CIM_ManagedElement</VALUE></VALUE.ARRAY>
  </PROPERTY.ARRAY>
  <PROPERTY NAME="__PROPERTY_COUNT" CLASSORIGIN="___SYSTEM" TYPE="sint32"><VALUE>6</VALUE></PROPERTY>
  <PROPERTY NAME="Caption" CLASSORIGIN="CIM_ManagedElement" PROPAGATED="true" TYPE="string"></PROPERTY>
  <PROPERTY NAME="ElementName" CLASSORIGIN="CIM_ManagedElement" PROPAGATED="true" TYPE="string"><VALUE></VALUE></PROPERTY>
  <PROPERTY NAME="BaseReferencePoint" CLASSORIGIN="Msvm_VirtualSystemReferencePointExportSettingData" TYPE="string"><VALUE>\\HOST\root\virtualization\v2:Msvm_VirtualSystemReferencePoint.InstanceID="Microsoft:A\\B"</VALUE></PROPERTY>
  <PROPERTY.ARRAY NAME="DisksToExport" CLASSORIGIN="Msvm_VirtualSystemReferencePointExportSettingData" TYPE="string">
    <VALUE.ARRAY><VALUE>Microsoft:VM\DISK\0\0\D</VALUE></VALUE.ARRAY>
  </PROPERTY.ARRAY>
</INSTANCE>
"#;

    #[test]
    fn verbose_get_text_form_parses_with_system_properties() {
        let inst = Instance::from_xml(VERBOSE).unwrap();

        assert_eq!(
            inst.class_name,
            "Msvm_VirtualSystemReferencePointExportSettingData"
        );
        let path = inst.property("__PATH").unwrap();
        assert!(path.is_system());
        assert_eq!(path.class_origin.as_deref(), Some("___SYSTEM"));
        assert_eq!(inst.get_i32("__PROPERTY_COUNT").unwrap(), Some(6));
        assert!(inst.property("Caption").unwrap().propagated);
        assert_eq!(
            inst.get_string_array("DisksToExport").unwrap(),
            Some(vec![r"Microsoft:VM\DISK\0\0\D".to_owned()])
        );
        assert_eq!(
            inst.system_path().unwrap().unwrap().key("InstanceID"),
            Some("x")
        );
    }

    #[test]
    fn null_property_is_distinct_from_empty_string() {
        let inst = Instance::from_xml(VERBOSE).unwrap();

        assert_eq!(inst.get_string("Caption").unwrap(), None);
        assert_eq!(inst.get_string("ElementName").unwrap(), Some(String::new()));
    }

    #[test]
    fn self_closing_value_is_empty_string() {
        let inst = Instance::from_xml(r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"><VALUE/></PROPERTY></INSTANCE>"#)
        .unwrap();

        assert_eq!(inst.get_string("A").unwrap(), Some(String::new()));
    }

    #[test]
    fn whitespace_inside_value_is_preserved() {
        let inst = Instance::from_xml(r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"><VALUE>  a b  </VALUE></PROPERTY></INSTANCE>"#)
        .unwrap();

        assert_eq!(inst.get_string("A").unwrap().as_deref(), Some("  a b  "));
    }

    #[test]
    fn minimal_form_round_trips_every_scalar_type() {
        let when: CimDateTime = "20240102030405.123456+060".parse().unwrap();
        let interval: CimInterval = "00000001020304.000005:000".parse().unwrap();
        let inst = Instance::new("Test_Class")
            .with("B", true)
            .with("S", "a<b>&\"c'\r\n\t")
            .with("U8", 255u8)
            .with("U16", 65535u16)
            .with("U32", 4_294_967_295u32)
            .with("U64", u64::MAX)
            .with("I8", -128i8)
            .with("I16", -32768i16)
            .with("I32", i32::MIN)
            .with("I64", i64::MIN)
            .with("R32", 1.5f32)
            .with("R64", -2.25e-300f64)
            .with("C16", CimValue::Char16('Ω'))
            .with("DT", when)
            .with("IV", interval)
            .with("Ref", "C.K=\"v\"".parse::<ObjectPath>().unwrap())
            .with_typed("Nul", PropertyValue::Null, CimType::Uint16)
            .with("Arr", vec![1u16, 2, 3]);

        let back = Instance::from_xml(&inst.to_xml()).unwrap();

        assert_eq!(back, inst);
    }

    #[test]
    fn array_with_null_element_round_trips() {
        let inst = Instance::new("C").with(
            "A",
            PropertyValue::Array(vec![Some(CimValue::String("x".into())), None]),
        );

        let xml = inst.to_xml();
        let back = Instance::from_xml(&xml).unwrap();

        assert!(xml.contains("<VALUE.NULL/>"));
        assert_eq!(back, inst);
    }

    #[test]
    fn reference_property_round_trips_as_instance_path() {
        let path: ObjectPath = r#"\\HOST\root\virtualization\v2:Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="BAA72B74""#
        .parse()
        .unwrap();
        let inst = Instance::new("Msvm_AffectedJobElement").with("AffectedElement", path.clone());

        let xml = inst.to_xml();
        let back = Instance::from_xml(&xml).unwrap();

        assert!(xml.contains(
            "<PROPERTY.REFERENCE NAME=\"AffectedElement\"><VALUE.REFERENCE><INSTANCEPATH>"
        ));
        assert_eq!(back.get_reference("AffectedElement").unwrap(), Some(path));
    }

    #[test]
    fn local_instance_path_reference_is_read() {
        let xml = r#"<INSTANCE CLASSNAME="A"><PROPERTY.REFERENCE NAME="R" REFERENCECLASS="Msvm_ConcreteJob"><VALUE.REFERENCE>
        <LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH>
        <INSTANCENAME CLASSNAME="Msvm_ConcreteJob"><KEYBINDING NAME="InstanceID"><KEYVALUE VALUETYPE="string">J1</KEYVALUE></KEYBINDING></INSTANCENAME>
        </LOCALINSTANCEPATH></VALUE.REFERENCE></PROPERTY.REFERENCE></INSTANCE>"#;

        let inst = Instance::from_xml(xml).unwrap();

        let r = inst.get_reference("R").unwrap().unwrap();
        assert_eq!(r.namespace.as_deref(), Some(r"root\virtualization\v2"));
        assert_eq!(r.key("InstanceID"), Some("J1"));
        assert_eq!(
            inst.property("R").unwrap().reference_class.as_deref(),
            Some("Msvm_ConcreteJob")
        );
    }

    #[test]
    fn embedded_instance_qualifier_is_kept_and_exposed() {
        let xml = r#"<INSTANCE CLASSNAME="Outer"><PROPERTY NAME="E" TYPE="string"><QUALIFIER NAME="HyperVEmbeddedInstance" TYPE="string" TOSUBCLASS="false"><VALUE>Inner</VALUE></QUALIFIER><VALUE>&lt;INSTANCE CLASSNAME="Inner"&gt;&lt;/INSTANCE&gt;</VALUE></PROPERTY></INSTANCE>"#;

        let inst = Instance::from_xml(xml).unwrap();

        let p = inst.property("E").unwrap();
        assert_eq!(p.embedded_instance.as_deref(), Some("Inner"));
        assert_eq!(
            p.qualifiers[0].attributes,
            vec![("TOSUBCLASS".to_owned(), "false".to_owned())]
        );
        assert_eq!(inst.get_embedded("E").unwrap().unwrap().class_name, "Inner");
        assert_eq!(Instance::from_xml(&inst.to_xml()).unwrap(), inst);
    }

    #[test]
    fn nested_embedded_instance_array_inside_embedded_instance_works() {
        let vm1 = Instance::new("Msvm_VirtualMachineToDisks")
            .with("VirtualMachineId", "VM-1")
            .with("DisksToExport", vec!["Microsoft:VM-1\\D1\\0\\0\\D"]);
        let vm2 = Instance::new("Msvm_VirtualMachineToDisks").with("VirtualMachineId", "VM-2");
        let settings = Instance::new("Msvm_CollectionReferencePointExportSettingData")
            .with("BaseReferencePointCollection", "")
            .with_embedded_array(
                "VirtualMachinesToDisksToExport",
                "Msvm_VirtualMachineToDisks",
                &[vm1.clone(), vm2.clone()],
            );
        let outer = Instance::new("Wrapper").with_embedded("Settings", &settings);

        let parsed = Instance::from_xml(&outer.to_xml()).unwrap();
        let inner = parsed.get_embedded("Settings").unwrap().unwrap();
        let items = inner
            .get_embedded_array("VirtualMachinesToDisksToExport")
            .unwrap()
            .unwrap();

        assert_eq!(items, vec![vm1, vm2]);
        assert_eq!(
            inner
                .property("VirtualMachinesToDisksToExport")
                .unwrap()
                .embedded_instance
                .as_deref(),
            Some("Msvm_VirtualMachineToDisks")
        );
    }

    #[test]
    fn cdata_value_is_read_verbatim() {
        let xml = r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"><VALUE><![CDATA[<x>&amp;</x>]]></VALUE></PROPERTY></INSTANCE>"#;

        let inst = Instance::from_xml(xml).unwrap();

        assert_eq!(
            inst.get_string("A").unwrap().as_deref(),
            Some("<x>&amp;</x>")
        );
    }

    #[test]
    fn getter_with_wrong_declared_type_names_property_and_class() {
        let inst = Instance::from_xml(r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="Level" TYPE="string"><VALUE>1</VALUE></PROPERTY></INSTANCE>"#)
        .unwrap();

        let err = inst.get_u16("Level").unwrap_err();

        assert_eq!(
            err,
            CimError::TypeMismatch {
                class: "C".into(),
                property: "Level".into(),
                expected: "uint16".into(),
                found: "string".into()
            }
        );
        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn array_where_scalar_expected_is_type_mismatch() {
        let inst = Instance::new("C").with("A", vec!["x"]);

        let err = inst.get_string("A").unwrap_err();

        assert!(matches!(err, CimError::TypeMismatch { ref found, .. } if found == "string[]"));
        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn scalar_where_array_expected_is_type_mismatch() {
        let inst = Instance::new("C").with("A", "x");

        let err = inst.get_string_array("A").unwrap_err();

        assert!(
            matches!(err, CimError::TypeMismatch { ref expected, .. } if expected == "string[]")
        );
    }

    #[test]
    fn null_array_property_still_rejects_scalar_read() {
        let inst = Instance::from_xml(r#"<INSTANCE CLASSNAME="C"><PROPERTY.ARRAY NAME="A" TYPE="string"></PROPERTY.ARRAY></INSTANCE>"#)
        .unwrap();

        assert_eq!(inst.get_string_array("A").unwrap(), None);
        assert_eq!(
            inst.get_string("A").unwrap_err().kind(),
            CimErrorKind::TypeMismatch
        );
    }

    #[test]
    fn unparsable_number_is_bad_value_naming_property() {
        let err = Instance::from_xml(r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="N" TYPE="uint8"><VALUE>256</VALUE></PROPERTY></INSTANCE>"#)
        .unwrap_err();

        assert!(
            matches!(err, CimError::BadValue { ref class, ref property, .. } if class == "C" && property == "N")
        );
        assert_eq!(err.return_code(), 32776);
    }

    #[test]
    fn interval_read_as_datetime_is_type_mismatch() {
        let inst = Instance::new("C").with("T", CimInterval::ZERO);

        let err = inst.get_datetime("T").unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::TypeMismatch);
        assert_eq!(inst.get_interval("T").unwrap(), Some(CimInterval::ZERO));
    }

    #[test]
    fn absent_property_reads_as_none() {
        let inst = Instance::new("C");

        assert_eq!(inst.get_u32("Missing").unwrap(), None);
    }

    #[test]
    fn property_names_are_case_insensitive() {
        let inst = Instance::new("C").with("InstanceID", "x");

        assert_eq!(inst.get_string("instanceid").unwrap().as_deref(), Some("x"));
    }

    fn xml_rule(text: &str) -> XmlError {
        match Instance::from_xml(text).unwrap_err() {
            CimError::Xml { source, .. } => source,
            other => panic!("expected an XML error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_xml_is_syntax_error_with_32773() {
        let err = Instance::from_xml("<INSTANCE CLASSNAME=\"C\"><PROPERTY").unwrap_err();

        assert_eq!(err.kind(), CimErrorKind::MalformedXml);
        assert_eq!(err.return_code(), 32773);
    }

    #[test]
    fn root_other_than_instance_is_rejected() {
        assert_eq!(
            xml_rule("<CLASS NAME=\"C\"/>"),
            XmlError::UnexpectedRoot {
                found: "CLASS".into()
            }
        );
    }

    #[test]
    fn missing_classname_is_rejected() {
        assert_eq!(
            xml_rule("<INSTANCE/>"),
            XmlError::MissingAttribute {
                element: "INSTANCE".into(),
                attribute: "CLASSNAME"
            }
        );
    }

    #[test]
    fn missing_type_is_rejected() {
        assert_eq!(
            xml_rule(r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A"/></INSTANCE>"#),
            XmlError::MissingAttribute {
                element: "PROPERTY".into(),
                attribute: "TYPE"
            }
        );
    }

    #[test]
    fn unknown_type_is_rejected() {
        assert_eq!(
            xml_rule(r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="uint128"/></INSTANCE>"#),
            XmlError::UnknownType {
                property: "A".into(),
                found: "uint128".into()
            }
        );
    }

    #[test]
    fn value_array_in_scalar_property_is_rejected() {
        assert_eq!(
            xml_rule(
                r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"><VALUE.ARRAY/></PROPERTY></INSTANCE>"#
            ),
            XmlError::UnexpectedElement {
                element: "VALUE.ARRAY".into(),
                parent: "PROPERTY".into()
            }
        );
    }

    #[test]
    fn two_values_in_a_property_are_rejected() {
        assert_eq!(
            xml_rule(
                r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"><VALUE>a</VALUE><VALUE>b</VALUE></PROPERTY></INSTANCE>"#
            ),
            XmlError::UnexpectedElement {
                element: "VALUE".into(),
                parent: "PROPERTY".into()
            }
        );
    }

    #[test]
    fn element_inside_value_is_rejected() {
        assert_eq!(
            xml_rule(
                r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"><VALUE><b/></VALUE></PROPERTY></INSTANCE>"#
            ),
            XmlError::UnexpectedElement {
                element: "b".into(),
                parent: "VALUE".into()
            }
        );
    }

    #[test]
    fn text_in_instance_is_rejected() {
        assert_eq!(
            xml_rule(r#"<INSTANCE CLASSNAME="C">junk</INSTANCE>"#),
            XmlError::UnexpectedText {
                element: "INSTANCE".into()
            }
        );
    }

    #[test]
    fn duplicate_property_is_rejected() {
        assert_eq!(
            xml_rule(
                r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"/><PROPERTY NAME="a" TYPE="string"/></INSTANCE>"#
            ),
            XmlError::DuplicateProperty {
                property: "a".into()
            }
        );
    }

    #[test]
    fn duplicate_attribute_is_rejected() {
        assert!(matches!(
            xml_rule(r#"<INSTANCE CLASSNAME="C" CLASSNAME="D"/>"#),
            XmlError::DuplicateAttribute { .. } | XmlError::Syntax(_)
        ));
    }

    #[test]
    fn unknown_entity_is_rejected() {
        assert_eq!(
            xml_rule(
                r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string"><VALUE>&foo;</VALUE></PROPERTY></INSTANCE>"#
            ),
            XmlError::Entity("foo".into())
        );
    }

    #[test]
    fn content_after_root_is_rejected() {
        assert_eq!(
            xml_rule(r#"<INSTANCE CLASSNAME="C"/><INSTANCE CLASSNAME="D"/>"#),
            XmlError::TrailingContent
        );
    }

    #[test]
    fn unclosed_root_is_rejected() {
        assert_eq!(
            xml_rule(r#"<INSTANCE CLASSNAME="C">"#),
            XmlError::Unclosed {
                element: "INSTANCE".into()
            }
        );
    }

    #[test]
    fn empty_document_is_rejected() {
        assert_eq!(xml_rule("  <?xml version=\"1.0\"?>  "), XmlError::NoElement);
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let text = format!(
            "{}{}",
            "<INSTANCE CLASSNAME=\"C\">".repeat(100),
            "</INSTANCE>".repeat(100)
        );

        assert_eq!(xml_rule(&text), XmlError::TooDeep { max: 64 });
    }

    #[test]
    fn bad_propagated_attribute_is_rejected() {
        assert_eq!(
            xml_rule(
                r#"<INSTANCE CLASSNAME="C"><PROPERTY NAME="A" TYPE="string" PROPAGATED="maybe"/></INSTANCE>"#
            ),
            XmlError::BadBooleanAttribute {
                element: "PROPERTY".into(),
                attribute: "PROPAGATED".into(),
                found: "maybe".into()
            }
        );
    }

    #[test]
    fn embedded_parse_error_names_outer_property_and_keeps_inner_code() {
        let inst = Instance::new("Outer").with("E", "<INSTANCE CLASSNAME=\"I\"><PROPERTY NAME=\"N\" TYPE=\"uint8\"><VALUE>x</VALUE></PROPERTY></INSTANCE>");

        let err = inst.get_embedded("E").unwrap_err();

        assert_eq!(err.property(), Some("E"));
        assert_eq!(err.return_code(), 32776);
        assert!(err.to_string().contains("Outer.E"));
    }

    #[test]
    fn every_truncation_of_a_valid_document_fails_cleanly() {
        let doc = VERBOSE;

        let accepted: Vec<usize> = (0..doc.len())
            .filter(|&n| doc.is_char_boundary(n))
            .filter(|&n| Instance::from_xml(&doc[..n]).is_ok())
            .collect();

        // Only cuts inside the trailing newline after </INSTANCE> may parse.
        assert!(
            accepted.iter().all(|&n| n >= doc.trim_end().len()),
            "{accepted:?}"
        );
    }

    fn scalar_strategy() -> impl proptest::strategy::Strategy<Value = CimValue> {
        use proptest::prelude::*;
        prop_oneof![
            any::<bool>().prop_map(CimValue::Boolean),
            "[^\\x00]{0,24}".prop_map(CimValue::String),
            any::<u8>().prop_map(CimValue::Uint8),
            any::<u16>().prop_map(CimValue::Uint16),
            any::<u32>().prop_map(CimValue::Uint32),
            any::<u64>().prop_map(CimValue::Uint64),
            any::<i8>().prop_map(CimValue::Sint8),
            any::<i64>().prop_map(CimValue::Sint64),
            proptest::num::f64::NORMAL.prop_map(CimValue::Real64),
            proptest::num::f32::NORMAL.prop_map(CimValue::Real32),
            (1u32..0xD7FF).prop_map(|c| CimValue::Char16(char::from_u32(c).unwrap_or('x'))),
            (0u64..86_400_000_000_000).prop_map(|m| CimValue::Interval(
                CimInterval::try_from(std::time::Duration::from_micros(m)).unwrap()
            )),
        ]
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_instances_round_trip_through_cim_xml(
            class in "[A-Za-z_][A-Za-z0-9_]{0,20}",
            props in proptest::collection::vec(
                (proptest::option::of(scalar_strategy()), proptest::collection::vec(proptest::option::of(scalar_strategy()), 0..3), proptest::bool::ANY),
                0..6,
            ),
        ) {
            let mut inst = Instance::new(&class);
            for (i, (scalar, array, as_array)) in props.into_iter().enumerate() {
                let name = format!("P{i}");
                if as_array {
                    // Arrays are homogeneous: keep the elements of the first element's type.
                    let t = array.iter().flatten().next().map(CimValue::cim_type).unwrap_or(CimType::String);
                    let items: Vec<Option<CimValue>> =
                        array.into_iter().filter(|v| v.as_ref().is_none_or(|v| v.cim_type() == t)).collect();
                    inst.set(&name, PropertyValue::Array(items), t);
                } else {
                    let t = scalar.as_ref().map(CimValue::cim_type).unwrap_or(CimType::Uint32);
                    inst.set(&name, scalar.map_or(PropertyValue::Null, PropertyValue::Scalar), t);
                }
            }

            let back = Instance::from_xml(&inst.to_xml()).unwrap();

            proptest::prop_assert_eq!(back, inst);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = Instance::from_xml(&text);
        }

        #[test]
        fn mutated_valid_document_never_panics(at in 0usize..1800, byte in proptest::num::u8::ANY) {
            let mut bytes = VERBOSE.as_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(text) = String::from_utf8(bytes) {
                let _ = Instance::from_xml(&text);
            }
        }
    }

    #[test]
    fn leading_byte_order_mark_is_accepted() {
        let inst = Instance::from_xml("\u{feff}<INSTANCE CLASSNAME=\"C\"/>").unwrap();

        assert_eq!(inst.class_name, "C");
    }

    /// Constructed in the shape of GetText_(1) output recorded from a Hyper-V
    /// host (hyperv-api.md §6.1, [NOVA-STUBS]): system properties, doubled
    /// backslashes in `__RELPATH`, an empty `PROPERTY.ARRAY` for a NULL array,
    /// a zero interval in a `datetime`, NULL datetime and boolean.
    const RECORDED_SHAPE: &str = r#"<INSTANCE CLASSNAME="Msvm_MemorySettingData"><PROPERTY NAME="__PATH" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>\\HOSTA\root\virtualization:Msvm_MemorySettingData.InstanceID="Microsoft:11111111-2222-3333-4444-555555555555\\4764334d-e001-4176-82ee-5594ec9b530e"</VALUE></PROPERTY><PROPERTY NAME="__RELPATH" CLASSORIGIN="___SYSTEM" TYPE="string"><VALUE>Msvm_MemorySettingData.InstanceID="Microsoft:11111111-2222-3333-4444-555555555555\\4764334d-e001-4176-82ee-5594ec9b530e"</VALUE></PROPERTY><PROPERTY NAME="__GENUS" CLASSORIGIN="___SYSTEM" TYPE="sint32"><VALUE>2</VALUE></PROPERTY><PROPERTY NAME="AutomaticAllocation" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="boolean"><VALUE>TRUE</VALUE></PROPERTY><PROPERTY NAME="ThreadsEnabled" CLASSORIGIN="Msvm_ProcessorSettingData" TYPE="boolean"></PROPERTY><PROPERTY.ARRAY NAME="HostResource" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="string"></PROPERTY.ARRAY><PROPERTY NAME="AutomaticStartupActionDelay" CLASSORIGIN="Msvm_VirtualSystemGlobalSettingData" PROPAGATED="true" TYPE="datetime"><VALUE>00000000000000.000000:000</VALUE></PROPERTY><PROPERTY NAME="CreationTime" CLASSORIGIN="CIM_VirtualSystemSettingData" PROPAGATED="true" TYPE="datetime"></PROPERTY><PROPERTY NAME="InstanceID" CLASSORIGIN="CIM_SettingData" TYPE="string"><VALUE>Microsoft:11111111-2222-3333-4444-555555555555\4764334d-e001-4176-82ee-5594ec9b530e</VALUE></PROPERTY><PROPERTY NAME="Limit" CLASSORIGIN="CIM_ResourceAllocationSettingData" TYPE="uint64"><VALUE>512</VALUE></PROPERTY></INSTANCE>"#;

    #[test]
    fn recorded_get_text_shape_reads_every_property() {
        let inst = Instance::from_xml(RECORDED_SHAPE).unwrap();
        let relpath: ObjectPath = inst
            .get_string("__RELPATH")
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        let instance_id = inst.get_string("InstanceID").unwrap().unwrap();

        assert_eq!(relpath.key("InstanceID"), Some(instance_id.as_str()));
        assert_eq!(
            inst.system_path().unwrap().unwrap().server.as_deref(),
            Some("HOSTA")
        );
        assert_eq!(inst.get_bool("AutomaticAllocation").unwrap(), Some(true));
        assert_eq!(inst.get_bool("ThreadsEnabled").unwrap(), None);
        assert_eq!(inst.get_string_array("HostResource").unwrap(), None);
        assert_eq!(
            inst.get_interval("AutomaticStartupActionDelay").unwrap(),
            Some(CimInterval::ZERO)
        );
        assert_eq!(inst.get_datetime("CreationTime").unwrap(), None);
        assert_eq!(inst.get_u64("Limit").unwrap(), Some(512));
    }
}
