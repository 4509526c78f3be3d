//! Event throughput against the number of running throttle periods (issue 21): one negotiated
//! monitor, then 1, 10,000 or 100,000 distinct `VSERPORT_CHANGE` ids each holding a period
//! open, then `STOP` events (not throttled) written out one by one. Every input first checks the
//! throttle's earliest deadline, so this shows what that check costs per input as keys pile
//! up; the two figures of one run side by side give the ratio.
//!
//! Run: `cargo bench -p qmp-core --bench throttle`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use qmp_core::json::{Object, Value};
use qmp_core::server::*;

const TS: Timestamp = Timestamp {
    seconds: 1_795_610_467,
    microseconds: 629_642,
};

fn write_all(server: &mut Server, now: Instant) -> usize {
    let mut written = 0;
    while let Some(o) = server.poll_output() {
        if let Output::Transmit(m) = o {
            let n = server.pending_output(m).len();
            written += n;
            server
                .handle(now, Input::Written { monitor: m, n })
                .unwrap();
        }
    }
    written
}

/// A server with one negotiated monitor and `keys` throttle periods running from t=0.
fn server_with_keys(keys: usize) -> Server {
    let mut server = Server::new(Config::default());
    let m = MonitorId(1);
    let now = Instant(0);
    server
        .handle(
            now,
            Input::Open {
                monitor: m,
                options: MonitorOptions {
                    oob_capable: false,
                    pretty: false,
                },
            },
        )
        .unwrap();
    server
        .handle(
            now,
            Input::Receive {
                monitor: m,
                bytes: b"{\"execute\":\"qmp_capabilities\"}".to_vec(),
                fds: vec![],
            },
        )
        .unwrap();
    while server.dispatcher_ready() {
        server.handle(now, Input::NextInBand).unwrap();
    }
    write_all(&mut server, now);
    for i in 0..keys {
        let mut data = Object::new();
        data.insert("id", Value::string(format!("port{i}").as_str()));
        data.insert("open", Value::Bool(true));
        server
            .handle(
                now,
                Input::Event {
                    name: "VSERPORT_CHANGE".into(),
                    data,
                    timestamp: TS,
                },
            )
            .unwrap();
        write_all(&mut server, now);
    }
    assert_eq!(server.throttle_states(), keys);
    server
}

fn events(c: &mut Criterion) {
    let mut g = c.benchmark_group("throttle");
    g.throughput(Throughput::Elements(1));
    for keys in [1usize, 10_000, 100_000] {
        let mut server = server_with_keys(keys);
        // Inside every period (1 s): no timer is due, only checked.
        let now = Instant(1_000_000);
        g.bench_with_input(
            BenchmarkId::new("stop_event_with_keys", keys),
            &keys,
            |b, _| {
                b.iter(|| {
                    server
                        .handle(
                            now,
                            Input::Event {
                                name: "STOP".into(),
                                data: Object::new(),
                                timestamp: TS,
                            },
                        )
                        .unwrap();
                    black_box(write_all(&mut server, now))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
