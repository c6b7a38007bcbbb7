//! Durable storage for Synod: a segmented write-ahead log with group
//! commit, snapshots, and the data-directory identity marker.
//!
//! This crate stores opaque byte records and knows nothing of Paxos. The
//! runtime encodes the protocol's records (promises, accepted entries,
//! commit marks), appends them here, and releases a reply that depends on
//! them only once they are durable.
//!
//! - [`Wal`]: the file log. `append` blocks until durable; `submit` returns
//!   a [`Durable`] future for async code. A failed fsync is fatal.
//! - [`MemLog`]: the in-memory log for the simulator, with crash support.
//! - [`LogStore`]: the interface both implement.
//! - [`SnapshotStore`]: checksummed snapshots, chunked streaming, resumable
//!   receive.
//! - [`DataDir`]: the cluster/member marker and the "fresh disk" signal.
//! - [`record`]: the on-disk record format.

#![warn(missing_docs)]

mod datadir;
mod error;
mod fsutil;
mod log_store;
mod mem;
pub mod record;
mod snapshot;
mod wal;

pub use datadir::{DataDir, MARKER_FILE, SNAPSHOT_DIR, WAL_DIR};
pub use error::{Error, Result};
pub use log_store::LogStore;
pub use mem::MemLog;
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotReceiver, SnapshotStore};
pub use wal::{Durable, Recovery, TornTail, Wal, WalIter, WalOptions, WalStats};

/// Log sequence number: the position of a record in the log, from 1.
pub type Lsn = u64;
