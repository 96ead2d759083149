//! Verifying a collection export without the sources: the collection's
//! `SHA256SUMS` and `refpoint-collection.json` (member manifests pinned by
//! digest, member and collection content digests recomputed), then every
//! member folder as [`crate::verify`] does (files, manifest, every block of
//! every VHDX).
//!
//! The collection's `SHA256SUMS` lists every file of every member; its
//! lines for a member's files must equal the member's own `SHA256SUMS`
//! lines, whose file is itself listed and hashed here, so each VHDX is
//! read once (by the member verification) and still covered by the
//! top-level list.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::collection_manifest::{COLLECTION_MANIFEST_FILE, CollectionManifest};
use crate::digest::{file_digest, to_hex};
use crate::error::EngineError;
use crate::manifest::{Manifest, is_contained, parse_checksums};
use crate::plan::{CHECKSUMS_FILE, MANIFEST_FILE};
use crate::verify::{FileReport, Finding, FolderReport, VerifyError, VerifyReport, verify};

/// True when `dir` holds a collection export (its `refpoint-collection.json`).
#[must_use]
pub fn is_collection_export(dir: &Path) -> bool {
    dir.join(COLLECTION_MANIFEST_FILE).is_file()
}

fn io_err(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VerifyError {
    let path = path.to_path_buf();
    move |cause| VerifyError::Io {
        operation,
        path,
        cause,
    }
}

/// Findings per path of the top-level folder report.
#[derive(Default)]
struct Findings(BTreeMap<String, Vec<Finding>>);

impl Findings {
    fn add(&mut self, path: &str, finding: Finding) {
        self.0.entry(path.to_owned()).or_default().push(finding);
    }
    fn touch(&mut self, path: &str) {
        self.0.entry(path.to_owned()).or_default();
    }
    fn into_report(self, folder: &Path) -> FolderReport {
        FolderReport {
            folder: folder.to_path_buf(),
            files: self
                .0
                .into_iter()
                .map(|(path, findings)| FileReport { path, findings })
                .collect(),
        }
    }
}

/// Verifies the collection export in `dir`: first [`FolderReport`] is the
/// collection's own files (paths relative to `dir`), then one per member
/// folder listed in the manifest (as [`crate::verify`]).
///
/// # Errors
/// [`VerifyError::NotAnExport`] when `dir` holds no `refpoint-collection.json`;
/// [`VerifyError::Io`] when a directory cannot be listed or a present file
/// cannot be read.
pub fn verify_collection(dir: &Path) -> Result<VerifyReport, EngineError> {
    if !is_collection_export(dir) {
        return Err(VerifyError::NotAnExport {
            path: dir.to_path_buf(),
        }
        .into());
    }
    let mut top = Findings::default();
    let listed = check_sums(dir, &mut top)?;
    let mut folders = Vec::new();
    let manifest_text = fs::read_to_string(dir.join(COLLECTION_MANIFEST_FILE))
        .map_err(io_err("read", &dir.join(COLLECTION_MANIFEST_FILE)))?;
    let manifest = match CollectionManifest::from_json(&manifest_text) {
        Ok(m) => Some(m),
        Err(reason) => {
            top.add(
                COLLECTION_MANIFEST_FILE,
                Finding::ManifestInvalid { reason },
            );
            None
        }
    };
    if let Some(manifest) = &manifest {
        let members = check_manifest(dir, manifest, &listed, &mut top)?;
        for folder in members {
            folders.extend(verify(&folder)?.folders);
        }
    }
    let mut all = vec![top.into_report(dir)];
    all.extend(folders);
    Ok(VerifyReport { folders: all })
}

/// Checks the collection's `SHA256SUMS`: the collection's own files are
/// hashed, a member's lines must equal that member's `SHA256SUMS` lines.
/// Returns the listed paths.
fn check_sums(dir: &Path, top: &mut Findings) -> Result<BTreeSet<String>, EngineError> {
    let sums_path = dir.join(CHECKSUMS_FILE);
    let text = match fs::read_to_string(&sums_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            top.add(CHECKSUMS_FILE, Finding::MissingFile);
            return Ok(BTreeSet::new());
        }
        Err(e) => return Err(io_err("read", &sums_path)(e).into()),
    };
    let entries = match parse_checksums(&text) {
        Ok(e) => e,
        Err(e) => {
            top.add(
                CHECKSUMS_FILE,
                Finding::ChecksumsInvalid {
                    line: e.line,
                    reason: e.reason,
                },
            );
            return Ok(BTreeSet::new());
        }
    };
    top.touch(CHECKSUMS_FILE);
    let mut member_sums: BTreeMap<String, Option<BTreeMap<String, String>>> = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut listed = BTreeSet::new();
    for (path, expected) in entries {
        listed.insert(path.clone());
        if !is_contained(&path) {
            top.add(&path, Finding::UnsafePath);
            continue;
        }
        let hashed_here = match path.split_once('/') {
            None => true,
            Some((_, rest)) => rest == CHECKSUMS_FILE,
        };
        if hashed_here {
            let file = dir.join(&path);
            match file_digest::<io::Error>(&file, &mut buf, || Ok(())) {
                Ok((d, _)) if to_hex(&d) == expected => top.touch(&path),
                Ok((d, _)) => top.add(
                    &path,
                    Finding::ChecksumMismatch {
                        expected,
                        actual: to_hex(&d),
                    },
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    top.add(&path, Finding::MissingFile);
                }
                Err(e) => return Err(io_err("hash", &file)(e).into()),
            }
            continue;
        }
        let Some((member, rest)) = path.split_once('/') else {
            continue;
        };
        let own = member_sums
            .entry(member.to_owned())
            .or_insert_with(|| read_member_sums(&dir.join(member)));
        match own.as_ref().and_then(|m| m.get(rest)) {
            Some(line) if *line == expected => top.touch(&path),
            Some(line) => top.add(
                &path,
                Finding::ManifestMismatch {
                    field: format!("{member}/{CHECKSUMS_FILE}: {rest}"),
                    manifest: expected,
                    actual: line.clone(),
                },
            ),
            None if dir.join(&path).exists() => top.add(
                &path,
                Finding::ManifestMismatch {
                    field: format!("{member}/{CHECKSUMS_FILE}: {rest}"),
                    manifest: expected,
                    actual: "not listed".to_owned(),
                },
            ),
            None => top.add(&path, Finding::MissingFile),
        }
    }
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !name.starts_with('.') && name != CHECKSUMS_FILE && !listed.contains(&name) {
            top.add(&name, Finding::UnlistedFile);
        }
    }
    Ok(listed)
}

/// A member's `SHA256SUMS` as path → digest; `None` when unreadable (the
/// member verification reports why).
fn read_member_sums(folder: &Path) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(folder.join(CHECKSUMS_FILE)).ok()?;
    parse_checksums(&text).ok().map(|e| e.into_iter().collect())
}

/// Checks the collection manifest against the member folders; returns the
/// member folders to verify.
fn check_manifest(
    dir: &Path,
    manifest: &CollectionManifest,
    listed: &BTreeSet<String>,
    top: &mut Findings,
) -> Result<Vec<PathBuf>, EngineError> {
    let mut folders = Vec::new();
    for (i, member) in manifest.members.iter().enumerate() {
        let field = |name: &str| format!("members[{i}].{name}");
        let folder = dir.join(&member.element_name);
        if !is_contained(&member.element_name) || member.element_name.contains('/') {
            top.add(COLLECTION_MANIFEST_FILE, Finding::UnsafePath);
            continue;
        }
        let member_manifest = folder.join(MANIFEST_FILE);
        let (digest, text) = match fs::read(&member_manifest) {
            Ok(bytes) => (
                to_hex(&crate::digest::sha256(&bytes)),
                String::from_utf8(bytes).unwrap_or_default(),
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                top.add(&member.manifest, Finding::MissingFile);
                continue;
            }
            Err(e) => return Err(io_err("read", &member_manifest)(e).into()),
        };
        folders.push(folder.clone());
        if digest != member.manifest_sha256 {
            top.add(
                COLLECTION_MANIFEST_FILE,
                Finding::ManifestMismatch {
                    field: field("manifest_sha256"),
                    manifest: member.manifest_sha256.clone(),
                    actual: digest,
                },
            );
        }
        if let Ok(own) = Manifest::from_json(&text) {
            let recorded: Vec<(&str, &str)> = member
                .disks
                .iter()
                .map(|d| (d.instance_id.as_str(), d.content_digest.as_str()))
                .collect();
            let actual: Vec<(&str, &str)> = own
                .disks
                .iter()
                .map(|d| (d.instance_id.as_str(), d.content_digest.as_str()))
                .collect();
            if recorded != actual {
                top.add(
                    COLLECTION_MANIFEST_FILE,
                    Finding::ManifestMismatch {
                        field: field("disks"),
                        manifest: format!("{recorded:?}"),
                        actual: format!("{actual:?}"),
                    },
                );
            }
        }
        match member.computed_content_digest() {
            Ok(d) if d == member.content_digest => {}
            Ok(d) => top.add(
                COLLECTION_MANIFEST_FILE,
                Finding::ContentDigestMismatch {
                    expected: member.content_digest.clone(),
                    actual: d,
                },
            ),
            Err(reason) => top.add(
                COLLECTION_MANIFEST_FILE,
                Finding::ManifestInvalid { reason },
            ),
        }
        if !listed.contains(&format!("{}/{CHECKSUMS_FILE}", member.element_name)) {
            top.add(
                &format!("{}/{CHECKSUMS_FILE}", member.element_name),
                Finding::ManifestMismatch {
                    field: CHECKSUMS_FILE.to_owned(),
                    manifest: "listed".to_owned(),
                    actual: "not listed".to_owned(),
                },
            );
        }
    }
    let mut sorted = manifest.members.clone();
    sorted.sort_by(|a, b| {
        a.virtual_system_identifier
            .cmp(&b.virtual_system_identifier)
    });
    if sorted != manifest.members {
        top.add(
            COLLECTION_MANIFEST_FILE,
            Finding::ManifestInvalid {
                reason: "members are not ordered by virtual_system_identifier".to_owned(),
            },
        );
    }
    match manifest.computed_content_digest() {
        Ok(d) if d == manifest.content_digest => top.touch(COLLECTION_MANIFEST_FILE),
        Ok(d) => top.add(
            COLLECTION_MANIFEST_FILE,
            Finding::ContentDigestMismatch {
                expected: manifest.content_digest.clone(),
                actual: d,
            },
        ),
        Err(reason) => top.add(
            COLLECTION_MANIFEST_FILE,
            Finding::ManifestInvalid { reason },
        ),
    }
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let known = manifest.members.iter().any(|m| m.element_name == name);
        if is_dir && !name.starts_with('.') && !known {
            top.add(&name, Finding::UnlistedFile);
        }
    }
    Ok(folders)
}
