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
//! The same [`Registry`] as the std adapter, so the demo machine and any embedder's commands
//! run unchanged. Where they run:
//!
//! * **async handlers** ([`TokioServerBuilder::async_command`]): the in-band call's future is
//!   polled by the loop task, on the runtime. While it awaits, the core's rules hold as with a
//!   blocking handler on the std adapter: no other in-band call starts, each monitor's queue
//!   still holds at most 8 requests (a full queue suspends reading it), and out-of-band calls
//!   run at once and answer first. An async handler may use anything of the runtime (timers,
//!   sockets, channels, `tokio::spawn`).
//! * **synchronous handlers** run inline in the loop task, like any synchronous code on a
//!   tokio runtime: they must not block (a handler that waits for something is an async one).
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
//! be called inside it (it registers the listeners with its reactor).

mod control;
mod event_loop;
mod socket;
mod stdio;
mod wake;

use std::io;
use std::sync::Arc;

use ::tokio::signal::unix::{signal, SignalKind};
use qmp_core::json::Object;
use qmp_core::server::{CallResult, CommandSpec, Config, RunState, Server, Timestamp};
use qmp_driver::{
    AsyncHandler, CallContext, CallFuture, Control, Driver, Handler, Limits, Registry,
    ShutdownCause, TraceSink,
};

use crate::clock::SystemClock;
use crate::listen::{bind, Address, BoundListener, ListenSpec};
use control::{Inbox, Op};
use event_loop::EventLoop;
use socket::Listener;

pub use event_loop::{DEFAULT_SPIN, READ_CHUNK, SHUTDOWN_GRACE};

/// Builds a [`TokioServer`]: the same options as [`crate::QmpServerBuilder`].
pub struct TokioServerBuilder {
    config: Config,
    registry: Registry,
    listeners: Vec<ListenSpec>,
    allow_remote: bool,
    limits: Limits,
    recorder: Option<Box<dyn TraceSink>>,
    signals: bool,
    on_shutdown: Vec<Box<dyn FnOnce() + Send>>,
    spin: std::time::Duration,
}

impl TokioServerBuilder {
    /// A builder for a server behaving as `config` says (dialect, version object, limits).
    pub fn new(config: Config) -> Self {
        TokioServerBuilder {
            config,
            registry: Registry::new(),
            listeners: Vec::new(),
            allow_remote: false,
            limits: Limits::default(),
            recorder: None,
            signals: false,
            on_shutdown: Vec::new(),
            spin: DEFAULT_SPIN,
        }
    }

    /// Register a command whose synchronous handler only needs its arguments (it runs on the
    /// runtime and must not block).
    pub fn command<F>(self, spec: CommandSpec, handler: F) -> Self
    where
        F: Fn(&Object) -> CallResult + Send + Sync + 'static,
    {
        self.command_with_context(spec, move |_ctx, args| handler(args))
    }

    /// Register a command whose synchronous handler also acts through its [`CallContext`].
    pub fn command_with_context<F>(mut self, spec: CommandSpec, handler: F) -> Self
    where
        F: Fn(&CallContext<'_>, &Object) -> CallResult + Send + Sync + 'static,
    {
        let handler: Handler = Arc::new(handler);
        self.registry.insert(spec, handler);
        self
    }

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

    /// Register commands (and session hooks) directly in the registry, e.g. the demo machine.
    pub fn commands(mut self, f: impl FnOnce(&mut Registry)) -> Self {
        f(&mut self.registry);
        self
    }

    /// Add a listener.
    pub fn listen(mut self, spec: ListenSpec) -> Self {
        self.listeners.push(spec);
        self
    }

    /// Allow TCP listeners on non-loopback addresses (QMP has no authentication).
    pub fn allow_remote(mut self, allow: bool) -> Self {
        self.allow_remote = allow;
        self
    }

    /// The global limit on connections open at once. Clients beyond it wait in the backlog.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n.max(1);
        self
    }

    /// The driver's limits at once (connections, descriptors, output budget).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Record every core input to `sink` (e.g. [`crate::record::file_sink`]).
    pub fn record(mut self, sink: Box<dyn TraceSink>) -> Self {
        self.recorder = Some(sink);
        self
    }

    /// Shut down cleanly on SIGINT and SIGTERM (tokio's signal handling: once installed, it
    /// stays for the life of the process).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// How long after its last piece of work the loop keeps polling (yielding to the runtime
    /// between looks) before it waits for a wake-up (default [`DEFAULT_SPIN`]; zero: never
    /// spin). Spinning trades a little CPU after each burst of work for the wake-up latency of
    /// the next request; an idle server sleeps either way.
    pub fn spin(mut self, spin: std::time::Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Run `f` once shutdown is requested (e.g. to release what an awaiting handler waits for,
    /// so that it completes before [`SHUTDOWN_GRACE`] runs out and is not cancelled).
    pub fn on_shutdown(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_shutdown.push(Box::new(f));
        self
    }

    /// The command specs registered so far (the header of a trace needs them).
    pub fn specs(&self) -> &[CommandSpec] {
        self.registry.specs()
    }

    /// The commands registered so far (QMP and human monitor; the header of a trace needs them).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bind the listeners and build the server; call inside the runtime.
    pub fn build(mut self) -> io::Result<TokioServer> {
        let clock = SystemClock::new();
        if self.config.wall_clock_base == Timestamp::default() {
            self.config.wall_clock_base = crate::server::wall_at_origin(&clock);
        }
        let mut server = Server::new(self.config.clone());
        self.registry
            .register_with(&mut server)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        let mut listeners = Vec::with_capacity(self.listeners.len());
        let mut configs = Vec::with_capacity(self.listeners.len());
        let mut addresses = Vec::with_capacity(self.listeners.len());
        let mut unix_paths = Vec::new();
        for (i, spec) in self.listeners.iter().enumerate() {
            let bound = bind(spec, self.allow_remote)?;
            addresses.push(bound.local_address()?);
            configs.push(spec.listener_config(i, self.config.dialect));
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
        let chardevs = configs.iter().map(|c| c.chardev.clone()).collect();
        let mut driver = Driver::new(server, configs, self.limits);
        driver.set_recorder(self.recorder);
        let signals = if self.signals {
            vec![
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ]
        } else {
            Vec::new()
        };
        let inbox = Arc::new(Inbox::new(chardevs, clock));
        let registry = Arc::new(self.registry);
        let mut event_loop =
            EventLoop::new(driver, registry, inbox, listeners, unix_paths, signals);
        event_loop.on_shutdown = self.on_shutdown;
        event_loop.spin = self.spin;
        Ok(TokioServer {
            event_loop,
            addresses,
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
