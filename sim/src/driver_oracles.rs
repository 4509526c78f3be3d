//! The driver world's oracles: every client's bytes against the reference model (nothing of
//! one client is lost or disturbed by another's faults), and after every step the lifecycle
//! invariants: a closed peer is cleaned up within [`CLEANUP_STEPS`], a waiting client is
//! accepted once a slot is free (within [`ACCEPT_WAIT_NS`]), connections and descriptors are
//! accounted for (each closed exactly once, none held that no one owns). At the end: every
//! client greeted, answered and gone, and after shutdown every descriptor closed.

use super::{DriverWorld, ACCEPT_WAIT_NS, CLEANUP_STEPS};
use crate::failure::Failure;
use crate::model::{show, Seen};
use crate::sockets::FdKind;

impl DriverWorld {
    /// Bytes client of socket `s` received: split into messages, checked against its model.
    pub(super) fn check_replies(&mut self, s: usize, bytes: &[u8]) -> Result<(), Failure> {
        let step = self.step;
        let sock = &mut self.socks[s];
        if sock.desync {
            // Unchecked; its client leaves at its next action.
            let i = sock.client;
            if std::mem::take(&mut self.clients[i].waiting) {
                self.schedule(self.now, super::Todo::ClientAct(i));
            }
            return Ok(());
        }
        let model = &mut sock.model;
        model.rx.extend_from_slice(bytes);
        let msgs = crate::wire::split_messages(&mut model.rx, model.pretty);
        if model.rx.len() > crate::model::MAX_PARTIAL_MESSAGE {
            return Err(Failure::correctness(
                "runaway-message",
                format!("client {}: a message without an end", sock.client),
            )
            .at(step, self.now));
        }
        let mut seen = false;
        for msg in msgs {
            self.messages += 1;
            seen = true;
            match model.check(&msg, step) {
                Err(e) => {
                    return Err(Failure::correctness(
                        "reference-model",
                        format!("client {} (socket {s}): {e}", sock.client),
                    )
                    .at(step, self.now));
                }
                Ok(Seen::Dropped(v)) => {
                    // 2.12 broadcasts COMMAND_DROPPED; the owner forgets that request.
                    if let Some(id) = v.get("data").and_then(|d| d.get("id")) {
                        model.drop_request(id);
                    }
                }
                Ok(_) => {}
            }
        }
        let i = sock.client;
        if seen && self.clients[i].waiting {
            self.clients[i].waiting = false;
            self.schedule(self.now, super::Todo::ClientAct(i));
        }
        Ok(())
    }

    /// The lifecycle invariants, after every step.
    pub(super) fn check_step(&mut self) -> Result<(), Failure> {
        // A closed peer is cleaned up: count the steps in which the driver could have read
        // its EOF (the core wants input, no readiness event is on its way).
        for s in 0..self.socks.len() {
            let (Some(conn), true) = (self.socks[s].conn, self.socks[s].fd.is_some()) else {
                continue;
            };
            let sock = &self.socks[s].sock;
            if sock.client_gone() && !sock.read_event_due && self.driver.wants_input(conn) {
                let unread = sock.unread();
                self.socks[s].lingering += 1;
                if self.socks[s].lingering > CLEANUP_STEPS {
                    return Err(self.fail(Failure::liveness(
                        "lost-close",
                        format!(
                            "client {} closed its connection {} at step {:?}; {} steps later the \
                             driver has not closed it although it wants its input (readable={}, \
                             {} bytes unread, EOF queued)",
                            self.socks[s].client,
                            conn.0,
                            self.socks[s].gone_at,
                            CLEANUP_STEPS,
                            self.driver.is_readable(conn),
                            unread
                        ),
                    )));
                }
            }
        }
        // A one-client (or N-client) listener serves the next client once a slot is free.
        // The stdio monitor is no listener's client.
        let open = self.driver.connections().count() - self.console_open_conns();
        if !self.backlog.is_empty() && open < self.opts.slots && self.driver.running() {
            let since = *self.slot_free_since.get_or_insert(self.now);
            if self.now - since > ACCEPT_WAIT_NS {
                return Err(self.fail(Failure::liveness(
                    "listener-stuck",
                    format!(
                        "{} client(s) wait in the backlog and {} of {} slots are free since \
                         t={since}, but nothing was accepted",
                        self.backlog.len(),
                        self.opts.slots - open,
                        self.opts.slots
                    ),
                )));
            }
        } else {
            self.slot_free_since = None;
        }
        // Connections: the driver's open ones are exactly those whose socket is open.
        let sockets_open = self
            .socks
            .iter()
            .filter(|s| s.fd.is_some() && s.conn.is_some())
            .count();
        if open != sockets_open {
            return Err(self.fail(Failure::correctness(
                "conn-accounting",
                format!(
                    "the driver has {open} connections open, the world {sockets_open} sockets \
                     (a connection closed without its CloseConn, or the reverse)"
                ),
            )));
        }
        // The output budget holds after every step.
        if self.driver.output_held() > self.opts.output_budget {
            return Err(self.fail(Failure::correctness(
                "output-budget",
                format!(
                    "the driver holds {} bytes of output for its clients, above its budget of {}",
                    self.driver.output_held(),
                    self.opts.output_budget
                ),
            )));
        }
        // Descriptors: every passed one open is in a socket or held by the driver.
        let in_flight: usize = self.socks.iter().map(|s| s.sock.fds_in_flight()).sum();
        let passed = self.ledger.open_count(FdKind::Passed);
        let held = self.driver.fds_held();
        if passed != in_flight + held {
            return Err(self.fail(Failure::correctness(
                "fd-accounting",
                format!(
                    "{passed} passed descriptors open, but {in_flight} are in sockets and the \
                     driver holds {held} (a descriptor leaked or was closed behind its owner)"
                ),
            )));
        }
        Ok(())
    }

    /// The end of the liveness phase: every client was served and left, nothing is pending.
    pub(super) fn check_quiescent(&mut self) -> Result<(), Failure> {
        let mut pending = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let Some(s) = c.sock else {
                continue;
            };
            let sock = &self.socks[s];
            let m = &sock.model;
            let where_ = if sock.conn.is_none() {
                "in the backlog"
            } else {
                "accepted"
            };
            if m.greeting.is_some() {
                pending.push(format!("client {i} ({where_}): no greeting"));
            } else if let Some(e) = m.inband.front().or(m.immediate.front()) {
                pending.push(format!(
                    "client {i} ({where_}): {} replies missing, first {} ({})",
                    m.outstanding(),
                    show(&e.bytes),
                    e.what
                ));
            } else {
                pending.push(format!("client {i} ({where_}): still connected"));
            }
        }
        for (s, sock) in self.socks.iter().enumerate() {
            if let (Some(conn), Some(_)) = (sock.conn, sock.fd.as_ref()) {
                pending.push(format!(
                    "connection {} (socket {s}, client {}) still open{}",
                    conn.0,
                    sock.client,
                    if sock.gone_at.is_some() {
                        " although its client left"
                    } else {
                        ""
                    }
                ));
            }
        }
        if let Some(c) = &self.inband {
            pending.push(format!(
                "in-band call {} unfinished{}",
                c.call.0,
                if c.parked {
                    " (x-oob-test lock still held)"
                } else {
                    ""
                }
            ));
        }
        if self.driver.dispatcher_ready() {
            pending.push("the in-band lane still has work".into());
        }
        if !self.backlog.is_empty() {
            pending.push(format!(
                "{} connection(s) never accepted",
                self.backlog.len()
            ));
        }
        self.console_quiescent(&mut pending);
        if pending.is_empty() {
            Ok(())
        } else {
            Err(self.fail(Failure::liveness("not-quiescent", pending.join("\n  "))))
        }
    }

    /// After shutdown: every descriptor ever opened is closed, and the driver holds none.
    pub(super) fn check_all_closed(&mut self) -> Result<(), Failure> {
        let open = self.ledger.open_list();
        if !open.is_empty() || self.driver.fds_held() > 0 {
            return Err(self.fail(Failure::correctness(
                "fd-leak",
                format!(
                    "after shutdown: descriptors still open {open:?}, driver holds {}",
                    self.driver.fds_held()
                ),
            )));
        }
        for (s, sock) in self.socks.iter().enumerate() {
            if sock.conn.is_some() && !sock.closed {
                return Err(self.fail(Failure::correctness(
                    "conn-leak",
                    format!("socket {s} accepted and never closed"),
                )));
            }
        }
        Ok(())
    }
}
