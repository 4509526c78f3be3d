//! One connection as the driver sees it, and the socket facts an adapter reports about it.
//!
//! # The read lifecycle (the rule the lost-EOF bug broke)
//!
//! A connection is *readable* from its accept, and again after every readiness event
//! ([`crate::Driver::handle_readable`]); only a read that says **would-block** clears it. A short
//! read does not: the bytes may have come with the peer's EOF (or a reset) behind them, and an
//! edge-triggered poller raises no second event for what was already queued. So an adapter
//! reads while [`crate::Driver::should_read`] says so and reports every result, and the driver
//! sees the EOF in the next read. EINTR changes nothing (read again); EOF and errors close the
//! connection (after the bytes that came before them were applied).
//!
//! # Identity
//!
//! A [`ConnId`] names one connection and is never reused, unlike the monitor it is attached to
//! (successive connections of one listener slot share a monitor). Every fact names a `ConnId`,
//! so a late fact about a closed connection is ignored instead of reaching its successor.

use qmp_core::server::{Instant, MonitorId};

/// One connection, for its whole life; never reused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What one non-blocking read of a connection came to.
#[derive(Debug)]
pub enum ReadFact<'a, F> {
    /// `bytes` (never empty) were read, with the descriptors passed alongside.
    Data {
        /// The bytes read.
        bytes: &'a [u8],
        /// Descriptors received with them (SCM_RIGHTS).
        fds: Vec<F>,
        /// The kernel cut descriptors because the control buffer was too small (MSG_CTRUNC):
        /// the peer passed more than the adapter accepts in one read; those are closed.
        fds_cut: bool,
        /// The size of the buffer the read was given (a read that filled it may have left more;
        /// one that did not may still have left the EOF behind: see the module docs).
        capacity: usize,
    },
    /// End of stream: the peer closed (or shut down its sending side).
    Eof,
    /// Nothing to read now (EAGAIN): the connection waits for its next readiness event.
    WouldBlock,
    /// The read was interrupted by a signal (EINTR): read again.
    Interrupted,
    /// The read failed (a reset, for one): the connection is closed.
    Failed(std::io::ErrorKind),
}

/// What one non-blocking write of a connection's pending output came to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WriteFact {
    /// `n` bytes from the front of the pending output were written (`n` may be short).
    Wrote(usize),
    /// The socket is full (EAGAIN): wait for its writable event.
    WouldBlock,
    /// Interrupted by a signal (EINTR): write again.
    Interrupted,
    /// The write failed (EPIPE, a reset): the connection is closed.
    Failed(std::io::ErrorKind),
}

/// Why a connection was closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed the connection (EOF).
    PeerClosed,
    /// A read failed (`ConnectionReset` for a TCP reset).
    ReadFailed(std::io::ErrorKind),
    /// A write failed.
    WriteFailed(std::io::ErrorKind),
    /// The core gave up on the client (its output or input limit).
    Core(qmp_core::server::DisconnectReason),
    /// The process-wide output budget was exceeded and this client held the most output.
    OutputBudget {
        /// Bytes of output the client held.
        held: usize,
        /// The budget (every client together).
        budget: usize,
    },
    /// Its chardev was yanked.
    Yanked,
    /// The server is shutting down.
    Shutdown,
}

impl CloseReason {
    /// The short text of the connection summary line.
    pub fn text(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer closed",
            CloseReason::ReadFailed(std::io::ErrorKind::ConnectionReset) => "connection reset",
            CloseReason::ReadFailed(_) => "read error",
            CloseReason::WriteFailed(_) => "write error",
            CloseReason::Core(_) => "disconnected by the core",
            CloseReason::OutputBudget { .. } => "output budget exceeded",
            CloseReason::Yanked => "yanked",
            CloseReason::Shutdown => "server shutdown",
        }
    }
}

/// Counters of one connection, for its summary line and for tests.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Reads that brought bytes.
    pub reads: u64,
    /// Descriptors received and kept.
    pub fds_in: u64,
    /// Descriptors received and closed at once (table full, share used, cut by the kernel).
    pub fds_refused: u64,
    /// Handler calls made for it (built-ins answered by the core are not counted).
    pub calls: u64,
    /// Writes the socket took only part of.
    pub partial_writes: u64,
    /// Writes refused with EAGAIN.
    pub blocked_writes: u64,
}

/// A connection's state in the driver.
#[derive(Debug)]
pub(crate) struct Conn {
    pub monitor: MonitorId,
    pub listener: usize,
    /// Readable until a read says would-block (module docs).
    pub readable: bool,
    /// The last write was refused and no writable event came since.
    pub write_blocked: bool,
    /// Pending output as of the last look (for the output budget).
    pub out_held: usize,
    /// Its input and output are separate streams that end separately (the stdio monitor,
    /// [`crate::Driver::open_stdio_monitor`]): EOF on the input ends the input only.
    pub split: bool,
    /// The input ended (a split connection's EOF or read error): never read again.
    pub input_closed: bool,
    /// A write failed and its output was dropped (a split connection; logged once).
    pub output_failed: bool,
    pub opened: Instant,
    pub stats: ConnStats,
}

impl Conn {
    pub fn new(monitor: MonitorId, listener: usize, now: Instant) -> Self {
        Conn {
            monitor,
            listener,
            readable: true,
            write_blocked: false,
            out_held: 0,
            split: false,
            input_closed: false,
            output_failed: false,
            opened: now,
            stats: ConnStats::default(),
        }
    }
}
