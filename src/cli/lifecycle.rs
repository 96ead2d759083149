//! The reference point lifecycle and change queries on the command line:
//! `refpoint rp destroy|remove-data ID`, `refpoint snapshot-destroy ID`
//! (`refpoint snapshot VM` keeps taking snapshots), and `refpoint changes`
//! (GetVirtualDiskChanges).
//! Each calls the host model (`refpoint_core`) in-process; errors carry
//! their CIM return code (`crate::error`).

use std::path::PathBuf;

use clap::Args;
use refpoint_core::Host;
use serde_json::json;

use super::{Cli, Output, open, to_json};
use crate::error::RefpointError;
use crate::fixture::parse_size;

/// `refpoint changes …`: Msvm_ImageManagementService.GetVirtualDiskChanges.
#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// A disk file of a VM: a frozen layer of a snapshot or reference point, or the active leaf (Path).
    #[arg(long)]
    pub path: PathBuf,
    /// RCT identifier of the baseline, from ResilientChangeTrackingIdentifiers (LimitId).
    #[arg(long = "limit-id")]
    pub limit_id: String,
    /// Start of the region, bytes (K/M/G/T suffixes) (ByteOffset).
    #[arg(long, default_value = "0")]
    pub offset: String,
    /// Length of the region (ByteLength); default: to the end of the disk.
    #[arg(long)]
    pub length: Option<String>,
    /// At most this many ranges per call (0 = no limit); ProcessedByteLength
    /// then tells where to continue.
    #[arg(long = "max-ranges", default_value_t = 0)]
    pub max_ranges: usize,
}

/// `refpoint snapshot-destroy ID` (DestroySnapshot).
///
/// # Errors
/// The host's error with its return code (32773 unknown id, 32774 when a
/// merge would rewrite a layer of a reference point pinned by an export).
pub(crate) fn destroy_snapshot(cli: &Cli, out: &Output, id: &str) -> Result<(), RefpointError> {
    let rp = open(cli)?;
    rp.host().destroy_snapshot(id)?;
    out.print(&json!({"ReturnValue": 0, "AffectedSnapshot": id}), || {
        println!("snapshot {id} destroyed");
    });
    Ok(())
}

/// `refpoint rp destroy ID` (DestroyReferencePoint).
///
/// # Errors
/// The host's error (32773 unknown id, 32774 pinned by an export, …).
pub(crate) fn destroy_reference_point(
    out: &Output,
    host: &mut Host,
    id: &str,
) -> Result<(), RefpointError> {
    host.destroy_reference_point(id)?;
    out.print(
        &json!({"ReturnValue": 0, "AffectedReferencePoint": id}),
        || println!("reference point {id} destroyed"),
    );
    Ok(())
}

/// `refpoint rp remove-data ID` (RemoveAssociatedData).
///
/// # Errors
/// The host's error (32773 unknown id, 32774 pinned by an export, …).
pub(crate) fn remove_associated_data(
    out: &Output,
    host: &mut Host,
    id: &str,
) -> Result<(), RefpointError> {
    host.remove_associated_data(id)?;
    let rp = host.reference_point(id)?.clone();
    out.print(
        &json!({"ReturnValue": 0, "AffectedReferencePoint": to_json(&rp)}),
        || {
            println!(
                "reference point {} has no associated data any more (HasAssociatedData = false)",
                rp.instance_id
            );
        },
    );
    Ok(())
}

/// `refpoint changes …`: prints ChangedByteOffsets / ChangedByteLengths /
/// ProcessedByteLength.
///
/// # Errors
/// 32779 for a missing `--path`, 32773 for a bad LimitId or region, 32775
/// when change tracking is lost (the message names the disk and the cause).
pub(crate) fn changes(cli: &Cli, out: &Output, args: &ChangesArgs) -> Result<(), RefpointError> {
    let offset = byte_count(&args.offset)?;
    let length = match &args.length {
        Some(l) => byte_count(l)?,
        // Missing or unreadable files are reported by the query itself.
        None => refpoint_vhdx::VhdxFile::open(&args.path)
            .map(|f| f.geometry().virtual_size.saturating_sub(offset))
            .unwrap_or(0),
    };
    let rp = open(cli)?;
    let result = rp.host().get_virtual_disk_changes(
        &args.path,
        &args.limit_id,
        offset,
        length,
        args.max_ranges,
    )?;
    let mut value = to_json(&result);
    if let Some(map) = value.as_object_mut() {
        map.insert("ReturnValue".to_owned(), json!(0));
    }
    out.print(&value, || {
        for (o, l) in result
            .changed_byte_offsets
            .iter()
            .zip(&result.changed_byte_lengths)
        {
            println!("{o:>16} {l:>14}");
        }
        println!(
            "{} changed range(s); processed {} of {} bytes from offset {}",
            result.changed_byte_offsets.len(),
            result.processed_byte_length,
            length,
            offset
        );
    });
    Ok(())
}

/// A byte count with an optional K/M/G/T suffix; `0` allowed.
fn byte_count(text: &str) -> Result<u64, RefpointError> {
    if text.trim() == "0" {
        Ok(0)
    } else {
        parse_size(text)
    }
}
