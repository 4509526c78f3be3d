//! What the models need around the shim: the IO thread's sleep and wake-up, a clock, a server
//! with a few commands, and socket-side helpers (a bounded socket with writable edges for the
//! shim's writers).

use std::os::fd::OwnedFd;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use qmp_core::json::{Object, Value};
use qmp_core::server::{
    CallResult, CommandSpec, Config, Instant, MonitorId, MonitorOptions, Server, Timestamp,
};
use qmp_driver::{ConnId, Driver, Limits, ListenerConfig, ReadFact, WriteFact};
use qmp_io::clock::Clock;
use qmp_io::shared::{Shared, Wake};
use qmp_io::writer::{SocketWrite, Writer};

/// The connection every model talks to (the driver's first).
pub const CONN: ConnId = ConnId(0);
/// Its monitor (slot 0 of the one listener).
pub const MON: MonitorId = MonitorId(0);

/// Upper bound on IO-thread passes in a model: each pass either makes progress or sleeps until
/// woken, so a model needing more passes than this has a livelock, not a slow schedule.
pub const MAX_PASSES: usize = 16;

/// The IO thread's `poll` sleep and the mio `Waker` that ends it, as loom primitives: a wake
/// given while the IO thread is not sleeping is remembered (as an eventfd is), wakes coalesce.
/// A lost wake-up leaves the IO thread asleep for ever, which loom reports as a deadlock.
#[derive(Default)]
pub struct ModelWaker {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl ModelWaker {
    /// Block until woken; consumes the wake.
    pub fn sleep(&self) {
        let mut w = self.woken.lock().unwrap();
        while !*w {
            w = self.cv.wait(w).unwrap();
        }
        *w = false;
    }

    /// Forget a pending wake (used once after single-threaded setup).
    pub fn clear(&self) {
        *self.woken.lock().unwrap() = false;
    }
}

/// Hands the shim a [`ModelWaker`] it can own.
pub struct WakeHandle(pub Arc<ModelWaker>);

impl Wake for WakeHandle {
    fn wake(&self) {
        *self.0.woken.lock().unwrap() = true;
        self.0.cv.notify_one();
    }
}

/// A clock that never moves: the models are about ordering, not time.
pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Instant {
        Instant(1)
    }
    fn wall(&self) -> Timestamp {
        Timestamp {
            seconds: 1_700_000_000,
            microseconds: 0,
        }
    }
}

/// An in-band command whose handler the model runs (and may block).
pub const SLOW: &str = "slow";
/// An out-of-band command.
pub const FAST_OOB: &str = "fast-oob";

fn server() -> Server {
    let mut s = Server::new(Config::default());
    for (name, allow_oob) in [(SLOW, false), (FAST_OOB, true)] {
        s.register(CommandSpec {
            name: name.into(),
            allow_oob,
            allow_preconfig: true,
            success_response: true,
            arguments: Vec::new(),
            ..CommandSpec::default()
        })
        .expect("fresh command names");
    }
    s
}

/// The adapter around a fresh driver with one connection ([`CONN`], OOB-capable) accepted and
/// negotiated, with or without OOB, its greeting and negotiation reply already written. No
/// wake is pending.
pub fn setup(oob: bool) -> (Arc<Shared>, Arc<ModelWaker>) {
    let waker = Arc::new(ModelWaker::default());
    let options = MonitorOptions {
        oob_capable: true,
        pretty: false,
    };
    let listener = ListenerConfig {
        chardev: "mon0".into(),
        clients: 1,
        options,
        readline: false,
    };
    let driver = Driver::new(server(), vec![listener], Limits::default());
    let shared = Arc::new(Shared::new(
        driver,
        Box::new(WakeHandle(waker.clone())),
        Box::new(FixedClock),
    ));
    {
        let mut st = shared.lock();
        let now = shared.now();
        assert_eq!(st.driver_mut().handle_accepted(now, 0), Some(CONN));
        assert!(st.settle().is_empty());
    }
    let negotiate: &[u8] = if oob {
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}"
    } else {
        b"{\"execute\": \"qmp_capabilities\"}"
    };
    receive(&shared, negotiate, Vec::new());
    // The dispatcher is not running yet: let the core answer the negotiation, as the
    // dispatcher's `next_in_band` would (it runs inside the core).
    {
        let mut st = shared.lock();
        let now = shared.now();
        assert_eq!(st.driver_mut().next_in_band(now), None);
    }
    let greeting_and_reply = write_pending(&shared, usize::MAX);
    assert!(greeting_and_reply.ends_with(b"{\"return\": {}}\r\n"));
    waker.clear();
    (shared, waker)
}

/// What the IO thread does with bytes it read (`io_thread::read_some` without the socket):
/// report them to the driver in one critical section (`CoreState::apply_read`, which also
/// writes the output when the connection has a writer), then signal the dispatcher if the
/// section said so.
pub fn receive(shared: &Shared, bytes: &[u8], fds: Vec<OwnedFd>) {
    let (read, dispatch) = {
        let mut st = shared.lock();
        let fact = ReadFact::Data {
            bytes,
            fds,
            fds_cut: false,
            capacity: 4096,
        };
        let read = st.apply_read(CONN, shared.now(), fact);
        (read, shared.dispatcher_wanted(&st))
    };
    drop(read);
    if dispatch {
        shared.notify_dispatcher();
    }
}

/// The IO thread's flush for [`CONN`] with a socket that takes at most `max` bytes: under the
/// lock, take them from the pending output, "write" them (return them) and report them;
/// descriptors are closed after the lock is released.
pub fn write_pending(shared: &Shared, max: usize) -> Vec<u8> {
    let (bytes, close) = {
        let mut st = shared.lock();
        let out = st.driver().pending_output(CONN);
        let n = out.len().min(max);
        let bytes = out[..n].to_vec();
        if n > 0 {
            let now = shared.now();
            st.driver_mut()
                .handle_written(now, CONN, WriteFact::Wrote(n));
        }
        (bytes, st.settle())
    };
    drop(close);
    bytes
}

/// `{}`: what the models' handlers return.
pub fn empty_return() -> CallResult {
    CallResult::Return(Value::Object(Object::new()))
}

/// `wire` cut after every `\n`: whole CRLF-terminated lines, plus a partial last one.
pub fn lines(wire: &[u8]) -> Vec<String> {
    wire.split_inclusive(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// A descriptor to pass with a request (real: the fd table keys descriptors by number).
pub fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").expect("/dev/null").into()
}

/// A connection's socket between the shim's writer and the client: at most `cap` unread bytes;
/// a write to a full socket is refused (`WouldBlock`). Every read by the client makes the
/// socket writable again: an edge for the IO thread, delivered as poll delivers one (a flag it
/// takes, and a wake).
pub struct ModelSocket {
    state: Mutex<SocketState>,
    readable: Condvar,
}

struct SocketState {
    unread: Vec<u8>,
    cap: usize,
    edge: bool,
    closed: bool,
}

impl ModelSocket {
    /// An empty socket holding at most `cap` unread bytes.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(ModelSocket {
            state: Mutex::new(SocketState {
                unread: Vec::new(),
                cap,
                edge: false,
                closed: false,
            }),
            readable: Condvar::new(),
        })
    }

    /// The client: block until bytes are there and take them all; then the writable edge
    /// (flag, then `wake`).
    pub fn read(&self, wake: &dyn Wake) -> Vec<u8> {
        let mut st = self.state.lock().unwrap();
        while st.unread.is_empty() {
            st = self.readable.wait(st).unwrap();
        }
        let bytes = std::mem::take(&mut st.unread);
        st.edge = true;
        drop(st);
        wake.wake();
        bytes
    }

    /// The IO thread drops the socket (closes the descriptor): a later write through a writer
    /// still attached would go to a closed (or reused) descriptor.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }

    /// Everything written so far and not read.
    pub fn unread(&self) -> Vec<u8> {
        self.state.lock().unwrap().unread.clone()
    }

    /// The IO thread's poll: whether a writable edge came since it last looked.
    pub fn take_edge(&self) -> bool {
        std::mem::take(&mut self.state.lock().unwrap().edge)
    }
}

/// The write half of a [`ModelSocket`], as the shim's [`Writer`] holds it.
pub struct ModelSocketWriter {
    /// The socket.
    pub socket: Arc<ModelSocket>,
    /// `Some(flag)` plants a bug: the writer marks itself blocked only *after* a refused
    /// attempt (the flag is cleared when the socket refuses, set again after), instead of
    /// before every attempt.
    pub late_blocked_flag: Option<Arc<AtomicBool>>,
}

impl SocketWrite for ModelSocketWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut st = self.socket.state.lock().unwrap();
        assert!(!st.closed, "a write to a closed socket");
        let room = st.cap.saturating_sub(st.unread.len());
        if room == 0 {
            drop(st);
            if let Some(flag) = &self.late_blocked_flag {
                flag.store(false, Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
            }
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(bytes.len());
        st.unread.extend_from_slice(&bytes[..n]);
        drop(st);
        self.socket.readable.notify_all();
        Ok(n)
    }
}

/// Give [`CONN`] a writer over `socket` (as `io_thread::open` does for a real connection);
/// returns the blocked flag the IO thread keeps.
pub fn attach_writer(shared: &Shared, socket: &Arc<ModelSocket>, planted: bool) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let writer = ModelSocketWriter {
        socket: Arc::clone(socket),
        late_blocked_flag: planted.then(|| Arc::clone(&flag)),
    };
    shared
        .lock()
        .attach(CONN, Writer::new(Box::new(writer), Arc::clone(&flag)), None);
    flag
}
