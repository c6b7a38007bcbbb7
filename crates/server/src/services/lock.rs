//! etcd's v3lock service (`/v3lockpb.Lock`): a named lock held by a lease,
//! built on [`crate::services::recipes`] as etcd builds it on its mutex recipe.
//!
//! `Lock` creates `name/<lease in hex>` with the lease and waits until every
//! key under `name/` created before it is gone; the holder keeps the lock
//! while its lease lives. `Unlock` deletes the key. A waiter whose client
//! goes away withdraws its key; a waiter whose lease expires while it waits
//! gets etcd's "session expired" error.

use crate::context::Context;
use crate::services::recipes::{self, Withdraw};
use std::sync::Arc;
use synod_etcd_api::v3lockpb::lock_server::Lock;
use synod_etcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

/// etcd's error for a contender whose lease ended before it got its turn.
pub const SESSION_EXPIRED: &str = "mutex: session is expired";

/// The Lock service of one member.
#[derive(Clone)]
pub struct LockService {
    ctx: Arc<Context>,
}

impl LockService {
    /// The service over a member's context.
    pub fn new(ctx: Arc<Context>) -> LockService {
        LockService { ctx }
    }
}

/// What etcd's lock and election services need of the caller: they run as
/// clients of etcd's own KV API with the caller's token, so a caller needs
/// a user (with auth enabled), read permission on every contender of the
/// name (`read_all`: the wait ranges over them) and write permission on
/// its own key (`write`). Checked against the auth store before the recipe
/// starts.
pub(crate) fn check_recipe<T>(
    ctx: &Context,
    request: &Request<T>,
    read_all: Option<&[u8]>,
    write: Option<&[u8]>,
) -> Result<crate::auth::AuthInfo, Status> {
    let caller = ctx.require_caller(request)?;
    let store = ctx.auth.current();
    if let Some(name) = read_all {
        let prefix = recipes::prefix(name);
        store.check_read(&caller, &prefix, &recipes::prefix_end(&prefix)).map_err(crate::status::auth)?;
    }
    if let Some(key) = write {
        store.check_write(&caller, key, &[]).map_err(crate::status::auth)?;
    }
    Ok(caller)
}

/// Waits for a contender's turn; the key is withdrawn if the wait is
/// abandoned. Shared with the election service.
pub(crate) async fn take_turn(ctx: &Arc<Context>, name: &[u8], key: &[u8], created: i64) -> Result<i64, Status> {
    let guard = Withdraw::new(ctx.clone(), key.to_vec(), created);
    let revision = recipes::wait_turn(ctx, &recipes::prefix(name), created).await?;
    if !recipes::holds(ctx, key, created).await? {
        // The lease expired (or someone deleted the key) while waiting.
        guard.disarm();
        return Err(Status::unknown(SESSION_EXPIRED));
    }
    guard.disarm();
    Ok(revision)
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let caller = check_recipe(&self.ctx, &request, Some(&request.get_ref().name), None)?;
        let req = request.into_inner();
        let lease = recipes::contender_lease(&self.ctx, req.lease).await?;
        let key = recipes::contender_key(&req.name, lease);
        self.ctx.auth.current().check_write(&caller, &key, &[]).map_err(crate::status::auth)?;
        let (created, _) = recipes::enter(&self.ctx, &key, b"", lease, false).await?;
        let revision = take_turn(&self.ctx, &req.name, &key, created).await?;
        let mut header = Some(synod_etcd_api::etcdserverpb::ResponseHeader { revision, ..Default::default() });
        self.ctx.fill(&mut header);
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        check_recipe(&self.ctx, &request, None, Some(&request.get_ref().key))?;
        let revision = recipes::leave(&self.ctx, &request.into_inner().key, None).await?;
        let mut header = Some(synod_etcd_api::etcdserverpb::ResponseHeader { revision, ..Default::default() });
        self.ctx.fill(&mut header);
        Ok(Response::new(UnlockResponse { header }))
    }
}
