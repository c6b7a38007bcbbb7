//! The lease table: which leases exist and which keys each one holds.
//!
//! Time never enters here. A lease is granted with a TTL that the leader's
//! lease keeper counts down; when it runs out the leader proposes a revoke,
//! and every replica applies that revoke at the same slot.
//!
//! Invariant: every live key whose `lease` field is non-zero is in the key
//! set of that lease, and that lease exists (a revoke deletes its keys).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Config, MAX_LEASE_TTL};
use crate::error::KvError;

/// One lease as the state machine knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The TTL it was granted, in seconds (after raising to the minimum).
    pub granted_ttl: i64,
    /// The keys attached to it, in key order.
    pub keys: BTreeSet<Vec<u8>>,
}

/// All leases, by ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Leases {
    leases: BTreeMap<i64, Lease>,
    /// The next candidate for a lease granted with ID 0.
    next_id: i64,
}

impl Default for Leases {
    fn default() -> Self {
        Leases { leases: BTreeMap::new(), next_id: 1 }
    }
}

impl Leases {
    /// Rebuilds the table from `(id, granted_ttl)` pairs; keys are attached after.
    pub fn from_parts(leases: impl IntoIterator<Item = (i64, i64)>, next_id: i64) -> Self {
        Leases {
            leases: leases
                .into_iter()
                .map(|(id, ttl)| (id, Lease { granted_ttl: ttl, keys: BTreeSet::new() }))
                .collect(),
            next_id,
        }
    }

    pub fn next_id(&self) -> i64 {
        self.next_id
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &Lease)> {
        self.leases.iter().map(|(id, l)| (*id, l))
    }

    /// Grants a lease; ID 0 asks the state machine to choose one, which it
    /// does deterministically (the lowest free ID from a counter).
    /// Returns the ID and the granted TTL.
    pub fn grant(&mut self, id: i64, ttl: i64, config: &Config) -> Result<(i64, i64), KvError> {
        if ttl > MAX_LEASE_TTL {
            return Err(KvError::LeaseTtlTooLarge);
        }
        let id = if id == 0 {
            while self.leases.contains_key(&self.next_id) || self.next_id == 0 {
                self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            }
            let id = self.next_id;
            // Never hand out the same id again soon after a revoke: state
            // kept about the old lease (a leader's deadline) must not carry
            // over to a new one.
            self.next_id = id.checked_add(1).unwrap_or(1);
            id
        } else if self.leases.contains_key(&id) {
            return Err(KvError::LeaseExists);
        } else {
            id
        };
        let granted_ttl = ttl.max(config.min_lease_ttl);
        self.leases.insert(id, Lease { granted_ttl, keys: BTreeSet::new() });
        Ok((id, granted_ttl))
    }

    /// Removes a lease, returning the keys it held.
    pub fn remove(&mut self, id: i64) -> Option<Lease> {
        self.leases.remove(&id)
    }

    /// Records that `key` is held by lease `id` (0: no lease).
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if id == 0 {
            return;
        }
        let lease = self.leases.get_mut(&id).unwrap_or_else(|| {
            panic!("invariant broken: attach to lease {id} which does not exist (puts check leases first)")
        });
        lease.keys.insert(key.to_vec());
    }

    /// Records that `key` is no longer held by lease `id` (0: no lease).
    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
    }
}
