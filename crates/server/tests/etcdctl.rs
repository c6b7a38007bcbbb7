//! Debian's etcdctl (`ETCDCTL_API=3`) against a 3-node synod cluster: the
//! command-line client operators use works unchanged.
//!
//! Endpoints are given as host:port: etcdctl 3.4 dials `endpoint status`
//! with the whole URL as the HTTP/2 `:authority` (`http://127.0.0.1:2379`),
//! which hyper's HTTP/2 server rejects as malformed; host:port works
//! everywhere (see the crate's README notes).

mod common;

use common::Cluster;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Etcdctl {
    endpoints: String,
}

impl Etcdctl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg("--command-timeout=10s")
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run etcdctl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("etcdctl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args, None);
        assert!(ok, "etcdctl {args:?} failed: {err}");
        out
    }
}

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
    if Command::new("etcdctl").arg("version").output().is_err() {
        eprintln!("etcdctl is not installed (scripts/setup installs it); skipping");
        return;
    }
    let cluster = Cluster::start(3);
    let endpoints: Vec<String> = cluster.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
    let ctl = Etcdctl { endpoints: endpoints.join(",") };

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = ctl.run(&["endpoint", "health"], None);
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

    let (ok, out, err) = ctl.run(&["txn", "-i"], Some("value(\"foo\") = \"bar2\"\n\nput t yes\n\nput t no\n\n"));
    assert!(ok, "txn failed: {err}");
    assert!(out.contains("SUCCESS\n\nOK"), "txn output: {out}");
    assert_eq!(ctl.ok(&["get", "t"]), "t\nyes\n");

    let current = json_number(&ctl.ok(&["get", "foo", "-w", "json"]), "revision");
    let current_s = current.to_string();
    assert_eq!(ctl.ok(&["compaction", &current_s]), format!("compacted revision {current}\n"));
    let (ok, _, err) = ctl.run(&["get", "foo", "--rev", &rev_s], None);
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

    let (ok, out, err) = ctl.run(&["endpoint", "health"], None);
    let health = format!("{out}{err}");
    assert!(ok, "{health}");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
}
