//! etcd 3.4's flags that Synod does not serve, each with the reason. A flag
//! of this table is refused wherever it is given (command line, `ETCD_*`
//! variable, config file key) with that reason: accepting a flag and
//! ignoring it would let an operator believe in a setting that does
//! nothing. The flags Synod serves are [`super::NodeArgs`]'s; the README's
//! table of etcd's flags is both lists.

/// `(flag, why Synod does not serve it)`, in etcd's order.
pub const UNSERVED: &[(&str, &str)] = &[
    ("wal-dir", "Synod keeps its write-ahead log inside --data-dir"),
    ("max-snapshots", "Synod keeps one snapshot and deletes every log file a snapshot covers"),
    ("max-wals", "Synod keeps one snapshot and deletes every log file a snapshot covers"),
    ("initial-election-tick-advance", "Synod's ballot leader election has no tick advance to turn off"),
    ("backend-batch-interval", "Synod has no bbolt backend; the write-ahead log commits in groups by itself"),
    ("backend-batch-limit", "Synod has no bbolt backend; the write-ahead log commits in groups by itself"),
    ("discovery", "Synod has no discovery: the members come from --initial-cluster"),
    ("discovery-fallback", "Synod has no discovery: the members come from --initial-cluster"),
    ("discovery-proxy", "Synod has no discovery: the members come from --initial-cluster"),
    ("discovery-srv", "Synod has no discovery: the members come from --initial-cluster"),
    ("discovery-srv-name", "Synod has no discovery: the members come from --initial-cluster"),
    ("enable-v2", "Synod serves only the v3 API"),
    ("pre-vote", "Synod needs no pre-vote: a member bids for leadership only while it hears a quorum"),
    ("proxy", "Synod has no proxy mode"),
    ("proxy-failure-wait", "Synod has no proxy mode"),
    ("proxy-refresh-interval", "Synod has no proxy mode"),
    ("proxy-dial-timeout", "Synod has no proxy mode"),
    ("proxy-write-timeout", "Synod has no proxy mode"),
    ("proxy-read-timeout", "Synod has no proxy mode"),
    ("client-cert-allowed-hostname", "Synod does not check client certificates' host names"),
    (
        "peer-cert-allowed-hostname",
        "Synod does not check peer certificates' host names (--peer-cert-allowed-cn it does)",
    ),
    ("cors", "Synod's HTTP answers allow every origin (etcd's default '*') and no other setting"),
    ("host-whitelist", "Synod does not check the Host header of HTTP requests"),
    ("enable-grpc-gateway", "Synod's HTTP/JSON gateway is always on"),
    ("log-output", "etcd's deprecated spelling: use --log-outputs"),
    ("debug", "etcd's deprecated flag: use --log-level=debug"),
    ("log-package-levels", "etcd's deprecated flag: use --log-level, or RUST_LOG's per-module directives"),
    ("enable-pprof", "Synod has no profiling endpoint"),
    ("metrics", "Synod serves etcd's basic metrics; the extensive set (gRPC latency histograms) is not served"),
    ("experimental-enable-v2v3", "Synod serves only the v3 API"),
    ("experimental-backend-bbolt-freelist-type", "Synod has no bbolt backend"),
    (
        "experimental-enable-lease-checkpoint",
        "Synod does not checkpoint lease TTLs: a new leader restarts each lease's TTL, as etcd without checkpoints",
    ),
    (
        "experimental-enable-lease-checkpoint-persist",
        "Synod does not checkpoint lease TTLs: a new leader restarts each lease's TTL, as etcd without checkpoints",
    ),
    ("experimental-compaction-batch-limit", "Synod compacts its in-memory store in one step"),
    ("experimental-warning-apply-duration", "Synod does not time applies against a warning threshold"),
    ("force-new-cluster", "Synod cannot force a one-member cluster from a member's data"),
];

/// Why Synod does not serve etcd's flag `--{flag}`, if it is one of them.
pub fn why(flag: &str) -> Option<&'static str> {
    UNSERVED.iter().find(|(f, _)| *f == flag).map(|(_, why)| *why)
}
