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
use synod_kv::KvState;
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

/// What the feed gathered since the hub last took it.
#[derive(Debug, Default)]
pub struct Pending {
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

    /// Everything gathered since the last call.
    pub fn take(&self) -> Pending {
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

/// The hub's position: every revision up to `read_upto` has been handed
/// out. Deciding what to hand out next needs no waiting, so it lives here,
/// where the whole-stack simulator runs it too.
#[derive(Debug)]
pub struct Cursor {
    read_upto: i64,
    /// The planted bug `watch-skip-revision`: a batch of several revisions
    /// loses its first revision's events (for the simulator, which must
    /// catch it).
    #[cfg(feature = "planting")]
    pub skip_revision: bool,
}

impl Cursor {
    /// A cursor that has handed out every revision up to `read_upto` (the
    /// store's revision when the hub starts).
    pub fn new(read_upto: i64) -> Cursor {
        Cursor {
            read_upto,
            #[cfg(feature = "planting")]
            skip_revision: false,
        }
    }

    /// The batch to hand out for what the feed gathered: `Ok(None)` if it
    /// holds nothing new, `Err(())` if it cannot be trusted to be whole (it
    /// overflowed, a snapshot replaced the state, or it does not follow on
    /// from what was handed out), and the store must be read instead
    /// ([`Cursor::read_store`]).
    #[allow(clippy::result_unit_err)]
    pub fn next(&mut self, pending: Pending) -> Result<Option<Batch>, ()> {
        let fresh: Vec<(i64, Vec<Event>)> =
            pending.revisions.into_iter().filter(|(rev, _)| *rev > self.read_upto).collect();
        let contiguous = fresh.first().is_none_or(|(rev, _)| *rev == self.read_upto + 1);
        if pending.gap || !contiguous {
            return Err(());
        }
        let Some(&(to, _)) = fresh.last() else { return Ok(None) };
        let from = self.read_upto + 1;
        #[cfg(feature = "planting")]
        let fresh = if self.skip_revision && fresh.len() > 1 { fresh[1..].to_vec() } else { fresh };
        let events = fresh.into_iter().flat_map(|(_, events)| events).collect();
        self.read_upto = to;
        Ok(Some(Batch { from, to, events }))
    }

    /// The batch of every revision after the last handed out, read from the
    /// store. Revisions compacted before the hub read them are gone: the
    /// batch starts after the gap, and a stream that wanted them finds the
    /// compaction when it tries to catch up.
    pub fn read_store(&mut self, kv: &KvState) -> Batch {
        let from = (self.read_upto + 1).max(kv.compact_revision());
        let to = kv.revision();
        let events = kv.events(from, to).unwrap_or_default();
        self.read_upto = to;
        Batch { from, to, events }
    }
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
        let Ok(start) = handle.with_state(|m| m.kv().revision()).await else {
            return;
        };
        let cursor = Arc::new(Mutex::new(Cursor::new(start)));
        while wake.changed().await.is_ok() {
            wake.borrow_and_update();
            let next = cursor.lock().expect("no panics while holding the lock").next(feed.take());
            match next {
                Ok(None) => continue,
                Ok(Some(batch)) => {
                    let _ = self.batches.send(Arc::new(batch));
                    continue;
                }
                Err(()) => {}
            }
            let cursor = cursor.clone();
            let read = handle
                .with_state(move |m| cursor.lock().expect("no panics while holding the lock").read_store(m.kv()))
                .await;
            match read {
                Ok(batch) => {
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
