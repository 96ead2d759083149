//! Export planning and the parallel I/O engine of refpoint: what
//! `Msvm_VirtualSystemReferencePointService.ExportReferencePoint` does with
//! the data of a reference point, without Hyper-V.
//!
//! ```text
//! plan(&ExportRequest)  -> ExportPlan        validate, open chains read-only, map blocks (metadata only)
//! execute(plan, &dyn ExportControl, &EngineConfig) -> ExportOutcome
//!                                            read → hash → write in one pass, manifest, atomic commit
//! execute_on(plan, &dyn ExportControl, &Scheduler) the same on the process's shared scheduler
//! verify(dir)           -> VerifyReport      SHA256SUMS + manifest + every block digest, one read per file
//! verify_chain(&[base, diff…]) -> VerifyReport  each folder, the links, the content through the chain
//! restore(&[base, diff…], to, ..) -> ExportOutcome  synthetic full (plan_restore + execute)
//! cleanup_stale_staging(dir)                 remove leftovers of crashed exports
//! ```
//!
//! # Differential export
//!
//! With [`ExportRequest::base`] set, each disk whose [`DiskExport::changes`]
//! is given and which the base export holds (same virtual size, block size
//! and logical sector size) is written as a differencing VHDX
//! `Virtual Hard Disks/<file_stem>-<RP GUID>.avhdx` whose parent is the base
//! export's file of the disk: the locator's `relative_path` is computed from
//! the final location (the commit moves the staging copy there), its
//! `absolute_win32_path` is the parent's canonical path, and
//! `parent_linkage` is the parent's `DataWriteGuid`. It holds exactly the
//! output blocks touched by the changed ranges, read whole through the
//! target chain: `FULLY_PRESENT`, or `ZERO` when the block now reads
//! all-zero. Lost tracking fails the export with 32775 under
//! [`TrackingPolicy::Strict`]; under [`TrackingPolicy::Fallback`] every
//! block with data is read and only blocks whose digest differs from the
//! base manifest's are stored (the manifest's `fallback` and the outcome's
//! `warnings` record it). A disk the base export does not hold (or whose
//! geometry changed) is exported full inside the differential export
//! (`full_reason`); `removed_disks` lists the base's disks the target lost.
//! The block digests (the sidecar) always cover the whole target disk:
//! unchanged blocks carry the base manifest's digests, so the content digest
//! of the target is known without reading the base. Any export of a
//! reference point (full, differential, synthetic full) gives a disk's file
//! the same `DataWriteGuid` and content, so each can be the parent.
//!
//! The engine does not depend on the host model (`refpoint-core`): the
//! facade turns a reference point into an [`ExportRequest`]. Errors carry an
//! [`ErrorKind`] that the facade maps to the CIM return code.
//!
//! # Output
//!
//! ```text
//! <ExportDirectory>/<VM ElementName>/
//!   Virtual Machines/<VM GUID upper>.xml    settings at the reference point (verbatim)
//!   Virtual Hard Disks/<file_stem>.vhdx      each disk's chain flattened into one sparse dynamic VHDX
//!   <file_stem>.vhdx.digests                 binary SHA-256 of every block, 32 bytes each
//!   refpoint-export.json                     manifest (below)
//!   SHA256SUMS                               "<hex>  <path>" for every file above
//! ```
//!
//! The output VHDX keeps the virtual size, logical/physical sector sizes and
//! virtual disk ID of the leaf and the **block size of the base layer** (see
//! [`source`](OutputGeometry) for why). It is written in one pass, front to
//! back, and never read back (`refpoint_vhdx::SequentialImage`): every block
//! the chain maps to data gets a payload slot at plan time, in ascending
//! block order, so header, metadata and BAT precede the payload and the
//! file's SHA-256 is computed while it is written. Blocks the chain maps to
//! zero are neither read nor stored (NOT_PRESENT); a planned block that
//! reads all-zero stays FULLY_PRESENT over a sparse hole (no disk space,
//! reads zeros, also in a differencing output); so does any 64 KiB run of
//! zeros inside a block. Its `DataWriteGuid` is derived from the reference
//! point's and the disk's `InstanceID`s ([`export_data_write_guid`]) and its
//! `FileWriteGuid` from that ([`export_file_write_guid`]): two exports of a
//! reference point are byte-identical.
//!
//! `SHA256SUMS` is GNU `sha256sum` text format with paths relative to the VM
//! folder (spaces are fine; names with `\` or control characters are refused
//! at validation), so `cd <VM folder> && sha256sum -c SHA256SUMS` checks an
//! export with standard tools.
//!
//! # Manifest `refpoint-export.json` (format `refpoint-export/2`)
//!
//! ```json
//! {
//!   "format": "refpoint-export/2",
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
//!     "digests": { "path": "<stem>.vhdx.digests", "size": 32·blocks, "sha256": "<hex>" },
//!                                                  // binary SHA-256 of EVERY block, zero blocks included
//!     "content_digest": "<hex>"                    // SHA-256 over the concatenated binary block digests
//!                                                  // = the digests file's SHA-256
//!   }]
//! }
//! ```
//!
//! A differential export (`"export_type": "differential"`, `"base"` = the
//! base's identity) adds `"base_export": {"vm_folder", "manifest_sha256"}`
//! and, when disks were removed, `"removed_disks": ["<InstanceID>", ...]`;
//! its differencing disks have `"output.kind": "differencing"`,
//! `"parent": {"path", "relative_path", "data_write_guid", "content_digest"}`,
//! `"changed_ranges"` = the tracked ranges (sorted, coalesced), and after a
//! tracking fallback `"fallback": {"reason", "blocks_compared",
//! "blocks_differing"}` (`changed_ranges` then lists the differing blocks);
//! a disk exported full inside it has `"full_reason"`. A synthetic full
//! (`"export_type": "synthetic-full"`) lists `"restored_from": [{"vm_folder",
//! "manifest_sha256", "reference_point"}, ...]`. Fields that do not apply are
//! omitted, so a full export's manifest is unchanged.
//!
//! GUIDs are upper case without braces; digests lower-case hex; sizes and
//! offsets in bytes; the last block of a disk whose size is not a multiple of
//! the block size is short and its digest covers only its bytes. There are
//! no timestamps: the manifest of a reference point is reproducible except
//! for `job_id`.
//!
//! Format `refpoint-export/1` (before the digest sidecar) listed the block
//! digests inline as `"block_digests": ["<hex>", ...]`; such exports are
//! still read as bases, verified and restored ([`read_block_digests`]).
//!
//! # Commit
//!
//! Everything is written under `<ExportDirectory>/.refpoint-staging-<job>/`,
//! fsynced (files, then directories) and renamed into place with
//! `RENAME_NOREPLACE`; see [`staging`](cleanup_stale_staging) for locking,
//! `InUse` and crash leftovers.

#![forbid(unsafe_code)]

mod base;
mod collection;
mod collection_commit;
pub mod collection_manifest;
mod collection_verify;
mod control;
mod differential;
mod digest;
mod disk_output;
mod error;
mod execute;
mod identity;
mod image_scan;
pub mod manifest;
mod output;
mod pipeline;
mod plan;
mod pool;
mod request;
mod restore;
mod scheduler;
mod source;
mod staging;
mod verify;
mod verify_chain;
mod writeback;

pub use base::{BaseError, record_digests as read_block_digests};
pub use collection::{
    CollectionExportRequest, CollectionOutcome, CollectionPlan, execute_collection,
    execute_collection_on, plan_collection,
};
pub use collection_commit::{
    COLLECTION_STAGING_PREFIX, CollectionError, CollectionRecovery, INTENT_FILE,
    recover_collection_exports,
};
pub use collection_verify::{is_collection_export, verify_collection};
pub use control::{EngineConfig, ExportControl, Interrupted, Unattended};
pub use differential::DifferentialError;
pub use digest::{Sha256Digest, content_digest, sha256, zero_digest};
pub use disk_output::DIGESTS_SUFFIX;
pub use error::{EngineError, ErrorContext, ErrorDetail, ErrorKind};
pub use execute::{ExportOutcome, ExportedDisk, TOOL_NAME, execute, execute_on};
pub use identity::{
    EXPORT_DATA_WRITE_NAMESPACE, export_data_write_guid, export_file_write_guid, guid_upper,
};
pub use output::OutputError;
pub use plan::{
    CHECKSUMS_FILE, DiskPlan, ExportPlan, MANIFEST_FILE, VIRTUAL_HARD_DISKS_DIR,
    VIRTUAL_MACHINES_DIR, plan,
};
pub use pool::PoolError;
pub use request::{
    BaseReferencePoint, ChangeTracking, DiskExport, ExportRequest, NameRule,
    ReferencePointIdentity, RequestError, TrackingPolicy, check_file_stem, check_name,
};
pub use restore::{RestoreError, plan_restore, restore};
pub use scheduler::Scheduler;
pub use source::{OutputGeometry, SourceError};
pub use staging::{LOCK_FILE, STAGING_PREFIX, StagingError, cleanup_stale_staging};
pub use verify::{
    FileReport, Finding, FolderReport, MAX_LISTED_BLOCK_MISMATCHES, VerifyError, VerifyReport,
    verify,
};
pub use verify_chain::verify_chain;
