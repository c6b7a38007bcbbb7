//! An explicit-state model checker over the Synod Paxos core.
//!
//! The simulator samples executions at random; this crate enumerates them.
//! It drives real [`synod_paxos::Replica`]s, the same code the server runs,
//! through every order of a small set of events, breadth first, with the
//! [`stateright`] checker, and after every step runs the simulator's own
//! invariant checks ([`synod_sim::invariants::Invariants`]): agreement,
//! validity, promise monotonicity and durability across crashes (a ballot
//! acknowledged in a sent `Promise` or `Accepted` is never forgotten), and
//! the configuration invariant (every voter that learned up to slot `c`
//! holds the configuration the α rule gives for `c + 1`). With a global
//! clock it also checks that no two replicas hold a leader lease at once.
//!
//! # The model ([`model`])
//!
//! A few voters (3 by default) and the learners that membership changes
//! add. The events, each bounded by a budget in [`Bounds`]: deliver the
//! first message of any link (links are FIFO, as the TCP transport is),
//! lose one, advance the clocks, crash a node and restart it from its
//! durable records and stored snapshot, propose a client command at the
//! leader, ask the leader for the next membership change of a plan
//! (`AddLearner(4)` then `PromoteLearner(4)` by default), ask it to hand
//! leadership over, and cut a leader off from periodic traffic (how a
//! second leader gets elected while the first still runs). Storage syncs
//! one step late: what a node hands to storage in one step is durable (or,
//! for a snapshot, stored) at the end of the next, unless that next step
//! crashes the node, which loses it. Snapshots are taken every couple of
//! slots, so compaction and snapshot transfer happen within a few
//! commands.
//!
//! Clocks ([`Clock`]): by default one global clock ticks every live node
//! at once (one node may run at double rate), so real time exists and the
//! model also checks that no two replicas hold a leader lease at once;
//! independent clocks explore every order of ticks instead. A node may be
//! *paused* ([`Bounds::paused`]): its clock stands still while it still
//! handles messages, as a process in a long GC pause or stopped by SIGSTOP
//! whose sends are still in the network. A paused leader never notices it
//! lost its followers, so the others elect a successor while its stale
//! Accepts are in flight: the schedule that shows accept-lower-ballot,
//! learner-votes and reconfig-no-overlap within a dozen steps (with every
//! clock running, the old leader steps down before a successor is elected,
//! and those schedules need independent clocks and millions of states).
//!
//! A model may start with membership changes already made
//! ([`Bounds::warm_changes`]: a learner added and in sync, say), so that its
//! depth goes to what follows.
//!
//! These abstractions only ever pick some of the real system's
//! behaviours, so every violation found is real: periodic traffic (pings,
//! pongs, heartbeats, their acks, learners' progress reports) is exchanged
//! within the step that sends it unless a side is cut off; a newer commit
//! notice replaces an older one still in flight on its link, and a message
//! already waiting on a link is not queued twice (the network lost the
//! copy). By default the model starts from a warm cluster: a fixed run in
//! which a leader was elected and its first slot chosen and learned
//! everywhere.
//!
//! # State hashing ([`fingerprint`])
//!
//! By default a replica is fingerprinted by its whole state (its `Debug`
//! output: every field, timers and vote tallies included), with each
//! node's disk and snapshot, the network and the budgets; two states merge
//! only when they are equal (hash maps print in their own order, so equal
//! states may occasionally count twice: fewer merges, never wrong ones).
//! This is complete within the bounds. A cheaper summary of what the
//! inspection API shows ([`Fingerprint::Summary`]) merges states that
//! differ in timers, tallies or held replies; it was tried and missed
//! skip-persist (a cut before a tick merged with the cut after it, which
//! elects differently), so it is only an option.
//!
pub mod fingerprint;
pub mod model;

pub use model::{Action, Bounds, Clock, Fingerprint, State, SynodModel};

use stateright::{Checker, Model};
use std::time::{Duration, Instant};

/// How to search.
#[derive(Clone, Debug)]
pub struct Search {
    /// Stop after this many unique states (0: no limit).
    pub max_states: usize,
    /// Explore no deeper than this many steps (0: no limit).
    pub max_depth: usize,
    /// Worker threads.
    pub threads: usize,
    /// Depth first instead of breadth first.
    pub dfs: bool,
}

impl Default for Search {
    fn default() -> Search {
        Search { max_states: 0, max_depth: 0, threads: 1, dfs: false }
    }
}

/// A violation and the steps that lead to it.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// What broke.
    pub violation: String,
    /// Each step, told for a person, from the initial state.
    pub trace: Vec<String>,
    /// The state it ends in.
    pub last: String,
}

/// What a search found.
#[derive(Clone, Debug)]
pub struct Report {
    /// States generated (including ones seen before).
    pub states: usize,
    /// Distinct states (by fingerprint).
    pub unique: usize,
    /// The deepest state reached, in steps.
    pub max_depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// The first violation found, if any.
    pub violation: Option<Counterexample>,
}

/// Explore `bounds` with `search`, stopping at the first violation.
pub fn check(bounds: Bounds, search: &Search) -> Report {
    let start = Instant::now();
    let model = SynodModel::new(bounds);
    let mut builder = model.checker().threads(search.threads.max(1));
    if search.max_states > 0 {
        builder = builder.target_state_count(search.max_states);
    }
    if search.max_depth > 0 {
        builder = builder.target_max_depth(search.max_depth);
    }
    if search.dfs {
        summarize(builder.spawn_dfs().join(), start)
    } else {
        summarize(builder.spawn_bfs().join(), start)
    }
}

fn summarize(checker: impl Checker<SynodModel>, start: Instant) -> Report {
    let violation = checker.discovery("safe").map(|path| {
        let mut trace = Vec::new();
        let mut last = None;
        for (state, action) in path.into_vec() {
            match action {
                Some(a) => trace.push(model::describe(&state, &a)),
                None => last = Some(state),
            }
        }
        let last = last.unwrap_or_else(|| checker.model().init_states().remove(0));
        Counterexample { violation: last.violation.clone().unwrap_or_default(), trace, last: format!("{last:?}") }
    });
    Report {
        states: checker.state_count(),
        unique: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed: start.elapsed(),
        violation,
    }
}
