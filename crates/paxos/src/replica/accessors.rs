//! What a replica tells about itself (read only).

use super::*;

impl<S: StateMachine> Replica<S> {
    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The highest ballot this acceptor promised.
    pub fn promised(&self) -> Ballot {
        self.acceptor.promised
    }
    /// The log (accepted and chosen entries).
    pub fn log(&self) -> &Log {
        &self.log
    }
    /// Every slot up to this one is chosen and known here.
    pub fn commit_index(&self) -> Slot {
        self.learner.commit
    }
    /// Every slot up to this one is applied to the state machine.
    pub fn applied_index(&self) -> Slot {
        self.learner.applied
    }
    /// The duplicate-detection table, in client order: a function of the
    /// applied prefix of the log alone, so every replica that applied the
    /// same slots reports the same table.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.learner.session_infos()
    }
    /// The highest slot below which client sessions were expired (a
    /// command made before it, from a client without a session, is refused
    /// with [`ClientError::SessionExpired`]). The same on every replica
    /// after the same slot.
    pub fn sessions_expired_before(&self) -> Slot {
        self.learner.sessions_expired_before
    }
    /// The state machine (for serializable reads, served locally).
    pub fn state_machine(&self) -> &S {
        &self.learner.sm
    }
    /// Whether this replica is the leader and has finished phase 1.
    pub fn is_leader(&self) -> bool {
        self.proposer.leader.as_ref().is_some_and(|l| l.is_active())
    }
    /// The ballot this replica leads with, while it leads.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        self.proposer.leader.as_ref().map(|l| l.ballot)
    }
    /// The replica this one believes leads, if any.
    pub fn leader_hint(&self) -> Option<NodeId> {
        if self.is_leader() {
            Some(self.cfg.id)
        } else {
            self.clients.leader_hint
        }
    }
    /// The last record reported durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.outbox.durable
    }
    /// This replica's logical clock.
    pub fn now(&self) -> u64 {
        self.clock.now
    }
    /// Whether this replica hears a quorum of the members now (fresh
    /// replies to its pings from enough of them, itself included). A
    /// follower that does not cannot tell whether the leader it last
    /// heard of still leads: etcd's followers in that state have no
    /// leader either (they stand for election).
    pub fn hears_quorum(&self) -> bool {
        self.election.connected(self.clock.now)
    }
    /// Slots this leader has proposed and not yet seen chosen (0 when not
    /// leading).
    pub fn slots_in_flight(&self) -> usize {
        self.proposer.leader.as_ref().map_or(0, |l| l.slots_in_flight())
    }
    /// Whether a leader lease currently lets this replica answer reads
    /// without a round trip.
    pub fn holds_lease(&self) -> bool {
        self.proposer.leader.as_ref().is_some_and(|l| l.lease_valid(self.clock.now, self.learner.commit))
    }
}
