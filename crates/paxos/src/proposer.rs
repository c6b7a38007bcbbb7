//! The proposer role: the leadership this node holds, phase by phase
//! (preparing, then active), and the ballots it may not reuse.
//!
//! Its types own the leader's state: the promises gathered in phase 1 and
//! the values recovered from them, the slots in flight and who accepted
//! them, heartbeat rounds and the lease they earn, the reads waiting for
//! confirmation, the client commands held. Their methods apply the
//! leader's own rules to that state and return what the caller must act
//! on (a value chosen, a membership change to answer, reads to answer or
//! refuse, accepts to resend); the leader at work (`Leading`, in
//! `leader.rs`) sends those to the log, the network and the clients. This
//! module must never reach a replica: it sees only what its callers pass in
//! (the clock reading, the commit index, the log, the voters that count).
//!
//! The phases' fields are private: `leader.rs` reads them through methods
//! and changes them only through the rules here. A leadership's ballot,
//! handover origin and phase, and the proposer's own ballots, are still
//! fields the leader reads (and the router, at recovery and rejoining,
//! restores).

use crate::ballot::Ballot;
use crate::command::{Command, CommandId, Value};
use crate::io::{PendingRead, ReconfigResponse};
use crate::log::Log;
use crate::message::PromisedEntry;
use crate::reconfig::{Membership, ReconfigError};
use crate::types::{NodeId, Slot};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// A slot proposed and not yet known chosen.
#[derive(Clone, Debug)]
struct Inflight {
    value: Value,
    /// Who accepted it (counted against the configuration governing the
    /// slot when a quorum is checked).
    acks: Vec<NodeId>,
    sent_at: u64,
}

/// Phase 1 in progress.
#[derive(Clone, Debug)]
pub(crate) struct Preparing {
    from_slot: Slot,
    /// Who promised (a promise covers every slot from `from_slot` on).
    promises: Vec<NodeId>,
    /// Per slot, the entry with the highest ballot (or a chosen one).
    merged: BTreeMap<Slot, PromisedEntry>,
    /// The highest compaction point a promiser reported, and who: slots up
    /// to it are chosen, but their values exist only in snapshots.
    behind: (Slot, NodeId),
    /// When a quorum had promised and we began to catch up to `behind`.
    behind_since: Option<u64>,
    /// Reads (id, query, asking follower) that arrived during phase 1.
    reads: Vec<(u64, Bytes, Option<NodeId>)>,
    sent_at: u64,
}

/// Phase 1 done: proposing.
#[derive(Clone, Debug)]
pub(crate) struct Active {
    next_slot: Slot,
    /// The no-op proposed right after phase 1; once it is chosen this leader
    /// knows every value chosen before it.
    first_own_slot: Slot,
    /// Values recovered in phase 1 (holes as no-ops, and the own no-op),
    /// proposed as the window allows.
    recovered: BTreeMap<Slot, Value>,
    /// Who promised our ballot: phase 1 holds for a slot once these include
    /// a phase-1 quorum of the configuration governing it.
    promisers: Vec<NodeId>,
    /// The `from_slot` of our phase 1.
    prepared_from: Slot,
    /// Voters asked to promise while extending phase 1 to a new
    /// configuration, and when last.
    extend_sent_at: Option<u64>,
    inflight: BTreeMap<Slot, Inflight>,
    commit_sent: Slot,
    hb_seq: u64,
    last_hb: u64,
    /// (seq, tick sent) of recent heartbeats.
    hb_sent: VecDeque<(u64, u64)>,
    /// Highest heartbeat each node acknowledged.
    acked: BTreeMap<NodeId, u64>,
    /// Highest heartbeat each node acknowledged with a lease grant.
    lease_acked: BTreeMap<NodeId, u64>,
    lease_until: u64,
    /// This ballot was handed over to another node once: its lease is given
    /// up for good (acceptors let the successor's Prepare through it).
    lease_forfeited: bool,
    /// The configurations the lease was last earned in; when another joins,
    /// the lease is earned again in all of them.
    lease_configs: Vec<Membership>,
    /// A membership change asked for here: (request id, the new
    /// configuration, the slot it went into once proposed).
    reconfig: Option<(u64, Membership, Option<Slot>)>,
    reads: VecDeque<PendingRead>,
    read_round_wanted: bool,
    /// Sessions last used below this slot are due to be forgotten: the
    /// next slot proposes [`Value::ExpireSessions`].
    expire_due: Option<Slot>,
}

#[derive(Clone, Debug)]
pub(crate) enum Phase {
    Preparing(Preparing),
    Active(Box<Active>),
}

/// The client commands a leader holds, queued or proposed in a slot not yet
/// known chosen, with how many copies of each.
#[derive(Clone, Debug, Default)]
struct Held(HashMap<CommandId, u32>);

impl Held {
    fn contains(&self, id: CommandId) -> bool {
        self.0.contains_key(&id)
    }

    fn add(&mut self, commands: &[Command]) {
        for c in commands {
            *self.0.entry(c.id).or_default() += 1;
        }
    }

    fn remove(&mut self, commands: &[Command]) {
        for c in commands {
            if let Some(n) = self.0.get_mut(&c.id) {
                *n -= 1;
                if *n == 0 {
                    self.0.remove(&c.id);
                }
            }
        }
    }
}

/// This replica's leadership.
#[derive(Clone, Debug)]
pub(crate) struct Leader {
    pub(crate) ballot: Ballot,
    /// Client commands waiting for a slot (only through
    /// [`Leader::enqueue`], which keeps `held` in step).
    pending: VecDeque<Command>,
    held: Held,
    pub(crate) phase: Phase,
    /// The ballot whose leader handed leadership over to us, carried by
    /// our Prepares (see [`crate::handover`]).
    pub(crate) handoff: Option<Ballot>,
}

impl Active {
    /// Slots proposed and not yet known chosen that `node` has not accepted.
    pub(crate) fn unacked_by(&self, node: NodeId) -> BTreeSet<Slot> {
        self.inflight.iter().filter(|(_, inf)| !inf.acks.contains(&node)).map(|(&s, _)| s).collect()
    }

    /// Whether `slot` is proposed and not yet known chosen.
    pub(crate) fn in_flight(&self, slot: Slot) -> bool {
        self.inflight.contains_key(&slot)
    }

    /// Whether values recovered in phase 1 still wait to be proposed.
    pub(crate) fn recovering(&self) -> bool {
        !self.recovered.is_empty()
    }

    /// Whether a membership change asked for here is in flight.
    pub(crate) fn reconfiguring(&self) -> bool {
        self.reconfig.is_some()
    }
}

impl Active {
    /// Counts `from`'s acceptance of the slots `first..=last` still in
    /// flight. Returns each slot it was new for, with everyone who has
    /// accepted that slot so far, for the caller to check against the
    /// configuration governing the slot.
    pub(crate) fn count_accepted(&mut self, from: NodeId, first: Slot, last: Slot) -> Vec<(Slot, Vec<NodeId>)> {
        let mut counted = Vec::new();
        for (&slot, inf) in self.inflight.range_mut(first..=last) {
            if !inf.acks.contains(&from) {
                inf.acks.push(from);
                counted.push((slot, inf.acks.clone()));
            }
        }
        counted
    }

    /// Records `from`'s acknowledgement of heartbeat `seq` (with a lease
    /// grant if `lease`). False, and nothing recorded, for a heartbeat not
    /// yet sent, which nobody can acknowledge.
    pub(crate) fn heartbeat_acked(&mut self, from: NodeId, seq: u64, lease: bool) -> bool {
        if seq > self.hb_seq {
            return false;
        }
        let e = self.acked.entry(from).or_default();
        *e = (*e).max(seq);
        if lease {
            let e = self.lease_acked.entry(from).or_default();
            *e = (*e).max(seq);
        }
        true
    }

    /// Starts heartbeat round at `now`, counting the leader's own
    /// acknowledgement (and lease grant, if `lease`) when its acceptor
    /// promised this ballot (`self_promised`). Returns the round's sequence
    /// number and the last slot proposed.
    pub(crate) fn start_heartbeat(&mut self, me: NodeId, now: u64, self_promised: bool, lease: bool) -> (u64, Slot) {
        self.hb_seq += 1;
        self.last_hb = now;
        let seq = self.hb_seq;
        self.hb_sent.push_back((seq, now));
        while self.hb_sent.len() > 256 {
            self.hb_sent.pop_front();
        }
        if self_promised {
            self.acked.insert(me, seq);
            if lease {
                self.lease_acked.insert(me, seq);
            }
        }
        (seq, self.next_slot - 1)
    }

    /// Extends the lease by what heartbeat `lease_seq`, acknowledged with a
    /// lease grant by a phase-2 quorum of each of `configs`, proves: it
    /// holds `lease_ticks - margin` from when that heartbeat was sent. A
    /// lease earned without one of `configs` is dropped first, to be earned
    /// again in all of them; a forfeited lease is never extended.
    pub(crate) fn renew_lease(&mut self, configs: Vec<Membership>, lease_seq: u64, lease_ticks: u64, margin: u64) {
        if configs.iter().any(|m| !self.lease_configs.contains(m)) {
            self.lease_until = 0;
            self.lease_configs = configs;
        }
        if lease_ticks > 0 && !self.lease_forfeited {
            if let Some(&(_, sent)) = self.hb_sent.iter().find(|(s, _)| *s == lease_seq) {
                self.lease_until = self.lease_until.max(sent + lease_ticks.saturating_sub(margin));
            }
        }
    }
}

impl Preparing {
    /// Phase 1 from `from_slot`, asked for at `now`, with no promise yet;
    /// `reads` arrived before it and wait for it.
    pub(crate) fn new(from_slot: Slot, reads: Vec<(u64, Bytes, Option<NodeId>)>, now: u64) -> Preparing {
        Preparing {
            from_slot,
            promises: Vec::new(),
            merged: BTreeMap::new(),
            behind: (0, 0),
            behind_since: None,
            reads,
            sent_at: now,
        }
    }

    /// Phase 1b: counts `from`'s promise for the slots from `from_slot` on,
    /// notes how far it has compacted its log (`compacted`), and (if
    /// `merge`) keeps, per slot, the value accepted in the highest ballot
    /// among the promises, or one known chosen. False, and nothing counted,
    /// for a promise to another phase 1 or one counted already.
    pub(crate) fn promise(
        &mut self,
        from: NodeId,
        from_slot: Slot,
        entries: Vec<PromisedEntry>,
        compacted: Slot,
        merge: bool,
    ) -> bool {
        if self.from_slot != from_slot || self.promises.contains(&from) {
            return false;
        }
        self.promises.push(from);
        if compacted > self.behind.0 {
            self.behind = (compacted, from);
        }
        if merge {
            for e in entries {
                match self.merged.get(&e.slot) {
                    Some(have) if have.chosen || (!e.chosen && have.ballot >= e.ballot) => {}
                    _ => {
                        self.merged.insert(e.slot, e);
                    }
                }
            }
        }
        true
    }

    /// Phase 1 is done, with the commit index at `commit`, at `now`: the
    /// leader goes on to propose the values recovered from the promises
    /// (holes filled with no-ops) and one no-op of its own above them and
    /// above `commit`. Returns the active phase and the reads that arrived
    /// during phase 1, in order.
    pub(crate) fn complete(&mut self, commit: Slot, now: u64) -> (Active, Vec<(u64, Bytes, Option<NodeId>)>) {
        let from_slot = self.from_slot;
        let merged = std::mem::take(&mut self.merged);
        let early_reads = std::mem::take(&mut self.reads);
        let promisers = std::mem::take(&mut self.promises);
        let last_recovered = merged.keys().next_back().copied().unwrap_or(0).max(from_slot - 1);
        let mut recovered: BTreeMap<Slot, Value> = (from_slot..=last_recovered)
            .map(|s| (s, merged.get(&s).map_or(Value::Noop, |e| e.value.clone())))
            .collect();
        // Above our commit index too: it may have moved past `from_slot`
        // while phase 1 ran, and slots up to it are never proposed again
        // (see `propose_due`).
        let first_own_slot = last_recovered.max(commit) + 1;
        recovered.insert(first_own_slot, Value::Noop);
        let active = Active {
            next_slot: from_slot,
            first_own_slot,
            recovered,
            promisers,
            prepared_from: from_slot,
            extend_sent_at: None,
            inflight: BTreeMap::new(),
            commit_sent: commit,
            hb_seq: 0,
            last_hb: now,
            hb_sent: VecDeque::new(),
            acked: BTreeMap::new(),
            lease_acked: BTreeMap::new(),
            lease_until: 0,
            lease_forfeited: false,
            lease_configs: Vec::new(),
            reconfig: None,
            reads: VecDeque::new(),
            read_round_wanted: false,
            expire_due: None,
        };
        (active, early_reads)
    }
}

impl Preparing {
    /// The first slot this phase 1 covers.
    pub(crate) fn first_slot(&self) -> Slot {
        self.from_slot
    }

    /// Per slot, the entry with the highest ballot among the promises (or
    /// a chosen one).
    pub(crate) fn merged(&self) -> &BTreeMap<Slot, PromisedEntry> {
        &self.merged
    }

    /// Who promised.
    pub(crate) fn promises(&self) -> &[NodeId] {
        &self.promises
    }

    /// The highest compaction point a promiser reported, and who.
    pub(crate) fn behind(&self) -> (Slot, NodeId) {
        self.behind
    }

    /// A quorum promised, but a promiser has compacted past us: from `now`
    /// on (unless already), this leader waits to catch up.
    pub(crate) fn wait_for_catch_up(&mut self, now: u64) {
        self.behind_since.get_or_insert(now);
    }

    /// Whether this leader waits to catch up to a promiser's compaction
    /// point.
    pub(crate) fn waiting_for_catch_up(&self) -> bool {
        self.behind_since.is_some()
    }

    /// Whether to run phase 1 again: the commit index (`commit`) reached
    /// the compaction point a promiser reported, or (`patience`, when
    /// given) this leader has waited that long since it began to catch up,
    /// at `now`.
    pub(crate) fn restart_due(&self, commit: Slot, now: u64, patience: Option<u64>) -> bool {
        let caught_up = self.behind.0 != 0 && commit >= self.behind.0;
        let waited = patience.is_some_and(|p| self.behind_since.is_some_and(|t| now >= t.saturating_add(p)));
        caught_up || waited
    }

    /// Phase 1 again from `from_slot`, asked for at `now`: the promises are
    /// forgotten, the reads waiting are kept.
    pub(crate) fn restart(&mut self, from_slot: Slot, now: u64) {
        let reads = std::mem::take(&mut self.reads);
        *self = Preparing::new(from_slot, reads, now);
    }

    /// Whether `retry` ticks have passed at `now` since the Prepares last
    /// went out.
    pub(crate) fn retry_due(&self, now: u64, retry: u64) -> bool {
        now >= self.sent_at + retry
    }

    /// The Prepares went out again at `now`.
    pub(crate) fn asked_again(&mut self, now: u64) {
        self.sent_at = now;
    }

    /// A read (id, query, asking follower) that waits for phase 1 to end.
    pub(crate) fn queue_read(&mut self, id: u64, query: Bytes, origin: Option<NodeId>) {
        self.reads.push((id, query, origin));
    }
}

impl Active {
    /// The next slot to propose in.
    pub(crate) fn next_slot(&self) -> Slot {
        self.next_slot
    }

    /// This leader's own first slot (its no-op after phase 1).
    pub(crate) fn first_own_slot(&self) -> Slot {
        self.first_own_slot
    }

    /// Who promised our ballot.
    pub(crate) fn promisers(&self) -> &[NodeId] {
        &self.promisers
    }

    /// Highest heartbeat each node acknowledged.
    pub(crate) fn acks(&self) -> &BTreeMap<NodeId, u64> {
        &self.acked
    }

    /// Highest heartbeat each node acknowledged with a lease grant.
    pub(crate) fn lease_acks(&self) -> &BTreeMap<NodeId, u64> {
        &self.lease_acked
    }

    /// Whether reads wait here.
    pub(crate) fn has_reads(&self) -> bool {
        !self.reads.is_empty()
    }

    /// Slots proposed and not yet known chosen.
    pub(crate) fn in_flight_count(&self) -> usize {
        self.inflight.len()
    }

    /// Slots up to the commit index `commit` are chosen and known: nothing
    /// is left to propose in them (see `propose_due` in `leader.rs`).
    pub(crate) fn skip_committed(&mut self, commit: Slot) {
        if self.next_slot <= commit {
            self.next_slot = commit + 1;
            self.recovered.retain(|&s, _| s > commit);
        }
    }

    /// Whether something is due in slot `s`: a recovered value, a
    /// membership change asked for here and not yet proposed, client
    /// commands (`commands`: some wait and may go now), an expiry of idle
    /// sessions (unless a handover holds proposals, `hold`), or no-ops
    /// while a change is on its way into force (`pending_change`: one is
    /// chosen and not yet in force at `s`).
    pub(crate) fn proposal_due(&self, s: Slot, commands: bool, hold: bool, pending_change: bool) -> bool {
        let activating = self.reconfig.is_some() || pending_change;
        self.recovered.contains_key(&s)
            || self.reconfig.as_ref().is_some_and(|r| r.2.is_none())
            || commands
            || (!hold && self.expire_due.is_some())
            || activating
    }

    /// Whether voters asked to extend phase 1 may be asked again at `now`
    /// (`retry` ticks after the last time): if so, noted as asked, and the
    /// `from_slot` of our phase 1 returned.
    pub(crate) fn extend_due(&mut self, now: u64, retry: u64) -> Option<Slot> {
        if self.extend_sent_at.is_some_and(|t| now < t + retry) {
            return None;
        }
        self.extend_sent_at = Some(now);
        Some(self.prepared_from)
    }

    /// A membership change to `new` asked for here (request `id`), to be
    /// proposed in the next slot.
    pub(crate) fn ask_reconfig(&mut self, id: u64, new: Membership) {
        self.reconfig = Some((id, new, None));
    }

    /// The commit index is `commit` at a flush whose proposals started at
    /// `before`: whether it is to be sent on its own (nothing was proposed
    /// to carry it, and it moved since last sent).
    pub(crate) fn commit_to_send(&mut self, before: Slot, commit: Slot) -> bool {
        let send = self.next_slot == before && commit > self.commit_sent;
        self.commit_sent = commit;
        send
    }

    /// Whether a read asked for a heartbeat round since the last flush.
    pub(crate) fn take_read_round(&mut self) -> bool {
        std::mem::take(&mut self.read_round_wanted)
    }

    /// Whether a heartbeat is due at `now`, `interval` ticks after the last.
    pub(crate) fn heartbeat_due(&self, now: u64, interval: u64) -> bool {
        now >= self.last_hb + interval
    }

    /// Sessions last used below `before` are due to be forgotten: the next
    /// slot proposes so (the highest such slot asked for).
    pub(crate) fn expire_sessions(&mut self, before: Slot) {
        self.expire_due = Some(self.expire_due.map_or(before, |d| d.max(before)));
    }
}

impl Phase {
    /// The reads waiting here, (id, asking follower) in arrival order, for
    /// a leadership that ends.
    pub(crate) fn into_waiting_reads(self) -> Vec<(u64, Option<NodeId>)> {
        match self {
            Phase::Preparing(p) => p.reads.into_iter().map(|(id, _, origin)| (id, origin)).collect(),
            Phase::Active(a) => a.reads.into_iter().map(|r| (r.id, r.origin)).collect(),
        }
    }

    /// The request id of a membership change asked for here and not yet
    /// answered.
    pub(crate) fn reconfig_id(&self) -> Option<u64> {
        match self {
            Phase::Active(a) => a.reconfig.as_ref().map(|(id, _, _)| *id),
            Phase::Preparing(_) => None,
        }
    }
}

impl Active {
    /// Queues a read (made here, or a follower's `ReadIndex` when `origin`
    /// names it) that arrived at `now` with the commit index at `commit`.
    /// It is answered at the commit index, or at this leader's own first
    /// slot if that is later. Under a valid lease it needs no confirmation
    /// and true is returned; otherwise it waits for the next heartbeat
    /// round, which is asked for, to be acknowledged by a quorum.
    pub(crate) fn queue_read(&mut self, id: u64, query: Bytes, origin: Option<NodeId>, now: u64, commit: Slot) -> bool {
        let read_index = commit.max(self.first_own_slot);
        let lease = now < self.lease_until && commit >= self.first_own_slot;
        // With a lease no round is needed: seq 0 is confirmed.
        let seq = if lease { 0 } else { self.hb_seq + 1 };
        if !lease {
            self.read_round_wanted = true;
        }
        self.reads.push_back(PendingRead { id, query, read_index, seq, origin });
        lease
    }

    /// Takes the reads that can be answered now, in arrival order: those a
    /// quorum confirmed (heartbeat `confirmed` acknowledged) and, for reads
    /// made here, whose read index is `applied`.
    pub(crate) fn take_ready_reads(&mut self, confirmed: u64, applied: Slot) -> Vec<PendingRead> {
        let mut ready = Vec::new();
        self.reads.retain_mut(|r| {
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
        ready
    }

    /// A promise that arrives after phase 1 (late, or from a configuration
    /// phase 1 was extended to) for the slots from `from_slot` on: counted
    /// if it is for this leader's phase 1. Its accepted values need no
    /// merging (see the argument in [`crate::reconfig`]).
    pub(crate) fn late_promise(&mut self, from: NodeId, from_slot: Slot) {
        if self.prepared_from == from_slot && !self.promisers.contains(&from) {
            self.promisers.push(from);
        }
    }

    /// The configurations this leader has recovered or proposed and not
    /// yet seen chosen, then one asked for here and not yet proposed, in
    /// that order (with repeats).
    fn changes_under_way(&self) -> impl Iterator<Item = &Membership> {
        let values = self.inflight.values().map(|i| &i.value).chain(self.recovered.values());
        let proposed = values.filter_map(|v| match v {
            Value::Reconfigure(m) => Some(m),
            _ => None,
        });
        proposed.chain(self.reconfig.as_ref().map(|(_, m, _)| m))
    }

    /// The slots in flight sent `retry` ticks or more before `now`, in
    /// order: due to be sent again to whoever has not accepted them.
    pub(crate) fn resend_due(&self, now: u64, retry: u64) -> Vec<Slot> {
        self.inflight.iter().filter(|(_, inf)| now >= inf.sent_at + retry).map(|(&s, _)| s).collect()
    }

    /// Resends the slots of `due`, each to the voters given with it (those
    /// of the configuration governing the slot) that have not accepted it,
    /// and notes them sent at `now`. Returns, per voter in id order, runs
    /// of consecutive slots: (to, first slot, values).
    pub(crate) fn resend(&mut self, due: &[(Slot, Vec<NodeId>)], now: u64) -> Vec<(NodeId, Slot, Vec<Value>)> {
        let mut each: Vec<(NodeId, Slot, Value)> = Vec::new();
        for (slot, voters) in due {
            let Some(inf) = self.inflight.get_mut(slot) else { continue };
            inf.sent_at = now;
            for &id in voters {
                if !inf.acks.contains(&id) {
                    each.push((id, *slot, inf.value.clone()));
                }
            }
        }
        each.sort_by_key(|r| (r.0, r.1));
        let mut runs: Vec<(NodeId, Slot, Vec<Value>)> = Vec::new();
        for (to, slot, value) in each {
            match runs.last_mut() {
                Some((t, first, values)) if *t == to && *first + values.len() as Slot == slot => values.push(value),
                _ => runs.push((to, slot, vec![value])),
            }
        }
        runs
    }

    /// Gives up the lease in this ballot for good (a handover is under
    /// way) and returns the reads waiting here, (id, asking follower) in
    /// arrival order, which it can no longer serve.
    pub(crate) fn forfeit_lease(&mut self) -> Vec<(u64, Option<NodeId>)> {
        self.lease_until = 0;
        self.lease_forfeited = true;
        std::mem::take(&mut self.reads).into_iter().map(|r| (r.id, r.origin)).collect()
    }
}

/// A slot the leader counted chosen (see [`Leader::take_chosen`]).
pub(crate) struct Chosen {
    /// The value chosen.
    pub(crate) value: Value,
    /// The answer to the membership change asked for here, when the slot
    /// carried it.
    pub(crate) reconfig: Option<ReconfigResponse>,
}

impl Leader {
    /// Leadership with `ballot` (handed over from `handoff`, if any),
    /// starting phase 1 from `from_slot` at `now`, holding no command yet.
    pub(crate) fn new(ballot: Ballot, handoff: Option<Ballot>, from_slot: Slot, now: u64) -> Leader {
        Leader {
            ballot,
            handoff,
            pending: VecDeque::new(),
            held: Held::default(),
            phase: Phase::Preparing(Preparing::new(from_slot, Vec::new(), now)),
        }
    }

    /// `slot`, in flight at this leader, is chosen: it leaves the window,
    /// its commands are no longer held, and a membership change it carried
    /// is answered. `None` if the slot was not in flight (or phase 1 is
    /// not done).
    pub(crate) fn take_chosen(&mut self, slot: Slot) -> Option<Chosen> {
        let Phase::Active(a) = &mut self.phase else { return None };
        let inf = a.inflight.remove(&slot)?;
        self.held.remove(inf.value.commands());
        let mut reconfig = None;
        if let Some((id, _, Some(at))) = a.reconfig {
            if at == slot {
                a.reconfig = None;
                reconfig = Some(ReconfigResponse { id, result: Ok(slot) });
            }
        }
        Some(Chosen { value: inf.value, reconfig })
    }

    /// Drops the slots in flight up to `commit`, which the commit index
    /// has covered. A membership change asked for here whose slot is now
    /// committed is answered: done if `log` holds it at its slot, otherwise
    /// interrupted (another value was chosen there).
    pub(crate) fn forget_committed(&mut self, commit: Slot, log: &Log) -> Option<ReconfigResponse> {
        let Phase::Active(a) = &mut self.phase else { return None };
        if a.inflight.first_key_value().is_none_or(|(&s, _)| s > commit) {
            return None;
        }
        let held = &mut self.held;
        a.inflight.retain(|&s, inf| {
            if s <= commit {
                held.remove(inf.value.commands());
            }
            s > commit
        });
        let (id, m, Some(at)) = a.reconfig.as_ref()? else { return None };
        if *at > commit {
            return None;
        }
        let chosen = matches!(log.get(*at), Some(e) if e.value == Value::Reconfigure(m.clone()));
        let result = if chosen { Ok(*at) } else { Err(ReconfigError::Interrupted) };
        let answer = ReconfigResponse { id: *id, result };
        a.reconfig = None;
        Some(answer)
    }

    /// Puts the next slot in flight, proposed at `now`, with what is due
    /// first: a recovered value, then a membership change asked for here,
    /// then (unless a handover holds proposals, `hold`, which makes it a
    /// no-op) an expiry of idle sessions, then a batch of pending client
    /// commands (at most `max_batch`, and past the first at most
    /// `max_batch_bytes` of payload), else a no-op. Returns the value and,
    /// for a batch, how many commands it took; `None` before phase 1 is
    /// done.
    pub(crate) fn propose_next(
        &mut self,
        hold: bool,
        max_batch: usize,
        max_batch_bytes: usize,
        now: u64,
    ) -> Option<(Value, Option<usize>)> {
        let Leader { pending, held, phase: Phase::Active(a), .. } = self else { return None };
        let s = a.next_slot;
        let mut batch = None;
        let value = if let Some(v) = a.recovered.remove(&s) {
            v
        } else if let Some((_, m, at @ None)) = a.reconfig.as_mut() {
            *at = Some(s);
            Value::Reconfigure(m.clone())
        } else if hold {
            Value::Noop
        } else if let Some(before) = a.expire_due.take() {
            Value::ExpireSessions { before }
        } else {
            let mut take = 0;
            let mut bytes = 0;
            for c in pending.iter().take(max_batch) {
                if take > 0 && bytes + c.payload.len() > max_batch_bytes {
                    break;
                }
                bytes += c.payload.len();
                take += 1;
            }
            if take == 0 {
                Value::Noop
            } else {
                let commands: Arc<[Command]> = pending.drain(..take).collect();
                held.remove(&commands);
                batch = Some(take);
                Value::Commands(commands)
            }
        };
        held.add(value.commands());
        a.inflight.insert(s, Inflight { value: value.clone(), acks: Vec::new(), sent_at: now });
        a.next_slot += 1;
        Some((value, batch))
    }

    /// Slots proposed and not yet seen chosen (none before phase 1 is done).
    pub(crate) fn slots_in_flight(&self) -> usize {
        self.active().map_or(0, |a| a.inflight.len())
    }

    /// The active phase, once phase 1 is done.
    pub(crate) fn active(&self) -> Option<&Active> {
        match &self.phase {
            Phase::Active(a) => Some(a),
            Phase::Preparing(_) => None,
        }
    }

    /// Queue a client command, unless this leader holds it already.
    ///
    /// A client's retry of a command still queued or in flight here waits
    /// for that copy: proposing it again would spend a slot on a duplicate,
    /// and under load every client timeout would add more (a retry storm
    /// that starves the very queue the retries wait in; found by swarm
    /// testing with one command per slot). Every replica that took a copy
    /// answers it when the first is applied.
    pub(crate) fn enqueue(&mut self, cmd: Command) {
        if self.held.contains(cmd.id) {
            return;
        }
        self.held.add(std::slice::from_ref(&cmd));
        self.pending.push_back(cmd);
    }

    /// The leadership ends: the client commands still waiting for a slot
    /// (to pass on), and the phase it ended in (its reads and membership
    /// change to answer).
    pub(crate) fn end(self) -> (VecDeque<Command>, Phase) {
        (self.pending, self.phase)
    }

    /// Client commands waiting for a slot.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

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

/// The proposer: the leadership this node holds (if any) and the ballots it
/// may not reuse.
#[derive(Clone, Debug, Default)]
pub(crate) struct Proposer {
    /// The leadership held, from phase 1 on.
    pub(crate) leader: Option<Leader>,
    /// A ballot this node stepped down from; never restart phase 1 with it.
    pub(crate) abandoned: Ballot,
    /// The highest ballot this node has led with (durably recorded).
    pub(crate) own_ballot: Ballot,
    /// Told to take over: (the ballot we bid with, the ballot handed over),
    /// until phase 1 starts with it.
    pub(crate) takeover: Option<(Ballot, Ballot)>,
}

impl Proposer {
    /// Whether this node leads and has finished phase 1.
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.as_ref().is_some_and(|l| l.is_active())
    }

    /// The first slot of our phase 1, while it runs.
    pub(crate) fn preparing_from(&self) -> Option<Slot> {
        match self.leader.as_ref() {
            Some(Leader { phase: Phase::Preparing(p), .. }) => Some(p.from_slot),
            _ => None,
        }
    }

    /// The configurations a leader must respect now: those in force and
    /// pending (`view`), and any it has recovered or proposed and not yet
    /// seen chosen. Leases and read confirmations count in each of them.
    pub(crate) fn respected_configs(&self, view: &[Membership]) -> Vec<Membership> {
        let mut out = view.to_vec();
        if let Some(Leader { phase: Phase::Active(a), .. }) = self.leader.as_ref() {
            for m in a.changes_under_way() {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u64) -> Value {
        Value::ExpireSessions { before: n }
    }

    fn entry(slot: Slot, ballot: Ballot, value: Value, chosen: bool) -> PromisedEntry {
        PromisedEntry { slot, ballot, value, chosen }
    }

    #[test]
    fn phase1_recovers_the_highest_ballot_value_per_slot_or_a_chosen_one() {
        let mut p = Preparing::new(1, Vec::new(), 0);
        let (low, high) = (Ballot::new(1, 3), Ballot::new(2, 2));
        assert!(p.promise(2, 1, vec![entry(1, high, v(10), false), entry(2, low, v(20), true)], 0, true));
        assert!(p.promise(3, 1, vec![entry(1, low, v(11), false), entry(2, high, v(21), false)], 0, true));
        assert!(!p.promise(3, 1, Vec::new(), 0, true), "a repeated promise counts once");
        assert!(!p.promise(4, 2, Vec::new(), 0, true), "a promise for another phase 1 does not count");
        assert_eq!(p.promises, vec![2, 3]);
        let (a, _) = p.complete(0, 7);
        // Slot 1: the value of the higher ballot; slot 2: the one known
        // chosen, whatever ballot came later; then the leader's own no-op.
        let recovered: Vec<(Slot, Value)> = a.recovered.into_iter().collect();
        assert_eq!(recovered, vec![(1, v(10)), (2, v(20)), (3, Value::Noop)]);
        assert_eq!((a.first_own_slot, a.next_slot, a.last_hb), (3, 1, 7));
    }

    #[test]
    fn resend_sends_each_voter_what_it_has_not_accepted_in_runs_of_consecutive_slots() {
        let (mut a, _) = Preparing::new(1, Vec::new(), 0).complete(0, 0);
        for (slot, acks) in [(1, vec![1]), (2, vec![]), (3, vec![2]), (5, vec![])] {
            a.inflight.insert(slot, Inflight { value: v(slot), acks, sent_at: 0 });
        }
        assert_eq!(a.resend_due(4, 5), Vec::<Slot>::new(), "not due before the retry interval");
        let due: Vec<(Slot, Vec<NodeId>)> = a.resend_due(5, 5).into_iter().map(|s| (s, vec![1, 2, 3])).collect();
        let runs = a.resend(&due, 5);
        assert_eq!(
            runs,
            vec![
                (1, 2, vec![v(2), v(3)]),
                (1, 5, vec![v(5)]),
                (2, 1, vec![v(1), v(2)]),
                (2, 5, vec![v(5)]),
                (3, 1, vec![v(1), v(2), v(3)]),
                (3, 5, vec![v(5)]),
            ]
        );
        assert!(a.resend_due(9, 5).is_empty(), "resent slots are due again a retry interval later");
    }
}
