//! Ballot leader election, separate from replication (after OmniPaxos's BLE).
//!
//! Every node pings every member each heartbeat and keeps the latest reply
//! from each. A node that has fresh replies (younger than one election
//! round) from a quorum, itself included, is *connected*. At the end of each
//! round a connected node looks at the connected candidates it hears: the
//! highest ballot among them is the leader. If that is lower than the leader
//! it followed, the leader is gone (or no longer connected), and the node
//! bids: it takes a ballot above every one it has seen and leads with it.
//!
//! Why this cannot livelock: a node that is not connected to a quorum never
//! bids, so a node behind a partial partition cannot keep disturbing a
//! working leader; and two nodes that bid in the same round resolve in the
//! next one, since ballots are totally ordered and both see the higher one.
//! Priorities break ties earlier: a node defers to a connected node of
//! higher priority instead of bidding against it.
//!
//! Two refinements keep partial connectivity from causing duels:
//! - a reply names the leader its sender hears *directly*, so a node that
//!   cannot reach the leader itself (the "chained" case, A - B - C with A and
//!   C cut off) still counts it as alive through B and does not bid;
//! - a leader deposed by a higher ballot *withdraws*: it stops standing as a
//!   candidate (so others do not keep following it) and does not bid, until
//!   it sees a new leader or no candidate at all.
//!
//! This module never touches the log; the replica turns "I am the leader with
//! ballot b" into phase 1.

use crate::ballot::Ballot;
use crate::quorum::Joint;
use crate::types::NodeId;

/// One node's leader-election state.
#[derive(Clone, Debug)]
pub struct Election {
    me: NodeId,
    priority: u32,
    /// This node's own ballot: its bid when it bids.
    ballot: Ballot,
    /// The ballot of the leader this node follows (`ZERO`: none yet).
    leader: Ballot,
    /// Deposed by a higher ballot: not a candidate, does not bid.
    withdrawn: bool,
    /// Whether this node may lead at all (a replica rejoining after losing
    /// its disk may not until it has caught up).
    voter: bool,
    /// Highest promise that refused our phase 1 this round.
    refused: Ballot,
    /// Highest ballot of another node our acceptor promised this round.
    promised: Ballot,
    /// Latest reply from each peer, with the tick it arrived.
    heard: Vec<(u64, Pong)>,
    /// A reply older than this many ticks is stale.
    window: u64,
    /// The number of the last round of pings sent (echoed in the pongs).
    ping_round: u64,
    /// The quorums of the configurations in force and pending: a connected
    /// node hears (itself included, if a voter) enough of each.
    groups: Joint<'static>,
    ticks_left: u64,
}

impl Election {
    /// A node that has seen no leader yet. `start_round` must exceed the
    /// round of every ballot the node may have used before, so its bids are
    /// fresh; `window` is the election round length in ticks; `groups` the
    /// quorums whose members a connected node hears (see
    /// [`Election::set_groups`]).
    pub fn new(me: NodeId, priority: u32, start_round: u64, window: u64, groups: Joint<'static>) -> Election {
        Election {
            me,
            priority,
            ballot: Ballot::new(start_round, me),
            leader: Ballot::ZERO,
            withdrawn: false,
            voter: true,
            refused: Ballot::ZERO,
            promised: Ballot::ZERO,
            heard: Vec::new(),
            window: window.max(1),
            ping_round: 0,
            groups,
            ticks_left: window.max(1),
        }
    }

    /// The number of the next round of pings to send.
    pub fn next_ping_round(&mut self) -> u64 {
        self.ping_round += 1;
        self.ping_round
    }

    /// The leader this node follows (`Ballot::ZERO` if none).
    pub fn leader(&self) -> Ballot {
        self.leader
    }

    /// This node's own ballot.
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// Whether this node believes it is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader == self.ballot && self.leader != Ballot::ZERO
    }

    /// Whether this node is bidding against the leader it followed.
    pub fn bidding(&self) -> bool {
        self.leader != Ballot::ZERO && self.ballot > self.leader
    }

    fn fresh(&self, now: u64) -> impl Iterator<Item = &Pong> {
        let window = self.window;
        self.heard.iter().filter(move |(at, _)| at + window > now).map(|(_, p)| p)
    }

    /// Whether this node hears a quorum now.
    pub fn connected(&self, now: u64) -> bool {
        let mut hears: Vec<NodeId> = self.fresh(now).map(|p| p.from).collect();
        hears.push(self.me);
        self.groups.is_connected(&hears)
    }

    /// Connectivity by configuration: the quorums of each configuration in
    /// force or pending, each of which a connected node must hear enough
    /// members of ([`crate::quorum::Quorum::connected_size`]).
    pub fn set_groups(&mut self, groups: Joint<'static>) {
        self.groups = groups;
    }

    /// The peers whose latest reply arrived less than `ticks` (at most one
    /// election round) before tick `now`.
    pub fn heard_within(&self, now: u64, ticks: u64) -> Vec<NodeId> {
        let ticks = ticks.min(self.window);
        self.heard.iter().filter(|(at, _)| at + ticks > now).map(|(_, p)| p.from).collect()
    }

    /// Whether `node` is a voter of a configuration this node counts in
    /// (any, with no configuration given). A leader named by a peer that is no voter of
    /// ours cannot lead us: we ignore its messages, so its phase 1 may
    /// never finish. Found by swarm testing (seed 12623 on 3 nodes): two
    /// members of the configuration {1, 3, 5} followed removed node 7,
    /// which node 5 (behind, still counting it) named as its leader, and
    /// nobody bid again.
    fn may_lead(&self, node: NodeId) -> bool {
        self.groups.configs().is_empty() || self.groups.contains(node)
    }

    fn leader_heard(&self, now: u64) -> bool {
        if self.leader == Ballot::ZERO {
            return false;
        }
        // Hearing the leader's node is not enough: it must still stand with
        // that ballot (it may have restarted, or lost its disk).
        (self.is_leader() && !self.withdrawn)
            || self.fresh(now).any(|p| p.from == self.leader.node && p.ballot == self.leader && p.candidate)
    }

    /// Advance to tick `now`. Returns true when a round ends: the caller
    /// then calls [`Election::end_round`].
    pub fn tick(&mut self) -> bool {
        self.ticks_left = self.ticks_left.saturating_sub(1);
        self.ticks_left == 0
    }

    /// The reply to a ping.
    pub fn pong(&self, round: u64, now: u64) -> Pong {
        Pong {
            from: self.me,
            round,
            ballot: self.ballot,
            connected: self.connected(now),
            candidate: !self.withdrawn && self.voter,
            leader: if self.leader_heard(now) { self.leader } else { Ballot::ZERO },
            priority: self.priority,
        }
    }

    /// Record a reply that arrived at tick `now`.
    pub fn on_pong(&mut self, pong: Pong, now: u64) {
        if pong.from == self.me {
            return;
        }
        match self.heard.iter_mut().find(|(_, p)| p.from == pong.from) {
            Some(slot) => *slot = (now, pong),
            None => self.heard.push((now, pong)),
        }
    }

    /// This node led with its own ballot and was deposed by a higher one.
    pub fn withdraw(&mut self) {
        self.withdrawn = true;
    }

    /// Bid, from now on, with rounds of at least `round` (a replica that
    /// lost its disk must not reuse a ballot it may have used before).
    pub fn raise_round(&mut self, round: u64) {
        if self.ballot.round < round {
            self.ballot = Ballot::new(round, self.me);
        }
    }

    /// Allow or forbid this node to stand for leader.
    pub fn set_voter(&mut self, voter: bool) {
        self.voter = voter;
    }

    /// Close the round at tick `now`: decide the leader, maybe bid.
    /// `next_round_ticks` is the length of the next round. Returns the new
    /// leader if it changed.
    pub fn end_round(&mut self, now: u64, next_round_ticks: u64) -> Option<Ballot> {
        let before = self.leader;
        if self.connected(now) {
            self.check_leader(now);
            if self.is_leader() && self.refused > self.ballot {
                // (No ballot above the refusal once rounds are used up:
                // only a forged ballot gets there; we cannot lead then.)
                if let Some(b) = self.refused.next_for(self.me) {
                    self.ballot = b;
                    self.leader = b;
                }
            }
        }
        self.refused = Ballot::ZERO;
        self.promised = Ballot::ZERO;
        self.ticks_left = next_round_ticks.max(1);
        (self.leader != before).then_some(self.leader)
    }

    fn check_leader(&mut self, now: u64) {
        let stands = !self.withdrawn && self.voter;
        let mut top = stands.then_some(self.ballot);
        if self.promised != Ballot::ZERO {
            // A bidder our acceptor promised this round counts as a
            // candidate even before its reply reaches us.
            top = top.max(Some(self.promised));
        }
        let mut top_priority_elsewhere = None;
        for r in self.fresh(now) {
            if r.connected {
                if r.candidate && self.may_lead(r.ballot.node) {
                    top = top.max(Some(r.ballot));
                    top_priority_elsewhere = top_priority_elsewhere.max(Some(r.priority));
                }
                if r.leader != Ballot::ZERO && self.may_lead(r.leader.node) {
                    top = top.max(Some(r.leader));
                }
            }
        }
        let Some(top) = top else {
            if self.withdrawn && self.voter {
                // Nobody stands: stop deferring.
                self.withdrawn = false;
                self.bid();
            }
            return;
        };
        if top > self.leader {
            self.leader = top;
            self.withdrawn = false;
        } else if top < self.leader && stands {
            // The leader we followed is silent or cut off from a quorum.
            let outranked = top_priority_elsewhere.is_some_and(|p| p > self.priority);
            if !outranked {
                self.bid();
            }
        }
    }

    /// Take a ballot above every one seen and lead with it at once: it is
    /// higher than every candidate heard, so the others adopt it at the end
    /// of their round, and a rival bidding in the same round is resolved
    /// then (the lower one adopts the higher).
    fn bid(&mut self) {
        // Rounds used up (only a forged ballot could get there): no bid.
        if let Some(b) = self.leader.max(self.ballot).next_for(self.me) {
            self.ballot = b;
            self.leader = b;
        }
    }

    /// The leader hands leadership over to this node (a leadership
    /// transfer): bid at once, without waiting for the round to end, with a
    /// ballot above `above` and every ballot seen, and stand again if this
    /// node had withdrawn. The others adopt it at the end of their round as
    /// the highest connected candidate; the old leader, deposed by it,
    /// withdraws, so nobody duels. Returns the new ballot, or `None` (and
    /// changes nothing) if rounds are used up.
    pub fn take_over(&mut self, above: Ballot) -> Option<Ballot> {
        let b = self.leader.max(self.ballot).max(self.refused).max(above).next_for(self.me)?;
        self.withdrawn = false;
        self.ballot = b;
        self.leader = b;
        Some(b)
    }

    /// The highest round among this node's own ballot and the leader it
    /// follows (part of what a replica has seen; see [`Ballot::plausible`]).
    pub fn highest_round(&self) -> u64 {
        self.ballot.round.max(self.leader.round)
    }

    /// Whether this node may stand for leader.
    pub fn is_voter(&self) -> bool {
        self.voter
    }

    /// Our acceptor promised `ballot`, another node's bid (its Prepare, or
    /// an Accept in it). Until the round ends it counts as a candidate,
    /// even if no reply of that node shows it yet: a node that takes over
    /// by a leadership transfer bids between two of our pings, and the
    /// leader it deposes withdraws at once, so without this a follower
    /// whose round ends in between would see nobody above its own ballot
    /// and bid too. (If the bidder is gone, the next round finds it silent
    /// and bids as usual.)
    pub fn observe_promise(&mut self, ballot: Ballot) {
        if ballot.node != self.me {
            self.promised = self.promised.max(ballot);
        }
    }

    /// Phase 1 was refused because an acceptor promised `promised`. If at
    /// the end of this round we still lead (no live rival with a higher
    /// ballot showed up), we take a ballot above it: the promise belonged to
    /// a leader that is gone. Deferring to the round's end is what keeps two
    /// live proposers from outbidding each other forever.
    pub fn refused(&mut self, promised: Ballot) {
        self.refused = self.refused.max(promised);
    }
}

/// A reply to a ping: what the replier stands for and whom it follows.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Pong {
    /// The replier.
    pub from: NodeId,
    /// Echo of the ping's number.
    pub round: u64,
    /// The replier's own ballot (its bid, if it bids).
    pub ballot: Ballot,
    /// Whether the replier hears a quorum.
    pub connected: bool,
    /// Whether the replier stands as a candidate (it has not withdrawn).
    pub candidate: bool,
    /// The leader the replier hears directly, or `ZERO`.
    pub leader: Ballot,
    /// The replier's election priority.
    pub priority: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::Quorum;

    /// Majorities of {1, 2, 3}.
    fn three() -> Joint<'static> {
        Joint::new(vec![Quorum::new(&[1, 2, 3], 2, 2)])
    }

    fn pong(from: NodeId, ballot: Ballot, connected: bool) -> Pong {
        Pong { from, round: 0, ballot, connected, candidate: true, leader: Ballot::ZERO, priority: 0 }
    }

    /// One election round at node 1 (quorum 2 of 3, round of 10 ticks)
    /// in which it hears `pongs`.
    struct Node {
        e: Election,
        now: u64,
    }

    impl Node {
        fn new() -> Node {
            Node { e: Election::new(1, 0, 0, 10, three()), now: 0 }
        }
        fn round(&mut self, pongs: &[Pong]) -> Option<Ballot> {
            self.now += 10;
            for &p in pongs {
                self.e.on_pong(p, self.now);
            }
            self.e.end_round(self.now, 10)
        }
    }

    #[test]
    fn a_node_without_a_quorum_never_bids() {
        let mut n = Node::new();
        for _ in 0..5 {
            assert_eq!(n.round(&[]), None);
        }
        assert_eq!(n.e.leader(), Ballot::ZERO);
        assert!(!n.e.connected(n.now));
    }

    #[test]
    fn highest_connected_ballot_becomes_leader() {
        let mut n = Node::new();
        let got = n.round(&[pong(2, Ballot::new(0, 2), true), pong(3, Ballot::new(0, 3), true)]);
        assert_eq!(got, Some(Ballot::new(0, 3)));
    }

    #[test]
    fn unconnected_nodes_are_not_candidates() {
        let mut n = Node::new();
        let got = n.round(&[pong(2, Ballot::new(0, 2), true), pong(3, Ballot::new(0, 3), false)]);
        assert_eq!(got, Some(Ballot::new(0, 2)));
    }

    #[test]
    fn silent_leader_triggers_a_bid_above_it() {
        let mut n = Node::new();
        n.round(&[pong(3, Ballot::new(0, 3), true)]);
        assert_eq!(n.e.leader(), Ballot::new(0, 3));
        // Node 3 goes silent; node 2 still answers.
        let got = n.round(&[pong(2, Ballot::new(0, 2), true)]);
        assert!(n.e.ballot() > Ballot::new(0, 3));
        assert_eq!(got, Some(n.e.ballot()));
        assert!(n.e.is_leader());
        assert_eq!(n.round(&[pong(2, Ballot::new(0, 2), true)]), None, "keeps leading");
    }

    #[test]
    fn a_connected_leader_is_kept() {
        let mut n = Node::new();
        for _ in 0..5 {
            n.round(&[pong(3, Ballot::new(4, 3), true)]);
        }
        assert_eq!(n.e.leader(), Ballot::new(4, 3));
        assert_eq!(n.e.ballot(), Ballot::new(0, 1));
    }

    #[test]
    fn lower_priority_defers_to_higher() {
        let mut n = Node::new();
        n.round(&[pong(3, Ballot::new(2, 3), true)]);
        // Leader 3 silent; node 2 with a higher priority is connected.
        n.round(&[Pong { priority: 5, ..pong(2, Ballot::new(0, 2), true) }]);
        assert_eq!(n.e.ballot(), Ballot::new(0, 1), "deferred to the higher priority");
    }

    #[test]
    fn a_leader_heard_through_a_neighbour_is_not_challenged() {
        // Chained: node 1 cannot hear leader 3, but node 2 hears it directly.
        let mut n = Node::new();
        n.round(&[pong(3, Ballot::new(2, 3), true)]);
        for _ in 0..5 {
            n.round(&[Pong { leader: Ballot::new(2, 3), ..pong(2, Ballot::new(0, 2), true) }]);
        }
        assert_eq!(n.e.ballot(), Ballot::new(0, 1), "never bid");
        assert_eq!(n.e.leader(), Ballot::new(2, 3));
    }

    #[test]
    fn a_leader_that_is_no_voter_of_ours_is_not_followed() {
        // Node 1 counts in {1, 2, 3}; node 2, behind, names removed node 7
        // as its leader. It is not followed (seed 12623).
        let mut n = Node::new();
        n.e.set_groups(three());
        let rumour = Pong { leader: Ballot::new(7, 7), ..pong(2, Ballot::new(0, 2), true) };
        n.round(&[rumour]);
        assert_eq!(n.e.leader(), Ballot::new(0, 2), "the highest candidate of ours leads");
        // The same rumour about a voter of ours is followed (the chained
        // case).
        let mut n = Node::new();
        n.e.set_groups(three());
        n.round(&[Pong { leader: Ballot::new(7, 3), ..pong(2, Ballot::new(0, 2), true) }]);
        assert_eq!(n.e.leader(), Ballot::new(7, 3));
    }

    #[test]
    fn a_withdrawn_leader_neither_stands_nor_bids_until_a_new_leader_appears() {
        let mut n = Node { e: Election::new(1, 0, 3, 10, three()), now: 0 };
        n.round(&[pong(2, Ballot::new(0, 2), true)]);
        assert!(n.e.is_leader(), "node 1 has the highest connected ballot");
        n.e.withdraw();
        assert!(!n.e.pong(0, n.now).candidate);
        n.round(&[pong(2, Ballot::new(0, 2), true)]);
        assert_eq!(n.e.ballot(), Ballot::new(3, 1), "a withdrawn node does not bid");
        let got = n.round(&[pong(2, Ballot::new(5, 2), true)]);
        assert_eq!(got, Some(Ballot::new(5, 2)));
        assert!(n.e.pong(0, n.now).candidate);
    }

    #[test]
    fn a_refused_leader_outbids_only_if_no_live_rival_appears() {
        let mut n = Node { e: Election::new(1, 0, 3, 10, three()), now: 0 };
        n.round(&[pong(2, Ballot::new(0, 2), true)]);
        assert!(n.e.is_leader());
        // Refused by a promise to a node that is gone: outbid it.
        n.e.refused(Ballot::new(7, 3));
        n.round(&[pong(2, Ballot::new(0, 2), true)]);
        assert_eq!(n.e.ballot(), Ballot::new(8, 1));
        assert!(n.e.is_leader());
        // Refused by a live rival: adopt it instead.
        n.e.refused(Ballot::new(9, 2));
        let got = n.round(&[pong(2, Ballot::new(9, 2), true)]);
        assert_eq!(got, Some(Ballot::new(9, 2)));
        assert_eq!(n.e.ballot(), Ballot::new(8, 1));
    }

    #[test]
    fn a_node_told_to_take_over_bids_at_once_and_the_others_follow_it() {
        let mut n = Node::new();
        n.round(&[pong(3, Ballot::new(4, 3), true)]);
        n.e.withdraw();
        let b = n.e.take_over(Ballot::new(4, 3)).unwrap();
        assert!(b > Ballot::new(4, 3));
        assert!(n.e.is_leader() && n.e.pong(0, n.now).candidate, "stands again, and leads");
        // The old leader still answers with its ballot: no duel.
        assert_eq!(n.round(&[pong(3, Ballot::new(4, 3), true)]), None);
        assert!(n.e.is_leader());
        // A follower of the old leader adopts the higher ballot.
        let mut f = Node { e: Election::new(2, 0, 0, 10, three()), now: 0 };
        f.round(&[pong(3, Ballot::new(4, 3), true)]);
        let got = f.round(&[pong(3, Ballot::new(4, 3), true), pong(1, b, true)]);
        assert_eq!(got, Some(b));
    }

    #[test]
    fn a_ballot_promised_this_round_is_followed_even_before_its_reply_arrives() {
        let mut n = Node::new();
        n.round(&[pong(3, Ballot::new(4, 3), true)]);
        // The leader withdraws (deposed by node 2's transfer bid), and node
        // 2's replies still show its old ballot; our acceptor promised 2's.
        n.e.observe_promise(Ballot::new(5, 2));
        let withdrawn = Pong { candidate: false, ..pong(3, Ballot::new(4, 3), true) };
        let got = n.round(&[withdrawn, pong(2, Ballot::new(0, 2), true)]);
        assert_eq!(got, Some(Ballot::new(5, 2)), "followed, not outbid");
        assert_eq!(n.e.ballot(), Ballot::new(0, 1));
    }

    #[test]
    fn replies_older_than_a_round_are_forgotten() {
        let mut n = Node::new();
        n.round(&[pong(2, Ballot::new(0, 2), true)]);
        assert!(n.e.connected(n.now));
        n.now += 10;
        assert!(!n.e.connected(n.now));
    }
}
