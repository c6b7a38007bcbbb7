//! The key-value state machine: what every replica applies from the log.
//!
//! It does no I/O and never reads a clock: given the same commands in the
//! same order, every replica reaches the same state, revision and hash.

use crate::command::{Applied, Command, Response};
use crate::config::Config;
use crate::error::KvError;
use crate::lease::{Lease, Leases};
use crate::mvcc::{Mvcc, Write};
use crate::pb::{
    header, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, Event, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeResponse, OpResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, Request, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse,
};
use crate::range::range;
use crate::txn::{branch, Path};
use crate::validate::{is_read_only, validate_delete_range, validate_put, validate_range, validate_txn};

/// The MVCC key-value store with leases, as one replica holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvState {
    pub(crate) mvcc: Mvcc,
    pub(crate) leases: Leases,
    pub(crate) config: Config,
}

impl Default for KvState {
    fn default() -> Self {
        KvState::new(Config::default())
    }
}

impl KvState {
    /// An empty store at revision 1.
    pub fn new(config: Config) -> Self {
        KvState { mvcc: Mvcc::new(), leases: Leases::default(), config }
    }

    /// The configuration every replica must share.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current revision: 1 for an empty store, +1 per write that changed
    /// something.
    pub fn revision(&self) -> i64 {
        self.mvcc.current()
    }

    /// How many keys are live now (etcd's `etcd_debugging_mvcc_keys_total`).
    pub fn live_keys(&self) -> u64 {
        self.mvcc.live_keys()
    }

    /// The revision of the last compaction; -1 if there was none (as etcd).
    pub fn compact_revision(&self) -> i64 {
        self.mvcc.compacted()
    }

    /// Applies one command from the log. On error nothing changed.
    pub fn apply(&mut self, cmd: Command) -> Result<Applied, KvError> {
        let (response, events) = match cmd {
            Command::Put(req) => {
                let (resp, events) = self.apply_put(&req)?;
                (Response::Put(resp), events)
            }
            Command::DeleteRange(req) => {
                validate_delete_range(&req)?;
                let mut write = self.mvcc.begin();
                let resp = self.delete_in(&mut write, &req);
                (Response::DeleteRange(resp), self.mvcc.commit(write))
            }
            Command::Txn(req) => {
                let (resp, events) = self.apply_txn(&req)?;
                (Response::Txn(resp), events)
            }
            Command::Compact(req) => {
                self.compact(req.revision)?;
                let resp = CompactionResponse { header: header(self.revision()) };
                (Response::Compact(resp), Vec::new())
            }
            Command::LeaseGrant(req) => (Response::LeaseGrant(self.lease_grant(&req)?), Vec::new()),
            Command::LeaseRevoke(req) => {
                let events = self.lease_revoke(req.id)?;
                let resp = LeaseRevokeResponse { header: header(self.revision()) };
                (Response::LeaseRevoke(resp), events)
            }
        };
        Ok(Applied { response, events })
    }

    /// KV.Range, answered from this replica's state without the log (the
    /// server decides whether the read must first be made linearizable).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate_range(req)?;
        range(&self.mvcc, req, self.revision())
    }

    /// KV.Txn for a txn without writes ([`crate::is_read_only`]), answered
    /// without the log. A txn with writes gets [`KvError::WriteInReadOnlyTxn`].
    pub fn txn_read(&self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        validate_txn(req, self.config.max_txn_ops)?;
        if !is_read_only(req) {
            return Err(KvError::WriteInReadOnlyTxn);
        }
        let current = self.revision();
        let path = Path::choose(&self.mvcc, req, current);
        self.check_ranges(req, &path)?;
        let mut resp = self.read_txn_at(req, &path, current);
        resp.header = header(current);
        Ok(resp)
    }

    /// The events of revisions `from..=to` (clamped to the current revision),
    /// for a watcher catching up from history. Fails with
    /// [`KvError::Compacted`] if `from` is below the compacted revision, as
    /// etcd cancels such a watch.
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<Event>, KvError> {
        if from < self.mvcc.compacted() {
            return Err(KvError::Compacted);
        }
        Ok(self.mvcc.events(from, to.min(self.revision())))
    }

    /// The lease with this ID, if it exists.
    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// Every lease, in ID order.
    pub fn leases(&self) -> impl Iterator<Item = (i64, &Lease)> {
        self.leases.iter()
    }

    fn apply_put(&mut self, req: &PutRequest) -> Result<(PutResponse, Vec<Event>), KvError> {
        validate_put(req)?;
        // etcd checks the lease before the ignore flags.
        if req.lease != 0 && !self.leases.contains(req.lease) {
            return Err(KvError::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease) && self.mvcc.latest(&req.key).is_none() {
            return Err(KvError::KeyNotFound);
        }
        let mut write = self.mvcc.begin();
        let resp = self.put_in(&mut write, req);
        Ok((resp, self.mvcc.commit(write)))
    }

    /// A put inside an open write; the caller has checked the lease and, for
    /// `ignore_*`, that the key exists.
    fn put_in(&mut self, write: &mut Write, req: &PutRequest) -> PutResponse {
        let current = self.mvcc.latest(&req.key);
        debug_assert!(
            current.is_some() || (!req.ignore_value && !req.ignore_lease),
            "ignore_* on a missing key is refused before writing"
        );
        let value = match current {
            Some(live) if req.ignore_value => live.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match current {
            Some(live) if req.ignore_lease => live.lease,
            _ => req.lease,
        };
        let prev = self.mvcc.put(write, &req.key, value, lease);
        if let Some(prev) = &prev {
            self.leases.detach(prev.lease, &req.key);
        }
        self.leases.attach(lease, &req.key);
        PutResponse { header: header(write.revision()), prev_kv: prev.filter(|_| req.prev_kv) }
    }

    fn delete_in(&mut self, write: &mut Write, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let deleted = self.mvcc.delete_range(write, &req.key, &req.range_end);
        for kv in &deleted {
            self.leases.detach(kv.lease, &kv.key);
        }
        DeleteRangeResponse {
            // A delete that found nothing reports the revision unchanged.
            header: header(self.mvcc.visible(write)),
            deleted: deleted.len() as i64,
            prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
        }
    }

    fn apply_txn(&mut self, req: &TxnRequest) -> Result<(TxnResponse, Vec<Event>), KvError> {
        validate_txn(req, self.config.max_txn_ops)?;
        let path = Path::choose(&self.mvcc, req, self.revision());
        self.check_puts(req, &path)?;
        self.check_ranges(req, &path)?;
        let mut write = self.mvcc.begin();
        let mut resp = self.write_txn(&mut write, req, &path);
        let events = self.mvcc.commit(write);
        resp.header = header(self.revision());
        Ok((resp, events))
    }

    /// etcd's `checkRequestPut` over the chosen path, against the state
    /// before the txn.
    fn check_puts(&self, req: &TxnRequest, path: &Path) -> Result<(), KvError> {
        let mut result = Ok(());
        path.for_each_op(req, &mut |op| {
            if let (Ok(()), Request::RequestPut(p)) = (&result, op) {
                if (p.ignore_value || p.ignore_lease) && self.mvcc.latest(&p.key).is_none() {
                    result = Err(KvError::KeyNotFound);
                } else if p.lease != 0 && !self.leases.contains(p.lease) {
                    result = Err(KvError::LeaseNotFound);
                }
            }
        });
        result
    }

    /// etcd's `checkRequestRange` over the chosen path: read revisions must
    /// be neither future nor compacted.
    fn check_ranges(&self, req: &TxnRequest, path: &Path) -> Result<(), KvError> {
        let mut result = Ok(());
        path.for_each_op(req, &mut |op| {
            if let (Ok(()), Request::RequestRange(r)) = (&result, op) {
                if r.revision > self.revision() {
                    result = Err(KvError::FutureRevision);
                } else if r.revision != 0 && r.revision < self.mvcc.compacted() {
                    result = Err(KvError::Compacted);
                }
            }
        });
        result
    }

    /// Runs the chosen path of a checked txn. Reads see the txn's earlier
    /// writes. Nested txn responses carry an empty header, as in etcd.
    fn write_txn(&mut self, write: &mut Write, req: &TxnRequest, path: &Path) -> TxnResponse {
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in branch(req, path.succeeded) {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    let visible = self.mvcc.visible(write);
                    OpResponse::ResponseRange(range(&self.mvcc, r, visible).unwrap_or_else(|e| {
                        panic!("invariant broken: txn range failed after its revision was checked: {e}")
                    }))
                }
                Some(Request::RequestPut(p)) => OpResponse::ResponsePut(self.put_in(write, p)),
                Some(Request::RequestDeleteRange(d)) => OpResponse::ResponseDeleteRange(self.delete_in(write, d)),
                Some(Request::RequestTxn(t)) => {
                    let path = nested.next().expect("a path has one entry per nested txn");
                    OpResponse::ResponseTxn(self.write_txn(write, t, path))
                }
                None => unreachable!("empty ops are refused by validation"),
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        TxnResponse { header: Some(ResponseHeader::default()), succeeded: path.succeeded, responses }
    }

    /// Runs the chosen path of a checked read-only txn at revision `current`.
    fn read_txn_at(&self, req: &TxnRequest, path: &Path, current: i64) -> TxnResponse {
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in branch(req, path.succeeded) {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    OpResponse::ResponseRange(range(&self.mvcc, r, current).unwrap_or_else(|e| {
                        panic!("invariant broken: txn range failed after its revision was checked: {e}")
                    }))
                }
                Some(Request::RequestTxn(t)) => {
                    let path = nested.next().expect("a path has one entry per nested txn");
                    OpResponse::ResponseTxn(self.read_txn_at(t, path, current))
                }
                _ => unreachable!("read-only txns hold only ranges and txns"),
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        TxnResponse { header: Some(ResponseHeader::default()), succeeded: path.succeeded, responses }
    }

    fn compact(&mut self, rev: i64) -> Result<(), KvError> {
        if rev <= self.mvcc.compacted() {
            return Err(KvError::Compacted);
        }
        if rev > self.revision() {
            return Err(KvError::FutureRevision);
        }
        self.mvcc.compact(rev);
        Ok(())
    }

    fn lease_grant(&mut self, req: &LeaseGrantRequest) -> Result<LeaseGrantResponse, KvError> {
        let (id, ttl) = self.leases.grant(req.id, req.ttl, &self.config)?;
        Ok(LeaseGrantResponse { header: header(self.revision()), id, ttl, error: String::new() })
    }

    /// Revokes a lease, deleting its keys in key order in one revision.
    fn lease_revoke(&mut self, id: i64) -> Result<Vec<Event>, KvError> {
        let lease = self.leases.remove(id).ok_or(KvError::LeaseNotFound)?;
        let mut write = self.mvcc.begin();
        for key in &lease.keys {
            let deleted = self.mvcc.delete_range(&mut write, key, &[]);
            debug_assert_eq!(deleted.len(), 1, "a lease holds only live keys");
        }
        Ok(self.mvcc.commit(write))
    }
}
