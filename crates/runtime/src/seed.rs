//! Seeding a data directory from a state: how a new cluster starts from a
//! backup (`synod snapshot restore`), in the spirit of `etcdutl snapshot
//! restore`.
//!
//! Every member of the new cluster gets a data directory marked with its
//! own cluster and member id and holding one snapshot covering slot 1: the
//! restored state stands for a first slot every member knows chosen, so
//! slot 2 onwards is decided on top of it exactly as in a cluster that
//! started empty. Because it is a real compaction point, a member that
//! later loses its disk and rejoins is sent this snapshot, not the slots
//! after it on top of an empty state. Nothing here may touch a directory
//! that already holds data.

use crate::Error;
use std::path::Path;
use synod_paxos::{NodeId, Snapshot};
use synod_storage::{DataDir, SnapshotStore, LOCK_FILE};

/// The slot a seeded state covers.
pub const SEEDED_SLOT: synod_paxos::Slot = 1;

/// Creates the data directory `path` for member `member_id` of cluster
/// `cluster_id`, starting from the state machine state `state` (the bytes
/// of its [`synod_paxos::StateMachine::snapshot`]). Refuses a directory
/// another process holds (a running member's), and a path that exists and
/// is not an empty directory.
pub fn seed_data_dir(path: &Path, cluster_id: u64, member_id: NodeId, state: &[u8]) -> Result<(), Error> {
    if path.exists() && !path.is_dir() {
        return Err(Error::Config(format!("{} exists and is not a directory", path.display())));
    }
    // Locked first, so that a directory in use is refused as such, and
    // nothing starts on it while it is being seeded.
    let _lock = crate::lock_data_dir(path)?;
    let mut entries = std::fs::read_dir(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    if entries.any(|e| e.map_or(true, |e| e.file_name() != LOCK_FILE)) {
        return Err(Error::Config(format!("data directory {} exists and is not empty", path.display())));
    }
    let dir = DataDir::open_or_init(path, cluster_id, member_id)?;
    let snap = Snapshot::from_state(SEEDED_SLOT, state);
    SnapshotStore::open(dir.snapshot_dir(), 2)?.save(snap.slot, &snap.data)?;
    Ok(())
}
