//! The tokio sockets of the adapter and the one syscall each fact comes from: a read (with
//! SCM_RIGHTS descriptors on Unix, through rustix's `recvmsg` inside tokio's `try_io`), a
//! write, an accept. Each returns what happened as the driver's fact; no decision is made here.
//!
//! Readiness is tokio's: a read or write that says would-block clears it (tokio's `try_io`
//! contract), and the loop then polls for the next readiness event, which is exactly the
//! driver's "readable until a read says would-block" rule.

use std::io;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};

use ::tokio::io::Interest;
use ::tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use qmp_driver::{AcceptFact, ReadFact, WriteFact};
use rustix::net::RecvFlags;

use crate::conn::{read_fact, Chunk};
use crate::listen::accept_fact;
use crate::scm;

/// An accepted connection.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    /// Standard input and output (`--monitor stdio`).
    Stdio(super::stdio::TokioStdio),
}

impl Stream {
    /// A connected stream socket from outside (QMP `add_client`), registered with the
    /// current runtime (the loop's task calls it).
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Stream> {
        Ok(match crate::conn::StdStream::from_fd(fd)? {
            crate::conn::StdStream::Unix(s) => Stream::Unix(UnixStream::from_std(s)?),
            crate::conn::StdStream::Tcp(s) => Stream::Tcp(TcpStream::from_std(s)?),
        })
    }

    /// Whether [`Stream::read`] may peek: a socket's queue can be, standard input cannot.
    pub(crate) fn can_peek(&self) -> bool {
        !matches!(self, Stream::Stdio(_))
    }

    /// One non-blocking `recv` (`MSG_PEEK` when `peek`), descriptors into `fds`: the bytes
    /// and whether the kernel cut descriptors.
    fn recv(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        peek: bool,
    ) -> io::Result<(usize, bool)> {
        let flags = if peek {
            RecvFlags::PEEK
        } else {
            RecvFlags::empty()
        };
        match self {
            Stream::Unix(s) => scm::recv_with_fds_flags(s, buf, fds, flags),
            Stream::Tcp(s) => rustix::net::recv(s, buf, RecvFlags::DONTWAIT | flags)
                // (bytes in the buffer, bytes the message had)
                .map(|(n, _)| (n, false))
                .map_err(io::Error::from),
            // Standard input is no socket: it cannot be peeked (see `Stream::can_peek`).
            Stream::Stdio(s) => {
                debug_assert!(!peek, "standard input cannot be peeked");
                s.read(buf).map(|n| (n, false))
            }
        }
    }

    /// One non-blocking read into `buf` after tokio's readiness (a would-block clears it), as
    /// the driver's fact; `peek` leaves the bytes queued (see [`Stream::consume`]).
    pub(crate) fn read<'a>(&self, buf: &'a mut [u8], peek: bool) -> ReadFact<'a, OwnedFd> {
        let mut fds = Vec::new();
        let read = match self {
            Stream::Unix(s) => s.try_io(Interest::READABLE, || self.recv(buf, &mut fds, peek)),
            Stream::Tcp(s) => s.try_io(Interest::READABLE, || self.recv(buf, &mut fds, peek)),
            Stream::Stdio(_) => self.recv(buf, &mut fds, peek),
        };
        read_fact(read.map(chunk), buf, fds)
    }

    /// [`Stream::read`] straight from the socket, whatever tokio's readiness says: the loop's
    /// look at a connection while it spins, before the runtime's reactor has seen the bytes
    /// arrive. Tokio's readiness is left as it is (a later [`Stream::read`] that says
    /// would-block clears it).
    pub(crate) fn read_now<'a>(&self, buf: &'a mut [u8], peek: bool) -> ReadFact<'a, OwnedFd> {
        let mut fds = Vec::new();
        let read = self.recv(buf, &mut fds, peek);
        read_fact(read.map(chunk), buf, fds)
    }

    /// Take `n` bytes a peek returned off the socket (they are queued: only the loop reads it),
    /// using `scratch`. An error is the connection's, as the driver's fact.
    pub(crate) fn consume(
        &self,
        mut n: usize,
        scratch: &mut [u8],
    ) -> Result<(), ReadFact<'static, OwnedFd>> {
        while n > 0 {
            let len = n.min(scratch.len());
            // No descriptors were among these bytes (a peek that brought any is not kept).
            let mut fds = Vec::new();
            match self.recv(&mut scratch[..len], &mut fds, false) {
                Ok((0, _)) => return Err(ReadFact::Eof),
                Ok((k, _)) => n -= k.min(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadFact::Failed(e.kind())),
            }
        }
        Ok(())
    }

    /// One non-blocking write of a prefix of `bytes`, as the driver's fact.
    pub(crate) fn write(&self, bytes: &[u8]) -> WriteFact {
        let r = match self {
            Stream::Unix(s) => s.try_write(bytes),
            Stream::Tcp(s) => s.try_write(bytes),
            Stream::Stdio(s) => s.write(bytes),
        };
        match r {
            Ok(n) => WriteFact::Wrote(n),
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => WriteFact::WouldBlock,
                io::ErrorKind::Interrupted => WriteFact::Interrupted,
                kind => WriteFact::Failed(kind),
            },
        }
    }

    /// Register for the next read readiness; `Ready` when tokio holds the socket readable
    /// (or in error: the read that follows reports it).
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Stream::Unix(s) => s.poll_read_ready(cx).map(|_| ()),
            Stream::Tcp(s) => s.poll_read_ready(cx).map(|_| ()),
            Stream::Stdio(s) => s.poll_read_ready(cx),
        }
    }

    /// The same for writing.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Stream::Unix(s) => s.poll_write_ready(cx).map(|_| ()),
            Stream::Tcp(s) => s.poll_write_ready(cx).map(|_| ()),
            Stream::Stdio(s) => s.poll_write_ready(cx),
        }
    }
}

/// A bound listener (the std listener the shared policy code bound, under tokio's reactor).
#[derive(Debug)]
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// One accept, as the driver's fact; `Pending` (would-block) registers `cx` for the
    /// listener's next readiness event.
    pub(crate) fn accept(&self, cx: &mut Context<'_>) -> Result<Stream, AcceptFact> {
        let r = match self {
            Listener::Unix(l) => match l.poll_accept(cx) {
                Poll::Ready(r) => r.map(|(s, _)| Stream::Unix(s)),
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            },
            Listener::Tcp(l) => match l.poll_accept(cx) {
                // Replies are whole messages written at once: no Nagle delay on them.
                Poll::Ready(r) => r.and_then(|(s, _)| s.set_nodelay(true).map(|()| Stream::Tcp(s))),
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            },
        };
        r.map_err(|e| accept_fact(&e))
    }
}

/// Bytes read and whether the kernel cut descriptors (MSG_CTRUNC), as the driver's read takes
/// them (`filled` is the std adapter's own business).
fn chunk((n, cut): (usize, bool)) -> Chunk {
    Chunk {
        n,
        filled: false,
        cut,
    }
}
