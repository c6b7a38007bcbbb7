//! Criterion benchmarks of the write-ahead log. `src/bin/wal-bench.rs`
//! prints the same figures in one plain run; these give distributions.
//!
//! Run with `cargo bench -p synod-storage --bench wal`; not part of CI.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use synod_storage::{record, Wal, WalOptions};

const PREALLOC: u64 = 64 << 20;

fn floor(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floor");
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&path).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PREALLOC >> 20 {
        f.write_all(&zeros).unwrap();
    }
    f.sync_all().unwrap();
    let page = [0xabu8; 4096];
    let mut off = 0u64;
    c.bench_function("fdatasync_floor_4KiB", |b| {
        b.iter(|| {
            f.write_all_at(&page, off).unwrap();
            f.sync_data().unwrap();
            off = (off + 4096) % PREALLOC;
        })
    });
}

fn single_writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    std::thread::sleep(Duration::from_secs(1)); // let segment preallocation finish
    let p = vec![0xabu8; 4096 - record::HEADER_LEN];
    c.bench_function("wal_append_4KiB", |b| b.iter(|| wal.append(&p).unwrap()));
}

fn concurrent(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_concurrent_256B");
    g.throughput(Throughput::Elements(1));
    for appenders in [1usize, 16, 64, 256] {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let wal = Arc::new(wal);
        std::thread::sleep(Duration::from_secs(1));
        g.bench_with_input(BenchmarkId::from_parameter(appenders), &appenders, |b, &n| {
            // Time per record with `n` threads appending `iters` in total.
            b.iter_custom(|iters| {
                let per = iters.div_ceil(n as u64);
                let start = Instant::now();
                let hs: Vec<_> = (0..n)
                    .map(|_| {
                        let wal = wal.clone();
                        std::thread::spawn(move || {
                            for _ in 0..per {
                                wal.append(&[0x5a; 256]).unwrap();
                            }
                        })
                    })
                    .collect();
                hs.into_iter().for_each(|h| h.join().unwrap());
                start.elapsed() * iters as u32 / (per * n as u64) as u32
            })
        });
    }
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let p = [0x33u8; 256];
        let batch: Vec<&[u8]> = vec![&p[..]; 1000];
        for _ in 0..100 {
            let _durable_at_close = wal.submit_batch(&batch).unwrap();
        }
        wal.close().unwrap();
    }
    c.bench_function("wal_recover_100k_x_256B", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let (wal, _) = Wal::open_with(dir.path(), WalOptions::default(), |_, _| n += 1).unwrap();
            assert_eq!(n, 100_000);
            drop(wal);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = floor, single_writer, concurrent, recovery
}
criterion_main!(benches);
