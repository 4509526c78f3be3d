//! The IO thread: owns every socket (mio), accepts clients, reads while the core wants input,
//! runs out-of-band handlers at once, writes pending output (all of it except the replies of a
//! batch of in-band calls, which the dispatcher writes itself; what the socket refuses is left
//! here, see [`crate::writer`]), ticks the core's timers, and carries out disconnects, yanks and
//! shutdown. It owns every connection's lifetime: a socket's writer is removed under the lock
//! before the socket is closed.
//!
//! Between passes it spins for a bounded time (`IO_SPIN`) on its work hint and a zero-timeout
//! poll before its last look and a sleeping poll (see "Spinning" in [`crate::shared`]).
//!
//! It never blocks on a socket (everything is non-blocking) and never runs an in-band handler.
//! The core is only touched under the [`Shared`] lock, and descriptors are closed after the
//! lock is released.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant as StdInstant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use qmp_core::server::{DisconnectReason, Input, Instant, MonitorId, MonitorOptions};

use crate::conn::{Chunk, Conn, Stream};
use crate::listen::{BoundListener, ListenSpec};
use crate::reader::Reader;
use crate::registry::Registry;
use crate::shared::{AppliedRead, CoreState, Shared, ShutdownState};
use crate::sync::Arc;
use crate::writer::{Flushed, StreamWriter, Writer};

/// Token of the waker that other threads use to wake the IO thread.
pub const WAKER_TOKEN: Token = Token(0);
/// Token of the signal self-pipe.
pub const SIGNAL_TOKEN: Token = Token(1);
/// Listener `i` has token `LISTENER_BASE + i`.
const LISTENER_BASE: usize = 16;
/// Connection of monitor `m` has token `CONN_BASE + m`.
const CONN_BASE: usize = 1 << 20;

/// Bytes asked for per read. The core may stop mid-chunk when a request suspends the monitor
/// and keeps the rest buffered; this bounds what it keeps beyond the suspension point.
pub const READ_CHUNK: usize = 32 * 1024;
/// Reads per connection per pass, so one busy client cannot starve the others.
pub const READS_PER_PASS: usize = 8;
/// Events taken per poll.
pub const EVENTS_CAPACITY: usize = 256;
/// How long the IO thread, after a pass, keeps looking for work (its spin hint, and socket
/// readiness with a zero-timeout poll) before its last look and a sleeping poll (see "Spinning"
/// in `shared`). Covers the dispatcher's turn on one pipelined request and the client's turnaround
/// here, so a steady stream never needs an eventfd write or a wake-up of a halted vCPU; one spin
/// per pass, so an idle daemon sleeps after at most this long.
pub const IO_SPIN: Duration = Duration::from_micros(100);
/// How long shutdown waits for the last replies (the `quit` return) to be written.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// One listening socket and its clients.
pub(crate) struct ListenerSlot {
    pub bound: BoundListener,
    pub spec: ListenSpec,
    pub chardev: String,
    pub options: MonitorOptions,
    /// Clients attached now.
    pub active: usize,
    /// A connection may be waiting in the backlog (edge-triggered: set by a readable event,
    /// cleared when accept says EAGAIN).
    pub backlog: bool,
}

/// The IO thread's state; everything here is touched by the IO thread only.
pub(crate) struct IoLoop {
    pub poll: Poll,
    pub shared: Arc<Shared>,
    pub registry: Arc<Registry>,
    pub listeners: Vec<ListenerSlot>,
    pub conns: BTreeMap<MonitorId, Conn>,
    pub next_monitor: u64,
    /// Global cap on open connections across listeners.
    pub max_connections: usize,
    pub signals: Option<mio::net::UnixStream>,
    /// The dispatcher may read connections while it waits for work (see [`crate::reader`]).
    pub dispatcher_reads: bool,
    buf: Vec<u8>,
}

impl IoLoop {
    pub fn new(
        poll: Poll,
        shared: Arc<Shared>,
        registry: Arc<Registry>,
        listeners: Vec<ListenerSlot>,
        max_connections: usize,
        signals: Option<mio::net::UnixStream>,
        dispatcher_reads: bool,
    ) -> io::Result<Self> {
        let mut this = IoLoop {
            poll,
            shared,
            registry,
            listeners,
            conns: BTreeMap::new(),
            next_monitor: 0,
            max_connections,
            signals,
            dispatcher_reads,
            buf: vec![0; READ_CHUNK],
        };
        for (i, l) in this.listeners.iter_mut().enumerate() {
            let token = Token(LISTENER_BASE + i);
            match &mut l.bound {
                BoundListener::Unix(s, _) => {
                    this.poll
                        .registry()
                        .register(s, token, Interest::READABLE)?
                }
                BoundListener::Tcp(s) => {
                    this.poll
                        .registry()
                        .register(s, token, Interest::READABLE)?
                }
            }
        }
        if let Some(s) = this.signals.as_mut() {
            this.poll
                .registry()
                .register(s, SIGNAL_TOKEN, Interest::READABLE)?;
        }
        Ok(this)
    }

    /// Serve until shutdown is requested, then flush and close everything.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            if !self.service() {
                break;
            }
            if self.spin(&mut events) {
                continue;
            }
            // The last look at the state; it marks the IO thread idle in the same critical
            // section, so a later waker wakes it (see `shared`).
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                let _ = self.on_event(ev);
            }
        }
        self.shutdown(&mut events);
        Ok(())
    }

    /// Spin up to `IO_SPIN` for work: true when some was found (socket events are recorded).
    /// Not yet the last look: while spinning the IO thread counts as running, so wakers set
    /// its hint instead of writing the eventfd.
    fn spin(&mut self, events: &mut Events) -> bool {
        let shared = Arc::clone(&self.shared);
        shared.io_spin(IO_SPIN, || {
            // An error (other than EINTR) is left for the sleeping poll to report.
            if self.poll.poll(events, Some(Duration::ZERO)).is_err() || events.is_empty() {
                return false;
            }
            let mut work = false;
            for ev in events.iter() {
                work |= self.on_event(ev);
            }
            work
        })
    }

    /// Record what `ev` says; false when it changes nothing to do (a socket writable again that
    /// was not blocked: every read of our replies by the client makes one), so a spin goes on.
    fn on_event(&mut self, ev: &mio::event::Event) -> bool {
        let t = ev.token().0;
        if ev.token() == SIGNAL_TOKEN {
            self.drain_signal_pipe();
            tracing::info!("signal received, shutting down");
            self.shared.request_shutdown();
        } else if (LISTENER_BASE..CONN_BASE).contains(&t) {
            if let Some(l) = self.listeners.get_mut(t - LISTENER_BASE) {
                l.backlog = true;
            }
        } else if t >= CONN_BASE {
            let m = MonitorId((t - CONN_BASE) as u64);
            let Some(c) = self.conns.get_mut(&m) else {
                return false;
            };
            let mut work = false;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                c.read_ready = true;
                work = true;
            }
            // Output is only ever left pending outside `transmit` while the socket is blocked.
            if (ev.is_writable() || ev.is_write_closed()) && c.write_blocked() {
                self.shared.lock().writable_again(m);
                work = true;
            }
            return work;
        }
        // WAKER_TOKEN: nothing to record; `service` looks at the shared state anyway.
        true
    }

    fn drain_signal_pipe(&mut self) {
        if let Some(s) = self.signals.as_mut() {
            let mut b = [0u8; 64];
            while let Ok(n) = io::Read::read(s, &mut b) {
                if n == 0 {
                    break;
                }
            }
        }
    }

    /// How long the next poll may sleep: until the core's next timer, or not at all when a
    /// connection still has readable bytes the core now wants or other work is queued.
    fn poll_timeout(&self) -> Option<Duration> {
        let now = self.shared.now();
        let mut st = self.shared.lock();
        st.io_going_to_sleep();
        // Output the dispatcher is to write is not work yet, only a deadline (see
        // `write_left_to_dispatcher`).
        let mut left_until: Option<Instant> = None;
        for &m in &st.transmit {
            match st.write_left_to_dispatcher(m, now) {
                Some(until) => left_until = Some(left_until.map_or(until, |u| u.min(until))),
                None => return Some(Duration::ZERO),
            }
        }
        if st.io_work_pending_besides_output() {
            return Some(Duration::ZERO);
        }
        if self
            .conns
            .values()
            .any(|c| c.read_ready && st.server.wants_read(c.monitor))
        {
            return Some(Duration::ZERO);
        }
        if self
            .listeners
            .iter()
            .any(|l| l.backlog && self.can_accept(l))
        {
            return Some(Duration::ZERO);
        }
        let deadline = match (st.server.poll_timeout(), left_until) {
            (Some(t), Some(u)) => t.min(u),
            (t, u) => t.or(u)?,
        };
        Some(Duration::from_nanos(deadline.0.saturating_sub(now.0)))
    }

    fn can_accept(&self, l: &ListenerSlot) -> bool {
        l.active < l.spec.clients && self.conns.len() < self.max_connections
    }

    /// One round of work: timers, accepts, disconnects, yanks, reads, out-of-band calls,
    /// writes. Bounded: each connection gets at most `READS_PER_PASS` reads. The lock is taken
    /// once to start the pass, once per read (with the write of that monitor's output), once per
    /// other monitor to write, and once to end the pass. False once shutdown was requested.
    pub fn service(&mut self) -> bool {
        let start = self.begin_pass();
        drop(start.close);
        self.accept_all();
        self.drop_connections(start.disconnects, start.yanked);
        let mut oob = start.oob;
        for (m, may_read) in start.readable {
            oob |= self.read_some(m, may_read);
        }
        if oob {
            self.run_oob_calls();
        }
        for m in start.dirty {
            self.flush(m);
        }
        self.end_pass(oob)
    }

    /// The pass's first critical section: wakers need not wake the IO thread until its next
    /// last look; due timers fire; the work other threads queued is taken.
    fn begin_pass(&mut self) -> PassStart {
        let now = self.shared.now();
        let mut st = self.shared.lock();
        self.shared.io_pass_started(&mut st);
        let close = match st.server.poll_timeout() {
            Some(t) if t <= now => st.apply_locked(now, Input::Tick),
            _ => Vec::new(),
        };
        let running = st.shutdown == ShutdownState::Running;
        let readable = self
            .conns
            .values()
            .filter(|c| c.read_ready)
            .map(|c| (c.monitor, running && st.server.wants_read(c.monitor)))
            .collect();
        PassStart {
            close,
            disconnects: std::mem::take(&mut st.disconnects),
            yanked: std::mem::take(&mut st.yanked),
            oob: !st.oob_calls.is_empty(),
            readable,
            dirty: take_dirty(&mut st, now, true),
        }
    }

    /// The pass's last critical section: output and disconnects that appeared during the pass
    /// are handled (all output when the pass ran out-of-band calls, `ran_oob`: their replies
    /// are not left to the dispatcher). False once shutdown was requested.
    fn end_pass(&mut self, ran_oob: bool) -> bool {
        let now = self.shared.now();
        let (disconnects, yanked, dirty, running) = {
            let mut st = self.shared.lock();
            (
                std::mem::take(&mut st.disconnects),
                std::mem::take(&mut st.yanked),
                take_dirty(&mut st, now, !ran_oob),
                st.shutdown == ShutdownState::Running,
            )
        };
        for m in dirty {
            self.flush(m);
        }
        self.drop_connections(disconnects, yanked);
        running
    }

    fn accept_all(&mut self) {
        for i in 0..self.listeners.len() {
            while self.listeners[i].backlog && self.can_accept(&self.listeners[i]) {
                let accepted = match &self.listeners[i].bound {
                    BoundListener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
                    BoundListener::Tcp(l) => l.accept().map(|(s, _)| {
                        let _ = s.set_nodelay(true);
                        Stream::Tcp(s)
                    }),
                };
                match accepted {
                    Ok(stream) => self.open(i, stream),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.listeners[i].backlog = false
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::Interrupted
                            || e.kind() == io::ErrorKind::ConnectionAborted => {}
                    Err(e) => {
                        // EMFILE and the like: retrying at once would spin. The next readable
                        // edge or the next client leaving sets the flag again.
                        tracing::warn!(listener = i, error = %e, "accept failed");
                        self.listeners[i].backlog = false;
                    }
                }
            }
        }
    }

    fn open(&mut self, listener: usize, stream: Stream) {
        let monitor = MonitorId(self.next_monitor);
        self.next_monitor += 1;
        let token = Token(CONN_BASE + monitor.0 as usize);
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&stream.raw_fd()),
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "cannot register a new connection");
            return;
        }
        let l = &mut self.listeners[listener];
        l.active += 1;
        let options = l.options;
        tracing::info!(monitor = monitor.0, listener = %l.spec.address, "client connected");
        let chardev = l.chardev.clone();
        let conn = Conn::new(monitor, listener, stream);
        let writer = Writer::new(
            Box::new(StreamWriter(Arc::clone(&conn.stream))),
            Arc::clone(&conn.write_blocked),
        );
        let reader = self
            .dispatcher_reads
            .then(|| Reader::new(Arc::clone(&conn.stream), conn.read_token.clone()));
        self.conns.insert(monitor, conn);
        let close = {
            let mut st = self.shared.lock();
            st.attached.insert(monitor, chardev);
            st.writers.insert(monitor, writer);
            if let Some(reader) = reader {
                st.readers.insert(monitor, reader);
            }
            st.io_stats.accepted += 1;
            st.apply_locked(self.shared.now(), Input::Open { monitor, options })
        };
        drop(close);
        self.flush(monitor);
    }

    /// Close a connection: deregister it, shut the socket, tell the core (unless `yank` already
    /// did), log the summary.
    fn close(&mut self, m: MonitorId, why: &str) {
        let Some(mut conn) = self.conns.remove(&m) else {
            return;
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&conn.stream.raw_fd()));
        conn.shutdown();
        let (close, dispatch, writer, reader) = {
            let mut st = self.shared.lock();
            // Nobody writes to the socket once its writer is gone, so it can be closed (by
            // dropping `conn`, the last owner, outside the lock).
            let writer = st.writers.remove(&m);
            let reader = st.readers.remove(&m);
            let close = if st.attached.remove(&m).is_some() {
                let mut close = st.apply_locked(self.shared.now(), Input::Close { monitor: m });
                // One core monitor per connection until monitor ids are per listener slot:
                // its named fds go with it (compat case F20).
                close.extend(st.apply_locked(self.shared.now(), Input::Destroy { monitor: m }));
                close
            } else {
                Vec::new()
            };
            conn.calls = st.calls.remove(&m).unwrap_or(0);
            st.transmit.remove(&m);
            (close, self.shared.dispatcher_wanted(&st), writer, reader)
        };
        drop(close);
        if let Some(w) = writer {
            conn.bytes_out = w.bytes_out;
            conn.messages_out = w.messages_out;
        }
        if let Some(r) = reader {
            conn.bytes_in += r.bytes_in;
            conn.fds_in += r.fds_in;
        }
        if dispatch {
            self.shared.notify_dispatcher();
        }
        if let Some(l) = self.listeners.get_mut(conn.listener) {
            l.active = l.active.saturating_sub(1);
            // The next client may have been waiting in the backlog all along (edge-triggered:
            // its readiness event may be long gone).
            l.backlog = true;
        }
        conn.log_summary(why);
    }

    fn drop_connections(
        &mut self,
        disconnects: Vec<(MonitorId, DisconnectReason)>,
        yanked: Vec<MonitorId>,
    ) {
        for (m, reason) in disconnects {
            tracing::warn!(monitor = m.0, ?reason, "core disconnected a client");
            self.flush(m);
            self.close(m, "disconnected by the core");
        }
        for m in yanked {
            self.close(m, "yanked");
        }
    }

    /// Read from `m` while the core wants input (`may_read`, as of the pass start), up to
    /// `READS_PER_PASS` chunks. Each `Receive` is applied, and `m`'s output written, in one
    /// critical section, which also tells whether `m` may read on; only after running
    /// out-of-band calls, which change it, is it looked at again. True when out-of-band calls
    /// were left queued (by a read that then stopped).
    fn read_some(&mut self, m: MonitorId, mut may_read: bool) -> bool {
        for _ in 0..READS_PER_PASS {
            if !may_read {
                return false;
            }
            let Some(conn) = self.conns.get_mut(&m) else {
                return false;
            };
            // The dispatcher may be reading this connection (see `reader`): it has the IO
            // thread look again when it gives the token back.
            if !conn.read_token.take_or_note() {
                return false;
            }
            let mut fds: Vec<OwnedFd> = Vec::new();
            let read = conn.read(&mut self.buf, &mut fds);
            if !matches!(read, Ok(Chunk { n, .. }) if n > 0) {
                conn.read_token.give_back();
            }
            match read {
                Ok(Chunk { n: 0, .. }) => {
                    drop(fds);
                    self.close(m, "peer closed");
                    return false;
                }
                Ok(Chunk { n, drained }) => {
                    // Saves the read that would only say EAGAIN (one system call per batch).
                    if drained {
                        conn.read_ready = false;
                    }
                    let now = self.shared.now();
                    let (read, dispatch, next) = {
                        let mut st = self.shared.lock();
                        let read = st.apply_read(m, now, &self.buf[..n], fds);
                        let dispatch = self.shared.dispatcher_wanted(&st);
                        let next = st.server.wants_read(m) && st.shutdown == ShutdownState::Running;
                        // Applied: the next read of this stream may begin.
                        conn.read_token.give_back();
                        (read, dispatch, next)
                    };
                    let AppliedRead {
                        close,
                        refused,
                        oob,
                        flushed,
                    } = read;
                    drop(close);
                    drop(refused);
                    if dispatch {
                        self.shared.notify_dispatcher();
                    }
                    may_read = next && !drained;
                    if oob {
                        // Out-of-band requests must run before any later byte is looked at;
                        // completing them lets the core go on with the input they held.
                        self.run_oob_calls();
                        may_read = !drained && self.may_read(m);
                        self.flush(m);
                    } else if let Flushed::Failed(e) = flushed {
                        tracing::debug!(monitor = m.0, error = %e, "write failed");
                        self.close(m, "write error");
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.read_ready = false;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(monitor = m.0, error = %e, "read failed");
                    self.close(m, "read error");
                    return false;
                }
            }
        }
        false
    }

    /// Whether `m` may be read now: the core wants its input and the shim is serving.
    fn may_read(&self, m: MonitorId) -> bool {
        let st = self.shared.lock();
        st.server.wants_read(m) && st.shutdown == ShutdownState::Running
    }

    /// Run every queued out-of-band call now, on this thread, without the lock.
    fn run_oob_calls(&mut self) {
        while let Some(call) = self.shared.take_oob_call() {
            let result = self.registry.run(&self.shared, &call);
            self.shared.complete_oob(call.id, result);
        }
    }

    fn flush_all(&mut self) {
        let dirty: Vec<MonitorId> = {
            let mut st = self.shared.lock();
            std::mem::take(&mut st.transmit).into_iter().collect()
        };
        for m in dirty {
            self.flush(m);
        }
    }

    /// Write `m`'s pending output until it is empty or the socket is full, in one critical
    /// section (see [`crate::shared::CoreState::flush_locked`]).
    fn flush(&mut self, m: MonitorId) {
        let Some(conn) = self.conns.get(&m) else {
            return;
        };
        if conn.write_blocked() {
            return;
        }
        let now = self.shared.now();
        let mut close = Vec::new();
        let flushed = self.shared.lock().flush_locked(m, now, &mut close);
        drop(close);
        if let Flushed::Failed(e) = flushed {
            tracing::debug!(monitor = m.0, error = %e, "write failed");
            self.close(m, "write error");
        }
    }

    /// Shutdown: stop accepting and reading, let the in-band call in progress finish and its
    /// reply be written (bounded by `SHUTDOWN_FLUSH`), then close every connection.
    fn shutdown(&mut self, events: &mut Events) {
        for l in &mut self.listeners {
            match &mut l.bound {
                BoundListener::Unix(s, path) => {
                    let _ = self.poll.registry().deregister(s);
                    let _ = std::fs::remove_file(path);
                }
                BoundListener::Tcp(s) => {
                    let _ = self.poll.registry().deregister(s);
                }
            }
        }
        let deadline = StdInstant::now() + SHUTDOWN_FLUSH;
        loop {
            self.run_oob_calls();
            self.flush_all();
            let done = {
                let mut st = self.shared.lock();
                st.io_going_to_sleep();
                st.inband_running.is_none()
                    && st.inband_call.is_none()
                    && self
                        .conns
                        .keys()
                        .all(|m| st.server.pending_output(*m).is_empty())
            };
            let left = deadline.saturating_duration_since(StdInstant::now());
            if done || left.is_zero() {
                break;
            }
            // Woken by writability or by the dispatcher completing its call.
            let _ = self
                .poll
                .poll(events, Some(left.min(Duration::from_millis(50))));
            for ev in events.iter() {
                if ev.token().0 >= CONN_BASE {
                    let m = MonitorId((ev.token().0 - CONN_BASE) as u64);
                    if let Some(c) = self.conns.get(&m) {
                        if ev.is_writable() && c.write_blocked() {
                            self.shared.lock().writable_again(m);
                        }
                    }
                }
            }
        }
        let open: Vec<MonitorId> = self.conns.keys().copied().collect();
        for m in open {
            self.close(m, "server shutdown");
        }
        self.shared.stop();
        let leftover = {
            let mut st = self.shared.lock();
            let st = &mut *st;
            if let Some(rec) = st.recorder.as_mut() {
                rec.finish(&st.server);
            }
            st.fds.drain()
        };
        drop(leftover);
    }
}

/// The work a pass starts with, taken in its first critical section.
struct PassStart {
    /// Descriptors the timers' tick gave back (closed outside the lock).
    close: Vec<OwnedFd>,
    disconnects: Vec<(MonitorId, DisconnectReason)>,
    yanked: Vec<MonitorId>,
    /// Out-of-band calls are queued (another thread's input released held ones).
    oob: bool,
    /// Connections with unread bytes, and whether the core wants their input.
    readable: Vec<(MonitorId, bool)>,
    /// Monitors with output to write.
    dirty: Vec<MonitorId>,
}

/// Take the monitors with output to write from `transmit`, except (when `leave` is set) those
/// whose output the dispatcher is to write at the end of its run of calls, which stay there
/// (see [`crate::shared::CoreState::write_left_to_dispatcher`]).
fn take_dirty(st: &mut CoreState, now: Instant, leave: bool) -> Vec<MonitorId> {
    let mut dirty: Vec<MonitorId> = std::mem::take(&mut st.transmit).into_iter().collect();
    if leave {
        dirty.retain(|&m| {
            let left = st.write_left_to_dispatcher(m, now).is_some();
            if left {
                st.transmit.insert(m);
            }
            !left
        });
    }
    dirty
}
