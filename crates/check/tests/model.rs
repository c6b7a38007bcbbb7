//! The model checker's own specification: the clean protocol passes at CI
//! size, and every planted bug a small model can show is caught.

use synod_check::{check, Bounds, Clock, Report, Search};
use synod_paxos::{Change, PlantedBug};

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

#[test]
fn transfer_keeps_lease_is_caught_as_two_lease_holders() {
    // The old leader hands over, is cut off, and keeps serving on its lease
    // while its successor earns one.
    let bounds = Bounds {
        transfers: 1,
        lease_ticks: 4,
        lease_drift_margin_ticks: 1,
        ..planted(PlantedBug::TransferKeepsLease, 0, 0)
    };
    let search = Search { dfs: true, max_depth: 14, ..Search::default() };
    assert_caught(&check(bounds, &search), "lease-exclusive");
}

#[test]
fn lease_no_drift_margin_is_caught_with_a_fast_clock() {
    // Node 1's clock runs at double rate: it lets the old leader's lease go
    // after half of it in real time, while the old leader, with no margin,
    // still counts on all of it. The margin (4 of 6 ticks) covers that.
    let bounds = Bounds {
        ticks: 7,
        clock: Clock::Global { fast: Some(0) },
        lease_ticks: 6,
        lease_drift_margin_ticks: 4,
        ..planted(PlantedBug::LeaseNoDriftMargin, 0, 0)
    };
    assert_caught(&check(bounds, &bfs(0)), "lease-exclusive");
}

#[test]
fn clean_protocol_keeps_leases_exclusive_with_a_fast_clock() {
    let bounds = Bounds {
        ticks: 7,
        clock: Clock::Global { fast: Some(0) },
        lease_ticks: 6,
        lease_drift_margin_ticks: 4,
        changes: Vec::new(),
        commands: 0,
        crashes: 0,
        ..Bounds::small()
    };
    let report = check(bounds, &bfs(0));
    assert!(report.violation.is_none(), "{:?}", report.violation);
    assert!(report.unique > 10_000);
}

#[test]
fn accept_lower_ballot_is_caught_as_disagreement() {
    // The leader (node 3) pauses with an Accept in flight; nodes 1 and 2
    // elect one of them, which gets a no-op chosen; the stale Accept then
    // reaches the other, which takes it although it promised higher, and the
    // old leader counts a quorum for its command in the same slot.
    let bounds = Bounds { ticks: 4, paused: vec![2], ..planted(PlantedBug::AcceptLowerBallot, 1, 0) };
    assert_caught(&check(bounds, &bfs(0)), "agreement");
}

#[test]
fn learner_votes_is_caught_as_disagreement() {
    // A learner is in sync before exploring starts. The leader pauses; its
    // Accept reaches the learner, whose vote it counts, while the voters
    // elect a new leader that never hears of it.
    let bounds = Bounds {
        ticks: 4,
        paused: vec![2],
        warm_changes: vec![Change::AddLearner(4)],
        ..planted(PlantedBug::LearnerVotes, 1, 0)
    };
    assert_caught(&check(bounds, &bfs(0)), "agreement");
}

#[test]
fn reconfig_no_overlap_is_caught_as_a_configuration_the_log_does_not_give() {
    // The leader pauses and is asked to remove node 1; with the bug the new
    // configuration is in force as soon as it is proposed. The others elect
    // a leader that chooses a no-op in that slot; when the old leader learns
    // it, it holds a configuration the chosen log never gave.
    let bounds = Bounds {
        ticks: 4,
        paused: vec![2],
        changes: vec![Change::Remove(1)],
        ..planted(PlantedBug::ReconfigNoOverlap, 0, 0)
    };
    assert_caught(&check(bounds, &bfs(0)), "configuration");
}

#[test]
fn clean_protocol_survives_a_paused_leader_and_a_removal() {
    // The adversary that catches the three bugs above, against the clean
    // protocol (a prefix of it here; the whole space, 323,150 states to
    // depth 30, is clean too: `synod-check --commands 0 --crashes 0
    // --ticks 4 --changes remove --paused 3`).
    let bounds = Bounds { ticks: 4, paused: vec![2], changes: vec![Change::Remove(1)], commands: 1, ..Bounds::small() };
    let report = check(bounds, &bfs(60_000));
    if let Some(cx) = &report.violation {
        panic!("{}\n{}\n{}", cx.violation, cx.trace.join("\n"), cx.last);
    }
    assert!(report.unique >= 30_000, "explored only {} states", report.unique);
}
