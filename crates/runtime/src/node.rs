//! One replica, driven: the actor that owns the protocol core, feeds it
//! peer messages, client requests, ticks and durability notices, and carries
//! out its output.
//!
//! The order the core relies on is kept by construction: records go to the
//! write-ahead log (group commit: everything produced in one turn of the loop
//! is one batch, and one fdatasync covers many batches), the core is told
//! `Durable` only when the log says so, and the core itself holds back every
//! reply that depends on records not yet durable. A failed fsync stops the
//! node: the log refuses every later append, and the actor exits with the
//! error. Whoever runs the node watches [`Node::stopped`]: a replica that
//! stopped by itself cannot go on, and its process should exit (fail-stop)
//! rather than keep its other ports open.
//!
//! The data directory is locked ([`DirLock`]) for as long as the actor
//! runs, so a second process on it is refused at start.

use crate::codec::decode_record;
use crate::driver::{self, Answer, Driver, DriverConfig, Ticket, WallClock, RUNTIME_CLIENTS};
use crate::log::DurableLog;
use crate::net::{InboxReceiver, Transport};
use crate::transport::{InboundLimits, TcpTransport, TransportConfig};
use crate::view::ClusterView;
use crate::Error;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_paxos::{
    Ballot, Change, Command, CommandId, Config, Lsn, Membership, NodeId, Replica, Slot, Snapshot, StateMachine,
};
use synod_storage::{DataDir, DirLock, SnapshotStore, Wal, WalOptions};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// How to run one replica.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The protocol's configuration (this member's id, the members, timing
    /// in ticks, quorums, batching).
    pub protocol: Config,
    /// Identifies the cluster; peers and data directories of other clusters
    /// are refused.
    pub cluster_id: u64,
    /// Every member's peer address, this one's included.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Where this member's data lives.
    pub data_dir: PathBuf,
    /// Length of one protocol tick. Default 50 ms.
    pub tick: Duration,
    /// A proposal or read not answered in this long fails with
    /// [`Error::Timeout`]. Default 5 s.
    pub request_timeout: Duration,
    /// Largest peer frame accepted (and sent). Default 64 MiB. The
    /// protocol's messages are cut to fit it and the write-ahead log's
    /// record limit ([`Config::max_message_bytes`] is lowered to both).
    pub max_frame: usize,
    /// What an inbound peer connection may cost (deadlines, caps).
    pub inbound: InboundLimits,
    /// Whether this member joins a cluster that already runs (etcd's
    /// `--initial-cluster-state existing`). A member that starts with no
    /// durable state while joining an existing cluster may have voted before
    /// and lost its disk: it rejoins as a non-voting learner until it has
    /// caught up. Default false.
    pub join_existing: bool,
    /// How the write-ahead log is kept (segment size, preallocation).
    /// Default [`WalOptions::default`]: 64 MiB segments, preallocated.
    pub wal: WalOptions,
    /// TLS on the peer network (every connection to and from peers).
    /// Default none: plaintext TCP.
    pub peer_tls: Option<crate::PeerTls>,
    /// Where the replica counts what it does ([`crate::metrics`]); register
    /// them to expose them. Default: fresh metrics, registered nowhere. The
    /// write-ahead log's fsyncs feed them unless [`WalOptions::observer`]
    /// is set.
    pub metrics: crate::Metrics,
}

impl NodeConfig {
    /// Defaults around a protocol configuration.
    pub fn new(
        protocol: Config,
        cluster_id: u64,
        peers: BTreeMap<NodeId, SocketAddr>,
        data_dir: PathBuf,
    ) -> NodeConfig {
        NodeConfig {
            protocol,
            cluster_id,
            peers,
            data_dir,
            tick: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
            max_frame: 64 << 20,
            inbound: InboundLimits::default(),
            join_existing: false,
            wal: WalOptions::default(),
            peer_tls: None,
            metrics: crate::Metrics::new(),
        }
    }
}

/// What a replica reports about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This member.
    pub id: NodeId,
    /// The member this one believes leads.
    pub leader: Option<NodeId>,
    /// The leader's ballot, if this member leads; else the highest promised.
    pub ballot: Ballot,
    /// Every slot up to here is chosen and known here.
    pub commit: Slot,
    /// Every slot up to here is applied here.
    pub applied: Slot,
    /// The last durable record.
    pub durable_lsn: Lsn,
    /// The voting members.
    pub members: Vec<NodeId>,
    /// The voters of the configuration in force (a subset of `members`).
    pub voters: Vec<NodeId>,
    /// A configuration chosen but not yet in force: the slot it was chosen
    /// in and its voters and learners.
    pub pending: Option<(Slot, Membership)>,
    /// Whether this member votes: it is a voter of the configuration in
    /// force and is not rejoining after losing its disk.
    pub voter: bool,
    /// Every slot up to here is compacted into a snapshot.
    pub compacted: Slot,
    /// A peer refused this member because it was removed from the cluster
    /// (it may not have learned the change itself).
    pub removed: bool,
    /// Messages from peers refused on arrival since this member started
    /// (numbers no member could have sent; see `synod_paxos::admission`).
    pub refused: u64,
    /// Whether this member hears a quorum of the members now (fresh replies
    /// to its pings). A member that does not cannot know whether the leader
    /// it last heard of still leads.
    pub hears_quorum: bool,
}

impl Status {
    /// Whether this member has a leader, as etcd means it: one is known,
    /// and this member hears a quorum (a member cut off from the others
    /// has none, as an etcd follower that stands for election has none).
    pub fn has_leader(&self) -> bool {
        self.leader.is_some() && self.hears_quorum
    }

    /// The latest configuration known here: the pending one if a change
    /// is chosen but not yet in force, else the one in force.
    pub fn latest(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        match &self.pending {
            Some((_, m)) => (m.voters.clone(), m.learners.clone()),
            None => {
                let learners = self.members.iter().filter(|id| !self.voters.contains(id)).copied().collect();
                (self.voters.clone(), learners)
            }
        }
    }
}

type LocalFn<S> = Box<dyn FnOnce(&S) + Send>;

enum Request<S: StateMachine> {
    Propose { command: Proposal, reply: oneshot::Sender<Result<S::Output, Error>> },
    Read { query: Bytes, reply: oneshot::Sender<Result<S::Output, Error>> },
    Local(LocalFn<S>),
    Status(oneshot::Sender<Status>),
    Snapshot(oneshot::Sender<Slot>),
    Reconfigure { change: Change, reply: oneshot::Sender<Result<Slot, Error>> },
    Transfer { to: NodeId, reply: oneshot::Sender<Result<(), Error>> },
    SetPeer(NodeId, SocketAddr),
    RemovePeer(NodeId),
}

/// What to propose: a payload the runtime names, or a command the caller
/// named.
enum Proposal {
    Payload(Bytes),
    Named(Command),
}

/// How long a read refused for want of a leader waits for news of one
/// before it is tried again regardless.
const READ_RETRY: Duration = Duration::from_millis(10);

/// A cheap, cloneable way to talk to a running replica.
pub struct Handle<S: StateMachine> {
    tx: mpsc::Sender<Request<S>>,
    timeout: Duration,
    view: watch::Receiver<ClusterView>,
}

impl<S: StateMachine> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Handle { tx: self.tx.clone(), timeout: self.timeout, view: self.view.clone() }
    }
}

impl<S> Handle<S>
where
    S: StateMachine + Send + 'static,
    S::Output: Send + 'static,
{
    /// Replicate a command and return what the state machine made of it.
    /// At any member: a follower forwards it to the leader. Applied at most
    /// once, even if forwarded twice.
    ///
    /// The runtime names the command itself, so a caller that gets
    /// [`Error::Timeout`] cannot tell whether it was applied, and must not
    /// simply propose the payload again if applying it twice matters: name
    /// the command instead ([`Handle::command`],
    /// [`Handle::propose_command`]).
    pub async fn propose(&self, payload: impl Into<Bytes>) -> Result<S::Output, Error> {
        let (reply, rx) = oneshot::channel();
        self.call(Request::Propose { command: Proposal::Payload(payload.into()), reply }, rx).await?
    }

    /// A command named by the caller, to be proposed with
    /// [`Handle::propose_command`] as often as it takes: every copy of it
    /// is applied at most once, and a copy proposed after the first was
    /// applied is answered with the first's result (or with
    /// [`Error::AppliedWithoutResult`] if this member no longer knows it).
    ///
    /// `id.client` names the caller: one no other caller uses, below 2^63
    /// (the runtime names its own commands above); `id.seq` numbers the
    /// caller's commands 1, 2, ..., never reusing a number, one command in
    /// flight at a time. Keep the returned command and propose that same
    /// value again to retry: it carries the point in the log before which
    /// it did not exist (its origin), which lets the replicas refuse a copy
    /// they could no longer recognise as a duplicate once the client's
    /// session has expired ([`Error::SessionExpired`]).
    pub fn command(&self, id: CommandId, payload: impl Into<Bytes>) -> Command {
        // Every slot applied here is chosen, so it was chosen before this
        // command existed; any lower origin is as safe, only less precise.
        let origin = self.view.borrow().applied;
        Command { id, origin, payload: payload.into() }
    }

    /// Replicate a command named by the caller ([`Handle::command`]) and
    /// return what the state machine made of it. Safe to repeat with the
    /// same command after a timeout or an error: it is applied at most
    /// once. Refused with [`Error::Config`] if its client id is one the
    /// runtime keeps for itself (2^63 and above).
    pub async fn propose_command(&self, command: Command) -> Result<S::Output, Error> {
        if command.id.client & RUNTIME_CLIENTS != 0 {
            return Err(Error::Config(format!(
                "client id {:#x} is the runtime's own (callers use ids below 2^63)",
                command.id.client
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.call(Request::Propose { command: Proposal::Named(command), reply }, rx).await?
    }

    /// A linearizable read: answered from a state that includes every write
    /// completed before the read began. At any member.
    ///
    /// This is the one place a read is retried: while leadership is
    /// changing, a read refused with [`Error::NotLeader`] (which had no
    /// effect) is asked again when this member's view of the cluster
    /// changes (or after a short pause, since a leader may be known but
    /// not yet serving), until the request timeout. Callers need not retry
    /// `NotLeader` themselves.
    pub async fn read(&self, query: impl Into<Bytes>) -> Result<S::Output, Error> {
        let query = query.into();
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut view = self.subscribe();
            let (reply, rx) = oneshot::channel();
            match self.call(Request::Read { query: query.clone(), reply }, rx).await? {
                Err(Error::NotLeader { .. }) if Instant::now() < deadline => {
                    let _ = tokio::time::timeout(READ_RETRY, view.changed()).await;
                }
                result => return result,
            }
        }
    }

    /// A receiver of this member's [`ClusterView`]: its current value is
    /// marked seen, and [`watch::Receiver::changed`] completes each time
    /// the replica publishes a different one (leader, ballot, membership,
    /// applied or compacted index), or fails once the replica has stopped.
    /// See [`crate::view`].
    pub fn subscribe(&self) -> watch::Receiver<ClusterView> {
        let mut rx = self.view.clone();
        rx.mark_unchanged();
        rx
    }

    /// This member's latest [`ClusterView`], without a round trip into the
    /// replica's task. It is published before the task answers anything
    /// from the state it describes: after a proposal, read, membership
    /// change, transfer or [`Handle::with_state`] returned, the view is at
    /// least as new as the state that answered. Use
    /// [`Handle::status`] when the answer must be computed at the moment
    /// of asking, or needs what the view does not hold.
    pub fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    /// Run `f` on this member's state as it is now (a serializable read: it
    /// may be behind the leader).
    pub async fn with_state<R: Send + 'static>(&self, f: impl FnOnce(&S) -> R + Send + 'static) -> Result<R, Error> {
        let (reply, rx) = oneshot::channel();
        let job: LocalFn<S> = Box::new(move |s: &S| {
            let _ = reply.send(f(s));
        });
        self.call(Request::Local(job), rx).await
    }

    /// Ask this member for a snapshot of everything it has applied now, so
    /// that the log before it is deleted (defragmentation). Returns the
    /// slot the snapshot will cover; [`Status::compacted`] reaches it once
    /// the snapshot is stored and the log compacted. Nothing happens if the
    /// last snapshot already covers every applied slot, if one is being
    /// stored, or while the member rejoins as a learner.
    pub async fn snapshot(&self) -> Result<Slot, Error> {
        let (reply, rx) = oneshot::channel();
        self.call(Request::Snapshot(reply), rx).await
    }

    /// Change the membership (at the leader; elsewhere
    /// [`Error::Reconfig`] with `NotLeader`). Returns the slot the new
    /// configuration was chosen in; it governs the log from that slot plus
    /// the pipeline window on (see `synod_paxos::reconfig`). A member that
    /// is added must be reachable: tell every member its address with
    /// [`Handle::set_peer`] first.
    pub async fn reconfigure(&self, change: Change) -> Result<Slot, Error> {
        let (reply, rx) = oneshot::channel();
        self.call(Request::Reconfigure { change, reply }, rx).await?
    }

    /// Hand leadership over to voter `to` (etcd's `MoveLeader`), at the
    /// leader; elsewhere [`Error::Transfer`] with `NotLeader` and a hint.
    /// Returns once this member has seen `to` lead with a higher ballot
    /// (past phase 1, so `to` serves proposals and reads), or at once if
    /// `to` is this leader. Meanwhile proposals made here wait, and go to
    /// `to` once it leads. Refused with `BadTransferee` if `to` is not a
    /// voter of the configuration in force (a learner, or not a member),
    /// with `InProgress` during another transfer or a membership change;
    /// fails with `Timeout` if `to` did not take over within
    /// `Config::transfer_timeout_ticks` (this member then leads on, if it
    /// still can). See `synod_paxos::handover`.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.call(Request::Transfer { to, reply }, rx).await?
    }

    /// Talk to member `id` at `addr` from now on (a member being added, or
    /// one that moved), and accept its connections.
    pub async fn set_peer(&self, id: NodeId, addr: SocketAddr) -> Result<(), Error> {
        self.tx.send(Request::SetPeer(id, addr)).await.map_err(|_| Error::Stopped)
    }

    /// Stop talking to member `id` (it was removed) and refuse its
    /// connections.
    pub async fn remove_peer(&self, id: NodeId) -> Result<(), Error> {
        self.tx.send(Request::RemovePeer(id)).await.map_err(|_| Error::Stopped)
    }

    /// What this member knows about the cluster, computed by the replica's
    /// task when it takes the question (a round trip). For the leader, the
    /// membership or the applied index, [`Handle::view`] and
    /// [`Handle::subscribe`] answer without one; this is for what must be
    /// current at the moment of asking, or is not in the view (the commit
    /// index, the durable record, refused messages).
    pub async fn status(&self) -> Result<Status, Error> {
        let (reply, rx) = oneshot::channel();
        self.call(Request::Status(reply), rx).await
    }

    async fn call<T>(&self, req: Request<S>, rx: oneshot::Receiver<T>) -> Result<T, Error> {
        self.tx.send(req).await.map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }
}

/// A running replica.
pub struct Node<S: StateMachine> {
    handle: Handle<S>,
    /// The actor; `None` once its end has been reported.
    task: Option<JoinHandle<Result<(), Error>>>,
    /// The peer listener; `None` once its end has been seen.
    accept_task: Option<JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// Locks the data directory `dir` (creating it, private, if missing) for
/// this process, warning if it had to narrow the directory's mode. Fails
/// with [`synod_storage::Error::Locked`] if another process holds it.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<DirLock, Error> {
    let lock = DirLock::acquire(dir)?;
    if let Some(mode) = lock.tightened_from() {
        warn!(
            dir = %dir.display(),
            was = format_args!("{mode:o}"),
            now = "700",
            "the data directory was readable by other users; made it private to prevent unprivileged access to the data"
        );
    }
    Ok(lock)
}

/// What a finished task of the node's says about why it finished.
fn joined<T>(what: &str, r: Result<T, tokio::task::JoinError>) -> Result<T, Error> {
    r.map_err(|e| Error::Crashed(format!("{what}: {e}")))
}

impl<S> Node<S>
where
    S: StateMachine + Send + 'static,
    S::Output: Send + 'static,
{
    /// Open (or create) the data directory, recover, bind the peer address
    /// and start serving. `sm` must be the state machine's initial state; the
    /// recovered log is re-applied to it.
    pub async fn start(cfg: NodeConfig, sm: S) -> Result<Node<S>, Error> {
        let me = cfg.protocol.id;
        let addr = *cfg.peers.get(&me).ok_or(Error::Config(format!("no peer address for member {me}")))?;
        let listener = TcpListener::bind(addr).await.map_err(|e| Error::Io(format!("bind {addr}: {e}")))?;
        Node::start_on(cfg, sm, listener).await
    }

    /// Like [`Node::start`], on a listener the caller already bound.
    pub async fn start_on(cfg: NodeConfig, sm: S, listener: TcpListener) -> Result<Node<S>, Error> {
        let lock = lock_data_dir(&cfg.data_dir)?;
        Node::start_locked(cfg, sm, listener, lock).await
    }

    /// Like [`Node::start_on`], with the data directory already locked by
    /// the caller (with [`lock_data_dir`], so that it could use the
    /// directory before the replica starts). The node keeps the lock until
    /// it stops.
    pub async fn start_locked(cfg: NodeConfig, sm: S, listener: TcpListener, lock: DirLock) -> Result<Node<S>, Error> {
        let cfg = checked(cfg, &lock)?;
        let me = cfg.protocol.id;
        let dir = DataDir::open_or_init(&cfg.data_dir, cfg.cluster_id, me)?;
        let mut records = Vec::new();
        let mut bad = None;
        let mut wal_options = cfg.wal.clone();
        wal_options.observer.get_or_insert_with(|| cfg.metrics.wal_observer());
        let (wal, recovery) = Wal::open_with(dir.wal_dir(), wal_options, |lsn, bytes| match decode_record(bytes) {
            Ok(r) => records.push((lsn, r)),
            Err(e) => {
                bad.get_or_insert(Error::Corrupt(format!("record {lsn}: {e}")));
            }
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        info!(node = me, torn_tail = ?recovery.torn_tail, "write-ahead log opened");
        let (replica, snapshots) = recover(&cfg, &dir, sm, records)?;
        let (peer_tx, peer_rx) = mpsc::channel(16 * 1024);
        let (transport, accept_task) = TcpTransport::start(
            TransportConfig {
                cluster_id: cfg.cluster_id,
                me,
                peers: cfg.peers.clone(),
                max_frame: cfg.max_frame,
                limits: cfg.inbound.clone(),
                tls: cfg.peer_tls.clone(),
                metrics: cfg.metrics.clone(),
            },
            listener,
            peer_tx,
        );
        let parts = Parts { transport: Box::new(transport), inbox: peer_rx, log: Arc::new(wal), lock };
        Ok(launch(cfg, replica, snapshots, parts, Some(accept_task)))
    }

    /// Starts a replica on a transport and a log the caller supplies,
    /// instead of TCP and the write-ahead log: an embedder's own network or
    /// storage, or an in-process [`crate::net::Network`] and a
    /// [`synod_storage::MemLog`] for tests.
    ///
    /// `inbox` is the receiving end of what `transport`'s peers send this
    /// member. The replica recovers from the records `log` holds (every
    /// durable one from its first) and from the latest snapshot in the data
    /// directory, which it still locks, and where it keeps its identity and
    /// snapshots. [`NodeConfig::peers`], `max_frame`, `inbound`, `wal` and
    /// `peer_tls` concern the TCP transport and the write-ahead log, and are
    /// not used here (the protocol's messages are still cut to fit
    /// `max_frame` and a log record).
    pub async fn start_with(
        cfg: NodeConfig,
        sm: S,
        transport: impl Transport,
        inbox: InboxReceiver,
        log: Arc<impl DurableLog>,
    ) -> Result<Node<S>, Error> {
        let lock = lock_data_dir(&cfg.data_dir)?;
        let cfg = checked(cfg, &lock)?;
        let dir = DataDir::open_or_init(&cfg.data_dir, cfg.cluster_id, cfg.protocol.id)?;
        let mut records = Vec::new();
        for (lsn, bytes) in log.read(log.first_lsn(), usize::MAX)? {
            records.push((lsn, decode_record(&bytes).map_err(|e| Error::Corrupt(format!("record {lsn}: {e}")))?));
        }
        let (replica, snapshots) = recover(&cfg, &dir, sm, records)?;
        let parts = Parts { transport: Box::new(transport), inbox, log, lock };
        Ok(launch(cfg, replica, snapshots, parts, None))
    }

    /// A handle for clients of this replica.
    pub fn handle(&self) -> Handle<S> {
        self.handle.clone()
    }

    /// Stop the replica and wait for it; returns the error that stopped it,
    /// if one did (and [`Node::stopped`] has not already reported it).
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let result = match self.task.take() {
            Some(task) => joined("the replica's task", task.await).and_then(|r| r),
            None => Ok(()),
        };
        // The actor is gone, so the transport stops accepting: wait for the
        // port to be free again.
        if let Some(accept) = self.accept_task.take() {
            let _ = accept.await;
        }
        result
    }

    /// Completes when the replica stops by itself, with why: a fatal
    /// storage error (a failed write or fsync), a panic in its task, or
    /// its peer listener ending. A replica that stopped by itself cannot go
    /// on: the caller should stop everything else that serves on its
    /// behalf (a server exits, so that its supervisor restarts it).
    ///
    /// Cancel-safe (meant for `select!`). Once it has reported the end,
    /// later calls never complete, and [`Node::shutdown`] returns `Ok`.
    pub async fn stopped(&mut self) -> Result<(), Error> {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let ended = match self.accept_task.as_mut() {
            None => task.await,
            Some(accept) => tokio::select! {
                biased;
                r = &mut *task => r,
                r = accept => {
                    self.accept_task = None;
                    joined("the peer listener's task", r)?;
                    // The listener ends by itself only once the actor has
                    // dropped its end of the channel: the actor is ending
                    // too, and its end says why.
                    task.await
                }
            },
        };
        self.task = None;
        match joined("the replica's task", ended) {
            Ok(Ok(())) => Err(Error::Stopped),
            Ok(Err(e)) | Err(e) => Err(e),
        }
    }

    /// Wait until the replica stops by itself (see [`Node::stopped`]).
    pub async fn wait(mut self) -> Result<(), Error> {
        self.stopped().await
    }
}

/// `cfg` made ready to run: the protocol's messages cut to fit a frame and
/// a record, and the whole validated, under `lock` on its data directory.
fn checked(mut cfg: NodeConfig, lock: &DirLock) -> Result<NodeConfig, Error> {
    if lock.path() != cfg.data_dir {
        return Err(Error::Config(format!(
            "the lock held is on {}, not on the data directory {}",
            lock.path().display(),
            cfg.data_dir.display()
        )));
    }
    // Every message the protocol sends must fit a frame and a record.
    let most = cfg.max_frame.min(synod_storage::record::MAX_PAYLOAD);
    cfg.protocol.max_message_bytes = cfg.protocol.max_message_bytes.min(most);
    if cfg.protocol.has_planted_bug() {
        return Err(Error::Config("planted bugs are for the simulator only".into()));
    }
    cfg.protocol.validate().map_err(|e| Error::Config(e.to_string()))?;
    Ok(cfg)
}

/// The replica as the log's `records` and the latest snapshot in `dir`
/// leave it, and the store of its snapshots.
fn recover<S: StateMachine>(
    cfg: &NodeConfig,
    dir: &DataDir,
    sm: S,
    records: Vec<(Lsn, synod_paxos::Record)>,
) -> Result<(Replica<S>, SnapshotStore), Error> {
    let me = cfg.protocol.id;
    let snapshots = SnapshotStore::open(dir.snapshot_dir(), 2)?;
    let snapshot = snapshots.load_latest()?.map(|(meta, data)| Snapshot { slot: meta.index, data: Bytes::from(data) });
    info!(node = me, records = records.len(), snapshot = snapshot.as_ref().map(|s| s.slot), "recovered");
    if records.is_empty() && snapshot.is_none() && cfg.join_existing {
        // Nothing durable: we may have voted before and lost it.
        info!(node = me, "no durable state while joining an existing cluster: rejoining as a learner");
    }
    let replica = driver::recover_replica(&cfg.protocol, cfg.join_existing, sm, snapshot, records)?;
    Ok((replica, snapshots))
}

/// What a replica runs on besides its state machine.
struct Parts {
    transport: Box<dyn Transport>,
    inbox: InboxReceiver,
    log: Arc<dyn DurableLog>,
    lock: DirLock,
}

/// Spawns the replica's task; `accept_task` is the TCP transport's
/// listener, if it has one.
fn launch<S>(
    cfg: NodeConfig,
    replica: Replica<S>,
    snapshots: SnapshotStore,
    parts: Parts,
    accept_task: Option<JoinHandle<()>>,
) -> Node<S>
where
    S: StateMachine + Send + 'static,
    S::Output: Send + 'static,
{
    let (tx, rx) = mpsc::channel(16 * 1024);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (durable_tx, durable_rx) = mpsc::unbounded_channel();
    let driver = Driver::new(
        replica,
        parts.transport,
        Arc::new(WallClock::start()),
        DriverConfig {
            tick: cfg.tick,
            request_timeout: cfg.request_timeout,
            metrics: cfg.metrics.clone(),
            client_seed: fastrand::u64(..),
        },
    );
    let view_rx = driver.view();
    let actor = Actor {
        driver,
        log: parts.log,
        repliers: HashMap::new(),
        durable_tx,
        snapshots: Arc::new(snapshots),
        metrics: cfg.metrics.clone(),
        _lock: parts.lock,
    };
    let task = tokio::spawn(actor.run(cfg.tick, rx, parts.inbox, durable_rx, stop_rx));
    Node {
        handle: Handle { tx, timeout: cfg.request_timeout, view: view_rx },
        task: Some(task),
        accept_task,
        shutdown: Some(stop_tx),
    }
}

/// Something storage finished.
enum Stored {
    /// Every record up to here is durable.
    Records(Lsn),
    /// The snapshot at this slot is stored.
    Snapshot(Slot),
}

/// Where the answer to a ticket goes.
enum Replier<O> {
    Value(oneshot::Sender<Result<O, Error>>),
    Slot(oneshot::Sender<Result<Slot, Error>>),
    Done(oneshot::Sender<Result<(), Error>>),
}

/// The tokio side of a replica: waits on its channels and timer, feeds the
/// [`Driver`], carries out the work it hands back (the log, snapshots) and
/// passes answers to the callers waiting on them.
struct Actor<S: StateMachine> {
    driver: Driver<S>,
    log: Arc<dyn DurableLog>,
    repliers: HashMap<Ticket, Replier<S::Output>>,
    durable_tx: mpsc::UnboundedSender<Result<Stored, synod_storage::Error>>,
    snapshots: Arc<SnapshotStore>,
    metrics: crate::Metrics,
    /// The data directory's lock, released when the actor ends (declared
    /// last: dropped after the log it protects).
    _lock: DirLock,
}

impl<S> Actor<S>
where
    S: StateMachine + Send + 'static,
    S::Output: Send + 'static,
{
    async fn run(
        mut self,
        tick: Duration,
        mut requests: mpsc::Receiver<Request<S>>,
        mut peers: InboxReceiver,
        mut durable: mpsc::UnboundedReceiver<Result<Stored, synod_storage::Error>>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<(), Error> {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return Ok(()),
                Some(d) = durable.recv() => self.on_durable(d)?,
                Some((from, msg)) = peers.recv() => self.driver.peer(from, msg),
                Some(req) = requests.recv() => self.on_request(req),
                _ = ticker.tick() => {
                    let answers = self.driver.tick();
                    self.answer(answers);
                }
            }
            // Take whatever else is waiting, so it all goes out as one batch.
            for _ in 0..4096 {
                let mut progressed = false;
                if let Ok(d) = durable.try_recv() {
                    self.on_durable(d)?;
                    progressed = true;
                }
                if let Ok((from, msg)) = peers.try_recv() {
                    self.driver.peer(from, msg);
                    progressed = true;
                }
                if let Ok(req) = requests.try_recv() {
                    self.on_request(req);
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            self.carry_out()?;
        }
    }

    fn on_durable(&mut self, d: Result<Stored, synod_storage::Error>) -> Result<(), Error> {
        match d {
            Ok(Stored::Records(lsn)) => {
                self.driver.durable(lsn);
                Ok(())
            }
            Ok(Stored::Snapshot(slot)) => {
                self.driver.snapshot_saved(slot);
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "storage failed; stopping this replica");
                Err(Error::Storage(e))
            }
        }
    }

    fn on_request(&mut self, req: Request<S>) {
        let (request, replier) = match req {
            Request::Propose { command: Proposal::Payload(payload), reply } => {
                (driver::Request::Propose(payload), Replier::Value(reply))
            }
            Request::Propose { command: Proposal::Named(command), reply } => {
                (driver::Request::ProposeCommand(command), Replier::Value(reply))
            }
            Request::Read { query, reply } => (driver::Request::Read(query), Replier::Value(reply)),
            Request::Reconfigure { change, reply } => (driver::Request::Reconfigure(change), Replier::Slot(reply)),
            Request::Transfer { to, reply } => (driver::Request::Transfer(to), Replier::Done(reply)),
            Request::Local(f) => return f(self.driver.state_machine()),
            Request::SetPeer(id, addr) => return self.driver.set_peer(id, addr),
            Request::RemovePeer(id) => return self.driver.remove_peer(id),
            Request::Snapshot(reply) => {
                let _ = reply.send(self.driver.take_snapshot());
                return;
            }
            Request::Status(reply) => {
                let _ = reply.send(self.driver.status());
                return;
            }
        };
        let (ticket, answers) = self.driver.request(request);
        self.repliers.insert(ticket, replier);
        self.answer(answers);
    }

    /// Carries out one turn's work: persist, store, truncate, answer.
    fn carry_out(&mut self) -> Result<(), Error> {
        let work = self.driver.carry_out();
        if let Some(batch) = work.persist {
            let refs: Vec<&[u8]> = batch.records.iter().map(|v| v.as_slice()).collect();
            let (wal_first, pending) = self.log.clone().submit(&refs)?;
            assert_eq!(wal_first, batch.first, "the log and the replica number records alike");
            let tx = self.durable_tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(pending.await.map(Stored::Records));
            });
        }
        if let Some(snap) = work.snapshot {
            // Written off the actor's thread; the replica compacts once told.
            let store = self.snapshots.clone();
            let tx = self.durable_tx.clone();
            let metrics = self.metrics.clone();
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let saved = store.save(snap.slot, &snap.data).map(|_| Stored::Snapshot(snap.slot));
                if saved.is_ok() {
                    metrics.snapshot_saved(started.elapsed());
                }
                let _ = tx.send(saved);
            });
        }
        if let Some(before) = work.truncate_before {
            let log = self.log.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = log.truncate_prefix(before.saturating_sub(1)) {
                    warn!(error = %e, "could not delete old log segments");
                }
            });
        }
        self.answer(work.answers);
        Ok(())
    }

    /// Passes answers to the callers waiting on them.
    fn answer(&mut self, answers: Vec<(Ticket, Answer<S::Output>)>) {
        for (ticket, answer) in answers {
            let Some(replier) = self.repliers.remove(&ticket) else { continue };
            match (replier, answer) {
                (Replier::Value(tx), Answer::Value(r)) => {
                    let _ = tx.send(r);
                }
                (Replier::Slot(tx), Answer::Slot(r)) => {
                    let _ = tx.send(r);
                }
                (Replier::Done(tx), Answer::Done(r)) => {
                    let _ = tx.send(r);
                }
                _ => error!(ticket, "an answer of the wrong kind; the request is dropped"),
            }
        }
    }
}
