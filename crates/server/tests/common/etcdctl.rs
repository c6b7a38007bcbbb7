//! Debian's etcdctl (`ETCDCTL_API=3`) as tests run it.
//!
//! Endpoints are host:port ([`Etcdctl::of`]) or whole URLs
//! ([`Etcdctl::urls`]): with URLs, etcdctl 3.4 sends per-endpoint calls
//! (`endpoint status`, `defrag` ...) with the URL as the HTTP/2
//! `:authority`, which the server makes bare (`synod_server::authority_header`).

use super::Cluster;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// etcdctl pointed at some members of a cluster.
pub struct Etcdctl {
    /// `--endpoints`, comma-separated host:port or URLs.
    pub endpoints: String,
    /// Flags before the command (TLS files).
    pub flags: Vec<String>,
}

/// Whether etcdctl is installed (scripts/setup installs it); tests that
/// need it say so and return when it is not.
pub fn installed() -> bool {
    let there = Command::new("etcdctl").arg("version").output().is_ok();
    if !there {
        eprintln!("etcdctl is not installed (scripts/setup installs it); skipping");
    }
    there
}

impl Etcdctl {
    /// etcdctl for the given members.
    pub fn of(cluster: &Cluster, members: &[usize]) -> Etcdctl {
        let eps: Vec<String> =
            members.iter().map(|&i| format!("127.0.0.1:{}", cluster.members[i].client_port)).collect();
        let mut flags = Vec::new();
        if cluster.tls.as_ref().is_some_and(|t| t.client && t.auto) {
            // A self-signed certificate: etcdctl cannot verify it.
            flags.push("--insecure-transport=false".to_string());
            flags.push("--insecure-skip-tls-verify".to_string());
        } else if let Some(tls) = cluster.tls.as_ref().filter(|t| t.client) {
            flags.push(format!("--cacert={}", tls.file("ca.pem")));
            flags.push(format!("--cert={}", tls.file("client.pem")));
            flags.push(format!("--key={}", tls.file("client-key.pem")));
        }
        Etcdctl { endpoints: eps.join(","), flags }
    }

    /// etcdctl for the given members, endpoints given as their client URLs
    /// (`http://127.0.0.1:port`, or https://).
    pub fn urls(cluster: &Cluster, members: &[usize]) -> Etcdctl {
        let urls: Vec<String> = members.iter().map(|&i| cluster.endpoint(i)).collect();
        Etcdctl { endpoints: urls.join(","), ..Etcdctl::of(cluster, members) }
    }

    /// etcdctl for every member.
    pub fn all(cluster: &Cluster) -> Etcdctl {
        Etcdctl::of(cluster, &(0..cluster.members.len()).collect::<Vec<_>>())
    }

    /// The command, with stdout and stderr piped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg("--command-timeout=20s")
            .args(&self.flags)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a command to its end: (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_with_input(args, None)
    }

    /// Runs a command with `stdin` as its input.
    pub fn run_with_input(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = self.command(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
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
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "etcdctl {args:?} failed: {out}{err}");
        out
    }

    /// Runs a change that etcdctl does not retry (a membership change, say)
    /// as a real client would: again while the cluster answers that it has
    /// no leader, for up to 30 seconds; an answer containing `done` to a
    /// retry means an earlier try was applied after all, and counts as
    /// success. The output of the try that succeeded.
    pub fn change(&self, args: &[&str], done: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut retried = false;
        loop {
            let (ok, out, err) = self.run(args);
            if ok || (retried && err.contains(done)) {
                return out;
            }
            assert!(err.contains("no leader") && Instant::now() < deadline, "etcdctl {args:?} failed: {out}{err}");
            retried = true;
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until a put through these endpoints succeeds.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.run(&["put", "ready", "1"]).0 {
            assert!(Instant::now() < deadline, "cluster not ready for etcdctl");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts a long-running command (watch, elect, lock ...) whose
    /// output is collected as it comes.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let mut child = self.command(args).spawn().expect("spawn etcdctl");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut out = sink.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
            text
        };
        let output = collect(Box::new(child.stdout.take().expect("stdout")));
        let errors = collect(Box::new(child.stderr.take().expect("stderr")));
        Spawned { child, output, errors }
    }
}

/// A running etcdctl, killed when dropped even if the test fails.
pub struct Spawned {
    /// The process.
    pub child: Child,
    output: Arc<Mutex<String>>,
    errors: Arc<Mutex<String>>,
}

impl Spawned {
    /// Everything it printed to stdout so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Everything it printed to stderr so far.
    pub fn errors(&self) -> String {
        self.errors.lock().unwrap().clone()
    }

    /// Waits for it to exit; panics with its stderr unless it succeeded.
    pub fn succeed(mut self) {
        let status = self.child.wait().expect("etcdctl exits");
        // Give the readers a moment to take the last lines.
        std::thread::sleep(Duration::from_millis(50));
        assert!(status.success(), "etcdctl failed ({status}): {}{}", self.output(), self.errors());
    }

    /// Waits up to `secs` seconds until its output satisfies `done`.
    pub fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.output();
            if done(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl did not print {what} within {secs} s; it printed:\n{out}\nand on stderr:\n{}",
                self.errors()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (etcdctl's elect and lock clean up on it).
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
