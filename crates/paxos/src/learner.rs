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
use crate::io::{ClientError, SessionInfo};
use crate::log::{Entry, Log};
use crate::message::{value_size_bound, Message, ENVELOPE_BYTES};
use crate::outbox::Net;
use crate::reconfig::Membership;
use crate::record::Record;
use crate::state_machine::{SnapshotError, StateMachine};
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

/// A learner's answer to a catch-up request.
pub(crate) enum CatchUpReply {
    /// Nothing to send (the request is for slots not chosen here yet).
    Nothing,
    /// The slots asked for are compacted away: send our snapshot.
    Snapshot,
    /// The chosen values asked for (as many as fit one message).
    Chosen(Message),
}

impl<S: StateMachine> Learner<S> {
    /// The duplicate-detection table, in client order.
    pub(crate) fn session_infos(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .sessions
            .iter()
            .map(|(&client, s)| SessionInfo { client, seq: s.seq, last_slot: s.last_slot })
            .collect();
        out.sort_unstable_by_key(|s| s.client);
        out
    }

    /// Replace the state machine by `state` and the duplicate table by
    /// `sessions` (client, sequence number, last slot), with the slot below
    /// which sessions were expired (a snapshot's; see
    /// [`crate::snapshot::decode`]). Nothing changes if the state machine
    /// refuses `state`.
    pub(crate) fn restore(
        &mut self,
        state: &[u8],
        sessions: Vec<(u64, u64, Slot)>,
        expired_before: Slot,
    ) -> Result<(), SnapshotError> {
        self.sm.restore(state)?;
        // Cached answers are not part of a snapshot: a retry of a command
        // the snapshot covers is recognised, but gets no cached answer.
        self.sessions =
            sessions.into_iter().map(|(c, seq, last_slot)| (c, Session { seq, last_slot, output: None })).collect();
        self.sessions_expired_before = expired_before;
        Ok(())
    }

    /// Whether slots are known chosen that this learner lacks.
    pub(crate) fn behind(&self) -> bool {
        self.commit < self.known_commit
    }

    /// Ask `to`, at `now`, for the chosen values we are missing.
    pub(crate) fn request_catch_up<O>(&mut self, net: &mut Net<'_, O>, now: u64, to: NodeId) {
        self.catchup_sent_at = Some(now);
        let from_slot = self.commit + 1;
        net.send(to, Message::CatchUp { from_slot });
    }

    /// Whether a catch-up request is due again at `now` (`retry` ticks
    /// after the last); none is while nothing is missing.
    pub(crate) fn catch_up_due(&mut self, now: u64, retry: u64) -> bool {
        if self.behind() {
            self.catchup_sent_at.is_none_or(|t| now >= t + retry)
        } else {
            self.catchup_sent_at = None;
            false
        }
    }

    /// Serve a catch-up request for the slots from `from_slot` on from the
    /// chosen prefix of `log`: at most `max_catchup_slots` values, and at
    /// most `max_message_bytes` (the learner asks again from where the
    /// reply stops).
    pub(crate) fn catch_up_reply(
        &self,
        log: &Log,
        from_slot: Slot,
        max_catchup_slots: usize,
        max_message_bytes: usize,
    ) -> CatchUpReply {
        if from_slot == 0 || from_slot > self.commit {
            return CatchUpReply::Nothing;
        }
        if from_slot <= log.compacted() {
            // Those slots live only in our snapshot now.
            return CatchUpReply::Snapshot;
        }
        // (`from_slot <= commit <= MAX_SLOT`: no overflow.)
        let last = self.commit.min(from_slot + (max_catchup_slots as Slot - 1));
        let budget = max_message_bytes.saturating_sub(ENVELOPE_BYTES);
        let mut used = 0usize;
        let mut values: Vec<Value> = Vec::new();
        for s in from_slot..=last {
            let value = match log.get(s) {
                Some(e) => &e.value,
                None => unreachable!("slot {s} is below the commit index but not in the log"),
            };
            used = used.saturating_add(value_size_bound(value));
            if !values.is_empty() && used > budget {
                break;
            }
            values.push(value.clone());
        }
        CatchUpReply::Chosen(Message::Chosen { first_slot: from_slot, values, commit: self.commit })
    }

    /// Chosen values from a catch-up reply (starting at or below our next
    /// slot; the router checked), with the sender's commit index: those
    /// new here go into `log`, marked chosen, and into a record.
    pub(crate) fn take_chosen<O>(
        &mut self,
        log: &mut Log,
        net: &mut Net<'_, O>,
        first_slot: Slot,
        values: Vec<Value>,
        commit: Slot,
    ) {
        self.known_commit = self.known_commit.max(commit);
        let skip = (self.commit + 1).saturating_sub(first_slot) as usize;
        if skip < values.len() {
            let start = first_slot + skip as Slot;
            let fresh: Vec<Value> = values.into_iter().skip(skip).collect();
            for (i, value) in fresh.iter().enumerate() {
                let slot = start + i as Slot;
                log.set(slot, Entry { ballot: Ballot::ZERO, value: value.clone(), chosen: true });
                log.mark_chosen(slot);
            }
            net.persist(Record::Chosen { first_slot: start, values: fresh });
        }
        self.catchup_sent_at = None;
    }

    /// Persist the commit index (once per output, after the records that
    /// hold the values it covers), if it moved.
    pub(crate) fn persist_commit<O>(&mut self, net: &mut Net<'_, O>) {
        if self.commit > self.commit_persisted {
            self.commit_persisted = self.commit;
            net.persist(Record::Commit(self.commit));
        }
    }
}
