//! Admission: what a peer's message must satisfy before any role sees it.
//!
//! Every field of a message from a peer is hostile until checked: until
//! peers prove membership with certificates, anything that reaches the
//! peer port can speak as a member, and even then a peer with a bug or a
//! damaged disk must not be able to panic, wrap or wedge this replica. The
//! shape and the range of every number is checked here, once, so that the
//! roles may rely on it:
//! - every ballot is [plausible](Ballot::plausible): its round is at most
//!   [`Ballot::MAX_ROUND_STEP`] above the highest round this replica has
//!   seen, so no `+ 1` on a round can wrap and one forged message cannot
//!   promise away the rounds the cluster has left;
//! - a ballot that names its leader names the sender;
//! - every slot number is at most [`MAX_SLOT`], so no `slot + n` wraps;
//! - slot ranges are non-empty, ordered and do not overflow, and promised
//!   entries lie in the window the promise is about (see
//!   [`MAX_SLOT_LEAD`]);
//! - a configuration carried in a value is a valid one;
//! - a snapshot's declared size is at most
//!   [`Config::max_snapshot_bytes`](crate::Config::max_snapshot_bytes) and
//!   every chunk lies inside it.
//!
//! What admission cannot check is whether a well-formed message is true: a
//! member that lies about what it accepted or chose breaks Paxos however
//! its numbers look. That is what peer authentication is for.
//!
//! A refused message is dropped (Paxos tolerates lost messages) and named
//! in [`crate::Output::refused`] for the runtime to log.

use crate::ballot::Ballot;
use crate::command::Value;
use crate::log::{MAX_SLOT, MAX_SLOT_LEAD};
use crate::message::Message;
use crate::types::{NodeId, Slot};

/// Why `msg` from `from` is refused, or `None` if it may be handled.
/// `seen` is the highest ballot round the replica has seen (promised, led
/// with, bid with or followed), which bounds the plausible ballots, and
/// `max_snapshot_bytes` the largest snapshot it takes.
pub(crate) fn refusal(from: NodeId, msg: &Message, seen: u64, max_snapshot_bytes: u64) -> Option<&'static str> {
    if slots(msg).into_iter().any(|s| s > MAX_SLOT) {
        return Some("slot number out of range");
    }
    let ballot_ok = |b: &Ballot| b.plausible(seen);
    // A value as it could stand at `slot`: a leader proposes session expiry
    // for sessions last used before a slot its learner had reached, so
    // never beyond the slot it proposes in (a forged expiry of every
    // session up to slot 2^64 would refuse every later command).
    let value_ok = |slot: Slot, v: &Value| match v {
        Value::Reconfigure(m) => m.validate().is_ok(),
        Value::ExpireSessions { before } => *before <= slot,
        Value::Noop | Value::Commands(_) => true,
    };
    let values_ok = |first: Slot, values: &[Value]| {
        values.iter().enumerate().all(|(i, v)| value_ok(first.saturating_add(i as u64), v))
    };
    // Ballots that name their leader must name the sender.
    let own = |b: &Ballot| b.node == from;
    match msg {
        Message::Ping { .. } | Message::RejoinQuery | Message::Forward { .. } => None,
        Message::Pong(p) => (!ballot_ok(&p.ballot) || !ballot_ok(&p.leader)).then_some("implausible ballot"),
        Message::Prepare { ballot, handoff, .. } => {
            if !ballot_ok(ballot) || handoff.as_ref().is_some_and(|h| !ballot_ok(h)) {
                Some("implausible ballot")
            } else if !own(ballot) {
                Some("ballot of another node")
            } else {
                None
            }
        }
        Message::Promise { ballot, from_slot, entries, compacted } => {
            // (A leader far behind is sent the entries above the
            // promiser's compaction point, and catches up to it first.)
            let end = (*from_slot).max(compacted.saturating_add(1)).saturating_add(MAX_SLOT_LEAD);
            let mut prev: Option<Slot> = None;
            for e in entries {
                if e.slot < *from_slot || e.slot >= end || prev.is_some_and(|p| e.slot <= p) {
                    return Some("promised entries out of range or out of order");
                }
                if !ballot_ok(&e.ballot) || !value_ok(e.slot, &e.value) {
                    return Some("implausible promised entry");
                }
                prev = Some(e.slot);
            }
            (!ballot_ok(ballot) || *from_slot == 0).then_some("implausible promise")
        }
        Message::Accept { ballot, first_slot, values, .. } => {
            if !ballot_ok(ballot) {
                Some("implausible ballot")
            } else if !own(ballot) {
                Some("ballot of another node")
            } else if values.is_empty() || *first_slot == 0 || last_slot(*first_slot, values.len()).is_none() {
                Some("empty or overflowing slot range")
            } else if !values_ok(*first_slot, values) {
                Some("invalid value (a configuration, or a session expiry beyond its slot)")
            } else {
                None
            }
        }
        Message::Accepted { ballot, first_slot, last_slot } => {
            if !ballot_ok(ballot) {
                Some("implausible ballot")
            } else if *first_slot == 0 || first_slot > last_slot {
                Some("empty or reversed slot range")
            } else {
                None
            }
        }
        Message::Nack { ballot, promised } => {
            (!ballot_ok(ballot) || !ballot_ok(promised)).then_some("implausible ballot")
        }
        Message::Commit { ballot, .. } | Message::Heartbeat { ballot, .. } | Message::TimeoutNow { ballot, .. } => {
            if !ballot_ok(ballot) {
                Some("implausible ballot")
            } else if !own(ballot) {
                Some("ballot of another node")
            } else {
                None
            }
        }
        Message::HeartbeatAck { ballot, .. } => (!ballot_ok(ballot)).then_some("implausible ballot"),
        Message::RejoinReply { promised, .. } => (!ballot_ok(promised)).then_some("implausible ballot"),
        Message::Chosen { first_slot, values, .. } => {
            if *first_slot == 0 || values.is_empty() || last_slot(*first_slot, values.len()).is_none() {
                Some("empty or overflowing slot range")
            } else if !values_ok(*first_slot, values) {
                Some("invalid value (a configuration, or a session expiry beyond its slot)")
            } else {
                None
            }
        }
        Message::SnapshotChunk { slot, offset, total, data } => {
            let end = offset.checked_add(data.len() as u64);
            if *total > max_snapshot_bytes {
                Some("snapshot larger than allowed")
            } else if end.is_none_or(|end| end > *total) || *slot == 0 {
                Some("snapshot chunk outside the snapshot")
            } else {
                None
            }
        }
        Message::SnapshotRequest { .. }
        | Message::CatchUp { .. }
        | Message::ReadIndex { .. }
        | Message::ReadIndexReply { .. }
        | Message::Progress { .. } => None,
    }
}

/// Every slot number `msg` carries (the entries of a promise included).
fn slots(msg: &Message) -> Vec<Slot> {
    match msg {
        Message::Prepare { from_slot, .. } => vec![*from_slot],
        Message::Promise { from_slot, entries, compacted, .. } => {
            [*from_slot, *compacted].into_iter().chain(entries.iter().map(|e| e.slot)).collect()
        }
        Message::Accept { first_slot, commit, .. } => vec![*first_slot, *commit],
        Message::Accepted { first_slot, last_slot, .. } => vec![*first_slot, *last_slot],
        Message::Commit { commit, .. } | Message::TimeoutNow { commit, .. } | Message::Progress { commit } => {
            vec![*commit]
        }
        Message::Heartbeat { commit, last_slot, .. } => vec![*commit, *last_slot],
        Message::CatchUp { from_slot } => vec![*from_slot],
        Message::Chosen { first_slot, commit, .. } => vec![*first_slot, *commit],
        Message::SnapshotRequest { slot, .. } | Message::SnapshotChunk { slot, .. } => vec![*slot],
        Message::ReadIndexReply { index, .. } => vec![*index],
        Message::RejoinReply { last_slot, .. } => vec![*last_slot],
        Message::Ping { .. }
        | Message::Pong(_)
        | Message::Nack { .. }
        | Message::HeartbeatAck { .. }
        | Message::ReadIndex { .. }
        | Message::RejoinQuery
        | Message::Forward { .. } => Vec::new(),
    }
}

/// The last slot of `len` consecutive slots from `first`, if it exists.
pub(crate) fn last_slot(first: Slot, len: usize) -> Option<Slot> {
    let len = Slot::try_from(len).ok()?.checked_sub(1)?;
    first.checked_add(len)
}
