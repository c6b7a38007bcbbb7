//! The JSON record of one run (`synod-bench --json FILE`): schema version 1.
//!
//! One file holds one run: what was driven (the target's label and
//! endpoints), how (workload and parameters), and what came of it (totals,
//! latency percentiles, and a per-second timeline). `synod-bench plot`
//! reads these files, and so can anything else: the schema is a contract.
//! Within a version, fields are only ever added, and only as optional ones
//! (absent or null in older files); removing or renaming a field, or
//! changing what one means or its unit, makes a new version. A reader
//! refuses a version it does not know rather than guess. Units are in the
//! field names: `_s` seconds, `_ms` milliseconds, `_ops_s` per second.
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "tool": "synod-bench 0.1.0",
//!   "target": "synod",
//!   "endpoints": ["http://127.0.0.1:2379"],
//!   "workload": "put",
//!   "clients": 16,
//!   "connections": 8,
//!   "parameters": { "duration_s": 5.0, "requests": null, "key_space": 10000,
//!                   "value_size": 256, "prefill": true, "key_prefix": "bench/",
//!                   "timeout_s": 10.0, "seed": 1, "watchers": null,
//!                   "tls": false, "client_certificate": false, "user": null },
//!   "started_unix_ms": 1796000000000,
//!   "duration_s": 5.01,
//!   "ops": 51234, "errors": 0, "throughput_ops_s": 10226.3,
//!   "latency_ms": { "p50": 1.2, "p90": 2.1, "p99": 4.8, "p999": 9.7, "max": 15.1 },
//!   "timeline": [
//!     { "second": 0, "span_s": 1.0, "ops": 10100, "errors": 0,
//!       "throughput_ops_s": 10100.0, "p50_ms": 1.2, "p99_ms": 4.9, "max_ms": 12.0 }
//!   ]
//! }
//! ```
//!
//! This module must never measure anything: it only says how a run is
//! written down and read back.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::bench::{Config, Latency, Outcome, Workload};

/// The schema version this build writes and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One run, as written to `--json FILE`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The program and version that wrote the record, e.g. `synod-bench 0.1.0`.
    pub tool: String,
    /// What was driven, as `--label` named it (e.g. `synod`, `etcd+tls`);
    /// plots draw one line per target.
    pub target: String,
    /// The client URLs driven.
    pub endpoints: Vec<String>,
    /// Workload name, as on the command line (`put`, `get`, ...).
    pub workload: String,
    /// Clients: requests in flight at any time (closed loop; `--concurrency`).
    pub clients: usize,
    /// etcd client connections the clients were spread over.
    pub connections: usize,
    /// The run's settings.
    pub parameters: Parameters,
    /// When the measured part began, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Wall-clock seconds from the first request to the last completion.
    pub duration_s: f64,
    /// Requests that succeeded (a txn-cas whose compare failed succeeded).
    pub ops: u64,
    /// Requests that returned an error or timed out.
    pub errors: u64,
    /// `ops / duration_s`.
    pub throughput_ops_s: f64,
    /// Percentiles over the successful requests, in milliseconds; null if
    /// none succeeded.
    pub latency_ms: Option<Latency>,
    /// txn-cas only: transactions whose compare held (the put happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_succeeded: Option<u64>,
    /// txn-cas only: transactions whose compare failed (someone else wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_failed: Option<u64>,
    /// watch-fanout only: events delivered to all watchers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_delivered: Option<u64>,
    /// watch-fanout only: events delivered per second, from the first put
    /// to the last event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_s: Option<f64>,
    /// One entry per second of the run, in order, none skipped (a second
    /// in which nothing completed has `ops` 0 and null latencies).
    pub timeline: Vec<Interval>,
}

/// The settings of a run, as given on the command line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// Seconds the run was to issue requests for (null: until `requests`).
    pub duration_s: Option<f64>,
    /// Requests the run was to issue (null: until `duration_s`).
    pub requests: Option<u64>,
    /// Keys were chosen uniformly from this many.
    pub key_space: u64,
    /// Bytes per written value.
    pub value_size: usize,
    /// Every key was written once before a read workload started.
    pub prefill: bool,
    /// Prefix of every key touched.
    pub key_prefix: String,
    /// Per-request timeout in seconds (a timeout counts as an error).
    pub timeout_s: f64,
    /// Seed of key choice.
    pub seed: u64,
    /// watch-fanout only: watchers of the key prefix.
    pub watchers: Option<usize>,
    /// The endpoints were reached over TLS.
    pub tls: bool,
    /// A client certificate was shown.
    pub client_certificate: bool,
    /// The user requests were authenticated as (never the password); null
    /// without auth.
    pub user: Option<String>,
}

/// One second of a run: the requests that completed in it.
///
/// Interval `second` covers `[second, second + span_s)` seconds after the
/// run began. Every interval but the last spans one second; the last ends
/// with the run's last completion and is usually shorter (only requests
/// still in flight at the deadline complete in it), so read its throughput
/// with that in mind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Whole seconds from the run's start to the interval's start.
    pub second: u64,
    /// The interval's length in seconds: 1, or less for the last one.
    pub span_s: f64,
    /// Requests that succeeded in the interval.
    pub ops: u64,
    /// Requests that failed or timed out in the interval.
    pub errors: u64,
    /// `ops / span_s` (0 for an interval of no length).
    pub throughput_ops_s: f64,
    /// Median latency of the interval's successful requests; null if none.
    pub p50_ms: Option<f64>,
    /// 99th percentile, likewise.
    pub p99_ms: Option<f64>,
    /// Slowest successful request of the interval, likewise.
    pub max_ms: Option<f64>,
}

impl RunRecord {
    /// The record of a run of `config` against `target`.
    pub fn of_run(config: &Config, target: &str, outcome: &Outcome) -> RunRecord {
        let report = &outcome.report;
        RunRecord {
            schema_version: SCHEMA_VERSION,
            tool: concat!("synod-bench ", env!("CARGO_PKG_VERSION")).to_string(),
            target: target.to_string(),
            endpoints: config.endpoints.clone(),
            workload: config.workload.name().to_string(),
            clients: config.concurrency,
            connections: report.connections,
            parameters: Parameters {
                duration_s: config.duration.map(|d| d.as_secs_f64()),
                requests: config.requests,
                key_space: config.key_space,
                value_size: config.value_size,
                prefill: config.prefill && config.workload.reads_keys(),
                key_prefix: config.key_prefix.clone(),
                timeout_s: config.timeout.as_secs_f64(),
                seed: config.seed,
                watchers: (config.workload == Workload::WatchFanout).then_some(config.watchers),
                tls: config.tls.is_some(),
                client_certificate: config.tls.as_ref().is_some_and(|tls| tls.identity.is_some()),
                user: config.user.as_ref().map(|(name, _password)| name.clone()),
            },
            started_unix_ms: outcome.started_unix_ms,
            duration_s: report.seconds,
            ops: report.requests,
            errors: report.errors,
            throughput_ops_s: report.throughput_ops_s,
            latency_ms: (report.requests > 0).then(|| report.latency_ms.clone()),
            txn_succeeded: report.txn_succeeded,
            txn_failed: report.txn_failed,
            events_delivered: report.events_delivered,
            events_s: report.events_s,
            timeline: outcome.timeline.clone(),
        }
    }

    /// The record as written to a file: pretty JSON and a final newline.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Reads a record, refusing any schema version but [`SCHEMA_VERSION`].
    pub fn from_json(text: &str) -> Result<RunRecord> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u32>,
        }
        let version = serde_json::from_str::<Version>(text).context("not a JSON object")?.schema_version;
        match version {
            Some(SCHEMA_VERSION) => Ok(serde_json::from_str(text)?),
            Some(other) => bail!(
                "schema version {other}; this synod-bench reads version {SCHEMA_VERSION} only{}",
                if other > SCHEMA_VERSION { " (the file is from a newer synod-bench)" } else { "" }
            ),
            None => bail!("no schema_version: not a synod-bench --json record"),
        }
    }

    /// Reads a record from a file.
    pub fn read(path: &std::path::Path) -> Result<RunRecord> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        RunRecord::from_json(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// The figure a throughput plot shows: events delivered per second for
    /// watch fan-out (as `synod-bench compare` does), requests otherwise.
    pub fn headline_throughput(&self) -> f64 {
        self.events_s.unwrap_or(self.throughput_ops_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The golden file: a record as this version writes it, byte for byte.
    const GOLDEN: &str = include_str!("../tests/data/record-v1-synod-c16.json");

    #[test]
    fn golden_record_reads_and_writes_back_byte_for_byte() {
        let record = RunRecord::from_json(GOLDEN).unwrap();
        assert_eq!(record.schema_version, SCHEMA_VERSION);
        assert_eq!(record.target, "synod");
        assert_eq!(record.clients, 16);
        assert_eq!(record.timeline.len(), 6);
        assert_eq!(record.timeline[2].p99_ms, None, "a stalled second has no latency");
        assert_eq!(record.to_json().unwrap(), GOLDEN);
    }

    #[test]
    fn a_record_round_trips_through_json() {
        let mut record = RunRecord::from_json(GOLDEN).unwrap();
        record.txn_succeeded = Some(7);
        record.txn_failed = Some(3);
        record.latency_ms = None;
        record.parameters.user = Some("bench".into());
        let text = record.to_json().unwrap();
        assert_eq!(RunRecord::from_json(&text).unwrap(), record);
    }

    #[test]
    fn unknown_fields_from_a_later_v1_are_ignored() {
        let mut value: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
        value.as_object_mut().unwrap().insert("added_in_a_later_v1".into(), serde_json::json!(true));
        let record = RunRecord::from_json(&value.to_string()).unwrap();
        assert_eq!(record, RunRecord::from_json(GOLDEN).unwrap());
    }

    #[test]
    fn other_schema_versions_are_refused_by_name() {
        let newer = GOLDEN.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1);
        let error = RunRecord::from_json(&newer).unwrap_err().to_string();
        assert!(error.contains("schema version 2") && error.contains("newer"), "{error}");
        let error = RunRecord::from_json("{\"workload\": \"put\"}").unwrap_err().to_string();
        assert!(error.contains("no schema_version"), "{error}");
        assert!(RunRecord::from_json("not json").is_err());
    }
}
