//! Snapshots: compacting the log, and bringing a learner that is behind the
//! compaction point up to date.
//!
//! Every `snapshot_every` applied slots the replica asks the runtime to store
//! a snapshot (the state machine's bytes plus the duplicate-detection
//! table). Once the runtime reports it stored, the replica drops the log up
//! to it and persists a `Checkpoint` record that restates everything the
//! earlier records said; once that record is durable, the runtime may delete
//! the log before it. Disk use stays bounded under a steady write load.
//!
//! A learner whose next slot lies below a peer's compaction point receives
//! the snapshot in chunks. Transfers are driven by the receiver's requests,
//! each naming an offset, so a transfer that breaks off resumes where it
//! stopped; the sender keeps the log above any snapshot it is sending.

use crate::io::{ClientError, Snapshot};
use crate::learner::Session;
use crate::message::{split_by_size, value_size_bound, Message, PromisedEntry, ENVELOPE_BYTES};
use crate::record::Record;
use crate::replica::Replica;
use crate::state_machine::{SnapshotError, StateMachine};
use crate::types::{Lsn, NodeId, Slot};
use bytes::Bytes;
use std::collections::HashMap;

/// Set in a snapshot's session count when a membership section follows.
const MEMBERSHIP_FLAG: u64 = 1 << 63;
/// Set in a snapshot's session count when each session carries the slot it
/// was last used in (what expiry goes by). Snapshots written before
/// sessions expired lack it: their sessions count as used at the
/// snapshot's slot.
const SESSION_SLOT_FLAG: u64 = 1 << 62;
/// Set in a snapshot's session count when the highest slot below which
/// sessions were expired follows it (what refuses a command made before
/// then from a client without a session). Snapshots written before that
/// rule lack it: they count as if no session had expired.
const EXPIRED_FLAG: u64 = 1 << 61;

/// A snapshot transfer that made no progress for this many retry periods is
/// asked for again: a chunk is large, and asking too early only sends it
/// twice.
const SNAPSHOT_STALL_RETRIES: u64 = 2;

/// A snapshot being received.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    slot: Slot,
    total: u64,
    buf: Vec<u8>,
    from: NodeId,
    /// When the transfer last moved (a chunk was taken).
    last: u64,
    /// When the sender was last asked to resume a stalled transfer.
    asked: u64,
}

/// The receiving side of a snapshot transfer: takes a peer's chunks in
/// order, from one sender at a time, and asks again when the transfer
/// stalls. It never installs anything itself: a complete snapshot is handed
/// to the replica ([`Received::Complete`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Receiver {
    incoming: Option<Incoming>,
}

/// The sending side of snapshot transfers: cuts the stored snapshot into
/// chunks for each learner that asks, and remembers whom it is sending to,
/// so that the log a transfer still needs is not compacted away.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sender {
    /// Learners being sent our snapshot: its slot, and when they last asked.
    sending: HashMap<NodeId, (Slot, u64)>,
}

impl Sender {
    /// The chunk of `snap` at `offset` (at most `chunk` bytes) for `to`,
    /// asked for at tick `now`, and whether it is the last.
    pub(crate) fn chunk(
        &mut self,
        snap: &Snapshot,
        chunk: usize,
        now: u64,
        to: NodeId,
        offset: u64,
    ) -> (Message, bool) {
        let total = snap.data.len() as u64;
        let start = offset.min(total) as usize;
        let end = (start + chunk).min(snap.data.len());
        let msg =
            Message::SnapshotChunk { slot: snap.slot, offset: start as u64, total, data: snap.data.slice(start..end) };
        self.sending.insert(to, (snap.slot, now));
        (msg, end == snap.data.len())
    }

    /// The lowest slot a transfer asked for since `horizon` still needs
    /// the log above (`upto` if none); older transfers are forgotten.
    pub(crate) fn compaction_floor(&mut self, horizon: u64, upto: Slot) -> Slot {
        self.sending.retain(|_, (_, at)| *at >= horizon);
        self.sending.values().map(|(s, _)| *s).min().unwrap_or(upto)
    }
}

/// What the receiver asks the replica to do.
#[derive(Debug)]
pub(crate) enum Received {
    /// Send this request to the sender.
    Ask(NodeId, Message),
    /// Every chunk of the snapshot at this slot arrived: install it.
    Complete(Slot, Bytes),
}

/// What the receiver reads besides its own state.
#[derive(Clone, Copy)]
pub(crate) struct ReceiverEnv {
    /// The replica's clock.
    pub(crate) now: u64,
    /// The retry interval ([`crate::Config::retry_ticks`]).
    pub(crate) retry_ticks: u64,
    /// The learner's commit index: a snapshot at or below it is not wanted.
    pub(crate) commit: Slot,
}

impl Receiver {
    /// A chunk of the snapshot at `slot` (of `total` bytes) from `from`.
    pub(crate) fn on_chunk(
        &mut self,
        env: ReceiverEnv,
        from: NodeId,
        (slot, offset, total): (Slot, u64, u64),
        data: Bytes,
    ) -> Option<Received> {
        if slot <= env.commit {
            self.incoming = None;
            return None;
        }
        let now = env.now;
        // One transfer comes from one sender: two replicas' snapshots of a
        // slot need not be byte-identical, so chunks are never mixed.
        // A chunk from another sender restarts the transfer only at offset
        // 0 (and asks for it only when no transfer of this slot is going).
        let fresh = !matches!(&self.incoming, Some(i) if i.slot == slot && i.from == from && i.total == total);
        if fresh {
            // A transfer of this slot or a newer one that is still moving
            // is not abandoned for another sender's (every catch-up request
            // a compacted member answers starts one at offset 0).
            if self.incoming.as_ref().is_some_and(|i| i.slot >= slot && !stalled(env, i)) {
                return None;
            }
            if offset != 0 {
                if !matches!(&self.incoming, Some(i) if i.slot == slot) {
                    return Some(Received::Ask(from, Message::SnapshotRequest { slot, offset: 0 }));
                }
                return None;
            }
            self.incoming = Some(Incoming { slot, total, buf: Vec::new(), from, last: now, asked: now });
        }
        let inc = self.incoming.as_mut()?;
        if offset != inc.buf.len() as u64 {
            // A duplicate or a stale chunk: the request for the next one is
            // already out (asking again here would multiply the requests
            // in flight with every duplicate).
            return None;
        }
        inc.buf.extend_from_slice(&data);
        inc.last = now;
        if inc.buf.len() as u64 >= inc.total {
            let inc = self.incoming.take()?;
            Some(Received::Complete(inc.slot, Bytes::from(inc.buf)))
        } else {
            let offset = inc.buf.len() as u64;
            Some(Received::Ask(from, Message::SnapshotRequest { slot, offset }))
        }
    }

    /// Whether a transfer is under way and moving.
    pub(crate) fn receiving(&self, env: ReceiverEnv) -> bool {
        self.incoming.as_ref().is_some_and(|i| !stalled(env, i))
    }

    /// Resume a stalled transfer where it stopped: ask its sender again
    /// every stall period. It stays stalled until a chunk moves it, so
    /// meanwhile catch-up goes on and another sender's transfer of the
    /// snapshot from its start is taken (asking again used to count as
    /// progress: a transfer whose sender died never looked stalled when
    /// another member's chunks came, and the learner waited for the dead
    /// sender for good; found by swarm testing, seed 6136 on 5 nodes).
    pub(crate) fn tick(&mut self, env: ReceiverEnv) -> Option<Received> {
        let stall = SNAPSHOT_STALL_RETRIES * env.retry_ticks;
        let now = env.now;
        match self.incoming.as_mut() {
            Some(inc) if now >= inc.last + stall && now >= inc.asked + stall => {
                inc.asked = now;
                // Resume from the same sender: another replica's snapshot
                // of the same slot need not be byte-identical.
                let (slot, offset) = (inc.slot, inc.buf.len() as u64);
                Some(Received::Ask(inc.from, Message::SnapshotRequest { slot, offset }))
            }
            _ => None,
        }
    }
}

/// Whether an incoming transfer has made no progress for long enough to ask
/// again (or to take another sender's).
fn stalled(env: ReceiverEnv, inc: &Incoming) -> bool {
    env.now >= inc.last + SNAPSHOT_STALL_RETRIES * env.retry_ticks
}

impl Snapshot {
    /// A snapshot at `slot` of a state whose [`StateMachine::snapshot`] bytes
    /// are `state`, with an empty duplicate-detection table: what every
    /// member of a new cluster seeded from a backup starts from.
    pub fn from_state(slot: Slot, state: &[u8]) -> Snapshot {
        let mut data = Vec::with_capacity(8 + state.len());
        data.extend_from_slice(&0u64.to_be_bytes());
        data.extend_from_slice(state);
        Snapshot { slot, data: Bytes::from(data) }
    }
}

/// Snapshots: the one stored, the one being stored, the ones being sent
/// (sender) and received (receiver).
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshots {
    /// The latest stored snapshot (sent to learners behind it).
    pub(crate) latest: Option<Snapshot>,
    /// A snapshot handed to the runtime and not yet reported stored.
    pub(crate) pending: Option<Snapshot>,
    /// The first and last record of the checkpoint written last, until
    /// the last is durable.
    pub(crate) checkpoint_lsn: Option<(Lsn, Lsn)>,
    /// Receiver: the snapshot arriving from a peer.
    pub(crate) receiver: Receiver,
    /// A snapshot received from a peer and installed, not yet reported
    /// stored: until it is, no commit mark may be persisted (replaying one
    /// after a crash would mark this replica's own stale entries below the
    /// snapshot chosen).
    pub(crate) installed_unsaved: Option<Slot>,
    /// Sender: the learners being sent our snapshot.
    pub(crate) sender: Sender,
}

impl<S: StateMachine> Replica<S> {
    /// Ask for a snapshot if enough has been applied since the last one.
    pub(crate) fn maybe_snapshot(&mut self) {
        let every = self.cfg.snapshot_every;
        let last = self.snapshots.latest.as_ref().map_or(0, |s| s.slot);
        if every == 0 || self.learner.applied < last + every {
            return;
        }
        self.take_snapshot();
    }

    /// Ask the runtime to store a snapshot of everything applied, unless one
    /// is pending or the last one already covers it.
    pub(crate) fn take_snapshot(&mut self) {
        let last = self.snapshots.latest.as_ref().map_or(0, |s| s.slot);
        // While rejoining, the `Rejoining` record must stay in the log, so
        // no checkpoint may replace it.
        if self.snapshots.pending.is_some() || self.rejoin.is_some() || self.learner.applied <= last {
            return;
        }
        let snap = Snapshot { slot: self.learner.applied, data: self.encode_snapshot() };
        self.snapshots.pending = Some(snap.clone());
        self.out.snapshot = Some(snap);
    }

    /// Layout: session count (its top bit set when a membership section
    /// follows, the next one when sessions carry their last slot, the
    /// third when the expiry mark follows), the slot below which sessions
    /// were last expired, sessions (client, sequence number, last slot;
    /// sorted by client), membership, state machine bytes.
    ///
    /// The sessions' last slots are in the snapshot so that a replica that
    /// restored it forgets the same sessions, at the same slots, as one
    /// that applied the log.
    ///
    /// The membership section is always written: it holds only what governs
    /// the slots after the snapshot (the configuration in force there and
    /// any pending one), and both follow from the chosen log alone, so every
    /// replica's snapshot of a slot carries the same bytes, and a replica
    /// that restarts from, or installs, the snapshot counts the next slots
    /// in the configuration the log gives, never in the one its own start
    /// flags name. (Writing it only when the membership differed from the
    /// writer's own initial one left it out of the snapshots of a member
    /// that joined after the last change; an original member installing
    /// such a snapshot came back, after a restart, counting quorums in the
    /// cluster's first configuration.) Only snapshots written before that
    /// rule, and seeded ones ([`Snapshot::from_state`]), come without it.
    fn encode_snapshot(&self) -> Bytes {
        let sessions = self.sessions();
        let mut out = Vec::with_capacity(8 + sessions.len() * 24);
        let flags = MEMBERSHIP_FLAG | SESSION_SLOT_FLAG | EXPIRED_FLAG;
        out.extend_from_slice(&(sessions.len() as u64 | flags).to_be_bytes());
        out.extend_from_slice(&self.learner.sessions_expired_before.to_be_bytes());
        for s in sessions {
            out.extend_from_slice(&s.client.to_be_bytes());
            out.extend_from_slice(&s.seq.to_be_bytes());
            out.extend_from_slice(&s.last_slot.to_be_bytes());
        }
        self.snapshot_configs().encode(&mut out);
        out.extend_from_slice(&self.learner.sm.snapshot());
        Bytes::from(out)
    }

    /// What a snapshot of everything applied records of the membership:
    /// the configuration governing the next slot, as the base, and the
    /// changes chosen but not yet in force there.
    pub(crate) fn snapshot_configs(&self) -> crate::reconfig::Configs {
        let from = self.learner.applied + 1;
        let mut c =
            crate::reconfig::Configs::new(self.members.configs.governing(from).clone(), self.members.configs.alpha);
        c.chosen.extend(self.members.configs.pending_at(from).map(|(s, m)| (s, m.clone())));
        c
    }

    /// Replace the state machine and the duplicate table by the snapshot's
    /// at `slot`.
    pub(crate) fn restore_snapshot(&mut self, slot: Slot, data: &[u8]) -> Result<(), SnapshotError> {
        let bad = || SnapshotError("truncated session table".into());
        let (n, mut rest) = data.split_first_chunk::<8>().ok_or_else(bad)?;
        let n = u64::from_be_bytes(*n);
        let with_membership = n & MEMBERSHIP_FLAG != 0;
        let with_slots = n & SESSION_SLOT_FLAG != 0;
        let mut expired_before = 0;
        if n & EXPIRED_FLAG != 0 {
            let (e, r) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
            expired_before = u64::from_be_bytes(*e);
            rest = r;
        }
        let n = n & !(MEMBERSHIP_FLAG | SESSION_SLOT_FLAG | EXPIRED_FLAG);
        let mut sessions = Vec::new();
        for _ in 0..n {
            let (c, r) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
            let (s, mut r) = r.split_first_chunk::<8>().ok_or_else(bad)?;
            let mut last_slot = slot;
            if with_slots {
                let (l, r2) = r.split_first_chunk::<8>().ok_or_else(bad)?;
                last_slot = u64::from_be_bytes(*l);
                r = r2;
            }
            sessions.push((u64::from_be_bytes(*c), u64::from_be_bytes(*s), last_slot));
            rest = r;
        }
        let mut configs = None;
        if with_membership {
            let (c, r) = crate::reconfig::Configs::decode(rest, self.members.configs.alpha)
                .ok_or_else(|| SnapshotError("bad membership section".into()))?;
            configs = Some(c);
            rest = r;
        }
        self.learner.sm.restore(rest)?;
        if let Some(c) = configs {
            self.members.configs = c;
        }
        // Cached answers are not part of a snapshot: a retry of a command
        // the snapshot covers is recognised, but gets no cached answer.
        self.learner.sessions =
            sessions.into_iter().map(|(c, seq, last_slot)| (c, Session { seq, last_slot, output: None })).collect();
        self.learner.sessions_expired_before = expired_before;
        // Proposals made here that the snapshot already covers.
        let mut covered: Vec<_> = self
            .clients
            .local
            .keys()
            .filter(|id| self.learner.sessions.get(&id.client).is_some_and(|s| id.seq <= s.seq))
            .copied()
            .collect();
        // In id order: the same inputs must give the same outputs.
        covered.sort_unstable();
        for id in covered {
            self.clients.local.remove(&id);
            self.out.responses.push(crate::io::Response { id, result: Err(ClientError::AppliedWithoutResult) });
        }
        Ok(())
    }

    /// The runtime stored the snapshot at `slot`: compact and checkpoint.
    pub(crate) fn on_snapshot_saved(&mut self, slot: Slot) {
        let Some(snap) = self.snapshots.pending.take_if(|s| s.slot == slot) else { return };
        self.snapshots.latest = Some(snap);
        if self.snapshots.installed_unsaved.is_some_and(|s| s <= slot) {
            self.snapshots.installed_unsaved = None;
        }
        if self.rejoin.is_some() {
            // Keep the whole log (and its `Rejoining` record) until we vote.
            self.finish_rejoin_if_caught_up();
            return;
        }
        // Keep the log a learner is being sent a snapshot for.
        let horizon = self.clock.now.saturating_sub(20 * self.cfg.retry_ticks);
        let floor = self.snapshots.sender.compaction_floor(horizon, slot);
        self.log.compact(slot.min(floor));
        let entries: Vec<PromisedEntry> = self
            .log
            .iter_from(0)
            .map(|(slot, e)| PromisedEntry { slot, ballot: e.ballot, value: e.value.clone(), chosen: e.chosen })
            .collect();
        // One record per run of entries that fits a message (the log's
        // record limit is above it): a log kept long for a learner being
        // sent a snapshot can hold more than one record may. Each restates
        // the promise, ballot and commit index; replayed in order, the
        // last one's entries complete the commit index. The log before the
        // first goes once the last is durable.
        let budget = self.cfg.max_message_bytes.saturating_sub(ENVELOPE_BYTES);
        let runs = split_by_size(entries, budget, |e| value_size_bound(&e.value).saturating_add(32));
        let runs = if runs.is_empty() { vec![Vec::new()] } else { runs };
        let mut first = None;
        let mut last = 0;
        for entries in runs {
            last = self.persist(Record::Checkpoint {
                snapshot_slot: slot,
                promised: self.acceptor.promised,
                own_ballot: self.proposer.own_ballot,
                commit: self.learner.commit,
                entries,
            });
            first.get_or_insert(last);
        }
        self.snapshots.checkpoint_lsn = first.map(|first| (first, last));
    }

    /// Once the checkpoint is durable, the log before it may go.
    pub(crate) fn checkpoint_durable(&mut self) {
        if let Some((first, last)) = self.snapshots.checkpoint_lsn {
            if self.outbox.durable >= last {
                self.snapshots.checkpoint_lsn = None;
                self.out.truncate_before = Some(first);
            }
        }
    }

    /// Send the chunk of our snapshot at `offset` to `to`.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId, offset: u64) {
        let Some(snap) = self.snapshots.latest.as_ref() else { return };
        let (msg, last) = self.snapshots.sender.chunk(snap, self.cfg.snapshot_chunk, self.clock.now, to, offset);
        if last {
            self.out.stats.snapshots_sent += 1;
        }
        self.send(to, msg);
    }

    pub(crate) fn on_snapshot_request(&mut self, from: NodeId, slot: Slot, offset: u64) {
        let current = self.snapshots.latest.as_ref().map(|s| s.slot);
        match current {
            Some(s) if s == slot => self.send_snapshot_chunk(from, offset),
            Some(_) => self.send_snapshot_chunk(from, 0),
            None => {}
        }
    }

    /// What the snapshot receiver reads.
    fn receiver_env(&self) -> ReceiverEnv {
        ReceiverEnv { now: self.clock.now, retry_ticks: self.cfg.retry_ticks, commit: self.learner.commit }
    }

    /// A chunk of a peer's snapshot arrives: the receiver takes it.
    pub(crate) fn on_snapshot_chunk(&mut self, from: NodeId, slot: Slot, offset: u64, total: u64, data: Bytes) {
        let env = self.receiver_env();
        let received = self.snapshots.receiver.on_chunk(env, from, (slot, offset, total), data);
        self.route_received(received);
    }

    /// Whether a snapshot transfer is under way and moving: catch-up
    /// requests wait for it (a compacted member would answer each with the
    /// snapshot's first chunk again).
    pub(crate) fn receiving_snapshot(&self) -> bool {
        self.snapshots.receiver.receiving(self.receiver_env())
    }

    /// Let the receiver resume a stalled transfer.
    pub(crate) fn snapshot_tick(&mut self) {
        let env = self.receiver_env();
        let received = self.snapshots.receiver.tick(env);
        self.route_received(received);
    }

    fn route_received(&mut self, received: Option<Received>) {
        match received {
            Some(Received::Ask(to, msg)) => self.send(to, msg),
            Some(Received::Complete(slot, data)) => self.install_snapshot(slot, data),
            None => {}
        }
    }

    /// Jump to a snapshot received from a peer.
    fn install_snapshot(&mut self, slot: Slot, data: Bytes) {
        if slot <= self.learner.commit {
            return;
        }
        if self.is_leader() {
            // As for `Chosen`: a newer leader chose these; step down first.
            self.step_down(crate::ballot::Ballot::ZERO);
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
}
