//! What one layer defines by itself (MS-VHDX §2.5.1): the virtual ranges
//! it does not defer to its parent. FULLY_PRESENT blocks and the set bits of
//! PARTIALLY_PRESENT blocks hold data in the file; ZERO, UNDEFINED and
//! UNMAPPED blocks read as zeros; NOT_PRESENT blocks and clear bits defer to
//! the parent (vhdx.md §9 — the same rules as [`Chain`](crate::Chain)).
//!
//! For a differencing layer that recorded a tracking epoch, the defined
//! ranges are exactly the sectors written during the epoch.

use crate::bat::RunKind;
use crate::error::Result;
use crate::file::VhdxFile;

/// How a defined range reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    /// Bytes stored in the layer from this file offset (bytes).
    Data {
        /// File offset of the range's first byte.
        file_offset: u64,
    },
    /// Reads as zeros without being stored (ZERO / UNDEFINED / UNMAPPED).
    Zero,
}

/// A virtual range `[offset, offset + length)` (bytes) the layer defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defined {
    /// Virtual offset, bytes (a multiple of the logical sector size).
    pub offset: u64,
    /// Length, bytes (a multiple of the logical sector size, or up to the
    /// virtual size for the last block).
    pub length: u64,
    /// Where its bytes come from.
    pub definition: Definition,
}

impl Defined {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

/// Every range `file` defines by itself, ascending and non-overlapping;
/// adjacent ranges are merged when they read the same way (zeros, or
/// contiguous bytes of the file). Reads metadata only (BAT and sector
/// bitmaps).
///
/// # Errors
/// I/O errors reading a sector bitmap; `Corrupt` if a PARTIALLY_PRESENT
/// block has no sector bitmap.
pub fn defined(file: &VhdxFile) -> Result<Vec<Defined>> {
    let g = file.geometry();
    let bs = u64::from(g.block_size);
    let lss = u64::from(g.logical_sector_size.max(1));
    let size = g.virtual_size;
    let mut out: Vec<Defined> = Vec::new();
    for run in file.runs_from(0) {
        let start = run.first_block.saturating_mul(bs).min(size);
        let end = run
            .first_block
            .saturating_add(run.blocks)
            .saturating_mul(bs)
            .min(size);
        match run.kind {
            RunKind::Parent => {}
            RunKind::Zero => push(&mut out, start, end, Definition::Zero),
            RunKind::Data { file_offset } => {
                push(&mut out, start, end, Definition::Data { file_offset });
            }
            RunKind::Partial { file_offset } => {
                let bitmap = file.sector_bitmap_bytes(run.first_block)?;
                let bit = |sector: u64| {
                    usize::try_from(sector / 8)
                        .ok()
                        .and_then(|i| bitmap.get(i))
                        .is_some_and(|b| b >> (sector % 8) & 1 == 1)
                };
                let sectors = (end - start).div_ceil(lss);
                let mut sector = 0;
                while sector < sectors {
                    if !bit(sector) {
                        sector += 1;
                        continue;
                    }
                    let first = sector;
                    while sector < sectors && bit(sector) {
                        sector += 1;
                    }
                    let from = start + first * lss;
                    let to = (start + sector * lss).min(end);
                    let definition = Definition::Data {
                        file_offset: file_offset + first * lss,
                    };
                    push(&mut out, from, to, definition);
                }
            }
        }
    }
    Ok(out)
}

/// The ranges `file` defines, merged regardless of how they read:
/// `(offset, length)` in bytes, ascending, coalesced. For an epoch layer
/// this is the epoch's changed set.
///
/// # Errors
/// As [`defined`].
pub fn defined_ranges(file: &VhdxFile) -> Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for d in defined(file)? {
        match out.last_mut() {
            Some((o, l)) if *o + *l == d.offset => *l += d.length,
            _ => out.push((d.offset, d.length)),
        }
    }
    Ok(out)
}

/// Appends `[start, end)`, merging with the previous range when it reads
/// the same way and touches it.
fn push(out: &mut Vec<Defined>, start: u64, end: u64, definition: Definition) {
    if end <= start {
        return;
    }
    if let Some(last) = out.last_mut()
        && last.end() == start
    {
        let joins = match (last.definition, definition) {
            (Definition::Zero, Definition::Zero) => true,
            (Definition::Data { file_offset: a }, Definition::Data { file_offset: b }) => {
                a.checked_add(last.length) == Some(b)
            }
            _ => false,
        };
        if joins {
            last.length += end - start;
            return;
        }
    }
    out.push(Defined {
        offset: start,
        length: end - start,
        definition,
    });
}
