//! A real run against a single-member synod: progress goes to stderr while
//! stdout holds only the report line, and `--json` writes a record whose
//! timeline adds up to its totals.
//!
//! Needs the workspace's `synod` binary (built by `cargo test --workspace`,
//! or named by SYNOD_BIN).

use std::process::{Command, Output};

use synod_loadgen::bench::Report;
use synod_loadgen::node::{sibling_binary, start_single};
use synod_loadgen::record::{RunRecord, SCHEMA_VERSION};

/// Runs synod-bench to the end (on a blocking thread: the server under test
/// is another process, but the test's runtime stays free).
async fn bench(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || bench_blocking(&args)).await.unwrap()
}

fn bench_blocking(args: &[String]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_synod-bench")).args(args).output().expect("synod-bench runs");
    assert!(output.status.success(), "synod-bench {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_progress_on_stderr_and_writes_a_record_its_timeline_adds_up_to() {
    let dir = tempfile::tempdir().unwrap();
    let synod = sibling_binary("synod", "SYNOD_BIN");
    let (node, _kv) = start_single(&synod, dir.path()).await.unwrap_or_else(|e| panic!("{e:#}"));
    let url = node.client_url();
    let json = dir.path().join("run.json");
    let json_arg = json.to_str().unwrap();

    let output = bench(&[
        "--endpoints",
        &url,
        "--workload",
        "put",
        "--concurrency",
        "4",
        "--connections",
        "2",
        "--duration",
        "2.5",
        "--progress-every",
        "1",
        "--label",
        "synod",
        "--json",
        json_arg,
    ])
    .await;

    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stdout.lines().count(), 1, "stdout is the report line only: {stdout}");
    let report: Report = serde_json::from_str(stdout.trim()).unwrap();
    let progress: Vec<&str> = stderr.lines().filter(|l| l.contains("ops/s now")).collect();
    assert!(progress.len() >= 2, "a line a second for 2.5 s: {stderr}");
    assert!(progress[0].starts_with("synod-bench: 1/2.5 s, "), "{stderr}");

    let record = RunRecord::read(&json).unwrap();
    assert_eq!(record.schema_version, SCHEMA_VERSION);
    assert_eq!((record.target.as_str(), record.workload.as_str(), record.clients), ("synod", "put", 4));
    assert_eq!(record.endpoints, vec![url]);
    assert_eq!(record.parameters.duration_s, Some(2.5));
    assert_eq!((record.ops, record.errors), (report.requests, report.errors));
    assert!(record.ops > 0 && record.latency_ms.is_some());

    let timeline = &record.timeline;
    assert_eq!(timeline.len(), 3, "2.5 s and the drain: {timeline:?}");
    assert_eq!(timeline.iter().map(|i| i.ops).sum::<u64>(), record.ops);
    assert_eq!(timeline.iter().map(|i| i.errors).sum::<u64>(), record.errors);
    assert!(timeline[..2].iter().all(|i| i.span_s == 1.0));
    let last = &timeline[2];
    assert!((last.span_s - (record.duration_s - 2.0)).abs() < 1e-9, "{last:?} of {}", record.duration_s);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_runs_print_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let synod = sibling_binary("synod", "SYNOD_BIN");
    let (node, _kv) = start_single(&synod, dir.path()).await.unwrap_or_else(|e| panic!("{e:#}"));
    let url = node.client_url();
    let output = bench(&[
        "--endpoints",
        &url,
        "--workload",
        "get",
        "--key-space",
        "10",
        "--duration",
        "1.5",
        "--progress-every",
        "0.5",
        "--quiet",
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    drop(node);
}
