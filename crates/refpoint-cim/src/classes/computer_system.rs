//! `Msvm_ComputerSystem`: the virtual machine (hyperv-api.md §1.1).

use super::required;
use crate::error::CimError;
use crate::instance::Instance;
use crate::path::ObjectPath;

/// CIM class name.
pub const COMPUTER_SYSTEM: &str = "Msvm_ComputerSystem";

/// `Msvm_ComputerSystem`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComputerSystem {
    /// `Name` (Key): the VM GUID.
    pub name: String,
    /// `ElementName`: the display name.
    pub element_name: String,
    /// `EnabledState` (uint16; 2 Enabled, 3 Disabled, …), if known.
    pub enabled_state: Option<u16>,
}

impl ComputerSystem {
    /// Object path with both keys, as Hyper-V writes it:
    /// `Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="<GUID>"`.
    pub fn object_path(&self) -> ObjectPath {
        ObjectPath::new(COMPUTER_SYSTEM)
            .with_key("CreationClassName", COMPUTER_SYSTEM)
            .with_key("Name", &self.name)
    }

    /// The instance (with `CreationClassName`).
    pub fn to_instance(&self) -> Instance {
        let mut i = Instance::new(COMPUTER_SYSTEM)
            .with("CreationClassName", COMPUTER_SYSTEM)
            .with("Name", self.name.as_str())
            .with("ElementName", self.element_name.as_str());
        if let Some(state) = self.enabled_state {
            i = i.with("EnabledState", state);
        }
        i
    }

    /// Reads an instance.
    ///
    /// # Errors
    /// [`CimError::WrongClass`], [`CimError::TypeMismatch`],
    /// [`CimError::MissingProperty`] for a missing `Name`.
    pub fn from_instance(inst: &Instance) -> Result<Self, CimError> {
        super::expect_model_class(inst, COMPUTER_SYSTEM)?;
        Ok(ComputerSystem {
            name: required(inst, "Name", inst.get_string("Name")?)?,
            element_name: inst.get_string("ElementName")?.unwrap_or_default(),
            enabled_state: inst.get_u16("EnabledState")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computer_system_round_trips_and_formats_its_path() {
        let cs = ComputerSystem {
            name: "BAA72B74".into(),
            element_name: "vm1".into(),
            enabled_state: Some(2),
        };

        let back =
            ComputerSystem::from_instance(&Instance::from_xml(&cs.to_instance().to_xml()).unwrap())
                .unwrap();

        assert_eq!(back, cs);
        assert_eq!(
            cs.object_path().to_string(),
            r#"Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="BAA72B74""#
        );
    }
}
