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

impl Rejoin {
    /// A leader's ballot seen while rejoining raises the promise this
    /// member will start with.
    pub(crate) fn observe_leader(&mut self, ballot: Ballot) {
        self.ballot = self.ballot.max(ballot);
    }

    /// The members of `members` (the initial configuration) to ask again at
    /// `now`, those that have not answered and are not `me`; none if the
    /// last round of questions is younger than `retry` ticks (`None`).
    pub(crate) fn ask(&mut self, now: u64, retry: u64, members: &[NodeId], me: NodeId) -> Option<Vec<NodeId>> {
        if self.asked_at.is_some_and(|t| now < t + retry) {
            return None;
        }
        self.asked_at = Some(now);
        let replies = self.replies;
        Some(
            members
                .iter()
                .enumerate()
                .filter(|&(i, &to)| to != me && !replies.contains(i))
                .map(|(_, &to)| to)
                .collect(),
        )
    }

    /// The member at `index` of the initial configuration answered: it
    /// promised `promised` and has accepted up to `last_slot` (counted once
    /// per member).
    pub(crate) fn reply(&mut self, index: usize, promised: Ballot, last_slot: Slot) {
        if self.replies.insert(index) {
            self.ballot = self.ballot.max(promised);
            self.target = self.target.max(last_slot);
        }
    }

    /// The ballot to promise, and bid above, once this member may vote
    /// again (see [`Replica::finish_rejoin_if_caught_up`]): `needed`
    /// members answered, the commit index `commit` reached the highest slot
    /// any of them accepted in, and no snapshot is still being stored
    /// (`storing_snapshot`).
    pub(crate) fn ready(&self, needed: usize, commit: Slot, storing_snapshot: bool) -> Option<Ballot> {
        (self.replies.len() >= needed && commit >= self.target && !storing_snapshot).then_some(self.ballot)
    }
}

impl<S: StateMachine> Replica<S> {
    /// While rejoining: every leader's ballot raises the promise we will
    /// start with.
    pub(crate) fn observe_leader(&mut self, ballot: Ballot, _last_slot: Option<Slot>) {
        if let Some(r) = self.rejoin.as_mut() {
            r.observe_leader(ballot);
        }
    }

    /// Members whose answers a rejoining member needs: enough to meet every
    /// phase-1 quorum and every phase-2 quorum that may have counted on it
    /// (each has at least `q - 1` members besides it).
    fn rejoin_quorum(&self) -> usize {
        self.cfg.initial_membership().quorum().rejoin_witnesses()
    }

    /// While rejoining, ask the members that have not answered yet.
    pub(crate) fn rejoin_tick(&mut self) {
        let now = self.clock.now;
        let retry = self.cfg.retry_ticks;
        let Some(r) = self.rejoin.as_mut() else { return };
        let Some(ask) = r.ask(now, retry, &self.cfg.members, self.cfg.id) else { return };
        for to in ask {
            self.send(to, Message::RejoinQuery);
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
        r.reply(idx, promised, last_slot);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejoining_member_asks_until_enough_answered_and_votes_at_the_highest_ballot_heard() {
        let members = [1, 2, 3, 4, 5];
        let mut r = Rejoin::default();
        assert_eq!(r.ask(10, 5, &members, 3), Some(vec![1, 2, 4, 5]), "everyone but itself");
        assert_eq!(r.ask(14, 5, &members, 3), None, "not again within the retry interval");
        r.reply(0, Ballot::new(4, 1), 7);
        r.reply(0, Ballot::new(9, 1), 99);
        assert_eq!((r.ballot, r.target), (Ballot::new(4, 1), 7), "a member's answer counts once");
        r.observe_leader(Ballot::new(6, 2));
        r.reply(3, Ballot::new(5, 2), 12);
        assert_eq!(r.ask(15, 5, &members, 3), Some(vec![2, 5]), "only those that have not answered");
        assert_eq!(r.ready(3, 12, false), None, "two answers of the three needed");
        r.reply(4, Ballot::new(2, 5), 3);
        assert_eq!(r.ready(3, 11, false), None, "not caught up to the highest slot accepted");
        assert_eq!(r.ready(3, 12, true), None, "a snapshot still being stored");
        assert_eq!(r.ready(3, 12, false), Some(Ballot::new(6, 2)));
    }
}
