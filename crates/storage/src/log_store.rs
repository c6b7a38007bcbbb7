//! The storage interface the runtime and the simulator program against.
//!
//! [`LogStore`] is what a replica needs from a log: append opaque records
//! under consecutive LSNs, learn when they are durable, read them back, and
//! drop a prefix covered by a snapshot. [`crate::Wal`] implements it on
//! disk and [`crate::MemLog`] in memory for the deterministic simulator. The
//! one rule both keep: a record reported durable survives any crash.

use crate::error::{Error, Result};
use crate::{Lsn, Wal};

/// A durable, append-only log of opaque records.
///
/// LSNs are assigned consecutively from 1 (or from where the log left off
/// after a restart) and never reused. Durability is in LSN order: if LSN
/// `n` is durable, so is every retained LSN below it.
pub trait LogStore: Send + Sync {
    /// Appends `payloads` under consecutive LSNs and returns the last LSN
    /// assigned (`next_lsn() - 1` for an empty slice). The records are not
    /// necessarily durable yet; see [`LogStore::sync`].
    fn append(&self, payloads: &[&[u8]]) -> Result<Lsn>;

    /// Makes every record appended so far durable (blocking) and returns the
    /// durable LSN. A store may make records durable earlier on its own.
    fn sync(&self) -> Result<Lsn>;

    /// Highest LSN known durable; every LSN up to it is durable.
    fn durable_lsn(&self) -> Lsn;

    /// First LSN still retained.
    fn first_lsn(&self) -> Lsn;

    /// The LSN the next append will get.
    fn next_lsn(&self) -> Lsn;

    /// Up to `max` durable records from `from` on, in LSN order. Fails with
    /// [`Error::LsnOutOfRange`] if `from` is below [`LogStore::first_lsn`]
    /// or above [`LogStore::next_lsn`].
    fn read(&self, from: Lsn, max: usize) -> Result<Vec<(Lsn, Vec<u8>)>>;

    /// Allows the store to drop every record at or below `upto_lsn`, which
    /// a snapshot now covers. It may keep some (the file log drops whole
    /// segments only); [`LogStore::first_lsn`] tells what is left. Records
    /// above `upto_lsn`, and records not yet durable, are always kept.
    fn truncate_prefix(&self, upto_lsn: Lsn) -> Result<()>;
}

impl LogStore for Wal {
    fn append(&self, payloads: &[&[u8]]) -> Result<Lsn> {
        let (first, durable) = self.submit_batch(payloads)?;
        // The writer syncs on its own; the caller waits in `sync`.
        let last = durable.lsn();
        debug_assert!(payloads.is_empty() || last + 1 - first == payloads.len() as u64);
        Ok(last)
    }

    fn sync(&self) -> Result<Lsn> {
        Wal::sync(self)
    }

    fn durable_lsn(&self) -> Lsn {
        Wal::durable_lsn(self)
    }

    fn first_lsn(&self) -> Lsn {
        Wal::first_lsn(self)
    }

    fn next_lsn(&self) -> Lsn {
        Wal::next_lsn(self)
    }

    fn read(&self, from: Lsn, max: usize) -> Result<Vec<(Lsn, Vec<u8>)>> {
        self.iter_from(from)?.take(max).collect()
    }

    fn truncate_prefix(&self, upto_lsn: Lsn) -> Result<()> {
        Wal::truncate_prefix(self, upto_lsn.min(Wal::durable_lsn(self)))
    }
}

/// Checks `from` against a store's retained range.
pub(crate) fn check_range(from: Lsn, first: Lsn, next: Lsn) -> Result<()> {
    if from < first || from > next {
        return Err(Error::LsnOutOfRange { lsn: from, first, next });
    }
    Ok(())
}
