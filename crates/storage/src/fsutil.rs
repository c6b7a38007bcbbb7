//! Small filesystem helpers shared by the WAL, the snapshot store and the
//! data-directory marker: directory fsync, atomic file replacement, and
//! private modes.
//!
//! A rename is only durable once the directory holding it is fsynced; every
//! file this crate creates goes through these helpers for that reason. And
//! every file and directory it creates is private to the owner (etcd's
//! `PrivateFileMode` and `PrivateDirMode`): a log holds every value ever
//! written, which is no business of other local users. The helpers work on
//! any [`Disk`], so the simulator's disk gets the same sequence of calls.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::disk::{Disk, OsDisk};
use crate::error::{IoContext, Result};

/// Mode of every file created in a data directory.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every directory created for a data directory.
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and parents, all private) if missing; makes an existing
/// one private. Returns the permission bits it had if they were wider.
pub(crate) fn private_dir(dir: &Path) -> Result<Option<u32>> {
    create_dir_durable(&OsDisk, dir)?;
    let mode = fs::metadata(dir).at(dir)?.permissions().mode() & 0o7777;
    if mode & !PRIVATE_DIR_MODE == 0 {
        return Ok(None);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode & PRIVATE_DIR_MODE)).at(dir)?;
    Ok(Some(mode))
}

/// Fsyncs a directory so that entries created, renamed or removed in it
/// survive a crash.
pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<()> {
    disk.sync_dir(dir).at(dir)
}

/// Replaces `dir/name` with `bytes` atomically: write a temporary file,
/// fsync it, rename it over the target, fsync the directory. A crash leaves
/// either the old content or the new one, never a mix.
pub(crate) fn write_atomic(disk: &dyn Disk, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let f = disk.create(&tmp).at(&tmp)?;
    f.write_at(bytes, 0).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    disk.rename(&tmp, &target).at(&target)?;
    sync_dir(disk, dir)
}

/// Creates `dir` (and parents, all private) if missing, fsyncing the parent
/// so the new directory entry is durable.
pub(crate) fn create_dir_durable(disk: &dyn Disk, dir: &Path) -> Result<()> {
    if !disk.is_dir(dir) {
        disk.create_dir(dir).at(dir)?;
    }
    // Synced even when the directory was there: an earlier call may have
    // created it and failed before this sync.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(disk, parent)?;
    }
    Ok(())
}

/// Removes leftover `*.tmp` files from an interrupted atomic write.
pub(crate) fn remove_tmp_files(disk: &dyn Disk, dir: &Path) -> Result<()> {
    for path in disk.list(dir).at(dir)? {
        if path.extension().is_some_and(|e| e == "tmp") {
            disk.remove(&path).at(&path)?;
        }
    }
    Ok(())
}
