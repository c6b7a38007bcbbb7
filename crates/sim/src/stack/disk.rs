//! A member's disk in the whole-stack simulator: the storage crate's
//! write-ahead log and snapshot store, the production code, run without
//! threads over a [`SimDisk`] that loses unsynced writes in a crash, tears
//! them, fails writes and syncs (EIO), and flips bits.

use std::path::Path;
use synod_paxos::{Lsn, Record, Snapshot};
use synod_runtime::codec::decode_record;
use synod_storage::{LogStore, SimDisk, SimFaults, SnapshotStore, Wal, WalOptions};

/// Where the log lives on the simulated disk.
const WAL_DIR: &str = "/member/wal";
/// Where snapshots live.
const SNAP_DIR: &str = "/member/snap";
/// Small segments, so that rotation and compaction run often.
const SEGMENT: u64 = 32 << 10;

/// What a member finds on its disk when it starts.
pub struct Recovered {
    /// Its latest stored snapshot.
    pub snapshot: Option<Snapshot>,
    /// The log's records after it.
    pub records: Vec<(Lsn, Record)>,
    /// Recovery dropped an incomplete batch from the log's tail.
    pub torn_tail: bool,
}

/// Why a member's disk could not be read.
#[derive(Debug)]
pub enum OpenError {
    /// The disk holds damage recovery refuses (a flipped bit before the
    /// log's tail, say): the member stops for good, its disk must be
    /// replaced.
    Damaged(String),
    /// An I/O error while opening: try again later.
    Failed(String),
}

/// One member's disk.
pub struct NodeDisk {
    disk: SimDisk,
    faults: SimFaults,
    wal: Option<Wal>,
    snapshots: Option<SnapshotStore>,
    ack_before_sync: bool,
    /// Disk faults injected before the last replacement.
    injected_before: u64,
}

impl NodeDisk {
    /// An empty disk, its faults drawn from `seed`; `ack_before_sync` plants
    /// the bug of a log that reports records durable before syncing them.
    pub fn new(seed: u64, ack_before_sync: bool) -> NodeDisk {
        let mut rng = fastrand::Rng::with_seed(seed);
        let faults = SimFaults {
            write_error: [0.0, 0.0005, 0.002][rng.usize(..3)],
            sync_error: [0.0, 0.0005, 0.002][rng.usize(..3)],
            torn_write: [0.0, 0.3, 0.8][rng.usize(..3)],
            bit_flip_on_crash: [0.0, 0.0, 0.02][rng.usize(..3)],
        };
        NodeDisk {
            disk: SimDisk::with_faults(rng.u64(..), faults),
            faults,
            wal: None,
            snapshots: None,
            ack_before_sync,
            injected_before: 0,
        }
    }

    /// Opens the log and the snapshot store as a starting member does, and
    /// reads what they hold.
    pub fn open(&mut self) -> Result<Recovered, OpenError> {
        self.wal = None;
        self.snapshots = None;
        let store = SnapshotStore::open_on(self.disk.as_disk(), SNAP_DIR, 2).map_err(classify)?;
        let snapshot =
            store.load_latest().map_err(classify)?.map(|(meta, data)| Snapshot { slot: meta.index, data: data.into() });
        #[allow(unused_mut)]
        let mut options = WalOptions { threads: false, segment_size: SEGMENT, ..WalOptions::default() };
        #[cfg(feature = "planting")]
        {
            options.plant_ack_before_sync = self.ack_before_sync;
        }
        let mut records = Vec::new();
        let mut bad = None;
        let (wal, recovery) =
            Wal::open_on(self.disk.as_disk(), Path::new(WAL_DIR), options, |lsn, bytes| match decode_record(bytes) {
                Ok(r) => records.push((lsn, r)),
                Err(e) => {
                    bad.get_or_insert(format!("record {lsn}: {e}"));
                }
            })
            .map_err(classify)?;
        if let Some(e) = bad {
            return Err(OpenError::Damaged(e));
        }
        self.wal = Some(wal);
        self.snapshots = Some(store);
        Ok(Recovered { snapshot, records, torn_tail: recovery.torn_tail.is_some() })
    }

    fn wal(&self) -> Result<&Wal, String> {
        self.wal.as_ref().ok_or_else(|| "the log is not open".to_string())
    }

    /// Appends records, not yet synced; returns the first one's number.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<Lsn, String> {
        let wal = self.wal()?;
        let first = wal.next_lsn();
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        LogStore::append(wal, &refs).map_err(|e| e.to_string())?;
        Ok(first)
    }

    /// Syncs; returns the last durable record's number.
    pub fn sync(&mut self) -> Result<Lsn, String> {
        LogStore::sync(self.wal()?).map_err(|e| e.to_string())
    }

    /// Drops the records up to `upto`, which a stored snapshot covers.
    pub fn truncate(&mut self, upto: Lsn) {
        if let Ok(wal) = self.wal() {
            // Failing to delete old segments costs disk space only, as in
            // the runtime.
            let _ = LogStore::truncate_prefix(wal, upto);
        }
    }

    /// Stores a snapshot (written, synced and renamed into place).
    pub fn store_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let store = self.snapshots.as_ref().ok_or("the snapshot store is not open")?;
        store.save(snapshot.slot, &snapshot.data).map(|_| ()).map_err(|e| e.to_string())
    }

    /// The member crashed: what was not synced is lost, or torn.
    pub fn crash(&mut self) {
        self.wal = None;
        self.snapshots = None;
        self.disk.crash();
    }

    /// The disk is replaced by an empty one (after damage recovery
    /// refused): the member must rejoin as one that lost its state.
    pub fn replace(&mut self, seed: u64) {
        self.injected_before = self.injected();
        self.crash();
        self.disk = SimDisk::with_faults(seed, self.faults);
    }

    /// The files of the log and the snapshot store, for traces.
    pub fn listing(&self) -> String {
        let disk = self.disk.as_disk();
        let mut names = Vec::new();
        for dir in [WAL_DIR, SNAP_DIR] {
            let mut files = disk.list(Path::new(dir)).unwrap_or_default();
            files.sort();
            for f in files {
                let len = disk.read(&f).map(|b| b.len()).unwrap_or(0);
                names.push(format!("{} ({len} B)", f.display()));
            }
        }
        names.join(", ")
    }

    /// Bits flipped on the current disk.
    pub fn flipped_bits(&self) -> u64 {
        self.disk.stats().bit_flips
    }

    /// Disk faults injected so far: write and sync errors, torn writes,
    /// flipped bits.
    pub fn injected(&self) -> u64 {
        let s = self.disk.stats();
        self.injected_before + s.write_errors + s.sync_errors + s.torn_writes + s.bit_flips
    }
}

/// Damage is for good; anything else may pass.
fn classify(e: synod_storage::Error) -> OpenError {
    match e {
        synod_storage::Error::Corrupt { .. } => OpenError::Damaged(e.to_string()),
        other => OpenError::Failed(other.to_string()),
    }
}
