//! Small filesystem helpers shared by the WAL, the snapshot store and the
//! data-directory marker: directory fsync and atomic file replacement.
//!
//! A rename is only durable once the directory holding it is fsynced; every
//! file this crate creates goes through these helpers for that reason.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Fsyncs a directory so that entries created, renamed or removed in it
/// survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Replaces `dir/name` with `bytes` atomically: write a temporary file,
/// fsync it, rename it over the target, fsync the directory. A crash leaves
/// either the old content or the new one, never a mix.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    fs::rename(&tmp, &target).at(&target)?;
    sync_dir(dir)
}

/// Creates `dir` (and parents) if missing, fsyncing the parent so the new
/// directory entry is durable.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).at(dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes leftover `*.tmp` files from an interrupted atomic write.
pub(crate) fn remove_tmp_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}
