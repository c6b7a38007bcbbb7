//! The whole stack under the simulator: `synod-sim --stack`.
//!
//! Where [`crate::world`] drives the protocol core alone with a toy state
//! machine, this drives what a `synod` member runs: the runtime's event
//! loop ([`synod_runtime::Driver`], the same code the node's tokio task
//! drives), the etcd state machine ([`synod_server::state::machine`]) and
//! the watch hub's cursor ([`synod_server::state::watch_hub::Cursor`]),
//! with records going through the peer wire format and the log through the
//! storage crate (see [`disk`]). One thread, simulated time, one seed: a
//! run is reproducible from its seed.
//!
//! Faults: messages dropped, delayed and reordered; members cut off and
//! healed; members crashed (losing what their disk had not synced) and
//! restarted from their disk; clocks that run at different rates.
//!
//! What is checked ([`check`]):
//! - the clients' history of puts, deletes, compare-and-swap txns and
//!   linearizable ranges is linearizable (per key, Wing-Gong-Lowe);
//! - every member's watch stream hands out every revision once, in order,
//!   and the events of a revision are the same on every member, and every
//!   acknowledged write is the event at its revision;
//! - once faults stop, every member reaches the same store (revision and
//!   hash).

pub mod check;
pub mod disk;
pub mod locks;

use crate::linearizability::{KvOp, KvRet};
use crate::world::sim_config;
use check::{History, Watcher, Watches};
use disk::{NodeDisk, OpenError};
use locks::{Holdings, Locker, Step};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_kv::pb::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, Request as OpRequest, RequestOp, SortOrder, SortTarget, TargetUnion, TxnRequest,
};
use synod_kv::{Command as KvCommand, KvError, Response};
use synod_paxos::{Message, NodeId, Snapshot};
use synod_runtime::codec::{decode_message, encode_message};
use synod_runtime::driver::{recover_replica, Answer, Clock, Driver, DriverConfig, Request, Ticket};
use synod_runtime::{Metrics, Transport};
use synod_server::state::lease_keeper::{leading, Deadlines, Renewal, KEEPER_TICK};
use synod_server::state::machine::{EtcdMachine, MachineError, Proposal, Query, Reply};
use synod_server::state::watch_hub::{Cursor, RevisionFeed};

/// Simulated time, in microseconds.
type Micros = u64;

const MS: Micros = 1_000;
/// One protocol tick.
const TICK: Micros = 10 * MS;
/// How long a client's request may take before the runtime times it out.
const REQUEST_TIMEOUT: Micros = 3_000 * MS;
/// How long the run goes on without faults at its end, for every member
/// to catch up.
const QUIET: Micros = 20_000 * MS;
/// The lease keeper's round.
const KEEPER: Micros = KEEPER_TICK.as_micros() as Micros;
/// Clocks run at most this fast (parts per million of simulated time).
const FASTEST_CLOCK_PPM: u64 = 1_250_000;
/// Clocks run at least this fast.
const SLOWEST_CLOCK_PPM: u64 = 800_000;

/// A planted bug in a layer only the whole-stack simulator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackPlant {
    /// The log reports records durable before it syncs them.
    WalAckBeforeSync,
    /// The watch hub drops a revision from a batch.
    WatchSkipRevision,
}

impl StackPlant {
    /// Every planted bug, by name.
    pub const ALL: [StackPlant; 2] = [StackPlant::WalAckBeforeSync, StackPlant::WatchSkipRevision];

    /// The bug's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            StackPlant::WalAckBeforeSync => "wal-ack-before-sync",
            StackPlant::WatchSkipRevision => "watch-skip-revision",
        }
    }

    /// The bug named `name`.
    pub fn from_name(name: &str) -> Option<StackPlant> {
        StackPlant::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// How to run one seed.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The seed: everything random in the run is drawn from it.
    pub seed: u64,
    /// Members.
    pub nodes: usize,
    /// Client operations to complete (the run also ends at a time limit).
    pub ops: usize,
    /// A planted bug of the stack's, which the checks must catch.
    pub plant: Option<StackPlant>,
    /// A planted bug of the protocol core's, which the stack's end-to-end
    /// checks must catch too.
    pub protocol_plant: Option<synod_paxos::PlantedBug>,
}

/// What one run saw and found.
#[derive(Clone, Debug, Default)]
pub struct StackReport {
    /// Operations that completed with an answer.
    pub ops: usize,
    /// Writes whose outcome the client never learned.
    pub unknown: usize,
    /// Messages dropped, partitions, crashes, disk faults injected.
    pub faults: u64,
    /// Crashes and restarts of members.
    pub crashes: u64,
    /// Disk faults injected (torn writes, I/O errors, bit flips).
    pub disk_faults: u64,
    /// Disks replaced after recovery refused a flipped bit.
    pub disks_replaced: u64,
    /// Watch events checked.
    pub watched: u64,
    /// Leases granted to the lease client.
    pub leases: u64,
    /// Expired leases a keeper revoked.
    pub expired: u64,
    /// Times a locker held the lock.
    pub locks: u64,
    /// What was wrong, if anything.
    pub violation: Option<String>,
}

impl StackReport {
    /// Adds `other`'s counts to these (the violation is not added).
    pub fn add(&mut self, other: &StackReport) {
        self.ops += other.ops;
        self.unknown += other.unknown;
        self.faults += other.faults;
        self.crashes += other.crashes;
        self.disk_faults += other.disk_faults;
        self.disks_replaced += other.disks_replaced;
        self.watched += other.watched;
        self.leases += other.leases;
        self.expired += other.expired;
        self.locks += other.locks;
    }

    /// The counts as `name=value` pairs, for summary lines.
    pub fn counts(&self) -> String {
        format!(
            "ops={} unknown={} faults={} crashes={} disk_faults={} disks_replaced={} watched={} leases={} expired={} \
             locks={}",
            self.ops,
            self.unknown,
            self.faults,
            self.crashes,
            self.disk_faults,
            self.disks_replaced,
            self.watched,
            self.leases,
            self.expired,
            self.locks
        )
    }
}

/// A member's clock: simulated time since it started, at its own rate.
struct SimClock {
    now: Arc<AtomicU64>,
    start: Micros,
    /// Rate in parts per million of simulated time.
    rate_ppm: u64,
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        let elapsed = self.now.load(Ordering::Relaxed).saturating_sub(self.start);
        Duration::from_micros(elapsed.saturating_mul(self.rate_ppm) / 1_000_000)
    }
}

/// The sending side of a member: what it sends waits here until the
/// simulator takes it onto the network.
#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<(NodeId, Message)>>>);

impl Transport for Outbox {
    fn send(&mut self, to: NodeId, msg: Message) {
        self.0.lock().expect("single-threaded").push((to, msg));
    }
    fn set_peer(&mut self, _: NodeId, _: std::net::SocketAddr) {}
    fn remove_peer(&mut self, _: NodeId) {}
}

/// A member while it runs.
struct Up {
    driver: Driver<EtcdMachine>,
    outbox: Outbox,
    feed: Arc<RevisionFeed>,
    cursor: Cursor,
    watcher: Watcher,
    /// A sync of the log is scheduled.
    syncing: bool,
    /// Snapshots being stored.
    storing: u32,
    /// The lease keeper's deadlines (member-local, lost in a crash).
    keeper: Deadlines,
    clock: Arc<SimClock>,
    /// Leadership as last traced (SYNOD_SIM_TRACE).
    traced: Option<(bool, bool, u64)>,
}

struct Node {
    id: NodeId,
    disk: NodeDisk,
    /// Bumped at every crash, so that events meant for an earlier life of
    /// the member are ignored.
    life: u64,
    up: Option<Up>,
    rate_ppm: u64,
    /// Cut off from every other member until then.
    isolated_until: Micros,
    /// Started as joining a running cluster (after its disk was replaced):
    /// with nothing durable, it rejoins as a learner.
    join_existing: bool,
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    },
    Tick {
        node: usize,
        life: u64,
    },
    Synced {
        node: usize,
        life: u64,
    },
    SnapshotStored {
        node: usize,
        life: u64,
        snapshot: Snapshot,
    },
    Client {
        client: usize,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Isolate {
        node: usize,
        until: Micros,
    },
    /// The lease keeper's round on a member.
    Keeper {
        node: usize,
        life: u64,
    },
    /// The lease client's next step.
    Leases,
    /// A locker's next step.
    Locker {
        locker: usize,
    },
}

/// A request in flight, and who waits for it.
enum InFlight {
    /// A key-value client's operation.
    Kv { client: usize, op: KvOp<String, String>, index: usize },
    /// The lease client's grant.
    Grant,
    /// A lease keeper's revoke of an expired lease.
    Revoke { lease: i64 },
    /// A locker's request.
    Lock { locker: usize },
}

/// A lease the lease client was granted, and when its life was last
/// extended.
struct LeaseSeen {
    ttl: i64,
    /// When the grant or the last keep-alive was answered.
    renewed: Micros,
    /// The client keeps it alive.
    kept: bool,
}

/// The simulated cluster.
pub struct Stack {
    opts: StackOptions,
    rng: fastrand::Rng,
    now: Micros,
    clock: Arc<AtomicU64>,
    seq: u64,
    events: BTreeMap<(Micros, u64), Event>,
    nodes: Vec<Node>,
    members: Vec<NodeId>,
    /// Tickets in flight, per member.
    tickets: HashMap<(usize, Ticket), InFlight>,
    /// Whether each client waits for an answer.
    busy: Vec<bool>,
    /// The member each client asks next.
    target: Vec<usize>,
    history: History,
    watches: Watches,
    report: StackReport,
    faults_until: Micros,
    next_value: u64,
    /// Leases granted to the lease client.
    leases: BTreeMap<i64, LeaseSeen>,
    /// The lease client waits for a grant.
    granting: bool,
    /// When it asked for the grant it waits for.
    grant_sent: Micros,
    /// The member the lease client asks.
    lease_target: usize,
    /// Clients taking a lock in turn.
    lockers: Vec<Locker>,
    holdings: Holdings,
    /// Print what happens to each member (SYNOD_SIM_TRACE set; read once).
    trace: bool,
}

const CLIENTS: usize = 4;
/// Clients competing for one lock.
const LOCKERS: usize = 2;
const KEYS: [&str; 3] = ["a", "b", "c"];

impl Stack {
    /// A cluster for `opts`, not yet started.
    pub fn new(opts: StackOptions) -> Stack {
        let mut rng = fastrand::Rng::with_seed(opts.seed);
        let members: Vec<NodeId> = (1..=opts.nodes as u64).collect();
        let plant_wal = opts.plant == Some(StackPlant::WalAckBeforeSync);
        let nodes = members
            .iter()
            .map(|&id| Node {
                id,
                disk: NodeDisk::new(rng.u64(..), plant_wal),
                life: 0,
                up: None,
                // Clocks run at 0.8x to 1.25x: never more than the 1.6x
                // apart the lease's drift margin allows for.
                rate_ppm: rng.u64(SLOWEST_CLOCK_PPM..=FASTEST_CLOCK_PPM),
                isolated_until: 0,
                join_existing: false,
            })
            .collect();
        Stack {
            rng,
            now: 0,
            clock: Arc::new(AtomicU64::new(0)),
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            members,
            tickets: HashMap::new(),
            busy: vec![false; CLIENTS],
            target: (0..CLIENTS).map(|c| c % opts.nodes).collect(),
            history: History::default(),
            watches: Watches::default(),
            report: StackReport::default(),
            faults_until: u64::MAX,
            next_value: 0,
            leases: BTreeMap::new(),
            granting: false,
            grant_sent: 0,
            lease_target: 0,
            lockers: (0..LOCKERS).map(|l| Locker::new(l % opts.nodes)).collect(),
            holdings: Holdings::default(),
            trace: std::env::var_os("SYNOD_SIM_TRACE").is_some(),
            opts,
        }
    }

    /// Runs the seed to its end and checks what happened.
    pub fn run(mut self) -> StackReport {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
        for c in 0..CLIENTS {
            let at = self.rng.u64(0..50 * MS);
            self.schedule(at, Event::Client { client: c });
        }
        self.schedule_fault();
        self.schedule(100 * MS, Event::Leases);
        for locker in 0..LOCKERS {
            self.schedule_within(0..100 * MS, Event::Locker { locker });
        }
        // Enough time for the operations at a few per second each, with
        // faults; then a quiet end.
        let limit = (self.opts.ops as u64 / CLIENTS as u64 + 1) * 400 * MS + 5_000 * MS;
        while let Some(((at, _), event)) = self.events.pop_first() {
            self.now = at;
            self.clock.store(at, Ordering::Relaxed);
            if self.faults_until == u64::MAX && (self.history.completed() >= self.opts.ops || at >= limit) {
                self.quiet_down();
            }
            if at > self.faults_until.saturating_add(QUIET) {
                break;
            }
            self.handle(event);
            if self.report.violation.is_some() {
                break;
            }
        }
        self.finish()
    }

    /// Schedules `event` after a delay drawn from `range`.
    fn schedule_within(&mut self, range: std::ops::Range<Micros>, event: Event) {
        let after = self.rng.u64(range);
        self.schedule(after, event);
    }

    fn schedule(&mut self, after: Micros, event: Event) {
        self.seq += 1;
        self.events.insert((self.now + after, self.seq), event);
    }

    /// Ends the faults: every member up and connected, for a quiet end.
    fn quiet_down(&mut self) {
        self.faults_until = self.now;
        for i in 0..self.nodes.len() {
            self.nodes[i].isolated_until = 0;
            if self.nodes[i].up.is_none() {
                self.schedule(MS, Event::Restart { node: i });
            }
        }
    }

    /// Prints what happens to member `i` when SYNOD_SIM_TRACE is set.
    fn trace(&self, i: usize, what: std::fmt::Arguments) {
        if self.trace {
            eprintln!("{} ms: member {}: {what}", self.now / MS, self.nodes[i].id);
        }
    }

    fn faulty(&self) -> bool {
        self.now < self.faults_until
    }

    fn schedule_fault(&mut self) {
        let after = self.rng.u64(20 * MS..400 * MS);
        let node = self.rng.usize(..self.nodes.len());
        let event = match self.rng.u8(..3) {
            0 => Event::Crash { node },
            _ => Event::Isolate { node, until: self.now + after + self.rng.u64(50 * MS..1_000 * MS) },
        };
        self.schedule(after, event);
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
            Event::Tick { node, life } => {
                if self.nodes[node].life != life {
                    return;
                }
                if let Some(up) = self.nodes[node].up.as_mut() {
                    let answers = up.driver.tick();
                    self.answered(node, answers);
                    self.turn(node);
                    self.schedule(TICK / 2, Event::Tick { node, life });
                }
            }
            Event::Synced { node, life } => self.synced(node, life),
            Event::SnapshotStored { node, life, snapshot } => {
                if self.nodes[node].life != life {
                    return;
                }
                let slot = snapshot.slot;
                if self.nodes[node].disk.store_snapshot(&snapshot).is_err() {
                    // Fail-stop, as the runtime stops on a failed save.
                    self.crash(node);
                    self.schedule_within(10 * MS..200 * MS, Event::Restart { node });
                    return;
                }
                if let Some(up) = self.nodes[node].up.as_mut() {
                    up.storing -= 1;
                    up.driver.snapshot_saved(slot);
                    self.turn(node);
                }
            }
            Event::Client { client } => self.client(client),
            Event::Crash { node } => {
                if self.faulty() {
                    self.crash(node);
                    let down = self.rng.u64(5 * MS..800 * MS);
                    self.schedule(down, Event::Restart { node });
                    self.schedule_fault();
                }
            }
            Event::Restart { node } => {
                if self.nodes[node].up.is_none() {
                    self.start(node);
                }
            }
            Event::Keeper { node, life } => self.keeper(node, life),
            Event::Leases => self.lease_client(),
            Event::Locker { locker } => self.locker(locker),
            Event::Isolate { node, until } => {
                if self.faulty() {
                    self.report.faults += 1;
                    self.nodes[node].isolated_until = until;
                    self.schedule_fault();
                }
            }
        }
    }

    /// Starts member `i` from what its disk holds.
    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.life += 1;
        let life = node.life;
        let (feed, _wake) = RevisionFeed::new();
        let machine = EtcdMachine::with_revision_feed(feed.clone());
        let cfg = sim_config(node.id, self.members.clone(), self.opts.protocol_plant);
        let recovered = match node.disk.open() {
            Ok(r) => r,
            Err(OpenError::Failed(_)) => {
                // An I/O error at start: the supervisor tries again.
                self.schedule_within(10 * MS..200 * MS, Event::Restart { node: i });
                return;
            }
            Err(OpenError::Damaged(e)) if node.disk.flipped_bits() == 0 => {
                // Crashes, torn writes and I/O errors alone must never
                // leave a log recovery refuses.
                self.report.violation = Some(format!("member {}'s log cannot be opened after crashes: {e}", node.id));
                return;
            }
            Err(OpenError::Damaged(_)) => {
                // A flipped bit recovery refused (rather than believe it):
                // the operator replaces the disk and restarts the member as
                // one joining a running cluster (etcd's
                // --initial-cluster-state existing), so that it rejoins as
                // one that lost its state.
                self.report.disks_replaced += 1;
                node.disk.replace(self.rng.u64(..));
                node.join_existing = true;
                self.schedule_within(10 * MS..200 * MS, Event::Restart { node: i });
                return;
            }
        };
        let join_existing = node.join_existing;
        if self.trace {
            eprintln!(
                "{} ms: member {} starts: {} records, snapshot {:?}, torn tail {}, bits flipped {}",
                self.now / MS,
                node.id,
                recovered.records.len(),
                recovered.snapshot.as_ref().map(|s| s.slot),
                recovered.torn_tail,
                node.disk.flipped_bits()
            );
        }
        let replica = match recover_replica(&cfg, join_existing, machine, recovered.snapshot, recovered.records) {
            Ok(r) => r,
            Err(e) => {
                self.report.violation = Some(format!("member {} cannot recover: {e}", node.id));
                return;
            }
        };
        let outbox = Outbox::default();
        let clock = Arc::new(SimClock { now: self.clock.clone(), start: self.now, rate_ppm: node.rate_ppm });
        let driver = Driver::new(
            replica,
            Box::new(outbox.clone()),
            clock.clone(),
            DriverConfig {
                tick: Duration::from_micros(TICK),
                request_timeout: Duration::from_micros(REQUEST_TIMEOUT),
                metrics: Metrics::new(),
                client_seed: self.rng.u64(..),
            },
        );
        let start = driver.state_machine().kv().revision();
        #[allow(unused_mut)]
        let mut cursor = Cursor::new(start);
        #[cfg(feature = "planting")]
        {
            cursor.skip_revision = self.opts.plant == Some(StackPlant::WatchSkipRevision);
        }
        // What recovery applied is already in the store: the hub starts
        // after it, as a starting server's does.
        feed.take();
        node.up = Some(Up {
            driver,
            outbox,
            feed,
            cursor,
            watcher: Watcher::new(node.id, start),
            syncing: false,
            storing: 0,
            keeper: Deadlines::default(),
            clock,
            traced: None,
        });
        self.schedule_within(0..TICK, Event::Tick { node: i, life });
        self.schedule_within(0..KEEPER, Event::Keeper { node: i, life });
        self.turn(i);
    }

    /// Member `i` crashes: what its disk had not synced may be lost, its
    /// clients learn nothing more.
    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.up.take().is_none() {
            return;
        }
        node.life += 1;
        let before = self.nodes[i].disk.listing();
        let node = &mut self.nodes[i];
        self.report.crashes += 1;
        self.report.faults += 1;
        node.disk.crash();
        if self.trace {
            let after = node.disk.listing();
            self.trace(i, format_args!("crashes; disk before: {before}; after: {after}"));
        }
        let mut lost: Vec<(usize, Ticket)> = self.tickets.keys().filter(|(n, _)| *n == i).copied().collect();
        lost.sort_unstable();
        for key in lost {
            match self.tickets.remove(&key).expect("listed") {
                InFlight::Kv { client, index, .. } => {
                    self.history.unknown(index);
                    self.busy[client] = false;
                    self.schedule_within(MS..20 * MS, Event::Client { client });
                }
                InFlight::Grant => self.granting = false,
                InFlight::Revoke { .. } => {}
                InFlight::Lock { locker } => {
                    // Whether the request took effect is unknown: start
                    // again with a fresh lease (a key it may have made
                    // goes when its lease runs out).
                    let l = &mut self.lockers[locker];
                    l.busy = false;
                    if l.step != Step::Polling {
                        l.step = Step::Idle;
                        l.lease = None;
                    }
                    self.schedule_within(MS..20 * MS, Event::Locker { locker });
                }
            }
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let Some(i) = index_of(&self.nodes, to) else { return };
        if self.nodes[i].isolated_until > self.now {
            return;
        }
        let Some(up) = self.nodes[i].up.as_mut() else { return };
        match decode_message(&bytes) {
            Ok(msg) => up.driver.peer(from, msg),
            Err(e) => {
                self.report.violation = Some(format!("a message that does not decode: {e}"));
                return;
            }
        }
        self.turn(i);
    }

    fn synced(&mut self, i: usize, life: u64) {
        if self.nodes[i].life != life {
            return;
        }
        let node = &mut self.nodes[i];
        let Some(up) = node.up.as_mut() else { return };
        up.syncing = false;
        match node.disk.sync() {
            Ok(lsn) => {
                up.driver.durable(lsn);
                self.trace(i, format_args!("durable through {lsn}"));
            }
            Err(e) => {
                // Fail-stop: the member stops, a supervisor restarts it.
                let _ = e;
                self.crash(i);
                self.schedule_within(10 * MS..200 * MS, Event::Restart { node: i });
                return;
            }
        }
        self.turn(i);
    }

    /// Carries out what member `i`'s last input produced.
    fn turn(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let Some(up) = node.up.as_mut() else { return };
        let work = up.driver.carry_out();
        let mut failed = None;
        if let Some(batch) = work.persist {
            match node.disk.append(&batch.records) {
                Ok(first) if first == batch.first => {}
                Ok(first) => {
                    self.report.violation = Some(format!(
                        "member {}: the log gave {first} where the replica expected {}",
                        node.id, batch.first
                    ));
                    return;
                }
                Err(e) => failed = Some(e),
            }
            if !up.syncing {
                up.syncing = true;
                let life = node.life;
                let after = self.rng.u64(100..2 * MS);
                self.seq += 1;
                self.events.insert((now + after, self.seq), Event::Synced { node: i, life });
            }
        }
        if let Some(snapshot) = work.snapshot {
            up.storing += 1;
            let life = node.life;
            let after = self.rng.u64(MS..10 * MS);
            self.seq += 1;
            self.events.insert((now + after, self.seq), Event::SnapshotStored { node: i, life, snapshot });
        }
        if let Some(before) = work.truncate_before {
            node.disk.truncate(before.saturating_sub(1));
            if self.trace {
                eprintln!("{} ms: member {}: log truncated before {before}", now / MS, node.id);
            }
        }
        if self.trace {
            let v = up.driver.view().borrow().clone();
            let lead = (v.is_leader(), v.holds_lease, v.ballot.round);
            if up.traced != Some(lead) {
                up.traced = Some(lead);
                eprintln!("{} ms: member {}: leads {} lease {} round {}", now / MS, node.id, lead.0, lead.1, lead.2);
            }
        }
        // The watch hub takes what was applied.
        let mut checked = Ok(0);
        match up.cursor.next(up.feed.take()) {
            Ok(None) => {}
            Ok(Some(batch)) => checked = up.watcher.batch(&batch, &mut self.watches),
            Err(()) => {
                let batch = up.cursor.read_store(up.driver.state_machine().kv());
                checked = up.watcher.batch(&batch, &mut self.watches);
            }
        }
        match checked {
            Ok(n) => self.report.watched += n,
            Err(v) => {
                self.report.violation = Some(v);
                return;
            }
        }
        let sent: Vec<(NodeId, Message)> = std::mem::take(&mut *up.outbox.0.lock().expect("single-threaded"));
        let from = node.id;
        let isolated = node.isolated_until > now;
        self.answered(i, work.answers);
        if failed.is_some() {
            // A write the log refused: fail-stop.
            self.crash(i);
            self.schedule_within(10 * MS..200 * MS, Event::Restart { node: i });
            return;
        }
        for (to, msg) in sent {
            if isolated || self.faulty() && self.rng.u8(..100) < 2 {
                if self.faulty() {
                    self.report.faults += 1;
                }
                continue;
            }
            let delay = if self.faulty() && self.rng.u8(..100) < 5 {
                self.rng.u64(5 * MS..40 * MS)
            } else {
                self.rng.u64(100..2 * MS)
            };
            let bytes = encode_message(&msg);
            self.schedule(delay, Event::Deliver { from, to, bytes });
        }
    }

    /// A client sends its next operation.
    fn client(&mut self, c: usize) {
        if self.busy[c] || self.history.completed() >= self.opts.ops && !self.faulty() {
            return;
        }
        let node = self.target[c];
        if self.nodes[node].up.is_none() {
            self.target[c] = self.rng.usize(..self.nodes.len());
            self.schedule_within(MS..20 * MS, Event::Client { client: c });
            return;
        }
        let key = KEYS[self.rng.usize(..KEYS.len())].to_string();
        self.next_value += 1;
        let value = format!("{c}-{}", self.next_value);
        let op = match self.rng.u8(..10) {
            0..=2 => KvOp::Get(key),
            3..=5 => KvOp::Put(key, value),
            6 => KvOp::Delete(key),
            _ => {
                let expected = self.history.last_value_seen(&key);
                KvOp::Cas { key, expected, new: value }
            }
        };
        let request = request_for(&op);
        let index = self.history.invoke(c as u64, self.now, op.clone());
        let up = self.nodes[node].up.as_mut().expect("checked above");
        let (ticket, answers) = up.driver.request(request);
        self.busy[c] = true;
        self.tickets.insert((node, ticket), InFlight::Kv { client: c, op, index });
        self.answered(node, answers);
        self.turn(node);
    }

    /// Member `i` answered these tickets.
    fn answered(&mut self, i: usize, answers: Vec<(Ticket, Answer<synod_server::state::machine::Output>)>) {
        for (ticket, answer) in answers {
            let (client, op, index) = match self.tickets.remove(&(i, ticket)) {
                None => continue,
                Some(InFlight::Kv { client, op, index }) => (client, op, index),
                Some(InFlight::Grant) => {
                    self.granted(answer);
                    continue;
                }
                Some(InFlight::Lock { locker }) => {
                    self.lock_answered(i, locker, answer);
                    continue;
                }
                Some(InFlight::Revoke { lease }) => {
                    if let Some(up) = self.nodes[i].up.as_mut() {
                        match answer {
                            Answer::Value(Ok(Ok(_))) => up.keeper.revoked(lease),
                            Answer::Value(Ok(Err(MachineError::Kv(KvError::LeaseNotFound)))) => {}
                            _ => up.keeper.revoke_failed(lease),
                        }
                    }
                    continue;
                }
            };
            self.busy[client] = false;
            let outcome = match answer {
                Answer::Value(Ok(output)) => interpret(&op, output),
                Answer::Value(Err(synod_runtime::Error::NotLeader { leader })) => {
                    self.target[client] = self.member_or_any(leader);
                    Outcome::Unknown
                }
                _ => {
                    self.target[client] = self.rng.usize(..self.nodes.len());
                    Outcome::Unknown
                }
            };
            match outcome {
                Outcome::Done(ret, revision) => {
                    self.history.complete(index, self.now, ret, revision);
                    self.report.ops += 1;
                }
                Outcome::Unknown => self.history.unknown(index),
                Outcome::Wrong(why) => {
                    self.report.violation = Some(format!("{op:?} answered {why}"));
                }
            }
            self.schedule_within(0..20 * MS, Event::Client { client });
        }
    }

    /// The index of member `id`, or of any member if none is named.
    fn member_or_any(&mut self, id: Option<NodeId>) -> usize {
        match id.and_then(|l| index_of(&self.nodes, l)) {
            Some(i) => i,
            None => self.rng.usize(..self.nodes.len()),
        }
    }

    /// The lease keeper's round on member `i`, as the server's keeper runs
    /// it: while leading, count the leases down and revoke the expired ones
    /// through the log. A revoke must come no sooner than the lease's TTL
    /// after its holder last heard it was extended, however fast the
    /// leader's clock runs.
    fn keeper(&mut self, i: usize, life: u64) {
        if self.nodes[i].life != life {
            return;
        }
        let now = self.now;
        let Some(up) = self.nodes[i].up.as_mut() else { return };
        let term = leading(&up.driver.view().borrow());
        let table: HashMap<i64, i64> =
            up.driver.state_machine().kv().leases().map(|(id, l)| (id, l.granted_ttl)).collect();
        let expired = up.keeper.expired(term, &table, up.clock.now());
        let mut tickets = Vec::new();
        for lease in expired {
            if let Some(seen) = self.leases.get(&lease) {
                // Real time since the holder's last extension, against the
                // TTL as the fastest clock may count it.
                let since = now - seen.renewed;
                let ttl = seen.ttl as u64 * 1_000_000;
                if since * FASTEST_CLOCK_PPM < ttl * 1_000_000 {
                    self.report.violation = Some(format!(
                        "member {} revoked lease {lease:x} {} ms after its holder last extended it (TTL {} s)",
                        self.nodes[i].id,
                        since / MS,
                        seen.ttl
                    ));
                    return;
                }
            }
            self.report.expired += 1;
            if self.trace {
                eprintln!("{} ms: member {}: revokes lease {lease:x} in term {term:?}", now / MS, i + 1);
            }
            let payload = Proposal::Kv(KvCommand::LeaseRevoke(LeaseRevokeRequest { id: lease })).to_bytes();
            let (ticket, answers) = up.driver.request(Request::Propose(payload));
            tickets.push((ticket, lease, answers));
        }
        for (ticket, lease, answers) in tickets {
            self.tickets.insert((i, ticket), InFlight::Revoke { lease });
            self.answered(i, answers);
        }
        self.turn(i);
        self.schedule(KEEPER, Event::Keeper { node: i, life });
    }

    /// The lease client: grants leases (TTL 2 to 4 s), keeps some alive at
    /// the leader, lets others run out.
    fn lease_client(&mut self) {
        self.schedule_within(100 * MS..400 * MS, Event::Leases);
        if !self.faulty() && self.history.completed() >= self.opts.ops {
            return;
        }
        let i = self.lease_target;
        let now = self.now;
        let Some(up) = self.nodes[i].up.as_mut() else {
            self.lease_target = self.rng.usize(..self.nodes.len());
            return;
        };
        if !self.granting && self.leases.values().filter(|l| l.kept).count() < 2 {
            let ttl = self.rng.i64(2..=4);
            let payload = Proposal::Kv(KvCommand::LeaseGrant(LeaseGrantRequest { ttl, id: 0 })).to_bytes();
            let (ticket, answers) = up.driver.request(Request::Propose(payload));
            self.granting = true;
            self.grant_sent = now;
            self.tickets.insert((i, ticket), InFlight::Grant);
            self.answered(i, answers);
            self.turn(i);
            return;
        }
        // Keep-alives, as the lease service serves them: at the leader.
        let view = up.driver.view().borrow().clone();
        let Some(term) = leading(&view) else {
            self.lease_target = self.member_or_any(view.leader);
            return;
        };
        let kv = up.driver.state_machine().kv();
        let at = up.clock.now();
        for (&id, seen) in self.leases.iter_mut().filter(|(_, l)| l.kept) {
            let granted = kv.lease(id).map(|l| l.granted_ttl);
            match up.keeper.renew(term, id, granted, at) {
                Renewal::Renewed(_) => {
                    seen.renewed = now;
                    if self.trace {
                        eprintln!("{} ms: member {}: renewed lease {id:x} in term {term:?}", now / MS, i + 1);
                    }
                }
                Renewal::NotFound | Renewal::NotLeader(_) => seen.kept = false,
            }
        }
        // Now and then the holder walks away from one.
        if self.rng.u8(..10) == 0 {
            if let Some(seen) = self.leases.values_mut().find(|l| l.kept) {
                seen.kept = false;
            }
        }
    }

    /// Locker `k`'s next step: grant a lease, create its key, read who holds
    /// the lock until it does, hold it a while (keeping its lease alive),
    /// release it.
    fn locker(&mut self, k: usize) {
        let now = self.now;
        if self.lockers[k].busy {
            return;
        }
        if !self.faulty() && self.history.completed() >= self.opts.ops && self.lockers[k].since.is_none() {
            return;
        }
        self.keep_alive(k);
        let l = &mut self.lockers[k];
        if let (Some(since), Step::Holding { until }) = (l.since, l.step) {
            // The belief ends when the holder releases, or when its lease
            // may have run out, whichever comes first.
            let safe = l.safe_until(FASTEST_CLOCK_PPM);
            if now >= until || now >= safe {
                l.since = None;
                if let Err(v) = self.holdings.held(k, since, now.min(safe)) {
                    self.report.violation = Some(v);
                    return;
                }
                let key = self.lockers[k].key().expect("a holder has a key");
                let delete = KvCommand::DeleteRange(DeleteRangeRequest { key, ..Default::default() });
                self.lockers[k].step = Step::Releasing;
                self.lock_request(k, Request::Propose(Proposal::Kv(delete).to_bytes()));
                return;
            }
            self.schedule_within(5 * MS..30 * MS, Event::Locker { locker: k });
            return;
        }
        let request = match l.step {
            Step::Idle | Step::Granting => {
                l.step = Step::Granting;
                let ttl = self.rng.i64(2..=3);
                KvCommand::LeaseGrant(LeaseGrantRequest { ttl, id: 0 })
            }
            Step::Creating => {
                let (lease, _) = l.lease.expect("granted");
                KvCommand::Put(PutRequest { key: l.key().expect("granted"), lease, ..Default::default() })
            }
            Step::Polling => {
                let range = RangeRequest {
                    key: locks::PREFIX.as_bytes().to_vec(),
                    range_end: locks::PREFIX_END.as_bytes().to_vec(),
                    limit: 1,
                    sort_order: SortOrder::Ascend as i32,
                    sort_target: SortTarget::Create as i32,
                    ..Default::default()
                };
                self.lock_request(k, Request::Read(Query::Range(range).to_bytes()));
                return;
            }
            Step::Holding { .. } | Step::Releasing => return,
        };
        self.lock_request(k, Request::Propose(Proposal::Kv(request).to_bytes()));
    }

    /// Keeps locker `k`'s lease alive at the leader, as the lease service
    /// serves keep-alives, once a third of its TTL has passed.
    fn keep_alive(&mut self, k: usize) {
        let now = self.now;
        let l = &mut self.lockers[k];
        let Some((id, ttl)) = l.lease else { return };
        if now < l.renewed + ttl as u64 * 1_000 * MS / 3 {
            return;
        }
        let Some(up) = self.nodes[l.target].up.as_mut() else {
            l.target = self.rng.usize(..self.nodes.len());
            return;
        };
        let view = up.driver.view().borrow().clone();
        let Some(term) = leading(&view) else {
            l.target = match view.leader.and_then(|id| index_of(&self.nodes, id)) {
                Some(i) => i,
                None => self.rng.usize(..self.nodes.len()),
            };
            return;
        };
        let granted = up.driver.state_machine().kv().lease(id).map(|l| l.granted_ttl);
        if let Renewal::Renewed(_) = up.keeper.renew(term, id, granted, up.clock.now()) {
            if self.trace {
                eprintln!("{} ms: member {}: renewed lease {id:x} in term {term:?}", now / MS, self.nodes[l.target].id);
            }
            l.renewed = now;
            if let Some(seen) = self.leases.get_mut(&id) {
                seen.renewed = now;
            }
        }
    }

    fn lock_request(&mut self, k: usize, request: Request) {
        let i = self.lockers[k].target;
        let Some(up) = self.nodes[i].up.as_mut() else {
            self.lockers[k].target = self.rng.usize(..self.nodes.len());
            self.schedule_within(MS..20 * MS, Event::Locker { locker: k });
            return;
        };
        let (ticket, answers) = up.driver.request(request);
        self.lockers[k].busy = true;
        self.lockers[k].asked = self.now;
        self.tickets.insert((i, ticket), InFlight::Lock { locker: k });
        self.answered(i, answers);
        self.turn(i);
    }

    /// Locker `k`'s request to member `i` was answered.
    fn lock_answered(&mut self, i: usize, k: usize, answer: Answer<synod_server::state::machine::Output>) {
        let now = self.now;
        self.lockers[k].busy = false;
        let mut again = 1..20 * MS;
        let l = &mut self.lockers[k];
        match (l.step, answer) {
            (Step::Granting, Answer::Value(Ok(Ok(Reply::Write(Response::LeaseGrant(r)))))) => {
                // Counted from when it asked (see `granted`).
                l.lease = Some((r.id, r.ttl));
                l.renewed = l.asked;
                l.step = Step::Creating;
                // The keepers' check covers lockers' leases too.
                self.leases.insert(r.id, LeaseSeen { ttl: r.ttl, renewed: l.asked, kept: false });
            }
            (Step::Creating, Answer::Value(Ok(Ok(Reply::Write(Response::Put(_)))))) => l.step = Step::Polling,
            (Step::Polling, Answer::Value(Ok(Ok(Reply::Range(r))))) => {
                if r.kvs.first().map(|kv| &kv.key) == l.key().as_ref() {
                    l.since = Some(now);
                    l.step = Step::Holding { until: now + self.rng.u64(20 * MS..300 * MS) };
                    again = 1..2;
                } else {
                    again = 10 * MS..40 * MS;
                }
            }
            (Step::Polling, _) => {
                l.target = self.rng.usize(..self.nodes.len());
            }
            (Step::Releasing, _) => {
                l.step = Step::Idle;
                l.lease = None;
                again = 10 * MS..100 * MS;
            }
            (_, Answer::Value(Err(synod_runtime::Error::NotLeader { leader }))) => {
                // Not taken: ask the leader.
                let leader = leader.and_then(|id| index_of(&self.nodes, id));
                l.target = leader.unwrap_or(i);
                l.step = Step::Idle;
                l.lease = None;
            }
            _ => {
                // Refused or unknown: start again with a fresh lease.
                l.target = self.rng.usize(..self.nodes.len());
                l.step = Step::Idle;
                l.lease = None;
            }
        }
        self.schedule_within(again, Event::Locker { locker: k });
    }

    /// The lease client's grant was answered.
    fn granted(&mut self, answer: Answer<synod_server::state::machine::Output>) {
        self.granting = false;
        match answer {
            Answer::Value(Ok(Ok(Reply::Write(Response::LeaseGrant(r))))) => {
                self.report.leases += 1;
                // The holder may count the TTL from when it asked, no later:
                // the leader starts counting when it applies the grant,
                // before the answer reaches the holder.
                self.leases.insert(r.id, LeaseSeen { ttl: r.ttl, renewed: self.grant_sent, kept: true });
            }
            Answer::Value(Err(synod_runtime::Error::NotLeader { leader })) => {
                self.lease_target = self.member_or_any(leader);
            }
            _ => self.lease_target = self.rng.usize(..self.nodes.len()),
        }
    }

    /// The checks at the end of the run.
    fn finish(mut self) -> StackReport {
        self.report.disk_faults = self.nodes.iter().map(|n| n.disk.injected()).sum();
        self.report.locks = self.holdings.count;
        self.report.unknown = self.history.unknown_writes();
        if self.report.violation.is_some() {
            return self.report;
        }
        if let Err(v) = self.history.check() {
            self.report.violation = Some(v);
            return self.report;
        }
        if let Err(v) = self.watches.check_acknowledged(&self.history) {
            self.report.violation = Some(v);
            return self.report;
        }
        // Convergence: every member holds the same store.
        let mut stores = BTreeSet::new();
        for n in &self.nodes {
            let Some(up) = &n.up else {
                self.report.violation = Some(format!("member {} is still down at the end", n.id));
                return self.report;
            };
            let kv = up.driver.state_machine().kv();
            let hash = kv.hash_kv(0).map(|h| h.hash).unwrap_or_default();
            stores.insert((kv.revision(), hash));
        }
        if stores.len() > 1 {
            self.report.violation = Some(format!("members differ after the quiet end: (revision, hash) {stores:?}"));
        }
        self.report
    }
}

/// The index of member `id` among `nodes`.
fn index_of(nodes: &[Node], id: NodeId) -> Option<usize> {
    nodes.iter().position(|n| n.id == id)
}

/// What an answer means to the checker.
enum Outcome {
    /// The operation returned this, and the write (if one) is at this
    /// revision.
    Done(KvRet<String>, Option<i64>),
    /// Whether it took effect is unknown (a write), or it had none (a read).
    Unknown,
    /// An answer no correct member gives for this operation.
    Wrong(String),
}

/// The etcd request for a checker's operation.
fn request_for(op: &KvOp<String, String>) -> Request {
    let put = |key: &String, value: &String| PutRequest {
        key: key.clone().into_bytes(),
        value: value.clone().into_bytes(),
        ..Default::default()
    };
    let proposal = |cmd: KvCommand| Request::Propose(Proposal::Kv(cmd).to_bytes());
    match op {
        KvOp::Get(key) => {
            Request::Read(Query::Range(RangeRequest { key: key.clone().into_bytes(), ..Default::default() }).to_bytes())
        }
        KvOp::Put(key, value) => proposal(KvCommand::Put(put(key, value))),
        KvOp::Delete(key) => {
            proposal(KvCommand::DeleteRange(DeleteRangeRequest { key: key.clone().into_bytes(), ..Default::default() }))
        }
        KvOp::Cas { key, expected, new } => {
            let compare = match expected {
                Some(v) => Compare {
                    key: key.clone().into_bytes(),
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Value as i32,
                    target_union: Some(TargetUnion::Value(v.clone().into_bytes())),
                    ..Default::default()
                },
                None => Compare {
                    key: key.clone().into_bytes(),
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Version as i32,
                    target_union: Some(TargetUnion::Version(0)),
                    ..Default::default()
                },
            };
            proposal(KvCommand::Txn(TxnRequest {
                compare: vec![compare],
                success: vec![RequestOp { request: Some(OpRequest::RequestPut(put(key, new))) }],
                failure: vec![],
            }))
        }
    }
}

/// What the state machine's answer says about `op`.
fn interpret(op: &KvOp<String, String>, output: Result<Reply, MachineError>) -> Outcome {
    let reply = match output {
        Ok(r) => r,
        Err(e) => return Outcome::Wrong(format!("an error: {e}")),
    };
    match (op, reply) {
        (KvOp::Get(_), Reply::Range(r)) => {
            let value = r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
            Outcome::Done(KvRet::Value(value), None)
        }
        (KvOp::Put(..), Reply::Write(Response::Put(r))) => {
            Outcome::Done(KvRet::Ok, r.header.as_ref().map(|h| h.revision))
        }
        (KvOp::Delete(_), Reply::Write(Response::DeleteRange(r))) => {
            // A delete of nothing writes no revision.
            let revision = (r.deleted > 0).then(|| r.header.as_ref().map_or(0, |h| h.revision));
            Outcome::Done(KvRet::Ok, revision)
        }
        (KvOp::Cas { .. }, Reply::Write(Response::Txn(r))) => {
            let revision = r.succeeded.then(|| r.header.as_ref().map_or(0, |h| h.revision));
            Outcome::Done(KvRet::Swapped(r.succeeded), revision)
        }
        (_, reply) => Outcome::Wrong(format!("{reply:?}")),
    }
}
