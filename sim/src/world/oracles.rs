//! The world's oracles, run after every input: output against the reference model, the
//! 2.12 `COMMAND_DROPPED` broadcast, per-monitor invariants (the intent-free ones from
//! [`crate::invariants`], plus those that need the model's session or the client's intent),
//! liveness at the end, and descriptor accounting. Driving the world is in the parent module.

use std::collections::BTreeMap;

use qmp_core::server::{Dialect, MonitorId};

use super::World;
use crate::failure::Failure;
use crate::invariants::{self, QUEUE_MAX};
use crate::model::{show, NameState, Seen, Session};
use crate::sut::Core;

impl<C: Core> World<C> {
    /// New output bytes of every open monitor, split into messages and checked against the
    /// model.
    pub(super) fn check_output(&mut self) -> Result<(), Failure> {
        // Completed calls are forgotten once their Complete has been applied.
        let step = self.step;
        // Clients waiting for a reply that came: they act again now.
        let mut answered = Vec::new();
        let open = self.open_sessions();
        for i in 0..self.clients.len() {
            let m = self.clients[i].monitor;
            let pending = self.core.pending_output(m);
            let Some(conn) = self.clients[i].conn.as_mut() else {
                invariants::nothing_pending(m, pending, false)
                    .map_err(|f| f.at(self.step, self.now))?;
                continue;
            };
            if conn.given_up {
                // Dropped at the output or input limit: only the core's own invariants apply.
                invariants::nothing_pending(m, pending, true)
                    .map_err(|f| f.at(self.step, self.now))?;
                conn.produced = conn.written;
                conn.model.rx.clear();
                continue;
            }
            let unwritten = (conn.produced - conn.written) as usize;
            if pending.len() < unwritten {
                return Err(Failure::correctness(
                    "pending-shrank",
                    format!(
                        "monitor {}: {} bytes pending, but {} were produced and not yet written",
                        m.0,
                        pending.len(),
                        unwritten
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
            conn.model.rx.extend_from_slice(fresh);
            let pretty = conn.model.pretty;
            let msgs = crate::wire::split_messages(&mut conn.model.rx, pretty);
            if conn.model.rx.len() > crate::model::MAX_PARTIAL_MESSAGE {
                return Err(Failure::correctness(
                    "runaway-message",
                    format!(
                        "monitor {}: {} bytes without a message end",
                        m.0,
                        conn.model.rx.len()
                    ),
                )
                .at(self.step, self.now));
            }
            for msg in msgs {
                self.messages += 1;
                match conn
                    .model
                    .check_with(&msg, step, Some((&mut self.fdsets, open)))
                {
                    Err(e) => {
                        return Err(Failure::correctness(
                            "reference-model",
                            format!("monitor {}: {e}", m.0),
                        )
                        .at(self.step, self.now))
                    }
                    Ok(Seen::Dropped(v)) => self.drops.push((i, v)),
                    Ok(Seen::Reply(_)) => {
                        // During NextInBand every reply is the served monitor's: the request's
                        // own, or one for input the resume let it read.
                        self.served = Some(m);
                        if conn.waiting {
                            conn.waiting = false;
                            answered.push(i);
                        }
                    }
                    Ok(_) => {}
                }
            }
        }
        for i in answered {
            self.wake(i);
        }
        if !self.drops.is_empty() {
            self.check_drops()?;
        }
        Ok(())
    }

    /// 2.12: every `COMMAND_DROPPED` names a request that was droppable, reaches every
    /// negotiated monitor, and replaces that request's reply.
    pub(super) fn check_drops(&mut self) -> Result<(), Failure> {
        let drops = std::mem::take(&mut self.drops);
        let mut per_conn: BTreeMap<usize, Vec<serde_json::Value>> = BTreeMap::new();
        for (i, v) in drops {
            per_conn.entry(i).or_default().push(v);
        }
        let canon = per_conn.values().next().cloned().unwrap_or_default();
        for (i, c) in self.clients.iter().enumerate() {
            let Some(conn) = c.conn.as_ref() else {
                continue;
            };
            let negotiated = conn.model.negotiated_at.is_some_and(|s| s < self.step);
            let got = per_conn.get(&i).cloned().unwrap_or_default();
            // A monitor given up at its output limit gets nothing more.
            if negotiated && !conn.given_up && got != canon {
                return Err(self.fail(Failure::correctness(
                    "command-dropped-broadcast",
                    format!(
                        "monitor {} got COMMAND_DROPPED {:?}, another got {:?}",
                        c.monitor.0, got, canon
                    ),
                )));
            }
        }
        for v in canon {
            let data = v.get("data");
            let reason = data.and_then(|d| d.get("reason")).and_then(|r| r.as_str());
            let id = data.and_then(|d| d.get("id"));
            let (Some("queue-full"), Some(id)) = (reason, id) else {
                return Err(self.fail(Failure::correctness(
                    "command-dropped-shape",
                    format!("COMMAND_DROPPED without reason queue-full and id: {v}"),
                )));
            };
            let mut owner = None;
            for (i, c) in self.clients.iter_mut().enumerate() {
                if let Some(conn) = c.conn.as_mut() {
                    if conn.model.drop_request(id) {
                        owner = Some(i);
                        break;
                    }
                }
            }
            let Some(owner) = owner else {
                return Err(self.fail(Failure::correctness(
                    "command-dropped-id",
                    format!("COMMAND_DROPPED for id {id} that no droppable request carries"),
                )));
            };
            let m = self.clients[owner].monitor;
            let q = self.core.queue_len(m);
            if q != QUEUE_MAX {
                return Err(self.fail(Failure::correctness(
                    "command-dropped-early",
                    format!(
                        "monitor {} dropped a request with {q} queued (limit {QUEUE_MAX})",
                        m.0
                    ),
                )));
            }
        }
        Ok(())
    }

    /// Per-monitor invariants after every input.
    pub(super) fn check_invariants(&mut self) -> Result<(), Failure> {
        let busy = self.inband_busy.and_then(|c| self.calls.get(&c));
        for c in &self.clients {
            let Some(conn) = c.conn.as_ref() else {
                continue;
            };
            let m = c.monitor;
            let q = self.core.queue_len(m);
            let s = conn.model.confirmed;
            invariants::queue_length(m, q, s.oob()).map_err(|f| self.fail(f))?;
            let sc = self.core.suspend_count(m);
            let ext = conn.ext_suspends as i64;
            // The running in-band call of this connection, or one of an earlier connection of
            // the monitor that still holds its suspension (OOB was off when it was dispatched).
            let inflight = busy.is_some_and(|b| b.monitor == m && b.epoch == c.epoch);
            let held_over =
                busy.is_some_and(|b| b.monitor == m && b.epoch != c.epoch && b.suspends) as i64;
            let protocol = match (self.opts.dialect, s) {
                // Every request queued with OOB off suspends; each is resumed when its
                // dispatch is done (several when one byte completed several messages).
                (_, Session::Negotiating) | (_, Session::Command { oob: false }) => {
                    q as i64 + inflight as i64
                }
                // Suspended when the 8th is queued, resumed when a dispatch leaves 7 (a 9th
                // from the same byte does not suspend again).
                (Dialect::Qemu72, Session::Command { oob: true }) => (q >= QUEUE_MAX) as i64,
                (_, Session::Command { oob: true }) => 0,
            };
            if sc != ext + protocol + held_over {
                return Err(self.fail(Failure::correctness(
                    "suspend-count",
                    format!(
                        "monitor {} suspend count {sc}, expected {ext} external + {protocol} from the queue (queue {q}, in-band call running: {inflight}, session {s:?}) + {held_over} held by a call of an earlier connection",
                        m.0
                    ),
                )));
            }
            let wants = self.core.wants_read(m);
            // An OOB call holds the monitor's input, whichever connection sent it.
            let oob_call = self.calls.values().any(|k| k.oob && k.monitor == m);
            invariants::reading(m, wants, sc as u64, oob_call).map_err(|f| self.fail(f))?;
            if !wants && sc == 0 && !conn.closing && !oob_call {
                return Err(self.fail(Failure::correctness(
                    "wants-read",
                    format!(
                        "monitor {} refuses input with suspend count 0 and no OOB call",
                        m.0
                    ),
                )));
            }
        }
        self.hmp_invariants()?;
        if self.step.is_multiple_of(64) {
            let open: Vec<MonitorId> = self
                .clients
                .iter()
                .filter(|c| c.conn.is_some())
                .map(|c| c.monitor)
                .chain(self.hmp.open_monitors())
                .collect();
            let pending: usize = open
                .iter()
                .map(|&m| self.core.pending_output(m).len())
                .sum();
            invariants::memory(
                self.core.memory_estimate(),
                pending,
                self.opts.input_buffer_limit,
                open.len(),
            )
            .map_err(|f| self.fail(f))?;
        }
        Ok(())
    }

    /// Liveness: after the faults stopped and the agenda ran dry (or the bounded virtual time
    /// passed), nothing may be pending. Names what is.
    pub(super) fn check_quiescent(&mut self) -> Result<(), Failure> {
        let mut pending = Vec::new();
        for c in &self.clients {
            let m = c.monitor;
            let Some(conn) = c.conn.as_ref() else {
                continue;
            };
            if !conn.tx.is_empty() {
                pending.push(format!(
                    "monitor {}: {} request bytes never read (wants_read={}, suspend count {})",
                    m.0,
                    conn.tx.len(),
                    self.core.wants_read(m),
                    self.core.suspend_count(m)
                ));
            }
            if let Some(e) = conn.model.inband.front() {
                pending.push(format!(
                    "monitor {}: {} in-band replies missing, first {} ({})",
                    m.0,
                    conn.model.inband.len(),
                    show(&e.bytes),
                    e.what
                ));
            }
            if let Some(e) = conn.model.immediate.front() {
                pending.push(format!(
                    "monitor {}: {} immediate replies missing, first {} ({})",
                    m.0,
                    conn.model.immediate.len(),
                    show(&e.bytes),
                    e.what
                ));
            }
            if let Some((_, e)) = conn.model.events.front() {
                pending.push(format!(
                    "monitor {}: {} events never delivered, first {}",
                    m.0,
                    conn.model.events.len(),
                    show(e)
                ));
            }
            if conn.model.greeting.is_some() {
                pending.push(format!("monitor {}: no greeting", m.0));
            }
            if !conn.model.rx.is_empty() {
                pending.push(format!(
                    "monitor {}: incomplete message {}",
                    m.0,
                    show(&conn.model.rx)
                ));
            }
            let out = self.core.pending_output(m).len();
            if out > 0 {
                pending.push(format!("monitor {}: {out} output bytes never written", m.0));
            }
            let q = self.core.queue_len(m);
            if q > 0 {
                pending.push(format!("monitor {}: {q} requests still queued", m.0));
            }
        }
        if let Some(call) = self.calls.keys().next() {
            pending.push(format!(
                "{} handler calls unfinished, first {}",
                self.calls.len(),
                call.0
            ));
        }
        self.hmp_quiescent(&mut pending);
        if self.core.dispatcher_ready() {
            pending.push("dispatcher still has work".to_string());
        }
        if let Some(t) = self.core.poll_timeout() {
            pending.push(format!("a timer is still armed for t={}", t.0));
        }
        if self.throttle.next_deadline().is_some() {
            pending.push("the reference throttle still holds state".to_string());
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(self.fail(Failure::liveness("not-quiescent", pending.join("\n  "))))
        }
    }

    /// A connection of client `i` closed: the monitor keeps exactly the named fds the model
    /// knows it holds (unknown names aside). A core that drops them with the connection, or
    /// keeps one that was closed, fails here, before any later client could notice.
    pub(super) fn check_names_kept(&mut self, i: usize) -> Result<(), Failure> {
        let m = self.clients[i].monitor;
        let held = self.core.named_fds(m);
        for (n, state) in self.clients[i].names.iter().enumerate() {
            let name = format!("fd{n}");
            let has = held.contains(&name);
            let wrong = match state {
                NameState::Named => !has,
                NameState::Absent => has,
                NameState::Unknown => false,
            };
            if wrong {
                return Err(self.fail(Failure::correctness(
                    "named-fd-lifetime",
                    format!(
                        "monitor {}: after its client left, named fd '{name}' is {} (model: {state:?}; named fds belong to the monitor, spec §10.2)",
                        m.0,
                        if has { "held" } else { "gone" },
                    ),
                )));
            }
        }
        Ok(())
    }

    /// Every descriptor handed to the core came back as `CloseFd` exactly once, by the time
    /// every client has left and every monitor was destroyed (named fds outlive their
    /// connection, not their monitor).
    pub(super) fn check_fds(&mut self) -> Result<(), Failure> {
        let open: Vec<u64> = self
            .fds
            .iter()
            .filter(|(_, closed)| !**closed)
            .map(|(fd, _)| *fd)
            .collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(self.fail(Failure::correctness(
                "fd-leak",
                format!(
                    "{} fds never closed after every client left and every monitor was destroyed: {:?}",
                    open.len(),
                    open
                ),
            )))
        }
    }
}
