//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`),
//! as etcd's compactor does it: the leader alone proposes an ordinary
//! compaction through the log, so every member compacts at the same slot.
//!
//! * periodic, retention `R`: every step of `min(R, 1h) / 10` the current
//!   revision is noted, keeping the notes of the last `R`. The first
//!   compaction comes `R` after start, to the oldest revision noted (the
//!   one seen about `R` ago); later ones every `min(R, 1h)` after the last
//!   that succeeded. A failed one is tried again at the next step.
//! * revision, retention `N`: every 5 minutes, compact to the current
//!   revision minus `N`, unless that is not above 0 or was done already.
//!
//! A member that does not lead notes revisions but proposes nothing. The
//! policy ([`Compactor`]) reads no clock and does no I/O: [`run`] feeds it
//! the time, the revision and whether this member leads, and proposes
//! what it asks for. It must never compact on a follower's say, nor skip
//! the log: a compaction applied on one member only would make the
//! members' histories differ.

use crate::config::CompactionMode;
use crate::context::Context;
use crate::state::machine::{MachineError, Proposal};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_kv::pb::CompactionRequest;
use synod_kv::{Command as KvCommand, KvError};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How often the revision compactor looks (etcd's `revInterval`).
pub const REVISION_EVERY: Duration = Duration::from_secs(5 * 60);

/// The longest interval between periodic compactions (etcd compacts at
/// least hourly whatever the retention).
const LONGEST_INTERVAL: Duration = Duration::from_secs(3600);

/// Notes per interval (etcd's `retryDivisor`).
const STEPS_PER_INTERVAL: u32 = 10;

/// The shortest periodic retention accepted: below it, compactions would
/// crowd the log for no gain.
pub const SHORTEST_PERIOD: Duration = Duration::from_secs(1);

/// How much history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Keep this much time's worth of revisions.
    Periodic(Duration),
    /// Keep this many revisions.
    Revisions(i64),
}

impl Retention {
    /// `--auto-compaction-retention` in `mode`, as etcd reads it: a
    /// non-negative integer is hours (periodic) or revisions (revision);
    /// otherwise a Go duration (periodic only). `None` for 0: disabled.
    pub fn parse(mode: CompactionMode, text: &str) -> Result<Option<Retention>, String> {
        let number = text.parse::<i64>().ok().filter(|n| *n >= 0);
        let retention = match (mode, number) {
            (_, Some(0)) => return Ok(None),
            (CompactionMode::Revision, Some(n)) => Retention::Revisions(n),
            (CompactionMode::Revision, None) => {
                return Err("in revision mode the retention is a number of revisions".into());
            }
            (CompactionMode::Periodic, Some(hours)) => {
                let secs = u64::try_from(hours).ok().and_then(|h| h.checked_mul(3600));
                match secs.map(Duration::from_secs).filter(|d| crate::config::duration::fits_go(*d)) {
                    Some(d) => Retention::Periodic(d),
                    None => return Err("too many hours for a duration".into()),
                }
            }
            (CompactionMode::Periodic, None) => {
                let d = crate::config::duration::parse(text)
                    .map_err(|e| format!("{e} (write a duration like 30m or 1h30m, or a number of hours)"))?;
                if d.is_zero() {
                    return Ok(None);
                }
                Retention::Periodic(d)
            }
        };
        if let Retention::Periodic(d) = retention {
            if d < SHORTEST_PERIOD {
                return Err(format!("a periodic retention must be at least {SHORTEST_PERIOD:?}"));
            }
        }
        Ok(Some(retention))
    }
}

/// The compaction policy, fed the time, the revision and leadership.
#[derive(Clone, Debug)]
pub enum Compactor {
    /// `periodic`.
    Periodic(Periodic),
    /// `revision`.
    Revision(ByRevision),
}

impl Compactor {
    /// A policy for `retention`, starting at `now` with the store at
    /// revision `current`.
    pub fn new(retention: Retention, now: Instant, current: i64) -> Compactor {
        match retention {
            Retention::Periodic(period) => Compactor::Periodic(Periodic::new(period, now, current)),
            Retention::Revisions(keep) => Compactor::Revision(ByRevision { keep, done: 0 }),
        }
    }

    /// How long to wait before the next [`Compactor::due`].
    pub fn step(&self) -> Duration {
        match self {
            Compactor::Periodic(p) => p.step,
            Compactor::Revision(_) => REVISION_EVERY,
        }
    }

    /// After a step: the revision to compact to now, if any. `current` is
    /// the store's revision; `leading` whether this member leads.
    pub fn due(&mut self, now: Instant, current: i64, leading: bool) -> Option<i64> {
        match self {
            Compactor::Periodic(p) => p.due(now, current, leading),
            Compactor::Revision(r) => r.due(current, leading),
        }
    }

    /// The compaction to `revision` that [`Compactor::due`] asked for was
    /// applied, or the store was compacted that far already.
    pub fn compacted(&mut self, now: Instant, revision: i64) {
        match self {
            Compactor::Periodic(p) => p.last_success = now,
            Compactor::Revision(r) => r.done = revision,
        }
    }
}

/// The periodic policy.
#[derive(Clone, Debug)]
pub struct Periodic {
    /// How often compactions come once the first has: `min(period, 1h)`.
    interval: Duration,
    /// How often a revision is noted.
    step: Duration,
    /// The revisions noted, oldest first: the first is from about
    /// `period` ago once the window is full.
    noted: VecDeque<i64>,
    /// How many notes cover the period.
    window: usize,
    /// The last compaction that succeeded (or the start).
    last_success: Instant,
    /// How long after `last_success` the next compaction is due: the
    /// period before the first, then the interval.
    wait: Duration,
}

impl Periodic {
    fn new(period: Duration, now: Instant, current: i64) -> Periodic {
        let interval = period.min(LONGEST_INTERVAL);
        let step = interval / STEPS_PER_INTERVAL;
        debug_assert!(!step.is_zero(), "a periodic retention is at least {SHORTEST_PERIOD:?}");
        let window = usize::try_from(period.as_nanos() / step.as_nanos()).unwrap_or(usize::MAX).saturating_add(1);
        Periodic { interval, step, noted: VecDeque::from([current]), window, last_success: now, wait: period }
    }

    fn due(&mut self, now: Instant, current: i64, leading: bool) -> Option<i64> {
        let due = leading && now.saturating_duration_since(self.last_success) >= self.wait;
        let pick = if due {
            self.wait = self.interval;
            self.noted.front().copied()
        } else {
            None
        };
        self.noted.push_back(current);
        while self.noted.len() > self.window {
            self.noted.pop_front();
        }
        pick
    }
}

/// The revision policy.
#[derive(Clone, Debug)]
pub struct ByRevision {
    /// Revisions to keep.
    keep: i64,
    /// The last revision compacted to (0: none).
    done: i64,
}

impl ByRevision {
    fn due(&mut self, current: i64, leading: bool) -> Option<i64> {
        let target = current.saturating_sub(self.keep);
        (leading && target > 0 && target != self.done).then_some(target)
    }
}

/// Runs the policy for `retention` on this member until `stop`: on the
/// leader, proposes each compaction it asks for.
pub async fn run(ctx: Arc<Context>, retention: Retention, mut stop: watch::Receiver<bool>) {
    let handle = ctx.handle.clone();
    let revision = || handle.with_state(|m| m.kv().revision());
    let current = revision().await.unwrap_or(1);
    let mut policy = Compactor::new(retention, Instant::now(), current);
    info!(?retention, step = ?policy.step(), "auto-compaction on");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(policy.step()) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok(current) = revision().await else { continue };
        let leading = ctx.handle.view().is_leader();
        let now = Instant::now();
        let Some(target) = policy.due(now, current, leading) else { continue };
        let compaction = Proposal::Kv(KvCommand::Compact(CompactionRequest { revision: target, physical: false }));
        match ctx.propose(compaction.to_bytes()).await {
            Ok(Ok(_)) => {
                policy.compacted(now, target);
                info!(revision = target, ?retention, "auto-compaction done");
            }
            Ok(Err(MachineError::Kv(KvError::Compacted))) => {
                policy.compacted(now, target);
                debug!(revision = target, "auto-compaction: compacted that far already");
            }
            Ok(Err(e)) => warn!(revision = target, error = %e, retry = ?policy.step(), "auto-compaction refused"),
            Err(e) => warn!(revision = target, error = %e, retry = ?policy.step(), "auto-compaction failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CompactionMode::{Periodic as P, Revision as R};

    #[test]
    fn retention_is_read_as_etcd_reads_it() {
        let table: &[(CompactionMode, &str, Option<Retention>)] = &[
            (P, "0", None),
            (R, "0", None),
            (P, "0s", None),
            (P, "1", Some(Retention::Periodic(Duration::from_secs(3600)))),
            (P, "72", Some(Retention::Periodic(Duration::from_secs(72 * 3600)))),
            (P, "30m", Some(Retention::Periodic(Duration::from_secs(1800)))),
            (P, "1h30m", Some(Retention::Periodic(Duration::from_secs(5400)))),
            (P, "1.5s", Some(Retention::Periodic(Duration::from_millis(1500)))),
            (R, "1000", Some(Retention::Revisions(1000))),
        ];
        for &(mode, text, want) in table {
            assert_eq!(Retention::parse(mode, text), Ok(want), "{mode:?} {text}");
        }
        for (mode, text) in [(R, "1h"), (P, "-1"), (P, "1d"), (P, "500ms"), (P, "99999999999999"), (P, "x")] {
            assert!(Retention::parse(mode, text).is_err(), "{mode:?} {text} accepted");
        }
    }

    /// Drives a periodic policy step by step; the revision grows by one a
    /// step. Returns the (step number, revision) of each compaction.
    fn periodic_run(period: Duration, steps: u32, leading: impl Fn(u32) -> bool) -> Vec<(u32, i64)> {
        let start = Instant::now();
        let mut c = Compactor::new(Retention::Periodic(period), start, 100);
        let step = c.step();
        let mut done = Vec::new();
        for k in 1..=steps {
            let now = start + step * k;
            if let Some(rev) = c.due(now, 100 + i64::from(k), leading(k)) {
                c.compacted(now, rev);
                done.push((k, rev));
            }
        }
        done
    }

    #[test]
    fn periodic_compacts_first_after_the_retention_then_every_retention_to_what_it_saw_that_long_ago() {
        // 10 s: a note every second. The first compaction at 10 s, to the
        // revision at start; then every 10 s, to the oldest of the last 11
        // notes (as etcd: the one taken a retention and a step before).
        let done = periodic_run(Duration::from_secs(10), 35, |_| true);
        assert_eq!(done, [(10, 100), (20, 109), (30, 119)]);
    }

    #[test]
    fn periodic_with_a_retention_over_an_hour_compacts_hourly_to_the_revision_a_retention_ago() {
        // 2 h: a note every 6 minutes (10 an hour); the first compaction at
        // 2 h to the start revision, then hourly, each to the revision of
        // 2 h (and a step) before.
        let done = periodic_run(Duration::from_secs(2 * 3600), 45, |_| true);
        assert_eq!(done, [(20, 100), (30, 109), (40, 119)]);
    }

    #[test]
    fn a_follower_notes_revisions_but_never_compacts() {
        assert!(periodic_run(Duration::from_secs(10), 100, |_| false).is_empty());
        // Leading from step 25 on: due at once (the period has passed), to
        // the revision of a period ago.
        let done = periodic_run(Duration::from_secs(10), 36, |k| k >= 25);
        assert_eq!(done, [(25, 114), (35, 124)]);
    }

    #[test]
    fn a_failed_periodic_compaction_is_tried_again_at_the_next_step() {
        let start = Instant::now();
        let mut c = Compactor::new(Retention::Periodic(Duration::from_secs(10)), start, 1);
        let step = c.step();
        for k in 1..10 {
            assert_eq!(c.due(start + step * k, 1 + i64::from(k), true), None);
        }
        assert_eq!(c.due(start + step * 10, 11, true), Some(1));
        // Not reported as compacted: due again one step later, to the
        // oldest note still kept.
        assert_eq!(c.due(start + step * 11, 12, true), Some(1));
        assert_eq!(c.due(start + step * 12, 13, true), Some(2));
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions_and_never_repeats_itself() {
        let mut c = Compactor::new(Retention::Revisions(100), Instant::now(), 1);
        assert_eq!(c.step(), Duration::from_secs(300));
        let now = Instant::now();
        assert_eq!(c.due(now, 50, true), None, "nothing below revision 1");
        assert_eq!(c.due(now, 100, true), None);
        assert_eq!(c.due(now, 350, false), None, "only the leader compacts");
        assert_eq!(c.due(now, 350, true), Some(250));
        c.compacted(now, 250);
        assert_eq!(c.due(now, 350, true), None, "no new revisions, nothing to do");
        assert_eq!(c.due(now, 351, true), Some(251));
    }
}
