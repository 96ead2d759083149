//! MS-VHDX for refpoint: parse, validate, read and write VHDX/AVHDX files and
//! differencing chains, in pure safe Rust.
//!
//! Layers (one module per on-disk concept, MS-VHDX section in brackets):
//! - [`format`]: offsets, signatures, GUIDs, raw little-endian structs, BAT arithmetic.
//! - `header` [§2.2.1–2.2.2], `region` [§2.2.3], `metadata` [§2.6], `locator`
//!   [§2.6.2.6], `bat` [§2.5], `log` [§2.3]: validated domain types.
//! - `file`: one opened VHDX (read-only, log replayed in memory).
//! - `chain`: a leaf and its parents, read semantics of every payload state.
//! - `create`, `builder`, `stream`, `write`: creating files, the one-pass
//!   export output, and the crash-safe write path of an active leaf.
//! - `error`: the crate-boundary error with a stable kind and context.
#![forbid(unsafe_code)]

pub mod bat;
pub mod builder;
pub mod chain;
pub mod create;
pub mod error;
pub mod file;
pub mod format;
pub mod header;
pub mod locator;
pub mod log;
pub mod log_writer;
pub mod merge;
pub mod metadata;
pub mod region;
pub mod stream;
pub mod write;

pub use bat::PayloadState;
pub use builder::{BuilderKind, ImageBuilder};
pub use chain::{Chain, Extent, ExtentSource};
pub use create::{CreateOptions, create_differencing, create_dynamic};
pub use error::{ErrorKind, Result, VhdxError};
pub use file::{Geometry, VhdxFile};
pub use locator::ParentLocator;
pub use stream::{FinishedImage, SequentialImage, StreamError};
pub use write::VhdxWriter;
