//! Routing for snapshots: taking, storing, restoring, sending and
//! installing one.

use super::*;

impl<S: StateMachine> Replica<S> {
    /// Ask for a snapshot if enough has been applied since the last one.
    pub(super) fn maybe_snapshot(&mut self) {
        if self.snapshots.due(self.cfg.snapshot_every, self.learner.applied) {
            self.take_snapshot();
        }
    }
    /// Ask the runtime to store a snapshot of everything applied, unless one
    /// is pending or the last one already covers it.
    pub(super) fn take_snapshot(&mut self) {
        let (learner, members, cfg) = (&self.learner, &self.members, &self.cfg);
        let encode = || {
            let configs = snapshot::configs_after(&members.configs, learner.applied);
            snapshot::encode(
                cfg.snapshot_format,
                &learner.session_infos(),
                learner.sessions_expired_before,
                &configs,
                &learner.sm.snapshot(),
            )
        };
        if let Some(snap) = self.snapshots.take(learner.applied, self.rejoin.is_some(), encode) {
            self.out.snapshot = Some(snap);
        }
    }
    /// Replace the state machine, the duplicate table and the membership
    /// by the snapshot's at `slot`.
    pub(super) fn restore_snapshot(&mut self, slot: Slot, data: &[u8]) -> Result<(), SnapshotError> {
        let d = snapshot::decode(slot, data, self.members.configs.alpha)?;
        self.learner.restore(d.state, d.sessions, d.expired_before)?;
        if let Some(c) = d.configs {
            self.members.configs = c;
        }
        // Proposals made here that the snapshot already covers.
        self.clients.answer_covered(&self.learner.sessions, &mut self.out.responses);
        Ok(())
    }
    /// The runtime stored the snapshot at `slot`: compact and checkpoint.
    pub(super) fn on_snapshot_saved(&mut self, slot: Slot) {
        if !self.snapshots.saved(slot) {
            return;
        }
        if self.rejoin.is_some() {
            // Keep the whole log (and its `Rejoining` record) until we vote.
            self.finish_rejoin_if_caught_up();
            return;
        }
        // Keep the log a learner is being sent a snapshot for.
        let horizon = self.clock.now.saturating_sub(20 * self.cfg.retry_ticks);
        let state = (self.acceptor.promised, self.proposer.own_ballot, self.learner.commit);
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.snapshots.checkpoint(&mut net, &mut self.log, (slot, horizon, self.cfg.max_message_bytes), state);
    }
    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId, offset: u64) {
        let chunk_now = (self.cfg.snapshot_chunk, self.clock.now);
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.snapshots.send_chunk(&mut net, chunk_now, to, offset);
    }
    pub(super) fn receiver_env(&self) -> ReceiverEnv {
        ReceiverEnv { now: self.clock.now, retry_ticks: self.cfg.retry_ticks, commit: self.learner.commit }
    }
    /// Whether a snapshot transfer is under way and moving: catch-up
    /// requests wait for it (a compacted member would answer each with the
    /// snapshot's first chunk again).
    pub(super) fn receiving_snapshot(&self) -> bool {
        self.snapshots.receiver.receiving(self.receiver_env())
    }
    /// What the receiver asks for: a request to the sender, or a complete
    /// snapshot to install.
    pub(super) fn route_received(&mut self, received: Option<Received>) {
        match received {
            Some(Received::Ask(to, msg)) => self.send(to, msg),
            Some(Received::Complete(slot, data)) => self.install_snapshot(slot, data),
            None => {}
        }
    }
    /// Jump to a snapshot received from a peer.
    pub(super) fn install_snapshot(&mut self, slot: Slot, data: Bytes) {
        if slot <= self.learner.commit {
            return;
        }
        if self.is_leader() {
            // As for `Chosen`: a newer leader chose these; step down first.
            self.step_down(Ballot::ZERO);
        }
        if self.restore_snapshot(slot, &data).is_err() {
            return;
        }
        self.out.stats.snapshots_received += 1;
        self.log.compact(slot);
        self.learner.commit = slot;
        self.learner.applied = slot;
        self.learner.known_commit = self.learner.known_commit.max(slot);
        self.learner.catchup_sent_at = None;
        let snap = Snapshot { slot, data };
        self.snapshots.pending = Some(snap.clone());
        self.snapshots.installed_unsaved = Some(slot);
        self.out.snapshot = Some(snap);
        self.advance_commit();
        self.resume_phase1_if_caught_up();
    }

    // ---- rejoining after disk loss (see `rejoin.rs`) -------------------
}
