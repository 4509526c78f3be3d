//! [`Driver`]: the core plus everything a connection's life needs that is not a syscall.
//!
//! It owns the [`Server`], the fd table, the recorder, the time clamp (inputs from several
//! threads read the clock at slightly different moments; the core requires time never to go
//! backwards), the listeners and their accept policy, every connection's read/write/close
//! lifecycle, the output budget and shutdown. It makes every decision about a connection; the
//! adapter only performs syscalls and reports what they returned.
//!
//! Outputs of the core are routed as they appear: out-of-band calls to
//! [`Driver::take_oob_call`] (run them at once, before reading further), the in-band call to
//! [`Driver::next_in_band`], connections with output to write to [`Driver::transmits`] /
//! [`Driver::take_transmit`], and everything that must happen outside any lock
//! (close a connection's socket, close a descriptor) to [`Driver::poll_action`].
//!
//! Handlers reach two more inputs through their adapter's [`crate::Control`]:
//! [`Driver::take_named_fd`] (QEMU's `monitor_get_fd`: the descriptor leaves the fd table for
//! the handler) and [`Driver::handle_added`] (QMP `add_client`: a stream from outside becomes a
//! client of a listener, under the accept policy).
//!
//! Invariants: every descriptor given to the driver is handed back exactly once, as
//! [`Action::CloseFd`] (or kept by the core until then); a closed connection's facts are ignored
//! (its [`ConnId`] is never reused); a monitor is attached to at most one connection; the sum of
//! the output held for every connection stays within [`Limits::output_budget`] after every
//! input (the client holding the most is cut, and logged, when it would not).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use qmp_core::json::{Object, Value};
use qmp_core::server::{
    Call, CallId, CallResult, HmpOptions, Input, Instant, Lane, MonitorId, Output, RunState,
    Server, TakeFdError, Timestamp,
};

use crate::conn::{CloseReason, Conn, ConnId, ConnStats, ReadFact, WriteFact};
use crate::fds::{Descriptor, FdLimits, FdTable};
use crate::listener::{AcceptFact, Listener, ListenerConfig, ACCEPT_BACKOFF_NS};
use crate::record::TraceSink;

mod stdio;

/// Default limit on connections open at once, across all listeners.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Default budget of pending output, every client together: four clients' worth of the core's
/// per-client cap ([`qmp_core::server::DEFAULT_OUTPUT_LIMIT`]), so a few slow readers
/// are served while N clients that never read cannot hold N times the cap.
pub const DEFAULT_OUTPUT_BUDGET: usize = 4 * qmp_core::server::DEFAULT_OUTPUT_LIMIT;

/// The driver's bounds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once across all listeners; further clients wait in the backlog.
    pub max_connections: usize,
    /// The fd table's bounds (total and per monitor).
    pub fds: FdLimits,
    /// Pending output held for every client together, in bytes.
    pub output_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            fds: FdLimits::default(),
            output_budget: DEFAULT_OUTPUT_BUDGET,
        }
    }
}

/// A deliberately wrong behaviour, for the simulator to prove it catches it (feature
/// `planted`; never in a binary a user runs).
#[cfg(feature = "planted")]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Planted {
    /// A read that did not fill its buffer is taken as "drained": readiness is cleared and the
    /// EOF behind the bytes is never read (the bug of issue 21).
    LostEof,
}

/// A handler call with the connection it was made on.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionCall {
    /// The core's call.
    pub call: Call,
    /// The connection whose request it is.
    pub session: ConnId,
}

/// Something the adapter must do outside any lock.
#[derive(Debug)]
#[must_use = "an action must be carried out (a socket or a descriptor to close)"]
pub enum Action<F> {
    /// The connection is closed in the driver and the core: drop its socket (deregister it
    /// first), then tell the registry's session hooks.
    CloseConn {
        /// Which.
        conn: ConnId,
        /// Its monitor (free for the next connection of its slot).
        monitor: MonitorId,
        /// Why.
        reason: CloseReason,
    },
    /// Close this descriptor: nobody holds it any more.
    CloseFd(F),
}

/// Why shutdown was requested.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ShutdownCause {
    /// SIGINT or SIGTERM: negotiated clients get `SHUTDOWN {guest: false, reason:
    /// "host-signal"}` first, as from QEMU 7.2.
    Signal,
    /// A handler (`quit`, which emits its own SHUTDOWN) or the embedder.
    Request,
}

/// How far shutdown has gone.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ShutdownState {
    /// Serving.
    #[default]
    Running,
    /// Requested: nothing is accepted or read any more; pending output is flushed, then every
    /// connection is closed ([`Driver::finish`]).
    Requested,
    /// Every connection is closed.
    Finished,
}

/// Counters of the driver's socket work, every connection together.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Reads that brought bytes.
    pub reads: u64,
    /// Writes the socket took only part of.
    pub partial_writes: u64,
    /// Writes refused with EAGAIN.
    pub blocked_writes: u64,
    /// Descriptors refused (table full, share used, cut by the kernel).
    pub fds_refused: u64,
    /// Clients cut for the output budget.
    pub budget_cuts: u64,
    /// Inputs the core rejected as misuse (a driver bug if ever non-zero; logged).
    pub misuse: u64,
}

/// The connection driver. `F` is the descriptor type (`OwnedFd` on a real system).
pub struct Driver<F> {
    server: Server,
    last_now: Instant,
    fds: FdTable<F>,
    recorder: Option<Box<dyn TraceSink>>,
    limits: Limits,
    listeners: Vec<Listener>,
    conns: BTreeMap<ConnId, Conn>,
    /// The connection attached to each monitor, indexed by monitor number (monitors are
    /// numbered densely, slot by slot).
    attached: Vec<Option<ConnId>>,
    next_conn: u64,
    oob_calls: VecDeque<SessionCall>,
    inband_call: Option<SessionCall>,
    transmit: BTreeSet<ConnId>,
    actions: VecDeque<Action<F>>,
    /// Monitors the core gave up on, closed once the current drain is over.
    core_disconnects: Vec<(MonitorId, qmp_core::server::DisconnectReason)>,
    /// Out-of-band calls handed out and not completed yet, with their monitors.
    oob_outstanding: Vec<(CallId, MonitorId)>,
    /// The in-band call handed out and not completed yet, with its monitor.
    inband_outstanding: Option<(CallId, MonitorId)>,
    /// An in-band completion held back until the out-of-band calls of its monitor complete
    /// (see [`Driver::complete`]).
    deferred: Option<(CallId, MonitorId, CallResult)>,
    out_total: usize,
    /// The standard input/output monitor was opened ([`Driver::open_stdio_monitor`]): there is
    /// one standard input, so at most one, ever.
    stdio_opened: bool,
    shutdown: ShutdownState,
    stats: DriverStats,
    #[cfg(feature = "planted")]
    planted: Option<Planted>,
}

impl<F: Descriptor> Driver<F> {
    /// A driver around `server` (commands registered already) serving `listeners`.
    pub fn new(server: Server, listeners: Vec<ListenerConfig>, limits: Limits) -> Self {
        let mut first = 0u64;
        let listeners: Vec<Listener> = listeners
            .into_iter()
            .map(|c| {
                let l = Listener::new(c, first);
                first += l.slots.len() as u64;
                l
            })
            .collect();
        Driver {
            server,
            last_now: Instant(0),
            fds: FdTable::new(limits.fds),
            recorder: None,
            limits,
            listeners,
            conns: BTreeMap::new(),
            attached: vec![None; first as usize],
            next_conn: 0,
            oob_calls: VecDeque::new(),
            inband_call: None,
            transmit: BTreeSet::new(),
            actions: VecDeque::new(),
            core_disconnects: Vec::new(),
            oob_outstanding: Vec::new(),
            inband_outstanding: None,
            deferred: None,
            out_total: 0,
            stdio_opened: false,
            shutdown: ShutdownState::Running,
            stats: DriverStats::default(),
            #[cfg(feature = "planted")]
            planted: None,
        }
    }

    /// Record every input to `sink` from now on.
    pub fn set_recorder(&mut self, sink: Option<Box<dyn TraceSink>>) {
        self.recorder = sink;
    }

    /// Plant a deliberately wrong behaviour (simulator only).
    #[cfg(feature = "planted")]
    pub fn plant(&mut self, bug: Option<Planted>) {
        self.planted = bug;
    }

    // ---- getters ----

    /// The core (read only: every input goes through the driver).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The latest `now` the driver used (inputs never go behind it).
    pub fn last_now(&self) -> Instant {
        self.last_now
    }

    /// The chardev ids of the listeners, in order.
    pub fn chardevs(&self) -> impl Iterator<Item = &str> + '_ {
        self.listeners.iter().map(|l| l.config.chardev.as_str())
    }

    /// The open connections.
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    /// Whether `conn` is open.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The monitor `conn` is attached to.
    pub fn monitor_of(&self, conn: ConnId) -> Option<MonitorId> {
        self.conns.get(&conn).map(|c| c.monitor)
    }

    /// The connection attached to `monitor` now.
    pub fn conn_of(&self, monitor: MonitorId) -> Option<ConnId> {
        *self.attached.get(usize::try_from(monitor.0).ok()?)?
    }

    /// The counters of `conn`.
    pub fn conn_stats(&self, conn: ConnId) -> Option<ConnStats> {
        self.conns.get(&conn).map(|c| c.stats)
    }

    /// Counters of every connection together.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Shutdown progress.
    pub fn shutdown_state(&self) -> ShutdownState {
        self.shutdown
    }

    /// True while serving (shutdown not requested).
    pub fn running(&self) -> bool {
        self.shutdown == ShutdownState::Running
    }

    /// Descriptors the driver holds on the core's behalf.
    pub fn fds_held(&self) -> usize {
        self.fds.len()
    }

    /// Descriptors handed back because the core returned them.
    pub fn fds_closed(&self) -> u64 {
        self.fds.closed_count()
    }

    /// Pending output of every connection together (what the output budget bounds).
    pub fn output_held(&self) -> usize {
        self.out_total
    }

    /// Whether the adapter should read `conn` now: it is open and readable (no read said
    /// would-block since its last readiness event), the core wants its input, and the driver
    /// is serving.
    pub fn should_read(&self, conn: ConnId) -> bool {
        self.running()
            && self
                .conns
                .get(&conn)
                .is_some_and(|c| c.readable && !c.input_closed && self.server.wants_read(c.monitor))
    }

    /// Whether the core wants `conn`'s input now (open, serving, not suspended), whatever its
    /// readiness: a runtime that reads speculatively (qmp-io's dispatcher) asks this.
    pub fn wants_input(&self, conn: ConnId) -> bool {
        self.running()
            && self
                .conns
                .get(&conn)
                .is_some_and(|c| !c.input_closed && self.server.wants_read(c.monitor))
    }

    /// Whether `conn` is readable (see [`Driver::should_read`]), whatever the core wants.
    pub fn is_readable(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.readable)
    }

    /// Whether the last write of `conn` was refused and no writable event came since.
    pub fn write_blocked(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.write_blocked)
    }

    /// The output `conn` has pending: write a prefix of it and report [`WriteFact::Wrote`].
    pub fn pending_output(&self, conn: ConnId) -> &[u8] {
        match self.conns.get(&conn) {
            Some(c) => self.server.pending_output(c.monitor),
            None => &[],
        }
    }

    /// Whether listener `l` should accept now (see the `listener` module for the policy).
    pub fn should_accept(&self, l: usize, now: Instant) -> bool {
        self.running()
            && self.conns.len() < self.limits.max_connections
            && self
                .listeners
                .get(l)
                .is_some_and(|l| l.backlog && !l.backing_off(now) && l.free_slot().is_some())
    }

    /// The number of listeners.
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// The earliest instant at which [`Driver::handle_timeout`] has work: a core timer or the
    /// end of an accept back-off.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let backoff = self.listeners.iter().filter_map(|l| l.backoff_until).min();
        match (self.server.poll_timeout(), backoff) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when out-of-band calls wait to be run.
    pub fn has_oob_calls(&self) -> bool {
        !self.oob_calls.is_empty()
    }

    /// True when the in-band lane has work (a call to run or a request for `NextInBand`).
    pub fn dispatcher_ready(&self) -> bool {
        self.inband_call.is_some() || (self.running() && self.server.dispatcher_ready())
    }

    // ---- socket facts ----

    /// A readiness event for `conn` (readable, read-closed or error): it is readable until a
    /// read says would-block.
    pub fn handle_readable(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.readable = true;
        }
    }

    /// A writable event for `conn`: output refused before may be written now.
    pub fn handle_writable(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if std::mem::take(&mut c.write_blocked) && !self.server.pending_output(c.monitor).is_empty()
        {
            self.transmit.insert(conn);
        }
    }

    /// A readiness event for listener `l`: a client may be waiting.
    pub fn handle_listener_ready(&mut self, l: usize) {
        if let Some(l) = self.listeners.get_mut(l) {
            l.backlog = true;
        }
    }

    /// Listener `l` accepted a connection: it gets the lowest free slot of `l` and that slot's
    /// monitor, and its greeting is queued. `None` (drop the socket) when the policy says no
    /// (the adapter accepted without [`Driver::should_accept`]).
    pub fn handle_accepted(&mut self, now: Instant, l: usize) -> Option<ConnId> {
        self.open_conn(now, l, "client connected")
    }

    /// A connected stream from outside (QMP `add_client`, QEMU's `qemu_chr_add_client`)
    /// becomes a client of listener `l`, under the same policy as an accepted one: the lowest
    /// free slot and its monitor, the greeting queued. `None` (close the stream) when the
    /// policy says no: shutdown, the connection limit, or no free slot (a one-client chardev
    /// with a client already: QEMU's `tcp_chr_add_client` refuses a chardev that is not
    /// disconnected).
    pub fn handle_added(&mut self, now: Instant, l: usize) -> Option<ConnId> {
        self.open_conn(now, l, "client added")
    }

    /// The listener whose chardev id is `chardev`.
    pub fn listener_of(&self, chardev: &str) -> Option<usize> {
        self.listeners
            .iter()
            .position(|l| l.config.chardev == chardev)
    }

    fn open_conn(&mut self, now: Instant, l: usize, how: &'static str) -> Option<ConnId> {
        if !self.running() || self.conns.len() >= self.limits.max_connections {
            return None;
        }
        let listener = self.listeners.get_mut(l)?;
        let slot = listener.free_slot()?;
        let monitor = listener.monitor(slot);
        let options = listener.config.options;
        let readline = listener.config.readline;
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        listener.slots[slot] = Some(conn);
        listener.backoff_until = None;
        self.attached[monitor.0 as usize] = Some(conn);
        let now = self.clamp(now);
        self.conns.insert(conn, Conn::new(monitor, l, now));
        self.stats.accepted += 1;
        tracing::info!(
            conn = conn.0,
            monitor = monitor.0,
            chardev = %self.listeners[l].config.chardev,
            "{how}"
        );
        let open = if readline {
            Input::OpenHmp {
                monitor,
                options: HmpOptions::default(),
            }
        } else {
            Input::Open { monitor, options }
        };
        self.apply(now, open);
        Some(conn)
    }

    /// An accept attempt on listener `l` failed.
    pub fn handle_accept_failed(&mut self, now: Instant, l: usize, fact: AcceptFact) {
        let now = self.clamp(now);
        let Some(listener) = self.listeners.get_mut(l) else {
            return;
        };
        match fact {
            AcceptFact::WouldBlock => listener.backlog = false,
            AcceptFact::Retry => {}
            AcceptFact::OutOfResources => {
                if listener.backoff_until.is_none() {
                    tracing::warn!(
                        chardev = %listener.config.chardev,
                        "accept failed: out of descriptors; backing off"
                    );
                }
                listener.backoff_until = Some(now.plus_nanos(ACCEPT_BACKOFF_NS));
            }
            AcceptFact::Failed(kind) => {
                tracing::warn!(chardev = %listener.config.chardev, error = ?kind, "accept failed");
                listener.backlog = false;
            }
        }
    }

    /// What a read of `conn` came to (see the `conn` module for the lifecycle).
    pub fn handle_read(&mut self, now: Instant, conn: ConnId, fact: ReadFact<'_, F>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            // A late fact about a closed connection: its descriptors are closed all the same.
            if let ReadFact::Data { fds, .. } = fact {
                self.actions.extend(fds.into_iter().map(Action::CloseFd));
            }
            return;
        };
        match fact {
            ReadFact::Data {
                bytes,
                fds,
                fds_cut,
                capacity,
            } => {
                let monitor = c.monitor;
                c.stats.bytes_in += bytes.len() as u64;
                c.stats.reads += 1;
                self.stats.reads += 1;
                #[cfg(feature = "planted")]
                if self.planted == Some(Planted::LostEof)
                    && bytes.len() < capacity
                    && fds.is_empty()
                {
                    c.readable = false;
                }
                let _ = capacity;
                let ids = self.adopt_fds(conn, fds, fds_cut);
                let now = self.clamp(now);
                self.apply(
                    now,
                    Input::Receive {
                        monitor,
                        bytes: bytes.to_vec(),
                        fds: ids,
                    },
                );
            }
            ReadFact::Eof if c.split => self.split_input_ended(conn, None),
            ReadFact::Eof => self.close(now, conn, CloseReason::PeerClosed),
            ReadFact::WouldBlock => c.readable = false,
            ReadFact::Interrupted => {}
            ReadFact::Failed(kind) if c.split => self.split_input_ended(conn, Some(kind)),
            ReadFact::Failed(kind) => self.close(now, conn, CloseReason::ReadFailed(kind)),
        }
    }

    /// What a write of `conn`'s pending output came to.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, fact: WriteFact) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match fact {
            WriteFact::Wrote(n) => {
                let monitor = c.monitor;
                let pending = self.server.pending_output(monitor).len();
                let n = n.min(pending);
                c.stats.bytes_out += n as u64;
                if n < pending {
                    c.stats.partial_writes += 1;
                    self.stats.partial_writes += 1;
                }
                let now = self.clamp(now);
                if n > 0 {
                    self.apply(now, Input::Written { monitor, n });
                }
                self.refresh_held(conn);
                if self.pending_output(conn).is_empty() {
                    self.transmit.remove(&conn);
                } else if self.conns.get(&conn).is_some_and(|c| !c.write_blocked) {
                    self.transmit.insert(conn);
                }
            }
            WriteFact::WouldBlock => {
                c.write_blocked = true;
                c.stats.blocked_writes += 1;
                self.stats.blocked_writes += 1;
                self.transmit.remove(&conn);
            }
            // Write again: the connection stays on the list it was taken from.
            WriteFact::Interrupted => {
                if !c.write_blocked && !self.server.pending_output(c.monitor).is_empty() {
                    self.transmit.insert(conn);
                }
            }
            WriteFact::Failed(kind) if c.split => self.split_output_failed(now, conn, kind),
            WriteFact::Failed(kind) => self.close(now, conn, CloseReason::WriteFailed(kind)),
        }
    }

    /// Time passed: fire the core's due timers and end accept back-offs that are over.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        for l in &mut self.listeners {
            if l.backoff_until.is_some_and(|t| t <= now) {
                l.backoff_until = None;
            }
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.apply(now, Input::Tick);
        }
    }

    // ---- the machine's side ----

    /// Emit an event (QEMU's `qapi_event_send_*`), stamped `timestamp`.
    pub fn emit_event(&mut self, now: Instant, name: &str, data: Object, timestamp: Timestamp) {
        self.apply(
            now,
            Input::Event {
                name: name.to_owned(),
                data,
                timestamp,
            },
        );
    }

    /// The VM run state changed.
    pub fn set_run_state(&mut self, now: Instant, state: RunState) {
        self.apply(now, Input::SetRunState(state));
    }

    /// Another subsystem pauses reading `monitor` (nests), or resumes it.
    pub fn suspend(&mut self, now: Instant, monitor: MonitorId, suspend: bool) {
        let input = if suspend {
            Input::Suspend { monitor }
        } else {
            Input::Resume { monitor }
        };
        self.apply(now, input);
    }

    /// QEMU's `monitor_suspend` from the HMP command of `call` (see
    /// [`crate::Control::suspend_hmp_caller`]): the call's human monitor is suspended unless the
    /// call runs non-interactively; returns whether it was.
    pub fn suspend_hmp_caller(&mut self, now: Instant, call: CallId) -> bool {
        if !self.server.hmp_call_can_suspend(call) {
            return false;
        }
        let Some(monitor) = self
            .server
            .outstanding_calls()
            .find(|c| c.id == call)
            .map(|c| c.monitor)
        else {
            return false;
        };
        self.suspend(now, monitor, true);
        true
    }

    /// A handler takes `monitor`'s fd named `name` (QEMU's `monitor_get_fd`): the core forgets
    /// the name, the driver hands over the descriptor, and the caller owns it from then on
    /// (closes it, or gives it to [`Driver::handle_added`]'s adapter). Recorded as
    /// [`Input::TakeNamedFd`], so a trace replays it. The error's `Display` is QEMU's text.
    pub fn take_named_fd(
        &mut self,
        now: Instant,
        monitor: MonitorId,
        name: &str,
    ) -> Result<F, TakeFdError> {
        let now = self.clamp(now);
        if let Some(rec) = self.recorder.as_mut() {
            rec.input(
                now,
                &Input::TakeNamedFd {
                    monitor,
                    name: name.to_owned(),
                },
            );
        }
        let taken = self.server.take_named_fd(now, monitor, name);
        if let Err(TakeFdError::Misuse(e)) = &taken {
            self.stats.misuse += 1;
            tracing::error!(error = ?e, "qmp-core rejected an input (driver bug)");
        }
        self.after_input(now);
        let id = taken?;
        self.fds.hand_over(id).ok_or_else(|| {
            tracing::error!(fd = id.0, "core named an fd the driver does not hold");
            TakeFdError::NotFound {
                name: name.to_owned(),
            }
        })
    }

    /// The next out-of-band call to run at once (before reading anything more).
    pub fn take_oob_call(&mut self) -> Option<SessionCall> {
        self.oob_calls.pop_front()
    }

    /// The next in-band call for the dispatcher: the one routed already, or the core's next
    /// (`NextInBand`); `None` when there is none now (requests the core answers itself are
    /// handled on the way) or shutdown was requested (queued requests get no reply, spec
    /// §5.5).
    pub fn next_in_band(&mut self, now: Instant) -> Option<SessionCall> {
        loop {
            if let Some(call) = self.inband_call.take() {
                return Some(call);
            }
            if !(self.running() && self.server.dispatcher_ready()) {
                return None;
            }
            self.apply(now, Input::NextInBand);
        }
    }

    /// A handler finished.
    ///
    /// Out-of-band replies go to the wire before the in-band replies they release (QEMU's IO
    /// thread writes an OOB reply as its handler returns, while the dispatcher it woke is
    /// still waking up): an in-band completion that arrives while an out-of-band call of the
    /// same monitor is outstanding (`x-oob-test`'s unlock releasing its lock, say) is held
    /// back and applied right after that call's completion. The in-band lane stays busy
    /// meanwhile ([`Driver::next_in_band`] has nothing).
    pub fn complete(&mut self, now: Instant, call: CallId, result: CallResult) {
        if let Some(i) = self.oob_outstanding.iter().position(|(c, _)| *c == call) {
            let (_, monitor) = self.oob_outstanding.swap_remove(i);
            self.apply(now, Input::Complete { call, result });
            let released = self
                .deferred
                .as_ref()
                .is_some_and(|(_, m, _)| *m == monitor && !self.oob_pending_for(monitor));
            if released {
                if let Some((call, _, result)) = self.deferred.take() {
                    self.inband_outstanding = None;
                    self.apply(now, Input::Complete { call, result });
                }
            }
            return;
        }
        if let Some((id, monitor)) = self.inband_outstanding {
            if id == call && self.oob_pending_for(monitor) {
                self.deferred = Some((call, monitor, result));
                return;
            }
            if id == call {
                self.inband_outstanding = None;
            }
        }
        self.apply(now, Input::Complete { call, result });
    }

    /// Whether an out-of-band call of `monitor` is outstanding.
    fn oob_pending_for(&self, monitor: MonitorId) -> bool {
        self.oob_outstanding.iter().any(|(_, m)| *m == monitor)
    }

    /// Drop the clients of chardev `id` (QEMU's chardev yank). False when there is none.
    pub fn yank(&mut self, now: Instant, id: &str) -> bool {
        let mut found = false;
        let mut victims = Vec::new();
        for l in &self.listeners {
            if l.config.chardev == id {
                found = true;
                victims.extend(l.slots.iter().flatten().copied());
            }
        }
        for conn in victims {
            self.close(now, conn, CloseReason::Yanked);
        }
        found
    }

    /// Stop serving: nothing more is accepted or read; pending output may still be written
    /// until [`Driver::finish`]. On a signal, negotiated clients get QEMU's SHUTDOWN event.
    pub fn request_shutdown(&mut self, now: Instant, cause: ShutdownCause, wall: Timestamp) {
        if self.shutdown != ShutdownState::Running {
            return;
        }
        if cause == ShutdownCause::Signal {
            let mut data = Object::with_capacity(2);
            data.insert("guest", Value::Bool(false));
            data.insert("reason", Value::string("host-signal"));
            self.emit_event(now, "SHUTDOWN", data, wall);
        }
        self.shutdown = ShutdownState::Requested;
    }

    /// Whether shutdown may finish: requested, no in-band call outstanding and nothing left to
    /// write (or the socket refuses it).
    pub fn shutdown_flushed(&self) -> bool {
        self.shutdown != ShutdownState::Running
            && self.inband_call.is_none()
            && self
                .server
                .outstanding_calls()
                .all(|c| c.lane == Lane::OutOfBand)
            && self
                .conns
                .iter()
                .all(|(_, c)| c.write_blocked || self.server.pending_output(c.monitor).is_empty())
    }

    /// Finish shutdown: close every connection, write the trace's end, and hand back every
    /// descriptor still held.
    pub fn finish(&mut self, now: Instant) {
        let open: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in open {
            self.close(now, conn, CloseReason::Shutdown);
        }
        self.shutdown = ShutdownState::Finished;
        if let Some(rec) = self.recorder.as_mut() {
            rec.finish(&self.server);
        }
        self.actions
            .extend(self.fds.drain().into_iter().map(Action::CloseFd));
    }

    /// Close `conn` (a fact said so, a policy did, or the adapter must: a yank, shutdown).
    pub fn close(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let now = self.clamp(now);
        if let Some(l) = self.listeners.get_mut(c.listener) {
            if let Some(slot) = l.slots.iter_mut().find(|s| **s == Some(conn)) {
                *slot = None;
            }
            // The next client may have been waiting in the backlog all along (its readiness
            // event long gone), and a descriptor was freed.
            l.backlog = true;
            l.backoff_until = None;
        }
        self.attached[c.monitor.0 as usize] = None;
        self.transmit.remove(&conn);
        self.out_total -= c.out_held;
        let s = c.stats;
        tracing::info!(
            conn = conn.0,
            monitor = c.monitor.0,
            bytes_in = s.bytes_in,
            bytes_out = s.bytes_out,
            calls = s.calls,
            fds_in = s.fds_in,
            fds_refused = s.fds_refused,
            duration_ms = now.0.saturating_sub(c.opened.0) / 1_000_000,
            reason = reason.text(),
            "connection closed"
        );
        self.actions.push_back(Action::CloseConn {
            conn,
            monitor: c.monitor,
            reason,
        });
        self.apply(now, Input::Close { monitor: c.monitor });
    }

    /// The next thing to do outside any lock, in order.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action<F>> {
        self.actions.pop_front()
    }

    /// The connections with output to write (and not blocked), in order.
    pub fn transmits(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.transmit.iter().copied()
    }

    /// Take `conn` off the list of connections to write (the caller writes it now). True when
    /// it was on it.
    pub fn take_transmit(&mut self, conn: ConnId) -> bool {
        self.transmit.remove(&conn)
    }

    /// Take the first connection with output to write.
    pub fn next_transmit(&mut self) -> Option<ConnId> {
        self.transmit.pop_first()
    }

    /// Whether `conn` is on the list of connections to write.
    pub fn wants_transmit(&self, conn: ConnId) -> bool {
        self.transmit.contains(&conn)
    }

    // ---- inside ----

    /// `now`, never behind an earlier input's.
    fn clamp(&mut self, now: Instant) -> Instant {
        let now = now.max(self.last_now);
        self.last_now = now;
        now
    }

    /// Keep the descriptors `conn` passed; refuse (and close) what the table cannot hold,
    /// saying which client and why.
    fn adopt_fds(&mut self, conn: ConnId, fds: Vec<F>, cut: bool) -> Vec<qmp_core::server::FdId> {
        let Some(c) = self.conns.get_mut(&conn) else {
            self.actions.extend(fds.into_iter().map(Action::CloseFd));
            return Vec::new();
        };
        let monitor = c.monitor;
        let mut ids = Vec::with_capacity(fds.len());
        let mut refused: Option<crate::fds::Refusal> = None;
        let mut n_refused = 0u64;
        for fd in fds {
            match self.fds.insert(monitor, fd) {
                Ok(id) => ids.push(id),
                Err((fd, why)) => {
                    refused = Some(why);
                    n_refused += 1;
                    self.actions.push_back(Action::CloseFd(fd));
                }
            }
        }
        c.stats.fds_in += ids.len() as u64;
        c.stats.fds_refused += n_refused;
        self.stats.fds_refused += n_refused;
        if let Some(why) = refused {
            let limits = self.fds.limits();
            tracing::warn!(
                conn = conn.0,
                monitor = monitor.0,
                refused = n_refused,
                held_by_client = self.fds.held_by(monitor),
                per_client = limits.per_monitor,
                table = limits.total,
                "descriptors passed by client {} closed unused: {}",
                conn.0,
                why.text()
            );
        }
        if cut {
            tracing::warn!(
                conn = conn.0,
                monitor = monitor.0,
                "descriptors passed by client {} were cut by the kernel (MSG_CTRUNC: more than \
                 one read accepts); they are closed and not available to commands",
                conn.0
            );
            self.stats.fds_refused += 1;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.stats.fds_refused += 1;
            }
        }
        ids
    }

    /// Apply one input at `now` (clamped), record it, route the core's outputs, then carry out
    /// what the core gave up on and the output budget.
    fn apply(&mut self, now: Instant, input: Input) {
        let now = self.clamp(now);
        if let Some(rec) = self.recorder.as_mut() {
            rec.input(now, &input);
        }
        if let Err(e) = self.server.handle(now, input) {
            self.stats.misuse += 1;
            tracing::error!(error = ?e, "qmp-core rejected an input (driver bug)");
        }
        self.after_input(now);
    }

    /// After an input: route the core's outputs, then carry out what the core gave up on and
    /// the output budget.
    fn after_input(&mut self, now: Instant) {
        self.route();
        while let Some((monitor, reason)) = self.core_disconnects.pop() {
            if let Some(conn) = self.conn_of(monitor) {
                tracing::warn!(
                    conn = conn.0,
                    monitor = monitor.0,
                    ?reason,
                    "core disconnected a client"
                );
                self.close(now, conn, CloseReason::Core(reason));
            }
        }
        if self.out_total > self.limits.output_budget {
            self.enforce_budget(now);
        }
    }

    /// Route every output of the core.
    fn route(&mut self) {
        while let Some(out) = self.server.poll_output() {
            if let Some(rec) = self.recorder.as_mut() {
                rec.output(&out);
            }
            match out {
                Output::Call(call) => {
                    let session = self.conn_of(call.monitor).unwrap_or(ConnId(u64::MAX));
                    if let Some(c) = self.conns.get_mut(&session) {
                        c.stats.calls += 1;
                    }
                    let call = SessionCall { call, session };
                    match call.call.lane {
                        Lane::OutOfBand => {
                            self.oob_outstanding.push((call.call.id, call.call.monitor));
                            self.oob_calls.push_back(call)
                        }
                        Lane::InBand => {
                            self.inband_outstanding = Some((call.call.id, call.call.monitor));
                            if let Some(old) = self.inband_call.replace(call) {
                                tracing::error!(
                                    call = old.call.id.0,
                                    "two in-band calls outstanding"
                                );
                            }
                        }
                    }
                }
                Output::Transmit(m) => {
                    if let Some(conn) = self.conn_of(m) {
                        self.refresh_held(conn);
                        if !self.conns[&conn].write_blocked {
                            self.transmit.insert(conn);
                        }
                    }
                }
                Output::CloseFd(id) => match self.fds.take(id) {
                    Some(fd) => self.actions.push_back(Action::CloseFd(fd)),
                    None => tracing::warn!(fd = id.0, "core closed an fd the driver does not hold"),
                },
                Output::Disconnect { monitor, reason } => {
                    self.core_disconnects.push((monitor, reason))
                }
            }
        }
    }

    /// Bring `conn`'s share of the output budget up to date.
    fn refresh_held(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let held = self.server.pending_output(c.monitor).len();
            self.out_total = self.out_total - c.out_held + held;
            c.out_held = held;
        }
    }

    /// Cut the clients holding the most output until the rest fits the budget.
    fn enforce_budget(&mut self, now: Instant) {
        while self.out_total > self.limits.output_budget {
            let Some((&conn, c)) = self.conns.iter().max_by_key(|(_, c)| c.out_held) else {
                return;
            };
            let held = c.out_held;
            let budget = self.limits.output_budget;
            tracing::warn!(
                conn = conn.0,
                monitor = c.monitor.0,
                held,
                budget,
                "client {} cut: it holds {held} bytes of unread output and all clients together \
                 exceed the output budget of {budget} bytes",
                conn.0
            );
            self.stats.budget_cuts += 1;
            self.close(now, conn, CloseReason::OutputBudget { held, budget });
        }
    }
}
