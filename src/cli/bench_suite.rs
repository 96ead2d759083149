//! `refpoint bench`: refpoint against the machine's limit and against the
//! peers a user would pick instead, measured in one run on one filesystem.
//!
//! The VM is `--disks` × `--size` with `--fill-percent` of its 2 MiB blocks
//! written by qemu-io (reference point RP1, exported full as the base);
//! then `--changed-percent` of the blocks are rewritten and RP2 is taken;
//! a collection of the VM gets a collection reference point. Every round
//! (`--rounds`, default 3) measures, in alternating order (reversed on odd
//! rounds) and each as wall time:
//!
//! - the limit: (a) one SHA-256 pass over the source bytes on all cores
//!   (`sha2`, as the engine hashes); (b) a sequential write + fsync of as
//!   many bytes as the export writes (its stored data; holes are not
//!   written), one file per disk written at once as the export does, on the
//!   export's filesystem; (c) a
//!   read of the source files after dropping the page cache (needs root;
//!   otherwise it is a warm read and `page_cache_dropped` says so);
//!   limit = the largest;
//! - refpoint: full export of RP2, differential RP1→RP2, `verify` of a full
//!   export, collection export; each as the `refpoint` command a user runs
//!   (a child process on the bench host), its peak RSS its own `VmHWM`;
//! - peers: `qemu-img convert -O vhdx` of every disk + `sha256sum` of the
//!   outputs (each step in parallel; qemu-img cannot open differencing
//!   VHDX, so it converts each disk's base layer, the same disk without
//!   the `--changed-percent` rewrites), and `restic backup` of the source
//!   files into a fresh local repository (when `restic` is installed).
//!
//! Page caches are dropped before every measured item when possible, so
//! all read their sources alike. Reported: the median of each, the ratios
//! (export / limit, differential / export, verify / one SHA-256 pass over
//! the export's bytes, peer / export), CPU, cores, SHA-NI and filesystem;
//! `--json` prints it as one document, `--plot FILE.svg` draws it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use refpoint_engine::{Scheduler, Unattended};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Output;
use super::args::BenchArgs;
use crate::error::{RefpointError, ReturnCode};
use crate::export::{self, ExportOptions};

fn failed(message: String) -> RefpointError {
    RefpointError::new(ReturnCode::Failed, message)
}

fn io_failed(what: &str) -> impl FnOnce(std::io::Error) -> RefpointError + '_ {
    move |e| failed(format!("{what}: {e}"))
}

/// `sync` and drop the page cache (root only); true when dropped.
fn drop_caches() -> bool {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// The filesystem type of `path` (`stat -f -c %T`).
fn filesystem(path: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// Median of `v` (sorted copy; the mean of the two middle values).
fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// (a) SHA-256 of `bytes` bytes on `threads` threads (in-memory data).
fn sha256_pass(bytes: u64, threads: usize) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut chunk = vec![0u8; 4 << 20];
    rng.fill(chunk.as_mut_slice());
    let per = bytes.div_ceil(threads.max(1) as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            let chunk = &chunk;
            s.spawn(move || {
                let mut h = Sha256::new();
                let mut left = per;
                while left > 0 {
                    let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
                    h.update(&chunk[..n]);
                    left -= n as u64;
                }
                std::hint::black_box(h.finalize());
            });
        }
    });
    start.elapsed().as_secs_f64()
}

/// (b) Sequential writes of `bytes` bytes in total into `dir`, as `files`
/// files written at once (as the export writes one file per disk), each
/// fsynced; the files are removed.
fn write_fsync(dir: &Path, bytes: u64, files: usize) -> Result<f64, RefpointError> {
    use std::io::Write;
    let files = files.max(1);
    let per = bytes.div_ceil(files as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut chunk = vec![0u8; 8 << 20];
    rng.fill(chunk.as_mut_slice());
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| dir.join(format!("bench-write-fsync-{i}.tmp")))
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|path| {
                let chunk = &chunk;
                s.spawn(move || -> std::io::Result<()> {
                    let mut file = std::fs::File::create(path)?;
                    let mut left = per;
                    while left > 0 {
                        let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
                        file.write_all(&chunk[..n])?;
                        left -= n as u64;
                    }
                    file.sync_all()
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| failed("a write thread panicked".to_owned()))?
                .map_err(io_failed("write + fsync a test file"))?;
        }
        Ok::<(), RefpointError>(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    for p in paths {
        std::fs::remove_file(p).map_err(io_failed("remove a write test file"))?;
    }
    Ok(secs)
}

/// (c) Reads `files` whole, one thread per file.
fn read_files(files: &[PathBuf]) -> Result<f64, RefpointError> {
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| {
                s.spawn(move || -> std::io::Result<()> {
                    use std::io::Read;
                    let mut file = std::fs::File::open(f)?;
                    let mut buf = vec![0u8; 8 << 20];
                    while file.read(&mut buf)? > 0 {}
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| failed("a read thread panicked".to_owned()))?
                .map_err(io_failed("read a source file"))?;
        }
        Ok::<(), RefpointError>(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// Runs `cmds` at once and waits for all; fails on the first failure.
fn run_all(cmds: Vec<Command>) -> Result<(), RefpointError> {
    let mut children = Vec::new();
    for mut c in cmds {
        children.push(
            c.spawn()
                .map_err(|e| failed(format!("spawn {:?}: {e}", c.get_program())))?,
        );
    }
    for mut child in children {
        let status = child.wait().map_err(io_failed("wait for a peer"))?;
        if !status.success() {
            return Err(failed(format!("peer command failed: {status}")));
        }
    }
    Ok(())
}

/// Peer: `qemu-img convert -O vhdx` of every leaf (parallel) + `sha256sum` (parallel).
fn qemu_img_peer(leaves: &[PathBuf], dir: &Path) -> Result<f64, RefpointError> {
    let outs: Vec<PathBuf> = (0..leaves.len())
        .map(|i| dir.join(format!("peer-{i}.vhdx")))
        .collect();
    let start = Instant::now();
    run_all(
        leaves
            .iter()
            .zip(&outs)
            .map(|(src, dst)| {
                let mut c = Command::new("qemu-img");
                c.args(["convert", "-f", "vhdx", "-O", "vhdx"])
                    .arg(src)
                    .arg(dst);
                c
            })
            .collect(),
    )?;
    run_all(
        outs.iter()
            .map(|o| {
                let mut c = Command::new("sha256sum");
                c.arg(o).stdout(Stdio::null());
                c
            })
            .collect(),
    )?;
    let secs = start.elapsed().as_secs_f64();
    for o in outs {
        std::fs::remove_file(o).map_err(io_failed("remove a peer output"))?;
    }
    Ok(secs)
}

/// Peer: `restic backup` of `files` into a fresh repository under `dir`.
fn restic_peer(files: &[PathBuf], dir: &Path) -> Result<f64, RefpointError> {
    let repo = dir.join("restic-repo");
    let restic = |args: &[&str]| {
        let mut c = Command::new("restic");
        c.args(["--repo"])
            .arg(&repo)
            .args(["--quiet", "--no-cache"])
            .args(args)
            .env("RESTIC_PASSWORD", "refpoint-bench")
            .stdout(Stdio::null());
        c
    };
    run_all(vec![restic(&["init"])])?;
    let start = Instant::now();
    let mut backup = restic(&["backup"]);
    backup.args(files);
    run_all(vec![backup])?;
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&repo).map_err(io_failed("remove the restic repository"))?;
    Ok(secs)
}

fn restic_available() -> bool {
    Command::new("restic")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every VHDX/AVHDX file under `dir` (the VM's layers).
fn layer_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            layer_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "vhdx" || x == "avhdx") {
            out.push(p);
        }
    }
}

/// Wall times of one item over the rounds, and refpoint's peak RSS.
#[derive(Debug, Default)]
struct Series {
    walls: Vec<f64>,
    peak_rss: u64,
}

impl Series {
    fn push(&mut self, wall: f64, rss: Option<u64>) {
        self.walls.push(wall);
        if let Some(r) = rss {
            self.peak_rss = self.peak_rss.max(r);
        }
    }
    fn median(&self) -> f64 {
        median(&self.walls)
    }
}

/// The items of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Sha256Pass,
    WriteFsync,
    ColdRead,
    Export,
    Differential,
    Verify,
    Collection,
    QemuImg,
    Restic,
}

const ITEMS: [Item; 9] = [
    Item::Sha256Pass,
    Item::WriteFsync,
    Item::ColdRead,
    Item::Export,
    Item::Differential,
    Item::Verify,
    Item::Collection,
    Item::QemuImg,
    Item::Restic,
];

/// The prepared VM and what the rounds measure.
struct Setup {
    host_dir: PathBuf,
    threads: usize,
    disks: usize,
    rp1: String,
    rp2: String,
    collection_point: String,
    /// Each disk's base layer (what qemu-img can open).
    leaves: Vec<PathBuf>,
    sources: Vec<PathBuf>,
    source_bytes: u64,
    /// File bytes of the export's outputs (holes included: what verify hashes).
    output_bytes: u64,
    /// Bytes the export writes (stored data and small files).
    written_bytes: u64,
    verify_target: PathBuf,
    root: PathBuf,
}

impl Setup {
    /// Runs one item; returns (wall seconds, refpoint peak RSS).
    fn run(
        &self,
        item: Item,
        round: usize,
        restic: bool,
    ) -> Result<Option<(f64, Option<u64>)>, RefpointError> {
        let dir = self.root.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).map_err(io_failed("make a round directory"))?;
        let result = match item {
            Item::Sha256Pass => Some((sha256_pass(self.source_bytes, self.threads), None)),
            Item::WriteFsync => Some((write_fsync(&dir, self.written_bytes, self.disks)?, None)),
            Item::ColdRead => Some((read_files(&self.sources)?, None)),
            Item::Export => {
                Some(self.export(&self.rp2, &dir.join("full"), &["--reference-point"])?)
            }
            Item::Differential => Some(self.export(
                &self.rp2,
                &dir.join("diff"),
                &["--base", &self.rp1, "--reference-point"],
            )?),
            Item::Verify => Some(self.child(&["verify".as_ref(), self.verify_target.as_os_str()])?),
            Item::Collection => Some(self.export(
                &self.collection_point,
                &dir.join("collection"),
                &["--collection-reference-point"],
            )?),
            Item::QemuImg => Some((qemu_img_peer(&self.leaves, &dir)?, None)),
            Item::Restic if restic => Some((restic_peer(&self.sources, &dir)?, None)),
            Item::Restic => None,
        };
        std::fs::remove_dir_all(&dir).map_err(io_failed("remove a round directory"))?;
        Ok(result)
    }

    /// Runs `refpoint ARGS --json` as a child on the bench host, as a user
    /// would; returns its wall time and peak RSS (`VmHWM`, bytes).
    fn child(&self, args: &[&std::ffi::OsStr]) -> Result<(f64, Option<u64>), RefpointError> {
        let exe = std::env::current_exe().map_err(io_failed("find the refpoint binary"))?;
        let rss_file = self.root.join("child-peak-rss");
        let _ = std::fs::remove_file(&rss_file);
        let start = Instant::now();
        let out = Command::new(exe)
            .args(args)
            .arg("--json")
            .env("REFPOINT_HOST", &self.host_dir)
            .env("REFPOINT_PEAK_RSS_FILE", &rss_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(io_failed("run refpoint"))?;
        let secs = start.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(failed(format!(
                "refpoint {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let rss = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        Ok((secs, rss))
    }

    /// `refpoint export` of `point` into a new directory `to` (`extra` flags).
    fn export(
        &self,
        point: &str,
        to: &Path,
        extra: &[&str],
    ) -> Result<(f64, Option<u64>), RefpointError> {
        std::fs::create_dir_all(to).map_err(io_failed("make an export directory"))?;
        let mut args: Vec<&std::ffi::OsStr> = vec!["export".as_ref()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.extend([point.as_ref(), "--to".as_ref(), to.as_os_str()]);
        self.child(&args)
    }
}

/// Builds the VM, its reference points, the base export and the warm-up export.
fn setup(out: &Output, args: &BenchArgs, root: &Path) -> Result<Setup, RefpointError> {
    let super::bench_differential::TwoPoints { rp, made, rp2, .. } =
        super::bench_differential::two_points(out, args, root)?;
    let rp1 = made.reference_point.clone();
    let collection_point = {
        let mut host = rp.host();
        host.define_collection("bench", None, 0)?;
        host.add_member("bench", &made.vm_name)?;
        host.create_collection_reference_point(
            "bench",
            &refpoint_core::CollectionPointSettings::default(),
        )?
        .cim_id()
    };
    let scheduler: Arc<Scheduler> = rp.scheduler()?;
    let leaves: Vec<PathBuf> = {
        let prepared = export::validate(&rp.host(), &rp2, root, &ExportOptions::default())?;
        prepared
            .request
            .disks
            .iter()
            .filter_map(|d| d.chain.last().cloned())
            .collect()
    };
    let mut sources = Vec::new();
    layer_files(&root.join("disks"), &mut sources);
    layer_files(&root.join("host"), &mut sources);
    sources.sort();
    let warm = root.join("warm-up");
    std::fs::create_dir_all(&warm).map_err(io_failed("make the warm-up directory"))?;
    let prepared = export::validate(&rp.host(), &rp2, &warm, &ExportOptions::default())?;
    let outcome = refpoint_engine::execute_on(
        refpoint_engine::plan(&prepared.request)?,
        &Unattended,
        &scheduler,
    )?;
    let output_bytes = outcome.disks.iter().map(|d| d.size).sum();
    let threads = scheduler.threads();
    drop(scheduler);
    // The rounds run refpoint as child processes on this host: release it.
    drop(rp);
    Ok(Setup {
        host_dir: root.join("host"),
        threads,
        disks: args.disks,
        rp1,
        rp2,
        collection_point,
        leaves,
        sources,
        source_bytes: outcome.bytes_read,
        output_bytes,
        written_bytes: outcome.bytes_written,
        verify_target: outcome.vm_folder,
        root: root.to_path_buf(),
    })
}

/// Runs the suite (module docs).
pub(super) fn run(out: &Output, args: &BenchArgs) -> Result<(), RefpointError> {
    let (_temp, root) = super::bench::work_dir(args.dir.as_ref(), "refpoint-bench-")?;
    let s = setup(out, args, &root)?;
    let restic = !args.no_baseline && restic_available();
    let cache_dropped = drop_caches();
    let mut series: Vec<(Item, Series)> = ITEMS.iter().map(|i| (*i, Series::default())).collect();
    for round in 0..args.rounds.max(1) {
        let mut order = ITEMS.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for item in order {
            if args.no_baseline && matches!(item, Item::QemuImg | Item::Restic) {
                continue;
            }
            if !out.quiet {
                eprintln!("round {round}: {item:?} …");
            }
            drop_caches();
            if let Some((wall, rss)) = s.run(item, round, restic)?
                && let Some((_, ser)) = series.iter_mut().find(|(i, _)| *i == item)
            {
                ser.push(wall, rss);
            }
        }
    }
    let get = |item: Item| series.iter().find(|(i, _)| *i == item).map(|(_, s)| s);
    let med = |item: Item| {
        get(item)
            .filter(|s| !s.walls.is_empty())
            .map(Series::median)
    };
    let sha = med(Item::Sha256Pass).unwrap_or(f64::NAN);
    let write = med(Item::WriteFsync).unwrap_or(f64::NAN);
    let read = med(Item::ColdRead).unwrap_or(f64::NAN);
    let (limit, kind) = [
        (sha, "sha256_pass"),
        (write, "write_fsync"),
        (
            read,
            if cache_dropped {
                "cold_read"
            } else {
                "warm_read"
            },
        ),
    ]
    .into_iter()
    .fold(
        (0.0f64, "none"),
        |best, (v, k)| if v > best.0 { (v, k) } else { best },
    );
    let export_s = med(Item::Export).unwrap_or(f64::NAN);
    let differential_s = med(Item::Differential).unwrap_or(f64::NAN);
    let verify_s = med(Item::Verify).unwrap_or(f64::NAN);
    let collection_s = med(Item::Collection).unwrap_or(f64::NAN);
    // One SHA-256 pass over the export's bytes (scaled from the source pass).
    let sha_over_output = sha * s.output_bytes as f64 / s.source_bytes.max(1) as f64;
    let peak = [
        Item::Export,
        Item::Differential,
        Item::Verify,
        Item::Collection,
    ]
    .iter()
    .filter_map(|i| get(*i).map(|s| s.peak_rss))
    .max()
    .unwrap_or(0);
    let mut peers = Vec::new();
    for (item, name) in [
        (Item::QemuImg, "qemu-img convert -O vhdx + sha256sum"),
        (Item::Restic, "restic backup (local repository)"),
    ] {
        if let Some(wall) = med(item) {
            peers.push(json!({"name": name, "wall_s": wall, "to_export": wall / export_s}));
        }
    }
    let (cpu, sha_ni) = super::bench::cpu_facts();
    let rss_of = |i: Item| get(i).map_or(0, |s| s.peak_rss);
    let value = json!({
        "cpu": cpu, "sha_ni": sha_ni,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "filesystem": filesystem(&root),
        "rounds": args.rounds.max(1),
        "disks": args.disks, "disk_size": args.size, "fill_percent": args.fill_percent,
        "changed_percent": args.changed_percent,
        "source_data_bytes": s.source_bytes, "output_bytes": s.output_bytes,
        "written_bytes": s.written_bytes,
        "page_cache_dropped": cache_dropped,
        "limit_s": limit, "limit_kind": kind,
        "sha256_pass_s": sha, "write_fsync_s": write, "source_read_s": read,
        "export_s": export_s, "export_to_limit": export_s / limit,
        // One device serves both the export's reads and writes: their sum
        // is the storage bound when neither overlaps the other.
        "read_plus_write_s": read + write, "export_to_read_plus_write": export_s / (read + write),
        "verify_to_source_read": verify_s / read,
        "differential_s": differential_s, "differential_to_export": differential_s / export_s,
        "verify_s": verify_s, "verify_to_sha256_over_output": verify_s / sha_over_output,
        "collection_s": collection_s,
        "peak_rss_bytes": peak,
        "peak_rss": {
            "export": rss_of(Item::Export), "differential": rss_of(Item::Differential),
            "verify": rss_of(Item::Verify), "collection": rss_of(Item::Collection),
        },
        "peers": peers,
        "walls": series.iter().map(|(i, s)| (format!("{i:?}"), json!(s.walls))).collect::<serde_json::Map<String, Value>>(),
    });
    if let Some(path) = &args.plot {
        super::bench_plot::draw(path, &value)?;
    }
    out.print(&value, || {
        println!("cpu        {cpu} ({} cores, SHA-NI {}), {}", value["cores"], if sha_ni { "yes" } else { "no" }, value["filesystem"].as_str().unwrap_or("?"));
        println!("VM         {} disks × {}, {} B read, {} B written ({} B of files) per export", args.disks, args.size, s.source_bytes, s.written_bytes, s.output_bytes);
        println!("limit      {limit:.2} s ({kind}): sha256 pass {sha:.2} s, write+fsync {write:.2} s, source read {read:.2} s{}", if cache_dropped { "" } else { " (page cache not dropped: not root)" });
        println!("export     {export_s:.2} s = {:.2} × limit, {:.2} × read + write, peak RSS {:.0} MiB", export_s / limit, export_s / (read + write), rss_of(Item::Export) as f64 / 1048576.0);
        println!("diff ({}%) {differential_s:.2} s = {:.3} × export", args.changed_percent, differential_s / export_s);
        println!("verify     {verify_s:.2} s = {:.2} × one SHA-256 pass over the export", verify_s / sha_over_output);
        println!("collection {collection_s:.2} s");
        for p in &peers {
            println!("peer       {}: {:.2} s = {:.2} × export", p["name"].as_str().unwrap_or("?"), p["wall_s"].as_f64().unwrap_or(0.0), p["to_export"].as_f64().unwrap_or(0.0));
        }
    });
    Ok(())
}
