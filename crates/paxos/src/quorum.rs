//! Quorum policy: how many acceptors each phase needs.
//!
//! Paxos is safe as long as every phase-1 quorum intersects every phase-2
//! quorum (Howard et al., "Flexible Paxos"): a new leader's phase 1 then always
//! meets at least one acceptor of any phase-2 quorum that chose a value. With
//! quorums counted by size over `n` acceptors that is exactly
//! `q1 + q2 > n`. Majorities are the default; a policy that breaks the rule is
//! refused when it is made, never discovered at run time.

use thiserror::Error;

/// Sizes of the phase-1 and phase-2 quorums over `n` acceptors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QuorumPolicy {
    n: usize,
    q1: usize,
    q2: usize,
}

/// Why a quorum policy was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuorumError {
    /// A cluster needs at least one acceptor.
    #[error("a cluster needs at least one acceptor")]
    NoAcceptors,
    /// A quorum size outside `1..=n`.
    #[error("quorum size {size} is outside 1..={n}")]
    OutOfRange {
        /// The offending size.
        size: usize,
        /// Number of acceptors.
        n: usize,
    },
    /// Phase-1 and phase-2 quorums could be disjoint.
    #[error(
        "phase-1 quorum {q1} and phase-2 quorum {q2} do not intersect over {n} acceptors \
         (need q1 + q2 > n)"
    )]
    NoIntersection {
        /// Phase-1 quorum size.
        q1: usize,
        /// Phase-2 quorum size.
        q2: usize,
        /// Number of acceptors.
        n: usize,
    },
}

impl QuorumPolicy {
    /// Majorities for both phases: `n / 2 + 1`.
    pub fn majority(n: usize) -> Result<QuorumPolicy, QuorumError> {
        QuorumPolicy::flexible(n, n / 2 + 1, n / 2 + 1)
    }

    /// Flexible quorums, refused unless `q1 + q2 > n`.
    pub fn flexible(n: usize, q1: usize, q2: usize) -> Result<QuorumPolicy, QuorumError> {
        if n == 0 {
            return Err(QuorumError::NoAcceptors);
        }
        for size in [q1, q2] {
            if size == 0 || size > n {
                return Err(QuorumError::OutOfRange { size, n });
            }
        }
        if q1 + q2 <= n {
            return Err(QuorumError::NoIntersection { q1, q2, n });
        }
        Ok(QuorumPolicy { n, q1, q2 })
    }

    /// A policy that skips the intersection check. Only the simulator's
    /// planted `small-quorum` bug uses it, to show the checkers catch it.
    #[doc(hidden)]
    pub fn unchecked(n: usize, q1: usize, q2: usize) -> QuorumPolicy {
        QuorumPolicy { n, q1, q2 }
    }

    /// Number of acceptors.
    pub fn acceptors(&self) -> usize {
        self.n
    }

    /// Acceptors a leader needs promises from before it may propose.
    pub fn phase1(&self) -> usize {
        self.q1
    }

    /// Acceptors that must accept a value for it to be chosen. Leases and
    /// read-index confirmations also need this many, since only a set that
    /// meets every phase-1 quorum can hold off every future leader.
    pub fn phase2(&self) -> usize {
        self.q2
    }

    /// Whether `count` promises complete phase 1.
    pub fn is_phase1_quorum(&self, count: usize) -> bool {
        count >= self.q1
    }

    /// Whether `count` acceptances choose a value.
    pub fn is_phase2_quorum(&self, count: usize) -> bool {
        count >= self.q2
    }

    /// Replies a node must hear to be "connected to a quorum" for leader
    /// election: enough to run both phases.
    pub fn connected(&self) -> usize {
        self.q1.max(self.q2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_sizes() {
        for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            let p = QuorumPolicy::majority(n).unwrap();
            assert_eq!((p.phase1(), p.phase2()), (q, q), "n={n}");
        }
    }

    #[test]
    fn flexible_quorums_must_intersect() {
        let table: &[(usize, usize, usize, Result<(), QuorumError>)] = &[
            (5, 4, 2, Ok(())),
            (5, 2, 4, Ok(())),
            (5, 3, 3, Ok(())),
            (5, 2, 3, Err(QuorumError::NoIntersection { q1: 2, q2: 3, n: 5 })),
            (4, 2, 2, Err(QuorumError::NoIntersection { q1: 2, q2: 2, n: 4 })),
            (3, 0, 3, Err(QuorumError::OutOfRange { size: 0, n: 3 })),
            (3, 4, 1, Err(QuorumError::OutOfRange { size: 4, n: 3 })),
            (0, 1, 1, Err(QuorumError::NoAcceptors)),
        ];
        for (n, q1, q2, want) in table {
            let got = QuorumPolicy::flexible(*n, *q1, *q2).map(|_| ());
            assert_eq!(&got, want, "n={n} q1={q1} q2={q2}");
        }
    }

    #[test]
    fn error_message_says_what_to_fix() {
        let e = QuorumPolicy::flexible(5, 2, 2).unwrap_err();
        assert!(e.to_string().contains("q1 + q2 > n"), "{e}");
    }
}
