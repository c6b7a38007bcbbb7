//! Joining a running cluster: how a new node learns who it is.
//!
//! An operator adds a member at the leader (its id and peer address go into
//! the log, then the membership change), and then starts the new node with
//! the peer addresses of some existing members. The node does not know its
//! id, the cluster's id or the current membership: [`discover`] asks the
//! members it was given (a directory hello on their peer port, see
//! [`crate::transport`]) until one answers with a membership that lists a
//! member at this node's own peer address. The node then starts a replica
//! with that id, the answered membership as its initial configuration (it
//! learns every later change through the log) and the answered peers.
//!
//! A node that is not (yet) a member gets a clear error once `timeout` runs
//! out, rather than starting a cluster of its own.

use crate::codec::{decode_cluster_info, PeerFormat};
use crate::tls::PeerTls;
use crate::transport::{directory_hello, write_flushed, ClusterInfo, BAD_MAGIC_STATUS};
use crate::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synod_paxos::{Config, NodeId, QuorumPolicy};
use tokio::io::AsyncReadExt;
use tracing::debug;

/// Largest directory answer accepted.
const MAX_ANSWER: usize = 1 << 20;

/// What a joining node learned: its own id and the cluster as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// This node's member id.
    pub id: NodeId,
    /// The cluster, as the answering member knew it.
    pub info: ClusterInfo,
}

impl Joined {
    /// `base` with this node's id, the answered membership as its initial
    /// configuration and the cluster's pipeline window.
    pub fn protocol(&self, base: &Config) -> Result<Config, Error> {
        let m = &self.info.membership;
        let mut cfg = base.clone();
        cfg.id = self.id;
        cfg.members = m.voters.clone();
        cfg.learners = m.learners.clone();
        cfg.quorum = QuorumPolicy::flexible(m.voters.len(), m.q1, m.q2).map_err(|e| Error::Config(e.to_string()))?;
        cfg.max_inflight_slots = self.info.alpha as usize;
        Ok(cfg)
    }
}

/// Ask the members at `seeds` (this node's own address `me` is skipped)
/// until one lists a member at `me`; gives up after `timeout`. With `tls`,
/// each request runs inside a TLS session, as every peer connection does.
pub async fn discover(
    seeds: &[SocketAddr],
    me: SocketAddr,
    timeout: Duration,
    tls: Option<&PeerTls>,
) -> Result<Joined, Error> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no other member was given");
    loop {
        for &seed in seeds.iter().filter(|&&s| s != me) {
            match ask(seed, tls).await {
                Ok(info) => {
                    // A member removed from this address may still be listed
                    // as a peer for a moment: only a current member counts.
                    let id =
                        info.peers.iter().find(|(&id, &a)| a == me && info.membership.contains(id)).map(|(&id, _)| id);
                    match id {
                        Some(id) => return Ok(Joined { id, info }),
                        None => {
                            last = format!(
                                "the member at {seed} lists no member with peer address {me} \
                                 (add this member to the cluster first, e.g. `etcdctl member add`)"
                            )
                        }
                    }
                }
                Err(e) => {
                    debug!(%seed, error = %e, "directory request failed");
                    last = format!("{seed}: {e}");
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Config(format!("cannot join the cluster: {last}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One directory request: in today's format, or, if the member refuses
/// that as unknown (a member of an earlier release), in an older one.
pub async fn ask(seed: SocketAddr, tls: Option<&PeerTls>) -> Result<ClusterInfo, Error> {
    let mut format = PeerFormat::CURRENT;
    loop {
        match ask_as(seed, tls, format).await {
            Err(Error::Io(reason)) if reason == REFUSED_VERSION => match format.older() {
                Some(older) => format = older,
                None => return Err(Error::Io(reason)),
            },
            other => return other,
        }
    }
}

/// Why [`ask_as`] failed when the member does not speak its format.
const REFUSED_VERSION: &str = "the member does not speak this peer protocol version";

async fn ask_as(seed: SocketAddr, tls: Option<&PeerTls>, format: PeerFormat) -> Result<ClusterInfo, Error> {
    let attempt = async {
        let io = |e: std::io::Error| Error::Io(e.to_string());
        let mut s = crate::tls::dial(tls, seed).await.map_err(io)?;
        write_flushed(&mut s, &directory_hello(format)).await.map_err(io)?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status).await.map_err(io)?;
        if status[0] == BAD_MAGIC_STATUS {
            return Err(Error::Io(REFUSED_VERSION.to_string()));
        }
        if status[0] != crate::transport::DIRECTORY_STATUS {
            return Err(Error::Io(format!("not answered as a directory request (status {})", status[0])));
        }
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_ANSWER {
            return Err(Error::Io(format!("oversized directory answer ({len} bytes)")));
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.map_err(io)?;
        decode_cluster_info(format, &body).map_err(|e| Error::Corrupt(e.to_string()))
    };
    let limit = Duration::from_secs(2) + if tls.is_some() { crate::tls::HANDSHAKE_TIMEOUT } else { Duration::ZERO };
    tokio::time::timeout(limit, attempt).await.map_err(|_| Error::Timeout)?
}
