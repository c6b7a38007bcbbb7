//! `synod`: one member of a Synod cluster, or `synod demo` for a local
//! three-node cluster. See `synod --help`.
//!
//! Fail-stop: a member that cannot go on logs why and exits non-zero at
//! once, so that its supervisor (systemd's `Restart=on-failure`, a
//! container runtime) restarts it. Exit code 1 for an error (a failed fsync,
//! a data directory in use), 70 (EX_SOFTWARE) for a panic anywhere: a
//! panic is a broken invariant, and a member whose task died must not keep
//! its ports open.

use anyhow::Context as _;
use synod_server::config::sources::{self, LoadError};
use synod_server::config::{Command, SnapshotCommand};

fn main() -> anyhow::Result<()> {
    // The command line, ETCD_* variables or a config file, as etcd reads
    // them; a refusal is printed before any logging is set up.
    let cli = match sources::load(std::env::args_os(), std::env::vars_os()) {
        Ok(cli) => cli,
        Err(LoadError::Clap(e)) => e.exit(),
        Err(LoadError::Config(e)) => {
            eprintln!("Error: {e}");
            std::process::exit(2);
        }
    };
    let logging = match cli.node.log_config() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = logging.init() {
        eprintln!("Error: {e}");
        std::process::exit(2);
    }
    exit_on_panic();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    match cli.command {
        Some(Command::Demo(args)) => runtime.block_on(synod_server::demo::run(args))?,
        Some(Command::Snapshot(SnapshotCommand::Restore(args))) => {
            let r = args.to_restore();
            let done = synod_server::snapshot::restore(&r)
                .with_context(|| format!("restoring {} into {}", r.file.display(), r.data_dir.display()))?;
            println!(
                "restored snapshot {} (revision {}, {} keys) into {} for member {} ({:x}) of cluster {:x}",
                r.file.display(),
                done.revision,
                done.keys,
                r.data_dir.display(),
                r.name,
                done.member_id,
                done.cluster_id
            );
        }
        None => {
            let cfg = cli.node.to_config()?;
            if let Err(e) = runtime.block_on(synod_server::server::run(cfg, shutdown_signal())) {
                eprintln!("Error: {:?}", anyhow::Error::from(e));
                // Exit now: dropping the runtime would wait for its blocking
                // tasks (a snapshot being written, a sync that hangs on a
                // failing disk) on behalf of a member that cannot go on.
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Makes a panic in any thread or task end the process: after the default
/// report (message, location, backtrace if asked for), log it and exit 70.
/// Without this, tokio would catch a task's panic and leave the rest of the
/// member serving without it.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current();
        tracing::error!(
            panic = %info,
            thread = thread.name().unwrap_or("unnamed"),
            "a panic (a broken invariant): this member cannot go on; exiting"
        );
        std::process::exit(70);
    }));
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops this member");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
