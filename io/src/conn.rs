//! A connection's socket (or standard input and output, [`crate::stdio`]) and the one read
//! routine both threads that read use. No lifecycle decision is made here: what a read returned goes to the
//! driver as a `ReadFact` (see `qmp_driver::conn`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use mio::net::{TcpStream, UnixStream};
use mio::Interest;
use qmp_driver::ReadFact;

use crate::scm;

/// The socket of a connection.
#[derive(Debug)]
pub enum Stream {
    /// Unix: can carry descriptors.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
    /// Standard input and output (`qmpd --monitor stdio`): two descriptors, one per direction.
    Stdio(crate::stdio::Stdio),
}

impl Stream {
    /// The descriptors to register with mio and what for: a socket for both directions,
    /// standard input for reading and standard output for writing (the stream is shared with
    /// its writer, so it is registered by descriptor rather than through `&mut`).
    pub fn poll_sources(&self) -> Vec<(RawFd, Interest)> {
        let both = Interest::READABLE | Interest::WRITABLE;
        match self {
            Stream::Unix(s) => vec![(s.as_raw_fd(), both)],
            Stream::Tcp(s) => vec![(s.as_raw_fd(), both)],
            Stream::Stdio(s) => vec![
                (s.input().as_raw_fd(), Interest::READABLE),
                (s.output().as_raw_fd(), Interest::WRITABLE),
            ],
        }
    }

    /// One non-blocking read into `buf`; descriptors passed alongside land in `fds`.
    pub fn read_chunk(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<Chunk> {
        let before = fds.len();
        let (n, cut) = match self {
            Stream::Unix(s) => scm::recv_with_fds(s, buf, fds)?,
            Stream::Tcp(s) => (scm::recv_plain(s, buf)?, false),
            Stream::Stdio(s) => (s.read(buf)?, false),
        };
        Ok(Chunk {
            n,
            filled: n == buf.len() || fds.len() > before || cut,
            cut,
        })
    }

    /// A connected stream socket from outside (QMP `add_client`), made non-blocking (see
    /// [`StdStream::from_fd`]).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Stream> {
        Ok(match StdStream::from_fd(fd)? {
            StdStream::Unix(s) => Stream::Unix(UnixStream::from_std(s)),
            StdStream::Tcp(s) => Stream::Tcp(TcpStream::from_std(s)),
        })
    }

    /// Shut both directions down (the peer sees EOF at once, even if a copy of the socket
    /// lingers in the dispatcher's reader for a moment).
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            // Nothing to tell a peer; the descriptors' copies close when it is dropped.
            Stream::Stdio(_) => Ok(()),
        };
    }
}

/// A connected stream socket from outside, for either adapter to wrap.
#[derive(Debug)]
pub enum StdStream {
    /// Unix: can carry descriptors.
    Unix(std::os::unix::net::UnixStream),
    /// TCP (IPv4 or IPv6).
    Tcp(std::net::TcpStream),
}

impl StdStream {
    /// `fd` as a stream socket, made non-blocking. Any other descriptor is an error (QEMU's
    /// `qio_channel_socket_new_fd` refuses what is not a socket).
    pub fn from_fd(fd: OwnedFd) -> io::Result<StdStream> {
        use rustix::net::{sockopt, AddressFamily, SocketType};
        if sockopt::socket_type(&fd)? != SocketType::STREAM {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let domain = sockopt::socket_domain(&fd)?;
        if domain == AddressFamily::UNIX {
            let s = std::os::unix::net::UnixStream::from(fd);
            s.set_nonblocking(true)?;
            Ok(StdStream::Unix(s))
        } else if domain == AddressFamily::INET || domain == AddressFamily::INET6 {
            let s = std::net::TcpStream::from(fd);
            s.set_nonblocking(true)?;
            let _ = s.set_nodelay(true);
            Ok(StdStream::Tcp(s))
        } else {
            Err(io::ErrorKind::InvalidInput.into())
        }
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
    /// The kernel cut descriptors (MSG_CTRUNC).
    pub cut: bool,
}

/// Turn the result of one read into the fact the driver takes.
pub fn read_fact<'a>(
    read: io::Result<Chunk>,
    buf: &'a [u8],
    fds: Vec<OwnedFd>,
) -> ReadFact<'a, OwnedFd> {
    match read {
        Ok(Chunk { n: 0, .. }) => ReadFact::Eof,
        Ok(Chunk { n, cut, .. }) => ReadFact::Data {
            bytes: &buf[..n],
            fds,
            fds_cut: cut,
            capacity: buf.len(),
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadFact::WouldBlock,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadFact::Interrupted,
        Err(e) => ReadFact::Failed(e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsFd, OwnedFd};

    use super::{Chunk, Stream};

    fn pair() -> (Stream, std::os::unix::net::UnixStream) {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Stream::Unix(mio::net::UnixStream::from_std(ours)), peer)
    }

    fn read(conn: &mut Stream, buf_len: usize, fds: &mut Vec<OwnedFd>) -> Chunk {
        let mut buf = vec![0u8; buf_len];
        conn.read_chunk(&mut buf, fds).unwrap()
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
                filled: false,
                cut: false
            }
        );
        peer.write_all(&[b'x'; 100]).unwrap();
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 64,
                filled: true,
                cut: false
            }
        );
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 36,
                filled: false,
                cut: false
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
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 1,
                filled: true,
                cut: false
            }
        );
        assert_eq!(fds.len(), 1);
        assert_eq!(
            read(&mut conn, 64, &mut fds),
            Chunk {
                n: 2,
                filled: false,
                cut: false
            }
        );
    }
}
