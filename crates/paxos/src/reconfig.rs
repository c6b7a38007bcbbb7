//! Reconfiguration: changing the set of voters and learners through the log.
//!
//! A configuration ([`Membership`]: voters, learners, quorum sizes) is a
//! value of its own kind in the log, [`crate::Value::Reconfigure`], chosen
//! like any other. What it must never do is let two configurations choose
//! different values for one slot. The rule is Lamport's α rule ("Paxos Made
//! Simple", section 3; "Reconfiguring a State Machine"), with α equal to the
//! leader's pipeline window, `Config::max_inflight_slots`:
//!
//! > **A configuration chosen in slot `i` governs every slot from `i + α`
//! > on** (until the next one takes over). Slots before the first change are
//! > governed by the initial configuration. The configuration that governs
//! > slot `s`, written `G(s)`, is therefore a function of the values chosen in
//! > slots `<= s - α` only.
//!
//! Two more rules make it usable:
//!
//! 1. **Window.** A leader proposes in slot `s` only when every slot
//!    `<= s - α` is chosen and known to it (its commit index is at least
//!    `s - α`). So whoever proposes in `s`, in whatever ballot, knows
//!    the same `G(s)`: it depends only on chosen values, and those are
//!    unique. A leader counts phase-2 acceptances for `s` among the voters
//!    of `G(s)` against `G(s)`'s phase-2 quorum, and sends phase 2 only to them.
//! 2. **Phase 1 covers every configuration that may still be active.** A new
//!    leader with commit index `c` prepares from `c + 1`. Its phase 1 is
//!    complete only when the acceptors that promised contain a phase-1
//!    quorum of each of: `G(c + 1)`; every configuration chosen at or below
//!    `c` that takes effect above `c + 1` (a *pending* one; at most one,
//!    since a leader proposes a change only when none is pending or in
//!    flight); and every configuration it finds among the values the
//!    promisers accepted above `c` (the leader will propose those again,
//!    so they may take effect). When new configurations appear among the
//!    promises, it asks their voters too, until the set is closed. Later,
//!    before proposing any slot `s`, the leader checks that its promisers
//!    hold a phase-1 quorum of `G(s)` (this matters for changes it proposes
//!    itself) and asks the missing voters first.
//!
//! # Why two configurations never choose different values for one slot
//!
//! Take a slot `s` and a value `v` chosen in `s` in ballot `b` by a phase-2
//! quorum of the configuration `C` that the leader of `b` used for `s`. By
//! the window rule that leader knew every slot `<= s - α` chosen, so
//! `C = G(s)`, and since chosen values are unique (the induction below, on
//! slots), every leader that proposes in `s` uses the same `G(s)`. The
//! classic Paxos argument then goes through unchanged for slot `s`, because
//! every phase 2 for `s` is counted in `G(s)` and every leader with a higher
//! ballot that proposes in `s` first holds promises from a phase-1 quorum of
//! `G(s)`, which meets the phase-2 quorum that chose `v`: it sees `v` (or a
//! value accepted in a higher ballot, by induction on ballots also `v`) and
//! proposes `v`.
//!
//! It remains to see that a leader with a higher ballot `b' > b` that
//! proposes in `s` really holds a phase-1 quorum of `G(s)`. If `s` lies
//! above its commit index `c'` and `G(s)` is a configuration `G(c' + 1)` or a
//! pending one, rule 2 covered it. Otherwise `G(s)` was chosen in a slot `t`
//! with `c' < t <= s - α`. If `t` was chosen in a ballot below `b'`, then by
//! induction on slots (`t < s`) it was chosen under `G(t)`, which is covered,
//! so the promises show the reconfiguration in `t` and rule 2 covers it too.
//! If `t` was chosen in `b'` itself, the leader proposed it and the check
//! before proposing `s` covers it. In both cases the promises that reached
//! the leader include a phase-1 quorum of `G(s)`.
//!
//! The same closure shows that a new leader's first own slot lies above every
//! value chosen in an earlier ballot (each of those was chosen under a
//! covered configuration, so a promiser reported it), which is what its
//! read index and lease rely on.
//!
//! Leases and read-index rounds count acknowledgements in every
//! configuration the leader's phase 1 had to cover (the one in force and any
//! pending or in flight); when a configuration joins that set the leader's
//! lease is dropped and earned again in all of them, so a rival that can
//! only use the new configuration still meets the lease holders.
//!
//! # Learners, removal and what is refused
//!
//! Learners are listed in a configuration but never count in a quorum: they
//! get commit indexes in heartbeats and fetch chosen values (or a snapshot)
//! by catch-up. A learner is promoted only once the leader knows it holds
//! every slot but at most one window (etcd's "can only promote a learner
//! member which is in sync with leader"). A change that would leave the
//! members the leader hears right now without a quorum of the new
//! configuration is refused, as etcd's `--strict-reconfig-check` does. At
//! most one change is in flight or pending; a change that is not chosen is
//! never applied. A member that the configuration in force no longer lists
//! as a voter stops bidding for leadership (and a leader so removed steps
//! down); one no longer listed at all is expected to be shut down, once
//! every remaining member has learned the change (until then a laggard may
//! still need it for the slots the old configuration governs).
//!
//! # Not covered
//!
//! A member that lost its disk may rejoin under its own id
//! ([`crate::Replica::rejoin`]) only while the membership is the initial
//! one: that path asks the initial voters what it may have promised. Once
//! it learns of a change it stays a learner for good; replace such a member
//! by a new node with a new id (add it as a learner, then promote it in
//! place of the old one), as etcd requires.

use crate::quorum::{Quorum, QuorumError, QuorumPolicy};
use crate::types::{NodeId, Slot};
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// Membership as this replica knows it: the configurations chosen, the
/// ones in force now, and how far learners have caught up.
#[derive(Clone, Debug)]
pub(crate) struct Members {
    /// The initial configuration and the changes chosen since that may
    /// still matter.
    pub(crate) configs: Configs,
    /// The configuration in force at `commit + 1`, then any pending one:
    /// whom this replica pings and whose quorum election needs.
    pub(crate) view: Vec<Membership>,
    /// Learners' commit indexes as last reported to this (leading) node.
    pub(crate) progress: HashMap<NodeId, Slot>,
}

impl Members {
    /// Whether the membership differs from `initial`, or did once.
    pub(crate) fn changed_from(&self, initial: &Membership) -> bool {
        !self.configs.chosen.is_empty() || self.configs.base != *initial
    }

    /// Everyone in the configurations in force and pending, voters first,
    /// without duplicates.
    pub(crate) fn everyone(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = Vec::new();
        for m in &self.view {
            for id in m.members() {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Recompute the configurations in force at `from` and pending, keeping
    /// the history from `keep` on; whether they changed.
    pub(crate) fn refresh(&mut self, from: Slot, keep: Slot) -> bool {
        if self.configs.chosen.is_empty() && self.view.len() == 1 && self.view[0] == self.configs.base {
            return false;
        }
        self.configs.trim(keep);
        let mut view = vec![self.configs.governing(from).clone()];
        view.extend(self.configs.pending_at(from).map(|(_, m)| m.clone()));
        if view == self.view {
            return false;
        }
        self.view = view;
        true
    }
}

/// One configuration: who votes, who only learns, and the quorum sizes.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Membership {
    /// Acceptors: the members that count in quorums.
    pub voters: Vec<NodeId>,
    /// Non-voting members: they learn chosen values, never vote.
    pub learners: Vec<NodeId>,
    /// Phase-1 quorum size, over `voters`.
    pub q1: usize,
    /// Phase-2 quorum size, over `voters`.
    pub q2: usize,
}

impl Membership {
    /// Majority quorums over `voters`, refused if invalid.
    pub fn majority(voters: Vec<NodeId>, learners: Vec<NodeId>) -> Result<Membership, ReconfigError> {
        let q = voters.len() / 2 + 1;
        let m = Membership { voters, learners, q1: q, q2: q };
        m.validate()?;
        Ok(m)
    }

    /// Check the rules: distinct non-zero ids, nobody both voter and
    /// learner, at least one voter, at most 64 members, intersecting quorums.
    pub fn validate(&self) -> Result<(), ReconfigError> {
        let mut all: Vec<NodeId> = self.voters.iter().chain(&self.learners).copied().collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        if all.len() != n || all.first() == Some(&0) {
            return Err(ReconfigError::Invalid("member ids must be distinct and non-zero".into()));
        }
        if n > 64 {
            return Err(ReconfigError::Invalid(format!("at most 64 members are supported, got {n}")));
        }
        QuorumPolicy::flexible(self.voters.len(), self.q1, self.q2)?;
        Ok(())
    }

    /// This configuration's quorums (the members that count, and the sizes).
    pub fn quorum(&self) -> Quorum<'_> {
        Quorum::new(&self.voters, self.q1, self.q2)
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// Whether `id` is listed at all.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Voters, then learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// Apply `change`, giving the new configuration (majority quorums
    /// whenever the number of voters changes, else the same sizes).
    pub fn apply(&self, change: &Change) -> Result<Membership, ReconfigError> {
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        match change {
            Change::AddLearner(id) => {
                if self.contains(*id) {
                    return Err(ReconfigError::AlreadyMember(*id));
                }
                learners.push(*id);
            }
            Change::PromoteLearner(id) => {
                if !self.is_learner(*id) {
                    return Err(ReconfigError::NotALearner(*id));
                }
                learners.retain(|l| l != id);
                voters.push(*id);
            }
            Change::Remove(id) => {
                if !self.contains(*id) {
                    return Err(ReconfigError::UnknownMember(*id));
                }
                voters.retain(|v| v != id);
                learners.retain(|l| l != id);
            }
            Change::Replace { voters: v, learners: l } => {
                voters = v.clone();
                learners = l.clone();
            }
        }
        if voters.is_empty() {
            return Err(ReconfigError::Invalid("a configuration needs at least one voter".into()));
        }
        if voters.len() == self.voters.len() {
            let m = Membership { voters, learners, q1: self.q1, q2: self.q2 };
            m.validate()?;
            Ok(m)
        } else {
            Membership::majority(voters, learners)
        }
    }
}

/// A membership change a client asks the leader for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Change {
    /// Add a non-voting member (it starts learning at once).
    AddLearner(NodeId),
    /// Make a learner a voter; refused unless it is in sync with the leader.
    PromoteLearner(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
    /// Replace the whole membership at once (majority quorums); new voters
    /// should have been learners first, or they vote with an empty log.
    Replace {
        /// The new voters.
        voters: Vec<NodeId>,
        /// The new learners.
        learners: Vec<NodeId>,
    },
}

impl Change {
    /// Whether the membership with `voters` and `learners` already has
    /// this change in force, so that asking for it again would be refused
    /// (`AlreadyMember`, `NotALearner`, `UnknownMember`) although it is
    /// done. A client that retries a change after a timeout or an
    /// interruption (the first attempt may have been chosen) checks this
    /// before treating the refusal as a failure.
    pub fn in_force(&self, voters: &[NodeId], learners: &[NodeId]) -> bool {
        let listed = |id: &NodeId| voters.contains(id) || learners.contains(id);
        match self {
            Change::AddLearner(id) => listed(id),
            Change::PromoteLearner(id) => voters.contains(id),
            Change::Remove(id) => !listed(id),
            Change::Replace { voters: v, learners: l } => {
                let same = |a: &[NodeId], b: &[NodeId]| {
                    let (mut a, mut b) = (a.to_vec(), b.to_vec());
                    a.sort_unstable();
                    b.sort_unstable();
                    a == b
                };
                same(v, voters) && same(l, learners)
            }
        }
    }
}

/// Why a membership change was refused or did not happen.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ReconfigError {
    /// Only the leader changes the membership.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this replica believes in, if any.
        leader: Option<NodeId>,
    },
    /// Another change is in flight, or chosen and not yet in force.
    #[error("a membership change is already in progress")]
    InProgress,
    /// The member is not in the configuration.
    #[error("member {0} not found in the cluster")]
    UnknownMember(NodeId),
    /// The member is already in the configuration.
    #[error("member {0} is already in the cluster")]
    AlreadyMember(NodeId),
    /// Promotion of a member that is not a learner.
    #[error("member {0} is not a learner")]
    NotALearner(NodeId),
    /// Promotion of a learner that has not caught up (etcd's message).
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotInSync(NodeId),
    /// The new configuration would have no quorum among the members the
    /// leader hears now (etcd's strict reconfiguration check).
    #[error("re-configuration failed due to not enough started members ({reachable} of the new {voters} voters are reachable, {needed} needed)")]
    NoQuorumReachable {
        /// New voters the leader hears.
        reachable: usize,
        /// New voters.
        voters: usize,
        /// Needed for a quorum.
        needed: usize,
    },
    /// The resulting configuration is invalid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The leader lost its leadership before the change was chosen; it may
    /// or may not be chosen later: look at the membership and retry.
    #[error("leadership changed before the membership change was chosen")]
    Interrupted,
}

impl From<QuorumError> for ReconfigError {
    fn from(e: QuorumError) -> Self {
        ReconfigError::Invalid(e.to_string())
    }
}

/// The configurations a replica knows: the initial one and every change
/// it has seen chosen that may still matter, with the slot it was chosen in.
#[derive(Clone, Debug)]
pub(crate) struct Configs {
    pub(crate) base: Membership,
    /// Chosen changes by the slot they were chosen in.
    pub(crate) chosen: BTreeMap<Slot, Membership>,
    pub(crate) alpha: Slot,
}

impl Configs {
    pub(crate) fn new(base: Membership, alpha: Slot) -> Configs {
        Configs { base, chosen: BTreeMap::new(), alpha: alpha.max(1) }
    }

    /// `G(s)`: the configuration governing slot `s` (chosen in a slot at
    /// or below `s - α`).
    pub(crate) fn governing(&self, s: Slot) -> &Membership {
        let Some(last) = s.checked_sub(self.alpha) else { return &self.base };
        self.chosen.range(..=last).next_back().map_or(&self.base, |(_, m)| m)
    }

    /// Changes chosen above `from - α` (so not yet in force at `from`).
    pub(crate) fn pending_at(&self, from: Slot) -> impl Iterator<Item = (Slot, &Membership)> {
        let lo = (from + 1).saturating_sub(self.alpha);
        self.chosen.range(lo..).map(|(s, m)| (*s, m))
    }

    /// Forget changes superseded at slot `from` (everything before the one
    /// in force there).
    pub(crate) fn trim(&mut self, from: Slot) {
        let Some(last) = from.checked_sub(self.alpha) else { return };
        let Some((&keep, _)) = self.chosen.range(..=last).next_back() else { return };
        let newer = self.chosen.split_off(&keep);
        self.chosen = newer;
    }

    /// Whether `id` is listed in any configuration known here.
    pub(crate) fn knows(&self, id: NodeId) -> bool {
        self.base.contains(id) || self.chosen.values().any(|m| m.contains(id))
    }

    /// Encode for a snapshot: alpha is not stored (it is configuration).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let put = |out: &mut Vec<u8>, x: u64| out.extend_from_slice(&x.to_be_bytes());
        let put_m = |out: &mut Vec<u8>, m: &Membership| {
            put(out, m.voters.len() as u64);
            m.voters.iter().for_each(|&v| put(out, v));
            put(out, m.learners.len() as u64);
            m.learners.iter().for_each(|&v| put(out, v));
            put(out, m.q1 as u64);
            put(out, m.q2 as u64);
        };
        put_m(out, &self.base);
        put(out, self.chosen.len() as u64);
        for (s, m) in &self.chosen {
            put(out, *s);
            put_m(out, m);
        }
    }

    /// Decode what [`Configs::encode`] wrote; returns the rest.
    pub(crate) fn decode(data: &[u8], alpha: Slot) -> Option<(Configs, &[u8])> {
        fn get(d: &mut &[u8]) -> Option<u64> {
            let (x, r) = d.split_first_chunk::<8>()?;
            *d = r;
            Some(u64::from_be_bytes(*x))
        }
        fn get_m(d: &mut &[u8]) -> Option<Membership> {
            let nv = get(d)?;
            let voters = (0..nv.min(64)).map(|_| get(d)).collect::<Option<Vec<_>>>()?;
            let nl = get(d)?;
            let learners = (0..nl.min(64)).map(|_| get(d)).collect::<Option<Vec<_>>>()?;
            let q1 = get(d)? as usize;
            let q2 = get(d)? as usize;
            let m = Membership { voters, learners, q1, q2 };
            m.validate().ok()?;
            Some(m)
        }
        let mut d = data;
        let base = get_m(&mut d)?;
        let n = get(&mut d)?;
        let mut c = Configs::new(base, alpha);
        for _ in 0..n {
            let s = get(&mut d)?;
            let m = get_m(&mut d)?;
            c.chosen.insert(s, m);
        }
        Some((c, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[NodeId]) -> Membership {
        Membership::majority(v.to_vec(), vec![]).unwrap()
    }

    #[test]
    fn a_change_governs_from_alpha_slots_after_it_was_chosen() {
        let mut c = Configs::new(m(&[1, 2, 3]), 4);
        c.chosen.insert(2, m(&[1, 2, 3, 4]));
        c.chosen.insert(10, m(&[1, 2, 3, 4, 5]));
        assert_eq!(c.governing(5).voters, vec![1, 2, 3]);
        assert_eq!(c.governing(13).voters, vec![1, 2, 3, 4]);
        assert_eq!(c.governing(14).voters, vec![1, 2, 3, 4, 5]);
        assert_eq!(c.pending_at(13).count(), 1);
        assert_eq!(c.pending_at(14).count(), 0);
        c.trim(20);
        assert_eq!(c.chosen.len(), 1, "superseded history is forgotten");
        assert_eq!(c.governing(20).voters, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_change_refused_because_it_is_done_is_in_force() {
        let base = Membership::majority(vec![1, 2, 3], vec![4]).unwrap();
        let cases = [
            (Change::AddLearner(4), true),
            (Change::AddLearner(5), false),
            (Change::PromoteLearner(4), false),
            (Change::PromoteLearner(2), true),
            (Change::Remove(9), true),
            (Change::Remove(4), false),
            (Change::Replace { voters: vec![3, 2, 1], learners: vec![4] }, true),
            (Change::Replace { voters: vec![1, 2], learners: vec![4] }, false),
        ];
        for (change, done) in cases {
            assert_eq!(change.in_force(&base.voters, &base.learners), done, "{change:?}");
            // A change that is not in force applies; one in force (but a
            // replacement, which always applies) is refused.
            if !matches!(change, Change::Replace { .. }) {
                assert_eq!(base.apply(&change).is_err(), done, "{change:?}");
            }
        }
    }

    #[test]
    fn changes_are_checked() {
        let base = m(&[1, 2, 3]);
        let table: Vec<(Change, Result<Vec<NodeId>, ReconfigError>)> = vec![
            (Change::AddLearner(4), Ok(vec![1, 2, 3])),
            (Change::AddLearner(2), Err(ReconfigError::AlreadyMember(2))),
            (Change::PromoteLearner(2), Err(ReconfigError::NotALearner(2))),
            (Change::Remove(3), Ok(vec![1, 2])),
            (Change::Remove(9), Err(ReconfigError::UnknownMember(9))),
            (Change::Replace { voters: vec![4, 5, 6], learners: vec![] }, Ok(vec![4, 5, 6])),
        ];
        for (change, want) in table {
            assert_eq!(base.apply(&change).map(|m| m.voters), want, "{change:?}");
        }
        let with_learner = base.apply(&Change::AddLearner(4)).unwrap();
        let promoted = with_learner.apply(&Change::PromoteLearner(4)).unwrap();
        assert_eq!((promoted.voters.len(), promoted.q1, promoted.q2), (4, 3, 3));
        assert!(base.apply(&Change::Replace { voters: vec![], learners: vec![] }).is_err());
    }

    #[test]
    fn configurations_round_trip_through_snapshots() {
        let mut c = Configs::new(m(&[1, 2, 3]), 4);
        c.chosen.insert(7, Membership::majority(vec![1, 2, 3], vec![4]).unwrap());
        let mut buf = Vec::new();
        c.encode(&mut buf);
        buf.extend_from_slice(b"rest");
        let (d, rest) = Configs::decode(&buf, 4).unwrap();
        assert_eq!(rest, b"rest");
        assert_eq!(d.base, c.base);
        assert_eq!(d.chosen, c.chosen);
    }
}
