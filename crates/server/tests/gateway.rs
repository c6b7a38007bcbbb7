//! etcd's HTTP/JSON gateway on real synod processes, for what the
//! differential test against etcd (crates/loadgen/tests/differential_gateway.rs)
//! cannot show: a TLS client certificate names the caller of a gateway
//! request as it does for gRPC, a token can come as the Authorization header
//! or as `Grpc-Metadata-Token`, and a stream answers while its request body
//! is still open (etcd 3.4's HTTP/1.1 server answers only once it has ended).

mod common;

use common::http::{tls_client, Protocol};
use common::Cluster;
use etcd_client::Permission;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Sends a POST on a fresh HTTP/1.1 connection (inside TLS if `tls`) and
/// returns the response with its body unread.
async fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
    tls: Option<rustls::ClientConfig>,
) -> hyper::Response<Incoming> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let mut request = hyper::Request::post(format!("http://localhost{path}")).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body).expect("a request");
    match tls {
        None => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
            tokio::spawn(conn);
            sender.send_request(request).await.expect("send")
        }
        Some(cfg) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
            let name = ServerName::try_from("localhost").expect("a server name");
            let stream = connector.connect(name, tcp).await.expect("TLS handshake");
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
            tokio::spawn(conn);
            sender.send_request(request).await.expect("send")
        }
    }
}

/// A unary call: its status and JSON body.
async fn call(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    json: &str,
    tls: Option<rustls::ClientConfig>,
) -> (u16, Value) {
    let response = post(port, path, headers, Full::new(Bytes::from(json.to_string())).boxed(), tls).await;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("a body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_names_the_caller_of_a_gateway_request_as_it_does_for_grpc() {
    let cluster = Cluster::start_tls(1, true, false, &[]);
    cluster.wait_ready().await;
    let certs = cluster.tls.clone().expect("a TLS cluster");
    // The test client certificate's common name is "client": with
    // --client-cert-auth and no token, that is the user.
    let mut c = common::connect_tls(cluster.endpoints(), certs.client_options(true)).await;
    c.user_add("root", "rootpw", None).await.expect("add root");
    c.user_grant_role("root", "root").await.expect("grant root");
    c.role_add("rw").await.expect("add role");
    c.role_grant_permission("rw", Permission::read_write("a/").with_prefix()).await.expect("grant");
    c.user_add("client", "clientpw", None).await.expect("add client");
    c.user_grant_role("client", "rw").await.expect("grant rw");
    c.auth_enable().await.expect("enable");

    let port = cluster.members[0].client_port;
    let tls = || Some(tls_client(&certs, true, Protocol::Http1));
    // a/1 is the certificate user's to write, z is not.
    let (status, body) = call(port, "/v3/kv/put", &[], r#"{"key":"YS8x","value":"MQ=="}"#, tls()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(port, "/v3/kv/put", &[], r#"{"key":"eg==","value":"MQ=="}"#, tls()).await;
    assert_eq!((status, &body["error"]), (403, &Value::from("etcdserver: permission denied")), "{body}");
    // A token outranks the certificate, as on gRPC: root may read z.
    let (status, body) =
        call(port, "/v3/auth/authenticate", &[], r#"{"name":"root","password":"rootpw"}"#, tls()).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("a token").to_string();
    for header in ["authorization", "grpc-metadata-token"] {
        let (status, body) = call(port, "/v3/auth/user/list", &[(header, &token)], "{}", tls()).await;
        assert_eq!(status, 200, "{header}: {body}");
        assert_eq!(body["users"], serde_json::json!(["client", "root"]), "{header}");
    }
    let (status, body) = call(port, "/v3/auth/user/list", &[("authorization", "forged.1")], "{}", tls()).await;
    assert_eq!((status, &body["code"]), (401, &Value::from(16)), "{body}");
}

/// The lines of a streamed answer.
struct Lines {
    body: Incoming,
    pending: Vec<u8>,
}

impl Lines {
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return serde_json::from_slice(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            }
            match tokio::time::timeout(Duration::from_secs(10), self.body.frame()).await {
                Ok(Some(Ok(frame))) => self.pending.extend_from_slice(&frame.into_data().unwrap_or_default()),
                other => panic!("no line within 10 s: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_answers_while_its_request_body_is_still_open() {
    let cluster = Cluster::start(1);
    cluster.wait_ready().await;
    let port = cluster.members[0].client_port;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let send = |json: &'static str| {
        let tx = tx.clone();
        async move { tx.send(Ok(Frame::data(Bytes::from(json)))).await.expect("the request body is open") }
    };
    // Half an object first: it is sent once complete.
    send(r#"{"create_request":{"key":"dy8x","#).await;
    send(r#""prev_kv":true}}"#).await;
    let response = post(port, "/v3/watch", &[], StreamBody::new(ReceiverStream::new(rx)).boxed(), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let mut lines = Lines { body: response.into_body(), pending: Vec::new() };
    let created = lines.next().await;
    assert_eq!(created["result"]["created"], Value::Bool(true), "{created}");

    let (status, put) = call(port, "/v3/kv/put", &[], r#"{"key":"dy8x","value":"MQ=="}"#, None).await;
    assert_eq!(status, 200, "{put}");
    let event = lines.next().await;
    let kv = &event["result"]["events"][0]["kv"];
    assert_eq!((&kv["key"], &kv["value"]), (&Value::from("dy8x"), &Value::from("MQ==")), "{event}");
    assert_eq!(kv["mod_revision"], put["header"]["revision"], "{event}");

    // A second request on the same open body: a cancel.
    send(r#"{"cancel_request":{"watch_id":"0"}}"#).await;
    let canceled = lines.next().await;
    assert_eq!(canceled["result"]["canceled"], Value::Bool(true), "{canceled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_grpc_gateways_plain_answers_and_v3beta_is_v3() {
    let cluster = Cluster::start(1);
    cluster.wait_ready().await;
    let port = cluster.members[0].client_port;
    let (status, body) = call(port, "/v3beta/kv/put", &[], r#"{"key":"Yg==","value":"MQ=="}"#, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(port, "/v3/kv/range", &[], r#"{"key":"Yg=="}"#, None).await;
    assert_eq!((status, &body["kvs"][0]["value"]), (200, &Value::from("MQ==")), "{body}");
    let response = post(port, "/v3/kv/nothing", &[], Full::new(Bytes::from("{}")).boxed(), None).await;
    assert_eq!(response.status(), 404);
    let body = response.into_body().collect().await.expect("a body").to_bytes();
    assert_eq!(&body[..], b"Not Found\n");
    let reply = common::http::request(port, http::Method::GET, "/v3/kv/range", Protocol::Http1, None).await;
    let reply = reply.expect("an answer");
    assert_eq!((reply.status, reply.body.as_str()), (405, "Method Not Allowed\n"));
    // HTTP/2 in plaintext (prior knowledge) reaches the gateway too.
    let reply = common::http::request(port, http::Method::GET, "/v3/kv/range", Protocol::Http2, None).await;
    assert_eq!(reply.expect("an answer").status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_calls_are_counted_as_grpc_calls_as_etcd_counts_them() {
    let cluster = Cluster::start(1);
    cluster.wait_ready().await;
    let port = cluster.members[0].client_port;
    for _ in 0..3 {
        let (status, body) = call(port, "/v3/kv/range", &[], "{}", None).await;
        assert_eq!(status, 400, "{body}");
    }
    let reply = common::http::get(port, "/metrics", Protocol::Http1, None).await.expect("GET /metrics");
    let scrape = common::http::parse_exposition(&reply.body).expect("Prometheus text");
    let refused = [("grpc_service", "etcdserverpb.KV"), ("grpc_method", "Range"), ("grpc_code", "InvalidArgument")];
    assert_eq!(scrape.value("grpc_server_handled_total", &refused), Some(3.0));
}
