//! `qmpd --record` survives `kill -9`: every input reaches the trace file within
//! `qmp_io::record::FLUSH_EVERY`, so a daemon killed without warning leaves a trace whose whole
//! lines replay (`qmp-sim replay` also drops a last line cut mid-write, see sim/tests).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use qmp_core::server::trace::{replay, Line};
use qmp_io::record::FLUSH_EVERY;

#[test]
fn a_recording_qmpd_killed_with_sigkill_leaves_every_input_but_the_last_moments() {
    let dir = temp_dir();
    let sock = dir.join("qmp.sock");
    let trace = dir.join("trace.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qmpd"))
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .args(["--log", "warn", "--record"])
        .arg(&trace)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn qmpd");
    let deadline = Instant::now() + TIMEOUT;
    while !sock.exists() {
        assert!(Instant::now() < deadline, "qmpd did not create its socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = Client::connect(&sock);
    c.negotiate(false);
    c.send("{\"execute\": \"stop\"}\n{\"execute\": \"query-status\", \"id\": \"last\"}\n");
    assert!(c.read_msg().contains("STOP"));
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    assert!(c.read_msg().contains("\"last\""));
    // Quiet for a few flush periods, then killed without a chance to write anything.
    std::thread::sleep(FLUSH_EVERY * 3);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let text = std::fs::read_to_string(&trace).expect("trace");
    let lines: Vec<Line> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line of a quiet trace is whole"))
        .collect();
    assert!(matches!(lines.first(), Some(Line::Header(_))));
    assert!(
        !lines.iter().any(|l| matches!(l, Line::End { .. })),
        "no end line: the daemon never shut down"
    );
    assert!(
        text.contains("\\\"last\\\""),
        "the last request's bytes were flushed: {text}"
    );
    let report = replay(&text).expect("the whole lines replay");
    assert!(report.misuse.is_empty(), "{:?}", report.misuse);
    assert_eq!(report.inputs as usize, lines.len() - 1);
    assert!(report.expected.is_none());
}
