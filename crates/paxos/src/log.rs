//! The replica's log: per slot, the value this replica accepted (as an
//! acceptor) or learned (as a learner), and whether it is known chosen.
//!
//! A chosen entry never changes: by Paxos's safety property every later
//! proposal for its slot carries the same value, so there is nothing newer
//! to take.

use crate::ballot::Ballot;
use crate::command::Value;
use crate::types::Slot;
use std::collections::VecDeque;

/// A replica stores an entry at most this many slots above its log's end
/// (the highest slot it holds, or its compaction point), and a promise
/// reports entries at most this many slots above the slot it starts from.
///
/// Why this never stops correct operation: a leader proposes in slot `s`
/// only once every slot up to `s - max_inflight_slots` is chosen, so an
/// acceptor that has kept up holds entries within that window (at most
/// 2^15, see [`crate::Config::validate`]) below any slot proposed to it. One
/// that fell further behind refuses to store the far slot and learns the
/// chosen ones first, by catch-up, which asks from its commit index on and
/// so never leaves a gap; the leader resends what it has not accepted. An
/// acceptor whose chosen prefix above a leader's phase-1 start spans more
/// than half of this reports that prefix as compacted (the leader catches
/// up before proposing), so honest promises stay well inside the window.
///
/// What it buys: the log is a dense array, and a forged slot number far
/// ahead (2^62, say) would otherwise allocate every slot up to it; now a
/// peer's message costs at most this many empty slots (a few MiB).
pub const MAX_SLOT_LEAD: Slot = 1 << 16;

/// No slot number above this is ever used or believed from a peer: at a
/// billion slots a second a log takes 146 years to get here, and every
/// `slot + n` the protocol computes stays far from `u64::MAX`.
pub const MAX_SLOT: Slot = 1 << 62;

/// One slot's state at this replica.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    /// Ballot the value was accepted in (`Ballot::ZERO` when it was learned
    /// through catch-up rather than accepted).
    pub ballot: Ballot,
    /// The value.
    pub value: Value,
    /// Known chosen.
    pub chosen: bool,
}

/// Entries by slot, densely stored from the first slot after the last
/// snapshot (slots at or below `compacted` live only in the snapshot).
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// Every slot up to here is covered by a snapshot and dropped.
    compacted: Slot,
    /// `entries[i]` is slot `compacted + 1 + i`.
    entries: VecDeque<Option<Entry>>,
}

impl Log {
    fn index(&self, slot: Slot) -> Option<usize> {
        usize::try_from(slot.checked_sub(self.compacted.checked_add(1)?)?).ok()
    }

    /// The entry at `slot`, if any (none at or below the compaction point).
    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        self.entries.get(self.index(slot)?)?.as_ref()
    }

    /// Every slot up to here is covered by a snapshot.
    pub fn compacted(&self) -> Slot {
        self.compacted
    }

    /// Whether the log would store an entry at `slot` (a higher one is
    /// refused): it lies at most [`MAX_SLOT_LEAD`] above the log's end.
    pub fn within_reach(&self, slot: Slot) -> bool {
        slot <= self.compacted.saturating_add(self.entries.len() as Slot).saturating_add(MAX_SLOT_LEAD)
    }

    /// Put `entry` at `slot`, unless the slot already holds a chosen entry
    /// or lies at or below the compaction point (then it is chosen already),
    /// or lies out of reach (callers check [`Log::within_reach`] first;
    /// this keeps a forged slot from allocating the slots up to it).
    pub(crate) fn set(&mut self, slot: Slot, entry: Entry) {
        debug_assert!(slot >= 1, "slots start at 1");
        if !self.within_reach(slot) {
            return;
        }
        let Some(i) = self.index(slot) else { return };
        if self.entries.len() <= i {
            self.entries.resize(i + 1, None);
        }
        match &self.entries[i] {
            Some(e) if e.chosen => {}
            _ => self.entries[i] = Some(entry),
        }
    }

    /// Mark the entry at `slot` chosen; false if there is none.
    pub(crate) fn mark_chosen(&mut self, slot: Slot) -> bool {
        let Some(i) = self.index(slot) else { return false };
        match self.entries.get_mut(i) {
            Some(Some(e)) => {
                e.chosen = true;
                true
            }
            _ => false,
        }
    }

    /// Drop every entry at or below `upto` (a snapshot covers them).
    pub(crate) fn compact(&mut self, upto: Slot) {
        if upto <= self.compacted {
            return;
        }
        let drop = usize::try_from(upto - self.compacted).unwrap_or(usize::MAX).min(self.entries.len());
        self.entries.drain(..drop);
        self.compacted = upto;
    }

    /// Highest slot that holds an entry, or the compaction point.
    pub fn last_slot(&self) -> Slot {
        let mut n = self.entries.len();
        while n > 0 && self.entries[n - 1].is_none() {
            n -= 1;
        }
        self.compacted + n as Slot
    }

    /// Entries from `from` on, with their slots.
    pub fn iter_from(&self, from: Slot) -> impl Iterator<Item = (Slot, &Entry)> {
        let base = self.compacted + 1;
        let skip = (from.saturating_sub(base) as usize).min(self.entries.len());
        self.entries
            .range(skip..)
            .enumerate()
            .filter_map(move |(i, e)| e.as_ref().map(|e| (base + (skip + i) as Slot, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(b: u64) -> Entry {
        Entry { ballot: Ballot::new(b, 1), value: Value::Noop, chosen: false }
    }

    #[test]
    fn compaction_drops_entries_and_keeps_slot_numbers() {
        let mut log = Log::default();
        for s in 1..=10 {
            log.set(s, e(s));
        }
        log.compact(4);
        assert_eq!(log.compacted(), 4);
        assert!(log.get(4).is_none());
        assert_eq!(log.get(5).unwrap().ballot, Ballot::new(5, 1));
        assert_eq!(log.last_slot(), 10);
        assert_eq!(log.iter_from(1).next().unwrap().0, 5);
        assert_eq!(log.iter_from(7).map(|(s, _)| s).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        log.set(3, e(99));
        assert!(log.get(3).is_none(), "compacted slots are never written again");
        log.compact(12);
        assert_eq!(log.last_slot(), 12);
        log.set(13, e(13));
        assert_eq!(log.get(13).unwrap().ballot, Ballot::new(13, 1));
    }

    #[test]
    fn a_slot_far_beyond_the_end_is_not_stored() {
        let mut log = Log::default();
        log.set(1 << 62, e(1));
        log.set(u64::MAX, e(1));
        log.set(MAX_SLOT_LEAD + 2, e(1));
        assert_eq!(log.last_slot(), 0);
        log.set(MAX_SLOT_LEAD, e(1));
        assert_eq!(log.last_slot(), MAX_SLOT_LEAD);
        assert!(log.within_reach(2 * MAX_SLOT_LEAD));
        assert!(!log.within_reach(2 * MAX_SLOT_LEAD + 1));
    }
}
