//! A collection reference point of three VMs taken while threads write to
//! every disk of every member: each write carries a global, monotonically
//! increasing sequence number (taken while the writer holds the leaf), so
//! the exported content shows whether the members were frozen at one
//! instant — there must be a cut S: every write with seq ≤ S is in the
//! export, none with seq > S.
#![allow(clippy::tests_outside_test_module)]

mod common;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use refpoint::collection::CollectionExportOptions;
    use refpoint::fixture::qemu_create;
    use refpoint::service::Refpoint;
    use refpoint_core::CollectionPointSettings;
    use refpoint_jobs::JobState;

    use super::common::run_ok;

    /// Size of each disk and of each stamped write (one 4 KiB slot per write).
    const DISK: u64 = 16 << 20;
    const SLOT: u64 = 4096;
    const MAGIC: &[u8; 8] = b"RPSEQ-01";

    /// One stamped write: MAGIC, seq, vm, disk, slot; the rest a pattern of seq.
    fn stamp(seq: u64, vm: u64, disk: u64, slot: u64) -> Vec<u8> {
        let mut data = vec![0u8; usize::try_from(SLOT).unwrap()];
        data[..8].copy_from_slice(MAGIC);
        for (i, v) in [seq, vm, disk, slot].into_iter().enumerate() {
            data[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        for (i, b) in data.iter_mut().enumerate().skip(40) {
            *b = seq.to_le_bytes()[0].wrapping_add(i.to_le_bytes()[0]);
        }
        data
    }

    /// The sequence numbers stamped into a raw disk image (checked whole).
    fn stamps(raw: &[u8], vm: u64, disk: u64) -> BTreeSet<u64> {
        let mut found = BTreeSet::new();
        for (slot, chunk) in raw.chunks(usize::try_from(SLOT).unwrap()).enumerate() {
            if &chunk[..8] != MAGIC {
                assert!(
                    chunk.iter().all(|b| *b == 0),
                    "slot {slot}: torn or foreign data"
                );
                continue;
            }
            let field =
                |i: usize| u64::from_le_bytes(chunk[8 + i * 8..16 + i * 8].try_into().unwrap());
            let seq = field(0);
            assert_eq!(
                chunk,
                stamp(seq, vm, disk, slot as u64).as_slice(),
                "slot {slot} damaged"
            );
            found.insert(seq);
        }
        found
    }

    /// The virtual disk content of a (dynamic) VHDX as qemu-img reads it.
    fn qemu_raw(vhdx: &Path, scratch: &Path) -> Vec<u8> {
        run_ok(
            Command::new("qemu-img")
                .args(["convert", "-f", "vhdx", "-O", "raw"])
                .arg(vhdx)
                .arg(scratch),
        );
        let data = std::fs::read(scratch).unwrap();
        std::fs::remove_file(scratch).unwrap();
        data
    }

    #[test]
    fn every_member_is_exported_at_one_common_instant_while_all_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let rp = Arc::new(Refpoint::init(&tmp.path().join("host")).unwrap());
        let names = ["front", "app", "db"];
        let mut disks = Vec::new();
        {
            let mut host = rp.host();
            for (v, name) in names.iter().enumerate() {
                let files: Vec<_> = (0..2)
                    .map(|d| {
                        let p = tmp.path().join(format!("{name}-{d}.vhdx"));
                        qemu_create(&p, DISK, 1 << 20).unwrap();
                        p
                    })
                    .collect();
                let vm = host.create_vm(name, &files).unwrap().clone();
                for (d, disk) in vm.disks.iter().enumerate() {
                    disks.push((v as u64, d as u64, vm.cim_name(), disk.instance_id.clone()));
                }
            }
            host.define_collection("tier", None, 0).unwrap();
            for name in names {
                host.add_member("tier", name).unwrap();
            }
        }

        let seq = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = disks
            .iter()
            .cloned()
            .map(|(v, d, vm, disk)| {
                let (rp, seq, stop) = (Arc::clone(&rp), Arc::clone(&seq), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut slot = 0u64;
                    while !stop.load(Ordering::SeqCst) && (slot + 1) * SLOT <= DISK {
                        // Open under the host lock: the writer gets the active leaf
                        // of this instant and holds its write lock until dropped.
                        let mut writer = rp.host().open_disk_writer(&vm, &disk).unwrap();
                        let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
                        // An I/O in flight: the freeze must wait for it.
                        std::thread::sleep(Duration::from_millis(1 + n % 3));
                        writer.write_at(slot * SLOT, &stamp(n, v, d, slot)).unwrap();
                        writer.flush().unwrap();
                        drop(writer);
                        slot += 1;
                    }
                    slot
                })
            })
            .collect();
        while seq.load(Ordering::SeqCst) < 150 {
            std::thread::yield_now();
        }

        let point = rp
            .host()
            .create_collection_reference_point(
                "tier",
                &CollectionPointSettings {
                    lock_timeout: Duration::from_secs(60),
                    ..CollectionPointSettings::default()
                },
            )
            .unwrap()
            .clone();
        let after_point = seq.load(Ordering::SeqCst);
        while seq.load(Ordering::SeqCst) < after_point + 150 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
        let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        let total = seq.load(Ordering::SeqCst);
        assert_eq!(written, total);

        let out = tmp.path().join("export");
        let job = rp
            .export_collection(&point.cim_id(), &out, &CollectionExportOptions::default())
            .unwrap();
        let job = rp.wait(&job).unwrap();
        assert_eq!(
            job.job_state,
            JobState::Completed,
            "{:?}",
            job.error_description
        );

        // Every write with seq <= S is exported, none above: one instant.
        let scratch = tmp.path().join("scratch.raw");
        let mut exported = BTreeSet::new();
        for (v, d, _, _) in &disks {
            let file = out.join(names[usize::try_from(*v).unwrap()]).join(format!(
                "Virtual Hard Disks/{}-{d}.vhdx",
                names[usize::try_from(*v).unwrap()]
            ));
            let found = stamps(&qemu_raw(&file, &scratch), *v, *d);
            assert!(exported.is_disjoint(&found));
            exported.extend(found);
        }
        let cut = exported.iter().next_back().copied().unwrap_or(0);
        let expected: BTreeSet<u64> = (1..=cut).collect();
        assert_eq!(
            exported, expected,
            "not a prefix of the sequence: no common instant"
        );
        assert!(cut >= 150, "writes before the point: {cut}");
        assert!(
            total > cut + 100,
            "writes after the point: {total} vs cut {cut}"
        );
        for (v, _, _, _) in &disks {
            let name = names[usize::try_from(*v).unwrap()];
            assert!(out.join(name).is_dir());
        }
        let check = Command::new("sha256sum")
            .args(["-c", "--quiet", "--strict", "SHA256SUMS"])
            .current_dir(&out)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        assert!(refpoint_engine::verify_collection(&out).unwrap().is_ok());
    }
}
