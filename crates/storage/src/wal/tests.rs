//! Unit tests of the file log: recovery decisions, rotation, compaction,
//! group commit and the fatal-fsync rule.

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::task::{Wake, Waker};

use super::*;

fn small() -> WalOptions {
    WalOptions { segment_size: 4096, preallocate: true, ..WalOptions::default() }
}

fn payload(lsn: Lsn) -> Vec<u8> {
    format!("record-{lsn}-").repeat((lsn % 7 + 1) as usize).into_bytes()
}

fn fill(dir: &Path, n: u64, opts: WalOptions) {
    let (wal, _) = Wal::open(dir, opts).unwrap();
    for lsn in 1..=n {
        assert_eq!(wal.append(&payload(lsn)).unwrap(), lsn);
    }
    wal.close().unwrap();
}

fn all(wal: &Wal) -> Vec<(Lsn, Vec<u8>)> {
    wal.iter_from(wal.first_lsn()).unwrap().map(|r| r.unwrap()).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segment::list_segments(&OsDisk, dir).unwrap().into_iter().map(|s| s.path).collect()
}

/// Byte offset of record `lsn` within its segment file.
fn offset_of(path: &Path, lsn: Lsn) -> usize {
    let buf = fs::read(path).unwrap();
    let s = record::decode_stream(&buf);
    let mut off = 0;
    for r in s.records {
        if r.lsn == lsn {
            return off;
        }
        off += record::encoded_len(r.payload.len());
    }
    panic!("lsn {lsn} not in {}", path.display());
}

fn flip(path: &Path, at: usize) {
    let f = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at as u64).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], at as u64).unwrap();
}

#[test]
fn records_survive_reopen_across_many_segments() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 300, small());
    assert!(segment_files(tmp.path()).len() > 3);
    let mut seen = Vec::new();
    let (wal, rec) = Wal::open_with(tmp.path(), small(), |l, p| seen.push((l, p.to_vec()))).unwrap();
    assert_eq!((rec.first_lsn, rec.last_lsn, rec.torn_tail.clone()), (1, 300, None));
    let expect: Vec<_> = (1..=300).map(|l| (l, payload(l))).collect();
    assert_eq!(seen, expect);
    assert_eq!(all(&wal), expect);
    assert_eq!(wal.iter_from(150).unwrap().next().unwrap().unwrap(), (150, payload(150)));
    assert_eq!(wal.append(b"next").unwrap(), 301);
}

#[test]
fn torn_tail_of_last_segment_is_cut_and_logging_continues() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 20, small());
    let last = segment_files(tmp.path()).pop().unwrap();
    let off = offset_of(&last, 20);
    // Simulate a crash mid-write of record 20: its second half never landed.
    let f = fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.write_all_at(&[0u8; 64], (off + 10) as u64).unwrap();
    let (wal, rec) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!(rec.last_lsn, 19);
    let torn = rec.torn_tail.unwrap();
    assert_eq!((torn.path, torn.offset), (last, off as u64));
    assert_eq!(wal.append(b"after").unwrap(), 20);
    wal.close().unwrap();
    let (wal, rec) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!((rec.last_lsn, rec.torn_tail), (20, None));
    assert_eq!(all(&wal).last().unwrap().1, b"after".to_vec());
}

#[test]
fn damage_followed_by_valid_records_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 20, small());
    let last = segment_files(tmp.path()).pop().unwrap();
    let first_in_last = record::decode_stream(&fs::read(&last).unwrap()).records[0].lsn;
    let off = offset_of(&last, first_in_last);
    flip(&last, off + record::HEADER_LEN);
    match Wal::open(tmp.path(), small()) {
        Err(Error::Corrupt { path, offset, .. }) => assert_eq!((path, offset), (last, off as u64)),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn damage_in_a_non_last_segment_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 100, small());
    let first = segment_files(tmp.path()).remove(0);
    // Even the last record of a closed segment was synced and may have
    // been acknowledged, so it must not be dropped.
    let stream_len = record::decode_stream(&fs::read(&first).unwrap()).records.len() as u64;
    let off = offset_of(&first, stream_len);
    flip(&first, off + record::HEADER_LEN + 1);
    match Wal::open(tmp.path(), small()) {
        Err(Error::Corrupt { path, offset, .. }) => assert_eq!((path, offset), (first, off as u64)),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_missing_segment_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 300, small());
    let segs = segment_files(tmp.path());
    assert!(segs.len() > 3);
    fs::remove_file(&segs[1]).unwrap();
    let err = Wal::open(tmp.path(), small()).unwrap_err();
    assert!(matches!(&err, Error::Corrupt { path, .. } if *path == segs[2]), "{err}");
}

#[test]
fn truncate_prefix_deletes_whole_segments_below_the_point() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path(), 300, small());
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    let before = segment_files(tmp.path()).len();
    wal.truncate_prefix(200).unwrap();
    let first = wal.first_lsn();
    assert!(first > 1 && first <= 201, "first_lsn {first}");
    assert!(segment_files(tmp.path()).len() < before);
    assert!(matches!(wal.iter_from(1), Err(Error::LsnOutOfRange { .. })));
    assert_eq!(all(&wal).last().unwrap().0, 300);
    wal.close().unwrap();
    let (wal, rec) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!((rec.first_lsn, rec.last_lsn), (first, 300));
    assert_eq!(wal.append(b"x").unwrap(), 301);
}

#[test]
fn a_record_larger_than_a_segment_gets_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    wal.append(b"small").unwrap();
    let big = vec![7u8; 10_000];
    assert_eq!(wal.append(&big).unwrap(), 2);
    wal.append(b"after").unwrap();
    drop(wal);
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    let got = all(&wal);
    assert_eq!(got[1].1, big);
    assert_eq!(got[2], (3, b"after".to_vec()));
}

#[test]
fn oversized_payload_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    let huge = vec![0u8; record::MAX_PAYLOAD + 1];
    assert!(matches!(wal.append(&huge), Err(Error::RecordTooLarge { .. })));
}

#[test]
fn failed_fsync_is_fatal_for_pending_and_later_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!(wal.append(b"ok").unwrap(), 1);
    wal.inject_sync_failure();
    assert!(matches!(wal.append(b"lost"), Err(Error::Failed(_))));
    assert!(matches!(wal.append(b"later"), Err(Error::Failed(_))));
    assert!(matches!(wal.submit(b"later"), Err(Error::Failed(_))));
    assert_eq!(wal.durable_lsn(), 1);
    assert!(wal.failure().is_some());
    assert!(wal.close().is_err());
    // Reopening re-verifies; the acknowledged record is there.
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!(all(&wal)[0], (1, b"ok".to_vec()));
}

#[test]
fn concurrent_appenders_share_syncs_and_get_distinct_lsns() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let lsn = wal.append(format!("{t}-{i}").as_bytes()).unwrap();
                        assert!(wal.durable_lsn() >= lsn);
                        lsn
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut lsns: Vec<Lsn> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    lsns.sort_unstable();
    assert_eq!(lsns, (1..=800).collect::<Vec<_>>());
    let stats = wal.stats();
    assert_eq!(stats.records, 800);
    assert!(stats.syncs < 800, "group commit must batch: {stats:?}");
}

struct ThreadWaker(std::thread::Thread);
impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: enough to show `Durable` works without tokio.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn submitted_record_resolves_as_a_future() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    let a = wal.submit(b"a").unwrap();
    let (first, b) = wal.submit_batch(&[b"b", b"c"]).unwrap();
    assert_eq!((a.lsn(), first, b.lsn()), (1, 2, 3));
    assert_eq!(block_on(b).unwrap(), 3);
    assert!(a.is_durable());
    assert_eq!(block_on(a).unwrap(), 1);
}

#[test]
fn leftover_spare_and_unpreallocated_segments_are_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = WalOptions { segment_size: 4096, preallocate: false, ..WalOptions::default() };
    fill(tmp.path(), 100, plain.clone());
    fs::write(tmp.path().join(SPARE_NAME_FOR_TESTS), b"half-written").unwrap();
    let (wal, rec) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!(rec.last_lsn, 100);
    assert_eq!(all(&wal).len(), 100);
    // The half-written leftover never becomes a segment; a background
    // thread may already be preparing a fresh spare, so look once it is done.
    wal.close().unwrap();
    let spare = tmp.path().join(SPARE_NAME_FOR_TESTS);
    assert!(fs::read(&spare).map_or(true, |b| b != b"half-written"), "the leftover spare survived");
    let (wal, rec) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!((rec.last_lsn, all(&wal).len()), (100, 100));
}

const SPARE_NAME_FOR_TESTS: &str = segment::SPARE_NAME;

#[test]
fn direct_and_batched_appends_interleave_in_lsn_order_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    let wal = Arc::new(wal);
    // Half the threads block in `append` (fast path when idle), half queue
    // with `submit`; every record names itself, so disk order is checkable.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..60 {
                    let body = format!("t{t}-i{i}").into_bytes();
                    let lsn = if t % 2 == 0 {
                        wal.append(&body).unwrap()
                    } else {
                        wal.submit(&body).unwrap().wait().unwrap()
                    };
                    mine.push((lsn, body));
                }
                mine
            })
        })
        .collect();
    let mut expect: Vec<(Lsn, Vec<u8>)> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    expect.sort();
    drop(Arc::try_unwrap(wal).unwrap());
    let (wal, rec) = Wal::open(tmp.path(), small()).unwrap();
    assert_eq!(rec.last_lsn, 480);
    assert_eq!(all(&wal), expect);
}

#[test]
fn pending_futures_resolve_to_the_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(tmp.path(), small()).unwrap();
    wal.append(b"ok").unwrap();
    wal.inject_sync_failure();
    let pending = wal.submit(b"doomed").unwrap();
    assert!(matches!(block_on(pending), Err(Error::Failed(_))));
    assert_eq!(wal.durable_lsn(), 1);
}

/// Counts what a [`WalObserver`] is told.
#[derive(Debug, Default)]
struct Counting {
    syncs: std::sync::atomic::AtomicU64,
    records: std::sync::atomic::AtomicU64,
}

impl WalObserver for Counting {
    fn synced(&self, _took: Duration) {
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn committed(&self, records: usize, _bytes: usize) {
        self.records.fetch_add(records as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn the_observer_is_told_of_every_sync_and_every_record_made_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let seen = Arc::new(Counting::default());
    let opts = WalOptions { observer: Some(seen.clone()), ..small() };
    let (wal, _) = Wal::open(tmp.path(), opts).unwrap();
    for lsn in 1..=200 {
        wal.append(&payload(lsn)).unwrap();
    }
    let stats = wal.stats();
    wal.close().unwrap();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    // Rotations sync too (200 records fill several 4 KiB segments).
    assert!(segment_files(tmp.path()).len() > 2);
    assert_eq!(load(&seen.syncs), stats.syncs);
    assert_eq!(load(&seen.records), 200);
}
