//! Criterion benchmarks: SHA-256 per payload block (the engine's bound) and a
//! whole export of a small fixture VM. The large end-to-end figure with the
//! qemu-img baseline comes from `refpoint bench`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use refpoint::export::ExportOptions;
use refpoint::fixture::{Fill, FixtureSpec, make_fixture};
use refpoint::service::Refpoint;
use sha2::{Digest, Sha256};

fn sha256_block(c: &mut Criterion) {
    let block = vec![0x5Au8; 2 << 20];
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("2MiB block", |b| {
        b.iter(|| Sha256::digest(black_box(&block)))
    });
    g.finish();
}

fn export_small_vm(c: &mut Criterion) {
    let temp = tempfile::tempdir().expect("tempdir");
    let rp = Refpoint::init(&temp.path().join("host")).expect("host");
    let spec = FixtureSpec {
        name: "bench".into(),
        disks: 2,
        size: 128 << 20,
        seed: 5,
        block_size: 2 << 20,
        fill: Fill::Blocks { percent: 50 },
        writes_after: 0,
        directory: temp.path().join("disks"),
    };
    let made = make_fixture(&mut rp.host(), &spec).expect("fixture");
    let data: u64 = made.writes_before.iter().flatten().map(|w| w.length).sum();
    let mut g = c.benchmark_group("export");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data));
    let mut n = 0u32;
    g.bench_function("2 x 128 MiB, half the blocks", |b| {
        b.iter(|| {
            n += 1;
            let dir = temp.path().join(format!("out{n}"));
            let id = rp
                .export(&made.reference_point, &dir, &ExportOptions::default())
                .expect("start");
            let job = rp.wait(&id).expect("wait");
            assert_eq!(job.job_state.value(), 7);
            std::fs::remove_dir_all(&dir).expect("cleanup");
        });
    });
    g.finish();
}

criterion_group!(benches, sha256_block, export_small_vm);
criterion_main!(benches);
