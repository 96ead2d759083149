//! Differencing chains and virtual-disk reads (MS-VHDX §2.5.1, §2.6.2.6).
//!
//! A [`Chain`] is a leaf VHDX and its parents, leaf first. Each parent is
//! found through the child's parent locator and accepted only if its current
//! DataWriteGuid equals the child's `parent_linkage` (or `parent_linkage2`);
//! virtual size and logical sector size must agree along the chain.
//!
//! Reading resolves a virtual range layer by layer (vhdx.md §7.4, §9):
//! NOT_PRESENT → the parent (zeros below the base); ZERO, UNDEFINED,
//! UNMAPPED → zeros; FULLY_PRESENT → this file, bitmap not consulted;
//! PARTIALLY_PRESENT → per logical sector, bitmap bit 1 → this file, 0 → the
//! parent. Block sizes may differ between layers: only byte/sector offsets
//! carry across. [`Chain::map_range`] does this from metadata alone (BAT runs
//! and sector bitmaps) and returns coalesced [`Extent`]s.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::bat::RunKind;
use crate::error::{ErrorKind, Result, VhdxError};
use crate::file::{Geometry, VhdxFile};
use crate::locator::ParentLocator;

/// Most layers a chain may have (leaf + parents).
pub const MAX_CHAIN_LAYERS: usize = 64;

/// Violations of chain rules and invalid read requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// §2.6.2.6.3: no file at any path of the parent locator.
    #[error("parent of {} not found; tried: {}", child.display(), display_paths(tried))]
    ParentNotFound {
        /// The differencing file.
        child: PathBuf,
        /// Candidate paths tried, in order.
        tried: Vec<PathBuf>,
    },
    /// §2.6.2.6.3: the parent's DataWriteGuid is neither `parent_linkage` nor `parent_linkage2`.
    #[error("{} expects a parent with DataWriteGuid {{{expected}}}{}, but {} has DataWriteGuid {{{found}}}", child.display(), expected2.map(|g| format!(" or {{{g}}}")).unwrap_or_default(), parent.display())]
    LinkageMismatch {
        /// The differencing file.
        child: PathBuf,
        /// The candidate parent.
        parent: PathBuf,
        /// `parent_linkage`.
        expected: Uuid,
        /// `parent_linkage2`, if set.
        expected2: Option<Uuid>,
        /// The candidate's current DataWriteGuid.
        found: Uuid,
    },
    /// A file appears twice in the chain.
    #[error("chain cycle: {} is already a layer of this chain", path.display())]
    Cycle {
        /// The canonical path seen twice.
        path: PathBuf,
    },
    /// More than [`MAX_CHAIN_LAYERS`] layers.
    #[error("chain starting at {} has more than {limit} layers", leaf.display())]
    TooLong {
        /// The leaf.
        leaf: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// §2.6.2.2/§2.6.2.4: virtual size and logical sector size must agree along the chain.
    #[error("{} and its parent {} differ in {field}: {child_value} vs {parent_value}", child.display(), parent.display())]
    GeometryMismatch {
        /// The child.
        child: PathBuf,
        /// The parent.
        parent: PathBuf,
        /// `"virtual size"` or `"logical sector size"`.
        field: &'static str,
        /// Child's value (bytes).
        child_value: u64,
        /// Parent's value (bytes).
        parent_value: u64,
    },
    /// `from_paths`: the last layer is a differencing file, its parent is missing.
    #[error("chain ends at differencing file {}: its parent is not in the list", path.display())]
    MissingBase {
        /// The last listed layer.
        path: PathBuf,
    },
    /// `from_paths`: a base (non-differencing) file is followed by more layers.
    #[error("{} has no parent but {} is listed after it", base.display(), next.display())]
    LayerAfterBase {
        /// The base file.
        base: PathBuf,
        /// The layer listed after it.
        next: PathBuf,
    },
    /// `from_paths` with no paths.
    #[error("a chain needs at least one layer")]
    Empty,
    /// A read or map request outside `[0, virtual_size)`.
    #[error(
        "range [{offset:#x}, +{length:#x}) is outside the virtual disk of {virtual_size:#x} bytes"
    )]
    OutOfRange {
        /// Virtual offset (bytes).
        offset: u64,
        /// Length (bytes).
        length: u64,
        /// Virtual size (bytes).
        virtual_size: u64,
    },
    /// `read_extent` with a buffer whose length differs from the extent's.
    #[error("buffer of {found} bytes for an extent of {expected} bytes")]
    BufferMismatch {
        /// Extent length (bytes).
        expected: u64,
        /// Buffer length (bytes).
        found: u64,
    },
    /// `read_extent` with an extent naming a layer this chain does not have.
    #[error("extent names layer {layer} but the chain has {layers} layers")]
    NoSuchLayer {
        /// Layer named.
        layer: usize,
        /// Layers in the chain.
        layers: usize,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(the locator has no path)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ChainError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            ChainError::OutOfRange { .. }
            | ChainError::BufferMismatch { .. }
            | ChainError::NoSuchLayer { .. }
            | ChainError::Empty => ErrorKind::InvalidArgument,
            _ => ErrorKind::ChainBroken,
        }
    }
}

/// Where the bytes of an [`Extent`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtentSource {
    /// Zeros (ZERO/UNDEFINED/UNMAPPED blocks, or NOT_PRESENT down to the base).
    Zero,
    /// Bytes of layer `layer` (0 = leaf) at `file_offset` (bytes).
    Layer {
        /// Index into [`Chain::layers`].
        layer: usize,
        /// File offset of the first byte.
        file_offset: u64,
    },
}

/// A run of virtual bytes with a single source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extent {
    /// Virtual offset of the first byte.
    pub virtual_offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// Where the bytes come from.
    pub source: ExtentSource,
}

/// A leaf VHDX and its parents, leaf first, links validated.
#[derive(Debug)]
pub struct Chain {
    layers: Vec<VhdxFile>,
}

impl Chain {
    /// Opens `leaf` and discovers its parents through the parent locators:
    /// `relative_path` (relative to the child's directory), then
    /// `volume_path` and `absolute_win32_path` (as-is when absolute after
    /// `\` → `/`, then by file name in the child's directory).
    ///
    /// # Errors
    /// Any [`VhdxFile::open`] error of a layer; `ChainBroken` for
    /// [`ChainError::ParentNotFound`], [`ChainError::LinkageMismatch`],
    /// [`ChainError::Cycle`], [`ChainError::TooLong`],
    /// [`ChainError::GeometryMismatch`].
    pub fn open(leaf: &Path) -> Result<Chain> {
        let first = VhdxFile::open(leaf)?;
        let mut seen = HashSet::new();
        seen.insert(canonical(leaf));
        let mut layers = vec![first];
        while let Some(child) = layers.last() {
            let Some(locator) = child
                .parent_locator()
                .filter(|_| child.geometry().has_parent)
            else {
                break;
            };
            if layers.len() >= MAX_CHAIN_LAYERS {
                return Err(chain_err(ChainError::TooLong {
                    leaf: leaf.to_path_buf(),
                    limit: MAX_CHAIN_LAYERS,
                }));
            }
            let parent = find_parent(child, locator, &seen)?;
            seen.insert(canonical(parent.path()));
            check_geometry(child, &parent)?;
            layers.push(parent);
        }
        Ok(Chain { layers })
    }

    /// Builds a chain from explicit paths, leaf first, validating every link
    /// as [`Chain::open`] does.
    ///
    /// # Errors
    /// As [`Chain::open`], plus [`ChainError::Empty`],
    /// [`ChainError::MissingBase`], [`ChainError::LayerAfterBase`].
    pub fn from_paths(paths: &[PathBuf]) -> Result<Chain> {
        if paths.is_empty() {
            return Err(chain_err(ChainError::Empty));
        }
        if paths.len() > MAX_CHAIN_LAYERS {
            return Err(chain_err(ChainError::TooLong {
                leaf: paths.first().cloned().unwrap_or_default(),
                limit: MAX_CHAIN_LAYERS,
            }));
        }
        let mut seen = HashSet::new();
        let mut layers: Vec<VhdxFile> = Vec::with_capacity(paths.len());
        for path in paths {
            if !seen.insert(canonical(path)) {
                return Err(chain_err(ChainError::Cycle {
                    path: canonical(path),
                }));
            }
            let file = VhdxFile::open(path)?;
            if let Some(child) = layers.last() {
                let Some(locator) = child
                    .parent_locator()
                    .filter(|_| child.geometry().has_parent)
                else {
                    return Err(chain_err(ChainError::LayerAfterBase {
                        base: child.path().to_path_buf(),
                        next: path.clone(),
                    }));
                };
                check_linkage(child, locator, &file)?;
                check_geometry(child, &file)?;
            }
            layers.push(file);
        }
        match layers.last() {
            Some(last) if last.geometry().has_parent => Err(chain_err(ChainError::MissingBase {
                path: last.path().to_path_buf(),
            })),
            _ => Ok(Chain { layers }),
        }
    }

    /// All layers, leaf first.
    pub fn layers(&self) -> &[VhdxFile] {
        &self.layers
    }

    /// The leaf (layer 0).
    pub fn leaf(&self) -> &VhdxFile {
        // A chain always has at least one layer (checked by both constructors).
        &self.layers[0]
    }

    /// The leaf's geometry.
    pub fn geometry(&self) -> &Geometry {
        self.leaf().geometry()
    }

    /// Virtual disk size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.geometry().virtual_size
    }

    /// Maps `[virtual_offset, virtual_offset + length)` to coalesced extents,
    /// from metadata only (BATs and sector bitmaps; no payload reads).
    ///
    /// # Errors
    /// `InvalidArgument` ([`ChainError::OutOfRange`]) for a range beyond the
    /// virtual size; I/O errors reading sector bitmaps.
    pub fn map_range(&self, virtual_offset: u64, length: u64) -> Result<Vec<Extent>> {
        let end = virtual_offset
            .checked_add(length)
            .filter(|&e| e <= self.virtual_size())
            .ok_or_else(|| {
                chain_err(ChainError::OutOfRange {
                    offset: virtual_offset,
                    length,
                    virtual_size: self.virtual_size(),
                })
            })?;
        let mut out = Vec::new();
        self.resolve(0, virtual_offset, end, &mut out)?;
        Ok(out)
    }

    /// Resolves `[start, end)` in layer `layer` and below, appending extents.
    fn resolve(&self, layer: usize, start: u64, end: u64, out: &mut Vec<Extent>) -> Result<()> {
        let Some(file) = self.layers.get(layer) else {
            push(out, start, end, ExtentSource::Zero);
            return Ok(());
        };
        let bs = u64::from(file.geometry().block_size);
        let lss = u64::from(file.geometry().logical_sector_size.max(1));
        let mut pos = start;
        for run in file.runs_from(start / bs) {
            if pos >= end {
                break;
            }
            let run_start = run.first_block.saturating_mul(bs);
            let run_end = run
                .first_block
                .saturating_add(run.blocks)
                .saturating_mul(bs);
            let seg_end = run_end.min(end);
            match run.kind {
                RunKind::Parent => self.resolve(layer + 1, pos, seg_end, out)?,
                RunKind::Zero => push(out, pos, seg_end, ExtentSource::Zero),
                RunKind::Data { file_offset } => push(
                    out,
                    pos,
                    seg_end,
                    ExtentSource::Layer {
                        layer,
                        file_offset: file_offset + (pos - run_start),
                    },
                ),
                RunKind::Partial { file_offset } => {
                    let bitmap = file.sector_bitmap_bytes(run.first_block)?;
                    let bit = |sector: u64| {
                        usize::try_from(sector / 8)
                            .ok()
                            .and_then(|i| bitmap.get(i))
                            .is_some_and(|b| b >> (sector % 8) & 1 == 1)
                    };
                    let mut p = pos;
                    while p < seg_end {
                        let sector = (p - run_start) / lss;
                        let present = bit(sector);
                        let mut next = sector + 1;
                        while run_start + next * lss < seg_end && bit(next) == present {
                            next += 1;
                        }
                        let q = (run_start + next * lss).min(seg_end);
                        if present {
                            let source = ExtentSource::Layer {
                                layer,
                                file_offset: file_offset + (p - run_start),
                            };
                            push(out, p, q, source);
                        } else {
                            self.resolve(layer + 1, p, q, out)?;
                        }
                        p = q;
                    }
                }
            }
            pos = seg_end;
        }
        if pos < end {
            // The runs cover every payload block, and end ≤ virtual size.
            return Err(VhdxError::other(
                ErrorKind::Corrupt,
                format!("BAT runs of layer {layer} end before virtual offset {end:#x}"),
            )
            .with_path(file.path()));
        }
        Ok(())
    }

    /// Reads the bytes of one extent; `buf.len()` must equal `extent.length`.
    ///
    /// # Errors
    /// `InvalidArgument` for a length mismatch or an unknown layer; I/O errors.
    pub fn read_extent(&self, extent: &Extent, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 != extent.length {
            return Err(chain_err(ChainError::BufferMismatch {
                expected: extent.length,
                found: buf.len() as u64,
            }));
        }
        match extent.source {
            ExtentSource::Zero => {
                buf.fill(0);
                Ok(())
            }
            ExtentSource::Layer { layer, file_offset } => self
                .layers
                .get(layer)
                .ok_or_else(|| {
                    chain_err(ChainError::NoSuchLayer {
                        layer,
                        layers: self.layers.len(),
                    })
                })?
                .read_file_at(file_offset, buf),
        }
    }

    /// Reads `buf.len()` virtual bytes at `virtual_offset`.
    ///
    /// # Errors
    /// `InvalidArgument` past the virtual size; I/O errors.
    pub fn read_at(&self, virtual_offset: u64, buf: &mut [u8]) -> Result<()> {
        for extent in self.map_range(virtual_offset, buf.len() as u64)? {
            let from =
                usize::try_from(extent.virtual_offset - virtual_offset).unwrap_or(usize::MAX);
            let len = usize::try_from(extent.length).unwrap_or(usize::MAX);
            let Some(dst) = from.checked_add(len).and_then(|to| buf.get_mut(from..to)) else {
                return Err(chain_err(ChainError::BufferMismatch {
                    expected: extent.length,
                    found: 0,
                }));
            };
            self.read_extent(&extent, dst)?;
        }
        Ok(())
    }
}

/// Appends `[start, end)` from `source`, merging with the previous extent
/// when both are zeros or contiguous bytes of the same layer.
fn push(out: &mut Vec<Extent>, start: u64, end: u64, source: ExtentSource) {
    if end <= start {
        return;
    }
    let length = end - start;
    if let Some(last) = out.last_mut()
        && last.virtual_offset + last.length == start
    {
        let merges = match (last.source, source) {
            (ExtentSource::Zero, ExtentSource::Zero) => true,
            (
                ExtentSource::Layer {
                    layer: a,
                    file_offset: oa,
                },
                ExtentSource::Layer {
                    layer: b,
                    file_offset: ob,
                },
            ) => a == b && oa.checked_add(last.length) == Some(ob),
            _ => false,
        };
        if merges {
            last.length += length;
            return;
        }
    }
    out.push(Extent {
        virtual_offset: start,
        length,
        source,
    });
}

fn chain_err(e: ChainError) -> VhdxError {
    VhdxError::new(e).with_operation("open chain")
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Candidate parent paths from a locator, in resolution order.
pub(crate) fn candidate_paths(child: &Path, locator: &ParentLocator) -> Vec<PathBuf> {
    let dir = child
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let unix = |s: &str| s.replace('\\', "/");
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(rel) = locator.relative_path() {
        let p = PathBuf::from(unix(rel));
        out.push(if p.is_absolute() { p } else { dir.join(p) });
    }
    for abs in [locator.volume_path(), locator.absolute_win32_path()]
        .into_iter()
        .flatten()
    {
        let u = unix(abs);
        let p = PathBuf::from(&u);
        if p.is_absolute() {
            out.push(p);
        }
        if let Some(name) = u.rsplit('/').next().filter(|n| !n.is_empty() && *n != "..") {
            out.push(dir.join(name));
        }
    }
    let mut unique = Vec::new();
    for p in out {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    unique
}

/// Tries each candidate path in order; the first whose DataWriteGuid matches wins.
fn find_parent(
    child: &VhdxFile,
    locator: &ParentLocator,
    seen: &HashSet<PathBuf>,
) -> Result<VhdxFile> {
    let candidates = candidate_paths(child.path(), locator);
    let mut first_mismatch: Option<VhdxError> = None;
    for path in &candidates {
        if !path.is_file() {
            continue;
        }
        let canon = canonical(path);
        if seen.contains(&canon) {
            return Err(chain_err(ChainError::Cycle { path: canon }));
        }
        let parent = VhdxFile::open(path)?;
        match check_linkage(child, locator, &parent) {
            Ok(()) => return Ok(parent),
            Err(e) => {
                first_mismatch.get_or_insert(e);
            }
        }
    }
    Err(first_mismatch.unwrap_or_else(|| {
        chain_err(ChainError::ParentNotFound {
            child: child.path().to_path_buf(),
            tried: candidates,
        })
    }))
}

fn check_linkage(child: &VhdxFile, locator: &ParentLocator, parent: &VhdxFile) -> Result<()> {
    if locator.accepts(parent.data_write_guid()) {
        return Ok(());
    }
    Err(chain_err(ChainError::LinkageMismatch {
        child: child.path().to_path_buf(),
        parent: parent.path().to_path_buf(),
        expected: locator.parent_linkage(),
        expected2: locator.parent_linkage2(),
        found: parent.data_write_guid(),
    }))
}

fn check_geometry(child: &VhdxFile, parent: &VhdxFile) -> Result<()> {
    let (c, p) = (child.geometry(), parent.geometry());
    let mismatch = if c.virtual_size != p.virtual_size {
        Some(("virtual size", c.virtual_size, p.virtual_size))
    } else if c.logical_sector_size != p.logical_sector_size {
        Some((
            "logical sector size",
            u64::from(c.logical_sector_size),
            u64::from(p.logical_sector_size),
        ))
    } else {
        None
    };
    match mismatch {
        None => Ok(()),
        Some((field, child_value, parent_value)) => Err(chain_err(ChainError::GeometryMismatch {
            child: child.path().to_path_buf(),
            parent: parent.path().to_path_buf(),
            field,
            child_value,
            parent_value,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locator::locator_to_bytes;

    fn locator(pairs: &[(&str, &str)]) -> ParentLocator {
        let mut all = vec![("parent_linkage", "{ff34003b-11ed-4cf8-a166-b2be05e20b80}")];
        all.extend_from_slice(pairs);
        ParentLocator::parse(&locator_to_bytes(&all)).unwrap()
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn chain_is_send_and_sync() {
        assert_send_sync::<Chain>();
    }

    #[test]
    fn relative_path_comes_first_then_absolute_then_basenames_without_repeats() {
        let loc = locator(&[
            ("relative_path", r".\p.avhdx"),
            ("volume_path", r"\\?\Volume{0}\VMs\p.avhdx"),
            ("absolute_win32_path", r"\srv\VMs\q.vhdx"),
        ]);
        let c = candidate_paths(Path::new("/d/child.avhdx"), &loc);
        assert_eq!(
            c,
            vec![
                PathBuf::from("/d/./p.avhdx"),
                PathBuf::from("//?/Volume{0}/VMs/p.avhdx"),
                // "/d/p.avhdx" (volume_path's name) equals "/d/./p.avhdx": not repeated.
                PathBuf::from("/srv/VMs/q.vhdx"),
                PathBuf::from("/d/q.vhdx"),
            ]
        );
    }

    #[test]
    fn drive_letter_path_is_tried_only_by_name() {
        let loc = locator(&[("absolute_win32_path", r"C:\VMs\p.vhdx")]);
        let c = candidate_paths(Path::new("child.avhdx"), &loc);
        assert_eq!(c, vec![PathBuf::from("./p.vhdx")]);
    }

    #[test]
    fn adjacent_zero_extents_coalesce() {
        let mut out = Vec::new();
        push(&mut out, 0, 10, ExtentSource::Zero);
        push(&mut out, 10, 20, ExtentSource::Zero);
        assert_eq!(
            out,
            vec![Extent {
                virtual_offset: 0,
                length: 20,
                source: ExtentSource::Zero
            }]
        );
    }

    #[test]
    fn contiguous_layer_extents_coalesce_but_gaps_do_not() {
        let mut out = Vec::new();
        let src = |o| ExtentSource::Layer {
            layer: 1,
            file_offset: o,
        };
        push(&mut out, 0, 10, src(100));
        push(&mut out, 10, 20, src(110));
        push(&mut out, 20, 30, src(200));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].length, 20);
    }
}
