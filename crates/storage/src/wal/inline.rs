//! Writing without threads: the caller's thread does all the I/O.
//!
//! With [`WalOptions::threads`] false no writer or preallocation thread is
//! started. An append writes its records to the active segment at once
//! (not synced); a sync `fdatasync`s the active segment and only then
//! publishes the durable LSN. This is how the deterministic simulator
//! drives the log step by step over a [`crate::SimDisk`]: segment writing,
//! rotation, record framing and the recovery scan are the very code the
//! threaded log runs. What must never happen here either: reporting an LSN
//! durable that no completed sync covers, or going on after a failed write
//! or sync.
//!
//! [`WalOptions::threads`]: super::WalOptions::threads

use std::sync::atomic::Ordering;
use std::task::Waker;

use super::writer::{take_ready, Shared, WalStats};
use crate::error::{Error, Result};
use crate::{record, Lsn};

impl Shared {
    /// Writes `payloads` under the next LSNs to the active segment (rotating
    /// as needed) without syncing; returns the last LSN.
    pub(crate) fn append_inline(&self, payloads: &[&[u8]]) -> Result<Lsn> {
        // The I/O lock orders inline appenders (taken before the state lock,
        // as the threaded path does).
        let mut io = self.lock_io();
        let first = {
            let st = self.lock();
            if let Some(e) = &st.failed {
                return Err(Error::Failed(e.clone()));
            }
            if st.closing {
                return Err(Error::Closed);
            }
            st.next_lsn
        };
        if payloads.is_empty() {
            return Ok(first - 1);
        }
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| record::encoded_len(p.len())).sum());
        let mut ends = Vec::with_capacity(payloads.len());
        for (lsn, p) in (first..).zip(payloads) {
            record::encode(lsn, p, &mut buf);
            ends.push(buf.len());
        }
        let last = first + payloads.len() as u64 - 1;
        let mut stats = WalStats::default();
        let res = io.write_records(self, first, &buf, &ends, &mut stats);
        let mut st = self.lock();
        // Syncs of segments closed by a rotation.
        st.stats.syncs += stats.syncs;
        match res {
            Ok(()) => {
                st.next_lsn = last + 1;
                st.buf_first_lsn = last + 1;
                st.written_lsn = last;
                st.unsynced.0 += payloads.len();
                st.unsynced.1 += buf.len();
                #[cfg(feature = "planting")]
                if io.plant_ack_before_sync {
                    // The planted bug: written is reported as durable.
                    st.durable_lsn = last;
                    self.durable.store(last, Ordering::Release);
                }
                Ok(last)
            }
            Err(e) => {
                let e = self.fail(&mut st, e);
                let ready = take_ready(&mut st);
                drop(st);
                ready.into_iter().for_each(Waker::wake);
                Err(Error::Failed(e))
            }
        }
    }

    /// Syncs the active segment if anything was written since the last
    /// sync, and publishes the durable LSN; returns it.
    pub(crate) fn sync_inline(&self) -> Result<Lsn> {
        let mut io = self.lock_io();
        let (target, unsynced) = {
            let st = self.lock();
            if let Some(e) = &st.failed {
                return Err(Error::Failed(e.clone()));
            }
            if st.unsynced == (0, 0) {
                return Ok(st.durable_lsn);
            }
            (st.written_lsn, st.unsynced)
        };
        // Everything up to `target` is in the active segment or in segments
        // a rotation already synced, so this one sync covers it all.
        let res = io.sync(self);
        drop(io);
        let mut st = self.lock();
        let out = match res {
            Ok(()) => {
                debug_assert!(st.durable_lsn <= target, "durable LSN only moves forward");
                st.durable_lsn = target;
                self.durable.store(target, Ordering::Release);
                st.unsynced = (0, 0);
                st.stats.records += unsynced.0 as u64;
                st.stats.bytes += unsynced.1 as u64;
                st.stats.batches += 1;
                st.stats.syncs += 1;
                Ok(target)
            }
            Err(e) => Err(Error::Failed(self.fail(&mut st, e))),
        };
        let ready = take_ready(&mut st);
        drop(st);
        if let (Some(o), true) = (&self.observer, out.is_ok()) {
            o.committed(unsynced.0, unsynced.1);
        }
        ready.into_iter().for_each(Waker::wake);
        out
    }

    /// Without threads, "wait until `lsn` is durable" means: sync now
    /// unless a sync already covers it.
    pub(crate) fn settle_inline(&self, lsn: Lsn) -> Result<Lsn> {
        if let Some(out) = Self::outcome(&self.lock(), lsn) {
            return out;
        }
        self.sync_inline()?;
        match Self::outcome(&self.lock(), lsn) {
            Some(out) => out,
            // Never assigned (beyond the last append): nothing can make it
            // durable on this thread.
            None => {
                let first = self.lock_segments()[0].first_lsn;
                Err(Error::LsnOutOfRange { lsn, first, next: self.lock().next_lsn })
            }
        }
    }
}
