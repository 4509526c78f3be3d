//! Running seeds: one world per seed, the determinism re-run, and traces of failing seeds.

use qmp_core::server::PlantedBug;

use crate::failure::{Failure, FailureClass};
use crate::hmp_registry::hmp_commands;
use crate::options::Options;
use crate::registry::commands;
use crate::server::{build, config};
use crate::world::{RunStats, World};

/// Runs one seed (optionally with a planted bug in the core).
pub fn run_seed(seed: u64, bug: Option<PlantedBug>) -> Result<RunStats, Failure> {
    let opts = Options::from_seed(seed);
    let server = build(config(&opts, bug));
    World::new(opts, server).run()
}

/// Runs a seed twice and compares the core's output digests (hidden non-determinism).
pub fn run_seed_twice(seed: u64, bug: Option<PlantedBug>) -> Result<RunStats, Failure> {
    let a = run_seed(seed, bug)?;
    let b = run_seed(seed, bug)?;
    if a.digest != b.digest || a.inputs != b.inputs {
        return Err(Failure {
            class: FailureClass::Correctness,
            oracle: "nondeterminism",
            detail: format!(
                "seed {seed}: digest {:016x} after {} inputs, then {:016x} after {} inputs",
                a.digest, a.inputs, b.digest, b.inputs
            ),
            step: a.inputs.min(b.inputs),
            now: 0,
        });
    }
    Ok(a)
}

/// Re-runs a seed with recording on and returns the trace text (core format) and the result.
pub fn trace_seed(seed: u64, bug: Option<PlantedBug>) -> (String, Result<RunStats, Failure>) {
    let opts = Options::from_seed(seed);
    let cfg = config(&opts, bug);
    let mut world = World::new(opts, build(cfg.clone()));
    world.record_inputs();
    let result = world.run();
    let mut rec = crate::trace::recorder(&cfg, &commands(), &hmp_commands(), Some(seed));
    // Replaying a recorded input list through a fresh server gives the same digest as the run.
    let mut replayed = build(cfg);
    for (now, input) in world.take_record() {
        rec.input(now, &input);
        let _ = replayed.handle(now, input);
        while replayed.poll_output().is_some() {}
    }
    (rec.finish(&replayed), result)
}

/// Parses a seed: a decimal `u64`, or a 40-hex-digit commit hash (its first 16 digits).
pub fn parse_seed(s: &str) -> Option<u64> {
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u64::from_str_radix(&s[..16], 16).ok();
    }
    s.parse().ok()
}
