//! qmp-sim: deterministic simulation testing of `qmp-core`.
//!
//! One `u64` seed (or a 40-hex commit hash) determines a whole world ([`options::Options`],
//! swarm testing: each seed picks its own features and fault rates): simulated clients of both
//! dialects ([`client`]), their network (reads split down to one byte, short and zero writes,
//! readers that stall), the main loop's dispatcher with a handler latency distribution and the
//! blocking `x-oob-test` pair, external suspend/resume, event bursts with and without throttle
//! keys, a monotonic virtual clock and a drifting, jumping wall clock, passed descriptors and
//! fd sets with the VM stopping and continuing, and small output and input limits in some
//! worlds ([`world::World`]). The loop always jumps to the earliest pending action.
//!
//! Oracles, after every input: the reference model ([`model`], [`events`]: exact reply bytes
//! per request, lanes and order, events per negotiated monitor, `COMMAND_DROPPED` attribution),
//! the dispatcher's round robin, queue length, suspend count and `wants_read`, output after
//! close, call/lane consistency, descriptor accounting, named fds kept by a monitor across
//! its connections, the fd sets ([`fdsets`]: `add-fd`/`remove-fd`/`query-fdsets` replies and
//! the descriptors closed at each monitor close, by run state), limit disconnects, output
//! validity and a memory bound. Every coverage mark of the core must be reached by the
//! bounded run (`tests/sim.rs`); a mark the swarm cannot reach is a hole in the swarm.
//! Then a liveness phase (faults off, bounded virtual time, quiescence required, pending work
//! named) and, for a share of seeds, a determinism re-run comparing the core's digest.
//!
//! Human monitors (HMP): in one world in three, one or two people type at human monitors
//! beside the QMP clients ([`hmp_people`]: whole lines and pieces, editing keys, history,
//! tab, CR/LF/CRLF, the machine's commands from [`hmp_registry`] and the core's, mistakes),
//! some worlds in the preconfig phase. Their output is checked against an independent
//! line-editor model ([`hmp_model`], [`hmp_screen`]): the screen line when Enter is pressed,
//! each line's output (exact texts) printed once, during the dispatcher's turn or its call's
//! completion, each HMP call once and in order, no events, CR LF line ends, one line queued,
//! the suspend count; the in-band one-at-a-time rule holds across both kinds of monitor.
//!
//! The driver world ([`driver_world`]) runs the same clients one layer up: the system under test
//! is the connection driver (`qmp-driver`: reads, EOF, resets, accept policy, descriptors,
//! handler sessions) over simulated sockets with their faults ([`sockets`]), the world acting
//! as its adapter; its oracles check every client's replies and the connection lifecycle (a
//! closed peer cleaned up within a bound, the next client served, each descriptor closed
//! exactly once). `qmp-sim run` runs both worlds for every seed (`--worlds`).
//!
//! Entry points: the `qmp-sim` CLI (`run`, `replay`, `shrink`, `planted`), [`runner`] and
//! [`driver_world::run_driver_seed`] for tests, and [`check`] (intent-free invariants over any
//! input list) for fuzz targets.
//!
//! # Known deviations and gaps
//!
//! - Each client's connections reuse its monitor, as clients of one QEMU chardev do: named
//!   fds outlive the connection ([`model::NameState`]; a name whose `getfd`/`closefd` had no
//!   reply seen before the close is unknown until a later `getfd`), capabilities do not, and a
//!   call of the previous connection may still run when the next one opens (its reply goes
//!   nowhere: QEMU would deliver it to whichever client is connected then, a race the model
//!   does not describe). The world ends by destroying every monitor (process exit), which
//!   closes the named fds.
//! - Not simulated: `-compat` policies, 64 MiB tokens; preconfig only in worlds with human
//!   monitors (below), and without fd sets or run-state changes there. Input-limit
//!   disconnects come only from one read's leftover after a suspension (the world reads only
//!   while `wants_read`), so only worlds with the small limit (128 bytes) reach them.
//! - Fd sets only in worlds with the default limits and not on 2.12 connections with OOB on: a
//!   request queued on a monitor the core gave up on, or dropped with `COMMAND_DROPPED`, may
//!   or may not run, which would leave the global sets unknown. `add-fd` without a descriptor
//!   only in worlds that pass no stray descriptors, and none are passed while an `add-fd` is
//!   due (the pending descriptor is the one it must claim). The VM's stop/cont is an input
//!   (`SetRunState`), not the `stop`/`cont` commands. At exit a stopped VM continues and the
//!   last close releases the sets (QEMU leaves them to the process exit). 2.12 JSON errors are limited to lexical errors and
//!   non-objects (2.12 parser texts are not simulated).
//! - HMP: a preconfig world stays in preconfig (its QMP clients pass no descriptors); not
//!   simulated are `human-monitor-command`, HMP in driver worlds, descriptors passed to human
//!   monitors (`getfd` is typed without one) and HMP commands that suspend their monitor.
//! - Human monitors: an external suspension is applied only while the person is idle (the
//!   resume restarts the line and prints the prompt, which the model places there); after a
//!   connection ended with typed keys the monitor may not have read, the history is unknown
//!   to the model (no more Up/Down, `info history` not compared); tab is typed only on a
//!   line of one word with the cursor at its end.
//! - Shrinking minimises under the intent-free checks only; failures that only the reference
//!   model sees are reproduced from their seed instead. Driver worlds have no trace or
//!   shrinking: a failing one is reproduced from its seed (`--worlds driver`).
//! - Driver worlds have one listener, no events, no external suspension and no yank; a client
//!   whose `getfd` descriptor the kernel cut (MSG_CTRUNC) is no longer checked against the
//!   model and leaves (its reply changes in a way the client model does not describe).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod client;
pub mod driver_world;
pub mod events;
pub mod failure;
pub mod fdsets;
pub mod hmp_model;
pub mod hmp_people;
pub mod hmp_registry;
pub mod hmp_screen;
pub mod invariants;
pub mod model;
pub mod options;
pub mod planted;
pub mod registry;
pub mod runner;
pub mod server;
pub mod shrink;
pub mod sockets;
pub mod sut;
pub mod trace;
pub mod wire;
pub mod world;
