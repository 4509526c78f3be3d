//! The builder both adapters share: [`Builder`] holds what every server is built from (the core
//! configuration, the registry of commands, listeners, limits, recording, signals, shutdown
//! hooks) and has each setter once; `A` holds what only one adapter has (the std adapter's
//! [`crate::server::StdOptions`], the tokio adapter's `TokioOptions`) and brings its own
//! `new`, extra setters and `build`. [`crate::QmpServerBuilder`] and
//! `qmp_io::tokio::TokioServerBuilder` are this type with each adapter's options.

use std::io;

use qmp_core::json::Object;
use qmp_core::server::{CallResult, CommandSpec, Config, Server, Timestamp};
use qmp_driver::{CallContext, Handler, Limits, ListenerConfig, Registry, TraceSink};

use crate::clock::{Clock, SystemClock};
use crate::listen::{bind, Address, BoundListener, ListenSpec};

/// Builds a server of the adapter whose options `A` are (see the module docs).
pub struct Builder<A> {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) listeners: Vec<ListenSpec>,
    pub(crate) allow_remote: bool,
    pub(crate) limits: Limits,
    pub(crate) recorder: Option<Box<dyn TraceSink>>,
    pub(crate) signals: bool,
    pub(crate) on_shutdown: Vec<Box<dyn FnOnce() + Send>>,
    /// The adapter's own options.
    pub(crate) adapter: A,
}

impl<A: Default> Builder<A> {
    /// A builder for a server behaving as `config` says (dialect, version object, limits).
    pub fn new(config: Config) -> Self {
        Builder {
            config,
            registry: Registry::new(),
            listeners: Vec::new(),
            allow_remote: false,
            limits: Limits::default(),
            recorder: None,
            signals: false,
            on_shutdown: Vec::new(),
            adapter: A::default(),
        }
    }
}

impl<A> Builder<A> {
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

    /// Register commands (and session hooks) directly in the registry, e.g.
    /// `.commands(|r| machine.register(r, false))` for `qmp_driver::demo::Machine`.
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

    /// The global limit on connections open at once (default
    /// [`crate::server::DEFAULT_MAX_CONNECTIONS`]). Clients beyond it wait in the kernel
    /// backlog.
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

    /// Record every core input (and output) to `sink` (e.g. [`crate::record::file_sink_for`]).
    pub fn record(mut self, sink: Box<dyn TraceSink>) -> Self {
        self.recorder = Some(sink);
        self
    }

    /// Shut down cleanly on SIGINT and SIGTERM.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Run `f` once, at shutdown (e.g. to release what a blocked or awaiting handler waits
    /// for, so that it finishes before the adapter gives up on it).
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
}

/// What both adapters' `build` start from: the core with every command registered, the
/// listeners bound (by the shared policy code), and what the driver is made of.
pub(crate) struct Prepared {
    /// The core, its wall-clock base set.
    pub(crate) server: Server,
    pub(crate) clock: SystemClock,
    /// Bound listeners, in listener order.
    pub(crate) listeners: Vec<BoundListener>,
    /// The driver's view of each listener.
    pub(crate) configs: Vec<ListenerConfig>,
    /// The addresses actually bound.
    pub(crate) addresses: Vec<Address>,
}

impl<A> Builder<A> {
    /// Make the core, register the commands with it and bind the listeners.
    pub(crate) fn prepare(&mut self) -> io::Result<Prepared> {
        let clock = SystemClock::new();
        if self.config.wall_clock_base == Timestamp::default() {
            // Events the core makes itself (2.12's COMMAND_DROPPED) are stamped base + now.
            self.config.wall_clock_base = wall_at_origin(&clock);
        }
        let mut server = Server::new(self.config.clone());
        self.registry
            .register_with(&mut server)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        let mut listeners = Vec::with_capacity(self.listeners.len());
        let mut configs = Vec::with_capacity(self.listeners.len());
        let mut addresses = Vec::with_capacity(self.listeners.len());
        for (i, spec) in self.listeners.iter().enumerate() {
            let l = bind(spec, self.allow_remote)?;
            addresses.push(l.local_address()?);
            listeners.push(l);
            configs.push(spec.listener_config(i, self.config.dialect));
        }
        Ok(Prepared {
            server,
            clock,
            listeners,
            configs,
            addresses,
        })
    }
}

/// The wall-clock time at `clock`'s monotonic origin.
fn wall_at_origin(clock: &SystemClock) -> Timestamp {
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
