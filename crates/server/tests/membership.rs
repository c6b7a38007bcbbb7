//! Membership changes on real synod processes under a write load, through
//! etcd's Cluster API (etcd-client): grow 3 -> 5 and shrink back, replace a
//! member whose disk was wiped, remove the leader, and every refusal with
//! etcd's error. After each: every acknowledged write is readable, and no
//! write waited much longer than an election timeout.

mod common;

use common::load::Load;
use common::Cluster;
use etcd_client::{Client, GetOptions, MemberAddOptions};
use std::time::{Duration, Instant};

/// The longest a write may wait during a change: the test timing's election
/// timeout is 500 ms; allow three of them on a shared, noisy machine.
const LONGEST_WAIT: Duration = Duration::from_millis(1500);

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

/// Each started member's id, by index, from the member list.
async fn member_ids(cluster: &Cluster, client: &mut Client) -> Vec<u64> {
    let list = client.member_list().await.expect("member list");
    let id = |name: &str| list.members().iter().find(|x| x.name() == name).map_or(0, |m| m.id());
    cluster.members.iter().map(|m| id(&m.name)).collect()
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
    load.progress(50, "writes").await;
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
    load.progress(50, "writes").await;
    waits.push(("promote", load.take_longest()));

    // m5 as a voter: joins as a learner, promoted by the leader once in sync.
    let m5 = cluster.prepare_member(&[0, 1, 2, 3]);
    let added = admin.member_add([cluster.peer_url(m5)], None).await.expect("add m5");
    let id5 = member_id(&added);
    cluster.start_member(m5);
    wait_list(&cluster, 1, "five voters", |l| l.len() == 5 && l.iter().all(|(n, learner)| !n.is_empty() && !learner))
        .await;
    load.progress(50, "writes").await;
    waits.push(("add voter", load.take_longest()));
    cluster.wait_member_ready(m5).await;

    // Shrink back: remove m4 and m5 (followers or not: removing the leader
    // hands over first).
    for (i, id) in [(m4, id4), (m5, id5)] {
        admin.member_remove(id).await.unwrap_or_else(|e| panic!("remove {id:x}: {e}"));
        exits_removed(&mut cluster, i).await;
        load.progress(50, "writes").await;
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
    load.progress(50, "writes").await;
    let mut admin = common::connect(stay.iter().map(|&i| cluster.endpoint(i)).collect()).await;
    let lost_id = member_ids(&cluster, &mut admin).await[lost];

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
    load.progress(100, "writes").await;
    let waited = load.take_longest();

    let acked = load.stop().await;
    cluster.wait_member_ready(fresh).await;
    holds_all(&cluster, fresh, &acked).await;
    assert!(waited < LONGEST_WAIT, "a write waited {waited:?}");
}

/// Asserts that `result` failed with etcd's `message`.
fn refused<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>, message: &str) {
    match result {
        Err(e) => assert!(e.to_string().contains(message), "expected {message:?}, got {e}"),
        Ok(r) => panic!("expected {message:?}, got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_changes_carry_etcds_errors_and_a_member_can_move() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut admin = common::connect(cluster.endpoints()).await;
    let ids = member_ids(&cluster, &mut admin).await;

    refused(admin.member_remove(0x1234).await, "etcdserver: member not found");
    refused(admin.member_promote(0x1234).await, "etcdserver: member not found");
    refused(admin.member_update(0x1234, [cluster.peer_url(0)]).await, "etcdserver: member not found");
    refused(admin.member_add([cluster.peer_url(1)], None).await, "etcdserver: Peer URLs already exists");
    refused(admin.member_add(["not a url"], None).await, "etcdserver: given member URLs are invalid");
    refused(admin.member_promote(ids[0]).await, "etcdserver: can only promote a learner member");
    // A learner that never started is not in sync.
    let spare = format!("http://127.0.0.1:{}", common::free_ports(1)[0]);
    let learner = admin
        .member_add([spare.as_str()], Some(MemberAddOptions::new().with_is_learner()))
        .await
        .expect("add a learner")
        .member()
        .unwrap()
        .id();
    refused(
        admin.member_promote(learner).await,
        "etcdserver: can only promote a learner member which is in sync with leader",
    );
    admin.member_remove(learner).await.expect("remove the learner");
    assert_eq!(listed(&mut admin).await.len(), 3);

    // MemberUpdate: m3 moves to a new peer port while stopped, restarts
    // there, and catches up on what was written meanwhile.
    cluster.kill(2);
    // (m3 may have led: let the others elect a leader first.)
    cluster.leader().await;
    let mut admin = common::connect(vec![cluster.endpoint(0), cluster.endpoint(1)]).await;
    let moved = format!("http://127.0.0.1:{}", common::free_ports(1)[0]);
    admin.member_update(ids[2], [moved.clone()]).await.expect("update m3's peer URL");
    let list = admin.member_list().await.unwrap();
    let m3 = list.members().iter().find(|m| m.id() == ids[2]).unwrap();
    assert_eq!(m3.peer_urls(), std::slice::from_ref(&moved));
    // With m3 down, removing a live member would leave no quorum of the
    // new configuration running: refused (etcd's strict reconfig check),
    // once the leader has missed a few of m3's heartbeats.
    tokio::time::sleep(Duration::from_millis(300)).await;
    refused(admin.member_remove(ids[1]).await, "etcdserver: re-configuration failed due to not enough started members");
    admin.put("while-moved", "yes", None).await.expect("put");
    cluster.set_flag(2, "--listen-peer-urls", &moved);
    cluster.start_member(2);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = cluster.client(2).await;
        let opts = GetOptions::new().with_serializable();
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.get("while-moved", Some(opts))).await {
            if r.kvs().len() == 1 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "m3 did not catch up at its new address:\n{}", cluster.log(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The hex member id in etcdctl's "Member <id> added to cluster <id>".
fn id_in(out: &str) -> String {
    out.split_whitespace().nth(1).unwrap_or_else(|| panic!("no member id in {out:?}")).to_string()
}

/// The `member list` line of the member with id `id`.
fn list_line(ctl: &common::etcdctl::Etcdctl, id: &str) -> String {
    let list = ctl.ok(&["member", "list"]);
    list.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} in {list}")).to_string()
}

/// Waits until `check` holds for member `id`'s `member list` line.
fn wait_line(ctl: &common::etcdctl::Etcdctl, id: &str, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = list_line(ctl, id);
        if check(&line) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {line}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn etcdctl_adds_promotes_updates_and_removes_members() {
    if !common::etcdctl::installed() {
        return;
    }
    let mut cluster = Cluster::start(3);
    let ctl = common::etcdctl::Etcdctl::all(&cluster);
    ctl.wait_ready();

    let m4 = cluster.prepare_member(&[0, 1, 2]);
    let url = cluster.peer_url(m4);
    let out = ctl.ok(&["member", "add", "m4", &format!("--peer-urls={url}"), "--learner"]);
    assert!(out.contains("added to cluster") && out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{out}");
    assert!(out.contains(&format!("m4={url}")), "the new member is in ETCD_INITIAL_CLUSTER: {out}");
    let id = id_in(&out);
    let line = list_line(&ctl, &id);
    assert!(line.contains("unstarted") && line.contains(&url) && line.ends_with("true"), "{line}");

    cluster.start_member(m4);
    wait_line(&ctl, &id, "m4 started as a learner", |l| l.contains("started, m4,") && l.ends_with("true"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = ctl.run(&["member", "promote", &id]);
        if ok {
            assert!(out.contains("promoted"), "{out}");
            break;
        }
        assert!(err.contains("in sync with leader") && Instant::now() < deadline, "promote: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(list_line(&ctl, &id).ends_with("false"), "promoted: {}", list_line(&ctl, &id));

    let moved = format!("http://127.0.0.1:{}", common::free_ports(1)[0]);
    let out = ctl.ok(&["member", "update", &id, &format!("--peer-urls={moved}")]);
    assert!(out.contains("updated"), "{out}");
    assert!(list_line(&ctl, &id).contains(&moved), "{}", list_line(&ctl, &id));

    // Removed, m4 learns it from its peers and exits.
    let out = ctl.change(&["member", "remove", &id], "member not found");
    assert!(out.contains("removed") || out.is_empty(), "{out}");
    assert!(!ctl.ok(&["member", "list"]).contains(&id));
    let deadline = Instant::now() + Duration::from_secs(15);
    while cluster.exit_status(m4).is_none() {
        assert!(Instant::now() < deadline, "the removed member still runs:\n{}", cluster.log(m4));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cluster.log(m4).contains("permanently removed"));
    ctl.ok(&["put", "after", "removal"]);

    let (ok, _, err) = ctl.run(&["member", "remove", &id]);
    assert!(!ok && err.contains("member not found"), "{err}");

    // move-leader: etcdctl finds the leader among the endpoints and asks it.
    let status = ctl.ok(&["endpoint", "status", "-w", "json"]);
    let leader =
        status.split("\"leader\":").nth(1).and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()).unwrap();
    let target = ctl
        .ok(&["member", "list", "-w", "json"])
        .split("\"ID\":")
        .skip(1)
        .map(|s| s.split(|c: char| !c.is_ascii_digit()).next().unwrap().to_string())
        .find(|id| id != leader)
        .unwrap();
    let target_hex = format!("{:x}", target.parse::<u64>().unwrap());
    let out = ctl.ok(&["move-leader", &target_hex]);
    assert!(out.contains("Leadership transferred") && out.contains(&target_hex), "{out}");
    let status = ctl.ok(&["endpoint", "status", "-w", "json"]);
    assert!(status.contains(&format!("\"leader\":{target}")), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_moves_and_then_is_removed_under_writes() {
    let mut cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let first = cluster.leader().await;
    let target = (first + 1) % 3;
    // Writers on the members that stay (a client of a removed member
    // waits until that member stops).
    let load = Load::start((0..3).filter(|&i| i != target).map(|i| cluster.endpoint(i)).collect()).await;
    load.progress(50, "writes").await;
    let mut admin = common::connect(cluster.endpoints()).await;
    let ids = member_ids(&cluster, &mut admin).await;

    // Move the leadership (asked at a member that does not lead: the
    // request is forwarded), then refuse a learner or unknown target.
    let asked = (first + 2) % 3;
    cluster.client(asked).await.move_leader(ids[target]).await.expect("move leader");
    assert_eq!(cluster.leader().await, target);
    load.progress(50, "writes").await;
    let moved = load.take_longest();
    refused(cluster.client(target).await.move_leader(0x1234).await, "etcdserver: bad leader transferee");

    // Remove the leader: it hands over first, so writes wait for a transfer,
    // not an election; it then exits.
    admin.member_remove(ids[target]).await.expect("remove the leader");
    exits_removed(&mut cluster, target).await;
    load.progress(50, "writes").await;
    let removed = load.take_longest();
    let acked = load.stop().await;
    let leader = cluster.leader().await;
    assert_ne!(leader, target);
    for i in (0..3).filter(|&i| i != target) {
        holds_all(&cluster, i, &acked).await;
    }
    eprintln!("longest waits: move leader {moved:?}, remove leader {removed:?}");
    assert!(moved < LONGEST_WAIT, "a write waited {moved:?} while the leader moved");
    assert!(removed < LONGEST_WAIT, "a write waited {removed:?} while the leader was removed");
}
