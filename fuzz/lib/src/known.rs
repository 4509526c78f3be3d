//! Failures of the simulator's checkers that are known false alarms, and the one place that
//! decides so.
//!
//! Each entry names the checker's oracle, why the core is right (with the evidence), and the
//! reproducer kept under `fuzz/artifacts-known/`. A known failure ends the checked run early
//! (the checker stops at its first failure), so every entry costs coverage: remove it as soon
//! as the checker is fixed; `known_bugs_are_fixed` in `tests/replay.rs` tells when.
//!
//! No entry is open: the four false alarms found so far (`queue-without-oob` and
//! `queue-limit` for messages completed by the byte that filled the queue, `pending-shrank`
//! for output dropped by a give-up, `queue-limit` for a full 2.12 queue that keeps reading)
//! are fixed in `qmp_sim::check`, and their reproducers are replayed from `fuzz/regressions/`
//! (FUZZING.md, bugs 5–7 and 9).

use qmp_core::server::{CommandSpec, Config, Input, Instant};
use qmp_sim::check::CheckReport;
use qmp_sim::failure::Failure;

/// What was checked, for entries that need to look again (kept for the next one).
pub struct Run<'a> {
    /// Server configuration.
    pub config: &'a Config,
    /// Commands registered.
    pub registry: &'a [CommandSpec],
    /// The inputs given to the checker.
    pub inputs: &'a [(Instant, Input)],
    /// Whether the checker also acted as the embedder (`run_inputs_driven`).
    pub driven: bool,
}

/// The report of a checked run; `None` for a known false alarm (none open); panics on any
/// other failure.
pub fn check(r: Result<CheckReport, Failure>, _run: &Run<'_>) -> Option<CheckReport> {
    match r {
        Ok(report) => Some(report),
        Err(f) => panic!("invariant broken: {f}"),
    }
}
