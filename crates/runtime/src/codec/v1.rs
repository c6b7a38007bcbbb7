//! Conversions between the protocol's types and schema version 1's
//! generated messages. Encoding cannot fail; decoding checks that every
//! part a kind needs is present and that sizes fit, and names an unknown
//! kind as such.

use super::pb;
use super::DecodeError;
use crate::transport::ClusterInfo;
use std::net::SocketAddr;
use synod_paxos::election::Pong;
use synod_paxos::{Ballot, Command, CommandId, Membership, Message, PromisedEntry, Record, Value};

type Result<T> = std::result::Result<T, DecodeError>;

fn missing(what: &'static str, part: &str) -> DecodeError {
    DecodeError::new(what, format!("{part} is missing"))
}

fn pb_ballot(b: &Ballot) -> pb::Ballot {
    pb::Ballot { round: b.round, node: b.node }
}

fn ballot_of(b: pb::Ballot) -> Ballot {
    Ballot { round: b.round, node: b.node }
}

fn ballot(b: &Ballot) -> Option<pb::Ballot> {
    Some(pb_ballot(b))
}

fn ballot_from(b: Option<pb::Ballot>, what: &'static str) -> Result<Ballot> {
    b.map(ballot_of).ok_or_else(|| missing(what, "ballot"))
}

fn command(c: &Command) -> pb::Command {
    pb::Command { client: c.id.client, seq: c.id.seq, origin: c.origin, payload: c.payload.clone() }
}

fn command_from(c: pb::Command) -> Command {
    Command { id: CommandId { client: c.client, seq: c.seq }, origin: c.origin, payload: c.payload }
}

fn membership(m: &Membership) -> pb::Membership {
    pb::Membership { voters: m.voters.clone(), learners: m.learners.clone(), q1: m.q1 as u64, q2: m.q2 as u64 }
}

fn membership_from(m: pb::Membership, what: &'static str) -> Result<Membership> {
    let size = |q: u64| usize::try_from(q).map_err(|_| DecodeError::new(what, "quorum size out of range"));
    Ok(Membership { voters: m.voters, learners: m.learners, q1: size(m.q1)?, q2: size(m.q2)? })
}

fn value(v: &Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Noop => Kind::Noop(pb::Noop {}),
        Value::Commands(c) => Kind::Commands(pb::Commands { commands: c.iter().map(command).collect() }),
        Value::Reconfigure(m) => Kind::Reconfigure(membership(m)),
        Value::ExpireSessions { before } => Kind::ExpireSessions(pb::ExpireSessions { before: *before }),
    };
    pb::Value { kind: Some(kind) }
}

fn value_from(v: pb::Value, what: &'static str) -> Result<Value> {
    use pb::value::Kind;
    Ok(match v.kind.ok_or_else(|| DecodeError::new(what, "a value of an unknown kind"))? {
        Kind::Noop(_) => Value::Noop,
        Kind::Commands(c) => Value::Commands(c.commands.into_iter().map(command_from).collect()),
        Kind::Reconfigure(m) => Value::Reconfigure(membership_from(m, what)?),
        Kind::ExpireSessions(e) => Value::ExpireSessions { before: e.before },
    })
}

fn values(v: &[Value]) -> Vec<pb::Value> {
    v.iter().map(value).collect()
}

fn values_from(v: Vec<pb::Value>, what: &'static str) -> Result<Vec<Value>> {
    v.into_iter().map(|v| value_from(v, what)).collect()
}

fn entry(e: &PromisedEntry) -> pb::PromisedEntry {
    pb::PromisedEntry { slot: e.slot, ballot: ballot(&e.ballot), value: Some(value(&e.value)), chosen: e.chosen }
}

fn entries_from(v: Vec<pb::PromisedEntry>, what: &'static str) -> Result<Vec<PromisedEntry>> {
    v.into_iter()
        .map(|e| {
            Ok(PromisedEntry {
                slot: e.slot,
                ballot: ballot_from(e.ballot, what)?,
                value: value_from(e.value.ok_or_else(|| missing(what, "value"))?, what)?,
                chosen: e.chosen,
            })
        })
        .collect()
}

impl From<&Message> for pb::Message {
    fn from(m: &Message) -> pb::Message {
        use pb::message::Kind;
        let kind = match m {
            Message::Ping { round } => Kind::Ping(pb::Ping { round: *round }),
            Message::Pong(p) => Kind::Pong(pb::Pong {
                from: p.from,
                round: p.round,
                ballot: ballot(&p.ballot),
                connected: p.connected,
                candidate: p.candidate,
                leader: ballot(&p.leader),
                priority: p.priority,
            }),
            Message::Prepare { ballot: b, from_slot, handoff } => Kind::Prepare(pb::Prepare {
                ballot: ballot(b),
                from_slot: *from_slot,
                handoff: handoff.as_ref().and_then(ballot),
            }),
            Message::Promise { ballot: b, from_slot, entries, compacted } => Kind::Promise(pb::Promise {
                ballot: ballot(b),
                from_slot: *from_slot,
                entries: entries.iter().map(entry).collect(),
                compacted: *compacted,
            }),
            Message::Accept { ballot: b, first_slot, values: v, commit } => Kind::Accept(pb::Accept {
                ballot: ballot(b),
                first_slot: *first_slot,
                values: values(v),
                commit: *commit,
            }),
            Message::Accepted { ballot: b, first_slot, last_slot } => {
                Kind::Accepted(pb::Accepted { ballot: ballot(b), first_slot: *first_slot, last_slot: *last_slot })
            }
            Message::Nack { ballot: b, promised } => {
                Kind::Nack(pb::Nack { ballot: ballot(b), promised: ballot(promised) })
            }
            Message::Commit { ballot: b, commit } => Kind::Commit(pb::Commit { ballot: ballot(b), commit: *commit }),
            Message::Heartbeat { ballot: b, commit, seq, last_slot } => {
                Kind::Heartbeat(pb::Heartbeat { ballot: ballot(b), commit: *commit, seq: *seq, last_slot: *last_slot })
            }
            Message::HeartbeatAck { ballot: b, seq, lease } => {
                Kind::HeartbeatAck(pb::HeartbeatAck { ballot: ballot(b), seq: *seq, lease: *lease })
            }
            Message::CatchUp { from_slot } => Kind::CatchUp(pb::CatchUp { from_slot: *from_slot }),
            Message::Chosen { first_slot, values: v, commit } => {
                Kind::Chosen(pb::Chosen { first_slot: *first_slot, values: values(v), commit: *commit })
            }
            Message::SnapshotRequest { slot, offset } => {
                Kind::SnapshotRequest(pb::SnapshotRequest { slot: *slot, offset: *offset })
            }
            Message::SnapshotChunk { slot, offset, total, data } => Kind::SnapshotChunk(pb::SnapshotChunk {
                slot: *slot,
                offset: *offset,
                total: *total,
                data: data.clone(),
            }),
            Message::ReadIndex { id } => Kind::ReadIndex(pb::ReadIndex { id: *id }),
            Message::ReadIndexReply { id, index } => {
                Kind::ReadIndexReply(pb::ReadIndexReply { id: *id, index: *index })
            }
            Message::RejoinQuery => Kind::RejoinQuery(pb::RejoinQuery {}),
            Message::RejoinReply { promised, last_slot } => {
                Kind::RejoinReply(pb::RejoinReply { promised: ballot(promised), last_slot: *last_slot })
            }
            Message::Forward { commands } => {
                Kind::Forward(pb::Forward { commands: commands.iter().map(command).collect() })
            }
            Message::TimeoutNow { ballot: b, commit } => {
                Kind::TimeoutNow(pb::TimeoutNow { ballot: ballot(b), commit: *commit })
            }
            Message::Progress { commit } => Kind::Progress(pb::Progress { commit: *commit }),
        };
        pb::Message { kind: Some(kind) }
    }
}

impl TryFrom<pb::Message> for Message {
    type Error = DecodeError;

    fn try_from(m: pb::Message) -> Result<Message> {
        use pb::message::Kind;
        const W: &str = "message";
        Ok(match m.kind.ok_or_else(|| DecodeError::new(W, "a message of an unknown kind"))? {
            Kind::Ping(p) => Message::Ping { round: p.round },
            Kind::Pong(p) => Message::Pong(Pong {
                from: p.from,
                round: p.round,
                ballot: ballot_from(p.ballot, W)?,
                connected: p.connected,
                candidate: p.candidate,
                leader: ballot_from(p.leader, W)?,
                priority: p.priority,
            }),
            Kind::Prepare(p) => Message::Prepare {
                ballot: ballot_from(p.ballot, W)?,
                from_slot: p.from_slot,
                handoff: p.handoff.map(ballot_of),
            },
            Kind::Promise(p) => Message::Promise {
                ballot: ballot_from(p.ballot, W)?,
                from_slot: p.from_slot,
                entries: entries_from(p.entries, W)?,
                compacted: p.compacted,
            },
            Kind::Accept(a) => Message::Accept {
                ballot: ballot_from(a.ballot, W)?,
                first_slot: a.first_slot,
                values: values_from(a.values, W)?,
                commit: a.commit,
            },
            Kind::Accepted(a) => Message::Accepted {
                ballot: ballot_from(a.ballot, W)?,
                first_slot: a.first_slot,
                last_slot: a.last_slot,
            },
            Kind::Nack(n) => Message::Nack { ballot: ballot_from(n.ballot, W)?, promised: ballot_from(n.promised, W)? },
            Kind::Commit(c) => Message::Commit { ballot: ballot_from(c.ballot, W)?, commit: c.commit },
            Kind::Heartbeat(h) => Message::Heartbeat {
                ballot: ballot_from(h.ballot, W)?,
                commit: h.commit,
                seq: h.seq,
                last_slot: h.last_slot,
            },
            Kind::HeartbeatAck(h) => {
                Message::HeartbeatAck { ballot: ballot_from(h.ballot, W)?, seq: h.seq, lease: h.lease }
            }
            Kind::CatchUp(c) => Message::CatchUp { from_slot: c.from_slot },
            Kind::Chosen(c) => {
                Message::Chosen { first_slot: c.first_slot, values: values_from(c.values, W)?, commit: c.commit }
            }
            Kind::SnapshotRequest(r) => Message::SnapshotRequest { slot: r.slot, offset: r.offset },
            Kind::SnapshotChunk(c) => {
                Message::SnapshotChunk { slot: c.slot, offset: c.offset, total: c.total, data: c.data }
            }
            Kind::ReadIndex(r) => Message::ReadIndex { id: r.id },
            Kind::ReadIndexReply(r) => Message::ReadIndexReply { id: r.id, index: r.index },
            Kind::RejoinQuery(_) => Message::RejoinQuery,
            Kind::RejoinReply(r) => {
                Message::RejoinReply { promised: ballot_from(r.promised, W)?, last_slot: r.last_slot }
            }
            Kind::Forward(f) => Message::Forward { commands: f.commands.into_iter().map(command_from).collect() },
            Kind::TimeoutNow(t) => Message::TimeoutNow { ballot: ballot_from(t.ballot, W)?, commit: t.commit },
            Kind::Progress(p) => Message::Progress { commit: p.commit },
        })
    }
}

impl From<&Record> for pb::Record {
    fn from(r: &Record) -> pb::Record {
        use pb::record::Kind;
        let kind = match r {
            Record::Promised(b) => Kind::Promised(pb_ballot(b)),
            Record::Accepted { ballot: b, first_slot, values: v } => {
                Kind::Accepted(pb::AcceptedRecord { ballot: ballot(b), first_slot: *first_slot, values: values(v) })
            }
            Record::Chosen { first_slot, values: v } => {
                Kind::Chosen(pb::ChosenRecord { first_slot: *first_slot, values: values(v) })
            }
            Record::Commit(c) => Kind::Commit(pb::CommitRecord { commit: *c }),
            Record::Ballot(b) => Kind::Ballot(pb_ballot(b)),
            Record::Rejoining => Kind::Rejoining(pb::Flag {}),
            Record::Rejoined => Kind::Rejoined(pb::Flag {}),
            Record::Checkpoint { snapshot_slot, promised, own_ballot, commit, entries } => {
                Kind::Checkpoint(pb::CheckpointRecord {
                    snapshot_slot: *snapshot_slot,
                    promised: ballot(promised),
                    own_ballot: ballot(own_ballot),
                    commit: *commit,
                    entries: entries.iter().map(entry).collect(),
                })
            }
        };
        pb::Record { kind: Some(kind) }
    }
}

impl TryFrom<pb::Record> for Record {
    type Error = DecodeError;

    fn try_from(r: pb::Record) -> Result<Record> {
        use pb::record::Kind;
        const W: &str = "record";
        Ok(match r.kind.ok_or_else(|| DecodeError::new(W, "a record of an unknown kind"))? {
            Kind::Promised(b) => Record::Promised(ballot_of(b)),
            Kind::Accepted(a) => Record::Accepted {
                ballot: ballot_from(a.ballot, W)?,
                first_slot: a.first_slot,
                values: values_from(a.values, W)?,
            },
            Kind::Chosen(c) => Record::Chosen { first_slot: c.first_slot, values: values_from(c.values, W)? },
            Kind::Commit(c) => Record::Commit(c.commit),
            Kind::Ballot(b) => Record::Ballot(ballot_of(b)),
            Kind::Rejoining(_) => Record::Rejoining,
            Kind::Rejoined(_) => Record::Rejoined,
            Kind::Checkpoint(c) => Record::Checkpoint {
                snapshot_slot: c.snapshot_slot,
                promised: ballot_from(c.promised, W)?,
                own_ballot: ballot_from(c.own_ballot, W)?,
                commit: c.commit,
                entries: entries_from(c.entries, W)?,
            },
        })
    }
}

impl From<&ClusterInfo> for pb::ClusterInfo {
    fn from(info: &ClusterInfo) -> pb::ClusterInfo {
        pb::ClusterInfo {
            cluster_id: info.cluster_id,
            membership: Some(membership(&info.membership)),
            peers: info.peers.iter().map(|(&id, addr)| pb::Peer { id, address: addr.to_string() }).collect(),
            alpha: info.alpha,
        }
    }
}

impl TryFrom<pb::ClusterInfo> for ClusterInfo {
    type Error = DecodeError;

    fn try_from(info: pb::ClusterInfo) -> Result<ClusterInfo> {
        const W: &str = "directory answer";
        let peers = info
            .peers
            .into_iter()
            .map(|p| {
                let addr: SocketAddr =
                    p.address.parse().map_err(|_| DecodeError::new(W, format!("bad peer address {:?}", p.address)))?;
                Ok((p.id, addr))
            })
            .collect::<Result<_>>()?;
        Ok(ClusterInfo {
            cluster_id: info.cluster_id,
            membership: membership_from(info.membership.ok_or_else(|| missing(W, "membership"))?, W)?,
            peers,
            alpha: info.alpha,
        })
    }
}
