//! Configuration as etcd's: a member started only from `ETCD_*` variables,
//! or only from an etcd config file, serves etcd's clients as one started
//! with flags does (TLS and client certificates included: once,
//! `ETCD_CLIENT_CERT_AUTH=true` started a plaintext server); what Synod
//! does not serve is refused before anything starts; the leader compacts
//! on its own under `--auto-compaction-retention`; `--max-txn-ops` and the
//! log flags do what etcd's do.

mod common;

use common::etcdctl::{installed, Etcdctl};
use common::{connect, connect_tls, synod_command, Cluster, Via};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use std::time::{Duration, Instant};

/// Waits until `check` holds, for up to `secs` seconds.
async fn eventually(secs: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A three-member cluster with client TLS and client certificates
/// required, every member given its flags `via` variables or a file.
async fn tls_cluster_via(via: Via) -> Cluster {
    let mut cluster = Cluster::prepare_tls(3, true, false, false, &[]);
    for i in 0..3 {
        cluster.set_via(i, via);
        cluster.start_member(i);
    }
    cluster.wait_ready().await;
    cluster
}

/// What a cluster that requires client certificates must do: serve a
/// certified client (etcd-client and etcdctl), refuse one without a
/// certificate, and refuse plaintext.
async fn serves_certified_clients_only(cluster: &Cluster) {
    let mut c = cluster.client(0).await;
    c.put("configured", "yes", None).await.expect("put over TLS with a client certificate");
    for i in 0..3 {
        assert_eq!(cluster.value(i, "configured").await.as_deref(), Some(&b"yes"[..]), "member {i}");
    }
    let tls = cluster.tls.clone().expect("a TLS cluster");
    let mut anonymous = connect_tls(vec![cluster.endpoint(1)], tls.client_options(false)).await;
    assert!(anonymous.get("configured", None).await.is_err(), "a client without a certificate was served");
    let plain = cluster.endpoint(2).replace("https://", "http://");
    let mut plain = connect(vec![plain]).await;
    assert!(plain.get("configured", None).await.is_err(), "plaintext was served on a TLS port");
    if installed() {
        let out = Etcdctl::all(cluster).ok(&["get", "configured", "--print-value-only"]);
        assert_eq!(out.trim(), "yes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_started_only_from_etcd_variables_serves_etcd_clients() {
    let cluster = tls_cluster_via(Via::Env).await;
    serves_certified_clients_only(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_started_from_etcd_config_files_serves_etcd_clients() {
    let cluster = tls_cluster_via(Via::ConfigFile).await;
    let file = std::fs::read_to_string(cluster.dir().join("m1.yaml")).unwrap();
    assert!(file.contains("client-transport-security:\n  cert-file:"), "etcd's TLS section is used: {file}");
    serves_certified_clients_only(&cluster).await;
}

/// Runs `synod` with `args` and `env` (none of the test's `ETCD_*`) and
/// returns whether it succeeded and what it printed.
fn synod(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = synod_command().args(args).envs(env.iter().copied()).output().expect("run synod");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Flags, variables, and what the refusal must say.
type Refusal<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn what_synod_does_not_serve_is_refused_by_name_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_key = dir.path().join("unknown.yaml");
    std::fs::write(&unknown_key, "name: a\nexperimental-enable-lease-checkpoint: true\n").unwrap();
    let data = dir.path().join("data");
    let data_flag = format!("--data-dir={}", data.display());
    let table: &[Refusal] = &[
        (&[], &[("ETCD_NO_SUCH_FLAG", "1")], "unrecognized environment variable ETCD_NO_SUCH_FLAG"),
        (&[], &[("ETCD_ENABLE_PPROF", "true")], "ETCD_ENABLE_PPROF sets etcd's --enable-pprof"),
        (&["--name", "a"], &[("ETCD_NAME", "b")], "ETCD_NAME is shadowed by corresponding command-line flag --name"),
        (&["--wal-dir", "/tmp/wal"], &[], "--wal-dir is etcd's flag, which Synod does not serve"),
        (&["--unsafe-no-fsync"], &[], "--unsafe-no-fsync is refused"),
        (&[], &[("ETCD_STRICT_RECONFIG_CHECK", "false")], "--strict-reconfig-check=false is refused"),
        (&[], &[("ETCD_HEARTBEAT_INTERVAL", "fast")], "ETCD_HEARTBEAT_INTERVAL=\"fast\""),
        (&[], &[("ETCD_LISTEN_CLIENT_URLS", "localhost:2379")], "set by ETCD_LISTEN_CLIENT_URLS"),
        (&["--config-file", unknown_key.to_str().unwrap()], &[], "experimental-enable-lease-checkpoint is etcd's"),
        (&["--config-file", unknown_key.to_str().unwrap(), "--name", "b"], &[], "--name is also set"),
        (&["--grpc-keepalive-interval", "1h1d"], &[], "unknown unit \"d\""),
        (&["--auto-compaction-retention", "1x"], &[], "--auto-compaction-retention \"1x\""),
        (&["--logger", "capnslog", "--log-outputs", "stderr,stdout"], &[], "only 1 value in --log-outputs"),
        (&["demo"], &[("ETCD_NAME", "a")], "`synod demo` takes no ETCD_* variables"),
    ];
    for &(args, env, want) in table {
        let args: Vec<&str> = if args.first() == Some(&"demo") || args.contains(&"--config-file") {
            args.to_vec()
        } else {
            std::iter::once(data_flag.as_str()).chain(args.iter().copied()).collect()
        };
        let (ok, out) = synod(&args, env);
        assert!(!ok, "{args:?} {env:?} was accepted: {out}");
        assert!(out.contains(want), "{args:?} {env:?}: {out:?} should say {want:?}");
    }
    assert!(!data.exists(), "a refused member created its data directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_compacts_history_on_its_own_under_auto_compaction() {
    let cluster = Cluster::start_with(3, &["--auto-compaction-retention", "1s"]);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    let first = c.put("history", "0", None).await.expect("put").header().expect("header").revision();
    for v in 1..5 {
        c.put("history", v.to_string(), None).await.expect("put");
    }
    // Nothing compacts the store but the compactor: once a retention has
    // passed, the revision of the first put is gone on every member.
    for i in 0..3 {
        let mut m = cluster.client(i).await;
        eventually(20, &format!("auto-compaction on member {i}"), async || {
            let old = GetOptions::new().with_revision(first).with_serializable();
            match m.get("history", Some(old)).await {
                Err(e) => e.to_string().contains("required revision has been compacted"),
                Ok(_) => false,
            }
        })
        .await;
    }
    assert_eq!(cluster.value(1, "history").await.as_deref(), Some(&b"4"[..]), "the latest value is kept");
    // (That only the leader proposes them is the compactor's unit tests'
    // to show: here leadership may move under a loaded machine.)
    assert!((0..3).any(|i| cluster.log(i).contains("auto-compaction done")), "a compaction is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_txn_ops_is_each_members_limit_as_in_etcd() {
    let cluster = Cluster::start_with(1, &["--max-txn-ops", "200"]);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    let txn = |ops: usize| {
        let puts: Vec<TxnOp> = (0..ops).map(|k| TxnOp::put(format!("op/{k}"), "v", None)).collect();
        Txn::new().when([Compare::version("op/0", CompareOp::Equal, 0)]).and_then(puts)
    };
    c.txn(txn(200)).await.expect("200 ops, above etcd's default 128, within --max-txn-ops");
    let err = c.txn(txn(201)).await.expect_err("201 ops").to_string();
    assert!(err.contains("etcdserver: too many operations in txn request"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zap_logs_are_json_lines_with_etcds_keys_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("synod.log");
    let outputs = format!("stderr,{}", file.display());
    let cluster = Cluster::start_with(1, &["--logger", "zap", "--log-outputs", &outputs]);
    cluster.wait_ready().await;
    eventually(20, "the member logs that it started", async || cluster.log(0).contains("member started")).await;
    let written = std::fs::read_to_string(&file).unwrap();
    for (name, text) in [("the file", written), ("stderr", cluster.log(0))] {
        let started = text.lines().find(|l| l.contains("member started")).unwrap_or_else(|| panic!("{name}: {text}"));
        assert!(
            started.starts_with("{\"level\":\"info\",\"ts\":\"") && started.contains("\"msg\":\"member started\""),
            "{name}: {started}"
        );
        assert!(started.contains("\"name\":\"m1\""), "{name}: fields are keys: {started}");
    }
}
