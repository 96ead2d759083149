//! Typed CIM instances (DSP0201 `INSTANCE`) with CIM type checking.
//!
//! Property and class names compare case-insensitively, as CIM names do.
//! A property absent from an instance reads as `Ok(None)` from every getter,
//! exactly like a NULL one; callers that need a value use the `require_*`
//! helpers of the class models, which return [`CimError::MissingProperty`].

use crate::datetime::{CimDateTime, CimInterval};
use crate::error::CimError;
use crate::path::ObjectPath;
use crate::value::{CimType, CimValue, PropertyValue};

/// Names of the qualifiers that mark a string property as an embedded instance.
pub const EMBEDDED_INSTANCE_QUALIFIERS: [&str; 2] = ["EmbeddedInstance", "HyperVEmbeddedInstance"];

/// A DSP0201 `QUALIFIER` on an instance or property.
#[derive(Debug, Clone, PartialEq)]
pub struct Qualifier {
    /// `NAME`, e.g. `EmbeddedInstance`.
    pub name: String,
    /// `TYPE`.
    pub cim_type: CimType,
    /// `VALUE` or `VALUE.ARRAY`.
    pub value: PropertyValue,
    /// Other attributes (`PROPAGATED`, `OVERRIDABLE`, `TOSUBCLASS`, `TOINSTANCE`,
    /// `TRANSLATABLE`, `xml:lang`), kept in document order for round trips.
    pub attributes: Vec<(String, String)>,
}

/// One property of an instance (`PROPERTY`, `PROPERTY.ARRAY` or `PROPERTY.REFERENCE`).
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// `NAME`.
    pub name: String,
    /// Declared `TYPE` ([`CimType::Reference`] for `PROPERTY.REFERENCE`).
    pub cim_type: CimType,
    /// The value; NULL when the element has no `VALUE`.
    pub value: PropertyValue,
    /// True for `PROPERTY.ARRAY` (also when the value is NULL).
    pub is_array: bool,
    /// Class named by an `EmbeddedInstance`/`HyperVEmbeddedInstance` qualifier.
    pub embedded_instance: Option<String>,
    /// `CLASSORIGIN` (verbose GetText_ form; `___SYSTEM` for `__PATH` etc.).
    pub class_origin: Option<String>,
    /// `PROPAGATED="true"` (inherited property in the verbose form).
    pub propagated: bool,
    /// `REFERENCECLASS` of a `PROPERTY.REFERENCE`.
    pub reference_class: Option<String>,
    /// Qualifiers in document order (including the embedded-instance one).
    pub qualifiers: Vec<Qualifier>,
    /// Other attributes (`EmbeddedObject`, `ARRAYSIZE`, `xml:lang`, …) in document order.
    pub extra_attributes: Vec<(String, String)>,
}

impl Property {
    /// A property with no qualifiers or verbose-form attributes; `is_array`
    /// follows the value.
    pub fn new(name: &str, cim_type: CimType, value: PropertyValue) -> Property {
        Property {
            name: name.to_owned(),
            cim_type,
            is_array: matches!(value, PropertyValue::Array(_)),
            value,
            embedded_instance: None,
            class_origin: None,
            propagated: false,
            reference_class: None,
            qualifiers: Vec::new(),
            extra_attributes: Vec::new(),
        }
    }

    /// True for WMI system properties (`__PATH`, `__CLASS`, …).
    pub fn is_system(&self) -> bool {
        self.name.starts_with("__")
    }

    /// The declared shape as text: `uint16`, `string[]`.
    pub fn declared_shape(&self) -> String {
        shape(self.cim_type, self.is_array)
    }
}

fn shape(t: CimType, array: bool) -> String {
    if array {
        format!("{t}[]")
    } else {
        t.as_str().to_owned()
    }
}

/// A CIM instance: class name, qualifiers and properties in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `CLASSNAME`.
    pub class_name: String,
    /// Properties in document order (verbose forms include `__PATH` etc.).
    pub properties: Vec<Property>,
    /// Instance-level qualifiers.
    pub qualifiers: Vec<Qualifier>,
}

macro_rules! scalar_getter {
    ($(#[$m:meta])* $fn:ident, $t:ty, $cim:ident) => {
        $(#[$m])*
        ///
        /// # Errors
        /// [`CimError::TypeMismatch`] naming the class and property when the
        /// declared type or arity differs.
        pub fn $fn(&self, name: &str) -> Result<Option<$t>, CimError> {
            match self.scalar(name, CimType::$cim)? {
                Some(CimValue::$cim(v)) => Ok(Some(v.clone())),
                Some(other) => Err(self.mismatch(name, CimType::$cim, false, other.cim_type(), false)),
                None => Ok(None),
            }
        }
    };
}

macro_rules! array_getter {
    ($(#[$m:meta])* $fn:ident, $t:ty, $cim:ident) => {
        $(#[$m])*
        ///
        /// # Errors
        /// [`CimError::TypeMismatch`] when the declared type or arity differs;
        /// [`CimError::InvalidValue`] when an element is NULL.
        pub fn $fn(&self, name: &str) -> Result<Option<Vec<$t>>, CimError> {
            let Some(items) = self.array(name, CimType::$cim)? else { return Ok(None) };
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Some(CimValue::$cim(v)) => Ok(v.clone()),
                    Some(other) => Err(self.mismatch(name, CimType::$cim, true, other.cim_type(), true)),
                    None => Err(self.null_element(name, i)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
    };
}

impl Instance {
    /// An instance of `class_name` with no properties.
    pub fn new(class_name: &str) -> Instance {
        Instance {
            class_name: class_name.to_owned(),
            properties: Vec::new(),
            qualifiers: Vec::new(),
        }
    }

    /// Builder: sets `name` to `value`, typing it from the value (a NULL or an
    /// empty array without a known type is typed `string`; use
    /// [`Instance::with_typed`] to force a type).
    pub fn with(mut self, name: &str, value: impl Into<PropertyValue>) -> Instance {
        let value = value.into();
        let cim_type = value
            .inferred_type()
            .or_else(|| self.property(name).map(|p| p.cim_type))
            .unwrap_or(CimType::String);
        self.set(name, value, cim_type);
        self
    }

    /// Builder: sets `name` to `value` with an explicit type.
    pub fn with_typed(
        mut self,
        name: &str,
        value: impl Into<PropertyValue>,
        cim_type: CimType,
    ) -> Instance {
        self.set(name, value.into(), cim_type);
        self
    }

    /// Builder: sets `name` to the CIM-XML of `embedded` (a string property
    /// with an `EmbeddedInstance` qualifier naming its class).
    pub fn with_embedded(mut self, name: &str, embedded: &Instance) -> Instance {
        self.set(
            name,
            PropertyValue::from(embedded.to_xml()),
            CimType::String,
        );
        self.mark_embedded(name, &embedded.class_name);
        self
    }

    /// Builder: sets `name` to an array of embedded instances of `class_name`.
    pub fn with_embedded_array(
        mut self,
        name: &str,
        class_name: &str,
        items: &[Instance],
    ) -> Instance {
        let value = PropertyValue::Array(
            items
                .iter()
                .map(|i| Some(CimValue::String(i.to_xml())))
                .collect(),
        );
        self.set(name, value, CimType::String);
        self.mark_embedded(name, class_name);
        self
    }

    fn mark_embedded(&mut self, name: &str, class_name: &str) {
        if let Some(p) = self.property_mut(name) {
            p.embedded_instance = Some(class_name.to_owned());
        }
    }

    /// Sets (replacing value, type and arity) or appends property `name`.
    /// Qualifiers and verbose attributes of an existing property are kept.
    pub fn set(&mut self, name: &str, value: PropertyValue, cim_type: CimType) {
        let is_array = matches!(value, PropertyValue::Array(_));
        match self.property_mut(name) {
            Some(p) => {
                p.value = value;
                p.cim_type = cim_type;
                p.is_array = is_array;
            }
            None => self.properties.push(Property::new(name, cim_type, value)),
        }
    }

    /// Sets `name` to NULL, declaring it an array property of `cim_type` when `is_array`.
    pub fn set_null(&mut self, name: &str, cim_type: CimType, is_array: bool) {
        self.set(name, PropertyValue::Null, cim_type);
        if let Some(p) = self.property_mut(name) {
            p.is_array = is_array;
        }
    }

    /// The property called `name` (case-insensitive).
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Mutable access to the property called `name` (case-insensitive).
    pub fn property_mut(&mut self, name: &str) -> Option<&mut Property> {
        self.properties
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// True when the class name equals `class_name` (case-insensitive).
    pub fn is_class(&self, class_name: &str) -> bool {
        self.class_name.eq_ignore_ascii_case(class_name)
    }

    /// [`CimError::WrongClass`] unless the instance is of `class_name`.
    ///
    /// # Errors
    /// [`CimError::WrongClass`] (→ 32776).
    pub fn expect_class(&self, class_name: &str) -> Result<(), CimError> {
        if self.is_class(class_name) {
            Ok(())
        } else {
            Err(CimError::WrongClass {
                expected: class_name.to_owned(),
                found: self.class_name.clone(),
            })
        }
    }

    fn mismatch(
        &self,
        name: &str,
        expected: CimType,
        expected_array: bool,
        found: CimType,
        found_array: bool,
    ) -> CimError {
        CimError::TypeMismatch {
            class: self.class_name.clone(),
            property: self
                .property(name)
                .map_or_else(|| name.to_owned(), |p| p.name.clone()),
            expected: shape(expected, expected_array),
            found: shape(found, found_array),
        }
    }

    fn null_element(&self, name: &str, index: usize) -> CimError {
        CimError::InvalidValue {
            class: self.class_name.clone(),
            property: name.to_owned(),
            value: "NULL".to_owned(),
            reason: format!("array element {index} is NULL"),
        }
    }

    /// The scalar value of `name` after checking declared type and arity.
    ///
    /// # Errors
    /// [`CimError::TypeMismatch`] when the property is an array or declared
    /// with another type.
    pub fn scalar(&self, name: &str, cim_type: CimType) -> Result<Option<&CimValue>, CimError> {
        let Some(p) = self.property(name) else {
            return Ok(None);
        };
        if p.is_array || p.cim_type != cim_type {
            return Err(self.mismatch(name, cim_type, false, p.cim_type, p.is_array));
        }
        match &p.value {
            PropertyValue::Null => Ok(None),
            PropertyValue::Scalar(v) => Ok(Some(v)),
            PropertyValue::Array(_) => Err(self.mismatch(name, cim_type, false, p.cim_type, true)),
        }
    }

    /// The array value of `name` after checking declared type and arity.
    ///
    /// # Errors
    /// [`CimError::TypeMismatch`] when the property is a scalar or declared
    /// with another type.
    pub fn array(
        &self,
        name: &str,
        cim_type: CimType,
    ) -> Result<Option<&[Option<CimValue>]>, CimError> {
        let Some(p) = self.property(name) else {
            return Ok(None);
        };
        if !p.is_array || p.cim_type != cim_type {
            return Err(self.mismatch(name, cim_type, true, p.cim_type, p.is_array));
        }
        match &p.value {
            PropertyValue::Null => Ok(None),
            PropertyValue::Array(items) => Ok(Some(items)),
            PropertyValue::Scalar(_) => Err(self.mismatch(name, cim_type, true, p.cim_type, false)),
        }
    }

    scalar_getter!(
        /// `string` property `name`.
        get_string, String, String);
    scalar_getter!(
        /// `boolean` property `name`.
        get_bool, bool, Boolean);
    scalar_getter!(
        /// `uint8` property `name`.
        get_u8, u8, Uint8);
    scalar_getter!(
        /// `uint16` property `name`.
        get_u16, u16, Uint16);
    scalar_getter!(
        /// `uint32` property `name`.
        get_u32, u32, Uint32);
    scalar_getter!(
        /// `uint64` property `name`.
        get_u64, u64, Uint64);
    scalar_getter!(
        /// `sint32` property `name`.
        get_i32, i32, Sint32);
    scalar_getter!(
        /// `sint64` property `name`.
        get_i64, i64, Sint64);
    scalar_getter!(
        /// `reference` property `name` (a `PROPERTY.REFERENCE`).
        get_reference, ObjectPath, Reference);

    array_getter!(
        /// `string[]` property `name`.
        get_string_array, String, String);
    array_getter!(
        /// `uint16[]` property `name`.
        get_u16_array, u16, Uint16);
    array_getter!(
        /// `uint32[]` property `name`.
        get_u32_array, u32, Uint32);
    array_getter!(
        /// `uint64[]` property `name`.
        get_u64_array, u64, Uint64);

    /// `datetime` property `name` holding a timestamp.
    ///
    /// # Errors
    /// [`CimError::TypeMismatch`] when declared otherwise or holding an interval.
    pub fn get_datetime(&self, name: &str) -> Result<Option<CimDateTime>, CimError> {
        match self.scalar(name, CimType::Datetime)? {
            Some(CimValue::Datetime(v)) => Ok(Some(*v)),
            Some(_) => {
                Err(self.interval_mismatch(name, "datetime (timestamp)", "datetime (interval)"))
            }
            None => Ok(None),
        }
    }

    /// `datetime` property `name` holding an interval.
    ///
    /// # Errors
    /// [`CimError::TypeMismatch`] when declared otherwise or holding a timestamp.
    pub fn get_interval(&self, name: &str) -> Result<Option<CimInterval>, CimError> {
        match self.scalar(name, CimType::Datetime)? {
            Some(CimValue::Interval(v)) => Ok(Some(*v)),
            Some(_) => {
                Err(self.interval_mismatch(name, "datetime (interval)", "datetime (timestamp)"))
            }
            None => Ok(None),
        }
    }

    fn interval_mismatch(&self, name: &str, expected: &str, found: &str) -> CimError {
        CimError::TypeMismatch {
            class: self.class_name.clone(),
            property: name.to_owned(),
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }

    /// `string` property `name` holding an embedded instance in CIM-XML.
    ///
    /// # Errors
    /// [`CimError::TypeMismatch`] when not a scalar string; [`CimError::Embedded`]
    /// wrapping the parse error of the embedded document.
    pub fn get_embedded(&self, name: &str) -> Result<Option<Instance>, CimError> {
        let Some(text) = self.get_string(name)? else {
            return Ok(None);
        };
        Instance::from_xml(&text)
            .map(Some)
            .map_err(|e| self.embedded_error(name, None, e))
    }

    /// `string[]` property `name` whose elements are embedded instances
    /// (e.g. `Msvm_CollectionReferencePointExportSettingData.VirtualMachinesToDisksToExport`,
    /// each a `Msvm_VirtualMachineToDisks`).
    ///
    /// # Errors
    /// [`CimError::TypeMismatch`] when not a string array; [`CimError::Embedded`]
    /// naming the element index when one does not parse.
    pub fn get_embedded_array(&self, name: &str) -> Result<Option<Vec<Instance>>, CimError> {
        let Some(items) = self.get_string_array(name)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Instance::from_xml(text).map_err(|e| self.embedded_error(name, Some(i), e))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn embedded_error(&self, name: &str, index: Option<usize>, source: CimError) -> CimError {
        CimError::Embedded {
            class: self.class_name.clone(),
            property: name.to_owned(),
            index,
            source: Box::new(source),
        }
    }

    /// The `__PATH` system property of a verbose instance, parsed.
    ///
    /// # Errors
    /// [`CimError::TypeMismatch`] when `__PATH` is not a string;
    /// [`CimError::Path`] when it does not parse.
    pub fn system_path(&self) -> Result<Option<ObjectPath>, CimError> {
        let Some(text) = self.get_string("__PATH")? else {
            return Ok(None);
        };
        text.parse()
            .map(Some)
            .map_err(|e| CimError::path(&text, Some(format!("{}.__PATH", self.class_name)), e))
    }
}
