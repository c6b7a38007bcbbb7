//! Replicating your own state machine: a counter, three replicas in one
//! process on loopback, with their data under a temporary directory.
//!
//! ```sh
//! cargo run --release -p synod-runtime --example counter
//! ```
//!
//! Everything a user writes is the state machine; storage, networking,
//! leader election and recovery come from the runtime.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use synod_paxos::{Command, Config, Slot, SnapshotError, StateMachine};
use synod_runtime::{Node, NodeConfig};
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
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
    }
    let peers: BTreeMap<u64, SocketAddr> =
        listeners.iter().map(|(&id, l)| (id, l.local_addr().expect("bound"))).collect();
    let mut nodes = Vec::new();
    for (id, listener) in listeners {
        let mut cfg =
            NodeConfig::new(Config::new(id, vec![1, 2, 3]), 7, peers.clone(), dir.path().join(id.to_string()));
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
