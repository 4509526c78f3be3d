//! The IO thread: owns every socket (mio), performs the accepts, reads and writes the driver
//! asks for and reports what they returned, runs out-of-band handlers at once, drops the
//! sockets of connections the driver closed, and carries out shutdown. It decides nothing about
//! a connection: when to read, accept or close is the driver's answer (`should_read`,
//! `should_accept`, its actions).
//!
//! Between passes it spins for a bounded time (`tuning::IO_SPIN`) on its work hint and a
//! zero-timeout poll before its last look and a sleeping poll (see "Spinning" in `shared`).
//! Readiness events are facts too: they are kept here and reported to the driver in the next
//! critical section (the pass's first one, or the last look).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant as StdInstant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use qmp_core::server::Instant;
use qmp_driver::{CloseReason, ConnId, ReadFact, Registry, ShutdownCause};

use crate::conn::{read_fact, Stream};
use crate::listen::{accept_fact, BoundListener};
use crate::reader::{ReadToken, Reader};
use crate::shared::{CoreState, Shared};
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::tuning::{EVENTS_CAPACITY, IO_SPIN, READS_PER_PASS, READ_CHUNK, SHUTDOWN_FLUSH};
use crate::writer::{Flushed, StreamWriter, Writer};

/// Token of the waker that other threads use to wake the IO thread.
pub const WAKER_TOKEN: Token = Token(0);
/// Token of the signal self-pipe.
pub const SIGNAL_TOKEN: Token = Token(1);
/// Listener `i` has token `LISTENER_BASE + i`.
const LISTENER_BASE: usize = 16;
/// Connection `c` has token `CONN_BASE + c` (connection ids are never reused).
const CONN_BASE: usize = 1 << 20;

/// The IO thread's state; everything here is touched by the IO thread only.
pub(crate) struct IoLoop {
    pub poll: Poll,
    pub shared: Arc<Shared>,
    pub registry: Arc<Registry>,
    pub listeners: Vec<BoundListener>,
    pub conns: BTreeMap<ConnId, Conn>,
    pub signals: Option<mio::net::UnixStream>,
    /// The dispatcher may read connections while it waits for work (see [`crate::reader`]).
    pub dispatcher_reads: bool,
    /// Readiness events not yet reported to the driver (bounded by the open connections and
    /// listeners: duplicates are merged).
    ready_conns: Vec<ConnId>,
    ready_listeners: Vec<usize>,
    buf: Vec<u8>,
}

/// The work a pass starts with, taken in its first critical section.
struct PassStart {
    close: Vec<OwnedFd>,
    closed: Vec<ConnId>,
    oob: bool,
    accept: Vec<usize>,
    readable: Vec<ConnId>,
    dirty: Vec<ConnId>,
    adopted: Vec<(ConnId, Stream)>,
}

impl IoLoop {
    pub fn new(
        poll: Poll,
        shared: Arc<Shared>,
        registry: Arc<Registry>,
        listeners: Vec<BoundListener>,
        signals: Option<mio::net::UnixStream>,
        dispatcher_reads: bool,
    ) -> io::Result<Self> {
        let mut this = IoLoop {
            poll,
            shared,
            registry,
            listeners,
            conns: BTreeMap::new(),
            signals,
            dispatcher_reads,
            ready_conns: Vec::new(),
            ready_listeners: Vec::new(),
            buf: vec![0; READ_CHUNK],
        };
        for (i, l) in this.listeners.iter_mut().enumerate() {
            let token = Token(LISTENER_BASE + i);
            match l {
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
            let timeout = self.last_look();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                self.on_event(ev);
            }
        }
        self.shutdown(&mut events);
        Ok(())
    }

    /// Spin up to `IO_SPIN` for work: true when some was found.
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

    /// Keep what `ev` says for the driver; false when it changes nothing to do (a socket
    /// writable again that was not blocked: every read of our replies by the client makes one).
    fn on_event(&mut self, ev: &mio::event::Event) -> bool {
        let t = ev.token().0;
        if ev.token() == SIGNAL_TOKEN {
            self.drain_signal_pipe();
            tracing::info!("signal received, shutting down");
            self.shared.request_shutdown(ShutdownCause::Signal);
        } else if (LISTENER_BASE..CONN_BASE).contains(&t) {
            if !self.ready_listeners.contains(&(t - LISTENER_BASE)) {
                self.ready_listeners.push(t - LISTENER_BASE);
            }
        } else if t >= CONN_BASE {
            let id = ConnId((t - CONN_BASE) as u64);
            let Some(c) = self.conns.get(&id) else {
                return false;
            };
            let mut work = false;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                if !self.ready_conns.contains(&id) {
                    self.ready_conns.push(id);
                }
                work = true;
            }
            if (ev.is_writable() || ev.is_write_closed()) && c.write_blocked() {
                self.shared.lock().writable_again(id);
                work = true;
            }
            return work;
        }
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

    /// Report the readiness events kept since the last critical section (under the lock).
    fn report_readiness(&mut self, st: &mut CoreState) {
        for c in self.ready_conns.drain(..) {
            st.driver.handle_readable(c);
        }
        for l in self.ready_listeners.drain(..) {
            st.driver.handle_listener_ready(l);
        }
    }

    /// The last look before sleeping: how long the next poll may sleep (until the driver's next
    /// deadline, or not at all when it has work).
    fn last_look(&mut self) -> Option<Duration> {
        let now = self.shared.now();
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        shared.io_last_look(&mut st);
        self.report_readiness(&mut st);
        // Output the dispatcher is to write is not work yet, only a deadline.
        let mut left_until: Option<Instant> = None;
        for c in st.driver.transmits() {
            match st.write_left_to_dispatcher(c, now) {
                Some(until) => left_until = Some(left_until.map_or(until, |u| u.min(until))),
                None => return Some(Duration::ZERO),
            }
        }
        let d = &st.driver;
        if st.io_work_pending_besides_output()
            || self.conns.keys().any(|&c| d.should_read(c))
            || (0..d.listener_count()).any(|l| d.should_accept(l, now))
        {
            return Some(Duration::ZERO);
        }
        let deadline = match (d.poll_timeout(), left_until) {
            (Some(t), Some(u)) => t.min(u),
            (t, u) => t.or(u)?,
        };
        Some(Duration::from_nanos(deadline.0.saturating_sub(now.0)))
    }

    /// One round of work: timers, closes, accepts, reads, out-of-band calls, writes. Bounded:
    /// each connection gets at most `READS_PER_PASS` reads. False once shutdown was requested.
    pub fn service(&mut self) -> bool {
        let start = self.begin_pass();
        drop(start.close);
        self.drop_closed(start.closed);
        for (id, stream) in start.adopted {
            self.adopt(id, stream);
        }
        for l in start.accept {
            self.accept_all(l);
        }
        let mut oob = start.oob;
        for c in start.readable {
            oob |= self.read_some(c);
        }
        if oob {
            self.run_oob_calls();
        }
        for c in start.dirty {
            self.flush(c);
        }
        self.end_pass(oob)
    }

    /// The pass's first critical section.
    fn begin_pass(&mut self) -> PassStart {
        let now = self.shared.now();
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        shared.io_pass_started(&mut st);
        self.report_readiness(&mut st);
        if st.driver.poll_timeout().is_some_and(|t| t <= now) {
            st.driver.handle_timeout(now);
        }
        let close = st.settle();
        let d = &st.driver;
        let accept = (0..d.listener_count())
            .filter(|&l| d.should_accept(l, now))
            .collect();
        let readable = self
            .conns
            .keys()
            .copied()
            .filter(|&c| d.should_read(c))
            .collect();
        PassStart {
            close,
            closed: st.take_closed(),
            oob: st.driver.has_oob_calls(),
            accept,
            readable,
            dirty: take_dirty(&mut st, now, true),
            adopted: std::mem::take(&mut st.adopted),
        }
    }

    /// The pass's last critical section: output and closes that appeared during the pass
    /// (all output when the pass ran out-of-band calls: their replies are not left to the
    /// dispatcher). False once shutdown was requested.
    fn end_pass(&mut self, ran_oob: bool) -> bool {
        let now = self.shared.now();
        let (closed, dirty, running) = {
            let mut st = self.shared.lock();
            (
                st.take_closed(),
                take_dirty(&mut st, now, !ran_oob),
                st.driver.running(),
            )
        };
        for c in dirty {
            self.flush(c);
        }
        self.drop_closed(closed);
        running
    }

    /// Accept on listener `l` while the driver says so.
    fn accept_all(&mut self, l: usize) {
        loop {
            let accepted = match &self.listeners[l] {
                BoundListener::Unix(s, _) => s.accept().map(|(s, _)| Stream::Unix(s)),
                BoundListener::Tcp(s) => s.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
            };
            let now = self.shared.now();
            match accepted {
                Ok(stream) => {
                    if !self.open(l, stream) {
                        return;
                    }
                }
                Err(e) => {
                    let fact = accept_fact(&e);
                    let mut st = self.shared.lock();
                    st.driver.handle_accept_failed(now, l, fact);
                    if !st.driver.should_accept(l, now) {
                        return;
                    }
                }
            }
        }
    }

    /// Hand an accepted socket to the driver; false when the listener should accept no more.
    fn open(&mut self, l: usize, stream: Stream) -> bool {
        let now = self.shared.now();
        let (conn, close, more) = {
            let mut st = self.shared.lock();
            let Some(id) = st.driver.handle_accepted(now, l) else {
                // Not wanted after all: the socket is dropped (outside the lock).
                drop(st);
                drop(stream);
                return false;
            };
            let conn = self.attach(&mut st, id, stream);
            (conn, st.settle(), st.driver.should_accept(l, now))
        };
        drop(close);
        self.register(now, conn);
        more
    }

    /// Serve a stream a handler made a client (QMP `add_client`): the driver opened its
    /// connection already; it is dropped if the driver closed it since.
    fn adopt(&mut self, id: ConnId, stream: Stream) {
        let now = self.shared.now();
        let conn = {
            let mut st = self.shared.lock();
            if !st.driver.is_open(id) {
                drop(st);
                drop(stream);
                return;
            }
            self.attach(&mut st, id, stream)
        };
        self.register(now, conn);
    }

    /// Give connection `id`'s socket its write and read sides (under the lock).
    fn attach(&self, st: &mut CoreState, id: ConnId, stream: Stream) -> Conn {
        let conn = Conn::new(id, stream);
        let writer = Writer::new(
            Box::new(StreamWriter(Arc::clone(&conn.stream))),
            Arc::clone(&conn.write_blocked),
        );
        let reader = self
            .dispatcher_reads
            .then(|| Reader::new(Arc::clone(&conn.stream), conn.read_token.clone()));
        st.attach(id, writer, reader);
        conn
    }

    /// Register an attached connection with mio and write its greeting.
    fn register(&mut self, now: Instant, conn: Conn) {
        let id = conn.id;
        let sources = conn.stream.poll_sources();
        self.conns.insert(id, conn);
        let registered = sources.iter().try_for_each(|&(fd, interest)| {
            match self.poll.registry().register(
                &mut SourceFd(&fd),
                Token(CONN_BASE + id.0 as usize),
                interest,
            ) {
                // A regular file or /dev/null as standard input or output: epoll refuses it,
                // and it is always ready (a read or write never says would-block), which is
                // what an unregistered descriptor is to the driver.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                    Ok(())
                }
                r => r,
            }
        });
        if let Err(e) = registered {
            tracing::warn!(error = %e, "cannot register a new connection");
            let mut st = self.shared.lock();
            st.driver.close(now, id, CloseReason::ReadFailed(e.kind()));
            let close = st.settle();
            drop(st);
            drop(close);
            return;
        }
        self.flush(id);
    }

    /// Drop the sockets of connections the driver closed (outside the lock) and tell the
    /// registry's session hooks.
    fn drop_closed(&mut self, closed: Vec<ConnId>) {
        for id in closed {
            if let Some(conn) = self.conns.remove(&id) {
                for (fd, _) in conn.stream.poll_sources() {
                    let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                }
                conn.stream.shutdown();
                drop(conn);
            }
            self.registry.session_closed(id);
        }
    }

    /// Read `c` while the driver says so, up to `READS_PER_PASS` reads, reporting each result.
    /// True when out-of-band calls were left queued.
    fn read_some(&mut self, c: ConnId) -> bool {
        for _ in 0..READS_PER_PASS {
            let Some(conn) = self.conns.get(&c) else {
                return false;
            };
            // The dispatcher may be reading this connection (see `reader`): it has the IO
            // thread look again when it gives the token back.
            if !conn.read_token.take_or_note() {
                return false;
            }
            let token = conn.read_token.clone();
            let mut fds: Vec<OwnedFd> = Vec::new();
            let read = conn.stream.read_chunk(&mut self.buf, &mut fds);
            let now = self.shared.now();
            let fact = read_fact(read, &self.buf, fds);
            let data = matches!(fact, ReadFact::Data { .. });
            let (read, dispatch, next) = {
                let mut st = self.shared.lock();
                let read = st.apply_read(c, now, fact);
                let dispatch = self.shared.dispatcher_wanted(&st);
                let next = st.driver.should_read(c);
                // Reported: the next read of this stream may begin.
                token.give_back();
                (read, dispatch, next)
            };
            drop(read.close);
            if dispatch {
                self.shared.notify_dispatcher();
            }
            if !data {
                return false;
            }
            if read.oob {
                // Out-of-band requests run before any later byte is looked at; completing them
                // lets the core go on with the input they held.
                self.run_oob_calls();
                self.flush(c);
            } else if let Flushed::Failed(e) = read.flushed {
                tracing::debug!(conn = c.0, error = %e, "write failed");
                return false;
            }
            if !(next || (read.oob && self.shared.lock().driver.should_read(c))) {
                return false;
            }
        }
        false
    }

    /// Run every queued out-of-band call now, on this thread, without the lock.
    fn run_oob_calls(&mut self) {
        while let Some(call) = self.shared.take_oob_call() {
            let result = self.registry.run(&*self.shared, &call.call, call.session);
            self.shared.complete_oob(call.call.id, result);
        }
    }

    /// Write `c`'s pending output until it is empty or the socket is full, in one critical
    /// section (see [`CoreState::flush_locked`]).
    fn flush(&mut self, c: ConnId) {
        let Some(conn) = self.conns.get(&c) else {
            return;
        };
        if conn.write_blocked() {
            return;
        }
        let now = self.shared.now();
        let mut close = Vec::new();
        let flushed = self.shared.lock().flush_locked(c, now, &mut close);
        drop(close);
        if let Flushed::Failed(e) = flushed {
            tracing::debug!(conn = c.0, error = %e, "write failed");
        }
    }

    /// Shutdown: stop accepting and reading, let the in-band call in progress finish and the
    /// last output be written (bounded by `SHUTDOWN_FLUSH`), then close every connection.
    fn shutdown(&mut self, events: &mut Events) {
        for l in &mut self.listeners {
            match l {
                BoundListener::Unix(s, path) => {
                    let _ = self.poll.registry().deregister(s);
                    let _ = std::fs::remove_file(&*path);
                }
                BoundListener::Tcp(s) => {
                    let _ = self.poll.registry().deregister(s);
                }
            }
        }
        let deadline = StdInstant::now() + SHUTDOWN_FLUSH;
        loop {
            self.run_oob_calls();
            let (dirty, closed, done) = {
                let shared = Arc::clone(&self.shared);
                let mut st = shared.lock();
                shared.io_last_look(&mut st);
                let dirty: Vec<ConnId> = st.driver.transmits().collect();
                let done = st.inband_running.is_none() && st.driver.shutdown_flushed();
                (dirty, st.take_closed(), done)
            };
            for c in dirty {
                self.flush(c);
            }
            self.drop_closed(closed);
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
                    let id = ConnId((ev.token().0 - CONN_BASE) as u64);
                    if ev.is_writable() && self.conns.get(&id).is_some_and(Conn::write_blocked) {
                        self.shared.lock().writable_again(id);
                    }
                }
            }
        }
        let (close, closed, adopted) = {
            let mut st = self.shared.lock();
            st.driver.finish(self.shared.now());
            let adopted = std::mem::take(&mut st.adopted);
            (st.settle(), st.take_closed(), adopted)
        };
        drop(close);
        drop(adopted);
        self.drop_closed(closed);
        self.shared.stop();
    }
}

/// An open connection as the IO thread holds it.
#[derive(Debug)]
pub struct Conn {
    /// The driver's name for it.
    pub id: ConnId,
    /// The socket, shared with its writer and reader (in the locked state); closed when the
    /// last holder drops it: this `Conn` (the driver removes the other two under the lock
    /// first and the IO thread drops it outside), or the dispatcher's copy of the reader at
    /// the end of a spin (also outside the lock).
    pub stream: Arc<Stream>,
    /// The writer's blocked flag (see `writer`): a writable event matters only while it is set.
    pub write_blocked: Arc<AtomicBool>,
    /// Taken around each read and its report (see [`crate::reader`]).
    pub read_token: ReadToken,
}

impl Conn {
    /// A fresh connection.
    pub fn new(id: ConnId, stream: Stream) -> Self {
        Conn {
            id,
            stream: Arc::new(stream),
            write_blocked: Arc::new(AtomicBool::new(false)),
            read_token: ReadToken::default(),
        }
    }

    /// Whether the writer's last attempt was refused and no writable event was handled since
    /// (read without the lock; see `writer`).
    pub fn write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::SeqCst)
    }
}

/// Take the connections with output to write, except (when `leave` is set) those whose output
/// the dispatcher is to write at the end of its run of calls, which stay listed (see
/// [`CoreState::write_left_to_dispatcher`]).
fn take_dirty(st: &mut CoreState, now: Instant, leave: bool) -> Vec<ConnId> {
    let all: Vec<ConnId> = st.driver.transmits().collect();
    all.into_iter()
        .filter(|&c| {
            let take = !leave || st.write_left_to_dispatcher(c, now).is_none();
            if take {
                st.driver.take_transmit(c);
            }
            take
        })
        .collect()
}
