//! Planning an export: validate the request, open and check every source
//! chain, and map every disk block through the chain's BATs. Reads metadata
//! only; writes nothing.
//!
//! Per output block the plan says *absent* (every extent reads zero: the
//! block is not stored and reads zero in the dynamic output) or *data* (the
//! runs to read, per chain layer and file offset).

use std::fmt;
use std::path::{Path, PathBuf};

use refpoint_vhdx::Chain;
use uuid::Uuid;

use crate::base::{ExportFolder, load_base};
use crate::differential::{DiskMode, plan_disk};
use crate::digest::{Sha256Digest, ZeroDigests};
use crate::error::EngineError;
use crate::identity::{export_data_write_guid, guid_upper};
use crate::manifest::{EXPORT_TYPE_DIFFERENTIAL, EXPORT_TYPE_FULL, ExportLinkRecord};
use crate::request::{
    ExportRequest, NameRule, ReferencePointIdentity, RequestError, check_file_stem,
};
use crate::source::{DataBlock, OutputGeometry, map_disk, open_chain};
use crate::staging;

/// Folder of the settings file inside the VM folder.
pub const VIRTUAL_MACHINES_DIR: &str = "Virtual Machines";
/// Folder of the exported disks inside the VM folder.
pub const VIRTUAL_HARD_DISKS_DIR: &str = "Virtual Hard Disks";
/// File name of the manifest inside the VM folder.
pub const MANIFEST_FILE: &str = "refpoint-export.json";
/// File name of the checksum list inside the VM folder.
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";

/// One disk of an [`ExportPlan`]: its open chain, output geometry and blocks.
pub struct DiskPlan {
    pub(crate) instance_id: String,
    pub(crate) file_stem: String,
    pub(crate) chain: Chain,
    pub(crate) chain_paths: Vec<PathBuf>,
    pub(crate) chain_guids: Vec<Uuid>,
    pub(crate) geometry: OutputGeometry,
    pub(crate) output_data_write_guid: Uuid,
    pub(crate) blocks: Vec<DataBlock>,
    pub(crate) allocated: Vec<(u64, u64)>,
    pub(crate) mode: DiskMode,
    /// File name of the output inside `Virtual Hard Disks/`.
    pub(crate) file_name: String,
    /// Synthetic full: the content digest the output must reproduce.
    pub(crate) expected_content: Option<Sha256Digest>,
    /// The zero digests of the output block size (computed once).
    pub(crate) zeros: ZeroDigests,
}

impl DiskPlan {
    /// Disk `InstanceID`.
    #[must_use]
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }
    /// Output geometry (base block size; leaf size, sectors and disk id).
    #[must_use]
    pub fn geometry(&self) -> &OutputGeometry {
        &self.geometry
    }
    /// Output path relative to the VM folder: `Virtual Hard Disks/<stem>.vhdx`
    /// (dynamic) or `Virtual Hard Disks/<stem>-<RP GUID>.avhdx` (differencing).
    #[must_use]
    pub fn output_relative_path(&self) -> String {
        format!("{VIRTUAL_HARD_DISKS_DIR}/{}", self.file_name)
    }
    /// The block-digest sidecar relative to the VM folder:
    /// `<output file name>.digests` (see [`crate::DIGESTS_SUFFIX`]).
    #[must_use]
    pub fn digests_relative_path(&self) -> String {
        format!("{}{}", self.file_name, crate::disk_output::DIGESTS_SUFFIX)
    }
    /// True when the output is a differencing VHDX whose parent is the base
    /// export's file of the disk.
    #[must_use]
    pub fn is_differencing(&self) -> bool {
        self.mode.parent().is_some()
    }
    /// The base export's file that is the parent of a differencing output.
    #[must_use]
    pub fn parent_path(&self) -> Option<&Path> {
        self.mode.parent().map(|p| p.path.as_path())
    }
    /// Why change tracking was lost, when the disk is exported by the
    /// tracking fallback.
    #[must_use]
    pub fn fallback_reason(&self) -> Option<&str> {
        match &self.mode {
            DiskMode::Fallback { reason, .. } => Some(reason),
            _ => None,
        }
    }
    /// Why a disk of a differential export is exported full (dynamic).
    #[must_use]
    pub fn full_reason(&self) -> Option<&str> {
        match &self.mode {
            DiskMode::Full { reason } => reason.as_deref(),
            _ => None,
        }
    }
    /// Indices of the blocks the export reads or marks (ascending): every
    /// data block for a dynamic output, the changed blocks for a tracked
    /// differencing output, the compared blocks for a fallback.
    #[must_use]
    pub fn planned_blocks(&self) -> Vec<u64> {
        self.blocks.iter().map(|b| b.index).collect()
    }
    /// The deterministic `DataWriteGuid` the output VHDX gets.
    #[must_use]
    pub fn output_data_write_guid(&self) -> Uuid {
        self.output_data_write_guid
    }
    /// Blocks of the virtual disk (output block size).
    #[must_use]
    pub fn block_count(&self) -> u64 {
        self.geometry.block_count()
    }
    /// Blocks that hold data in the chain and will be read.
    #[must_use]
    pub fn data_block_count(&self) -> u64 {
        self.blocks.len() as u64
    }
    /// Source bytes to read for this disk.
    #[must_use]
    pub fn bytes_to_read(&self) -> u64 {
        self.blocks.iter().map(DataBlock::bytes_to_read).sum()
    }
    /// Allocated byte ranges `(offset, length)` of the virtual disk, coalesced.
    #[must_use]
    pub fn allocated_ranges(&self) -> &[(u64, u64)] {
        &self.allocated
    }
}

impl fmt::Debug for DiskPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskPlan")
            .field("instance_id", &self.instance_id)
            .field("file_stem", &self.file_stem)
            .field("chain_paths", &self.chain_paths)
            .field("geometry", &self.geometry)
            .field("output_data_write_guid", &self.output_data_write_guid)
            .field("file_name", &self.file_name)
            .field("differencing", &self.is_differencing())
            .field("data_blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// A validated, mapped export, ready for [`crate::execute`].
#[derive(Debug)]
pub struct ExportPlan {
    pub(crate) export_directory: PathBuf,
    pub(crate) vm_name: Uuid,
    pub(crate) element_name: String,
    pub(crate) reference_point: ReferencePointIdentity,
    pub(crate) settings_xml: String,
    pub(crate) job_id: Uuid,
    pub(crate) disks: Vec<DiskPlan>,
    /// [`crate::manifest::EXPORT_TYPE_FULL`], `…DIFFERENTIAL` or `…SYNTHETIC_FULL`.
    pub(crate) export_type: &'static str,
    /// Differential export: the base, its export and the removed disks.
    pub(crate) base: Option<PlannedBase>,
    /// Synthetic full: the exports it is built from.
    pub(crate) restored_from: Vec<ExportLinkRecord>,
}

/// The base of a planned differential export.
#[derive(Debug)]
pub(crate) struct PlannedBase {
    pub(crate) identity: ReferencePointIdentity,
    pub(crate) export: ExportFolder,
    pub(crate) removed_disks: Vec<String>,
}

impl ExportPlan {
    /// `ExportDirectory`.
    #[must_use]
    pub fn export_directory(&self) -> &Path {
        &self.export_directory
    }
    /// The VM folder the export will create: `<ExportDirectory>/<ElementName>`.
    #[must_use]
    pub fn target_folder(&self) -> PathBuf {
        self.export_directory.join(&self.element_name)
    }
    /// Settings file path relative to the VM folder:
    /// `Virtual Machines/<VM GUID upper>.xml`.
    #[must_use]
    pub fn config_relative_path(&self) -> String {
        format!("{VIRTUAL_MACHINES_DIR}/{}.xml", guid_upper(self.vm_name))
    }
    /// The disks, in request order.
    #[must_use]
    pub fn disks(&self) -> &[DiskPlan] {
        &self.disks
    }
    /// Source bytes the export will read (what progress counts).
    #[must_use]
    pub fn bytes_to_read(&self) -> u64 {
        self.disks.iter().map(DiskPlan::bytes_to_read).sum()
    }
    /// `InstanceID` of the export job.
    #[must_use]
    pub fn job_id(&self) -> Uuid {
        self.job_id
    }
    /// True for a differential export (a base was given).
    #[must_use]
    pub fn is_differential(&self) -> bool {
        self.base.is_some()
    }
    /// Differential export: the base export's VM folder (canonical).
    #[must_use]
    pub fn base_export_folder(&self) -> Option<&Path> {
        self.base.as_ref().map(|b| b.export.folder.as_path())
    }
}

/// Validates `req`, opens every chain read-only, checks it against the
/// reference point and maps every block. Reads VHDX metadata only (and, for
/// a differential export, the base export's manifest and its files' headers).
///
/// # Errors
/// - [`crate::ErrorKind::InvalidParameter`]: a [`crate::RequestError`]
///   (names the field or path); a base export that is missing, of another
///   reference point or VM, or whose files differ from its manifest
///   ([`crate::BaseError`]); a changed range outside a disk.
/// - [`crate::ErrorKind::TargetExists`]: `<ExportDirectory>/<ElementName>` exists.
/// - [`crate::ErrorKind::InvalidState`]: a layer's `DataWriteGuid` or geometry
///   differs from the reference point ([`crate::SourceError`], names the file);
///   change tracking lost under the strict policy.
/// - [`crate::ErrorKind::Failed`] / `AccessDenied`: a chain does not open or map.
pub fn plan(req: &ExportRequest) -> Result<ExportPlan, EngineError> {
    req.validate()?;
    staging::check_target_free(&req.export_directory.join(&req.vm_element_name))?;
    let base = match &req.base {
        Some(b) => Some(PlannedBase {
            identity: b.identity.clone(),
            export: load_base(b, req.vm_name)?,
            removed_disks: b.removed_disks.clone(),
        }),
        None => None,
    };
    let rp_part = reference_point_file_part(&req.reference_point.instance_id);
    let mut disks = Vec::with_capacity(req.disks.len());
    for disk in &req.disks {
        let (chain, geometry) = open_chain(disk)?;
        let map = map_disk(&chain, &disk.instance_id, &geometry)?;
        let allocated = map.allocated.clone();
        let (mode, blocks) = match (&base, &req.base) {
            (Some(planned), Some(b)) => plan_disk(
                &planned.export,
                &b.identity.instance_id,
                b.tracking,
                disk,
                &geometry,
                map,
            )?,
            _ => (DiskMode::Full { reason: None }, map.blocks),
        };
        let file_name = match &mode {
            DiskMode::Full { .. } => format!("{}.vhdx", disk.file_stem),
            _ => {
                let stem = format!("{}-{rp_part}", disk.file_stem);
                check_file_stem(&stem).map_err(|rule: NameRule| RequestError::InvalidFileStem {
                    disk: disk.instance_id.clone(),
                    stem: stem.clone(),
                    rule,
                })?;
                format!("{stem}.avhdx")
            }
        };
        tracing::debug!(
            disk = %disk.instance_id,
            planned_blocks = blocks.len(),
            block_size = geometry.block_size,
            file = %file_name,
            "planned disk"
        );
        disks.push(DiskPlan {
            instance_id: disk.instance_id.clone(),
            file_stem: disk.file_stem.clone(),
            chain,
            chain_paths: disk.chain.clone(),
            chain_guids: disk.expected_data_write_guids.clone(),
            geometry,
            output_data_write_guid: export_data_write_guid(
                &req.reference_point.instance_id,
                &disk.instance_id,
            ),
            blocks,
            allocated,
            mode,
            file_name,
            expected_content: None,
            zeros: ZeroDigests::new(geometry.virtual_size, u64::from(geometry.block_size)),
        });
    }
    Ok(ExportPlan {
        export_directory: req.export_directory.clone(),
        vm_name: req.vm_name,
        element_name: req.vm_element_name.clone(),
        reference_point: req.reference_point.clone(),
        settings_xml: req.settings_xml.clone(),
        job_id: req.job_id,
        export_type: if base.is_some() {
            EXPORT_TYPE_DIFFERENTIAL
        } else {
            EXPORT_TYPE_FULL
        },
        disks,
        base,
        restored_from: Vec::new(),
    })
}

/// The part of a reference point `InstanceID` used in differencing file
/// names: the RP GUID of `Microsoft:<VM GUID>\<RP GUID>` (the text after
/// the last `\` or `:`).
fn reference_point_file_part(instance_id: &str) -> &str {
    instance_id
        .rsplit(['\\', ':'])
        .find(|part| !part.is_empty())
        .unwrap_or(instance_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_part_is_the_rp_guid_of_a_hyperv_instance_id() {
        let id =
            "Microsoft:6D1C2D54-8A0E-4F5E-9F8C-21A344B60C7D\\0B7F61F4-6C43-4D5A-8E1E-6E7B2F3B9C11";

        assert_eq!(
            reference_point_file_part(id),
            "0B7F61F4-6C43-4D5A-8E1E-6E7B2F3B9C11"
        );
    }

    #[test]
    fn file_part_tolerates_a_doubled_backslash() {
        assert_eq!(reference_point_file_part("Microsoft:VM\\\\RP"), "RP");
    }
}
