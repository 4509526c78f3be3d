//! `qmp-bench report`: reads the JSON lines of several runs and prints, per mode, the median
//! figure of each server, the improvement factor of one server over the other, and the
//! target with a verdict (issue 7's for qmpd on threads, issue 20's for qmpd on tokio:
//! [`Targets`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which figure of a result a comparison uses, and which direction is better.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Figure {
    /// `value`, higher is better.
    Value,
    /// `p99_us`, lower is better.
    P99,
    /// `value`, lower is better (memory).
    ValueLower,
    /// `server_cpu_us_per_op`, lower is better.
    CpuPerOp,
}

/// A target of a line.
#[derive(Copy, Clone, Debug)]
enum Target {
    /// The improvement factor must reach this.
    Factor(f64),
    /// The subject's own figure must stay under this.
    Below(f64),
    /// Shown for information.
    None,
}

/// One line of the comparison: (mode, figure, target).
type Line = (&'static str, Figure, Target);

/// Which targets the verdicts use.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Issue 7's, for qmpd on the std adapter.
    Issue7,
    /// Issue 20's, for qmpd on the tokio adapter (OOB p99 measured with the in-band lane held
    /// by an awaiting handler: the demo's async `x-oob-test` lock).
    Tokio,
}

impl Targets {
    /// `issue7` or `tokio`.
    pub fn parse(s: &str) -> Option<Targets> {
        match s {
            "issue7" | "std" => Some(Targets::Issue7),
            "tokio" | "issue20" => Some(Targets::Tokio),
            _ => None,
        }
    }

    fn lines(self) -> &'static [Line] {
        match self {
            Targets::Issue7 => &LINES,
            Targets::Tokio => &TOKIO_LINES,
        }
    }
}

/// Issue 20's targets for the tokio adapter.
const TOKIO_LINES: [Line; 8] = [
    ("sequential", Figure::Value, Target::Factor(10.0)),
    ("pipelined", Figure::Value, Target::Factor(30.0)),
    ("connections", Figure::Value, Target::None),
    ("oob-latency", Figure::P99, Target::Below(200.0)),
    ("oob-latency-load", Figure::P99, Target::None),
    ("large", Figure::Value, Target::Factor(1000.0)),
    ("events", Figure::Value, Target::None),
    ("idle", Figure::ValueLower, Target::Below(64.0)),
];

/// Issue 7's targets.
const LINES: [Line; 8] = [
    ("sequential", Figure::Value, Target::Factor(3.0)),
    ("pipelined", Figure::Value, Target::Factor(50.0)),
    ("connections", Figure::Value, Target::None),
    ("oob-latency", Figure::P99, Target::Below(200.0)),
    ("oob-latency-load", Figure::P99, Target::None),
    ("large", Figure::Value, Target::Factor(1000.0)),
    ("events", Figure::Value, Target::None),
    ("idle", Figure::ValueLower, Target::Below(64.0)),
];

/// The comparison table for `subject` against `base`, from JSON lines (one result each;
/// lines that are not results are skipped and counted).
pub fn compare(jsonl: &str, subject: &str, base: &str) -> String {
    compare_with(jsonl, subject, base, Targets::Issue7)
}

/// [`compare`] with the verdicts of `targets`.
pub fn compare_with(jsonl: &str, subject: &str, base: &str, targets: Targets) -> String {
    let lines = targets.lines();
    // (label, mode) -> figures of every round
    let mut runs: BTreeMap<(String, String), Vec<serde_json::Value>> = BTreeMap::new();
    let mut skipped = 0usize;
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v["label"].is_string() && v["mode"].is_string() => {
                let key = (
                    v["label"].as_str().unwrap_or_default().to_string(),
                    v["mode"].as_str().unwrap_or_default().to_string(),
                );
                runs.entry(key).or_default().push(v);
            }
            _ => skipped += 1,
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<17} {:>14} {:>14} {:>10}  {:<12} verdict",
        "mode", subject, base, "factor", "target"
    );
    for &(mode, figure, target) in lines {
        let s = median_figure(&runs, subject, mode, figure);
        let b = median_figure(&runs, base, mode, figure);
        if s.is_none() && b.is_none() {
            continue;
        }
        let factor = match (s, b, figure) {
            (Some(s), Some(b), Figure::Value) if b > 0.0 => Some(s / b),
            (Some(s), Some(b), Figure::P99 | Figure::ValueLower | Figure::CpuPerOp) if s > 0.0 => {
                Some(b / s)
            }
            _ => None,
        };
        let (target_text, verdict) = match target {
            Target::Factor(t) => (
                format!(">= {t}x"),
                factor.map_or("n/a", |f| if f >= t { "MET" } else { "MISSED" }),
            ),
            Target::Below(t) => (
                format!("< {t} {}", if figure == Figure::P99 { "us" } else { "MiB" }),
                s.map_or("n/a", |s| if s < t { "MET" } else { "MISSED" }),
            ),
            Target::None => ("-".to_string(), "-"),
        };
        let unit = match figure {
            Figure::P99 => " p99 us",
            _ => "",
        };
        let _ = writeln!(
            out,
            "{:<17} {:>14} {:>14} {:>10}  {:<12} {}{}",
            mode,
            fmt(s),
            fmt(b),
            factor.map_or_else(|| "n/a".to_string(), |f| format!("{f:.1}x")),
            target_text,
            verdict,
            unit
        );
    }
    per_round(&mut out, &runs, subject, base, lines);
    let mut cpu_header = false;
    for &(mode, _, _) in lines {
        let s = median_figure(&runs, subject, mode, Figure::CpuPerOp);
        let b = median_figure(&runs, base, mode, Figure::CpuPerOp);
        if s.is_none() && b.is_none() {
            continue;
        }
        if !cpu_header {
            cpu_header = true;
            let _ = writeln!(
                out,
                "server CPU time per operation (us, all threads; independent of other load):"
            );
        }
        let factor = match (s, b) {
            (Some(s), Some(b)) if s > 0.0 => format!("{:.1}x", b / s),
            _ => "n/a".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<17} {:>14} {:>14} {:>10}",
            mode,
            fmt(s),
            fmt(b),
            factor
        );
    }
    let _ = writeln!(
        out,
        "factor: how many times better {subject} is (throughput ratio {subject}/{base}; for p99, RSS and CPU {base}/{subject}); figures are medians over rounds"
    );
    if skipped > 0 {
        let _ = writeln!(out, "({skipped} input lines were not results)");
    }
    out
}

/// The factor of each round for the modes with a factor target: the subject's i-th run of a
/// mode against the base's i-th (the runs alternate in that order, `bench/run.sh`), and how
/// many rounds reached the target. The medians above hide how far single rounds spread on a
/// noisy machine; this shows it.
fn per_round(
    out: &mut String,
    runs: &BTreeMap<(String, String), Vec<serde_json::Value>>,
    subject: &str,
    base: &str,
    lines: &[Line],
) {
    let values = |label: &str, mode: &str| -> Vec<Option<f64>> {
        runs.get(&(label.to_string(), mode.to_string()))
            .map(|rs| rs.iter().map(|r| r["value"].as_f64()).collect())
            .unwrap_or_default()
    };
    let mut header = false;
    for &(mode, figure, target) in lines {
        let (Figure::Value, Target::Factor(t)) = (figure, target) else {
            continue;
        };
        let factors: Vec<Option<f64>> = values(subject, mode)
            .into_iter()
            .zip(values(base, mode))
            .map(|(s, b)| match (s, b) {
                (Some(s), Some(b)) if b > 0.0 => Some(s / b),
                _ => None,
            })
            .collect();
        if factors.is_empty() {
            continue;
        }
        if !header {
            header = true;
            let _ = writeln!(out, "factor per round ({subject} run i / {base} run i):");
        }
        let met = factors.iter().flatten().filter(|f| **f >= t).count();
        let list: Vec<String> = factors
            .iter()
            .map(|f| f.map_or_else(|| "n/a".to_string(), |f| format!("{f:.1}x")))
            .collect();
        let _ = writeln!(
            out,
            "{:<17} {}  ({met} of {} rounds at >= {t}x)",
            mode,
            list.join(" "),
            factors.len()
        );
    }
}

fn median_figure(
    runs: &BTreeMap<(String, String), Vec<serde_json::Value>>,
    label: &str,
    mode: &str,
    figure: Figure,
) -> Option<f64> {
    let key = match figure {
        Figure::P99 => "p99_us",
        Figure::Value | Figure::ValueLower => "value",
        Figure::CpuPerOp => "server_cpu_us_per_op",
    };
    let mut v: Vec<f64> = runs
        .get(&(label.to_string(), mode.to_string()))?
        .iter()
        .filter_map(|r| r[key].as_f64())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokio_targets_judge_the_same_figures_by_issue_20() {
        let input = "\
{\"label\":\"qmpd-tokio\",\"mode\":\"sequential\",\"value\":900.0}
{\"label\":\"qemu\",\"mode\":\"sequential\",\"value\":100.0}
{\"label\":\"qmpd-tokio\",\"mode\":\"pipelined\",\"value\":4000.0}
{\"label\":\"qemu\",\"mode\":\"pipelined\",\"value\":100.0}
";
        let verdict = |t: &str, m: &str| {
            t.lines()
                .find(|l| l.split_whitespace().next() == Some(m))
                .and_then(|l| l.split_whitespace().last())
                .map(str::to_owned)
        };
        let tokio = compare_with(input, "qmpd-tokio", "qemu", Targets::Tokio);
        assert_eq!(
            verdict(&tokio, "sequential").as_deref(),
            Some("MISSED"),
            "{tokio}"
        );
        assert_eq!(
            verdict(&tokio, "pipelined").as_deref(),
            Some("MET"),
            "{tokio}"
        );
        assert!(
            tokio.contains(">= 10x") && tokio.contains(">= 30x"),
            "{tokio}"
        );
        let issue7 = compare(&input.replace("qmpd-tokio", "qmpd"), "qmpd", "qemu");
        assert_eq!(
            verdict(&issue7, "sequential").as_deref(),
            Some("MET"),
            "{issue7}"
        );
        assert_eq!(
            verdict(&issue7, "pipelined").as_deref(),
            Some("MISSED"),
            "{issue7}"
        );
        assert_eq!(Targets::parse("tokio"), Some(Targets::Tokio));
        assert_eq!(Targets::parse("nope"), None);
    }

    #[test]
    fn factors_medians_and_verdicts() {
        let input = "\
{\"label\":\"qmpd\",\"mode\":\"sequential\",\"value\":300.0}
{\"label\":\"qmpd\",\"mode\":\"sequential\",\"value\":900.0}
{\"label\":\"qmpd\",\"mode\":\"sequential\",\"value\":600.0}
{\"label\":\"qemu\",\"mode\":\"sequential\",\"value\":100.0}
{\"label\":\"qmpd\",\"mode\":\"pipelined\",\"value\":1000.0,\"server_cpu_us_per_op\":2.0}
{\"label\":\"qemu\",\"mode\":\"pipelined\",\"value\":100.0,\"server_cpu_us_per_op\":50.0}
{\"label\":\"qmpd\",\"mode\":\"oob-latency\",\"value\":1.0,\"p99_us\":150.0}
{\"label\":\"qmpd\",\"mode\":\"idle\",\"value\":80.0}
{\"label\":\"qemu\",\"mode\":\"idle\",\"value\":160.0}
not json
";
        let t = compare(input, "qmpd", "qemu");
        let line = |m: &str| {
            t.lines()
                .find(|l| l.split_whitespace().next() == Some(m))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line("sequential"),
            ["sequential", "600.0", "100.0", "6.0x", ">=", "3x", "MET"]
        );
        assert_eq!(line("pipelined")[3], "10.0x");
        assert_eq!(line("pipelined")[6], "MISSED");
        assert_eq!(line("oob-latency")[1..4], ["150.0", "n/a", "n/a"]);
        assert_eq!(line("oob-latency")[7], "MET");
        assert_eq!(line("idle")[3], "2.0x");
        assert_eq!(line("idle")[7], "MISSED");
        assert!(!t.contains("\nlarge"));
        let cpu = t.split("server CPU time").nth(1).unwrap();
        let pip: Vec<_> = cpu.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(pip, ["pipelined", "2.0", "50.0", "25.0x"]);
        assert!(t.contains("(1 input lines were not results)"));
        // Rounds pair the i-th runs; the third qmpd run has no QEMU run to pair with.
        let rounds = t.split("factor per round").nth(1).unwrap();
        let seq = rounds
            .lines()
            .find(|l| l.starts_with("sequential"))
            .unwrap();
        assert_eq!(seq, "sequential        3.0x  (1 of 1 rounds at >= 3x)");
        let pip = rounds.lines().find(|l| l.starts_with("pipelined")).unwrap();
        assert_eq!(pip, "pipelined         10.0x  (0 of 1 rounds at >= 50x)");
        assert!(!rounds.contains("idle"));
    }

    #[test]
    fn rounds_pair_in_run_order() {
        // Rounds of (qmpd, QEMU) rates, written as run.sh writes them: alternating.
        let input: String = [(600.0, 10.0), (300.0, 0.0), (400.0, 10.0)]
            .iter()
            .flat_map(|(q, e)| [("qmpd", q), ("qemu", e)])
            .map(|(label, v)| {
                format!("{{\"label\":\"{label}\",\"mode\":\"pipelined\",\"value\":{v}}}\n")
            })
            .collect();
        let t = compare(&input, "qmpd", "qemu");
        let pip = t
            .split("factor per round")
            .nth(1)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("pipelined"))
            .unwrap();
        assert_eq!(
            pip,
            "pipelined         60.0x n/a 40.0x  (1 of 3 rounds at >= 50x)"
        );
    }
}
