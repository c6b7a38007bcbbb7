//! The Maintenance service on 3 real `synod` processes: the space quota
//! and the NOSPACE alarm, Alarm itself, Defragment, HashKV, Snapshot and
//! `synod snapshot restore`, through the etcd-client crate and through
//! Debian's etcdctl.

mod common;

use common::etcdctl::Etcdctl;
use common::{connect, Cluster};
use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, Error, GetOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";

fn is_nospace(e: &Error) -> bool {
    matches!(e, Error::GRpcStatus(s) if s.code() == tonic::Code::ResourceExhausted && s.message() == NOSPACE)
}

/// Puts 500-byte values until the quota refuses one; returns how many went in.
async fn put_until_nospace(c: &mut Client) -> usize {
    let value = vec![b'x'; 500];
    for i in 0..200 {
        match c.put(format!("fill/{i}"), value.clone(), None).await {
            Ok(_) => {}
            Err(e) if is_nospace(&e) => return i,
            Err(e) => panic!("put {i} failed with something other than NOSPACE: {e}"),
        }
    }
    panic!("200 puts of 500 bytes never hit a 4 KiB quota");
}

/// The alarms member `i` lists.
async fn alarms(cluster: &Cluster, i: usize) -> Vec<(u64, AlarmType)> {
    let mut c = cluster.client(i).await;
    let resp = c.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("alarm list");
    resp.alarms().iter().map(|a| (a.member_id(), a.alarm())).collect()
}

/// Deactivates every alarm, as `etcdctl alarm disarm` does.
async fn disarm(c: &mut Client) {
    let resp = c.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("alarm list");
    for a in resp.alarms() {
        let mut o = AlarmOptions::new();
        o.with_member(a.member_id());
        let r = c.alarm(AlarmAction::Deactivate, a.alarm(), Some(o)).await.expect("deactivate");
        assert_eq!(r.alarms().len(), 1, "the deactivated alarm is returned");
    }
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `synod snapshot restore FILE` for member `i` of `cluster`.
fn restore(cluster: &Cluster, i: usize, file: &Path) -> std::process::Output {
    let mut cmd = common::synod_command();
    cmd.arg("snapshot").arg("restore").arg(file).arg("--name").arg(&cluster.members[i].name);
    for flag in ["--data-dir", "--initial-cluster", "--initial-cluster-token", "--initial-advertise-peer-urls"] {
        cmd.arg(flag).arg(cluster.flag(i, flag));
    }
    cmd.stdin(Stdio::null()).output().expect("run synod snapshot restore")
}

/// A new 3-member cluster whose members are all restored from `file`.
fn start_restored(file: &Path) -> Cluster {
    Cluster::start_prepared(3, &[], |c| {
        for i in 0..3 {
            let out = restore(c, i, file);
            assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains("restored snapshot"));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_everywhere_and_compact_defrag_disarm_restore_writes() {
    let cluster = Cluster::start_with(3, &["--quota-backend-bytes", "4096"]);
    cluster.wait_ready().await;
    let mut c = connect(cluster.endpoints()).await;

    let written = put_until_nospace(&mut c).await;
    assert!((3..=8).contains(&written), "{written} puts of ~570 bytes fit in 4 KiB");
    // NOSPACE went through the log: every member lists it.
    for i in 0..3 {
        let listed = alarms(&cluster, i).await;
        assert!(listed.iter().any(|(_, a)| *a == AlarmType::Nospace), "member {i} lists {listed:?}");
    }
    // Every write that grows the store fails, even a tiny one; reads and
    // deletes still work. (Lease grants are refused by the same rule, see
    // the alarm module's unit tests.)
    let err = c.put("tiny", "x", None).await.unwrap_err();
    assert!(is_nospace(&err), "{err}");
    let got = c.get("fill/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(got.count() as usize, written);
    let status = cluster.client(1).await.status().await.unwrap();
    assert!(status.errors().iter().any(|e| e.contains("alarm:NOSPACE")), "{:?}", status.errors());

    // Free space: delete, compact, defragment every member, disarm.
    let deleted = c.delete("fill/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(deleted.deleted() as usize, written);
    let rev = deleted.header().unwrap().revision();
    c.compact(rev, None).await.unwrap();
    for i in 0..3 {
        cluster.client(i).await.defragment().await.expect("defragment");
    }
    // Still refused until the alarm is disarmed, as in etcd.
    assert!(is_nospace(&c.put("tiny", "x", None).await.unwrap_err()));
    disarm(&mut c).await;
    for i in 0..3 {
        assert!(alarms(&cluster, i).await.is_empty(), "member {i} still lists an alarm");
    }
    c.put("tiny", "x", None).await.expect("writes work again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_are_activated_listed_and_deactivated_through_the_log() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    assert!(alarms(&cluster, 0).await.is_empty());

    let mut o = AlarmOptions::new();
    o.with_member(42);
    let r = c.alarm(AlarmAction::Activate, AlarmType::Nospace, Some(o)).await.unwrap();
    assert_eq!(r.alarms().iter().map(|a| (a.member_id(), a.alarm())).collect::<Vec<_>>(), [(42, AlarmType::Nospace)]);
    for i in 0..3 {
        assert_eq!(alarms(&cluster, i).await, [(42, AlarmType::Nospace)], "member {i}");
    }
    assert!(is_nospace(&cluster.client(2).await.put("k", "v", None).await.unwrap_err()));
    // Deleting is still allowed.
    cluster.client(1).await.delete("k", None).await.expect("delete under NOSPACE");

    let mut o = AlarmOptions::new();
    o.with_member(42);
    let r = c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(o)).await.unwrap();
    assert_eq!(r.alarms().len(), 1);
    for i in 0..3 {
        assert!(alarms(&cluster, i).await.is_empty(), "member {i}");
    }
    cluster.client(2).await.put("k", "v", None).await.expect("writes work again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_after_compaction_shrinks_the_data_directory() {
    let cluster = Cluster::start_with(3, &["--wal-segment-bytes", "65536"]);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    let value = vec![b'v'; 4096];
    let mut rev = 0;
    for i in 0..300 {
        rev = c.put(format!("big/{}", i % 4), value.clone(), None).await.unwrap().header().unwrap().revision();
    }
    c.compact(rev, None).await.unwrap();
    let data = PathBuf::from(cluster.flag(0, "--data-dir"));
    let before = dir_size(&data);
    c.defragment().await.expect("defragment");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = dir_size(&data);
    while after * 2 > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = dir_size(&data);
    }
    eprintln!("data directory of m1: {before} bytes before defrag, {after} bytes after");
    assert!(after * 2 <= before, "defrag left {after} of {before} bytes");

    // The member restarts from the snapshot and what is left of the log.
    let mut cluster = cluster;
    cluster.restart(0);
    cluster.wait_member_ready(0).await;
    let mut c = cluster.client(0).await;
    let got = c.get("big/", Some(GetOptions::new().with_prefix().with_serializable())).await.unwrap();
    assert_eq!(got.kvs().len(), 4);
    assert!(got.kvs().iter().all(|kv| kv.value() == value.as_slice()));
}

/// HashKV at `rev` on member `i`, waiting for the member to reach `rev`.
async fn hash_at(cluster: &Cluster, i: usize, rev: i64) -> (u32, i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cluster.client(i).await.hash_kv(rev).await {
            Ok(r) => return (r.hash(), r.compact_version()),
            Err(Error::GRpcStatus(s)) if s.message().contains("future revision") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("hash_kv({rev}) at member {i}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_kv_is_equal_on_every_member_at_a_revision() {
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    let mut revs = Vec::new();
    for i in 0..30 {
        let r = c.put(format!("h/{}", i % 7), format!("value {i}"), None).await.unwrap();
        revs.push(r.header().unwrap().revision());
    }
    c.delete("h/3", None).await.unwrap();
    let compact_at = revs[9];
    c.compact(compact_at, None).await.unwrap();
    let current = c.put("h/last", "x", None).await.unwrap().header().unwrap().revision();

    // HashKV reads a member's own state: wait until each has applied the
    // last put, and so the compaction before it (a member that had the
    // revision but not yet the compaction answered with compact revision
    // -1 under load).
    for i in 0..3 {
        hash_at(&cluster, i, current).await;
    }
    let mut hashes = Vec::new();
    for rev in [compact_at, revs[20], current] {
        let here: Vec<(u32, i64)> = {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push(hash_at(&cluster, i, rev).await);
            }
            v
        };
        assert!(here.iter().all(|h| *h == here[0]), "members disagree at revision {rev}: {here:?}");
        assert_eq!(here[0].1, compact_at);
        hashes.push(here[0].0);
    }
    assert!(hashes[0] != hashes[1] && hashes[1] != hashes[2], "hashes follow the revision: {hashes:?}");
    // Revision 0 is the current one.
    assert_eq!(hash_at(&cluster, 0, 0).await.0, hashes[2]);

    let err = c.hash_kv(compact_at - 1).await.unwrap_err();
    assert!(
        matches!(&err, Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange && s.message() == "etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
    let err = c.hash_kv(current + 1000).await.unwrap_err();
    assert!(
        matches!(&err, Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange && s.message() == "etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_snapshot_restores_into_a_new_cluster() {
    let old = Cluster::start(3);
    old.wait_ready().await;
    let mut c = old.client(0).await;
    for i in 0..50 {
        c.put(format!("snap/{i:02}"), format!("value {i}"), None).await.unwrap();
    }
    c.delete("snap/07", None).await.unwrap();
    let revision = c.get("snap/", None).await.unwrap().header().unwrap().revision();
    // A snapshot is of the member's own applied state: let the follower
    // apply the last writes first (it learns their commit from the next
    // heartbeat).
    let mut follower = old.client(1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let serializable = || Some(GetOptions::new().with_serializable());
    while follower.get("snap/", serializable()).await.unwrap().header().unwrap().revision() < revision {
        assert!(Instant::now() < deadline, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut stream = follower.snapshot().await.expect("snapshot");
    let mut file = Vec::new();
    let mut messages = 0;
    while let Some(msg) = stream.message().await.expect("snapshot chunk") {
        file.extend_from_slice(msg.blob());
        messages += 1;
    }
    assert!(messages >= 1 && file.len() > 50 * 10, "{messages} messages, {} bytes", file.len());
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("backup.db");
    std::fs::write(&path, &file).unwrap();
    drop(old);

    // A damaged copy is refused, and no data directory is made from it.
    let mut damaged = file.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let bad = tmp.path().join("damaged.db");
    std::fs::write(&bad, &damaged).unwrap();
    let probe = Cluster::start_prepared(1, &[], |c| {
        let out = restore(c, 0, &bad);
        assert!(!out.status.success(), "a damaged snapshot was restored");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("corrupt") && err.contains("checksum"), "{err}");
        assert!(!Path::new(&c.flag(0, "--data-dir")).join("snap").exists());
    });
    drop(probe);

    let new = start_restored(&path);
    new.wait_ready().await;
    for i in 0..3 {
        let mut c = new.client(i).await;
        let got = c.get("snap/", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(got.kvs().len(), 49, "member {i}");
        assert_eq!(got.header().unwrap().revision(), revision, "revisions are kept");
        assert_eq!(got.kvs()[0].value_str().unwrap(), "value 0");
    }
    let r = new.client(2).await.put("after", "restore", None).await.unwrap();
    assert_eq!(r.header().unwrap().revision(), revision + 1);
}

/// Every `"field":NUMBER` in a JSON text.
fn json_numbers(json: &str, field: &str) -> Vec<u64> {
    json.match_indices(&format!("\"{field}\":"))
        .map(|(at, m)| {
            json[at + m.len()..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_alarm_defrag_hashkv_snapshot_save_and_restore() {
    let cluster = Cluster::start_with(3, &["--quota-backend-bytes", "4096"]);
    cluster.wait_ready().await;
    let all = Etcdctl::of(&cluster, &[0, 1, 2]);
    let value = "x".repeat(600);
    let mut refused = None;
    for i in 0..50 {
        let (ok, _, err) = all.run(&["put", &format!("fill/{i}"), &value]);
        if !ok {
            refused = Some(err);
            break;
        }
    }
    let refused = refused.expect("the quota refused a put");
    assert!(refused.contains("database space exceeded"), "{refused}");
    for i in 0..3 {
        let listed = Etcdctl::of(&cluster, &[i]).ok(&["alarm", "list"]);
        assert!(listed.contains("alarm:NOSPACE"), "member {i}: {listed:?}");
    }
    assert!(all.ok(&["get", "fill/0"]).contains(&value), "reads still work");

    let rev = json_numbers(&all.ok(&["get", "fill/0", "-w", "json"]), "revision")[0];
    all.ok(&["del", "fill/", "--prefix"]);
    all.ok(&["compaction", &(rev + 1).to_string()]);
    let out = all.ok(&["defrag"]);
    assert_eq!(out.matches("Finished defragmenting etcd member").count(), 3, "{out}");
    let out = all.ok(&["alarm", "disarm"]);
    assert!(out.contains("alarm:NOSPACE"), "disarm lists what it cleared: {out}");
    assert_eq!(all.ok(&["alarm", "list"]).trim(), "");
    all.ok(&["put", "kept", "after-disarm"]);

    // endpoint hashkv: the same hash on every member at one revision.
    let rev = json_numbers(&all.ok(&["get", "kept", "-w", "json"]), "revision")[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = all.run(&["endpoint", "hashkv", "--rev", &rev.to_string(), "-w", "json"]);
        let hashes = json_numbers(&out, "hash");
        if ok && hashes.len() == 3 && hashes.iter().all(|h| *h == hashes[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "hashkv never agreed: {out} {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // snapshot save, then a new cluster from it.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("etcdctl.db");
    let out = Etcdctl::of(&cluster, &[0]).ok(&["snapshot", "save", file.to_str().unwrap()]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    drop(cluster);
    let new = start_restored(&file);
    new.wait_ready().await;
    let got = Etcdctl::of(&new, &[0, 1, 2]).ok(&["get", "kept", "--print-value-only"]);
    assert_eq!(got.trim(), "after-disarm");
    let got = Etcdctl::of(&new, &[2]).ok(&["get", "", "--from-key", "--keys-only"]);
    let keys: Vec<&str> = got.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys, ["kept"], "deleted keys stay deleted");
}

/// A snapshot file of a store holding `value` under key `drift` (one put,
/// so revision 2 whatever the value).
fn store_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    let mut kv = synod_kv::KvState::default();
    let put =
        synod_kv::pb::PutRequest { key: b"drift".to_vec(), value: value.as_bytes().to_vec(), ..Default::default() };
    kv.apply(synod_kv::Command::Put(put)).expect("put");
    let path = dir.join(name);
    std::fs::write(&path, synod_server::snapshot::encode(&kv, &synod_server::auth::AuthStore::default())).unwrap();
    path
}

/// etcd's corruption checks: a member whose store differs from the
/// majority's refuses to start under `--experimental-initial-corrupt-check`,
/// and the periodic check (`--experimental-corrupt-check-time`) raises the
/// CORRUPT alarm for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_store_differs_is_refused_at_start_and_alarmed() {
    let tmp = tempfile::tempdir().unwrap();
    let (same, other) = (store_file(tmp.path(), "same.db", "same"), store_file(tmp.path(), "other.db", "other"));
    let mut cluster = Cluster::start_prepared(3, &["--experimental-corrupt-check-time", "1s"], |c| {
        for (i, file) in [(0, &same), (1, &same), (2, &other)] {
            let out = restore(c, i, file);
            assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        c.add_flag(2, "--experimental-initial-corrupt-check");
    });
    let exit = cluster.wait_exit(2, Duration::from_secs(60)).await;
    assert!(exit.is_some_and(|s| !s.success()), "the member with another store was not refused: {exit:?}");
    assert!(cluster.log(2).contains("found data inconsistency with peers"), "{}", cluster.log(2));

    // Started without the initial check, it serves, and the periodic check
    // finds it out.
    cluster.remove_flag(2, "--experimental-initial-corrupt-check");
    cluster.start_member(2);
    let mut c = connect(vec![cluster.endpoint(0), cluster.endpoint(1)]).await;
    let members = c.member_list().await.expect("member list").members().to_vec();
    let odd = members.iter().find(|m| m.name() == "m3").expect("m3 listed").id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("alarm list");
        let raised: Vec<_> = alarms.alarms().iter().map(|a| (a.member_id(), a.alarm())).collect();
        if raised.contains(&(odd, AlarmType::Corrupt)) {
            assert_eq!(raised.len(), 1, "only m3 is corrupt: {raised:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no CORRUPT alarm for m3: {raised:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
