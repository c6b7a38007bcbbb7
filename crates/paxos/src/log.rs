//! The replica's log: per slot, the value this replica accepted (as an
//! acceptor) or learned (as a learner), and whether it is known chosen.
//!
//! A chosen entry never changes: by Paxos's safety property every later
//! proposal for its slot carries the same value, so there is nothing newer
//! to take.

use crate::ballot::Ballot;
use crate::command::{Slot, Value};
use std::collections::VecDeque;

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

/// Entries by slot, densely stored from slot 1.
#[derive(Clone, Debug, Default)]
pub struct Log {
    entries: VecDeque<Option<Entry>>,
}

impl Log {
    /// The entry at `slot`, if any.
    pub fn get(&self, slot: Slot) -> Option<&Entry> {
        let i = usize::try_from(slot.checked_sub(1)?).ok()?;
        self.entries.get(i)?.as_ref()
    }

    /// Put `entry` at `slot`, unless the slot already holds a chosen entry.
    pub(crate) fn set(&mut self, slot: Slot, entry: Entry) {
        debug_assert!(slot >= 1, "slots start at 1");
        let i = (slot - 1) as usize;
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
        let i = (slot - 1) as usize;
        match self.entries.get_mut(i) {
            Some(Some(e)) => {
                e.chosen = true;
                true
            }
            _ => false,
        }
    }

    /// Highest slot that holds an entry, or 0.
    pub fn last_slot(&self) -> Slot {
        let mut n = self.entries.len();
        while n > 0 && self.entries[n - 1].is_none() {
            n -= 1;
        }
        n as Slot
    }

    /// Entries from `from` on, with their slots.
    pub fn iter_from(&self, from: Slot) -> impl Iterator<Item = (Slot, &Entry)> {
        let skip = (from.saturating_sub(1) as usize).min(self.entries.len());
        self.entries
            .range(skip..)
            .enumerate()
            .filter_map(move |(i, e)| e.as_ref().map(|e| ((skip + i) as Slot + 1, e)))
    }
}
