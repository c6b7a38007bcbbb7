//! Golden files of every wire and disk format the runtime has written, so
//! that a change that would make a release unable to read what an earlier
//! one wrote (a data directory, or a peer in a rolling upgrade) fails here.
//!
//! Each file holds one sample of every message kind (or record kind),
//! encoded in that format, as a `u32` big-endian length and the bytes. A
//! test decodes every file with today's code and compares it with the
//! samples, and encodes the samples in today's formats and compares the
//! bytes with the current version's files. To write the files after a
//! deliberate change of the current format (never of an old one):
//! `SYNOD_BLESS=1 cargo test -p synod-runtime --test formats`.

use bytes::Bytes;
use std::path::PathBuf;
use synod_paxos::election::Pong;
use synod_paxos::{Ballot, Command, Membership, Message, PromisedEntry, Record, Value};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn values() -> Vec<Value> {
    vec![
        Value::Noop,
        Value::Commands(
            vec![Command::new(7, 1, &b"put a"[..]), Command::new(u64::MAX, 2, Bytes::new()).with_origin(41)].into(),
        ),
        Value::Reconfigure(Membership { voters: vec![1, 2, 3], learners: vec![4], q1: 2, q2: 2 }),
        Value::ExpireSessions { before: 99 },
    ]
}

fn entries() -> Vec<PromisedEntry> {
    values()
        .into_iter()
        .enumerate()
        .map(|(i, value)| PromisedEntry { slot: 10 + i as u64, ballot: Ballot::new(4, 2), value, chosen: i % 2 == 0 })
        .collect()
}

/// One message of every kind, with every optional part present somewhere.
fn messages() -> Vec<Message> {
    let b = Ballot::new(5, 3);
    vec![
        Message::Ping { round: 17 },
        Message::Pong(Pong {
            from: 2,
            round: 17,
            ballot: b,
            connected: true,
            candidate: false,
            leader: Ballot::new(4, 1),
            priority: 3,
        }),
        Message::Prepare { ballot: b, from_slot: 12, handoff: None },
        Message::Prepare { ballot: b, from_slot: 12, handoff: Some(Ballot::new(4, 1)) },
        Message::Promise { ballot: b, from_slot: 10, entries: entries(), compacted: 9 },
        Message::Accept { ballot: b, first_slot: 20, values: values(), commit: 19 },
        Message::Accepted { ballot: b, first_slot: 20, last_slot: 23 },
        Message::Nack { ballot: b, promised: Ballot::new(6, 1) },
        Message::Commit { ballot: b, commit: 23 },
        Message::Heartbeat { ballot: b, commit: 23, seq: 1000, last_slot: 24 },
        Message::HeartbeatAck { ballot: b, seq: 1000, lease: true },
        Message::CatchUp { from_slot: 3 },
        Message::Chosen { first_slot: 3, values: values(), commit: 6 },
        Message::SnapshotRequest { slot: 500, offset: 65536 },
        Message::SnapshotChunk { slot: 500, offset: 65536, total: 1 << 20, data: Bytes::from_static(b"chunk") },
        Message::ReadIndex { id: 77 },
        Message::ReadIndexReply { id: 77, index: 23 },
        Message::RejoinQuery,
        Message::RejoinReply { promised: b, last_slot: 23 },
        Message::Forward { commands: vec![Command::new(8, 9, &b"txn"[..]).with_origin(3)] },
        Message::TimeoutNow { ballot: b, commit: 23 },
        Message::Progress { commit: 23 },
    ]
}

/// One record of every kind.
fn records() -> Vec<Record> {
    let b = Ballot::new(5, 3);
    vec![
        Record::Promised(b),
        Record::Accepted { ballot: b, first_slot: 20, values: values() },
        Record::Chosen { first_slot: 3, values: values() },
        Record::Commit(23),
        Record::Ballot(Ballot::new(6, 1)),
        Record::Rejoining,
        Record::Rejoined,
        Record::Checkpoint {
            snapshot_slot: 500,
            promised: b,
            own_ballot: Ballot::new(4, 3),
            commit: 501,
            entries: entries(),
        },
    ]
}

/// A directory answer.
fn cluster_info() -> synod_runtime::ClusterInfo {
    synod_runtime::ClusterInfo {
        cluster_id: 0xfeed,
        membership: Membership { voters: vec![1, 2, 3], learners: vec![], q1: 2, q2: 2 },
        peers: [(1, "127.0.0.1:2380".parse().unwrap()), (2, "[::1]:2381".parse().unwrap())].into(),
        alpha: 64,
    }
}

fn frames(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(&(item.len() as u32).to_be_bytes());
        out.extend_from_slice(item);
    }
    out
}

fn unframe(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut items = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        items.push(bytes[4..4 + len].to_vec());
        bytes = &bytes[4 + len..];
    }
    items
}

/// Compares `encoded` with the golden file `name`, or writes it there
/// under `SYNOD_BLESS`.
fn check_or_bless(name: &str, encoded: Vec<Vec<u8>>) {
    let path = golden(name);
    if std::env::var_os("SYNOD_BLESS").is_some() {
        std::fs::write(&path, frames(&encoded)).unwrap();
        return;
    }
    let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(unframe(&stored), encoded, "{name} no longer matches what this release writes");
}

fn read_golden(name: &str) -> Vec<Vec<u8>> {
    let path = golden(name);
    unframe(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Peer protocol 4 and the records before schema version 1: postcard,
/// as releases before this one wrote them. These files are never blessed
/// again: they are what a data directory and a peer of those releases hold.
mod v4 {
    use super::*;
    use synod_runtime::codec::decode_record;
    use synod_runtime::codec::legacy::{decode_message, encode_message, encode_record};

    #[test]
    fn postcard_messages_and_records_still_read() {
        check_or_bless("messages.v4.bin", messages().iter().map(encode_message).collect());
        check_or_bless("records.v4.bin", records().iter().map(encode_record).collect());
        let m: Vec<Message> = read_golden("messages.v4.bin").iter().map(|b| decode_message(b).unwrap()).collect();
        assert_eq!(m, messages());
        let r: Vec<Record> = read_golden("records.v4.bin").iter().map(|b| decode_record(b).unwrap()).collect();
        assert_eq!(r, records());
    }

    #[test]
    fn a_postcard_directory_answer_still_reads() {
        check_or_bless("cluster-info.v4.bin", vec![legacy::encode_cluster_info(&cluster_info())]);
        let info = decode_cluster_info(PeerFormat::V4, &read_golden("cluster-info.v4.bin")[0]).unwrap();
        assert_eq!(info, cluster_info());
    }

    use synod_runtime::codec::{decode_cluster_info, legacy, PeerFormat};
}

/// Schema version 1 (peer protocol 5): today's format.
mod v5 {
    use super::*;
    use synod_runtime::codec::{
        decode_cluster_info, decode_message, decode_record, encode_cluster_info, encode_message, encode_record,
        PeerFormat,
    };

    #[test]
    fn messages_records_and_directory_answers_match_their_golden_files() {
        check_or_bless("messages.v5.bin", messages().iter().map(encode_message).collect());
        check_or_bless("records.v5.bin", records().iter().map(encode_record).collect());
        check_or_bless("cluster-info.v5.bin", vec![encode_cluster_info(PeerFormat::V5, &cluster_info())]);
        let m: Vec<Message> = read_golden("messages.v5.bin").iter().map(|b| decode_message(b).unwrap()).collect();
        assert_eq!(m, messages());
        let r: Vec<Record> = read_golden("records.v5.bin").iter().map(|b| decode_record(b).unwrap()).collect();
        assert_eq!(r, records());
        let info = decode_cluster_info(PeerFormat::V5, &read_golden("cluster-info.v5.bin")[0]).unwrap();
        assert_eq!(info, cluster_info());
    }
}
