//! What the replica needs from its log of records, as a trait an embedder
//! (or the simulator) can implement.
//!
//! The replica's task never waits for the disk: it submits the records one
//! turn of its loop produced as one batch ([`DurableLog::submit`]) and goes
//! on; a future reports when the batch is durable, and only then is the
//! protocol told (`Input::Durable`), so no reply that depends on those
//! records leaves the node before they would survive a crash.
//!
//! [`DurableLog`] extends the storage crate's [`LogStore`] (append, sync,
//! read, truncate) with that asynchronous submission. Two logs implement
//! it here:
//!
//! * [`Wal`], the default: the write-ahead log's group commit makes a
//!   submitted batch durable with the next fdatasync, shared by every batch
//!   submitted meanwhile;
//! * [`MemLog`]: records in memory, durable as soon as submitted (for tests
//!   and embedders that keep durability elsewhere; nothing survives the
//!   process).
//!
//! Any other [`LogStore`] gets [`DurableLog::submit`] for free: it appends
//! and then syncs on tokio's blocking pool.
//!
//! One rule every implementation keeps: a record reported durable survives
//! any crash of the node, and once an append or a sync fails, every later
//! one fails too (the replica then stops; it must not go on with a log it
//! cannot trust).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use synod_paxos::Lsn;
use synod_storage::{Error as StorageError, LogStore, MemLog, Wal};

/// Completes once the records of one submission are durable, with the
/// highest LSN known durable (at least the submission's last).
pub type Durability = Pin<Box<dyn Future<Output = Result<Lsn, StorageError>> + Send>>;

/// A [`LogStore`] the replica can submit batches to without blocking.
pub trait DurableLog: LogStore + 'static {
    /// Appends `records` under consecutive LSNs without waiting for the
    /// disk, and returns the first LSN assigned and a future that completes
    /// once they are durable. The default appends, then syncs on tokio's
    /// blocking pool; a log with its own way of learning durability (group
    /// commit) overrides it.
    fn submit(self: Arc<Self>, records: &[&[u8]]) -> Result<(Lsn, Durability), StorageError> {
        let first = self.next_lsn();
        self.append(records)?;
        let durable: Durability = Box::pin(async move {
            match tokio::task::spawn_blocking(move || self.sync()).await {
                Ok(synced) => synced,
                Err(e) => {
                    Err(StorageError::Failed(Arc::new(std::io::Error::other(format!("the sync task died: {e}")))))
                }
            }
        });
        Ok((first, durable))
    }
}

impl DurableLog for Wal {
    fn submit(self: Arc<Self>, records: &[&[u8]]) -> Result<(Lsn, Durability), StorageError> {
        let (first, durable) = self.submit_batch(records)?;
        Ok((first, Box::pin(durable)))
    }
}

impl DurableLog for MemLog {
    /// Appends and makes durable at once: memory has nothing to wait for.
    fn submit(self: Arc<Self>, records: &[&[u8]]) -> Result<(Lsn, Durability), StorageError> {
        let first = self.next_lsn();
        self.append(records)?;
        let durable = self.sync();
        Ok((first, Box::pin(std::future::ready(durable))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log that only implements [`LogStore`], so it gets the default
    /// [`DurableLog::submit`]; it syncs only when asked, as a disk would.
    struct OnlyLogStore(MemLog);

    impl LogStore for OnlyLogStore {
        fn append(&self, payloads: &[&[u8]]) -> synod_storage::Result<Lsn> {
            self.0.append(payloads)
        }
        fn sync(&self) -> synod_storage::Result<Lsn> {
            self.0.sync()
        }
        fn durable_lsn(&self) -> Lsn {
            self.0.durable_lsn()
        }
        fn first_lsn(&self) -> Lsn {
            self.0.first_lsn()
        }
        fn next_lsn(&self) -> Lsn {
            self.0.next_lsn()
        }
        fn read(&self, from: Lsn, max: usize) -> synod_storage::Result<Vec<(Lsn, Vec<u8>)>> {
            self.0.read(from, max)
        }
        fn truncate_prefix(&self, upto_lsn: Lsn) -> synod_storage::Result<()> {
            self.0.truncate_prefix(upto_lsn)
        }
    }

    impl DurableLog for OnlyLogStore {}

    #[tokio::test]
    async fn any_log_store_submits_batches_that_become_durable_in_order() {
        let log = Arc::new(OnlyLogStore(MemLog::new()));
        let (first, durable) = log.clone().submit(&[b"a", b"b"]).unwrap();
        assert_eq!(first, 1);
        let (second, later) = log.clone().submit(&[b"c"]).unwrap();
        assert_eq!(second, 3);
        assert!(durable.await.unwrap() >= 2);
        assert_eq!(later.await.unwrap(), 3);
        let read: Vec<Vec<u8>> = log.read(1, 10).unwrap().into_iter().map(|(_, r)| r).collect();
        assert_eq!(read, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[tokio::test]
    async fn a_failed_log_refuses_submissions() {
        let log = Arc::new(MemLog::new());
        log.inject_failure();
        assert!(log.clone().submit(&[b"a"]).is_err());
    }
}
