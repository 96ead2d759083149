//! Export planning and the parallel I/O engine of refpoint: what
//! `Msvm_VirtualSystemReferencePointService.ExportReferencePoint` does with
//! the data of a reference point, without Hyper-V.
//!
//! ```text
//! plan(&ExportRequest)  -> ExportPlan        validate, open chains read-only, map blocks (metadata only)
//! execute(plan, &dyn ExportControl, &EngineConfig) -> ExportOutcome
//!                                            read → hash → write in parallel, manifest, atomic commit
//! verify(dir)           -> VerifyReport      SHA256SUMS + manifest + every block re-read
//! cleanup_stale_staging(dir)                 remove leftovers of crashed exports
//! ```
//!
//! The engine does not depend on the host model (`refpoint-core`): the
//! facade turns a reference point into an [`ExportRequest`]. Errors carry an
//! [`ErrorKind`] that maps to the CIM return code ([`ErrorKind::return_code`]).
//!
//! # Output
//!
//! ```text
//! <ExportDirectory>/<VM ElementName>/
//!   Virtual Machines/<VM GUID upper>.xml    settings at the reference point (verbatim)
//!   Virtual Hard Disks/<file_stem>.vhdx      each disk's chain flattened into one sparse dynamic VHDX
//!   refpoint-export.json                     manifest (below)
//!   SHA256SUMS                               "<hex>  <path>" for the three kinds of file above
//! ```
//!
//! The output VHDX keeps the virtual size, logical/physical sector sizes and
//! virtual disk ID of the leaf and the **block size of the base layer** (see
//! [`source`](OutputGeometry) for why); blocks the chain maps to zero are not
//! read, blocks read as all-zero are not stored (both read as zero in a
//! dynamic VHDX). Its `DataWriteGuid` is derived from the reference point's
//! and the disk's `InstanceID`s ([`export_data_write_guid`]). Data blocks
//! are written in ascending block order, so the layout does not depend on
//! thread timing.
//!
//! `SHA256SUMS` is GNU `sha256sum` text format with paths relative to the VM
//! folder (spaces are fine; names with `\` or control characters are refused
//! at validation), so `cd <VM folder> && sha256sum -c SHA256SUMS` checks an
//! export with standard tools.
//!
//! # Manifest `refpoint-export.json` (format `refpoint-export/1`)
//!
//! ```json
//! {
//!   "format": "refpoint-export/1",
//!   "tool": { "name": "refpoint-engine", "version": "0.1.0" },
//!   "job_id": "<GUID>",
//!   "export_type": "full",
//!   "reference_point": { "instance_id": "...", "virtual_system_identifier": "<VM GUID>", "rct_ids": ["..."] },
//!   "base": null,
//!   "virtual_system": { "name": "<VM GUID>", "element_name": "<folder name>" },
//!   "config": { "path": "Virtual Machines/<GUID>.xml", "size": 1234, "sha256": "<hex>" },
//!   "disks": [{
//!     "instance_id": "Microsoft:<VM>\\<disk>\\0\\0\\D",
//!     "virtual_disk_id": "<GUID>",
//!     "virtual_size": 10737418240,          // bytes
//!     "block_size": 33554432,               // bytes: output block size = digest block size
//!     "logical_sector_size": 512,
//!     "physical_sector_size": 4096,
//!     "source_chain": [ { "path": "/abs/leaf.avhdx", "data_write_guid": "<GUID>" }, ... ],  // leaf first
//!     "output": { "path": "Virtual Hard Disks/<stem>.vhdx", "size": 123, "sha256": "<hex>",
//!                 "data_write_guid": "<GUID>", "kind": "dynamic" },
//!     "changed_ranges": [[offset, length], ...],   // full export: allocated byte ranges, coalesced
//!     "block_digests": ["<hex>", ...],             // SHA-256 of EVERY block, zero blocks included
//!     "content_digest": "<hex>"                    // SHA-256 over the concatenated binary block digests
//!   }]
//! }
//! ```
//!
//! GUIDs are upper case without braces; digests lower-case hex; sizes and
//! offsets in bytes; the last block of a disk whose size is not a multiple of
//! the block size is short and its digest covers only its bytes. There are
//! no timestamps: the manifest of a reference point is reproducible except
//! for `job_id`.
//!
//! # Commit
//!
//! Everything is written under `<ExportDirectory>/.refpoint-staging-<job>/`,
//! fsynced (files, then directories) and renamed into place with
//! `RENAME_NOREPLACE`; see [`staging`](cleanup_stale_staging) for locking,
//! `InUse` and crash leftovers.

#![forbid(unsafe_code)]

mod control;
mod digest;
mod error;
mod execute;
mod identity;
pub mod manifest;
mod output;
mod plan;
mod pool;
mod request;
mod source;
mod staging;
mod verify;

pub use control::{EngineConfig, ExportControl, Interrupted, Unattended};
pub use digest::{Sha256Digest, content_digest, sha256, zero_digest};
pub use error::{EngineError, ErrorContext, ErrorDetail, ErrorKind};
pub use execute::{ExportOutcome, ExportedDisk, TOOL_NAME, execute};
pub use identity::{EXPORT_DATA_WRITE_NAMESPACE, export_data_write_guid, guid_upper};
pub use output::OutputError;
pub use plan::{
    CHECKSUMS_FILE, DiskPlan, ExportPlan, MANIFEST_FILE, VIRTUAL_HARD_DISKS_DIR,
    VIRTUAL_MACHINES_DIR, plan,
};
pub use pool::PoolError;
pub use request::{
    BaseReferencePoint, DiskExport, ExportRequest, NameRule, ReferencePointIdentity, RequestError,
    check_file_stem, check_name,
};
pub use source::{OutputGeometry, SourceError};
pub use staging::{LOCK_FILE, STAGING_PREFIX, StagingError, cleanup_stale_staging};
pub use verify::{
    FileReport, Finding, FolderReport, MAX_LISTED_BLOCK_MISMATCHES, VerifyError, VerifyReport,
    verify,
};
