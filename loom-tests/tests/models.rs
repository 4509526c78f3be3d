//! The nine loom models of the shim's threads, each with the planted bug it must catch.
//!
//! Every model runs the shim's real `Shared` code under loom; a `planted_*` test runs the same
//! model with one step replaced by a deliberately wrong composition of the same real pieces
//! (the wake-up or the lock in the wrong place) and must fail (`#[should_panic]`), which shows
//! the model can see that class of bug. Run with `make loom`.
#![cfg(loom)]

use std::mem::ManuallyDrop;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use qmp_core::json::Object;
use qmp_core::server::CallResult;
use qmp_driver::{CloseReason, SessionCall};
use qmp_io::reader::ReadToken;
use qmp_io::shared::Shared;
use qmp_io::shared::Wake;
use qmp_loom::harness::{
    attach_writer, devnull, empty_return, lines, receive, setup, write_pending, ModelSocket,
    WakeHandle, CONN, FAST_OOB, MAX_PASSES, MON,
};

/// The IO thread's last look before it sleeps (`io_thread::last_look`: the real call, under
/// the lock).
fn last_look(shared: &Shared) {
    let mut st = shared.lock();
    shared.io_last_look(&mut st);
}

/// The IO thread starts a pass (`io_thread::begin_pass`: the real call, under the lock).
fn pass_started(shared: &Shared) {
    let mut st = shared.lock();
    shared.io_pass_started(&mut st);
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(f);
}

// ---------------------------------------------------------------------------------------------
// 1. The dispatcher completes an in-band call while the IO thread is about to sleep: no lost
//    wake-up, the reply is written and the monitor (suspended by its in-flight request, OOB
//    off) reads again.

/// How the dispatcher reports a result in model 1.
type Complete = fn(&Shared, &SessionCall, CallResult);

fn real_complete(shared: &Shared, call: &SessionCall, result: CallResult) {
    shared.complete_in_band(call, result);
}

/// The completion alone, in one critical section, with nobody told.
fn complete_silently(shared: &Shared, call: &SessionCall, result: CallResult) {
    let close = {
        let mut st = shared.lock();
        let now = shared.now();
        st.driver_mut().complete(now, call.call.id, result);
        st.settle()
    };
    drop(close);
}

/// Planted: the result is applied but the IO thread is never woken.
fn complete_without_wake(shared: &Shared, call: &SessionCall, result: CallResult) {
    complete_silently(shared, call, result);
}

/// Planted: the IO thread is woken *before* the result is in the state, so it can look, find
/// nothing, and go back to sleep for good.
fn wake_before_complete(shared: &Shared, call: &SessionCall, result: CallResult) {
    shared.wake_io();
    complete_silently(shared, call, result);
}

/// `idle_first`: the IO thread marks itself idle before its last look at the state (the real
/// order); false plants the bug of marking it idle after the look, just before sleeping.
fn completion_wakes_io(complete: Complete, idle_first: bool) {
    model(move || {
        let (shared, waker) = setup(false);
        // ManuallyDrop: when loom reports the planted deadlock, unwinding this thread must not
        // drop loom objects (see model 5).
        let (shared, waker) = (ManuallyDrop::new(shared), ManuallyDrop::new(waker));
        receive(&shared, b"{\"execute\": \"slow\", \"id\": 1}", Vec::new());
        assert!(
            !shared.lock().server().wants_read(MON),
            "OOB off: suspended while in flight"
        );
        waker.clear();

        let d = Arc::clone(&shared);
        let dispatcher = thread::spawn(move || {
            let call = d.next_in_band().expect("the queued request");
            complete(&d, &call, empty_return());
        });

        // The IO thread: write what is pending; done once the reply is out and the monitor
        // reads again; otherwise sleep until woken.
        let mut wire = Vec::new();
        let mut passes = 0;
        loop {
            passes += 1;
            assert!(passes <= MAX_PASSES, "IO thread livelock");
            if idle_first {
                last_look(&shared);
            }
            wire.extend(write_pending(&shared, usize::MAX));
            if !wire.is_empty() && shared.lock().driver().should_read(CONN) {
                break;
            }
            if !idle_first {
                last_look(&shared);
            }
            waker.sleep();
            pass_started(&shared);
        }
        dispatcher.join().unwrap();
        assert_eq!(lines(&wire), ["{\"return\": {}, \"id\": 1}\r\n"]);
        drop(ManuallyDrop::into_inner(shared));
        drop(ManuallyDrop::into_inner(waker));
    });
}

#[test]
fn m1_completion_wakes_the_io_thread() {
    completion_wakes_io(real_complete, true);
}

#[test]
#[should_panic]
fn m1_planted_completion_without_wake() {
    completion_wakes_io(complete_without_wake, true);
}

#[test]
#[should_panic]
fn m1_planted_wake_before_completion() {
    completion_wakes_io(wake_before_complete, true);
}

#[test]
#[should_panic]
fn m1_planted_io_thread_idle_after_its_last_look() {
    completion_wakes_io(real_complete, false);
}

// ---------------------------------------------------------------------------------------------
// 2. A completion races with the connection's close: the dispatcher's write of the reply
//    never reaches the closed socket, nothing is misused, the descriptor passed with the
//    request is closed exactly once.

/// How the IO thread closes the connection in model 2.
type Close = fn(&Shared, &ModelSocket);

/// The real order (`io_thread`: the driver closes the connection and `settle` removes its
/// writer in one critical section; the socket is dropped after, outside the lock).
fn real_close(shared: &Shared, socket: &ModelSocket) {
    let close = {
        let mut st = shared.lock();
        let now = shared.now();
        st.driver_mut().close(now, CONN, CloseReason::PeerClosed);
        let close = st.settle();
        assert_eq!(st.take_closed(), [CONN]);
        close
    };
    drop(close);
    socket.close();
}

/// Planted: the socket is dropped before the driver is told (its writer still attached), so a
/// reply completed in between is written to a closed descriptor.
fn socket_closed_first(shared: &Shared, socket: &ModelSocket) {
    socket.close();
    let close = {
        let mut st = shared.lock();
        let now = shared.now();
        st.driver_mut().close(now, CONN, CloseReason::PeerClosed);
        st.settle()
    };
    drop(close);
}

fn completion_races_close(close: Close) {
    model(move || {
        let (shared, _waker) = setup(false);
        let socket = ModelSocket::new(4096);
        let _blocked = attach_writer(&shared, &socket, false);
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": 2}",
            vec![devnull()],
        );
        assert_eq!(shared.lock().driver().fds_held(), 1);

        let d = shared.clone();
        let dispatcher = thread::spawn(move || {
            // The request may be dropped by the close before the dispatcher sees it; then it
            // waits until the adapter stops.
            while let Some(call) = d.next_in_band() {
                d.complete_in_band(&call, empty_return());
            }
        });

        close(&shared, &socket);
        shared.stop();
        dispatcher.join().unwrap();

        let st = shared.lock();
        assert!(!st.driver().is_open(CONN));
        assert_eq!(
            st.driver().stats().misuse,
            0,
            "the adapter misused the core"
        );
        assert_eq!(st.driver().fds_held(), 0, "descriptor still held");
        assert_eq!(
            st.driver().fds_closed(),
            1,
            "descriptor not closed exactly once"
        );
        assert!(st.server().held_fds().is_empty());
        assert_eq!(st.server().outstanding_calls().count(), 0);
    });
}

#[test]
fn m2_completion_races_close() {
    completion_races_close(real_close);
}

#[test]
#[should_panic]
fn m2_planted_socket_closed_before_its_writer_is_removed() {
    completion_races_close(socket_closed_first);
}

// ---------------------------------------------------------------------------------------------
// 3. An event emitted from a third thread during a partial write: no line is ever interleaved.

/// How the event source emits in model 3.
type Emit = fn(&Shared, &Mutex<Vec<u8>>);

fn real_emit(shared: &Shared, _socket: &Mutex<Vec<u8>>) {
    shared.emit_event("STOP", Object::new());
}

/// Planted: the emitting thread flushes the monitor's output to the socket itself (as QEMU
/// did before output moved to the IO thread), while the IO thread may be mid-line.
fn emit_and_write(shared: &Shared, socket: &Mutex<Vec<u8>>) {
    shared.emit_event("STOP", Object::new());
    let bytes = write_pending(shared, usize::MAX);
    socket.lock().unwrap().extend(bytes);
}

/// Bytes the IO thread writes per `write` call: small, so every line takes several writes.
const PARTIAL: usize = 16;

fn event_during_partial_write(emit: Emit) {
    model(move || {
        let (shared, waker) = setup(true);
        // A reply to write, partially, while the event arrives.
        receive(
            &shared,
            b"{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}",
            Vec::new(),
        );
        let call = shared.take_oob_call().expect("an OOB call");
        assert_eq!(call.call.command, FAST_OOB);
        shared.complete_oob(call.call.id, empty_return());
        waker.clear();

        let socket = Arc::new(Mutex::new(Vec::new()));
        // Set by the event source when it is done, so the IO thread knows when to stop
        // (harness bookkeeping, not part of the shim).
        let done = Arc::new(AtomicBool::new(false));
        let (e, s, d, w) = (shared.clone(), socket.clone(), done.clone(), waker.clone());
        let emitter = thread::spawn(move || {
            emit(&e, &s);
            d.store(true, Ordering::SeqCst);
            // Harness bookkeeping: straight to the model waker, past the shim's coalescing
            // (which only covers work left in the shim's state).
            WakeHandle(w).wake();
        });

        let mut passes = 0;
        loop {
            passes += 1;
            assert!(passes <= 4 * MAX_PASSES, "IO thread livelock");
            last_look(&shared);
            let chunk = write_pending(&shared, PARTIAL);
            let idle = chunk.is_empty();
            socket.lock().unwrap().extend(chunk);
            if idle {
                if done.load(Ordering::SeqCst)
                    && shared.lock().driver().pending_output(CONN).is_empty()
                {
                    break;
                }
                waker.sleep();
                pass_started(&shared);
            }
        }
        emitter.join().unwrap();
        let wire = socket.lock().unwrap().clone();
        let got = lines(&wire);
        let reply = "{\"return\": {}, \"id\": \"o\"}\r\n".to_owned();
        let event = "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n".to_owned();
        assert!(
            got == [reply.clone(), event.clone()] || got == [event, reply],
            "interleaved output: {got:?}"
        );
    });
}

#[test]
fn m3_event_during_partial_write() {
    event_during_partial_write(real_emit);
}

#[test]
#[should_panic]
fn m3_planted_event_written_by_its_own_thread() {
    event_during_partial_write(emit_and_write);
}

// ---------------------------------------------------------------------------------------------
// 4. External suspend/resume from other threads stay balanced, and the monitor reads again
//    afterwards: the IO thread, which skips a suspended monitor, is woken when it may read.

/// How another subsystem resumes the monitor in model 4.
type Resume = fn(&Shared);

fn real_resume(shared: &Shared) {
    shared.suspend(MON, false);
}

/// Planted: the resume is applied under the lock but nobody tells the IO thread.
fn resume_without_wake(shared: &Shared) {
    let close = {
        let mut st = shared.lock();
        let now = shared.now();
        st.driver_mut().suspend(now, MON, false);
        st.settle()
    };
    drop(close);
}

fn suspend_resume_balanced(resume: Resume) {
    model(move || {
        let (shared, waker) = setup(false);
        // Two subsystems, each suspending then resuming.
        let mut others = Vec::new();
        for _ in 0..2 {
            let s = shared.clone();
            others.push(thread::spawn(move || {
                s.suspend(MON, true);
                resume(&s);
            }));
        }
        // The real dispatcher: the core answers the built-in command inside `next_in_band`.
        // (A request read while a suspend was racing in is only buffered by the core, and
        // queued when the monitor resumes: then only the dispatcher can take it.)
        let d = shared.clone();
        let dispatcher = thread::spawn(move || {
            while let Some(call) = d.next_in_band() {
                d.complete_in_band(&call, empty_return());
            }
        });
        // The IO thread has one request waiting in the socket: it reads it only while the
        // monitor wants input, and sleeps otherwise.
        let mut read = false;
        let mut wire = Vec::new();
        let mut passes = 0;
        while !read || wire.is_empty() {
            passes += 1;
            assert!(passes <= MAX_PASSES, "IO thread livelock");
            last_look(&shared);
            let wants = shared.lock().driver().should_read(CONN);
            if !read && wants {
                receive(
                    &shared,
                    b"{\"execute\": \"query-version\", \"id\": 4}",
                    Vec::new(),
                );
                read = true;
            }
            wire.extend(write_pending(&shared, usize::MAX));
            if !read || wire.is_empty() {
                waker.sleep();
                pass_started(&shared);
            }
        }
        for t in others {
            t.join().unwrap();
        }
        shared.stop();
        dispatcher.join().unwrap();
        let st = shared.lock();
        assert_eq!(st.server().suspend_count(MON), 0, "suspends not balanced");
        assert!(st.server().wants_read(MON));
        assert_eq!(st.driver().stats().misuse, 0);
        assert!(String::from_utf8_lossy(&wire).contains("\"id\": 4"));
    });
}

#[test]
fn m4_suspend_resume_balanced() {
    suspend_resume_balanced(real_resume);
}

#[test]
#[should_panic]
fn m4_planted_resume_without_wake() {
    suspend_resume_balanced(resume_without_wake);
}

// ---------------------------------------------------------------------------------------------
// 5. An out-of-band call completes while an in-band handler is blocked: handlers run without
//    the lock, so the IO thread can run and answer the OOB request meanwhile.

/// How the dispatcher runs its (blocking) handler in model 5.
type RunBlocked = fn(&Shared, &Gate);

/// Opened by the IO thread once the OOB reply is on the wire.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut o = self.open.lock().unwrap();
        while !*o {
            o = self.cv.wait(o).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

fn real_blocked_handler(_shared: &Shared, gate: &Gate) {
    gate.wait();
}

/// Planted: the handler runs with the server lock held.
fn handler_under_lock(shared: &Shared, gate: &Gate) {
    // ManuallyDrop: see the dispatcher thread in `oob_while_inband_blocked`.
    let st = ManuallyDrop::new(shared.lock());
    gate.wait();
    drop(ManuallyDrop::into_inner(st));
}

fn oob_while_inband_blocked(run: RunBlocked) {
    model(move || {
        let (shared, waker) = setup(true);
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": \"ib\"}{\"exec-oob\": \"fast-oob\", \"id\": \"o\"}",
            Vec::new(),
        );
        waker.clear();
        let gate = Arc::new(Gate::default());

        // ManuallyDrop: if loom reports a deadlock while this thread is blocked, unwinding it
        // must not drop loom objects (that calls into the finished execution and aborts).
        let (d, g) = (
            ManuallyDrop::new(shared.clone()),
            ManuallyDrop::new(gate.clone()),
        );
        let dispatcher = thread::spawn(move || {
            let call = d.next_in_band().expect("the in-band request");
            run(&d, &g);
            d.complete_in_band(&call, empty_return());
            drop(ManuallyDrop::into_inner(d));
            drop(ManuallyDrop::into_inner(g));
        });

        // The IO thread: run the OOB call (unlocked), complete it, write the reply, then let
        // the in-band handler finish and write its reply.
        let call = shared.take_oob_call().expect("the OOB call");
        shared.complete_oob(call.call.id, empty_return());
        let mut wire = write_pending(&shared, usize::MAX);
        assert_eq!(lines(&wire), ["{\"return\": {}, \"id\": \"o\"}\r\n"]);
        gate.open();
        let mut passes = 0;
        while lines(&wire).len() < 2 {
            passes += 1;
            assert!(passes <= MAX_PASSES, "IO thread livelock");
            last_look(&shared);
            let more = write_pending(&shared, usize::MAX);
            if more.is_empty() {
                waker.sleep();
                pass_started(&shared);
            }
            wire.extend(more);
        }
        dispatcher.join().unwrap();
        assert_eq!(lines(&wire)[1], "{\"return\": {}, \"id\": \"ib\"}\r\n");
    });
}

#[test]
fn m5_oob_while_inband_blocked() {
    oob_while_inband_blocked(real_blocked_handler);
}

#[test]
#[should_panic]
fn m5_planted_handler_under_lock() {
    oob_while_inband_blocked(handler_under_lock);
}

// ---------------------------------------------------------------------------------------------
// 6. Both threads spin before they sleep (`Shared::io_spin`, the spin in `next_in_band`), and
//    the dispatcher takes its next call in the same step as it completes the last
//    (`complete_and_next`), hurrying the IO thread only at the end of a batch: two requests read
//    while the dispatcher spins or sleeps are both run, and both replies are written, in order,
//    whether the hints were seen during the spins or missed.

/// How the IO thread ends a pass that found nothing to do in model 6.
type Idle = fn(&Shared, &qmp_loom::harness::ModelWaker);

/// The real order: spin (hint or nothing), and only after a spin that found nothing, the last
/// look (marking itself idle first), then sleep.
fn spin_then_last_look(shared: &Shared, waker: &qmp_loom::harness::ModelWaker) {
    if shared.io_spin(std::time::Duration::ZERO, || false) {
        return;
    }
    last_look(shared);
    if !shared.lock().driver().pending_output(CONN).is_empty() {
        return;
    }
    waker.sleep();
}

/// Planted: the IO thread trusts its spin: nothing seen while spinning, so it sleeps without
/// a last look. A completion during the spin only set the hint (the IO thread was not idle),
/// so nobody wakes it.
fn sleep_after_spin(shared: &Shared, waker: &qmp_loom::harness::ModelWaker) {
    if shared.io_spin(std::time::Duration::ZERO, || false) {
        return;
    }
    last_look(shared);
    waker.sleep();
}

fn spinning_threads(idle: Idle) {
    model(move || {
        let (shared, waker) = setup(true);
        // ManuallyDrop: see model 1.
        let (shared, waker) = (ManuallyDrop::new(shared), ManuallyDrop::new(waker));
        // ManuallyDrop: see model 5 (the dispatcher is blocked when the planted bug deadlocks).
        let d = ManuallyDrop::new(Arc::clone(&shared));
        // The real dispatcher loop (`qmp_io::dispatcher::run` without a registry).
        let dispatcher = thread::spawn(move || {
            let mut next = d.next_in_band();
            while let Some(call) = next {
                next = d.complete_and_next(&call, empty_return());
            }
            drop(ManuallyDrop::into_inner(d));
        });
        // The IO thread: the two requests arrive in one read, while the dispatcher spins or
        // sleeps on an empty queue.
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}",
            Vec::new(),
        );
        let mut wire = Vec::new();
        let mut passes = 0;
        loop {
            passes += 1;
            assert!(passes <= MAX_PASSES, "IO thread livelock");
            pass_started(&shared);
            wire.extend(write_pending(&shared, usize::MAX));
            if lines(&wire).len() == 2 {
                break;
            }
            idle(&shared, &waker);
        }
        shared.stop();
        dispatcher.join().unwrap();
        assert_eq!(
            lines(&wire),
            [
                "{\"return\": {}, \"id\": 1}\r\n",
                "{\"return\": {}, \"id\": 2}\r\n"
            ]
        );
        assert_eq!(shared.lock().driver().stats().misuse, 0);
        drop(ManuallyDrop::into_inner(shared));
        drop(ManuallyDrop::into_inner(waker));
    });
}

#[test]
fn m6_spinning_threads() {
    spinning_threads(spin_then_last_look);
}

#[test]
#[should_panic]
fn m6_planted_sleep_after_spin_without_last_look() {
    spinning_threads(sleep_after_spin);
}

// ---------------------------------------------------------------------------------------------
// 7. The dispatcher writes a batch's replies itself (`complete_and_next`, `writer`), into a
//    socket too small for them: it takes part, refuses the rest, and the IO thread writes the
//    rest when the client's read makes the socket writable (an edge it checks against the
//    writer's blocked flag without the lock). Both replies reach the client, whole and in
//    order, with no lost edge and no lost wake-up.
//
// 8. While the dispatcher runs a batch of one monitor's calls, the IO thread leaves that
//    monitor's output to the dispatcher's write at the end of the run
//    (`CoreState::write_left_to_dispatcher`, see `writer`), and sleeps when that is all it has.
//    The clock is stopped here, so the time bound never frees the output: the run's end must.
//    The dispatcher's write is refused part-way, so the IO thread must take over the rest once
//    the run is over. The planted IO thread keeps leaving the output after the run ended.
//
// Both models are one: model 7 is the IO thread that never leaves output to the dispatcher.

/// Whether the IO thread leaves `MON`'s output to the dispatcher, under the lock.
type Leaves = fn(&qmp_io::shared::CoreState) -> bool;

/// Model 7's IO thread: it writes whatever is queued.
fn never_leaves(_: &qmp_io::shared::CoreState) -> bool {
    false
}

/// The real IO thread (`io_thread::take_dirty`, `poll_timeout`).
fn real_leaves(st: &qmp_io::shared::CoreState) -> bool {
    st.write_left_to_dispatcher(CONN, qmp_core::server::Instant(1))
        .is_some()
}

/// Planted: "the dispatcher writes this monitor's replies" taken as true once it ran any call.
fn sticky_leaves(st: &qmp_io::shared::CoreState) -> bool {
    st.driver().conn_stats(CONN).is_some_and(|s| s.calls > 0)
}

/// `planted_writer`: the writer sets its blocked flag after a refused write (model 7's bug).
fn dispatcher_writes(planted_writer: bool, leaves: Leaves) {
    model(move || {
        let (shared, waker) = setup(true);
        // ManuallyDrop: see models 1 and 5 (the planted bug leaves every thread blocked).
        let (shared, waker) = (ManuallyDrop::new(shared), ManuallyDrop::new(waker));
        // Room for less than one reply: the dispatcher's write is partial, then refused.
        let socket = ManuallyDrop::new(ModelSocket::new(20));
        let blocked = ManuallyDrop::new(attach_writer(&shared, &socket, planted_writer));
        let expected = "{\"return\": {}, \"id\": 1}\r\n{\"return\": {}, \"id\": 2}\r\n";

        let d = ManuallyDrop::new(Arc::clone(&shared));
        let dispatcher = thread::spawn(move || {
            let mut next = d.next_in_band();
            while let Some(call) = next {
                next = d.complete_and_next(&call, empty_return());
            }
            drop(ManuallyDrop::into_inner(d));
        });
        let done = Arc::new(AtomicBool::new(false));
        let (s, w, dn) = (
            ManuallyDrop::new(Arc::clone(&socket)),
            ManuallyDrop::new(WakeHandle(Arc::clone(&waker))),
            ManuallyDrop::new(Arc::clone(&done)),
        );
        let client = thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < expected.len() {
                got.extend(s.read(&*w));
            }
            dn.store(true, Ordering::SeqCst);
            w.wake();
            drop(ManuallyDrop::into_inner(s));
            drop(ManuallyDrop::into_inner(w));
            drop(ManuallyDrop::into_inner(dn));
            got
        });

        // The IO thread: the two requests arrive in one read; then its passes: a writable edge
        // matters only while the writer is blocked (`io_thread::on_event`), then it writes
        // what is queued and not left to the dispatcher (`take_dirty`), takes its last look and
        // sleeps; with only left output it sleeps too (`poll_timeout` would sleep until the
        // bound, which never comes here).
        receive(
            &shared,
            b"{\"execute\": \"slow\", \"id\": 1}{\"execute\": \"slow\", \"id\": 2}",
            Vec::new(),
        );
        let mut passes = 0;
        while !done.load(Ordering::SeqCst) {
            passes += 1;
            assert!(passes <= MAX_PASSES, "IO thread livelock");
            pass_started(&shared);
            if socket.take_edge() && blocked.load(Ordering::SeqCst) {
                shared.lock().writable_again(CONN);
            }
            {
                let mut st = shared.lock();
                if st.driver().wants_transmit(CONN) && !leaves(&st) {
                    let mut close = Vec::new();
                    let _ = st.flush_locked(CONN, shared.now(), &mut close);
                }
            }
            {
                let mut st = shared.lock();
                shared.io_last_look(&mut st);
                if st.io_work_pending_besides_output()
                    || (st.driver().wants_transmit(CONN) && !leaves(&st))
                {
                    continue;
                }
            }
            waker.sleep();
        }
        let got = client.join().unwrap();
        shared.stop();
        dispatcher.join().unwrap();
        assert_eq!(String::from_utf8_lossy(&got), expected);
        assert!(shared.lock().driver().pending_output(CONN).is_empty());
        assert_eq!(shared.lock().driver().stats().misuse, 0);
        drop(ManuallyDrop::into_inner(blocked));
        drop(ManuallyDrop::into_inner(socket));
        drop(ManuallyDrop::into_inner(shared));
        drop(ManuallyDrop::into_inner(waker));
    });
}

#[test]
fn m7_dispatcher_writes_and_the_io_thread_finishes() {
    dispatcher_writes(false, never_leaves);
}

#[test]
#[should_panic]
fn m7_planted_blocked_flag_set_after_the_refused_write() {
    dispatcher_writes(true, never_leaves);
}

#[test]
fn m8_output_left_to_the_dispatcher_is_written_when_the_run_ends() {
    dispatcher_writes(false, real_leaves);
}

#[test]
#[should_panic]
fn m8_planted_output_left_after_the_run_ended() {
    dispatcher_writes(false, sticky_leaves);
}

// ---------------------------------------------------------------------------------------------
// 9. The read token (`qmp_io::reader`): the IO thread and the dispatcher both try to read one
//    connection. At most one of them holds the token at a time (so chunks are applied in the
//    order they were read), and a read the IO thread skipped because the dispatcher held the
//    token is always reported to the dispatcher, who then has the IO thread look again (an
//    end of stream raises no second readiness event).

fn read_token(io_notes_its_skips: bool) {
    model(move || {
        let token = ReadToken::default();
        let holders = Arc::new(AtomicUsize::new(0));
        let (io_token, io_holders) = (token.clone(), holders.clone());
        let io = thread::spawn(move || {
            let got = if io_notes_its_skips {
                io_token.take_or_note()
            } else {
                io_token.take()
            };
            if got {
                assert_eq!(io_holders.fetch_add(1, Ordering::SeqCst), 0, "two readers");
                io_holders.fetch_sub(1, Ordering::SeqCst);
                io_token.give_back();
            }
            got
        });
        let mut told = false;
        if token.take() {
            assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two readers");
            holders.fetch_sub(1, Ordering::SeqCst);
            told = token.give_back();
        }
        let io_read = io.join().unwrap();
        assert!(
            io_read || told,
            "the IO thread skipped a read and nobody told it to look again"
        );
    });
}

#[test]
fn m9_read_token_reports_a_skipped_read() {
    read_token(true);
}

#[test]
#[should_panic]
fn m9_planted_io_thread_skips_without_a_note() {
    read_token(false);
}
