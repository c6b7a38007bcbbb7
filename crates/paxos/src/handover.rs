//! Leadership transfer (etcd's `Maintenance.MoveLeader`, Raft's
//! `TimeoutNow`): the leader hands leadership over to a voter it names,
//! without waiting for an election timeout, and without a moment in which
//! two nodes may serve lease reads. What it must never do: let the new
//! leader's Prepare past a lease its old holder still relies on.
//!
//! # The protocol
//!
//! Asked with [`crate::Input::TransferLeadership`] at the leader of ballot
//! `b`, naming a voter `to` of every configuration it respects:
//!
//! 1. **Drain.** The leader stops putting client commands into new slots
//!    (they wait in its queue) and waits until `to` has accepted every slot
//!    it has proposed and not seen `to` accept (values recovered in phase 1
//!    are still proposed, and tracked too; slots chosen meanwhile without it
//!    are sent to it again in `b`). The target then needs nothing from
//!    anyone to take over at once.
//! 2. **Hand over.** The leader gives up its lease in `b` for good (it never
//!    earns one again in `b`), refuses the reads waiting on it, points new
//!    reads at `to`, and only then sends `to` [`Message::TimeoutNow`]`{ b }`
//!    with its commit index (again every retry interval until done).
//! 3. **Take over.** `to`, if it still follows `b` (it has promised nothing
//!    higher and knows no newer leader) and hears a quorum, learns the commit index (its
//!    entries in `b` are the leader's proposals), bids at once with a ballot above
//!    every one it has seen ([`crate::election::Election::take_over`]) and
//!    runs phase 1 with `handoff: Some(b)` on its Prepares. An acceptor
//!    whose lease was granted in exactly ballot `b` lets such a Prepare
//!    through; every other lease still stops it.
//! 4. **Follow.** The old leader's acceptor promises the higher ballot (or
//!    its election sees it): it steps down and *withdraws*, so it does not
//!    bid back; the others adopt the higher ballot at the end of their
//!    round, as the highest connected candidate, or as the ballot their
//!    acceptor promised in that round (so a follower whose round ends after
//!    the old leader withdrew, but before a reply from the target shows its
//!    new ballot, does not bid against it). Commands queued at the old
//!    leader are forwarded to the new one, like every unanswered proposal on
//!    a change of leader (applied at most once).
//! 5. **Answer.** The transfer is answered `Ok` once the old leader hears
//!    `to` *lead*: an `Accept`, `Heartbeat` or `Commit` from `to` in a
//!    ballot above `b` (only a leader past phase 1 sends those); if it hears
//!    another node lead above `b` first, `NotLeader` naming it. If neither has
//!    not happened within `Config::transfer_timeout_ticks`, it fails with
//!    [`TransferError::Timeout`], and the old leader, if it still leads,
//!    takes proposals again (without a lease in `b`: its reads use
//!    read-index rounds until the next leader change).
//!
//! # Why it is safe
//!
//! Agreement needs no new argument: the target's phase 1 is an ordinary
//! phase 1 with a higher ballot, and `handoff` changes only whether a lease
//! delays an acceptor's promise, never what a promise or an acceptance
//! means; draining is for speed, not for safety.
//!
//! Lease exclusivity (no two nodes answer reads from a lease at once): a
//! Prepare carries `handoff: Some(b)` only if its sender received
//! `TimeoutNow { b }`, which the leader of `b` sends only *after* giving up
//! its lease in `b` for good; so whenever an acceptor lets such a Prepare
//! past its lease, that lease (granted in exactly `b`) has no holder
//! relying on it any more. Leases granted in any other ballot, including a
//! later one of the same node, still refuse the Prepare as before; and the
//! new leader relies on a lease only once a quorum granted it one in its own
//! ballot. Messages delayed or duplicated do not matter: the leader never
//! relies on a lease in `b` again, whenever a `TimeoutNow { b }` or a
//! Prepare carrying `b` arrives.
//!
//! # Where the code is
//!
//! Steps 1, 2 and 5 are the old leader's: methods of the leader at work
//! (`Leading`) below, on the `Handover` it owns. Step 3 is the
//! target's, and spans its acceptor, learner, election and proposer: the
//! replica routes it (`on_timeout_now` in `replica/mod.rs`).

use crate::ballot::Ballot;
use crate::command::Value;
use crate::io::TransferResponse;
use crate::leader::Leading;
use crate::message::Message;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Slot};
use std::collections::BTreeSet;
use thiserror::Error;

/// Why a leadership transfer was refused or did not complete.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader hands leadership over. Also the answer when, before
    /// the target took over, another node was seen leading with a higher
    /// ballot (this node was deposed meanwhile).
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this replica believes in, if any.
        leader: Option<NodeId>,
    },
    /// The target is not a voter of every configuration in force or
    /// pending (a learner, a removed member, or an unknown id); etcd's
    /// message.
    #[error("etcdserver: bad leader transferee")]
    BadTransferee(NodeId),
    /// The target did not take over in time (`Config::transfer_timeout_ticks`;
    /// etcd's message). The old leader, if it still leads, takes proposals
    /// again; leadership may also have gone elsewhere: look at the status.
    #[error("etcdserver: request timed out, leader transfer took too long")]
    Timeout,
    /// Another transfer, or a membership change, is in progress.
    #[error("a leadership transfer or membership change is already in progress")]
    InProgress,
}

/// A transfer asked for at this replica, until answered.
#[derive(Clone, Debug)]
pub(crate) struct Handover {
    /// The request id, echoed in the answer.
    id: u64,
    /// The target.
    to: NodeId,
    /// The ballot this replica led with when asked.
    ballot: Ballot,
    /// Answered `Timeout` at this tick.
    deadline: u64,
    /// Slots proposed in `ballot` that `to` has not yet accepted.
    pub(crate) unacked: BTreeSet<Slot>,
    /// When `TimeoutNow` last went out (`None`: still draining).
    sent_at: Option<u64>,
    /// When the target was last sent the slots it lacks that are no longer
    /// in flight.
    nudged_at: Option<u64>,
}

impl Handover {
    /// `from` accepted slots `first..=last` in `ballot`: if it is the
    /// target, in our ballot, strike them off; whether it was.
    fn accepted(&mut self, from: NodeId, ballot: Ballot, first: Slot, last: Slot) -> bool {
        if self.to != from || self.ballot != ballot {
            return false;
        }
        let acked: Vec<Slot> = self.unacked.range(first..=last).copied().collect();
        for s in acked {
            self.unacked.remove(&s);
        }
        true
    }

    /// A message only an active leader sends came from `from` in
    /// `ballot`: the answer, if that ends the handover (the target leads
    /// above our ballot: done; another node does: failed).
    fn outcome(&self, from: NodeId, ballot: Ballot) -> Option<TransferResponse> {
        if ballot.node != from || ballot <= self.ballot {
            return None;
        }
        let result = if from == self.to { Ok(()) } else { Err(TransferError::NotLeader { leader: Some(from) }) };
        Some(TransferResponse { id: self.id, result })
    }
}

impl<S: StateMachine> Leading<'_, S> {
    /// `Input::TransferLeadership`: check the request, and start draining.
    pub(crate) fn start_handover(&mut self, id: u64, to: NodeId) {
        match self.check_handover(to) {
            Err(e) => self.net.out.transfers.push(TransferResponse { id, result: Err(e) }),
            Ok(None) => self.net.out.transfers.push(TransferResponse { id, result: Ok(()) }),
            Ok(Some((ballot, unacked))) => {
                let deadline = self.now + self.cfg.transfer_timeout_ticks;
                *self.handover = Some(Handover { id, to, ballot, deadline, unacked, sent_at: None, nudged_at: None });
                self.advance_handover();
            }
        }
    }

    /// `Ok(None)`: nothing to do (the target is this leader); `Ok(Some)`:
    /// our ballot and the slots the target has yet to accept.
    fn check_handover(&self, to: NodeId) -> Result<Option<(Ballot, BTreeSet<Slot>)>, TransferError> {
        let me = self.cfg.id;
        let Some(leader) = self.proposer.leader.as_ref().filter(|l| l.is_active()) else {
            return Err(TransferError::NotLeader { leader: self.clients.leader_hint.filter(|&l| l != me) });
        };
        let Some(a) = leader.active() else {
            return Err(TransferError::NotLeader { leader: None });
        };
        if self.handover.is_some() {
            return Err(TransferError::InProgress);
        }
        if to == me {
            return Ok(None);
        }
        let configs = self.leader_configs();
        if !configs.iter().all(|m| m.is_voter(to)) {
            return Err(TransferError::BadTransferee(to));
        }
        if configs.len() > 1 || self.members.configs.pending_at(self.commit + 1).next().is_some() || a.reconfiguring() {
            return Err(TransferError::InProgress);
        }
        Ok(Some((leader.ballot, a.unacked_by(to))))
    }

    /// Whether client commands wait: a transfer of our current leadership
    /// is in progress.
    pub(crate) fn holding_proposals(&self) -> bool {
        match (self.handover.as_ref(), &self.proposer.leader) {
            (Some(t), Some(l)) => t.ballot == l.ballot,
            _ => false,
        }
    }

    /// The target, once this leader has handed its current leadership over
    /// (it then serves no reads).
    pub(crate) fn handed_over_to(&self) -> Option<NodeId> {
        let t = self.handover.as_ref()?;
        let handed = t.sent_at.is_some() && self.holding_proposals();
        (handed && !self.cfg.plant().transfer_keeps_lease()).then_some(t.to)
    }

    /// An `Accepted` arrived: if from the target, strike the slots off.
    pub(crate) fn handover_accepted(&mut self, from: NodeId, ballot: Ballot, first: Slot, last: Slot) {
        if self.handover.as_mut().is_some_and(|t| t.accepted(from, ballot, first, last)) {
            self.advance_handover();
        }
    }

    /// Hand over once the target holds every slot we proposed.
    fn advance_handover(&mut self) {
        let now = self.now;
        let Some(t) = self.handover.as_ref() else { return };
        if t.sent_at.is_some() || !t.unacked.is_empty() || !self.holding_proposals() {
            return;
        }
        if self.proposer.leader.as_ref().and_then(|l| l.active()).is_none_or(|a| a.recovering()) {
            return;
        }
        let (to, ballot) = (t.to, t.ballot);
        // First give the lease up, then let the target bid past it.
        self.forfeit_lease(to);
        if let Some(t) = self.handover.as_mut() {
            t.sent_at = Some(now);
        }
        let commit = self.commit;
        self.net.send(to, Message::TimeoutNow { ballot, commit });
    }

    /// Timers: resend the handover, or give up at the deadline.
    pub(crate) fn handover_tick(&mut self) {
        let now = self.now;
        let retry = self.cfg.retry_ticks;
        let Some(t) = self.handover.as_ref() else { return };
        if now >= t.deadline {
            let id = t.id;
            *self.handover = None;
            // If we still lead, the queued commands go into slots again at
            // the next flush.
            self.net.out.transfers.push(TransferResponse { id, result: Err(TransferError::Timeout) });
            return;
        }
        if t.sent_at.is_none() && t.nudged_at.is_none_or(|at| now >= at + retry) {
            self.nudge_target();
            return;
        }
        let resend = t.sent_at.is_some_and(|at| now >= at + retry) && self.holding_proposals();
        if resend {
            let (to, ballot) = (t.to, t.ballot);
            if let Some(t) = self.handover.as_mut() {
                t.sent_at = Some(now);
            }
            let commit = self.commit;
            self.net.send(to, Message::TimeoutNow { ballot, commit });
        }
    }

    /// While draining: send the target again, in our ballot, the slots it
    /// has not accepted that are chosen since (a lagging target learns them
    /// by catch-up, not by `Accept`, and we want them accepted); those in
    /// flight are resent by the leader's own timer. A slot compacted away
    /// (or learned otherwise) is struck off: the target learns it by
    /// catch-up.
    fn nudge_target(&mut self) {
        let now = self.now;
        let commit = self.commit;
        let Some(t) = self.handover.as_ref() else { return };
        let Some(leader) = self.proposer.leader.as_ref().filter(|l| l.ballot == t.ballot) else { return };
        let Some(a) = leader.active() else { return };
        let (to, ballot) = (t.to, t.ballot);
        let mut runs: Vec<(Slot, Vec<Value>)> = Vec::new();
        let mut gone = Vec::new();
        for &s in t.unacked.iter().filter(|&&s| !a.in_flight(s)) {
            // (Only our own proposal, as we made it in `ballot`.)
            let Some(e) = self.log.get(s).filter(|e| e.ballot == ballot) else {
                gone.push(s);
                continue;
            };
            match runs.last_mut() {
                Some((first, values)) if *first + values.len() as Slot == s => values.push(e.value.clone()),
                _ => runs.push((s, vec![e.value.clone()])),
            }
        }
        if let Some(t) = self.handover.as_mut() {
            t.nudged_at = Some(now);
            for s in gone {
                t.unacked.remove(&s);
            }
        }
        for (first_slot, values) in runs {
            self.send_accepts(to, ballot, first_slot, values, commit);
        }
        self.advance_handover();
    }

    /// A message only an active leader sends (`Accept`, `Heartbeat`,
    /// `Commit`) came from `from` in `ballot`: if that is the target leading
    /// above the ballot we handed over, the transfer is done; if another
    /// node leads above it, it is over (and failed).
    pub(crate) fn handover_observe(&mut self, from: NodeId, ballot: Ballot) {
        let Some(answer) = self.handover.as_ref().and_then(|t| t.outcome(from, ballot)) else { return };
        *self.handover = None;
        self.net.out.transfers.push(answer);
    }
}
