//! The group-commit writer thread.
//!
//! Appenders encode their records into one shared buffer under a mutex and
//! get consecutive LSNs; the writer thread repeatedly takes the whole buffer,
//! writes it with one `pwrite` (split only at a segment boundary) and makes
//! it durable with one `fdatasync`. While that sync runs the next batch
//! gathers, so under load one sync covers many records.
//!
//! A failed write or sync is fatal: after it the kernel may have dropped the
//! dirty pages and cleared the error, so retrying the sync could report
//! success for data that is gone (the "fsyncgate" lesson). The log enters a
//! failed state, every pending and later append gets [`Error::Failed`], and
//! only reopening (which re-verifies the files) brings it back.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Wake, Waker};
use std::thread::JoinHandle;
use std::time::Instant;

use super::segment::{self, SegmentMeta, SPARE_NAME};
use crate::disk::{Disk, DiskFile};
use crate::error::{Error, Result};
use crate::Lsn;

/// Counters describing the writer's work so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records made durable.
    pub records: u64,
    /// Bytes written (headers included).
    pub bytes: u64,
    /// Batches written; each ends with one `fdatasync` of the active
    /// segment (plus one per segment rotated within the batch).
    pub batches: u64,
    /// `fdatasync` calls issued.
    pub syncs: u64,
}

pub(crate) struct State {
    /// Encoded records waiting for the writer.
    pub buf: Vec<u8>,
    /// End offset in `buf` of each waiting record.
    pub ends: Vec<usize>,
    /// LSN of the first record in `buf`.
    pub buf_first_lsn: Lsn,
    pub next_lsn: Lsn,
    /// Without threads ([`WalOptions::threads`] false): the last LSN
    /// written to the file, durable or not. Unused with threads, where a
    /// batch is written and synced in one go.
    ///
    /// [`WalOptions::threads`]: super::WalOptions::threads
    pub written_lsn: Lsn,
    /// Without threads: records and bytes written since the last sync.
    pub unsynced: (usize, usize),
    pub durable_lsn: Lsn,
    pub failed: Option<Arc<io::Error>>,
    /// No more appends accepted; the writer drains and exits.
    pub closing: bool,
    /// The writer thread has exited.
    pub stopped: bool,
    /// A batch is being written (by the writer or a fast-path appender);
    /// whoever sets it does the I/O, so batches go to disk in LSN order.
    pub busy: bool,
    pub wakers: Vec<(Lsn, Waker)>,
    pub stats: WalStats,
    #[cfg(test)]
    pub fail_next_sync: bool,
}

/// Wakes a thread blocked in [`Shared::wait_durable`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled when there is work for the writer.
    pub work: Condvar,
    pub segments: Mutex<Vec<SegmentMeta>>,
    pub dir: PathBuf,
    /// Where the segments are.
    pub disk: Arc<dyn Disk>,
    /// Whether a writer thread commits batches ([`WalOptions::threads`]);
    /// without, callers write and sync on their own thread.
    ///
    /// [`WalOptions::threads`]: super::WalOptions::threads
    pub threads: bool,
    /// Mirror of `State::durable_lsn`, for lock-free checks by waiters.
    pub durable: AtomicU64,
    /// Set once the log has failed or stopped (mirrors `State`).
    pub halted: AtomicBool,
    /// The active segment. Only the holder of `State::busy` locks it for
    /// appends, so the lock is never contended on the hot path.
    pub io: Mutex<SegmentWriter>,
    /// Told of syncs and durable batches ([`WalOptions::observer`]).
    ///
    /// [`WalOptions::observer`]: super::WalOptions::observer
    pub observer: Option<Arc<dyn super::WalObserver>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in this module; the state
        // is still consistent because every mutation is a single step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lock_io(&self) -> MutexGuard<'_, SegmentWriter> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lock_segments(&self) -> MutexGuard<'_, Vec<SegmentMeta>> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts the log into the failed state for good (see the module docs):
    /// no more appends, nothing more reported durable.
    pub fn fail(&self, st: &mut State, e: io::Error) -> Arc<io::Error> {
        let e = Arc::new(e);
        st.failed = Some(e.clone());
        st.closing = true;
        self.halted.store(true, Ordering::Release);
        e
    }

    /// The outcome for a waiter on `lsn`, or `None` if it must keep waiting.
    pub fn outcome(st: &State, lsn: Lsn) -> Option<Result<Lsn>> {
        if st.durable_lsn >= lsn {
            Some(Ok(lsn))
        } else if let Some(e) = &st.failed {
            Some(Err(Error::Failed(e.clone())))
        } else if st.stopped {
            Some(Err(Error::Closed))
        } else {
            None
        }
    }

    /// Blocks until `lsn` is durable or the log fails. `registered` says
    /// the caller already put this thread's waker on `lsn` (see
    /// [`thread_waker`]) in the critical section that enqueued the record.
    ///
    /// The writer unparks exactly the waiters
    /// its sync covered, so under heavy concurrency a sync does not wake
    /// appenders whose records are still in the next batch, as a condvar
    /// broadcast would; and a woken waiter checks an atomic, not the lock.
    pub fn wait_durable(&self, lsn: Lsn, registered: bool) -> Result<Lsn> {
        if !self.threads {
            // No writer to wait for: this thread makes it durable.
            return self.settle_inline(lsn);
        }
        if !registered {
            let mut st = self.lock();
            if let Some(out) = Self::outcome(&st, lsn) {
                return out;
            }
            st.wakers.push((lsn, thread_waker()));
        }
        loop {
            if self.durable.load(Ordering::Acquire) >= lsn {
                return Ok(lsn);
            }
            if self.halted.load(Ordering::Acquire) {
                if let Some(out) = Self::outcome(&self.lock(), lsn) {
                    return out;
                }
            }
            std::thread::park();
        }
    }
}

/// This thread's waker (cached: one allocation per thread, not per append).
pub(crate) fn thread_waker() -> Waker {
    thread_local! {
        static WAKER: Waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    }
    WAKER.with(Waker::clone)
}

/// The writer's view of the active segment.
pub(crate) struct SegmentWriter {
    pub file: Box<dyn DiskFile>,
    pub path: PathBuf,
    /// Where the next record goes in `file`.
    pub offset: u64,
    pub segment_size: u64,
    pub preallocate: bool,
    /// Background preparation of the next segment file (threaded mode only).
    pub spare: Option<JoinHandle<io::Result<()>>>,
    /// The planted "ack before fsync" bug: every sync is skipped.
    #[cfg(feature = "planting")]
    pub plant_ack_before_sync: bool,
}

impl SegmentWriter {
    /// Starts preallocating the next segment in a background thread (with
    /// threads only; without, [`SegmentWriter::rotate`] preallocates inline).
    pub fn start_spare(&mut self, shared: &Shared) {
        if shared.threads && self.preallocate && self.spare.is_none() {
            let path = shared.dir.join(SPARE_NAME);
            let len = self.segment_size;
            let disk = shared.disk.clone();
            self.spare = Some(std::thread::spawn(move || segment::preallocate(&*disk, &path, len)));
        }
    }

    /// Writes one batch of records (`ends` are their end offsets in `buf`,
    /// the first being `first_lsn`) and makes it durable.
    pub(crate) fn write_batch(
        &mut self,
        shared: &Shared,
        first_lsn: Lsn,
        buf: &[u8],
        ends: &[usize],
        stats: &mut WalStats,
    ) -> io::Result<()> {
        self.write_records(shared, first_lsn, buf, ends, stats)?;
        #[cfg(test)]
        if std::mem::take(&mut shared.lock().fail_next_sync) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.sync(shared)?;
        stats.syncs += 1;
        Ok(())
    }

    /// Writes records as [`SegmentWriter::write_batch`] does, without the
    /// final sync: only a segment closed by a rotation is synced (before
    /// the next one is started), so the records may not be durable yet.
    pub(crate) fn write_records(
        &mut self,
        shared: &Shared,
        first_lsn: Lsn,
        buf: &[u8],
        ends: &[usize],
        stats: &mut WalStats,
    ) -> io::Result<()> {
        let mut start = 0usize;
        let mut idx = 0usize;
        while idx < ends.len() {
            // Take as many records as fit; at least one if the segment is empty
            // (a record larger than a segment gets a segment of its own).
            let room = self.segment_size.saturating_sub(self.offset) as usize;
            let mut j = idx;
            while j < ends.len() && ends[j] - start <= room {
                j += 1;
            }
            if j == idx {
                if self.offset == 0 {
                    j = idx + 1;
                } else {
                    self.sync(shared)?;
                    stats.syncs += 1;
                    self.rotate(shared, first_lsn + idx as u64)?;
                    continue;
                }
            }
            let end = ends[j - 1];
            self.file.write_at(&buf[start..end], self.offset)?;
            self.offset += (end - start) as u64;
            start = end;
            idx = j;
        }
        Ok(())
    }

    /// `fdatasync`s the active segment, timed for the observer.
    pub(crate) fn sync(&mut self, shared: &Shared) -> io::Result<()> {
        #[cfg(feature = "planting")]
        if self.plant_ack_before_sync {
            return Ok(());
        }
        let started = shared.observer.as_ref().map(|_| Instant::now());
        self.file.sync_data()?;
        if let (Some(o), Some(started)) = (&shared.observer, started) {
            o.synced(started.elapsed());
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one whose first record
    /// will be `first_lsn`. The previous segment must already be synced.
    fn rotate(&mut self, shared: &Shared, first_lsn: Lsn) -> io::Result<()> {
        let disk = &*shared.disk;
        let path = shared.dir.join(segment::segment_name(first_lsn));
        let spare_ready = match self.spare.take() {
            Some(h) => matches!(h.join(), Ok(Ok(()))),
            None => false,
        };
        if spare_ready {
            disk.rename(&shared.dir.join(SPARE_NAME), &path)?;
        } else if self.preallocate {
            segment::preallocate(disk, &path, self.segment_size)?;
        } else {
            disk.create(&path)?;
        }
        disk.sync_dir(&shared.dir)?;
        self.file = disk.open(&path)?;
        self.path = path.clone();
        self.offset = 0;
        shared.lock_segments().push(SegmentMeta { first_lsn, path });
        self.start_spare(shared);
        Ok(())
    }
}

/// The writer thread's loop.
pub(crate) fn run(shared: Arc<Shared>) {
    shared.lock_io().start_spare(&shared);
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    loop {
        let first_lsn;
        {
            let mut st = shared.lock();
            loop {
                if st.failed.is_some() {
                    break;
                }
                if !st.busy && !st.ends.is_empty() {
                    break;
                }
                if st.closing && !st.busy && st.ends.is_empty() {
                    break;
                }
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.failed.is_some() || st.ends.is_empty() {
                break;
            }
            st.busy = true;
            std::mem::swap(&mut st.buf, &mut buf);
            std::mem::swap(&mut st.ends, &mut ends);
            first_lsn = st.buf_first_lsn;
            st.buf_first_lsn = st.next_lsn;
        }
        let failed = commit(&shared, first_lsn, &buf, &ends).is_err();
        buf.clear();
        ends.clear();
        if failed {
            break;
        }
    }
    if let Some(h) = shared.lock_io().spare.take() {
        let _ = h.join();
    }
    let mut st = shared.lock();
    st.stopped = true;
    shared.halted.store(true, Ordering::Release);
    let ready = take_ready(&mut st);
    drop(st);
    ready.into_iter().for_each(Waker::wake);
}

/// Writes and syncs one batch (records `first_lsn..` ending at `ends` in
/// `buf`), publishes the outcome and wakes the waiters it settles. The
/// caller must have set `State::busy`; this clears it. Called by the writer
/// thread, or by an appender on the fast path when the writer was idle.
pub(crate) fn commit(shared: &Shared, first_lsn: Lsn, buf: &[u8], ends: &[usize]) -> std::result::Result<(), ()> {
    let last_lsn = first_lsn + ends.len() as u64 - 1;
    let mut stats = WalStats::default();
    let res = shared.lock_io().write_batch(shared, first_lsn, buf, ends, &mut stats);
    let failed = res.is_err();
    if let (Some(o), false) = (&shared.observer, failed) {
        o.committed(ends.len(), buf.len());
    }
    let ready = {
        let mut st = shared.lock();
        debug_assert!(st.busy, "commit runs only with the busy flag held");
        st.busy = false;
        match res {
            Ok(()) => {
                debug_assert!(st.durable_lsn < last_lsn, "durable LSN only moves forward");
                st.durable_lsn = last_lsn;
                shared.durable.store(last_lsn, Ordering::Release);
                st.stats.records += ends.len() as u64;
                st.stats.bytes += buf.len() as u64;
                st.stats.batches += 1;
                st.stats.syncs += stats.syncs;
            }
            Err(e) => {
                shared.fail(&mut st, e);
            }
        }
        take_ready(&mut st)
    };
    // The writer may be waiting for `busy` to clear (more records queued
    // meanwhile, or a failure to act on).
    shared.work.notify_one();
    // Wake outside the lock appenders need to enqueue the next batch.
    // (A separate notifier thread was tried: no faster on 2 cores, and it
    // shrank batches by letting the writer race ahead of waiters.)
    ready.into_iter().for_each(Waker::wake);
    if failed {
        Err(())
    } else {
        Ok(())
    }
}

/// Removes and returns the wakers of waiters whose outcome is now known.
pub(crate) fn take_ready(st: &mut State) -> Vec<Waker> {
    let durable = st.durable_lsn;
    let all = st.failed.is_some() || st.stopped;
    let mut ready = Vec::new();
    let mut i = 0;
    while i < st.wakers.len() {
        if all || st.wakers[i].0 <= durable {
            ready.push(st.wakers.swap_remove(i).1);
        } else {
            i += 1;
        }
    }
    ready
}
