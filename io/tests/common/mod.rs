//! Test helpers: start the demo machine on real sockets in a temp dir, and a small blocking
//! client with timeouts so that every test stops by itself.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use qmp_core::json::{Object, Value};
use qmp_core::server::{Config, Dialect};
use qmp_io::demo::Machine;
use qmp_io::{ListenSpec, QmpServerBuilder, RunningServer};

/// How long a test waits for an expected message before failing.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(300);

/// The version object tests run with.
pub fn test_version() -> Value {
    let mut q = Object::new();
    // QEMU builds VersionTriple as major, minor, micro; the writer derives the wire order from it.
    q.insert("major", Value::Int(7));
    q.insert("minor", Value::Int(2));
    q.insert("micro", Value::Int(22));
    let mut v = Object::new();
    v.insert("qemu", Value::Object(q));
    v.insert("package", Value::string("test"));
    Value::Object(v)
}

/// The greeting of an OOB-capable monitor with [`test_version`].
pub const GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"test\"}, \"capabilities\": [\"oob\"]}}\r\n";

/// A fresh temp directory.
pub fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "qmp-io-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A running demo machine and its socket paths.
pub struct Demo {
    pub server: Option<RunningServer>,
    pub dir: PathBuf,
}

impl Demo {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Start the demo machine with `specs` (paths relative to a fresh temp dir, written as
/// `unix:NAME,...`).
pub fn start(specs: &[&str]) -> Demo {
    start_with(specs, Dialect::Qemu72, |b| b)
}

pub fn start_with(
    specs: &[&str],
    dialect: Dialect,
    extra: impl FnOnce(QmpServerBuilder) -> QmpServerBuilder,
) -> Demo {
    let dir = temp_dir();
    let config = Config {
        dialect,
        version: test_version(),
        ..Config::default()
    };
    let machine = Machine::new(&config.version);
    let mut b = QmpServerBuilder::new(config);
    for s in specs {
        let s = match s.strip_prefix("unix:") {
            Some(rest) => format!("unix:{}", dir.join(rest).display()),
            None => s.to_string(),
        };
        b = b.listen(ListenSpec::parse(&s).expect("spec"));
    }
    b = b.commands(|r| machine.register(r, true));
    let m = machine.clone();
    b = b.on_shutdown(move || m.release());
    b = extra(b);
    let server = b.build().expect("build").spawn().expect("spawn");
    Demo {
        server: Some(server),
        dir,
    }
}

/// A blocking client with a read timeout.
pub struct Client {
    pub sock: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        // The socket file appears at bind(), a moment before listen(): a connect in between is
        // refused, so a server that has just started is given a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let sock = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Client {
            sock,
            buf: Vec::new(),
        }
    }

    /// A client over a socket connected some other way (a socketpair's end passed to the
    /// server, say).
    pub fn from_stream(sock: UnixStream) -> Client {
        Client {
            sock,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, s: &str) {
        self.sock.write_all(s.as_bytes()).expect("send");
    }

    /// Read until `n` bytes ending in CRLF make one message; panics after [`TIMEOUT`].
    pub fn read_msg(&mut self) -> String {
        self.read_msg_within(TIMEOUT).unwrap_or_else(|| {
            panic!(
                "no message within {TIMEOUT:?}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    pub fn read_msg_within(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..p + 2).collect();
                return Some(String::from_utf8(line).expect("utf8"));
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut b = [0u8; 65536];
            match self.sock.read(&mut b) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Everything that arrives within `limit` (no framing).
    pub fn read_all_within(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut b = [0u8; 65536];
            match self.sock.read(&mut b) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        }
        String::from_utf8(std::mem::take(&mut self.buf)).expect("utf8")
    }

    /// True when the server closed the connection (EOF) within `limit`.
    pub fn eof_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut b = [0u8; 4096];
            match self.sock.read(&mut b) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }

    /// Read the greeting and negotiate (with OOB when `oob`).
    pub fn negotiate(&mut self, oob: bool) {
        let g = self.read_msg();
        assert!(g.starts_with("{\"QMP\""), "{g}");
        if oob {
            self.send(
                "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}\n",
            );
        } else {
            self.send("{\"execute\": \"qmp_capabilities\"}\n");
        }
        assert_eq!(self.read_msg(), "{\"return\": {}}\r\n");
    }
}

/// Replace event timestamps by `S`/`U` so transcripts can be compared.
pub fn mask_ts(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(p) = rest.find("\"seconds\": ") {
        out.push_str(&rest[..p]);
        out.push_str("\"seconds\": S");
        rest = &rest[p + "\"seconds\": ".len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '-')
            .unwrap_or(rest.len());
        rest = &rest[end..];
        if let Some(q) = rest.strip_prefix(", \"microseconds\": ") {
            out.push_str(", \"microseconds\": U");
            let end = q
                .find(|c: char| !c.is_ascii_digit() && c != '-')
                .unwrap_or(q.len());
            rest = &q[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Send `bytes` with `fds` attached (SCM_RIGHTS).
pub fn send_with_fds(sock: &UnixStream, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    let n = sendmsg(
        sock,
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .expect("sendmsg");
    assert_eq!(n, bytes.len());
}

/// A pipe, whose write end a test passes with SCM_RIGHTS and whose read end tells when every
/// copy of the write end was closed (see [`writer_closed`]).
pub fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    rustix::pipe::pipe().expect("pipe")
}

/// True when every writer of the pipe has been closed (read returns 0) within `limit`.
pub fn writer_closed(read_end: &std::os::fd::OwnedFd, limit: Duration) -> bool {
    rustix::io::ioctl_fionbio(read_end, true).expect("nonblock");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut b = [0u8; 16];
        match rustix::io::read(read_end, &mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("read: {e}"),
        }
    }
    false
}
