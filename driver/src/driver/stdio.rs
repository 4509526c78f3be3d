//! The stdio monitor: a human monitor on the process's standard input and output (QEMU's
//! `-monitor stdio`), and the rules of a connection whose input and output are separate
//! streams that end separately.
//!
//! QEMU 7.2's stdio chardev (`char-stdio.c`, `char-fd.c`) is not a socket client: it exists
//! from startup, nothing accepts it, nothing can yank it, and there is one standard input, so
//! at most one. Its two sides live apart:
//!
//! * **EOF on the input** ends the input only (`fd_chr_read` removes its watch and sends
//!   `CHR_EVENT_CLOSED`): the monitor stays, the commands read before the EOF run and their
//!   output is written, and the process goes on (`echo 'info status' | qemu -monitor stdio`
//!   prints the answer and keeps running). The driver marks the input closed and never reads
//!   it again; the connection stays open for its output.
//! * **A read error** ends the input too. (QEMU ignores it and polls again, which spins on an
//!   error that persists, such as EIO from a terminal whose session is gone; the driver does
//!   not copy that.)
//! * **A write error** (EPIPE: the reader of standard output left) drops the pending output
//!   and keeps the monitor, as QEMU's `monitor_flush_locked` truncates its buffer on an error:
//!   commands still read from the input run, their output is dropped too. Logged once.
//! * The output budget, the core's limits and shutdown close it like any connection.
//!
//! Invariant: the stdio monitor's number is the one after every listener slot's, its
//! connection has no listener, and it is counted with the open connections (so it takes one
//! of `max_connections`).

use qmp_core::server::{HmpOptions, Input, Instant, MonitorId};

use super::Driver;
use crate::conn::{Conn, ConnId};
use crate::fds::Descriptor;

/// The listener index of a connection no listener accepted (the stdio monitor).
const NO_LISTENER: usize = usize::MAX;

impl<F: Descriptor> Driver<F> {
    /// Open the human monitor on standard input and output (QEMU's `-monitor stdio`): its
    /// connection is open at once, with the banner and prompt queued. The adapter reads its
    /// input from the standard input and writes its output to the standard output, and reports
    /// the facts of each side as for any connection; EOF and errors are taken as the module
    /// docs say. `None` when it was opened already (QEMU: "cannot use stdio by multiple
    /// character devices") or shutdown was requested.
    pub fn open_stdio_monitor(&mut self, now: Instant) -> Option<ConnId> {
        if self.stdio_opened || !self.running() {
            return None;
        }
        self.stdio_opened = true;
        let monitor = MonitorId(self.attached.len() as u64);
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.attached.push(Some(conn));
        let now = self.clamp(now);
        let mut c = Conn::new(monitor, NO_LISTENER, now);
        c.split = true;
        self.conns.insert(conn, c);
        tracing::info!(
            conn = conn.0,
            monitor = monitor.0,
            "human monitor on standard input/output"
        );
        self.apply(
            now,
            Input::OpenHmp {
                monitor,
                options: HmpOptions::default(),
            },
        );
        Some(conn)
    }

    /// The input of split connection `conn` ended (EOF, or the read error `error`): it is never
    /// read again; its output goes on.
    pub(super) fn split_input_ended(&mut self, conn: ConnId, error: Option<std::io::ErrorKind>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.input_closed = true;
        c.readable = false;
        match error {
            None => tracing::info!(
                conn = conn.0,
                "standard input closed: the monitor stays, its output is still written"
            ),
            Some(kind) => tracing::warn!(
                conn = conn.0,
                error = ?kind,
                "reading standard input failed: the monitor reads no more"
            ),
        }
    }

    /// A write of split connection `conn` failed: its pending output is dropped (the core is
    /// told it was written), the monitor stays.
    pub(super) fn split_output_failed(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: std::io::ErrorKind,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let monitor = c.monitor;
        if !std::mem::replace(&mut c.output_failed, true) {
            tracing::warn!(
                conn = conn.0,
                error = ?kind,
                "writing standard output failed: the monitor's output is dropped from now on"
            );
        }
        let n = self.server.pending_output(monitor).len();
        if n > 0 {
            self.apply(now, Input::Written { monitor, n });
        }
        self.refresh_held(conn);
        self.transmit.remove(&conn);
    }
}
