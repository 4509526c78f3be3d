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

    /// One non-blocking read into `buf`, as the driver's fact.
    pub(crate) fn read<'a>(&self, buf: &'a mut [u8]) -> ReadFact<'a, OwnedFd> {
        let mut fds = Vec::new();
        let read = match self {
            Stream::Unix(s) => s
                .try_io(Interest::READABLE, || {
                    scm::recv_with_fds(s, &mut *buf, &mut fds)
                })
                // recv_with_fds says "descriptors came or were cut": none kept means cut.
                .map(|(n, with_fds)| (n, with_fds && fds.is_empty())),
            Stream::Tcp(s) => s.try_read(buf).map(|n| (n, false)),
            Stream::Stdio(s) => s.read(buf).map(|n| (n, false)),
        };
        let capacity = buf.len();
        match read {
            Ok((0, _)) => ReadFact::Eof,
            Ok((n, cut)) => ReadFact::Data {
                bytes: &buf[..n],
                fds,
                fds_cut: cut,
                capacity,
            },
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => ReadFact::WouldBlock,
                io::ErrorKind::Interrupted => ReadFact::Interrupted,
                kind => ReadFact::Failed(kind),
            },
        }
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

/// An accept error as the driver's fact.
fn accept_fact(e: &io::Error) -> AcceptFact {
    use rustix::io::Errno;
    match e.kind() {
        io::ErrorKind::WouldBlock => AcceptFact::WouldBlock,
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => AcceptFact::Retry,
        _ => match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => {
                AcceptFact::OutOfResources
            }
            _ => AcceptFact::Failed(e.kind()),
        },
    }
}
