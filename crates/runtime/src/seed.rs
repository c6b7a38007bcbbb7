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
use synod_storage::{DataDir, SnapshotStore};

/// The slot a seeded state covers.
pub const SEEDED_SLOT: synod_paxos::Slot = 1;

/// Creates the data directory `path` for member `member_id` of cluster
/// `cluster_id`, starting from the state machine state `state` (the bytes
/// of its [`synod_paxos::StateMachine::snapshot`]). Refuses a path that
/// exists and is not an empty directory.
pub fn seed_data_dir(path: &Path, cluster_id: u64, member_id: NodeId, state: &[u8]) -> Result<(), Error> {
    if let Ok(mut entries) = std::fs::read_dir(path) {
        if entries.next().is_some() {
            return Err(Error::Config(format!("data directory {} exists and is not empty", path.display())));
        }
    } else if path.exists() {
        return Err(Error::Config(format!("{} exists and is not a directory", path.display())));
    }
    let dir = DataDir::open_or_init(path, cluster_id, member_id)?;
    let snap = Snapshot::from_state(SEEDED_SLOT, state);
    SnapshotStore::open(dir.snapshot_dir(), 2)?.save(snap.slot, &snap.data)?;
    Ok(())
}
