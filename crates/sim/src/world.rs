//! A whole cluster of real replicas in one thread, driven by a seeded
//! scheduler.
//!
//! Time is a single global counter of *units*; a node's logical clock ticks
//! every `period` units, and periods differ between nodes (clock skew).
//! Messages between replicas are dropped, duplicated, delayed and reordered
//! at random, and cut by partitions (total, one-way, isolating the leader).
//! Storage makes records durable after a random delay; a crash loses every
//! record not yet reported durable. Clients issue random puts and gets and
//! record when they invoked and when they saw the answer. With membership
//! changes or transfers switched on, an operator asks the leader, now and
//! then, to change the membership or to hand leadership over.
//!
//! After every event the invariants of [`crate::invariants`] are checked; a
//! run ends with the linearizability check of the client history and the
//! liveness check (after faults heal, every outstanding operation completes
//! within a bound). Everything random comes from one seed, so a seed
//! reproduces a run exactly; the trace hash proves it.

use crate::invariants::{Invariants, Violation};
use crate::linearizability::{check_kv, Kv, KvOp, KvRet, Operation};
use crate::swarm::{FaultKind, Swarm};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use synod_paxos::{
    Ballot, Change, ClientError, Command, CommandId, Config, Input, KvMachine, Lsn, Message, NodeId, PlantedBug,
    ReconfigError, Record, Replica, Snapshot, SnapshotFormat, TransferError,
};

/// Units of global time per nominal tick.
pub const TICK: u64 = 100;

/// What one simulated run does.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Seeds the whole run.
    pub seed: u64,
    /// Number of replicas.
    pub nodes: usize,
    /// Client operations to issue.
    pub ops: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct keys the clients use.
    pub keys: usize,
    /// Inject faults (crashes, partitions, loss, duplication).
    pub faults: bool,
    /// Run with a deliberately broken protocol rule.
    pub planted: Option<PlantedBug>,
    /// Use the replica's default timing ([`Config::new`]) instead of
    /// [`sim_config`].
    pub default_timing: bool,
    /// Mix random membership changes into the run: add learners (new node
    /// ids), promote them, remove voters, replace lost nodes, grow 3 -> 5
    /// and shrink 5 -> 3. A node whose disk is lost is then replaced by a
    /// new one instead of rejoining under its old id. Leadership transfers
    /// are mixed in too.
    pub reconfig: bool,
    /// Mix random leadership transfers into the run (implied by
    /// `reconfig`): mostly to a voter, sometimes to the leader itself, a
    /// learner or an unknown id (refused), sometimes with the old leader
    /// cut off right after.
    pub transfer: bool,
    /// Swarm testing: this run's own mix of faults, timing, protocol knobs
    /// and load ([`Swarm::draw`] of the seed). It overrides `clients`,
    /// `keys` and the simulator's timing, and switches `reconfig` and
    /// `transfer` on when it draws them.
    pub swarm: Option<Swarm>,
}

impl SimOptions {
    /// The defaults for one seed.
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            nodes: 3,
            ops: 200,
            clients: 5,
            keys: 2,
            faults: true,
            planted: None,
            default_timing: false,
            reconfig: false,
            transfer: false,
            swarm: None,
        }
    }
}

/// The replica configuration the simulator runs: short election rounds and a
/// lease that outlasts them, so that a lease without drift margin shows up as
/// a stale read; the margin covers the simulator's worst clock skew (clocks differ in rate
/// by up to 1.6x: the leader must give up a lease after 30 / 1.6 < 16 of its
/// ticks, so 14 ticks of margin, rounded for tick granularity).
pub fn sim_config(id: NodeId, members: Vec<NodeId>, planted: Option<PlantedBug>) -> Config {
    Config {
        heartbeat_ticks: 1,
        election_ticks: 5,
        election_jitter_ticks: 2,
        retry_ticks: 3,
        lease_ticks: 30,
        lease_drift_margin_ticks: 14,
        max_batch: 64,
        max_inflight_slots: 16,
        snapshot_every: 25,
        snapshot_chunk: 256,
        // The least allowed (40 election rounds), so that runs see idle
        // clients' sessions expire.
        session_expiry_ticks: 200,
        // The explicitly versioned layout, which production writes once
        // every member reads it: the simulator runs it now (the model
        // checker and the server's tests run the flagged one).
        snapshot_format: SnapshotFormat::V2,
        planted,
        seed: id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ..Config::new(id, members)
    }
}

fn node_config(opts: &SimOptions, id: NodeId, members: Vec<NodeId>, learners: Vec<NodeId>) -> Config {
    if opts.default_timing {
        Config { planted: opts.planted, seed: opts.seed ^ id, learners, ..Config::new(id, members) }
    } else if let Some(s) = &opts.swarm {
        Config {
            learners,
            max_inflight_slots: s.max_inflight_slots,
            max_batch: s.max_batch,
            snapshot_every: s.snapshot_every,
            snapshot_chunk: s.snapshot_chunk,
            ..sim_config(id, members, opts.planted)
        }
    } else {
        Config { learners, ..sim_config(id, members, opts.planted) }
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Client operations completed.
    pub ops_completed: usize,
    /// Faults injected (crashes, partitions, heals of partitions).
    pub faults: u64,
    /// Of those, disk faults (wiped disks, corrupt records).
    pub disk_faults: u64,
    /// Events processed.
    pub events: u64,
    /// Puts given up without an answer because their client session
    /// expired ([`ClientError::SessionExpired`]): left pending (outcome
    /// unknown) in the history.
    pub ops_abandoned: usize,
    /// Ticks from healing every fault until the last operation completed.
    pub recovery_ticks: u64,
    /// Hash of the whole trace; equal for equal seeds.
    pub trace_hash: u64,
    /// Membership changes chosen.
    pub reconfigs: u64,
    /// Leadership transfers completed (answered `Ok` with the target
    /// leading).
    pub transfers: u64,
    /// Leadership transfers refused or timed out.
    pub transfers_failed: u64,
    /// The first invariant that broke, if any.
    pub violation: Option<Violation>,
}

#[derive(Debug)]
enum Event {
    Tick(usize),
    Deliver {
        from: NodeId,
        to: usize,
        msg: Message,
    },
    Durable {
        node: usize,
        lsn: Lsn,
        incarnation: u64,
    },
    Request {
        client: usize,
        node: usize,
        req: Request,
    },
    Reply {
        client: usize,
        reply: Reply,
    },
    ClientTimeout {
        client: usize,
        attempt: u64,
    },
    NextOp(usize),
    Fault,
    Restart(usize),
    HealLink(NodeId, NodeId),
    Reconfig,
    Transfer,
    /// Soon after a node handed leadership over, it hears nobody for a
    /// while (it can still talk): an old leader that kept its lease would
    /// go on serving reads on it.
    Deafen {
        victim: usize,
    },
    /// Soon after a node proposed a membership change, cut it off from the
    /// nodes in `from` (everyone, or the other voters of the old
    /// configuration, leaving it the new-only ones): the change and the
    /// slots after it are then in flight when another leader takes over.
    Disrupt {
        victim: usize,
        from: Vec<NodeId>,
    },
    SnapshotSaved {
        node: usize,
        snapshot: Snapshot,
        incarnation: u64,
    },
}

#[derive(Clone, Debug)]
enum Request {
    Propose(Command),
    Read { id: u64, key: String },
}

#[derive(Clone, Debug)]
enum Reply {
    Write { id: CommandId, result: Result<Option<Bytes>, ClientError> },
    Read { id: u64, result: Result<Option<Bytes>, ClientError> },
}

struct Node {
    id: NodeId,
    replica: Option<Replica<KvMachine>>,
    /// Records handed to storage, in order; those up to `durable` survive a
    /// crash.
    disk: Vec<(Lsn, Record)>,
    durable: Lsn,
    /// Latest time a durability notice is scheduled (durability is a prefix,
    /// so notices never overtake each other).
    durable_at: u64,
    incarnation: u64,
    period: u64,
    /// The latest stored snapshot (survives crashes).
    snapshot: Option<Snapshot>,
    /// What happened to this node's disk.
    disk_state: DiskState,
    /// The configuration it was started with: (voters, learners).
    bootstrap: (Vec<NodeId>, Vec<NodeId>),
    /// Shut down for good: removed from the membership, or (with
    /// reconfiguration) its disk was lost and a new node replaces it.
    gone: bool,
    /// When it was created (global units).
    born: u64,
}

/// Storage faults a node can suffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiskState {
    /// Intact.
    Intact,
    /// A stored record was flipped: recovery detects it and the node
    /// refuses to start until an operator wipes its disk.
    Corrupt,
    /// The disk was wiped once: whenever the node restarts with nothing
    /// durable, it rejoins as a non-voting learner.
    Wiped,
}

struct ClientOp {
    key: String,
    write: Option<(CommandId, String)>,
    /// The commit index the client knew when it made the write
    /// ([`Command::origin`]): its retries keep it.
    origin: u64,
    history: usize,
    attempt: u64,
}

struct Client {
    id: u64,
    seq: u64,
    target: usize,
    op: Option<ClientOp>,
    last_attempt: u64,
    /// The highest commit index the client has seen at a node it asked.
    known_commit: u64,
}

/// One simulated cluster.
pub struct World {
    opts: SimOptions,
    rng: fastrand::Rng,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    next_event: u64,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    history: Vec<Operation<Kv<String, String>>>,
    issued: usize,
    completed: usize,
    /// Puts given up because their session expired (outcome unknown).
    abandoned: usize,
    /// Directed links that drop everything: (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    drop_per_mille: u32,
    dup_per_mille: u32,
    max_delay: u64,
    /// Longest time for a write (or a snapshot) to become durable.
    max_persist_delay: u64,
    /// Whether clocks run at different rates.
    skew: bool,
    faults_on: bool,
    healed_at: Option<u64>,
    last_completion: u64,
    faults: u64,
    disk_faults: u64,
    events_run: u64,
    trace: u64,
    invariants: Invariants,
    violation: Option<Violation>,
    tracing: bool,
    /// Membership changes chosen.
    reconfigs: u64,
    /// The change asked for and not yet answered: (id, node asked, when).
    reconfig_outstanding: Option<(u64, usize, u64)>,
    next_reconfig_id: u64,
    /// Leadership transfers completed, and refused or timed out.
    transfers: u64,
    transfers_failed: u64,
    /// The transfer asked for and not yet answered: (id, when).
    transfer_outstanding: Option<(u64, u64)>,
    /// Transfers asked for that named the leader itself (not counted).
    transfers_to_self: BTreeSet<u64>,
}

const CLIENT_TIMEOUT: u64 = 15 * TICK;

impl World {
    /// A cluster of `opts.nodes` replicas, booted, with clients ready.
    pub fn new(mut opts: SimOptions) -> World {
        if let Some(s) = &opts.swarm {
            opts.clients = s.clients;
            opts.keys = s.keys;
            opts.reconfig |= s.reconfig;
            opts.transfer |= s.transfer;
        }
        let mut rng = fastrand::Rng::with_seed(opts.seed);
        let members: Vec<NodeId> = (1..=opts.nodes as NodeId).collect();
        let skew = match &opts.swarm {
            Some(s) => opts.faults && s.skew,
            None => opts.faults,
        } || opts.planted == Some(PlantedBug::LeaseNoDriftMargin);
        let nodes = members
            .iter()
            .map(|&id| Node {
                id,
                replica: Some(
                    Replica::new(node_config(&opts, id, members.clone(), Vec::new()), KvMachine::default())
                        .expect("the simulator's configuration is valid"),
                ),
                disk: Vec::new(),
                durable: 0,
                durable_at: 0,
                incarnation: 0,
                snapshot: None,
                disk_state: DiskState::Intact,
                period: if skew { rng.u64(TICK..=TICK * 8 / 5) } else { TICK },
                bootstrap: (members.clone(), Vec::new()),
                gone: false,
                born: 0,
            })
            .collect();
        let clients = (0..opts.clients)
            .map(|i| Client {
                id: 1000 + i as u64,
                seq: 0,
                target: rng.usize(0..opts.nodes),
                op: None,
                last_attempt: 0,
                known_commit: 0,
            })
            .collect();
        let faults_on = opts.faults;
        let (drop_per_mille, dup_per_mille, max_delay, max_persist_delay) = match &opts.swarm {
            Some(s) if faults_on => (s.drop_per_mille, s.dup_per_mille, s.max_delay, s.max_persist_delay),
            _ if faults_on => (30, 20, 2 * TICK, TICK),
            _ => (0, 0, TICK / 2, TICK),
        };
        let mut w = World {
            invariants: Invariants::new(
                opts.nodes,
                synod_paxos::Membership::majority(members.clone(), Vec::new()).expect("a valid initial configuration"),
                node_config(&opts, 1, members.clone(), Vec::new()).max_inflight_slots as u64,
            ),
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            nodes,
            clients,
            history: Vec::new(),
            issued: 0,
            completed: 0,
            abandoned: 0,
            cut: BTreeSet::new(),
            drop_per_mille,
            dup_per_mille,
            max_delay,
            max_persist_delay,
            skew,
            faults_on,
            healed_at: None,
            last_completion: 0,
            faults: 0,
            disk_faults: 0,
            events_run: 0,
            trace: 0xcbf2_9ce4_8422_2325,
            violation: None,
            tracing: std::env::var_os("SYNOD_SIM_TRACE").is_some(),
            reconfigs: 0,
            reconfig_outstanding: None,
            next_reconfig_id: 1,
            transfers: 0,
            transfers_failed: 0,
            transfer_outstanding: None,
            transfers_to_self: BTreeSet::new(),
            opts,
        };
        for i in 0..w.nodes.len() {
            let first = w.rng.u64(1..=w.nodes[i].period);
            w.schedule(first, Event::Tick(i));
        }
        for c in 0..w.clients.len() {
            let at = 30 * TICK + w.rng.u64(0..TICK);
            w.schedule(at, Event::NextOp(c));
        }
        if w.faults_on {
            let at = 40 * TICK + w.rng.u64(0..20 * TICK);
            w.schedule(at, Event::Fault);
        }
        if w.opts.reconfig {
            let at = 35 * TICK + w.rng.u64(0..10 * TICK);
            w.schedule(at, Event::Reconfig);
        }
        if w.opts.reconfig || w.opts.transfer {
            let at = 35 * TICK + w.rng.u64(0..15 * TICK);
            w.schedule(at, Event::Transfer);
        }
        w
    }

    fn schedule(&mut self, delay: u64, event: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.queue.push(Reverse((self.now + delay, id)));
        self.events.insert(id, event);
    }

    fn mix(&mut self, a: u64, b: u64) {
        for x in [self.now, a, b] {
            self.trace ^= x;
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Run to the end: issue every operation under faults, heal, wait for
    /// the stragglers, check the history.
    pub fn run(mut self) -> RunReport {
        let op_phase_limit = (self.opts.ops as u64 * 20 + 400) * TICK;
        let liveness_bound = 300 * TICK * self.slowdown();
        while self.violation.is_none() {
            let Some(Reverse((at, id))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            let Some(event) = self.events.remove(&id) else {
                continue;
            };
            self.handle(event);
            self.events_run += 1;
            if self.healed_at.is_none() && (self.issued >= self.opts.ops || self.now > op_phase_limit) {
                self.heal_everything();
            }
            if let Some(h) = self.healed_at {
                if self.completed + self.abandoned == self.issued && self.issued > 0 {
                    break;
                }
                if self.now > h + liveness_bound {
                    if self.tracing {
                        for n in &self.nodes {
                            match &n.replica {
                                Some(r) => eprintln!(
                                    "node {} leader={:?} lead_ballot={:?} promised={} commit={} applied={} compacted={} rejoining={} hint={:?} disk={:?} membership={:?} pending={:?}",
                                    n.id, r.is_leader(), r.leader_ballot(), r.promised(), r.commit_index(), r.applied_index(),
                                    r.log().compacted(), r.is_rejoining(), r.leader_hint(), n.disk_state, r.membership(), r.pending_membership()
                                ),
                                None => eprintln!("node {} down {:?}", n.id, n.disk_state),
                            }
                        }
                    }
                    self.violation = Some(Violation::Liveness {
                        pending: self.issued - self.completed - self.abandoned,
                        ticks: liveness_bound / TICK,
                    });
                }
            }
        }
        if self.violation.is_none() {
            if let Err(v) = check_kv(&self.history) {
                self.violation = Some(Violation::Linearizability(v.to_string()));
            }
        }
        let recovery_ticks = match self.healed_at {
            Some(h) => self.last_completion.saturating_sub(h) / TICK,
            None => 0,
        };
        RunReport {
            seed: self.opts.seed,
            ops_completed: self.completed,
            ops_abandoned: self.abandoned,
            faults: self.faults,
            disk_faults: self.disk_faults,
            events: self.events_run,
            recovery_ticks,
            trace_hash: self.trace,
            reconfigs: self.reconfigs,
            transfers: self.transfers,
            transfers_failed: self.transfers_failed,
            violation: self.violation,
        }
    }

    /// How many times longer than the default profile one slot may take to
    /// be chosen in a swarm profile (message delay both ways plus a write),
    /// rounded up: the liveness bound stretches by as much, since a slow
    /// network and disk are no protocol bug.
    fn slowdown(&self) -> u64 {
        let Some(s) = &self.opts.swarm else { return 1 };
        let slot = |delay: u64, persist: u64| 2 * delay + persist;
        slot(s.max_delay, s.max_persist_delay).div_ceil(slot(2 * TICK, TICK)).max(1)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick(i) => {
                self.mix(1, i as u64);
                let period = self.nodes[i].period;
                self.schedule(period, Event::Tick(i));
                self.step(i, Input::Tick);
            }
            Event::Deliver { from, to, msg } => {
                self.mix(2, from << 8 | to as u64);
                if self.tracing {
                    eprintln!("t={} {}->{} {:?}", self.now, from, to + 1, msg);
                }
                self.step(to, Input::Message { from, msg });
            }
            Event::Durable { node, lsn, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].replica.is_some() {
                    self.mix(3, lsn);
                    self.nodes[node].durable = self.nodes[node].durable.max(lsn);
                    self.step(node, Input::Durable(lsn));
                }
            }
            Event::Request { client, node, req } => {
                self.mix(4, client as u64);
                let input = match req {
                    Request::Propose(cmd) => Input::Propose(cmd),
                    Request::Read { id, key } => Input::Read { id, query: Bytes::from(key) },
                };
                self.step(node, input);
            }
            Event::Reply { client, reply } => {
                self.mix(5, client as u64);
                self.on_reply(client, reply);
            }
            Event::ClientTimeout { client, attempt } => {
                let current = self.clients[client].op.as_ref().map(|o| o.attempt);
                if current == Some(attempt) {
                    self.mix(6, client as u64);
                    self.clients[client].target = self.random_node();
                    self.send_attempt(client);
                }
            }
            Event::NextOp(c) => self.next_op(c),
            Event::Fault => self.inject_fault(),
            Event::Restart(i) => self.restart(i),
            Event::HealLink(a, b) => {
                self.cut.remove(&(a, b));
            }
            Event::Reconfig => self.drive_reconfig(),
            Event::Transfer => self.drive_transfer(),
            Event::Deafen { victim } => {
                if self.faults_on {
                    self.mix(12, victim as u64);
                    self.faults += 1;
                    let until = self.rng.u64(5 * TICK..=30 * TICK);
                    for j in 0..self.nodes.len() {
                        if j != victim {
                            self.cut_link(j, victim, until);
                        }
                    }
                }
            }
            Event::Disrupt { victim, from } => {
                if self.faults_on {
                    self.mix(11, victim as u64);
                    self.faults += 1;
                    let until = self.rng.u64(5 * TICK..=30 * TICK);
                    for id in from {
                        let j = (id - 1) as usize;
                        if j != victim && j < self.nodes.len() {
                            self.cut_link(victim, j, until);
                            self.cut_link(j, victim, until);
                        }
                    }
                }
            }
            Event::SnapshotSaved { node, snapshot, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].replica.is_some() {
                    self.mix(9, snapshot.slot);
                    let slot = snapshot.slot;
                    // The store keeps the newest snapshot.
                    if self.nodes[node].snapshot.as_ref().is_none_or(|s| s.slot < slot) {
                        self.nodes[node].snapshot = Some(snapshot);
                    }
                    self.step(node, Input::SnapshotSaved(slot));
                }
            }
        }
    }

    /// Feed one input to node `i` and carry out its output.
    fn step(&mut self, i: usize, input: Input) {
        let Some(replica) = self.nodes[i].replica.as_mut() else {
            return;
        };
        replica.step(input);
        let out = replica.output();
        let node_id = self.nodes[i].id;
        if let Some(&(last, _)) = out.persist.last() {
            self.nodes[i].disk.extend(out.persist);
            let delay = self.rng.u64(TICK / 10..=self.max_persist_delay);
            let at = (self.now + delay).max(self.nodes[i].durable_at);
            self.nodes[i].durable_at = at;
            let incarnation = self.nodes[i].incarnation;
            self.schedule(at - self.now, Event::Durable { node: i, lsn: last, incarnation });
        }
        if let Some(before) = out.truncate_before {
            self.nodes[i].disk.retain(|(lsn, _)| *lsn >= before);
        }
        if let Some(snapshot) = out.snapshot {
            let delay = self.rng.u64(TICK / 10..=self.max_persist_delay);
            let incarnation = self.nodes[i].incarnation;
            self.schedule(delay, Event::SnapshotSaved { node: i, snapshot, incarnation });
        }
        for (to, msg) in out.send {
            if let Err(v) = self.invariants.on_send(i, &msg) {
                self.violation.get_or_insert(v);
            }
            self.transmit(node_id, to, msg);
        }
        for r in out.responses {
            let clients = self.clients.len() as u64;
            let Some(client) = r.id.client.checked_sub(1000).map(|c| (c % clients) as usize) else {
                continue;
            };
            let delay = self.rng.u64(1..TICK / 5);
            self.schedule(delay, Event::Reply { client, reply: Reply::Write { id: r.id, result: r.result } });
        }
        for r in out.reconfigs {
            self.on_reconfig_answer(r.id, r.result);
        }
        for r in out.transfers {
            self.on_transfer_answer(r.id, r.result);
        }
        for r in out.reads {
            let client = (r.id >> 32) as usize;
            let delay = self.rng.u64(1..TICK / 5);
            self.schedule(delay, Event::Reply { client, reply: Reply::Read { id: r.id, result: r.result } });
        }
        if let Some(replica) = self.nodes[i].replica.as_ref() {
            if let Err(v) = self.invariants.check_node(i, replica) {
                self.violation.get_or_insert(v);
            }
            if replica.holds_lease() {
                // Leases are exclusive in real time: while this node may
                // answer reads alone, no other node may.
                for (j, other) in self.nodes.iter().enumerate() {
                    if j != i && other.replica.as_ref().is_some_and(|r| r.holds_lease()) {
                        self.violation.get_or_insert(Violation::LeaseOverlap { a: i, b: j });
                    }
                }
            }
        }
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, msg: Message) {
        if self.cut.contains(&(from, to)) {
            return;
        }
        if self.rng.u32(0..1000) < self.drop_per_mille {
            return;
        }
        let to_idx = (to - 1) as usize;
        if self.rng.u32(0..1000) < self.dup_per_mille {
            let delay = self.rng.u64(1..=self.max_delay);
            self.schedule(delay, Event::Deliver { from, to: to_idx, msg: msg.clone() });
        }
        let delay = self.rng.u64(1..=self.max_delay);
        self.schedule(delay, Event::Deliver { from, to: to_idx, msg });
    }

    // ---- clients ---------------------------------------------------------

    fn next_op(&mut self, c: usize) {
        if self.issued >= self.opts.ops {
            return;
        }
        self.issued += 1;
        let key = format!("k{}", self.rng.usize(0..self.opts.keys));
        // Now and then a client restarts under a new id (as an etcd client
        // does on reconnecting), leaving an idle session behind to expire.
        // (Client `c`'s ids are `1000 + c` plus multiples of the number of
        // clients, so that a reply still finds its client.)
        if self.rng.u32(0..100) < 5 {
            let stride = self.clients.len() as u64;
            let client = &mut self.clients[c];
            client.id += stride;
            client.seq = 0;
        }
        // What the client knows is chosen: as much as the node it talks to
        // has committed (a real client learns it from the answers it gets).
        let target = self.clients[c].target.min(self.nodes.len() - 1);
        let seen = self.nodes[target].replica.as_ref().map_or(0, |r| r.commit_index());
        let client = &mut self.clients[c];
        client.known_commit = client.known_commit.max(seen);
        let origin = client.known_commit;
        let write = if self.rng.u32(0..100) < 60 {
            client.seq += 1;
            let id = CommandId { client: client.id, seq: client.seq };
            let value = format!("{}-{}", client.id, client.seq);
            self.invariants.on_propose(Command { id, origin, payload: KvMachine::put(&key, &value) });
            Some((id, value))
        } else {
            None
        };
        let op = match &write {
            Some((_, v)) => KvOp::Put(key.clone(), v.clone()),
            None => KvOp::Get(key.clone()),
        };
        self.history.push(Operation::pending(client.id, self.now, op));
        let history = self.history.len() - 1;
        // Attempt numbers keep growing across operations, so a late answer
        // to an earlier operation's read is never taken for this one's.
        let attempt = self.clients[c].op.as_ref().map_or(self.clients[c].last_attempt, |o| o.attempt);
        self.clients[c].op = Some(ClientOp { key, write, origin, history, attempt });
        self.send_attempt(c);
    }

    fn send_attempt(&mut self, c: usize) {
        let n = self.nodes.len();
        let client = &mut self.clients[c];
        let Some(op) = client.op.as_mut() else { return };
        op.attempt += 1;
        let attempt = op.attempt;
        client.last_attempt = attempt;
        let req = match &op.write {
            Some((id, value)) => {
                Request::Propose(Command { id: *id, origin: op.origin, payload: KvMachine::put(&op.key, value) })
            }
            None => Request::Read { id: (c as u64) << 32 | attempt, key: op.key.clone() },
        };
        let node = client.target.min(n - 1);
        let delay = self.rng.u64(1..TICK / 5);
        self.schedule(delay, Event::Request { client: c, node, req });
        self.schedule(CLIENT_TIMEOUT, Event::ClientTimeout { client: c, attempt });
    }

    fn on_reply(&mut self, c: usize, reply: Reply) {
        let Some(op) = self.clients[c].op.as_ref() else {
            return;
        };
        let (result, ours) = match reply {
            Reply::Write { id, result } => (result, op.write.as_ref().is_some_and(|(w, _)| *w == id)),
            Reply::Read { id, result } => (result, op.write.is_none() && id == (c as u64) << 32 | op.attempt),
        };
        if !ours {
            return;
        }
        match result {
            Ok(value) => {
                let ret = match op.write {
                    Some(_) => KvRet::Ok,
                    None => KvRet::Value(value.map(|b| String::from_utf8_lossy(&b).into_owned())),
                };
                self.complete(c, ret);
            }
            Err(ClientError::NotLeader { leader }) => {
                self.clients[c].target = match leader {
                    Some(l) => (l - 1) as usize,
                    None => self.random_node(),
                };
                // Try again shortly; a write keeps its id, so a retry that
                // races the original is applied once.
                if leader.is_some() {
                    self.send_attempt(c);
                }
            }
            // Applied before a snapshot the node installed: the put took
            // effect (a put's answer carries nothing else).
            Err(ClientError::AppliedWithoutResult) if op.write.is_some() => self.complete(c, KvRet::Ok),
            // The put waited so long that its session expired: it may have
            // been applied, and never will be from now on. Its outcome is
            // unknown, as after a timeout for good: it stays pending in the
            // history, and the client goes on (its next command, with a
            // fresh origin, opens a new session under the same id).
            Err(ClientError::SessionExpired) => {
                self.clients[c].op = None;
                self.abandoned += 1;
                let think = self.rng.u64(1..TICK);
                self.schedule(think, Event::NextOp(c));
            }
            Err(_) => {}
        }
    }

    /// Client `c`'s operation returned `ret`: record it, and think before
    /// the next one.
    fn complete(&mut self, c: usize, ret: KvRet<String>) {
        let Some(op) = self.clients[c].op.take() else { return };
        let h = &mut self.history[op.history];
        h.complete = Some(self.now);
        h.ret = Some(ret);
        self.completed += 1;
        self.last_completion = self.now;
        let think = self.rng.u64(1..TICK);
        self.schedule(think, Event::NextOp(c));
    }

    // ---- faults ------------------------------------------------------------

    fn inject_fault(&mut self) {
        if !self.faults_on {
            return;
        }
        let next = self.rng.u64(5 * TICK..=30 * TICK);
        self.schedule(next, Event::Fault);
        let n = self.nodes.len();
        let live: Vec<usize> = (0..n).filter(|&i| self.nodes[i].replica.is_some()).collect();
        let leader =
            live.iter().copied().filter(|&i| self.nodes[i].replica.as_ref().is_some_and(|r| r.is_leader())).max_by_key(
                |&i| self.nodes[i].replica.as_ref().and_then(|r| r.leader_ballot()).unwrap_or(Ballot::ZERO),
            );
        let kind = match self.rng.u32(0..100) {
            0..=7 if self.disks_in_trouble() == 0 && live.len() == self.present() => FaultKind::Disk,
            0..=29 => FaultKind::Crash,
            30..=54 => FaultKind::Isolate,
            55..=74 => FaultKind::OneWay,
            75..=89 => FaultKind::Partial,
            _ => FaultKind::Heal,
        };
        if self.opts.swarm.as_ref().is_some_and(|s| !s.allows(kind)) {
            return;
        }
        self.faults += 1;
        match kind {
            // Disk faults: a wiped disk (the node rejoins without a vote), or
            // a flipped bit that stops the node until the disk is replaced;
            // at most one node in such trouble at a time.
            FaultKind::Disk => {
                let victim = live[self.rng.usize(0..live.len())];
                if self.opts.reconfig {
                    // The disk is gone for good: a new node, with a new id,
                    // will replace this member (see `drive_reconfig`).
                    self.disk_faults += 1;
                    self.wipe(victim);
                    self.nodes[victim].gone = true;
                } else if self.rng.bool() {
                    self.disk_faults += 1;
                    self.wipe(victim);
                    let back = self.rng.u64(2 * TICK..=20 * TICK);
                    self.schedule(back, Event::Restart(victim));
                } else {
                    self.disk_faults += 1;
                    self.crash(victim);
                    self.nodes[victim].disk_state = DiskState::Corrupt;
                }
            }
            // A failed fsync stops the node (it never retries the sync); or
            // a plain crash. Either way it restarts later from its disk.
            FaultKind::Crash => {
                let crashed = n - live.len();
                let allowed = if self.opts.reconfig {
                    let voters = self.reference_voters();
                    let down = voters.iter().filter(|&&v| self.nodes[(v - 1) as usize].replica.is_none()).count();
                    down < (voters.len().max(1) - 1) / 2 + 1
                } else {
                    crashed < (n - 1) / 2 + 1
                };
                if allowed {
                    let victim = match (leader, self.rng.bool()) {
                        (Some(l), true) => l,
                        _ => live[self.rng.usize(0..live.len())],
                    };
                    self.crash(victim);
                    let back = self.rng.u64(2 * TICK..=40 * TICK);
                    self.schedule(back, Event::Restart(victim));
                }
            }
            // Isolate one node (often the leader) both ways.
            FaultKind::Isolate => {
                let victim = match (leader, self.rng.bool()) {
                    (Some(l), true) => l,
                    _ => self.rng.usize(0..n),
                };
                let until = self.rng.u64(5 * TICK..=40 * TICK);
                for j in 0..n {
                    if j != victim {
                        self.cut_link(victim, j, until);
                        self.cut_link(j, victim, until);
                    }
                }
            }
            // One-way: a hears b, b does not hear a.
            FaultKind::OneWay => {
                let a = self.rng.usize(0..n);
                let b = (a + 1 + self.rng.usize(0..n - 1)) % n;
                let until = self.rng.u64(5 * TICK..=40 * TICK);
                self.cut_link(a, b, until);
            }
            // Partial: a random set of links, both ways.
            FaultKind::Partial => {
                let until = self.rng.u64(5 * TICK..=40 * TICK);
                for a in 0..n {
                    for b in a + 1..n {
                        if self.rng.u32(0..3) == 0 {
                            self.cut_link(a, b, until);
                            self.cut_link(b, a, until);
                        }
                    }
                }
            }
            // Heal every partition.
            FaultKind::Heal => self.cut.clear(),
        }
    }

    fn cut_link(&mut self, from: usize, to: usize, heal_after: u64) {
        let (a, b) = (self.nodes[from].id, self.nodes[to].id);
        self.cut.insert((a, b));
        self.schedule(heal_after, Event::HealLink(a, b));
    }

    fn crash(&mut self, i: usize) {
        if self.nodes[i].replica.take().is_none() {
            return;
        }
        if self.tracing {
            eprintln!("t={} CRASH {}", self.now, i + 1);
        }
        self.mix(7, i as u64);
        // Everything reported durable survives. Of the rest, a random prefix
        // may have reached the disk anyway, and the write after it is torn:
        // recovery drops the torn tail.
        let node = &mut self.nodes[i];
        let unsynced = node.disk.iter().filter(|(lsn, _)| *lsn > node.durable).count();
        let survive = if unsynced > 0 && self.rng.bool() { self.rng.usize(0..=unsynced) } else { 0 };
        let keep = node.durable + survive as Lsn;
        node.disk.retain(|(lsn, _)| *lsn <= keep);
        node.durable = keep;
        node.incarnation += 1;
        node.durable_at = 0;
    }

    /// Lose node `i`'s disk entirely (or an operator wipes a corrupt one).
    fn wipe(&mut self, i: usize) {
        self.crash(i);
        if self.tracing {
            eprintln!("t={} WIPE {}", self.now, i + 1);
        }
        let node = &mut self.nodes[i];
        node.disk.clear();
        node.durable = 0;
        node.snapshot = None;
        node.disk_state = DiskState::Wiped;
    }

    fn disks_in_trouble(&self) -> usize {
        let listed = if self.opts.reconfig { self.reference_members() } else { Vec::new() };
        self.nodes
            .iter()
            .filter(|n| match &n.replica {
                Some(r) => r.is_rejoining(),
                None if n.gone => listed.contains(&n.id),
                None => n.disk_state != DiskState::Intact,
            })
            .count()
    }

    /// Nodes not shut down for good.
    fn present(&self) -> usize {
        self.nodes.iter().filter(|n| !n.gone).count()
    }

    /// A node for a client to try (never one shut down for good).
    fn random_node(&mut self) -> usize {
        let n = self.nodes.len();
        if !self.opts.reconfig {
            return self.rng.usize(0..n);
        }
        let up: Vec<usize> = (0..n).filter(|&i| !self.nodes[i].gone).collect();
        up[self.rng.usize(0..up.len())]
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].replica.is_some() || self.nodes[i].gone {
            return;
        }
        self.mix(8, i as u64);
        if self.tracing {
            let ballots: Vec<_> = self.nodes[i]
                .disk
                .iter()
                .filter(|(_, r)| matches!(r, Record::Ballot(_) | Record::Promised(_)))
                .collect();
            eprintln!(
                "t={} RESTART {} records={} durable={} {:?}",
                self.now,
                i + 1,
                self.nodes[i].disk.len(),
                self.nodes[i].durable,
                ballots
            );
        }
        let node = &mut self.nodes[i];
        let (voters, learners) = node.bootstrap.clone();
        let cfg = node_config(&self.opts, node.id, voters, learners);
        match node.disk_state {
            // The checksum catches the flipped bit: the node refuses to
            // start (it stays down until an operator wipes its disk).
            DiskState::Corrupt => {}
            // A lost disk, or one that lost everything since: the operator
            // restarts the member as joining an existing cluster, so it
            // rejoins as a learner (until a durable record says otherwise).
            DiskState::Wiped if node.disk.is_empty() && node.snapshot.is_none() => {
                let r = Replica::rejoin(cfg, KvMachine::default()).expect("the simulator's configuration is valid");
                self.invariants.on_wipe(i);
                node.replica = Some(r);
            }
            DiskState::Wiped | DiskState::Intact => {
                match Replica::recover(cfg, KvMachine::default(), node.snapshot.clone(), node.disk.iter().cloned()) {
                    Ok(r) => {
                        if let Err(v) = self.invariants.on_recover(i, &r) {
                            self.violation.get_or_insert(v);
                        }
                        node.replica = Some(r);
                    }
                    Err(e) => {
                        self.violation.get_or_insert(Violation::Recovery(e.to_string()));
                    }
                }
            }
        }
    }

    fn heal_everything(&mut self) {
        self.healed_at = Some(self.now);
        self.faults_on = false;
        self.cut.clear();
        self.drop_per_mille = 0;
        self.dup_per_mille = 0;
        for i in 0..self.nodes.len() {
            if self.nodes[i].disk_state == DiskState::Corrupt {
                // The operator replaces the corrupt disk.
                self.nodes[i].disk_state = DiskState::Intact;
                self.wipe(i);
            }
            self.restart(i);
        }
    }

    // ---- membership changes --------------------------------------------------

    /// Voters of the configuration in force, or pending, at any live
    /// replica (the laggards' views count: they may still need them).
    fn reference_voters(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for r in self.nodes.iter().filter_map(|n| n.replica.as_ref()) {
            let pending = r.pending_membership().map(|(_, m)| m.voters.clone()).unwrap_or_default();
            for v in r.membership().voters.iter().chain(&pending) {
                if !out.contains(v) {
                    out.push(*v);
                }
            }
        }
        out
    }

    /// Everyone listed in the configuration in force, or pending, at any
    /// live replica.
    fn reference_members(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for r in self.nodes.iter().filter_map(|n| n.replica.as_ref()) {
            let pending: Vec<NodeId> = r.pending_membership().map(|(_, m)| m.members().collect()).unwrap_or_default();
            for v in r.membership().members().chain(pending) {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Shut down, for good, nodes that no live replica (but themselves)
    /// lists any more in the configuration in force or a pending one (and
    /// new nodes whose addition never happened). A removed member keeps
    /// serving until then: the others may still need it for the slots its
    /// old configuration governs.
    fn retire_removed(&mut self) {
        if self.nodes.iter().any(|n| !n.gone && n.replica.is_none()) {
            // A member that is down may still list it and need it.
            return;
        }
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id;
            if self.nodes[i].gone || self.now <= self.nodes[i].born + 100 * TICK {
                continue;
            }
            let listed =
                self.nodes.iter().filter(|n| n.id != id).filter_map(|n| n.replica.as_ref()).any(|r| {
                    r.membership().contains(id) || r.pending_membership().is_some_and(|(_, m)| m.contains(id))
                });
            if !listed {
                if self.tracing {
                    eprintln!("t={} RETIRE {}", self.now, id);
                }
                self.crash(i);
                self.nodes[i].gone = true;
            }
        }
    }

    /// A new node that starts as a learner of the configuration `voters`,
    /// `learners` (which lists it).
    fn add_node(&mut self, voters: Vec<NodeId>, learners: Vec<NodeId>) -> NodeId {
        let id = self.nodes.len() as NodeId + 1;
        let cfg = node_config(&self.opts, id, voters.clone(), learners.clone());
        let replica = Replica::new(cfg, KvMachine::default()).expect("the simulator's configuration is valid");
        let period = if self.skew { self.rng.u64(TICK..=TICK * 8 / 5) } else { TICK };
        self.nodes.push(Node {
            id,
            replica: Some(replica),
            disk: Vec::new(),
            durable: 0,
            durable_at: 0,
            incarnation: 0,
            period,
            snapshot: None,
            disk_state: DiskState::Intact,
            bootstrap: (voters, learners),
            gone: false,
            born: self.now,
        });
        self.invariants.add_node();
        let first = self.rng.u64(1..=period);
        self.schedule(first, Event::Tick(self.nodes.len() - 1));
        id
    }

    /// Ask the leader for a random membership change: replace lost members
    /// first (a new node learns, then takes the lost one's vote), else add
    /// a learner, promote, remove a voter, grow 3 -> 5 (two learners
    /// promoted at once), shrink 5 -> 3, or swap a voter for a learner.
    fn drive_reconfig(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let next = self.rng.u64(8 * TICK..=25 * TICK);
        self.schedule(next, Event::Reconfig);
        self.retire_removed();
        if let Some((_, _, at)) = self.reconfig_outstanding {
            if self.now < at + 60 * TICK {
                return;
            }
            self.reconfig_outstanding = None;
        }
        let Some(l) = self.leader() else { return };
        let Some(r) = self.nodes[l].replica.as_ref() else { return };
        if r.pending_membership().is_some() {
            return;
        }
        let m = r.membership().clone();
        let lost = |w: &World, id: NodeId| w.nodes.get((id - 1) as usize).is_none_or(|n| n.gone);
        let pick = |w: &mut World, from: &[NodeId]| from[w.rng.usize(0..from.len())];
        let live_learners: Vec<NodeId> = m.learners.iter().copied().filter(|&id| !lost(self, id)).collect();
        let mut new_node = false;
        let change = if let Some(&gone) = m.learners.iter().find(|&&id| lost(self, id)) {
            Change::Remove(gone)
        } else if let Some(&gone) = m.voters.iter().find(|&&id| lost(self, id)) {
            if live_learners.is_empty() {
                new_node = true;
                Change::AddLearner(0)
            } else {
                let learner = pick(self, &live_learners);
                let voters = m.voters.iter().map(|&v| if v == gone { learner } else { v }).collect();
                let learners = m.learners.iter().copied().filter(|&x| x != learner).collect();
                Change::Replace { voters, learners }
            }
        } else {
            let (nv, nl) = (m.voters.len(), live_learners.len());
            match self.rng.u32(0..100) {
                0..=29 if nl < 2 && nv + nl < 7 => {
                    new_node = true;
                    Change::AddLearner(0)
                }
                0..=59 if nl >= 2 && nv == 3 => {
                    let mut voters = m.voters.clone();
                    voters.extend(&live_learners[..2]);
                    let learners = m.learners.iter().copied().filter(|x| !voters.contains(x)).collect();
                    Change::Replace { voters, learners }
                }
                0..=59 if nl >= 1 && nv < 5 => Change::PromoteLearner(pick(self, &live_learners)),
                60..=74 if nv >= 4 => Change::Remove(pick(self, &m.voters)),
                75..=84 if nv == 5 => {
                    let mut voters = m.voters.clone();
                    while voters.len() > 3 {
                        let i = self.rng.usize(0..voters.len());
                        voters.remove(i);
                    }
                    Change::Replace { voters, learners: m.learners.clone() }
                }
                85..=94 if nv == 3 && nl >= 1 => {
                    let out = pick(self, &m.voters);
                    let learner = pick(self, &live_learners);
                    let voters = m.voters.iter().map(|&v| if v == out { learner } else { v }).collect();
                    let learners = m.learners.iter().copied().filter(|&x| x != learner).collect();
                    Change::Replace { voters, learners }
                }
                95..=99 if nl >= 1 => Change::Remove(pick(self, &live_learners)),
                _ => return,
            }
        };
        let change = if new_node {
            let mut learners = m.learners.clone();
            let id = self.nodes.len() as NodeId + 1;
            learners.push(id);
            self.add_node(m.voters.clone(), learners);
            Change::AddLearner(id)
        } else {
            change
        };
        let id = self.next_reconfig_id;
        self.next_reconfig_id += 1;
        self.reconfig_outstanding = Some((id, l, self.now));
        if self.tracing {
            eprintln!("t={} RECONFIG {} at {}: {:?} (from {:?})", self.now, id, l + 1, change, m);
        }
        self.mix(10, id);
        self.step(l, Input::Reconfigure { id, change });
        if self.rng.bool() {
            let at = self.rng.u64(TICK / 5..=2 * TICK);
            let from = if self.rng.bool() { (1..=self.nodes.len() as NodeId).collect() } else { m.voters.clone() };
            self.schedule(at, Event::Disrupt { victim: l, from });
        }
    }

    fn on_reconfig_answer(&mut self, id: u64, result: Result<u64, ReconfigError>) {
        if self.tracing {
            eprintln!("t={} RECONFIG {} answered {:?}", self.now, id, result);
        }
        if result.is_ok() {
            self.reconfigs += 1;
        }
        if self.reconfig_outstanding.is_some_and(|(o, _, _)| o == id) {
            self.reconfig_outstanding = None;
        }
    }

    // ---- leadership transfers ----------------------------------------------

    /// Ask the leader to hand leadership over: mostly to another voter
    /// (live or not), sometimes to itself, to a learner or to an unknown id;
    /// sometimes the old leader is cut off right after.
    fn drive_transfer(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let next = self.rng.u64(10 * TICK..=30 * TICK);
        self.schedule(next, Event::Transfer);
        if let Some((_, at)) = self.transfer_outstanding {
            if self.now < at + 60 * TICK {
                return;
            }
            self.transfer_outstanding = None;
        }
        let Some(l) = self.leader() else { return };
        let Some(r) = self.nodes[l].replica.as_ref() else { return };
        let m = r.membership().clone();
        let me = self.nodes[l].id;
        let others: Vec<NodeId> = m.voters.iter().copied().filter(|&v| v != me).collect();
        let to = match self.rng.u32(0..100) {
            0..=79 if !others.is_empty() => others[self.rng.usize(0..others.len())],
            80..=87 => me,
            88..=94 if !m.learners.is_empty() => m.learners[self.rng.usize(0..m.learners.len())],
            _ => 99,
        };
        let id = self.next_reconfig_id;
        self.next_reconfig_id += 1;
        self.transfer_outstanding = Some((id, self.now));
        if to == me {
            self.transfers_to_self.insert(id);
        }
        if self.tracing {
            eprintln!("t={} TRANSFER {} at {} to {}", self.now, id, me, to);
        }
        self.mix(13, id);
        self.step(l, Input::TransferLeadership { id, to });
        if to != me && self.rng.u32(0..3) == 0 {
            let at = self.rng.u64(TICK / 5..=3 * TICK);
            self.schedule(at, Event::Deafen { victim: l });
        }
    }

    fn on_transfer_answer(&mut self, id: u64, result: Result<(), TransferError>) {
        if self.tracing {
            eprintln!("t={} TRANSFER {} answered {:?}", self.now, id, result);
        }
        match result {
            Ok(()) if !self.transfers_to_self.contains(&id) => self.transfers += 1,
            Ok(()) => {}
            Err(_) => self.transfers_failed += 1,
        }
        if self.transfer_outstanding.is_some_and(|(o, _)| o == id) {
            self.transfer_outstanding = None;
        }
    }

    // ---- scenario support ----------------------------------------------------

    /// Run events until `until` (global units).
    pub fn run_until(&mut self, until: u64) {
        while self.violation.is_none() {
            let Some(&Reverse((at, _))) = self.queue.peek() else {
                break;
            };
            if at > until {
                break;
            }
            let Some(Reverse((at, id))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            if let Some(event) = self.events.remove(&id) {
                self.handle(event);
                self.events_run += 1;
            }
        }
        self.now = self.now.max(until);
    }

    /// The current global time.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The node (index) that leads with the highest ballot, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].replica.as_ref().is_some_and(|r| r.is_leader()))
            .max_by_key(|&i| self.nodes[i].replica.as_ref().and_then(|r| r.leader_ballot()))
    }

    /// Cut or restore the directed link between node indices.
    pub fn set_link(&mut self, from: usize, to: usize, up: bool) {
        let key = (self.nodes[from].id, self.nodes[to].id);
        if up {
            self.cut.remove(&key);
        } else {
            self.cut.insert(key);
        }
    }

    /// Propose a command at every live node (a probe for progress).
    pub fn probe(&mut self, seq: u64) {
        for i in 0..self.nodes.len() {
            let cmd = Command::new(9, seq * 100 + i as u64, KvMachine::put("probe", &seq.to_string()));
            self.invariants.on_propose(cmd.clone());
            self.step(i, Input::Propose(cmd));
        }
    }

    /// The highest probe sequence number chosen so far.
    pub fn max_probe_chosen(&self) -> u64 {
        self.invariants.max_chosen_seq_of(9) / 100
    }

    /// The first violation, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// Disable the random clients (scenarios drive their own load).
    pub fn without_clients(mut self) -> World {
        self.issued = usize::MAX / 2;
        self.opts.ops = 0;
        self
    }
}
