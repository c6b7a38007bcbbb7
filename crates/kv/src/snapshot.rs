//! Snapshots: the whole state as bytes, and back.
//!
//! The encoding is protobuf with every collection written in key or ID
//! order, so two replicas in the same state produce the same bytes. Lease
//! key sets and the revision index are derived data and are rebuilt on
//! restore. The configuration is not part of a snapshot.

use std::collections::BTreeMap;

use prost::Message;

use crate::config::Config;
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
        let mut leases = Leases::from_parts(snap.leases.iter().map(|l| (l.id, l.granted_ttl)), snap.next_lease_id);
        if leases.iter().count() != snap.leases.len() || leases.contains(0) {
            return Err(SnapshotError::Corrupt("duplicate or zero lease id"));
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
            if let Some(Live { lease, .. }) = history.last().and_then(|e| e.live.as_ref()) {
                if *lease != 0 && !leases.contains(*lease) {
                    return Err(SnapshotError::Corrupt("live key held by a missing lease"));
                }
                leases.attach(*lease, &k.key);
            }
            if keys.insert(k.key, history).is_some() {
                return Err(SnapshotError::Corrupt("key repeated"));
            }
        }
        Ok(KvState { mvcc: Mvcc::from_parts(keys, snap.revision, snap.compact_revision), leases, config })
    }
}
