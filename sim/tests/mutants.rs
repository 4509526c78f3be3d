//! The simulator half of `make mutants` (docs/mutants.md): a range of seeds of both worlds, the
//! core world and the driver world, as `qmp-sim run --worlds both` runs them, checked by the
//! same invariants and model. cargo-mutants can only run `cargo test`, so the run lives here.
//!
//! Ignored in a plain `cargo test`: `qmp-sim run` and the bounded run of tests/sim.rs cover
//! it there. `make mutants` runs it with `--include-ignored` in an optimised build.
//! `QMP_MUTANTS_SEEDS` sets the number of seeds (first seed `QMP_MUTANTS_FIRST_SEED`).

use std::sync::atomic::{AtomicU64, Ordering};

use qmp_sim::driver_world::run_driver_seed;
use qmp_sim::runner::run_seed;

/// Seeds when `QMP_MUTANTS_SEEDS` is unset (the count `make mutants` uses; see docs/mutants.md).
const DEFAULT_SEEDS: u64 = 200;

/// Worker threads: the machine's cores, at most this many.
const MAX_THREADS: usize = 8;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
#[ignore = "run by make mutants (scripts/mutants.sh) in an optimised build"]
fn seed_range_passes_in_both_worlds() {
    let first = env_u64("QMP_MUTANTS_FIRST_SEED", 0);
    let runs = env_u64("QMP_MUTANTS_SEEDS", DEFAULT_SEEDS);
    assert!(runs > 0, "QMP_MUTANTS_SEEDS must be positive");
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS);
    let next = AtomicU64::new(0);
    // Each worker takes the next seed until the range is used up or a seed fails; the first
    // failure (in seed order among those seen) is reported with its reproduction command.
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    // Bounded: each pass takes one of the `runs` seeds.
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= runs {
                            return None;
                        }
                        let seed = first.wrapping_add(i);
                        let failed = match run_seed(seed, None) {
                            Err(f) => Some(format!("core world: {f}")),
                            Ok(_) => run_driver_seed(seed, None)
                                .err()
                                .map(|f| format!("driver world: {f}")),
                        };
                        if let Some(f) = failed {
                            next.store(runs, Ordering::Relaxed);
                            return Some(format!(
                                "seed {seed}: {f}\nreproduce: qmp-sim run --seed {seed} --runs 1"
                            ));
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().expect("worker panicked"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
