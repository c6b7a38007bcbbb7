//! Quorum policy: how many acceptors each phase needs.
//!
//! Paxos is safe as long as every phase-1 quorum intersects every phase-2
//! quorum (Howard et al., "Flexible Paxos"): a new leader's phase 1 then always
//! meets at least one acceptor of any phase-2 quorum that chose a value. With
//! quorums counted by size over `n` acceptors that is exactly
//! `q1 + q2 > n`. Majorities are the default; a policy that breaks the rule is
//! refused when it is made, never discovered at run time.
//!
//! [`QuorumPolicy`] is the configured sizes; [`Quorum`] counts for one
//! configuration and [`Joint`] for the set of configurations a membership
//! change spans (after raft-rs's `quorum` module). The core counts nothing by
//! hand: every "is this a quorum" and "what has a quorum reached" is a call
//! here, so a planted bug that changes the counting wraps these types in one
//! place (`plant.rs`) rather than every caller.

use crate::types::NodeId;
use std::borrow::Cow;
use std::collections::BTreeSet;
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

    /// A policy that skips the intersection check: the placeholder of a
    /// configuration with no members, which validation then refuses.
    pub(crate) fn unchecked(n: usize, q1: usize, q2: usize) -> QuorumPolicy {
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
}

/// One configuration's quorum system: the acceptors that count, and how
/// many of them each phase needs. Every count the replica makes (promises,
/// acceptances, heartbeat acknowledgements, connectivity) goes through one
/// of these, or through a [`Joint`] of them while a change is in flight.
///
/// The members are borrowed from the configuration they come from (or
/// owned, for the election's long-lived copy: [`Quorum::into_owned`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Quorum<'a> {
    voters: Cow<'a, [NodeId]>,
    q1: usize,
    q2: usize,
}

impl<'a> Quorum<'a> {
    /// The quorums of `voters` with phase-1 size `q1` and phase-2 size `q2`.
    /// The sizes are taken as given: a configuration validates them (with
    /// [`QuorumPolicy::flexible`]) before it is used.
    pub fn new(voters: &'a [NodeId], q1: usize, q2: usize) -> Quorum<'a> {
        Quorum { voters: Cow::Borrowed(voters), q1, q2 }
    }

    /// The same from owned or borrowed members (the planted `learner-votes`
    /// bug counts more members than the voters).
    #[cfg(feature = "planting")]
    pub(crate) fn from_parts(voters: Cow<'a, [NodeId]>, q1: usize, q2: usize) -> Quorum<'a> {
        Quorum { voters, q1, q2 }
    }

    /// A copy that owns its members.
    pub fn into_owned(self) -> Quorum<'static> {
        Quorum { voters: Cow::Owned(self.voters.into_owned()), q1: self.q1, q2: self.q2 }
    }

    /// The members that count, in order.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// Promises needed to finish phase 1.
    pub fn phase1_size(&self) -> usize {
        self.q1
    }

    /// Acceptances needed to choose a value; also the acknowledgements a
    /// lease or a read confirmation needs.
    pub fn phase2_size(&self) -> usize {
        self.q2
    }

    /// Members (a node itself included) a node must hear to be connected:
    /// enough to run both phases.
    pub fn connected_size(&self) -> usize {
        self.q1.max(self.q2)
    }

    /// How many of `set` count here (each member once, however often `set`
    /// names it; ids that are not members are ignored).
    pub fn count(&self, set: &[NodeId]) -> usize {
        self.voters.iter().filter(|v| set.contains(v)).count()
    }

    /// Whether the promises of `set` finish phase 1.
    pub fn is_phase1(&self, set: &[NodeId]) -> bool {
        self.count(set) >= self.q1
    }

    /// Whether the acceptances of `set` choose a value.
    pub fn is_phase2(&self, set: &[NodeId]) -> bool {
        self.count(set) >= self.q2
    }

    /// Whether hearing `set` (a node itself included) makes a node connected.
    pub fn is_connected(&self, set: &[NodeId]) -> bool {
        self.count(set) >= self.connected_size()
    }

    /// The highest index a phase-2 quorum has reached, when each member has
    /// reached `acked(member)` (raft's committed index; here also the
    /// highest heartbeat a quorum acknowledged).
    pub fn committed(&self, acked: impl Fn(NodeId) -> u64) -> u64 {
        let mut v: Vec<u64> = self.voters.iter().map(|&id| acked(id)).collect();
        v.sort_unstable_by(|x, y| y.cmp(x));
        self.q2.checked_sub(1).and_then(|i| v.get(i)).copied().unwrap_or(0)
    }

    /// Answers, besides its own, a member that lost its state needs before
    /// it may vote again: enough to meet every phase-1 and every phase-2
    /// quorum that may have counted on it (each has at least `q - 1` members
    /// besides it), and never more than the others.
    pub fn rejoin_witnesses(&self) -> usize {
        let n = self.voters.len();
        (n + 1).saturating_sub(self.q1.min(self.q2)).min(n.saturating_sub(1))
    }
}

/// The quorums of every configuration a change spans, counted jointly: a set
/// is a quorum only if it is one of each configuration (Lamport's α rule
/// keeps at most a few in play at once; see [`crate::reconfig`]). With one
/// configuration this is that configuration's quorum; with none, every
/// test passes vacuously, so callers always give at least one.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Joint<'a> {
    configs: Vec<Quorum<'a>>,
}

impl<'a> Joint<'a> {
    /// The joint quorum of `configs`.
    pub fn new(configs: Vec<Quorum<'a>>) -> Joint<'a> {
        Joint { configs }
    }

    /// The configurations, in order.
    pub fn configs(&self) -> &[Quorum<'a>] {
        &self.configs
    }

    /// Every member that counts in some configuration, each once, in order.
    pub fn members(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for q in &self.configs {
            for &id in q.voters() {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Whether `node` counts in some configuration.
    pub fn contains(&self, node: NodeId) -> bool {
        self.configs.iter().any(|q| q.voters().contains(&node))
    }

    /// Whether `set` holds a phase-1 quorum of each configuration.
    pub fn is_phase1(&self, set: &[NodeId]) -> bool {
        self.configs.iter().all(|q| q.is_phase1(set))
    }

    /// Whether `set` holds a phase-2 quorum of each configuration.
    pub fn is_phase2(&self, set: &[NodeId]) -> bool {
        self.configs.iter().all(|q| q.is_phase2(set))
    }

    /// Whether hearing `set` connects a node in each configuration.
    pub fn is_connected(&self, set: &[NodeId]) -> bool {
        self.configs.iter().all(|q| q.is_connected(set))
    }

    /// The highest index a phase-2 quorum of each configuration has reached
    /// (0 with no configuration).
    pub fn committed(&self, acked: impl Fn(NodeId) -> u64) -> u64 {
        self.configs.iter().map(|q| q.committed(&acked)).min().unwrap_or(0)
    }
}

/// The distinct acceptors that answered one ballot, counted against a
/// quorum size, for a kernel that knows how many acceptors a quorum needs but
/// not who they are (the single-decree [`crate::synod`] roles, whose caller
/// addresses only acceptors). Each acceptor counts once however often it
/// answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Votes {
    needed: usize,
    from: BTreeSet<NodeId>,
}

impl Votes {
    /// No votes yet, towards a quorum of `needed` acceptors.
    pub(crate) fn new(needed: usize) -> Votes {
        debug_assert!(needed > 0, "a quorum needs at least one acceptor");
        Votes { needed, from: BTreeSet::new() }
    }

    /// Counts `acceptor`'s vote.
    pub(crate) fn add(&mut self, acceptor: NodeId) {
        self.from.insert(acceptor);
    }

    /// Whether the votes make a quorum.
    pub(crate) fn is_quorum(&self) -> bool {
        self.from.len() >= self.needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_count_each_acceptor_once_towards_the_size() {
        let mut v = Votes::new(2);
        assert!(!v.is_quorum());
        v.add(1);
        v.add(1);
        assert!(!v.is_quorum(), "a repeated vote is one acceptor");
        v.add(3);
        assert!(v.is_quorum());
    }

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

    /// Each row: voters, q1, q2, the set heard from, and whether it is a
    /// phase-1 quorum, a phase-2 quorum, and enough to be connected.
    #[test]
    fn one_configuration_counts_its_voters_only() {
        type Row = (&'static [NodeId], usize, usize, &'static [NodeId], bool, bool, bool);
        let table: &[Row] = &[
            (&[1, 2, 3], 2, 2, &[], false, false, false),
            (&[1, 2, 3], 2, 2, &[1], false, false, false),
            (&[1, 2, 3], 2, 2, &[1, 3], true, true, true),
            (&[1, 2, 3], 2, 2, &[1, 1], false, false, false),
            (&[1, 2, 3], 2, 2, &[1, 4, 5], false, false, false),
            (&[1, 2, 3], 2, 2, &[1, 2, 3], true, true, true),
            // Flexible: a big phase 1 and a small phase 2.
            (&[1, 2, 3, 4, 5], 4, 2, &[1, 2], false, true, false),
            (&[1, 2, 3, 4, 5], 4, 2, &[1, 2, 3, 4], true, true, true),
            (&[1, 2, 3, 4, 5], 2, 4, &[4, 5], true, false, false),
            (&[1, 2, 3, 4, 5], 2, 4, &[2, 3, 4, 5], true, true, true),
            (&[7], 1, 1, &[7], true, true, true),
        ];
        for &(voters, q1, q2, set, p1, p2, conn) in table {
            let q = Quorum::new(voters, q1, q2);
            let got = (q.is_phase1(set), q.is_phase2(set), q.is_connected(set));
            assert_eq!(got, (p1, p2, conn), "voters {voters:?} q1={q1} q2={q2} set {set:?}");
        }
    }

    /// Each row: the configurations a change spans, the set, and whether it
    /// is a phase-1 and a phase-2 quorum of all of them.
    #[test]
    fn a_change_needs_a_quorum_of_every_configuration() {
        type Row = (&'static [(&'static [NodeId], usize, usize)], &'static [NodeId], bool, bool);
        let table: &[Row] = &[
            // {1,2,3} -> {2,3,4}: a majority of the old alone is not enough.
            (&[(&[1, 2, 3], 2, 2), (&[2, 3, 4], 2, 2)], &[1, 2], false, false),
            (&[(&[1, 2, 3], 2, 2), (&[2, 3, 4], 2, 2)], &[1, 2, 4], true, true),
            (&[(&[1, 2, 3], 2, 2), (&[2, 3, 4], 2, 2)], &[2, 3], true, true),
            // {1,2,3} -> {4,5,6}: disjoint voters, a majority of each.
            (&[(&[1, 2, 3], 2, 2), (&[4, 5, 6], 2, 2)], &[1, 2, 3], false, false),
            (&[(&[1, 2, 3], 2, 2), (&[4, 5, 6], 2, 2)], &[1, 2, 4, 5], true, true),
            // Flexible old, majority new.
            (&[(&[1, 2, 3, 4, 5], 4, 2), (&[1, 2, 3], 2, 2)], &[1, 2], false, true),
            (&[(&[1, 2, 3, 4, 5], 4, 2), (&[1, 2, 3], 2, 2)], &[1, 2, 4, 5], true, true),
            // One configuration: the same as counting it alone.
            (&[(&[1, 2, 3], 2, 2)], &[3, 1], true, true),
        ];
        for &(configs, set, p1, p2) in table {
            let joint = Joint::new(configs.iter().map(|&(v, q1, q2)| Quorum::new(v, q1, q2)).collect());
            assert_eq!((joint.is_phase1(set), joint.is_phase2(set)), (p1, p2), "{configs:?} set {set:?}");
        }
    }

    /// Each row: voters, q2, what each voter acknowledged (voter, index),
    /// and the highest index a phase-2 quorum reached.
    #[test]
    fn committed_is_what_a_phase2_quorum_reached() {
        type Row = (&'static [NodeId], usize, &'static [(NodeId, u64)], u64);
        let table: &[Row] = &[
            (&[1, 2, 3], 2, &[], 0),
            (&[1, 2, 3], 2, &[(1, 5)], 0),
            (&[1, 2, 3], 2, &[(1, 5), (2, 3)], 3),
            (&[1, 2, 3], 2, &[(1, 5), (2, 3), (3, 9)], 5),
            // An id that is not a voter does not count.
            (&[1, 2, 3], 2, &[(1, 5), (4, 9)], 0),
            (&[1, 2, 3, 4, 5], 4, &[(1, 9), (2, 8), (3, 7), (4, 6), (5, 5)], 6),
            (&[1, 2, 3, 4, 5], 2, &[(1, 9), (2, 8), (3, 7), (4, 6), (5, 5)], 8),
        ];
        for &(voters, q2, acks, want) in table {
            let acked = |id: NodeId| acks.iter().find(|(n, _)| *n == id).map_or(0, |(_, i)| *i);
            let q = Quorum::new(voters, voters.len() + 1 - q2, q2);
            assert_eq!(q.committed(acked), want, "voters {voters:?} q2={q2} acks {acks:?}");
        }
    }

    #[test]
    fn joint_committed_is_the_least_of_the_configurations() {
        let acks = [(1, 9), (2, 8), (3, 2), (4, 1)];
        let acked = |id: NodeId| acks.iter().find(|(n, _)| *n == id).map_or(0, |(_, i)| *i);
        let old = Quorum::new(&[1, 2, 3], 2, 2);
        let new = Quorum::new(&[2, 3, 4], 2, 2);
        assert_eq!(old.committed(acked), 8);
        assert_eq!(new.committed(acked), 2);
        assert_eq!(Joint::new(vec![old.clone(), new]).committed(acked), 2);
        assert_eq!(Joint::new(vec![old]).committed(acked), 8);
        assert_eq!(Joint::default().committed(acked), 0);
    }

    #[test]
    fn joint_members_are_each_counted_member_once_in_order() {
        let joint = Joint::new(vec![Quorum::new(&[1, 2, 3], 2, 2), Quorum::new(&[3, 4, 2], 2, 2)]);
        assert_eq!(joint.members(), vec![1, 2, 3, 4]);
        assert!(joint.contains(4) && !joint.contains(5));
    }

    /// Each row: n voters, q1, q2, and the answers a member that lost its
    /// state needs from the others.
    #[test]
    fn rejoin_witnesses_meet_every_quorum_that_counted_on_the_member() {
        let table: &[(usize, usize, usize, usize)] =
            &[(1, 1, 1, 0), (3, 2, 2, 2), (5, 3, 3, 3), (5, 4, 2, 4), (5, 2, 4, 4), (7, 4, 4, 4)];
        let ids: Vec<NodeId> = (1..=7).collect();
        for &(n, q1, q2, want) in table {
            assert_eq!(Quorum::new(&ids[..n], q1, q2).rejoin_witnesses(), want, "n={n} q1={q1} q2={q2}");
        }
    }
}
