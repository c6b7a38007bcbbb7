//! Snapshots: the whole state as bytes, and back.
//!
//! The encoding is protobuf with every collection written in key or ID
//! order, so two replicas in the same state produce the same bytes. Lease
//! key sets and the revision index are derived data and are rebuilt on
//! restore. The configuration is not part of a snapshot.

use std::collections::BTreeMap;

use prost::Message;

use crate::config::{Config, MAX_LEASE_TTL};
use crate::error::SnapshotError;
use crate::lease::Leases;
use crate::mvcc::{Entry, Live, Mvcc};
use crate::revision::Revision;
use crate::state::KvState;

const FORMAT: u32 = 1;

#[derive(Clone, PartialEq, Message)]
struct SnapshotPb {
    #[prost(uint32, tag = "1")]
    format: u32,
    #[prost(int64, tag = "2")]
    revision: i64,
    #[prost(int64, tag = "3")]
    compact_revision: i64,
    #[prost(int64, tag = "4")]
    next_lease_id: i64,
    #[prost(message, repeated, tag = "5")]
    keys: Vec<KeyPb>,
    #[prost(message, repeated, tag = "6")]
    leases: Vec<LeasePb>,
}

#[derive(Clone, PartialEq, Message)]
struct KeyPb {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<EntryPb>,
}

#[derive(Clone, PartialEq, Message)]
struct EntryPb {
    #[prost(int64, tag = "1")]
    main: i64,
    #[prost(int64, tag = "2")]
    sub: i64,
    #[prost(bool, tag = "3")]
    tombstone: bool,
    #[prost(bytes = "vec", tag = "4")]
    value: Vec<u8>,
    #[prost(int64, tag = "5")]
    create_revision: i64,
    #[prost(int64, tag = "6")]
    version: i64,
    #[prost(int64, tag = "7")]
    lease: i64,
}

#[derive(Clone, PartialEq, Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    granted_ttl: i64,
}

impl KvState {
    /// The whole state as bytes; equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let keys = self
            .mvcc
            .histories()
            .map(|(key, history)| KeyPb {
                key: key.clone(),
                entries: history
                    .iter()
                    .map(|e| {
                        let live = e.live.clone().unwrap_or(Live {
                            value: Vec::new(),
                            create_revision: 0,
                            version: 0,
                            lease: 0,
                        });
                        EntryPb {
                            main: e.rev.main,
                            sub: e.rev.sub,
                            tombstone: e.live.is_none(),
                            value: live.value,
                            create_revision: live.create_revision,
                            version: live.version,
                            lease: live.lease,
                        }
                    })
                    .collect(),
            })
            .collect();
        SnapshotPb {
            format: FORMAT,
            revision: self.mvcc.current(),
            compact_revision: self.mvcc.compacted(),
            next_lease_id: self.leases.next_id(),
            keys,
            leases: self.leases.iter().map(|(id, l)| LeasePb { id, granted_ttl: l.granted_ttl }).collect(),
        }
        .encode_to_vec()
    }

    /// Rebuilds a state from [`KvState::snapshot`] bytes, checking the
    /// invariants the store relies on.
    pub fn restore(config: Config, bytes: &[u8]) -> Result<KvState, SnapshotError> {
        let snap = SnapshotPb::decode(bytes)?;
        if snap.format != FORMAT {
            return Err(SnapshotError::Format(snap.format));
        }
        if snap.revision < 1 || snap.compact_revision < -1 || snap.compact_revision > snap.revision {
            return Err(SnapshotError::Corrupt("revisions out of order"));
        }
        let mut keys = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for k in snap.keys {
            if k.entries.is_empty() {
                return Err(SnapshotError::Corrupt("key without history"));
            }
            let mut history = Vec::with_capacity(k.entries.len());
            for e in k.entries {
                let rev = Revision { main: e.main, sub: e.sub };
                if rev.main < 1 || rev.main > snap.revision || rev.sub < 0 || !seen.insert(rev) {
                    return Err(SnapshotError::Corrupt("entry revision out of range or repeated"));
                }
                if history.last().is_some_and(|p: &Entry| p.rev >= rev) {
                    return Err(SnapshotError::Corrupt("key history out of order"));
                }
                history.push(Entry {
                    rev,
                    live: (!e.tombstone).then_some(Live {
                        value: e.value,
                        create_revision: e.create_revision,
                        version: e.version,
                        lease: e.lease,
                    }),
                });
            }
            if keys.insert(k.key, history).is_some() {
                return Err(SnapshotError::Corrupt("key repeated"));
            }
        }
        let leases = snap.leases.iter().map(|l| (l.id, l.granted_ttl));
        let (mvcc, leases) = assemble(keys, snap.revision, snap.compact_revision, leases, snap.next_lease_id)?;
        Ok(KvState { mvcc, leases, config })
    }

    /// Every retained change of every key, in revision order: what
    /// [`KvState::from_history`] takes back, and what another store's
    /// backup format (etcd's `key` bucket) is written from.
    pub fn history(&self) -> impl Iterator<Item = (&[u8], HistoryEntry)> + '_ {
        self.mvcc.changes_upto(self.mvcc.current()).map(|(key, entry, _)| {
            let put = entry.live.as_ref().map(|l| StoredPut {
                value: l.value.clone(),
                create_revision: l.create_revision,
                version: l.version,
                lease: l.lease,
            });
            (key.as_slice(), HistoryEntry { revision: entry.rev, put })
        })
    }

    /// Builds a store from a history kept elsewhere (an etcd backend being
    /// migrated), treating it as untrusted: every revision in range and
    /// unique, each key's changes forming etcd's generations (a put after a
    /// delete starts at version 1 with its own revision as the create
    /// revision; a put after a put keeps the create revision and adds one to
    /// the version), leases with IDs other than 0 and TTLs etcd grants, and
    /// every live key's lease present. Then it compacts at
    /// `history.compact_revision` (when at least 1), which forgets exactly
    /// what a compaction there forgets, so a history that already had it
    /// done is kept whole.
    pub fn from_history(config: Config, history: History) -> Result<KvState, SnapshotError> {
        let History { revision, compact_revision, entries, leases } = history;
        if revision < 1 || revision == i64::MAX || compact_revision < -1 || compact_revision > revision {
            return Err(SnapshotError::Corrupt("revisions out of order"));
        }
        if leases.iter().any(|&(id, ttl)| id == 0 || !(1..=MAX_LEASE_TTL).contains(&ttl)) {
            return Err(SnapshotError::Corrupt("lease with ID 0 or a TTL out of range"));
        }
        let mut keys: BTreeMap<Vec<u8>, Vec<Entry>> = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for (key, e) in entries {
            let rev = e.revision;
            if rev.main < 1 || rev.main > revision || rev.sub < 0 || !seen.insert(rev) {
                return Err(SnapshotError::Corrupt("entry revision out of range or repeated"));
            }
            if let Some(p) = &e.put {
                if !(1..=rev.main).contains(&p.create_revision) || !(1..=rev.main).contains(&p.version) {
                    return Err(SnapshotError::Corrupt("create revision or version out of range"));
                }
            }
            let live = e.put.map(|p| Live {
                value: p.value,
                create_revision: p.create_revision,
                version: p.version,
                lease: p.lease,
            });
            keys.entry(key).or_default().push(Entry { rev, live });
        }
        for history in keys.values_mut() {
            history.sort_by_key(|e| e.rev);
            for pair in history.windows(2) {
                let next_ok = match (&pair[0].live, &pair[1].live) {
                    (Some(p), Some(n)) => n.create_revision == p.create_revision && n.version == p.version + 1,
                    (None, Some(n)) => n.create_revision == pair[1].rev.main && n.version == 1,
                    (Some(_), None) => true,
                    (None, None) => false,
                };
                if !next_ok {
                    return Err(SnapshotError::Corrupt("a key's changes do not form generations"));
                }
            }
        }
        let (mut mvcc, leases) = assemble(keys, revision, -1, leases.into_iter(), 1)?;
        if compact_revision >= 1 {
            mvcc.compact(compact_revision);
        }
        Ok(KvState { mvcc, leases, config })
    }
}

/// Checks what every way of building a store relies on and puts it
/// together: no lease with ID 0 or listed twice, every live key held by an
/// existing lease (attached to it).
fn assemble(
    keys: BTreeMap<Vec<u8>, Vec<Entry>>,
    revision: i64,
    compact_revision: i64,
    leases: impl ExactSizeIterator<Item = (i64, i64)>,
    next_lease_id: i64,
) -> Result<(Mvcc, Leases), SnapshotError> {
    let listed = leases.len();
    let mut leases = Leases::from_parts(leases, next_lease_id);
    if leases.iter().count() != listed || leases.contains(0) {
        return Err(SnapshotError::Corrupt("duplicate or zero lease id"));
    }
    for (key, history) in &keys {
        if let Some(Live { lease, .. }) = history.last().and_then(|e| e.live.as_ref()) {
            if *lease != 0 && !leases.contains(*lease) {
                return Err(SnapshotError::Corrupt("live key held by a missing lease"));
            }
            leases.attach(*lease, key);
        }
    }
    Ok((Mvcc::from_parts(keys, revision, compact_revision), leases))
}

/// A put as a history stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPut {
    /// The value written.
    pub value: Vec<u8>,
    /// The revision that created the key's current generation.
    pub create_revision: i64,
    /// Puts in this generation so far, this one included.
    pub version: i64,
    /// The lease holding the key, 0 for none.
    pub lease: i64,
}

/// One retained change of one key: a put, or a delete (tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its revision; the main revision is the key's mod revision.
    pub revision: Revision,
    /// What the put wrote; `None` for a delete.
    pub put: Option<StoredPut>,
}

/// A whole store's history, for [`KvState::from_history`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The store's current revision (1 for an empty, unwritten store).
    pub revision: i64,
    /// The revision compacted at; -1 if never.
    pub compact_revision: i64,
    /// Every retained change of every key, in any order.
    pub entries: Vec<(Vec<u8>, HistoryEntry)>,
    /// Every lease: ID and granted TTL in seconds.
    pub leases: Vec<(i64, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest};
    use crate::Command;

    fn put(kv: &mut KvState, key: &str, value: &str, lease: i64) {
        let req = PutRequest { key: key.into(), value: value.into(), lease, ..Default::default() };
        kv.apply(Command::Put(req)).unwrap();
    }

    fn store() -> KvState {
        let mut kv = KvState::default();
        kv.apply(Command::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 7 })).unwrap();
        put(&mut kv, "a", "1", 0);
        put(&mut kv, "b", "2", 0);
        put(&mut kv, "a", "3", 0);
        kv.apply(Command::DeleteRange(DeleteRangeRequest { key: b"b".to_vec(), ..Default::default() })).unwrap();
        put(&mut kv, "b", "4", 7);
        kv.apply(Command::Compact(CompactionRequest { revision: 4, ..Default::default() })).unwrap();
        put(&mut kv, "a", "5", 0);
        kv
    }

    fn history_of(kv: &KvState) -> History {
        History {
            revision: kv.revision(),
            compact_revision: kv.compact_revision(),
            entries: kv.history().map(|(k, e)| (k.to_vec(), e)).collect(),
            leases: kv.leases().map(|(id, l)| (id, l.granted_ttl)).collect(),
        }
    }

    #[test]
    fn a_store_rebuilt_from_its_history_is_the_same_store() {
        let kv = store();
        let rebuilt = KvState::from_history(Config::default(), history_of(&kv)).unwrap();
        assert_eq!(rebuilt.snapshot(), kv.snapshot());
        assert_eq!(rebuilt.hash_kv(0).unwrap().hash, kv.hash_kv(0).unwrap().hash);
    }

    #[test]
    fn from_history_compacts_what_a_compaction_forgets() {
        let mut kv = store();
        let mut full = history_of(&kv);
        full.compact_revision = 6;
        kv.apply(Command::Compact(CompactionRequest { revision: 6, ..Default::default() })).unwrap();
        let rebuilt = KvState::from_history(Config::default(), full).unwrap();
        assert_eq!(rebuilt.snapshot(), kv.snapshot());
    }

    #[test]
    fn from_history_refuses_histories_etcd_cannot_have_written() {
        let good = history_of(&store());
        let mut cases: Vec<(History, &str)> = Vec::new();
        let mut h = good.clone();
        h.entries[0].1.put.as_mut().unwrap().version = 99;
        cases.push((h, "create revision or version"));
        let mut h = good.clone();
        let last = h.entries.len() - 1;
        h.entries[last].1.put.as_mut().unwrap().version += 1;
        cases.push((h, "generations"));
        let mut h = good.clone();
        h.entries.push(h.entries[0].clone());
        cases.push((h, "repeated"));
        let mut h = good.clone();
        h.leases.clear();
        cases.push((h, "missing lease"));
        let mut h = good.clone();
        h.leases[0].1 = 0;
        cases.push((h, "TTL"));
        let mut h = good.clone();
        h.revision = 3;
        cases.push((h, "out of order"));
        let mut h = good;
        h.revision = i64::MAX;
        cases.push((h, "out of order"));
        for (h, want) in cases {
            let err = KvState::from_history(Config::default(), h).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }
}
