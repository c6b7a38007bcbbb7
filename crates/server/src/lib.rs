//! synod-server: the `synod` binary's library. One process runs one member
//! of a Synod cluster and serves the etcd v3 gRPC API on its client URLs, so
//! etcdctl and etcd's client libraries work against it unchanged.
//!
//! Where things are, top down:
//! * [`server`]: starts the replica, the services and the background tasks
//!   of one member, and stops them (fail-stop: a member that cannot go on
//!   stops as a whole);
//! * [`context`]: the [`context::Context`] every service shares (the
//!   replica's handle, the auth store, the watch hub, the way to the
//!   leader) and what they do alike: propose, read, name the caller, fill
//!   response headers. It imports no service;
//! * [`services`]: etcd's gRPC services, one file each (kv, watch, lease,
//!   lock, election, auth, cluster, maintenance), each mapping an RPC to a
//!   proposal, a linearizable read or a local (serializable) read;
//! * [`state`]: the replicated state machine ([`state::machine`]: etcd's
//!   MVCC store, [`synod_kv::KvState`], plus the members' attributes,
//!   alarms and auth store), the watch hub that feeds watch streams, and
//!   the lease keeper that counts TTLs down on the leader;
//! * [`cluster`]: this member among the others: who it is
//!   ([`cluster::bootstrap`]), acting on membership changes
//!   ([`cluster::membership`]), reaching the leader ([`cluster::forward`]);
//! * [`http`]: HTTP beside gRPC (`/health`, `/livez`, `/readyz`,
//!   `/version`, `/metrics`), etcd's HTTP/JSON gateway
//!   ([`http::gateway`]) and the member's metrics ([`http::metrics`],
//!   [`http::grpc_metrics`]);
//! * [`config`]: etcd's flags, from the command line, `ETCD_*` variables
//!   or a YAML config file, validated once into a
//!   [`config::ServerConfig`]; [`logging`]: the log flags;
//! * [`auth`]: etcd's auth store (users, roles, permissions), replicated;
//!   [`token`]: simple tokens and JWTs;
//! * [`alarm`]: the replicated alarms (NOSPACE, CORRUPT) and what they
//!   refuse; [`quota`]: the space quota check before a write is proposed;
//!   [`corrupt`]: the corruption checks, through the log;
//!   [`compactor`]: auto-compaction, proposed by the leader;
//! * [`status`]: runtime and state machine errors as etcd's gRPC errors;
//!   [`decode_limit`]: the gRPC decode limit answered as grpc-go does;
//! * [`tls`]: client and peer TLS from etcd's flags;
//!   [`authority_header`]: every client connection is read through it, so
//!   that the HTTP/2 `:authority` URLs etcd's Go client sends reach the
//!   server as the bare `host:port` it accepts;
//! * [`ids`]: member and cluster ids, derived as etcd derives them;
//! * [`snapshot`]: the backup file `Maintenance.Snapshot` streams, and
//!   `synod snapshot restore`; [`etcd_db`] and [`bbolt`]: reading and
//!   writing etcd's own backend file, for migrations;
//! * [`demo`]: a local three-node cluster for trying it out.
//!
//! This crate never decides what the cluster agrees on: every write goes
//! through [`synod_runtime::Handle::propose`], and every linearizable read
//! through [`synod_runtime::Handle::read`].

#![warn(missing_docs)]

pub mod alarm;
pub mod auth;
pub mod authority_header;
pub mod bbolt;
pub mod cluster;
pub mod compactor;
pub mod config;
pub mod context;
pub mod corrupt;
pub mod decode_limit;
pub mod demo;
pub mod etcd_db;
pub mod http;
pub mod ids;
pub mod logging;
pub mod quota;
pub mod server;
pub mod services;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod tls;
pub mod token;
