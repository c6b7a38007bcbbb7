//! `synod-bench`: drives etcd-compatible endpoints with one workload and
//! prints one JSON line (and, with `--json`, writes the whole record);
//! `synod-bench compare` puts two sets side by side, `synod-bench plot`
//! draws records as SVG charts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use synod_loadgen::bench::{self, Workload};
use synod_loadgen::record::RunRecord;
use synod_loadgen::{compare, plot, reconfig};

#[derive(Parser, Debug)]
#[command(
    name = "synod-bench",
    version,
    about = "Load generator for etcd v3 endpoints (etcd, synod): prints one JSON line",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a side-by-side table of two files of report lines.
    Compare {
        /// Reports of the baseline (e.g. etcd), one JSON line each.
        baseline: PathBuf,
        /// Reports of the candidate (e.g. synod).
        candidate: PathBuf,
        /// Column label of the baseline.
        #[arg(long, default_value = "etcd")]
        baseline_label: String,
        /// Column label of the candidate.
        #[arg(long, default_value = "synod")]
        candidate_label: String,
    },
    /// Draw SVG charts from --json records: throughput against clients per
    /// workload (one line per target), and throughput and p50/p99 latency
    /// over time per workload and client count. Prints the files written.
    Plot {
        /// Records written by `synod-bench --json`.
        #[arg(required = true)]
        records: Vec<PathBuf>,
        /// Folder the SVG files go to (made if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Start a 3-member cluster of --binary and measure the longest write
    /// wait during each membership change (add learner, promote, remove
    /// follower, move leader, remove leader): one JSON line per change.
    Reconfig {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        writers: usize,
    },
    /// Write --keys keys into a 3-member cluster of --binary, add a learner
    /// and time its catch-up: one JSON line.
    Catchup {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Keys written before the learner joins.
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        /// Bytes per value.
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        /// `--snapshot-count` of every member: above --keys the learner
        /// catches up from the log, below it from a snapshot.
        #[arg(long, default_value_t = 1_000_000)]
        snapshot_count: u64,
    },
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// The server binary (etcd or synod).
    #[arg(long)]
    binary: PathBuf,
    /// The label in the reports.
    #[arg(long)]
    label: String,
    /// Where members keep data and logs (default: a new temporary folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A flag passed to every member (repeat for more), e.g.
    /// `--member-flag=--heartbeat-interval=100`.
    #[arg(long = "member-flag", allow_hyphen_values = true)]
    member_flags: Vec<String>,
}

impl ClusterArgs {
    fn dir(&self) -> Result<PathBuf> {
        match &self.dir {
            Some(d) => Ok(d.clone()),
            None => {
                let base = std::env::temp_dir().join(format!("synod-bench-{}-{}", self.label, std::process::id()));
                std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
                Ok(base)
            }
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(f)
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Client URLs, comma-separated; every connection uses all of them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// What each request does.
    #[arg(long, value_enum, default_value = "put")]
    workload: Workload,
    /// Requests in flight at any time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// etcd clients the in-flight requests are spread over (at most
    /// --concurrency).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Seconds to run (default 10 unless --requests is given).
    #[arg(long)]
    duration: Option<f64>,
    /// Requests to issue.
    #[arg(long)]
    requests: Option<u64>,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    key_space: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Skip writing every key before the get workloads.
    #[arg(long)]
    no_prefill: bool,
    /// Prefix of every key touched.
    #[arg(long, default_value = "bench/")]
    key_prefix: String,
    /// Per-request timeout in seconds (a timeout counts as an error).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Seed of key choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// watch-fanout: watchers of the key prefix.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Tokio worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Trust this CA (PEM) for https:// endpoints, as etcdctl's --cacert.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) shown to servers that require one; needs
    /// --key and --cacert.
    #[arg(long, requires_all = ["key", "cacert"])]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Authenticate as NAME:PASSWORD (etcd's auth, as etcdctl's --user):
    /// every request carries the token the server hands out.
    #[arg(long, value_name = "NAME:PASSWORD")]
    user: Option<String>,
    /// Also write the whole result (parameters, totals, latency
    /// percentiles, a per-second timeline) to FILE as JSON, in the schema
    /// of synod_loadgen::record (versioned).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// What the endpoints are, as --json records and plots name it (e.g.
    /// synod, etcd); default: the endpoints.
    #[arg(long)]
    label: Option<String>,
    /// Seconds between progress lines on stderr while the load runs.
    #[arg(long, default_value_t = 5.0)]
    progress_every: f64,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Compare { baseline, candidate, baseline_label, candidate_label }) => {
            let read =
                |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
            let (b, c) = (compare::parse_reports(&read(&baseline)?), compare::parse_reports(&read(&candidate)?));
            print!("{}", compare::table(&baseline_label, &b, &candidate_label, &c));
            Ok(())
        }
        Some(Command::Plot { records, out }) => {
            let records = records.iter().map(|path| RunRecord::read(path)).collect::<Result<Vec<_>>>()?;
            for path in plot::plot(&records, &out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Some(Command::Reconfig { cluster, writers }) => {
            let dir = cluster.dir()?;
            let reports =
                block_on(reconfig::changes(&cluster.label, &cluster.binary, &dir, &cluster.member_flags, writers))?;
            for r in reports {
                println!("{}", serde_json::to_string(&r)?);
            }
            Ok(())
        }
        Some(Command::Catchup { cluster, keys, value_size, snapshot_count }) => {
            let dir = cluster.dir()?;
            let report = block_on(reconfig::catchup(
                &cluster.label,
                &cluster.binary,
                &dir,
                &cluster.member_flags,
                keys,
                value_size,
                snapshot_count,
            ))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let seconds = |s: f64, what: &str| {
        if s.is_finite() && s > 0.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            bail!("{what} must be a positive number of seconds")
        }
    };
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d.map(|d| seconds(d, "--duration")).transpose()?,
    };
    let tls = match &args.cacert {
        Some(ca) => Some(bench::Tls::read(ca, args.cert.as_deref().zip(args.key.as_deref()))?),
        None => None,
    };
    let user = match &args.user {
        Some(user) => match user.split_once(':') {
            Some((name, password)) if !name.is_empty() => Some((name.to_string(), password.to_string())),
            _ => bail!("--user takes NAME:PASSWORD"),
        },
        None => None,
    };
    let config = bench::Config {
        endpoints: args.endpoints,
        workload: args.workload,
        concurrency: args.concurrency,
        connections: args.connections,
        duration,
        requests: args.requests,
        key_space: args.key_space,
        value_size: args.value_size,
        prefill: !args.no_prefill,
        key_prefix: args.key_prefix,
        timeout: seconds(args.timeout, "--timeout")?,
        seed: args.seed,
        watchers: args.watchers,
        tls,
        user,
        progress: if args.quiet { None } else { Some(seconds(args.progress_every, "--progress-every")?) },
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let outcome = runtime.build()?.block_on(bench::run(config.clone()))?;
    let report = &outcome.report;
    println!("{}", serde_json::to_string(report)?);
    // Written even when nothing succeeded: a failed run is a result too.
    if let Some(path) = &args.json {
        let target = args.label.clone().unwrap_or_else(|| config.endpoints.join(","));
        let record = RunRecord::of_run(&config, &target, &outcome);
        std::fs::write(path, record.to_json()?).with_context(|| format!("writing {}", path.display()))?;
    }
    if report.requests == 0 {
        bail!("no request succeeded ({} errors)", report.errors);
    }
    Ok(())
}
