//! qmp-io: real sockets and threads around the sans-IO [`qmp_core`] server, and `qmpd`, a demo
//! QMP daemon.
//!
//! # Shape (ARCHITECTURE.md, "Concurrency in the shim")
//!
//! * **One IO thread** owns every socket (mio). It accepts clients (one at a time per listener
//!   unless `clients=N`, like a QEMU socket chardev), reads only while the core
//!   [`wants_read`](qmp_core::server::Server::wants_read), passes SCM_RIGHTS descriptors as fd
//!   ids, runs out-of-band handlers at once, writes pending output (partial writes and EAGAIN
//!   included) and ticks the core's timers.
//! * **One dispatcher thread** runs in-band handlers one at a time, and writes the replies of
//!   each batch of them itself, as QEMU writes a reply from the thread that produced it (every
//!   write is made under the lock; see [`writer`]).
//! * The core sits behind **one lock** ([`shared::Shared`]); no handler runs and no descriptor
//!   is closed while it is held. Completing an in-band call wakes the IO thread. The locking
//!   and wake-up code lives in [`shared`] over the [`sync`] facade, so loom can model it.
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

pub mod clock;
pub mod conn;
pub mod demo;
pub mod dispatcher;
pub mod fds;
mod io_thread;
pub mod listen;
pub mod qapi;
pub mod reader;
pub mod record;
pub mod registry;
pub mod scm;
pub mod server;
pub mod shared;
pub mod sync;
pub mod typed;
pub mod writer;

pub use listen::{Address, ListenSpec};
pub use record::TraceSink;
pub use registry::{CallContext, Handler, Registry};
pub use server::{QmpServer, QmpServerBuilder, RunningServer, ServerHandle};
pub use typed::TypedCommands;
