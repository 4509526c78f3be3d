//! The read side of every connection as the dispatcher sees it, and the read token that lets
//! the dispatcher read a monitor's next requests itself while it waits for work.
//!
//! # Why the dispatcher reads
//!
//! A pipelining client sends a batch of requests, waits for the batch of replies, and sends the
//! next batch. The dispatcher writes those replies (see `writer`), so the next batch always
//! follows one of its writes. Handing every batch from the IO thread to the dispatcher keeps
//! three busy threads (client, IO thread, dispatcher) on a small machine's cores, and which two
//! of them share a core decides the rate. So the dispatcher, while it spins for more work after
//! a run of calls (`shared`'s "Spinning"), reads that run's connection itself
//! (`Shared::dispatcher_read`, in `dispatcher`): the batch is read, parsed, run and answered by one
//! thread, whichever core the client is on (figures in BENCHMARKS.md).
//!
//! The IO thread still reads every connection as before; the dispatcher only reads the one
//! connection whose replies it just wrote, only while it spins (at most `DISPATCHER_SPIN`;
//! never while it runs a handler or sleeps), and only when the driver wants that connection's
//! input. What it reads goes to the driver as the IO thread's reads do; out-of-band calls it
//! queues are left to the IO thread (woken for them), as is everything unusual: end of stream,
//! errors, a read that filled the buffer. Its would-block is no fact about the connection (only
//! the IO thread's reads end a connection's readiness in the driver).
//!
//! # The read token
//!
//! Two threads reading one stream must report what they read in the order they read it. Each
//! connection has one token ([`ReadToken`]): the IO thread takes it before each `read` and gives
//! it back once the result is reported to the driver (under the lock). The dispatcher takes it
//! when its spin begins (or on a later turn, if the IO thread holds it for a moment) and keeps
//! it until the spin ends: the read that brings the next batch ends the spin, and it gives the
//! token back after reporting it. Holding it for the whole spin keeps the IO thread, which
//! spins too, from winning the race for every batch and handing the calls over after all.
//!
//! A thread that finds the token taken does not read. The IO thread then leaves the
//! connection's readiness as it is and notes the attempt in the token; whoever gives the token
//! back then has the IO thread look again (end of stream, for one, raises no second readiness
//! event).

use crate::conn::Stream;
use crate::sync::{Arc, AtomicBool, Ordering};

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
