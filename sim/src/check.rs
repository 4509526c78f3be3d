//! Invariants that need no knowledge of client intent, over any input sequence: the library
//! entry point for fuzz targets, trace replay and shrinking.
//!
//! Stable API:
//! - [`run_inputs`]: apply inputs exactly as given (completions come from the inputs);
//! - [`run_inputs_hmp`]: the same with human monitor (HMP) commands registered;
//! - [`run_inputs_driven`]: also act as a trivial embedder (complete every call at once with
//!   `{}`, run the dispatcher whenever it is ready, write all pending output);
//! - [`check_output_line`]: one output message is acceptable QMP output.
//!
//! Inputs the core refuses as API misuse are skipped (the core must leave its state unchanged
//! for them), so arbitrary input lists are fine.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use qmp_core::hmp::HmpCommand;
use qmp_core::json::{Object, Value};
use qmp_core::server::{
    CallId, CallResult, CommandSpec, Config, Dialect, Input, Instant, MonitorId, Output, Server,
};

use crate::failure::{panic_text, Failure};
use crate::invariants;
pub use crate::invariants::{queue_limit, QUEUE_OVERSHOOT_MAX};
use crate::model::{is_event, show};
use crate::wire::{split_messages, validate_message};

/// What a checked run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Inputs applied (including refused ones).
    pub inputs: u64,
    /// Inputs the core refused as misuse.
    pub refused: u64,
    /// Output messages checked.
    pub messages: u64,
    /// The core's output digest at the end.
    pub digest: u64,
}

/// Checks one complete output message (`\r\n` included): valid JSON or QEMU's documented
/// `inf`/`nan`, an object, printable ASCII, CRLF line ends.
pub fn check_output_line(msg: &[u8]) -> Result<(), Failure> {
    validate_message(msg).map_err(|e| {
        Failure::correctness(
            "output-json",
            format!("{} at byte {}: {}", e.what, e.at, show(msg)),
        )
    })
}

#[derive(Default)]
struct Mon {
    pretty: bool,
    rx: Vec<u8>,
    unwritten: usize,
    /// Queue length after the previous input.
    queued: usize,
    /// The core gave up on this monitor at the output or input limit (`Disconnect`): its
    /// pending output is dropped.
    given_up: bool,
    /// A human monitor (HMP): its output is text, not QMP messages.
    hmp: bool,
    /// The last byte of its output checked so far.
    last: Option<u8>,
}

struct Checker {
    server: Server,
    mons: BTreeMap<MonitorId, Mon>,
    passed_fds: BTreeSet<u64>,
    closed_fds: BTreeSet<u64>,
    /// Outstanding calls: in-band or not, and the monitor whose request caused it (`None`
    /// once that connection closed: a reopened monitor is a new session).
    calls: BTreeMap<CallId, (bool, Option<MonitorId>)>,
    report: CheckReport,
    driven: bool,
}

impl Checker {
    fn apply(&mut self, now: Instant, input: Input) -> Result<(), Failure> {
        let mut queue = vec![input];
        while let Some(input) = queue.pop() {
            self.report.inputs += 1;
            let step = self.report.inputs;
            let at = |f: Failure| f.at(step, now.0);
            let fresh_fds: Vec<u64> = match &input {
                Input::Receive { fds, .. } => fds.iter().map(|f| f.0).collect(),
                _ => Vec::new(),
            };
            let opened = match &input {
                Input::Open { monitor, options } => Some((*monitor, options.pretty, false)),
                Input::OpenHmp { monitor, .. } => Some((*monitor, false, true)),
                _ => None,
            };
            let event = matches!(input, Input::Event { .. } | Input::Tick);
            // `Destroy` of a monitor with a client ends that client's session too.
            let closed = match &input {
                Input::Close { monitor } => Some(*monitor),
                Input::Destroy { monitor } if self.mons.contains_key(monitor) => Some(*monitor),
                _ => None,
            };
            // A handler takes a named fd: it leaves the core without a `CloseFd` (the caller
            // owns it), so it is accounted as taken, never to be closed by the core again.
            let held_before: Option<BTreeSet<u64>> = match &input {
                Input::TakeNamedFd { .. } => {
                    Some(self.server.held_fds().into_iter().map(|f| f.0).collect())
                }
                _ => None,
            };
            let written = match &input {
                Input::Written { monitor, n } => Some((*monitor, *n)),
                _ => None,
            };
            let completed = match &input {
                Input::Complete { call, .. } => Some(*call),
                _ => None,
            };
            // Messages left ready by an OOB call are handled when it completes, so they may
            // belong to the byte that filled the queue in an earlier input.
            // The dispatcher takes one request off a queue, which may then refill in the same
            // input (resumed, lexing the next bytes).
            let dispatch = matches!(input, Input::NextInBand);
            let held: BTreeSet<MonitorId> = self
                .mons
                .keys()
                .copied()
                .filter(|&m| self.server.oob_call_holding_input(m).is_some())
                .collect();
            let server = &mut self.server;
            let r = catch_unwind(AssertUnwindSafe(|| server.handle(now, input)));
            match r {
                Err(p) => return Err(at(Failure::crash(panic_text(p.as_ref())))),
                Ok(Err(_)) => {
                    self.report.refused += 1;
                    continue;
                }
                Ok(Ok(())) => {}
            }
            for fd in fresh_fds {
                if !self.passed_fds.insert(fd) {
                    // The same id passed twice is a driver error; tracking stops being exact.
                    self.closed_fds.remove(&fd);
                }
            }
            if let Some((m, pretty, hmp)) = opened {
                self.mons.insert(
                    m,
                    Mon {
                        pretty,
                        hmp,
                        ..Mon::default()
                    },
                );
            }
            if let Some(m) = closed {
                self.mons.remove(&m);
                for (_, owner) in self.calls.values_mut() {
                    if *owner == Some(m) {
                        *owner = None;
                    }
                }
                if !self.server.pending_output(m).is_empty() {
                    return Err(at(Failure::correctness(
                        "output-after-close",
                        format!("monitor {} still has output after Close", m.0),
                    )));
                }
            }
            if let Some((m, n)) = written {
                if let Some(mon) = self.mons.get_mut(&m) {
                    mon.unwritten = mon.unwritten.saturating_sub(n);
                }
            }
            if let Some(c) = completed {
                self.calls.remove(&c);
            }
            while let Some(out) = self.server.poll_output() {
                match out {
                    Output::Call(c) => {
                        if self
                            .calls
                            .insert(
                                c.id,
                                (c.lane == qmp_core::server::Lane::InBand, Some(c.monitor)),
                            )
                            .is_some()
                        {
                            return Err(at(Failure::correctness(
                                "call-id-reused",
                                format!("call {} issued twice", c.id.0),
                            )));
                        }
                        if !self.mons.contains_key(&c.monitor) {
                            return Err(at(Failure::correctness(
                                "call-after-close",
                                format!(
                                    "{} call for monitor {} which is not open",
                                    c.command, c.monitor.0
                                ),
                            )));
                        }
                        if self.calls.values().filter(|(inband, _)| *inband).count() > 1 {
                            return Err(at(Failure::correctness(
                                "dispatcher-overlap",
                                "two in-band calls outstanding at once",
                            )));
                        }
                        if self.driven {
                            queue.insert(
                                0,
                                Input::Complete {
                                    call: c.id,
                                    result: CallResult::Return(Value::Object(Object::new())),
                                },
                            );
                        }
                    }
                    Output::Transmit(m) => {
                        if !self.mons.contains_key(&m) {
                            return Err(at(Failure::correctness(
                                "output-after-close",
                                format!("Transmit for monitor {} which is not open", m.0),
                            )));
                        }
                    }
                    Output::CloseFd(fd) => {
                        if !self.passed_fds.contains(&fd.0) {
                            return Err(at(Failure::correctness(
                                "fd-unknown",
                                format!("CloseFd {} never passed in", fd.0),
                            )));
                        }
                        if !self.closed_fds.insert(fd.0) {
                            return Err(at(Failure::correctness(
                                "fd-twice",
                                format!("fd {} closed twice", fd.0),
                            )));
                        }
                    }
                    Output::Disconnect { monitor, .. } => {
                        let Some(mon) = self.mons.get_mut(&monitor) else {
                            return Err(at(Failure::correctness(
                                "disconnect-closed",
                                format!("Disconnect for monitor {} which is not open", monitor.0),
                            )));
                        };
                        // Either limit: the core drops the monitor's output and input by design.
                        mon.given_up = true;
                    }
                }
            }
            if let Some(before) = held_before {
                let after: BTreeSet<u64> =
                    self.server.held_fds().into_iter().map(|f| f.0).collect();
                let taken: Vec<u64> = before
                    .difference(&after)
                    .filter(|fd| !self.closed_fds.contains(fd))
                    .copied()
                    .collect();
                if taken.len() > 1 {
                    return Err(at(Failure::correctness(
                        "fd-taken",
                        format!(
                            "one named fd taken, {} left the core: {taken:?}",
                            taken.len()
                        ),
                    )));
                }
                self.closed_fds.extend(taken);
            }
            self.check_monitors(step, now, &held, dispatch, event)?;
            if self.driven {
                if self.server.dispatcher_ready() {
                    queue.insert(0, Input::NextInBand);
                }
                for (&m, mon) in &self.mons {
                    let pending = self.server.pending_output(m).len();
                    if pending > 0 && mon.unwritten == pending {
                        queue.insert(
                            0,
                            Input::Written {
                                monitor: m,
                                n: pending,
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn check_monitors(
        &mut self,
        step: u64,
        now: Instant,
        held: &BTreeSet<MonitorId>,
        dispatch: bool,
        event: bool,
    ) -> Result<(), Failure> {
        let at = |f: Failure| f.at(step, now.0);
        let mut pending_total = 0;
        for (&m, mon) in self.mons.iter_mut() {
            let pending = self.server.pending_output(m);
            pending_total += pending.len();
            if mon.given_up {
                // Giving up drops the pending output at once, and nothing is added after.
                if !pending.is_empty() {
                    return Err(at(Failure::correctness(
                        "output-after-give-up",
                        format!(
                            "monitor {}: {} bytes pending after the output-limit disconnect",
                            m.0,
                            pending.len()
                        ),
                    )));
                }
                mon.unwritten = 0;
                mon.rx.clear();
            }
            if pending.len() < mon.unwritten {
                return Err(at(Failure::correctness(
                    "pending-shrank",
                    format!("monitor {}: pending output shrank without a write", m.0),
                )));
            }
            let fresh = &pending[mon.unwritten..];
            mon.unwritten = pending.len();
            if mon.hmp {
                invariants::hmp_no_events(m, event, fresh).map_err(at)?;
                invariants::hmp_line_ends(m, mon.last, fresh).map_err(at)?;
                invariants::hmp_queue(m, self.server.queue_len(m)).map_err(at)?;
            }
            if let Some(&b) = fresh.last() {
                mon.last = Some(b);
            }
            if !mon.hmp {
                mon.rx.extend_from_slice(fresh);
            }
            for msg in split_messages(&mut mon.rx, mon.pretty) {
                self.report.messages += 1;
                check_output_line(&msg).map_err(at)?;
                if is_event(&msg) && !self.server.is_negotiated(m) {
                    return Err(at(Failure::correctness(
                        "event-before-negotiation",
                        format!(
                            "monitor {} got an event in negotiation mode: {}",
                            m.0,
                            show(&msg)
                        ),
                    )));
                }
            }
            let q = self.server.queue_len(m);
            let oob = self.server.oob_enabled(m);
            let limit = queue_limit(oob);
            let oracle = invariants::queue_oracle(oob);
            let prev = std::mem::replace(&mut mon.queued, q);
            let low = prev.saturating_sub(usize::from(dispatch));
            // Past the limit only with messages of the byte that filled the queue: at most
            // QUEUE_OVERSHOOT_MAX of them, and only in the input that lexed that byte (or the
            // completion of an OOB call that held the rest of its messages); once full, no
            // further byte is lexed until the queue drops below the limit.
            invariants::queue_length(m, q, oob).map_err(at)?;
            if q > limit && q > prev && low >= limit && !held.contains(&m) {
                return Err(at(Failure::correctness(
                    oracle,
                    format!(
                        "monitor {} queue {prev} -> {q} past the limit {limit} (bytes after the suspension point were lexed)",
                        m.0
                    ),
                )));
            }
            // QEMU 2.12 with OOB on keeps reading at a full queue and drops the request that
            // finds it full (COMMAND_DROPPED, spec appendix on 2.12 `bf1e7301`): the queue never
            // passes the limit, and a full queue does not stop reading.
            let drops = oob && self.server.config().dialect == Dialect::Qemu212;
            if drops && q > limit {
                return Err(at(Failure::correctness(
                    oracle,
                    format!(
                        "monitor {} queue {q} > {limit} in 2.12 (drops when full)",
                        m.0
                    ),
                )));
            }
            if !drops && q >= limit && self.server.wants_read(m) {
                return Err(at(Failure::correctness(
                    oracle,
                    format!("monitor {} queue {q} (limit {limit}) and wants_read", m.0),
                )));
            }
            let oob_call = self
                .calls
                .values()
                .any(|&(inband, cm)| !inband && cm == Some(m));
            invariants::reading(
                m,
                self.server.wants_read(m),
                u64::from(self.server.suspend_count(m)),
                oob_call,
            )
            .map_err(at)?;
        }
        invariants::memory(
            self.server.memory_estimate(),
            pending_total,
            self.server.config().input_buffer_limit,
            self.mons.len(),
        )
        .map_err(at)?;
        Ok(())
    }

    fn finish(mut self) -> Result<CheckReport, Failure> {
        let held: BTreeSet<u64> = self.server.held_fds().into_iter().map(|f| f.0).collect();
        for fd in &held {
            if self.closed_fds.contains(fd) {
                return Err(Failure::correctness(
                    "fd-twice",
                    format!("fd {fd} both closed and still held"),
                ));
            }
        }
        let lost: Vec<&u64> = self
            .passed_fds
            .iter()
            .filter(|fd| !held.contains(fd) && !self.closed_fds.contains(fd))
            .collect();
        if !lost.is_empty() {
            return Err(Failure::correctness(
                "fd-leak",
                format!("fds neither held nor closed: {lost:?}"),
            ));
        }
        self.report.digest = self.server.digest().0;
        Ok(self.report)
    }
}

fn run(
    config: &Config,
    registry: &[CommandSpec],
    hmp: &[HmpCommand],
    inputs: &[(Instant, Input)],
    driven: bool,
) -> Result<CheckReport, Failure> {
    let mut server = Server::new(config.clone());
    for spec in registry {
        let _ = server.register(spec.clone());
    }
    for cmd in hmp {
        let _ = server.register_hmp(cmd.clone());
    }
    let mut c = Checker {
        server,
        mons: BTreeMap::new(),
        passed_fds: BTreeSet::new(),
        closed_fds: BTreeSet::new(),
        calls: BTreeMap::new(),
        report: CheckReport::default(),
        driven,
    };
    let mut last = Instant(0);
    for (now, input) in inputs {
        // Time never goes backwards for the core; a fuzzer's list may, so clamp.
        last = last.max(*now);
        c.apply(last, input.clone())?;
    }
    c.finish()
}

/// Applies `inputs` as given and checks every intent-free invariant after each one.
pub fn run_inputs(
    config: &Config,
    registry: &[CommandSpec],
    inputs: &[(Instant, Input)],
) -> Result<CheckReport, Failure> {
    run(config, registry, &[], inputs, false)
}

/// [`run_inputs`] with human monitor commands registered too (traces of worlds with human
/// monitors).
pub fn run_inputs_hmp(
    config: &Config,
    registry: &[CommandSpec],
    hmp: &[HmpCommand],
    inputs: &[(Instant, Input)],
) -> Result<CheckReport, Failure> {
    run(config, registry, hmp, inputs, false)
}

/// Like [`run_inputs`], but also acts as a trivial embedder: completes calls with `{}` at once,
/// feeds `NextInBand` whenever the dispatcher is ready and writes all pending output.
pub fn run_inputs_driven(
    config: &Config,
    registry: &[CommandSpec],
    inputs: &[(Instant, Input)],
) -> Result<CheckReport, Failure> {
    run(config, registry, &[], inputs, true)
}
