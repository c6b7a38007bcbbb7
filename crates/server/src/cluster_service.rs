//! etcd's Cluster service: the member list. Names, ids and peer URLs come
//! from `--initial-cluster` (the same on every member); client URLs from the
//! attributes each member publishes through the log when it starts, so every
//! member lists every member's client URLs. Membership is static for now.

use crate::machine::{Query, Reply};
use crate::server::Context;
use crate::status;
use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest, PbMemberListResponse,
    PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest, PbMemberRemoveResponse,
    PbMemberUpdateRequest, PbMemberUpdateResponse,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

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
}

#[tonic::async_trait]
impl PbClusterService for ClusterService {
    async fn member_add(&self, _request: Request<PbMemberAddRequest>) -> Result<Response<PbMemberAddResponse>, Status> {
        Err(status::unimplemented("Cluster.MemberAdd"))
    }

    async fn member_remove(
        &self,
        _request: Request<PbMemberRemoveRequest>,
    ) -> Result<Response<PbMemberRemoveResponse>, Status> {
        Err(status::unimplemented("Cluster.MemberRemove"))
    }

    async fn member_update(
        &self,
        _request: Request<PbMemberUpdateRequest>,
    ) -> Result<Response<PbMemberUpdateResponse>, Status> {
        Err(status::unimplemented("Cluster.MemberUpdate"))
    }

    async fn member_list(
        &self,
        request: Request<PbMemberListRequest>,
    ) -> Result<Response<PbMemberListResponse>, Status> {
        let published = if request.get_ref().linearizable {
            self.ctx.read(&Query::Members).await
        } else {
            self.ctx.handle.with_state(|m| Ok(Reply::Members(m.members()))).await
        };
        let published = match published {
            Ok(Ok(Reply::Members(m))) => m,
            Ok(Ok(other)) => return Err(Status::internal(format!("synod: unexpected reply: {other:?}"))),
            Ok(Err(e)) => return Err(status::machine(&e)),
            Err(e) => return Err(status::runtime(&e)),
        };
        let members = self
            .ctx
            .members
            .iter()
            .map(|m| {
                let client_ur_ls =
                    published.iter().find(|p| p.id == m.id).map(|p| p.client_urls.clone()).unwrap_or_default();
                PbMember {
                    id: m.id,
                    name: m.name.clone(),
                    peer_ur_ls: m.peer_urls.clone(),
                    client_ur_ls,
                    is_learner: false,
                }
            })
            .collect();
        let mut resp = PbMemberListResponse { header: None, members };
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn member_promote(
        &self,
        _request: Request<PbMemberPromoteRequest>,
    ) -> Result<Response<PbMemberPromoteResponse>, Status> {
        Err(status::unimplemented("Cluster.MemberPromote"))
    }
}
