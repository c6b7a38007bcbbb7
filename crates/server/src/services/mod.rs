//! etcd's gRPC services, one file each, every one a thin mapping from an
//! RPC to a proposal, a linearizable read or a local (serializable) read
//! through the shared [`crate::context::Context`]:
//! * [`kv`]: KV (Range, Put, DeleteRange, Txn, Compact);
//! * [`watch`]: Watch, fed by [`crate::state::watch_hub`];
//! * [`lease`]: Lease; the leader's TTL countdown is
//!   [`crate::state::lease_keeper`];
//! * [`lock`] and [`election`]: etcd's v3lock and v3election, on the
//!   key-per-contender [`recipes`] they share;
//! * [`auth`]: the Auth RPCs over the replicated [`crate::auth`] store;
//! * [`cluster`]: Cluster (MemberList, MemberAdd, ...);
//! * [`maintenance`]: Maintenance (Status, Alarm, HashKV, Defragment,
//!   Snapshot, MoveLeader).
//!
//! A service decides nothing the cluster agrees on; no module outside this
//! one but [`crate::server`] (which starts them) and [`crate::http`] (which
//! answers `/health` as Maintenance would) depends on a service.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod recipes;
pub mod watch;
