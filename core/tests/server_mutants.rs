//! Tests written for mutants of the request path (core/src/server/{intake,dispatch,throttle,
//! events}.rs) that the other suites let survive; docs/mutants.md names the mutant each one
//! catches. They assert bytes on the wire, events and order, like the rest of the suites.

mod server_support;

use qmp_core::json::{JsonString, Object, Value};
use qmp_core::server::*;
use server_support::*;

fn ts(seconds: i64) -> Timestamp {
    Timestamp {
        seconds,
        microseconds: 0,
    }
}

/// Apply one input and collect its outputs without writing anything: the client reads nothing.
fn handle_unread(w: &mut World, input: Input) -> Vec<Output> {
    w.server.handle(w.now, input).expect("accepted input");
    std::iter::from_fn(|| w.server.poll_output()).collect()
}

// ---- events.rs / throttle.rs ----

/// Each step of a throttled burst is counted once: two events held (the second replacing the
/// first), one sent at the period end, one quiet period that frees the state.
#[test]
fn throttle_probes_count_each_step_once() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let t0 = w.now;
    let rtc = |off: i64| obj(vec![("offset", Value::Int(off))]);
    w.event("RTC_CHANGE", rtc(1), ts(1));
    w.event("RTC_CHANGE", rtc(2), ts(2));
    w.event("RTC_CHANGE", rtc(3), ts(3));
    let p = w.server.probes();
    assert_eq!((p.throttle_delayed, p.throttle_replaced), (2, 1));
    assert_eq!((p.throttle_fired, p.throttle_state_freed), (0, 0));
    w.now = t0.plus_nanos(1_000_000_000);
    w.input(Input::Tick);
    let p = w.server.probes();
    assert_eq!((p.throttle_fired, p.throttle_state_freed), (1, 0));
    w.now = t0.plus_nanos(2_000_000_000);
    w.input(Input::Tick);
    let p = w.server.probes();
    assert_eq!((p.throttle_fired, p.throttle_state_freed), (1, 1));
    let out = w.take(m);
    assert_eq!(out.matches("RTC_CHANGE").count(), 2, "{out}");
    assert!(
        out.contains("\"offset\": 1") && out.contains("\"offset\": 3"),
        "{out}"
    );
}

/// A rule with a zero period throttles nothing (QEMU skips rules without a rate): every
/// event goes out at once and no state or timer is kept.
#[test]
fn a_zero_period_rule_throttles_nothing() {
    let mut w = World::new(Config {
        throttle: vec![ThrottleRule::new("STOP", 0, None)],
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    // Right after the event, before any other input: no state, no timer to wake up for.
    let stop = |s| Input::Event {
        name: "STOP".into(),
        data: Object::new(),
        timestamp: ts(s),
    };
    assert_eq!(handle_unread(&mut w, stop(1)), vec![Output::Transmit(m)]);
    assert_eq!(w.server.throttle_states(), 0);
    assert_eq!(w.server.poll_timeout(), None);
    w.settle();
    w.event("STOP", Object::new(), ts(2));
    assert_eq!(
        w.take(m),
        "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n\
         {\"timestamp\": {\"seconds\": 2, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n"
    );
    assert_eq!(w.server.throttle_states(), 0);
    assert_eq!(w.server.poll_timeout(), None);
    assert_eq!(w.server.probes().throttle_delayed, 0);
}

/// Events skip monitors in negotiation mode; the probe counts events that skipped some
/// monitor, not monitors skipped.
#[test]
fn events_skip_monitors_in_negotiation_counted_per_event() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let a = w.open(2, true, false);
    let b = w.open(3, false, false);
    w.take(a);
    w.take(b);
    w.event("STOP", Object::new(), ts(1));
    w.event("RESUME", Object::new(), ts(2));
    assert_eq!(w.take(m).matches("\"event\"").count(), 2);
    assert_eq!((w.take(a), w.take(b)), (String::new(), String::new()));
    assert_eq!(w.server.probes().event_skipped_unnegotiated, 2);
    // With every monitor negotiated nothing is skipped.
    let mut w = World::qemu72();
    w.negotiated(1, true);
    w.event("STOP", Object::new(), ts(1));
    assert_eq!(w.server.probes().event_skipped_unnegotiated, 0);
}

/// The output limit is a bound on pending bytes: exactly `limit` bytes pending is allowed,
/// one event more gives up on the client.
#[test]
fn an_event_filling_the_output_exactly_to_the_limit_is_kept() {
    // Longer than the greeting, so that only the events meet the limit.
    let pad = "p".repeat(400);
    let text = format!("{{\"timestamp\": {{\"seconds\": 1, \"microseconds\": 0}}, \"event\": \"STOP\", \"data\": {{\"pad\": \"{pad}\"}}}}\r\n");
    let mut w = World::new(Config {
        output_limit: text.len(),
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    let event = |s| Input::Event {
        name: "STOP".into(),
        data: obj(vec![("pad", Value::string(pad.as_str()))]),
        timestamp: ts(s),
    };
    let outs = handle_unread(&mut w, event(1));
    assert_eq!(outs, vec![Output::Transmit(m)]);
    assert_eq!(w.server.pending_output(m), text.as_bytes());
    assert_eq!(w.server.probes().output_limit_disconnect, 0);
    let outs = handle_unread(&mut w, event(1));
    assert_eq!(
        outs,
        vec![Output::Disconnect {
            monitor: m,
            reason: DisconnectReason::OutputLimit { limit: text.len() }
        }]
    );
    assert_eq!(w.server.probes().output_limit_disconnect, 1);
}

/// A throttle state is counted in the memory estimate with its key (held twice: the state
/// table and the deadline set) and its pending event (name plus 64 bytes per data member),
/// within a fixed per-state overhead.
#[test]
fn throttle_states_are_counted_in_the_memory_estimate() {
    /// Upper bound of the fixed part of one state (two table entries).
    const FIXED: usize = 1024;
    let name = "E".repeat(100);
    let mut w = World::new(Config {
        throttle: vec![ThrottleRule::new(&name, 1_000_000_000, Some("id"))],
        ..Config::default()
    });
    w.negotiated(1, true);
    let key = "k".repeat(10_000);
    let data = |n: i64| {
        obj(vec![
            ("id", Value::string(key.as_str())),
            ("n", Value::Int(n)),
            ("x", Value::Bool(true)),
        ])
    };
    // The same event under an unthrottled name first, so that buffers it grows (output,
    // scratch) have grown before the measurement.
    w.event(&"F".repeat(100), data(0), ts(0));
    let before = w.server.memory_estimate();
    w.event(&name, data(1), ts(1));
    assert_eq!(w.server.throttle_states(), 1);
    let with_state = w.server.memory_estimate();
    // The key is held twice, each time as its inline part (a `String` and an optional
    // `JsonString`) and its heap bytes; next to it the state's deadline and period and the
    // deadline set's copy of the deadline.
    let key_inline = std::mem::size_of::<(String, Option<JsonString>)>();
    let least = 2 * (key_inline + name.len() + key.len()) + 3 * std::mem::size_of::<u64>();
    let grown = with_state - before;
    assert!(
        (least..=least + FIXED).contains(&grown),
        "a state with a {}-byte key grew the estimate by {grown}, not {least} or a little more",
        name.len() + key.len()
    );
    // A pending event of three data members.
    w.event(&name, data(2), ts(2));
    let pending = w.server.memory_estimate() - with_state;
    let least = name.len() + 64 * 3;
    assert!(
        (least..=least + FIXED).contains(&pending),
        "a pending event grew the estimate by {pending}"
    );
}

// ---- dispatch.rs ----

/// In negotiation mode every CommandNotFound desc is replaced and counted; in command mode
/// an unknown command keeps its desc and is not counted.
#[test]
fn negotiation_desc_replacement_counted_per_reply() {
    let mut w = World::qemu72();
    let m = w.open(1, true, false);
    w.take(m);
    let expecting = "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n";
    w.send(
        m,
        b"{\"execute\": \"query-name\"}{\"execute\": \"no-such\"}",
    );
    assert_eq!(w.take(m), format!("{expecting}{expecting}"));
    assert_eq!(w.server.probes().negotiation_desc_replaced, 2);
    w.send(
        m,
        b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"no-such\"}",
    );
    assert_eq!(
        w.take(m),
        "{\"return\": {}}\r\n{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command no-such has not been found\"}}\r\n"
    );
    assert_eq!(w.server.probes().negotiation_desc_replaced, 2);
}

/// An OOB call overtakes when its monitor has an in-band call running or requests queued
/// (either suffices); on an idle monitor it overtakes nothing.
#[test]
fn oob_overtake_counted_when_in_band_work_runs_or_waits() {
    const PAUSE: &[u8] = b"{\"exec-oob\": \"migrate-pause\", \"id\": \"o\"}";
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send(m, PAUSE);
    assert!(w.take(m).starts_with("{\"id\": \"o\", \"error\""));
    assert_eq!(w.server.probes().oob_overtake, 0, "idle monitor");
    // An in-band call running (blockdev-add is held by the harness), nothing queued.
    w.send(
        m,
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\", \"node-name\": \"n\"}, \"id\": \"b\"}",
    );
    assert_eq!((w.inband.len(), w.server.queue_len(m)), (1, 0));
    w.send(m, PAUSE);
    assert!(w.take(m).starts_with("{\"id\": \"o\", \"error\""));
    assert_eq!(w.server.probes().oob_overtake, 1, "in-band call running");
    w.release_blocked();
    assert_eq!(w.take(m), "{\"return\": {}, \"id\": \"b\"}\r\n");
    // A request queued, no call running.
    w.dispatcher_running = false;
    w.send(m, b"{\"execute\": \"query-name\", \"id\": \"q\"}");
    assert_eq!((w.inband.len(), w.server.queue_len(m)), (0, 1));
    w.send(m, PAUSE);
    assert!(w.take(m).starts_with("{\"id\": \"o\", \"error\""));
    assert_eq!(w.server.probes().oob_overtake, 2, "request queued");
    w.dispatcher_running = true;
    w.settle();
    assert_eq!(w.take(m), "{\"return\": {}, \"id\": \"q\"}\r\n");
}

// ---- intake.rs ----

/// With OOB on, the enqueue that fills the queue (the 8th request) suspends the monitor, once.
#[test]
fn queue_full_suspension_counted_once_per_fill() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.dispatcher_running = false;
    for i in 0..7 {
        w.send(
            m,
            format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
        );
    }
    assert_eq!((w.server.queue_len(m), w.server.suspend_count(m)), (7, 0));
    assert_eq!(w.server.probes().queue_full_suspend, 0);
    w.send(m, b"{\"execute\": \"query-name\", \"id\": 7}");
    assert_eq!((w.server.queue_len(m), w.server.suspend_count(m)), (8, 1));
    assert_eq!(w.server.probes().queue_full_suspend, 1);
    w.dispatcher_running = true;
    w.settle();
    assert_eq!(w.take(m).matches("\"return\"").count(), 8);
    assert_eq!(w.server.suspend_count(m), 0);
}

/// 7.2 queues JSON errors like requests; each one is counted.
#[test]
fn json_errors_are_queued_and_counted() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.dispatcher_running = false;
    // `%` is an error token; recovery ends at the `{` of a value, which comes after the
    // second error.
    w.send(
        m,
        b"%p {\"execute\": \"query-name\", \"id\": 1} %q {\"execute\": \"query-name\", \"id\": 2}",
    );
    assert_eq!(w.server.queue_len(m), 4);
    assert_eq!(w.server.probes().json_error_queued, 2);
    w.dispatcher_running = true;
    w.settle();
    let err =
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '%'\"}}\r\n";
    assert_eq!(
        w.take(m),
        format!("{err}{{\"return\": {{}}, \"id\": 1}}\r\n{err}{{\"return\": {{}}, \"id\": 2}}\r\n")
    );
}

/// Fds received before the older ones were claimed replace them; each replacement is
/// counted, a first delivery is not.
#[test]
fn pending_fd_replacement_counted() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(m, b" ", vec![FdId(1)]);
    assert_eq!(w.server.probes().pending_fds_replaced, 0);
    w.send_fds(m, b" ", vec![FdId(2)]);
    w.send_fds(m, b" ", vec![FdId(3)]);
    assert_eq!(w.closed_fds, vec![FdId(1), FdId(2)]);
    assert_eq!(w.server.probes().pending_fds_replaced, 2);
}

/// 2.12 answers a parser error with the parser's own text and a lexer error with `Invalid
/// JSON syntax`, both at once and without id (spec §13.2.2).
#[test]
fn dialect_212_parse_errors_keep_their_text() {
    let mut w = World::new(Config::qemu212());
    let m = w.open(1, true, false);
    w.take(m);
    w.send(m, b"} %p ");
    assert_eq!(
        w.take(m),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n\
         {\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid JSON syntax\"}}\r\n"
    );
}

/// 2.12 never suspends a monitor on a full queue (it drops instead), so taking a request off
/// a full queue resumes nothing: an external suspension stays in force.
#[test]
fn dialect_212_full_queue_pop_leaves_an_external_suspension() {
    let mut w = World::new(Config::qemu212());
    let m = w.open(1, true, false);
    w.take(m);
    w.send(
        m,
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
    );
    assert_eq!(w.take(m), "{\"return\": {}}\r\n");
    w.dispatcher_running = false;
    for i in 0..8 {
        w.send(
            m,
            format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
        );
    }
    assert_eq!(w.server.queue_len(m), 8);
    w.input(Input::Suspend { monitor: m });
    w.send(m, b"{\"execute\": \"query-name\", \"id\": 8}");
    w.dispatcher_running = true;
    w.settle();
    let out = w.take(m);
    assert_eq!(out.matches("\"return\"").count(), 8, "{out}");
    assert!(!out.contains("\"id\": 8"), "{out}");
    assert_eq!(w.server.suspend_count(m), 1);
    w.input(Input::Resume { monitor: m });
    assert_eq!(w.take(m), "{\"return\": {}, \"id\": 8}\r\n");
}
