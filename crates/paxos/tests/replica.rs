//! Multi-Paxos replicas in a tiny in-process cluster with a perfect network
//! and instant storage: the happy paths, stated as properties. The
//! simulator (crate synod-sim) covers faults.

use bytes::Bytes;
use std::collections::VecDeque;
use synod_paxos::{
    ClientError, Command, Config, Input, KvMachine, Lsn, NodeId, Record, Replica, Slot,
};

struct Cluster {
    nodes: Vec<Option<Replica<KvMachine>>>,
    disks: Vec<Vec<(Lsn, Record)>>,
    net: VecDeque<(NodeId, NodeId, synod_paxos::Message)>,
    responses: Vec<(NodeId, synod_paxos::Response<Option<Bytes>>)>,
    reads: Vec<(NodeId, synod_paxos::ReadResponse<Option<Bytes>>)>,
    cut: Vec<NodeId>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let members: Vec<NodeId> = (1..=n).collect();
        let nodes = members
            .iter()
            .map(|&id| {
                Some(Replica::new(Config::new(id, members.clone()), KvMachine::default()).unwrap())
            })
            .collect();
        Cluster {
            nodes,
            disks: vec![Vec::new(); n as usize],
            net: VecDeque::new(),
            responses: Vec::new(),
            reads: Vec::new(),
            cut: Vec::new(),
        }
    }

    fn step(&mut self, id: NodeId, input: Input) {
        let i = (id - 1) as usize;
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        node.step(input);
        loop {
            let out = node.output();
            if out.is_empty() {
                break;
            }
            let last = out.persist.last().map(|(l, _)| *l);
            self.disks[i].extend(out.persist);
            for (to, msg) in out.send {
                self.net.push_back((id, to, msg));
            }
            self.responses
                .extend(out.responses.into_iter().map(|r| (id, r)));
            self.reads.extend(out.reads.into_iter().map(|r| (id, r)));
            if let Some(l) = last {
                node.step(Input::Durable(l));
            }
        }
    }

    fn deliver_all(&mut self) {
        while let Some((from, to, msg)) = self.net.pop_front() {
            if self.cut.contains(&from) || self.cut.contains(&to) {
                continue;
            }
            self.step(to, Input::Message { from, msg });
        }
    }

    fn tick(&mut self, ticks: usize) {
        for _ in 0..ticks {
            for id in 1..=self.nodes.len() as u64 {
                self.step(id, Input::Tick);
            }
            self.deliver_all();
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .flatten()
            .find(|r| r.is_leader() && !self.cut.contains(&r.id()))
            .map(|r| r.id())
    }

    fn node(&self, id: NodeId) -> &Replica<KvMachine> {
        self.nodes[(id - 1) as usize].as_ref().unwrap()
    }

    fn crash_and_recover(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        let members: Vec<NodeId> = (1..=self.nodes.len() as u64).collect();
        let records = self.disks[i].clone();
        self.nodes[i] = Some(
            Replica::recover(Config::new(id, members), KvMachine::default(), records).unwrap(),
        );
    }

    fn committed(&self, id: NodeId) -> Slot {
        self.node(id).commit_index()
    }
}

fn put(client: u64, seq: u64, k: &str, v: &str) -> Command {
    Command::new(client, seq, KvMachine::put(k, v))
}

#[test]
fn a_leader_is_elected_and_commands_are_chosen_everywhere() {
    let mut c = Cluster::new(3);
    c.tick(40);
    let l = c.leader().expect("a leader after a few election rounds");
    for seq in 1..=10 {
        c.step(l, Input::Propose(put(7, seq, "k", &seq.to_string())));
    }
    c.tick(5);
    assert_eq!(c.responses.len(), 10, "every proposal answered");
    for id in 1..=3 {
        assert_eq!(
            c.node(id).state_machine().map.get(&b"k"[..]).unwrap(),
            &Bytes::from("10")
        );
    }
}

#[test]
fn proposals_to_a_follower_are_forwarded_and_answered_there() {
    let mut c = Cluster::new(3);
    c.tick(40);
    let l = c.leader().unwrap();
    let f = (1..=3).find(|&i| i != l).unwrap();
    c.step(f, Input::Propose(put(1, 1, "a", "1")));
    c.tick(3);
    assert!(
        c.responses
            .iter()
            .any(|(at, r)| *at == f && r.result == Ok(None)),
        "{:?}",
        c.responses
    );
}

#[test]
fn a_retried_command_is_applied_once() {
    let mut c = Cluster::new(3);
    c.tick(40);
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

#[test]
fn linearizable_reads_are_served_by_the_leader_and_refused_elsewhere() {
    let mut c = Cluster::new(3);
    c.tick(40);
    let l = c.leader().unwrap();
    c.step(l, Input::Propose(put(1, 1, "a", "x")));
    c.tick(3);
    c.step(
        l,
        Input::Read {
            id: 9,
            query: Bytes::from("a"),
        },
    );
    c.tick(2);
    assert!(c
        .reads
        .iter()
        .any(|(at, r)| *at == l && r.id == 9 && r.result == Ok(Some(Bytes::from("x")))));
    let f = (1..=3).find(|&i| i != l).unwrap();
    c.step(
        f,
        Input::Read {
            id: 10,
            query: Bytes::from("a"),
        },
    );
    assert!(c.reads.iter().any(|(at, r)| *at == f
        && r.id == 10
        && matches!(r.result, Err(ClientError::NotLeader { leader: Some(x) }) if x == l)));
}

#[test]
fn chosen_values_survive_the_leader_crashing() {
    let mut c = Cluster::new(3);
    c.tick(40);
    let l = c.leader().unwrap();
    for seq in 1..=5 {
        c.step(l, Input::Propose(put(1, seq, "k", &format!("v{seq}"))));
    }
    c.tick(3);
    let before = c.committed(l);
    c.cut.push(l);
    c.tick(60);
    let l2 = c.leader().expect("a new leader");
    assert_ne!(l2, l);
    c.step(l2, Input::Propose(put(2, 1, "k2", "after")));
    c.tick(5);
    c.cut.clear();
    c.crash_and_recover(l);
    c.tick(60);
    for id in 1..=3 {
        let sm = c.node(id).state_machine();
        assert_eq!(
            sm.map.get(&b"k"[..]).unwrap(),
            &Bytes::from("v5"),
            "node {id}"
        );
        assert_eq!(
            sm.map.get(&b"k2"[..]).unwrap(),
            &Bytes::from("after"),
            "node {id}"
        );
        assert!(c.committed(id) > before);
    }
}

#[test]
fn a_recovered_replica_keeps_its_promise() {
    let mut c = Cluster::new(3);
    c.tick(40);
    let l = c.leader().unwrap();
    let f = (1..=3).find(|&i| i != l).unwrap();
    let promised = c.node(f).promised();
    c.crash_and_recover(f);
    assert_eq!(c.node(f).promised(), promised);
}
