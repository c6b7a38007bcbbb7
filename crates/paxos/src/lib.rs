//! Sans-IO Paxos: the single-decree Synod kernel and a Multi-Paxos replica.
//!
//! * [`synod`]: single-decree Paxos, the kernel the log generalises and the
//!   clearest place to read the safety rule.
//! * [`Replica`]: Multi-Paxos with a stable leader; inputs in, outputs out,
//!   no I/O, no clocks, deterministic. Its roles live in `leader.rs`,
//!   `acceptor.rs` and `learner.rs`; leader election in [`election`].
//! * [`reconfig`]: membership changes through the log (Lamport's α rule),
//!   with the argument for why they are safe.
//! * [`transfer`]: leadership transfer (etcd's `MoveLeader`), and why it
//!   keeps leases exclusive.
//!
//! Nothing here knows about tokio, files, sockets or wall clocks.

pub mod admission;
pub mod ballot;
pub mod command;
pub mod config;
pub mod election;
pub mod handover;
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
mod leader;
mod learner;
mod plant;
mod rejoin;
mod replica;
mod snapshot;

pub use ballot::{Ballot, NodeId};
pub use command::{Command, CommandId, Slot, Value};
pub use config::{Config, ConfigError};
pub use handover::TransferError;
pub use message::{Message, PromisedEntry};
#[cfg(feature = "planting")]
pub use plant::PlantedBug;
pub use quorum::{QuorumError, QuorumPolicy};
pub use reconfig::{Change, Membership, ReconfigError};
pub use record::{Lsn, Record};
pub use replica::{
    ClientError, Input, Output, ReadResponse, ReconfigResponse, RecoverError, Refused, Replica, Response, SessionInfo,
    Snapshot, Stats, TransferResponse,
};
pub use state_machine::{KvMachine, SnapshotError, StateMachine};
