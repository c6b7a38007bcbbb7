//! etcd's v3election service (`/v3electionpb.Election`): leader election
//! held by a lease, built on [`crate::services::recipes`] as etcd builds it on its
//! election recipe.
//!
//! A candidate's key is `name/<lease in hex>` holding its value; the leader
//! is the candidate whose key was created first. `Campaign` waits to lead,
//! `Proclaim` changes the leader's value only while the caller still leads,
//! `Leader` answers the current leader, `Observe` streams every change of
//! leader or value, `Resign` gives leadership up.

use crate::context::Context;
use crate::services::lock::{check_recipe, take_turn};
use crate::services::recipes;
use std::pin::Pin;
use std::sync::Arc;
use synod_etcd_api::etcdserverpb::ResponseHeader;
use synod_etcd_api::mvccpb::KeyValue;
use synod_etcd_api::v3electionpb::election_server::Election;
use synod_etcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use synod_kv::pb::{Compare, PutRequest, Request as Op, RequestOp, TargetUnion, TxnRequest};
use synod_kv::{Command, Response as KvResponse};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// etcd's `ErrElectionNotLeader`.
pub const NOT_LEADER: &str = "election: not leader";
/// etcd's `ErrElectionNoLeader`.
pub const NO_LEADER: &str = "election: no leader";
/// etcd's `ErrMissingLeaderKey`.
pub const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// The Election service of one member.
#[derive(Clone)]
pub struct ElectionService {
    ctx: Arc<Context>,
}

impl ElectionService {
    /// The service over a member's context.
    pub fn new(ctx: Arc<Context>) -> ElectionService {
        ElectionService { ctx }
    }

    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        let mut header = Some(ResponseHeader { revision, ..Default::default() });
        self.ctx.fill(&mut header);
        header
    }
}

fn leader_key(leader: Option<LeaderKey>) -> Result<LeaderKey, Status> {
    leader.ok_or_else(|| Status::invalid_argument(MISSING_LEADER_KEY))
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let caller = check_recipe(&self.ctx, &request, Some(&request.get_ref().name), None)?;
        let req = request.into_inner();
        let lease = recipes::contender_lease(&self.ctx, req.lease).await?;
        let key = recipes::contender_key(&req.name, lease);
        self.ctx.auth.current().check_write(&caller, &key, &[]).map_err(crate::status::auth)?;
        let (created, _) = recipes::enter(&self.ctx, &key, &req.value, lease, true).await?;
        let revision = take_turn(&self.ctx, &req.name, &key, created).await?;
        let leader = LeaderKey { name: req.name, key, rev: created, lease };
        Ok(Response::new(CampaignResponse { header: self.header(revision), leader: Some(leader) }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let key = request.get_ref().leader.as_ref().map(|l| l.key.clone()).unwrap_or_default();
        let caller = check_recipe(&self.ctx, &request, None, Some(&key))?;
        self.ctx.auth.current().check_read(&caller, &key, &[]).map_err(crate::status::auth)?;
        let req = request.into_inner();
        let leader = leader_key(req.leader)?;
        let put = PutRequest { key: leader.key.clone(), value: req.value, lease: leader.lease, ..Default::default() };
        let txn = TxnRequest {
            compare: vec![Compare {
                key: leader.key.clone(),
                target: recipes::CREATE,
                result: recipes::EQUAL,
                target_union: Some(TargetUnion::CreateRevision(leader.rev)),
                ..Default::default()
            }],
            success: vec![RequestOp { request: Some(Op::RequestPut(put)) }],
            failure: vec![],
        };
        let KvResponse::Txn(resp) = self.ctx.write(Command::Txn(txn)).await? else {
            return Err(Status::internal("synod: a txn got another reply"));
        };
        if !resp.succeeded {
            return Err(Status::unknown(NOT_LEADER));
        }
        let revision = resp.header.map_or(0, |h| h.revision);
        Ok(Response::new(ProclaimResponse { header: self.header(revision) }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        check_recipe(&self.ctx, &request, Some(&request.get_ref().name), None)?;
        let name = request.into_inner().name;
        // Linearizable, like etcd's: a read-index round first.
        let _ = self.ctx.read(&crate::state::machine::Query::Members).await.map_err(|e| crate::status::runtime(&e))?;
        match recipes::first(&self.ctx, &recipes::prefix(&name)).await? {
            (Some(kv), revision) => Ok(Response::new(LeaderResponse { header: self.header(revision), kv: Some(kv) })),
            (None, _) => Err(Status::unknown(NO_LEADER)),
        }
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        check_recipe(&self.ctx, &request, Some(&request.get_ref().name), None)?;
        let prefix = recipes::prefix(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(16);
        let service = self.clone();
        tokio::spawn(async move {
            let mut feed = service.ctx.watch_hub.subscribe();
            let mut seen = 0;
            let mut last: Option<KeyValue> = None;
            loop {
                let current = match recipes::first(&service.ctx, &prefix).await {
                    Ok((kv, revision)) => kv.map(|kv| (kv, revision)),
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if let Some((kv, revision)) = current {
                    let same = last.as_ref().is_some_and(|l| l.key == kv.key && l.mod_revision == kv.mod_revision);
                    if !same {
                        last = Some(kv.clone());
                        let resp = LeaderResponse { header: service.header(revision), kv: Some(kv) };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
                tokio::select! {
                    changed = recipes::changed(&mut feed, &prefix, &mut seen) => if let Err(e) = changed {
                        let _ = tx.send(Err(e)).await;
                        return;
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let key = request.get_ref().leader.as_ref().map(|l| l.key.clone()).unwrap_or_default();
        check_recipe(&self.ctx, &request, None, Some(&key))?;
        let leader = leader_key(request.into_inner().leader)?;
        let revision = recipes::leave(&self.ctx, &leader.key, Some(leader.rev)).await?;
        Ok(Response::new(ResignResponse { header: self.header(revision) }))
    }
}
