//! TCP between replicas: length-framed, batched, reconnecting.
//!
//! Every byte that arrives here is hostile until checked (see the trust
//! boundary in DESIGN.md): a frame's body is read into a buffer that grows
//! only as its bytes arrive (never to the length a peer declares), a hello
//! and each frame must arrive within a deadline once begun, and the
//! connections a listener serves, and those still in their hello, are
//! capped. Frames too large to be accepted are not sent either.
//!
//! With TLS configured ([`crate::tls`]), every connection is a TLS session
//! first: a connection that does not complete the handshake (plaintext, a
//! certificate not from the cluster's CA) is closed before anything is read
//! from it or written to it.
//!
//! Every connection opens with a fixed-size hello naming the cluster, the
//! sender and the intended receiver; a peer from another cluster, an unknown
//! member or a misdirected connection is refused and closed. After that each
//! frame is a big-endian `u32` length and a message in the format the hello
//! names ([`crate::codec::PeerFormat`]): a member dials with today's format
//! and, if the peer refuses it as unknown (a member of the previous
//! release, during a rolling upgrade), with the one before; it accepts
//! both. A
//! frame that is oversized or does not decode closes that connection, with
//! the reason logged, and harms nothing else.
//!
//! The set of peers can change while the transport runs (membership
//! changes): [`TcpTransport::set_peer`] starts talking to a new member, or to a
//! member at a new address, and [`TcpTransport::remove_peer`] stops; a hello
//! from a member that is not (or no longer) known is refused; one from a
//! member that was removed is told so, and the removed member's transport
//! reports it ([`TcpTransport::removed`]) so that it can stop.
//!
//! A node joining a running cluster does not know its own id or the
//! membership yet: it sends a *directory* hello (cluster, sender and
//! receiver all zero) and is answered with [`ClusterInfo`] (see
//! [`crate::join`]) and the connection is closed.
//!
//! Sending never blocks the replica: each peer has a bounded queue drained
//! by its own task, which writes everything queued in one system call and
//! reconnects with back-off when the connection breaks. Messages that do not
//! fit, or that were queued while the peer was unreachable, are dropped:
//! Paxos tolerates lost messages (the replica resends what matters).

use crate::codec::{decode_message_as, encode_cluster_info, encode_message_as, PeerFormat};
use crate::tls::{PeerStream, PeerTls};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use synod_paxos::{Membership, Message, NodeId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

/// A hello's first eight bytes are `SYNOD\0`, the peer protocol version
/// and a zero. Version 2: Prepare carries a handed-over ballot, TimeoutNow
/// exists (leadership transfer). Version 3: a log value may be
/// `Value::ExpireSessions` (client sessions expire through the log), which
/// older members cannot decode. Version 4: a command carries its origin
/// (`Command::origin`). Version 5: frames in schema version 1 (protobuf,
/// `proto/synod/v1/synod.proto`). Versions 4 and 5 are accepted; older
/// members are refused as "not a Synod peer".
const MAGIC_PREFIX: [u8; 6] = *b"SYNOD\x00";

/// A hello's first eight bytes for `format`.
fn magic(format: PeerFormat) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[..6].copy_from_slice(&MAGIC_PREFIX);
    m[6] = format.version();
    m
}

/// The format a hello's first eight bytes name, if this release speaks it.
fn format_of(h: &[u8]) -> Option<PeerFormat> {
    if h.len() < 8 || h[..6] != MAGIC_PREFIX || h[7] != 0 {
        return None;
    }
    PeerFormat::of_version(h[6])
}
/// Bytes in a hello.
pub const HELLO_LEN: usize = 8 + 8 + 8 + 8;
const QUEUE: usize = 8192;

/// The status byte that answers a directory hello.
pub(crate) const DIRECTORY_STATUS: u8 = HelloStatus::Directory as u8;

/// Answer to a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum HelloStatus {
    Ok = 0,
    WrongCluster = 1,
    UnknownMember = 2,
    WrongReceiver = 3,
    BadMagic = 4,
    Removed = 5,
    Directory = 6,
}

impl HelloStatus {
    fn reason(self) -> &'static str {
        match self {
            HelloStatus::Ok => "accepted",
            HelloStatus::WrongCluster => "peer belongs to another cluster",
            HelloStatus::UnknownMember => "peer is not a member of this cluster",
            HelloStatus::WrongReceiver => "peer meant to reach another member",
            HelloStatus::BadMagic => "not a Synod peer",
            HelloStatus::Removed => "peer was removed from this cluster",
            HelloStatus::Directory => "directory request answered",
        }
    }
}

/// Who we are on the peer network.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Refuse peers of any other cluster.
    pub cluster_id: u64,
    /// This member.
    pub me: NodeId,
    /// Every member's peer address (this one included).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Frames above this many bytes close the connection (and are not
    /// sent).
    pub max_frame: usize,
    /// Limits on what an inbound connection may cost.
    pub limits: InboundLimits,
    /// TLS on every peer connection, or none.
    pub tls: Option<PeerTls>,
    /// Where the bytes sent to and received from each peer are counted.
    pub metrics: crate::Metrics,
}

/// What an inbound connection may cost this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundLimits {
    /// A connection whose hello has not fully arrived this long after it
    /// was accepted is closed. Default 5 s.
    pub hello_timeout: Duration,
    /// A frame whose first byte has arrived must be complete this long
    /// after; else the connection is closed. Default 30 s (a 64 MiB frame
    /// at about 2 MiB/s).
    pub frame_timeout: Duration,
    /// Most inbound connections served at once; more are closed at once.
    /// Default 256 (a member keeps one per peer, and there are at most 64
    /// members).
    pub max_connections: usize,
    /// Most inbound connections still in their hello; more are closed at
    /// once. Default 16.
    pub max_handshaking: usize,
}

impl Default for InboundLimits {
    fn default() -> Self {
        InboundLimits {
            hello_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_handshaking: 16,
        }
    }
}

/// What any member tells a node that joins: enough to start a replica
/// that takes part in the cluster as it is now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The cluster's id (for hellos and the data directory).
    pub cluster_id: u64,
    /// The latest configuration the answering member knows (one chosen but
    /// not yet in force included).
    pub membership: Membership,
    /// Every member's peer address, the answering member's included.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The pipeline window α of the cluster's reconfiguration rule: every
    /// member must use the same (`Config::max_inflight_slots`).
    pub alpha: u64,
}

/// What the accept loop and the outbound connections share with the
/// replica's task.
struct Shared {
    /// The members whose hellos are accepted.
    known: BTreeSet<NodeId>,
    /// Members removed while this transport ran: their hellos are answered
    /// "removed".
    removed: BTreeSet<NodeId>,
    /// The answer to a directory hello, once the replica published one.
    directory: Option<ClusterInfo>,
}

/// Sending side of the peer network, owned by the replica's task.
pub struct TcpTransport {
    cfg: Arc<TransportConfig>,
    /// Each peer's address and the queue its connection task drains.
    queues: BTreeMap<NodeId, (SocketAddr, mpsc::Sender<Message>)>,
    shared: Arc<RwLock<Shared>>,
    /// Set when a peer refused us because we were removed.
    removed: Arc<AtomicBool>,
}

fn shared_write(shared: &RwLock<Shared>) -> std::sync::RwLockWriteGuard<'_, Shared> {
    shared.write().unwrap_or_else(|p| p.into_inner())
}

fn shared_read(shared: &RwLock<Shared>) -> std::sync::RwLockReadGuard<'_, Shared> {
    shared.read().unwrap_or_else(|p| p.into_inner())
}

impl TcpTransport {
    /// Start accepting on `listener` and connecting to every other peer.
    /// Messages received are passed to `inbound`. The returned task ends,
    /// releasing the listener, once `inbound`'s receiver is dropped.
    pub fn start(
        cfg: TransportConfig,
        listener: TcpListener,
        inbound: mpsc::Sender<(NodeId, Message)>,
    ) -> (TcpTransport, tokio::task::JoinHandle<()>) {
        let cfg = Arc::new(cfg);
        let shared = Arc::new(RwLock::new(Shared {
            known: cfg.peers.keys().copied().filter(|&id| id != cfg.me).collect(),
            removed: BTreeSet::new(),
            directory: None,
        }));
        let mut transport = TcpTransport {
            cfg: cfg.clone(),
            queues: BTreeMap::new(),
            shared: shared.clone(),
            removed: Default::default(),
        };
        for (&id, &addr) in cfg.peers.iter() {
            transport.set_peer(id, addr);
        }
        let accept = tokio::spawn(accept_loop(cfg, shared, listener, inbound));
        (transport, accept)
    }

    /// Queue `msg` for `to`; dropped if the queue is full or `to` unknown.
    pub fn send(&self, to: NodeId, msg: Message) {
        if let Some((_, q)) = self.queues.get(&to) {
            if q.try_send(msg).is_err() {
                debug!(peer = to, "peer queue full; message dropped");
            }
        }
    }

    /// Talk to member `id` at `addr` from now on, and accept its hellos. A
    /// known member at a new address gets a new connection; this member
    /// itself is ignored.
    pub fn set_peer(&mut self, id: NodeId, addr: SocketAddr) {
        if id == self.cfg.me || self.queues.get(&id).is_some_and(|(a, _)| *a == addr) {
            return;
        }
        {
            let mut shared = shared_write(&self.shared);
            shared.known.insert(id);
            shared.removed.remove(&id);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        // Replacing the old queue ends the old connection's task.
        self.queues.insert(id, (addr, tx));
        tokio::spawn(outbound(self.cfg.clone(), id, addr, rx, self.removed.clone()));
    }

    /// Stop talking to member `id` and answer its hellos with "removed".
    pub fn remove_peer(&mut self, id: NodeId) {
        {
            let mut shared = shared_write(&self.shared);
            shared.known.remove(&id);
            shared.removed.insert(id);
        }
        self.queues.remove(&id);
    }

    /// What directory hellos are answered with from now on: `membership`
    /// and the current peers.
    pub fn publish(&self, membership: &Membership, alpha: u64) {
        let mut peers = self.peers();
        if let Some(&me) = self.cfg.peers.get(&self.cfg.me) {
            peers.insert(self.cfg.me, me);
        }
        let info = ClusterInfo { cluster_id: self.cfg.cluster_id, membership: membership.clone(), peers, alpha };
        shared_write(&self.shared).directory = Some(info);
    }

    /// Whether a peer refused this member because it was removed from the
    /// cluster.
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    /// Every peer and its address.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.queues.iter().map(|(&id, (addr, _))| (id, *addr)).collect()
    }
}

impl crate::net::Transport for TcpTransport {
    fn send(&mut self, to: NodeId, msg: Message) {
        TcpTransport::send(self, to, msg)
    }

    fn set_peer(&mut self, id: NodeId, addr: SocketAddr) {
        TcpTransport::set_peer(self, id, addr)
    }

    fn remove_peer(&mut self, id: NodeId) {
        TcpTransport::remove_peer(self, id)
    }

    fn publish(&mut self, membership: &Membership, alpha: u64) {
        TcpTransport::publish(self, membership, alpha)
    }

    fn removed(&self) -> bool {
        TcpTransport::removed(self)
    }
}

fn hello(cfg: &TransportConfig, to: NodeId, format: PeerFormat) -> [u8; HELLO_LEN] {
    peer_hello_as(format, cfg.cluster_id, cfg.me, to)
}

/// The hello member `from` of cluster `cluster_id` opens a connection to
/// member `to` with; the receiver answers with one status byte (0: accepted)
/// and frames follow: a big-endian `u32` length, then
/// [`crate::codec::encode_message`]'s bytes. (Public for tools and tests
/// that speak the peer protocol.)
pub fn peer_hello(cluster_id: u64, from: NodeId, to: NodeId) -> [u8; HELLO_LEN] {
    peer_hello_as(PeerFormat::CURRENT, cluster_id, from, to)
}

/// [`peer_hello`] for a connection whose frames are in `format`.
pub fn peer_hello_as(format: PeerFormat, cluster_id: u64, from: NodeId, to: NodeId) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(&magic(format));
    h[8..16].copy_from_slice(&cluster_id.to_be_bytes());
    h[16..24].copy_from_slice(&from.to_be_bytes());
    h[24..32].copy_from_slice(&to.to_be_bytes());
    h
}

/// The hello of a node asking for the [`ClusterInfo`] in `format`.
pub(crate) fn directory_hello(format: PeerFormat) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(&magic(format));
    h
}

/// The status byte of a hello refused for its protocol version.
pub(crate) const BAD_MAGIC_STATUS: u8 = HelloStatus::BadMagic as u8;

fn check_hello(cfg: &TransportConfig, shared: &Shared, h: &[u8; HELLO_LEN]) -> (HelloStatus, NodeId, PeerFormat) {
    let word = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let from = word(16);
    let format = format_of(h);
    let status = if format.is_none() {
        HelloStatus::BadMagic
    } else if h[8..] == [0; HELLO_LEN - 8] {
        HelloStatus::Directory
    } else if word(8) != cfg.cluster_id {
        HelloStatus::WrongCluster
    } else if word(24) != cfg.me {
        HelloStatus::WrongReceiver
    } else if shared.removed.contains(&from) {
        HelloStatus::Removed
    } else if from == cfg.me || !shared.known.contains(&from) {
        HelloStatus::UnknownMember
    } else {
        HelloStatus::Ok
    };
    (status, from, format.unwrap_or(PeerFormat::CURRENT))
}

async fn outbound(
    cfg: Arc<TransportConfig>,
    peer: NodeId,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<Message>,
    removed: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(20);
    let mut buf = Vec::with_capacity(64 * 1024);
    let sent = cfg.metrics.peer_sent(peer);
    loop {
        let (mut stream, format) = match connect(&cfg, peer, addr).await {
            Ok((s, format)) => {
                backoff = Duration::from_millis(20);
                info!(peer, %addr, protocol = format.version(), "connected to peer");
                (s, format)
            }
            Err(reason) => {
                if reason == HelloStatus::Removed.reason() && !removed.swap(true, Ordering::Relaxed) {
                    warn!(peer, %addr, "this member was removed from the cluster");
                }
                debug!(peer, %addr, reason, "cannot reach peer; retrying");
                // Whatever was queued meanwhile is stale: drop it.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                if rx.is_closed() {
                    return;
                }
                continue;
            }
        };
        loop {
            let Some(first) = rx.recv().await else { return };
            buf.clear();
            push_frame(&mut buf, &first, peer, cfg.max_frame, format);
            while buf.len() < 1 << 20 {
                match rx.try_recv() {
                    Ok(m) => push_frame(&mut buf, &m, peer, cfg.max_frame, format),
                    Err(_) => break,
                }
            }
            if buf.is_empty() {
                continue;
            }
            if let Err(e) = write_flushed(&mut stream, &buf).await {
                warn!(peer, error = %e, "peer connection broke; reconnecting");
                break;
            }
            sent.inc_by(buf.len() as u64);
        }
    }
}

/// Append `msg` as a frame, unless it exceeds `max_frame` (the peer would
/// close the connection over it): then it is dropped, like any lost
/// message. (The protocol cuts its messages to fit; a single value too
/// large for a frame is the one thing that cannot be.)
fn push_frame(buf: &mut Vec<u8>, msg: &Message, peer: NodeId, max_frame: usize, format: PeerFormat) {
    let body = encode_message_as(format, msg);
    let Some(len) = u32::try_from(body.len()).ok().filter(|&n| n as usize <= max_frame) else {
        warn!(peer, kind = msg.kind(), len = body.len(), max = max_frame, "message exceeds the frame limit; dropped");
        return;
    };
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
}

/// Writes `buf` and flushes it: a TLS stream may hold written bytes back
/// until flushed.
pub(crate) async fn write_flushed(stream: &mut PeerStream, buf: &[u8]) -> std::io::Result<()> {
    stream.write_all(buf).await?;
    stream.flush().await
}

/// Connects to `peer` in today's format, or, if the peer refuses that as
/// unknown (a member of an earlier release), in the newest older format it
/// takes.
async fn connect(cfg: &TransportConfig, peer: NodeId, addr: SocketAddr) -> Result<(PeerStream, PeerFormat), String> {
    let mut format = PeerFormat::CURRENT;
    loop {
        match connect_as(cfg, peer, addr, format).await {
            Err(reason) if reason == HelloStatus::BadMagic.reason() => match format.older() {
                Some(older) => {
                    debug!(peer, %addr, tried = format.version(), "peer does not speak this protocol version; trying an older one");
                    format = older;
                }
                None => return Err(reason),
            },
            other => return other.map(|s| (s, format)),
        }
    }
}

async fn connect_as(
    cfg: &TransportConfig,
    peer: NodeId,
    addr: SocketAddr,
    format: PeerFormat,
) -> Result<PeerStream, String> {
    let attempt = async {
        let mut s = crate::tls::dial(cfg.tls.as_ref(), addr).await.map_err(|e| e.to_string())?;
        write_flushed(&mut s, &hello(cfg, peer, format)).await.map_err(|e| e.to_string())?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status).await.map_err(|e| e.to_string())?;
        for refusal in [HelloStatus::Removed, HelloStatus::BadMagic] {
            if status[0] == refusal as u8 {
                return Err(refusal.reason().to_string());
            }
        }
        if status[0] != HelloStatus::Ok as u8 {
            return Err(format!("peer refused the handshake (status {})", status[0]));
        }
        Ok(s)
    };
    let limit = Duration::from_secs(2) + if cfg.tls.is_some() { crate::tls::HANDSHAKE_TIMEOUT } else { Duration::ZERO };
    tokio::time::timeout(limit, attempt).await.map_err(|_| "handshake timed out".to_string())?
}

async fn accept_loop(
    cfg: Arc<TransportConfig>,
    shared: Arc<RwLock<Shared>>,
    listener: TcpListener,
    inbound: mpsc::Sender<(NodeId, Message)>,
) {
    let connections = Arc::new(Semaphore::new(cfg.limits.max_connections));
    let handshaking = Arc::new(Semaphore::new(cfg.limits.max_handshaking));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            // The replica stopped: release the port.
            _ = inbound.closed() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                // (Dropping the stream closes it.)
                let Ok(connection) = connections.clone().try_acquire_owned() else {
                    warn!(%remote, max = cfg.limits.max_connections, "too many peer connections; closed");
                    continue;
                };
                let Ok(hello) = handshaking.clone().try_acquire_owned() else {
                    warn!(%remote, max = cfg.limits.max_handshaking, "too many peer connections in their hello; closed");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (cfg, shared, inbound) = (cfg.clone(), shared.clone(), inbound.clone());
                tokio::spawn(async move {
                    serve_peer(cfg, shared, stream, remote, inbound, hello).await;
                    drop(connection);
                });
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_peer(
    cfg: Arc<TransportConfig>,
    shared: Arc<RwLock<Shared>>,
    tcp: TcpStream,
    remote: SocketAddr,
    inbound: mpsc::Sender<(NodeId, Message)>,
    hello: OwnedSemaphorePermit,
) {
    let mut stream = match crate::tls::accept(cfg.tls.as_ref(), tcp).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            debug!(%remote, "peer connection closed before the TLS handshake");
            return;
        }
        Err(e) => {
            warn!(%remote, error = %e, "peer connection refused: TLS handshake failed");
            return;
        }
    };
    let mut h = [0u8; HELLO_LEN];
    let read = tokio::time::timeout(cfg.limits.hello_timeout, stream.read_exact(&mut h)).await;
    if !matches!(read, Ok(Ok(_))) {
        warn!(%remote, "peer connection closed: no valid hello");
        return;
    }
    drop(hello);
    let (status, from, format) = check_hello(&cfg, &shared_read(&shared), &h);
    if status == HelloStatus::Directory {
        let Some(info) = shared_read(&shared).directory.clone() else {
            return;
        };
        let body = encode_cluster_info(format, &info);
        let mut answer = vec![status as u8];
        answer.extend_from_slice(&(body.len() as u32).to_be_bytes());
        answer.extend_from_slice(&body);
        let _ = write_flushed(&mut stream, &answer).await;
        debug!(%remote, "answered a directory request");
        return;
    }
    let _ = write_flushed(&mut stream, &[status as u8]).await;
    if status != HelloStatus::Ok {
        warn!(%remote, claimed = from, reason = status.reason(), "peer refused");
        return;
    }
    let received = cfg.metrics.peer_received(from);
    let mut body = Vec::new();
    loop {
        let read = tokio::select! {
            r = read_frame(&mut stream, cfg.max_frame, cfg.limits.frame_timeout, &mut body) => r,
            _ = inbound.closed() => return,
        };
        match read {
            Ok(true) => {}
            Ok(false) => {
                debug!(peer = from, "peer connection closed");
                return;
            }
            Err(e) => {
                warn!(peer = from, error = %e, "bad frame; closing the connection");
                return;
            }
        }
        // The frame: its length prefix and its body.
        received.inc_by(4 + body.len() as u64);
        if shared_read(&shared).removed.contains(&from) {
            info!(peer = from, "closing the connection of a removed member");
            return;
        }
        match decode_message_as(format, &body) {
            Ok(msg) => {
                if inbound.send((from, msg)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(peer = from, error = %e, "undecodable frame; closing the connection");
                return;
            }
        }
    }
}

/// Why a frame was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {len} bytes declared, at most {max} accepted")]
    Oversized { len: usize, max: usize },
    #[error("frame not complete within {0:?} of its first byte")]
    Deadline(Duration),
    #[error("connection closed mid-frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Read one frame's body into `body` (replacing what it held): `Ok(false)`
/// if the connection closed cleanly before the frame began.
///
/// The body grows only as its bytes arrive: a peer that declares 64 MiB
/// and sends nothing costs nothing, and must finish the frame within
/// `deadline` of its first byte. A buffer left large by a big frame is let
/// go afterwards.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    max_frame: usize,
    deadline: Duration,
    body: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    const KEEP: usize = 1 << 20;
    if body.capacity() > KEEP {
        *body = Vec::new();
    }
    body.clear();
    let mut len = [0u8; 4];
    // Between frames a connection may idle; the deadline starts with the
    // first byte.
    if stream.read(&mut len[..1]).await? == 0 {
        return Ok(false);
    }
    let rest = async {
        stream.read_exact(&mut len[1..]).await.map_err(truncated)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > max_frame {
            return Err(FrameError::Oversized { len, max: max_frame });
        }
        let got = (&mut *stream).take(len as u64).read_to_end(body).await?;
        if got < len {
            return Err(FrameError::Truncated);
        }
        Ok(true)
    };
    tokio::time::timeout(deadline, rest).await.map_err(|_| FrameError::Deadline(deadline))?
}

fn truncated(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(me: NodeId, cluster_id: u64) -> TransportConfig {
        let peers = (1..=3).map(|i| (i, SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)))).collect();
        TransportConfig {
            cluster_id,
            me,
            peers,
            max_frame: 1 << 20,
            limits: InboundLimits::default(),
            tls: None,
            metrics: crate::Metrics::new(),
        }
    }

    #[test]
    fn handshake_refuses_strangers() {
        let server = cfg(1, 7);
        let mut shared = Shared { known: [2, 3].into(), removed: BTreeSet::new(), directory: None };
        let ok = hello(&cfg(2, 7), 1, PeerFormat::V5);
        assert_eq!(check_hello(&server, &shared, &ok), (HelloStatus::Ok, 2, PeerFormat::CURRENT));
        assert_eq!(check_hello(&server, &shared, &hello(&cfg(2, 8), 1, PeerFormat::V5)).0, HelloStatus::WrongCluster);
        assert_eq!(check_hello(&server, &shared, &hello(&cfg(2, 7), 3, PeerFormat::V5)).0, HelloStatus::WrongReceiver);
        assert_eq!(check_hello(&server, &shared, &hello(&cfg(9, 7), 1, PeerFormat::V4)).0, HelloStatus::UnknownMember);
        assert_eq!(check_hello(&server, &shared, &directory_hello(PeerFormat::V4)).0, HelloStatus::Directory);
        let mut junk = ok;
        junk[0] = b'X';
        assert_eq!(check_hello(&server, &shared, &junk).0, HelloStatus::BadMagic);
        // Protocol versions: 4 and 5 are spoken (and the format follows the
        // hello), 3 and 6 are not.
        assert_eq!(check_hello(&server, &shared, &hello(&cfg(2, 7), 1, PeerFormat::V4)).2, PeerFormat::V4);
        for version in [3, 6] {
            let mut other = ok;
            other[6] = version;
            assert_eq!(check_hello(&server, &shared, &other).0, HelloStatus::BadMagic, "version {version}");
        }
        // Membership changes: a new member is let in, a removed one is told.
        shared.known.insert(9);
        assert_eq!(check_hello(&server, &shared, &hello(&cfg(9, 7), 1, PeerFormat::V4)).0, HelloStatus::Ok);
        shared.known.remove(&2);
        assert_eq!(check_hello(&server, &shared, &ok).0, HelloStatus::UnknownMember);
        shared.removed.insert(2);
        assert_eq!(check_hello(&server, &shared, &ok).0, HelloStatus::Removed);
    }

    /// A frame that declares 64 MiB and then stalls: the body holds only
    /// the bytes that came, and the read gives up at the deadline.
    #[tokio::test]
    async fn a_declared_length_is_not_allocated_before_its_bytes_arrive() {
        let (mut peer, mut ours) = tokio::io::duplex(1024);
        peer.write_all(&(64u32 << 20).to_be_bytes()).await.unwrap();
        peer.write_all(b"0123456789").await.unwrap();
        let mut body = Vec::new();
        let read = read_frame(&mut ours, 64 << 20, Duration::from_millis(50), &mut body).await;
        assert!(matches!(read, Err(FrameError::Deadline(_))), "{read:?}");
        assert!(body.capacity() < 1 << 16, "{} bytes allocated for 10 received", body.capacity());
        drop(peer);
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_bad_ones_refused() {
        let (mut peer, mut ours) = tokio::io::duplex(1 << 16);
        let mut body = Vec::new();
        for msg in [b"hello".as_slice(), b"", &[7u8; 3000]] {
            peer.write_all(&(msg.len() as u32).to_be_bytes()).await.unwrap();
            peer.write_all(msg).await.unwrap();
            assert!(read_frame(&mut ours, 4096, Duration::from_secs(5), &mut body).await.unwrap());
            assert_eq!(body, msg);
        }
        peer.write_all(&5000u32.to_be_bytes()).await.unwrap();
        let read = read_frame(&mut ours, 4096, Duration::from_secs(5), &mut body).await;
        assert!(matches!(read, Err(FrameError::Oversized { len: 5000, max: 4096 })), "{read:?}");
        peer.write_all(&[0, 0]).await.unwrap();
        drop(peer);
        let read = read_frame(&mut ours, 4096, Duration::from_secs(5), &mut body).await;
        assert!(matches!(read, Err(FrameError::Truncated)), "{read:?}");
        let read = read_frame(&mut ours, 4096, Duration::from_secs(5), &mut body).await;
        assert!(matches!(read, Ok(false)), "{read:?}");
    }

    /// A member listening with short deadlines and small caps; returns its
    /// address and the receiving end of its inbound messages.
    async fn listening(limits: InboundLimits) -> (SocketAddr, mpsc::Receiver<(NodeId, Message)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cfg = cfg(1, 7);
        cfg.max_frame = 64 << 20;
        cfg.limits = limits;
        let shared = Shared { known: [2, 3].into(), removed: BTreeSet::new(), directory: None };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(accept_loop(Arc::new(cfg), Arc::new(RwLock::new(shared)), listener, tx));
        (addr, rx)
    }

    /// Whether the connection is closed by the other end within `wait`.
    async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(tokio::time::timeout(wait, s.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
    }

    #[tokio::test]
    async fn a_peer_of_the_previous_release_is_served_in_its_protocol() {
        let (addr, mut rx) = listening(InboundLimits::default()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&peer_hello_as(PeerFormat::V4, 7, 2, 1)).await.unwrap();
        let mut status = [9u8; 1];
        s.read_exact(&mut status).await.unwrap();
        assert_eq!(status[0], HelloStatus::Ok as u8);
        let msg = Message::Commit { ballot: synod_paxos::Ballot::new(3, 2), commit: 9 };
        let body = crate::codec::legacy::encode_message(&msg);
        s.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        assert_eq!(rx.recv().await, Some((2, msg)));
    }

    /// A member of the previous release (peer protocol 4) refuses a hello
    /// of version 5 as not a Synod peer: the dialler tries again in 4.
    #[tokio::test]
    async fn a_member_dials_the_previous_release_in_its_protocol() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let old_member = tokio::spawn(async move {
            let mut versions = Vec::new();
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut h = [0u8; HELLO_LEN];
                s.read_exact(&mut h).await.unwrap();
                versions.push(h[6]);
                if h[6] != 4 {
                    s.write_all(&[HelloStatus::BadMagic as u8]).await.unwrap();
                    continue;
                }
                s.write_all(&[HelloStatus::Ok as u8]).await.unwrap();
                let mut body = Vec::new();
                assert!(read_frame(&mut s, 1 << 20, Duration::from_secs(5), &mut body).await.unwrap());
                return (versions, crate::codec::legacy::decode_message(&body).unwrap());
            }
        });
        let me = cfg(2, 7);
        let (mut stream, format) = connect(&me, 1, addr).await.unwrap();
        assert_eq!(format, PeerFormat::V4);
        let msg = Message::Progress { commit: 4 };
        let mut buf = Vec::new();
        push_frame(&mut buf, &msg, 1, 1 << 20, format);
        write_flushed(&mut stream, &buf).await.unwrap();
        assert_eq!(old_member.await.unwrap(), (vec![5, 4], msg));
    }

    #[tokio::test]
    async fn a_stalled_frame_closes_its_connection_at_the_deadline() {
        let limits = InboundLimits { frame_timeout: Duration::from_millis(200), ..InboundLimits::default() };
        let (addr, _rx) = listening(limits).await;
        let mut conns = Vec::new();
        for _ in 0..16 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&peer_hello(7, 2, 1)).await.unwrap();
            let mut status = [9u8; 1];
            s.read_exact(&mut status).await.unwrap();
            assert_eq!(status[0], HelloStatus::Ok as u8);
            s.write_all(&(64u32 << 20).to_be_bytes()).await.unwrap();
            s.write_all(b"partial").await.unwrap();
            conns.push(s);
        }
        for s in &mut conns {
            assert!(closed_within(s, Duration::from_secs(20)).await, "a stalled frame kept its connection");
        }
    }

    #[tokio::test]
    async fn connections_past_the_caps_are_closed_at_once_and_a_silent_hello_times_out() {
        let limits = InboundLimits {
            hello_timeout: Duration::from_secs(60),
            max_handshaking: 4,
            max_connections: 6,
            ..InboundLimits::default()
        };
        let (addr, _rx) = listening(limits).await;
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut fifth = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut fifth, Duration::from_secs(20)).await, "a fifth connection in its hello was served");
        for s in &mut silent {
            assert!(!closed_within(s, Duration::from_millis(50)).await, "a connection within the cap was closed");
        }
        drop(silent);
        let limits = InboundLimits { max_connections: 2, ..InboundLimits::default() };
        let (addr, _rx) = listening(limits).await;
        let mut greeted = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&peer_hello(7, 2, 1)).await.unwrap();
            let mut status = [9u8; 1];
            s.read_exact(&mut status).await.unwrap();
            assert_eq!(status[0], HelloStatus::Ok as u8);
            greeted.push(s);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut third, Duration::from_secs(20)).await, "a third connection was served");
        let limits = InboundLimits { hello_timeout: Duration::from_millis(200), ..InboundLimits::default() };
        let (addr, _rx) = listening(limits).await;
        let mut quiet = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut quiet, Duration::from_secs(20)).await, "a silent hello kept its connection");
    }
}
