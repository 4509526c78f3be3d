//! The tokio adapter: the same monitor inside an async application (feature `tokio`, on by
//! default; `default-features = false` keeps tokio out of a std-only build).
//!
//! A thin layer over the [`qmp_driver::Driver`], like the std adapter: one task (the future
//! [`TokioServer::run`] returns) owns the driver and every socket, reports each read, write
//! and accept to the driver as a socket fact, and does what the driver says; it decides
//! nothing about protocol or a connection's life. Listeners are bound by the same code as the
//! std adapter's ([`crate::listen::bind`]: loopback only unless allowed, Unix sockets 0600),
//! descriptors come with reads over SCM_RIGHTS ([`crate::scm`]), traces are recorded by the
//! same sinks ([`crate::record`]).
//!
//! # Handlers
//!
//! The same [`qmp_driver::Registry`] as the std adapter, so the demo machine and any embedder's commands
//! run unchanged. Where they run:
//!
//! * **async handlers** ([`TokioServerBuilder::async_command`]): the in-band call's future is
//!   polled by the loop task, on the runtime. While it awaits, the core's rules hold as with a
//!   blocking handler on the std adapter: no other in-band call starts, each monitor's queue
//!   still holds at most 8 requests (a full queue suspends reading it), and out-of-band calls
//!   run at once and answer first. An async handler may use anything of the runtime (timers,
//!   sockets, channels, `tokio::spawn`).
//! * **synchronous handlers** ([`Builder::command`], typed ones from
//!   [`crate::TypedCommands`]) run in-band on tokio's blocking pool by default
//!   ([`SyncHandlers::Blocking`]), one at a time, as the std adapter's dispatcher thread runs
//!   them: one may block while the loop goes on serving (out-of-band calls answer, events go
//!   out). [`SyncHandlers::Inline`] runs them in the loop task instead, with no thread hop per
//!   call, for handlers that never block (qmpd's demo machine).
//! * **out-of-band calls** run at once, in the loop task, before anything further is read.
//!
//! # Embedding
//!
//! ```no_run
//! use qmp_core::json::{Object, Value};
//! use qmp_core::server::{CallResult, CommandSpec, Config};
//! use qmp_io::tokio::TokioServerBuilder;
//! use qmp_io::ListenSpec;
//!
//! # async fn app() -> std::io::Result<()> {
//! let server = TokioServerBuilder::new(Config::default())
//!     .listen(ListenSpec::unix("./qmp.sock"))
//!     .async_command(CommandSpec::new("query-answer"), |_ctx, _args| {
//!         Box::pin(async {
//!             tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//!             CallResult::Return(Value::Int(42))
//!         })
//!     })
//!     .build()?;
//! let handle = server.handle(); // Clone + Send: emit events from any task or thread
//! tokio::spawn(async move { handle.emit_event("POWERDOWN", Object::new()) });
//! server.run().await
//! # }
//! ```
//!
//! The runtime needs its IO and time drivers (`enable_all`); [`TokioServerBuilder::build`] must
//! be called inside it (it registers the listeners with its reactor). With the default
//! [`SyncHandlers::Blocking`], a handler still blocked when the runtime is dropped keeps the
//! drop waiting for it (tokio's blocking pool); `Runtime::shutdown_timeout` bounds that.

mod control;
mod event_loop;
mod socket;
mod stdio;
mod wake;

use std::io;
use std::sync::Arc;

use std::future::Future;

use ::tokio::signal::unix::{signal, SignalKind};
use qmp_core::json::Object;
use qmp_core::server::{CommandError, CommandSpec, RunState};
use qmp_driver::{AsyncHandler, CallContext, CallFuture, Control, Driver, ShutdownCause};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builder::Builder;
use crate::listen::{Address, BoundListener};
use crate::typed::{call_typed_args, typed_result};
use control::{Inbox, Op};
use event_loop::EventLoop;
use socket::Listener;

pub use event_loop::{DEFAULT_SPIN, READ_CHUNK, SHUTDOWN_GRACE};

/// Where the tokio adapter runs synchronous in-band handlers ([`TokioServerBuilder::sync_handlers`]).
/// Out-of-band calls always run in the loop task, at once (they must not block on any
/// adapter), and async handlers are always polled by it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SyncHandlers {
    /// On tokio's blocking pool (`spawn_blocking`), one call at a time, as the std adapter's
    /// dispatcher thread runs them: a handler may block (a file, a lock, a slow computation)
    /// while the loop goes on serving: out-of-band calls answer, events go out, other monitors'
    /// requests are read and queued. Each call costs a hop to a pool thread and back. The
    /// default.
    #[default]
    Blocking,
    /// In the loop task itself: no hop per call, for handlers that never block (qmpd's demo
    /// machine, whose only waiting command is async). A handler that blocks stalls the whole
    /// server and, on a current-thread runtime, the application with it.
    Inline,
}

/// The tokio adapter's own builder options (the rest are [`Builder`]'s).
#[derive(Debug)]
pub struct TokioOptions {
    spin: std::time::Duration,
    sync_handlers: SyncHandlers,
}

impl Default for TokioOptions {
    fn default() -> Self {
        TokioOptions {
            spin: DEFAULT_SPIN,
            sync_handlers: SyncHandlers::default(),
        }
    }
}

/// Builds a [`TokioServer`]: [`Builder`]'s setters (the same as [`crate::QmpServerBuilder`]'s),
/// plus async handlers and the loop's own options.
pub type TokioServerBuilder = Builder<TokioOptions>;

impl Builder<TokioOptions> {
    /// Register a command with an async handler: `|ctx, args| Box::pin(async move { ... })`,
    /// or `|ctx, args| Box::pin(my_async_fn(ctx, args))`. The future may borrow both.
    pub fn async_command<F>(mut self, spec: CommandSpec, handler: F) -> Self
    where
        F: for<'a> Fn(CallContext<'a>, &'a Object) -> CallFuture<'a> + Send + Sync + 'static,
    {
        let handler: AsyncHandler = Arc::new(handler);
        self.registry.insert_async(spec, handler);
        self
    }

    /// Register a command with a typed async handler: its checked arguments as `A` (owned, so
    /// the future borrows nothing), its result as `R` (see [`qmp_core::server::call_typed`];
    /// [`qmp_core::server::Empty`] for none).
    pub fn async_command_typed<A, R, F, Fut>(self, spec: CommandSpec, handler: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, CommandError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.async_command(spec, move |_ctx, args| {
            let handler = handler.clone();
            // Arguments that do not fit `A` are answered as `call_typed` answers them.
            let parsed = call_typed_args::<A>(args);
            Box::pin(async move {
                match parsed {
                    Ok(a) => typed_result(handler(a).await),
                    Err(e) => e,
                }
            })
        })
    }

    /// Where synchronous in-band handlers run (default [`SyncHandlers::Blocking`]).
    pub fn sync_handlers(mut self, how: SyncHandlers) -> Self {
        self.adapter.sync_handlers = how;
        self
    }

    /// How long after its last piece of work the loop keeps polling (yielding to the runtime
    /// between looks) before it waits for a wake-up (default [`DEFAULT_SPIN`]; zero: never
    /// spin). Spinning trades a little CPU after each burst of work for the wake-up latency of
    /// the next request; an idle server sleeps either way.
    pub fn spin(mut self, spin: std::time::Duration) -> Self {
        self.adapter.spin = spin;
        self
    }

    /// Bind the listeners and build the server; call inside the runtime (it registers the
    /// listeners with its reactor).
    pub fn build(mut self) -> io::Result<TokioServer> {
        let prepared = self.prepare()?;
        let mut listeners = Vec::with_capacity(prepared.listeners.len());
        let mut unix_paths = Vec::new();
        for bound in prepared.listeners {
            listeners.push(match bound {
                BoundListener::Unix(l, path) => {
                    unix_paths.push(path);
                    let l = std::os::unix::net::UnixListener::from(l);
                    Listener::Unix(::tokio::net::UnixListener::from_std(l)?)
                }
                BoundListener::Tcp(l) => {
                    let l = std::net::TcpListener::from(l);
                    Listener::Tcp(::tokio::net::TcpListener::from_std(l)?)
                }
            });
        }
        let chardevs = prepared.configs.iter().map(|c| c.chardev.clone()).collect();
        let mut driver = Driver::new(prepared.server, prepared.configs, self.limits);
        driver.set_recorder(self.recorder);
        let signals = if self.signals {
            vec![
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ]
        } else {
            Vec::new()
        };
        let inbox = Arc::new(Inbox::new(chardevs, prepared.clock));
        let registry = Arc::new(self.registry);
        let mut event_loop =
            EventLoop::new(driver, registry, inbox, listeners, unix_paths, signals);
        event_loop.on_shutdown = self.on_shutdown;
        event_loop.spin = self.adapter.spin;
        event_loop.sync_blocking = self.adapter.sync_handlers == SyncHandlers::Blocking;
        Ok(TokioServer {
            event_loop,
            addresses: prepared.addresses,
        })
    }
}

/// A built server: [`TokioServer::run`] serves it.
pub struct TokioServer {
    event_loop: EventLoop,
    addresses: Vec<Address>,
}

impl TokioServer {
    /// A handle to emit events and stop the server from any task or thread.
    pub fn handle(&self) -> TokioHandle {
        TokioHandle(self.event_loop.inbox.clone())
    }

    /// The addresses actually bound, in listener order (a TCP port 0 shows its real port).
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// Serve until shutdown (a signal, `quit`, [`TokioHandle::shutdown`]): the last replies
    /// are flushed, clients see EOF, descriptors are closed, socket files removed. One task:
    /// await it, or `tokio::spawn` it.
    pub async fn run(self) -> io::Result<()> {
        self.event_loop.run().await
    }
}

/// Emits events into a running [`TokioServer`] and stops it; `Clone + Send + Sync`.
#[derive(Clone)]
pub struct TokioHandle(Arc<Inbox>);

impl TokioHandle {
    /// Emit an event now (stamped with the wall clock; throttled and broadcast by the core).
    pub fn emit_event(&self, name: &str, data: Object) {
        self.0.emit_event(name, data);
    }

    /// Tell the core the VM run state changed.
    pub fn set_run_state(&self, state: RunState) {
        self.0.set_run_state(state);
    }

    /// Stop serving: pending replies are flushed, then every connection is closed.
    pub fn shutdown(&self) {
        self.0.push(Op::Shutdown(ShutdownCause::Request));
    }

    /// The chardev ids of the listeners, in order.
    pub fn chardevs(&self) -> Vec<String> {
        self.0.chardevs()
    }
}
