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

use crate::error::EngineError;
use crate::identity::{export_data_write_guid, guid_upper};
use crate::request::{ExportRequest, ReferencePointIdentity};
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
    /// Output path relative to the VM folder: `Virtual Hard Disks/<stem>.vhdx`.
    #[must_use]
    pub fn output_relative_path(&self) -> String {
        format!("{VIRTUAL_HARD_DISKS_DIR}/{}.vhdx", self.file_stem)
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
}

/// Validates `req`, opens every chain read-only, checks it against the
/// reference point and maps every block. Reads VHDX metadata only.
///
/// # Errors
/// - [`crate::ErrorKind::InvalidParameter`] / `NotSupported`: a
///   [`crate::RequestError`] (names the field or path).
/// - [`crate::ErrorKind::TargetExists`]: `<ExportDirectory>/<ElementName>` exists.
/// - [`crate::ErrorKind::InvalidState`]: a layer's `DataWriteGuid` or geometry
///   differs from the reference point ([`crate::SourceError`], names the file).
/// - [`crate::ErrorKind::Failed`] / `AccessDenied`: a chain does not open or map.
pub fn plan(req: &ExportRequest) -> Result<ExportPlan, EngineError> {
    req.validate()?;
    staging::check_target_free(&req.export_directory.join(&req.vm_element_name))?;
    let mut disks = Vec::with_capacity(req.disks.len());
    for disk in &req.disks {
        let (chain, geometry) = open_chain(disk)?;
        let map = map_disk(&chain, &disk.instance_id, &geometry)?;
        tracing::debug!(
            disk = %disk.instance_id,
            data_blocks = map.blocks.len(),
            block_size = geometry.block_size,
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
            blocks: map.blocks,
            allocated: map.allocated,
        });
    }
    Ok(ExportPlan {
        export_directory: req.export_directory.clone(),
        vm_name: req.vm_name,
        element_name: req.vm_element_name.clone(),
        reference_point: req.reference_point.clone(),
        settings_xml: req.settings_xml.clone(),
        job_id: req.job_id,
        disks,
    })
}
