//! Multi-Paxos replicas in an in-process cluster with a perfect network and
//! instant storage: the happy paths, stated as properties. The simulator
//! (crate synod-sim) covers faults.

use bytes::Bytes;
use synod_paxos::local::LocalCluster;
use synod_paxos::{ClientError, Command, Config, Input, KvMachine, NodeId};

fn cluster(n: u64) -> LocalCluster<KvMachine> {
    let mut c = LocalCluster::new(n, Config::new, KvMachine::default);
    c.tick(40);
    c
}

fn put(client: u64, seq: u64, k: &str, v: &str) -> Command {
    Command::new(client, seq, KvMachine::put(k, v))
}

fn follower(c: &LocalCluster<KvMachine>, n: u64) -> NodeId {
    let l = c.leader().unwrap();
    (1..=n).find(|&i| i != l).unwrap()
}

#[test]
fn a_leader_is_elected_and_commands_are_chosen_everywhere() {
    let mut c = cluster(3);
    let l = c.leader().expect("a leader after a few election rounds");
    for seq in 1..=10 {
        c.step(l, Input::Propose(put(7, seq, "k", &seq.to_string())));
    }
    c.tick(5);
    assert_eq!(c.responses.len(), 10, "every proposal answered");
    for id in 1..=3 {
        assert_eq!(c.node(id).state_machine().map.get(&b"k"[..]).unwrap(), &Bytes::from("10"));
    }
}

#[test]
fn many_proposals_share_one_slot_when_batched() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    let before = c.node(l).commit_index();
    c.propose_all(l, (1..=1000).map(|s| put(1, s, "k", "v")));
    c.tick(3);
    assert_eq!(c.responses.len(), 1000);
    assert!(c.node(l).commit_index() - before <= 3, "1000 commands took a handful of slots");
}

#[test]
fn proposals_to_a_follower_are_forwarded_and_answered_there() {
    let mut c = cluster(3);
    let f = follower(&c, 3);
    c.step(f, Input::Propose(put(1, 1, "a", "1")));
    c.tick(3);
    assert!(c.responses.iter().any(|(at, r)| *at == f && r.result == Ok(None)), "{:?}", c.responses);
}

#[test]
fn a_retried_command_is_applied_once() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    c.step(l, Input::Propose(put(1, 1, "a", "1")));
    c.step(l, Input::Propose(put(1, 1, "a", "1")));
    c.step(l, Input::Propose(put(1, 2, "a", "2")));
    c.step(l, Input::Propose(put(1, 1, "a", "1")));
    c.tick(5);
    for id in 1..=3 {
        let sm = c.node(id).state_machine();
        assert_eq!(sm.applied, 2, "node {id} applied each command once");
        assert_eq!(sm.map.get(&b"a"[..]).unwrap(), &Bytes::from("2"));
    }
}

/// Retries of a command the leader still holds (queued, or in a slot not yet
/// chosen) take no slot of their own: under load each client timeout would
/// otherwise add a duplicate to the queue it waits in (found by swarm testing,
/// `synod-sim --swarm`, with one command per slot).
#[test]
fn retries_of_a_command_in_flight_take_no_slot() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    let f = follower(&c, 3);
    let before = c.node(l).log().last_slot();
    c.step(l, Input::Propose(put(1, 1, "a", "1")));
    // In flight, not yet chosen: retried at the leader and through a follower.
    c.step(l, Input::Propose(put(1, 1, "a", "1")));
    c.step(f, Input::Propose(put(1, 1, "a", "1")));
    c.tick(5);
    let slots: Vec<_> = c
        .node(l)
        .log()
        .iter_from(before + 1)
        .filter(|(_, e)| e.value.commands().iter().any(|cmd| cmd.id.client == 1))
        .map(|(s, _)| s)
        .collect();
    assert_eq!(slots.len(), 1, "one slot holds the command: {slots:?}");
    // Every replica that took a copy answered it.
    for at in [l, f] {
        assert!(c.responses.iter().any(|(n, r)| *n == at && r.result == Ok(None)), "{at} answered: {:?}", c.responses);
    }
}

#[test]
fn linearizable_reads_are_served_by_the_leader_and_by_followers_through_a_read_index() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    c.step(l, Input::Propose(put(1, 1, "a", "x")));
    c.tick(3);
    c.step(l, Input::Read { id: 9, query: Bytes::from("a") });
    c.tick(2);
    assert!(c.reads.iter().any(|(at, r)| *at == l && r.id == 9 && r.result == Ok(Some(Bytes::from("x")))));
    let f = follower(&c, 3);
    c.step(f, Input::Read { id: 10, query: Bytes::from("a") });
    c.tick(2);
    assert!(c.reads.iter().any(|(at, r)| *at == f && r.id == 10 && r.result == Ok(Some(Bytes::from("x")))));
}

#[test]
fn a_read_made_before_any_leader_is_known_is_answered_once_one_is() {
    let mut c: LocalCluster<KvMachine> = LocalCluster::new(3, Config::new, KvMachine::default);
    for id in 1..=3 {
        c.step(id, Input::Read { id, query: Bytes::from("a") });
    }
    assert!(c.reads.is_empty());
    c.tick(40);
    assert_eq!(c.reads.len(), 3, "{:?}", c.reads);
    assert!(c.reads.iter().all(|(_, r)| r.result == Ok(None)), "{:?}", c.reads);
}

#[test]
fn a_read_with_no_leader_in_sight_is_refused_after_a_while() {
    let mut c: LocalCluster<KvMachine> = LocalCluster::new(3, Config::new, KvMachine::default);
    c.isolated = vec![2, 3];
    c.step(1, Input::Read { id: 1, query: Bytes::from("a") });
    c.tick(40);
    assert!(matches!(c.reads[0].1.result, Err(ClientError::NotLeader { leader: None })));
}

#[test]
fn reads_without_a_lease_wait_for_a_quorum_to_confirm_the_leader() {
    let mut c = LocalCluster::new(3, |id, m| Config { lease_ticks: 0, ..Config::new(id, m) }, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    assert!(!c.node(l).holds_lease());
    c.step(l, Input::Read { id: 1, query: Bytes::from("a") });
    assert!(c.reads.is_empty(), "not answered before a heartbeat round");
    c.deliver_all();
    assert_eq!(c.reads.len(), 1, "answered once a quorum acknowledged");
}

#[test]
fn a_leader_cut_off_from_its_quorum_answers_no_reads() {
    let mut c = LocalCluster::new(3, |id, m| Config { lease_ticks: 0, ..Config::new(id, m) }, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    c.isolated.push(l);
    c.step(l, Input::Read { id: 1, query: Bytes::from("a") });
    c.tick(5);
    assert!(c.reads.is_empty(), "{:?}", c.reads);
}

#[test]
fn chosen_values_survive_the_leader_crashing() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    for seq in 1..=5 {
        c.step(l, Input::Propose(put(1, seq, "k", &format!("v{seq}"))));
    }
    c.tick(3);
    let before = c.node(l).commit_index();
    c.isolated.push(l);
    c.tick(60);
    let l2 = c.leader().expect("a new leader");
    assert_ne!(l2, l);
    c.step(l2, Input::Propose(put(2, 1, "k2", "after")));
    c.tick(5);
    c.isolated.clear();
    c.crash_and_recover(l, Config::new(l, vec![1, 2, 3]), KvMachine::default());
    c.tick(60);
    for id in 1..=3 {
        let sm = c.node(id).state_machine();
        assert_eq!(sm.map.get(&b"k"[..]).unwrap(), &Bytes::from("v5"), "node {id}");
        assert_eq!(sm.map.get(&b"k2"[..]).unwrap(), &Bytes::from("after"), "node {id}");
        assert!(c.node(id).commit_index() > before);
    }
}

#[test]
fn a_recovered_replica_keeps_its_promise_and_never_reuses_a_ballot() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    let ballot = c.node(l).leader_ballot().unwrap();
    let promised = c.node(l).promised();
    c.crash_and_recover(l, Config::new(l, vec![1, 2, 3]), KvMachine::default());
    assert_eq!(c.node(l).promised(), promised);
    c.tick(80);
    if let Some(b) = c.node(l).leader_ballot() {
        assert!(b > ballot, "led again with {b}, had {ballot}");
    }
}

#[test]
fn snapshots_bound_the_log_and_a_restarted_replica_recovers_from_one() {
    let cfg = |id, m| Config { snapshot_every: 10, ..Config::new(id, m) };
    let mut c = LocalCluster::new(3, cfg, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    for seq in 1..=200 {
        c.step(l, Input::Propose(put(1, seq, &format!("k{}", seq % 7), &seq.to_string())));
        c.deliver_all();
    }
    c.tick(3);
    for id in 1..=3 {
        assert!(c.node(id).log().compacted() >= 190, "node {id} compacted to {}", c.node(id).log().compacted());
        assert!(c.disk_records(id) < 100, "node {id} keeps {} records", c.disk_records(id));
    }
    let f = (1..=3).find(|&i| i != l).unwrap();
    let before = c.node(f).state_machine().clone();
    c.crash_and_recover(f, cfg(f, vec![1, 2, 3]), KvMachine::default());
    assert_eq!(c.node(f).state_machine().map, before.map);
}

#[test]
fn an_operator_snapshot_compacts_the_log_at_once_and_recovers() {
    // Never a periodic snapshot: only the one asked for.
    let cfg = |id, m| Config { snapshot_every: 0, ..Config::new(id, m) };
    let mut c = LocalCluster::new(3, cfg, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    for seq in 1..=50 {
        c.step(l, Input::Propose(put(1, seq, "k", &seq.to_string())));
        c.deliver_all();
    }
    c.tick(3);
    let f = (1..=3).find(|&i| i != l).unwrap();
    assert_eq!(c.node(f).log().compacted(), 0);
    let records = c.disk_records(f);
    c.step(f, Input::TakeSnapshot);
    c.tick(3);
    let applied = c.node(f).applied_index();
    assert_eq!(c.node(f).log().compacted(), applied, "compacted up to everything applied");
    assert!(c.disk_records(f) < records, "{} records left of {records}", c.disk_records(f));
    // Asking again with nothing new applied changes nothing.
    c.step(f, Input::TakeSnapshot);
    c.tick(3);
    assert_eq!(c.node(f).log().compacted(), applied);
    let before = c.node(f).state_machine().clone();
    c.crash_and_recover(f, cfg(f, vec![1, 2, 3]), KvMachine::default());
    assert_eq!(c.node(f).state_machine().map, before.map);
}

#[test]
fn a_replica_behind_the_compaction_point_catches_up_from_a_snapshot() {
    let cfg = |id, m| Config { snapshot_every: 10, snapshot_chunk: 64, ..Config::new(id, m) };
    let mut c = LocalCluster::new(3, cfg, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    let f = (1..=3).find(|&i| i != l).unwrap();
    c.isolated.push(f);
    for seq in 1..=100 {
        c.step(l, Input::Propose(put(1, seq, &format!("key{seq}"), "some value")));
        c.deliver_all();
    }
    c.tick(3);
    assert!(c.node(l).log().compacted() > c.node(f).commit_index());
    c.isolated.clear();
    c.tick(30);
    assert_eq!(c.node(f).state_machine().map, c.node(l).state_machine().map);
    assert_eq!(c.node(f).commit_index(), c.node(l).commit_index());
}

#[test]
fn a_snapshot_transfer_keeps_one_request_in_flight_whatever_arrives_twice() {
    use synod_paxos::{Ballot, Message};
    let mut r = synod_paxos::Replica::new(Config::new(3, vec![1, 2, 3]), KvMachine::default()).unwrap();
    let chunk =
        |offset: u64| Message::SnapshotChunk { slot: 50, offset, total: 300, data: Bytes::from(vec![0u8; 100]) };
    let mut step = |from: NodeId, msg: Message| {
        r.step(Input::Message { from, msg });
        r.output().send
    };
    let requests = |sent: &[(NodeId, Message)]| {
        sent.iter().filter(|(_, m)| matches!(m, Message::SnapshotRequest { .. } | Message::CatchUp { .. })).count()
    };
    // The first chunk asks for the next one.
    let sent = step(1, chunk(0));
    assert!(matches!(sent.as_slice(), [(1, Message::SnapshotRequest { slot: 50, offset: 100 })]), "{sent:?}");
    // A duplicate, another sender's first chunk, and a heartbeat showing
    // the commit index far ahead send nothing more: the request is out.
    assert_eq!(requests(&step(1, chunk(0))), 0, "a duplicate chunk asks again");
    assert_eq!(requests(&step(2, chunk(0))), 0, "another sender's chunk restarts the transfer");
    let heartbeat = Message::Heartbeat { ballot: Ballot::new(1, 1), commit: 60, seq: 1, last_slot: 60 };
    assert_eq!(requests(&step(1, heartbeat)), 0, "catch-up is asked for during the transfer");
    // The transfer goes on from where it was.
    let sent = step(1, chunk(100));
    assert!(matches!(sent.as_slice(), [(1, Message::SnapshotRequest { slot: 50, offset: 200 })]), "{sent:?}");
}

#[test]
fn a_snapshot_transfer_whose_sender_died_is_taken_from_another_member() {
    // Found by swarm testing (seed 6136 on 5 nodes): asking the dead sender
    // again counted as progress, so the transfer never looked stalled when
    // another member's chunks came, and the learner waited for good.
    let cfg = |id, m| Config { snapshot_every: 10, snapshot_chunk: 64, ..Config::new(id, m) };
    let mut c = LocalCluster::new(3, cfg, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    for seq in 1..=30 {
        c.step(l, Input::Propose(put(1, seq, &format!("key{seq}"), "some value")));
        c.deliver_all();
    }
    c.tick(3);
    let snap = c.stored_snapshot(l).expect("the leader took a snapshot").clone();
    let total = snap.data.len() as u64;
    assert!(total > 128, "the snapshot spans several chunks");

    use synod_paxos::Message;
    let mut r = synod_paxos::Replica::new(cfg(3, vec![1, 2, 3]), KvMachine::default()).unwrap();
    let chunk = |offset: u64, len: u64| Message::SnapshotChunk {
        slot: snap.slot,
        offset,
        total,
        data: snap.data.slice(offset as usize..(offset + len).min(total) as usize),
    };
    // Node 1 sends the first chunk, then dies.
    r.step(Input::Message { from: 1, msg: chunk(0, 64) });
    r.output();
    for _ in 0..200 {
        r.step(Input::Tick);
        r.output();
    }
    // Node 2 answers a catch-up with the same snapshot from its start.
    r.step(Input::Message { from: 2, msg: chunk(0, 64) });
    let mut offset = 64;
    while offset < total {
        let sent = r.output().send;
        assert!(
            sent.iter()
                .any(|(to, m)| *to == 2 && matches!(m, Message::SnapshotRequest { offset: o, .. } if *o == offset)),
            "node 2 is asked for offset {offset}: {sent:?}"
        );
        r.step(Input::Message { from: 2, msg: chunk(offset, 64) });
        offset += 64;
    }
    assert_eq!(r.applied_index(), snap.slot, "the snapshot from node 2 was installed");
    let (got, leader) = (&r.state_machine().map, &c.node(l).state_machine().map);
    assert!(!got.is_empty() && got.iter().all(|(k, v)| leader.get(k) == Some(v)), "{got:?}");
}

/// Carries out a lone replica's output: records to `disk` (durable at
/// once), truncation; returns the snapshots it asks to store, unsaved.
fn pump(
    r: &mut synod_paxos::Replica<KvMachine>,
    disk: &mut Vec<(u64, synod_paxos::Record)>,
) -> Vec<synod_paxos::Snapshot> {
    let mut snapshots = Vec::new();
    loop {
        let out = r.output();
        if out.is_empty() {
            return snapshots;
        }
        let last = out.persist.last().map(|(l, _)| *l);
        disk.extend(out.persist);
        if let Some(before) = out.truncate_before {
            disk.retain(|(lsn, _)| *lsn >= before);
        }
        snapshots.extend(out.snapshot);
        if let Some(l) = last {
            r.step(Input::Durable(l));
        }
    }
}

#[test]
fn a_checkpoint_larger_than_a_message_is_written_as_several_records_and_recovers() {
    // (Issue 13: a log kept above the snapshot, for instance for a learner
    // being sent it, can hold more than one record of the log may.)
    let cfg = || Config {
        snapshot_every: 0,
        snapshot_chunk: 1024,
        max_batch_bytes: 4096,
        max_message_bytes: 8192,
        ..Config::new(1, vec![1])
    };
    let mut r = synod_paxos::Replica::new(cfg(), KvMachine::default()).unwrap();
    let mut disk = Vec::new();
    for _ in 0..100 {
        r.step(Input::Tick);
        pump(&mut r, &mut disk);
    }
    assert!(r.is_leader());
    let big = "v".repeat(1000);
    let mut seq = 0;
    let mut propose = |r: &mut synod_paxos::Replica<KvMachine>, disk: &mut Vec<_>, n: u64| {
        for _ in 0..n {
            seq += 1;
            r.step(Input::Propose(put(1, seq, &format!("key{seq}"), &big)));
            pump(r, disk);
        }
    };
    propose(&mut r, &mut disk, 10);
    r.step(Input::TakeSnapshot);
    let snap = pump(&mut r, &mut disk).pop().expect("a snapshot to store");
    // Thirty more slots, about 30 KB, are chosen before it is stored.
    propose(&mut r, &mut disk, 30);
    assert!(r.commit_index() >= snap.slot + 30);
    r.step(Input::SnapshotSaved(snap.slot));
    pump(&mut r, &mut disk);
    let checkpoints: Vec<usize> = disk
        .iter()
        .filter_map(|(_, rec)| match rec {
            synod_paxos::Record::Checkpoint { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert!(checkpoints.len() >= 4, "one record per message's worth of entries: {checkpoints:?}");
    assert!(checkpoints.iter().sum::<usize>() >= 30, "{checkpoints:?}");
    // The log before the first of them is gone, and recovery from the
    // snapshot and the rest gives the same state.
    assert!(matches!(disk.first(), Some((_, synod_paxos::Record::Checkpoint { .. }))), "{:?}", disk.first());
    let back = synod_paxos::Replica::recover(cfg(), KvMachine::default(), Some(snap), disk.clone()).unwrap();
    assert_eq!(back.commit_index(), r.commit_index());
    assert_eq!(back.state_machine().map, r.state_machine().map);
}

#[test]
fn each_output_counts_the_elections_batches_and_reads_behind_it() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    assert_eq!(c.stats(l).phase1_started, 1, "elected once");
    assert!((1..=3).filter(|&i| i != l).all(|i| c.stats(i).phase1_started == 0));
    let before = c.stats(l).batches.len();
    c.propose_all(l, (1..=1000).map(|s| put(1, s, "k", "v")));
    c.tick(3);
    let batches = &c.stats(l).batches[before..];
    assert_eq!(batches.iter().sum::<usize>(), 1000, "every command counted once, in its slot");
    assert!(batches.len() <= 3, "batched: {batches:?}");
    // With a lease the leader confirms reads by it, without one by a round.
    assert!(c.node(l).holds_lease());
    c.step(l, Input::Read { id: 1, query: Bytes::from("k") });
    c.tick(2);
    assert_eq!((c.stats(l).lease_reads, c.stats(l).read_index_reads), (1, 0));

    let mut c = LocalCluster::new(3, |id, m| Config { lease_ticks: 0, ..Config::new(id, m) }, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    c.step(l, Input::Read { id: 1, query: Bytes::from("a") });
    c.tick(2);
    assert_eq!((c.stats(l).lease_reads, c.stats(l).read_index_reads), (0, 1));
}

#[test]
fn a_snapshot_transfer_is_counted_once_by_its_sender_and_once_by_its_receiver() {
    let cfg = |id, m| Config { snapshot_every: 10, snapshot_chunk: 64, ..Config::new(id, m) };
    let mut c = LocalCluster::new(3, cfg, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    let f = (1..=3).find(|&i| i != l).unwrap();
    c.isolated.push(f);
    for seq in 1..=100 {
        c.step(l, Input::Propose(put(1, seq, &format!("key{seq}"), "some value")));
        c.deliver_all();
    }
    c.tick(3);
    c.isolated.clear();
    c.tick(30);
    assert_eq!(c.node(f).commit_index(), c.node(l).commit_index(), "caught up");
    let sent: u64 = (1..=3).map(|i| c.stats(i).snapshots_sent).sum();
    assert_eq!(sent, 1, "one transfer sent in full (in many chunks)");
    assert_eq!(c.stats(f).snapshots_received, 1);
}
