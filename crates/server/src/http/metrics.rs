//! The member's Prometheus metrics, as `/metrics` shows them: the
//! replica's own ([`synod_runtime::Metrics`]: leadership, proposals, fsyncs,
//! peers, Paxos's `synod_*`), the server's (etcd's identity, store size and
//! keys, health checks), gRPC calls ([`crate::http::grpc_metrics`]) and the
//! process (`process_*`, on Linux).
//!
//! Names are etcd's where the meaning is the same, so etcd's dashboards and
//! alerts read a Synod member as they read etcd. A gauge that describes the
//! state machine (its size, its keys) is read from it when scraped, not
//! kept up to date on every write: the write path pays nothing for it.

use crate::context::Context;
use crate::http::grpc_metrics::GrpcMetrics;
use crate::services::maintenance::ETCD_VERSION;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::time::Duration;

/// How long a scrape waits for the replica to say how big the store is;
/// past it the gauges keep their last values.
const STATE_WAIT: Duration = Duration::from_secs(1);

/// The cluster version etcd reports for [`ETCD_VERSION`]: major.minor.
fn cluster_version() -> &'static str {
    ETCD_VERSION.rsplit_once('.').map_or(ETCD_VERSION, |(major_minor, _)| major_minor)
}

/// Every metric of one member, in one registry.
pub struct ServerMetrics {
    registry: Registry,
    /// gRPC calls started and handled, by method and code.
    pub grpc: GrpcMetrics,
    /// How long each command takes to apply to the state machine (see
    /// [`crate::state::machine::EtcdMachine::with_apply_histogram`]).
    pub apply: prometheus::Histogram,
    db_size: IntGauge,
    db_in_use: IntGauge,
    keys: IntGauge,
    is_learner: IntGauge,
    health_success: IntCounter,
    health_failures: IntCounter,
    healthcheck: IntGaugeVec,
    healthchecks: IntCounterVec,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// A gauge that is 1 for its one label value, as etcd shows constants.
fn constant(registry: &Registry, name: &str, help: &str, label: &str, value: &str) -> Result<(), prometheus::Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
    g.with_label_values(&[value]).set(1);
    registry.register(Box::new(g))
}

impl ServerMetrics {
    /// The metrics of member `member_id`, with the replica's `runtime`
    /// metrics and a space quota of `quota_bytes`.
    pub fn new(
        member_id: u64,
        runtime: &synod_runtime::Metrics,
        quota_bytes: u64,
    ) -> Result<ServerMetrics, prometheus::Error> {
        let registry = Registry::new();
        runtime.register(&registry)?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        constant(
            &registry,
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            &synod_runtime::metrics::id_label(member_id),
        )?;
        constant(
            &registry,
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            ETCD_VERSION,
        )?;
        constant(
            &registry,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
            cluster_version(),
        )?;
        gauge(&registry, "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")?
            .set(i64::try_from(quota_bytes).unwrap_or(i64::MAX));
        let healthcheck = IntGaugeVec::new(
            Opts::new("etcd_server_healthcheck", "The result of each kind of healthcheck."),
            &["type", "name"],
        )?;
        registry.register(Box::new(healthcheck.clone()))?;
        let healthchecks = IntCounterVec::new(
            Opts::new("etcd_server_healthchecks_total", "The total number of each kind of healthcheck."),
            &["type", "name", "status"],
        )?;
        registry.register(Box::new(healthchecks.clone()))?;
        let apply = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "synod_apply_duration_seconds",
                "Time to apply one command from the log to the state machine (the store, auth, alarms, members).",
            )
            .buckets(prometheus::exponential_buckets(0.00001, 2.0, 16)?),
        )?;
        registry.register(Box::new(apply.clone()))?;
        Ok(ServerMetrics {
            grpc: GrpcMetrics::new(&registry)?,
            apply,
            db_size: gauge(
                &registry,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes (Synod: the store's \
                 logical size, what --quota-backend-bytes limits).",
            )?,
            db_in_use: gauge(
                &registry,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            )?,
            keys: gauge(&registry, "etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            is_learner: gauge(
                &registry,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            )?,
            health_success: counter(
                &registry,
                "etcd_server_health_success",
                "The total number of successful health checks",
            )?,
            health_failures: counter(
                &registry,
                "etcd_server_health_failures",
                "The total number of failed health checks",
            )?,
            healthcheck,
            healthchecks,
            registry,
        })
    }

    /// The registry, for what else a caller wants to expose.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one answer of `/health`.
    pub fn health_checked(&self, healthy: bool) {
        if healthy {
            self.health_success.inc();
        } else {
            self.health_failures.inc();
        }
    }

    /// Records the outcome of one named check of `/livez` or `/readyz`
    /// (`kind`), as etcd 3.5 does.
    pub fn check_ran(&self, kind: &str, name: &str, ok: bool) {
        self.healthcheck.with_label_values(&[kind, name]).set(ok as i64);
        let status = if ok { "success" } else { "error" };
        self.healthchecks.with_label_values(&[kind, name, status]).inc();
    }

    /// Every metric in Prometheus's text format, the state machine's gauges
    /// read from it first.
    pub async fn render(&self, ctx: &Context) -> String {
        let state = ctx.handle.with_state(|m| (m.kv().db_size(), m.kv().live_keys()));
        if let Ok(Ok((size, keys))) = tokio::time::timeout(STATE_WAIT, state).await {
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            self.db_size.set(size);
            self.db_in_use.set(size);
            self.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
        }
        self.is_learner.set(!ctx.handle.view().voter as i64);
        let mut out = Vec::new();
        // Encoding text into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The content type of [`ServerMetrics::render`]'s text, as etcd's
/// `promhttp` sends it.
pub fn content_type() -> &'static str {
    "text/plain; version=0.0.4; charset=utf-8"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_registers_once_and_the_identity_gauges_carry_etcds_labels() {
        let m = ServerMetrics::new(0xabc, &synod_runtime::Metrics::new(), 1 << 30).unwrap();
        let families = m.registry().gather();
        let find = |name: &str| families.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("{name}"));
        let id = &find("etcd_server_id").get_metric()[0];
        assert_eq!(id.get_label()[0].value(), "abc");
        let version = &find("etcd_server_version").get_metric()[0];
        assert_eq!(version.get_label()[0].value(), ETCD_VERSION);
        let cluster = &find("etcd_cluster_version").get_metric()[0];
        assert_eq!(cluster.get_label()[0].value(), "3.5");
        find("etcd_disk_wal_fsync_duration_seconds");
        #[cfg(target_os = "linux")]
        find("process_resident_memory_bytes");
    }
}
