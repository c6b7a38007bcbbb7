//! Differential test of leases: Debian's etcd is the specification.
//!
//! The same seeded random sequence of lease requests (grant, revoke,
//! keep-alive, time-to-live with and without keys, list) mixed with puts
//! with and without leases (and `ignore_lease`), deletes, ranges and txns
//! that compare a key's lease goes to a fresh single-node etcd and a fresh
//! single-node synod; every response must be equal field by field, errors
//! by gRPC code and message. What may differ is normalised first: header
//! ids (per deployment), the order of the lease list (etcd lists by expiry)
//! and of a lease's keys (etcd's come from a Go map, in random order)
//! and the remaining seconds of a live lease (a clock reading; only whether
//! the lease exists, TTL -1 or not, is compared). TTLs are long (no lease
//! expires during a run) and lease IDs explicit (etcd picks random ones).
//!
//! Environment: `SYNOD_BIN`, `ETCD_BIN` as for the KV differential test;
//! `DIFF_LEASE_SEEDS` (8), `DIFF_LEASE_OPS` (150).

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest,
    PbLeaseKeepAliveResponse, PbLeaseLeasesRequest, PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse, PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse,
    PbResponseHeader, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};
use synod_loadgen::node::{sibling_binary, start_single, Node};
use synod_loadgen::raw::RawKv;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Grant(PbLeaseGrantRequest),
    Revoke(PbLeaseRevokeRequest),
    KeepAlive(i64),
    TimeToLive(PbLeaseTimeToLiveRequest),
    Leases,
    Put(PbPutRequest),
    Delete(PbDeleteRequest),
    Range(PbRangeRequest),
    Txn(PbTxnRequest),
}

#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Grant(PbLeaseGrantResponse),
    Revoke(PbLeaseRevokeResponse),
    KeepAlive(PbLeaseKeepAliveResponse),
    TimeToLive(PbLeaseTimeToLiveResponse),
    Leases(PbLeaseLeasesResponse),
    Put(PbPutResponse),
    Delete(PbDeleteResponse),
    Range(PbRangeResponse),
    Txn(PbTxnResponse),
}

type Outcome = Result<Reply, (tonic::Code, String)>;

const KEYS: &[&[u8]] = &[b"a", b"b", b"c", b"d", b"e"];
/// Lease IDs requests name; the last is never granted.
const LEASES: &[i64] = &[1, 2, 3, 0x7fff_0000_0000_0001, 99];

struct Generator {
    rng: fastrand::Rng,
}

impl Generator {
    fn key(&mut self) -> Vec<u8> {
        KEYS[self.rng.usize(..KEYS.len())].to_vec()
    }

    fn lease(&mut self) -> i64 {
        LEASES[self.rng.usize(..LEASES.len())]
    }

    /// A lease for a put: often none.
    fn put_lease(&mut self) -> i64 {
        if self.rng.u32(0..100) < 30 {
            0
        } else {
            self.lease()
        }
    }

    fn put(&mut self) -> PbPutRequest {
        let ignore_lease = self.rng.u32(0..100) < 10;
        PbPutRequest {
            key: self.key(),
            value: format!("v{}", self.rng.u32(0..100)).into_bytes(),
            lease: if ignore_lease { 0 } else { self.put_lease() },
            prev_kv: self.rng.bool(),
            ignore_value: false,
            ignore_lease,
        }
    }

    fn next(&mut self) -> Op {
        match self.rng.u32(0..100) {
            0..=14 => {
                // Long TTLs: nothing expires during a run. One in five is
                // above etcd's maximum.
                let ttl = [100, 600, 3600, 86_400, 9_000_000_001][self.rng.usize(..5)];
                Op::Grant(PbLeaseGrantRequest { ttl, id: self.lease() })
            }
            15..=24 => Op::Revoke(PbLeaseRevokeRequest { id: self.lease() }),
            25..=32 => Op::KeepAlive(self.lease()),
            33..=42 => Op::TimeToLive(PbLeaseTimeToLiveRequest { id: self.lease(), keys: self.rng.bool() }),
            43..=46 => Op::Leases,
            47..=71 => Op::Put(self.put()),
            72..=79 => Op::Delete(PbDeleteRequest { key: self.key(), prev_kv: self.rng.bool(), ..Default::default() }),
            80..=86 => Op::Range(PbRangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }),
            _ => {
                // If the key is held by this lease, put another key with a
                // lease, else delete it.
                let compare = PbCompare {
                    result: 0, // EQUAL
                    target: 4, // LEASE
                    key: self.key(),
                    range_end: Vec::new(),
                    target_union: Some(PbTargetUnion::Lease(self.put_lease())),
                };
                let success = PbTxnRequestOp { request: Some(PbTxnOpRequest::RequestPut(self.put())) };
                let failure = PbTxnRequestOp {
                    request: Some(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                        key: self.key(),
                        ..Default::default()
                    })),
                };
                Op::Txn(PbTxnRequest { compare: vec![compare], success: vec![success], failure: vec![failure] })
            }
        }
    }
}

/// Drops what may differ between two correct servers (see the module doc).
fn normalize(outcome: &Outcome) -> Outcome {
    fn strip(header: &mut Option<PbResponseHeader>) {
        if let Some(h) = header {
            h.cluster_id = 0;
            h.member_id = 0;
            h.raft_term = 0;
        }
    }
    let mut outcome = outcome.clone();
    if let Ok(reply) = &mut outcome {
        match reply {
            Reply::Grant(r) => strip(&mut r.header),
            Reply::Revoke(r) => strip(&mut r.header),
            Reply::KeepAlive(r) => strip(&mut r.header),
            Reply::TimeToLive(r) => {
                strip(&mut r.header);
                if r.ttl >= 0 {
                    r.ttl = 1;
                }
                r.keys.sort();
            }
            Reply::Leases(r) => {
                strip(&mut r.header);
                r.leases.sort_by_key(|l| l.id);
            }
            Reply::Put(r) => strip(&mut r.header),
            Reply::Delete(r) => strip(&mut r.header),
            Reply::Range(r) => strip(&mut r.header),
            Reply::Txn(r) => {
                strip(&mut r.header);
                for op in &mut r.responses {
                    match &mut op.response {
                        Some(PbTxnOpResponse::ResponsePut(r)) => strip(&mut r.header),
                        Some(PbTxnOpResponse::ResponseDeleteRange(r)) => strip(&mut r.header),
                        Some(PbTxnOpResponse::ResponseRange(r)) => strip(&mut r.header),
                        Some(PbTxnOpResponse::ResponseTxn(r)) => strip(&mut r.header),
                        None => {}
                    }
                }
            }
        }
    }
    outcome
}

/// One server: its KV client and a channel for the Lease service.
struct Server {
    node: Node,
    kv: RawKv,
    lease: Grpc<Channel>,
}

impl Server {
    async fn start(binary: &Path, dir: &Path) -> Server {
        let (node, kv) = start_single(binary, dir).await.unwrap_or_else(|e| panic!("{e:#}"));
        let url = node.client_url();
        let channel = Endpoint::from_shared(url).expect("client URL").connect().await.expect("connect");
        Server { node, kv, lease: Grpc::new(channel) }
    }

    async fn unary<Req, Resp>(&mut self, path: &'static str, request: Req) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.lease.ready().await.map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
        let path = PathAndQuery::from_static(path);
        Ok(self.lease.unary(tonic::Request::new(request), path, ProstCodec::<Req, Resp>::default()).await?.into_inner())
    }

    /// One keep-alive on a stream of its own.
    async fn keep_alive(&mut self, id: i64) -> Result<PbLeaseKeepAliveResponse, tonic::Status> {
        self.lease.ready().await.map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
        let path = PathAndQuery::from_static("/etcdserverpb.Lease/LeaseKeepAlive");
        let codec = ProstCodec::<PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse>::default();
        let once = tonic::codegen::tokio_stream::once(PbLeaseKeepAliveRequest { id });
        let mut responses = self.lease.streaming(tonic::Request::new(once), path, codec).await?.into_inner();
        responses.message().await?.ok_or_else(|| tonic::Status::unknown("harness: keep-alive stream closed"))
    }

    async fn send(&mut self, op: &Op) -> Outcome {
        let call = async {
            match op.clone() {
                Op::Grant(r) => self.unary("/etcdserverpb.Lease/LeaseGrant", r).await.map(Reply::Grant),
                Op::Revoke(r) => self.unary("/etcdserverpb.Lease/LeaseRevoke", r).await.map(Reply::Revoke),
                Op::KeepAlive(id) => self.keep_alive(id).await.map(Reply::KeepAlive),
                Op::TimeToLive(r) => self.unary("/etcdserverpb.Lease/LeaseTimeToLive", r).await.map(Reply::TimeToLive),
                Op::Leases => {
                    self.unary("/etcdserverpb.Lease/LeaseLeases", PbLeaseLeasesRequest {}).await.map(Reply::Leases)
                }
                Op::Put(r) => self.kv.put(r).await.map(Reply::Put),
                Op::Delete(r) => self.kv.delete_range(r).await.map(Reply::Delete),
                Op::Range(r) => self.kv.range(r).await.map(Reply::Range),
                Op::Txn(r) => self.kv.txn(r).await.map(Reply::Txn),
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), call).await {
            Ok(result) => result.map_err(|status| (status.code(), status.message().to_string())),
            Err(_) => Err((tonic::Code::DeadlineExceeded, "harness: no answer within 10 s".into())),
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn synod_binary() -> PathBuf {
    sibling_binary("synod", "SYNOD_BIN")
}

/// The first disagreement of a seed, described; None if none.
async fn run_seed(etcd_bin: &Path, synod_bin: &Path, seed: u64, ops: usize, kinds: &mut Vec<String>) -> Option<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (etcd_dir, synod_dir) = (dir.path().join("etcd"), dir.path().join("synod"));
    let (mut etcd, mut synod) = tokio::join!(Server::start(etcd_bin, &etcd_dir), Server::start(synod_bin, &synod_dir));
    let mut generator = Generator { rng: fastrand::Rng::with_seed(seed) };
    for index in 0..ops {
        let op = generator.next();
        let expected = etcd.send(&op).await;
        let actual = synod.send(&op).await;
        let name = format!("{op:?}");
        let name = name.split('(').next().unwrap_or("?");
        let kind = match &expected {
            Ok(_) => format!("{name} ok"),
            Err((code, message)) => format!("{name}: {code:?} {message}"),
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
        if normalize(&expected) != normalize(&actual) {
            return Some(format!(
                "seed {seed} op #{index}: {op:#?}\n-- etcd:\n{:#?}\n-- synod:\n{:#?}\n-- synod log:\n{}",
                normalize(&expected),
                normalize(&actual),
                synod.node.log_tail()
            ));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synod_answers_every_lease_request_exactly_as_etcd_does() {
    let etcd_bin = PathBuf::from(std::env::var_os("ETCD_BIN").unwrap_or("/usr/bin/etcd".into()));
    assert!(etcd_bin.exists(), "etcd not found at {}: run scripts/setup or set ETCD_BIN", etcd_bin.display());
    let synod_bin = synod_binary();
    assert!(
        synod_bin.exists(),
        "synod binary not found at {}: build it with `cargo build --release -p synod-server` or set SYNOD_BIN",
        synod_bin.display()
    );
    let seeds: u64 = env_or("DIFF_LEASE_SEEDS", 8);
    let ops: usize = env_or("DIFF_LEASE_OPS", 150);
    let mut kinds = Vec::new();
    let mut mismatches = Vec::new();
    for seed in 0..seeds {
        if let Some(m) = run_seed(&etcd_bin, &synod_bin, seed, ops, &mut kinds).await {
            mismatches.push(m);
        }
    }
    kinds.sort();
    eprintln!("lease differential: {seeds} seeds x {ops} ops; outcomes seen at etcd:\n  {}", kinds.join("\n  "));
    assert!(mismatches.is_empty(), "synod disagreed with etcd:\n\n{}", mismatches.join("\n\n"));
    // The sequence must reach both sides of the interesting paths.
    for needed in ["Grant ok", "Revoke ok", "KeepAlive ok", "TimeToLive ok", "requested lease not found"] {
        assert!(kinds.iter().any(|k| k.contains(needed)), "no outcome {needed:?} in {kinds:?}");
    }
}

#[test]
fn normalising_keeps_what_must_agree() {
    let ttl = |ttl, keys: &[&[u8]]| {
        Ok(Reply::TimeToLive(PbLeaseTimeToLiveResponse {
            header: Some(PbResponseHeader { cluster_id: 1, member_id: 2, revision: 5, raft_term: 3 }),
            id: 1,
            ttl,
            granted_ttl: 100,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
        }))
    };
    assert_eq!(normalize(&ttl(99, &[b"a"])), normalize(&ttl(100, &[b"a"])));
    assert_ne!(normalize(&ttl(99, &[b"a"])), normalize(&ttl(-1, &[b"a"])));
    assert_ne!(normalize(&ttl(99, &[b"a"])), normalize(&ttl(99, &[b"b"])));
    assert_eq!(normalize(&ttl(99, &[b"a", b"b"])), normalize(&ttl(99, &[b"b", b"a"])));
}
