//! Human monitors (HMP) in the simulator: worlds with people typing at them re-run to the
//! same digest, record traces that replay and pass the intent-free checks, shrink, and the
//! planted HMP bugs are caught by the HMP oracles.

use qmp_core::server::PlantedBug;
use qmp_sim::check::run_inputs_hmp;
use qmp_sim::options::Options;
use qmp_sim::planted::hunt;
use qmp_sim::runner::{run_seed, run_seed_twice, trace_seed};
use qmp_sim::shrink::shrink;
use qmp_sim::trace::load;

/// The first `n` seeds from `from` whose worlds have human monitors and match `preconfig`.
fn hmp_seeds(from: u64, n: usize, preconfig: bool) -> Vec<u64> {
    (from..)
        .filter(|&s| {
            let o = Options::from_seed(s);
            o.hmp_monitors > 0 && o.preconfig == preconfig
        })
        .take(n)
        .collect()
}

#[test]
fn worlds_with_human_monitors_rerun_record_and_replay() {
    let mut seeds = hmp_seeds(0, 3, false);
    seeds.extend(hmp_seeds(0, 2, true));
    for seed in seeds {
        let stats = run_seed_twice(seed, None).unwrap_or_else(|f| panic!("seed {seed}: {f}"));
        let lines = stats.probes.get("sim_hmp_lines_run").copied().unwrap_or(0)
            + stats.probes.get("sim_hmp_help").copied().unwrap_or(0)
            + stats
                .probes
                .get("sim_hmp_unknown_command")
                .copied()
                .unwrap_or(0);
        assert!(
            lines > 0,
            "seed {seed}: no HMP line ran ({:?})",
            stats.probes
        );
        let (text, result) = trace_seed(seed, None);
        assert_eq!(
            result.map(|s| s.digest).ok(),
            Some(stats.digest),
            "seed {seed}"
        );
        let report = qmp_core::server::trace::replay(&text).expect("trace parses");
        assert!(report.matches(), "seed {seed}: replay digest differs");
        assert!(report.misuse.is_empty(), "seed {seed}: {:?}", report.misuse);
        let t = load(&text).expect("trace loads");
        assert!(
            !t.hmp_commands.is_empty(),
            "the header carries the HMP table"
        );
        assert!(
            t.inputs
                .iter()
                .any(|(_, i)| matches!(i, qmp_core::server::Input::OpenHmp { .. })),
            "seed {seed}: the trace opens a human monitor"
        );
        run_inputs_hmp(&t.config, &t.commands, &t.hmp_commands, &t.inputs)
            .unwrap_or_else(|f| panic!("seed {seed}: input-only checks: {f}"));
    }
}

#[test]
fn a_bare_lf_on_a_human_monitor_shrinks_to_a_few_inputs() {
    let bug = PlantedBug::HmpBareNewline;
    let caught = hunt(bug, 0, 50);
    let (seed, f) = caught.failure.expect("planted bug found");
    assert_eq!(f.oracle, "hmp-bare-lf");
    let (text, result) = trace_seed(seed, Some(bug));
    assert!(result.is_err());
    let t = load(&text).expect("trace loads");
    let (min, f) = shrink(&t).expect("fails under the input-only checks");
    assert_eq!(f.oracle, "hmp-bare-lf");
    assert!(
        min.inputs.len() < t.inputs.len() / 2,
        "{} -> {}",
        t.inputs.len(),
        min.inputs.len()
    );
}

#[test]
fn events_on_a_human_monitor_are_caught_by_the_world_and_the_checker() {
    let bug = PlantedBug::HmpGetsEvents;
    let caught = hunt(bug, 0, 50);
    let (seed, f) = caught.failure.expect("planted bug found");
    assert_eq!(f.oracle, "hmp-event");
    let (text, _) = trace_seed(seed, Some(bug));
    let t = load(&text).expect("trace loads");
    let f = run_inputs_hmp(&t.config, &t.commands, &t.hmp_commands, &t.inputs)
        .expect_err("the intent-free checker sees it too");
    assert_eq!(f.oracle, "hmp-event");
}

/// Preconfig worlds refuse the machine's commands without the `p` flag (the people type
/// them), and the seeds pass.
#[test]
fn preconfig_worlds_refuse_commands_without_the_p_flag() {
    let mut refused = 0;
    for seed in hmp_seeds(100, 4, true) {
        let stats = run_seed(seed, None).unwrap_or_else(|f| panic!("seed {seed}: {f}"));
        refused += stats
            .probes
            .get("sim_hmp_preconfig_refused")
            .copied()
            .unwrap_or(0);
    }
    assert!(refused > 0);
}
