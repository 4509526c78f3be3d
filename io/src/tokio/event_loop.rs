//! The event loop: one task that owns the driver and every socket, and turns tokio's readiness
//! into the driver's socket facts.
//!
//! Each turn follows the driver's order (`qmp_driver` crate docs): apply what handlers and
//! handles queued; turn readiness events into `handle_readable` / `handle_writable` /
//! `handle_listener_ready`; then answer: run out-of-band calls at once, poll the in-band call
//! that is awaiting or start the next ones (an async handler's future, or a synchronous
//! handler's run on the blocking pool, is kept and polled as its wakers fire; with
//! `SyncHandlers::Inline` a synchronous handler runs right here), carry out the driver's
//! actions, write what the driver lists; read every connection it says to read (stopping as
//! soon as a read produced an out-of-band call) and answer what came in the same turn; accept
//! while it says to; fire timers. A turn that changed nothing
//! returns `Pending`, with a waker registered on every source that could change something;
//! within [`super::TokioServerBuilder::spin`] of its last work it first reads the connection
//! it wrote last if that client pipelines and the core wants its input
//! (`Driver::wants_input`, as the std adapter's dispatcher does), and yields to the runtime
//! instead of sleeping. A pipelining client's bytes are peeked and taken off its socket after
//! the next writes (see `EventLoop::read_conn` for why).
//!
//! Invariants: at most one in-band call is outstanding (the driver hands out the next only
//! after `complete`); an operation a handler queued is applied before that handler's call is
//! completed; every connection the driver closes is dropped (socket closed) and its session
//! hooks told, in that order; the loop never accepts on its own judgement, and reads only what
//! the driver says to read or the core wants read.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::tokio::signal::unix::Signal;
use ::tokio::time::Sleep;
use qmp_core::server::{CallId, CallResult, Instant};
use qmp_driver::{
    Action, ConnId, Driver, ReadFact, Registry, SessionCall, ShutdownCause, ShutdownState, Started,
    WriteFact,
};

use super::control::{BlockingControl, Inbox, LoopControl, Op};
use super::socket::{Listener, Stream};
use super::wake::ReadyFlag;
use crate::clock::Clock;

/// Bytes asked for per read. The core may stop mid-chunk when a request suspends the monitor
/// and keeps the rest; this bounds what it keeps beyond that point.
pub const READ_CHUNK: usize = 32 * 1024;

/// Turns one poll of the loop may take before it yields to the runtime (and is woken again at
/// once), so that a client that keeps it busy cannot starve the application's other tasks on
/// the same worker.
const TURNS_PER_POLL: usize = 64;

/// Reads of the connection written last per look while the loop spins, before it yields to
/// the runtime: a yield (a reactor poll) costs more than a read that finds nothing. Few enough
/// that other sources wait at most a few microseconds longer.
const SPIN_READS: usize = 4;

/// Default of [`super::TokioServerBuilder::spin`]: how long after its last piece of work the
/// loop keeps polling instead of sleeping. A sleeping thread costs a wake-up (an eventfd
/// write and, in a virtual machine, an interrupt to a halted CPU) per request; a client's next request
/// usually comes sooner than this. The same bound as the std adapter's IO thread spin.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// How long shutdown waits for an in-band handler that is still awaiting before it drops its
/// future (cancelling it) and closes every connection: the handler's reply is then never sent,
/// as QEMU sends none for requests still queued at `quit`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The in-band call whose async handler is awaiting.
struct Awaiting {
    call: CallId,
    future: Pin<Box<dyn Future<Output = CallResult> + Send>>,
}

/// Everything the loop owns.
pub(crate) struct EventLoop {
    pub(crate) driver: Driver<OwnedFd>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) listeners: Vec<Listener>,
    /// Unix socket files to remove at the end.
    pub(crate) unix_paths: Vec<PathBuf>,
    pub(crate) signals: Vec<Signal>,
    /// One readiness flag per listener.
    listener_flags: Vec<Arc<ReadyFlag>>,
    conns: BTreeMap<ConnId, Stream>,
    buf: Vec<u8>,
    ops: VecDeque<Op>,
    /// Scratch list of connections, reused every turn.
    scratch: Vec<ConnId>,
    /// Bytes read with `MSG_PEEK` and reported, still queued in their sockets: taken off after
    /// the next writes (see [`EventLoop::read_conn`]); at most one entry per open connection.
    peeked: Vec<(ConnId, usize)>,
    /// Connections whose last read brought more than one request: read with `MSG_PEEK` (see
    /// [`EventLoop::read_conn`]); a subset of the open connections.
    pipelining: BTreeSet<ConnId>,
    awaiting: Option<Awaiting>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    grace: Option<Pin<Box<Sleep>>>,
    /// Run once, when shutdown is first seen requested.
    pub(crate) on_shutdown: Vec<Box<dyn FnOnce() + Send>>,
    /// How long after the last busy turn the loop yields (and is polled again once the
    /// runtime has looked at its reactor without sleeping) instead of waiting for a wake-up.
    pub(crate) spin: Duration,
    /// When the last busy turn ended.
    last_work: Option<std::time::Instant>,
    /// Synchronous in-band handlers run on the blocking pool (see [`super::SyncHandlers`]).
    pub(crate) sync_blocking: bool,
    /// The connection written last: the one the loop reads itself while it spins (its client's
    /// next request usually follows the reply).
    follow_up: Option<ConnId>,
}

impl EventLoop {
    pub(crate) fn new(
        driver: Driver<OwnedFd>,
        registry: Arc<Registry>,
        inbox: Arc<Inbox>,
        listeners: Vec<Listener>,
        unix_paths: Vec<PathBuf>,
        signals: Vec<Signal>,
    ) -> Self {
        let listener_flags = listeners
            .iter()
            .map(|_| Arc::new(ReadyFlag::default()))
            .collect();
        EventLoop {
            listener_flags,
            driver,
            registry,
            inbox,
            listeners,
            unix_paths,
            signals,
            conns: BTreeMap::new(),
            buf: vec![0; READ_CHUNK],
            ops: VecDeque::new(),
            scratch: Vec::new(),
            peeked: Vec::new(),
            pipelining: BTreeSet::new(),
            awaiting: None,
            timer: Box::pin(::tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
            grace: None,
            on_shutdown: Vec::new(),
            spin: DEFAULT_SPIN,
            last_work: None,
            follow_up: None,
            sync_blocking: true,
        }
    }

    /// Serve `stream` as connection `conn`, which the driver opened outside a handler (the
    /// stdio monitor).
    pub(crate) fn add_conn(&mut self, conn: ConnId, stream: Stream) {
        self.conns.insert(conn, stream);
        self.inbox.opened(conn);
    }

    /// Serve until shutdown has finished.
    pub(crate) async fn run(mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_turns(cx)).await
    }

    fn poll_turns(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        for _ in 0..TURNS_PER_POLL {
            let now = self.inbox.clock.now();
            let mut busy = self.apply_ops(cx, now);
            busy |= self.poll_signals(cx, now);
            // Readiness first, so that a connection found readable is read in this turn.
            busy |= self.poll_readiness(cx);
            busy |= self.answer(cx, now);
            if self.shutdown_finished(cx, now) {
                return Poll::Ready(Ok(()));
            }
            if self.read(now) {
                // What was read is answered in the same turn.
                busy = true;
                self.answer(cx, now);
            }
            busy |= self.accept(cx, now);
            busy |= self.poll_timer(cx, now);
            if !busy && !self.spin_read(now) {
                return self.idle(cx);
            }
            self.last_work = None;
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Run the calls the driver has, carry out its actions, write what it lists and take the
    /// peeked bytes off their sockets (see [`EventLoop::read_conn`]). True when there was
    /// anything to do.
    fn answer(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut busy = self.run_calls(cx, now);
        busy |= self.carry_out_actions();
        busy |= self.write(now);
        self.consume_peeked(now);
        busy
    }

    /// Nothing to do: every source has a waker. Within [`EventLoop::spin`] of the last work,
    /// yield instead of sleeping: the runtime polls its reactor without blocking and polls the
    /// loop again, so a client's next request is seen without a thread wake-up; after that, the
    /// loop waits for a wake-up (an idle server sleeps).
    fn idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.spin.is_zero() {
            return Poll::Pending;
        }
        let now = std::time::Instant::now();
        let since = *self.last_work.get_or_insert(now);
        if now.duration_since(since) < self.spin {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// While the loop spins, read the connection written last straight from its socket (see
    /// [`Stream::read_now`]) when it pipelines, the core wants its input and the driver waits
    /// for its readiness: the client's next batch is then read as soon as it arrives, not one
    /// trip through the runtime's reactor later. For a client that sends one request at a
    /// time the reactor is about as quick and these reads cost more than they save (figures in
    /// BENCHMARKS.md). True when the read brought something to report; a would-block is no
    /// fact here (tokio's readiness still decides when the driver hears the connection is
    /// readable).
    fn spin_read(&mut self, now: Instant) -> bool {
        let Some(conn) = self.follow_up else {
            return false;
        };
        if self.spin.is_zero()
            || !self.pipelining.contains(&conn)
            || self.driver.is_readable(conn)
            || !self.driver.wants_input(conn)
            || self.last_work.is_some_and(|t| t.elapsed() >= self.spin)
        {
            return false;
        }
        if !self.conns.contains_key(&conn) {
            self.follow_up = None;
            return false;
        }
        for _ in 0..SPIN_READS {
            if self.read_conn(now, conn, true) {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Read `conn` once (after tokio's readiness, or `direct`ly: see [`Stream::read_now`]) and
    /// report what came, except a direct read's would-block (no fact about readiness); true
    /// when something was reported.
    ///
    /// A client that pipelines (its last read brought more than one request) has its bytes
    /// peeked: they stay queued in the socket until [`EventLoop::consume_peeked`] takes them
    /// off after the next writes. Taking a client's bytes off its socket wakes that client if
    /// it sleeps in its own read (the kernel wakes a Unix socket's writer when its queue
    /// shrinks, and a blocked reader waits on the same queue); after the replies are written
    /// it is awake already, so that wake-up is not paid on the way to the replies. It costs one
    /// more syscall per read, which a client sending one request at a time does not repay: the
    /// spinning loop usually reads its request before it sleeps. A peek that brought
    /// descriptors (copies) is not kept: they are closed and the bytes read for real, with the
    /// originals.
    fn read_conn(&mut self, now: Instant, conn: ConnId, direct: bool) -> bool {
        let Some(s) = self.conns.get(&conn) else {
            return false;
        };
        let peek = s.can_peek() && self.pipelining.contains(&conn);
        let fact = if direct {
            s.read_now(&mut self.buf, peek)
        } else {
            s.read(&mut self.buf, peek)
        };
        let fact = match fact {
            ReadFact::Data {
                bytes,
                fds,
                fds_cut,
                capacity,
            } if !peek || (fds.is_empty() && !fds_cut) => {
                if peek {
                    self.peeked.push((conn, bytes.len()));
                }
                if several_lines(bytes) {
                    self.pipelining.insert(conn);
                } else {
                    self.pipelining.remove(&conn);
                }
                ReadFact::Data {
                    bytes,
                    fds,
                    fds_cut,
                    capacity,
                }
            }
            ReadFact::Data { fds, .. } => {
                drop(fds);
                s.read_now(&mut self.buf, false)
            }
            ReadFact::WouldBlock | ReadFact::Interrupted if direct => return false,
            fact => fact,
        };
        self.driver.handle_read(now, conn, fact);
        true
    }

    /// Take the bytes peeked so far off their sockets (see [`EventLoop::read_conn`]), before
    /// any further read of them. Bounded by the open connections (one entry per read, and
    /// every read is preceded by this).
    fn consume_peeked(&mut self, now: Instant) {
        let mut peeked = std::mem::take(&mut self.peeked);
        for (conn, n) in peeked.drain(..) {
            let Some(s) = self.conns.get(&conn) else {
                continue;
            };
            if let Err(fact) = s.consume(n, &mut self.buf) {
                // Only this loop reads the socket and the bytes were queued: the connection
                // failed meanwhile, which its driver hears as the read's outcome.
                self.driver.handle_read(now, conn, fact);
            }
        }
        self.peeked = peeked;
    }

    /// Apply what handlers and handles queued. True when there was something.
    fn apply_ops(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        self.inbox.take(cx.waker(), &mut self.ops);
        let any = !self.ops.is_empty();
        while let Some(op) = self.ops.pop_front() {
            match op {
                Op::Event { name, data, wall } => self.driver.emit_event(now, &name, data, wall),
                Op::RunState(state) => self.driver.set_run_state(now, state),
                Op::Shutdown(cause) => {
                    self.driver
                        .request_shutdown(now, cause, self.inbox.clock.wall())
                }
                Op::Yank(id) => {
                    self.driver.yank(now, &id);
                }
                Op::Driver(request) => {
                    let control = LoopControl::new(&self.inbox, &mut self.driver);
                    request.answer(&control);
                    let added = control.into_added();
                    self.adopt(added);
                }
            }
        }
        any
    }

    fn poll_signals(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut any = false;
        for s in &mut self.signals {
            while let Poll::Ready(Some(())) = s.poll_recv(cx) {
                any = true;
            }
        }
        if any {
            tracing::info!("signal received: shutting down");
            self.driver
                .request_shutdown(now, ShutdownCause::Signal, self.inbox.clock.wall());
        }
        any
    }

    /// A handler returned `result` for `call`: apply what it queued, then complete it.
    fn complete(&mut self, cx: &mut Context<'_>, now: Instant, call: CallId, result: CallResult) {
        self.apply_ops(cx, now);
        self.driver.complete(now, call, result);
    }

    /// Out-of-band calls at once, then the in-band lane; after every in-band completion the
    /// out-of-band calls it let in (a resumed monitor's input parsed) run first, as QEMU's IO
    /// thread runs them while its dispatcher goes on.
    fn run_calls(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut any = false;
        loop {
            while let Some(c) = self.driver.take_oob_call() {
                // An async handler called out-of-band must not wait: `run` drives it on the
                // spot.
                let result = self.run_sync(&c);
                self.complete(cx, now, c.call.id, result);
                any = true;
            }
            if let Some(a) = &mut self.awaiting {
                let Poll::Ready(result) = a.future.as_mut().poll(cx) else {
                    return any;
                };
                let call = a.call;
                self.awaiting = None;
                self.complete(cx, now, call, result);
                any = true;
                continue;
            }
            let Some(c) = self.driver.next_in_band(now) else {
                return any;
            };
            any = true;
            if self.registry.is_async(&c.call.command) {
                self.awaiting = Some(Awaiting {
                    call: c.call.id,
                    future: self.start_async(c),
                });
            } else if self.sync_blocking {
                self.awaiting = Some(Awaiting {
                    call: c.call.id,
                    future: self.start_blocking(c),
                });
            } else {
                let result = self.run_sync(&c);
                self.complete(cx, now, c.call.id, result);
            }
        }
    }

    /// Run a call's handler on the spot, lending it the driver (see [`LoopControl`]); the
    /// clients it added are served from now on.
    fn run_sync(&mut self, c: &SessionCall) -> CallResult {
        let control = LoopControl::new(&self.inbox, &mut self.driver);
        let result = self.registry.run(&control, &c.call, c.session);
        let added = control.into_added();
        self.adopt(added);
        result
    }

    /// Serve the clients a handler added from now on.
    fn adopt(&mut self, added: Vec<(ConnId, Stream)>) {
        for (conn, stream) in added {
            self.conns.insert(conn, stream);
            self.inbox.opened(conn);
        }
    }

    /// A synchronous in-band call run on the blocking pool, as a future the loop awaits like
    /// an async handler's; what it needs of the driver it asks of the loop
    /// ([`BlockingControl`]).
    fn start_blocking(&self, c: SessionCall) -> Pin<Box<dyn Future<Output = CallResult> + Send>> {
        let registry = self.registry.clone();
        let control = BlockingControl(self.inbox.clone());
        let command = c.call.command.clone();
        let task =
            ::tokio::task::spawn_blocking(move || registry.run(&control, &c.call, c.session));
        Box::pin(async move {
            // The registry turns a panic into an error reply: a join error is the runtime
            // shutting down under the call.
            task.await.unwrap_or_else(|e| {
                tracing::warn!(%command, error = %e, "in-band handler lost");
                CallResult::Error {
                    class: qmp_core::server::ErrorClass::GenericError,
                    desc: format!("Command {command} failed unexpectedly"),
                }
            })
        })
    }

    /// The future of an async handler's call, owning what it borrows.
    fn start_async(&self, c: SessionCall) -> Pin<Box<dyn Future<Output = CallResult> + Send>> {
        let registry = self.registry.clone();
        let inbox = self.inbox.clone();
        Box::pin(async move {
            match registry.start(&*inbox, &c.call, c.session) {
                Started::Done(result) => result,
                Started::Pending(future) => future.await,
            }
        })
    }

    /// Close what the driver closed: sockets (then the session hooks) and descriptors.
    fn carry_out_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.driver.poll_action() {
            any = true;
            match action {
                Action::CloseConn { conn, .. } => {
                    drop(self.conns.remove(&conn));
                    self.pipelining.remove(&conn);
                    self.inbox.closed(conn);
                    self.registry.session_closed(conn);
                }
                Action::CloseFd(fd) => drop(fd),
            }
        }
        any
    }

    /// Write every connection the driver lists.
    fn write(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(conn) = self.driver.next_transmit() {
            let Some(s) = self.conns.get(&conn) else {
                continue;
            };
            any = true;
            self.follow_up = Some(conn);
            loop {
                let fact = s.write(self.driver.pending_output(conn));
                self.driver.handle_written(now, conn, fact);
                if fact != WriteFact::Interrupted {
                    break;
                }
            }
        }
        any
    }

    /// Read every connection the driver says to read, once; stop when a read produced an
    /// out-of-band call (it runs before anything further is read).
    fn read(&mut self, now: Instant) -> bool {
        self.consume_peeked(now);
        let mut any = false;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(self.conns.keys().copied());
        for &conn in &scratch {
            if !self.driver.should_read(conn) {
                continue;
            }
            any |= self.read_conn(now, conn, false);
            if self.driver.has_oob_calls() {
                break;
            }
        }
        self.scratch = scratch;
        any
    }

    /// Accept while the driver says to. A would-block registers the listener's own waker
    /// ([`ReadyFlag`]), so that its readiness event reaches the driver as
    /// `handle_listener_ready` for that listener only.
    fn accept(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut any = false;
        for (l, listener) in self.listeners.iter().enumerate() {
            let flag = &self.listener_flags[l];
            flag.task.register(cx.waker());
            if flag.take() {
                self.driver.handle_listener_ready(l);
            }
            let waker = Waker::from(flag.clone());
            let mut lcx = Context::from_waker(&waker);
            while self.driver.should_accept(l, now) {
                match listener.accept(&mut lcx) {
                    Ok(s) => {
                        if let Some(conn) = self.driver.handle_accepted(now, l) {
                            self.conns.insert(conn, s);
                            self.inbox.opened(conn);
                            any = true;
                        }
                    }
                    Err(fact) => self.driver.handle_accept_failed(now, l, fact),
                }
            }
        }
        any
    }

    /// Turn readiness events into facts: a connection the core wants input from and that a
    /// read left would-blocking, a connection whose write was refused.
    fn poll_readiness(&mut self, cx: &mut Context<'_>) -> bool {
        let mut any = false;
        for (&conn, s) in &self.conns {
            if !self.driver.is_readable(conn)
                && self.driver.wants_input(conn)
                && s.poll_read_ready(cx).is_ready()
            {
                self.driver.handle_readable(conn);
                any = true;
            }
            if self.driver.write_blocked(conn) && s.poll_write_ready(cx).is_ready() {
                self.driver.handle_writable(conn);
                any = true;
            }
        }
        any
    }

    /// Fire the driver's timers when due; otherwise arm the sleep for the next one.
    fn poll_timer(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(at) = self.driver.poll_timeout() else {
            return false;
        };
        if at > now {
            if self.timer_at != Some(at) {
                let after = Duration::from_nanos(at.0 - now.0);
                self.timer
                    .as_mut()
                    .reset(::tokio::time::Instant::now() + after);
                self.timer_at = Some(at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
        self.timer_at = None;
        self.driver.handle_timeout(self.inbox.clock.now());
        true
    }

    /// Once shutdown was requested and everything is flushed (or the grace period for an
    /// awaiting handler is over): close every connection, hand back every descriptor, remove
    /// the socket files. True when done.
    fn shutdown_finished(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        match self.driver.shutdown_state() {
            ShutdownState::Running => return false,
            ShutdownState::Finished => return true,
            ShutdownState::Requested => {}
        }
        for f in self.on_shutdown.drain(..) {
            f();
        }
        if !self.driver.shutdown_flushed() {
            let grace = self
                .grace
                .get_or_insert_with(|| Box::pin(::tokio::time::sleep(SHUTDOWN_GRACE)));
            if grace.as_mut().poll(cx).is_pending() {
                return false;
            }
            tracing::warn!("an in-band handler still awaits at shutdown: cancelling it");
        }
        self.awaiting = None;
        self.driver.finish(now);
        self.carry_out_actions();
        self.inbox.close();
        for path in self.unix_paths.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        true
    }
}

/// Whether more than one line ends in `bytes` (a read that brought several requests).
fn several_lines(bytes: &[u8]) -> bool {
    bytes.iter().filter(|&&b| b == b'\n').nth(1).is_some()
}
