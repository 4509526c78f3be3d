//! Monitors outlive their clients (QEMU's `MonitorQMP` belongs to its chardev): what QEMU keeps
//! on the monitor survives `Close` (named fds, the suspend count, an outstanding call's hold),
//! what it resets per connection does not (`monitor_qmp_caps_reset`, the parser, the queue,
//! pending fds). Plus `Destroy`, `take_named_fd` and version 1 traces.

mod server_support;

use qmp_core::json::{Object, Value};
use qmp_core::server::trace::{replay, Recorder};
use qmp_core::server::*;
use server_support::*;

const GETFD_X: &[u8] = br#"{"execute": "getfd", "arguments": {"fdname": "x"}}"#;
const CLOSEFD_X: &[u8] = br#"{"execute": "closefd", "arguments": {"fdname": "x"}}"#;

fn close(w: &mut World, m: MonitorId) {
    w.input(Input::Close { monitor: m });
}

/// The issue's exchange: client 1 passes "x" and leaves, client 2 closes it.
#[test]
fn named_fd_survives_reconnect() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(m, GETFD_X, vec![FdId(7)]);
    assert_eq!(w.take(m), "{\"return\": {}}\r\n");
    close(&mut w, m);
    assert!(w.closed_fds.is_empty(), "the named fd must stay open");
    assert!(!w.server.is_open(m));
    assert_eq!(w.server.named_fds(m), vec![("x".to_string(), FdId(7))]);
    assert!(w.server.held_fds().contains(&FdId(7)));

    w.negotiated(1, true);
    w.send(m, CLOSEFD_X);
    assert_eq!(w.take(m), "{\"return\": {}}\r\n");
    assert_eq!(w.closed_fds, vec![FdId(7)]);
    assert_eq!(w.server.probes().named_fds_survived, 1);
    assert_eq!(w.server.probes().reopened, 1);
}

/// QEMU's `monitor_qmp_caps_reset` and parser reset: a reconnect is greeted, starts in
/// negotiation mode with OOB off, and the previous client's partial message is gone (H2).
#[test]
fn session_state_resets() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    assert!(w.server.oob_enabled(m));
    w.send(m, b"{\"execute\": \"par");
    close(&mut w, m);
    w.open(1, true, false);
    assert_eq!(
        w.take(m),
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"
    );
    assert!(!w.server.is_negotiated(m));
    assert!(!w.server.oob_enabled(m));
    w.send(m, b"tial\"}\n{\"execute\": \"query-name\"}\n");
    assert_eq!(
        w.take(m),
        s(b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword 'tial'\"}}\r\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\\"}\\n'\"}}\r\n{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n")
    );
}

/// Pending (unclaimed) fds belong to the connection: closed at `Close`.
#[test]
fn pending_fds_die_with_the_connection() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(m, b"{\"execute\": \"query-name\"}", vec![FdId(3)]);
    w.take(m);
    assert!(w.closed_fds.is_empty());
    close(&mut w, m);
    assert_eq!(w.closed_fds, vec![FdId(3)]);
    w.negotiated(1, true);
    w.send(m, GETFD_X);
    assert_eq!(
        w.take(m),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No file descriptor supplied via SCM_RIGHTS\"}}\r\n"
    );
}

/// OOB off: a queued request holds a suspension; the close drops it unanswered and resumes,
/// so the next client is read (`monitor_qmp_cleanup_queue_and_resume`).
#[test]
fn close_releases_the_queues_suspension() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, false);
    w.dispatcher_running = false;
    w.send(m, b"{\"execute\": \"query-name\", \"id\": 1}");
    assert_eq!(w.server.queue_len(m), 1);
    assert_eq!(w.server.suspend_count(m), 1);
    close(&mut w, m);
    assert_eq!(w.server.queue_len(m), 0);
    assert_eq!(w.server.suspend_count(m), 0);
    assert!(!w.server.dispatcher_ready());
    w.dispatcher_running = true;
    let m = w.negotiated(1, false);
    assert!(w.server.wants_read(m));
    assert_eq!(w.server.probes().resume_on_close, 1);
}

/// OOB on, 7.2: a full queue (8) holds one suspension; the close undoes it.
#[test]
fn close_releases_a_full_queues_suspension() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.dispatcher_running = false;
    for i in 0..QMP_REQ_QUEUE_LEN_MAX {
        w.send(
            m,
            format!("{{\"execute\": \"query-name\", \"id\": {i}}}").as_bytes(),
        );
    }
    assert_eq!(w.server.suspend_count(m), 1);
    close(&mut w, m);
    assert_eq!(w.server.suspend_count(m), 0);
}

/// An in-band call running when its client leaves keeps the monitor suspended (OOB off)
/// until it completes; its reply is not sent to the next client.
#[test]
fn call_outlives_its_session() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, false);
    w.send(
        m,
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"null-co\"}, \"id\": \"b\"}",
    );
    assert_eq!(w.inband.len(), 1);
    close(&mut w, m);
    assert_eq!(
        w.server.suspend_count(m),
        1,
        "the running call keeps its share"
    );
    w.open(1, true, false);
    w.take(m);
    assert!(!w.server.wants_read(m));
    w.send(m, b"{\"execute\": \"qmp_capabilities\"}");
    assert_eq!(w.take(m), "", "input waits for the old call");
    w.release_blocked();
    assert_eq!(
        w.take(m),
        "{\"return\": {}}\r\n",
        "no reply of the old session"
    );
    assert!(w.server.wants_read(m));
    assert_eq!(w.server.probes().call_outlived_session, 1);
    assert_eq!(w.server.probes().reopened_while_call_runs, 1);
}

/// An external suspend belongs to the monitor.
#[test]
fn external_suspend_survives_close() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.input(Input::Suspend { monitor: m });
    close(&mut w, m);
    w.open(1, true, false);
    assert_eq!(w.server.suspend_count(m), 1);
    assert!(!w.server.wants_read(m));
    w.input(Input::Resume { monitor: m });
    assert!(w.server.wants_read(m));
}

/// Events while nobody is connected go nowhere; the next client gets them after negotiation.
#[test]
fn events_need_a_negotiated_session() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    close(&mut w, m);
    w.event("STOP", Object::new(), TS);
    assert!(w.server.pending_output(m).is_empty());
    w.negotiated(1, true);
    w.event("RESUME", Object::new(), TS);
    assert!(w.take(m).contains("\"RESUME\""));
}

/// Fd sets: the cleanup at close counts open sessions (`mon_refcount`), not monitors.
#[test]
fn fdset_cleanup_counts_sessions() {
    let mut w = World::qemu72();
    let a = w.negotiated(1, true);
    let b = w.negotiated(2, true);
    w.send_fds(a, b"{\"execute\": \"add-fd\"}", vec![FdId(9)]);
    w.take(a);
    close(&mut w, a);
    assert!(w.closed_fds.is_empty(), "monitor 2 is still connected");
    close(&mut w, b);
    assert_eq!(w.closed_fds, vec![FdId(9)]);
}

#[test]
fn misuse_of_sessions() {
    let mut w = World::qemu72();
    let m = w.open(1, true, false);
    let opts = MonitorOptions {
        oob_capable: true,
        pretty: false,
    };
    let now = w.now;
    assert_eq!(
        w.server.handle(
            now,
            Input::Open {
                monitor: m,
                options: opts
            }
        ),
        Err(ApiMisuse::MonitorExists(m))
    );
    close(&mut w, m);
    assert_eq!(
        w.server.handle(now, Input::Close { monitor: m }),
        Err(ApiMisuse::MonitorNotOpen(m))
    );
    assert_eq!(
        w.server.handle(
            now,
            Input::Receive {
                monitor: m,
                bytes: b"{}".to_vec(),
                fds: vec![]
            }
        ),
        Err(ApiMisuse::MonitorNotOpen(m))
    );
    assert_eq!(
        w.server.handle(
            now,
            Input::Open {
                monitor: m,
                options: MonitorOptions {
                    pretty: true,
                    ..opts
                }
            }
        ),
        Err(ApiMisuse::OptionsChanged(m))
    );
    assert_eq!(
        w.server.handle(
            now,
            Input::Destroy {
                monitor: MonitorId(9)
            }
        ),
        Err(ApiMisuse::UnknownMonitor(MonitorId(9)))
    );
}

/// `Destroy` closes the named fds; the id then names a new monitor.
#[test]
fn destroy_closes_named_fds() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(m, GETFD_X, vec![FdId(7)]);
    close(&mut w, m);
    w.input(Input::Destroy { monitor: m });
    assert_eq!(w.closed_fds, vec![FdId(7)]);
    assert_eq!(w.server.monitors().count(), 0);
    // Destroying an open monitor closes the session first (v1's `Close`).
    w.negotiated(1, false);
    w.send_fds(m, GETFD_X, vec![FdId(8)]);
    w.input(Input::Destroy { monitor: m });
    assert_eq!(w.closed_fds, vec![FdId(7), FdId(8)]);
    // A new monitor with other options: allowed after Destroy.
    w.open(1, false, true);
    assert!(w.server.named_fds(m).is_empty());
}

/// `shutdown` destroys monitors without a client too.
#[test]
fn shutdown_closes_named_fds_of_idle_monitors() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(m, GETFD_X, vec![FdId(7)]);
    close(&mut w, m);
    w.server.shutdown();
    w.settle();
    assert_eq!(w.closed_fds, vec![FdId(7)]);
    assert!(w.server.held_fds().is_empty());
}

/// A handler takes a named fd (QEMU's `monitor_get_fd`): the core forgets it without closing
/// it; a missing name gives QEMU's text.
#[test]
fn take_named_fd() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send_fds(m, GETFD_X, vec![FdId(7)]);
    let now = w.now;
    let err = w.server.take_named_fd(now, m, "y").unwrap_err();
    assert_eq!(err, TakeFdError::NotFound { name: "y".into() });
    assert_eq!(
        err.to_call_result(),
        CallResult::Error {
            class: ErrorClass::GenericError,
            desc: "File descriptor named 'y' has not been found".into()
        }
    );
    // The client may have left: named fds outlive it.
    close(&mut w, m);
    assert_eq!(w.server.take_named_fd(now, m, "x"), Ok(FdId(7)));
    w.settle();
    assert!(w.closed_fds.is_empty(), "the caller owns it now");
    assert!(!w.server.held_fds().contains(&FdId(7)));
    w.negotiated(1, true);
    w.send(m, CLOSEFD_X);
    assert_eq!(
        w.take(m),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'x' not found\"}}\r\n"
    );
    assert_eq!(
        w.server.take_named_fd(now, MonitorId(5), "x"),
        Err(TakeFdError::UnknownMonitor(MonitorId(5)))
    );
    assert!(matches!(
        w.server.take_named_fd(Instant(0), m, "x"),
        Err(TakeFdError::Misuse(ApiMisuse::TimeWentBackwards { .. }))
    ));
}

/// A session with a reconnect, `TakeNamedFd` and `Destroy` replays to the same digest.
#[test]
fn lifetime_trace_replays() {
    let config = Config::default();
    let mut s = Server::new(config.clone());
    let mut rec = Recorder::new(&config, &[], None);
    let m = MonitorId(0);
    let opts = MonitorOptions {
        oob_capable: true,
        pretty: false,
    };
    let mut t = 0;
    let mut step = |s: &mut Server, rec: &mut Recorder, input: Input| {
        t += 10;
        rec.handle(s, Instant(t), input).unwrap();
        while let Some(o) = s.poll_output() {
            if let Output::Transmit(m) = o {
                let n = s.pending_output(m).len();
                rec.handle(s, Instant(t), Input::Written { monitor: m, n })
                    .unwrap();
            }
        }
        while s.dispatcher_ready() {
            rec.handle(s, Instant(t), Input::NextInBand).unwrap();
            while s.poll_output().is_some() {}
        }
    };
    let recv = |b: &[u8], fds: Vec<FdId>| Input::Receive {
        monitor: m,
        bytes: b.to_vec(),
        fds,
    };
    step(
        &mut s,
        &mut rec,
        Input::Open {
            monitor: m,
            options: opts,
        },
    );
    step(
        &mut s,
        &mut rec,
        recv(b"{\"execute\": \"qmp_capabilities\"}", vec![]),
    );
    step(&mut s, &mut rec, recv(GETFD_X, vec![FdId(20)]));
    step(
        &mut s,
        &mut rec,
        recv(
            br#"{"execute": "getfd", "arguments": {"fdname": "y"}}"#,
            vec![FdId(21)],
        ),
    );
    step(&mut s, &mut rec, Input::Close { monitor: m });
    step(
        &mut s,
        &mut rec,
        Input::Open {
            monitor: m,
            options: opts,
        },
    );
    step(
        &mut s,
        &mut rec,
        recv(b"{\"execute\": \"qmp_capabilities\"}", vec![]),
    );
    assert_eq!(s.take_named_fd(Instant(75), m, "y"), Ok(FdId(21)));
    rec.input(
        Instant(75),
        &Input::TakeNamedFd {
            monitor: m,
            name: "y".into(),
        },
    );
    step(&mut s, &mut rec, recv(CLOSEFD_X, vec![]));
    step(&mut s, &mut rec, Input::Destroy { monitor: m });
    let text = rec.finish(&s);
    assert!(text.contains("\"version\":2"));
    let report = replay(&text).unwrap();
    assert!(report.misuse.is_empty(), "{:?}", report.misuse);
    assert!(report.matches(), "replay digest differs");
}

/// A version 1 trace (recorded by qmpd before monitors outlived their clients: getfd, add-fd,
/// disconnect, reconnect, closefd not found) replays to its digest: its `Close` is `Destroy`.
#[test]
fn version1_trace_replays() {
    let text = include_str!("data/traces/v1_getfd_reconnect.jsonl");
    assert!(text.starts_with("{\"header\":{\"format\":\"qmp-core-trace\",\"version\":1"));
    let report = replay(text).unwrap();
    assert!(report.misuse.is_empty(), "{:?}", report.misuse);
    assert_eq!(report.inputs, 20);
    assert!(report.matches(), "v1 digest not reproduced");
    // Read as version 2, the same inputs give another digest (the named fd survives).
    let v2 = text.replacen("\"version\":1", "\"version\":2", 1);
    let report = replay(&v2).unwrap();
    assert!(!report.matches());
}

/// 2.12's throttle table has no MEMORY_DEVICE_SIZE_CHANGE (QEMU 5.1): a burst goes out whole.
#[test]
fn memory_device_size_change_throttled_only_in_72() {
    let burst = |config: Config| {
        let mut w = World::new(config);
        let m = w.negotiated(1, false);
        for _ in 0..3 {
            let mut data = Object::new();
            data.insert("qom-path", Value::string("/machine/peripheral/vm0"));
            data.insert("size", Value::Int(1 << 30));
            w.event("MEMORY_DEVICE_SIZE_CHANGE", data, TS);
        }
        w.take(m).matches("MEMORY_DEVICE_SIZE_CHANGE").count()
    };
    assert_eq!(burst(Config::default()), 1);
    assert_eq!(burst(Config::qemu212()), 3);
    let names: Vec<String> = ThrottleRule::qemu212_defaults()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(
        names,
        [
            "RTC_CHANGE",
            "WATCHDOG",
            "BALLOON_CHANGE",
            "QUORUM_REPORT_BAD",
            "QUORUM_FAILURE",
            "VSERPORT_CHANGE"
        ]
    );
}
