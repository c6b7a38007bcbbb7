//! synod-server: the `synod` binary's library. One process runs one member
//! of a Synod cluster and serves the etcd v3 gRPC API on its client URLs, so
//! etcdctl and etcd's client libraries work against it unchanged.
//!
//! The layers, top down:
//! * [`config`]: etcd's flags, from the command line, `ETCD_*` variables
//!   or a YAML config file, validated once into a
//!   [`config::ServerConfig`] (member and cluster ids, timing in ticks,
//!   quorums); [`logging`]: the log flags;
//! * [`server`]: starts the replica and the gRPC services, and stops them;
//!   [`bootstrap`] settles who the member is (from the flags, from the
//!   cluster it joins, or from its data directory);
//! * [`membership`]: keeps the transport's peers in step with membership
//!   changes, promotes learners added as voters, stops a removed member;
//! * [`kv_service`], [`cluster_service`], [`maintenance_service`]: the etcd
//!   services, mapping each RPC to a proposal, a linearizable read or a
//!   local (serializable) read;
//! * [`watch_service`] and [`watch_hub`]: etcd's watches, fed by the events
//!   each applied write made;
//! * [`lock_service`] and [`election_service`]: etcd's v3lock and
//!   v3election services, on the key-per-contender [`recipes`];
//! * [`lease_service`]: etcd's Lease service; [`lease_keeper`] counts TTLs
//!   down on the leader and revokes expired leases through the log;
//!   [`forward`] takes a follower's keep-alives and membership changes to the leader;
//! * [`machine`]: the replicated state machine: etcd's MVCC store
//!   ([`synod_kv::KvState`]) plus the members' published attributes;
//! * [`auth`]: etcd's auth store (users, roles, permissions, simple
//!   tokens), replicated; [`auth_service`]: the Auth RPCs; [`token`]:
//!   simple tokens and JWTs;
//! * [`compactor`]: auto-compaction, proposed by the leader through the
//!   log;
//! * [`alarm`]: the replicated alarms (NOSPACE, CORRUPT) and what they
//!   refuse; [`quota`]: the space quota check before a write is proposed;
//! * [`http`]: HTTP beside gRPC on the client URLs and on the metrics
//!   URLs: `/health`, `/livez`, `/readyz`, `/version`, `/metrics`;
//!   [`metrics`]: the member's Prometheus metrics; [`grpc_metrics`]: gRPC
//!   calls counted as etcd counts them;
//! * [`status`]: runtime and state machine errors as etcd's gRPC errors;
//! * [`gateway`]: etcd's HTTP/JSON gateway (`/v3/kv/range`, `/v3/watch`,
//!   ...), routed by the annotations of etcd's API and served by calling
//!   the gRPC services in process;
//! * [`tls`]: client and peer TLS from etcd's flags;
//! * [`authority_header`]: every client connection is read through it, so
//!   that the HTTP/2 `:authority` URLs etcd's Go client sends reach the
//!   server as the bare `host:port` it accepts;
//! * [`ids`]: member and cluster ids, derived as etcd derives them;
//! * [`snapshot`]: the backup file `Maintenance.Snapshot` streams, and
//!   `synod snapshot restore`;
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
