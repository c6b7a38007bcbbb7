//! Configuration of one replica: one struct, documented defaults, validated
//! once when built.
//!
//! Time is counted in ticks of the replica's own logical clock (the runtime
//! turns wall-clock intervals into [`crate::Input::Tick`]s; the simulator
//! skews them). Nothing here reads a clock.

use crate::message::ENVELOPE_BYTES;
use crate::plant::Plant;
#[cfg(feature = "planting")]
use crate::plant::PlantedBug;
use crate::quorum::{QuorumError, QuorumPolicy};
use crate::reconfig::Membership;
use crate::types::NodeId;
use thiserror::Error;

/// Everything that shapes one replica's behaviour.
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica's id; must be one of `members`.
    pub id: NodeId,
    /// Every voting member (acceptor) of the cluster's initial
    /// configuration (this one included, unless it is a learner). Once
    /// membership changes are chosen the log, not this, says who votes.
    pub members: Vec<NodeId>,
    /// Non-voting members of the initial configuration. Default: none. A
    /// node joining a running cluster is started with the cluster's current
    /// voters as `members` and itself among `learners`.
    pub learners: Vec<NodeId>,
    /// Quorum sizes. Default: majorities.
    pub quorum: QuorumPolicy,
    /// A leader sends a heartbeat (commit index, lease renewal) this often.
    /// Default 1.
    pub heartbeat_ticks: u64,
    /// Length of one leader-election round: a node that has not heard a
    /// connected leader for a round bids. Default 10.
    pub election_ticks: u64,
    /// Up to this many extra ticks, drawn at random per round, so that rounds
    /// of different nodes drift apart. Default 3.
    pub election_jitter_ticks: u64,
    /// Among nodes that would bid in the same round, lower priorities defer
    /// to higher ones. Default 0.
    pub priority: u32,
    /// Unanswered Prepare, Accept and catch-up requests are resent after this
    /// many ticks. Default 3.
    pub retry_ticks: u64,
    /// Leader lease length; 0 disables leases (reads then always use a
    /// read-index round). Must be shorter than an election round so a failed
    /// leader's lease has run out when a successor is chosen. Default 8.
    pub lease_ticks: u64,
    /// Subtracted from the lease on the leader's side to allow for clocks
    /// running at different rates; must cover the worst drift over a lease.
    /// Default 2.
    pub lease_drift_margin_ticks: u64,
    /// A leadership transfer ([`crate::Input::TransferLeadership`]) that has
    /// not completed after this many ticks fails with
    /// [`crate::TransferError::Timeout`], and the leader (if it still leads)
    /// takes proposals again. Default 20 (two election rounds).
    pub transfer_timeout_ticks: u64,
    /// Most commands packed into one slot. Default 4096.
    pub max_batch: usize,
    /// Most payload bytes packed into one slot (a single larger command
    /// still gets a slot of its own). Default 4 MiB.
    pub max_batch_bytes: usize,
    /// Most slots a leader has in flight (proposed, not yet chosen); also
    /// α of the reconfiguration rule: a leader proposes in slot `s` only
    /// once every slot up to `s - max_inflight_slots` is chosen, and a
    /// configuration chosen in slot `i` governs slots from
    /// `i + max_inflight_slots` on. Every member must use the same value.
    /// Default 64.
    pub max_inflight_slots: usize,
    /// Most slots sent in one catch-up reply. Default 512.
    pub max_catchup_slots: usize,
    /// Most proposals buffered while no leader is known. Default 100_000.
    pub max_pending: usize,
    /// Take a snapshot (and compact the log) every this many applied
    /// slots; 0 never. Default 10_000.
    pub snapshot_every: u64,
    /// Bytes per snapshot chunk sent to a lagging learner. Default 1 MiB.
    pub snapshot_chunk: usize,
    /// The layout snapshots are written in. Default
    /// [`crate::SnapshotFormat::Flagged`], which every release reads; a
    /// cluster switches to [`crate::SnapshotFormat::V2`] only once every
    /// member runs a release that reads it (this one or later).
    pub snapshot_format: crate::SnapshotFormat,
    /// Most bytes of one message to a peer, as encoded: accepts, catch-up
    /// replies, forwarded commands and promises are cut to fit (see
    /// [`crate::message::value_size_bound`]), so this must not exceed the
    /// transport's frame limit. A value alone larger than this is sent on
    /// its own (and dropped by a transport that cannot carry it): callers
    /// keep commands well below it. Default 64 MiB less 64 KiB.
    pub max_message_bytes: usize,
    /// A snapshot received from a peer that declares more bytes than this
    /// is refused (it is buffered in memory while it arrives). Default
    /// 8 GiB.
    pub max_snapshot_bytes: u64,
    /// A client session (the last sequence number a client id had applied,
    /// which recognises its retries) unused for this many ticks is
    /// forgotten, so that clients that come and go cannot grow the
    /// duplicate-detection table without bound. The leader measures the
    /// idle time on its clock and puts the decision in the log
    /// ([`crate::Value::ExpireSessions`]), so every replica forgets the same
    /// sessions at the same slot; a session goes between one and one and a
    /// quarter of this after its last use. A command from a client without
    /// a session, made before the last expiry (its
    /// [`crate::Command::origin`]), is refused with
    /// [`crate::ClientError::SessionExpired`] rather than risk applying a
    /// retry twice, so this should outlast any client's retries by far: at
    /// least [`MIN_SESSION_EXPIRY_ROUNDS`] election rounds. Default 72 000 (one
    /// hour of the runtime's 50 ms ticks; etcd's clients retry for
    /// seconds).
    pub session_expiry_ticks: u64,
    /// Seeds the replica's random choices (election jitter).
    pub seed: u64,
    /// Simulator only: run with a deliberately broken rule. The field
    /// exists only with the `planting` feature, which production builds do
    /// not enable. Default: none.
    #[cfg(feature = "planting")]
    pub planted: Option<PlantedBug>,
}

/// Why a configuration was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `id` is not among `members`.
    #[error("node {id} is not a member of the cluster {members:?}")]
    NotAMember {
        /// This replica's id.
        id: NodeId,
        /// The members given.
        members: Vec<NodeId>,
    },
    /// A member id appears twice or is zero.
    #[error("member ids must be distinct and non-zero: {0:?}")]
    BadMembers(Vec<NodeId>),
    /// More members than the replica can track.
    #[error("at most 64 members are supported, got {0}")]
    TooManyMembers(usize),
    /// The quorum policy does not fit the members.
    #[error("quorum policy is for {policy} acceptors but there are {members} members")]
    QuorumSize {
        /// Acceptors the policy was built for.
        policy: usize,
        /// Members configured.
        members: usize,
    },
    /// Quorums that do not intersect.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    /// A timing parameter that cannot work.
    #[error("{0}")]
    Timing(&'static str),
}

/// [`Config::session_expiry_ticks`] must be at least this many election
/// rounds: twice the 20 rounds a replica keeps proposing its own unanswered
/// commands again to each new leader, so that no copy the protocol itself
/// holds outlives its client's session.
pub const MIN_SESSION_EXPIRY_ROUNDS: u64 = 40;

/// The largest window [`Config::max_inflight_slots`] may be: half the slot
/// lead an acceptor allows ([`crate::log::MAX_SLOT_LEAD`]).
pub const MAX_INFLIGHT_SLOTS: usize = (crate::log::MAX_SLOT_LEAD / 2) as usize;

impl Config {
    /// The defaults for replica `id` of a cluster of `members`, with majority
    /// quorums. Call [`Config::validate`] (or build a replica, which does)
    /// after changing fields.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Config {
        let n = members.len();
        Config {
            id,
            quorum: QuorumPolicy::majority(n.max(1)).unwrap_or(QuorumPolicy::unchecked(n, 1, 1)),
            members,
            learners: Vec::new(),
            heartbeat_ticks: 1,
            election_ticks: 10,
            election_jitter_ticks: 3,
            priority: 0,
            retry_ticks: 3,
            lease_ticks: 8,
            lease_drift_margin_ticks: 2,
            transfer_timeout_ticks: 20,
            max_batch: 4096,
            max_batch_bytes: 4 << 20,
            max_inflight_slots: 64,
            max_catchup_slots: 512,
            max_pending: 100_000,
            snapshot_every: 10_000,
            snapshot_chunk: 1 << 20,
            snapshot_format: crate::SnapshotFormat::Flagged,
            max_message_bytes: (64 << 20) - (64 << 10),
            max_snapshot_bytes: 8 << 30,
            session_expiry_ticks: 72_000,
            seed: id,
            #[cfg(feature = "planting")]
            planted: None,
        }
    }

    /// Replace majorities by flexible quorums, refused unless they intersect.
    pub fn with_quorums(mut self, q1: usize, q2: usize) -> Result<Config, ConfigError> {
        self.quorum = QuorumPolicy::flexible(self.members.len(), q1, q2)?;
        Ok(self)
    }

    /// Check every rule this struct documents.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut sorted: Vec<NodeId> = self.members.iter().chain(&self.learners).copied().collect();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.members.len() + self.learners.len() || sorted.first() == Some(&0) {
            return Err(ConfigError::BadMembers(self.members.clone()));
        }
        if sorted.len() > 64 {
            return Err(ConfigError::TooManyMembers(sorted.len()));
        }
        if !self.members.contains(&self.id) && !self.learners.contains(&self.id) {
            return Err(ConfigError::NotAMember { id: self.id, members: self.members.clone() });
        }
        if self.quorum.acceptors() != self.members.len() {
            return Err(ConfigError::QuorumSize { policy: self.quorum.acceptors(), members: self.members.len() });
        }
        QuorumPolicy::flexible(self.members.len(), self.quorum.phase1(), self.quorum.phase2())?;
        if self.heartbeat_ticks == 0
            || self.election_ticks == 0
            || self.retry_ticks == 0
            || self.transfer_timeout_ticks == 0
        {
            return Err(ConfigError::Timing(
                "heartbeat, election, retry and transfer intervals must be at least one tick",
            ));
        }
        if self.heartbeat_ticks >= self.election_ticks {
            return Err(ConfigError::Timing("heartbeats must be more frequent than election rounds"));
        }
        if self.lease_ticks > 0 && self.lease_drift_margin_ticks + self.heartbeat_ticks >= self.lease_ticks {
            return Err(ConfigError::Timing("the lease must be longer than its drift margin plus one heartbeat"));
        }
        if self.max_batch == 0
            || self.max_inflight_slots == 0
            || self.max_catchup_slots == 0
            || self.snapshot_chunk == 0
        {
            return Err(ConfigError::Timing("batch, window and catch-up sizes must be positive"));
        }
        if self.max_inflight_slots > MAX_INFLIGHT_SLOTS {
            // (The slot lead an acceptor allows must cover the window.)
            return Err(ConfigError::Timing("max_inflight_slots must be at most 32768"));
        }
        if self.session_expiry_ticks < MIN_SESSION_EXPIRY_ROUNDS.saturating_mul(self.election_ticks) {
            return Err(ConfigError::Timing(
                "session_expiry_ticks must be at least 40 election rounds: a client's retries must outlive leader changes",
            ));
        }
        let room = self.max_message_bytes.saturating_sub(ENVELOPE_BYTES);
        if self.snapshot_chunk > room || self.max_batch_bytes > room {
            return Err(ConfigError::Timing(
                "snapshot chunks and batches must fit in max_message_bytes, with room for the envelope",
            ));
        }
        Ok(())
    }

    /// Whether a bug is planted: always `false` without the `planting`
    /// feature, where nothing can be. A runtime refuses to start when this
    /// holds (a workspace build may unify the feature into it).
    pub fn has_planted_bug(&self) -> bool {
        self.plant().any()
    }

    /// The hooks of the bug planted, if any.
    pub(crate) fn plant(&self) -> Plant {
        Plant::of(self)
    }

    /// The initial configuration, as `members`, `learners` and `quorum`
    /// give it.
    pub(crate) fn initial_membership(&self) -> Membership {
        Membership {
            voters: self.members.clone(),
            learners: self.learners.clone(),
            q1: self.quorum.phase1(),
            q2: self.quorum.phase2(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::new(2, vec![1, 2, 3]).validate().unwrap();
        Config::new(1, vec![1]).validate().unwrap();
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let table: Vec<(Config, &str)> = vec![
            (Config::new(4, vec![1, 2, 3]), "not a member"),
            (Config::new(1, vec![1, 1, 2]), "distinct"),
            (Config::new(1, vec![0, 1, 2]), "distinct"),
            (Config { lease_ticks: 2, lease_drift_margin_ticks: 2, ..Config::new(1, vec![1, 2, 3]) }, "drift margin"),
            (Config { heartbeat_ticks: 10, ..Config::new(1, vec![1, 2, 3]) }, "heartbeats"),
            (Config { session_expiry_ticks: 399, ..Config::new(1, vec![1, 2, 3]) }, "session_expiry_ticks"),
            (Config { session_expiry_ticks: 0, ..Config::new(1, vec![1, 2, 3]) }, "session_expiry_ticks"),
        ];
        for (cfg, want) in table {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn flexible_quorums_that_miss_are_refused_at_configuration_time() {
        let err = Config::new(1, vec![1, 2, 3, 4, 5]).with_quorums(2, 3).unwrap_err();
        assert!(matches!(err, ConfigError::Quorum(QuorumError::NoIntersection { .. })));
        Config::new(1, vec![1, 2, 3, 4, 5]).with_quorums(4, 2).unwrap().validate().unwrap();
    }
}
