//! The `LogStore` conformance suite, written once and run against the file
//! log (`Wal`), the same log without threads over the simulated disk
//! (`SimDisk`, crashing with torn writes), and the simulator's in-memory
//! log (`MemLog`).
//!
//! Each property is a generic function over a `Harness`, which knows how to
//! open a store and how to crash and restart it. A crash may keep more than
//! was durable (the file log may have written it), never less.

use synod_storage::{Error, LogStore, Lsn, MemLog, SimDisk, SimFaults, Wal, WalOptions};

trait Harness {
    type Log: LogStore;
    fn open(&mut self) -> Self::Log;
    /// Crashes the store and returns it restarted.
    fn crash(&mut self, log: Self::Log) -> Self::Log;
}

struct WalHarness {
    dir: tempfile::TempDir,
}

impl Harness for WalHarness {
    type Log = Wal;
    fn open(&mut self) -> Wal {
        let opts = WalOptions { segment_size: 2048, preallocate: true, ..WalOptions::default() };
        Wal::open(self.dir.path(), opts).unwrap().0
    }
    fn crash(&mut self, log: Wal) -> Wal {
        drop(log);
        self.open()
    }
}

struct SimWalHarness {
    disk: SimDisk,
}

impl SimWalHarness {
    fn new() -> Self {
        SimWalHarness { disk: SimDisk::with_faults(7, SimFaults { torn_write: 0.5, ..SimFaults::default() }) }
    }
}

impl Harness for SimWalHarness {
    type Log = Wal;
    fn open(&mut self) -> Wal {
        let opts = WalOptions { segment_size: 2048, preallocate: true, threads: false, ..WalOptions::default() };
        Wal::open_on(self.disk.as_disk(), "/node/wal", opts, |_, _| {}).unwrap().0
    }
    fn crash(&mut self, log: Wal) -> Wal {
        drop(log);
        self.disk.crash();
        self.open()
    }
}

struct MemHarness;

impl Harness for MemHarness {
    type Log = MemLog;
    fn open(&mut self) -> MemLog {
        MemLog::new()
    }
    fn crash(&mut self, log: MemLog) -> MemLog {
        log.crash();
        log
    }
}

fn payload(lsn: Lsn) -> Vec<u8> {
    format!("entry {lsn};").repeat((lsn % 5 + 1) as usize).into_bytes()
}

fn append_n<L: LogStore>(log: &L, from: Lsn, n: u64) -> Lsn {
    let ps: Vec<Vec<u8>> = (from..from + n).map(payload).collect();
    let refs: Vec<&[u8]> = ps.iter().map(|p| &p[..]).collect();
    log.append(&refs).unwrap()
}

fn read_all<L: LogStore>(log: &L) -> Vec<(Lsn, Vec<u8>)> {
    log.read(log.first_lsn(), usize::MAX).unwrap()
}

fn lsns_are_consecutive_from_one<H: Harness>(mut h: H) {
    let log = h.open();
    assert_eq!(log.next_lsn(), 1);
    assert_eq!(log.append(&[b"a"]).unwrap(), 1);
    assert_eq!(log.append(&[b"b", b"c"]).unwrap(), 3);
    assert_eq!(log.append(&[]).unwrap(), 3);
    assert_eq!(log.next_lsn(), 4);
}

fn synced_records_read_back_in_order<H: Harness>(mut h: H) {
    let log = h.open();
    let last = append_n(&log, 1, 100);
    assert_eq!(log.sync().unwrap(), last);
    assert!(log.durable_lsn() >= last);
    let got = read_all(&log);
    assert_eq!(got, (1..=100).map(|l| (l, payload(l))).collect::<Vec<_>>());
    assert_eq!(log.read(40, 3).unwrap(), vec![(40, payload(40)), (41, payload(41)), (42, payload(42))]);
    assert_eq!(log.read(101, 10).unwrap(), vec![]);
}

fn reads_outside_the_log_are_refused<H: Harness>(mut h: H) {
    let log = h.open();
    append_n(&log, 1, 5);
    log.sync().unwrap();
    assert!(matches!(log.read(0, 1), Err(Error::LsnOutOfRange { .. })));
    assert!(matches!(log.read(7, 1), Err(Error::LsnOutOfRange { .. })));
}

fn durable_records_survive_a_crash<H: Harness>(mut h: H) {
    let log = h.open();
    let durable = append_n(&log, 1, 50);
    log.sync().unwrap();
    append_n(&log, 51, 10); // maybe lost
    let log = h.crash(log);
    let got = read_all(&log);
    assert!(got.len() as u64 >= durable, "lost durable records");
    for (i, (lsn, p)) in got.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1, "no gaps");
        assert_eq!(*p, payload(*lsn));
    }
    // Numbering continues after what survived.
    let next = log.next_lsn();
    assert_eq!(next, got.len() as u64 + 1);
    assert_eq!(log.append(&[b"after"]).unwrap(), next);
}

fn repeated_crashes_keep_every_durable_record<H: Harness>(mut h: H) {
    let mut log = h.open();
    let mut durable = 0;
    for round in 0..5 {
        let from = log.next_lsn();
        durable = append_n(&log, from, 20 + round);
        log.sync().unwrap();
        log = h.crash(log);
    }
    let got = read_all(&log);
    assert_eq!(got.len() as u64, durable);
    assert!(got.iter().all(|(l, p)| *p == payload(*l)));
}

fn truncate_prefix_keeps_the_suffix<H: Harness>(mut h: H) {
    let log = h.open();
    append_n(&log, 1, 200);
    log.sync().unwrap();
    log.truncate_prefix(150).unwrap();
    let first = log.first_lsn();
    assert!((1..=151).contains(&first), "first_lsn {first}");
    let got = read_all(&log);
    assert_eq!(got.first().map(|r| r.0), Some(first));
    assert_eq!(got.last().map(|r| r.0), Some(200));
    let log = h.crash(log);
    assert!(log.first_lsn() <= 151);
    assert_eq!(read_all(&log).last().map(|r| r.0), Some(200));
    assert_eq!(log.append(&[b"x"]).unwrap(), 201);
}

fn truncate_prefix_never_drops_undurable_records<H: Harness>(mut h: H) {
    let log = h.open();
    append_n(&log, 1, 10);
    log.sync().unwrap();
    append_n(&log, 11, 10);
    log.truncate_prefix(1_000).unwrap();
    log.sync().unwrap();
    assert_eq!(read_all(&log).last().map(|r| r.0), Some(20));
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod wal {
            $(#[test] fn $name() { super::$name(super::WalHarness { dir: tempfile::tempdir().unwrap() }) })*
        }
        mod sim_wal {
            $(#[test] fn $name() { super::$name(super::SimWalHarness::new()) })*
        }
        mod mem {
            $(#[test] fn $name() { super::$name(super::MemHarness) })*
        }
    };
}

conformance!(
    lsns_are_consecutive_from_one,
    synced_records_read_back_in_order,
    reads_outside_the_log_are_refused,
    durable_records_survive_a_crash,
    repeated_crashes_keep_every_durable_record,
    truncate_prefix_keeps_the_suffix,
    truncate_prefix_never_drops_undurable_records,
);

#[test]
fn mem_log_crash_loses_exactly_what_was_not_synced() {
    let log = MemLog::new();
    append_n(&log, 1, 5);
    log.sync().unwrap();
    append_n(&log, 6, 5);
    log.crash();
    assert_eq!(log.next_lsn(), 6);
}

#[test]
fn mem_log_failure_is_fatal_until_restart() {
    let log = MemLog::new();
    append_n(&log, 1, 2);
    log.inject_failure();
    assert!(matches!(log.sync(), Err(Error::Failed(_))));
    assert!(matches!(log.append(&[b"x"]), Err(Error::Failed(_))));
    log.crash();
    assert_eq!(log.durable_lsn(), 0);
    assert_eq!(log.append(&[b"x"]).unwrap(), 1);
}
