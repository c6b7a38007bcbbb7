//! The replica's event loop as a synchronous, deterministic state machine.
//!
//! A [`Driver`] is everything the runtime does around the protocol core
//! except waiting: it takes one event at a time (a peer's message, a
//! client's request, a durability notice, the passing of time), steps the
//! core, sends what the core sends through its [`Transport`], keeps track
//! of who waits for what and until when, and hands back the work only the
//! caller can do ([`Work`]): append a batch of records to the log and
//! report when it is durable, store a snapshot, drop old log segments,
//! answer the clients it names by [`Ticket`].
//!
//! Two callers drive it. In production the node's tokio task
//! ([`crate::node`]) waits on channels and timers, feeds the driver, and
//! submits the batches to the write-ahead log's group commit. The
//! whole-stack simulator (`synod-sim --stack`) drives the same driver from
//! one thread with simulated time, an in-memory transport and the real
//! write-ahead log over a fault-injecting disk: what it tests is what runs.
//!
//! The order the core relies on is kept by construction: a batch of records
//! is handed back before anything is sent in the same turn, the core is told
//! `Durable` only once the caller knows the log made it so, and the core
//! itself holds back every reply that depends on records not yet durable.
//!
//! A driver reads no clock of its own: time comes from a [`Clock`], so the
//! simulator can run many drivers on skewed simulated clocks.

use crate::codec::encode_record;
use crate::net::Transport;
use crate::view::ClusterView;
use crate::{Error, Status};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use synod_paxos::{
    Change, ClientError, Command, CommandId, Input, Lsn, Membership, Message, NodeId, Replica, Slot, Snapshot,
    StateMachine,
};
use tokio::sync::watch;
use tracing::warn;

/// Where a driver reads the time: how long since it started. Monotonic.
pub trait Clock: Send + Sync {
    /// Time since the driver's start.
    fn now(&self) -> Duration;
}

/// The wall clock: time since this value was made.
#[derive(Debug, Clone, Copy)]
pub struct WallClock(std::time::Instant);

impl WallClock {
    /// A clock whose time starts now.
    pub fn start() -> WallClock {
        WallClock(std::time::Instant::now())
    }
}

impl Clock for WallClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Names one client request the driver holds until it answers it.
pub type Ticket = u64;

/// A request a client waits on.
#[derive(Debug, Clone)]
pub enum Request {
    /// Replicate a payload; the driver names the command.
    Propose(Bytes),
    /// Replicate a command the caller named ([`crate::Handle::command`]).
    ProposeCommand(Command),
    /// A linearizable read.
    Read(Bytes),
    /// Change the membership.
    Reconfigure(Change),
    /// Hand leadership over to a voter.
    Transfer(NodeId),
}

/// What a client gets for its request.
#[derive(Debug)]
pub enum Answer<O> {
    /// A proposal's or a read's result.
    Value(Result<O, Error>),
    /// The slot a membership change was chosen in.
    Slot(Result<Slot, Error>),
    /// A leadership transfer completed.
    Done(Result<(), Error>),
}

impl<O> Answer<O> {
    /// The same failure, in the shape of the request `ticket` was given for.
    fn failed(kind: Kind, e: Error) -> Answer<O> {
        match kind {
            Kind::Proposal | Kind::Read => Answer::Value(Err(e)),
            Kind::Reconfig => Answer::Slot(Err(e)),
            Kind::Transfer => Answer::Done(Err(e)),
        }
    }
}

/// Answers for waiting clients, by ticket.
pub type Answers<O> = Vec<(Ticket, Answer<O>)>;

/// A batch of records to append to the log, in order, under consecutive
/// numbers from `first`.
#[derive(Debug)]
pub struct Batch {
    /// The number the log must give the first record.
    pub first: Lsn,
    /// The records, encoded ([`crate::codec::encode_record`]).
    pub records: Vec<Vec<u8>>,
}

/// What the caller must do after a turn of the driver.
#[derive(Debug)]
pub struct Work<O> {
    /// Append these records; report [`Driver::durable`] once they are.
    pub persist: Option<Batch>,
    /// Store this snapshot; report [`Driver::snapshot_saved`] once it is.
    pub snapshot: Option<Snapshot>,
    /// The log's records below this number are no longer needed (a stored
    /// snapshot covers them).
    pub truncate_before: Option<Lsn>,
    /// Answers for waiting clients.
    pub answers: Answers<O>,
}

impl<O> Default for Work<O> {
    fn default() -> Self {
        Work { persist: None, snapshot: None, truncate_before: None, answers: Vec::new() }
    }
}

/// Client ids with this bit set are the runtime's own ([`ClientPool`]);
/// callers name commands with the others ([`crate::Handle::command`]).
pub(crate) const RUNTIME_CLIENTS: u64 = 1 << 63;

/// Client identities for the runtime's own proposals: each in-flight
/// proposal borrows a (client, seq) pair; a client id has one proposal in
/// flight at a time, so "applied once" per (client, seq) holds with any
/// number of concurrent proposals. A client whose proposal timed out is never
/// reused (its command may still be applied later).
struct ClientPool {
    base: u64,
    minted: u64,
    free: Vec<(u64, u64)>,
}

impl ClientPool {
    /// `random` names this incarnation, so that a restarted member does not
    /// reuse its ids; the pool's ids are in the upper half, so that
    /// callers' ids never meet them.
    fn new(random: u64) -> ClientPool {
        ClientPool { base: (random | RUNTIME_CLIENTS) & !0xFFFF_FFFF, minted: 0, free: Vec::new() }
    }

    fn acquire(&mut self) -> CommandId {
        let (client, seq) = self.free.pop().unwrap_or_else(|| {
            self.minted += 1;
            (self.base | self.minted, 1)
        });
        CommandId { client, seq }
    }

    fn release(&mut self, id: CommandId) {
        self.free.push((id.client, id.seq + 1));
    }
}

/// What kind of answer a ticket waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Proposal,
    Read,
    Reconfig,
    Transfer,
}

/// A request in the core's hands: what it is, when it came, when it gives
/// up, and for a proposal whose id the pool lent (to give back).
struct Waiting {
    kind: Kind,
    started: Duration,
    deadline: Duration,
    pooled: Option<CommandId>,
}

/// The last ping to one peer, timed for its answer.
struct Ping {
    round: u64,
    sent: Duration,
    rtt: prometheus::Histogram,
}

/// How a driver is set up.
pub struct DriverConfig {
    /// Length of one protocol tick.
    pub tick: Duration,
    /// A request not answered in this long fails with [`Error::Timeout`].
    pub request_timeout: Duration,
    /// Where the driver counts what it does.
    pub metrics: crate::Metrics,
    /// Names this incarnation's own client ids (random in production, so a
    /// restarted member does not reuse them; a seed in the simulator).
    pub client_seed: u64,
}

/// The replica's event loop without the waiting: see the module docs.
pub struct Driver<S: StateMachine> {
    replica: Replica<S>,
    transport: Box<dyn Transport>,
    clock: Arc<dyn Clock>,
    tick: Duration,
    /// Protocol ticks stepped so far.
    ticks: u64,
    timeout: Duration,
    waiting: HashMap<Ticket, Waiting>,
    /// The ticket of each proposal in the core's hands, by command id.
    proposals: HashMap<CommandId, Ticket>,
    next_ticket: Ticket,
    clients: ClientPool,
    /// The membership joining nodes are told about.
    published: Option<Membership>,
    /// The reconfiguration window (`Config::max_inflight_slots`).
    alpha: u64,
    /// Peer messages refused on arrival since start.
    refused: u64,
    metrics: crate::Metrics,
    /// The leader last seen, to count changes.
    leader_seen: Option<NodeId>,
    /// Per peer: the last ping sent, and where its round trips are counted.
    pings: HashMap<NodeId, Ping>,
    /// Where the cluster view is published.
    view: watch::Sender<ClusterView>,
}

impl<S: StateMachine> Driver<S> {
    /// A driver around a recovered `replica` ([`recover_replica`]), sending
    /// through `transport`, telling the time by `clock`.
    pub fn new(replica: Replica<S>, transport: Box<dyn Transport>, clock: Arc<dyn Clock>, cfg: DriverConfig) -> Self {
        let alpha = replica.config().max_inflight_slots as u64;
        let (view, _) = watch::channel(ClusterView::unknown(replica.id()));
        let driver = Driver {
            replica,
            transport,
            clock,
            tick: cfg.tick.max(Duration::from_nanos(1)),
            ticks: 0,
            timeout: cfg.request_timeout,
            waiting: HashMap::new(),
            proposals: HashMap::new(),
            next_ticket: 1,
            clients: ClientPool::new(cfg.client_seed),
            published: None,
            alpha,
            refused: 0,
            metrics: cfg.metrics,
            leader_seen: None,
            pings: HashMap::new(),
            view,
        };
        driver.publish_view();
        driver
    }

    /// The replica this driver runs.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The state machine, as applied here so far.
    pub fn state_machine(&self) -> &S {
        self.replica.state_machine()
    }

    /// Where the driver publishes the [`ClusterView`]: receivers see every
    /// change before the answers computed from the state it describes.
    pub fn view(&self) -> watch::Receiver<ClusterView> {
        self.view.subscribe()
    }

    /// Number of client requests waiting for an answer.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A message from peer `from`; a pong answering the last ping to it
    /// times the round trip.
    pub fn peer(&mut self, from: NodeId, msg: Message) {
        if let Message::Pong(pong) = &msg {
            if let Some(p) = self.pings.get(&from).filter(|p| p.round == pong.round) {
                p.rtt.observe(self.clock.now().saturating_sub(p.sent).as_secs_f64());
            }
        }
        self.replica.step(Input::Message { from, msg });
    }

    /// A client's request; its answer comes back in a later [`Work`] under
    /// the returned ticket (at the latest when it times out).
    pub fn request(&mut self, request: Request) -> (Ticket, Answers<S::Output>) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let started = self.clock.now();
        let deadline = started + self.timeout;
        let mut answers = Vec::new();
        let (kind, pooled) = match request {
            Request::Propose(payload) => {
                let id = self.clients.acquire();
                self.proposals.insert(id, ticket);
                // Origin: slots up to our commit index are chosen before
                // this command exists (see `Command::origin`).
                let origin = self.replica.commit_index();
                self.replica.step(Input::Propose(Command { id, origin, payload }));
                (Kind::Proposal, Some(id))
            }
            Request::ProposeCommand(command) => {
                // The same command proposed again while the first copy
                // waits: the answer goes to the newer caller, and the older
                // learns as much as after a timeout.
                if let Some(older) = self.proposals.insert(command.id, ticket) {
                    self.waiting.remove(&older);
                    answers.push((older, Answer::Value(Err(Error::Timeout))));
                }
                self.replica.step(Input::Propose(command));
                (Kind::Proposal, None)
            }
            Request::Read(query) => {
                self.replica.step(Input::Read { id: ticket, query });
                (Kind::Read, None)
            }
            Request::Reconfigure(change) => {
                self.replica.step(Input::Reconfigure { id: ticket, change });
                (Kind::Reconfig, None)
            }
            Request::Transfer(to) => {
                self.replica.step(Input::TransferLeadership { id: ticket, to });
                (Kind::Transfer, None)
            }
        };
        self.waiting.insert(ticket, Waiting { kind, started, deadline, pooled });
        (ticket, answers)
    }

    /// Every record up to `lsn` is durable.
    pub fn durable(&mut self, lsn: Lsn) {
        self.replica.step(Input::Durable(lsn));
    }

    /// The snapshot at `slot` is stored.
    pub fn snapshot_saved(&mut self, slot: Slot) {
        self.replica.step(Input::SnapshotSaved(slot));
    }

    /// Ask for a snapshot of everything applied now; returns the slot it
    /// will cover (see [`crate::Handle::snapshot`]).
    pub fn take_snapshot(&mut self) -> Slot {
        self.replica.step(Input::TakeSnapshot);
        self.replica.applied_index()
    }

    /// Talk to member `id` at `addr` from now on.
    pub fn set_peer(&mut self, id: NodeId, addr: std::net::SocketAddr) {
        self.transport.set_peer(id, addr);
        self.published = None;
    }

    /// Stop talking to member `id`.
    pub fn remove_peer(&mut self, id: NodeId) {
        self.transport.remove_peer(id);
        self.published = None;
    }

    /// Lets time pass: steps the core once for every tick of the clock
    /// since the last call (a loop that wakes late catches up, so the
    /// replica's clock never runs slow: a slow clock would stretch a
    /// leader's lease), fails the requests whose time is up, and samples
    /// the gauges. Returns the answers of the requests that timed out.
    pub fn tick(&mut self) -> Answers<S::Output> {
        let now = self.clock.now();
        let due = (now.as_nanos() / self.tick.as_nanos()) as u64;
        while self.ticks < due {
            self.ticks += 1;
            self.replica.step(Input::Tick);
        }
        let answers = self.expire(now);
        self.sample();
        answers
    }

    /// Publishes the view, sends what the core sends, and hands back the
    /// rest of what the turn produced. The view goes first, so that whoever
    /// gets an answer sees a view at least as new as the state it was
    /// answered from; the batch to persist is handed back with the sends
    /// already queued, which is safe because the core holds back whatever
    /// depends on records not yet durable.
    pub fn carry_out(&mut self) -> Work<S::Output> {
        let out = self.replica.output();
        self.publish_view();
        if !out.stats.is_empty() {
            self.metrics.protocol(&out.stats);
        }
        let leader = self.replica.leader_hint();
        if leader != self.leader_seen {
            if leader.is_some() {
                self.metrics.leader_changed();
            }
            self.leader_seen = leader;
        }
        let mut work = Work {
            persist: out.persist.first().map(|&(first, _)| Batch {
                first,
                records: out.persist.iter().map(|(_, r)| encode_record(r)).collect(),
            }),
            snapshot: out.snapshot,
            truncate_before: out.truncate_before,
            answers: Vec::new(),
        };
        self.refused += out.refused.len() as u64;
        for r in out.refused {
            warn!(peer = r.from, kind = r.kind, reason = r.reason, "refused a peer's message");
        }
        for (to, msg) in out.send {
            if let Message::Ping { round } = msg {
                self.ping_sent(to, round);
            }
            self.transport.send(to, msg);
        }
        let now = self.clock.now();
        for r in out.responses {
            let Some(ticket) = self.proposals.remove(&r.id) else { continue };
            let Some(w) = self.waiting.remove(&ticket) else { continue };
            self.metrics.proposal_done(now.saturating_sub(w.started), r.result.is_err());
            if let Some(id) = w.pooled {
                self.clients.release(id);
            }
            work.answers.push((ticket, Answer::Value(r.result.map_err(client_error))));
        }
        for r in out.reads {
            if self.waiting.remove(&r.id).is_some() {
                work.answers.push((r.id, Answer::Value(r.result.map_err(client_error))));
            }
        }
        for r in out.reconfigs {
            if self.waiting.remove(&r.id).is_some() {
                work.answers.push((r.id, Answer::Slot(r.result.map_err(Error::Reconfig))));
            }
        }
        for r in out.transfers {
            if self.waiting.remove(&r.id).is_some() {
                work.answers.push((r.id, Answer::Done(r.result.map_err(Error::Transfer))));
            }
        }
        self.publish_membership();
        work
    }

    /// What this member knows about the cluster now.
    pub fn status(&self) -> Status {
        let r = &self.replica;
        let membership = r.membership();
        Status {
            id: r.id(),
            leader: r.leader_hint(),
            ballot: r.leader_ballot().unwrap_or(r.promised()),
            commit: r.commit_index(),
            applied: r.applied_index(),
            durable_lsn: r.durable_lsn(),
            members: membership.voters.iter().chain(&membership.learners).copied().collect(),
            voters: membership.voters.clone(),
            pending: r.pending_membership().map(|(slot, m)| (slot, m.clone())),
            voter: membership.voters.contains(&r.id()) && !r.is_rejoining(),
            compacted: r.log().compacted(),
            removed: self.transport.removed(),
            refused: self.refused,
            hears_quorum: r.hears_quorum(),
        }
    }

    /// Tells subscribers the cluster view, if it changed: compared field by
    /// field in place, so that an unchanged view costs no allocation and
    /// wakes nobody.
    fn publish_view(&self) {
        let r = &self.replica;
        let (leader, ballot, hears_quorum, holds_lease) =
            (r.leader_hint(), r.leader_ballot().unwrap_or(r.promised()), r.hears_quorum(), r.holds_lease());
        let (applied, compacted) = (r.applied_index(), r.log().compacted());
        let membership = r.membership();
        let pending = r.pending_membership();
        let voter = membership.voters.contains(&r.id()) && !r.is_rejoining();
        let removed = self.transport.removed();
        self.view.send_if_modified(|v| {
            let same = v.leader == leader
                && v.ballot == ballot
                && v.hears_quorum == hears_quorum
                && v.holds_lease == holds_lease
                && v.applied == applied
                && v.compacted == compacted
                && v.voters == membership.voters
                && v.learners == membership.learners
                && v.pending.as_ref().map(|(s, m)| (*s, m)) == pending
                && v.voter == voter
                && v.removed == removed;
            if !same {
                *v = ClusterView {
                    id: r.id(),
                    leader,
                    ballot,
                    hears_quorum,
                    holds_lease,
                    applied,
                    compacted,
                    voters: membership.voters.clone(),
                    learners: membership.learners.clone(),
                    pending: pending.map(|(s, m)| (s, m.clone())),
                    voter,
                    removed,
                };
            }
            !same
        });
    }

    /// Sets the gauges from the replica's state (once a tick: cheap, and
    /// fresh enough for any scrape).
    fn sample(&self) {
        let r = &self.replica;
        self.metrics.sample(crate::metrics::Sample {
            has_leader: r.leader_hint().is_some() && r.hears_quorum(),
            is_leader: r.is_leader(),
            committed: r.commit_index(),
            applied: r.applied_index(),
            pending: self.proposals.len(),
            ballot_round: r.leader_ballot().unwrap_or(r.promised()).round,
            slots_in_flight: r.slots_in_flight(),
        });
    }

    /// Keep the transport's answer to joining nodes current.
    fn publish_membership(&mut self) {
        let latest = self.replica.pending_membership().map_or(self.replica.membership(), |(_, m)| m);
        if self.published.as_ref() != Some(latest) {
            self.transport.publish(latest, self.alpha);
            self.published = Some(latest.clone());
        }
    }

    /// Notes when the ping numbered `round` went to `to`.
    fn ping_sent(&mut self, to: NodeId, round: u64) {
        let sent = self.clock.now();
        match self.pings.get_mut(&to) {
            Some(p) => (p.round, p.sent) = (round, sent),
            None => {
                let rtt = self.metrics.peer_rtt(to);
                self.pings.insert(to, Ping { round, sent, rtt });
            }
        }
    }

    /// Fails every request whose deadline has passed.
    fn expire(&mut self, now: Duration) -> Answers<S::Output> {
        let mut expired: Vec<Ticket> =
            self.waiting.iter().filter(|(_, w)| w.deadline <= now).map(|(ticket, _)| *ticket).collect();
        // In ticket order, so that every run answers alike.
        expired.sort_unstable();
        let mut answers = Vec::with_capacity(expired.len());
        for ticket in expired {
            let Some(w) = self.waiting.remove(&ticket) else { continue };
            if w.kind == Kind::Proposal {
                self.proposals.retain(|_, t| *t != ticket);
                self.metrics.proposal_done(self.timeout, true);
                warn!(ticket, "proposal timed out");
            }
            answers.push((ticket, Answer::failed(w.kind, Error::Timeout)));
        }
        answers
    }
}

/// A replica recovered from its durable state: the latest stored snapshot
/// and the log's records after it. With nothing durable while joining a
/// cluster that already runs, it rejoins as a learner (it may have voted
/// before and lost its disk).
pub fn recover_replica<S: StateMachine>(
    protocol: &synod_paxos::Config,
    join_existing: bool,
    sm: S,
    snapshot: Option<Snapshot>,
    records: Vec<(Lsn, synod_paxos::Record)>,
) -> Result<Replica<S>, Error> {
    if records.is_empty() && snapshot.is_none() && join_existing {
        Replica::rejoin(protocol.clone(), sm).map_err(|e| Error::Config(e.to_string()))
    } else {
        Replica::recover(protocol.clone(), sm, snapshot, records).map_err(|e| Error::Corrupt(e.to_string()))
    }
}

fn client_error(e: ClientError) -> Error {
    match e {
        ClientError::NotLeader { leader } => Error::NotLeader { leader },
        ClientError::Busy => Error::Busy,
        ClientError::AppliedWithoutResult => Error::AppliedWithoutResult,
        ClientError::SessionExpired => Error::SessionExpired,
    }
}
