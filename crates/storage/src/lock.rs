//! The data directory's lock: one process at a time.
//!
//! Two processes on one data directory would both append to the log and
//! both answer for the same acceptor, so each would break the promises the
//! other made. The lock is an exclusive `flock` on `synod.lock` in the
//! directory, taken before anything in the directory is read or written and
//! held for as long as the replica runs. `flock` locks belong to the open
//! file, so the kernel releases the lock when the process dies however it
//! dies: a crashed member never leaves a stale lock behind.
//!
//! Taking the lock also makes the directory private (mode 0700), as etcd's
//! `fileutil.TouchDirAll` does for a new directory; a directory that exists
//! with wider modes is tightened, and the mode it had is reported so the
//! caller can warn about it (etcd 3.4 warns about it; we warn and fix it).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// File name of the lock inside the data directory.
pub const LOCK_FILE: &str = "synod.lock";

/// An exclusive lock on a data directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    /// The open lock file; closing it releases the lock.
    _file: File,
    tightened_from: Option<u32>,
}

impl DirLock {
    /// Creates `dir` if missing (mode 0700, parents included), makes it
    /// private if it is not, and locks it. Refuses, with
    /// [`Error::Locked`], a directory another process (or another
    /// [`DirLock`] in this one) holds; never waits for it.
    pub fn acquire(dir: impl AsRef<Path>) -> Result<DirLock> {
        let path = dir.as_ref().to_path_buf();
        let tightened_from = fsutil::private_dir(&path)?;
        let lock_path = path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsutil::PRIVATE_FILE_MODE)
            .open(&lock_path)
            .at(&lock_path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let holder = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(Error::Locked { path, holder });
            }
            Err(e) => return Err(Error::io(&lock_path, e.into())),
        }
        // Who holds it, for the message the next process prints. Not
        // synced: a stale pid after a crash is harmless, the lock is not.
        file.set_len(0).at(&lock_path)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).at(&lock_path)?;
        Ok(DirLock { path, _file: file, tightened_from })
    }

    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The permission bits the directory had if they were wider than 0700
    /// and this lock narrowed them, so the caller can warn.
    pub fn tightened_from(&self) -> Option<u32> {
        self.tightened_from
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_locked_directory_is_refused_until_the_lock_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DirLock::acquire(&dir).unwrap();
        let err = DirLock::acquire(&dir).unwrap_err();
        assert!(matches!(err, Error::Locked { holder: Some(pid), .. } if pid == std::process::id()), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&dir.display().to_string()) && msg.contains("another process"), "{msg}");
        drop(first);
        DirLock::acquire(&dir).unwrap();
    }

    #[test]
    fn the_directory_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("fresh");
        let lock = DirLock::acquire(&fresh).unwrap();
        assert_eq!(lock.tightened_from(), None);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join(LOCK_FILE)), 0o600);
        drop(lock);

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lock = DirLock::acquire(&open).unwrap();
        assert_eq!(lock.tightened_from(), Some(0o755));
        assert_eq!(mode(&open), 0o700);
    }
}
