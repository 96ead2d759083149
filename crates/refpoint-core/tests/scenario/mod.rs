//! A VM with one disk taken through three reference points with seeded
//! writes in between, recording exactly which bytes each epoch wrote; and
//! content digests of chains that do not depend on how data is spread over
//! the layers (so a merge must keep them).
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::{Path, PathBuf};

use refpoint_core::{ByteRange, Host, ReferencePoint};
use refpoint_vhdx::{Chain, CreateOptions, ExtentSource, create_dynamic};
use sha2::{Digest, Sha256};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
/// Block size of the differencing leaves snapshots create.
pub const LEAF_BLOCK: u64 = 2 * MIB;
pub const SECTOR: u64 = 512;

/// xorshift64*: seeded, reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Sorted, coalesced union of `(offset, length)` byte ranges.
pub fn union(ranges: &[(u64, u64)]) -> Vec<ByteRange> {
    let mut v: Vec<(u64, u64)> = ranges.iter().copied().filter(|r| r.1 > 0).collect();
    v.sort_unstable();
    let mut out: Vec<ByteRange> = Vec::new();
    for (o, l) in v {
        match out.last_mut() {
            Some(last) if o <= last.offset + last.length => {
                let end = (last.offset + last.length).max(o + l);
                last.length = end - last.offset;
            }
            _ => out.push(ByteRange {
                offset: o,
                length: l,
            }),
        }
    }
    out
}

/// The `block`-sized blocks touched by `ranges`.
pub fn blocks(ranges: &[ByteRange], block: u64) -> Vec<u64> {
    let mut v: Vec<u64> = ranges
        .iter()
        .flat_map(|r| (r.offset / block)..(r.offset + r.length).div_ceil(block))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// SHA-256 of the virtual disk read through `chain`, in 1 MiB pieces; a
/// piece that is all zeros (by metadata or by content) hashes as a marker,
/// so the digest depends on the content only, not on the layer layout.
pub fn content_digest(chain: &Chain) -> String {
    let size = chain.virtual_size();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; usize::try_from(MIB).unwrap()];
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(MIB);
        let extents = chain.map_range(pos, n).unwrap();
        let zero = extents.iter().all(|e| e.source == ExtentSource::Zero) || {
            let piece = &mut buf[..usize::try_from(n).unwrap()];
            chain.read_at(pos, piece).unwrap();
            piece.iter().all(|&b| b == 0)
        };
        if zero {
            h.update(b"zero-piece");
            h.update(n.to_le_bytes());
        } else {
            h.update(&buf[..usize::try_from(n).unwrap()]);
        }
        pos += n;
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The VM of a scenario.
pub struct Scenario {
    pub tmp: tempfile::TempDir,
    pub host: Host,
    pub vm: String,
    pub disk: String,
    pub size: u64,
    /// RP1, RP2, RP3 InstanceIDs.
    pub rps: Vec<String>,
    /// Byte ranges written in epoch 1 (after RP1), 2 (after RP2), 3 (after RP3, live).
    pub written: Vec<Vec<(u64, u64)>>,
}

impl Scenario {
    /// A `size`-byte disk (32 MiB base blocks) with writes before RP1, then
    /// RP1, epoch-1 writes, RP2, epoch-2 writes (overwriting epoch 1's),
    /// RP3, epoch-3 writes. `far` adds writes past 4 GiB (disk ≥ 6 GiB).
    pub fn build(size: u64, seed: u64, writes: usize, far: bool) -> Scenario {
        let tmp = tempfile::tempdir().unwrap();
        let host_dir = tmp.path().join("host");
        let mut host = Host::init(&host_dir).unwrap();
        let disks = tmp.path().join("disks");
        std::fs::create_dir_all(&disks).unwrap();
        let base = disks.join("base.vhdx");
        create_dynamic(&base, &CreateOptions::new(size)).unwrap();
        let vm = "tracked".to_owned();
        host.create_vm(&vm, &[base]).unwrap();
        let disk = host.vm(&vm).unwrap().disks[0].instance_id.clone();
        let mut s = Scenario {
            tmp,
            host,
            vm,
            disk,
            size,
            rps: Vec::new(),
            written: Vec::new(),
        };
        let mut rng = Rng::new(seed);
        s.write_epoch(&mut rng, writes, far, None);
        for _ in 0..3 {
            let rp = s
                .host
                .create_reference_point(&s.vm)
                .unwrap()
                .instance_id
                .clone();
            s.rps.push(rp);
            let previous = s.written.last().cloned();
            let w = s.write_epoch(&mut rng, writes, far, previous.as_deref());
            s.written.push(w);
        }
        s
    }

    /// Seeded writes into the active leaf: single sectors, partial blocks,
    /// whole blocks, ranges across blocks; some overwrite `previous`; with
    /// `far`, some past the first 4 GiB. Returns the ranges written.
    pub fn write_epoch(
        &mut self,
        rng: &mut Rng,
        writes: usize,
        far: bool,
        previous: Option<&[(u64, u64)]>,
    ) -> Vec<(u64, u64)> {
        let mut w = self.host.open_disk_writer(&self.vm, &self.disk).unwrap();
        let mut done = Vec::new();
        for i in 0..writes {
            let length = match i % 5 {
                0 => SECTOR,
                1 => SECTOR * (1 + rng.below(200)),
                2 => LEAF_BLOCK,
                3 => LEAF_BLOCK * (1 + rng.below(3)) + SECTOR * rng.below(64),
                _ => SECTOR * (1 + rng.below(4096)),
            };
            let offset = match (i % 4, previous) {
                (1, Some(prev)) if !prev.is_empty() => {
                    // Overwrite part of an earlier epoch's write.
                    let (o, l) = prev[usize::try_from(rng.below(prev.len() as u64)).unwrap()];
                    (o + rng.below(l / SECTOR) * SECTOR).min(self.size - length)
                }
                (3, _) if far => {
                    let low = 4 * GIB + SECTOR * rng.below(64);
                    low + rng.below((self.size - length - low) / SECTOR) * SECTOR
                }
                _ => rng.below((self.size - length) / SECTOR) * SECTOR,
            };
            let data = rng.bytes(usize::try_from(length).unwrap());
            w.write_at(offset, &data).unwrap();
            done.push((offset, length));
        }
        w.flush().unwrap();
        drop(w);
        self.host.refresh(&self.vm).unwrap();
        done
    }

    pub fn rp(&self, i: usize) -> &ReferencePoint {
        self.host.reference_point(&self.rps[i]).unwrap()
    }

    /// Content digest of reference point `i` (through its recorded chain).
    pub fn rp_digest(&self, i: usize) -> String {
        content_digest(&self.rp(i).disks[0].open_chain().unwrap())
    }

    /// Content digest of the live disk.
    pub fn live_digest(&self) -> String {
        content_digest(
            &self.host.vm(&self.vm).unwrap().disks[0]
                .open_chain()
                .unwrap(),
        )
    }

    /// The union of what epochs `from..to` wrote (1-based epochs).
    pub fn expected(&self, from: usize, to: usize) -> Vec<ByteRange> {
        let all: Vec<(u64, u64)> = (from..to)
            .flat_map(|e| self.written[e - 1].iter().copied())
            .collect();
        union(&all)
    }

    pub fn active_leaf(&self) -> PathBuf {
        self.host.vm(&self.vm).unwrap().disks[0]
            .active_leaf()
            .to_owned()
    }

    pub fn journal(&self) -> PathBuf {
        let vm = self.host.vm(&self.vm).unwrap();
        self.host.journal_path(&vm.name, &vm.disks[0].disk_guid)
    }

    pub fn host_dir(&self) -> PathBuf {
        self.tmp.path().join("host")
    }

    /// Reopens the host (a restart).
    pub fn reopen(&mut self) {
        let dir = self.host_dir();
        let placeholder = Host::init(
            &self
                .tmp
                .path()
                .join(format!("placeholder-{}", rand_suffix())),
        )
        .unwrap();
        drop(std::mem::replace(&mut self.host, placeholder));
        self.host = Host::open(&dir).unwrap();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Frozen top of reference point `rp` for its first disk.
pub fn frozen_top(rp: &ReferencePoint) -> &Path {
    rp.disks[0].frozen_leaf()
}
