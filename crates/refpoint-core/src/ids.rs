//! Identifier forms: GUID strings and the `InstanceID` shapes Hyper-V uses
//! (`reference/hyperv-api.md` §1.3, §6.2), plus refpoint's resilient
//! change-tracking (RCT) identifier.
//!
//! | object | form |
//! |---|---|
//! | `Msvm_ComputerSystem.Name` | `<VM GUID>` (upper case, no braces) |
//! | VM `Msvm_VirtualSystemSettingData.InstanceID` | `Microsoft:<VM GUID>` |
//! | snapshot `Msvm_VirtualSystemSettingData.InstanceID` | `Microsoft:<SNAPSHOT GUID>` |
//! | `Msvm_StorageAllocationSettingData.InstanceID` | `Microsoft:<VM GUID>\<disk GUID>\0\<index>\D` |
//! | `Msvm_VirtualSystemReferencePoint.InstanceID` | `Microsoft:<VM GUID>\<RP GUID>` |
//! | RCT identifier | `rct:{<disk GUID>}:<epoch>` |
//!
//! Parsers accept any GUID case, optional braces, and doubled backslashes
//! (an object-path key value copied without unescaping).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Prefix of every Hyper-V `InstanceID` modelled here.
pub const MICROSOFT_PREFIX: &str = "Microsoft:";

/// Errors parsing an identifier string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is not a GUID (with or without braces).
    #[error("{text:?} is not a GUID")]
    NotAGuid {
        /// The offending text.
        text: String,
    },
    /// The InstanceID does not start with `Microsoft:`.
    #[error("{text:?} does not start with \"Microsoft:\"")]
    MissingPrefix {
        /// The offending InstanceID.
        text: String,
    },
    /// The InstanceID has the wrong number of `\`-separated parts.
    #[error("{text:?} has {found} part(s), expected {expected}")]
    WrongShape {
        /// The offending InstanceID.
        text: String,
        /// Parts expected.
        expected: &'static str,
        /// Parts found.
        found: usize,
    },
    /// An RCT identifier is not `rct:{<GUID>}:<epoch>`.
    #[error("{text:?} is not a refpoint RCT identifier (rct:{{<disk GUID>}}:<epoch>)")]
    BadRctId {
        /// The offending text.
        text: String,
    },
}

/// The CIM string form of a GUID: upper case, hyphenated, no braces
/// (e.g. `Msvm_ComputerSystem.Name`).
pub fn cim_guid(guid: &Uuid) -> String {
    let mut buf = Uuid::encode_buffer();
    guid.hyphenated().encode_upper(&mut buf).to_owned()
}

/// Parses a GUID in any case, with or without `{}`.
///
/// # Errors
/// [`IdError::NotAGuid`].
pub fn parse_guid(text: &str) -> Result<Uuid, IdError> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(t);
    // Only the hyphenated 36-character form: InstanceIDs never use the others.
    if inner.len() != 36 {
        return Err(IdError::NotAGuid {
            text: text.to_owned(),
        });
    }
    Uuid::parse_str(inner).map_err(|_| IdError::NotAGuid {
        text: text.to_owned(),
    })
}

/// `Microsoft:<GUID>`: a VM's or a snapshot's `Msvm_VirtualSystemSettingData.InstanceID`.
pub fn settings_instance_id(guid: &Uuid) -> String {
    format!("{MICROSOFT_PREFIX}{}", cim_guid(guid))
}

/// `Microsoft:<VM GUID>\<disk GUID>\0\<index>\D`: the SASD `InstanceID` of
/// the disk at controller 0, location `index`.
pub fn disk_instance_id(vm: &Uuid, disk: &Uuid, index: u32) -> String {
    format!(
        "{MICROSOFT_PREFIX}{}\\{}\\0\\{index}\\D",
        cim_guid(vm),
        cim_guid(disk)
    )
}

/// `Microsoft:<VM GUID>\<RP GUID>`: a `Msvm_VirtualSystemReferencePoint.InstanceID`.
pub fn reference_point_instance_id(vm: &Uuid, rp: &Uuid) -> String {
    format!("{MICROSOFT_PREFIX}{}\\{}", cim_guid(vm), cim_guid(rp))
}

/// Splits `Microsoft:<a>\<b>...` into its parts, tolerating doubled `\`.
fn instance_id_parts(text: &str) -> Result<Vec<&str>, IdError> {
    let t = text.trim();
    let rest = t
        .get(..MICROSOFT_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(MICROSOFT_PREFIX))
        .and_then(|_| t.get(MICROSOFT_PREFIX.len()..))
        .ok_or_else(|| IdError::MissingPrefix {
            text: text.to_owned(),
        })?;
    Ok(rest.split('\\').filter(|s| !s.is_empty()).collect())
}

/// Parses a `Microsoft:<GUID>` settings InstanceID (or a bare GUID) into the GUID.
///
/// # Errors
/// [`IdError::NotAGuid`], [`IdError::WrongShape`].
pub fn parse_settings_instance_id(text: &str) -> Result<Uuid, IdError> {
    if let Ok(g) = parse_guid(text) {
        return Ok(g);
    }
    let parts = instance_id_parts(text)?;
    match parts.as_slice() {
        [g] => parse_guid(g),
        _ => Err(IdError::WrongShape {
            text: text.to_owned(),
            expected: "Microsoft:<GUID>",
            found: parts.len(),
        }),
    }
}

/// Parses a reference point id: `Microsoft:<VM GUID>\<RP GUID>`, or a bare
/// `<RP GUID>`. Returns `(VM GUID if present, RP GUID)`.
///
/// # Errors
/// [`IdError::NotAGuid`], [`IdError::MissingPrefix`], [`IdError::WrongShape`].
pub fn parse_reference_point_id(text: &str) -> Result<(Option<Uuid>, Uuid), IdError> {
    if let Ok(g) = parse_guid(text) {
        return Ok((None, g));
    }
    let parts = instance_id_parts(text)?;
    match parts.as_slice() {
        [vm, rp] => Ok((Some(parse_guid(vm)?), parse_guid(rp)?)),
        _ => Err(IdError::WrongShape {
            text: text.to_owned(),
            expected: "Microsoft:<VM GUID>\\<RP GUID>",
            found: parts.len(),
        }),
    }
}

/// Compares two InstanceIDs as Hyper-V does: GUID case and doubled
/// backslashes do not matter.
pub fn instance_ids_equal(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        let mut out = String::with_capacity(s.len());
        let mut prev_backslash = false;
        for c in s.trim().chars() {
            if c == '\\' && prev_backslash {
                continue;
            }
            prev_backslash = c == '\\';
            out.extend(c.to_uppercase());
        }
        out
    };
    norm(a) == norm(b)
}

/// refpoint's resilient change-tracking identifier:
/// `rct:{<disk GUID>}:<epoch>` (`ResilientChangeTrackingIdentifiers[i]`).
///
/// The string is opaque to CIM clients (Hyper-V documents no format,
/// `reference/hyperv-api.md` §1.3). `epoch` counts, per virtual disk, the
/// recovery snapshots taken of it: epoch 0 is everything written before the
/// first snapshot, epoch `n` is recorded by the differencing layer that the
/// `n`-th snapshot created. A reference point made from that snapshot carries
/// epoch `n`: "changed since the reference point" is the union of epochs `>= n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RctId {
    /// The virtual disk's GUID (the `<disk GUID>` of its SASD InstanceID).
    pub disk: Uuid,
    /// Tracking epoch number, per disk, monotonically increasing.
    pub epoch: u64,
}

impl fmt::Display for RctId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rct:{{{}}}:{}", cim_guid(&self.disk), self.epoch)
    }
}

impl FromStr for RctId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdError::BadRctId { text: s.to_owned() };
        let rest = s.strip_prefix("rct:{").ok_or_else(bad)?;
        let (guid, epoch) = rest.split_once("}:").ok_or_else(bad)?;
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(RctId {
            disk: parse_guid(guid).map_err(|_| bad())?,
            epoch: epoch.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: Uuid = Uuid::from_u128(0x49c4baf3_4b25_4406_8c4b_d39e65c32385);
    const DISK: Uuid = Uuid::from_u128(0x83f8638b_8dca_4152_9eda_2ca8b33039b4);

    #[test]
    fn cim_guid_is_upper_case_hyphenated() {
        assert_eq!(cim_guid(&VM), "49C4BAF3-4B25-4406-8C4B-D39E65C32385");
    }

    #[test]
    fn disk_instance_id_has_hyper_v_sasd_form() {
        let id = disk_instance_id(&VM, &DISK, 1);
        assert_eq!(
            id,
            "Microsoft:49C4BAF3-4B25-4406-8C4B-D39E65C32385\\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\\0\\1\\D"
        );
    }

    #[test]
    fn reference_point_id_round_trips_and_tolerates_doubled_backslash() {
        let id = reference_point_instance_id(&VM, &DISK);
        assert_eq!(parse_reference_point_id(&id), Ok((Some(VM), DISK)));
        let doubled = id.replace('\\', "\\\\").to_lowercase();
        assert_eq!(parse_reference_point_id(&doubled), Ok((Some(VM), DISK)));
        assert!(instance_ids_equal(&id, &doubled));
    }

    #[test]
    fn reference_point_id_with_three_parts_is_wrong_shape() {
        let text = format!("Microsoft:{VM}\\{DISK}\\{DISK}");
        assert!(matches!(
            parse_reference_point_id(&text),
            Err(IdError::WrongShape { found: 3, .. })
        ));
    }

    #[test]
    fn reference_point_id_without_prefix_is_refused() {
        let text = format!("Contoso:{VM}\\{DISK}");
        assert!(matches!(
            parse_reference_point_id(&text),
            Err(IdError::MissingPrefix { .. })
        ));
    }

    #[test]
    fn settings_id_accepts_bare_and_braced_guid() {
        assert_eq!(parse_settings_instance_id(&format!("{{{VM}}}")), Ok(VM));
        assert_eq!(
            parse_settings_instance_id(&settings_instance_id(&VM)),
            Ok(VM)
        );
        assert!(matches!(
            parse_settings_instance_id("Microsoft:not-a-guid"),
            Err(IdError::NotAGuid { .. })
        ));
    }

    #[test]
    fn rct_id_round_trips() {
        let id = RctId {
            disk: DISK,
            epoch: 42,
        };
        let text = id.to_string();
        assert_eq!(text, "rct:{83F8638B-8DCA-4152-9EDA-2CA8B33039B4}:42");
        assert_eq!(text.parse::<RctId>(), Ok(id));
    }

    #[test]
    fn rct_id_with_signed_or_missing_epoch_is_refused() {
        for bad in [
            "rct:{83F8638B-8DCA-4152-9EDA-2CA8B33039B4}:",
            "rct:{83F8638B-8DCA-4152-9EDA-2CA8B33039B4}:+1",
            "rct:83F8638B-8DCA-4152-9EDA-2CA8B33039B4:1",
            "rct:{zz}:1",
        ] {
            assert!(
                matches!(bad.parse::<RctId>(), Err(IdError::BadRctId { .. })),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn reference_point_id_parses_back_to_its_guids(vm in any::<u128>(), rp in any::<u128>()) {
            let (vm, rp) = (Uuid::from_u128(vm), Uuid::from_u128(rp));
            prop_assert_eq!(parse_reference_point_id(&reference_point_instance_id(&vm, &rp)), Ok((Some(vm), rp)));
        }

        #[test]
        fn rct_id_parses_back(disk in any::<u128>(), epoch in any::<u64>()) {
            let id = RctId { disk: Uuid::from_u128(disk), epoch };
            prop_assert_eq!(id.to_string().parse::<RctId>(), Ok(id));
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,80}") {
            let _ = parse_reference_point_id(&text);
            let _ = parse_settings_instance_id(&text);
            let _ = text.parse::<RctId>();
        }
    }
}
