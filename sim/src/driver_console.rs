//! The stdio monitor in driver worlds ([`qmp_driver::Driver::open_stdio_monitor`], QEMU's
//! `-monitor stdio`): a human monitor next to the listener's QMP clients whose input is typed
//! in chunks at random times and then ends (EOF, or a read error), and whose output may start
//! failing (EPIPE: the reader of standard output left).
//!
//! The world plays its adapter as for any connection (short reads, EINTR, would-block until the
//! next chunk's readiness event, partial writes), with its own random stream, so worlds without
//! it draw exactly as before. Its oracles:
//!
//! * the end of its input never closes it, nor does a failed write: only shutdown and the
//!   output budget may (`stdio-closed`);
//! * once its input ended the driver never reads it again (`stdio-read-after-end`);
//! * a failed write drops the pending output and leaves the monitor open (`stdio-output-kept`);
//! * at quiescence the end was read, and, unless its output failed or the budget cut it, every
//!   line typed before the end was answered, in order (`stdio-unanswered`).
//!
//! The lines are commands the core answers itself (`unknown command: 'xN'`), so the world's
//! in-band lane model is not involved; they still take their turns on the in-band lane.

use qmp_driver::{CloseReason, ConnId, ReadFact, WriteFact};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DriverWorld, Todo};
use crate::failure::Failure;

/// Lines typed at most.
const MAX_LINES: u32 = 12;
/// Latest time a chunk of input arrives (well inside the safety phase's first moments).
const ARRIVAL_SPAN_NS: u64 = 50_000_000;

/// What happens to the stdio monitor's input at an agenda entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum ConsoleEvent {
    /// A chunk of input arrives, with its readiness event.
    Chunk,
    /// The last chunk arrives with the input's end.
    Last,
    /// A readiness event with nothing new (as the std adapter reports standard output's error
    /// events, or a hang-up after the end): the driver must not read an ended input again.
    Spurious,
}

/// The stdio monitor as the world sees it.
#[derive(Debug)]
pub(super) struct Console {
    rng: ChaCha8Rng,
    pub(super) conn: ConnId,
    /// Every byte that will be typed, and the line names in order.
    script: Vec<u8>,
    lines: Vec<String>,
    /// Bytes typed so far (arrived), and read by the driver.
    arrived: usize,
    read: usize,
    /// The input ends with a read error rather than EOF.
    ends_in_error: bool,
    /// The end is queued behind the typed bytes (every chunk arrived).
    end_queued: bool,
    /// The end was reported to the driver.
    pub(super) ended: bool,
    /// Standard output fails from this many bytes written on.
    epipe_after: Option<usize>,
    pub(super) output_failed: bool,
    /// What standard output received.
    pub(super) out: Vec<u8>,
    /// Why the driver closed it.
    pub(super) closed: Option<CloseReason>,
}

impl Console {
    /// A console for the world of `seed`, or `None` (most worlds have none).
    pub(super) fn for_seed(seed: u64) -> Option<Console> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7374_6469_6f5f_6d6f);
        if !rng.random_bool(0.4) {
            return None;
        }
        let n = rng.random_range(0..=MAX_LINES);
        let lines: Vec<String> = (0..n).map(|i| format!("x{i}")).collect();
        let mut script = Vec::new();
        for l in &lines {
            script.extend_from_slice(l.as_bytes());
            script.push(if rng.random_bool(0.2) { b'\r' } else { b'\n' });
        }
        Some(Console {
            ends_in_error: rng.random_bool(0.25),
            epipe_after: rng.random_bool(0.25).then(|| rng.random_range(0..400)),
            rng,
            conn: ConnId(u64::MAX),
            script,
            lines,
            arrived: 0,
            read: 0,
            end_queued: false,
            ended: false,
            output_failed: false,
            out: Vec::new(),
            closed: None,
        })
    }

    /// What happens to the input and when: chunks (the last one brings the end) and
    /// spurious readiness events, some after the end.
    pub(super) fn schedule(&mut self) -> Vec<(u64, ConsoleEvent)> {
        let chunks = self.rng.random_range(1..=4);
        let mut at: Vec<u64> = (0..chunks)
            .map(|_| self.rng.random_range(0..ARRIVAL_SPAN_NS))
            .collect();
        at.sort_unstable();
        let last = at.len() - 1;
        let mut events: Vec<(u64, ConsoleEvent)> = at
            .into_iter()
            .enumerate()
            .map(|(k, t)| {
                let ev = if k == last {
                    ConsoleEvent::Last
                } else {
                    ConsoleEvent::Chunk
                };
                (t, ev)
            })
            .collect();
        for _ in 0..self.rng.random_range(0..=3) {
            let t = self.rng.random_range(0..2 * ARRIVAL_SPAN_NS);
            events.push((t, ConsoleEvent::Spurious));
        }
        events
    }

    /// Answers the output holds (`unknown command: 'xN'`), in order.
    fn answered(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.out);
        text.split("unknown command: '")
            .skip(1)
            .filter_map(|rest| rest.split_once('\'').map(|(name, _)| name.to_owned()))
            .collect()
    }
}

impl DriverWorld {
    /// Open the stdio monitor (at the start) and schedule its input.
    pub(super) fn console_open(&mut self) -> Result<(), Failure> {
        let Some(c) = self.console.as_mut() else {
            return Ok(());
        };
        let events = c.schedule();
        let Some(conn) = self.driver.open_stdio_monitor(self.t()) else {
            return Err(self.fail(Failure::correctness(
                "stdio-refused",
                "the driver refused the stdio monitor at the start",
            )));
        };
        if let Some(c) = self.console.as_mut() {
            c.conn = conn;
        }
        for (at, ev) in events {
            self.schedule(at, Todo::Console(ev));
        }
        Ok(())
    }

    /// Whether `conn` is the stdio monitor's connection.
    pub(super) fn is_console(&self, conn: ConnId) -> bool {
        self.console.as_ref().is_some_and(|c| c.conn == conn)
    }

    /// A chunk of input arrives (with the end when it is the last), or only a readiness event.
    pub(super) fn console_event(&mut self, ev: ConsoleEvent) {
        let Some(c) = self.console.as_mut() else {
            return;
        };
        if ev == ConsoleEvent::Spurious {
            let (ended, conn) = (c.ended, c.conn);
            if ended {
                self.mark("stdio readiness after its end");
            }
            self.driver.handle_readable(conn);
            return;
        }
        let last = ev == ConsoleEvent::Last;
        let left = c.script.len() - c.arrived;
        let n = if last {
            left
        } else {
            c.rng.random_range(0..=left)
        };
        c.arrived += n;
        c.end_queued |= last;
        let conn = c.conn;
        self.driver.handle_readable(conn);
    }

    /// The driver reads the stdio monitor.
    pub(super) fn console_read(&mut self) -> Result<(), Failure> {
        let cap = self.opts.capacity;
        let now = self.t();
        let Some(c) = self.console.as_mut() else {
            return Ok(());
        };
        let conn = c.conn;
        if c.ended {
            return Err(self.fail(Failure::correctness(
                "stdio-read-after-end",
                "the driver read standard input again after its end",
            )));
        }
        if c.read < c.arrived {
            if c.rng.random_bool(0.1) {
                self.driver.handle_read(now, conn, ReadFact::Interrupted);
                return Ok(());
            }
            let max = c.rng.random_range(1..=cap);
            let n = (c.arrived - c.read).min(max);
            let bytes = c.script[c.read..c.read + n].to_vec();
            c.read += n;
            self.driver.handle_read(
                now,
                conn,
                ReadFact::Data {
                    bytes: &bytes,
                    fds: Vec::new(),
                    fds_cut: false,
                    capacity: cap,
                },
            );
        } else if c.end_queued {
            c.ended = true;
            let (fact, mark) = if c.ends_in_error {
                (
                    ReadFact::Failed(std::io::ErrorKind::Other),
                    "stdio read error",
                )
            } else {
                (ReadFact::Eof, "stdio EOF")
            };
            let answered = c.answered().len();
            let typed = c.lines.len();
            self.mark(mark);
            if answered < typed {
                self.mark("stdio input ended with lines unanswered");
            }
            self.driver.handle_read(now, conn, fact);
        } else {
            self.driver.handle_read(now, conn, ReadFact::WouldBlock);
        }
        Ok(())
    }

    /// The driver writes the stdio monitor's output.
    pub(super) fn console_write(&mut self) -> Result<(), Failure> {
        let now = self.t();
        let Some(c) = self.console.as_mut() else {
            return Ok(());
        };
        let conn = c.conn;
        let pending = self.driver.pending_output(conn).to_vec();
        if c.output_failed || c.epipe_after.is_some_and(|n| c.out.len() >= n) {
            c.output_failed = true;
            self.mark("stdio write failed");
            self.driver.handle_written(
                now,
                conn,
                WriteFact::Failed(std::io::ErrorKind::BrokenPipe),
            );
            if !self.driver.is_open(conn) || !self.driver.pending_output(conn).is_empty() {
                return Err(self.fail(Failure::correctness(
                    "stdio-output-kept",
                    format!(
                        "after a failed write to standard output the monitor is {} with {} \
                         bytes pending (the output is dropped and the monitor stays)",
                        if self.driver.is_open(conn) {
                            "open"
                        } else {
                            "closed"
                        },
                        self.driver.pending_output(conn).len()
                    ),
                )));
            }
            return Ok(());
        }
        let n = c
            .rng
            .random_range(1..=pending.len().max(1))
            .min(pending.len());
        c.out.extend_from_slice(&pending[..n]);
        self.driver.handle_written(now, conn, WriteFact::Wrote(n));
        Ok(())
    }

    /// The driver closed the stdio monitor: only shutdown and the output budget may.
    pub(super) fn console_closed(&mut self, reason: CloseReason) -> Result<(), Failure> {
        let allowed = matches!(
            reason,
            CloseReason::Shutdown | CloseReason::OutputBudget { .. }
        );
        if let Some(c) = self.console.as_mut() {
            c.closed = Some(reason.clone());
        }
        if !allowed {
            return Err(self.fail(Failure::correctness(
                "stdio-closed",
                format!(
                    "the stdio monitor was closed ({}); its input's end or a failed write must \
                     leave it open",
                    reason.text()
                ),
            )));
        }
        Ok(())
    }

    /// The stdio monitor's connection, while open (for the world's connection accounting).
    pub(super) fn console_open_conns(&self) -> usize {
        self.console
            .as_ref()
            .filter(|c| c.closed.is_none() && self.driver.is_open(c.conn))
            .map_or(0, |_| 1)
    }

    /// At quiescence: the end was read and every line typed before it answered, in order
    /// (unless its output failed or the budget cut it).
    pub(super) fn console_quiescent(&self, pending: &mut Vec<String>) {
        let Some(c) = &self.console else {
            return;
        };
        if c.closed.is_some() {
            return;
        }
        if !c.ended {
            pending.push(format!(
                "stdio monitor: {} of {} bytes read, its input's end not read",
                c.read,
                c.script.len()
            ));
        }
        if !c.output_failed {
            let answered = c.answered();
            if answered != c.lines {
                pending.push(format!(
                    "stdio monitor: lines {:?} typed, answers for {answered:?} (stdio-unanswered)",
                    c.lines
                ));
            }
        }
    }
}
