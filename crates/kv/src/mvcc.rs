//! The multi-version key space: every key's revision history.
//!
//! Each key maps to its history, oldest first: a put entry per write and a
//! tombstone per delete. A second index maps each revision to the key it
//! changed, so watchers can replay a revision range and compaction touches
//! only the keys that changed since the last compaction. Both are B-trees, so
//! a write costs O(log n) and a read at any retained revision is a binary
//! search in one key's history.
//!
//! This module knows nothing of requests, leases or errors beyond revision
//! bounds; it must stay deterministic (no hashing with random seeds, no
//! clocks) because every replica applies the same writes to it.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::pb::{Event, EventType, KeyValue};
use crate::revision::Revision;

/// The value a put wrote, as stored in a history entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Live {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// One change of one key: a put (`live` is `Some`) or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub rev: Revision,
    pub live: Option<Live>,
}

impl Entry {
    /// The key-value this entry describes, as etcd reports it.
    pub fn to_kv(&self, key: &[u8], with_value: bool) -> KeyValue {
        match &self.live {
            Some(live) => KeyValue {
                key: key.to_vec(),
                create_revision: live.create_revision,
                mod_revision: self.rev.main,
                version: live.version,
                value: if with_value { live.value.clone() } else { Vec::new() },
                lease: live.lease,
            },
            // etcd records a delete as a bare key at the delete's revision.
            None => KeyValue { key: key.to_vec(), mod_revision: self.rev.main, ..KeyValue::default() },
        }
    }
}

/// The entry of `history` visible at revision `rev`: the last one at or
/// before it.
fn visible_at(history: &[Entry], rev: i64) -> Option<&Entry> {
    let idx = history.partition_point(|e| e.rev.main <= rev);
    idx.checked_sub(1).map(|i| &history[i])
}

/// An open write: the changes one write request makes at one main revision.
#[derive(Debug)]
pub(crate) struct Write {
    main: i64,
    events: Vec<Event>,
}

impl Write {
    /// The main revision this write's changes get.
    pub fn revision(&self) -> i64 {
        self.main
    }

    /// Whether the write has changed anything yet.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn next(&self) -> Revision {
        Revision { main: self.main, sub: self.events.len() as i64 }
    }
}

/// The key space with its full retained history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mvcc {
    keys: BTreeMap<Vec<u8>, Vec<Entry>>,
    by_rev: BTreeMap<Revision, Vec<u8>>,
    current: i64,
    compacted: i64,
    /// The logical size of every retained entry ([`entry_size`]), kept up
    /// to date by every put, delete and compaction.
    size: u64,
    /// Keys whose latest entry is a put (etcd's `keysGauge`), kept up to
    /// date by every put and delete (compaction keeps every key's latest
    /// live entry, so it changes nothing here).
    live: u64,
}

/// What one history entry of `key` counts towards the store's logical size:
/// its key and value bytes plus [`crate::quota::ENTRY_OVERHEAD`] for its
/// revision and metadata.
pub(crate) fn entry_size(key: &[u8], entry: &Entry) -> u64 {
    let value = entry.live.as_ref().map_or(0, |l| l.value.len());
    (key.len() + value) as u64 + crate::quota::ENTRY_OVERHEAD
}

impl Mvcc {
    /// An empty store: revision 1, never compacted (etcd's -1).
    pub fn new() -> Self {
        Mvcc { keys: BTreeMap::new(), by_rev: BTreeMap::new(), current: 1, compacted: -1, size: 0, live: 0 }
    }

    /// Rebuilds a store from histories (checked by the caller).
    pub fn from_parts(keys: BTreeMap<Vec<u8>, Vec<Entry>>, current: i64, compacted: i64) -> Self {
        let mut by_rev = BTreeMap::new();
        let mut size = 0;
        for (key, history) in &keys {
            for entry in history {
                by_rev.insert(entry.rev, key.clone());
                size += entry_size(key, entry);
            }
        }
        let live = keys.values().filter(|h| h.last().is_some_and(|e| e.live.is_some())).count() as u64;
        Mvcc { keys, by_rev, current, compacted, size, live }
    }

    /// The logical size of the retained history: [`entry_size`] summed
    /// over every entry. Deterministic, so equal on every replica; it drops
    /// when compaction forgets entries.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many keys are live (their latest change is a put).
    pub fn live_keys(&self) -> u64 {
        self.live
    }

    /// The revision of the last write that changed something.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The revision of the last compaction, -1 if none.
    pub fn compacted(&self) -> i64 {
        self.compacted
    }

    /// Every key with its retained history, in key order.
    pub fn histories(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<Entry>)> {
        self.keys.iter()
    }

    /// The histories of the keys in etcd's range `[key, range_end)`: one key
    /// if `range_end` is empty, every key from `key` on if it is `"\0"`.
    pub fn histories_in<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<Entry>)> + 'a {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = if range_end.is_empty() {
            (Bound::Included(key), Bound::Included(key))
        } else if range_end == [0] {
            (Bound::Included(key), Bound::Unbounded)
        } else if range_end <= key {
            // An empty interval; BTreeMap::range would panic on start > end.
            (Bound::Included(key), Bound::Excluded(key))
        } else {
            (Bound::Included(key), Bound::Excluded(range_end))
        };
        self.keys.range::<[u8], _>(bounds)
    }

    /// The live key-value pairs in `[key, range_end)` at revision `rev`, in
    /// key order, with the entry each comes from.
    pub fn live_in<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
        rev: i64,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Entry)> + 'a {
        self.histories_in(key, range_end).filter_map(move |(k, history)| match visible_at(history, rev) {
            Some(entry) if entry.live.is_some() => Some((k, entry)),
            _ => None,
        })
    }

    /// The latest value of `key`, if it is live (borrowed: no copy).
    pub fn latest(&self, key: &[u8]) -> Option<&Live> {
        self.keys.get(key)?.last()?.live.as_ref()
    }

    /// Opens a write at the next revision.
    pub fn begin(&self) -> Write {
        Write { main: self.current + 1, events: Vec::new() }
    }

    /// The revision reads inside `write` see: its own if it changed
    /// something, otherwise the current one.
    pub fn visible(&self, write: &Write) -> i64 {
        if write.is_empty() {
            self.current
        } else {
            write.main
        }
    }

    /// Closes a write: the revision advances only if something changed.
    /// Returns the write's events in the order of their sub revisions.
    pub fn commit(&mut self, write: Write) -> Vec<Event> {
        if !write.is_empty() {
            debug_assert_eq!(write.main, self.current + 1, "writes are applied one at a time");
            self.current = write.main;
        }
        write.events
    }

    /// Puts `key` in `write`; returns the key's previous live value.
    pub fn put(&mut self, write: &mut Write, key: &[u8], value: Vec<u8>, lease: i64) -> Option<KeyValue> {
        let rev = write.next();
        if !self.keys.contains_key(key) {
            self.keys.insert(key.to_vec(), Vec::new());
        }
        let history = self.keys.get_mut(key).expect("inserted above if missing");
        let prev = history.last().filter(|e| e.live.is_some()).map(|e| e.to_kv(key, true));
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            // A new key, or one re-created after a delete: a new generation.
            None => (rev.main, 1),
        };
        let entry = Entry { rev, live: Some(Live { value, create_revision, version, lease }) };
        let kv = entry.to_kv(key, true);
        self.size += entry_size(key, &entry);
        if prev.is_none() {
            self.live += 1;
        }
        history.push(entry);
        self.by_rev.insert(rev, key.to_vec());
        write.events.push(Event { r#type: EventType::Put.into(), kv: Some(kv), prev_kv: prev.clone() });
        prev
    }

    /// Deletes the live keys in `[key, range_end)` in `write`; returns the
    /// deleted key-values in key order.
    pub fn delete_range(&mut self, write: &mut Write, key: &[u8], range_end: &[u8]) -> Vec<KeyValue> {
        let visible = self.visible(write);
        let doomed: Vec<Vec<u8>> = self.live_in(key, range_end, visible).map(|(k, _)| k.clone()).collect();
        let mut deleted = Vec::with_capacity(doomed.len());
        for k in doomed {
            let rev = write.next();
            let history = self.keys.get_mut(&k).expect("a key just found live has a history");
            let prev = history.last().expect("a live key has an entry").to_kv(&k, true);
            let tombstone = Entry { rev, live: None };
            let kv = tombstone.to_kv(&k, true);
            self.size += entry_size(&k, &tombstone);
            self.live -= 1;
            history.push(tombstone);
            self.by_rev.insert(rev, k);
            write.events.push(Event { r#type: EventType::Delete.into(), kv: Some(kv), prev_kv: Some(prev.clone()) });
            deleted.push(prev);
        }
        deleted
    }

    /// Forgets history before `rev`: each key keeps its latest entry at or
    /// before `rev` unless that is a tombstone, and everything after.
    /// The caller has checked `compacted < rev <= current`.
    pub fn compact(&mut self, rev: i64) {
        debug_assert!(self.compacted < rev && rev <= self.current, "compaction bounds are checked by the caller");
        // Only keys changed since the last compaction can have entries to
        // drop: older keys already hold one retained entry at most.
        let from = Revision::first_of(self.compacted.saturating_add(1));
        let mut touched: Vec<Vec<u8>> =
            self.by_rev.range(from..=Revision::last_of(rev)).map(|(_, k)| k.clone()).collect();
        touched.sort();
        touched.dedup();
        for key in touched {
            let Some(history) = self.keys.get_mut(&key) else {
                continue;
            };
            let upto = history.partition_point(|e| e.rev.main <= rev);
            let keep_from = match history.get(upto.wrapping_sub(1)) {
                Some(e) if e.live.is_none() => upto,
                Some(_) => upto - 1,
                None => 0,
            };
            for dropped in history.drain(..keep_from) {
                self.by_rev.remove(&dropped.rev);
                self.size -= entry_size(&key, &dropped);
            }
            if history.is_empty() {
                self.keys.remove(&key);
            }
        }
        self.compacted = rev;
    }

    /// The events of revisions `from..=to` in revision order, each with the
    /// key's previous value when history still holds it.
    pub fn events(&self, from: i64, to: i64) -> Vec<Event> {
        if from > to {
            return Vec::new();
        }
        self.by_rev
            .range(Revision::first_of(from)..=Revision::last_of(to))
            .map(|(rev, key)| {
                let history = &self.keys[key];
                let idx = history
                    .binary_search_by(|e| e.rev.cmp(rev))
                    .expect("every indexed revision is in its key's history");
                let entry = &history[idx];
                let prev_kv =
                    idx.checked_sub(1).map(|i| &history[i]).filter(|p| p.live.is_some()).map(|p| p.to_kv(key, true));
                let kind = if entry.live.is_some() { EventType::Put } else { EventType::Delete };
                Event { r#type: kind.into(), kv: Some(entry.to_kv(key, true)), prev_kv }
            })
            .collect()
    }

    /// Every retained change at or before `rev`, in revision order, with
    /// whether it is the key's visible entry at `rev`.
    pub fn changes_upto(&self, rev: i64) -> impl Iterator<Item = (&Vec<u8>, &Entry, bool)> + '_ {
        self.by_rev.range(..=Revision::last_of(rev)).map(move |(r, key)| {
            let history = &self.keys[key];
            let idx =
                history.binary_search_by(|e| e.rev.cmp(r)).expect("every indexed revision is in its key's history");
            let visible = visible_at(history, rev).is_some_and(|v| v.rev == *r);
            (key, &history[idx], visible)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(m: &mut Mvcc, key: &str, value: &str) {
        let mut w = m.begin();
        m.put(&mut w, key.as_bytes(), value.as_bytes().to_vec(), 0);
        m.commit(w);
    }

    fn delete(m: &mut Mvcc, key: &str) {
        let mut w = m.begin();
        m.delete_range(&mut w, key.as_bytes(), &[]);
        m.commit(w);
    }

    #[test]
    fn compaction_frees_history_and_index_entries() {
        let mut m = Mvcc::new();
        for i in 0..100 {
            put(&mut m, "hot", &i.to_string());
        }
        put(&mut m, "gone", "x");
        delete(&mut m, "gone");
        assert_eq!(m.by_rev.len(), 102);

        m.compact(m.current());
        // One retained entry for the live key; the deleted key is forgotten.
        assert_eq!(m.keys.len(), 1);
        assert_eq!(m.keys[b"hot".as_slice()].len(), 1);
        assert_eq!(m.by_rev.len(), 1);
        assert_eq!(m.latest(b"hot").unwrap().version, 100);

        // A later compaction only visits what changed since the last one.
        put(&mut m, "hot", "new");
        m.compact(m.current());
        assert_eq!(m.by_rev.len(), 1);
        assert_eq!(m.latest(b"hot").unwrap().value, b"new");
    }

    #[test]
    fn size_counts_retained_entries_and_drops_after_compaction() {
        let mut m = Mvcc::new();
        assert_eq!(m.size(), 0);
        let one = 3 + 10 + crate::quota::ENTRY_OVERHEAD;
        for _ in 0..10 {
            put(&mut m, "key", "0123456789");
        }
        assert_eq!(m.size(), 10 * one);
        delete(&mut m, "key");
        assert_eq!(m.size(), 10 * one + 3 + crate::quota::ENTRY_OVERHEAD);
        let rebuilt = Mvcc::from_parts(m.keys.clone(), m.current(), m.compacted());
        assert_eq!(rebuilt.size(), m.size());
        m.compact(m.current());
        assert_eq!(m.size(), 0, "a deleted key is forgotten entirely");
    }

    #[test]
    fn live_keys_count_puts_of_new_keys_less_deletes_and_survive_compaction_and_rebuilds() {
        let mut m = Mvcc::new();
        put(&mut m, "a", "1");
        put(&mut m, "a", "2");
        put(&mut m, "b", "1");
        put(&mut m, "c", "1");
        assert_eq!(m.live_keys(), 3, "a second put of a key is not a new key");
        delete(&mut m, "b");
        assert_eq!(m.live_keys(), 2);
        put(&mut m, "b", "again");
        delete(&mut m, "c");
        assert_eq!(m.live_keys(), 2);
        let rebuilt = Mvcc::from_parts(m.keys.clone(), m.current(), m.compacted());
        assert_eq!(rebuilt.live_keys(), 2);
        m.compact(m.current());
        assert_eq!(m.live_keys(), 2);
    }

    #[test]
    fn reads_at_a_revision_pick_the_last_entry_at_or_before_it() {
        let mut m = Mvcc::new();
        put(&mut m, "k", "a"); // 2
        put(&mut m, "other", "x"); // 3
        put(&mut m, "k", "b"); // 4
        let at = |rev| m.live_in(b"k", &[], rev).map(|(_, e)| e.live.as_ref().unwrap().value.clone()).next();
        assert_eq!(at(1), None);
        assert_eq!(at(2), Some(b"a".to_vec()));
        assert_eq!(at(3), Some(b"a".to_vec()));
        assert_eq!(at(4), Some(b"b".to_vec()));
    }
}
