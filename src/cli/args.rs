//! Command-line grammar of `refpoint` (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// refpoint: export Hyper-V-style reference points of VMs whose disks are VHDX
/// chains, full, with SHA-256 checksums, as CIM jobs with Hyper-V return codes.
#[derive(Debug, Parser)]
#[command(name = "refpoint", version, about, propagate_version = true)]
pub struct Cli {
    /// Host directory (the embedded store made by `host init`).
    #[arg(long, global = true, env = "REFPOINT_HOST")]
    pub host: Option<PathBuf>,
    /// Print results as JSON with CIM property names (InstanceID, ReturnValue, JobState…).
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// I/O worker threads shared by every export of the host (0: one per core).
    #[arg(long, global = true, env = "REFPOINT_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Buffer budget shared by every export of the host (e.g. 64M, 1G).
    #[arg(long, global = true, env = "REFPOINT_MEMORY", default_value = "64M")]
    pub memory: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The embedded host store.
    #[command(subcommand)]
    Host(HostCommand),
    /// Virtual systems (Msvm_ComputerSystem).
    #[command(subcommand)]
    Vm(VmCommand),
    /// Take a recovery snapshot of a VM (CreateSnapshot, SnapshotType 32768).
    Snapshot {
        /// VM ElementName or GUID.
        vm: String,
    },
    /// Destroy a snapshot (DestroySnapshot); its frozen layer is merged into its child when nothing else needs it.
    SnapshotDestroy {
        /// Snapshot InstanceID (`Microsoft:<GUID>`) or GUID.
        id: String,
    },
    /// Changed byte ranges of a disk file since an RCT identifier (GetVirtualDiskChanges).
    Changes(super::lifecycle::ChangesArgs),
    /// Reference points (Msvm_VirtualSystemReferencePoint).
    #[command(subcommand, alias = "reference-point")]
    Rp(RpCommand),
    /// Export a reference point (ExportReferencePoint).
    Export(ExportArgs),
    /// Recompute every checksum of an export directory or one VM folder in it.
    Verify {
        /// Export directory, or `<ExportDirectory>/<VM ElementName>`.
        #[arg(required_unless_present = "chain")]
        dir: Option<PathBuf>,
        /// Verify a chain of exports instead: the base export's VM folder,
        /// then each differential export's VM folder, in order.
        #[arg(long, num_args = 1.., value_name = "VM_FOLDER", conflicts_with = "dir")]
        chain: Vec<PathBuf>,
    },
    /// Build one standalone VHDX per disk from a base export and differential exports (synthetic full).
    Restore(super::restore::RestoreArgs),
    /// Seeded writes into a VM's active leaves (the stand-in for a running guest).
    Workload(super::workload::WorkloadArgs),
    /// Inspect VHDX files and chains.
    #[command(subcommand)]
    Disk(DiskCommand),
    /// Make a reproducible fixture VM (qemu-img + qemu-io, then a reference point, then more writes).
    Fixture(FixtureArgs),
    /// The main job on a bundled default: fixture VM in a temporary host, export, verify.
    Demo {
        /// Keep everything in this directory instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Disk size of the demo VM.
        #[arg(long, default_value = "256M")]
        size: String,
    },
    /// Measure export throughput against qemu-img convert + sha256sum.
    Bench(BenchArgs),
    /// Run the host service: CIM operations over HTTP (DSP0200) on <host>/refpoint.sock, optionally loopback TCP.
    Serve(super::serve::ServeArgs),
    /// Invoke a method of the WMI surface (CIM-XML out, or --json).
    #[command(subcommand)]
    Wmi(super::wmi::WmiCommand),
    /// Jobs (Msvm_ConcreteJob): list, show, wait, suspend, resume, terminate, kill.
    #[command(subcommand)]
    Jobs(super::jobs::JobsCommand),
    /// VM collections (Msvm_VirtualSystemCollection): create, add, remove, list, show, destroy.
    #[command(subcommand)]
    Collection(super::collection::CollectionCommand),
}

/// `refpoint host …`
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Create a host store in DIR.
    Init {
        /// Directory to initialise (created if missing; must be empty of a catalog).
        dir: PathBuf,
    },
}

/// `refpoint vm …`
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a VM from VHDX files (each the active leaf of one virtual disk).
    Create {
        /// ElementName of the new VM.
        #[arg(long)]
        name: String,
        /// A disk's VHDX/AVHDX (its parents are found through the parent locator).
        #[arg(long = "disk", required = true)]
        disks: Vec<PathBuf>,
    },
    /// Import a VM from a folder of VHDX/AVHDX files (chains found through parent locators).
    Import {
        /// ElementName of the new VM.
        #[arg(long)]
        name: String,
        /// Folder holding the disks.
        dir: PathBuf,
    },
    /// List VMs.
    List,
    /// Show one VM with its disks, snapshots and reference points.
    Show {
        /// VM ElementName or GUID.
        vm: String,
    },
}

/// `refpoint rp …`
#[derive(Debug, Subcommand)]
pub enum RpCommand {
    /// Convert a recovery snapshot into a reference point (ConvertToReferencePoint).
    Convert {
        /// Snapshot InstanceID (`Microsoft:<GUID>`) or GUID.
        snapshot: String,
    },
    /// Snapshot and convert in one step (CreateReferencePoint); with --collection, of every member at one instant.
    Create {
        /// VM ElementName or GUID.
        #[arg(
            required_unless_present = "collection",
            default_value = "",
            hide_default_value = true
        )]
        vm: String,
        /// Take a reference point of this collection (ElementName or CollectionID) instead; prints its CollectionID.
        #[arg(long, conflicts_with = "vm")]
        collection: Option<String>,
    },
    /// List reference points, of one VM or all.
    List {
        /// VM ElementName or GUID.
        vm: Option<String>,
    },
    /// Destroy a reference point (DestroyReferencePoint); frozen layers nothing else needs are merged away.
    Destroy {
        /// Reference point InstanceID or GUID.
        id: String,
    },
    /// Merge a reference point's frozen layers away (RemoveAssociatedData); it stays usable as a base.
    RemoveData {
        /// Reference point InstanceID or GUID.
        id: String,
    },
}

/// `refpoint export …`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Reference point InstanceID, or its object path.
    #[arg(
        long = "reference-point",
        visible_alias = "rp",
        required_unless_present = "collection_reference_point",
        default_value = "",
        hide_default_value = true
    )]
    pub reference_point: String,
    /// Absolute export directory (ExportDirectory).
    #[arg(long = "to")]
    pub to: PathBuf,
    /// Export only these disks (InstanceIDs from the reference point's VirtualDiskIdentifiers).
    #[arg(long = "disk")]
    pub disks: Vec<String>,
    /// Base reference point for a differential export.
    #[arg(long)]
    pub base: Option<String>,
    /// VM folder of the base's export, when this host has no record of it.
    #[arg(long = "base-export", requires = "base")]
    pub base_export: Option<PathBuf>,
    /// When change tracking of a disk is lost: fail (32775) or compare every block with the base.
    #[arg(long, value_enum, default_value_t = TrackingArg::Strict)]
    pub tracking: TrackingArg,
    /// With a running `refpoint serve`: return at once with ReturnValue 4096 and the job's InstanceID.
    #[arg(long)]
    pub detach: bool,
    /// Collection export (`--collection-reference-point`, `--vm-disks`).
    #[command(flatten)]
    pub collection: super::collection::CollectionExportArgs,
}

/// `--tracking` of a differential export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrackingArg {
    /// Fail with 32775 naming the disk and the reason.
    Strict,
    /// Read every block, store those whose digest differs from the base manifest.
    Fallback,
}

/// `refpoint disk …`
#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Header, regions, metadata, BAT summary and chain of a VHDX/AVHDX.
    Info {
        /// File to inspect.
        path: PathBuf,
    },
    /// SHA-256 of the virtual disk's whole raw content, read through the chain and any dirty log.
    Hash {
        /// Leaf VHDX/AVHDX.
        path: PathBuf,
    },
    /// Validate every structure of the file and its chain.
    Check {
        /// Leaf VHDX/AVHDX.
        path: PathBuf,
    },
    /// Make one write into a VHDX (VhdxWriter): LENGTH bytes of PATTERN at OFFSET.
    Write(super::workload::DiskWriteArgs),
}

/// `refpoint fixture …`
#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// ElementName of the VM.
    #[arg(long)]
    pub name: String,
    /// Number of disks.
    #[arg(long, default_value_t = 2)]
    pub disks: usize,
    /// Virtual size of each disk (K/M/G/T suffixes).
    #[arg(long, default_value = "256M")]
    pub size: String,
    /// Seed of all offsets, lengths and data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// VHDX block size of the base disks.
    #[arg(long, default_value = "2M")]
    pub block_size: String,
    /// Scattered qemu-io writes per disk before the reference point.
    #[arg(long, default_value_t = 40)]
    pub writes: usize,
    /// Instead of scattered writes, fill this percentage of blocks whole.
    #[arg(long)]
    pub fill_percent: Option<u8>,
    /// Writes through refpoint per disk after the reference point.
    #[arg(long, default_value_t = 20)]
    pub writes_after: usize,
    /// Where the disk files go (default: `<host>/vms/<name>-disks`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `refpoint bench …`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Number of disks of the benchmark VM.
    #[arg(long, default_value_t = 4)]
    pub disks: usize,
    /// Size of each disk.
    #[arg(long, default_value = "2G")]
    pub size: String,
    /// Share of blocks holding data.
    #[arg(long, default_value_t = 50)]
    pub fill_percent: u8,
    /// Work directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Skip the peers (qemu-img convert + sha256sum, restic backup).
    #[arg(long)]
    pub no_baseline: bool,
    /// Measure a differential export (RP1→RP2) next to a full export of RP2 instead.
    #[arg(long)]
    pub differential: bool,
    /// Share of blocks rewritten between RP1 and RP2 (the differential export).
    #[arg(long, default_value_t = 1)]
    pub changed_percent: u8,
    /// Rounds of the full suite; each figure is the median of its rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Draw the wall times and ratios as an SVG bar chart into this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Measure a collection export (3 VMs × 2 disks of --size) next to a single-VM export of the same data (1 VM × 6 disks) instead.
    #[arg(long, conflicts_with = "differential")]
    pub collection: bool,
}
