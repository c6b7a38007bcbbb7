//! Differential test: Debian's etcd is the specification.
//!
//! The same seeded random sequence of KV requests (Put, Range, DeleteRange,
//! Txn, Compact, with every option etcd 3.4 has) goes to a fresh single-node
//! etcd and to a fresh single-node synod; every response must be equal field
//! by field (header ids aside: cluster_id, member_id and raft_term are
//! per-deployment), and every error must carry the same gRPC code and
//! message. A seed stops at its first mismatch, since the two stores may
//! have diverged from there; the failure lists every seed's first mismatch
//! with the request and both answers, and the seed reproduces it exactly.
//!
//! Environment: `SYNOD_BIN` (default: `synod` next to this test's target
//! profile directory), `ETCD_BIN` (default `/usr/bin/etcd`; pointing
//! `SYNOD_BIN` at etcd too checks the harness itself), `DIFF_SEEDS` (20),
//! `DIFF_OPS` (200), `DIFF_FIRST_SEED` (0), `DIFF_TIME_LIMIT` seconds (300).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbCompare, PbDeleteRequest, PbDeleteResponse, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbResponseHeader, PbResponseOp, PbTargetUnion, PbTxnOpRequest,
    PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use synod_loadgen::node::{sibling_binary, start_single, Node};
use synod_loadgen::raw::{prefix_end, RawKv};

/// One request of the sequence.
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Range(PbRangeRequest),
    Put(PbPutRequest),
    Delete(PbDeleteRequest),
    Txn(PbTxnRequest),
    Compact(PbCompactionRequest),
}

/// One successful response.
#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Range(PbRangeResponse),
    Put(PbPutResponse),
    Delete(PbDeleteResponse),
    Txn(PbTxnResponse),
    Compact(PbCompactionResponse),
}

/// A response or the gRPC error (code and message) it failed with.
type Outcome = Result<Reply, (tonic::Code, String)>;

// ---------------------------------------------------------------------------
// Request generation

/// Few keys, sharing prefixes, so that ranges, prefixes and transactions
/// overlap often; 0xff keys exercise prefix ends that wrap.
///
/// At most 12: etcd sorts a range with Go's `sort.Sort`, which is unstable
/// above 12 elements (pdqsort) but an insertion sort, so stable, up to 12.
/// The order of ties is not part of etcd's contract, so no result may be
/// long enough for it to depend on Go's sort internals.
const KEYS: &[&[u8]] =
    &[b"a", b"ab", b"abc", b"b", b"c", b"foo", b"foo/1", b"foo/2", b"fop", b"z", b"\xff", b"\xff\xff"];
const VALUES: &[&[u8]] = &[b"", b"v", b"value", b"another value", b"\x00\x01bin"];

/// A seeded request generator that tracks the store's revision (from the
/// reference server's answers) so revisions it asks for are interesting.
struct Generator {
    rng: fastrand::Rng,
    revision: i64,
    compacted: i64,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator { rng: fastrand::Rng::with_seed(seed), revision: 1, compacted: 0 }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(0..100) < percent
    }

    fn key(&mut self) -> Vec<u8> {
        KEYS[self.rng.usize(0..KEYS.len())].to_vec()
    }

    fn value(&mut self) -> Vec<u8> {
        VALUES[self.rng.usize(0..VALUES.len())].to_vec()
    }

    /// A revision around the interesting ones: compacted, current, future.
    fn revision(&mut self) -> i64 {
        let low = (self.compacted - 2).max(1);
        self.rng.i64(low..=self.revision + 2)
    }

    /// Key and range_end: one key, a prefix, from-key, all keys, or an
    /// explicit (possibly empty or inverted) interval.
    fn interval(&mut self) -> (Vec<u8>, Vec<u8>) {
        let key = self.key();
        match self.rng.u32(0..100) {
            0..=39 => (key, vec![]),
            40..=59 => {
                let end = prefix_end(&key);
                (key, end)
            }
            60..=72 => (key, vec![0]),
            73..=77 => (vec![0], vec![0]),
            _ => {
                let end = self.key();
                (key, end)
            }
        }
    }

    fn next(&mut self) -> Op {
        match self.rng.u32(0..100) {
            0..=34 => Op::Range(self.range()),
            35..=64 => Op::Put(self.put()),
            65..=74 => Op::Delete(self.delete()),
            75..=95 => Op::Txn(self.txn(true)),
            _ => Op::Compact(self.compact()),
        }
    }

    fn range(&mut self) -> PbRangeRequest {
        let (mut key, range_end) = self.interval();
        if self.chance(3) {
            key.clear();
        }
        let optional = |g: &mut Self, percent| if g.chance(percent) { g.revision() } else { 0 };
        PbRangeRequest {
            key,
            range_end,
            limit: if self.chance(40) { self.rng.i64(1..=4) } else { 0 },
            revision: optional(self, 30),
            sort_order: if self.chance(50) { self.rng.i32(0..3) } else { 0 },
            sort_target: if self.chance(50) { self.rng.i32(0..5) } else { 0 },
            serializable: self.chance(30),
            keys_only: self.chance(15),
            count_only: self.chance(10),
            min_mod_revision: optional(self, 10),
            max_mod_revision: optional(self, 10),
            min_create_revision: optional(self, 10),
            max_create_revision: optional(self, 10),
        }
    }

    fn put(&mut self) -> PbPutRequest {
        let mut key = self.key();
        if self.chance(3) {
            key.clear();
        }
        let ignore_value = self.chance(10);
        PbPutRequest {
            key,
            // ignore_value is only valid without a value.
            value: if ignore_value { vec![] } else { self.value() },
            lease: 0,
            prev_kv: self.chance(50),
            ignore_value,
            ignore_lease: self.chance(10),
        }
    }

    fn delete(&mut self) -> PbDeleteRequest {
        let (key, range_end) = self.interval();
        PbDeleteRequest { key, range_end, prev_kv: self.chance(50) }
    }

    fn compare(&mut self) -> PbCompare {
        let key = self.key();
        let range_end = if self.chance(15) { prefix_end(&key) } else { vec![] };
        let target = self.rng.i32(0..5);
        let target_union = match target {
            0 => PbTargetUnion::Version(self.rng.i64(0..4)),
            1 => PbTargetUnion::CreateRevision(self.rng.i64(0..=self.revision)),
            2 => PbTargetUnion::ModRevision(self.rng.i64(0..=self.revision)),
            3 => PbTargetUnion::Value(self.value()),
            _ => PbTargetUnion::Lease(0),
        };
        PbCompare { result: self.rng.i32(0..4), target, key, range_end, target_union: Some(target_union) }
    }

    fn txn(&mut self, allow_nested: bool) -> PbTxnRequest {
        let compare = (0..self.rng.usize(0..=2)).map(|_| self.compare()).collect();
        let branch = |g: &mut Self| -> Vec<PbTxnRequestOp> {
            (0..g.rng.usize(0..=2))
                .map(|_| {
                    let request = match g.rng.u32(0..100) {
                        0..=34 => PbTxnOpRequest::RequestPut(g.put()),
                        35..=54 => PbTxnOpRequest::RequestDeleteRange(g.delete()),
                        55..=94 => PbTxnOpRequest::RequestRange(g.range()),
                        _ if allow_nested => PbTxnOpRequest::RequestTxn(g.txn(false)),
                        _ => PbTxnOpRequest::RequestRange(g.range()),
                    };
                    PbTxnRequestOp { request: Some(request) }
                })
                .collect()
        };
        let mut success = branch(self);
        let mut failure = branch(self);
        // etcd 3.4 checks ignore_value/ignore_lease puts against the store as
        // it was before the txn; a delete earlier in the same txn then makes
        // the put fail mid-apply, and etcd panics ("unexpected error during
        // txn: etcdserver: key not found"). The reference must not crash, so
        // such a txn gets plain puts.
        for ops in [&mut success, &mut failure] {
            if deletes(ops) {
                plain_puts(ops);
            }
        }
        PbTxnRequest { compare, success, failure }
    }

    fn compact(&mut self) -> PbCompactionRequest {
        let revision = match self.rng.u32(0..100) {
            0..=69 if self.revision > self.compacted => self.rng.i64(self.compacted + 1..=self.revision),
            0..=84 => self.rng.i64(0..=self.compacted.max(1)),
            _ => self.revision + self.rng.i64(1..=3),
        };
        PbCompactionRequest { revision, physical: self.chance(50) }
    }

    /// Learns the store's revision from the reference answer.
    fn observe(&mut self, op: &Op, outcome: &Outcome) {
        if let Ok(reply) = outcome {
            if let Some(header) = header(reply) {
                self.revision = self.revision.max(header.revision);
            }
        }
        if let (Op::Compact(request), Ok(_)) = (op, outcome) {
            self.compacted = self.compacted.max(request.revision);
        }
    }
}

/// Whether `ops` delete anything, nested transactions included.
fn deletes(ops: &[PbTxnRequestOp]) -> bool {
    ops.iter().any(|op| match &op.request {
        Some(PbTxnOpRequest::RequestDeleteRange(_)) => true,
        Some(PbTxnOpRequest::RequestTxn(txn)) => deletes(&txn.success) || deletes(&txn.failure),
        _ => false,
    })
}

/// Clears ignore_value and ignore_lease on every put in `ops`.
fn plain_puts(ops: &mut [PbTxnRequestOp]) {
    for op in ops {
        match &mut op.request {
            Some(PbTxnOpRequest::RequestPut(put)) => {
                put.ignore_value = false;
                put.ignore_lease = false;
            }
            Some(PbTxnOpRequest::RequestTxn(txn)) => {
                plain_puts(&mut txn.success);
                plain_puts(&mut txn.failure);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Comparison

fn header(reply: &Reply) -> Option<&PbResponseHeader> {
    match reply {
        Reply::Range(r) => r.header.as_ref(),
        Reply::Put(r) => r.header.as_ref(),
        Reply::Delete(r) => r.header.as_ref(),
        Reply::Txn(r) => r.header.as_ref(),
        Reply::Compact(r) => r.header.as_ref(),
    }
}

/// Clears what legitimately differs between two deployments: the header's
/// cluster and member ids and raft term, at every nesting level.
fn strip_ids(reply: &mut Reply) {
    fn strip(header: &mut Option<PbResponseHeader>) {
        if let Some(h) = header {
            h.cluster_id = 0;
            h.member_id = 0;
            h.raft_term = 0;
        }
    }
    fn strip_txn(txn: &mut PbTxnResponse) {
        strip(&mut txn.header);
        for op in &mut txn.responses {
            strip_op(op);
        }
    }
    fn strip_op(op: &mut PbResponseOp) {
        match &mut op.response {
            Some(PbTxnOpResponse::ResponseRange(r)) => strip(&mut r.header),
            Some(PbTxnOpResponse::ResponsePut(r)) => strip(&mut r.header),
            Some(PbTxnOpResponse::ResponseDeleteRange(r)) => strip(&mut r.header),
            Some(PbTxnOpResponse::ResponseTxn(r)) => strip_txn(r),
            None => {}
        }
    }
    match reply {
        Reply::Range(r) => strip(&mut r.header),
        Reply::Put(r) => strip(&mut r.header),
        Reply::Delete(r) => strip(&mut r.header),
        Reply::Txn(r) => strip_txn(r),
        Reply::Compact(r) => strip(&mut r.header),
    }
}

/// None if the two outcomes agree; otherwise where they first differ, with
/// context, as lines of their pretty-printed forms.
fn difference(reference: &Outcome, candidate: &Outcome) -> Option<String> {
    let normalize = |outcome: &Outcome| {
        let mut outcome = outcome.clone();
        if let Ok(reply) = &mut outcome {
            strip_ids(reply);
        }
        outcome
    };
    let (a, b) = (normalize(reference), normalize(candidate));
    if a == b {
        return None;
    }
    synod_loadgen::compare::first_difference(&format!("{a:#?}"), &format!("{b:#?}"), 6)
}

// ---------------------------------------------------------------------------
// Driving two servers

async fn send(kv: &mut RawKv, op: &Op) -> Outcome {
    let call = async {
        match op.clone() {
            Op::Range(r) => kv.range(r).await.map(Reply::Range),
            Op::Put(r) => kv.put(r).await.map(Reply::Put),
            Op::Delete(r) => kv.delete_range(r).await.map(Reply::Delete),
            Op::Txn(r) => kv.txn(r).await.map(Reply::Txn),
            Op::Compact(r) => kv.compact(r).await.map(Reply::Compact),
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Ok(result) => result.map_err(|status| (status.code(), status.message().to_string())),
        Err(_) => Err((tonic::Code::DeadlineExceeded, "harness: no answer within 10 s".into())),
    }
}

/// A broken connection (a crashed or hung server) is never an answer.
fn lost_connection(outcome: &Outcome) -> bool {
    matches!(outcome, Err((code, message))
        if matches!(code, tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
            && (message.contains("transport") || message.starts_with("harness:")))
}

/// The first disagreement of one seed.
struct Mismatch {
    seed: u64,
    index: usize,
    op: Op,
    detail: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn synod_binary() -> PathBuf {
    sibling_binary("synod", "SYNOD_BIN")
}

async fn start(binary: &Path, dir: &Path) -> (Node, RawKv) {
    start_single(binary, dir).await.unwrap_or_else(|e| panic!("{e:#}"))
}

/// How often each kind of request succeeded or failed (and with which
/// message) at the reference, to show the sequence explores both paths.
type Tally = std::collections::BTreeMap<String, usize>;

fn tally(tally: &mut Tally, op: &Op, outcome: &Outcome) {
    let kind = match op {
        Op::Range(_) => "range",
        Op::Put(_) => "put",
        Op::Delete(_) => "delete",
        Op::Txn(_) => "txn",
        Op::Compact(_) => "compact",
    };
    let result = match outcome {
        Ok(Reply::Txn(t)) if t.succeeded => "ok (success branch)".to_string(),
        Ok(Reply::Txn(_)) => "ok (failure branch)".to_string(),
        Ok(_) => "ok".to_string(),
        Err((code, message)) => format!("{code:?}: {message}"),
    };
    *tally.entry(format!("{kind} {result}")).or_default() += 1;
}

async fn run_seed(etcd_bin: &Path, synod_bin: &Path, seed: u64, ops: usize, counts: &mut Tally) -> Option<Mismatch> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (etcd_dir, synod_dir) = (dir.path().join("etcd"), dir.path().join("synod"));
    let ((etcd, mut reference), (synod, mut candidate)) =
        tokio::join!(start(etcd_bin, &etcd_dir), start(synod_bin, &synod_dir));
    let mut generator = Generator::new(seed);
    for index in 0..ops {
        let op = generator.next();
        let expected = send(&mut reference, &op).await;
        let actual = send(&mut candidate, &op).await;
        tally(counts, &op, &expected);
        if let Some(detail) = difference(&expected, &actual) {
            let mut detail = detail;
            for (name, node, outcome) in [("etcd", &etcd, &expected), ("synod", &synod, &actual)] {
                if lost_connection(outcome) {
                    detail += &format!("\n-- {name} lost the connection; its log ends:\n{}", node.log_tail());
                }
            }
            return Some(Mismatch { seed, index, op, detail });
        }
        assert!(
            !lost_connection(&expected),
            "seed {seed} op #{index}: both servers dropped the connection on {op:#?}\netcd log ends:\n{}",
            etcd.log_tail()
        );
        generator.observe(&op, &expected);
    }
    compare_watches(seed, ops, &etcd, &mut reference, &synod, &mut candidate, generator.compacted).await
}

// ---------------------------------------------------------------------------
// Watches: what a watcher of the seed's history sees, event by event.

/// One watcher of the comparison: its key range, filters and where it
/// starts, and the revision of the last event it must see.
struct WatchCase {
    name: &'static str,
    options: etcd_client::WatchOptions,
    key: &'static [u8],
}

/// An event as a watcher sees it: type, key-value and previous key-value,
/// every field.
type SeenEvent = (i32, String, Option<String>);

fn describe(kv: &etcd_client::KeyValue) -> String {
    format!(
        "{:?}={:?} create={} mod={} version={} lease={}",
        String::from_utf8_lossy(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease()
    )
}

/// Everything a watcher reports until it has seen revision `until` or is
/// cancelled: events, and the cancellation with its compact revision.
async fn watch_until(url: &str, case: &WatchCase, until: i64) -> Result<(Vec<SeenEvent>, Option<i64>), String> {
    let mut client = etcd_client::Client::connect([url], None).await.map_err(|e| format!("connect: {e}"))?;
    let mut stream = client.watch(case.key, Some(case.options.clone())).await.map_err(|e| format!("watch: {e}"))?;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.message()).await;
        let response = match message {
            Ok(Ok(Some(r))) => r,
            other => return Err(format!("{}: no event for revision {until}: {other:?}", case.name)),
        };
        if response.canceled() {
            return Ok((events, Some(response.compact_revision())));
        }
        for e in response.events() {
            let kv = e.kv().expect("every event has a key-value");
            events.push((e.event_type() as i32, describe(kv), e.prev_kv().map(describe)));
            if kv.mod_revision() >= until {
                return Ok((events, None));
            }
        }
    }
}

/// Ends the seed's history with changes every watcher below sees, then
/// compares what each watcher reports at etcd and at synod.
async fn compare_watches(
    seed: u64,
    index: usize,
    etcd: &Node,
    reference: &mut RawKv,
    synod: &Node,
    candidate: &mut RawKv,
    compacted: i64,
) -> Option<Mismatch> {
    use etcd_client::{WatchFilterType, WatchOptions};
    let end = [
        Op::Put(PbPutRequest { key: b"foo/end".to_vec(), value: b"x".to_vec(), ..Default::default() }),
        Op::Put(PbPutRequest { key: b"a".to_vec(), value: b"x".to_vec(), ..Default::default() }),
        Op::Delete(PbDeleteRequest { key: b"a".to_vec(), prev_kv: true, ..Default::default() }),
    ];
    let mut revisions = Vec::new();
    for op in &end {
        let (expected, actual) = (send(reference, op).await, send(candidate, op).await);
        if let Some(detail) = difference(&expected, &actual) {
            return Some(Mismatch { seed, index, op: op.clone(), detail });
        }
        let revision = match expected {
            Ok(Reply::Put(r)) => r.header.map(|h| h.revision),
            Ok(Reply::Delete(r)) => r.header.map(|h| h.revision),
            _ => None,
        };
        revisions.push(revision.expect("the closing writes succeed at etcd"));
    }
    let from = compacted.max(1);
    let cases = [
        // From the first revision: cancelled with the compact revision if
        // the seed compacted, every event with its previous value if not.
        (
            WatchCase {
                name: "all keys from 1",
                options: WatchOptions::new().with_all_keys().with_prev_key().with_start_revision(1),
                key: b"\0",
            },
            revisions[2],
        ),
        (
            WatchCase {
                name: "prefix foo, no deletes",
                options: WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(from)
                    .with_filters([WatchFilterType::NoDelete]),
                key: b"foo",
            },
            revisions[0],
        ),
        (
            WatchCase {
                name: "key a, no puts, prev_kv",
                options: WatchOptions::new()
                    .with_prev_key()
                    .with_start_revision(from)
                    .with_filters([WatchFilterType::NoPut]),
                key: b"a",
            },
            revisions[2],
        ),
        (
            WatchCase {
                name: "all keys from the compaction",
                options: WatchOptions::new().with_all_keys().with_start_revision(from),
                key: b"\0",
            },
            revisions[2],
        ),
    ];
    let (etcd_url, synod_url) = (etcd.client_url(), synod.client_url());
    for (case, until) in &cases {
        let (expected, actual) =
            tokio::join!(watch_until(&etcd_url, case, *until), watch_until(&synod_url, case, *until));
        if expected != actual {
            let detail = format!(
                "watch {:?} (start revision {from} where it is not 1) differs:\n-- etcd:\n{expected:#?}\n-- synod:\n{actual:#?}",
                case.name
            );
            return Some(Mismatch { seed, index, op: end[2].clone(), detail });
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synod_answers_every_kv_request_exactly_as_etcd_does() {
    let etcd_bin = PathBuf::from(std::env::var_os("ETCD_BIN").unwrap_or("/usr/bin/etcd".into()));
    assert!(
        etcd_bin.exists(),
        "etcd not found at {}: run scripts/setup (installs Debian's etcd-server) or set ETCD_BIN",
        etcd_bin.display()
    );
    let synod_bin = synod_binary();
    assert!(
        synod_bin.exists(),
        "synod binary not found at {}: build it first with `cargo build --release -p synod-server` \
         (for `cargo test --release`; `cargo build -p synod-server` for a debug test run), \
         or point SYNOD_BIN at it",
        synod_bin.display()
    );
    let seeds: u64 = env_or("DIFF_SEEDS", 20);
    let first_seed: u64 = env_or("DIFF_FIRST_SEED", 0);
    let ops: usize = env_or("DIFF_OPS", 200);
    let limit = Duration::from_secs(env_or("DIFF_TIME_LIMIT", 300));

    let started = Instant::now();
    let mut mismatches = Vec::new();
    let mut ran = 0;
    let mut counts = Tally::new();
    for seed in first_seed..first_seed + seeds {
        if started.elapsed() > limit {
            break;
        }
        if let Some(mismatch) = run_seed(&etcd_bin, &synod_bin, seed, ops, &mut counts).await {
            mismatches.push(mismatch);
        }
        ran += 1;
    }
    eprintln!(
        "differential: {ran} of {seeds} seeds x {ops} ops in {:.1}s, {} disagreed ({} vs {})",
        started.elapsed().as_secs_f64(),
        mismatches.len(),
        etcd_bin.display(),
        synod_bin.display()
    );
    for (outcome, count) in &counts {
        eprintln!("  {count:>6}  {outcome}");
    }
    assert!(ran > 0, "no seed ran within DIFF_TIME_LIMIT");
    if !mismatches.is_empty() {
        let report: Vec<String> = mismatches
            .iter()
            .map(|m| {
                format!(
                    "seed {} (DIFF_FIRST_SEED={} DIFF_SEEDS=1), op #{}: {:#?}\n{}",
                    m.seed, m.seed, m.index, m.op, m.detail
                )
            })
            .collect();
        panic!("synod disagreed with etcd on {} of {ran} seeds:\n\n{}", mismatches.len(), report.join("\n\n"));
    }
}

// ---------------------------------------------------------------------------
// The harness checks itself: a comparison that cannot fail proves nothing.

fn range_reply(mod_revision: i64, member_id: u64) -> Outcome {
    Ok(Reply::Range(PbRangeResponse {
        header: Some(PbResponseHeader { cluster_id: 7, member_id, revision: 5, raft_term: member_id }),
        kvs: vec![etcd_client::proto::PbKeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision,
            version: 1,
            value: b"v".to_vec(),
            lease: 0,
        }],
        more: false,
        count: 1,
    }))
}

#[test]
fn comparison_reports_a_differing_field() {
    let detail = difference(&range_reply(4, 1), &range_reply(5, 1))
        .expect("responses that differ in mod_revision must be reported");
    assert!(detail.contains(">>") && detail.contains("mod_revision: 4"), "{detail}");
    assert!(detail.contains("mod_revision: 5"), "{detail}");
}

#[test]
fn comparison_reports_differing_errors_and_error_versus_success() {
    let compacted = (tonic::Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into());
    let other = (tonic::Code::OutOfRange, "mvcc: compacted".into());
    assert!(difference(&Err(compacted.clone()), &Err(compacted.clone())).is_none());
    assert!(difference(&Err(compacted.clone()), &Err(other)).is_some());
    assert!(difference(&Err((tonic::Code::InvalidArgument, compacted.1.clone())), &Err(compacted.clone())).is_some());
    assert!(difference(&Err(compacted), &range_reply(4, 1)).is_some());
}

#[test]
fn comparison_ignores_only_deployment_ids_even_inside_transactions() {
    assert!(difference(&range_reply(4, 1), &range_reply(4, 9)).is_none());
    let txn = |member_id: u64, revision: i64| {
        let Ok(Reply::Range(inner)) = range_reply(4, member_id) else { unreachable!() };
        let mut inner = inner;
        inner.header.as_mut().unwrap().revision = revision;
        Ok(Reply::Txn(PbTxnResponse {
            header: Some(PbResponseHeader { cluster_id: member_id, member_id, revision: 5, raft_term: 3 }),
            succeeded: true,
            responses: vec![PbResponseOp { response: Some(PbTxnOpResponse::ResponseRange(inner)) }],
        }))
    };
    assert!(difference(&txn(1, 5), &txn(2, 5)).is_none());
    assert!(difference(&txn(1, 5), &txn(1, 6)).is_some(), "a nested revision is not an id");
}

#[test]
fn a_seed_always_generates_the_same_requests() {
    let ops = |seed| {
        let mut g = Generator::new(seed);
        (0..300).map(|_| g.next()).collect::<Vec<_>>()
    };
    assert_eq!(ops(3), ops(3));
    assert_ne!(ops(3), ops(4));
}

#[test]
fn no_range_can_hold_more_keys_than_go_sorts_stably() {
    assert!(KEYS.len() <= 12);
}
