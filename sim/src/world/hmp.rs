//! Human monitors (HMP) in the world, beside the QMP clients: people connect, type
//! ([`crate::hmp_people`]), wait or type ahead, get suspended by another subsystem while idle,
//! and leave (sometimes with keys unread). Their network is the QMP clients' (reads split,
//! short writes, stalls). Their HMP commands reach the world as in-band calls `hmp <name>`,
//! answered by [`crate::hmp_registry`].
//!
//! Oracles, after every input: the output against the people's model ([`crate::hmp_screen`]:
//! banner, prompts, the line on the screen when Enter is pressed, each line's output, during
//! `NextInBand` or its call's `Complete`), each line's call exactly once and in order, the
//! intent-free HMP invariants ([`crate::invariants`]: CR LF line ends, no events, one line
//! queued), the suspend count (each queued or running line holds one suspension, as QMP
//! requests with OOB off do), nothing pending after close; at the end, quiescence.
//!
//! Model limits: an external suspension is only applied while the person is idle (every
//! typed line answered, nothing typed since): resuming prints the prompt and restarts the
//! line, which the model places there. After a connection ended with keys the monitor may
//! not have read, the history is unknown: the people stop recalling it and `info history`
//! is not checked.

use std::collections::{BTreeMap, VecDeque};

use qmp_core::json::Value;
use qmp_core::server::{Call, HmpOptions, Input, Lane, MonitorId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{exp_gap, Action, Phase, World, MAX_STALL_NS, MAX_SUSPEND_NS};
use crate::failure::Failure;
use crate::hmp_model::{outcome, Editor, Key, Shown, BANNER};
use crate::hmp_people::{plan_line, spell, Habits};
use crate::hmp_registry::{hmp_call_result, hmp_handler};
use crate::hmp_screen::{During, Screen, Want};
use crate::invariants;
use crate::options::Options;
use crate::sut::Core;

/// The coverage marks of human monitors, shown with the core's probes.
pub const HMP_MARKS: [&str; 14] = [
    "sim_hmp_lines_run",
    "sim_hmp_calls",
    "sim_hmp_listing",
    "sim_hmp_history_recalled",
    "sim_hmp_history_shown",
    "sim_hmp_preconfig_refused",
    "sim_hmp_unknown_command",
    "sim_hmp_bad_arguments",
    "sim_hmp_help",
    "sim_hmp_crlf",
    "sim_hmp_typed_ahead",
    "sim_hmp_reconnect",
    "sim_hmp_suspended_idle",
    "sim_hmp_line_waited_for_inband",
];

/// Fewest and most lines the people of one world start (at most half the world's requests).
pub const MIN_LINES: u32 = 5;
/// See [`MIN_LINES`].
pub const MAX_LINES: u32 = 40;

/// What the world does for a human monitor at an agenda entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum HmpAction {
    Act(usize),
    Deliver(usize),
    Flush(usize),
    Close(usize, u64),
    Resume(usize, u64),
}

#[derive(Debug)]
struct HmpConn {
    screen: Screen,
    tx: VecDeque<u8>,
    deliver_scheduled: bool,
    flush_scheduled: bool,
    stalled_until: u64,
    produced: u64,
    written: u64,
    ext_suspends: u32,
    /// Being closed: output is no longer checked against the model.
    closing: bool,
    given_up: bool,
    /// The embedder's calls the typed lines must cause, in order.
    calls: VecDeque<(String, Option<i64>)>,
    calls_planned: u64,
    last_byte: Option<u8>,
}

#[derive(Debug)]
struct Person {
    monitor: MonitorId,
    editor: Editor,
    /// Keys planned and not typed yet (a line typed in pieces).
    plan: VecDeque<Key>,
    conn: Option<HmpConn>,
    epoch: u64,
}

/// The world's human monitors.
#[derive(Debug)]
pub(super) struct Hmps {
    people: Vec<Person>,
    habits: Habits,
    rng: ChaCha8Rng,
    marks: BTreeMap<&'static str, u64>,
    /// Lines the people may still start: their share of the world's request budget, kept
    /// apart so the QMP clients do not use it up first.
    pub(super) lines_left: u32,
    /// The input being applied.
    pub(super) during: During,
}

impl Hmps {
    /// `opts.hmp_monitors` people, with monitor ids after the QMP clients'.
    pub(super) fn new(opts: &Options) -> Hmps {
        // Their own stream: worlds without human monitors draw nothing from it.
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x484d_5020_7065_6f70);
        let habits = Habits::draw(&mut rng);
        // Taken out of the world's request budget (see `World::new`), so worlds with human
        // monitors do about as much work as the others.
        let lines_left = if opts.hmp_monitors > 0 {
            rng.random_range(MIN_LINES..=MAX_LINES)
                .min(opts.requests / 2)
        } else {
            0
        };
        Hmps {
            lines_left,
            people: (0..opts.hmp_monitors)
                .map(|k| Person {
                    monitor: MonitorId((opts.clients + k) as u64 + 1),
                    editor: Editor::default(),
                    plan: VecDeque::new(),
                    conn: None,
                    epoch: 0,
                })
                .collect(),
            habits,
            rng,
            marks: HMP_MARKS.iter().map(|&m| (m, 0)).collect(),
            during: During::Other,
        }
    }

    fn mark(&mut self, name: &'static str) {
        *self.marks.entry(name).or_insert(0) += 1;
    }

    /// The marks, for the run's statistics (only worlds with human monitors report them).
    pub(super) fn marks(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.marks.iter().map(|(n, c)| (n.to_string(), *c))
    }

    fn of(&self, m: MonitorId) -> Option<usize> {
        self.people.iter().position(|p| p.monitor == m)
    }

    /// An open human monitor (for `Transmit`).
    pub(super) fn is_open(&self, m: MonitorId) -> bool {
        self.of(m).is_some_and(|i| self.people[i].conn.is_some())
    }

    /// The core gave up on this human monitor.
    pub(super) fn given_up(&self, m: MonitorId) -> bool {
        self.of(m)
            .and_then(|i| self.people[i].conn.as_ref())
            .is_some_and(|c| c.given_up)
    }

    /// Monitors with a person connected.
    pub(super) fn open_monitors(&self) -> impl Iterator<Item = MonitorId> + '_ {
        self.people
            .iter()
            .filter(|p| p.conn.is_some())
            .map(|p| p.monitor)
    }

    /// Whether `m` is one of the people's monitors.
    pub(super) fn owns(&self, m: MonitorId) -> bool {
        self.of(m).is_some()
    }
}

/// What an input is, for the HMP oracles.
pub(super) fn during(input: &Input) -> During {
    match input {
        Input::NextInBand => During::Dispatch,
        Input::Complete { .. } => During::Complete,
        Input::Event { .. } | Input::Tick => During::Event,
        _ => During::Other,
    }
}

fn crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    for &b in text {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

impl<C: Core> World<C> {
    /// The people's first acts.
    pub(super) fn hmp_start(&mut self) {
        for i in 0..self.hmp.people.len() {
            let at = self.rng.random_range(0..1_000_000);
            self.schedule(at, Action::Hmp(HmpAction::Act(i)));
        }
    }

    pub(super) fn hmp_perform(&mut self, a: HmpAction) -> Result<(), Failure> {
        match a {
            HmpAction::Act(i) => self.hmp_act(i),
            HmpAction::Deliver(i) => self.hmp_deliver(i),
            HmpAction::Flush(i) => self.hmp_flush(i),
            HmpAction::Close(i, epoch) => {
                let p = &self.hmp.people[i];
                if p.epoch == epoch && p.conn.is_some() {
                    self.hmp_close(i)?;
                }
                Ok(())
            }
            HmpAction::Resume(i, epoch) => {
                let p = &mut self.hmp.people[i];
                let m = p.monitor;
                match p.conn.as_mut() {
                    Some(c) if p.epoch == epoch && c.ext_suspends > 0 => {
                        c.ext_suspends -= 1;
                        self.apply(Input::Resume { monitor: m })
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn hmp_act(&mut self, i: usize) -> Result<(), Failure> {
        if self.phase != Phase::Safety || self.hmp.lines_left == 0 {
            return Ok(());
        }
        let gap = exp_gap(&mut self.rng, self.opts.client_gap_ns).max(1_000);
        let next = self.now + gap;
        let Some(conn) = self.hmp.people[i].conn.as_ref() else {
            return self.hmp_connect(i);
        };
        if conn.closing {
            return Ok(());
        }
        let epoch = self.hmp.people[i].epoch;
        let p = &self.hmp.people[i];
        let idle = conn.screen.idle()
            && conn.tx.is_empty()
            && p.plan.is_empty()
            && p.editor.line().is_empty()
            && conn.ext_suspends == 0;
        let waiting = !conn.screen.idle();
        if self.rng.random_bool(self.opts.p_disconnect) {
            return self.hmp_close(i);
        }
        self.schedule(next, Action::Hmp(HmpAction::Act(i)));
        if idle && self.hmp.rng.random_bool(self.hmp.habits.p_suspended) {
            // The resume prints the prompt (and restarts the empty line) before anything
            // typed meanwhile is read.
            let m = self.hmp.people[i].monitor;
            if let Some(c) = self.hmp.people[i].conn.as_mut() {
                c.ext_suspends += 1;
                c.screen.want(Want::Prompt);
            }
            self.hmp.mark("sim_hmp_suspended_idle");
            let at = self.now + self.rng.random_range(0..MAX_SUSPEND_NS);
            self.schedule(at, Action::Hmp(HmpAction::Resume(i, epoch)));
            return self.apply(Input::Suspend { monitor: m });
        }
        if waiting && !self.hmp.rng.random_bool(self.hmp.habits.p_ahead) {
            return Ok(());
        }
        if waiting {
            self.hmp.mark("sim_hmp_typed_ahead");
        }
        self.hmp_type(i);
        self.hmp_schedule_io(i);
        Ok(())
    }

    /// Types the plan (or a piece of it), planning a new line when there is none.
    fn hmp_type(&mut self, i: usize) {
        let preconfig = self.opts.preconfig;
        let h = &mut self.hmp;
        let p = &mut h.people[i];
        if p.plan.is_empty() {
            h.lines_left = h.lines_left.saturating_sub(1);
            let keys = plan_line(&mut h.rng, &h.habits, &p.editor, preconfig);
            if keys.contains(&Key::Up) {
                *h.marks.entry("sim_hmp_history_recalled").or_insert(0) += 1;
            }
            p.plan.extend(keys);
        }
        let n = if p.plan.len() > 1 && h.rng.random_bool(h.habits.p_pieces) {
            h.rng.random_range(1..p.plan.len())
        } else {
            p.plan.len()
        };
        let keys: Vec<Key> = p.plan.drain(..n).collect();
        let Some(conn) = p.conn.as_mut() else {
            return;
        };
        let mut marks = Vec::new();
        for (k, &key) in keys.iter().enumerate() {
            if key == Key::Enter && keys.get(k + 1) == Some(&Key::Enter) {
                marks.push("sim_hmp_crlf");
            }
            match p.editor.key(key, preconfig) {
                None => {}
                Some(Shown::Listing { before, text }) => {
                    marks.push("sim_hmp_listing");
                    conn.screen.want(Want::LineEnd(before));
                    conn.screen.want(Want::Exact(text));
                    conn.screen.want(Want::Prompt);
                }
                Some(Shown::Line(line)) => {
                    let history = (!p.editor.lost).then(|| p.editor.history());
                    let o = outcome(&line, preconfig, history);
                    marks.push(match o.what {
                        "preconfig-refused" => "sim_hmp_preconfig_refused",
                        "unknown" => "sim_hmp_unknown_command",
                        "bad-arguments" => "sim_hmp_bad_arguments",
                        "help" => "sim_hmp_help",
                        "history" => "sim_hmp_history_shown",
                        _ => "sim_hmp_lines_run",
                    });
                    conn.screen.want(Want::LineEnd(line));
                    let call = o.call.map(|c| {
                        conn.calls.push_back(c);
                        conn.calls_planned += 1;
                        conn.calls_planned
                    });
                    conn.screen.want(Want::Runs { call });
                    match o.text {
                        Some(t) if t.is_empty() => conn.screen.want(Want::Prompt),
                        Some(t) => {
                            conn.screen.want(Want::Exact(crlf(&t)));
                            conn.screen.want(Want::Prompt);
                        }
                        None => conn.screen.want(Want::AnyLines),
                    }
                }
            }
        }
        let mut bytes = Vec::new();
        spell(&mut h.rng, &keys, &mut bytes);
        conn.tx.extend(bytes);
        for m in marks {
            *h.marks.entry(m).or_insert(0) += 1;
        }
    }

    fn hmp_connect(&mut self, i: usize) -> Result<(), Failure> {
        let p = &mut self.hmp.people[i];
        p.epoch += 1;
        p.editor.restart();
        p.plan.clear();
        let m = p.monitor;
        let epoch = p.epoch;
        let mut screen = Screen::default();
        screen.want(Want::Exact(BANNER.to_vec()));
        screen.want(Want::Prompt);
        // A line of an earlier connection still running holds the monitor: when it ends,
        // the resume prints the prompt again.
        if self
            .calls
            .values()
            .any(|c| c.monitor == m && c.epoch != epoch && c.suspends)
        {
            screen.want(Want::Prompt);
        }
        p.conn = Some(HmpConn {
            screen,
            tx: VecDeque::new(),
            deliver_scheduled: false,
            flush_scheduled: false,
            stalled_until: 0,
            produced: 0,
            written: 0,
            ext_suspends: 0,
            closing: false,
            given_up: false,
            calls: VecDeque::new(),
            calls_planned: 0,
            last_byte: None,
        });
        if epoch == 1 {
            self.rr.insert(0, m);
        } else {
            self.hmp.mark("sim_hmp_reconnect");
        }
        let at = self.now + exp_gap(&mut self.rng, self.opts.client_gap_ns);
        self.schedule(at, Action::Hmp(HmpAction::Act(i)));
        self.apply(Input::OpenHmp {
            monitor: m,
            options: HmpOptions::default(),
        })
    }

    fn hmp_close(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.hmp.people[i].monitor;
        let held = self.core.suspend_count(m);
        let p = &mut self.hmp.people[i];
        let Some(c) = p.conn.as_mut() else {
            return Ok(());
        };
        // Keys the monitor may not have read change the history, or not.
        let clean = c.tx.is_empty() && p.plan.is_empty() && c.screen.idle() && held == 0;
        if !clean {
            p.editor.lost = true;
        }
        c.closing = true;
        while self.hmp.people[i]
            .conn
            .as_ref()
            .is_some_and(|c| c.ext_suspends > 0)
        {
            if let Some(c) = self.hmp.people[i].conn.as_mut() {
                c.ext_suspends -= 1;
            }
            self.apply(Input::Resume { monitor: m })?;
        }
        self.hmp.people[i].conn = None;
        self.hmp.people[i].plan.clear();
        // A human monitor's close is counted by QEMU's fd-set cleanup like a QMP one's.
        self.fdsets.cleanup(self.open_sessions());
        self.apply(Input::Close { monitor: m })?;
        if self.phase == Phase::Safety && self.hmp.lines_left > 0 {
            let at = self.now + self.rng.random_range(0..5_000_000);
            self.schedule(at, Action::Hmp(HmpAction::Act(i)));
        }
        Ok(())
    }

    /// The core gave up on a human monitor at its output limit: it is closed.
    pub(super) fn hmp_disconnect(&mut self, m: MonitorId) {
        let Some(i) = self.hmp.of(m) else {
            return;
        };
        let epoch = self.hmp.people[i].epoch;
        if let Some(c) = self.hmp.people[i].conn.as_mut() {
            c.closing = true;
            c.given_up = true;
        }
        self.schedule(self.now, Action::Hmp(HmpAction::Close(i, epoch)));
    }

    fn hmp_deliver(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.hmp.people[i].monitor;
        let wants = self.core.wants_read(m);
        let max_read = if self.phase == Phase::Safety {
            self.opts.max_read
        } else {
            4096
        };
        let Some(conn) = self.hmp.people[i].conn.as_mut() else {
            return Ok(());
        };
        conn.deliver_scheduled = false;
        if !wants || conn.tx.is_empty() {
            return Ok(());
        }
        let n = self.rng.random_range(1..=max_read.min(conn.tx.len()));
        let bytes: Vec<u8> = conn.tx.drain(..n).collect();
        self.apply(Input::Receive {
            monitor: m,
            bytes,
            fds: Vec::new(),
        })
    }

    fn hmp_flush(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.hmp.people[i].monitor;
        let pending = self.core.pending_output(m).len();
        let faults = self.phase == Phase::Safety;
        let now = self.now;
        let Some(conn) = self.hmp.people[i].conn.as_mut() else {
            return Ok(());
        };
        conn.flush_scheduled = false;
        if pending == 0 {
            return Ok(());
        }
        let stall = faults && self.rng.random_bool(self.opts.p_stall);
        if stall {
            conn.stalled_until = now + self.rng.random_range(1..MAX_STALL_NS);
        }
        if conn.stalled_until > now {
            conn.flush_scheduled = true;
            let at = conn.stalled_until;
            self.schedule(at, Action::Hmp(HmpAction::Flush(i)));
            return Ok(());
        }
        let n = if faults && self.opts.short_writes {
            self.rng.random_range(0..=pending)
        } else {
            pending
        };
        if n == 0 {
            conn.flush_scheduled = true;
            self.schedule(now + 10_000, Action::Hmp(HmpAction::Flush(i)));
            return Ok(());
        }
        conn.written += n as u64;
        self.apply(Input::Written { monitor: m, n })
    }

    pub(super) fn hmp_schedule_io(&mut self, i: usize) {
        let m = self.hmp.people[i].monitor;
        let wants = self.core.wants_read(m);
        let pending = !self.core.pending_output(m).is_empty();
        let faults = self.phase == Phase::Safety;
        let Some(conn) = self.hmp.people[i].conn.as_mut() else {
            return;
        };
        let mut todo = Vec::new();
        if wants && !conn.tx.is_empty() && !conn.deliver_scheduled {
            conn.deliver_scheduled = true;
            todo.push(HmpAction::Deliver(i));
        }
        if pending && !conn.flush_scheduled {
            conn.flush_scheduled = true;
            todo.push(HmpAction::Flush(i));
        }
        for a in todo {
            let d = if faults {
                self.rng.random_range(0..5_000)
            } else {
                0
            };
            self.schedule(self.now + d, Action::Hmp(a));
        }
    }

    /// Schedules reads and writes of every person.
    pub(super) fn hmp_schedule_all(&mut self) {
        for i in 0..self.hmp.people.len() {
            self.hmp_schedule_io(i);
        }
    }

    /// The HMP command call `call`: the next one the person's lines must cause, on the
    /// connection that typed it. Returns the handler's result; the caller runs the call.
    pub(super) fn hmp_on_call(
        &mut self,
        call: &Call,
    ) -> Result<(u64, qmp_core::server::CallResult), Failure> {
        let Some(i) = self.hmp.of(call.monitor) else {
            return Err(self.fail(Failure::correctness(
                "call-monitor",
                format!(
                    "{} call for monitor {} which is not a human monitor",
                    call.command.as_str(),
                    call.monitor.0
                ),
            )));
        };
        let epoch = self.hmp.people[i].epoch;
        let Some(conn) = self.hmp.people[i].conn.as_mut() else {
            return Err(self.fail(Failure::correctness(
                "call-after-close",
                format!(
                    "{} call for closed human monitor {}",
                    call.command.as_str(),
                    call.monitor.0
                ),
            )));
        };
        let tag = call.arguments.get("tag").and_then(Value::as_i64);
        let got = (call.command.as_str().to_owned(), tag);
        let expected = conn.calls.pop_front();
        let ok = call.lane == Lane::InBand
            && expected.as_ref() == Some(&got)
            && call.arguments.len() == usize::from(tag.is_some());
        if ok {
            conn.screen.calls_seen += 1;
        } else {
            return Err(self.fail(Failure::correctness(
                "hmp-call-mismatch",
                format!(
                    "human monitor {}: call {} {:?} on lane {:?}; the typed lines expect {expected:?}",
                    call.monitor.0, call.command.as_str(), call.arguments, call.lane
                ),
            )));
        }
        self.hmp.mark("sim_hmp_calls");
        let answer = hmp_handler(&got.0, tag).unwrap_or(Ok(None));
        Ok((epoch, hmp_call_result(&answer)))
    }

    /// New output of every human monitor, checked against the people's model.
    pub(super) fn hmp_check_output(&mut self) -> Result<(), Failure> {
        let during = self.hmp.during;
        for i in 0..self.hmp.people.len() {
            let m = self.hmp.people[i].monitor;
            let pending = self.core.pending_output(m);
            let Some(conn) = self.hmp.people[i].conn.as_mut() else {
                invariants::nothing_pending(m, pending, false)
                    .map_err(|f| f.at(self.step, self.now))?;
                continue;
            };
            if conn.given_up {
                invariants::nothing_pending(m, pending, true)
                    .map_err(|f| f.at(self.step, self.now))?;
                conn.produced = conn.written;
                continue;
            }
            let unwritten = (conn.produced - conn.written) as usize;
            if pending.len() < unwritten {
                return Err(Failure::correctness(
                    "pending-shrank",
                    format!(
                        "human monitor {}: {} bytes pending, {unwritten} produced and not written",
                        m.0,
                        pending.len()
                    ),
                )
                .at(self.step, self.now));
            }
            let fresh = &pending[unwritten..];
            if fresh.is_empty() {
                continue;
            }
            self.digest.num(m.0);
            self.digest.bytes(fresh);
            conn.produced += fresh.len() as u64;
            let at = |f: Failure| f.at(self.step, self.now);
            invariants::hmp_no_events(m, during == During::Event, fresh).map_err(at)?;
            invariants::hmp_line_ends(m, conn.last_byte, fresh).map_err(at)?;
            conn.last_byte = fresh.last().copied();
            if during == During::Dispatch {
                // Only the monitor the dispatcher served prints during NextInBand.
                self.served = Some(m);
            }
            if conn.closing {
                continue;
            }
            conn.screen.feed(fresh, during).map_err(|(oracle, d)| {
                Failure::correctness(oracle, format!("human monitor {}: {d}", m.0))
                    .at(self.step, self.now)
            })?;
        }
        Ok(())
    }

    /// Per-monitor invariants of the human monitors.
    pub(super) fn hmp_invariants(&mut self) -> Result<(), Failure> {
        let busy = self.inband_busy.and_then(|c| self.calls.get(&c));
        let mut waited = false;
        for p in &self.hmp.people {
            let Some(conn) = p.conn.as_ref() else {
                continue;
            };
            let m = p.monitor;
            let q = self.core.queue_len(m);
            invariants::hmp_queue(m, q).map_err(|f| self.fail(f))?;
            let sc = self.core.suspend_count(m);
            let inflight = busy.is_some_and(|b| b.monitor == m && b.epoch == p.epoch) as i64;
            let held_over =
                busy.is_some_and(|b| b.monitor == m && b.epoch != p.epoch && b.suspends) as i64;
            let expected = conn.ext_suspends as i64 + q as i64 + inflight + held_over;
            if sc != expected {
                return Err(self.fail(Failure::correctness(
                    "suspend-count",
                    format!(
                        "human monitor {} suspend count {sc}, expected {} external + {q} queued line + {inflight} running + {held_over} held by a line of an earlier connection",
                        m.0, conn.ext_suspends
                    ),
                )));
            }
            let wants = self.core.wants_read(m);
            invariants::reading(m, wants, sc as u64, false).map_err(|f| self.fail(f))?;
            if !wants && sc == 0 && !conn.closing {
                return Err(self.fail(Failure::correctness(
                    "wants-read",
                    format!("human monitor {} refuses input with suspend count 0", m.0),
                )));
            }
            waited |= q > 0 && busy.is_some_and(|b| b.monitor != m);
        }
        if waited {
            self.hmp.mark("sim_hmp_line_waited_for_inband");
        }
        Ok(())
    }

    /// Liveness: what the people still wait for.
    pub(super) fn hmp_quiescent(&self, pending: &mut Vec<String>) {
        for p in &self.hmp.people {
            let Some(conn) = p.conn.as_ref() else {
                continue;
            };
            let m = p.monitor;
            if !conn.tx.is_empty() {
                pending.push(format!(
                    "human monitor {}: {} typed bytes never read (wants_read={}, suspend count {})",
                    m.0,
                    conn.tx.len(),
                    self.core.wants_read(m),
                    self.core.suspend_count(m)
                ));
            }
            if let Some(w) = conn.screen.pending() {
                pending.push(format!("human monitor {}: {w}", m.0));
            }
            if let Some(c) = conn.calls.front() {
                pending.push(format!("human monitor {}: call {c:?} never issued", m.0));
            }
            let out = self.core.pending_output(m).len();
            if out > 0 {
                pending.push(format!(
                    "human monitor {}: {out} output bytes never written",
                    m.0
                ));
            }
            let q = self.core.queue_len(m);
            if q > 0 {
                pending.push(format!("human monitor {}: {q} lines still queued", m.0));
            }
        }
    }

    /// Faults off: stalls end, external suspensions are lifted.
    pub(super) fn hmp_end_faults(&mut self) {
        for i in 0..self.hmp.people.len() {
            let epoch = self.hmp.people[i].epoch;
            let Some(conn) = self.hmp.people[i].conn.as_mut() else {
                continue;
            };
            conn.stalled_until = 0;
            for _ in 0..conn.ext_suspends {
                self.schedule(self.now, Action::Hmp(HmpAction::Resume(i, epoch)));
            }
            self.schedule(self.now, Action::Hmp(HmpAction::Flush(i)));
            self.schedule(self.now, Action::Hmp(HmpAction::Deliver(i)));
        }
    }

    /// Every person leaves.
    pub(super) fn hmp_leave_all(&mut self) -> Result<(), Failure> {
        for i in 0..self.hmp.people.len() {
            if self.hmp.people[i].conn.is_some() {
                self.hmp_close(i)?;
            }
        }
        Ok(())
    }

    /// The process exits: every human monitor is destroyed.
    pub(super) fn hmp_destroy_all(&mut self) -> Result<(), Failure> {
        for i in 0..self.hmp.people.len() {
            if self.hmp.people[i].epoch > 0 {
                let m = self.hmp.people[i].monitor;
                self.rr.retain(|x| *x != m);
                self.apply(Input::Destroy { monitor: m })?;
            }
        }
        Ok(())
    }
}
