//! Forwarding requests only the leader can serve from a follower to the
//! leader, as etcd's followers forward them: lease keep-alives and TTL
//! queries (the leader alone counts lease TTLs, see
//! [`crate::state::lease_keeper`]), membership changes and leader transfers.
//!
//! The leader is reached on the client URL it published through the log
//! ([`crate::state::machine::MemberAttributes`]), over its own etcd gRPC
//! services, with a marker in the request metadata: a member that receives
//! a forwarded request and does not lead answers "not leader" instead of
//! forwarding again, so requests never bounce between members; the
//! forwarding member retries with the leader it learns next. One channel to
//! the current leader is kept open and replaced when leadership moves.
//!
//! The leader's first client URL this member can speak is used: an http://
//! one always, an https:// one when this member has client TLS, presenting
//! its `--cert-file` as the client certificate (as etcd's own connections
//! do) and checking the leader's against `--trusted-ca-file`, or not at all
//! when the certificates are `--auto-tls`'s self-signed ones.

use crate::auth::{AuthCommand, AuthError, AuthOp, AuthReply, TokenGrant};
use crate::context::Context;
use crate::state::machine::{EtcdMachine, Proposal, Reply};
use crate::status;
use crate::token::Tokens;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use synod_etcd_api::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use synod_paxos::NodeId;
use synod_runtime::Handle;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Serve `request` with `local` if this member leads, else forward it to
/// the leader's service at `path` (once: a forwarded request that finds no
/// leader here fails with "not leader"). While no leader is known, or the
/// one known is gone or no longer leads, it asks again, for up to the
/// member's leader wait.
pub async fn at_leader<Req, Resp, F, Fut>(
    ctx: &Context,
    request: Request<Req>,
    path: &'static str,
    local: F,
) -> Result<Resp, Status>
where
    Req: prost::Message + Clone + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>>,
{
    let forwarded = is_forwarded(&request);
    // The leader checks the caller's rights again: it gets the caller's
    // credentials.
    let creds = Credentials::of(ctx, request.metadata(), request.peer_certs())?;
    let req = request.into_inner();
    // The leader as this member last learned it: no round trip needed.
    if ctx.handle.view().leader == Some(ctx.member_id) {
        return local(req).await;
    }
    if forwarded {
        return Err(not_leader());
    }
    to_leader_as(ctx, req, path, &creds).await
}

/// Forward `req` to the leader's service at `path` on behalf of a caller
/// with `creds`, waiting for a leader other than this member to be known
/// (woken by the replica's view of the cluster, not by asking it again),
/// and trying again while the one known is gone or no longer leads, for up
/// to the member's leader wait.
pub async fn to_leader_as<Req, Resp>(
    ctx: &Context,
    req: Req,
    path: &'static str,
    creds: &Credentials,
) -> Result<Resp, Status>
where
    Req: prost::Message + Clone + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let deadline = tokio::time::Instant::now() + ctx.leader_wait;
    let mut view = ctx.handle.subscribe();
    let mut minted_refused = false;
    loop {
        let me = ctx.member_id;
        let known = async { view.wait_for(|v| v.leader.is_some_and(|l| l != me)).await.map(|v| v.leader) };
        let l = match tokio::time::timeout_at(deadline, known).await {
            Ok(Ok(Some(l))) => l,
            // Not what was waited for; wait again.
            Ok(Ok(None)) => continue,
            Ok(Err(_)) => return Err(status::runtime(&synod_runtime::Error::Stopped)),
            Err(_) => return Err(Status::unavailable(status::NO_LEADER)),
        };
        let token = ctx.forwarder.token(ctx, creds).await?;
        match ctx.forwarder.unary(l, path, req.clone(), token, ctx.leader_wait * 4).await {
            // The leader known is gone or no longer leads: try again once
            // this member learns of another, or after a pause (it may not
            // learn that the old one went).
            Err(e) if never_served(&e) && tokio::time::Instant::now() < deadline => {
                let tried = view.borrow().leadership();
                let _ = tokio::time::timeout(RETRY, view.wait_for(|v| v.leadership() != tried)).await;
            }
            // A token this member obtained may have expired at the
            // leader: obtain another, once.
            Err(e) if creds.is_certificate() && is_invalid_token(&e) && !minted_refused => minted_refused = true,
            other => return other,
        }
    }
}

/// An auth token as it travels in request metadata.
pub type Token = tonic::metadata::AsciiMetadataValue;

/// Who a forwarded request speaks for, so that the leader checks the
/// caller's rights and not the forwarding member's.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Nobody: auth is disabled, or the caller named no one.
    None,
    /// The caller's own auth token, passed on.
    Token(Token),
    /// A user proven by the common name of its client certificate
    /// (`--client-cert-auth`). The leader would see this member's
    /// certificate instead, so the request goes with a token this member
    /// obtains for that user ([`LeaderForwarder::token`]).
    Certificate(String),
}

impl Credentials {
    /// The credentials of a request with `metadata`, received over a
    /// connection with the client certificate chain `certs`; a token this
    /// member does not accept is refused as [`Context::caller_from`]
    /// refuses it.
    pub fn of(
        ctx: &Context,
        metadata: &tonic::metadata::MetadataMap,
        certs: Option<std::sync::Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
    ) -> Result<Credentials, Status> {
        if let Some(token) = token_of(metadata) {
            return Ok(Credentials::Token(token));
        }
        Ok(Credentials::known(metadata, ctx.caller_from(metadata, certs)?.as_ref()))
    }

    /// The credentials of a request with `metadata` whose caller
    /// [`Context::caller_from`] already found, without looking it up again.
    pub fn known(metadata: &tonic::metadata::MetadataMap, caller: Option<&crate::auth::AuthInfo>) -> Credentials {
        match (token_of(metadata), caller) {
            (Some(token), _) => Credentials::Token(token),
            (None, Some(caller)) => Credentials::Certificate(caller.username.clone()),
            (None, None) => Credentials::None,
        }
    }

    /// Whether the caller was proven by its certificate.
    pub fn is_certificate(&self) -> bool {
        matches!(self, Credentials::Certificate(_))
    }
}

/// Whether the leader refused a forwarded request's token.
pub fn is_invalid_token(e: &Status) -> bool {
    let invalid = status::auth(AuthError::InvalidAuthToken);
    e.code() == invalid.code() && e.message() == invalid.message()
}

/// How many times [`LeaderForwarder::token`] asks the log for a token when
/// the auth store changed while it asked.
const GRANT_ATTEMPTS: usize = 4;

/// The most users [`LeaderForwarder`] keeps a token for.
const MAX_MINTED: usize = 1024;

/// A token this member obtained for a certificate's user.
struct Minted {
    token: Token,
    /// The auth revision it was obtained at.
    revision: u64,
    /// When it was last handed out.
    used: Instant,
}

/// The auth token a request carries, if any (etcd's clients send it as
/// `token`, some as `authorization`), to pass on with a forwarded request.
pub fn token_of(metadata: &tonic::metadata::MetadataMap) -> Option<Token> {
    metadata.get("token").or_else(|| metadata.get("authorization")).cloned()
}

/// How long a forwarded request that found the leader gone waits for news
/// of another before it tries again.
const RETRY: Duration = Duration::from_millis(50);

/// Whether a forwarded request certainly had no effect: the leader could
/// not be connected to, or answered that it no longer leads.
fn never_served(e: &Status) -> bool {
    e.code() == tonic::Code::Unavailable && (e.message() == not_leader().message() || e.message().contains("connect"))
}

/// Metadata key marking a request forwarded by another member.
pub const FORWARDED: &str = "synod-forwarded";

/// How long one forwarded request may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a request was forwarded by another member.
pub fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

/// etcd's `ErrGRPCNotLeader`: the answer of a non-leader to a forwarded
/// request.
pub fn not_leader() -> Status {
    Status::unavailable("etcdserver: not leader")
}

/// A member's way to the leader's services.
pub struct LeaderForwarder {
    handle: Handle<EtcdMachine>,
    /// Client TLS, for leaders' https:// URLs.
    tls: Option<crate::tls::Loaded>,
    /// The channel to the member last forwarded to.
    cached: Mutex<Option<(NodeId, Channel)>>,
    /// Tokens obtained for users proven by their client certificates, by
    /// user name.
    minted: Mutex<HashMap<String, Minted>>,
}

impl LeaderForwarder {
    /// A forwarder for the member behind `handle`, with client TLS for
    /// https:// URLs.
    pub fn new(handle: Handle<EtcdMachine>, tls: Option<crate::tls::Loaded>) -> LeaderForwarder {
        LeaderForwarder { handle, tls, cached: Mutex::new(None), minted: Mutex::new(HashMap::new()) }
    }

    /// The token to forward a request with `creds`: the caller's own, or
    /// for a user proven by its client certificate, one this member
    /// obtains for that user (a JWT it signs, or a simple token granted
    /// through the log, marked as granted to a certificate since no
    /// password was checked) and reuses while the auth store stays at the
    /// same revision, for at most [`Tokens::reuse_within`].
    ///
    /// [`Tokens::reuse_within`]: crate::token::Tokens::reuse_within
    pub async fn token(&self, ctx: &Context, creds: &Credentials) -> Result<Option<Token>, Status> {
        let user = match creds {
            Credentials::None => return Ok(None),
            Credentials::Token(token) => return Ok(Some(token.clone())),
            Credentials::Certificate(user) => user,
        };
        let revision = ctx.auth.current().revision();
        if let Some(m) = self.lock_minted().get_mut(user) {
            if m.revision == revision && m.used.elapsed() < ctx.tokens.reuse_within() {
                m.used = Instant::now();
                return Ok(Some(m.token.clone()));
            }
        }
        for _ in 0..GRANT_ATTEMPTS {
            let revision = ctx.auth.current().revision();
            let token = if ctx.tokens.is_simple() {
                let grant = TokenGrant {
                    name: user.clone(),
                    prefix: Tokens::simple_prefix(),
                    checked_revision: revision,
                    certificate: true,
                };
                let payload = Proposal::Auth(AuthCommand { caller: None, op: Some(AuthOp::Authenticate(grant)) });
                match status::outcome(ctx.propose(payload.to_bytes()).await)? {
                    Reply::Auth(AuthReply::Token(token)) => token,
                    Reply::Auth(AuthReply::Stale) => {
                        // This member's store was behind the log's.
                        ctx.barrier().await?;
                        continue;
                    }
                    other => return Err(status::unexpected(other)),
                }
            } else {
                ctx.tokens.sign(user, revision)?
            };
            let token = Token::try_from(token).map_err(|e| Status::internal(format!("synod: a token: {e}")))?;
            let mut minted = self.lock_minted();
            if minted.len() >= MAX_MINTED {
                minted.clear();
            }
            minted.insert(user.clone(), Minted { token: token.clone(), revision, used: Instant::now() });
            return Ok(Some(token));
        }
        Err(Status::unavailable(format!(
            "synod: the auth store kept changing while obtaining a token to forward {user:?}'s request to the leader"
        )))
    }

    fn lock_minted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Minted>> {
        self.minted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the tokens obtained for certificates' users after the leader
    /// refused one (it expired there), so the next request obtains another.
    pub fn forget_tokens(&self) {
        self.lock_minted().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(NodeId, Channel)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A channel to `leader`'s client URL, reusing the cached one.
    async fn channel(&self, leader: NodeId) -> Result<Channel, Status> {
        if let Some((id, ch)) = self.lock().as_ref() {
            if *id == leader {
                return Ok(ch.clone());
            }
        }
        let members = self.handle.with_state(|m| m.members()).await.map_err(|e| status::runtime(&e))?;
        let urls = members.iter().find(|m| m.id == leader).map(|m| m.client_urls.clone()).unwrap_or_default();
        if urls.is_empty() {
            return Err(Status::unavailable(format!("synod: leader {leader:x} has not published its client URLs")));
        }
        let url = urls.iter().find(|u| !crate::config::is_tls(u) || self.tls.is_some()).ok_or_else(|| {
            Status::unavailable(format!(
                "synod: leader {leader:x} serves clients on https:// only and this member has no client TLS \
                 (--cert-file, --key-file) to forward with"
            ))
        })?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Status::internal(format!("synod: leader's client URL {url:?}: {e}")))?;
        if let (true, Some(tls)) = (crate::config::is_tls(url), &self.tls) {
            let verifier = tls.server_verifier(true).map_err(|e| Status::internal(format!("synod: {e}")))?;
            endpoint = endpoint
                .tls_config_with_verifier(tls.tonic_client(), verifier)
                .map_err(|e| Status::internal(format!("synod: TLS to the leader's client URL {url:?}: {e}")))?;
        }
        let channel =
            endpoint.connect_timeout(FORWARD_TIMEOUT).timeout(FORWARD_TIMEOUT).tcp_nodelay(true).connect_lazy();
        *self.lock() = Some((leader, channel.clone()));
        Ok(channel)
    }

    /// Drops the channel to `leader` after it failed, so the next request
    /// connects afresh.
    pub fn forget(&self, leader: NodeId) {
        let mut cached = self.lock();
        if cached.as_ref().is_some_and(|(id, _)| *id == leader) {
            *cached = None;
        }
    }

    async fn grpc(&self, leader: NodeId) -> Result<tonic::client::Grpc<Channel>, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel(leader).await?);
        grpc.ready().await.map_err(|e| Status::unavailable(format!("synod: forwarding to the leader: {e}")))?;
        Ok(grpc)
    }

    /// One keep-alive at the leader, with the caller's auth token if it
    /// sent one (the leader checks the caller's rights again); returns its
    /// TTL (0: no such lease).
    pub async fn keep_alive(&self, leader: NodeId, id: i64, token: Option<Token>) -> Result<i64, Status> {
        let call = async {
            let mut grpc = self.grpc(leader).await?;
            let once = tokio_stream::once(LeaseKeepAliveRequest { id });
            let mut request = Request::new(once);
            request.metadata_mut().insert(FORWARDED, "1".parse().expect("a valid metadata value"));
            if let Some(token) = token {
                request.metadata_mut().insert("token", token);
            }
            let path = PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
            let codec = tonic_prost::ProstCodec::<LeaseKeepAliveRequest, LeaseKeepAliveResponse>::default();
            let mut responses = grpc.streaming(request, path, codec).await?.into_inner();
            match responses.message().await? {
                Some(r) => Ok(r.ttl),
                None => Err(Status::unavailable("synod: the leader closed a forwarded keep-alive")),
            }
        };
        let result = tokio::time::timeout(FORWARD_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(Status::unavailable(status::TIMEOUT)));
        if result.as_ref().is_err_and(is_invalid_token) {
            self.forget_tokens();
        }
        result
    }

    /// A TTL query at the leader, with the caller's auth token.
    pub async fn time_to_live(
        &self,
        leader: NodeId,
        req: LeaseTimeToLiveRequest,
        token: Option<Token>,
    ) -> Result<LeaseTimeToLiveResponse, Status> {
        self.unary(leader, "/etcdserverpb.Lease/LeaseTimeToLive", req, token, FORWARD_TIMEOUT).await
    }

    /// One unary call of the leader's service at `path` (e.g.
    /// `/etcdserverpb.Cluster/MemberAdd`), marked as forwarded; the cached
    /// channel is dropped if it fails, so the next call connects afresh.
    pub async fn unary<Req, Resp>(
        &self,
        leader: NodeId,
        path: &'static str,
        req: Req,
        token: Option<Token>,
        timeout: Duration,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let call = async {
            let mut grpc = self.grpc(leader).await?;
            let mut request = Request::new(req);
            request.metadata_mut().insert(FORWARDED, "1".parse().expect("a valid metadata value"));
            if let Some(token) = token {
                request.metadata_mut().insert("token", token);
            }
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            Ok(grpc.unary(request, PathAndQuery::from_static(path), codec).await?.into_inner())
        };
        let result =
            tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| Err(Status::unavailable(status::TIMEOUT)));
        match &result {
            Err(e) if e.code() == tonic::Code::Unavailable => self.forget(leader),
            Err(e) if is_invalid_token(e) => self.forget_tokens(),
            _ => {}
        }
        result
    }
}
