//! Whole-disk operations on VHDX chains used by the CLI, tests and benchmarks:
//! the SHA-256 of a virtual disk's raw content, and a summary of a file.

use std::path::Path;

use refpoint_vhdx::{Chain, ExtentSource, PayloadState, VhdxFile};
use sha2::{Digest, Sha256};

use crate::error::RefpointError;

/// Window of virtual bytes mapped and read at a time: bounded memory whatever
/// the disk size.
const WINDOW: u64 = 64 << 20;

/// SHA-256 of the raw content of the virtual disk whose leaf is `path`,
/// read through its chain (parents via the parent locator) and any dirty log
/// (replayed in memory; the file is not modified). `progress` is called with
/// the number of virtual bytes done after each window.
///
/// Zero extents (NOT_PRESENT in the base, ZERO, UNMAPPED, UNDEFINED) are
/// hashed from a zero buffer without reading.
///
/// # Errors
/// Any VHDX error of the chain, with its file and offset (code 32768).
pub fn hash_virtual_disk(
    path: &Path,
    mut progress: impl FnMut(u64),
) -> Result<[u8; 32], RefpointError> {
    let chain = Chain::open(path)?;
    hash_chain(&chain, &mut progress)
}

/// As [`hash_virtual_disk`], for an opened chain.
///
/// # Errors
/// VHDX read errors (code 32768).
pub fn hash_chain(chain: &Chain, progress: &mut dyn FnMut(u64)) -> Result<[u8; 32], RefpointError> {
    let size = chain.virtual_size();
    let zeros = vec![0u8; 1 << 20];
    let mut buf = Vec::new();
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    while offset < size {
        let len = WINDOW.min(size - offset);
        for extent in chain.map_range(offset, len)? {
            match extent.source {
                ExtentSource::Zero => {
                    let mut left = extent.length;
                    while left > 0 {
                        let n = left.min(zeros.len() as u64);
                        hasher.update(&zeros[..usize::try_from(n).unwrap_or(0)]);
                        left -= n;
                    }
                }
                ExtentSource::Layer { .. } => {
                    buf.resize(usize::try_from(extent.length).unwrap_or(0), 0);
                    chain.read_extent(&extent, &mut buf)?;
                    hasher.update(&buf);
                }
            }
        }
        offset += len;
        progress(offset);
    }
    Ok(hasher.finalize().into())
}

/// Counts of payload block states in one file.
#[derive(Debug, Default, Clone, serde::Serialize)]
#[allow(non_snake_case)]
pub struct BlockStateCounts {
    /// PAYLOAD_BLOCK_NOT_PRESENT
    pub NotPresent: u64,
    /// PAYLOAD_BLOCK_UNDEFINED
    pub Undefined: u64,
    /// PAYLOAD_BLOCK_ZERO
    pub Zero: u64,
    /// PAYLOAD_BLOCK_UNMAPPED
    pub Unmapped: u64,
    /// PAYLOAD_BLOCK_FULLY_PRESENT
    pub FullyPresent: u64,
    /// PAYLOAD_BLOCK_PARTIALLY_PRESENT
    pub PartiallyPresent: u64,
}

/// Summary of one VHDX file (MS-VHDX names).
#[derive(Debug, Clone, serde::Serialize)]
#[allow(non_snake_case)]
pub struct FileInfo {
    /// Path as opened.
    pub Path: String,
    /// Creator string of the File Type Identifier.
    pub Creator: String,
    /// VirtualDiskSize in bytes.
    pub VirtualDiskSize: u64,
    /// BlockSize in bytes.
    pub BlockSize: u32,
    /// LogicalSectorSize in bytes.
    pub LogicalSectorSize: u32,
    /// PhysicalSectorSize in bytes.
    pub PhysicalSectorSize: u32,
    /// Payload blocks per sector bitmap block.
    pub ChunkRatio: u64,
    /// HasParent (differencing).
    pub HasParent: bool,
    /// LeaveBlockAllocated (fixed).
    pub LeaveBlockAllocated: bool,
    /// Virtual Disk ID.
    pub VirtualDiskId: String,
    /// Current header DataWriteGuid.
    pub DataWriteGuid: String,
    /// Current header FileWriteGuid.
    pub FileWriteGuid: String,
    /// True when a dirty log was replayed (in memory) to read the file.
    pub LogReplayed: bool,
    /// Parent locator key/value pairs.
    pub ParentLocator: Vec<(String, String)>,
    /// Payload block states.
    pub BlockStates: BlockStateCounts,
}

/// Summarises `file`.
///
/// # Errors
/// VHDX errors reading the BAT (code 32768).
pub fn file_info(file: &VhdxFile) -> Result<FileInfo, RefpointError> {
    let g = file.geometry();
    let mut counts = BlockStateCounts::default();
    for block in 0..g.data_blocks {
        let (state, _) = file.payload_state(block)?;
        match state {
            PayloadState::NotPresent => counts.NotPresent += 1,
            PayloadState::Undefined => counts.Undefined += 1,
            PayloadState::Zero => counts.Zero += 1,
            PayloadState::Unmapped => counts.Unmapped += 1,
            PayloadState::FullyPresent => counts.FullyPresent += 1,
            PayloadState::PartiallyPresent => counts.PartiallyPresent += 1,
        }
    }
    Ok(FileInfo {
        Path: file.path().display().to_string(),
        Creator: file.creator().to_string(),
        VirtualDiskSize: g.virtual_size,
        BlockSize: g.block_size,
        LogicalSectorSize: g.logical_sector_size,
        PhysicalSectorSize: g.physical_sector_size,
        ChunkRatio: g.chunk_ratio,
        HasParent: g.has_parent,
        LeaveBlockAllocated: g.leave_block_allocated,
        VirtualDiskId: file.virtual_disk_id().to_string(),
        DataWriteGuid: file.data_write_guid().to_string(),
        FileWriteGuid: file.file_write_guid().to_string(),
        LogReplayed: file.log_replayed(),
        ParentLocator: file
            .parent_locator()
            .map(|l| l.entries().to_vec())
            .unwrap_or_default(),
        BlockStates: counts,
    })
}
