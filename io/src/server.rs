//! The embedding API: build a QMP server from a core configuration, commands with handler
//! closures and listeners; run it; emit events and stop it from any thread.

use std::io;
use std::thread::JoinHandle;

use qmp_core::json::Object;
use qmp_core::server::{CallResult, CommandSpec, Config, RunState, Server, Timestamp};
use qmp_driver::{CallContext, Driver, Handler, Limits, Registry, ShutdownCause, TraceSink};

use crate::clock::{Clock, SystemClock};
use crate::io_thread::{IoLoop, WAKER_TOKEN};
use crate::listen::{bind, Address, ListenSpec};
use crate::shared::{Shared, Wake};
use crate::sync::Arc;
use crate::tuning::DISPATCHER_JOIN;

pub use qmp_driver::DEFAULT_MAX_CONNECTIONS;

/// Wakes the IO thread through mio.
struct MioWake(mio::Waker);

impl Wake for MioWake {
    fn wake(&self) {
        if let Err(e) = self.0.wake() {
            tracing::error!(error = %e, "cannot wake the IO thread");
        }
    }
}

/// Builds a [`QmpServer`].
pub struct QmpServerBuilder {
    config: Config,
    registry: Registry,
    listeners: Vec<ListenSpec>,
    allow_remote: bool,
    limits: Limits,
    recorder: Option<Box<dyn TraceSink>>,
    signals: bool,
    dispatcher_reads: bool,
    on_shutdown: Vec<Box<dyn FnOnce() + Send>>,
}

impl QmpServerBuilder {
    /// A builder for a server behaving as `config` says (dialect, version object, limits).
    pub fn new(config: Config) -> Self {
        QmpServerBuilder {
            config,
            registry: Registry::new(),
            listeners: Vec::new(),
            allow_remote: false,
            limits: Limits::default(),
            recorder: None,
            signals: false,
            dispatcher_reads: true,
            on_shutdown: Vec::new(),
        }
    }

    /// Whether the dispatcher reads a monitor's next requests itself while it waits for work
    /// after answering that monitor (default on; see [`crate::reader`]). Off, only the IO
    /// thread reads, as in QEMU.
    pub fn dispatcher_reads(mut self, on: bool) -> Self {
        self.dispatcher_reads = on;
        self
    }

    /// Register a command whose handler only needs its arguments.
    pub fn command<F>(self, spec: CommandSpec, handler: F) -> Self
    where
        F: Fn(&Object) -> CallResult + Send + Sync + 'static,
    {
        self.command_with_context(spec, move |_ctx, args| handler(args))
    }

    /// Register a command whose handler also acts through its [`CallContext`] (emit events,
    /// change the run state, request shutdown...).
    pub fn command_with_context<F>(mut self, spec: CommandSpec, handler: F) -> Self
    where
        F: Fn(&CallContext<'_>, &Object) -> CallResult + Send + Sync + 'static,
    {
        let handler: Handler = std::sync::Arc::new(handler);
        self.registry.insert(spec, handler);
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

    /// The global limit on connections open at once (default [`DEFAULT_MAX_CONNECTIONS`]).
    /// Clients beyond it wait in the kernel backlog.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n.max(1);
        self
    }

    /// The driver's limits at once (connections, the fd table and its per-client share, the
    /// process-wide output budget).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Register commands (and session hooks) directly in the registry, e.g.
    /// `.commands(|r| machine.register(r, false))` for `qmp_driver::demo::Machine`.
    pub fn commands(mut self, f: impl FnOnce(&mut Registry)) -> Self {
        f(&mut self.registry);
        self
    }

    /// Record every core input (and output) to `sink`.
    pub fn record(mut self, sink: Box<dyn TraceSink>) -> Self {
        self.recorder = Some(sink);
        self
    }

    /// Shut down cleanly on SIGINT and SIGTERM.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Run `f` once the IO thread has stopped (e.g. to release a handler that blocks, so the
    /// dispatcher can finish).
    pub fn on_shutdown(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_shutdown.push(Box::new(f));
        self
    }

    /// The command specs registered so far (the header of a trace needs them).
    pub fn specs(&self) -> &[CommandSpec] {
        self.registry.specs()
    }

    /// Everything registered so far (QMP and human monitor commands).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bind the listeners and build the server (nothing is served until [`QmpServer::run`]).
    pub fn build(mut self) -> io::Result<QmpServer> {
        let clock = SystemClock::new();
        if self.config.wall_clock_base == Timestamp::default() {
            // Events the core makes itself (2.12's COMMAND_DROPPED) are stamped base + now.
            self.config.wall_clock_base = wall_at_origin(&clock);
        }
        let mut server = Server::new(self.config.clone());
        self.registry
            .register_with(&mut server)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let mut bound = Vec::with_capacity(self.listeners.len());
        let mut configs = Vec::with_capacity(self.listeners.len());
        let mut addresses = Vec::with_capacity(self.listeners.len());
        for (i, spec) in self.listeners.into_iter().enumerate() {
            let l = bind(&spec, self.allow_remote)?;
            addresses.push(l.local_address()?);
            bound.push(l);
            configs.push(spec.listener_config(i, self.config.dialect));
        }
        let mut driver = Driver::new(server, configs, self.limits);
        driver.set_recorder(self.recorder);
        let shared = Arc::new(Shared::new(
            driver,
            Box::new(MioWake(waker)),
            Box::new(clock),
        ));
        let (signals, sig_ids) = if self.signals {
            let (r, w) = std::os::unix::net::UnixStream::pair()?;
            r.set_nonblocking(true)?;
            w.set_nonblocking(true)?;
            let a = signal_hook::low_level::pipe::register(
                signal_hook::consts::SIGINT,
                w.try_clone()?,
            )?;
            let b = signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, w)?;
            (Some(mio::net::UnixStream::from_std(r)), vec![a, b])
        } else {
            (None, Vec::new())
        };
        let registry = Arc::new(self.registry);
        let io = IoLoop::new(
            poll,
            shared.clone(),
            registry.clone(),
            bound,
            signals,
            self.dispatcher_reads,
        )?;
        Ok(QmpServer {
            io,
            shared,
            registry,
            addresses,
            sig_ids,
            on_shutdown: self.on_shutdown,
        })
    }
}

/// A built server, ready to run.
pub struct QmpServer {
    io: IoLoop,
    pub(crate) shared: Arc<Shared>,
    registry: Arc<Registry>,
    addresses: Vec<Address>,
    sig_ids: Vec<signal_hook::SigId>,
    on_shutdown: Vec<Box<dyn FnOnce() + Send>>,
}

impl QmpServer {
    /// A handle to emit events and stop the server from any thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle(self.shared.clone())
    }

    /// The addresses actually bound, in listener order (a TCP port 0 shows its real port).
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// Serve on this thread until shutdown (a signal, `quit`, [`ServerHandle::shutdown`]).
    /// The dispatcher runs on a thread of its own.
    pub fn run(mut self) -> io::Result<()> {
        let dispatcher = {
            let shared = self.shared.clone();
            let registry = self.registry.clone();
            std::thread::Builder::new()
                .name("qmp-dispatcher".into())
                .spawn(move || crate::dispatcher::run(shared, registry))?
        };
        let result = self.io.run();
        // Whatever happened, release the dispatcher.
        self.shared.stop();
        for f in self.on_shutdown.drain(..) {
            f();
        }
        join_bounded(dispatcher);
        for id in self.sig_ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        result
    }

    /// Run on a new thread; the returned handle stops and joins it.
    pub fn spawn(self) -> io::Result<RunningServer> {
        let handle = self.handle();
        let addresses = self.addresses.clone();
        let thread = std::thread::Builder::new()
            .name("qmp-io".into())
            .spawn(move || self.run())?;
        Ok(RunningServer {
            handle,
            addresses,
            thread: Some(thread),
        })
    }
}

/// The wall-clock time at `clock`'s monotonic origin.
pub(crate) fn wall_at_origin(clock: &SystemClock) -> Timestamp {
    let wall = clock.wall();
    let since = clock.now().0 / 1_000; // microseconds since the origin
    let total = wall
        .seconds
        .saturating_mul(1_000_000)
        .saturating_add(wall.microseconds)
        .saturating_sub(i64::try_from(since).unwrap_or(i64::MAX));
    Timestamp {
        seconds: total.div_euclid(1_000_000),
        microseconds: total.rem_euclid(1_000_000),
    }
}

/// Wait for the dispatcher, but not forever: a handler that never returns must not keep the
/// process alive after shutdown.
fn join_bounded(t: JoinHandle<()>) {
    let deadline = std::time::Instant::now() + DISPATCHER_JOIN;
    while !t.is_finished() {
        if std::time::Instant::now() >= deadline {
            tracing::warn!("dispatcher still busy in a handler at shutdown; leaving it");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = t.join();
}

/// A server running on its own thread.
pub struct RunningServer {
    handle: ServerHandle,
    addresses: Vec<Address>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// A handle to emit events and stop it.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The addresses actually bound.
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// Wait for the server to stop by itself (`quit`, a signal).
    pub fn join(mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("IO thread panicked"))),
            None => Ok(()),
        }
    }

    /// Request shutdown and wait for it.
    pub fn shutdown(self) -> io::Result<()> {
        self.handle.shutdown();
        self.join()
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// Emit events and control a running server from any thread. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle(Arc<Shared>);

impl ServerHandle {
    /// Emit an event (QEMU's `qapi_event_send_*`): timestamped now, throttled and broadcast to
    /// every negotiated monitor by the core.
    pub fn emit_event(&self, name: &str, data: Object) {
        self.0.emit_event(name, data);
    }

    /// Tell the core the VM run state changed.
    pub fn set_run_state(&self, state: RunState) {
        self.0.set_run_state(state);
    }

    /// Stop serving: pending output is flushed (bounded), then every connection is closed.
    pub fn shutdown(&self) {
        self.0.request_shutdown(ShutdownCause::Request);
    }

    /// Look at the core under the lock (probes, queue lengths, memory estimate...). `f` must be
    /// quick: every thread of the server waits for it.
    pub fn inspect<R>(&self, f: impl FnOnce(&Server) -> R) -> R {
        f(self.0.lock().server())
    }

    /// Look at the driver under the lock (connection counters, the output held...). `f` must
    /// be quick.
    pub fn inspect_driver<R>(&self, f: impl FnOnce(&Driver<std::os::fd::OwnedFd>) -> R) -> R {
        f(self.0.lock().driver())
    }

    /// Counters of the socket work.
    pub fn io_stats(&self) -> crate::shared::IoStats {
        self.0.lock().io_stats()
    }

    /// Descriptors currently held on behalf of the core (for leak checks).
    pub fn fds_held(&self) -> usize {
        self.0.lock().driver().fds_held()
    }

    /// Descriptors closed so far because the core returned them.
    pub fn fds_closed(&self) -> u64 {
        self.0.lock().driver().fds_closed()
    }
}
