//! A member's disk in the whole-stack simulator: its log and its latest
//! snapshot, which outlive its crashes.
//!
//! The log is the storage crate's in-memory [`MemLog`]: a record is
//! durable only once synced, and a crash loses what was not.

use std::sync::Arc;
use synod_paxos::{Lsn, Record, Snapshot};
use synod_runtime::codec::decode_record;
use synod_storage::{LogStore, MemLog};

/// What a member finds on its disk when it starts.
pub struct Recovered {
    /// Its latest stored snapshot.
    pub snapshot: Option<Snapshot>,
    /// The log's records after it.
    pub records: Vec<(Lsn, Record)>,
}

/// One member's disk.
pub struct NodeDisk {
    log: Arc<MemLog>,
    snapshot: Option<Snapshot>,
}

impl NodeDisk {
    /// An empty disk. `_seed` draws its faults; `_ack_before_sync` plants
    /// the bug of a log that reports records durable before syncing them.
    pub fn new(_seed: u64, _ack_before_sync: bool) -> NodeDisk {
        NodeDisk { log: Arc::new(MemLog::new()), snapshot: None }
    }

    /// Reads what the disk holds, as a starting member does.
    pub fn open(&mut self) -> Result<Recovered, String> {
        let mut records = Vec::new();
        for (lsn, bytes) in self.log.read(self.log.first_lsn(), usize::MAX).map_err(|e| e.to_string())? {
            records.push((lsn, decode_record(&bytes).map_err(|e| format!("record {lsn}: {e}"))?));
        }
        Ok(Recovered { snapshot: self.snapshot.clone(), records })
    }

    /// Appends records, not yet synced; returns the first one's number.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<Lsn, String> {
        let first = self.log.next_lsn();
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        self.log.append(&refs).map_err(|e| e.to_string())?;
        Ok(first)
    }

    /// Syncs; returns the last durable record's number.
    pub fn sync(&mut self) -> Result<Lsn, String> {
        self.log.sync().map_err(|e| e.to_string())
    }

    /// Drops the records up to `upto`, which a stored snapshot covers.
    pub fn truncate(&mut self, upto: Lsn) {
        let _ = self.log.truncate_prefix(upto);
    }

    /// Stores a snapshot (atomically, as the snapshot store renames a
    /// complete file into place).
    pub fn store_snapshot(&mut self, snapshot: Snapshot) {
        self.snapshot = Some(snapshot);
    }

    /// The member crashed: what was not synced is lost. Returns how many
    /// disk faults that injected.
    pub fn crash(&mut self) -> u64 {
        self.log.crash();
        0
    }
}
