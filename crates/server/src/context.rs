//! The [`Context`] every etcd service of one member shares: the handle to
//! the replica, the auth store as last applied and the tokens it accepts,
//! the watch hub, the way to the leader, and the flags the services check
//! before proposing. Its methods are what the services have in common:
//! proposing a write (after the quota and auth checks), a linearizable
//! read, who a request comes from, and response headers.
//!
//! It must never import a service module (`crate::services`): the services
//! depend on it, not the other way round.

use crate::auth::{AuthError, AuthInfo, AuthView};
use crate::cluster::forward::LeaderForwarder;
use crate::config::Member;
use crate::state::machine::{EtcdMachine, Output, Proposal, Query, Reply};
use crate::state::typed::Write;
use crate::state::watch_hub::WatchHub;
use crate::token::Tokens;
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synod_etcd_api::etcdserverpb::ResponseHeader;
use synod_runtime::Handle;

/// How long a proposal refused for want of a leader waits for news of one
/// before it is tried again regardless.
const LEADER_RETRY: Duration = Duration::from_millis(50);

/// What every service of one member shares.
pub struct Context {
    /// The replica.
    pub handle: Handle<EtcdMachine>,
    /// The cluster's id, for response headers.
    pub cluster_id: u64,
    /// This member's id, for response headers.
    pub member_id: u64,
    /// Every member from `--initial-cluster`.
    pub members: Vec<Member>,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// Most ops in one txn (`--max-txn-ops`), checked before proposing.
    pub max_txn_ops: usize,
    /// This member's data directory.
    pub data_dir: PathBuf,
    /// The space quota in bytes (`--quota-backend-bytes`, see [`crate::quota`]).
    pub quota_bytes: u64,
    /// How long a request waits for a leader to be elected before failing
    /// with "no leader".
    pub leader_wait: Duration,
    /// Where watch streams take applied events from.
    pub watch_hub: WatchHub,
    /// How often watchers that asked for progress notifications get one.
    pub watch_progress_interval: Duration,
    /// The way to the leader for requests only it serves.
    pub forwarder: LeaderForwarder,
    /// The auth store as this member last applied it.
    pub auth: Arc<AuthView>,
    /// The tokens this member issues and accepts (`--auth-token`).
    pub tokens: Tokens,
    /// `--client-cert-auth`: a verified client certificate's common name is
    /// the user when a request carries no token (etcd 3.4).
    pub client_cert_auth: bool,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// The latest ballot round seen, reported as raft term.
    pub(crate) term: AtomicU64,
    /// The latest store revision seen, for headers of responses that do
    /// not come from the store.
    pub(crate) revision: AtomicI64,
}

impl Context {
    /// Replicates a payload. A request refused because no leader is known
    /// was not proposed, so it is retried until one is, for up to
    /// `leader_wait`: tried again when this member's view of the cluster
    /// names another leader, or after `LEADER_RETRY` (a leader may be
    /// known and still refuse while it takes over). This is the one layer
    /// that retries proposals: the runtime does not.
    pub async fn propose(&self, payload: Bytes) -> Result<Output, synod_runtime::Error> {
        let deadline = Instant::now() + self.leader_wait;
        let mut view = self.handle.subscribe();
        loop {
            let tried = view.borrow().leadership();
            match self.handle.propose(payload.clone()).await {
                Err(synod_runtime::Error::NotLeader { .. }) if Instant::now() < deadline => {
                    let _ = tokio::time::timeout(LEADER_RETRY, view.wait_for(|v| v.leadership() != tried)).await;
                }
                other => return other,
            }
        }
    }

    /// Proposes a key-value write and returns the state machine's
    /// response, or etcd's error for it. A write that would take the store
    /// over its space quota is refused (and raises NOSPACE) first.
    pub async fn write(&self, cmd: synod_kv::Command) -> Result<synod_kv::Response, tonic::Status> {
        crate::quota::check(self, &cmd).await?;
        let payload = Proposal::Kv(cmd).to_bytes();
        if payload.len() > self.max_request_bytes {
            return Err(crate::status::too_large());
        }
        match crate::status::outcome(self.propose(payload).await)? {
            Reply::Write(r) => Ok(r),
            other => Err(tonic::Status::internal(format!("synod: unexpected reply to a write: {other:?}"))),
        }
    }

    /// Proposes a client's key-value write, checked against the auth store
    /// first (a refused one costs no log slot) and again where it applies,
    /// and returns the write's own response ([`Write`]).
    pub async fn write_as<W: Write>(&self, request: W, caller: AuthInfo) -> Result<W::Response, tonic::Status> {
        let cmd = request.command();
        self.auth.current().check_command(Some(&caller), None, &cmd).map_err(crate::status::auth)?;
        crate::quota::check(self, &cmd).await?;
        let payload = Proposal::KvAs(cmd, caller).to_bytes();
        if payload.len() > self.max_request_bytes {
            return Err(crate::status::too_large());
        }
        match crate::status::outcome(self.propose(payload).await)? {
            Reply::Write(r) => W::response(r).map_err(crate::status::unexpected),
            other => Err(tonic::Status::internal(format!("synod: unexpected reply to a write: {other:?}"))),
        }
    }

    /// Who sent a request (etcd's `AuthInfoFromCtx`): `None` when auth is
    /// disabled or the request names no one; the user of its token
    /// (metadata `token`, or `authorization`), or else, under
    /// `--client-cert-auth`, the common name of its verified client
    /// certificate. A token this member does not accept is refused with
    /// "invalid auth token".
    pub fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Option<AuthInfo>, tonic::Status> {
        self.caller_from(request.metadata(), request.peer_certs())
    }

    /// [`Context::caller`] from a request's parts.
    pub fn caller_from(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        certs: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
    ) -> Result<Option<AuthInfo>, tonic::Status> {
        self.who(metadata, certs).map_err(crate::status::auth)
    }

    /// [`Context::caller_from`], refusing with the auth error itself.
    fn who(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        certs: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
    ) -> Result<Option<AuthInfo>, AuthError> {
        let store = self.auth.current();
        if !store.enabled() {
            return Ok(None);
        }
        let token = metadata.get("token").or_else(|| metadata.get("authorization"));
        if let Some(token) = token {
            let token = token.to_str().map_err(|_| AuthError::InvalidAuthToken)?;
            return self.tokens.info(token, &store).map(Some);
        }
        if self.client_cert_auth {
            if let Some(cn) = certs.as_ref().and_then(|c| c.first()).and_then(crate::tls::common_name) {
                return Ok(Some(AuthInfo { username: cn, revision: store.revision() }));
            }
        }
        Ok(None)
    }

    /// etcd's `requireAuthInfo`: with auth enabled, the request must name a
    /// user. Returns who (empty when auth is disabled).
    pub fn require_caller<T>(&self, request: &tonic::Request<T>) -> Result<AuthInfo, tonic::Status> {
        self.required(self.caller(request)?)
    }

    /// [`Context::require_caller`] of a caller already looked up.
    pub fn required(&self, caller: Option<AuthInfo>) -> Result<AuthInfo, tonic::Status> {
        match caller {
            Some(info) => Ok(info),
            None if self.auth.current().enabled() => Err(crate::status::auth(AuthError::UserEmpty)),
            None => Ok(AuthInfo::default()),
        }
    }

    /// etcd's `IsAdminPermitted` for a request: auth disabled, or a user with
    /// the root role.
    pub fn check_admin<T>(&self, request: &tonic::Request<T>) -> Result<Option<AuthInfo>, tonic::Status> {
        let caller = self.caller(request)?;
        self.auth.current().check_admin(caller.as_ref()).map_err(crate::status::auth)?;
        Ok(caller)
    }

    /// etcd's `authMaintenanceServer.isAuthenticated`, which guards
    /// Defragment, Hash, HashKV and Snapshot: [`Context::check_admin`], but
    /// etcd hands those RPCs' refusal back untranslated, so the client gets
    /// code Unknown and the auth package's text
    /// ([`crate::status::auth_untranslated`]).
    pub fn check_admin_untranslated<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let caller = self.who(request.metadata(), request.peer_certs()).map_err(crate::status::auth_untranslated)?;
        self.auth.current().check_admin(caller.as_ref()).map_err(crate::status::auth_untranslated)
    }

    /// etcd's check after a read served from local state (`doSerialize`):
    /// the auth store must not have moved past the caller's revision while
    /// the read ran.
    pub fn check_revision(&self, caller: &AuthInfo) -> Result<(), tonic::Status> {
        if caller.revision != 0 && caller.revision != self.auth.current().revision() {
            return Err(crate::status::auth(AuthError::AuthOldRevision));
        }
        Ok(())
    }

    /// Waits until this member's state includes every write completed
    /// before the call (a linearizable read of something small).
    pub async fn barrier(&self) -> Result<(), tonic::Status> {
        crate::status::outcome(self.read(&Query::Members).await).map(drop)
    }

    /// A linearizable read. While no leader is known the runtime retries
    /// it (`synod_runtime::Handle::read` is the one layer that retries
    /// reads), for up to its request timeout (`NodeConfig::request_timeout`,
    /// as long as a proposal may take); it is not retried here again.
    pub async fn read(&self, query: &Query) -> Result<Output, synod_runtime::Error> {
        self.handle.read(query.to_bytes()).await
    }

    /// Completes a response header: cluster and member ids and the term
    /// always; the revision if the store did not set one.
    pub fn fill(&self, header: &mut Option<ResponseHeader>) {
        let h = header.get_or_insert_with(ResponseHeader::default);
        h.cluster_id = self.cluster_id;
        h.member_id = self.member_id;
        h.raft_term = self.term.load(Ordering::Relaxed);
        if h.revision == 0 {
            h.revision = self.revision.load(Ordering::Relaxed);
        } else {
            self.revision.fetch_max(h.revision, Ordering::Relaxed);
        }
    }
}
