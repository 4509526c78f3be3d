//! Target `trace_roundtrip`: the trace format (`qmp_core::server::trace`) round trip.
//!
//! Input format: a mode byte, then
//! * mode bit 0 clear: a [`Scenario`] (see `scenario.rs`). Its inputs drive a [`Server`]
//!   through a [`Recorder`] (outputs recorded too), and the finished trace must:
//!   1. replay to the same digest (`ReplayReport::matches`), with the same number of inputs and
//!      the same inputs refused as misuse;
//!   2. parse line by line into `Line`s that print back to the identical text, whose inputs
//!      are the recorded ones exactly (compared by `Debug` text, which tells `-0.0` from `0.0`).
//! * mode bit 0 set: the rest is trace text written by an attacker. `replay` must not panic,
//!   and every line that parses as a `Line` prints to text that parses to the same `Line`.

use qmp_core::server::trace::{replay, Line, Recorder};
use qmp_core::server::Server;

use crate::scenario::Scenario;

/// Longest attacker-written trace replayed: replay cost grows with the text.
const MAX_RAW_TRACE: usize = 16 * 1024;

/// Run `s` through a [`Recorder`]; the finished trace text and the indices of refused inputs.
pub fn record(s: &Scenario) -> (String, Vec<usize>) {
    let mut server = Server::new(s.config.clone());
    for spec in &s.registry {
        let _ = server.register(spec.clone());
    }
    let mut rec = Recorder::for_server(&server, Some(7));
    let mut refused = Vec::new();
    for (i, (now, input)) in s.inputs.iter().enumerate() {
        if rec.handle(&mut server, *now, input.clone()).is_err() {
            refused.push(i);
        }
        while let Some(out) = server.poll_output() {
            rec.output(&out);
        }
    }
    (rec.finish(&server), refused)
}

fn structured(data: &[u8]) {
    let s = Scenario::decode(data);
    let (text, refused) = record(&s);
    assert_eq!(
        refused, s.refused,
        "recording changed which inputs are refused"
    );

    let report = replay(&text).unwrap_or_else(|e| panic!("own trace does not replay: {e}"));
    assert!(
        report.matches(),
        "replay digest {} differs from the recorded {:?}",
        report.digest.hex(),
        report.expected
    );
    assert_eq!(report.inputs, s.inputs.len() as u64, "replayed input count");
    let replay_refused: Vec<usize> = report.misuse.iter().map(|(line, _)| *line).collect();
    assert_eq!(
        replay_refused.len(),
        refused.len(),
        "replay refuses different inputs"
    );

    let mut recorded = s.inputs.iter();
    for line in text.lines() {
        let parsed: Line = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("own trace line does not parse ({e}): {line}"));
        let again = serde_json::to_string(&parsed).expect("a parsed line prints");
        assert_eq!(again, line, "a trace line does not print back identically");
        if let Line::Input { now, input } = parsed {
            let (want_now, want) = recorded.next().expect("more input lines than inputs");
            assert_eq!(now, want_now.0, "input time changed");
            assert_eq!(
                format!("{input:?}"),
                format!("{want:?}"),
                "an input changed in the trace"
            );
        }
    }
    assert!(recorded.next().is_none(), "inputs missing from the trace");
}

fn raw(text: &[u8]) {
    let text = String::from_utf8_lossy(&text[..text.len().min(MAX_RAW_TRACE)]);
    let _ = replay(&text);
    for line in text.lines() {
        if let Ok(parsed) = serde_json::from_str::<Line>(line) {
            let printed = serde_json::to_string(&parsed).expect("a parsed line prints");
            let back: Line = serde_json::from_str(&printed)
                .unwrap_or_else(|e| panic!("printed line does not parse ({e}): {printed}"));
            assert_eq!(
                format!("{back:?}"),
                format!("{parsed:?}"),
                "a line changed in print → parse"
            );
        }
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 != 0 => raw(rest),
        Some((_, rest)) => structured(rest),
        None => structured(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    #[test]
    fn recorded_sessions_replay() {
        // open, negotiate, echo + fd, event, dispatcher pass, write all.
        run(&[0, 0, 0, 0, 1, 2, 0, 0, 2, 0, 0x82, 8, 0, 9, 13, 0, 0, 12, 0]);
        run(&[1, 0, 0, 0, 1, 2, 0, 0, 2, 0, 0x82, 8, 0, 9, 13, 0, 0, 12, 0]);
        run(b"\x01{\"header\":{}}\n{\"input\":{\"now\":1,\"input\":\"Tick\"}}");
    }
}
