//! etcd's KV semantics through the etcd-client crate against a real 3-node
//! synod cluster: put/get and range options, delete, txn, compaction, writes
//! through a follower, and bad input.

mod common;

use common::Cluster;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, Error, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use prost::Message;
use std::time::{Duration, Instant};
use synod_etcd_api::etcdserverpb::PutRequest;
use tonic::Code;

fn grpc(err: Error) -> (Code, String) {
    match err {
        Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_and_range_options_follow_etcd() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = common::connect(cluster.endpoints()).await;

    let first = c.put("r/a", "1", None).await.unwrap();
    let rev_a1 = first.header().unwrap().revision();
    c.put("r/b", "2", None).await.unwrap();
    c.put("r/c", "3", None).await.unwrap();
    let again = c.put("r/a", "11", Some(PutOptions::new().with_prev_key())).await.unwrap();
    assert_eq!(again.prev_key().unwrap().value(), b"1");
    assert_eq!(again.header().unwrap().revision(), rev_a1 + 3);

    let a = c.get("r/a", None).await.unwrap();
    let kv = &a.kvs()[0];
    assert_eq!((kv.value(), kv.version()), (&b"11"[..], 2));
    assert_eq!((kv.create_revision(), kv.mod_revision()), (rev_a1, rev_a1 + 3));
    let header = a.header().unwrap();
    assert_ne!(header.cluster_id(), 0);
    assert_ne!(header.member_id(), 0);
    assert!(header.raft_term() > 0);

    let all = c.get("r/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let keys: Vec<&[u8]> = all.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"r/a"[..], b"r/b", b"r/c"]);

    let limited = c.get("r/", Some(GetOptions::new().with_prefix().with_limit(2))).await.unwrap();
    assert_eq!((limited.kvs().len(), limited.more(), limited.count()), (2, true, 3));

    let counted = c.get("r/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!((counted.kvs().len(), counted.count()), (0, 3));

    let keys_only = c.get("r/", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));

    let sorted = c
        .get("r/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Value, SortOrder::Descend)))
        .await
        .unwrap();
    let values: Vec<&[u8]> = sorted.kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(values, vec![&b"3"[..], b"2", b"11"]);

    let old = c.get("r/a", Some(GetOptions::new().with_revision(rev_a1))).await.unwrap();
    assert_eq!(old.kvs()[0].value(), b"1");

    let ranged = c.get("r/b", Some(GetOptions::new().with_range("r/c"))).await.unwrap();
    assert_eq!(ranged.kvs().len(), 1);

    let local = c.get("r/a", Some(GetOptions::new().with_serializable())).await.unwrap();
    assert_eq!(local.kvs().len(), 1);

    assert!(c.get("r/missing", None).await.unwrap().kvs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_txn_follow_etcd() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = common::connect(cluster.endpoints()).await;

    for k in ["d/1", "d/2", "d/3"] {
        c.put(k, "v", None).await.unwrap();
    }
    let one = c.delete("d/1", Some(DeleteOptions::new().with_prev_key())).await.unwrap();
    assert_eq!((one.deleted(), one.prev_kvs()[0].key()), (1, &b"d/1"[..]));
    let rest = c.delete("d/", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(rest.deleted(), 2);
    let nothing = c.delete("d/1", None).await.unwrap();
    assert_eq!(nothing.deleted(), 0);
    let left = c.get("d/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(left.count(), 0);

    c.put("t/x", "1", None).await.unwrap();
    let cas = || {
        Txn::new()
            .when([Compare::value("t/x", CompareOp::Equal, "1")])
            .and_then([TxnOp::put("t/x", "2", None), TxnOp::get("t/x", None)])
            .or_else([TxnOp::put("t/lost", "yes", None)])
    };
    let won = c.txn(cas()).await.unwrap();
    assert!(won.succeeded());
    match &won.op_responses()[1] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"2"),
        other => panic!("expected a get response, got {other:?}"),
    }
    let lost = c.txn(cas()).await.unwrap();
    assert!(!lost.succeeded());
    assert_eq!(c.get("t/lost", None).await.unwrap().kvs()[0].value(), b"yes");

    // A read-only txn does not advance the revision.
    let before = c.get("t/x", None).await.unwrap().header().unwrap().revision();
    let read = c
        .txn(
            Txn::new()
                .when([Compare::version("t/x", CompareOp::Greater, 0)])
                .and_then([TxnOp::get("t/", Some(GetOptions::new().with_prefix()))]),
        )
        .await
        .unwrap();
    assert!(read.succeeded());
    assert_eq!(read.header().unwrap().revision(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_follows_etcd() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = common::connect(cluster.endpoints()).await;

    let r1 = c.put("c/k", "1", None).await.unwrap().header().unwrap().revision();
    let r2 = c.put("c/k", "2", None).await.unwrap().header().unwrap().revision();
    c.compact(r2, None).await.unwrap();

    let compacted = "etcdserver: mvcc: required revision has been compacted";
    let err = c.get("c/k", Some(GetOptions::new().with_revision(r1))).await.unwrap_err();
    assert_eq!(grpc(err), (Code::OutOfRange, compacted.to_string()));
    let err = c.compact(r1, None).await.unwrap_err();
    assert_eq!(grpc(err), (Code::OutOfRange, compacted.to_string()));
    let err = c.compact(r2 + 1000, None).await.unwrap_err();
    assert_eq!(grpc(err), (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".to_string()));
    let at_r2 = c.get("c/k", Some(GetOptions::new().with_revision(r2))).await.unwrap();
    assert_eq!(at_r2.kvs()[0].value(), b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_follower_reach_every_member() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut c = cluster.client(follower).await;
    for i in 0..20 {
        c.put(format!("f/{i:02}"), format!("{i}"), None).await.unwrap();
    }
    // Linearizable reads anywhere see them at once...
    assert_eq!(cluster.value(other, "f/19").await.as_deref(), Some(&b"19"[..]));
    assert_eq!(cluster.value(leader, "f/00").await.as_deref(), Some(&b"0"[..]));
    // ...and every member applies them.
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0..3 {
        while cluster.local_count(i, "f/").await != 20 {
            assert!(Instant::now() < deadline, "member {i} did not apply all writes");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every member lists every member with its client URL.
    let list = c.member_list().await.unwrap();
    assert_eq!(list.members().len(), 3);
    for m in list.members() {
        let i = cluster.members.iter().position(|x| x.name == m.name()).expect("a known name");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut urls = m.client_urls().to_vec();
        while urls.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let again = c.member_list().await.unwrap();
            urls =
                again.members().iter().find(|x| x.id() == m.id()).map(|x| x.client_urls().to_vec()).unwrap_or_default();
        }
        assert_eq!(urls, vec![cluster.endpoint(i)]);
        assert_eq!(m.peer_urls(), &[format!("http://127.0.0.1:{}", cluster.members[i].peer_port)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_etcd_errors_and_the_server_keeps_serving() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = common::connect(cluster.endpoints()).await;

    let big = vec![b'x'; 1 << 20];
    c.put("b/big", big.clone(), None).await.unwrap();
    assert_eq!(cluster.value(0, "b/big").await, Some(big));

    let too_big = vec![b'x'; 1_700_000];
    let err = c.put("b/too-big", too_big, None).await.unwrap_err();
    assert_eq!(grpc(err), (Code::InvalidArgument, "etcdserver: request is too large".to_string()));

    // Past what the server decodes at all (--max-request-bytes plus etcd's
    // 512 KiB of gRPC overhead), refused as grpc-go refuses it: the
    // message's length against the limit.
    let huge = vec![b'x'; 2 << 20];
    let sent = PutRequest { key: b"b/huge".to_vec(), value: huge.clone(), ..Default::default() }.encoded_len();
    let err = c.put("b/huge", huge, None).await.unwrap_err();
    assert_eq!(
        grpc(err),
        (Code::ResourceExhausted, format!("grpc: received message larger than max ({sent} vs. 2097152)"))
    );

    let err = c.put("", "v", None).await.unwrap_err();
    assert_eq!(grpc(err), (Code::InvalidArgument, "etcdserver: key is not provided".to_string()));
    let err = c.get("", None).await.unwrap_err();
    assert_eq!(grpc(err).0, Code::InvalidArgument);

    let ops: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("b/{i}"), "v", None)).collect();
    let err = c.txn(Txn::new().and_then(ops)).await.unwrap_err();
    assert_eq!(grpc(err), (Code::InvalidArgument, "etcdserver: too many operations in txn request".to_string()));
    let dup = Txn::new().and_then([TxnOp::put("b/d", "1", None), TxnOp::put("b/d", "2", None)]);
    let err = c.txn(dup).await.unwrap_err();
    assert_eq!(grpc(err), (Code::InvalidArgument, "etcdserver: duplicate key given in txn request".to_string()));

    // Garbage on a peer port is refused without harm.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", cluster.members[0].peer_port)).unwrap();
        let _ = s.write_all(&[0xff; 4096]);
    }
    // Garbage on a client port (not HTTP/2), a well-formed HTTP/2 preface
    // followed by nonsense, and a client that sends half a request and
    // disconnects: each connection is dropped, nobody else notices.
    {
        use std::io::Write;
        let port = cluster.members[0].client_port;
        for junk in
            [&b"GET / HTTP/1.1\r\n\r\n\xff\xfe"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x10\x01\x04\xff\xff"]
        {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = s.write_all(junk);
        }
    }
    {
        let mut half = c.clone();
        let big = vec![b'x'; 1 << 20];
        let put = half.put("b/half", big, None);
        // Give up (drop the request) before it can complete.
        let _ = tokio::time::timeout(Duration::from_micros(50), put).await;
    }

    c.put("b/after", "ok", None).await.unwrap();
    for i in 0..3 {
        assert_eq!(cluster.value(i, "b/after").await.as_deref(), Some(&b"ok"[..]));
    }
}
