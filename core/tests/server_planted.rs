//! Every planted bug (feature `planted-bugs`) changes what a client or the embedder observes
//! in a small scenario, and `None` behaves exactly as the correct core. These scenarios are the
//! "teeth" the simulator's planted-bug check relies on.
#![cfg(feature = "planted-bugs")]

mod server_support;

use qmp_core::json::Object;
use qmp_core::server::*;
use server_support::*;

/// What a scenario shows: client bytes of monitor 1 and 2, closed fds, calls issued.
fn observe(bug: Option<PlantedBug>, dialect: Dialect, scenario: fn(&mut World)) -> String {
    let mut w = World::new(Config {
        dialect,
        planted_bug: bug,
        ..Config::default()
    });
    scenario(&mut w);
    let calls: Vec<String> = w
        .log
        .iter()
        .filter_map(|o| match o {
            Output::Call(c) => Some(format!("{}@{}", c.command, c.monitor.0)),
            _ => None,
        })
        .collect();
    format!(
        "m1={:?}\nm2={:?}\nfds={:?}\ncalls={:?}\nq={}",
        w.take(MonitorId(1)),
        w.take(MonitorId(2)),
        w.closed_fds,
        calls,
        w.server.queue_len(MonitorId(1))
    )
}

fn check(bug: PlantedBug, dialect: Dialect, scenario: fn(&mut World)) {
    let good = observe(None, dialect, scenario);
    let bad = observe(Some(bug), dialect, scenario);
    assert_ne!(good, bad, "{bug:?} is not observable");
}

fn blocked_then(w: &mut World, n: usize, oob: bool) {
    let m = w.negotiated(1, oob);
    w.send(
        m,
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\"}, \"id\": \"b\"}",
    );
    for i in 0..n {
        w.send(
            m,
            format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
        );
    }
}

#[test]
fn queue_limit_off_by_one() {
    check(PlantedBug::QueueLimitOffByOne, Dialect::Qemu72, |w| {
        blocked_then(w, 9, true)
    });
}

#[test]
fn last_throttled_event_dropped() {
    check(
        PlantedBug::LastThrottledEventDropped,
        Dialect::Qemu72,
        |w| {
            w.negotiated(1, true);
            w.event("RTC_CHANGE", Object::new(), TS);
            w.event("RTC_CHANGE", Object::new(), TS);
            w.advance(1_000_000_000);
            w.input(Input::Tick);
        },
    );
}

#[test]
fn no_resume_on_close() {
    check(PlantedBug::NoResumeOnClose, Dialect::Qemu72, |w| {
        // OOB off: the queued request holds a suspension; the close must undo it, or the
        // monitor's next client is never read.
        let m = w.negotiated(1, false);
        w.dispatcher_running = false;
        w.send(m, b"{\"execute\": \"query-name\", \"id\": 1}");
        w.input(Input::Close { monitor: m });
        w.dispatcher_running = true;
        w.open(1, true, false);
        w.send(m, b"{\"execute\": \"qmp_capabilities\"}");
    });
}

#[test]
fn oob_reply_held_behind_in_band() {
    check(PlantedBug::OobReplyHeldBehindInBand, Dialect::Qemu72, |w| {
        blocked_then(w, 1, true);
        w.send(
            MonitorId(1),
            b"{\"exec-oob\": \"migrate-pause\", \"id\": \"o\"}",
        );
    });
}

#[test]
fn event_before_negotiation() {
    check(PlantedBug::EventBeforeNegotiation, Dialect::Qemu72, |w| {
        let m = w.open(1, true, false);
        w.take(m);
        w.event("STOP", Object::new(), TS);
    });
}

#[test]
fn early_bytes_after_suspension() {
    check(
        PlantedBug::EarlyBytesAfterSuspension,
        Dialect::Qemu72,
        |w| {
            let m = w.negotiated(1, false);
            w.send(m, b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\"}}{\"exec-oob\": \"migrate-pause\"}");
        },
    );
}

#[test]
fn id_not_echoed_on_error() {
    check(PlantedBug::IdNotEchoedOnError, Dialect::Qemu72, |w| {
        let m = w.negotiated(1, true);
        w.send(m, b"{\"execute\": \"nope\", \"id\": 1}");
    });
}

#[test]
fn command_dropped_without_id() {
    check(PlantedBug::CommandDroppedWithoutId, Dialect::Qemu212, |w| {
        let m = w.open(1, true, false);
        w.send(
            m,
            b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
        );
        w.send(m, b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\"}, \"id\": \"b\"}");
        for i in 0..9 {
            w.send(
                m,
                format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
            );
        }
    });
}

#[test]
fn fd_leaked_on_close() {
    check(PlantedBug::FdLeakedOnClose, Dialect::Qemu72, |w| {
        // An fd sent with a command that does not claim it stays pending until the close.
        let m = w.negotiated(1, true);
        w.send_fds(m, b"{\"execute\": \"query-name\"}", vec![FdId(5)]);
        w.input(Input::Close { monitor: m });
    });
}

#[test]
fn named_fds_die_with_connection() {
    check(
        PlantedBug::NamedFdsDieWithConnection,
        Dialect::Qemu72,
        |w| {
            let m = w.negotiated(1, true);
            w.send_fds(
                m,
                b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}",
                vec![FdId(5)],
            );
            w.input(Input::Close { monitor: m });
            w.negotiated(1, true);
            w.send(
                m,
                b"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"a\"}}",
            );
        },
    );
}

#[test]
fn round_robin_broken() {
    check(PlantedBug::RoundRobinBroken, Dialect::Qemu72, |w| {
        let a = w.negotiated(1, true);
        let b = w.negotiated(2, true);
        w.dispatcher_running = false;
        for i in 0..3 {
            w.send(
                a,
                format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
            );
            w.send(
                b,
                format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
            );
        }
        w.dispatcher_running = true;
        w.settle();
    });
}

fn open_hmp(w: &mut World, id: u64) -> MonitorId {
    let m = MonitorId(id);
    w.input(Input::OpenHmp {
        monitor: m,
        options: HmpOptions::default(),
    });
    m
}

#[test]
fn hmp_gets_events() {
    check(PlantedBug::HmpGetsEvents, Dialect::Qemu72, |w| {
        open_hmp(w, 1);
        w.negotiated(2, false);
        let ts = w.ts;
        w.event("STOP", Object::new(), ts);
    });
}

#[test]
fn hmp_bare_newline() {
    check(PlantedBug::HmpBareNewline, Dialect::Qemu72, |w| {
        let m = open_hmp(w, 1);
        w.send(m, b"help info\r");
    });
}

// ---- what each planted bug does, exactly (docs/mutants.md: a mutant of the planted code
// that changes the bug into another wrong behaviour is caught here, not by `check`) ----

fn planted(bug: PlantedBug) -> World {
    World::new(Config {
        planted_bug: Some(bug),
        ..Config::default()
    })
}

/// The queue is full one request late: 8 waiting requests leave the monitor reading, the
/// 9th suspends it.
#[test]
fn queue_limit_off_by_one_suspends_at_nine() {
    let mut w = planted(PlantedBug::QueueLimitOffByOne);
    let m = w.negotiated(1, true);
    w.dispatcher_running = false;
    for i in 0..8 {
        w.send(
            m,
            format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
        );
    }
    assert_eq!((w.server.queue_len(m), w.server.suspend_count(m)), (8, 0));
    w.send(m, b"{\"execute\": \"query-name\", \"id\": 8}");
    assert_eq!((w.server.queue_len(m), w.server.suspend_count(m)), (9, 1));
}

/// The pending event is lost at the period end and the period restarts empty: the key stays
/// throttled, so an event in the new period is held, not sent.
#[test]
fn last_throttled_event_dropped_restarts_the_period_empty() {
    let mut w = planted(PlantedBug::LastThrottledEventDropped);
    let m = w.negotiated(1, true);
    let t0 = w.now;
    w.event("RTC_CHANGE", Object::new(), TS);
    w.event("RTC_CHANGE", Object::new(), TS);
    assert_eq!(w.take(m).matches("RTC_CHANGE").count(), 1);
    w.now = t0.plus_nanos(1_000_000_000);
    w.input(Input::Tick);
    assert_eq!(w.take(m), "", "the pending event is dropped");
    assert_eq!(w.server.throttle_states(), 1);
    assert_eq!(w.server.poll_timeout(), Some(t0.plus_nanos(2_000_000_000)));
    w.event("RTC_CHANGE", Object::new(), TS);
    assert_eq!(w.take(m), "", "held by the restarted period");
}

/// The dispatcher always serves the lowest monitor id with work instead of going round.
#[test]
fn round_robin_broken_serves_the_lowest_id_first() {
    let mut w = planted(PlantedBug::RoundRobinBroken);
    let a = w.negotiated(1, true);
    let b = w.negotiated(2, true);
    w.dispatcher_running = false;
    for (m, n) in [(a, 2), (b, 2)] {
        for i in 0..n {
            w.send(
                m,
                format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
            );
        }
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        w.server.handle(w.now, Input::NextInBand).unwrap();
        while let Some(o) = w.server.poll_output() {
            if let Output::Call(call) = o {
                order.push(call.monitor.0);
                let done = Input::Complete {
                    call: call.id,
                    result: CallResult::Return(qmp_core::json::Value::Object(Object::new())),
                };
                w.server.handle(w.now, done).unwrap();
            }
        }
    }
    assert_eq!(order, vec![1, 1, 2, 2]);
}
