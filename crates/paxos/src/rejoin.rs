//! Rejoining after losing the disk: a member that forgot what it promised
//! and accepted must not vote until it has heard enough of the others (Paxos
//! Made Live, section 5.1, made precise below). Until then it is a learner;
//! what it must never do is answer a Prepare or an Accept.

use crate::ballot::Ballot;
use crate::message::Message;
use crate::record::Record;
use crate::replica::Replica;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Slot};

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

impl<S: StateMachine> Replica<S> {
    /// While rejoining: every leader's ballot raises the promise we will
    /// start with.
    pub(crate) fn observe_leader(&mut self, ballot: Ballot, _last_slot: Option<Slot>) {
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
}
