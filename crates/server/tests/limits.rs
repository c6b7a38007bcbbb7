//! What one client may hold on a member (issue 13.5): watchers per watch
//! stream (`--max-watchers-per-stream`), gRPC streams per connection
//! (etcd's `--max-concurrent-streams`), connections that stop answering
//! keepalive pings (etcd's `--grpc-keepalive-*`), and request messages on a
//! stream past the decoding limit (`--max-request-bytes` plus etcd's gRPC
//! overhead).

mod common;

use common::Cluster;
use etcd_client::proto::PbWatchRequest;
use etcd_client::{Client, Error, WatchOptions, WatchResponse, WatchStream};
use prost::Message;
use std::time::Duration;
use synod_etcd_api::etcdserverpb::LeaseKeepAliveResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

async fn client(cluster: &Cluster) -> Client {
    Client::connect([cluster.endpoint(0)], None).await.expect("connect")
}

/// The next response, failing the test after `secs` seconds.
async fn next(stream: &mut WatchStream, secs: u64) -> WatchResponse {
    match tokio::time::timeout(Duration::from_secs(secs), stream.message()).await {
        Ok(Ok(Some(r))) => r,
        other => panic!("no watch response within {secs} s: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stream_refuses_watchers_past_its_cap_and_keeps_the_others() {
    let cluster = Cluster::start_with(1, &["--max-watchers-per-stream", "3"]);
    cluster.wait_ready().await;
    let mut c = client(&cluster).await;
    let mut s = c.watch("w/0", None).await.expect("watch");
    assert!(next(&mut s, 10).await.created());
    for i in 1..3 {
        s.watch(format!("w/{i}"), None).await.unwrap();
        let r = next(&mut s, 10).await;
        assert!(r.created() && !r.canceled(), "watcher {i} of 3: {r:?}");
    }
    s.watch("w/3", None).await.unwrap();
    let refused = next(&mut s, 10).await;
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert_eq!(refused.watch_id(), -1);
    assert!(refused.cancel_reason().contains("too many watchers"), "{refused:?}");

    // The watchers it holds still see their keys.
    c.put("w/1", "v", None).await.unwrap();
    let event = next(&mut s, 10).await;
    assert_eq!(event.events().len(), 1, "{event:?}");

    // Room again once one is cancelled.
    s.cancel(event.watch_id()).await.unwrap();
    assert!(next(&mut s, 10).await.canceled());
    s.watch("w/4", None).await.unwrap();
    let again = next(&mut s, 10).await;
    assert!(again.created() && !again.canceled(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_streams_holds_a_further_call_until_a_stream_ends() {
    let cluster = Cluster::start_with(1, &["--max-concurrent-streams", "1"]);
    cluster.wait_ready().await;
    let mut c = client(&cluster).await;
    c.put("k", "v", None).await.unwrap();
    let mut s = c.watch("k", None).await.expect("watch");
    assert!(next(&mut s, 10).await.created());
    // The watch holds the connection's only stream: a call waits (any
    // time it waits is the property, so this cannot fail spuriously).
    let blocked = tokio::time::timeout(Duration::from_secs(1), c.get("k", None)).await;
    assert!(blocked.is_err(), "a second stream opened past --max-concurrent-streams 1: {blocked:?}");
    // Once the watch ends, the call goes through.
    drop(s);
    let got = tokio::time::timeout(Duration::from_secs(30), c.get("k", None)).await;
    let got = got.expect("the call ran once the watch stream ended").unwrap();
    assert_eq!(got.kvs()[0].value(), b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_answer_keepalive_pings_is_closed() {
    let cluster = Cluster::start_with(1, &["--grpc-keepalive-interval", "200ms", "--grpc-keepalive-timeout", "200ms"]);
    cluster.wait_ready().await;
    let addr = cluster.endpoint(0).trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // An HTTP/2 client preface and empty SETTINGS, then silence: no
    // SETTINGS ack, no PING ack.
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a connection open that answers no pings");
}

/// etcd's Watch ends the stream with the error its receive loop read, and
/// grpc-go's is ResourceExhausted naming the message's length and the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_request_over_the_decoding_limit_ends_the_stream_with_grpc_gos_refusal() {
    let cluster = Cluster::start_with(1, &["--max-request-bytes", "1024"]);
    cluster.wait_ready().await;
    let mut c = client(&cluster).await;
    let limit = 1024 + 512 * 1024;
    let key = vec![b'k'; limit];
    let sent = PbWatchRequest::from(WatchOptions::new().with_key(key.clone())).encoded_len();
    let mut s = c.watch(key, None).await.expect("watch");
    match tokio::time::timeout(Duration::from_secs(10), s.message()).await {
        Ok(Err(Error::GRpcStatus(status))) => {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            assert_eq!(status.message(), format!("grpc: received message larger than max ({sent} vs. {limit})"));
        }
        other => panic!("expected the stream to end with a status within 10 s: {other:?}"),
    }

    // The member still serves, a watch within the limit included.
    let mut s = c.watch("small", None).await.expect("watch");
    assert!(next(&mut s, 10).await.created());
}

/// A `LeaseKeepAliveRequest` (field 1, the lease id) padded with a field
/// etcd's message does not have, which a server skips: a valid keep-alive of
/// any length.
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedKeepAlive {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(bytes = "vec", tag = "15")]
    padding: Vec<u8>,
}

/// etcd's LeaseKeepAlive, as its Watch, ends the stream with the error it
/// read: over the decoding limit, grpc-go's ResourceExhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_over_the_decoding_limit_ends_the_stream_with_grpc_gos_refusal() {
    let cluster = Cluster::start_with(1, &["--max-request-bytes", "1024"]);
    cluster.wait_ready().await;
    let mut c = client(&cluster).await;
    let id = c.lease_grant(60, None).await.expect("grant").id();
    let limit = 1024 + 512 * 1024;

    let channel =
        tonic::transport::Endpoint::from_shared(cluster.endpoint(0)).unwrap().connect().await.expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let (tx, rx) = mpsc::channel(4);
    let path = PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
    let codec = tonic_prost::ProstCodec::<PaddedKeepAlive, LeaseKeepAliveResponse>::default();
    let mut responses =
        grpc.streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec).await.expect("open").into_inner();

    // Padding within the limit is a keep-alive like any other.
    tx.send(PaddedKeepAlive { id, padding: vec![0; 1000] }).await.unwrap();
    let kept = within_10s(responses.message()).await.expect("stream healthy").expect("a response");
    assert_eq!((kept.id, kept.ttl), (id, 60));

    let oversized = PaddedKeepAlive { id, padding: vec![0; limit] };
    let sent = oversized.encoded_len();
    tx.send(oversized).await.unwrap();
    match within_10s(responses.message()).await {
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            assert_eq!(status.message(), format!("grpc: received message larger than max ({sent} vs. {limit})"));
        }
        Ok(other) => panic!("expected the stream to end with a status: {other:?}"),
    }
}

/// What `f` gives, failing the test after 10 seconds.
async fn within_10s<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f).await.expect("an answer within 10 s")
}
