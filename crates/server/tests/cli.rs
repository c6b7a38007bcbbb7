//! The command line other tooling relies on: etcd's flag names, documented
//! defaults, and invalid combinations refused before anything starts.

mod common;

fn synod(args: &[&str]) -> (bool, String) {
    let out = common::synod_command().args(args).output().expect("run synod");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn help_documents_every_flag() {
    let (ok, help) = synod(&["--help"]);
    assert!(ok, "{help}");
    for flag in [
        "--name",
        "--data-dir",
        "--listen-client-urls",
        "--advertise-client-urls",
        "--listen-peer-urls",
        "--initial-advertise-peer-urls",
        "--initial-cluster",
        "--initial-cluster-state",
        "--initial-cluster-token",
        "--heartbeat-interval",
        "--election-timeout",
        "--max-request-bytes",
        "--tick-ms",
        "--max-batch",
        "--max-inflight-slots",
        "--phase1-quorum",
        "--phase2-quorum",
        "--lease-ms",
        "--cert-file",
        "--key-file",
        "--trusted-ca-file",
        "--client-cert-auth",
        "--client-crl-file",
        "--auto-tls",
        "--peer-cert-file",
        "--peer-key-file",
        "--peer-trusted-ca-file",
        "--peer-client-cert-auth",
        "--peer-auto-tls",
        "--peer-cert-allowed-cn",
        "--cipher-suites",
        "--max-concurrent-streams",
        "--max-watchers-per-stream",
        "--grpc-keepalive-min-time",
        "--grpc-keepalive-interval",
        "--grpc-keepalive-timeout",
        "--config-file",
        "--log-level",
        "--logger",
        "--log-outputs",
        "--auto-compaction-mode",
        "--auto-compaction-retention",
        "--max-txn-ops",
        "--strict-reconfig-check",
        "--experimental-initial-corrupt-check",
        "--unsafe-no-fsync",
        "ETCD_INITIAL_CLUSTER",
        "ETCD_CONFIG_FILE",
    ] {
        assert!(help.contains(flag), "--help does not document {flag}");
    }
    for default in [
        "[default: 100]",
        "[default: 1000]",
        "[default: 1572864]",
        "[default: 10]",
        "[default: 4294967295]",
        "[default: 10000]",
        "[default: 128]",
        "[default: periodic]",
        "[default: capnslog]",
        "[default: 2h]",
        "[default: 20s]",
    ] {
        assert!(help.contains(default), "--help does not show {default}");
    }
    let (ok, demo) = synod(&["demo", "--help"]);
    assert!(ok && demo.contains("--data-dir") && demo.contains("--tls"), "{demo}");
}

#[test]
fn invalid_configurations_are_refused_with_a_clear_message() {
    let cluster = "a=http://127.0.0.1:1,b=http://127.0.0.1:2,c=http://127.0.0.1:3";
    let base = ["--name", "a", "--initial-cluster", cluster, "--initial-advertise-peer-urls", "http://127.0.0.1:1"];
    let table: &[(&[&str], &str)] = &[
        (&["--phase1-quorum", "1", "--phase2-quorum", "2"], "do not intersect"),
        (&["--lease-ms", "2000"], "--lease-ms"),
        (&["--initial-cluster-state", "maybe"], "maybe"),
        (&["--cipher-suites", "TLS_RSA_WITH_RC4_128_SHA"], "not offered"),
        (&["--cipher-suites", "TLS_NO_SUCH_SUITE"], "unknown cipher suite"),
        (&["--listen-client-urls", "https://127.0.0.1:4"], "--cert-file"),
        (&["--max-concurrent-streams", "0"], "--max-concurrent-streams"),
        (&["--max-watchers-per-stream", "0"], "--max-watchers-per-stream"),
        (&["--grpc-keepalive-timeout", "0s"], "--grpc-keepalive-timeout"),
    ];
    for (extra, want) in table {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        let (ok, out) = synod(&args);
        assert!(!ok, "{args:?} was accepted");
        assert!(out.contains(want), "{args:?}: {out:?} should mention {want:?}");
    }
}

#[test]
fn every_etcd_flag_is_documented_as_served_or_refused() {
    use clap::CommandFactory;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let (_, help) = synod(&["--help"]);
    for flag in synod_server::config::sources::member_flags() {
        assert!(readme.contains(&format!("`--{flag}`")), "crates/server/README.md does not table --{flag}");
        assert!(help.contains(&format!("--{flag}")), "--help does not document --{flag}");
    }
    for arg in synod_server::config::Cli::command().get_arguments() {
        assert!(arg.get_help().is_some(), "--{:?} has no help text", arg.get_long());
    }
    for (flag, why) in synod_server::config::unserved::UNSERVED {
        assert!(readme.contains(&format!("`--{flag}`")), "crates/server/README.md does not say --{flag} is refused");
        assert!(!why.is_empty());
    }
}
