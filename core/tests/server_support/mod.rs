//! Test harness for the server: a virtual clock, scripted short writes, an "embedder" that
//! mimics the QEMU 7.2 commands used in the spec's transcripts, and a dispatcher that can be
//! blocked (QEMU's main loop stuck in a handler).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use qmp_core::json::{Object, Value};
use qmp_core::server::*;

/// Timestamp used for events raised by the fake QEMU handlers.
pub const TS: Timestamp = Timestamp {
    seconds: 1_795_610_467,
    microseconds: 629_642,
};

pub fn enum_of(values: &[&str]) -> ArgType {
    ArgType::Enum(values.iter().map(|s| s.to_string()).collect())
}

/// The commands of the transcripts, with QEMU 7.2's schemas (trimmed to what is exercised).
pub fn qemu_commands() -> Vec<CommandSpec> {
    use ArgType::*;
    let blkdebug_set_state = Object(vec![
        Member::required("event", enum_of(&["read_aio", "write_aio", "flush_to_os"])),
        Member::optional("state", Int),
        Member::required("new_state", Int),
    ]);
    let drivers = enum_of(&["blkdebug", "null-co", "file", "raw"]);
    let null_co = vec![Member::optional("size", Int)];
    let options_union = FlatUnion {
        discriminator: "driver".into(),
        variants: vec![
            Variant {
                value: "null-co".into(),
                members: null_co.clone(),
            },
            Variant {
                value: "blkdebug".into(),
                members: vec![
                    Member::required(
                        "image",
                        Alternate {
                            name: "BlockdevRef".into(),
                            branches: vec![
                                Union {
                                    base: vec![
                                        Member::required("driver", drivers.clone()),
                                        Member::optional("node-name", String),
                                    ],
                                    union: FlatUnion {
                                        discriminator: "driver".into(),
                                        variants: vec![Variant {
                                            value: "null-co".into(),
                                            members: null_co.clone(),
                                        }],
                                    },
                                },
                                String,
                            ],
                        },
                    ),
                    Member::optional("config", String),
                    Member::optional("set-state", List(Box::new(blkdebug_set_state))),
                ],
            },
        ],
    };
    vec![
        CommandSpec::new("query-status").allow_preconfig(),
        CommandSpec::new("query-name").allow_preconfig(),
        CommandSpec::new("stop"),
        CommandSpec::new("cont"),
        CommandSpec::new("system_reset"),
        CommandSpec::new("quit").allow_preconfig(),
        CommandSpec::new("migrate-pause").allow_oob(),
        CommandSpec::new("query-yank").allow_oob(),
        CommandSpec::new("query-cpus-fast"),
        CommandSpec::new("x-exit-preconfig").allow_preconfig(),
        CommandSpec::new("human-monitor-command")
            .arg("command-line", String)
            .opt("cpu-index", Int),
        CommandSpec::new("migrate-set-parameters").opt("max-bandwidth", UInt),
        CommandSpec::new("qom-set")
            .arg("path", String)
            .arg("property", String)
            .arg("value", Any),
        CommandSpec {
            arguments: vec![
                Member::required("driver", drivers),
                Member::optional("node-name", String),
            ],
            union: Some(options_union),
            ..CommandSpec::new("blockdev-add")
        },
        CommandSpec::new("nbd-server-add")
            .arg("device", String)
            .deprecated(),
        CommandSpec::new("x-query-roms").unstable(),
        CommandSpec::new("send-key-no-reply").no_success_response(),
    ]
}

pub fn obj(pairs: Vec<(&str, Value)>) -> Object {
    let mut o = Object::new();
    for (k, v) in pairs {
        o.insert(k, v);
    }
    o
}

/// What the fake QEMU does for a call: events to emit first, then the result.
pub fn qemu_handler(run_state: &mut RunState, call: &Call) -> (Vec<(String, Object)>, CallResult) {
    let ok = || CallResult::Return(Value::Object(Object::new()));
    match call.command.as_str() {
        "query-status" => {
            let (status, running) = match run_state {
                RunState::Running => ("running", true),
                RunState::Paused => ("paused", false),
                RunState::Preconfig => ("prelaunch", false),
            };
            // QAPI output visitor order: running, singlestep, status.
            let o = obj(vec![
                ("running", Value::Bool(running)),
                ("singlestep", Value::Bool(false)),
                ("status", Value::string(status)),
            ]);
            (vec![], CallResult::Return(Value::Object(o)))
        }
        "stop" => {
            *run_state = RunState::Paused;
            (vec![("STOP".into(), Object::new())], ok())
        }
        "cont" => {
            *run_state = RunState::Running;
            (vec![("RESUME".into(), Object::new())], ok())
        }
        "x-exit-preconfig" => {
            if *run_state != RunState::Preconfig {
                return (
                    vec![],
                    CallResult::Error {
                        class: ErrorClass::GenericError,
                        desc: "The command is permitted only before machine initialization".into(),
                    },
                );
            }
            *run_state = RunState::Running;
            (vec![("RESUME".into(), Object::new())], ok())
        }
        "system_reset" => (
            vec![(
                "RESET".into(),
                obj(vec![
                    ("guest", Value::Bool(false)),
                    ("reason", Value::string("host-qmp-system-reset")),
                ]),
            )],
            ok(),
        ),
        "quit" => (
            vec![(
                "SHUTDOWN".into(),
                obj(vec![
                    ("guest", Value::Bool(false)),
                    ("reason", Value::string("host-qmp-quit")),
                ]),
            )],
            ok(),
        ),
        "migrate-pause" => (
            vec![],
            CallResult::Error {
                class: ErrorClass::GenericError,
                desc: "migrate-pause is currently only supported during postcopy-active state"
                    .into(),
            },
        ),
        "query-yank" => {
            let items = ["qmp", "qmpmux-base", "qmppretty", "hmp"]
                .iter()
                .map(|id| {
                    Value::Object(obj(vec![
                        ("type", Value::string("chardev")),
                        ("id", Value::string(*id)),
                    ]))
                })
                .collect();
            (vec![], CallResult::Return(Value::Array(items)))
        }
        "query-cpus-fast" => (vec![], CallResult::Return(Value::Array(vec![]))),
        "human-monitor-command" => {
            let line = call
                .arguments
                .get("command-line")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let text = match line.as_str() {
                "" => String::new(),
                "info version" => "7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\r\n".into(),
                other => format!("unknown command: '{other}'\r\n"),
            };
            (vec![], CallResult::Return(Value::string(text)))
        }
        _ => (vec![], ok()),
    }
}

/// A server plus a scripted world around it.
pub struct World {
    pub server: Server,
    pub now: Instant,
    /// Bytes each client has received and the test has not taken yet.
    pub wire: BTreeMap<MonitorId, Vec<u8>>,
    /// In-band calls handed out by the dispatcher and not completed yet.
    pub inband: VecDeque<Call>,
    /// Largest `Written` report (short writes); `usize::MAX` writes everything at once.
    pub write_chunk: usize,
    /// When false, the dispatcher does not take requests (QEMU's main loop is blocked).
    pub dispatcher_running: bool,
    /// The fake QEMU's run state.
    pub vm: RunState,
    pub closed_fds: Vec<FdId>,
    pub disconnects: Vec<(MonitorId, DisconnectReason)>,
    /// Commands whose in-band calls the harness does not complete automatically.
    pub blocking: Vec<String>,
    /// Every output polled, for tests that look at them.
    pub log: Vec<Output>,
    /// Timestamp the fake handlers give their events.
    pub ts: Timestamp,
}

impl World {
    pub fn new(config: Config) -> World {
        let vm = config.run_state;
        let mut server = Server::new(config);
        for spec in qemu_commands() {
            server.register(spec).unwrap();
        }
        World {
            server,
            now: Instant(1_000),
            wire: BTreeMap::new(),
            inband: VecDeque::new(),
            write_chunk: usize::MAX,
            dispatcher_running: true,
            vm,
            closed_fds: Vec::new(),
            disconnects: Vec::new(),
            blocking: vec!["blockdev-add".into()],
            log: Vec::new(),
            ts: TS,
        }
    }

    pub fn qemu72() -> World {
        World::new(Config::default())
    }

    pub fn input(&mut self, input: Input) {
        self.server.handle(self.now, input).expect("accepted input");
        self.settle();
    }

    pub fn advance(&mut self, ns: u64) {
        self.now = self.now.plus_nanos(ns);
    }

    /// Open a monitor and swallow its greeting.
    pub fn open(&mut self, id: u64, oob_capable: bool, pretty: bool) -> MonitorId {
        let m = MonitorId(id);
        self.input(Input::Open {
            monitor: m,
            options: MonitorOptions {
                oob_capable,
                pretty,
            },
        });
        m
    }

    /// Open, take the greeting, negotiate (with OOB if asked) and take the reply.
    pub fn negotiated(&mut self, id: u64, oob: bool) -> MonitorId {
        let m = self.open(id, true, false);
        self.take(m);
        let req: &[u8] = if oob {
            br#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#
        } else {
            br#"{"execute": "qmp_capabilities"}"#
        };
        self.send(m, req);
        assert_eq!(self.take(m), "{\"return\": {}}\r\n");
        m
    }

    pub fn send(&mut self, m: MonitorId, bytes: &[u8]) {
        self.send_fds(m, bytes, vec![]);
    }

    pub fn send_fds(&mut self, m: MonitorId, bytes: &[u8], fds: Vec<FdId>) {
        self.input(Input::Receive {
            monitor: m,
            bytes: bytes.to_vec(),
            fds,
        });
    }

    /// Everything client `m` received since the last take.
    pub fn take(&mut self, m: MonitorId) -> String {
        let b = self.wire.remove(&m).unwrap_or_default();
        String::from_utf8(b).expect("QMP output is ASCII")
    }

    pub fn take_bytes(&mut self, m: MonitorId) -> Vec<u8> {
        self.wire.remove(&m).unwrap_or_default()
    }

    /// Run the contract's step 2 (and the dispatcher, if running) until nothing is left.
    pub fn settle(&mut self) {
        // Bounded: every round either makes progress on a finite amount of queued work or stops.
        for _ in 0..100_000 {
            let mut progress = false;
            while let Some(out) = self.server.poll_output() {
                progress = true;
                self.log.push(out.clone());
                match out {
                    Output::Transmit(m) => self.write_out(m),
                    Output::Call(call) => match call.lane {
                        Lane::OutOfBand => self.run_call(call),
                        Lane::InBand => self.inband.push_back(call),
                    },
                    Output::CloseFd(fd) => self.closed_fds.push(fd),
                    Output::Disconnect { monitor, reason } => {
                        self.disconnects.push((monitor, reason));
                    }
                }
            }
            if self.dispatcher_running {
                if let Some(call) = self.inband.front() {
                    if !self.blocking.iter().any(|b| *b == call.command) {
                        let call = self.inband.pop_front().unwrap();
                        self.run_call(call);
                        progress = true;
                    }
                } else if self.server.dispatcher_ready() {
                    self.server.handle(self.now, Input::NextInBand).unwrap();
                    progress = true;
                }
            }
            if !progress {
                return;
            }
        }
        panic!("world did not settle");
    }

    fn write_out(&mut self, m: MonitorId) {
        // Short writes: several Written reports of at most write_chunk bytes.
        loop {
            let pending = self.server.pending_output(m);
            if pending.is_empty() {
                return;
            }
            let n = pending.len().min(self.write_chunk);
            self.wire
                .entry(m)
                .or_default()
                .extend_from_slice(&pending[..n]);
            self.server
                .handle(self.now, Input::Written { monitor: m, n })
                .unwrap();
        }
    }

    pub fn run_call(&mut self, call: Call) {
        let (events, result) = qemu_handler(&mut self.vm, &call);
        if self.server.run_state() != self.vm {
            self.server
                .handle(self.now, Input::SetRunState(self.vm))
                .unwrap();
        }
        for (name, data) in events {
            self.server
                .handle(
                    self.now,
                    Input::Event {
                        name,
                        data,
                        timestamp: self.ts,
                    },
                )
                .unwrap();
        }
        self.server
            .handle(
                self.now,
                Input::Complete {
                    call: call.id,
                    result,
                },
            )
            .unwrap();
    }

    /// Complete the oldest held in-band call (a "blocking" command) with `{}`.
    pub fn release_blocked(&mut self) {
        let call = self.inband.pop_front().expect("a blocked call");
        self.server
            .handle(
                self.now,
                Input::Complete {
                    call: call.id,
                    result: CallResult::Return(Value::Object(Object::new())),
                },
            )
            .unwrap();
        self.settle();
    }

    pub fn event(&mut self, name: &str, data: Object, ts: Timestamp) {
        self.input(Input::Event {
            name: name.into(),
            data,
            timestamp: ts,
        });
    }
}

/// `b"..."` literal of the spec → the exact expected string.
pub fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}
