//! Routing for the learner: the commit index, applying chosen values,
//! catching up from peers, the commit record.

use super::*;

impl<S: StateMachine> Replica<S> {
    /// Learn from a commit index that a leader with `ballot` announced.
    pub(super) fn learn_commit(&mut self, from: NodeId, ballot: Ballot, commit: Slot) {
        self.learner.learn(&mut self.log, ballot, commit);
        self.advance_commit();
        if self.learner.behind() && self.learner.catchup_sent_at.is_none() {
            self.request_catch_up(Some(from));
        }
    }
    /// Move the commit index over the chosen prefix and apply it; then
    /// every role that waits on the commit index looks again.
    pub(super) fn advance_commit(&mut self) {
        self.learner.advance(&self.log);
        self.forget_chosen_inflight();
        self.learner.known_commit = self.learner.known_commit.max(self.learner.commit);
        self.apply_chosen();
        self.refresh_view();
        self.finish_rejoin_if_caught_up();
        self.resume_phase1_if_caught_up();
    }
    /// Apply the chosen prefix, and route what the learner reports: a
    /// configuration chosen to the membership, an answer to the client that
    /// proposed here; then serve the reads the applied state allows.
    pub(super) fn apply_chosen(&mut self) {
        for learned in self.learner.apply_chosen(&self.log) {
            match learned {
                Learned::Configuration(slot, m) => {
                    self.members.configs.chosen.insert(slot, m);
                }
                Learned::Answer(id, output) => {
                    let local = self.clients.local.remove(&id).is_some();
                    if let (true, Some(result)) = (local, output) {
                        self.out.responses.push(Response { id, result });
                    }
                }
            }
        }
        self.serve_reads();
        self.serve_follower_reads();
    }
    /// Ask for the chosen values we are missing: of `from`, else of the
    /// leader we know of (not while a snapshot is arriving).
    pub(super) fn request_catch_up(&mut self, from: Option<NodeId>) {
        if self.receiving_snapshot() {
            return;
        }
        let me = self.cfg.id;
        let Some(to) = from.filter(|&n| n != me).or(self.clients.other_leader(me)) else { return };
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.learner.request_catch_up(&mut net, self.clock.now, to);
    }
    /// The learner's timers: retry catch-up; give up on follower reads
    /// never answered; resume a stalled snapshot transfer; ask again while
    /// rejoining; forget proposals nobody will answer.
    pub(super) fn learner_tick(&mut self) {
        if self.learner.catch_up_due(self.clock.now, self.cfg.retry_ticks) {
            let any = self.random_peer();
            // A leader held back in phase 1 by a compacted promiser is
            // its own leader hint: it asks a peer (a hint naming
            // ourselves used to win here and then be dropped, so a lost
            // catch-up request was never sent again and that leader
            // prepared forever; found by swarm testing, seed 177 on 5
            // nodes).
            let hint = self.clients.other_leader(self.cfg.id);
            self.request_catch_up(hint.or(any));
        }
        self.expire_follower_reads();
        let received = self.snapshots.receiver.tick(self.receiver_env());
        self.route_received(received);
        self.rejoin_tick();
        if self.clock.now.is_multiple_of(self.cfg.election_ticks) {
            let horizon = self.clock.now.saturating_sub(self.cfg.election_ticks * 20);
            self.clients.local.retain(|_, (since, _)| *since >= horizon);
        }
    }
    pub(super) fn random_peer(&mut self) -> Option<NodeId> {
        let members = self.view_members();
        let n = members.len();
        if n < 2 {
            return None;
        }
        let pick = members[self.clock.rng.usize(0..n)];
        (pick != self.cfg.id).then_some(pick)
    }
    /// Serve a catch-up request from the chosen prefix (or our snapshot).
    pub(super) fn on_catch_up(&mut self, from: NodeId, from_slot: Slot) {
        if self.proposer.leader.is_some() {
            let p = self.members.progress.entry(from).or_default();
            *p = (*p).max(from_slot.saturating_sub(1));
        }
        let (max_slots, max_bytes) = (self.cfg.max_catchup_slots, self.cfg.max_message_bytes);
        match self.learner.catch_up_reply(&self.log, from_slot, max_slots, max_bytes) {
            CatchUpReply::Nothing => {}
            CatchUpReply::Snapshot => self.send_snapshot_chunk(from, 0),
            CatchUpReply::Chosen(msg) => self.send(from, msg),
        }
    }
    /// Chosen values from a catch-up reply.
    pub(super) fn on_chosen(&mut self, first_slot: Slot, values: Vec<Value>, commit: Slot) {
        // We ask from our commit index on, and it only grows, so a reply
        // that starts above it is not an answer to us (admission: the
        // range is not empty and does not overflow).
        if first_slot == 0 || first_slot > self.learner.commit + 1 {
            return;
        }
        if self.is_leader() && first_slot + values.len() as Slot > self.learner.commit + 1 {
            // Someone chose values we did not: a newer leader exists. Step
            // down before learning them, so our commit index is never
            // advertised in our (stale) ballot.
            self.step_down(Ballot::ZERO);
        }
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.learner.take_chosen(&mut self.log, &mut net, first_slot, values, commit);
        self.advance_commit();
        self.resume_phase1_if_caught_up();
        if self.learner.behind() {
            self.request_catch_up(None);
        }
    }
    /// Persist the commit index once per output, after the records that
    /// hold the values it covers.
    pub(super) fn persist_commit(&mut self) {
        if self.snapshots.installed_unsaved.is_some() {
            // The slots the installed snapshot covers are not in our records.
            return;
        }
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        self.learner.persist_commit(&mut net);
    }

    // ---- snapshots (see `snapshot.rs`) ----------------------------------
}
