//! Scenario tests for each capability of issue 3 not already pinned by the transcripts:
//! exact bytes on the wire, outputs, and the server's observable state.

mod server_support;

use qmp_core::json::{JsonText, Object, Value};
use qmp_core::server::trace::{replay, Recorder};
use qmp_core::server::*;
use server_support::*;

const NAME_OK: &str = "{\"return\": {}}\r\n";

fn ts(seconds: i64) -> Timestamp {
    Timestamp {
        seconds,
        microseconds: 0,
    }
}

// ---- 1. monitors ----

#[test]
fn close_drops_queue_unanswered_and_returns_fds() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let other = w.negotiated(2, true);
    w.dispatcher_running = false;
    w.send_fds(
        m,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}",
        vec![FdId(1)],
    );
    w.dispatcher_running = true;
    w.settle();
    assert_eq!(w.take(m), NAME_OK);
    w.dispatcher_running = false;
    let mut reqs = Vec::new();
    for _ in 0..8 {
        reqs.extend_from_slice(b"{\"execute\": \"query-name\"}");
    }
    reqs.extend_from_slice(b"{\"execute\": \"query-name\"}"); // never read: suspended at 8
    w.send_fds(m, &reqs, vec![FdId(2), FdId(3)]);
    assert_eq!(w.server.queue_len(m), 8);
    assert_eq!(w.server.suspend_count(m), 1);
    w.input(Input::Close { monitor: m });
    // Pending fds (2, 3) are closed, the named fd (1) stays with the monitor; nothing is
    // answered; the full queue's suspension is undone.
    let mut closed = w.closed_fds.clone();
    closed.sort();
    assert_eq!(closed, vec![FdId(2), FdId(3)]);
    assert_eq!(w.server.probes().resume_on_close, 1);
    assert_eq!(w.server.suspend_count(m), 0);
    assert!(!w.server.dispatcher_ready());
    w.dispatcher_running = true;
    w.settle();
    assert!(w.log.iter().all(|o| !matches!(o, Output::Call(_))));
    assert_eq!(w.server.monitors().collect::<Vec<_>>(), vec![m, other]);
    assert!(!w.server.is_open(m) && w.server.is_open(other));
    assert_eq!(w.server.pending_output(m), b"");
    assert_eq!(w.server.held_fds(), vec![FdId(1)]);
}

#[test]
fn call_outstanding_at_close_completes_into_nothing() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, false);
    w.send(
        m,
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\"}}",
    );
    assert_eq!(w.inband.len(), 1);
    w.input(Input::Close { monitor: m });
    w.release_blocked();
    assert_eq!(w.server.probes().reply_to_closed_monitor, 1);
    assert_eq!(w.server.outstanding_calls().count(), 0);
}

// ---- 2. negotiation ----

#[test]
fn capability_not_offered() {
    let mut w = World::qemu72();
    let m = w.open(1, false, false);
    w.take(m);
    w.send(m, b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\", \"oob\"]}, \"id\": 1}");
    assert_eq!(w.take(m), "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"Capability oob, oob not available\"}}\r\n");
    assert!(!w.server.is_negotiated(m));
    w.send(
        m,
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": []}}",
    );
    assert_eq!(w.take(m), NAME_OK);
    assert!(w.server.is_negotiated(m) && !w.server.oob_enabled(m));
}

// ---- 3. validation order ----

#[test]
fn member_walk_follows_bucket_order() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    // "name" (bucket 39) is walked before "execute" (299).
    w.send(m, b"{\"execute\": 1, \"name\": 2, \"id\": \"x\"}");
    assert_eq!(w.take(m), "{\"id\": \"x\", \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'name' is unexpected\"}}\r\n");
    // "arguments" (447) comes after "execute" (299).
    w.send(m, b"{\"arguments\": 1, \"execute\": 2}");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'execute' must be a string\"}}\r\n");
}

// ---- 4. registry and arguments ----

#[test]
fn registry_and_argument_texts() {
    let mut w = World::qemu72();
    assert_eq!(
        w.server.register(CommandSpec::new("stop")),
        Err(ApiMisuse::CommandExists("stop".into()))
    );
    assert_eq!(
        w.server.register(CommandSpec::new("getfd")),
        Err(ApiMisuse::CommandExists("getfd".into()))
    );
    let m = w.negotiated(1, true);
    w.send(m, b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"blkdebug\", \"image\": \"x\", \"set-state\": [{\"event\": \"nope\", \"new_state\": 1}]}}");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'event' does not accept value 'nope'\"}}\r\n");
    w.send(
        m,
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"blkdebug\", \"image\": 5}}",
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for 'image', expected: BlockdevRef\"}}\r\n");
    w.send(
        m,
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\", \"image\": {}}}",
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'image' is unexpected\"}}\r\n");
    w.send(m, b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"blkdebug\", \"image\": {\"driver\": \"null-co\", \"zz\": 1}}}");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'image.zz' is unexpected\"}}\r\n");
    w.send(
        m,
        b"{\"execute\": \"qom-set\", \"arguments\": {\"path\": \"/\", \"property\": \"p\"}}",
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'value' is missing\"}}\r\n");
    w.send(
        m,
        b"{\"execute\": \"migrate-set-parameters\", \"arguments\": {\"max-bandwidth\": -1}}",
    );
    assert_eq!(w.take(m), NAME_OK, "negative int64 accepted for uint64");
    // A command with no success response: nothing on success, errors still answered.
    w.send(m, b"{\"execute\": \"send-key-no-reply\", \"id\": 1}{\"execute\": \"send-key-no-reply\", \"arguments\": {\"a\": 1}, \"id\": 2}");
    assert_eq!(w.take(m), "{\"id\": 2, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'a' is unexpected\"}}\r\n");
    assert_eq!(w.server.probes().no_success_response, 1);
    // query-commands lists the table, newest registration first, built-ins included.
    w.send(m, b"{\"execute\": \"query-commands\"}");
    let out = w.take(m);
    assert!(out.starts_with(
        "{\"return\": [{\"name\": \"send-key-no-reply\"}, {\"name\": \"x-query-roms\"}"
    ));
    assert!(out.ends_with("{\"name\": \"query-version\"}, {\"name\": \"qmp_capabilities\"}]}\r\n"));
}

// ---- 5. queue and dispatcher ----

#[test]
fn round_robin_across_monitors() {
    let mut w = World::qemu72();
    let a = w.negotiated(1, true);
    let b = w.negotiated(2, true);
    let c = w.negotiated(3, true);
    w.dispatcher_running = false;
    for (m, n) in [(a, 3), (b, 1), (c, 2)] {
        for i in 0..n {
            w.send(
                m,
                format!("{{\"execute\": \"query-name\", \"id\": \"{}{i}\"}}", m.0).as_bytes(),
            );
        }
    }
    assert!(w.server.dispatcher_ready());
    let mut order = Vec::new();
    for _ in 0..6 {
        w.server.handle(w.now, Input::NextInBand).unwrap();
        while let Some(o) = w.server.poll_output() {
            if let Output::Call(call) = o {
                order.push(call.monitor.0);
                w.server
                    .handle(
                        w.now,
                        Input::Complete {
                            call: call.id,
                            result: CallResult::Return(Value::Object(Object::new())),
                        },
                    )
                    .unwrap();
            }
        }
    }
    // New monitors go to the head of the list and each served one moves to the tail; the
    // negotiations left the list as 1, 2, 3.
    assert_eq!(order, vec![1, 2, 3, 1, 3, 1]);
    // Skipped: 2 once (before the fifth call) and 2, 3 before the sixth.
    assert_eq!(w.server.probes().round_robin_skip, 2);
    assert!(!w.server.dispatcher_ready());
    // With nothing queued, NextInBand is a harmless no-op.
    w.server.handle(w.now, Input::NextInBand).unwrap();
    assert!(w.server.poll_output().is_none());
}

#[test]
fn dispatcher_busy_and_resume_rules_without_oob() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, false);
    w.dispatcher_running = false;
    w.send(
        m,
        b"{\"execute\": \"query-name\", \"id\": 1}{\"execute\": \"query-name\", \"id\": 2}",
    );
    // Without OOB: suspended before the first enqueue, the second request not even parsed.
    assert_eq!((w.server.queue_len(m), w.server.suspend_count(m)), (1, 1));
    w.server.handle(w.now, Input::NextInBand).unwrap();
    let Some(Output::Call(call)) = w.server.poll_output() else {
        panic!("call expected")
    };
    assert_eq!(
        w.server.handle(w.now, Input::NextInBand),
        Err(ApiMisuse::DispatcherBusy)
    );
    // Still suspended while the call runs (resume after the reply).
    assert_eq!(w.server.suspend_count(m), 1);
    w.server
        .handle(
            w.now,
            Input::Complete {
                call: call.id,
                result: CallResult::Return(Value::Object(Object::new())),
            },
        )
        .unwrap();
    // The resume let the second request in; it suspended the monitor again.
    assert_eq!((w.server.queue_len(m), w.server.suspend_count(m)), (1, 1));
    w.dispatcher_running = true;
    w.settle();
    assert_eq!(
        w.take(m),
        "{\"return\": {}, \"id\": 1}\r\n{\"return\": {}, \"id\": 2}\r\n"
    );
    assert_eq!(w.server.suspend_count(m), 0);
}

// ---- 6. out-of-band ----

const PAUSE_ERR: &str = "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"migrate-pause is currently only supported during postcopy-active state\"}}\r\n";

/// D10 (differential suite vs QEMU 7.2): an OOB request runs in the IO thread straight from
/// the parser callback, so a later request of the same monitor, even one refused at once, is
/// answered after it.
#[test]
fn oob_call_holds_later_bytes_of_its_monitor() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send(
        m,
        b"{\"exec-oob\": \"migrate-pause\", \"id\": 1}{\"exec-oob\": \"no-such\", \"id\": 2}",
    );
    let expected = format!(
        "{PAUSE_ERR}{{\"id\": 2, \"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"The command no-such has not been found\"}}}}\r\n"
    );
    assert_eq!(w.take(m), expected);
}

/// While its OOB call is outstanding a monitor takes no input (the rest of the chunk and later
/// chunks stay buffered); completing it resumes lexing; other monitors are not held.
#[test]
fn oob_call_is_a_suspension_point_until_completed() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let other = w.negotiated(2, true);
    let receive = |w: &mut World, m: MonitorId, b: &[u8]| {
        w.server
            .handle(
                w.now,
                Input::Receive {
                    monitor: m,
                    bytes: b.to_vec(),
                    fds: vec![],
                },
            )
            .unwrap();
    };
    receive(
        &mut w,
        m,
        b"{\"exec-oob\": \"query-yank\", \"id\": 1} {\"exec-oob\": \"migrate-pause\", \"id\": 2}",
    );
    let calls: Vec<Output> = std::iter::from_fn(|| w.server.poll_output()).collect();
    let [Output::Call(first)] = &calls[..] else {
        panic!("one call expected, got {calls:?}")
    };
    assert_eq!(
        (first.command.as_str(), first.lane),
        ("query-yank", Lane::OutOfBand)
    );
    assert!(!w.server.wants_read(m));
    assert_eq!(w.server.oob_call_holding_input(m), Some(first.id));
    assert!(w.server.wants_read(other));
    assert_eq!(w.server.oob_call_holding_input(other), None);
    assert_eq!(w.server.suspend_count(m), 0);
    // Bytes arriving meanwhile are buffered, not lexed (`]` completes two messages).
    receive(&mut w, m, b"1]");
    assert!(w.server.poll_output().is_none());
    assert_eq!(w.server.pending_output(m), b"");
    w.server
        .handle(
            w.now,
            Input::Complete {
                call: first.id,
                result: CallResult::Return(Value::Array(vec![])),
            },
        )
        .unwrap();
    // The reply, then the second OOB call (and nothing after it yet).
    assert_eq!(
        w.server.pending_output(m),
        b"{\"return\": [], \"id\": 1}\r\n"
    );
    let calls: Vec<Output> = std::iter::from_fn(|| w.server.poll_output()).collect();
    let [Output::Transmit(_), Output::Call(second)] = &calls[..] else {
        panic!("transmit and a call expected, got {calls:?}")
    };
    assert_eq!(second.command, "migrate-pause");
    assert!(!w.server.wants_read(m));
    w.run_call(second.clone());
    w.settle();
    assert!(w.server.wants_read(m));
    assert_eq!(w.server.oob_call_holding_input(m), None);
    assert_eq!(
        w.take(m),
        format!(
            "{{\"return\": [], \"id\": 1}}\r\n{}{}{}",
            PAUSE_ERR.replace("\"id\": 1", "\"id\": 2"),
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\r\n",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n",
        )
    );
    assert!(w.server.probes().oob_call_held_input > 0);
}

/// A monitor closed while its OOB call runs: the call may still complete, its reply goes
/// nowhere, and a new connection with the same id reads at once.
#[test]
fn oob_call_outstanding_at_close() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.server
        .handle(
            w.now,
            Input::Receive {
                monitor: m,
                bytes: b"{\"exec-oob\": \"query-yank\", \"id\": 1}{\"exec-oob\": \"query-yank\", \"id\": 2}".to_vec(),
                fds: vec![],
            },
        )
        .unwrap();
    let Some(Output::Call(call)) = w.server.poll_output() else {
        panic!("call expected")
    };
    assert!(w.server.poll_output().is_none());
    w.input(Input::Close { monitor: m });
    // The monitor's input waits for the handler (QEMU runs it before it sees the close), so
    // the next client is held until it completes; the reply went with the old client, and
    // the old client's second request with its parser.
    w.open(1, true, false);
    w.take(m);
    assert!(!w.server.wants_read(m));
    assert_eq!(w.server.oob_call_holding_input(m), Some(call.id));
    w.send(m, b"{\"execute\": \"qmp_capabilities\"}");
    assert_eq!(w.take(m), "");
    w.input(Input::Complete {
        call: call.id,
        result: CallResult::Return(Value::Array(vec![])),
    });
    assert_eq!(w.take(m), "{\"return\": {}}\r\n");
    assert!(w.server.wants_read(m));
    assert_eq!(w.server.outstanding_calls().count(), 0);
    w.send(m, b"{\"execute\": \"query-name\", \"id\": 3}");
    assert_eq!(w.take(m), "{\"return\": {}, \"id\": 3}\r\n");
}

/// The 2.12 dialect ran `control.run-oob` requests in the parser callback too.
#[test]
fn oob_call_holds_later_bytes_212() {
    let mut w = World::new(Config {
        dialect: Dialect::Qemu212,
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    w.send(
        m,
        b"{\"execute\": \"migrate-pause\", \"id\": 1, \"control\": {\"run-oob\": true}}{\"execute\": \"query-name\"}",
    );
    assert_eq!(
        w.take(m),
        format!("{PAUSE_ERR}{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"Out-Of-Band capability requires that every command contains an 'id' field\"}}}}\r\n")
    );
}

// ---- 7. suspend counts ----

#[test]
fn external_suspend_nests_and_holds_bytes() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.input(Input::Suspend { monitor: m });
    w.input(Input::Suspend { monitor: m });
    assert!(!w.server.wants_read(m));
    w.send(m, b"{\"exec-oob\": \"query-yank\", \"id\": 1}");
    assert_eq!(
        w.take(m),
        "",
        "not even OOB requests are lexed while suspended"
    );
    w.input(Input::Resume { monitor: m });
    assert_eq!(w.take(m), "");
    w.input(Input::Resume { monitor: m });
    assert!(w
        .take(m)
        .starts_with("{\"return\": [{\"type\": \"chardev\", \"id\": \"qmp\"}"));
    assert!(w.server.wants_read(m));
    assert_eq!(
        w.server.handle(w.now, Input::Resume { monitor: m }),
        Err(ApiMisuse::NotSuspended(m))
    );
}

// ---- 8. events and throttling ----

#[test]
fn throttle_first_now_last_at_period_end_then_freed() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let t0 = w.now;
    let rtc = |off: i64| obj(vec![("offset", Value::Int(off))]);
    w.event("RTC_CHANGE", rtc(1), ts(100));
    assert_eq!(w.take(m), "{\"timestamp\": {\"seconds\": 100, \"microseconds\": 0}, \"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 1}}\r\n");
    assert_eq!(w.server.poll_timeout(), Some(t0.plus_nanos(1_000_000_000)));
    w.advance(100_000_000);
    w.event("RTC_CHANGE", rtc(2), ts(101));
    w.advance(100_000_000);
    w.event("RTC_CHANGE", rtc(3), ts(102));
    // Unthrottled events are not delayed meanwhile.
    w.event("STOP", Object::new(), ts(103));
    assert_eq!(
        w.take(m),
        "{\"timestamp\": {\"seconds\": 103, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n"
    );
    assert_eq!(w.server.probes().throttle_replaced, 1);
    // An early tick does nothing.
    w.input(Input::Tick);
    assert_eq!(w.take(m), "");
    w.now = t0.plus_nanos(1_000_000_000);
    w.input(Input::Tick);
    // The last event of the burst, with its own timestamp.
    assert_eq!(w.take(m), "{\"timestamp\": {\"seconds\": 102, \"microseconds\": 0}, \"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 3}}\r\n");
    assert_eq!(w.server.poll_timeout(), Some(t0.plus_nanos(2_000_000_000)));
    w.now = t0.plus_nanos(2_000_000_000);
    w.input(Input::Tick);
    assert_eq!(w.server.poll_timeout(), None);
    assert_eq!(w.server.throttle_states(), 0);
    w.event("RTC_CHANGE", rtc(4), ts(104));
    assert!(w.take(m).contains("\"offset\": 4"));
}

#[test]
fn throttle_keyed_by_data_member() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let vs =
        |id: &str, open: bool| obj(vec![("id", Value::string(id)), ("open", Value::Bool(open))]);
    w.event("VSERPORT_CHANGE", vs("a", true), ts(1));
    w.event("VSERPORT_CHANGE", vs("b", true), ts(1));
    w.event("VSERPORT_CHANGE", vs("a", false), ts(2));
    let out = w.take(m);
    assert_eq!(out.matches("VSERPORT_CHANGE").count(), 2, "{out}");
    assert_eq!(w.server.throttle_states(), 2);
    // Any later input fires due timers, not only Tick.
    w.advance(1_000_000_000);
    w.event("STOP", Object::new(), ts(3));
    assert_eq!(w.take(m), "{\"timestamp\": {\"seconds\": 2, \"microseconds\": 0}, \"event\": \"VSERPORT_CHANGE\", \"data\": {\"open\": false, \"id\": \"a\"}}\r\n{\"timestamp\": {\"seconds\": 3, \"microseconds\": 0}, \"event\": \"STOP\"}\r\n");
}

#[test]
fn many_throttle_keys_fire_in_deadline_order_then_key_order() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let t0 = w.now;
    let vs = |id: &str| obj(vec![("id", Value::string(id)), ("open", Value::Bool(true))]);
    // Periods opened in the order c, b at t0 and a 1 ms later; each gets a pending event.
    w.event("VSERPORT_CHANGE", vs("c"), ts(1));
    w.event("VSERPORT_CHANGE", vs("b"), ts(1));
    w.advance(1_000_000);
    w.event("VSERPORT_CHANGE", vs("a"), ts(1));
    for id in ["c", "b", "a"] {
        w.event("VSERPORT_CHANGE", vs(id), ts(2));
    }
    w.take(m);
    assert_eq!(w.server.poll_timeout(), Some(t0.plus_nanos(1_000_000_000)));
    // One input after every period ended: b and c (same deadline, key order), then a.
    w.now = t0.plus_nanos(1_001_000_000);
    w.input(Input::Tick);
    let out = w.take(m);
    let order: Vec<&str> = ["\"id\": \"a\"", "\"id\": \"b\"", "\"id\": \"c\""]
        .into_iter()
        .filter(|k| out.contains(k))
        .collect();
    assert_eq!(order.len(), 3, "{out}");
    let pos = |k: &str| out.find(k).unwrap_or(usize::MAX);
    assert!(pos("\"id\": \"b\"") < pos("\"id\": \"c\""), "{out}");
    assert!(pos("\"id\": \"c\"") < pos("\"id\": \"a\""), "{out}");
    // Each restarted its period from now; then all end quietly together.
    assert_eq!(w.server.poll_timeout(), Some(t0.plus_nanos(2_001_000_000)));
    w.now = t0.plus_nanos(2_001_000_000);
    w.input(Input::Tick);
    assert_eq!(w.take(m), "");
    assert_eq!(w.server.throttle_states(), 0);
    assert_eq!(w.server.poll_timeout(), None);
}

// ---- 9. output ----

#[test]
fn output_limit_disconnects_a_client_that_does_not_read() {
    let mut w = World::new(Config {
        output_limit: 300,
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    let reader = w.negotiated(2, true);
    // Stop writing: the harness only writes on Transmit, so drop those by polling ourselves.
    for i in 0..20 {
        w.server
            .handle(
                w.now,
                Input::Event {
                    name: "STOP".into(),
                    data: Object::new(),
                    timestamp: ts(i),
                },
            )
            .unwrap();
        while let Some(o) = w.server.poll_output() {
            match o {
                Output::Disconnect { monitor, reason } => w.disconnects.push((monitor, reason)),
                Output::Transmit(x) if x == reader => {
                    let n = w.server.pending_output(x).len();
                    w.server
                        .handle(w.now, Input::Written { monitor: x, n })
                        .unwrap();
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        w.disconnects,
        vec![(m, DisconnectReason::OutputLimit { limit: 300 })]
    );
    assert_eq!(w.server.pending_output(m), b"");
    assert!(!w.server.wants_read(m));
    w.input(Input::Close { monitor: m });
    assert!(!w.server.is_open(m) && w.server.is_open(reader));
}

#[test]
fn written_too_much_is_misuse() {
    let mut w = World::qemu72();
    let m = MonitorId(1);
    w.server
        .handle(
            w.now,
            Input::Open {
                monitor: m,
                options: MonitorOptions::default(),
            },
        )
        .unwrap();
    let n = w.server.pending_output(m).len();
    assert_eq!(
        w.server.handle(
            w.now,
            Input::Written {
                monitor: m,
                n: n + 1
            }
        ),
        Err(ApiMisuse::WrittenTooMuch {
            monitor: m,
            n: n + 1,
            pending: n
        })
    );
    w.server
        .handle(w.now, Input::Written { monitor: m, n: 10 })
        .unwrap();
    assert_eq!(w.server.pending_output(m).len(), n - 10);
    assert_eq!(w.server.probes().partial_write, 1);
    // Nothing written is not a partial write (EAGAIN reported as 0).
    w.server
        .handle(w.now, Input::Written { monitor: m, n: 0 })
        .unwrap();
    assert_eq!(w.server.probes().partial_write, 1);
    // The rest in one report: not partial either.
    w.server
        .handle(
            w.now,
            Input::Written {
                monitor: m,
                n: n - 10,
            },
        )
        .unwrap();
    assert_eq!(w.server.probes().partial_write, 1);
}

/// The probe counts exactly the reports that left bytes pending (a shim writing in pieces).
#[test]
fn partial_write_probe_counts_short_writes() {
    let mut w = World::qemu72();
    w.write_chunk = 7;
    let m = w.open(1, true, false);
    let greeting = w.take(m);
    // Every 7-byte report but the last left bytes pending.
    let expected = greeting.len().div_ceil(7) as u64 - 1;
    assert_eq!(w.server.probes().partial_write, expected);
}

// ---- 10. fds ----

#[test]
fn newer_fds_replace_pending_ones_and_extra_fds_close() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(m, b" ", vec![FdId(1)]);
    w.send_fds(m, b" ", vec![FdId(2), FdId(3)]);
    assert_eq!(w.closed_fds, vec![FdId(1)]);
    w.send(
        m,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}",
    );
    assert_eq!(w.take(m), NAME_OK);
    assert_eq!(w.closed_fds, vec![FdId(1), FdId(3)]);
    // Same name again: the old fd is closed and replaced.
    w.send_fds(
        m,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}",
        vec![FdId(4)],
    );
    assert_eq!(w.take(m), NAME_OK);
    assert_eq!(w.closed_fds, vec![FdId(1), FdId(3), FdId(2)]);
    assert_eq!(w.server.held_fds(), vec![FdId(4)]);
}

#[test]
fn fdsets_closed_when_last_monitor_goes_only_if_running() {
    let mut w = World::new(Config {
        run_state: RunState::Paused,
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    w.send_fds(m, b"{\"execute\": \"add-fd\"}", vec![FdId(7)]);
    assert_eq!(w.take(m), "{\"return\": {\"fd\": 7, \"fdset-id\": 0}}\r\n");
    w.input(Input::Close { monitor: m });
    assert_eq!(w.server.held_fds(), vec![FdId(7)], "not running: kept");
    w.input(Input::SetRunState(RunState::Running));
    let m = w.negotiated(2, true);
    w.input(Input::Close { monitor: m });
    assert_eq!(w.closed_fds, vec![FdId(7)]);
    assert!(w.server.held_fds().is_empty());
}

// ---- 12. the 2.12 dialect ----

fn world212() -> World {
    World::new(Config::qemu212())
}

#[test]
fn dialect_212_negotiation_and_run_oob() {
    let mut w = world212();
    let plain = w.open(1, false, false);
    assert_eq!(
        w.take(plain),
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 12, \"major\": 2}, \"package\": \"\"}, \"capabilities\": []}}\r\n"
    );
    w.send(
        plain,
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
    );
    assert_eq!(w.take(plain), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"This monitor does not support Out-Of-Band (OOB)\"}}\r\n");
    w.send(plain, b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-name\", \"control\": {\"run-oob\": true}, \"id\": 1}");
    assert_eq!(w.take(plain), "{\"return\": {}}\r\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"Please enable Out-Of-Band first for the session during capabilities negotiation\"}}\r\n");
    let m = w.open(2, true, false);
    assert!(w.take(m).ends_with("\"capabilities\": [\"oob\"]}}\r\n"));
    w.send(m, b"{\"execute\": \"query-name\", \"id\": 1}");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n", "immediate, no id");
    w.send(
        m,
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
    );
    assert_eq!(w.take(m), NAME_OK);
    w.send(m, b"{\"execute\": \"query-name\"}");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Out-Of-Band capability requires that every command contains an 'id' field\"}}\r\n");
    w.send(
        m,
        b"{\"execute\": \"query-status\", \"control\": {\"run-oob\": true}, \"id\": 2}",
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command query-status does not support OOB\"}}\r\n");
    w.send(m, b"{\"exec-oob\": \"query-yank\", \"id\": 3}");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'exec-oob' is unexpected\"}}\r\n");
    w.send(
        m,
        b"{\"execute\": \"query-name\", \"control\": 1, \"id\": 4}",
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member 'control' must be a dict\"}}\r\n");
    w.send(m, b"{\"execute\": \"migrate-pause\", \"control\": {\"run-oob\": true, \"x\": 1}, \"id\": \"p\"}");
    assert!(w.take(m).starts_with("{\"id\": \"p\", \"error\""));
    w.send(m, b"%p ");
    assert_eq!(
        w.take(m),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid JSON syntax\"}}\r\n"
    );
    w.send(m, b"{\"execute\": \"human-monitor-command\", \"id\": 5}");
    assert_eq!(w.take(m), "{\"id\": 5, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'command-line' is missing\"}}\r\n", "argument errors are dispatched, with id");
}

/// 2.12's `input_type_enum` said `Invalid parameter '<value>'` (7.2 names the parameter).
#[test]
fn dialect_212_enum_value_text() {
    let bogus = b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"bogus\"]}}";
    let mut w = world212();
    let m = w.open(1, true, false);
    w.take(m);
    w.send(m, bogus);
    assert_eq!(
        w.take(m),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter 'bogus'\"}}\r\n"
    );
    let mut w = World::qemu72();
    let m = w.open(1, true, false);
    w.take(m);
    w.send(m, bogus);
    assert_eq!(
        w.take(m),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'null' does not accept value 'bogus'\"}}\r\n"
    );
}

#[test]
fn dialect_212_queue_full_drops_with_command_dropped() {
    let mut w = World::new(Config {
        wall_clock_base: ts(1_500_000_000),
        ..Config::qemu212()
    });
    let m = w.open(1, true, false);
    w.take(m);
    w.send(
        m,
        b"{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
    );
    w.take(m);
    let watcher = w.open(2, false, false);
    w.take(watcher);
    w.send(watcher, b"{\"execute\": \"qmp_capabilities\"}");
    w.take(watcher);
    w.send(m, &blocking_212());
    assert_eq!(w.inband.len(), 1);
    for i in 0..9 {
        w.send(
            m,
            format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
        );
    }
    // 8 waiting (the running one does not count): the 9th is dropped, no suspension.
    assert_eq!(w.server.queue_len(m), 8);
    assert!(w.server.wants_read(m));
    // Timestamp: wall_clock_base + now (now is 1000 ns here).
    let dropped = "{\"timestamp\": {\"seconds\": 1500000000, \"microseconds\": 1}, \"event\": \"COMMAND_DROPPED\", \"data\": {\"reason\": \"queue-full\", \"id\": 8}}\r\n";
    assert_eq!(w.take(m), dropped);
    assert_eq!(
        w.take(watcher),
        dropped,
        "broadcast to every negotiated monitor"
    );
    // x-oob-test style unlock: an OOB request still runs at once.
    w.send(
        m,
        b"{\"execute\": \"migrate-pause\", \"control\": {\"run-oob\": true}, \"id\": \"unlock\"}",
    );
    assert!(w.take(m).starts_with("{\"id\": \"unlock\""));
    w.release_blocked();
    let out = w.take(m);
    assert!(out.starts_with("{\"return\": {}, \"id\": \"blk\"}\r\n{\"return\": {}, \"id\": 0}\r\n"));
    assert!(out.ends_with("{\"return\": {}, \"id\": 7}\r\n"));
    assert_eq!(w.server.probes().command_dropped, 1);
}

fn blocking_212() -> Vec<u8> {
    b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\"}, \"id\": \"blk\"}"
        .to_vec()
}

// ---- misuse ----

#[test]
fn misuse_is_typed_and_changes_nothing() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let before = w.server.digest();
    let ghost = MonitorId(99);
    for (input, err) in [
        (
            Input::Receive {
                monitor: ghost,
                bytes: b"{}".to_vec(),
                fds: vec![],
            },
            ApiMisuse::UnknownMonitor(ghost),
        ),
        (
            Input::Close { monitor: ghost },
            ApiMisuse::UnknownMonitor(ghost),
        ),
        (
            Input::Open {
                monitor: m,
                options: MonitorOptions::default(),
            },
            ApiMisuse::MonitorExists(m),
        ),
        (
            Input::Complete {
                call: CallId(12345),
                result: CallResult::Return(Value::Null),
            },
            ApiMisuse::UnknownCall(CallId(12345)),
        ),
    ] {
        assert_eq!(w.server.handle(w.now, input), Err(err));
    }
    assert_eq!(
        w.server.handle(Instant(0), Input::Tick),
        Err(ApiMisuse::TimeWentBackwards {
            now: Instant(0),
            last: w.now
        })
    );
    assert_eq!(w.server.digest(), before);
    assert!(w.server.poll_output().is_none());
    // Completing a call twice.
    w.dispatcher_running = false;
    w.send(m, b"{\"execute\": \"query-name\"}");
    w.server.handle(w.now, Input::NextInBand).unwrap();
    let Some(Output::Call(call)) = w.server.poll_output() else {
        panic!()
    };
    let done = Input::Complete {
        call: call.id,
        result: CallResult::Return(Value::Null),
    };
    w.server.handle(w.now, done.clone()).unwrap();
    assert_eq!(
        w.server.handle(w.now, done),
        Err(ApiMisuse::UnknownCall(call.id))
    );
}

// ---- 13. traces ----

#[test]
fn trace_records_and_replays_to_the_same_digest() {
    let mut w = World::qemu72();
    let mut rec = Recorder::for_server(&w.server, Some(7));
    let m = MonitorId(1);
    let mut script = vec![
        Input::Open {
            monitor: m,
            options: MonitorOptions {
                oob_capable: true,
                pretty: false,
            },
        },
        Input::Receive {
            monitor: m,
            bytes: b"{\"execute\": \"qmp_capabilities\"}\xff{\"execute\": \"stop\"}".to_vec(),
            fds: vec![FdId(3)],
        },
        Input::NextInBand,
    ];
    for input in script.drain(..) {
        rec.handle(&mut w.server, w.now, input).unwrap();
        while w.server.poll_output().is_some() {}
        w.advance(10);
    }
    rec.handle(&mut w.server, w.now, Input::NextInBand).unwrap();
    let mut calls = Vec::new();
    while let Some(o) = w.server.poll_output() {
        rec.output(&o);
        if let Output::Call(c) = o {
            calls.push(c);
        }
    }
    for c in calls {
        let input = Input::Complete {
            call: c.id,
            result: CallResult::Return(Value::Object(Object::new())),
        };
        rec.handle(&mut w.server, w.now, input).unwrap();
    }
    rec.handle(&mut w.server, w.now, Input::Written { monitor: m, n: 5 })
        .unwrap();
    let text = rec.finish(&w.server);
    assert!(
        text.contains("\"bytes\":\"{\\\"execute\\\": \\\"qmp_capabilities\\\"}ÿ{"),
        "{text}"
    );
    let report = replay(&text).unwrap();
    assert!(report.matches(), "{report:?}");
    assert_eq!(report.digest, w.server.digest());
    assert!(report.misuse.is_empty());
    // A changed input gives a different digest.
    let tampered = text.replace("qmp_capabilities", "qmp_capabilitiex");
    assert!(!replay(&tampered).unwrap().matches());
}

// ---- 14. results already written ----

/// `query-status`'s StatusInfo as a typed handler declares it (QAPI member order).
#[derive(serde::Serialize)]
struct StatusInfo {
    running: bool,
    singlestep: bool,
    status: &'static str,
}

/// The reply `result` gives to a `query-status` held for the test, on a fresh monitor.
fn reply_to_held_query(pretty: bool, request: &[u8], result: CallResult) -> String {
    let mut w = World::qemu72();
    w.blocking.push("query-status".into());
    let m = w.open(1, true, pretty);
    w.take(m);
    w.send(m, br#"{"execute": "qmp_capabilities"}"#);
    w.take(m);
    w.send(m, request);
    let call = w.inband.pop_front().expect("the held query-status");
    w.input(Input::Complete {
        call: call.id,
        result,
    });
    w.take(m)
}

#[test]
fn results_already_written_give_the_same_reply_bytes() {
    let mut nested = Object::new();
    nested.insert("running", Value::Bool(true));
    nested.insert("singlestep", Value::Bool(false));
    nested.insert("status", Value::string("running"));
    nested.insert("empty", Value::Object(Object::new()));
    nested.insert(
        "list",
        Value::Array(vec![Value::Array(vec![]), Value::string("a, b: {c}")]),
    );
    let values = [
        Value::Object(nested),
        Value::Object(Object::new()),
        Value::Array(vec![Value::Int(-1), Value::Double(0.5)]),
        Value::string("\u{e9}\"\n"),
    ];
    for pretty in [false, true] {
        for request in [
            &br#"{"execute": "query-status"}"#[..],
            br#"{"execute": "query-status", "id": {"n": [1, "x"]}}"#,
        ] {
            for v in &values {
                let expected = reply_to_held_query(pretty, request, CallResult::Return(v.clone()));
                assert!(expected.starts_with("{"), "{expected}");
                let text = CallResult::ReturnJson(JsonText::from_value(v));
                assert_eq!(reply_to_held_query(pretty, request, text), expected);
            }
            let typed = StatusInfo {
                running: false,
                singlestep: false,
                status: "paused",
            };
            let mut o = Object::new();
            o.insert("running", Value::Bool(false));
            o.insert("singlestep", Value::Bool(false));
            o.insert("status", Value::string("paused"));
            assert_eq!(
                reply_to_held_query(pretty, request, CallResult::serialize(&typed)),
                reply_to_held_query(pretty, request, CallResult::Return(Value::Object(o)))
            );
        }
    }
    // The compact bytes, as QEMU 7.2 writes StatusInfo (spec Appendix A).
    assert_eq!(
        reply_to_held_query(
            false,
            br#"{"execute": "query-status", "id": 1}"#,
            CallResult::serialize(&StatusInfo {
                running: true,
                singlestep: false,
                status: "running"
            })
        ),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": 1}\r\n"
    );
}

#[test]
fn a_result_that_cannot_be_serialised_is_a_generic_error() {
    let mut bad = std::collections::BTreeMap::new();
    bad.insert((1, 2), "tuple keys");
    let reply = reply_to_held_query(
        false,
        br#"{"execute": "query-status", "id": 2}"#,
        CallResult::serialize(&bad),
    );
    assert_eq!(
        reply,
        "{\"id\": 2, \"error\": {\"class\": \"GenericError\", \"desc\": \"the command's result could not be serialised: a map key must be a string, a character or an integer\"}}\r\n"
    );
}

#[test]
fn traces_carry_results_already_written() {
    let mut w = World::qemu72();
    let mut rec = Recorder::for_server(&w.server, None);
    let m = MonitorId(1);
    for input in [
        Input::Open {
            monitor: m,
            options: MonitorOptions {
                oob_capable: true,
                pretty: true,
            },
        },
        Input::Receive {
            monitor: m,
            bytes: b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-status\"}".to_vec(),
            fds: vec![],
        },
    ] {
        rec.handle(&mut w.server, w.now, input).unwrap();
        while w.server.poll_output().is_some() {}
    }
    let mut calls = Vec::new();
    for _ in 0..2 {
        rec.handle(&mut w.server, w.now, Input::NextInBand).unwrap();
        while let Some(o) = w.server.poll_output() {
            if let Output::Call(c) = o {
                calls.push(c);
            }
        }
    }
    assert_eq!(calls.len(), 1, "query-status is the embedder's to run");
    let result = CallResult::serialize(&StatusInfo {
        running: true,
        singlestep: false,
        status: "running",
    });
    rec.handle(
        &mut w.server,
        w.now,
        Input::Complete {
            call: calls[0].id,
            result,
        },
    )
    .unwrap();
    let text = rec.finish(&w.server);
    assert!(text.contains(r#"{"ReturnJson":"{\"status\": "#), "{text}");
    let report = replay(&text).unwrap();
    assert!(report.matches(), "{report:?}");
    assert_eq!(report.digest, w.server.digest());
}

// ---- memory ----

#[test]
fn idle_negotiated_monitor_costs_at_most_4_kib() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send(m, b"{\"execute\": \"query-status\", \"id\": 1}");
    assert!(w.take(m).starts_with("{\"return\""));
    let bytes = w.server.monitor_memory_estimate(m);
    assert!(bytes <= 4096, "idle monitor holds {bytes} bytes");
    // A queue of requests and unread output is counted.
    w.dispatcher_running = false;
    w.send(m, b"{\"execute\": \"query-status\", \"id\": 2}");
    assert!(w.server.monitor_memory_estimate(m) > bytes);
}

#[test]
fn shutdown_returns_every_fd() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(
        m,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}",
        vec![FdId(1)],
    );
    w.send_fds(m, b"{\"execute\": \"add-fd\"}", vec![FdId(2)]);
    w.input(Input::Suspend { monitor: m });
    w.send_fds(m, b" ", vec![FdId(3)]);
    assert_eq!(w.server.held_fds().len(), 3);
    w.server.shutdown();
    w.settle();
    let mut closed = w.closed_fds.clone();
    closed.sort();
    assert_eq!(closed, vec![FdId(1), FdId(2), FdId(3)]);
    assert!(w.server.held_fds().is_empty());
    assert_eq!(w.server.monitors().count(), 0);
}

#[test]
fn default_output_limit_is_not_met_by_a_reading_client() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    // A 2 MiB id echoed twice, pipelined; the client reads (the harness writes everything).
    let big = "x".repeat(2 << 20);
    let req = format!("{{\"execute\": \"query-name\", \"id\": \"{big}\"}}");
    w.send(m, format!("{req}{req}").as_bytes());
    assert_eq!(
        w.take(m).len(),
        2 * (big.len() + "{\"return\": {}, \"id\": \"\"}\r\n".len())
    );
    assert!(w.disconnects.is_empty());
}

#[test]
fn input_limit_disconnects_a_driver_that_reads_while_suspended() {
    let mut w = World::new(Config {
        input_buffer_limit: 64,
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    w.input(Input::Suspend { monitor: m });
    w.send_fds(m, &[b' '; 40], vec![FdId(9)]);
    assert!(w.disconnects.is_empty());
    w.send(m, &[b' '; 40]);
    assert_eq!(
        w.disconnects,
        vec![(m, DisconnectReason::InputLimit { limit: 64 })]
    );
    // The held bytes and their fd were dropped; the monitor ignores further input.
    assert_eq!(w.closed_fds, vec![FdId(9)]);
    assert!(!w.server.wants_read(m));
    w.send(m, b"{\"execute\": \"query-name\"}");
    assert_eq!(w.take(m), "");
}

/// Several unexpected arguments: QEMU names the first one its GLib hash table yields
/// (live QEMU 7.2.22 answers, recorded for these inputs).
#[test]
fn first_unexpected_argument_in_glib_order() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    for (args, cmd, expected) in [
        (r#"{"a":1,"b":2,"zz":3}"#, "query-status", "b"),
        (r#"{"zz":1,"b":2,"a":3}"#, "query-status", "b"),
        (
            r#"{"id":1,"return":2,"error":3,"c":4}"#,
            "query-status",
            "return",
        ),
        (r#"{"x":1,"y":2}"#, "query-status", "y"),
        (
            r#"{"command-line":"x","q":1,"r":2}"#,
            "human-monitor-command",
            "r",
        ),
    ] {
        w.send(
            m,
            format!("{{\"execute\":\"{cmd}\",\"arguments\":{args}}}").as_bytes(),
        );
        assert_eq!(
            w.take(m),
            format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"Parameter '{expected}' is unexpected\"}}}}\r\n"),
            "{args}"
        );
    }
}

#[test]
fn reply_of_a_closed_connection_never_reaches_a_reused_id() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, false);
    w.send(
        m,
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\"}, \"id\": \"old\"}",
    );
    w.input(Input::Close { monitor: m });
    let m = w.open(1, true, false);
    w.take(m);
    w.send(m, b"{\"execute\": \"qmp_capabilities\"}");
    assert_eq!(
        w.take(m),
        "",
        "the dispatcher is still busy with the old call"
    );
    w.release_blocked();
    assert_eq!(w.take(m), "{\"return\": {}}\r\n");
    assert_eq!(w.server.probes().reply_to_closed_monitor, 1);
    assert_eq!(w.server.suspend_count(m), 0);
}
