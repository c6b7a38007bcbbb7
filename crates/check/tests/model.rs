//! The model checker's own specification: the clean protocol passes at CI
//! size, and every planted bug a small model can show is caught.

use synod_check::{check, Bounds, Report, Search};
use synod_paxos::PlantedBug;

fn bfs(max_states: usize) -> Search {
    Search { max_states, ..Search::default() }
}

/// Bounds for a planted bug: no membership changes, a single command.
fn planted(bug: PlantedBug, commands: u64, crashes: u32) -> Bounds {
    Bounds { planted: Some(bug), changes: Vec::new(), commands, crashes, ticks: 5, ..Bounds::small() }
}

fn assert_caught(report: &Report, invariant: &str) {
    let cx = report.violation.as_ref().expect("the planted bug must be caught");
    assert!(cx.violation.starts_with(invariant), "caught {:?}, expected {invariant}", cx.violation);
    assert!(!cx.trace.is_empty());
}

#[test]
fn clean_protocol_has_no_violation_in_the_small_model() {
    let report = check(Bounds::small(), &bfs(40_000));
    if let Some(cx) = &report.violation {
        panic!("{}\n{}\n{}", cx.violation, cx.trace.join("\n"), cx.last);
    }
    assert!(report.unique > 20_000, "explored only {} states", report.unique);
    assert!(report.max_depth >= 7);
}

#[test]
fn skip_persist_is_caught_as_a_forgotten_promise() {
    let report = check(planted(PlantedBug::SkipPersist, 0, 1), &bfs(0));
    assert_caught(&report, "durability");
}

#[test]
fn small_quorum_is_caught_as_disagreement() {
    let report = check(planted(PlantedBug::SmallQuorum, 1, 0), &bfs(0));
    assert_caught(&report, "agreement");
}

#[test]
fn ignore_accepted_value_is_caught_as_disagreement() {
    let search = Search { dfs: true, max_depth: 17, ..Search::default() };
    let report = check(planted(PlantedBug::IgnoreAcceptedValue, 1, 0), &search);
    assert_caught(&report, "agreement");
}
