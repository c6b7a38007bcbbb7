//! The learner: which slots are chosen, catching up on missed ones, and
//! applying the chosen prefix to the state machine exactly once per command.
//!
//! A replica learns that slot `s` is chosen in one of three ways: as leader,
//! from a quorum of `Accepted`; as follower, from a leader's commit index
//! when its own entry for `s` was accepted in that leader's ballot (then it
//! is that leader's proposal, which is the chosen value); or from a
//! `Chosen` reply to a catch-up request.

use crate::ballot::Ballot;
use crate::command::{CommandId, Value};
use crate::io::{ClientError, Response};
use crate::log::{Entry, Log};
use crate::message::{value_size_bound, Message, ENVELOPE_BYTES};
use crate::reconfig::Membership;
use crate::record::Record;
use crate::replica::Replica;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Slot};
use std::collections::{HashMap, VecDeque};

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

/// What the learner knows: how far the log is chosen and applied, the
/// state machine it is applied to, and the duplicate-detection table.
#[derive(Clone)]
pub(crate) struct Learner<S: StateMachine> {
    /// Every slot up to here is chosen and known here.
    pub(crate) commit: Slot,
    /// The commit index in the last `Commit` record.
    pub(crate) commit_persisted: Slot,
    /// Every slot up to here is applied to `sm`.
    pub(crate) applied: Slot,
    /// The highest commit index heard of (a leader's may run ahead of ours).
    pub(crate) known_commit: Slot,
    /// When a catch-up request last went out.
    pub(crate) catchup_sent_at: Option<u64>,
    /// The state machine.
    pub(crate) sm: S,
    /// The duplicate-detection table: per client, its session.
    pub(crate) sessions: HashMap<u64, Session<S::Output>>,
    /// The highest `before` of any [`crate::Value::ExpireSessions`]
    /// applied: a command without a session whose origin lies below it
    /// may be a retry of one applied before its session went, and is
    /// refused ([`crate::ClientError::SessionExpired`]).
    pub(crate) sessions_expired_before: Slot,
    /// (tick, the next unchosen slot then), noted every quarter of the
    /// session expiry: a session last used below such a slot has been idle
    /// since that tick at least. Five entries at most.
    pub(crate) session_marks: VecDeque<(u64, Slot)>,
}

impl<S: StateMachine> Learner<S> {
    /// Nothing learned yet, over the initial state `sm`.
    pub(crate) fn new(sm: S) -> Learner<S> {
        Learner {
            commit: 0,
            commit_persisted: 0,
            applied: 0,
            known_commit: 0,
            catchup_sent_at: None,
            sm,
            sessions: HashMap::new(),
            sessions_expired_before: 0,
            session_marks: VecDeque::new(),
        }
    }
}

/// What applying the chosen prefix asks the replica to do, in slot order.
#[derive(Debug)]
pub(crate) enum Learned<O> {
    /// A configuration was chosen in this slot (it governs from α later).
    Configuration(Slot, Membership),
    /// A command was applied (or recognised as a retry, or refused): the
    /// answer for its client, if one is known.
    Answer(CommandId, Option<Result<O, ClientError>>),
}

impl<S: StateMachine> Learner<S> {
    /// A leader in `ballot` announced commit index `commit`: every slot up
    /// to it whose entry here was accepted in that ballot holds the
    /// leader's proposal, which is the chosen value.
    pub(crate) fn learn(&mut self, log: &mut Log, ballot: Ballot, commit: Slot) {
        self.known_commit = self.known_commit.max(commit);
        let mut s = self.commit + 1;
        while s <= commit {
            match log.get(s) {
                Some(e) if e.chosen || e.ballot == ballot => {
                    log.mark_chosen(s);
                    s += 1;
                }
                _ => break,
            }
        }
    }

    /// Move the commit index over the chosen prefix of `log`.
    pub(crate) fn advance(&mut self, log: &Log) {
        while log.get(self.commit + 1).is_some_and(|e| e.chosen) {
            self.commit += 1;
        }
    }

    /// Apply every chosen slot not yet applied, skipping duplicate commands;
    /// what the rest of the replica must hear of it, in order.
    pub(crate) fn apply_chosen(&mut self, log: &Log) -> Vec<Learned<S::Output>> {
        let mut learned = Vec::new();
        while self.applied < self.commit {
            let slot = self.applied + 1;
            let value = match log.get(slot) {
                Some(e) => e.value.clone(),
                None => unreachable!("slot {slot} is below the commit index but not in the log"),
            };
            self.applied = slot;
            match &value {
                Value::Reconfigure(m) => learned.push(Learned::Configuration(slot, m.clone())),
                Value::ExpireSessions { before } => {
                    self.sessions.retain(|_, s| s.last_slot >= *before);
                    self.sessions_expired_before = self.sessions_expired_before.max(*before);
                }
                Value::Noop | Value::Commands(_) => {}
            }
            for cmd in value.commands() {
                let output = match self.sessions.get_mut(&cmd.id.client) {
                    Some(session) if cmd.id.seq <= session.seq => {
                        // A retry of a command already applied: answer it
                        // from the cache, never apply it twice. (The client
                        // is still about: its session is kept.)
                        session.last_slot = slot;
                        match &session.output {
                            Some(out) if cmd.id.seq == session.seq => Some(Ok(out.clone())),
                            _ => Some(Err(ClientError::AppliedWithoutResult)),
                        }
                    }
                    // No session, and the command was made before the
                    // last expiry: if it was applied before, that was
                    // below its session's last slot, which lies below the
                    // expiry's `before` (the session went), and above the
                    // command's origin (the command did not exist before
                    // then). Not knowing, refuse it: found by swarm
                    // testing (seeds 607 on 3 nodes, 1150 on 5), a put
                    // retried after its session expired applied twice.
                    None if cmd.origin < self.sessions_expired_before => Some(Err(ClientError::SessionExpired)),
                    _ => {
                        let out = self.sm.apply(slot, cmd);
                        let session = Session { seq: cmd.id.seq, last_slot: slot, output: Some(out.clone()) };
                        self.sessions.insert(cmd.id.client, session);
                        Some(Ok(out))
                    }
                };
                learned.push(Learned::Answer(cmd.id, output));
            }
        }
        learned
    }
}

impl<S: StateMachine> Learner<S> {
    /// Session expiry, on this replica's clock (`now`): every quarter of
    /// `expiry` ([`crate::Config::session_expiry_ticks`]) the learner notes
    /// its next unchosen slot (a session last used below it was last used
    /// by then); once a note is that old, sessions last used below its
    /// slot are due to be forgotten, if any is that idle: that slot is
    /// returned, for the leader to propose. Every replica notes, not only
    /// the leader, so a new leader need not wait a whole period (under
    /// churn it might never). Only the proposing replica's clock decides;
    /// applying the chosen [`Value::ExpireSessions`] is a function of the
    /// log, so every replica forgets the same sessions at the same slot.
    pub(crate) fn expiry_due(&mut self, now: u64, expiry: u64) -> Option<Slot> {
        let period = (expiry / 4).max(1);
        if self.session_marks.back().is_none_or(|&(t, _)| now >= t + period) {
            self.session_marks.push_back((now, self.commit + 1));
        }
        let mut due = None;
        while let Some(&(t, slot)) = self.session_marks.front() {
            if now < t + expiry {
                break;
            }
            self.session_marks.pop_front();
            due = Some(slot);
        }
        let oldest = self.sessions.values().map(|s| s.last_slot).min();
        due.filter(|&b| oldest.is_some_and(|o| o < b))
    }
}

impl<S> std::fmt::Debug for Learner<S>
where
    S: StateMachine + std::fmt::Debug,
    S::Output: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("commit", &self.commit)
            .field("commit_persisted", &self.commit_persisted)
            .field("applied", &self.applied)
            .field("known_commit", &self.known_commit)
            .field("catchup_sent_at", &self.catchup_sent_at)
            .field("sm", &self.sm)
            .field("sessions", &self.sessions)
            .field("sessions_expired_before", &self.sessions_expired_before)
            .field("session_marks", &self.session_marks)
            .finish()
    }
}

impl<S: StateMachine> Replica<S> {
    /// Learn from a commit index that a leader with `ballot` announced.
    pub(crate) fn learn_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        self.learner.learn(&mut self.log, ballot, commit);
        self.advance_commit();
        if self.learner.commit < self.learner.known_commit && self.learner.catchup_sent_at.is_none() {
            self.request_catch_up(Some(from));
        }
    }

    /// Move the commit index over the chosen prefix and apply it.
    pub(crate) fn advance_commit(&mut self) {
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
    pub(crate) fn apply_chosen(&mut self) {
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

    /// Ask for the chosen values we are missing.
    pub(crate) fn request_catch_up(&mut self, from: Option<NodeId>) {
        if self.receiving_snapshot() {
            return;
        }
        let target = from.filter(|&n| n != self.cfg.id).or(self.clients.leader_hint.filter(|&n| n != self.cfg.id));
        if let Some(to) = target {
            self.learner.catchup_sent_at = Some(self.clock.now);
            let from_slot = self.learner.commit + 1;
            self.send(to, Message::CatchUp { from_slot });
        }
    }

    /// Retry catch-up and forget proposals nobody will answer.
    pub(crate) fn learner_tick(&mut self) {
        if self.learner.commit < self.learner.known_commit {
            let due = self.learner.catchup_sent_at.is_none_or(|t| self.clock.now >= t + self.cfg.retry_ticks);
            if due {
                let any = self.random_peer();
                // A leader held back in phase 1 by a compacted promiser is
                // its own leader hint: it asks a peer (a hint naming
                // ourselves used to win here and then be dropped, so a lost
                // catch-up request was never sent again and that leader
                // prepared forever; found by swarm testing, seed 177 on 5
                // nodes).
                let hint = self.clients.leader_hint.filter(|&n| n != self.cfg.id);
                self.request_catch_up(hint.or(any));
            }
        } else {
            self.learner.catchup_sent_at = None;
        }
        self.expire_follower_reads();
        self.snapshot_tick();
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

    /// Serve a catch-up request from the chosen prefix.
    pub(crate) fn on_catch_up(&mut self, from: NodeId, from_slot: Slot) {
        if self.proposer.leader.is_some() {
            let p = self.members.progress.entry(from).or_default();
            *p = (*p).max(from_slot.saturating_sub(1));
        }
        if from_slot == 0 || from_slot > self.learner.commit {
            return;
        }
        if from_slot <= self.log.compacted() {
            // Those slots live only in our snapshot now.
            self.send_snapshot_chunk(from, 0);
            return;
        }
        // (`from_slot <= commit <= MAX_SLOT`: no overflow.)
        let last = self.learner.commit.min(from_slot + (self.cfg.max_catchup_slots as Slot - 1));
        // At most `max_message_bytes`: the learner asks again from where
        // this reply stops.
        let budget = self.cfg.max_message_bytes.saturating_sub(ENVELOPE_BYTES);
        let mut used = 0usize;
        let mut values: Vec<Value> = Vec::new();
        for s in from_slot..=last {
            let value = match self.log.get(s) {
                Some(e) => &e.value,
                None => unreachable!("slot {s} is below the commit index but not in the log"),
            };
            used = used.saturating_add(value_size_bound(value));
            if !values.is_empty() && used > budget {
                break;
            }
            values.push(value.clone());
        }
        let commit = self.learner.commit;
        self.send(from, Message::Chosen { first_slot: from_slot, values, commit });
    }

    /// Chosen values from a catch-up reply.
    pub(crate) fn on_chosen(&mut self, first_slot: Slot, values: Vec<Value>, commit: Slot) {
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
        self.learner.known_commit = self.learner.known_commit.max(commit);
        let skip = (self.learner.commit + 1).saturating_sub(first_slot) as usize;
        if skip < values.len() {
            let start = first_slot + skip as Slot;
            let fresh: Vec<Value> = values.into_iter().skip(skip).collect();
            for (i, value) in fresh.iter().enumerate() {
                let slot = start + i as Slot;
                self.log.set(slot, Entry { ballot: Ballot::ZERO, value: value.clone(), chosen: true });
                self.log.mark_chosen(slot);
            }
            self.persist(Record::Chosen { first_slot: start, values: fresh });
        }
        self.learner.catchup_sent_at = None;
        self.advance_commit();
        self.resume_phase1_if_caught_up();
        if self.learner.commit < self.learner.known_commit {
            self.request_catch_up(None);
        }
    }

    /// Persist the commit index once per output, after the records that
    /// hold the values it covers.
    pub(crate) fn persist_commit(&mut self) {
        if self.snapshots.installed_unsaved.is_some() {
            // The slots the installed snapshot covers are not in our records.
            return;
        }
        if self.learner.commit > self.learner.commit_persisted {
            self.learner.commit_persisted = self.learner.commit;
            let c = self.learner.commit;
            self.persist(Record::Commit(c));
        }
    }
}
