//! The read side of every connection as the dispatcher sees it, and the read token that lets
//! the dispatcher read a monitor's next requests itself while it waits for work.
//!
//! # Why the dispatcher reads
//!
//! A pipelining client sends a batch of requests, waits for the batch of replies, and sends the
//! next batch. The dispatcher writes those replies (see `writer`), so the next batch always
//! follows one of its writes. Before, the IO thread read it and handed the calls over: three
//! busy threads (client, IO thread, dispatcher) on this machine's two vCPUs, and which two of
//! them shared a vCPU decided the rate. With the client beside the IO thread, every exchange
//! waited for the IO thread to give its vCPU to the client and back (measured with qmpd's
//! threads pinned apart: 209 K req/s against 282 K with the client beside the dispatcher).
//! Now the dispatcher, while it spins for more work after a run of calls (`shared`'s
//! "Spinning"), reads that run's monitor itself (`Shared::dispatcher_read`, below):
//! the batch is read, parsed, run and answered by one thread, whichever vCPU the client is on
//! (BENCHMARKS.md, session 5).
//!
//! The IO thread still reads every connection as before; the dispatcher only reads the one
//! monitor whose replies it just wrote, only while it spins (at most `DISPATCHER_SPIN`; never
//! while it runs a handler or sleeps), and only when the core wants that monitor's input. What it reads goes through the
//! same `Input::Receive` as the IO thread's reads; out-of-band calls it queues are left to the
//! IO thread (woken for them), as is everything unusual: end of stream, errors, a read that
//! filled the buffer.
//!
//! # The read token
//!
//! Two threads reading one stream must apply what they read in the order they read it. Each
//! connection has one token ([`ReadToken`]): the IO thread takes it before each `read` and gives
//! it back once the bytes are applied to the core (under the lock), or after a read that
//! brought none. The dispatcher takes it when its spin begins (or on a later turn, if the IO
//! thread holds it for a moment) and keeps it until the spin ends: the read that brings the
//! next batch ends the spin, and it gives the token back after applying it. Holding it for the
//! whole spin keeps the IO thread, which spins too, from winning the race for every batch and
//! handing the calls over after all (measured: taken around each read only, the IO thread
//! still read about 85 % of the batches).
//!
//! A thread that finds the token taken does not read. The IO thread then keeps the
//! connection's readiness (`Conn::read_ready`) and notes the attempt in the token; whoever gives
//! the token back then has the IO thread look again (end of stream, for one, raises no second
//! readiness event).

use std::io;
use std::os::fd::OwnedFd;

use qmp_driver::{ConnId, ReadFact};

use crate::conn::{Chunk, Stream};
use crate::shared::Shared;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::writer::Flushed;

/// A connection's read token (see the module docs), shared by its `Conn` and its [`Reader`].
#[derive(Clone, Debug)]
pub struct ReadToken(Arc<TokenState>);

#[derive(Debug)]
struct TokenState {
    /// Taken: the IO thread is between its read and the `Receive` of what it read, or the
    /// dispatcher is spinning on the connection (see the module docs).
    held: AtomicBool,
    /// The IO thread found the token held and did not read: whoever gives it back must see
    /// that the IO thread looks again.
    skipped: AtomicBool,
}

impl Default for ReadToken {
    fn default() -> Self {
        ReadToken(Arc::new(TokenState {
            held: AtomicBool::new(false),
            skipped: AtomicBool::new(false),
        }))
    }
}

impl ReadToken {
    /// The dispatcher takes the token: true when it may now read (and must give it back with
    /// [`ReadToken::give_back`]).
    pub fn take(&self) -> bool {
        // Look before writing: a failed attempt then costs no cache-line transfer.
        !self.0.held.load(Ordering::Relaxed) && !self.0.held.swap(true, Ordering::SeqCst)
    }

    /// The IO thread takes the token: as [`ReadToken::take`], but a failed attempt is noted
    /// for the holder, who then has the IO thread look again ([`ReadToken::give_back`] says
    /// so).
    pub fn take_or_note(&self) -> bool {
        // SeqCst on both sides (note, then try; give back, then check the note): either this
        // attempt succeeds, or the holder's check comes after the note and sees it.
        self.0.skipped.store(true, Ordering::SeqCst);
        if self.0.held.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.0.skipped.store(false, Ordering::Relaxed);
        true
    }

    /// Give the token back after what was read is applied (or nothing was). True when the IO
    /// thread skipped a read meanwhile: it must be told to look again.
    pub fn give_back(&self) -> bool {
        self.0.held.store(false, Ordering::SeqCst);
        self.0.skipped.swap(false, Ordering::SeqCst)
    }
}

/// The read side of one open connection (in `CoreState::readers`), for the dispatcher.
#[derive(Clone, Debug)]
pub struct Reader {
    /// The socket, shared with the IO thread's `Conn` and the writer.
    pub stream: Arc<Stream>,
    /// The connection's read token.
    pub token: ReadToken,
}

impl Reader {
    /// The read side of the socket `stream`, whose reads `token` orders.
    pub fn new(stream: Arc<Stream>, token: ReadToken) -> Self {
        Reader { stream, token }
    }
}

/// What one read by the dispatcher came to.
pub(crate) enum DispatcherRead {
    /// Bytes were applied: the dispatcher looks at the state again.
    Applied,
    /// Nothing to read yet.
    Nothing,
    /// The connection is the IO thread's again: the core does not want its input now, or
    /// (`io_look`) the stream ended or failed, which the IO thread reads itself and reports.
    Leave {
        /// The IO thread must look at the connection.
        io_look: bool,
    },
}

impl Shared {
    /// One read of `conn` by the dispatcher while it spins for work, holding `conn`'s read
    /// token (see the module docs; the caller takes it and gives it back). Only bytes are
    /// reported from here; would-block is not (it is a spin's look, not the connection's
    /// readiness, which only the IO thread's reads end), and the end of the stream or an error
    /// is left to the IO thread, which reads it again and reports it.
    pub(crate) fn dispatcher_read(
        &self,
        conn: ConnId,
        reader: &Reader,
        buf: &mut [u8],
    ) -> DispatcherRead {
        if !self.lock().driver.wants_input(conn) {
            return DispatcherRead::Leave { io_look: false };
        }
        let mut fds = Vec::new();
        match reader.stream.read_chunk(buf, &mut fds) {
            Ok(chunk) if chunk.n > 0 => {
                self.dispatcher_apply(conn, &buf[..chunk.n], fds, chunk, buf.len());
                DispatcherRead::Applied
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                DispatcherRead::Nothing
            }
            _ => DispatcherRead::Leave { io_look: true },
        }
    }

    /// Apply what the dispatcher read from `conn`, as the IO thread applies its reads. The IO
    /// thread is told to look when it has work: out-of-band calls, or bytes a read that filled
    /// its buffer left behind. Bytes of a connection closed meanwhile are dropped (the driver
    /// ignores facts of closed connections and hands the descriptors back).
    pub(crate) fn dispatcher_apply(
        &self,
        conn: ConnId,
        bytes: &[u8],
        fds: Vec<OwnedFd>,
        chunk: Chunk,
        capacity: usize,
    ) {
        let now = self.now();
        let (read, wake) = {
            let mut st = self.lock();
            if st.readers.contains_key(&conn) {
                st.dispatcher_reads += 1;
            }
            let read = st.apply_read(
                conn,
                now,
                ReadFact::Data {
                    bytes,
                    fds,
                    fds_cut: chunk.cut,
                    capacity,
                },
            );
            if let Flushed::Failed(e) = &read.flushed {
                tracing::debug!(conn = conn.0, error = %e, "write from the dispatcher failed");
            }
            let io_work = read.oob || chunk.filled || st.io_work_pending();
            (read, io_work && self.io_work_left(&mut st))
        };
        drop(read);
        if wake {
            self.wake_io();
        }
    }

    /// The dispatcher gives `reader`'s token back, and has the IO thread look at the
    /// connection again when it skipped a read meanwhile or when `io_look` says so.
    pub(crate) fn give_back_read(&self, reader: &Reader, io_look: bool) {
        let skipped = reader.token.give_back();
        if skipped || io_look {
            let wake = {
                let mut st = self.lock();
                self.io_work_left(&mut st)
            };
            if wake {
                self.wake_io();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::ReadToken;

    #[test]
    fn a_read_the_io_thread_skipped_is_reported_to_the_holder() {
        let token = ReadToken::default();
        let io = token.clone();
        assert!(token.take(), "a free token");
        assert!(!token.take(), "held: nobody else reads");
        assert!(!io.take_or_note(), "held: the IO thread skips");
        assert!(token.give_back(), "the holder learns of the skipped read");
        assert!(io.take_or_note(), "free again");
        assert!(!token.take());
        assert!(!io.give_back(), "nothing was skipped this time");
        assert!(token.take());
        assert!(!token.give_back(), "the note was consumed");
    }
}
