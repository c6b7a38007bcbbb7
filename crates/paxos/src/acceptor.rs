//! The acceptor: promises (phase 1b), acceptances (phase 2b), lease grants.
//!
//! Rules kept here, in the paper's words: an acceptor never accepts a value
//! in a ballot lower than one it promised, and it remembers (durably, before
//! replying) what it promised and accepted. Every reply that depends on this
//! state goes through `send_after_persist`, so it cannot leave the node
//! before the records behind it are durable.
//!
//! Leases: when an acceptor acknowledges a leader's heartbeat with a lease,
//! it refuses every other node's Prepare for `lease_ticks` of its own clock.
//! The leader counts its lease from when it *sent* the heartbeat, minus a
//! drift margin, so it stops relying on the lease before any acceptor lets
//! it go. One exception, for leadership transfer: a Prepare that carries
//! `handoff: Some(b)` passes a lease granted in exactly ballot `b`, whose
//! leader gave that lease up for good before handing over (see
//! [`crate::handover`]).

use crate::ballot::{Ballot, NodeId};
use crate::command::{Slot, Value};
use crate::log::Entry;
use crate::message::{value_size_bound, Message, PromisedEntry, ENVELOPE_BYTES};
use crate::record::Record;
use crate::replica::Replica;
use crate::state_machine::StateMachine;

/// Bytes a promised entry takes besides its value (slot, ballot, flag).
const ENTRY_BYTES: usize = 40;

/// What an acceptor promised, and the lease it granted. (What it accepted
/// is in the replica's log, which the learner shares.)
#[derive(Clone, Debug, Default)]
pub(crate) struct Acceptor {
    /// The highest ballot promised.
    pub(crate) promised: Ballot,
    /// Lease granted to a leader: until `lease_until` refuse other ballots'
    /// Prepares. `lease_holder == 0` with a future `lease_until` means
    /// "recovering: refuse everyone" (a lease granted before a crash may
    /// still be running).
    pub(crate) lease_holder: NodeId,
    /// The ballot the lease was last granted in (a `Prepare` handed over
    /// from exactly this ballot passes the lease).
    pub(crate) lease_ballot: Ballot,
    /// The tick of this replica's clock the lease runs out at.
    pub(crate) lease_until: u64,
}

impl<S: StateMachine> Replica<S> {
    /// Phase 1b.
    pub(crate) fn on_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: Slot, handoff: Option<Ballot>) {
        if self.rejoin.is_some() {
            // Amnesia: we may have promised anything before losing our disk.
            return;
        }
        if ballot < self.acceptor.promised {
            let promised = self.acceptor.promised;
            self.send(from, Message::Nack { ballot, promised });
            return;
        }
        if ballot > self.acceptor.promised {
            let handed_over = handoff.is_some_and(|h| h != Ballot::ZERO && h == self.acceptor.lease_ballot);
            if self.clock.now < self.acceptor.lease_until && self.acceptor.lease_holder != ballot.node && !handed_over {
                // A lease we granted may still be running: stay silent, the
                // candidate retries after its retry interval.
                return;
            }
            self.acceptor.promised = ballot;
            self.persist(Record::Promised(ballot));
            self.on_higher_ballot(ballot);
        }
        let Some((entries, compacted)) = self.promised_entries(from_slot) else {
            // Our accepted values above our commit index do not fit in one
            // message: promise (durably, above) but do not answer; the
            // leader finds its quorum among the others.
            return;
        };
        self.send_after_persist(from, Message::Promise { ballot, from_slot, entries, compacted });
    }

    /// What a promise from `from_slot` reports: the accepted entries, and
    /// the slot up to which the leader must learn what was chosen before it
    /// proposes (our compaction point, or more). The entries are kept
    /// within [`Config::max_message_bytes`](crate::Config::max_message_bytes)
    /// and [`crate::log::MAX_SLOT_LEAD`] slots: when the whole log above
    /// `from_slot` is too much, our chosen prefix is reported as if
    /// compacted (the leader catches up on it, then prepares again from
    /// above it, exactly as when it lies in a snapshot; those slots are
    /// chosen, so nothing a promise must report is left out). `None` if
    /// even the entries above our commit index do not fit.
    fn promised_entries(&self, from_slot: Slot) -> Option<(Vec<PromisedEntry>, Slot)> {
        let budget = self.cfg.max_message_bytes.saturating_sub(ENVELOPE_BYTES);
        let fits = |from: Slot| {
            let mut used = 0usize;
            let mut last = from;
            for (slot, e) in self.log.iter_from(from) {
                used = used.saturating_add(value_size_bound(&e.value).saturating_add(ENTRY_BYTES));
                last = slot;
            }
            used <= budget && last - from < crate::log::MAX_SLOT_LEAD / 2
        };
        let mut compacted = self.log.compacted();
        let mut start = from_slot;
        if !fits(from_slot) {
            compacted = compacted.max(self.learner.commit);
            start = start.max(compacted + 1);
            if !fits(start) {
                return None;
            }
        }
        let entries = self
            .log
            .iter_from(start)
            .map(|(slot, e)| PromisedEntry { slot, ballot: e.ballot, value: e.value.clone(), chosen: e.chosen })
            .collect();
        Some((entries, compacted))
    }

    /// Phase 2b.
    pub(crate) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
        commit: Slot,
    ) {
        self.deposed_by(ballot);
        if self.rejoin.is_some() {
            self.observe_leader(ballot, None);
            self.learn_commit(from, ballot, commit);
            return;
        }
        if ballot < self.acceptor.promised && !self.cfg.plant().accept_lower_ballot() {
            let promised = self.acceptor.promised;
            self.send(from, Message::Nack { ballot, promised });
            return;
        }
        // (Admission: `values` is not empty and its slots do not overflow.)
        let last_slot = first_slot + (values.len() as Slot - 1);
        if !self.log.within_reach(last_slot) {
            // Far ahead of our log: learn what is chosen first (catch-up
            // asks from our commit index on); the leader resends.
            self.learn_commit(from, ballot, commit);
            return;
        }
        if ballot > self.acceptor.promised {
            // Accepting in a ballot is also promising it; the Accepted record
            // below carries the ballot, so no separate Promised record.
            self.acceptor.promised = ballot;
            self.on_higher_ballot(ballot);
        }
        for (i, value) in values.iter().enumerate() {
            self.log.set(first_slot + i as Slot, Entry { ballot, value: value.clone(), chosen: false });
        }
        debug_assert!(
            self.cfg.has_planted_bug() || self.log.get(first_slot).is_none_or(|e| e.ballot <= self.acceptor.promised),
            "accepted ballot exceeds promised"
        );
        self.persist(Record::Accepted { ballot, first_slot, values });
        self.send_after_persist(from, Message::Accepted { ballot, first_slot, last_slot });
        self.learn_commit(from, ballot, commit);
    }

    /// A leader's heartbeat: acknowledge it (and grant a lease) if our
    /// promise is still its ballot.
    pub(crate) fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: Slot, seq: u64, last_slot: Slot) {
        self.deposed_by(ballot);
        if self.rejoin.is_some() {
            self.observe_leader(ballot, Some(last_slot));
            self.learn_commit(from, ballot, commit);
            return;
        }
        if ballot < self.acceptor.promised {
            let promised = self.acceptor.promised;
            self.send(from, Message::Nack { ballot, promised });
            return;
        }
        if ballot == self.acceptor.promised {
            // Grant a lease only to the leader our election follows, and not
            // while we bid against it, so that once the cluster moves on the
            // old leader's lease runs out.
            let lease =
                self.cfg.lease_ticks > 0 && self.election.leader().node == ballot.node && !self.election.bidding();
            if lease {
                self.acceptor.lease_holder = ballot.node;
                self.acceptor.lease_ballot = ballot;
                self.acceptor.lease_until = self.acceptor.lease_until.max(self.clock.now + self.cfg.lease_ticks);
            }
            self.send_after_persist(from, Message::HeartbeatAck { ballot, seq, lease });
        }
        self.learn_commit(from, ballot, commit);
        if !self.members.view.first().is_some_and(|m| m.is_voter(self.cfg.id)) {
            // A learner: tell the leader how far it got, so that it knows
            // when we may be promoted.
            let commit = self.learner.commit;
            self.send(from, Message::Progress { commit });
        }
    }

    /// A commit index from a leader.
    pub(crate) fn on_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        self.deposed_by(ballot);
        if ballot >= self.acceptor.promised {
            self.learn_commit(from, ballot, commit);
        }
    }

    /// A message from a leader with a higher ballot than ours: our
    /// leadership is over, whatever our acceptor promised. (A leader that
    /// went on advertising its commit index after learning chosen values
    /// from a newer leader would make its followers mark its own stale
    /// proposals chosen.)
    pub(crate) fn deposed_by(&mut self, ballot: Ballot) {
        if self.proposer.leader.as_ref().is_some_and(|l| l.ballot < ballot) {
            self.step_down(ballot);
        }
    }

    /// While rejoining: every leader's ballot raises the promise we will
    /// start with.
    fn observe_leader(&mut self, ballot: Ballot, _last_slot: Option<Slot>) {
        if let Some(r) = self.rejoin.as_mut() {
            r.ballot = r.ballot.max(ballot);
        }
    }

    /// Members whose answers a rejoining member needs: enough to meet every
    /// phase-1 quorum and every phase-2 quorum that may have counted on it
    /// (each has at least `q - 1` members besides it).
    fn rejoin_quorum(&self) -> usize {
        self.initial_membership().quorum().rejoin_witnesses()
    }

    /// While rejoining, ask the members that have not answered yet.
    pub(crate) fn rejoin_tick(&mut self) {
        let now = self.clock.now;
        let retry = self.cfg.retry_ticks;
        let Some(r) = self.rejoin.as_mut() else { return };
        if r.asked_at.is_some_and(|t| now < t + retry) {
            return;
        }
        r.asked_at = Some(now);
        let replies = r.replies;
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            if to != self.cfg.id && !replies.contains(i) {
                self.send(to, Message::RejoinQuery);
            }
        }
        self.finish_rejoin_if_caught_up();
    }

    pub(crate) fn on_rejoin_query(&mut self, from: NodeId) {
        if self.rejoin.is_none() {
            let (promised, last_slot) = (self.acceptor.promised, self.log.last_slot());
            self.send(from, Message::RejoinReply { promised, last_slot });
        }
    }

    pub(crate) fn on_rejoin_reply(&mut self, from: NodeId, promised: Ballot, last_slot: Slot) {
        let Some(idx) = self.member_index(from) else { return };
        let Some(r) = self.rejoin.as_mut() else { return };
        if r.replies.insert(idx) {
            r.ballot = r.ballot.max(promised);
            r.target = r.target.max(last_slot);
        }
        self.finish_rejoin_if_caught_up();
    }

    /// A rejoining member votes again once (1) enough members told it what
    /// they promised and accepted that every quorum which may have counted
    /// on its forgotten state includes one of them, (2) it has learned every
    /// slot up to the highest any of them accepted in, and (3) what it
    /// learned is durable. It then promises the highest ballot it heard of,
    /// and bids only above it: any value chosen with its help before the
    /// loss is at or below that slot (a phase-2 quorum that counted on it
    /// meets the members asked), and any ballot a phase-1 quorum granted it
    /// is at or below that promise (Paxos Made Live's rule, made precise).
    /// What remains outside the argument: promises it sent just before the
    /// loss that are still in flight when it asks.
    pub(crate) fn finish_rejoin_if_caught_up(&mut self) {
        let needed = self.rejoin_quorum();
        let Some(r) = self.rejoin.as_ref() else { return };
        if !self.members.configs.chosen.is_empty() {
            // The membership changed: the members asked (the initial ones)
            // need not meet the quorums that may have counted on us. Stay a
            // learner; an operator replaces this member by a new one.
            return;
        }
        if r.replies.len() < needed || self.learner.commit < r.target || self.snapshots.pending.is_some() {
            return;
        }
        let ballot = r.ballot;
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
}
