//! JSON layer throughput (issue 2 "Speed"): framing + parsing of small requests, a 300-byte
//! `blockdev-add`-like object, a message carrying a 1 MiB string, and the writer.
//! Run: `cargo bench -p qmp-core --bench json`; figures go to BENCHMARKS.md.
//!
//! On a shared, loaded machine wall-clock medians wander; for a load-independent figure the
//! same binary runs one workload a fixed number of times when `QMP_JSON_PROFILE=<workload>:<n>`
//! is set (workloads: `small` = 1000 requests, `blockdev` = 100 objects of 312 bytes, `big` =
//! one 1 MiB string message, `write` = 1000 responses, `echo` = 1000 writes of the parsed
//! `blockdev-add` object), e.g. under
//! `valgrind --tool=callgrind` (instructions) or `/usr/bin/time` (CPU seconds).

use criterion::{black_box, criterion_group, Criterion, Throughput};
use qmp_core::json::{
    parse_value, write_message, JsonLimits, JsonStreamer, Object, StreamItem, Value,
};

/// Feed `input` completely, popping every message; returns the number of values.
fn drain(s: &mut JsonStreamer, input: &[u8]) -> usize {
    let mut rest = input;
    let mut n = 0;
    while !rest.is_empty() {
        let used = s.feed(rest);
        rest = &rest[used..];
        while let Some(item) = s.pop() {
            if let StreamItem::Value(v) = item {
                black_box(&v);
                n += 1;
            }
        }
    }
    n
}

const BLOCKDEV_ADD: &str = r#"{"execute": "blockdev-add", "arguments": {"driver": "qcow2", "node-name": "disk0", "discard": "unmap", "cache": {"direct": true, "no-flush": false}, "file": {"driver": "file", "filename": "/var/lib/libvirt/images/guest-disk-0.qcow2", "aio": "native", "locking": "auto"}, "read-only": false}, "id": "libvirt-42"}"#;

fn parse_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");

    let count = 1000;
    let small = small_input();
    g.throughput(Throughput::Elements(count as u64));
    g.bench_function("small_requests_x1000", |b| {
        let mut s = JsonStreamer::new(JsonLimits::default());
        b.iter(|| assert_eq!(drain(&mut s, black_box(&small)), count))
    });

    let blockdev: Vec<u8> = (0..100).flat_map(|_| BLOCKDEV_ADD.bytes()).collect();
    g.throughput(Throughput::Bytes(blockdev.len() as u64));
    g.bench_function("blockdev_add_300B_x100", |b| {
        let mut s = JsonStreamer::new(JsonLimits::default());
        b.iter(|| assert_eq!(drain(&mut s, black_box(&blockdev)), 100))
    });

    let mut big = b"{\"execute\":\"query-name\",\"id\":\"".to_vec();
    big.resize(big.len() + (1 << 20), b'x');
    big.extend_from_slice(b"\"}");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("string_1MiB", |b| {
        let mut s = JsonStreamer::new(JsonLimits::default());
        b.iter(|| assert_eq!(drain(&mut s, black_box(&big)), 1))
    });
    g.finish();
}

fn writer_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("write");
    let responses: Vec<Value> = (0..1000).map(query_status_response).collect();
    g.throughput(Throughput::Elements(responses.len() as u64));
    g.bench_function("query_status_response_x1000", |b| {
        let mut out = Vec::with_capacity(1 << 17);
        b.iter(|| {
            out.clear();
            for r in &responses {
                write_message(black_box(r), false, &mut out);
            }
            black_box(out.len())
        })
    });
    let blockdev = parse_value(BLOCKDEV_ADD.as_bytes()).expect("valid");
    g.throughput(Throughput::Elements(1));
    g.bench_function("blockdev_add_echo", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            write_message(black_box(&blockdev), false, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn small_input() -> Vec<u8> {
    (0..1000)
        .flat_map(|i| format!("{{\"execute\":\"query-status\",\"id\":{i}}}").into_bytes())
        .collect()
}

fn query_status_response(id: i64) -> Value {
    let mut status = Object::new();
    status.insert("status", Value::from("running"));
    status.insert("singlestep", Value::Bool(false));
    status.insert("running", Value::Bool(true));
    let mut r = Object::new();
    r.insert("return", Value::Object(status));
    r.insert("id", Value::Int(id));
    Value::Object(r)
}

/// Run one workload `n` times without criterion (see the module docs).
fn profile(spec: &str) {
    let (name, n) = spec.split_once(':').unwrap_or((spec, "100"));
    let n: usize = n.parse().unwrap_or(100);
    let mut s = JsonStreamer::new(JsonLimits::default());
    match name {
        "small" => {
            let input = small_input();
            for _ in 0..n {
                assert_eq!(drain(&mut s, &input), 1000);
            }
        }
        "blockdev" => {
            let input: Vec<u8> = (0..100).flat_map(|_| BLOCKDEV_ADD.bytes()).collect();
            for _ in 0..n {
                assert_eq!(drain(&mut s, &input), 100);
            }
        }
        "big" => {
            let mut input = b"{\"execute\":\"query-name\",\"id\":\"".to_vec();
            input.resize(input.len() + (1 << 20), b'x');
            input.extend_from_slice(b"\"}");
            for _ in 0..n {
                assert_eq!(drain(&mut s, &input), 1);
            }
        }
        "write" => {
            let responses: Vec<Value> = (0..1000).map(query_status_response).collect();
            let mut out = Vec::with_capacity(1 << 17);
            for _ in 0..n {
                out.clear();
                for r in &responses {
                    write_message(black_box(r), false, &mut out);
                }
                black_box(out.len());
            }
        }
        "echo" => {
            let v = parse_value(BLOCKDEV_ADD.as_bytes()).expect("valid");
            let mut out = Vec::with_capacity(1024);
            for _ in 0..n * 1000 {
                out.clear();
                write_message(black_box(&v), false, &mut out);
                black_box(out.len());
            }
        }
        other => panic!("unknown workload {other}"),
    }
}

criterion_group!(benches, parse_benches, writer_benches);

fn main() {
    if let Ok(spec) = std::env::var("QMP_JSON_PROFILE") {
        profile(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
