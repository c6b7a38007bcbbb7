//! The three partial-connectivity scenarios of the OmniPaxos paper
//! (Ng, Haridi, Carbone: "Omni-Paxos: Breaking the Barriers of Partial
//! Connectivity", EuroSys 2023), where Raft and Multi-Paxos with naive
//! leader election lose progress or livelock.
//!
//! Each scenario boots a cluster with the replica's default timing, lets it
//! elect a leader under a steady trickle of proposals, cuts links in the
//! scenario's pattern, and measures the ticks until a proposal made after
//! the cut is chosen. The cluster must recover within four election rounds.

use crate::world::{SimOptions, World, TICK};
use std::fmt;

/// One of the partial-connectivity scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Five nodes; every link fails except those of one node C. The old
    /// leader is then connected only to C; C is the only node that hears a
    /// quorum and must take over.
    QuorumLoss,
    /// Five nodes; a node B falls behind while isolated; then the leader is
    /// cut off and the other nodes lose their links to each other, so the
    /// lagging B is the only node connected to a quorum and must lead.
    ConstrainedElection,
    /// Three nodes in a chain A - B - C: the link between the leader A and
    /// C fails. C must not keep disrupting the leader through B.
    Chained,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 3] = [Scenario::QuorumLoss, Scenario::ConstrainedElection, Scenario::Chained];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::QuorumLoss => "quorum-loss",
            Scenario::ConstrainedElection => "constrained-election",
            Scenario::Chained => "chained",
        }
    }

    /// The scenario with that name.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of one scenario run.
#[derive(Debug)]
pub struct ScenarioReport {
    /// Which scenario.
    pub scenario: Scenario,
    /// Ticks from the cut until a new proposal was chosen (`None`: never,
    /// within the run's limit).
    pub recovery_ticks: Option<u64>,
    /// The bound the scenario must meet, in ticks.
    pub bound_ticks: u64,
    /// A safety violation, if one happened.
    pub violation: Option<String>,
}

impl ScenarioReport {
    /// Whether the scenario recovered in time without violations.
    pub fn passed(&self) -> bool {
        self.violation.is_none() && self.recovery_ticks.is_some_and(|t| t <= self.bound_ticks)
    }
}

/// Run `scenario` with `seed`.
pub fn run(scenario: Scenario, seed: u64) -> ScenarioReport {
    let nodes = match scenario {
        Scenario::Chained => 3,
        _ => 5,
    };
    let opts = SimOptions { nodes, faults: false, default_timing: true, ..SimOptions::new(seed) };
    let election_ticks = synod_paxos::Config::new(1, vec![1]).election_ticks;
    let bound_ticks = 4 * election_ticks;
    let mut w = World::new(opts).without_clients();
    let mut seq = 0;
    let advance = |w: &mut World, ticks: u64, seq: &mut u64| {
        for _ in 0..ticks {
            *seq += 1;
            w.probe(*seq);
            let until = w.now() + TICK;
            w.run_until(until);
        }
    };
    advance(&mut w, 60, &mut seq);
    let Some(leader) = w.leader() else {
        return ScenarioReport {
            scenario,
            recovery_ticks: None,
            bound_ticks,
            violation: Some("no leader after warm-up".into()),
        };
    };
    let others: Vec<usize> = (0..nodes).filter(|&i| i != leader).collect();
    match scenario {
        Scenario::QuorumLoss => {
            let hub = others[0];
            for a in 0..nodes {
                for b in 0..nodes {
                    if a != b && a != hub && b != hub {
                        w.set_link(a, b, false);
                    }
                }
            }
        }
        Scenario::ConstrainedElection => {
            let lagging = others[0];
            for j in 0..nodes {
                if j != lagging {
                    w.set_link(lagging, j, false);
                    w.set_link(j, lagging, false);
                }
            }
            advance(&mut w, 30, &mut seq);
            for j in 0..nodes {
                w.set_link(lagging, j, true);
                w.set_link(j, lagging, true);
            }
            for a in 0..nodes {
                for b in 0..nodes {
                    let keep = a == lagging || b == lagging;
                    if a != b && (!keep || a == leader || b == leader) {
                        w.set_link(a, b, false);
                    }
                }
            }
        }
        Scenario::Chained => {
            let c = others[1];
            w.set_link(leader, c, false);
            w.set_link(c, leader, false);
        }
    }
    let t0 = w.now();
    let first_after = seq + 1;
    let mut recovery_ticks = None;
    for _ in 0..bound_ticks * 5 {
        advance(&mut w, 1, &mut seq);
        if w.max_probe_chosen() >= first_after {
            recovery_ticks = Some((w.now() - t0) / TICK);
            break;
        }
        if w.violation().is_some() {
            break;
        }
    }
    ScenarioReport { scenario, recovery_ticks, bound_ticks, violation: w.violation().map(|v| v.to_string()) }
}
