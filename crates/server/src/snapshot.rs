//! Backups: the snapshot file `Maintenance.Snapshot` streams (what
//! `etcdctl snapshot save` writes), and `synod snapshot restore`, which
//! turns one into the data directory of a member of a new cluster.
//!
//! # File format
//!
//! All integers little-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `SYNODSNP` |
//! | 4 | format version, 2 (1 is still read) |
//! | n | version 2: a protobuf message holding the key-value store (field 1, [`synod_kv::KvState::snapshot`]: every retained revision of every key, the compacted revision, the leases) and the auth store (field 2, [`crate::auth::AuthSnapshot`]: users with their password hashes, roles, whether auth is enabled, the auth revision); version 1: the key-value store alone |
//! | p | zeros, so that the three parts above fill whole 512-byte blocks |
//! | 8 | trailer magic `SYNODSUM` |
//! | 8 | n |
//! | 12 | zeros (reserved) |
//! | 4 | CRC-32C of everything before it |
//!
//! etcd streams its bbolt file (whole 512-byte pages) followed by its
//! SHA-256 (32 bytes), and `etcdctl snapshot save` checks exactly that
//! shape (length = 32 mod 512) before keeping the file. Synod's file has the
//! same shape, with its own 32-byte trailer in the checksum's place; its
//! contents are Synod's own (etcd's tools cannot restore it, nor Synod
//! etcd's). A file that is truncated, has a flipped bit, or does not decode
//! as a store is refused before anything is written. The auth store is
//! kept, as etcd's backup keeps its auth buckets. Members and alarms are
//! not in the file: a restored cluster starts with the members it is
//! restored with and no alarms, as with `etcdutl snapshot restore`;
//! revisions, compaction and leases are kept.

use crate::auth::{AuthSnapshot, AuthStore};
use crate::config::{parse_initial_cluster, ConfigError};
use crate::ids;
use crate::machine::EtcdMachine;
use prost::Message;
use std::path::PathBuf;
use synod_kv::KvState;
use synod_paxos::StateMachine;

const MAGIC: &[u8; 8] = b"SYNODSNP";
const TRAILER_MAGIC: &[u8; 8] = b"SYNODSUM";
const VERSION: u32 = 2;

/// Version 2's contents.
#[derive(Clone, PartialEq, prost::Message)]
struct Backup {
    #[prost(bytes = "vec", tag = "1")]
    kv: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    auth: Option<AuthSnapshot>,
}
const HEADER_LEN: usize = 12;
const TRAILER_LEN: usize = 32;
const BLOCK: usize = 512;

/// Why a snapshot file could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// The file is not a Synod snapshot (or not this version of one).
    #[error("not a synod snapshot file: {0}")]
    Format(String),
    /// The checksum or length does not match: the file is damaged.
    #[error("snapshot file is corrupt: {0}")]
    Corrupt(String),
    /// The checksum matches but the store does not decode.
    #[error("snapshot file holds an invalid store: {0}")]
    Store(#[from] synod_kv::SnapshotError),
    /// The restore flags are wrong.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Reading the file or creating the data directory failed.
    #[error("{0}")]
    Io(String),
}

/// The snapshot file of a key-value store and an auth store.
pub fn encode(kv: &KvState, auth: &AuthStore) -> Vec<u8> {
    let store = Backup { kv: kv.snapshot(), auth: Some(auth.to_snapshot()) }.encode_to_vec();
    let body = (HEADER_LEN + store.len()).div_ceil(BLOCK) * BLOCK;
    let mut out = Vec::with_capacity(body + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&store);
    out.resize(body, 0);
    out.extend_from_slice(TRAILER_MAGIC);
    out.extend_from_slice(&(store.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len() % BLOCK, TRAILER_LEN, "etcdctl keeps only files of this shape");
    out
}

/// Verifies a snapshot file's framing and checksum and decodes its stores.
pub fn decode(file: &[u8]) -> Result<(KvState, AuthStore), SnapshotFileError> {
    if file.len() < HEADER_LEN + TRAILER_LEN || &file[..8] != MAGIC {
        return Err(SnapshotFileError::Format("no SYNODSNP header".into()));
    }
    let version = u32::from_le_bytes(file[8..12].try_into().expect("4 bytes"));
    if version != VERSION && version != 1 {
        return Err(SnapshotFileError::Format(format!("unknown format version {version}")));
    }
    let (covered, crc) = file.split_at(file.len() - 4);
    let want = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let got = crc32c::crc32c(covered);
    if got != want || file.len() % BLOCK != TRAILER_LEN {
        return Err(SnapshotFileError::Corrupt(format!(
            "checksum mismatch (stored {want:08x}, computed {got:08x}, {} bytes): truncated or damaged",
            file.len()
        )));
    }
    let body_len = file.len() - TRAILER_LEN;
    let trailer = &file[body_len..];
    let len = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
    if &trailer[..8] != TRAILER_MAGIC || len > (body_len - HEADER_LEN) as u64 {
        return Err(SnapshotFileError::Corrupt(format!("bad trailer (store length {len})")));
    }
    let store = &file[HEADER_LEN..HEADER_LEN + len as usize];
    if version == 1 {
        return Ok((KvState::restore(synod_kv::Config::default(), store)?, AuthStore::default()));
    }
    let backup = Backup::decode(store).map_err(|e| SnapshotFileError::Corrupt(format!("bad contents: {e}")))?;
    let kv = KvState::restore(synod_kv::Config::default(), &backup.kv)?;
    Ok((kv, backup.auth.map(AuthStore::from_snapshot).unwrap_or_default()))
}

/// What `synod snapshot restore` is asked to do.
#[derive(Clone, Debug)]
pub struct Restore {
    /// The snapshot file.
    pub file: PathBuf,
    /// This member's name in `initial_cluster`.
    pub name: String,
    /// The data directory to create (must not exist, or be empty).
    pub data_dir: PathBuf,
    /// The new cluster's `--initial-cluster`.
    pub initial_cluster: String,
    /// The new cluster's `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// This member's peer URLs, as in `initial_cluster`.
    pub initial_advertise_peer_urls: String,
}

/// What a restore created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The store's revision.
    pub revision: i64,
    /// Live keys at that revision.
    pub keys: usize,
    /// The member id the data directory belongs to.
    pub member_id: u64,
    /// The cluster id it belongs to.
    pub cluster_id: u64,
}

/// Verifies the snapshot file and creates a data directory from which the
/// member named `r.name` of the new cluster starts holding its data. Every
/// member of the new cluster is restored from the same file with the same
/// `initial_cluster` and token, then started with `--initial-cluster-state
/// new`.
pub fn restore(r: &Restore) -> Result<Restored, SnapshotFileError> {
    let members = parse_initial_cluster(&r.initial_cluster, &r.initial_cluster_token)?;
    let me = members.iter().find(|m| m.name == r.name).ok_or_else(|| {
        ConfigError(format!("--name {:?} is not in --initial-cluster {:?}", r.name, r.initial_cluster))
    })?;
    let mut advertised: Vec<String> = r
        .initial_advertise_peer_urls
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    advertised.sort();
    let mut listed = me.peer_urls.clone();
    listed.sort();
    if advertised != listed {
        return Err(ConfigError(format!(
            "--initial-advertise-peer-urls {} does not match the --initial-cluster entry for {} ({})",
            advertised.join(","),
            r.name,
            listed.join(",")
        ))
        .into());
    }
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cluster_id = ids::cluster_id(&ids, &r.initial_cluster_token);
    let bytes = std::fs::read(&r.file).map_err(|e| SnapshotFileError::Io(format!("{}: {e}", r.file.display())))?;
    let (kv, auth) = decode(&bytes)?;
    let restored = Restored {
        revision: kv.revision(),
        keys: kv.range(&live_keys()).map_or(0, |resp| resp.count as usize),
        member_id: me.id,
        cluster_id,
    };
    let state = EtcdMachine::from_kv(kv, auth).snapshot();
    synod_runtime::seed_data_dir(&r.data_dir, cluster_id, me.id, &state)
        .map_err(|e| SnapshotFileError::Io(format!("{}: {e}", r.data_dir.display())))?;
    Ok(restored)
}

fn live_keys() -> synod_kv::pb::RangeRequest {
    synod_kv::pb::RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_kv::pb::PutRequest;
    use synod_kv::Command;

    fn store() -> KvState {
        let mut kv = KvState::default();
        for i in 0..5 {
            let put = PutRequest { key: format!("k{i}").into(), value: b"v".to_vec(), ..Default::default() };
            kv.apply(Command::Put(put)).unwrap();
        }
        kv
    }

    #[test]
    fn a_snapshot_file_round_trips() {
        let kv = store();
        let file = encode(&kv, &AuthStore::default());
        assert_eq!(file.len() % 512, 32, "etcdctl snapshot save keeps only whole blocks plus 32 bytes");
        assert_eq!(decode(&file).unwrap(), (kv, AuthStore::default()));
    }

    #[test]
    fn damaged_files_are_refused() {
        let file = encode(&store(), &AuthStore::default());
        let mut flipped = file.clone();
        flipped[20] ^= 0x01;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (flipped, "checksum"),
            (file[..file.len() - 1].to_vec(), "checksum"),
            (b"not a snapshot at all, just text".to_vec(), "not a synod snapshot"),
            (Vec::new(), "not a synod snapshot"),
        ];
        for (bytes, want) in cases {
            let err = decode(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn restore_creates_a_data_directory_and_refuses_a_used_one() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("backup.db");
        std::fs::write(&file, encode(&store(), &AuthStore::default())).unwrap();
        let r = Restore {
            file,
            name: "a".into(),
            data_dir: tmp.path().join("a.synod"),
            initial_cluster: "a=http://127.0.0.1:1,b=http://127.0.0.1:2".into(),
            initial_cluster_token: "t".into(),
            initial_advertise_peer_urls: "http://127.0.0.1:1".into(),
        };
        let done = restore(&r).unwrap();
        assert_eq!((done.revision, done.keys), (6, 5));
        assert!(r.data_dir.join("snap").is_dir());
        assert!(restore(&r).unwrap_err().to_string().contains("not empty"));
        let wrong = Restore { name: "z".into(), data_dir: tmp.path().join("z"), ..r.clone() };
        assert!(restore(&wrong).unwrap_err().to_string().contains("not in --initial-cluster"));
    }
}
