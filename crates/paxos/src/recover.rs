//! Recovery: the durable records replayed, in order, over the state a
//! stored snapshot restored.
//!
//! Replaying must never believe more than the records say: a commit index
//! stops at the first hole in the log, and a log whose head was deleted
//! must start with a checkpoint that goes with the snapshot given, or the
//! slots between would be lost. What the replica does once the records are
//! in (apply the chosen prefix, wait out a lease it may have granted, bid
//! above every ballot it may have used) is [`crate::Replica::recover`]'s.

use crate::ballot::Ballot;
use crate::io::RecoverError;
use crate::log::{Entry, Log};
use crate::record::{Lsn, Record};
use crate::rejoin::Rejoin;
use crate::types::Slot;

/// What the records restate: the acceptor's promise, the proposer's own
/// ballot, whether the replica is rejoining, the log, and the learner's
/// commit index (and the highest one heard of).
pub(crate) struct Durable<'a> {
    pub(crate) promised: &'a mut Ballot,
    pub(crate) own_ballot: &'a mut Ballot,
    pub(crate) rejoin: &'a mut Option<Rejoin>,
    pub(crate) log: &'a mut Log,
    pub(crate) commit: &'a mut Slot,
    pub(crate) known_commit: &'a mut Slot,
}

/// Replay `records` (in order, consecutive) over a state restored from the
/// snapshot at `snapshot_slot` (0: none). Returns the number of the first
/// record (1 if there is none) and of the last (0 if none).
pub(crate) fn replay(
    d: &mut Durable<'_>,
    snapshot_slot: Slot,
    records: impl IntoIterator<Item = (Lsn, Record)>,
) -> Result<(Lsn, Lsn), RecoverError> {
    let mut first_lsn: Lsn = 1;
    let mut prev: Option<Lsn> = None;
    let mut seen_checkpoint = false;
    for (lsn, record) in records {
        match prev {
            Some(p) if lsn != p + 1 => return Err(RecoverError::Gap { lsn, prev: p }),
            Some(_) => {}
            None => first_lsn = lsn,
        }
        if let Record::Checkpoint { snapshot_slot: cp, .. } = &record {
            // With the head of the log deleted, the first checkpoint must
            // go with a snapshot we have, or the slots between are lost.
            if !seen_checkpoint && first_lsn > 1 && *cp > snapshot_slot {
                return Err(RecoverError::CompactedPastSnapshot { checkpoint: *cp, snapshot: snapshot_slot });
            }
            seen_checkpoint = true;
        }
        prev = Some(lsn);
        d.apply(record);
    }
    if first_lsn > 1 && !seen_checkpoint {
        return Err(RecoverError::NoCheckpoint(first_lsn));
    }
    Ok((first_lsn, prev.unwrap_or(0)))
}

impl Durable<'_> {
    /// One record.
    fn apply(&mut self, record: Record) {
        match record {
            Record::Promised(b) => *self.promised = (*self.promised).max(b),
            Record::Accepted { ballot, first_slot, values } => {
                *self.promised = (*self.promised).max(ballot);
                for (i, value) in values.into_iter().enumerate() {
                    self.log.set(first_slot + i as Slot, Entry { ballot, value, chosen: false });
                }
            }
            Record::Chosen { first_slot, values } => {
                for (i, value) in values.into_iter().enumerate() {
                    let slot = first_slot + i as Slot;
                    self.log.set(slot, Entry { ballot: Ballot::ZERO, value, chosen: true });
                    self.log.mark_chosen(slot);
                }
            }
            Record::Ballot(b) => *self.own_ballot = (*self.own_ballot).max(b),
            Record::Rejoining => *self.rejoin = Some(Rejoin::default()),
            Record::Rejoined => *self.rejoin = None,
            Record::Checkpoint { snapshot_slot: _, promised, own_ballot, commit, entries } => {
                *self.promised = (*self.promised).max(promised);
                *self.own_ballot = (*self.own_ballot).max(own_ballot);
                for e in entries {
                    let chosen = e.chosen;
                    self.log.set(e.slot, Entry { ballot: e.ballot, value: e.value, chosen });
                    if chosen {
                        self.log.mark_chosen(e.slot);
                    }
                }
                self.mark_committed(commit);
            }
            // The values up to `c` are in earlier records (or the
            // snapshot); stop at any hole rather than believe a gap.
            Record::Commit(c) => self.mark_committed(c),
        }
        *self.known_commit = (*self.known_commit).max(*self.commit);
    }

    /// Move the commit index up to `commit`, stopping at the first slot
    /// the log does not hold.
    fn mark_committed(&mut self, commit: Slot) {
        for s in *self.commit + 1..=commit {
            if !self.log.mark_chosen(s) {
                break;
            }
            *self.commit = s;
        }
    }
}
