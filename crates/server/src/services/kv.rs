//! etcd's KV service: writes through the log, reads linearizable through the
//! replica's read path, or serializable from this member's state.
//!
//! Requests are validated before they are proposed, so a bad request costs
//! no log slot; the state machine validates again on apply, so one that got
//! through anyway fails the same way on every replica.
//!
//! With auth enabled, every request is checked against the caller's
//! permissions as etcd checks it: reads here, before and after the read
//! (the auth store must not move on meanwhile); writes here and again in
//! the state machine, against the store as of the write's slot.

use crate::context::Context;
use crate::state::typed::Read;
use crate::status;
use std::sync::Arc;
use synod_etcd_api::etcdserverpb::kv_server::Kv;
use synod_etcd_api::etcdserverpb::RangeStreamResponse;
use synod_kv::pb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, Request as OpRequest, TxnRequest, TxnResponse,
};
use synod_kv::{is_read_only, validate_delete_range, validate_put, validate_range, validate_txn};
use tonic::codegen::tokio_stream;
use tonic::{Request, Response as GrpcResponse, Status};

/// The KV service of one member.
#[derive(Clone)]
pub struct KvService {
    ctx: Arc<Context>,
}

impl KvService {
    /// The service over a member's context.
    pub fn new(ctx: Arc<Context>) -> KvService {
        KvService { ctx }
    }

    /// Answers a read, linearizable unless `serializable`, with the
    /// request's own reply ([`Read`]).
    async fn read<R: Read>(&self, request: R, serializable: bool) -> Result<R::Reply, Status> {
        let query = request.query();
        let result = if serializable {
            self.ctx.handle.with_state(move |m| m.answer(&query)).await
        } else {
            self.ctx.read(&query).await
        };
        R::reply(status::outcome(result)?).map_err(status::unexpected)
    }
}

/// Whether every range in a read-only txn, at any depth, asks for a
/// serializable read (etcd's `isTxnSerializable`).
fn txn_is_serializable(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(OpRequest::RequestRange(r)) => r.serializable,
        Some(OpRequest::RequestTxn(t)) => txn_is_serializable(t),
        _ => true,
    })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<GrpcResponse<RangeResponse>, Status> {
        let caller = self.ctx.caller(&request)?.unwrap_or_default();
        let req = request.into_inner();
        validate_range(&req).map_err(|e| status::kv(&e))?;
        self.ctx.auth.current().check_read(&caller, &req.key, &req.range_end).map_err(status::auth)?;
        let serializable = req.serializable;
        let mut r = self.read(req, serializable).await?;
        self.ctx.check_revision(&caller)?;
        self.ctx.fill(&mut r.header);
        Ok(GrpcResponse::new(r))
    }

    type RangeStreamStream = tokio_stream::Empty<Result<RangeStreamResponse, Status>>;

    async fn range_stream(
        &self,
        _request: Request<RangeRequest>,
    ) -> Result<GrpcResponse<Self::RangeStreamStream>, Status> {
        Err(status::unimplemented("KV.RangeStream"))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<GrpcResponse<PutResponse>, Status> {
        let caller = self.ctx.caller(&request)?.unwrap_or_default();
        let req = request.into_inner();
        validate_put(&req).map_err(|e| status::kv(&e))?;
        let mut r = self.ctx.write_as(req, caller).await?;
        self.ctx.fill(&mut r.header);
        Ok(GrpcResponse::new(r))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<GrpcResponse<DeleteRangeResponse>, Status> {
        let caller = self.ctx.caller(&request)?.unwrap_or_default();
        let req = request.into_inner();
        validate_delete_range(&req).map_err(|e| status::kv(&e))?;
        let mut r = self.ctx.write_as(req, caller).await?;
        self.ctx.fill(&mut r.header);
        Ok(GrpcResponse::new(r))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<GrpcResponse<TxnResponse>, Status> {
        let caller = self.ctx.caller(&request)?.unwrap_or_default();
        let req = request.into_inner();
        validate_txn(&req, self.ctx.max_txn_ops).map_err(|e| status::kv(&e))?;
        let mut resp = if is_read_only(&req) {
            self.ctx.auth.current().check_txn(&caller, None, &req).map_err(status::auth)?;
            let serializable = txn_is_serializable(&req);
            let resp = self.read(req, serializable).await?;
            self.ctx.check_revision(&caller)?;
            resp
        } else {
            self.ctx.write_as(req, caller).await?
        };
        self.ctx.fill(&mut resp.header);
        Ok(GrpcResponse::new(resp))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<GrpcResponse<CompactionResponse>, Status> {
        // etcd checks compaction for admin rights (the root role).
        let caller = self.ctx.check_admin(&request)?.unwrap_or_default();
        let req = request.into_inner();
        let mut r = self.ctx.write_as(req, caller).await?;
        self.ctx.fill(&mut r.header);
        Ok(GrpcResponse::new(r))
    }
}
