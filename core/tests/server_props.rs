//! Property tests: determinism (same inputs, same digest and outputs), write-size invariance
//! (any split of the `Written` reports gives the same bytes), no panic on arbitrary input, and
//! a model-based test of queue / suspend / OOB / throttle against a small reference model.

mod server_support;

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use qmp_core::json::{Object, Value};
use qmp_core::server::*;

const FRAGMENTS: &[&[u8]] = &[
    b"{\"execute\":\"query-name\",\"id\":1}",
    b"{\"exec-oob\":\"query-yank\",\"id\":2}",
    b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}",
    b"{\"execute\":\"qmp_capabilities\"}",
    b"{\"execute\":\"stop\",\"id\":\"s\"}",
    b"{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"a\"}}",
    b"{\"execute\":\"add-fd\"}",
    b"{]",
    b"\xff",
    b"null ",
    b"{\"execute\":\"qu",
    b"ery-name\"}",
    b"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info version\"}}",
    b"{\"execute\":\"migrate-pause\",\"control\":{\"run-oob\":true},\"id\":3}",
];

#[derive(Clone, Debug)]
enum Act {
    Open(u8, bool, bool),
    Close(u8),
    Send(u8, Vec<u8>, bool),
    Raw(u8, Vec<u8>),
    Next,
    Complete,
    Event(u8),
    Advance(u32),
    Tick,
    Suspend(u8),
    Resume(u8),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        (0..3u8, any::<bool>(), any::<bool>()).prop_map(|(m, o, p)| Act::Open(m, o, p)),
        (0..3u8).prop_map(Act::Close),
        (
            0..3u8,
            prop::collection::vec(0..FRAGMENTS.len() as u8, 1..5),
            any::<bool>()
        )
            .prop_map(|(m, f, fd)| Act::Send(m, f, fd)),
        (0..3u8, prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(m, b)| Act::Raw(m, b)),
        Just(Act::Next),
        Just(Act::Next),
        Just(Act::Complete),
        (0..3u8).prop_map(Act::Event),
        (0..1_500_000_000u32).prop_map(Act::Advance),
        Just(Act::Tick),
        (0..3u8).prop_map(Act::Suspend),
        (0..3u8).prop_map(Act::Resume),
    ]
}

/// Everything observable from one run.
#[derive(Debug, PartialEq)]
struct Run {
    digest: Digest,
    wire: BTreeMap<u64, Vec<u8>>,
    outputs: Vec<String>,
    fds_closed: Vec<FdId>,
}

fn config(dialect: Dialect) -> Config {
    Config {
        dialect,
        ..Config::default()
    }
}

/// Drive a server through `acts`; `chunks` gives the sizes of successive write reports
/// (cycled; empty means "write everything at once").
fn run(acts: &[Act], dialect: Dialect, chunks: &[usize]) -> Run {
    let mut server = Server::new(config(dialect));
    for spec in server_support::qemu_commands() {
        server.register(spec).unwrap();
    }
    let mut now = Instant(0);
    let mut wire: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut outputs = Vec::new();
    let mut fds_closed = Vec::new();
    let mut inband: VecDeque<CallId> = VecDeque::new();
    let mut next_fd = 100u64;
    let mut chunk_i = 0usize;
    let mut handed_in = 0u64;
    for a in acts {
        let input = match a {
            Act::Open(m, oob, pretty) => Input::Open {
                monitor: MonitorId(u64::from(*m)),
                options: MonitorOptions {
                    oob_capable: *oob,
                    pretty: *pretty,
                },
            },
            Act::Close(m) => Input::Close {
                monitor: MonitorId(u64::from(*m)),
            },
            Act::Send(m, frags, fd) => {
                let bytes = frags
                    .iter()
                    .flat_map(|&i| FRAGMENTS[i as usize].iter().copied())
                    .collect();
                let fds = if *fd {
                    next_fd += 1;
                    vec![FdId(next_fd)]
                } else {
                    vec![]
                };
                Input::Receive {
                    monitor: MonitorId(u64::from(*m)),
                    bytes,
                    fds,
                }
            }
            Act::Raw(m, bytes) => Input::Receive {
                monitor: MonitorId(u64::from(*m)),
                bytes: bytes.clone(),
                fds: vec![],
            },
            Act::Next => Input::NextInBand,
            Act::Complete => match inband.pop_front() {
                Some(call) => Input::Complete {
                    call,
                    result: CallResult::Return(Value::Object(Object::new())),
                },
                None => Input::Tick,
            },
            Act::Event(k) => Input::Event {
                name: ["RTC_CHANGE", "STOP", "VSERPORT_CHANGE"][*k as usize].into(),
                data: Object::new(),
                timestamp: Timestamp {
                    seconds: now.0 as i64,
                    microseconds: 0,
                },
            },
            Act::Advance(ns) => {
                now = now.plus_nanos(u64::from(*ns));
                continue;
            }
            Act::Tick => Input::Tick,
            Act::Suspend(m) => Input::Suspend {
                monitor: MonitorId(u64::from(*m)),
            },
            Act::Resume(m) => Input::Resume {
                monitor: MonitorId(u64::from(*m)),
            },
        };
        let fds_in = match &input {
            Input::Receive { fds, .. } => fds.len() as u64,
            _ => 0,
        };
        match server.handle(now, input) {
            Ok(()) => handed_in += fds_in,
            Err(e) => outputs.push(format!("misuse {e}")),
        }
        // Bounded drain: OOB calls are completed at once, which may queue more output.
        for _ in 0..10_000 {
            let Some(o) = server.poll_output() else { break };
            outputs.push(match &o {
                Output::Transmit(_) => "transmit".to_string(),
                other => format!("{other:?}"),
            });
            match o {
                Output::Transmit(m) => loop {
                    let pending = server.pending_output(m);
                    if pending.is_empty() {
                        break;
                    }
                    let n = if chunks.is_empty() {
                        pending.len()
                    } else {
                        chunk_i += 1;
                        chunks[chunk_i % chunks.len()].clamp(1, pending.len())
                    };
                    wire.entry(m.0)
                        .or_default()
                        .extend_from_slice(&pending[..n]);
                    server
                        .handle(now, Input::Written { monitor: m, n })
                        .unwrap();
                },
                Output::Call(c) if c.lane == Lane::OutOfBand => {
                    server
                        .handle(
                            now,
                            Input::Complete {
                                call: c.id,
                                result: CallResult::Return(Value::Object(Object::new())),
                            },
                        )
                        .unwrap();
                }
                Output::Call(c) => inband.push_back(c.id),
                Output::CloseFd(fd) => fds_closed.push(fd),
                Output::Disconnect { .. } => {}
            }
        }
    }
    // Accounting: every fd handed in is either closed exactly once or still held.
    let mut all = fds_closed.clone();
    all.extend(server.held_fds());
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, all.len(), "an fd was returned twice");
    assert_eq!(all.len() as u64, handed_in, "an fd was lost");
    Run {
        digest: server.digest(),
        wire,
        outputs: outputs.into_iter().filter(|o| o != "transmit").collect(),
        fds_closed,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn deterministic(acts in prop::collection::vec(act(), 0..60), v212 in any::<bool>()) {
        let d = if v212 { Dialect::Qemu212 } else { Dialect::Qemu72 };
        let a = run(&acts, d, &[]);
        let b = run(&acts, d, &[]);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn write_size_invariant(
        acts in prop::collection::vec(act(), 0..60),
        chunks in prop::collection::vec(1..40usize, 1..6),
        v212 in any::<bool>(),
    ) {
        let d = if v212 { Dialect::Qemu212 } else { Dialect::Qemu72 };
        let whole = run(&acts, d, &[]);
        let split = run(&acts, d, &chunks);
        prop_assert_eq!(whole.digest, split.digest);
        prop_assert_eq!(whole.wire, split.wire);
        prop_assert_eq!(whole.fds_closed, split.fds_closed);
    }
}

// ---- model-based test ----

/// The reference model: what QEMU 7.2's queue, suspend, OOB and throttle rules predict, kept
/// as plain counters and lists (no JSON, no bytes).
#[derive(Debug, Default)]
struct ModelMon {
    oob: bool,
    queue: VecDeque<u64>,
    /// Requests received but not lexed yet (seq, is exec-oob).
    unread: VecDeque<(u64, bool)>,
    queue_suspended: bool,
    ext: u32,
    replies: Vec<u64>,
    events: Vec<i64>,
}

#[derive(Debug, Default)]
struct Model {
    mons: Vec<ModelMon>,
    rr: Vec<usize>,
    inflight: Option<(usize, u64, bool)>,
    throttle: Option<(u64, Option<i64>)>,
    now: u64,
}

const PERIOD: u64 = 1_000_000_000;

impl Model {
    fn lex(&mut self, m: usize) {
        loop {
            let mon = &mut self.mons[m];
            if mon.queue_suspended || mon.ext > 0 {
                return;
            }
            let Some((seq, oob)) = mon.unread.pop_front() else {
                return;
            };
            if oob {
                mon.replies.push(seq);
            } else {
                if !mon.oob || mon.queue.len() + 1 == 8 {
                    mon.queue_suspended = true;
                }
                mon.queue.push_back(seq);
            }
        }
    }

    fn fire(&mut self) {
        if let Some((deadline, pending)) = self.throttle {
            if deadline <= self.now {
                self.throttle = match pending {
                    Some(v) => {
                        self.broadcast(v);
                        Some((self.now + PERIOD, None))
                    }
                    None => None,
                };
            }
        }
    }

    fn broadcast(&mut self, v: i64) {
        for mon in &mut self.mons {
            mon.events.push(v);
        }
    }

    fn event(&mut self, v: i64) {
        match &mut self.throttle {
            Some((_, pending)) => *pending = Some(v),
            None => {
                self.broadcast(v);
                self.throttle = Some((self.now + PERIOD, None));
            }
        }
    }

    fn next(&mut self) {
        if self.inflight.is_some() {
            return;
        }
        let Some(pos) = self.rr.iter().position(|&m| !self.mons[m].queue.is_empty()) else {
            return;
        };
        let m = self.rr.remove(pos);
        self.rr.push(m);
        let mon = &mut self.mons[m];
        let seq = mon.queue.pop_front().unwrap();
        let oob = mon.oob;
        if oob && mon.queue.len() == 7 {
            mon.queue_suspended = false;
            self.lex(m);
        }
        self.inflight = Some((m, seq, !oob));
    }

    fn complete(&mut self) {
        if let Some((m, seq, resume)) = self.inflight.take() {
            self.mons[m].replies.push(seq);
            if resume {
                self.mons[m].queue_suspended = false;
                self.lex(m);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum MAct {
    Send(usize, Vec<bool>),
    Next,
    Complete,
    Event,
    Advance(u32),
    Suspend(usize),
    Resume(usize),
}

fn mact() -> impl Strategy<Value = MAct> {
    prop_oneof![
        3 => (0..3usize, prop::collection::vec(prop::bool::weighted(0.25), 1..6))
            .prop_map(|(m, k)| MAct::Send(m, k)),
        3 => Just(MAct::Next),
        3 => Just(MAct::Complete),
        2 => Just(MAct::Event),
        2 => (0..1_200_000_000u32).prop_map(MAct::Advance),
        1 => (0..3usize).prop_map(MAct::Suspend),
        1 => (0..3usize).prop_map(MAct::Resume),
    ]
}

fn ids_and_events(wire: &[u8]) -> (Vec<u64>, Vec<i64>) {
    let text = String::from_utf8(wire.to_vec()).unwrap();
    let mut ids = Vec::new();
    let mut evs = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.contains("\"event\"") {
            let i = line.find("\"n\": ").unwrap() + 5;
            evs.push(line[i..].trim_end_matches('}').parse().unwrap());
        } else if let Some(i) = line.find("\"id\": ") {
            let rest = &line[i + 6..];
            let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
            ids.push(rest[..end].parse().unwrap());
        }
    }
    (ids, evs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn matches_reference_model(acts in prop::collection::vec(mact(), 0..80)) {
        let mut server = Server::new(Config::default());
        server.register(CommandSpec::new("query-name")).unwrap();
        server.register(CommandSpec::new("query-yank").allow_oob()).unwrap();
        let mut model = Model::default();
        let mut wire: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut now = Instant(0);
        let mut inflight: Option<CallId> = None;
        let oob_of = [true, false, true];
        let drain = |server: &mut Server, now: Instant, wire: &mut BTreeMap<usize, Vec<u8>>, inflight: &mut Option<CallId>| {
            while let Some(o) = server.poll_output() {
                match o {
                    Output::Transmit(m) => {
                        let p = server.pending_output(m).to_vec();
                        wire.entry(m.0 as usize).or_default().extend_from_slice(&p);
                        server.handle(now, Input::Written { monitor: m, n: p.len() }).unwrap();
                    }
                    Output::Call(c) if c.lane == Lane::OutOfBand => {
                        let result = CallResult::Return(Value::Object(Object::new()));
                        server.handle(now, Input::Complete { call: c.id, result }).unwrap();
                    }
                    Output::Call(c) => *inflight = Some(c.id),
                    _ => {}
                }
            }
        };
        for (i, &oob) in oob_of.iter().enumerate() {
            let m = MonitorId(i as u64);
            server.handle(now, Input::Open { monitor: m, options: MonitorOptions { oob_capable: true, pretty: false } }).unwrap();
            let neg: &[u8] = if oob { br#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"# } else { br#"{"execute":"qmp_capabilities"}"# };
            server.handle(now, Input::Receive { monitor: m, bytes: neg.to_vec(), fds: vec![] }).unwrap();
            server.handle(now, Input::NextInBand).unwrap();
            drain(&mut server, now, &mut wire, &mut inflight);
            wire.clear();
            model.mons.push(ModelMon { oob, ..ModelMon::default() });
            // Negotiation moved the monitor to the tail; new ones go to the head.
            model.rr.push(i);
        }
        let mut seq = 0u64;
        let mut ev = 0i64;
        for a in &acts {
            model.now = now.0;
            model.fire();
            let input = match a {
                MAct::Send(m, kinds) => {
                    let mut bytes = Vec::new();
                    for &oob in kinds {
                        seq += 1;
                        let cmd = if oob { "exec-oob\":\"query-yank" } else { "execute\":\"query-name" };
                        bytes.extend_from_slice(format!("{{\"{cmd}\",\"id\":{seq}}}").as_bytes());
                        model.mons[*m].unread.push_back((seq, oob));
                    }
                    model.lex(*m);
                    Input::Receive { monitor: MonitorId(*m as u64), bytes, fds: vec![] }
                }
                MAct::Next => {
                    if inflight.is_some() { continue; }
                    model.next();
                    Input::NextInBand
                }
                MAct::Complete => {
                    let Some(call) = inflight.take() else { continue };
                    model.complete();
                    Input::Complete { call, result: CallResult::Return(Value::Object(Object::new())) }
                }
                MAct::Event => {
                    ev += 1;
                    model.event(ev);
                    Input::Event {
                        name: "RTC_CHANGE".into(),
                        data: server_support::obj(vec![("n", Value::Int(ev))]),
                        timestamp: Timestamp::default(),
                    }
                }
                MAct::Advance(ns) => {
                    now = now.plus_nanos(u64::from(*ns));
                    model.now = now.0;
                    model.fire();
                    Input::Tick
                }
                MAct::Suspend(m) => {
                    model.mons[*m].ext += 1;
                    Input::Suspend { monitor: MonitorId(*m as u64) }
                }
                MAct::Resume(m) => {
                    if model.mons[*m].ext == 0 { continue; }
                    model.mons[*m].ext -= 1;
                    model.lex(*m);
                    Input::Resume { monitor: MonitorId(*m as u64) }
                }
            };
            server.handle(now, input).unwrap();
            drain(&mut server, now, &mut wire, &mut inflight);
            for (i, mm) in model.mons.iter().enumerate() {
                let m = MonitorId(i as u64);
                prop_assert_eq!(server.queue_len(m), mm.queue.len(), "queue of {}", i);
                let expected_count = u32::from(mm.queue_suspended) + mm.ext;
                prop_assert_eq!(server.suspend_count(m), expected_count, "suspend count of {}", i);
                prop_assert_eq!(server.wants_read(m), expected_count == 0);
                let (ids, evs) = ids_and_events(wire.get(&i).map_or(&[][..], |w| &w[..]));
                prop_assert_eq!(&ids, &mm.replies, "replies of {}", i);
                prop_assert_eq!(&evs, &mm.events, "events of {}", i);
            }
            prop_assert_eq!(server.poll_timeout(), model.throttle.map(|(d, _)| Instant(d)));
        }
    }
}
