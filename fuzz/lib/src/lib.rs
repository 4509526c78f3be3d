//! Bodies of qmp-core's (and qmp-driver's) fuzz targets.
//!
//! Each module owns one target: the format of its input, how it drives the core, and the
//! properties it asserts (a failed property panics, which libFuzzer reports as a crash).
//! This crate is plain Rust: the cargo-fuzz binaries in `../fuzz_targets/` only pass
//! libFuzzer's bytes to [`json_stream::run`] and friends, and `cargo test` in this crate
//! replays every committed corpus entry and fixed crash through the same functions, so the
//! bodies are compiled and exercised on every test run. See `FUZZING.md` at the repository root.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cursor;
pub mod driver_facts;
pub mod hmp_bytes;
pub mod json_roundtrip;
pub mod json_stream;
pub mod known;
pub mod scenario;
pub mod server_bytes;
pub mod trace_roundtrip;

/// Names of every target, as used for corpus folders and cargo-fuzz binaries.
pub const TARGETS: [&str; 7] = [
    "json_stream",
    "json_roundtrip",
    "server_bytes",
    "scenario",
    "trace_roundtrip",
    "hmp_bytes",
    "driver_facts",
];

/// Run the body of the target called `name` on `data`; `false` when no such target exists.
pub fn run_target(name: &str, data: &[u8]) -> bool {
    match name {
        "json_stream" => json_stream::run(data),
        "json_roundtrip" => json_roundtrip::run(data),
        "server_bytes" => server_bytes::run(data),
        "scenario" => scenario::run(data),
        "trace_roundtrip" => trace_roundtrip::run(data),
        "hmp_bytes" => hmp_bytes::run(data),
        "driver_facts" => driver_facts::run(data),
        _ => return false,
    }
    true
}
