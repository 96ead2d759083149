//! Export history of reference points: where each export of a reference
//! point went, so that a later differential export can find its parent file
//! (the base export's `<disk>.vhdx`) and the DataWriteGuid it must link to.
//!
//! Stored in the catalog with the reference point (`Exports`); removed with
//! it by `DestroyReferencePoint`, kept by `RemoveAssociatedData` (a
//! reference point without data still serves as a base).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{HostError, Result};
use crate::host::Host;

/// One completed export of a reference point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ExportRecord {
    /// `ExportDirectory` as given (absolute).
    pub export_directory: PathBuf,
    /// `<ExportDirectory>/<VM ElementName>`.
    pub vm_folder: PathBuf,
    /// The export's manifest (`refpoint-export.json`).
    pub manifest: PathBuf,
    /// Every exported disk.
    pub disks: Vec<ExportedDiskRecord>,
}

/// One disk file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedDiskRecord {
    /// The disk's SASD `InstanceID`.
    #[serde(rename = "InstanceID")]
    pub instance_id: String,
    /// The exported VHDX/AVHDX (absolute).
    #[serde(rename = "File")]
    pub file: PathBuf,
    /// DataWriteGuid of that file (what a differential child's `parent_linkage` names).
    #[serde(rename = "DataWriteGuid")]
    pub data_write_guid: Uuid,
}

impl Host {
    /// Appends `record` to the export history of reference point `rp`
    /// (InstanceID or GUID) and commits the catalog.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] for a malformed id or a relative
    /// path in `record`; [`HostError::NotFound`]; [`HostError::Io`].
    pub fn record_export(&mut self, rp: &str, record: ExportRecord) -> Result<()> {
        let index = self.reference_point_index(rp)?;
        let relative = [
            &record.export_directory,
            &record.vm_folder,
            &record.manifest,
        ]
        .into_iter()
        .chain(record.disks.iter().map(|d| &d.file))
        .find(|p| !p.is_absolute());
        if let Some(p) = relative {
            return Err(HostError::InvalidParameter {
                parameter: "ExportRecord",
                reason: format!("{} is not an absolute path", p.display()),
            });
        }
        let mut catalog = self.catalog.clone();
        if let Some(r) = catalog.reference_points.get_mut(index) {
            r.exports.push(record);
        }
        self.commit(catalog)
    }

    /// The export history of reference point `rp`, oldest first.
    ///
    /// # Errors
    /// [`HostError::InvalidParameter`] / [`HostError::NotFound`] for the id.
    pub fn exports_of(&self, rp: &str) -> Result<Vec<ExportRecord>> {
        Ok(self.reference_point(rp)?.exports.clone())
    }
}
