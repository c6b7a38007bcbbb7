//! An in-memory [`LogStore`] for the deterministic simulator.
//!
//! [`MemLog`] keeps records in memory and makes them durable only when
//! told ([`LogStore::sync`]), so the simulator decides when an fsync
//! "completes" and can [`MemLog::crash`] a node in between, losing exactly
//! what a real crash could lose. It can also be made to fail like a disk
//! whose fsync errors ([`MemLog::inject_failure`]).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::log_store::{check_range, LogStore};
use crate::Lsn;

#[derive(Debug)]
struct Inner {
    /// LSN of `records[0]`.
    first_lsn: Lsn,
    records: VecDeque<Vec<u8>>,
    durable_lsn: Lsn,
    failed: Option<Arc<io::Error>>,
}

impl Inner {
    fn next_lsn(&self) -> Lsn {
        self.first_lsn + self.records.len() as u64
    }
}

/// In-memory log with explicit durability and crash simulation.
#[derive(Debug)]
pub struct MemLog {
    inner: Mutex<Inner>,
}

impl Default for MemLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemLog {
    /// An empty log whose first LSN will be 1.
    pub fn new() -> Self {
        MemLog { inner: Mutex::new(Inner { first_lsn: 1, records: VecDeque::new(), durable_lsn: 0, failed: None }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Simulates a crash and restart: every record not yet durable is lost,
    /// and a failed state is cleared (as reopening a real log would).
    pub fn crash(&self) {
        let mut g = self.lock();
        let keep = (g.durable_lsn + 1).saturating_sub(g.first_lsn) as usize;
        g.records.truncate(keep);
        g.failed = None;
    }

    /// Simulates a failed fsync: the log enters the failed state, in which
    /// appends and syncs return [`Error::Failed`] until [`MemLog::crash`].
    pub fn inject_failure(&self) {
        self.lock().failed = Some(Arc::new(io::Error::other("injected fsync failure")));
    }

    fn check_failed(g: &Inner) -> Result<()> {
        match &g.failed {
            Some(e) => Err(Error::Failed(e.clone())),
            None => Ok(()),
        }
    }
}

impl LogStore for MemLog {
    fn append(&self, payloads: &[&[u8]]) -> Result<Lsn> {
        let mut g = self.lock();
        Self::check_failed(&g)?;
        g.records.extend(payloads.iter().map(|p| p.to_vec()));
        Ok(g.next_lsn() - 1)
    }

    fn sync(&self) -> Result<Lsn> {
        let mut g = self.lock();
        Self::check_failed(&g)?;
        g.durable_lsn = g.next_lsn() - 1;
        Ok(g.durable_lsn)
    }

    fn durable_lsn(&self) -> Lsn {
        self.lock().durable_lsn
    }

    fn first_lsn(&self) -> Lsn {
        self.lock().first_lsn
    }

    fn next_lsn(&self) -> Lsn {
        self.lock().next_lsn()
    }

    fn read(&self, from: Lsn, max: usize) -> Result<Vec<(Lsn, Vec<u8>)>> {
        let g = self.lock();
        check_range(from, g.first_lsn, g.next_lsn())?;
        let start = (from - g.first_lsn) as usize;
        let durable_end = (g.durable_lsn + 1).saturating_sub(g.first_lsn) as usize;
        Ok(g.records
            .iter()
            .enumerate()
            .take(durable_end)
            .skip(start)
            .take(max)
            .map(|(i, r)| (g.first_lsn + i as u64, r.clone()))
            .collect())
    }

    fn truncate_prefix(&self, upto_lsn: Lsn) -> Result<()> {
        let mut g = self.lock();
        let upto = upto_lsn.min(g.durable_lsn);
        while g.first_lsn <= upto && !g.records.is_empty() {
            g.records.pop_front();
            g.first_lsn += 1;
        }
        Ok(())
    }
}
