//! The data-directory identity marker.
//!
//! A replica's data directory records which cluster and which member it
//! belongs to, so that a directory copied from (or mounted for) another node
//! is refused instead of letting that node's promises be replayed under a
//! different identity. It also tells the runtime whether the directory is
//! fresh: a member whose disk was wiped must rejoin as a non-voter until it
//! has caught up (Paxos Made Live), because it has forgotten its promises.

use std::path::{Path, PathBuf};

use crate::disk::{Disk, OsDisk};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// File name of the identity marker inside the data directory.
pub const MARKER_FILE: &str = "synod.id";
/// Subdirectory holding the write-ahead log.
pub const WAL_DIR: &str = "wal";
/// Subdirectory holding snapshots.
pub const SNAPSHOT_DIR: &str = "snap";

const MAGIC: &[u8; 8] = b"SYNODID\0";
const VERSION: u32 = 1;
const MARKER_LEN: usize = 8 + 4 + 8 + 8 + 4;

/// An opened data directory whose identity has been checked.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
    cluster_id: u64,
    member_id: u64,
    fresh: bool,
}

impl DataDir {
    /// Opens the data directory at `path` for member `member_id` of cluster
    /// `cluster_id`, creating it and its marker if it does not exist.
    ///
    /// Refuses (with [`Error::ForeignDataDir`]) a directory marked for
    /// another cluster or member, (with [`Error::UnmarkedDataDir`]) one that
    /// holds a `wal/` or `snap/` directory but no marker, and (with
    /// [`Error::Corrupt`]) a marker whose checksum fails.
    pub fn open_or_init(path: impl AsRef<Path>, cluster_id: u64, member_id: u64) -> Result<Self> {
        Self::open_or_init_on(&OsDisk, path, cluster_id, member_id)
    }

    /// Like [`DataDir::open_or_init`], on any [`Disk`] (the simulator's
    /// [`crate::SimDisk`], say).
    pub fn open_or_init_on(disk: &dyn Disk, path: impl AsRef<Path>, cluster_id: u64, member_id: u64) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        fsutil::create_dir_durable(disk, &path)?;
        let marker = path.join(MARKER_FILE);
        let fresh = match disk.read(&marker) {
            Ok(bytes) => {
                let (found_cluster, found_member) = decode_marker(&marker, &bytes)?;
                if (found_cluster, found_member) != (cluster_id, member_id) {
                    return Err(Error::ForeignDataDir {
                        path,
                        found_cluster,
                        found_member,
                        want_cluster: cluster_id,
                        want_member: member_id,
                    });
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let entries = disk.list(&path).at(&path)?;
                if entries.iter().any(|e| e.file_name().is_some_and(|n| n == WAL_DIR || n == SNAPSHOT_DIR)) {
                    return Err(Error::UnmarkedDataDir { path });
                }
                fsutil::write_atomic(disk, &path, MARKER_FILE, &encode_marker(cluster_id, member_id))?;
                true
            }
            Err(e) => return Err(Error::io(&marker, e)),
        };
        Ok(DataDir { path, cluster_id, member_id, fresh })
    }

    /// True if this call created the marker: the directory held no state,
    /// so this member remembers no promises and must rejoin as a non-voter.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the write-ahead log lives (`<dir>/wal`).
    pub fn wal_dir(&self) -> PathBuf {
        self.path.join(WAL_DIR)
    }

    /// Where snapshots live (`<dir>/snap`).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.path.join(SNAPSHOT_DIR)
    }

    /// The cluster this directory belongs to.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The member this directory belongs to.
    pub fn member_id(&self) -> u64 {
        self.member_id
    }
}

fn encode_marker(cluster_id: u64, member_id: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(MARKER_LEN);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&cluster_id.to_le_bytes());
    b.extend_from_slice(&member_id.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode_marker(path: &Path, b: &[u8]) -> Result<(u64, u64)> {
    if b.len() != MARKER_LEN || &b[..8] != MAGIC {
        return Err(Error::corrupt(path, 0, "not a Synod identity marker"));
    }
    let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let le64 = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(w)
    };
    if crc32c::crc32c(&b[..MARKER_LEN - 4]) != le32(MARKER_LEN - 4) {
        return Err(Error::corrupt(path, 0, "identity marker checksum mismatch"));
    }
    if le32(8) != VERSION {
        return Err(Error::corrupt(path, 8, format!("unknown marker version {}", le32(8))));
    }
    Ok((le64(12), le64(20)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_marker_once_written_survives_a_crash_of_the_simulated_disk() {
        for seed in 0..50 {
            let faults = crate::SimFaults { torn_write: 0.5, ..Default::default() };
            let disk = crate::SimDisk::with_faults(seed, faults);
            let dir = Path::new("/node");
            assert!(DataDir::open_or_init_on(&disk, dir, 7, 1).unwrap().is_fresh());
            disk.crash();
            let again = DataDir::open_or_init_on(&disk, dir, 7, 1).unwrap();
            assert!(!again.is_fresh(), "seed {seed}");
            let err = DataDir::open_or_init_on(&disk, dir, 7, 2).unwrap_err();
            assert!(matches!(err, Error::ForeignDataDir { .. }), "{err}");
        }
    }

    #[test]
    fn fresh_directory_is_initialised_then_recognised() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DataDir::open_or_init(&dir, 7, 1).unwrap();
        assert!(first.is_fresh());
        let again = DataDir::open_or_init(&dir, 7, 1).unwrap();
        assert!(!again.is_fresh());
        assert_eq!((again.cluster_id(), again.member_id()), (7, 1));
    }

    #[test]
    fn directory_of_another_cluster_or_member_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        DataDir::open_or_init(tmp.path(), 7, 1).unwrap();
        for (c, m) in [(8, 1), (7, 2)] {
            let err = DataDir::open_or_init(tmp.path(), c, m).unwrap_err();
            assert!(matches!(err, Error::ForeignDataDir { .. }), "{err}");
        }
    }

    #[test]
    fn unmarked_directory_with_data_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join(WAL_DIR)).unwrap();
        let err = DataDir::open_or_init(tmp.path(), 7, 1).unwrap_err();
        assert!(matches!(err, Error::UnmarkedDataDir { .. }), "{err}");
    }

    #[test]
    fn damaged_marker_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        DataDir::open_or_init(tmp.path(), 7, 1).unwrap();
        let marker = tmp.path().join(MARKER_FILE);
        let mut b = fs::read(&marker).unwrap();
        b[14] ^= 0x10;
        fs::write(&marker, b).unwrap();
        let err = DataDir::open_or_init(tmp.path(), 7, 1).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
