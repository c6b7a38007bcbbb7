//! Configuration of the state machine.
//!
//! Every replica must use the same configuration: it decides which commands
//! fail, so two replicas with different limits would diverge.

/// etcd's largest lease TTL, in seconds (`lease.MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Limits of the state machine, with etcd's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most compares, success ops or failure ops in one txn
    /// (etcd's `--max-txn-ops`). Default 128.
    pub max_txn_ops: usize,
    /// Shortest TTL a lease is granted, in seconds; shorter requests are
    /// raised to it. etcd derives it from the election timeout
    /// (1.5 × 1 s, rounded up); default 2.
    pub min_lease_ttl: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_txn_ops: 128, min_lease_ttl: 2 }
    }
}
