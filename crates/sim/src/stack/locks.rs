//! Locks with one holder: clients take a lock as etcd's `concurrency.Mutex`
//! does (a key under a prefix, with a lease; the holder is the key created
//! first), and no two may believe they hold it at the same time.
//!
//! A locker believes it holds the lock from the linearizable read that
//! showed its key first until it sends the delete that releases it, or
//! until its lease may have run out: TTL after its last extension, as the
//! fastest clock may count it (a holder that cannot extend its lease must
//! assume the lock is gone by then, as etcd's clients do).

use std::collections::BTreeMap;

/// What a locker is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Waiting for a lease to be granted.
    Granting,
    /// Creating its key.
    Creating,
    /// Reading who holds the lock.
    Polling,
    /// Holding the lock, until the time given.
    Holding { until: u64 },
    /// Deleting its key.
    Releasing,
    /// Idle, starting again at the next step.
    Idle,
}

/// One locker.
#[derive(Debug)]
pub struct Locker {
    /// What it does now.
    pub step: Step,
    /// A request of it is in flight.
    pub busy: bool,
    /// Its lease: id and TTL in seconds.
    pub lease: Option<(i64, i64)>,
    /// When its lease was last extended: when it asked for the grant, or
    /// when a keep-alive was answered.
    pub renewed: u64,
    /// When it came to believe it holds the lock.
    pub since: Option<u64>,
    /// The member it asks.
    pub target: usize,
    /// When it sent its last request.
    pub asked: u64,
}

impl Locker {
    /// A locker about to start.
    pub fn new(target: usize) -> Locker {
        Locker { step: Step::Idle, busy: false, lease: None, renewed: 0, since: None, target, asked: 0 }
    }

    /// The key it creates under the lock's prefix.
    pub fn key(&self) -> Option<Vec<u8>> {
        self.lease.map(|(id, _)| format!("{PREFIX}{id:016x}").into_bytes())
    }

    /// Until when it may believe its lease lives: TTL after its last
    /// extension, as a clock running at `fastest_ppm` would count it.
    pub fn safe_until(&self, fastest_ppm: u64) -> u64 {
        let ttl = self.lease.map_or(0, |(_, ttl)| ttl.max(0) as u64) * 1_000_000;
        self.renewed + ttl * 1_000_000 / fastest_ppm
    }
}

/// The lock's prefix.
pub const PREFIX: &str = "lock/";
/// The end of the prefix's range.
pub const PREFIX_END: &str = "lock0";

/// The times each locker believed it held the lock.
#[derive(Default)]
pub struct Holdings {
    held: BTreeMap<u64, (usize, u64)>,
    /// Holdings checked.
    pub count: u64,
}

impl Holdings {
    /// Locker `who` believed it held the lock from `from` to `to`: no other
    /// belief may overlap it.
    pub fn held(&mut self, who: usize, from: u64, to: u64) -> Result<(), String> {
        self.count += 1;
        for (&start, &(other, end)) in &self.held {
            if other != who && start < to && from < end {
                return Err(format!(
                    "lockers {other} and {who} both held the lock: {} ms to {} ms and {} ms to {} ms",
                    start / 1000,
                    end / 1000,
                    from / 1000,
                    to / 1000
                ));
            }
        }
        self.held.insert(from, (who, to));
        Ok(())
    }
}
