//! The watch hub: takes each new run of applied revisions once and fans it
//! out to every watch stream of this member.
//!
//! The state machine hands the events of every write it applies to a
//! [`RevisionFeed`] and wakes the hub
//! ([`crate::state::machine::EtcdMachine::with_revision_feed`]); the hub takes
//! whatever has gathered and broadcasts it as one [`Batch`]. Taking the
//! events as they are applied, not reading them from the store afterwards,
//! matters: a compaction applied right after a delete would otherwise
//! remove the delete's tombstone before the hub saw it. Only when the feed
//! overflowed (the hub fell far behind) or a snapshot replaced the state
//! does the hub read from the store's history instead, and then a
//! watcher that wanted compacted revisions is cancelled, as etcd does. Streams that keep up share
//! the batches (etcd's synced watchers). The broadcast keeps a bounded number
//! of batches: a stream that falls further behind misses some, sees a gap
//! between the revision its watchers want next and the next batch, and
//! catches up from the store's history before it goes on (etcd's unsynced
//! watchers). So a slow client never makes the hub hold more than
//! [`BACKLOG`] batches, whoever it is.
//!
//! A batch always holds whole revisions: every event of one write request
//! (one txn) is in the same batch, and so reaches a watcher in one response.

use crate::state::machine::EtcdMachine;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use synod_kv::pb::Event;
use synod_runtime::Handle;
use tokio::sync::{broadcast, watch};
use tracing::warn;

/// How many batches the hub keeps for streams that have not taken them yet.
pub const BACKLOG: usize = 256;

/// Most applied revisions the feed holds for the hub before it gives up
/// on them and marks a gap (the hub then reads the store).
pub const FEED_REVISIONS: usize = 16 * 1024;

/// Applied events on their way from the state machine to the hub, and the
/// hub's wake-up. Not part of the replicated state.
#[derive(Debug)]
pub struct RevisionFeed {
    wake: watch::Sender<i64>,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Each applied revision's events, oldest first, consecutive.
    revisions: VecDeque<(i64, Vec<Event>)>,
    /// Revisions were dropped (overflow) or replaced (snapshot): the hub
    /// must read the store.
    gap: bool,
}

impl RevisionFeed {
    /// A feed and the receiver the hub waits on.
    pub fn new() -> (Arc<RevisionFeed>, watch::Receiver<i64>) {
        let (wake, rx) = watch::channel(0);
        (Arc::new(RevisionFeed { wake, pending: Mutex::new(Pending::default()) }), rx)
    }

    /// The events one write applied at `revision`.
    pub fn applied(&self, revision: i64, events: Vec<Event>) {
        {
            let mut p = self.pending.lock().expect("no panics while holding the lock");
            if p.revisions.len() >= FEED_REVISIONS {
                p.revisions.clear();
                p.gap = true;
            }
            p.revisions.push_back((revision, events));
        }
        self.wake.send_replace(revision);
    }

    /// The state was replaced (a snapshot installed) at `revision`.
    pub fn replaced(&self, revision: i64) {
        {
            let mut p = self.pending.lock().expect("no panics while holding the lock");
            p.revisions.clear();
            p.gap = true;
        }
        self.wake.send_replace(revision);
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("no panics while holding the lock"))
    }
}

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

    /// Broadcasts applied revisions until the replica stops. `feed` is the
    /// one given to the state machine, `wake` its receiver.
    pub async fn run(self, handle: Handle<EtcdMachine>, feed: Arc<RevisionFeed>, mut wake: watch::Receiver<i64>) {
        let Ok(mut read_upto) = handle.with_state(|m| m.kv().revision()).await else {
            return;
        };
        while wake.changed().await.is_ok() {
            wake.borrow_and_update();
            let pending = feed.take();
            let fresh: Vec<(i64, Vec<Event>)> =
                pending.revisions.into_iter().filter(|(rev, _)| *rev > read_upto).collect();
            let contiguous = fresh.first().is_none_or(|(rev, _)| *rev == read_upto + 1);
            if !pending.gap && contiguous {
                let Some(&(to, _)) = fresh.last() else { continue };
                let from = read_upto + 1;
                let events = fresh.into_iter().flat_map(|(_, events)| events).collect();
                read_upto = to;
                let _ = self.batches.send(Arc::new(Batch { from, to, events }));
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
