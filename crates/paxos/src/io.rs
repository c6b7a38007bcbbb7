//! What goes into a replica and what comes out: the one [`Input`] type, the
//! one [`Output`] type with the rule for carrying it out (see
//! [`crate::Replica`]), and the answers to clients. Types only; no rule of
//! the protocol lives here.

use crate::command::{Command, CommandId};
use crate::config::ConfigError;
use crate::handover::TransferError;
use crate::message::Message;
use crate::reconfig::{Change, ReconfigError};
use crate::record::Record;
use crate::state_machine::SnapshotError;
use crate::types::{Lsn, NodeId, Slot};
use bytes::Bytes;
use thiserror::Error;

/// Something that happens to a replica.
#[derive(Clone, Debug)]
pub enum Input {
    /// A message from another replica.
    Message {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: Message,
    },
    /// A client proposes a command (at any replica).
    Propose(Command),
    /// A client asks for a linearizable read.
    Read {
        /// Chosen by the caller, echoed in the answer.
        id: u64,
        /// Passed to [`crate::StateMachine::query`].
        query: Bytes,
    },
    /// One tick of this replica's logical clock.
    Tick,
    /// Every record up to this sequence number is durable.
    Durable(Lsn),
    /// The snapshot the replica asked for (in [`Output::snapshot`]) at this
    /// slot is stored durably.
    SnapshotSaved(Slot),
    /// An operator asks for a snapshot now (defragmentation), whatever
    /// `snapshot_every` says: one is taken of everything applied, unless
    /// one is already being stored or nothing was applied since the last.
    /// Once it is stored the log before it is compacted as usual.
    TakeSnapshot,
    /// A client asks the leader to change the membership; answered in
    /// [`Output::reconfigs`] once the change is chosen (or refused).
    Reconfigure {
        /// Chosen by the caller, echoed in the answer.
        id: u64,
        /// The change.
        change: Change,
    },
    /// An operator asks the leader to hand leadership over to voter `to`
    /// (etcd's `MoveLeader`); answered in [`Output::transfers`] once `to`
    /// is seen leading with a higher ballot, or refused, or timed out (see
    /// [`crate::handover`]). Naming the leader itself is answered `Ok` at
    /// once.
    TransferLeadership {
        /// Chosen by the caller, echoed in the answer.
        id: u64,
        /// The voter to lead next.
        to: NodeId,
    },
}

/// The outcome of a leadership transfer asked for at this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferResponse {
    /// The id given with [`Input::TransferLeadership`].
    pub id: u64,
    /// `Ok` once the target was seen leading (past phase 1) with a ballot
    /// above this replica's; or why not.
    pub result: Result<(), TransferError>,
}

/// The outcome of a membership change asked for at this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconfigResponse {
    /// The id given with [`Input::Reconfigure`].
    pub id: u64,
    /// The slot the new configuration was chosen in (it governs slots from
    /// that slot plus `max_inflight_slots` on), or why it was refused.
    pub result: Result<Slot, ReconfigError>,
}

/// A snapshot: the state after applying every slot up to `slot`, with the
/// duplicate-detection table. Opaque bytes to the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Covers every slot up to here.
    pub slot: Slot,
    /// The encoded state.
    pub data: Bytes,
}

/// Why a proposal or read was not served here.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ClientError {
    /// This replica is not the leader; try the hinted one.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this replica believes in, if any.
        leader: Option<NodeId>,
    },
    /// Too many proposals are waiting for a leader.
    #[error("too many pending proposals")]
    Busy,
    /// The command was applied (it will not be applied again), but its
    /// result is not known here: it was applied before a snapshot this
    /// replica installed.
    #[error("applied, but its result is not known here")]
    AppliedWithoutResult,
    /// The command's client has no session (it expired, see
    /// [`crate::Config::session_expiry_ticks`]) and the command was made
    /// before sessions were last expired ([`crate::Command::origin`]), so
    /// it may be a retry of one applied before its session went. It is not
    /// applied now and never will be; whether it was applied before is not
    /// known. A client makes its next command with a fresh origin (or
    /// under a new id).
    #[error("the client's session expired: whether the command was applied earlier is unknown")]
    SessionExpired,
}

/// The outcome of a proposal made at this replica.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<O> {
    /// The proposal's id.
    pub id: CommandId,
    /// What the state machine returned, or why the proposal was refused.
    pub result: Result<O, ClientError>,
}

/// The outcome of a read made at this replica.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadResponse<O> {
    /// The id given with [`Input::Read`].
    pub id: u64,
    /// The answer, or why it was refused.
    pub result: Result<O, ClientError>,
}

/// What a replica wants done. See the module docs for the one rule.
#[derive(Clone, Debug)]
pub struct Output<O> {
    /// Records to append to stable storage, in order.
    pub persist: Vec<(Lsn, Record)>,
    /// Messages to send; already safe to send.
    pub send: Vec<(NodeId, Message)>,
    /// Answers to proposals made here.
    pub responses: Vec<Response<O>>,
    /// Answers to reads made here.
    pub reads: Vec<ReadResponse<O>>,
    /// Answers to membership changes asked for here.
    pub reconfigs: Vec<ReconfigResponse>,
    /// Answers to leadership transfers asked for here.
    pub transfers: Vec<TransferResponse>,
    /// Store this snapshot durably, then feed `Input::SnapshotSaved(slot)`.
    pub snapshot: Option<Snapshot>,
    /// Every record before this one may be deleted from stable storage
    /// (a durable checkpoint and a stored snapshot replace them).
    pub truncate_before: Option<Lsn>,
    /// Messages from peers refused on arrival (see [`crate::admission`]),
    /// for the runtime to log; nothing else is to be done about them.
    pub refused: Vec<Refused>,
    /// What happened since the last output, counted for the runtime's
    /// metrics; nothing is to be done about it (see [`Stats`]).
    pub stats: Stats,
}

/// Protocol events since the last [`crate::Replica::output`], for metrics: the
/// runtime adds them to its counters. Counts, not state: the replica keeps
/// none of them, so they never change what it does (or how a model checker
/// fingerprints it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Phase 1 started with a new ballot (this replica was elected).
    pub phase1_started: u64,
    /// Linearizable reads the leader confirmed by its lease, with no round
    /// trip (a follower's read index included).
    pub lease_reads: u64,
    /// Linearizable reads the leader confirmed by a heartbeat round to a
    /// quorum (the read-index fallback when no lease holds).
    pub read_index_reads: u64,
    /// Snapshot transfers sent to a peer in full (their last chunk sent).
    pub snapshots_sent: u64,
    /// Snapshots received from a peer and installed.
    pub snapshots_received: u64,
    /// For each slot proposed with client commands, how many it holds.
    pub batches: Vec<usize>,
}

impl Stats {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Stats::default()
    }
}

/// A peer's message refused on arrival: no member could have sent it as it
/// was (see [`crate::admission`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The member the message claimed to come from.
    pub from: NodeId,
    /// The message's kind ([`Message::kind`]).
    pub kind: &'static str,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl<O> Default for Output<O> {
    fn default() -> Self {
        Output {
            persist: Vec::new(),
            send: Vec::new(),
            responses: Vec::new(),
            reads: Vec::new(),
            reconfigs: Vec::new(),
            transfers: Vec::new(),
            snapshot: None,
            truncate_before: None,
            refused: Vec::new(),
            stats: Stats::default(),
        }
    }
}

impl<O> Output<O> {
    /// Whether there is nothing to do ([`Output::stats`] is not work, and
    /// is not looked at).
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.send.is_empty()
            && self.responses.is_empty()
            && self.reads.is_empty()
            && self.reconfigs.is_empty()
            && self.transfers.is_empty()
            && self.snapshot.is_none()
            && self.truncate_before.is_none()
            && self.refused.is_empty()
    }
}

/// Why recovery refused the stored records.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecoverError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Records are out of order.
    #[error("record {lsn} follows record {prev}: sequence numbers must increase by one")]
    Gap {
        /// The record's number.
        lsn: Lsn,
        /// The previous record's number.
        prev: Lsn,
    },
    /// The snapshot does not decode.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The log was compacted past the snapshot found (a newer snapshot is
    /// missing or damaged): the slots between are lost here.
    #[error("the log was compacted up to slot {checkpoint} but the snapshot found covers only slot {snapshot}")]
    CompactedPastSnapshot {
        /// Slot the log's first checkpoint needs.
        checkpoint: Slot,
        /// Slot of the snapshot found.
        snapshot: Slot,
    },
    /// The log does not start at its beginning and holds no checkpoint.
    #[error("the log starts at record {0} but holds no checkpoint")]
    NoCheckpoint(Lsn),
}

/// A read waiting for its leader to be confirmed.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    pub(crate) id: u64,
    pub(crate) query: Bytes,
    /// Serve once this much of the log is applied.
    pub(crate) read_index: Slot,
    /// Serve once a quorum acknowledged a heartbeat numbered this or later.
    pub(crate) seq: u64,
    /// The follower that asked, or `None` for a read made here.
    pub(crate) origin: Option<NodeId>,
}

/// A linearizable read made at a follower, waiting for its read index.
#[derive(Clone, Debug)]
pub(crate) struct FollowerRead {
    pub(crate) id: u64,
    pub(crate) query: Bytes,
    /// The leader's read index, once it answered.
    pub(crate) index: Option<Slot>,
    pub(crate) since: u64,
    /// Whether a `ReadIndex` went out (no leader was known when it came).
    pub(crate) asked: bool,
}

/// One client's entry in the duplicate-detection table, as
/// [`crate::Replica::sessions`] reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SessionInfo {
    /// The client's id.
    pub client: u64,
    /// The last sequence number applied for it.
    pub seq: u64,
    /// The slot it was last used in.
    pub last_slot: Slot,
}
