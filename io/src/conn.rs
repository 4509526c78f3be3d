//! One accepted client connection as the IO thread sees it: the socket, its readiness flags and
//! the counters for the summary line logged when it closes. The write side (shared with the
//! dispatcher) is a [`crate::writer::Writer`] in the locked state.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant as StdInstant;

use mio::net::{TcpStream, UnixStream};
use qmp_core::server::MonitorId;

use crate::reader::ReadToken;
use crate::scm;
use crate::sync::{Arc, AtomicBool, Ordering};

/// The socket of a connection.
#[derive(Debug)]
pub enum Stream {
    /// Unix: can carry descriptors.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
}

impl Stream {
    /// The descriptor to register with mio (the stream is shared with its writer, so it is
    /// registered by descriptor rather than through `&mut`).
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }

    /// One non-blocking read into `buf`; descriptors passed alongside land in `fds`. Both
    /// threads that read a connection read through this (see [`crate::reader`]).
    pub fn read_chunk(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<Chunk> {
        let (n, with_fds) = match self {
            Stream::Unix(s) => scm::recv_with_fds(s, buf, fds)?,
            Stream::Tcp(s) => (scm::recv_plain(s, buf)?, false),
        };
        Ok(Chunk {
            n,
            filled: n == buf.len() || with_fds,
        })
    }
}

/// What one read of a connection brought.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Bytes read into the buffer; 0 at end of stream.
    pub n: usize,
    /// The read filled the buffer or stopped at passed descriptors: more bytes are likely
    /// queued (a hint for the dispatcher's reads). A read that did *not* fill it says nothing
    /// about what is left: the peer's EOF may be queued behind the bytes, and an edge-triggered
    /// poller raises no second event for it, so only EAGAIN ends a connection's readiness
    /// (see `qmp_driver::conn`).
    pub filled: bool,
}

/// An open connection (one monitor).
#[derive(Debug)]
pub struct Conn {
    /// The core's name for it.
    pub monitor: MonitorId,
    /// Index of the listener that accepted it.
    pub listener: usize,
    /// The socket, shared with its writer and reader (`CoreState::writers`, `readers`); closed
    /// when the last holder drops it: this `Conn` (the IO thread removes the other two under
    /// the lock first and drops it outside), or the dispatcher's copy of the reader at the end
    /// of a spin (also outside the lock).
    pub stream: Arc<Stream>,
    /// The socket may have bytes to read (set by a readable event, cleared on EAGAIN). mio is
    /// edge-triggered, so a connection that stopped reading because the core did not want
    /// input must be read again later without waiting for a new event.
    pub read_ready: bool,
    /// The writer's blocked flag (see `writer`): a writable event matters only while it is set.
    pub write_blocked: Arc<AtomicBool>,
    /// Taken around each read and its `Receive` (see [`crate::reader`]).
    pub read_token: ReadToken,
    /// When it was accepted.
    pub since: StdInstant,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written (taken from the writer at close).
    pub bytes_out: u64,
    /// Handler calls made for it (built-ins answered by the core are not counted).
    pub calls: u64,
    /// Messages written (taken from the writer at close).
    pub messages_out: u64,
    /// Descriptors received.
    pub fds_in: u64,
}

impl Conn {
    /// A fresh connection.
    pub fn new(monitor: MonitorId, listener: usize, stream: Stream) -> Self {
        Conn {
            monitor,
            listener,
            stream: Arc::new(stream),
            read_ready: true,
            write_blocked: Arc::new(AtomicBool::new(false)),
            read_token: ReadToken::default(),
            since: StdInstant::now(),
            bytes_in: 0,
            bytes_out: 0,
            calls: 0,
            messages_out: 0,
            fds_in: 0,
        }
    }

    /// One non-blocking read; descriptors passed alongside land in `fds`.
    pub fn read(&mut self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<Chunk> {
        let before = fds.len();
        let chunk = self.stream.read_chunk(buf, fds)?;
        self.bytes_in += chunk.n as u64;
        self.fds_in += (fds.len() - before) as u64;
        Ok(chunk)
    }

    /// Whether the writer's last attempt was refused and no writable event was handled since
    /// (read without the lock; see `writer`).
    pub fn write_blocked(&self) -> bool {
        self.write_blocked.load(Ordering::SeqCst)
    }

    /// Shut both directions down (the peer sees EOF at once, even if a descriptor of the
    /// socket lingers elsewhere).
    pub fn shutdown(&self) {
        let _ = match &*self.stream {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    /// Log the one-line summary of the connection.
    pub fn log_summary(&self, why: &str) {
        tracing::info!(
            monitor = self.monitor.0,
            listener = self.listener,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            calls = self.calls,
            messages_out = self.messages_out,
            fds_in = self.fds_in,
            duration_ms = self.since.elapsed().as_millis() as u64,
            reason = why,
            "connection closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsFd, OwnedFd};

    use qmp_core::server::MonitorId;

    use super::{Chunk, Conn, Stream};

    fn pair() -> (Conn, std::os::unix::net::UnixStream) {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = Stream::Unix(mio::net::UnixStream::from_std(ours));
        (Conn::new(MonitorId(1), 0, stream), peer)
    }

    fn read(conn: &mut Conn, buf_len: usize, fds: &mut Vec<OwnedFd>) -> Chunk {
        let mut buf = vec![0u8; buf_len];
        conn.read(&mut buf, fds).unwrap()
    }

    #[test]
    fn a_read_is_filled_when_it_took_the_whole_buffer_or_stopped_at_descriptors() {
        let (mut conn, mut peer) = pair();
        let mut fds = Vec::new();
        peer.write_all(b"abc").unwrap();
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 3,
                filled: false
            }
        );
        peer.write_all(&[b'x'; 100]).unwrap();
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 64,
                filled: true
            }
        );
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 36,
                filled: false
            }
        );
        assert!(fds.is_empty());
    }

    #[test]
    fn a_read_that_brought_descriptors_counts_as_filled() {
        use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        use std::mem::MaybeUninit;

        let (mut conn, mut peer) = pair();
        let (passed, _keep) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let passed_fds = [passed.as_fd()];
        assert!(control.push(SendAncillaryMessage::ScmRights(&passed_fds)));
        let io = [std::io::IoSlice::new(b"x")];
        assert_eq!(
            sendmsg(&peer, &io, &mut control, SendFlags::empty()).unwrap(),
            1
        );
        peer.write_all(b"yz").unwrap();
        let mut fds = Vec::new();
        // The kernel ends the read at the bytes that carried the descriptor: short, yet more
        // is queued.
        assert_eq!(read(&mut conn, 64, &mut fds), Chunk { n: 1, filled: true });
        assert_eq!(fds.len(), 1);
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 2,
                filled: false
            }
        );
    }
}
