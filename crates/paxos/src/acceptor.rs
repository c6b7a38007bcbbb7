//! The acceptor: promises (phase 1b), acceptances (phase 2b), lease grants.
//!
//! Rules kept here, in the paper's words: an acceptor never accepts a value
//! in a ballot lower than one it promised, and it remembers (durably, before
//! replying) what it promised and accepted. Every reply that depends on this
//! state is an `Effect::Reply`, which the router sends through
//! `Net::send_after_persist` (`outbox.rs`), so it cannot leave the node
//! before the records behind it are durable.
//!
//! Leases: when an acceptor acknowledges a leader's heartbeat with a lease,
//! it refuses every other node's Prepare for `lease_ticks` of its own clock.
//! The leader counts its lease from when it *sent* the heartbeat, minus a
//! drift margin, so it stops relying on the lease before any acceptor lets
//! it go. One exception, for leadership transfer: a Prepare that carries
//! `handoff: Some(b)` passes a lease granted in exactly ballot `b`, whose
//! leader gave that lease up for good before handing over (see
//! [`crate::handover`]).

use crate::ballot::Ballot;
use crate::command::Value;
use crate::config::Config;
use crate::log::{Entry, Log};
use crate::message::{value_size_bound, Message, PromisedEntry, ENVELOPE_BYTES};
use crate::record::Record;
use crate::types::{NodeId, Slot};

/// Bytes a promised entry takes besides its value (slot, ballot, flag).
const ENTRY_BYTES: usize = 40;

/// What an acceptor promised, and the lease it granted. (What it accepted
/// is in the replica's log, which the learner shares.)
#[derive(Clone, Debug, Default)]
pub(crate) struct Acceptor {
    /// The highest ballot promised.
    pub(crate) promised: Ballot,
    /// Lease granted to a leader: until `lease_until` refuse other ballots'
    /// Prepares. `lease_holder == 0` with a future `lease_until` means
    /// "recovering: refuse everyone" (a lease granted before a crash may
    /// still be running).
    pub(crate) lease_holder: NodeId,
    /// The ballot the lease was last granted in (a `Prepare` handed over
    /// from exactly this ballot passes the lease).
    pub(crate) lease_ballot: Ballot,
    /// The tick of this replica's clock the lease runs out at.
    pub(crate) lease_until: u64,
}

/// What the acceptor asks the replica to do, in this order.
#[derive(Debug)]
pub(crate) enum Effect {
    /// It promised a ballot higher than before: a leadership here in a
    /// lower one is over, and election hears of the new one.
    Promised(Ballot),
    /// Append this record.
    Persist(Record),
    /// Send now: the message depends on nothing unpersisted.
    Send(NodeId, Message),
    /// Send once every record so far is durable.
    Reply(NodeId, Message),
    /// The message came from a leader this acceptor goes along with: the
    /// commit index it carries may be learned.
    Learn,
}

/// What the acceptor reads besides its own state.
pub(crate) struct Env<'a> {
    /// The replica's configuration.
    pub(crate) cfg: &'a Config,
    /// The replica's clock.
    pub(crate) now: u64,
    /// The learner's commit index.
    pub(crate) commit: Slot,
}

impl Acceptor {
    /// This replica leads in `ballot`, which this acceptor promised: it
    /// grants its own leader (`me`) a lease until `until` (a leader's
    /// heartbeat round counts its own grant at once).
    pub(crate) fn grant_own_lease(&mut self, me: NodeId, ballot: Ballot, until: u64) {
        self.lease_holder = me;
        self.lease_ballot = ballot;
        self.lease_until = self.lease_until.max(until);
    }

    /// Phase 1b: promise `ballot` unless a higher ballot was promised (then
    /// refuse) or a lease granted to another node still runs (then stay
    /// silent), and report what was accepted from `from_slot` on.
    pub(crate) fn on_prepare(
        &mut self,
        env: &Env<'_>,
        log: &Log,
        from: NodeId,
        (ballot, from_slot, handoff): (Ballot, Slot, Option<Ballot>),
    ) -> Vec<Effect> {
        if ballot < self.promised {
            return vec![Effect::Send(from, Message::Nack { ballot, promised: self.promised })];
        }
        let mut fx = Vec::new();
        if ballot > self.promised {
            let handed_over = handoff.is_some_and(|h| h != Ballot::ZERO && h == self.lease_ballot);
            if env.now < self.lease_until && self.lease_holder != ballot.node && !handed_over {
                // A lease we granted may still be running: stay silent, the
                // candidate retries after its retry interval.
                return fx;
            }
            self.promised = ballot;
            fx.push(Effect::Persist(Record::Promised(ballot)));
            fx.push(Effect::Promised(ballot));
        }
        let Some((entries, compacted)) = promised_entries(env, log, from_slot) else {
            // Our accepted values above our commit index do not fit in one
            // message: promise (durably, above) but do not answer; the
            // leader finds its quorum among the others.
            return fx;
        };
        fx.push(Effect::Reply(from, Message::Promise { ballot, from_slot, entries, compacted }));
        fx
    }

    /// Phase 2b: accept `values` from `first_slot` on in `ballot` unless a
    /// higher ballot was promised; a slot too far ahead of the log is not
    /// accepted yet (the leader resends once we caught up).
    pub(crate) fn on_accept(
        &mut self,
        cfg: &Config,
        log: &mut Log,
        from: NodeId,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
    ) -> Vec<Effect> {
        if ballot < self.promised && !cfg.plant().accept_lower_ballot() {
            return vec![Effect::Send(from, Message::Nack { ballot, promised: self.promised })];
        }
        // (Admission: `values` is not empty and its slots do not overflow.)
        let last_slot = first_slot + (values.len() as Slot - 1);
        if !log.within_reach(last_slot) {
            // Far ahead of our log: learn what is chosen first (catch-up
            // asks from our commit index on); the leader resends.
            return vec![Effect::Learn];
        }
        let mut fx = Vec::new();
        if ballot > self.promised {
            // Accepting in a ballot is also promising it; the Accepted record
            // below carries the ballot, so no separate Promised record.
            self.promised = ballot;
            fx.push(Effect::Promised(ballot));
        }
        for (i, value) in values.iter().enumerate() {
            log.set(first_slot + i as Slot, Entry { ballot, value: value.clone(), chosen: false });
        }
        debug_assert!(
            cfg.has_planted_bug() || log.get(first_slot).is_none_or(|e| e.ballot <= self.promised),
            "accepted ballot exceeds promised"
        );
        fx.push(Effect::Persist(Record::Accepted { ballot, first_slot, values }));
        fx.push(Effect::Reply(from, Message::Accepted { ballot, first_slot, last_slot }));
        fx.push(Effect::Learn);
        fx
    }

    /// A leader's heartbeat: acknowledge it if our promise is still its
    /// ballot, granting a lease when `lease` (the replica follows that
    /// leader and does not bid against it, and leases are on).
    pub(crate) fn on_heartbeat(
        &mut self,
        env: &Env<'_>,
        from: NodeId,
        ballot: Ballot,
        seq: u64,
        lease: bool,
    ) -> Vec<Effect> {
        if ballot < self.promised {
            return vec![Effect::Send(from, Message::Nack { ballot, promised: self.promised })];
        }
        let mut fx = Vec::new();
        if ballot == self.promised {
            if lease {
                self.lease_holder = ballot.node;
                self.lease_ballot = ballot;
                self.lease_until = self.lease_until.max(env.now + env.cfg.lease_ticks);
            }
            fx.push(Effect::Reply(from, Message::HeartbeatAck { ballot, seq, lease }));
        }
        fx.push(Effect::Learn);
        fx
    }

    /// Whether a commit index sent in `ballot` may be learned: not from a
    /// leader below our promise.
    pub(crate) fn admits_commit(&self, ballot: Ballot) -> bool {
        ballot >= self.promised
    }
}

/// What a promise from `from_slot` reports: the accepted entries, and
/// the slot up to which the leader must learn what was chosen before it
/// proposes (our compaction point, or more). The entries are kept
/// within [`Config::max_message_bytes`](crate::Config::max_message_bytes)
/// and [`crate::log::MAX_SLOT_LEAD`] slots: when the whole log above
/// `from_slot` is too much, our chosen prefix is reported as if
/// compacted (the leader catches up on it, then prepares again from
/// above it, exactly as when it lies in a snapshot; those slots are
/// chosen, so nothing a promise must report is left out). `None` if
/// even the entries above our commit index do not fit.
fn promised_entries(env: &Env<'_>, log: &Log, from_slot: Slot) -> Option<(Vec<PromisedEntry>, Slot)> {
    let budget = env.cfg.max_message_bytes.saturating_sub(ENVELOPE_BYTES);
    let fits = |from: Slot| {
        let mut used = 0usize;
        let mut last = from;
        for (slot, e) in log.iter_from(from) {
            used = used.saturating_add(value_size_bound(&e.value).saturating_add(ENTRY_BYTES));
            last = slot;
        }
        used <= budget && last - from < crate::log::MAX_SLOT_LEAD / 2
    };
    let mut compacted = log.compacted();
    let mut start = from_slot;
    if !fits(from_slot) {
        compacted = compacted.max(env.commit);
        start = start.max(compacted + 1);
        if !fits(start) {
            return None;
        }
    }
    let entries = log
        .iter_from(start)
        .map(|(slot, e)| PromisedEntry { slot, ballot: e.ballot, value: e.value.clone(), chosen: e.chosen })
        .collect();
    Some((entries, compacted))
}
