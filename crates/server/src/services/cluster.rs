//! etcd's Cluster service: listing and changing the members.
//!
//! The list is the latest configuration the protocol knows (voters and
//! learners, a change chosen but not yet in force included), joined with
//! what the log records about each member: the name and client URLs it
//! published when it started, and its peer URLs ([`crate::cluster::membership`]).
//!
//! Changes are made at the leader; a follower forwards them
//! ([`crate::cluster::forward`]). `MemberAdd` records the new member's peer URLs and
//! a fresh id in the log, then adds it as a learner: one added as a voter is
//! promoted by the leader as soon as it is in sync, so an empty log never
//! counts in a quorum. `MemberPromote` is refused until the learner is in
//! sync, `MemberRemove` and `MemberAdd` when the new configuration would
//! have no quorum among the members the leader hears now (etcd's
//! `--strict-reconfig-check`), each with etcd's error.

use crate::cluster::forward::{at_leader, to_leader_as, Credentials};
use crate::cluster::membership::{resolve_peer, View};
use crate::context::Context;
use crate::state::machine::{MemberAttributes, Proposal};
use crate::status::{self, BAD_URLS, MEMBER_NOT_FOUND, PEER_URL_EXISTS};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_etcd_api::etcdserverpb::cluster_server::Cluster;
use synod_etcd_api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    ResponseHeader,
};
use synod_paxos::{Change, ReconfigError, TransferError};
use tonic::{Request, Response, Status};

/// How long a change waits for the previous one to take effect.
const IN_PROGRESS_WAIT: Duration = Duration::from_secs(5);

/// The Cluster service of one member.
#[derive(Clone)]
pub struct ClusterService {
    ctx: Arc<Context>,
}

impl ClusterService {
    /// The service over a member's context.
    pub fn new(ctx: Arc<Context>) -> ClusterService {
        ClusterService { ctx }
    }

    /// Every member of `view`, as etcd lists them.
    fn list(&self, view: &View) -> Vec<Member> {
        view.members()
            .map(|id| {
                let record = view.records.get(&id);
                let initial = self.ctx.members.iter().find(|m| m.id == id);
                let name = match record {
                    Some(r) if !r.name.is_empty() => r.name.clone(),
                    _ => initial.map(|m| m.name.clone()).unwrap_or_default(),
                };
                Member {
                    id,
                    name,
                    peer_ur_ls: view.peer_urls(id, &self.ctx.members),
                    client_ur_ls: record.map(|r| r.client_urls.clone()).unwrap_or_default(),
                    is_learner: view.learners.contains(&id),
                }
            })
            .collect()
    }

    async fn view(&self) -> Result<View, Status> {
        View::current(&self.ctx).await.map(|(v, _)| v).map_err(|e| status::runtime(&e))
    }

    /// Make a membership change, waiting for a previous one to take effect.
    async fn reconfigure(&self, change: Change) -> Result<(), Status> {
        let deadline = Instant::now() + IN_PROGRESS_WAIT;
        loop {
            match self.ctx.handle.reconfigure(change.clone()).await {
                Ok(_) => return Ok(()),
                Err(synod_runtime::Error::Reconfig(ReconfigError::InProgress)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => return Err(status::runtime(&e)),
            }
        }
    }

    async fn propose(&self, p: Proposal) -> Result<(), Status> {
        status::outcome(self.ctx.propose(p.to_bytes()).await).map(drop)
    }

    /// Peer URLs that parse and resolve, or etcd's error.
    fn check_urls(urls: &[String]) -> Result<std::net::SocketAddr, Status> {
        if urls.is_empty() || urls.iter().any(|u| crate::config::host_port("peer-urls", u).is_err()) {
            return Err(Status::invalid_argument(BAD_URLS));
        }
        resolve_peer(urls).ok_or_else(|| Status::invalid_argument(BAD_URLS))
    }

    async fn add(&self, req: MemberAddRequest) -> Result<MemberAddResponse, Status> {
        let addr = Self::check_urls(&req.peer_ur_ls)?;
        let view = self.view().await?;
        if view.peer_url_owner(&req.peer_ur_ls, &self.ctx.members, 0).is_some() {
            return Err(Status::failed_precondition(PEER_URL_EXISTS));
        }
        let id = view.fresh_id(&req.peer_ur_ls, self.ctx.cluster_id);
        let record =
            MemberAttributes { id, peer_urls: req.peer_ur_ls.clone(), promote: !req.is_learner, ..Default::default() };
        self.propose(Proposal::PeerUrls(record)).await?;
        self.ctx.handle.set_peer(id, addr).await.map_err(|e| status::runtime(&e))?;
        self.reconfigure(Change::AddLearner(id)).await?;
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: req.peer_ur_ls,
            client_ur_ls: vec![],
            is_learner: req.is_learner,
        };
        Ok(MemberAddResponse { header: None, member: Some(member), members: self.list(&self.view().await?) })
    }

    /// Removes a member for a caller with `creds` (with which the removal
    /// goes to the next leader if this one hands over first).
    async fn remove(&self, req: MemberRemoveRequest, creds: &Credentials) -> Result<MemberRemoveResponse, Status> {
        let view = self.view().await?;
        if !view.contains(req.id) {
            return Err(Status::not_found(MEMBER_NOT_FOUND));
        }
        if req.id == self.ctx.member_id {
            // Removing the leader: hand leadership to another voter first,
            // which then makes the change, so that writes wait for a
            // transfer rather than an election.
            if self.handover(&view).await {
                return to_leader_as(&self.ctx, req, "/etcdserverpb.Cluster/MemberRemove", creds).await;
            }
        }
        self.reconfigure(Change::Remove(req.id)).await?;
        self.propose(Proposal::Forget(req.id)).await?;
        Ok(MemberRemoveResponse { header: None, members: self.list(&self.view().await?) })
    }

    /// Hands leadership to another voter (each in turn until one takes
    /// over); true once this member no longer leads, false if no transfer
    /// succeeded (the removal then goes ahead here, and the leader steps
    /// down once it is in force).
    async fn handover(&self, view: &View) -> bool {
        let me = self.ctx.member_id;
        for &to in view.voters.iter().filter(|&&v| v != me) {
            match self.ctx.handle.transfer_leadership(to).await {
                // Deposed before seeing `to` lead: someone else leads.
                Ok(()) | Err(synod_runtime::Error::Transfer(TransferError::NotLeader { .. })) => return true,
                Err(e) => {
                    tracing::warn!(to = format_args!("{to:x}"), error = %e, "leadership transfer before removal failed")
                }
            }
        }
        false
    }

    async fn update(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse, Status> {
        Self::check_urls(&req.peer_ur_ls)?;
        let view = self.view().await?;
        if !view.contains(req.id) {
            return Err(Status::not_found(MEMBER_NOT_FOUND));
        }
        if view.peer_url_owner(&req.peer_ur_ls, &self.ctx.members, req.id).is_some() {
            return Err(Status::failed_precondition(PEER_URL_EXISTS));
        }
        self.propose(Proposal::PeerUrls(MemberAttributes {
            id: req.id,
            peer_urls: req.peer_ur_ls,
            ..Default::default()
        }))
        .await?;
        Ok(MemberUpdateResponse { header: None, members: self.list(&self.view().await?) })
    }

    async fn promote(&self, req: MemberPromoteRequest) -> Result<MemberPromoteResponse, Status> {
        let view = self.view().await?;
        if !view.contains(req.id) {
            return Err(Status::not_found(MEMBER_NOT_FOUND));
        }
        self.reconfigure(Change::PromoteLearner(req.id)).await?;
        Ok(MemberPromoteResponse { header: None, members: self.list(&self.view().await?) })
    }

    fn respond<T>(&self, mut resp: T, header: impl FnOnce(&mut T) -> &mut Option<ResponseHeader>) -> Response<T> {
        self.ctx.fill(header(&mut resp));
        Response::new(resp)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        // Membership changes need the root role (etcd's checkMembershipOperationPermission).
        self.ctx.check_admin(&request)?;
        let resp = at_leader(&self.ctx, request, "/etcdserverpb.Cluster/MemberAdd", |r| self.add(r)).await?;
        Ok(self.respond(resp, |r| &mut r.header))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        // Membership changes need the root role (etcd's checkMembershipOperationPermission).
        self.ctx.check_admin(&request)?;
        let creds = Credentials::of(&self.ctx, request.metadata(), request.peer_certs())?;
        let resp =
            at_leader(&self.ctx, request, "/etcdserverpb.Cluster/MemberRemove", |r| self.remove(r, &creds)).await?;
        Ok(self.respond(resp, |r| &mut r.header))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        // Membership changes need the root role (etcd's checkMembershipOperationPermission).
        self.ctx.check_admin(&request)?;
        let resp = at_leader(&self.ctx, request, "/etcdserverpb.Cluster/MemberUpdate", |r| self.update(r)).await?;
        Ok(self.respond(resp, |r| &mut r.header))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.ctx.require_caller(&request)?;
        if request.get_ref().linearizable {
            // Everything chosen before the request is applied here after
            // the barrier; the view below is at least that fresh.
            self.ctx.barrier().await?;
        }
        let members = self.list(&self.view().await?);
        Ok(self.respond(MemberListResponse { header: None, members }, |r| &mut r.header))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        // Membership changes need the root role (etcd's checkMembershipOperationPermission).
        self.ctx.check_admin(&request)?;
        let resp = at_leader(&self.ctx, request, "/etcdserverpb.Cluster/MemberPromote", |r| self.promote(r)).await?;
        Ok(self.respond(resp, |r| &mut r.header))
    }
}
