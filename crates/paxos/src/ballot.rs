//! Ballots: the totally ordered, unique proposal numbers of Paxos.
//!
//! A ballot is `(round, node)`. Rounds order ballots; the node id breaks
//! ties, so two proposers can never use the same ballot (the paper's
//! "disjoint sets of proposal numbers"). [`Ballot::ZERO`] is below every
//! ballot a proposer can use and stands for "nothing promised yet".
//!
//! Rounds are bounded: a ballot whose round exceeds [`Ballot::MAX_ROUND`],
//! or lies more than [`Ballot::MAX_ROUND_STEP`] above the highest round a
//! replica has seen, is refused on arrival (no member could have made it),
//! so a forged ballot can neither wrap a round nor use up the rounds left.

use std::fmt;

pub use crate::types::NodeId;

/// A totally ordered, globally unique proposal number.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    /// Compared first.
    pub round: u64,
    /// Compared second; makes ballots of different proposers distinct.
    pub node: NodeId,
}

impl Ballot {
    /// Below every real ballot: the state of an acceptor that promised nothing.
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };

    /// No ballot with a higher round is ever used or accepted from a peer.
    ///
    /// Rounds grow by one per bid, so a cluster bidding a thousand times a
    /// second needs over a hundred million years to get here; what the
    /// bound buys is that [`Ballot::next_for`] of any ballot a replica holds
    /// always exists, far from `u64::MAX`.
    pub const MAX_ROUND: u64 = 1 << 62;

    /// How far above the highest round a replica has seen a peer's ballot
    /// may lie and still be believed.
    ///
    /// A correct cluster's highest round grows by at most one per bid, and
    /// a node bids at most once per election round (plus once per
    /// leadership transfer) and only while connected to a quorum: 2^24
    /// rounds is about 97 days of a cluster re-electing every half second
    /// without a break while this replica was away. A forged ballot can
    /// raise what a replica has seen by at most this much per message, so
    /// using up the rounds below [`Ballot::MAX_ROUND`] takes 2^38 messages,
    /// each costing the victim a durable write it makes at its own pace.
    pub const MAX_ROUND_STEP: u64 = 1 << 24;

    /// The ballot `(round, node)`.
    pub const fn new(round: u64, node: NodeId) -> Ballot {
        Ballot { round, node }
    }

    /// The smallest ballot owned by `node` that is greater than `self`, or
    /// `None` if its round would pass [`Ballot::MAX_ROUND`] (then nobody
    /// may bid above `self`).
    pub fn next_for(self, node: NodeId) -> Option<Ballot> {
        let next = if node > self.node {
            Ballot::new(self.round.max(1), node)
        } else {
            Ballot::new(self.round.checked_add(1)?, node)
        };
        (next.round <= Ballot::MAX_ROUND).then_some(next)
    }

    /// Whether a replica that has seen rounds up to `seen` may believe a
    /// peer that names this ballot: its round is at most
    /// [`Ballot::MAX_ROUND`] and at most [`Ballot::MAX_ROUND_STEP`] above
    /// `seen`.
    pub fn plausible(self, seen: u64) -> bool {
        self.round <= Ballot::MAX_ROUND && self.round <= seen.saturating_add(Ballot::MAX_ROUND_STEP)
    }
}

impl fmt::Debug for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round, self.node)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        assert!(Ballot::new(1, 9) < Ballot::new(2, 1));
        assert!(Ballot::new(2, 1) < Ballot::new(2, 3));
        assert!(Ballot::ZERO < Ballot::new(0, 1));
    }

    #[test]
    fn next_for_is_the_smallest_greater_ballot_of_that_node() {
        let b = Ballot::new(3, 2);
        assert_eq!(b.next_for(5), Some(Ballot::new(3, 5)));
        assert_eq!(b.next_for(1), Some(Ballot::new(4, 1)));
        assert_eq!(b.next_for(2), Some(Ballot::new(4, 2)));
        assert!(Ballot::ZERO.next_for(1) > Some(Ballot::ZERO));
        assert_eq!(Ballot::ZERO.next_for(1), Some(Ballot::new(1, 1)));
    }

    #[test]
    fn next_for_never_wraps_and_stops_at_the_highest_round() {
        assert_eq!(Ballot::new(u64::MAX, 3).next_for(2), None);
        assert_eq!(Ballot::new(u64::MAX - 1, 3).next_for(2), None);
        assert_eq!(Ballot::new(Ballot::MAX_ROUND, 3).next_for(2), None);
        assert_eq!(Ballot::new(Ballot::MAX_ROUND, 3).next_for(4), Some(Ballot::new(Ballot::MAX_ROUND, 4)));
        assert_eq!(Ballot::new(Ballot::MAX_ROUND - 1, 3).next_for(2), Some(Ballot::new(Ballot::MAX_ROUND, 2)));
    }

    #[test]
    fn a_ballot_far_above_every_round_seen_is_implausible() {
        assert!(Ballot::new(5, 2).plausible(0));
        assert!(Ballot::new(Ballot::MAX_ROUND_STEP + 7, 2).plausible(7));
        assert!(!Ballot::new(Ballot::MAX_ROUND_STEP + 8, 2).plausible(7));
        assert!(!Ballot::new(u64::MAX, 2).plausible(u64::MAX));
        assert!(!Ballot::new(u64::MAX - 1, 2).plausible(u64::MAX - 1));
        assert!(Ballot::new(Ballot::MAX_ROUND, 2).plausible(Ballot::MAX_ROUND));
    }
}
