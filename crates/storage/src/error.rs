//! The one error type of the storage crate.
//!
//! Every variant names what failed and where (file, byte offset), so an
//! operator reading a refusal to start knows which file to look at.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in durable storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A record or file failed verification somewhere recovery must not
    /// skip (the middle of the log, a non-last segment, a gap in LSNs).
    /// The store refuses to open rather than silently dropping records.
    #[error("corruption in {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first bad byte (or bad record) in that file.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// A previous write or fsync failed. The log's state on disk is then
    /// unknown (the kernel may have dropped the dirty pages), so it takes no
    /// further appends and never reports anything durable again; the
    /// process must reopen (and so re-verify) the log.
    #[error("the log failed earlier and is read-only until reopened: {0}")]
    Failed(#[source] Arc<io::Error>),

    /// The log has been closed (its writer stopped).
    #[error("the log is closed")]
    Closed,

    /// A payload is larger than a record may be.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Payload length offered.
        len: usize,
        /// The limit ([`crate::record::MAX_PAYLOAD`]).
        max: usize,
    },

    /// An LSN argument was outside what the log holds.
    #[error("LSN {lsn} is out of range: the log holds {first}..{next} (exclusive end)")]
    LsnOutOfRange {
        /// The LSN asked for.
        lsn: u64,
        /// First LSN still retained.
        first: u64,
        /// The next LSN to be assigned.
        next: u64,
    },

    /// The data directory belongs to another cluster or member.
    #[error(
        "data directory {path} belongs to cluster {found_cluster:#x} member {found_member:#x}, \
         not cluster {want_cluster:#x} member {want_member:#x}; refusing to use it"
    )]
    ForeignDataDir {
        /// The directory.
        path: PathBuf,
        /// Cluster id recorded in the marker.
        found_cluster: u64,
        /// Member id recorded in the marker.
        found_member: u64,
        /// Cluster id the caller expected.
        want_cluster: u64,
        /// Member id the caller expected.
        want_member: u64,
    },

    /// The data directory holds storage files but no identity marker, so its
    /// owner cannot be established.
    #[error("data directory {path} holds data but no identity marker; refusing to adopt it")]
    UnmarkedDataDir {
        /// The directory.
        path: PathBuf,
    },

    /// Another process holds the data directory's lock: two processes
    /// writing one log would interleave records and break every promise in
    /// it.
    #[error(
        "data directory {path} is in use by another process{}: it holds the lock on {}; \
         stop that process, or give this one another --data-dir",
        holder.map_or(String::new(), |pid| format!(" (pid {pid})")),
        path.join(crate::lock::LOCK_FILE).display()
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The process id the holder recorded in the lock file, if readable.
        holder: Option<u32>,
    },

    /// A snapshot transfer was fed a chunk that does not continue it.
    #[error("snapshot chunk at offset {got} does not continue the transfer at offset {expected}")]
    ChunkOutOfOrder {
        /// Where the receiver is.
        expected: u64,
        /// Where the chunk claims to start.
        got: u64,
    },

    /// A received snapshot did not match its announced length or checksum.
    #[error("received snapshot {index} is invalid: {reason}")]
    SnapshotMismatch {
        /// The snapshot's index.
        index: u64,
        /// What did not match.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Builds a [`Error::Corrupt`].
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), offset, reason: reason.into() }
    }
}

/// Extension to attach a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
