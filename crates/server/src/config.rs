//! The command line, with etcd's flag names where they mean the same thing,
//! validated once into a [`ServerConfig`].
//!
//! Everything a member needs to agree with the others on (member ids, the
//! cluster id, who the members are) is derived from `--initial-cluster` and
//! `--initial-cluster-token`, so every member must be started with the same
//! values of both. Wall-clock flags (milliseconds) become protocol ticks of
//! `--tick-ms` here; invalid combinations are refused with a message naming
//! the flags. TLS is on for a URL whose scheme is `https` (see [`crate::tls`]
//! for what the TLS flags do).
//!
//! The flags come from the command line, `ETCD_*` variables or a config
//! file, as etcd takes them ([`sources`]); an etcd flag that Synod accepts
//! either does what etcd does or is refused with the reason
//! ([`unserved`], and the checks in [`NodeArgs::to_config`]).

pub mod duration;
pub mod file;
pub mod sources;
pub mod unserved;
pub mod urls;

use crate::ids;
use crate::tls::TlsInfo;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use synod_paxos::{Config, NodeId};
use synod_runtime::NodeConfig;

/// A client session (the duplicate-detection entry of a client id) idle
/// this long is forgotten through the log: one hour, far beyond the seconds
/// etcd's clients retry for.
pub const SESSION_EXPIRY_MS: u64 = 3_600_000;

/// The default `--max-watchers-per-stream`: far above what one client
/// multiplexes on a stream (Kubernetes' API server watches each resource
/// type once), low enough that one stream cannot hold unbounded memory.
pub const DEFAULT_MAX_WATCHERS_PER_STREAM: usize = 10_000;

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// What gRPC accepts on top of `--max-request-bytes` for the request's
/// framing, as etcd does (`grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Room a request needs in a peer message and a log record besides its own
/// bytes: the command's id and length, the batch and message around it,
/// the record's framing, and the margin the protocol keeps below the frame
/// limit (`Config::max_message_bytes`).
pub const REQUEST_ENVELOPE_BYTES: usize = 64 * 1024;

/// The largest `--max-request-bytes` accepted. A request is proposed as one
/// command, which travels whole in one peer frame and is stored whole in
/// one write-ahead-log record (both at most 64 MiB): so the request, gRPC's
/// framing allowance ([`GRPC_OVERHEAD_BYTES`]) and its envelope
/// ([`REQUEST_ENVELOPE_BYTES`]) must fit in 64 MiB. (A larger one used to
/// stop the replica that tried to log it, and each client retry the next
/// leader.)
pub const MAX_REQUEST_BYTES_LIMIT: usize =
    synod_storage::record::MAX_PAYLOAD - GRPC_OVERHEAD_BYTES - REQUEST_ENVELOPE_BYTES;

/// `synod`: one member of a Synod cluster, speaking the etcd v3 gRPC API.
#[derive(Debug, Parser)]
#[command(
    name = "synod",
    version,
    about = "A Multi-Paxos replicated key-value server that speaks the etcd v3 API",
    long_about = "A Multi-Paxos replicated key-value server that speaks the etcd v3 API.\n\n\
        Without a subcommand, runs one member of a cluster; every member must be started \
        with the same --initial-cluster and --initial-cluster-token. `synod demo` starts a \
        local three-node cluster.",
    after_long_help = "Every flag of a member may also be set from the environment, as etcd reads \
        it: ETCD_ and the flag's name in upper case with dashes as underscores (--initial-cluster \
        is ETCD_INITIAL_CLUSTER, --client-cert-auth ETCD_CLIENT_CERT_AUTH=true). An empty \
        variable is as if unset. A variable for a flag also given on the command line is refused \
        (as etcd does), and so is an ETCD_* variable that names no flag Synod serves (etcd only \
        warns): nothing set is ignored. ETCDCTL_* variables are etcdctl's and are left alone.\n\n\
        With --config-file (or ETCD_CONFIG_FILE) the YAML file is the whole configuration, with \
        etcd's keys (see crates/server/README.md); any other flag or ETCD_* variable is refused \
        (etcd ignores them).\n\n\
        Durations are written as Go's time.ParseDuration reads them: 300ms, 1.5s, 1h30m.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Run something other than one member.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The member's flags.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local three-node cluster (client URLs http://127.0.0.1:2379,
    /// :22379, :32379) as child processes, data under ./synod-data, until
    /// Ctrl-C or SIGTERM.
    Demo(DemoArgs),
    /// Backups: `synod snapshot restore FILE ...` creates a member's data
    /// directory for a new cluster from a file saved by `etcdctl snapshot
    /// save` against a Synod member.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// `synod snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Verify a snapshot file's checksum and create, from it, the data
    /// directory of one member of a NEW cluster (run it once per member,
    /// with the same file, --initial-cluster and --initial-cluster-token;
    /// then start every member with those flags and
    /// --initial-cluster-state new). Keys, revisions, compaction and leases
    /// are kept; members and alarms are the new cluster's.
    Restore(RestoreArgs),
}

/// Flags of `synod snapshot restore`, as `etcdutl snapshot restore`'s.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The snapshot file (from `etcdctl snapshot save`).
    pub file: PathBuf,
    /// Name of the member being restored; must be one of the names in
    /// --initial-cluster.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The data directory to create; it must not exist or be empty
    /// [default: NAME.synod].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Every member of the new cluster: name=peer-URL pairs.
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// The new cluster's token (member and cluster ids derive from it).
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs; must match its --initial-cluster entry.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
}

impl RestoreArgs {
    /// What to restore, with the default data directory filled in.
    pub fn to_restore(&self) -> crate::snapshot::Restore {
        crate::snapshot::Restore {
            file: self.file.clone(),
            name: self.name.clone(),
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.synod", self.name))),
            initial_cluster: self.initial_cluster.clone(),
            initial_cluster_token: self.initial_cluster_token.clone(),
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
        }
    }
}

/// Flags of `synod demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where the three members keep their data (one folder each).
    #[arg(long, default_value = "synod-data")]
    pub data_dir: PathBuf,
    /// Run the cluster with client and peer TLS: a CA and certificates are
    /// made under DATA_DIR/tls/certs (kept for later runs), client
    /// certificates are required, and the data goes under DATA_DIR/tls.
    #[arg(long)]
    pub tls: bool,
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterState {
    /// The cluster is being created with these members.
    New,
    /// The member joins (or rejoins) a running cluster of these members;
    /// with an empty data directory it does not vote until caught up.
    Existing,
}

/// `--log-level`, etcd's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, Synod's own debug records included.
    Debug,
    /// Informational records and above.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
    /// zap's development panic level: Synod logs nothing above errors, so
    /// it shows errors.
    Dpanic,
    /// As `dpanic`: errors only.
    Panic,
    /// As `dpanic`: errors only.
    Fatal,
}

/// `--logger`: the form of log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Logger {
    /// One JSON object a line, with zap's keys as etcd writes them:
    /// `level`, `ts`, `caller`, `msg`, then the record's fields.
    Zap,
    /// Human-readable lines (etcd 3.4's default; Synod's own layout, not
    /// capnslog's).
    Capnslog,
}

/// `--auto-compaction-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompactionMode {
    /// --auto-compaction-retention is a duration (a bare number: hours).
    Periodic,
    /// --auto-compaction-retention is a number of revisions.
    Revision,
}

/// A boolean as Go's `strconv.ParseBool` reads it, as etcd's boolean flags
/// and variables are: `1`, `t`, `T`, `TRUE`, `true`, `True`, and `0`, `f`,
/// `F`, `FALSE`, `false`, `False`.
pub fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {value:?}: invalid syntax (write true or false)")),
    }
}

/// A duration as Go's `time.ParseDuration` reads it (see [`duration`]).
fn parse_go_duration(value: &str) -> Result<Duration, String> {
    duration::parse(value).map_err(|e| e.to_string())
}

/// The flags of one member, named as etcd names them where they mean the
/// same thing. A boolean flag is written `--flag` or `--flag=false`, as
/// Go's flags are.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Path to a YAML configuration file with etcd's keys. When given, it
    /// is the whole configuration: any other flag or ETCD_* variable is
    /// refused (etcd ignores them).
    #[arg(long)]
    pub config_file: Option<PathBuf>,

    /// Human-readable name of this member; must be one of the names in
    /// --initial-cluster.
    #[arg(long, default_value = "default")]
    pub name: String,

    /// Path to the data directory [default: NAME.synod, NAME being --name].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// Comma-separated URLs to serve clients (the etcd v3 gRPC API) on;
    /// an https:// URL serves TLS (--cert-file, --key-file or --auto-tls),
    /// an http:// one plaintext.
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,

    /// Comma-separated URLs to serve /metrics and the health endpoints on
    /// (/health, /livez, /readyz), apart from the client URLs (which serve
    /// them too); an https:// URL serves TLS with the client certificate
    /// flags. None by default.
    #[arg(long, default_value = "")]
    pub listen_metrics_urls: String,

    /// Comma-separated client URLs of this member to tell the cluster about
    /// (shown by `etcdctl member list`).
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,

    /// URL to listen on for the other members (Synod's peer protocol over
    /// TCP, inside TLS for an https:// URL: --peer-cert-file, --peer-key-file
    /// or --peer-auto-tls). Every peer URL must have the same scheme.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,

    /// This member's peer URLs as the other members reach them; must match
    /// this member's entry in --initial-cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,

    /// Every member: name=peer-URL pairs, comma-separated (a name may repeat
    /// for several URLs). The same on every member.
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,

    /// `new` to create a cluster, `existing` to join a running one: a member
    /// joining with an empty data directory may have lost its disk, so it
    /// rejoins as a non-voter until it has caught up from the others.
    #[arg(long, value_enum, default_value = "new")]
    pub initial_cluster_state: ClusterState,

    /// Cluster token: member and cluster ids are derived from it, so
    /// clusters with different tokens refuse each other's peers.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to timeout: a member that has
    /// not heard a leader for this long bids for leadership.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,

    /// Largest request (encoded) the server accepts; larger ones get
    /// "etcdserver: request is too large". At most 63.4 MiB
    /// ([`MAX_REQUEST_BYTES_LIMIT`]: a request must fit one log record and
    /// one peer frame).
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,

    /// How often a watcher created with progress_notify is told the
    /// revision it is up to date with (a duration: 500ms, 10s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_go_duration)]
    pub experimental_watch_progress_notify_interval: Duration,

    /// Before serving clients, compare this member's key-value store with
    /// its peers' (etcd's HashKV at one revision) and refuse to start if a
    /// majority of the voters hold another (see `corrupt.rs`).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool)]
    pub experimental_initial_corrupt_check: bool,

    /// How often the leader checks that every member's key-value store is
    /// the same and raises the CORRUPT alarm for one that differs from the
    /// majority (a duration: 5m); 0s, etcd's default, never checks.
    #[arg(long, default_value = "0s", value_parser = parse_go_duration)]
    pub experimental_corrupt_check_time: Duration,

    /// Most concurrent gRPC streams (calls) on one client connection, as
    /// etcd's flag: the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS a client is
    /// told; a client waits for a stream to end before it opens more.
    /// etcd's default, 4294967295, sets no limit.
    #[arg(long, default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,

    /// Most watchers on one watch stream (not an etcd flag: etcd sets no
    /// limit). A create past it is refused on the stream, as etcd refuses
    /// a create it cannot make: created and canceled at once, watch id -1,
    /// with a cancel reason. The other watchers go on.
    #[arg(long, default_value_t = DEFAULT_MAX_WATCHERS_PER_STREAM)]
    pub max_watchers_per_stream: usize,

    /// The shortest interval between a client's keepalive pings that etcd
    /// tolerates (etcd's default 5s). Refused: the HTTP/2 server under
    /// tonic (hyper) has no policy on clients' ping rates, so Synod cannot
    /// enforce it.
    #[arg(long, value_parser = parse_go_duration)]
    pub grpc_keepalive_min_time: Option<Duration>,

    /// How often the server pings a client connection to check that it is
    /// alive (a duration: 2h); 0s never pings.
    #[arg(long, default_value = "2h", value_parser = parse_go_duration)]
    pub grpc_keepalive_interval: Duration,

    /// How long the server waits for the answer to a keepalive ping before
    /// it closes the connection (a duration: 20s).
    #[arg(long, default_value = "20s", value_parser = parse_go_duration)]
    pub grpc_keepalive_timeout: Duration,

    /// Length (in milliseconds) of one tick of the protocol's logical clock;
    /// the other durations are rounded to ticks.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,

    /// Raise an alarm when the store's size exceeds this many bytes; 0 means
    /// etcd's default, 2 GiB (at most 8 GiB). The size is the logical size
    /// of the key-value store: key and value bytes of every revision it
    /// holds, plus 64 bytes per revision and per lease. It drops when
    /// history is compacted. A write that would exceed it fails with
    /// "etcdserver: mvcc: database space exceeded" and raises the NOSPACE
    /// alarm on every member; compact, defragment and `etcdctl alarm
    /// disarm` to write again.
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,

    /// Size of one write-ahead log file (Synod's own flag): files are
    /// preallocated to it, and the log is deleted in whole files once a
    /// snapshot (periodic, or `etcdctl defrag`) covers them.
    #[arg(long, default_value_t = 64 << 20)]
    pub wal_segment_bytes: u64,

    /// Take a snapshot (and delete the log before it) every this many log
    /// slots. etcd counts raft entries (default 100000); a Synod slot holds
    /// a batch of commands, so Synod's default is lower. A member that falls
    /// behind the deleted log catches up from a snapshot.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_count: u64,

    /// Most client commands packed into one log slot.
    #[arg(long, default_value_t = 4096)]
    pub max_batch: usize,

    /// Most log slots the leader has in flight (proposed, not yet chosen).
    #[arg(long, default_value_t = 64)]
    pub max_inflight_slots: usize,

    /// Phase-1 (election) quorum size for flexible quorums [default: a
    /// majority, or members - phase2 + 1 when only --phase2-quorum is given].
    #[arg(long)]
    pub phase1_quorum: Option<usize>,

    /// Phase-2 (replication) quorum size for flexible quorums [default: a
    /// majority, or members - phase1 + 1 when only --phase1-quorum is given].
    /// phase1 + phase2 must exceed the number of members.
    #[arg(long)]
    pub phase2_quorum: Option<usize>,

    /// Leader lease (in milliseconds) for linearizable reads without a
    /// quorum round; must be below --election-timeout; 0 disables leases
    /// [default: 4/5 of --election-timeout].
    #[arg(long)]
    pub lease_ms: Option<u64>,

    /// Client TLS: this member's certificate (PEM) for https:// client URLs;
    /// also its client certificate when it forwards a request to the
    /// leader.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,

    /// Client TLS: the key (PEM) of --cert-file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,

    /// Client TLS: CA certificates (PEM) of the client certificates
    /// accepted; as in etcd, giving it requires every client to present one.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,

    /// Client TLS: require and verify client certificates (against
    /// --trusted-ca-file).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool)]
    pub client_cert_auth: bool,

    /// Client TLS: revoked client certificates (PEM CRLs); a client whose
    /// certificate is listed is refused at the handshake.
    #[arg(long)]
    pub client_crl_file: Option<PathBuf>,

    /// Client TLS with a self-signed certificate made at start (under the
    /// data directory, fixtures/client); clients cannot verify it.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool)]
    pub auto_tls: bool,

    /// Peer TLS: this member's certificate (PEM), presented to the members it
    /// connects to and that connect to it.
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,

    /// Peer TLS: the key (PEM) of --peer-cert-file.
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,

    /// Peer TLS: the cluster's CA certificates (PEM); a peer whose
    /// certificate is not from it is refused at the handshake.
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Peer TLS: require and verify peers' certificates (against
    /// --peer-trusted-ca-file).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool)]
    pub peer_client_cert_auth: bool,

    /// Peer TLS: revoked peer certificates (PEM CRLs).
    #[arg(long)]
    pub peer_crl_file: Option<PathBuf>,

    /// Peer TLS with a self-signed certificate made at start (under the
    /// data directory, fixtures/peer): encrypted, but peers are not
    /// authenticated.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool)]
    pub peer_auto_tls: bool,

    /// Peer TLS: a peer's certificate must carry this common name.
    #[arg(long)]
    pub peer_cert_allowed_cn: Option<String>,

    /// Peer TLS: do not require a connecting peer's certificate to name
    /// the address it connects from (by default, as etcd, its IP address
    /// or a DNS name resolving to it must be among the certificate's
    /// names). For peers behind address translation.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool)]
    pub experimental_peer_skip_client_san_verification: bool,

    /// Comma-separated TLS 1.2 cipher suites allowed, by their Go names
    /// (e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) [default: rustls's
    /// defaults]. TLS 1.3 suites are always allowed.
    #[arg(long, default_value = "")]
    pub cipher_suites: String,

    /// Auth tokens: `simple`, or `jwt,pub-key=<file>,priv-key=<file>,
    /// sign-method=<RS256|ES256|...>,ttl=<duration>` (see the README).
    #[arg(long, default_value = "simple")]
    pub auth_token: String,

    /// Seconds a simple token lives unused on a member.
    #[arg(long, default_value_t = 300)]
    pub auth_token_ttl: u64,

    /// bcrypt's cost for hashing passwords (4 to 31).
    #[arg(long, default_value_t = 10)]
    pub bcrypt_cost: u32,

    /// Most compares, success ops or failure ops in one txn; more get
    /// "etcdserver: too many operations in txn request". Each member checks
    /// its own before proposing, as etcd does: raise it above 128 only once
    /// every member runs a Synod that has this flag.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: u32,

    /// How --auto-compaction-retention is read: `periodic` (a duration) or
    /// `revision` (a number of revisions).
    #[arg(long, value_enum, default_value = "periodic")]
    pub auto_compaction_mode: CompactionMode,

    /// Keep this much history; the leader compacts the rest through the
    /// log, as etcd's compactor. periodic: a duration (1h30m) or a bare
    /// number of hours; every tenth of it (at most 6 minutes) the revision
    /// is noted, and once it is old enough, the store is compacted to the
    /// revision noted that long ago, then again every retention (at most
    /// every hour). revision: every 5 minutes, compact to the current
    /// revision minus this many. 0 disables.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,

    /// Log records at this level and above: debug, info, warn, error (panic
    /// and fatal, as dpanic, show errors: Synod logs nothing graver).
    /// RUST_LOG, if set, replaces it (per-module directives).
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// `zap` for JSON lines with etcd's keys (level, ts, caller, msg), or
    /// `capnslog` for human-readable lines.
    #[arg(long, value_enum, default_value = "capnslog")]
    pub logger: Logger,

    /// Where logs go, comma-separated: stderr, stdout, or file paths
    /// (appended to; zap only); `default` is stderr (systemd's journal
    /// keeps a unit's stderr). With capnslog, exactly one of stderr, stdout
    /// or default.
    #[arg(long, default_value = "default")]
    pub log_outputs: String,

    /// Reject membership changes that would leave the members the leader
    /// hears without a quorum (etcd's default, true). Synod always checks:
    /// `false` is refused.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true", value_parser = parse_go_bool)]
    pub strict_reconfig_check: bool,

    /// Skip fsync (etcd: "unsafe, will cause data loss"). Refused when
    /// true: a Paxos acceptor that forgets a promise or an accepted value
    /// after a crash breaks agreement for the whole cluster, not only its
    /// own data, and Synod's log has no mode that skips fsync.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true", value_parser = parse_go_bool)]
    pub unsafe_no_fsync: bool,

    /// Where each flag not from the command line came from, for errors.
    #[arg(skip)]
    pub origins: Vec<(String, sources::Origin)>,
}

/// A configuration the flags cannot make.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A [`ConfigError`] with this message.
pub(crate) fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// One member as `--initial-cluster` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The derived member id.
    pub id: NodeId,
    /// The member's name.
    pub name: String,
    /// Its peer URLs as given.
    pub peer_urls: Vec<String>,
}

/// One client URL to listen on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientListen {
    /// The URL as given.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Whether it serves TLS (an https:// URL).
    pub tls: bool,
}

/// Everything one member needs to run, validated.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This member's name.
    pub name: String,
    /// This member's id.
    pub member_id: NodeId,
    /// The cluster's id.
    pub cluster_id: u64,
    /// Every member, in id order.
    pub members: Vec<Member>,
    /// Where to serve clients.
    pub client_listen: Vec<ClientListen>,
    /// Where to serve metrics and health only (`--listen-metrics-urls`).
    pub metrics_listen: Vec<ClientListen>,
    /// The client URLs published to the cluster.
    pub advertise_client_urls: Vec<String>,
    /// The peer URLs published to the cluster (`--initial-advertise-peer-urls`).
    pub advertise_peer_urls: Vec<String>,
    /// Where to listen for peers.
    pub peer_listen: SocketAddr,
    /// The runtime's configuration (protocol, peers, data directory, tick).
    pub node: NodeConfig,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--experimental-watch-progress-notify-interval`.
    pub watch_progress_notify_interval: Duration,
    /// `--max-concurrent-streams`: gRPC streams per client connection.
    pub max_concurrent_streams: u32,
    /// `--experimental-initial-corrupt-check`.
    pub initial_corrupt_check: bool,
    /// `--experimental-corrupt-check-time`; `None` when 0 (never).
    pub corrupt_check_time: Option<Duration>,
    /// `--max-watchers-per-stream`.
    pub max_watchers_per_stream: usize,
    /// `--grpc-keepalive-interval`; `None` when 0 (no pings).
    pub grpc_keepalive_interval: Option<Duration>,
    /// `--grpc-keepalive-timeout`.
    pub grpc_keepalive_timeout: Duration,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--auto-compaction-mode` and `--auto-compaction-retention`; `None`
    /// when disabled.
    pub auto_compaction: Option<crate::compactor::Retention>,
    /// The space quota in bytes (`--quota-backend-bytes`, 0 replaced by the
    /// default).
    pub quota_bytes: u64,
    /// The client TLS flags.
    pub client_tls: TlsInfo,
    /// The peer TLS flags.
    pub peer_tls: TlsInfo,
    /// Whether peers talk TLS (the peer URLs are https://).
    pub peer_tls_on: bool,
    /// The URL peers are listened on (`--listen-peer-urls`).
    pub listen_peer_url: String,
    /// `--cipher-suites`, as rustls suites.
    pub cipher_suites: Vec<rustls::SupportedCipherSuite>,
    /// `--auth-token`, parsed when the member starts (it reads key files).
    pub auth_token: String,
    /// `--auth-token-ttl`.
    pub auth_token_ttl: Duration,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
}

/// Whether a URL's scheme asks for TLS (`https://`); `false` for text
/// that is no URL.
pub fn is_tls(url: &str) -> bool {
    urls::parse("", url).is_ok_and(|u| u.tls)
}

/// The host:port of an `http://host:port` or `https://host:port` URL;
/// `flag` names the flag in the error.
pub fn host_port(flag: &str, url: &str) -> Result<String, ConfigError> {
    urls::parse(flag, url).map(|u| u.host_port())
}

/// Resolves an `http(s)://host:port` URL to one socket address (IPv4 first).
pub fn resolve(flag: &str, url: &str) -> Result<SocketAddr, ConfigError> {
    urls::parse(flag, url)?.resolve(flag)
}

/// Parses `--initial-cluster` into members with derived ids, in id order.
pub fn parse_initial_cluster(value: &str, token: &str) -> Result<Vec<Member>, ConfigError> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .ok_or_else(|| bad(format!("--initial-cluster: {entry:?} is not name=http://host:port")))?;
        if name.is_empty() {
            return Err(bad(format!("--initial-cluster: {entry:?} has no name")));
        }
        let url = urls::parse("initial-cluster", url)?;
        by_name.entry(name.to_string()).or_default().push(url.text);
    }
    if by_name.is_empty() {
        return Err(bad("--initial-cluster names no member"));
    }
    let mut members: Vec<Member> = by_name
        .into_iter()
        .map(|(name, peer_urls)| Member { id: ids::member_id(&peer_urls, token), name, peer_urls })
        .collect();
    members.sort_by_key(|m| m.id);
    for pair in members.windows(2) {
        if pair[0].id == pair[1].id {
            return Err(bad(format!(
                "--initial-cluster: members {} and {} have the same peer URLs",
                pair[0].name, pair[1].name
            )));
        }
    }
    Ok(members)
}

fn ticks(ms: u64, tick_ms: u64) -> u64 {
    ms / tick_ms
}

impl NodeArgs {
    /// The logging flags, checked (before [`NodeArgs::to_config`], so that
    /// its warnings are logged as asked).
    pub fn log_config(&self) -> Result<crate::logging::LogConfig, ConfigError> {
        crate::logging::LogConfig::new(self.log_level, self.logger, &self.log_outputs).map_err(|e| self.explain(e))
    }

    /// Validates the flags into a configuration. An error names the flags
    /// at fault, and where a value came from if not the command line.
    pub fn to_config(&self) -> Result<ServerConfig, ConfigError> {
        self.validate().map_err(|e| self.explain(e))
    }

    fn validate(&self) -> Result<ServerConfig, ConfigError> {
        self.refuse_what_synod_cannot_do()?;
        let token = &self.initial_cluster_token;
        let members = parse_initial_cluster(&self.initial_cluster, token)?;
        let me = members.iter().find(|m| m.name == self.name).ok_or_else(|| {
            bad(format!(
                "--name {:?} is not in --initial-cluster ({})",
                self.name,
                members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let mut advertised: Vec<String> =
            urls::parse_list("initial-advertise-peer-urls", &self.initial_advertise_peer_urls)?
                .into_iter()
                .map(|u| u.text)
                .collect();
        advertised.sort();
        let mut listed = me.peer_urls.clone();
        listed.sort();
        if advertised != listed {
            return Err(bad(format!(
                "--initial-advertise-peer-urls {} does not match the --initial-cluster entry \
                 for {} ({})",
                advertised.join(","),
                self.name,
                listed.join(",")
            )));
        }

        let mut peers = BTreeMap::new();
        for m in &members {
            peers.insert(m.id, resolve("initial-cluster", &m.peer_urls[0])?);
        }
        let listen_peer = urls::parse_list("listen-peer-urls", &self.listen_peer_urls)?;
        if listen_peer.len() > 1 {
            return Err(bad("--listen-peer-urls: only one peer URL is supported"));
        }
        let peer_listen = listen_peer[0].resolve("listen-peer-urls")?;
        let listen_peer: Vec<String> = listen_peer.into_iter().map(|u| u.text).collect();
        let client_listen = urls::parse_list("listen-client-urls", &self.listen_client_urls)?
            .into_iter()
            .map(|u| Ok(ClientListen { addr: u.resolve("listen-client-urls")?, tls: u.tls, url: u.text }))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let metrics_listen = if self.listen_metrics_urls.trim().is_empty() {
            Vec::new()
        } else {
            urls::parse_list("listen-metrics-urls", &self.listen_metrics_urls)?
                .into_iter()
                .map(|u| Ok(ClientListen { addr: u.resolve("listen-metrics-urls")?, tls: u.tls, url: u.text }))
                .collect::<Result<Vec<_>, ConfigError>>()?
        };
        let advertise_client_urls: Vec<String> =
            urls::parse_list("advertise-client-urls", &self.advertise_client_urls)?
                .into_iter()
                .map(|u| u.text)
                .collect();
        let (client_tls, peer_tls) = self.tls_info();
        client_tls.validate("").map_err(|e| bad(e.0))?;
        peer_tls.validate("peer-").map_err(|e| bad(e.0))?;
        for l in &client_listen {
            if l.tls && !client_tls.configured() {
                return Err(bad(format!(
                    "TLS key/cert (--cert-file, --key-file, or --auto-tls) must be provided for client URL {} \
                     with the https scheme",
                    l.url
                )));
            }
            if !l.tls && client_tls.configured() {
                tracing::warn!(url = %l.url, "client URL is http while TLS is configured: it serves plaintext");
            }
        }
        if let Some(l) = metrics_listen.iter().find(|l| l.tls && !client_tls.configured()) {
            return Err(bad(format!(
                "TLS key/cert (--cert-file, --key-file, or --auto-tls) must be provided for metrics URL {} with \
                 the https scheme",
                l.url
            )));
        }
        let peer_urls: Vec<&String> =
            listen_peer.iter().chain(&advertised).chain(members.iter().flat_map(|m| &m.peer_urls)).collect();
        let peer_tls_on = is_tls(peer_urls[0]);
        if peer_urls.iter().any(|u| is_tls(u) != peer_tls_on) {
            return Err(bad(
                "peer URLs (--listen-peer-urls, --initial-advertise-peer-urls, --initial-cluster) must be \
                 all http:// or all https://",
            ));
        }
        if peer_tls_on && !peer_tls.configured() {
            return Err(bad(format!(
                "TLS key/cert (--peer-cert-file, --peer-key-file, or --peer-auto-tls) must be provided for peer \
                 URL {} with the https scheme",
                listen_peer[0]
            )));
        }
        if !peer_tls_on && peer_tls.configured() {
            tracing::warn!("peer URLs are http while peer TLS is configured: ignoring the peer certificate");
        }
        let cipher_suites = crate::tls::cipher_suites(&self.cipher_suites).map_err(|e| bad(e.0))?;

        let protocol = self.protocol(me.id, members.iter().map(|m| m.id).collect())?;
        let ids: Vec<NodeId> = members.iter().map(|m| m.id).collect();
        let cluster_id = ids::cluster_id(&ids, token);
        let data_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.synod", self.name)));
        let mut node = NodeConfig::new(protocol, cluster_id, peers, data_dir);
        node.tick = Duration::from_millis(self.tick_ms);
        node.join_existing = self.initial_cluster_state == ClusterState::Existing;
        // (The frame keeps the runtime's 64 MiB: larger ones could not be
        // logged anyway, and the protocol cuts its messages to fit.)
        if self.wal_segment_bytes < 4096 {
            return Err(bad("--wal-segment-bytes must be at least 4096"));
        }
        node.wal.segment_size = self.wal_segment_bytes;
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(bad(format!("--bcrypt-cost {} is out of bcrypt's range 4..=31", self.bcrypt_cost)));
        }
        if self.max_request_bytes == 0 {
            return Err(bad("--max-request-bytes must be positive"));
        }
        if self.max_concurrent_streams == 0 {
            return Err(bad("--max-concurrent-streams must be positive"));
        }
        if self.max_watchers_per_stream == 0 {
            return Err(bad("--max-watchers-per-stream must be positive"));
        }
        if self.max_txn_ops == 0 {
            return Err(bad("--max-txn-ops must be positive"));
        }
        if self.experimental_watch_progress_notify_interval.is_zero() {
            return Err(bad("--experimental-watch-progress-notify-interval must be above zero"));
        }
        let auto_compaction =
            crate::compactor::Retention::parse(self.auto_compaction_mode, &self.auto_compaction_retention)
                .map_err(|e| bad(format!("--auto-compaction-retention {:?}: {e}", self.auto_compaction_retention)))?;
        if self.grpc_keepalive_timeout.is_zero() {
            return Err(bad("--grpc-keepalive-timeout must be positive"));
        }
        let most = MAX_REQUEST_BYTES_LIMIT.min(node.max_frame - GRPC_OVERHEAD_BYTES - REQUEST_ENVELOPE_BYTES);
        if self.max_request_bytes > most {
            return Err(bad(format!(
                "--max-request-bytes {} is above the limit of {most} bytes: a request (with {GRPC_OVERHEAD_BYTES} bytes \
                 of gRPC framing and {REQUEST_ENVELOPE_BYTES} of envelope) must fit in one write-ahead-log record and \
                 one peer frame ({} bytes each)",
                self.max_request_bytes,
                synod_storage::record::MAX_PAYLOAD.min(node.max_frame),
            )));
        }
        Ok(ServerConfig {
            name: self.name.clone(),
            member_id: me.id,
            cluster_id,
            members,
            client_listen,
            metrics_listen,
            advertise_client_urls,
            advertise_peer_urls: advertised,
            peer_listen,
            node,
            max_request_bytes: self.max_request_bytes,
            watch_progress_notify_interval: self.experimental_watch_progress_notify_interval,
            max_concurrent_streams: self.max_concurrent_streams,
            initial_corrupt_check: self.experimental_initial_corrupt_check,
            corrupt_check_time: Some(self.experimental_corrupt_check_time).filter(|d| !d.is_zero()),
            max_watchers_per_stream: self.max_watchers_per_stream,
            grpc_keepalive_interval: Some(self.grpc_keepalive_interval).filter(|d| !d.is_zero()),
            grpc_keepalive_timeout: self.grpc_keepalive_timeout,
            max_txn_ops: self.max_txn_ops as usize,
            auto_compaction,
            quota_bytes: crate::quota::effective_quota(self.quota_backend_bytes),
            client_tls,
            peer_tls,
            peer_tls_on,
            listen_peer_url: listen_peer[0].clone(),
            cipher_suites,
            auth_token: self.auth_token.clone(),
            auth_token_ttl: Duration::from_secs(self.auth_token_ttl.max(1)),
            bcrypt_cost: self.bcrypt_cost,
        })
    }

    /// Refuses etcd's flags that ask for what Synod does not do, each with
    /// the reason (a flag accepted and ignored would mislead).
    fn refuse_what_synod_cannot_do(&self) -> Result<(), ConfigError> {
        if self.unsafe_no_fsync {
            return Err(bad(
                "--unsafe-no-fsync is refused: a Paxos acceptor must make its promises and accepted values \
                 durable before it answers (one that forgets them in a crash can help choose two different \
                 values for a slot, breaking the whole cluster's agreement, not only its own data), and \
                 Synod's log has no mode that skips fsync",
            ));
        }
        if !self.strict_reconfig_check {
            return Err(bad(
                "--strict-reconfig-check=false is refused: Synod always refuses a membership change that \
                 would leave the members the leader hears without a quorum",
            ));
        }
        if let Some(d) = self.grpc_keepalive_min_time {
            return Err(bad(format!(
                "--grpc-keepalive-min-time {d:?} is refused: the HTTP/2 server under Synod's gRPC (hyper) has \
                 no policy on how often clients ping, so Synod cannot enforce it"
            )));
        }
        Ok(())
    }

    /// The client and peer TLS flags.
    fn tls_info(&self) -> (TlsInfo, TlsInfo) {
        let client = TlsInfo {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
            auto_tls: self.auto_tls,
            crl_file: self.client_crl_file.clone(),
            allowed_cn: None,
            skip_client_san_verification: false,
        };
        let peer = TlsInfo {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
            auto_tls: self.peer_auto_tls,
            crl_file: self.peer_crl_file.clone(),
            allowed_cn: self.peer_cert_allowed_cn.clone(),
            skip_client_san_verification: self.experimental_peer_skip_client_san_verification,
        };
        (client, peer)
    }

    /// The protocol configuration: timing from milliseconds to ticks, and
    /// quorums.
    fn protocol(&self, id: NodeId, members: Vec<NodeId>) -> Result<Config, ConfigError> {
        if self.tick_ms == 0 {
            return Err(bad("--tick-ms must be at least 1"));
        }
        let t = self.tick_ms;
        if self.heartbeat_interval < t {
            return Err(bad(format!(
                "--heartbeat-interval ({} ms) must be at least one tick (--tick-ms {t})",
                self.heartbeat_interval
            )));
        }
        if self.heartbeat_interval >= self.election_timeout {
            return Err(bad(format!(
                "--heartbeat-interval ({} ms) must be below --election-timeout ({} ms)",
                self.heartbeat_interval, self.election_timeout
            )));
        }
        let lease_ms = self.lease_ms.unwrap_or(self.election_timeout / 5 * 4);
        if lease_ms >= self.election_timeout {
            return Err(bad(format!(
                "--lease-ms ({lease_ms}) must be below --election-timeout ({} ms): a failed \
                 leader's lease must run out before another member can be elected",
                self.election_timeout
            )));
        }
        let n = members.len();
        let mut cfg = Config::new(id, members);
        cfg.heartbeat_ticks = ticks(self.heartbeat_interval, t).max(1);
        cfg.election_ticks = ticks(self.election_timeout, t).max(cfg.heartbeat_ticks + 1);
        cfg.election_jitter_ticks = (cfg.election_ticks * 3 / 10).max(1);
        cfg.lease_ticks = ticks(lease_ms, t);
        // Tick timers fire late under load, never early; a quarter of the
        // lease covers that and clock drift with room to spare.
        cfg.lease_drift_margin_ticks = (cfg.lease_ticks / 4).max(1);
        // Client sessions (duplicate detection) are forgotten after an hour
        // idle, whatever the tick: etcd's clients retry for seconds.
        cfg.session_expiry_ticks =
            ticks(SESSION_EXPIRY_MS, t).max(synod_paxos::config::MIN_SESSION_EXPIRY_ROUNDS * cfg.election_ticks);
        cfg.max_batch = self.max_batch;
        if self.snapshot_count == 0 {
            return Err(bad("--snapshot-count must be positive"));
        }
        cfg.snapshot_every = self.snapshot_count;
        cfg.max_inflight_slots = self.max_inflight_slots;
        if self.phase1_quorum.is_some() || self.phase2_quorum.is_some() {
            let (q1, q2) = match (self.phase1_quorum, self.phase2_quorum) {
                (Some(q1), Some(q2)) => (q1, q2),
                (Some(q1), None) => (q1, (n + 1).saturating_sub(q1)),
                (None, Some(q2)) => ((n + 1).saturating_sub(q2), q2),
                (None, None) => unreachable!("one of the quorum flags is set"),
            };
            cfg = cfg
                .with_quorums(q1, q2)
                .map_err(|e| bad(format!("--phase1-quorum {q1} / --phase2-quorum {q2} with {n} members: {e}")))?;
        }
        cfg.validate().map_err(|e| {
            bad(format!(
                "invalid timing or sizes (--tick-ms, --heartbeat-interval, --election-timeout, \
                 --lease-ms, --max-batch, --max-inflight-slots): {e}"
            ))
        })?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member "b" of a three-member cluster; `extra` flag/value pairs
    /// replace or add to the defaults (passed as `--flag=value`, so a
    /// switch is written `"--auto-tls", "true"`).
    fn args(extra: &[&str]) -> Result<ServerConfig, ConfigError> {
        let mut flags = vec![
            ("--name", "b"),
            ("--initial-cluster", "a=http://127.0.0.1:1001,b=http://127.0.0.1:1002,c=http://127.0.0.1:1003"),
            ("--initial-advertise-peer-urls", "http://127.0.0.1:1002"),
            ("--listen-peer-urls", "http://127.0.0.1:1002"),
            ("--listen-client-urls", "http://127.0.0.1:2002"),
        ];
        for pair in extra.chunks(2) {
            match flags.iter_mut().find(|(f, _)| *f == pair[0]) {
                Some(slot) => slot.1 = pair[1],
                None => flags.push((pair[0], pair[1])),
            }
        }
        let argv = std::iter::once("synod".to_string()).chain(flags.iter().map(|(f, v)| format!("{f}={v}")));
        Cli::try_parse_from(argv).map_err(|e| bad(e.to_string()))?.node.to_config()
    }

    #[test]
    fn every_member_derives_the_same_ids() {
        let b = args(&[]).unwrap();
        let members = parse_initial_cluster(
            "c=http://127.0.0.1:1003,a=http://127.0.0.1:1001,b=http://127.0.0.1:1002",
            "etcd-cluster",
        )
        .unwrap();
        assert_eq!(members, b.members);
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        assert_eq!(b.cluster_id, ids::cluster_id(&ids, "etcd-cluster"));
        assert_eq!(b.node.protocol.id, b.member_id);
        assert_eq!(b.node.protocol.members, ids);
    }

    #[test]
    fn duration_flags_take_gos_syntax() {
        let c = args(&["--grpc-keepalive-interval", "1h30m", "--grpc-keepalive-timeout", "1.5s"]).unwrap();
        assert_eq!(c.grpc_keepalive_interval, Some(Duration::from_secs(5400)));
        assert_eq!(c.grpc_keepalive_timeout, Duration::from_millis(1500));
        let c = args(&["--experimental-watch-progress-notify-interval", "300ms", "--grpc-keepalive-interval", "0"]);
        let c = c.unwrap();
        assert_eq!(c.watch_progress_notify_interval, Duration::from_millis(300));
        assert_eq!(c.grpc_keepalive_interval, None, "0 never pings");
        for (bad, why) in [("10", "missing unit"), ("1d", "unknown unit"), ("-1s", "negative"), ("2562048h", "invalid")]
        {
            let err = args(&["--grpc-keepalive-interval", bad]).unwrap_err().to_string();
            assert!(err.contains("--grpc-keepalive-interval") && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn etcd_flags_asking_for_what_synod_does_not_do_are_refused_with_the_reason() {
        let table: &[(&[&str], &str)] = &[
            (&["--unsafe-no-fsync", "true"], "must make its promises and accepted values durable"),
            (&["--strict-reconfig-check", "false"], "always refuses a membership change"),
            (&["--grpc-keepalive-min-time", "5s"], "no policy on how often clients ping"),
            (&["--max-txn-ops", "0"], "--max-txn-ops must be positive"),
            (&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"], "number of revisions"),
            (&["--auto-compaction-retention", "100ms"], "at least 1s"),
        ];
        for (extra, want) in table {
            let err = args(extra).unwrap_err().to_string();
            assert!(err.contains(want), "{extra:?}: {err}");
        }
        // What etcd does by default is what Synod does: accepted.
        let c = args(&["--unsafe-no-fsync", "false", "--strict-reconfig-check", "true", "--max-txn-ops", "1000"]);
        assert_eq!(c.unwrap().max_txn_ops, 1000);
        let c = args(&["--auto-compaction-retention", "1h30m"]).unwrap();
        assert_eq!(c.auto_compaction, Some(crate::compactor::Retention::Periodic(Duration::from_secs(5400))));
    }

    #[test]
    fn a_request_limit_beyond_what_a_log_record_and_a_peer_frame_carry_is_refused_at_start() {
        let err = args(&["--max-request-bytes", "70000000"]).unwrap_err().to_string();
        assert!(
            err.contains("--max-request-bytes 70000000") && err.contains(&MAX_REQUEST_BYTES_LIMIT.to_string()),
            "{err}"
        );
        let just_above = (MAX_REQUEST_BYTES_LIMIT + 1).to_string();
        assert!(args(&["--max-request-bytes", &just_above]).is_err());
        let at = MAX_REQUEST_BYTES_LIMIT.to_string();
        let c = args(&["--max-request-bytes", &at]).unwrap();
        // What the limit promises: the largest request, with its gRPC
        // framing and a command's envelope in a message, fits a record and
        // a frame, and the protocol's message budget.
        let envelope = 32 + 16 + synod_paxos::message::ENVELOPE_BYTES;
        let request = c.max_request_bytes + GRPC_OVERHEAD_BYTES + envelope;
        assert!(request <= synod_storage::record::MAX_PAYLOAD);
        assert!(request <= c.node.max_frame);
        let command = c.max_request_bytes + envelope;
        assert!(command <= c.node.protocol.max_message_bytes - synod_paxos::message::ENVELOPE_BYTES);
    }

    #[test]
    fn milliseconds_become_ticks() {
        let c = args(&["--tick-ms", "10"]).unwrap().node.protocol;
        assert_eq!((c.heartbeat_ticks, c.election_ticks, c.lease_ticks), (10, 100, 80));
    }

    #[test]
    fn invalid_flags_are_refused_with_a_message_naming_them() {
        let table: &[(&[&str], &str)] = &[
            (&["--phase1-quorum", "1", "--phase2-quorum", "2"], "do not intersect"),
            (&["--lease-ms", "1000"], "--lease-ms"),
            (&["--heartbeat-interval", "1000"], "--heartbeat-interval"),
            (&["--name", "z"], "not in --initial-cluster"),
            (&["--initial-advertise-peer-urls", "http://127.0.0.1:9"], "does not match"),
            (&["--listen-client-urls", "https://127.0.0.1:1"], "--cert-file"),
            (&["--initial-cluster", "a=127.0.0.1:1"], "http://"),
            (&["--listen-peer-urls", "https://127.0.0.1:1002"], "all http:// or all https://"),
            (&["--cert-file", "c.pem"], "--key-file"),
            (&["--client-cert-auth", "true", "--cert-file", "c.pem", "--key-file", "k.pem"], "--trusted-ca-file"),
            (&["--peer-client-cert-auth", "true"], "--peer-trusted-ca-file"),
            (&["--cipher-suites", "TLS_NOPE"], "unknown cipher suite"),
            (&["--listen-client-urls", "unix://x:1"], "unix sockets"),
            (&["--listen-metrics-urls", "https://127.0.0.1:9"], "metrics URL https://127.0.0.1:9"),
            (&["--listen-metrics-urls", "127.0.0.1:9"], "--listen-metrics-urls"),
        ];
        for (extra, want) in table {
            let err = args(extra).unwrap_err().to_string();
            assert!(err.contains(want), "{extra:?}: {err:?} should mention {want:?}");
        }
    }

    #[test]
    fn each_client_url_serves_tls_by_its_scheme() {
        let c = args(&[
            "--listen-client-urls",
            "http://127.0.0.1:2002,https://127.0.0.1:2003",
            "--cert-file",
            "c.pem",
            "--key-file",
            "k.pem",
            "--client-cert-auth",
            "true",
            "--trusted-ca-file",
            "ca.pem",
        ])
        .unwrap();
        let tls: Vec<bool> = c.client_listen.iter().map(|l| l.tls).collect();
        assert_eq!(tls, [false, true]);
        assert!(c.client_tls.client_cert_auth);
        assert!(!c.peer_tls_on);
    }

    #[test]
    fn metrics_urls_are_optional_and_each_serves_tls_by_its_scheme() {
        assert!(args(&[]).unwrap().metrics_listen.is_empty());
        let c = args(&["--listen-metrics-urls", "http://127.0.0.1:2381,https://127.0.0.1:2382", "--auto-tls", "true"])
            .unwrap();
        let urls: Vec<(&str, bool)> = c.metrics_listen.iter().map(|l| (l.url.as_str(), l.tls)).collect();
        assert_eq!(urls, [("http://127.0.0.1:2381", false), ("https://127.0.0.1:2382", true)]);
        assert_eq!(c.metrics_listen[1].addr.port(), 2382);
    }

    #[test]
    fn https_peer_urls_turn_peer_tls_on() {
        let c = args(&[
            "--initial-cluster",
            "a=https://127.0.0.1:1001,b=https://127.0.0.1:1002,c=https://127.0.0.1:1003",
            "--initial-advertise-peer-urls",
            "https://127.0.0.1:1002",
            "--listen-peer-urls",
            "https://127.0.0.1:1002",
            "--peer-auto-tls",
            "true",
        ])
        .unwrap();
        assert!(c.peer_tls_on);
        assert!(c.peer_tls.auto_tls);
    }

    #[test]
    fn flexible_quorums_that_intersect_are_accepted() {
        let c = args(&["--phase1-quorum", "3"]).unwrap().node.protocol;
        assert_eq!((c.quorum.phase1(), c.quorum.phase2()), (3, 1));
    }
}
