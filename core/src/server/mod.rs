//! The sans-IO QMP monitor state machine: every connection ("monitor"), the in-band queues and
//! their round-robin dispatcher, out-of-band execution, suspend counts, the event throttle,
//! named fds and fd sets of one process, as one deterministic value.
//!
//! Four kinds of method (as in quinn-proto): getters (`&self`), [`Server::handle`] for every
//! input, the mutator [`Server::register`], and [`Server::poll_output`] /
//! [`Server::poll_timeout`] for what the server wants done. The run-loop contract is in the
//! crate docs. Protocol rules are split by concern: `intake.rs` (bytes → queue or OOB),
//! `dispatch.rs` (checks, execution, replies), `builtins.rs`, `events.rs`, `fdsets.rs`,
//! `throttle.rs`, `args.rs` (hand-written argument schemas), [`qapi`] and `qapi_check.rs`
//! (QEMU's imported schema and checking against it), `qapi_export.rs` (`query-qmp-schema`'s
//! answer), `typed.rs` (typed handlers); this file owns the server value, input validation
//! and outputs.
//!
//! An out-of-band call stops its monitor's input until it is completed, as QEMU runs the OOB
//! handler synchronously in the I/O thread from the parser callback (see `intake.rs`): the
//! embedder must complete OOB calls promptly, or that monitor stalls (others do not).
//!
//! # Where this differs from QEMU 7.2, on purpose or not yet
//!
//! * Human monitors: a finished line waits in the in-band queue for the dispatcher (QEMU runs
//!   it at once in the main loop, which the dispatcher shares), so a line still queued when
//!   its client leaves is dropped unrun; completion lists no files or block devices; `help
//!   log`'s log item list, `O`-typed arguments and `$register` expressions are not known.
//! * A [`MonitorId`] names a monitor (QEMU's `MonitorQMP`, one per listener slot), reused by
//!   the clients that come and go on it: `Open` starts a session, `Close` ends it, and what
//!   QEMU keeps on the monitor survives (named fds, the suspend count, an outstanding OOB
//!   call, the options); [`Input::Destroy`] removes it for good. Where QEMU 7.2 is racy this
//!   core picks one of its outcomes: the reply of a call issued by an earlier session is
//!   dropped (QEMU writes it to whichever client is connected when the handler returns, the
//!   next client included), and a close resumes the suspension a queued request held in both
//!   dialects (2.12 left it suspended, so its next client hung, when the close came between
//!   queueing and dispatch; fixed in QEMU 4.1).
//! * Bytes are lexed as soon as they are received and the monitor is not suspended; QEMU's
//!   I/O thread does the same one byte at a time, so which of two racing things comes first
//!   (an OOB request read after a resume vs. the in-band reply of the request that caused the
//!   resume) is fixed here and timing-dependent in QEMU (spec §5.3).
//! * Due throttle timers fire at the start of every input, not only on [`Input::Tick`].
//! * A keyed throttle rule whose key member is missing from `data` throttles by name alone
//!   (QEMU asserts).
//! * Several unexpected arguments: QEMU names the first in GLib hash-table order; this core
//!   models that table exactly for objects of up to 7 members (checked against live QEMU) and
//!   approximates its in-place rehash for bigger ones (which matched QEMU 7.2 for every
//!   command's full argument object with three unexpected members, `schema_diff.py`).
//! * Output is capped ([`Config::output_limit`], then [`Output::Disconnect`]); QEMU's buffer
//!   grows without bound. Unprocessed input is capped too ([`Config::input_buffer_limit`]).
//! * The 2.12 dialect answers lexical and limit errors with `Invalid JSON syntax`, but the JSON
//!   layer keeps 7.2's lexer recovery, streamer limit order and parser (first error wins,
//!   duplicate keys refused, UTF-8 checked), where 2.12 differed (spec §13.2.2).
//! * Commands with an fd parameter other than the built-ins cannot claim pending passed fds
//!   (the `Call` carries none); they can take a named one ([`Server::take_named_fd`]).

/// True when the given planted bug is configured. Without the `planted-bugs` feature it is the
/// constant `false`: no planted type, field or code path is compiled (the binary a user runs
/// has none).
#[cfg(feature = "planted-bugs")]
macro_rules! planted {
    ($self:expr, $bug:ident) => {
        $self.config.planted_bug == Some($crate::server::PlantedBug::$bug)
    };
}
#[cfg(not(feature = "planted-bugs"))]
macro_rules! planted {
    ($self:expr, $bug:ident) => {
        false
    };
}

mod args;
mod builtins;
mod command_name;
pub mod config;
mod digest;
mod dispatch;
mod events;
mod fdsets;
mod human;
mod intake;
mod misuse;
mod monitor;
mod probes;
pub mod qapi;
mod qapi_check;
mod qapi_export;
mod registry;
pub mod schema;
mod throttle;
pub mod trace;
mod typed;
pub mod types;

pub use command_name::CommandName;
#[cfg(feature = "planted-bugs")]
pub use config::PlantedBug;
pub use config::{
    qemu212_version, qemu72_version, version_info, CompatPolicy, Config, Dialect, ThrottleRule,
    DEFAULT_INPUT_BUFFER_LIMIT, DEFAULT_OUTPUT_LIMIT, QMP_REQ_QUEUE_LEN_MAX,
};
pub use digest::Digest;
pub use human::human_monitor_command_spec;
pub use misuse::{ApiMisuse, TakeFdError};
pub use probes::Probes;
pub use qapi_export::schema_info;
pub use registry::{builtin_command_names, builtin_command_specs};
pub use schema::{ArgType, CommandSpec, EventSpec, FlatUnion, Member, Variant};
pub use typed::{call_typed, CommandError, Empty, ARGS_MISMATCH};
pub use types::*;

use std::collections::VecDeque;

use crate::json::{JsonStreamer, Value};
use fdsets::{Cleanup, FdSets};
use monitor::{Monitor, MonitorTable};
use registry::Registry;
use throttle::Throttle;

/// An issued call that has not been completed yet.
#[derive(Clone, Debug, PartialEq)]
pub struct OutstandingCall {
    /// The call.
    pub id: CallId,
    /// The monitor it came from (it may have closed since).
    pub monitor: MonitorId,
    /// Where it runs.
    pub lane: Lane,
    /// The command name.
    pub command: CommandName,
}

#[derive(Debug)]
struct PendingCall {
    info: OutstandingCall,
    request_id: Option<Value>,
    success_response: bool,
    /// OOB was off when the dispatcher took the request: resume the monitor once answered.
    resume_on_complete: bool,
    /// The generation of the session that issued the call (see `Monitor::generation`).
    generation: u64,
    /// An HMP command run by `human-monitor-command`: its output is the QMP reply.
    hmp_capture: bool,
}

/// Outstanding calls sorted by id: no allocation per call (a tree would allocate a node when
/// the single in-band call of a busy dispatcher comes and goes).
#[derive(Debug, Default)]
struct CallTable {
    v: Vec<PendingCall>,
}

impl CallTable {
    fn find(&self, id: &CallId) -> Result<usize, usize> {
        self.v.binary_search_by_key(id, |c| c.info.id)
    }

    fn insert(&mut self, id: CallId, pc: PendingCall) {
        match self.find(&id) {
            Ok(i) => self.v[i] = pc,
            Err(i) => self.v.insert(i, pc),
        }
    }

    fn get(&self, id: &CallId) -> Option<&PendingCall> {
        self.find(id).ok().map(|i| &self.v[i])
    }

    fn get_mut(&mut self, id: &CallId) -> Option<&mut PendingCall> {
        self.find(id).ok().map(|i| &mut self.v[i])
    }

    fn remove(&mut self, id: &CallId) -> Option<PendingCall> {
        self.find(id).ok().map(|i| self.v.remove(i))
    }

    fn contains_key(&self, id: &CallId) -> bool {
        self.find(id).is_ok()
    }
}

/// The whole monitor subsystem of one process. See the crate docs for the run loop.
#[derive(Debug)]
pub struct Server {
    config: Config,
    registry: Registry,
    monitors: MonitorTable,
    /// Dispatcher order (QEMU's `mon_list`): new monitors at the head, a served one moves to
    /// the tail. Holds exactly the keys of `monitors`.
    rr: Vec<MonitorId>,
    /// Outstanding calls, by id (ids are issued in increasing order, so pushing keeps it
    /// sorted). Bounded by one in-band call plus the OOB calls not completed yet.
    calls: CallTable,
    next_call: u64,
    /// The in-band call being run by the dispatcher, if any (at most one).
    inband_call: Option<CallId>,
    /// Sum of all queue lengths.
    queued_total: usize,
    /// Outputs not polled yet. Bounded by the work of one input: a few entries per monitor.
    outputs: VecDeque<Output>,
    now: Instant,
    run_state: RunState,
    throttle: Throttle,
    fdsets: FdSets,
    /// QEMU's `mon_refcount`: open sessions.
    open_monitors: usize,
    probes: Probes,
    digest: Digest,
    /// Monitors whose buffered input must be lexed before the current input returns. Bounded
    /// by the open monitors (deduplicated each pass).
    to_pump: Vec<MonitorId>,
    /// The pass `pump_all` is working through (kept for its allocation).
    pumping: Vec<MonitorId>,
    /// Reused buffer for replies written from their parts (one message at most).
    scratch: Vec<u8>,
    /// `Open` inputs applied so far (session generations).
    opens: u64,
    /// The human monitor's command table (built-ins and the embedder's).
    hmp_table: crate::hmp::Table,
    /// QEMU's process-wide defaults of the HMP `/fmt` argument.
    hmp_fmt: crate::hmp::FmtDefaults,
}

impl Server {
    /// A server with the built-in commands and no monitors.
    pub fn new(config: Config) -> Server {
        Server {
            registry: Registry::new(),
            monitors: MonitorTable::default(),
            rr: Vec::new(),
            calls: CallTable::default(),
            next_call: 1,
            inband_call: None,
            queued_total: 0,
            outputs: VecDeque::new(),
            now: Instant(0),
            run_state: config.run_state,
            throttle: Throttle::new(config.throttle.clone()),
            fdsets: FdSets::default(),
            open_monitors: 0,
            probes: Probes::default(),
            digest: Digest::default(),
            to_pump: Vec::new(),
            pumping: Vec::new(),
            scratch: Vec::new(),
            opens: 0,
            hmp_table: crate::hmp::Table::new(),
            hmp_fmt: crate::hmp::FmtDefaults::default(),
            config,
        }
    }

    /// Add a command the embedder runs. Allowed at any time; a name already in the table
    /// (built-ins included) is refused.
    pub fn register(&mut self, spec: CommandSpec) -> Result<(), ApiMisuse> {
        self.registry.register(spec)
    }

    /// Apply one input at `now` (never going backwards). Due throttle timers fire first, so
    /// [`Input::Tick`] is only needed when nothing else happens. On `Err` nothing changed.
    pub fn handle(&mut self, now: Instant, input: Input) -> Result<(), ApiMisuse> {
        if now < self.now {
            return Err(ApiMisuse::TimeWentBackwards {
                now,
                last: self.now,
            });
        }
        self.check_misuse(&input)?;
        self.now = now;
        self.fire_timers();
        match input {
            Input::Open { monitor, options } => self.open(monitor, options),
            Input::OpenHmp { monitor, .. } => self.open_hmp(monitor),
            Input::Receive {
                monitor,
                bytes,
                fds,
            } => self.receive(monitor, bytes, fds),
            Input::Written { monitor, n } => {
                if let Some(m) = self.monitors.get_mut(&monitor) {
                    // A report of 0 (EAGAIN) wrote nothing: not a partial write.
                    if n > 0 && n < m.out.len() {
                        self.probes.partial_write += 1;
                    }
                    m.out.written(n);
                }
            }
            Input::Close { monitor } => self.close(monitor, false),
            Input::Destroy { monitor } => self.destroy(monitor),
            Input::TakeNamedFd { monitor, name } => {
                // The result went to the handler that asked; replay only needs the effect.
                let _ = self.take_named_fd_now(monitor, name.as_bytes());
            }
            Input::Tick => {}
            Input::NextInBand => self.dispatch_next(),
            Input::Complete { call, result } => self.complete(call, result),
            Input::Event {
                name,
                data,
                timestamp,
            } => self.event(throttle::Event {
                name,
                data,
                timestamp,
            }),
            Input::Suspend { monitor } => {
                if let Some(m) = self.monitors.get_mut(&monitor) {
                    m.ext_suspends += 1;
                    self.suspend(monitor);
                }
            }
            Input::Resume { monitor } => {
                if let Some(m) = self.monitors.get_mut(&monitor) {
                    m.ext_suspends -= 1;
                    self.resume(monitor);
                }
            }
            Input::SetRunState(rs) => self.run_state = rs,
        }
        self.pump_all();
        Ok(())
    }

    fn check_misuse(&self, input: &Input) -> Result<(), ApiMisuse> {
        let known = |m: &MonitorId| self.monitors.get(m).ok_or(ApiMisuse::UnknownMonitor(*m));
        match input {
            Input::Open { monitor, options } => {
                if let Some(m) = self.monitors.get(monitor) {
                    if m.open {
                        return Err(ApiMisuse::MonitorExists(*monitor));
                    }
                    if m.options != *options || m.hmp.is_some() {
                        return Err(ApiMisuse::OptionsChanged(*monitor));
                    }
                }
            }
            Input::OpenHmp { monitor, .. } => {
                if let Some(m) = self.monitors.get(monitor) {
                    if m.open {
                        return Err(ApiMisuse::MonitorExists(*monitor));
                    }
                    if m.hmp.is_none() {
                        return Err(ApiMisuse::OptionsChanged(*monitor));
                    }
                }
            }
            Input::Receive { monitor, .. } | Input::Close { monitor } => {
                if !known(monitor)?.open {
                    return Err(ApiMisuse::MonitorNotOpen(*monitor));
                }
            }
            Input::Destroy { monitor } | Input::TakeNamedFd { monitor, .. } => {
                known(monitor)?;
            }
            Input::Written { monitor, n } => {
                let m = known(monitor)?;
                if *n > m.out.len() {
                    return Err(ApiMisuse::WrittenTooMuch {
                        monitor: *monitor,
                        n: *n,
                        pending: m.out.len(),
                    });
                }
            }
            Input::Suspend { monitor } => {
                let m = known(monitor)?;
                if m.ext_suspends == u32::MAX || m.suspend_count == u32::MAX {
                    return Err(ApiMisuse::SuspendOverflow(*monitor));
                }
            }
            Input::Resume { monitor } => {
                if known(monitor)?.ext_suspends == 0 {
                    return Err(ApiMisuse::NotSuspended(*monitor));
                }
            }
            Input::Complete { call, .. } => {
                if !self.calls.contains_key(call) {
                    return Err(ApiMisuse::UnknownCall(*call));
                }
            }
            Input::NextInBand => {
                if self.inband_call.is_some() {
                    return Err(ApiMisuse::DispatcherBusy);
                }
            }
            Input::Tick | Input::Event { .. } | Input::SetRunState(_) => {}
        }
        Ok(())
    }

    /// The next thing the server wants done, or `None` when nothing is left. A `Transmit` for
    /// a monitor closed since it was queued is harmless: its pending output is empty.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        let o = self.outputs.pop_front()?;
        if let Output::Transmit(m) = &o {
            if let Some(m) = self.monitors.get_mut(m) {
                m.transmit_queued = false;
            }
        }
        Some(o)
    }

    /// The instant at which [`Input::Tick`] has work (the earliest throttle period end).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.throttle.next_deadline()
    }

    /// The monitor's output not yet reported written (empty for unknown monitors).
    pub fn pending_output(&self, m: MonitorId) -> &[u8] {
        self.monitors.get(&m).map_or(&[], |m| m.out.pending())
    }

    /// Whether the driver should read from this monitor's client: it is open, the core has not given
    /// up on it, its suspend count is 0 (no full queue, no outstanding request without OOB,
    /// no external suspend), and no out-of-band call issued from its input is outstanding
    /// (QEMU's I/O thread runs that handler before reading on). Reading while this is false
    /// only makes the core buffer the bytes (up to `Config::input_buffer_limit`).
    pub fn wants_read(&self, m: MonitorId) -> bool {
        self.monitors
            .get(&m)
            .is_some_and(|m| m.live() && m.suspend_count == 0 && m.oob_call.is_none())
    }

    /// The out-of-band call issued from this monitor's input and not completed yet, if any:
    /// until it is completed the monitor's input is held and [`Server::wants_read`] is false
    /// (whatever the suspend count).
    pub fn oob_call_holding_input(&self, m: MonitorId) -> Option<CallId> {
        self.monitors.get(&m).and_then(|m| m.oob_call)
    }

    /// An in-band request is queued and no in-band call is outstanding: `NextInBand` has work.
    pub fn dispatcher_ready(&self) -> bool {
        self.inband_call.is_none() && self.queued_total > 0
    }

    /// In-band requests (and JSON errors) waiting in this monitor's queue.
    pub fn queue_len(&self, m: MonitorId) -> usize {
        self.monitors.get(&m).map_or(0, |m| m.queue.len())
    }

    /// QEMU's suspend counter of this monitor (0 for unknown monitors).
    pub fn suspend_count(&self, m: MonitorId) -> u32 {
        self.monitors.get(&m).map_or(0, |m| m.suspend_count)
    }

    /// Monitors, by id: those with a client connected and those waiting for the next one
    /// (opened once, not destroyed).
    pub fn monitors(&self) -> impl Iterator<Item = MonitorId> + '_ {
        self.monitors.keys().copied()
    }

    /// A client is connected to this monitor (between `Open` and `Close`).
    pub fn is_open(&self, m: MonitorId) -> bool {
        self.monitors.get(&m).is_some_and(|m| m.open)
    }

    /// The monitor's named fds (`getfd`), by name, newest first.
    pub fn named_fds(&self, m: MonitorId) -> Vec<(String, FdId)> {
        self.monitors.get(&m).map_or_else(Vec::new, |m| {
            m.named_fds
                .iter()
                .map(|(n, fd)| (String::from_utf8_lossy(n.as_bytes()).into_owned(), *fd))
                .collect()
        })
    }

    /// Capability negotiation is complete (command mode).
    pub fn is_negotiated(&self, m: MonitorId) -> bool {
        self.monitors.get(&m).is_some_and(|m| m.negotiated)
    }

    /// The session enabled the `oob` capability.
    pub fn oob_enabled(&self, m: MonitorId) -> bool {
        self.monitors.get(&m).is_some_and(|m| m.oob_enabled)
    }

    /// Calls issued and not completed, oldest first.
    pub fn outstanding_calls(&self) -> impl Iterator<Item = &OutstandingCall> + '_ {
        self.calls.v.iter().map(|c| &c.info)
    }

    /// Descriptors the core holds (received with bytes not lexed yet, pending, named, in fd
    /// sets), for fd accounting checks.
    pub fn held_fds(&self) -> Vec<FdId> {
        let mut v: Vec<FdId> = self
            .monitors
            .values()
            .flat_map(|m| {
                m.pending_fds
                    .iter()
                    .copied()
                    .chain(m.named_fds.iter().map(|(_, f)| *f))
                    .chain(m.input.fds())
            })
            .collect();
        v.extend(self.fdsets.all_fds());
        v
    }

    /// Approximate bytes of memory the server holds: per monitor its struct, parser buffer,
    /// unprocessed input, output buffer capacity, queue slots and fd lists (queued values
    /// themselves are not walked); plus throttle states, fd sets and the call table.
    pub fn memory_estimate(&self) -> usize {
        std::mem::size_of::<Server>()
            + self
                .monitors
                .values()
                .map(|m| m.memory_estimate() + std::mem::size_of::<MonitorId>() * 2)
                .sum::<usize>()
            + self.throttle.memory_estimate()
            + self.fdsets.memory_estimate()
            + self.calls.v.capacity() * std::mem::size_of::<PendingCall>()
            + self.outputs.capacity() * std::mem::size_of::<Output>()
    }

    /// Memory attributed to one monitor (see [`Server::memory_estimate`]).
    pub fn monitor_memory_estimate(&self, m: MonitorId) -> usize {
        self.monitors.get(&m).map_or(0, |m| {
            m.memory_estimate() + std::mem::size_of::<MonitorId>() * 2
        })
    }

    /// Coverage marks.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Fingerprint of everything produced so far (see [`Digest`]).
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The embedder's registered commands, in registration order.
    pub fn registered_commands(&self) -> impl Iterator<Item = &CommandSpec> {
        self.registry.embedder_specs()
    }

    /// Number of running throttle states.
    pub fn throttle_states(&self) -> usize {
        self.throttle.states()
    }

    /// The current VM run state.
    pub fn run_state(&self) -> RunState {
        self.run_state
    }

    /// Process exit: destroy every monitor (queued requests get no reply, spec §5.5) and return
    /// every descriptor the core holds as [`Output::CloseFd`]. Outstanding calls may still be
    /// completed; their replies go nowhere.
    pub fn shutdown(&mut self) {
        let ids: Vec<MonitorId> = self.monitors.keys().copied().collect();
        for id in ids {
            self.destroy(id);
        }
        for fd in self.fdsets.clear() {
            self.outputs.push_back(Output::CloseFd(fd));
            self.digest_close_fd(fd);
        }
        self.pump_all();
    }

    // ---- inputs ----

    /// QEMU's CHR_EVENT_OPENED: a session starts on the monitor (created by its first `Open`,
    /// at the head of the dispatcher's list like QEMU's `monitor_list_append`). The session
    /// state is fresh (reset at the previous close, `monitor_qmp_caps_reset`); the greeting
    /// is queued.
    fn open(&mut self, id: MonitorId, options: MonitorOptions) {
        self.opens += 1;
        let generation = self.opens;
        if !self.monitors.contains_key(&id) {
            let streamer = JsonStreamer::new(self.config.json_limits);
            self.monitors
                .insert(Monitor::new(id, options, streamer, generation));
            self.rr.insert(0, id);
        } else {
            self.probes.reopened += 1;
            let oob_call = self.monitors.get(&id).is_some_and(|m| m.oob_call.is_some());
            if oob_call || self.inband_call_of(id) {
                self.probes.reopened_while_call_runs += 1;
            }
        }
        if let Some(m) = self.monitors.get_mut(&id) {
            if m.generation != generation && !m.named_fds.is_empty() {
                self.probes.named_fds_survived += 1;
            }
            m.open = true;
            m.generation = generation;
        }
        self.open_monitors += 1;
        let greeting = self.greeting(options);
        self.emit(id, &greeting, false);
    }

    fn greeting(&self, options: MonitorOptions) -> Value {
        let caps = if options.oob_capable {
            vec![Value::string("oob")]
        } else {
            Vec::new()
        };
        let mut inner = crate::json::Object::with_capacity(2);
        inner.insert("version", self.config.version.clone());
        inner.insert("capabilities", Value::Array(caps));
        let mut g = crate::json::Object::with_capacity(1);
        g.insert("QMP", Value::Object(inner));
        Value::Object(g)
    }

    fn receive(&mut self, id: MonitorId, bytes: Vec<u8>, fds: Vec<FdId>) {
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if !m.live() {
            for fd in fds {
                self.close_fd(fd);
            }
            return;
        }
        m.input.push(bytes, fds);
        self.pump(id);
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if m.live() && m.input.held() > self.config.input_buffer_limit {
            self.probes.input_limit_disconnect += 1;
            let limit = self.config.input_buffer_limit;
            self.give_up(id, DisconnectReason::InputLimit { limit });
        }
    }

    /// QEMU's CHR_EVENT_CLOSED (`destroy` false): the session ends. The queue is dropped
    /// unanswered and the suspensions it held are undone (`monitor_qmp_cleanup_queue_and_resume`;
    /// with OOB off every queued request holds one, with OOB on in 7.2 a full queue holds one);
    /// the parser, unprocessed input, pending fds and output go; fd sets are cleaned up
    /// (`mon_refcount`). Named fds, external suspends, an in-band call still running and an
    /// outstanding OOB call stay with the monitor.
    ///
    /// With `destroy`, the monitor goes too (QEMU's `monitor_data_destroy`): its named fds are
    /// closed with the pending ones, before the fd-set cleanup.
    fn close(&mut self, id: MonitorId, destroy: bool) {
        let limit = self.queue_limit();
        let dialect = self.config.dialect;
        let streamer = JsonStreamer::new(self.config.json_limits);
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if !m.open {
            return;
        }
        let queued = m.queue.len();
        let held = if !m.oob_enabled {
            queued
        } else if dialect == Dialect::Qemu72 && queued >= limit {
            1
        } else {
            0
        };
        if queued > 0 {
            self.probes.queued_dropped_on_close += 1;
            self.queued_total -= queued;
        }
        if held > 0 && !planted!(self, NoResumeOnClose) {
            self.probes.resume_on_close += 1;
            m.suspend_count = m.suspend_count.saturating_sub(held as u32);
        }
        m.open = false;
        let mut fds = m.reset_session(streamer);
        if destroy || planted!(self, NamedFdsDieWithConnection) {
            fds.extend(m.named_fds.drain(..).map(|(_, fd)| fd));
        }
        if planted!(self, FdLeakedOnClose) {
            fds.clear();
        }
        for fd in fds {
            self.close_fd(fd);
        }
        self.open_monitors -= 1;
        if destroy {
            self.remove_monitor(id);
        }
        let mut closed = Vec::new();
        self.fdsets.cleanup_all(self.cleanup_state(), &mut closed);
        if !closed.is_empty() {
            self.probes.fdset_cleanup_closed += 1;
        }
        for fd in closed {
            self.close_fd(fd);
        }
    }

    /// [`Input::Destroy`]: the monitor goes for good. An open session is closed first; the
    /// named fds are closed. Calls it issued complete into nothing.
    fn destroy(&mut self, id: MonitorId) {
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if m.open {
            self.close(id, true);
            return;
        }
        let mut fds: Vec<FdId> = m.named_fds.drain(..).map(|(_, fd)| fd).collect();
        if planted!(self, FdLeakedOnClose) {
            fds.clear();
        }
        for fd in fds {
            self.close_fd(fd);
        }
        self.remove_monitor(id);
    }

    fn remove_monitor(&mut self, id: MonitorId) {
        self.monitors.remove(&id);
        self.rr.retain(|x| *x != id);
    }

    /// QEMU's `monitor_get_fd`: take the named fd out of the monitor's list; the caller owns
    /// it from then on.
    fn take_named_fd_now(&mut self, id: MonitorId, name: &[u8]) -> Result<FdId, TakeFdError> {
        let Some(m) = self.monitors.get_mut(&id) else {
            return Err(TakeFdError::UnknownMonitor(id));
        };
        let Some(i) = m.named_fds.iter().position(|(n, _)| n.as_bytes() == name) else {
            return Err(TakeFdError::NotFound {
                name: String::from_utf8_lossy(name).into_owned(),
            });
        };
        let (_, fd) = m.named_fds.remove(i);
        self.probes.named_fd_taken += 1;
        self.digest.word(5);
        self.digest.word(id.0);
        self.digest.word(fd.0);
        Ok(fd)
    }

    /// A handler takes the monitor's fd named `name` (QEMU's `monitor_get_fd`), at `now`: on
    /// success the core forgets it and the caller (the driver, on the handler's behalf) owns
    /// the descriptor and must close it when done. The monitor may have no client connected
    /// (named fds outlive sessions). Record it as [`Input::TakeNamedFd`] so a trace replays
    /// it; `handle` of that input does the same and drops the result.
    ///
    /// ```
    /// use qmp_core::server::*;
    ///
    /// let mut s = Server::new(Config::default());
    /// let m = MonitorId(1);
    /// s.handle(Instant(0), Input::Open { monitor: m, options: MonitorOptions::default() }).unwrap();
    /// let err = s.take_named_fd(Instant(0), m, "disk0").unwrap_err();
    /// assert_eq!(err.to_string(), "File descriptor named 'disk0' has not been found");
    /// ```
    pub fn take_named_fd(
        &mut self,
        now: Instant,
        monitor: MonitorId,
        name: &str,
    ) -> Result<FdId, TakeFdError> {
        if now < self.now {
            return Err(TakeFdError::Misuse(ApiMisuse::TimeWentBackwards {
                now,
                last: self.now,
            }));
        }
        if !self.monitors.contains_key(&monitor) {
            return Err(TakeFdError::UnknownMonitor(monitor));
        }
        self.now = now;
        self.fire_timers();
        let r = self.take_named_fd_now(monitor, name.as_bytes());
        self.pump_all();
        r
    }

    fn cleanup_state(&self) -> Cleanup {
        Cleanup {
            open_monitors: self.open_monitors,
            running: self.run_state == RunState::Running,
        }
    }

    // ---- suspend counts ----

    fn suspend(&mut self, id: MonitorId) {
        if let Some(m) = self.monitors.get_mut(&id) {
            m.suspend_count = m.suspend_count.saturating_add(1);
            if m.suspend_count > 1 {
                self.probes.nested_suspend += 1;
            }
        }
    }

    fn resume(&mut self, id: MonitorId) {
        if let Some(m) = self.monitors.get_mut(&id) {
            m.suspend_count = m.suspend_count.saturating_sub(1);
            if m.suspend_count == 0 && m.hmp.is_some() {
                self.hmp_prompt(id);
            }
            let Some(m) = self.monitors.get_mut(&id) else {
                return;
            };
            if m.suspend_count == 0 && !m.input.is_empty() {
                self.to_pump.push(id);
            }
        }
    }

    fn pump_all(&mut self) {
        // Each pass lexes input of monitors resumed by the previous one; a monitor is only
        // queued here on a resume, and resumes are bounded by the suspends before them.
        // The two vectors trade places each pass, so their allocations are reused.
        let mut ids = std::mem::take(&mut self.pumping);
        while !self.to_pump.is_empty() {
            std::mem::swap(&mut ids, &mut self.to_pump);
            ids.sort();
            ids.dedup();
            for &id in &ids {
                if self.monitors.get(&id).is_some_and(|m| !m.input.is_empty()) {
                    self.probes.resumed_buffered_input += 1;
                }
                self.pump(id);
            }
            ids.clear();
        }
        self.pumping = ids;
    }

    // ---- outputs ----

    /// Serialise a message for a monitor with its pretty setting and append it.
    fn emit(&mut self, id: MonitorId, v: &Value, oob_reply: bool) {
        self.emit_with(id, oob_reply, |pretty, out| {
            crate::json::write_message(v, pretty, out)
        });
    }

    /// [`Server::emit`] of a message already written in the compact layout.
    fn emit_text(&mut self, id: MonitorId, compact: &[u8], oob_reply: bool) {
        self.emit_with(id, oob_reply, |pretty, out| {
            crate::json::writer::write_message_text(compact, pretty, out)
        });
    }

    /// Append the wire message `write` makes (given the monitor's pretty setting), or hold it
    /// back (planted bug).
    fn emit_with(
        &mut self,
        id: MonitorId,
        oob_reply: bool,
        write: impl FnOnce(bool, &mut Vec<u8>),
    ) {
        let hold = oob_reply && planted!(self, OobReplyHeldBehindInBand) && self.inband_call_of(id);
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if !m.live() {
            return;
        }
        #[cfg(feature = "planted-bugs")]
        if oob_reply && planted!(self, OobReplyHeldBehindInBand) && (!m.queue.is_empty() || hold) {
            let mut held = Vec::new();
            write(m.options.pretty, &mut held);
            if let Some(m) = self.monitors.get_mut(&id) {
                m.held_replies.push(held);
            }
            return;
        }
        #[cfg(not(feature = "planted-bugs"))]
        let _ = hold;
        let start = m.out.buf.len();
        write(m.options.pretty, &mut m.out.buf);
        let mut h = Digest::default();
        h.bytes(&m.out.buf[start..]);
        self.appended(id, h);
    }

    /// Append one serialised message (its digest computed here).
    fn append_message(&mut self, id: MonitorId, bytes: &[u8]) {
        let mut h = Digest::default();
        h.bytes(bytes);
        self.append_bytes(id, bytes, h);
    }

    /// Append already serialised bytes (events, held replies).
    fn append_bytes(&mut self, id: MonitorId, bytes: &[u8], hash: Digest) {
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if !m.live() {
            return;
        }
        m.out.buf.extend_from_slice(bytes);
        self.appended(id, hash);
    }

    fn appended(&mut self, id: MonitorId, hash: Digest) {
        self.digest.word(1);
        self.digest.word(id.0);
        self.digest.word(hash.0);
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if m.out.len() > self.config.output_limit {
            self.probes.output_limit_disconnect += 1;
            let limit = self.config.output_limit;
            self.give_up(id, DisconnectReason::OutputLimit { limit });
            return;
        }
        if !m.transmit_queued {
            m.transmit_queued = true;
            self.outputs.push_back(Output::Transmit(id));
        }
    }

    /// The core stops serving a client: output and input are dropped and the driver is asked
    /// to close the connection (then it reports `Close`).
    fn give_up(&mut self, id: MonitorId, reason: DisconnectReason) {
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        m.dead = true;
        m.out.clear();
        let fds = m.input.clear();
        for fd in fds {
            self.close_fd(fd);
        }
        self.digest.word(4);
        self.digest.word(id.0);
        self.digest.word(match reason {
            DisconnectReason::OutputLimit { .. } => 1,
            DisconnectReason::InputLimit { .. } => 2,
        });
        self.outputs.push_back(Output::Disconnect {
            monitor: id,
            reason,
        });
    }

    fn close_fd(&mut self, fd: FdId) {
        self.digest_close_fd(fd);
        self.outputs.push_back(Output::CloseFd(fd));
    }

    fn digest_close_fd(&mut self, fd: FdId) {
        self.digest.word(3);
        self.digest.word(fd.0);
    }

    fn inband_call_of(&self, id: MonitorId) -> bool {
        self.inband_call
            .and_then(|c| self.calls.get(&c))
            .is_some_and(|c| c.info.monitor == id)
    }

    /// Planted bug support: release held OOB replies once in-band work is done.
    #[cfg(feature = "planted-bugs")]
    fn flush_held(&mut self, id: MonitorId) {
        // Only the planted bug holds replies back; this runs after every call otherwise.
        if !planted!(self, OobReplyHeldBehindInBand) {
            return;
        }
        let busy = self.inband_call_of(id);
        let Some(m) = self.monitors.get_mut(&id) else {
            return;
        };
        if m.held_replies.is_empty() || busy || !m.queue.is_empty() {
            return;
        }
        let held = std::mem::take(&mut m.held_replies);
        for r in held {
            let mut h = Digest::default();
            h.bytes(&r);
            self.append_bytes(id, &r, h);
        }
    }

    /// Nothing is ever held without the planted bug.
    #[cfg(not(feature = "planted-bugs"))]
    fn flush_held(&mut self, _id: MonitorId) {}
}
