//! etcd's Lease service.
//!
//! Grant and revoke are writes through the log. Keep-alives and TTL
//! queries are about time, which only the leader counts
//! ([`crate::state::lease_keeper`]): the leader answers them, and a follower
//! forwards them to it ([`crate::cluster::forward`]), as etcd does. The lease
//! list is a linearizable read of the lease table.
//!
//! etcd's answers where a lease does not exist: a keep-alive gets a
//! response with TTL 0 (etcdctl prints "lease ... expired or revoked"), a
//! TTL query one with TTL -1 (etcdctl: "lease ... already expired"),
//! a revoke the error "etcdserver: requested lease not found".
//!
//! A grant's TTL is raised to etcd's minimum for this member's election
//! timeout ([`min_ttl`]) before it is proposed, so the log carries the TTL
//! every replica applies (the state machine raises it further to its own
//! fixed minimum, the same everywhere).

use crate::auth::AuthInfo;
use crate::cluster::forward::{is_forwarded, not_leader, Credentials};
use crate::context::Context;
use crate::state::lease_keeper::{LeaseKeeper, Remaining, Renewal};
use crate::status;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_etcd_api::etcdserverpb::lease_server::Lease;
use synod_etcd_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse, ResponseHeader,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response as GrpcResponse, Status, Streaming};

/// How long a keep-alive or TTL query that found no leader to serve it
/// waits for news of another (a change of leadership in this member's view
/// of the cluster) before it tries again regardless.
const RETRY: Duration = Duration::from_millis(50);

/// The shortest time a keep-alive or TTL query waits for a leader before
/// failing: a failover (election plus a client's retry) fits in it, so a
/// keep-alive stream survives one (etcd waits for its request timeout).
const MIN_LEADER_WAIT: Duration = Duration::from_secs(5);

/// Keep-alive responses buffered per stream before the stream stops
/// reading requests (a client that does not read cannot make us buffer
/// without bound).
const STREAM_BUFFER: usize = 16;

/// etcd's shortest lease TTL, in seconds, for an election timeout:
/// 1.5 election timeouts rounded up, so that a lease outlives the election
/// of a new leader (etcd's `minTTL`). 2 s for etcd's default 1 s.
pub fn min_ttl(election_timeout: Duration) -> i64 {
    let millis = election_timeout.as_millis().saturating_mul(3) / 2;
    i64::try_from(millis.div_ceil(1000)).unwrap_or(i64::MAX).max(1)
}

/// What a lease call needs of the caller's rights ([`LeaseService`]'s
/// `check_leases`).
enum LeaseCheck {
    /// A keep-alive of this lease: write every key attached.
    Renew(i64),
    /// A TTL query with keys (these leases) or the lease list (all): read
    /// every key attached.
    Read(Option<Vec<i64>>),
}

/// The Lease service of one member.
#[derive(Clone)]
pub struct LeaseService {
    ctx: Arc<Context>,
    keeper: Arc<LeaseKeeper>,
    /// Shortest TTL granted, in seconds ([`min_ttl`]).
    min_ttl: i64,
}

impl LeaseService {
    /// The service over a member's context and its lease keeper; TTLs
    /// below `min_ttl` seconds are raised to it.
    pub fn new(ctx: Arc<Context>, keeper: Arc<LeaseKeeper>, min_ttl: i64) -> LeaseService {
        LeaseService { ctx, keeper, min_ttl }
    }

    fn leader_wait(&self) -> Duration {
        self.ctx.leader_wait.max(MIN_LEADER_WAIT)
    }

    /// etcd's `checkLeaseRenew` (`Renew`), `checkLeaseTimeToLive` and
    /// `checkLeaseLeases` (`Read`): with auth enabled, a caller without the
    /// root role must be able to write (renew) or read every key attached
    /// to the leases in question. Checked where the client's request
    /// arrives and again at the leader a follower forwards it to (with the
    /// caller's token).
    async fn check_leases(&self, caller: &AuthInfo, check: LeaseCheck) -> Result<(), Status> {
        if !self.ctx.auth.current().enabled() {
            return Ok(());
        }
        let caller = caller.clone();
        let checked = self
            .ctx
            .handle
            .with_state(move |m| match check {
                LeaseCheck::Renew(id) => m.auth().check_lease_puts(&caller, Some(m.kv()), id),
                LeaseCheck::Read(ids) => m.auth().check_lease_reads(&caller, m.kv(), ids.as_deref()),
            })
            .await
            .map_err(|e| status::runtime(&e))?;
        checked.map_err(status::auth)
    }

    /// A keep-alive: the granted TTL, or 0 if the lease does not exist.
    /// Renewed here if this member leads, else at the leader (with the
    /// caller's credentials). A forwarded keep-alive is never forwarded again.
    async fn renew(&self, id: i64, forwarded: bool, creds: &Credentials) -> Result<i64, Status> {
        let deadline = Instant::now() + self.leader_wait();
        let mut view = self.ctx.handle.subscribe();
        loop {
            let tried = view.borrow().leadership();
            let failure = match self.renew_here(id).await {
                Ok(Renewal::Renewed(ttl)) => return Ok(ttl),
                Ok(Renewal::NotFound) => return Ok(0),
                Ok(Renewal::NotLeader(_)) if forwarded => return Err(not_leader()),
                Ok(Renewal::NotLeader(Some(leader))) if leader != self.ctx.member_id => {
                    let token = self.ctx.forwarder.token(&self.ctx, creds).await?;
                    match self.ctx.forwarder.keep_alive(leader, id, token).await {
                        Ok(ttl) => return Ok(ttl),
                        Err(e) => {
                            self.ctx.forwarder.forget(leader);
                            e
                        }
                    }
                }
                Ok(Renewal::NotLeader(_)) => Status::unavailable(status::NO_LEADER),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(failure);
            }
            let _ = tokio::time::timeout(RETRY, view.wait_for(|v| v.leadership() != tried)).await;
        }
    }

    /// A keep-alive at this member if it leads, after a linearizable read:
    /// that confirms the leadership (a leader cut off from the others must
    /// not promise a TTL a newer leader would not honour) and makes the
    /// lease table hold every grant completed before (a new leader must not
    /// answer "not found" for a lease it has not applied yet).
    async fn renew_here(&self, id: i64) -> Result<Renewal, Status> {
        if let Err(leader) = self.confirmed_leader().await? {
            return Ok(Renewal::NotLeader(leader));
        }
        self.keeper.renew(id).await.map_err(|e| status::runtime(&e))
    }

    /// A TTL query, answered by the leader (here or forwarded).
    async fn time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
        forwarded: bool,
        creds: &Credentials,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        let deadline = Instant::now() + self.leader_wait();
        let mut view = self.ctx.handle.subscribe();
        loop {
            let tried = view.borrow().leadership();
            let failure = match self.time_to_live_here(&req).await {
                Ok(Remaining::Found(t)) => {
                    return Ok(LeaseTimeToLiveResponse {
                        header: None,
                        id: req.id,
                        ttl: t.ttl,
                        granted_ttl: t.granted_ttl,
                        keys: t.keys,
                    })
                }
                Ok(Remaining::NotFound) => {
                    return Ok(LeaseTimeToLiveResponse { id: req.id, ttl: -1, ..Default::default() })
                }
                Ok(Remaining::NotLeader(_)) if forwarded => return Err(not_leader()),
                Ok(Remaining::NotLeader(Some(leader))) if leader != self.ctx.member_id => {
                    let token = self.ctx.forwarder.token(&self.ctx, creds).await?;
                    match self.ctx.forwarder.time_to_live(leader, req, token).await {
                        Ok(mut resp) => {
                            resp.header = None;
                            return Ok(resp);
                        }
                        Err(e) => {
                            self.ctx.forwarder.forget(leader);
                            e
                        }
                    }
                }
                Ok(Remaining::NotLeader(_)) => Status::unavailable(status::NO_LEADER),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(failure);
            }
            let _ = tokio::time::timeout(RETRY, view.wait_for(|v| v.leadership() != tried)).await;
        }
    }

    /// The leader's answer to a TTL query, after a linearizable read so
    /// that the lease table holds every grant and revoke completed before.
    async fn time_to_live_here(&self, req: &LeaseTimeToLiveRequest) -> Result<Remaining, Status> {
        if let Err(leader) = self.confirmed_leader().await? {
            return Ok(Remaining::NotLeader(leader));
        }
        self.keeper.time_to_live(req.id, req.keys).await.map_err(|e| status::runtime(&e))
    }

    /// `Ok(Ok(()))` if this member leads, confirmed by a linearizable read
    /// (which also makes its lease table current); `Ok(Err(hint))` with the
    /// leader it knows of if it does not lead.
    async fn confirmed_leader(&self) -> Result<Result<(), Option<u64>>, Status> {
        let view = self.ctx.handle.view();
        if !view.is_leader() {
            return Ok(Err(view.leader));
        }
        self.ctx.barrier().await?;
        Ok(Ok(()))
    }

    /// A response header carrying this member's store revision now (as
    /// etcd fills the headers of responses that do not come from the store).
    async fn header(&self) -> Option<ResponseHeader> {
        let revision = self.ctx.handle.with_state(|m| m.kv().revision()).await.unwrap_or(0);
        let mut header = Some(ResponseHeader { revision, ..Default::default() });
        self.ctx.fill(&mut header);
        header
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<GrpcResponse<LeaseGrantResponse>, Status> {
        let caller = self.ctx.require_caller(&request)?;
        let mut req = request.into_inner();
        req.ttl = req.ttl.max(self.min_ttl);
        let mut r = self.ctx.write_as(req, caller).await?;
        self.ctx.fill(&mut r.header);
        Ok(GrpcResponse::new(r))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<GrpcResponse<LeaseRevokeResponse>, Status> {
        // The state machine checks that the caller may write every key
        // attached to the lease (etcd's checkLeasePuts).
        let caller = self.ctx.require_caller(&request)?;
        let mut r = self.ctx.write_as(request.into_inner(), caller).await?;
        self.ctx.fill(&mut r.header);
        Ok(GrpcResponse::new(r))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<GrpcResponse<Self::LeaseKeepAliveStream>, Status> {
        let forwarded = is_forwarded(&request);
        // Who the caller is, asked again for each keep-alive (as etcd
        // does: a token may expire, or the user lose a role, while the
        // stream stays open).
        let metadata = request.metadata().clone();
        let certs = request.peer_certs();
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let this = self.clone();
        // One task per stream, answering its requests in order. It ends
        // when the client closes or drops the stream, or stops reading it.
        tokio::spawn(async move {
            loop {
                let req = match requests.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => return,
                    Err(e) => {
                        // As etcd's leaseKeepAlive, the stream ends with
                        // the error it read (a request over the decoding
                        // limit: grpc-go's ResourceExhausted).
                        tracing::debug!(error = %e, "keep-alive stream broken by its client");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let checked = match this.ctx.caller_from(&metadata, certs.clone()) {
                    Ok(caller) => {
                        let creds = Credentials::known(&metadata, caller.as_ref());
                        match this.ctx.required(caller) {
                            Ok(caller) => this.check_leases(&caller, LeaseCheck::Renew(req.id)).await.map(|()| creds),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                let reply = match checked {
                    Ok(creds) => match this.renew(req.id, forwarded, &creds).await {
                        Ok(ttl) => Ok(LeaseKeepAliveResponse { header: this.header().await, id: req.id, ttl }),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                // As etcd: an error ends the stream; the client opens another.
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(GrpcResponse::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<GrpcResponse<LeaseTimeToLiveResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let found = self.ctx.caller(&request)?;
        let creds = Credentials::known(request.metadata(), found.as_ref());
        let caller = self.ctx.required(found)?;
        let req = request.into_inner();
        if req.keys {
            self.check_leases(&caller, LeaseCheck::Read(Some(vec![req.id]))).await?;
        }
        let mut resp = self.time_to_live(req, forwarded, &creds).await?;
        resp.header = self.header().await;
        Ok(GrpcResponse::new(resp))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<GrpcResponse<LeaseLeasesResponse>, Status> {
        let caller = self.ctx.require_caller(&request)?;
        self.ctx.barrier().await?;
        self.check_leases(&caller, LeaseCheck::Read(None)).await?;
        let leases = self
            .ctx
            .handle
            .with_state(|m| m.kv().leases().map(|(id, _)| LeaseStatus { id }).collect())
            .await
            .map_err(|e| status::runtime(&e))?;
        let resp = LeaseLeasesResponse { header: self.header().await, leases };
        Ok(GrpcResponse::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_ttl_is_one_and_a_half_election_timeouts_rounded_up() {
        let cases = [(1000, 2), (500, 1), (100, 1), (2000, 3), (5000, 8), (1001, 2), (1334, 3)];
        for (election_ms, ttl) in cases {
            assert_eq!(min_ttl(Duration::from_millis(election_ms)), ttl, "election timeout {election_ms} ms");
        }
    }
}
