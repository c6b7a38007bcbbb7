//! Fail-stop: a member that cannot go on logs why and exits non-zero, so
//! that its supervisor restarts it, and a data directory serves one process
//! at a time, private to its owner. Disk faults are real: an LD_PRELOAD
//! shim (tests/common/faultfs.c) makes the unchanged `synod` binary's
//! fdatasync fail with EIO, or its writes with ENOSPC.

mod common;

use common::faultfs::{self, Fault};
use common::load::Load;
use common::Cluster;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a member that cannot go on may take to exit before the test
/// fails: the target is well under a second; this is for a loaded machine.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// A 3-member cluster whose members all run with the fault shim, each
/// armed by its own trigger file (`<dir>/fault-m<i>`); `None` (after
/// printing why) if the shim cannot be built here.
fn faulty_cluster(fault: Fault) -> Option<Cluster> {
    let shim = match faultfs::shim() {
        Ok(shim) => shim,
        Err(why) => {
            eprintln!("SKIPPED: cannot inject disk faults: {why}");
            return None;
        }
    };
    Some(Cluster::start_prepared(3, &[], |c| {
        for i in 0..3 {
            let trigger = c.dir().join(format!("fault-m{i}"));
            let env = faultfs::env(&shim, fault, &c.data_dir(i), &trigger);
            c.set_env(i, env);
        }
    }))
}

/// Arms the fault of member `i`, makes it fail under a write load, and
/// checks that it exits non-zero soon, naming `error` in its log; then
/// restarts it without the fault and checks that it rejoins with no
/// acknowledged write lost. Returns the time from arming to exit.
async fn fails_stops_and_rejoins(mut cluster: Cluster, victim: usize, error: &str) -> Duration {
    // Writes through every member, the victim included.
    let load = Load::start([0, 1, 2, 0, 1, 2].iter().map(|&i| cluster.endpoint(i)).collect()).await;
    load.progress(50, "before the fault").await;

    std::fs::write(cluster.dir().join(format!("fault-m{victim}")), b"").unwrap();
    let armed = Instant::now();
    let status = cluster.wait_exit(victim, EXIT_DEADLINE).await;
    let took = armed.elapsed();
    let log = cluster.log(victim);
    let status = status
        .unwrap_or_else(|| panic!("member {victim} still runs {took:?} after its disk failed; log:\n{}", tail(&log)));
    assert!(!status.success(), "member {victim} exited with {status} after its disk failed");
    assert!(log.contains("faultfs: injecting"), "the fault was never injected; log:\n{}", tail(&log));
    assert!(log.contains(error), "the log does not name {error:?}:\n{}", tail(&log));
    assert!(log.contains("cannot go on"), "the log does not say the member stops:\n{}", tail(&log));
    cluster.reap(victim);

    // The others go on, then the victim comes back on its disk, healed.
    load.progress(50, "after the member stopped").await;
    cluster.set_env(victim, Vec::new());
    cluster.start_member(victim);
    cluster.wait_member_ready(victim).await;
    load.progress(20, "after the member restarted").await;
    let acked = load.stop().await;
    cluster.assert_none_lost(victim, &acked).await;
    let other = (victim + 1) % 3;
    cluster.assert_none_lost(other, &acked).await;
    took
}

/// The end of a member's log, after any panic report in it (the panic's
/// message and place; a backtrace would push them out of the tail).
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let mut shown: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("panicked at") {
            shown.push("--- panic:");
            shown.extend(&lines[i..(i + 3).min(lines.len())]);
        }
    }
    if !shown.is_empty() {
        shown.push("--- log tail:");
    }
    shown.extend(&lines[lines.len().saturating_sub(30)..]);
    shown.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_on_the_leader_stops_it_and_it_rejoins_losing_no_acknowledged_write() {
    let Some(cluster) = faulty_cluster(Fault::FsyncEio) else { return };
    cluster.wait_ready().await;
    let leader = cluster.leader().await;
    let took = fails_stops_and_rejoins(cluster, leader, "Input/output error").await;
    eprintln!("the leader exited {took:?} after fdatasync began failing with EIO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_a_follower_stops_it_and_it_rejoins_losing_no_acknowledged_write() {
    let Some(cluster) = faulty_cluster(Fault::WriteEnospc) else { return };
    cluster.wait_ready().await;
    let follower = (cluster.leader().await + 1) % 3;
    let took = fails_stops_and_rejoins(cluster, follower, "No space left on device").await;
    eprintln!("the follower exited {took:?} after its writes began failing with ENOSPC");
}

/// Runs `synod` with `args`, returning its exit status and its stderr,
/// killing it if it still runs after `within`.
async fn run_synod(args: &[String], within: Duration) -> (Option<std::process::ExitStatus>, String) {
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = common::synod_command()
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .expect("start synod");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (status, std::fs::read_to_string(err.path()).unwrap_or_default())
}

/// `args` with each of `flags` set to a URL on a fresh port.
fn on_other_ports(mut args: Vec<String>, flags: &[&str]) -> Vec<String> {
    let ports = common::free_ports(flags.len());
    for (flag, port) in flags.iter().zip(ports) {
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} is not set"));
        args[at + 1] = format!("http://127.0.0.1:{port}");
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_data_directory_in_use_is_refused_and_the_first_goes_on() {
    let mut cluster = Cluster::start(1);
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    c.put("before", "1", None).await.unwrap();
    let dir = cluster.data_dir(0).display().to_string();

    // Same member, other listen ports, so that nothing but the data
    // directory is shared; then the very same command line, which must be
    // refused for the directory too (it is locked before ports are bound).
    let other_ports = on_other_ports(cluster.args(0), &["--listen-client-urls", "--listen-peer-urls"]);
    for (what, args) in [("on other ports", other_ports), ("with the same flags", cluster.args(0))] {
        let (status, stderr) = run_synod(&args, Duration::from_secs(20)).await;
        let status = status.unwrap_or_else(|| panic!("a second synod {what} still runs on {dir}:\n{stderr}"));
        assert!(!status.success(), "a second synod {what} exited with {status}:\n{stderr}");
        assert!(
            stderr.contains(&dir) && stderr.contains("in use by another process"),
            "a second synod {what} does not say that {dir} is in use:\n{stderr}"
        );
    }

    // Restoring a backup into it is refused the same way.
    let backup = cluster.dir().join("backup.db");
    let mut stream = c.snapshot().await.expect("snapshot");
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.expect("snapshot chunk") {
        bytes.extend_from_slice(chunk.blob());
    }
    std::fs::write(&backup, bytes).unwrap();
    let mut restore = vec!["snapshot".to_string(), "restore".to_string(), backup.display().to_string()];
    for flag in
        ["--name", "--data-dir", "--initial-cluster", "--initial-cluster-token", "--initial-advertise-peer-urls"]
    {
        restore.extend([flag.to_string(), cluster.flag(0, flag)]);
    }
    let (status, stderr) = run_synod(&restore, Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| !s.success()), "restore into {dir} in use: {status:?}:\n{stderr}");
    assert!(stderr.contains("in use by another process"), "restore does not say {dir} is in use:\n{stderr}");

    // The first is unaffected.
    assert!(cluster.exit_status(0).is_none(), "the first member exited");
    c.put("after", "2", None).await.expect("a write to the first member");
    assert_eq!(cluster.value(0, "before").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(cluster.value(0, "after").await.as_deref(), Some(&b"2"[..]));
}

/// Every directory under `dir` (itself included) and every file in it,
/// with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    let meta = std::fs::metadata(dir).unwrap();
    out.push((dir.display().to_string(), true, meta.permissions().mode() & 0o7777));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            modes(&path, out);
        } else {
            out.push((path.display().to_string(), false, meta.permissions().mode() & 0o7777));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_to_its_owner() {
    // Member 1's directory exists beforehand, readable by everyone: it is
    // tightened, with a warning. Member 2's is created.
    let mut cluster = Cluster::start_prepared(2, &[], |c| {
        let dir = c.data_dir(0);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    cluster.wait_ready().await;
    let mut c = cluster.client(0).await;
    for i in 0..20 {
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
    // A snapshot file, too: defragmenting takes one.
    for i in 0..2 {
        let mut m = cluster.client(i).await;
        m.defragment().await.expect("defragment");
    }
    for i in 0..2 {
        let dir = cluster.data_dir(i);
        // Wait for the snapshot to be stored, so its file is checked.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::read_dir(dir.join("snap")).map_or(0, |d| d.count()) == 0 {
            assert!(Instant::now() < deadline, "no snapshot stored in {}", dir.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut found = Vec::new();
        modes(&dir, &mut found);
        let files = found.iter().filter(|(_, is_dir, _)| !is_dir).count();
        assert!(files >= 4, "expected the lock, marker, identity, log and snapshot files: {found:?}");
        let wrong: Vec<String> = found
            .iter()
            .filter(|(_, is_dir, mode)| *mode != if *is_dir { 0o700 } else { 0o600 })
            .map(|(p, _, mode)| format!("{p}: {mode:o}"))
            .collect();
        assert!(wrong.is_empty(), "not private (directories 700, files 600): {wrong:?}");
    }
    assert!(cluster.log(0).contains("made it private"), "no warning for the directory that was 755");
    assert!(!cluster.log(1).contains("made it private"), "a warning for a directory created private");
    cluster.kill(0);
}
