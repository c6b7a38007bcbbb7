//! One etcd-flag-compatible server process on loopback.
//!
//! etcd and synod take the same flags, so one launcher starts either: that
//! is what lets a test or a benchmark give both exactly the same treatment.
//! A [`Node`] kills its process when dropped, so a failing test never leaves
//! a server behind.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcd_client::proto::PbRangeRequest;

use crate::raw::RawKv;

/// How to start one member.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The server binary (etcd or synod).
    pub binary: PathBuf,
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// Loopback port for clients.
    pub client_port: u16,
    /// Loopback port for peers.
    pub peer_port: u16,
    /// `--initial-cluster`, `name=http://127.0.0.1:port,...`.
    pub initial_cluster: String,
    /// Where the process's stdout and stderr go.
    pub log: PathBuf,
    /// `--initial-cluster-state`: `new`, or `existing` to join.
    pub initial_cluster_state: String,
    /// Further flags, after the ones above.
    pub extra_args: Vec<String>,
}

impl NodeSpec {
    /// A one-member cluster on two free loopback ports, data and log in `dir`.
    pub fn single(binary: &Path, name: &str, dir: &Path) -> Result<Self> {
        // Hold both while picking, so they differ.
        let a = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
        let b = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
        let (client_port, peer_port) = (a.local_addr()?.port(), b.local_addr()?.port());
        drop((a, b));
        Ok(NodeSpec {
            binary: binary.to_path_buf(),
            name: name.to_string(),
            data_dir: dir.join(format!("{name}.data")),
            client_port,
            peer_port,
            initial_cluster: format!("{name}=http://127.0.0.1:{peer_port}"),
            log: dir.join(format!("{name}.log")),
            initial_cluster_state: "new".into(),
            extra_args: Vec::new(),
        })
    }

    /// The etcd flags, as `etcd` and `synod` both take them.
    pub fn args(&self) -> Vec<String> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        vec![
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            self.initial_cluster.clone(),
            "--initial-cluster-state".into(),
            self.initial_cluster_state.clone(),
        ]
        .into_iter()
        .chain(self.extra_args.iter().cloned())
        .collect()
    }

    /// `http://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running member; killed on drop.
#[derive(Debug)]
pub struct Node {
    spec: NodeSpec,
    child: Child,
}

impl Node {
    /// Starts the process; does not wait for it to serve.
    pub fn start(spec: NodeSpec) -> Result<Node> {
        let log = File::create(&spec.log).with_context(|| format!("creating log {}", spec.log.display()))?;
        let mut command = Command::new(&spec.binary);
        // Both etcd and synod read ETCD_* variables (synod refuses one it
        // does not know, such as ETCD_BIN): a member is configured by its
        // spec alone.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(spec.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        Ok(Node { spec, child })
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.client_port)
    }

    /// The spec it was started with.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// Waits until a linearizable Range succeeds (so a leader exists and
    /// the member serves), failing early if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<RawKv> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("never connected");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before serving; log {}:\n{}",
                    self.spec.binary.display(),
                    self.spec.log.display(),
                    self.log_tail()
                );
            }
            match RawKv::connect(&self.client_url()).await {
                Ok(mut kv) => {
                    let probe = PbRangeRequest { key: b"synod-probe".to_vec(), ..Default::default() };
                    match tokio::time::timeout(Duration::from_secs(2), kv.range(probe)).await {
                        Ok(Ok(_)) => return Ok(kv),
                        Ok(Err(status)) => last_error = status.to_string(),
                        Err(_) => last_error = "probe timed out".into(),
                    }
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{} did not serve within {timeout:?} ({last_error}); log {}:\n{}",
            self.spec.binary.display(),
            self.spec.log.display(),
            self.log_tail()
        )
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The last 40 lines the process logged, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now (the OS picks it).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Starts a fresh single-member server of `binary` with its data under
/// `dir` and waits until it answers. Ports are picked by binding port 0 and
/// letting go, so another process can take one before the server binds it:
/// this tries up to four times with fresh ports.
pub async fn start_single(binary: &Path, dir: &Path) -> Result<(Node, RawKv)> {
    let mut last_error = None;
    for attempt in 0..4 {
        let dir = dir.join(format!("attempt-{attempt}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let spec = NodeSpec::single(binary, "n1", &dir)?;
        let mut node = match Node::start(spec) {
            Ok(node) => node,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        match node.wait_ready(Duration::from_secs(30)).await {
            Ok(kv) => return Ok((node, kv)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("four attempts failed"))
}

/// The path of another binary of this build, next to the running test's
/// target profile directory (tests run from `target/<profile>/deps/`), or
/// `env` if that variable is set.
pub fn sibling_binary(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test exe in target/<profile>/deps");
    profile_dir.join(name)
}
