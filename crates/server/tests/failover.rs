//! Failures of real synod processes: the leader SIGKILLed under a write
//! load, and a member restarted from its data directory.

mod common;

use common::Cluster;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Acknowledged writes: key, and whether it was acknowledged after the kill.
type Acks = Arc<Mutex<Vec<(String, bool)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_during_write_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let acks: Acks = Arc::default();
    let mut writers = Vec::new();
    // Two writers on each follower, one on the leader itself.
    let targets = [(leader + 1) % 3, (leader + 1) % 3, (leader + 2) % 3, (leader + 2) % 3, leader];
    for (w, &target) in targets.iter().enumerate() {
        let mut client = cluster.client(target).await;
        let (stop, killed, acks) = (stop.clone(), killed.clone(), acks.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load/{w}/{i:06}");
                i += 1;
                let after_kill = killed.load(Ordering::Relaxed);
                let put = client.put(key.clone(), "v", None);
                match tokio::time::timeout(Duration::from_secs(6), put).await {
                    Ok(Ok(_)) => acks.lock().unwrap().push((key, after_kill)),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = acks.lock().unwrap().len();
    assert!(before > 0, "no write was acknowledged before the kill");
    cluster.kill(leader);
    killed.store(true, Ordering::Relaxed);

    // Writes resume under a new leader.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resumed = acks.lock().unwrap().iter().filter(|(_, a)| *a).count();
        if resumed >= 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the leader was killed ({resumed} acknowledged)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }

    let survivor = (leader + 1) % 3;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let acked: Vec<String> = acks.lock().unwrap().iter().map(|(k, _)| k.clone()).collect();
    cluster.assert_none_lost(survivor, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_member_catches_up() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    // The leader goes down: it has the most to lose and the most to catch up.
    let victim = cluster.leader().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let mut c = common::connect(others.iter().map(|&i| cluster.endpoint(i)).collect()).await;
    for i in 0..10 {
        c.put(format!("r/{i:03}"), "before", None).await.unwrap();
    }
    cluster.kill(victim);
    // A write forwarded to a leader that just died times out, as in etcd:
    // retry like a client does (a retried put is harmless here).
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 10..60 {
        loop {
            let put = c.put(format!("r/{i:03}"), "while-down", None);
            match tokio::time::timeout(Duration::from_secs(6), put).await {
                Ok(Ok(_)) => break,
                failed => assert!(Instant::now() < deadline, "writes with one member down keep failing: {failed:?}"),
            }
        }
    }
    cluster.restart(victim);
    cluster.wait_member_ready(victim).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster.local_count(victim, "r/").await != 60 {
        assert!(
            Instant::now() < deadline,
            "restarted member has {} of 60 keys",
            cluster.local_count(victim, "r/").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it takes part in new writes.
    let mut direct = cluster.client(victim).await;
    direct.put("r/after", "yes", None).await.unwrap();
    assert_eq!(cluster.value(others[0], "r/after").await.as_deref(), Some(&b"yes"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_data_was_wiped_rejoins_as_a_learner_and_catches_up() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let victim = (leader + 1) % 3;
    let mut c = cluster.client(leader).await;
    for i in 0..40 {
        c.put(format!("w/{i:03}"), "before", None).await.unwrap();
    }
    cluster.wipe_and_rejoin(victim);
    cluster.wait_member_ready(victim).await;
    for i in 40..60 {
        c.put(format!("w/{i:03}"), "after", None).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster.local_count(victim, "w/").await != 60 {
        assert!(Instant::now() < deadline, "wiped member has {} of 60 keys", cluster.local_count(victim, "w/").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = cluster.log(victim);
    assert!(log.contains("rejoining as a learner"), "the wiped member must not vote with amnesia:\n{log}");
}
