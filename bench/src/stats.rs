//! Measurement results: latency percentiles, the outcome of one mode run, and its two
//! renderings (a human table row and one JSON line).

use std::fmt::Write as _;
use std::time::Duration;

/// Latency samples of one run, in nanoseconds.
#[derive(Default)]
pub struct Latencies {
    ns: Vec<u64>,
}

impl Latencies {
    /// Room for `n` samples (callers pass their loop bound, so recording never reallocates
    /// in the middle of a measurement).
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies {
            ns: Vec::with_capacity(n),
        }
    }

    /// Records one sample.
    pub fn push(&mut self, d: Duration) {
        self.ns
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Latencies) {
        self.ns.extend(other.ns);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ns.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    /// The `p`-th percentile (nearest rank) in microseconds; `None` without samples.
    pub fn percentile_us(&mut self, p: f64) -> Option<f64> {
        if self.ns.is_empty() {
            return None;
        }
        self.ns.sort_unstable();
        let rank = ((p / 100.0) * self.ns.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.ns.len()) - 1;
        Some(self.ns[idx] as f64 / 1000.0)
    }
}

/// What one mode measured against one server.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Which server (`--label`), e.g. `qmpd` or `qemu`.
    pub label: String,
    /// The mode name.
    pub mode: &'static str,
    /// How the figure was obtained, in a few words (method differences between servers show
    /// here).
    pub method: String,
    /// Operations completed (requests, events, connections, depending on the mode).
    pub ops: u64,
    /// Wall time the operations took.
    pub secs: f64,
    /// The headline figure.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// Median latency, when the mode measures latency.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, when the mode measures latency.
    pub p99_us: Option<f64>,
    /// Further named figures.
    pub extra: Vec<(&'static str, f64)>,
}

impl Outcome {
    /// An outcome whose headline is `ops / secs`.
    pub fn rate(
        label: &str,
        mode: &'static str,
        method: String,
        ops: u64,
        elapsed: Duration,
        unit: &'static str,
    ) -> Outcome {
        let secs = elapsed.as_secs_f64();
        Outcome {
            label: label.to_string(),
            mode,
            method,
            ops,
            secs,
            value: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            unit,
            p50_us: None,
            p99_us: None,
            extra: Vec::new(),
        }
    }

    /// Fills p50/p99 from `lat`.
    pub fn with_latencies(mut self, lat: &mut Latencies) -> Outcome {
        self.p50_us = lat.percentile_us(50.0);
        self.p99_us = lat.percentile_us(99.0);
        self
    }

    /// One JSON object on one line.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"label\":{},\"mode\":{},\"method\":{},\"ops\":{},\"secs\":{},\"value\":{},\"unit\":{}",
            json_str(&self.label),
            json_str(self.mode),
            json_str(&self.method),
            self.ops,
            json_num(self.secs),
            json_num(self.value),
            json_str(self.unit)
        );
        for (k, v) in [("p50_us", self.p50_us), ("p99_us", self.p99_us)] {
            if let Some(v) = v {
                let _ = write!(s, ",{}:{}", json_str(k), json_num(v));
            }
        }
        for (k, v) in &self.extra {
            let _ = write!(s, ",{}:{}", json_str(k), json_num(*v));
        }
        s.push('}');
        s
    }

    /// One row of the human table (see [`TABLE_HEADER`]).
    pub fn to_row(&self) -> String {
        let lat = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
        let mut row = format!(
            "{:<8} {:<12} {:>14.1} {:<10} {:>10} {:>10} {:>9} {:>7.2}  {}",
            self.label,
            self.mode,
            self.value,
            self.unit,
            lat(self.p50_us),
            lat(self.p99_us),
            self.ops,
            self.secs,
            self.method
        );
        for (k, v) in &self.extra {
            let _ = write!(row, "; {k}={v:.1}");
        }
        row
    }
}

/// The header line matching [`Outcome::to_row`].
pub const TABLE_HEADER: &str =
    "server   mode                  value unit          p50_us     p99_us       ops    secs  method";

fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_string()
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut l = Latencies::with_capacity(100);
        for i in 1..=100u64 {
            l.push(Duration::from_micros(101 - i));
        }
        assert_eq!(l.percentile_us(50.0), Some(50.0));
        assert_eq!(l.percentile_us(99.0), Some(99.0));
        assert_eq!(l.percentile_us(100.0), Some(100.0));
        assert_eq!(Latencies::default().percentile_us(50.0), None);
    }

    #[test]
    fn json_line_is_valid_and_escaped() {
        let mut o = Outcome::rate(
            "q\"d",
            "sequential",
            "a\\b".into(),
            10,
            Duration::from_secs(2),
            "req/s",
        );
        o.extra.push(("rss_kib", 12.0));
        let v: serde_json::Value = serde_json::from_str(&o.to_json()).unwrap();
        assert_eq!(v["label"], "q\"d");
        assert_eq!(v["method"], "a\\b");
        assert_eq!(v["value"], 5.0);
        assert_eq!(v["rss_kib"], 12.0);
        assert!(v.get("p50_us").is_none());
    }
}
