//! etcd's Watch on real synod processes, through the etcd-client crate:
//! every change delivered once and in order (one response per txn), history
//! replay, filters, ids, cancel, progress, compaction, a slow reader, and a
//! leader killed while watchers run.

mod common;

use common::Cluster;
use etcd_client::{
    Client, Compare, CompareOp, EventType, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client without a request timeout: a watch stream lives for as long as
/// the test wants it.
async fn client(cluster: &Cluster, i: usize) -> Client {
    Client::connect([cluster.endpoint(i)], None).await.expect("connect")
}

/// The next response, failing the test after `secs` seconds.
async fn next(stream: &mut WatchStream, secs: u64) -> WatchResponse {
    match tokio::time::timeout(Duration::from_secs(secs), stream.message()).await {
        Ok(Ok(Some(r))) => r,
        other => panic!("no watch response within {secs} s: {other:?}"),
    }
}

/// Opens a watch and checks the `created` response; returns the stream and
/// the watch id.
async fn watch(c: &mut Client, key: &str, opts: WatchOptions) -> (WatchStream, i64) {
    let mut stream = c.watch(key, Some(opts)).await.expect("watch");
    let created = next(&mut stream, 10).await;
    assert!(created.created(), "first response is not `created`: {created:?}");
    (stream, created.watch_id())
}

/// (revision, key, is_put, value, prev value) of each event in a response.
type Seen = (i64, String, bool, String, Option<String>);

fn seen(r: &WatchResponse) -> Vec<Seen> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("event kv");
            (
                kv.mod_revision(),
                kv.key_str().unwrap().to_string(),
                e.event_type() == EventType::Put,
                kv.value_str().unwrap().to_string(),
                e.prev_kv().map(|p| p.value_str().unwrap().to_string()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_arrives_once_in_revision_order_and_a_txn_in_one_response() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut writer = client(&cluster, leader).await;
    let mut watcher = client(&cluster, follower).await;
    let (mut stream, id) = watch(&mut watcher, "w/", WatchOptions::new().with_prefix().with_prev_key()).await;

    let r1 = writer.put("w/a", "1", None).await.unwrap().header().unwrap().revision();
    writer.put("other", "x", None).await.unwrap();
    writer.put("w/a", "2", None).await.unwrap();
    let txn = Txn::new().when([Compare::value("w/a", CompareOp::Equal, "2")]).and_then([
        TxnOp::put("w/b", "3", None),
        TxnOp::delete("w/a", None),
        TxnOp::put("w/c", "4", None),
    ]);
    let txn_rev = writer.txn(txn).await.unwrap().header().unwrap().revision();

    let mut responses = Vec::new();
    while responses.iter().map(|r: &Vec<Seen>| r.len()).sum::<usize>() < 5 {
        let r = next(&mut stream, 10).await;
        assert_eq!(r.watch_id(), id);
        assert!(!r.canceled(), "{r:?}");
        responses.push(seen(&r));
    }
    let all: Vec<Seen> = responses.concat();
    let s = |v: &str| v.to_string();
    assert_eq!(
        all,
        vec![
            (r1, s("w/a"), true, s("1"), None),
            (r1 + 2, s("w/a"), true, s("2"), Some(s("1"))),
            (txn_rev, s("w/b"), true, s("3"), None),
            (txn_rev, s("w/a"), false, s(""), Some(s("2"))),
            (txn_rev, s("w/c"), true, s("4"), None),
        ]
    );
    let txn_response = responses.iter().find(|r| r.iter().any(|e| e.0 == txn_rev)).unwrap();
    assert_eq!(txn_response.len(), 3, "all events of one txn arrive in one response: {responses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_ids_cancel_progress_and_compaction() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = client(&cluster, 0).await;
    let first = c.put("h/k", "1", None).await.unwrap().header().unwrap().revision();
    c.put("h/k", "2", None).await.unwrap();
    c.delete("h/k", None).await.unwrap();
    let last = c.put("h/k", "3", None).await.unwrap().header().unwrap().revision();

    // History replays from start_revision; NOPUT leaves only the delete.
    let (mut s, _) = watch(&mut c, "h/k", WatchOptions::new().with_start_revision(first)).await;
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(seen(&next(&mut s, 10).await));
    }
    assert_eq!(got.iter().map(|e| e.0).collect::<Vec<_>>(), vec![first, first + 1, first + 2, last]);
    let opts = WatchOptions::new().with_start_revision(first).with_filters([WatchFilterType::NoPut]);
    let (mut s, _) = watch(&mut c, "h/k", opts).await;
    let r = next(&mut s, 10).await;
    assert_eq!(seen(&r).iter().map(|e| (e.0, e.2)).collect::<Vec<_>>(), vec![(first + 2, false)]);

    // Client-chosen ids, a duplicate refused, server-chosen ids, cancel.
    let (mut s, id) = watch(&mut c, "x", WatchOptions::new().with_watch_id(7)).await;
    assert_eq!(id, 7);
    s.watch("y", Some(WatchOptions::new().with_watch_id(7))).await.unwrap();
    let dup = next(&mut s, 10).await;
    assert!(dup.canceled() && dup.cancel_reason().contains("duplicate watch ID"), "{dup:?}");
    s.watch("z", None).await.unwrap();
    let auto = next(&mut s, 10).await;
    assert!(auto.created() && auto.watch_id() != 7, "{auto:?}");
    s.cancel(7).await.unwrap();
    let cancelled = next(&mut s, 10).await;
    assert!(cancelled.canceled() && cancelled.watch_id() == 7, "{cancelled:?}");
    c.put("x", "ignored: cancelled", None).await.unwrap();
    let z = c.put("z", "seen", None).await.unwrap().header().unwrap().revision();
    let r = next(&mut s, 10).await;
    assert_eq!((r.watch_id(), seen(&r)[0].0), (auto.watch_id(), z), "the cancelled watcher got nothing");

    // A progress request is answered for the whole stream, at a revision
    // the stream has delivered everything up to.
    s.request_progress().await.unwrap();
    let p = next(&mut s, 10).await;
    assert!(p.events().is_empty() && p.watch_id() == -1, "{p:?}");
    assert!(p.header().unwrap().revision() >= z, "{p:?}");

    // Compaction cancels a watcher that wants compacted history, telling
    // the revision it may restart from.
    c.compact(last, None).await.unwrap();
    let mut s = c.watch("h/k", Some(WatchOptions::new().with_start_revision(first))).await.unwrap();
    let created = next(&mut s, 10).await;
    assert!(created.created());
    let r = next(&mut s, 10).await;
    assert!(r.canceled() && r.compact_revision() == last, "{r:?}");
    // As etcd 3.4 words it: no cancel reason, and no revision in the header.
    assert_eq!((r.cancel_reason(), r.header().unwrap().revision()), ("", 0), "{r:?}");
    let (mut s, _) = watch(&mut c, "h/k", WatchOptions::new().with_start_revision(last)).await;
    assert_eq!(seen(&next(&mut s, 10).await)[0].0, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notify_empty_keys_and_fragments() {
    let cluster = Cluster::start_with(1, &["--experimental-watch-progress-notify-interval", "300ms"]);
    cluster.wait_ready().await;
    let mut c = client(&cluster, 0).await;
    let (mut s, id) = watch(&mut c, "p", WatchOptions::new().with_progress_notify()).await;
    let r = next(&mut s, 10).await;
    assert!(r.events().is_empty() && r.watch_id() == id && !r.canceled(), "{r:?}");

    // An empty key is etcd's smallest key; with range_end "\0" it watches
    // everything.
    let (mut all, _) = watch(&mut c, "", WatchOptions::new().with_all_keys()).await;
    let rev = c.put("anything", "v", None).await.unwrap().header().unwrap().revision();
    assert_eq!(seen(&next(&mut all, 10).await)[0].0, rev);

    // A txn whose events (with previous values) are larger than a request
    // may be arrives in fragments when asked, whole otherwise.
    let value = "v".repeat(400 * 1024);
    c.put("f/1", value.clone(), None).await.unwrap();
    c.put("f/2", value.clone(), None).await.unwrap();
    let (mut whole, _) = watch(&mut c, "f/", WatchOptions::new().with_prefix().with_prev_key()).await;
    let (mut s, _) = watch(&mut c, "f/", WatchOptions::new().with_prefix().with_prev_key().with_fragment()).await;
    let txn = Txn::new().and_then([TxnOp::put("f/1", value.clone(), None), TxnOp::put("f/2", value.clone(), None)]);
    let rev = c.txn(txn).await.unwrap().header().unwrap().revision();
    let first = next(&mut s, 10).await;
    let second = next(&mut s, 10).await;
    // (etcd-client does not expose the `fragment` flag; the split shows.)
    for r in [&first, &second] {
        assert_eq!(r.events().len(), 1);
        assert_eq!(r.events()[0].kv().unwrap().mod_revision(), rev);
    }
    assert_eq!(next(&mut whole, 10).await.events().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_catches_up_from_the_store_with_nothing_lost_or_repeated() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = client(&cluster, 0).await;
    let (mut s, _) = watch(&mut c, "slow/", WatchOptions::new().with_prefix()).await;
    // Many small writes, each its own batch, while the watcher reads nothing:
    // far more than the hub's backlog.
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut wc = client(&cluster, w % 3).await;
        writers.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..600 {
                let r = wc.put(format!("slow/{w}/{i}"), "x".repeat(2000), None).await.unwrap();
                revs.push(r.header().unwrap().revision());
            }
            revs
        }));
    }
    let mut expected = Vec::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    expected.sort();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let r = next(&mut s, 20).await;
        got.extend(r.events().iter().map(|e| e.kv().unwrap().mod_revision()));
    }
    assert_eq!(got, expected, "every write once, in revision order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_acknowledged_write_across_a_leader_kill_and_a_reconnect() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);

    // Writers through both followers, acknowledged revisions recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<i64, String>>> = Arc::default();
    let mut writers = Vec::new();
    for (w, target) in [a, b].into_iter().enumerate() {
        let mut wc = common::connect(vec![cluster.endpoint(target)]).await;
        let (stop, acked) = (stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("lk/{w}/{i}");
                i += 1;
                if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(6), wc.put(key.clone(), "v", None)).await {
                    acked.lock().unwrap().insert(r.header().unwrap().revision(), key);
                }
            }
        }));
    }
    // One watcher on a follower that survives; it starts from the first
    // revision so nothing written before it was created is missed.
    let mut wc = client(&cluster, a).await;
    let (mut s, _) = watch(&mut wc, "lk/", WatchOptions::new().with_prefix().with_start_revision(1)).await;
    let received: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = s.message().await {
                let mut got = received.lock().unwrap();
                for e in r.events() {
                    let kv = e.kv().unwrap();
                    got.push((kv.mod_revision(), kv.key_str().unwrap().to_string()));
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.kill(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    let killed_at = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < killed_at + 50 {
        assert!(Instant::now() < deadline, "writes did not resume after the leader was killed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let last = *acked.keys().last().unwrap();

    // The surviving watcher: every acknowledged write, once, in order.
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().last().is_none_or(|(rev, _)| *rev < last) {
        assert!(Instant::now() < deadline, "the watcher did not reach revision {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let got = received.lock().unwrap().clone();
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "revisions strictly increase: nothing repeated or reordered");
    let got_map: BTreeMap<i64, String> = got.iter().cloned().collect();
    for (rev, key) in &acked {
        assert_eq!(got_map.get(rev), Some(key), "acknowledged write at {rev} not watched");
    }

    // A client that reconnects to the other follower from the middle of
    // the history resumes with exactly the rest.
    let middle = got[got.len() / 2].0;
    let mut bc = client(&cluster, b).await;
    let (mut s, _) = watch(&mut bc, "lk/", WatchOptions::new().with_prefix().with_start_revision(middle + 1)).await;
    let mut resumed = Vec::new();
    while resumed.last().is_none_or(|(rev, _)| *rev < got.last().unwrap().0) {
        for e in next(&mut s, 20).await.events() {
            let kv = e.kv().unwrap();
            resumed.push((kv.mod_revision(), kv.key_str().unwrap().to_string()));
        }
    }
    let expected: Vec<(i64, String)> = got.iter().filter(|(rev, _)| *rev > middle).cloned().collect();
    assert_eq!(resumed, expected);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_ten_thousand_watchers_get_every_event_with_flat_memory() {
    const STREAMS: usize = 100;
    const PER_STREAM: usize = 100;
    const KEYS: usize = STREAMS * PER_STREAM;
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let member = 0;
    let pid = cluster.pid(member).unwrap();
    let received: Arc<Mutex<BTreeMap<i64, Vec<i64>>>> = Arc::default();
    let mut readers = Vec::new();
    let mut c = client(&cluster, member).await;
    for s in 0..STREAMS {
        // Watch ids are the key's number + 1 (0 asks the server to choose).
        let first = s * PER_STREAM;
        let opts = |i: usize| WatchOptions::new().with_watch_id(i as i64 + 1);
        let mut stream = c.watch(format!("soak/{first}"), Some(opts(first))).await.unwrap();
        for i in first + 1..first + PER_STREAM {
            stream.watch(format!("soak/{i}"), Some(opts(i))).await.unwrap();
        }
        let mut created = 0;
        while created < PER_STREAM {
            let r = next(&mut stream, 30).await;
            assert!(r.created() && !r.canceled(), "{r:?}");
            created += 1;
        }
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Ok(Some(r)) = stream.message().await {
                let mut got = received.lock().unwrap();
                let revs = got.entry(r.watch_id()).or_default();
                revs.extend(r.events().iter().map(|e| e.kv().unwrap().mod_revision()));
            }
        }));
    }
    let baseline = rss_kib(pid);

    // Writes to random watched keys, sampling memory, until enough writes
    // are made (a count, not a time: under load the writes are slower).
    const WRITES: usize = 1500;
    let stop = Arc::new(AtomicBool::new(false));
    let written: Arc<Mutex<BTreeMap<i64, Vec<i64>>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let mut wc = client(&cluster, member).await;
        let (stop, written) = (stop.clone(), written.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w);
            while !stop.load(Ordering::Relaxed) {
                let k = rng.usize(0..KEYS);
                let r = wc.put(format!("soak/{k}"), "v", None).await.unwrap();
                written.lock().unwrap().entry(k as i64 + 1).or_default().push(r.header().unwrap().revision());
            }
        }));
    }
    let mut peak = baseline;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut samples = 0;
    while samples < 12 || written.lock().unwrap().values().map(Vec::len).sum::<usize>() < WRITES {
        assert!(Instant::now() < deadline, "fewer than {WRITES} writes in 300 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(rss_kib(pid));
        samples += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let mut written = written.lock().unwrap().clone();
    let writes: usize = written.values().map(Vec::len).sum();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let delivered: usize = received.lock().unwrap().values().map(Vec::len).sum();
        if delivered >= writes {
            break;
        }
        assert!(Instant::now() < deadline, "{delivered} of {writes} events delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in readers {
        r.abort();
    }
    let mut received = received.lock().unwrap().clone();
    for revs in written.values_mut() {
        revs.sort();
    }
    received.retain(|_, revs| !revs.is_empty());
    assert_eq!(received, written, "every watcher got exactly the writes to its key, in order");
    let end = rss_kib(pid);
    eprintln!("soak: {KEYS} watchers, {writes} writes; member RSS {baseline} KiB after setup, peak {peak}, end {end}");
    assert!(peak < baseline + 64 * 1024, "memory grew from {baseline} KiB to {peak} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_vanishing_mid_stream_harm_no_other_watcher() {
    let cluster = Cluster::start(1);
    cluster.wait_ready().await;
    let mut steady = client(&cluster, 0).await;
    let (mut kept, _) = watch(&mut steady, "v/", WatchOptions::new().with_prefix()).await;
    let mut writer = client(&cluster, 0).await;
    for round in 0..5 {
        // Clients that open watchers, one that never reads, then vanish
        // with responses in flight.
        let mut gone = Vec::new();
        for _ in 0..4 {
            let mut c = client(&cluster, 0).await;
            let mut s = c.watch("v/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
            for i in 0..20 {
                s.watch(format!("v/{i}"), None).await.unwrap();
            }
            gone.push((c, s));
        }
        let rev = writer.put(format!("v/{round}"), "x".repeat(1000), None).await.unwrap().header().unwrap().revision();
        drop(gone);
        let r = next(&mut kept, 10).await;
        assert_eq!(seen(&r).iter().map(|e| e.0).collect::<Vec<_>>(), vec![rev]);
    }
    let log = cluster.log(0);
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_its_side_of_the_stream_still_hears_its_watchers() {
    // etcd's recvLoop ends at the client's CloseSend without ending the
    // stream; the HTTP gateway half-closes at the end of every request body.
    let cluster = Cluster::start(1);
    cluster.wait_ready().await;
    let mut c = client(&cluster, 0).await;
    let (stream, _) = watch(&mut c, "half/", WatchOptions::new().with_prefix()).await;
    let (sender, mut responses) = stream.split();
    drop(sender);
    let revision = c.put("half/a", "1", None).await.unwrap().header().unwrap().revision();
    let event = match tokio::time::timeout(Duration::from_secs(10), responses.message()).await {
        Ok(Ok(Some(r))) => r,
        other => panic!("no event after the client closed its side: {other:?}"),
    };
    assert_eq!(seen(&event), vec![(revision, "half/a".to_string(), true, "1".to_string(), None)]);
}
