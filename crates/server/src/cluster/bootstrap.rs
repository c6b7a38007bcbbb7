//! Who this member is: decided once, when its data directory is created,
//! and remembered there, as etcd ignores the `--initial-*` flags once a
//! member has data.
//!
//! * A member of a new cluster (`--initial-cluster-state new`) derives its
//!   id, the cluster's id and the voters from `--initial-cluster`.
//! * A member joining a running cluster (`existing`) with an empty data
//!   directory asks the members in `--initial-cluster` on their peer port
//!   ([`synod_runtime::join`]) which member has its peer URL: the operator
//!   added it first (`etcdctl member add`), so the cluster knows its id. It
//!   starts from the membership it was told: as a learner it starts empty
//!   and catches up; as a voter that lost its disk it rejoins without a
//!   vote until it has caught up (issue 3's amnesia rule, see
//!   [`synod_runtime::NodeConfig::join_existing`]).
//! * A member with data uses what its data directory says, whatever the
//!   flags say now.
//!
//! The record is a small text file with a CRC-32C line; a damaged one is
//! refused with its path rather than believed.

use crate::config::ServerConfig;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use synod_paxos::{NodeId, QuorumPolicy};
use synod_runtime::Error;
use tracing::info;

/// The file inside the data directory.
pub const FILE: &str = "synod.member";

/// How long a joining member looks for a member that knows it.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// What a member is, as its data directory records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's id.
    pub cluster_id: u64,
    /// This member's id.
    pub member_id: NodeId,
    /// The voters this member started with (later changes come from the
    /// log).
    pub voters: Vec<NodeId>,
    /// The learners it started with.
    pub learners: Vec<NodeId>,
    /// Phase-1 and phase-2 quorum sizes it started with.
    pub quorums: (usize, usize),
    /// The cluster's reconfiguration window.
    pub alpha: u64,
    /// Every member's peer address it started with.
    pub peers: BTreeMap<NodeId, SocketAddr>,
}

impl Identity {
    /// What `cfg` says.
    pub fn of(cfg: &ServerConfig) -> Identity {
        let p = &cfg.node.protocol;
        Identity {
            cluster_id: cfg.cluster_id,
            member_id: cfg.member_id,
            voters: p.members.clone(),
            learners: p.learners.clone(),
            quorums: (p.quorum.phase1(), p.quorum.phase2()),
            alpha: p.max_inflight_slots as u64,
            peers: cfg.node.peers.clone(),
        }
    }

    /// Make `cfg` this identity.
    pub fn apply(&self, cfg: &mut ServerConfig) -> Result<(), Error> {
        cfg.cluster_id = self.cluster_id;
        cfg.member_id = self.member_id;
        cfg.node.cluster_id = self.cluster_id;
        cfg.node.peers = self.peers.clone();
        let p = &mut cfg.node.protocol;
        p.id = self.member_id;
        p.seed = self.member_id;
        p.members = self.voters.clone();
        p.learners = self.learners.clone();
        p.quorum = QuorumPolicy::flexible(self.voters.len(), self.quorums.0, self.quorums.1)
            .map_err(|e| Error::Config(e.to_string()))?;
        p.max_inflight_slots = self.alpha as usize;
        Ok(())
    }

    fn encode(&self) -> String {
        let hex = |ids: &[NodeId]| ids.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>().join(",");
        let mut s = format!(
            "synod-member 1\ncluster {:x}\nmember {:x}\nvoters {}\nlearners {}\nquorums {} {}\nalpha {}\n",
            self.cluster_id,
            self.member_id,
            hex(&self.voters),
            hex(&self.learners),
            self.quorums.0,
            self.quorums.1,
            self.alpha
        );
        for (id, addr) in &self.peers {
            s.push_str(&format!("peer {id:x} {addr}\n"));
        }
        let crc = crc32c::crc32c(s.as_bytes());
        s.push_str(&format!("crc {crc:08x}\n"));
        s
    }

    fn decode(text: &str) -> Result<Identity, String> {
        let body_len = text.rfind("crc ").ok_or("no checksum line")?;
        let (body, crc_line) = text.split_at(body_len);
        let crc = u32::from_str_radix(crc_line.trim_start_matches("crc ").trim(), 16).map_err(|e| e.to_string())?;
        if crc32c::crc32c(body.as_bytes()) != crc {
            return Err("checksum mismatch".into());
        }
        let id = |s: &str| u64::from_str_radix(s, 16).map_err(|e| format!("bad id {s:?}: {e}"));
        let ids = |s: &str| s.split(',').filter(|x| !x.is_empty()).map(id).collect::<Result<Vec<_>, _>>();
        let mut lines = body.lines();
        if lines.next() != Some("synod-member 1") {
            return Err("unknown format".into());
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' ').or(Some("")))
                .map(str::to_string)
                .ok_or_else(|| format!("missing {name}"))
        };
        let cluster_id = id(&field("cluster")?)?;
        let member_id = id(&field("member")?)?;
        let voters = ids(&field("voters")?)?;
        let learners = ids(&field("learners")?)?;
        let q = field("quorums")?;
        let (q1, q2) = q.split_once(' ').ok_or("bad quorums")?;
        let quorums = (q1.parse().map_err(|_| "bad quorums")?, q2.parse().map_err(|_| "bad quorums")?);
        let alpha = field("alpha")?.parse().map_err(|_| "bad alpha")?;
        let mut peers = BTreeMap::new();
        for line in body.lines().filter_map(|l| l.strip_prefix("peer ")) {
            let (i, addr) = line.split_once(' ').ok_or("bad peer line")?;
            peers.insert(id(i)?, addr.parse().map_err(|e| format!("bad peer address {addr:?}: {e}"))?);
        }
        Ok(Identity { cluster_id, member_id, voters, learners, quorums, alpha, peers })
    }

    /// The identity recorded in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Identity>, Error> {
        let path = dir.join(FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Identity::decode(&text)
                .map(Some)
                .map_err(|e| Error::Corrupt(format!("{}: {e}; refusing to guess who this member is", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(format!("{}: {e}", path.display()))),
        }
    }

    /// Record this identity in `dir` (written whole and synced, then
    /// renamed into place).
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let io = |p: &PathBuf, e: std::io::Error| Error::Io(format!("{}: {e}", p.display()));
        let tmp = dir.join(format!("{FILE}.tmp"));
        // Private, like everything in the data directory.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        f.write_all(self.encode().as_bytes()).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        let path = dir.join(FILE);
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(&dir.to_path_buf(), e))
    }
}

/// Settle `cfg`'s identity before the replica starts (see the module
/// docs). Returns whether it still has to be recorded once the data
/// directory exists.
pub async fn settle(cfg: &mut ServerConfig) -> Result<bool, Error> {
    let dir = cfg.node.data_dir.clone();
    if let Some(identity) = Identity::load(&dir)? {
        identity.apply(cfg)?;
        return Ok(false);
    }
    let has_data = dir.join(synod_storage::MARKER_FILE).exists();
    if cfg.node.join_existing && !has_data {
        let me =
            cfg.node.peers.get(&cfg.member_id).copied().ok_or_else(|| Error::Config("no own peer address".into()))?;
        let seeds: Vec<SocketAddr> = cfg.node.peers.values().copied().collect();
        info!(%me, ?seeds, "joining a running cluster: asking its members who this member is");
        let joined = synod_runtime::discover(&seeds, me, DISCOVERY_TIMEOUT, cfg.node.peer_tls.as_ref()).await?;
        let m = &joined.info.membership;
        info!(
            member = format_args!("{:x}", joined.id),
            cluster = format_args!("{:x}", joined.info.cluster_id),
            learner = m.is_learner(joined.id),
            "joined"
        );
        let identity = Identity {
            cluster_id: joined.info.cluster_id,
            member_id: joined.id,
            voters: m.voters.clone(),
            learners: m.learners.clone(),
            quorums: (m.q1, m.q2),
            alpha: joined.info.alpha,
            peers: joined.info.peers.clone(),
        };
        identity.apply(cfg)?;
        // A learner is new: it never voted, so it starts empty. A voter with
        // no data lost its disk: it rejoins without a vote until caught up.
        cfg.node.join_existing = m.is_voter(joined.id);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            cluster_id: 0xabc,
            member_id: 7,
            voters: vec![1, 2, 7],
            learners: vec![9],
            quorums: (2, 2),
            alpha: 64,
            peers: [(1, "127.0.0.1:1".parse().unwrap()), (7, "[::1]:7".parse().unwrap())].into(),
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), None);
        identity().save(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(identity()));
        let path = dir.path().join(FILE);
        let text = fs::read_to_string(&path).unwrap().replace("member 7", "member 8");
        fs::write(&path, text).unwrap();
        let err = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && err.contains(FILE), "{err}");
        let no_learners = Identity { learners: vec![], ..identity() };
        assert_eq!(Identity::decode(&no_learners.encode()), Ok(no_learners));
    }
}
