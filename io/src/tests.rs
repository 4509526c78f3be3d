//! Unit tests of the adapter's locking, wake-up and write paths ([`crate::shared`],
//! [`crate::dispatcher`], [`crate::writer`], [`crate::reader`]) with the real driver behind the
//! lock, scripted sockets and a counting waker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::sync::mpsc;
use std::time::Duration;

use qmp_core::json::{Object, Value};
use qmp_core::server::{CallResult, CommandSpec, Config, Lane, MonitorId, MonitorOptions, Server};
use qmp_driver::{
    CloseReason, ConnId, Driver, Limits, ListenerConfig, ReadFact, SessionCall, WriteFact,
};

use crate::clock::SystemClock;
use crate::shared::{Shared, Wake};

/// Counts the wake-ups the adapter gives the IO thread.
struct Counter(Arc<AtomicUsize>);

impl Wake for Counter {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The first connection, and its monitor.
const M: ConnId = ConnId(0);
const MON: MonitorId = MonitorId(0);

/// An adapter whose driver knows `slow` (in-band) and `fast-oob` (OOB allowed), with one
/// listener of two slots and nothing accepted yet.
fn shared() -> (Arc<Shared>, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let mut server = Server::new(Config::default());
    for (name, allow_oob) in [("slow", false), ("fast-oob", true)] {
        server
            .register(CommandSpec {
                name: name.into(),
                allow_oob,
                allow_preconfig: true,
                success_response: true,
                arguments: Vec::new(),
                ..CommandSpec::default()
            })
            .expect("fresh command names");
    }
    let listener = ListenerConfig {
        chardev: "mon0".into(),
        clients: 2,
        options: MonitorOptions {
            oob_capable: true,
            pretty: false,
        },
        readline: false,
    };
    let driver = Driver::new(server, vec![listener], Limits::default());
    let shared = Arc::new(Shared::new(
        driver,
        Box::new(Counter(wakes.clone())),
        Box::new(SystemClock::new()),
    ));
    (shared, wakes)
}

/// Accept the next connection (as the IO thread does).
fn accept(shared: &Shared) -> ConnId {
    let mut st = shared.lock();
    let now = shared.now();
    let c = st
        .driver_mut()
        .handle_accepted(now, 0)
        .expect("a free slot");
    assert!(st.settle().is_empty());
    c
}

/// An adapter with connection `M` accepted and negotiated with OOB on, its greeting and
/// negotiation reply written.
fn negotiated() -> (Arc<Shared>, Arc<AtomicUsize>) {
    let (shared, wakes) = shared();
    assert_eq!(accept(&shared), M);
    negotiate(&shared, M);
    (shared, wakes)
}

fn negotiate(shared: &Shared, c: ConnId) {
    receive_on(
        shared,
        c,
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
    );
    // The core answers the negotiation itself when the dispatcher asks.
    {
        let mut st = shared.lock();
        let now = shared.now();
        assert_eq!(st.driver_mut().next_in_band(now), None);
    }
    take_output_of(shared, c);
}

/// What the IO thread does with a read of `c` (see `io_thread::read_some`).
fn receive_on(shared: &Shared, c: ConnId, bytes: &[u8]) {
    let (read, dispatch) = {
        let mut st = shared.lock();
        let fact = ReadFact::Data {
            bytes,
            fds: Vec::new(),
            fds_cut: false,
            capacity: 4096,
        };
        let read = st.apply_read(c, shared.now(), fact);
        (read, shared.dispatcher_wanted(&st))
    };
    drop(read);
    if dispatch {
        shared.notify_dispatcher();
    }
}

fn receive(shared: &Shared, bytes: &[u8]) {
    receive_on(shared, M, bytes);
}

/// What the IO thread would write for `c` now (reported as written).
fn take_output_of(shared: &Shared, c: ConnId) -> String {
    let mut st = shared.lock();
    let out = String::from_utf8_lossy(st.driver().pending_output(c)).into_owned();
    let now = shared.now();
    st.driver_mut()
        .handle_written(now, c, WriteFact::Wrote(out.len()));
    st.driver_mut().take_transmit(c);
    assert!(st.settle().is_empty());
    out
}

fn take_output(shared: &Shared) -> String {
    take_output_of(shared, M)
}

/// The IO thread starts a pass (the real call, under the lock).
fn io_woke(shared: &Shared) {
    let mut st = shared.lock();
    shared.io_pass_started(&mut st);
}

/// The IO thread takes its last look before sleeping (the real call, under the lock).
fn io_going_to_sleep(shared: &Shared) {
    let mut st = shared.lock();
    shared.io_last_look(&mut st);
}

fn ok() -> CallResult {
    CallResult::Return(Value::Object(Object::new()))
}

/// `M`'s socket as the IO thread would have it (its reader in the locked state, for the
/// dispatcher), and the client's end.
fn attach_socket(shared: &Shared) -> (crate::reader::Reader, std::os::unix::net::UnixStream) {
    let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let reader = crate::reader::Reader::new(
        Arc::new(crate::conn::Stream::Unix(mio::net::UnixStream::from_std(
            ours,
        ))),
        crate::reader::ReadToken::default(),
    );
    shared.lock().readers.insert(M, reader.clone());
    (reader, peer)
}

/// Run one `slow` call of `M` to the end of its run, with `next` already in the socket:
/// the dispatcher (another thread) completes it and waits for more. What it takes next
/// within `limit`, if anything.
fn end_run_with_next_in_socket(
    shared: &Arc<Shared>,
    peer: &mut std::os::unix::net::UnixStream,
    next: &[u8],
    limit: Duration,
) -> Option<SessionCall> {
    receive(shared, b"{\"execute\": \"slow\", \"id\": 1}");
    let first = shared.next_in_band().expect("request 1");
    std::io::Write::write_all(peer, next).unwrap();
    let (tx, rx) = mpsc::channel();
    let s = shared.clone();
    std::thread::spawn(move || {
        let _ = tx.send(s.complete_and_next(&first, ok()));
    });
    let got = rx.recv_timeout(limit).ok().flatten();
    if got.is_none() {
        // Release the dispatcher thread (asleep on its condition variable).
        shared.stop();
    }
    got
}

#[test]
fn the_dispatcher_reads_the_monitor_it_answered_while_it_waits() {
    let (shared, _) = negotiated();
    let (_reader, mut peer) = attach_socket(&shared);
    let next = end_run_with_next_in_socket(
        &shared,
        &mut peer,
        b"{\"execute\": \"slow\", \"id\": 2}\n",
        Duration::from_secs(10),
    )
    .expect("request 2, read by the dispatcher");
    assert_eq!(next.call.command, "slow");
    let st = shared.lock();
    assert_eq!(st.dispatcher_reads, 1);
    // The negotiation and request 1 came through the IO thread's path, request 2 (29 bytes)
    // through the dispatcher's.
    assert_eq!(st.driver().stats().reads, 3);
    // The reply to request 1 is pending for M (no writer here), request 2 runs.
    assert_eq!(st.inband_running, Some(next.call.id));
}

#[test]
fn the_dispatcher_leaves_a_connection_whose_token_is_taken() {
    let (shared, _) = negotiated();
    let (reader, mut peer) = attach_socket(&shared);
    // The IO thread is between a read and its `Receive`.
    assert!(reader.token.take_or_note());
    let next = end_run_with_next_in_socket(
        &shared,
        &mut peer,
        b"{\"execute\": \"slow\", \"id\": 2}\n",
        Duration::from_millis(300),
    );
    assert!(
        next.is_none(),
        "the dispatcher read a stream it did not hold"
    );
    assert_eq!(shared.lock().dispatcher_reads, 0);
    assert!(!reader.token.give_back());
}

#[test]
fn bytes_the_dispatcher_read_from_a_connection_closed_meanwhile_are_dropped() {
    let (shared, _) = negotiated();
    // The IO thread closed M (say, after a failed write) while the dispatcher was reading.
    {
        let mut st = shared.lock();
        let now = shared.now();
        st.driver_mut().close(now, M, CloseReason::PeerClosed);
        drop(st.settle());
    }
    let chunk = crate::conn::Chunk {
        n: 20,
        filled: false,
        cut: false,
    };
    shared.dispatcher_apply(M, b"{\"execute\": \"slow\"}\n", Vec::new(), chunk, 4096);
    let st = shared.lock();
    assert_eq!(
        st.driver().stats().misuse,
        0,
        "a Receive for a closed monitor reached the core"
    );
    assert_eq!(st.dispatcher_reads, 0);
}

#[test]
fn end_of_stream_is_left_to_the_io_thread() {
    let (shared, _) = negotiated();
    let (reader, mut peer) = attach_socket(&shared);
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let next = end_run_with_next_in_socket(&shared, &mut peer, b"", Duration::from_millis(300));
    assert!(next.is_none());
    assert_eq!(shared.lock().dispatcher_reads, 0);
    // The token is free for the IO thread, which reads the end of stream and closes.
    assert!(reader.token.take_or_note());
}

/// `next_in_band` on another thread, so that a regression (the dispatcher waiting for ever)
/// fails the test instead of hanging it.
fn next_call_within(shared: &Arc<Shared>, limit: Duration) -> Option<SessionCall> {
    let (tx, rx) = mpsc::channel();
    let s = shared.clone();
    std::thread::spawn(move || {
        let _ = tx.send(s.next_in_band());
    });
    match rx.recv_timeout(limit) {
        Ok(call) => call,
        Err(_) => {
            shared.stop();
            None
        }
    }
}

#[test]
fn complete_and_next_hands_over_the_next_call_with_the_reply_pending() {
    let (shared, _) = negotiated();
    receive(
        &shared,
        b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}",
    );
    let first = shared.next_in_band().expect("request 1");
    assert_eq!(first.call.command, "slow");
    let second = shared
        .complete_and_next(&first, ok())
        .expect("request 2 taken in the same step");
    assert_eq!(second.call.command, "slow");
    assert_ne!(second.call.id, first.call.id);
    assert_eq!(shared.lock().inband_running, Some(second.call.id));
    assert_eq!(take_output(&shared), "{\"return\": {}, \"id\": 1}\r\n");
}

#[test]
fn mid_batch_completion_wakes_only_a_sleeping_io_thread() {
    let (shared, wakes) = negotiated();
    receive(
        &shared,
        b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}{\"execute\": \"slow\", \"id\": 3}",
    );
    // The IO thread is running a pass: a completion with more calls to follow does not
    // hurry it (no wake, no hint); it finds the reply at its next look.
    io_woke(&shared);
    let before = wakes.load(Ordering::SeqCst);
    let c1 = shared.next_in_band().expect("request 1");
    io_woke(&shared);
    let c2 = shared.complete_and_next(&c1, ok()).expect("request 2");
    assert_eq!(wakes.load(Ordering::SeqCst), before);
    assert!(
        !shared.io_spin(Duration::ZERO, || false),
        "hinted mid-batch"
    );
    // The IO thread went to sleep: the next completion wakes it, batch or not.
    io_going_to_sleep(&shared);
    let c3 = shared.complete_and_next(&c2, ok()).expect("request 3");
    assert_eq!(wakes.load(Ordering::SeqCst), before + 1);
    // The end of the batch hints a running (spinning) IO thread instead of waking it.
    io_woke(&shared);
    let wakes_before_last = wakes.load(Ordering::SeqCst);
    shared.complete_in_band(&c3, ok());
    assert_eq!(wakes.load(Ordering::SeqCst), wakes_before_last);
    assert!(
        shared.io_spin(Duration::ZERO, || false),
        "batch end not hinted"
    );
    assert_eq!(
        take_output(&shared),
        "{\"return\": {}, \"id\": 1}\r\n{\"return\": {}, \"id\": 2}\r\n{\"return\": {}, \"id\": 3}\r\n"
    );
}

#[test]
fn dispatcher_takes_earlier_in_band_request_while_an_oob_call_is_pending() {
    let (shared, _) = negotiated();
    receive(
        &shared,
        b"{\"execute\": \"slow\", \"id\": \"ib\"}{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}",
    );
    let oob = shared.take_oob_call().expect("the OOB call");
    assert_eq!(oob.call.lane, Lane::OutOfBand);
    // QEMU dispatches in-band requests queued before an OOB request while the OOB handler
    // runs on the IO thread; the shim adds no rule of its own.
    let call = next_call_within(&shared, Duration::from_secs(10))
        .expect("the in-band request while the OOB call runs");
    assert_eq!(call.call.command, "slow");
    shared.complete_oob(oob.call.id, ok());
    shared.complete_in_band(&call, ok());
    assert_eq!(
        take_output(&shared),
        "{\"return\": {}, \"id\": \"o\"}\r\n{\"return\": {}, \"id\": \"ib\"}\r\n"
    );
}

#[test]
fn resume_from_another_thread_wakes_the_io_thread() {
    let (shared, wakes) = shared();
    assert_eq!(accept(&shared), M);
    // The greeting is written; from now on only the monitor's read state changes.
    take_output(&shared);
    shared.suspend(MON, true);
    assert!(!shared.lock().driver().should_read(M));
    // The IO thread found nothing to read and is going to sleep.
    io_going_to_sleep(&shared);
    let before = wakes.load(Ordering::SeqCst);
    shared.suspend(MON, false);
    assert!(shared.lock().driver().should_read(M));
    assert!(
        wakes.load(Ordering::SeqCst) > before,
        "resume did not wake the IO thread"
    );
}

/// A scripted socket (rustls-style): each write takes the next step's byte count (capped
/// at what is offered) or fails with its error kind; what it took is logged per write.
/// Asserts on drop that the script was used up.
struct Script {
    steps: std::collections::VecDeque<Result<usize, std::io::ErrorKind>>,
    log: WriteLog,
}

impl crate::writer::SocketWrite for Script {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self
            .steps
            .pop_front()
            .expect("a write the script did not expect")
        {
            Ok(n) => {
                let n = n.min(bytes.len());
                self.log.lock().unwrap().push(bytes[..n].to_vec());
                Ok(n)
            }
            Err(kind) => Err(kind.into()),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.steps.is_empty(),
                "script not used up: {:?}",
                self.steps
            );
        }
    }
}

/// What a scripted socket took, one entry per write.
type WriteLog = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// Give `M` a scripted socket; returns its write log and its blocked flag.
fn script(
    shared: &Shared,
    steps: &[Result<usize, std::io::ErrorKind>],
) -> (WriteLog, Arc<std::sync::atomic::AtomicBool>) {
    script_for(shared, M, steps)
}

/// Give monitor `m` a scripted socket; returns its write log and its blocked flag.
fn script_for(
    shared: &Shared,
    m: ConnId,
    steps: &[Result<usize, std::io::ErrorKind>],
) -> (WriteLog, Arc<std::sync::atomic::AtomicBool>) {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sock = Script {
        steps: steps.iter().cloned().collect(),
        log: log.clone(),
    };
    shared.lock().attach(
        m,
        crate::writer::Writer::new(Box::new(sock), blocked.clone()),
        None,
    );
    (log, blocked)
}

fn written(log: &std::sync::Mutex<Vec<Vec<u8>>>) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

const R1: &str = "{\"return\": {}, \"id\": 1}\r\n";
const R2: &str = "{\"return\": {}, \"id\": 2}\r\n";

#[test]
fn the_dispatcher_writes_a_batch_of_replies_in_one_write_at_its_end() {
    let (shared, _) = negotiated();
    let (log, blocked) = script(&shared, &[Ok(usize::MAX)]);
    receive(
        &shared,
        b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}",
    );
    let c1 = shared.next_in_band().expect("request 1");
    let c2 = shared.complete_and_next(&c1, ok()).expect("request 2");
    assert!(written(&log).is_empty(), "written before the batch ended");
    // The batch ends: the dispatcher writes, then waits for more work (on its own thread,
    // released by `stop`).
    let (tx, rx) = mpsc::channel();
    let s = shared.clone();
    let d = std::thread::spawn(move || {
        let _ = tx.send(s.complete_and_next(&c2, ok()).map(|c| c.call.id));
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while written(&log).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(written(&log), [format!("{R1}{R2}")]);
    {
        let st = shared.lock();
        assert!(st.driver().pending_output(M).is_empty());
        assert!(!st.driver().wants_transmit(M));
    }
    assert!(!blocked.load(Ordering::SeqCst));
    shared.stop();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(None));
    d.join().unwrap();
}

#[test]
fn a_refused_write_is_left_to_the_io_thread_until_the_socket_is_writable() {
    let (shared, wakes) = negotiated();
    // The socket takes 10 bytes, then is full.
    let (log, blocked) = script(
        &shared,
        &[Ok(10), Err(std::io::ErrorKind::WouldBlock), Ok(usize::MAX)],
    );
    receive(&shared, b"{\"execute\": \"slow\", \"id\": 1}");
    let c1 = shared.next_in_band().expect("request 1");
    io_going_to_sleep(&shared);
    let before = wakes.load(Ordering::SeqCst);
    shared.complete_in_band(&c1, ok());
    assert_eq!(written(&log), [R1[..10].to_string()]);
    // Blocked: nobody writes until the IO thread saw the socket writable again.
    assert!(blocked.load(Ordering::SeqCst));
    {
        let mut st = shared.lock();
        assert_eq!(st.driver().pending_output(M), &R1.as_bytes()[10..]);
        assert!(!st.driver().wants_transmit(M));
        assert_eq!(st.io_stats().partial_writes, 1);
        assert_eq!(st.io_stats().blocked_writes, 1);
        let mut close = Vec::new();
        assert!(matches!(
            st.flush_locked(M, shared.now(), &mut close),
            crate::writer::Flushed::Blocked
        ));
    }
    // The IO thread (asleep) was woken for the rest of the batch's work all the same.
    assert_eq!(wakes.load(Ordering::SeqCst), before + 1);
    // The writable edge: the IO thread clears the flag and writes the rest.
    let mut st = shared.lock();
    st.writable_again(M);
    assert!(!blocked.load(Ordering::SeqCst));
    assert!(st.driver().wants_transmit(M));
    let mut close = Vec::new();
    assert!(matches!(
        st.flush_locked(M, shared.now(), &mut close),
        crate::writer::Flushed::Drained
    ));
    assert!(!st.driver().wants_transmit(M));
    drop(st);
    assert_eq!(written(&log).concat(), R1);
}

#[test]
fn a_failed_write_closes_the_connection_and_leaves_its_socket_to_the_io_thread() {
    let (shared, wakes) = negotiated();
    let (log, blocked) = script(&shared, &[Err(std::io::ErrorKind::BrokenPipe)]);
    receive(&shared, b"{\"execute\": \"slow\", \"id\": 1}");
    let c1 = shared.next_in_band().expect("request 1");
    io_going_to_sleep(&shared);
    let before = wakes.load(Ordering::SeqCst);
    shared.complete_in_band(&c1, ok());
    assert!(written(&log).is_empty());
    assert!(!blocked.load(Ordering::SeqCst));
    let mut st = shared.lock();
    // The driver closed it; its writer is gone, its socket is the IO thread's to drop (woken).
    assert!(!st.driver().is_open(M));
    assert!(!st.writers.contains(M));
    assert_eq!(st.take_closed(), [M]);
    assert_eq!(wakes.load(Ordering::SeqCst), before + 1);
}

#[test]
fn an_in_band_reply_waits_for_the_out_of_band_call_of_its_connection_then_follows_its_reply() {
    let (shared, _) = negotiated();
    let (log, _) = script(&shared, &[Ok(usize::MAX)]);
    receive(&shared, b"{\"execute\": \"slow\", \"id\": 1}");
    let c1 = shared.next_in_band().expect("request 1");
    receive(&shared, b"{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}");
    assert!(shared.lock().driver().has_oob_calls());
    // The in-band handler returns while the OOB call is outstanding: held back by the driver.
    shared.complete_in_band(&c1, ok());
    assert!(written(&log).is_empty());
    assert!(shared.lock().driver().pending_output(M).is_empty());
    // The IO thread runs the OOB call: its reply first, then the in-band one.
    let oob = shared.take_oob_call().expect("the OOB call");
    shared.complete_oob(oob.call.id, ok());
    let mut close = Vec::new();
    let now = shared.now();
    let _ = shared.lock().flush_locked(M, now, &mut close);
    assert_eq!(
        written(&log).concat(),
        "{\"return\": {}, \"id\": \"o\"}\r\n{\"return\": {}, \"id\": 1}\r\n"
    );
}

/// `n` in-band requests `slow` with ids `1..=n`, in one chunk.
fn requests(n: usize) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("{{\"execute\": \"slow\", \"id\": {i}}}").into_bytes())
        .collect()
}

fn reply(id: usize) -> String {
    format!("{{\"return\": {{}}, \"id\": {id}}}\r\n")
}

#[test]
fn the_io_thread_leaves_a_runs_replies_to_the_dispatcher_for_a_bounded_time() {
    let (shared, _) = negotiated();
    receive(&shared, &requests(2));
    let c1 = shared.next_in_band().expect("request 1");
    let _c2 = shared.complete_and_next(&c1, ok()).expect("request 2");
    let st = shared.lock();
    assert_eq!(st.driver().pending_output(M), reply(1).as_bytes());
    let taken = st.inband_run.expect("a run in progress").call_taken;
    let bound = crate::tuning::WRITE_LEFT_TO_DISPATCHER.as_nanos() as u64;
    let until = taken.plus_nanos(bound);
    // The dispatcher is to write reply 1 with reply 2: the IO thread leaves it until then.
    assert_eq!(st.write_left_to_dispatcher(M, taken), Some(until));
    assert_eq!(
        st.write_left_to_dispatcher(M, taken.plus_nanos(bound - 1)),
        Some(until)
    );
    // No longer once the bound has passed (a handler that blocks), nor for other monitors.
    assert_eq!(st.write_left_to_dispatcher(M, until), None);
    assert_eq!(st.write_left_to_dispatcher(ConnId(4), taken), None);
    drop(st);
    // Nor while an out-of-band call is queued: its reply goes out at once.
    receive(&shared, b"{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}");
    let st = shared.lock();
    assert!(st.driver().has_oob_calls());
    assert_eq!(st.write_left_to_dispatcher(M, taken), None);
}

#[test]
fn nothing_is_left_to_the_dispatcher_between_runs() {
    let (shared, _) = negotiated();
    let (log, _) = script(&shared, &[Ok(usize::MAX)]);
    receive(&shared, &requests(1));
    let c1 = shared.next_in_band().expect("request 1");
    shared.complete_in_band(&c1, ok());
    assert_eq!(written(&log), [reply(1)]);
    let st = shared.lock();
    assert_eq!(st.inband_run, None);
    assert_eq!(st.write_left_to_dispatcher(M, shared.now()), None);
}

#[test]
fn a_run_of_calls_is_written_after_run_write_calls_of_them() {
    let (shared, _) = negotiated();
    let max = crate::tuning::RUN_WRITE_CALLS as usize;
    let (log, _) = script(&shared, &[Ok(usize::MAX), Ok(usize::MAX)]);
    // One more request than a run holds; the core queues them all (they came in one read).
    receive(&shared, &requests(max + 1));
    let mut call = shared.next_in_band().expect("request 1");
    for i in 1..max {
        call = shared
            .complete_and_next(&call, ok())
            .unwrap_or_else(|| panic!("request {}", i + 1));
        assert!(written(&log).is_empty(), "written after {i} calls");
    }
    // The run's last call completes: its replies go out although another call follows.
    let last = shared
        .complete_and_next(&call, ok())
        .expect("the extra request");
    let run: String = (1..=max).map(reply).collect();
    assert_eq!(written(&log), std::slice::from_ref(&run));
    assert_eq!(shared.lock().inband_run.map(|r| r.calls), Some(1));
    shared.complete_in_band(&last, ok());
    assert_eq!(written(&log), [run, reply(max + 1)]);
}

#[test]
fn a_run_ends_when_the_next_call_is_another_connections() {
    let (shared, _) = negotiated();
    let n = accept(&shared);
    negotiate(&shared, n);
    let (log_m, _) = script(&shared, &[Ok(usize::MAX)]);
    let (log_n, _) = script_for(&shared, n, &[Ok(usize::MAX)]);
    receive(&shared, &requests(1));
    receive_on(&shared, n, b"{\"execute\": \"slow\", \"id\": \"n\"}");
    let c1 = shared.next_in_band().expect("M's request");
    assert_eq!(c1.session, M);
    let c2 = shared.complete_and_next(&c1, ok()).expect("N's request");
    assert_eq!(c2.session, n);
    // M's run ended with its one call: its reply is out before N's call runs.
    assert_eq!(written(&log_m), [reply(1)]);
    assert!(written(&log_n).is_empty());
    shared.complete_in_band(&c2, ok());
    assert_eq!(written(&log_n), ["{\"return\": {}, \"id\": \"n\"}\r\n"]);
}
