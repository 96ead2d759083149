//! refpoint: a standalone reference-point export engine.
//!
//! It does on Linux, without Hyper-V, what
//! `Msvm_VirtualSystemReferencePointService.ExportReferencePoint` does: it
//! models virtual systems, their VHDX disk chains and reference points, and
//! exports a reference point into a directory with SHA-256 checksums, as an
//! asynchronous job following the `CIM_ConcreteJob` state machine and
//! returning Hyper-V's return codes.
//!
//! - [`service`]: the WMI-shaped method surface and [`service::Refpoint`], the
//!   in-process host service.
//! - [`export`]: `ExportReferencePoint` validation and its job.
//! - [`collection`]: the collection export (`Msvm_CollectionReferencePointService.ExportReferencePoint`).
//! - [`error`]: the one mapping of every engine error to a CIM return code.
//! - [`fixture`]: reproducible VMs made with qemu-img/qemu-io.
//! - [`disk`]: whole-disk hashing and file summaries.
//! - [`wmi`]: the CIM operations provider (InvokeMethod, enumerations, associations).
//! - [`serve`]: `refpoint serve`, the host service: CIM operations over HTTP
//!   (DSP0200/DSP0201) on an owner-only Unix socket and loopback TCP.
//! - [`client`]: client mode, the CLI talking to a running service.
//! - [`cli`]: the `refpoint` command line.

pub mod cli;
pub mod client;
pub mod collection;
pub mod disk;
pub mod error;
pub mod export;
pub mod fixture;
pub mod serve;
pub mod service;
pub mod wmi;

pub use refpoint_cim as cim;
pub use refpoint_core as core;
pub use refpoint_engine as engine;
pub use refpoint_jobs as jobs;
pub use refpoint_vhdx as vhdx;
