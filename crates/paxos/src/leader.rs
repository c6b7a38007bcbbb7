//! The proposer, acting as the distinguished leader of Multi-Paxos.
//!
//! Once elected with ballot `b`, the leader runs phase 1 a single time for
//! every slot from the first one it does not know to be chosen: one
//! `Prepare(b, from_slot)` answered by a quorum. For each slot it then
//! proposes the value accepted in the highest ballot among the promises (the
//! paper's rule, which is what makes a value once chosen stay chosen), fills
//! slots nobody accepted anything in with no-ops, and adds one no-op of its
//! own so it soon knows everything chosen before it. From then on it runs
//! only phase 2, for batches of commands, with a bounded window of slots in
//! flight.
//!
//! The leader's state and its own rules live in [`crate::proposer`]
//! (`Preparing`, `Active`, `Leader`); this file is the leader at work,
//! [`Leading`]: the proposer together with the little of the rest of the
//! replica it may touch (the log, to record what it saw chosen; the
//! membership, the election and the clients' queues), and read-only what
//! it must know (what its own acceptor promised, the learner's commit and
//! applied indexes, the state machine reads are answered from). What
//! another role must do is returned to the router: a slot chosen (the
//! learner advances), a promiser compacted past us ([`Behind`]: the learner
//! catches up), a lease its own acceptor grants it (the acceptor records
//! it). Its leases and linearizable reads are in `reads.rs`; its part of a
//! leadership handover in [`crate::handover`]. It never reaches the replica
//! itself.

use crate::ballot::Ballot;
use crate::clients::{send_forward, Clients};
use crate::command::Value;
use crate::config::Config;
use crate::election::Election;
use crate::handover::Handover;
use crate::io::{FollowerRead, ReconfigResponse};
use crate::log::{Entry, Log};
use crate::message::{split_by_size, value_size_bound, Message, PromisedEntry, ENVELOPE_BYTES};
use crate::outbox::Net;
use crate::proposer::{Active, Chosen, Leader, Phase, Proposer};
use crate::quorum::{Joint, Quorum};
use crate::reconfig::{Change, Members, Membership, ReconfigError};
use crate::record::Record;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Slot};
use std::collections::{BTreeMap, VecDeque};

/// A leader that has waited this many retry intervals to catch up to a
/// promiser's compaction point prepares again (see
/// [`Leading::restart_phase1`]).
const BEHIND_PATIENCE: u64 = 10;

/// The proposer at work, with what it may touch of the replica for one
/// call (built by the router, which routes what the call returns).
pub(crate) struct Leading<'a, S: StateMachine> {
    /// The configuration.
    pub(crate) cfg: &'a Config,
    /// The replica's clock.
    pub(crate) now: u64,
    /// The leadership held, and the ballots not to reuse.
    pub(crate) proposer: &'a mut Proposer,
    /// Records and messages out, answers to clients.
    pub(crate) net: Net<'a, S::Output>,
    /// The configurations known and in force (written only by the planted
    /// `reconfig-no-overlap` bug).
    pub(crate) members: &'a mut Members,
    /// Commands waiting for a leader, reads made here, the leader hint.
    pub(crate) clients: &'a mut Clients,
    /// Told when this leader is refused or deposed.
    pub(crate) election: &'a mut Election,
    /// What this replica's acceptor promised (a leader counts its own
    /// acknowledgement and lease grant only in that ballot).
    pub(crate) promised: Ballot,
    /// A lease this replica's acceptor grants its own leader (ballot, until
    /// when), set by a heartbeat round: the router hands it to the acceptor.
    pub(crate) own_lease: Option<(Ballot, u64)>,
    /// The slots this leader sees chosen are recorded here.
    pub(crate) log: &'a mut Log,
    /// The learner's commit index.
    pub(crate) commit: Slot,
    /// The learner's applied index.
    pub(crate) applied: Slot,
    /// The state machine, which reads are answered from.
    pub(crate) sm: &'a S,
    /// A leadership handover asked for here, if any (see
    /// [`crate::handover`], which holds the leader's part of it).
    pub(crate) handover: &'a mut Option<Handover>,
    /// Whether a snapshot is arriving (a leader behind waits for it).
    pub(crate) receiving_snapshot: bool,
}

/// A promiser compacted its log up to `slot`, past where this leader's
/// phase 1 starts: the learner must catch up (from `from`) before phase 1
/// can be run again above it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Behind {
    /// The promiser's compaction point.
    pub(crate) slot: Slot,
    /// The promiser.
    pub(crate) from: NodeId,
}

impl<S: StateMachine> Leading<'_, S> {
    /// How this replica counts `m`'s quorums (a planted bug may wrap it).
    fn quorum<'m>(&self, m: &'m Membership) -> Quorum<'m> {
        self.cfg.plant().quorum(m)
    }

    /// The joint quorum of `configs` (every configuration a change spans).
    pub(crate) fn joint<'m>(&self, configs: &'m [Membership]) -> Joint<'m> {
        Joint::new(configs.iter().map(|m| self.quorum(m)).collect())
    }
}

impl<S: StateMachine> Leading<'_, S> {
    /// Elected with `ballot`: phase 1a to every voter of every configuration
    /// that may govern a slot from our first unchosen one on, ourselves
    /// included.
    pub(crate) fn start_phase1(&mut self, ballot: Ballot) {
        let pending = match self.proposer.leader.take() {
            Some(old) => {
                let (pending, phase) = old.end();
                self.refuse_reads(phase.into_waiting_reads());
                pending
            }
            None => VecDeque::new(),
        };
        let mut pending = pending;
        pending.extend(self.clients.forward.drain(..));
        // Our own unanswered proposals went to a leader that may be gone.
        let again = self.clients.unanswered_except(&pending);
        pending.extend(again);
        let from_slot = self.commit + 1;
        let targets = self.members_of(&self.phase1_configs(from_slot, &BTreeMap::new()));
        let handoff = self.proposer.takeover.take().filter(|(b, _)| *b == ballot).map(|(_, h)| h);
        let mut leader = Leader::new(ballot, handoff, from_slot, self.now);
        for cmd in pending {
            leader.enqueue(cmd);
        }
        self.proposer.leader = Some(leader);
        self.clients.leader_hint = Some(self.cfg.id);
        debug_assert!(ballot > self.proposer.own_ballot, "ballot {ballot} reused");
        self.proposer.own_ballot = ballot;
        self.net.out.stats.phase1_started += 1;
        self.net.persist(Record::Ballot(ballot));
        for to in targets {
            self.net.send_after_persist(to, Message::Prepare { ballot, from_slot, handoff });
        }
    }

    /// The configurations a phase 1 from `from_slot` must hold a quorum of:
    /// the one in force there, any chosen one pending, and any found among
    /// the accepted values `merged` (see [`crate::reconfig`]).
    pub(crate) fn phase1_configs(&self, from_slot: Slot, merged: &BTreeMap<Slot, PromisedEntry>) -> Vec<Membership> {
        let mut out = vec![self.members.configs.governing(from_slot).clone()];
        if self.cfg.plant().reconfig_no_overlap() {
            // The planted bug: only the configuration in force counts.
            return out;
        }
        let more = self.members.configs.pending_at(from_slot).map(|(_, m)| m).chain(merged.values().filter_map(|e| {
            match &e.value {
                Value::Reconfigure(m) => Some(m),
                _ => None,
            }
        }));
        for m in more {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }

    /// The members that count in `configs`' quorums, without duplicates,
    /// in order.
    pub(crate) fn members_of(&self, configs: &[Membership]) -> Vec<NodeId> {
        self.joint(configs).members()
    }

    /// Phase 1b arrives. Returns [`Behind`] when a promiser has compacted
    /// slots this leader would have to propose: the learner must catch up
    /// to them first (then [`Leading::resume_phase1_if_caught_up`]).
    pub(crate) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
        entries: Vec<PromisedEntry>,
        compacted: Slot,
    ) -> Option<Behind> {
        let ignore_accepted = self.cfg.plant().ignore_accepted_value();
        match self.proposer.leader.as_mut() {
            Some(Leader { ballot: b, phase: Phase::Active(a), .. }) => {
                // A late promise, or one from a configuration phase 1 was
                // extended to. (Its accepted values need no merging: see
                // the argument in `reconfig`.)
                if *b == ballot {
                    a.late_promise(from, from_slot);
                }
                return None;
            }
            Some(Leader { ballot: b, phase: Phase::Preparing(p), .. }) => {
                if *b != ballot || !p.promise(from, from_slot, entries, compacted, !ignore_accepted) {
                    return None;
                }
            }
            None => return None,
        }
        let Some(Leader { phase: Phase::Preparing(p), .. }) = self.proposer.leader.as_ref() else { return None };
        let configs = self.phase1_configs(from_slot, p.merged());
        if !self.joint(&configs).is_phase1(p.promises()) {
            // A configuration found among the promises: ask its voters too
            // (those who promised already are not asked again).
            let promised = p.promises().to_vec();
            let missing: Vec<NodeId> =
                self.members_of(&configs).into_iter().filter(|id| !promised.contains(id)).collect();
            let fresh: Vec<NodeId> = {
                let first = self.phase1_configs(from_slot, &BTreeMap::new());
                let asked = self.members_of(&first);
                missing.into_iter().filter(|id| !asked.contains(id)).collect()
            };
            let handoff = self.proposer.leader.as_ref().and_then(|l| l.handoff);
            for to in fresh {
                self.net.send(to, Message::Prepare { ballot, from_slot, handoff });
            }
            return None;
        }
        let behind = p.behind();
        if behind.0 >= from_slot {
            let now = self.now;
            if let Some(Leader { phase: Phase::Preparing(p), .. }) = self.proposer.leader.as_mut() {
                p.wait_for_catch_up(now);
            }
            // Slots we would have to propose are compacted away at a
            // promiser: fetch its snapshot first, then prepare again from
            // the new commit index (same ballot; nothing proposed yet).
            return Some(Behind { slot: behind.0, from: behind.1 });
        }
        self.become_active();
        None
    }

    /// Once a leader held back by a compacted promiser has caught up, run
    /// phase 1 again from its new commit index.
    pub(crate) fn resume_phase1_if_caught_up(&mut self) {
        self.restart_phase1(false);
    }

    /// Run phase 1 again from our commit index if we caught up to the
    /// compaction point a promiser reported, or (`impatient`) if we have
    /// waited [`BEHIND_PATIENCE`] retry intervals and no snapshot is
    /// arriving. The second keeps one false report (a member that claims
    /// a compaction point nobody reaches, or went away) from holding this
    /// leader in phase 1 for good: the promises are asked for again, and an
    /// honest compacted promiser reports its compaction point again.
    fn restart_phase1(&mut self, impatient: bool) {
        let commit = self.commit;
        let now = self.now;
        let patience = BEHIND_PATIENCE * self.cfg.retry_ticks;
        let receiving = self.receiving_snapshot;
        let Some(Leader { phase: Phase::Preparing(p), .. }) = self.proposer.leader.as_ref() else { return };
        if !p.restart_due(commit, now, (impatient && !receiving).then_some(patience)) {
            return;
        }
        self.prepare_again();
    }

    /// Run phase 1 again, same ballot (nothing is proposed yet), from our
    /// commit index.
    fn prepare_again(&mut self) {
        let commit = self.commit;
        let now = self.now;
        let Some(Leader { ballot, handoff, phase: Phase::Preparing(p), .. }) = self.proposer.leader.as_mut() else {
            return;
        };
        let (ballot, handoff) = (*ballot, *handoff);
        p.restart(commit + 1, now);
        let targets = self.members_of(&self.phase1_configs(commit + 1, &BTreeMap::new()));
        for to in targets {
            self.net.send(to, Message::Prepare { ballot, from_slot: commit + 1, handoff });
        }
    }

    /// A quorum of every configuration that may be active promised: propose
    /// the recovered values, fill holes with no-ops, and add a no-op of our
    /// own, as the window allows.
    fn become_active(&mut self) {
        let Some(leader) = self.proposer.leader.as_mut() else {
            return;
        };
        let Phase::Preparing(p) = &mut leader.phase else {
            return;
        };
        let (active, early_reads) = p.complete(self.commit, self.now);
        leader.phase = Phase::Active(Box::new(active));
        self.propose_due(false);
        self.send_heartbeat();
        // Reads that came in during phase 1, or while no leader was known,
        // are ours now.
        for (id, query, origin) in early_reads {
            self.queue_read(id, query, origin);
        }
        let waiting: Vec<FollowerRead> = self.clients.follower_reads.extract_if(.., |r| !r.asked).collect();
        for r in waiting {
            self.queue_read(r.id, r.query, None);
        }
    }

    /// Propose in the next slots what is due: recovered values first, then
    /// a membership change asked for, then (if `commands`) pending client
    /// commands. Slot `s` is proposed only while fewer than the window are
    /// in flight, every slot up to `s - α` is chosen (so the configuration
    /// governing `s` is known), and our promisers hold a phase-1 quorum of
    /// that configuration (else phase 1 is extended to it first).
    fn propose_due(&mut self, commands: bool) {
        let window = self.cfg.max_inflight_slots;
        let no_delay = self.cfg.plant().reconfig_no_overlap();
        let alpha = self.members.configs.alpha;
        let max_batch = self.cfg.max_batch;
        let max_batch_bytes = self.cfg.max_batch_bytes;
        let now = self.now;
        let commit = self.commit;
        let mut first = 0;
        let mut values = Vec::new();
        let mut recipients: Vec<NodeId> = Vec::new();
        let mut proposed_change = false;
        // While leadership is being handed over, client commands wait (they
        // go to the new leader, or are proposed here again if the transfer
        // fails).
        let hold = self.holding_proposals();
        // Slots up to the commit index are chosen and known here: nothing is
        // left to propose in them. A leader gets below its commit index when
        // it learns slots chosen (a catch-up reply, an older leader's commit
        // index) after its phase 1 began, from the commit index it had then.
        // Proposed again, such a slot can stall the leader for good: the
        // configuration governing it may be trimmed from our history already
        // (`refresh_view` keeps what governs slots above the commit index),
        // so `governing` answers with an older one, whose voters need not
        // be there to promise or accept (issue 12).
        if let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() {
            a.skip_committed(commit);
        }
        while let Some(leader) = self.proposer.leader.as_ref() {
            let Phase::Active(a) = &leader.phase else { break };
            let s = a.next_slot();
            if a.in_flight_count() >= window || (!no_delay && s > commit + alpha) {
                break;
            }
            // A change chosen (or proposed) and not yet in force waits for
            // α more slots to be chosen: with no client traffic, no-ops
            // fill them, so the next change is not held up by an idle log.
            let pending_change = self.members.configs.pending_at(s).next().is_some();
            let due = a.proposal_due(s, commands && !hold && leader.pending_len() > 0, hold, pending_change);
            if !due {
                break;
            }
            let g = self.members.configs.governing(s);
            let q = self.quorum(g);
            if !q.is_phase1(a.promisers()) {
                self.extend_phase1();
                break;
            }
            for &id in q.voters() {
                if !recipients.contains(&id) {
                    recipients.push(id);
                }
            }
            let Some(leader) = self.proposer.leader.as_mut() else { break };
            let Some((value, batch)) = leader.propose_next(hold, max_batch, max_batch_bytes, now) else { break };
            if let Some(take) = batch {
                self.net.out.stats.batches.push(take);
            }
            if let Some(t) = self.handover.as_mut().filter(|_| hold) {
                t.unacked.insert(s);
            }
            if first == 0 {
                first = s;
            }
            if let Value::Reconfigure(m) = &value {
                proposed_change = true;
                if no_delay {
                    // The planted bug: in force before it is chosen.
                    self.members.configs.chosen.insert(s, m.clone());
                }
            }
            values.push(value);
        }
        if values.is_empty() {
            return;
        }
        let Some(ballot) = self.proposer.leader.as_ref().map(|l| l.ballot) else { return };
        self.broadcast_accept(&recipients, ballot, first, values, commit);
        if proposed_change {
            // The new configuration will need our phase 1 and our lease.
            self.extend_phase1();
            self.update_confirmations();
        }
    }

    /// Ask the voters that have not promised our ballot yet, of every
    /// configuration we respect whose phase-1 quorum our promisers do not
    /// hold yet (at most once per retry interval). Once the membership has
    /// changed, ask every voter that has not promised, quorum or not: a new
    /// voter acknowledges our heartbeats (leases, read confirmations) only
    /// once it has promised our ballot, and the voters that did promise may
    /// since have been lost.
    fn extend_phase1(&mut self) {
        let now = self.now;
        let retry = self.cfg.retry_ticks;
        let eager = self.members.changed_from(&self.cfg.initial_membership());
        let configs = self.leader_configs();
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_ref() else { return };
        let mut missing: Vec<NodeId> = Vec::new();
        for m in &configs {
            let q = self.quorum(m);
            if !eager && q.is_phase1(a.promisers()) {
                continue;
            }
            for &id in q.voters() {
                if !a.promisers().contains(&id) && !missing.contains(&id) {
                    missing.push(id);
                }
            }
        }
        let Some(Leader { ballot, handoff, phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else {
            return;
        };
        if missing.is_empty() {
            return;
        }
        let Some(from_slot) = a.extend_due(now, retry) else { return };
        let (ballot, handoff) = (*ballot, *handoff);
        for to in missing {
            self.net.send(to, Message::Prepare { ballot, from_slot, handoff });
        }
    }

    /// The configurations this leader must respect now (see
    /// [`Proposer::respected_configs`]).
    pub(crate) fn leader_configs(&self) -> Vec<Membership> {
        self.proposer.respected_configs(&self.members.view)
    }

    fn broadcast_accept(&mut self, to: &[NodeId], ballot: Ballot, first_slot: Slot, values: Vec<Value>, commit: Slot) {
        let mut first = first_slot;
        for run in self.accept_runs(values) {
            let n = run.len() as Slot;
            for &to in to {
                let values = run.clone();
                self.net.send(to, Message::Accept { ballot, first_slot: first, values, commit });
            }
            first += n;
        }
    }

    /// `values` cut into runs that each fit one `Accept` (see
    /// [`crate::Config::max_message_bytes`]).
    fn accept_runs(&self, values: Vec<Value>) -> Vec<Vec<Value>> {
        let budget = self.cfg.max_message_bytes.saturating_sub(ENVELOPE_BYTES);
        split_by_size(values, budget, value_size_bound)
    }

    /// Send `to` the values for consecutive slots from `first_slot`, in as
    /// many `Accept`s as the message size limit needs.
    pub(crate) fn send_accepts(
        &mut self,
        to: NodeId,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
        commit: Slot,
    ) {
        let mut first = first_slot;
        for run in self.accept_runs(values) {
            let n = run.len() as Slot;
            self.net.send(to, Message::Accept { ballot, first_slot: first, values: run, commit });
            first += n;
        }
    }

    /// The active leadership in `ballot`, if we lead in that ballot.
    pub(crate) fn active_in(&mut self, ballot: Ballot) -> Option<&mut Active> {
        match self.proposer.leader.as_mut() {
            Some(Leader { ballot: b, phase: Phase::Active(a), .. }) if *b == ballot => Some(a),
            _ => None,
        }
    }

    /// Phase 2b arrives: the leader counts it; a phase-2 quorum of the
    /// configuration governing a slot chooses the slot, which is then
    /// recorded in the log. Whether any slot was: the learner then
    /// advances its commit index over them.
    pub(crate) fn on_accepted(&mut self, from: NodeId, ballot: Ballot, first_slot: Slot, last_slot: Slot) -> bool {
        let Some(a) = self.active_in(ballot) else { return false };
        let counted = a.count_accepted(from, first_slot, last_slot);
        let newly: Vec<Slot> = counted
            .into_iter()
            .filter(|(slot, acks)| self.quorum(self.members.configs.governing(*slot)).is_phase2(acks))
            .map(|(slot, _)| slot)
            .collect();
        if newly.is_empty() {
            return false;
        }
        for slot in newly {
            let Some(leader) = self.proposer.leader.as_mut() else { return false };
            let Some(Chosen { value, reconfig }) = leader.take_chosen(slot) else { continue };
            if let Some(answer) = reconfig {
                self.net.out.reconfigs.push(answer);
            }
            let own = self.log.get(slot).is_some_and(|e| e.ballot == ballot && e.value == value);
            if !own {
                // Our own acceptance is not in the log: record the value
                // before the commit index that covers it.
                self.net.persist(Record::Chosen { first_slot: slot, values: vec![value.clone()] });
            }
            self.log.set(slot, Entry { ballot, value, chosen: true });
            self.log.mark_chosen(slot);
        }
        true
    }

    /// The commit index moved over slots still in flight here (learned
    /// chosen from a catch-up reply rather than counted from acceptances):
    /// nothing is left to do for them. Kept, they would be resent and
    /// counted forever against a configuration history already trimmed
    /// below the commit index, and fill the window.
    pub(crate) fn forget_chosen_inflight(&mut self) {
        let Some(leader) = self.proposer.leader.as_mut() else { return };
        if let Some(answer) = leader.forget_committed(self.commit, self.log) {
            self.net.out.reconfigs.push(answer);
        }
    }

    /// A client asks for a membership change: check it against the
    /// configuration in force, and queue it to be proposed in the next
    /// slot (answered once chosen).
    pub(crate) fn reconfigure(&mut self, id: u64, change: Change) -> Result<(), ReconfigError> {
        if !self.proposer.is_leader() {
            let leader = self.clients.leader_hint.filter(|&l| l != self.cfg.id);
            return Err(ReconfigError::NotLeader { leader });
        }
        let window = self.cfg.max_inflight_slots as Slot;
        let commit = self.commit;
        // Up now: answered one of the last few pings (sent every heartbeat),
        // not merely within the election round, so that a member that just
        // went down is not counted.
        let heard = self.election.heard_within(self.now, 3 * self.cfg.heartbeat_ticks.max(1));
        let changing =
            self.leader_configs().len() > 1 || self.members.configs.pending_at(self.commit + 1).next().is_some();
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_ref() else {
            return Err(ReconfigError::NotLeader { leader: None });
        };
        if changing || a.reconfiguring() || commit + 1 < a.first_own_slot() || self.holding_proposals() {
            return Err(ReconfigError::InProgress);
        }
        let current = self.members.configs.governing(self.commit + 1).clone();
        let new = current.apply(&change)?;
        // New voters must be learners in sync with us.
        for &v in new.voters.iter().filter(|v| !current.is_voter(**v)) {
            if !current.is_learner(v) {
                return Err(ReconfigError::NotALearner(v));
            }
            if self.members.progress.get(&v).is_none_or(|&p| p.saturating_add(window) < commit) {
                return Err(ReconfigError::LearnerNotInSync(v));
            }
        }
        // Strict reconfiguration check: a quorum of the new voters must be
        // up and reachable now.
        let mut hears = heard;
        hears.push(self.cfg.id);
        let q = self.cfg.plant().connectivity(&new);
        if !q.is_connected(&hears) {
            let (reachable, needed) = (q.count(&hears), q.connected_size());
            return Err(ReconfigError::NoQuorumReachable { reachable, voters: new.voters.len(), needed });
        }
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else {
            return Err(ReconfigError::NotLeader { leader: None });
        };
        a.ask_reconfig(id, new);
        Ok(())
    }

    /// An acceptor refused us.
    pub(crate) fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        let Some(leader) = self.proposer.leader.as_ref() else {
            return;
        };
        if leader.ballot != ballot || promised <= ballot {
            return;
        }
        match leader.phase {
            Phase::Preparing(_) => {
                // Someone promised a higher ballot: a live rival (election
                // will make us follow it) or a leader that is gone (election
                // will have us bid above it at the end of the round).
                self.election.refused(promised);
            }
            Phase::Active(_) => self.step_down(promised),
        }
    }

    /// Stop leading: a higher ballot exists.
    pub(crate) fn step_down(&mut self, higher: Ballot) {
        let Some(old) = self.proposer.leader.take() else {
            return;
        };
        self.proposer.abandoned = old.ballot;
        if self.election.is_leader() && self.election.ballot() == old.ballot {
            // Deposed while the election still names us: stop standing, or
            // followers who cannot hear the new leader would keep us alive.
            self.election.withdraw();
        }
        let (pending, phase) = old.end();
        self.clients.forward.extend(pending);
        if let Some(id) = phase.reconfig_id() {
            self.net.out.reconfigs.push(ReconfigResponse { id, result: Err(ReconfigError::Interrupted) });
        }
        let reads = phase.into_waiting_reads();
        self.refuse_reads(reads);
        let hint = (higher.node != self.cfg.id && higher.node != 0).then_some(higher.node);
        let (me, now, max) = (self.cfg.id, self.now, self.cfg.max_message_bytes);
        self.clients.set_leader_hint(&mut self.net, me, hint, now, max);
    }

    /// Pack pending commands into slots and send what is due, and pass
    /// commands waiting here on to the leader we know of. Called once per
    /// output, so everything that arrived since is one batch. Whether the
    /// commit index and snapshots are due to be looked at (always, but for
    /// a leadership lost while flushing).
    pub(crate) fn flush(&mut self) -> bool {
        let commit = self.commit;
        if let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_ref() {
            let before = a.next_slot();
            self.propose_due(true);
            let Some(Leader { ballot, phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else {
                return false;
            };
            let ballot = *ballot;
            let send_commit = a.commit_to_send(before, commit);
            let read_round = a.take_read_round();
            if send_commit {
                for to in self.heartbeat_targets() {
                    self.net.send(to, Message::Commit { ballot, commit });
                }
            }
            if read_round {
                self.send_heartbeat();
            }
        }
        if let Some(l) = self.clients.leader_hint.filter(|&l| l != self.cfg.id) {
            if !self.clients.forward.is_empty() && self.proposer.leader.is_none() {
                let commands = std::mem::take(&mut self.clients.forward);
                send_forward(&mut self.net, l, commands, self.cfg.max_message_bytes);
            }
        }
        true
    }

    /// Everyone a leader's heartbeats and commit indexes go to: the members
    /// of every configuration it respects (learners included), but itself.
    pub(crate) fn heartbeat_targets(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for m in self.leader_configs() {
            for id in m.members() {
                if id != self.cfg.id && !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Timers: heartbeats, and resending what went unanswered.
    pub(crate) fn leader_tick(&mut self) {
        let now = self.now;
        let retry = self.cfg.retry_ticks;
        let Some(leader) = self.proposer.leader.as_ref() else {
            return;
        };
        let (ballot, handoff) = (leader.ballot, leader.handoff);
        match &leader.phase {
            Phase::Preparing(p) => {
                if p.waiting_for_catch_up() {
                    self.restart_phase1(true);
                    return;
                }
                if p.retry_due(now, retry) && self.commit >= p.first_slot() {
                    // Slots learnt chosen while preparing: a quorum of the
                    // configurations that governed only them is no longer
                    // needed, and may be gone for good (found by swarm
                    // testing, seed 6136 on 5 nodes: a phase 1 from slot
                    // 124 kept asking removed members while 124 and 125
                    // were chosen). Prepare again above the commit index.
                    self.prepare_again();
                    return;
                }
                if p.retry_due(now, retry) {
                    let from_slot = p.first_slot();
                    let targets = self.members_of(&self.phase1_configs(from_slot, p.merged()));
                    let missing: Vec<NodeId> = targets.into_iter().filter(|id| !p.promises().contains(id)).collect();
                    if let Some(Leader { phase: Phase::Preparing(p), .. }) = self.proposer.leader.as_mut() {
                        p.asked_again(now);
                    }
                    for to in missing {
                        self.net.send(to, Message::Prepare { ballot, from_slot, handoff });
                    }
                }
            }
            Phase::Active(a) => {
                let heartbeat_due = a.heartbeat_due(now, self.cfg.heartbeat_ticks);
                let due: Vec<(Slot, Vec<NodeId>)> = a
                    .resend_due(now, retry)
                    .into_iter()
                    .map(|slot| (slot, self.quorum(self.members.configs.governing(slot)).voters().to_vec()))
                    .collect();
                let resend = match self.proposer.leader.as_mut() {
                    Some(Leader { phase: Phase::Active(a), .. }) => a.resend(&due, now),
                    _ => Vec::new(),
                };
                let commit = self.commit;
                for (to, first_slot, values) in resend {
                    self.send_accepts(to, ballot, first_slot, values, commit);
                }
                if heartbeat_due {
                    self.send_heartbeat();
                }
                // Keep asking the voters of a configuration we must cover.
                self.extend_phase1();
            }
        }
    }

    /// Sessions last used below `before` are due to be forgotten (see
    /// [`crate::learner::Learner::expiry_due`]): if leading, propose so in
    /// the next slot (at the next flush).
    pub(crate) fn expire_sessions(&mut self, before: Slot) {
        if let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() {
            a.expire_sessions(before);
        }
    }
}
