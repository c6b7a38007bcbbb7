//! Closed-loop workloads against etcd v3 endpoints.
//!
//! `concurrency` tasks each keep exactly one request in flight and issue the
//! next one as soon as the previous one completes, spread round-robin over
//! `connections` etcd clients. Each task records latencies into its own
//! histogram (no lock on the hot path) and the histograms are merged at the
//! end. A run stops at its deadline or once its request budget has
//! been handed out, whichever comes first; requests already in flight finish
//! (bounded by the per-request timeout) and count. Each completion is also
//! counted for the progress line ([`progress`]) and in the second it
//! happened ([`timeline`](crate::timeline)).

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KvClient, LeaseKeepAliveStream,
    LeaseKeeper, LockClient, LockOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::progress::{self, Counters, Reporter};
use crate::record::Interval;
use crate::timeline::{SecondBucket, Timeline};

/// What every request of a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Put one key to a fresh value.
    Put,
    /// Linearizable single-key Range.
    Get,
    /// Serializable single-key Range (served by the contacted member).
    GetSerializable,
    /// Txn: if the key's mod_revision is the last one seen then put it,
    /// else read it (to learn the new mod_revision). Never retried.
    TxnCas,
    /// Puts under the key prefix while `watchers` watchers of the prefix
    /// receive every event; reports events delivered per second.
    WatchFanout,
    /// Each task holds a lease and a keep-alive stream; one request is one
    /// keep-alive answered.
    LeaseKeepalive,
    /// Every task contends for one lock (v3lock) with its own lease; one
    /// request is one acquire and release.
    Lock,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "get",
            Workload::GetSerializable => "get-serializable",
            Workload::TxnCas => "txn-cas",
            Workload::WatchFanout => "watch-fanout",
            Workload::LeaseKeepalive => "lease-keepalive",
            Workload::Lock => "lock",
        }
    }

    /// Reads need keys that exist, or they measure empty ranges.
    pub fn reads_keys(self) -> bool {
        matches!(self, Workload::Get | Workload::GetSerializable)
    }
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct Config {
    /// Client URLs, every client connects to all of them.
    pub endpoints: Vec<String>,
    /// What each request does.
    pub workload: Workload,
    /// Requests in flight at any time.
    pub concurrency: usize,
    /// etcd clients (each with its own connections) the in-flight requests
    /// are spread over; clamped to `concurrency`.
    pub connections: usize,
    /// Stop issuing requests after this long.
    pub duration: Option<Duration>,
    /// Stop after this many requests have been issued.
    pub requests: Option<u64>,
    /// Keys are chosen uniformly from this many.
    pub key_space: u64,
    /// Bytes per written value.
    pub value_size: usize,
    /// Write every key once before a read workload starts.
    pub prefill: bool,
    /// Prefix of every key this run touches.
    pub key_prefix: String,
    /// A request that takes longer counts as an error.
    pub timeout: Duration,
    /// Seeds key choice, so runs are repeatable.
    pub seed: u64,
    /// watch-fanout: watchers of the key prefix, spread over the clients.
    pub watchers: usize,
    /// TLS for https:// endpoints (none: plaintext http:// only).
    pub tls: Option<Tls>,
    /// Authenticate as this user (name, password): every request then
    /// carries the token the server hands out.
    pub user: Option<(String, String)>,
    /// Print a progress line to stderr this often while the load runs
    /// (none: quiet).
    pub progress: Option<Duration>,
}

/// What a client needs to speak TLS to the endpoints, as PEM.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The CA the servers' certificates must chain to.
    pub ca: Vec<u8>,
    /// A client certificate and its key, for servers that require one
    /// (`--client-cert-auth`, or etcd's `--trusted-ca-file`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Tls {
    /// Reads the CA and, if given, the client certificate and key.
    pub fn read(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Tls> {
        let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
        Ok(Tls {
            ca: read(ca)?,
            identity: identity.map(|(cert, key)| Ok::<_, anyhow::Error>((read(cert)?, read(key)?))).transpose()?,
        })
    }
}

impl Config {
    fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            bail!("no endpoints given");
        }
        if self.concurrency == 0 || self.connections == 0 {
            bail!("concurrency and connections must be at least 1");
        }
        if self.key_space == 0 {
            bail!("key space must be at least 1");
        }
        if self.duration.is_none() && self.requests.is_none() {
            bail!("a run needs a duration or a request count");
        }
        if self.progress.is_some_and(|every| every.is_zero()) {
            bail!("the progress interval must be positive");
        }
        Ok(())
    }

    /// The options every client of the run connects with.
    fn connect_options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new();
        if let Some(tls) = &self.tls {
            let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(config);
        }
        if let Some((name, password)) = &self.user {
            options = options.with_user(name.clone(), password.clone());
        }
        options
    }
}

/// Latency percentiles of the successful requests, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest request.
    pub max: f64,
}

/// The one JSON line a run prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Workload name, as on the command line.
    pub workload: String,
    /// The endpoints driven.
    pub endpoints: Vec<String>,
    /// Requests in flight.
    pub concurrency: usize,
    /// etcd clients used.
    #[serde(default)]
    pub connections: usize,
    /// Requests that succeeded (a txn-cas whose compare failed succeeded).
    pub requests: u64,
    /// Requests that returned an error or timed out.
    pub errors: u64,
    /// Wall-clock seconds from the first request to the last completion.
    pub seconds: f64,
    /// `requests / seconds`.
    pub throughput_ops_s: f64,
    /// Percentiles over the successful requests.
    pub latency_ms: Latency,
    /// txn-cas only: transactions whose compare held (the put happened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_succeeded: Option<u64>,
    /// txn-cas only: transactions whose compare failed (someone else wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn_failed: Option<u64>,
    /// watch-fanout only: events delivered to all watchers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_delivered: Option<u64>,
    /// watch-fanout only: events delivered per second, from the first put
    /// to the last event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_s: Option<f64>,
}

/// What a run measured: the report line, and the run's timeline.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Totals and percentiles, the line `synod-bench` prints.
    pub report: Report,
    /// One interval per second of the run.
    pub timeline: Vec<Interval>,
    /// When the measured part began, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

/// What one task counted.
struct Tally {
    histogram: Histogram<u64>,
    errors: u64,
    cas_succeeded: u64,
    cas_failed: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Result<Self> {
        Ok(Tally {
            // 1 µs to 10 min at 3 significant digits: well under 1 MiB.
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            errors: 0,
            cas_succeeded: 0,
            cas_failed: 0,
            first_error: None,
        })
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        self.histogram.add(&other.histogram)?;
        self.errors += other.errors;
        self.cas_succeeded += other.cas_succeeded;
        self.cas_failed += other.cas_failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// State shared by every task of a run.
struct Shared {
    config: Config,
    value: Vec<u8>,
    /// When the measured part began: timeline seconds count from here.
    start: Instant,
    deadline: Option<Instant>,
    /// Requests handed out so far; a task claims one before issuing it.
    issued: AtomicU64,
    /// Completions so far, for the progress line.
    counters: Arc<Counters>,
    /// Completions per second, handed over by the tasks.
    timeline: Mutex<Timeline>,
    /// txn-cas: the latest mod_revision seen per key (0: never written).
    mod_revisions: Vec<AtomicI64>,
}

impl Shared {
    fn claim(&self) -> bool {
        if let Some(deadline) = self.deadline {
            if Instant::now() >= deadline {
                return false;
            }
        }
        match self.config.requests {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }

    fn key(&self, index: u64) -> Vec<u8> {
        format!("{}{:012}", self.config.key_prefix, index).into_bytes()
    }
}

/// Connects, prefills if the workload reads, runs, and reports.
pub async fn run(config: Config) -> Result<Outcome> {
    config.validate()?;
    let connections = config.connections.min(config.concurrency);
    let mut clients = Vec::with_capacity(connections);
    let options = config.connect_options();
    for _ in 0..connections {
        // With a user, each client authenticates once here (a password
        // check on the server) and then sends its token with every request.
        let client = Client::connect(&config.endpoints, Some(options.clone()))
            .await
            .with_context(|| format!("connecting to {}", config.endpoints.join(",")))?;
        clients.push(client);
    }
    let value = random_value(config.value_size, config.seed);
    let mod_revisions = if config.workload == Workload::TxnCas {
        (0..config.key_space).map(|_| AtomicI64::new(0)).collect()
    } else {
        Vec::new()
    };
    // Warm every connection so connection setup is not measured. The key is
    // under the prefix, so a user allowed only the prefix may read it.
    let warmup = format!("{}warmup", config.key_prefix);
    for client in &clients {
        let mut kv = client.kv_client();
        kv.get(warmup.as_str(), Some(GetOptions::new().with_serializable())).await.context("warm-up request")?;
    }
    if config.prefill && config.workload.reads_keys() {
        if config.progress.is_some() {
            eprintln!("synod-bench: writing {} keys before the run", config.key_space);
        }
        prefill(&clients, &config, &value).await?;
    }
    if config.workload == Workload::TxnCas {
        learn_mod_revisions(&clients[0], &config, &mod_revisions).await?;
    }
    let fanout =
        if config.workload == Workload::WatchFanout { Some(Fanout::start(&clients, &config).await?) } else { None };

    let start = Instant::now();
    let started_unix_ms =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
    let shared = Arc::new(Shared {
        start,
        deadline: config.duration.map(|d| start + d),
        config,
        value,
        issued: AtomicU64::new(0),
        counters: Arc::default(),
        timeline: Mutex::default(),
        mod_revisions,
    });
    let mut tasks = Vec::with_capacity(shared.config.concurrency);
    for task in 0..shared.config.concurrency {
        let client = clients[task % clients.len()].clone();
        let session = Session::open(client, &shared.config, task).await?;
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(drive(shared, session, task as u64)));
    }
    let reporter = shared.config.progress.map(|every| {
        let goal = progress::Goal { duration: shared.config.duration, requests: shared.config.requests };
        Reporter::start(Arc::clone(&shared.counters), start, every, goal)
    });
    let mut total = Tally::new()?;
    let mut failed = None;
    for task in tasks {
        match task.await.context("load task panicked").and_then(|tally| tally) {
            Ok(tally) => total.merge(tally)?,
            // Wait for the other tasks all the same (they stop at the
            // deadline), so none outlives the run.
            Err(error) => failed = failed.or(Some(error)),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Silence progress before anything else is printed.
    if let Some(reporter) = reporter {
        reporter.stop().await;
    }
    if let Some(error) = failed {
        return Err(error);
    }
    let delivered = match fanout {
        Some(fanout) => Some(fanout.finish(total.histogram.len() - total.cas_failed, start).await),
        None => None,
    };

    if let Some(error) = &total.first_error {
        eprintln!("synod-bench: {} errors, first: {error}", total.errors);
    }
    let h = &total.histogram;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let requests = h.len();
    let cas = shared.config.workload == Workload::TxnCas;
    let report = Report {
        workload: shared.config.workload.name().to_string(),
        endpoints: shared.config.endpoints.clone(),
        concurrency: shared.config.concurrency,
        connections,
        requests,
        errors: total.errors,
        seconds,
        throughput_ops_s: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
        latency_ms: if requests == 0 {
            Latency::default()
        } else {
            Latency {
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
            }
        },
        txn_succeeded: cas.then_some(total.cas_succeeded),
        txn_failed: cas.then_some(total.cas_failed),
        events_delivered: delivered.map(|(events, _)| events),
        events_s: delivered.map(|(_, rate)| rate),
    };
    let timeline = shared.timeline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).intervals(seconds);
    Ok(Outcome { report, timeline, started_unix_ms })
}

/// What one task holds for its whole run.
enum Session {
    /// KV requests.
    Kv(KvClient),
    /// Its own lease's keep-alive stream.
    KeepAlive(LeaseKeeper, LeaseKeepAliveStream),
    /// A lock client and the lease it locks with.
    Lock(LockClient, i64),
}

impl Session {
    async fn open(client: Client, config: &Config, task: usize) -> Result<Session> {
        Ok(match config.workload {
            Workload::LeaseKeepalive => {
                let id = client.lease_client().grant(600, None).await.context("lease grant")?.id();
                let (keeper, stream) = client.lease_client().keep_alive(id).await.context("keep-alive stream")?;
                Session::KeepAlive(keeper, stream)
            }
            Workload::Lock => {
                let id = client.lease_client().grant(600, None).await.context("lease grant")?.id();
                let _ = task;
                Session::Lock(client.lock_client(), id)
            }
            _ => Session::Kv(client.kv_client()),
        })
    }
}

/// The watchers of a watch-fanout run, counting what they receive.
struct Fanout {
    watchers: usize,
    delivered: Arc<AtomicU64>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Fanout {
    /// Opens `config.watchers` watchers of the key prefix, over as many
    /// streams as there are clients, and waits until each is created.
    async fn start(clients: &[Client], config: &Config) -> Result<Fanout> {
        let delivered = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        let streams = clients.len().min(config.watchers.max(1));
        for (s, client) in clients.iter().enumerate().take(streams) {
            let count = config.watchers / streams + usize::from(s < config.watchers % streams);
            if count == 0 {
                continue;
            }
            let prefix = config.key_prefix.clone();
            let opts = || Some(WatchOptions::new().with_prefix());
            let mut stream = client.watch_client().watch(prefix.clone(), opts()).await.context("watch")?;
            for _ in 1..count {
                stream.watch(prefix.clone(), opts()).await.context("watch")?;
            }
            let mut created = 0;
            while created < count {
                match stream.message().await.context("watch created")? {
                    Some(r) if r.created() => created += 1,
                    Some(_) => {}
                    None => bail!("a watch stream ended before its watchers were created"),
                }
            }
            let delivered = Arc::clone(&delivered);
            readers.push(tokio::spawn(async move {
                while let Ok(Some(r)) = stream.message().await {
                    delivered.fetch_add(r.events().len() as u64, Ordering::Relaxed);
                }
            }));
        }
        Ok(Fanout { watchers: config.watchers, delivered, readers })
    }

    /// Waits (up to 60 s) until every watcher has every put's event;
    /// returns the events delivered and their rate since `start`.
    async fn finish(self, puts: u64, start: Instant) -> (u64, f64) {
        let expected = puts * self.watchers as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seconds = start.elapsed().as_secs_f64();
        for r in self.readers {
            r.abort();
        }
        let events = self.delivered.load(Ordering::Relaxed);
        if events < expected {
            eprintln!("synod-bench: only {events} of {expected} watch events arrived within 60 s");
        }
        (events, events as f64 / seconds)
    }
}

/// One closed-loop task: claim, issue, record, repeat.
async fn drive(shared: Arc<Shared>, mut session: Session, task: u64) -> Result<Tally> {
    let mut tally = Tally::new()?;
    let mut this_second = SecondBucket::default();
    let mut rng = fastrand::Rng::with_seed(shared.config.seed ^ task.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let workload = shared.config.workload;
    while shared.claim() {
        let index = rng.u64(0..shared.config.key_space);
        let key = shared.key(index);
        let started = Instant::now();
        let outcome = tokio::time::timeout(shared.config.timeout, async {
            match (&mut session, workload) {
                (Session::Kv(kv), Workload::Put | Workload::WatchFanout) => {
                    kv.put(key, shared.value.clone(), None).await.map(|_| None)
                }
                (Session::Kv(kv), Workload::Get) => kv.get(key, None).await.map(|_| None),
                (Session::Kv(kv), Workload::GetSerializable) => {
                    kv.get(key, Some(GetOptions::new().with_serializable())).await.map(|_| None)
                }
                (Session::Kv(kv), Workload::TxnCas) => cas(&shared, kv, index, key).await.map(Some),
                (Session::KeepAlive(keeper, stream), _) => keep_alive(keeper, stream).await.map(|_| None),
                (Session::Lock(locks, lease), _) => {
                    lock_cycle(locks, *lease, &shared.config.key_prefix).await.map(|_| None)
                }
                (Session::Kv(_), Workload::LeaseKeepalive | Workload::Lock) => unreachable!("sessions match workloads"),
            }
        })
        .await;
        let completed = Instant::now();
        let micros = completed.duration_since(started).as_micros() as u64;
        let second = completed.duration_since(shared.start).as_secs() as usize;
        let succeeded = matches!(outcome, Ok(Ok(_)));
        this_second.count(second, succeeded.then_some(micros), &shared.timeline);
        if succeeded {
            shared.counters.op();
        } else {
            shared.counters.error();
        }
        match outcome {
            Ok(Ok(cas_outcome)) => {
                tally.histogram.saturating_record(micros.max(1));
                match cas_outcome {
                    Some(true) => tally.cas_succeeded += 1,
                    Some(false) => tally.cas_failed += 1,
                    None => {}
                }
            }
            Ok(Err(error)) => tally.error(error.to_string()),
            Err(_) => tally.error(format!("timed out after {:?}", shared.config.timeout)),
        }
    }
    this_second.finish(&shared.timeline);
    Ok(tally)
}

impl Tally {
    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

/// One keep-alive, answered.
async fn keep_alive(keeper: &mut LeaseKeeper, stream: &mut LeaseKeepAliveStream) -> Result<(), etcd_client::Error> {
    keeper.keep_alive().await?;
    match stream.message().await? {
        Some(r) if r.ttl() > 0 => Ok(()),
        Some(_) => Err(etcd_client::Error::LeaseKeepAliveError("the lease expired".into())),
        None => Err(etcd_client::Error::LeaseKeepAliveError("the keep-alive stream ended".into())),
    }
}

/// Acquires the run's lock and releases it.
async fn lock_cycle(locks: &mut LockClient, lease: i64, name: &str) -> Result<(), etcd_client::Error> {
    let held = locks.lock(format!("{name}lock"), Some(LockOptions::new().with_lease(lease))).await?;
    locks.unlock(held.key()).await?;
    Ok(())
}

/// One compare-and-swap on `key`: true if the put happened.
async fn cas(shared: &Shared, kv: &mut KvClient, index: u64, key: Vec<u8>) -> Result<bool, etcd_client::Error> {
    let slot = &shared.mod_revisions[index as usize];
    let expected = slot.load(Ordering::Relaxed);
    let txn = Txn::new()
        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, expected)])
        .and_then([TxnOp::put(key.clone(), shared.value.clone(), None)])
        .or_else([TxnOp::get(key, None)]);
    let response = kv.txn(txn).await?;
    // Revisions only grow and this workload never deletes, so the largest
    // mod_revision seen is the key's current one.
    if response.succeeded() {
        let revision = response.header().map_or(0, |h| h.revision());
        slot.fetch_max(revision, Ordering::Relaxed);
        Ok(true)
    } else {
        if let Some(TxnOpResponse::Get(get)) = response.op_responses().first() {
            let current = get.kvs().first().map_or(0, |kv| kv.mod_revision());
            slot.fetch_max(current, Ordering::Relaxed);
        }
        Ok(false)
    }
}

/// Writes every key of the key space once, 64 requests in flight.
async fn prefill(clients: &[Client], config: &Config, value: &[u8]) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..64.min(config.key_space as usize) {
        let mut kv = clients[task % clients.len()].kv_client();
        let next = Arc::clone(&next);
        let (prefix, space, value) = (config.key_prefix.clone(), config.key_space, value.to_vec());
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= space {
                    return Ok::<_, etcd_client::Error>(());
                }
                kv.put(format!("{prefix}{index:012}"), value.clone(), None).await?;
            }
        }));
    }
    for task in tasks {
        task.await.context("prefill task panicked")?.context("prefill")?;
    }
    Ok(())
}

/// Seeds the txn-cas cache with the keys' current mod_revisions, so that a
/// failed compare means a concurrent writer, not a key left by an earlier run.
async fn learn_mod_revisions(client: &Client, config: &Config, mod_revisions: &[AtomicI64]) -> Result<()> {
    let mut kv = client.kv_client();
    let response = kv
        .get(config.key_prefix.as_str(), Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .context("reading the key space's mod revisions")?;
    for entry in response.kvs() {
        let index = entry
            .key()
            .strip_prefix(config.key_prefix.as_bytes())
            .and_then(|suffix| std::str::from_utf8(suffix).ok())
            .and_then(|suffix| suffix.parse::<usize>().ok());
        if let Some(slot) = index.and_then(|i| mod_revisions.get(i)) {
            slot.store(entry.mod_revision(), Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Printable random bytes, so values are not trivially compressible.
fn random_value(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..size).map(|_| rng.alphanumeric() as u8).collect()
}
