//! Server core benchmarks (issue 3): bytes in to reply bytes out for pipelined
//! `query-status`-sized requests on an OOB session with a trivial handler, event fan-out to 100
//! negotiated monitors, and the memory of an idle negotiated monitor (printed, not timed).
//!
//! Run: `cargo bench -p qmp-core --bench server`. For load-independent instruction counts the
//! same binary runs one workload a fixed number of times when `QMP_SERVER_PROFILE=<workload>:<n>`
//! is set (see `profile`), e.g. under `valgrind --tool=callgrind`.

use criterion::{black_box, criterion_group, Criterion, Throughput};
use qmp_core::json::{Object, Value};
use qmp_core::server::*;

const BATCH: usize = 1000;

fn status() -> Value {
    let mut o = Object::new();
    o.insert("running", Value::Bool(true));
    o.insert("singlestep", Value::Bool(false));
    o.insert("status", Value::string("running"));
    Value::Object(o)
}

/// Drain outputs: write everything, complete OOB calls at once; return the in-band call.
fn drain(server: &mut Server, now: Instant, written: &mut usize) -> Option<Call> {
    let mut inband = None;
    while let Some(o) = server.poll_output() {
        match o {
            Output::Transmit(m) => {
                let n = server.pending_output(m).len();
                *written += n;
                server
                    .handle(now, Input::Written { monitor: m, n })
                    .unwrap();
            }
            Output::Call(c) if c.lane == Lane::InBand => inband = Some(c),
            Output::Call(c) => server
                .handle(
                    now,
                    Input::Complete {
                        call: c.id,
                        result: CallResult::Return(status()),
                    },
                )
                .unwrap(),
            _ => {}
        }
    }
    inband
}

fn negotiated(server: &mut Server, id: u64, oob: bool) -> MonitorId {
    let m = MonitorId(id);
    let now = Instant(0);
    server
        .handle(
            now,
            Input::Open {
                monitor: m,
                options: MonitorOptions {
                    oob_capable: true,
                    pretty: false,
                },
            },
        )
        .unwrap();
    let req: &[u8] = if oob {
        br#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#
    } else {
        br#"{"execute": "qmp_capabilities"}"#
    };
    server
        .handle(
            now,
            Input::Receive {
                monitor: m,
                bytes: req.to_vec(),
                fds: vec![],
            },
        )
        .unwrap();
    server.handle(now, Input::NextInBand).unwrap();
    let mut w = 0;
    drain(server, now, &mut w);
    m
}

fn request_batch() -> Vec<u8> {
    (0..BATCH)
        .flat_map(|i| format!("{{\"execute\": \"query-status\", \"id\": {i}}}\n").into_bytes())
        .collect()
}

/// One batch of pipelined requests from bytes in to reply bytes out; returns bytes written.
fn pipeline_once(server: &mut Server, m: MonitorId, batch: &[u8]) -> usize {
    let now = Instant(0);
    let mut written = 0usize;
    server
        .handle(
            now,
            Input::Receive {
                monitor: m,
                bytes: batch.to_vec(),
                fds: vec![],
            },
        )
        .unwrap();
    drain(server, now, &mut written);
    while server.dispatcher_ready() {
        server.handle(now, Input::NextInBand).unwrap();
        if let Some(call) = drain(server, now, &mut written) {
            server
                .handle(
                    now,
                    Input::Complete {
                        call: call.id,
                        result: CallResult::Return(status()),
                    },
                )
                .unwrap();
            drain(server, now, &mut written);
        }
    }
    written
}

fn pipelined(c: &mut Criterion) {
    let mut server = Server::new(Config::default());
    server.register(CommandSpec::new("query-status")).unwrap();
    let m = negotiated(&mut server, 1, true);
    let batch = request_batch();
    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("pipelined_query_status_oob_1000", |b| {
        b.iter(|| black_box(pipeline_once(&mut server, m, &batch)))
    });
    g.finish();
}

fn fanout_server() -> Server {
    let mut server = Server::new(Config::default());
    for i in 0..100 {
        negotiated(&mut server, i, i % 2 == 0);
    }
    server
}

/// One event to every monitor, written out; returns bytes written.
fn event_once(server: &mut Server) -> usize {
    let now = Instant(0);
    let mut written = 0usize;
    server
        .handle(
            now,
            Input::Event {
                name: "STOP".into(),
                data: Object::new(),
                timestamp: Timestamp {
                    seconds: 1_795_610_467,
                    microseconds: 629_642,
                },
            },
        )
        .unwrap();
    drain(server, now, &mut written);
    written
}

fn fanout(c: &mut Criterion) {
    let mut server = fanout_server();
    let mut g = c.benchmark_group("server");
    g.throughput(Throughput::Elements(1));
    g.bench_function("event_fanout_100_monitors", |b| {
        b.iter(|| black_box(event_once(&mut server)))
    });
    g.finish();
}

fn memory(_c: &mut Criterion) {
    let mut server = Server::new(Config::default());
    let base = server.memory_estimate();
    let m = negotiated(&mut server, 1, true);
    let mut more = Server::new(Config::default());
    for i in 0..100 {
        negotiated(&mut more, i, true);
    }
    println!(
        "memory: idle negotiated monitor = {} bytes (monitor_memory_estimate); server growth \
         for one = {} bytes; 100 monitors = {} bytes total",
        server.monitor_memory_estimate(m),
        server.memory_estimate() - base,
        more.memory_estimate()
    );
}

/// CPU time of this thread, in nanoseconds (immune to other processes on a shared machine).
fn cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Run `f` (doing `per_call` operations) for about 2 s of thread CPU time; print ops/s.
/// The clock is read once per batch of calls (a thread-CPU clock read is a system call).
fn cpu_rate(name: &str, per_call: u64, mut f: impl FnMut()) {
    let t = cpu_ns();
    let mut warm = 0u64;
    while cpu_ns() - t < 100_000_000 {
        f();
        warm += 1;
    }
    // Calls per batch: about 1 ms of work.
    let batch = (warm / 100).max(1);
    let start = cpu_ns();
    let mut calls = 0u64;
    while cpu_ns() - start < 2_000_000_000 {
        for _ in 0..batch {
            f();
        }
        calls += batch;
    }
    let ns = cpu_ns() - start;
    println!(
        "cpu-time: {name}: {:.0} ops/s ({:.1} ns/op over {} ops)",
        (calls * per_call) as f64 * 1e9 / ns as f64,
        ns as f64 / (calls * per_call) as f64,
        calls * per_call
    );
}

fn cpu_time(_c: &mut Criterion) {
    let mut server = Server::new(Config::default());
    server.register(CommandSpec::new("query-status")).unwrap();
    let m = negotiated(&mut server, 1, true);
    let batch = request_batch();
    cpu_rate("pipelined_query_status_oob", BATCH as u64, || {
        black_box(pipeline_once(&mut server, m, &batch));
    });
    let mut server = fanout_server();
    cpu_rate("event_fanout_100_monitors", 1, || {
        black_box(event_once(&mut server));
    });
}

criterion_group!(benches, pipelined, fanout, memory, cpu_time);

/// Run one workload `n` times without criterion, for callgrind's instruction counts:
/// `QMP_SERVER_PROFILE=pipelined:<n>` (batches of 1000 requests) or `fanout:<n>` (events).
fn profile(spec: &str) {
    let (name, n) = spec.split_once(':').unwrap_or((spec, "10"));
    let n: usize = n.parse().unwrap_or(10);
    match name {
        "pipelined" => {
            let mut server = Server::new(Config::default());
            server.register(CommandSpec::new("query-status")).unwrap();
            let m = negotiated(&mut server, 1, true);
            let batch = request_batch();
            for _ in 0..n {
                black_box(pipeline_once(&mut server, m, &batch));
            }
        }
        "fanout" => {
            let mut server = fanout_server();
            for _ in 0..n {
                black_box(event_once(&mut server));
            }
        }
        other => panic!("unknown workload {other}"),
    }
}

fn main() {
    if let Ok(spec) = std::env::var("QMP_SERVER_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
