//! Standard input and output as a tokio connection (`qmpd --runtime tokio --monitor stdio`):
//! [`crate::stdio::Stdio`] with each descriptor under tokio's reactor for its one direction,
//! and the hook that opens the driver's stdio monitor on a built [`TokioServer`].
//!
//! A descriptor epoll refuses (EPERM: a regular file or `/dev/null` as standard input or
//! output) is always ready, so it is not registered and its readiness is always `Ready`: a read
//! or write on it never says would-block, which is all the driver asks readiness for.

use std::io;
use std::task::{Context, Poll};

use ::tokio::net::unix::pipe;

use super::TokioServer;
use crate::stdio::Stdio;

/// Standard input and output under tokio's reactor: a copy of each descriptor as tokio's pipe
/// end for its direction (tokio's `_unchecked` constructors take any descriptor that can be
/// polled, a terminal included), or `None` when epoll refuses it.
#[derive(Debug)]
pub(crate) struct TokioStdio {
    input: Option<pipe::Receiver>,
    output: Option<pipe::Sender>,
    /// Owns the claim (the terminal and flags are put back when it is dropped).
    stdio: Stdio,
}

/// `r`, or `None` when epoll refused the descriptor (always ready, module docs).
fn polled<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => Ok(None),
        Err(e) => Err(e),
    }
}

impl TokioStdio {
    /// Put `stdio` under the current runtime's reactor.
    pub(crate) fn new(stdio: Stdio) -> io::Result<Self> {
        let input = stdio.input().try_clone_to_owned()?;
        let output = stdio.output().try_clone_to_owned()?;
        Ok(TokioStdio {
            input: polled(pipe::Receiver::from_owned_fd_unchecked(input))?,
            output: polled(pipe::Sender::from_owned_fd_unchecked(output))?,
            stdio,
        })
    }

    /// One non-blocking read of standard input.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.input {
            Some(rx) => rx.try_read(buf),
            None => self.stdio.read(buf),
        }
    }

    /// One non-blocking write to standard output.
    pub(crate) fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        match &self.output {
            Some(tx) => tx.try_write(bytes),
            None => self.stdio.write(bytes),
        }
    }

    /// Register for the next read readiness of standard input.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.input {
            Some(rx) => rx.poll_read_ready(cx).map(|_| ()),
            None => Poll::Ready(()),
        }
    }

    /// The same for writing standard output.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.output {
            Some(tx) => tx.poll_write_ready(cx).map(|_| ()),
            None => Poll::Ready(()),
        }
    }
}

impl TokioServer {
    /// Serve a human monitor on standard input and output too (QEMU's `-monitor stdio`; see
    /// [`crate::stdio`]): its banner is written when the server runs. Call inside the runtime,
    /// before [`TokioServer::run`]. Fails when standard input and output are claimed already.
    pub fn monitor_stdio(&mut self) -> io::Result<()> {
        let stream = TokioStdio::new(Stdio::claim()?)?;
        let event_loop = &mut self.event_loop;
        let now = crate::clock::Clock::now(&event_loop.inbox.clock);
        let conn = event_loop
            .driver
            .open_stdio_monitor(now)
            .ok_or_else(crate::stdio::refused)?;
        event_loop.add_conn(conn, super::socket::Stream::Stdio(stream));
        Ok(())
    }
}
