//! Making a replica: fresh, rejoining after losing its disk, or recovered
//! from its durable records and snapshot.

use super::*;

impl<S: StateMachine> Replica<S> {
    /// A fresh replica with empty storage.
    pub fn new(cfg: Config, sm: S) -> Result<Replica<S>, ConfigError> {
        cfg.validate()?;
        let round_ticks = cfg.election_ticks;
        let base = Membership {
            voters: cfg.members.clone(),
            learners: cfg.learners.clone(),
            q1: cfg.quorum.phase1(),
            q2: cfg.quorum.phase2(),
        };
        let alpha = cfg.plant().alpha(cfg.max_inflight_slots as Slot);
        let mut r = Replica {
            members: Members { configs: Configs::new(base.clone(), alpha), view: vec![base], progress: HashMap::new() },
            handover: None,
            proposer: Proposer::default(),
            clock: Clock { now: 0, rng: fastrand::Rng::with_seed(cfg.seed) },
            election: Election::new(cfg.id, cfg.priority, 0, round_ticks, Joint::default()),
            outbox: Outbox { next_lsn: 1, durable: 0, first_lsn: 1, held: VecDeque::new(), loopback: VecDeque::new() },
            acceptor: Acceptor::default(),
            log: Log::default(),
            learner: Learner::new(sm),
            snapshots: Snapshots::default(),
            rejoin: None,
            clients: Clients::default(),
            out: Output::default(),
            cfg,
        };
        r.election = Election::new(r.cfg.id, r.cfg.priority, 1, round_ticks, r.election_groups());
        r.configure_election();
        Ok(r)
    }
    /// A member that lost its disk (or whose data directory was wiped):
    /// it must not vote with amnesia, since it may have promised or accepted
    /// anything before. It starts as a non-voting learner and becomes an
    /// acceptor again once it has caught up with the log, as of the first
    /// commit index it hears from a leader (Paxos Made Live, section 5.1).
    pub fn rejoin(cfg: Config, sm: S) -> Result<Replica<S>, ConfigError> {
        let mut r = Replica::new(cfg, sm)?;
        r.rejoin = Some(Rejoin::default());
        r.election.set_voter(false);
        // A lease we granted before losing the disk may still be running.
        r.acceptor.lease_until = r.cfg.lease_ticks;
        // Durable before anything else: a crash mid-rejoin must not bring
        // this replica back as a voter.
        r.persist(Record::Rejoining);
        Ok(r)
    }
    /// Whether this replica is a rejoining, non-voting learner.
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }
    /// Rebuild a replica from its latest stored snapshot (if any) and its
    /// durable records (in order, consecutive), applying the chosen prefix to
    /// `sm`, which must be the initial state.
    ///
    /// A restarted acceptor may have granted a lease before it crashed, so it
    /// refuses every Prepare for one lease period after recovery.
    pub fn recover(
        cfg: Config,
        sm: S,
        snapshot: Option<Snapshot>,
        records: impl IntoIterator<Item = (Lsn, Record)>,
    ) -> Result<Replica<S>, RecoverError> {
        let mut r = Replica::new(cfg, sm)?;
        let snapshot_slot = snapshot.as_ref().map_or(0, |s| s.slot);
        if let Some(snap) = snapshot {
            r.restore_snapshot(snap.slot, &snap.data)?;
            r.log.compact(snap.slot);
            r.learner.commit = snap.slot;
            r.learner.applied = snap.slot;
            r.learner.known_commit = snap.slot;
            r.snapshots.latest = Some(snap);
        }
        let mut durable = Durable {
            promised: &mut r.acceptor.promised,
            own_ballot: &mut r.proposer.own_ballot,
            rejoin: &mut r.rejoin,
            log: &mut r.log,
            commit: &mut r.learner.commit,
            known_commit: &mut r.learner.known_commit,
        };
        let (first, last) = recover::replay(&mut durable, snapshot_slot, records)?;
        r.outbox.first_lsn = first;
        r.outbox.next_lsn = last + 1;
        r.outbox.durable = last;
        r.learner.commit_persisted = r.learner.commit;
        // Bid only with ballots above every one this node may have used.
        // (Saturating: a log written before rounds were bounded may hold a
        // forged promise near `u64::MAX`; such a node can no longer bid.)
        let start_round = r.acceptor.promised.round.max(r.proposer.own_ballot.round).saturating_add(1);
        r.election = Election::new(r.cfg.id, r.cfg.priority, start_round, r.cfg.election_ticks, r.election_groups());
        r.acceptor.lease_until = r.cfg.lease_ticks;
        r.apply_chosen();
        r.members.view.clear();
        r.refresh_view();
        r.configure_election();
        r.out = Output::default();
        Ok(r)
    }
    /// The highest ballot round this replica has seen: promised, led
    /// with, bid with or followed (what admission measures ballots by).
    pub(super) fn highest_round(&self) -> u64 {
        let rejoin = self.rejoin.as_ref().map_or(0, |r| r.ballot.round);
        self.acceptor.promised.round.max(self.proposer.own_ballot.round).max(self.election.highest_round()).max(rejoin)
    }
}
