//! Target `scenario`: an arbitrary sequence of core `Input`s (several monitors, requests,
//! partial writes, completions, ticks, events, suspends, fds, closes and reopens, destroys,
//! named fds taken by handlers) through the simulator's checkers.
//!
//! Input format (read front to back, see [`Scenario::decode`]): a configuration byte, then
//! operations, each a tag byte and its operands. While decoding, a shadow [`Server`] runs the
//! inputs so that operations can name things that exist at that point (the k-th outstanding
//! call, a fraction of a monitor's pending output): most generated inputs are then valid, and
//! the rest (API misuse, such as resuming a monitor that is not suspended) must be refused by
//! the core without effect.
//!
//! Properties:
//! 1. `qmp_sim::check::run_inputs` finds no broken invariant: no panic, well-formed output
//!    lines, no call or output for a closed monitor, at most one in-band call at a time, every
//!    passed fd closed at most once, misuse leaves the state unchanged, memory within bounds.
//! 2. Determinism: a second run of the same inputs gives the same digest and report.
//! 3. The shadow run (plain `Server::handle`) refuses exactly the inputs the checker refused
//!    and ends with the same digest.

use arbitrary::{Arbitrary, Unstructured};
use qmp_core::json::{JsonText, Object, Value};
use qmp_core::server::{
    CallResult, CommandSpec, Config, ErrorClass, FdId, Input, Instant, MonitorId, MonitorOptions,
    RunState, Server, Timestamp,
};

use crate::cursor::Cursor;
use crate::json_stream::SMALL_LIMITS;
use crate::known;

/// Most operations decoded from one input: keeps one execution short.
pub const MAX_OPS: usize = 256;
/// Monitors are named 0..MONITORS, so that operations hit open ones often.
pub const MONITORS: u64 = 4;
/// Receive payloads are at most this long (one length byte).
pub const MAX_RECEIVE: usize = 255;
/// Output limit used when the configuration byte asks for a small one.
pub const SMALL_OUTPUT_LIMIT: usize = 2048;
/// Input buffer limit used when the configuration byte asks for a small one.
pub const SMALL_INPUT_LIMIT: usize = 512;
/// First fd id handed out; ids then count up so each is passed exactly once.
const FIRST_FD: u64 = 100;

/// Requests clients commonly send, picked by index (operation tag 2).
pub const CANNED: &[&[u8]] = &[
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n",
    b"{\"execute\": \"qmp_capabilities\"}\n",
    b"{\"execute\": \"sim-echo\", \"arguments\": {\"tag\": 1}, \"id\": 1}\n",
    b"{\"execute\": \"sim-echo\", \"arguments\": {\"tag\": 4, \"pad\": [1, {}]}, \"id\": \"e\"}",
    b"{\"exec-oob\": \"sim-oob\", \"arguments\": {\"tag\": 2}, \"id\": \"o\"}\n",
    b"{\"execute\": \"sim-oob\", \"arguments\": {\"tag\": 3}, \"control\": {\"run-oob\": true}, \"id\": 7}",
    b"{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"lock\"}\n",
    b"{\"exec-oob\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"id\": \"unlock\"}\n",
    b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f\"}, \"id\": \"g\"}\n",
    b"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"f\"}}\n",
    b"{\"execute\": \"add-fd\", \"arguments\": {\"fdset-id\": 1, \"opaque\": \"x\"}}\n",
    b"{\"execute\": \"add-fd\"}\n",
    b"{\"execute\": \"remove-fd\", \"arguments\": {\"fdset-id\": 1}}\n",
    b"{\"execute\": \"query-fdsets\", \"id\": [1]}\n",
    b"{\"execute\": \"query-commands\"}\n",
    b"{\"execute\": \"query-version\", \"id\": null}\n",
    b"{\"execute\": \"sim-echo\", \"arguments\": {\"tag\": \"x\"}}\n",
    b"{\"execute\": \"nope\", \"id\": 2}\n",
    b"{\"id\": \"no-execute\"}\n",
    b"{]",
    b"\x1b",
    b"[1] 2 ",
    b"{\"execute\": \"sim-echo\", ",
];

/// Events an embedder emits, picked by index (operation tag 8); two are throttled by default.
const EVENTS: &[&str] = &[
    "STOP",
    "RESUME",
    "RTC_CHANGE",
    "VSERPORT_CHANGE",
    "SHUTDOWN",
];

/// A decoded scenario: what the server is configured with and what happens to it.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Server configuration.
    pub config: Config,
    /// Commands registered before the first input.
    pub registry: Vec<CommandSpec>,
    /// Inputs with their `now`.
    pub inputs: Vec<(Instant, Input)>,
    /// Indices of the inputs the shadow server refused as API misuse.
    pub refused: Vec<usize>,
    /// The shadow server's digest after the last input.
    pub digest: u64,
}

impl<'a> Arbitrary<'a> for Scenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = u.len();
        Ok(Scenario::decode(u.bytes(len)?))
    }
}

/// The driver side of decoding: a shadow server and the inputs so far.
struct Builder {
    shadow: Server,
    inputs: Vec<(Instant, Input)>,
    refused: Vec<usize>,
    now: u64,
    next_fd: u64,
}

impl Builder {
    fn push(&mut self, input: Input) {
        let now = Instant(self.now);
        if self.shadow.handle(now, input.clone()).is_err() {
            self.refused.push(self.inputs.len());
        }
        while self.shadow.poll_output().is_some() {}
        self.inputs.push((now, input));
    }

    fn fresh_fds(&mut self, n: u8) -> Vec<FdId> {
        (0..n)
            .map(|_| {
                self.next_fd += 1;
                FdId(self.next_fd)
            })
            .collect()
    }

    fn outstanding(&self, k: u8) -> Option<qmp_core::server::CallId> {
        let calls: Vec<_> = self.shadow.outstanding_calls().map(|c| c.id).collect();
        if calls.is_empty() {
            None
        } else {
            Some(calls[usize::from(k) % calls.len()])
        }
    }
}

/// A QAPI-like struct result.
#[derive(serde::Serialize)]
struct StatusLike {
    running: bool,
    singlestep: bool,
    status: &'static str,
    tag: u8,
}

fn call_result(sel: u8) -> CallResult {
    match sel % 7 {
        0 => CallResult::Return(Value::Object(Object::new())),
        1 => {
            let mut o = Object::new();
            o.insert("tag", Value::Int(i64::from(sel)));
            o.insert("s", Value::string("\u{e9}\"\\\n"));
            CallResult::Return(Value::Object(o))
        }
        2 => CallResult::Return(Value::Array(vec![
            Value::Double(0.1),
            Value::UInt(u64::MAX),
        ])),
        // Results already written (a typed handler's): the same bytes as the values.
        3 => {
            let mut o = Object::new();
            o.insert("s", Value::string("\u{e9}\"\\\n"));
            o.insert(
                "list",
                Value::Array(vec![Value::Double(-0.0), Value::Object(Object::new())]),
            );
            CallResult::ReturnJson(JsonText::from_value(&Value::Object(o)))
        }
        4 => CallResult::serialize(&serde_json::json!({
            "running": sel & 8 != 0,
            "singlestep": false,
            "status": "paused",
            "tag": sel,
            "nested": {"a": [1, 2.5, null], "b": {}},
        })),
        // A struct: its field names go through the serialiser's per-thread memo.
        5 => CallResult::serialize(&StatusLike {
            running: sel & 8 != 0,
            singlestep: sel & 16 != 0,
            status: if sel & 32 != 0 { "paused" } else { "running" },
            tag: sel,
        }),
        _ => CallResult::Error {
            class: ErrorClass::GenericError,
            desc: format!("failed {sel}"),
        },
    }
}

fn event_data(sel: u8) -> Object {
    let mut o = Object::new();
    match sel % 4 {
        0 => {}
        1 => {
            o.insert("id", Value::string(if sel & 4 != 0 { "a" } else { "b" }));
        }
        2 => {
            o.insert("offset", Value::Int(i64::from(sel) - 100));
            o.insert("x", Value::Double(-0.0));
        }
        _ => {
            o.insert("id", Value::string("a"));
            o.insert("open", Value::Bool(sel & 8 != 0));
        }
    }
    o
}

impl Scenario {
    /// Decode `data` (see the module docs); never fails.
    pub fn decode(data: &[u8]) -> Scenario {
        let mut c = Cursor::new(data);
        let flags = c.u8();
        let mut config = if flags & 1 != 0 {
            Config::qemu212()
        } else {
            Config::default()
        };
        if flags & 2 != 0 {
            config.json_limits = SMALL_LIMITS;
        }
        if flags & 4 != 0 {
            config.output_limit = SMALL_OUTPUT_LIMIT;
        }
        if flags & 8 != 0 {
            config.input_buffer_limit = SMALL_INPUT_LIMIT;
        }
        if flags & 16 != 0 {
            config.run_state = RunState::Preconfig;
        }
        let registry = qmp_sim::registry::commands();
        let mut shadow = Server::new(config.clone());
        for spec in &registry {
            // The sim's registry has no duplicate names; a refusal would show in the checker.
            let _ = shadow.register(spec.clone());
        }
        let mut b = Builder {
            shadow,
            inputs: Vec::new(),
            refused: Vec::new(),
            now: 0,
            next_fd: FIRST_FD,
        };
        let mut ops = 0;
        while !c.is_empty() && ops < MAX_OPS {
            ops += 1;
            let tag = c.u8() % 16;
            let monitor = MonitorId(u64::from(c.u8()) % MONITORS);
            match tag {
                0 => {
                    let o = c.u8();
                    b.push(Input::Open {
                        monitor,
                        options: MonitorOptions {
                            oob_capable: o & 1 != 0,
                            pretty: o & 2 != 0,
                        },
                    });
                }
                1 => {
                    let len = usize::from(c.u8());
                    let nfds = c.u8() % 3;
                    let bytes = c.bytes(len.min(MAX_RECEIVE)).to_vec();
                    let fds = b.fresh_fds(nfds);
                    b.push(Input::Receive {
                        monitor,
                        bytes,
                        fds,
                    });
                }
                2 => {
                    let sel = c.u8();
                    let bytes = CANNED[usize::from(sel) % CANNED.len()].to_vec();
                    let fds = b.fresh_fds(u8::from(sel & 0x80 != 0));
                    b.push(Input::Receive {
                        monitor,
                        bytes,
                        fds,
                    });
                }
                3 => {
                    let frac = usize::from(c.u8());
                    let pending = b.shadow.pending_output(monitor).len();
                    b.push(Input::Written {
                        monitor,
                        n: pending * frac / 255,
                    });
                }
                4 => b.push(Input::Close { monitor }),
                5 => {
                    b.now += u64::from(c.u16()) * 1_000_000;
                    b.push(Input::Tick);
                }
                6 => b.push(Input::NextInBand),
                7 => {
                    let k = c.u8();
                    let sel = c.u8();
                    if let Some(call) = b.outstanding(k) {
                        b.push(Input::Complete {
                            call,
                            result: call_result(sel),
                        });
                    }
                }
                8 => {
                    let sel = c.u8();
                    let name = EVENTS[usize::from(sel) % EVENTS.len()].to_owned();
                    let secs = i64::try_from(b.now / 1_000_000_000).unwrap_or(i64::MAX);
                    b.push(Input::Event {
                        name,
                        data: event_data(sel >> 3),
                        timestamp: Timestamp {
                            seconds: 1_700_000_000 + secs,
                            microseconds: i64::try_from((b.now / 1000) % 1_000_000).unwrap_or(0),
                        },
                    });
                }
                9 => b.push(Input::Suspend { monitor }),
                10 => b.push(Input::Resume { monitor }),
                11 => {
                    let rs = match c.u8() % 3 {
                        0 => RunState::Preconfig,
                        1 => RunState::Running,
                        _ => RunState::Paused,
                    };
                    b.push(Input::SetRunState(rs));
                }
                12 => {
                    // A driver pass: write everything pending on every monitor.
                    let mons: Vec<MonitorId> = b.shadow.monitors().collect();
                    for m in mons {
                        let n = b.shadow.pending_output(m).len();
                        if n > 0 {
                            b.push(Input::Written { monitor: m, n });
                        }
                    }
                }
                14 => b.push(Input::Destroy { monitor }),
                15 => {
                    // A handler takes a named fd: "f" is the canned getfd's name.
                    let name = if c.u8() & 1 == 0 { "f" } else { "g" };
                    b.push(Input::TakeNamedFd {
                        monitor,
                        name: name.to_owned(),
                    });
                }
                _ => {
                    // A dispatcher pass: run queued requests, completing each at once.
                    let sel = c.u8();
                    for _ in 0..crate::scenario::MONITORS * 8 {
                        if !b.shadow.dispatcher_ready() {
                            break;
                        }
                        b.push(Input::NextInBand);
                        let inband = b
                            .shadow
                            .outstanding_calls()
                            .find(|c| c.lane == qmp_core::server::Lane::InBand)
                            .map(|c| c.id);
                        match inband {
                            Some(call) => b.push(Input::Complete {
                                call,
                                result: call_result(sel),
                            }),
                            None => continue,
                        }
                    }
                }
            }
        }
        let digest = b.shadow.digest().0;
        Scenario {
            config,
            registry,
            inputs: b.inputs,
            refused: b.refused,
            digest,
        }
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    let s = Scenario::decode(data);
    let run = known::Run {
        config: &s.config,
        registry: &s.registry,
        inputs: &s.inputs,
        driven: false,
    };
    let checked = qmp_sim::check::run_inputs(&s.config, &s.registry, &s.inputs);
    let Some(first) = known::check(checked, &run) else {
        return;
    };
    let second = qmp_sim::check::run_inputs(&s.config, &s.registry, &s.inputs)
        .unwrap_or_else(|f| panic!("second run differs: {f}"));
    assert_eq!(first, second, "two runs of the same inputs differ");
    assert_eq!(
        first.refused,
        s.refused.len() as u64,
        "checker and plain server refuse different inputs"
    );
    assert_eq!(
        first.digest, s.digest,
        "checker and plain server digests differ"
    );
}

#[cfg(test)]
mod tests {
    use super::{run, Scenario};

    #[test]
    fn a_negotiated_request_produces_a_call_and_a_reply() {
        // open 0 (oob-capable), negotiate with oob, echo, dispatcher pass, write everything.
        let mut data = vec![0u8, 0, 0, 1, 2, 0, 0, 2, 0, 2, 13, 0, 0, 12, 0];
        let s = Scenario::decode(&data);
        assert!(s.refused.is_empty(), "refused: {:?}", s.refused);
        assert!(s
            .inputs
            .iter()
            .any(|(_, i)| matches!(i, qmp_core::server::Input::Complete { .. })));
        run(&data);
        // Misuse is refused, not a failure: resume a monitor that is not suspended.
        data.extend_from_slice(&[10, 0]);
        assert_eq!(Scenario::decode(&data).refused.len(), 1);
        run(&data);
    }
}
