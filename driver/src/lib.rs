//! qmp-driver: the layer between the sans-IO [`qmp_core`] server and any runtime.
//!
//! ```text
//! core (protocol)  <-  driver (connections, fds, recorder, handlers)  <-  adapters (std threads | poll | sim)
//! ```
//!
//! The [`Driver`] has no threads and no sockets. It owns the core, the fd table, the recorder,
//! the listeners' accept policy and **every connection's lifecycle**: when to read, what a short
//! read, EOF, a reset, EINTR or cut descriptors mean, when a write blocked, when a client is cut
//! (the core's per-client limits, the process-wide output budget), shutdown. An adapter
//! performs the syscalls the driver asks for and reports what they returned (*socket facts*);
//! it decides nothing a test on a real socket alone could catch. The simulator drives the same
//! driver through simulated sockets, so every lifecycle rule here is simulated.
//!
//! # Driving it (quinn/str0m style)
//!
//! 1. Report one fact or input with a `handle_*` method (or a mutator such as
//!    [`Driver::emit_event`], [`Driver::complete`]), with `now` (clamped: never behind an
//!    earlier input's).
//! 2. Then do what it asks, in this order: run out-of-band calls at once
//!    ([`Driver::take_oob_call`], complete each with [`Driver::complete`]) before reading any
//!    further; carry out every [`Driver::poll_action`] (close sockets and descriptors, outside
//!    any lock; tell [`Registry::session_closed`]); write the connections of
//!    [`Driver::next_transmit`] and report [`WriteFact`]s; read every connection for which
//!    [`Driver::should_read`] holds and report [`ReadFact`]s; accept while
//!    [`Driver::should_accept`] holds.
//! 3. In-band calls ([`Driver::next_in_band`]) run one at a time, on another thread or in the
//!    same loop; the driver never runs a handler itself.
//! 4. Sleep until socket readiness ([`Driver::handle_readable`], [`Driver::handle_writable`],
//!    [`Driver::handle_listener_ready`]) or [`Driver::poll_timeout`] ([`Driver::handle_timeout`]).
//!
//! `examples/poll_loop.rs` (qmp-io) is a complete single-threaded embedding on `poll(2)`.
//!
//! A human monitor on the process's standard input and output (QEMU's `-monitor stdio`) is a
//! connection no listener accepts: [`Driver::open_stdio_monitor`] opens it, and the adapter
//! reads its input from one descriptor and writes its output to another, reporting the same
//! facts; EOF on its input ends the input only (module `driver::stdio` has its rules).
//!
//! # Simulating it
//!
//! `Driver<F>` is generic over the descriptor type ([`Descriptor`]): a simulator passes its own
//! descriptors and checks that each comes back exactly once ([`Action::CloseFd`], or
//! [`Driver::finish`]). Every fault is a fact: [`ReadFact`] (short reads, data then EOF, EOF
//! alone, reset, would-block, EINTR, `fds_cut` for MSG_CTRUNC), [`WriteFact`] (partial writes,
//! would-block, errors), [`AcceptFact`] (EMFILE is `OutOfResources`). With the feature
//! `planted` (never enabled by qmpd): `Driver::plant` with `Planted::LostEof` (a short read
//! taken for "drained") and `demo::Machine::plant_lock_outlives_holder` (`x-oob-test`'s lock
//! not let go when its holder disconnects).
//!
//! # Handlers
//!
//! Handlers see a [`CallContext`] over the adapter's [`Control`] (emit an event, set the run
//! state, request shutdown, yank, whether their session is open, take a named fd, add a
//! client to a chardev), never a runtime's internals,
//! so the same [`Registry`] runs on every adapter.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conn;
pub mod control;
pub mod demo;
pub mod driver;
pub mod fds;
pub mod listener;
pub mod qapi;
pub mod record;
pub mod registry;

#[cfg(test)]
mod stdio_tests;
#[cfg(test)]
mod tests;

pub use conn::{CloseReason, ConnId, ConnStats, ReadFact, WriteFact};
pub use control::{AddClient, CallContext, Control, TakenFd};
#[cfg(feature = "planted")]
pub use driver::Planted;
pub use driver::{
    Action, Driver, DriverStats, Limits, SessionCall, ShutdownCause, ShutdownState,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_OUTPUT_BUDGET,
};
pub use fds::{Descriptor, FdLimits, FdTable, Refusal};
pub use listener::{AcceptFact, ListenerConfig};
pub use record::TraceSink;
pub use registry::{
    block_on, AsyncHandler, CallFuture, Handler, HandlerCache, Registry, SessionHook, Started,
};
