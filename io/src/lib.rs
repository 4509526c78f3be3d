//! qmp-io: the std adapter of [`qmp_driver`] (real sockets and threads, as QEMU has them), the
//! tokio adapter (module `tokio`, feature `tokio`: the same monitor as one task of an async
//! application, with async in-band handlers) and `qmpd`, a demo QMP daemon on either
//! (`--runtime std|tokio`).
//!
//! Every protocol decision is the core's ([`qmp_core`]) and every connection-lifecycle decision
//! (when to read, what EOF or a reset means, fds, output budgets, accept policy, shutdown) is
//! the driver's ([`qmp_driver::Driver`]); this crate performs syscalls, reports what they
//! returned, and runs handlers on the right thread.
//!
//! # Threads
//!
//! * **The IO thread** ([`io_thread`]) owns every socket (mio): it accepts, reads while the
//!   driver says so, runs out-of-band handlers at once, writes pending output (partial writes
//!   and EAGAIN included), ticks timers and drops the sockets of closed connections.
//! * **The dispatcher thread** ([`dispatcher`]) runs in-band handlers one at a time and writes
//!   the replies of each run of calls of one connection itself; while it waits for more work it
//!   reads the connection it just answered ([`reader`]).
//! * The driver sits behind **one lock** ([`shared::Shared`]); no handler runs and no
//!   descriptor is closed while it is held. The wake-up protocol lives in [`shared`] and
//!   [`dispatcher`] over the [`sync`] facade, so loom models the real code. Speed knobs are
//!   all in [`tuning`].
//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | [`builder`] | the builder both adapters share (each setter once) |
//! | [`server`] | the std adapter's embedding API: build, running server, handle |
//! | [`shared`] | the lock, the locked state, who wakes whom |
//! | [`dispatcher`] | the in-band lane: wait, spin, runs of calls |
//! | [`io_thread`] | sockets: accept, read, write, close, shutdown |
//! | [`reader`] | the read token and the dispatcher's reads |
//! | [`writer`] | writing a connection's output under the lock |
//! | [`conn`] | a connection's socket and the read routine |
//! | [`listen`] | listener specs and binding (Unix 0600 from the start) |
//! | [`scm`] | SCM_RIGHTS reads |
//! | [`stdio`] | standard input and output as a monitor connection (`-monitor stdio`) |
//! | [`record`] | `--record` trace files |
//! | [`clock`] | the clocks |
//! | [`tuning`] | spins, batching and chunk sizes |
//! | [`sync`] | std or loom primitives |
//! | `tokio` | the tokio adapter (feature `tokio`): builder, event loop task, sockets |
//!
//! # Embedding
//!
//! ```
//! use qmp_core::json::{Object, Value};
//! use qmp_core::server::{CallResult, CommandSpec, Config};
//! use qmp_io::{ListenSpec, QmpServerBuilder};
//!
//! # fn main() -> std::io::Result<()> {
//! let dir = std::env::temp_dir().join(format!("qmp-io-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let spec = CommandSpec::new("query-answer");
//! let server = QmpServerBuilder::new(Config::default())
//!     .listen(ListenSpec::unix(dir.join("qmp.sock")))
//!     .command(spec, |_args: &Object| CallResult::Return(Value::Int(42)))
//!     .build()?
//!     .spawn()?;
//! // Events can be emitted from any thread.
//! server.handle().emit_event("POWERDOWN", Object::new());
//! server.shutdown()?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod builder;
pub mod clock;
pub mod conn;
pub mod dispatcher;
pub mod io_thread;
pub mod listen;
pub mod qapi;
pub mod reader;
pub mod record;
pub mod scm;
pub mod server;
pub mod shared;
pub mod stdio;
pub mod sync;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod tuning;
pub mod typed;
pub mod writer;

#[cfg(all(test, not(loom)))]
mod tests;

pub use builder::Builder;
pub use listen::{Address, ListenSpec};
pub use qmp_driver::demo;
pub use qmp_driver::{CallContext, Handler, Registry, TraceSink};
pub use server::{QmpServer, QmpServerBuilder, RunningServer, ServerHandle, StdOptions};
pub use typed::TypedCommands;
