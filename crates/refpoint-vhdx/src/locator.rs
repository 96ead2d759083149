//! Parent Locator metadata item (MS-VHDX §2.6.2.6): the link from a
//! differencing file to its parent.
//!
//! ```text
//! 0   LocatorType GUID (must be the VHDX type B04AEFB7-…)
//! 16  Reserved u16, KeyValueCount u16
//! 20  KeyValueCount × { KeyOffset u32, ValueOffset u32, KeyLength u16, ValueLength u16 }
//!     offsets relative to the start of the item; keys/values UTF-16LE, no NUL
//! ```
//!
//! Keys: `parent_linkage` (required, braced DataWriteGuid of the parent),
//! `parent_linkage2` (optional; Hyper-V writes an all-zero GUID, read as
//! absent), `relative_path`, `volume_path`, `absolute_win32_path`.

use uuid::Uuid;
use zerocopy::FromBytes;

use crate::error::ErrorKind;
use crate::format::{
    RawParentLocatorEntry, RawParentLocatorHeader, VHDX_LOCATOR_TYPE_GUID, guid_from_le, parse_guid,
};

/// Size of the locator header in bytes.
const HEADER_SIZE: usize = 20;
/// Size of one key/value entry in bytes.
const ENTRY_SIZE: usize = 12;

/// Which half of a key/value entry an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocatorField {
    /// The key.
    Key,
    /// The value.
    Value,
}

impl std::fmt::Display for LocatorField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LocatorField::Key => "key",
            LocatorField::Value => "value",
        })
    }
}

/// Violations of MS-VHDX §2.6.2.6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocatorError {
    /// §2.6.2.6.1: the item is shorter than its 20-byte header.
    #[error("parent locator: item length {length} is shorter than the 20-byte header")]
    TooShort {
        /// Item length (bytes).
        length: usize,
    },
    /// §2.6.2.6.3: LocatorType is not the VHDX parent locator type.
    #[error(
        "parent locator: LocatorType {found} is not the VHDX type B04AEFB7-D19E-4A81-B789-25B8E9445913"
    )]
    UnknownType {
        /// LocatorType found.
        found: Uuid,
    },
    /// §2.6.2.6.1: KeyValueCount entries do not fit in the item.
    #[error("parent locator: {count} key/value entries do not fit in the {length}-byte item")]
    EntriesOutsideItem {
        /// KeyValueCount.
        count: u16,
        /// Item length (bytes).
        length: usize,
    },
    /// §2.6.2.6.2: offsets and lengths must be non-zero.
    #[error("parent locator entry {index}: {field} offset or length is zero")]
    ZeroOffsetOrLength {
        /// Entry index.
        index: usize,
        /// Key or value.
        field: LocatorField,
    },
    /// §2.6.2.6.2: the string lies outside the item.
    #[error(
        "parent locator entry {index}: {field} [{offset:#x}, +{length}) lies outside the {item_length}-byte item"
    )]
    StringOutsideItem {
        /// Entry index.
        index: usize,
        /// Key or value.
        field: LocatorField,
        /// Offset relative to the item.
        offset: u32,
        /// Length in bytes.
        length: u16,
        /// Item length (bytes).
        item_length: usize,
    },
    /// §2.6.2.6.2: UTF-16LE strings have an even byte length.
    #[error("parent locator entry {index}: {field} length {length} is odd, not UTF-16")]
    OddLength {
        /// Entry index.
        index: usize,
        /// Key or value.
        field: LocatorField,
        /// Length in bytes.
        length: u16,
    },
    /// §2.6.2.6.2: strings must be valid UTF-16LE without NUL characters.
    #[error("parent locator entry {index}: {field} is not valid UTF-16LE or contains NUL")]
    BadString {
        /// Entry index.
        index: usize,
        /// Key or value.
        field: LocatorField,
    },
    /// §2.6.2.6.2: keys must be unique.
    #[error("parent locator: key {key:?} appears more than once")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// §2.6.2.6.3: `parent_linkage` is required.
    #[error("parent locator: required key \"parent_linkage\" is missing")]
    MissingParentLinkage,
    /// §2.6.2.6.3: `parent_linkage` / `parent_linkage2` must hold a GUID.
    #[error("parent locator: {key} value {value:?} is not a GUID")]
    BadLinkage {
        /// `parent_linkage` or `parent_linkage2`.
        key: &'static str,
        /// The value found.
        value: String,
    },
}

impl LocatorError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            LocatorError::UnknownType { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Corrupt,
        }
    }
}

/// A validated VHDX parent locator (MS-VHDX §2.6.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLocator {
    entries: Vec<(String, String)>,
    parent_linkage: Uuid,
    parent_linkage2: Option<Uuid>,
}

impl ParentLocator {
    /// Parses the bytes of the Parent Locator item.
    ///
    /// # Errors
    /// Every [`LocatorError`] variant.
    pub fn parse(item: &[u8]) -> Result<ParentLocator, LocatorError> {
        let (header, _) = RawParentLocatorHeader::read_from_prefix(item)
            .map_err(|_| LocatorError::TooShort { length: item.len() })?;
        let locator_type = guid_from_le(header.locator_type);
        if locator_type != VHDX_LOCATOR_TYPE_GUID {
            return Err(LocatorError::UnknownType {
                found: locator_type,
            });
        }
        let count = header.key_value_count.get();
        let table_end = HEADER_SIZE + ENTRY_SIZE * usize::from(count);
        let table = item
            .get(HEADER_SIZE..table_end)
            .ok_or(LocatorError::EntriesOutsideItem {
                count,
                length: item.len(),
            })?;
        let mut entries: Vec<(String, String)> = Vec::with_capacity(usize::from(count));
        for (index, chunk) in table.chunks_exact(ENTRY_SIZE).enumerate() {
            let raw = RawParentLocatorEntry::read_from_bytes(chunk).map_err(|_| {
                LocatorError::EntriesOutsideItem {
                    count,
                    length: item.len(),
                }
            })?;
            let key = read_string(
                item,
                index,
                LocatorField::Key,
                raw.key_offset.get(),
                raw.key_length.get(),
            )?;
            let value = read_string(
                item,
                index,
                LocatorField::Value,
                raw.value_offset.get(),
                raw.value_length.get(),
            )?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(LocatorError::DuplicateKey { key });
            }
            entries.push((key, value));
        }
        let lookup = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let linkage = lookup("parent_linkage").ok_or(LocatorError::MissingParentLinkage)?;
        let parent_linkage = parse_guid(linkage).ok_or_else(|| LocatorError::BadLinkage {
            key: "parent_linkage",
            value: linkage.clone(),
        })?;
        let parent_linkage2 = match lookup("parent_linkage2") {
            None => None,
            Some(v) => {
                let g = parse_guid(v).ok_or_else(|| LocatorError::BadLinkage {
                    key: "parent_linkage2",
                    value: v.clone(),
                })?;
                (!g.is_nil()).then_some(g)
            }
        };
        Ok(ParentLocator {
            entries,
            parent_linkage,
            parent_linkage2,
        })
    }

    /// The parent's DataWriteGuid at the time the child was created (or last
    /// re-linked): the chain link.
    pub fn parent_linkage(&self) -> Uuid {
        self.parent_linkage
    }

    /// The alternative accepted parent DataWriteGuid; `None` when absent or
    /// all-zero (as Hyper-V writes it).
    pub fn parent_linkage2(&self) -> Option<Uuid> {
        self.parent_linkage2
    }

    /// `relative_path`: Windows path relative to the child's directory.
    pub fn relative_path(&self) -> Option<&str> {
        self.get("relative_path")
    }

    /// `absolute_win32_path`: absolute Windows path of the parent.
    pub fn absolute_win32_path(&self) -> Option<&str> {
        self.get("absolute_win32_path")
    }

    /// `volume_path`: `\\?\Volume{GUID}\…` path of the parent.
    pub fn volume_path(&self) -> Option<&str> {
        self.get("volume_path")
    }

    /// Every key/value pair in on-disk order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The value of `key` (case-sensitive, as the spec defines keys).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Does the parent's current DataWriteGuid satisfy this locator?
    pub fn accepts(&self, data_write_guid: Uuid) -> bool {
        data_write_guid == self.parent_linkage || Some(data_write_guid) == self.parent_linkage2
    }
}

fn read_string(
    item: &[u8],
    index: usize,
    field: LocatorField,
    offset: u32,
    length: u16,
) -> Result<String, LocatorError> {
    if offset == 0 || length == 0 {
        return Err(LocatorError::ZeroOffsetOrLength { index, field });
    }
    let start = offset as usize;
    let bytes = start
        .checked_add(usize::from(length))
        .and_then(|end| item.get(start..end))
        .ok_or(LocatorError::StringOutsideItem {
            index,
            field,
            offset,
            length,
            item_length: item.len(),
        })?;
    if !length.is_multiple_of(2) {
        return Err(LocatorError::OddLength {
            index,
            field,
            length,
        });
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    if units.contains(&0) {
        return Err(LocatorError::BadString { index, field });
    }
    String::from_utf16(&units).map_err(|_| LocatorError::BadString { index, field })
}

/// Serialises key/value pairs into a Parent Locator item of the VHDX type.
/// Used by writers and tests.
pub fn locator_to_bytes(entries: &[(&str, &str)]) -> Vec<u8> {
    let count = u16::try_from(entries.len()).unwrap_or(u16::MAX);
    let mut out = Vec::new();
    out.extend_from_slice(&VHDX_LOCATOR_TYPE_GUID.to_bytes_le());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let mut strings: Vec<u8> = Vec::new();
    let strings_start = HEADER_SIZE + ENTRY_SIZE * usize::from(count);
    let encode = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    for (key, value) in entries.iter().take(usize::from(count)) {
        let k = encode(key);
        let v = encode(value);
        let key_offset = u32::try_from(strings_start + strings.len()).unwrap_or(u32::MAX);
        strings.extend_from_slice(&k);
        let value_offset = u32::try_from(strings_start + strings.len()).unwrap_or(u32::MAX);
        strings.extend_from_slice(&v);
        out.extend_from_slice(&key_offset.to_le_bytes());
        out.extend_from_slice(&value_offset.to_le_bytes());
        out.extend_from_slice(&u16::try_from(k.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_le_bytes());
    }
    out.extend_from_slice(&strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "{ff34003b-11ed-4cf8-a166-b2be05e20b80}";

    fn windows_like() -> Vec<u8> {
        locator_to_bytes(&[
            ("parent_linkage", LINK),
            ("absolute_win32_path", r"C:\VMs\parent.avhdx"),
            ("relative_path", r".\parent.avhdx"),
            (
                "volume_path",
                r"\\?\Volume{0eba351e-0000-0000-0000-000000000000}\VMs\parent.avhdx",
            ),
            ("parent_linkage2", "{00000000-0000-0000-0000-000000000000}"),
        ])
    }

    #[test]
    fn windows_locator_parses_with_zero_linkage2_as_none() {
        let loc = ParentLocator::parse(&windows_like()).unwrap();
        assert_eq!(loc.parent_linkage(), parse_guid(LINK).unwrap());
        assert_eq!(loc.parent_linkage2(), None);
        assert_eq!(loc.relative_path(), Some(r".\parent.avhdx"));
        assert_eq!(loc.entries().len(), 5);
    }

    #[test]
    fn upper_case_linkage_is_accepted() {
        let loc = ParentLocator::parse(&locator_to_bytes(&[(
            "parent_linkage",
            "{FF34003B-11ED-4CF8-A166-B2BE05E20B80}",
        )]))
        .unwrap();
        assert!(loc.accepts(parse_guid(LINK).unwrap()));
    }

    #[test]
    fn nonzero_linkage2_is_accepted_as_alternative() {
        let other = "{11111111-2222-3333-4444-555555555555}";
        let loc = ParentLocator::parse(&locator_to_bytes(&[
            ("parent_linkage", LINK),
            ("parent_linkage2", other),
        ]))
        .unwrap();
        assert!(loc.accepts(parse_guid(other).unwrap()));
        assert!(!loc.accepts(Uuid::nil()));
    }

    #[test]
    fn short_item_is_rejected() {
        assert_eq!(
            ParentLocator::parse(&[0u8; 10]),
            Err(LocatorError::TooShort { length: 10 })
        );
    }

    #[test]
    fn unknown_locator_type_is_refused() {
        let mut b = windows_like();
        b[0] ^= 1;
        assert!(matches!(
            ParentLocator::parse(&b),
            Err(LocatorError::UnknownType { .. })
        ));
    }

    #[test]
    fn entry_count_beyond_item_is_rejected() {
        let mut b = windows_like();
        b[18..20].copy_from_slice(&5000u16.to_le_bytes());
        assert!(matches!(
            ParentLocator::parse(&b),
            Err(LocatorError::EntriesOutsideItem { count: 5000, .. })
        ));
    }

    #[test]
    fn zero_key_length_is_rejected() {
        let mut b = windows_like();
        b[28..30].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            ParentLocator::parse(&b),
            Err(LocatorError::ZeroOffsetOrLength {
                index: 0,
                field: LocatorField::Key
            })
        );
    }

    #[test]
    fn value_outside_item_is_rejected() {
        let mut b = windows_like();
        b[24..28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert!(matches!(
            ParentLocator::parse(&b),
            Err(LocatorError::StringOutsideItem {
                index: 0,
                field: LocatorField::Value,
                ..
            })
        ));
    }

    #[test]
    fn odd_value_length_is_rejected() {
        let mut b = windows_like();
        b[30..32].copy_from_slice(&75u16.to_le_bytes());
        assert!(matches!(
            ParentLocator::parse(&b),
            Err(LocatorError::OddLength {
                index: 0,
                field: LocatorField::Value,
                ..
            })
        ));
    }

    #[test]
    fn embedded_nul_is_rejected() {
        let mut b = locator_to_bytes(&[("parent_linkage", LINK)]);
        let key_offset = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
        b[key_offset] = 0;
        assert_eq!(
            ParentLocator::parse(&b),
            Err(LocatorError::BadString {
                index: 0,
                field: LocatorField::Key
            })
        );
    }

    #[test]
    fn unpaired_surrogate_is_rejected() {
        let mut b = locator_to_bytes(&[("parent_linkage", LINK)]);
        let key_offset = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
        b[key_offset..key_offset + 2].copy_from_slice(&0xD800u16.to_le_bytes());
        assert!(matches!(
            ParentLocator::parse(&b),
            Err(LocatorError::BadString { .. })
        ));
    }

    #[test]
    fn duplicate_key_is_rejected() {
        let b = locator_to_bytes(&[("parent_linkage", LINK), ("parent_linkage", LINK)]);
        assert_eq!(
            ParentLocator::parse(&b),
            Err(LocatorError::DuplicateKey {
                key: "parent_linkage".into()
            })
        );
    }

    #[test]
    fn missing_parent_linkage_is_rejected() {
        let b = locator_to_bytes(&[("relative_path", "x.vhdx")]);
        assert_eq!(
            ParentLocator::parse(&b),
            Err(LocatorError::MissingParentLinkage)
        );
    }

    #[test]
    fn non_guid_parent_linkage_is_rejected() {
        let b = locator_to_bytes(&[("parent_linkage", "hello")]);
        assert!(matches!(
            ParentLocator::parse(&b),
            Err(LocatorError::BadLinkage {
                key: "parent_linkage",
                ..
            })
        ));
    }

    #[test]
    fn non_guid_parent_linkage2_is_rejected() {
        let b = locator_to_bytes(&[("parent_linkage", LINK), ("parent_linkage2", "x")]);
        assert!(matches!(
            ParentLocator::parse(&b),
            Err(LocatorError::BadLinkage {
                key: "parent_linkage2",
                ..
            })
        ));
    }
}
