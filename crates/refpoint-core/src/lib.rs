//! refpoint-core: the standalone host model (DESIGN.md "The standalone host
//! model") — the host store, virtual systems and their settings, virtual
//! disks as VHDX chains, recovery snapshots and reference points.
//!
//! Modules, by the concept they hold (Hyper-V / CIM names):
//! - [`host`]: [`Host`], the locked embedded store (`init`, `open`, lookups).
//! - `catalog`: `refpoint-host.json`, strict loading, atomic replacement.
//! - `lock`: the exclusive host lock naming its holder's pid.
//! - [`model`]: [`VirtualSystem`] (`Msvm_ComputerSystem`),
//!   [`VirtualSystemSettingData`], [`VirtualDisk`] (SASD) and its [`LayerChain`].
//! - `define_system`: `Host::create_vm`, `Host::import_vm`.
//! - [`snapshot`]: `CreateSnapshot` / `DestroySnapshot`.
//! - [`reference_point`]: `ConvertToReferencePoint`, `CreateReferencePoint`,
//!   `DestroyReferencePoint`.
//! - `frozen`: [`FrozenDisk`] and the DataWriteGuid check of frozen layers.
//! - `disk_write`: the active-leaf writer and `Host::refresh`.
//! - [`tracking`]: epochs, `changes_between`, `GetVirtualDiskChanges`.
//! - [`journal`]: the per-disk change-tracking journal (`<disk GUID>.rctj`).
//! - `lifecycle`: `RemoveAssociatedData`, destroy, merging layers away.
//! - `pin`: [`PinGuard`], reference points in use by a running export.
//! - [`collection`]: `Msvm_VirtualSystemCollection` and the collection
//!   management methods; [`collection_point`]: reference point and snapshot
//!   collections taken at one instant (`collection_freeze`: the active
//!   leaves' write locks held meanwhile).
//! - [`export_history`]: [`ExportRecord`]s of reference points.
//! - [`ids`]: InstanceID forms and the RCT identifier [`RctId`].
//! - [`settings_xml`]: CIM instances and the CIM-XML settings document.
//! - [`error`]: [`HostError`] with a stable [`ErrorKind`].
//!
//! Typical flow (a backup client, `reference/hyperv-api.md` §7.1):
//!
//! ```no_run
//! # fn main() -> Result<(), refpoint_core::HostError> {
//! use refpoint_core::{Host, SNAPSHOT_TYPE_RECOVERY};
//! let mut host = Host::open(std::path::Path::new("/srv/refpoint"))?;
//! let snapshot = host.create_snapshot("web01", SNAPSHOT_TYPE_RECOVERY)?.instance_id().to_owned();
//! let rp = host.convert_to_reference_point(&snapshot)?;
//! println!("{} {:?}", rp.instance_id, rp.resilient_change_tracking_identifiers());
//! # Ok(()) }
//! ```

mod atomic;
pub mod catalog;
pub mod collection;
mod collection_freeze;
pub mod collection_point;
mod define_system;
mod disk_write;
pub mod error;
pub mod export_history;
mod frozen;
pub mod host;
pub mod ids;
pub mod journal;
mod lifecycle;
mod lock;
pub mod model;
mod pin;
pub mod reference_point;
pub mod settings_xml;
pub mod snapshot;
mod timestamp;
pub mod tracking;

pub use catalog::{CATALOG_FILE_NAME, CATALOG_FORMAT_VERSION, CatalogError};
pub use collection::{
    COLLECTION_TYPE_COLLECTIONS, COLLECTION_TYPE_VIRTUAL_SYSTEMS, VirtualSystemCollection,
};
pub use collection_point::{
    COLLECTION_CONSISTENCY_APPLICATION, COLLECTION_CONSISTENCY_CRASH,
    COLLECTION_SNAPSHOT_TYPE_RECOVERY, COLLECTION_SNAPSHOT_TYPE_STANDARD, CollectionPointSettings,
    DEFAULT_FREEZE_LOCK_TIMEOUT, ReferencePointCollection, SnapshotCollection,
};
pub use error::{ErrorKind, HostError, ObjectKind, Result};
pub use export_history::{ExportRecord, ExportedDiskRecord};
pub use frozen::FrozenDisk;
pub use host::{Host, JOBS_DIR_NAME, VIRTUAL_HARD_DISKS_DIR_NAME, VMS_DIR_NAME};
pub use ids::{IdError, RctId};
pub use lock::LOCK_FILE_NAME;
pub use model::{ChainLayer, LayerChain, VirtualDisk, VirtualSystem, VirtualSystemSettingData};
pub use pin::PinGuard;
pub use reference_point::{
    REFERENCE_POINT_TYPE_LOG, REFERENCE_POINT_TYPE_RCT, ReferencePoint, ReferencePointSettings,
};
pub use snapshot::{
    CONSISTENCY_LEVEL_APPLICATION, CONSISTENCY_LEVEL_CRASH, SNAPSHOT_TYPE_FULL,
    SNAPSHOT_TYPE_RECOVERY, Snapshot, SnapshotSettings,
};
pub use timestamp::Timestamp;
pub use tracking::{ByteRange, DiskChanges, DiskTracking, Tracking};
