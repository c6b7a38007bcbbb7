//! Stateless checks of requests, as etcd's gRPC layer does them before a
//! request reaches the log.
//!
//! The server calls these to reject bad requests early; [`crate::KvState::apply`]
//! calls them again, so a bad command that reaches the log still fails the
//! same way on every replica instead of being half applied.

use std::collections::BTreeSet;

use crate::error::KvError;
use crate::pb::{DeleteRangeRequest, PutRequest, RangeRequest, Request, RequestOp, SortOrder, SortTarget, TxnRequest};

/// etcd's `checkRangeRequest`.
pub fn validate_range(req: &RangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err() || SortTarget::try_from(req.sort_target).is_err() {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

/// etcd's `checkPutRequest`.
pub fn validate_put(req: &PutRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkDeleteRequest`.
pub fn validate_delete_range(req: &DeleteRangeRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// etcd's txn checks: sizes and ops (`checkTxnRequest`), then keys written
/// twice in either branch (`checkIntervals`).
pub fn validate_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), KvError> {
    check_txn(req, max_txn_ops as i64)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn(req: &TxnRequest, max_ops: i64) -> Result<(), KvError> {
    let ops = req.compare.len().max(req.success.len()).max(req.failure.len()) as i64;
    if ops > max_ops {
        return Err(KvError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    // A nested txn gets what its parent leaves of the budget.
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: i64) -> Result<(), KvError> {
    match &op.request {
        Some(Request::RequestRange(r)) => validate_range(r),
        Some(Request::RequestPut(p)) => validate_put(p),
        Some(Request::RequestDeleteRange(d)) => validate_delete_range(d),
        Some(Request::RequestTxn(t)) => check_txn(t, max_ops),
        // etcd answers an empty op with "key not found".
        None => Err(KvError::KeyNotFound),
    }
}

/// The keys deleted by a set of ops, as etcd's interval tree holds them.
#[derive(Default)]
struct Deletes {
    points: BTreeSet<Vec<u8>>,
    ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Deletes {
    /// Whether a put of `key` overlaps a delete. Like etcd, a range end is
    /// compared literally: a delete with range end `"\0"` (from key on) is
    /// an empty interval here and overlaps nothing.
    fn contains(&self, key: &[u8]) -> bool {
        self.points.contains(key)
            || self.ranges.iter().any(|(begin, end)| begin.as_slice() <= key && key < end.as_slice())
    }

    fn union(&mut self, other: Deletes) {
        self.points.extend(other.points);
        self.ranges.extend(other.ranges);
    }
}

/// etcd's `checkIntervals`: within one branch, including the branches of
/// nested txns, no key may be put twice or both put and deleted. A key may
/// be put in both the success and failure branch of one nested txn, since
/// only one of them runs.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Deletes), KvError> {
    let mut dels = Deletes::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            if d.range_end.is_empty() {
                dels.points.insert(d.key.clone());
            } else {
                dels.ranges.push((d.key.clone(), d.range_end.clone()));
            }
        }
    }
    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for key in &puts_then {
            if puts.contains(key) || dels.contains(key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || dels.contains(&key) {
                return Err(KvError::DuplicateKey);
            }
            puts.insert(key);
        }
        dels.union(dels_then);
        dels.union(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.contains(&p.key) {
            return Err(KvError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Whether a txn writes nothing in any branch, at any depth.
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).all(|op| match &op.request {
        Some(Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(t)) => is_read_only(t),
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
    })
}
