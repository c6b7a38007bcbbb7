//! `synod-check`: run the model checker from the command line.
//!
//! ```text
//! synod-check [--plant NAME] [--commands N] [--ticks N] [--crashes N]
//!             [--drops N] [--cuts N] [--transfers N] [--changes PLAN]
//!             [--snapshot-every N] [--lease TICKS MARGIN] [--independent-clocks]
//!             [--fast-node ID] [--cold] [--warm-learners N] [--paused ID] [--summary] [--max-states N] [--max-depth N]
//!             [--threads N] [--dfs]
//! ```
//!
//! Prints states explored, unique states, the deepest state, wall time,
//! and the first violation with its trace; exits 1 on a violation.

use std::process::ExitCode;
use synod_check::{check, Bounds, Clock, Fingerprint, Search};
use synod_paxos::{Change, PlantedBug};

const USAGE: &str = "usage: synod-check [--plant NAME] [--commands N] [--ticks N] [--crashes N] [--drops N] \
[--cuts N] [--transfers N] [--changes add-promote|add|remove|remove-add|replace|none] [--snapshot-every N] \
[--lease TICKS MARGIN] [--independent-clocks] [--fast-node ID] [--cold] [--warm-learners N] [--paused ID] [--summary] [--max-states N] [--max-depth N] \
[--threads N] [--dfs]
planted bugs: skip-persist accept-lower-ballot ignore-accepted-value small-quorum lease-no-drift-margin
              reconfig-no-overlap learner-votes transfer-keeps-lease";

fn parse() -> Result<(Bounds, Search), String> {
    let mut b = Bounds::small();
    let mut s = Search::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |s: String, name: &str| s.parse::<u64>().map_err(|_| format!("{name}: not a number: {s}"));
        match flag.as_str() {
            "--plant" => {
                let v = value("--plant")?;
                b.planted = Some(PlantedBug::from_name(&v).ok_or_else(|| format!("unknown planted bug {v}"))?);
            }
            "--commands" => b.commands = num(value(&flag)?, &flag)?,
            "--ticks" => b.ticks = num(value(&flag)?, &flag)? as u32,
            "--crashes" => b.crashes = num(value(&flag)?, &flag)? as u32,
            "--drops" => b.drops = num(value(&flag)?, &flag)? as u32,
            "--cuts" => b.cuts = num(value(&flag)?, &flag)? as u32,
            "--transfers" => b.transfers = num(value(&flag)?, &flag)? as u32,
            "--snapshot-every" => b.snapshot_every = num(value(&flag)?, &flag)?,
            "--changes" => {
                b.changes = match value(&flag)?.as_str() {
                    "add-promote" => vec![Change::AddLearner(4), Change::PromoteLearner(4)],
                    "add" => vec![Change::AddLearner(4)],
                    "remove" => vec![Change::Remove(1)],
                    "remove-add" => vec![Change::Remove(3), Change::AddLearner(4)],
                    "replace" => vec![Change::Replace { voters: vec![3, 4, 5], learners: Vec::new() }],
                    "none" => Vec::new(),
                    other => return Err(format!("unknown plan {other}")),
                }
            }
            "--lease" => {
                b.lease_ticks = num(value(&flag)?, &flag)?;
                b.lease_drift_margin_ticks = num(value(&flag)?, &flag)?;
            }
            "--independent-clocks" => b.clock = Clock::Independent,
            "--fast-node" => {
                let id = num(value(&flag)?, &flag)?;
                b.clock = Clock::Global { fast: Some(id.saturating_sub(1) as usize) };
            }
            "--cold" => b.warm = false,
            "--paused" => {
                let id = num(value(&flag)?, &flag)?;
                b.paused.push(id.saturating_sub(1) as usize);
            }
            "--warm-learners" => {
                let n = num(value(&flag)?, &flag)?;
                let first = b.voters as u64 + 1;
                b.warm_changes = (first..first + n).map(Change::AddLearner).collect();
            }
            "--summary" => b.fingerprint = Fingerprint::Summary,
            "--max-states" => s.max_states = num(value(&flag)?, &flag)? as usize,
            "--max-depth" => s.max_depth = num(value(&flag)?, &flag)? as usize,
            "--threads" => s.threads = num(value(&flag)?, &flag)? as usize,
            "--dfs" => s.dfs = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok((b, s))
}

fn main() -> ExitCode {
    let (bounds, search) = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!("model: {bounds:?}");
    println!("search: {search:?}");
    let report = check(bounds, &search);
    println!(
        "states explored: {}  unique: {}  max depth: {}  wall time: {:.2?}",
        report.states, report.unique, report.max_depth, report.elapsed
    );
    match report.violation {
        None => {
            println!("no violation");
            ExitCode::SUCCESS
        }
        Some(cx) => {
            println!("VIOLATION: {}", cx.violation);
            for (i, step) in cx.trace.iter().enumerate() {
                println!("{:>4}. {step}", i + 1);
            }
            println!("final state:\n{}", cx.last);
            ExitCode::from(1)
        }
    }
}
