//! Sans-IO Paxos: the single-decree Synod kernel and a Multi-Paxos replica.
//!
//! * [`synod`]: single-decree Paxos, the kernel the log generalises and the
//!   clearest place to read the safety rule.
//! * [`Replica`]: Multi-Paxos with a stable leader; inputs in, outputs out
//!   ([`io`]), no I/O, no clocks, deterministic. `replica/mod.rs` is the router,
//!   and no role module uses `Replica` or reaches its fields; each role is a type owning its
//!   state in its own file, called with the little it may touch and
//!   returning what others must do: the acceptor (`acceptor.rs`), the
//!   proposer (`proposer.rs`: its phases and their rules) and the leader at
//!   work (`leader.rs`: `Leading`, the proposer with a narrow context; its
//!   leases and reads in `reads.rs`), the
//!   learner (`learner.rs`), snapshot sender and receiver (`snapshot.rs`),
//!   rejoining after disk loss (`rejoin.rs`), clients' requests
//!   (`clients.rs`), records and messages out (`outbox.rs`), replaying the
//!   records at a restart (`recover.rs`); leader election in [`election`].
//! * [`quorum`]: every quorum count of the core, for one configuration and
//!   jointly for the configurations a change spans (flexible quorums
//!   included).
//! * [`reconfig`]: membership changes through the log (Lamport's α rule),
//!   with the argument for why they are safe.
//! * [`handover`]: leadership handover (etcd's `MoveLeader`), and why it
//!   keeps leases exclusive.
//! * [`types`]: the shared ids ([`NodeId`], [`Slot`], [`Lsn`]).
//!
//! Planted bugs (deliberately broken rules the simulator must catch) exist
//! only with the cargo feature `planting`, which `synod-sim` and
//! `synod-check` enable and production builds do not: without it there is no
//! `PlantedBug` and no `Config::planted`, and nothing can be planted.
//!
//! Nothing here knows about tokio, files, sockets or wall clocks.

pub mod admission;
pub mod ballot;
pub mod command;
pub mod config;
pub mod election;
pub mod handover;
pub mod io;
pub mod local;
pub mod log;
pub mod message;
pub mod quorum;
pub mod reconfig;
pub mod record;
pub mod state_machine;
pub mod synod;
pub mod types;

mod acceptor;
mod clients;
mod leader;
mod learner;
mod outbox;
mod plant;
mod proposer;
mod reads;
mod recover;
mod rejoin;
mod replica;
mod snapshot;

pub use ballot::{Ballot, NodeId};
pub use command::{Command, CommandId, Slot, Value};
pub use config::{Config, ConfigError};
pub use handover::TransferError;
pub use io::{
    ClientError, Input, Output, ReadResponse, ReconfigResponse, RecoverError, Refused, Response, SessionInfo, Snapshot,
    Stats, TransferResponse,
};
pub use message::{Message, PromisedEntry};
#[cfg(feature = "planting")]
pub use plant::PlantedBug;
pub use quorum::{QuorumError, QuorumPolicy};
pub use reconfig::{Change, Membership, ReconfigError};
pub use record::{Lsn, Record};
pub use replica::Replica;
pub use snapshot::SnapshotFormat;
pub use state_machine::{KvMachine, SnapshotError, StateMachine};
