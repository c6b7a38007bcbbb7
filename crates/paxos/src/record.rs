//! What an acceptor and learner must not forget: the records the runtime
//! makes durable before the replies that depend on them leave the node.
//!
//! Records are appended in order and numbered by a log sequence number
//! ([`Lsn`]). Durability is a prefix: when the runtime reports `Durable(n)`,
//! every record up to `n` is on disk. Replaying the durable prefix rebuilds
//! the replica ([`crate::Replica::recover`]).

use crate::ballot::Ballot;
use crate::command::Value;
use crate::types::Slot;

pub use crate::types::Lsn;

/// One durable fact.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Record {
    /// The acceptor promised `ballot` (phase 1b).
    Promised(Ballot),
    /// The acceptor accepted `values` in consecutive slots from `first_slot`
    /// in `ballot` (phase 2b); implies a promise of `ballot`.
    Accepted {
        /// Ballot of the acceptance.
        ballot: Ballot,
        /// Slot of `values[0]`.
        first_slot: Slot,
        /// One value per slot.
        values: Vec<Value>,
    },
    /// The learner learned these values are chosen (from catch-up).
    Chosen {
        /// Slot of `values[0]`.
        first_slot: Slot,
        /// Chosen values.
        values: Vec<Value>,
    },
    /// Every slot up to here is chosen and its value is in an earlier record.
    Commit(Slot),
    /// The proposer started phase 1 with `ballot`. Kept so that after a
    /// restart it never proposes in the same ballot again: two different
    /// values in one ballot would break Paxos's uniqueness of proposals.
    Ballot(Ballot),
    /// This replica lost its acceptor state and rejoins as a non-voting
    /// learner (written first, before it does anything else).
    Rejoining,
    /// The rejoining replica has caught up and votes again.
    Rejoined,
    /// Written once a snapshot covering every slot up to `snapshot_slot` is
    /// stored: everything the records before this one said, except what the
    /// snapshot holds. The log before this record may then be deleted.
    Checkpoint {
        /// The snapshot this checkpoint goes with.
        snapshot_slot: Slot,
        /// The acceptor's promise.
        promised: Ballot,
        /// The highest ballot this node has led with.
        own_ballot: Ballot,
        /// The commit index.
        commit: Slot,
        /// Every log entry above the compaction point.
        entries: Vec<crate::message::PromisedEntry>,
    },
}
