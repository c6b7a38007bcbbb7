//! An in-memory, fault-injecting [`Disk`] for the deterministic simulator.
//!
//! [`SimDisk`] keeps files in memory and remembers, for each, what is
//! durable and what was written since its last sync. [`SimDisk::crash`]
//! throws the unsynced part away, as a power cut does, except that with a
//! configured probability a torn prefix of it survives (the writes in
//! order, the last one cut at an arbitrary byte), as a real crash can
//! leave. Directory entries (files created, renamed, removed) are likewise
//! volatile until their directory is synced, and a crash keeps a prefix of
//! the unsynced ones in the order they were made (as a journaling
//! filesystem does). Directories themselves are durable once created.
//!
//! Faults: I/O errors on writes and syncs (by probability, or one-shot),
//! and bit flips in durable content ([`SimDisk::flip_bit`]). Every random
//! choice comes from one generator seeded at construction: the same seed
//! and the same sequence of calls give the same disk, byte for byte. It
//! never reads a clock and starts no thread. Counters of what was injected
//! are in [`SimDisk::stats`].
//!
//! A crash also invalidates every file handle opened before it (their
//! operations then fail), because the process that held them is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::disk::{Disk, DiskFile};

/// Probabilities of the faults a [`SimDisk`] injects on its own. All zero
/// by default: a `SimDisk` then only loses what a crash may lose.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimFaults {
    /// Probability that a [`DiskFile::write_at`] fails with EIO (writing
    /// nothing).
    pub write_error: f64,
    /// Probability that a sync ([`DiskFile::sync_data`],
    /// [`DiskFile::sync_all`], [`Disk::sync_dir`]) fails with EIO (making
    /// nothing durable).
    pub sync_error: f64,
    /// At a crash, the probability that each file with unsynced writes keeps
    /// a torn prefix of them (instead of none), and that a prefix of the
    /// unsynced directory changes survives (instead of none).
    pub torn_write: f64,
    /// At a crash, the probability that one bit of durable content flips
    /// (see [`SimDisk::flip_bit`]).
    pub bit_flip_on_crash: f64,
}

/// What a [`SimDisk`] has done and injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    /// Successful `write_at` calls.
    pub writes: u64,
    /// Successful syncs of files and directories.
    pub syncs: u64,
    /// Writes failed with an injected EIO.
    pub write_errors: u64,
    /// Syncs failed with an injected EIO.
    pub sync_errors: u64,
    /// Crashes.
    pub crashes: u64,
    /// Files that kept a torn prefix of their unsynced writes at a crash.
    pub torn_writes: u64,
    /// Unsynced writes (and length changes) lost, wholly or in part, at
    /// crashes.
    pub lost_writes: u64,
    /// Unsynced directory changes lost at crashes.
    pub lost_dir_changes: u64,
    /// Bits flipped.
    pub bit_flips: u64,
}

/// One bit flipped by [`SimDisk::flip_bit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitFlip {
    /// The file.
    pub path: PathBuf,
    /// Byte offset in it.
    pub offset: u64,
    /// Which bit of that byte (0 = least significant).
    pub bit: u8,
}

/// A change to a file not yet made durable.
#[derive(Debug, Clone)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl FileOp {
    fn apply(&self, content: &mut Vec<u8>) {
        match self {
            FileOp::Write { offset, data } => write_into(content, *offset, data),
            FileOp::SetLen(len) => content.resize(*len as usize, 0),
        }
    }
}

fn write_into(content: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[start..end].copy_from_slice(data);
}

#[derive(Debug, Default)]
struct Inode {
    /// What survives a crash.
    durable: Vec<u8>,
    /// What reads see: `durable` with `pending` applied.
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

/// A change to directory entries not yet made durable.
#[derive(Debug, Clone)]
enum DirOp {
    Link { path: PathBuf, ino: u64 },
    Unlink { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl DirOp {
    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Link { path, ino } => {
                names.insert(path.clone(), *ino);
            }
            DirOp::Unlink { path } => {
                names.remove(path);
            }
            DirOp::Rename { from, to } => {
                if let Some(ino) = names.remove(from) {
                    names.insert(to.clone(), ino);
                }
            }
        }
    }

    /// Whether a sync of `dir` makes this change durable.
    fn in_dir(&self, dir: &Path) -> bool {
        let parent_is = |p: &PathBuf| p.parent() == Some(dir);
        match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path } => parent_is(path),
            DirOp::Rename { from, to } => parent_is(from) || parent_is(to),
        }
    }
}

#[derive(Debug)]
struct State {
    rng: fastrand::Rng,
    faults: SimFaults,
    fail_next_write: bool,
    fail_next_sync: bool,
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    /// File names as the running system sees them.
    names: BTreeMap<PathBuf, u64>,
    /// File names as a crash would leave them.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Directory changes not yet synced, in the order they were made.
    pending_dir: Vec<DirOp>,
    dirs: BTreeSet<PathBuf>,
    /// Bumped by each crash; handles from an earlier epoch are stale.
    epoch: u64,
    stats: SimDiskStats,
}

impl State {
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    fn injected_write_error(&mut self) -> io::Result<()> {
        let p = self.faults.write_error;
        if std::mem::take(&mut self.fail_next_write) || self.chance(p) {
            self.stats.write_errors += 1;
            return Err(io::Error::other("simulated EIO on write"));
        }
        Ok(())
    }

    fn injected_sync_error(&mut self) -> io::Result<()> {
        let p = self.faults.sync_error;
        if std::mem::take(&mut self.fail_next_sync) || self.chance(p) {
            self.stats.sync_errors += 1;
            return Err(io::Error::other("simulated EIO on sync"));
        }
        Ok(())
    }

    /// A new name at `path` needs an existing directory above it and no
    /// directory of that name.
    fn check_parent(&self, path: &Path) -> io::Result<()> {
        if self.dirs.contains(path) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{} is a directory", path.display())));
        }
        match path.parent() {
            Some(dir) if self.dirs.contains(dir) => Ok(()),
            _ => Err(not_found(path)),
        }
    }

    fn flip(&mut self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let ino = *self.durable_names.get(path).ok_or_else(|| not_found(path))?;
        let inode = self.inodes.get_mut(&ino).ok_or_else(|| not_found(path))?;
        let at = offset as usize;
        if at >= inode.durable.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bit flip beyond the durable content"));
        }
        inode.durable[at] ^= 1 << (bit % 8);
        // Reads see the medium as changed, under any unsynced writes.
        let mut current = inode.durable.clone();
        for op in &inode.pending {
            op.apply(&mut current);
        }
        inode.current = current;
        self.stats.bit_flips += 1;
        Ok(())
    }

    fn flip_random(&mut self) -> Option<BitFlip> {
        let candidates: Vec<(PathBuf, u64)> = self
            .durable_names
            .iter()
            .filter_map(|(p, ino)| {
                let len = self.inodes.get(ino)?.durable.len() as u64;
                (len > 0).then(|| (p.clone(), len))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, len) = candidates[self.rng.usize(..candidates.len())].clone();
        let offset = self.rng.u64(..len);
        let bit = self.rng.u8(..8);
        self.flip(&path, offset, bit).ok()?;
        Some(BitFlip { path, offset, bit })
    }

    fn crash(&mut self) {
        self.epoch += 1;
        self.stats.crashes += 1;
        // Directory changes: a prefix, in order, if any.
        let ops = std::mem::take(&mut self.pending_dir);
        let keep =
            if !ops.is_empty() && self.chance(self.faults.torn_write) { self.rng.usize(..=ops.len()) } else { 0 };
        for op in &ops[..keep] {
            op.apply(&mut self.durable_names);
        }
        self.stats.lost_dir_changes += (ops.len() - keep) as u64;
        self.names = self.durable_names.clone();
        // File contents: durable part, maybe plus a torn prefix of the rest.
        let live: BTreeSet<u64> = self.durable_names.values().copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        let torn_p = self.faults.torn_write;
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in inos {
            let pending = match self.inodes.get_mut(&ino) {
                Some(inode) => std::mem::take(&mut inode.pending),
                None => continue,
            };
            if pending.is_empty() {
                continue;
            }
            let mut lost = pending.len() as u64;
            let mut survivors: Vec<FileOp> = Vec::new();
            if self.chance(torn_p) {
                let k = self.rng.usize(1..=pending.len());
                survivors.extend_from_slice(&pending[..k - 1]);
                lost -= (k - 1) as u64;
                match &pending[k - 1] {
                    FileOp::Write { offset, data } => {
                        let cut = self.rng.usize(..=data.len());
                        if cut == data.len() {
                            lost -= 1;
                        }
                        survivors.push(FileOp::Write { offset: *offset, data: data[..cut].to_vec() });
                    }
                    op @ FileOp::SetLen(_) => {
                        lost -= 1;
                        survivors.push(op.clone());
                    }
                }
                self.stats.torn_writes += 1;
            }
            self.stats.lost_writes += lost;
            if let Some(inode) = self.inodes.get_mut(&ino) {
                for op in &survivors {
                    op.apply(&mut inode.durable);
                }
                inode.current = inode.durable.clone();
            }
        }
        if self.chance(self.faults.bit_flip_on_crash) {
            self.flip_random();
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

/// An in-memory disk with crashes and injected faults; see the module
/// documentation. Clones share the same disk.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the file contents: a log's worth of bytes helps no one.
        let st = self.lock();
        f.debug_struct("SimDisk")
            .field("files", &st.names.len())
            .field("faults", &st.faults)
            .field("stats", &st.stats)
            .finish()
    }
}

impl SimDisk {
    /// An empty disk whose random choices all come from `seed`, with no
    /// faults beyond what a crash loses.
    pub fn new(seed: u64) -> Self {
        Self::with_faults(seed, SimFaults::default())
    }

    /// An empty disk with the given fault probabilities.
    pub fn with_faults(seed: u64, faults: SimFaults) -> Self {
        let state = State {
            rng: fastrand::Rng::with_seed(seed),
            faults,
            fail_next_write: false,
            fail_next_sync: false,
            inodes: BTreeMap::new(),
            next_ino: 1,
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            pending_dir: Vec::new(),
            dirs: BTreeSet::new(),
            epoch: 0,
            stats: SimDiskStats::default(),
        };
        SimDisk { state: Arc::new(Mutex::new(state)) }
    }

    /// This disk as the `Arc<dyn Disk>` that [`crate::Wal::open_on`] takes
    /// (sharing the same disk).
    pub fn as_disk(&self) -> Arc<dyn Disk> {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation completes under the lock; a panic elsewhere leaves
        // the state consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the fault probabilities.
    pub fn set_faults(&self, faults: SimFaults) {
        self.lock().faults = faults;
    }

    /// The current fault probabilities.
    pub fn faults(&self) -> SimFaults {
        self.lock().faults
    }

    /// Makes the next [`DiskFile::write_at`] fail with EIO.
    pub fn fail_next_write(&self) {
        self.lock().fail_next_write = true;
    }

    /// Makes the next sync (of a file or a directory) fail with EIO.
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// Power cut and restart: unsynced writes and directory changes are
    /// lost, except torn prefixes kept with probability
    /// [`SimFaults::torn_write`]; maybe a bit flips
    /// ([`SimFaults::bit_flip_on_crash`]). Handles opened before now fail
    /// from now on.
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// Flips one random bit in the durable content of a random non-empty
    /// file (as media decay would); `None` if every file is empty.
    pub fn flip_bit(&self) -> Option<BitFlip> {
        self.lock().flip_random()
    }

    /// Flips bit `bit` (0-7) of byte `offset` of the durable content of
    /// `path`.
    pub fn flip_bit_at(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        self.lock().flip(path, offset, bit)
    }

    /// Counters of what was done and injected so far.
    pub fn stats(&self) -> SimDiskStats {
        self.lock().stats
    }

    /// The content of `path` that a crash now would keep for certain (its
    /// synced content, if its name is durable).
    pub fn durable_content(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.lock();
        let ino = st.durable_names.get(path)?;
        Some(st.inodes.get(ino)?.durable.clone())
    }
}

impl Disk for SimDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut st = self.lock();
        st.check_parent(path)?;
        let ino = match st.names.get(path).copied() {
            Some(ino) => {
                // O_TRUNC of an existing file: a length change, volatile
                // until synced like any other.
                if let Some(inode) = st.inodes.get_mut(&ino) {
                    inode.current.clear();
                    inode.pending.push(FileOp::SetLen(0));
                }
                ino
            }
            None => {
                let ino = st.next_ino;
                st.next_ino += 1;
                st.inodes.insert(ino, Inode::default());
                st.names.insert(path.to_path_buf(), ino);
                st.pending_dir.push(DirOp::Link { path: path.to_path_buf(), ino });
                ino
            }
        };
        Ok(Box::new(SimFile { state: self.state.clone(), ino, epoch: st.epoch, path: path.to_path_buf() }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let st = self.lock();
        let ino = *st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(Box::new(SimFile { state: self.state.clone(), ino, epoch: st.epoch, path: path.to_path_buf() }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock();
        let ino = st.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(st.inodes.get(ino).map(|i| i.current.clone()).unwrap_or_default())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check_parent(to)?;
        let ino = st.names.remove(from).ok_or_else(|| not_found(from))?;
        st.names.insert(to.to_path_buf(), ino);
        st.pending_dir.push(DirOp::Rename { from: from.to_path_buf(), to: to.to_path_buf() });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.names.remove(path).ok_or_else(|| not_found(path))?;
        st.pending_dir.push(DirOp::Unlink { path: path.to_path_buf() });
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let st = self.lock();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let in_dir = |p: &&PathBuf| p.parent() == Some(dir);
        Ok(st.names.keys().filter(in_dir).chain(st.dirs.iter().filter(in_dir)).cloned().collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.lock().dirs.contains(path)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            if st.names.contains_key(d) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} is a file", d.display())));
            }
            st.dirs.insert(d.to_path_buf());
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        st.injected_sync_error()?;
        let ops = std::mem::take(&mut st.pending_dir);
        let (now, later): (Vec<DirOp>, Vec<DirOp>) = ops.into_iter().partition(|op| op.in_dir(dir));
        for op in &now {
            op.apply(&mut st.durable_names);
        }
        st.pending_dir = later;
        st.stats.syncs += 1;
        Ok(())
    }
}

/// An open file of a [`SimDisk`].
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    /// The disk's epoch when opened; a crash since makes this handle stale.
    epoch: u64,
    path: PathBuf,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).field("epoch", &self.epoch).finish()
    }
}

impl SimFile {
    /// Runs `f` on this file's inode, unless the disk crashed since the
    /// handle was opened.
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.epoch != self.epoch || !st.inodes.contains_key(&self.ino) {
            return Err(io::Error::other(format!(
                "{}: stale handle (the simulated disk crashed since it was opened)",
                self.path.display()
            )));
        }
        f(&mut st, self.ino)
    }
}

fn inode(st: &mut State, ino: u64) -> &mut Inode {
    st.inodes.get_mut(&ino).expect("SimFile::with checked the inode exists")
}

impl DiskFile for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|st, ino| {
            st.injected_write_error()?;
            st.stats.writes += 1;
            let inode = inode(st, ino);
            write_into(&mut inode.current, offset, buf);
            inode.pending.push(FileOp::Write { offset, data: buf.to_vec() });
            Ok(())
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|st, ino| {
            let content = &inode(st, ino).current;
            let start = (offset as usize).min(content.len());
            let n = buf.len().min(content.len() - start);
            buf[..n].copy_from_slice(&content[start..start + n]);
            Ok(n)
        })
    }

    fn size(&self) -> io::Result<u64> {
        self.with(|st, ino| Ok(inode(st, ino).current.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st, ino| {
            let inode = inode(st, ino);
            inode.current.resize(len as usize, 0);
            inode.pending.push(FileOp::SetLen(len));
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|st, ino| {
            st.injected_sync_error()?;
            st.stats.syncs += 1;
            let inode = inode(st, ino);
            for op in std::mem::take(&mut inode.pending) {
                op.apply(&mut inode.durable);
            }
            debug_assert_eq!(inode.durable, inode.current, "a synced file reads back what is durable");
            Ok(())
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

#[cfg(test)]
mod tests;
