//! The file operations the log and the snapshot store need, as a trait.
//!
//! Everything this crate writes goes through a [`Disk`]: [`OsDisk`] in
//! production (the real filesystem, private modes, `fdatasync`, directory
//! fsync) and [`crate::SimDisk`] under the deterministic simulator (memory,
//! volatile until synced, with injected crashes, torn writes, I/O errors
//! and bit flips). The write-ahead log's logic is the same code over both,
//! so what the simulator tests is what production runs. A virtual call per
//! operation costs nothing next to the system call behind it.
//!
//! The trait is deliberately small and path-based; it must never grow an
//! operation whose durability rules [`crate::SimDisk`] cannot model.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};

/// A filesystem: files in directories, with explicit durability.
///
/// Durability rules (what [`crate::SimDisk`] enforces and a real disk may
/// do no better than): a file's content is durable only after
/// [`DiskFile::sync_data`] (or [`DiskFile::sync_all`]) of it returns; a
/// directory entry created, renamed or removed is durable only after
/// [`Disk::sync_dir`] of its directory returns.
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Creates the file at `path` (private to its owner), or truncates it to
    /// empty if it exists, and opens it for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;

    /// Opens the existing file at `path` for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;

    /// The whole content of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// Renames `from` to `to`, replacing `to` if it exists (atomically).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// The entries (files and directories) directly in `dir`, as full
    /// paths, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;

    /// Whether `path` is an existing directory.
    fn is_dir(&self, path: &Path) -> bool;

    /// Creates `dir` and any missing parents, private to their owner.
    /// Succeeds if it already exists.
    fn create_dir(&self, dir: &Path) -> io::Result<()>;

    /// Makes the entries of `dir` created, renamed or removed so far
    /// durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file of a [`Disk`].
pub trait DiskFile: Send + Sync + std::fmt::Debug {
    /// Writes all of `buf` at byte `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were
    /// read (0 at or past the end of the file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// The file's current size in bytes.
    fn size(&self) -> io::Result<u64>;

    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes the file's content (and its size) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;

    /// Like [`DiskFile::sync_data`], and the rest of the file's metadata
    /// too: `fsync`.
    fn sync_all(&self) -> io::Result<()>;
}

/// The real filesystem, as the storage crate has always used it: files
/// 0600, directories 0700, `fdatasync` for data and `fsync` of the
/// directory for entries.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsDisk;

impl OsDisk {
    /// The real filesystem, shareable as an `Arc<dyn Disk>`.
    pub fn shared() -> std::sync::Arc<dyn Disk> {
        std::sync::Arc::new(OsDisk)
    }
}

/// An open file of the real filesystem.
#[derive(Debug)]
struct OsFile(File);

impl Disk for OsDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(PRIVATE_FILE_MODE).open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(OsFile(OpenOptions::new().read(true).write(true).open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(PRIVATE_DIR_MODE).create(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl DiskFile for OsFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

/// Reads a [`DiskFile`] sequentially from an offset, as `std::io::Read`
/// (wrap it in a `BufReader` for small reads).
#[derive(Debug)]
pub(crate) struct DiskReader {
    pub file: Box<dyn DiskFile>,
    pub offset: u64,
}

impl io::Read for DiskReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn os_disk_creates_private_files_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        OsDisk.create_dir(&dir).unwrap();
        assert!(OsDisk.is_dir(&dir));
        let path = dir.join("f");
        let f = OsDisk.create(&path).unwrap();
        f.write_at(b"hello", 3).unwrap();
        f.sync_data().unwrap();
        OsDisk.sync_dir(&dir).unwrap();
        assert_eq!(OsDisk.read(&path).unwrap(), b"\0\0\0hello");
        assert_eq!(f.size().unwrap(), 8);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(&dir)), (PRIVATE_FILE_MODE, PRIVATE_DIR_MODE));
        OsDisk.rename(&path, &dir.join("g")).unwrap();
        assert_eq!(OsDisk.list(&dir).unwrap(), vec![dir.join("g")]);
        OsDisk.remove(&dir.join("g")).unwrap();
        assert!(OsDisk.list(&dir).unwrap().is_empty());
    }
}
