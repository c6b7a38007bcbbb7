//! synod-kv: the MVCC key-value state machine with etcd v3 semantics.
//!
//! This is the deterministic state machine that Synod's replicated log
//! applies. Every replica feeds it the same [`Command`]s in the same order
//! and so reaches the same state, revision and [`KvState::hash_kv`]. It must
//! never do I/O or read a clock: lease expiry is decided by the leader and
//! arrives as a [`Command::LeaseRevoke`].
//!
//! The contract is etcd v3.5's: revisions, create/mod revision and version,
//! range options, txn compare/then/else, compaction, leases, watch events,
//! error codes and messages. Requests and responses are etcd's own protobuf
//! messages (see [`pb`]), generated from etcd's `.proto` files by
//! `synod-etcd-api` without its gRPC stubs: the state machine depends on
//! prost and nothing of tonic or tokio.
//!
//! How a server maps the etcd gRPC API onto it:
//! - `KV.Range` → [`KvState::range`] (no log write);
//! - `KV.Put`, `KV.DeleteRange`, `KV.Compact` and `KV.Txn` with writes → a
//!   [`Command`] through the log, then [`KvState::apply`] on every replica;
//!   a read-only `KV.Txn` ([`is_read_only`]) → [`KvState::txn_read`];
//! - `Lease.LeaseGrant`/`LeaseRevoke` → [`Command::LeaseGrant`]/[`Command::LeaseRevoke`];
//!   `LeaseTimeToLive`/`LeaseLeases` read [`KvState::lease`]/[`KvState::leases`];
//! - `Watch` → the [`Applied::events`] of each apply, and [`KvState::events`]
//!   to catch up from history;
//! - the space quota → [`KvState::db_size`] and [`cost`];
//! - `Maintenance.HashKV` → [`KvState::hash_kv`]; snapshots of the log →
//!   [`KvState::snapshot`] and [`KvState::restore`];
//! - errors → a gRPC status from [`KvError::code`] and its `Display` text.
//!
//! ```
//! use synod_kv::pb::{PutRequest, RangeRequest};
//! use synod_kv::{Command, KvState, Response};
//!
//! let mut kv = KvState::default(); // revision 1
//! let put = Command::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() });
//! // What the log carries, and what every replica applies:
//! let applied = kv.apply(Command::from_bytes(&put.to_bytes()).unwrap()).unwrap();
//! assert_eq!(applied.response.revision(), 2);
//! assert_eq!(applied.events.len(), 1);
//!
//! let got = kv.range(&RangeRequest { key: b"k".to_vec(), ..Default::default() }).unwrap();
//! assert_eq!((got.kvs[0].version, got.kvs[0].create_revision), (1, 2));
//! ```

#![warn(missing_docs)]

mod command;
mod config;
mod error;
mod hash;
mod lease;
mod mvcc;
pub mod pb;
mod quota;
mod range;
mod revision;
mod snapshot;
mod state;
mod txn;
mod validate;

pub use command::{Applied, Command, Response};
pub use config::{Config, MAX_LEASE_TTL};
pub use error::{Code, DecodeError, KvError, SnapshotError};
pub use lease::Lease;
pub use quota::{cost, ENTRY_OVERHEAD, LEASE_OVERHEAD};
pub use revision::Revision;
pub use snapshot::{History, HistoryEntry, StoredPut};
pub use state::KvState;
pub use validate::{is_read_only, validate_delete_range, validate_put, validate_range, validate_txn};
