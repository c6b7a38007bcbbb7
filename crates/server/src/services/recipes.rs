//! What etcd's lock and election services are built from, on the server:
//! a key per contender under a prefix, put with the contender's lease, and
//! the rule that the contender whose key was created first holds the lock
//! (or leads). Waiters are served in the order their keys were created,
//! which is the order their requests were chosen in the log.
//!
//! Only the log decides anything: creating a key is a txn through the log,
//! and waiting is watching this member's applied state for the deletion of
//! every key created before ours. A deleted key never comes back with its
//! old create revision, so once this member has applied a revision at which
//! no earlier key exists, the wait is over for good.

use crate::context::Context;
use crate::state::watch_hub::Batch;
use std::sync::Arc;
use synod_kv::pb::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, Request as Op,
    RequestOp, SortOrder, SortTarget, TargetUnion, TxnRequest,
};
use synod_kv::{Command, Response};
use tokio::sync::broadcast;
use tonic::Status;

/// etcd's `Compare.CompareTarget.CREATE` and `Compare.CompareResult.EQUAL`.
pub(crate) const CREATE: i32 = CompareTarget::Create as i32;
pub(crate) const EQUAL: i32 = CompareResult::Equal as i32;
/// etcd's `RangeRequest.SortTarget.CREATE` and sort orders. (A copy by
/// hand once said 1, etcd's VERSION: after a Proclaim the leader's key has
/// version 2, so `Leader()` named a candidate still waiting, and lock
/// waiters could be served out of order.)
const SORT_BY_CREATE: i32 = SortTarget::Create as i32;
const ASCEND: i32 = SortOrder::Ascend as i32;
const DESCEND: i32 = SortOrder::Descend as i32;

/// The key a lease's contender uses under `prefix`: etcd's
/// `prefix + "/" + hex(lease)`, so a client that retries gets the same key.
pub fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = name.to_vec();
    key.push(b'/');
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// The prefix every contender of `name` shares.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// The end of the range of keys starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn op(request: Op) -> RequestOp {
    RequestOp { request: Some(request) }
}

/// Creates `key` with `value` under `lease` unless it exists, and returns
/// its create revision (the contender's place in line) and the txn's
/// revision. An existing key (a retried request) keeps its place; when
/// `update_value` is set its value is replaced.
pub async fn enter(
    ctx: &Context,
    key: &[u8],
    value: &[u8],
    lease: i64,
    update_value: bool,
) -> Result<(i64, i64), Status> {
    let put = PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    let get = RangeRequest { key: key.to_vec(), ..Default::default() };
    let mut otherwise = vec![op(Op::RequestRange(get))];
    if update_value {
        otherwise.insert(0, op(Op::RequestPut(put.clone())));
    }
    let txn = TxnRequest {
        compare: vec![Compare {
            key: key.to_vec(),
            target: CREATE,
            result: EQUAL,
            target_union: Some(TargetUnion::CreateRevision(0)),
            ..Default::default()
        }],
        success: vec![op(Op::RequestPut(put))],
        failure: otherwise,
    };
    let Response::Txn(resp) = ctx.write(Command::Txn(txn)).await? else {
        return Err(Status::internal("synod: a txn got another reply"));
    };
    let revision = resp.header.as_ref().map_or(0, |h| h.revision);
    if resp.succeeded {
        return Ok((revision, revision));
    }
    let created = resp
        .responses
        .iter()
        .find_map(|r| match &r.response {
            Some(synod_kv::pb::OpResponse::ResponseRange(r)) => r.kvs.first().map(|kv| kv.create_revision),
            _ => None,
        })
        .ok_or_else(|| Status::internal("synod: the contender's key vanished inside its txn"))?;
    Ok((created, revision))
}

/// The TTL of the lease etcd's lock and election servers grant for a
/// request that names no lease (a session that is never kept alive).
pub const SESSION_TTL: i64 = 60;

/// The lease a contender holds its key with: `lease`, or, for 0, a new
/// lease of [`SESSION_TTL`] seconds granted through the log, as etcd's
/// servers grant one (a key without a lease would be shared by every such
/// caller and never go away).
pub async fn contender_lease(ctx: &Context, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let grant = synod_kv::pb::LeaseGrantRequest { ttl: SESSION_TTL, id: 0 };
    match ctx.write(Command::LeaseGrant(grant)).await? {
        Response::LeaseGrant(r) => Ok(r.id),
        _ => Err(Status::internal("synod: a lease grant got another reply")),
    }
}

/// Deletes `key` if it still has create revision `created` (so a stale
/// holder cannot delete a later contender's key). Returns the revision.
pub async fn leave(ctx: &Context, key: &[u8], created: Option<i64>) -> Result<i64, Status> {
    let delete = DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
    let cmd = match created {
        None => Command::DeleteRange(delete),
        Some(rev) => Command::Txn(TxnRequest {
            compare: vec![Compare {
                key: key.to_vec(),
                target: CREATE,
                result: EQUAL,
                target_union: Some(TargetUnion::CreateRevision(rev)),
                ..Default::default()
            }],
            success: vec![op(Op::RequestDeleteRange(delete))],
            failure: vec![],
        }),
    };
    Ok(ctx.write(cmd).await?.revision())
}

/// The first-created key under `prefix` at this member's applied state
/// (the holder, or the leader), with the revision of that state.
pub async fn first(ctx: &Context, prefix: &[u8]) -> Result<(Option<KeyValue>, i64), Status> {
    ranked(ctx, prefix, ASCEND, 0).await
}

async fn ranked(
    ctx: &Context,
    prefix: &[u8],
    order: i32,
    max_create_revision: i64,
) -> Result<(Option<KeyValue>, i64), Status> {
    let req = RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order,
        sort_target: SORT_BY_CREATE,
        max_create_revision,
        serializable: true,
        ..Default::default()
    };
    ctx.handle
        .with_state(move |m| m.kv().range(&req).map(|r| (r.kvs.into_iter().next(), m.kv().revision())))
        .await
        .map_err(|e| crate::status::runtime(&e))?
        .map_err(|e| crate::status::kv(&e))
}

/// Waits for the next applied batch that touches `prefix`, or for a gap
/// (missed batches, or a batch that does not follow the last one seen),
/// after which anything may have changed. `last` is the last revision seen
/// (0: none yet).
pub async fn changed(feed: &mut broadcast::Receiver<Arc<Batch>>, prefix: &[u8], last: &mut i64) -> Result<(), Status> {
    let end = prefix_end(prefix);
    loop {
        match feed.recv().await {
            Ok(batch) => {
                let gap = *last != 0 && batch.from != *last + 1;
                *last = batch.to;
                let touches = batch.events.iter().any(|e| {
                    e.kv.as_ref().is_some_and(|kv| kv.key.as_slice() >= prefix && kv.key.as_slice() < end.as_slice())
                });
                if touches || gap {
                    return Ok(());
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
            Err(broadcast::error::RecvError::Closed) => return Err(Status::unavailable(crate::status::STOPPED)),
        }
    }
}

/// Waits until no key under `prefix` created before revision `created`
/// remains, at a state that includes revision `created` itself. Returns
/// that state's revision.
pub async fn wait_turn(ctx: &Context, prefix: &[u8], created: i64) -> Result<i64, Status> {
    // Subscribe before looking, so no deletion between the look and the
    // wait goes unnoticed.
    let mut feed = ctx.watch_hub.subscribe();
    let mut last = 0;
    loop {
        let (earlier, revision) = ranked(ctx, prefix, DESCEND, created - 1).await?;
        if earlier.is_none() && revision >= created {
            return Ok(revision);
        }
        changed(&mut feed, prefix, &mut last).await?;
    }
}

/// Whether `key` still exists with create revision `created`, at this
/// member's applied state.
pub async fn holds(ctx: &Context, key: &[u8], created: i64) -> Result<bool, Status> {
    let req = RangeRequest { key: key.to_vec(), serializable: true, ..Default::default() };
    let got = ctx
        .handle
        .with_state(move |m| m.kv().range(&req))
        .await
        .map_err(|e| crate::status::runtime(&e))?
        .map_err(|e| crate::status::kv(&e))?;
    Ok(got.kvs.first().is_some_and(|kv| kv.create_revision == created))
}

/// Removes a contender's key if the request that created it is dropped
/// (the client went away) before it got its turn, as etcd's mutex does.
pub struct Withdraw {
    ctx: Arc<Context>,
    key: Vec<u8>,
    created: i64,
    armed: bool,
}

impl Withdraw {
    /// Armed: dropping it deletes the key.
    pub fn new(ctx: Arc<Context>, key: Vec<u8>, created: i64) -> Withdraw {
        Withdraw { ctx, key, created, armed: true }
    }

    /// The contender got its turn: keep the key.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if self.armed {
            let (ctx, key, created) = (self.ctx.clone(), std::mem::take(&mut self.key), self.created);
            tokio::spawn(async move {
                if let Err(e) = leave(&ctx, &key, Some(created)).await {
                    tracing::warn!(error = %e, "could not withdraw an abandoned lock or election key");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes_are_etcds() {
        assert_eq!(contender_key(b"job", 0x694d7a1b2c), b"job/694d7a1b2c".to_vec());
        assert_eq!(prefix(b"job"), b"job/".to_vec());
        assert_eq!(prefix_end(b"job/"), b"job0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
