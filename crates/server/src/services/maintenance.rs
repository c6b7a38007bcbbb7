//! etcd's Maintenance service: Status (what `etcdctl endpoint status` and
//! `endpoint health` need), Alarm (the replicated alarms, see
//! [`crate::alarm`]), HashKV for consistency checks, Defragment (a
//! snapshot of this member's state so the log before it is deleted) and
//! Snapshot (a backup, see [`crate::snapshot`]). Raft's index and term are
//! reported as the replica's commit slot and ballot round, their Paxos
//! counterparts; `db_size` is the data directory's size on disk and
//! `db_size_in_use` the store's logical size, the one the quota counts.

use crate::alarm;
use crate::cluster::forward::at_leader;
use crate::context::Context;
use crate::state::machine::{Proposal, Query, Reply};
use crate::status;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_etcd_api::etcdserverpb::maintenance_server::Maintenance;
use synod_etcd_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::codegen::tokio_stream;
use tonic::{Request, Response, Status};
use tracing::info;

/// Bytes per message of a snapshot stream (etcd sends 32 KiB).
const SNAPSHOT_CHUNK: usize = 64 * 1024;

/// How long Defragment waits for this member's snapshot to be stored.
const DEFRAG_WAIT: Duration = Duration::from_secs(30);

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
pub fn dir_size(path: &Path) -> u64 {
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
impl Maintenance for MaintenanceService {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // etcd: listing alarms needs a user; changing them, the root role.
        if request.get_ref().action == alarm::GET {
            self.ctx.require_caller(&request)?;
        } else {
            self.ctx.check_admin(&request)?;
        }
        let req = request.into_inner();
        // GET is a linearizable read; ACTIVATE and DEACTIVATE go through the
        // log, so every member sees the same alarms.
        let result = match req.action {
            alarm::GET => self.ctx.read(&Query::Alarms(req.alarm)).await,
            alarm::ACTIVATE | alarm::DEACTIVATE => self.ctx.propose(Proposal::Alarm(req).to_bytes()).await,
            other => return Err(Status::invalid_argument(format!("etcdserver: unknown alarm action {other}"))),
        };
        let alarms = match status::outcome(result)? {
            Reply::Alarms(a) => a,
            other => return Err(Status::internal(format!("synod: unexpected reply to an alarm: {other:?}"))),
        };
        let mut resp = AlarmResponse { header: None, alarms };
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        // Maintenance needs the root role, as in etcd.
        self.ctx.check_admin(&request)?;
        // Asked, not read from the published view: the raft index (the
        // commit index) is not in the view, and an operator asking for
        // the status expects the replica's answer of this moment.
        let st = self.ctx.handle.status().await.map_err(|e| status::runtime(&e))?;
        let dir = self.ctx.data_dir.clone();
        let db_size = tokio::task::spawn_blocking(move || dir_size(&dir)).await.unwrap_or(0) as i64;
        let (in_use, alarms) = self
            .ctx
            .handle
            .with_state(|m| (m.kv().db_size(), m.alarms().get(alarm::NONE)))
            .await
            .map_err(|e| status::runtime(&e))?;
        let mut resp = StatusResponse {
            version: ETCD_VERSION.to_string(),
            db_size,
            db_size_in_use: in_use as i64,
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
        for a in alarms {
            let name = match a.alarm {
                alarm::NOSPACE => "NOSPACE",
                alarm::CORRUPT => "CORRUPT",
                _ => "NONE",
            };
            // etcd lists each alarm in the text form of its AlarmMember.
            resp.errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
        }
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        // Maintenance needs the root role, as in etcd.
        self.ctx.check_admin_untranslated(&request)?;
        // etcd rewrites its bbolt file; here the disk that compaction freed
        // is held by the log, so take a snapshot of everything applied and
        // wait until the log is compacted to it: the log files before it
        // are then deleted. Like etcd's, this concerns this member only.
        let dir = self.ctx.data_dir.clone();
        let before = tokio::task::spawn_blocking(move || dir_size(&dir)).await.unwrap_or(0);
        let mut view = self.ctx.handle.subscribe();
        let slot = self.ctx.handle.snapshot().await.map_err(|e| status::runtime(&e))?;
        let deadline = Instant::now() + DEFRAG_WAIT;
        let mut asked = Instant::now();
        let ask_again = Duration::from_millis(200);
        loop {
            let (compacted, voter) = {
                let v = view.borrow_and_update();
                (v.compacted, v.voter)
            };
            if compacted >= slot {
                break;
            }
            // A periodic snapshot being stored when we asked makes the
            // replica skip ours: ask again until one covers `slot`.
            if asked.elapsed() >= ask_again {
                self.ctx.handle.snapshot().await.map_err(|e| status::runtime(&e))?;
                asked = Instant::now();
            }
            if !voter {
                return Err(Status::unavailable("synod: cannot defragment while rejoining as a learner"));
            }
            if Instant::now() > deadline {
                return Err(Status::unavailable(status::TIMEOUT));
            }
            // The replica publishes the compacted index once the snapshot
            // is stored.
            if let Ok(Err(_)) = tokio::time::timeout(ask_again, view.changed()).await {
                return Err(status::runtime(&synod_runtime::Error::Stopped));
            }
        }
        info!(slot, before, "defragmented: log compacted to a fresh snapshot");
        let mut resp = DefragmentResponse { header: None };
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        // Maintenance needs the root role, as in etcd.
        self.ctx.check_admin_untranslated(&request)?;
        Err(status::unimplemented("Maintenance.Hash (use HashKV)"))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        // Maintenance needs the root role, as in etcd.
        self.ctx.check_admin_untranslated(&request)?;
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

    type SnapshotStream = tokio_stream::Iter<std::vec::IntoIter<Result<SnapshotResponse, Status>>>;

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        // Maintenance needs the root role, as in etcd.
        self.ctx.check_admin_untranslated(&request)?;
        // One consistent state: this member's store as of one applied slot.
        let (kv, auth) = self
            .ctx
            .handle
            .with_state(|m| (m.kv().clone(), m.auth().clone()))
            .await
            .map_err(|e| status::runtime(&e))?;
        // Writing the file takes a while for a large store: off the replica
        // and off the async workers.
        let file = tokio::task::spawn_blocking(move || crate::snapshot::encode(&kv, &auth))
            .await
            .map_err(|e| Status::internal(format!("synod: writing the snapshot failed: {e}")))?;
        let mut header = None;
        self.ctx.fill(&mut header);
        let total = file.len();
        let mut sent = 0;
        let mut chunks = Vec::with_capacity(total / SNAPSHOT_CHUNK + 1);
        for blob in file.chunks(SNAPSHOT_CHUNK) {
            sent += blob.len();
            chunks.push(Ok(SnapshotResponse {
                header,
                remaining_bytes: (total - sent) as u64,
                blob: blob.to_vec(),
                version: ETCD_VERSION.to_string(),
            }));
        }
        info!(bytes = total, "streaming a snapshot");
        Ok(Response::new(tokio_stream::iter(chunks)))
    }

    /// Hands leadership to `target_id` (see `synod_paxos::handover`); at a
    /// follower the request is forwarded to the leader. Answers once the
    /// target leads.
    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        // Maintenance needs the root role, as in etcd.
        self.ctx.check_admin(&request)?;
        let handle = &self.ctx.handle;
        let mut resp = at_leader(&self.ctx, request, "/etcdserverpb.Maintenance/MoveLeader", |req| async move {
            handle.transfer_leadership(req.target_id).await.map_err(|e| status::runtime(&e))?;
            info!(target = format_args!("{:x}", req.target_id), "leadership handed over");
            Ok(MoveLeaderResponse::default())
        })
        .await?;
        self.ctx.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn downgrade(&self, _request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(status::unimplemented("Maintenance.Downgrade"))
    }
}
