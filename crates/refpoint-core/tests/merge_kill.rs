//! SIGKILL at random points of `RemoveAssociatedData` merges (a frozen
//! child, then the active leaf as the merge target). Runs without the
//! libtest harness: with `REFPOINT_TEST_MERGE_VICTIM=<host dir>` it is the
//! victim, which opens the host, prints `READY` and removes the data of
//! the reference points in `REFPOINT_TEST_MERGE_RPS` (`;`-separated);
//! otherwise it is the parent, which builds the same VM each round, kills
//! the victim after a random delay, and checks:
//!
//! - before any recovery, the chains found through the files' own parent
//!   locators read exactly the content of every reference point and of the
//!   live disk;
//! - every journal record the catalog committed reads back and equals the
//!   bytes that epoch really wrote (the journal never claims what it did
//!   not record);
//! - `Host::open` finishes the interrupted merge, catalog chains read the
//!   same, and the operations can be completed with tracking still exact.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use refpoint_core::journal::read_record;
use refpoint_core::tracking::DiskTracking;
use refpoint_core::{Host, Tracking};
use refpoint_vhdx::Chain;
use refpoint_vhdx::merge::MergeOptions;

mod scenario;
use scenario::*;

const VICTIM_ENV: &str = "REFPOINT_TEST_MERGE_VICTIM";
const RPS_ENV: &str = "REFPOINT_TEST_MERGE_RPS";
const KILLS: usize = 24;
const SIZE: u64 = 64 * MIB;
const SEED: u64 = 4242;

fn main() {
    if let Some(dir) = std::env::var_os(VICTIM_ENV) {
        victim(Path::new(&dir));
        return;
    }
    kill_during_merges_leaves_same_content_and_honest_journal();
    println!("test kill_during_merges_leaves_same_content_and_honest_journal ... ok");
}

fn victim(dir: &Path) {
    let mut host = Host::open(dir).expect("victim opens the host");
    host.set_merge_options(MergeOptions {
        blocks_per_transaction: 1,
    });
    println!("READY");
    let rps = std::env::var(RPS_ENV).expect("reference points to empty");
    for rp in rps.split(';') {
        host.remove_associated_data(rp)
            .expect("remove associated data");
    }
    println!("DONE");
}

/// What a round knows before the victim runs.
struct Expected {
    host_dir: PathBuf,
    rps: Vec<String>,
    disk: String,
    /// Frozen tops of RP1..RP3 and the active leaf.
    tops: Vec<PathBuf>,
    active_leaf: PathBuf,
    /// Digests of RP1..RP3 and of the live disk.
    digests: Vec<String>,
    live: String,
    /// Exact bytes written in epochs 1 and 2.
    epochs: Vec<Vec<refpoint_core::ByteRange>>,
}

fn prepare() -> (tempfile::TempDir, Expected) {
    let s = Scenario::build(SIZE, SEED, 10, false);
    let expected = Expected {
        host_dir: s.host_dir(),
        rps: s.rps.clone(),
        disk: s.disk.clone(),
        tops: (0..3).map(|i| frozen_top(s.rp(i)).to_owned()).collect(),
        active_leaf: s.active_leaf(),
        digests: (0..3).map(|i| s.rp_digest(i)).collect(),
        live: s.live_digest(),
        epochs: vec![s.expected(1, 2), s.expected(2, 3)],
    };
    let Scenario { tmp, host, .. } = s;
    drop(host);
    (tmp, expected)
}

fn spawn(e: &Expected) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(VICTIM_ENV, &e.host_dir)
        .env(RPS_ENV, format!("{};{}", e.rps[1], e.rps[2]))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "victim did not start");
    (child, out)
}

/// How long an uninterrupted victim runs after READY.
fn calibrate() -> Duration {
    let (_tmp, e) = prepare();
    let (mut child, mut out) = spawn(&e);
    let start = Instant::now();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(line.trim(), "DONE");
    start.elapsed()
}

fn kill_during_merges_leaves_same_content_and_honest_journal() {
    let span = calibrate();
    // REFPOINT_TEST_KILL_SEED replays a run's delays.
    let seed = std::env::var("REFPOINT_TEST_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            u64::try_from(nanos & u128::from(u64::MAX)).unwrap()
        });
    println!("merge_kill: uninterrupted run {span:?}, delay seed {seed}");
    let mut rng = Rng::new(seed);
    let mut states = std::collections::BTreeSet::<String>::new();
    let wanted = [
        "copying into a frozen layer",
        "copying into the active leaf",
    ];
    let covered = |states: &std::collections::BTreeSet<String>| {
        wanted
            .iter()
            .all(|w| states.iter().any(|s| s.starts_with(w)))
    };
    // At least KILLS kills; random delays can miss a short phase, so keep
    // killing (bounded) until every phase was hit — the coverage assert
    // below then fails only if a phase is really never reached.
    let mut round = 0;
    while round < KILLS || (!covered(&states) && round < 4 * KILLS) {
        let (_tmp, e) = prepare();
        let (mut child, _out) = spawn(&e);
        let micros = u64::try_from(span.as_micros()).unwrap().max(1);
        let delay = Duration::from_micros(rng.below(micros + micros / 10));
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();

        let state = check_files(&e, round);
        states.insert(state);
        check_journal(&e, round);
        check_recovery(&e, round);
        round += 1;
    }
    println!("merge_kill: {round} kills landed in states {states:?}");
    for wanted in wanted {
        assert!(
            states.iter().any(|s| s.starts_with(wanted)),
            "no kill landed while {wanted} (states {states:?}); the test did not exercise it"
        );
    }
}

fn digest_of_file_chain(top: &Path) -> String {
    content_digest(&Chain::open(top).unwrap_or_else(|e| panic!("{}: {e}", top.display())))
}

/// Content through the files alone, before any recovery. Returns where
/// the kill landed (from the catalog on disk).
fn check_files(e: &Expected, round: usize) -> String {
    assert_eq!(
        digest_of_file_chain(&e.active_leaf),
        e.live,
        "round {round}: live disk"
    );
    assert!(
        e.tops[0].exists(),
        "round {round}: RP1's base layer is never merged"
    );
    for i in 0..3 {
        // RP2's and RP3's tops go away once their data is removed; until
        // then, whatever the merge did around them, they read the same.
        if e.tops[i].exists() {
            assert_eq!(
                digest_of_file_chain(&e.tops[i]),
                e.digests[i],
                "round {round}: RP{}",
                i + 1
            );
        }
    }
    let tracking = catalog_tracking(e);
    let journal_length = std::fs::metadata(journal_path(e)).map_or(0, |m| m.len());
    let tail = if journal_length > tracking.committed_length() {
        ", uncommitted journal tail"
    } else {
        ""
    };
    let state = match &tracking.pending_merge {
        Some(p) if !p.relinked && p.into == e.active_leaf => {
            "copying into the active leaf".to_owned()
        }
        Some(p) if !p.relinked => "copying into a frozen layer".to_owned(),
        Some(_) => "deleting the merged layer".to_owned(),
        None => format!("idle, {} journal record(s)", tracking.journal.len()),
    };
    state + tail
}

fn journal_path(e: &Expected) -> PathBuf {
    let text = std::fs::read_to_string(e.host_dir.join("refpoint-host.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vm = json["VirtualSystems"][0]["Name"]
        .as_str()
        .unwrap()
        .to_owned();
    let disk = json["VirtualSystems"][0]["Disks"][0]["DiskGuid"]
        .as_str()
        .unwrap();
    e.host_dir.join("vms").join(vm).join(format!("{disk}.rctj"))
}

/// The change-tracking state of the disk as the catalog file holds it.
fn catalog_tracking(e: &Expected) -> DiskTracking {
    let text = std::fs::read_to_string(e.host_dir.join("refpoint-host.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(json["VirtualSystems"][0]["Disks"][0]["ChangeTracking"].clone()).unwrap()
}

/// Every committed record equals the bytes its epoch wrote.
fn check_journal(e: &Expected, round: usize) {
    let tracking = catalog_tracking(e);
    let text = std::fs::read_to_string(e.host_dir.join("refpoint-host.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let disk_guid = json["VirtualSystems"][0]["Disks"][0]["DiskGuid"]
        .as_str()
        .unwrap();
    let disk = uuid::Uuid::parse_str(disk_guid).unwrap();
    let path = journal_path(e);
    for (sequence, entry) in (0u64..).zip(&tracking.journal) {
        let record = read_record(&path, disk, sequence, entry)
            .unwrap_or_else(|err| panic!("round {round}: committed record {sequence}: {err}"));
        let epoch = usize::try_from(record.epoch).unwrap();
        assert!(
            (1..=2).contains(&epoch),
            "round {round}: epoch {epoch} journaled"
        );
        assert_eq!(
            record.ranges,
            e.epochs[epoch - 1],
            "round {round}: journal record of epoch {epoch} claims other bytes than were written"
        );
    }
}

/// Host::open finishes the merge; finishing the operations keeps contents
/// and tracking.
fn check_recovery(e: &Expected, round: usize) {
    let mut host = Host::open(&e.host_dir).unwrap();
    let vm = host.vms()[0].element_name.clone();
    assert!(
        host.vms()[0].disks[0].tracking.pending_merge.is_none(),
        "round {round}: open finished the pending merge"
    );
    let live = content_digest(&host.vm(&vm).unwrap().disks[0].open_chain().unwrap());
    assert_eq!(live, e.live, "round {round}: live after recovery");
    for (i, rp) in e.rps.iter().enumerate() {
        let rp = host.reference_point(rp).unwrap();
        if rp.has_associated_data {
            let digest = content_digest(&rp.disks[0].open_chain().unwrap());
            assert_eq!(
                digest,
                e.digests[i],
                "round {round}: RP{} after recovery",
                i + 1
            );
        }
    }
    host.remove_associated_data(&e.rps[1]).unwrap();
    host.remove_associated_data(&e.rps[2]).unwrap();
    let live = content_digest(&host.vm(&vm).unwrap().disks[0].open_chain().unwrap());
    assert_eq!(live, e.live, "round {round}: live after completion");
    let rp1 = host.reference_point(&e.rps[0]).unwrap();
    assert_eq!(
        content_digest(&rp1.disks[0].open_chain().unwrap()),
        e.digests[0]
    );
    for (base, target, want) in [
        (0, 2, union_of(&e.epochs)),
        (1, 2, e.epochs[1].clone()),
        (0, 1, e.epochs[0].clone()),
    ] {
        match host
            .changes_between(&e.disk, &e.rps[base], &e.rps[target])
            .unwrap()
        {
            Tracking::Changes(c) => {
                assert_eq!(c, want, "round {round}: RP{} → RP{}", base + 1, target + 1)
            }
            Tracking::Lost { reason } => panic!("round {round}: {reason}"),
        }
    }
}

fn union_of(epochs: &[Vec<refpoint_core::ByteRange>]) -> Vec<refpoint_core::ByteRange> {
    let all: Vec<(u64, u64)> = epochs
        .iter()
        .flatten()
        .map(|r| (r.offset, r.length))
        .collect();
    union(&all)
}
