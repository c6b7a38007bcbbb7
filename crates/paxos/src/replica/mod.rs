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

mod accessors;
mod construct;
mod leading;
mod learning;
mod membership;
mod snapshots;

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
}
