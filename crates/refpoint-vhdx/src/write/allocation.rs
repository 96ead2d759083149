//! Where a `write_at` puts new blocks and which metadata it changes: the
//! per-call [`Plan`] (BAT entries, sector bitmap bit ranges, allocation
//! frontier) and the first free offset of an opened file.

use super::{WriteError, fail};
use crate::error::Result;
use crate::file::{Geometry, VhdxFile};
use crate::format::{BatEntry, SECTOR_BITMAP_BLOCK_SIZE, round_up_mib, sector_bitmap_state};
use std::collections::BTreeMap;

/// Changes one `write_at` makes before they are logged.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Changed BAT entries by BAT index.
    pub(super) bat: BTreeMap<u64, u64>,
    /// Sector bitmap bit changes, applied in order.
    pub(super) bits: Vec<BitRange>,
    /// Allocation frontier after this write, bytes.
    pub(super) frontier: u64,
}

impl Plan {
    /// Allocates `length` bytes (a multiple of 1 MiB) at the frontier.
    pub(super) fn allocate(&mut self, length: u64) -> Result<u64> {
        let offset = self.frontier;
        self.frontier = offset
            .checked_add(length)
            .ok_or(fail(WriteError::FileTooLarge { frontier: offset }))?;
        Ok(offset)
    }
}

/// `count` bits from bit `first` of the sector bitmap block at `sb_offset`.
#[derive(Debug, Clone, Copy)]
pub(super) struct BitRange {
    pub(super) sb_offset: u64,
    pub(super) first: u64,
    pub(super) count: u64,
    pub(super) value: bool,
}

/// Sets or clears `count` bits from `first` in a 4 KiB sector (LSB first).
pub(super) fn set_bits(sector: &mut [u8; 4096], first: u64, count: u64, value: bool) {
    for bit in first..first.saturating_add(count) {
        let Some(byte) = usize::try_from(bit / 8)
            .ok()
            .and_then(|i| sector.get_mut(i))
        else {
            return;
        };
        let mask = 1u8 << (bit % 8);
        if value {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

/// First free 1 MiB-aligned offset past the file end and every structure
/// the file references (regions, log, payload and sector bitmap blocks).
pub(crate) fn allocation_frontier(
    view: &VhdxFile,
    geometry: &Geometry,
    bat: &[u64],
    file_length: u64,
) -> Option<u64> {
    let (log_offset, log_length) = view.log_location();
    let mut end = file_length.max(log_offset.saturating_add(u64::from(log_length)));
    for region in &view.region_table().entries {
        end = end.max(region.end());
    }
    let block_size = u64::from(geometry.block_size);
    let chunk_ratio = geometry.chunk_ratio.max(1);
    for (index, &raw) in (0u64..).zip(bat) {
        let entry = BatEntry(raw);
        let is_sector_bitmap = index % (chunk_ratio + 1) == chunk_ratio;
        let extent = if is_sector_bitmap {
            (entry.state() == sector_bitmap_state::PRESENT).then_some(SECTOR_BITMAP_BLOCK_SIZE)
        } else {
            (entry.file_offset() != 0).then_some(block_size)
        };
        if let Some(extent) = extent {
            end = end.max(entry.file_offset().checked_add(extent)?);
        }
    }
    round_up_mib(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_bits_is_lsb_first_and_clears_only_its_range() {
        let mut sector = Box::new([0xFFu8; 4096]);

        set_bits(&mut sector, 3, 10, false);

        assert_eq!(sector[0], 0b0000_0111);
        assert_eq!(sector[1], 0b1110_0000);
        assert_eq!(sector[2], 0xFF);
    }

    #[test]
    fn set_bits_stops_at_the_end_of_the_sector() {
        let mut sector = Box::new([0u8; 4096]);

        set_bits(&mut sector, 32_760, 100, true);

        assert_eq!(sector[4095], 0xFF);
    }

    #[test]
    fn allocation_past_u64_is_refused() {
        let mut plan = Plan {
            frontier: u64::MAX - 1024,
            ..Plan::default()
        };

        assert!(plan.allocate(1 << 20).is_err());
    }
}
