//! Ballots: the totally ordered, unique proposal numbers of Paxos.
//!
//! A ballot is `(round, node)`. Rounds order ballots; the node id breaks
//! ties, so two proposers can never use the same ballot (the paper's
//! "disjoint sets of proposal numbers"). [`Ballot::ZERO`] is below every
//! ballot a proposer can use and stands for "nothing promised yet".

use std::fmt;

/// Identifies one replica (member) of the cluster. Never zero.
pub type NodeId = u64;

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

    /// The ballot `(round, node)`.
    pub const fn new(round: u64, node: NodeId) -> Ballot {
        Ballot { round, node }
    }

    /// The smallest ballot owned by `node` that is greater than `self`.
    pub fn next_for(self, node: NodeId) -> Ballot {
        if node > self.node {
            Ballot::new(self.round.max(1), node)
        } else {
            Ballot::new(self.round + 1, node)
        }
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
        assert_eq!(b.next_for(5), Ballot::new(3, 5));
        assert_eq!(b.next_for(1), Ballot::new(4, 1));
        assert_eq!(b.next_for(2), Ballot::new(4, 2));
        assert!(Ballot::ZERO.next_for(1) > Ballot::ZERO);
        assert_eq!(Ballot::ZERO.next_for(1), Ballot::new(1, 1));
    }
}
