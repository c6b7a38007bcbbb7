//! Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012): instead of
//! every run mixing every fault at fixed rates, each seed draws its own
//! profile: which kinds of fault are on, how lossy and slow the network and
//! the disks are, whether clocks drift, and the protocol's own knobs (the
//! pipeline window α, batch size, snapshot interval and chunk size), plus
//! the load. A bug that needs many crashes and no message loss, or a
//! one-slot window with snapshots every few slots, is reached far more
//! often than when every fault always competes with every other one.
//!
//! The profile comes from its own random stream, derived from the seed, so
//! one seed still reproduces one run exactly, and runs without swarm
//! testing are unchanged.

use crate::world::TICK;
use std::fmt;

/// One run's draw: what is switched on, and how hard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Swarm {
    /// Crashes and failed fsyncs (restart from disk).
    pub crashes: bool,
    /// Lost and corrupted disks.
    pub disk_faults: bool,
    /// One node cut off both ways (often the leader).
    pub isolation: bool,
    /// One-way link cuts.
    pub one_way: bool,
    /// Random sets of links cut both ways.
    pub partial: bool,
    /// Messages dropped, per mille.
    pub drop_per_mille: u32,
    /// Messages duplicated, per mille.
    pub dup_per_mille: u32,
    /// Longest message delay, in simulator units.
    pub max_delay: u64,
    /// Longest time for a write to become durable, in simulator units.
    pub max_persist_delay: u64,
    /// Clocks run at different rates (up to 1.6x).
    pub skew: bool,
    /// The pipeline window, which is also α of the reconfiguration rule.
    pub max_inflight_slots: usize,
    /// Most commands in one slot.
    pub max_batch: usize,
    /// Slots between snapshots (0: never, so no compaction).
    pub snapshot_every: u64,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Random membership changes.
    pub reconfig: bool,
    /// Random leadership transfers.
    pub transfer: bool,
}

impl Swarm {
    /// The profile of `seed`.
    pub fn draw(seed: u64) -> Swarm {
        // A stream of its own: the run's stream starts from `seed` as always.
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5357_4152_4d21_0000);
        let mut pick = |choices: &[u64]| choices[rng.usize(0..choices.len())];
        // Each fault kind is on with probability 1/2; message faults and
        // timing from short menus that include the default.
        let on = |x: u64| x == 1;
        let crashes = on(pick(&[0, 1]));
        let disk_faults = on(pick(&[0, 1]));
        let isolation = on(pick(&[0, 1]));
        let one_way = on(pick(&[0, 1]));
        let partial = on(pick(&[0, 1]));
        Swarm {
            crashes,
            disk_faults,
            isolation,
            one_way,
            partial,
            drop_per_mille: pick(&[0, 10, 30, 100]) as u32,
            dup_per_mille: pick(&[0, 20, 100]) as u32,
            max_delay: pick(&[TICK / 2, 2 * TICK, 5 * TICK]),
            max_persist_delay: pick(&[TICK / 5, TICK, 3 * TICK]),
            skew: on(pick(&[0, 1])),
            max_inflight_slots: pick(&[1, 2, 4, 16]) as usize,
            max_batch: pick(&[1, 8, 64]) as usize,
            snapshot_every: pick(&[0, 5, 25, 200]),
            snapshot_chunk: pick(&[64, 256, 4096]) as usize,
            clients: pick(&[1, 5, 10]) as usize,
            keys: pick(&[1, 2, 5]) as usize,
            reconfig: on(pick(&[0, 1])),
            transfer: on(pick(&[0, 1])),
        }
    }

    /// Whether the fault the scheduler drew (by its kind) is switched on.
    pub(crate) fn allows(&self, kind: FaultKind) -> bool {
        match kind {
            FaultKind::Disk => self.disk_faults,
            FaultKind::Crash => self.crashes,
            FaultKind::Isolate => self.isolation,
            FaultKind::OneWay => self.one_way,
            FaultKind::Partial => self.partial,
            FaultKind::Heal => true,
        }
    }
}

/// The kinds of fault the scheduler injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Disk,
    Crash,
    Isolate,
    OneWay,
    Partial,
    Heal,
}

impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = [
            (self.crashes, "crash"),
            (self.disk_faults, "disk"),
            (self.isolation, "isolate"),
            (self.one_way, "one-way"),
            (self.partial, "partial"),
            (self.skew, "skew"),
            (self.reconfig, "reconfig"),
            (self.transfer, "transfer"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        write!(
            f,
            "on=[{}] drop={}‰ dup={}‰ delay<={} persist<={} alpha={} batch={} snapshot_every={} chunk={} clients={} keys={}",
            kinds.join(","),
            self.drop_per_mille,
            self.dup_per_mille,
            self.max_delay,
            self.max_persist_delay,
            self.max_inflight_slots,
            self.max_batch,
            self.snapshot_every,
            self.snapshot_chunk,
            self.clients,
            self.keys
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_one_profile_and_seeds_differ() {
        assert_eq!(Swarm::draw(7), Swarm::draw(7));
        let distinct: std::collections::HashSet<String> = (0..64).map(|s| Swarm::draw(s).to_string()).collect();
        assert!(distinct.len() > 32, "profiles vary with the seed");
    }
}
