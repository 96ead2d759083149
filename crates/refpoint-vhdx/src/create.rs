//! Creating VHDX files: dynamic (MS-VHDX §2, vhdx.md §10) and differencing
//! children of an existing VHDX (MS-VHDX §2.6.2.6).
//!
//! A file is never half-created at its final path: it is built in a hidden
//! temporary file in the same directory, fsynced, renamed into place, and
//! the directory is fsynced ([`StagedFile`]). The layout is described in
//! [`layout`]; the payload blocks are written by
//! [`ImageBuilder`](crate::builder::ImageBuilder), which both create
//! functions use with zero blocks.

pub(crate) mod layout;
pub(crate) mod locator_path;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::builder::{BuilderKind, ImageBuilder};
use crate::error::{ErrorKind, Result, VhdxError};
use crate::file::VhdxFile;
use crate::format::{MAX_BLOCK_SIZE, MAX_VIRTUAL_DISK_SIZE, MIN_BLOCK_SIZE};
use layout::{ImageLayout, MAX_CREATOR_UNITS};

/// Creator string refpoint writes into the File Type Identifier.
pub const DEFAULT_CREATOR: &str = concat!("refpoint ", env!("CARGO_PKG_VERSION"));
/// Block size of a new differencing file when none is given: 2 MiB, Hyper-V's.
pub const DEFAULT_DIFFERENCING_BLOCK_SIZE: u32 = 2 * 1024 * 1024;
/// Block size of [`CreateOptions::new`]: 32 MiB, Hyper-V's for dynamic disks.
pub const DEFAULT_DYNAMIC_BLOCK_SIZE: u32 = 32 * 1024 * 1024;

/// Parameters of a new VHDX file (MS-VHDX §2.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// Virtual disk size in bytes: > 0, a multiple of the logical sector
    /// size, at most 64 TiB (Virtual Disk Size item, §2.6.2.2).
    pub virtual_size: u64,
    /// Payload block size in bytes: a power of two, 1 MiB–256 MiB (§2.6.2.1).
    pub block_size: u32,
    /// Logical sector size in bytes: 512 or 4096 (§2.6.2.4).
    pub logical_sector_size: u32,
    /// Physical sector size in bytes: 512 or 4096 (§2.6.2.5).
    pub physical_sector_size: u32,
    /// Virtual Disk ID item (§2.6.2.3); shared by a chain's layers.
    pub virtual_disk_id: Uuid,
    /// DataWriteGuid of the new file's headers (§2.2.2); `None` → random.
    pub data_write_guid: Option<Uuid>,
    /// FileWriteGuid of the new file's headers (§2.2.2); `None` → random.
    /// A fixed value makes a file byte-reproducible (exports derive it).
    pub file_write_guid: Option<Uuid>,
    /// Creator in the File Type Identifier, at most 256 UTF-16 code units (§2.2.1).
    pub creator: String,
}

impl CreateOptions {
    /// Options for a dynamic disk of `virtual_size` bytes with Hyper-V's
    /// defaults: 32 MiB blocks, 512-byte logical and 4096-byte physical
    /// sectors, a random Virtual Disk ID and DataWriteGuid, creator
    /// [`DEFAULT_CREATOR`].
    pub fn new(virtual_size: u64) -> CreateOptions {
        CreateOptions {
            virtual_size,
            block_size: DEFAULT_DYNAMIC_BLOCK_SIZE,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            virtual_disk_id: Uuid::new_v4(),
            data_write_guid: None,
            file_write_guid: None,
            creator: DEFAULT_CREATOR.to_string(),
        }
    }

    /// Checks every rule of MS-VHDX §2.6.2 and computes the layout.
    /// Values are rejected, never clamped.
    pub(crate) fn validate(
        &self,
        has_parent: bool,
    ) -> std::result::Result<ImageLayout, CreateError> {
        let block_size = self.block_size;
        if !block_size.is_power_of_two() {
            return Err(CreateError::BlockSizeNotPowerOfTwo { block_size });
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(CreateError::BlockSizeOutOfRange { block_size });
        }
        let logical_sector_size = self.logical_sector_size;
        if !matches!(logical_sector_size, 512 | 4096) {
            return Err(CreateError::LogicalSectorSize {
                logical_sector_size,
            });
        }
        let physical_sector_size = self.physical_sector_size;
        if !matches!(physical_sector_size, 512 | 4096) {
            return Err(CreateError::PhysicalSectorSize {
                physical_sector_size,
            });
        }
        let virtual_size = self.virtual_size;
        if virtual_size == 0 {
            return Err(CreateError::VirtualSizeZero);
        }
        if !virtual_size.is_multiple_of(u64::from(logical_sector_size)) {
            return Err(CreateError::VirtualSizeNotSectorMultiple {
                virtual_size,
                logical_sector_size,
            });
        }
        if virtual_size > MAX_VIRTUAL_DISK_SIZE {
            return Err(CreateError::VirtualSizeTooLarge { virtual_size });
        }
        let units = self.creator.encode_utf16().count();
        if units > MAX_CREATOR_UNITS {
            return Err(CreateError::CreatorTooLong { units });
        }
        ImageLayout::new(
            virtual_size,
            block_size,
            logical_sector_size,
            physical_sector_size,
            has_parent,
        )
        .ok_or(CreateError::BatTooLarge {
            virtual_size,
            block_size,
        })
    }
}

/// A rule of file creation that the request breaks (MS-VHDX §2.2, §2.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// File Parameters BlockSize must be a power of two (§2.6.2.1).
    #[error("block size {block_size} bytes is not a power of two (MS-VHDX 2.6.2.1)")]
    BlockSizeNotPowerOfTwo {
        /// Requested block size, bytes.
        block_size: u32,
    },
    /// File Parameters BlockSize must be 1 MiB–256 MiB (§2.6.2.1).
    #[error("block size {block_size} bytes is outside 1 MiB..=256 MiB (MS-VHDX 2.6.2.1)")]
    BlockSizeOutOfRange {
        /// Requested block size, bytes.
        block_size: u32,
    },
    /// Logical Sector Size must be 512 or 4096 (§2.6.2.4).
    #[error("logical sector size {logical_sector_size} is not 512 or 4096 (MS-VHDX 2.6.2.4)")]
    LogicalSectorSize {
        /// Requested size, bytes.
        logical_sector_size: u32,
    },
    /// Physical Sector Size must be 512 or 4096 (§2.6.2.5).
    #[error("physical sector size {physical_sector_size} is not 512 or 4096 (MS-VHDX 2.6.2.5)")]
    PhysicalSectorSize {
        /// Requested size, bytes.
        physical_sector_size: u32,
    },
    /// Virtual Disk Size must be greater than zero (§2.6.2.2).
    #[error("virtual size is zero (MS-VHDX 2.6.2.2)")]
    VirtualSizeZero,
    /// Virtual Disk Size must be a multiple of the logical sector size (§2.6.2.2).
    #[error(
        "virtual size {virtual_size} is not a multiple of the logical sector size {logical_sector_size} (MS-VHDX 2.6.2.2)"
    )]
    VirtualSizeNotSectorMultiple {
        /// Requested size, bytes.
        virtual_size: u64,
        /// Logical sector size, bytes.
        logical_sector_size: u32,
    },
    /// Virtual Disk Size must be at most 64 TiB (§2.6.2.2).
    #[error("virtual size {virtual_size} exceeds 64 TiB (MS-VHDX 2.6.2.2)")]
    VirtualSizeTooLarge {
        /// Requested size, bytes.
        virtual_size: u64,
    },
    /// The creator must fit in 512 bytes of UTF-16 (§2.2.1).
    #[error("creator is {units} UTF-16 code units, more than 256 (MS-VHDX 2.2.1)")]
    CreatorTooLong {
        /// Length of the requested creator in UTF-16 code units.
        units: usize,
    },
    /// The BAT would not fit a region table entry (§2.2.3.2).
    #[error("BAT for {virtual_size} bytes with {block_size}-byte blocks does not fit a region")]
    BatTooLarge {
        /// Requested size, bytes.
        virtual_size: u64,
        /// Requested block size, bytes.
        block_size: u32,
    },
    /// A new file never replaces an existing one.
    #[error("{path} already exists")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The target path has no file name or no directory.
    #[error("{path} does not name a file in a directory")]
    NotAFilePath {
        /// The path given.
        path: PathBuf,
    },
    /// Locator values are UTF-16; a path component is not valid Unicode (§2.6.2.6).
    #[error(
        "{path} is not valid Unicode and cannot be stored in a parent locator (MS-VHDX 2.6.2.6)"
    )]
    PathNotUnicode {
        /// The offending path.
        path: PathBuf,
    },
    /// The parent locator or the metadata items do not fit the 1 MiB metadata region (§2.6.1).
    #[error(
        "metadata items ({length} bytes of parent locator) do not fit the metadata region (MS-VHDX 2.6.1)"
    )]
    MetadataTooLarge {
        /// Parent locator length, bytes.
        length: usize,
    },
}

impl CreateError {
    /// The crate-boundary kind of this rule.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            CreateError::BatTooLarge { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidArgument,
        }
    }

    /// Wraps the rule into the crate-boundary error with its file and operation.
    pub(crate) fn at(self, path: &Path, operation: &'static str) -> VhdxError {
        VhdxError::other(self.kind(), self)
            .with_path(path)
            .with_operation(operation)
    }
}

/// A file being created at a hidden temporary path next to its final path.
/// [`StagedFile::commit`] makes it durable and visible atomically; dropping
/// an uncommitted one removes the temporary file.
#[derive(Debug)]
pub(crate) struct StagedFile {
    file: File,
    temp_path: PathBuf,
    final_path: PathBuf,
    committed: bool,
}

impl StagedFile {
    /// Creates `.<name>.<random>.tmp` in the directory of `final_path`.
    ///
    /// # Errors
    /// `InvalidArgument` if `final_path` exists or names no file; `Io` if the
    /// temporary file cannot be created.
    pub(crate) fn create(final_path: &Path) -> Result<StagedFile> {
        let operation = "create";
        let (Some(dir), Some(name)) = (final_path.parent(), final_path.file_name()) else {
            return Err(CreateError::NotAFilePath {
                path: final_path.to_path_buf(),
            }
            .at(final_path, operation));
        };
        if fs::symlink_metadata(final_path).is_ok() {
            return Err(CreateError::AlreadyExists {
                path: final_path.to_path_buf(),
            }
            .at(final_path, operation));
        }
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", Uuid::new_v4().simple()));
        let temp_path = dir.join(temp_name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|e| {
                VhdxError::new(e)
                    .with_path(&temp_path)
                    .with_operation(operation)
            })?;
        Ok(StagedFile {
            file,
            temp_path,
            final_path: final_path.to_path_buf(),
            committed: false,
        })
    }

    /// The open temporary file (read-write).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The temporary path, for error context.
    pub(crate) fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// The path the file will have after [`StagedFile::commit`].
    pub(crate) fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// fsyncs the file, renames it to its final path and fsyncs the directory.
    ///
    /// # Errors
    /// `InvalidArgument` if the final path appeared meanwhile, `Io` otherwise.
    pub(crate) fn commit(mut self) -> Result<()> {
        let operation = "commit";
        let io = |e, path: &Path| VhdxError::new(e).with_path(path).with_operation(operation);
        self.file.sync_all().map_err(|e| io(e, &self.temp_path))?;
        if fs::symlink_metadata(&self.final_path).is_ok() {
            return Err(CreateError::AlreadyExists {
                path: self.final_path.clone(),
            }
            .at(&self.final_path, operation));
        }
        fs::rename(&self.temp_path, &self.final_path).map_err(|e| io(e, &self.final_path))?;
        self.committed = true;
        let dir = self.final_path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(e, dir))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover hidden temp file is harmless but untidy.
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Creates an empty dynamic VHDX at `path` (MS-VHDX §2, vhdx.md §10): two
/// headers (sequence 1 and 2, LogGuid 0), two region tables, a 1 MiB log, the
/// metadata region with the five items, and a BAT of NOT_PRESENT entries.
/// The file is 4 MiB + BAT length bytes long and never exists half-written.
///
/// # Errors
/// `InvalidArgument` with a [`CreateError`] for options breaking a rule or
/// an existing `path`; `Io` for file-system failures (path in the error).
pub fn create_dynamic(path: &Path, opts: &CreateOptions) -> Result<()> {
    ImageBuilder::create(path, opts, BuilderKind::Dynamic)?
        .finish()
        .map(drop)
}

/// Creates a differencing VHDX at `path` whose parent is the VHDX at
/// `parent` (MS-VHDX §2.6.2.6, vhdx.md §10 "Creating a child").
///
/// The parent is opened read-only to copy its IsVirtualDisk items (virtual
/// size, Virtual Disk ID, logical and physical sector size); its current
/// DataWriteGuid becomes `parent_linkage`. The locator also stores
/// `relative_path` (from the child's directory, `\` separators, `.\` in the
/// same directory) and `absolute_win32_path` of the canonical parent path.
/// `block_size` defaults to 2 MiB (Hyper-V's for differencing disks).
///
/// # Errors
/// Errors of [`VhdxFile::open`] on the parent; `InvalidArgument` for a bad
/// block size or an existing `path`; `Io` for file-system failures.
pub fn create_differencing(path: &Path, parent: &Path, block_size: Option<u32>) -> Result<()> {
    let parent_file = VhdxFile::open(parent).map_err(|e| e.with_operation("open parent"))?;
    let geometry = parent_file.geometry();
    let opts = CreateOptions {
        virtual_size: geometry.virtual_size,
        block_size: block_size.unwrap_or(DEFAULT_DIFFERENCING_BLOCK_SIZE),
        logical_sector_size: geometry.logical_sector_size,
        physical_sector_size: geometry.physical_sector_size,
        virtual_disk_id: parent_file.virtual_disk_id(),
        data_write_guid: None,
        file_write_guid: None,
        creator: DEFAULT_CREATOR.to_string(),
    };
    let kind = BuilderKind::Differencing {
        parent_path: parent.to_path_buf(),
        parent_data_write_guid: parent_file.data_write_guid(),
    };
    ImageBuilder::create(path, &opts, kind)?.finish().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::MIB;

    const MIB32: u32 = 1 << 20;

    fn opts(virtual_size: u64) -> CreateOptions {
        CreateOptions {
            block_size: MIB32,
            ..CreateOptions::new(virtual_size)
        }
    }

    #[test]
    fn block_size_not_power_of_two_is_rejected() {
        let o = CreateOptions {
            block_size: 3 * MIB32,
            ..opts(MIB)
        };

        assert_eq!(
            o.validate(false),
            Err(CreateError::BlockSizeNotPowerOfTwo {
                block_size: 3 << 20
            })
        );
    }

    #[test]
    fn block_size_of_512_mib_is_rejected_not_clamped() {
        let o = CreateOptions {
            block_size: 512 * MIB32,
            ..opts(MIB)
        };

        assert_eq!(
            o.validate(false),
            Err(CreateError::BlockSizeOutOfRange {
                block_size: 512 << 20
            })
        );
    }

    #[test]
    fn block_size_below_1_mib_is_rejected() {
        let o = CreateOptions {
            block_size: 512 * 1024,
            ..opts(MIB)
        };

        assert_eq!(
            o.validate(false),
            Err(CreateError::BlockSizeOutOfRange {
                block_size: 512 << 10
            })
        );
    }

    #[test]
    fn logical_sector_size_1024_is_rejected() {
        let o = CreateOptions {
            logical_sector_size: 1024,
            ..opts(MIB)
        };

        assert_eq!(
            o.validate(false),
            Err(CreateError::LogicalSectorSize {
                logical_sector_size: 1024
            })
        );
    }

    #[test]
    fn physical_sector_size_2048_is_rejected() {
        let o = CreateOptions {
            physical_sector_size: 2048,
            ..opts(MIB)
        };

        assert_eq!(
            o.validate(false),
            Err(CreateError::PhysicalSectorSize {
                physical_sector_size: 2048
            })
        );
    }

    #[test]
    fn zero_virtual_size_is_rejected() {
        assert_eq!(opts(0).validate(false), Err(CreateError::VirtualSizeZero));
    }

    #[test]
    fn virtual_size_not_multiple_of_logical_sector_is_rejected() {
        let o = CreateOptions {
            logical_sector_size: 4096,
            ..opts(MIB + 512)
        };

        assert_eq!(
            o.validate(false),
            Err(CreateError::VirtualSizeNotSectorMultiple {
                virtual_size: MIB + 512,
                logical_sector_size: 4096
            })
        );
    }

    #[test]
    fn virtual_size_above_64_tib_is_rejected() {
        let size = MAX_VIRTUAL_DISK_SIZE + 512;

        assert_eq!(
            opts(size).validate(false),
            Err(CreateError::VirtualSizeTooLarge { virtual_size: size })
        );
    }

    #[test]
    fn creator_of_257_units_is_rejected() {
        let o = CreateOptions {
            creator: "é".repeat(257),
            ..opts(MIB)
        };

        assert_eq!(
            o.validate(false),
            Err(CreateError::CreatorTooLong { units: 257 })
        );
    }

    #[test]
    fn exactly_64_tib_with_1_mib_blocks_is_accepted() {
        let layout = opts(MAX_VIRTUAL_DISK_SIZE).validate(false).unwrap();

        assert_eq!(layout.data_blocks, 1 << 26);
    }
}
