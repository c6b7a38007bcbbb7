//! HTTP beside gRPC, as etcd serves it: /health, /livez, /readyz,
//! /version and /metrics on the client port (plaintext and TLS, HTTP/1.1
//! and HTTP/2), and on a separate --listen-metrics-urls port. Health
//! follows the cluster's real state; metrics parse as Prometheus text and
//! move with load.

mod common;

use common::http::{get, parse_exposition, request, tls_client, Protocol, Reply, Scrape};
use common::{free_ports, Cluster};
use std::time::{Duration, Instant};

/// How a test reaches one member's HTTP endpoints.
struct Endpoint {
    port: u16,
    tls: Option<common::Tls>,
}

impl Endpoint {
    fn client(cluster: &Cluster, i: usize) -> Endpoint {
        Endpoint { port: cluster.members[i].client_port, tls: cluster.tls.clone().filter(|t| t.client) }
    }

    async fn get_as(&self, path: &str, protocol: Protocol) -> Result<Reply, String> {
        get(self.port, path, protocol, self.tls.as_ref().map(|t| tls_client(t, true, protocol))).await
    }

    async fn get(&self, path: &str) -> Result<Reply, String> {
        self.get_as(path, Protocol::Http1).await
    }

    async fn scrape(&self) -> Scrape {
        let reply = self.get("/metrics").await.expect("GET /metrics");
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(reply.header("content-type").starts_with("text/plain; version=0.0.4"), "{reply:?}");
        parse_exposition(&reply.body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"))
    }
}

/// Waits up to `secs` seconds for `check` to return `Some`.
async fn eventually<T>(secs: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const HEALTHY: &str = r#"{"health":"true","reason":""}"#;

/// Every member says it is healthy; with two of three stopped the one left
/// says it is not (503, etcd's JSON and a reason), and has no leader; once
/// they are back it is healthy again.
async fn health_follows_quorum(mut cluster: Cluster) {
    cluster.wait_ready().await;
    for i in 0..3 {
        let e = Endpoint::client(&cluster, i);
        let reply =
            eventually(20, "a healthy member", async || e.get("/health").await.ok().filter(|r| r.status == 200)).await;
        assert_eq!(reply.body, HEALTHY, "member {i}");
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
        assert_eq!(e.scrape().await.value("etcd_server_has_leader", &[]), Some(1.0));
    }

    cluster.kill(1);
    cluster.kill(2);
    let e = Endpoint::client(&cluster, 0);
    let reply = eventually(30, "/health false without quorum", async || {
        e.get("/health").await.ok().filter(|r| r.status != 200)
    })
    .await;
    assert_eq!(reply.status, 503, "{reply:?}");
    let body: serde_json::Value = serde_json::from_str(reply.body.trim_end()).expect("JSON");
    assert_eq!(body["health"], "false", "{reply:?}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason == "RAFT NO LEADER" || reason.starts_with("RANGE ERROR:"), "{reply:?}");
    eventually(10, "etcd_server_has_leader 0", async || {
        (e.scrape().await.value("etcd_server_has_leader", &[]) == Some(0.0)).then_some(())
    })
    .await;
    // The member itself is alive: a serializable check passes.
    let local = e.get("/health?serializable=true").await.expect("GET /health?serializable=true");
    assert_eq!((local.status, local.body.as_str()), (200, HEALTHY));
    assert_eq!(e.get("/livez").await.map(|r| r.status), Ok(200));
    let ready = e.get("/readyz").await.expect("GET /readyz");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.contains("[-]linearizable_read failed"), "{ready:?}");

    cluster.start_member(1);
    cluster.start_member(2);
    let reply =
        eventually(60, "/health true again", async || e.get("/health").await.ok().filter(|r| r.status == 200)).await;
    assert_eq!(reply.body, HEALTHY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_true_on_a_healthy_cluster_false_without_quorum_and_true_again_when_it_returns() {
    health_follows_quorum(Cluster::start(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_over_tls_follows_quorum_and_asks_for_a_client_certificate() {
    let cluster = Cluster::start_tls(3, true, true, &[]);
    cluster.wait_ready().await;
    let tls = cluster.tls.clone().expect("a TLS cluster");
    let port = cluster.members[0].client_port;
    // Both protocols inside TLS (ALPN h2 and http/1.1).
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let reply = get(port, "/health", protocol, Some(tls_client(&tls, true, protocol))).await;
        let reply = reply.unwrap_or_else(|e| panic!("{protocol:?} over TLS: {e}"));
        assert_eq!((reply.status, reply.body.as_str()), (200, HEALTHY), "{protocol:?}");
    }
    // --client-cert-auth: no certificate, no answer (as etcd, whose
    // listener requires one for every request).
    let refused = get(port, "/health", Protocol::Http1, Some(tls_client(&tls, false, Protocol::Http1))).await;
    assert!(refused.is_err(), "served without a client certificate: {refused:?}");
    // Plaintext on the TLS port gets nothing.
    assert!(get(port, "/health", Protocol::Http1, None).await.is_err());
    health_follows_quorum(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_load() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let e = Endpoint::client(&cluster, leader);
    let before = e.scrape().await;
    for name in [
        "etcd_server_has_leader",
        "etcd_server_is_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_server_id",
        "etcd_server_version",
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_disk_backend_commit_duration_seconds",
        "etcd_network_peer_round_trip_time_seconds",
        "etcd_network_peer_sent_bytes_total",
        "etcd_network_peer_received_bytes_total",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_debugging_mvcc_keys_total",
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "process_resident_memory_bytes",
        "synod_ballot_round",
        "synod_phase1_rounds_started_total",
        "synod_slots_in_flight",
        "synod_batch_size_commands",
        "synod_lease_reads_total",
        "synod_read_index_reads_total",
        "synod_snapshot_transfers_sent_total",
        "synod_snapshot_transfers_received_total",
        "synod_wal_fsync_records",
        "synod_apply_duration_seconds",
        "synod_proposal_duration_seconds",
    ] {
        assert!(before.types.contains_key(name), "{name} missing from /metrics");
    }
    assert_eq!(before.types["etcd_disk_wal_fsync_duration_seconds"], "histogram");
    // One member leads, and every member has a leader.
    eventually(20, "one leader among the members' gauges", async || {
        let (mut leaders, mut with_leader) = (0.0, 0.0);
        for i in 0..3 {
            let s = Endpoint::client(&cluster, i).scrape().await;
            leaders += s.value("etcd_server_is_leader", &[]).unwrap_or(0.0);
            with_leader += s.value("etcd_server_has_leader", &[]).unwrap_or(0.0);
        }
        (leaders == 1.0 && with_leader == 3.0).then_some(())
    })
    .await;
    assert_eq!(before.value("etcd_server_version", &[("server_version", "3.5.0")]), Some(1.0));

    let mut batched_before = 0.0;
    for i in 0..3 {
        batched_before += Endpoint::client(&cluster, i).scrape().await.total("synod_batch_size_commands_sum");
    }
    const PUTS: usize = 50;
    let mut c = cluster.client(leader).await;
    for i in 0..PUTS {
        c.put(format!("load/{i}"), "v", None).await.expect("put");
    }
    c.get("load/0", None).await.expect("get");
    let after = eventually(10, "the gauges to catch up", async || {
        let s = e.scrape().await;
        let committed = |s: &Scrape| s.value("etcd_server_proposals_committed_total", &[]).unwrap_or(0.0);
        (committed(&s) >= committed(&before) + PUTS as f64).then_some(s)
    })
    .await;
    let fsyncs = |s: &Scrape| s.value("etcd_disk_wal_fsync_duration_seconds_count", &[]).unwrap_or(0.0);
    assert!(fsyncs(&after) > fsyncs(&before), "the fsync histogram's count grows");
    let applies = |s: &Scrape| s.value("synod_apply_duration_seconds_count", &[]).unwrap_or(0.0);
    assert!(applies(&after) >= applies(&before) + PUTS as f64, "every put's apply is timed");
    let applied = |s: &Scrape| s.value("etcd_server_proposals_applied_total", &[]).unwrap_or(0.0);
    assert!(applied(&after) >= applied(&before) + PUTS as f64);
    let puts = |s: &Scrape, name: &str, code: Option<&str>| {
        let mut labels = vec![("grpc_method", "Put"), ("grpc_service", "etcdserverpb.KV"), ("grpc_type", "unary")];
        labels.extend(code.map(|c| ("grpc_code", c)));
        s.value(name, &labels).unwrap_or(0.0)
    };
    assert_eq!(
        puts(&after, "grpc_server_started_total", None) - puts(&before, "grpc_server_started_total", None),
        50.0
    );
    assert_eq!(
        puts(&after, "grpc_server_handled_total", Some("OK")) - puts(&before, "grpc_server_handled_total", Some("OK")),
        50.0
    );
    assert!(after.value("etcd_debugging_mvcc_keys_total", &[]).unwrap_or(0.0) >= PUTS as f64);
    assert!(
        after.value("etcd_mvcc_db_total_size_in_bytes", &[]) > before.value("etcd_mvcc_db_total_size_in_bytes", &[])
    );
    // Whoever led meanwhile (leadership may still move right after start)
    // put every command in some slot's batch.
    let mut batched = 0.0;
    for i in 0..3 {
        batched += Endpoint::client(&cluster, i).scrape().await.total("synod_batch_size_commands_sum");
    }
    assert!(batched >= batched_before + PUTS as f64, "{batched} commands batched, {batched_before} before");
    assert!(after.total("etcd_network_peer_sent_bytes_total") > before.total("etcd_network_peer_sent_bytes_total"));
    // Every member counts what it receives from its peers.
    for i in 0..3 {
        let s = Endpoint::client(&cluster, i).scrape().await;
        assert!(s.total("etcd_network_peer_received_bytes_total") > 0.0, "member {i}");
    }
    // An error is counted with its code: a range of an empty key.
    let bad = c.get("", None).await;
    assert!(bad.is_err());
    let s = e.scrape().await;
    let invalid = [("grpc_method", "Range"), ("grpc_code", "InvalidArgument")];
    assert_eq!(s.value("grpc_server_handled_total", &invalid), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_is_etcds_json_and_unknown_paths_are_not_found_over_either_http_version() {
    let cluster = Cluster::start(1);
    cluster.wait_ready().await;
    let e = Endpoint::client(&cluster, 0);
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let reply = e.get_as("/version", protocol).await.unwrap_or_else(|err| panic!("{protocol:?}: {err}"));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), "application/json");
        assert_eq!(reply.body, r#"{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}"#);
        let expected = if protocol == Protocol::Http1 { http::Version::HTTP_11 } else { http::Version::HTTP_2 };
        assert_eq!(reply.version, expected);
        let missing = e.get_as("/no/such/path", protocol).await.expect("GET an unknown path");
        assert_eq!((missing.status, missing.body.as_str()), (404, "404 page not found\n"));
    }
    // etcd's answers to other methods, and its CORS headers.
    let post = request(e.port, http::Method::POST, "/health", Protocol::Http1, None).await.expect("POST /health");
    assert_eq!((post.status, post.header("allow")), (405, "GET"));
    assert_eq!(post.header("access-control-allow-origin"), "*");
    let preflight = request(e.port, http::Method::OPTIONS, "/v3/kv/range", Protocol::Http1, None).await;
    assert_eq!(preflight.map(|r| r.status), Ok(200));
    // gRPC goes on beside HTTP.
    let mut c = cluster.client(0).await;
    c.put("k", "v", None).await.expect("gRPC on the same port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_url_serves_metrics_and_health_on_a_port_of_its_own() {
    let [metrics_port] = free_ports(1)[..] else { unreachable!() };
    let url = format!("http://127.0.0.1:{metrics_port}");
    let cluster = Cluster::start_with(1, &["--listen-metrics-urls", &url]);
    cluster.wait_ready().await;
    let e = Endpoint { port: metrics_port, tls: None };
    let health = eventually(20, "health on the metrics port", async || e.get("/health").await.ok()).await;
    assert_eq!((health.status, health.body.as_str()), (200, HEALTHY));
    assert_eq!(e.scrape().await.value("etcd_server_has_leader", &[]), Some(1.0));
    assert_eq!(e.get("/readyz").await.map(|r| r.status), Ok(200));
    // Only metrics and health there (as etcd), and no gRPC.
    assert_eq!(e.get("/version").await.map(|r| r.status), Ok(404));
    let mut grpc = common::connect(vec![url]).await;
    assert!(grpc.get("k", None).await.is_err(), "gRPC served on the metrics port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_metrics_url_serves_inside_tls_with_the_client_certificate_rules() {
    let [metrics_port] = free_ports(1)[..] else { unreachable!() };
    let url = format!("https://127.0.0.1:{metrics_port}");
    let cluster = Cluster::start_tls(1, true, false, &["--listen-metrics-urls", &url]);
    cluster.wait_ready().await;
    let tls = cluster.tls.clone().expect("a TLS cluster");
    let e = Endpoint { port: metrics_port, tls: Some(tls.clone()) };
    let health = eventually(20, "health on the metrics port", async || e.get("/health").await.ok()).await;
    assert_eq!((health.status, health.body.as_str()), (200, HEALTHY));
    assert!(e.scrape().await.types.contains_key("etcd_server_has_leader"));
    let bare = get(metrics_port, "/metrics", Protocol::Http1, Some(tls_client(&tls, false, Protocol::Http1))).await;
    assert!(bare.is_err(), "metrics served without a client certificate: {bare:?}");
}

#[test]
fn the_exposition_checker_refuses_what_a_scraper_would() {
    let good = "# HELP x_total A counter.\n# TYPE x_total counter\nx_total{a=\"q\\\"uote\",b=\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 2.5\nh_count 2\n";
    let s = parse_exposition(good).expect("valid text");
    assert_eq!(s.value("x_total", &[("a", "q\"uote")]), Some(3.0));
    for bad in [
        "x 1\n",                                                                          // no TYPE
        "# TYPE x gauge\nx{a=b} 1\n",                                                     // unquoted
        "# TYPE x gauge\nx{a=\"b\" 1\n",                                                  // unterminated
        "# TYPE x gauge\nx one\n",                                                        // not a number
        "# TYPE 1x gauge\n",                                                              // bad name
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",                       // +Inf is not the count
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}
