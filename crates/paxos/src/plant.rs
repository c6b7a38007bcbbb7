//! Planted bugs: deliberately broken rules that the simulator and the model
//! checker switch on to show that their checkers catch each one.
//!
//! Everything that can break a rule is here, as one hook per bug that takes
//! the correct decision and returns the planted one; the core calls the hook
//! at the one place the rule is decided. The bugs exist only with the cargo
//! feature `planting`, which `synod-sim` and `synod-check` enable and the
//! runtime and the server must never enable: without it there is no
//! [`PlantedBug`], no `Config::planted`, and every hook is a constant that
//! keeps the correct rule (so the compiler removes it).

use crate::config::Config;
use crate::quorum::Quorum;
use crate::reconfig::Membership;
use crate::types::Slot;
#[cfg(feature = "planting")]
use std::borrow::Cow;

/// A deliberately broken rule, selectable only to show that the simulator's
/// checkers catch it (only with the `planting` feature).
#[cfg(feature = "planting")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlantedBug {
    /// Replies that depend on acceptor state leave before it is durable.
    SkipPersist,
    /// An acceptor accepts a ballot lower than the one it promised.
    AcceptLowerBallot,
    /// A new leader ignores values accepted in earlier ballots.
    IgnoreAcceptedValue,
    /// Both quorums are one smaller than the policy says.
    SmallQuorum,
    /// Leader leases allow no margin for clock drift.
    LeaseNoDriftMargin,
    /// A new configuration takes effect as soon as the leader proposes it,
    /// every change governs the very next slot (no α delay) and a new
    /// leader's phase 1 covers only the configuration in force where it
    /// starts, so quorums of the old and the new configuration need not
    /// intersect.
    ReconfigNoOverlap,
    /// Learners are sent phase 1 and phase 2 and counted in quorums.
    LearnerVotes,
    /// A leader handing leadership over keeps its lease (and keeps serving
    /// reads on it) instead of giving it up before it sends `TimeoutNow`.
    TransferKeepsLease,
}

#[cfg(feature = "planting")]
impl PlantedBug {
    /// Every planted bug, in the order the simulator runs them.
    pub const ALL: [PlantedBug; 8] = [
        PlantedBug::SkipPersist,
        PlantedBug::AcceptLowerBallot,
        PlantedBug::IgnoreAcceptedValue,
        PlantedBug::SmallQuorum,
        PlantedBug::LeaseNoDriftMargin,
        PlantedBug::ReconfigNoOverlap,
        PlantedBug::LearnerVotes,
        PlantedBug::TransferKeepsLease,
    ];

    /// The name used on the simulator's command line.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::SkipPersist => "skip-persist",
            PlantedBug::AcceptLowerBallot => "accept-lower-ballot",
            PlantedBug::IgnoreAcceptedValue => "ignore-accepted-value",
            PlantedBug::SmallQuorum => "small-quorum",
            PlantedBug::LeaseNoDriftMargin => "lease-no-drift-margin",
            PlantedBug::ReconfigNoOverlap => "reconfig-no-overlap",
            PlantedBug::LearnerVotes => "learner-votes",
            PlantedBug::TransferKeepsLease => "transfer-keeps-lease",
        }
    }

    /// The bug with that command-line name.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The broken rule in force, if any: always none without the `planting`
/// feature.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Plant {
    #[cfg(feature = "planting")]
    bug: Option<PlantedBug>,
}

/// Whether `$plant` plants `$bug`: `false` without the feature.
macro_rules! planted {
    ($plant:expr, $bug:ident) => {{
        #[cfg(feature = "planting")]
        let on = $plant.bug == Some(PlantedBug::$bug);
        #[cfg(not(feature = "planting"))]
        let on = {
            let _ = $plant;
            false
        };
        on
    }};
}

impl Plant {
    /// The bug `cfg` plants.
    pub(crate) fn of(cfg: &Config) -> Plant {
        #[cfg(feature = "planting")]
        let plant = Plant { bug: cfg.planted };
        #[cfg(not(feature = "planting"))]
        let plant = {
            let _ = cfg;
            Plant {}
        };
        plant
    }

    /// Whether any bug is planted.
    pub(crate) fn any(self) -> bool {
        #[cfg(feature = "planting")]
        let any = self.bug.is_some();
        #[cfg(not(feature = "planting"))]
        let any = false;
        any
    }

    /// How `m`'s quorums are counted: `small-quorum` takes one from each
    /// size, `learner-votes` counts the learners too.
    pub(crate) fn quorum(self, m: &Membership) -> Quorum<'_> {
        let quorum = m.quorum();
        #[cfg(feature = "planting")]
        let quorum = {
            let voters: Cow<'_, [crate::ballot::NodeId]> =
                if planted!(self, LearnerVotes) { Cow::Owned(m.members().collect()) } else { Cow::Borrowed(&m.voters) };
            let (q1, q2) = (quorum.phase1_size(), quorum.phase2_size());
            let (q1, q2) = if planted!(self, SmallQuorum) {
                (q1.saturating_sub(1).max(1), q2.saturating_sub(1).max(1))
            } else {
                (q1, q2)
            };
            Quorum::from_parts(voters, q1, q2)
        };
        quorum
    }

    /// How connectivity to `m` is counted (leader election, and the strict
    /// check that a new configuration's quorum is reachable): only
    /// `small-quorum` changes it. (`learner-votes` is about Paxos's
    /// quorums, not about whom election hears.)
    pub(crate) fn connectivity(self, m: &Membership) -> Quorum<'_> {
        let quorum = m.quorum();
        #[cfg(feature = "planting")]
        let quorum = if planted!(self, SmallQuorum) {
            let (q1, q2) = (quorum.phase1_size(), quorum.phase2_size());
            Quorum::from_parts(Cow::Borrowed(&m.voters), q1.saturating_sub(1).max(1), q2.saturating_sub(1).max(1))
        } else {
            quorum
        };
        quorum
    }

    /// `skip-persist`: a reply leaves before the records it depends on are
    /// durable.
    pub(crate) fn skip_persist(self) -> bool {
        planted!(self, SkipPersist)
    }

    /// `accept-lower-ballot`: an acceptor accepts below its promise.
    pub(crate) fn accept_lower_ballot(self) -> bool {
        planted!(self, AcceptLowerBallot)
    }

    /// `ignore-accepted-value`: phase 1 forgets what the promises reported.
    pub(crate) fn ignore_accepted_value(self) -> bool {
        planted!(self, IgnoreAcceptedValue)
    }

    /// `lease-no-drift-margin`: the leader's side of a lease allows no
    /// drift.
    pub(crate) fn lease_drift_margin(self, margin: u64) -> u64 {
        if planted!(self, LeaseNoDriftMargin) {
            0
        } else {
            margin
        }
    }

    /// `reconfig-no-overlap`: a change is in force once proposed, governs
    /// the next slot (α of 1), and phase 1 covers only the configuration in
    /// force.
    pub(crate) fn reconfig_no_overlap(self) -> bool {
        planted!(self, ReconfigNoOverlap)
    }

    /// α of the reconfiguration rule: `window`, or 1 under
    /// `reconfig-no-overlap`.
    pub(crate) fn alpha(self, window: Slot) -> Slot {
        if self.reconfig_no_overlap() {
            1
        } else {
            window
        }
    }

    /// `transfer-keeps-lease`: a leader handing over keeps its lease.
    pub(crate) fn transfer_keeps_lease(self) -> bool {
        planted!(self, TransferKeepsLease)
    }
}

#[cfg(all(test, feature = "planting"))]
mod tests {
    use super::*;

    #[test]
    fn planted_bug_names_round_trip() {
        for b in PlantedBug::ALL {
            assert_eq!(PlantedBug::from_name(b.name()), Some(b));
        }
        assert_eq!(PlantedBug::from_name("nope"), None);
    }

    #[test]
    fn the_quorum_bugs_wrap_the_counting_and_nothing_else_does() {
        let m = Membership { voters: vec![1, 2, 3], learners: vec![4], q1: 2, q2: 2 };
        let with = |bug| Plant { bug: Some(bug) }.quorum(&m).into_owned();
        assert_eq!(Plant::default().quorum(&m), m.quorum());
        assert_eq!(with(PlantedBug::SkipPersist), m.quorum());
        let small = with(PlantedBug::SmallQuorum);
        assert!(small.is_phase1(&[1]) && small.is_phase2(&[3]), "one short of a majority");
        let learners = with(PlantedBug::LearnerVotes);
        assert!(learners.is_phase2(&[1, 4]), "a learner counted");
        assert!(!m.quorum().is_phase2(&[1, 4]));
        let hears = |bug| Plant { bug: Some(bug) }.connectivity(&m).into_owned();
        assert_eq!(hears(PlantedBug::LearnerVotes), m.quorum(), "election does not count learners");
        assert!(hears(PlantedBug::SmallQuorum).is_connected(&[2]));
    }
}

#[cfg(all(test, not(feature = "planting")))]
mod tests {
    use super::*;

    #[test]
    fn without_the_feature_nothing_is_planted() {
        let plant = Plant::of(&Config::new(1, vec![1, 2, 3]));
        assert!(!plant.any());
        assert!(!plant.skip_persist() && !plant.accept_lower_ballot() && !plant.ignore_accepted_value());
        assert!(!plant.reconfig_no_overlap() && !plant.transfer_keeps_lease());
        assert_eq!((plant.lease_drift_margin(5), plant.alpha(64)), (5, 64));
        let m = Membership { voters: vec![1, 2, 3], learners: vec![4], q1: 2, q2: 2 };
        assert_eq!(plant.quorum(&m), m.quorum());
        assert_eq!(plant.connectivity(&m), m.quorum());
    }
}
