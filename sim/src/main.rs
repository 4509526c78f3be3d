//! `qmp-sim`: run seeds, replay traces, shrink failing traces.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant as WallInstant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qmp_core::server::PlantedBug;
use qmp_sim::driver_world::{
    run_driver_seed, run_driver_seed_twice, DriverBug, DriverOptions, ALL_DRIVER_BUGS,
};
use qmp_sim::failure::Failure;
use qmp_sim::options::Options;
use qmp_sim::runner::{parse_seed, run_seed, run_seed_twice, trace_seed};

#[derive(Parser)]
#[command(
    name = "qmp-sim",
    about = "Deterministic simulation testing of qmp-core"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Which worlds a seed runs.
#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum Worlds {
    /// The core world and the driver world (simulated sockets under qmp-driver).
    Both,
    /// The core world only.
    Core,
    /// The driver world only.
    Driver,
}

/// A planted bug of the core or of the driver.
#[derive(Copy, Clone)]
enum Bug {
    Core(PlantedBug),
    Driver(DriverBug),
}

#[derive(Subcommand)]
enum Cmd {
    /// Run seeds SEED, SEED+1, ... (SEED may be a 40-hex commit hash).
    Run {
        /// First seed.
        #[arg(long, default_value = "0")]
        seed: String,
        /// Number of seeds.
        #[arg(long, default_value_t = 1)]
        runs: u64,
        /// Worker threads (default: available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Every Nth seed is run twice and its digests compared.
        #[arg(long, default_value_t = 10)]
        determinism_every: u64,
        /// Directory for the trace of a failing seed.
        #[arg(long, default_value = ".")]
        trace_dir: PathBuf,
        /// Plant a deliberately wrong core behaviour (e.g. `IdNotEchoedOnError`) or driver
        /// behaviour (`LostEof`, `LockOutlivesHolder`; driver worlds only).
        #[arg(long)]
        planted: Option<String>,
        /// Which worlds each seed runs.
        #[arg(long, value_enum, default_value = "both")]
        worlds: Worlds,
    },
    /// Plant each deliberately wrong core variant and count the seeds until one is caught.
    Planted {
        /// First seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seeds allowed per bug.
        #[arg(long, default_value_t = qmp_sim::planted::MAX_SEEDS_PER_BUG)]
        max_seeds: u64,
    },
    /// Replay a trace (core format) and check its digest and the intent-free invariants.
    ///
    /// Exit codes: 0 replayed and checked; 3 the last line was cut (a recording process killed
    /// mid-write): every whole input was replayed and the invariants hold, there is no digest
    /// to check; 127 crash, 128 liveness, 129 correctness failure; 2 unreadable trace.
    Replay {
        /// The trace file.
        trace: PathBuf,
    },
    /// Minimise a failing trace while it still fails the same way.
    Shrink {
        /// The trace file.
        trace: PathBuf,
        /// Where to write the result (default: TRACE.min).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run {
            seed,
            runs,
            threads,
            determinism_every,
            trace_dir,
            planted,
            worlds,
        } => match planted.map(|p| parse_bug(&p)).transpose() {
            Ok(bug) => cmd_run(
                &seed,
                runs,
                threads,
                determinism_every,
                &trace_dir,
                bug,
                worlds,
            ),
            Err(e) => Err(e),
        },
        Cmd::Planted { seed, max_seeds } => cmd_planted(seed, max_seeds),
        Cmd::Replay { trace } => qmp_sim::trace::cmd_replay(&trace),
        Cmd::Shrink { trace, out } => qmp_sim::shrink::cmd_shrink(&trace, out),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qmp-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse_bug(name: &str) -> Result<Bug> {
    let core = qmp_sim::planted::ALL
        .into_iter()
        .find(|b| format!("{b:?}") == name)
        .map(Bug::Core);
    let driver = ALL_DRIVER_BUGS
        .into_iter()
        .find(|b| format!("{b:?}") == name)
        .map(Bug::Driver);
    core.or(driver).with_context(|| {
        format!(
            "unknown planted bug {name:?}; one of {:?} or {ALL_DRIVER_BUGS:?}",
            qmp_sim::planted::ALL
        )
    })
}

fn cmd_run(
    seed: &str,
    runs: u64,
    threads: Option<usize>,
    det_every: u64,
    trace_dir: &std::path::Path,
    planted: Option<Bug>,
    worlds: Worlds,
) -> Result<u8> {
    // A planted bug runs only the worlds that can see it.
    let (bug, driver_bug, worlds) = match planted {
        None => (None, None, worlds),
        Some(Bug::Core(b)) => (Some(b), None, Worlds::Core),
        Some(Bug::Driver(b)) => (None, Some(b), Worlds::Driver),
    };
    let (core_on, driver_on) = (worlds != Worlds::Driver, worlds != Worlds::Core);
    let first = parse_seed(seed).context("--seed must be a u64 or a 40-hex commit hash")?;
    let last = first.wrapping_add(runs.saturating_sub(1));
    println!(
        "qmp-sim run: seeds {first} to {last} ({runs} run(s), the first from {seed:?}); one seed: qmp-sim run --seed N --runs 1"
    );
    println!("{}", Options::from_seed(first));
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let bar = ProgressBar::new(runs);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicU64::new(0);
    let inputs = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<(u64, Failure, bool)>> = Mutex::new(None);
    let driver_seeds = AtomicU64::new(0);
    let driver_steps = AtomicU64::new(0);
    let driver_nanos = AtomicU64::new(0);
    let driver_marks: Mutex<qmp_sim::driver_world::Marks> = Mutex::default();
    let probes: Mutex<std::collections::BTreeMap<String, u64>> = Mutex::default();
    let started = WallInstant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= runs {
                    return;
                }
                let seed = first.wrapping_add(k);
                let twice = det_every > 0 && k.is_multiple_of(det_every);
                let r = if !core_on {
                    Ok(Default::default())
                } else if twice {
                    run_seed_twice(seed, bug)
                } else {
                    run_seed(seed, bug)
                };
                let r = r.map_err(|f| (f, false)).and_then(|stats| {
                    if !driver_on {
                        return Ok(stats);
                    }
                    let t = WallInstant::now();
                    let d = if twice {
                        run_driver_seed_twice(seed, driver_bug)
                    } else {
                        run_driver_seed(seed, driver_bug)
                    };
                    driver_nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    let d = d.map_err(|f| (f, true))?;
                    driver_seeds.fetch_add(1, Ordering::Relaxed);
                    driver_steps.fetch_add(d.steps, Ordering::Relaxed);
                    if let Ok(mut m) = driver_marks.lock() {
                        for (n, c) in d.marks {
                            *m.entry(n).or_insert(0) += c;
                        }
                    }
                    Ok(stats)
                });
                match r {
                    Ok(stats) => {
                        inputs.fetch_add(stats.inputs, Ordering::Relaxed);
                        if let Ok(mut p) = probes.lock() {
                            for (n, c) in stats.probes {
                                *p.entry(n).or_insert(0) += c;
                            }
                        }
                    }
                    Err((f, in_driver)) => {
                        stop.store(true, Ordering::Relaxed);
                        if let Ok(mut slot) = failure.lock() {
                            if slot.as_ref().is_none_or(|(s0, _, _)| seed < *s0) {
                                *slot = Some((seed, f, in_driver));
                            }
                        }
                    }
                }
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let total_inputs = inputs.load(Ordering::Relaxed);
    let done = next.load(Ordering::Relaxed).min(runs);
    let probes = probes.into_inner().unwrap_or_default();
    let hit = probes.values().filter(|&&c| c > 0).count();
    println!(
        "summary: {done} seeds, {total_inputs} core inputs in {secs:.2} s ({:.0} inputs/s, {threads} threads), marks hit {hit}/{}",
        total_inputs as f64 / secs.max(1e-9),
        probes.len()
    );
    let missed: Vec<&String> = probes
        .iter()
        .filter(|(_, &c)| c == 0)
        .map(|(n, _)| n)
        .collect();
    if !missed.is_empty() {
        println!("marks not hit: {missed:?}");
    }
    let hmp: Vec<String> = probes
        .iter()
        .filter_map(|(n, c)| n.strip_prefix("sim_hmp_").map(|n| format!("{n} {c}")))
        .collect();
    if !hmp.is_empty() {
        println!("human monitors: {}", hmp.join(", "));
    }
    if driver_on {
        let n = driver_seeds.load(Ordering::Relaxed);
        let busy = driver_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let marks = driver_marks.into_inner().unwrap_or_default();
        let unhit: Vec<&&str> = marks
            .iter()
            .filter(|(_, &c)| c == 0)
            .map(|(n, _)| n)
            .collect();
        println!(
            "driver worlds: {n} seeds, {} steps, {busy:.2} s of worker time ({:.0} seeds/s per thread), socket faults hit {}/{}",
            driver_steps.load(Ordering::Relaxed),
            n as f64 / busy.max(1e-9),
            marks.len() - unhit.len(),
            marks.len()
        );
        if !unhit.is_empty() {
            println!("socket faults not hit: {unhit:?}");
        }
    }
    let Some((seed, f, in_driver)) = failure.into_inner().ok().flatten() else {
        return Ok(0);
    };
    if in_driver {
        println!(
            "FAILED driver world of seed {seed}:\n{}",
            DriverOptions::from_seed(seed)
        );
        println!("{f}");
        let planted = driver_bug
            .map(|b| format!(" --planted {b:?}"))
            .unwrap_or_default();
        println!(
            "reproduce: cargo run --release -p qmp-sim -- run --seed {seed} --runs 1 --worlds driver{planted}"
        );
        return Ok(f.class.exit_code() as u8);
    }
    println!("FAILED seed {seed}:\n{}", Options::from_seed(seed));
    println!("{f}");
    let (trace, _) = trace_seed(seed, bug);
    let path = trace_dir.join(format!("qmp-sim-{seed}.trace"));
    std::fs::write(&path, trace).with_context(|| format!("writing {}", path.display()))?;
    println!("trace written to {}", path.display());
    let planted = bug.map(|b| format!(" --planted {b:?}")).unwrap_or_default();
    println!("reproduce: cargo run --release -p qmp-sim -- run --seed {seed} --runs 1{planted}");
    println!(
        "replay:    cargo run --release -p qmp-sim -- replay {}",
        path.display()
    );
    Ok(f.class.exit_code() as u8)
}

fn cmd_planted(seed: u64, max: u64) -> Result<u8> {
    let mut missed = 0;
    for bug in ALL_DRIVER_BUGS {
        let t = WallInstant::now();
        match qmp_sim::driver_world::hunt_driver_bug(bug, seed, max) {
            Some((n, s, f)) => println!(
                "{bug:?} (driver): caught after {n} seed(s) (seed {s}, {:.2} s): [{}] {}",
                t.elapsed().as_secs_f64(),
                f.oracle,
                f.detail.lines().next().unwrap_or("")
            ),
            None => {
                missed += 1;
                println!("{bug:?} (driver): NOT caught in {max} seeds");
            }
        }
    }
    for bug in qmp_sim::planted::ALL {
        let t = WallInstant::now();
        let c = qmp_sim::planted::hunt(bug, seed, max);
        match (&c.seeds, &c.failure) {
            (Some(n), Some((s, f))) => println!(
                "{bug:?}: caught after {n} seed(s) (seed {s}, {:.2} s): [{}] {}",
                t.elapsed().as_secs_f64(),
                f.oracle,
                f.detail.lines().next().unwrap_or("")
            ),
            _ => {
                missed += 1;
                println!("{bug:?}: NOT caught in {max} seeds");
            }
        }
    }
    Ok(if missed == 0 { 0 } else { 129 })
}
