//! The shim on real Unix and TCP sockets: greeting, negotiation, pipelining, OOB overtaking a
//! blocked dispatcher, events from another thread, slow readers, vanishing peers, the
//! one-client-at-a-time backlog and `clients=N`.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use qmp_core::json::{Object, Value};
use qmp_core::server::Dialect;

#[test]
fn greeting_and_negotiation_bytes() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    assert_eq!(c.read_msg(), GREETING);
    c.send("{\"execute\": \"query-status\", \"id\": 1}\n");
    assert_eq!(
        c.read_msg(),
        "{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n"
    );
    c.send("{\"execute\": \"qmp_capabilities\", \"id\": \"neg\"}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"neg\"}\r\n");
    c.send("{\"execute\": \"query-status\", \"id\": [1]}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": [1]}\r\n"
    );
    c.send("{\"execute\": \"query-name\"}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
}

#[test]
fn unix_socket_mode_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let d = start(&["unix:qmp.sock"]);
    let mode = std::fs::metadata(d.path("qmp.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn pipelined_requests_answered_in_order() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    let mut batch = String::new();
    for i in 0..50 {
        batch.push_str(&format!("{{\"execute\": \"query-name\", \"id\": {i}}}"));
    }
    // One write, no newlines: the JSON streamer splits it.
    c.send(&batch);
    for i in 0..50 {
        assert_eq!(
            c.read_msg(),
            format!("{{\"return\": {{}}, \"id\": {i}}}\r\n")
        );
    }
}

/// A client that sends its next batch once it has the replies to the last one: the dispatcher
/// reads those batches itself while it waits for work (`qmp_io::reader`), and the replies are
/// the same, in the same order, as when only the IO thread reads.
#[test]
fn batch_after_batch_answered_in_order_whoever_reads() {
    for dispatcher_reads in [true, false] {
        let d = start_with(&["unix:qmp.sock"], Dialect::Qemu72, |b| {
            b.dispatcher_reads(dispatcher_reads)
        });
        let mut c = Client::connect(&d.path("qmp.sock"));
        c.negotiate(true);
        let exchanges = 300;
        for e in 0..exchanges {
            let batch: String = (0..8)
                .map(|i| format!("{{\"execute\": \"query-name\", \"id\": {}}}\n", e * 8 + i))
                .collect();
            c.send(&batch);
            for i in 0..8 {
                assert_eq!(
                    c.read_msg(),
                    format!("{{\"return\": {{}}, \"id\": {}}}\r\n", e * 8 + i)
                );
            }
        }
        let stats = d.server().handle().io_stats();
        if dispatcher_reads {
            // The dispatcher spins 100 us after each batch; the next one comes in microseconds.
            assert!(stats.dispatcher_reads > 0, "{stats:?}");
        } else {
            assert_eq!(stats.dispatcher_reads, 0, "{stats:?}");
        }
    }
}

#[test]
fn stop_cont_events_come_before_the_reply() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(false);
    c.send("{\"execute\": \"stop\", \"id\": \"s\"}\n");
    assert_eq!(
        mask_ts(&c.read_msg()),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"STOP\"}\r\n"
    );
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"s\"}\r\n");
    // Stopping a stopped VM: no event (QEMU 7.2).
    c.send("{\"execute\": \"stop\"}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    c.send("{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"info status\"}}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": \"VM status: paused\\r\\n\"}\r\n"
    );
    c.send("{\"execute\": \"cont\", \"id\": \"c\"}\n");
    assert_eq!(
        mask_ts(&c.read_msg()),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"RESUME\"}\r\n"
    );
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"c\"}\r\n");
}

#[test]
fn exec_oob_overtakes_a_blocked_in_band_command() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"lock\"}\n");
    c.send("{\"execute\": \"query-name\", \"id\": \"ib\"}\n");
    // The dispatcher is blocked: nothing comes back for the in-band requests.
    assert_eq!(c.read_msg_within(QUIET), None);
    c.send("{\"exec-oob\": \"migrate-pause\", \"id\": \"oob\"}\n");
    assert_eq!(
        c.read_msg(),
        "{\"id\": \"oob\", \"error\": {\"class\": \"GenericError\", \"desc\": \"migrate-pause is currently only supported during postcopy-active state\"}}\r\n"
    );
    c.send(
        "{\"exec-oob\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"id\": \"unlock\"}\n",
    );
    // The unlock releases the dispatcher before its own reply exists, so its reply may come
    // anywhere; the in-band replies keep their order.
    let got: Vec<String> = (0..3).map(|_| c.read_msg()).collect();
    let pos = |id: &str| {
        got.iter()
            .position(|m| *m == format!("{{\"return\": {{}}, \"id\": \"{id}\"}}\r\n"))
            .unwrap_or_else(|| panic!("no reply {id} in {got:?}"))
    };
    assert!(pos("lock") < pos("ib"), "{got:?}");
    let _ = pos("unlock");
}

#[test]
fn full_queue_stops_reading_until_the_dispatcher_takes_one() {
    let d = start(&["unix:qmp.sock,clients=2"]);
    let mut a = Client::connect(&d.path("qmp.sock"));
    a.negotiate(true);
    let mut b = Client::connect(&d.path("qmp.sock"));
    b.negotiate(true);
    a.send("{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"lock\"}\n");
    // Give the dispatcher time to take the lock request: then 8 more fill the queue.
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..8 {
        a.send(&format!("{{\"execute\": \"query-name\", \"id\": {i}}}\n"));
    }
    a.send("{\"exec-oob\": \"query-yank\", \"id\": \"oob\"}\n");
    // The monitor is suspended: the exec-oob is not even read (QEMU 7.2, spec §5.3 / D2).
    assert_eq!(a.read_msg_within(QUIET), None);
    b.send("{\"exec-oob\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"id\": \"u\"}\n");
    assert_eq!(b.read_msg(), "{\"return\": {}, \"id\": \"u\"}\r\n");
    assert_eq!(a.read_msg(), "{\"return\": {}, \"id\": \"lock\"}\r\n");
    // In-band replies in order; the OOB one somewhere among them (timing, as in QEMU).
    let mut in_band = Vec::new();
    let mut oob = 0;
    for _ in 0..9 {
        let m = a.read_msg();
        if m.contains("\"oob\"") {
            assert_eq!(
                m,
                "{\"return\": [{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}], \"id\": \"oob\"}\r\n"
            );
            oob += 1;
        } else {
            in_band.push(m);
        }
    }
    assert_eq!(oob, 1);
    let want: Vec<String> = (0..8)
        .map(|i| format!("{{\"return\": {{}}, \"id\": {i}}}\r\n"))
        .collect();
    assert_eq!(in_band, want);
}

#[test]
fn events_from_another_thread_reach_only_negotiated_monitors() {
    let d = start(&["unix:qmp.sock,clients=2"]);
    let mut a = Client::connect(&d.path("qmp.sock"));
    a.negotiate(false);
    let mut b = Client::connect(&d.path("qmp.sock"));
    assert_eq!(b.read_msg(), GREETING);
    let h = d.server().handle();
    let t = std::thread::spawn(move || {
        let mut data = Object::new();
        data.insert("id", Value::string("x"));
        h.emit_event("DEVICE_DELETED", data);
    });
    t.join().unwrap();
    assert_eq!(
        mask_ts(&a.read_msg()),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"DEVICE_DELETED\", \"data\": {\"id\": \"x\"}}\r\n"
    );
    assert_eq!(b.read_msg_within(QUIET), None);
}

#[test]
fn an_event_is_written_while_an_in_band_handler_of_the_same_monitor_blocks() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    // The dispatcher runs (and blocks in) a call of this monitor: the IO thread leaves the
    // monitor's output to the dispatcher's end-of-run write, but only for a bounded time.
    c.send("{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"lock\"}\n");
    assert_eq!(c.read_msg_within(QUIET), None);
    let h = d.server().handle();
    std::thread::spawn(move || h.emit_event("RESUME", Object::new()))
        .join()
        .unwrap();
    let event = c
        .read_msg_within(Duration::from_secs(5))
        .expect("the event while the handler blocks");
    assert!(event.contains("\"event\": \"RESUME\""), "{event}");
    c.send(
        "{\"exec-oob\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"id\": \"unlock\"}\n",
    );
    let mut got: Vec<String> = (0..2).map(|_| c.read_msg()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "{\"return\": {}, \"id\": \"lock\"}\r\n",
            "{\"return\": {}, \"id\": \"unlock\"}\r\n"
        ]
    );
}

#[test]
fn throttled_event_via_x_emit_event() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(false);
    for off in [1, 2, 3] {
        c.send(&format!(
            "{{\"execute\": \"x-emit-event\", \"arguments\": {{\"event\": \"RTC_CHANGE\", \"data\": {{\"offset\": {off}, \"qom-path\": \"/m\"}}}}}}\n"
        ));
    }
    // First at once, then the replies; the last of the burst comes ~1 s later; the middle one
    // is replaced (spec §8.3).
    let first = c.read_msg();
    assert!(first.contains("\"offset\": 1"), "{first}");
    for _ in 0..3 {
        assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    }
    let last = c
        .read_msg_within(Duration::from_secs(3))
        .expect("delayed event");
    assert!(
        last.contains("RTC_CHANGE") && last.contains("\"offset\": 3"),
        "{last}"
    );
    assert_eq!(c.read_msg_within(QUIET), None);
}

#[test]
fn slow_reader_gets_every_byte_in_order() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(false);
    // 6000 replies of ~300 bytes: far more than the socket buffer holds, so the server sees
    // EAGAIN while we do not read, and partial writes once we do.
    let n = 6000;
    let mut batch = String::new();
    for i in 0..n {
        batch.push_str(&format!(
            "{{\"execute\": \"human-monitor-command\", \"arguments\": {{\"command-line\": \"help\"}}, \"id\": {i}}}\n"
        ));
    }
    let mut w = c.sock.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(batch.as_bytes()).unwrap());
    // Do not read until the socket has refused a write (EAGAIN).
    let h = d.server().handle();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while h.io_stats().blocked_writes == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the socket never filled up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the output pile up well beyond what the socket can take at once, so that draining it
    // needs partial writes.
    std::thread::sleep(Duration::from_millis(200));
    let help = "closefd closefd name -- close a file descriptor previously passed via SCM rights\\r\\ncont|c  -- resume emulation\\r\\nexit_preconfig  -- exit the preconfig state\\r\\ngetfd getfd name -- receive a file descriptor via SCM rights and assign it a name\\r\\nhelp|? [cmd] -- show the help\\r\\ninfo [subcommand] -- show various information about the system state\\r\\nquit|q  -- quit the emulator\\r\\nstop|s  -- stop emulation\\r\\nsystem_powerdown  -- send system power down event\\r\\n";
    for i in 0..n {
        // Read in small pieces to keep the server's writes partial.
        let m = c.read_msg();
        assert_eq!(m, format!("{{\"return\": \"{help}\", \"id\": {i}}}\r\n"));
    }
    writer.join().unwrap();
    // Draining the pile took writes the socket only partly accepted.
    let stats = h.io_stats();
    assert!(stats.partial_writes > 0, "{stats:?}");
}

#[test]
fn a_vanishing_peer_does_not_disturb_another_client() {
    let d = start(&["unix:qmp.sock,clients=2"]);
    let mut a = Client::connect(&d.path("qmp.sock"));
    a.negotiate(true);
    let mut b = Client::connect(&d.path("qmp.sock"));
    b.negotiate(true);
    // A leaves in the middle of a message, with a request queued behind a blocked dispatcher.
    a.send("{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"l\"}\n{\"execute\": \"query-na");
    std::thread::sleep(Duration::from_millis(100));
    a.sock.shutdown(std::net::Shutdown::Both).unwrap();
    drop(a);
    b.send("{\"exec-oob\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"id\": \"u\"}\n");
    assert_eq!(b.read_msg(), "{\"return\": {}, \"id\": \"u\"}\r\n");
    for i in 0..5 {
        b.send(&format!("{{\"execute\": \"query-status\", \"id\": {i}}}\n"));
        assert_eq!(
            b.read_msg(),
            format!("{{\"return\": {{\"status\": \"running\", \"singlestep\": false, \"running\": true}}, \"id\": {i}}}\r\n")
        );
    }
}

#[test]
fn second_client_waits_in_the_backlog_until_the_first_leaves() {
    let d = start(&["unix:qmp.sock"]);
    let mut a = Client::connect(&d.path("qmp.sock"));
    a.negotiate(false);
    let mut b = Client::connect(&d.path("qmp.sock"));
    b.send("{\"execute\": \"qmp_capabilities\"}\n");
    b.send("{\"execute\": \"query-name\", \"id\": \"early\"}\n");
    assert_eq!(
        b.read_all_within(QUIET),
        "",
        "second client must get nothing yet"
    );
    a.send("{\"execute\": \"query-name\"}\n");
    assert_eq!(a.read_msg(), "{\"return\": {}}\r\n");
    drop(a);
    assert_eq!(b.read_msg(), GREETING);
    assert_eq!(b.read_msg(), "{\"return\": {}}\r\n");
    assert_eq!(b.read_msg(), "{\"return\": {}, \"id\": \"early\"}\r\n");
}

#[test]
fn clients_2_serves_two_at_once_and_a_third_waits() {
    let d = start(&["unix:qmp.sock,clients=2"]);
    let mut a = Client::connect(&d.path("qmp.sock"));
    let mut b = Client::connect(&d.path("qmp.sock"));
    assert_eq!(a.read_msg(), GREETING);
    assert_eq!(b.read_msg(), GREETING);
    let mut c = Client::connect(&d.path("qmp.sock"));
    assert_eq!(c.read_msg_within(QUIET), None);
    drop(a);
    assert_eq!(c.read_msg(), GREETING);
    b.send("{\"execute\": \"qmp_capabilities\"}\n");
    assert_eq!(b.read_msg(), "{\"return\": {}}\r\n");
}

#[test]
fn global_connection_limit_holds_clients_back() {
    let d = start_with(
        &["unix:a.sock,clients=4", "unix:b.sock,clients=4"],
        qmp_core::server::Dialect::Qemu72,
        |b| b.max_connections(2),
    );
    let mut a = Client::connect(&d.path("a.sock"));
    let mut b = Client::connect(&d.path("b.sock"));
    assert_eq!(a.read_msg(), GREETING);
    assert_eq!(b.read_msg(), GREETING);
    let mut c = Client::connect(&d.path("a.sock"));
    assert_eq!(c.read_msg_within(QUIET), None);
    drop(b);
    assert_eq!(c.read_msg(), GREETING);
}

#[test]
fn pretty_and_oob_off_listener_options() {
    let d = start(&["unix:p.sock,pretty=on,oob=off"]);
    let mut c = Client::connect(&d.path("p.sock"));
    let g = c.read_all_within(QUIET);
    assert!(g.starts_with("{\r\n    \"QMP\": {\r\n"), "{g}");
    assert!(g.contains("\"capabilities\": [\r\n        ]"), "{g}");
    c.send("{\"execute\": \"qmp_capabilities\"}\n");
    assert_eq!(
        c.read_all_within(QUIET),
        "{\r\n    \"return\": {\r\n    }\r\n}\r\n"
    );
}

#[test]
fn tcp_loopback_listener() {
    let d = start(&["tcp:127.0.0.1:0"]);
    let addr = match &d.server().addresses()[0] {
        qmp_io::Address::Tcp(a) => *a,
        other => panic!("{other:?}"),
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n") {
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(String::from_utf8(got).unwrap(), GREETING);
    s.write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
        .unwrap();
    let mut b = [0u8; 64];
    let n = s.read(&mut b).unwrap();
    assert_eq!(&b[..n], b"{\"return\": {}}\r\n");
}

#[test]
fn yank_of_the_chardev_drops_its_client() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    c.send("{\"exec-oob\": \"query-yank\", \"id\": 1}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": [{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}], \"id\": 1}\r\n"
    );
    c.send(
        "{\"execute\": \"yank\", \"arguments\": {\"instances\": [{\"type\": \"migration\"}]}}\n",
    );
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Instance not found\"}}\r\n"
    );
    c.send("{\"execute\": \"yank\", \"arguments\": {\"instances\": [{\"type\": \"chardev\"}]}}\n");
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'instances[0].id' is missing\"}}\r\n"
    );
    c.send("{\"exec-oob\": \"yank\", \"arguments\": {\"instances\": [{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}]}}\n");
    assert!(c.eof_within(TIMEOUT), "yanked client must see EOF");
    // QEMU shuts the socket down inside the handler: no reply reaches the yanked client.
    assert_eq!(c.read_all_within(Duration::ZERO), "");
    // The listener serves the next client; an in-band yank of its own chardev behaves alike.
    let mut c2 = Client::connect(&d.path("qmp.sock"));
    c2.negotiate(false);
    c2.send("{\"execute\": \"yank\", \"arguments\": {\"instances\": [{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}]}, \"id\": 1}\n");
    assert!(c2.eof_within(TIMEOUT));
    assert_eq!(c2.read_all_within(Duration::ZERO), "");
    let mut c3 = Client::connect(&d.path("qmp.sock"));
    assert_eq!(c3.read_msg(), GREETING);
}

#[test]
fn human_monitor_command_texts() {
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(false);
    let cases = [
        ("info version", "\"7.2.22test\\r\\n\""),
        ("  info   status  ", "\"VM status: running\\r\\n\""),
        ("frobnicate", "\"unknown command: 'frobnicate'\\r\\n\""),
        ("info foo", "\"unknown command: 'info foo'\\r\\n\""),
        ("", "\"\""),
        ("help stop", "\"stop|s  -- stop emulation\\r\\n\""),
        ("help nope", "\"unknown command: 'nope'\\r\\n\""),
        (
            "help info status extra",
            "\"info status  -- show the current VM status (running|paused)\\r\\n\"",
        ),
        ("help info nosuch", "\"unknown command: 'info nosuch'\\r\\n\""),
        ("? c", "\"cont|c  -- resume emulation\\r\\n\""),
        (
            "c x",
            "\"cont|c: extraneous characters at the end of line\\r\\nTry \\\"help c\\\" for more information\\r\\n\"",
        ),
        (
            "info status extra",
            "\"status: extraneous characters at the end of line\\r\\nTry \\\"help info status\\\" for more information\\r\\n\"",
        ),
    ];
    for (line, ret) in cases {
        c.send(&format!(
            "{{\"execute\": \"human-monitor-command\", \"arguments\": {{\"command-line\": \"{line}\"}}}}\n"
        ));
        assert_eq!(c.read_msg(), format!("{{\"return\": {ret}}}\r\n"), "{line}");
    }
    c.send("{\"execute\": \"human-monitor-command\", \"id\": 2}\n");
    assert_eq!(
        c.read_msg(),
        "{\"id\": 2, \"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'command-line' is missing\"}}\r\n"
    );
}

#[test]
fn qemu_2_12_dialect_run_oob_unlocks_x_oob_test() {
    let d = start_with(
        &["unix:plain.sock", "unix:xoob.sock,oob=on,clients=2"],
        Dialect::Qemu212,
        |b| b,
    );
    // Without x-oob=on, 2.12 offers no capability.
    let mut p = Client::connect(&d.path("plain.sock"));
    let g = p.read_msg();
    assert!(g.ends_with("\"capabilities\": []}}\r\n"), "{g}");
    // QEMU 2.12's tests/qmp-test.c qmp/oob: lock in-band, unlock with control.run-oob.
    let mut c = Client::connect(&d.path("xoob.sock"));
    c.negotiate(true);
    c.send(
        "{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": true}, \"id\": \"lock-cmd\"}\n",
    );
    assert_eq!(c.read_msg_within(QUIET), None);
    c.send("{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": false}, \"control\": {\"run-oob\": true}, \"id\": \"unlock-cmd\"}\n");
    // Both replies, in either order (the unlock releases the dispatcher before its own reply
    // exists; QEMU 2.12's test does not check the order either).
    let mut got = vec![c.read_msg(), c.read_msg()];
    got.sort();
    assert_eq!(
        got,
        [
            "{\"return\": {}, \"id\": \"lock-cmd\"}\r\n",
            "{\"return\": {}, \"id\": \"unlock-cmd\"}\r\n"
        ]
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_output_limit_and_others_go_on() {
    let dir = temp_dir();
    let config = qmp_core::server::Config {
        version: test_version(),
        output_limit: 256 * 1024,
        ..qmp_core::server::Config::default()
    };
    let machine = qmp_io::demo::Machine::new(&config.version);
    let b = qmp_io::QmpServerBuilder::new(config).listen(
        qmp_io::ListenSpec::parse(&format!("unix:{},clients=2", dir.join("q.sock").display()))
            .unwrap(),
    );
    let server = b
        .commands(|r| machine.register(r, true))
        .build()
        .unwrap()
        .spawn()
        .unwrap();
    let mut hog = Client::connect(&dir.join("q.sock"));
    hog.negotiate(true);
    let mut ok = Client::connect(&dir.join("q.sock"));
    ok.negotiate(true);
    // The hog asks for ~2 MB of replies and reads none of them.
    let req =
        "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"help\"}}\n";
    let mut w = hog.sock.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..6000 {
            if w.write_all(req.as_bytes()).is_err() {
                break; // dropped by the server
            }
        }
    });
    for i in 0..20 {
        ok.send(&format!("{{\"execute\": \"query-name\", \"id\": {i}}}\n"));
        assert_eq!(
            ok.read_msg(),
            format!("{{\"return\": {{}}, \"id\": {i}}}\r\n")
        );
    }
    writer.join().unwrap();
    assert!(hog.eof_within(TIMEOUT), "the hog is disconnected");
    let dropped = server
        .handle()
        .inspect(|s| s.probes().output_limit_disconnect);
    assert_eq!(dropped, 1);
    ok.send("{\"execute\": \"query-status\"}\n");
    assert!(ok.read_msg().contains("\"running\": true"));
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exec_oob_before_in_band_requests_of_the_same_write_is_answered_first() {
    // QEMU runs an OOB command inside the parser callback, before the requests after it can be
    // dispatched (compat case D8). Repeated, since a race would show only sometimes.
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    for round in 0..30 {
        c.send(&format!(
            "{{\"exec-oob\": \"query-yank\", \"id\": \"o{round}\"}}{{\"execute\": \"query-name\", \"id\": 1}}{{\"execute\": \"nope\", \"id\": 2}}{{\"execute\": \"query-name\", \"id\": 3}}"
        ));
        assert_eq!(
            c.read_msg(),
            format!("{{\"return\": [{{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}}], \"id\": \"o{round}\"}}\r\n")
        );
        assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": 1}\r\n");
        assert_eq!(
            c.read_msg(),
            "{\"id\": 2, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\r\n"
        );
        assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": 3}\r\n");
    }
}

#[test]
fn input_held_by_an_oob_call_goes_on_after_it_completes() {
    // The core stops a monitor's input while an OOB call it emitted is outstanding; the IO
    // thread runs the handler, completes it, and the rest of the same write (more OOB calls,
    // a refused exec-oob, in-band requests) must still be handled without any further byte.
    let d = start(&["unix:qmp.sock"]);
    let mut c = Client::connect(&d.path("qmp.sock"));
    c.negotiate(true);
    let yank = "[{\"type\": \"chardev\", \"id\": \"compat_monitor0\"}]";
    for round in 0..20 {
        c.send(&format!(
            "{{\"exec-oob\": \"query-yank\", \"id\": \"a{round}\"}}\
             {{\"exec-oob\": \"migrate-pause\", \"id\": \"b{round}\"}}\
             {{\"execute\": \"query-name\", \"id\": 1}}\
             {{\"exec-oob\": \"query-name\", \"id\": \"c{round}\"}}\
             {{\"exec-oob\": \"query-yank\", \"id\": \"d{round}\"}}\
             {{\"execute\": \"query-name\", \"id\": 2}}"
        ));
        let got: Vec<String> = (0..6).map(|_| c.read_msg()).collect();
        let pos = |want: &str| {
            got.iter()
                .position(|m| m == want)
                .unwrap_or_else(|| panic!("no {want:?} in {got:?}"))
        };
        let a = pos(&format!("{{\"return\": {yank}, \"id\": \"a{round}\"}}\r\n"));
        let b = pos(&format!("{{\"id\": \"b{round}\", \"error\": {{\"class\": \"GenericError\", \"desc\": \"migrate-pause is currently only supported during postcopy-active state\"}}}}\r\n"));
        let refused = pos(&format!("{{\"id\": \"c{round}\", \"error\": {{\"class\": \"GenericError\", \"desc\": \"The command query-name does not support OOB\"}}}}\r\n"));
        let dd = pos(&format!("{{\"return\": {yank}, \"id\": \"d{round}\"}}\r\n"));
        let one = pos("{\"return\": {}, \"id\": 1}\r\n");
        let two = pos("{\"return\": {}, \"id\": 2}\r\n");
        // OOB replies in request order; an OOB request is answered before the in-band
        // requests that follow it; in-band replies in order.
        assert!(a < b && b < refused && refused < dd, "{got:?}");
        assert!(b < one && dd < two && one < two, "{got:?}");
    }
}
