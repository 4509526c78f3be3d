//! The simulated socket layer under the driver world: descriptors with kernel-like numbering
//! and a ledger that proves each is closed exactly once, and the server end of a stream
//! connection with the faults a real one shows.
//!
//! A [`SimSocket`] holds what the client sent and the server has not read (with the descriptors
//! passed along, at their byte positions), the client's FIN or RST behind it, and what the
//! server wrote and the client has not read (bounded by the client's receive window). Its
//! reads and writes return what `recvmsg`/`sendmsg` on a non-blocking socket return: short
//! reads, data now and EOF in the next read, EOF alone, a reset (unread data discarded),
//! would-block, EINTR, descriptors cut by the kernel (MSG_CTRUNC), partial and refused writes,
//! EPIPE after the client left. Every random choice comes from the caller's seeded generator.
//!
//! Readiness is edge-triggered, as with epoll's EPOLLET: an arrival (bytes, FIN, RST) raises
//! one readable event unless one is already due, so bytes and the EOF behind them may come
//! with a single event. Nothing here decides anything about a connection's life; that is the
//! driver's job, checked by the driver world.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;

use qmp_driver::{Descriptor, WriteFact};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Lowest number the simulated kernel hands out (0–2 are the standard streams).
pub const FIRST_FD: u64 = 3;

/// A simulated descriptor. Not `Clone`: whoever holds it owns it, and only
/// [`FdLedger::close`] ends it.
#[derive(Debug, PartialEq, Eq)]
pub struct SimFd(u64);

impl Descriptor for SimFd {
    fn number(&self) -> u64 {
        self.0
    }
}

/// What a descriptor is, for failure reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// The listening socket.
    Listener,
    /// The server end of an accepted connection.
    Conn,
    /// A descriptor a client passed (SCM_RIGHTS).
    Passed,
}

/// Every simulated descriptor open now, numbered as a kernel does (the lowest free number, so
/// numbers are reused once closed).
#[derive(Debug, Default)]
pub struct FdLedger {
    open: BTreeMap<u64, FdKind>,
    opened: u64,
    closed: u64,
}

impl FdLedger {
    /// Open a descriptor of `kind`.
    pub fn open(&mut self, kind: FdKind) -> SimFd {
        let mut n = FIRST_FD;
        for &k in self.open.keys() {
            if k != n {
                break;
            }
            n += 1;
        }
        self.open.insert(n, kind);
        self.opened += 1;
        SimFd(n)
    }

    /// Close `fd`. An error names a descriptor that is not open (a forged or reused value).
    pub fn close(&mut self, fd: SimFd) -> Result<FdKind, String> {
        match self.open.remove(&fd.0) {
            Some(kind) => {
                self.closed += 1;
                Ok(kind)
            }
            None => Err(format!("descriptor {} closed but not open", fd.0)),
        }
    }

    /// Open descriptors of `kind`.
    pub fn open_count(&self, kind: FdKind) -> usize {
        self.open.values().filter(|k| **k == kind).count()
    }

    /// The open descriptors, for a failure report.
    pub fn open_list(&self) -> Vec<(u64, FdKind)> {
        self.open.iter().map(|(n, k)| (*n, *k)).collect()
    }

    /// Descriptors opened and closed so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.opened, self.closed)
    }
}

/// A socket's fault rates (all zero in the liveness phase).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SocketFaults {
    /// Largest number of bytes one read returns (segment boundaries).
    pub max_read: usize,
    /// Chance a read or write is interrupted (EINTR).
    pub p_eintr: f64,
    /// Writes may be short.
    pub short_writes: bool,
    /// Chance a write is refused although the window has room (EAGAIN).
    pub p_write_block: f64,
    /// Chance a read carrying descriptors loses some to MSG_CTRUNC.
    pub p_ctrunc: f64,
    /// Chance a write after the client left still succeeds (the RST has not come back yet).
    pub p_write_into_void: f64,
}

/// What one read came to, owning its bytes and descriptors (see [`qmp_driver::ReadFact`]).
#[derive(Debug)]
pub enum ReadOutcome {
    /// Bytes, descriptors kept, and whether the kernel cut some (those are in `cut`).
    Data {
        /// The bytes.
        bytes: Vec<u8>,
        /// Descriptors delivered.
        fds: Vec<SimFd>,
        /// Descriptors the kernel closed (MSG_CTRUNC).
        cut: Vec<SimFd>,
        /// Whether the descriptors came with a client's `getfd` (its reply depends on them).
        needed: bool,
    },
    /// End of stream.
    Eof,
    /// EAGAIN.
    WouldBlock,
    /// EINTR.
    Interrupted,
    /// A failure; the unread bytes' descriptors were closed by the kernel (`discarded`).
    Failed(ErrorKind, Vec<SimFd>),
}

/// Descriptors passed at one byte position of the client's stream.
#[derive(Debug)]
struct Mark {
    at: u64,
    fds: Vec<SimFd>,
    /// The client's `getfd` needs them (a cut changes its reply).
    needed: bool,
}

/// The server end of one connection, with the client's side of the stream.
#[derive(Debug, Default)]
pub struct SimSocket {
    inbound: VecDeque<u8>,
    marks: VecDeque<Mark>,
    read_pos: u64,
    /// The client shut down its sending side (FIN behind the inbound bytes).
    pub fin: bool,
    /// The client reset the connection (RST: unread bytes are discarded).
    pub rst: bool,
    outbound: VecDeque<u8>,
    /// The client's receive window.
    pub window: usize,
    /// The last write said would-block and no writable event was raised since.
    pub write_blocked: bool,
    /// A readable event is due.
    pub read_event_due: bool,
    /// A writable event is due.
    pub write_event_due: bool,
}

impl SimSocket {
    /// A connection whose client reads into a window of `window` bytes.
    pub fn new(window: usize) -> Self {
        SimSocket {
            window: window.max(1),
            ..SimSocket::default()
        }
    }

    /// The client sent `bytes`, with `fds` passed alongside the first of them. True when a
    /// readable event must be raised (none was due).
    pub fn client_send(&mut self, bytes: &[u8], fds: Vec<SimFd>, needed: bool) -> bool {
        if self.fin || self.rst {
            return false;
        }
        let at = self.read_pos + self.inbound.len() as u64;
        if !fds.is_empty() {
            self.marks.push_back(Mark { at, fds, needed });
        }
        self.inbound.extend(bytes);
        self.arrival()
    }

    /// The client closed its end: FIN, or RST when `reset` (or when it left output unread, as
    /// Linux does). True when a readable event must be raised.
    pub fn client_close(&mut self, reset: bool) -> bool {
        if self.fin || self.rst {
            return false;
        }
        if reset || !self.outbound.is_empty() {
            self.rst = true;
        } else {
            self.fin = true;
        }
        self.arrival()
    }

    fn arrival(&mut self) -> bool {
        !std::mem::replace(&mut self.read_event_due, true)
    }

    /// The client is gone (FIN or RST sent).
    pub fn client_gone(&self) -> bool {
        self.fin || self.rst
    }

    /// Something a read would report now (bytes, EOF or a reset).
    pub fn has_news(&self) -> bool {
        !self.inbound.is_empty() || self.fin || self.rst
    }

    /// Bytes the server has not read.
    pub fn unread(&self) -> usize {
        self.inbound.len()
    }

    /// Descriptors still in the stream, not yet read.
    pub fn fds_in_flight(&self) -> usize {
        self.marks.iter().map(|m| m.fds.len()).sum()
    }

    /// One non-blocking read into a buffer of `capacity` bytes.
    pub fn read(
        &mut self,
        rng: &mut ChaCha8Rng,
        faults: &SocketFaults,
        capacity: usize,
    ) -> ReadOutcome {
        if self.rst {
            self.inbound.clear();
            let discarded = self.marks.drain(..).flat_map(|m| m.fds).collect();
            // After the reset is reported once, reads see end of stream.
            self.rst = false;
            self.fin = true;
            return ReadOutcome::Failed(ErrorKind::ConnectionReset, discarded);
        }
        if faults.p_eintr > 0.0 && rng.random_bool(faults.p_eintr) {
            return ReadOutcome::Interrupted;
        }
        if self.inbound.is_empty() {
            return if self.fin {
                ReadOutcome::Eof
            } else {
                ReadOutcome::WouldBlock
            };
        }
        let mut n = rng
            .random_range(1..=faults.max_read.max(1))
            .min(capacity)
            .min(self.inbound.len());
        // A read stops before descriptors passed with later bytes (they come with the first
        // byte of their own write), and takes those passed with its first byte.
        let mut fds = Vec::new();
        let mut needed = false;
        if let Some(m) = self.marks.front() {
            if m.at == self.read_pos {
                if let Some(m) = self.marks.pop_front() {
                    fds = m.fds;
                    needed = m.needed;
                }
            }
        }
        if let Some(m) = self.marks.front() {
            n = n.min((m.at - self.read_pos) as usize);
        }
        let bytes: Vec<u8> = self.inbound.drain(..n).collect();
        self.read_pos += n as u64;
        let mut cut = Vec::new();
        if !fds.is_empty() && faults.p_ctrunc > 0.0 && rng.random_bool(faults.p_ctrunc) {
            let keep = rng.random_range(0..fds.len());
            cut = fds.split_off(keep);
        }
        ReadOutcome::Data {
            bytes,
            fds,
            cut,
            needed,
        }
    }

    /// One non-blocking write of (a prefix of) `pending`. The flag is true when a writable
    /// event must be raised (a refusal although the window had room: the room is reported
    /// at once, as the kernel would once its transient shortage ends).
    pub fn write(
        &mut self,
        rng: &mut ChaCha8Rng,
        faults: &SocketFaults,
        pending: &[u8],
    ) -> (WriteFact, bool) {
        if self.client_gone() {
            if faults.p_write_into_void > 0.0 && rng.random_bool(faults.p_write_into_void) {
                return (WriteFact::Wrote(pending.len()), false);
            }
            return (WriteFact::Failed(ErrorKind::BrokenPipe), false);
        }
        if faults.p_eintr > 0.0 && rng.random_bool(faults.p_eintr) {
            return (WriteFact::Interrupted, false);
        }
        let room = self.window.saturating_sub(self.outbound.len());
        let refused = faults.p_write_block > 0.0 && rng.random_bool(faults.p_write_block);
        if room == 0 || refused || pending.is_empty() {
            if room > 0 && !self.write_event_due {
                self.write_event_due = true;
                return (WriteFact::WouldBlock, true);
            }
            self.write_blocked = true;
            return (WriteFact::WouldBlock, false);
        }
        let most = room.min(pending.len());
        let n = if faults.short_writes {
            rng.random_range(1..=most)
        } else {
            most
        };
        self.outbound.extend(&pending[..n]);
        (WriteFact::Wrote(n), false)
    }

    /// Bytes written to the client and not read by it.
    pub fn client_unread(&self) -> usize {
        self.outbound.len()
    }

    /// The client reads up to `max` bytes. The flag is true when a writable event must be
    /// raised (the server was refused and room appeared).
    pub fn client_recv(&mut self, max: usize) -> (Vec<u8>, bool) {
        let n = max.min(self.outbound.len());
        let bytes: Vec<u8> = self.outbound.drain(..n).collect();
        let wake = n > 0 && self.write_blocked && !self.write_event_due;
        if wake {
            self.write_blocked = false;
            self.write_event_due = true;
        }
        (bytes, wake)
    }

    /// Everything still in the socket, for closing it: the descriptors no one will read.
    pub fn discard(&mut self) -> Vec<SimFd> {
        self.inbound.clear();
        self.outbound.clear();
        self.marks.drain(..).flat_map(|m| m.fds).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn faults() -> SocketFaults {
        SocketFaults {
            max_read: 4096,
            ..SocketFaults::default()
        }
    }

    #[test]
    fn ledger_reuses_the_lowest_number_and_refuses_a_second_close() {
        let mut l = FdLedger::default();
        let a = l.open(FdKind::Conn);
        let b = l.open(FdKind::Passed);
        assert_eq!((a.number(), b.number()), (3, 4));
        assert_eq!(l.close(a), Ok(FdKind::Conn));
        let c = l.open(FdKind::Passed);
        assert_eq!(c.number(), 3);
        assert!(l.close(SimFd(9)).is_err());
        assert_eq!(l.open_count(FdKind::Passed), 2);
    }

    #[test]
    fn data_then_eof_come_with_one_event_and_two_reads() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut s = SimSocket::new(100);
        assert!(s.client_send(b"abc", Vec::new(), false));
        assert!(
            !s.client_close(false),
            "the event for the bytes is still due"
        );
        match s.read(&mut rng, &faults(), 4096) {
            ReadOutcome::Data { bytes, .. } => assert_eq!(bytes, b"abc"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.read(&mut rng, &faults(), 4096),
            ReadOutcome::Eof
        ));
    }

    #[test]
    fn a_reset_discards_unread_bytes_and_their_descriptors() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut l = FdLedger::default();
        let mut s = SimSocket::new(100);
        let _ = s.client_send(b"x", vec![l.open(FdKind::Passed)], true);
        let _ = s.client_close(true);
        match s.read(&mut rng, &faults(), 4096) {
            ReadOutcome::Failed(ErrorKind::ConnectionReset, fds) => assert_eq!(fds.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.read(&mut rng, &faults(), 4096),
            ReadOutcome::Eof
        ));
    }

    #[test]
    fn descriptors_come_with_the_first_byte_of_their_write() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut l = FdLedger::default();
        let mut s = SimSocket::new(100);
        let _ = s.client_send(b"ab", Vec::new(), false);
        let _ = s.client_send(b"cd", vec![l.open(FdKind::Passed)], true);
        match s.read(&mut rng, &faults(), 4096) {
            ReadOutcome::Data { bytes, fds, .. } => assert_eq!((bytes.len(), fds.len()), (2, 0)),
            other => panic!("{other:?}"),
        }
        match s.read(&mut rng, &faults(), 4096) {
            ReadOutcome::Data { bytes, fds, .. } => assert_eq!((bytes.len(), fds.len()), (2, 1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_window_refuses_and_the_clients_read_raises_writable() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut s = SimSocket::new(4);
        assert_eq!(
            s.write(&mut rng, &faults(), b"abcdef").0,
            WriteFact::Wrote(4)
        );
        assert_eq!(s.write(&mut rng, &faults(), b"ef").0, WriteFact::WouldBlock);
        let (got, wake) = s.client_recv(10);
        assert_eq!((got.as_slice(), wake), (&b"abcd"[..], true));
        let _ = s.client_close(false);
        assert_eq!(
            s.write(&mut rng, &faults(), b"ef").0,
            WriteFact::Failed(ErrorKind::BrokenPipe)
        );
    }
}
