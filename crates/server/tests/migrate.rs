//! Migration between etcd and Synod by snapshot, both ways, against
//! Debian's etcd 3.4 and etcdctl (skipped when they are not installed): a
//! snapshot saved from etcd restores into a Synod cluster holding the same
//! keys, history, revisions, leases and users; a snapshot saved from Synod
//! is one `etcdctl snapshot status` reads and `etcdctl snapshot restore`
//! turns into a data directory a real etcd serves the same store from; a
//! damaged snapshot is refused and nothing is written.

mod common;

use common::etcd::{self, Etcd};
use common::etcdctl::{self, Etcdctl};
use common::Cluster;
use etcd_client::{Client, ConnectOptions, GetOptions, LeaseTimeToLiveOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: (&str, &str) = ("root", "rootpw");

/// Writes, through etcdctl, a store with overwrites, deletes, a value on
/// overflow pages, leases with and without keys, a compaction, more
/// writes, users and a role; then enables auth and writes once more as root.
fn write_store(ctl: &Etcdctl) -> i64 {
    for (k, v) in [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")] {
        ctl.ok(&["put", k, v]);
    }
    ctl.ok(&["del", "c"]);
    ctl.ok(&["put", "big", &"x".repeat(6000)]);
    let out = ctl.ok(&["lease", "grant", "300"]);
    let lease = out.split_whitespace().nth(1).expect("lease grant prints the id").to_string();
    ctl.ok(&["put", "leased", "v", &format!("--lease={lease}")]);
    ctl.ok(&["lease", "grant", "600"]);
    ctl.ok(&["put", "x", "9"]);
    ctl.ok(&["put", "x", "10"]);
    ctl.ok(&["compaction", "4"]);
    ctl.ok(&["put", "a", "5"]);
    ctl.ok(&["del", "b"]);
    ctl.ok(&["user", "add", "root:rootpw"]);
    ctl.ok(&["role", "add", "reader"]);
    ctl.ok(&["role", "grant-permission", "reader", "read", "/r/", "--prefix=true"]);
    ctl.ok(&["user", "add", "alice:alicepw"]);
    ctl.ok(&["user", "grant-role", "alice", "reader"]);
    ctl.ok(&["user", "grant-role", "root", "root"]);
    ctl.ok(&["auth", "enable"]);
    let root = as_root(ctl);
    root.ok(&["put", "/r/1", "readable"]);
    13
}

fn as_root(ctl: &Etcdctl) -> Etcdctl {
    let mut flags = ctl.flags.clone();
    flags.push(format!("--user={}:{}", ROOT.0, ROOT.1));
    Etcdctl { endpoints: ctl.endpoints.clone(), flags }
}

async fn connect_as(endpoint: &str, user: &str, password: &str) -> Result<Client, etcd_client::Error> {
    let opts = ConnectOptions::new().with_user(user, password).with_timeout(Duration::from_secs(10));
    Client::connect([endpoint], Some(opts)).await
}

/// Waits until `endpoint` serves a linearizable read to root.
async fn wait_serving(endpoint: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = connect_as(endpoint, ROOT.0, ROOT.1).await {
            if c.get("ready", None).await.is_ok() {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "{endpoint} does not serve root");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A key as a client sees it: key, value, create, mod, version, lease.
type Kv = (String, String, i64, i64, i64, i64);

/// Everything a client can learn of a store.
#[derive(Debug, PartialEq)]
struct View {
    revision: i64,
    /// The live keys at each revision from the compaction to the current.
    history: Vec<(i64, Vec<Kv>)>,
    /// What a read below the compaction answers.
    below_compaction: String,
    /// Each lease: ID, granted TTL, attached keys.
    leases: Vec<(i64, i64, Vec<String>)>,
}

fn kvs(resp: &etcd_client::GetResponse) -> Vec<Kv> {
    resp.kvs()
        .iter()
        .map(|kv| {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (s(kv.key()), s(kv.value()), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease())
        })
        .collect()
}

async fn view(c: &mut Client, compacted: i64) -> View {
    let now = c.get("", Some(GetOptions::new().with_all_keys())).await.expect("read everything");
    let revision = now.header().expect("a header").revision();
    let mut history = Vec::new();
    for rev in compacted..=revision {
        let at = c.get("", Some(GetOptions::new().with_all_keys().with_revision(rev))).await.expect("read history");
        history.push((rev, kvs(&at)));
    }
    let below = c.get("a", Some(GetOptions::new().with_revision(compacted - 1))).await;
    let below_compaction = match below {
        Ok(r) => format!("{:?}", kvs(&r)),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => panic!("a read below the compaction failed otherwise: {e}"),
    };
    let mut leases = Vec::new();
    let mut ids: Vec<i64> = c.leases().await.expect("list leases").leases().iter().map(|l| l.id()).collect();
    ids.sort();
    for id in ids {
        let ttl = c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("ttl");
        let keys = ttl.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        leases.push((id, ttl.granted_ttl(), keys));
    }
    View { revision, history, below_compaction, leases }
}

/// Checks what the users of [`write_store`] may do at `endpoint`.
async fn check_users(endpoint: &str) {
    let mut alice = connect_as(endpoint, "alice", "alicepw").await.expect("alice authenticates");
    let got = alice.get("/r/1", None).await.expect("alice reads /r/");
    assert_eq!(got.kvs()[0].value(), b"readable");
    let denied = alice.get("a", None).await.unwrap_err().to_string();
    assert!(denied.contains("permission denied"), "{denied}");
    let denied = alice.put("/r/1", "no", None).await.unwrap_err().to_string();
    assert!(denied.contains("permission denied"), "{denied}");
    let wrong = connect_as(endpoint, "alice", "wrong").await.err().expect("a wrong password is refused");
    assert!(wrong.to_string().contains("authentication failed"), "{wrong}");
}

/// Runs `synod snapshot restore FILE` for member `i` of `cluster`.
fn synod_restore(cluster: &Cluster, i: usize, file: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synod"));
    cmd.arg("snapshot").arg("restore").arg(file).arg("--name").arg(&cluster.members[i].name).args(extra);
    for flag in ["--data-dir", "--initial-cluster", "--initial-cluster-token", "--initial-advertise-peer-urls"] {
        cmd.arg(flag).arg(cluster.flag(i, flag));
    }
    cmd.stdin(Stdio::null()).output().expect("run synod snapshot restore")
}

fn synod(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_synod")).args(args).stdin(Stdio::null()).output().expect("run synod");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every damaged copy of `file` is refused by `synod snapshot restore`
/// with a message naming the damage, and no data directory is made.
fn damaged_copies_are_refused(dir: &Path, file: &Path) {
    let good = std::fs::read(file).unwrap();
    let mut bad_sum = good.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0x01;
    let mut flipped = good.clone();
    for at in [good.len() / 3, good.len() / 2] {
        flipped[at] ^= 0x5a;
    }
    let mut no_magic = good[..good.len() - 32].to_vec();
    for page in [0, 4096] {
        no_magic[page + 16] ^= 0xff;
    }
    let cases: Vec<(&str, Vec<u8>, &[&str], &str)> = vec![
        ("bad-sum", bad_sum, &[], "SHA-256 checksum mismatch"),
        ("flipped", flipped, &[], "SHA-256 checksum mismatch"),
        ("truncated-page", good[..good.len() - 4096].to_vec(), &[], "SHA-256 checksum mismatch"),
        ("truncated", good[..good.len() - 100].to_vec(), &[], "truncated"),
        ("no-sum", good[..good.len() - 32].to_vec(), &[], "--skip-hash-check"),
        ("cut-no-sum", good[..good.len() - 32 - 4096].to_vec(), &["--skip-hash-check"], "truncated"),
        ("no-magic", no_magic, &["--skip-hash-check"], "not a snapshot file"),
    ];
    let probe = Cluster::start_prepared(1, &[], |c| {
        for (name, bytes, flags, want) in &cases {
            let path = dir.join(format!("{name}.db"));
            std::fs::write(&path, bytes).unwrap();
            let out = synod_restore(c, 0, &path, flags);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "the {name} copy was restored");
            assert!(err.contains(want), "{name}: {err}");
            let data_dir = c.flag(0, "--data-dir");
            let made = std::fs::read_dir(&data_dir).map(|d| d.count()).unwrap_or(0);
            assert_eq!(made, 0, "{name}: restore wrote into {data_dir}");
        }
    });
    drop(probe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_snapshot_restores_into_synod_with_the_same_keys_history_leases_and_users() {
    if !etcd::installed() || !etcdctl::installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Etcd::start(tmp.path(), &tmp.path().join("etcd-data"), "e1", Etcd::configure("e1"));
    server.wait_ready(&[]);
    let ctl = Etcdctl { endpoints: server.endpoint.clone(), flags: Vec::new() };
    let revision = write_store(&ctl);
    let file = tmp.path().join("etcd.db");
    let out = as_root(&ctl).ok(&["snapshot", "save", file.to_str().unwrap()]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    let mut c = wait_serving(&server.endpoint).await;
    let expected = view(&mut c, 4).await;
    assert_eq!(expected.revision, revision);
    assert_eq!(expected.leases.len(), 2);
    drop((c, server));

    // `synod snapshot status` prints what etcdctl prints.
    for format in ["simple", "table", "json"] {
        let theirs = Etcdctl { endpoints: "127.0.0.1:1".into(), flags: Vec::new() }.ok(&[
            "snapshot",
            "status",
            file.to_str().unwrap(),
            "-w",
            format,
        ]);
        let (ok, ours, err) = synod(&["snapshot", "status", file.to_str().unwrap(), "-w", format]);
        assert!(ok, "{err}");
        assert_eq!(ours, theirs, "-w {format}");
    }

    damaged_copies_are_refused(tmp.path(), &file);

    let cluster = Cluster::start_prepared(3, &[], |c| {
        for i in 0..3 {
            let out = synod_restore(c, i, &file, &[]);
            assert!(out.status.success(), "restore failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    });
    for i in 0..3 {
        let mut c = wait_serving(&cluster.endpoint(i)).await;
        assert_eq!(view(&mut c, 4).await, expected, "member {i} holds what etcd held");
        check_users(&cluster.endpoint(i)).await;
    }
    // The cluster goes on from the revision etcd had reached.
    let mut c = wait_serving(&cluster.endpoint(1)).await;
    let put = c.put("after", "migration", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synod_snapshot_restores_into_a_real_etcd_with_the_same_keys_history_leases_and_users() {
    if !etcd::installed() || !etcdctl::installed() {
        return;
    }
    let cluster = Cluster::start(3);
    cluster.wait_ready().await;
    let ctl = Etcdctl::of(&cluster, &[0]);
    // wait_ready wrote nothing; the same writes as etcd gets above.
    let revision = write_store(&ctl);
    let mut c = wait_serving(&cluster.endpoint(0)).await;
    let expected = view(&mut c, 4).await;
    assert_eq!(expected.revision, revision);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("synod.db");
    let out = as_root(&ctl).ok(&["snapshot", "save", file.to_str().unwrap()]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    drop((c, cluster));

    // etcdctl reads it: its integrity check passes and it agrees with
    // `synod snapshot status`.
    let offline = Etcdctl { endpoints: "127.0.0.1:1".into(), flags: Vec::new() };
    let theirs = offline.ok(&["snapshot", "status", file.to_str().unwrap(), "-w", "json"]);
    assert!(theirs.contains(&format!("\"revision\":{revision}")), "{theirs}");
    let (ok, ours, err) = synod(&["snapshot", "status", file.to_str().unwrap(), "-w", "json"]);
    assert!(ok, "{err}");
    assert_eq!(ours, theirs);

    // etcdctl restores it, and etcd serves the same store from it.
    let data_dir = tmp.path().join("restored.etcd");
    let flags = Etcd::configure("e1");
    offline.ok(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--name",
        "e1",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--initial-cluster",
        &flags.0,
        "--initial-advertise-peer-urls",
        &flags.1,
    ]);
    let mut server = Etcd::start(tmp.path(), &data_dir, "e1", flags);
    server.wait_ready(&[&format!("--user={}:{}", ROOT.0, ROOT.1)]);
    let mut c = wait_serving(&server.endpoint).await;
    assert_eq!(view(&mut c, 4).await, expected, "etcd holds what synod held");
    check_users(&server.endpoint).await;
    let put = c.put("after", "migration", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), revision + 1);
}
