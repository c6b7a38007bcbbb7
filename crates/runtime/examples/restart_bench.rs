//! How long a replica takes to restart: with one million records in its log,
//! and with a snapshot instead.
//!
//! ```sh
//! cargo run --release -p synod-runtime --example restart_bench [records]
//! ```
//!
//! Writes `records` accepted entries (one 256-byte command each) and a
//! commit mark straight to a fresh write-ahead log, then times
//! `Node::start` (open, verify every checksum, decode, replay, re-apply).
//! Then lets the replica snapshot and compact, and times the restart again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use synod_paxos::{Ballot, Command, Config, KvMachine, Record, Value};
use synod_runtime::codec::encode_record;
use synod_runtime::{Node, NodeConfig};
use synod_storage::{DataDir, Wal, WalOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("1");
    let ballot = Ballot::new(1, 1);
    {
        let data = DataDir::open_or_init(&path, 9, 1)?;
        let (wal, _) = Wal::open(data.wal_dir(), WalOptions::default())?;
        let value = "x".repeat(240);
        let mut batch = Vec::new();
        for slot in 1..=n {
            let cmd = Command::new(1, slot, KvMachine::put(&format!("k{}", slot % 10_000), &value));
            let rec = Record::Accepted { ballot, first_slot: slot, values: vec![Value::Commands(vec![cmd].into())] };
            batch.push(encode_record(&rec));
            if batch.len() == 4096 || slot == n {
                let refs: Vec<&[u8]> = batch.iter().map(|b| b.as_slice()).collect();
                wal.submit_batch(&refs)?.1.wait()?;
                batch.clear();
            }
        }
        wal.append(&encode_record(&Record::Commit(n)))?;
        wal.close()?;
    }
    let cfg = |snapshot_every| {
        let protocol = Config { snapshot_every, ..Config::new(1, vec![1]) };
        let peers = BTreeMap::from([(1, "127.0.0.1:0".parse().expect("address"))]);
        let mut c = NodeConfig::new(protocol, 9, peers, path.clone());
        c.tick = Duration::from_millis(10);
        c
    };
    let log_bytes = dir_size(&path.join("wal"));
    let t = Instant::now();
    let node = Node::start(cfg(0), KvMachine::default()).await?;
    let from_log = t.elapsed();
    let applied = node.handle().status().await?.applied;
    node.shutdown().await?;
    println!(
        "restart with {n} records in the log ({:.0} MB): {:.2} s (applied {applied})",
        log_bytes as f64 / 1e6,
        from_log.as_secs_f64()
    );

    // Let the replica take a snapshot and compact its log.
    let node = Node::start(cfg(n), KvMachine::default()).await?;
    for _ in 0..600 {
        if node.handle().status().await?.compacted >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.shutdown().await?;
    let t = Instant::now();
    let node = Node::start(cfg(0), KvMachine::default()).await?;
    let from_snapshot = t.elapsed();
    let s = node.handle().status().await?;
    node.shutdown().await?;
    println!(
        "restart from a snapshot ({:.1} MB) and {:.1} MB of log: {:.2} s (applied {})",
        dir_size(&path.join("snap")) as f64 / 1e6,
        dir_size(&path.join("wal")) as f64 / 1e6,
        from_snapshot.as_secs_f64(),
        s.applied
    );
    Ok(())
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p).map(|d| d.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
