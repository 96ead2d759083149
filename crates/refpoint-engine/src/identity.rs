//! Deterministic identities of export outputs.
//!
//! An exported VHDX gets a `DataWriteGuid` (MS-VHDX §2.2.2) derived from the
//! reference point's `InstanceID` and the disk's `InstanceID`, so that
//! exporting the same reference point twice yields the same identity and a
//! later differential export can name its parent without reading it.
//!
//! Derivation (name-based, like RFC 9562 UUIDv5 but with SHA-256, hence
//! version 8 "custom"): `SHA-256(namespace ‖ u64le(len(rp)) ‖ rp ‖
//! u64le(len(disk)) ‖ disk)`, first 16 bytes, then the version (8) and
//! variant (RFC 9562) bits set. Length prefixes make the encoding unambiguous.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Namespace of refpoint export `DataWriteGuid`s (a fixed random UUID).
pub const EXPORT_DATA_WRITE_NAMESPACE: Uuid =
    Uuid::from_u128(0x47b0_3168_b0ae_46e3_86f7_7366_4fe6_2118);

/// The `DataWriteGuid` of the full export of disk `disk_instance_id` at
/// reference point `reference_point_instance_id`.
#[must_use]
pub fn export_data_write_guid(reference_point_instance_id: &str, disk_instance_id: &str) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(EXPORT_DATA_WRITE_NAMESPACE.as_bytes());
    for part in [reference_point_instance_id, disk_instance_id] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest: [u8; 32] = hasher.finalize().into();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The `FileWriteGuid` (MS-VHDX §2.2.2) of an exported file whose
/// `DataWriteGuid` is `data_write_guid`: derived the same way, from the
/// `DataWriteGuid` alone, so that exporting a reference point twice gives
/// byte-identical files (same SHA-256).
#[must_use]
pub fn export_file_write_guid(data_write_guid: Uuid) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(EXPORT_DATA_WRITE_NAMESPACE.as_bytes());
    hasher.update(b"FileWriteGuid");
    hasher.update(data_write_guid.as_bytes());
    let digest: [u8; 32] = hasher.finalize().into();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Hyper-V's textual GUID form: upper-case, hyphenated, no braces.
#[must_use]
pub fn guid_upper(guid: Uuid) -> String {
    guid.hyphenated()
        .encode_upper(&mut Uuid::encode_buffer())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_give_same_guid() {
        let a = export_data_write_guid("rp-1", "disk-1");
        let b = export_data_write_guid("rp-1", "disk-1");

        assert_eq!(a, b);
    }

    #[test]
    fn guid_is_version_8_rfc_variant() {
        let g = export_data_write_guid("rp", "disk");

        assert_eq!(g.get_version_num(), 8);
        assert_eq!(g.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn length_prefix_separates_shifted_boundaries() {
        let a = export_data_write_guid("ab", "c");
        let b = export_data_write_guid("a", "bc");

        assert_ne!(a, b);
    }

    #[test]
    fn guid_upper_is_hyperv_form() {
        let g = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

        assert_eq!(guid_upper(g), "01234567-89AB-CDEF-0123-456789ABCDEF");
    }
}
