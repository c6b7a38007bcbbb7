//! The segmented write-ahead log with group commit.
//!
//! [`Wal`] stores opaque byte records under consecutive LSNs starting at 1.
//! An append is reported durable only after the `fdatasync` that covers it
//! has returned; concurrent appends share syncs (see the `writer` module).
//! The log never reports a record durable that a crash could lose, and
//! never opens a log in which a record that might have been reported
//! durable is damaged (see the `segment` module). All file access goes
//! through a [`Disk`]; without threads ([`WalOptions::threads`] false) the
//! caller's thread writes and syncs (see the `inline` module), which is how
//! the simulator drives this same code over a [`crate::SimDisk`].

mod inline;
mod segment;
mod writer;

use std::future::Future;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

pub use segment::TornTail;
use std::time::Duration;
pub use writer::WalStats;

use crate::disk::{Disk, DiskReader, OsDisk};
use crate::error::{Error, IoContext, Result};
use crate::record::{self, Decoded, HEADER_LEN, MAX_PAYLOAD};
use crate::{fsutil, Lsn};
use segment::SegmentMeta;
use writer::{SegmentWriter, Shared, State};

/// Tuning of a [`Wal`]. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size at which a segment is closed and a new one started. Also the
    /// size segments are preallocated to, and the granularity of
    /// [`Wal::truncate_prefix`]. Default: 64 MiB.
    pub segment_size: u64,
    /// Preallocate segments by writing zeros (in a background thread, one
    /// segment ahead), so appends never change file size or extents and an
    /// `fdatasync` flushes data only. Default: true.
    pub preallocate: bool,
    /// Told of every `fdatasync` of the log and every batch made durable,
    /// as they happen (for metrics). Default: none.
    pub observer: Option<Arc<dyn WalObserver>>,
    /// Run a writer thread (group commit) and a preallocation thread.
    /// Default: true.
    ///
    /// When false, no thread is started and every call does its I/O on the
    /// caller's thread, so a single-threaded simulator can drive the log
    /// step by step: [`LogStore::append`], [`Wal::submit`] and
    /// [`Wal::submit_batch`] write the records at once without syncing;
    /// [`Wal::sync`] (and [`LogStore::sync`], [`Wal::wait_durable`],
    /// [`Durable::wait`], [`Wal::append`]) `fdatasync`s and publishes the
    /// durable LSN; a [`Durable`] future resolves after such a sync. Next
    /// segments are preallocated inline when a rotation needs one.
    /// Dropping the log then does no I/O (unsynced records stay as the disk
    /// has them, as if the process died); [`Wal::close`] syncs first.
    ///
    /// [`LogStore::append`]: crate::LogStore::append
    /// [`LogStore::sync`]: crate::LogStore::sync
    pub threads: bool,
    /// **Planted bug, for the simulator only** (never enable in a real
    /// deployment; the `planting` feature exists only for tests): the log
    /// skips every `fdatasync` and reports records durable as soon as they
    /// are written, the classic "acknowledge before fsync" bug. A simulator
    /// that crashes nodes over a [`crate::SimDisk`] must catch it as a lost
    /// durable record. Default: false.
    #[cfg(feature = "planting")]
    pub plant_ack_before_sync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 << 20,
            preallocate: true,
            observer: None,
            threads: true,
            #[cfg(feature = "planting")]
            plant_ack_before_sync: false,
        }
    }
}

/// Watches the log's writer at work, for metrics. Called on the thread
/// that writes (with no lock of the log held): it must be quick and must
/// never block, or it slows every append behind it.
pub trait WalObserver: Send + Sync + std::fmt::Debug {
    /// One `fdatasync` of a log file returned successfully after `took`.
    fn synced(&self, took: Duration);
    /// A batch of `records` records (`bytes` bytes with their headers)
    /// became durable, covered by the syncs just reported.
    fn committed(&self, records: usize, bytes: usize) {
        let _ = (records, bytes);
    }
}

/// What [`Wal::open`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// First LSN still in the log (1 unless compacted).
    pub first_lsn: Lsn,
    /// Last LSN recovered, or `first_lsn - 1` if the log is empty.
    pub last_lsn: Lsn,
    /// Segment files scanned.
    pub segments: usize,
    /// The incomplete batch discarded from the tail, if a crash left one.
    /// These bytes were never reported durable.
    pub torn_tail: Option<TornTail>,
}

/// A segmented, checksummed, group-committed write-ahead log.
///
/// `Wal` is `Send + Sync`; share it (e.g. in an `Arc`) between appenders.
/// Dropping it drains pending appends (making them durable) and stops the
/// writer thread; [`Wal::close`] does the same and reports a failure.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.shared.dir).finish()
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, verifying every record.
    ///
    /// Refuses with [`Error::Corrupt`], naming the file and byte offset, if
    /// any record other than the last unsynced batch is damaged, if LSNs have
    /// a gap, or if a bad record is followed by a valid one. A torn tail of
    /// the last segment is zeroed and reported in [`Recovery::torn_tail`].
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<(Wal, Recovery)> {
        Self::open_with(dir, opts, |_, _| {})
    }

    /// Like [`Wal::open`], and also hands every recovered record to `replay`
    /// in LSN order during the verification scan (no second read). The
    /// records seen are meaningful only if this returns `Ok`.
    pub fn open_with(
        dir: impl AsRef<Path>,
        opts: WalOptions,
        replay: impl FnMut(Lsn, &[u8]),
    ) -> Result<(Wal, Recovery)> {
        Self::open_on(OsDisk::shared(), dir, opts, replay)
    }

    /// Like [`Wal::open_with`], on any [`Disk`]: [`OsDisk`] is what
    /// [`Wal::open_with`] uses, a [`crate::SimDisk`] is the simulator's.
    /// With [`WalOptions::threads`] false the log runs without threads (see
    /// there); recovery is the same scan either way.
    pub fn open_on(
        disk: Arc<dyn Disk>,
        dir: impl AsRef<Path>,
        opts: WalOptions,
        mut replay: impl FnMut(Lsn, &[u8]),
    ) -> Result<(Wal, Recovery)> {
        let dir = dir.as_ref().to_path_buf();
        assert!(opts.segment_size > 0, "WalOptions::segment_size must be positive");
        fsutil::create_dir_durable(&*disk, &dir)?;
        fsutil::remove_tmp_files(&*disk, &dir)?;
        let mut segments = segment::list_segments(&*disk, &dir)?;
        if segments.is_empty() {
            let path = dir.join(segment::segment_name(1));
            if opts.preallocate {
                segment::preallocate(&*disk, &path, opts.segment_size).at(&path)?;
            } else {
                disk.create(&path).at(&path)?;
            }
            segments.push(SegmentMeta { first_lsn: 1, path });
        }
        // Every segment found must stay found: an earlier open may have
        // created one (or removed temporary files) and failed before its
        // directory sync, and a record synced into a segment whose name is
        // not durable is lost with it in a crash. So the directory is
        // synced here, before any record can be reported durable. (Found by
        // the whole-stack simulator: a failed first start left the first
        // segment's name unsynced, and a crash much later took every
        // acknowledged record.)
        fsutil::sync_dir(&*disk, &dir)?;
        let scan = segment::scan(&*disk, segments, &mut replay)?;
        let first_lsn = scan.segments[0].first_lsn;
        let last = scan.segments[scan.segments.len() - 1].clone();
        let recovery =
            Recovery { first_lsn, last_lsn: scan.next_lsn - 1, segments: scan.segments.len(), torn_tail: scan.torn };
        let seg = SegmentWriter {
            file: segment::open_for_append(&*disk, &last.path)?,
            path: last.path,
            offset: scan.tail_offset,
            segment_size: opts.segment_size,
            preallocate: opts.preallocate,
            spare: None,
            #[cfg(feature = "planting")]
            plant_ack_before_sync: opts.plant_ack_before_sync,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::new(),
                ends: Vec::new(),
                buf_first_lsn: scan.next_lsn,
                next_lsn: scan.next_lsn,
                written_lsn: scan.next_lsn - 1,
                unsynced: (0, 0),
                durable_lsn: scan.next_lsn - 1,
                failed: None,
                closing: false,
                stopped: false,
                busy: false,
                wakers: Vec::new(),
                stats: WalStats::default(),
                #[cfg(test)]
                fail_next_sync: false,
            }),
            work: Condvar::new(),
            segments: Mutex::new(scan.segments),
            dir,
            disk,
            threads: opts.threads,
            durable: AtomicU64::new(scan.next_lsn - 1),
            halted: AtomicBool::new(false),
            io: Mutex::new(seg),
            observer: opts.observer.clone(),
        });
        let writer = if opts.threads {
            let dir_for_err = shared.dir.clone();
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name("synod-wal-writer".into())
                .spawn(move || writer::run(shared))
                .map_err(|e| Error::io(&dir_for_err, e))?;
            Some(handle)
        } else {
            None
        };
        Ok((Wal { shared, writer }, recovery))
    }

    /// Appends one record and blocks until it is durable; returns its LSN.
    ///
    /// When no batch is in flight and none is queued, the calling thread
    /// writes and syncs its record itself (saving two thread hand-offs);
    /// otherwise it joins the batch the writer thread will commit next.
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        if !self.shared.threads {
            let lsn = self.enqueue(&[payload], None)?;
            return self.shared.wait_durable(lsn, false);
        }
        if let Some(lsn) = self.try_append_direct(payload)? {
            return Ok(lsn);
        }
        let lsn = self.enqueue(&[payload], Some(writer::thread_waker()))?;
        self.shared.wait_durable(lsn, true)
    }

    /// The uncontended fast path of [`Wal::append`]; `None` if a batch is
    /// in flight or queued (then the record must join the queue).
    fn try_append_direct(&self, payload: &[u8]) -> Result<Option<Lsn>> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::RecordTooLarge { len: payload.len(), max: MAX_PAYLOAD });
        }
        let lsn = {
            let mut st = self.shared.lock();
            if let Some(e) = &st.failed {
                return Err(Error::Failed(e.clone()));
            }
            if st.closing {
                return Err(Error::Closed);
            }
            if st.busy || !st.ends.is_empty() {
                return Ok(None);
            }
            // Nothing is queued, so this record is next in LSN order, and
            // `busy` keeps the writer thread off the file until it is done.
            st.busy = true;
            let lsn = st.next_lsn;
            st.next_lsn += 1;
            st.buf_first_lsn = st.next_lsn;
            lsn
        };
        let mut buf = Vec::with_capacity(record::encoded_len(payload.len()));
        record::encode(lsn, payload, &mut buf);
        match writer::commit(&self.shared, lsn, &buf, &[buf.len()]) {
            Ok(()) => Ok(Some(lsn)),
            Err(()) => match self.failure() {
                Some(e) => Err(e),
                None => Err(Error::Closed),
            },
        }
    }

    /// Queues one record without blocking on I/O; the returned [`Durable`]
    /// knows its LSN and resolves (as a `Future`, or via
    /// [`Durable::wait`]) once it is durable.
    pub fn submit(&self, payload: &[u8]) -> Result<Durable> {
        let lsn = self.enqueue(&[payload], None)?;
        Ok(Durable { shared: self.shared.clone(), lsn })
    }

    /// Queues several records with consecutive LSNs, atomically with respect
    /// to other appenders; the [`Durable`] is for the last one (durability
    /// is in LSN order, so it covers them all).
    ///
    /// Returns the LSN of the first record alongside. An empty batch
    /// assigns nothing and returns a `Durable` for the last LSN already
    /// assigned.
    pub fn submit_batch(&self, payloads: &[&[u8]]) -> Result<(Lsn, Durable)> {
        let last = self.enqueue(payloads, None)?;
        Ok((last + 1 - payloads.len() as u64, Durable { shared: self.shared.clone(), lsn: last }))
    }

    /// Encodes records into the pending batch; returns the last LSN given.
    /// `waker`, if given, is registered for that LSN in the same critical
    /// section (one lock per blocking append, not two). Without threads,
    /// writes them to the segment instead (unsynced; `waker` is not used).
    fn enqueue(&self, payloads: &[&[u8]], waker: Option<std::task::Waker>) -> Result<Lsn> {
        if let Some(p) = payloads.iter().find(|p| p.len() > MAX_PAYLOAD) {
            return Err(Error::RecordTooLarge { len: p.len(), max: MAX_PAYLOAD });
        }
        if !self.shared.threads {
            return self.shared.append_inline(payloads);
        }
        let mut st = self.shared.lock();
        if let Some(e) = &st.failed {
            return Err(Error::Failed(e.clone()));
        }
        if st.closing {
            return Err(Error::Closed);
        }
        let was_empty = st.ends.is_empty();
        for p in payloads {
            let lsn = st.next_lsn;
            record::encode(lsn, p, &mut st.buf);
            let end = st.buf.len();
            st.ends.push(end);
            st.next_lsn += 1;
        }
        let last = st.next_lsn - 1;
        if let Some(w) = waker {
            st.wakers.push((last, w));
        }
        drop(st);
        if was_empty && !payloads.is_empty() {
            self.shared.work.notify_one();
        }
        Ok(last)
    }

    /// Blocks until every record up to `lsn` is durable.
    pub fn wait_durable(&self, lsn: Lsn) -> Result<Lsn> {
        self.shared.wait_durable(lsn, false)
    }

    /// Blocks until everything submitted so far is durable; returns the
    /// durable LSN. (Without threads: syncs on this thread.)
    pub fn sync(&self) -> Result<Lsn> {
        if !self.shared.threads {
            // Fails on a failed log even when nothing is left to sync.
            return self.shared.sync_inline();
        }
        let last = self.shared.lock().next_lsn - 1;
        self.shared.wait_durable(last, false)
    }

    /// Highest LSN known durable (all LSNs up to it are).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.lock().durable_lsn
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> Lsn {
        self.shared.lock().next_lsn
    }

    /// First LSN still retained (advanced by [`Wal::truncate_prefix`]).
    pub fn first_lsn(&self) -> Lsn {
        self.shared.lock_segments()[0].first_lsn
    }

    /// The failure that stopped the log, if any.
    pub fn failure(&self) -> Option<Error> {
        self.shared.lock().failed.clone().map(Error::Failed)
    }

    /// Counters of the group-commit writer.
    pub fn stats(&self) -> WalStats {
        self.shared.lock().stats
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Reads durable records from `from` on, in order. Records are read
    /// from disk lazily, segment by segment; records that become durable
    /// after this call are not included.
    ///
    /// Fails with [`Error::LsnOutOfRange`] if `from` was compacted away or
    /// is beyond the next LSN.
    pub fn iter_from(&self, from: Lsn) -> Result<WalIter> {
        let (durable, next) = {
            let st = self.shared.lock();
            (st.durable_lsn, st.next_lsn)
        };
        let segments = self.shared.lock_segments().clone();
        let first = segments[0].first_lsn;
        if from < first || from > next {
            return Err(Error::LsnOutOfRange { lsn: from, first, next });
        }
        // Start in the last segment whose first LSN is <= from.
        let start = segments.partition_point(|s| s.first_lsn <= from).saturating_sub(1);
        Ok(WalIter {
            disk: self.shared.disk.clone(),
            segments: segments[start..].to_vec(),
            next_segment: 0,
            reader: None,
            from,
            upto: durable,
            buf: Vec::new(),
        })
    }

    /// Deletes every segment all of whose records are at or below
    /// `upto_lsn` (typically the LSN a snapshot covers). The active segment
    /// is never deleted, so records up to `upto_lsn` may remain readable;
    /// [`Wal::first_lsn`] tells what is left. Deletions are made durable.
    pub fn truncate_prefix(&self, upto_lsn: Lsn) -> Result<()> {
        let mut segs = self.shared.lock_segments();
        let mut removed = false;
        while segs.len() > 1 && segs[1].first_lsn <= upto_lsn.saturating_add(1) {
            let seg = segs.remove(0);
            self.shared.disk.remove(&seg.path).at(&seg.path)?;
            removed = true;
        }
        drop(segs);
        if removed {
            fsutil::sync_dir(&*self.shared.disk, &self.shared.dir)?;
        }
        Ok(())
    }

    /// Drains pending appends, stops the writer and reports whether the log
    /// had failed. (Without threads: syncs what was written.)
    pub fn close(mut self) -> Result<()> {
        if !self.shared.threads {
            // A failure is recorded in the state and reported below.
            let _ = self.shared.sync_inline();
        }
        self.shutdown();
        match self.shared.lock().failed.clone() {
            Some(e) => Err(Error::Failed(e)),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }

    #[cfg(test)]
    pub(crate) fn inject_sync_failure(&self) {
        self.shared.lock().fail_next_sync = true;
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A pending append: its LSN, and a way to learn when it is durable.
///
/// As a `Future` (runtime-agnostic: it registers the task's waker with the
/// writer thread) it resolves to `Ok(lsn)` once durable, or to the error
/// that stopped the log. [`Durable::wait`] blocks instead.
#[derive(Debug)]
#[must_use = "an append is not known durable until its Durable resolves"]
pub struct Durable {
    shared: Arc<Shared>,
    lsn: Lsn,
}

impl Durable {
    /// The LSN assigned to the record.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Blocks until the record is durable.
    pub fn wait(self) -> Result<Lsn> {
        self.shared.wait_durable(self.lsn, false)
    }

    /// Whether the record is already durable (never blocks).
    pub fn is_durable(&self) -> bool {
        self.shared.lock().durable_lsn >= self.lsn
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalShared").field("dir", &self.dir).finish()
    }
}

impl Future for Durable {
    type Output = Result<Lsn>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.shared.lock();
        if let Some(out) = Shared::outcome(&st, self.lsn) {
            return Poll::Ready(out);
        }
        let waker = cx.waker();
        match st.wakers.iter_mut().find(|(l, w)| *l == self.lsn && w.will_wake(waker)) {
            Some(_) => {}
            None => st.wakers.push((self.lsn, waker.clone())),
        }
        Poll::Pending
    }
}

/// Iterator over durable records, from [`Wal::iter_from`].
pub struct WalIter {
    disk: Arc<dyn Disk>,
    segments: Vec<SegmentMeta>,
    next_segment: usize,
    reader: Option<(BufReader<DiskReader>, PathBuf, u64)>,
    from: Lsn,
    upto: Lsn,
    buf: Vec<u8>,
}

impl std::fmt::Debug for WalIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalIter").field("from", &self.from).field("upto", &self.upto).finish()
    }
}

impl WalIter {
    fn read_next(&mut self) -> Result<Option<(Lsn, Vec<u8>)>> {
        loop {
            if self.from > self.upto {
                return Ok(None);
            }
            if self.reader.is_none() {
                let Some(seg) = self.segments.get(self.next_segment) else {
                    return Ok(None);
                };
                self.next_segment += 1;
                let file = self.disk.open(&seg.path).at(&seg.path)?;
                let f = DiskReader { file, offset: 0 };
                self.reader = Some((BufReader::with_capacity(1 << 20, f), seg.path.clone(), 0));
            }
            let Some((reader, path, offset)) = self.reader.as_mut() else {
                continue;
            };
            self.buf.resize(HEADER_LEN, 0);
            if let Err(e) = reader.read_exact(&mut self.buf) {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    self.reader = None;
                    continue;
                }
                return Err(Error::io(path.as_path(), e));
            }
            if self.buf[0] == 0 {
                // End of this segment's records (preallocated space).
                self.reader = None;
                continue;
            }
            let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_PAYLOAD {
                return Err(Error::corrupt(path.as_path(), *offset, "record length exceeds the maximum"));
            }
            self.buf.resize(HEADER_LEN + len, 0);
            reader.read_exact(&mut self.buf[HEADER_LEN..]).map_err(|e| Error::io(path.as_path(), e))?;
            let rec_offset = *offset;
            *offset += (HEADER_LEN + len) as u64;
            match record::decode_one(&self.buf) {
                Decoded::Record { record, .. } => {
                    if record.lsn < self.from {
                        continue;
                    }
                    if record.lsn != self.from {
                        return Err(Error::corrupt(
                            path.as_path(),
                            rec_offset,
                            format!("record has LSN {} where {} was expected", record.lsn, self.from),
                        ));
                    }
                    self.from += 1;
                    return Ok(Some((record.lsn, record.payload.to_vec())));
                }
                _ => {
                    return Err(Error::corrupt(path.as_path(), rec_offset, "record failed verification on read"));
                }
            }
        }
    }
}

impl Iterator for WalIter {
    type Item = Result<(Lsn, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read_next() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                // Stop after an error rather than skipping records.
                self.from = self.upto.saturating_add(1);
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
