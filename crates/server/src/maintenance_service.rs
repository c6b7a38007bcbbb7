//! etcd's Maintenance service: what `etcdctl endpoint status` and
//! `endpoint health` need (Status, Alarm), HashKV for consistency checks,
//! and a no-op Defragment. Raft's index and term are reported as the
//! replica's commit slot and ballot round, their Paxos counterparts.

use crate::alarm;
use crate::machine::{Proposal, Query, Reply};
use crate::server::Context;
use crate::status;
use etcd_client::proto::{
    PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest,
    PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest,
    PbStatusResponse,
};
use std::path::Path;
use std::sync::Arc;
use tonic::codegen::tokio_stream;
use tonic::{Request, Response, Status};

/// The etcd version this server reports: the API it implements.
pub const ETCD_VERSION: &str = "3.5.0";

/// The Maintenance service of one member.
#[derive(Clone)]
pub struct MaintenanceService {
    ctx: Arc<Context>,
}

impl MaintenanceService {
    /// The service over a member's context.
    pub fn new(ctx: Arc<Context>) -> MaintenanceService {
        MaintenanceService { ctx }
    }
}

/// Bytes under a directory: the closest thing to etcd's "db size".
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[tonic::async_trait]
impl PbMaintenanceService for MaintenanceService {
    async fn alarm(&self, request: Request<PbAlarmRequest>) -> Result<Response<PbAlarmResponse>, Status> {
        let req = request.into_inner();
        // GET is a linearizable read; ACTIVATE and DEACTIVATE go through the
        // log, so every member sees the same alarms.
        let result = match req.action {
            alarm::GET => self.ctx.read(&Query::Alarms(req.alarm)).await,
            alarm::ACTIVATE | alarm::DEACTIVATE => self.ctx.propose(Proposal::Alarm(req).to_bytes()).await,
            other => return Err(Status::invalid_argument(format!("etcdserver: unknown alarm action {other}"))),
        };
        let alarms = match result {
            Ok(Ok(Reply::Alarms(a))) => a,
            Ok(Ok(other)) => return Err(Status::internal(format!("synod: unexpected reply to an alarm: {other:?}"))),
            Ok(Err(e)) => return Err(status::machine(&e)),
            Err(e) => return Err(status::runtime(&e)),
        };
        let mut resp = PbAlarmResponse { header: None, alarms };
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn status(&self, _request: Request<PbStatusRequest>) -> Result<Response<PbStatusResponse>, Status> {
        let st = self.ctx.handle.status().await.map_err(|e| status::runtime(&e))?;
        let dir = self.ctx.data_dir.clone();
        let db_size = tokio::task::spawn_blocking(move || dir_size(&dir)).await.unwrap_or(0) as i64;
        let mut resp = PbStatusResponse {
            version: ETCD_VERSION.to_string(),
            db_size,
            db_size_in_use: db_size,
            leader: st.leader.unwrap_or(0),
            raft_index: st.commit,
            raft_term: st.ballot.round,
            raft_applied_index: st.applied,
            storage_version: ETCD_VERSION.to_string(),
            ..Default::default()
        };
        if st.leader.is_none() {
            resp.errors.push(status::NO_LEADER.to_string());
        }
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        _request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        // The log is compacted by snapshots; there is nothing to defragment.
        let mut resp = PbDefragmentResponse { header: None };
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn hash(&self, _request: Request<PbHashRequest>) -> Result<Response<PbHashResponse>, Status> {
        Err(status::unimplemented("Maintenance.Hash (use HashKV)"))
    }

    async fn hash_kv(&self, request: Request<PbHashKvRequest>) -> Result<Response<PbHashKvResponse>, Status> {
        let rev = request.into_inner().revision;
        let mut resp = self
            .ctx
            .handle
            .with_state(move |m| m.kv().hash_kv(rev))
            .await
            .map_err(|e| status::runtime(&e))?
            .map_err(|e| status::kv(&e))?;
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    type SnapshotStream = tokio_stream::Empty<Result<PbSnapshotResponse, Status>>;

    async fn snapshot(&self, _request: Request<PbSnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(status::unimplemented("Maintenance.Snapshot"))
    }

    async fn move_leader(
        &self,
        _request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(status::unimplemented("Maintenance.MoveLeader"))
    }

    async fn downgrade(&self, _request: Request<PbDowngradeRequest>) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(status::unimplemented("Maintenance.Downgrade"))
    }
}
