//! One accepted client connection as the IO thread sees it: the socket, its readiness flags and
//! the counters for the summary line logged when it closes.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::time::Instant as StdInstant;

use mio::net::{TcpStream, UnixStream};
use qmp_core::server::MonitorId;

use crate::scm;

/// The socket of a connection.
#[derive(Debug)]
pub enum Stream {
    /// Unix: can carry descriptors.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
}

impl Stream {
    /// The mio source to register.
    pub fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

/// An open connection (one monitor).
#[derive(Debug)]
pub struct Conn {
    /// The core's name for it.
    pub monitor: MonitorId,
    /// Index of the listener that accepted it.
    pub listener: usize,
    /// The socket.
    pub stream: Stream,
    /// The socket may have bytes to read (set by a readable event, cleared on EAGAIN). mio is
    /// edge-triggered, so a connection that stopped reading because the core did not want
    /// input must be read again later without waiting for a new event.
    pub read_ready: bool,
    /// The last write hit EAGAIN; wait for a writable event.
    pub write_blocked: bool,
    /// When it was accepted.
    pub since: StdInstant,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Handler calls made for it (built-ins answered by the core are not counted).
    pub calls: u64,
    /// Messages written (counted by their `\n` terminators).
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
            stream,
            read_ready: true,
            write_blocked: false,
            since: StdInstant::now(),
            bytes_in: 0,
            bytes_out: 0,
            calls: 0,
            messages_out: 0,
            fds_in: 0,
        }
    }

    /// One non-blocking read; descriptors passed alongside land in `fds`.
    pub fn read(&mut self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        let before = fds.len();
        let n = match &mut self.stream {
            Stream::Unix(s) => scm::recv_with_fds(&*s, buf, fds)?,
            Stream::Tcp(s) => scm::recv_plain(s, buf)?,
        };
        self.bytes_in += n as u64;
        self.fds_in += (fds.len() - before) as u64;
        Ok(n)
    }

    /// One non-blocking write.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = match &mut self.stream {
            Stream::Unix(s) => s.write(bytes)?,
            Stream::Tcp(s) => s.write(bytes)?,
        };
        self.bytes_out += n as u64;
        self.messages_out += bytes[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(n)
    }

    /// Shut both directions down (the peer sees EOF at once, even if a descriptor of the
    /// socket lingers elsewhere).
    pub fn shutdown(&self) {
        let _ = match &self.stream {
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
