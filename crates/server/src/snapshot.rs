//! Backups: the snapshot file `Maintenance.Snapshot` streams (what
//! `etcdctl snapshot save` writes), and `synod snapshot restore`, which
//! turns one into the data directory of a member of a new cluster.
//!
//! # File formats
//!
//! Synod saves and restores etcd's snapshot format, so that operators can
//! move between etcd and Synod by snapshot, both ways: an etcd backend
//! database (bbolt, see [`crate::bbolt`] for its pages and
//! [`crate::etcd_db`] for its buckets, and what is and is not carried over)
//! followed by the SHA-256 of everything before it (32 bytes). `etcdctl
//! snapshot save` keeps only files of that shape (length = 32 mod 512),
//! `etcdctl snapshot status` and `etcdctl snapshot restore` (etcd 3.4) read
//! the files Synod saves, and `synod snapshot restore` reads the files etcd
//! 3.4 and 3.5 save.
//!
//! The format is told by content:
//! - a bbolt file (its magic number in a meta page) with a SHA-256 after
//!   it: the checksum is verified (unless `--skip-hash-check`);
//! - a bbolt file of whole pages, no checksum: a `member/snap/db` copied
//!   from an etcd data directory, restored only with `--skip-hash-check`,
//!   as `etcdutl snapshot restore` asks;
//! - Synod's own earlier format, which Synod saved before it wrote etcd's
//!   and still restores:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `SYNODSNP` |
//! | 4 | format version, 2 (1 is still read) |
//! | n | version 2: a protobuf message holding the key-value store (field 1, [`synod_kv::KvState::snapshot`]) and the auth store (field 2, [`crate::auth::AuthSnapshot`]); version 1: the key-value store alone |
//! | p | zeros, so that the three parts above fill whole 512-byte blocks |
//! | 8 | trailer magic `SYNODSUM` |
//! | 8 | n |
//! | 12 | zeros (reserved) |
//! | 4 | CRC-32C of everything before it |
//!
//! A file that is truncated, has a flipped bit, or does not decode as a
//! store is refused before anything is written. Members and alarms are not
//! in the file: a restored cluster starts with the members it is restored
//! with and no alarms, as with `etcdutl snapshot restore`.

use crate::auth::{AuthSnapshot, AuthStore};
use crate::config::{parse_initial_cluster, ConfigError, StatusFormat};
use crate::ids;
use crate::state::machine::EtcdMachine;
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
const SHA256_LEN: usize = 32;

/// Why a snapshot file could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// The file is neither an etcd nor a Synod snapshot (or not a version
    /// of one that this Synod reads).
    #[error("not a snapshot file: {0}")]
    Format(String),
    /// An etcd snapshot whose database cannot be read.
    #[error("snapshot file is corrupt: {0}")]
    Etcd(#[from] crate::etcd_db::EtcdDbError),
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

/// The snapshot file of a key-value store and an auth store, in etcd's
/// format: the backend database, then its SHA-256.
pub fn encode(kv: &KvState, auth: &AuthStore) -> Vec<u8> {
    let mut file = crate::etcd_db::write(kv, auth);
    let sum = ring::digest::digest(&ring::digest::SHA256, &file);
    file.extend_from_slice(sum.as_ref());
    debug_assert_eq!(file.len() % BLOCK, SHA256_LEN, "etcdctl keeps only files of this shape");
    file
}

/// Synod's earlier snapshot file (still restored), for tests of reading it.
#[cfg(test)]
fn encode_synod(kv: &KvState, auth: &AuthStore) -> Vec<u8> {
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
    out
}

/// Which kind of snapshot file a file is, told by its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Synod's earlier format.
    Synod,
    /// An etcd backend database followed by its SHA-256.
    EtcdWithHash,
    /// An etcd backend database alone (a `member/snap/db` copy).
    EtcdRaw,
}

/// Tells a snapshot file's kind by its content.
pub fn kind(file: &[u8]) -> Result<Kind, SnapshotFileError> {
    if file.starts_with(MAGIC) {
        return Ok(Kind::Synod);
    }
    if !crate::bbolt::read::looks_like_bbolt(file) {
        return Err(SnapshotFileError::Format(
            "neither an etcd snapshot (a bbolt database) nor a synod snapshot (SYNODSNP)".into(),
        ));
    }
    match file.len() % BLOCK {
        SHA256_LEN => Ok(Kind::EtcdWithHash),
        0 => Ok(Kind::EtcdRaw),
        _ => Err(SnapshotFileError::Corrupt(format!(
            "{} bytes is neither whole pages nor whole pages and a SHA-256: truncated",
            file.len()
        ))),
    }
}

/// The stores a snapshot file of any kind holds, its checksum verified
/// unless `skip_hash_check` (which a file without one needs).
pub fn decode_any(file: &[u8], skip_hash_check: bool) -> Result<(KvState, AuthStore), SnapshotFileError> {
    match kind(file)? {
        Kind::Synod => decode(file),
        Kind::EtcdWithHash => {
            let (db, sum) = file.split_at(file.len() - SHA256_LEN);
            if !skip_hash_check {
                let got = ring::digest::digest(&ring::digest::SHA256, db);
                if got.as_ref() != sum {
                    return Err(SnapshotFileError::Corrupt(format!(
                        "SHA-256 checksum mismatch (stored {}, computed {}, {} bytes): truncated or damaged",
                        hex(sum),
                        hex(got.as_ref()),
                        file.len()
                    )));
                }
            }
            Ok(crate::etcd_db::read(db)?)
        }
        Kind::EtcdRaw if skip_hash_check => Ok(crate::etcd_db::read(file)?),
        Kind::EtcdRaw => Err(SnapshotFileError::Format(
            "an etcd database without the SHA-256 a snapshot ends with (a member/snap/db copied from a data \
             directory?): restore it with --skip-hash-check"
                .into(),
        )),
    }
}

/// What `etcdctl snapshot status` reports of a snapshot file: for an
/// etcd file its database as it is, for Synod's earlier format the
/// database Synod saves for the same stores today. Like etcdctl, it reads
/// the database without checking the SHA-256.
pub fn status(file: &[u8]) -> Result<crate::etcd_db::Status, SnapshotFileError> {
    match kind(file)? {
        Kind::Synod => {
            let (kv, auth) = decode(file)?;
            Ok(crate::etcd_db::status(&crate::etcd_db::write(&kv, &auth))?)
        }
        Kind::EtcdWithHash => Ok(crate::etcd_db::status(&file[..file.len() - SHA256_LEN])?),
        Kind::EtcdRaw => Ok(crate::etcd_db::status(file)?),
    }
}

/// A status as `etcdctl snapshot status -w FORMAT` prints it.
pub fn format_status(s: &crate::etcd_db::Status, format: StatusFormat) -> String {
    let cells = [format!("{:x}", s.hash), s.revision.to_string(), s.total_key.to_string(), si_bytes(s.total_size)];
    match format {
        StatusFormat::Simple => format!("{}\n", cells.join(", ")),
        StatusFormat::Json => format!("{}\n", serde_json::to_string(s).expect("a status serializes")),
        StatusFormat::Table => {
            let header = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
            let widths: Vec<usize> = header.iter().zip(&cells).map(|(h, c)| h.len().max(c.len())).collect();
            let rule = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
            let heads: String = header
                .iter()
                .zip(&widths)
                .map(|(h, w)| {
                    let left = (w - h.len()) / 2;
                    format!("| {}{h}{} ", " ".repeat(left), " ".repeat(w - h.len() - left))
                })
                .collect();
            let row: String = cells.iter().zip(&widths).map(|(c, w)| format!("| {c:>w$} ")).collect();
            format!("{rule}{heads}|\n{rule}{row}|\n{rule}")
        }
    }
}

/// A size as go-humanize's `Bytes` writes it (SI units: "49 kB", "1.2 MB"),
/// which etcdctl prints.
fn si_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let exp = ((n as f64).log10() / 3.0).floor() as usize;
    let exp = exp.min(UNITS.len() - 1);
    let value = ((n as f64 / 1000f64.powi(exp as i32)) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies a file of Synod's earlier format and decodes its stores.
fn decode(file: &[u8]) -> Result<(KvState, AuthStore), SnapshotFileError> {
    if &file[..8.min(file.len())] != MAGIC {
        return Err(SnapshotFileError::Format("no SYNODSNP header".into()));
    }
    if file.len() < HEADER_LEN + TRAILER_LEN {
        return Err(SnapshotFileError::Corrupt(format!("truncated: {} bytes", file.len())));
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
    /// Restore without verifying the snapshot's SHA-256 (needed for a
    /// database copied from an etcd data directory, which has none).
    pub skip_hash_check: bool,
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
    let (kv, auth) = decode_any(&bytes, r.skip_hash_check)?;
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
    fn a_snapshot_file_round_trips_in_etcds_format() {
        let kv = store();
        let file = encode(&kv, &AuthStore::default());
        assert_eq!(file.len() % 512, 32, "etcdctl snapshot save keeps only whole blocks plus 32 bytes");
        assert_eq!(kind(&file).unwrap(), Kind::EtcdWithHash);
        assert_eq!(decode_any(&file, false).unwrap(), (kv.clone(), AuthStore::default()));
        // The database alone, as copied from a data directory.
        let raw = &file[..file.len() - 32];
        assert_eq!(kind(raw).unwrap(), Kind::EtcdRaw);
        assert!(decode_any(raw, false).unwrap_err().to_string().contains("--skip-hash-check"));
        assert_eq!(decode_any(raw, true).unwrap(), (kv, AuthStore::default()));
    }

    #[test]
    fn synods_earlier_format_is_still_restored() {
        let kv = store();
        let file = encode_synod(&kv, &AuthStore::default());
        assert_eq!(kind(&file).unwrap(), Kind::Synod);
        assert_eq!(decode_any(&file, false).unwrap(), (kv.clone(), AuthStore::default()));
        assert_eq!(status(&file).unwrap(), status(&encode(&kv, &AuthStore::default())).unwrap());
    }

    #[test]
    fn damaged_files_are_refused() {
        for file in [encode(&store(), &AuthStore::default()), encode_synod(&store(), &AuthStore::default())] {
            let mut flipped = file.clone();
            flipped[file.len() / 2] ^= 0x01;
            let mut bad_sum = file.clone();
            let last = bad_sum.len() - 1;
            bad_sum[last] ^= 0x80;
            let cases: Vec<(Vec<u8>, &str)> = vec![
                (flipped, "checksum"),
                (bad_sum, "checksum"),
                (file[..file.len() - 1].to_vec(), "corrupt"),
                (file[..file.len() - 512].to_vec(), "corrupt"),
                (b"not a snapshot at all, just text".to_vec(), "not a snapshot file"),
                (Vec::new(), "not a snapshot file"),
            ];
            for (bytes, want) in cases {
                let err = decode_any(&bytes, false).unwrap_err().to_string();
                assert!(err.contains(want), "{err:?} should mention {want:?}");
            }
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
            skip_hash_check: false,
        };
        let done = restore(&r).unwrap();
        assert_eq!((done.revision, done.keys), (6, 5));
        assert!(r.data_dir.join("snap").is_dir());
        assert!(restore(&r).unwrap_err().to_string().contains("not empty"));
        let wrong = Restore { name: "z".into(), data_dir: tmp.path().join("z"), ..r.clone() };
        assert!(restore(&wrong).unwrap_err().to_string().contains("not in --initial-cluster"));
    }
}

/// Timing of saving and restoring a large store in etcd's format, for the
/// numbers in the README: `cargo test --release -p synod-server --lib
/// snapshot_timing -- --ignored --nocapture`.
#[cfg(test)]
mod timing {
    use super::*;
    use std::time::Instant;
    use synod_kv::pb::PutRequest;
    use synod_kv::Command;

    #[test]
    #[ignore = "a measurement, not a check"]
    fn snapshot_timing() {
        let (keys, writes) = (100_000, 300_000);
        let mut kv = KvState::default();
        for i in 0..writes {
            let key = format!("/registry/pods/ns-{}/pod-{:06}", i % 100, i % keys).into_bytes();
            let put = PutRequest { key, value: vec![b'v'; 256], ..Default::default() };
            kv.apply(Command::Put(put)).unwrap();
        }
        let auth = AuthStore::default();
        let started = Instant::now();
        let file = encode(&kv, &auth);
        let saved = started.elapsed();
        let started = Instant::now();
        let (back, _) = decode_any(&file, false).unwrap();
        let restored = started.elapsed();
        assert_eq!(back.revision(), kv.revision());
        let old = encode_synod(&kv, &auth).len();
        println!(
            "{keys} keys, {writes} revisions of 256-byte values: etcd format {:.1} MiB (synod's earlier format {:.1} MiB), \
             saved in {saved:.2?}, verified and restored in {restored:.2?}",
            file.len() as f64 / (1 << 20) as f64,
            old as f64 / (1 << 20) as f64
        );
    }
}
