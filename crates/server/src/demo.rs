//! `synod demo`: a local three-node cluster on etcd's local-cluster ports,
//! each member a child process of this same binary, so it behaves exactly as
//! a production deployment does (kill one and watch the others carry on).
//!
//! With `--tls`, the demo makes a certificate authority and a certificate per
//! member (and one for etcdctl) under `DATA_DIR/tls/certs`, and runs the
//! cluster with client and peer TLS, client certificates required: the
//! secure setup of the README's "Securing it", ready to try.

use crate::config::DemoArgs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The demo's members: name, client port, peer port (etcd's Procfile).
pub const MEMBERS: [(&str, u16, u16); 3] = [("infra1", 2379, 2380), ("infra2", 22379, 22380), ("infra3", 32379, 32380)];

/// The demo's cluster token.
pub const TOKEN: &str = "synod-demo";

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A member could not be started.
    #[error("starting {name}: {source}")]
    Spawn {
        /// The member.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// Signals could not be watched.
    #[error("signals: {0}")]
    Signal(std::io::Error),
    /// Every member exited by itself (a port in use, a bad data directory:
    /// their logs say which).
    #[error("every member exited; see their logs above")]
    AllExited,
    /// The data directory could not be made.
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The certificates of `--tls` could not be made.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Where `--tls` puts the certificates, under the demo's data.
pub fn certs_dir(base: &Path) -> PathBuf {
    base.join("certs")
}

/// Makes the demo's CA and certificates in `dir`, unless they are there
/// from an earlier run: `ca.pem`, `infra1.pem`/`infra1-key.pem`, ... and
/// `client.pem`/`client-key.pem` for etcdctl.
pub fn make_certs(dir: &Path) -> Result<(), crate::tls::TlsError> {
    if dir.join("ca.pem").exists() && dir.join("client-key.pem").exists() {
        return Ok(());
    }
    let ca = crate::tls::Authority::new("synod demo CA")?;
    let names: Vec<&str> = MEMBERS.iter().map(|(n, _, _)| *n).chain(["client"]).collect();
    ca.write_all(dir, &names, &["127.0.0.1", "localhost"])
}

/// The flags that start demo member `i` (0, 1 or 2) with data under `base`;
/// with `tls`, client and peer TLS with the certificates of [`make_certs`]
/// in [`certs_dir`].
pub fn member_args(i: usize, base: &Path, tls: bool) -> Vec<String> {
    let (name, client, peer) = MEMBERS[i];
    let scheme = if tls { "https" } else { "http" };
    let initial_cluster =
        MEMBERS.iter().map(|(n, _, p)| format!("{n}={scheme}://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let client_url = format!("{scheme}://127.0.0.1:{client}");
    let peer_url = format!("{scheme}://127.0.0.1:{peer}");
    let mut args: Vec<String> = [
        "--name",
        name,
        "--data-dir",
        &base.join(name).to_string_lossy(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &initial_cluster,
        "--initial-cluster-token",
        TOKEN,
        "--initial-cluster-state",
        "new",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if tls {
        let certs = certs_dir(base);
        let file = |f: String| certs.join(f).to_string_lossy().into_owned();
        let (cert, key, ca) = (file(format!("{name}.pem")), file(format!("{name}-key.pem")), file("ca.pem".into()));
        for (flag, value) in [
            ("--cert-file", &cert),
            ("--key-file", &key),
            ("--trusted-ca-file", &ca),
            ("--peer-cert-file", &cert),
            ("--peer-key-file", &key),
            ("--peer-trusted-ca-file", &ca),
        ] {
            args.extend([flag.to_string(), value.clone()]);
        }
        args.extend(["--client-cert-auth".to_string(), "--peer-client-cert-auth".to_string()]);
    }
    args
}

/// The endpoints for etcdctl, as host:port (URLs work as well: see
/// [`crate::authority_header`]).
fn endpoints() -> String {
    MEMBERS.iter().map(|(_, c, _)| format!("127.0.0.1:{c}")).collect::<Vec<_>>().join(",")
}

/// Asks a child to stop as Ctrl-C would.
fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory effects; the caller only passes a
        // child it has not reaped, so the pid names that child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// SIGTERM and SIGINT, watched from before the first member starts so
/// that neither can leave members behind.
type Signals = (tokio::signal::unix::Signal, tokio::signal::unix::Signal);

/// Runs the demo until SIGINT or SIGTERM, then stops every member.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut signals = (
        signal(SignalKind::terminate()).map_err(DemoError::Signal)?,
        signal(SignalKind::interrupt()).map_err(DemoError::Signal)?,
    );
    // A TLS cluster's members have other peer URLs, hence other ids: keep
    // its data apart from the plaintext demo's.
    let base = if args.tls { args.data_dir.join("tls") } else { args.data_dir };
    std::fs::create_dir_all(&base).map_err(|e| DemoError::DataDir(base.display().to_string(), e))?;
    if args.tls {
        make_certs(&certs_dir(&base))?;
    }
    let exe = std::env::current_exe().map_err(|source| DemoError::Spawn { name: "synod".into(), source })?;
    let mut children: Vec<(&str, Child)> = Vec::new();
    for (i, (name, _, _)) in MEMBERS.iter().enumerate() {
        let mut cmd = Command::new(&exe);
        cmd.args(member_args(i, &base, args.tls)).stdin(Stdio::null());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        match cmd.spawn() {
            Ok(c) => children.push((name, c)),
            Err(source) => {
                stop(&mut children);
                return Err(DemoError::Spawn { name: name.to_string(), source });
            }
        }
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, client, _) in MEMBERS {
        while TcpStream::connect(("127.0.0.1", client)).is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut eps = endpoints();
    let scheme = if args.tls { "https" } else { "http" };
    if args.tls {
        let certs = certs_dir(&base);
        let f = |n: &str| certs.join(n).display().to_string();
        eps = format!("{eps} --cacert={} --cert={} --key={}", f("ca.pem"), f("client.pem"), f("client-key.pem"));
    }
    println!(
        "\nsynod demo: a three-node cluster is running (data in {dir}).\n\n\
         members (name, client URL, peer URL):\n{members}\n\
         try it with etcdctl:\n\
         \x20 export ETCDCTL_API=3\n\
         \x20 etcdctl --endpoints={eps} put foo bar\n\
         \x20 etcdctl --endpoints={eps} get foo\n\
         \x20 etcdctl --endpoints={eps} get --prefix ''\n\
         \x20 etcdctl --endpoints={eps} -w table member list\n\
         \x20 etcdctl --endpoints={eps} -w table endpoint status\n\
         \x20 etcdctl --endpoints={eps} endpoint health\n\n\
         Ctrl-C stops all three.\n",
        dir = base.display(),
        members = MEMBERS
            .iter()
            .map(|(n, c, p)| format!("  {n}  {scheme}://127.0.0.1:{c}  {scheme}://127.0.0.1:{p}\n"))
            .collect::<String>(),
    );

    let waited = wait_for_signal(&mut signals, &mut children).await;
    stop(&mut children);
    println!("synod demo: stopped");
    waited
}

/// Waits for SIGINT or SIGTERM, warning about members that exit meanwhile.
async fn wait_for_signal(signals: &mut Signals, children: &mut [(&str, Child)]) -> Result<(), DemoError> {
    let (term, int) = signals;
    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, (name, child)) in children.iter_mut().enumerate() {
                    if let Ok(Some(status)) = child.try_wait() {
                        if !reported[i] {
                            warn!(member = %name, %status, "member exited");
                            reported[i] = true;
                        }
                    }
                }
                if reported.iter().all(|&r| r) {
                    return Err(DemoError::AllExited);
                }
            }
        }
    }
}

/// Stops every member: SIGTERM, then SIGKILL for any still running after
/// five seconds.
fn stop(children: &mut [(&str, Child)]) {
    for (_, child) in children.iter_mut() {
        // Only a child not yet reaped: its pid cannot have been reused.
        if let Ok(None) = child.try_wait() {
            terminate(child);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for (name, child) in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    warn!(member = %name, "did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        info!(member = %name, "stopped");
    }
}
