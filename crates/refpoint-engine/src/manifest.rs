//! The export manifest (`refpoint-export.json`, format `refpoint-export/1`)
//! and the `SHA256SUMS` file.
//!
//! See the crate documentation for the field-by-field format. GUIDs are
//! written in Hyper-V's form (upper case, hyphenated, no braces); digests are
//! lower-case hex; sizes and offsets are bytes. The manifest holds no
//! timestamps: exporting the same reference point twice gives the same
//! manifest except for `job_id`.

use serde::{Deserialize, Serialize};

use crate::request::ReferencePointIdentity;

/// Value of [`Manifest::format`] written by this version: block digests in
/// a sidecar file per disk ([`DiskRecord::digests`]).
pub const MANIFEST_FORMAT: &str = "refpoint-export/2";
/// The previous format, still read: block digests inline as hex
/// ([`DiskRecord::block_digests`]).
pub const MANIFEST_FORMAT_V1: &str = "refpoint-export/1";

/// Value of [`OutputRecord::kind`] for a dynamic VHDX (full export, a disk
/// added since the base, a synthetic full).
pub const OUTPUT_KIND_DYNAMIC: &str = "dynamic";
/// Value of [`OutputRecord::kind`] for the differencing VHDX of a
/// differential export (its parent is the base export's file).
pub const OUTPUT_KIND_DIFFERENCING: &str = "differencing";

/// Value of [`Manifest::export_type`] for a full export.
pub const EXPORT_TYPE_FULL: &str = "full";
/// Value of [`Manifest::export_type`] for a differential export.
pub const EXPORT_TYPE_DIFFERENTIAL: &str = "differential";
/// Value of [`Manifest::export_type`] for a synthetic full made by
/// [`crate::restore`] from a base export and differential exports.
pub const EXPORT_TYPE_SYNTHETIC_FULL: &str = "synthetic-full";

/// The root of `refpoint-export.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The program that wrote the export.
    pub tool: ToolRecord,
    /// `InstanceID` of the export job.
    pub job_id: String,
    /// [`EXPORT_TYPE_FULL`], [`EXPORT_TYPE_DIFFERENTIAL`] or
    /// [`EXPORT_TYPE_SYNTHETIC_FULL`].
    pub export_type: String,
    /// The exported reference point.
    pub reference_point: ReferencePointIdentity,
    /// The base of a differential export; `null` for a full export.
    pub base: Option<ReferencePointIdentity>,
    /// The virtual system (`Msvm_ComputerSystem`).
    pub virtual_system: VirtualSystemRecord,
    /// The settings file.
    pub config: FileRecord,
    /// The exported disks, in request order.
    pub disks: Vec<DiskRecord>,
    /// Differential export: the base export this one builds on (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_export: Option<BaseExportRecord>,
    /// Differential export: `InstanceID`s of disks the base had and the
    /// target no longer has (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_disks: Vec<String>,
    /// Synthetic full: the exports it was built from, base first (absent otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored_from: Vec<ExportLinkRecord>,
}

/// The base export of a differential export, pinned by its manifest's digest
/// so that a chain of exports can be checked without trusting any one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseExportRecord {
    /// Absolute path of the base export's VM folder when this export was made.
    pub vm_folder: String,
    /// SHA-256 of the base export's `refpoint-export.json`, lower-case hex.
    pub manifest_sha256: String,
}

/// One export a synthetic full was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportLinkRecord {
    /// Absolute path of the export's VM folder.
    pub vm_folder: String,
    /// SHA-256 of its `refpoint-export.json`, lower-case hex.
    pub manifest_sha256: String,
    /// Its reference point's `InstanceID`.
    pub reference_point: String,
}

/// The parent of a differencing output: the base export's file of the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRecord {
    /// Absolute path of the parent file when the export was made.
    pub path: String,
    /// The parent locator's `relative_path` as stored in the file
    /// (MS-VHDX §2.6.2.6, `\`-separated, from the output's directory).
    pub relative_path: String,
    /// The parent's `DataWriteGuid` = the output's `parent_linkage`.
    pub data_write_guid: String,
    /// Content digest of the parent's virtual disk (from the base manifest).
    pub content_digest: String,
}

/// Change tracking of a disk was lost and the export compared every block
/// with the base manifest instead (policy `fallback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackRecord {
    /// Why tracking was lost (names the journal, record or layer).
    pub reason: String,
    /// Blocks compared with the base manifest (all blocks of the disk).
    pub blocks_compared: u64,
    /// Blocks whose digest differed and which the output therefore holds.
    pub blocks_differing: u64,
}

/// Name and version of the writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// `"refpoint-engine"`.
    pub name: String,
    /// Crate version.
    pub version: String,
}

/// The VM's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualSystemRecord {
    /// VM `Name` (GUID, upper case).
    pub name: String,
    /// VM `ElementName` (= the VM folder name).
    pub element_name: String,
}

/// A file of the export, relative to the VM folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the VM folder, `/`-separated.
    pub path: String,
    /// Size, bytes.
    pub size: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
}

/// One layer of a source chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLayerRecord {
    /// Absolute path of the VHDX/AVHDX file.
    pub path: String,
    /// Its `DataWriteGuid` at the reference point (upper case).
    pub data_write_guid: String,
}

/// The exported VHDX of one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Path relative to the VM folder: `Virtual Hard Disks/<stem>.vhdx`.
    pub path: String,
    /// Size, bytes.
    pub size: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// The file's `DataWriteGuid` (derived, see [`crate::export_data_write_guid`]).
    pub data_write_guid: String,
    /// [`OUTPUT_KIND_DYNAMIC`] or [`OUTPUT_KIND_DIFFERENCING`].
    pub kind: String,
}

/// One exported disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskRecord {
    /// Disk `InstanceID`.
    pub instance_id: String,
    /// `VirtualDiskId` (upper case).
    pub virtual_disk_id: String,
    /// Virtual size, bytes.
    pub virtual_size: u64,
    /// Block size of the output and of the block digests, bytes.
    pub block_size: u32,
    /// Logical sector size, bytes.
    pub logical_sector_size: u32,
    /// Physical sector size, bytes.
    pub physical_sector_size: u32,
    /// The source chain at the reference point, leaf first.
    pub source_chain: Vec<SourceLayerRecord>,
    /// The exported file.
    pub output: OutputRecord,
    /// Byte ranges `[offset, length]` of the virtual disk carried by this
    /// export, sorted and coalesced. Full (dynamic) output: every range the
    /// chain maps to data (allocated), whether or not its content is zero.
    /// Differencing output: the ranges change tracking reported between the
    /// base and the target; after a fallback, the blocks whose digest differed.
    pub changed_ranges: Vec<[u64; 2]>,
    /// Format 2: the block-digest sidecar (binary SHA-256 of every block of
    /// the virtual disk, `block_size` bytes each, the last one possibly
    /// short, zero blocks included; 32 bytes per block, no header). Its
    /// SHA-256 equals `content_digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digests: Option<FileRecord>,
    /// Format 1 only: the same digests inline, as hex (absent in format 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_digests: Vec<String>,
    /// Hex SHA-256 over the concatenated binary `block_digests`.
    pub content_digest: String,
    /// Differencing output: its parent (absent for a dynamic output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRecord>,
    /// Differencing output made by the tracking fallback (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackRecord>,
    /// A dynamic output inside a differential export: why this disk was
    /// exported full (not in the base export, geometry changed, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_reason: Option<String>,
}

impl Manifest {
    /// Serialises with two-space indentation and a trailing newline.
    ///
    /// # Errors
    /// The serde_json error (not expected for this type).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// Parses a manifest and checks its `format`.
    ///
    /// # Errors
    /// A message naming the JSON error or the unknown format.
    pub fn from_json(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if manifest.format != MANIFEST_FORMAT && manifest.format != MANIFEST_FORMAT_V1 {
            return Err(format!(
                "format {:?} is neither {MANIFEST_FORMAT:?} nor {MANIFEST_FORMAT_V1:?}",
                manifest.format
            ));
        }
        Ok(manifest)
    }
}

/// Renders `SHA256SUMS`: one `"<hex>  <path>"` line per `(path, hex)` entry
/// (GNU text mode, two spaces), sorted by path so the file is deterministic.
/// Paths must not contain `\` or newlines (request validation ensures it).
#[must_use]
pub fn render_checksums(entries: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = entries.iter().collect();
    sorted.sort();
    let mut out = String::new();
    for (path, hex) in sorted {
        out.push_str(hex);
        out.push_str("  ");
        out.push_str(path);
        out.push('\n');
    }
    out
}

/// A line of `SHA256SUMS` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ChecksumLineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses `SHA256SUMS` text (GNU format: `<64 hex><space><space or *><path>`)
/// into `(path, lower-case hex)` entries. Blank lines are skipped; escaped
/// (`\`-prefixed) lines are refused, since refpoint never writes them.
///
/// # Errors
/// The first malformed line.
pub fn parse_checksums(text: &str) -> Result<Vec<(String, String)>, ChecksumLineError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: &str| ChecksumLineError {
            line: i + 1,
            reason: reason.to_owned(),
        };
        if line.is_empty() {
            continue;
        }
        if line.starts_with('\\') {
            return Err(bad("escaped file names are not used by refpoint exports"));
        }
        let (hex, rest) = line
            .split_at_checked(64)
            .ok_or_else(|| bad("line too short"))?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("digest is not 64 hex digits"));
        }
        let path = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| bad("expected two spaces or ' *' after the digest"))?;
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        entries.push((path.to_owned(), hex.to_ascii_lowercase()));
    }
    Ok(entries)
}

/// True when `relative` is a plain relative path inside the folder (no
/// absolute path, no `..`, no empty or `.` components).
#[must_use]
pub fn is_contained(relative: &str) -> bool {
    !relative.contains('\0')
        && relative
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_sorts_and_uses_two_spaces() {
        let entries = vec![
            ("b c".to_owned(), "22".repeat(32)),
            ("a".to_owned(), "11".repeat(32)),
        ];

        let text = render_checksums(&entries);

        assert_eq!(
            text,
            format!("{}  a\n{}  b c\n", "11".repeat(32), "22".repeat(32))
        );
    }

    #[test]
    fn parse_round_trips_render_with_spaces_in_paths() {
        let entries = vec![(
            "Virtual Hard Disks/my disk.vhdx".to_owned(),
            "ab".repeat(32),
        )];

        let parsed = parse_checksums(&render_checksums(&entries)).expect("parse");

        assert_eq!(parsed, entries);
    }

    #[test]
    fn parse_accepts_binary_mode_marker() {
        let line = format!("{} *file\n", "AB".repeat(32));

        let parsed = parse_checksums(&line).expect("parse");

        assert_eq!(parsed, vec![("file".to_owned(), "ab".repeat(32))]);
    }

    #[test]
    fn parse_rejects_non_hex_digest_with_line_number() {
        let text = format!("{}  a\n{}  b\n", "00".repeat(32), "zz".repeat(32));

        let result = parse_checksums(&text);

        assert_eq!(result.map_err(|e| e.line), Err(2));
    }

    #[test]
    fn parse_rejects_single_space_separator() {
        let text = format!("{} a\n", "00".repeat(32));

        assert!(parse_checksums(&text).is_err());
    }

    #[test]
    fn is_contained_rejects_escapes() {
        assert!(is_contained("Virtual Hard Disks/a.vhdx"));
        assert!(!is_contained("../x"));
        assert!(!is_contained("/etc/passwd"));
        assert!(!is_contained("a/./b"));
        assert!(!is_contained("a//b"));
    }

    #[test]
    fn from_json_rejects_other_format() {
        let text = r#"{"format":"other/9"}"#;

        let result = Manifest::from_json(text);

        assert!(result.is_err());
    }
}
