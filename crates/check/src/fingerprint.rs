//! State fingerprints: what two states must share to count as one.
//!
//! Always hashed: per node, every record handed to storage and how many
//! are durable, the stored snapshot and one being stored, the ticks left;
//! the messages in flight, link by link; the adversary's budgets; whether
//! an invariant broke. Per running replica, by [`Fingerprint`]:
//!
//! * `Exact` (the default): its whole state, through its `Debug` output
//!   (every field: log, promise, leader tallies, election state, timers,
//!   held replies). States merge only when equal, so the search is complete
//!   within its bounds.
//! * `Summary`: what the public API shows (clock, promise, log, commit and
//!   applied indexes, state machine, leadership, lease, configuration).
//!   States that differ only in what it leaves out merge, and only the
//!   first one reached is explored further: a violation reachable only
//!   from the other is missed.
//!
//! Either way every violation reported is real: its trace is replayed
//! action by action from the initial state.

use crate::model::{Fingerprint, State};
use std::fmt::{self, Write};
use std::hash::{Hash, Hasher};
use synod_paxos::{KvMachine, Replica};

/// Feeds `Debug` output straight into a hasher, without allocating: the
/// protocol's messages and records derive `Debug` (not `Hash`), and their
/// `Debug` output is canonical (no hash maps inside).
struct HashWriter<'a, H: Hasher>(&'a mut H);

impl<H: Hasher> Write for HashWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

fn debug_hash<H: Hasher>(h: &mut H, value: &impl fmt::Debug) {
    // Writing into a hasher cannot fail.
    let _ = write!(HashWriter(h), "{value:?}");
    h.write_u8(0xff);
}

/// Hash the summary of `s` described in the module docs.
pub(crate) fn state<H: Hasher>(s: &State, h: &mut H) {
    for n in &s.nodes {
        n.id.hash(h);
        n.started.hash(h);
        n.ticks_left.hash(h);
        n.durable.hash(h);
        n.disk.len().hash(h);
        for (lsn, record) in &n.disk {
            lsn.hash(h);
            debug_hash(h, record);
        }
        for snap in [&n.snapshot, &n.storing] {
            snap.as_ref().map(|s| (s.slot, &s.data)).hash(h);
        }
        let Some(r) = n.replica.as_ref() else {
            h.write_u8(0);
            continue;
        };
        h.write_u8(1);
        match s.fingerprint {
            Fingerprint::Exact => debug_hash(h, r),
            Fingerprint::Summary => summary(r, h),
        }
    }
    s.net.len().hash(h);
    for e in &s.net {
        e.from.hash(h);
        e.to.hash(h);
        debug_hash(h, &e.msg);
    }
    s.cut.hash(h);
    (s.crashes_left, s.drops_left, s.cuts_left, s.global_ticks_left, s.transfers_left).hash(h);
    (s.proposed, s.changes_asked, s.changes_chosen).hash(h);
    s.violation.is_some().hash(h);
}

fn summary<H: Hasher>(r: &Replica<KvMachine>, h: &mut H) {
    r.now().hash(h);
    r.promised().hash(h);
    r.commit_index().hash(h);
    r.applied_index().hash(h);
    r.log().compacted().hash(h);
    for (slot, e) in r.log().iter_from(0) {
        slot.hash(h);
        debug_hash(h, e);
    }
    h.write_u8(0xfe);
    debug_hash(h, &r.state_machine().map);
    r.is_leader().hash(h);
    r.leader_ballot().hash(h);
    r.leader_hint().hash(h);
    r.is_rejoining().hash(h);
    r.holds_lease().hash(h);
    debug_hash(h, r.membership());
    debug_hash(h, &r.pending_membership());
}
