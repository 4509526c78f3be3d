//! The dispatcher thread: runs in-band handlers one at a time, in the order the driver hands
//! them out (round robin across monitors, spec §5.3), never under the lock, and writes the
//! replies of each run of calls of one connection itself (under the lock, see `writer`).
//!
//! Between runs it waits for work: it spins for a bounded time on its hint
//! (`tuning::DISPATCHER_SPIN`), reading meanwhile the connection it just answered (see
//! [`crate::reader`]), then sleeps on the condition variable (see `shared`).

use std::io;
use std::os::fd::OwnedFd;

use qmp_core::server::{CallResult, Instant};
use qmp_driver::{ConnId, HandlerCache, ReadFact, Registry, SessionCall};

use crate::conn::Chunk;
use crate::reader::Reader;
use crate::shared::{CoreState, Shared};
use crate::sync::{self, Arc, Ordering};
use crate::tuning::{DISPATCHER_READ_CHUNK, DISPATCHER_SPIN};
use crate::writer::Flushed;

/// The dispatcher's loop: take the next in-band call, run it unlocked, complete it and take the
/// next one in the same step; returns when the adapter stops.
pub fn run(shared: Arc<Shared>, registry: Arc<Registry>) {
    let mut handlers = HandlerCache::default();
    let mut next = shared.next_in_band();
    while let Some(call) = next {
        tracing::debug!(conn = call.session.0, command = %call.call.command, "in-band call");
        let result = registry.run_cached(&mut handlers, &*shared, &call.call, call.session);
        next = shared.complete_and_next(&call, result);
    }
}

impl Shared {
    /// The dispatcher's wait: block until an in-band call is ready to run. Before sleeping it
    /// spins once (see "Spinning" in `shared`), reading the connection it last answered.
    /// `None` once the adapter has stopped.
    pub fn next_in_band(&self) -> Option<SessionCall> {
        let mut st = self.lock();
        let mut spun = false;
        loop {
            if st.stopped {
                return None;
            }
            if st.driver.dispatcher_ready() {
                let now = self.now();
                let call = st.driver.next_in_band(now);
                let close = st.settle();
                st.take_inband(call.as_ref(), now);
                let io_work = st.io_work_pending() && self.io_work_left(&mut st);
                drop(st);
                drop(close);
                if io_work {
                    self.wake_io();
                }
                if call.is_some() {
                    return call;
                }
                st = self.lock();
                continue;
            }
            if !spun && st.driver.running() {
                spun = true;
                st = self.spin_for_work(st);
                continue;
            }
            st = self.dispatcher_wait(st);
        }
    }

    /// One spin for work (unlocked; the lock is taken again before returning). While it spins
    /// the dispatcher holds the read token of the connection it last answered and reads it (a
    /// skipped read of the IO thread is noted, and looked at again when the token goes back).
    fn spin_for_work<'a>(
        &'a self,
        mut st: crate::sync::MutexGuard<'a, CoreState>,
    ) -> crate::sync::MutexGuard<'a, CoreState> {
        // No work at this look: hints from before it are stale.
        self.dispatch_hint.store(false, Ordering::Release);
        let follow = st
            .follow_up
            .and_then(|c| Some((c, st.readers.get(&c)?.clone())));
        let mut buf = std::mem::take(&mut st.dispatcher_buf);
        drop(st);
        let mut following = follow.is_some();
        let mut holding = false;
        if following {
            buf.resize(DISPATCHER_READ_CHUNK, 0);
        }
        sync::spin_until(DISPATCHER_SPIN, || {
            if self.dispatch_hint.swap(false, Ordering::AcqRel) {
                return true;
            }
            let Some((conn, reader)) = follow.as_ref().filter(|_| following) else {
                return false;
            };
            holding = holding || reader.token.take();
            if !holding {
                return false;
            }
            match self.dispatcher_read(*conn, reader, &mut buf) {
                DispatcherRead::Applied => true,
                DispatcherRead::Nothing => false,
                DispatcherRead::Leave { io_look } => {
                    (following, holding) = (false, false);
                    self.give_back_read(reader, io_look);
                    false
                }
            }
        });
        if let Some((_, reader)) = follow.as_ref().filter(|_| holding) {
            self.give_back_read(reader, false);
        }
        // The reader's copy of the socket may be the last one (the IO thread closed the
        // connection meanwhile): it is closed here, outside the lock.
        drop(follow);
        let mut st = self.lock();
        st.dispatcher_buf = buf;
        st
    }

    /// Report an in-band call's result: complete it, write the run's replies from this thread
    /// (see [`crate::writer`]), then wake the IO thread for whatever is left.
    pub fn complete_in_band(&self, call: &SessionCall, result: CallResult) {
        let (close, dispatch, wake) = {
            let now = self.now();
            let mut st = self.lock();
            let mut close = complete_locked(&mut st, now, call, result);
            end_run_locked(&mut st, now, call.session, &mut close);
            let dispatch = self.dispatcher_wanted(&st);
            (close, dispatch, self.io_work_left(&mut st))
        };
        self.after_unlock(close, dispatch, wake);
    }

    /// The dispatcher's step between two calls: report `call`'s result and, in the same critical
    /// section when the lane has more work, take the next call; at the end of a run, write its
    /// replies and wake the IO thread as [`Shared::complete_in_band`] does, then wait as
    /// [`Shared::next_in_band`].
    pub fn complete_and_next(&self, call: &SessionCall, result: CallResult) -> Option<SessionCall> {
        let now = self.now();
        let mut st = self.lock();
        let mut close = complete_locked(&mut st, now, call, result);
        let mut next = None;
        if st.driver.dispatcher_ready() {
            next = st.driver.next_in_band(now);
            close.extend(st.settle());
        }
        // While the run goes on, its replies wait in the core (the IO thread leaves them alone,
        // see `write_left_to_dispatcher`), so the batch goes out in one write at its end.
        // A completion may let a suspended monitor read again: an IO thread asleep is woken.
        let wake = if st.continues_run(next.as_ref()) {
            st.take_io_wake()
        } else {
            end_run_locked(&mut st, now, call.session, &mut close);
            self.io_work_left(&mut st)
        };
        st.take_inband(next.as_ref(), now);
        drop(st);
        drop(close);
        if wake {
            self.wake_io();
        }
        next.or_else(|| self.next_in_band())
    }
}

/// Complete the dispatcher's running call.
fn complete_locked(
    st: &mut CoreState,
    now: Instant,
    call: &SessionCall,
    result: CallResult,
) -> Vec<OwnedFd> {
    if st.inband_running == Some(call.call.id) {
        st.inband_running = None;
    }
    st.driver.complete(now, call.call.id, result);
    st.settle()
}

/// The end of a run of in-band calls of `conn`: write its pending output from the dispatcher,
/// unless out-of-band calls are queued (the IO thread writes after running them); whatever the
/// socket does not take stays for the IO thread. `conn` is the one the dispatcher reads while
/// it waits.
fn end_run_locked(st: &mut CoreState, now: Instant, conn: ConnId, close: &mut Vec<OwnedFd>) {
    st.inband_run = None;
    if st.driver.is_open(conn) {
        st.follow_up = Some(conn);
    }
    if st.driver.wants_transmit(conn) && !st.driver.has_oob_calls() {
        if let Flushed::Failed(e) = st.flush_locked(conn, now, close) {
            tracing::debug!(conn = conn.0, error = %e, "write from the dispatcher failed");
        }
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
