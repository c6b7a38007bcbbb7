//! Leadership transfer in an in-process cluster with a perfect network:
//! the handover, the refusals, the timeout fallback, and leases staying
//! exclusive throughout. The simulator (`synod-sim --transfer`, and every
//! `--reconfig` run) covers it under faults.

use bytes::Bytes;
use synod_paxos::local::LocalCluster;
use synod_paxos::{
    Change, ClientError, Command, Config, Input, KvMachine, NodeId, ReconfigError, Replica, TransferError,
};

fn cluster(n: u64) -> LocalCluster<KvMachine> {
    let mut c = LocalCluster::new(n, Config::new, KvMachine::default);
    c.tick(40);
    c
}

fn put(client: u64, seq: u64, k: &str, v: &str) -> Command {
    Command::new(client, seq, KvMachine::put(k, v))
}

fn other_than(n: u64, not: &[NodeId]) -> NodeId {
    (1..=n).find(|i| !not.contains(i)).unwrap()
}

/// The answer to transfer `id`, if one came.
fn answer(c: &LocalCluster<KvMachine>, id: u64) -> Option<(NodeId, Result<(), TransferError>)> {
    c.transfers.iter().find(|(_, r)| r.id == id).map(|(at, r)| (*at, r.result.clone()))
}

/// At most one replica holds a lease.
fn leases_exclusive(c: &LocalCluster<KvMachine>, n: u64) {
    let holders: Vec<NodeId> = (1..=n).filter(|&i| c.node(i).holds_lease()).collect();
    assert!(holders.len() <= 1, "leases held by {holders:?} at once");
}

#[test]
fn leadership_moves_to_the_named_voter_and_commands_keep_flowing() {
    let mut c = cluster(3);
    let old = c.leader().unwrap();
    let old_ballot = c.node(old).leader_ballot().unwrap();
    let to = other_than(3, &[old]);
    for seq in 1..=5 {
        c.step(old, Input::Propose(put(1, seq, "k", &seq.to_string())));
    }
    c.step(old, Input::TransferLeadership { id: 7, to });
    // Proposed while the transfer runs: queued, then passed on.
    for seq in 6..=10 {
        c.step(old, Input::Propose(put(1, seq, "k", &seq.to_string())));
    }
    c.tick(3);
    assert_eq!(answer(&c, 7), Some((old, Ok(()))));
    assert_eq!(c.leader(), Some(to));
    assert!(c.node(to).leader_ballot().unwrap() > old_ballot);
    assert_eq!(c.node(old).leader_hint(), Some(to));
    c.tick(5);
    assert_eq!(c.responses.len(), 10, "every proposal answered: {:?}", c.responses);
    for id in 1..=3 {
        assert_eq!(c.node(id).state_machine().map.get(&b"k"[..]), Some(&Bytes::from("10")), "node {id}");
    }
}

#[test]
fn the_old_leader_does_not_bid_back_and_nobody_duels() {
    let mut c = cluster(3);
    let old = c.leader().unwrap();
    let to = other_than(3, &[old]);
    c.step(old, Input::TransferLeadership { id: 1, to });
    c.tick(3);
    let ballot = c.node(to).leader_ballot().unwrap();
    c.tick(100);
    assert_eq!(c.leader(), Some(to));
    assert_eq!(c.node(to).leader_ballot(), Some(ballot), "no new election since");
    assert!(c.node(to).holds_lease(), "the new leader earned a lease of its own");
    let read_at = other_than(3, &[to]);
    c.step(read_at, Input::Read { id: 1, query: Bytes::from("k") });
    c.tick(2);
    assert_eq!(c.reads.len(), 1);
    assert!(c.reads[0].1.result.is_ok());
}

#[test]
fn the_old_leader_gives_its_lease_up_before_the_target_bids_and_leases_never_overlap() {
    let mut c = cluster(3);
    let old = c.leader().unwrap();
    let to = other_than(3, &[old]);
    assert!(c.node(old).holds_lease());
    c.step(old, Input::TransferLeadership { id: 1, to });
    assert!(!c.node(old).holds_lease(), "lease given up as the handover left");
    // Reads at the old leader now go to the target.
    c.step(old, Input::Read { id: 9, query: Bytes::from("k") });
    assert_eq!(c.reads[0].1.result, Err(ClientError::NotLeader { leader: Some(to) }));
    for _ in 0..40 {
        while c.deliver_one() {
            leases_exclusive(&c, 3);
        }
        for id in 1..=3 {
            c.step(id, Input::Tick);
            leases_exclusive(&c, 3);
        }
    }
    assert!(c.node(to).holds_lease());
    assert_eq!(answer(&c, 1), Some((old, Ok(()))));
}

#[test]
fn a_transfer_to_the_leader_itself_succeeds_at_once() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    c.step(l, Input::TransferLeadership { id: 3, to: l });
    assert_eq!(answer(&c, 3), Some((l, Ok(()))));
    assert!(c.node(l).holds_lease(), "nothing given up");
}

#[test]
fn a_follower_refuses_and_names_the_leader() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    let f = other_than(3, &[l]);
    c.step(f, Input::TransferLeadership { id: 1, to: f });
    assert_eq!(answer(&c, 1), Some((f, Err(TransferError::NotLeader { leader: Some(l) }))));
}

#[test]
fn unknown_members_and_learners_are_bad_transferees() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    c.step(l, Input::TransferLeadership { id: 1, to: 9 });
    assert_eq!(answer(&c, 1), Some((l, Err(TransferError::BadTransferee(9)))));
    assert_eq!(TransferError::BadTransferee(9).to_string(), "etcdserver: bad leader transferee");
    // A learner.
    let learner = Replica::new(Config { learners: vec![4], ..Config::new(4, vec![1, 2, 3]) }, KvMachine::default());
    c.add_node(learner.unwrap());
    c.step(l, Input::Reconfigure { id: 1, change: Change::AddLearner(4) });
    c.tick(3);
    assert!(c.reconfigs.iter().any(|(_, r)| r.id == 1 && r.result.is_ok()), "{:?}", c.reconfigs);
    c.tick(70);
    let l = c.leader().unwrap();
    c.step(l, Input::TransferLeadership { id: 2, to: 4 });
    assert_eq!(answer(&c, 2), Some((l, Err(TransferError::BadTransferee(4)))));
    assert_eq!(c.leader(), Some(l), "nothing changed");
}

/// A 3-node cluster whose leader `l` was asked (request 1) to hand over to
/// `to`, which is cut off: a slot it never accepts keeps the leader
/// draining.
fn transfer_to_a_cut_off_target() -> (LocalCluster<KvMachine>, NodeId, NodeId) {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    let to = other_than(3, &[l]);
    c.isolated.push(to);
    c.step(l, Input::Propose(put(1, 1, "a", "1")));
    c.step(l, Input::TransferLeadership { id: 1, to });
    (c, l, to)
}

#[test]
fn a_second_transfer_or_a_membership_change_during_one_is_refused() {
    let (mut c, l, to) = transfer_to_a_cut_off_target();
    c.step(l, Input::TransferLeadership { id: 2, to: other_than(3, &[l, to]) });
    assert_eq!(answer(&c, 2), Some((l, Err(TransferError::InProgress))));
    c.step(l, Input::Reconfigure { id: 5, change: Change::Remove(to) });
    let refused = c.reconfigs.iter().find(|(_, r)| r.id == 5).map(|(_, r)| r.result.clone());
    assert_eq!(refused, Some(Err(ReconfigError::InProgress)));
    assert_eq!(answer(&c, 1), None, "still running");
}

#[test]
fn a_target_that_never_catches_up_times_out_and_the_leader_takes_proposals_again() {
    let (mut c, l, _) = transfer_to_a_cut_off_target();
    c.deliver_all();
    c.step(l, Input::Propose(put(1, 2, "a", "2")));
    c.tick(3);
    assert_eq!(c.responses.len(), 1, "the proposal made during the transfer waits");
    assert!(c.node(l).holds_lease(), "nothing was handed over: the lease is kept");
    let timeout = Config::new(1, vec![1]).transfer_timeout_ticks as usize;
    c.tick(timeout);
    assert_eq!(answer(&c, 1), Some((l, Err(TransferError::Timeout))));
    assert_eq!(c.leader(), Some(l));
    c.tick(2);
    assert_eq!(c.responses.len(), 2, "proposals flow again: {:?}", c.responses);
}

#[test]
fn a_lost_handover_times_out_and_the_old_leader_serves_without_its_lease() {
    let mut c = cluster(3);
    let l = c.leader().unwrap();
    let to = other_than(3, &[l]);
    c.tick(2);
    // Idle: nothing to drain, so the handover leaves at once, and is lost.
    c.isolated.push(to);
    c.step(l, Input::TransferLeadership { id: 1, to });
    assert!(!c.node(l).holds_lease());
    let timeout = Config::new(1, vec![1]).transfer_timeout_ticks as usize;
    c.tick(timeout + 1);
    assert_eq!(answer(&c, 1), Some((l, Err(TransferError::Timeout))));
    assert_eq!(c.leader(), Some(l), "the old leader leads on");
    c.tick(20);
    assert!(!c.node(l).holds_lease(), "a ballot handed over never earns a lease again");
    c.step(l, Input::Propose(put(1, 1, "a", "1")));
    c.step(l, Input::Read { id: 4, query: Bytes::from("a") });
    c.tick(2);
    assert_eq!(c.responses.len(), 1);
    assert_eq!(c.reads.iter().find(|(_, r)| r.id == 4).unwrap().1.result, Ok(Some(Bytes::from("1"))));
}
