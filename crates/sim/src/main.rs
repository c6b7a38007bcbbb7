//! `synod-sim`: run the deterministic simulator from the command line.
//!
//! ```text
//! synod-sim --seeds N [--ops M] [--nodes K]    clean runs of seeds 0..N
//! synod-sim --seeds N --first-seed F           seeds F..F+N
//! synod-sim --seeds N --swarm                  each seed draws its own mix of
//!                                              faults, timing and knobs
//! synod-sim --seeds N --reconfig               with random membership changes
//!                                              (and leadership transfers)
//! synod-sim --seeds N --transfer               with random leadership transfers
//! synod-sim --seed S [--ops M] [--nodes K]     one seed, with its trace hash
//! synod-sim --plant NAME [--seeds N]           a planted bug: must be caught
//! synod-sim --scenario NAME                    a partial-connectivity scenario
//! synod-sim --stack --seeds N [--plant NAME]   the whole stack: runtime driver,
//!                                              log, etcd state machine, watch hub
//! ```

use std::process::ExitCode;
use synod_paxos::PlantedBug;
use synod_sim::scenario::{self, Scenario};
use synod_sim::stack::{Stack, StackOptions, StackPlant, StackReport};
use synod_sim::{SimOptions, Swarm, World};

struct Args {
    seeds: u64,
    seed: Option<u64>,
    ops: usize,
    nodes: usize,
    plant: Option<PlantedBug>,
    stack_plant: Option<StackPlant>,
    stack: bool,
    scenario: Option<Scenario>,
    verbose: bool,
    reconfig: bool,
    transfer: bool,
    first_seed: u64,
    swarm: bool,
}

const USAGE: &str = "usage: synod-sim [--seeds N [--first-seed F] | --seed S] [--ops M] [--nodes K] [--reconfig] \
[--transfer] [--swarm] [--plant NAME] [--scenario quorum-loss|constrained-election|chained] [--verbose]
--reconfig mixes in membership changes and leadership transfers, --transfer only transfers
--swarm: each seed draws which faults are on, network and disk timing, the window, batch and
         snapshot sizes, the load, and whether to change the membership or move the leader
planted bugs: skip-persist accept-lower-ballot ignore-accepted-value small-quorum lease-no-drift-margin
              reconfig-no-overlap learner-votes (these two always run with --reconfig)
              transfer-keeps-lease (always runs with --transfer)
--stack: the whole stack (the runtime's driver, the log over a faulty disk, the etcd state machine
         and watch hub), checking linearizable KV and txn, watch streams and convergence;
         its planted bugs: wal-ack-before-sync watch-skip-revision";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        seed: None,
        ops: 200,
        nodes: 3,
        plant: None,
        stack_plant: None,
        stack: false,
        scenario: None,
        verbose: false,
        reconfig: false,
        transfer: false,
        first_seed: 0,
        swarm: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |s: String, name: &str| s.parse::<u64>().map_err(|_| format!("{name}: not a number: {s}"));
        match flag.as_str() {
            "--seeds" => a.seeds = num(value("--seeds")?, "--seeds")?,
            "--seed" => a.seed = Some(num(value("--seed")?, "--seed")?),
            "--first-seed" => a.first_seed = num(value("--first-seed")?, "--first-seed")?,
            "--swarm" => a.swarm = true,
            "--ops" => a.ops = num(value("--ops")?, "--ops")? as usize,
            "--nodes" => a.nodes = num(value("--nodes")?, "--nodes")? as usize,
            "--plant" => {
                let v = value("--plant")?;
                match (PlantedBug::from_name(&v), StackPlant::from_name(&v)) {
                    (Some(p), _) => a.plant = Some(p),
                    (None, Some(p)) => a.stack_plant = Some(p),
                    (None, None) => return Err(format!("unknown planted bug {v}")),
                }
            }
            "--stack" => a.stack = true,
            "--scenario" => {
                let v = value("--scenario")?;
                a.scenario = Some(Scenario::from_name(&v).ok_or_else(|| format!("unknown scenario {v}"))?);
            }
            "--verbose" | "-v" => a.verbose = true,
            "--reconfig" => a.reconfig = true,
            "--transfer" => a.transfer = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.stack_plant.is_some() {
        // These bugs live in layers only the whole stack runs.
        a.stack = true;
    }
    if matches!(a.plant, Some(PlantedBug::ReconfigNoOverlap | PlantedBug::LearnerVotes)) {
        // These bugs only show when the membership changes.
        a.reconfig = true;
    }
    if a.plant == Some(PlantedBug::TransferKeepsLease) {
        // This one only shows when leadership is handed over.
        a.transfer = true;
    }
    if !(1..=9).contains(&a.nodes) {
        return Err("--nodes must be between 1 and 9".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("synod-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(s) = args.scenario {
        let seed = args.seed.unwrap_or(0);
        let r = scenario::run(s, seed);
        match r.recovery_ticks {
            Some(t) => println!(
                "scenario={} seed={seed} recovery_ticks={t} bound_ticks={} violation={}",
                s,
                r.bound_ticks,
                r.violation.as_deref().unwrap_or("none")
            ),
            None => println!(
                "scenario={} seed={seed} recovery_ticks=none bound_ticks={} violation={}",
                s,
                r.bound_ticks,
                r.violation.as_deref().unwrap_or("none")
            ),
        }
        return if r.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let seeds: Vec<u64> = match seeds(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("synod-sim: {e}");
            return ExitCode::from(2);
        }
    };
    if args.stack {
        return run_stack(&args, &seeds);
    }
    let (mut ops, mut faults, mut violations, mut max_recovery, mut events) = (0usize, 0u64, 0u64, 0u64, 0u64);
    let mut disk_faults = 0u64;
    let mut abandoned = 0usize;
    let mut reconfigs = 0u64;
    let (mut transfers, mut transfers_failed) = (0u64, 0u64);
    let mut ran = 0usize;
    let mut first_failure = None;
    for &seed in &seeds {
        let opts = SimOptions {
            ops: args.ops,
            nodes: args.nodes,
            planted: args.plant,
            reconfig: args.reconfig,
            transfer: args.transfer,
            swarm: args.swarm.then(|| Swarm::draw(seed)),
            ..SimOptions::new(seed)
        };
        if args.swarm && (args.seed.is_some() || args.verbose) {
            if let Some(s) = &opts.swarm {
                println!("seed={seed} swarm {s}");
            }
        }
        let r = World::new(opts).run();
        ran += 1;
        ops += r.ops_completed;
        abandoned += r.ops_abandoned;
        faults += r.faults;
        disk_faults += r.disk_faults;
        reconfigs += r.reconfigs;
        transfers += r.transfers;
        transfers_failed += r.transfers_failed;
        events += r.events;
        max_recovery = max_recovery.max(r.recovery_ticks);
        if args.seed.is_some() || args.verbose {
            println!(
                "seed={seed} ops={} abandoned={} faults={} events={} recovery_ticks={} reconfigs={} transfers={} \
                 trace={:016x} violation={}",
                r.ops_completed,
                r.ops_abandoned,
                r.faults,
                r.events,
                r.recovery_ticks,
                r.reconfigs,
                r.transfers,
                r.trace_hash,
                r.violation.as_ref().map_or("none".to_string(), |v| v.to_string())
            );
        }
        if let Some(v) = r.violation {
            violations += 1;
            if first_failure.is_none() {
                println!("FAILED seed={seed} invariant={} {v}", v.invariant());
                println!(
                    "reproduce: synod-sim --seed {seed} --ops {} --nodes {}{}{}{}{}",
                    args.ops,
                    args.nodes,
                    if args.reconfig && args.plant.is_none() { " --reconfig" } else { "" },
                    if args.transfer && !args.reconfig && args.plant.is_none() { " --transfer" } else { "" },
                    if args.swarm { " --swarm" } else { "" },
                    args.plant.map_or(String::new(), |p| format!(" --plant {}", p.name()))
                );
                first_failure = Some(seed);
            }
            if args.plant.is_some() {
                break;
            }
        }
    }
    println!("disk_faults={disk_faults} events={events} abandoned={abandoned}");
    println!(
        "seeds={ran} ops={ops} faults={faults} violations={violations} max_recovery_ticks={max_recovery} \
         reconfigs={reconfigs} transfers={transfers} transfers_failed={transfers_failed}"
    );
    match (args.plant, first_failure) {
        (Some(p), Some(seed)) => {
            println!("planted bug {} caught at seed {seed}", p.name());
            ExitCode::FAILURE
        }
        (Some(p), None) => {
            println!("planted bug {} NOT caught", p.name());
            ExitCode::SUCCESS
        }
        (None, Some(_)) => ExitCode::FAILURE,
        (None, None) => ExitCode::SUCCESS,
    }
}

/// The seeds to run: `--seed S`, or `--seeds N` from `--first-seed F`.
fn seeds(args: &Args) -> Result<Vec<u64>, String> {
    match args.seed {
        Some(s) => Ok(vec![s]),
        None => {
            let end = args.first_seed.checked_add(args.seeds).ok_or("--first-seed + --seeds overflows")?;
            Ok((args.first_seed..end).collect())
        }
    }
}

/// `--stack`: the whole stack, seed by seed.
fn run_stack(args: &Args, seeds: &[u64]) -> ExitCode {
    let mut total = StackReport::default();
    let (mut ran, mut violations, mut first_failure) = (0usize, 0usize, None);
    for &seed in seeds {
        let opts = StackOptions {
            seed,
            nodes: args.nodes,
            ops: args.ops,
            plant: args.stack_plant,
            protocol_plant: args.plant,
        };
        let r = Stack::new(opts).run();
        ran += 1;
        total.add(&r);
        if args.seed.is_some() || args.verbose {
            println!("seed={seed} {} violation={}", r.counts(), r.violation.as_deref().unwrap_or("none"));
        }
        if let Some(v) = r.violation {
            violations += 1;
            if first_failure.is_none() {
                println!("FAILED seed={seed} {v}");
                println!(
                    "reproduce: synod-sim --stack --seed {seed} --ops {} --nodes {}{}",
                    args.ops,
                    args.nodes,
                    args.stack_plant
                        .map(|p| p.name())
                        .or(args.plant.map(|p| p.name()))
                        .map_or(String::new(), |p| format!(" --plant {p}"))
                );
                first_failure = Some(seed);
            }
            if args.stack_plant.is_some() || args.plant.is_some() {
                break;
            }
        }
    }
    println!("stack seeds={ran} {} violations={violations}", total.counts());
    let plant = args.stack_plant.map(|p| p.name()).or(args.plant.map(|p| p.name()));
    match (plant, first_failure) {
        (Some(p), Some(seed)) => {
            println!("planted bug {p} caught at seed {seed}");
            ExitCode::FAILURE
        }
        (Some(p), None) => {
            println!("planted bug {p} NOT caught");
            ExitCode::SUCCESS
        }
        (None, Some(_)) => ExitCode::FAILURE,
        (None, None) => ExitCode::SUCCESS,
    }
}
