//! What a replica tells its subscribers about the cluster, as it changes.
//!
//! The replica's task publishes a [`ClusterView`] on a
//! [`tokio::sync::watch`] channel at the end of every turn of its loop in
//! which something in the view changed (a cheap comparison, no allocation
//! when nothing did). Whoever needs to act on a new leader, a membership
//! change or newly applied entries subscribes ([`crate::Handle::subscribe`])
//! and waits for [`watch::Receiver::changed`] instead of asking the replica
//! in a loop; a question that only needs the latest knowledge reads
//! [`crate::Handle::view`], which costs no round trip into the replica's
//! task. [`crate::Handle::status`] remains for answers that must be fresh to
//! the moment of asking (the commit index, the durable record), and for
//! what the view does not carry.
//!
//! The channel closes when the replica's task ends: `changed()` then fails,
//! which tells a subscriber that the replica stopped.
//!
//! [`watch::Receiver::changed`]: tokio::sync::watch::Receiver::changed

use synod_paxos::{Ballot, Membership, NodeId, Slot};

/// What one member knows about the cluster, published whenever it changes.
///
/// `applied` moves with every applied batch; a subscriber that cares only
/// about leadership or membership compares the part it needs (see
/// [`ClusterView::leadership`], [`ClusterView::same_membership`]) before
/// doing anything costly, or waits with
/// [`watch::Receiver::wait_for`](tokio::sync::watch::Receiver::wait_for)
/// for the part to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// This member.
    pub id: NodeId,
    /// The member this one believes leads.
    pub leader: Option<NodeId>,
    /// The leader's ballot, if this member leads; else the highest it
    /// promised. Its round is what etcd calls the term.
    pub ballot: Ballot,
    /// Whether this member hears a quorum of the members now.
    pub hears_quorum: bool,
    /// Whether this member leads with a valid leader lease: no other
    /// member can be elected while it holds one, so what it decides alone
    /// as the leader (a lease's expiry, a keep-alive) cannot contradict a
    /// newer leader. A leader that cannot renew its lease (cut off from a
    /// quorum) loses it before any other member may take over, however
    /// their clocks drift (within the configured margin).
    pub holds_lease: bool,
    /// Every slot up to here is applied to this member's state machine.
    pub applied: Slot,
    /// Every slot up to here is compacted into a stored snapshot.
    pub compacted: Slot,
    /// The voters of the configuration in force.
    pub voters: Vec<NodeId>,
    /// The learners of the configuration in force.
    pub learners: Vec<NodeId>,
    /// A configuration chosen but not yet in force: the slot it was chosen
    /// in, and its members.
    pub pending: Option<(Slot, Membership)>,
    /// Whether this member votes: a voter of the configuration in force,
    /// not rejoining after losing its disk.
    pub voter: bool,
    /// A peer refused this member because it was removed from the cluster.
    pub removed: bool,
}

impl ClusterView {
    /// The view of a member that knows nothing yet.
    pub fn unknown(id: NodeId) -> ClusterView {
        ClusterView {
            id,
            leader: None,
            ballot: Ballot::default(),
            hears_quorum: false,
            holds_lease: false,
            applied: 0,
            compacted: 0,
            voters: Vec::new(),
            learners: Vec::new(),
            pending: None,
            voter: false,
            removed: false,
        }
    }

    /// Whether this member has a leader, as etcd means it: one is known,
    /// and this member hears a quorum.
    pub fn has_leader(&self) -> bool {
        self.leader.is_some() && self.hears_quorum
    }

    /// Whether this member believes it leads.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.id)
    }

    /// Every member of the configuration in force, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// The latest configuration known here (voters, learners): the pending
    /// one if a change is chosen but not yet in force, else the one in
    /// force.
    pub fn latest(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        match &self.pending {
            Some((_, m)) => (m.voters.clone(), m.learners.clone()),
            None => (self.voters.clone(), self.learners.clone()),
        }
    }

    /// Who leads, as this view tells it.
    pub fn leadership(&self) -> Leadership {
        Leadership {
            leader: self.leader,
            ballot: self.ballot,
            hears_quorum: self.hears_quorum,
            holds_lease: self.holds_lease,
        }
    }

    /// Whether `other` has the same configurations (in force and pending),
    /// vote and removal.
    pub fn same_membership(&self, other: &ClusterView) -> bool {
        self.voters == other.voters
            && self.learners == other.learners
            && self.pending == other.pending
            && self.voter == other.voter
            && self.removed == other.removed
    }
}

/// The part of a [`ClusterView`] about leadership, cheap to keep and
/// compare: wait for `view.leadership() != seen` to learn of a new leader,
/// a new ballot, or quorum contact lost or regained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The member believed to lead.
    pub leader: Option<NodeId>,
    /// The leader's ballot if this member leads, else the highest promised.
    pub ballot: Ballot,
    /// Whether this member hears a quorum.
    pub hears_quorum: bool,
    /// Whether this member leads with a valid leader lease.
    pub holds_lease: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ClusterView {
        ClusterView { voters: vec![1, 2, 3], learners: vec![4], ..ClusterView::unknown(1) }
    }

    #[test]
    fn the_latest_configuration_is_the_pending_one_if_any() {
        assert_eq!(view().latest(), (vec![1, 2, 3], vec![4]));
        let pending = Membership::majority(vec![1, 2, 3, 4], vec![]).unwrap();
        let v = ClusterView { pending: Some((9, pending)), ..view() };
        assert_eq!(v.latest(), (vec![1, 2, 3, 4], vec![]));
        assert_eq!(v.members().collect::<Vec<_>>(), vec![1, 2, 3, 4], "members are those in force");
    }

    #[test]
    fn a_leader_counts_only_while_a_quorum_is_heard() {
        let cases = [(None, false, false), (None, true, false), (Some(2), false, false), (Some(2), true, true)];
        for (leader, hears_quorum, has) in cases {
            let v = ClusterView { leader, hears_quorum, ..view() };
            assert_eq!(v.has_leader(), has, "leader {leader:?}, hears a quorum: {hears_quorum}");
        }
        assert!(ClusterView { leader: Some(1), ..view() }.is_leader());
        assert!(!ClusterView { leader: Some(2), ..view() }.is_leader());
    }

    #[test]
    fn leadership_ignores_what_is_not_about_the_leader() {
        let v = ClusterView { leader: Some(2), hears_quorum: true, ..view() };
        assert_eq!(ClusterView { applied: 7, learners: vec![], ..v.clone() }.leadership(), v.leadership());
        assert_ne!(ClusterView { hears_quorum: false, ..v.clone() }.leadership(), v.leadership());
        assert!(!ClusterView { learners: vec![], ..v.clone() }.same_membership(&v));
        assert!(ClusterView { applied: 7, ..v.clone() }.same_membership(&v));
    }
}
