//! Drives one Synod replica for any state machine: storage, peer transport,
//! timers. A Rust user replicates their own state with a configuration, a
//! data directory and a peer list, without writing any I/O.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use synod_paxos::{Config, KvMachine};
//! use synod_runtime::{Node, NodeConfig};
//!
//! # async fn run() -> Result<(), synod_runtime::Error> {
//! let peers: BTreeMap<u64, std::net::SocketAddr> =
//!     [(1, "127.0.0.1:7001".parse().unwrap()), (2, "127.0.0.1:7002".parse().unwrap()),
//!      (3, "127.0.0.1:7003".parse().unwrap())].into();
//! let cfg = NodeConfig::new(Config::new(1, vec![1, 2, 3]), 42, peers, "data/1".into());
//! let node = Node::start(cfg, KvMachine::default()).await?;
//! let previous = node.handle().propose(KvMachine::put("k", "v")).await?;
//! let value = node.handle().read("k").await?;
//! # Ok(()) }
//! ```
//!
//! Whoever needs to act when the leader, the membership or the applied
//! index changes subscribes to the replica's [`ClusterView`]
//! ([`Handle::subscribe`], a `tokio::sync::watch` channel the replica
//! updates when the view changes) instead of asking [`Handle::status`] in a
//! loop; see [`view`].
//!
//! The peer network and the log are traits ([`Transport`], [`DurableLog`]):
//! [`Node::start`] runs on TCP and the write-ahead log, and
//! [`Node::start_with`] on whatever the caller supplies, such as the
//! in-process [`Network`] and an in-memory [`synod_storage::MemLog`]. A
//! caller that retries proposals names them ([`Handle::command`],
//! [`Handle::propose_command`]) so that each is applied at most once; see
//! the `counter` example.
//!
//! * [`driver`]: the replica's event loop as a synchronous, deterministic
//!   [`Driver`] (time from a [`Clock`]): the node's tokio task feeds it in
//!   production, the whole-stack simulator (`synod-sim --stack`) in tests;
//! * [`node`]: the replica's tokio task around the driver, and the
//!   [`Handle`] clients use;
//! * [`view`]: what the replica publishes about the cluster;
//! * [`net`]: the [`Transport`] trait and the in-process [`Network`];
//! * [`log`]: the [`DurableLog`] trait, for the write-ahead log and others;
//! * [`transport`]: TCP between replicas (the default [`Transport`]);
//! * [`tls`]: TLS on the peer network;
//! * [`join`]: how a node added to a running cluster learns its id;
//! * [`metrics`]: what a replica measures, for Prometheus;
//! * [`codec`]: how messages and records are encoded.

pub mod codec;
pub mod driver;
pub mod join;
pub mod log;
pub mod metrics;
pub mod net;
pub mod node;
pub mod seed;
pub mod tls;
pub mod transport;
pub mod view;

pub use driver::{Clock, Driver, DriverConfig, WallClock};
pub use join::{discover, Joined};
pub use log::DurableLog;
pub use metrics::Metrics;
pub use net::{Inbox, InboxReceiver, MemTransport, Network, Transport};
pub use node::{lock_data_dir, Handle, Node, NodeConfig, Status};
pub use seed::seed_data_dir;
pub use synod_paxos::{Command, CommandId};
pub use synod_storage::DirLock;
pub use tls::{AddressCheck, PeerTls};
pub use transport::{ClusterInfo, InboundLimits, TcpTransport};
pub use view::{ClusterView, Leadership};

use synod_paxos::NodeId;
use thiserror::Error;

/// What can go wrong running a replica or asking it something.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// Storage failed (fatal for the replica) or refused to open.
    #[error("storage: {0}")]
    Storage(#[from] synod_storage::Error),
    /// Stored records that cannot be believed.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Sockets.
    #[error("i/o: {0}")]
    Io(String),
    /// No answer in time; the request may or may not take effect.
    #[error("request timed out")]
    Timeout,
    /// This member cannot serve the request; try the leader.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// Too many requests waiting.
    #[error("too many pending requests")]
    Busy,
    /// The command was applied, but its result is not known at this member
    /// (it was applied before a snapshot this member installed).
    #[error("request applied, but its result is unknown here")]
    AppliedWithoutResult,
    /// The proposal waited so long that its client session expired
    /// ([`synod_paxos::ClientError::SessionExpired`]): it will not be
    /// applied, but whether an earlier copy was is unknown, as after a
    /// timeout.
    #[error("request timed out (its client session expired)")]
    SessionExpired,
    /// The replica has stopped.
    #[error("replica stopped")]
    Stopped,
    /// A task of the replica died (it panicked: a broken invariant) or
    /// ended when it must not.
    #[error("the replica's task died: {0}")]
    Crashed(String),
    /// A membership change was refused, or interrupted before it was
    /// chosen.
    #[error(transparent)]
    Reconfig(#[from] synod_paxos::ReconfigError),
    /// A leadership transfer was refused, or did not complete in time.
    #[error(transparent)]
    Transfer(#[from] synod_paxos::TransferError),
}
