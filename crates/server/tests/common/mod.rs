//! A cluster of real `synod` processes on loopback ports, for tests: each
//! member is a child process with its own data directory; every child is
//! killed when the cluster is dropped, and a failing test prints the tail of
//! each member's log.

#![allow(dead_code)]

pub mod etcd;
pub mod etcdctl;
pub mod faultfs;
pub mod http;
pub mod load;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use std::collections::BTreeSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Fast but not twitchy timing for two shared cores.
pub const TIMING: &[&str] = &["--tick-ms", "10", "--heartbeat-interval", "50", "--election-timeout", "500"];

/// How a member is given its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// On the command line.
    Flags,
    /// As `ETCD_*` environment variables only.
    Env,
    /// In a YAML config file with etcd's keys, named by `--config-file`.
    ConfigFile,
}

/// One member process.
pub struct Member {
    /// Its name.
    pub name: String,
    /// Its client port.
    pub client_port: u16,
    /// Its peer port.
    pub peer_port: u16,
    args: Vec<String>,
    /// Extra environment for its process.
    env: Vec<(String, String)>,
    /// How it is given its flags.
    via: Via,
    /// The program it runs, if not the `synod` under test.
    program: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster.
pub struct Cluster {
    /// The members, in start order.
    pub members: Vec<Member>,
    dir: TempDir,
    /// TLS, if the cluster runs with it.
    pub tls: Option<Tls>,
}

/// Which sides of a test cluster run TLS, with certificates from a test CA
/// (made with rcgen) in a folder: `ca.pem`, `m1.pem`/`m1-key.pem` ... for
/// the members and `client.pem`/`client-key.pem` for clients.
#[derive(Clone, Debug)]
pub struct Tls {
    /// https:// client URLs, client certificates required.
    pub client: bool,
    /// https:// peer URLs, peer certificates required.
    pub peer: bool,
    /// `--auto-tls` / `--peer-auto-tls` instead of the test CA's files.
    pub auto: bool,
    /// Where the certificates are.
    pub certs: PathBuf,
}

impl Tls {
    /// The path of a file among the certificates.
    pub fn file(&self, name: &str) -> String {
        self.certs.join(name).to_string_lossy().into_owned()
    }

    /// A client's TLS with the test CA and, if `with_cert`, the client
    /// certificate.
    pub fn client_options(&self, with_cert: bool) -> TlsOptions {
        let read = |f: &str| std::fs::read(self.certs.join(f)).expect("read a test certificate");
        let opts = TlsOptions::new().ca_certificate(Certificate::from_pem(read("ca.pem")));
        if with_cert {
            opts.identity(Identity::from_pem(read("client.pem"), read("client-key.pem")))
        } else {
            opts
        }
    }

    /// The flags of member `name` for this TLS setup.
    fn flags(&self, name: &str) -> Vec<String> {
        let mut flags = Vec::new();
        if self.auto {
            flags.extend(self.client.then(|| "--auto-tls".to_string()));
            flags.extend(self.peer.then(|| "--peer-auto-tls".to_string()));
            return flags;
        }
        let (cert, key, ca) =
            (self.file(&format!("{name}.pem")), self.file(&format!("{name}-key.pem")), self.file("ca.pem"));
        if self.client {
            flags.extend(["--cert-file".into(), cert.clone(), "--key-file".into(), key.clone()]);
            flags.extend(["--trusted-ca-file".into(), ca.clone(), "--client-cert-auth".into()]);
        }
        if self.peer {
            flags.extend(["--peer-cert-file".into(), cert, "--peer-key-file".into(), key]);
            flags.extend(["--peer-trusted-ca-file".into(), ca, "--peer-client-cert-auth".into()]);
        }
        flags
    }
}

/// Makes a CA named `name` in `dir` and certificates for members m1..m5
/// and a client, valid for 127.0.0.1 and localhost.
pub fn make_certs(dir: &std::path::Path, name: &str) {
    let ca = synod_server::tls::Authority::new(name).expect("make a test CA");
    ca.write_all(dir, &["m1", "m2", "m3", "m4", "m5", "client"], &["127.0.0.1", "localhost"])
        .expect("write test certificates");
}

/// The flags of member `name` on loopback ports, its data under `dir`.
fn member_args(
    name: &str,
    dir: &std::path::Path,
    (client_port, peer_port): (u16, u16),
    initial_cluster: &str,
    token: &str,
    tls: Option<&Tls>,
) -> Vec<String> {
    let client = format!("{}://127.0.0.1:{client_port}", scheme(tls.is_some_and(|t| t.client)));
    let peer = format!("{}://127.0.0.1:{peer_port}", scheme(tls.is_some_and(|t| t.peer)));
    // TLS flags first: what follows the token is the timing and extra
    // flags that prepare_member copies.
    let tls_flags = tls.map(|t| t.flags(name)).unwrap_or_default();
    tls_flags
        .into_iter()
        .chain(
            [
                "--name",
                name,
                "--data-dir",
                &dir.join(name).to_string_lossy(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                initial_cluster,
                "--initial-cluster-token",
                token,
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .collect()
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// A command running the `synod` under test, with no `ETCD_*` variable
/// of the test's own environment: `synod` refuses one that names no flag
/// (`ETCD_BIN`, say) and would take one that does, so a member is
/// configured by what the test gives it and nothing else.
pub fn synod_command() -> Command {
    program_command(env!("CARGO_BIN_EXE_synod"))
}

/// [`synod_command`] for another `synod` program.
pub fn program_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The flags of a command line as (flag, value) pairs, without dashes; a
/// flag with no value (a boolean) is `true`.
pub fn flag_values(args: &[String]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < args.len() {
        let flag = args[at].strip_prefix("--").unwrap_or_else(|| panic!("{} is not a flag", args[at]));
        match args.get(at + 1).filter(|v| !v.starts_with("--")) {
            Some(value) => {
                pairs.push((flag.to_string(), value.clone()));
                at += 2;
            }
            None => {
                pairs.push((flag.to_string(), "true".to_string()));
                at += 1;
            }
        }
    }
    pairs
}

/// etcd's variable for `--{flag}`.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

/// A command line as an etcd config file: the TLS flags in etcd's
/// `client-transport-security` and `peer-transport-security` sections,
/// numbers and booleans bare, the rest quoted.
pub fn config_yaml(args: &[String]) -> String {
    const TLS: &[&str] = &["cert-file", "key-file", "client-cert-auth", "trusted-ca-file", "auto-tls"];
    let yaml_value = |v: &str| {
        if v == "true" || v == "false" || (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
            v.to_string()
        } else {
            format!("{v:?}")
        }
    };
    let (mut top, mut client, mut peer) = (String::new(), String::new(), String::new());
    for (flag, value) in flag_values(args) {
        if TLS.contains(&flag.as_str()) {
            client.push_str(&format!("  {flag}: {}\n", yaml_value(&value)));
        } else if let Some(inner) = flag.strip_prefix("peer-").filter(|f| TLS.contains(f)) {
            peer.push_str(&format!("  {inner}: {}\n", yaml_value(&value)));
        } else {
            top.push_str(&format!("{flag}: {}\n", yaml_value(&value)));
        }
    }
    for (section, keys) in [("client-transport-security", client), ("peer-transport-security", peer)] {
        if !keys.is_empty() {
            top.push_str(&format!("{section}:\n{keys}"));
        }
    }
    top
}

/// `n` distinct free loopback ports (bound together, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

impl Cluster {
    /// Starts `n` members with the test timing.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// Starts `n` members with extra flags for every member.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_prepared(n, extra, |_| {})
    }

    /// Like [`Cluster::start_with`], but runs `before` once the members are
    /// configured and before any starts (to restore data directories).
    pub fn start_prepared(n: usize, extra: &[&str], before: impl FnOnce(&mut Cluster)) -> Cluster {
        Cluster::start_full(n, extra, None, before)
    }

    /// Starts `n` members with TLS on the `client` and/or `peer` side,
    /// certificates from a test CA made for the cluster.
    pub fn start_tls(n: usize, client: bool, peer: bool, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare_tls(n, client, peer, false, extra);
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    /// Configures `n` members with TLS on the `client` and/or `peer` side
    /// (certificates from a test CA made for the cluster in
    /// [`Tls::certs`], or `auto`-TLS), without starting them.
    pub fn prepare_tls(n: usize, client: bool, peer: bool, auto: bool, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let certs = dir.path().join("certs");
        make_certs(&certs, "synod test CA");
        Cluster::configure(n, extra, dir, Some(Tls { client, peer, auto, certs }))
    }

    fn start_full(n: usize, extra: &[&str], tls: Option<Tls>, before: impl FnOnce(&mut Cluster)) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut cluster = Cluster::configure(n, extra, dir, tls);
        before(&mut cluster);
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    fn configure(n: usize, extra: &[&str], dir: TempDir, tls: Option<Tls>) -> Cluster {
        let peer_scheme = scheme(tls.as_ref().is_some_and(|t| t.peer));
        let ports = free_ports(2 * n);
        let names: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}={peer_scheme}://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let members = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
                let token = format!("test-{}", ports[0]);
                let mut args =
                    member_args(name, dir.path(), (client_port, peer_port), &initial_cluster, &token, tls.as_ref());
                args.extend(TIMING.iter().chain(extra).map(|s| s.to_string()));
                Member {
                    name: name.clone(),
                    client_port,
                    peer_port,
                    args,
                    env: Vec::new(),
                    via: Via::Flags,
                    program: None,
                    log: dir.path().join(format!("{name}.log")),
                    child: None,
                }
            })
            .collect();
        Cluster { members, dir, tls }
    }

    /// Configures a new member `m<k>` on fresh ports that joins the running
    /// cluster (`--initial-cluster-state existing`, `--initial-cluster`
    /// listing the members given and itself), without starting it; returns
    /// its index. Its peer URL is [`Cluster::peer_url`].
    pub fn prepare_member(&mut self, others: &[usize]) -> usize {
        let i = self.members.len();
        let name = format!("m{}", i + 1);
        let ports = free_ports(2);
        let mut initial: Vec<String> =
            others.iter().map(|&o| format!("{}={}", self.members[o].name, self.peer_url(o))).collect();
        let peer_scheme = scheme(self.tls.as_ref().is_some_and(|t| t.peer));
        initial.push(format!("{name}={peer_scheme}://127.0.0.1:{}", ports[1]));
        let token = self.flag(0, "--initial-cluster-token");
        let mut args =
            member_args(&name, self.dir.path(), (ports[0], ports[1]), &initial.join(","), &token, self.tls.as_ref());
        args.extend(["--initial-cluster-state".to_string(), "existing".to_string()]);
        // The same timing and extra flags as the first member.
        let first = &self.members[0].args;
        let extra_at = first.iter().position(|a| a == "--initial-cluster-token").expect("token flag") + 2;
        args.extend(first[extra_at..].iter().cloned());
        self.members.push(Member {
            name: name.clone(),
            client_port: ports[0],
            peer_port: ports[1],
            args,
            env: Vec::new(),
            via: Via::Flags,
            program: None,
            log: self.dir.path().join(format!("{name}.log")),
            child: None,
        });
        i
    }

    /// Sets `flag` to `value` for member `i`'s next start.
    pub fn set_flag(&mut self, i: usize, flag: &str, value: &str) {
        let args = &mut self.members[i].args;
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} is not set"));
        args[at + 1] = value.to_string();
    }

    /// Adds flag `flag` (one without a value) to member `i`'s next starts.
    pub fn add_flag(&mut self, i: usize, flag: &str) {
        self.members[i].args.push(flag.to_string());
    }

    /// Removes flag `flag` (one without a value) from member `i`'s next
    /// starts.
    pub fn remove_flag(&mut self, i: usize, flag: &str) {
        self.members[i].args.retain(|a| a != flag);
    }

    /// Sets the environment of member `i`'s next starts (replacing what
    /// was set before).
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) {
        self.members[i].env = env;
    }

    /// Gives member `i` its flags `via` the command line, `ETCD_*`
    /// variables or a config file from its next start on.
    pub fn set_via(&mut self, i: usize, via: Via) {
        self.members[i].via = via;
    }

    /// Runs member `i` as `program` (another release's `synod`, say) from
    /// its next start on; `None` goes back to the `synod` under test.
    pub fn set_program(&mut self, i: usize, program: Option<PathBuf>) {
        self.members[i].program = program;
    }

    /// The flags member `i` is started with.
    pub fn args(&self, i: usize) -> Vec<String> {
        self.members[i].args.clone()
    }

    /// Member `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        PathBuf::from(self.flag(i, "--data-dir"))
    }

    /// Waits up to `within` for member `i`'s process to exit by itself.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exit_status(i) {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Member `i`'s peer URL.
    pub fn peer_url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", scheme(self.tls.as_ref().is_some_and(|t| t.peer)), self.members[i].peer_port)
    }

    /// Starts member `i` (prepared, or stopped).
    pub fn start_member(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Whether member `i`'s process has exited by itself, and how.
    pub fn exit_status(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.members[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Forgets member `i`'s process (after it exited by itself).
    pub fn reap(&mut self, i: usize) {
        self.kill(i);
    }

    fn spawn(&mut self, i: usize) {
        let config_file = self.dir.path().join(format!("{}.yaml", self.members[i].name));
        let m = &mut self.members[i];
        let log = File::options().create(true).append(true).open(&m.log).expect("log file");
        let mut cmd = match &m.program {
            Some(program) => program_command(program),
            None => synod_command(),
        };
        match m.via {
            Via::Flags => {
                cmd.args(&m.args);
            }
            Via::Env => {
                cmd.envs(flag_values(&m.args).into_iter().map(|(flag, value)| (env_name(&flag), value)));
            }
            Via::ConfigFile => {
                std::fs::write(&config_file, config_yaml(&m.args)).expect("write a config file");
                cmd.arg("--config-file").arg(&config_file);
            }
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .envs(m.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start synod");
        m.child = Some(child);
    }

    /// The value member `i` is started with for `flag` (e.g. "--data-dir").
    pub fn flag(&self, i: usize, flag: &str) -> String {
        let args = &self.members[i].args;
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} is not set"));
        args[at + 1].clone()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", scheme(self.tls.as_ref().is_some_and(|t| t.client)), self.members[i].client_port)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again with its data directory.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// SIGKILLs member `i`, deletes its data directory, and starts it again
    /// as joining an existing cluster (as an operator replaces a lost disk).
    pub fn wipe_and_rejoin(&mut self, i: usize) {
        self.kill(i);
        let data = self.dir.path().join(&self.members[i].name);
        let _ = std::fs::remove_dir_all(&data);
        self.members[i].args.extend(["--initial-cluster-state".to_string(), "existing".to_string()]);
        self.spawn(i);
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    /// Asserts that a linearizable read through member `i` finds every key in
    /// `acked` (under `load/`).
    pub async fn assert_none_lost(&self, i: usize, acked: &[String]) {
        let mut c = self.client(i).await;
        let stored: BTreeSet<Vec<u8>> = c
            .get("load/", Some(GetOptions::new().with_prefix().with_keys_only()))
            .await
            .expect("read through the restarted member")
            .kvs()
            .iter()
            .map(|kv| kv.key().to_vec())
            .collect();
        let lost: Vec<&String> = acked.iter().filter(|k| !stored.contains(k.as_bytes())).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
    }

    /// A client of member `i` alone.
    pub async fn client(&self, i: usize) -> Client {
        match &self.tls {
            Some(tls) if tls.client => connect_tls(vec![self.endpoint(i)], tls.client_options(true)).await,
            _ => connect(vec![self.endpoint(i)]).await,
        }
    }

    /// Waits until every running member answers a linearizable read.
    pub async fn wait_ready(&self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_some() {
                self.wait_member_ready(i).await;
            }
        }
    }

    /// Waits until member `i` answers a linearizable read.
    pub async fn wait_member_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = self.client(i).await;
            let ok = tokio::time::timeout(Duration::from_secs(2), c.get("ready", None)).await;
            if matches!(ok, Ok(Ok(_))) {
                return;
            }
            assert!(Instant::now() < deadline, "member {} not ready: {ok:?}", self.members[i].name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the member every running member agrees leads, waiting
    /// for one.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ids = Vec::new();
            let mut leaders = Vec::new();
            for i in 0..self.members.len() {
                if self.members[i].child.is_none() {
                    ids.push(0);
                    continue;
                }
                let mut c = self.client(i).await;
                match tokio::time::timeout(Duration::from_secs(2), c.status()).await {
                    Ok(Ok(s)) => {
                        ids.push(s.header().map_or(0, |h| h.member_id()));
                        leaders.push(s.leader());
                    }
                    _ => ids.push(0),
                }
            }
            if let Some(&l) = leaders.first() {
                if l != 0 && leaders.iter().all(|&x| x == l) {
                    if let Some(i) = ids.iter().position(|&id| id == l) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Linearizable read of a key's value at member `i`.
    pub async fn value(&self, i: usize, key: &str) -> Option<Vec<u8>> {
        let mut c = self.client(i).await;
        let r = c.get(key, None).await.expect("get");
        r.kvs().first().map(|kv| kv.value().to_vec())
    }

    /// Serializable count of keys under a prefix at member `i`.
    pub async fn local_count(&self, i: usize, prefix: &str) -> i64 {
        let mut c = self.client(i).await;
        let opts = GetOptions::new().with_prefix().with_count_only().with_serializable();
        c.get(prefix, Some(opts)).await.map_or(-1, |r| r.count())
    }

    /// The process id of member `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(|c| c.id())
    }

    /// The folder holding the members' data and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A client of the given endpoints, with a request timeout.
pub async fn connect(endpoints: Vec<String>) -> Client {
    let opts = ConnectOptions::new().with_timeout(Duration::from_secs(5)).with_connect_timeout(Duration::from_secs(2));
    Client::connect(endpoints, Some(opts)).await.expect("connect (lazily) to synod")
}

/// A TLS client of the given https:// endpoints.
pub async fn connect_tls(endpoints: Vec<String>, tls: TlsOptions) -> Client {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(5))
        .with_tls(tls);
    Client::connect(endpoints, Some(opts)).await.expect("connect (lazily) to synod")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("---- {} log (last {} lines) ----", m.name, tail.len());
                for l in tail {
                    eprintln!("{l}");
                }
            }
        }
    }
}
