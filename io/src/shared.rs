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
//! the dispatcher, which marks it in `inband_running` until it completes it. `oob_running`: the
//! IO thread, between [`Shared::take_oob_call`] and [`Shared::complete_oob`]; while it or
//! `oob_calls` is set the dispatcher takes no new request (QEMU runs an OOB command before the
//! requests that followed it are dispatched). `calls`, `io_stats`: counters, any thread.
//! `shutdown`: set by anyone, acted on by the IO thread (which stops the dispatcher).
//!
//! The recorder writes (buffered) under the lock, so that the trace holds the inputs in exactly
//! the order the core saw them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::OwnedFd;

use qmp_core::json::Object;
use qmp_core::server::{
    Call, CallId, CallResult, DisconnectReason, FdId, Input, Instant, Lane, MonitorId, Output,
    RunState, Server,
};

use crate::clock::Clock;
use crate::fds::FdTable;
use crate::record::TraceSink;
use crate::sync::{self, Condvar, Mutex, MutexGuard};

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
    /// Monitors already closed in the core by `yank`, whose sockets the IO thread must drop
    /// (without telling the core again).
    pub yanked: Vec<MonitorId>,
    /// The out-of-band call the IO thread is running now (taken, not yet completed).
    pub oob_running: Option<CallId>,
    /// The in-band call the dispatcher is running now (taken, not yet completed).
    pub inband_running: Option<CallId>,
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
            yanked: Vec::new(),
            oob_running: None,
            inband_running: None,
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

    /// True when the IO thread has something to do.
    pub fn io_work_pending(&self) -> bool {
        !self.oob_calls.is_empty()
            || !self.transmit.is_empty()
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
}

/// The shared half of the shim: the locked core state, the dispatcher's condition variable, the
/// IO thread's waker and the clock.
pub struct Shared {
    /// The one lock (see the module docs).
    state: Mutex<CoreState>,
    /// Signalled when the dispatcher may have work, or at shutdown.
    dispatcher_cv: Condvar,
    waker: Box<dyn Wake>,
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

    /// The IO thread (or a model of it) is about to take its last look at the state before
    /// sleeping, in later critical sections. The real IO thread does this inside its look.
    pub fn io_going_to_sleep(&self) {
        self.lock().io_going_to_sleep();
    }

    /// The IO thread woke up and runs a pass.
    pub fn io_woke(&self) {
        self.lock().io_running();
    }

    /// Tell the dispatcher to look at the state again. Call after any input that may have
    /// queued an in-band request, with or without the lock held.
    pub fn notify_dispatcher(&self) {
        self.dispatcher_cv.notify_one();
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
            let io_work = (reads || st.io_work_pending()) && st.take_io_wake();
            (close, io_work, st.dispatcher_needs_signal())
        };
        drop(close);
        if dispatch {
            self.notify_dispatcher();
        }
        if io_work {
            self.wake_io();
        }
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
            st.take_io_wake()
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
                st.yanked.push(m);
            }
            (close, st.dispatcher_needs_signal(), st.take_io_wake())
        };
        drop(close);
        if dispatch {
            self.notify_dispatcher();
        }
        if wake {
            self.wake_io();
        }
        true
    }

    /// The dispatcher's wait: block until an in-band call is ready to run, feeding
    /// `NextInBand` to the core whenever it has work. Requests the core answers by itself
    /// (built-in commands, queued errors) are handled here without returning. `None` once the
    /// shim has stopped.
    pub fn next_in_band(&self) -> Option<Call> {
        let mut st = self.lock();
        loop {
            if st.shutdown == ShutdownState::Stopped {
                return None;
            }
            if let Some(call) = st.inband_call.take() {
                st.inband_running = Some(call.id);
                return Some(call);
            }
            // At shutdown the dispatcher takes no new requests; queued ones get no reply, as
            // in QEMU (spec §5.5). While an out-of-band call is waiting for or running on the
            // IO thread, the dispatcher waits too: QEMU runs an OOB command inside the parser
            // callback, before any request that followed it can be dispatched, so its reply
            // comes first (OOB handlers never block, so the wait is short).
            if st.shutdown == ShutdownState::Running
                && st.oob_calls.is_empty()
                && st.oob_running.is_none()
                && st.server.dispatcher_ready()
            {
                let now = self.clock.now();
                let close = st.apply_locked(now, Input::NextInBand);
                let call = st.inband_call.take();
                st.inband_running = call.as_ref().map(|c| c.id);
                let io_work = st.io_work_pending() && st.take_io_wake();
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

    /// The IO thread reports an out-of-band call's result; the dispatcher, held back while the
    /// call ran, may go on. Descriptors are closed after the lock is released.
    pub fn complete_oob(&self, call: CallId, result: CallResult) {
        let now = self.clock.now();
        let (close, dispatch) = {
            let mut st = self.lock();
            if st.oob_running == Some(call) {
                st.oob_running = None;
            }
            let close = st.apply_locked(now, Input::Complete { call, result });
            (
                close,
                st.dispatcher_needs_signal() && st.oob_calls.is_empty(),
            )
        };
        drop(close);
        if dispatch {
            self.notify_dispatcher();
        }
    }

    /// Report an in-band call's result: apply `Complete`, then wake the IO thread so the reply
    /// is written and a monitor the queue had suspended resumes reading.
    pub fn complete_in_band(&self, call: CallId, result: CallResult) {
        let now = self.clock.now();
        let (close, dispatch, wake) = {
            let mut st = self.lock();
            if st.inband_running == Some(call) {
                st.inband_running = None;
            }
            let close = st.apply_locked(now, Input::Complete { call, result });
            // Normally false: the caller is the dispatcher, which looks again before waiting.
            // The IO thread is woken whenever it may sleep (not only for output): a monitor
            // the queue suspended may read again, which only the IO thread can tell.
            (close, st.dispatcher_needs_signal(), st.take_io_wake())
        };
        drop(close);
        if dispatch {
            self.notify_dispatcher();
        }
        if wake {
            self.wake_io();
        }
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

    use qmp_core::server::{Config, Input, MonitorId, MonitorOptions, Server};

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
}
