//! loom models of qmp-io's locking and wake-up protocol.
//!
//! The models (in `tests/models.rs`) drive the shim's real [`qmp_io::shared::Shared`] — its
//! lock (and its spin-then-block `sync::lock`), the dispatcher's condition variable, `apply`,
//! `next_in_band` (with its spin), `complete_in_band`, `complete_and_next` (with the batch-end
//! write), `io_spin`, `emit_event`, `stop`, `writer`'s `flush_locked` / `writable_again`, and
//! `reader`'s read token —
//! compiled against loom's primitives through `qmp_io::sync`. This crate only adds what stands
//! in for the operating system: a waker that models the IO thread's `poll` sleep
//! (`harness::ModelWaker`, compiled only under `cfg(loom)`), a fixed clock, in-memory sockets
//! (`harness::ModelSocket`: bounded, refusing writes when full, with writable edges), and the
//! few lines of the IO thread's loop that touch a socket (which cannot run under loom).
//!
//! Everything is behind `cfg(loom)`: run with `make loom` (`loom-tests/run.sh`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(loom)]
pub mod harness;
