//! The proposer, acting as the distinguished leader of Multi-Paxos.
//!
//! Once elected with ballot `b`, the leader runs phase 1 a single time for
//! every slot from the first one it does not know to be chosen: one
//! `Prepare(b, from_slot)` answered by a quorum. For each slot it then
//! proposes the value accepted in the highest ballot among the promises (the
//! paper's rule, which is what makes a value once chosen stay chosen), fills
//! slots nobody accepted anything in with no-ops, and adds one no-op of its
//! own so it soon knows everything chosen before it. From then on it runs
//! only phase 2, for batches of commands, with a bounded window of slots in
//! flight.
//!
//! Reads: a leader that holds a lease (a quorum of acceptors promised not to
//! help another leader until a time it knows) answers from its state at
//! once; otherwise it confirms, by a heartbeat round answered by a quorum,
//! that no newer leader exists, then answers at its commit index as of the
//! read's arrival (the read-index method).

use crate::ballot::{Ballot, NodeId};
use crate::command::{Command, Slot, Value};
use crate::config::PlantedBug;
use crate::log::Entry;
use crate::message::{Message, PromisedEntry};
use crate::record::Record;
use crate::replica::{ClientError, FollowerRead, NodeSet, PendingRead, ReadResponse, Replica};
use crate::state_machine::StateMachine;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A slot proposed and not yet known chosen.
#[derive(Debug)]
pub(crate) struct Inflight {
    value: Value,
    acks: NodeSet,
    sent_at: u64,
}

/// Phase 1 in progress.
#[derive(Debug)]
pub(crate) struct Preparing {
    from_slot: Slot,
    promises: NodeSet,
    /// Per slot, the entry with the highest ballot (or a chosen one).
    merged: BTreeMap<Slot, PromisedEntry>,
    /// The highest compaction point a promiser reported, and who: slots up
    /// to it are chosen, but their values exist only in snapshots.
    behind: (Slot, NodeId),
    /// Reads (id, query, asking follower) that arrived during phase 1.
    reads: Vec<(u64, Bytes, Option<NodeId>)>,
    sent_at: u64,
}

/// Phase 1 done: proposing.
#[derive(Debug)]
pub(crate) struct Active {
    next_slot: Slot,
    /// The no-op proposed right after phase 1; once it is chosen this leader
    /// knows every value chosen before it.
    first_own_slot: Slot,
    inflight: BTreeMap<Slot, Inflight>,
    commit_sent: Slot,
    hb_seq: u64,
    last_hb: u64,
    /// (seq, tick sent) of recent heartbeats.
    hb_sent: VecDeque<(u64, u64)>,
    /// Highest heartbeat each member acknowledged, by member index.
    acked: Vec<u64>,
    /// Highest heartbeat each member acknowledged with a lease grant.
    lease_acked: Vec<u64>,
    lease_until: u64,
    reads: VecDeque<PendingRead>,
    read_round_wanted: bool,
}

#[derive(Debug)]
pub(crate) enum Phase {
    Preparing(Preparing),
    Active(Active),
}

/// This replica's leadership.
#[derive(Debug)]
pub(crate) struct Leader {
    pub(crate) ballot: Ballot,
    pub(crate) pending: VecDeque<Command>,
    pub(crate) phase: Phase,
}

impl Leader {
    pub(crate) fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Active(_))
    }

    pub(crate) fn lease_valid(&self, now: u64, commit: Slot) -> bool {
        match &self.phase {
            Phase::Active(a) => now < a.lease_until && commit >= a.first_own_slot,
            Phase::Preparing(_) => false,
        }
    }
}

impl<S: StateMachine> Replica<S> {
    /// Elected with `ballot`: phase 1a to every member, ourselves included.
    pub(crate) fn start_phase1(&mut self, ballot: Ballot) {
        let pending = match self.leader.take() {
            Some(old) => {
                self.fail_reads(old.phase);
                old.pending
            }
            None => VecDeque::new(),
        };
        let mut pending = pending;
        pending.extend(self.forward.drain(..));
        // Our own unanswered proposals went to a leader that may be gone.
        let again = self.unanswered_except(&pending);
        pending.extend(again);
        let from_slot = self.commit + 1;
        self.leader = Some(Leader {
            ballot,
            pending,
            phase: Phase::Preparing(Preparing {
                from_slot,
                promises: NodeSet::default(),
                merged: BTreeMap::new(),
                behind: (0, 0),
                reads: Vec::new(),
                sent_at: self.now,
            }),
        });
        self.leader_hint = Some(self.cfg.id);
        debug_assert!(ballot > self.own_ballot, "ballot {ballot} reused");
        self.own_ballot = ballot;
        self.persist(Record::Ballot(ballot));
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            self.send_after_persist(to, Message::Prepare { ballot, from_slot });
        }
    }

    /// Phase 1b arrives.
    pub(crate) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        from_slot: Slot,
        entries: Vec<PromisedEntry>,
        compacted: Slot,
    ) {
        let Some(idx) = self.member_index(from) else {
            return;
        };
        let ignore_accepted = self.cfg.has_bug(PlantedBug::IgnoreAcceptedValue);
        let Some(Leader { ballot: b, phase: Phase::Preparing(p), .. }) = self.leader.as_mut() else {
            return;
        };
        if *b != ballot || p.from_slot != from_slot || !p.promises.insert(idx) {
            return;
        }
        if compacted > p.behind.0 {
            p.behind = (compacted, from);
        }
        if !ignore_accepted {
            for e in entries {
                match p.merged.get(&e.slot) {
                    Some(have) if have.chosen || (!e.chosen && have.ballot >= e.ballot) => {}
                    _ => {
                        p.merged.insert(e.slot, e);
                    }
                }
            }
        }
        let count = p.promises.len();
        let behind = p.behind;
        if self.phase1_quorum(count) {
            if behind.0 >= from_slot {
                self.known_commit = self.known_commit.max(behind.0);
                // Slots we would have to propose are compacted away at a
                // promiser: fetch its snapshot first, then prepare again from
                // the new commit index (same ballot; nothing proposed yet).
                if self.commit < behind.0 {
                    self.request_catch_up(Some(behind.1));
                }
                // (We may have caught up while preparing.)
                self.resume_phase1_if_caught_up();
                return;
            }
            self.become_active();
        }
    }

    /// Once a leader held back by a compacted promiser has caught up, run
    /// phase 1 again from its new commit index.
    pub(crate) fn resume_phase1_if_caught_up(&mut self) {
        let commit = self.commit;
        let now = self.now;
        let Some(Leader { ballot, phase: Phase::Preparing(p), .. }) = self.leader.as_mut() else { return };
        if p.behind.0 == 0 || commit < p.behind.0 {
            return;
        }
        let ballot = *ballot;
        let reads = std::mem::take(&mut p.reads);
        *p = Preparing {
            from_slot: commit + 1,
            promises: NodeSet::default(),
            merged: BTreeMap::new(),
            behind: (0, 0),
            reads,
            sent_at: now,
        };
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            self.send(to, Message::Prepare { ballot, from_slot: commit + 1 });
        }
    }

    /// A quorum promised: propose the recovered values, fill holes with
    /// no-ops, and add a no-op of our own.
    fn become_active(&mut self) {
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        let Phase::Preparing(p) = &mut leader.phase else {
            return;
        };
        let from_slot = p.from_slot;
        let merged = std::mem::take(&mut p.merged);
        let early_reads = std::mem::take(&mut p.reads);
        let last_recovered = merged.keys().next_back().copied().unwrap_or(0).max(from_slot - 1);
        let mut values: Vec<Value> =
            (from_slot..=last_recovered).map(|s| merged.get(&s).map_or(Value::Noop, |e| e.value.clone())).collect();
        values.push(Value::Noop);
        let first_own_slot = last_recovered + 1;
        let n = self.cfg.members.len();
        let now = self.now;
        let mut inflight = BTreeMap::new();
        for (i, v) in values.iter().enumerate() {
            inflight
                .insert(from_slot + i as Slot, Inflight { value: v.clone(), acks: NodeSet::default(), sent_at: now });
        }
        leader.phase = Phase::Active(Active {
            next_slot: first_own_slot + 1,
            first_own_slot,
            inflight,
            commit_sent: self.commit,
            hb_seq: 0,
            last_hb: now,
            hb_sent: VecDeque::new(),
            acked: vec![0; n],
            lease_acked: vec![0; n],
            lease_until: 0,
            reads: VecDeque::new(),
            read_round_wanted: false,
        });
        let ballot = leader.ballot;
        let commit = self.commit;
        self.broadcast_accept(ballot, from_slot, values, commit);
        self.send_heartbeat();
        // Reads that came in during phase 1, or while no leader was known,
        // are ours now.
        for (id, query, origin) in early_reads {
            self.queue_read(id, query, origin);
        }
        let waiting: Vec<FollowerRead> = self.follower_reads.extract_if(.., |r| !r.asked).collect();
        for r in waiting {
            self.queue_read(r.id, r.query, None);
        }
    }

    fn broadcast_accept(&mut self, ballot: Ballot, first_slot: Slot, values: Vec<Value>, commit: Slot) {
        let members = self.cfg.members.clone();
        let Some((&last, rest)) = members.split_last() else {
            return;
        };
        for &to in rest {
            let values = values.clone();
            self.send(to, Message::Accept { ballot, first_slot, values, commit });
        }
        self.send(last, Message::Accept { ballot, first_slot, values, commit });
    }

    /// The active leadership in `ballot`, with `from`'s member index, if we
    /// lead in that ballot and `from` is a member.
    fn active_in(&mut self, from: NodeId, ballot: Ballot) -> Option<(usize, &mut Active)> {
        let idx = self.member_index(from)?;
        match self.leader.as_mut() {
            Some(Leader { ballot: b, phase: Phase::Active(a), .. }) if *b == ballot => Some((idx, a)),
            _ => None,
        }
    }

    /// Acceptors whose acknowledgement a lease or a read confirmation needs.
    fn phase2_size(&self) -> usize {
        if self.cfg.has_bug(PlantedBug::SmallQuorum) {
            self.cfg.quorum.phase2().saturating_sub(1).max(1)
        } else {
            self.cfg.quorum.phase2()
        }
    }

    /// Phase 2b arrives: count it; a quorum chooses the slot.
    pub(crate) fn on_accepted(&mut self, from: NodeId, ballot: Ballot, first_slot: Slot, last_slot: Slot) {
        let Some((idx, a)) = self.active_in(from, ballot) else { return };
        let mut chosen = Vec::new();
        for (&slot, inf) in a.inflight.range_mut(first_slot..=last_slot) {
            if inf.acks.insert(idx) {
                chosen.push((slot, inf.acks.len()));
            }
        }
        let mut newly = Vec::new();
        for (slot, count) in chosen {
            if self.phase2_quorum(count) {
                newly.push(slot);
            }
        }
        if newly.is_empty() {
            return;
        }
        for slot in newly {
            let Some(Leader { phase: Phase::Active(a), .. }) = self.leader.as_mut() else {
                return;
            };
            let Some(inf) = a.inflight.remove(&slot) else {
                continue;
            };
            let own = self.log.get(slot).is_some_and(|e| e.ballot == ballot && e.value == inf.value);
            if !own {
                // Our own acceptance is not in the log: record the value
                // before the commit index that covers it.
                self.persist(Record::Chosen { first_slot: slot, values: vec![inf.value.clone()] });
            }
            self.log.set(slot, Entry { ballot, value: inf.value, chosen: true });
            self.log.mark_chosen(slot);
        }
        self.advance_commit();
    }

    /// An acceptor refused us.
    pub(crate) fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        let Some(leader) = self.leader.as_ref() else {
            return;
        };
        if leader.ballot != ballot || promised <= ballot {
            return;
        }
        match leader.phase {
            Phase::Preparing(_) => {
                // Someone promised a higher ballot: a live rival (election
                // will make us follow it) or a leader that is gone (election
                // will have us bid above it at the end of the round).
                self.election.refused(promised);
            }
            Phase::Active(_) => self.step_down(promised),
        }
    }

    /// Stop leading: a higher ballot exists.
    pub(crate) fn step_down(&mut self, higher: Ballot) {
        let Some(old) = self.leader.take() else {
            return;
        };
        self.abandoned = old.ballot;
        if self.election.is_leader() && self.election.ballot() == old.ballot {
            // Deposed while the election still names us: stop standing, or
            // followers who cannot hear the new leader would keep us alive.
            self.election.withdraw();
        }
        self.forward.extend(old.pending);
        self.fail_reads(old.phase);
        let hint = (higher.node != self.cfg.id && higher.node != 0).then_some(higher.node);
        self.set_leader_hint(hint);
    }

    fn fail_reads(&mut self, phase: Phase) {
        let leader = self.leader_hint.filter(|&l| l != self.cfg.id);
        if let Phase::Preparing(p) = &phase {
            for (id, _, origin) in &p.reads {
                match origin {
                    Some(follower) => self.send(*follower, Message::ReadIndexReply { id: *id, index: 0 }),
                    None => {
                        self.out.reads.push(ReadResponse { id: *id, result: Err(ClientError::NotLeader { leader }) })
                    }
                }
            }
        }
        if let Phase::Active(a) = phase {
            for r in a.reads {
                match r.origin {
                    Some(follower) => self.send(follower, Message::ReadIndexReply { id: r.id, index: 0 }),
                    None => {
                        self.out.reads.push(ReadResponse { id: r.id, result: Err(ClientError::NotLeader { leader }) })
                    }
                }
            }
        }
    }

    /// Pack pending commands into slots and send what is due. Called once
    /// per output, so everything that arrived since is one batch.
    pub(crate) fn flush(&mut self) {
        let window = self.cfg.max_inflight_slots;
        let max_batch = self.cfg.max_batch;
        let max_batch_bytes = self.cfg.max_batch_bytes;
        let now = self.now;
        let commit = self.commit;
        if let Some(Leader { ballot, pending, phase: Phase::Active(a) }) = self.leader.as_mut() {
            let ballot = *ballot;
            let first = a.next_slot;
            let mut values = Vec::new();
            while !pending.is_empty() && a.inflight.len() < window {
                // At most `max_batch` commands and, past the first,
                // `max_batch_bytes` of payload per slot.
                let mut take = 0;
                let mut bytes = 0;
                for c in pending.iter().take(max_batch) {
                    if take > 0 && bytes + c.payload.len() > max_batch_bytes {
                        break;
                    }
                    bytes += c.payload.len();
                    take += 1;
                }
                let batch: Arc<[Command]> = pending.drain(..take).collect();
                let value = Value::Commands(batch);
                a.inflight
                    .insert(a.next_slot, Inflight { value: value.clone(), acks: NodeSet::default(), sent_at: now });
                a.next_slot += 1;
                values.push(value);
            }
            let send_commit = values.is_empty() && commit > a.commit_sent;
            a.commit_sent = commit;
            let read_round = std::mem::take(&mut a.read_round_wanted);
            if !values.is_empty() {
                self.broadcast_accept(ballot, first, values, commit);
            } else if send_commit {
                for i in 0..self.cfg.members.len() {
                    let to = self.cfg.members[i];
                    if to != self.cfg.id {
                        self.send(to, Message::Commit { ballot, commit });
                    }
                }
            }
            if read_round {
                self.send_heartbeat();
            }
        }
        if let Some(l) = self.leader_hint.filter(|&l| l != self.cfg.id) {
            if !self.forward.is_empty() && self.leader.is_none() {
                let commands = std::mem::take(&mut self.forward);
                self.send(l, Message::Forward { commands });
            }
        }
        self.persist_commit();
        self.maybe_snapshot();
    }

    /// Timers: heartbeats, and resending what went unanswered.
    pub(crate) fn leader_tick(&mut self) {
        let now = self.now;
        let retry = self.cfg.retry_ticks;
        let Some(leader) = self.leader.as_mut() else {
            return;
        };
        let ballot = leader.ballot;
        match &mut leader.phase {
            Phase::Preparing(p) => {
                if now >= p.sent_at + retry {
                    p.sent_at = now;
                    let from_slot = p.from_slot;
                    let missing: Vec<NodeId> = (0..self.cfg.members.len())
                        .filter(|&i| !p.promises.contains(i))
                        .map(|i| self.cfg.members[i])
                        .collect();
                    for to in missing {
                        self.send(to, Message::Prepare { ballot, from_slot });
                    }
                }
            }
            Phase::Active(a) => {
                let heartbeat_due = now >= a.last_hb + self.cfg.heartbeat_ticks;
                let mut resend: Vec<(usize, Slot, Value)> = Vec::new();
                for (&slot, inf) in a.inflight.iter_mut() {
                    if now >= inf.sent_at + retry {
                        inf.sent_at = now;
                        for i in 0..self.cfg.members.len() {
                            if !inf.acks.contains(i) {
                                resend.push((i, slot, inf.value.clone()));
                            }
                        }
                    }
                }
                let commit = self.commit;
                resend.sort_by_key(|r| (r.0, r.1));
                let mut i = 0;
                while i < resend.len() {
                    let (member, first_slot, _) = resend[i];
                    let mut values = Vec::new();
                    let mut j = i;
                    while j < resend.len() && resend[j].0 == member && resend[j].1 == first_slot + (j - i) as Slot {
                        values.push(resend[j].2.clone());
                        j += 1;
                    }
                    let to = self.cfg.members[member];
                    self.send(to, Message::Accept { ballot, first_slot, values, commit });
                    i = j;
                }
                if heartbeat_due {
                    self.send_heartbeat();
                }
            }
        }
    }

    /// A heartbeat round: commit index out, lease renewal and read
    /// confirmation back.
    fn send_heartbeat(&mut self) {
        let now = self.now;
        let me = self.cfg.id;
        let lease_ticks = self.cfg.lease_ticks;
        let Some(my_idx) = self.member_index(me) else {
            return;
        };
        let promised = self.promised;
        let commit = self.commit;
        let Some(Leader { ballot, phase: Phase::Active(a), .. }) = self.leader.as_mut() else {
            return;
        };
        let ballot = *ballot;
        a.hb_seq += 1;
        a.last_hb = now;
        let seq = a.hb_seq;
        let last_slot = a.next_slot - 1;
        a.hb_sent.push_back((seq, now));
        while a.hb_sent.len() > 256 {
            a.hb_sent.pop_front();
        }
        if promised == ballot {
            a.acked[my_idx] = seq;
            if lease_ticks > 0 {
                a.lease_acked[my_idx] = seq;
            }
        }
        if promised == ballot && lease_ticks > 0 {
            self.lease_holder = me;
            self.lease_until = self.lease_until.max(now + lease_ticks);
        }
        for i in 0..self.cfg.members.len() {
            let to = self.cfg.members[i];
            if to != me {
                self.send(to, Message::Heartbeat { ballot, commit, seq, last_slot });
            }
        }
        self.update_confirmations();
    }

    pub(crate) fn on_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, seq: u64, lease: bool) {
        let Some((idx, a)) = self.active_in(from, ballot) else { return };
        a.acked[idx] = a.acked[idx].max(seq);
        if lease {
            a.lease_acked[idx] = a.lease_acked[idx].max(seq);
        }
        self.update_confirmations();
    }

    /// Recompute what a quorum of heartbeat acknowledgements proves: the
    /// lease, and which pending reads are confirmed.
    fn update_confirmations(&mut self) {
        let q2 = self.phase2_size();
        let margin =
            if self.cfg.has_bug(PlantedBug::LeaseNoDriftMargin) { 0 } else { self.cfg.lease_drift_margin_ticks };
        let lease_ticks = self.cfg.lease_ticks;
        let Some(Leader { phase: Phase::Active(a), .. }) = self.leader.as_mut() else {
            return;
        };
        let quorum_seq = |acks: &[u64]| {
            let mut v = acks.to_vec();
            v.sort_unstable_by(|x, y| y.cmp(x));
            v.get(q2 - 1).copied().unwrap_or(0)
        };
        if lease_ticks > 0 {
            let lease_seq = quorum_seq(&a.lease_acked);
            if let Some(&(_, sent)) = a.hb_sent.iter().find(|(s, _)| *s == lease_seq) {
                a.lease_until = a.lease_until.max(sent + lease_ticks.saturating_sub(margin));
            }
        }
        let _ = quorum_seq(&a.acked);
        self.serve_reads();
    }

    /// A linearizable read arrives. The leader serves it; a follower asks
    /// the leader for a read index and serves it once applied that far.
    pub(crate) fn on_read(&mut self, id: u64, query: Bytes) {
        if self.is_leader() {
            self.queue_read(id, query, None);
            return;
        }
        if let Some(Leader { phase: Phase::Preparing(p), .. }) = self.leader.as_mut() {
            p.reads.push((id, query, None));
            return;
        }
        match self.leader_hint.filter(|&l| l != self.cfg.id) {
            Some(l) => {
                let since = self.now;
                self.follower_reads.push(FollowerRead { id, query, index: None, since, asked: true });
                self.send(l, Message::ReadIndex { id });
            }
            None => {
                // Wait (up to the usual expiry) for a leader to appear.
                let since = self.now;
                self.follower_reads.push(FollowerRead { id, query, index: None, since, asked: false });
            }
        }
    }

    /// A follower asks for a read index.
    pub(crate) fn on_read_index(&mut self, from: NodeId, id: u64) {
        if self.is_leader() {
            self.queue_read(id, Bytes::new(), Some(from));
        } else if let Some(Leader { phase: Phase::Preparing(p), .. }) = self.leader.as_mut() {
            // Answered once phase 1 completes.
            p.reads.push((id, Bytes::new(), Some(from)));
        } else {
            self.send(from, Message::ReadIndexReply { id, index: 0 });
        }
    }

    fn queue_read(&mut self, id: u64, query: Bytes, origin: Option<NodeId>) {
        let now = self.now;
        let commit = self.commit;
        let Some(Leader { phase: Phase::Active(a), .. }) = self.leader.as_mut() else {
            return;
        };
        let read_index = commit.max(a.first_own_slot);
        let lease = now < a.lease_until && commit >= a.first_own_slot;
        // With a lease no round is needed: seq 0 is confirmed.
        let seq = if lease { 0 } else { a.hb_seq + 1 };
        if !lease {
            a.read_round_wanted = true;
        }
        a.reads.push_back(PendingRead { id, query, read_index, seq, origin });
        self.serve_reads();
    }

    /// The leader's answer to our `ReadIndex`.
    pub(crate) fn on_read_index_reply(&mut self, id: u64, index: Slot) {
        let Some(pos) = self.follower_reads.iter().position(|r| r.id == id && r.index.is_none()) else {
            return;
        };
        if index == 0 {
            let r = self.follower_reads.remove(pos);
            let leader = self.leader_hint.filter(|&l| l != self.cfg.id);
            self.out.reads.push(ReadResponse { id: r.id, result: Err(ClientError::NotLeader { leader }) });
        } else {
            self.follower_reads[pos].index = Some(index);
            self.serve_follower_reads();
        }
    }

    /// Answer every pending read that is confirmed (and, for reads made
    /// here, applied); tell followers their confirmed read index.
    pub(crate) fn serve_reads(&mut self) {
        let q2 = self.phase2_size();
        let applied = self.applied;
        let Some(Leader { phase: Phase::Active(a), .. }) = self.leader.as_mut() else {
            return;
        };
        if a.reads.is_empty() {
            return;
        }
        let mut acks = a.acked.clone();
        acks.sort_unstable_by(|x, y| y.cmp(x));
        let confirmed = acks.get(q2 - 1).copied().unwrap_or(0);
        let mut ready = Vec::new();
        a.reads.retain_mut(|r| {
            let ok = r.seq <= confirmed && (r.origin.is_some() || applied >= r.read_index);
            if ok {
                ready.push(PendingRead {
                    id: r.id,
                    query: std::mem::take(&mut r.query),
                    read_index: r.read_index,
                    seq: r.seq,
                    origin: r.origin,
                });
            }
            !ok
        });
        for r in ready {
            match r.origin {
                Some(follower) => {
                    let msg = Message::ReadIndexReply { id: r.id, index: r.read_index };
                    self.send(follower, msg);
                }
                None => {
                    let result = Ok(self.sm.query(&r.query));
                    self.out.reads.push(ReadResponse { id: r.id, result });
                }
            }
        }
    }

    /// Answer the follower reads whose read index is applied.
    pub(crate) fn serve_follower_reads(&mut self) {
        if self.follower_reads.is_empty() {
            return;
        }
        let applied = self.applied;
        let mut i = 0;
        while i < self.follower_reads.len() {
            if self.follower_reads[i].index.is_some_and(|x| x <= applied) {
                let r = self.follower_reads.remove(i);
                let result = Ok(self.sm.query(&r.query));
                self.out.reads.push(ReadResponse { id: r.id, result });
            } else {
                i += 1;
            }
        }
    }

    /// Give up on follower reads the leader never answered.
    pub(crate) fn expire_follower_reads(&mut self) {
        let horizon = self.now.saturating_sub(2 * self.cfg.election_ticks);
        let leader = self.leader_hint.filter(|&l| l != self.cfg.id);
        let mut i = 0;
        while i < self.follower_reads.len() {
            if self.follower_reads[i].since < horizon {
                let r = self.follower_reads.remove(i);
                self.out.reads.push(ReadResponse { id: r.id, result: Err(ClientError::NotLeader { leader }) });
            } else {
                i += 1;
            }
        }
    }
}
