//! Side-by-side comparison of two sets of reports.
//!
//! Runs are paired by (workload, concurrency); a run present on one side only
//! is listed with blanks on the other, never silently dropped.

use std::fmt::Write as _;

use crate::bench::Report;

/// Where two pretty-printed answers (etcd's, synod's) first differ, with
/// `context` lines around it on each side, the differing line marked `>>`:
/// the differential tests' report of a disagreement. `None` if equal.
pub fn first_difference(etcd: &str, synod: &str, context: usize) -> Option<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (etcd.lines().collect(), synod.lines().collect());
    if a == b {
        return None;
    }
    let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let window = |lines: &[&str]| {
        let from = first.saturating_sub(context);
        let to = (first + context).min(lines.len());
        lines[from..to]
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{} {l}", if from + i == first { ">>" } else { "  " }))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(format!(
        "first difference at line {} of the pretty-printed answers\n-- etcd:\n{}\n-- synod:\n{}",
        first + 1,
        window(&a),
        window(&b)
    ))
}

/// Parses report lines, skipping anything that is not a report (log noise).
pub fn parse_reports(text: &str) -> Vec<Report> {
    text.lines().filter_map(|line| serde_json::from_str::<Report>(line.trim()).ok()).collect()
}

/// A table of throughput and p99 for `baseline` and `candidate`, with the
/// candidate/baseline ratios (above 1 means the candidate has more
/// throughput, respectively a slower p99). Throughput is requests per
/// second, or events delivered per second for watch fan-out (whose p99 is
/// the puts').
pub fn table(baseline_label: &str, baseline: &[Report], candidate_label: &str, candidate: &[Report]) -> String {
    let mut keys: Vec<(String, usize)> = Vec::new();
    for report in baseline.iter().chain(candidate) {
        let key = (report.workload.clone(), report.concurrency);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let find = |reports: &[Report], (workload, concurrency): &(String, usize)| {
        reports.iter().find(|r| &r.workload == workload && r.concurrency == *concurrency).cloned()
    };
    let (b, c) = (baseline_label, candidate_label);
    // Columns widen for long labels (e.g. "synod+auth") so rows stay aligned.
    let longest = b.len().max(c.len());
    let (ops_w, p99_w, err_w) = ((longest + 6).max(12), (longest + 4).max(10), (longest + 4).max(8));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17} {:>5} {:>ops_w$} {:>ops_w$} {:>7} {:>p99_w$} {:>p99_w$} {:>7} {:>err_w$} {:>err_w$}",
        "workload",
        "conc",
        format!("{b} ops/s"),
        format!("{c} ops/s"),
        "ratio",
        format!("{b} p99"),
        format!("{c} p99"),
        "ratio",
        format!("{b} err"),
        format!("{c} err"),
    );
    for key in &keys {
        let (x, y) = (find(baseline, key), find(candidate, key));
        // For watch fan-out the figure that matters is events delivered.
        let ops = |r: &Option<Report>| r.as_ref().map(|r| r.events_s.unwrap_or(r.throughput_ops_s));
        let p99 = |r: &Option<Report>| r.as_ref().map(|r| r.latency_ms.p99);
        let errors = |r: &Option<Report>| r.as_ref().map(|r| r.errors as f64);
        let _ = writeln!(
            out,
            "{:<17} {:>5} {:>ops_w$} {:>ops_w$} {:>7} {:>p99_w$} {:>p99_w$} {:>7} {:>err_w$} {:>err_w$}",
            key.0,
            key.1,
            cell(ops(&x), 0),
            cell(ops(&y), 0),
            ratio(ops(&y), ops(&x)),
            cell(p99(&x), 2),
            cell(p99(&y), 2),
            ratio(p99(&y), p99(&x)),
            cell(errors(&x), 0),
            cell(errors(&y), 0),
        );
    }
    out
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}", n / d),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Latency;

    fn report(workload: &str, concurrency: usize, ops: f64, p99: f64) -> Report {
        Report {
            workload: workload.into(),
            endpoints: vec![],
            concurrency,
            connections: 1,
            requests: 1,
            errors: 0,
            seconds: 1.0,
            throughput_ops_s: ops,
            latency_ms: Latency { p99, ..Latency::default() },
            txn_succeeded: None,
            txn_failed: None,
            events_delivered: None,
            events_s: None,
        }
    }

    #[test]
    fn pairs_runs_by_workload_and_concurrency_and_divides_candidate_by_baseline() {
        let etcd = [report("put", 1, 100.0, 4.0), report("put", 64, 1000.0, 10.0)];
        let synod = [report("put", 64, 1500.0, 5.0)];
        let table = table("etcd", &etcd, "synod", &synod);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].contains(" - "), "missing side shown as '-': {table}");
        assert!(lines[2].contains("1.50") && lines[2].contains("0.50"), "{table}");
    }

    #[test]
    fn long_labels_keep_columns_aligned() {
        let off = [report("put", 16, 1000.0, 4.0), report("put", 256, 9000.0, 40.0)];
        let on = [report("put", 16, 900.0, 5.0), report("put", 256, 8000.0, 50.0)];
        let table = table("synod", &off, "synod+tls+auth", &on);
        let widths: Vec<usize> = table.lines().map(str::len).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
        assert!(table.lines().next().unwrap().contains("synod+tls+auth ops/s"), "{table}");
    }

    #[test]
    fn report_lines_round_trip_and_noise_is_skipped() {
        let line = serde_json::to_string(&report("get", 8, 1.0, 1.0)).unwrap();
        let parsed = parse_reports(&format!("starting\n{line}\n"));
        assert_eq!(parsed, vec![report("get", 8, 1.0, 1.0)]);
    }
}
