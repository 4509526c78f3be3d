//! Target `driver_facts`: the connection driver (`qmp-driver`) fed arbitrary socket facts by an
//! adapter that keeps the driver's contract, with its lifecycle invariants checked after every
//! fact.
//!
//! Input format: one header byte, then operations of one byte each (with their operands).
//! * header bits 0–1: the listener's slots minus one (1–4 clients at once); bit 2: OOB-capable
//!   monitors; bit 3: a tiny fd table (2 in all, 1 per client) so refusals happen; bit 4: a
//!   tiny output budget (1 KiB) so budget cuts happen.
//! * each operation: `op % 12` picks the fact, the next bytes pick the connection (among the
//!   open ones, in order) and the operands. Facts the contract forbids (reading a connection
//!   the driver does not want read, writing one with nothing pending) are skipped.
//!
//! Properties (a violation panics):
//! 1. Every descriptor handed to the driver comes back exactly once as `CloseFd` (never a
//!    number it was not given, never twice), and after shutdown none is held.
//! 2. Every accepted connection is closed exactly once (`CloseConn`), facts about closed ones
//!    are ignored, and the driver's open connections are exactly those not closed.
//! 3. A peer's EOF or a read error closes its connection at once (the lost-close class).
//! 4. The driver never reports core misuse (the contract was kept), holds no more output than
//!    its budget, and a one-client listener accepts again once its client is gone.

use std::collections::BTreeSet;
use std::io::ErrorKind;

use qmp_core::server::{
    CallResult, CommandSpec, Config, Instant, MonitorOptions, Server, Timestamp,
};
use qmp_driver::{
    AcceptFact, Action, Descriptor, Driver, FdLimits, Limits, ListenerConfig, ReadFact,
    ShutdownCause, WriteFact,
};

use crate::cursor::Cursor;

/// Most operations one input applies.
pub const MAX_OPS: usize = 512;

/// Canned requests a read may carry (besides raw fuzzer bytes).
const CANNED: [&[u8]; 6] = [
    b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n",
    b"{\"execute\": \"qmp_capabilities\"}\n",
    b"{\"execute\": \"slow\", \"id\": 1}\n",
    b"{\"exec-oob\": \"slow\", \"id\": 2}\n",
    b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f\"}}\n",
    b"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"f\"}}\n",
];

/// A descriptor of the fuzzed adapter: its number, never reused.
#[derive(Debug)]
struct Fd(u64);

impl Descriptor for Fd {
    fn number(&self) -> u64 {
        self.0
    }
}

/// The adapter's bookkeeping.
struct Adapter {
    d: Driver<Fd>,
    now: u64,
    next_fd: u64,
    /// Descriptors handed to the driver and not returned yet.
    fds_out: BTreeSet<u64>,
    open: Vec<qmp_driver::ConnId>,
    closed: BTreeSet<qmp_driver::ConnId>,
    inband: Option<qmp_core::server::CallId>,
}

impl Adapter {
    fn t(&self) -> Instant {
        Instant(self.now)
    }

    /// Run out-of-band calls and carry out every action, checking them.
    fn settle(&mut self) {
        loop {
            if let Some(call) = self.d.take_oob_call() {
                let now = self.t();
                self.d.complete(now, call.call.id, ok());
                continue;
            }
            match self.d.poll_action() {
                Some(Action::CloseFd(fd)) => {
                    assert!(
                        self.fds_out.remove(&fd.0),
                        "fd {} closed twice or never given",
                        fd.0
                    );
                }
                Some(Action::CloseConn { conn, .. }) => {
                    assert!(
                        self.open.contains(&conn),
                        "CloseConn for {conn:?}, not open"
                    );
                    assert!(self.closed.insert(conn), "{conn:?} closed twice");
                    self.open.retain(|c| *c != conn);
                }
                None => break,
            }
        }
        let open: Vec<_> = self.d.connections().collect();
        assert_eq!(open, self.open, "the driver's open connections");
        assert_eq!(
            self.d.stats().misuse,
            0,
            "the core saw misuse from the driver"
        );
    }

    fn fds(&mut self, n: u8) -> Vec<Fd> {
        (0..n % 4)
            .map(|_| {
                self.next_fd += 1;
                self.fds_out.insert(self.next_fd);
                Fd(self.next_fd)
            })
            .collect()
    }
}

fn ok() -> CallResult {
    CallResult::Return(qmp_core::json::Value::Object(qmp_core::json::Object::new()))
}

/// Run the target on `data`.
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let h = c.u8();
    let slots = usize::from(h & 3) + 1;
    let mut server = Server::new(Config::default());
    let mut spec = CommandSpec::new("slow");
    spec.allow_oob = true;
    let _ = server.register(spec);
    let mut limits = Limits::default();
    if h & 8 != 0 {
        limits.fds = FdLimits {
            total: 2,
            per_monitor: 1,
        };
    }
    if h & 16 != 0 {
        limits.output_budget = 1024;
    }
    let listener = ListenerConfig {
        chardev: "mon0".into(),
        clients: slots,
        options: MonitorOptions {
            oob_capable: h & 4 != 0,
            pretty: false,
        },
        readline: false,
    };
    let budget = limits.output_budget;
    let mut a = Adapter {
        d: Driver::new(server, vec![listener], limits),
        now: 0,
        next_fd: 100,
        fds_out: BTreeSet::new(),
        open: Vec::new(),
        closed: BTreeSet::new(),
        inband: None,
    };
    for _ in 0..MAX_OPS {
        if c.is_empty() {
            break;
        }
        let op = c.u8() % 12;
        let pick = c.u8();
        let conn = (!a.open.is_empty()).then(|| a.open[usize::from(pick) % a.open.len()]);
        a.now += 1_000;
        let now = a.t();
        match op {
            0 => {
                if a.d.should_accept(0, now) {
                    match pick % 4 {
                        0 => a.d.handle_accept_failed(now, 0, AcceptFact::WouldBlock),
                        1 => a.d.handle_accept_failed(now, 0, AcceptFact::OutOfResources),
                        2 => a.d.handle_accept_failed(now, 0, AcceptFact::Retry),
                        _ => {
                            let conn = a.d.handle_accepted(now, 0);
                            let conn = conn.expect("accepted while should_accept");
                            a.open.push(conn);
                        }
                    }
                } else if a.open.len() < slots && a.d.running() {
                    // A free slot and no back-off pending: the listener must be ready again
                    // once told a client waits.
                    a.d.handle_listener_ready(0);
                }
            }
            1..=3 => {
                let Some(conn) = conn else { continue };
                if !a.d.should_read(conn) {
                    continue;
                }
                let len = usize::from(c.u8());
                let canned = c.u8();
                let bytes: Vec<u8> = if op == 1 {
                    c.bytes(len).to_vec()
                } else {
                    CANNED[usize::from(canned) % CANNED.len()].to_vec()
                };
                if bytes.is_empty() {
                    continue;
                }
                let fds = a.fds(canned >> 4);
                let cut = canned & 0x80 != 0;
                let capacity = if canned & 0x40 != 0 {
                    bytes.len()
                } else {
                    4096
                };
                a.d.handle_read(
                    now,
                    conn,
                    ReadFact::Data {
                        bytes: &bytes,
                        fds,
                        fds_cut: cut,
                        capacity,
                    },
                );
            }
            4 => {
                let Some(conn) = conn else { continue };
                if !a.d.should_read(conn) {
                    continue;
                }
                let fact = match pick % 4 {
                    0 => ReadFact::Eof,
                    1 => ReadFact::Failed(ErrorKind::ConnectionReset),
                    2 => ReadFact::WouldBlock,
                    _ => ReadFact::Interrupted,
                };
                let closing = matches!(fact, ReadFact::Eof | ReadFact::Failed(_));
                a.d.handle_read(now, conn, fact);
                if closing {
                    assert!(!a.d.is_open(conn), "EOF or a read error left {conn:?} open");
                }
            }
            5 => {
                let Some(conn) = a.d.next_transmit() else {
                    continue;
                };
                let pending = a.d.pending_output(conn).len();
                assert!(pending > 0, "transmit for {conn:?} with nothing pending");
                let n = usize::from(c.u16()) % (pending + 1);
                let fact = match pick % 5 {
                    0 => WriteFact::WouldBlock,
                    1 => WriteFact::Interrupted,
                    2 => WriteFact::Failed(ErrorKind::BrokenPipe),
                    3 => WriteFact::Wrote(pending),
                    _ => WriteFact::Wrote(n.max(1)),
                };
                a.d.handle_written(now, conn, fact);
                if matches!(fact, WriteFact::Interrupted) {
                    assert!(a.d.wants_transmit(conn), "EINTR dropped {conn:?}'s output");
                }
            }
            6 => {
                if let Some(conn) = conn {
                    if pick & 1 == 0 {
                        a.d.handle_readable(conn);
                    } else {
                        a.d.handle_writable(conn);
                    }
                }
            }
            7 => {
                if a.inband.is_none() {
                    if let Some(call) = a.d.next_in_band(now) {
                        a.inband = Some(call.call.id);
                    }
                }
            }
            8 => {
                if let Some(id) = a.inband.take() {
                    a.d.complete(now, id, ok());
                }
            }
            9 => {
                a.now += u64::from(c.u16()) * 100_000;
                let now = a.t();
                a.d.handle_timeout(now);
            }
            10 => {
                // A fact about a connection closed already: ignored, its descriptors closed.
                let Some(&gone) = a
                    .closed
                    .iter()
                    .nth(usize::from(pick) % a.closed.len().max(1))
                else {
                    continue;
                };
                let fds = a.fds(pick >> 4);
                a.d.handle_read(
                    now,
                    gone,
                    ReadFact::Data {
                        bytes: b"{}",
                        fds,
                        fds_cut: false,
                        capacity: 4096,
                    },
                );
            }
            _ => {
                let ts = Timestamp {
                    seconds: 1_800_000_000,
                    microseconds: 0,
                };
                a.d.request_shutdown(now, ShutdownCause::Signal, ts);
            }
        }
        a.settle();
        assert!(a.d.output_held() <= budget, "output budget exceeded");
    }
    // Shutdown: every connection and descriptor comes back.
    let now = a.t();
    if let Some(id) = a.inband.take() {
        a.d.complete(now, id, ok());
    }
    a.d.request_shutdown(
        now,
        ShutdownCause::Request,
        Timestamp {
            seconds: 1_800_000_000,
            microseconds: 0,
        },
    );
    a.d.finish(now);
    a.settle();
    assert!(a.open.is_empty(), "connections left open after finish");
    assert!(
        a.fds_out.is_empty(),
        "descriptors never returned: {:?}",
        a.fds_out
    );
    assert_eq!(a.d.fds_held(), 0);
}

#[cfg(test)]
mod tests {
    use super::run;

    #[test]
    fn handwritten_inputs_pass() {
        // Accept, negotiate, send a request with fds, EOF; then the next client.
        run(&[0, 0, 3, 2, 0, 1, 0, 2, 0, 4, 0x30, 5, 3, 4, 0, 0, 0, 3]);
        // Tiny fd table, descriptors with every read, a reset, shutdown by signal.
        run(&[8, 0, 3, 0, 0, 0x34, 3, 0, 0, 0x34, 4, 1, 11, 0]);
        // Tiny budget, output never written.
        run(&[16, 0, 3, 2, 0, 3, 0, 2, 0, 3, 7, 0, 8, 0]);
    }
}
