//! The store's logical size and what a write adds to it, for the space
//! quota (etcd's `--quota-backend-bytes`).
//!
//! etcd measures its bbolt file; Synod measures the MVCC store itself: the
//! key and value bytes of every revision it holds, plus a fixed overhead per
//! revision and per lease. The figure is deterministic (every replica that
//! applied the same commands reports the same size), grows with every write,
//! and drops as soon as compaction forgets old revisions. It never reads the
//! disk: how much disk the data directory takes is the log's business, and
//! defragmentation (a snapshot that lets the log before it be deleted) is
//! what gives that back.

use crate::command::Command;
use crate::pb::{Request, TxnRequest};
use crate::state::KvState;

/// What one revision of a key costs on top of its key and value bytes: its
/// revision, create revision, version and lease (etcd's `kvOverhead` is
/// 256 bytes of bbolt page slack; ours is the metadata we actually keep).
pub const ENTRY_OVERHEAD: u64 = 64;

/// What one lease costs (etcd's `leaseOverhead`).
pub const LEASE_OVERHEAD: u64 = 64;

impl KvState {
    /// The store's logical size in bytes: every retained revision of every
    /// key ([`ENTRY_OVERHEAD`] plus key and value bytes) and every lease
    /// ([`LEASE_OVERHEAD`]). Equal on every replica at the same revision.
    pub fn db_size(&self) -> u64 {
        self.mvcc.size() + self.leases.iter().count() as u64 * LEASE_OVERHEAD
    }
}

/// How many bytes applying `cmd` may add to [`KvState::db_size`], as etcd's
/// quota computes it: a put its key, value and overhead; a txn the larger of
/// its two branches' puts (nested txns included); a lease grant
/// [`LEASE_OVERHEAD`]. Deletes and compactions cost nothing: they are how
/// space is freed, so the quota never refuses them.
pub fn cost(cmd: &Command) -> u64 {
    match cmd {
        Command::Put(p) => put_cost(&p.key, &p.value),
        Command::Txn(t) => txn_cost(t),
        Command::LeaseGrant(_) => LEASE_OVERHEAD,
        Command::DeleteRange(_) | Command::Compact(_) | Command::LeaseRevoke(_) => 0,
    }
}

fn put_cost(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD
}

fn txn_cost(t: &TxnRequest) -> u64 {
    let branch = |ops: &[crate::pb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(p)) => put_cost(&p.key, &p.value),
                Some(Request::RequestTxn(t)) => txn_cost(t),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{DeleteRangeRequest, LeaseGrantRequest, PutRequest, RequestOp};

    fn put(key: &str, value: &str) -> PutRequest {
        PutRequest { key: key.into(), value: value.into(), ..Default::default() }
    }

    #[test]
    fn writes_that_grow_the_store_cost_what_they_add() {
        let op = |p: PutRequest| RequestOp { request: Some(Request::RequestPut(p)) };
        let del = RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest { key: b"k".to_vec(), ..Default::default() })),
        };
        let txn = TxnRequest {
            success: vec![op(put("a", "12")), op(put("b", "1"))],
            failure: vec![op(put("c", "1234567"))],
            ..Default::default()
        };
        let table = [
            (Command::Put(put("key", "value")), 8 + ENTRY_OVERHEAD),
            // The larger branch: two puts of 3 and 2 bytes against one of 8.
            (Command::Txn(txn), 5 + 2 * ENTRY_OVERHEAD),
            (Command::Txn(TxnRequest { success: vec![del], ..Default::default() }), 0),
            (Command::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 0 }), LEASE_OVERHEAD),
            (Command::DeleteRange(DeleteRangeRequest { key: b"k".to_vec(), ..Default::default() }), 0),
        ];
        for (cmd, want) in table {
            assert_eq!(cost(&cmd), want, "{cmd:?}");
        }
    }

    #[test]
    fn db_size_follows_writes_and_compaction() {
        let mut kv = KvState::default();
        assert_eq!(kv.db_size(), 0);
        for _ in 0..4 {
            kv.apply(Command::Put(put("key", "value"))).unwrap();
        }
        assert_eq!(kv.db_size(), 4 * (8 + ENTRY_OVERHEAD));
        kv.apply(Command::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 7 })).unwrap();
        assert_eq!(kv.db_size(), 4 * (8 + ENTRY_OVERHEAD) + LEASE_OVERHEAD);
        kv.apply(Command::Compact(crate::pb::CompactionRequest { revision: kv.revision(), physical: false })).unwrap();
        assert_eq!(kv.db_size(), 8 + ENTRY_OVERHEAD + LEASE_OVERHEAD);
        let restored = KvState::restore(kv.config().clone(), &kv.snapshot()).unwrap();
        assert_eq!(restored.db_size(), kv.db_size());
    }
}
