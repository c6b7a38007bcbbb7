//! etcd's corruption checks: `--experimental-initial-corrupt-check` (a
//! member compares its store with its peers' before it serves clients and
//! refuses to start on a mismatch) and `--experimental-corrupt-check-time`
//! (the leader checks periodically and raises the CORRUPT alarm for a
//! member whose store differs).
//!
//! etcd asks each peer for its HashKV at a revision over the peer port.
//! Here the check goes through the log: a [`Proposal::HashCheck`] makes
//! every member hash its key-value store where it applies that slot, so
//! all hash the same revision of what should be the same store; each then
//! proposes its hash ([`Proposal::HashReport`]), and every member sees
//! every report in the log. A hash shared by a majority of the voters is
//! the cluster's; a member whose hash differs from it is corrupt. (etcd
//! 3.4's leader takes its own hash as the truth, so a corrupt leader
//! accuses every follower; a majority does not.) The CORRUPT alarm goes
//! through the log as any alarm does, so every member lists it; it refuses
//! nothing, as in etcd, but an operator sees it in `etcdctl alarm list`
//! and /health.

use crate::alarm::{ACTIVATE, CORRUPT};
use crate::context::Context;
use crate::state::machine::{HashEvent, HashReport, Proposal, Reply};
use crate::status;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use synod_etcd_api::etcdserverpb::AlarmRequest;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{error, info, warn};

/// How many checks' reports are kept.
const KEPT_CHECKS: usize = 8;

/// What this member has seen of recent checks, by slot.
#[derive(Default)]
struct Tally {
    /// This member's own hash at each check it applied.
    own: BTreeMap<u64, HashReport>,
    /// Each member's reported hash at each check.
    reports: BTreeMap<u64, BTreeMap<u64, HashReport>>,
    /// (check slot, member) pairs already alarmed.
    alarmed: BTreeSet<(u64, u64)>,
}

impl Tally {
    fn forget_old(&mut self) {
        while self.own.len() > KEPT_CHECKS {
            self.own.pop_first();
        }
        while self.reports.len() > KEPT_CHECKS {
            self.reports.pop_first();
        }
        if let Some(&oldest) = self.reports.keys().next() {
            self.alarmed.retain(|(slot, _)| *slot >= oldest);
        }
    }
}

/// The outcome of one check, from the reports in so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No hash is yet held by a majority of the voters.
    Undecided,
    /// A majority holds `hash`; `differing` lists the members that
    /// reported another.
    Decided {
        /// The majority's hash.
        hash: u32,
        /// Members that reported another hash.
        differing: Vec<u64>,
    },
}

/// The verdict on one check's `reports` among `voters`: the hash a strict
/// majority of the voters reported, and who reported another.
pub fn verdict(reports: &BTreeMap<u64, HashReport>, voters: &[u64]) -> Verdict {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for r in reports.values().filter(|r| voters.contains(&r.member)) {
        *counts.entry(r.hash).or_default() += 1;
    }
    match counts.into_iter().find(|&(_, n)| n > voters.len() / 2) {
        Some((hash, _)) => Verdict::Decided {
            hash,
            differing: reports.values().filter(|r| r.hash != hash).map(|r| r.member).collect(),
        },
        None => Verdict::Undecided,
    }
}

/// A member's consistency checker: it reports this member's hash at every
/// check, and, while this member leads, raises CORRUPT for members whose
/// hash differs from the majority's.
#[derive(Clone)]
pub struct Checker {
    tally: Arc<Mutex<Tally>>,
    changed: Arc<Notify>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

impl Checker {
    /// A checker that has seen nothing yet.
    pub fn new() -> Checker {
        Checker { tally: Arc::new(Mutex::new(Tally::default())), changed: Arc::new(Notify::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the checks and reports the log applies (`events`, from
    /// [`crate::state::machine::EtcdMachine::with_hash_events`]) until `stop`;
    /// with `every`, starts a check that often while this member leads.
    pub async fn run(
        self,
        ctx: Arc<Context>,
        mut events: mpsc::UnboundedReceiver<HashEvent>,
        every: Option<Duration>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = every.map(tokio::time::interval);
        loop {
            let tick = async {
                match &mut ticker {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
                _ = tick => {
                    if leads(&ctx) {
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            if let Err(e) = start_check(&ctx).await {
                                warn!(error = %e, "could not start a corruption check");
                            }
                        });
                    }
                }
                event = events.recv() => match event {
                    Some(event) => self.note(&ctx, event).await,
                    None => return,
                },
            }
        }
    }

    async fn note(&self, ctx: &Arc<Context>, event: HashEvent) {
        match event {
            HashEvent::Checked(mut own) => {
                own.member = ctx.member_id;
                {
                    let mut tally = self.lock();
                    tally.own.insert(own.slot, own.clone());
                    tally.forget_old();
                }
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(e) = ctx.propose(Proposal::HashReport(own).to_bytes()).await {
                        warn!(error = %e, "could not report this member's hash for a corruption check");
                    }
                });
            }
            HashEvent::Reported(report) => {
                let slot = report.slot;
                let reports = {
                    let mut tally = self.lock();
                    tally.reports.entry(slot).or_default().insert(report.member, report);
                    tally.forget_old();
                    tally.reports.get(&slot).cloned().unwrap_or_default()
                };
                self.changed.notify_waiters();
                if !leads(ctx) {
                    return;
                }
                let voters = ctx.handle.view().voters;
                if let Verdict::Decided { hash, differing } = verdict(&reports, &voters) {
                    for member in differing {
                        if !self.lock().alarmed.insert((slot, member)) {
                            continue;
                        }
                        let theirs = reports.get(&member).map(|r| (r.revision, r.hash));
                        error!(
                            member = format_args!("{member:x}"),
                            slot,
                            majority_hash = hash,
                            reported = ?theirs,
                            "found data inconsistency: the member's store differs from the majority's; raising CORRUPT"
                        );
                        let raise = AlarmRequest { action: ACTIVATE, member_id: member, alarm: CORRUPT };
                        if let Err(e) = ctx.propose(Proposal::Alarm(raise).to_bytes()).await {
                            warn!(error = %e, "could not raise the CORRUPT alarm");
                        }
                    }
                }
            }
        }
    }

    /// etcd's initial corruption check: starts a check and waits, for up
    /// to `wait`, until a majority of the voters agree on a hash. Fails if
    /// this member's hash is not the majority's; passes with a warning if
    /// no majority reported in time (peers down), as etcd starts when it
    /// cannot reach its peers.
    pub async fn initial_check(&self, ctx: &Arc<Context>, wait: Duration) -> Result<(), String> {
        let own = start_check(ctx).await?;
        let slot = own.slot;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            let reports = self.lock().reports.get(&slot).cloned().unwrap_or_default();
            let voters = ctx.handle.view().voters;
            match verdict(&reports, &voters) {
                Verdict::Decided { hash, .. } if hash == own.hash => {
                    info!(slot, revision = own.revision, hash, "initial corruption check passed");
                    return Ok(());
                }
                Verdict::Decided { hash, .. } => {
                    return Err(format!(
                        "found data inconsistency with peers: at revision {} (compacted at {}) this member's \
                         hash is {}, the majority's {hash}",
                        own.revision, own.compact_revision, own.hash
                    ));
                }
                Verdict::Undecided => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                warn!(
                    slot,
                    reports = reports.len(),
                    "initial corruption check: no majority of the voters reported in time; starting anyway"
                );
                return Ok(());
            }
        }
    }
}

/// Whether this member leads.
fn leads(ctx: &Context) -> bool {
    ctx.handle.view().leader == Some(ctx.member_id)
}

/// Proposes a check; returns this member's hash at it.
async fn start_check(ctx: &Context) -> Result<HashReport, String> {
    match status::outcome(ctx.propose(Proposal::HashCheck.to_bytes()).await).map_err(|e| e.message().to_string())? {
        Reply::Hash(mut own) => {
            own.member = ctx.member_id;
            Ok(own)
        }
        other => Err(format!("unexpected reply to a hash check: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(member: u64, hash: u32) -> (u64, HashReport) {
        (member, HashReport { member, slot: 5, revision: 9, compact_revision: 1, hash })
    }

    #[test]
    fn the_majoritys_hash_decides_who_is_corrupt() {
        let voters = [1, 2, 3];
        let two: BTreeMap<_, _> = [report(1, 7), report(3, 8)].into();
        assert_eq!(verdict(&two, &voters), Verdict::Undecided);
        let three: BTreeMap<_, _> = [report(1, 7), report(2, 8), report(3, 8)].into();
        assert_eq!(verdict(&three, &voters), Verdict::Decided { hash: 8, differing: vec![1] });
        let agreed: BTreeMap<_, _> = [report(1, 7), report(2, 7)].into();
        assert_eq!(verdict(&agreed, &voters), Verdict::Decided { hash: 7, differing: vec![] });
        // A non-voter's report does not count towards the majority.
        let learner: BTreeMap<_, _> = [report(1, 7), report(4, 7)].into();
        assert_eq!(verdict(&learner, &voters), Verdict::Undecided);
    }
}
