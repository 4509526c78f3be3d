//! The state shared by the IO thread, the dispatcher thread and event emitters, and the small
//! functions that implement the shim's locking and wake-up protocol.
//!
//! # Locks and who touches what
//!
//! * `Shared::state` (the one lock) protects the [`Server`] and everything that must change in
//!   the same step as it: the fd table, the outputs sorted by who must act on them, the recorder
//!   and the shutdown state. Every thread takes it briefly; **no handler runs while it is held**
//!   and no descriptor is closed while it is held.
//! * `Shared::dispatcher_cv` is paired with `state`. It is signalled when an input may have
//!   made `Server::dispatcher_ready()` true *and* the dispatcher is waiting on it
//!   (`CoreState::dispatcher_waiting`, set and cleared by the dispatcher under the lock around
//!   its wait), and at shutdown. The dispatcher re-checks the predicate under the lock before it
//!   waits, so a change made while it was running is seen without a signal, and one made while it
//!   waits is signalled: none is lost, and the dispatcher never signals itself.
//! * The IO thread sleeps in `poll` and is woken through [`Wake`] (a mio `Waker` in production).
//!   Whoever leaves work for the IO thread in `state` (output to write, an out-of-band call to
//!   run, a disconnect, a yank, a monitor that may read again) calls [`Shared::wake_io`] *after*
//!   putting the work there and releasing the lock, if [`CoreState::take_io_wake`] said so in
//!   the critical section that left the work. Wakes are coalesced by `CoreState::io_idle`: set
//!   by the IO thread in the same critical section as its last look at the state before `poll`
//!   (`poll_timeout`), cleared by the first waker after it (who then wakes it) and by the IO
//!   thread's next pass. A waker whose critical section came before the last look left work
//!   that the look sees; one that came after finds `io_idle` set and wakes. So only the first
//!   waker pays for the `Waker` write, and none while the IO thread is running a pass.
//!
//! Thread by field of [`CoreState`]: `server`, `fds`, `recorder`, `last_now`: any thread, under
//! the lock. `attached`: kept by the IO thread (open/close), read by `yank` on any thread.
//! `oob_calls`, `transmit`, `disconnects`, `yanked`: filled by any thread, emptied by the
//! IO thread. `inband_call`: filled by whoever applied `NextInBand` (the dispatcher), emptied by
//! the dispatcher, which marks it in `inband_running` until it completes it, and counts it in
//! `inband_run` (its run of calls of one monitor, ended by the dispatcher's write of their
//! replies; read by the IO thread to leave that output alone, see [`crate::writer`]).
//! `oob_running`: the IO thread, between [`Shared::take_oob_call`] and [`Shared::complete_oob`]
//! (the dispatcher does not look at it: the core itself holds a monitor's input while its OOB
//! call runs, so no request that followed an OOB request is queued before the OOB call
//! completes, as in QEMU).
//! `writers`: added and removed by the IO thread (open/close); any thread holding the lock may
//! write through one (in practice the IO thread, and the dispatcher at the end of a batch of
//! in-band calls, see [`crate::writer`]). `readers`: added and removed by the IO thread with the
//! writers; the dispatcher clones the one of `follow_up` (set by the dispatcher when a run ends)
//! to read while it spins (see [`crate::reader`]); `dispatcher_buf`: the dispatcher's.
//! `calls`, `io_stats`: counters, any thread.
//! `shutdown`: set by anyone, acted on by the IO thread (which stops the dispatcher).
//!
//! # Spinning
//!
//! A sleeping thread on this 2-vCPU VM costs a futex or eventfd write to wake (an IPI to a
//! halted vCPU), which was most of the shim's cost per pipelined request. So each thread, before
//! it sleeps, first spins for a bounded time ([`DISPATCHER_SPIN`], `io_thread::IO_SPIN`, see
//! [`sync::spin_until`]) on an atomic *hint* that whoever leaves it work sets:
//!
//! * `Shared::dispatch_hint`: set (under the lock) by [`Shared::dispatcher_wanted`] after any
//!   input that left `Server::dispatcher_ready()` true; cleared by the dispatcher in the critical
//!   section where it finds no work, just before it spins.
//! * `Shared::io_hint`: set (under the lock) by [`Shared::io_work_left`] whenever work is left
//!   for the IO thread; cleared by the IO thread at the start of each pass.
//!
//! While spinning a thread has not taken its last look yet (`dispatcher_waiting` and `io_idle`
//! are false), so nobody signals it: a waker only sets the hint. A hint is only an early notice:
//! after the spin, found or not, the thread takes the lock and looks at the state as before (the
//! dispatcher re-checks `dispatcher_ready`, the IO thread does its last look in `poll_timeout`),
//! so a missed or stale hint costs time, never a wake-up. While it spins after a run of calls,
//! the dispatcher also reads the run's monitor itself (a pipelining client's next batch comes
//! right after the replies it wrote; see [`crate::reader`]). Spins give the CPU away every turn
//! (`sched_yield`) so that the client sharing the 2 cores is not starved, and happen only after
//! work (the dispatcher spins once per wait for work, the IO thread once per pass): an idle
//! daemon sleeps.
//!
//! The recorder writes (buffered) under the lock, so that the trace holds the inputs in exactly
//! the order the core saw them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::OwnedFd;

use qmp_core::json::Object;
use qmp_core::server::{
    Call, CallId, CallResult, DisconnectReason, FdId, Input, Instant, Lane, MonitorId, Output,
    RunState, Server, QMP_REQ_QUEUE_LEN_MAX,
};

use crate::clock::Clock;
use crate::fds::FdTable;
use crate::reader::{DispatcherRead, Reader, DISPATCHER_READ_CHUNK};
use crate::record::TraceSink;
use crate::sync::{self, AtomicBool, Condvar, Mutex, MutexGuard, Ordering};
use crate::writer::{Flushed, Writer};

/// How long the dispatcher spins on `dispatch_hint` for more work before it sleeps on the
/// condition variable (see "Spinning" above). Longer than a pipelining client's turnaround here
/// (read the replies, write the next requests: 10-30 µs on the 2-vCPU VM), so that a steady
/// stream of requests never puts it to sleep; short enough that an idle daemon's dispatcher
/// sleeps at once in human terms.
pub const DISPATCHER_SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// How long after the dispatcher took a call of a monitor the IO thread leaves that monitor's
/// output to the dispatcher's write at the end of its run of calls (see
/// [`CoreState::write_left_to_dispatcher`]): far longer than a query handler takes, short enough
/// that an event or a reply waiting behind a handler that blocks is still written promptly
/// (well inside the 200 µs asked of an out-of-band reply, which never waits this way).
pub const WRITE_LEFT_TO_DISPATCHER: std::time::Duration = std::time::Duration::from_micros(50);

/// The most in-band calls of one monitor the dispatcher runs in a row before it writes their
/// replies: the core's request queue length ([`QMP_REQ_QUEUE_LEN_MAX`]), so that a client
/// keeping its queue full still gets its replies a queue at a time rather than at the end of a
/// run that only ends when it stops sending.
pub const RUN_WRITE_CALLS: u32 = QMP_REQ_QUEUE_LEN_MAX as u32;

/// A run of in-band calls of one monitor on the dispatcher: consecutive calls whose replies the
/// dispatcher writes in one go when the run ends (the next call is another monitor's, there is
/// none, or [`RUN_WRITE_CALLS`] ran).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct InbandRun {
    /// Whose calls.
    pub monitor: MonitorId,
    /// When the dispatcher took the run's latest call.
    pub call_taken: Instant,
    /// Calls of the run so far, the running one included.
    pub calls: u32,
}

/// What [`CoreState::apply_read`] came to.
pub struct AppliedRead {
    /// Descriptors the core gave back (drop them after the lock is released).
    pub close: Vec<OwnedFd>,
    /// Received descriptors the fd table refused (likewise).
    pub refused: Vec<OwnedFd>,
    /// Out-of-band calls are queued: the IO thread must run them before anything else of
    /// this monitor.
    pub oob: bool,
    /// What the write of the monitor's output came to (`More` when it was left).
    pub flushed: Flushed,
}

/// Something that wakes the IO thread out of its poll (a mio `Waker` in production, a flag in
/// loom models). Must be cheap, non-blocking, and callable from any thread.
pub trait Wake: Send + Sync {
    /// Make the IO thread's current or next poll return.
    fn wake(&self);
}

/// How far shutdown has gone.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ShutdownState {
    /// Serving.
    #[default]
    Running,
    /// Someone asked to stop (signal, `quit`, the embedder). The IO thread flushes pending
    /// output and closes every connection.
    Requested,
    /// The IO thread has stopped; the dispatcher must return.
    Stopped,
}

/// Counters of the IO thread's socket work.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Writes the socket took only part of.
    pub partial_writes: u64,
    /// Writes refused with EAGAIN (the shim then waits for writability).
    pub blocked_writes: u64,
    /// Reads that returned data.
    pub reads: u64,
    /// Of those, reads the dispatcher made while it waited for work (see [`crate::reader`]).
    pub dispatcher_reads: u64,
    /// Connections accepted.
    pub accepted: u64,
}

/// Everything behind the one lock. See the module docs for which thread touches which field.
pub struct CoreState {
    /// The sans-IO core.
    pub server: Server,
    /// The latest `now` given to the core; inputs from different threads read the clock at
    /// slightly different moments, and the core requires time never to go backwards.
    last_now: Instant,
    /// Real descriptors behind the core's fd ids.
    pub fds: FdTable,
    /// Out-of-band calls the IO thread must run at once. Bounded by what one input can produce
    /// (the core emits at most one call per request it parses from one chunk).
    pub oob_calls: VecDeque<Call>,
    /// The in-band call the dispatcher must run next (at most one: the core hands out one
    /// in-band call at a time).
    pub inband_call: Option<Call>,
    /// The dispatcher is blocked on `dispatcher_cv` (set and cleared by the dispatcher only).
    pub dispatcher_waiting: bool,
    /// The IO thread took its last look at the state and may be asleep in `poll`, and nobody
    /// has woken it since (see the module docs).
    io_idle: bool,
    /// Monitors with pending output for the IO thread to write. Bounded by the number of open
    /// monitors.
    pub transmit: BTreeSet<MonitorId>,
    /// Monitors the core gave up on; the IO thread closes them.
    pub disconnects: Vec<(MonitorId, DisconnectReason)>,
    /// The chardev each open monitor's connection belongs to.
    pub attached: BTreeMap<MonitorId, String>,
    /// The write side of each open connection (added and removed by the IO thread; whoever
    /// holds the lock may write, see [`crate::writer`]).
    pub writers: BTreeMap<MonitorId, Writer>,
    /// The read side of each open connection, for the dispatcher (added and removed by the IO
    /// thread with the writer; absent when the dispatcher does not read, see [`crate::reader`]).
    pub readers: BTreeMap<MonitorId, Reader>,
    /// The monitor whose run of in-band calls the dispatcher ended last: the one it reads while
    /// it spins for more work.
    pub follow_up: Option<MonitorId>,
    /// The dispatcher's read buffer (kept here between spins; `DISPATCHER_READ_CHUNK` bytes once
    /// used).
    dispatcher_buf: Vec<u8>,
    /// Monitors already closed in the core by `yank`, whose sockets the IO thread must drop
    /// (without telling the core again).
    pub yanked: Vec<MonitorId>,
    /// The out-of-band call the IO thread is running now (taken, not yet completed).
    pub oob_running: Option<CallId>,
    /// The in-band call the dispatcher is running now (taken, not yet completed).
    pub inband_running: Option<CallId>,
    /// The dispatcher's current run of in-band calls for one monitor, whose replies it writes
    /// itself when the run ends (see [`CoreState::write_left_to_dispatcher`]).
    pub inband_run: Option<InbandRun>,
    /// Handler calls per open monitor, for the connection summary line.
    pub calls: BTreeMap<MonitorId, u64>,
    /// Shutdown progress.
    pub shutdown: ShutdownState,
    /// Where inputs are recorded, if anywhere.
    pub recorder: Option<Box<dyn TraceSink>>,
    /// Counters of the IO thread's socket work (tests and diagnostics).
    pub io_stats: IoStats,
    /// Misuse errors the core reported (a shim bug if ever non-zero; logged at the time).
    pub misuse_count: u64,
}

impl CoreState {
    /// A state around `server`.
    pub fn new(server: Server) -> Self {
        CoreState {
            server,
            last_now: Instant(0),
            fds: FdTable::new(),
            oob_calls: VecDeque::new(),
            inband_call: None,
            dispatcher_waiting: false,
            io_idle: false,
            transmit: BTreeSet::new(),
            disconnects: Vec::new(),
            attached: BTreeMap::new(),
            writers: BTreeMap::new(),
            readers: BTreeMap::new(),
            follow_up: None,
            dispatcher_buf: Vec::new(),
            yanked: Vec::new(),
            oob_running: None,
            inband_running: None,
            inband_run: None,
            calls: BTreeMap::new(),
            shutdown: ShutdownState::Running,
            recorder: None,
            io_stats: IoStats::default(),
            misuse_count: 0,
        }
    }

    /// Apply one input at `now` (clamped so it never goes backwards), record it, and drain the
    /// core's outputs into the per-thread queues. Descriptors the core gave back are returned
    /// for the caller to drop **after** releasing the lock.
    #[must_use = "the returned descriptors must be dropped outside the lock"]
    pub fn apply_locked(&mut self, now: Instant, input: Input) -> Vec<OwnedFd> {
        let now = now.max(self.last_now);
        self.last_now = now;
        if let Some(rec) = self.recorder.as_mut() {
            rec.input(now, &input);
        }
        if let Err(e) = self.server.handle(now, input) {
            self.misuse_count += 1;
            tracing::error!(error = ?e, "qmp-core rejected an input (shim bug)");
        }
        self.drain_locked()
    }

    /// Drain every output of the core into the queues; returns descriptors to close.
    fn drain_locked(&mut self) -> Vec<OwnedFd> {
        let mut close = Vec::new();
        while let Some(out) = self.server.poll_output() {
            if let Some(rec) = self.recorder.as_mut() {
                rec.output(&out);
            }
            if let Output::Call(call) = &out {
                *self.calls.entry(call.monitor).or_insert(0) += 1;
            }
            match out {
                Output::Call(call) => match call.lane {
                    Lane::OutOfBand => self.oob_calls.push_back(call),
                    Lane::InBand => {
                        if let Some(old) = self.inband_call.replace(call) {
                            // The core promises one in-band call at a time; keep the newest and
                            // fail the other rather than losing it silently.
                            tracing::error!(call = old.id.0, "two in-band calls outstanding");
                        }
                    }
                },
                Output::Transmit(m) => {
                    self.transmit.insert(m);
                }
                Output::CloseFd(id) => {
                    if let Some(fd) = self.fds.take(id) {
                        close.push(fd);
                    } else {
                        tracing::warn!(fd = id.0, "core closed an fd the shim does not hold");
                    }
                }
                Output::Disconnect { monitor, reason } => self.disconnects.push((monitor, reason)),
            }
        }
        close
    }

    /// Hand `fds` to the fd table, returning their ids (descriptors the table refuses are
    /// returned in the second vector, to be closed outside the lock).
    pub fn adopt_fds(&mut self, fds: Vec<OwnedFd>) -> (Vec<FdId>, Vec<OwnedFd>) {
        let mut ids = Vec::with_capacity(fds.len());
        let mut refused = Vec::new();
        for fd in fds {
            match self.fds.insert(fd) {
                Ok(id) => ids.push(id),
                Err(fd) => refused.push(fd),
            }
        }
        (ids, refused)
    }

    /// Apply one read of `m` (its bytes, and the descriptors that came with them), then write
    /// `m`'s output, unless out-of-band calls were queued (their replies come first: the write
    /// waits until the IO thread ran them) or the output is the dispatcher's to write at the
    /// end of its run (`write_left_to_dispatcher`). Whichever thread read (see `reader`).
    #[must_use = "the descriptors in it must be dropped outside the lock"]
    pub fn apply_read(
        &mut self,
        m: MonitorId,
        now: Instant,
        bytes: &[u8],
        fds: Vec<OwnedFd>,
    ) -> AppliedRead {
        self.io_stats.reads += 1;
        let (ids, refused) = self.adopt_fds(fds);
        let mut close = self.apply_locked(
            now,
            Input::Receive {
                monitor: m,
                bytes: bytes.to_vec(),
                fds: ids,
            },
        );
        let oob = !self.oob_calls.is_empty();
        let flushed = if oob || self.write_left_to_dispatcher(m, now).is_some() {
            Flushed::More
        } else {
            self.flush_locked(m, now, &mut close)
        };
        AppliedRead {
            close,
            refused,
            oob,
            flushed,
        }
    }

    /// True when the IO thread has something to do.
    pub fn io_work_pending(&self) -> bool {
        !self.transmit.is_empty() || self.io_work_pending_besides_output()
    }

    /// True when the IO thread has something to do other than writing output.
    pub fn io_work_pending_besides_output(&self) -> bool {
        !self.oob_calls.is_empty()
            || !self.disconnects.is_empty()
            || !self.yanked.is_empty()
            || self.shutdown != ShutdownState::Running
    }

    /// Whoever just left work for the IO thread in this critical section asks whether it must
    /// wake it: true (once) when the IO thread may be asleep; then call [`Shared::wake_io`]
    /// after releasing the lock.
    pub fn take_io_wake(&mut self) -> bool {
        std::mem::take(&mut self.io_idle)
    }

    /// The IO thread is taking its last look at the state before sleeping in `poll` (call in
    /// the same critical section as that look).
    pub fn io_going_to_sleep(&mut self) {
        self.io_idle = true;
    }

    /// The IO thread is running a pass: it will look at the state before sleeping again.
    pub fn io_running(&mut self) {
        self.io_idle = false;
    }

    /// True when the dispatcher is waiting and has work: signal `dispatcher_cv` after releasing
    /// the lock. False while the dispatcher runs: it looks at the state before waiting again.
    pub fn dispatcher_needs_signal(&self) -> bool {
        self.dispatcher_waiting && self.server.dispatcher_ready()
    }

    /// Until when the IO thread must leave `m`'s pending output to the dispatcher, or `None`
    /// when it writes it itself as usual.
    ///
    /// While the dispatcher runs an in-band call of `m`, the replies of the run so far wait in
    /// the core's output for the dispatcher to write them at the end of the run, so that a
    /// pipelining client gets a batch of replies in one write and answers with a batch of
    /// requests. The IO thread writing them part-way through (after it read the client's next
    /// requests, say) would split the batch, and with it every later exchange. It leaves them
    /// for at most [`WRITE_LEFT_TO_DISPATCHER`] after the dispatcher took its call, and never
    /// while out-of-band calls are queued (their replies go out at once, as in QEMU).
    pub fn write_left_to_dispatcher(&self, m: MonitorId, now: Instant) -> Option<Instant> {
        let run = self.inband_run?;
        if run.monitor != m || self.inband_running.is_none() || !self.oob_calls.is_empty() {
            return None;
        }
        let until = run
            .call_taken
            .plus_nanos(WRITE_LEFT_TO_DISPATCHER.as_nanos() as u64);
        (now < until).then_some(until)
    }

    /// The dispatcher took `call` (or found none) at `now`: mark it running and extend the
    /// current run or start a new one. The caller has ended the previous run if `call` does not
    /// continue it (see [`CoreState::continues_run`]).
    fn take_inband(&mut self, call: Option<&Call>, now: Instant) {
        self.inband_running = call.map(|c| c.id);
        self.inband_run = call.map(|c| match self.inband_run {
            Some(run) if run.monitor == c.monitor => InbandRun {
                monitor: c.monitor,
                call_taken: now,
                calls: run.calls + 1,
            },
            _ => InbandRun {
                monitor: c.monitor,
                call_taken: now,
                calls: 1,
            },
        });
    }

    /// Whether `next` continues the dispatcher's current run of calls (same monitor, fewer than
    /// [`RUN_WRITE_CALLS`] so far); otherwise the run's replies are written first.
    fn continues_run(&self, next: Option<&Call>) -> bool {
        match (next, self.inband_run) {
            (Some(c), Some(run)) => c.monitor == run.monitor && run.calls < RUN_WRITE_CALLS,
            _ => false,
        }
    }
}

/// The shared half of the shim: the locked core state, the dispatcher's condition variable, the
/// IO thread's waker and the clock.
pub struct Shared {
    /// The one lock (see the module docs).
    state: Mutex<CoreState>,
    /// Signalled when the dispatcher may have work, or at shutdown.
    dispatcher_cv: Condvar,
    waker: Box<dyn Wake>,
    /// Set when work is left for the IO thread (see "Spinning" in the module docs).
    io_hint: AtomicBool,
    /// Set when an input left the dispatcher work (see "Spinning" in the module docs).
    dispatch_hint: AtomicBool,
    clock: Box<dyn Clock>,
    /// Chardev ids of the listeners, in order (immutable after start; `query-yank`).
    chardevs: Vec<String>,
}

impl Shared {
    /// Shared state around `server`.
    pub fn new(
        server: Server,
        waker: Box<dyn Wake>,
        clock: Box<dyn Clock>,
        chardevs: Vec<String>,
    ) -> Self {
        Shared {
            state: Mutex::new(CoreState::new(server)),
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

    /// The chardev ids of the listeners (`query-yank`).
    pub fn chardevs(&self) -> &[String] {
        &self.chardevs
    }

    /// Wake the IO thread (unconditionally: callers ask [`CoreState::take_io_wake`] first).
    pub fn wake_io(&self) {
        self.waker.wake();
    }

    /// Whoever just left work for the IO thread in the critical section of `st` calls this
    /// there: it sets the IO thread's spin hint and says (once, like
    /// [`CoreState::take_io_wake`]) whether the IO thread must be woken with [`Shared::wake_io`]
    /// after the lock is released.
    pub fn io_work_left(&self, st: &mut CoreState) -> bool {
        self.io_hint.store(true, Ordering::Release);
        st.take_io_wake()
    }

    /// The IO thread starts a pass (call under the lock): hints set before now are about work
    /// this pass sees anyway.
    pub fn io_pass_started(&self, st: &mut CoreState) {
        st.io_running();
        self.io_hint.store(false, Ordering::Release);
    }

    /// The IO thread's spin between a pass and its last look: up to `bound`, until work was
    /// left for it since the pass started (its hint, consumed) or `other_work` (the real IO
    /// thread's zero-timeout poll of its sockets) finds some. True when work was found; false
    /// means: take the last look now.
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
    /// dispatcher's spin hint when the dispatcher has work, and says whether the dispatcher is
    /// asleep and must be signalled with [`Shared::notify_dispatcher`] after the lock is
    /// released.
    pub fn dispatcher_wanted(&self, st: &CoreState) -> bool {
        if st.server.dispatcher_ready() {
            self.dispatch_hint.store(true, Ordering::Release);
        }
        st.dispatcher_needs_signal()
    }

    /// The IO thread (or a model of it) is about to take its last look at the state before
    /// sleeping, in later critical sections. The real IO thread does this inside its look.
    pub fn io_going_to_sleep(&self) {
        self.lock().io_going_to_sleep();
    }

    /// The IO thread woke up and runs a pass.
    pub fn io_woke(&self) {
        let mut st = self.lock();
        self.io_pass_started(&mut st);
    }

    /// Tell the dispatcher to look at the state again. Call after any input that may have
    /// queued an in-band request, with or without the lock held.
    pub fn notify_dispatcher(&self) {
        self.dispatcher_cv.notify_one();
    }

    /// The end of a critical section's work, after the lock is released: close the descriptors
    /// the core returned, then signal the dispatcher and wake the IO thread as the section
    /// decided (both only outside the lock, so the woken thread does not block on it).
    fn after_unlock(&self, close: Vec<OwnedFd>, dispatch: bool, wake_io: bool) {
        drop(close);
        if dispatch {
            self.notify_dispatcher();
        }
        if wake_io {
            self.wake_io();
        }
    }

    /// Apply `input` from a thread other than the IO thread: lock, apply, unlock, close the
    /// descriptors the core returned, then wake whoever has work.
    pub fn apply(&self, input: Input) {
        let now = self.clock.now();
        // A resume or a completion can let a monitor read again (wants_read true), which the IO
        // thread only notices when it looks at the state: it skips a monitor that must not
        // read and then sleeps, even with unread bytes in the socket.
        let may_read_again = match &input {
            Input::Resume { monitor } => Some(*monitor),
            _ => None,
        };
        let completes = matches!(input, Input::Complete { .. });
        let (close, io_work, dispatch) = {
            let mut st = self.lock();
            let close = st.apply_locked(now, input);
            let reads = completes || may_read_again.is_some_and(|m| st.server.wants_read(m));
            let io_work = (reads || st.io_work_pending()) && self.io_work_left(&mut st);
            (close, io_work, self.dispatcher_wanted(&st))
        };
        self.after_unlock(close, dispatch, io_work);
    }

    /// Emit an event from any thread (QEMU's `qapi_event_send_*`): stamped with the wall clock
    /// now, throttled and broadcast by the core, written by the IO thread.
    pub fn emit_event(&self, name: &str, data: Object) {
        let timestamp = self.clock.wall();
        self.apply(Input::Event {
            name: name.to_owned(),
            data,
            timestamp,
        });
    }

    /// Change the VM run state the core knows about.
    pub fn set_run_state(&self, state: RunState) {
        self.apply(Input::SetRunState(state));
    }

    /// Ask for shutdown; the IO thread flushes output, closes every connection and stops the
    /// dispatcher.
    pub fn request_shutdown(&self) {
        let wake = {
            let mut st = self.lock();
            if st.shutdown == ShutdownState::Running {
                st.shutdown = ShutdownState::Requested;
            }
            self.io_work_left(&mut st)
        };
        if wake {
            self.wake_io();
        }
    }

    /// Drop the clients of chardev `id` (QEMU's chardev yank). Their monitors are closed in
    /// the core at once, under the lock, so the reply of the `yank` call itself (completed
    /// later) goes nowhere when the caller yanked its own connection, as in QEMU where the
    /// socket is shut down inside the handler. The IO thread then drops the sockets. False when
    /// there is no such chardev.
    pub fn yank(&self, id: &str) -> bool {
        if !self.chardevs.iter().any(|c| c == id) {
            return false;
        }
        let now = self.clock.now();
        let (close, dispatch, wake) = {
            let mut st = self.lock();
            let victims: Vec<MonitorId> = st
                .attached
                .iter()
                .filter(|(_, c)| c.as_str() == id)
                .map(|(m, _)| *m)
                .collect();
            let mut close = Vec::new();
            for m in victims {
                st.attached.remove(&m);
                st.transmit.remove(&m);
                close.extend(st.apply_locked(now, Input::Close { monitor: m }));
                // One core monitor per connection until monitor ids are per listener slot.
                close.extend(st.apply_locked(now, Input::Destroy { monitor: m }));
                st.yanked.push(m);
            }
            let dispatch = self.dispatcher_wanted(&st);
            (close, dispatch, self.io_work_left(&mut st))
        };
        self.after_unlock(close, dispatch, wake);
        true
    }

    /// The dispatcher's wait: block until an in-band call is ready to run, feeding
    /// `NextInBand` to the core whenever it has work. Requests the core answers by itself
    /// (built-in commands, queued errors) are handled here without returning. Before sleeping
    /// it spins once (see "Spinning" in the module docs). `None` once the shim has stopped.
    pub fn next_in_band(&self) -> Option<Call> {
        let mut st = self.lock();
        let mut spun = false;
        loop {
            if st.shutdown == ShutdownState::Stopped {
                return None;
            }
            if let Some(call) = st.inband_call.take() {
                let now = self.clock.now();
                st.take_inband(Some(&call), now);
                return Some(call);
            }
            // At shutdown the dispatcher takes no new requests; queued ones get no reply, as
            // in QEMU (spec §5.5).
            if st.shutdown == ShutdownState::Running && st.server.dispatcher_ready() {
                let now = self.clock.now();
                let close = st.apply_locked(now, Input::NextInBand);
                let call = st.inband_call.take();
                st.take_inband(call.as_ref(), now);
                let io_work = st.io_work_pending() && self.io_work_left(&mut st);
                drop(st);
                drop(close);
                if io_work {
                    self.wake_io();
                }
                if call.is_some() {
                    return call;
                }
                st = self.lock();
                continue;
            }
            if !spun && st.shutdown == ShutdownState::Running {
                // No work at this look: hints from before it are stale.
                self.dispatch_hint.store(false, Ordering::Release);
                // While it spins, the dispatcher reads the monitor it last answered itself
                // (see `reader`).
                let follow = st
                    .follow_up
                    .and_then(|m| Some((m, st.readers.get(&m)?.clone())));
                let mut buf = std::mem::take(&mut st.dispatcher_buf);
                drop(st);
                spun = true;
                // It holds the monitor's read token for the whole spin, so that the IO thread
                // leaves the monitor to it meanwhile (a skipped read is noted, and looked at
                // again when the token goes back). The IO thread may hold it for a moment (a
                // read of its own): it is taken on a later turn then.
                let mut following = follow.is_some();
                let mut holding = false;
                if following {
                    buf.resize(DISPATCHER_READ_CHUNK, 0);
                }
                sync::spin_until(DISPATCHER_SPIN, || {
                    if self.dispatch_hint.swap(false, Ordering::AcqRel) {
                        return true;
                    }
                    let Some((m, reader)) = follow.as_ref().filter(|_| following) else {
                        return false;
                    };
                    holding = holding || reader.token.take();
                    if !holding {
                        return false;
                    }
                    match self.dispatcher_read(*m, reader, &mut buf) {
                        DispatcherRead::Applied => true,
                        DispatcherRead::Nothing => false,
                        DispatcherRead::Leave { io_look } => {
                            // Spinning on for other work, no longer on this monitor.
                            (following, holding) = (false, false);
                            self.give_back_read(reader, io_look);
                            false
                        }
                    }
                });
                if let Some((_, reader)) = follow.as_ref().filter(|_| holding) {
                    self.give_back_read(reader, false);
                }
                // The reader's copy of the socket may be the last one (the IO thread closed the
                // connection meanwhile): it is closed here, outside the lock.
                drop(follow);
                st = self.lock();
                st.dispatcher_buf = buf;
                continue;
            }
            st.dispatcher_waiting = true;
            st = sync::wait(&self.dispatcher_cv, st);
            st.dispatcher_waiting = false;
        }
    }

    /// The IO thread takes the next out-of-band call to run (without the lock).
    pub fn take_oob_call(&self) -> Option<Call> {
        let mut st = self.lock();
        let call = st.oob_calls.pop_front()?;
        st.oob_running = Some(call.id);
        Some(call)
    }

    /// The IO thread reports an out-of-band call's result; the input the core held while it ran
    /// may queue requests for the dispatcher. Descriptors are closed after the lock is released.
    pub fn complete_oob(&self, call: CallId, result: CallResult) {
        let now = self.clock.now();
        let (close, dispatch) = {
            let mut st = self.lock();
            if st.oob_running == Some(call) {
                st.oob_running = None;
            }
            let close = st.apply_locked(now, Input::Complete { call, result });
            (close, self.dispatcher_wanted(&st))
        };
        self.after_unlock(close, dispatch, false);
    }

    /// Report an in-band call's result: apply `Complete`, write the reply to the call's
    /// monitor from this thread (see [`crate::writer`]), then wake the IO thread so whatever
    /// is left (output the socket refused, a monitor the queue had suspended that may read
    /// again) is handled.
    pub fn complete_in_band(&self, call: &Call, result: CallResult) {
        let (close, dispatch, wake) = {
            let now = self.clock.now();
            let mut st = self.lock();
            let mut close = Self::complete_in_band_locked(&mut st, now, call.id, result);
            Self::end_run_locked(&mut st, now, call.monitor, &mut close);
            // Normally false: the caller is the dispatcher, which looks again before waiting.
            let dispatch = self.dispatcher_wanted(&st);
            (close, dispatch, self.io_work_left(&mut st))
        };
        self.after_unlock(close, dispatch, wake);
    }

    /// The dispatcher's step between two calls: report `call`'s result and, in the same critical
    /// section when the core has more in-band work, take the next call (one lock per call
    /// instead of two); otherwise, at the end of a batch, write the replies and wake the IO
    /// thread as [`Shared::complete_in_band`] does, then wait as [`Shared::next_in_band`].
    pub fn complete_and_next(&self, call: &Call, result: CallResult) -> Option<Call> {
        // One clock reading for the step's inputs (they are one step apart at most).
        let now = self.clock.now();
        let mut st = self.lock();
        let mut close = Self::complete_in_band_locked(&mut st, now, call.id, result);
        let mut next = None;
        if st.shutdown == ShutdownState::Running && st.server.dispatcher_ready() {
            close.extend(st.apply_locked(now, Input::NextInBand));
            next = st.inband_call.take();
        }
        // While the run of calls for one monitor goes on, its replies wait in the core's output
        // (the IO thread leaves them alone, see `write_left_to_dispatcher`), so that the whole
        // batch goes out in one write, at the end of the run, from here. An IO thread asleep is
        // woken as always.
        let wake = if st.continues_run(next.as_ref()) {
            st.take_io_wake()
        } else {
            Self::end_run_locked(&mut st, now, call.monitor, &mut close);
            self.io_work_left(&mut st)
        };
        st.take_inband(next.as_ref(), now);
        drop(st);
        drop(close);
        if wake {
            self.wake_io();
        }
        // None: the core answered the next request itself, or had none; wait as usual.
        next.or_else(|| self.next_in_band())
    }

    /// The end of a run of in-band calls of `monitor`: write its pending output from the
    /// dispatcher, unless out-of-band calls are queued for the IO thread (their replies may be
    /// about to join the output: the IO thread writes after running them, as it does after a
    /// read); whatever the socket does not take stays for the IO thread (see [`Flushed`]). The
    /// run is over, and `monitor` is the one the dispatcher reads while it waits (`reader`).
    fn end_run_locked(
        st: &mut CoreState,
        now: Instant,
        monitor: MonitorId,
        close: &mut Vec<OwnedFd>,
    ) {
        st.inband_run = None;
        st.follow_up = Some(monitor);
        if st.transmit.contains(&monitor) && st.oob_calls.is_empty() {
            let flushed = st.flush_locked(monitor, now, close);
            if let Flushed::Failed(e) = flushed {
                // The IO thread meets the same error when it writes again, and closes.
                tracing::debug!(monitor = monitor.0, error = %e, "write from the dispatcher failed");
            }
        }
    }

    /// Apply `Complete` for the dispatcher's running call.
    #[must_use = "the returned descriptors must be dropped outside the lock"]
    fn complete_in_band_locked(
        st: &mut CoreState,
        now: Instant,
        call: CallId,
        result: CallResult,
    ) -> Vec<OwnedFd> {
        if st.inband_running == Some(call) {
            st.inband_running = None;
        }
        st.apply_locked(now, Input::Complete { call, result })
    }

    /// Mark the shim stopped and release the dispatcher.
    pub fn stop(&self) {
        self.lock().shutdown = ShutdownState::Stopped;
        self.dispatcher_cv.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use std::sync::mpsc;
    use std::time::Duration;

    use qmp_core::json::{Object, Value};
    use qmp_core::server::{
        CallResult, CommandSpec, Config, Input, Lane, MonitorId, MonitorOptions, Server,
    };

    use super::{Shared, Wake};
    use crate::clock::SystemClock;

    /// Counts the wake-ups the shim gives the IO thread.
    struct Counter(Arc<AtomicUsize>);

    impl Wake for Counter {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn shared() -> (Shared, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let shared = Shared::new(
            Server::new(Config::default()),
            Box::new(Counter(wakes.clone())),
            Box::new(SystemClock::new()),
            Vec::new(),
        );
        (shared, wakes)
    }

    const M: MonitorId = MonitorId(3);

    /// A shim whose server knows `slow` (in-band) and `fast-oob` (OOB allowed), with monitor
    /// `M` open and negotiated with OOB on, its greeting and negotiation reply written.
    fn negotiated() -> (Arc<Shared>, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let mut server = Server::new(Config::default());
        for (name, allow_oob) in [("slow", false), ("fast-oob", true)] {
            server
                .register(CommandSpec {
                    name: name.into(),
                    allow_oob,
                    allow_preconfig: true,
                    success_response: true,
                    arguments: Vec::new(),
                    ..CommandSpec::default()
                })
                .expect("fresh command names");
        }
        let shared = Arc::new(Shared::new(
            server,
            Box::new(Counter(wakes.clone())),
            Box::new(SystemClock::new()),
            Vec::new(),
        ));
        shared.apply(Input::Open {
            monitor: M,
            options: MonitorOptions {
                oob_capable: true,
                pretty: false,
            },
        });
        receive(
            &shared,
            b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
        );
        // The core answers the negotiation itself when the dispatcher asks.
        shared.apply(Input::NextInBand);
        take_output(&shared);
        (shared, wakes)
    }

    fn receive(shared: &Shared, bytes: &[u8]) {
        shared.apply(Input::Receive {
            monitor: M,
            bytes: bytes.to_vec(),
            fds: Vec::new(),
        });
    }

    /// What the IO thread would write for `M` now (reported as written).
    fn take_output(shared: &Shared) -> String {
        let mut st = shared.lock();
        let out = String::from_utf8_lossy(st.server.pending_output(M)).into_owned();
        let n = out.len();
        let close = st.apply_locked(shared.now(), Input::Written { monitor: M, n });
        st.transmit.clear();
        drop(st);
        assert!(close.is_empty());
        out
    }

    fn ok() -> CallResult {
        CallResult::Return(Value::Object(Object::new()))
    }

    /// `M`'s socket as the IO thread would have it (its reader in the locked state, for the
    /// dispatcher), and the client's end.
    fn attach_socket(shared: &Shared) -> (crate::reader::Reader, std::os::unix::net::UnixStream) {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let reader = crate::reader::Reader::new(
            Arc::new(crate::conn::Stream::Unix(mio::net::UnixStream::from_std(
                ours,
            ))),
            crate::reader::ReadToken::default(),
        );
        shared.lock().readers.insert(M, reader.clone());
        (reader, peer)
    }

    /// Run one `slow` call of `M` to the end of its run, with `next` already in the socket:
    /// the dispatcher (another thread) completes it and waits for more. What it takes next
    /// within `limit`, if anything.
    fn end_run_with_next_in_socket(
        shared: &Arc<Shared>,
        peer: &mut std::os::unix::net::UnixStream,
        next: &[u8],
        limit: Duration,
    ) -> Option<qmp_core::server::Call> {
        receive(shared, b"{\"execute\": \"slow\", \"id\": 1}");
        let first = shared.next_in_band().expect("request 1");
        std::io::Write::write_all(peer, next).unwrap();
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            let _ = tx.send(s.complete_and_next(&first, ok()));
        });
        let got = rx.recv_timeout(limit).ok().flatten();
        if got.is_none() {
            // Release the dispatcher thread (asleep on its condition variable).
            shared.stop();
        }
        got
    }

    #[test]
    fn the_dispatcher_reads_the_monitor_it_answered_while_it_waits() {
        let (shared, _) = negotiated();
        let (_reader, mut peer) = attach_socket(&shared);
        let next = end_run_with_next_in_socket(
            &shared,
            &mut peer,
            b"{\"execute\": \"slow\", \"id\": 2}\n",
            Duration::from_secs(10),
        )
        .expect("request 2, read by the dispatcher");
        assert_eq!(next.command, "slow");
        let st = shared.lock();
        assert_eq!(st.io_stats.dispatcher_reads, 1);
        assert_eq!(st.readers[&M].bytes_in, 29);
        // The reply to request 1 is pending for M (no writer here), request 2 runs.
        assert_eq!(st.inband_running, Some(next.id));
    }

    #[test]
    fn the_dispatcher_leaves_a_connection_whose_token_is_taken() {
        let (shared, _) = negotiated();
        let (reader, mut peer) = attach_socket(&shared);
        // The IO thread is between a read and its `Receive`.
        assert!(reader.token.take_or_note());
        let next = end_run_with_next_in_socket(
            &shared,
            &mut peer,
            b"{\"execute\": \"slow\", \"id\": 2}\n",
            Duration::from_millis(300),
        );
        assert!(
            next.is_none(),
            "the dispatcher read a stream it did not hold"
        );
        assert_eq!(shared.lock().io_stats.dispatcher_reads, 0);
        assert!(!reader.token.give_back());
    }

    #[test]
    fn bytes_the_dispatcher_read_from_a_connection_closed_meanwhile_are_dropped() {
        let (shared, _) = negotiated();
        // The IO thread closed M (say, after a failed write) while the dispatcher was reading.
        shared.apply(Input::Close { monitor: M });
        shared.dispatcher_apply(M, b"{\"execute\": \"slow\"}\n", Vec::new(), true);
        let st = shared.lock();
        assert_eq!(
            st.misuse_count, 0,
            "a Receive for a closed monitor reached the core"
        );
        assert_eq!(st.io_stats.dispatcher_reads, 0);
    }

    #[test]
    fn end_of_stream_is_left_to_the_io_thread() {
        let (shared, _) = negotiated();
        let (reader, mut peer) = attach_socket(&shared);
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let next = end_run_with_next_in_socket(&shared, &mut peer, b"", Duration::from_millis(300));
        assert!(next.is_none());
        assert_eq!(shared.lock().io_stats.dispatcher_reads, 0);
        // The token is free for the IO thread, which reads the end of stream and closes.
        assert!(reader.token.take_or_note());
    }

    /// `next_in_band` on another thread, so that a regression (the dispatcher waiting for ever)
    /// fails the test instead of hanging it.
    fn next_call_within(shared: &Arc<Shared>, limit: Duration) -> Option<qmp_core::server::Call> {
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            let _ = tx.send(s.next_in_band());
        });
        match rx.recv_timeout(limit) {
            Ok(call) => call,
            Err(_) => {
                shared.stop();
                None
            }
        }
    }

    #[test]
    fn complete_and_next_hands_over_the_next_call_with_the_reply_pending() {
        let (shared, _) = negotiated();
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}",
        );
        let first = shared.next_in_band().expect("request 1");
        assert_eq!(first.command, "slow");
        let second = shared
            .complete_and_next(&first, ok())
            .expect("request 2 taken in the same step");
        assert_eq!(second.command, "slow");
        assert_ne!(second.id, first.id);
        assert_eq!(shared.lock().inband_running, Some(second.id));
        assert_eq!(take_output(&shared), "{\"return\": {}, \"id\": 1}\r\n");
    }

    #[test]
    fn mid_batch_completion_wakes_only_a_sleeping_io_thread() {
        let (shared, wakes) = negotiated();
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}{\"execute\": \"slow\", \"id\": 3}",
        );
        // The IO thread is running a pass: a completion with more calls to follow does not
        // hurry it (no wake, no hint); it finds the reply at its next look.
        shared.io_woke();
        let before = wakes.load(Ordering::SeqCst);
        let c1 = shared.next_in_band().expect("request 1");
        shared.io_woke();
        let c2 = shared.complete_and_next(&c1, ok()).expect("request 2");
        assert_eq!(wakes.load(Ordering::SeqCst), before);
        assert!(
            !shared.io_spin(Duration::ZERO, || false),
            "hinted mid-batch"
        );
        // The IO thread went to sleep: the next completion wakes it, batch or not.
        shared.io_going_to_sleep();
        let c3 = shared.complete_and_next(&c2, ok()).expect("request 3");
        assert_eq!(wakes.load(Ordering::SeqCst), before + 1);
        // The end of the batch hints a running (spinning) IO thread instead of waking it.
        shared.io_woke();
        let wakes_before_last = wakes.load(Ordering::SeqCst);
        shared.complete_in_band(&c3, ok());
        assert_eq!(wakes.load(Ordering::SeqCst), wakes_before_last);
        assert!(
            shared.io_spin(Duration::ZERO, || false),
            "batch end not hinted"
        );
        assert_eq!(
            take_output(&shared),
            "{\"return\": {}, \"id\": 1}\r\n{\"return\": {}, \"id\": 2}\r\n{\"return\": {}, \"id\": 3}\r\n"
        );
    }

    #[test]
    fn dispatcher_takes_earlier_in_band_request_while_an_oob_call_is_pending() {
        let (shared, _) = negotiated();
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": \"ib\"}{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}",
        );
        let oob = shared.take_oob_call().expect("the OOB call");
        assert_eq!(oob.lane, Lane::OutOfBand);
        // QEMU dispatches in-band requests queued before an OOB request while the OOB handler
        // runs on the IO thread; the shim adds no rule of its own.
        let call = next_call_within(&shared, Duration::from_secs(10))
            .expect("the in-band request while the OOB call runs");
        assert_eq!(call.command, "slow");
        shared.complete_oob(oob.id, ok());
        shared.complete_in_band(&call, ok());
        assert_eq!(
            take_output(&shared),
            "{\"return\": {}, \"id\": \"o\"}\r\n{\"return\": {}, \"id\": \"ib\"}\r\n"
        );
    }

    #[test]
    fn resume_from_another_thread_wakes_the_io_thread() {
        let (shared, wakes) = shared();
        shared.apply(Input::Open {
            monitor: M,
            options: MonitorOptions::default(),
        });
        // The greeting is written; from now on only the monitor's read state changes.
        shared.lock().transmit.clear();
        let n = shared.lock().server.pending_output(M).len();
        shared.apply(Input::Written { monitor: M, n });
        shared.apply(Input::Suspend { monitor: M });
        assert!(!shared.lock().server.wants_read(M));
        // The IO thread found nothing to read and is going to sleep.
        shared.io_going_to_sleep();
        let before = wakes.load(Ordering::SeqCst);
        shared.apply(Input::Resume { monitor: M });
        assert!(shared.lock().server.wants_read(M));
        assert!(
            wakes.load(Ordering::SeqCst) > before,
            "resume did not wake the IO thread"
        );
    }

    /// A scripted socket (rustls-style): each write takes the next step's byte count (capped
    /// at what is offered) or fails with its error kind; what it took is logged per write.
    /// Asserts on drop that the script was used up.
    struct Script {
        steps: std::collections::VecDeque<Result<usize, std::io::ErrorKind>>,
        log: WriteLog,
    }

    impl crate::writer::SocketWrite for Script {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            match self
                .steps
                .pop_front()
                .expect("a write the script did not expect")
            {
                Ok(n) => {
                    let n = n.min(bytes.len());
                    self.log.lock().unwrap().push(bytes[..n].to_vec());
                    Ok(n)
                }
                Err(kind) => Err(kind.into()),
            }
        }
    }

    impl Drop for Script {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                assert!(
                    self.steps.is_empty(),
                    "script not used up: {:?}",
                    self.steps
                );
            }
        }
    }

    /// What a scripted socket took, one entry per write.
    type WriteLog = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

    /// Give `M` a scripted socket; returns its write log and its blocked flag.
    fn script(
        shared: &Shared,
        steps: &[Result<usize, std::io::ErrorKind>],
    ) -> (WriteLog, Arc<std::sync::atomic::AtomicBool>) {
        script_for(shared, M, steps)
    }

    /// Give monitor `m` a scripted socket; returns its write log and its blocked flag.
    fn script_for(
        shared: &Shared,
        m: MonitorId,
        steps: &[Result<usize, std::io::ErrorKind>],
    ) -> (WriteLog, Arc<std::sync::atomic::AtomicBool>) {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sock = Script {
            steps: steps.iter().cloned().collect(),
            log: log.clone(),
        };
        shared.lock().writers.insert(
            m,
            crate::writer::Writer::new(Box::new(sock), blocked.clone()),
        );
        (log, blocked)
    }

    fn written(log: &std::sync::Mutex<Vec<Vec<u8>>>) -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    const R1: &str = "{\"return\": {}, \"id\": 1}\r\n";
    const R2: &str = "{\"return\": {}, \"id\": 2}\r\n";

    #[test]
    fn the_dispatcher_writes_a_batch_of_replies_in_one_write_at_its_end() {
        let (shared, _) = negotiated();
        let (log, blocked) = script(&shared, &[Ok(usize::MAX)]);
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}",
        );
        let c1 = shared.next_in_band().expect("request 1");
        let c2 = shared.complete_and_next(&c1, ok()).expect("request 2");
        assert!(written(&log).is_empty(), "written before the batch ended");
        // The batch ends: the dispatcher writes, then waits for more work (on its own thread,
        // released by `stop`).
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        let d = std::thread::spawn(move || {
            let _ = tx.send(s.complete_and_next(&c2, ok()).map(|c| c.id));
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while written(&log).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(written(&log), [format!("{R1}{R2}")]);
        {
            let st = shared.lock();
            assert!(st.server.pending_output(M).is_empty());
            assert!(!st.transmit.contains(&M));
            assert_eq!(st.writers[&M].messages_out, 2);
        }
        assert!(!blocked.load(Ordering::SeqCst));
        shared.stop();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(None));
        d.join().unwrap();
    }

    #[test]
    fn a_refused_write_is_left_to_the_io_thread_until_the_socket_is_writable() {
        let (shared, wakes) = negotiated();
        // The socket takes 10 bytes, then is full.
        let (log, blocked) = script(
            &shared,
            &[Ok(10), Err(std::io::ErrorKind::WouldBlock), Ok(usize::MAX)],
        );
        receive(&shared, b"{\"execute\": \"slow\", \"id\": 1}");
        let c1 = shared.next_in_band().expect("request 1");
        shared.io_going_to_sleep();
        let before = wakes.load(Ordering::SeqCst);
        shared.complete_in_band(&c1, ok());
        assert_eq!(written(&log), [R1[..10].to_string()]);
        // Blocked: nobody writes until the IO thread saw the socket writable again.
        assert!(blocked.load(Ordering::SeqCst));
        {
            let mut st = shared.lock();
            assert_eq!(st.server.pending_output(M), &R1.as_bytes()[10..]);
            assert!(!st.transmit.contains(&M));
            assert_eq!(st.io_stats.partial_writes, 1);
            assert_eq!(st.io_stats.blocked_writes, 1);
            let mut close = Vec::new();
            assert!(matches!(
                st.flush_locked(M, shared.now(), &mut close),
                crate::writer::Flushed::Blocked
            ));
        }
        // The IO thread (asleep) was woken for the rest of the batch's work all the same.
        assert_eq!(wakes.load(Ordering::SeqCst), before + 1);
        // The writable edge: the IO thread clears the flag and writes the rest.
        let mut st = shared.lock();
        st.writable_again(M);
        assert!(!blocked.load(Ordering::SeqCst));
        assert!(st.transmit.contains(&M));
        let mut close = Vec::new();
        assert!(matches!(
            st.flush_locked(M, shared.now(), &mut close),
            crate::writer::Flushed::Drained
        ));
        assert!(!st.transmit.contains(&M));
        drop(st);
        assert_eq!(written(&log).concat(), R1);
    }

    #[test]
    fn a_failed_write_leaves_the_monitor_to_the_io_thread() {
        let (shared, _) = negotiated();
        let (log, blocked) = script(&shared, &[Err(std::io::ErrorKind::BrokenPipe)]);
        receive(&shared, b"{\"execute\": \"slow\", \"id\": 1}");
        let c1 = shared.next_in_band().expect("request 1");
        shared.complete_in_band(&c1, ok());
        assert!(written(&log).is_empty());
        assert!(!blocked.load(Ordering::SeqCst));
        let st = shared.lock();
        // Still queued: the IO thread writes again, meets the error and closes the connection.
        assert!(st.transmit.contains(&M));
        assert_eq!(st.server.pending_output(M), R1.as_bytes());
    }

    #[test]
    fn the_dispatcher_leaves_the_write_to_the_io_thread_while_oob_calls_are_queued() {
        let (shared, _) = negotiated();
        let (log, _) = script(&shared, &[]);
        receive(&shared, b"{\"execute\": \"slow\", \"id\": 1}");
        let c1 = shared.next_in_band().expect("request 1");
        receive(&shared, b"{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}");
        assert_eq!(shared.lock().oob_calls.len(), 1);
        shared.complete_in_band(&c1, ok());
        assert!(written(&log).is_empty());
        assert!(shared.lock().transmit.contains(&M));
    }

    /// `n` in-band requests `slow` with ids `1..=n`, in one chunk.
    fn requests(n: usize) -> Vec<u8> {
        (1..=n)
            .flat_map(|i| format!("{{\"execute\": \"slow\", \"id\": {i}}}").into_bytes())
            .collect()
    }

    fn reply(id: usize) -> String {
        format!("{{\"return\": {{}}, \"id\": {id}}}\r\n")
    }

    #[test]
    fn the_io_thread_leaves_a_runs_replies_to_the_dispatcher_for_a_bounded_time() {
        let (shared, _) = negotiated();
        receive(&shared, &requests(2));
        let c1 = shared.next_in_band().expect("request 1");
        let _c2 = shared.complete_and_next(&c1, ok()).expect("request 2");
        let st = shared.lock();
        assert_eq!(st.server.pending_output(M), reply(1).as_bytes());
        let taken = st.inband_run.expect("a run in progress").call_taken;
        let bound = super::WRITE_LEFT_TO_DISPATCHER.as_nanos() as u64;
        let until = taken.plus_nanos(bound);
        // The dispatcher is to write reply 1 with reply 2: the IO thread leaves it until then.
        assert_eq!(st.write_left_to_dispatcher(M, taken), Some(until));
        assert_eq!(
            st.write_left_to_dispatcher(M, taken.plus_nanos(bound - 1)),
            Some(until)
        );
        // No longer once the bound has passed (a handler that blocks), nor for other monitors.
        assert_eq!(st.write_left_to_dispatcher(M, until), None);
        assert_eq!(st.write_left_to_dispatcher(MonitorId(4), taken), None);
        drop(st);
        // Nor while an out-of-band call is queued: its reply goes out at once.
        receive(&shared, b"{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}");
        let st = shared.lock();
        assert_eq!(st.oob_calls.len(), 1);
        assert_eq!(st.write_left_to_dispatcher(M, taken), None);
    }

    #[test]
    fn nothing_is_left_to_the_dispatcher_between_runs() {
        let (shared, _) = negotiated();
        let (log, _) = script(&shared, &[Ok(usize::MAX)]);
        receive(&shared, &requests(1));
        let c1 = shared.next_in_band().expect("request 1");
        shared.complete_in_band(&c1, ok());
        assert_eq!(written(&log), [reply(1)]);
        let st = shared.lock();
        assert_eq!(st.inband_run, None);
        assert_eq!(st.write_left_to_dispatcher(M, shared.now()), None);
    }

    #[test]
    fn a_run_of_calls_is_written_after_run_write_calls_of_them() {
        let (shared, _) = negotiated();
        let max = super::RUN_WRITE_CALLS as usize;
        let (log, _) = script(&shared, &[Ok(usize::MAX), Ok(usize::MAX)]);
        // One more request than a run holds; the core queues them all (they came in one read).
        receive(&shared, &requests(max + 1));
        let mut call = shared.next_in_band().expect("request 1");
        for i in 1..max {
            call = shared
                .complete_and_next(&call, ok())
                .unwrap_or_else(|| panic!("request {}", i + 1));
            assert!(written(&log).is_empty(), "written after {i} calls");
        }
        // The run's last call completes: its replies go out although another call follows.
        let last = shared
            .complete_and_next(&call, ok())
            .expect("the extra request");
        let run: String = (1..=max).map(reply).collect();
        assert_eq!(written(&log), std::slice::from_ref(&run));
        assert_eq!(shared.lock().inband_run.map(|r| r.calls), Some(1));
        shared.complete_in_band(&last, ok());
        assert_eq!(written(&log), [run, reply(max + 1)]);
    }

    #[test]
    fn a_run_ends_when_the_next_call_is_another_monitors() {
        const N: MonitorId = MonitorId(4);
        let (shared, _) = negotiated();
        shared.apply(Input::Open {
            monitor: N,
            options: MonitorOptions::default(),
        });
        shared.apply(Input::Receive {
            monitor: N,
            bytes: b"{\"execute\": \"qmp_capabilities\"}".to_vec(),
            fds: Vec::new(),
        });
        shared.apply(Input::NextInBand);
        {
            let mut st = shared.lock();
            let n = st.server.pending_output(N).len();
            let close = st.apply_locked(shared.now(), Input::Written { monitor: N, n });
            assert!(close.is_empty());
            st.transmit.clear();
        }
        let (log_m, _) = script(&shared, &[Ok(usize::MAX)]);
        let (log_n, _) = script_for(&shared, N, &[Ok(usize::MAX)]);
        receive(&shared, &requests(1));
        shared.apply(Input::Receive {
            monitor: N,
            bytes: b"{\"execute\": \"slow\", \"id\": \"n\"}".to_vec(),
            fds: Vec::new(),
        });
        let c1 = shared.next_in_band().expect("M's request");
        assert_eq!(c1.monitor, M);
        let c2 = shared.complete_and_next(&c1, ok()).expect("N's request");
        assert_eq!(c2.monitor, N);
        // M's run ended with its one call: its reply is out before N's call runs.
        assert_eq!(written(&log_m), [reply(1)]);
        assert!(written(&log_n).is_empty());
        shared.complete_in_band(&c2, ok());
        assert_eq!(written(&log_n), ["{\"return\": {}, \"id\": \"n\"}\r\n"]);
    }
}
