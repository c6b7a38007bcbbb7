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

use crate::ballot::Ballot;
use crate::io::{SessionInfo, Snapshot};
use crate::log::Log;
use crate::message::{split_by_size, value_size_bound, Message, PromisedEntry, ENVELOPE_BYTES};
use crate::outbox::Net;
use crate::reconfig::Configs;
use crate::record::Record;
use crate::state_machine::SnapshotError;
use crate::types::{Lsn, NodeId, Slot};
use bytes::Bytes;
use std::collections::HashMap;

/// The first bytes of a snapshot in an explicitly versioned layout. A
/// snapshot in the flagged layout never starts so: its first byte holds
/// only flags (a session count below 2^56), so 0x00, 0x20, ..., 0xE0.
const MAGIC: [u8; 4] = *b"SYNS";
/// The layout [`SnapshotFormat::V2`] writes after [`MAGIC`].
const VERSION_2: u8 = 2;

/// The layout a replica writes its snapshots in. Every release from this
/// one on reads both; which one it writes is [`crate::Config::snapshot_format`].
///
/// A snapshot leaves the member that took it (a member behind is sent it),
/// so a cluster writes a new layout only once every member reads it: first
/// a release that reads it, everywhere, then one that writes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotFormat {
    /// The layout every release so far reads: the session count with flags
    /// in its top three bits announcing what follows (the expiry mark,
    /// sessions' last slots, the membership section).
    #[default]
    Flagged,
    /// An explicit header: `SYNS`, the version (2), the expiry mark, the
    /// session count; then sessions (client, sequence number, last slot),
    /// the membership section and the state machine's bytes. Read by this
    /// release and later; written once the default changes to it.
    V2,
}

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
    /// A snapshot at `slot` of a state whose [`crate::StateMachine::snapshot`] bytes
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

impl Snapshots {
    /// Whether a snapshot is due: `every` slots applied (`applied`) since
    /// the last one (never if `every` is 0).
    pub(crate) fn due(&self, every: Slot, applied: Slot) -> bool {
        let last = self.latest.as_ref().map_or(0, |s| s.slot);
        every != 0 && applied >= last + every
    }

    /// A snapshot of everything applied (`applied`, its bytes from
    /// `encode`) for the runtime to store, unless one is pending or the
    /// last one already covers it, or the replica is rejoining (its
    /// `Rejoining` record must stay in the log, so no checkpoint may
    /// replace it).
    pub(crate) fn take(&mut self, applied: Slot, rejoining: bool, encode: impl FnOnce() -> Bytes) -> Option<Snapshot> {
        let last = self.latest.as_ref().map_or(0, |s| s.slot);
        if self.pending.is_some() || rejoining || applied <= last {
            return None;
        }
        let snap = Snapshot { slot: applied, data: encode() };
        self.pending = Some(snap.clone());
        Some(snap)
    }

    /// The runtime stored the snapshot at `slot`: it is the latest now.
    /// Whether it was the one pending.
    pub(crate) fn saved(&mut self, slot: Slot) -> bool {
        let Some(snap) = self.pending.take_if(|s| s.slot == slot) else { return false };
        self.latest = Some(snap);
        if self.installed_unsaved.is_some_and(|s| s <= slot) {
            self.installed_unsaved = None;
        }
        true
    }

    /// Compact `log` up to the stored snapshot at `slot` (keeping what a
    /// transfer asked for since `horizon` still needs) and checkpoint: one
    /// `Checkpoint` record per run of entries that fits a message (the
    /// log's record limit is above it): a log kept long for a learner being
    /// sent a snapshot can hold more than one record may. Each restates
    /// the promise, ballot and commit index (`state`); replayed in order,
    /// the last one's entries complete the commit index. The log before the
    /// first goes once the last is durable ([`Snapshots::checkpoint_durable`]).
    pub(crate) fn checkpoint<O>(
        &mut self,
        net: &mut Net<'_, O>,
        log: &mut Log,
        (slot, horizon, max_message_bytes): (Slot, u64, usize),
        (promised, own_ballot, commit): (Ballot, Ballot, Slot),
    ) {
        let floor = self.sender.compaction_floor(horizon, slot);
        log.compact(slot.min(floor));
        let entries: Vec<PromisedEntry> = log
            .iter_from(0)
            .map(|(slot, e)| PromisedEntry { slot, ballot: e.ballot, value: e.value.clone(), chosen: e.chosen })
            .collect();
        let budget = max_message_bytes.saturating_sub(ENVELOPE_BYTES);
        let runs = split_by_size(entries, budget, |e| value_size_bound(&e.value).saturating_add(32));
        let runs = if runs.is_empty() { vec![Vec::new()] } else { runs };
        let mut first = None;
        let mut last = 0;
        for entries in runs {
            last = net.persist(Record::Checkpoint { snapshot_slot: slot, promised, own_ballot, commit, entries });
            first.get_or_insert(last);
        }
        self.checkpoint_lsn = first.map(|first| (first, last));
    }

    /// Every record up to `durable` is durable: once the last checkpoint
    /// record is, the records before its first may be deleted (returned).
    pub(crate) fn checkpoint_durable(&mut self, durable: Lsn) -> Option<Lsn> {
        let (first, last) = self.checkpoint_lsn?;
        if durable < last {
            return None;
        }
        self.checkpoint_lsn = None;
        Some(first)
    }

    /// Send `to` the chunk of our snapshot at `offset` (at most `chunk`
    /// bytes), asked for at `now`.
    pub(crate) fn send_chunk<O>(&mut self, net: &mut Net<'_, O>, (chunk, now): (usize, u64), to: NodeId, offset: u64) {
        let Some(snap) = self.latest.as_ref() else { return };
        let (msg, last) = self.sender.chunk(snap, chunk, now, to, offset);
        if last {
            net.out.stats.snapshots_sent += 1;
        }
        net.send(to, msg);
    }

    /// A learner asks for the chunk at `offset` of our snapshot at `slot`:
    /// sent if that is still our snapshot, else ours from its start.
    pub(crate) fn on_request<O>(
        &mut self,
        net: &mut Net<'_, O>,
        chunk_now: (usize, u64),
        from: NodeId,
        slot: Slot,
        offset: u64,
    ) {
        let current = self.latest.as_ref().map(|s| s.slot);
        match current {
            Some(s) if s == slot => self.send_chunk(net, chunk_now, from, offset),
            Some(_) => self.send_chunk(net, chunk_now, from, 0),
            None => {}
        }
    }
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
pub(crate) fn encode(
    format: SnapshotFormat,
    sessions: &[SessionInfo],
    expired_before: Slot,
    configs: &Configs,
    state: &[u8],
) -> Bytes {
    let mut out = Vec::with_capacity(16 + sessions.len() * 24);
    match format {
        SnapshotFormat::Flagged => {
            let flags = MEMBERSHIP_FLAG | SESSION_SLOT_FLAG | EXPIRED_FLAG;
            out.extend_from_slice(&(sessions.len() as u64 | flags).to_be_bytes());
            out.extend_from_slice(&expired_before.to_be_bytes());
        }
        SnapshotFormat::V2 => {
            out.extend_from_slice(&MAGIC);
            out.push(VERSION_2);
            out.extend_from_slice(&expired_before.to_be_bytes());
            out.extend_from_slice(&(sessions.len() as u64).to_be_bytes());
        }
    }
    for s in sessions {
        out.extend_from_slice(&s.client.to_be_bytes());
        out.extend_from_slice(&s.seq.to_be_bytes());
        out.extend_from_slice(&s.last_slot.to_be_bytes());
    }
    configs.encode(&mut out);
    out.extend_from_slice(state);
    Bytes::from(out)
}

/// What a snapshot of everything up to `applied` records of the
/// membership `configs`: the configuration governing the next slot, as the
/// base, and the changes chosen but not yet in force there.
pub(crate) fn configs_after(configs: &Configs, applied: Slot) -> Configs {
    let from = applied + 1;
    let mut c = Configs::new(configs.governing(from).clone(), configs.alpha);
    c.chosen.extend(configs.pending_at(from).map(|(s, m)| (s, m.clone())));
    c
}

/// A snapshot's contents (see [`encode`] for the layout).
pub(crate) struct Decoded<'a> {
    /// The duplicate-detection table: (client, sequence number, last slot).
    pub(crate) sessions: Vec<(u64, u64, Slot)>,
    /// The slot below which sessions were last expired.
    pub(crate) expired_before: Slot,
    /// The membership section, if the snapshot has one.
    pub(crate) configs: Option<Configs>,
    /// The state machine's bytes.
    pub(crate) state: &'a [u8],
}

/// Read the snapshot at `slot` (`alpha`: the reconfiguration rule's, for
/// its membership section).
pub(crate) fn decode(slot: Slot, data: &[u8], alpha: Slot) -> Result<Decoded<'_>, SnapshotError> {
    let bad = || SnapshotError("truncated session table".into());
    let (n, with_membership, with_slots, expired_before, mut rest);
    if let Some(after) = data.strip_prefix(&MAGIC) {
        let (&version, r) = after.split_first().ok_or_else(bad)?;
        if version != VERSION_2 {
            return Err(SnapshotError(format!(
                "snapshot format version {version}: this release reads version {VERSION_2} and the flagged layout \
                 before it (a newer member wrote it; upgrade this one)"
            )));
        }
        let (e, r) = r.split_first_chunk::<8>().ok_or_else(bad)?;
        let (count, r) = r.split_first_chunk::<8>().ok_or_else(bad)?;
        (n, with_membership, with_slots) = (u64::from_be_bytes(*count), true, true);
        expired_before = u64::from_be_bytes(*e);
        rest = r;
    } else {
        // The flagged layout: what each later rule added is announced by
        // a flag in the top bits of the session count.
        let (count, r) = data.split_first_chunk::<8>().ok_or_else(bad)?;
        let count = u64::from_be_bytes(*count);
        with_membership = count & MEMBERSHIP_FLAG != 0;
        with_slots = count & SESSION_SLOT_FLAG != 0;
        rest = r;
        expired_before = if count & EXPIRED_FLAG != 0 {
            let (e, r) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
            rest = r;
            u64::from_be_bytes(*e)
        } else {
            0
        };
        n = count & !(MEMBERSHIP_FLAG | SESSION_SLOT_FLAG | EXPIRED_FLAG);
    }
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
        let (c, r) = Configs::decode(rest, alpha).ok_or_else(|| SnapshotError("bad membership section".into()))?;
        configs = Some(c);
        rest = r;
    }
    Ok(Decoded { sessions, expired_before, configs, state: rest })
}

#[cfg(test)]
mod format_tests {
    //! The snapshot layouts against golden files (`tests/golden/`): the
    //! flagged one as every earlier release wrote it (never re-blessed),
    //! and version 2 (`SYNOD_BLESS=1` rewrites it, and writes a missing
    //! flagged file).
    use super::*;
    use crate::reconfig::Membership;
    use std::path::PathBuf;

    const SLOT: Slot = 40;
    const ALPHA: Slot = 16;

    fn sample() -> (Vec<SessionInfo>, Slot, Configs, &'static [u8]) {
        let sessions = vec![
            SessionInfo { client: 7, seq: 3, last_slot: 12 },
            SessionInfo { client: 1 << 63 | 9, seq: 41, last_slot: 39 },
        ];
        let configs = Configs::new(Membership::majority(vec![1, 2, 3], vec![4]).unwrap(), ALPHA);
        (sessions, 30, configs, b"the state machine's bytes")
    }

    fn golden(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
    }

    #[test]
    fn both_layouts_match_their_golden_files_and_decode_alike() {
        let (sessions, expired, configs, state) = sample();
        for (format, name) in
            [(SnapshotFormat::Flagged, "snapshot.flagged.bin"), (SnapshotFormat::V2, "snapshot.v2.bin")]
        {
            let bytes = encode(format, &sessions, expired, &configs, state);
            let path = golden(name);
            let bless = std::env::var_os("SYNOD_BLESS").is_some();
            if bless && (format == SnapshotFormat::V2 || !path.exists()) {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(bytes.as_ref(), stored.as_slice(), "{name} no longer matches what is written");
            let d = decode(SLOT, &stored, ALPHA).unwrap();
            let got: Vec<(u64, u64, Slot)> = sessions.iter().map(|s| (s.client, s.seq, s.last_slot)).collect();
            assert_eq!(d.sessions, got, "{name}");
            assert_eq!(d.expired_before, expired, "{name}");
            assert_eq!(d.configs.map(|c| c.governing(SLOT + 1).voters.clone()), Some(vec![1, 2, 3]), "{name}");
            assert_eq!(d.state, state, "{name}");
        }
    }

    #[test]
    fn a_layout_newer_than_this_release_reads_is_refused_by_name() {
        let (sessions, expired, configs, state) = sample();
        let mut bytes = encode(SnapshotFormat::V2, &sessions, expired, &configs, state).to_vec();
        bytes[MAGIC.len()] = 3;
        let err = decode(SLOT, &bytes, ALPHA).err().expect("refused");
        assert!(err.0.contains("version 3"), "{}", err.0);
    }

    #[test]
    fn a_seeded_snapshot_without_flags_still_decodes() {
        let seeded = Snapshot::from_state(5, b"seed");
        let d = decode(5, &seeded.data, ALPHA).unwrap();
        assert!(d.sessions.is_empty() && d.configs.is_none());
        assert_eq!(d.state, b"seed");
    }
}
