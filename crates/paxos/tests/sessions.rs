//! The duplicate-detection table is bounded: a client session unused for
//! `session_expiry_ticks` is forgotten, by a decision the leader puts in the
//! log, so every replica (and every snapshot) holds the same table. And
//! what peers forward to the leader is bounded like its own proposals.

use synod_paxos::local::LocalCluster;
use synod_paxos::{ClientError, Command, Config, Input, KvMachine, NodeId, SessionInfo, Value};

const EXPIRY: u64 = 400;
const IDLE: u64 = 1;
const BUSY: u64 = 2;

fn config(id: NodeId, members: Vec<NodeId>) -> Config {
    // (Ten-tick election rounds: the bound is the least allowed.)
    Config { session_expiry_ticks: EXPIRY, snapshot_every: 10, snapshot_chunk: 64, ..Config::new(id, members) }
}

fn put(client: u64, seq: u64) -> Command {
    Command::new(client, seq, KvMachine::put("k", &format!("{client}-{seq}")))
}

fn cluster() -> LocalCluster<KvMachine> {
    let mut c = LocalCluster::new(3, config, KvMachine::default);
    c.tick(40);
    c
}

/// A cluster that never compacts its log, to look for the decision in it.
fn uncompacted_cluster() -> LocalCluster<KvMachine> {
    let mut c = LocalCluster::new(3, |id, m| Config { snapshot_every: 0, ..config(id, m) }, KvMachine::default);
    c.tick(40);
    c
}

/// `rounds` ticks during which client `BUSY` writes every other tick.
fn keep_busy(c: &mut LocalCluster<KvMachine>, seq: &mut u64, rounds: u64) {
    for r in 0..rounds {
        if let Some(l) = c.leader().filter(|_| r % 2 == 0) {
            *seq += 1;
            c.step(l, Input::Propose(put(BUSY, *seq)));
        }
        c.tick(1);
    }
}

fn has(table: &[SessionInfo], client: u64) -> bool {
    table.iter().any(|s| s.client == client)
}

fn tables(c: &LocalCluster<KvMachine>) -> Vec<(u64, Vec<SessionInfo>)> {
    (1..=3).map(|id| (c.node(id).applied_index(), c.node(id).sessions())).collect()
}

fn assert_identical(c: &LocalCluster<KvMachine>) {
    let t = tables(c);
    assert!(t.windows(2).all(|w| w[0] == w[1]), "replicas differ: {t:?}");
}

#[test]
fn a_session_unused_past_the_bound_is_forgotten_on_every_replica() {
    let mut c = uncompacted_cluster();
    let l = c.leader().unwrap();
    c.step(l, Input::Propose(put(IDLE, 1)));
    c.tick(2);
    let mut seq = 0;
    // Idle for less than the bound: still recognised everywhere.
    keep_busy(&mut c, &mut seq, EXPIRY - 10);
    for id in 1..=3 {
        assert!(has(&c.node(id).sessions(), IDLE), "node {id} forgot a session idle for less than the bound");
    }
    // Past the bound (and its quarter of slack): gone everywhere, while a
    // busy client's session stays.
    keep_busy(&mut c, &mut seq, EXPIRY / 2);
    assert_identical(&c);
    let table = c.node(1).sessions();
    assert!(!has(&table, IDLE), "the idle session is still there: {table:?}");
    assert!(has(&table, BUSY), "the busy session was forgotten: {table:?}");
    // The decision is in the log.
    let log = c.node(l).log();
    assert!(log.iter_from(0).any(|(_, e)| matches!(e.value, Value::ExpireSessions { .. })));
}

#[test]
fn with_nothing_to_forget_no_expiry_is_proposed() {
    let mut c = uncompacted_cluster();
    let mut seq = 0;
    keep_busy(&mut c, &mut seq, 3 * EXPIRY);
    let l = c.leader().unwrap();
    let log = c.node(l).log();
    assert_eq!(log.compacted(), 0);
    assert!(!log.iter_from(0).any(|(_, e)| matches!(e.value, Value::ExpireSessions { .. })));
}

#[test]
fn a_retry_keeps_a_session_alive() {
    let mut c = cluster();
    let l = c.leader().unwrap();
    c.step(l, Input::Propose(put(IDLE, 1)));
    c.tick(2);
    let mut seq = 0;
    for _ in 0..4 {
        keep_busy(&mut c, &mut seq, EXPIRY / 2);
        // The same command again: recognised, applied once, and the client
        // counts as active.
        let l = c.leader().unwrap();
        c.step(l, Input::Propose(put(IDLE, 1)));
        c.tick(2);
    }
    assert_identical(&c);
    let table = c.node(1).sessions();
    assert!(table.iter().any(|s| s.client == IDLE && s.seq == 1), "{table:?}");
}

#[test]
fn snapshots_carry_the_session_table_and_replicas_restored_from_them_expire_alike() {
    let mut c = cluster();
    let l = c.leader().unwrap();
    let lagging = (1..=3).find(|&i| i != l).unwrap();
    c.step(l, Input::Propose(put(IDLE, 1)));
    c.tick(2);
    // One replica misses enough slots to need a snapshot.
    c.isolated.push(lagging);
    let mut seq = 0;
    keep_busy(&mut c, &mut seq, 40);
    let leader_snapshot = c.stored_snapshot(l).expect("the leader took a snapshot").slot;
    assert!(leader_snapshot > c.node(lagging).commit_index());
    c.isolated.clear();
    keep_busy(&mut c, &mut seq, 10);
    assert!(c.node(lagging).log().compacted() > 0, "the lagging replica caught up from a snapshot");
    assert_identical(&c);

    // A replica restarted from its snapshot and records has the same table.
    let other = (1..=3).find(|&i| i != l && i != lagging).unwrap();
    c.crash_and_recover(other, config(other, vec![1, 2, 3]), KvMachine::default());
    assert!(c.stored_snapshot(other).is_some());
    c.tick(2);
    assert_identical(&c);

    // And each forgets the idle session at the same slot.
    keep_busy(&mut c, &mut seq, EXPIRY + EXPIRY / 2);
    assert_identical(&c);
    assert!(!has(&c.node(1).sessions(), IDLE));
    assert!(has(&c.node(1).sessions(), BUSY));
}

#[test]
fn commands_forwarded_to_the_leader_count_against_its_pending_limit() {
    // (Issue 13.5, item 4: the leader bounds what peers forward by the same
    // `max_pending` as its own clients' proposals; a forwarding member's
    // clients retry what was dropped.)
    let cfg = |id, m| Config { max_pending: 10, ..config(id, m) };
    let mut c = LocalCluster::new(3, cfg, KvMachine::default);
    c.tick(40);
    let l = c.leader().unwrap();
    let f = (1..=3).find(|&i| i != l).unwrap();
    let before = c.node(l).sessions().len();
    let commands: Vec<Command> = (0..50).map(|i| put(100 + i, 1)).collect();
    c.step(l, Input::Message { from: f, msg: synod_paxos::Message::Forward { commands } });
    c.tick(5);
    assert_eq!(c.node(l).sessions().len() - before, 10, "only max_pending forwarded commands were taken");
}

fn value_of_k(c: &LocalCluster<KvMachine>, id: NodeId) -> Option<bytes::Bytes> {
    c.node(id).state_machine().map.get(&b"k"[..]).cloned()
}

#[test]
fn a_retry_made_before_its_session_expired_is_refused_not_applied_twice() {
    // Found by swarm testing (seeds 607 on 3 nodes, 1150 on 5): a put
    // whose answer was lost, retried (or still in flight) after its
    // client's session expired, was applied a second time, over a later
    // put to the same key.
    let mut c = cluster();
    let l = c.leader().unwrap();
    let first = put(IDLE, 1).with_origin(c.node(l).commit_index());
    c.step(l, Input::Propose(first.clone()));
    c.tick(2);
    assert_eq!(value_of_k(&c, l).as_deref(), Some(&b"1-1"[..]));
    // Another client overwrites the key and stays busy until the idle
    // session is forgotten (snapshots are taken on the way).
    let mut seq = 0;
    keep_busy(&mut c, &mut seq, 2 * EXPIRY);
    assert!(!has(&c.node(1).sessions(), IDLE), "the idle session was not forgotten");
    let later = value_of_k(&c, l);
    assert_eq!(later, Some(format!("{BUSY}-{seq}").into()));

    // A replica restarted from its snapshot knows the expiry too.
    let other = (1..=3).find(|&i| i != l).unwrap();
    assert!(c.node(other).log().compacted() > 0);
    c.crash_and_recover(other, config(other, vec![1, 2, 3]), KvMachine::default());
    c.tick(2);

    // The old command comes back (a retry, or a copy still in flight):
    // refused with SessionExpired on every replica, the key unchanged.
    c.responses.clear();
    let l = c.leader().unwrap();
    c.step(l, Input::Propose(first));
    c.tick(4);
    for id in 1..=3 {
        assert_eq!(value_of_k(&c, id), later, "node {id} applied the retry a second time");
    }
    let answers: Vec<_> = c.responses.iter().filter(|(_, r)| r.id.client == IDLE).map(|(_, r)| &r.result).collect();
    assert_eq!(answers, [&Err(ClientError::SessionExpired)]);
    assert!(!has(&c.node(1).sessions(), IDLE), "a refused command opened a session");

    // The same client's next command, made now, opens a new session and
    // is applied; the refused one stays refused behind it.
    let l = c.leader().unwrap();
    let next = put(IDLE, 2).with_origin(c.node(l).commit_index());
    c.step(l, Input::Propose(next));
    c.tick(4);
    assert_identical(&c);
    for id in 1..=3 {
        assert_eq!(value_of_k(&c, id).as_deref(), Some(&b"1-2"[..]), "node {id}");
    }
}
