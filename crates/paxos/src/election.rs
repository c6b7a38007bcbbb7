//! Ballot leader election, separate from replication (after OmniPaxos's BLE).
//!
//! Every round each node pings every member and counts the replies. A node
//! that heard a quorum (itself included) is *connected*. At the end of a
//! round a connected node looks at the connected nodes it heard: the highest
//! ballot among them is the leader. If that is lower than the leader it
//! followed, the leader is gone (or no longer connected), and the node bids
//! by taking a ballot above it.
//!
//! Why this cannot livelock: a node that is not connected to a quorum never
//! bids, so a node behind a partial partition cannot keep disturbing a
//! working leader; and two nodes that bid in the same round resolve in the
//! next one, since ballots are totally ordered and both see the higher one.
//! Priorities break ties earlier: a node defers to a connected node of
//! higher priority instead of bidding against it.
//!
//! Two refinements keep partial connectivity from causing duels:
//! - a reply names the leader its sender heard *directly* in its last round,
//!   so a node that cannot reach the leader itself (the "chained" case,
//!   A - B - C with A and C cut off) still counts it as alive through B and
//!   does not bid against it;
//! - a leader deposed by a higher ballot *withdraws*: it stops standing as a
//!   candidate (so others do not keep following it) and does not bid, until
//!   it sees a new leader or no candidate at all.
//!
//! This module never touches the log; the replica turns "I am the leader with
//! ballot b" into phase 1.

use crate::ballot::{Ballot, NodeId};

/// One node's leader-election state.
#[derive(Debug)]
pub struct Election {
    me: NodeId,
    priority: u32,
    /// This node's own ballot: its bid when it bids.
    ballot: Ballot,
    /// The ballot of the leader this node follows (`ZERO`: none yet).
    leader: Ballot,
    /// Whether this node heard a quorum in its last round.
    connected: bool,
    round: u64,
    /// Deposed by a higher ballot: not a candidate, does not bid.
    withdrawn: bool,
    /// Whether this node heard its leader directly in its last round.
    leader_heard: bool,
    /// Replies of this round.
    replies: Vec<Pong>,
    ticks_left: u64,
}

impl Election {
    /// A node that has seen no leader yet. `start_round` should be at least
    /// the round of any ballot the node has promised, so its bids are fresh.
    pub fn new(me: NodeId, priority: u32, start_round: u64, round_ticks: u64) -> Election {
        Election {
            me,
            priority,
            ballot: Ballot::new(start_round, me),
            leader: Ballot::ZERO,
            connected: false,
            withdrawn: false,
            leader_heard: false,
            round: 0,
            replies: Vec::new(),
            ticks_left: round_ticks,
        }
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

    /// Whether this node heard a quorum in its last round.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// The current round number (for pings).
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Advance one tick. Returns true when the round ends: the caller then
    /// calls [`Election::end_round`] and pings for the next one.
    pub fn tick(&mut self) -> bool {
        self.ticks_left = self.ticks_left.saturating_sub(1);
        self.ticks_left == 0
    }

    /// The reply to a ping of round `round`.
    pub fn pong(&self, round: u64) -> Pong {
        Pong {
            from: self.me,
            round,
            ballot: self.ballot,
            connected: self.connected,
            candidate: !self.withdrawn,
            leader: if self.leader_heard {
                self.leader
            } else {
                Ballot::ZERO
            },
            priority: self.priority,
        }
    }

    /// Record a reply to this round's ping.
    pub fn on_pong(&mut self, pong: Pong) {
        if pong.round == self.round
            && pong.from != self.me
            && !self.replies.iter().any(|r| r.from == pong.from)
        {
            self.replies.push(pong);
        }
    }

    /// This node led with its own ballot and was deposed by a higher one.
    pub fn withdraw(&mut self) {
        self.withdrawn = true;
    }

    /// Close the round: decide connectivity and the leader, maybe bid.
    /// `quorum` is the number of nodes (self included) a connected node must
    /// hear; `next_round_ticks` the length of the next round. Returns the new
    /// leader if it changed.
    pub fn end_round(&mut self, quorum: usize, next_round_ticks: u64) -> Option<Ballot> {
        let before = self.leader;
        self.leader_heard = (self.leader == self.ballot && !self.withdrawn)
            || self
                .replies
                .iter()
                .any(|r| r.from == self.leader.node && self.leader != Ballot::ZERO);
        if self.replies.len() + 1 >= quorum {
            self.check_leader();
            self.connected = true;
        } else {
            self.connected = false;
        }
        self.replies.clear();
        self.round += 1;
        self.ticks_left = next_round_ticks.max(1);
        (self.leader != before).then_some(self.leader)
    }

    fn check_leader(&mut self) {
        let mut top = (self.connected && !self.withdrawn).then_some(self.ballot);
        let mut top_priority_elsewhere = None;
        for r in &self.replies {
            if r.connected {
                if r.candidate {
                    top = top.max(Some(r.ballot));
                    top_priority_elsewhere = top_priority_elsewhere.max(Some(r.priority));
                }
                if r.leader != Ballot::ZERO {
                    top = top.max(Some(r.leader));
                }
            }
        }
        let Some(top) = top else {
            if self.withdrawn {
                // Nobody stands: stop deferring.
                self.withdrawn = false;
                self.bid();
            }
            return;
        };
        if top > self.leader {
            self.leader = top;
            self.withdrawn = false;
        } else if top < self.leader && !self.withdrawn {
            // The leader we followed is silent or cut off from a quorum.
            let outranked = top_priority_elsewhere.is_some_and(|p| p > self.priority);
            if !outranked {
                self.bid();
            }
        }
    }

    fn bid(&mut self) {
        self.ballot = self.leader.max(self.ballot).next_for(self.me);
    }

    /// Phase 1 was refused because an acceptor promised `promised`: take a
    /// ballot above it and keep leading. Returns the new ballot.
    pub fn outbid(&mut self, promised: Ballot) -> Ballot {
        self.ballot = promised.next_for(self.me).max(self.ballot);
        self.leader = self.ballot;
        self.withdrawn = false;
        self.ballot
    }
}

/// A reply to a ping: what the replier stands for and whom it follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Pong {
    /// The replier.
    pub from: NodeId,
    /// The round of the ping answered.
    pub round: u64,
    /// The replier's own ballot (its bid, if it bids).
    pub ballot: Ballot,
    /// Whether the replier heard a quorum in its last round.
    pub connected: bool,
    /// Whether the replier stands as a candidate (it has not withdrawn).
    pub candidate: bool,
    /// The leader the replier heard directly in its last round, or `ZERO`.
    pub leader: Ballot,
    /// The replier's election priority.
    pub priority: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong(from: NodeId, round: u64, ballot: Ballot, connected: bool) -> Pong {
        Pong {
            from,
            round,
            ballot,
            connected,
            candidate: true,
            leader: Ballot::ZERO,
            priority: 0,
        }
    }

    fn round(e: &mut Election, pongs: &[(NodeId, Ballot, bool)]) -> Option<Ballot> {
        let r = e.round();
        for &(n, b, c) in pongs {
            e.on_pong(pong(n, r, b, c));
        }
        e.end_round(2, 10)
    }

    #[test]
    fn a_node_without_a_quorum_never_bids() {
        let mut e = Election::new(1, 0, 0, 10);
        for _ in 0..5 {
            assert_eq!(round(&mut e, &[]), None);
        }
        assert_eq!(e.leader(), Ballot::ZERO);
        assert!(!e.connected());
    }

    #[test]
    fn highest_connected_ballot_becomes_leader() {
        let mut e = Election::new(1, 0, 0, 10);
        round(&mut e, &[(2, Ballot::new(0, 2), false)]);
        let got = round(
            &mut e,
            &[(2, Ballot::new(0, 2), true), (3, Ballot::new(0, 3), true)],
        );
        assert_eq!(got, Some(Ballot::new(0, 3)));
    }

    #[test]
    fn silent_leader_triggers_a_bid_above_it() {
        let mut e = Election::new(1, 0, 0, 10);
        round(&mut e, &[(3, Ballot::new(0, 3), true)]);
        round(&mut e, &[(3, Ballot::new(0, 3), true)]);
        assert_eq!(e.leader(), Ballot::new(0, 3));
        // Node 3 goes silent; node 2 still answers.
        round(&mut e, &[(2, Ballot::new(0, 2), true)]);
        assert!(e.ballot() > Ballot::new(0, 3));
        let got = round(&mut e, &[(2, Ballot::new(0, 2), true)]);
        assert_eq!(got, Some(e.ballot()));
        assert!(e.is_leader());
    }

    #[test]
    fn a_connected_leader_is_kept() {
        let mut e = Election::new(1, 0, 0, 10);
        for _ in 0..5 {
            round(&mut e, &[(3, Ballot::new(4, 3), true)]);
        }
        assert_eq!(e.leader(), Ballot::new(4, 3));
        assert_eq!(e.ballot(), Ballot::new(0, 1));
    }

    #[test]
    fn lower_priority_defers_to_higher() {
        let mut e = Election::new(1, 0, 0, 10);
        round(&mut e, &[(3, Ballot::new(2, 3), true)]);
        round(&mut e, &[(3, Ballot::new(2, 3), true)]);
        // leader 3 silent; node 2 with higher priority is connected.
        let r = e.round();
        e.on_pong(Pong {
            priority: 5,
            ..pong(2, r, Ballot::new(0, 2), true)
        });
        e.end_round(2, 10);
        assert_eq!(
            e.ballot(),
            Ballot::new(0, 1),
            "deferred to the higher priority"
        );
    }

    #[test]
    fn a_leader_heard_through_a_neighbour_is_not_challenged() {
        // Chained: node 1 cannot hear leader 3, but node 2 hears it directly.
        let mut e = Election::new(1, 0, 0, 10);
        round(&mut e, &[(3, Ballot::new(2, 3), true)]);
        round(&mut e, &[(3, Ballot::new(2, 3), true)]);
        for _ in 0..5 {
            let r = e.round();
            e.on_pong(Pong {
                leader: Ballot::new(2, 3),
                ..pong(2, r, Ballot::new(0, 2), true)
            });
            e.end_round(2, 10);
        }
        assert_eq!(e.ballot(), Ballot::new(0, 1), "never bid");
        assert_eq!(e.leader(), Ballot::new(2, 3));
    }

    #[test]
    fn a_withdrawn_leader_neither_stands_nor_bids_until_a_new_leader_appears() {
        let mut e = Election::new(1, 0, 0, 10);
        round(&mut e, &[(2, Ballot::new(0, 2), false)]);
        e.outbid(Ballot::new(3, 2));
        assert!(e.is_leader());
        e.withdraw();
        assert!(!e.pong(0).candidate);
        round(&mut e, &[(2, Ballot::new(0, 2), false)]);
        assert!(!e.is_leader() || e.ballot() == Ballot::new(3, 1));
        let got = round(&mut e, &[(2, Ballot::new(5, 2), true)]);
        assert_eq!(got, Some(Ballot::new(5, 2)));
        assert!(e.pong(0).candidate);
    }
}
