//! Membership changes in an in-process cluster with a perfect network:
//! learners join and catch up, are promoted once in sync, voters are
//! removed, and the configuration survives restarts and snapshots. The
//! simulator (`synod-sim --reconfig`) covers them under faults.

use synod_paxos::local::LocalCluster;
use synod_paxos::{Change, Command, Config, Input, KvMachine, NodeId, ReconfigError, Replica};

/// α (the window) is small so that changes take effect after a few slots.
fn cfg(id: NodeId, members: Vec<NodeId>) -> Config {
    Config { max_inflight_slots: 4, snapshot_every: 20, ..Config::new(id, members) }
}

fn cluster(n: u64) -> LocalCluster<KvMachine> {
    let mut c = LocalCluster::new(n, cfg, KvMachine::default);
    c.tick(40);
    c
}

fn put(client: u64, seq: u64, k: &str, v: &str) -> Command {
    Command::new(client, seq, KvMachine::put(k, v))
}

/// Propose `n` commands one by one at the leader, so many slots fill
/// (waiting for a leader whenever there is none).
fn write(c: &mut LocalCluster<KvMachine>, client: u64, n: u64) {
    for seq in 1..=n {
        for _ in 0..20 {
            if c.leader().is_some() {
                break;
            }
            c.tick(5);
        }
        let l = c.leader().expect("a leader");
        c.step(l, Input::Propose(put(client, seq, &format!("k{seq}"), "v")));
        c.deliver_all();
    }
    c.tick(3);
}

fn reconfigure(c: &mut LocalCluster<KvMachine>, id: u64, change: Change) -> Result<u64, ReconfigError> {
    let l = c.leader().expect("a leader");
    c.step(l, Input::Reconfigure { id, change });
    c.tick(3);
    let (_, r) = c.reconfigs.iter().rev().find(|(_, r)| r.id == id).expect("the change was answered");
    r.result.clone()
}

/// Node `id`, started as a learner of the cluster `voters`.
fn learner(id: NodeId, voters: Vec<NodeId>) -> Replica<KvMachine> {
    Replica::new(Config { learners: vec![id], ..cfg(id, voters) }, KvMachine::default()).unwrap()
}

#[test]
fn a_learner_catches_up_is_promoted_and_then_votes() {
    let mut c = cluster(3);
    write(&mut c, 1, 30);
    c.add_node(learner(4, vec![1, 2, 3]));
    let slot = reconfigure(&mut c, 1, Change::AddLearner(4)).unwrap();
    write(&mut c, 2, 10);
    let l = c.leader().unwrap();
    assert!(slot > 30);
    assert_eq!(c.node(l).membership().learners, vec![4]);
    assert!(!c.node(4).membership().is_voter(4));
    assert_eq!(c.node(4).state_machine().map, c.node(l).state_machine().map, "the learner caught up");
    reconfigure(&mut c, 2, Change::PromoteLearner(4)).unwrap();
    write(&mut c, 3, 10);
    for id in 1..=4 {
        let m = c.node(id).membership();
        assert_eq!((m.voters.len(), m.q1, m.q2), (4, 3, 3), "node {id} sees four voters");
    }
    // (The new voter may take over leadership: election favours the
    // highest ballot among connected candidates.)
    c.tick(60);
    // With one of the old voters cut off, the new one makes the quorum.
    let l = c.leader().unwrap();
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&i| i != l && i != 4).collect();
    c.isolated.push(others[0]);
    let before = c.responses.len();
    write(&mut c, 4, 5);
    assert_eq!(c.responses.len(), before + 5, "three of four voters choose");
}

#[test]
fn a_learner_not_in_sync_is_not_promoted() {
    let mut c = cluster(3);
    write(&mut c, 1, 10);
    // Node 4 is added but never runs, so it never catches up.
    reconfigure(&mut c, 1, Change::AddLearner(4)).unwrap();
    write(&mut c, 2, 10);
    let err = reconfigure(&mut c, 2, Change::PromoteLearner(4)).unwrap_err();
    assert_eq!(err, ReconfigError::LearnerNotInSync(4));
    assert_eq!(err.to_string(), "can only promote a learner member which is in sync with leader");
    assert_eq!(
        reconfigure(&mut c, 3, Change::PromoteLearner(2)).unwrap_err(),
        ReconfigError::NotALearner(2),
        "voters are not learners"
    );
}

#[test]
fn a_change_that_leaves_no_reachable_quorum_is_refused() {
    let mut c = cluster(3);
    write(&mut c, 1, 5);
    let l = c.leader().unwrap();
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&i| i != l).collect();
    c.isolated.push(others[0]);
    c.tick(20);
    let l = c.leader().expect("the leader keeps its quorum");
    // Removing the other live voter leaves {leader, unreachable}: no quorum.
    let err = reconfigure(&mut c, 1, Change::Remove(others[1])).unwrap_err();
    assert!(matches!(err, ReconfigError::NoQuorumReachable { reachable: 1, needed: 2, .. }), "{err:?}");
    assert_eq!(c.node(l).membership().voters.len(), 3, "nothing changed");
}

#[test]
fn only_one_change_is_in_progress_at_a_time() {
    let mut c = cluster(3);
    write(&mut c, 1, 5);
    let l = c.leader().unwrap();
    c.step(l, Input::Reconfigure { id: 1, change: Change::AddLearner(4) });
    c.step(l, Input::Reconfigure { id: 2, change: Change::AddLearner(5) });
    c.tick(3);
    let second = c.reconfigs.iter().find(|(_, r)| r.id == 2).unwrap();
    assert_eq!(second.1.result, Err(ReconfigError::InProgress));
    // With no client traffic the leader fills the α slots after the change
    // with no-ops, so it comes into force and the next change is taken.
    c.tick(10);
    assert!(c.node(l).pending_membership().is_none());
    assert_eq!(c.node(l).membership().learners, vec![4]);
    assert!(reconfigure(&mut c, 4, Change::AddLearner(5)).is_ok());
}

#[test]
fn a_removed_leader_steps_down_and_the_rest_go_on() {
    let mut c = cluster(3);
    write(&mut c, 1, 5);
    let old = c.leader().unwrap();
    reconfigure(&mut c, 1, Change::Remove(old)).unwrap();
    write(&mut c, 2, 10);
    c.tick(40);
    let new = c.leader().expect("a new leader among the remaining voters");
    assert_ne!(new, old);
    assert!(!c.node(new).membership().contains(old));
    assert!(!c.node(old).is_leader());
    let before = c.responses.len();
    c.isolated.push(old);
    write(&mut c, 3, 5);
    assert_eq!(c.responses.len(), before + 5, "two voters of two choose");
}

#[test]
fn the_configuration_survives_restarts_and_snapshots() {
    let mut c = cluster(3);
    write(&mut c, 1, 10);
    c.add_node(learner(4, vec![1, 2, 3]));
    reconfigure(&mut c, 1, Change::AddLearner(4)).unwrap();
    write(&mut c, 2, 10);
    reconfigure(&mut c, 2, Change::PromoteLearner(4)).unwrap();
    // Enough slots that the change is in force and compacted into snapshots.
    write(&mut c, 3, 60);
    c.tick(60);
    let l = c.leader().unwrap();
    let want = c.node(l).membership().clone();
    assert_eq!(want.voters.len(), 4);
    for id in 1..=4 {
        assert!(c.node(id).log().compacted() > 0, "node {id} snapshotted");
        let boot = if id == 4 { Config { learners: vec![4], ..cfg(4, vec![1, 2, 3]) } } else { cfg(id, vec![1, 2, 3]) };
        c.crash_and_recover(id, boot, KvMachine::default());
        assert_eq!(c.node(id).membership(), &want, "node {id} recovered the configuration");
    }
    c.tick(40);
    write(&mut c, 4, 5);
    assert!(c.leader().is_some());
}
