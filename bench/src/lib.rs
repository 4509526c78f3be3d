//! qmp-bench: a client benchmark tool that drives any QMP server (qmpd, QEMU 7.2) on Unix
//! sockets and reports throughput, latency, event fan-out and idle memory.
//!
//! The client side is deliberately plain so that it is never the bottleneck: std Unix
//! sockets, blocking IO, requests serialised once before the measuring loop, one thread per
//! connection only where a mode needs concurrency. Every loop is bounded by a time limit and
//! an operation count, and every socket call by a timeout ([`opts::Opts`]).
//!
//! `bench/run.sh` (`make bench`) runs every mode against qmpd and QEMU 7.2 in alternation and
//! prints the comparison of [`report::compare`]; [`floor`] is the cheapest possible server,
//! run alongside to show the ceiling of the machine and client.

#![forbid(unsafe_code)]

pub mod client;
pub mod cpu;
pub mod floor;
pub mod modes;
pub mod opts;
pub mod report;
pub mod stats;

pub use modes::run;
pub use opts::{Mode, OobMethod, Opts};
pub use stats::Outcome;
