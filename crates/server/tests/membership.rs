//! Membership changes on real synod processes under a write load, through
//! etcd's Cluster API (etcd-client): grow 3 -> 5 and shrink back, replace a
//! member whose disk was wiped, remove the leader, and every refusal with
//! etcd's error. After each: every acknowledged write is readable, and no
//! write waited much longer than an election timeout.

mod common;

use common::Cluster;
use etcd_client::{Client, GetOptions, MemberAddOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a write may wait during a change: the test timing's election
/// timeout is 500 ms; allow for a shared, noisy machine.
const LONGEST_WAIT: Duration = Duration::from_millis(2500);

/// A write load: acknowledged keys and the longest wait since last asked.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    longest: Arc<Mutex<Duration>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// One writer per endpoint, each writing its own keys.
    async fn start(endpoints: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let longest: Arc<Mutex<Duration>> = Arc::default();
        let mut tasks = Vec::new();
        for (w, endpoint) in endpoints.into_iter().enumerate() {
            let mut client = common::connect(vec![endpoint]).await;
            let (stop, acked, longest) = (stop.clone(), acked.clone(), longest.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load/{w}/{i:06}");
                    i += 1;
                    let started = Instant::now();
                    let put = client.put(key.clone(), "v", None);
                    let result = tokio::time::timeout(Duration::from_secs(6), put).await;
                    let waited = started.elapsed();
                    {
                        let mut l = longest.lock().unwrap();
                        *l = (*l).max(waited);
                    }
                    match result {
                        Ok(Ok(_)) => acked.lock().unwrap().push(key),
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        Load { stop, acked, longest, tasks }
    }

    /// The longest wait since the last call, and reset.
    fn take_longest(&self) -> Duration {
        std::mem::take(&mut *self.longest.lock().unwrap())
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `n` more writes were acknowledged.
    async fn progress(&self, n: usize) {
        let target = self.acked() + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.acked() < target {
            assert!(Instant::now() < deadline, "writes stalled at {}", self.acked());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writers; returns every acknowledged key.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Checks that member `i` holds every key in `acked` (linearizable count).
async fn holds_all(cluster: &Cluster, i: usize, acked: &[String]) {
    let mut c = cluster.client(i).await;
    let r = c.get("load/", Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("range");
    let have: std::collections::BTreeSet<Vec<u8>> = r.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    let missing: Vec<&String> = acked.iter().filter(|k| !have.contains(k.as_bytes())).collect();
    assert!(
        missing.is_empty(),
        "member {} lacks {} acknowledged writes, e.g. {:?}",
        i,
        missing.len(),
        &missing[..missing.len().min(3)]
    );
}

/// Each member in the list: (name, is_learner), in id order.
async fn listed(client: &mut Client) -> Vec<(String, bool)> {
    let r = client.member_list().await.expect("member list");
    let mut v: Vec<(u64, String, bool)> =
        r.members().iter().map(|m| (m.id(), m.name().to_string(), m.is_learner())).collect();
    v.sort();
    v.into_iter().map(|(_, n, l)| (n, l)).collect()
}

/// Waits until `check` holds for member `i`'s member list.
async fn wait_list(cluster: &Cluster, i: usize, what: &str, check: impl Fn(&[(String, bool)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = cluster.client(i).await;
        let l = listed(&mut c).await;
        if check(&l) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: member list is {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Promotes learner `id`, retrying while it is not in sync yet.
async fn promote(client: &mut Client, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.member_promote(id).await {
            Ok(_) => return,
            Err(e) if e.to_string().contains("in sync with leader") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("promote {id:x}: {e}"),
        }
    }
}

/// Waits until member `i` exits by itself after its removal.
async fn exits_removed(cluster: &mut Cluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster.exit_status(i).is_none() {
        assert!(Instant::now() < deadline, "removed member {} still runs", cluster.members[i].name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!cluster.exit_status(i).unwrap().success(), "a removed member exits with an error");
    assert!(cluster.log(i).contains("permanently removed"), "log: {}", cluster.log(i));
    cluster.reap(i);
}

fn member_id(resp: &etcd_client::MemberAddResponse) -> u64 {
    resp.member().expect("the added member").id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_three_to_five_and_shrink_back_under_writes() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let load = Load::start(cluster.endpoints()).await;
    load.progress(50).await;
    let mut admin = common::connect(cluster.endpoints()).await;
    let mut waits = Vec::new();

    // m4 as a learner, started, promoted once in sync.
    let m4 = cluster.prepare_member(&[0, 1, 2]);
    let added = admin
        .member_add([cluster.peer_url(m4)], Some(MemberAddOptions::new().with_is_learner()))
        .await
        .expect("add m4");
    let id4 = member_id(&added);
    assert!(added.member().unwrap().is_learner());
    cluster.start_member(m4);
    wait_list(&cluster, 0, "m4 listed as a learner", |l| l.contains(&("m4".into(), true))).await;
    waits.push(("add learner", load.take_longest()));
    promote(&mut admin, id4).await;
    load.progress(50).await;
    waits.push(("promote", load.take_longest()));

    // m5 as a voter: joins as a learner, promoted by the leader once in sync.
    let m5 = cluster.prepare_member(&[0, 1, 2, 3]);
    let added = admin.member_add([cluster.peer_url(m5)], None).await.expect("add m5");
    let id5 = member_id(&added);
    cluster.start_member(m5);
    wait_list(&cluster, 1, "five voters", |l| l.len() == 5 && l.iter().all(|(n, learner)| !n.is_empty() && !learner))
        .await;
    load.progress(50).await;
    waits.push(("add voter", load.take_longest()));
    cluster.wait_member_ready(m5).await;

    // Shrink back: remove m4 and m5 (followers or not: removing the leader
    // hands over first).
    for (i, id) in [(m4, id4), (m5, id5)] {
        admin.member_remove(id).await.unwrap_or_else(|e| panic!("remove {id:x}: {e}"));
        exits_removed(&mut cluster, i).await;
        load.progress(50).await;
        waits.push(("remove", load.take_longest()));
    }
    // A removed member's data directory is refused.
    cluster.start_member(m4);
    exits_removed(&mut cluster, m4).await;
    wait_list(&cluster, 2, "three voters", |l| l.len() == 3).await;

    let acked = load.stop().await;
    for i in 0..3 {
        holds_all(&cluster, i, &acked).await;
    }
    eprintln!("{} writes acknowledged; longest waits: {waits:?}", acked.len());
    for (change, waited) in waits {
        assert!(waited < LONGEST_WAIT, "a write waited {waited:?} during {change}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_disk_was_wiped_is_replaced() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let lost = (leader + 1) % 3;
    let stay: Vec<usize> = (0..3).filter(|&i| i != lost).collect();
    let load = Load::start(stay.iter().map(|&i| cluster.endpoint(i)).collect()).await;
    load.progress(50).await;
    let mut admin = common::connect(stay.iter().map(|&i| cluster.endpoint(i)).collect()).await;
    let lost_id = admin
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .find(|m| m.name() == cluster.members[lost].name)
        .unwrap()
        .id();

    // The disk is gone: remove the member, add a new one as a learner, let
    // it catch up, promote it.
    cluster.kill(lost);
    std::fs::remove_dir_all(cluster.flag(lost, "--data-dir")).expect("wipe");
    admin.member_remove(lost_id).await.expect("remove the lost member");
    let fresh = cluster.prepare_member(&stay);
    let added = admin
        .member_add([cluster.peer_url(fresh)], Some(MemberAddOptions::new().with_is_learner()))
        .await
        .expect("add");
    let fresh_id = member_id(&added);
    assert_ne!(fresh_id, lost_id, "a removed member's id is never reused");
    cluster.start_member(fresh);
    promote(&mut admin, fresh_id).await;
    load.progress(100).await;
    let waited = load.take_longest();

    let acked = load.stop().await;
    cluster.wait_member_ready(fresh).await;
    holds_all(&cluster, fresh, &acked).await;
    assert!(waited < LONGEST_WAIT, "a write waited {waited:?}");
}
