//! Progress of a run in flight: a line on stderr every few seconds, so a
//! long run shows it is alive and how it is going.
//!
//! The load tasks bump two counters; a reporter task reads them on a timer.
//! The reporter is stopped before the run returns, so no progress line can
//! land in the middle of (or after) the report on stdout. Nothing here
//! measures latency or decides what the report says.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the load tasks have completed so far.
#[derive(Default)]
pub struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    /// A request succeeded.
    pub fn op(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// A request failed or timed out.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> (u64, u64) {
        (self.ops.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }
}

/// Where the run stops, as the progress line states it.
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    /// The run's deadline.
    pub duration: Option<Duration>,
    /// The run's request budget.
    pub requests: Option<u64>,
}

/// One progress line: elapsed (of the duration), requests so far (of the
/// budget), throughput since the last line, errors.
pub fn line(elapsed: Duration, goal: Goal, ops: u64, errors: u64, current_ops_s: f64) -> String {
    let mut out = format!("synod-bench: {:.0}", elapsed.as_secs_f64());
    if let Some(duration) = goal.duration {
        let _ = write!(out, "/{}", duration.as_secs_f64());
    }
    let _ = write!(out, " s, {ops}");
    if let Some(requests) = goal.requests {
        let _ = write!(out, "/{requests}");
    }
    let _ = write!(out, " ops, {current_ops_s:.0} ops/s now, {errors} errors");
    out
}

/// The running reporter; [`Reporter::stop`] ends it.
pub struct Reporter {
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    /// Prints a line every `every` from `start` on, until stopped.
    pub fn start(counters: Arc<Counters>, start: Instant, every: Duration, goal: Goal) -> Reporter {
        let task = tokio::spawn(async move {
            let mut timer = tokio::time::interval_at((start + every).into(), every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut last_at, mut last_ops) = (start, 0);
            loop {
                timer.tick().await;
                let now = Instant::now();
                let (ops, errors) = counters.read();
                let seconds = now.duration_since(last_at).as_secs_f64();
                let rate = if seconds > 0.0 { (ops - last_ops) as f64 / seconds } else { 0.0 };
                eprintln!("{}", line(now.duration_since(start), goal, ops, errors, rate));
                (last_at, last_ops) = (now, ops);
            }
        });
        Reporter { task }
    }

    /// Stops the reporter and waits until it has; a line being printed is
    /// finished first (the task only stops at its timer).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_states_elapsed_of_total_ops_rate_and_errors() {
        let goal = Goal { duration: Some(Duration::from_secs(60)), requests: None };
        assert_eq!(
            line(Duration::from_millis(12_004), goal, 123_456, 2, 10_233.6),
            "synod-bench: 12/60 s, 123456 ops, 10234 ops/s now, 2 errors"
        );
        let goal = Goal { duration: Some(Duration::from_millis(2500)), requests: None };
        assert!(line(Duration::from_secs(1), goal, 0, 0, 0.0).starts_with("synod-bench: 1/2.5 s, "));
    }

    #[test]
    fn a_request_budget_is_shown_against_ops() {
        let goal = Goal { duration: None, requests: Some(1_000_000) };
        assert_eq!(
            line(Duration::from_secs(5), goal, 5_000, 0, 1000.0),
            "synod-bench: 5 s, 5000/1000000 ops, 1000 ops/s now, 0 errors"
        );
    }

    #[tokio::test]
    async fn the_reporter_stops_when_told() {
        let goal = Goal { duration: None, requests: None };
        let reporter = Reporter::start(Arc::default(), Instant::now(), Duration::from_millis(5), goal);
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::time::timeout(Duration::from_secs(5), reporter.stop()).await.expect("stopped");
    }
}
