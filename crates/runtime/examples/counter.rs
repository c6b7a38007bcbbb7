//! Replicating your own state machine: a counter, three replicas in one
//! process, with their data under a temporary directory.
//!
//! ```sh
//! cargo run --release -p synod-runtime --example counter
//! ```
//!
//! Everything a user writes is the state machine; storage, networking,
//! leader election and recovery come from the runtime. The example runs the
//! counter twice:
//!
//! 1. with the defaults: TCP between the replicas (on loopback) and a
//!    write-ahead log on disk each;
//! 2. with a transport and a log supplied by the caller, through the
//!    runtime's traits ([`synod_runtime::Transport`],
//!    [`synod_runtime::DurableLog`]): here the in-process
//!    [`synod_runtime::Network`] and in-memory logs, as a test or a
//!    simulator would; an embedder would plug in its own. It also proposes
//!    a command under an id the caller chose, and retries it: the retry is
//!    answered with the first result, and the counter moves once.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use synod_paxos::{Command, CommandId, Config, Slot, SnapshotError, StateMachine};
use synod_runtime::{Network, Node, NodeConfig};
use synod_storage::MemLog;
use tokio::net::TcpListener;

/// The replicated state: one number. Commands add to it.
#[derive(Default)]
struct Counter {
    value: i64,
}

impl StateMachine for Counter {
    type Output = i64;

    fn apply(&mut self, _slot: Slot, command: &Command) -> i64 {
        let delta = std::str::from_utf8(&command.payload).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        self.value += delta;
        self.value
    }

    fn query(&self, _query: &[u8]) -> i64 {
        self.value
    }

    fn snapshot(&self) -> Vec<u8> {
        self.value.to_be_bytes().to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| SnapshotError("a counter is 8 bytes".into()))?;
        self.value = i64::from_be_bytes(bytes);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    over_tcp_and_the_wal(&dir.path().join("tcp")).await?;
    in_process(&dir.path().join("in-process")).await?;
    Ok(())
}

/// The defaults: each replica listens for its peers on TCP and logs to its
/// data directory.
async fn over_tcp_and_the_wal(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
    }
    let peers: BTreeMap<u64, SocketAddr> =
        listeners.iter().map(|(&id, l)| (id, l.local_addr().expect("bound"))).collect();
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let mut cfg = NodeConfig::new(Config::new(id, vec![1, 2, 3]), 7, peers.clone(), dir.join(id.to_string()));
        cfg.tick = Duration::from_millis(10);
        nodes.push(Node::start_on(cfg, Counter::default(), listener).await?);
    }
    // Any replica takes writes (followers forward them to the leader)...
    for (i, node) in nodes.iter().enumerate() {
        let after = node.handle().propose(Bytes::from((10 * (i + 1)).to_string())).await?;
        println!("replica {} added {}: counter is {after}", i + 1, 10 * (i + 1));
    }
    // ...and serves linearizable reads.
    for (i, node) in nodes.iter().enumerate() {
        println!("replica {} reads {}", i + 1, node.handle().read(Bytes::new()).await?);
    }
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}

/// A transport and a log of the caller's: the replicas of one process
/// connected directly, each logging in memory.
async fn in_process(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let network = Network::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        // No peer addresses: the network knows its members.
        let mut cfg = NodeConfig::new(Config::new(id, vec![1, 2, 3]), 7, BTreeMap::new(), dir.join(id.to_string()));
        cfg.tick = Duration::from_millis(10);
        let (transport, inbox) = network.join(id);
        let log = Arc::new(MemLog::new());
        nodes.push(Node::start_with(cfg, Counter::default(), transport, inbox, log).await?);
    }
    let handle = nodes[0].handle();
    // Wait for a leader, as the replica publishes it (no polling).
    let mut view = handle.subscribe();
    let leader = view.wait_for(|v| v.leader.is_some()).await?.leader;
    println!("in process: replica {} leads", leader.unwrap_or_default());

    // A command under an id this caller chose (client 1, its first
    // command), kept so that it can be proposed again after an error.
    let add = handle.command(CommandId { client: 1, seq: 1 }, "5");
    let first = handle.propose_command(add.clone()).await?;
    // Say the answer was lost: propose the same command again, at another
    // replica even. It is not applied twice.
    let retried = nodes[2].handle().propose_command(add).await?;
    let now = handle.read(Bytes::new()).await?;
    println!("in process: added 5 under a chosen id -> {first}; retried -> {retried}; counter is {now}");
    assert_eq!((first, retried, now), (5, 5, 5), "the retry was applied once");
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
