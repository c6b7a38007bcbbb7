//! TLS with etcd's flags: clients and peers prove themselves with
//! certificates from the cluster's CA, and nothing is answered to anyone
//! else: not to a client without a certificate, not to a peer with a
//! certificate from another CA, not to plaintext on a TLS port.

mod common;

use common::etcdctl::{installed, Etcdctl};
use common::{connect, connect_tls, free_ports, make_certs, Cluster};
use etcd_client::{Certificate, Identity, TlsOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use synod_runtime::PeerTls;
use synod_server::tls::TlsInfo;

/// The peer TLS of a process holding member `name`'s certificate from the
/// CA in `certs`, as a member would build it.
fn peer_tls(certs: &Path, name: &str) -> PeerTls {
    let info = TlsInfo {
        cert_file: Some(certs.join(format!("{name}.pem"))),
        key_file: Some(certs.join(format!("{name}-key.pem"))),
        trusted_ca_file: Some(certs.join("ca.pem")),
        client_cert_auth: true,
        ..TlsInfo::default()
    };
    let provider = synod_server::tls::provider(synod_server::tls::cipher_suites("").unwrap());
    info.load("peer-", certs, &[], provider).expect("load test certificates").peer_tls().expect("peer TLS")
}

/// A directory request (what a joining node asks any member's peer port)
/// to `port`: the cluster's membership, or why there was none.
async fn directory(port: u16, tls: Option<&PeerTls>) -> Result<synod_runtime::ClusterInfo, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    synod_runtime::join::ask(addr, tls).await.map_err(|e| e.to_string())
}

/// Waits until `check` holds, for up to `secs` seconds.
async fn eventually(secs: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_serves_certified_clients_and_refuses_everyone_else() {
    let cluster = Cluster::start_tls(3, true, true, &[]);
    cluster.wait_ready().await;
    let tls = cluster.tls.clone().expect("TLS cluster");

    // The Rust client, with the client certificate, at every member.
    let mut c = cluster.client(0).await;
    c.put("secure", "yes", None).await.expect("put over TLS");
    for i in 0..3 {
        assert_eq!(cluster.value(i, "secure").await.as_deref(), Some(&b"yes"[..]));
    }

    // A follower forwards lease keep-alives to the leader's https:// client
    // URL, with its own certificate.
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut f = cluster.client(follower).await;
    let lease = f.lease_grant(30, None).await.expect("lease grant").id();
    let (mut keeper, mut responses) = f.lease_keep_alive(lease).await.expect("keep-alive stream");
    keeper.keep_alive().await.expect("send keep-alive");
    let answer = tokio::time::timeout(Duration::from_secs(20), responses.message()).await;
    let ttl = answer.expect("keep-alive answered in time").expect("keep-alive").expect("a response").ttl();
    assert!(ttl > 0, "keep-alive through a follower: ttl {ttl}");

    // A client with no certificate, or one from another CA, is refused.
    let no_cert = connect_tls(vec![cluster.endpoint(0)], tls.client_options(false)).await;
    let mut no_cert = no_cert;
    assert!(no_cert.get("secure", None).await.is_err(), "a client without a certificate was served");
    let foreign = tempfile::tempdir().unwrap();
    make_certs(foreign.path(), "another CA");
    let read = |p: &Path| std::fs::read(p).unwrap();
    let foreign_opts =
        TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.certs.join("ca.pem")))).identity(
            Identity::from_pem(read(&foreign.path().join("client.pem")), read(&foreign.path().join("client-key.pem"))),
        );
    let mut intruder = connect_tls(vec![cluster.endpoint(0)], foreign_opts).await;
    assert!(intruder.get("secure", None).await.is_err(), "a client with another CA's certificate was served");
    // Plaintext to the TLS client port.
    let mut plain = connect(vec![format!("http://127.0.0.1:{}", cluster.members[0].client_port)]).await;
    assert!(plain.get("secure", None).await.is_err(), "plaintext was served on an https:// client URL");

    // The peer port answers a member's certificate, and no one else.
    let member = peer_tls(&tls.certs, "m4");
    let info = directory(cluster.members[1].peer_port, Some(&member)).await.expect("directory for a member");
    assert_eq!(info.membership.voters.len(), 3);
    let stranger = peer_tls(foreign.path(), "m1");
    let refused = directory(cluster.members[1].peer_port, Some(&stranger)).await;
    assert!(refused.is_err(), "a peer with another CA's certificate got the membership: {refused:?}");
    let refused = directory(cluster.members[1].peer_port, None).await;
    assert!(refused.is_err(), "plaintext on the TLS peer port got the membership: {refused:?}");
    // (The member writes the line a moment after the handshake fails.)
    eventually(30, "the refusals in member 2's log", async || cluster.log(1).contains("TLS handshake failed")).await;

    // etcdctl, with --cacert/--cert/--key.
    if installed() {
        let ctl = Etcdctl::all(&cluster);
        ctl.ok(&["put", "from-etcdctl", "1"]);
        assert!(ctl.ok(&["get", "secure"]).contains("yes"));
        let members = ctl.ok(&["member", "list"]);
        assert_eq!(members.matches("https://127.0.0.1:").count(), 6, "member list: {members}");
        let at_follower = Etcdctl::of(&cluster, &[follower]);
        let granted = at_follower.ok(&["lease", "grant", "30"]);
        let id = granted.split_whitespace().nth(1).expect("lease id");
        assert!(at_follower.ok(&["lease", "keep-alive", "--once", id]).contains("keepalived"));
        // Without a client certificate: refused.
        let mut bare = Etcdctl::of(&cluster, &[0]);
        bare.flags.retain(|f| f.starts_with("--cacert"));
        let (ok, out, err) = bare.run(&["--dial-timeout=3s", "--command-timeout=5s", "get", "secure"]);
        assert!(!ok, "etcdctl without a client certificate was served: {out}{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_with_another_cas_peer_certificate_never_gets_data() {
    let mut cluster = Cluster::prepare_tls(3, false, true, false, &[]);
    // m3's peer certificate comes from another CA (its trusted CA too).
    let foreign = cluster.dir().join("foreign");
    make_certs(&foreign, "another CA");
    let certs = cluster.tls.clone().unwrap().certs;
    for f in ["m3.pem", "m3-key.pem", "ca.pem"] {
        let to = if f == "ca.pem" { "foreign-ca.pem" } else { f };
        std::fs::copy(foreign.join(f), certs.join(to)).unwrap();
    }
    cluster.set_flag(2, "--peer-trusted-ca-file", &certs.join("foreign-ca.pem").to_string_lossy());
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_member_ready(0).await;
    cluster.wait_member_ready(1).await;
    let mut c = cluster.client(0).await;
    c.put("members-only", "x", None).await.expect("put with two members");
    eventually(30, "m2 applying the write", async || cluster.local_count(1, "members-only").await == 1).await;
    // m3 runs, but no member answers it and it answers no member.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(cluster.exit_status(2).is_none(), "m3 exited");
    assert!(cluster.local_count(2, "members-only").await <= 0, "m3 got data from the cluster");
    eventually(30, "the refusal of m3 in a member's log", async || {
        (0..2).any(|i| cluster.log(i).contains("TLS handshake failed"))
    })
    .await;
}

/// As etcd's peer listener: a certificate from the cluster's CA is not
/// enough, it must also name the address the peer connects from, and the
/// member a peer dials must hold a certificate naming the address dialled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_certificate_for_another_address_is_refused() {
    let mut cluster = Cluster::prepare_tls(3, false, true, false, &[]);
    let certs = cluster.tls.clone().unwrap().certs;
    // The cluster's CA again, this time keeping it to issue one more.
    let ca = synod_server::tls::Authority::new("synod test CA").unwrap();
    ca.write_all(&certs, &["m1", "m2", "m3", "m4", "client"], &["127.0.0.1", "localhost"]).unwrap();
    let away = tempfile::tempdir().unwrap();
    ca.write_all(away.path(), &["m4"], &["10.9.9.9", "elsewhere.invalid"]).unwrap();
    for i in 0..3 {
        cluster.start_member(i);
    }
    cluster.wait_ready().await;

    let port = cluster.members[0].peer_port;
    let here = peer_tls(&certs, "m4");
    let info = directory(port, Some(&here)).await.expect("a certificate for 127.0.0.1 is served");
    assert_eq!(info.membership.voters.len(), 3);
    let moved = peer_tls(away.path(), "m4");
    let refused = directory(port, Some(&moved)).await;
    assert!(refused.is_err(), "a certificate for 10.9.9.9 used from 127.0.0.1 got the membership: {refused:?}");
    eventually(30, "the refusal in member 1's log", async || cluster.log(0).contains("10.9.9.9")).await;

    // etcd 3.5's --experimental-peer-skip-client-san-verification lets it in.
    cluster.kill(0);
    cluster.add_flag(0, "--experimental-peer-skip-client-san-verification");
    cluster.start_member(0);
    cluster.wait_member_ready(0).await;
    let info = directory(port, Some(&moved)).await.expect("served once the address check is skipped");
    assert_eq!(info.membership.voters.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_serves_http_and_https_client_urls_at_once() {
    let mut cluster = Cluster::prepare_tls(1, true, false, false, &[]);
    let [plain_port, tls_port] = free_ports(2)[..] else { unreachable!() };
    let urls = format!("http://127.0.0.1:{plain_port},https://127.0.0.1:{tls_port}");
    cluster.set_flag(0, "--listen-client-urls", &urls);
    cluster.set_flag(0, "--advertise-client-urls", &urls);
    cluster.members[0].client_port = tls_port;
    cluster.start_member(0);
    cluster.wait_ready().await;
    let tls = cluster.tls.clone().unwrap();

    let mut secure = cluster.client(0).await;
    secure.put("k", "over-tls", None).await.expect("put over https");
    let mut plain = connect(vec![format!("http://127.0.0.1:{plain_port}")]).await;
    let got = plain.get("k", None).await.expect("get over http");
    assert_eq!(got.kvs()[0].value(), b"over-tls");
    plain.put("k", "plain", None).await.expect("put over http");

    // Each URL speaks only its own scheme.
    let mut wrong = connect(vec![format!("http://127.0.0.1:{tls_port}")]).await;
    assert!(wrong.get("k", None).await.is_err(), "plaintext served on the https:// URL");
    let mut wrong = connect_tls(vec![format!("https://127.0.0.1:{plain_port}")], tls.client_options(true)).await;
    assert!(wrong.get("k", None).await.is_err(), "TLS served on the http:// URL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_encrypts_clients_and_peers_with_self_signed_certificates() {
    if !installed() {
        return;
    }
    let mut cluster = Cluster::prepare_tls(3, true, true, true, &[]);
    for i in 0..3 {
        cluster.start_member(i);
    }
    let ctl = Etcdctl::all(&cluster);
    ctl.wait_ready();
    ctl.ok(&["put", "auto", "tls"]);
    for i in 0..3 {
        let out = Etcdctl::of(&cluster, &[i]).ok(&["get", "auto"]);
        assert!(out.contains("tls"), "member {i}: {out}");
    }
    let data = cluster.flag(0, "--data-dir");
    for side in ["client", "peer"] {
        let cert = Path::new(&data).join("fixtures").join(side).join("cert.pem");
        assert!(cert.exists(), "{} missing", cert.display());
    }
    // Plaintext to an auto-TLS peer port gets nothing.
    assert!(directory(cluster.members[0].peer_port, None).await.is_err());
}

/// Under `--client-cert-auth` a client's certificate names its user. A
/// follower forwards what only the leader serves (membership changes, lease
/// keep-alives and TTLs) with a token it obtains for that user, so the
/// leader checks the client's rights, not those of the follower's own
/// certificate (which names no user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_a_certificate_users_requests_with_that_users_rights() {
    let cluster = Cluster::start_tls(3, true, true, &[]);
    cluster.wait_ready().await;
    let mut admin = cluster.client(0).await;
    admin.user_add("root", "rootpw", None).await.expect("add root");
    admin.user_grant_role("root", "root").await.expect("root role");
    // The test certificates' client is "client": a user without a password.
    let no_password = etcd_client::UserAddOptions::new().with_no_pwd();
    admin.user_add("client", "", Some(no_password)).await.expect("add the certificate's user");
    admin.user_grant_role("client", "root").await.expect("grant it root");
    admin.auth_enable().await.expect("auth enable");

    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut f = cluster.client(follower).await;
    let members = f.member_list().await.expect("member list").members().to_vec();
    let m = members.iter().find(|m| m.name() == "m3").expect("m3 listed");
    f.member_update(m.id(), m.peer_urls().to_vec())
        .await
        .expect("member update through a follower, as root by certificate");

    let lease = f.lease_grant(30, None).await.expect("lease grant").id();
    f.put("held", "by-lease", Some(etcd_client::PutOptions::new().with_lease(lease))).await.expect("put with lease");
    let (mut keeper, mut responses) = f.lease_keep_alive(lease).await.expect("keep-alive stream");
    keeper.keep_alive().await.expect("send keep-alive");
    let answer = tokio::time::timeout(Duration::from_secs(20), responses.message()).await;
    let ttl = answer.expect("keep-alive answered in time").expect("keep-alive").expect("a response").ttl();
    assert!(ttl > 0, "keep-alive through a follower: ttl {ttl}");
    let ttl = f.lease_time_to_live(lease, None).await.expect("TTL through a follower").ttl();
    assert!(ttl > 0, "TTL through a follower: {ttl}");

    // Without the root role, the same certificate may not change members.
    admin.user_revoke_role("client", "root").await.expect("revoke root");
    let mut f = cluster.client(follower).await;
    let denied = f.member_update(m.id(), m.peer_urls().to_vec()).await;
    assert!(denied.is_err(), "a user without the root role changed a member: {denied:?}");
}
