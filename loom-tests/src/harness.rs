//! What the models need around the shim: the IO thread's sleep and wake-up, a clock, a server
//! with a few commands, and socket-side helpers (a bounded socket with writable edges for the
//! shim's writers).

use std::os::fd::OwnedFd;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use qmp_core::json::{Object, Value};
use qmp_core::server::{
    CallResult, CommandSpec, Config, FdId, Input, Instant, MonitorId, MonitorOptions, Server,
    Timestamp,
};
use qmp_io::clock::Clock;
use qmp_io::shared::{Shared, Wake};
use qmp_io::writer::{SocketWrite, Writer};

/// The monitor every model talks to.
pub const MON: MonitorId = MonitorId(1);

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

/// A shim around a fresh server with monitor [`MON`] open (OOB-capable) and negotiated, with or
/// without OOB, its greeting and negotiation reply already written. No wake is pending.
pub fn setup(oob: bool) -> (Arc<Shared>, Arc<ModelWaker>) {
    let waker = Arc::new(ModelWaker::default());
    let shared = Arc::new(Shared::new(
        server(),
        Box::new(WakeHandle(waker.clone())),
        Box::new(FixedClock),
        Vec::new(),
    ));
    shared.apply(Input::Open {
        monitor: MON,
        options: MonitorOptions {
            oob_capable: true,
            pretty: false,
        },
    });
    let negotiate: &[u8] = if oob {
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}"
    } else {
        b"{\"execute\": \"qmp_capabilities\"}"
    };
    receive(&shared, negotiate, Vec::new());
    // The dispatcher is not running yet: let the core answer the negotiation, as the
    // dispatcher's `next_in_band` would (it runs inside the core).
    if shared.lock().server.dispatcher_ready() {
        shared.apply(Input::NextInBand);
    }
    let greeting_and_reply = write_pending(&shared, usize::MAX);
    assert!(greeting_and_reply.ends_with(b"{\"return\": {}}\r\n"));
    waker.clear();
    (shared, waker)
}

/// What the IO thread does with bytes it read: adopt the descriptors and apply `Receive`
/// (the same calls as `io_thread::read_some`, without the socket).
pub fn receive(shared: &Shared, bytes: &[u8], fds: Vec<OwnedFd>) {
    let ids: Vec<FdId> = {
        let mut st = shared.lock();
        let (ids, refused) = st.adopt_fds(fds);
        assert!(refused.is_empty());
        ids
    };
    shared.apply(Input::Receive {
        monitor: MON,
        bytes: bytes.to_vec(),
        fds: ids,
    });
}

/// The IO thread's flush for [`MON`]: under the lock, take at most `max` bytes of pending
/// output, "write" them (return them) and report `Written`; descriptors the core returns are
/// closed after the lock is released.
pub fn write_pending(shared: &Shared, max: usize) -> Vec<u8> {
    let (bytes, close) = {
        let mut st = shared.lock();
        let out = st.server.pending_output(MON);
        let n = out.len().min(max);
        let bytes = out[..n].to_vec();
        let close = if n > 0 {
            st.apply_locked(shared.now(), Input::Written { monitor: MON, n })
        } else {
            Vec::new()
        };
        if st.server.pending_output(MON).is_empty() {
            st.transmit.remove(&MON);
        }
        (bytes, close)
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
}

impl ModelSocket {
    /// An empty socket holding at most `cap` unread bytes.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(ModelSocket {
            state: Mutex::new(SocketState {
                unread: Vec::new(),
                cap,
                edge: false,
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

/// Give [`MON`] a writer over `socket` (as `io_thread::open` does for a real connection);
/// returns the blocked flag the IO thread keeps.
pub fn attach_writer(shared: &Shared, socket: &Arc<ModelSocket>, planted: bool) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let writer = ModelSocketWriter {
        socket: Arc::clone(socket),
        late_blocked_flag: planted.then(|| Arc::clone(&flag)),
    };
    shared
        .lock()
        .writers
        .insert(MON, Writer::new(Box::new(writer), Arc::clone(&flag)));
    flag
}
