//! Routing for leadership: phase 1 and 2 results, reads, session expiry,
//! proposals made here, and a rejoining member's return to voting.

use super::*;

impl<S: StateMachine> Replica<S> {
    /// While rejoining: every leader's ballot raises the promise we will
    /// start with.
    pub(super) fn observe_leader(&mut self, ballot: Ballot) {
        if let Some(r) = self.rejoin.as_mut() {
            r.observe_leader(ballot);
        }
    }
    /// While rejoining, ask the members that have not answered yet.
    pub(super) fn rejoin_tick(&mut self) {
        let Some(r) = self.rejoin.as_mut() else { return };
        let mut net = Net::new(&self.cfg, &mut self.outbox, &mut self.out);
        if r.tick(&mut net, &self.cfg, self.clock.now) {
            self.finish_rejoin_if_caught_up();
        }
    }
    /// Vote again once the rejoin rule allows (see [`Rejoin::ready`]):
    /// promise the highest ballot heard of, and bid only above it.
    pub(super) fn finish_rejoin_if_caught_up(&mut self) {
        let needed = rejoin::witnesses_needed(&self.cfg);
        let Some(r) = self.rejoin.as_ref() else { return };
        if !self.members.configs.chosen.is_empty() {
            // The membership changed: the members asked (the initial ones)
            // need not meet the quorums that may have counted on us. Stay a
            // learner; an operator replaces this member by a new one.
            return;
        }
        let Some(ballot) = r.ready(needed, self.learner.commit, self.snapshots.pending.is_some()) else { return };
        self.rejoin = None;
        self.configure_election();
        self.election.raise_round(ballot.round.saturating_add(1));
        self.proposer.own_ballot = self.proposer.own_ballot.max(ballot);
        if ballot > self.acceptor.promised {
            self.acceptor.promised = ballot;
            self.persist(Record::Promised(ballot));
        }
        self.persist(Record::Rejoined);
    }

    // ---- the leader's entry points (see `leader.rs`) -------------------
    pub(super) fn start_phase1(&mut self, ballot: Ballot) {
        self.lead(|l| l.start_phase1(ballot));
    }
    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
        entries: Vec<PromisedEntry>,
        compacted: Slot,
    ) {
        let Some(behind) = self.lead(|l| l.on_promise(from, ballot, from_slot, entries, compacted)) else { return };
        self.learner.known_commit = self.learner.known_commit.max(behind.slot);
        if self.learner.commit < behind.slot {
            self.request_catch_up(Some(behind.from));
        }
        // (We may have caught up while preparing.)
        self.resume_phase1_if_caught_up();
    }
    pub(super) fn resume_phase1_if_caught_up(&mut self) {
        self.lead(|l| l.resume_phase1_if_caught_up());
    }
    pub(super) fn on_accepted(&mut self, from: NodeId, ballot: Ballot, first_slot: Slot, last_slot: Slot) {
        let chosen = self.lead(|l| {
            l.handover_accepted(from, ballot, first_slot, last_slot);
            l.on_accepted(from, ballot, first_slot, last_slot)
        });
        if chosen {
            self.advance_commit();
        }
    }
    pub(super) fn forget_chosen_inflight(&mut self) {
        self.lead(|l| l.forget_chosen_inflight());
    }
    pub(super) fn step_down(&mut self, higher: Ballot) {
        self.lead(|l| l.step_down(higher));
    }
    pub(super) fn serve_reads(&mut self) {
        self.lead(|l| l.serve_reads());
    }
    pub(super) fn flush(&mut self) {
        if self.lead(|l| l.flush()) {
            self.persist_commit();
            self.maybe_snapshot();
        }
    }
    /// Session expiry: the learner says which sessions are due to go, the
    /// leader proposes so.
    pub(super) fn expire_sessions_tick(&mut self) {
        let now = self.clock.now;
        if let Some(before) = self.learner.expiry_due(now, self.cfg.session_expiry_ticks) {
            self.lead(|l| l.expire_sessions(before));
        }
    }
    pub(super) fn serve_follower_reads(&mut self) {
        let (sm, applied) = (&self.learner.sm, self.learner.applied);
        self.clients.serve_follower_reads(&mut self.out.reads, sm, applied);
    }
    pub(super) fn expire_follower_reads(&mut self) {
        let horizon = self.clock.now.saturating_sub(2 * self.cfg.election_ticks);
        self.clients.expire_follower_reads(&mut self.out.reads, self.cfg.id, horizon);
    }
    pub(super) fn on_propose(&mut self, cmd: Command) {
        if self.clients.local.len() + self.clients.forward.len() >= self.cfg.max_pending {
            self.out.responses.push(Response { id: cmd.id, result: Err(ClientError::Busy) });
            return;
        }
        self.clients.local.insert(cmd.id, (self.clock.now, cmd.clone()));
        self.enqueue(cmd);
    }
    /// Commands waiting here for a slot or for a leader.
    pub(super) fn queued(&self) -> usize {
        self.clients.forward.len() + self.proposer.leader.as_ref().map_or(0, |l| l.pending_len())
    }
    /// Queue a command at the leader, or pass it on towards one.
    pub(super) fn enqueue(&mut self, cmd: Command) {
        if let Some(leader) = self.proposer.leader.as_mut() {
            leader.enqueue(cmd);
        } else {
            match self.clients.leader_hint {
                Some(l) if l != self.cfg.id => self.send(l, Message::Forward { commands: vec![cmd] }),
                _ => self.clients.forward.push(cmd),
            }
        }
    }

    // ---- plumbing -------------------------------------------------------
}
