//! `Msvm_ImageManagementService.GetVirtualDiskChanges` (hyperv-api.md §2.5):
//! Table A plus 32779 *File not found*; always synchronous (0, `Job` NULL).
//!
//! Paging: at most [`Provider::max_changed_ranges`] ranges per call;
//! `ProcessedByteLength` tells how far the region was covered and the caller
//! continues at `ByteOffset + ProcessedByteLength`, as with
//! `QueryChangesVirtualDisk`. `TargetSnapshotId` is for VHD Sets, which
//! refpoint does not have: a non-empty value → 32770 Not supported.

use std::path::Path;

use super::params::Params;
use super::provider::{CimOpError, MethodOutput, ParamValue, Provider};
use crate::error::{RefpointError, ReturnCode};

impl Provider {
    /// `GetVirtualDiskChanges(Path, LimitId, TargetSnapshotId, ByteOffset,
    /// ByteLength)` → `ProcessedByteLength`, `ChangedByteOffsets[]`,
    /// `ChangedByteLengths[]`.
    pub(crate) fn get_virtual_disk_changes(
        &self,
        values: &[(String, ParamValue)],
    ) -> Result<Result<MethodOutput, RefpointError>, CimOpError> {
        let params = Params::new(
            "GetVirtualDiskChanges",
            values,
            &[
                "Path",
                "LimitId",
                "TargetSnapshotId",
                "ByteOffset",
                "ByteLength",
            ],
        )?;
        Ok((|| {
            let path = params.required_string("Path")?;
            let limit_id = params.required_string("LimitId")?;
            if params
                .string("TargetSnapshotId")?
                .is_some_and(|t| !t.is_empty())
            {
                return Err(RefpointError::new(
                    ReturnCode::NotSupported,
                    "GetVirtualDiskChanges.TargetSnapshotId: VHD Set snapshots are not supported (leave it empty)",
                ));
            }
            let offset = params.uint64("ByteOffset")?.unwrap_or(0);
            let length = params.uint64("ByteLength")?.ok_or_else(|| {
                RefpointError::new(
                    ReturnCode::InvalidParameter,
                    "GetVirtualDiskChanges.ByteLength: is required",
                )
            })?;
            let changes = self.refpoint().host().get_virtual_disk_changes(
                Path::new(path),
                limit_id,
                offset,
                length,
                self.max_changed_ranges(),
            )?;
            let numbers = |v: &[u64]| ParamValue::Array(v.iter().map(u64::to_string).collect());
            Ok(MethodOutput {
                return_value: ReturnCode::Completed.value(),
                out_params: vec![
                    (
                        "ProcessedByteLength".to_owned(),
                        ParamValue::Value(changes.processed_byte_length.to_string()),
                    ),
                    (
                        "ChangedByteOffsets".to_owned(),
                        numbers(&changes.changed_byte_offsets),
                    ),
                    (
                        "ChangedByteLengths".to_owned(),
                        numbers(&changes.changed_byte_lengths),
                    ),
                ],
                error: None,
            })
        })())
    }
}
