//! Rejoining after losing the disk: a member that forgot what it promised
//! and accepted must not vote until it has heard enough of the others (Paxos
//! Made Live, section 5.1, made precise below). Until then it is a learner;
//! what it must never do is answer a Prepare or an Accept.

use crate::ballot::Ballot;
use crate::config::Config;
use crate::message::Message;
use crate::outbox::Net;
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
    /// again: `needed` members answered, the commit index `commit` reached
    /// the highest slot any of them accepted in, and no snapshot is still
    /// being stored (`storing_snapshot`).
    ///
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
    /// loss that are still in flight when it asks. (The router asks only
    /// while the membership is the initial one: after a change, the members
    /// asked need not meet the quorums that may have counted on it.)
    pub(crate) fn ready(&self, needed: usize, commit: Slot, storing_snapshot: bool) -> Option<Ballot> {
        (self.replies.len() >= needed && commit >= self.target && !storing_snapshot).then_some(self.ballot)
    }
}

/// Members whose answers a rejoining member of the cluster configured by
/// `cfg` needs: enough to meet every phase-1 quorum and every phase-2
/// quorum of the initial configuration that may have counted on it (each
/// has at least `q - 1` members besides it).
pub(crate) fn witnesses_needed(cfg: &Config) -> usize {
    cfg.initial_membership().quorum().rejoin_witnesses()
}

impl Rejoin {
    /// While rejoining, at `now`: ask the members of the initial
    /// configuration that have not answered yet (once per retry interval).
    /// Whether a round of questions went out.
    pub(crate) fn tick<O>(&mut self, net: &mut Net<'_, O>, cfg: &Config, now: u64) -> bool {
        let Some(ask) = self.ask(now, cfg.retry_ticks, &cfg.members, cfg.id) else { return false };
        for to in ask {
            net.send(to, Message::RejoinQuery);
        }
        true
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
