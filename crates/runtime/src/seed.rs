//! Seeding a data directory from a state: how a new cluster starts from a
//! backup (`synod snapshot restore`), in the spirit of `etcdutl snapshot
//! restore`.
//!
//! Every member of the new cluster gets a data directory marked with its
//! own cluster and member id and holding one snapshot at slot 0: the state
//! before the first slot. All members start from the same state, so slot 1
//! onwards is decided on top of it exactly as in a cluster that started
//! empty. Nothing here may touch a directory that already holds data.

use crate::Error;
use std::path::Path;
use synod_paxos::{NodeId, Snapshot};
use synod_storage::{DataDir, SnapshotStore};

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
    let snap = Snapshot::from_state(0, state);
    SnapshotStore::open(dir.snapshot_dir(), 2)?.save(snap.slot, &snap.data)?;
    Ok(())
}
