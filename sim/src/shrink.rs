//! `qmp-sim shrink TRACE`: delta debugging (ddmin) over a failing trace's inputs, keeping a
//! candidate only while it still fails with the same oracle under [`crate::check::run_inputs`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use qmp_core::server::{Input, Instant};

use crate::check::run_inputs_hmp;
use crate::failure::Failure;
use crate::trace::{load, write, Loaded};

/// Most candidate runs one shrink may spend.
pub const MAX_SHRINK_RUNS: u32 = 20_000;

/// Minimises `inputs` while `fails` holds; returns the smallest list found.
pub fn ddmin(
    inputs: Vec<(Instant, Input)>,
    mut fails: impl FnMut(&[(Instant, Input)]) -> bool,
) -> Vec<(Instant, Input)> {
    let mut cur = inputs;
    let mut n = 2usize;
    let mut runs = 0u32;
    while cur.len() >= 2 && runs < MAX_SHRINK_RUNS {
        let chunk = cur.len().div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < cur.len() && runs < MAX_SHRINK_RUNS {
            let end = (start + chunk).min(cur.len());
            let candidate: Vec<_> = cur[..start]
                .iter()
                .chain(cur[end..].iter())
                .cloned()
                .collect();
            runs += 1;
            if fails(&candidate) {
                cur = candidate;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
            start = end;
        }
        if !reduced {
            if n >= cur.len() {
                break;
            }
            n = (n * 2).min(cur.len());
        }
    }
    cur
}

/// Shrinks a loaded trace; `None` when it does not fail under the intent-free checks.
pub fn shrink(t: &Loaded) -> Option<(Loaded, Failure)> {
    let run = |inputs: &[(Instant, Input)]| {
        run_inputs_hmp(&t.config, &t.commands, &t.hmp_commands, inputs)
    };
    let f0 = run(&t.inputs).err()?;
    let oracle = f0.oracle;
    let min = ddmin(t.inputs.clone(), |c| {
        run(c).is_err_and(|f| f.oracle == oracle)
    });
    let f = run(&min).err().unwrap_or(f0);
    Some((
        Loaded {
            inputs: min,
            ..t.clone()
        },
        f,
    ))
}

/// The CLI command.
pub fn cmd_shrink(path: &Path, out: Option<PathBuf>) -> Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let t = load(&text)?;
    let Some((min, f)) = shrink(&t) else {
        println!(
            "the trace passes every input-only check; failures found by the reference model need the seed: {}",
            t.seed
                .map(|s| format!("qmp-sim run --seed {s} --runs 1"))
                .unwrap_or_else(|| "(no seed in the header)".into())
        );
        return Ok(0);
    };
    let out = out.unwrap_or_else(|| path.with_extension("min.trace"));
    std::fs::write(&out, write(&min)).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{} inputs -> {} inputs, still failing: {f}",
        t.inputs.len(),
        min.inputs.len()
    );
    println!(
        "written to {}; reproduce: qmp-sim replay {}",
        out.display(),
        out.display()
    );
    Ok(f.class.exit_code() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddmin_finds_the_two_inputs_that_matter() {
        let inputs: Vec<(Instant, Input)> = (0..100).map(|i| (Instant(i), Input::Tick)).collect();
        let min = ddmin(inputs, |c| {
            c.iter().any(|x| x.0 .0 == 17) && c.iter().any(|x| x.0 .0 == 80)
        });
        let times: Vec<u64> = min.iter().map(|x| x.0 .0).collect();
        assert_eq!(times, vec![17, 80]);
    }
}
