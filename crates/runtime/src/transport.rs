//! TCP between replicas: length-framed, batched, reconnecting.
//!
//! Every connection opens with a fixed-size hello naming the cluster, the
//! sender and the intended receiver; a peer from another cluster, an unknown
//! member or a misdirected connection is refused and closed. After that each
//! frame is a big-endian `u32` length and a postcard-encoded message. A
//! frame that is oversized or does not decode closes that connection, with
//! the reason logged, and harms nothing else.
//!
//! The set of peers can change while the transport runs (membership
//! changes): [`Transport::set_peer`] starts talking to a new member, or to a
//! member at a new address, and [`Transport::remove_peer`] stops; a hello
//! from a member that is not (or no longer) known is refused.
//!
//! Sending never blocks the replica: each peer has a bounded queue drained
//! by its own task, which writes everything queued in one system call and
//! reconnects with back-off when the connection breaks. Messages that do not
//! fit, or that were queued while the peer was unreachable, are dropped:
//! Paxos tolerates lost messages (the replica resends what matters).

use crate::codec::{decode_message, encode_message};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use synod_paxos::{Message, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

const MAGIC: [u8; 8] = *b"SYNOD\x00\x01\x00";
const HELLO_LEN: usize = 8 + 8 + 8 + 8;
const QUEUE: usize = 8192;

/// Answer to a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum HelloStatus {
    Ok = 0,
    WrongCluster = 1,
    UnknownMember = 2,
    WrongReceiver = 3,
    BadMagic = 4,
}

impl HelloStatus {
    fn reason(self) -> &'static str {
        match self {
            HelloStatus::Ok => "accepted",
            HelloStatus::WrongCluster => "peer belongs to another cluster",
            HelloStatus::UnknownMember => "peer is not a member of this cluster",
            HelloStatus::WrongReceiver => "peer meant to reach another member",
            HelloStatus::BadMagic => "not a Synod peer",
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
    /// Frames above this many bytes close the connection.
    pub max_frame: usize,
}

/// Sending side of the peer network, owned by the replica's task.
pub struct Transport {
    cfg: Arc<TransportConfig>,
    /// Each peer's address and the queue its connection task drains.
    queues: BTreeMap<NodeId, (SocketAddr, mpsc::Sender<Message>)>,
    /// The members whose hellos are accepted (shared with the accept loop).
    known: Arc<RwLock<BTreeSet<NodeId>>>,
}

impl Transport {
    /// Start accepting on `listener` and connecting to every other peer.
    /// Messages received are passed to `inbound`. The returned task ends,
    /// releasing the listener, once `inbound`'s receiver is dropped.
    pub fn start(
        cfg: TransportConfig,
        listener: TcpListener,
        inbound: mpsc::Sender<(NodeId, Message)>,
    ) -> (Transport, tokio::task::JoinHandle<()>) {
        let cfg = Arc::new(cfg);
        let known = Arc::new(RwLock::new(cfg.peers.keys().copied().filter(|&id| id != cfg.me).collect()));
        let mut transport = Transport { cfg: cfg.clone(), queues: BTreeMap::new(), known: known.clone() };
        for (&id, &addr) in cfg.peers.iter() {
            transport.set_peer(id, addr);
        }
        let accept = tokio::spawn(accept_loop(cfg, known, listener, inbound));
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
        self.known.write().expect("no panics while holding the lock").insert(id);
        let (tx, rx) = mpsc::channel(QUEUE);
        // Replacing the old queue ends the old connection's task.
        self.queues.insert(id, (addr, tx));
        tokio::spawn(outbound(self.cfg.clone(), id, addr, rx));
    }

    /// Stop talking to member `id` and refuse its hellos.
    pub fn remove_peer(&mut self, id: NodeId) {
        self.known.write().expect("no panics while holding the lock").remove(&id);
        self.queues.remove(&id);
    }

    /// Every peer and its address.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.queues.iter().map(|(&id, (addr, _))| (id, *addr)).collect()
    }
}

fn hello(cfg: &TransportConfig, to: NodeId) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..16].copy_from_slice(&cfg.cluster_id.to_be_bytes());
    h[16..24].copy_from_slice(&cfg.me.to_be_bytes());
    h[24..32].copy_from_slice(&to.to_be_bytes());
    h
}

fn check_hello(cfg: &TransportConfig, known: &BTreeSet<NodeId>, h: &[u8; HELLO_LEN]) -> (HelloStatus, NodeId) {
    let word = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let from = word(16);
    let status = if h[..8] != MAGIC {
        HelloStatus::BadMagic
    } else if word(8) != cfg.cluster_id {
        HelloStatus::WrongCluster
    } else if word(24) != cfg.me {
        HelloStatus::WrongReceiver
    } else if from == cfg.me || !known.contains(&from) {
        HelloStatus::UnknownMember
    } else {
        HelloStatus::Ok
    };
    (status, from)
}

async fn outbound(cfg: Arc<TransportConfig>, peer: NodeId, addr: SocketAddr, mut rx: mpsc::Receiver<Message>) {
    let mut backoff = Duration::from_millis(20);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let mut stream = match connect(&cfg, peer, addr).await {
            Ok(s) => {
                backoff = Duration::from_millis(20);
                info!(peer, %addr, "connected to peer");
                s
            }
            Err(reason) => {
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
            push_frame(&mut buf, &first);
            while buf.len() < 1 << 20 {
                match rx.try_recv() {
                    Ok(m) => push_frame(&mut buf, &m),
                    Err(_) => break,
                }
            }
            if let Err(e) = stream.write_all(&buf).await {
                warn!(peer, error = %e, "peer connection broke; reconnecting");
                break;
            }
        }
    }
}

fn push_frame(buf: &mut Vec<u8>, msg: &Message) {
    let body = encode_message(msg);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
}

async fn connect(cfg: &TransportConfig, peer: NodeId, addr: SocketAddr) -> Result<TcpStream, String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.write_all(&hello(cfg, peer)).await.map_err(|e| e.to_string())?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status).await.map_err(|e| e.to_string())?;
        if status[0] != HelloStatus::Ok as u8 {
            return Err(format!("peer refused the handshake (status {})", status[0]));
        }
        Ok(s)
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.map_err(|_| "handshake timed out".to_string())?
}

async fn accept_loop(
    cfg: Arc<TransportConfig>,
    known: Arc<RwLock<BTreeSet<NodeId>>>,
    listener: TcpListener,
    inbound: mpsc::Sender<(NodeId, Message)>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            // The replica stopped: release the port.
            _ = inbound.closed() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_peer(cfg.clone(), known.clone(), stream, remote, inbound.clone()));
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
    known: Arc<RwLock<BTreeSet<NodeId>>>,
    mut stream: TcpStream,
    remote: SocketAddr,
    inbound: mpsc::Sender<(NodeId, Message)>,
) {
    let mut h = [0u8; HELLO_LEN];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut h)).await;
    if !matches!(read, Ok(Ok(_))) {
        warn!(%remote, "peer connection closed: no valid hello");
        return;
    }
    let status_from = {
        let known = known.read().expect("no panics while holding the lock");
        check_hello(&cfg, &known, &h)
    };
    let (status, from) = status_from;
    let _ = stream.write_all(&[status as u8]).await;
    if status != HelloStatus::Ok {
        warn!(%remote, claimed = from, reason = status.reason(), "peer refused");
        return;
    }
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        let read = tokio::select! {
            r = stream.read_exact(&mut len) => r,
            _ = inbound.closed() => return,
        };
        if read.is_err() {
            debug!(peer = from, "peer connection closed");
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > cfg.max_frame {
            warn!(peer = from, len, max = cfg.max_frame, "oversized frame; closing the connection");
            return;
        }
        body.resize(len, 0);
        if stream.read_exact(&mut body).await.is_err() {
            debug!(peer = from, "peer connection closed mid-frame");
            return;
        }
        match decode_message(&body) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(me: NodeId, cluster_id: u64) -> TransportConfig {
        let peers = (1..=3).map(|i| (i, SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)))).collect();
        TransportConfig { cluster_id, me, peers, max_frame: 1 << 20 }
    }

    #[test]
    fn handshake_refuses_strangers() {
        let server = cfg(1, 7);
        let mut known: BTreeSet<NodeId> = [2, 3].into();
        let ok = hello(&cfg(2, 7), 1);
        assert_eq!(check_hello(&server, &known, &ok), (HelloStatus::Ok, 2));
        assert_eq!(check_hello(&server, &known, &hello(&cfg(2, 8), 1)).0, HelloStatus::WrongCluster);
        assert_eq!(check_hello(&server, &known, &hello(&cfg(2, 7), 3)).0, HelloStatus::WrongReceiver);
        assert_eq!(check_hello(&server, &known, &hello(&cfg(9, 7), 1)).0, HelloStatus::UnknownMember);
        let mut junk = ok;
        junk[0] = b'X';
        assert_eq!(check_hello(&server, &known, &junk).0, HelloStatus::BadMagic);
        // Membership changes: a new member is let in, a removed one is not.
        known.insert(9);
        assert_eq!(check_hello(&server, &known, &hello(&cfg(9, 7), 1)).0, HelloStatus::Ok);
        known.remove(&2);
        assert_eq!(check_hello(&server, &known, &ok).0, HelloStatus::UnknownMember);
    }
}
