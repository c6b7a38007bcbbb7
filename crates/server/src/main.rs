//! `synod`: one member of a Synod cluster, or `synod demo` for a local
//! three-node cluster. See `synod --help`.

use anyhow::Context as _;
use clap::Parser;
use std::io::IsTerminal;
use synod_server::config::{Cli, Command, SnapshotCommand};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
            runtime.block_on(synod_server::server::run(cfg, shutdown_signal()))?;
        }
    }
    Ok(())
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
