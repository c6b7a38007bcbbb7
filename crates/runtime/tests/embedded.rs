//! Three replicas in one process over an in-process network and in-memory
//! logs: the runtime driven through its transport and log traits, and its
//! cluster view published to subscribers.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use synod_paxos::{CommandId, Config, KvMachine, NodeId, StateMachine};
use synod_runtime::{ClusterView, Error, Network, Node, NodeConfig};
use synod_storage::{LogStore, MemLog};
use tokio::sync::watch;

/// Bounds every wait on a condition, so that a broken build fails instead
/// of hanging; the conditions are met in well under a second.
const PATIENCE: Duration = Duration::from_secs(30);

struct Cluster {
    network: Network,
    nodes: BTreeMap<NodeId, Node<KvMachine>>,
    logs: BTreeMap<NodeId, Arc<MemLog>>,
    dir: tempfile::TempDir,
}

/// Members 1 to 3 vote; a fourth starts as a learner.
fn config(id: NodeId, dir: &std::path::Path) -> NodeConfig {
    let mut protocol = Config::new(id, vec![1, 2, 3]);
    if id > 3 {
        protocol.learners = vec![id];
    }
    let mut c = NodeConfig::new(protocol, 5, BTreeMap::new(), dir.join(id.to_string()));
    c.tick = Duration::from_millis(10);
    c
}

impl Cluster {
    async fn start() -> Cluster {
        let mut c = Cluster {
            network: Network::new(),
            nodes: BTreeMap::new(),
            logs: BTreeMap::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        for id in 1..=3 {
            c.logs.insert(id, Arc::new(MemLog::new()));
            c.start_member(id).await;
        }
        c
    }

    /// Starts member `id` on its in-memory log (as it left it).
    async fn start_member(&mut self, id: NodeId) {
        let (transport, inbox) = self.network.join(id);
        let log = self.logs[&id].clone();
        let node =
            Node::start_with(config(id, self.dir.path()), KvMachine::default(), transport, inbox, log).await.unwrap();
        self.nodes.insert(id, node);
    }

    /// The member every member's view names as leader, once they agree.
    async fn agreed_leader(&self) -> NodeId {
        let mut views: Vec<watch::Receiver<ClusterView>> =
            self.nodes.values().map(|n| n.handle().subscribe()).collect();
        tokio::time::timeout(PATIENCE, async {
            loop {
                let leaders: Vec<Option<NodeId>> = views.iter().map(|v| v.borrow().leader).collect();
                if let Some(l) = leaders[0].filter(|_| leaders.iter().all(|x| *x == leaders[0])) {
                    return l;
                }
                // Wait for any member's view to change.
                let changes = views.iter_mut().map(|v| Box::pin(v.changed()));
                let _ = futures_select_all(changes).await;
            }
        })
        .await
        .expect("the members agree on a leader")
    }
}

/// Asks `h` (a leader) for `change` until it is chosen: a leader refuses
/// changes until it has taken over, and while another is under way. Tries
/// again each time `h`'s view changes.
async fn reconfigure(h: &synod_runtime::Handle<KvMachine>, change: synod_paxos::Change) {
    let mut view = h.subscribe();
    let mut refusals = 0;
    while let Err(e) = h.reconfigure(change.clone()).await {
        refusals += 1;
        assert!(refusals < 100, "{change:?} never chosen: {e}");
        let _ = tokio::time::timeout(Duration::from_millis(100), view.changed()).await;
    }
}

/// Completes when the first of `futures` does.
async fn futures_select_all<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_an_in_process_network_and_memory_logs_replicates_and_reads_linearizably() {
    let c = Cluster::start().await;
    let leader = c.agreed_leader().await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let h = c.nodes[&follower].handle();
    for i in 0..20 {
        h.propose(KvMachine::put("k", &i.to_string())).await.unwrap();
    }
    for (id, n) in &c.nodes {
        assert_eq!(n.handle().read("k").await.unwrap(), Some(Bytes::from("19")), "member {id}");
    }
    // The records went to the logs given, not to a write-ahead log.
    for (id, log) in &c.logs {
        assert!(log.durable_lsn() > 0, "member {id} logged nothing in its memory log");
        assert!(!c.dir.path().join(id.to_string()).join("wal").exists(), "member {id} opened a write-ahead log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_learn_of_a_new_leader_when_the_old_one_stops() {
    let mut c = Cluster::start().await;
    let old = c.agreed_leader().await;
    let old_ballot = c.nodes[&old].handle().view().ballot;
    let mut views: BTreeMap<NodeId, watch::Receiver<ClusterView>> =
        c.nodes.iter().filter(|(&id, _)| id != old).map(|(&id, n)| (id, n.handle().subscribe())).collect();
    let stopped = c.nodes.remove(&old).unwrap();
    stopped.shutdown().await.unwrap();
    for (id, view) in views.iter_mut() {
        let seen = tokio::time::timeout(PATIENCE, view.wait_for(|v| v.leader.is_some_and(|l| l != old)))
            .await
            .unwrap_or_else(|_| panic!("member {id} never heard of a new leader"))
            .expect("the replica runs")
            .clone();
        assert!(
            seen.ballot > old_ballot,
            "member {id}: the new leader's ballot {:?} is not above the old",
            seen.ballot
        );
        assert!(seen.voters.contains(&old), "the stopped member is still a voter");
    }
    // What a subscriber saw is what the replica answers when asked.
    let new = c.agreed_leader().await;
    assert_eq!(c.nodes[&new].handle().status().await.unwrap().leader, Some(new));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_follows_applied_writes() {
    let c = Cluster::start().await;
    c.agreed_leader().await;
    let h = c.nodes[&1].handle();
    let mut view = h.subscribe();
    h.propose(KvMachine::put("a", "1")).await.unwrap();
    let applied = h.status().await.unwrap().applied;
    let seen = tokio::time::timeout(PATIENCE, view.wait_for(|v| v.applied >= applied)).await.unwrap().unwrap().applied;
    assert!(seen >= applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_command_proposed_again_is_applied_once() {
    let c = Cluster::start().await;
    c.agreed_leader().await;
    let h = c.nodes[&2].handle();
    let first = h.command(CommandId { client: 7, seq: 1 }, KvMachine::put("k", "first"));
    assert_eq!(h.propose_command(first.clone()).await.unwrap(), None);
    h.propose(KvMachine::put("k", "second")).await.unwrap();
    // A retry of the first (as after a lost answer), at another member: it
    // gets the first's answer and does not overwrite the later write.
    let again = c.nodes[&3].handle().propose_command(first).await.unwrap();
    assert_eq!(again, None, "the retry is answered with the first's result");
    assert_eq!(h.read("k").await.unwrap(), Some(Bytes::from("second")));
    // The next command of that client is applied.
    let next = h.command(CommandId { client: 7, seq: 2 }, KvMachine::put("k", "third"));
    assert_eq!(h.propose_command(next).await.unwrap(), Some(Bytes::from("second")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_the_runtime_keeps_for_itself_is_refused() {
    let c = Cluster::start().await;
    let h = c.nodes[&1].handle();
    let cmd = h.command(CommandId { client: 1 << 63, seq: 1 }, KvMachine::put("k", "v"));
    assert!(matches!(h.propose_command(cmd).await, Err(Error::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_on_its_memory_log_recovers_what_it_logged() {
    let mut c = Cluster::start().await;
    c.agreed_leader().await;
    c.nodes[&1].handle().propose(KvMachine::put("k", "kept")).await.unwrap();
    let logged = c.logs[&3].durable_lsn();
    assert!(logged > 0);
    c.nodes.remove(&3).unwrap().shutdown().await.unwrap();
    // Cut off, it has only its log to recover from.
    c.network.isolate(3);
    c.start_member(3).await;
    let h = c.nodes[&3].handle();
    let recovered = h.with_state(|m| m.query(b"k")).await.unwrap();
    assert_eq!(recovered, Some(Bytes::from("kept")));
    assert!(c.logs[&3].durable_lsn() >= logged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_learn_of_a_learner_added_and_promoted() {
    let mut c = Cluster::start().await;
    let leader = c.agreed_leader().await;
    let mut views: Vec<watch::Receiver<ClusterView>> = c.nodes.values().map(|n| n.handle().subscribe()).collect();
    c.logs.insert(4, Arc::new(MemLog::new()));
    c.start_member(4).await;
    let h = c.nodes[&leader].handle();
    reconfigure(&h, synod_paxos::Change::AddLearner(4)).await;
    for view in views.iter_mut() {
        let learners = tokio::time::timeout(PATIENCE, view.wait_for(|v| v.learners.contains(&4)))
            .await
            .expect("the learner is published")
            .unwrap()
            .learners
            .clone();
        assert_eq!(learners, vec![4]);
    }
    // Promotion is refused until the learner is in sync.
    reconfigure(&h, synod_paxos::Change::PromoteLearner(4)).await;
    for view in views.iter_mut() {
        tokio::time::timeout(PATIENCE, view.wait_for(|v| v.voters.contains(&4) && v.learners.is_empty()))
            .await
            .expect("the promotion is published")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_learns_of_its_successor_once_reconnected() {
    let c = Cluster::start().await;
    let old = c.agreed_leader().await;
    let mut cut_off = c.nodes[&old].handle().subscribe();
    c.network.isolate(old);
    // It stops hearing a quorum, and so has no leader as etcd means it.
    tokio::time::timeout(PATIENCE, cut_off.wait_for(|v| !v.has_leader()))
        .await
        .expect("the cut-off member notices it hears no quorum")
        .unwrap();
    let others: Vec<NodeId> = (1..=3).filter(|&id| id != old).collect();
    for id in &others {
        let mut view = c.nodes[id].handle().subscribe();
        tokio::time::timeout(PATIENCE, view.wait_for(|v| v.leader.is_some_and(|l| l != old)))
            .await
            .unwrap_or_else(|_| panic!("member {id} never heard of a new leader"))
            .unwrap();
    }
    c.network.heal(old);
    let new = tokio::time::timeout(PATIENCE, cut_off.wait_for(|v| v.has_leader() && v.leader != Some(old)))
        .await
        .expect("the old leader learns of its successor")
        .unwrap()
        .leader;
    assert!(new.is_some_and(|l| others.contains(&l)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_and_cut_off_by_its_peers_sees_it_in_its_view() {
    let c = Cluster::start().await;
    let leader = c.agreed_leader().await;
    let gone = (1..=3).find(|&id| id != leader).unwrap();
    let mut view = c.nodes[&gone].handle().subscribe();
    assert!(!view.borrow().removed);
    reconfigure(&c.nodes[&leader].handle(), synod_paxos::Change::Remove(gone)).await;
    for (id, n) in &c.nodes {
        if *id != gone {
            n.handle().remove_peer(gone).await.unwrap();
        }
    }
    tokio::time::timeout(PATIENCE, view.wait_for(|v| v.removed)).await.expect("the removal is published").unwrap();
}
