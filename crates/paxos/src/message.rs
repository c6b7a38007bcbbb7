//! The messages replicas exchange: one variant per message of the protocol,
//! each documented with the rule it carries.
//!
//! Phase 1 (`Prepare`/`Promise`) and phase 2 (`Accept`/`Accepted`) are the
//! paper's; `Nack` is the optimisation the paper suggests ("the acceptor
//! should inform the proposer"). `Ping`/`Pong` belong to leader election,
//! which is separate from replication. The rest carry learning, leases,
//! reads and forwarding.

use crate::ballot::Ballot;
use crate::command::{Command, Value};
use crate::election::Pong;
use crate::types::Slot;

/// One accepted entry reported in a [`Message::Promise`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PromisedEntry {
    /// The slot.
    pub slot: Slot,
    /// The ballot the value was accepted in.
    pub ballot: Ballot,
    /// The accepted value.
    pub value: Value,
    /// The acceptor knows this value is chosen; a leader adopts it as is.
    pub chosen: bool,
}

/// A message between two replicas.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// Leader election: "are you there, and whom do you see?" Sent to every
    /// member once per election round.
    Ping {
        /// The sender's election round, echoed in the reply.
        round: u64,
    },
    /// Leader election: the reply to a `Ping`. A node counts as a candidate
    /// only if it heard a quorum in its last round, so a node cut off from a
    /// quorum never disturbs the others.
    Pong(Pong),
    /// Phase 1a: "promise to ignore ballots below `ballot`, and tell me every
    /// value you accepted in slots from `from_slot` on".
    Prepare {
        /// The leader's ballot.
        ballot: Ballot,
        /// First slot the leader does not know to be chosen.
        from_slot: Slot,
        /// Set when the sender bids because the leader of this ballot
        /// handed leadership over to it ([`Message::TimeoutNow`]): that
        /// leader gave up its lease in this ballot for good, so an acceptor
        /// whose lease was granted in exactly this ballot need not refuse
        /// the Prepare (see [`crate::handover`]).
        handoff: Option<Ballot>,
    },
    /// Phase 1b: the promise, with every accepted value from `from_slot` on.
    /// Sent only once the promise is durable.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// Echo of the `Prepare`'s `from_slot`.
        from_slot: Slot,
        /// Accepted values at or after `from_slot`.
        entries: Vec<PromisedEntry>,
        /// Every slot up to here is chosen and compacted into a snapshot at
        /// this acceptor; a leader behind it must fetch the snapshot before
        /// proposing (it cannot learn those slots' values from promises).
        compacted: Slot,
    },
    /// Phase 2a: "accept these values in consecutive slots from `first_slot`,
    /// in ballot `ballot`". Also carries the leader's commit index.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// Slot of `values[0]`.
        first_slot: Slot,
        /// One value per slot.
        values: Vec<Value>,
        /// Every slot up to here is chosen.
        commit: Slot,
    },
    /// Phase 2b: the acceptor accepted slots `first_slot..=last_slot` in
    /// `ballot`. Sent only once the acceptance is durable.
    Accepted {
        /// The ballot accepted in.
        ballot: Ballot,
        /// First slot accepted.
        first_slot: Slot,
        /// Last slot accepted.
        last_slot: Slot,
    },
    /// Rejection: the acceptor has promised `promised`, higher than `ballot`.
    Nack {
        /// The ballot rejected.
        ballot: Ballot,
        /// The acceptor's promise.
        promised: Ballot,
    },
    /// The leader's commit index, sent as soon as it advances when no
    /// `Accept` is going out to carry it.
    Commit {
        /// The leader's ballot.
        ballot: Ballot,
        /// Every slot up to here is chosen.
        commit: Slot,
    },
    /// Leader heartbeat: commit index, lease renewal and read-index
    /// confirmation in one.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// Every slot up to here is chosen.
        commit: Slot,
        /// Numbers heartbeats so replies can be matched.
        seq: u64,
        /// The highest slot the leader has proposed in: a replica rejoining
        /// after losing its disk must learn up to here before it votes.
        last_slot: Slot,
    },
    /// Reply to a `Heartbeat` from an acceptor whose promise is still
    /// `ballot`: no other leader can have completed phase 1 through it.
    HeartbeatAck {
        /// The ballot confirmed.
        ballot: Ballot,
        /// The heartbeat answered.
        seq: u64,
        /// The acceptor also promises to refuse other leaders' `Prepare`s
        /// for a lease period from when it received the heartbeat.
        lease: bool,
    },
    /// A learner asks for the chosen values from `from_slot` on.
    CatchUp {
        /// First slot wanted.
        from_slot: Slot,
    },
    /// Chosen values for consecutive slots from `first_slot`.
    Chosen {
        /// Slot of `values[0]`.
        first_slot: Slot,
        /// Chosen values.
        values: Vec<Value>,
        /// The sender's commit index (the learner may need more).
        commit: Slot,
    },
    /// A learner behind the compaction point asks for a snapshot, from
    /// `offset` on (resuming a transfer that broke off).
    SnapshotRequest {
        /// The snapshot's slot (0: whichever is latest).
        slot: Slot,
        /// First byte wanted.
        offset: u64,
    },
    /// One chunk of a snapshot.
    SnapshotChunk {
        /// The snapshot covers every slot up to here.
        slot: Slot,
        /// Where `data` starts.
        offset: u64,
        /// The snapshot's whole length.
        total: u64,
        /// The bytes.
        data: bytes::Bytes,
    },
    /// A follower asks the leader for a read index: the leader's commit
    /// index as of now, confirmed (by lease or heartbeat round) to be the
    /// leader's. The follower answers the read once it has applied that far.
    ReadIndex {
        /// The follower's read id, echoed.
        id: u64,
    },
    /// The leader's answer to `ReadIndex`; `index == 0` means refused (not
    /// the leader).
    ReadIndexReply {
        /// The read id.
        id: u64,
        /// Apply at least this far before answering.
        index: Slot,
    },
    /// A member rejoining after losing its disk asks what the others have
    /// promised and accepted.
    RejoinQuery,
    /// The answer: this member's promise and the highest slot it holds an
    /// accepted value for.
    RejoinReply {
        /// The member's promised ballot.
        promised: Ballot,
        /// The highest slot in its log.
        last_slot: Slot,
    },
    /// Client commands a non-leader passes on to the leader.
    Forward {
        /// The commands, in arrival order.
        commands: Vec<Command>,
    },
    /// Leadership transfer: the leader of `ballot` hands leadership over to
    /// the receiver, which bids at once with a ballot above every one it has
    /// seen and runs phase 1 with `handoff: Some(ballot)`. Sent only after
    /// the sender has given up its lease in `ballot` for good and the
    /// receiver has accepted every slot the sender proposed.
    TimeoutNow {
        /// The ballot handed over.
        ballot: Ballot,
        /// The sender's commit index: the receiver accepted every slot the
        /// sender proposed, so it learns them chosen up to here and starts
        /// its phase 1 above them (not behind a snapshot).
        commit: Slot,
    },
    /// A learner's reply to a heartbeat: how far it has learned, so the
    /// leader knows when it is in sync enough to be promoted.
    Progress {
        /// The learner's commit index.
        commit: Slot,
    },
}

/// Bytes an encoding of a message may spend beyond the values it carries
/// (tags, ballots, slot numbers, lengths): what [`Config::max_message_bytes`]
/// must leave room for.
///
/// [`Config::max_message_bytes`]: crate::Config::max_message_bytes
pub const ENVELOPE_BYTES: usize = 256;

/// An upper bound on the bytes `value` takes in any compact encoding of a
/// message (postcard's, for one): its payloads plus, per command and per
/// member, room for the ids and lengths around them. The protocol cuts
/// multi-value messages by this, so that none exceeds
/// [`Config::max_message_bytes`](crate::Config::max_message_bytes).
pub fn value_size_bound(value: &Value) -> usize {
    match value {
        Value::Noop => 2,
        Value::ExpireSessions { .. } => 12,
        Value::Commands(c) => c.iter().map(command_size_bound).fold(16, usize::saturating_add),
        Value::Reconfigure(m) => 48 + 10 * (m.voters.len() + m.learners.len()),
    }
}

/// An upper bound on the bytes `cmd` takes in a message (see
/// [`value_size_bound`]).
pub fn command_size_bound(cmd: &Command) -> usize {
    // Client id, sequence number and origin (up to 10 bytes each as
    // varints), the payload's length, and slack.
    cmd.payload.len().saturating_add(48)
}

/// Cut `items` into runs whose sizes (by `size`) add up to at most
/// `budget` each; an item larger than the budget is a run of its own.
pub(crate) fn split_by_size<T>(items: Vec<T>, budget: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut used = 0usize;
    for item in items {
        let n = size(&item);
        match runs.last_mut() {
            Some(run) if !run.is_empty() && used.saturating_add(n) <= budget => {
                used += n;
                run.push(item);
            }
            _ => {
                used = n;
                runs.push(vec![item]);
            }
        }
    }
    runs
}

impl Message {
    /// A short name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "Ping",
            Message::Pong(_) => "Pong",
            Message::Prepare { .. } => "Prepare",
            Message::Promise { .. } => "Promise",
            Message::Accept { .. } => "Accept",
            Message::Accepted { .. } => "Accepted",
            Message::Nack { .. } => "Nack",
            Message::Commit { .. } => "Commit",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::HeartbeatAck { .. } => "HeartbeatAck",
            Message::CatchUp { .. } => "CatchUp",
            Message::Chosen { .. } => "Chosen",
            Message::SnapshotRequest { .. } => "SnapshotRequest",
            Message::SnapshotChunk { .. } => "SnapshotChunk",
            Message::ReadIndex { .. } => "ReadIndex",
            Message::ReadIndexReply { .. } => "ReadIndexReply",
            Message::RejoinQuery => "RejoinQuery",
            Message::RejoinReply { .. } => "RejoinReply",
            Message::Forward { .. } => "Forward",
            Message::Progress { .. } => "Progress",
            Message::TimeoutNow { .. } => "TimeoutNow",
        }
    }
}
