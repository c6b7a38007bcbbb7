//! One replica of Multi-Paxos: proposer, acceptor and learner in one
//! sans-IO struct.
//!
//! Everything that happens to a replica is an [`Input`]; everything it wants
//! done is collected in an [`Output`]. It never blocks, reads a clock or does
//! I/O, and the same inputs give the same outputs.
//!
//! # The one rule for the runtime
//!
//! Feed any number of inputs with [`Replica::step`], then call
//! [`Replica::output`] and:
//! 1. append `output.persist` to stable storage in order, and once it is
//!    durable feed `Input::Durable(last lsn)`;
//! 2. send `output.send` (whenever you like: the replica holds back every
//!    reply that depends on records not yet durable until you report them
//!    durable, so a runtime cannot send a promise before it is stored);
//! 3. hand `output.responses` and `output.reads` to the clients.
//!
//! The roles live in their own files: `acceptor.rs`, `leader.rs`,
//! `learner.rs`; leader election in `election.rs`.

use crate::ballot::{Ballot, NodeId};
use crate::command::{Command, CommandId, Slot, Value};
use crate::config::{Config, ConfigError};
use crate::election::Election;
use crate::leader::Leader;
use crate::log::Log;
use crate::message::Message;
use crate::quorum::{Joint, Quorum};
use crate::reconfig::{Change, Configs, Membership, ReconfigError};
use crate::record::{Lsn, Record};
use crate::snapshot::Incoming;
use crate::state_machine::{SnapshotError, StateMachine};
use crate::transfer::{Transfer, TransferError};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
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
        /// Passed to [`StateMachine::query`].
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
    /// [`crate::transfer`]). Naming the leader itself is answered `Ok` at
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

/// Protocol events since the last [`Replica::output`], for metrics: the
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

/// A replica rejoining without its acceptor state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rejoin {
    /// The highest slot any queried member has accepted in; catch up to it.
    pub(crate) target: Slot,
    /// The highest ballot promised by a queried member or seen leading.
    pub(crate) ballot: Ballot,
    /// Members that answered our `RejoinQuery`.
    pub(crate) replies: NodeSet,
    /// When we last asked.
    pub(crate) asked_at: Option<u64>,
}

/// A set of members, by index in `Config::members`.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct NodeSet(u64);

impl NodeSet {
    pub(crate) fn insert(&mut self, index: usize) -> bool {
        let had = self.contains(index);
        self.0 |= 1 << index;
        !had
    }
    pub(crate) fn contains(&self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
    pub(crate) fn len(&self) -> usize {
        self.0.count_ones() as usize
    }
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

/// A client's entry in the duplicate-detection table.
#[derive(Clone, Debug)]
pub(crate) struct Session<O> {
    /// The last sequence number applied.
    pub(crate) seq: u64,
    /// The slot that last applied (or recognised a retry of) a command of
    /// this client: what expiry ([`crate::Value::ExpireSessions`]) goes by.
    pub(crate) last_slot: Slot,
    /// The answer to `seq` (none when the entry came from a snapshot).
    pub(crate) output: Option<O>,
}

/// One client's entry in the duplicate-detection table, as
/// [`Replica::sessions`] reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SessionInfo {
    /// The client's id.
    pub client: u64,
    /// The last sequence number applied for it.
    pub seq: u64,
    /// The slot it was last used in.
    pub last_slot: Slot,
}

/// One replica: proposer (leader), acceptor and learner.
///
/// Cloning a replica forks it: both copies go on from the same state and,
/// fed the same inputs, behave alike (a model checker branches on this).
#[derive(Clone)]
pub struct Replica<S: StateMachine> {
    pub(crate) cfg: Config,
    pub(crate) now: u64,
    pub(crate) rng: fastrand::Rng,

    // Durability: replies wait in `held` until their records are durable.
    pub(crate) next_lsn: Lsn,
    pub(crate) durable: Lsn,
    pub(crate) held: VecDeque<(Lsn, NodeId, Message)>,

    // Acceptor.
    pub(crate) promised: Ballot,
    /// Lease granted to a leader: until `lease_until` refuse other ballots'
    /// Prepares. `lease_holder == 0` with a future `lease_until` means
    /// "recovering: refuse everyone" (a lease granted before a crash may
    /// still be running).
    pub(crate) lease_holder: NodeId,
    /// The ballot the lease was last granted in (a `Prepare` handed over
    /// from exactly this ballot passes the lease).
    pub(crate) lease_ballot: Ballot,
    pub(crate) lease_until: u64,

    // Learner.
    pub(crate) log: Log,
    pub(crate) commit: Slot,
    pub(crate) commit_persisted: Slot,
    pub(crate) applied: Slot,
    pub(crate) known_commit: Slot,
    pub(crate) catchup_sent_at: Option<u64>,
    pub(crate) sm: S,
    /// The duplicate-detection table: per client, its session.
    pub(crate) sessions: HashMap<u64, Session<S::Output>>,
    /// The highest `before` of any [`crate::Value::ExpireSessions`]
    /// applied: a command without a session whose origin lies below it
    /// may be a retry of one applied before its session went, and is
    /// refused ([`ClientError::SessionExpired`]).
    pub(crate) sessions_expired_before: Slot,
    /// (tick, the next unchosen slot then), noted every quarter of the
    /// session expiry: a session last used below such a slot has been idle
    /// since that tick at least. Five entries at most.
    pub(crate) session_marks: VecDeque<(u64, Slot)>,

    // Snapshots.
    /// The latest stored snapshot (sent to learners behind it).
    pub(crate) snapshot: Option<Snapshot>,
    /// A snapshot handed to the runtime and not yet reported stored.
    pub(crate) snapshot_pending: Option<Snapshot>,
    /// The first and last record of the checkpoint written last, until
    /// the last is durable.
    pub(crate) checkpoint_lsn: Option<(Lsn, Lsn)>,
    pub(crate) incoming: Option<Incoming>,
    /// A snapshot received from a peer and installed, not yet reported
    /// stored: until it is, no commit mark may be persisted (replaying one
    /// after a crash would mark this replica's own stale entries below the
    /// snapshot chosen).
    pub(crate) installed_unsaved: Option<Slot>,
    /// Learners being sent our snapshot: (snapshot slot, last request).
    pub(crate) transfers: HashMap<NodeId, (Slot, u64)>,

    // Election and proposer.
    pub(crate) election: Election,
    pub(crate) leader: Option<Leader>,
    /// A ballot this node stepped down from; never restart phase 1 with it.
    pub(crate) abandoned: Ballot,
    /// The highest ballot this node has led with (durably recorded).
    pub(crate) own_ballot: Ballot,
    /// Sequence number of the first record recovered (1 unless the log was
    /// truncated after a checkpoint).
    pub(crate) first_lsn: Lsn,
    /// Set while this replica rejoins after losing its disk.
    pub(crate) rejoin: Option<Rejoin>,
    pub(crate) leader_hint: Option<NodeId>,
    pub(crate) forward: Vec<Command>,
    pub(crate) follower_reads: Vec<FollowerRead>,
    /// Proposals made here and not yet answered: when proposed, and the
    /// command (passed on again when the leader changes).
    pub(crate) local: HashMap<CommandId, (u64, Command)>,

    // Membership.
    /// The initial configuration and the changes chosen since that may
    /// still matter.
    pub(crate) configs: Configs,
    /// The configuration in force at `commit + 1`, then any pending one:
    /// whom this replica pings and whose quorum election needs.
    pub(crate) view: Vec<Membership>,
    /// Learners' commit indexes as last reported to this (leading) node.
    pub(crate) progress: HashMap<NodeId, Slot>,

    // Leadership transfer.
    /// A transfer asked for here and not yet answered.
    pub(crate) transfer: Option<Transfer>,
    /// Told to take over: (the ballot we bid with, the ballot handed over),
    /// until phase 1 starts with it.
    pub(crate) takeover: Option<(Ballot, Ballot)>,

    pub(crate) ping_round: u64,
    pub(crate) loopback: VecDeque<Message>,
    pub(crate) out: Output<S::Output>,
}

/// Every field, for traces and for model checkers that fingerprint a
/// replica's whole state (hash maps print in their own order).
impl<S> std::fmt::Debug for Replica<S>
where
    S: StateMachine + std::fmt::Debug,
    S::Output: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("cfg", &self.cfg)
            .field("now", &self.now)
            .field("rng", &self.rng)
            .field("next_lsn", &self.next_lsn)
            .field("durable", &self.durable)
            .field("held", &self.held)
            .field("promised", &self.promised)
            .field("lease_holder", &self.lease_holder)
            .field("lease_ballot", &self.lease_ballot)
            .field("lease_until", &self.lease_until)
            .field("log", &self.log)
            .field("commit", &self.commit)
            .field("commit_persisted", &self.commit_persisted)
            .field("applied", &self.applied)
            .field("known_commit", &self.known_commit)
            .field("catchup_sent_at", &self.catchup_sent_at)
            .field("sm", &self.sm)
            .field("sessions", &self.sessions)
            .field("sessions_expired_before", &self.sessions_expired_before)
            .field("session_marks", &self.session_marks)
            .field("snapshot", &self.snapshot)
            .field("snapshot_pending", &self.snapshot_pending)
            .field("checkpoint_lsn", &self.checkpoint_lsn)
            .field("incoming", &self.incoming)
            .field("installed_unsaved", &self.installed_unsaved)
            .field("transfers", &self.transfers)
            .field("election", &self.election)
            .field("leader", &self.leader)
            .field("abandoned", &self.abandoned)
            .field("own_ballot", &self.own_ballot)
            .field("first_lsn", &self.first_lsn)
            .field("rejoin", &self.rejoin)
            .field("leader_hint", &self.leader_hint)
            .field("forward", &self.forward)
            .field("follower_reads", &self.follower_reads)
            .field("local", &self.local)
            .field("configs", &self.configs)
            .field("view", &self.view)
            .field("progress", &self.progress)
            .field("transfer", &self.transfer)
            .field("takeover", &self.takeover)
            .field("ping_round", &self.ping_round)
            .field("loopback", &self.loopback)
            .field("out", &self.out)
            .finish()
    }
}

impl<S: StateMachine> Replica<S> {
    /// A fresh replica with empty storage.
    pub fn new(cfg: Config, sm: S) -> Result<Replica<S>, ConfigError> {
        cfg.validate()?;
        let round_ticks = cfg.election_ticks;
        let base = Membership {
            voters: cfg.members.clone(),
            learners: cfg.learners.clone(),
            q1: cfg.quorum.phase1(),
            q2: cfg.quorum.phase2(),
        };
        let alpha = cfg.plant().alpha(cfg.max_inflight_slots as Slot);
        let mut r = Replica {
            configs: Configs::new(base.clone(), alpha),
            view: vec![base],
            progress: HashMap::new(),
            transfer: None,
            takeover: None,
            rng: fastrand::Rng::with_seed(cfg.seed),
            election: Election::new(cfg.id, cfg.priority, 0, round_ticks, Joint::default()),
            now: 0,
            next_lsn: 1,
            durable: 0,
            held: VecDeque::new(),
            promised: Ballot::ZERO,
            lease_holder: 0,
            lease_ballot: Ballot::ZERO,
            lease_until: 0,
            log: Log::default(),
            commit: 0,
            commit_persisted: 0,
            applied: 0,
            known_commit: 0,
            catchup_sent_at: None,
            sm,
            sessions: HashMap::new(),
            sessions_expired_before: 0,
            session_marks: VecDeque::new(),
            snapshot: None,
            snapshot_pending: None,
            checkpoint_lsn: None,
            incoming: None,
            installed_unsaved: None,
            transfers: HashMap::new(),
            leader: None,
            abandoned: Ballot::ZERO,
            own_ballot: Ballot::ZERO,
            first_lsn: 1,
            rejoin: None,
            leader_hint: None,
            forward: Vec::new(),
            follower_reads: Vec::new(),
            local: HashMap::new(),
            ping_round: 0,
            loopback: VecDeque::new(),
            out: Output::default(),
            cfg,
        };
        r.election = Election::new(r.cfg.id, r.cfg.priority, 1, round_ticks, r.election_groups());
        r.configure_election();
        Ok(r)
    }

    /// A member that lost its disk (or whose data directory was wiped):
    /// it must not vote with amnesia, since it may have promised or accepted
    /// anything before. It starts as a non-voting learner and becomes an
    /// acceptor again once it has caught up with the log, as of the first
    /// commit index it hears from a leader (Paxos Made Live, section 5.1).
    pub fn rejoin(cfg: Config, sm: S) -> Result<Replica<S>, ConfigError> {
        let mut r = Replica::new(cfg, sm)?;
        r.rejoin = Some(Rejoin::default());
        r.election.set_voter(false);
        // A lease we granted before losing the disk may still be running.
        r.lease_until = r.cfg.lease_ticks;
        // Durable before anything else: a crash mid-rejoin must not bring
        // this replica back as a voter.
        r.persist(Record::Rejoining);
        Ok(r)
    }

    /// Whether this replica is a rejoining, non-voting learner.
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }

    /// Rebuild a replica from its latest stored snapshot (if any) and its
    /// durable records (in order, consecutive), applying the chosen prefix to
    /// `sm`, which must be the initial state.
    ///
    /// A restarted acceptor may have granted a lease before it crashed, so it
    /// refuses every Prepare for one lease period after recovery.
    pub fn recover(
        cfg: Config,
        sm: S,
        snapshot: Option<Snapshot>,
        records: impl IntoIterator<Item = (Lsn, Record)>,
    ) -> Result<Replica<S>, RecoverError> {
        let mut r = Replica::new(cfg, sm)?;
        let snapshot_slot = snapshot.as_ref().map_or(0, |s| s.slot);
        if let Some(snap) = snapshot {
            r.restore_snapshot(snap.slot, &snap.data)?;
            r.log.compact(snap.slot);
            r.commit = snap.slot;
            r.applied = snap.slot;
            r.known_commit = snap.slot;
            r.snapshot = Some(snap);
        }
        let mut prev: Option<Lsn> = None;
        let mut seen_checkpoint = false;
        for (lsn, record) in records {
            match prev {
                Some(p) if lsn != p + 1 => return Err(RecoverError::Gap { lsn, prev: p }),
                Some(_) => {}
                None => r.first_lsn = lsn,
            }
            if let Record::Checkpoint { snapshot_slot: cp, .. } = &record {
                // With the head of the log deleted, the first checkpoint must
                // go with a snapshot we have, or the slots between are lost.
                if !seen_checkpoint && r.first_lsn > 1 && *cp > snapshot_slot {
                    return Err(RecoverError::CompactedPastSnapshot { checkpoint: *cp, snapshot: snapshot_slot });
                }
                seen_checkpoint = true;
            }
            prev = Some(lsn);
            r.replay(record);
        }
        if r.first_lsn > 1 && !seen_checkpoint {
            return Err(RecoverError::NoCheckpoint(r.first_lsn));
        }
        let last = prev.unwrap_or(0);
        r.next_lsn = last + 1;
        r.durable = last;
        r.commit_persisted = r.commit;
        // Bid only with ballots above every one this node may have used.
        // (Saturating: a log written before rounds were bounded may hold a
        // forged promise near `u64::MAX`; such a node can no longer bid.)
        let start_round = r.promised.round.max(r.own_ballot.round).saturating_add(1);
        r.election = Election::new(r.cfg.id, r.cfg.priority, start_round, r.cfg.election_ticks, r.election_groups());
        r.lease_until = r.cfg.lease_ticks;
        r.apply_chosen();
        r.view.clear();
        r.refresh_view();
        r.configure_election();
        r.out = Output::default();
        Ok(r)
    }

    fn replay(&mut self, record: Record) {
        use crate::log::Entry;
        match record {
            Record::Promised(b) => self.promised = self.promised.max(b),
            Record::Accepted { ballot, first_slot, values } => {
                self.promised = self.promised.max(ballot);
                for (i, value) in values.into_iter().enumerate() {
                    self.log.set(first_slot + i as Slot, Entry { ballot, value, chosen: false });
                }
            }
            Record::Chosen { first_slot, values } => {
                for (i, value) in values.into_iter().enumerate() {
                    let slot = first_slot + i as Slot;
                    self.log.set(slot, Entry { ballot: Ballot::ZERO, value, chosen: true });
                    self.log.mark_chosen(slot);
                }
            }
            Record::Ballot(b) => self.own_ballot = self.own_ballot.max(b),
            Record::Rejoining => self.rejoin = Some(Rejoin::default()),
            Record::Rejoined => self.rejoin = None,
            Record::Checkpoint { snapshot_slot: _, promised, own_ballot, commit, entries } => {
                self.promised = self.promised.max(promised);
                self.own_ballot = self.own_ballot.max(own_ballot);
                for e in entries {
                    let chosen = e.chosen;
                    self.log.set(e.slot, Entry { ballot: e.ballot, value: e.value, chosen });
                    if chosen {
                        self.log.mark_chosen(e.slot);
                    }
                }
                for s in self.commit + 1..=commit {
                    if !self.log.mark_chosen(s) {
                        break;
                    }
                    self.commit = s;
                }
            }
            Record::Commit(c) => {
                // The values up to `c` are in earlier records (or the
                // snapshot); stop at any hole rather than believe a gap.
                for s in self.commit + 1..=c {
                    if !self.log.mark_chosen(s) {
                        break;
                    }
                    self.commit = s;
                }
            }
        }
        self.known_commit = self.known_commit.max(self.commit);
    }

    /// Feed one input. Call [`Replica::output`] afterwards (after one input
    /// or many) to collect what to do.
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Message { from, msg } => {
                if self.knows(from) {
                    match self.refusal(from, &msg) {
                        None => self.on_message(from, msg),
                        Some(reason) => self.out.refused.push(Refused { from, kind: msg.kind(), reason }),
                    }
                }
            }
            Input::Reconfigure { id, change } => {
                let result = self.reconfigure(id, change);
                if let Err(e) = result {
                    self.out.reconfigs.push(ReconfigResponse { id, result: Err(e) });
                }
            }
            Input::TransferLeadership { id, to } => self.start_transfer(id, to),
            Input::Propose(cmd) => self.on_propose(cmd),
            Input::Read { id, query } => self.on_read(id, query),
            Input::Tick => self.on_tick(),
            Input::Durable(lsn) => self.on_durable(lsn),
            Input::SnapshotSaved(slot) => self.on_snapshot_saved(slot),
            Input::TakeSnapshot => self.take_snapshot(),
        }
        self.drain_loopback();
    }

    /// Everything to do since the last call. Proposals received since then
    /// are packed into slots here, so feeding many inputs before calling this
    /// batches them.
    pub fn output(&mut self) -> Output<S::Output> {
        self.flush();
        self.drain_loopback();
        std::mem::take(&mut self.out)
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        if let Message::Accept { ballot, .. } | Message::Heartbeat { ballot, .. } | Message::Commit { ballot, .. } =
            &msg
        {
            self.transfer_observe(from, *ballot);
        }
        match msg {
            Message::Ping { round } => {
                let pong = self.election.pong(round, self.now);
                self.send(from, Message::Pong(pong));
            }
            Message::Pong(pong) => {
                if pong.from == from {
                    self.election.on_pong(pong, self.now)
                }
            }
            Message::Prepare { ballot, from_slot, handoff } => self.on_prepare(from, ballot, from_slot, handoff),
            Message::Promise { ballot, from_slot, entries, compacted } => {
                self.on_promise(from, ballot, from_slot, entries, compacted)
            }
            Message::Accept { ballot, first_slot, values, commit } => {
                self.on_accept(from, ballot, first_slot, values, commit)
            }
            Message::Accepted { ballot, first_slot, last_slot } => {
                self.on_accepted(from, ballot, first_slot, last_slot)
            }
            Message::Nack { ballot, promised } => self.on_nack(ballot, promised),
            Message::Commit { ballot, commit } => self.on_commit(from, ballot, commit),
            Message::Heartbeat { ballot, commit, seq, last_slot } => {
                self.on_heartbeat(from, ballot, commit, seq, last_slot)
            }
            Message::HeartbeatAck { ballot, seq, lease } => self.on_heartbeat_ack(from, ballot, seq, lease),
            Message::CatchUp { from_slot } => self.on_catch_up(from, from_slot),
            Message::Chosen { first_slot, values, commit } => self.on_chosen(first_slot, values, commit),
            Message::SnapshotRequest { slot, offset } => self.on_snapshot_request(from, slot, offset),
            Message::SnapshotChunk { slot, offset, total, data } => {
                self.on_snapshot_chunk(from, slot, offset, total, data)
            }
            Message::ReadIndex { id } => self.on_read_index(from, id),
            Message::ReadIndexReply { id, index } => self.on_read_index_reply(id, index),
            Message::RejoinQuery => self.on_rejoin_query(from),
            Message::RejoinReply { promised, last_slot } => self.on_rejoin_reply(from, promised, last_slot),
            Message::Forward { commands } => {
                for cmd in commands {
                    if self.queued() >= self.cfg.max_pending {
                        // Bounded like our own clients' proposals: the
                        // forwarding member's clients retry.
                        break;
                    }
                    self.enqueue(cmd);
                }
            }
            Message::Progress { commit } => {
                let p = self.progress.entry(from).or_default();
                *p = (*p).max(commit);
            }
            Message::TimeoutNow { ballot, commit } => self.on_timeout_now(from, ballot, commit),
        }
    }

    fn on_tick(&mut self) {
        self.now += 1;
        if self.now.is_multiple_of(self.cfg.heartbeat_ticks) {
            self.ping_round += 1;
            let round = self.ping_round;
            for to in self.view_members() {
                if to != self.cfg.id {
                    self.send(to, Message::Ping { round });
                }
            }
        }
        if self.election.tick() {
            let jitter =
                if self.cfg.election_jitter_ticks > 0 { self.rng.u64(0..=self.cfg.election_jitter_ticks) } else { 0 };
            self.election.end_round(self.now, self.cfg.election_ticks + jitter);
            if self.leader.is_some() && !self.election.connected(self.now) && !self.holds_lease() {
                // Cut off from a quorum: we cannot choose anything, and
                // clients should go elsewhere. (While a lease still holds we
                // may answer reads, so we keep it until it runs out.)
                self.step_down(Ballot::ZERO);
            }
        }
        self.sync_role();
        self.expire_sessions_tick();
        self.leader_tick();
        self.transfer_tick();
        self.learner_tick();
    }

    fn on_durable(&mut self, lsn: Lsn) {
        if lsn <= self.durable {
            return;
        }
        debug_assert!(lsn < self.next_lsn, "durable({lsn}) reported for a record never emitted");
        self.durable = lsn.min(self.next_lsn - 1);
        while let Some((need, _, _)) = self.held.front() {
            if *need > self.durable {
                break;
            }
            let (_, to, msg) = self.held.pop_front().expect("front exists");
            self.dispatch(to, msg);
        }
        self.checkpoint_durable();
    }

    /// Follow the election: start phase 1 when elected with a new ballot,
    /// step down when someone else leads.
    pub(crate) fn sync_role(&mut self) {
        let elected = self.election.leader();
        if self.election.is_leader() {
            let leading = self.leader.as_ref().map(|l| l.ballot);
            if leading != Some(elected) && elected != self.abandoned {
                self.start_phase1(elected);
            }
        } else if elected != Ballot::ZERO {
            if self.leader.as_ref().is_some_and(|l| l.ballot < elected) {
                self.step_down(elected);
            }
            if self.leader.is_none() {
                self.set_leader_hint(Some(elected.node));
            }
        }
    }

    pub(crate) fn set_leader_hint(&mut self, hint: Option<NodeId>) {
        let changed = hint != self.leader_hint;
        self.leader_hint = hint;
        let Some(l) = hint.filter(|&l| l != self.cfg.id) else { return };
        let now = self.now;
        for r in self.follower_reads.iter_mut().filter(|r| !r.asked) {
            r.asked = true;
            r.since = now;
            let id = r.id;
            self.out.send.push((l, Message::ReadIndex { id }));
        }
        let mut commands = std::mem::take(&mut self.forward);
        if changed {
            // Proposals passed to the old leader may have died with it: pass
            // every unanswered one to the new leader (applied at most once
            // whichever copy is chosen).
            let again = self.unanswered_except(&commands);
            commands.extend(again);
        }
        if !commands.is_empty() {
            self.send_forward(l, commands);
        }
    }

    /// Proposals made here and not yet answered, oldest first, except those
    /// already in `queued`.
    pub(crate) fn unanswered_except<'a>(&self, queued: impl IntoIterator<Item = &'a Command>) -> Vec<Command> {
        let queued: std::collections::HashSet<CommandId> = queued.into_iter().map(|c| c.id).collect();
        let mut again: Vec<&(u64, Command)> = self.local.values().filter(|(_, c)| !queued.contains(&c.id)).collect();
        again.sort_by_key(|(since, c)| (*since, c.id));
        again.into_iter().map(|(_, c)| c.clone()).collect()
    }

    fn on_propose(&mut self, cmd: Command) {
        if self.local.len() + self.forward.len() >= self.cfg.max_pending {
            self.out.responses.push(Response { id: cmd.id, result: Err(ClientError::Busy) });
            return;
        }
        self.local.insert(cmd.id, (self.now, cmd.clone()));
        self.enqueue(cmd);
    }

    /// Commands waiting here for a slot or for a leader.
    fn queued(&self) -> usize {
        self.forward.len() + self.leader.as_ref().map_or(0, |l| l.pending_len())
    }

    /// Queue a command at the leader, or pass it on towards one.
    fn enqueue(&mut self, cmd: Command) {
        if let Some(leader) = self.leader.as_mut() {
            leader.enqueue(cmd);
        } else {
            match self.leader_hint {
                Some(l) if l != self.cfg.id => self.send(l, Message::Forward { commands: vec![cmd] }),
                _ => self.forward.push(cmd),
            }
        }
    }

    // ---- plumbing -------------------------------------------------------

    /// Index in the initial configuration's voters (rejoin bookkeeping).
    pub(crate) fn member_index(&self, node: NodeId) -> Option<usize> {
        self.cfg.members.iter().position(|&m| m == node)
    }

    /// Whether `node` is listed in a configuration this replica knows of
    /// (chosen, or proposed in a slot it holds): messages from anyone else
    /// are ignored.
    pub(crate) fn knows(&self, node: NodeId) -> bool {
        self.configs.knows(node)
            || self
                .log
                .iter_from(self.commit + 1)
                .any(|(_, e)| matches!(&e.value, Value::Reconfigure(m) if m.contains(node)))
    }

    /// How this replica counts `m`'s quorums: every count in the core goes
    /// through here (or [`Replica::joint`]); a planted bug may wrap it.
    pub(crate) fn quorum<'a>(&self, m: &'a Membership) -> Quorum<'a> {
        self.cfg.plant().quorum(m)
    }

    /// The joint quorum of `configs` (every configuration a change spans).
    pub(crate) fn joint<'a>(&self, configs: &'a [Membership]) -> Joint<'a> {
        Joint::new(configs.iter().map(|m| self.quorum(m)).collect())
    }

    /// The configurations in force and pending, as election counts them.
    fn election_groups(&self) -> Joint<'static> {
        Joint::new(self.view.iter().map(|m| self.quorum(m).into_owned()).collect())
    }

    /// Everyone in the configurations in force and pending, voters first,
    /// without duplicates.
    pub(crate) fn view_members(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for m in &self.view {
            for id in m.members() {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Recompute the configurations in force at `commit + 1` and pending,
    /// after the commit index moved or a change was learned; when they
    /// changed, retune election and step down if no longer a voter.
    pub(crate) fn refresh_view(&mut self) {
        if self.configs.chosen.is_empty() && self.view.len() == 1 && self.view[0] == self.configs.base {
            return;
        }
        let from = self.commit + 1;
        // Keep what a phase 1 in progress still needs (it may have started
        // before the commit index moved on).
        self.configs.trim(from.min(self.preparing_from().unwrap_or(from)));
        let mut view = vec![self.configs.governing(from).clone()];
        view.extend(self.configs.pending_at(from).map(|(_, m)| m.clone()));
        if view == self.view {
            return;
        }
        self.view = view;
        self.configure_election();
        if !self.view[0].is_voter(self.cfg.id) && self.leader.is_some() {
            // Removed (or demoted): the configuration in force no longer
            // counts us, so we may not lead its slots' successors.
            self.step_down(Ballot::ZERO);
        }
    }

    /// Tell election whose replies make this node connected, and whether
    /// it may stand.
    pub(crate) fn configure_election(&mut self) {
        let voter = self.rejoin.is_none() && self.view.first().is_some_and(|m| m.is_voter(self.cfg.id));
        self.election.set_voter(voter);
        self.election.set_groups(self.election_groups());
    }

    /// The initial configuration, as `Config` gives it.
    pub(crate) fn initial_membership(&self) -> Membership {
        Membership {
            voters: self.cfg.members.clone(),
            learners: self.cfg.learners.clone(),
            q1: self.cfg.quorum.phase1(),
            q2: self.cfg.quorum.phase2(),
        }
    }

    /// Whether the membership differs from the initial one, or did once.
    pub(crate) fn membership_changed(&self) -> bool {
        !self.configs.chosen.is_empty() || self.configs.base != self.initial_membership()
    }

    /// The configuration in force at the first slot not known chosen.
    pub fn membership(&self) -> &Membership {
        self.configs.governing(self.commit + 1)
    }

    /// A configuration chosen but not yet in force, with the slot it was
    /// chosen in.
    pub fn pending_membership(&self) -> Option<(Slot, &Membership)> {
        self.configs.pending_at(self.commit + 1).next()
    }

    /// α of the reconfiguration rule (the pipeline window).
    pub fn alpha(&self) -> Slot {
        self.configs.alpha
    }

    /// Whether this replica is listed as a voter in the configuration in
    /// force, or in one pending.
    pub fn is_member(&self) -> bool {
        self.view.iter().any(|m| m.contains(self.cfg.id))
    }

    /// Append a record for the runtime to make durable; returns its number.
    pub(crate) fn persist(&mut self, record: Record) -> Lsn {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.out.persist.push((lsn, record));
        lsn
    }

    /// Send a message that depends on nothing unpersisted.
    pub(crate) fn send(&mut self, to: NodeId, msg: Message) {
        self.dispatch(to, msg);
    }

    /// Send a reply that depends on every record persisted so far: it is
    /// held until they are durable (unless the planted bug says otherwise).
    pub(crate) fn send_after_persist(&mut self, to: NodeId, msg: Message) {
        let need = self.next_lsn - 1;
        if need <= self.durable || self.cfg.plant().skip_persist() {
            self.dispatch(to, msg);
        } else {
            self.held.push_back((need, to, msg));
        }
    }

    fn dispatch(&mut self, to: NodeId, msg: Message) {
        if to == self.cfg.id {
            self.loopback.push_back(msg);
        } else {
            self.out.send.push((to, msg));
        }
    }

    fn drain_loopback(&mut self) {
        while let Some(msg) = self.loopback.pop_front() {
            let me = self.cfg.id;
            self.on_message(me, msg);
        }
    }

    // ---- inspection (for the runtime, tests and the simulator) ----------

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The highest ballot this acceptor promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The log (accepted and chosen entries).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Every slot up to this one is chosen and known here.
    pub fn commit_index(&self) -> Slot {
        self.commit
    }

    /// Every slot up to this one is applied to the state machine.
    pub fn applied_index(&self) -> Slot {
        self.applied
    }

    /// The duplicate-detection table, in client order: a function of the
    /// applied prefix of the log alone, so every replica that applied the
    /// same slots reports the same table.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(&client, s)| SessionInfo { client, seq: s.seq, last_slot: s.last_slot })
            .collect();
        out.sort_unstable_by_key(|s| s.client);
        out
    }

    /// The highest slot below which client sessions were expired (a
    /// command made before it, from a client without a session, is refused
    /// with [`ClientError::SessionExpired`]). The same on every replica
    /// after the same slot.
    pub fn sessions_expired_before(&self) -> Slot {
        self.sessions_expired_before
    }

    /// The state machine (for serializable reads, served locally).
    pub fn state_machine(&self) -> &S {
        &self.sm
    }

    /// Whether this replica is the leader and has finished phase 1.
    pub fn is_leader(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| l.is_active())
    }

    /// The ballot this replica leads with, while it leads.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        self.leader.as_ref().map(|l| l.ballot)
    }

    /// The replica this one believes leads, if any.
    pub fn leader_hint(&self) -> Option<NodeId> {
        if self.is_leader() {
            Some(self.cfg.id)
        } else {
            self.leader_hint
        }
    }

    /// The last record reported durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.durable
    }

    /// This replica's logical clock.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Whether this replica hears a quorum of the members now (fresh
    /// replies to its pings from enough of them, itself included). A
    /// follower that does not cannot tell whether the leader it last
    /// heard of still leads: etcd's followers in that state have no
    /// leader either (they stand for election).
    pub fn hears_quorum(&self) -> bool {
        self.election.connected(self.now)
    }

    /// Slots this leader has proposed and not yet seen chosen (0 when not
    /// leading).
    pub fn slots_in_flight(&self) -> usize {
        self.leader.as_ref().map_or(0, |l| l.slots_in_flight())
    }

    /// Whether a leader lease currently lets this replica answer reads
    /// without a round trip.
    pub fn holds_lease(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| l.lease_valid(self.now, self.commit))
    }
}
