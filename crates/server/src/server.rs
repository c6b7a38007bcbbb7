//! One member, running: the replica, its published attributes and the etcd
//! gRPC services on every client URL (inside TLS for an https:// one), with
//! HTTP beside them ([`crate::http`]) and on every metrics URL, until asked
//! to stop.
//!
//! Fail-stop: a member that cannot go on stops as a whole. If the replica
//! stops by itself (a failed write or fsync, a panic in its task), or a task
//! the member cannot serve without ends, [`run`] stops everything else at
//! once and returns the reason, so that the process exits and its
//! supervisor restarts it; it never keeps its ports open half-dead.

use crate::auth::AuthView;
use crate::authority_header::AuthorityFix;
use crate::cluster::bootstrap::Identity;
use crate::cluster::forward::LeaderForwarder;
use crate::config::{ServerConfig, GRPC_OVERHEAD_BYTES};
use crate::context::Context;
use crate::decode_limit::with_grpc_go_decode_limit;
use crate::http::metrics::ServerMetrics;
use crate::http::Http;
use crate::services::auth::AuthService;
use crate::services::cluster::ClusterService;
use crate::services::election::ElectionService;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::services::lock::LockService;
use crate::services::maintenance::MaintenanceService;
use crate::services::watch::WatchService;
use crate::state::lease_keeper::LeaseKeeper;
use crate::state::machine::{EtcdMachine, MemberAttributes, Proposal};
use crate::state::watch_hub::WatchHub;
use crate::token::Tokens;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use synod_etcd_api::etcdserverpb::auth_server::AuthServer;
use synod_etcd_api::etcdserverpb::cluster_server::ClusterServer;
use synod_etcd_api::etcdserverpb::kv_server::KvServer;
use synod_etcd_api::etcdserverpb::lease_server::LeaseServer;
use synod_etcd_api::etcdserverpb::maintenance_server::MaintenanceServer;
use synod_etcd_api::etcdserverpb::watch_server::WatchServer;
use synod_etcd_api::v3electionpb::election_server::ElectionServer;
use synod_etcd_api::v3lockpb::lock_server::LockServer;
use synod_runtime::{Handle, Node};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::StreamExt;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tracing::{debug, error, info, warn};

/// How long a client's TLS handshake may take.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a member could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The replica failed to start or stopped with an error.
    #[error("replica: {0}")]
    Runtime(#[from] synod_runtime::Error),
    /// This member was removed from the cluster (its data directory
    /// belongs to a member that is gone for good).
    #[error("the member has been permanently removed from the cluster (member {0:x}); start a new member with an empty data directory instead")]
    Removed(u64),
    /// `--auth-token` cannot be used.
    #[error(transparent)]
    Token(#[from] crate::token::TokenConfigError),
    /// The TLS flags or files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A task this member cannot serve without died or ended (see
    /// [`run`]); the replica may be fine, but the member is not.
    #[error("{0} ended unexpectedly; this member cannot go on")]
    TaskEnded(String),
    /// The metrics could not be registered (a name registered twice).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `--experimental-initial-corrupt-check` found this member's store
    /// differs from its peers'.
    #[error("initial corruption check: {0}")]
    Corrupt(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

/// Tasks the member cannot serve without, by task id: if one ends before
/// the member is asked to stop, the member stops (see [`run`]).
struct Essential {
    tasks: JoinSet<Result<(), String>>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Essential {
    fn new() -> Essential {
        Essential { tasks: JoinSet::new(), names: Default::default() }
    }

    fn spawn(&mut self, name: &'static str, task: impl Future<Output = Result<(), String>> + Send + 'static) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
    }

    /// The first task to end, as the reason the member cannot go on.
    /// Never completes if there are none.
    async fn ended(&mut self) -> ServerError {
        let Some(r) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (name, why) = match r {
            Ok((id, Ok(()))) => (self.names.get(&id).copied(), "ended".to_string()),
            Ok((id, Err(e))) => (self.names.get(&id).copied(), e),
            Err(e) => (self.names.get(&e.id()).copied(), e.to_string()),
        };
        ServerError::TaskEnded(format!("{} ({why})", name.unwrap_or("a task")))
    }
}

/// Why [`run`] stops.
enum Ending {
    /// Asked to.
    Shutdown,
    /// The log records this member as removed.
    Removed,
    /// It cannot go on.
    Fatal(ServerError),
}

/// Runs one member until `shutdown` completes, then stops it cleanly.
///
/// Returns an error at once if the member cannot go on: the replica
/// stopped by itself, or a task it cannot serve without ended (a client
/// listener; the lease keeper, without which leases never expire; the
/// watch hub, without which watchers hear nothing; the membership keeper,
/// without which peers and removals are never followed; the header
/// refresher, without which response headers go stale; the auto-compactor,
/// if asked for, without which history grows without bound). Publishing the
/// member's attributes ends by itself once done and is not among them. A
/// panic in any task of the `synod` binary ends the process anyway (its
/// panic hook), which covers tasks not watched here.
///
/// The data directory is locked first, before anything else is done, so a
/// second process started on it is refused with that reason (even if it
/// would also clash on the ports).
pub async fn run(mut cfg: ServerConfig, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
    let lock = synod_runtime::lock_data_dir(&cfg.node.data_dir)?;
    let (client_tls, peer_tls) = load_tls(&cfg)?;
    cfg.node.peer_tls = peer_tls;
    let peer_listener = bind(cfg.peer_listen).await?;
    let mut client_listeners = Vec::new();
    for l in &cfg.client_listen {
        client_listeners.push((bind(l.addr).await?, l.tls));
    }
    let mut metrics_listeners = Vec::new();
    for l in &cfg.metrics_listen {
        metrics_listeners.push((bind(l.addr).await?, l.tls));
    }
    let metrics = Arc::new(ServerMetrics::new(cfg.member_id, &cfg.node.metrics, cfg.quota_bytes)?);
    let acceptor = match &client_tls {
        Some(loaded) if cfg.client_listen.iter().chain(&cfg.metrics_listen).any(|l| l.tls) => {
            Some(TlsAcceptor::from(Arc::new(loaded.server_config(true)?)))
        }
        _ => None,
    };
    let unrecorded = crate::cluster::bootstrap::settle(&mut cfg).await?;
    let (feed, wake) = crate::state::watch_hub::RevisionFeed::new();
    let tokens = Tokens::parse(&cfg.auth_token, cfg.auth_token_ttl)?;
    let auth_view = Arc::new(AuthView::default());
    let (hash_events, hash_rx) = mpsc::unbounded_channel();
    let machine = EtcdMachine::with_revision_feed(feed.clone())
        .with_auth_view(auth_view.clone())
        .with_hash_events(hash_events)
        .with_apply_histogram(metrics.apply.clone());
    let mut node = Node::start_locked(cfg.node.clone(), machine, peer_listener, lock).await?;
    let handle = node.handle();
    if unrecorded {
        Identity::of(&cfg).save(&cfg.node.data_dir)?;
    }
    let me = cfg.member_id;
    if handle.with_state(move |m| m.members().iter().any(|r| r.id == me && r.removed)).await? {
        node.shutdown().await?;
        return Err(ServerError::Removed(cfg.member_id));
    }
    info!(
        name = %cfg.name,
        member = format_args!("{:x}", cfg.member_id),
        cluster = format_args!("{:x}", cfg.cluster_id),
        peer = %cfg.peer_listen,
        clients = ?cfg.client_listen.iter().map(|l| l.url.as_str()).collect::<Vec<_>>(),
        peer_tls = cfg.peer_tls_on,
        "member started"
    );
    let ctx = Arc::new(Context {
        handle: handle.clone(),
        cluster_id: cfg.cluster_id,
        member_id: cfg.member_id,
        members: cfg.members.clone(),
        max_request_bytes: cfg.max_request_bytes,
        max_txn_ops: cfg.max_txn_ops,
        data_dir: cfg.node.data_dir.clone(),
        quota_bytes: cfg.quota_bytes,
        leader_wait: cfg.node.tick * (2 * cfg.node.protocol.election_ticks) as u32,
        watch_hub: WatchHub::default(),
        watch_progress_interval: cfg.watch_progress_notify_interval,
        forwarder: LeaderForwarder::new(handle.clone(), client_tls),
        auth: auth_view,
        tokens,
        client_cert_auth: cfg.client_tls.client_cert_auth,
        bcrypt_cost: cfg.bcrypt_cost,
        term: AtomicU64::new(0),
        revision: AtomicI64::new(0),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let (removed_tx, removed_rx) = tokio::sync::oneshot::channel();
    let keeper = LeaseKeeper::new(handle.clone());
    let publisher = tokio::spawn(publish(
        handle.clone(),
        MemberAttributes {
            id: cfg.member_id,
            name: cfg.name.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
            peer_urls: cfg.advertise_peer_urls.clone(),
            ..Default::default()
        },
        stop_rx.clone(),
    ));
    let mut background = Essential::new();
    background.spawn("the lease keeper", infallible(keeper.clone().run(stop_rx.clone())));
    background.spawn("the header refresher", infallible(watch_status(ctx.clone(), stop_rx.clone())));
    background.spawn("the watch hub", infallible(ctx.watch_hub.clone().run(handle.clone(), feed, wake)));
    if let Some(retention) = cfg.auto_compaction {
        background
            .spawn("the auto-compactor", infallible(crate::compactor::run(ctx.clone(), retention, stop_rx.clone())));
    }
    background.spawn(
        "the membership keeper",
        infallible(crate::cluster::membership::keep(ctx.clone(), cfg.node.peers.clone(), stop_rx.clone(), removed_tx)),
    );

    let checker = crate::corrupt::Checker::new();
    background.spawn(
        "the corruption checker",
        infallible(checker.clone().run(ctx.clone(), hash_rx, cfg.corrupt_check_time, stop_rx.clone())),
    );
    if cfg.initial_corrupt_check {
        // Before any client is served, as etcd checks.
        if let Err(e) = checker.initial_check(&ctx, 4 * ctx.leader_wait).await {
            let _ = stop_tx.send(true);
            node.shutdown().await?;
            return Err(ServerError::Corrupt(e));
        }
    }

    let election_timeout = cfg.node.tick * cfg.node.protocol.election_ticks as u32;
    let http = Http::new(ctx.clone(), metrics.clone(), Http::request_timeout(election_timeout));
    let limit = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let min_lease_ttl = crate::services::lease::min_ttl(cfg.node.tick * cfg.node.protocol.election_ticks as u32);
    let mut servers = Essential::new();
    for (listener, tls) in client_listeners {
        let services = Routes::default()
            .add_service(KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(limit))
            .add_service(AuthServer::new(AuthService::new(ctx.clone())).max_decoding_message_size(limit))
            .add_service(ClusterServer::new(ClusterService::new(ctx.clone())).max_decoding_message_size(limit))
            .add_service(MaintenanceServer::new(MaintenanceService::new(ctx.clone())).max_decoding_message_size(limit))
            .add_service(
                WatchServer::new(WatchService::new(ctx.clone()).with_max_watchers(cfg.max_watchers_per_stream))
                    .max_decoding_message_size(limit),
            )
            .add_service(LockServer::new(LockService::new(ctx.clone())).max_decoding_message_size(limit))
            .add_service(ElectionServer::new(ElectionService::new(ctx.clone())).max_decoding_message_size(limit))
            .add_service(
                LeaseServer::new(LeaseService::new(ctx.clone(), keeper.clone(), min_lease_ttl))
                    .max_decoding_message_size(limit),
            );
        // gRPC and HTTP (/health, /metrics, ...) on one listener, HTTP/1.1
        // and HTTP/2 both (see crate::http).
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .layer(metrics.grpc.layer())
            .max_concurrent_streams(cfg.max_concurrent_streams)
            .http2_keepalive_interval(cfg.grpc_keepalive_interval)
            .http2_keepalive_timeout(Some(cfg.grpc_keepalive_timeout))
            .add_routes(crate::http::client_routes(with_grpc_go_decode_limit(services, limit), http.clone()));
        let mut stop = stop_rx.clone();
        let acceptor = acceptor.clone().filter(|_| tls);
        servers.spawn("a client listener", async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let served = match acceptor {
                Some(acceptor) => router.serve_with_incoming_shutdown(tls_incoming(listener, acceptor), signal).await,
                None => {
                    let incoming = TcpIncoming::from(listener)
                        .with_nodelay(Some(true))
                        .map(|accepted| accepted.map(AuthorityFix::new));
                    router.serve_with_incoming_shutdown(incoming, signal).await
                }
            };
            served.map_err(|e| e.to_string())
        });
    }
    for (listener, tls) in metrics_listeners {
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(crate::http::metrics_routes(http.clone()));
        let mut stop = stop_rx.clone();
        let acceptor = acceptor.clone().filter(|_| tls);
        servers.spawn("a metrics listener", async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let served = match acceptor {
                Some(acceptor) => router.serve_with_incoming_shutdown(tls_incoming(listener, acceptor), signal).await,
                None => {
                    router
                        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal)
                        .await
                }
            };
            served.map_err(|e| e.to_string())
        });
    }

    let ending = tokio::select! {
        biased;
        r = node.stopped() => Ending::Fatal(match r {
            Ok(()) => ServerError::Runtime(synod_runtime::Error::Stopped),
            Err(e) => e.into(),
        }),
        _ = shutdown => Ending::Shutdown,
        Ok(()) = removed_rx => Ending::Removed,
        e = servers.ended() => Ending::Fatal(e),
        e = background.ended() => Ending::Fatal(e),
    };
    let _ = stop_tx.send(true);
    background.tasks.abort_all();
    publisher.abort();
    if let Ending::Fatal(e) = ending {
        // No graceful goodbyes: every moment the ports stay open, clients
        // and peers talk to a member that cannot answer.
        error!(name = %cfg.name, error = %e, "this member cannot go on; stopping");
        servers.tasks.abort_all();
        return Err(e);
    }
    info!(name = %cfg.name, "stopping");
    // Clients holding connections open must not keep the member alive.
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(r) = servers.tasks.join_next().await {
            if let Ok(Err(e)) = r {
                warn!(error = %e, "client listener failed");
            }
        }
    });
    let _ = drained.await;
    servers.tasks.abort_all();
    node.shutdown().await?;
    info!(name = %cfg.name, "stopped");
    if matches!(ending, Ending::Removed) {
        return Err(ServerError::Removed(cfg.member_id));
    }
    Ok(())
}

/// Loads the client TLS (when a client URL is https, or certificates are
/// given for forwarding to a leader's https URL) and the peer TLS (when the
/// peer URLs are https), making `--auto-tls` certificates in the data
/// directory as etcd does.
fn load_tls(cfg: &ServerConfig) -> Result<(Option<crate::tls::Loaded>, Option<synod_runtime::PeerTls>), ServerError> {
    let provider = crate::tls::provider(cfg.cipher_suites.clone());
    let fixtures = cfg.node.data_dir.join("fixtures");
    let host = |url: &str| {
        crate::config::host_port("", url)
            .ok()
            .and_then(|hp| hp.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()))
    };
    let tls_urls = || cfg.client_listen.iter().chain(&cfg.metrics_listen);
    let client = if tls_urls().any(|l| l.tls) || cfg.client_tls.cert_file.is_some() {
        let hosts: Vec<String> = tls_urls().filter_map(|l| host(&l.url)).collect();
        Some(cfg.client_tls.load("", &fixtures.join("client"), &hosts, provider.clone())?)
    } else {
        None
    };
    let peer = if cfg.peer_tls_on {
        let hosts: Vec<String> = host(&cfg.listen_peer_url).into_iter().collect();
        Some(cfg.peer_tls.load("peer-", &fixtures.join("peer"), &hosts, provider)?.peer_tls()?)
    } else {
        None
    };
    Ok((client, peer))
}

/// The TLS connections accepted on `listener`: each handshake runs on its
/// own task, so a slow or silent client holds up no one; a failed one is
/// logged and closed. Accepting stops when the server drops the stream.
/// Each connection is read through [`AuthorityFix`], as plaintext ones are.
fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<Result<AuthorityFix<TlsStream<TcpStream>>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accepting a client connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(CLIENT_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(AuthorityFix::new(stream))).await;
                    }
                    // Closed before saying anything: a port probe or health
                    // check, not worth a warning.
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        debug!(%remote, "client closed the connection before the TLS handshake")
                    }
                    Ok(Err(e)) => warn!(%remote, error = %e, "client connection refused: TLS handshake failed"),
                    Err(_) => debug!(%remote, "client TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A task that returns nothing, as one that cannot fail.
async fn infallible(task: impl Future<Output = ()>) -> Result<(), String> {
    task.await;
    Ok(())
}

/// Publishes this member's attributes through the log, retrying until a
/// quorum is there to choose them (as etcd's `publishV3`).
async fn publish(handle: Handle<EtcdMachine>, attrs: MemberAttributes, stop: watch::Receiver<bool>) {
    let payload = Proposal::Publish(attrs).to_bytes();
    while !*stop.borrow() {
        match handle.propose(payload.clone()).await {
            Ok(_) => {
                info!("published member attributes");
                return;
            }
            Err(e) => {
                warn!(error = %e, "publishing member attributes; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Keeps the term and revision for response headers fresh without asking
/// the replica on every request: woken by the replica's view of the
/// cluster, it takes the term from the view's ballot at once, and the
/// revision from the store when the applied index moved, at most every
/// `REVISION_EVERY` (a busy log moves it with every batch).
async fn watch_status(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    const REVISION_EVERY: Duration = Duration::from_millis(100);
    let mut view = ctx.handle.subscribe();
    let mut applied = None;
    let mut refreshed: Option<tokio::time::Instant> = None;
    loop {
        let (round, now_applied) = {
            let v = view.borrow_and_update();
            (v.ballot.round, v.applied)
        };
        ctx.term.fetch_max(round, Ordering::Relaxed);
        if applied != Some(now_applied) {
            if let Some(at) = refreshed {
                tokio::select! {
                    _ = tokio::time::sleep_until(at + REVISION_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            if let Ok(rev) = ctx.handle.with_state(|m| m.kv().revision()).await {
                ctx.revision.fetch_max(rev, Ordering::Relaxed);
                applied = Some(now_applied);
                refreshed = Some(tokio::time::Instant::now());
            }
        }
        let replica_stopped = tokio::select! {
            changed = view.changed() => changed.is_err(),
            _ = stop.wait_for(|s| *s) => return,
        };
        if replica_stopped {
            // The server is stopping (and says why): wait to be told.
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    }
}
