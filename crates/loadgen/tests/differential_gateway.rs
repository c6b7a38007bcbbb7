//! Differential test of the HTTP/JSON gateway: Debian's etcd is the
//! specification.
//!
//! The same script of JSON requests goes over HTTP/1.1 to a fresh
//! single-node etcd and a fresh single-node synod: KV (range, put,
//! deleterange, txn with compares and a nested txn, compaction, a range at
//! a compacted revision), leases (grant, a duplicate grant, keep-alive as
//! a stream of several requests, time-to-live through both its paths,
//! leases, revoke), watch streams (created, events from puts and a
//! delete after the request body ended, history, a create and a cancel in
//! one body, a compacted revision), auth (enable,
//! authenticate, a request with no token, a permitted one, a denied one, a
//! forged token, a wrong password, a denied snapshot stream, a denied
//! watch), errors (a body that is not JSON, an unknown path, a GET, a key
//! too large), the `/v3beta/` prefix, and unknown fields. Each answer must
//! have the same HTTP status and content type, and the same body once
//! parsed: every JSON value compared field by field, with only what is per
//! deployment masked (a header's cluster_id, member_id and raft_term; the
//! value of an auth token; a lease's remaining TTL, which may have ticked
//! by a second). Streams are compared line by line.
//!
//! # Known differences
//!
//! The text of a decoding error: etcd's is Go's `encoding/json` wording
//! ("invalid character 'b' looking for beginning of object key string"),
//! synod's is serde_json's; for such requests the status, the body's shape
//! and its gRPC code are compared, and `error` must equal `message`.
//!
//! The whole run is compared; the failure lists every disagreement.
//!
//! Environment: `SYNOD_BIN`, `ETCD_BIN` as for the KV differential test.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use synod_loadgen::node::{sibling_binary, start_single, Node};
use tokio::net::TcpStream;

type Body = BoxBody<Bytes, Infallible>;

/// How long a stream may take to say its next line.
const LINE_WAIT: Duration = Duration::from_secs(10);

/// One answer: status, content type and body.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// Sends one request on a fresh HTTP/1.1 connection and returns the
/// response head and its body, not yet read.
async fn send(port: u16, method: &str, path: &str, token: Option<&str>, body: Body) -> hyper::Response<Incoming> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    sender.send_request(request.body(body).expect("request")).await.expect("send")
}

/// A unary request: the whole answer.
async fn call(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
    let response = send(port, method, path, token, Full::new(Bytes::from(body.to_string())).boxed()).await;
    let status = response.status().as_u16();
    let content_type = content_type(&response);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Answer { status, content_type, body: String::from_utf8_lossy(&body).into_owned() }
}

fn content_type<B>(response: &hyper::Response<B>) -> String {
    response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// A streaming call: its request body sent whole (etcd 3.4's HTTP/1.1
/// server answers a stream only once the request body has ended), its
/// answer read line by line.
struct Stream {
    status: u16,
    content_type: String,
    body: Incoming,
    pending: Vec<u8>,
}

impl Stream {
    async fn open(port: u16, path: &str, token: Option<&str>, requests: &str) -> Stream {
        let response = send(port, "POST", path, token, Full::new(Bytes::from(requests.to_string())).boxed()).await;
        Stream {
            status: response.status().as_u16(),
            content_type: content_type(&response),
            body: response.into_body(),
            pending: Vec::new(),
        }
    }

    /// The next line (without its newline), or what is left when the
    /// answer ends, or `None` at its end.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            match tokio::time::timeout(LINE_WAIT, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
                Ok(_) if self.pending.is_empty() => return None,
                Ok(_) => return Some(String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned()),
                Err(_) => return Some("<no line within 10 s>".into()),
            }
        }
    }
}

/// Masks what is per deployment in a JSON answer.
fn masked(mut value: Value) -> Value {
    fn walk(v: &mut Value, parent: &str) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    let mask = matches!((parent, k.as_str()), ("header", "cluster_id" | "member_id" | "raft_term"))
                        || k == "token";
                    if mask {
                        *v = json!("<masked>");
                    } else if k == "TTL" && parent == "ttl" {
                        // A remaining TTL may have ticked by a second.
                        let ttl: i64 = v.as_str().and_then(|s| s.parse().ok()).unwrap_or(-100);
                        *v = json!(if ttl >= 58 { "58..60".to_string() } else { ttl.to_string() });
                    } else {
                        walk(v, k);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, parent)),
            _ => {}
        }
    }
    walk(&mut value, "");
    value
}

/// How two bodies are compared.
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    /// Equal JSON once masked (or equal text if not JSON).
    Exact,
    /// The remaining TTL of a lease masked too (time-to-live answers).
    Ttl,
    /// A decoding error: same code, and error == message on both sides.
    DecodeError,
}

fn normal(body: &str, how: Compare) -> Value {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if how == Compare::Ttl => masked(json!({ "ttl": v })),
        Ok(v) if how == Compare::DecodeError => {
            let consistent = v["error"] == v["message"] && v["error"].is_string();
            json!({ "code": v["code"], "error_is_message": consistent })
        }
        Ok(v) => masked(v),
        Err(_) => Value::String(body.to_string()),
    }
}

struct Harness {
    etcd: (Node, u16),
    synod: (Node, u16),
    mismatches: Vec<String>,
}

impl Harness {
    fn ports(&self) -> (u16, u16) {
        (self.etcd.1, self.synod.1)
    }

    fn check(&mut self, what: &str, etcd: &Answer, synod: &Answer, how: Compare) {
        let (e, s) = (normal(&etcd.body, how), normal(&synod.body, how));
        if etcd.status != synod.status || etcd.content_type != synod.content_type || e != s {
            self.mismatches.push(format!(
                "{what}:\n  etcd:  {} {} {}\n  synod: {} {} {}",
                etcd.status, etcd.content_type, etcd.body, synod.status, synod.content_type, synod.body
            ));
        }
    }

    /// The same request to both; the two answers compared. Returns etcd's.
    async fn both_as(&mut self, path: &str, tokens: (Option<&str>, Option<&str>), body: &str, how: Compare) -> Value {
        let (ep, sp) = self.ports();
        let (etcd, synod) =
            tokio::join!(call(ep, "POST", path, tokens.0, body), call(sp, "POST", path, tokens.1, body));
        self.check(&format!("POST {path} {body}"), &etcd, &synod, how);
        serde_json::from_str(&synod.body).unwrap_or(Value::Null)
    }

    async fn both(&mut self, path: &str, body: &str) -> Value {
        self.both_as(path, (None, None), body, Compare::Exact).await
    }

    /// One request to each in turn (a write whose order matters), compared.
    async fn method(&mut self, method: &str, path: &str, body: &str) {
        let (ep, sp) = self.ports();
        let etcd = call(ep, method, path, None, body).await;
        let synod = call(sp, method, path, None, body).await;
        self.check(&format!("{method} {path} {body:.60}"), &etcd, &synod, Compare::Exact);
    }

    /// Opens the same stream on both and compares its head.
    async fn open(&mut self, path: &str, tokens: (Option<&str>, Option<&str>), first: &str) -> (Stream, Stream) {
        let (ep, sp) = self.ports();
        let (etcd, synod) =
            tokio::join!(Stream::open(ep, path, tokens.0, first), Stream::open(sp, path, tokens.1, first));
        if (etcd.status, &etcd.content_type) != (synod.status, &synod.content_type) {
            self.mismatches.push(format!(
                "stream {path} {first}: etcd {} {}, synod {} {}",
                etcd.status, etcd.content_type, synod.status, synod.content_type
            ));
        }
        (etcd, synod)
    }

    /// The next line of both streams, compared.
    async fn lines(&mut self, what: &str, streams: &mut (Stream, Stream)) -> Value {
        let (etcd, synod) = tokio::join!(streams.0.line(), streams.1.line());
        let (etcd, synod) = (etcd.unwrap_or_else(|| "<end>".into()), synod.unwrap_or_else(|| "<end>".into()));
        if normal(&etcd, Compare::Exact) != normal(&synod, Compare::Exact) {
            self.mismatches.push(format!("{what}:\n  etcd:  {etcd}\n  synod: {synod}"));
        }
        serde_json::from_str(&synod).unwrap_or(Value::Null)
    }
}

fn b64(s: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn start(binary: &Path, dir: &Path) -> (Node, u16) {
    let (node, _) = start_single(binary, dir).await.unwrap_or_else(|e| panic!("{e:#}"));
    let port = node.spec().client_port;
    (node, port)
}

async fn kv(h: &mut Harness) {
    let (k, v1, v2) = (b64(b"foo"), b64(b"bar"), b64(b"baz"));
    h.both("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v1}"}}"#)).await;
    h.both("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v2}","prev_kv":true}}"#)).await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{k}"}}"#)).await;
    for k in ["a", "ab", "abc", "b"] {
        let (k, v) = (b64(k.as_bytes()), b64(format!("v-{k}").as_bytes()));
        h.both("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v}"}}"#)).await;
    }
    let (a, b) = (b64(b"a"), b64(b"b"));
    h.both("/v3/kv/range", &format!(r#"{{"key":"{a}","range_end":"{b}"}}"#)).await;
    h.both(
        "/v3/kv/range",
        &format!(r#"{{"key":"{a}","range_end":"{b}","limit":2,"sort_order":"DESCEND","sort_target":"MOD"}}"#),
    )
    .await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{a}","rangeEnd":"{b}","keysOnly":true,"revision":"4"}}"#)).await;
    h.both("/v3/kv/range", r#"{"key":"AA==","range_end":"AA==","count_only":true}"#).await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{a}","range_end":"{b}","min_mod_revision":5,"serializable":true}}"#))
        .await;
    // A txn whose compares hold: a put, a range and a nested txn.
    let txn = format!(
        r#"{{"compare":[{{"key":"{k}","target":"VALUE","result":"EQUAL","value":"{v2}"}},
             {{"key":"{k}","target":"VERSION","result":"GREATER","version":"1"}},
             {{"key":"{a}","range_end":"{b}","target":"MOD","result":"LESS","mod_revision":100}}],
           "success":[{{"request_put":{{"key":"{k}","value":"{v1}","prev_kv":true}}}},
             {{"request_range":{{"key":"{a}","range_end":"{b}","limit":1}}}},
             {{"request_txn":{{"compare":[{{"key":"{a}","target":"CREATE","result":"NOT_EQUAL","create_revision":0}}],
               "success":[{{"request_delete_range":{{"key":"{a}","prev_kv":true}}}}]}}}}],
           "failure":[{{"request_delete_range":{{"key":"{k}"}}}}]}}"#
    );
    h.both("/v3/kv/txn", &txn).await;
    // The same compares now fail: the failure branch runs.
    h.both("/v3/kv/txn", &txn).await;
    h.both("/v3/kv/txn", "{}").await;
    h.both("/v3/kv/deleterange", &format!(r#"{{"key":"{a}","range_end":"{b}","prev_kv":true}}"#)).await;
    h.both("/v3/kv/deleterange", &format!(r#"{{"key":"{a}"}}"#)).await;
    h.both("/v3/kv/compaction", r#"{"revision":"5"}"#).await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{k}","revision":3}}"#)).await;
    h.both("/v3/kv/compaction", r#"{"revision":4}"#).await;
    h.both("/v3/kv/compaction", r#"{"revision":1000}"#).await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{k}","revision":1000}}"#)).await;
    // The deprecated prefix etcd 3.4 still serves, unknown fields ignored,
    // and the empty request (no body, or null).
    h.both("/v3beta/kv/range", &format!(r#"{{"key":"{k}","no_such_field":[1,2]}}"#)).await;
    h.both("/v3/kv/range", "").await;
    h.both("/v3/kv/range", "null").await;
    h.both("/v3/kv/put", &format!(r#"{{"key":"{k}","value":"{v1}","lease":"7"}}"#)).await;
}

async fn leases(h: &mut Harness) {
    let key = b64(b"leased");
    h.both("/v3/lease/grant", r#"{"TTL":60,"ID":1234}"#).await;
    h.both("/v3/lease/grant", r#"{"TTL":"60","ID":"1234"}"#).await;
    h.both("/v3/kv/put", &format!(r#"{{"key":"{key}","value":"dg==","lease":1234}}"#)).await;
    let mut keepalive = h.open("/v3/lease/keepalive", (None, None), r#"{"ID":1234}{"ID":999} {"ID":"1234"}"#).await;
    h.lines("keepalive 1234", &mut keepalive).await;
    h.lines("keepalive of an unknown lease", &mut keepalive).await;
    h.lines("keepalive 1234 again", &mut keepalive).await;
    h.lines("keepalive stream end at the end of the requests", &mut keepalive).await;
    h.both_as("/v3/lease/timetolive", (None, None), r#"{"ID":1234,"keys":true}"#, Compare::Ttl).await;
    h.both_as("/v3/kv/lease/timetolive", (None, None), r#"{"ID":"1234"}"#, Compare::Ttl).await;
    h.both("/v3/lease/leases", "{}").await;
    h.both("/v3/kv/lease/leases", "{}").await;
    h.both("/v3/lease/revoke", r#"{"ID":1234}"#).await;
    h.both("/v3/kv/lease/revoke", r#"{"ID":1234}"#).await;
    h.both("/v3/lease/timetolive", r#"{"ID":1234}"#).await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{key}"}}"#)).await;
}

async fn watch(h: &mut Harness) {
    let (w, w_end) = (b64(b"w/"), b64(b"w0"));
    // The request body ends after the create; the stream and its watcher
    // go on.
    let create = format!(r#"{{"create_request":{{"key":"{w}","range_end":"{w_end}","prev_kv":true}}}}"#);
    let mut stream = h.open("/v3/watch", (None, None), &create).await;
    h.lines("watch created", &mut stream).await;
    // The events of writes made while the watch is open, in order.
    let (w1, w2) = (b64(b"w/1"), b64(b"w/2"));
    for body in [
        format!(r#"{{"key":"{w1}","value":"MQ=="}}"#),
        format!(r#"{{"key":"{w1}","value":"Mg=="}}"#),
        format!(r#"{{"key":"{w2}","value":"Mw=="}}"#),
    ] {
        h.both("/v3/kv/put", &body).await;
        h.lines(&format!("watch event of put {body}"), &mut stream).await;
    }
    h.both("/v3/kv/deleterange", &format!(r#"{{"key":"{w1}"}}"#)).await;
    h.lines("watch event of a delete", &mut stream).await;
    drop(stream);
    // A watcher from history, with its own id.
    let history = format!(r#"{{"create_request":{{"key":"{w1}","start_revision":"{}","watch_id":5}}}}"#, 2);
    let mut stream = h.open("/v3/watch", (None, None), &history).await;
    h.lines("a watcher from history: created", &mut stream).await;
    h.lines("a watcher from history: its events", &mut stream).await;
    drop(stream);
    // A create and a cancel in one body.
    let x = b64(b"w/x");
    let both = format!(r#"{{"create_request":{{"key":"{x}"}}}} {{"cancel_request":{{"watch_id":"0"}}}}"#);
    let mut stream = h.open("/v3/watch", (None, None), &both).await;
    h.lines("create then cancel: created", &mut stream).await;
    h.lines("create then cancel: canceled", &mut stream).await;
    drop(stream);
    // A watch of a compacted revision is canceled with the compaction's
    // revision.
    let old = format!(r#"{{"create_request":{{"key":"{w}","start_revision":1}}}}"#);
    let mut stream = h.open("/v3/watch", (None, None), &old).await;
    h.lines("watch of a compacted revision: created", &mut stream).await;
    h.lines("watch of a compacted revision: canceled", &mut stream).await;
}

async fn auth(h: &mut Harness) {
    h.both("/v3/auth/user/add", r#"{"name":"root","password":"rootpw"}"#).await;
    h.both("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#).await;
    h.both("/v3/auth/user/add", r#"{"name":"bob","password":"bobpw"}"#).await;
    h.both("/v3/auth/role/add", r#"{"name":"reader"}"#).await;
    let (a, b) = (b64(b"a"), b64(b"b"));
    h.both(
        "/v3/auth/role/grant",
        &format!(r#"{{"name":"reader","perm":{{"permType":"READ","key":"{a}","range_end":"{b}"}}}}"#),
    )
    .await;
    h.both("/v3/auth/role/get", r#"{"role":"reader"}"#).await;
    h.both("/v3/auth/user/grant", r#"{"user":"bob","role":"reader"}"#).await;
    h.both("/v3/auth/enable", "{}").await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{a}"}}"#)).await;
    let ep = h.etcd.1;
    let sp = h.synod.1;
    let token =
        |a: Answer| serde_json::from_str::<Value>(&a.body).ok().and_then(|v| v["token"].as_str().map(String::from));
    let bob = (
        token(call(ep, "POST", "/v3/auth/authenticate", None, r#"{"name":"bob","password":"bobpw"}"#).await),
        token(call(sp, "POST", "/v3/auth/authenticate", None, r#"{"name":"bob","password":"bobpw"}"#).await),
    );
    let root = (
        token(call(ep, "POST", "/v3/auth/authenticate", None, r#"{"name":"root","password":"rootpw"}"#).await),
        token(call(sp, "POST", "/v3/auth/authenticate", None, r#"{"name":"root","password":"rootpw"}"#).await),
    );
    assert!(
        bob.0.is_some() && bob.1.is_some() && root.0.is_some() && root.1.is_some(),
        "authenticate: {bob:?} {root:?}"
    );
    let bob = (bob.0.as_deref(), bob.1.as_deref());
    let root = (root.0.as_deref(), root.1.as_deref());
    h.both("/v3/auth/authenticate", r#"{"name":"bob","password":"bobpw"}"#).await;
    h.both("/v3/auth/authenticate", r#"{"name":"bob","password":"wrong"}"#).await;
    h.both_as("/v3/kv/range", bob, &format!(r#"{{"key":"{a}","range_end":"{b}"}}"#), Compare::Exact).await;
    h.both_as("/v3/kv/put", bob, &format!(r#"{{"key":"{a}","value":"eA=="}}"#), Compare::Exact).await;
    h.both_as("/v3/kv/range", (Some("forged.1"), Some("forged.1")), &format!(r#"{{"key":"{a}"}}"#), Compare::Exact)
        .await;
    h.both_as("/v3/auth/user/list", bob, "{}", Compare::Exact).await;
    h.both_as("/v3/auth/user/list", root, "{}", Compare::Exact).await;
    let mut snapshot = h.open("/v3/maintenance/snapshot", bob, "{}").await;
    h.lines("a snapshot refused to a user without the root role", &mut snapshot).await;
    let denied = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, b64(b"z"));
    let mut watch = h.open("/v3/watch", bob, &denied).await;
    h.lines("a watch on a key the user may not read", &mut watch).await;
    h.both_as("/v3/auth/disable", bob, "{}", Compare::Exact).await;
    h.both_as("/v3/auth/disable", root, "{}", Compare::Exact).await;
    h.both("/v3/kv/range", &format!(r#"{{"key":"{a}"}}"#)).await;
}

async fn errors(h: &mut Harness) {
    let bad = [
        "{bad",
        "[1]",
        r#""text""#,
        r#"{"key":"!!!"}"#,
        r#"{"key":"Zm9v","limit":"x"}"#,
        r#"{"limit":1.5}"#,
        r#"{"key":"Zm9v","sort_target":"NO_SUCH"}"#,
    ];
    for bad in bad {
        h.both_as("/v3/kv/range", (None, None), bad, Compare::DecodeError).await;
    }
    // A watch whose first request does not read fails as Unknown (500).
    h.both_as("/v3/watch", (None, None), "{bad", Compare::DecodeError).await;
    h.both("/v3/kv/nothing", "{}").await;
    h.both("/v3/nothing", "{}").await;
    h.method("GET", "/v3/kv/range", "").await;
    h.method("PUT", "/v3/kv/put", "{}").await;
    h.both("/v3/kv/range", "{}").await;
    // A key just over --max-request-bytes (1.5 MiB), and one over what the
    // gRPC server decodes at all (2 MiB).
    for size in [1536 * 1024 + 100, 2 * 1024 * 1024] {
        let key = b64(&vec![b'k'; size]);
        let body = format!(r#"{{"key":"{key}","value":"eA=="}}"#);
        h.method("POST", "/v3/kv/put", &body).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_every_json_request_exactly_as_etcd_does() {
    let etcd_bin = PathBuf::from(std::env::var_os("ETCD_BIN").unwrap_or("/usr/bin/etcd".into()));
    if !etcd_bin.exists() {
        eprintln!(
            "gateway differential skipped: etcd not found at {} (run scripts/setup, which installs Debian's \
             etcd-server, or set ETCD_BIN)",
            etcd_bin.display()
        );
        return;
    }
    let synod_bin = sibling_binary("synod", "SYNOD_BIN");
    assert!(
        synod_bin.exists(),
        "synod binary not found at {}: build it first with `cargo build -p synod-server` (--release for \
         `cargo test --release`), or point SYNOD_BIN at it",
        synod_bin.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (etcd_dir, synod_dir) = (dir.path().join("etcd"), dir.path().join("synod"));
    let (etcd, synod) = tokio::join!(start(&etcd_bin, &etcd_dir), start(&synod_bin, &synod_dir));
    let mut h = Harness { etcd, synod, mismatches: Vec::new() };

    kv(&mut h).await;
    leases(&mut h).await;
    watch(&mut h).await;
    auth(&mut h).await;
    errors(&mut h).await;

    assert!(h.mismatches.is_empty(), "{} answers differ from etcd's:\n{}", h.mismatches.len(), h.mismatches.join("\n"));
}
