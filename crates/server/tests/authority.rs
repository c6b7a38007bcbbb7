//! Clients that send a URL as the HTTP/2 `:authority` (issue 14): etcd's Go
//! client 3.4 for calls to one endpoint (`http://127.0.0.1:2379`), 3.5.0
//! for every call (`#initially=[https://...]`). etcd ignores it; synod
//! makes it bare before h2 sees it, over plaintext and inside TLS.

mod common;

use common::etcdctl::{self, Etcdctl};
use common::Cluster;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sends Maintenance.Status over a new HTTP/2 connection, frame by frame as
/// grpc-go does, with `authority` as the `:authority`; returns the
/// response's gRPC message, or what the server did instead.
async fn status_with_authority(
    mut io: impl AsyncRead + AsyncWrite + Unpin,
    authority: &str,
) -> Result<Vec<u8>, String> {
    let headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/etcdserverpb.Maintenance/Status"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    let block = loona_hpack::Encoder::new().encode(headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    out.extend(frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0x0, 0x1, 1, &[0; 5])); // DATA, END_STREAM: an empty StatusRequest
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut message = Vec::new();
    let read = async {
        loop {
            let mut h = [0u8; 9];
            io.read_exact(&mut h).await.map_err(|e| format!("connection closed: {e}"))?;
            let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let mut payload = vec![0; len];
            io.read_exact(&mut payload).await.map_err(|e| e.to_string())?;
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
            match (h[3], stream) {
                (0x4, 0) if h[4] & 0x1 == 0 => {
                    io.write_all(&frame(0x4, 0x1, 0, &[])).await.map_err(|e| e.to_string())?
                }
                (0x0, 1) => message.extend(payload),
                (0x1, 1) if h[4] & 0x1 != 0 => return Ok(()), // trailers
                (0x3, 1) => return Err(format!("RST_STREAM, error code {payload:?}")),
                (0x7, _) => return Err(format!("GOAWAY {payload:?}")),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.map_err(|_| "no answer in 20 s".to_string())??;
    Ok(message)
}

/// What clientv3 sends as `:authority` for a member at `url`.
fn go_client_authorities(url: &str) -> Vec<String> {
    let bare = url.split_once("://").unwrap().1.to_string();
    vec![url.to_string(), format!("#initially=[{url};{url}]"), bare]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_authorities_are_served_over_plaintext() {
    let cluster = Cluster::start(1);
    cluster.wait_ready().await;
    for authority in go_client_authorities(&cluster.endpoint(0)) {
        let tcp = TcpStream::connect(("127.0.0.1", cluster.members[0].client_port)).await.unwrap();
        let message = status_with_authority(tcp, &authority).await;
        let message = message.unwrap_or_else(|e| panic!("Status with :authority {authority:?}: {e}"));
        assert!(message.windows(5).any(|w| w == b"3.5.0"), "a StatusResponse for {authority:?}: {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_authorities_are_served_inside_tls() {
    let cluster = Cluster::start_tls(1, true, false, &[]);
    cluster.wait_ready().await;
    let certs = &cluster.tls.as_ref().unwrap().certs;
    let connector = tls_connector(certs);
    for authority in go_client_authorities(&cluster.endpoint(0)) {
        let tcp = TcpStream::connect(("127.0.0.1", cluster.members[0].client_port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let message = status_with_authority(tls, &authority).await;
        let message = message.unwrap_or_else(|e| panic!("Status with :authority {authority:?}: {e}"));
        assert!(message.windows(5).any(|w| w == b"3.5.0"), "a StatusResponse for {authority:?}: {message:?}");
    }
}

/// A TLS client with the test CA's client certificate, offering h2.
fn tls_connector(certs: &Path) -> tokio_rustls::TlsConnector {
    let info = synod_server::tls::TlsInfo {
        cert_file: Some(certs.join("client.pem")),
        key_file: Some(certs.join("client-key.pem")),
        trusted_ca_file: Some(certs.join("ca.pem")),
        client_cert_auth: true,
        ..Default::default()
    };
    let provider = synod_server::tls::provider(synod_server::tls::cipher_suites("").unwrap());
    let loaded = info.load("", certs, &[], provider).expect("load the client certificate");
    let mut config = loaded.peer_client_config().expect("client TLS");
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// The member id (hex) and leadership of each line of `endpoint status`
/// (`URL, id, version, size, is leader, ...`).
fn status_lines(status: &str) -> Vec<(String, String, bool)> {
    status
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            assert!(f.len() > 4, "endpoint status line: {l}");
            (f[0].to_string(), f[1].to_string(), f[4] == "true")
        })
        .collect()
}

/// etcdctl 3.4's calls to one endpoint at a time (`endpoint status`,
/// `endpoint hashkv`, `defrag`, `move-leader`) work with URL endpoints as
/// they do with host:port.
#[test]
fn etcdctl_per_endpoint_calls_work_with_url_endpoints() {
    if !etcdctl::installed() {
        return;
    }
    let cluster = Cluster::start(3);
    let ctl = Etcdctl::urls(&cluster, &[0, 1, 2]);
    assert!(ctl.endpoints.starts_with("http://127.0.0.1:"), "{}", ctl.endpoints);
    ctl.wait_ready();

    let status = status_lines(&ctl.ok(&["endpoint", "status"]));
    let urls: Vec<String> = status.iter().map(|(url, _, _)| url.clone()).collect();
    assert_eq!(urls, cluster.endpoints());
    assert_eq!(status.iter().filter(|(_, _, leader)| *leader).count(), 1, "exactly one leader: {status:?}");

    let hashes = ctl.ok(&["endpoint", "hashkv"]);
    assert_eq!(hashes.lines().count(), 3, "{hashes}");
    let (ok, out, err) = ctl.run(&["defrag"]);
    assert!(ok, "defrag: {out}{err}");
    assert_eq!(out.matches("Finished defragmenting etcd member[http://127.0.0.1:").count(), 3, "{out}");

    // move-leader finds the leader with a Status call to each endpoint.
    let (_, follower, _) = status.iter().find(|(_, _, leader)| !leader).expect("a follower");
    let moved = ctl.ok(&["move-leader", follower]);
    assert!(moved.contains(&format!("to {follower}")), "{moved}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = status_lines(&ctl.ok(&["endpoint", "status"]));
        if now.iter().any(|(_, id, leader)| id == follower && *leader) {
            break;
        }
        assert!(Instant::now() < deadline, "{follower} did not become leader: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Over https:// URLs etcdctl 3.4 names the host of its TLS server name
/// instead; the same calls work there too.
#[test]
fn etcdctl_per_endpoint_calls_work_with_https_url_endpoints() {
    if !etcdctl::installed() {
        return;
    }
    let cluster = Cluster::start_tls(1, true, false, &[]);
    let ctl = Etcdctl::urls(&cluster, &[0]);
    assert!(ctl.endpoints.starts_with("https://127.0.0.1:"), "{}", ctl.endpoints);
    ctl.wait_ready();
    let status = ctl.ok(&["endpoint", "status"]);
    assert!(status.starts_with(&format!("{}, ", cluster.endpoint(0))) && status.contains(", true, "), "{status}");
    assert_eq!(ctl.ok(&["endpoint", "hashkv"]).lines().count(), 1);
    let (ok, out, err) = ctl.run(&["defrag"]);
    assert!(ok && out.contains("Finished defragmenting etcd member[https://"), "defrag: {out}{err}");
}
