//! The state shared by the IO thread, the dispatcher thread and event emitters, and the
//! adapter's locking and wake-up protocol. Every decision about a connection is the driver's
//! ([`qmp_driver::Driver`], inside the lock); this module only says who is woken when.
//!
//! # Locks and who touches what
//!
//! * `Shared::state` (the one lock) protects the [`Driver`] (core, fd table, recorder,
//!   connections' lifecycle, routed outputs) and the adapter's per-connection write and read
//!   sides. Every thread takes it briefly; **no handler runs while it is held** and no
//!   descriptor is closed while it is held (the driver hands descriptors back as actions,
//!   [`CoreState::settle`] collects them, the caller drops them after unlocking).
//! * `Shared::dispatcher_cv` is paired with `state`. It is signalled when an input may have
//!   made the driver's in-band lane ready *and* the dispatcher is waiting on it
//!   (`CoreState::dispatcher_waiting`, set and cleared by the dispatcher under the lock around
//!   its wait), and at stop. The dispatcher re-checks under the lock before it waits, so none
//!   is lost, and it never signals itself.
//! * The IO thread sleeps in `poll` and is woken through [`Wake`] (a mio `Waker`). Whoever
//!   leaves work for the IO thread (output to write, an out-of-band call, a closed connection's
//!   socket to drop, shutdown, a monitor that may read again) calls [`Shared::wake_io`]
//!   *after* releasing the lock, if [`Shared::io_work_left`] said so in the critical section
//!   that left the work. Wakes are coalesced by `CoreState::io_idle`: set by the IO thread in
//!   the same critical section as its last look before `poll` ([`Shared::io_last_look`]),
//!   cleared by the first waker after it (who then wakes it) and by the IO thread's next pass
//!   ([`Shared::io_pass_started`]). A waker whose critical section came before the last look
//!   left work that the look sees; one that came after finds `io_idle` set and wakes.
//!
//! # Spinning
//!
//! Before it sleeps each thread spins for a bounded time (`tuning`) on an atomic *hint* that
//! whoever leaves it work sets: `dispatch_hint` (set under the lock by
//! [`Shared::dispatcher_wanted`] after any input that left the in-band lane ready; cleared by
//! the dispatcher when it finds no work) and `io_hint` (set by [`Shared::io_work_left`];
//! cleared at the start of each IO pass). While spinning a thread has not taken its last look
//! (`dispatcher_waiting` and `io_idle` are false), so nobody signals it; after the spin it
//! takes the lock and looks as usual, so a missed or stale hint costs time, never a wake-up.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use qmp_core::json::Object;
use qmp_core::server::{CallId, CallResult, Instant, MonitorId, RunState, Server, TakeFdError};
use qmp_driver::{
    Action, AddClient, ConnId, Control, Driver, ReadFact, SessionCall, ShutdownCause, TakenFd,
};

use crate::clock::Clock;
use crate::conn::Stream;
use crate::reader::Reader;
use crate::sync::{self, AtomicBool, Condvar, Mutex, MutexGuard, Ordering};
use crate::tuning::{RUN_WRITE_CALLS, WRITE_LEFT_TO_DISPATCHER};
use crate::writer::{Flushed, Writer, Writers};

/// A run of in-band calls of one connection on the dispatcher: consecutive calls whose replies
/// the dispatcher writes in one go when the run ends (the next call is another connection's,
/// there is none, or [`RUN_WRITE_CALLS`] ran).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct InbandRun {
    /// Whose calls.
    pub conn: ConnId,
    /// When the dispatcher took the run's latest call.
    pub call_taken: Instant,
    /// Calls of the run so far, the running one included.
    pub calls: u32,
}

/// What [`CoreState::apply_read`] came to.
pub struct AppliedRead {
    /// Descriptors to close after the lock is released.
    pub close: Vec<OwnedFd>,
    /// Out-of-band calls are queued: the IO thread must run them before anything else.
    pub oob: bool,
    /// What the write of the connection's output came to (`More` when it was left).
    pub flushed: Flushed,
}

/// Something that wakes the IO thread out of its poll (a mio `Waker` in production, a flag in
/// loom models). Must be cheap, non-blocking, and callable from any thread.
pub trait Wake: Send + Sync {
    /// Make the IO thread's current or next poll return.
    fn wake(&self);
}

/// Counters of the adapter's socket work.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Writes the socket took only part of.
    pub partial_writes: u64,
    /// Writes refused with EAGAIN.
    pub blocked_writes: u64,
    /// Reads that returned data.
    pub reads: u64,
    /// Of those, reads the dispatcher made while it waited for work (see [`crate::reader`]).
    pub dispatcher_reads: u64,
    /// Connections accepted.
    pub accepted: u64,
}

/// Everything behind the one lock.
pub struct CoreState {
    /// The driver: core, fd table, recorder, every connection's lifecycle.
    pub(crate) driver: Driver<OwnedFd>,
    /// The dispatcher is blocked on `dispatcher_cv` (set and cleared by the dispatcher only).
    pub(crate) dispatcher_waiting: bool,
    /// The IO thread took its last look and may be asleep in `poll`, and nobody has woken it
    /// since (see the module docs).
    io_idle: bool,
    /// The write side of each open connection (added by the IO thread at accept, removed here
    /// when the driver closes the connection; whoever holds the lock may write).
    pub(crate) writers: Writers,
    /// The read side of each open connection, for the dispatcher (absent when the dispatcher
    /// does not read).
    pub(crate) readers: BTreeMap<ConnId, Reader>,
    /// Connections the driver closed whose sockets the IO thread must drop (bounded by the
    /// open connections).
    pub(crate) closed: Vec<ConnId>,
    /// The connection whose run of in-band calls the dispatcher ended last: the one it reads
    /// while it spins for more work.
    pub(crate) follow_up: Option<ConnId>,
    /// The dispatcher's read buffer, kept between spins.
    pub(crate) dispatcher_buf: Vec<u8>,
    /// The in-band call the dispatcher is running now (taken, not yet completed).
    pub(crate) inband_running: Option<CallId>,
    /// The dispatcher's current run of in-band calls.
    pub(crate) inband_run: Option<InbandRun>,
    /// The IO thread has stopped: the dispatcher returns.
    pub(crate) stopped: bool,
    /// Reads the dispatcher made.
    pub(crate) dispatcher_reads: u64,
    /// Streams the driver took as clients from a handler (QMP `add_client`) that the IO thread
    /// must register (bounded by the open connections: each is one).
    pub(crate) adopted: Vec<(ConnId, Stream)>,
}

impl CoreState {
    fn new(driver: Driver<OwnedFd>) -> Self {
        CoreState {
            driver,
            dispatcher_waiting: false,
            io_idle: false,
            writers: Writers::default(),
            readers: BTreeMap::new(),
            closed: Vec::new(),
            follow_up: None,
            dispatcher_buf: Vec::new(),
            inband_running: None,
            inband_run: None,
            adopted: Vec::new(),
            stopped: false,
            dispatcher_reads: 0,
        }
    }

    /// The driver (read only).
    pub fn driver(&self) -> &Driver<OwnedFd> {
        &self.driver
    }

    /// The driver, to feed it a fact or an input (the IO thread's and the dispatcher's paths
    /// do; so do loom models). Whoever does must [`CoreState::settle`] in the same critical
    /// section and wake whoever has work after unlocking.
    pub fn driver_mut(&mut self) -> &mut Driver<OwnedFd> {
        &mut self.driver
    }

    /// The core (read only).
    pub fn server(&self) -> &Server {
        self.driver.server()
    }

    /// Give the open connection `conn` its write side (and its read side for the dispatcher):
    /// from here on whoever holds the lock may write to it (the IO thread does this at accept).
    pub fn attach(&mut self, conn: ConnId, writer: Writer, reader: Option<Reader>) {
        self.writers.insert(conn, writer);
        if let Some(r) = reader {
            self.readers.insert(conn, r);
        }
    }

    /// Connections the driver closed since the last call, whose sockets the IO thread must
    /// drop (outside the lock).
    pub fn take_closed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.closed)
    }

    /// Carry out the driver's actions that must happen in this critical section: a closed
    /// connection loses its write and read sides at once (nobody writes to its socket after
    /// this) and is queued for the IO thread to drop; descriptors are returned, to be dropped
    /// after the lock is released.
    #[must_use = "the returned descriptors must be dropped outside the lock"]
    pub fn settle(&mut self) -> Vec<OwnedFd> {
        let mut close = Vec::new();
        while let Some(action) = self.driver.poll_action() {
            match action {
                Action::CloseFd(fd) => close.push(fd),
                Action::CloseConn { conn, .. } => {
                    self.writers.remove(conn);
                    self.readers.remove(&conn);
                    if self.follow_up == Some(conn) {
                        self.follow_up = None;
                    }
                    self.closed.push(conn);
                }
            }
        }
        close
    }

    /// Apply one read of `conn` (its bytes and descriptors), then write `conn`'s output, unless
    /// out-of-band calls were queued (their replies come first: the IO thread runs them, then
    /// writes) or the output is the dispatcher's to write at the end of its run.
    #[must_use = "the descriptors in it must be dropped outside the lock"]
    pub fn apply_read(
        &mut self,
        conn: ConnId,
        now: Instant,
        fact: ReadFact<'_, OwnedFd>,
    ) -> AppliedRead {
        self.driver.handle_read(now, conn, fact);
        let mut close = self.settle();
        let oob = self.driver.has_oob_calls();
        let flushed = if oob || self.write_left_to_dispatcher(conn, now).is_some() {
            Flushed::More
        } else {
            self.flush_locked(conn, now, &mut close)
        };
        AppliedRead {
            close,
            oob,
            flushed,
        }
    }

    /// True when the IO thread has something to do.
    pub fn io_work_pending(&self) -> bool {
        self.driver.transmits().next().is_some() || self.io_work_pending_besides_output()
    }

    /// True when the IO thread has something to do other than writing output.
    pub fn io_work_pending_besides_output(&self) -> bool {
        self.driver.has_oob_calls()
            || !self.closed.is_empty()
            || !self.adopted.is_empty()
            || !self.driver.running()
    }

    /// Whoever just left work for the IO thread in this critical section asks whether it must
    /// wake it: true (once) when the IO thread may be asleep.
    pub(crate) fn take_io_wake(&mut self) -> bool {
        std::mem::take(&mut self.io_idle)
    }

    /// True when the dispatcher is waiting and has work: signal `dispatcher_cv` after releasing
    /// the lock.
    fn dispatcher_needs_signal(&self) -> bool {
        self.dispatcher_waiting && self.driver.dispatcher_ready()
    }

    /// Until when the IO thread must leave `conn`'s pending output to the dispatcher, or `None`
    /// when it writes it itself as usual: while the dispatcher runs a call of `conn`, the
    /// replies of the run so far wait for the dispatcher's write at the end of the run (so a
    /// pipelining client gets a batch in one write), for at most [`WRITE_LEFT_TO_DISPATCHER`]
    /// after the dispatcher took its call, and never while out-of-band calls are queued.
    pub fn write_left_to_dispatcher(&self, conn: ConnId, now: Instant) -> Option<Instant> {
        let run = self.inband_run?;
        if run.conn != conn || self.inband_running.is_none() || self.driver.has_oob_calls() {
            return None;
        }
        let until = run
            .call_taken
            .plus_nanos(WRITE_LEFT_TO_DISPATCHER.as_nanos() as u64);
        (now < until).then_some(until)
    }

    /// The dispatcher took `call` (or found none) at `now`: mark it running and extend the
    /// current run or start a new one.
    pub(crate) fn take_inband(&mut self, call: Option<&SessionCall>, now: Instant) {
        self.inband_running = call.map(|c| c.call.id);
        self.inband_run = call.map(|c| match self.inband_run {
            Some(run) if run.conn == c.session => InbandRun {
                conn: c.session,
                call_taken: now,
                calls: run.calls + 1,
            },
            _ => InbandRun {
                conn: c.session,
                call_taken: now,
                calls: 1,
            },
        });
    }

    /// Whether `next` continues the dispatcher's current run of calls.
    pub(crate) fn continues_run(&self, next: Option<&SessionCall>) -> bool {
        match (next, self.inband_run) {
            (Some(c), Some(run)) => c.session == run.conn && run.calls < RUN_WRITE_CALLS,
            _ => false,
        }
    }

    /// Write `conn`'s pending output (see [`Writers::flush`]); descriptors go to `close`, to be
    /// dropped after the lock is released. A failed write closes the connection in the driver.
    pub fn flush_locked(
        &mut self,
        conn: ConnId,
        now: Instant,
        close: &mut Vec<OwnedFd>,
    ) -> Flushed {
        let flushed = self.writers.flush(&mut self.driver, conn, now);
        close.extend(self.settle());
        flushed
    }

    /// The IO thread saw `conn`'s socket become writable while its writer was blocked.
    pub fn writable_again(&mut self, conn: ConnId) {
        self.writers.writable_again(&mut self.driver, conn);
    }

    /// Counters of the socket work.
    pub fn io_stats(&self) -> IoStats {
        let d = self.driver.stats();
        IoStats {
            partial_writes: d.partial_writes,
            blocked_writes: d.blocked_writes,
            reads: d.reads,
            dispatcher_reads: self.dispatcher_reads,
            accepted: d.accepted,
        }
    }
}

/// The shared half of the adapter: the locked state, the dispatcher's condition variable, the
/// IO thread's waker and the clock.
pub struct Shared {
    /// The one lock (see the module docs).
    state: Mutex<CoreState>,
    /// Signalled when the dispatcher may have work, or at stop.
    dispatcher_cv: Condvar,
    waker: Box<dyn Wake>,
    /// Set when work is left for the IO thread (see "Spinning").
    io_hint: AtomicBool,
    /// Set when an input left the dispatcher work (see "Spinning").
    pub(crate) dispatch_hint: AtomicBool,
    clock: Box<dyn Clock>,
    /// Chardev ids of the listeners, in order (immutable after start).
    chardevs: Vec<String>,
}

impl Shared {
    /// Shared state around `driver`.
    pub fn new(driver: Driver<OwnedFd>, waker: Box<dyn Wake>, clock: Box<dyn Clock>) -> Self {
        let chardevs = driver.chardevs().map(str::to_owned).collect();
        Shared {
            state: Mutex::new(CoreState::new(driver)),
            dispatcher_cv: Condvar::new(),
            waker,
            io_hint: AtomicBool::new(false),
            dispatch_hint: AtomicBool::new(false),
            clock,
            chardevs,
        }
    }

    /// Take the one lock. Callers must not run handlers or close descriptors while holding it.
    pub fn lock(&self) -> MutexGuard<'_, CoreState> {
        sync::lock(&self.state)
    }

    /// The monotonic clock reading to pass with the next input.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Wake the IO thread (unconditionally: callers ask [`Shared::io_work_left`] first).
    pub fn wake_io(&self) {
        self.waker.wake();
    }

    /// Whoever just left work for the IO thread in the critical section of `st` calls this
    /// there: it sets the IO thread's hint and says (once) whether the IO thread must be woken
    /// with [`Shared::wake_io`] after the lock is released.
    pub fn io_work_left(&self, st: &mut CoreState) -> bool {
        self.io_hint.store(true, Ordering::Release);
        st.take_io_wake()
    }

    /// The IO thread starts a pass (under the lock): hints set before now are about work this
    /// pass sees anyway, and wakers need not wake it until its next last look.
    pub fn io_pass_started(&self, st: &mut CoreState) {
        st.io_idle = false;
        self.io_hint.store(false, Ordering::Release);
    }

    /// The IO thread's last look before it sleeps in `poll` (under the lock, in the critical
    /// section where it decides how long to sleep): from here on a waker must wake it.
    pub fn io_last_look(&self, st: &mut CoreState) {
        st.io_idle = true;
    }

    /// The IO thread's spin between a pass and its last look: up to `bound`, until work was
    /// left for it (its hint, consumed) or `other_work` (a zero-timeout poll of its sockets)
    /// finds some. True when work was found.
    pub fn io_spin(
        &self,
        bound: std::time::Duration,
        mut other_work: impl FnMut() -> bool,
    ) -> bool {
        sync::spin_until(bound, || {
            self.io_hint.swap(false, Ordering::AcqRel) || other_work()
        })
    }

    /// Whoever applied an input in the critical section of `st` calls this there: it sets the
    /// dispatcher's hint when the in-band lane has work, and says whether the dispatcher is
    /// asleep and must be signalled with [`Shared::notify_dispatcher`] after unlocking.
    pub fn dispatcher_wanted(&self, st: &CoreState) -> bool {
        if st.driver.dispatcher_ready() {
            self.dispatch_hint.store(true, Ordering::Release);
        }
        st.dispatcher_needs_signal()
    }

    /// Tell the dispatcher to look at the state again.
    pub fn notify_dispatcher(&self) {
        self.dispatcher_cv.notify_one();
    }

    /// The end of a critical section's work, after the lock is released: close the descriptors,
    /// then signal the dispatcher and wake the IO thread as the section decided.
    pub(crate) fn after_unlock(&self, close: Vec<OwnedFd>, dispatch: bool, wake_io: bool) {
        drop(close);
        if dispatch {
            self.notify_dispatcher();
        }
        if wake_io {
            self.wake_io();
        }
    }

    /// Apply an input from a thread other than the IO thread: lock, let `f` feed the driver,
    /// unlock, close descriptors, wake whoever has work. `may_read_again`: the input may let a
    /// monitor read again (a resume, a completion), which only the IO thread acts on.
    pub fn apply(&self, may_read_again: bool, f: impl FnOnce(&mut Driver<OwnedFd>, Instant)) {
        let now = self.clock.now();
        let (close, io_work, dispatch) = {
            let mut st = self.lock();
            f(&mut st.driver, now);
            let close = st.settle();
            let io_work = (may_read_again || st.io_work_pending()) && self.io_work_left(&mut st);
            (close, io_work, self.dispatcher_wanted(&st))
        };
        self.after_unlock(close, dispatch, io_work);
    }

    /// Emit an event from any thread (QEMU's `qapi_event_send_*`): stamped with the wall clock
    /// now, throttled and broadcast by the core, written by the IO thread.
    pub fn emit_event(&self, name: &str, data: Object) {
        let timestamp = self.clock.wall();
        self.apply(false, |d, now| d.emit_event(now, name, data, timestamp));
    }

    /// Change the VM run state the core knows about.
    pub fn set_run_state(&self, state: RunState) {
        self.apply(false, |d, now| d.set_run_state(now, state));
    }

    /// Another subsystem pauses reading `monitor` (nests), or resumes it.
    pub fn suspend(&self, monitor: MonitorId, suspend: bool) {
        self.apply(!suspend, |d, now| d.suspend(now, monitor, suspend));
    }

    /// Ask for shutdown; the IO thread flushes output, closes every connection and stops the
    /// dispatcher. On a signal, negotiated clients get QEMU's SHUTDOWN event first.
    pub fn request_shutdown(&self, cause: ShutdownCause) {
        let wall = self.clock.wall();
        self.apply(false, |d, now| d.request_shutdown(now, cause, wall));
    }

    /// Drop the clients of chardev `id` (QEMU's chardev yank): the driver closes them at once,
    /// under the lock, so the reply of the `yank` call itself goes nowhere when the caller
    /// yanked its own connection, as in QEMU. False when there is no such chardev.
    pub fn yank(&self, id: &str) -> bool {
        let mut found = false;
        self.apply(false, |d, now| found = d.yank(now, id));
        found
    }

    /// The IO thread takes the next out-of-band call to run (without the lock).
    pub fn take_oob_call(&self) -> Option<SessionCall> {
        self.lock().driver.take_oob_call()
    }

    /// The IO thread reports an out-of-band call's result; the input the core held while it ran
    /// may queue requests for the dispatcher, and an in-band completion it released is applied
    /// right after it (see [`Driver::complete`]).
    pub fn complete_oob(&self, call: CallId, result: CallResult) {
        let now = self.clock.now();
        let (close, dispatch) = {
            let mut st = self.lock();
            st.driver.complete(now, call, result);
            let close = st.settle();
            (close, self.dispatcher_wanted(&st))
        };
        self.after_unlock(close, dispatch, false);
    }

    /// Mark the adapter stopped and release the dispatcher.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.dispatcher_cv.notify_all();
    }

    /// The dispatcher's wait on its condition variable (under the lock).
    pub(crate) fn dispatcher_wait<'a>(
        &self,
        mut st: MutexGuard<'a, CoreState>,
    ) -> MutexGuard<'a, CoreState> {
        st.dispatcher_waiting = true;
        st = sync::wait(&self.dispatcher_cv, st);
        st.dispatcher_waiting = false;
        st
    }
}

impl Control for Shared {
    fn emit_event(&self, name: &str, data: Object) {
        Shared::emit_event(self, name, data);
    }

    fn set_run_state(&self, state: RunState) {
        Shared::set_run_state(self, state);
    }

    fn request_shutdown(&self) {
        Shared::request_shutdown(self, ShutdownCause::Request);
    }

    fn chardevs(&self) -> Vec<String> {
        self.chardevs.clone()
    }

    fn yank_chardev(&self, id: &str) -> bool {
        self.yank(id)
    }

    fn session_open(&self, session: ConnId) -> bool {
        self.lock().driver.is_open(session)
    }

    fn suspend_hmp_caller(&self, call: CallId) -> bool {
        let mut done = false;
        self.apply(false, |d, now| done = d.suspend_hmp_caller(now, call));
        done
    }

    fn take_named_fd(&self, monitor: MonitorId, name: &str) -> Result<TakenFd, TakeFdError> {
        let mut taken = None;
        self.apply(false, |d, now| {
            taken = Some(d.take_named_fd(now, monitor, name))
        });
        match taken {
            Some(r) => r.map(TakenFd::new),
            None => Err(TakeFdError::UnknownMonitor(monitor)),
        }
    }

    fn add_client(&self, chardev: &str, fd: TakenFd) -> AddClient {
        let listener = self.lock().driver.listener_of(chardev);
        // Every refusal drops (closes) the descriptor here, outside the lock.
        let Some(l) = listener else {
            return AddClient::NoSuchChardev;
        };
        let Ok(fd) = fd.downcast::<OwnedFd>() else {
            return AddClient::Refused;
        };
        let stream = match Stream::from_fd(fd) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(chardev, error = %e, "add_client: not a stream socket");
                return AddClient::Refused;
            }
        };
        // Taken by the driver and queued for the IO thread in one critical section, so that no
        // pass sees the connection without its stream.
        let now = self.clock.now();
        let mut refused = None;
        let (added, close, wake, dispatch) = {
            let mut st = self.lock();
            let added = st.driver.handle_added(now, l);
            match added {
                Some(id) => st.adopted.push((id, stream)),
                None => refused = Some(stream),
            }
            let close = st.settle();
            let wake = self.io_work_left(&mut st);
            (added, close, wake, self.dispatcher_wanted(&st))
        };
        drop(refused);
        self.after_unlock(close, dispatch, wake);
        added.map_or(AddClient::Refused, AddClient::Added)
    }
}
