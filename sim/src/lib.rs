//! qmp-sim: deterministic simulation testing of `qmp-core`.
//!
//! One `u64` seed determines a whole world ([`options::Options`]): simulated clients of both
//! dialects, their network, the main loop's dispatcher and handlers, event sources, clocks and
//! descriptors ([`world::World`]). After every input the world compares what each client
//! observes with an independent reference model ([`model`], [`events`], [`client`]) and checks
//! the core's invariants; then a liveness phase requires quiescence. The CLI (`qmp-sim`) runs
//! seeds, replays traces and shrinks failing ones; [`check`] is the entry point for fuzz targets.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod client;
pub mod events;
pub mod failure;
pub mod model;
pub mod options;
pub mod planted;
pub mod registry;
pub mod runner;
pub mod server;
pub mod shrink;
pub mod sut;
pub mod trace;
pub mod wire;
pub mod world;
