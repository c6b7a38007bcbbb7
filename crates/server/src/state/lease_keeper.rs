//! The lease keeper: counts lease TTLs down on the leader and revokes
//! expired leases through the log.
//!
//! Time never enters the replicated state: the state machine only knows
//! which leases exist and the TTL each was granted. The member that leads
//! keeps a deadline per lease in memory; keep-alives push a deadline
//! forward, and a lease whose deadline passes is revoked with an ordinary
//! [`synod_kv::Command::LeaseRevoke`], applied by every replica at the same
//! slot. Followers keep no deadlines: keep-alives and TTL queries go to the
//! leader (see [`crate::services::lease`]).
//!
//! A new leader starts every lease's deadline afresh at now + granted TTL,
//! as etcd does, so a failover can make a lease live longer but never
//! expire early. What the keeper must never do is revoke a lease whose
//! deadline it did not see pass under its own leadership: deadlines from an
//! earlier term are dropped when the term changes. A revoke proposed by a
//! leader that has just been deposed fails or, if a newer leader already
//! revoked the lease, gets "lease not found": both are harmless.

use crate::state::machine::{EtcdMachine, MachineError, Proposal};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use synod_kv::pb::LeaseRevokeRequest;
use synod_kv::{Command as KvCommand, KvError};
use synod_paxos::{Ballot, NodeId};
use synod_runtime::{ClusterView, Error as RuntimeError, Handle};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How often the keeper looks for expired leases and syncs with the lease
/// table; also the precision of expiry.
pub const KEEPER_TICK: Duration = Duration::from_millis(100);

/// Most revokes one tick starts, so a mass expiry cannot flood the log
/// (etcd limits expiry revokes per second the same way).
const MAX_REVOKES_PER_TICK: usize = 100;

/// When one lease runs out, as the leader counts.
#[derive(Clone, Copy, Debug)]
struct Deadline {
    /// Time since the keeper's start.
    at: Duration,
    /// A revoke for it is in the log's hands.
    revoking: bool,
}

/// The deadlines of the term this member leads in: the keeper's decisions,
/// with time passed in (time since the keeper started), so that the
/// whole-stack simulator runs them on its own clock.
#[derive(Debug, Default)]
pub struct Deadlines {
    /// The ballot these deadlines were started under; `None` while this
    /// member does not lead.
    term: Option<Ballot>,
    leases: HashMap<i64, Deadline>,
}

impl Deadlines {
    /// Drops every deadline from another term (and all of them when
    /// `term` is `None`): a new leader starts each lease afresh.
    fn enter(&mut self, term: Option<Ballot>) {
        if self.term != term {
            self.leases.clear();
            self.term = term;
        }
    }

    /// The deadline of a lease that exists with `granted_ttl`, starting
    /// it at `now + granted_ttl` if this term has not seen it yet.
    fn get_or_start(&mut self, id: i64, granted_ttl: i64, now: Duration) -> &mut Deadline {
        self.leases.entry(id).or_insert_with(|| Deadline { at: now + ttl(granted_ttl), revoking: false })
    }

    /// One round of the keeper at `now`, leading in `term` (or not), with
    /// the lease table (id, granted TTL) as the state machine holds it:
    /// revoked leases are forgotten, new ones start counting, and the
    /// expired ones to revoke now are returned (each once, until
    /// [`Deadlines::revoke_failed`]).
    pub fn expired(&mut self, term: Option<Ballot>, table: &HashMap<i64, i64>, now: Duration) -> Vec<i64> {
        self.enter(term);
        if term.is_none() {
            return Vec::new();
        }
        // Revoked leases go; newly granted ones start counting.
        self.leases.retain(|id, _| table.contains_key(id));
        for (&id, &granted_ttl) in table {
            self.get_or_start(id, granted_ttl, now);
        }
        let mut expired: Vec<i64> =
            self.leases.iter().filter(|(_, l)| !l.revoking && l.at <= now).map(|(&id, _)| id).collect();
        expired.sort_unstable();
        expired.truncate(MAX_REVOKES_PER_TICK);
        for id in &expired {
            if let Some(l) = self.leases.get_mut(id) {
                l.revoking = true;
            }
        }
        expired
    }

    /// The revoke of an expired lease was applied (or found it gone).
    pub fn revoked(&mut self, id: i64) {
        self.leases.remove(&id);
    }

    /// The revoke of an expired lease failed: it is tried again.
    pub fn revoke_failed(&mut self, id: i64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.revoking = false;
        }
    }

    /// A keep-alive at `now` while leading in `term`, for a lease the state
    /// machine holds with `granted` TTL (`None`: no such lease).
    pub fn renew(&mut self, term: Ballot, id: i64, granted: Option<i64>, now: Duration) -> Renewal {
        self.enter(Some(term));
        let Some(granted_ttl) = granted else {
            self.leases.remove(&id);
            return Renewal::NotFound;
        };
        let deadline = self.get_or_start(id, granted_ttl, now);
        if deadline.at <= now {
            // Expired: its revoke is on the way (etcd answers the same).
            return Renewal::NotFound;
        }
        deadline.at = now + ttl(granted_ttl);
        Renewal::Renewed(granted_ttl)
    }

    /// Time left for a lease granted `granted_ttl` (`None`: no such lease),
    /// at `now`, leading in `term`.
    fn left(&mut self, term: Ballot, id: i64, granted_ttl: Option<i64>, now: Duration) -> Option<Duration> {
        self.enter(Some(term));
        let Some(granted_ttl) = granted_ttl else {
            self.leases.remove(&id);
            return None;
        };
        Some(self.get_or_start(id, granted_ttl, now).at.saturating_sub(now))
    }
}

/// A TTL in seconds as a duration (negative TTLs never reach here: the
/// state machine raises them to its minimum).
fn ttl(seconds: i64) -> Duration {
    Duration::from_secs(seconds.max(0).unsigned_abs())
}

/// The answer to a keep-alive at this member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The lease lives on for its granted TTL, in seconds.
    Renewed(i64),
    /// The lease does not exist, or has expired and is being revoked.
    NotFound,
    /// This member does not lead; the keep-alive belongs to the leader.
    NotLeader(Option<NodeId>),
}

/// A lease's remaining life, as the leader counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeToLive {
    /// Whole seconds left (truncated, as etcd reports them; 0 once expired).
    pub ttl: i64,
    /// The TTL it was granted.
    pub granted_ttl: i64,
    /// Its keys, if asked for.
    pub keys: Vec<Vec<u8>>,
}

/// The answer to a TTL query at this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remaining {
    /// The lease exists.
    Found(TimeToLive),
    /// The lease does not exist.
    NotFound,
    /// This member does not lead; the query belongs to the leader.
    NotLeader(Option<NodeId>),
}

/// The lease keeper of one member. Cheap to share; [`LeaseKeeper::run`]
/// drives it.
pub struct LeaseKeeper {
    handle: Handle<EtcdMachine>,
    deadlines: Mutex<Deadlines>,
    /// Deadlines count from here.
    epoch: Instant,
}

/// The ballot this member leads with, if it leads with a valid leader
/// lease. Without the lease it may have been deposed without knowing it
/// (cut off from the others): a keep-alive it granted could be unknown to
/// the newer leader, which counts the lease down from its own start and
/// would revoke it sooner than its TTL after that keep-alive. With the
/// lease, no newer leader exists yet, and one elected later starts every
/// lease afresh after every keep-alive this member granted.
pub fn leading(view: &ClusterView) -> Option<Ballot> {
    (view.is_leader() && view.holds_lease).then_some(view.ballot)
}

impl LeaseKeeper {
    /// A keeper for the replica behind `handle`.
    pub fn new(handle: Handle<EtcdMachine>) -> Arc<LeaseKeeper> {
        Arc::new(LeaseKeeper { handle, deadlines: Mutex::new(Deadlines::default()), epoch: Instant::now() })
    }

    fn lock(&self) -> MutexGuard<'_, Deadlines> {
        // The lock is never held across an await or a call that can panic
        // midway, so a poisoned lock still holds consistent deadlines.
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts leases down and revokes expired ones while this member leads,
    /// until `stop` turns true. Time is looked at every [`KEEPER_TICK`];
    /// leadership as soon as the replica publishes a change of it (a
    /// deposed leader drops its deadlines at once, a new one starts them).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(KEEPER_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut view = self.handle.subscribe();
        let mut seen = view.borrow().leadership();
        loop {
            let replica_stopped = tokio::select! {
                _ = interval.tick() => false,
                changed = view.wait_for(|v| v.leadership() != seen) => match changed {
                    Ok(v) => {
                        seen = v.leadership();
                        false
                    }
                    Err(_) => true,
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            if replica_stopped {
                // The server is stopping (and says why): wait to be told.
                let _ = stop.wait_for(|s| *s).await;
                return;
            }
            if let Err(e) = self.tick().await {
                debug!(error = %e, "lease keeper tick");
            }
        }
    }

    /// One round: follow leadership, sync with the lease table, revoke
    /// what has expired.
    async fn tick(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let Some(term) = leading(&self.handle.view()) else {
            self.lock().enter(None);
            return Ok(());
        };
        let table: HashMap<i64, i64> =
            self.handle.with_state(|m| m.kv().leases().map(|(id, l)| (id, l.granted_ttl)).collect()).await?;
        let expired = self.lock().expired(Some(term), &table, self.epoch.elapsed());
        for id in expired {
            tokio::spawn(self.clone().revoke_expired(id));
        }
        Ok(())
    }

    /// Revokes an expired lease through the log.
    async fn revoke_expired(self: Arc<Self>, id: i64) {
        let payload = Proposal::Kv(KvCommand::LeaseRevoke(LeaseRevokeRequest { id })).to_bytes();
        match self.handle.propose(payload).await {
            Ok(Ok(_)) => {
                info!(lease = format_args!("{id:x}"), "lease expired; revoked");
                self.lock().revoked(id);
            }
            // Revoked meanwhile (by a client or an earlier leader): done.
            Ok(Err(MachineError::Kv(KvError::LeaseNotFound))) => {
                debug!(lease = format_args!("{id:x}"), "expired lease was already revoked")
            }
            other => {
                warn!(lease = format_args!("{id:x}"), result = ?other, "revoking an expired lease failed; will retry");
                self.lock().revoke_failed(id);
            }
        }
    }

    /// A keep-alive: on the leader, pushes the lease's deadline to now +
    /// its granted TTL.
    pub async fn renew(&self, id: i64) -> Result<Renewal, RuntimeError> {
        let view = self.handle.view();
        let Some(term) = leading(&view) else {
            return Ok(Renewal::NotLeader(view.leader));
        };
        let granted = self.handle.with_state(move |m| m.kv().lease(id).map(|l| l.granted_ttl)).await?;
        Ok(self.lock().renew(term, id, granted, self.epoch.elapsed()))
    }

    /// A lease's remaining TTL as the leader counts it. Call after a
    /// linearizable read so the lease table is current.
    pub async fn time_to_live(&self, id: i64, keys: bool) -> Result<Remaining, RuntimeError> {
        let view = self.handle.view();
        let Some(term) = leading(&view) else {
            return Ok(Remaining::NotLeader(view.leader));
        };
        let lease = self
            .handle
            .with_state(move |m| {
                m.kv().lease(id).map(|l| {
                    let keys = if keys { l.keys.iter().cloned().collect() } else { Vec::new() };
                    (l.granted_ttl, keys)
                })
            })
            .await?;
        let (granted_ttl, keys) = lease.unzip();
        let left = self.lock().left(term, id, granted_ttl, self.epoch.elapsed());
        Ok(match (left, granted_ttl) {
            (Some(left), Some(granted_ttl)) => {
                Remaining::Found(TimeToLive { ttl: left.as_secs() as i64, granted_ttl, keys: keys.unwrap_or_default() })
            }
            _ => Remaining::NotFound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_without_its_lease_neither_counts_down_nor_renews() {
        // A leader cut off from the others may have been deposed without
        // knowing it: its keep-alives would be unknown to the newer leader.
        let ballot = Ballot { round: 3, node: 1 };
        let view = ClusterView { leader: Some(1), ballot, hears_quorum: true, ..ClusterView::unknown(1) };
        assert_eq!(leading(&view), None);
        assert_eq!(leading(&ClusterView { holds_lease: true, ..view.clone() }), Some(ballot));
        // A follower never leads, lease or not.
        assert_eq!(leading(&ClusterView { leader: Some(2), holds_lease: true, ..view }), None);
    }

    #[test]
    fn a_new_term_starts_every_deadline_afresh() {
        let t0 = Duration::from_secs(100);
        let mut d = Deadlines::default();
        let b1 = Ballot { round: 1, node: 1 };
        let b2 = Ballot { round: 2, node: 2 };
        d.enter(Some(b1));
        d.get_or_start(7, 5, t0);
        assert_eq!(d.leases[&7].at, t0 + Duration::from_secs(5));
        // Same term: the deadline is kept, not restarted.
        d.enter(Some(b1));
        d.get_or_start(7, 5, t0 + Duration::from_secs(4));
        assert_eq!(d.leases[&7].at, t0 + Duration::from_secs(5));
        // Leadership lost and regained under a new ballot: restarted.
        d.enter(None);
        assert!(d.leases.is_empty());
        d.enter(Some(b2));
        let later = t0 + Duration::from_secs(4);
        d.get_or_start(7, 5, later);
        assert_eq!(d.leases[&7].at, later + Duration::from_secs(5));
    }
}
