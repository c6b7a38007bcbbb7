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
//! it go.

use crate::ballot::{Ballot, NodeId};
use crate::command::{Slot, Value};
use crate::config::PlantedBug;
use crate::log::Entry;
use crate::message::{Message, PromisedEntry};
use crate::record::Record;
use crate::replica::Replica;
use crate::state_machine::StateMachine;

impl<S: StateMachine> Replica<S> {
    /// Phase 1b.
    pub(crate) fn on_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: Slot) {
        if self.rejoin.is_some() {
            // Amnesia: we may have promised anything before losing our disk.
            return;
        }
        if ballot < self.promised {
            let promised = self.promised;
            self.send(from, Message::Nack { ballot, promised });
            return;
        }
        if ballot > self.promised {
            if self.now < self.lease_until && self.lease_holder != ballot.node {
                // A lease we granted may still be running: stay silent, the
                // candidate retries after its retry interval.
                return;
            }
            self.promised = ballot;
            self.persist(Record::Promised(ballot));
            self.on_higher_ballot(ballot);
        }
        let entries = self
            .log
            .iter_from(from_slot)
            .map(|(slot, e)| PromisedEntry { slot, ballot: e.ballot, value: e.value.clone(), chosen: e.chosen })
            .collect();
        let compacted = self.log.compacted();
        self.send_after_persist(from, Message::Promise { ballot, from_slot, entries, compacted });
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
        if self.rejoin.is_some() {
            self.observe_leader(ballot, None);
            self.learn_commit(from, ballot, commit);
            return;
        }
        if ballot < self.promised && !self.cfg.has_bug(PlantedBug::AcceptLowerBallot) {
            let promised = self.promised;
            self.send(from, Message::Nack { ballot, promised });
            return;
        }
        if values.is_empty() || first_slot == 0 {
            return;
        }
        if ballot > self.promised {
            // Accepting in a ballot is also promising it; the Accepted record
            // below carries the ballot, so no separate Promised record.
            self.promised = ballot;
            self.on_higher_ballot(ballot);
        }
        let last_slot = first_slot + values.len() as Slot - 1;
        for (i, value) in values.iter().enumerate() {
            self.log.set(first_slot + i as Slot, Entry { ballot, value: value.clone(), chosen: false });
        }
        debug_assert!(
            self.cfg.planted.is_some() || self.log.get(first_slot).is_none_or(|e| e.ballot <= self.promised),
            "accepted ballot exceeds promised"
        );
        self.persist(Record::Accepted { ballot, first_slot, values });
        self.send_after_persist(from, Message::Accepted { ballot, first_slot, last_slot });
        self.learn_commit(from, ballot, commit);
    }

    /// A leader's heartbeat: acknowledge it (and grant a lease) if our
    /// promise is still its ballot.
    pub(crate) fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: Slot, seq: u64, last_slot: Slot) {
        if self.rejoin.is_some() {
            self.observe_leader(ballot, Some(last_slot));
            self.learn_commit(from, ballot, commit);
            return;
        }
        if ballot < self.promised {
            let promised = self.promised;
            self.send(from, Message::Nack { ballot, promised });
            return;
        }
        if ballot == self.promised {
            // Grant a lease only to the leader our election follows, and not
            // while we bid against it, so that once the cluster moves on the
            // old leader's lease runs out.
            let lease =
                self.cfg.lease_ticks > 0 && self.election.leader().node == ballot.node && !self.election.bidding();
            if lease {
                self.lease_holder = ballot.node;
                self.lease_until = self.lease_until.max(self.now + self.cfg.lease_ticks);
            }
            self.send_after_persist(from, Message::HeartbeatAck { ballot, seq, lease });
        }
        self.learn_commit(from, ballot, commit);
    }

    /// A commit index from a leader.
    pub(crate) fn on_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        if ballot >= self.promised {
            self.learn_commit(from, ballot, commit);
        }
    }

    /// While rejoining: every leader's ballot raises the promise we will
    /// start with; a heartbeat names the highest slot its leader has
    /// proposed in, which we must learn up to. Any value chosen with our
    /// help before we lost our disk sits at or below that slot (the leader
    /// proposed it, or learned it in phase 1), so once we have learned
    /// that far nothing we forgot can matter.
    fn observe_leader(&mut self, ballot: Ballot, last_slot: Option<Slot>) {
        if let Some(r) = self.rejoin.as_mut() {
            let newer = ballot > r.ballot;
            r.ballot = r.ballot.max(ballot);
            if let Some(last) = last_slot {
                if r.target.is_none() || newer {
                    r.target = Some(r.target.unwrap_or(0).max(last));
                }
            }
        }
    }

    /// A rejoining replica that has learned every slot up to the highest
    /// one its leader had proposed in becomes an acceptor again, promising
    /// no less than the highest ballot it has seen lead (Paxos Made Live's
    /// rule: it takes part again only after catching up with the log).
    pub(crate) fn finish_rejoin_if_caught_up(&mut self) {
        let Some(r) = self.rejoin.as_ref() else { return };
        let Some(target) = r.target else { return };
        // What we caught up on must be durable before we vote on it: a
        // snapshot installed but not yet stored would be lost in a crash.
        if self.commit < target || self.snapshot_pending.is_some() {
            return;
        }
        let ballot = r.ballot;
        self.rejoin = None;
        self.election.set_voter(true);
        if ballot > self.promised {
            self.promised = ballot;
            self.persist(Record::Promised(ballot));
        }
        self.persist(Record::Rejoined);
    }

    /// Our acceptor promised `ballot`: if we were leading with a lower one,
    /// our leadership is over.
    fn on_higher_ballot(&mut self, ballot: Ballot) {
        if self.leader.as_ref().is_some_and(|l| l.ballot < ballot) {
            self.step_down(ballot);
        }
        if ballot.node != self.cfg.id {
            self.set_leader_hint(Some(ballot.node));
        }
    }
}
