//! Segment files: naming, preallocation, and the recovery scan.
//!
//! A segment is named after the LSN of its first record
//! (`00000000000000000001.wal`) and holds consecutive records. Segments are
//! preallocated by writing zeros (not just `fallocate`), so that an fdatasync
//! after an append flushes data pages only, with no extent or size metadata.
//! Zero-filled space is therefore a normal end of log.
//!
//! Recovery must never silently drop a record that may have been reported
//! durable. The only damage it repairs is at the very tail of the last
//! segment, where the last unsynced batch may have been cut short by a
//! crash; anything else is refused with the file and offset.

use std::path::{Path, PathBuf};

use crate::disk::{Disk, DiskFile};
use crate::error::{Error, IoContext, Result};
use crate::record::{self, Tail};
use crate::Lsn;

/// Extension of segment files.
pub(crate) const SEGMENT_EXT: &str = "wal";
/// Name of the segment being preallocated ahead of rotation.
pub(crate) const SPARE_NAME: &str = "spare.tmp";

/// A segment file known to the log.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub first_lsn: Lsn,
    pub path: PathBuf,
}

/// File name of the segment whose first record is `first_lsn`.
pub(crate) fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.{SEGMENT_EXT}")
}

fn parse_segment_name(path: &Path) -> Option<Lsn> {
    if path.extension()? != SEGMENT_EXT {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

/// Lists segment files in LSN order.
pub(crate) fn list_segments(disk: &dyn Disk, dir: &Path) -> Result<Vec<SegmentMeta>> {
    let mut segs = Vec::new();
    for path in disk.list(dir).at(dir)? {
        if let Some(first_lsn) = parse_segment_name(&path) {
            segs.push(SegmentMeta { first_lsn, path });
        }
    }
    segs.sort_by_key(|s| s.first_lsn);
    Ok(segs)
}

/// Writes `len` zero bytes into a new file at `path` and fsyncs it.
pub(crate) fn preallocate(disk: &dyn Disk, path: &Path, len: u64) -> std::io::Result<()> {
    let f = disk.create(path)?;
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        f.write_at(&zeros[..n], at)?;
        at += n as u64;
    }
    f.sync_all()
}

/// What recovery found in one segment's tail that it repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The (last) segment whose tail was cut.
    pub path: PathBuf,
    /// Byte offset where the discarded bytes started.
    pub offset: u64,
    /// How many non-zero bytes were discarded (zeroed).
    pub discarded_bytes: u64,
}

/// The outcome of scanning all segments.
pub(crate) struct Scan {
    pub segments: Vec<SegmentMeta>,
    /// Next LSN to assign.
    pub next_lsn: Lsn,
    /// Byte offset in the last segment where appends continue.
    pub tail_offset: u64,
    pub torn: Option<TornTail>,
}

/// Verifies every segment, repairs a torn tail of the last one, and feeds
/// each record to `visit` in order. `segments` must be non-empty and sorted.
pub(crate) fn scan(disk: &dyn Disk, segments: Vec<SegmentMeta>, visit: &mut dyn FnMut(Lsn, &[u8])) -> Result<Scan> {
    let mut expected = segments.first().map_or(1, |s| s.first_lsn);
    let mut tail_offset = 0;
    let mut torn = None;
    let last_index = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        if seg.first_lsn != expected {
            return Err(Error::corrupt(
                &seg.path,
                0,
                format!("segment starts at LSN {} but the previous one ended before LSN {expected}", seg.first_lsn),
            ));
        }
        let buf = disk.read(&seg.path).at(&seg.path)?;
        let stream = record::decode_stream(&buf);
        let mut offset = 0usize;
        for r in &stream.records {
            if r.lsn != expected {
                return Err(Error::corrupt(
                    &seg.path,
                    offset as u64,
                    format!("record has LSN {} where LSN {expected} was expected", r.lsn),
                ));
            }
            visit(r.lsn, r.payload);
            expected += 1;
            offset += record::encoded_len(r.payload.len());
        }
        let is_last = i == last_index;
        let bad = match stream.tail {
            Tail::Clean => None,
            Tail::Torn { offset } => Some((offset, "record cut short")),
            Tail::Corrupt { offset, reason } => Some((offset, reason)),
        };
        if let Some((bad_at, reason)) = bad {
            if !is_last {
                return Err(Error::corrupt(
                    &seg.path,
                    bad_at as u64,
                    format!("{reason} in a segment that is not the last"),
                ));
            }
            // A crash can only have cut the one batch that was being written
            // when it happened, which is at the tail: nothing valid may follow.
            if let Some(p) = record::find_valid_record(&buf[bad_at + 1..]) {
                return Err(Error::corrupt(
                    &seg.path,
                    bad_at as u64,
                    format!("{reason}, followed by a valid record at offset {}; refusing to drop it", bad_at + 1 + p),
                ));
            }
            torn = Some(zero_tail(disk, &seg.path, &buf, bad_at)?);
        }
        if is_last {
            tail_offset = stream.valid_len as u64;
        }
    }
    Ok(Scan { segments, next_lsn: expected, tail_offset, torn })
}

/// Overwrites the damaged tail `buf[from..]` of `path` with zeros (keeping
/// the preallocated size) and fsyncs, so later appends start clean.
fn zero_tail(disk: &dyn Disk, path: &Path, buf: &[u8], from: usize) -> Result<TornTail> {
    let end = buf.iter().rposition(|&b| b != 0).map_or(from, |p| (p + 1).max(from));
    let f = disk.open(path).at(path)?;
    f.write_at(&vec![0u8; end - from], from as u64).at(path)?;
    f.sync_data().at(path)?;
    Ok(TornTail { path: path.to_path_buf(), offset: from as u64, discarded_bytes: (end - from) as u64 })
}

/// Opens an existing segment for appending.
pub(crate) fn open_for_append(disk: &dyn Disk, path: &Path) -> Result<Box<dyn DiskFile>> {
    disk.open(path).at(path)
}
