//! Txn: compares, then the success or failure branch, all at one revision.
//!
//! As in etcd, every compare in the txn (also those of nested txns) is
//! evaluated against the store as it was before the txn, and the chosen path
//! is then checked (leases exist, `ignore_*` keys exist, read revisions are
//! servable) before the first write, so a txn either applies whole or fails
//! without changing anything.

use std::cmp::Ordering;

use crate::mvcc::Mvcc;
use crate::pb::{Compare, CompareResult, CompareTarget, Request, TargetUnion, TxnRequest};

/// The branches a txn takes: its own, then those of the nested txns in the
/// chosen branch, in op order.
#[derive(Debug)]
pub(crate) struct Path {
    pub succeeded: bool,
    pub nested: Vec<Path>,
}

impl Path {
    /// Evaluates the compares of `req` and of the nested txns it will run,
    /// all at revision `rev`.
    pub fn choose(mvcc: &Mvcc, req: &TxnRequest, rev: i64) -> Path {
        let succeeded = req.compare.iter().all(|c| compare_holds(mvcc, c, rev));
        let nested = branch(req, succeeded)
            .iter()
            .filter_map(|op| match &op.request {
                Some(Request::RequestTxn(t)) => Some(Path::choose(mvcc, t, rev)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    /// Every op the path runs, depth first, in order.
    pub fn for_each_op<'a>(&self, req: &'a TxnRequest, f: &mut impl FnMut(&'a Request)) {
        let mut nested = self.nested.iter();
        for op in branch(req, self.succeeded) {
            match &op.request {
                Some(Request::RequestTxn(t)) => {
                    let path = nested.next().expect("a path has one entry per nested txn");
                    path.for_each_op(t, f);
                }
                Some(request) => f(request),
                None => {}
            }
        }
    }
}

/// The ops of the branch a txn takes.
pub(crate) fn branch(req: &TxnRequest, succeeded: bool) -> &[crate::pb::RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// etcd's `applyCompare`: the compare holds for every key in its range; an
/// empty range compares a zero key-value, except that a value compare on
/// missing keys always fails.
fn compare_holds(mvcc: &Mvcc, c: &Compare, rev: i64) -> bool {
    let target = CompareTarget::try_from(c.target).ok();
    let mut live = mvcc.live_in(&c.key, &c.range_end, rev).peekable();
    if live.peek().is_none() {
        if target == Some(CompareTarget::Value) {
            return false;
        }
        return compare_kv(c, target, &[], 0, 0, 0, 0);
    }
    live.all(|(_, entry)| {
        let l = entry.live.as_ref().expect("live_in yields live entries");
        compare_kv(c, target, &l.value, l.version, l.create_revision, entry.rev.main, l.lease)
    })
}

/// etcd's `compareKV` on one key's fields. An unknown target compares equal
/// and an unknown result holds, as in etcd.
fn compare_kv(
    c: &Compare,
    target: Option<CompareTarget>,
    value: &[u8],
    version: i64,
    create_revision: i64,
    mod_revision: i64,
    lease: i64,
) -> bool {
    let given = |pick: fn(&TargetUnion) -> Option<i64>| c.target_union.as_ref().and_then(pick).unwrap_or(0);
    let ord = match target {
        Some(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            value.cmp(want)
        }
        Some(CompareTarget::Version) => version.cmp(&given(|t| match t {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Create) => create_revision.cmp(&given(|t| match t {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Mod) => mod_revision.cmp(&given(|t| match t {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Lease) => lease.cmp(&given(|t| match t {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        None => Ordering::Equal,
    };
    match CompareResult::try_from(c.result).ok() {
        Some(CompareResult::Equal) => ord == Ordering::Equal,
        Some(CompareResult::NotEqual) => ord != Ordering::Equal,
        Some(CompareResult::Greater) => ord == Ordering::Greater,
        Some(CompareResult::Less) => ord == Ordering::Less,
        None => true,
    }
}
