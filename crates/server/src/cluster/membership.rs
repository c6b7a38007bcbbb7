//! Acting on membership changes at every member.
//!
//! The protocol decides who votes and who learns (`synod_paxos::reconfig`);
//! the state machine records each member's name, client and peer URLs
//! ([`crate::state::machine::MemberAttributes`]). This task keeps the two joined up
//! on every member, woken by the replica's view of the cluster
//! ([`synod_runtime::ClusterView`]) whenever leadership or the membership
//! changes, and at most every `PERIOD` while only the applied index moves
//! (the records change only with applied entries; reading them for every
//! batch of a busy log would cost more than it is worth):
//!
//! * every member of the configuration in force or pending is a peer of the
//!   transport, at the address its recorded peer URL resolves to (a member
//!   just added, or one whose URL `MemberUpdate` changed);
//! * a member the log records as removed is no longer a peer, and its
//!   connections are told it was removed (absence from a configuration is
//!   not enough: a member catching up passes through older ones);
//! * the leader promotes a learner that was added as a voter (`MemberAdd`
//!   without `--learner`) as soon as it is in sync, so that a member never
//!   counts in a quorum with an empty log;
//! * a member that finds itself removed stops: the server exits with etcd's
//!   message. It knows from the log (the leader records the removal once the
//!   change is chosen) or from its peers, which answer a removed member's
//!   connections with "removed" (it may never learn the change itself: once
//!   it is in force nobody sends it the log). Being absent from a
//!   configuration is not enough: a member that joined passes through older
//!   configurations while it catches up.

use crate::config::Member;
use crate::context::Context;
use crate::state::machine::MemberAttributes;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_paxos::{Change, NodeId};
use synod_runtime::ClusterView;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

/// How often the records are looked at while nothing but the applied index
/// changes.
const PERIOD: Duration = Duration::from_millis(100);

/// How often the leader tries again to promote a learner not yet in sync.
const PROMOTION_RETRY: Duration = Duration::from_millis(500);

/// The members of the latest configuration and what the log records about
/// them.
#[derive(Clone, Debug)]
pub struct View {
    /// Voters of the latest configuration (a pending one if any).
    pub voters: Vec<NodeId>,
    /// Learners of the latest configuration.
    pub learners: Vec<NodeId>,
    /// Members of the configuration in force.
    pub in_force: Vec<NodeId>,
    /// Every member's record, removed ones included.
    pub records: BTreeMap<NodeId, MemberAttributes>,
}

impl View {
    /// This member's view now, and the replica's view of the cluster it
    /// was made from. The records are read first: the replica publishes
    /// its view before it answers, so the view read after them is at least
    /// as new (a membership change that returned is in it).
    pub async fn current(ctx: &Context) -> Result<(View, ClusterView), synod_runtime::Error> {
        let records = ctx.handle.with_state(|m| m.members()).await?;
        let cluster = ctx.handle.view();
        Ok((View::new(&cluster, records), cluster))
    }

    /// The view from the replica's view of the cluster and the state
    /// machine's records.
    pub fn new(cluster: &ClusterView, records: Vec<MemberAttributes>) -> View {
        let (voters, learners) = cluster.latest();
        View {
            voters,
            learners,
            in_force: cluster.members().collect(),
            records: records.into_iter().map(|r| (r.id, r)).collect(),
        }
    }

    /// Whether the log records `id` as removed.
    pub fn is_removed(&self, id: NodeId) -> bool {
        self.records.get(&id).is_some_and(|r| r.removed)
    }

    /// Members of the latest configuration, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// Whether `id` is in the latest configuration.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// `id`'s peer URLs: recorded, or from `--initial-cluster` for an
    /// initial member that has not published yet.
    pub fn peer_urls(&self, id: NodeId, initial: &[Member]) -> Vec<String> {
        match self.records.get(&id) {
            Some(r) if !r.peer_urls.is_empty() => r.peer_urls.clone(),
            _ => initial.iter().find(|m| m.id == id).map(|m| m.peer_urls.clone()).unwrap_or_default(),
        }
    }

    /// The member of the latest configuration (other than `except`) that
    /// has one of `urls` as a peer URL.
    pub fn peer_url_owner(&self, urls: &[String], initial: &[Member], except: NodeId) -> Option<NodeId> {
        self.members()
            .filter(|&id| id != except)
            .find(|&id| self.peer_urls(id, initial).iter().any(|u| urls.contains(u)))
    }

    /// An id for a new member: derived from its peer URLs, the cluster and
    /// the time, never one a member (current or removed) has had.
    pub fn fresh_id(&self, peer_urls: &[String], cluster_id: u64) -> NodeId {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut salt = nanos as u64;
        loop {
            let id = crate::ids::member_id(peer_urls, &format!("{cluster_id:x}/{salt:x}"));
            if !self.contains(id) && !self.records.contains_key(&id) && !self.in_force.contains(&id) {
                return id;
            }
            salt = salt.wrapping_add(1);
        }
    }
}

/// The first peer URL that resolves, as a socket address.
pub fn resolve_peer(urls: &[String]) -> Option<SocketAddr> {
    urls.iter().find_map(|u| crate::config::resolve("peer-urls", u).ok())
}

/// Keeps the transport's peers in step with the membership, promotes
/// learners added as voters (at the leader), and reports through `removed`
/// once this member is out of the cluster.
pub async fn keep(
    ctx: Arc<Context>,
    mut peers: BTreeMap<NodeId, SocketAddr>,
    mut stop: watch::Receiver<bool>,
    removed: oneshot::Sender<()>,
) {
    let mut last_promotion = Instant::now() - PROMOTION_RETRY;
    let mut resolved: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    let mut changes = ctx.handle.subscribe();
    loop {
        // Marked seen before looking: a view published while this round
        // acts wakes the next.
        let seen = changes.borrow_and_update().clone();
        let looked = tokio::time::Instant::now();
        let mut promotion_due = false;
        if let Ok((view, st)) = View::current(&ctx).await {
            if !act(&ctx, &view, &st, &mut peers, &mut resolved, &mut last_promotion).await {
                let _ = removed.send(());
                return;
            }
            promotion_due = st.is_leader() && st.pending.is_none() && promotable(&view).is_some();
        }
        // Wait for something to act on: a new view of the cluster, or the
        // time to try a promotion again.
        let retry = tokio::time::Instant::from_std(last_promotion + PROMOTION_RETRY);
        let replica_stopped = tokio::select! {
            changed = changes.changed() => changed.is_err(),
            _ = tokio::time::sleep_until(retry), if promotion_due => continue,
            _ = stop.wait_for(|s| *s) => return,
        };
        if replica_stopped {
            // The server is stopping (and says why): wait to be told.
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
        // Only the applied index moved: the records may have changed, but
        // look at them at most every PERIOD.
        let now = changes.borrow().clone();
        if now.leadership() == seen.leadership() && now.same_membership(&seen) {
            tokio::select! {
                _ = tokio::time::sleep_until(looked + PERIOD) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// A learner the log records as added as a voter, to promote once in sync.
fn promotable(view: &View) -> Option<NodeId> {
    view.learners.iter().find(|id| view.records.get(id).is_some_and(|r| r.promote)).copied()
}

/// Acts on one view: peers, removals, promotions. False once this member
/// is out of the cluster.
async fn act(
    ctx: &Context,
    view: &View,
    st: &ClusterView,
    peers: &mut BTreeMap<NodeId, SocketAddr>,
    resolved: &mut BTreeMap<NodeId, Vec<String>>,
    last_promotion: &mut Instant,
) -> bool {
    let me = ctx.member_id;
    // Out of the cluster? (Not merely absent from a configuration: a
    // member that joined passes through older ones while it catches up.)
    if view.is_removed(me) || st.removed {
        warn!(member = format_args!("{me:x}"), "this member was removed from the cluster; stopping");
        return false;
    }
    // Peers: everyone in the configurations that may still be used.
    let wanted: BTreeSet<NodeId> =
        view.members().chain(view.in_force.iter().copied()).filter(|&id| id != me && !view.is_removed(id)).collect();
    for &id in &wanted {
        // Resolve (possibly a DNS lookup) only when the URLs change.
        let urls = view.peer_urls(id, &ctx.members);
        if resolved.get(&id) == Some(&urls) {
            continue;
        }
        let Some(addr) = resolve_peer(&urls) else { continue };
        resolved.insert(id, urls);
        if peers.get(&id) != Some(&addr) {
            info!(peer = format_args!("{id:x}"), %addr, "peer address");
            if ctx.handle.set_peer(id, addr).await.is_ok() {
                peers.insert(id, addr);
            }
        }
    }
    // Only a member the log records as removed is cut off (and told so):
    // a member that catches up passes through configurations older than
    // the one it joined, without members it must keep talking to.
    let stale: Vec<NodeId> = peers.keys().filter(|&&id| view.is_removed(id) && id != me).copied().collect();
    for id in stale {
        info!(peer = format_args!("{id:x}"), "removed from the cluster; disconnecting");
        if ctx.handle.remove_peer(id).await.is_ok() {
            peers.remove(&id);
        }
    }
    // Learners added as voters are promoted once in sync.
    if st.is_leader() && st.pending.is_none() && last_promotion.elapsed() >= PROMOTION_RETRY {
        if let Some(id) = promotable(view) {
            *last_promotion = Instant::now();
            match ctx.handle.reconfigure(Change::PromoteLearner(id)).await {
                Ok(slot) => info!(member = format_args!("{id:x}"), slot, "promoted a member added as a voter"),
                Err(e) => tracing::debug!(member = format_args!("{id:x}"), error = %e, "not promoted yet"),
            }
        }
    }
    true
}
