//! The write side of every connection, kept with the core behind the one lock, and the one
//! routine that writes a monitor's pending output ([`CoreState::flush_locked`]).
//!
//! Whoever holds the lock may write: the IO thread (after reads, out-of-band replies, events,
//! writability), and the dispatcher at the end of a batch of in-band calls, as QEMU's
//! `monitor_flush_locked` writes a reply from the thread that produced it. That removes a
//! hand-off per batch (dispatcher → IO thread → socket). Every write happens under the lock, so
//! there is one writer at a time per socket, and `Written { n }` is reported in the same
//! critical section as the write of the core's pending bytes it counts: bytes never interleave
//! and the core's output offset always matches the socket's.
//!
//! # Whole batches
//!
//! A pipelining client sends a batch of requests and answers the batch of replies with the next
//! batch. For that rhythm to hold, the replies of a *run* of in-band calls of one monitor (see
//! `shared::InbandRun`) go out in one write at the end of the run, from the dispatcher; while the
//! run goes on, the IO thread leaves that monitor's output alone
//! (`CoreState::write_left_to_dispatcher`) instead of writing part of the batch after reading
//! the client's next requests, which split every later exchange in two (measured: 5-7 requests
//! per exchange instead of 8, one more read and write on both sides per exchange). It does so
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
//! for the writer's critical section to end), clears it and queues the monitor for a write. An
//! IO thread that sees the flag set during a write that then succeeds only makes one write
//! attempt too many. Under the lock the flag is stable: set means the last attempt was refused
//! and no writable edge was handled since, so nobody writes until the IO thread clears it.
//!
//! The IO thread removes a connection's writer under the lock before it closes the socket, so
//! a writer never writes to a closed (or reused) descriptor.

use std::io;
use std::os::fd::OwnedFd;

use qmp_core::server::{Input, Instant, MonitorId};

use crate::conn::Stream;
use crate::shared::CoreState;
use crate::sync::{Arc, AtomicBool, Ordering};

/// Bytes handed to one `write` call.
pub const WRITE_CHUNK: usize = 256 * 1024;
/// Writes per connection per flush, so one client that keeps draining its socket cannot hold
/// the lock (and the thread) for ever; the rest goes out on the IO thread's next pass.
pub const WRITES_PER_FLUSH: usize = 16;

/// A non-blocking byte sink: the connection's socket in production, a buffer in loom models.
pub trait SocketWrite: Send {
    /// One non-blocking write: `Ok(n)` bytes taken (`n` may be short), `WouldBlock` when the
    /// socket is full.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

/// The real socket of a connection, shared with the IO thread's [`crate::conn::Conn`] (which
/// reads from it and closes it).
pub struct StreamWriter(pub Arc<Stream>);

impl SocketWrite for StreamWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match &*self.0 {
            Stream::Unix(s) => io::Write::write(&mut &*s, bytes),
            Stream::Tcp(s) => io::Write::write(&mut &*s, bytes),
        }
    }
}

/// The write side of one open connection (in [`CoreState::writers`]).
pub struct Writer {
    sock: Box<dyn SocketWrite>,
    /// Set before each write attempt, left set when the socket refused it (see the module
    /// docs); shared with the IO thread, which clears it when the socket becomes writable.
    blocked: Arc<AtomicBool>,
    /// Bytes written.
    pub bytes_out: u64,
    /// Messages written (counted by their `\n` terminators).
    pub messages_out: u64,
}

impl Writer {
    /// A writer for `sock` whose blocked flag is `blocked` (the IO thread keeps a clone).
    pub fn new(sock: Box<dyn SocketWrite>, blocked: Arc<AtomicBool>) -> Self {
        Writer {
            sock,
            blocked,
            bytes_out: 0,
            messages_out: 0,
        }
    }
}

/// What writing a monitor's pending output came to.
#[derive(Debug)]
pub enum Flushed {
    /// All of it is written (or there was none, or the monitor has no writer).
    Drained,
    /// The socket is full: the IO thread waits for writability (the monitor is not in
    /// `transmit`; the writable edge puts it back).
    Blocked,
    /// More than `WRITES_PER_FLUSH` chunks: the monitor stays in `transmit` for the IO
    /// thread's next pass.
    More,
    /// The socket failed: the monitor stays in `transmit` and the IO thread, writing again,
    /// meets the error and closes the connection.
    Failed(io::Error),
}

impl CoreState {
    /// Write `m`'s pending output until it is empty, the socket is full or `WRITES_PER_FLUSH`
    /// chunks went out, reporting `Written` after each write, and keep `transmit` in step (see
    /// [`Flushed`]). The write happens under the lock (it is non-blocking), so the pending
    /// slice need not be copied; descriptors the core gives back go to `close`, to be dropped
    /// after the lock is released. A monitor without a writer is left as it is.
    pub fn flush_locked(
        &mut self,
        m: MonitorId,
        now: Instant,
        close: &mut Vec<OwnedFd>,
    ) -> Flushed {
        for _ in 0..WRITES_PER_FLUSH {
            let Some(w) = self.writers.get_mut(&m) else {
                return Flushed::Drained;
            };
            if w.blocked.load(Ordering::SeqCst) {
                self.transmit.remove(&m);
                return Flushed::Blocked;
            }
            let out = self.server.pending_output(m);
            if out.is_empty() {
                self.transmit.remove(&m);
                return Flushed::Drained;
            }
            let chunk = &out[..out.len().min(WRITE_CHUNK)];
            // Before the attempt: see "The blocked flag" in the module docs.
            w.blocked.store(true, Ordering::SeqCst);
            match w.sock.write(chunk) {
                Ok(n) => {
                    w.blocked.store(false, Ordering::SeqCst);
                    w.bytes_out += n as u64;
                    w.messages_out += count_newlines(&chunk[..n]);
                    if n < chunk.len() {
                        self.io_stats.partial_writes += 1;
                    }
                    close.extend(self.apply_locked(now, Input::Written { monitor: m, n }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.io_stats.blocked_writes += 1;
                    self.transmit.remove(&m);
                    return Flushed::Blocked;
                }
                Err(e) => {
                    w.blocked.store(false, Ordering::SeqCst);
                    if e.kind() != io::ErrorKind::Interrupted {
                        self.transmit.insert(m);
                        return Flushed::Failed(e);
                    }
                }
            }
        }
        if self.server.pending_output(m).is_empty() {
            self.transmit.remove(&m);
            Flushed::Drained
        } else {
            self.transmit.insert(m);
            Flushed::More
        }
    }

    /// The IO thread saw `m`'s socket become writable while its writer was blocked: clear the
    /// flag and queue the monitor for a write (call under the lock).
    pub fn writable_again(&mut self, m: MonitorId) {
        if let Some(w) = self.writers.get_mut(&m) {
            w.blocked.store(false, Ordering::SeqCst);
            self.transmit.insert(m);
        }
    }
}

/// Messages in written bytes (each ends with a newline). Counted in byte lanes, 255 bytes at a
/// time (so a lane cannot overflow), which the compiler vectorises; a filter-count costs a few
/// instructions per byte, and this runs over every byte written.
fn count_newlines(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|c| u64::from(c.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::count_newlines;

    #[test]
    fn counts_every_newline_across_lane_chunks() {
        assert_eq!(count_newlines(b""), 0);
        assert_eq!(count_newlines(b"{}\r\n"), 1);
        // 300 newlines: more than one 255-byte lane chunk, all of it newlines.
        assert_eq!(count_newlines(&[b'\n'; 300]), 300);
        let mut mixed = Vec::new();
        for i in 0..1000 {
            mixed.extend_from_slice(if i % 3 == 0 { b"x\n" } else { b"yz" });
        }
        assert_eq!(count_newlines(&mixed), 334);
    }
}
