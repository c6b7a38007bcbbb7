//! Durable storage for Synod: a segmented write-ahead log with group
//! commit, snapshots, and the data-directory identity marker.
//!
//! This crate stores opaque byte records and knows nothing of Paxos. The
//! runtime encodes the protocol's records (promises, accepted entries,
//! commit marks), appends them here, and releases a reply that depends on
//! them only once they are durable.
//!
//! - [`Wal`]: the file log. `append` blocks until durable; `submit` returns
//!   a [`Durable`] future for async code. A failed fsync is fatal.
//! - [`MemLog`]: the in-memory log for the simulator, with crash support.
//! - [`LogStore`]: the interface both implement.
//! - [`Disk`]: the file operations the log does, [`OsDisk`] for the real
//!   filesystem, [`SimDisk`] in memory with crashes and injected faults for
//!   the deterministic simulator. [`Wal::open_on`] runs the production log
//!   over any `Disk`, and without threads ([`WalOptions::threads`] false) it
//!   can be driven step by step from one thread.
//! - [`SnapshotStore`]: checksummed snapshots, chunked streaming, resumable
//!   receive.
//! - [`DataDir`]: the cluster/member marker and the "fresh disk" signal.
//! - [`DirLock`]: one process per data directory.
//! - [`record`]: the on-disk record format.
//!
//! The `planting` cargo feature (tests and the simulator only; production
//! never enables it) adds planted bugs that the simulator must catch:
//! `WalOptions::plant_ack_before_sync` reports records durable without
//! syncing them.
//!
//! # Using it from the runtime
//!
//! ```no_run
//! use synod_storage::{DataDir, LogStore, SnapshotStore, Wal, WalOptions};
//!
//! # async fn example() -> synod_storage::Result<()> {
//! let dir = DataDir::open_or_init("/var/lib/synod", 0xC1, 3)?;
//! if dir.is_fresh() {
//!     // No promises remembered: rejoin as a non-voter until caught up.
//! }
//! let snaps = SnapshotStore::open(dir.snapshot_dir(), 2)?;
//! let snapshot = snaps.load_latest()?; // Option<(SnapshotMeta, Vec<u8>)>
//! let (wal, recovery) = Wal::open_with(dir.wal_dir(), WalOptions::default(), |lsn, bytes| {
//!     // decode and re-apply the protocol record `bytes` stored at `lsn`
//! })?;
//! // Blocking: returns once durable (one fdatasync shared with other callers).
//! let lsn = wal.append(b"promise ballot 7")?;
//! // Async (any executor): reply to the peer only after this resolves.
//! let pending = wal.submit(b"accepted slot 9")?;
//! let lsn = pending.await?;
//! // After saving a snapshot covering `index`, compact the log below it.
//! let meta = snaps.save(lsn, b"state machine bytes")?;
//! wal.truncate_prefix(meta.index)?;
//! # Ok(()) }
//! ```
//!
//! # Under the deterministic simulator
//!
//! The same log, over a simulated disk and without threads: nothing is
//! durable until the simulator syncs, and a crash loses (or tears) the
//! rest. Give each simulated node its own [`SimDisk`] (a crash takes down
//! the whole disk), seeded from the simulation's seed.
//!
//! ```
//! use synod_storage::{LogStore, SimDisk, SimFaults, Wal, WalOptions};
//!
//! # fn main() -> synod_storage::Result<()> {
//! let disk = SimDisk::with_faults(42, SimFaults { torn_write: 0.5, ..SimFaults::default() });
//! let opts = WalOptions { segment_size: 4096, threads: false, ..WalOptions::default() };
//! let (wal, _) = Wal::open_on(disk.as_disk(), "/n1/wal", opts.clone(), |_, _| {})?;
//! LogStore::append(&wal, &[b"promise ballot 7"])?; // written, not durable
//! assert_eq!(wal.durable_lsn(), 0);
//! assert_eq!(LogStore::sync(&wal)?, 1); // one fdatasync: durable
//! LogStore::append(&wal, &[b"accepted slot 9"])?;
//! drop(wal);
//! disk.crash(); // record 2 may be lost, torn (cut off by recovery) or whole
//! let (wal, recovery) = Wal::open_on(disk.as_disk(), "/n1/wal", opts, |_lsn, _bytes| {})?;
//! assert!(recovery.last_lsn >= 1);
//! assert_eq!(wal.read(1, 1)?, vec![(1, b"promise ballot 7".to_vec())]);
//! # Ok(()) }
//! ```
//!
//! LSNs are this log's own sequence numbers (from 1, consecutive, never
//! reused); they are not Paxos slots. A snapshot's `index` is whatever the
//! caller chooses (the runtime will likely use the LSN it covers).
//!
//! Everything created in a data directory is private to its owner, as in
//! etcd: directories 0700, files 0600.
//!
//! # Failure model
//!
//! - A record is durable once `append` returns, `Durable` resolves, or
//!   `durable_lsn()` reaches it: its `fdatasync` has completed.
//! - A failed write or `fdatasync` puts the [`Wal`] into a failed state for
//!   good: pending and later appends return [`Error::Failed`]; the sync is
//!   never retried (the kernel may have dropped the dirty pages). Reopen the
//!   log (restart the process) to continue.
//! - On open, only the last, unacknowledged batch at the tail of the last
//!   segment may be discarded ([`Recovery::torn_tail`] says so). Any other
//!   damage refuses to open with [`Error::Corrupt`] naming file and offset.
//!   A bit flip in the very last record is indistinguishable from a torn
//!   write and is treated as one; a lost whole last segment file is not
//!   detectable without outside information (a peer's log).
//! - The disk assumed is the one [`SimDisk`] models, no better: a file's
//!   writes are durable only after its `fdatasync`; a crash may keep any
//!   prefix of the unsynced writes, the last one cut at any byte; created,
//!   renamed and removed names are durable only after a sync of their
//!   directory (a crash keeps a prefix of the unsynced ones, in order);
//!   writes and syncs may fail with EIO; durable bits may flip. The tests
//!   run the log over `SimDisk` through thousands of such crashes and check
//!   that every record reported durable comes back intact, in order.
//!   [`SimDisk`] does not model reordered writes within a file or a lying
//!   `fdatasync` (a disk cache that loses acknowledged data); no log can
//!   survive the latter.

#![warn(missing_docs)]

mod datadir;
mod disk;
mod error;
mod fsutil;
mod lock;
mod log_store;
mod mem;
pub mod record;
mod sim_disk;
mod snapshot;
mod wal;

pub use datadir::{DataDir, MARKER_FILE, SNAPSHOT_DIR, WAL_DIR};
pub use disk::{Disk, DiskFile, OsDisk};
pub use error::{Error, Result};
pub use lock::{DirLock, LOCK_FILE};
pub use log_store::LogStore;
pub use mem::MemLog;
pub use sim_disk::{BitFlip, SimDisk, SimDiskStats, SimFaults};
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotReceiver, SnapshotStore};
pub use wal::{Durable, Recovery, TornTail, Wal, WalIter, WalObserver, WalOptions, WalStats};

/// Log sequence number: the position of a record in the log, from 1.
pub type Lsn = u64;
