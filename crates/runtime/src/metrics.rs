//! What a running replica measures, in Prometheus's types: etcd's names
//! where the meaning is the same (so etcd's dashboards and alerts read a
//! Synod member), `synod_*` for what is Paxos's own.
//!
//! Every metric is bumped where its event happens: the write-ahead log's
//! writer times its fsyncs (through [`synod_storage::WalObserver`]), the
//! transport counts the bytes of each peer connection, the replica's actor
//! counts leader changes, failed proposals, round trips and what the
//! protocol reports in each output ([`synod_paxos::Stats`]: the protocol
//! core itself holds no registry). Each is an atomic: nothing here takes a
//! lock on the request path (a labelled metric is looked up once, when a
//! peer connection or a round trip to a new peer starts, and kept).
//!
//! The metrics exist whether or not anyone collects them; [`Metrics::register`]
//! adds them to a registry that a server exposes.

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::sync::Arc;
use std::time::Duration;
use synod_paxos::{NodeId, Stats};

/// The replica's metrics. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    has_leader: IntGauge,
    is_leader: IntGauge,
    leader_changes: IntCounter,
    committed: IntGauge,
    applied: IntGauge,
    pending: IntGauge,
    failed: IntCounter,
    wal_fsync: Histogram,
    backend_commit: Histogram,
    peer_rtt: HistogramVec,
    peer_sent: IntCounterVec,
    peer_received: IntCounterVec,
    ballot_round: IntGauge,
    phase1_started: IntCounter,
    slots_in_flight: IntGauge,
    batch_size: Histogram,
    lease_reads: IntCounter,
    read_index_reads: IntCounter,
    snapshots_sent: IntCounter,
    snapshots_received: IntCounter,
    wal_batch_records: Histogram,
    proposal_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A member id as etcd writes it in labels: lowercase hex.
pub fn id_label(id: NodeId) -> String {
    format!("{id:x}")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("a valid metric name")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("a valid metric name")
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("a valid histogram")
}

/// `count` buckets from `start`, each twice the last (etcd's
/// `prometheus.ExponentialBuckets(start, 2, count)`).
fn doubling(start: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, 2.0, count).expect("valid buckets")
}

impl Metrics {
    /// Fresh metrics, registered nowhere yet.
    pub fn new() -> Metrics {
        let inner = Inner {
            has_leader: gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
            is_leader: gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."),
            leader_changes: counter("etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
            committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed (Synod: the last log slot known chosen here).",
            ),
            applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied (Synod: the last log slot applied here).",
            ),
            pending: gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit."),
            failed: counter("etcd_server_proposals_failed_total", "The total number of failed proposals seen."),
            wal_fsync: histogram(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                doubling(0.001, 14),
            ),
            backend_commit: histogram(
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend (Synod: writing and syncing a snapshot \
                 of the state machine, its only write of applied state).",
                doubling(0.001, 14),
            ),
            peer_rtt: HistogramVec::new(
                HistogramOpts::new(
                    "etcd_network_peer_round_trip_time_seconds",
                    "Round-Trip-Time histogram between peers",
                )
                .buckets(doubling(0.0001, 16)),
                &["To"],
            )
            .expect("a valid histogram"),
            peer_sent: IntCounterVec::new(
                Opts::new("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers."),
                &["To"],
            )
            .expect("a valid metric name"),
            peer_received: IntCounterVec::new(
                Opts::new("etcd_network_peer_received_bytes_total", "The total number of bytes received from peers."),
                &["From"],
            )
            .expect("a valid metric name"),
            ballot_round: gauge(
                "synod_ballot_round",
                "Round of the ballot this member leads with, or else of the highest it promised (etcd's raft term).",
            ),
            phase1_started: counter(
                "synod_phase1_rounds_started_total",
                "Times this member was elected and started phase 1 with a new ballot.",
            ),
            slots_in_flight: gauge(
                "synod_slots_in_flight",
                "Log slots this member, leading, has proposed and not yet seen chosen.",
            ),
            batch_size: histogram(
                "synod_batch_size_commands",
                "Client commands in each log slot this member proposed as leader.",
                doubling(1.0, 14),
            ),
            lease_reads: counter(
                "synod_lease_reads_total",
                "Linearizable reads this member, leading, confirmed by its lease (no round trip).",
            ),
            read_index_reads: counter(
                "synod_read_index_reads_total",
                "Linearizable reads this member, leading, confirmed by a heartbeat round to a quorum (no lease held).",
            ),
            snapshots_sent: counter(
                "synod_snapshot_transfers_sent_total",
                "Snapshots sent in full to a member behind the compacted log.",
            ),
            snapshots_received: counter(
                "synod_snapshot_transfers_received_total",
                "Snapshots received from a member and installed.",
            ),
            wal_batch_records: histogram(
                "synod_wal_fsync_records",
                "Records made durable by each group commit of the write-ahead log (one fsync covers them all).",
                doubling(1.0, 14),
            ),
            proposal_duration: histogram(
                "synod_proposal_duration_seconds",
                "Time from a proposal made at this member to its answer (chosen and applied, or failed).",
                doubling(0.0005, 16),
            ),
        };
        Metrics { inner: Arc::new(inner) }
    }

    /// Adds every metric to `registry`. Fails if one of the names is
    /// registered there already.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        let m = &self.inner;
        let all: [Box<dyn Collector>; 22] = [
            Box::new(m.has_leader.clone()),
            Box::new(m.is_leader.clone()),
            Box::new(m.leader_changes.clone()),
            Box::new(m.committed.clone()),
            Box::new(m.applied.clone()),
            Box::new(m.pending.clone()),
            Box::new(m.failed.clone()),
            Box::new(m.wal_fsync.clone()),
            Box::new(m.backend_commit.clone()),
            Box::new(m.peer_rtt.clone()),
            Box::new(m.peer_sent.clone()),
            Box::new(m.peer_received.clone()),
            Box::new(m.ballot_round.clone()),
            Box::new(m.phase1_started.clone()),
            Box::new(m.slots_in_flight.clone()),
            Box::new(m.batch_size.clone()),
            Box::new(m.lease_reads.clone()),
            Box::new(m.read_index_reads.clone()),
            Box::new(m.snapshots_sent.clone()),
            Box::new(m.snapshots_received.clone()),
            Box::new(m.wal_batch_records.clone()),
            Box::new(m.proposal_duration.clone()),
        ];
        for c in all {
            registry.register(c)?;
        }
        Ok(())
    }

    /// The counter of bytes sent to `peer` (looked up once per connection).
    pub(crate) fn peer_sent(&self, peer: NodeId) -> IntCounter {
        self.inner.peer_sent.with_label_values(&[&id_label(peer)])
    }

    /// The counter of bytes received from `peer`.
    pub(crate) fn peer_received(&self, peer: NodeId) -> IntCounter {
        self.inner.peer_received.with_label_values(&[&id_label(peer)])
    }

    /// The round-trip histogram of `peer`.
    pub(crate) fn peer_rtt(&self, peer: NodeId) -> Histogram {
        self.inner.peer_rtt.with_label_values(&[&id_label(peer)])
    }

    /// What the replica reports about itself, sampled once per tick.
    pub(crate) fn sample(&self, s: Sample) {
        let m = &self.inner;
        m.has_leader.set(s.has_leader as i64);
        m.is_leader.set(s.is_leader as i64);
        m.committed.set(clamp(s.committed));
        m.applied.set(clamp(s.applied));
        m.pending.set(clamp(s.pending as u64));
        m.ballot_round.set(clamp(s.ballot_round));
        m.slots_in_flight.set(clamp(s.slots_in_flight as u64));
    }

    /// A new leader was seen.
    pub(crate) fn leader_changed(&self) {
        self.inner.leader_changes.inc();
    }

    /// A proposal made here was answered after `took`, failed or not.
    pub(crate) fn proposal_done(&self, took: Duration, failed: bool) {
        self.inner.proposal_duration.observe(took.as_secs_f64());
        if failed {
            self.inner.failed.inc();
        }
    }

    /// A snapshot of the state machine was written and synced in `took`.
    pub(crate) fn snapshot_saved(&self, took: Duration) {
        self.inner.backend_commit.observe(took.as_secs_f64());
    }

    /// Adds what the protocol counted in one output.
    pub(crate) fn protocol(&self, s: &Stats) {
        let m = &self.inner;
        if s.phase1_started > 0 {
            m.phase1_started.inc_by(s.phase1_started);
        }
        if s.lease_reads > 0 {
            m.lease_reads.inc_by(s.lease_reads);
        }
        if s.read_index_reads > 0 {
            m.read_index_reads.inc_by(s.read_index_reads);
        }
        if s.snapshots_sent > 0 {
            m.snapshots_sent.inc_by(s.snapshots_sent);
        }
        if s.snapshots_received > 0 {
            m.snapshots_received.inc_by(s.snapshots_received);
        }
        for &b in &s.batches {
            m.batch_size.observe(b as f64);
        }
    }

    /// The write-ahead log's observer that feeds these metrics.
    pub(crate) fn wal_observer(&self) -> Arc<dyn synod_storage::WalObserver> {
        Arc::new(WalMetrics { fsync: self.inner.wal_fsync.clone(), records: self.inner.wal_batch_records.clone() })
    }
}

/// A gauge's value from a count (saturating: a gauge is an i64).
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What [`Metrics::sample`] reads off the replica.
pub(crate) struct Sample {
    pub has_leader: bool,
    pub is_leader: bool,
    pub committed: u64,
    pub applied: u64,
    pub pending: usize,
    pub ballot_round: u64,
    pub slots_in_flight: usize,
}

/// Feeds the log's fsync times and group-commit sizes to the histograms.
struct WalMetrics {
    fsync: Histogram,
    records: Histogram,
}

impl std::fmt::Debug for WalMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalMetrics").finish_non_exhaustive()
    }
}

impl synod_storage::WalObserver for WalMetrics {
    fn synced(&self, took: Duration) {
        self.fsync.observe(took.as_secs_f64());
    }

    fn committed(&self, records: usize, _bytes: usize) {
        self.records.observe(records as f64);
    }
}
