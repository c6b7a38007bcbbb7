//! `synod-bench plot` turns --json records into SVG charts that parse as
//! XML and name every series.

use std::path::{Path, PathBuf};
use std::process::Command;

const SYNOD: &str = include_str!("data/record-v1-synod-c16.json");
const ETCD: &str = include_str!("data/record-v1-etcd-c16.json");

/// A copy of a fixture record run at another client count.
fn at_clients(record: &str, clients: u64) -> String {
    let mut value: serde_json::Value = serde_json::from_str(record).unwrap();
    value["clients"] = clients.into();
    let throughput = value["throughput_ops_s"].as_f64().unwrap();
    value["throughput_ops_s"] = (throughput * (clients as f64).sqrt() / 4.0).into();
    serde_json::to_string_pretty(&value).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The SVG at `path`, checked to be one, and the text of its text nodes.
fn svg_texts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.trim_start().starts_with("<svg"), "{} does not start with <svg", path.display());
    let document = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let texts = document.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).map(str::trim);
    texts.filter(|t| !t.is_empty()).map(str::to_string).collect()
}

#[test]
fn plot_writes_valid_svg_naming_every_target_and_percentile() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = vec![write(dir.path(), "synod-c16.json", SYNOD), write(dir.path(), "etcd-c16.json", ETCD)];
    for clients in [1, 64] {
        records.push(write(dir.path(), &format!("synod-c{clients}.json"), &at_clients(SYNOD, clients)));
        records.push(write(dir.path(), &format!("etcd-c{clients}.json"), &at_clients(ETCD, clients)));
    }
    let out = dir.path().join("plots");

    let output = Command::new(env!("CARGO_BIN_EXE_synod-bench"))
        .arg("plot")
        .arg("--out")
        .arg(&out)
        .args(&records)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let listed: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect();
    let expected = ["throughput-put.svg", "timeline-put-c1.svg", "timeline-put-c16.svg", "timeline-put-c64.svg"];
    assert_eq!(listed, expected.map(|name| out.join(name).display().to_string()));

    let throughput = svg_texts(&out.join("throughput-put.svg"));
    for label in ["synod", "etcd", "put: throughput against clients", "1", "16", "64"] {
        assert!(throughput.iter().any(|t| t == label), "no text {label:?} in {throughput:?}");
    }
    let timeline = svg_texts(&out.join("timeline-put-c16.svg"));
    for label in ["synod", "etcd", "synod p50", "synod p99", "etcd p50", "etcd p99"] {
        assert!(timeline.iter().any(|t| t == label), "no text {label:?} in {timeline:?}");
    }
}

#[test]
fn plot_refuses_a_file_that_is_not_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "report.jsonl", "{\"workload\":\"put\",\"requests\":1}\n");
    let output = Command::new(env!("CARGO_BIN_EXE_synod-bench"))
        .arg("plot")
        .arg("--out")
        .arg(dir.path())
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("report.jsonl") && stderr.contains("schema_version"), "{stderr}");
}
