//! Re-linking the merge target to the merged layer's parent: one metadata
//! transaction rewriting the parent locator item (MS-VHDX §2.6.2.6) and its
//! metadata table entry (§2.6.1.2).
//!
//! The new locator holds `parent_linkage` = the new parent's DataWriteGuid,
//! `relative_path` (from the child's directory) and `absolute_win32_path`,
//! as `create_differencing` writes them; a stale `volume_path` is dropped.
//! The item is rewritten in place when it fits before the next item,
//! otherwise placed after the last item of the region.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::Path;

use uuid::Uuid;

use super::transaction::{Sector, Target};
use super::{MergeError, fail};
use crate::create::locator_path;
use crate::error::Result;
use crate::format::{self, LOG_SECTOR_SIZE, PARENT_LOCATOR_GUID};
use crate::locator::locator_to_bytes;

/// Bytes of the metadata table header (§2.6.1.1).
const TABLE_HEADER_SIZE: u64 = 32;
/// Bytes of one metadata table entry (§2.6.1.2).
const TABLE_ENTRY_SIZE: u64 = 32;
/// Offsets of `Offset` and `Length` inside a table entry.
const ENTRY_OFFSET_FIELD: u64 = 16;
/// Alignment of a relocated item, bytes.
const ITEM_ALIGNMENT: u64 = 8;

/// Makes `target` a child of `parent` (whose DataWriteGuid is `parent_guid`).
pub(super) fn relink(target: &mut Target, parent: &Path, parent_guid: Uuid) -> Result<()> {
    let item = locator_item(target.path(), parent, parent_guid)?;
    let view = target.view();
    let region = view.metadata_region();
    let entries = view.metadata_entries();
    let (index, entry) = entries
        .iter()
        .enumerate()
        .find(|(_, e)| e.item_id == PARENT_LOCATOR_GUID && !e.is_user)
        .ok_or(fail(MergeError::NoLocator))?;
    let length = u64::try_from(item.len()).unwrap_or(u64::MAX);
    let too_large = || fail(MergeError::LocatorTooLarge { length: item.len() });
    let region_length = u64::from(region.length);
    let next_item = entries
        .iter()
        .filter(|e| e.length != 0 && e.offset > entry.offset)
        .map(|e| u64::from(e.offset))
        .min()
        .unwrap_or(region_length);
    let item_offset = if u64::from(entry.offset) + length <= next_item {
        u64::from(entry.offset)
    } else {
        let last_end = entries
            .iter()
            .map(|e| u64::from(e.offset) + u64::from(e.length))
            .max()
            .unwrap_or(0);
        let at = last_end.div_ceil(ITEM_ALIGNMENT) * ITEM_ALIGNMENT;
        if at.checked_add(length).is_none_or(|end| end > region_length) {
            return Err(too_large());
        }
        at
    };
    let offset32 = u32::try_from(item_offset).map_err(|_| too_large())?;
    let length32 = u32::try_from(length).map_err(|_| too_large())?;
    let mut fields = Vec::with_capacity(8);
    fields.extend_from_slice(&offset32.to_le_bytes());
    fields.extend_from_slice(&length32.to_le_bytes());
    let index = u64::try_from(index).unwrap_or(u64::MAX);
    let entry_at =
        region.file_offset + TABLE_HEADER_SIZE + index * TABLE_ENTRY_SIZE + ENTRY_OFFSET_FIELD;

    let mut sectors: BTreeMap<u64, Sector> = BTreeMap::new();
    patch(target, &mut sectors, entry_at, &fields)?;
    patch(
        target,
        &mut sectors,
        region.file_offset + item_offset,
        &item,
    )?;
    target.commit(sectors, &BTreeMap::new())
}

/// Copies `bytes` to file offset `at` in the sector images of `sectors`.
fn patch(
    target: &Target,
    sectors: &mut BTreeMap<u64, Sector>,
    at: u64,
    bytes: &[u8],
) -> Result<()> {
    let mut done = 0usize;
    while done < bytes.len() {
        let pos = at + u64::try_from(done).unwrap_or(u64::MAX);
        let sector_offset = pos / LOG_SECTOR_SIZE * LOG_SECTOR_SIZE;
        let within = usize::try_from(pos - sector_offset).unwrap_or(0);
        let sector = match sectors.entry(sector_offset) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(target.read_sector(sector_offset)?),
        };
        let n = (4096 - within).min(bytes.len() - done);
        if let (Some(dst), Some(src)) = (
            sector.get_mut(within..within + n),
            bytes.get(done..done + n),
        ) {
            dst.copy_from_slice(src);
        }
        done += n;
    }
    Ok(())
}

/// The parent locator item naming `parent` from `child`'s directory.
fn locator_item(child: &Path, parent: &Path, parent_guid: Uuid) -> Result<Vec<u8>> {
    let not_unicode = |path: &Path| {
        fail(MergeError::PathNotUnicode {
            path: path.to_path_buf(),
        })
    };
    let parent_abs = locator_path::absolute(parent)?;
    let child_dir = match child.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let child_dir = locator_path::absolute(child_dir)?;
    let relative = locator_path::relative_win32_path(&child_dir, &parent_abs)
        .ok_or_else(|| not_unicode(&parent_abs))?;
    let absolute =
        locator_path::absolute_win32_path(&parent_abs).ok_or_else(|| not_unicode(&parent_abs))?;
    let linkage = format::guid_braced(parent_guid);
    let entries = [
        ("parent_linkage", linkage.as_str()),
        ("relative_path", relative.as_str()),
        ("absolute_win32_path", absolute.as_str()),
    ];
    if entries
        .iter()
        .any(|(_, v)| v.encode_utf16().count() > 0x7FFF)
    {
        return Err(fail(MergeError::LocatorTooLarge {
            length: absolute.len(),
        }));
    }
    Ok(locator_to_bytes(&entries))
}
