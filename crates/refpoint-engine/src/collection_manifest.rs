//! The collection manifest (`refpoint-collection.json`, format
//! `refpoint-collection/1`) at the top of a collection export, and its
//! content digests.
//!
//! ```text
//! <ExportDirectory>/
//!   refpoint-collection.json    this manifest
//!   SHA256SUMS                  every file below, `sha256sum -c` compatible
//!   <VM ElementName>/...        one VM folder per member (refpoint-export/1)
//! ```
//!
//! Content digests (lower-case hex SHA-256):
//! - a member's `content_digest` is taken over the concatenated binary
//!   content digests of its exported disks, in the order of its own
//!   manifest (each disk digest is the one of `refpoint-export/1`: over the
//!   disk's block digests, so a differential member has the same digest as
//!   a full export of the same reference point);
//! - the collection's `content_digest` is taken over the concatenated
//!   binary member digests in member order; members are ordered by
//!   `VirtualSystemIdentifier` (the VM GUID, upper case), so the digest does
//!   not depend on the order members were added in.
//!
//! A member whose disks were all left out by `VirtualMachinesToDisksToExport`
//! has its settings exported and the digest of nothing (SHA-256 of the
//! empty string).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::{Sha256Digest, from_hex, to_hex};
use crate::manifest::ToolRecord;

/// Value of [`CollectionManifest::format`].
pub const COLLECTION_MANIFEST_FORMAT: &str = "refpoint-collection/1";
/// File name of the collection manifest in the export directory.
pub const COLLECTION_MANIFEST_FILE: &str = "refpoint-collection.json";

/// The root of `refpoint-collection.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionManifest {
    /// Always [`COLLECTION_MANIFEST_FORMAT`].
    pub format: String,
    /// The program that wrote the export.
    pub tool: ToolRecord,
    /// `InstanceID` of the export job (`Msvm_CollectionReferencePointExportJob`).
    pub job_id: String,
    /// `"full"`, or `"differential"` when a base collection was given.
    pub export_type: String,
    /// The `Msvm_VirtualSystemCollection` (`CollectionID`, `ElementName`).
    pub collection: CollectionRecord,
    /// The exported `Msvm_ReferencePointCollection`.
    pub reference_point_collection: CollectionRecord,
    /// The base `Msvm_ReferencePointCollection` of a differential export.
    pub base_reference_point_collection: Option<CollectionRecord>,
    /// One record per exported VM, ordered by `virtual_system_identifier`.
    pub members: Vec<MemberRecord>,
    /// Members of the base collection that the exported collection no
    /// longer has (differential exports; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_members: Vec<RemovedMemberRecord>,
    /// Digest over the members' content digests (module docs).
    pub content_digest: String,
}

/// A collection's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionRecord {
    /// `CollectionID`.
    pub collection_id: String,
    /// `ElementName`.
    pub element_name: String,
}

/// One member of the exported collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// VM `Name` (GUID, upper case).
    pub virtual_system_identifier: String,
    /// VM `ElementName` = the member's folder in the export directory.
    pub element_name: String,
    /// The member reference point's `InstanceID`.
    pub reference_point: String,
    /// Its base reference point in a differential export; `null` when the
    /// member is exported full (a full export, or a VM added since the base).
    pub base_reference_point: Option<String>,
    /// The member folder's `export_type` (`full` or `differential`).
    pub export_type: String,
    /// `<ElementName>/refpoint-export.json`.
    pub manifest: String,
    /// SHA-256 of that manifest, lower-case hex.
    pub manifest_sha256: String,
    /// The member's exported disks (InstanceID and content digest), in the
    /// order of its manifest.
    pub disks: Vec<MemberDiskRecord>,
    /// Digest over the disks' content digests (module docs).
    pub content_digest: String,
}

/// One disk of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDiskRecord {
    /// Disk `InstanceID`.
    pub instance_id: String,
    /// The disk's content digest from the member manifest.
    pub content_digest: String,
}

/// A VM that was a member of the base collection and is not one of the
/// exported collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedMemberRecord {
    /// VM GUID (upper case).
    pub virtual_system_identifier: String,
    /// VM `ElementName` (when the VM still exists; else its GUID).
    pub element_name: String,
    /// Its reference point in the base collection.
    pub base_reference_point: String,
}

impl CollectionManifest {
    /// Serialises with two-space indentation and a trailing newline.
    ///
    /// # Errors
    /// The serde_json error (not expected for this type).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// Parses a collection manifest and checks its `format`.
    ///
    /// # Errors
    /// A message naming the JSON error or the unknown format.
    pub fn from_json(text: &str) -> Result<CollectionManifest, String> {
        let manifest: CollectionManifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if manifest.format != COLLECTION_MANIFEST_FORMAT {
            return Err(format!(
                "format {:?} is not {COLLECTION_MANIFEST_FORMAT:?}",
                manifest.format
            ));
        }
        Ok(manifest)
    }
}

/// SHA-256 over the concatenation of binary digests given in hex.
///
/// # Errors
/// The first text that is not 64 hex digits.
pub fn digest_of_digests<'a>(
    digests: impl IntoIterator<Item = &'a str>,
) -> Result<Sha256Digest, String> {
    let mut hasher = Sha256::new();
    for text in digests {
        let d = from_hex(text).ok_or_else(|| format!("{text:?} is not a SHA-256 digest"))?;
        hasher.update(d);
    }
    Ok(hasher.finalize().into())
}

impl MemberRecord {
    /// The member digest recomputed from its disk records (hex).
    ///
    /// # Errors
    /// A disk digest that is not 64 hex digits.
    pub fn computed_content_digest(&self) -> Result<String, String> {
        digest_of_digests(self.disks.iter().map(|d| d.content_digest.as_str())).map(|d| to_hex(&d))
    }
}

impl CollectionManifest {
    /// The collection digest recomputed from the member records' digests, in
    /// the order they are listed (hex).
    ///
    /// # Errors
    /// A member digest that is not 64 hex digits.
    pub fn computed_content_digest(&self) -> Result<String, String> {
        digest_of_digests(self.members.iter().map(|m| m.content_digest.as_str()))
            .map(|d| to_hex(&d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    #[test]
    fn digest_of_no_digests_is_the_empty_string_digest() {
        assert_eq!(digest_of_digests([]).unwrap(), sha256(b""));
    }

    #[test]
    fn digest_of_digests_hashes_the_binary_concatenation() {
        let a = to_hex(&sha256(b"a"));
        let b = to_hex(&sha256(b"b"));
        let mut both = sha256(b"a").to_vec();
        both.extend_from_slice(&sha256(b"b"));

        let d = digest_of_digests([a.as_str(), b.as_str()]).unwrap();

        assert_eq!(d, sha256(&both));
    }

    #[test]
    fn digest_of_a_malformed_digest_names_it() {
        let err = digest_of_digests(["xyz"]).unwrap_err();

        assert!(err.contains("xyz"), "{err}");
    }

    #[test]
    fn unknown_format_is_refused() {
        let m = CollectionManifest {
            format: "other/9".into(),
            tool: ToolRecord {
                name: "t".into(),
                version: "0".into(),
            },
            job_id: "J".into(),
            export_type: "full".into(),
            collection: CollectionRecord {
                collection_id: "C".into(),
                element_name: "c".into(),
            },
            reference_point_collection: CollectionRecord {
                collection_id: "R".into(),
                element_name: "r".into(),
            },
            base_reference_point_collection: None,
            members: Vec::new(),
            removed_members: Vec::new(),
            content_digest: to_hex(&sha256(b"")),
        };

        let err = CollectionManifest::from_json(&m.to_json().unwrap()).unwrap_err();

        assert!(err.contains("other/9"), "{err}");
    }
}
