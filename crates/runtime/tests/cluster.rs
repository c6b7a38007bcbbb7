//! Three replicas over real TCP and real write-ahead logs, in one process.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use synod_paxos::{Config, KvMachine, NodeId, TransferError};
use synod_runtime::{Error, Node, NodeConfig};
use tokio::net::TcpListener;

struct Cluster {
    nodes: BTreeMap<NodeId, Node<KvMachine>>,
    peers: BTreeMap<NodeId, SocketAddr>,
    _dir: tempfile::TempDir,
}

fn node_config(id: NodeId, peers: &BTreeMap<NodeId, SocketAddr>, dir: &Path) -> NodeConfig {
    let protocol = Config { snapshot_every: 20, ..Config::new(id, vec![1, 2, 3]) };
    let mut c = NodeConfig::new(protocol, 99, peers.clone(), dir.join(id.to_string()));
    c.tick = Duration::from_millis(20);
    c
}

async fn cluster() -> Cluster {
    cluster_with(|_| {}).await
}

/// Three nodes on loopback, each config adjusted by `prepare` before the
/// node starts.
async fn cluster_with(prepare: impl Fn(&mut NodeConfig)) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers: BTreeMap<NodeId, SocketAddr> = listeners.iter().map(|(&id, l)| (id, l.local_addr().unwrap())).collect();
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        let mut cfg = node_config(id, &peers, dir.path());
        prepare(&mut cfg);
        nodes.insert(id, Node::start_on(cfg, KvMachine::default(), l).await.unwrap());
    }
    Cluster { nodes, peers, _dir: dir }
}

async fn until_leader(c: &Cluster) -> NodeId {
    for _ in 0..500 {
        for n in c.nodes.values() {
            if let Ok(s) = n.handle().status().await {
                if s.leader == Some(s.id) {
                    return s.id;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no leader elected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_any_member_are_replicated_and_read_linearizably() {
    let c = cluster().await;
    let leader = until_leader(&c).await;
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let h = c.nodes[&follower].handle();
    for i in 0..50 {
        h.propose(KvMachine::put("k", &i.to_string())).await.unwrap();
    }
    for id in 1..=3 {
        let v = c.nodes[&id].handle().read("k").await.unwrap();
        assert_eq!(v, Some(Bytes::from("49")), "member {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_are_each_applied_once() {
    let c = cluster().await;
    until_leader(&c).await;
    let mut tasks = Vec::new();
    for t in 0..20 {
        let h = c.nodes[&((t % 3) + 1)].handle();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                h.propose(KvMachine::put(&format!("t{t}"), &i.to_string())).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let h = c.nodes[&1].handle();
    h.read("t0").await.unwrap();
    let applied = h.with_state(|s| s.applied).await.unwrap();
    assert_eq!(applied, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_recovers_its_log_from_disk() {
    let mut c = cluster().await;
    let leader = until_leader(&c).await;
    let h = c.nodes[&leader].handle();
    for i in 0..20 {
        h.propose(KvMachine::put("r", &i.to_string())).await.unwrap();
    }
    let victim = (1..=3).find(|&i| i != leader).unwrap();
    let n = c.nodes.remove(&victim).unwrap();
    n.shutdown().await.unwrap();
    let cfg = node_config(victim, &c.peers, c._dir.path());
    let n = Node::start(cfg, KvMachine::default()).await.unwrap();
    // Its own log already holds the chosen values.
    let before_catch_up = n.handle().with_state(|s| s.map.get(&b"r"[..]).cloned()).await.unwrap();
    assert!(before_catch_up.is_some());
    assert_eq!(n.handle().read("r").await.unwrap(), Some(Bytes::from("19")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let peers: BTreeMap<NodeId, SocketAddr> = (1..=3).map(|i| (i, SocketAddr::from(([127, 0, 0, 1], 0)))).collect();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = NodeConfig::new(Config::new(1, vec![1, 2, 3]), 5, peers.clone(), dir.path().to_path_buf());
    Node::start_on(cfg, KvMachine::default(), l).await.unwrap().shutdown().await.unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = NodeConfig::new(Config::new(2, vec![1, 2, 3]), 5, peers, dir.path().to_path_buf());
    match Node::start_on(cfg, KvMachine::default(), l).await {
        Err(Error::Storage(e)) => assert!(e.to_string().contains("member"), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started on another member's data"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_disk_was_wiped_rejoins_without_voting_until_caught_up() {
    let mut c = cluster().await;
    let leader = until_leader(&c).await;
    let h = c.nodes[&leader].handle();
    for i in 0..100 {
        h.propose(KvMachine::put(&format!("w{}", i % 10), &i.to_string())).await.unwrap();
    }
    let victim = (1..=3).find(|&i| i != leader).unwrap();
    c.nodes.remove(&victim).unwrap().shutdown().await.unwrap();
    std::fs::remove_dir_all(c._dir.path().join(victim.to_string())).unwrap();
    let mut cfg = node_config(victim, &c.peers, c._dir.path());
    cfg.join_existing = true;
    let n = Node::start(cfg, KvMachine::default()).await.unwrap();
    assert!(!n.handle().status().await.unwrap().voter, "a wiped member starts as a learner");
    for _ in 0..500 {
        if n.handle().status().await.unwrap().voter {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = n.handle().status().await.unwrap();
    assert!(s.voter, "caught up and voting again: {s:?}");
    let v = n.handle().with_state(|s| s.map.get(&b"w9"[..]).cloned()).await.unwrap();
    assert_eq!(v, Some(Bytes::from("99")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_compact_the_log_and_survive_a_restart() {
    let mut c = cluster().await;
    let leader = until_leader(&c).await;
    let h = c.nodes[&leader].handle();
    for i in 0..200 {
        h.propose(KvMachine::put(&format!("s{}", i % 10), &i.to_string())).await.unwrap();
    }
    let victim = (1..=3).find(|&i| i != leader).unwrap();
    // A follower learns the last commit from the next heartbeat: wait until it has applied it.
    let last = |n: &Node<KvMachine>| {
        let h = n.handle();
        async move { h.with_state(|s| s.map.get(&b"s9"[..]).cloned()).await.unwrap() }
    };
    for _ in 0..500 {
        if last(&c.nodes[&victim]).await == Some(Bytes::from("199")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = c.nodes[&victim].handle().status().await.unwrap();
    assert!(s.compacted > 0, "{s:?}");
    c.nodes.remove(&victim).unwrap().shutdown().await.unwrap();
    let n = Node::start(node_config(victim, &c.peers, c._dir.path()), KvMachine::default()).await.unwrap();
    // The restart restores the snapshot and replays the log after it; the last commit mark may
    // again arrive with the next heartbeat.
    let mut v = None;
    for _ in 0..500 {
        v = last(&n).await;
        if v == Some(Bytes::from("199")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(v, Some(Bytes::from("199")));
}

/// Three nodes seeded from a backup holding `restored = yes`, without
/// periodic snapshots; seeding a directory twice is refused.
async fn seeded_cluster() -> Cluster {
    use synod_paxos::{Command, StateMachine};
    let mut backup = KvMachine::default();
    backup.apply(1, &Command::new(1, 1, KvMachine::put("restored", "yes")));
    let state = backup.snapshot();
    cluster_with(|cfg| {
        cfg.protocol.snapshot_every = 0;
        synod_runtime::seed_data_dir(&cfg.data_dir, 99, cfg.protocol.id, &state).unwrap();
        let err = synod_runtime::seed_data_dir(&cfg.data_dir, 99, cfg.protocol.id, &state).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_seeded_from_a_state_starts_from_it_and_compacts_on_request() {
    let c = seeded_cluster().await;
    let leader = until_leader(&c).await;
    let h = c.nodes[&leader].handle();
    assert_eq!(h.read("restored").await.unwrap(), Some(Bytes::from("yes")));
    for i in 0..20 {
        h.propose(KvMachine::put("k", &i.to_string())).await.unwrap();
    }
    assert_eq!(h.status().await.unwrap().compacted, synod_runtime::seed::SEEDED_SLOT);
    let slot = h.snapshot().await.unwrap();
    assert!(slot > 0);
    let mut compacted = 0;
    for _ in 0..500 {
        compacted = h.status().await.unwrap().compacted;
        if compacted >= slot {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(compacted, slot, "the log is compacted up to the requested snapshot");
    for n in c.nodes.into_values() {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_a_seeded_cluster_that_loses_its_disk_rejoins_from_the_seeded_state() {
    let c = seeded_cluster().await;
    let leader = until_leader(&c).await;
    let h = c.nodes[&leader].handle();
    for i in 0..20 {
        h.propose(KvMachine::put("k", &i.to_string())).await.unwrap();
    }
    // A member that loses its disk rejoins from the restored state, not from
    // the slots after it applied to an empty store.
    let victim = (1..=3).find(|&i| i != leader).unwrap();
    let mut c = c;
    c.nodes.remove(&victim).unwrap().shutdown().await.unwrap();
    let victim_cfg = node_config(victim, &c.peers, c._dir.path());
    std::fs::remove_dir_all(&victim_cfg.data_dir).unwrap();
    let mut rejoin_cfg = victim_cfg;
    rejoin_cfg.join_existing = true;
    rejoin_cfg.protocol.snapshot_every = 0;
    c.nodes.insert(victim, Node::start(rejoin_cfg, KvMachine::default()).await.unwrap());
    let rejoined = c.nodes[&victim].handle();
    let mut got = None;
    for _ in 0..500 {
        got = rejoined.with_state(|s| (s.map.get(&b"restored"[..]).cloned(), s.map.get(&b"k"[..]).cloned())).await.ok();
        if got == Some((Some(Bytes::from("yes")), Some(Bytes::from("19")))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        got,
        Some((Some(Bytes::from("yes")), Some(Bytes::from("19")))),
        "the rejoined member has the restored state"
    );
    for n in c.nodes.into_values() {
        n.shutdown().await.unwrap();
    }
}

/// Retries a membership change at whichever member leads until it is
/// chosen (a learner may need a moment to be in sync before promotion), as
/// a real client does: an attempt that timed out or was interrupted may
/// still have been chosen, so a retry refused because the change is
/// already in force (`UnknownMember` for a removal done) means it is done.
async fn change(c: &Cluster, change: synod_paxos::Change) {
    let mut last = None;
    for _ in 0..300 {
        let leader = until_leader(c).await;
        let handle = c.nodes[&leader].handle();
        match handle.reconfigure(change.clone()).await {
            Ok(_) => return,
            Err(e) => {
                if let Ok(st) = handle.status().await {
                    let (voters, learners) = st.latest();
                    if change.in_force(&voters, &learners) {
                        return;
                    }
                }
                last = Some(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{change:?} never chosen: {last:?}");
}

/// Waits until every running member's configuration in force has `voters`.
async fn until_voters(c: &Cluster, voters: &[NodeId]) {
    for _ in 0..500 {
        let mut all = true;
        for n in c.nodes.values() {
            all &= n.handle().status().await.is_ok_and(|s| s.voters == voters);
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the members never all had voters {voters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_added_as_learner_promoted_and_an_old_one_removed() {
    use synod_paxos::Change;
    let mut c = cluster().await;
    let leader = until_leader(&c).await;
    for i in 0..100 {
        c.nodes[&leader].handle().propose(KvMachine::put(&format!("a{i}"), "x")).await.unwrap();
    }
    // Node 4 starts as a learner of the cluster {1, 2, 3}; every member is
    // told its address before the change.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    for n in c.nodes.values() {
        n.handle().set_peer(4, addr).await.unwrap();
    }
    c.peers.insert(4, addr);
    let mut cfg = node_config(4, &c.peers, c._dir.path());
    cfg.protocol.learners = vec![4];
    let new = Node::start_on(cfg, KvMachine::default(), listener).await.unwrap();
    c.nodes.insert(4, new);
    change(&c, Change::AddLearner(4)).await;
    let learner = c.nodes[&4].handle();
    // The learner may install a snapshot holding a99 before it learns the
    // slot that lists it: wait for both.
    for _ in 0..500 {
        let listed = learner.status().await.unwrap().members.contains(&4);
        if listed && learner.with_state(|s| s.map.get(&b"a99"[..]).cloned()).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = learner.status().await.unwrap();
    assert!(!s.voter && s.members.contains(&4), "a learner, listed: {s:?}");
    assert_eq!(learner.with_state(|s| s.map.len()).await.unwrap(), 100, "the learner caught up");

    change(&c, Change::PromoteLearner(4)).await;
    until_voters(&c, &[1, 2, 3, 4]).await;
    assert!(learner.status().await.unwrap().voter);

    // Remove one of the old voters (the leader itself, if it is one): the
    // cluster goes on with three.
    let gone = until_leader(&c).await.min(3);
    change(&c, Change::Remove(gone)).await;
    let survivors: Vec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&i| i != gone).collect();
    c.nodes.remove(&gone).unwrap().shutdown().await.unwrap();
    for n in c.nodes.values() {
        n.handle().remove_peer(gone).await.unwrap();
    }
    until_voters(&c, &survivors).await;
    let leader = until_leader(&c).await;
    c.nodes[&leader].handle().propose(KvMachine::put("after", "yes")).await.unwrap();
    for id in &survivors {
        assert_eq!(c.nodes[id].handle().read("after").await.unwrap(), Some(Bytes::from("yes")), "member {id}");
    }
}

/// Waits until every member names the same leader, and it leads (a node
/// elected first may be deposed by a higher bid in the first rounds).
async fn until_agreed_leader(c: &Cluster) -> NodeId {
    for _ in 0..500 {
        let mut named = Vec::new();
        for n in c.nodes.values() {
            named.push(n.handle().status().await.ok().and_then(|s| s.leader));
        }
        if let Some(Some(l)) = named.first().copied() {
            if named.iter().all(|&n| n == Some(l)) {
                return l;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the members never agreed on a leader");
}

/// Waits until the members agree on a leader that stays the same over a
/// few election rounds (right after start-up, a node with a higher ballot
/// that connects late still takes over).
async fn until_settled_leader(c: &Cluster) -> NodeId {
    let mut l = until_agreed_leader(c).await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let now = until_agreed_leader(c).await;
        if now == l {
            return l;
        }
        l = now;
    }
    panic!("leadership never settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_a_follower_under_writes_and_nothing_acknowledged_is_lost() {
    let c = cluster().await;
    let first = until_settled_leader(&c).await;
    // A writer at the (first) leader: what it proposes during the transfer
    // waits there and goes to the new leader.
    let writer = c.nodes[&first].handle();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut acked = Vec::new();
        for i in 0.. {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            match writer.propose(KvMachine::put(&format!("w{i}"), &i.to_string())).await {
                Ok(_) => acked.push(i),
                Err(Error::Stopped) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        acked
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // (Right after start-up a node with a higher ballot may still take
    // over: ask again whoever leads then, as an etcd client would.)
    let (mut old, mut to) = (first, 0);
    for attempt in 0.. {
        to = (1..=3).find(|&i| i != old).unwrap();
        match c.nodes[&old].handle().transfer_leadership(to).await {
            Ok(()) => break,
            Err(Error::Transfer(TransferError::NotLeader { .. })) if attempt < 20 => {
                old = until_agreed_leader(&c).await;
            }
            Err(e) => panic!("transfer from {old} to {to}: {e}"),
        }
    }
    let s = c.nodes[&to].handle().status().await.unwrap();
    assert_eq!(s.leader, Some(to), "the target leads: {s:?}");
    assert_eq!(c.nodes[&old].handle().status().await.unwrap().leader, Some(to));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_tx.send(());
    let acked = task.await.unwrap();
    assert!(acked.len() > 5, "writes went on: {} acknowledged", acked.len());
    // Still the same leader: the old one did not bid back.
    assert_eq!(until_agreed_leader(&c).await, to);
    let h = c.nodes[&to].handle();
    h.propose(KvMachine::put("after", "yes")).await.unwrap();
    for i in acked {
        let v = h.read(format!("w{i}")).await.unwrap();
        assert_eq!(v, Some(Bytes::from(i.to_string())), "acknowledged write w{i}");
    }
    for id in 1..=3 {
        assert_eq!(c.nodes[&id].handle().read("after").await.unwrap(), Some(Bytes::from("yes")), "member {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfers_to_non_members_and_learners_are_refused() {
    use synod_paxos::{Change, ReconfigError};
    let c = cluster().await;
    let leader = until_settled_leader(&c).await;
    let h = c.nodes[&leader].handle();
    match h.transfer_leadership(9).await {
        Err(Error::Transfer(TransferError::BadTransferee(9))) => {}
        other => panic!("a non-member: {other:?}"),
    }
    // A learner (it need not be running to be listed). A change interrupted
    // by a leader change may still be chosen: then it is already done.
    for attempt in 0.. {
        let leader = until_agreed_leader(&c).await;
        match c.nodes[&leader].handle().reconfigure(Change::AddLearner(4)).await {
            Ok(_) | Err(Error::Reconfig(ReconfigError::AlreadyMember(4))) => break,
            Err(e) if attempt < 100 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("AddLearner(4): {e}"),
        }
    }
    let leader = until_settled_leader(&c).await;
    let h = c.nodes[&leader].handle();
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    match h.transfer_leadership(4).await {
        Err(e @ Error::Transfer(TransferError::BadTransferee(4))) => {
            assert_eq!(e.to_string(), "etcdserver: bad leader transferee");
        }
        other => panic!("a learner: {other:?}"),
    }
    match c.nodes[&follower].handle().transfer_leadership(leader).await {
        Err(Error::Transfer(TransferError::NotLeader { leader: Some(l) })) => assert_eq!(l, leader),
        other => panic!("at a follower: {other:?}"),
    }
    h.transfer_leadership(leader).await.unwrap();
    assert_eq!(until_agreed_leader(&c).await, leader, "a transfer to itself changes nothing");
    assert!(c.nodes[&leader].handle().status().await.unwrap().leader == Some(leader));
}

/// A stranger who knows the cluster id opens each member's peer port,
/// claims to be another member, and sends a Prepare whose round leaves no
/// ballot above it. Every member refuses it, and the cluster still
/// accepts writes, before and after a restart of every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_prepare_with_an_exhausted_round_on_the_peer_port_is_refused() {
    use synod_paxos::{Ballot, Message};
    use synod_runtime::codec::encode_message;
    use synod_runtime::transport::peer_hello;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let c = cluster().await;
    until_leader(&c).await;
    for round in [u64::MAX, u64::MAX - 1] {
        for (&to, &addr) in &c.peers {
            let claimed = if to == 2 { 1 } else { 2 };
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(&peer_hello(99, claimed, to)).await.unwrap();
            let mut status = [9u8; 1];
            s.read_exact(&mut status).await.unwrap();
            assert_eq!(status[0], 0, "the hello claiming member {claimed} is accepted");
            let prepare = Message::Prepare { ballot: Ballot::new(round, claimed), from_slot: 1, handoff: None };
            let body = encode_message(&prepare);
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            s.write_all(&frame).await.unwrap();
            s.shutdown().await.unwrap();
        }
    }
    // Wait until every member has handled both forgeries.
    for id in 1..=3 {
        let h = c.nodes[&id].handle();
        let mut waited = 0;
        while h.status().await.unwrap().refused < 2 {
            waited += 1;
            assert!(waited < 1000, "member {id} did not refuse the forged Prepares");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let h = c.nodes[&1].handle();
    h.propose(KvMachine::put("after", "forgery")).await.unwrap();
    for id in 1..=3 {
        let s = c.nodes[&id].handle().status().await.unwrap();
        assert!(s.ballot.round < u64::MAX - 1, "member {id} is at ballot {:?}", s.ballot);
    }
    // Restart every member: nothing forged is in their logs.
    let Cluster { nodes, peers, _dir } = c;
    for (_, n) in nodes {
        n.shutdown().await.unwrap();
    }
    let mut nodes = BTreeMap::new();
    for (&id, &addr) in &peers {
        let l = bind_again(addr).await;
        nodes.insert(id, Node::start_on(node_config(id, &peers, _dir.path()), KvMachine::default(), l).await.unwrap());
    }
    let c = Cluster { nodes, peers, _dir };
    until_leader(&c).await;
    c.nodes[&2].handle().propose(KvMachine::put("after", "restart")).await.unwrap();
    for id in 1..=3 {
        let s = c.nodes[&id].handle().status().await.unwrap();
        assert!(s.ballot.round < u64::MAX - 1, "member {id} came back at ballot {:?}", s.ballot);
    }
}

/// Bind `addr` again once the member that held it has let it go.
async fn bind_again(addr: SocketAddr) -> TcpListener {
    for _ in 0..500 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} stayed bound");
}

/// A key-value machine with a broken invariant: applying `boom` panics.
#[derive(Default)]
struct Fragile(KvMachine);

impl synod_paxos::StateMachine for Fragile {
    type Output = Option<Bytes>;

    fn apply(&mut self, slot: synod_paxos::Slot, command: &synod_paxos::Command) -> Self::Output {
        assert!(&command.payload[..] != b"boom", "the state machine's invariant broke at slot {slot}");
        self.0.apply(slot, command)
    }

    fn query(&self, query: &[u8]) -> Self::Output {
        self.0.query(query)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), synod_paxos::SnapshotError> {
        self.0.restore(snapshot)
    }
}

/// One member on loopback in `dir`.
async fn single(dir: &Path) -> Result<Node<Fragile>, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = [(1, listener.local_addr().unwrap())].into();
    let mut cfg = NodeConfig::new(Config::new(1, vec![1]), 7, peers, dir.to_path_buf());
    cfg.tick = Duration::from_millis(10);
    Node::start_on(cfg, Fragile::default(), listener).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_task_panics_reports_that_it_stopped_and_frees_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("1");
    let mut node = single(&dir).await.unwrap();
    let handle = node.handle();
    // A single member leads by itself once elected.
    let mut put = Err(Error::Timeout);
    for _ in 0..500 {
        put = handle.propose(KvMachine::put("k", "v")).await;
        if put.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    put.unwrap();
    let boom = tokio::spawn(async move { handle.propose(Bytes::from_static(b"boom")).await });
    let stopped = tokio::time::timeout(Duration::from_secs(20), node.stopped()).await.expect("the panic reported");
    match stopped {
        Err(Error::Crashed(why)) => assert!(why.contains("panic"), "{why}"),
        other => panic!("a panicked replica reported {other:?}"),
    }
    assert!(boom.await.unwrap().is_err(), "the proposal that panicked the replica succeeded");
    assert!(node.handle().status().await.is_err(), "a dead replica answered");
    // The lock died with the task: the directory can be used again (a
    // restart would only replay the command that breaks the machine).
    synod_runtime::lock_data_dir(&dir).expect("the directory is free once the replica died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_serves_one_node_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("1");
    let first = single(&dir).await.unwrap();
    match single(&dir).await {
        Err(Error::Storage(e @ synod_storage::Error::Locked { .. })) => {
            assert!(e.to_string().contains(&dir.display().to_string()), "{e}")
        }
        Err(e) => panic!("a second node on a directory in use failed otherwise: {e}"),
        Ok(_) => panic!("a second node started on a directory in use"),
    }
    first.shutdown().await.unwrap();
    single(&dir).await.expect("the directory is free after shutdown").shutdown().await.unwrap();
}

/// One value of metric `name` in `registry` (the first series; a
/// histogram's sample count).
fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    let family = registry.gather().into_iter().find(|f| f.name() == name);
    let family = family.unwrap_or_else(|| panic!("{name} is not registered"));
    let Some(m) = family.get_metric().first() else { return 0.0 };
    match family.get_field_type() {
        prometheus::proto::MetricType::COUNTER => m.get_counter().get_value(),
        prometheus::proto::MetricType::GAUGE => m.get_gauge().get_value(),
        prometheus::proto::MetricType::HISTOGRAM => m.get_histogram().get_sample_count() as f64,
        other => panic!("{name} is a {other:?}"),
    }
}

/// The sum of [`metric`] over every member.
fn total(registries: &[prometheus::Registry], name: &str) -> f64 {
    registries.iter().map(|r| metric(r, name)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_member_counts_its_fsyncs_commits_peers_and_leadership() {
    let metrics = std::sync::Mutex::new(Vec::new());
    let c = cluster_with(|cfg| metrics.lock().unwrap().push(cfg.metrics.clone())).await;
    let registries: Vec<prometheus::Registry> = metrics
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|m| {
            let r = prometheus::Registry::new();
            m.register(&r).unwrap();
            r
        })
        .collect();
    until_leader(&c).await;
    // Proposals made at member 1, whoever leads.
    let at_1 = &registries[0];
    let fsyncs = metric(at_1, "etcd_disk_wal_fsync_duration_seconds");
    let committed = metric(at_1, "etcd_server_proposals_committed_total");
    let h = c.nodes[&1].handle();
    for i in 0..20 {
        h.propose(KvMachine::put("k", &i.to_string())).await.unwrap();
    }
    // Gauges are sampled once a tick.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(metric(at_1, "etcd_disk_wal_fsync_duration_seconds") > fsyncs, "fsyncs timed");
    assert!(metric(at_1, "synod_wal_fsync_records") > 0.0);
    assert!(metric(at_1, "etcd_server_proposals_committed_total") >= committed + 20.0, "commit index moved");
    assert!(metric(at_1, "etcd_server_proposals_applied_total") >= committed + 20.0);
    assert_eq!(metric(at_1, "synod_proposal_duration_seconds"), 20.0, "every proposal timed");
    assert_eq!(metric(at_1, "etcd_server_proposals_failed_total"), 0.0);
    let batched: f64 = registries
        .iter()
        .map(|r| {
            let f = r.gather().into_iter().find(|f| f.name() == "synod_batch_size_commands").unwrap();
            f.get_metric()[0].get_histogram().get_sample_sum()
        })
        .sum();
    assert!(batched >= 20.0, "every command counted in its slot's batch: {batched}");
    assert!(total(&registries, "synod_phase1_rounds_started_total") >= 1.0);

    let leader = until_settled_leader(&c).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (i, r) in registries.iter().enumerate() {
        let id = i as NodeId + 1;
        assert_eq!(metric(r, "etcd_server_has_leader"), 1.0, "member {id}");
        assert_eq!(metric(r, "etcd_server_is_leader"), (id == leader) as u8 as f64, "member {id}, leader {leader}");
        assert!(metric(r, "etcd_server_leader_changes_seen_total") >= 1.0, "member {id}");
        assert!(metric(r, "etcd_network_peer_sent_bytes_total") > 0.0, "member {id}");
        assert!(metric(r, "etcd_network_peer_received_bytes_total") > 0.0, "member {id}");
        assert!(metric(r, "synod_ballot_round") >= 1.0, "member {id}");
        // Pings go out every heartbeat; their answers time the round trips.
        assert!(metric(r, "etcd_network_peer_round_trip_time_seconds") > 0.0, "member {id}");
    }
}
