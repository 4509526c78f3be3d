//! The simulated world around one server: clients and their network, the main loop's
//! dispatcher and handlers, event sources, clocks and descriptors. This module drives it; the
//! oracles that run after every input are in `oracles.rs` (intent-free invariants, shared with
//! the checker, in [`crate::invariants`]); the run state, fd-set cleanup and limit-disconnect
//! checks in `fd_sets.rs`.
//!
//! Everything is driven from one seeded ChaCha generator and an agenda of timed actions; the
//! loop always jumps to the earliest pending action (no busy stepping). The world never looks at
//! the server's internals: it sees what a shim sees (outputs, pending bytes, the query
//! methods) and compares it with the reference model in `model`/`events`.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

use qmp_core::json::{Object, Value};
use qmp_core::server::{
    CallId, CallResult, DisconnectReason, FdId, Input, Instant, Lane, MonitorId, MonitorOptions,
    Output, TakeFdError, Timestamp,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::client::ClientGen;
use crate::events::{SimEvent, ThrottleModel};
use crate::failure::{panic_text, Failure};
use crate::fdsets::FdSets;
use crate::invariants::dispatcher_free as invariants_dispatcher;
use crate::model::{ConnModel, ExpectCall, NameState};
use crate::options::Options;
use crate::registry::{call_result, empty_return, ECHO, OOB_ECHO, OOB_TEST, QUIET, TAKE_FD};
use crate::sut::Core;
use crate::wire::{server_message, J};

mod fd_sets;
mod hmp;
mod oracles;

pub use hmp::HMP_MARKS;

/// Virtual time the liveness phase may take to reach quiescence (two throttle periods and more).
pub const LIVENESS_NS: u64 = 10_000_000_000;
/// Inputs one world may apply in total before it is cut off (a runaway loop is a liveness bug).
pub const MAX_INPUTS: u64 = 400_000;
/// Memory the core may use beyond its pending output bytes.
pub const MEMORY_SLACK: usize = 16 << 20;
/// Longest a client stops reading.
pub const MAX_STALL_NS: u64 = 50_000_000;
/// Longest an external suspension lasts.
pub const MAX_SUSPEND_NS: u64 = 20_000_000;
/// Wall clock at virtual time zero (2026, like the live transcripts).
pub const WALL_BASE_NS: i64 = 1_795_610_000_000_000_000;

/// What the world does at an agenda entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Tick,
    ClientAct(usize),
    Deliver(usize),
    Flush(usize),
    CloseConn(usize, u64),
    Resume(usize, u64),
    Complete(CallId),
    Dispatch,
    Burst,
    Emit(u8, i64),
    Hmp(hmp::HmpAction),
}

/// Which phase the world is in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
}

#[derive(Debug)]
struct Conn {
    model: ConnModel,
    tx: VecDeque<u8>,
    deliver_scheduled: bool,
    flush_scheduled: bool,
    stalled_until: u64,
    produced: u64,
    written: u64,
    ext_suspends: u32,
    closing: bool,
    /// The core gave up on this client at its output or input limit: its output was dropped,
    /// and the model's expectations are void (the connection is being closed).
    given_up: bool,
    waiting: bool,
    /// The x-oob-test unlock of this connection has not reached its handler yet.
    unlock_due: bool,
    /// Request bytes handed to the server so far.
    tx_sent: u64,
    /// Absolute request-byte positions that carry one descriptor (`getfd`, `add-fd`), with
    /// the descriptor's number.
    fd_marks: VecDeque<(u64, u64)>,
}

#[derive(Debug)]
struct Client {
    /// The monitor (listener slot) this client's successive connections open.
    monitor: MonitorId,
    gen: ClientGen,
    conn: Option<Conn>,
    epoch: u64,
    /// The monitor's named fds `fd0`..`fd2`, as the model knows them between connections
    /// (they outlive the connection that passed them, spec §10.2).
    names: [NameState; 3],
}

#[derive(Debug)]
struct CallInfo {
    monitor: MonitorId,
    /// The connection (client epoch) whose request caused the call.
    epoch: u64,
    /// An out-of-band call: it holds its monitor's input until completed.
    oob: bool,
    /// An in-band call dispatched with OOB off: it holds one suspension of its monitor until
    /// completed, also after its connection closed (the suspend count is the monitor's).
    suspends: bool,
    result: qmp_core::server::CallResult,
}

/// What a finished world reports.
#[derive(Clone, Debug, Default)]
pub struct RunStats {
    /// Inputs applied to the core.
    pub inputs: u64,
    /// Output messages checked.
    pub messages: u64,
    /// Virtual nanoseconds simulated.
    pub virtual_ns: u64,
    /// Digest of everything the core produced (determinism check).
    pub digest: u64,
    /// Core probe counters at the end.
    pub probes: BTreeMap<String, u64>,
}

/// FNV-1a, 64 bit: the output digest.
#[derive(Clone, Copy, Debug)]
pub struct Digest(pub u64);

impl Digest {
    /// Empty digest.
    pub fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
    /// Mixes bytes in.
    pub fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// Mixes a number in.
    pub fn num(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }
}

impl Default for Digest {
    fn default() -> Self {
        Digest::new()
    }
}

/// Converts a sim value to the core's value type (for event data).
pub fn to_value(j: &J) -> Value {
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Int(i) => Value::Int(*i),
        J::Str(s) => Value::string(s.as_str()),
        J::Arr(a) => Value::Array(a.iter().map(to_value).collect()),
        J::Obj(m) => {
            let mut o = Object::new();
            for (k, v) in m {
                o.insert(k.as_str(), to_value(v));
            }
            Value::Object(o)
        }
    }
}

/// The `version` object the world configures (and expects in greetings).
pub fn version_j() -> J {
    J::obj(vec![
        (
            "qemu",
            J::obj(vec![
                ("major", J::Int(7)),
                ("minor", J::Int(2)),
                ("micro", J::Int(22)),
            ]),
        ),
        ("package", J::s("qmp-sim")),
    ])
}

fn exp_gap(rng: &mut ChaCha8Rng, mean: u64) -> u64 {
    if mean == 0 {
        return 0;
    }
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    ((-u.ln()) * mean as f64).min(mean as f64 * 20.0) as u64
}

/// One simulated world.
pub struct World<C: Core> {
    opts: Options,
    rng: ChaCha8Rng,
    core: C,
    now: u64,
    agenda: BTreeMap<(u64, u8, u64), Action>,
    seq: u64,
    step: u64,
    phase: Phase,
    liveness_deadline: u64,
    clients: Vec<Client>,
    throttle: ThrottleModel,
    calls: BTreeMap<CallId, CallInfo>,
    inband_busy: Option<CallId>,
    dispatch_scheduled: bool,
    tick_at: Option<u64>,
    sem: u32,
    waiting_lock: Option<CallId>,
    tags: BTreeMap<i64, (usize, u64, ExpectCall)>,
    next_tag: i64,
    fds: BTreeMap<u64, bool>,
    next_fd: u64,
    wall_offset_ns: i64,
    event_seq: i64,
    requests_left: u32,
    immediate: VecDeque<Input>,
    record: Option<Vec<(Instant, Input)>>,
    digest: Digest,
    messages: u64,
    drops: Vec<(usize, serde_json::Value)>,
    /// The dispatcher's round-robin order as the spec defines it (§5.3).
    rr: Vec<MonitorId>,
    /// The monitor whose in-band request the current input served.
    served: Option<MonitorId>,
    /// The human monitors and their people.
    hmp: hmp::Hmps,
    /// The fd-set model (global, like QEMU's) and the VM run state it depends on.
    fdsets: FdSets,
    /// Descriptors the core closed in the current input.
    closed_now: Vec<u64>,
    /// The monitor the current input (a `Receive`) reads from.
    receiving: Option<MonitorId>,
}

impl<C: Core> World<C> {
    /// A world for `opts` around `core` (already configured with [`crate::registry::commands`]).
    pub fn new(opts: Options, core: C) -> World<C> {
        let rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let dialect = opts.dialect;
        let clients = (0..opts.clients)
            .map(|i| Client {
                monitor: MonitorId(i as u64 + 1),
                gen: ClientGen::new(i),
                conn: None,
                epoch: 0,
                names: [NameState::Absent; 3],
            })
            .collect();
        let hmp = hmp::Hmps::new(&opts);
        World {
            requests_left: opts.requests - hmp.lines_left,
            rng,
            core,
            now: 0,
            agenda: BTreeMap::new(),
            seq: 0,
            step: 0,
            phase: Phase::Safety,
            liveness_deadline: u64::MAX,
            clients,
            throttle: ThrottleModel::new(dialect),
            calls: BTreeMap::new(),
            inband_busy: None,
            dispatch_scheduled: false,
            tick_at: None,
            sem: 0,
            waiting_lock: None,
            tags: BTreeMap::new(),
            next_tag: 1,
            fds: BTreeMap::new(),
            next_fd: 1000,
            wall_offset_ns: 0,
            event_seq: 0,
            immediate: VecDeque::new(),
            record: None,
            digest: Digest::new(),
            messages: 0,
            drops: Vec::new(),
            rr: Vec::new(),
            served: None,
            hmp,
            opts,
            fdsets: FdSets::default(),
            closed_now: Vec::new(),
            receiving: None,
        }
    }

    /// Keeps every input (for writing a trace).
    pub fn record_inputs(&mut self) {
        self.record = Some(Vec::new());
    }

    /// The recorded inputs.
    pub fn take_record(&mut self) -> Vec<(Instant, Input)> {
        self.record.take().unwrap_or_default()
    }

    /// The core, for inspection after a run.
    pub fn core(&self) -> &C {
        &self.core
    }

    fn schedule(&mut self, at: u64, action: Action) {
        // Timer ticks sort first among actions at the same instant, so throttle expiries happen
        // before anything else at their deadline (the reference model assumes that order).
        let class = if action == Action::Tick { 0 } else { 1 };
        self.seq += 1;
        self.agenda.insert((at, class, self.seq), action);
    }

    /// A client that waited for replies acts again now (ahead of later actions at this time).
    fn wake(&mut self, i: usize) {
        self.seq += 1;
        self.agenda
            .insert((self.now, 1, self.seq), Action::ClientAct(i));
    }

    fn fail(&self, f: Failure) -> Failure {
        f.at(self.step, self.now)
    }

    /// Runs the safety phase, then the liveness phase, then the final accounting.
    pub fn run(&mut self) -> Result<RunStats, Failure> {
        for i in 0..self.clients.len() {
            let at = self.rng.random_range(0..1_000_000);
            self.schedule(at, Action::ClientAct(i));
        }
        if self.opts.event_gap_ns > 0 {
            let at = exp_gap(&mut self.rng, self.opts.event_gap_ns);
            self.schedule(at, Action::Burst);
        }
        self.hmp_start();
        while let Some(((at, _, _), action)) = self.agenda.pop_first() {
            if self.phase == Phase::Safety && self.requests_left == 0 && self.hmp.lines_left == 0 {
                self.phase = Phase::Liveness;
                self.liveness_deadline = self.now + LIVENESS_NS;
                self.end_faults()?;
            }
            if at > self.liveness_deadline {
                break;
            }
            if self.step > MAX_INPUTS {
                return Err(self.fail(Failure::liveness(
                    "input-budget",
                    format!("more than {MAX_INPUTS} inputs without finishing"),
                )));
            }
            self.now = self.now.max(at);
            self.perform(action)?;
        }
        if self.phase == Phase::Safety {
            self.phase = Phase::Liveness;
            self.end_faults()?;
            while let Some(((at, _, _), action)) = self.agenda.pop_first() {
                if at > self.now + LIVENESS_NS {
                    break;
                }
                self.now = self.now.max(at);
                self.perform(action)?;
            }
        }
        self.check_quiescent()?;
        self.close_all()?;
        self.check_fds()?;
        let mut probes = BTreeMap::new();
        for (name, hits) in self.core.probes() {
            *probes.entry(name).or_insert(0) += hits;
        }
        if self.opts.hmp_monitors > 0 {
            probes.extend(self.hmp.marks());
        }
        Ok(RunStats {
            inputs: self.step,
            messages: self.messages,
            virtual_ns: self.now,
            digest: self.core.digest(),
            probes,
        })
    }

    /// Faults off: stalls end, external suspensions are lifted, stuck locks are released.
    fn end_faults(&mut self) -> Result<(), Failure> {
        for i in 0..self.clients.len() {
            let epoch = self.clients[i].epoch;
            let Some(conn) = self.clients[i].conn.as_mut() else {
                continue;
            };
            conn.stalled_until = 0;
            for _ in 0..conn.ext_suspends {
                self.schedule(self.now, Action::Resume(i, epoch));
            }
            self.schedule(self.now, Action::Flush(i));
            self.schedule(self.now, Action::Deliver(i));
        }
        self.hmp_end_faults();
        Ok(())
    }

    fn perform(&mut self, action: Action) -> Result<(), Failure> {
        match action {
            Action::Tick => {
                self.tick_at = None;
                self.apply(Input::Tick)
            }
            Action::ClientAct(i) => self.client_act(i),
            Action::Deliver(i) => self.deliver(i),
            Action::Flush(i) => self.flush(i),
            Action::CloseConn(i, epoch) => {
                if self.clients[i].epoch == epoch && self.clients[i].conn.is_some() {
                    self.close_conn(i)?;
                }
                Ok(())
            }
            Action::Resume(i, epoch) => {
                let m = self.clients[i].monitor;
                let current = self.clients[i].epoch == epoch;
                match self.clients[i].conn.as_mut() {
                    Some(conn) if current && conn.ext_suspends > 0 => {
                        conn.ext_suspends -= 1;
                        self.apply(Input::Resume { monitor: m })
                    }
                    _ => Ok(()),
                }
            }
            Action::Complete(call) => {
                let Some(info) = self.calls.get(&call) else {
                    return Ok(());
                };
                let result = info.result.clone();
                self.apply(Input::Complete { call, result })
            }
            Action::Dispatch => {
                self.dispatch_scheduled = false;
                if self.inband_busy.is_none() && self.core.dispatcher_ready() {
                    // QEMU serves the first monitor in list order that has a request and moves
                    // it to the end of the list (new monitors go to the head).
                    let predicted = self
                        .rr
                        .iter()
                        .copied()
                        .find(|m| self.core.queue_len(*m) > 0);
                    self.served = None;
                    self.apply(Input::NextInBand)?;
                    // A reply that took its monitor past the output limit is dropped with its
                    // output: nothing of it is seen.
                    let given_up = predicted.is_some_and(|m| {
                        self.hmp.given_up(m)
                            || self
                                .client_of(m)
                                .and_then(|i| self.clients[i].conn.as_ref())
                                .is_some_and(|c| c.given_up)
                    });
                    if self.served != predicted && !(self.served.is_none() && given_up) {
                        return Err(self.fail(Failure::correctness(
                            "round-robin",
                            format!(
                                "dispatcher served monitor {:?}, round robin over {:?} gives {:?}",
                                self.served.map(|m| m.0),
                                self.rr.iter().map(|m| m.0).collect::<Vec<_>>(),
                                predicted.map(|m| m.0)
                            ),
                        )));
                    }
                    if let Some(m) = predicted {
                        self.rr.retain(|x| *x != m);
                        self.rr.push(m);
                    }
                }
                Ok(())
            }
            Action::Burst => self.burst(),
            Action::Emit(kind, n) => self.emit(kind, n),
            Action::Hmp(a) => self.hmp_perform(a),
        }
    }

    fn client_act(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.clients[i].monitor;
        if self.clients[i].conn.is_none() {
            if self.phase != Phase::Safety || self.requests_left == 0 {
                return Ok(());
            }
            // A call of the previous connection may still run: the monitor is reopened
            // anyway; its reply goes nowhere and its hold (suspension, OOB) is the monitor's.
            return self.connect(i);
        }
        let gap = exp_gap(&mut self.rng, self.opts.client_gap_ns);
        let epoch = self.clients[i].epoch;
        if self.phase != Phase::Safety || self.requests_left == 0 {
            return Ok(());
        }
        let closing = self.clients[i].conn.as_ref().is_some_and(|c| c.closing);
        if closing {
            return Ok(());
        }
        if self.rng.random_bool(self.opts.p_suspend) {
            if let Some(conn) = self.clients[i].conn.as_mut() {
                conn.ext_suspends += 1;
            }
            let at = self.now + self.rng.random_range(0..MAX_SUSPEND_NS);
            self.schedule(at, Action::Resume(i, epoch));
            self.apply(Input::Suspend { monitor: m })?;
        }
        if self.opts.p_pause > 0.0 && self.rng.random_bool(self.opts.p_pause) {
            self.toggle_run_state()?;
        }
        let lock_busy = self.clients[i].conn.as_ref().is_some_and(|c| c.unlock_due);
        if !lock_busy && self.rng.random_bool(self.opts.p_disconnect) {
            // Sometimes mid-message: part of a request goes out, then the connection drops.
            if self.rng.random_bool(0.5) {
                let client = &mut self.clients[i];
                if let Some(conn) = client.conn.as_mut() {
                    let mut throwaway =
                        ConnModel::new(conn.model.pretty, conn.model.offered_oob, Vec::new());
                    throwaway.greeting = None;
                    throwaway.projected = conn.model.projected;
                    throwaway.confirmed = conn.model.confirmed;
                    let mut tag = -1;
                    if let Some(p) =
                        client
                            .gen
                            .plan(&mut self.rng, &self.opts, &mut throwaway, &mut tag)
                    {
                        // A strict prefix of one request's JSON (trailing whitespace aside)
                        // is never a complete message, so the server must not answer it.
                        let json_len = p.bytes.trim_ascii_end().len();
                        if p.expects.len() == 1 && json_len > 0 {
                            let cut = self.rng.random_range(0..json_len);
                            conn.tx.extend(&p.bytes[..cut]);
                        }
                    }
                }
            }
            if let Some(conn) = self.clients[i].conn.as_mut() {
                conn.closing = true;
            }
            let at = self.now + self.rng.random_range(0..1_000_000);
            self.schedule(at, Action::CloseConn(i, epoch));
            self.schedule_io(i);
            return Ok(());
        }
        let client = &mut self.clients[i];
        let Some(conn) = client.conn.as_mut() else {
            return Ok(());
        };
        match client.gen.plan(
            &mut self.rng,
            &self.opts,
            &mut conn.model,
            &mut self.next_tag,
        ) {
            None if conn.model.outstanding() > 0 => conn.waiting = true,
            // Nothing to wait for (a plan that had nothing to say): try again later.
            None => {
                let at = self.now + gap.max(1_000);
                self.schedule(at, Action::ClientAct(i));
            }
            Some(mut p) => {
                self.requests_left = self.requests_left.saturating_sub(1);
                if p.fd {
                    self.next_fd += 1;
                    let fd = self.next_fd;
                    conn.fd_marks
                        .push_back((conn.tx_sent + conn.tx.len() as u64, fd));
                    if let Some(crate::fdsets::FdSetOp::Add {
                        fd: f @ Some(_), ..
                    }) = p.fdset.as_mut().map(|c| &mut c.op)
                    {
                        *f = Some(fd);
                        client.gen.added_fd(fd);
                    }
                }
                conn.tx.extend(&p.bytes);
                if p.lock {
                    conn.unlock_due = true;
                }
                let mut last = None;
                for e in p.expects {
                    last = Some(conn.model.push(e));
                }
                if let (Some(call), Some(seq)) = (p.fdset, last) {
                    conn.model.set_fdset_call(seq, call);
                }
                for call in p.calls {
                    if let Some(tag) = call.tag {
                        self.tags.insert(tag, (i, client.epoch, call));
                    }
                }
                let at = self.now + gap;
                self.schedule(at, Action::ClientAct(i));
            }
        }
        self.schedule_io(i);
        Ok(())
    }

    fn connect(&mut self, i: usize) -> Result<(), Failure> {
        let opts = &self.opts;
        let offered = opts.oob_capable[i];
        let pretty = opts.pretty[i];
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
        let client = &mut self.clients[i];
        client.epoch += 1;
        client.gen.on_connect(&mut self.rng, &self.opts);
        client.conn = Some(Conn {
            model: ConnModel::new(pretty, offered, greeting).with_names(client.names),
            tx: VecDeque::new(),
            deliver_scheduled: false,
            flush_scheduled: false,
            stalled_until: 0,
            produced: 0,
            written: 0,
            ext_suspends: 0,
            closing: false,
            given_up: false,
            waiting: false,
            unlock_due: false,
            tx_sent: 0,
            fd_marks: VecDeque::new(),
        });
        let m = client.monitor;
        // The monitor joins the dispatcher's list when it is created (its first connection,
        // QEMU's `monitor_list_append`) and keeps its place across reconnects.
        if client.epoch == 1 {
            self.rr.insert(0, m);
        }
        let at = self.now + exp_gap(&mut self.rng, self.opts.client_gap_ns);
        self.schedule(at, Action::ClientAct(i));
        self.apply(Input::Open {
            monitor: m,
            options: MonitorOptions {
                oob_capable: offered,
                pretty,
            },
        })
    }

    fn close_conn(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.clients[i].monitor;
        // Undo this connection's external suspensions first: the other subsystem lets go of
        // the monitor before the chardev reports the close.
        while self.clients[i]
            .conn
            .as_ref()
            .is_some_and(|c| c.ext_suspends > 0)
        {
            if let Some(c) = self.clients[i].conn.as_mut() {
                c.ext_suspends -= 1;
            }
            self.apply(Input::Resume { monitor: m })?;
        }
        let unlock_due = self.clients[i].conn.as_ref().is_some_and(|c| c.unlock_due);
        if let Some(conn) = self.clients[i].conn.take() {
            self.clients[i].names = conn.model.names_at_close();
        }
        self.fdsets.cleanup(self.open_sessions());
        self.apply(Input::Close { monitor: m })?;
        self.check_names_kept(i)?;
        if unlock_due {
            // Its unlock will never arrive: release the handler on its behalf, as an operator
            // would, so the dispatcher is not blocked forever by a client that went away.
            self.post_semaphore();
        }
        if self.phase == Phase::Safety && self.requests_left > 0 {
            let at = self.now + self.rng.random_range(0..5_000_000);
            self.schedule(at, Action::ClientAct(i));
        }
        Ok(())
    }

    fn post_semaphore(&mut self) {
        match self.waiting_lock.take() {
            Some(call) => self.schedule(self.now, Action::Complete(call)),
            None => self.sem += 1,
        }
    }

    fn deliver(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.clients[i].monitor;
        let wants = self.core.wants_read(m);
        let faults = self.phase == Phase::Safety;
        let max_read = if faults { self.opts.max_read } else { 4096 };
        let Some(conn) = self.clients[i].conn.as_mut() else {
            return Ok(());
        };
        conn.deliver_scheduled = false;
        if !wants || conn.tx.is_empty() {
            return Ok(());
        }
        let n = self.rng.random_range(1..=max_read.min(conn.tx.len()));
        let bytes: Vec<u8> = conn.tx.drain(..n).collect();
        let mut fds = Vec::new();
        conn.tx_sent += n as u64;
        while conn
            .fd_marks
            .front()
            .is_some_and(|&(at, _)| at < conn.tx_sent)
        {
            if let Some((_, fd)) = conn.fd_marks.pop_front() {
                self.fds.insert(fd, false);
                fds.push(FdId(fd));
            }
        }
        // No stray descriptors while an `add-fd` is due: a later read's would replace its
        // own before it runs, and the reply names the descriptor.
        if faults
            && self.rng.random_bool(self.opts.p_fds)
            && !conn.model.inband.iter().any(|e| e.what == "add-fd")
        {
            for _ in 0..self.rng.random_range(1..=3) {
                self.next_fd += 1;
                self.fds.insert(self.next_fd, false);
                fds.push(FdId(self.next_fd));
            }
        }
        self.apply(Input::Receive {
            monitor: m,
            bytes,
            fds,
        })
    }

    fn flush(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.clients[i].monitor;
        let pending = self.core.pending_output(m).len();
        let faults = self.phase == Phase::Safety;
        let now = self.now;
        let Some(conn) = self.clients[i].conn.as_mut() else {
            return Ok(());
        };
        conn.flush_scheduled = false;
        if pending == 0 {
            return Ok(());
        }
        if conn.stalled_until > now {
            conn.flush_scheduled = true;
            let at = conn.stalled_until;
            self.schedule(at, Action::Flush(i));
            return Ok(());
        }
        if faults && self.rng.random_bool(self.opts.p_stall) {
            conn.stalled_until = now + self.rng.random_range(1..MAX_STALL_NS);
            conn.flush_scheduled = true;
            let at = conn.stalled_until;
            self.schedule(at, Action::Flush(i));
            return Ok(());
        }
        let n = if faults && self.opts.short_writes {
            self.rng.random_range(0..=pending)
        } else {
            pending
        };
        if n == 0 {
            // EAGAIN: try again shortly.
            conn.flush_scheduled = true;
            self.schedule(now + 10_000, Action::Flush(i));
            return Ok(());
        }
        conn.written += n as u64;
        self.apply(Input::Written { monitor: m, n })
    }

    fn burst(&mut self) -> Result<(), Failure> {
        if self.phase != Phase::Safety {
            return Ok(());
        }
        if self.rng.random_bool(self.opts.p_wall_jump) {
            self.wall_offset_ns += self.rng.random_range(-100_000_000_000i64..100_000_000_000);
        }
        let n = self.rng.random_range(1..=self.opts.max_burst);
        let kind: u8 = self.rng.random_range(0..5);
        let spacing = [0u64, 1_000, 3_000_000, 300_000_000][self.rng.random_range(0..4)];
        let mut at = self.now;
        for _ in 0..n {
            self.event_seq += 1;
            // Distinct instants for distinct events keep throttle deadlines apart.
            at += 1 + self.rng.random_range(0..=spacing);
            self.schedule(at, Action::Emit(kind, self.event_seq));
        }
        let next = self.now + exp_gap(&mut self.rng, self.opts.event_gap_ns);
        self.schedule(next.max(self.now + 1), Action::Burst);
        Ok(())
    }

    fn emit(&mut self, kind: u8, n: i64) -> Result<(), Failure> {
        let (name, data) = match kind {
            0 => ("RTC_CHANGE", vec![("offset".to_string(), J::Int(n))]),
            1 => (
                "VSERPORT_CHANGE",
                vec![
                    ("id".to_string(), J::Str(format!("port{}", n % 3))),
                    ("open".to_string(), J::Bool(n % 2 == 0)),
                ],
            ),
            // Throttled by 7.2 (keyed by qom-path), not by 2.12.
            2 if n % 4 == 0 => (
                "MEMORY_DEVICE_SIZE_CHANGE",
                vec![
                    ("id".to_string(), J::Str(format!("mem{}", n % 8 / 4))),
                    ("size".to_string(), J::Int(n)),
                    (
                        "qom-path".to_string(),
                        J::Str(format!("/machine/peripheral/mem{}", n % 8 / 4)),
                    ),
                ],
            ),
            2 => ("SIM_EVENT", vec![("seq".to_string(), J::Int(n))]),
            3 => ("STOP", vec![]),
            _ => ("QUORUM_FAILURE", vec![("seq".to_string(), J::Int(n))]),
        };
        let drift = (self.now as i128 * self.opts.wall_drift_ppm as i128 / 1_000_000) as i64;
        let wall = WALL_BASE_NS + self.now as i64 + drift + self.wall_offset_ns;
        let ev = SimEvent {
            name: name.to_string(),
            data,
            seconds: wall.div_euclid(1_000_000_000),
            micros: wall.rem_euclid(1_000_000_000) / 1000,
        };
        let input = Input::Event {
            name: ev.name.clone(),
            data: match to_value(&J::Obj(ev.data.clone())) {
                Value::Object(o) => o,
                _ => Object::new(),
            },
            timestamp: Timestamp {
                seconds: ev.seconds,
                microseconds: ev.micros,
            },
        };
        self.model_expire();
        if let Some(out) = self.throttle.on_event(self.now, ev) {
            self.broadcast(self.step + 1, &out);
        }
        self.apply(input)
    }

    /// The model's throttle periods that ended by now deliver their pending events.
    fn model_expire(&mut self) {
        let mut out = Vec::new();
        self.throttle.expire(self.now, &mut out);
        for ev in out {
            self.broadcast(self.step + 1, &ev);
        }
    }

    /// Every monitor negotiated before input `step` must receive `ev`.
    fn broadcast(&mut self, step: u64, ev: &SimEvent) {
        let compact = ev.bytes(false);
        let mut pretty = None;
        for c in &mut self.clients {
            if let Some(conn) = c.conn.as_mut() {
                if conn.model.negotiated_at.is_some_and(|s| s < step) {
                    let bytes = if conn.model.pretty {
                        pretty.get_or_insert_with(|| ev.bytes(true)).clone()
                    } else {
                        compact.clone()
                    };
                    conn.model.events.push_back((step, bytes));
                }
            }
        }
    }

    /// Applies one input and everything it causes at the same instant (OOB completions), then
    /// runs the oracles.
    fn apply(&mut self, input: Input) -> Result<(), Failure> {
        self.immediate.push_back(input);
        while let Some(input) = self.immediate.pop_front() {
            if !matches!(input, Input::Event { .. }) {
                self.model_expire();
            }
            self.step += 1;
            if let Some(rec) = self.record.as_mut() {
                rec.push((Instant(self.now), input.clone()));
            }
            let completed = match &input {
                Input::Complete { call, .. } => Some(*call),
                _ => None,
            };
            self.hmp.during = hmp::during(&input);
            self.receiving = match &input {
                Input::Receive { monitor, .. } => Some(*monitor),
                _ => None,
            };
            let now = Instant(self.now);
            let core = &mut self.core;
            let r = catch_unwind(AssertUnwindSafe(|| core.handle(now, input)));
            match r {
                Err(p) => return Err(self.fail(Failure::crash(panic_text(p.as_ref())))),
                Ok(Err(misuse)) => {
                    return Err(self.fail(Failure::correctness(
                        "api-misuse",
                        format!("the core reported API misuse by a correct driver: {misuse}"),
                    )))
                }
                Ok(Ok(())) => {}
            }
            if let Some(call) = completed {
                self.calls.remove(&call);
                if self.inband_busy == Some(call) {
                    self.inband_busy = None;
                }
            }
            self.drain()?;
            self.check_output()?;
            self.hmp_check_output()?;
            self.settle_fdset_closes()?;
            self.check_invariants()?;
        }
        for i in 0..self.clients.len() {
            self.schedule_io(i);
        }
        self.hmp_schedule_all();
        if self.inband_busy.is_none() && !self.dispatch_scheduled && self.core.dispatcher_ready() {
            self.dispatch_scheduled = true;
            let at = self.now + self.rng.random_range(0..2_000);
            self.schedule(at, Action::Dispatch);
        }
        if let Some(t) = self.core.poll_timeout() {
            if self.tick_at != Some(t.0) {
                self.tick_at = Some(t.0);
                self.schedule(t.0.max(self.now), Action::Tick);
            }
        }
        Ok(())
    }

    fn schedule_io(&mut self, i: usize) {
        let m = self.clients[i].monitor;
        let now = self.now;
        let wants = self.core.wants_read(m);
        let pending = !self.core.pending_output(m).is_empty();
        let faults = self.phase == Phase::Safety;
        let Some(conn) = self.clients[i].conn.as_mut() else {
            return;
        };
        let mut todo = Vec::new();
        if wants && !conn.tx.is_empty() && !conn.deliver_scheduled {
            conn.deliver_scheduled = true;
            let d = if faults {
                self.rng.random_range(0..5_000)
            } else {
                0
            };
            todo.push((now + d, Action::Deliver(i)));
        }
        if pending && !conn.flush_scheduled {
            conn.flush_scheduled = true;
            let d = if faults {
                self.rng.random_range(0..5_000)
            } else {
                0
            };
            todo.push((now + d, Action::Flush(i)));
        }
        for (at, a) in todo {
            self.schedule(at, a);
        }
    }

    fn client_of(&self, m: MonitorId) -> Option<usize> {
        self.clients.iter().position(|c| c.monitor == m)
    }

    fn drain(&mut self) -> Result<(), Failure> {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Call(call) => self.on_call(call)?,
                Output::Transmit(m) => {
                    let open = self.hmp.is_open(m)
                        || self
                            .client_of(m)
                            .is_some_and(|i| self.clients[i].conn.is_some());
                    if !open {
                        return Err(self.fail(Failure::correctness(
                            "output-after-close",
                            format!("Transmit for monitor {} which is closed", m.0),
                        )));
                    }
                }
                Output::CloseFd(fd) => {
                    self.digest.num(fd.0);
                    self.closed_now.push(fd.0);
                    match self.fds.get_mut(&fd.0) {
                        Some(closed @ false) => *closed = true,
                        Some(true) => {
                            return Err(self.fail(Failure::correctness(
                                "fd-twice",
                                format!("fd {} closed twice", fd.0),
                            )))
                        }
                        None => {
                            return Err(self.fail(Failure::correctness(
                                "fd-unknown",
                                format!("CloseFd for fd {} that was never passed in", fd.0),
                            )))
                        }
                    }
                }
                Output::Disconnect { monitor, reason } if self.hmp.owns(monitor) => {
                    if !self.hmp.is_open(monitor) {
                        return Err(self.fail(Failure::correctness(
                            "disconnect-closed",
                            format!(
                                "Disconnect for human monitor {} which is not open",
                                monitor.0
                            ),
                        )));
                    }
                    if let DisconnectReason::InputLimit { limit } = reason {
                        self.check_input_limit_of(monitor, limit, None)?;
                    }
                    self.hmp_disconnect(monitor);
                }
                Output::Disconnect { monitor, reason } => {
                    let i = self
                        .client_of(monitor)
                        .filter(|&i| self.clients[i].conn.is_some());
                    let Some(i) = i else {
                        return Err(self.fail(Failure::correctness(
                            "disconnect-closed",
                            format!("Disconnect for monitor {} which is not open", monitor.0),
                        )));
                    };
                    if let DisconnectReason::InputLimit { limit } = reason {
                        let sent = self.clients[i].conn.as_ref().map_or(0, |c| c.tx_sent);
                        self.check_input_limit_of(monitor, limit, Some(sent))?;
                    }
                    // The shim closes the connection and reports it.
                    let epoch = self.clients[i].epoch;
                    if let Some(c) = self.clients[i].conn.as_mut() {
                        c.closing = true;
                        c.given_up = true;
                    }
                    self.schedule(self.now, Action::CloseConn(i, epoch));
                }
            }
        }
        Ok(())
    }

    fn on_call(&mut self, call: qmp_core::server::Call) -> Result<(), Failure> {
        self.digest.num(call.id.0);
        self.digest.bytes(call.command.as_bytes());
        if self.calls.contains_key(&call.id) {
            return Err(self.fail(Failure::correctness(
                "call-id-reused",
                format!("call id {} issued twice", call.id.0),
            )));
        }
        if call
            .command
            .as_str()
            .starts_with(qmp_core::hmp::HMP_CALL_PREFIX)
        {
            let (epoch, result) = self.hmp_on_call(&call)?;
            invariants_dispatcher(self.inband_busy, call.id).map_err(|f| self.fail(f))?;
            self.calls.insert(
                call.id,
                CallInfo {
                    monitor: call.monitor,
                    epoch,
                    oob: false,
                    suspends: true,
                    result,
                },
            );
            self.inband_busy = Some(call.id);
            self.served = Some(call.monitor);
            let latency = self.handler_latency();
            self.schedule(self.now + latency, Action::Complete(call.id));
            return Ok(());
        }
        let Some(i) = self.client_of(call.monitor) else {
            return Err(self.fail(Failure::correctness(
                "call-monitor",
                format!("call for unknown monitor {}", call.monitor.0),
            )));
        };
        if self.clients[i].conn.is_none() {
            return Err(self.fail(Failure::correctness(
                "call-after-close",
                format!(
                    "{} call for closed monitor {}",
                    call.command, call.monitor.0
                ),
            )));
        }
        let oob = call.lane == Lane::OutOfBand;
        let result = match call.command.as_str() {
            ECHO | OOB_ECHO | QUIET => {
                let tag = call.arguments.get("tag").and_then(Value::as_i64);
                let Some(tag) = tag else {
                    return Err(self.fail(Failure::correctness(
                        "call-arguments",
                        format!(
                            "{} call without an integer tag: {:?}",
                            call.command, call.arguments
                        ),
                    )));
                };
                let Some((owner, epoch, exp)) = self.tags.remove(&tag) else {
                    return Err(self.fail(Failure::correctness(
                        "call-unexpected",
                        format!("{} call for tag {tag} that no request is waiting for (or a second time)", call.command),
                    )));
                };
                if owner != i
                    || epoch != self.clients[i].epoch
                    || exp.command != call.command
                    || exp.oob != oob
                {
                    return Err(self.fail(Failure::correctness(
                        "call-mismatch",
                        format!(
                            "call {} tag {tag} on monitor {} lane {:?}; the request was {} on client {owner} epoch {epoch}, oob={}",
                            call.command, call.monitor.0, call.lane, exp.command, exp.oob
                        ),
                    )));
                }
                call_result(tag)
            }
            TAKE_FD => {
                let name = call
                    .arguments
                    .get("fdname")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.take_named_fd(call.monitor, &name)?
            }
            OOB_TEST => {
                let lock = call.arguments.get("lock").and_then(Value::as_bool);
                if lock != Some(!oob) {
                    return Err(self.fail(Failure::correctness(
                        "call-lane",
                        format!("x-oob-test lock={lock:?} arrived on lane {:?}", call.lane),
                    )));
                }
                empty_return()
            }
            other => {
                return Err(self.fail(Failure::correctness(
                    "call-unknown",
                    format!("call for command {other} the world never registered"),
                )))
            }
        };
        let oob_on = self.clients[i]
            .conn
            .as_ref()
            .is_some_and(|c| c.model.confirmed.oob());
        self.calls.insert(
            call.id,
            CallInfo {
                monitor: call.monitor,
                epoch: self.clients[i].epoch,
                oob,
                suspends: !oob && !oob_on,
                result,
            },
        );
        if oob {
            if call.command == OOB_TEST {
                if let Some(c) = self.clients[i].conn.as_mut() {
                    c.unlock_due = false;
                }
                self.post_semaphore();
            }
            // Out-of-band handlers run at once on the IO side.
            let result = self.calls.get(&call.id).map(|c| c.result.clone());
            if let Some(result) = result {
                self.immediate.push_back(Input::Complete {
                    call: call.id,
                    result,
                });
            }
            return Ok(());
        }
        invariants_dispatcher(self.inband_busy, call.id).map_err(|f| self.fail(f))?;
        self.inband_busy = Some(call.id);
        self.served = Some(call.monitor);
        if call.command == OOB_TEST {
            if self.sem > 0 {
                self.sem -= 1;
            } else {
                self.waiting_lock = Some(call.id);
                return Ok(());
            }
        }
        let latency = self.handler_latency();
        self.schedule(self.now + latency, Action::Complete(call.id));
        Ok(())
    }

    /// How long an in-band handler runs.
    fn handler_latency(&mut self) -> u64 {
        let latency = exp_gap(&mut self.rng, self.opts.handler_latency_ns);
        if self.rng.random_bool(self.opts.p_slow_handler) {
            latency.saturating_mul(100).min(2_000_000_000)
        } else {
            latency
        }
    }

    /// Closes every connection (the final accounting needs every descriptor released).
    /// The `sim-take-fd` handler, when it starts: it takes the named fd from the core (the
    /// input is recorded for replay), owns it and closes it; its result is the reply.
    fn take_named_fd(&mut self, m: MonitorId, name: &str) -> Result<CallResult, Failure> {
        self.step += 1;
        let input = Input::TakeNamedFd {
            monitor: m,
            name: name.to_owned(),
        };
        if let Some(rec) = self.record.as_mut() {
            rec.push((Instant(self.now), input));
        }
        match self.core.take_named_fd(Instant(self.now), m, name) {
            Ok(fd) => {
                self.digest.num(fd.0);
                match self.fds.get_mut(&fd.0) {
                    Some(closed @ false) => *closed = true,
                    _ => {
                        return Err(self.fail(Failure::correctness(
                            "fd-taken",
                            format!("took fd {} which is closed or was never passed in", fd.0),
                        )))
                    }
                }
                Ok(empty_return())
            }
            Err(e @ TakeFdError::NotFound { .. }) => Ok(e.to_call_result()),
            Err(e) => Err(self.fail(Failure::correctness(
                "api-misuse",
                format!("the core refused take_named_fd by a correct driver: {e}"),
            ))),
        }
    }

    /// Every client and person leaves, then the process exits: each monitor is destroyed,
    /// which closes its named fds.
    fn close_all(&mut self) -> Result<(), Failure> {
        self.run_before_exit()?;
        for i in 0..self.clients.len() {
            if self.clients[i].conn.is_some() {
                self.close_conn(i)?;
            }
        }
        self.hmp_leave_all()?;
        self.last_close_cleans_up()?;
        for i in 0..self.clients.len() {
            if self.clients[i].epoch > 0 {
                let m = self.clients[i].monitor;
                self.clients[i].names = [NameState::Absent; 3];
                self.rr.retain(|x| *x != m);
                self.apply(Input::Destroy { monitor: m })?;
            }
        }
        self.hmp_destroy_all()
    }
}
