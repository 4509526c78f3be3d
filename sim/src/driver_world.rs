//! The driver world: the same seeded clients as [`crate::world`], but the system under test is
//! the connection driver ([`qmp_driver::Driver`]) and the world plays its adapter over the
//! simulated sockets of [`crate::sockets`] (the faults are listed there), plus a listener whose
//! accept fails with EMFILE or is retried, and clients that close mid-request, mid-reply (a
//! reset, as Linux sends when output is left unread) or while their `x-oob-test` lock is held.
//!
//! The adapter does exactly what the driver's crate docs ask, in their order: out-of-band
//! calls at once, then every action, writes, reads (one at a time, so an out-of-band call runs
//! before the next read), accepts, and the in-band lane (one call at a time, completed after
//! a handler latency; `x-oob-test`'s lock waits for its unlock or for its holder's session to
//! close, told through the [`qmp_driver::Registry`] session hooks as every adapter must).
//!
//! In some worlds a stdio monitor (QEMU's `-monitor stdio`) runs next to the clients, its input
//! typed in chunks and then ended, its output sometimes failing (`driver_console.rs`, with its
//! oracles); it draws from its own random stream, so the other worlds are unchanged.
//!
//! The oracles that run after every step are in `driver_oracles.rs`: the reference model of
//! every client's replies, a closed peer cleaned up within [`CLEANUP_STEPS`], a free slot
//! taking a waiting client within the accept back-off, descriptor accounting (each closed
//! exactly once, none held that no one owns), and at the end quiescence (every client served,
//! greeted and closed) and shutdown with every descriptor closed.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use qmp_core::json::Value;
use qmp_core::server::{
    CallId, CallResult, Lane, MonitorId, MonitorOptions, TakeFdError, Timestamp,
};
use qmp_driver::{
    AcceptFact, Action, CloseReason, ConnId, Driver, FdLimits, Limits, ListenerConfig, ReadFact,
    Registry, SessionCall, ShutdownCause,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::client::ClientGen;
use crate::failure::{panic_text, Failure};
use crate::model::{ConnModel, NameState};
use crate::options::Options;
use crate::registry::{call_result, empty_return, ECHO, OOB_ECHO, OOB_TEST, TAKE_FD};
use crate::server::{build, config};
use crate::sockets::{FdKind, FdLedger, ReadOutcome, SimFd, SimSocket, SocketFaults};
use crate::wire::{server_message, J};
use crate::world::{version_j, Digest, WALL_BASE_NS};

#[path = "driver_console.rs"]
mod console;
#[path = "driver_handlers.rs"]
pub mod handlers;
#[path = "driver_oracles.rs"]
mod oracles;

use console::Console;
use handlers::{Running, SimControl};

/// Steps in which a closed peer's connection may still be open although the driver could
/// have read its EOF (the core wants its input and no readiness event is pending). A correct
/// driver reads it in the very step its event arrives.
pub const CLEANUP_STEPS: u32 = 8;
/// Virtual time a waiting client may wait while its listener has a free slot: the accept
/// back-off after EMFILE plus the longest event delay.
pub const ACCEPT_WAIT_NS: u64 = qmp_driver::listener::ACCEPT_BACKOFF_NS + 1_000_000;
/// Adapter loop rounds after one step before it is taken for a spin (a liveness failure).
pub const MAX_PUMP_ROUNDS: u32 = 100_000;
/// Steps one world may take before it is cut off.
pub const MAX_STEPS: u64 = 400_000;
/// Virtual time of the liveness phase (faults off; every client finishes and closes).
pub const LIVENESS_NS: u64 = 10_000_000_000;
/// Longest delay of a readiness event.
const MAX_EVENT_DELAY_NS: u64 = 20_000;
/// Longest a client stops reading.
const MAX_STALL_NS: u64 = 20_000_000;

/// A deliberately wrong behaviour the driver world must catch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DriverBug {
    /// The driver's planted lost EOF ([`qmp_driver::Planted::LostEof`]).
    LostEof,
    /// `x-oob-test`'s lock is not let go when its holder's session closes (the demo machine's
    /// planted variant).
    LockOutlivesHolder,
}

/// Every planted driver-level bug.
pub const ALL_DRIVER_BUGS: [DriverBug; 2] = [DriverBug::LostEof, DriverBug::LockOutlivesHolder];

/// What a seed decides about a driver world, on top of the clients' [`Options`].
#[derive(Clone, Debug, PartialEq)]
pub struct DriverOptions {
    /// The clients' options (events and external suspension are off in driver worlds).
    pub base: Options,
    /// Clients the listener serves at once (`clients=N`); the rest wait in its backlog.
    pub slots: usize,
    /// The adapter's read buffer.
    pub capacity: usize,
    /// Every client's receive window.
    pub window: usize,
    /// Socket faults of the safety phase.
    pub faults: SocketFaults,
    /// Chance an accept with a client waiting fails with EMFILE.
    pub p_emfile: f64,
    /// Chance an accept is interrupted or the client left before it (retry).
    pub p_accept_retry: f64,
    /// Chance per client action of a spurious readiness event somewhere.
    pub p_spurious: f64,
    /// Chance a client's close is a reset rather than a FIN.
    pub p_reset: f64,
    /// Chance a client sending the `x-oob-test` pair sends only the lock and closes.
    pub p_die_locked: f64,
    /// Chance a client's close cuts its last request in the middle.
    pub p_mid_request: f64,
    /// The driver's descriptor table bounds (small in some worlds, so refusals happen).
    pub fd_limits: FdLimits,
    /// Output held for every client together (small in some worlds, so clients that do not
    /// read are cut).
    pub output_budget: usize,
}

impl DriverOptions {
    /// Derives everything from `seed`.
    pub fn from_seed(seed: u64) -> DriverOptions {
        let mut base = Options::from_seed(seed);
        base.event_gap_ns = 0;
        base.p_suspend = 0.0;
        // The core's per-client output limit is the core world's subject; here a client is cut
        // only by the driver's process-wide budget (`output_budget`), which the world predicts.
        base.output_limit = qmp_core::server::Config::default().output_limit;
        // Likewise the input limit; and fd sets are the core world's subject.
        base.input_buffer_limit = qmp_core::server::Config::default().input_buffer_limit;
        base.p_fdsets = 0.0;
        base.p_pause = 0.0;
        // One listener: its monitors share one set of options.
        let (oob, pretty) = (base.oob_capable[0], base.pretty[0]);
        base.oob_capable = vec![oob; base.clients];
        base.pretty = vec![pretty; base.clients];
        // Connections come and go here: closing is the point.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6472_6976_6572_5f77);
        if base.p_disconnect == 0.0 || rng.random_bool(0.5) {
            base.p_disconnect = rng.random_range(0.01..0.08);
        }
        // ... and so is a lock whose holder dies.
        if base.p_lock == 0.0 && rng.random_bool(0.5) {
            base.p_lock = rng.random_range(0.03..0.12);
        }
        let pick = |rng: &mut ChaCha8Rng, on: f64, lo: f64, hi: f64| {
            if rng.random_bool(on) {
                rng.random_range(lo..hi)
            } else {
                0.0
            }
        };
        let slots = if rng.random_bool(0.5) {
            1
        } else {
            rng.random_range(1..=base.clients)
        };
        let faults = SocketFaults {
            max_read: base.max_read,
            p_eintr: pick(&mut rng, 0.5, 0.01, 0.2),
            short_writes: base.short_writes,
            p_write_block: pick(&mut rng, 0.4, 0.01, 0.3),
            p_ctrunc: pick(&mut rng, 0.5, 0.1, 0.8),
            p_write_into_void: pick(&mut rng, 0.5, 0.1, 0.9),
        };
        DriverOptions {
            slots,
            capacity: [16, 64, 512, 4096, 65536][rng.random_range(0..5)],
            window: [8, 100, 4096, 212_992][rng.random_range(0..4)],
            faults,
            p_emfile: pick(&mut rng, 0.4, 0.05, 0.5),
            p_accept_retry: pick(&mut rng, 0.3, 0.05, 0.3),
            p_spurious: pick(&mut rng, 0.3, 0.01, 0.2),
            p_reset: [0.0, 0.3, 1.0][rng.random_range(0..3)],
            p_die_locked: [0.2, 0.6, 1.0][rng.random_range(0..3)],
            p_mid_request: [0.0, 0.5, 0.9][rng.random_range(0..3)],
            fd_limits: if rng.random_bool(0.3) {
                FdLimits {
                    total: rng.random_range(1..6),
                    per_monitor: rng.random_range(1..3),
                }
            } else {
                FdLimits::default()
            },
            output_budget: if rng.random_bool(0.25) {
                rng.random_range(2_048..65_536)
            } else {
                qmp_driver::DEFAULT_OUTPUT_BUDGET
            },
            base,
        }
    }
}

impl fmt::Display for DriverOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.base)?;
        writeln!(
            f,
            "  driver world: slots={} capacity={} window={} p_emfile={:.2} p_accept_retry={:.2} p_spurious={:.2}",
            self.slots, self.capacity, self.window, self.p_emfile, self.p_accept_retry, self.p_spurious
        )?;
        write!(
            f,
            "  p_reset={:.1} p_die_locked={:.1} p_mid_request={:.1} fd_limits={:?} output_budget={} faults={:?}",
            self.p_reset, self.p_die_locked, self.p_mid_request, self.fd_limits, self.output_budget, self.faults
        )
    }
}

/// What the world does at an agenda entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Todo {
    ClientAct(usize),
    ClientRead(usize),
    ReadEvent(usize),
    WriteEvent(usize),
    ListenerEvent,
    Complete(CallId),
    Timeout,
    PeerClose(usize, bool),
    /// Something happens to the stdio monitor's input.
    Console(console::ConsoleEvent),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
}

/// One connection as the world sees it: the socket, its descriptor, its client's model.
#[derive(Debug)]
struct Sock {
    sock: SimSocket,
    client: usize,
    /// The server's descriptor, from accept until the driver says close.
    fd: Option<SimFd>,
    conn: Option<ConnId>,
    /// The driver closed it (its `CloseConn` came).
    closed: bool,
    model: ConnModel,
    /// The model no longer describes this connection (the kernel cut a `getfd`'s descriptor):
    /// its replies are not checked and its client closes.
    desync: bool,
    read_scheduled: bool,
    /// Steps counted against [`CLEANUP_STEPS`].
    lingering: u32,
    /// Step at which the client closed.
    gone_at: Option<u64>,
}

#[derive(Debug)]
struct Client {
    gen: ClientGen,
    sock: Option<usize>,
    waiting: bool,
}

/// The in-band call running now.
#[derive(Debug)]
struct InBand {
    call: CallId,
    session: ConnId,
    result: CallResult,
    /// `x-oob-test` lock waiting for its unlock (or its holder's end), as the model says.
    parked: bool,
    /// The demo machine's handler, for `x-oob-test`'s lock (its result replaces `result`).
    running: Option<Running>,
}

/// Counters of the faults and situations a run exercised (the list), by name.
pub type Marks = BTreeMap<&'static str, u64>;

/// Every mark a driver world can set; a long enough run must hit each.
pub const MARKS: [&str; 24] = [
    "short read",
    "data then EOF after one event",
    "EOF alone",
    "reset",
    "read EINTR",
    "read would-block",
    "write EINTR",
    "partial write",
    "write would-block",
    "write after the client left",
    "fds cut (MSG_CTRUNC)",
    "fds refused (table or share full)",
    "accept EMFILE",
    "accept retry",
    "close mid-request",
    "close mid-reply",
    "close holding the lock",
    "next client served after a close",
    "client cut by the output budget",
    "stdio EOF",
    "stdio read error",
    "stdio write failed",
    "stdio input ended with lines unanswered",
    "stdio readiness after its end",
];

/// What a finished driver world reports.
#[derive(Clone, Debug, Default)]
pub struct DriverRunStats {
    /// Steps (agenda actions) taken.
    pub steps: u64,
    /// Messages checked against the model.
    pub messages: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Digest of every client's received bytes (determinism check).
    pub digest: u64,
    /// Faults and situations exercised.
    pub marks: Marks,
}

/// One driver world.
pub struct DriverWorld {
    opts: DriverOptions,
    rng: ChaCha8Rng,
    driver: Driver<SimFd>,
    registry: Registry,
    control: Arc<SimControl>,
    machine: Arc<qmp_driver::demo::Machine>,
    /// Sessions the registry's hook was told of, not yet acted on.
    closed_sessions: Arc<Mutex<Vec<ConnId>>>,
    ledger: FdLedger,
    listener_fd: Option<SimFd>,
    socks: Vec<Sock>,
    clients: Vec<Client>,
    backlog: VecDeque<usize>,
    by_conn: BTreeMap<ConnId, usize>,
    listener_event_due: bool,
    /// Since when a waiting client has had a free slot (reset by EMFILE).
    slot_free_since: Option<u64>,
    agenda: BTreeMap<(u64, u64), Todo>,
    seq: u64,
    now: u64,
    step: u64,
    phase: Phase,
    timeout_at: Option<u64>,
    inband: Option<InBand>,
    sem: u64,
    requests_left: u32,
    next_tag: i64,
    digest: Digest,
    messages: u64,
    marks: Marks,
    /// A slot was freed by a close while a client waited: the next accept counts as served.
    served_after_close_due: bool,
    /// The named fds each monitor (listener slot) holds as its last client's model left them:
    /// they outlive the connection, and the next client of the slot meets them.
    slot_names: BTreeMap<MonitorId, [NameState; 3]>,
    /// The stdio monitor, in some worlds (`driver_console.rs`).
    console: Option<Console>,
}

fn exp_gap(rng: &mut ChaCha8Rng, mean: u64) -> u64 {
    if mean == 0 {
        return 0;
    }
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    ((-u.ln()) * mean as f64).min(mean as f64 * 20.0) as u64
}

impl DriverWorld {
    /// A world for `opts`, with an optional planted bug.
    pub fn new(opts: DriverOptions, bug: Option<DriverBug>) -> DriverWorld {
        let opts_seed = opts.base.seed;
        let server = build(config(&opts.base, None));
        let listener = ListenerConfig {
            chardev: "mon0".into(),
            clients: opts.slots,
            options: MonitorOptions {
                oob_capable: opts.base.oob_capable[0],
                pretty: opts.base.pretty[0],
            },
            readline: false,
        };
        #[allow(unused_mut)]
        let limits = Limits {
            fds: opts.fd_limits,
            output_budget: opts.output_budget,
            ..Limits::default()
        };
        let mut driver = Driver::new(server, vec![listener], limits);
        if bug == Some(DriverBug::LostEof) {
            driver.plant(Some(qmp_driver::Planted::LostEof));
        }
        let closed_sessions: Arc<Mutex<Vec<ConnId>>> = Arc::default();
        let mut registry = Registry::new();
        let machine = qmp_driver::demo::Machine::new(&crate::world::to_value(&version_j()));
        machine.register(&mut registry, true);
        if bug == Some(DriverBug::LockOutlivesHolder) {
            machine.plant_lock_outlives_holder();
        }
        let sink = closed_sessions.clone();
        registry.on_session_closed(Arc::new(move |s| {
            if let Ok(mut v) = sink.lock() {
                v.push(s);
            }
        }));
        let mut ledger = FdLedger::default();
        let listener_fd = Some(ledger.open(FdKind::Listener));
        let clients = (0..opts.base.clients)
            .map(|i| Client {
                gen: ClientGen::new(i),
                sock: None,
                waiting: false,
            })
            .collect();
        DriverWorld {
            rng: ChaCha8Rng::seed_from_u64(opts.base.seed ^ 0x7369_6d64_7276),
            requests_left: opts.base.requests,
            opts,
            driver,
            registry,
            control: Arc::default(),
            machine,
            closed_sessions,
            ledger,
            listener_fd,
            socks: Vec::new(),
            clients,
            backlog: VecDeque::new(),
            by_conn: BTreeMap::new(),
            listener_event_due: false,
            slot_free_since: None,
            slot_names: BTreeMap::new(),
            agenda: BTreeMap::new(),
            seq: 0,
            now: 0,
            step: 0,
            phase: Phase::Safety,
            timeout_at: None,
            inband: None,
            sem: 0,
            next_tag: 1,
            digest: Digest::new(),
            messages: 0,
            marks: MARKS.iter().map(|m| (*m, 0)).collect(),
            served_after_close_due: false,
            console: Console::for_seed(opts_seed),
        }
    }

    fn schedule(&mut self, at: u64, act: Todo) {
        self.seq += 1;
        self.agenda.insert((at, self.seq), act);
    }

    fn mark(&mut self, name: &'static str) {
        *self.marks.entry(name).or_insert(0) += 1;
    }

    fn fail(&self, f: Failure) -> Failure {
        f.at(self.step, self.now)
    }

    fn faults(&self) -> SocketFaults {
        match self.phase {
            Phase::Safety => self.opts.faults.clone(),
            Phase::Liveness => SocketFaults {
                max_read: 65536,
                ..SocketFaults::default()
            },
        }
    }

    fn event_delay(&mut self) -> u64 {
        match self.phase {
            Phase::Safety => self.rng.random_range(0..MAX_EVENT_DELAY_NS),
            Phase::Liveness => 0,
        }
    }

    /// Runs the safety phase, the liveness phase, then shutdown and the final accounting.
    pub fn run(&mut self) -> Result<DriverRunStats, Failure> {
        match catch_unwind(AssertUnwindSafe(|| self.run_inner())) {
            Ok(r) => r,
            Err(p) => Err(self.fail(Failure::crash(panic_text(p.as_ref())))),
        }
    }

    fn run_inner(&mut self) -> Result<DriverRunStats, Failure> {
        self.console_open()?;
        for i in 0..self.clients.len() {
            let at = self.rng.random_range(0..1_000_000);
            self.schedule(at, Todo::ClientAct(i));
        }
        let mut deadline = u64::MAX;
        loop {
            let Some(((at, _), act)) = self.agenda.pop_first() else {
                if self.replace_stolen_unlock() {
                    continue;
                }
                break;
            };
            if self.phase == Phase::Safety && self.requests_left == 0 {
                self.phase = Phase::Liveness;
                deadline = self.now + LIVENESS_NS;
                for i in 0..self.clients.len() {
                    self.schedule(self.now, Todo::ClientAct(i));
                }
            }
            if at > deadline {
                break;
            }
            if self.step >= MAX_STEPS {
                return Err(self.fail(Failure::liveness(
                    "step-budget",
                    format!("more than {MAX_STEPS} steps without finishing"),
                )));
            }
            self.now = self.now.max(at);
            self.step += 1;
            self.perform(act)?;
            self.pump()?;
            self.check_step()?;
        }
        self.check_quiescent()?;
        self.shutdown()?;
        if let Some(c) = &self.console {
            self.digest.bytes(&c.out);
        }
        Ok(DriverRunStats {
            steps: self.step,
            messages: self.messages,
            accepted: self.driver.stats().accepted,
            digest: self.digest.0,
            marks: std::mem::take(&mut self.marks),
        })
    }

    fn perform(&mut self, act: Todo) -> Result<(), Failure> {
        match act {
            Todo::ClientAct(i) => self.client_act(i),
            Todo::ClientRead(s) => self.client_read(s),
            Todo::ReadEvent(s) => {
                self.socks[s].sock.read_event_due = false;
                if let Some(conn) = self.socks[s].conn {
                    self.driver.handle_readable(conn);
                }
                Ok(())
            }
            Todo::WriteEvent(s) => {
                self.socks[s].sock.write_event_due = false;
                if let Some(conn) = self.socks[s].conn {
                    self.driver.handle_writable(conn);
                }
                Ok(())
            }
            Todo::ListenerEvent => {
                self.listener_event_due = false;
                self.driver.handle_listener_ready(0);
                Ok(())
            }
            Todo::Complete(call) => {
                if self
                    .inband
                    .as_ref()
                    .is_some_and(|c| c.call == call && !c.parked)
                {
                    self.finish_in_band()?;
                }
                Ok(())
            }
            Todo::PeerClose(s, reset) => {
                self.peer_close(s, reset);
                Ok(())
            }
            Todo::Timeout => {
                self.timeout_at = None;
                self.driver.handle_timeout(self.t());
                Ok(())
            }
            Todo::Console(ev) => {
                self.console_event(ev);
                Ok(())
            }
        }
    }

    fn t(&self) -> qmp_core::server::Instant {
        qmp_core::server::Instant(self.now)
    }

    // ---- clients ----

    fn client_act(&mut self, i: usize) -> Result<(), Failure> {
        let Some(s) = self.clients[i].sock else {
            if self.phase == Phase::Safety && self.requests_left > 0 {
                self.connect(i);
            }
            return Ok(());
        };
        if self.phase == Phase::Liveness {
            // Done once greeted and answered: leave, so the next waiting client is served.
            let m = &self.socks[s].model;
            if self.socks[s].desync || (m.greeting.is_none() && m.outstanding() == 0) {
                self.client_close(i, false);
            } else {
                self.clients[i].waiting = true;
            }
            return Ok(());
        }
        if self.opts.p_spurious > 0.0 && self.rng.random_bool(self.opts.p_spurious) {
            let open: Vec<usize> = (0..self.socks.len())
                .filter(|&k| self.socks[k].fd.is_some())
                .collect();
            if !open.is_empty() {
                let k = open[self.rng.random_range(0..open.len())];
                let act = if self.rng.random_bool(0.5) {
                    Todo::ReadEvent(k)
                } else {
                    Todo::WriteEvent(k)
                };
                self.schedule(self.now, act);
            }
        }
        if self.socks[s].desync {
            self.client_close(i, false);
            return Ok(());
        }
        if self.requests_left == 0 {
            return Ok(());
        }
        let gap = exp_gap(&mut self.rng, self.opts.base.client_gap_ns);
        if self.rng.random_bool(self.opts.base.p_disconnect) {
            if self.rng.random_bool(self.opts.p_mid_request) {
                // Part of one more request goes out, then the connection drops.
                let model = &self.socks[s].model;
                let mut throwaway = ConnModel::new(model.pretty, model.offered_oob, Vec::new());
                throwaway.greeting = None;
                throwaway.projected = model.projected;
                throwaway.confirmed = model.confirmed;
                let mut tag = -1;
                let plan = self.clients[i].gen.plan(
                    &mut self.rng,
                    &self.opts.base,
                    &mut throwaway,
                    &mut tag,
                );
                if let Some(p) = plan {
                    let json_len = p.bytes.trim_ascii_end().len();
                    if json_len > 1 {
                        let cut = self.rng.random_range(1..json_len);
                        self.send(s, &p.bytes[..cut], false);
                        self.mark("close mid-request");
                    }
                }
            }
            let reset = self.rng.random_bool(self.opts.p_reset);
            self.client_close(i, reset);
            self.requests_left = self.requests_left.saturating_sub(1);
            self.schedule(self.now + gap, Todo::ClientAct(i));
            return Ok(());
        }
        let sock = &mut self.socks[s];
        let plan = self.clients[i].gen.plan(
            &mut self.rng,
            &self.opts.base,
            &mut sock.model,
            &mut self.next_tag,
        );
        match plan {
            None if sock.model.outstanding() > 0 || sock.model.greeting.is_some() => {
                self.clients[i].waiting = true;
            }
            None => self.schedule(self.now + gap.max(1_000), Todo::ClientAct(i)),
            Some(p) => {
                self.requests_left = self.requests_left.saturating_sub(1);
                if p.lock && self.rng.random_bool(self.opts.p_die_locked) {
                    // Only the lock goes out; its holder dies before the unlock.
                    self.send(s, &p.bytes[..p.lock_end], false);
                    let reset = self.rng.random_bool(self.opts.p_reset);
                    let delay = self.rng.random_range(0..2_000_000);
                    self.client_close_after(i, reset, delay);
                    self.mark("close holding the lock");
                    return Ok(());
                }
                for e in p.expects {
                    self.socks[s].model.push(e);
                }
                self.send(s, &p.bytes, p.fd);
                self.schedule(self.now + gap, Todo::ClientAct(i));
            }
        }
        Ok(())
    }

    /// The named fds a connecting client will meet: its slot is only chosen at accept, so a
    /// name is known only when no other client is connected and every slot agrees on it (a
    /// slot never used holds none), and unknown otherwise (the client settles it with a
    /// `getfd` before relying on it).
    fn names_for_next_client(&self) -> [NameState; 3] {
        let mut names = [NameState::Absent; 3];
        // A client still connected may change its slot's names before this one is accepted.
        if self.socks.iter().any(|s| !s.closed) {
            return [NameState::Unknown; 3];
        }
        let unused_slot = self.slot_names.len() < self.opts.slots;
        for (n, name) in names.iter_mut().enumerate() {
            let mut states = self
                .slot_names
                .values()
                .map(|s| s[n])
                .chain(unused_slot.then_some(NameState::Absent));
            let first = states.next().unwrap_or(NameState::Absent);
            *name = if states.all(|s| s == first) {
                first
            } else {
                NameState::Unknown
            };
        }
        names
    }

    fn connect(&mut self, i: usize) {
        let base = &self.opts.base;
        let (offered, pretty) = (base.oob_capable[i], base.pretty[i]);
        let caps = if offered {
            J::Arr(vec![J::s("oob")])
        } else {
            J::Arr(vec![])
        };
        let greeting = server_message(
            &J::obj(vec![(
                "QMP",
                J::obj(vec![("version", version_j()), ("capabilities", caps)]),
            )]),
            pretty,
        );
        self.clients[i]
            .gen
            .on_connect(&mut self.rng, &self.opts.base);
        self.clients[i].waiting = false;
        let s = self.socks.len();
        self.socks.push(Sock {
            sock: SimSocket::new(self.opts.window),
            client: i,
            fd: None,
            conn: None,
            closed: false,
            model: ConnModel::new(pretty, offered, greeting)
                .with_names(self.names_for_next_client()),
            desync: false,
            read_scheduled: false,
            lingering: 0,
            gone_at: None,
        });
        self.clients[i].sock = Some(s);
        self.backlog.push_back(s);
        if !std::mem::replace(&mut self.listener_event_due, true) {
            let at = self.now + self.event_delay();
            self.schedule(at, Todo::ListenerEvent);
        }
        let at = self.now + exp_gap(&mut self.rng, self.opts.base.client_gap_ns);
        self.schedule(at, Todo::ClientAct(i));
    }

    /// Client of socket `s` sends `bytes` (with a `getfd` descriptor when `fd`, and sometimes
    /// extra ones the server must close).
    fn send(&mut self, s: usize, bytes: &[u8], fd: bool) {
        let mut fds = Vec::new();
        if fd {
            fds.push(self.ledger.open(FdKind::Passed));
        }
        if self.phase == Phase::Safety && self.rng.random_bool(self.opts.base.p_fds) {
            for _ in 0..self.rng.random_range(1..=3) {
                fds.push(self.ledger.open(FdKind::Passed));
            }
        }
        if self.socks[s].sock.client_send(bytes, fds, fd) {
            let at = self.now + self.event_delay();
            self.schedule(at, Todo::ReadEvent(s));
        }
    }

    fn client_close(&mut self, i: usize, reset: bool) {
        self.client_close_after(i, reset, 0);
    }

    /// Client `i` leaves its connection; the FIN or RST goes out `delay` later (what it sent
    /// before may be read and acted on meanwhile: a lock taken, say).
    fn client_close_after(&mut self, i: usize, reset: bool, delay: u64) {
        let Some(s) = self.clients[i].sock.take() else {
            return;
        };
        self.clients[i].waiting = false;
        if delay == 0 {
            self.peer_close(s, reset);
        } else {
            self.schedule(self.now + delay, Todo::PeerClose(s, reset));
        }
        if self.phase == Phase::Safety {
            let at = self.now + delay + exp_gap(&mut self.rng, self.opts.base.client_gap_ns);
            self.schedule(at, Todo::ClientAct(i));
        }
    }

    fn peer_close(&mut self, s: usize, reset: bool) {
        if self.socks[s].sock.client_unread() > 0 {
            self.mark("close mid-reply");
        }
        if self.socks[s].sock.client_close(reset) {
            let at = self.now + self.event_delay();
            self.schedule(at, Todo::ReadEvent(s));
        }
        self.socks[s].gone_at = Some(self.step);
    }

    fn client_read(&mut self, s: usize) -> Result<(), Failure> {
        self.socks[s].read_scheduled = false;
        let i = self.socks[s].client;
        if self.clients[i].sock != Some(s) {
            return Ok(());
        }
        let faults = self.phase == Phase::Safety;
        if faults && self.rng.random_bool(self.opts.base.p_stall) {
            self.socks[s].read_scheduled = true;
            let at = self.now + self.rng.random_range(1..MAX_STALL_NS);
            self.schedule(at, Todo::ClientRead(s));
            return Ok(());
        }
        let max = if faults {
            self.rng.random_range(1..=self.opts.window)
        } else {
            usize::MAX
        };
        let (bytes, wake) = self.socks[s].sock.client_recv(max);
        if wake {
            let at = self.now + self.event_delay();
            self.schedule(at, Todo::WriteEvent(s));
        }
        if self.socks[s].sock.client_unread() > 0 {
            self.socks[s].read_scheduled = true;
            self.schedule(self.now + 1_000, Todo::ClientRead(s));
        }
        self.digest.num(s as u64);
        self.digest.bytes(&bytes);
        self.check_replies(s, &bytes)
    }

    // ---- the adapter ----

    /// The adapter's loop after a step, in the order the driver's docs give.
    fn pump(&mut self) -> Result<(), Failure> {
        for _ in 0..MAX_PUMP_ROUNDS {
            if let Some(call) = self.driver.take_oob_call() {
                self.run_oob(call)?;
                continue;
            }
            if let Some(action) = self.driver.poll_action() {
                self.carry_out(action)?;
                continue;
            }
            if let Some(conn) = self.driver.next_transmit() {
                if self.is_console(conn) {
                    self.console_write()?;
                } else {
                    self.write(conn)?;
                }
                continue;
            }
            if let Some(c) = self.console.as_ref().map(|c| c.conn) {
                if self.driver.should_read(c) {
                    self.console_read()?;
                    continue;
                }
            }
            let readable: Vec<ConnId> = self
                .driver
                .connections()
                .filter(|c| self.driver.should_read(*c) && !self.is_console(*c))
                .collect();
            if !readable.is_empty() {
                let conn = readable[self.rng.random_range(0..readable.len())];
                self.read(conn)?;
                continue;
            }
            if self.driver.should_accept(0, self.t()) {
                self.accept()?;
                continue;
            }
            if self.inband.is_none() && self.driver.dispatcher_ready() {
                // Requests the core answers itself are handled on the way: their output is
                // written in the next round.
                if let Some(call) = self.driver.next_in_band(self.t()) {
                    self.start_in_band(call)?;
                }
                continue;
            }
            if let Some(t) = self.driver.poll_timeout() {
                if self.timeout_at.is_none_or(|at| at > t.0) {
                    self.timeout_at = Some(t.0);
                    self.schedule(t.0.max(self.now), Todo::Timeout);
                }
            }
            return Ok(());
        }
        Err(self.fail(Failure::liveness(
            "adapter-spin",
            format!("the driver kept the adapter busy for {MAX_PUMP_ROUNDS} rounds in one step"),
        )))
    }

    fn carry_out(&mut self, action: Action<SimFd>) -> Result<(), Failure> {
        match action {
            Action::CloseFd(fd) => match self.ledger.close(fd) {
                Ok(FdKind::Passed) => Ok(()),
                Ok(kind) => Err(self.fail(Failure::correctness(
                    "fd-kind",
                    format!("CloseFd for a {kind:?} descriptor"),
                ))),
                Err(e) => Err(self.fail(Failure::correctness("fd-closed-twice", e))),
            },
            Action::CloseConn {
                conn,
                monitor,
                reason,
            } => {
                if self.is_console(conn) {
                    self.console_closed(reason)?;
                    self.registry.session_closed(conn);
                    self.sessions_closed();
                    return Ok(());
                }
                let Some(&s) = self.by_conn.get(&conn) else {
                    return Err(self.fail(Failure::correctness(
                        "close-unknown-conn",
                        format!("CloseConn for connection {} never accepted", conn.0),
                    )));
                };
                let Some(fd) = self.socks[s].fd.take() else {
                    return Err(self.fail(Failure::correctness(
                        "conn-closed-twice",
                        format!("connection {} (monitor {}) closed twice", conn.0, monitor.0),
                    )));
                };
                self.socks[s].closed = true;
                let names = if self.socks[s].desync {
                    [NameState::Unknown; 3]
                } else {
                    self.socks[s].model.names_at_close()
                };
                self.slot_names.insert(monitor, names);
                if let Err(e) = self.ledger.close(fd) {
                    return Err(self.fail(Failure::correctness("fd-closed-twice", e)));
                }
                for fd in self.socks[s].sock.discard() {
                    // The kernel closes descriptors still in flight in a closed socket.
                    let _ = self.ledger.close(fd);
                }
                let peer_left = self.socks[s].gone_at.is_some();
                let expected = matches!(
                    reason,
                    CloseReason::PeerClosed
                        | CloseReason::ReadFailed(_)
                        | CloseReason::WriteFailed(_)
                );
                if let CloseReason::OutputBudget { held, budget } = reason {
                    if held == 0 || budget != self.opts.output_budget {
                        return Err(self.fail(Failure::correctness(
                            "budget-cut",
                            format!(
                                "connection {} cut for the output budget {budget} holding {held} bytes",
                                conn.0
                            ),
                        )));
                    }
                    // The server hung up on it: its client sees the end and leaves, unchecked
                    // from here on (the replies it misses are the cut's point).
                    self.mark("client cut by the output budget");
                    self.socks[s].desync = true;
                    let i = self.socks[s].client;
                    if self.clients[i].sock == Some(s) {
                        self.client_close(i, false);
                    }
                } else if !peer_left || !expected {
                    return Err(self.fail(Failure::correctness(
                        "close-without-cause",
                        format!(
                            "connection {} closed ({}) although its client {} (peer left: {peer_left})",
                            conn.0,
                            reason.text(),
                            if peer_left { "left" } else { "is still there" }
                        ),
                    )));
                }
                if !self.backlog.is_empty() {
                    self.served_after_close_due = true;
                }
                self.control.closed(conn);
                self.registry.session_closed(conn);
                self.sessions_closed();
                Ok(())
            }
        }
    }

    /// Nothing is left to happen but a lock waits, its holder still there: its unlock was
    /// taken by another client's lock (`x-oob-test`'s semaphore is global, in QEMU too; a
    /// client that dies holding a lock may have taken it). The machine's operator posts once
    /// more, through the demo machine, so the world can finish. True when it did.
    fn replace_stolen_unlock(&mut self) -> bool {
        let stuck = self
            .inband
            .as_ref()
            .is_some_and(|c| c.parked && self.driver.is_open(c.session));
        if !stuck {
            return false;
        }
        let mut arguments = qmp_core::json::Object::new();
        arguments.insert("lock", qmp_core::json::Value::Bool(false));
        let unlock = qmp_core::server::Call {
            id: CallId(u64::MAX),
            monitor: qmp_core::server::MonitorId(u64::MAX),
            lane: Lane::OutOfBand,
            command: OOB_TEST.into(),
            arguments,
        };
        let _ = self.registry.run(&*self.control, &unlock, ConnId(u64::MAX));
        if let Some(c) = self.inband.as_mut() {
            c.parked = false;
            let call = c.call;
            self.schedule(self.now, Todo::Complete(call));
        }
        true
    }

    /// Acts on the session hooks' news: the model lets go of a lock whose holder is gone (the
    /// demo machine's rule; its handler must then return).
    fn sessions_closed(&mut self) {
        let closed: Vec<ConnId> = match self.closed_sessions.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return,
        };
        for conn in closed {
            if let Some(c) = self.inband.as_mut() {
                if c.parked && c.session == conn {
                    c.parked = false;
                    let call = c.call;
                    self.schedule(self.now, Todo::Complete(call));
                }
            }
        }
    }

    fn accept(&mut self) -> Result<(), Failure> {
        let now = self.t();
        if self.backlog.is_empty() {
            self.driver
                .handle_accept_failed(now, 0, AcceptFact::WouldBlock);
            return Ok(());
        }
        if self.phase == Phase::Safety {
            if self.opts.p_emfile > 0.0 && self.rng.random_bool(self.opts.p_emfile) {
                self.mark("accept EMFILE");
                self.slot_free_since = None;
                self.driver
                    .handle_accept_failed(now, 0, AcceptFact::OutOfResources);
                return Ok(());
            }
            if self.opts.p_accept_retry > 0.0 && self.rng.random_bool(self.opts.p_accept_retry) {
                self.mark("accept retry");
                self.driver.handle_accept_failed(now, 0, AcceptFact::Retry);
                return Ok(());
            }
        }
        let Some(s) = self.backlog.pop_front() else {
            return Ok(());
        };
        let fd = self.ledger.open(FdKind::Conn);
        let Some(conn) = self.driver.handle_accepted(now, 0) else {
            return Err(self.fail(Failure::correctness(
                "accept-refused",
                "the driver refused a connection accepted while should_accept held",
            )));
        };
        if std::mem::take(&mut self.served_after_close_due) {
            self.mark("next client served after a close");
        }
        self.slot_free_since = None;
        self.control.opened(conn);
        self.socks[s].fd = Some(fd);
        self.socks[s].conn = Some(conn);
        self.by_conn.insert(conn, s);
        Ok(())
    }

    fn read(&mut self, conn: ConnId) -> Result<(), Failure> {
        let s = self.by_conn[&conn];
        let faults = self.faults();
        let cap = self.opts.capacity;
        let outcome = self.socks[s].sock.read(&mut self.rng, &faults, cap);
        let now = self.t();
        match outcome {
            ReadOutcome::Data {
                bytes,
                fds,
                cut,
                needed,
            } => {
                if bytes.len() < cap {
                    self.mark("short read");
                }
                let fds_cut = !cut.is_empty();
                if fds_cut {
                    self.mark("fds cut (MSG_CTRUNC)");
                }
                for fd in cut {
                    if let Err(e) = self.ledger.close(fd) {
                        return Err(self.fail(Failure::correctness("fd-closed-twice", e)));
                    }
                }
                let refused_before = self.driver.conn_stats(conn).map_or(0, |c| c.fds_refused);
                let sock = &self.socks[s].sock;
                if sock.fin && sock.unread() == 0 && !sock.read_event_due {
                    self.mark("data then EOF after one event");
                }
                self.driver.handle_read(
                    now,
                    conn,
                    ReadFact::Data {
                        bytes: &bytes,
                        fds,
                        fds_cut,
                        capacity: cap,
                    },
                );
                let refused = self.driver.conn_stats(conn).map_or(0, |c| c.fds_refused);
                if refused > refused_before {
                    self.mark("fds refused (table or share full)");
                }
                if needed && (fds_cut || refused > refused_before) {
                    // The getfd's descriptor never reached the core: its reply differs from
                    // what the client's model expects.
                    self.socks[s].desync = true;
                }
            }
            ReadOutcome::Eof => {
                if self.socks[s].sock.unread() == 0 {
                    self.mark("EOF alone");
                }
                self.driver.handle_read(now, conn, ReadFact::Eof);
            }
            ReadOutcome::WouldBlock => {
                self.mark("read would-block");
                self.driver.handle_read(now, conn, ReadFact::WouldBlock);
            }
            ReadOutcome::Interrupted => {
                self.mark("read EINTR");
                self.driver.handle_read(now, conn, ReadFact::Interrupted);
            }
            ReadOutcome::Failed(kind, discarded) => {
                self.mark("reset");
                for fd in discarded {
                    if let Err(e) = self.ledger.close(fd) {
                        return Err(self.fail(Failure::correctness("fd-closed-twice", e)));
                    }
                }
                self.driver.handle_read(now, conn, ReadFact::Failed(kind));
            }
        }
        Ok(())
    }

    fn write(&mut self, conn: ConnId) -> Result<(), Failure> {
        let s = self.by_conn[&conn];
        let faults = self.faults();
        let pending = self.driver.pending_output(conn).to_vec();
        let gone = self.socks[s].sock.client_gone();
        let (fact, raise) = self.socks[s].sock.write(&mut self.rng, &faults, &pending);
        match fact {
            qmp_driver::WriteFact::Wrote(n) if gone => {
                let _ = n;
                self.mark("write after the client left");
            }
            qmp_driver::WriteFact::Wrote(n) => {
                if n < pending.len() {
                    self.mark("partial write");
                }
                if !self.socks[s].read_scheduled {
                    self.socks[s].read_scheduled = true;
                    let at = self.now + self.event_delay();
                    self.schedule(at, Todo::ClientRead(s));
                }
            }
            qmp_driver::WriteFact::WouldBlock => self.mark("write would-block"),
            qmp_driver::WriteFact::Interrupted => self.mark("write EINTR"),
            qmp_driver::WriteFact::Failed(_) => self.mark("write after the client left"),
        }
        if raise {
            let at = self.now + self.event_delay();
            self.schedule(at, Todo::WriteEvent(s));
        }
        self.driver.handle_written(self.t(), conn, fact);
        Ok(())
    }

    // ---- handlers ----

    fn tag(call: &SessionCall) -> Option<i64> {
        call.call.arguments.get("tag").and_then(|v| v.as_i64())
    }

    fn run_oob(&mut self, call: SessionCall) -> Result<(), Failure> {
        if call.call.lane != Lane::OutOfBand {
            return Err(self.fail(Failure::correctness(
                "call-lane",
                format!("take_oob_call gave an in-band call: {}", call.call.command),
            )));
        }
        let now = self.t();
        let id = call.call.id;
        match call.call.command.as_str() {
            OOB_ECHO => {
                let Some(tag) = Self::tag(&call) else {
                    return Err(self.fail(Failure::correctness(
                        "call-arguments",
                        "sim-oob without a tag",
                    )));
                };
                self.driver.complete(now, id, call_result(tag));
            }
            OOB_TEST => {
                // The unlock, by the demo machine: it posts the semaphore and a waiting lock
                // goes on. The lock's completion may reach the driver before or after the
                // unlock's own (threads race in a real adapter; the driver orders the replies).
                let result = self.registry.run(&*self.control, &call.call, call.session);
                let parked = self.inband.as_mut().filter(|c| c.parked);
                match parked {
                    Some(c) => {
                        c.parked = false;
                        let lock = c.call;
                        if self.rng.random_bool(0.5) {
                            self.finish_in_band()?;
                        } else {
                            self.schedule(self.now, Todo::Complete(lock));
                        }
                    }
                    None => self.sem += 1,
                }
                self.driver.complete(now, id, result);
            }
            other => {
                return Err(self.fail(Failure::correctness(
                    "call-unknown",
                    format!("out-of-band call of {other}"),
                )))
            }
        }
        Ok(())
    }

    fn start_in_band(&mut self, call: SessionCall) -> Result<(), Failure> {
        if call.call.lane != Lane::InBand {
            return Err(self.fail(Failure::correctness(
                "call-lane",
                format!(
                    "next_in_band gave an out-of-band call: {}",
                    call.call.command
                ),
            )));
        }
        let id = call.call.id;
        let (result, parked) = match call.call.command.as_str() {
            // The sim's tagged commands (`sim-echo` and any other in-band one the client
            // generator sends with a tag) answer as a function of the tag.
            _ if Self::tag(&call).is_some() => (call_result(Self::tag(&call).unwrap_or(0)), false),
            ECHO => {
                return Err(self.fail(Failure::correctness(
                    "call-arguments",
                    "sim-echo without a tag",
                )))
            }
            TAKE_FD => {
                let name = call
                    .call
                    .arguments
                    .get("fdname")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                (self.take_named_fd(call.call.monitor, &name)?, false)
            }
            OOB_TEST => {
                // The demo machine's rule: a lock whose session is gone returns at once, one
                // that finds a post takes it, any other waits.
                if !self.driver.is_open(call.session) {
                    (empty_return(), false)
                } else if self.sem > 0 {
                    self.sem -= 1;
                    (empty_return(), false)
                } else {
                    (empty_return(), true)
                }
            }
            other => {
                return Err(self.fail(Failure::correctness(
                    "call-unknown",
                    format!("in-band call of {other}"),
                )))
            }
        };
        let running = (call.call.command.as_str() == OOB_TEST)
            .then(|| Running::spawn(&self.registry, &self.control, &call.call, call.session));
        self.inband = Some(InBand {
            call: id,
            session: call.session,
            result,
            parked,
            running,
        });
        if parked {
            return Ok(());
        }
        let mut latency = exp_gap(&mut self.rng, self.opts.base.handler_latency_ns);
        if self.rng.random_bool(self.opts.base.p_slow_handler) {
            latency = latency.saturating_mul(100).min(2_000_000_000);
        }
        self.schedule(self.now + latency, Todo::Complete(id));
        Ok(())
    }

    /// `sim-take-fd`'s handler: it takes the monitor's named fd through the driver (which hands
    /// the descriptor over, recorded as the core's input) and closes it, or answers QEMU's
    /// "not found" text.
    fn take_named_fd(&mut self, m: MonitorId, name: &str) -> Result<CallResult, Failure> {
        match self.driver.take_named_fd(self.t(), m, name) {
            Ok(fd) => match self.ledger.close(fd) {
                Ok(FdKind::Passed) => Ok(empty_return()),
                Ok(kind) => Err(self.fail(Failure::correctness(
                    "fd-kind",
                    format!("take_named_fd handed over a {kind:?} descriptor"),
                ))),
                Err(e) => Err(self.fail(Failure::correctness("fd-closed-twice", e))),
            },
            Err(e @ TakeFdError::NotFound { .. }) => Ok(e.to_call_result()),
            Err(e) => Err(self.fail(Failure::correctness(
                "api-misuse",
                format!("the driver refused take_named_fd by a correct adapter: {e}"),
            ))),
        }
    }

    /// The in-band call ends (its latency is over, or the model let its lock go): its result
    /// goes to the driver. A lock handler still blocked then has outlived its cause.
    fn finish_in_band(&mut self) -> Result<(), Failure> {
        let Some(c) = self.inband.take() else {
            return Ok(());
        };
        let result = match &c.running {
            None => c.result,
            Some(r) => match r.finish() {
                Some(result) => result,
                None => {
                    return Err(self.fail(Failure::liveness(
                        "lock-outlives-holder",
                        format!(
                            "x-oob-test's lock (call {}, session {}) should have been let go \
                             (its unlock came or its holder's session {}), but its handler \
                             still waits",
                            c.call.0,
                            c.session.0,
                            if self.driver.is_open(c.session) {
                                "is open"
                            } else {
                                "closed"
                            }
                        ),
                    )))
                }
            },
        };
        self.driver.complete(self.t(), c.call, result);
        let unexpected = self.control.unexpected();
        if !unexpected.is_empty() {
            return Err(self.fail(Failure::correctness(
                "control-misuse",
                format!("handlers made control calls the world never asks for: {unexpected:?}"),
            )));
        }
        Ok(())
    }

    /// Shutdown once every client is gone: every descriptor must come back.
    fn shutdown(&mut self) -> Result<(), Failure> {
        let wall = WALL_BASE_NS + self.now as i64;
        let ts = Timestamp {
            seconds: wall.div_euclid(1_000_000_000),
            microseconds: wall.rem_euclid(1_000_000_000) / 1000,
        };
        self.driver
            .request_shutdown(self.t(), ShutdownCause::Request, ts);
        self.pump()?;
        if !self.driver.shutdown_flushed() {
            return Err(self.fail(Failure::liveness(
                "shutdown-flush",
                "shutdown requested with every client gone, but the driver is not flushed",
            )));
        }
        self.driver.finish(self.t());
        self.pump()?;
        if let Some(fd) = self.listener_fd.take() {
            if let Err(e) = self.ledger.close(fd) {
                return Err(self.fail(Failure::correctness("fd-closed-twice", e)));
            }
        }
        self.check_all_closed()
    }
}

impl Drop for DriverWorld {
    /// A failing run may leave a lock handler blocked: let it go, so its thread ends.
    fn drop(&mut self) {
        self.machine.release();
    }
}

/// Runs one driver world for `seed` (optionally with a planted driver bug).
pub fn run_driver_seed(seed: u64, bug: Option<DriverBug>) -> Result<DriverRunStats, Failure> {
    DriverWorld::new(DriverOptions::from_seed(seed), bug).run()
}

/// Runs a driver world twice and compares digests and step counts (hidden non-determinism).
pub fn run_driver_seed_twice(seed: u64, bug: Option<DriverBug>) -> Result<DriverRunStats, Failure> {
    let a = run_driver_seed(seed, bug)?;
    let b = run_driver_seed(seed, bug)?;
    if a.digest != b.digest || a.steps != b.steps {
        return Err(Failure::correctness(
            "nondeterminism",
            format!(
                "driver world seed {seed}: digest {:016x} after {} steps, then {:016x} after {}",
                a.digest, a.steps, b.digest, b.steps
            ),
        ));
    }
    Ok(a)
}

/// Runs seeds `first..first+max` with `bug` planted until one fails: the seeds it took.
pub fn hunt_driver_bug(bug: DriverBug, first: u64, max: u64) -> Option<(u64, u64, Failure)> {
    (0..max).find_map(|k| {
        let seed = first.wrapping_add(k);
        run_driver_seed(seed, Some(bug))
            .err()
            .map(|f| (k + 1, seed, f))
    })
}
