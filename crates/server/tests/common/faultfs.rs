//! Real disk faults for real processes: `faultfs.c`, an LD_PRELOAD shim
//! built here with the system C compiler, makes `fsync`/`fdatasync` fail
//! with EIO, or writes fail with ENOSPC, on the files of one data
//! directory once a trigger file appears. The process under test is the
//! release `synod` binary, unchanged: no failpoint compiled in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Which calls fail.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// `fsync` and `fdatasync` return EIO (a dying disk).
    FsyncEio,
    /// `write`, `pwrite` and `writev` return ENOSPC (a full disk).
    WriteEnospc,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::FsyncEio => "fsync-eio",
            Fault::WriteEnospc => "write-enospc",
        }
    }
}

/// The shim, built once per test binary; `Err` says why it cannot be
/// (no C compiler), for the test to print as its reason to skip.
pub fn shim() -> Result<PathBuf, String> {
    static SHIM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/faultfs.c");
        let out_dir = std::env::temp_dir().join(format!("synod-faultfs-{}", std::process::id()));
        std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
        let out = out_dir.join("libfaultfs.so");
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .output()
            .map_err(|e| format!("no C compiler (cc: {e}); scripts/setup installs one"))?;
        if !built.status.success() {
            return Err(format!("cc failed: {}", String::from_utf8_lossy(&built.stderr)));
        }
        Ok(out)
    })
    .clone()
}

/// The environment that arms `fault` for the files under `data_dir` once
/// `trigger` exists.
pub fn env(shim: &Path, fault: Fault, data_dir: &Path, trigger: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), shim.display().to_string()),
        ("SYNOD_FAULT".into(), fault.name().into()),
        ("SYNOD_FAULT_DIR".into(), data_dir.display().to_string()),
        ("SYNOD_FAULT_TRIGGER".into(), trigger.display().to_string()),
    ]
}
