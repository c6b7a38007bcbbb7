//! etcd's v3lock and v3election services on real synod processes, through
//! the etcd-client crate's lock and election clients: mutual exclusion with
//! waiters served in request order, a holder losing the lock when its lease
//! ends, a client that gives up while waiting, elections with proclaim,
//! observe and resign, and a leader kill while a lock is contended.

mod common;

use common::Cluster;
use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn client(cluster: &Cluster, i: usize) -> Client {
    Client::connect([cluster.endpoint(i)], None).await.expect("connect")
}

async fn lease(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.expect("lease grant").id()
}

/// A future that must not finish within `ms` milliseconds.
async fn still_waiting<F: std::future::Future>(f: &mut std::pin::Pin<Box<F>>, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), f.as_mut()).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waiters_are_served_in_request_order_and_unlock_hands_over() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = client(&cluster, 0).await;
    let first = lease(&mut c, 60).await;
    let held = c.lock("job", Some(LockOptions::new().with_lease(first))).await.unwrap();
    assert!(held.key().starts_with(b"job/"), "{:?}", held.key());

    // Three waiters, each on its own member and lease, queued in order.
    let order: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut waiters = Vec::new();
    for w in 0..3 {
        let mut wc = client(&cluster, w).await;
        let id = lease(&mut wc, 60).await;
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let got = wc.lock("job", Some(LockOptions::new().with_lease(id))).await.unwrap();
            order.lock().unwrap().push(w);
            tokio::time::sleep(Duration::from_millis(100)).await;
            wc.unlock(got.key()).await.unwrap();
        }));
        // Let this waiter's key be created before the next one's.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(order.lock().unwrap().is_empty(), "a waiter got the lock while it was held");
    c.unlock(held.key()).await.unwrap();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(20), w).await.expect("waiters finish").unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_and_campaigns_without_a_lease_still_exclude_each_other() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut a = client(&cluster, 0).await;
    let mut b = client(&cluster, 1).await;
    // No lease: the server grants each request its own 60 s session lease.
    let held = a.lock("nolease", None).await.unwrap();
    let mut second = Box::pin(b.lock("nolease", None));
    assert!(still_waiting(&mut second, 700).await, "two holders of one lock");
    a.unlock(held.key()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), second).await.expect("handed over").unwrap();
    assert_ne!(got.key(), held.key());
    let key = String::from_utf8(got.key().to_vec()).unwrap();
    let lease = i64::from_str_radix(key.rsplit('/').next().unwrap(), 16).unwrap();
    let ttl = b.lease_time_to_live(lease, None).await.unwrap().ttl();
    assert!(ttl > 0, "the key is held by a live session lease: {ttl}");

    let mut won = a.campaign("nolease-e", "a", 0).await.unwrap();
    let mut rival = Box::pin(b.campaign("nolease-e", "b", 0));
    assert!(still_waiting(&mut rival, 700).await, "two leaders");
    a.resign(Some(ResignOptions::new().with_leader(won.take_leader().unwrap()))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), rival).await.expect("the rival leads").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lease_ends_loses_the_lock_and_bad_leases_are_refused() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = client(&cluster, 0).await;
    let short = lease(&mut c, 2).await;
    c.lock("l", Some(LockOptions::new().with_lease(short))).await.unwrap();
    let mut other = client(&cluster, 1).await;
    let long = lease(&mut other, 60).await;
    // Not kept alive, the holder's lease expires and the waiter gets the lock.
    let got = tokio::time::timeout(Duration::from_secs(20), other.lock("l", Some(LockOptions::new().with_lease(long))))
        .await
        .expect("the lock passes on when the holder's lease expires")
        .unwrap();
    assert!(got.key().ends_with(format!("{long:x}").as_bytes()));

    // A revoked lease cannot take a lock.
    c.lease_revoke(short).await.err();
    let err = c.lock("l2", Some(LockOptions::new().with_lease(short))).await.unwrap_err();
    assert!(err.to_string().contains("requested lease not found"), "{err}");

    // A waiter whose client gives up withdraws; the next waiter is not stuck
    // behind it.
    let mut quitter = client(&cluster, 2).await;
    let q = lease(&mut quitter, 60).await;
    let mut abandoned = Box::pin(quitter.lock("l", Some(LockOptions::new().with_lease(q))));
    assert!(still_waiting(&mut abandoned, 500).await);
    drop(abandoned);
    drop(quitter);
    let mut third = client(&cluster, 0).await;
    let t = lease(&mut third, 60).await;
    let mut waiting = Box::pin(third.lock("l", Some(LockOptions::new().with_lease(t))));
    assert!(still_waiting(&mut waiting, 500).await, "the lock is still held");
    other.unlock(got.key()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("the abandoned waiter withdrew").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elections_campaign_proclaim_observe_and_resign() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut a = client(&cluster, 0).await;
    let mut b = client(&cluster, 1).await;
    let la = lease(&mut a, 60).await;
    let lb = lease(&mut b, 60).await;

    let err = a.leader("e").await.unwrap_err();
    assert!(err.to_string().contains("election: no leader"), "{err}");
    let mut observe = b.observe("e").await.unwrap();

    let mut won = a.campaign("e", "a1", la).await.unwrap();
    let leader_a = won.take_leader().unwrap();
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"a1");
    let seen = observe.message().await.unwrap().unwrap();
    assert_eq!(seen.kv().unwrap().value(), b"a1");

    a.proclaim("a2", Some(ProclaimOptions::new().with_leader(leader_a.clone()))).await.unwrap();
    assert_eq!(observe.message().await.unwrap().unwrap().kv().unwrap().value(), b"a2");

    // b waits behind a, and only its own value is proclaimed once it leads.
    let mut b_campaign = Box::pin(b.campaign("e", "b1", lb));
    assert!(still_waiting(&mut b_campaign, 500).await);
    // a's key is at version 2 after its proclaim, b's at 1: the leader is
    // the candidate whose key was created first (sorting by version named
    // b, still waiting).
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"a2");
    a.resign(Some(ResignOptions::new().with_leader(leader_a.clone()))).await.unwrap();
    let mut won_b = tokio::time::timeout(Duration::from_secs(20), b_campaign).await.unwrap().unwrap();
    assert_eq!(observe.message().await.unwrap().unwrap().kv().unwrap().value(), b"b1");
    let err = a.proclaim("stale", Some(ProclaimOptions::new().with_leader(leader_a))).await.unwrap_err();
    assert!(err.to_string().contains("election: not leader"), "{err}");
    let leader_b = won_b.take_leader().unwrap();
    assert_eq!(a.leader("e").await.unwrap().kv().unwrap().value(), b"b1");
    b.resign(Some(ResignOptions::new().with_leader(leader_b))).await.unwrap();
    let err = a.leader("e").await.unwrap_err();
    assert!(err.to_string().contains("election: no leader"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contended_lock_survives_a_leader_kill() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut ca = client(&cluster, a).await;
    let mut cb = client(&cluster, b).await;
    let la = lease(&mut ca, 60).await;
    let lb = lease(&mut cb, 60).await;
    let held = ca.lock("k", Some(LockOptions::new().with_lease(la))).await.unwrap();
    let mut waiting = Box::pin(cb.lock("k", Some(LockOptions::new().with_lease(lb))));
    assert!(still_waiting(&mut waiting, 500).await);

    cluster.kill(leader);
    assert!(still_waiting(&mut waiting, 1500).await, "the lock stays held across the failover");
    // The unlock may need a new leader first; retry while one is elected.
    let mut unlocked = false;
    for _ in 0..40 {
        if ca.unlock(held.key()).await.is_ok() {
            unlocked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(unlocked, "unlock after the failover");
    let got = tokio::time::timeout(Duration::from_secs(20), waiting).await.expect("the waiter gets the lock").unwrap();
    assert!(got.key().ends_with(format!("{lb:x}").as_bytes()));
}
