//! One replica of Multi-Paxos: the router between its roles.
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
//! # The router
//!
//! [`Replica`] holds one value per role and routes between them; the rules
//! live with the roles, and no role module knows this one. Each role owns
//! its state: [`Acceptor`] (promises, leases; `acceptor.rs`), [`Learner`]
//! (the chosen prefix and the state machine; `learner.rs`), [`Proposer`]
//! (the leadership; its rules in `proposer.rs`, at work as [`Leading`] in
//! `leader.rs`, its leases and reads in `reads.rs`, its part of a
//! leadership handover in [`crate::handover`]), [`Snapshots`] (stored,
//! sent and received; `snapshot.rs`), election ([`crate::election`]),
//! membership ([`Members`], `reconfig.rs`), rejoining after disk loss
//! ([`Rejoin`], `rejoin.rs`) and clients' requests ([`Clients`],
//! `clients.rs`). A role is called with the
//! little it may read or write, and everything it sends or persists goes
//! through a [`Net`] (`outbox.rs`), which keeps the order the runtime must
//! follow. What one role needs another to do comes back as an event the
//! router carries out, in order: the acceptor's [`AcceptorEffect`]s, the
//! learner's `Learned`, a slot the leader saw chosen (the learner
//! advances), a promiser compacted past the leader
//! ([`crate::leader::Behind`]: the learner catches up), the lease a
//! leader's own acceptor grants it, a snapshot received (installed here).
//!
//! The router's own rules are only those that span roles: advancing the
//! commit index (every role waiting on it looks again), installing a
//! snapshot, a rejoining member's return to voting, taking over when a
//! leader hands over (`TimeoutNow`).

use crate::acceptor::{Acceptor, Effect as AcceptorEffect, Env as AcceptorEnv};
use crate::admission;
use crate::ballot::Ballot;
use crate::clients::Clients;
use crate::command::{Command, Value};
use crate::config::{Config, ConfigError};
use crate::election::Election;
use crate::handover::Handover;
use crate::io::{ClientError, Input, Output, ReconfigResponse, RecoverError, Refused, Response, SessionInfo, Snapshot};
use crate::leader::Leading;
use crate::learner::{CatchUpReply, Learned, Learner};
use crate::log::Log;
use crate::message::{Message, PromisedEntry};
use crate::outbox::{Clock, Net, Outbox};
use crate::proposer::Proposer;
use crate::quorum::Joint;
use crate::reconfig::{Configs, Members, Membership};
use crate::record::Record;
use crate::recover::{self, Durable};
use crate::rejoin::{self, Rejoin};
use crate::snapshot::{self, Received, ReceiverEnv, Snapshots};
use crate::state_machine::{SnapshotError, StateMachine};
use crate::types::{Lsn, NodeId, Slot};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// One replica: proposer (leader), acceptor and learner.
///
/// Cloning a replica forks it: both copies go on from the same state and,
/// fed the same inputs, behave alike (a model checker branches on this).
#[derive(Clone)]
pub struct Replica<S: StateMachine> {
    /// The configuration, validated.
    cfg: Config,
    /// The logical clock and the seeded randomness.
    clock: Clock,
    /// Record numbers, and replies held until their records are durable.
    outbox: Outbox,
    /// Acceptor: what it promised and the lease it granted.
    acceptor: Acceptor,
    /// Accepted and chosen values, shared by acceptor and learner.
    log: Log,
    /// Learner: the chosen prefix, applied to the state machine.
    learner: Learner<S>,
    /// Snapshots stored, being stored, sent and received.
    snapshots: Snapshots,
    /// Leader election (ballot leader election, after OmniPaxos).
    election: Election,
    /// Proposer: the leadership held, and the ballots not to reuse.
    proposer: Proposer,
    /// Set while this replica rejoins after losing its disk.
    rejoin: Option<Rejoin>,
    /// Clients' requests made here and not yet answered.
    clients: Clients,
    /// The configurations known, and those in force.
    members: Members,
    /// Leadership handover: one asked for here and not yet answered.
    handover: Option<Handover>,
    /// What to do, collected until [`Replica::output`].
    out: Output<S::Output>,
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
            .field("clock", &self.clock)
            .field("outbox", &self.outbox)
            .field("acceptor", &self.acceptor)
            .field("log", &self.log)
            .field("learner", &self.learner)
            .field("snapshots", &self.snapshots)
            .field("election", &self.election)
            .field("proposer", &self.proposer)
            .field("rejoin", &self.rejoin)
            .field("clients", &self.clients)
            .field("members", &self.members)
            .field("handover", &self.handover)
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
            members: Members { configs: Configs::new(base.clone(), alpha), view: vec![base], progress: HashMap::new() },
            handover: None,
            proposer: Proposer::default(),
            clock: Clock { now: 0, rng: fastrand::Rng::with_seed(cfg.seed) },
            election: Election::new(cfg.id, cfg.priority, 0, round_ticks, Joint::default()),
            outbox: Outbox { next_lsn: 1, durable: 0, first_lsn: 1, held: VecDeque::new(), loopback: VecDeque::new() },
            acceptor: Acceptor::default(),
            log: Log::default(),
            learner: Learner::new(sm),
            snapshots: Snapshots::default(),
            rejoin: None,
            clients: Clients::default(),
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
        r.acceptor.lease_until = r.cfg.lease_ticks;
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
            r.learner.commit = snap.slot;
            r.learner.applied = snap.slot;
            r.learner.known_commit = snap.slot;
            r.snapshots.latest = Some(snap);
        }
        let mut durable = Durable {
            promised: &mut r.acceptor.promised,
            own_ballot: &mut r.proposer.own_ballot,
            rejoin: &mut r.rejoin,
            log: &mut r.log,
            commit: &mut r.learner.commit,
            known_commit: &mut r.learner.known_commit,
        };
        let (first, last) = recover::replay(&mut durable, snapshot_slot, records)?;
        r.outbox.first_lsn = first;
        r.outbox.next_lsn = last + 1;
        r.outbox.durable = last;
        r.learner.commit_persisted = r.learner.commit;
        // Bid only with ballots above every one this node may have used.
        // (Saturating: a log written before rounds were bounded may hold a
        // forged promise near `u64::MAX`; such a node can no longer bid.)
        let start_round = r.acceptor.promised.round.max(r.proposer.own_ballot.round).saturating_add(1);
        r.election = Election::new(r.cfg.id, r.cfg.priority, start_round, r.cfg.election_ticks, r.election_groups());
        r.acceptor.lease_until = r.cfg.lease_ticks;
        r.apply_chosen();
        r.members.view.clear();
        r.refresh_view();
        r.configure_election();
        r.out = Output::default();
        Ok(r)
    }

    /// The highest ballot round this replica has seen: promised, led
    /// with, bid with or followed (what admission measures ballots by).
    fn highest_round(&self) -> u64 {
        let rejoin = self.rejoin.as_ref().map_or(0, |r| r.ballot.round);
        self.acceptor.promised.round.max(self.proposer.own_ballot.round).max(self.election.highest_round()).max(rejoin)
    }

    /// Feed one input. Call [`Replica::output`] afterwards (after one input
    /// or many) to collect what to do.
    pub fn step(&mut self, input: Input) {
        match input {
            Input::Message { from, msg } => {
                if self.knows(from) {
                    match admission::refusal(from, &msg, self.highest_round(), self.cfg.max_snapshot_bytes) {
                        None => self.on_message(from, msg),
                        Some(reason) => self.out.refused.push(Refused { from, kind: msg.kind(), reason }),
                    }
                }
            }
            Input::Reconfigure { id, change } => {
                let result = self.lead(|l| l.reconfigure(id, change));
                if let Err(e) = result {
                    self.out.reconfigs.push(ReconfigResponse { id, result: Err(e) });
                }
            }
            Input::TransferLeadership { id, to } => self.lead(|l| l.start_handover(id, to)),
            Input::Propose(cmd) => self.on_propose(cmd),
            Input::Read { id, query } => self.lead(|l| l.on_read(id, query)),
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
            self.lead(|l| l.handover_observe(from, *ballot));
        }
        match msg {
            Message::Ping { round } => {
                let pong = self.election.pong(round, self.clock.now);
                self.send(from, Message::Pong(pong));
            }
            Message::Pong(pong) => {
                if pong.from == from {
                    self.election.on_pong(pong, self.clock.now)
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
            Message::Nack { ballot, promised } => self.lead(|l| l.on_nack(ballot, promised)),
            Message::Commit { ballot, commit } => self.on_commit(from, ballot, commit),
            Message::Heartbeat { ballot, commit, seq, last_slot: _ } => self.on_heartbeat(from, ballot, commit, seq),
            Message::HeartbeatAck { ballot, seq, lease } => self.lead(|l| l.on_heartbeat_ack(from, ballot, seq, lease)),
            Message::CatchUp { from_slot } => self.on_catch_up(from, from_slot),
            Message::Chosen { first_slot, values, commit } => self.on_chosen(first_slot, values, commit),
            Message::SnapshotRequest { slot, offset } => {
                let chunk_now = (self.cfg.snapshot_chunk, self.clock.now);
                let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
                self.snapshots.on_request(&mut net, chunk_now, from, slot, offset);
            }
            Message::SnapshotChunk { slot, offset, total, data } => {
                let env = self.receiver_env();
                let received = self.snapshots.receiver.on_chunk(env, from, (slot, offset, total), data);
                self.route_received(received);
            }
            Message::ReadIndex { id } => self.lead(|l| l.on_read_index(from, id)),
            Message::ReadIndexReply { id, index } => {
                let (sm, applied) = (&self.learner.sm, self.learner.applied);
                self.clients.on_read_index_reply(&mut self.out.reads, self.cfg.id, (id, index), sm, applied);
            }
            Message::RejoinQuery => {
                if self.rejoin.is_none() {
                    let (promised, last_slot) = (self.acceptor.promised, self.log.last_slot());
                    self.send(from, Message::RejoinReply { promised, last_slot });
                }
            }
            Message::RejoinReply { promised, last_slot } => {
                let Some(index) = self.member_index(from) else { return };
                let Some(r) = self.rejoin.as_mut() else { return };
                r.reply(index, promised, last_slot);
                self.finish_rejoin_if_caught_up();
            }
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
                let p = self.members.progress.entry(from).or_default();
                *p = (*p).max(commit);
            }
            Message::TimeoutNow { ballot, commit } => self.on_timeout_now(from, ballot, commit),
        }
    }

    // ---- routing to and from the acceptor ------------------------------

    /// Phase 1a arrives.
    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: Slot, handoff: Option<Ballot>) {
        if self.rejoin.is_some() {
            // Amnesia: we may have promised anything before losing our disk.
            return;
        }
        let env = AcceptorEnv { cfg: &self.cfg, now: self.clock.now, commit: self.learner.commit };
        let fx = self.acceptor.on_prepare(&env, &self.log, from, (ballot, from_slot, handoff));
        self.route(from, ballot, 0, fx);
    }

    /// Phase 2a arrives.
    fn on_accept(&mut self, from: NodeId, ballot: Ballot, first_slot: Slot, values: Vec<Value>, commit: Slot) {
        self.deposed_by(ballot);
        if self.rejoin.is_some() {
            self.observe_leader(ballot);
            self.learn_commit(from, ballot, commit);
            return;
        }
        let fx = self.acceptor.on_accept(&self.cfg, &mut self.log, from, ballot, first_slot, values);
        self.route(from, ballot, commit, fx);
    }

    /// A leader's heartbeat arrives: the acceptor acknowledges it (and
    /// grants a lease, if election follows that leader), the learner learns
    /// its commit index, and a learner member reports its progress.
    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: Slot, seq: u64) {
        self.deposed_by(ballot);
        if self.rejoin.is_some() {
            self.observe_leader(ballot);
            self.learn_commit(from, ballot, commit);
            return;
        }
        // Grant a lease only to the leader our election follows, and not
        // while we bid against it, so that once the cluster moves on the
        // old leader's lease runs out.
        let lease = self.cfg.lease_ticks > 0 && self.election.leader().node == ballot.node && !self.election.bidding();
        let env = AcceptorEnv { cfg: &self.cfg, now: self.clock.now, commit: self.learner.commit };
        let fx = self.acceptor.on_heartbeat(&env, from, ballot, seq, lease);
        let learned = self.route(from, ballot, commit, fx);
        if learned && !self.members.view.first().is_some_and(|m| m.is_voter(self.cfg.id)) {
            // A learner: tell the leader how far it got, so that it knows
            // when we may be promoted.
            let commit = self.learner.commit;
            self.send(from, Message::Progress { commit });
        }
    }

    /// A commit index from a leader.
    fn on_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        self.deposed_by(ballot);
        if self.acceptor.admits_commit(ballot) {
            self.learn_commit(from, ballot, commit);
        }
    }

    /// Carry out what the acceptor asked for, in order; its `Learn` learns
    /// the commit index `commit` that `from` sent in `ballot`. Whether it
    /// did.
    fn route(&mut self, from: NodeId, ballot: Ballot, commit: Slot, fx: Vec<AcceptorEffect>) -> bool {
        let mut learned = false;
        for effect in fx {
            match effect {
                AcceptorEffect::Promised(b) => self.on_higher_ballot(b),
                AcceptorEffect::Persist(record) => {
                    self.persist(record);
                }
                AcceptorEffect::Send(to, msg) => self.send(to, msg),
                AcceptorEffect::Reply(to, msg) => self.send_after_persist(to, msg),
                AcceptorEffect::Learn => {
                    self.learn_commit(from, ballot, commit);
                    learned = true;
                }
            }
        }
        learned
    }

    /// A message from a leader with a higher ballot than ours: our
    /// leadership is over, whatever our acceptor promised. (A leader that
    /// went on advertising its commit index after learning chosen values
    /// from a newer leader would make its followers mark its own stale
    /// proposals chosen.)
    fn deposed_by(&mut self, ballot: Ballot) {
        if self.proposer.leader.as_ref().is_some_and(|l| l.ballot < ballot) {
            self.step_down(ballot);
        }
    }

    /// Our acceptor promised `ballot`: if we were leading with a lower one,
    /// our leadership is over.
    fn on_higher_ballot(&mut self, ballot: Ballot) {
        if self.proposer.leader.as_ref().is_some_and(|l| l.ballot < ballot) {
            self.step_down(ballot);
        }
        if ballot.node != self.cfg.id {
            self.election.observe_promise(ballot);
            self.set_leader_hint(Some(ballot.node));
        }
    }

    fn on_tick(&mut self) {
        self.clock.now += 1;
        if self.clock.now.is_multiple_of(self.cfg.heartbeat_ticks) {
            let round = self.election.next_ping_round();
            for to in self.view_members() {
                if to != self.cfg.id {
                    self.send(to, Message::Ping { round });
                }
            }
        }
        if self.election.tick() {
            let jitter = if self.cfg.election_jitter_ticks > 0 {
                self.clock.rng.u64(0..=self.cfg.election_jitter_ticks)
            } else {
                0
            };
            self.election.end_round(self.clock.now, self.cfg.election_ticks + jitter);
            if self.proposer.leader.is_some() && !self.election.connected(self.clock.now) && !self.holds_lease() {
                // Cut off from a quorum: we cannot choose anything, and
                // clients should go elsewhere. (While a lease still holds we
                // may answer reads, so we keep it until it runs out.)
                self.step_down(Ballot::ZERO);
            }
        }
        self.sync_role();
        self.expire_sessions_tick();
        self.lead(|l| l.leader_tick());
        self.lead(|l| l.handover_tick());
        self.learner_tick();
    }

    fn on_durable(&mut self, lsn: Lsn) {
        let Some(released) = self.outbox.durable_up_to(lsn) else { return };
        let mut net = self.net();
        for (to, msg) in released {
            net.dispatch(to, msg);
        }
        if let Some(first) = self.snapshots.checkpoint_durable(self.outbox.durable) {
            self.out.truncate_before = Some(first);
        }
    }

    /// Follow the election: start phase 1 when elected with a new ballot,
    /// step down when someone else leads.
    fn sync_role(&mut self) {
        let elected = self.election.leader();
        if self.election.is_leader() {
            let leading = self.proposer.leader.as_ref().map(|l| l.ballot);
            if leading != Some(elected) && elected != self.proposer.abandoned {
                self.start_phase1(elected);
            }
        } else if elected != Ballot::ZERO {
            if self.proposer.leader.as_ref().is_some_and(|l| l.ballot < elected) {
                self.step_down(elected);
            }
            if self.proposer.leader.is_none() {
                self.set_leader_hint(Some(elected.node));
            }
        }
    }

    fn set_leader_hint(&mut self, hint: Option<NodeId>) {
        let (me, now, max) = (self.cfg.id, self.clock.now, self.cfg.max_message_bytes);
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.clients.set_leader_hint(&mut net, me, hint, now, max);
    }

    /// The leader at work, for one call: the proposer with what it may
    /// touch; then its own acceptor records the lease it granted it.
    fn lead<R>(&mut self, f: impl FnOnce(&mut Leading<'_, S>) -> R) -> R {
        let receiving_snapshot = self.receiving_snapshot();
        let mut leading = Leading {
            cfg: &self.cfg,
            now: self.clock.now,
            proposer: &mut self.proposer,
            net: Net::new(&self.cfg, &mut self.outbox, &mut self.out),
            members: &mut self.members,
            clients: &mut self.clients,
            election: &mut self.election,
            promised: self.acceptor.promised,
            own_lease: None,
            log: &mut self.log,
            commit: self.learner.commit,
            applied: self.learner.applied,
            sm: &self.learner.sm,
            handover: &mut self.handover,
            receiving_snapshot,
        };
        let r = f(&mut leading);
        if let Some((ballot, until)) = leading.own_lease {
            self.acceptor.grant_own_lease(self.cfg.id, ballot, until);
        }
        r
    }

    /// `TimeoutNow` from the leader of `ballot`: take over at once, if we
    /// may stand and still follow that ballot.
    fn on_timeout_now(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        if ballot.node != from || from == self.cfg.id {
            return;
        }
        let stale = self.acceptor.promised > ballot
            || self.election.leader() > ballot
            || self.proposer.leader.as_ref().is_some_and(|l| l.ballot > ballot);
        let connected = self.election.connected(self.clock.now);
        if stale || !connected || !self.election.is_voter() || self.rejoin.is_some() {
            return;
        }
        // Our entries in `ballot` are the sender's proposals: learn which
        // are chosen, so phase 1 starts above them.
        self.learn_commit(from, ballot, commit);
        let above = self.acceptor.promised.max(ballot).max(self.proposer.own_ballot);
        let Some(bid) = self.election.take_over(above) else { return };
        self.proposer.takeover = Some((bid, ballot));
        self.sync_role();
    }

    // ---- the learner (see `learner.rs`) ---------------------------------

    /// Learn from a commit index that a leader with `ballot` announced.
    fn learn_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        self.learner.learn(&mut self.log, ballot, commit);
        self.advance_commit();
        if self.learner.behind() && self.learner.catchup_sent_at.is_none() {
            self.request_catch_up(Some(from));
        }
    }

    /// Move the commit index over the chosen prefix and apply it; then
    /// every role that waits on the commit index looks again.
    fn advance_commit(&mut self) {
        self.learner.advance(&self.log);
        self.forget_chosen_inflight();
        self.learner.known_commit = self.learner.known_commit.max(self.learner.commit);
        self.apply_chosen();
        self.refresh_view();
        self.finish_rejoin_if_caught_up();
        self.resume_phase1_if_caught_up();
    }

    /// Apply the chosen prefix, and route what the learner reports: a
    /// configuration chosen to the membership, an answer to the client that
    /// proposed here; then serve the reads the applied state allows.
    fn apply_chosen(&mut self) {
        for learned in self.learner.apply_chosen(&self.log) {
            match learned {
                Learned::Configuration(slot, m) => {
                    self.members.configs.chosen.insert(slot, m);
                }
                Learned::Answer(id, output) => {
                    let local = self.clients.local.remove(&id).is_some();
                    if let (true, Some(result)) = (local, output) {
                        self.out.responses.push(Response { id, result });
                    }
                }
            }
        }
        self.serve_reads();
        self.serve_follower_reads();
    }

    /// Ask for the chosen values we are missing: of `from`, else of the
    /// leader we know of (not while a snapshot is arriving).
    fn request_catch_up(&mut self, from: Option<NodeId>) {
        if self.receiving_snapshot() {
            return;
        }
        let me = self.cfg.id;
        let Some(to) = from.filter(|&n| n != me).or(self.clients.other_leader(me)) else { return };
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.learner.request_catch_up(&mut net, self.clock.now, to);
    }

    /// The learner's timers: retry catch-up; give up on follower reads
    /// never answered; resume a stalled snapshot transfer; ask again while
    /// rejoining; forget proposals nobody will answer.
    fn learner_tick(&mut self) {
        if self.learner.catch_up_due(self.clock.now, self.cfg.retry_ticks) {
            let any = self.random_peer();
            // A leader held back in phase 1 by a compacted promiser is
            // its own leader hint: it asks a peer (a hint naming
            // ourselves used to win here and then be dropped, so a lost
            // catch-up request was never sent again and that leader
            // prepared forever; found by swarm testing, seed 177 on 5
            // nodes).
            let hint = self.clients.other_leader(self.cfg.id);
            self.request_catch_up(hint.or(any));
        }
        self.expire_follower_reads();
        let received = self.snapshots.receiver.tick(self.receiver_env());
        self.route_received(received);
        self.rejoin_tick();
        if self.clock.now.is_multiple_of(self.cfg.election_ticks) {
            let horizon = self.clock.now.saturating_sub(self.cfg.election_ticks * 20);
            self.clients.local.retain(|_, (since, _)| *since >= horizon);
        }
    }

    fn random_peer(&mut self) -> Option<NodeId> {
        let members = self.view_members();
        let n = members.len();
        if n < 2 {
            return None;
        }
        let pick = members[self.clock.rng.usize(0..n)];
        (pick != self.cfg.id).then_some(pick)
    }

    /// Serve a catch-up request from the chosen prefix (or our snapshot).
    fn on_catch_up(&mut self, from: NodeId, from_slot: Slot) {
        if self.proposer.leader.is_some() {
            let p = self.members.progress.entry(from).or_default();
            *p = (*p).max(from_slot.saturating_sub(1));
        }
        let (max_slots, max_bytes) = (self.cfg.max_catchup_slots, self.cfg.max_message_bytes);
        match self.learner.catch_up_reply(&self.log, from_slot, max_slots, max_bytes) {
            CatchUpReply::Nothing => {}
            CatchUpReply::Snapshot => self.send_snapshot_chunk(from, 0),
            CatchUpReply::Chosen(msg) => self.send(from, msg),
        }
    }

    /// Chosen values from a catch-up reply.
    fn on_chosen(&mut self, first_slot: Slot, values: Vec<Value>, commit: Slot) {
        // We ask from our commit index on, and it only grows, so a reply
        // that starts above it is not an answer to us (admission: the
        // range is not empty and does not overflow).
        if first_slot == 0 || first_slot > self.learner.commit + 1 {
            return;
        }
        if self.is_leader() && first_slot + values.len() as Slot > self.learner.commit + 1 {
            // Someone chose values we did not: a newer leader exists. Step
            // down before learning them, so our commit index is never
            // advertised in our (stale) ballot.
            self.step_down(Ballot::ZERO);
        }
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.learner.take_chosen(&mut self.log, &mut net, first_slot, values, commit);
        self.advance_commit();
        self.resume_phase1_if_caught_up();
        if self.learner.behind() {
            self.request_catch_up(None);
        }
    }

    /// Persist the commit index once per output, after the records that
    /// hold the values it covers.
    fn persist_commit(&mut self) {
        if self.snapshots.installed_unsaved.is_some() {
            // The slots the installed snapshot covers are not in our records.
            return;
        }
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.learner.persist_commit(&mut net);
    }

    // ---- snapshots (see `snapshot.rs`) ----------------------------------

    /// Ask for a snapshot if enough has been applied since the last one.
    fn maybe_snapshot(&mut self) {
        if self.snapshots.due(self.cfg.snapshot_every, self.learner.applied) {
            self.take_snapshot();
        }
    }

    /// Ask the runtime to store a snapshot of everything applied, unless one
    /// is pending or the last one already covers it.
    fn take_snapshot(&mut self) {
        let (learner, members, cfg) = (&self.learner, &self.members, &self.cfg);
        let encode = || {
            let configs = snapshot::configs_after(&members.configs, learner.applied);
            snapshot::encode(
                cfg.snapshot_format,
                &learner.session_infos(),
                learner.sessions_expired_before,
                &configs,
                &learner.sm.snapshot(),
            )
        };
        if let Some(snap) = self.snapshots.take(learner.applied, self.rejoin.is_some(), encode) {
            self.out.snapshot = Some(snap);
        }
    }

    /// Replace the state machine, the duplicate table and the membership
    /// by the snapshot's at `slot`.
    fn restore_snapshot(&mut self, slot: Slot, data: &[u8]) -> Result<(), SnapshotError> {
        let d = snapshot::decode(slot, data, self.members.configs.alpha)?;
        self.learner.restore(d.state, d.sessions, d.expired_before)?;
        if let Some(c) = d.configs {
            self.members.configs = c;
        }
        // Proposals made here that the snapshot already covers.
        self.clients.answer_covered(&self.learner.sessions, &mut self.out.responses);
        Ok(())
    }

    /// The runtime stored the snapshot at `slot`: compact and checkpoint.
    fn on_snapshot_saved(&mut self, slot: Slot) {
        if !self.snapshots.saved(slot) {
            return;
        }
        if self.rejoin.is_some() {
            // Keep the whole log (and its `Rejoining` record) until we vote.
            self.finish_rejoin_if_caught_up();
            return;
        }
        // Keep the log a learner is being sent a snapshot for.
        let horizon = self.clock.now.saturating_sub(20 * self.cfg.retry_ticks);
        let state = (self.acceptor.promised, self.proposer.own_ballot, self.learner.commit);
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.snapshots.checkpoint(&mut net, &mut self.log, (slot, horizon, self.cfg.max_message_bytes), state);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId, offset: u64) {
        let chunk_now = (self.cfg.snapshot_chunk, self.clock.now);
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.snapshots.send_chunk(&mut net, chunk_now, to, offset);
    }

    fn receiver_env(&self) -> ReceiverEnv {
        ReceiverEnv { now: self.clock.now, retry_ticks: self.cfg.retry_ticks, commit: self.learner.commit }
    }

    /// Whether a snapshot transfer is under way and moving: catch-up
    /// requests wait for it (a compacted member would answer each with the
    /// snapshot's first chunk again).
    fn receiving_snapshot(&self) -> bool {
        self.snapshots.receiver.receiving(self.receiver_env())
    }

    /// What the receiver asks for: a request to the sender, or a complete
    /// snapshot to install.
    fn route_received(&mut self, received: Option<Received>) {
        match received {
            Some(Received::Ask(to, msg)) => self.send(to, msg),
            Some(Received::Complete(slot, data)) => self.install_snapshot(slot, data),
            None => {}
        }
    }

    /// Jump to a snapshot received from a peer.
    fn install_snapshot(&mut self, slot: Slot, data: Bytes) {
        if slot <= self.learner.commit {
            return;
        }
        if self.is_leader() {
            // As for `Chosen`: a newer leader chose these; step down first.
            self.step_down(Ballot::ZERO);
        }
        if self.restore_snapshot(slot, &data).is_err() {
            return;
        }
        self.out.stats.snapshots_received += 1;
        self.log.compact(slot);
        self.learner.commit = slot;
        self.learner.applied = slot;
        self.learner.known_commit = self.learner.known_commit.max(slot);
        self.learner.catchup_sent_at = None;
        let snap = Snapshot { slot, data };
        self.snapshots.pending = Some(snap.clone());
        self.snapshots.installed_unsaved = Some(slot);
        self.out.snapshot = Some(snap);
        self.advance_commit();
        self.resume_phase1_if_caught_up();
    }

    // ---- rejoining after disk loss (see `rejoin.rs`) -------------------

    /// While rejoining: every leader's ballot raises the promise we will
    /// start with.
    fn observe_leader(&mut self, ballot: Ballot) {
        if let Some(r) = self.rejoin.as_mut() {
            r.observe_leader(ballot);
        }
    }

    /// While rejoining, ask the members that have not answered yet.
    fn rejoin_tick(&mut self) {
        let Some(r) = self.rejoin.as_mut() else { return };
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        if r.tick(&mut net, &self.cfg, self.clock.now) {
            self.finish_rejoin_if_caught_up();
        }
    }

    /// Vote again once the rejoin rule allows (see [`Rejoin::ready`]):
    /// promise the highest ballot heard of, and bid only above it.
    fn finish_rejoin_if_caught_up(&mut self) {
        let needed = rejoin::witnesses_needed(&self.cfg);
        let Some(r) = self.rejoin.as_ref() else { return };
        if !self.members.configs.chosen.is_empty() {
            // The membership changed: the members asked (the initial ones)
            // need not meet the quorums that may have counted on us. Stay a
            // learner; an operator replaces this member by a new one.
            return;
        }
        let Some(ballot) = r.ready(needed, self.learner.commit, self.snapshots.pending.is_some()) else { return };
        self.rejoin = None;
        self.configure_election();
        self.election.raise_round(ballot.round.saturating_add(1));
        self.proposer.own_ballot = self.proposer.own_ballot.max(ballot);
        if ballot > self.acceptor.promised {
            self.acceptor.promised = ballot;
            self.persist(Record::Promised(ballot));
        }
        self.persist(Record::Rejoined);
    }

    // ---- the leader's entry points (see `leader.rs`) -------------------

    fn start_phase1(&mut self, ballot: Ballot) {
        self.lead(|l| l.start_phase1(ballot));
    }

    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
        entries: Vec<PromisedEntry>,
        compacted: Slot,
    ) {
        let Some(behind) = self.lead(|l| l.on_promise(from, ballot, from_slot, entries, compacted)) else { return };
        self.learner.known_commit = self.learner.known_commit.max(behind.slot);
        if self.learner.commit < behind.slot {
            self.request_catch_up(Some(behind.from));
        }
        // (We may have caught up while preparing.)
        self.resume_phase1_if_caught_up();
    }

    fn resume_phase1_if_caught_up(&mut self) {
        self.lead(|l| l.resume_phase1_if_caught_up());
    }

    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, first_slot: Slot, last_slot: Slot) {
        let chosen = self.lead(|l| {
            l.handover_accepted(from, ballot, first_slot, last_slot);
            l.on_accepted(from, ballot, first_slot, last_slot)
        });
        if chosen {
            self.advance_commit();
        }
    }

    fn forget_chosen_inflight(&mut self) {
        self.lead(|l| l.forget_chosen_inflight());
    }

    fn step_down(&mut self, higher: Ballot) {
        self.lead(|l| l.step_down(higher));
    }

    fn serve_reads(&mut self) {
        self.lead(|l| l.serve_reads());
    }

    fn flush(&mut self) {
        if self.lead(|l| l.flush()) {
            self.persist_commit();
            self.maybe_snapshot();
        }
    }

    /// Session expiry: the learner says which sessions are due to go, the
    /// leader proposes so.
    fn expire_sessions_tick(&mut self) {
        let now = self.clock.now;
        if let Some(before) = self.learner.expiry_due(now, self.cfg.session_expiry_ticks) {
            self.lead(|l| l.expire_sessions(before));
        }
    }

    fn serve_follower_reads(&mut self) {
        let (sm, applied) = (&self.learner.sm, self.learner.applied);
        self.clients.serve_follower_reads(&mut self.out.reads, sm, applied);
    }

    fn expire_follower_reads(&mut self) {
        let horizon = self.clock.now.saturating_sub(2 * self.cfg.election_ticks);
        self.clients.expire_follower_reads(&mut self.out.reads, self.cfg.id, horizon);
    }

    fn on_propose(&mut self, cmd: Command) {
        if self.clients.local.len() + self.clients.forward.len() >= self.cfg.max_pending {
            self.out.responses.push(Response { id: cmd.id, result: Err(ClientError::Busy) });
            return;
        }
        self.clients.local.insert(cmd.id, (self.clock.now, cmd.clone()));
        self.enqueue(cmd);
    }

    /// Commands waiting here for a slot or for a leader.
    fn queued(&self) -> usize {
        self.clients.forward.len() + self.proposer.leader.as_ref().map_or(0, |l| l.pending_len())
    }

    /// Queue a command at the leader, or pass it on towards one.
    fn enqueue(&mut self, cmd: Command) {
        if let Some(leader) = self.proposer.leader.as_mut() {
            leader.enqueue(cmd);
        } else {
            match self.clients.leader_hint {
                Some(l) if l != self.cfg.id => self.send(l, Message::Forward { commands: vec![cmd] }),
                _ => self.clients.forward.push(cmd),
            }
        }
    }

    // ---- plumbing -------------------------------------------------------

    /// Index in the initial configuration's voters (rejoin bookkeeping).
    fn member_index(&self, node: NodeId) -> Option<usize> {
        self.cfg.members.iter().position(|&m| m == node)
    }

    /// Whether `node` is listed in a configuration this replica knows of
    /// (chosen, or proposed in a slot it holds): messages from anyone else
    /// are ignored.
    fn knows(&self, node: NodeId) -> bool {
        self.members.configs.knows(node)
            || self
                .log
                .iter_from(self.learner.commit + 1)
                .any(|(_, e)| matches!(&e.value, Value::Reconfigure(m) if m.contains(node)))
    }

    /// The configurations in force and pending, as election counts them.
    fn election_groups(&self) -> Joint<'static> {
        let plant = self.cfg.plant();
        Joint::new(self.members.view.iter().map(|m| plant.connectivity(m).into_owned()).collect())
    }

    /// Everyone in the configurations in force and pending, voters first,
    /// without duplicates.
    fn view_members(&self) -> Vec<NodeId> {
        self.members.everyone()
    }

    /// Recompute the configurations in force at `commit + 1` and pending,
    /// after the commit index moved or a change was learned; when they
    /// changed, retune election and step down if no longer a voter.
    fn refresh_view(&mut self) {
        let from = self.learner.commit + 1;
        // Keep what a phase 1 in progress still needs (it may have started
        // before the commit index moved on).
        let keep = from.min(self.proposer.preparing_from().unwrap_or(from));
        if !self.members.refresh(from, keep) {
            return;
        }
        self.configure_election();
        if !self.members.view[0].is_voter(self.cfg.id) && self.proposer.leader.is_some() {
            // Removed (or demoted): the configuration in force no longer
            // counts us, so we may not lead its slots' successors.
            self.step_down(Ballot::ZERO);
        }
    }

    /// Tell election whose replies make this node connected, and whether
    /// it may stand.
    fn configure_election(&mut self) {
        let voter = self.rejoin.is_none() && self.members.view.first().is_some_and(|m| m.is_voter(self.cfg.id));
        self.election.set_voter(voter);
        self.election.set_groups(self.election_groups());
    }

    /// The configuration in force at the first slot not known chosen.
    pub fn membership(&self) -> &Membership {
        self.members.configs.governing(self.learner.commit + 1)
    }

    /// A configuration chosen but not yet in force, with the slot it was
    /// chosen in.
    pub fn pending_membership(&self) -> Option<(Slot, &Membership)> {
        self.members.configs.pending_at(self.learner.commit + 1).next()
    }

    /// α of the reconfiguration rule (the pipeline window).
    pub fn alpha(&self) -> Slot {
        self.members.configs.alpha
    }

    /// Whether this replica is listed as a voter in the configuration in
    /// force, or in one pending.
    pub fn is_member(&self) -> bool {
        self.members.view.iter().any(|m| m.contains(self.cfg.id))
    }

    /// The outside world, for one call of a role.
    fn net(&mut self) -> Net<'_, S::Output> {
        Net::new(&self.cfg, &mut self.outbox, &mut self.out)
    }

    /// Append a record for the runtime to make durable; returns its number.
    fn persist(&mut self, record: Record) -> Lsn {
        self.net().persist(record)
    }

    /// Send a message that depends on nothing unpersisted.
    fn send(&mut self, to: NodeId, msg: Message) {
        self.net().send(to, msg);
    }

    /// Send a reply that depends on every record persisted so far: it is
    /// held until they are durable (unless the planted bug says otherwise).
    fn send_after_persist(&mut self, to: NodeId, msg: Message) {
        self.net().send_after_persist(to, msg);
    }

    fn drain_loopback(&mut self) {
        while let Some(msg) = self.outbox.loopback.pop_front() {
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
        self.acceptor.promised
    }

    /// The log (accepted and chosen entries).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Every slot up to this one is chosen and known here.
    pub fn commit_index(&self) -> Slot {
        self.learner.commit
    }

    /// Every slot up to this one is applied to the state machine.
    pub fn applied_index(&self) -> Slot {
        self.learner.applied
    }

    /// The duplicate-detection table, in client order: a function of the
    /// applied prefix of the log alone, so every replica that applied the
    /// same slots reports the same table.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.learner.session_infos()
    }

    /// The highest slot below which client sessions were expired (a
    /// command made before it, from a client without a session, is refused
    /// with [`ClientError::SessionExpired`]). The same on every replica
    /// after the same slot.
    pub fn sessions_expired_before(&self) -> Slot {
        self.learner.sessions_expired_before
    }

    /// The state machine (for serializable reads, served locally).
    pub fn state_machine(&self) -> &S {
        &self.learner.sm
    }

    /// Whether this replica is the leader and has finished phase 1.
    pub fn is_leader(&self) -> bool {
        self.proposer.leader.as_ref().is_some_and(|l| l.is_active())
    }

    /// The ballot this replica leads with, while it leads.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        self.proposer.leader.as_ref().map(|l| l.ballot)
    }

    /// The replica this one believes leads, if any.
    pub fn leader_hint(&self) -> Option<NodeId> {
        if self.is_leader() {
            Some(self.cfg.id)
        } else {
            self.clients.leader_hint
        }
    }

    /// The last record reported durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.outbox.durable
    }

    /// This replica's logical clock.
    pub fn now(&self) -> u64 {
        self.clock.now
    }

    /// Whether this replica hears a quorum of the members now (fresh
    /// replies to its pings from enough of them, itself included). A
    /// follower that does not cannot tell whether the leader it last
    /// heard of still leads: etcd's followers in that state have no
    /// leader either (they stand for election).
    pub fn hears_quorum(&self) -> bool {
        self.election.connected(self.clock.now)
    }

    /// Slots this leader has proposed and not yet seen chosen (0 when not
    /// leading).
    pub fn slots_in_flight(&self) -> usize {
        self.proposer.leader.as_ref().map_or(0, |l| l.slots_in_flight())
    }

    /// Whether a leader lease currently lets this replica answer reads
    /// without a round trip.
    pub fn holds_lease(&self) -> bool {
        self.proposer.leader.as_ref().is_some_and(|l| l.lease_valid(self.clock.now, self.learner.commit))
    }
}
