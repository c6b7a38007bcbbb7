//! Membership changes in an in-process cluster with a perfect network:
//! learners join and catch up, are promoted once in sync, voters are
//! removed, and the configuration survives restarts and snapshots. The
//! simulator (`synod-sim --reconfig`) covers them under faults.

use synod_paxos::local::LocalCluster;
use synod_paxos::{Change, Command, Config, Input, KvMachine, Message, NodeId, ReconfigError, Replica};

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
        let l = leader(c);
        c.step(l, Input::Propose(put(client, seq, &format!("k{seq}"), "v")));
        c.deliver_all();
    }
    c.tick(3);
}

/// The leader, after waiting for one if there is none.
fn leader(c: &mut LocalCluster<KvMachine>) -> NodeId {
    for _ in 0..20 {
        if let Some(l) = c.leader() {
            return l;
        }
        c.tick(5);
    }
    c.leader().expect("a leader")
}

fn reconfigure(c: &mut LocalCluster<KvMachine>, id: u64, change: Change) -> Result<u64, ReconfigError> {
    let l = leader(c);
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

/// Issue 12 (found by `synod-sim --nodes 5 --reconfig`, seed 1237): a member
/// that joined after the last change starts from the configuration then in
/// force, so nothing differs from its own start flags; its snapshots left the
/// membership out. An original member that installed one and restarted
/// rebuilt the configurations from *its* start flags and counted quorums in
/// the cluster's first configuration, which need not meet the real ones.
#[test]
fn a_snapshot_made_by_a_member_that_joined_later_restores_the_configuration_everywhere() {
    // [1,2,3,4] -> remove 4 -> [1,2,3], then 5 joins as a learner.
    let mut c = cluster(4);
    write(&mut c, 1, 5);
    reconfigure(&mut c, 1, Change::Remove(4)).unwrap();
    c.isolated.push(4);
    c.add_node(learner(5, vec![1, 2, 3]));
    c.isolated.push(5);
    reconfigure(&mut c, 2, Change::AddLearner(5)).unwrap();
    // Past the change's window and into a snapshot, so node 5 catches up
    // from one that holds nothing pending: its configurations are exactly
    // its start flags.
    write(&mut c, 2, 40);
    c.isolated.retain(|&n| n != 5);
    c.tick(20);
    assert!(c.node(5).log().compacted() > 0, "node 5 caught up from a snapshot");
    // Node 3 falls behind while node 5 snapshots slots of its own.
    c.isolated.push(3);
    write(&mut c, 3, 45);
    let snap = c.stored_snapshot(5).expect("node 5 stored a snapshot").slot;
    assert!(snap > c.node(3).commit_index(), "node 3 is behind node 5's snapshot");
    // Node 3 installs node 5's snapshot (it asks node 5 to catch up).
    c.isolated.retain(|&n| n != 3);
    let from_slot = c.node(3).commit_index() + 1;
    c.step(5, Input::Message { from: 3, msg: Message::CatchUp { from_slot } });
    c.deliver_all();
    assert_eq!(c.stored_snapshot(3).map(|s| s.slot), Some(snap), "node 3 installed node 5's snapshot");
    assert_eq!(c.stored_snapshot(3).map(|s| &s.data), c.stored_snapshot(5).map(|s| &s.data));
    // Restarted from it, node 3 counts in [1,2,3], not in its flags' [1,2,3,4].
    let want = c.node(1).membership().clone();
    assert_eq!(want.voters, vec![1, 2, 3]);
    c.crash_and_recover(3, cfg(3, vec![1, 2, 3, 4]), KvMachine::default());
    assert_eq!(c.node(3).membership(), &want, "node 3 recovered the configuration the log gives");
    // And catches up past it, still in step with the others.
    c.tick(20);
    write(&mut c, 4, 5);
    assert_eq!(c.node(3).commit_index(), c.node(1).commit_index());
    assert_eq!(c.node(3).membership(), c.node(1).membership());
}

/// Every replica's snapshot of one slot is the same bytes, whatever
/// configuration each one started from (the snapshot carries the
/// membership always).
#[test]
fn snapshots_of_one_slot_are_the_same_bytes_on_every_replica() {
    let mut c = cluster(3);
    write(&mut c, 1, 5);
    c.add_node(learner(4, vec![1, 2, 3]));
    c.isolated.push(4);
    reconfigure(&mut c, 1, Change::AddLearner(4)).unwrap();
    // Node 4 catches up from a snapshot taken once the change was in force.
    write(&mut c, 2, 40);
    c.isolated.clear();
    c.tick(20);
    assert!(c.node(4).log().compacted() > 0, "node 4 caught up from a snapshot");
    write(&mut c, 3, 5);
    c.tick(10);
    let commit = c.node(1).commit_index();
    for id in 1..=4 {
        assert_eq!(c.node(id).commit_index(), commit, "node {id} is in step");
        c.step(id, Input::TakeSnapshot);
    }
    let first = c.stored_snapshot(1).expect("node 1 snapshotted").clone();
    assert_eq!(first.slot, commit);
    for id in 2..=4 {
        let snap = c.stored_snapshot(id).expect("snapshotted");
        assert_eq!(snap.slot, first.slot);
        assert!(snap.data == first.data, "node {id}'s snapshot of slot {} differs from node 1's", snap.slot);
    }
}
