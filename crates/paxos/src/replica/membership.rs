//! The configurations in force and who this replica counts as members.

use super::*;

impl<S: StateMachine> Replica<S> {
    /// Index in the initial configuration's voters (rejoin bookkeeping).
    pub(super) fn member_index(&self, node: NodeId) -> Option<usize> {
        self.cfg.members.iter().position(|&m| m == node)
    }
    /// Whether `node` is listed in a configuration this replica knows of
    /// (chosen, or proposed in a slot it holds): messages from anyone else
    /// are ignored.
    pub(super) fn knows(&self, node: NodeId) -> bool {
        self.members.configs.knows(node)
            || self
                .log
                .iter_from(self.learner.commit + 1)
                .any(|(_, e)| matches!(&e.value, Value::Reconfigure(m) if m.contains(node)))
    }
    /// The configurations in force and pending, as election counts them.
    pub(super) fn election_groups(&self) -> Joint<'static> {
        let plant = self.cfg.plant();
        Joint::new(self.members.view.iter().map(|m| plant.connectivity(m).into_owned()).collect())
    }
    /// Everyone in the configurations in force and pending, voters first,
    /// without duplicates.
    pub(super) fn view_members(&self) -> Vec<NodeId> {
        self.members.everyone()
    }
    /// Recompute the configurations in force at `commit + 1` and pending,
    /// after the commit index moved or a change was learned; when they
    /// changed, retune election and step down if no longer a voter.
    pub(super) fn refresh_view(&mut self) {
        let from = self.learner.commit + 1;
        // Keep what a phase 1 in progress still needs (it may have started
        // before the commit index moved on).
        let keep = from.min(self.proposer.preparing_from().unwrap_or(from));
        if !self.members.refresh(from, keep) {
            return;
        }
        self.configure_election();
        if !self.members.view[0].is_voter(self.cfg.id) && self.proposer.leader.is_some() {
            // Removed (or demoted): the configuration in force no longer
            // counts us, so we may not lead its slots' successors.
            self.step_down(Ballot::ZERO);
        }
    }
    /// Tell election whose replies make this node connected, and whether
    /// it may stand.
    pub(super) fn configure_election(&mut self) {
        let voter = self.rejoin.is_none() && self.members.view.first().is_some_and(|m| m.is_voter(self.cfg.id));
        self.election.set_voter(voter);
        self.election.set_groups(self.election_groups());
    }
    /// The configuration in force at the first slot not known chosen.
    pub fn membership(&self) -> &Membership {
        self.members.configs.governing(self.learner.commit + 1)
    }
    /// A configuration chosen but not yet in force, with the slot it was
    /// chosen in.
    pub fn pending_membership(&self) -> Option<(Slot, &Membership)> {
        self.members.configs.pending_at(self.learner.commit + 1).next()
    }
    /// α of the reconfiguration rule (the pipeline window).
    pub fn alpha(&self) -> Slot {
        self.members.configs.alpha
    }
    /// Whether this replica is listed as a voter in the configuration in
    /// force, or in one pending.
    pub fn is_member(&self) -> bool {
        self.members.view.iter().any(|m| m.contains(self.cfg.id))
    }
}
