//! Prints the WAL's headline numbers in one run:
//! (a) the floor: 4 KiB pwrite + fdatasync into a preallocated file;
//! (b) the WAL's single-writer append latency (4 KiB on disk per record);
//! (c) throughput of 256-byte appends with 1, 16, 64 and 256 appenders,
//!     and records per fdatasync;
//! (d) restart (recovery) time of a log of 1 million records.
//!
//! Usage: `cargo run --release -p synod-storage --bin wal-bench [dir]`.
//! The directory (default: a fresh one under the system temp dir) must be
//! on the disk being measured.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synod_storage::{record, Wal, WalOptions};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Lat {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn summarize(mut v: Vec<Duration>) -> Lat {
    v.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Lat {
        mean: v.iter().map(|d| us(*d)).sum::<f64>() / v.len() as f64,
        p50: us(v[v.len() / 2]),
        p99: us(v[v.len() * 99 / 100]),
    }
}

fn fresh(dir: &Path, name: &str) -> Res<PathBuf> {
    let p = dir.join(name);
    if p.exists() {
        std::fs::remove_dir_all(&p)?;
    }
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

const OPS: usize = 3000;

/// Lets the background preallocation of the next segment (64 MiB of zeros
/// written right after open) finish, so steady state is measured.
fn settle() {
    std::thread::sleep(Duration::from_millis(1000));
}

fn floor(dir: &Path) -> Res<Lat> {
    let path = fresh(dir, "floor")?.join("file");
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        f.write_all(&zeros)?;
    }
    f.sync_all()?;
    let page = vec![0xabu8; 4096];
    let mut lat = Vec::with_capacity(OPS);
    for i in 0..OPS + 100 {
        let t = Instant::now();
        f.write_all_at(&page, (i * 4096) as u64)?;
        f.sync_data()?;
        if i >= 100 {
            lat.push(t.elapsed());
        }
    }
    Ok(summarize(lat))
}

fn single_writer(dir: &Path, payload_len: usize) -> Res<Lat> {
    let (wal, _) = Wal::open(fresh(dir, "single")?, WalOptions::default())?;
    settle();
    let p = vec![0xabu8; payload_len];
    let mut lat = Vec::with_capacity(OPS);
    for i in 0..OPS + 100 {
        let t = Instant::now();
        wal.append(&p)?;
        if i >= 100 {
            lat.push(t.elapsed());
        }
    }
    wal.close()?;
    Ok(summarize(lat))
}

fn concurrent(dir: &Path, appenders: usize, run: Duration) -> Res<(f64, f64)> {
    let (wal, _) = Wal::open(fresh(dir, &format!("conc{appenders}"))?, WalOptions::default())?;
    let wal = Arc::new(wal);
    settle();
    let start = Instant::now();
    let deadline = start + run;
    let handles: Vec<_> = (0..appenders)
        .map(|_| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let p = [0x5au8; 256];
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if wal.append(&p).is_err() {
                        break;
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let secs = start.elapsed().as_secs_f64();
    let s = wal.stats();
    Ok((total as f64 / secs, s.records as f64 / s.syncs.max(1) as f64))
}

/// `appenders` logical appenders with one record in flight each, driven by
/// one thread through `submit` + `Durable` (how tasks on an async runtime
/// use the log): no OS thread per appender, so no context switch per record.
fn in_flight(dir: &Path, appenders: usize, run: Duration) -> Res<(f64, f64)> {
    let (wal, _) = Wal::open(fresh(dir, &format!("flight{appenders}"))?, WalOptions::default())?;
    settle();
    let p = [0x5au8; 256];
    let start = Instant::now();
    let deadline = start + run;
    let mut queue = std::collections::VecDeque::with_capacity(appenders);
    for _ in 0..appenders {
        queue.push_back(wal.submit(&p)?);
    }
    let mut done = 0u64;
    while let Some(d) = queue.pop_front() {
        d.wait()?;
        done += 1;
        if Instant::now() < deadline {
            queue.push_back(wal.submit(&p)?);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = wal.stats();
    Ok((done as f64 / secs, s.records as f64 / s.syncs.max(1) as f64))
}

fn recovery(dir: &Path, n: u64) -> Res<(Duration, Duration, Duration, u64)> {
    let path = fresh(dir, "recovery")?;
    let t = Instant::now();
    {
        let (wal, _) = Wal::open(&path, WalOptions::default())?;
        let p = [0x33u8; 256];
        let batch: Vec<&[u8]> = vec![&p[..]; 1000];
        let mut last = None;
        for _ in 0..n / 1000 {
            last = Some(wal.submit_batch(&batch)?.1);
        }
        if let Some(d) = last {
            d.wait()?;
        }
        wal.close()?;
    }
    let write = t.elapsed();
    let t = Instant::now();
    let mut count = 0u64;
    let (wal, rec) = Wal::open_with(&path, WalOptions::default(), |_, p| {
        count += 1;
        std::hint::black_box(p);
    })?;
    let open = t.elapsed();
    assert_eq!((count, rec.last_lsn), (n, n), "recovery must return every record");
    let t = Instant::now();
    let mut read = 0u64;
    for r in wal.iter_from(1)? {
        std::hint::black_box(r?);
        read += 1;
    }
    let iter = t.elapsed();
    assert_eq!(read, n);
    Ok((write, open, iter, rec.segments as u64))
}

/// Throughput runs per configuration; the best is reported, since the
/// machine (and its disk) may be shared and stalls only ever slow a run down.
const REPEATS: usize = 3;
const RUN: Duration = Duration::from_secs(2);

fn best_of(n: usize, mut f: impl FnMut() -> Res<(f64, f64)>) -> Res<(f64, f64)> {
    let mut best = f()?;
    for _ in 1..n {
        let r = f()?;
        if r.0 > best.0 {
            best = r;
        }
    }
    Ok(best)
}

fn main() -> Res<()> {
    let base =
        std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("synod-wal-bench"));
    std::fs::create_dir_all(&base)?;
    println!("dir: {}; throughput: best of {REPEATS} runs of {RUN:?}", base.display());

    // Interleaved, best (lowest mean) of three each: disk stalls from other
    // tenants only ever add latency.
    let mut f = floor(&base)?;
    let mut w = single_writer(&base, 4096 - record::HEADER_LEN)?;
    for _ in 1..REPEATS {
        let f2 = floor(&base)?;
        if f2.mean < f.mean {
            f = f2;
        }
        let w2 = single_writer(&base, 4096 - record::HEADER_LEN)?;
        if w2.mean < w.mean {
            w = w2;
        }
    }
    println!(
        "(a) floor: 4 KiB pwrite+fdatasync, preallocated: mean {:.1} us, p50 {:.1} us, p99 {:.1} us",
        f.mean, f.p50, f.p99
    );
    println!(
        "(b) WAL single-writer append, 4 KiB record: mean {:.1} us, p50 {:.1} us, p99 {:.1} us => {:.2}x floor (mean), {:.2}x (p50)",
        w.mean, w.p50, w.p99, w.mean / f.mean, w.p50 / f.p50
    );
    let mut single_rate = 0.0;
    for &n in &[1usize, 16, 64, 256] {
        let (rate, per_sync) = best_of(REPEATS, || concurrent(&base, n, RUN))?;
        if n == 1 {
            single_rate = rate;
        }
        println!(
            "(c) {n:>3} appenders, 256 B: {rate:>9.0} records/s, {per_sync:>6.1} records/sync, {:.1}x single",
            rate / single_rate
        );
    }
    for &n in &[1usize, 16, 64, 256] {
        let (rate, per_sync) = best_of(REPEATS, || in_flight(&base, n, RUN))?;
        println!(
            "(c') {n:>3} in-flight appenders (submit/Durable, one driver thread), 256 B: {rate:>9.0} records/s, {per_sync:>6.1} records/sync, {:.1}x single",
            rate / single_rate
        );
    }
    let (write, open, iter, segs) = recovery(&base, 1_000_000)?;
    println!(
        "(d) 1M x 256 B records ({segs} segments): written in {:.2} s; open+verify+replay {:.3} s; full re-read via iter_from {:.3} s",
        write.as_secs_f64(),
        open.as_secs_f64(),
        iter.as_secs_f64()
    );
    std::fs::remove_dir_all(&base)?;
    Ok(())
}
