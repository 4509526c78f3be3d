//! A minimal blocking QMP client over a Unix socket: greeting, negotiation, one reply line at
//! a time.
//!
//! It owns nothing but its socket and read buffer; it never interprets more of a message than
//! the benchmarks need (is it an event, which id does it carry). Replies must be compact
//! (one message per line, QEMU's default); pretty-printed monitors are not supported.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longest line the client accepts, so a broken server cannot make it allocate without
/// bound: a 1 MiB id echoed back (the `large` mode) plus generous room for the envelope.
pub const MAX_LINE: usize = 4 << 20;

/// The capability negotiation request with OOB enabled.
pub const NEGOTIATE_OOB: &[u8] =
    b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}\n";
/// The capability negotiation request without OOB.
pub const NEGOTIATE_PLAIN: &[u8] = b"{\"execute\":\"qmp_capabilities\"}\n";

/// One connected QMP session.
pub struct Client {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    line: Vec<u8>,
    /// False after a read failed part-way (a timeout), so the next read resumes the line.
    line_complete: bool,
    greeting: Vec<u8>,
}

impl Client {
    /// Connects, sets both socket timeouts to `io_timeout`, and reads the greeting.
    pub fn connect(path: &Path, io_timeout: Duration) -> io::Result<Client> {
        let mut client = Client::connect_only(path, io_timeout)?;
        client.read_greeting()?;
        Ok(client)
    }

    /// Connects without waiting for the greeting (many connections can then be set up in
    /// overlapping phases; see the `idle` mode). Call [`Client::read_greeting`] next.
    pub fn connect_only(path: &Path, io_timeout: Duration) -> io::Result<Client> {
        let stream = UnixStream::connect(path)
            .map_err(|e| io::Error::new(e.kind(), format!("connect {}: {e}", path.display())))?;
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        let reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        Ok(Client {
            writer: stream,
            reader,
            line: Vec::with_capacity(1024),
            line_complete: true,
            greeting: Vec::new(),
        })
    }

    /// Reads and keeps the greeting.
    pub fn read_greeting(&mut self) -> io::Result<()> {
        self.read_line()?;
        if !self.line.starts_with(b"{\"QMP\"") {
            return Err(protocol(format!(
                "expected a greeting, got {}",
                preview(&self.line)
            )));
        }
        self.greeting = self.line.clone();
        Ok(())
    }

    /// Connects and negotiates capabilities (OOB enabled when `oob` is set).
    pub fn open(path: &Path, io_timeout: Duration, oob: bool) -> io::Result<Client> {
        let mut client = Client::connect(path, io_timeout)?;
        client.negotiate(oob)?;
        Ok(client)
    }

    /// The greeting line as received.
    pub fn greeting(&self) -> &[u8] {
        &self.greeting
    }

    /// Sends `qmp_capabilities` and waits for its success reply.
    pub fn negotiate(&mut self, oob: bool) -> io::Result<()> {
        self.send_negotiate(oob)?;
        self.finish_negotiate()
    }

    /// Sends `qmp_capabilities` (the first half of [`Client::negotiate`]).
    pub fn send_negotiate(&mut self, oob: bool) -> io::Result<()> {
        if oob && !contains(&self.greeting, b"\"oob\"") {
            return Err(protocol(
                "the server does not offer the oob capability".into(),
            ));
        }
        self.send(if oob { NEGOTIATE_OOB } else { NEGOTIATE_PLAIN })
    }

    /// Waits for the reply to `qmp_capabilities` (the second half of [`Client::negotiate`]).
    pub fn finish_negotiate(&mut self) -> io::Result<()> {
        let reply = self.read_reply()?;
        if !is_return(reply) {
            return Err(protocol(format!("negotiation failed: {}", preview(reply))));
        }
        Ok(())
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads the next message (reply or event), without its line terminator.
    ///
    /// After a timeout the bytes of the unfinished line are kept and the next call goes on
    /// with them.
    pub fn read_line(&mut self) -> io::Result<&[u8]> {
        if self.line_complete {
            self.line.clear();
        }
        self.line_complete = false;
        // `take` bounds the line; a line that hits the bound is reported, not truncated silently.
        let limit = (MAX_LINE + 1 - self.line.len().min(MAX_LINE)) as u64;
        let n = io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        if self.line.last() != Some(&b'\n') {
            return Err(protocol(format!(
                "line longer than {MAX_LINE} bytes or cut short"
            )));
        }
        self.line_complete = true;
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(&self.line)
    }

    /// Reads messages until one is not an event; returns that reply.
    pub fn read_reply(&mut self) -> io::Result<&[u8]> {
        // Bounded by the read timeout: a server that only ever sends events ends in an error.
        loop {
            self.read_line()?;
            if !is_event(&self.line) {
                return Ok(&self.line);
            }
        }
    }

    /// True if a whole message is already buffered, so `read_line` will not block.
    pub fn has_buffered_line(&self) -> bool {
        self.reader.buffer().contains(&b'\n')
    }

    /// Changes the read timeout (the events mode polls with a short one).
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))
    }
}

/// An `InvalidData` error carrying a description of what the server did wrong.
pub fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// True if `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// Position of the first `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An event line: QEMU (and a byte-compatible server) puts `timestamp` first.
pub fn is_event(line: &[u8]) -> bool {
    line.starts_with(b"{\"timestamp\"")
}

/// A success reply: `return` is the first member of every success reply QEMU writes.
pub fn is_return(line: &[u8]) -> bool {
    line.starts_with(b"{\"return\"")
}

/// The string id of a reply, if it has one (`"id": "x"`, with or without the space).
///
/// QEMU writes `id` last in replies (`{"return": ..., "id": ...}`) and first in errors
/// raised before dispatch (`{"id": ..., "error": ...}`); a `return` value may itself hold
/// `id` members (query-yank lists chardev ids), so the first or the last one is taken.
pub fn string_id(line: &[u8]) -> Option<&[u8]> {
    let at = if line.starts_with(b"{\"id\":") {
        1
    } else {
        rfind(line, b"\"id\":")?
    } + 5;
    let rest = &line[at..];
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

/// Position of the last `needle` in `hay`.
pub fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The first 200 bytes of a line, for error messages.
pub fn preview(line: &[u8]) -> String {
    let cut = &line[..line.len().min(200)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if line.len() > cut.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_in_both_spellings() {
        assert_eq!(
            string_id(b"{\"return\": {}, \"id\": \"o1\"}"),
            Some(&b"o1"[..])
        );
        assert_eq!(string_id(b"{\"id\":\"x\",\"error\":{}}"), Some(&b"x"[..]));
        assert_eq!(string_id(b"{\"return\": {}, \"id\": 5}"), None);
        assert_eq!(string_id(b"{\"return\": {}}"), None);
        assert_eq!(
            string_id(b"{\"return\": [{\"type\": \"chardev\", \"id\": \"c0\"}], \"id\": \"o\"}"),
            Some(&b"o"[..])
        );
    }

    #[test]
    fn events_and_returns_are_told_apart() {
        let ev = b"{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}";
        assert!(is_event(ev));
        assert!(!is_return(ev));
        assert!(is_return(b"{\"return\": {}}"));
        assert!(!is_event(b"{\"return\": {}}"));
    }
}
