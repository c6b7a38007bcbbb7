//! Membership changes measured under a write load, the same way on any
//! etcd-compatible server (Debian's etcd or synod), through etcd's public
//! API only.
//!
//! [`changes`] starts a three-member cluster on loopback, keeps writers
//! putting keys through two members that stay, and makes five changes in
//! turn: add a learner (and start it), promote it, remove a follower, move
//! the leadership to the new member, remove the leader. For each it reports
//! how long the change took and the longest any write waited, from its first
//! attempt until it was acknowledged (errors are retried at once, as a
//! client would), in the window from the start of the change until one
//! second after it completed.
//!
//! [`catchup`] writes N keys into a three-member cluster, adds a learner and
//! reports how long the learner takes to hold all of them, with the log kept
//! (a large `--snapshot-count`) or compacted into snapshots (a small one),
//! so that it catches up from the log or from a snapshot.

use crate::node::{Node, NodeSpec};
use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, ConnectOptions, GetOptions, MemberAddOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a change may take before the run fails.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// One measured change.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeReport {
    /// The server's label.
    pub system: String,
    /// Which change.
    pub change: String,
    /// From the request until the change was complete (for an added
    /// member: until it was listed as started).
    pub change_ms: f64,
    /// The longest a write waited in the change's window.
    pub longest_write_ms: f64,
    /// Writes acknowledged in the window.
    pub writes: u64,
}

/// One learner catch-up.
#[derive(Clone, Debug, Serialize)]
pub struct CatchupReport {
    /// The server's label.
    pub system: String,
    /// `log` or `snapshot`.
    pub mode: String,
    /// Keys written before the learner joined.
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// `--snapshot-count` the members ran with.
    pub snapshot_count: u64,
    /// From the learner's start until it held every key.
    pub seconds: f64,
}

/// A cluster of one server binary on loopback; every process is killed on
/// drop.
pub struct Cluster {
    binary: PathBuf,
    dir: PathBuf,
    extra: Vec<String>,
    /// Each member's spec, in start order.
    pub specs: Vec<NodeSpec>,
    nodes: Vec<Option<Node>>,
}

impl Cluster {
    /// Starts `n` members of `binary` (data and logs under `dir`, `extra`
    /// flags for every member) and waits until each serves.
    pub async fn start(binary: &Path, dir: &Path, n: usize, extra: &[String]) -> Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut specs = Vec::new();
        for i in 1..=n {
            specs.push(spec(binary, dir, &format!("m{i}"), extra)?);
        }
        let initial = specs.iter().map(|s| format!("{}={}", s.name, s.peer_url())).collect::<Vec<_>>().join(",");
        for s in &mut specs {
            s.initial_cluster = initial.clone();
        }
        let mut nodes = Vec::new();
        for s in &specs {
            nodes.push(Some(Node::start(s.clone())?));
        }
        for n in nodes.iter_mut().flatten() {
            n.wait_ready(Duration::from_secs(30)).await?;
        }
        Ok(Cluster { binary: binary.to_path_buf(), dir: dir.to_path_buf(), extra: extra.to_vec(), specs, nodes })
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.specs[i].client_port)
    }

    /// A spec for a new member `name` joining the members `with`.
    pub fn joiner(&mut self, name: &str, with: &[usize]) -> Result<usize> {
        let mut s = spec(&self.binary, &self.dir, name, &self.extra)?;
        let mut initial: Vec<String> =
            with.iter().map(|&i| format!("{}={}", self.specs[i].name, self.specs[i].peer_url())).collect();
        initial.push(format!("{name}={}", s.peer_url()));
        s.initial_cluster = initial.join(",");
        s.initial_cluster_state = "existing".into();
        self.specs.push(s);
        self.nodes.push(None);
        Ok(self.specs.len() - 1)
    }

    /// Starts member `i`.
    pub fn start_member(&mut self, i: usize) -> Result<()> {
        self.nodes[i] = Some(Node::start(self.specs[i].clone())?);
        Ok(())
    }

    /// Member ids by index, from the member list (0: not listed).
    pub async fn ids(&self, client: &mut Client) -> Result<Vec<u64>> {
        let list = client.member_list().await?;
        Ok(self
            .specs
            .iter()
            .map(|s| list.members().iter().find(|m| m.name() == s.name).map_or(0, |m| m.id()))
            .collect())
    }

    /// The index of the member that leads, as member `ask` reports it.
    pub async fn leader(&self, ask: usize) -> Result<usize> {
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        loop {
            let mut c = connect(vec![self.endpoint(ask)]).await?;
            if let Ok(status) = c.status().await {
                let ids = self.ids(&mut c).await?;
                if let Some(i) = ids.iter().position(|&id| id != 0 && id == status.leader()) {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!("no leader known at {}", self.specs[ask].name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until member `i`'s process exits (a removed member stops).
    pub async fn wait_exit(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while let Some(n) = self.nodes[i].as_mut() {
            if n.exited() {
                self.nodes[i] = None;
                break;
            }
            if Instant::now() > deadline {
                // Not fatal for the measurement: stop it ourselves.
                self.nodes[i] = None;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

fn spec(binary: &Path, dir: &Path, name: &str, extra: &[String]) -> Result<NodeSpec> {
    let mut s = NodeSpec::single(binary, name, dir)?;
    s.extra_args = extra.to_vec();
    Ok(s)
}

async fn connect(endpoints: Vec<String>) -> Result<Client> {
    let opts = ConnectOptions::new().with_timeout(Duration::from_secs(5)).with_connect_timeout(Duration::from_secs(2));
    Ok(Client::connect(endpoints, Some(opts)).await?)
}

/// Writers that retry every put until it is acknowledged and remember the
/// longest wait.
struct Writers {
    stop: Arc<AtomicBool>,
    longest: Arc<Mutex<Duration>>,
    acked: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    async fn start(endpoints: &[String], n: usize) -> Result<Writers> {
        let stop = Arc::new(AtomicBool::new(false));
        let longest: Arc<Mutex<Duration>> = Arc::default();
        let acked: Arc<AtomicU64> = Arc::default();
        let mut tasks = Vec::new();
        for w in 0..n {
            let mut client = connect(vec![endpoints[w % endpoints.len()].clone()]).await?;
            let (stop, longest, acked) = (stop.clone(), longest.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                'writes: while !stop.load(Ordering::Relaxed) {
                    let key = format!("reconfig/{w}/{i}");
                    i += 1;
                    let started = Instant::now();
                    loop {
                        let put = client.put(key.as_str(), "v", None);
                        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), put).await {
                            break;
                        }
                        if stop.load(Ordering::Relaxed) {
                            break 'writes;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    acked.fetch_add(1, Ordering::Relaxed);
                    let waited = started.elapsed();
                    let mut l = longest.lock().unwrap_or_else(|p| p.into_inner());
                    *l = (*l).max(waited);
                }
            }));
        }
        Ok(Writers { stop, longest, acked, tasks })
    }

    fn take_longest(&self) -> Duration {
        std::mem::take(&mut *self.longest.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Runs `change` while the writers write; reports its window.
async fn measure(
    system: &str,
    name: &str,
    writers: &Writers,
    change: impl std::future::Future<Output = Result<()>>,
) -> Result<ChangeReport> {
    writers.take_longest();
    let before = writers.acked.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::timeout(CHANGE_TIMEOUT, change)
        .await
        .map_err(|_| anyhow!("{name} took over {CHANGE_TIMEOUT:?}"))??;
    let change_ms = started.elapsed().as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = ChangeReport {
        system: system.to_string(),
        change: name.to_string(),
        change_ms,
        longest_write_ms: writers.take_longest().as_secs_f64() * 1e3,
        writes: writers.acked.load(Ordering::Relaxed) - before,
    };
    eprintln!("{system}: {name}: {:.0} ms, longest write {:.1} ms", report.change_ms, report.longest_write_ms);
    Ok(report)
}

/// Waits until `name` is listed as a started member (it published its name).
async fn wait_started(admin: &mut Client, name: &str) -> Result<()> {
    loop {
        let list = admin.member_list().await?;
        if list.members().iter().any(|m| m.name() == name) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `e` is a server asking to try a membership change later: etcd
/// until its members have been connected for its health interval, or while
/// a member just added has not started.
fn try_later(e: &etcd_client::Error) -> bool {
    let m = e.to_string();
    m.contains("unhealthy cluster") || m.contains("not enough started") || m.contains("in progress")
}

/// Adds a learner at `url`, retrying while the server asks to try later.
async fn add_learner(admin: &mut Client, url: &str) -> Result<()> {
    let c = admin.cluster_client();
    retry_later("member add", || {
        let mut c = c.clone();
        async move { c.member_add([url.to_string()], Some(MemberAddOptions::new().with_is_learner())).await.map(drop) }
    })
    .await
}

/// Removes member `id`, retrying while the server asks to try later.
async fn remove(admin: &mut Client, id: u64) -> Result<()> {
    let c = admin.cluster_client();
    retry_later("member remove", || {
        let mut c = c.clone();
        async move { c.member_remove(id).await.map(drop) }
    })
    .await
}

/// Runs `change` until it succeeds or fails for a reason other than
/// [`try_later`].
async fn retry_later<F, Fut>(what: &'static str, change: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), etcd_client::Error>>,
{
    loop {
        match change().await {
            Ok(()) => return Ok(()),
            Err(e) if try_later(&e) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(e).context(what),
        }
    }
}

/// Promotes learner `id`, retrying while it is not in sync yet.
async fn promote(admin: &mut Client, id: u64) -> Result<()> {
    loop {
        match admin.member_promote(id).await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().contains("in sync") => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(e).context("promote"),
        }
    }
}

/// The five changes under `writers` writers; see the module docs.
pub async fn changes(
    system: &str,
    binary: &Path,
    dir: &Path,
    extra: &[String],
    writers: usize,
) -> Result<Vec<ChangeReport>> {
    let mut cluster = Cluster::start(binary, dir, 3, extra).await?;
    let first_leader = cluster.leader(0).await?;
    // The follower to remove, and the two members the writers use.
    let removed_follower = (first_leader + 1) % 3;
    let stay: Vec<usize> = (0..3).filter(|&i| i != removed_follower).collect();
    let stay_urls: Vec<String> = stay.iter().map(|&i| cluster.endpoint(i)).collect();
    let mut admin = connect(stay_urls.clone()).await?;
    let writers = Writers::start(&stay_urls, writers).await?;
    // etcd refuses membership changes until every member has been connected
    // for its health interval (5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut reports = Vec::new();

    let d = cluster.joiner("m4", &[0, 1, 2])?;
    let url = cluster.specs[d].peer_url();
    reports.push(
        measure(system, "add learner", &writers, async {
            add_learner(&mut admin, &url).await?;
            cluster.start_member(d)?;
            wait_started(&mut admin, "m4").await
        })
        .await?,
    );
    let id_d = cluster.ids(&mut admin).await?[d];
    reports.push(measure(system, "promote", &writers, promote(&mut admin, id_d)).await?);
    let id_f = cluster.ids(&mut admin).await?[removed_follower];
    reports.push(measure(system, "remove follower", &writers, remove(&mut admin, id_f)).await?);
    cluster.wait_exit(removed_follower, Duration::from_secs(10)).await?;
    let leader = cluster.leader(stay[0]).await?;
    let mut at_leader = connect(vec![cluster.endpoint(leader)]).await?;
    reports.push(
        measure(system, "move leader", &writers, async {
            at_leader.move_leader(id_d).await?;
            while cluster.leader(stay[0]).await? != d {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        })
        .await?,
    );
    reports.push(
        measure(system, "remove leader", &writers, async {
            remove(&mut admin, id_d).await?;
            // Complete once a remaining member leads.
            while !stay.contains(&cluster.leader(stay[0]).await?) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        })
        .await?,
    );
    writers.stop().await;
    Ok(reports)
}

/// Writes `keys` keys of `value_size` bytes, adds a learner and times its
/// catch-up; see the module docs.
pub async fn catchup(
    system: &str,
    binary: &Path,
    dir: &Path,
    extra: &[String],
    keys: u64,
    value_size: usize,
    snapshot_count: u64,
) -> Result<CatchupReport> {
    let mut flags = extra.to_vec();
    flags.extend(["--snapshot-count".to_string(), snapshot_count.to_string()]);
    let mut cluster = Cluster::start(binary, dir, 3, &flags).await?;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    let value = "x".repeat(value_size);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let mut client = connect(endpoints.clone()).await?;
        let (next, value) = (next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<(), anyhow::Error>(());
                }
                let key = format!("catchup/{i:08}");
                let mut tries = 0;
                while let Err(e) = client.put(key.as_str(), value.as_str(), None).await {
                    tries += 1;
                    if tries > 20 {
                        return Err(e.into());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut admin = connect(endpoints).await?;
    let d = cluster.joiner("m4", &[0, 1, 2])?;
    let url = cluster.specs[d].peer_url();
    tokio::time::sleep(Duration::from_secs(6)).await;
    add_learner(&mut admin, &url).await?;
    let started = Instant::now();
    cluster.start_member(d)?;
    let endpoint = cluster.endpoint(d);
    let opts = || Some(GetOptions::new().with_prefix().with_count_only().with_serializable());
    let deadline = started + Duration::from_secs(600);
    loop {
        if let Ok(mut c) = connect(vec![endpoint.clone()]).await {
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.get("catchup/", opts())).await {
                if r.count() as u64 >= keys {
                    break;
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the learner did not catch up in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mode = if snapshot_count < keys { "snapshot" } else { "log" };
    eprintln!("{system}: learner caught up on {keys} keys ({mode}) in {seconds:.2} s");
    Ok(CatchupReport { system: system.to_string(), mode: mode.into(), keys, value_size, snapshot_count, seconds })
}
