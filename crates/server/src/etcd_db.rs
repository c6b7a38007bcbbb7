//! etcd's backend database: which buckets of its bbolt file ([`crate::bbolt`])
//! hold what, read into Synod's stores and written from them. This is what
//! lets an operator move between etcd and Synod by snapshot, both ways.
//!
//! The schema is etcd 3.4's and 3.5's (`server/storage/schema`,
//! `mvcc/revision.go`):
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `key` | revision: main (8 bytes, big-endian), `_`, sub (8), and `t` for a delete | `mvccpb.KeyValue` (a delete's holds only the key) |
//! | `lease` | lease ID (8, big-endian) | `leasepb.Lease`: ID, TTL, remaining TTL |
//! | `meta` | `finishedCompactRev`, `scheduledCompactRev` | a revision as in `key` |
//! | `auth` | `authEnabled`, `authRevision` | 1 byte; 8 bytes big-endian |
//! | `authUsers`, `authRoles` | name | `authpb.User`, `authpb.Role` |
//! | `members`, `members_removed`, `cluster`, `alarm` | | not carried over |
//!
//! # What a migration keeps
//!
//! Carried over, both ways: every key's retained history (each revision
//! above the compaction, and the one at or below it a compaction keeps),
//! with values, create and mod revisions, versions and leases; the current
//! revision; the compaction revision (a compaction etcd scheduled but had
//! not finished is finished, as etcd does when it starts); the leases with
//! their granted TTLs and attached keys; the users (bcrypt password hashes
//! carry over: both hash with bcrypt), roles and their permissions, whether
//! auth is enabled, and the auth revision.
//!
//! Not carried over, as `etcdutl snapshot restore` does not carry them: the
//! members (the new cluster's are given to the restore), alarms, the
//! consistent index and term (they number the old cluster's log), the
//! cluster version and downgrade state. A lease's remaining TTL is not
//! kept either: it is saved only when lease checkpointing is on, and a
//! lease restarts its full TTL at the new cluster's leader, as etcd's do
//! after a restart without checkpoints. Simple auth tokens are not in the
//! file, so clients authenticate again.

use crate::auth::{AuthSnapshot, AuthStore};
use crate::bbolt::read::{BoltError, Bucket, Db, Item};
use crate::bbolt::write::Buckets;
use prost::Message;
use synod_etcd_api::authpb::{Role, User};
use synod_kv::pb::KeyValue;
use synod_kv::{History, HistoryEntry, KvState, Revision, StoredPut};

const KEY: &[u8] = b"key";
const META: &[u8] = b"meta";
const LEASE: &[u8] = b"lease";
const AUTH: &[u8] = b"auth";
const AUTH_USERS: &[u8] = b"authUsers";
const AUTH_ROLES: &[u8] = b"authRoles";
/// Every bucket etcd creates; written even when empty, as etcd's file has
/// them all and its restore expects them.
const ALL_BUCKETS: [&[u8]; 10] =
    [KEY, META, LEASE, b"alarm", b"cluster", b"members", b"members_removed", AUTH, AUTH_USERS, AUTH_ROLES];
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const AUTH_ENABLED: &[u8] = b"authEnabled";
const AUTH_REVISION: &[u8] = b"authRevision";

/// etcd's `leasepb.Lease`, as its `lease` bucket stores it. Declared here
/// rather than generated: etcd's `lease.proto` imports gogoproto and the
/// whole gRPC API for two messages never stored.
#[derive(Clone, PartialEq, prost::Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// Why a bbolt file could not be read as an etcd backend.
#[derive(Debug, thiserror::Error)]
pub enum EtcdDbError {
    /// The bbolt structure is broken.
    #[error(transparent)]
    Bolt(#[from] BoltError),
    /// A valid bbolt file whose buckets are not etcd's, or hold values
    /// etcd does not write.
    #[error("not an etcd backend as etcd writes it: {0}")]
    Schema(String),
    /// The keys and leases break a rule of the store.
    #[error("the etcd backend holds an invalid store: {0}")]
    Store(#[from] synod_kv::SnapshotError),
}

fn schema(msg: impl Into<String>) -> EtcdDbError {
    EtcdDbError::Schema(msg.into())
}

/// A revision key of the `key` bucket: the revision, and whether it is a
/// delete's.
fn parse_revision(key: &[u8]) -> Option<(Revision, bool)> {
    let tombstone = match key.len() {
        17 => false,
        18 if key[17] == b't' => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(key[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((Revision { main, sub }, tombstone))
}

fn be_u64(bytes: &[u8], what: &str) -> Result<u64, EtcdDbError> {
    Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| schema(format!("{what} is {} bytes, not 8", bytes.len())))?))
}

/// The stores an etcd backend file (bbolt, no checksum after it) holds.
pub fn read(file: &[u8]) -> Result<(KvState, AuthStore), EtcdDbError> {
    let db = Db::open(file)?;
    let root = db.read()?;
    let keys = root.bucket(KEY).ok_or_else(|| schema("no `key` bucket"))?;
    let mut entries = Vec::with_capacity(keys.entries.len());
    let mut last = 1;
    for (k, v) in bucket_values(keys, KEY)? {
        let (revision, tombstone) =
            parse_revision(k).ok_or_else(|| schema(format!("`key` bucket key {k:02x?} is not a revision")))?;
        let kv = KeyValue::decode(v).map_err(|e| schema(format!("revision {}: bad KeyValue: {e}", revision.main)))?;
        let put = if tombstone {
            None
        } else {
            if kv.mod_revision != revision.main {
                return Err(schema(format!(
                    "revision {} holds a KeyValue with mod revision {}",
                    revision.main, kv.mod_revision
                )));
            }
            Some(StoredPut {
                value: kv.value,
                create_revision: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
            })
        };
        last = revision.main;
        entries.push((kv.key, HistoryEntry { revision, put }));
    }
    let compaction = |name: &[u8]| -> Result<i64, EtcdDbError> {
        match root.bucket(META).and_then(|m| m.get(name)) {
            None => Ok(-1),
            Some(v) => parse_revision(v)
                .filter(|(_, tombstone)| !tombstone)
                .map(|(r, _)| r.main)
                .ok_or_else(|| schema(format!("meta {} is not a revision", String::from_utf8_lossy(name)))),
        }
    };
    let (finished, scheduled) = (compaction(FINISHED_COMPACT)?, compaction(SCHEDULED_COMPACT)?);
    let mut leases = Vec::new();
    if let Some(bucket) = root.bucket(LEASE) {
        for (k, v) in bucket_values(bucket, LEASE)? {
            let id = be_u64(k, "a lease ID")? as i64;
            let lease = LeasePb::decode(v).map_err(|e| schema(format!("lease {id:x}: bad Lease: {e}")))?;
            if lease.id != id {
                return Err(schema(format!("lease {id:x} holds the lease {:x}", lease.id)));
            }
            leases.push((id, lease.ttl));
        }
    }
    // As etcd on start: the revision is the last one written, unless a
    // compaction has since removed it; a scheduled compaction is finished.
    let compact_revision = finished.max(scheduled);
    let history = History { revision: last.max(compact_revision).max(1), compact_revision, entries, leases };
    let kv = KvState::from_history(synod_kv::Config::default(), history)?;
    Ok((kv, read_auth(&root)?))
}

/// A key and its value, borrowed from the file.
type Pair<'a> = (&'a [u8], &'a [u8]);

/// A bucket's values, refusing nested buckets (etcd nests none).
fn bucket_values<'a>(bucket: &Bucket<'a>, name: &[u8]) -> Result<Vec<Pair<'a>>, EtcdDbError> {
    bucket
        .entries
        .iter()
        .map(|(k, item)| match item {
            Item::Value(v) => Ok((*k, *v)),
            Item::Bucket(_) => Err(schema(format!("bucket `{}` holds a nested bucket", String::from_utf8_lossy(name)))),
        })
        .collect()
}

fn read_auth(root: &Bucket<'_>) -> Result<AuthStore, EtcdDbError> {
    let auth = root.bucket(AUTH);
    let enabled = auth.and_then(|a| a.get(AUTH_ENABLED)) == Some(&[1]);
    let revision = match auth.and_then(|a| a.get(AUTH_REVISION)) {
        Some(v) => be_u64(v, "the auth revision")?,
        None => 0,
    };
    let mut users = Vec::new();
    if let Some(bucket) = root.bucket(AUTH_USERS) {
        for (k, v) in bucket_values(bucket, AUTH_USERS)? {
            let user =
                User::decode(v).map_err(|e| schema(format!("user {:?}: bad User: {e}", String::from_utf8_lossy(k))))?;
            if user.name != k {
                return Err(schema(format!("user {:?} is stored under another name", String::from_utf8_lossy(k))));
            }
            users.push(user);
        }
    }
    let mut roles = Vec::new();
    if let Some(bucket) = root.bucket(AUTH_ROLES) {
        for (k, v) in bucket_values(bucket, AUTH_ROLES)? {
            let role =
                Role::decode(v).map_err(|e| schema(format!("role {:?}: bad Role: {e}", String::from_utf8_lossy(k))))?;
            if role.name != k {
                return Err(schema(format!("role {:?} is stored under another name", String::from_utf8_lossy(k))));
            }
            roles.push(role);
        }
    }
    Ok(AuthStore::from_snapshot(AuthSnapshot { enabled, revision, users, roles, tokens: Vec::new() }))
}

/// The etcd backend file (bbolt, without the checksum a snapshot adds)
/// holding these stores.
pub fn write(kv: &KvState, auth: &AuthStore) -> Vec<u8> {
    let mut buckets: Buckets = ALL_BUCKETS.iter().map(|b| (b.to_vec(), Default::default())).collect();
    let mut fill = |name: &[u8], entries: Vec<(Vec<u8>, Vec<u8>)>| {
        buckets.get_mut(name).expect("every bucket etcd has is made above").extend(entries);
    };
    let keys = kv.history().map(|(key, e)| {
        let revision = e.revision.to_etcd_bytes(e.put.is_none());
        let value = match e.put {
            Some(p) => KeyValue {
                key: key.to_vec(),
                create_revision: p.create_revision,
                mod_revision: e.revision.main,
                version: p.version,
                value: p.value,
                lease: p.lease,
            },
            // etcd stores a delete as the bare key.
            None => KeyValue { key: key.to_vec(), ..Default::default() },
        };
        (revision, value.encode_to_vec())
    });
    fill(KEY, keys.collect());
    let leases = kv.leases().map(|(id, l)| {
        let stored = LeasePb { id, ttl: l.granted_ttl, remaining_ttl: 0 };
        (id.to_be_bytes().to_vec(), stored.encode_to_vec())
    });
    fill(LEASE, leases.collect());
    if kv.compact_revision() >= 1 {
        let at = Revision::first_of(kv.compact_revision()).to_etcd_bytes(false);
        fill(META, vec![(FINISHED_COMPACT.to_vec(), at.clone()), (SCHEDULED_COMPACT.to_vec(), at)]);
    }
    let snapshot = auth.to_snapshot();
    fill(
        AUTH,
        vec![
            (AUTH_ENABLED.to_vec(), vec![u8::from(snapshot.enabled)]),
            (AUTH_REVISION.to_vec(), snapshot.revision.to_be_bytes().to_vec()),
        ],
    );
    fill(AUTH_USERS, snapshot.users.iter().map(|u| (u.name.clone(), u.encode_to_vec())).collect());
    fill(AUTH_ROLES, snapshot.roles.iter().map(|r| (r.name.clone(), r.encode_to_vec())).collect());
    crate::bbolt::write::write(&buckets)
}

/// What `etcdctl snapshot status` reports of a backend file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// CRC-32C over every bucket's name and every key and value in it, in
    /// file order.
    pub hash: u32,
    /// The main revision of the last key in the `key` bucket.
    pub revision: i64,
    /// Keys in all buckets.
    #[serde(rename = "totalKey")]
    pub total_key: usize,
    /// The database's size: pages in use times the page size.
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// The status of a backend file (bbolt, no checksum after it), computed
/// as etcd's `snapshot status` computes it.
pub fn status(file: &[u8]) -> Result<Status, EtcdDbError> {
    let db = Db::open(file)?;
    let root = db.read()?;
    let (mut hash, mut revision, mut total_key) = (0u32, 0, 0);
    for (name, item) in &root.entries {
        let Item::Bucket(bucket) = item else {
            return Err(schema(format!("cannot get hash of bucket {}", String::from_utf8_lossy(name))));
        };
        hash = crc32c::crc32c_append(hash, name);
        for (k, item) in &bucket.entries {
            hash = crc32c::crc32c_append(hash, k);
            if let Item::Value(v) = item {
                hash = crc32c::crc32c_append(hash, v);
            }
            if *name == KEY && k.len() >= 8 {
                revision = i64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            }
            total_key += 1;
        }
    }
    Ok(Status { hash, revision, total_key, total_size: db.size() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthInfo;
    use proptest::prelude::*;
    use synod_kv::pb::RangeRequest;

    /// A snapshot saved by etcd 3.4 (`tests/golden/make-etcd-3.4.sh` says
    /// what it holds), without its SHA-256.
    fn golden() -> &'static [u8] {
        let file = include_bytes!("../tests/golden/etcd-3.4.db");
        &file[..file.len() - 32]
    }

    /// (value, create, mod, version, lease) of `key` at revision `rev` (0: now).
    fn get(kv: &KvState, key: &str, rev: i64) -> Option<(String, i64, i64, i64, i64)> {
        let req = RangeRequest { key: key.into(), revision: rev, ..Default::default() };
        let kv = kv.range(&req).unwrap().kvs.into_iter().next()?;
        Some((String::from_utf8(kv.value).unwrap(), kv.create_revision, kv.mod_revision, kv.version, kv.lease))
    }

    #[test]
    fn an_etcd_34_snapshot_reads_as_the_store_etcd_had() {
        let (kv, auth) = read(golden()).unwrap();
        assert_eq!((kv.revision(), kv.compact_revision()), (13, 4));
        assert_eq!(get(&kv, "a", 0), Some(("5".into(), 2, 11, 3, 0)));
        assert_eq!(get(&kv, "x", 0), Some(("10".into(), 9, 10, 2, 0)));
        assert_eq!(get(&kv, "after-auth", 0), Some(("y".into(), 13, 13, 1, 0)));
        let big = get(&kv, "big", 0).unwrap();
        assert_eq!((big.0.len(), big.1, big.3), (6000, 7, 1), "a value on overflow pages");
        assert_eq!((get(&kv, "b", 0), get(&kv, "c", 0)), (None, None), "deleted keys stay deleted");
        // History above the compaction, and what the compaction kept.
        assert_eq!(get(&kv, "a", 4), Some(("3".into(), 2, 4, 2, 0)));
        assert_eq!(get(&kv, "b", 11), Some(("2".into(), 3, 3, 1, 0)));
        assert_eq!(get(&kv, "c", 5), Some(("4".into(), 5, 5, 1, 0)));
        assert!(kv.range(&RangeRequest { key: b"a".to_vec(), revision: 3, ..Default::default() }).is_err());
        // Leases, with the key attached to one.
        let leases: Vec<(i64, i64, usize)> = kv.leases().map(|(id, l)| (id, l.granted_ttl, l.keys.len())).collect();
        assert_eq!(leases.iter().map(|l| (l.1, l.2)).collect::<Vec<_>>(), [(300, 1), (60, 0)]);
        assert_eq!(get(&kv, "leased", 0).unwrap().4, leases[0].0);
        // Auth: enabled, the users with their bcrypt hashes, the role.
        assert!(auth.enabled());
        assert_eq!(auth.revision(), 7);
        assert_eq!(auth.user_names(), ["alice", "root"]);
        assert_eq!(auth.role_names(), ["reader"]);
        assert!(auth.has_role("root", "root") && auth.has_role("alice", "reader"));
        let alice = auth.user("alice").unwrap();
        assert!(bcrypt::verify("alicepw", std::str::from_utf8(&alice.password).unwrap()).unwrap());
        let info = AuthInfo { username: "alice".into(), revision: auth.revision() };
        assert!(auth.check_read(&info, b"/r/1", &[]).is_ok());
        assert!(auth.check_read(&info, b"/s", &[]).is_err());
        assert!(auth.check_write(&info, b"/r/1", &[]).is_err());
    }

    #[test]
    fn status_is_what_etcdctl_snapshot_status_prints() {
        // `etcdctl snapshot status -w json` of the golden file.
        let want = Status { hash: 0x699e_9ee1, revision: 13, total_key: 23, total_size: 49152 };
        assert_eq!(status(golden()).unwrap(), want);
        assert_eq!(status(include_bytes!("../tests/golden/etcd-3.4.db")).unwrap(), want);
    }

    #[test]
    fn what_synod_writes_reads_back_as_the_same_stores() {
        let (kv, auth) = read(golden()).unwrap();
        let file = write(&kv, &auth);
        let (kv2, auth2) = read(&file).unwrap();
        assert_eq!(kv2, kv);
        assert_eq!(auth2, auth);
        assert_eq!(status(&file).unwrap().revision, 13);
    }

    #[test]
    fn a_35_backend_with_its_newer_meta_keys_reads_the_same() {
        // etcd 3.5 adds the raft term and conf state to `meta`, and keeps
        // the cluster version in `cluster`; none of them is carried over.
        let root = Db::open(golden()).unwrap().read().unwrap();
        let mut buckets: Buckets = root
            .entries
            .iter()
            .map(|(name, item)| {
                let Item::Bucket(b) = item else { panic!("etcd has only buckets at the top") };
                (name.to_vec(), b.values().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
            })
            .collect();
        let meta = buckets.get_mut(META).unwrap();
        meta.insert(b"term".to_vec(), 2u64.to_be_bytes().to_vec());
        meta.insert(b"confState".to_vec(), br#"{"voters":[13668033151171901709],"auto_leave":false}"#.to_vec());
        buckets.get_mut(b"cluster".as_slice()).unwrap().insert(b"downgrade".to_vec(), br#"{"enabled":false}"#.to_vec());
        let file = crate::bbolt::write::write(&buckets);
        let (kv, auth) = read(&file).unwrap();
        let (want_kv, want_auth) = read(golden()).unwrap();
        assert_eq!((kv, auth), (want_kv, want_auth));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Damage anywhere in a real etcd file is refused or read (a value
        /// changed in place may still be a valid store), never a panic.
        #[test]
        fn a_damaged_etcd_file_never_panics(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut file = golden().to_vec();
            for (at, byte) in flips {
                let i = at.index(file.len());
                file[i] = byte;
            }
            let _ = read(&file);
            let _ = status(&file);
        }
    }
}
