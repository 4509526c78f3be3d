//! The write side of every connection, kept with the driver behind the one lock, and the one
//! routine that writes a connection's pending output ([`Writers::flush`]), reporting
//! each write to the driver as a [`WriteFact`].
//!
//! Whoever holds the lock may write: the IO thread (after reads, out-of-band replies, events,
//! writability), and the dispatcher at the end of a batch of in-band calls, as QEMU's
//! `monitor_flush_locked` writes a reply from the thread that produced it. That removes a
//! hand-off per batch (dispatcher → IO thread → socket). Every write happens under the lock, so
//! there is one writer at a time per socket, and `Written { n }` is reported in the same
//! critical section as the write of the core's pending bytes it counts (`WriteFact::Wrote`): bytes never interleave
//! and the core's output offset always matches the socket's. A failed write closes the connection
//! in the driver at once (its writer is removed in the same critical section).
//!
//! # Whole batches
//!
//! A pipelining client sends a batch of requests and answers the batch of replies with the next
//! batch. For that rhythm to hold, the replies of a *run* of in-band calls of one connection (see
//! `shared::InbandRun`) go out in one write at the end of the run, from the dispatcher; while the
//! run goes on, the IO thread leaves that connection's output alone
//! (`CoreState::write_left_to_dispatcher`) instead of writing part of the batch after reading
//! the client's next requests, which would split every later exchange in two. It does so
//! for a bounded time after the dispatcher took its call (an event waiting behind a handler
//! that blocks still goes out) and never for out-of-band replies. A run ends after
//! `RUN_WRITE_CALLS` calls, so a client that never stops sending still gets its replies.
//!
//! # The blocked flag
//!
//! A write the socket refuses (EAGAIN) leaves the rest to the IO thread, which waits for the
//! socket's writable edge (mio is edge-triggered). The writer's `blocked` flag says so, and the
//! IO thread reads it *without* the lock on every writable event (most are the client reading
//! our replies; taking the lock for each would slow the common case). For no edge to be lost,
//! the flag is set *before* every write attempt (and cleared after one that the socket took):
//! an edge caused by the client draining the socket after a refused write comes after the
//! attempt, hence after the flag was set, so the IO thread sees it set, takes the lock (waiting
//! for the writer's critical section to end), clears it and tells the driver (which queues the
//! connection for a write). An
//! IO thread that sees the flag set during a write that then succeeds only makes one write
//! attempt too many. Under the lock the flag is stable: set means the last attempt was refused
//! and no writable edge was handled since, so nobody writes until the IO thread clears it.
//!
//! A connection's writer is removed under the lock in the critical section where the driver
//! closes it (`CoreState::settle`), and the IO thread drops the socket only after that, outside
//! the lock: a writer never writes to a closed (or reused) descriptor (loom model 2).

use std::io;
use std::os::fd::OwnedFd;

use std::collections::BTreeMap;

use qmp_core::server::Instant;
use qmp_driver::{ConnId, Driver, WriteFact};

use crate::conn::Stream;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::tuning::{WRITES_PER_FLUSH, WRITE_CHUNK};

/// A non-blocking byte sink: the connection's socket in production, a buffer in loom models.
pub trait SocketWrite: Send {
    /// One non-blocking write: `Ok(n)` bytes taken (`n` may be short), `WouldBlock` when the
    /// socket is full.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

/// The real socket of a connection, shared with the IO thread's `io_thread::Conn` (which
/// reads from it and closes it).
pub struct StreamWriter(pub Arc<Stream>);

impl SocketWrite for StreamWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match &*self.0 {
            Stream::Unix(s) => io::Write::write(&mut &*s, bytes),
            Stream::Tcp(s) => io::Write::write(&mut &*s, bytes),
            Stream::Stdio(s) => s.write(bytes),
        }
    }
}

/// The write side of one open connection.
pub struct Writer {
    sock: Box<dyn SocketWrite>,
    /// Set before each write attempt, left set when the socket refused it (see the module
    /// docs); shared with the IO thread, which clears it when the socket becomes writable.
    blocked: Arc<AtomicBool>,
}

impl Writer {
    /// A writer for `sock` whose blocked flag is `blocked` (the IO thread keeps a clone).
    pub fn new(sock: Box<dyn SocketWrite>, blocked: Arc<AtomicBool>) -> Self {
        Writer { sock, blocked }
    }
}

/// What writing a connection's pending output came to.
#[derive(Debug)]
pub enum Flushed {
    /// All of it is written (or there was none, or the connection is gone).
    Drained,
    /// The socket is full: the IO thread waits for writability.
    Blocked,
    /// More than `WRITES_PER_FLUSH` chunks: the connection stays to be written on the IO
    /// thread's next pass.
    More,
    /// The socket failed: the driver closed the connection (or, on standard output, dropped
    /// the output).
    Failed(io::Error),
}

/// The write sides of the open connections (in the locked state, `CoreState`).
#[derive(Default)]
pub struct Writers(BTreeMap<ConnId, Writer>);

impl Writers {
    /// Give `conn` its write side.
    pub fn insert(&mut self, conn: ConnId, writer: Writer) {
        self.0.insert(conn, writer);
    }

    /// Take `conn`'s write side away (the driver closed it): nobody writes to its socket after.
    pub fn remove(&mut self, conn: ConnId) {
        self.0.remove(&conn);
    }

    /// Whether `conn` has a write side.
    pub fn contains(&self, conn: ConnId) -> bool {
        self.0.contains_key(&conn)
    }

    /// Write `conn`'s pending output until it is empty, the socket is full or
    /// `WRITES_PER_FLUSH` chunks went out, reporting each write to `driver`. The write happens
    /// under the lock (it is non-blocking), so the pending slice need not be copied.
    pub fn flush(&mut self, driver: &mut Driver<OwnedFd>, conn: ConnId, now: Instant) -> Flushed {
        for _ in 0..WRITES_PER_FLUSH {
            let Some(w) = self.0.get_mut(&conn) else {
                return Flushed::Drained;
            };
            if w.blocked.load(Ordering::SeqCst) {
                driver.take_transmit(conn);
                return Flushed::Blocked;
            }
            let out = driver.pending_output(conn);
            if out.is_empty() {
                driver.take_transmit(conn);
                return Flushed::Drained;
            }
            let chunk = &out[..out.len().min(WRITE_CHUNK)];
            // Before the attempt: see "The blocked flag" in the module docs.
            w.blocked.store(true, Ordering::SeqCst);
            match w.sock.write(chunk) {
                Ok(n) => {
                    w.blocked.store(false, Ordering::SeqCst);
                    driver.handle_written(now, conn, WriteFact::Wrote(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    driver.handle_written(now, conn, WriteFact::WouldBlock);
                    return Flushed::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    w.blocked.store(false, Ordering::SeqCst);
                }
                Err(e) => {
                    w.blocked.store(false, Ordering::SeqCst);
                    driver.handle_written(now, conn, WriteFact::Failed(e.kind()));
                    return Flushed::Failed(e);
                }
            }
        }
        if driver.pending_output(conn).is_empty() {
            Flushed::Drained
        } else {
            Flushed::More
        }
    }

    /// `conn`'s socket became writable while its writer was blocked: clear the flag and tell
    /// `driver`.
    pub fn writable_again(&mut self, driver: &mut Driver<OwnedFd>, conn: ConnId) {
        if let Some(w) = self.0.get_mut(&conn) {
            w.blocked.store(false, Ordering::SeqCst);
            driver.handle_writable(conn);
        }
    }
}
