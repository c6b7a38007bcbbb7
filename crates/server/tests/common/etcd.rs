//! Debian's etcd server as tests run it: one member on loopback ports, its
//! data and log in a folder, killed when dropped. Tests that need it say so
//! and return when it is not installed (scripts/setup installs it).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary: `$ETCD_BIN`, or `etcd` on the PATH.
pub fn binary() -> PathBuf {
    std::env::var_os("ETCD_BIN").map_or_else(|| PathBuf::from("etcd"), PathBuf::from)
}

/// Whether etcd is installed.
pub fn installed() -> bool {
    let there = Command::new(binary()).arg("--version").output().is_ok_and(|o| o.status.success());
    if !there {
        eprintln!("etcd is not installed (scripts/setup installs it); skipping");
    }
    there
}

/// A running one-member etcd.
pub struct Etcd {
    child: Child,
    /// Its name, `--initial-cluster` and peer URL (for a restore into it).
    pub name: String,
    /// `name=peer-url`.
    pub initial_cluster: String,
    /// Its peer URL.
    pub peer_url: String,
    /// host:port of its client listener.
    pub endpoint: String,
    log: PathBuf,
}

impl Etcd {
    /// Flags for a member named `name` on fresh ports with its data in `data_dir`.
    pub fn configure(name: &str) -> (String, String, u16) {
        let ports = super::free_ports(2);
        let peer_url = format!("http://127.0.0.1:{}", ports[1]);
        (format!("{name}={peer_url}"), peer_url, ports[0])
    }

    /// Starts etcd with its data in `data_dir` (new, or restored with the
    /// same name, cluster and peer URL), logging to `dir/<name>.log`.
    pub fn start(dir: &Path, data_dir: &Path, name: &str, cluster: (String, String, u16)) -> Etcd {
        let (initial_cluster, peer_url, client_port) = cluster;
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create the etcd log");
        let client_url = format!("http://127.0.0.1:{client_port}");
        let child = Command::new(binary())
            .args(["--name", name, "--data-dir"])
            .arg(data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the log handle"))
            .stderr(out)
            .spawn()
            .expect("start etcd");
        Etcd {
            child,
            name: name.to_string(),
            initial_cluster,
            peer_url,
            endpoint: format!("127.0.0.1:{client_port}"),
            log,
        }
    }

    /// Waits until etcd answers `endpoint health` (through etcdctl, with
    /// `flags` such as a user).
    pub fn wait_ready(&mut self, flags: &[&str]) {
        let ctl = super::etcdctl::Etcdctl {
            endpoints: self.endpoint.clone(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ctl.run(&["endpoint", "health"]).0 {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("etcd exited ({status}):\n{}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "etcd not healthy:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
