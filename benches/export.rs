//! Criterion benchmarks of the inner loops: SHA-256 per payload block (the
//! engine's bound), the one-pass output writer (BAT encode, payload write,
//! file hash, zero-granule hole detection) and a whole export of a small
//! fixture VM. The end-to-end figures against the machine's limit and the
//! peers come from `refpoint bench`.

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

/// 64 MiB of payload through `SequentialImage`: all data (write + hash),
/// and all zeros (hole detection + hash, nothing written).
fn sequential_image(c: &mut Criterion) {
    use refpoint::vhdx::{BuilderKind, CreateOptions, SequentialImage};
    let temp = tempfile::tempdir().expect("tempdir");
    let blocks = 32u64;
    let opts = CreateOptions {
        block_size: 2 << 20,
        ..CreateOptions::new(blocks * (2 << 20))
    };
    let mut g = c.benchmark_group("sequential image");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(blocks * (2 << 20)));
    for (name, fill) in [("64 MiB data", 0x5Au8), ("64 MiB zeros (holes)", 0u8)] {
        let block = vec![fill; 2 << 20];
        let mut n = 0u32;
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                let path = temp.path().join(format!("out{n}.vhdx"));
                let mut img = SequentialImage::create(
                    &path,
                    &path,
                    &opts,
                    BuilderKind::Dynamic,
                    (0..blocks).collect(),
                )
                .expect("create");
                for i in 0..blocks {
                    img.write_payload(i, 0, black_box(&block)).expect("write");
                }
                black_box(img.finish().expect("finish").sha256);
                std::fs::remove_file(&path).expect("cleanup");
            });
        });
    }
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

criterion_group!(benches, sha256_block, sequential_image, export_small_vm);
criterion_main!(benches);
