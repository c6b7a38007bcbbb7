//! Snapshots: save, load, stream out in chunks, receive and install.
//!
//! A snapshot is opaque bytes plus the `index` (slot or LSN) it covers. On
//! disk it is `<index>.snap`: the data followed by a 32-byte footer
//! (magic, index, length, crc32c of the data, crc32c of the footer).
//! A snapshot becomes visible only by an atomic rename after an fsync, so a
//! crash leaves either the whole snapshot or none of it; a snapshot that
//! fails its checksum is never returned as valid.
//!
//! A receiver writes chunks to `<index>-<len>-<crc>.part`, which survives a
//! broken connection (and a restart), so a transfer resumes at
//! [`SnapshotReceiver::offset`] instead of starting over.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::disk::{Disk, DiskFile, OsDisk};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

const MAGIC: &[u8; 8] = b"SYNSNAP1";
const FOOTER_LEN: u64 = 32;
const SNAP_EXT: &str = "snap";
const PART_EXT: &str = "part";

/// Identity of a stored (or announced) snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotMeta {
    /// The slot/LSN the snapshot covers (everything up to and including it).
    pub index: u64,
    /// Length of the snapshot data in bytes.
    pub len: u64,
    /// crc32c of the data.
    pub crc: u32,
}

/// A directory of snapshots, keeping the newest `keep`.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    keep: usize,
}

impl SnapshotStore {
    /// Opens (creating) the snapshot directory; at most `keep` (>= 1)
    /// snapshots are retained after each save or install.
    pub fn open(dir: impl AsRef<Path>, keep: usize) -> Result<Self> {
        Self::open_on(OsDisk::shared(), dir, keep)
    }

    /// Like [`SnapshotStore::open`], on any [`Disk`] (the simulator's
    /// [`crate::SimDisk`], say).
    pub fn open_on(disk: Arc<dyn Disk>, dir: impl AsRef<Path>, keep: usize) -> Result<Self> {
        assert!(keep >= 1, "SnapshotStore must keep at least one snapshot");
        let dir = dir.as_ref().to_path_buf();
        fsutil::create_dir_durable(&*disk, &dir)?;
        fsutil::remove_tmp_files(&*disk, &dir)?;
        // What is listed here must stay listed (an earlier save may have
        // renamed a snapshot into place and failed before its directory
        // sync).
        fsutil::sync_dir(&*disk, &dir)?;
        Ok(SnapshotStore { disk, dir, keep })
    }

    /// Saves `data` as the snapshot covering `index`, atomically and
    /// durably, then prunes old snapshots.
    pub fn save(&self, index: u64, data: &[u8]) -> Result<SnapshotMeta> {
        let meta = SnapshotMeta { index, len: data.len() as u64, crc: crc32c::crc32c(data) };
        let tmp = self.dir.join(format!("{index:020}.{SNAP_EXT}.tmp"));
        let f = self.disk.create(&tmp).at(&tmp)?;
        f.write_at(data, 0).at(&tmp)?;
        f.write_at(&encode_footer(&meta), meta.len).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        drop(f);
        self.install(&tmp, &meta)?;
        Ok(meta)
    }

    fn snap_path(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{index:020}.{SNAP_EXT}"))
    }

    fn install(&self, from: &Path, meta: &SnapshotMeta) -> Result<()> {
        let target = self.snap_path(meta.index);
        self.disk.rename(from, &target).at(&target)?;
        fsutil::sync_dir(&*self.disk, &self.dir)?;
        self.prune()
    }

    /// Snapshots whose footer is intact, newest (highest index) first. Their
    /// data is not verified here; [`SnapshotStore::load`] and
    /// [`SnapshotStore::latest`] do that.
    pub fn list(&self) -> Result<Vec<SnapshotMeta>> {
        let mut out = Vec::new();
        for path in self.files(SNAP_EXT)? {
            if let Ok(meta) = read_footer(&*self.disk, &path) {
                out.push(meta);
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.index));
        Ok(out)
    }

    fn files(&self, ext: &str) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for path in self.disk.list(&self.dir).at(&self.dir)? {
            if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// The newest snapshot that passes full verification, if any. Damaged
    /// newer ones are skipped; the caller must then check its log still
    /// reaches back to the returned index.
    pub fn latest(&self) -> Result<Option<SnapshotMeta>> {
        for meta in self.list()? {
            if self.verify(&meta).is_ok() {
                return Ok(Some(meta));
            }
        }
        Ok(None)
    }

    /// Loads the newest valid snapshot and its data.
    pub fn load_latest(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>> {
        for meta in self.list()? {
            if let Ok(data) = self.load(&meta) {
                return Ok(Some((meta, data)));
            }
        }
        Ok(None)
    }

    /// Reads and verifies the data of snapshot `meta`.
    pub fn load(&self, meta: &SnapshotMeta) -> Result<Vec<u8>> {
        let path = self.snap_path(meta.index);
        let mut data = self.disk.read(&path).at(&path)?;
        data.truncate(meta.len as usize);
        check_data(&path, meta, data.len() as u64, crc32c::crc32c(&data))?;
        Ok(data)
    }

    fn verify(&self, meta: &SnapshotMeta) -> Result<()> {
        let path = self.snap_path(meta.index);
        let on_disk = read_footer(&*self.disk, &path)?;
        if on_disk != *meta {
            return Err(Error::corrupt(&path, 0, "snapshot footer does not match"));
        }
        let (len, crc) = crc_of_file(&*self.disk.open(&path).at(&path)?, &path, meta.len)?;
        check_data(&path, meta, len, crc)
    }

    /// Opens snapshot `meta` for reading in chunks (to stream to a peer).
    /// The open file stays readable even if the snapshot is pruned meanwhile.
    pub fn reader(&self, meta: &SnapshotMeta) -> Result<SnapshotReader> {
        let path = self.snap_path(meta.index);
        let file = self.disk.open(&path).at(&path)?;
        if read_footer(&*self.disk, &path)? != *meta {
            return Err(Error::corrupt(&path, 0, "snapshot footer does not match"));
        }
        Ok(SnapshotReader { file, path, meta: *meta })
    }

    /// Starts, or resumes, receiving snapshot `meta` from a peer. If a
    /// partial transfer of the very same snapshot exists (even from before a
    /// restart), it continues from [`SnapshotReceiver::offset`].
    pub fn receive(&self, meta: SnapshotMeta) -> Result<SnapshotReceiver> {
        let path = self.dir.join(format!("{:020}-{:x}-{:08x}.{PART_EXT}", meta.index, meta.len, meta.crc));
        // Resume a partial file if there is one (never truncate it).
        let file = match self.disk.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.disk.create(&path).at(&path)?,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut have = file.size().at(&path)?;
        if have > meta.len {
            file.set_len(0).at(&path)?;
            have = 0;
        }
        let (len, crc) = crc_of_file(&*file, &path, have)?;
        Ok(SnapshotReceiver { store: self.clone(), file, path, meta, offset: len, crc })
    }

    /// Keeps the newest `keep` snapshots; removes older ones and partial
    /// transfers that a newer installed snapshot has made pointless.
    fn prune(&self) -> Result<()> {
        let mut snaps: Vec<(u64, PathBuf)> =
            self.files(SNAP_EXT)?.into_iter().filter_map(|p| Some((index_of(&p)?, p))).collect();
        snaps.sort_by_key(|s| std::cmp::Reverse(s.0));
        let newest = snaps.first().map(|s| s.0);
        for (_, path) in snaps.iter().skip(self.keep) {
            self.disk.remove(path).at(path)?;
        }
        for path in self.files(PART_EXT)? {
            if index_of(&path).zip(newest).is_some_and(|(i, n)| i <= n) {
                self.disk.remove(&path).at(&path)?;
            }
        }
        fsutil::sync_dir(&*self.disk, &self.dir)
    }
}

/// Reads a stored snapshot in chunks, for streaming to a lagging peer.
#[derive(Debug)]
pub struct SnapshotReader {
    file: Box<dyn DiskFile>,
    path: PathBuf,
    meta: SnapshotMeta,
}

impl SnapshotReader {
    /// The snapshot being read; send it first so the peer can
    /// [`SnapshotStore::receive`] it.
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// Up to `max_len` bytes of data from `offset`; empty at or past the end.
    pub fn read_chunk(&self, offset: u64, max_len: usize) -> Result<Vec<u8>> {
        let end = self.meta.len.min(offset.saturating_add(max_len as u64));
        let n = end.saturating_sub(offset) as usize;
        let mut buf = vec![0u8; n];
        read_exact_at(&*self.file, &mut buf, offset).at(&self.path)?;
        Ok(buf)
    }
}

/// Receives a snapshot chunk by chunk into a partial file, then verifies
/// and installs it atomically.
#[derive(Debug)]
pub struct SnapshotReceiver {
    store: SnapshotStore,
    file: Box<dyn DiskFile>,
    path: PathBuf,
    meta: SnapshotMeta,
    offset: u64,
    crc: u32,
}

impl SnapshotReceiver {
    /// Bytes received so far: ask the sender to continue from here.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The snapshot being received.
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// Writes a chunk that starts at `offset`. Re-sent bytes already held
    /// are ignored; a chunk starting beyond [`SnapshotReceiver::offset`] is
    /// refused with [`Error::ChunkOutOfOrder`].
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset > self.offset {
            return Err(Error::ChunkOutOfOrder { expected: self.offset, got: offset });
        }
        let skip = ((self.offset - offset) as usize).min(data.len());
        let fresh = &data[skip..];
        if self.offset + fresh.len() as u64 > self.meta.len {
            return Err(Error::SnapshotMismatch {
                index: self.meta.index,
                reason: format!("data runs past the announced length {}", self.meta.len),
            });
        }
        self.file.write_at(fresh, self.offset).at(&self.path)?;
        self.crc = crc32c::crc32c_append(self.crc, fresh);
        self.offset += fresh.len() as u64;
        Ok(())
    }

    /// Verifies length and checksum, then installs the snapshot atomically
    /// and durably. On a checksum mismatch the partial file is removed (the
    /// transfer must restart from 0).
    pub fn finish(self) -> Result<SnapshotMeta> {
        let meta = self.meta;
        if self.offset != meta.len {
            return Err(Error::SnapshotMismatch {
                index: meta.index,
                reason: format!("only {} of {} bytes received", self.offset, meta.len),
            });
        }
        if self.crc != meta.crc {
            drop(self.file);
            self.store.disk.remove(&self.path).at(&self.path)?;
            return Err(Error::SnapshotMismatch {
                index: meta.index,
                reason: "checksum mismatch; the transfer restarts from 0".into(),
            });
        }
        self.file.write_at(&encode_footer(&meta), meta.len).at(&self.path)?;
        self.file.sync_all().at(&self.path)?;
        drop(self.file);
        self.store.install(&self.path, &meta)?;
        Ok(meta)
    }
}

fn index_of(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.get(..20)?.parse().ok()
}

fn encode_footer(meta: &SnapshotMeta) -> [u8; FOOTER_LEN as usize] {
    let mut f = [0u8; FOOTER_LEN as usize];
    f[..8].copy_from_slice(MAGIC);
    f[8..16].copy_from_slice(&meta.index.to_le_bytes());
    f[16..24].copy_from_slice(&meta.len.to_le_bytes());
    f[24..28].copy_from_slice(&meta.crc.to_le_bytes());
    let crc = crc32c::crc32c(&f[..28]);
    f[28..32].copy_from_slice(&crc.to_le_bytes());
    f
}

/// Reads exactly `buf.len()` bytes at `offset`.
fn read_exact_at(file: &dyn DiskFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset)? {
            0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than expected")),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

fn read_footer(disk: &dyn Disk, path: &Path) -> Result<SnapshotMeta> {
    let file = disk.open(path).at(path)?;
    let size = file.size().at(path)?;
    if size < FOOTER_LEN {
        return Err(Error::corrupt(path, 0, "file too short for a snapshot footer"));
    }
    let at = size - FOOTER_LEN;
    let mut f = [0u8; FOOTER_LEN as usize];
    read_exact_at(&*file, &mut f, at).at(path)?;
    let le64 = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&f[o..o + 8]);
        u64::from_le_bytes(w)
    };
    let le32 = |o: usize| u32::from_le_bytes([f[o], f[o + 1], f[o + 2], f[o + 3]]);
    if &f[..8] != MAGIC || crc32c::crc32c(&f[..28]) != le32(28) {
        return Err(Error::corrupt(path, at, "snapshot footer damaged"));
    }
    let meta = SnapshotMeta { index: le64(8), len: le64(16), crc: le32(24) };
    if meta.len != at || index_of(path) != Some(meta.index) {
        return Err(Error::corrupt(path, at, "snapshot footer disagrees with the file"));
    }
    Ok(meta)
}

/// crc32c of the first `len` bytes of `file` (at `path`), and how many
/// bytes there were.
fn crc_of_file(file: &dyn DiskFile, path: &Path, len: u64) -> Result<(u64, u32)> {
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let (mut n, mut crc) = (0u64, 0u32);
    while n < len {
        let want = ((len - n) as usize).min(buf.len());
        let k = file.read_at(&mut buf[..want], n).at(path)?;
        if k == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buf[..k]);
        n += k as u64;
    }
    Ok((n, crc))
}

fn check_data(path: &Path, meta: &SnapshotMeta, len: u64, crc: u32) -> Result<()> {
    if len != meta.len || crc != meta.crc {
        return Err(Error::corrupt(path, 0, "snapshot data checksum mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn saved_snapshot_loads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path(), 2).unwrap();
        assert_eq!(store.load_latest().unwrap(), None);
        store.save(10, &data(1000)).unwrap();
        let (meta, bytes) = store.load_latest().unwrap().unwrap();
        assert_eq!((meta.index, bytes), (10, data(1000)));
    }

    #[test]
    fn only_the_newest_n_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path(), 2).unwrap();
        for i in [5, 10, 15] {
            store.save(i, &data(i as usize)).unwrap();
        }
        let idx: Vec<u64> = store.list().unwrap().iter().map(|m| m.index).collect();
        assert_eq!(idx, vec![15, 10]);
    }

    #[test]
    fn damaged_newest_snapshot_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path(), 3).unwrap();
        store.save(1, b"old").unwrap();
        store.save(2, b"new!").unwrap();
        let p = tmp.path().join(format!("{:020}.snap", 2));
        let mut b = fs::read(&p).unwrap();
        b[0] ^= 1;
        fs::write(&p, b).unwrap();
        let (meta, bytes) = store.load_latest().unwrap().unwrap();
        assert_eq!((meta.index, bytes), (1, b"old".to_vec()));
        assert_eq!(store.latest().unwrap().map(|m| m.index), Some(1));
    }

    #[test]
    fn streamed_snapshot_resumes_after_a_broken_connection() {
        let src_dir = tempfile::tempdir().unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let src = SnapshotStore::open(src_dir.path(), 1).unwrap();
        let dst = SnapshotStore::open(dst_dir.path(), 1).unwrap();
        let meta = src.save(42, &data(10_000)).unwrap();
        let reader = src.reader(&meta).unwrap();

        // First connection: three chunks, then it breaks.
        let mut rx = dst.receive(reader.meta()).unwrap();
        for _ in 0..3 {
            let off = rx.offset();
            rx.write_chunk(off, &reader.read_chunk(off, 1500).unwrap()).unwrap();
        }
        drop(rx);

        // Second connection (even after a restart): resume where it stopped.
        let dst = SnapshotStore::open(dst_dir.path(), 1).unwrap();
        let mut rx = dst.receive(meta).unwrap();
        assert_eq!(rx.offset(), 4500);
        // A re-sent overlapping chunk is harmless.
        rx.write_chunk(3000, &reader.read_chunk(3000, 2000).unwrap()).unwrap();
        assert!(matches!(rx.write_chunk(9000, b"x"), Err(Error::ChunkOutOfOrder { .. })));
        while rx.offset() < meta.len {
            let off = rx.offset();
            rx.write_chunk(off, &reader.read_chunk(off, 1500).unwrap()).unwrap();
        }
        rx.finish().unwrap();
        let (got, bytes) = dst.load_latest().unwrap().unwrap();
        assert_eq!((got, bytes), (meta, data(10_000)));
        assert!(dst.files(PART_EXT).unwrap().is_empty());
    }

    #[test]
    fn received_snapshot_with_bad_checksum_is_not_installed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(tmp.path(), 1).unwrap();
        let meta = SnapshotMeta { index: 3, len: 4, crc: crc32c::crc32c(b"abcd") };
        let mut rx = store.receive(meta).unwrap();
        rx.write_chunk(0, b"abce").unwrap();
        assert!(matches!(rx.finish(), Err(Error::SnapshotMismatch { .. })));
        assert_eq!(store.load_latest().unwrap(), None);
        // The next attempt starts from scratch.
        assert_eq!(store.receive(meta).unwrap().offset(), 0);
    }

    /// Saves on a faulty simulated disk with crashes in between: the newest
    /// snapshot whose save returned is always loaded back (or a newer one),
    /// with its exact data; a torn or unsynced one never is.
    #[test]
    fn saved_snapshots_survive_crashes_on_the_simulated_disk() {
        use crate::{SimDisk, SimFaults};
        let dir = Path::new("/node/snap");
        let mut loaded = 0;
        for seed in 0..200 {
            let faults = SimFaults { write_error: 0.05, sync_error: 0.1, torn_write: 0.8, bit_flip_on_crash: 0.0 };
            let disk = SimDisk::with_faults(seed, faults);
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut saved: Option<u64> = None;
            for index in 1..=20u64 {
                let open = SnapshotStore::open_on(disk.as_disk(), dir, 2);
                let Ok(store) = open else {
                    disk.crash();
                    continue;
                };
                if store.save(index, &data(index as usize * 100)).is_ok() {
                    saved = Some(index);
                }
                if rng.bool() {
                    disk.crash();
                    let Ok(store) = SnapshotStore::open_on(disk.as_disk(), dir, 2) else { continue };
                    let got = store.load_latest().unwrap();
                    if let Some(want) = saved {
                        let (meta, bytes) = got.unwrap_or_else(|| panic!("seed {seed}: snapshot {want} lost"));
                        assert!(meta.index >= want, "seed {seed}: {} loaded, {want} was saved", meta.index);
                        assert_eq!(bytes, data(meta.index as usize * 100), "seed {seed}");
                        loaded += 1;
                    }
                }
            }
        }
        assert!(loaded > 500, "{loaded}");
    }

    #[test]
    fn a_flipped_bit_in_a_simulated_snapshot_is_never_loaded() {
        use crate::SimDisk;
        let dir = Path::new("/node/snap");
        for seed in 0..50 {
            let disk = SimDisk::new(seed);
            let store = SnapshotStore::open_on(disk.as_disk(), dir, 3).unwrap();
            store.save(1, &data(500)).unwrap();
            store.save(2, &data(700)).unwrap();
            let newest = dir.join(format!("{:020}.snap", 2));
            let len = disk.durable_content(&newest).unwrap().len() as u64;
            disk.flip_bit_at(&newest, seed * 7919 % len, (seed % 8) as u8).unwrap();
            disk.crash();
            let store = SnapshotStore::open_on(disk.as_disk(), dir, 3).unwrap();
            let (meta, bytes) = store.load_latest().unwrap().unwrap();
            assert_eq!((meta.index, bytes), (1, data(500)), "seed {seed}");
        }
    }
}
