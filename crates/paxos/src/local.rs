//! A whole cluster of replicas in one process with a perfect network and
//! instant storage: the harness for tests, benchmarks and examples of the
//! happy path. (Faults belong to the simulator, crate `synod-sim`.)

use crate::command::Command;
use crate::config::Config;
use crate::io::{Input, ReadResponse, ReconfigResponse, Refused, Response, Snapshot, Stats, TransferResponse};
use crate::message::Message;
use crate::record::Record;
use crate::replica::Replica;
use crate::state_machine::StateMachine;
use crate::types::{Lsn, NodeId};
use std::collections::VecDeque;

/// Replicas `1..=n`, delivering every message in order.
pub struct LocalCluster<S: StateMachine> {
    nodes: Vec<Option<Replica<S>>>,
    disks: Vec<Vec<(Lsn, Record)>>,
    snapshots: Vec<Option<Snapshot>>,
    net: VecDeque<(NodeId, NodeId, Message)>,
    /// Answers to proposals, with the replica that gave them.
    pub responses: Vec<(NodeId, Response<S::Output>)>,
    /// Answers to reads, with the replica that gave them.
    pub reads: Vec<(NodeId, ReadResponse<S::Output>)>,
    /// Answers to membership changes, with the replica that gave them.
    pub reconfigs: Vec<(NodeId, ReconfigResponse)>,
    /// Answers to leadership transfers, with the replica that gave them.
    pub transfers: Vec<(NodeId, TransferResponse)>,
    /// Messages refused on arrival, with the replica that refused them.
    pub refused: Vec<(NodeId, Refused)>,
    /// Nodes whose messages are dropped both ways.
    pub isolated: Vec<NodeId>,
    /// Keep records on the in-memory disks (for recovery tests).
    pub keep_records: bool,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Each replica's [`Stats`] added up (index: id - 1).
    stats: Vec<Stats>,
}

impl<S: StateMachine> LocalCluster<S> {
    /// `n` replicas, configured by `config(id, members)`, each with the
    /// state machine `sm()`.
    pub fn new(n: u64, config: impl Fn(NodeId, Vec<NodeId>) -> Config, sm: impl Fn() -> S) -> LocalCluster<S> {
        let members: Vec<NodeId> = (1..=n).collect();
        let nodes = members
            .iter()
            .map(|&id| Some(Replica::new(config(id, members.clone()), sm()).expect("valid configuration")))
            .collect();
        LocalCluster {
            nodes,
            disks: vec![Vec::new(); n as usize],
            snapshots: vec![None; n as usize],
            net: VecDeque::new(),
            responses: Vec::new(),
            reads: Vec::new(),
            reconfigs: Vec::new(),
            transfers: Vec::new(),
            refused: Vec::new(),
            isolated: Vec::new(),
            keep_records: true,
            delivered: 0,
            stats: vec![Stats::default(); n as usize],
        }
    }

    /// Feed `input` to replica `id` and carry out its output; durability is
    /// instant.
    pub fn step(&mut self, id: NodeId, input: Input) {
        let i = (id - 1) as usize;
        let Some(Some(node)) = self.nodes.get_mut(i) else {
            return;
        };
        node.step(input);
        loop {
            let mut out = node.output();
            add_stats(&mut self.stats[i], std::mem::take(&mut out.stats));
            if out.is_empty() {
                break;
            }
            let last = out.persist.last().map(|(l, _)| *l);
            if self.keep_records {
                self.disks[i].extend(out.persist);
            }
            if let Some(before) = out.truncate_before {
                self.disks[i].retain(|(lsn, _)| *lsn >= before);
            }
            for (to, msg) in out.send {
                self.net.push_back((id, to, msg));
            }
            self.responses.extend(out.responses.into_iter().map(|r| (id, r)));
            self.reads.extend(out.reads.into_iter().map(|r| (id, r)));
            self.reconfigs.extend(out.reconfigs.into_iter().map(|r| (id, r)));
            self.transfers.extend(out.transfers.into_iter().map(|r| (id, r)));
            self.refused.extend(out.refused.into_iter().map(|r| (id, r)));
            if let Some(l) = last {
                node.step(Input::Durable(l));
            }
            if let Some(snap) = out.snapshot {
                let slot = snap.slot;
                self.snapshots[i] = Some(snap);
                node.step(Input::SnapshotSaved(slot));
            }
        }
    }

    /// Propose many commands at replica `id` before collecting its output,
    /// so they are batched.
    pub fn propose_all(&mut self, id: NodeId, commands: impl IntoIterator<Item = Command>) {
        let i = (id - 1) as usize;
        if let Some(node) = self.nodes[i].as_mut() {
            for c in commands {
                node.step(Input::Propose(c));
            }
        }
        self.step(id, Input::Tick);
    }

    /// Deliver every message in flight (and those they cause).
    pub fn deliver_all(&mut self) {
        while self.deliver_one() {}
    }

    /// Deliver the oldest message in flight (dropped if either end is
    /// isolated); false when none is left.
    pub fn deliver_one(&mut self) -> bool {
        let Some((from, to, msg)) = self.net.pop_front() else {
            return false;
        };
        if !self.isolated.contains(&from) && !self.isolated.contains(&to) {
            self.delivered += 1;
            self.step(to, Input::Message { from, msg });
        }
        true
    }

    /// `ticks` rounds of: every replica ticks, then every message is
    /// delivered.
    pub fn tick(&mut self, ticks: usize) {
        for _ in 0..ticks {
            for id in 1..=self.nodes.len() as u64 {
                self.step(id, Input::Tick);
            }
            self.deliver_all();
        }
    }

    /// The replica that leads (and is not isolated), if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .flatten()
            .filter(|r| r.is_leader() && !self.isolated.contains(&r.id()))
            .max_by_key(|r| r.leader_ballot())
            .map(|r| r.id())
    }

    /// Records replica `id` keeps on its disk.
    pub fn disk_records(&self, id: NodeId) -> usize {
        self.disks[(id - 1) as usize].len()
    }

    /// Add a replica (a new member, typically started as a learner); its
    /// id must be the next one, `n + 1`.
    pub fn add_node(&mut self, replica: Replica<S>) {
        assert_eq!(replica.id(), self.nodes.len() as NodeId + 1, "node ids are consecutive");
        self.nodes.push(Some(replica));
        self.disks.push(Vec::new());
        self.snapshots.push(None);
        self.stats.push(Stats::default());
    }

    /// What replica `id` counted in its outputs so far, added up.
    pub fn stats(&self, id: NodeId) -> &Stats {
        &self.stats[(id - 1) as usize]
    }

    /// The snapshot replica `id` stored last, if any.
    pub fn stored_snapshot(&self, id: NodeId) -> Option<&Snapshot> {
        self.snapshots[(id - 1) as usize].as_ref()
    }

    /// Replica `id`.
    pub fn node(&self, id: NodeId) -> &Replica<S> {
        self.nodes[(id - 1) as usize].as_ref().expect("replica is running")
    }

    /// Restart replica `id` from its records, with a fresh state machine.
    pub fn crash_and_recover(&mut self, id: NodeId, config: Config, sm: S) {
        let i = (id - 1) as usize;
        let records = self.disks[i].clone();
        let snapshot = self.snapshots[i].clone();
        self.nodes[i] = Some(Replica::recover(config, sm, snapshot, records).expect("own records recover"));
    }
}

fn add_stats(total: &mut Stats, more: Stats) {
    total.phase1_started += more.phase1_started;
    total.lease_reads += more.lease_reads;
    total.read_index_reads += more.read_index_reads;
    total.snapshots_sent += more.snapshots_sent;
    total.snapshots_received += more.snapshots_received;
    total.batches.extend(more.batches);
}
