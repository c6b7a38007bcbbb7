//! Debian's etcdctl (`ETCDCTL_API=3`) against a 3-node synod cluster: the
//! command-line client operators use works unchanged.
//!
//! Endpoints are host:port (see `common::etcdctl`).

mod common;

use common::etcdctl::{self, Etcdctl};
use common::Cluster;
use std::time::{Duration, Instant};

fn json_number(json: &str, field: &str) -> i64 {
    let at = json.find(&format!("\"{field}\":")).unwrap_or_else(|| panic!("{field} in {json}"));
    json[at + field.len() + 3..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{field} is a number in {json}"))
}

#[test]
fn etcdctl_drives_a_synod_cluster() {
    if !etcdctl::installed() {
        return;
    }
    let cluster = Cluster::start(3);
    let ctl = Etcdctl::all(&cluster);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = ctl.run(&["endpoint", "health"]);
        // etcdctl 3.4 reports health on stderr.
        if ok && format!("{out}{err}").matches("is healthy").count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "cluster not healthy: {out}{err}");
        std::thread::sleep(Duration::from_millis(200));
    }

    assert_eq!(ctl.ok(&["put", "foo", "bar"]), "OK\n");
    ctl.ok(&["put", "foo2", "baz"]);
    ctl.ok(&["put", "other", "x"]);
    assert_eq!(ctl.ok(&["get", "foo"]), "foo\nbar\n");
    assert_eq!(ctl.ok(&["get", "--prefix", "foo"]), "foo\nbar\nfoo2\nbaz\n");
    assert_eq!(ctl.ok(&["get", "--prefix", "foo", "--limit", "1"]), "foo\nbar\n");

    let json = ctl.ok(&["get", "foo", "-w", "json"]);
    let rev = json_number(&json, "mod_revision");
    ctl.ok(&["put", "foo", "bar2"]);
    let rev_s = rev.to_string();
    assert_eq!(ctl.ok(&["get", "foo", "--rev", &rev_s]), "foo\nbar\n");
    assert_eq!(ctl.ok(&["get", "foo"]), "foo\nbar2\n");

    assert_eq!(ctl.ok(&["del", "foo2"]), "1\n");
    assert_eq!(ctl.ok(&["get", "foo2"]), "");

    let (ok, out, err) =
        ctl.run_with_input(&["txn", "-i"], Some("value(\"foo\") = \"bar2\"\n\nput t yes\n\nput t no\n\n"));
    assert!(ok, "txn failed: {err}");
    assert!(out.contains("SUCCESS\n\nOK"), "txn output: {out}");
    assert_eq!(ctl.ok(&["get", "t"]), "t\nyes\n");

    let current = json_number(&ctl.ok(&["get", "foo", "-w", "json"]), "revision");
    let current_s = current.to_string();
    assert_eq!(ctl.ok(&["compaction", &current_s]), format!("compacted revision {current}\n"));
    let (ok, _, err) = ctl.run(&["get", "foo", "--rev", &rev_s]);
    assert!(!ok && err.contains("required revision has been compacted"), "{err}");

    let members = ctl.ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    for (i, m) in cluster.members.iter().enumerate() {
        let line = members
            .lines()
            .find(|l| l.contains(&format!(", {}, ", m.name)))
            .unwrap_or_else(|| panic!("{} in {members}", m.name));
        assert!(line.contains("started"), "{line}");
        assert!(line.contains(&format!("http://127.0.0.1:{}", m.peer_port)), "{line}");
        // Client URLs are published through the log shortly after start.
        assert!(line.contains(&cluster.endpoint(i)), "{line}");
    }

    let status = ctl.ok(&["endpoint", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    assert!(status.lines().all(|l| l.contains("3.5.0")), "{status}");
    assert_eq!(status.lines().filter(|l| l.contains(", true, ")).count(), 1, "exactly one leader: {status}");

    let (ok, out, err) = ctl.run(&["endpoint", "health"]);
    let health = format!("{out}{err}");
    assert!(ok, "{health}");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
}

#[test]
fn etcdctl_watch_lock_and_elect() {
    if !etcdctl::installed() {
        return;
    }
    let cluster = Cluster::start(3);
    let ctl = Etcdctl::all(&cluster);
    ctl.wait_ready();

    // watch --prefix --rev --prev-kv replays history, then follows.
    let first = json_number(&ctl.ok(&["put", "w/a", "1", "-w", "json"]), "revision");
    ctl.ok(&["put", "w/a", "2"]);
    ctl.ok(&["del", "w/a"]);
    let watch = ctl.spawn(&["watch", "--prefix", "w/", "--rev", &first.to_string(), "--prev-kv"]);
    let history = "PUT\nw/a\n1\nPUT\nw/a\n1\nw/a\n2\nDELETE\nw/a\n2\nw/a\n\n";
    watch.wait_for(20, "the history", |out| out == history);
    ctl.ok(&["put", "w/b", "3"]);
    ctl.ok(&["put", "other", "x"]);
    watch.wait_for(20, "the new put", |out| out == format!("{history}PUT\nw/b\n3\n"));

    // lock runs a command while holding the lock: two never overlap.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!("echo start >> {0}; sleep 1; echo end >> {0}", log.display());
    let holders: Vec<_> = (0..2).map(|_| ctl.spawn(&["lock", "ctl-lock", "--", "sh", "-c", &script])).collect();
    for h in holders {
        h.succeed();
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "start\nend\nstart\nend\n");

    // elect: one leader at a time; the observer sees each; a terminated
    // leader resigns and the next candidate takes over.
    let observer = ctl.spawn(&["elect", "-l", "ctl-elect"]);
    let one = ctl.spawn(&["elect", "ctl-elect", "one"]);
    one.wait_for(20, "the first leader", |out| out.ends_with("\none\n"));
    observer.wait_for(20, "the first leader", |out| out.ends_with("\none\n"));
    let two = ctl.spawn(&["elect", "ctl-elect", "two"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(two.output(), "", "a second leader while the first leads");
    one.terminate();
    two.wait_for(20, "the second leader", |out| out.ends_with("\ntwo\n"));
    observer.wait_for(20, "the second leader", |out| out.ends_with("\ntwo\n"));
}
