//! Verifying an export without the sources: `SHA256SUMS` recomputed (missing,
//! unlisted and mismatching files), the manifest cross-checked against the
//! files, and every block digest of every exported VHDX recomputed and
//! compared with the listed digests and the content digest. Each file is
//! read once: an exported VHDX by an image scan that computes its file
//! SHA-256 and its block digests from the same buffers
//! (`image_scan`), files in parallel.
//!
//! Corruption is reported, not raised: the result names each file and what
//! is wrong with it (block index and byte offset for content). An
//! [`EngineError`] is returned only when the input cannot be read at all.
//!
//! Attribution of block mismatches: if the digests recomputed from the VHDX
//! reproduce the manifest's `content_digest`, the image is intact and the
//! differing entries are errors *in the manifest* (reported on
//! `refpoint-export.json`); otherwise they are reported on the VHDX.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use refpoint_vhdx::{Chain, ExtentSource};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::base::{BlockDigests, DigestReader};
use crate::digest::{Sha256Digest, ZeroDigests, file_digest, to_hex};
use crate::error::{EngineError, ErrorContext, ErrorKind, io_kind};
use crate::identity::guid_upper;
use crate::image_scan::{ImageScan, scan_image};
use crate::manifest::{
    DiskRecord, Manifest, OUTPUT_KIND_DIFFERENCING, is_contained, parse_checksums,
};
use crate::plan::{CHECKSUMS_FILE, MANIFEST_FILE};

/// At most this many block mismatches are listed per file; the rest are counted.
pub const MAX_LISTED_BLOCK_MISMATCHES: usize = 64;

/// The input of [`verify`] cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file-system operation failed.
    #[error("cannot {operation} '{}': {cause}", path.display())]
    Io {
        /// What was attempted.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// The directory holds neither an export VM folder nor VM folders.
    #[error("'{}' is neither an export VM folder nor an export directory containing one", path.display())]
    NotAnExport {
        /// The directory given.
        path: PathBuf,
    },
}

impl VerifyError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            VerifyError::Io { cause, .. } => io_kind(cause),
            VerifyError::NotAnExport { .. } => ErrorKind::InvalidParameter,
        }
    }

    pub(crate) fn context(&self) -> ErrorContext {
        let (operation, path) = match self {
            VerifyError::Io {
                operation, path, ..
            } => (*operation, path),
            VerifyError::NotAnExport { path } => ("verify export", path),
        };
        ErrorContext {
            operation,
            path: Some(path.clone()),
            ..ErrorContext::default()
        }
    }
}

fn io_err(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VerifyError {
    let path = path.to_path_buf();
    move |cause| VerifyError::Io {
        operation,
        path,
        cause,
    }
}

/// One problem with one file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// Listed in `SHA256SUMS` or the manifest, absent on disk.
    MissingFile,
    /// Present in the VM folder, not listed in `SHA256SUMS`.
    UnlistedFile,
    /// A listed path leaves the VM folder (absolute, `..`); not opened.
    UnsafePath,
    /// The file's SHA-256 differs from its `SHA256SUMS` line.
    ChecksumMismatch {
        /// Digest in `SHA256SUMS`.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// A line of `SHA256SUMS` is malformed.
    ChecksumsInvalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The manifest does not parse or is not `refpoint-export/1`.
    ManifestInvalid {
        /// The parse error.
        reason: String,
    },
    /// A value recorded in the manifest differs from the file.
    ManifestMismatch {
        /// Manifest field, e.g. `disks[0].output.sha256` or `virtual_size`.
        field: String,
        /// Value in the manifest.
        manifest: String,
        /// Value found.
        actual: String,
    },
    /// The exported VHDX does not open or read through `refpoint-vhdx`.
    ImageInvalid {
        /// The `refpoint-vhdx` error (names offset and rule).
        reason: String,
    },
    /// One block's digest differs from the manifest.
    BlockDigestMismatch {
        /// Block index.
        block: u64,
        /// Virtual byte offset of the block.
        offset: u64,
        /// Digest in the manifest.
        expected: String,
        /// Digest recomputed from the image.
        actual: String,
    },
    /// Further block mismatches beyond [`MAX_LISTED_BLOCK_MISMATCHES`].
    MoreBlockMismatches {
        /// How many more.
        count: u64,
    },
    /// The content digest recomputed from the image differs from the manifest.
    ContentDigestMismatch {
        /// Digest in the manifest.
        expected: String,
        /// Digest recomputed.
        actual: String,
    },
    /// `verify --chain`: this export does not follow the previous one
    /// (base identity, base manifest digest, a disk missing from the base).
    ChainBroken {
        /// What does not line up.
        reason: String,
    },
    /// A differencing output's parent (locator `parent_linkage`, relative or
    /// absolute path) is not the previous export's file of the disk.
    ParentMismatch {
        /// What does not line up.
        reason: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::MissingFile => write!(f, "missing"),
            Finding::UnlistedFile => write!(f, "not listed in {CHECKSUMS_FILE}"),
            Finding::UnsafePath => write!(f, "path leaves the export folder; not checked"),
            Finding::ChecksumMismatch { expected, actual } => {
                write!(
                    f,
                    "SHA-256 {actual} differs from {CHECKSUMS_FILE} ({expected})"
                )
            }
            Finding::ChecksumsInvalid { line, reason } => write!(f, "line {line}: {reason}"),
            Finding::ManifestInvalid { reason } => write!(f, "invalid manifest: {reason}"),
            Finding::ManifestMismatch {
                field,
                manifest,
                actual,
            } => write!(f, "{field} is {actual}, the manifest says {manifest}"),
            Finding::ImageInvalid { reason } => write!(f, "unreadable VHDX: {reason}"),
            Finding::BlockDigestMismatch {
                block,
                offset,
                expected,
                actual,
            } => write!(
                f,
                "block {block} (virtual offset {offset}) has SHA-256 {actual}, the manifest says {expected}"
            ),
            Finding::MoreBlockMismatches { count } => {
                write!(f, "{count} more blocks differ")
            }
            Finding::ContentDigestMismatch { expected, actual } => write!(
                f,
                "content digest {actual} differs from the manifest ({expected})"
            ),
            Finding::ChainBroken { reason } => write!(f, "chain of exports broken: {reason}"),
            Finding::ParentMismatch { reason } => write!(f, "parent mismatch: {reason}"),
        }
    }
}

/// Outcome for one file of an export (path relative to the VM folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// Path relative to the VM folder, `/`-separated.
    pub path: String,
    /// Problems found; empty when the file verified.
    pub findings: Vec<Finding>,
}

impl FileReport {
    /// True when nothing is wrong with the file.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Outcome for one exported VM folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderReport {
    /// The VM folder.
    pub folder: PathBuf,
    /// Every file checked or expected, sorted by path.
    pub files: Vec<FileReport>,
}

impl FolderReport {
    /// True when every file verified.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(FileReport::is_ok)
    }
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// One entry per VM folder verified.
    pub folders: Vec<FolderReport>,
}

impl VerifyReport {
    /// True when every file of every folder verified.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.folders.iter().all(FolderReport::is_ok)
    }

    /// `(VM folder, file)` of every file with findings.
    pub fn failures(&self) -> impl Iterator<Item = (&Path, &FileReport)> {
        self.folders.iter().flat_map(|folder| {
            folder
                .files
                .iter()
                .filter(|f| !f.is_ok())
                .map(move |f| (folder.folder.as_path(), f))
        })
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for folder in &self.folders {
            for file in &folder.files {
                let path = folder.folder.join(&file.path);
                if file.is_ok() {
                    writeln!(f, "{}: OK", path.display())?;
                }
                for finding in &file.findings {
                    writeln!(f, "{}: FAILED: {finding}", path.display())?;
                }
            }
        }
        Ok(())
    }
}

/// Verifies an export directory (every VM folder in it) or one VM folder.
///
/// # Errors
/// [`VerifyError::Io`] when a directory cannot be listed or a present file
/// cannot be read (`Failed`/`AccessDenied`); [`VerifyError::NotAnExport`]
/// (`InvalidParameter`) when `dir` holds no export.
pub fn verify(dir: &Path) -> Result<VerifyReport, EngineError> {
    let meta = fs::metadata(dir).map_err(io_err("open", dir))?;
    if !meta.is_dir() {
        return Err(VerifyError::NotAnExport {
            path: dir.to_path_buf(),
        }
        .into());
    }
    let folders = if is_vm_folder(dir) {
        vec![dir.to_path_buf()]
    } else {
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let path = entry.path();
            if !hidden && path.is_dir() && is_vm_folder(&path) {
                found.push(path);
            }
        }
        found.sort();
        found
    };
    if folders.is_empty() {
        return Err(VerifyError::NotAnExport {
            path: dir.to_path_buf(),
        }
        .into());
    }
    let folders = folders
        .iter()
        .map(|f| verify_folder(f))
        .collect::<Result<Vec<_>, EngineError>>()?;
    Ok(VerifyReport { folders })
}

fn is_vm_folder(dir: &Path) -> bool {
    dir.join(CHECKSUMS_FILE).is_file() || dir.join(MANIFEST_FILE).is_file()
}

/// Findings per relative path.
#[derive(Debug, Default)]
pub(crate) struct Findings(BTreeMap<String, Vec<Finding>>);

impl Findings {
    pub(crate) fn checked(&mut self, path: &str) {
        self.0.entry(path.to_owned()).or_default();
    }
    pub(crate) fn add(&mut self, path: &str, finding: Finding) {
        let list = self.0.entry(path.to_owned()).or_default();
        if !list.contains(&finding) {
            list.push(finding);
        }
    }
}

/// Relative paths (`/`-separated) of every regular file under `root`.
fn list_files(root: &Path) -> Result<BTreeSet<String>, VerifyError> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(io_err("inspect", &entry.path()))?;
            if kind.is_dir() {
                stack.push((entry.path(), rel));
            } else {
                out.insert(rel);
            }
        }
    }
    Ok(out)
}

fn hash_file(path: &Path) -> Result<(Sha256Digest, u64), VerifyError> {
    let mut buf = vec![0u8; 1024 * 1024];
    file_digest(path, &mut buf, || Ok::<(), io::Error>(())).map_err(io_err("read", path))
}

/// Verifies one VM folder on its own (a differencing output's blocks that
/// read from the parent are checked by [`crate::verify_chain`] only).
pub(crate) fn verify_folder(folder: &Path) -> Result<FolderReport, EngineError> {
    let mut findings = Findings::default();
    let present = list_files(folder)?;

    let sums_path = folder.join(CHECKSUMS_FILE);
    let sums = match fs::read_to_string(&sums_path) {
        Ok(text) => match parse_checksums(&text) {
            Ok(entries) => entries,
            Err(e) => {
                findings.add(
                    CHECKSUMS_FILE,
                    Finding::ChecksumsInvalid {
                        line: e.line,
                        reason: e.reason,
                    },
                );
                Vec::new()
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            findings.add(CHECKSUMS_FILE, Finding::MissingFile);
            Vec::new()
        }
        Err(e) => return Err(io_err("read", &sums_path)(e).into()),
    };
    findings.checked(CHECKSUMS_FILE);

    // Read every listed, present, contained file once (in parallel): the
    // manifest's disk outputs by an image scan that also gives their block
    // digests, the others by a plain hash.
    let manifest = load_manifest(folder, &present)?;
    let outputs: BTreeSet<&str> = manifest
        .as_ref()
        .map(|m| m.disks.iter().map(|d| d.output.path.as_str()).collect())
        .unwrap_or_default();
    let to_hash: Vec<&str> = sums
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| is_contained(p) && present.contains(*p))
        .collect();
    let read: Vec<(String, (Sha256Digest, u64), Option<Scanned>)> = to_hash
        .par_iter()
        .map(|p| {
            let path = folder.join(p);
            if outputs.contains(*p) {
                let scan = scan_image(&path);
                let hash = match &scan {
                    Ok(s) => (s.sha256, s.len),
                    Err(_) => hash_file(&path)?,
                };
                Ok(((*p).to_owned(), hash, Some(scan)))
            } else {
                Ok(((*p).to_owned(), hash_file(&path)?, None))
            }
        })
        .collect::<Result<_, VerifyError>>()?;
    let mut hashed: BTreeMap<String, (Sha256Digest, u64)> = BTreeMap::new();
    let mut scans: Scans = BTreeMap::new();
    for (path, hash, scan) in read {
        if let Some(scan) = scan {
            scans.insert(path.clone(), scan);
        }
        hashed.insert(path, hash);
    }

    for (path, expected) in &sums {
        findings.checked(path);
        if !is_contained(path) {
            findings.add(path, Finding::UnsafePath);
        } else if let Some((digest, _)) = hashed.get(path) {
            let actual = to_hex(digest);
            if &actual != expected {
                findings.add(
                    path,
                    Finding::ChecksumMismatch {
                        expected: expected.clone(),
                        actual,
                    },
                );
            }
        } else {
            findings.add(path, Finding::MissingFile);
        }
    }
    let listed: BTreeSet<&str> = sums.iter().map(|(p, _)| p.as_str()).collect();
    for path in &present {
        if path != CHECKSUMS_FILE && !listed.contains(path.as_str()) {
            findings.add(path, Finding::UnlistedFile);
        }
    }

    verify_manifest(
        folder,
        &present,
        manifest.as_ref(),
        &hashed,
        &scans,
        &mut findings,
    )?;

    Ok(findings.into_report(folder))
}

impl Findings {
    /// The report of `folder`, files sorted by path.
    pub(crate) fn into_report(self, folder: &Path) -> FolderReport {
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

impl FolderReport {
    /// Adds `finding` on file `path` (relative to the folder).
    pub(crate) fn add(&mut self, path: &str, finding: Finding) {
        match self.files.iter_mut().find(|f| f.path == path) {
            Some(file) => {
                if !file.findings.contains(&finding) {
                    file.findings.push(finding);
                }
            }
            None => {
                self.files.push(FileReport {
                    path: path.to_owned(),
                    findings: vec![finding],
                });
                self.files.sort_by(|a, b| a.path.cmp(&b.path));
            }
        }
    }
}

/// An image scan's result, or why the file is not a readable image.
pub(crate) type Scanned = Result<ImageScan, String>;
/// Image scans by path relative to the VM folder.
type Scans = BTreeMap<String, Scanned>;

/// The folder's manifest, read and parsed once, or the finding that says
/// why there is none (missing, not UTF-8 or not a manifest).
fn load_manifest(
    folder: &Path,
    present: &BTreeSet<String>,
) -> Result<Result<Manifest, Finding>, EngineError> {
    if !present.contains(MANIFEST_FILE) {
        return Ok(Err(Finding::MissingFile));
    }
    let manifest_path = folder.join(MANIFEST_FILE);
    let text = fs::read(&manifest_path).map_err(io_err("read", &manifest_path))?;
    Ok(std::str::from_utf8(&text)
        .map_err(|e| e.to_string())
        .and_then(Manifest::from_json)
        .map_err(|reason| Finding::ManifestInvalid { reason }))
}

/// Cross-checks the manifest against the files and the images' block
/// digests against the listed ones.
fn verify_manifest(
    folder: &Path,
    present: &BTreeSet<String>,
    manifest: Result<&Manifest, &Finding>,
    hashed: &BTreeMap<String, (Sha256Digest, u64)>,
    scans: &Scans,
    findings: &mut Findings,
) -> Result<(), EngineError> {
    findings.checked(MANIFEST_FILE);
    let manifest = match manifest {
        Ok(m) => m,
        Err(finding) => {
            findings.add(MANIFEST_FILE, finding.clone());
            return Ok(());
        }
    };

    let mut files = vec![(
        "config".to_owned(),
        manifest.config.path.clone(),
        manifest.config.size,
        manifest.config.sha256.clone(),
    )];
    for (i, disk) in manifest.disks.iter().enumerate() {
        files.push((
            format!("disks[{i}].output"),
            disk.output.path.clone(),
            disk.output.size,
            disk.output.sha256.clone(),
        ));
        if let Some(digests) = &disk.digests {
            files.push((
                format!("disks[{i}].digests"),
                digests.path.clone(),
                digests.size,
                digests.sha256.clone(),
            ));
        }
    }
    for (field, path, size, sha) in &files {
        findings.checked(path);
        if !is_contained(path) {
            findings.add(path, Finding::UnsafePath);
            continue;
        }
        if !present.contains(path) {
            findings.add(path, Finding::MissingFile);
            continue;
        }
        let (digest, len) = match hashed.get(path) {
            Some(h) => *h,
            None => hash_file(&folder.join(path))?,
        };
        if len != *size {
            findings.add(
                path,
                Finding::ManifestMismatch {
                    field: format!("{field}.size"),
                    manifest: size.to_string(),
                    actual: len.to_string(),
                },
            );
        }
        if &to_hex(&digest) != sha {
            findings.add(
                path,
                Finding::ManifestMismatch {
                    field: format!("{field}.sha256"),
                    manifest: sha.clone(),
                    actual: to_hex(&digest),
                },
            );
        }
    }

    for (i, disk) in manifest.disks.iter().enumerate() {
        if is_contained(&disk.output.path) && present.contains(&disk.output.path) {
            let scanned;
            let scan = match scans.get(&disk.output.path) {
                Some(s) => s,
                None => {
                    scanned = scan_image(&folder.join(&disk.output.path));
                    &scanned
                }
            };
            verify_disk(folder, i, disk, scan, findings)?;
        }
    }
    Ok(())
}

/// Compares one exported VHDX's geometry, identity and every block digest
/// (from its `scan`) with the manifest.
fn verify_disk(
    folder: &Path,
    index: usize,
    disk: &DiskRecord,
    scan: &Scanned,
    findings: &mut Findings,
) -> Result<(), EngineError> {
    let image = disk.output.path.as_str();
    let field = |name: &str| format!("disks[{index}].{name}");

    // The listed digests (the sidecar, or inline in format 1), read along.
    let listed = match BlockDigests::of(folder, disk) {
        Ok(d) => d,
        Err(reason) => {
            findings.add(
                MANIFEST_FILE,
                Finding::ManifestInvalid {
                    reason: format!("{}: {reason}", field("digests")),
                },
            );
            return Ok(());
        }
    };

    if disk.output.kind == OUTPUT_KIND_DIFFERENCING {
        return crate::verify_chain::verify_differencing(index, disk, &listed, scan, findings);
    }
    let scan = match scan {
        Ok(s) => s,
        Err(reason) => {
            findings.add(
                image,
                Finding::ImageInvalid {
                    reason: reason.clone(),
                },
            );
            return Ok(());
        }
    };
    let checks = geometry_checks(disk, &scan.file, false);
    let mut aligned = true;
    for (name, manifest, actual) in checks {
        if manifest != actual {
            if name == "virtual_size" || name == "block_size" || name == "has_parent" {
                aligned = false;
            }
            findings.add(
                image,
                Finding::ManifestMismatch {
                    field: field(name),
                    manifest,
                    actual,
                },
            );
        }
    }
    if !aligned {
        return Ok(());
    }

    report_digests(image, disk, index, &listed, scan.all_blocks(), findings);
    Ok(())
}

/// The file that lists `disk`'s block digests: its sidecar (format 2) or
/// the manifest (format 1).
pub(crate) fn listing_file(disk: &DiskRecord) -> &str {
    disk.digests
        .as_ref()
        .map_or(MANIFEST_FILE, |d| d.path.as_str())
}

/// The first [`MAX_LISTED_BLOCK_MISMATCHES`] blocks whose digest differs
/// from the listed one, and how many more.
#[derive(Debug)]
pub(crate) struct Mismatches {
    block_size: u64,
    count: usize,
    listed: Vec<Finding>,
}

impl Mismatches {
    pub(crate) fn new(block_size: u64) -> Mismatches {
        Mismatches {
            block_size,
            count: 0,
            listed: Vec::new(),
        }
    }

    /// Compares block `block`'s listed digest `want` with the image's `got`.
    pub(crate) fn check(&mut self, block: u64, want: &Sha256Digest, got: &Sha256Digest) {
        if want == got {
            return;
        }
        self.count += 1;
        if self.count <= MAX_LISTED_BLOCK_MISMATCHES {
            self.listed.push(Finding::BlockDigestMismatch {
                block,
                offset: block.saturating_mul(self.block_size),
                expected: to_hex(want),
                actual: to_hex(got),
            });
        }
    }

    /// Adds the findings on file `blame`.
    pub(crate) fn report(self, blame: &str, findings: &mut Findings) {
        for finding in self.listed {
            findings.add(blame, finding);
        }
        if self.count > MAX_LISTED_BLOCK_MISMATCHES {
            findings.add(
                blame,
                Finding::MoreBlockMismatches {
                    count: (self.count - MAX_LISTED_BLOCK_MISMATCHES) as u64,
                },
            );
        }
    }
}

/// Reports on the listing file when the listed digests (read to the end by
/// `reader`) do not hash to the manifest's content digest.
pub(crate) fn check_listed_content(
    disk: &DiskRecord,
    index: usize,
    reader: DigestReader<'_>,
    findings: &mut Findings,
) {
    let listed_content = to_hex(&reader.finish());
    if listed_content != disk.content_digest {
        findings.add(
            listing_file(disk),
            Finding::ManifestMismatch {
                field: format!("disks[{index}].content_digest"),
                manifest: disk.content_digest.clone(),
                actual: format!("{listed_content} (over the listed block digests)"),
            },
        );
    }
}

/// Compares the digests recomputed from an image (or a chain ending in it)
/// with the listed ones, in one pass: the listed digests' own content
/// digest, a content digest mismatch of the image, and each differing block
/// ([`Mismatches`]). When the recomputed digests reproduce the manifest's
/// content digest the image is intact and the differing entries are blamed
/// on the listing file.
pub(crate) fn report_digests(
    image: &str,
    disk: &DiskRecord,
    index: usize,
    listed: &BlockDigests,
    recomputed: impl IntoIterator<Item = Sha256Digest>,
    findings: &mut Findings,
) {
    let mut reader = match listed.reader() {
        Ok(r) => r,
        Err(reason) => {
            findings.add(listing_file(disk), Finding::ManifestInvalid { reason });
            return;
        }
    };
    let mut hasher = Sha256::new();
    let mut mismatches = Mismatches::new(u64::from(disk.block_size));
    for (block, got) in recomputed.into_iter().enumerate() {
        let block = block as u64;
        hasher.update(got);
        match reader.get(block) {
            Ok(want) => mismatches.check(block, &want, &got),
            Err(reason) => {
                findings.add(listing_file(disk), Finding::ManifestInvalid { reason });
                return;
            }
        }
    }
    check_listed_content(disk, index, reader, findings);
    let actual_content: Sha256Digest = hasher.finalize().into();
    let blame = if to_hex(&actual_content) == disk.content_digest {
        listing_file(disk)
    } else {
        findings.add(
            image,
            Finding::ContentDigestMismatch {
                expected: disk.content_digest.clone(),
                actual: to_hex(&actual_content),
            },
        );
        image
    };
    mismatches.report(blame, findings);
}

/// Block digests of a VHDX chain read through `refpoint-vhdx`: blocks the
/// chain maps entirely to zero are not read; others are read in pieces of
/// at most [`crate::image_scan::SCAN_CHUNK`] bytes (memory stays bounded
/// whatever the block size) and hashed.
pub(crate) fn recompute_digests(
    chain: &Chain,
    virtual_size: u64,
    block_size: u64,
) -> Result<Vec<Sha256Digest>, String> {
    let zeros = ZeroDigests::new(virtual_size, block_size);
    let count = virtual_size.div_ceil(block_size.max(1));
    let piece = usize::try_from(block_size)
        .map_err(|e| e.to_string())?
        .min(crate::image_scan::SCAN_CHUNK);
    (0..count)
        .into_par_iter()
        .map_init(
            || {
                let mut buf = Vec::new();
                buf.try_reserve_exact(piece).map(|()| {
                    buf.resize(piece, 0);
                    buf
                })
            },
            |buf, block| {
                let buf = buf
                    .as_mut()
                    .map_err(|_| format!("cannot allocate a {piece}-byte buffer"))?;
                let offset = block * block_size;
                let len = virtual_size.saturating_sub(offset).min(block_size);
                let extents = chain
                    .map_range(offset, len)
                    .map_err(|e| format!("block {block}: {e}"))?;
                if extents
                    .iter()
                    .all(|e| matches!(e.source, ExtentSource::Zero))
                {
                    return Ok(zeros.for_len(len));
                }
                let mut hasher = Sha256::new();
                let mut at = 0u64;
                while at < len {
                    let n = (len - at).min(piece as u64);
                    let dst = buf
                        .get_mut(..usize::try_from(n).unwrap_or(usize::MAX))
                        .ok_or_else(|| format!("block {block}: piece {n} exceeds the buffer"))?;
                    chain.read_at(offset + at, dst).map_err(|e| {
                        format!("block {block} (virtual offset {}): {e}", offset + at)
                    })?;
                    hasher.update(&*dst);
                    at += n;
                }
                Ok(hasher.finalize().into())
            },
        )
        .collect()
}

/// The manifest fields of `disk` that must equal what the exported `file`
/// says of itself (name, manifest value, file value): geometry, identity and
/// whether it has a parent (`expect_parent`: differencing output).
pub(crate) fn geometry_checks(
    disk: &DiskRecord,
    file: &refpoint_vhdx::VhdxFile,
    expect_parent: bool,
) -> Vec<(&'static str, String, String)> {
    let g = file.geometry();
    vec![
        (
            "virtual_size",
            disk.virtual_size.to_string(),
            g.virtual_size.to_string(),
        ),
        (
            "block_size",
            disk.block_size.to_string(),
            g.block_size.to_string(),
        ),
        (
            "logical_sector_size",
            disk.logical_sector_size.to_string(),
            g.logical_sector_size.to_string(),
        ),
        (
            "physical_sector_size",
            disk.physical_sector_size.to_string(),
            g.physical_sector_size.to_string(),
        ),
        (
            "virtual_disk_id",
            disk.virtual_disk_id.to_ascii_uppercase(),
            guid_upper(file.virtual_disk_id()),
        ),
        (
            "output.data_write_guid",
            disk.output.data_write_guid.to_ascii_uppercase(),
            guid_upper(file.data_write_guid()),
        ),
        (
            "has_parent",
            expect_parent.to_string(),
            g.has_parent.to_string(),
        ),
    ]
}
