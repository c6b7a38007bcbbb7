//! Clients' requests made at this replica: proposals not yet answered,
//! commands waiting for a leader to be passed to, and linearizable reads
//! made while following (served once the leader's read index is applied).
//!
//! This module only keeps and routes requests; it decides nothing about
//! what is chosen. It must never answer a read before the leader confirmed
//! its read index and the state machine applied that far.

use crate::command::{Command, CommandId};
use crate::io::{ClientError, FollowerRead, ReadResponse, Response};
use crate::learner::Session;
use crate::message::{command_size_bound, split_by_size, Message, ENVELOPE_BYTES};
use crate::outbox::Net;
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Slot};
use bytes::Bytes;
use std::collections::HashMap;

/// Clients' requests made at this replica and not yet answered, and where
/// they are sent.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clients {
    /// The replica this one believes leads.
    pub(crate) leader_hint: Option<NodeId>,
    /// Commands waiting for a leader to forward them to.
    pub(crate) forward: Vec<Command>,
    /// Linearizable reads made here while following.
    pub(crate) follower_reads: Vec<FollowerRead>,
    /// Proposals made here and not yet answered: when proposed, and the
    /// command (passed on again when the leader changes).
    pub(crate) local: HashMap<CommandId, (u64, Command)>,
}

impl Clients {
    /// The leader this replica believes in, if it is not `me`.
    pub(crate) fn other_leader(&self, me: NodeId) -> Option<NodeId> {
        self.leader_hint.filter(|&l| l != me)
    }

    /// `hint` (or nobody) leads, as of `now`: reads made here while no
    /// leader was known ask it for a read index, waiting commands go to it,
    /// and (when the hint changed) every unanswered proposal made here is
    /// passed to it again. `max_message_bytes` bounds each `Forward`.
    pub(crate) fn set_leader_hint<O>(
        &mut self,
        net: &mut Net<'_, O>,
        me: NodeId,
        hint: Option<NodeId>,
        now: u64,
        max_message_bytes: usize,
    ) {
        let changed = hint != self.leader_hint;
        self.leader_hint = hint;
        let Some(l) = hint.filter(|&l| l != me) else { return };
        for r in self.follower_reads.iter_mut().filter(|r| !r.asked) {
            r.asked = true;
            r.since = now;
            let id = r.id;
            net.out.send.push((l, Message::ReadIndex { id }));
        }
        let mut commands = std::mem::take(&mut self.forward);
        if changed {
            // Proposals passed to the old leader may have died with it: pass
            // every unanswered one to the new leader (applied at most once
            // whichever copy is chosen).
            let again = self.unanswered_except(&commands);
            commands.extend(again);
        }
        if !commands.is_empty() {
            send_forward(net, l, commands, max_message_bytes);
        }
    }

    /// Proposals made here and not yet answered, oldest first, except those
    /// already in `queued`.
    pub(crate) fn unanswered_except<'a>(&self, queued: impl IntoIterator<Item = &'a Command>) -> Vec<Command> {
        let queued: std::collections::HashSet<CommandId> = queued.into_iter().map(|c| c.id).collect();
        let mut again: Vec<&(u64, Command)> = self.local.values().filter(|(_, c)| !queued.contains(&c.id)).collect();
        again.sort_by_key(|(since, c)| (*since, c.id));
        again.into_iter().map(|(_, c)| c.clone()).collect()
    }

    /// A linearizable read made here while following, at `now`: ask the
    /// leader we know of (other than `me`) for a read index, or wait (up
    /// to the usual expiry) for a leader to appear.
    pub(crate) fn follower_read<O>(&mut self, net: &mut Net<'_, O>, me: NodeId, id: u64, query: Bytes, now: u64) {
        match self.other_leader(me) {
            Some(l) => {
                self.follower_reads.push(FollowerRead { id, query, index: None, since: now, asked: true });
                net.send(l, Message::ReadIndex { id });
            }
            None => {
                self.follower_reads.push(FollowerRead { id, query, index: None, since: now, asked: false });
            }
        }
    }

    /// The leader's answer to our `ReadIndex`: 0 refuses the read (the
    /// client is pointed at the leader we know of); otherwise the read is
    /// served once `sm` has applied that far (`applied`).
    pub(crate) fn on_read_index_reply<S: StateMachine>(
        &mut self,
        out: &mut Vec<ReadResponse<S::Output>>,
        me: NodeId,
        (id, index): (u64, Slot),
        sm: &S,
        applied: Slot,
    ) {
        let Some(pos) = self.follower_reads.iter().position(|r| r.id == id && r.index.is_none()) else {
            return;
        };
        if index == 0 {
            let r = self.follower_reads.remove(pos);
            let leader = self.other_leader(me);
            out.push(ReadResponse { id: r.id, result: Err(ClientError::NotLeader { leader }) });
        } else {
            self.follower_reads[pos].index = Some(index);
            self.serve_follower_reads(out, sm, applied);
        }
    }

    /// Answer the follower reads whose read index `sm` has applied
    /// (`applied`).
    pub(crate) fn serve_follower_reads<S: StateMachine>(
        &mut self,
        out: &mut Vec<ReadResponse<S::Output>>,
        sm: &S,
        applied: Slot,
    ) {
        if self.follower_reads.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.follower_reads.len() {
            if self.follower_reads[i].index.is_some_and(|x| x <= applied) {
                let r = self.follower_reads.remove(i);
                let result = Ok(sm.query(&r.query));
                out.push(ReadResponse { id: r.id, result });
            } else {
                i += 1;
            }
        }
    }

    /// Give up on follower reads the leader never answered, made before
    /// `horizon`.
    pub(crate) fn expire_follower_reads<O>(&mut self, out: &mut Vec<ReadResponse<O>>, me: NodeId, horizon: u64) {
        let leader = self.other_leader(me);
        let mut i = 0;
        while i < self.follower_reads.len() {
            if self.follower_reads[i].since < horizon {
                let r = self.follower_reads.remove(i);
                out.push(ReadResponse { id: r.id, result: Err(ClientError::NotLeader { leader }) });
            } else {
                i += 1;
            }
        }
    }
}

impl Clients {
    /// A snapshot was installed with the duplicate table `sessions`: the
    /// proposals made here that it already covers are answered (applied,
    /// with no result to give), in id order (the same inputs must give the
    /// same outputs).
    pub(crate) fn answer_covered<O>(&mut self, sessions: &HashMap<u64, Session<O>>, responses: &mut Vec<Response<O>>) {
        let mut covered: Vec<_> =
            self.local.keys().filter(|id| sessions.get(&id.client).is_some_and(|s| id.seq <= s.seq)).copied().collect();
        covered.sort_unstable();
        for id in covered {
            self.local.remove(&id);
            responses.push(Response { id, result: Err(ClientError::AppliedWithoutResult) });
        }
    }
}

/// Pass `commands` on to `to`, in as many `Forward`s as
/// `max_message_bytes` needs.
pub(crate) fn send_forward<O>(net: &mut Net<'_, O>, to: NodeId, commands: Vec<Command>, max_message_bytes: usize) {
    let budget = max_message_bytes.saturating_sub(ENVELOPE_BYTES);
    for commands in split_by_size(commands, budget, command_size_bound) {
        net.send(to, Message::Forward { commands });
    }
}
