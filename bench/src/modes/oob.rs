//! `oob-latency`: latency of `exec-oob` probes (`query-yank`, OOB-capable in QEMU 7.2 and
//! qmpd) while the in-band side is occupied, one probe in flight at a time.
//!
//! Two ways to occupy it (`--oob-method`):
//! - `lock`: `x-oob-test {"lock": true}` blocks the in-band dispatcher until an OOB
//!   `x-oob-test {"lock": false}` releases it. A request queued behind the lock proves the
//!   dispatcher really was blocked: no in-band reply may arrive while probing. QEMU 7.2 has
//!   no `x-oob-test`, so this method is refused there with a clear error.
//! - `load` (results are named `oob-latency-load`): in-band requests are kept in flight (at most [`MAX_LOAD`], below QEMU's queue
//!   limit of 8, so the monitor is never suspended and probes are never stuck behind it);
//!   each in-band reply is answered with a new request. Works on any server.

use std::io;
use std::time::Instant;

use super::{socket, Budget};
use crate::client::{is_event, is_return, preview, protocol, string_id, Client};
use crate::opts::{OobMethod, Opts};
use crate::stats::{Latencies, Outcome};

/// In-band requests kept in flight by the `load` method.
const MAX_LOAD: usize = 6;
/// Replies read while draining at the end, at most (the three expected plus stray events).
const MAX_DRAIN_LINES: usize = 10_000;
/// Probe latencies kept at most.
const MAX_SAMPLES: u64 = 10_000_000;

const PROBE: &[u8] = b"{\"exec-oob\":\"query-yank\",\"id\":\"o\"}\n";
const LOCK: &[u8] = b"{\"execute\":\"x-oob-test\",\"arguments\":{\"lock\":true},\"id\":\"lock\"}\n";
const BEHIND: &[u8] = b"{\"execute\":\"query-name\",\"id\":\"behind\"}\n";
const UNLOCK: &[u8] =
    b"{\"exec-oob\":\"x-oob-test\",\"arguments\":{\"lock\":false},\"id\":\"unlock\"}\n";

pub(super) fn run(opts: &Opts) -> io::Result<Outcome> {
    let mut client = Client::open(socket(opts, 0), opts.io_timeout, true)?;
    match opts.oob_method {
        OobMethod::Lock => run_lock(opts, &mut client),
        OobMethod::Load => run_load(opts, &mut client),
    }
}

fn check_probe(line: &[u8]) -> io::Result<()> {
    if is_return(line) {
        Ok(())
    } else {
        Err(protocol(format!("oob probe failed: {}", preview(line))))
    }
}

fn run_lock(opts: &Opts, client: &mut Client) -> io::Result<Outcome> {
    client.send(LOCK)?;
    client.send(BEHIND)?;
    let cap = opts.max_ops.min(MAX_SAMPLES);
    let mut lat = Latencies::with_capacity(cap.min(1 << 20) as usize);
    let budget = Budget::start(opts);
    let mut done = 0u64;
    while done < cap && budget.more(done) {
        let t = Instant::now();
        client.send(PROBE)?;
        loop {
            let line = client.read_line()?;
            if is_event(line) {
                continue;
            }
            match string_id(line) {
                Some(b"o") => {
                    lat.push(t.elapsed());
                    check_probe(line)?;
                    break;
                }
                Some(b"lock") if !is_return(line) => {
                    return Err(protocol(format!(
                        "x-oob-test refused ({}); use --oob-method load",
                        preview(line)
                    )))
                }
                _ => {
                    return Err(protocol(format!(
                        "in-band reply while the dispatcher should be blocked: {}",
                        preview(line)
                    )))
                }
            }
        }
        done += 1;
    }
    let elapsed = budget.start.elapsed();
    client.send(UNLOCK)?;
    let mut seen = Vec::with_capacity(3);
    for _ in 0..MAX_DRAIN_LINES {
        if seen.len() == 3 {
            break;
        }
        let line = client.read_line()?;
        if is_event(line) {
            continue;
        }
        if !is_return(line) {
            return Err(protocol(format!("after unlock: {}", preview(line))));
        }
        seen.push(string_id(line).unwrap_or_default().to_vec());
    }
    // The unlock and lock replies race (QEMU's own test does not check their order); the
    // request queued behind the lock must come after it.
    let pos = |id: &[u8]| seen.iter().position(|s| s == id);
    match (pos(b"unlock"), pos(b"lock"), pos(b"behind")) {
        (Some(_), Some(l), Some(b)) if l < b => {}
        _ => {
            return Err(protocol(format!(
                "unexpected replies after unlock: {:?}",
                seen.iter().map(|s| preview(s)).collect::<Vec<_>>()
            )))
        }
    }
    Ok(Outcome::rate(
        &opts.label,
        "oob-latency",
        "exec-oob query-yank under x-oob-test lock".into(),
        done,
        elapsed,
        "probes/s",
    )
    .with_latencies(&mut lat))
}

fn run_load(opts: &Opts, client: &mut Client) -> io::Result<Outcome> {
    let inband = format!("{{\"execute\":\"{}\",\"id\":\"i\"}}\n", opts.command).into_bytes();
    let load = opts.window.min(MAX_LOAD);
    client.send(&inband.repeat(load))?;
    let mut in_flight = load;
    let mut inband_done = 0u64;
    let cap = opts.max_ops.min(MAX_SAMPLES);
    let mut lat = Latencies::with_capacity(cap.min(1 << 20) as usize);
    let budget = Budget::start(opts);
    let mut done = 0u64;
    while done < cap && budget.more(done) {
        let t = Instant::now();
        client.send(PROBE)?;
        loop {
            let line = client.read_line()?;
            if is_event(line) {
                continue;
            }
            if string_id(line) == Some(b"o") {
                lat.push(t.elapsed());
                check_probe(line)?;
                break;
            }
            if !is_return(line) {
                return Err(protocol(format!("in-band load failed: {}", preview(line))));
            }
            inband_done += 1;
            client.send(&inband)?;
            if t.elapsed() > opts.io_timeout {
                return Err(protocol(
                    "no reply to the oob probe within --io-timeout".into(),
                ));
            }
        }
        done += 1;
    }
    let elapsed = budget.start.elapsed();
    // Bounded: exactly `in_flight` in-band replies are still owed.
    while in_flight > 0 {
        let line = client.read_line()?;
        if !is_event(line) {
            in_flight -= 1;
        }
    }
    let mut out = Outcome::rate(
        &opts.label,
        "oob-latency-load",
        format!(
            "exec-oob query-yank, {load} in-band {} in flight",
            opts.command
        ),
        done,
        elapsed,
        "probes/s",
    )
    .with_latencies(&mut lat);
    out.extra
        .push(("inband_per_s", inband_done as f64 / elapsed.as_secs_f64()));
    Ok(out)
}
