//! The watch hub: reads each new run of applied revisions out of the store
//! once and fans it out to every watch stream of this member.
//!
//! The state machine tells the hub when its revision moves
//! ([`crate::machine::EtcdMachine::with_revision_feed`]); the hub then takes
//! the events of every revision it has not read yet in one call on the
//! replica and broadcasts them as one [`Batch`]. Streams that keep up share
//! the batches (etcd's synced watchers). The broadcast keeps a bounded number
//! of batches: a stream that falls further behind misses some, sees a gap
//! between the revision its watchers want next and the next batch, and
//! catches up from the store's history before it goes on (etcd's unsynced
//! watchers). So a slow client never makes the hub hold more than
//! [`BACKLOG`] batches, whoever it is.
//!
//! A batch always holds whole revisions: every event of one write request
//! (one txn) is in the same batch, and so reaches a watcher in one response.

use crate::machine::EtcdMachine;
use std::sync::Arc;
use synod_kv::pb::Event;
use synod_runtime::Handle;
use tokio::sync::{broadcast, watch};
use tracing::warn;

/// How many batches the hub keeps for streams that have not taken them yet.
pub const BACKLOG: usize = 256;

/// The events of revisions `from..=to`, in revision order.
#[derive(Debug)]
pub struct Batch {
    /// The first revision the batch covers.
    pub from: i64,
    /// The last revision the batch covers.
    pub to: i64,
    /// The changes of those revisions, with previous key-values.
    pub events: Vec<Event>,
}

/// Where watch streams subscribe to applied events.
#[derive(Clone)]
pub struct WatchHub {
    batches: broadcast::Sender<Arc<Batch>>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub { batches: broadcast::channel(BACKLOG).0 }
    }
}

impl WatchHub {
    /// Batches from now on. Revisions applied before this call, and batches
    /// a slow subscriber misses, must be read from the store.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batches.subscribe()
    }

    /// Reads and broadcasts applied revisions until the replica stops.
    /// `revisions` is the feed given to the state machine.
    pub async fn run(self, handle: Handle<EtcdMachine>, mut revisions: watch::Receiver<i64>) {
        let Ok(mut read_upto) = handle.with_state(|m| m.kv().revision()).await else {
            return;
        };
        while revisions.changed().await.is_ok() {
            if *revisions.borrow_and_update() <= read_upto {
                continue;
            }
            let from = read_upto + 1;
            let read = handle
                .with_state(move |m| {
                    let kv = m.kv();
                    // Revisions compacted before the hub read them are gone:
                    // the batch starts after the gap, and a stream that wanted
                    // them finds the compaction when it tries to catch up.
                    let from = from.max(kv.compact_revision());
                    let to = kv.revision();
                    let events = kv.events(from, to).unwrap_or_default();
                    Batch { from, to, events }
                })
                .await;
            match read {
                Ok(batch) => {
                    read_upto = batch.to;
                    // No subscribers is not an error: nobody is watching.
                    let _ = self.batches.send(Arc::new(batch));
                }
                Err(e) => {
                    warn!(error = %e, "watch hub stops: the replica is gone");
                    return;
                }
            }
        }
    }
}
