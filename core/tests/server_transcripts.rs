//! Transcript tests: the live QEMU 7.2.22 sessions of spec Appendix A (groups A, B, D, E, F, G,
//! H, N, P, R) replayed against the core with a harness that mimics QEMU's commands; the
//! bytes on the wire must match exactly.

#[path = "server_support/appendix_a.rs"]
mod appendix_a;
mod server_support;

use appendix_a::Case;
use qmp_core::json::{Object, Value};
use qmp_core::server::*;
use server_support::*;

/// Pull `"seconds": S, "microseconds": U` out of an expected event so the fake handler emits
/// the same timestamp QEMU's clock gave.
fn timestamp_in(expected: &str) -> Option<Timestamp> {
    let i = expected.find("\"seconds\": ")? + 11;
    let rest = &expected[i..];
    let seconds: i64 = rest[..rest.find(',')?].parse().ok()?;
    let j = rest.find("\"microseconds\": ")? + 16;
    let rest = &rest[j..];
    let microseconds: i64 = rest[..rest.find('}')?].parse().ok()?;
    Some(Timestamp {
        seconds,
        microseconds,
    })
}

/// One connection per group, requests in order. `chunk` splits every request into pieces of
/// that size and `write` limits every write report, to show chunking changes nothing.
fn run_group(cases: &[Case], negotiate_first: bool, chunk: usize, write: usize) {
    let mut w = World::qemu72();
    w.write_chunk = write;
    let m = if negotiate_first {
        w.negotiated(1, true)
    } else {
        let m = w.open(1, true, false);
        w.take(m);
        m
    };
    for (name, request, expected) in cases {
        let expected = s(expected);
        if let Some(ts) = timestamp_in(&expected) {
            w.ts = ts;
        }
        for piece in request.chunks(chunk.max(1)) {
            w.send(m, piece);
        }
        assert_eq!(w.take(m), expected, "entry {name}");
    }
}

#[test]
fn a1_greeting() {
    let mut w = World::qemu72();
    let m = w.open(1, true, false);
    assert_eq!(
        w.take(m),
        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"
    );
    // A monitor whose transport cannot run OOB (K1: ringbuf) offers nothing.
    let m2 = w.open(2, false, false);
    assert!(w.take(m2).ends_with("\"capabilities\": []}}\r\n"));
}

#[test]
fn group_a_negotiation_mode() {
    run_group(appendix_a::GROUP_A, false, usize::MAX, usize::MAX);
}

#[test]
fn group_b_framing_validation_json() {
    run_group(appendix_a::GROUP_B, false, usize::MAX, usize::MAX);
}

#[test]
fn group_b_with_split_reads_and_short_writes() {
    run_group(appendix_a::GROUP_B, false, 3, 7);
    run_group(appendix_a::GROUP_B, false, 1, 1);
}

#[test]
fn group_g_parameters_and_hmp() {
    run_group(appendix_a::GROUP_G, true, usize::MAX, usize::MAX);
}

#[test]
fn group_p_json_edge_cases() {
    run_group(appendix_a::GROUP_P, true, usize::MAX, usize::MAX);
    run_group(appendix_a::GROUP_P, true, 2, 5);
}

#[test]
fn group_r_parameter_paths() {
    run_group(appendix_a::GROUP_R, false, usize::MAX, usize::MAX);
}

#[test]
fn p13_long_keyword_truncated() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let mut req = vec![b'a'; 1100];
    req.push(b'\n');
    w.send(m, &req);
    let expected = format!(
        "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword '{}\"}}}}\r\n",
        "a".repeat(1041 - "JSON parse error, invalid keyword '".len())
    );
    assert_eq!(w.take(m), expected);
}

const BLOCKING: &[u8] = br#"{"execute": "blockdev-add", "arguments": {"driver": "blkdebug", "node-name": "blk", "image": {"driver": "null-co"}, "config": "/tmp/fifo"}, "id": "ID"}"#;

fn blocking(id: &str) -> Vec<u8> {
    s(BLOCKING)
        .replace("\"ID\"", &format!("\"{id}\""))
        .into_bytes()
}

fn fillers(n: usize) -> Vec<u8> {
    (1..=n)
        .flat_map(|i| format!("{{\"execute\": \"query-name\", \"id\": \"f{i}\"}}\n").into_bytes())
        .collect()
}

const OOB_PAUSE: &str = "{\"exec-oob\": \"migrate-pause\", \"id\": \"oob\"}\n";
const OOB_ERR: &str = "{\"id\": \"oob\", \"error\": {\"class\": \"GenericError\", \"desc\": \"migrate-pause is currently only supported during postcopy-active state\"}}\r\n";

fn filler_replies(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"return\": {{}}, \"id\": \"f{i}\"}}\r\n"))
        .collect()
}

#[test]
fn d1_seven_queued_oob_overtakes() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let mut all = blocking("blk7");
    all.extend(fillers(7));
    all.extend_from_slice(OOB_PAUSE.as_bytes());
    w.send(m, &all);
    assert_eq!(w.take(m), OOB_ERR, "BEFORE UNBLOCK");
    assert_eq!(w.server.queue_len(m), 7);
    assert!(w.server.wants_read(m));
    w.release_blocked();
    assert_eq!(
        w.take(m),
        format!(
            "{{\"return\": {{}}, \"id\": \"blk7\"}}\r\n{}",
            filler_replies(7)
        )
    );
}

#[test]
fn d2_eight_queued_oob_waits_until_one_is_taken() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let mut all = blocking("blk8");
    all.extend(fillers(8));
    all.extend_from_slice(OOB_PAUSE.as_bytes());
    w.send(m, &all);
    // The exec-oob bytes came in the same read but sit after the suspension point.
    assert_eq!(w.take(m), "", "BEFORE UNBLOCK");
    assert_eq!(w.server.queue_len(m), 8);
    assert!(!w.server.wants_read(m));
    assert_eq!(w.server.suspend_count(m), 1);
    assert!(w.server.probes().stopped_mid_read > 0);
    w.release_blocked();
    // QEMU's position of the OOB reply among the fillers depends on thread timing (spec
    // §5.3); here reading resumes when f1 is taken up, so it comes right after blk8.
    assert_eq!(
        w.take(m),
        format!(
            "{{\"return\": {{}}, \"id\": \"blk8\"}}\r\n{OOB_ERR}{}",
            filler_replies(8)
        )
    );
}

#[test]
fn d3_malformed_stays_in_band_oob_overtakes() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let mut all = blocking("blkE");
    all.extend_from_slice(b"{]{\"id\": \"err-2\"}\n");
    all.extend_from_slice(b"{\"exec-oob\": \"migrate-pause\", \"id\": \"oob2\"}\n");
    w.send(m, &all);
    assert_eq!(
        w.take(m),
        OOB_ERR.replace("\"oob\"", "\"oob2\""),
        "BEFORE UNBLOCK"
    );
    w.release_blocked();
    assert_eq!(
        w.take(m),
        "{\"return\": {}, \"id\": \"blkE\"}\r\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, expecting value\"}}\r\n{\"id\": \"err-2\", \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}\r\n"
    );
}

#[test]
fn d4_without_oob_strictly_sequential() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, false);
    let mut all = blocking("blkN");
    all.extend_from_slice(b"{\"execute\": \"query-name\", \"id\": \"n1\"}{\"execute\": \"query-name\", \"id\": \"n2\"}");
    w.send(m, &all);
    assert_eq!(w.take(m), "");
    // Without OOB only the first request was even parsed.
    assert_eq!(w.server.queue_len(m), 0);
    assert!(!w.server.wants_read(m));
    w.release_blocked();
    assert_eq!(
        w.take(m),
        "{\"return\": {}, \"id\": \"blkN\"}\r\n{\"return\": {}, \"id\": \"n1\"}\r\n{\"return\": {}, \"id\": \"n2\"}\r\n"
    );
}

#[test]
fn group_e_events_and_pretty() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let unneg = w.open(2, true, false);
    w.take(unneg);
    let pretty = w.open(3, true, true);
    w.take(pretty);
    // E1
    w.ts = Timestamp {
        seconds: 1795610467,
        microseconds: 629642,
    };
    w.send(m, b"{\"execute\": \"stop\", \"id\": \"s\"}\n");
    assert_eq!(w.take(m), "{\"timestamp\": {\"seconds\": 1795610467, \"microseconds\": 629642}, \"event\": \"STOP\"}\r\n{\"return\": {}, \"id\": \"s\"}\r\n");
    // E2: negotiation mode, no event.
    assert_eq!(w.take(unneg), "");
    // E3
    w.ts = Timestamp {
        seconds: 1795610468,
        microseconds: 431251,
    };
    w.send(m, b"{\"execute\": \"cont\", \"id\": \"c\"}\n");
    assert_eq!(w.take(m), "{\"timestamp\": {\"seconds\": 1795610468, \"microseconds\": 431251}, \"event\": \"RESUME\"}\r\n{\"return\": {}, \"id\": \"c\"}\r\n");
    // E4
    w.send(pretty, b"{\"execute\": \"qmp_capabilities\"}\n");
    assert_eq!(w.take(pretty), "{\r\n    \"return\": {\r\n    }\r\n}\r\n");
    // E5
    w.send(pretty, b"{\"execute\": \"query-status\", \"id\": [1]}\n");
    assert_eq!(w.take(pretty), "{\r\n    \"return\": {\r\n        \"status\": \"running\",\r\n        \"singlestep\": false,\r\n        \"running\": true\r\n    },\r\n    \"id\": [\r\n        1\r\n    ]\r\n}\r\n");
    // E6: caused by the other monitor.
    w.ts = Timestamp {
        seconds: 1795610470,
        microseconds: 34551,
    };
    w.send(m, b"{\"execute\": \"stop\"}\n");
    assert_eq!(w.take(pretty), "{\r\n    \"timestamp\": {\r\n        \"seconds\": 1795610470,\r\n        \"microseconds\": 34551\r\n    },\r\n    \"event\": \"STOP\"\r\n}\r\n");
    w.take(m);
    // E7
    w.send(pretty, b"{\"execute\": \"nope\"}\n");
    assert_eq!(w.take(pretty), "{\r\n    \"error\": {\r\n        \"class\": \"CommandNotFound\",\r\n        \"desc\": \"The command nope has not been found\"\r\n    }\r\n}\r\n");
    assert_eq!(w.take(unneg), "");
}

#[test]
fn group_f_fd_passing() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    let getfd = b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f1\"}}\n";
    // F1
    w.send(m, getfd);
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No file descriptor supplied via SCM_RIGHTS\"}}\r\n");
    // F2
    w.send_fds(
        m,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"f1\"}, \"id\": \"g\"}\n",
        vec![FdId(10)],
    );
    assert_eq!(w.take(m), "{\"return\": {}, \"id\": \"g\"}\r\n");
    // F3: the received fd is closed.
    w.send_fds(
        m,
        b"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"9x\"}}\n",
        vec![FdId(11)],
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'fdname' expects a name not starting with a digit\"}}\r\n");
    assert_eq!(w.closed_fds, vec![FdId(11)]);
    // F4, F5
    let closefd = b"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"f1\"}}\n";
    w.send(m, closefd);
    assert_eq!(w.take(m), "{\"return\": {}}\r\n");
    assert_eq!(w.closed_fds, vec![FdId(11), FdId(10)]);
    w.send(m, closefd);
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'f1' not found\"}}\r\n");
    // F6-F9
    w.send(m, b"{\"execute\": \"add-fd\"}\n");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"No file descriptor supplied via SCM_RIGHTS\"}}\r\n");
    w.send_fds(
        m,
        b"{\"execute\": \"add-fd\", \"arguments\": {\"opaque\": \"my pipe\"}}\n",
        vec![FdId(14)],
    );
    assert_eq!(w.take(m), "{\"return\": {\"fd\": 14, \"fdset-id\": 0}}\r\n");
    w.send_fds(
        m,
        b"{\"execute\": \"add-fd\", \"arguments\": {\"fdset-id\": 5}}\n",
        vec![FdId(15)],
    );
    assert_eq!(w.take(m), "{\"return\": {\"fd\": 15, \"fdset-id\": 5}}\r\n");
    w.send_fds(
        m,
        b"{\"execute\": \"add-fd\", \"arguments\": {\"fdset-id\": -1}}\n",
        vec![FdId(16)],
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'fdset-id' expects a non-negative value\"}}\r\n");
    assert_eq!(w.closed_fds.last(), Some(&FdId(16)));
    // F10
    let query = b"{\"execute\": \"query-fdsets\"}\n";
    w.send(m, query);
    assert_eq!(w.take(m), "{\"return\": [{\"fds\": [{\"fd\": 15}], \"fdset-id\": 5}, {\"fds\": [{\"fd\": 14, \"opaque\": \"my pipe\"}], \"fdset-id\": 0}]}\r\n");
    // F11, F12
    w.send(
        m,
        b"{\"execute\": \"remove-fd\", \"arguments\": {\"fdset-id\": 7}}\n",
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'fdset-id:7' not found\"}}\r\n");
    w.send(
        m,
        b"{\"execute\": \"remove-fd\", \"arguments\": {\"fdset-id\": 5, \"fd\": 999}}\n",
    );
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"File descriptor named 'fdset-id:5, fd:999' not found\"}}\r\n");
    // F13, F14
    w.send(
        m,
        b"{\"execute\": \"remove-fd\", \"arguments\": {\"fdset-id\": 5}}\n",
    );
    assert_eq!(w.take(m), "{\"return\": {}}\r\n");
    assert_eq!(w.closed_fds.last(), Some(&FdId(15)));
    w.send(m, query);
    assert_eq!(
        w.take(m),
        "{\"return\": [{\"fds\": [{\"fd\": 14, \"opaque\": \"my pipe\"}], \"fdset-id\": 0}]}\r\n"
    );
}

#[test]
fn group_h_reconnect_resets_session_and_parser() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.send(m, b"{\"execute\": \"par");
    w.input(Input::Close { monitor: m });
    // H1: a new connection gets a fresh greeting.
    let m = w.open(1, true, false);
    assert!(w.take(m).starts_with("{\"QMP\": "));
    // H2
    w.send(m, b"tial\"}\n{\"execute\": \"query-name\"}\n");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword 'tial'\"}}\r\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\\"}\\n'\"}}\r\n{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities negotiation with 'qmp_capabilities'\"}}\r\n");
}

#[test]
fn group_n_broadcast_to_every_negotiated_monitor() {
    let mut w = World::qemu72();
    let a = w.negotiated(1, true);
    let b = w.negotiated(2, false);
    w.ts = Timestamp {
        seconds: 1795610524,
        microseconds: 142792,
    };
    w.send(a, b"{\"execute\": \"stop\"}\n");
    let stop = "{\"timestamp\": {\"seconds\": 1795610524, \"microseconds\": 142792}, \"event\": \"STOP\"}\r\n";
    assert_eq!(w.take(a), format!("{stop}{{\"return\": {{}}}}\r\n"));
    assert_eq!(w.take(b), stop);
    // N2: an event raised elsewhere (HMP) reaches QMP monitors the same way.
    w.event(
        "STOP",
        Object::new(),
        Timestamp {
            seconds: 1795610526,
            microseconds: 948624,
        },
    );
    assert_eq!(
        w.take(b),
        "{\"timestamp\": {\"seconds\": 1795610526, \"microseconds\": 948624}, \"event\": \"STOP\"}\r\n"
    );
}

#[test]
fn group_l_preconfig() {
    let mut w = World::new(Config {
        run_state: RunState::Preconfig,
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    w.send(m, b"{\"execute\": \"query-cpus-fast\", \"id\": 1}\n");
    assert_eq!(w.take(m), "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"The command 'query-cpus-fast' is permitted only after machine initialization has completed\"}}\r\n");
    w.send(m, b"{\"execute\": \"query-status\"}\n");
    assert_eq!(
        w.take(m),
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n"
    );
    w.send(m, b"{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"info cpus\"}}\n");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command 'human-monitor-command' is permitted only after machine initialization has completed\"}}\r\n");
    w.ts = Timestamp {
        seconds: 1795610518,
        microseconds: 602387,
    };
    w.send(m, b"{\"execute\": \"x-exit-preconfig\"}\n");
    assert_eq!(w.take(m), "{\"timestamp\": {\"seconds\": 1795610518, \"microseconds\": 602387}, \"event\": \"RESUME\"}\r\n{\"return\": {}}\r\n");
    w.send(m, b"{\"execute\": \"query-cpus-fast\"}\n");
    assert_eq!(w.take(m), "{\"return\": []}\r\n");
    w.send(m, b"{\"execute\": \"x-exit-preconfig\"}\n");
    assert_eq!(w.take(m), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command is permitted only before machine initialization\"}}\r\n");
}

#[test]
fn group_m_compat_policy() {
    let mut w = World::new(Config {
        compat: CompatPolicy {
            reject_deprecated_input: true,
            reject_unstable_input: true,
        },
        ..Config::default()
    });
    let m = w.negotiated(1, true);
    w.send(
        m,
        b"{\"execute\": \"nbd-server-add\", \"arguments\": {\"device\": \"x\"}, \"id\": 1}\n",
    );
    assert_eq!(w.take(m), "{\"id\": 1, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Deprecated command nbd-server-add disabled by policy\"}}\r\n");
    w.send(m, b"{\"execute\": \"x-query-roms\", \"id\": 2}\n");
    assert_eq!(w.take(m), "{\"id\": 2, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Unstable command x-query-roms disabled by policy\"}}\r\n");
}

#[test]
fn j1_quit_event_then_return() {
    let mut w = World::qemu72();
    let m = w.negotiated(1, true);
    w.ts = Timestamp {
        seconds: 1795610487,
        microseconds: 990490,
    };
    w.send(m, b"{\"execute\": \"quit\", \"id\": \"bye\"}\n");
    assert_eq!(w.take(m), "{\"timestamp\": {\"seconds\": 1795610487, \"microseconds\": 990490}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n{\"return\": {}, \"id\": \"bye\"}\r\n");
    let _ = Value::Null;
}
