//! The model: a small cluster of real replicas, a network, disks and an
//! adversary, as a [`stateright::Model`].
//!
//! A [`State`] holds every replica (cloned to branch), what each one has
//! handed to storage and what of it is durable, its stored snapshot, the
//! messages in flight, the incremental invariant checker of the simulator
//! (cloned along) and what is left of the adversary's budgets. An
//! [`Action`] is one thing the adversary or a client does; the replicas
//! answer with their outputs, which the model carries out at once (records
//! appended, messages put in flight, snapshots handed to the store).

use crate::fingerprint;
use stateright::{Model, Property};
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use synod_paxos::{
    Change, Command, Config, Input, KvMachine, Lsn, Membership, Message, NodeId, PlantedBug, Record, Replica, Snapshot,
};
use synod_sim::invariants::{Invariants, Violation};

/// How the replicas' logical clocks advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Each node ticks on its own ([`Action::Tick`]), up to
    /// [`Bounds::ticks`] times: every order of ticks is explored, but there
    /// is no common time, so lease exclusivity is not checked.
    Independent,
    /// One global clock ([`Action::TickAll`], up to [`Bounds::ticks`]
    /// times): every live node ticks once per global tick, except `fast`,
    /// which ticks twice (a clock running at double rate). Real time
    /// exists, so no two nodes may hold a leader lease at once.
    Global {
        /// The node (index) whose clock runs at double rate, if any.
        fast: Option<usize>,
    },
}

/// The size of the model: every budget the adversary may spend.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Voters of the initial configuration (ids `1..=voters`).
    pub voters: usize,
    /// Client commands proposed (each at any live node), at most.
    pub commands: u64,
    /// Ticks per node ([`Clock::Independent`]) or global ticks
    /// ([`Clock::Global`]).
    pub ticks: u32,
    /// How clocks advance.
    pub clock: Clock,
    /// Nodes (indices) whose clocks do not advance while the model is
    /// explored: a process paused (a long GC pause, SIGSTOP, a stalled VM)
    /// while what it sent is still in the network. It still handles
    /// messages; it just never times out.
    pub paused: Vec<usize>,
    /// Crashes (each followed, when the adversary chooses, by a restart
    /// from the durable records and the stored snapshot).
    pub crashes: u32,
    /// Messages the network may lose outright.
    pub drops: u32,
    /// Times a leader may be cut off from periodic traffic (its pings,
    /// pongs, heartbeats and acks lost both ways, until healed): how a
    /// second leader gets elected while the first one still runs.
    pub cuts: u32,
    /// Membership changes asked of the leader, in order; `AddLearner(id)`
    /// starts node `id` (the next id after the voters) as a learner first.
    pub changes: Vec<Change>,
    /// Leadership transfers the leader may be asked for (to the next voter).
    pub transfers: u32,
    /// Take a snapshot every this many applied slots (0: never).
    pub snapshot_every: u64,
    /// Leader lease length in ticks (0: no leases).
    pub lease_ticks: u64,
    /// The lease's clock-drift margin in ticks.
    pub lease_drift_margin_ticks: u64,
    /// How states are fingerprinted.
    pub fingerprint: Fingerprint,
    /// Start from a cluster that already elected a leader and chose its
    /// first slot (a fixed, deterministic warm-up run), rather than from
    /// boot.
    pub warm: bool,
    /// Membership changes the warm-up makes, in order, each chosen and in
    /// force everywhere (learners caught up) before exploring starts: how a
    /// model begins with learners or a changed membership without spending
    /// its depth on getting there. Only with `warm`.
    pub warm_changes: Vec<Change>,
    /// The protocol bug to plant, if any.
    pub planted: Option<PlantedBug>,
}

impl Bounds {
    /// The model CI checks: 3 voters from a warm start, 2 commands, one
    /// crash, one election cut, a learner added then promoted, snapshots
    /// every 2 slots.
    pub fn small() -> Bounds {
        Bounds {
            voters: 3,
            commands: 2,
            ticks: 4,
            clock: Clock::Global { fast: None },
            paused: Vec::new(),
            crashes: 1,
            drops: 0,
            cuts: 1,
            changes: vec![Change::AddLearner(4), Change::PromoteLearner(4)],
            transfers: 0,
            snapshot_every: 2,
            lease_ticks: 0,
            lease_drift_margin_ticks: 0,
            fingerprint: Fingerprint::Exact,
            warm: true,
            warm_changes: Vec::new(),
            planted: None,
        }
    }

    /// Every node id the model may start: the voters, then one per
    /// `AddLearner` change (of the warm-up, then of the plan).
    fn node_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = (1..=self.voters as NodeId).collect();
        for c in self.warm_changes.iter().chain(&self.changes) {
            if let Change::AddLearner(id) = c {
                if !ids.contains(id) {
                    ids.push(*id);
                }
            }
        }
        ids
    }

    /// The configuration of replica `id`, started as a member of
    /// `voters` and `learners`.
    pub fn config(&self, id: NodeId, voters: Vec<NodeId>, learners: Vec<NodeId>) -> Config {
        Config {
            learners,
            heartbeat_ticks: 1,
            election_ticks: 2,
            election_jitter_ticks: 0,
            retry_ticks: 2,
            lease_ticks: self.lease_ticks,
            lease_drift_margin_ticks: self.lease_drift_margin_ticks,
            transfer_timeout_ticks: 8,
            max_inflight_slots: 2,
            max_catchup_slots: 16,
            snapshot_every: self.snapshot_every,
            snapshot_chunk: 1 << 16,
            planted: self.planted,
            seed: id,
            ..Config::new(id, voters)
        }
    }
}

/// What two states must share to count as one (see [`crate::fingerprint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fingerprint {
    /// Every field of every replica: states merge only when equal (up to
    /// the order hash maps print in). Complete within the bounds.
    Exact,
    /// What the replicas' public API shows: far fewer states, but states
    /// that differ in timers, tallies or held replies merge, so behaviour
    /// reachable only from the merged-away state is missed.
    Summary,
}

/// One thing that happens in the model. Node arguments are indices into
/// [`State::nodes`] (node id minus one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Deliver the message at this index of [`State::net`], the first of
    /// its link (lost if its receiver is down).
    Deliver(usize),
    /// The network loses the message at this index.
    Drop(usize),
    /// One tick of this node's clock ([`Clock::Independent`]); its pings
    /// and the pongs they draw are exchanged at once.
    Tick(usize),
    /// One tick of global time ([`Clock::Global`]).
    TickAll,
    /// The node crashes, losing the records and the snapshot it handed to
    /// storage in the previous step (storage syncs one step late). Offered
    /// only while there is something to lose.
    Crash(usize),
    /// The node restarts from its durable records and stored snapshot.
    Restart(usize),
    /// A client proposes the next command at this node.
    Propose(usize),
    /// The next membership change of the plan is asked of this node (a
    /// leader).
    Reconfigure(usize),
    /// This node (a leader) is asked to hand leadership to the next voter.
    Transfer(usize),
    /// From now on this node's periodic traffic (election pings and pongs,
    /// heartbeats and their acks) is lost both ways.
    Cut(usize),
    /// Election traffic flows again everywhere.
    Heal,
}

/// One node: its replica (none while down or not yet started) and storage.
#[derive(Clone)]
pub struct Node {
    /// The node's id.
    pub id: NodeId,
    /// The running replica; `None` while crashed or not yet started.
    pub replica: Option<Replica<KvMachine>>,
    /// Whether the node was ever started (a learner starts when added).
    pub started: bool,
    /// Records handed to storage, in order.
    pub disk: Vec<(Lsn, Record)>,
    /// Records up to here survive a crash.
    pub durable: Lsn,
    /// The stored snapshot (survives crashes).
    pub snapshot: Option<Snapshot>,
    /// A snapshot handed to the store and not yet reported stored.
    pub storing: Option<Snapshot>,
    /// The configuration it was started with: (voters, learners).
    pub bootstrap: (Vec<NodeId>, Vec<NodeId>),
    /// Ticks left ([`Clock::Independent`]).
    pub ticks_left: u32,
}

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The sender's id.
    pub from: NodeId,
    /// The receiver's id.
    pub to: NodeId,
    /// The message.
    pub msg: Message,
}

/// One state of the model.
#[derive(Clone)]
pub struct State {
    /// Every node, by index (id minus one).
    pub nodes: Vec<Node>,
    /// Messages in flight: one FIFO queue per link, the queues in order of
    /// (sender, receiver).
    pub net: Vec<Envelope>,
    /// The simulator's incremental checks, forked with the state.
    invariants: Invariants,
    /// Nodes whose periodic traffic is lost.
    pub cut: Vec<bool>,
    /// Budgets left.
    pub crashes_left: u32,
    /// Messages the network may still lose.
    pub drops_left: u32,
    /// Cuts left.
    pub cuts_left: u32,
    /// Global ticks left ([`Clock::Global`]).
    pub global_ticks_left: u32,
    /// Transfers left.
    pub transfers_left: u32,
    /// Commands proposed so far.
    pub proposed: u64,
    /// Membership changes of the plan asked for so far.
    pub changes_asked: usize,
    /// Membership changes answered as chosen.
    pub changes_chosen: usize,
    /// The first invariant that broke, with what the checker saw.
    pub violation: Option<String>,
    /// How this state is fingerprinted.
    pub fingerprint: Fingerprint,
}

impl State {
    /// Whether the invariants held so far.
    pub fn ok(&self) -> bool {
        self.violation.is_none()
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    fn live(&self, i: usize) -> Option<&Replica<KvMachine>> {
        self.nodes.get(i).and_then(|n| n.replica.as_ref())
    }

    fn fail(&mut self, why: String) {
        if self.violation.is_none() {
            self.violation = Some(why);
        }
    }

    fn violated(&mut self, v: Violation) {
        self.fail(v.to_string());
    }

    /// Put a message at the end of its link's queue. A newer commit notice
    /// replaces an undelivered older one (the network lost it), and a
    /// message already waiting on the link is not queued twice (the network
    /// lost the copy): both only repeat what is on its way, and keeping them
    /// would multiply states without new behaviour.
    fn transmit(&mut self, from: NodeId, to: NodeId, msg: Message) {
        let link = |e: &Envelope| e.from == from && e.to == to;
        if superseding(&msg) {
            let kind = msg.kind();
            self.net.retain(|e| !(link(e) && e.msg.kind() == kind));
        }
        if self.net.iter().any(|e| link(e) && e.msg == msg) {
            return;
        }
        let at = self.net.partition_point(|e| (e.from, e.to) <= (from, to));
        self.net.insert(at, Envelope { from, to, msg });
    }

    /// Whether the message at `k` is the first on its link.
    pub fn at_head(&self, k: usize) -> bool {
        k == 0 || self.net.get(k - 1).map(|e| (e.from, e.to)) != self.net.get(k).map(|e| (e.from, e.to))
    }
}

fn superseding(msg: &Message) -> bool {
    matches!(msg, Message::Commit { .. })
}

/// Periodic traffic (election pings and pongs, heartbeats, their acks,
/// learners' progress reports): exchanged at once, within the step that
/// sent it, unless a side is cut off. Delivering each on its own would
/// multiply states by every order of messages that are resent every tick
/// anyway.
fn periodic(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Ping { .. }
            | Message::Pong(_)
            | Message::Heartbeat { .. }
            | Message::HeartbeatAck { .. }
            | Message::Progress { .. }
    )
}

/// The Synod cluster as a model.
pub struct SynodModel {
    /// Its size.
    pub bounds: Bounds,
    init: State,
}

impl SynodModel {
    /// The model of `bounds`, with its initial state built (the warm-up
    /// run, if asked for, happens here).
    pub fn new(bounds: Bounds) -> SynodModel {
        let ids = bounds.node_ids();
        let voters: Vec<NodeId> = (1..=bounds.voters as NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let is_voter = voters.contains(&id);
                let replica = is_voter.then(|| {
                    Replica::new(bounds.config(id, voters.clone(), Vec::new()), KvMachine::default())
                        .expect("the model's configuration is valid")
                });
                Node {
                    id,
                    replica,
                    started: is_voter,
                    disk: Vec::new(),
                    durable: 0,
                    snapshot: None,
                    storing: None,
                    bootstrap: (voters.clone(), Vec::new()),
                    ticks_left: bounds.ticks,
                }
            })
            .collect();
        let alpha = bounds.config(1, voters.clone(), Vec::new()).max_inflight_slots as u64;
        let alpha = if bounds.planted == Some(PlantedBug::ReconfigNoOverlap) { 1 } else { alpha };
        let initial = Membership::majority(voters, Vec::new()).expect("a valid initial configuration");
        let mut init = State {
            invariants: Invariants::new(ids.len(), initial, alpha),
            nodes,
            net: Vec::new(),
            cut: vec![false; ids.len()],
            crashes_left: bounds.crashes,
            drops_left: bounds.drops,
            cuts_left: bounds.cuts,
            global_ticks_left: bounds.ticks,
            transfers_left: bounds.transfers,
            proposed: 0,
            changes_asked: 0,
            changes_chosen: 0,
            violation: None,
            fingerprint: bounds.fingerprint,
        };
        let mut model = SynodModel { bounds, init: init.clone() };
        if model.bounds.warm {
            model.warm_up(&mut init);
        }
        model.init = init;
        model
    }

    /// Run the cluster on a fixed schedule (every started node ticks, then
    /// every message is delivered and every record made durable, in order)
    /// until a leader has chosen its first slot and every node learned it;
    /// then make each of [`Bounds::warm_changes`] the same way, until it is
    /// in force everywhere; then deliver what is left without ticking.
    fn warm_up(&self, s: &mut State) {
        self.run_until_settled(s);
        for (k, change) in self.bounds.warm_changes.iter().enumerate() {
            let Some(l) = (0..s.nodes.len()).find(|&i| s.live(i).is_some_and(|r| r.is_leader())) else {
                panic!("the warm-up elected no leader");
            };
            self.start_learner(s, l, change);
            self.step(s, l, Input::Reconfigure { id: 100 + k as u64, change: change.clone() });
            self.run_until_settled(s);
            let settled = s.live(l).is_some_and(|r| r.pending_membership().is_none() && r.commit_index() > 1);
            assert!(settled, "warm-up change {change:?} did not take effect");
        }
        self.settle(s);
        // The plan's changes are counted from here.
        s.changes_chosen = 0;
    }

    /// Tick and settle until some leader's commit index is at least 1 and
    /// above every configuration change it knows, and every started node
    /// has learned up to it.
    fn run_until_settled(&self, s: &mut State) {
        for _round in 0..100 {
            for i in 0..s.nodes.len() {
                self.step(s, i, Input::Tick);
            }
            self.settle(s);
            let leader = (0..s.nodes.len()).find(|&i| s.live(i).is_some_and(|r| r.is_leader()));
            if let Some(r) = leader.and_then(|l| s.live(l)) {
                let commit = r.commit_index();
                let in_force = r.pending_membership().is_none();
                let everywhere = (0..s.nodes.len())
                    .filter(|&i| s.nodes[i].started)
                    .all(|i| s.live(i).is_some_and(|n| n.commit_index() == commit));
                if commit >= 1 && in_force && everywhere {
                    return;
                }
            }
        }
    }

    /// Deliver every message and make every record durable until nothing
    /// is left to do.
    fn settle(&self, s: &mut State) {
        for _ in 0..1000 {
            if let Some(i) = (0..s.nodes.len()).find(|&i| self.can_durable(s, i)) {
                self.durable(s, i);
            } else if let Some(i) = (0..s.nodes.len()).find(|&i| s.nodes[i].storing.is_some()) {
                self.snapshot_saved(s, i);
            } else if !s.net.is_empty() {
                let e = s.net.remove(0);
                self.deliver(s, e);
            } else {
                return;
            }
        }
    }

    fn can_durable(&self, s: &State, i: usize) -> bool {
        let n = &s.nodes[i];
        n.replica.is_some() && n.disk.last().is_some_and(|(lsn, _)| *lsn > n.durable)
    }

    fn durable(&self, s: &mut State, i: usize) {
        let Some(&(last, _)) = s.nodes[i].disk.last() else { return };
        s.nodes[i].durable = last;
        self.step(s, i, Input::Durable(last));
    }

    fn snapshot_saved(&self, s: &mut State, i: usize) {
        let Some(snap) = s.nodes[i].storing.take() else { return };
        let slot = snap.slot;
        if s.nodes[i].snapshot.as_ref().is_none_or(|have| have.slot < slot) {
            s.nodes[i].snapshot = Some(snap);
        }
        self.step(s, i, Input::SnapshotSaved(slot));
    }

    fn deliver(&self, s: &mut State, e: Envelope) {
        if let Some(to) = s.index(e.to) {
            self.step(s, to, Input::Message { from: e.from, msg: e.msg });
        }
    }

    /// Feed `input` to node `i` and carry out its output; periodic traffic
    /// it causes is exchanged at once (and what that causes, in turn).
    fn step(&self, s: &mut State, i: usize, input: Input) {
        let mut work = VecDeque::from([(i, input)]);
        while let Some((i, input)) = work.pop_front() {
            let Some(replica) = s.nodes[i].replica.as_mut() else { continue };
            replica.step(input);
            let out = replica.output();
            let from = s.nodes[i].id;
            let node = &mut s.nodes[i];
            node.disk.extend(out.persist);
            if let Some(before) = out.truncate_before {
                node.disk.retain(|(lsn, _)| *lsn >= before);
            }
            if let Some(snap) = out.snapshot {
                node.storing = Some(snap);
            }
            for (to, msg) in out.send {
                if let Err(v) = s.invariants.on_send(i, &msg) {
                    s.violated(v);
                }
                let Some(j) = s.index(to) else { continue };
                if periodic(&msg) {
                    if !s.cut[i] && !s.cut[j] {
                        work.push_back((j, Input::Message { from, msg }));
                    }
                } else {
                    s.transmit(from, to, msg);
                }
            }
            s.changes_chosen += out.reconfigs.iter().filter(|r| r.result.is_ok()).count();
            if let Some(r) = s.nodes[i].replica.as_ref() {
                if let Err(v) = s.invariants.check_node(i, r) {
                    s.violated(v);
                }
            }
        }
        self.check_leases(s);
    }

    /// With a global clock: no two nodes hold a leader lease at once.
    fn check_leases(&self, s: &mut State) {
        if self.bounds.clock == Clock::Independent || self.bounds.lease_ticks == 0 {
            return;
        }
        let holders: Vec<usize> = (0..s.nodes.len()).filter(|&i| s.live(i).is_some_and(|r| r.holds_lease())).collect();
        if let [a, b, ..] = holders[..] {
            s.violated(Violation::LeaseOverlap { a, b });
        }
    }

    fn crash(&self, s: &mut State, i: usize) {
        let node = &mut s.nodes[i];
        node.replica = None;
        let durable = node.durable;
        node.disk.retain(|(lsn, _)| *lsn <= durable);
        node.storing = None;
        s.crashes_left -= 1;
    }

    fn restart(&self, s: &mut State, i: usize) {
        let node = &s.nodes[i];
        let (voters, learners) = node.bootstrap.clone();
        let cfg = self.bounds.config(node.id, voters, learners);
        match Replica::recover(cfg, KvMachine::default(), node.snapshot.clone(), node.disk.iter().cloned()) {
            Ok(r) => {
                if let Err(v) = s.invariants.on_recover(i, &r) {
                    s.violated(v);
                }
                s.nodes[i].replica = Some(r);
            }
            Err(e) => s.violated(Violation::Recovery(e.to_string())),
        }
    }

    fn propose(&self, s: &mut State, i: usize) {
        s.proposed += 1;
        let seq = s.proposed;
        let cmd = Command::new(1, seq, KvMachine::put("k", &seq.to_string()));
        s.invariants.on_propose(cmd.clone());
        self.step(s, i, Input::Propose(cmd));
    }

    fn reconfigure(&self, s: &mut State, i: usize) {
        let change = self.bounds.changes[s.changes_asked].clone();
        s.changes_asked += 1;
        self.start_learner(s, i, &change);
        let id = s.changes_asked as u64;
        self.step(s, i, Input::Reconfigure { id, change });
    }

    /// Before `AddLearner(id)` is asked of node `i`: start node `id` as a
    /// learner of `i`'s configuration.
    fn start_learner(&self, s: &mut State, i: usize, change: &Change) {
        if let &Change::AddLearner(id) = change {
            let m = s.live(i).map(|r| r.membership().clone());
            if let (Some(m), Some(j)) = (m, s.index(id)) {
                if !s.nodes[j].started {
                    let mut learners = m.learners.clone();
                    learners.push(id);
                    let cfg = self.bounds.config(id, m.voters.clone(), learners.clone());
                    let r = Replica::new(cfg, KvMachine::default()).expect("the model's configuration is valid");
                    let node = &mut s.nodes[j];
                    node.replica = Some(r);
                    node.started = true;
                    node.bootstrap = (m.voters, learners);
                }
            }
        }
    }

    fn transfer(&self, s: &mut State, i: usize) {
        s.transfers_left -= 1;
        let Some(r) = s.live(i) else { return };
        let me = r.id();
        let voters = &r.membership().voters;
        let at = voters.iter().position(|&v| v == me).unwrap_or(0);
        let to = voters[(at + 1) % voters.len()];
        self.step(s, i, Input::TransferLeadership { id: 1000 + u64::from(s.transfers_left), to });
    }

    fn tick_all(&self, s: &mut State) {
        s.global_ticks_left -= 1;
        let fast = match self.bounds.clock {
            Clock::Global { fast } => fast,
            Clock::Independent => None,
        };
        for i in (0..s.nodes.len()).filter(|i| !self.bounds.paused.contains(i)) {
            let times = if fast == Some(i) { 2 } else { 1 };
            for _ in 0..times {
                self.step(s, i, Input::Tick);
            }
        }
    }
}

impl Model for SynodModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.init.clone()]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        if !s.ok() {
            return;
        }
        for k in (0..s.net.len()).filter(|&k| s.at_head(k)) {
            actions.push(Action::Deliver(k));
        }
        if s.drops_left > 0 {
            for k in 0..s.net.len() {
                actions.push(Action::Drop(k));
            }
        }
        if self.bounds.clock != Clock::Independent && s.global_ticks_left > 0 {
            actions.push(Action::TickAll);
        }
        for (i, n) in s.nodes.iter().enumerate() {
            let Some(r) = n.replica.as_ref() else {
                if n.started {
                    actions.push(Action::Restart(i));
                }
                continue;
            };
            if self.bounds.clock == Clock::Independent && n.ticks_left > 0 && !self.bounds.paused.contains(&i) {
                actions.push(Action::Tick(i));
            }
            let unsynced = n.disk.last().is_some_and(|(lsn, _)| *lsn > n.durable) || n.storing.is_some();
            if s.crashes_left > 0 && unsynced {
                actions.push(Action::Crash(i));
            }
            if s.proposed < self.bounds.commands && r.is_leader() {
                actions.push(Action::Propose(i));
            }
            if s.changes_asked < self.bounds.changes.len()
                && s.changes_chosen == s.changes_asked
                && r.is_leader()
                && r.pending_membership().is_none()
            {
                actions.push(Action::Reconfigure(i));
            }
            if s.transfers_left > 0 && r.is_leader() {
                actions.push(Action::Transfer(i));
            }
            if s.cuts_left > 0 && !s.cut[i] && r.is_leader() {
                actions.push(Action::Cut(i));
            }
        }
        if s.cut.iter().any(|&c| c) {
            actions.push(Action::Heal);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        // What storage was handed before this step becomes durable (or
        // stored) at its end, unless the step crashed the node.
        let written: Vec<(Lsn, Option<u64>)> = s
            .nodes
            .iter()
            .map(|n| (n.disk.last().map_or(0, |(lsn, _)| *lsn), n.storing.as_ref().map(|snap| snap.slot)))
            .collect();
        match action {
            Action::Deliver(k) => {
                let e = s.net.remove(k);
                self.deliver(&mut s, e);
            }
            Action::Drop(k) => {
                s.net.remove(k);
                s.drops_left -= 1;
            }
            Action::Tick(i) => {
                s.nodes[i].ticks_left -= 1;
                self.step(&mut s, i, Input::Tick);
            }
            Action::TickAll => self.tick_all(&mut s),
            Action::Crash(i) => self.crash(&mut s, i),
            Action::Restart(i) => self.restart(&mut s, i),
            Action::Propose(i) => self.propose(&mut s, i),
            Action::Reconfigure(i) => self.reconfigure(&mut s, i),
            Action::Transfer(i) => self.transfer(&mut s, i),
            Action::Cut(i) => {
                s.cut[i] = true;
                s.cuts_left -= 1;
            }
            Action::Heal => s.cut.iter_mut().for_each(|c| *c = false),
        }
        for (i, (lsn, storing)) in written.into_iter().enumerate() {
            if s.nodes[i].replica.is_none() {
                continue;
            }
            if lsn > s.nodes[i].durable {
                s.nodes[i].durable = lsn;
                self.step(&mut s, i, Input::Durable(lsn));
            }
            if storing.is_some() && s.nodes[i].storing.as_ref().map(|snap| snap.slot) == storing {
                self.snapshot_saved(&mut s, i);
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![Property::always("safe", |_, s: &State| s.ok())]
    }
}

impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        fingerprint::state(self, h);
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.nodes {
            match &n.replica {
                Some(r) => writeln!(
                    f,
                    "  node {}: leader={} ballot={:?} promised={} commit={} applied={} compacted={} durable={}/{} \
                     snapshot={:?} voters={:?} learners={:?}",
                    n.id,
                    r.is_leader(),
                    r.leader_ballot(),
                    r.promised(),
                    r.commit_index(),
                    r.applied_index(),
                    r.log().compacted(),
                    n.durable,
                    n.disk.last().map_or(0, |(l, _)| *l),
                    n.snapshot.as_ref().map(|s| s.slot),
                    r.membership().voters,
                    r.membership().learners,
                )?,
                None if n.started => writeln!(f, "  node {}: down", n.id)?,
                None => writeln!(f, "  node {}: not started", n.id)?,
            }
        }
        write!(f, "  in flight: {}", self.net.len())
    }
}

/// One step of a trace, told for a person.
pub fn describe(before: &State, action: &Action) -> String {
    match action {
        Action::Deliver(k) | Action::Drop(k) => match before.net.get(*k) {
            Some(e) => {
                let verb = if matches!(action, Action::Deliver(_)) { "deliver" } else { "drop" };
                format!("{verb} {} -> {}: {:?}", e.from, e.to, e.msg)
            }
            None => format!("{action:?}"),
        },
        Action::Tick(i) => format!("tick node {}", i + 1),
        Action::TickAll => "tick every node".into(),
        Action::Crash(i) => format!("crash node {}", i + 1),
        Action::Restart(i) => format!("restart node {}", i + 1),
        Action::Propose(i) => format!("propose command {} at node {}", before.proposed + 1, i + 1),
        Action::Reconfigure(i) => format!("ask node {} for membership change #{}", i + 1, before.changes_asked + 1),
        Action::Transfer(i) => format!("ask node {} to hand leadership over", i + 1),
        Action::Cut(i) => format!("cut node {} off from periodic traffic", i + 1),
        Action::Heal => "heal periodic traffic".into(),
    }
}

/// Two states are the same state when their fingerprints agree (see
/// [`crate::fingerprint`]).
impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        let digest = |s: &State| {
            let mut h = std::hash::DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        };
        digest(self) == digest(other)
    }
}
