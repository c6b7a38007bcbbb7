//! etcd's Lease service on a real 3-node synod cluster, through the
//! etcd-client crate, raw gRPC (for etcd's exact reply shapes) and Debian's
//! etcdctl: grant, revoke, time-to-live with keys, lease list, keys deleted
//! in one revision, expiry decided by the leader, keep-alives through a
//! follower and across a leader kill, unknown leases, vanishing clients.
//!
//! The state machine's minimum TTL is 2 s; timing assertions are generous
//! (two shared cores), but each one can fail: a lease that expires early,
//! or never, or dies in a failover, breaks one of them.

mod common;

use common::etcdctl::{self, Etcdctl};
use common::Cluster;
use etcd_client::proto::{PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse};
use etcd_client::{Client, Error, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn grpc(err: Error) -> (Code, String) {
    match err {
        Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

/// A keep-alive stream spoken in raw gRPC, to see etcd's reply shape
/// (the etcd-client crate turns a TTL of 0 into an error).
struct RawKeepAlive {
    tx: mpsc::Sender<PbLeaseKeepAliveRequest>,
    responses: tonic::Streaming<PbLeaseKeepAliveResponse>,
}

impl RawKeepAlive {
    async fn open(endpoint: &str) -> RawKeepAlive {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .expect("endpoint URL")
            .connect()
            .await
            .expect("connect");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("channel ready");
        let (tx, rx) = mpsc::channel(16);
        let path = PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
        let codec = tonic_prost::ProstCodec::<PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse>::default();
        let responses =
            grpc.streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec).await.expect("open").into_inner();
        RawKeepAlive { tx, responses }
    }

    async fn keep_alive(&mut self, id: i64) -> PbLeaseKeepAliveResponse {
        self.tx.send(PbLeaseKeepAliveRequest { id }).await.expect("send keep-alive");
        let next = tokio::time::timeout(Duration::from_secs(10), self.responses.message()).await;
        next.expect("keep-alive answered in time").expect("keep-alive stream healthy").expect("a response")
    }
}

/// Keeps `id` alive through `client` every `every` until `until`, opening a
/// new stream after an error (as etcd's clients do); returns how many
/// keep-alives were answered with a positive TTL, and panics on TTL 0 (the
/// lease is gone).
async fn keep_alive_until(client: &mut Client, id: i64, every: Duration, until: Instant) -> usize {
    let mut renewed = 0;
    while Instant::now() < until {
        let opened = tokio::time::timeout(Duration::from_secs(10), client.lease_keep_alive(id)).await;
        let (mut keeper, mut stream) = match opened {
            Ok(Ok(pair)) => pair,
            Ok(Err(Error::LeaseKeepAliveError(e))) => panic!("lease {id:x} lost: {e}"),
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        renewed += 1; // Opening the stream sent and answered one keep-alive.
        loop {
            tokio::time::sleep(every).await;
            if Instant::now() >= until {
                return renewed;
            }
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
                Ok(Ok(Some(r))) => {
                    assert!(r.ttl() > 0, "lease {id:x} lost: keep-alive answered TTL {}", r.ttl());
                    renewed += 1;
                }
                _ => break,
            }
        }
    }
    renewed
}

async fn exists(client: &mut Client, key: &str) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.get(key, None)).await {
            Ok(Ok(r)) => return r.count() == 1,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_revoke_time_to_live_and_leases_follow_etcd() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut c = cluster.client(follower).await;

    let a = c.lease_grant(60, None).await.unwrap();
    assert!(a.id() > 0);
    assert_eq!(a.ttl(), 60);
    assert!(a.header().unwrap().revision() > 0);
    // A TTL below the minimum is raised to it; a chosen ID is kept.
    let b = c.lease_grant(1, Some(LeaseGrantOptions::new().with_id(0x1234))).await.unwrap();
    assert_eq!((b.id(), b.ttl()), (0x1234, 2));
    let err = c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(0x1234))).await.unwrap_err();
    assert_eq!(grpc(err), (Code::FailedPrecondition, "etcdserver: lease already exists".into()));
    let err = c.lease_grant(9_000_000_001, None).await.unwrap_err();
    assert_eq!(grpc(err), (Code::OutOfRange, "etcdserver: too large lease TTL".into()));
    let err = c.put("k", "v", Some(PutOptions::new().with_lease(0x999))).await.unwrap_err();
    assert_eq!(grpc(err), (Code::NotFound, "etcdserver: requested lease not found".into()));

    for key in ["l/c", "l/a", "l/b"] {
        c.put(key, "v", Some(PutOptions::new().with_lease(a.id()))).await.unwrap();
    }
    let last_put = c.put("other", "stays", None).await.unwrap().header().unwrap().revision();

    // Time-to-live is the leader's count, forwarded from this follower.
    let t = c.lease_time_to_live(a.id(), Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!((t.id(), t.granted_ttl()), (a.id(), 60));
    assert!(t.ttl() > 50 && t.ttl() <= 60, "remaining TTL {}", t.ttl());
    assert_eq!(t.keys(), [b"l/a".to_vec(), b"l/b".to_vec(), b"l/c".to_vec()]);
    let t = c.lease_time_to_live(a.id(), None).await.unwrap();
    assert!(t.keys().is_empty());

    let mut ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, {
        let mut v = vec![a.id(), 0x1234];
        v.sort_unstable();
        v
    });

    // Revoking deletes every key of the lease in one revision.
    let revoked = c.lease_revoke(a.id()).await.unwrap().header().unwrap().revision();
    assert_eq!(revoked, last_put + 1);
    let prefix = GetOptions::new().with_prefix();
    assert_eq!(c.get("l/", Some(prefix.clone())).await.unwrap().count(), 0);
    assert_eq!(c.get("l/", Some(prefix.with_revision(revoked - 1))).await.unwrap().count(), 3);
    assert!(exists(&mut c, "other").await);

    let err = c.lease_revoke(a.id()).await.unwrap_err();
    assert_eq!(grpc(err), (Code::NotFound, "etcdserver: requested lease not found".into()));
    let t = c.lease_time_to_live(a.id(), None).await.unwrap();
    assert_eq!((t.id(), t.ttl(), t.granted_ttl()), (a.id(), -1, 0));
    let ids: Vec<i64> = c.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert_eq!(ids, vec![0x1234]);
    // The list is linearizable at every member.
    let mut at_leader = cluster.client(leader).await;
    let ids: Vec<i64> = at_leader.leases().await.unwrap().leases().iter().map(|l| l.id()).collect();
    assert_eq!(ids, vec![0x1234]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_not_kept_alive_expires_in_time_and_its_keys_go_in_one_revision() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = common::connect(cluster.endpoints()).await;

    let granted_at = Instant::now();
    let lease = c.lease_grant(3, None).await.unwrap().id();
    c.put("e/1", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    c.put("e/2", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let before_expiry = c.put("e/keep", "v", None).await.unwrap().header().unwrap().revision();

    // Not early: still there well inside its TTL.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(granted_at.elapsed())).await;
    let t = c.lease_time_to_live(lease, None).await.unwrap();
    assert!(t.ttl() >= 0 && t.ttl() <= 2, "remaining TTL {} after 1.5 s of 3", t.ttl());
    assert_eq!(c.get("e/", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 3);

    // Gone soon after it runs out.
    loop {
        if !exists(&mut c, "e/1").await {
            break;
        }
        assert!(granted_at.elapsed() < Duration::from_secs(15), "lease {lease:x} did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired_after = granted_at.elapsed();
    assert!(expired_after >= Duration::from_millis(2900), "expired after {expired_after:?}, TTL 3 s");

    let now = c.get("e/", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(now.count(), 1, "only the key without a lease stays");
    assert_eq!(now.header().unwrap().revision(), before_expiry + 1, "both keys deleted in one revision");
    assert_eq!(c.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
    assert!(c.leases().await.unwrap().leases().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_through_a_follower_keeps_a_lease_past_its_ttl() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let mut c = cluster.client((leader + 1) % 3).await;

    let lease = c.lease_grant(2, None).await.unwrap().id();
    c.put("ka", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let mut keeper_client = cluster.client((leader + 1) % 3).await;
    let keeping = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(7);
        keep_alive_until(&mut keeper_client, lease, Duration::from_millis(500), until).await
    });
    // Twice its TTL later, while the keep-alives go on, it lives.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(exists(&mut c, "ka").await, "kept-alive lease expired");
    let t = c.lease_time_to_live(lease, None).await.unwrap();
    assert!(t.ttl() >= 0 && t.granted_ttl() == 2, "{t:?}");
    let renewed = keeping.await.expect("keep-alive task");
    assert!(renewed >= 6, "only {renewed} keep-alives answered in 7 s");

    // Left alone, it then expires.
    let deadline = Instant::now() + Duration::from_secs(15);
    while exists(&mut c, "ka").await {
        assert!(Instant::now() < deadline, "lease {lease:x} never expired once left alone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_lease_survives_a_leader_kill_and_works_through_the_new_leader() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut c = cluster.client(follower).await;

    let lease = c.lease_grant(3, None).await.unwrap().id();
    c.put("fo", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let mut keeper_client = cluster.client(follower).await;
    let keeping = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(10);
        keep_alive_until(&mut keeper_client, lease, Duration::from_millis(500), until).await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill(leader);

    // While the keep-alives go on: the new leader holds the lease.
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let mut direct = cluster.client(new_leader).await;
    let t = direct.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(t.keys(), [b"fo".to_vec()]);
    assert!(t.ttl() >= 0 && t.granted_ttl() == 3, "{t:?}");
    let mut raw = RawKeepAlive::open(&cluster.endpoint(new_leader)).await;
    assert_eq!(raw.keep_alive(lease).await.ttl, 3);

    let renewed = keeping.await.expect("keep-alive task");
    assert!(renewed >= 8, "only {renewed} keep-alives answered in 10 s across the failover");
    assert!(exists(&mut c, "fo").await, "the lease died in the failover");

    // The new leader expires it once nobody keeps it alive.
    let deadline = Instant::now() + Duration::from_secs(15);
    while exists(&mut direct, "fo").await {
        assert!(Instant::now() < deadline, "the new leader never expired lease {lease:x}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_restarts_every_lease_at_its_full_ttl() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let survivor = (leader + 1) % 3;
    let mut c = cluster.client(survivor).await;

    let granted_at = Instant::now();
    let lease = c.lease_grant(3, None).await.unwrap().id();
    c.put("nl", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    // Nobody keeps it alive. The leader dies 1.5 s into its 3 s TTL.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(granted_at.elapsed())).await;
    let killed_at = Instant::now();
    cluster.kill(leader);

    // Past its first deadline it lives on: the new leader counts 3 s anew.
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(granted_at.elapsed())).await;
    assert!(exists(&mut c, "nl").await, "the lease expired by its old deadline across a failover");
    let deadline = Instant::now() + Duration::from_secs(15);
    while exists(&mut c, "nl").await {
        assert!(Instant::now() < deadline, "the new leader never expired lease {lease:x}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_kill = killed_at.elapsed();
    assert!(after_kill >= Duration::from_secs(3), "expired {after_kill:?} after the failover, TTL 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_leases_get_etcds_answers() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    for member in [leader, (leader + 1) % 3] {
        let mut raw = RawKeepAlive::open(&cluster.endpoint(member)).await;
        let r = raw.keep_alive(0xdead).await;
        assert_eq!((r.id, r.ttl), (0xdead, 0), "keep-alive of an unknown lease at member {member}");
        assert!(r.header.is_some_and(|h| h.revision > 0 && h.cluster_id != 0));
        // The stream stays usable.
        let mut c = cluster.client(member).await;
        let lease = c.lease_grant(30, None).await.unwrap().id();
        assert_eq!(raw.keep_alive(lease).await.ttl, 30);

        let t = c.lease_time_to_live(0xdead, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
        assert_eq!((t.id(), t.ttl(), t.granted_ttl()), (0xdead, -1, 0));
        assert!(t.keys().is_empty());
        match c.lease_keep_alive(0xdead).await {
            Err(Error::LeaseKeepAliveError(_)) => {}
            other => panic!("etcd-client sees TTL 0 as an unknown lease, got {other:?}"),
        }
        let err = c.lease_revoke(0xdead).await.unwrap_err();
        assert_eq!(grpc(err), (Code::NotFound, "etcdserver: requested lease not found".into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_keep_alive_harms_no_one_else() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let mut c = common::connect(cluster.endpoints()).await;
    let lease = c.lease_grant(2, None).await.unwrap().id();
    c.put("v/kept", "v", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let mut kept_client = common::connect(cluster.endpoints()).await;
    let keeping = tokio::spawn(async move {
        keep_alive_until(&mut kept_client, lease, Duration::from_millis(400), Instant::now() + Duration::from_secs(8))
            .await
    });

    // Clients on the leader and on a follower open keep-alive streams,
    // send, and vanish: some mid-conversation, some never reading a reply.
    for round in 0..10 {
        for member in [leader, (leader + 1) % 3] {
            let mut raw = RawKeepAlive::open(&cluster.endpoint(member)).await;
            raw.keep_alive(lease).await;
            for _ in 0..round {
                let _ = raw.tx.send(PbLeaseKeepAliveRequest { id: lease }).await;
            }
            drop(raw);
        }
    }
    assert!(exists(&mut c, "v/kept").await);
    c.put("v/after", "ok", None).await.unwrap();
    let renewed = keeping.await.expect("keep-alive task");
    assert!(renewed >= 10, "only {renewed} keep-alives answered in 8 s while others vanished");
    assert_eq!(cluster.value(leader, "v/after").await.as_deref(), Some(&b"ok"[..]));
}

#[test]
fn etcdctl_lease_commands_work() {
    if !etcdctl::installed() {
        return;
    }
    let cluster = Cluster::start(3);
    let ctl = Etcdctl::all(&cluster);
    ctl.wait_ready();

    // "lease 694d7a1b2c3d4e5f granted with TTL(2s)"
    let granted = ctl.ok(&["lease", "grant", "2"]);
    let id = granted
        .strip_prefix("lease ")
        .and_then(|rest| rest.strip_suffix(" granted with TTL(2s)\n"))
        .unwrap_or_else(|| panic!("grant output: {granted}"))
        .to_string();
    assert_eq!(ctl.ok(&["put", "--lease", &id, "ctl/a", "1"]), "OK\n");
    assert_eq!(ctl.ok(&["put", "--lease", &id, "ctl/b", "2"]), "OK\n");
    let ttl = ctl.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(
        ttl.starts_with(&format!("lease {id} granted with TTL(2s), remaining("))
            && ttl.contains("attached keys([ctl/a ctl/b])"),
        "{ttl}"
    );
    assert_eq!(ctl.ok(&["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(2)\n"));
    let list = ctl.ok(&["lease", "list"]);
    assert!(list.starts_with("found 1 leases\n") && list.contains(&format!("{id}\n")), "{list}");

    // keep-alive runs until killed: it holds the lease well past its TTL.
    let keep_alive = ctl.spawn(&["lease", "keep-alive", &id]);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(ctl.ok(&["get", "ctl/a"]), "ctl/a\n1\n", "the lease expired while etcdctl kept it alive");
    drop(keep_alive);

    assert_eq!(ctl.ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ctl.ok(&["get", "--prefix", "ctl/"]), "");
    assert_eq!(ctl.ok(&["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
    let (ok, out, err) = ctl.run(&["lease", "keep-alive", "--once", &id]);
    assert!(!ok && err.contains("etcdserver: requested lease not found"), "{out}{err}");
    // Without --once, etcdctl ends its keep-alive loop when told TTL 0.
    let mut child = ctl.spawn(&["lease", "keep-alive", &id]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.child.try_wait().expect("etcdctl status").is_none() {
        assert!(Instant::now() < deadline, "etcdctl kept a revoked lease alive");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_for(5, "the end of the keep-alive", |out| out.ends_with('\n'));
    assert_eq!(out, format!("lease {id} expired or revoked.\n"));
    let (ok, out, err) = ctl.run(&["lease", "revoke", &id]);
    assert!(!ok && err.contains("requested lease not found"), "{out}{err}");
    assert_eq!(ctl.ok(&["lease", "list"]), "found 0 leases\n");
}
