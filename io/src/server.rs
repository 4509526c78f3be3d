//! The embedding API: build a QMP server from a core configuration, commands with handler
//! closures and listeners; run it; emit events and stop it from any thread.

use std::io;
use std::thread::JoinHandle;

use qmp_core::json::Object;
use qmp_core::server::{RunState, Server};
use qmp_driver::{Driver, Registry, ShutdownCause};

use crate::builder::Builder;
use crate::io_thread::{IoLoop, WAKER_TOKEN};
use crate::listen::Address;
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

/// The std adapter's own builder options (the rest are [`Builder`]'s).
#[derive(Debug)]
pub struct StdOptions {
    dispatcher_reads: bool,
}

impl Default for StdOptions {
    fn default() -> Self {
        StdOptions {
            dispatcher_reads: true,
        }
    }
}

/// Builds a [`QmpServer`]: [`Builder`]'s setters, plus [`Builder::dispatcher_reads`].
pub type QmpServerBuilder = Builder<StdOptions>;

impl Builder<StdOptions> {
    /// Whether the dispatcher reads a monitor's next requests itself while it waits for work
    /// after answering that monitor (default on; see [`crate::reader`]). Off, only the IO
    /// thread reads, as in QEMU.
    pub fn dispatcher_reads(mut self, on: bool) -> Self {
        self.adapter.dispatcher_reads = on;
        self
    }

    /// Bind the listeners and build the server (nothing is served until [`QmpServer::run`]).
    pub fn build(mut self) -> io::Result<QmpServer> {
        let prepared = self.prepare()?;
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let mut driver = Driver::new(prepared.server, prepared.configs, self.limits);
        driver.set_recorder(self.recorder);
        let shared = Arc::new(Shared::new(
            driver,
            Box::new(MioWake(waker)),
            Box::new(prepared.clock),
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
            prepared.listeners,
            signals,
            self.adapter.dispatcher_reads,
        )?;
        Ok(QmpServer {
            io,
            shared,
            registry,
            addresses: prepared.addresses,
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
