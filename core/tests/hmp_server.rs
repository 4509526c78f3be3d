//! Human monitors next to QMP monitors on one server: the in-band one-at-a-time rule, no
//! events, calls and their results, suspend/resume and the prompt, descriptors, closing,
//! registration refusals, bounds.

use qmp_core::hmp::HmpCommand;
use qmp_core::json::{Object, Value};
use qmp_core::server::{
    ApiMisuse, Call, CallResult, CommandSpec, Config, ErrorClass, FdId, HmpOptions, Input, Instant,
    Lane, MonitorId, MonitorOptions, Output, Server, Timestamp,
};

struct W {
    s: Server,
    now: Instant,
    calls: Vec<Call>,
    closed: Vec<FdId>,
}

impl W {
    fn new() -> W {
        let mut s = Server::new(Config::default());
        s.register(CommandSpec::new("query-status")).unwrap();
        s.register_hmp(HmpCommand::new("stop|s", "", "", "stop emulation"))
            .unwrap();
        s.register_hmp(HmpCommand::new(
            "cpu",
            "index:i",
            "index",
            "set the default CPU",
        ))
        .unwrap();
        s.register_hmp(HmpCommand::info(
            "status",
            "",
            "",
            "show the current VM status",
        ))
        .unwrap();
        W {
            s,
            now: Instant(0),
            calls: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Apply an input and collect outputs (calls are kept, not run).
    fn input(&mut self, i: Input) {
        self.now = self.now.plus_nanos(1);
        self.s.handle(self.now, i).expect("input");
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Call(c) => self.calls.push(c),
                Output::CloseFd(fd) => self.closed.push(fd),
                _ => {}
            }
        }
    }

    fn open_hmp(&mut self, id: u64) -> MonitorId {
        let m = MonitorId(id);
        self.input(Input::OpenHmp {
            monitor: m,
            options: HmpOptions::default(),
        });
        self.take(m);
        m
    }

    fn open_qmp(&mut self, id: u64) -> MonitorId {
        let m = MonitorId(id);
        self.input(Input::Open {
            monitor: m,
            options: MonitorOptions::default(),
        });
        self.send(m, b"{\"execute\": \"qmp_capabilities\"}");
        self.input(Input::NextInBand);
        self.take(m);
        m
    }

    fn send(&mut self, m: MonitorId, b: &[u8]) {
        self.send_fds(m, b, vec![]);
    }

    fn send_fds(&mut self, m: MonitorId, b: &[u8], fds: Vec<FdId>) {
        self.input(Input::Receive {
            monitor: m,
            bytes: b.to_vec(),
            fds,
        });
    }

    fn take(&mut self, m: MonitorId) -> String {
        let out = String::from_utf8_lossy(self.s.pending_output(m)).into_owned();
        let n = self.s.pending_output(m).len();
        self.input(Input::Written { monitor: m, n });
        out
    }

    /// What a typed line echoes (QEMU redraws the whole line after every byte).
    fn echo(line: &str) -> String {
        let mut s = String::new();
        for i in 1..=line.len() {
            s.push_str(&"\x1b[D".repeat(i - 1));
            s.push_str(&line[..i]);
            s.push_str("\x1b[K");
        }
        s + "\r\n"
    }

    fn complete(&mut self, call: &Call, result: CallResult) {
        self.input(Input::Complete {
            call: call.id,
            result,
        });
    }
}

fn text(s: &str) -> CallResult {
    CallResult::Return(Value::string(s))
}

#[test]
fn banner_and_prompt_use_the_configured_version() {
    let mut w = W::new();
    w.input(Input::OpenHmp {
        monitor: MonitorId(1),
        options: HmpOptions::default(),
    });
    assert_eq!(
        w.take(MonitorId(1)),
        "QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) "
    );
    assert!(w.s.is_hmp(MonitorId(1)));
}

#[test]
fn an_hmp_command_is_an_in_band_call_named_after_it_with_parsed_arguments() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    w.send(h, b"cpu 2*3+1\n");
    assert_eq!(w.take(h), W::echo("cpu 2*3+1"));
    // Queued like a QMP request: nothing runs before the dispatcher takes it, and the
    // monitor reads nothing meanwhile.
    assert!(w.calls.is_empty());
    assert!(w.s.dispatcher_ready());
    assert!(!w.s.wants_read(h));
    w.input(Input::NextInBand);
    let c = w.calls.pop().expect("call");
    assert_eq!(c.command, "hmp cpu");
    assert_eq!(c.lane, Lane::InBand);
    assert_eq!(c.monitor, h);
    assert_eq!(c.arguments.get("index"), Some(&Value::Int(7)));
    assert!(w.s.hmp_call_can_suspend(c.id));
    assert_eq!(
        w.s.hmp_command_of_call("hmp cpu").map(|c| c.name.as_str()),
        Some("cpu")
    );
    // Text output: each \n becomes \r\n, then the prompt comes back.
    w.complete(&c, text("line one\nline two\n"));
    assert_eq!(w.take(h), "line one\r\nline two\r\n(qemu) ");
    assert!(w.s.wants_read(h));
}

#[test]
fn handler_errors_print_like_hmp_handle_error_and_other_values_print_nothing() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    for (result, printed) in [
        (
            CallResult::Error {
                class: ErrorClass::GenericError,
                desc: "boom".into(),
            },
            "Error: boom\r\n(qemu) ",
        ),
        (CallResult::Return(Value::Object(Object::new())), "(qemu) "),
    ] {
        w.send(h, b"s\r");
        w.take(h);
        w.input(Input::NextInBand);
        let c = w.calls.pop().expect("call");
        assert_eq!(c.command, "hmp stop");
        w.complete(&c, result);
        assert_eq!(w.take(h), printed);
    }
}

#[test]
fn hmp_lines_wait_for_the_in_band_call_of_another_monitor_and_take_turns() {
    let mut w = W::new();
    let q = w.open_qmp(1);
    let h = w.open_hmp(2);
    w.send(q, b"{\"execute\": \"query-status\"}");
    w.input(Input::NextInBand);
    let qc = w.calls.pop().expect("qmp call");
    assert_eq!(qc.command, "query-status");
    // The HMP line is echoed and queued, but the dispatcher is busy: even `help` (a
    // built-in) waits, as HMP and QMP commands never run at once in QEMU.
    w.send(h, b"help stop\n");
    assert_eq!(w.take(h), W::echo("help stop"));
    assert!(!w.s.dispatcher_ready());
    assert_eq!(
        w.s.handle(w.now, Input::NextInBand),
        Err(ApiMisuse::DispatcherBusy)
    );
    // A second QMP request queues behind; round robin serves the HMP monitor next.
    w.send(q, b"{\"execute\": \"query-status\", \"id\": 2}");
    w.complete(&qc, CallResult::Return(Value::Object(Object::new())));
    assert_eq!(w.take(q), "{\"return\": {}}\r\n");
    w.input(Input::NextInBand);
    assert_eq!(w.take(h), "stop|s  -- stop emulation\r\n(qemu) ");
    assert!(w.calls.is_empty());
    w.input(Input::NextInBand);
    assert_eq!(
        w.calls.pop().expect("second qmp call").command,
        "query-status"
    );
}

#[test]
fn hmp_monitors_get_no_events() {
    let mut w = W::new();
    let q = w.open_qmp(1);
    let h = w.open_hmp(2);
    w.input(Input::Event {
        name: "STOP".into(),
        data: Object::new(),
        timestamp: Timestamp {
            seconds: 1,
            microseconds: 2,
        },
    });
    assert_eq!(
        w.take(q),
        "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
    );
    assert_eq!(w.take(h), "");
}

#[test]
fn typed_ahead_bytes_wait_for_the_command_and_follow_the_prompt() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    w.send(h, b"stop\ninfo status\n");
    assert_eq!(w.take(h), W::echo("stop"));
    w.input(Input::NextInBand);
    let c = w.calls.pop().expect("stop");
    // Nothing of the second line is echoed while the first runs.
    assert_eq!(w.take(h), "");
    w.complete(&c, text(""));
    assert_eq!(w.take(h), format!("(qemu) {}", W::echo("info status")));
    w.input(Input::NextInBand);
    let c = w.calls.pop().expect("info status");
    assert_eq!(c.command, "hmp info status");
    w.complete(&c, text("VM status: running\n"));
    assert_eq!(w.take(h), "VM status: running\r\n(qemu) ");
}

#[test]
fn an_external_resume_redraws_the_prompt_and_the_line_restarts() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    w.send(h, b"he");
    w.take(h);
    w.input(Input::Suspend { monitor: h });
    w.send(h, b"lp\n");
    assert_eq!(w.take(h), "");
    w.input(Input::Resume { monitor: h });
    // QEMU's monitor_accept_input: readline_restart + the prompt; then the held bytes.
    assert_eq!(w.take(h), "(qemu) l\x1b[K\x1b[Dlp\x1b[K\r\n");
    w.input(Input::NextInBand);
    assert_eq!(w.take(h), "unknown command: 'lp'\r\n(qemu) ");
}

#[test]
fn getfd_and_closefd_on_a_human_monitor_use_its_descriptors() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    w.send_fds(h, b"getfd mine\n", vec![FdId(40)]);
    w.input(Input::NextInBand);
    assert_eq!(w.take(h), format!("{}(qemu) ", W::echo("getfd mine")));
    assert!(w.s.held_fds().contains(&FdId(40)));
    w.send(h, b"getfd other\n");
    w.input(Input::NextInBand);
    assert!(w
        .take(h)
        .ends_with("Error: No file descriptor supplied via SCM_RIGHTS\r\n(qemu) "));
    w.send(h, b"closefd mine\n");
    w.input(Input::NextInBand);
    assert!(w.take(h).ends_with("\r\n(qemu) "));
    assert_eq!(w.closed, vec![FdId(40)]);
    // A named descriptor belongs to the monitor: it survives the client, and goes with
    // the monitor.
    w.send_fds(h, b"getfd again\n", vec![FdId(41)]);
    w.input(Input::NextInBand);
    w.input(Input::Close { monitor: h });
    assert_eq!(w.closed, vec![FdId(40)]);
    assert_eq!(w.s.held_fds(), vec![FdId(41)]);
    w.input(Input::Destroy { monitor: h });
    assert_eq!(w.closed, vec![FdId(40), FdId(41)]);
    assert!(w.s.held_fds().is_empty());
}

#[test]
fn a_call_of_a_closed_session_prints_nothing_in_the_next_one() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    w.send(h, b"stop\n");
    w.input(Input::NextInBand);
    let c = w.calls.pop().expect("stop");
    w.input(Input::Close { monitor: h });
    assert!(w.s.is_hmp(h));
    w.input(Input::OpenHmp {
        monitor: h,
        options: HmpOptions::default(),
    });
    let banner = "QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ";
    assert_eq!(w.take(h), banner);
    // The call still holds the monitor's suspension (QEMU runs the command to its end
    // before it sees the close); its output goes nowhere, then the prompt comes back.
    assert!(!w.s.wants_read(h));
    w.complete(&c, text("late\n"));
    assert_eq!(w.take(h), "(qemu) ");
    assert!(w.s.wants_read(h));
}

/// Checked with live QEMU 7.2: the history belongs to the monitor and survives its
/// clients; a line left half typed does not.
#[test]
fn the_history_survives_a_reconnect_and_the_half_typed_line_does_not() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    w.send(h, b"stop\n");
    w.input(Input::NextInBand);
    let c = w.calls.pop().expect("stop");
    w.complete(&c, text(""));
    w.send(h, b"info st");
    w.take(h);
    w.input(Input::Close { monitor: h });
    w.input(Input::OpenHmp {
        monitor: h,
        options: HmpOptions::default(),
    });
    w.take(h);
    w.send(h, b"info history\n");
    w.input(Input::NextInBand);
    assert_eq!(
        w.take(h),
        format!(
            "{}0: 'stop'\r\n1: 'info history'\r\n(qemu) ",
            W::echo("info history")
        )
    );
    // A QMP open of a human monitor's id (or the reverse) is refused.
    w.input(Input::Close { monitor: h });
    assert_eq!(
        w.s.handle(
            w.now,
            Input::Open {
                monitor: h,
                options: MonitorOptions::default()
            }
        ),
        Err(ApiMisuse::OptionsChanged(h))
    );
}

#[test]
fn registration_refuses_clashes_and_unknown_types() {
    let mut w = W::new();
    for bad in [
        HmpCommand::new("help", "", "", "x"),
        HmpCommand::new("s", "", "", "x"),
        HmpCommand::new("halt|stop", "", "", "x"),
        HmpCommand::new("", "", "", "x"),
        HmpCommand::new("a b", "", "", "x"),
        HmpCommand::info("history", "", "", "x"),
    ] {
        assert!(
            matches!(
                w.s.register_hmp(bad.clone()),
                Err(ApiMisuse::BadHmpCommand(_))
            ),
            "{bad:?}"
        );
    }
    for at in ["x", "x:", "x:q", "x:O", "x:s!", ":s"] {
        assert!(
            matches!(
                w.s.register_hmp(HmpCommand::new("newcmd", at, "", "x")),
                Err(ApiMisuse::BadHmpArgsType { .. })
            ),
            "{at}"
        );
    }
    // The same name in the other table is fine (`info stop` next to `stop`).
    w.s.register_hmp(HmpCommand::info("stop", "", "", "x"))
        .unwrap();
}

#[test]
fn a_line_is_bounded_by_the_line_editor() {
    let mut w = W::new();
    let h = w.open_hmp(1);
    w.send(h, &vec![b'a'; 5000]);
    w.take(h);
    assert_eq!(w.s.hmp_line(h).len(), 4095);
    w.send(h, b"\n");
    w.input(Input::NextInBand);
    let out = w.take(h);
    assert!(out.starts_with("\r\nunknown command: 'aaa"), "{out:.40}");
    // QEMU cuts the command name at 255 bytes, but quotes the line as typed.
    assert!(out.contains(&format!("'{}'", "a".repeat(4095))));
}

#[test]
fn passthrough_calls_cannot_suspend_and_answer_with_their_text() {
    let mut w = W::new();
    w.s.register_human_monitor_command().unwrap();
    let q = w.open_qmp(1);
    w.send(
        q,
        b"{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"cpu 3\"}, \"id\": \"x\"}",
    );
    w.input(Input::NextInBand);
    let c = w.calls.pop().expect("cpu");
    assert_eq!(c.command, "hmp cpu");
    assert_eq!(c.monitor, q);
    assert!(!w.s.hmp_call_can_suspend(c.id));
    w.complete(
        &c,
        CallResult::Error {
            class: ErrorClass::GenericError,
            desc: "no such CPU".into(),
        },
    );
    assert_eq!(
        w.take(q),
        "{\"return\": \"Error: no such CPU\\r\\n\", \"id\": \"x\"}\r\n"
    );
    assert!(matches!(
        w.s.register_human_monitor_command(),
        Err(ApiMisuse::CommandExists(_))
    ));
}

#[test]
fn open_hmp_is_part_of_the_trace_format() {
    let i = Input::OpenHmp {
        monitor: MonitorId(3),
        options: HmpOptions::default(),
    };
    let text = serde_json::to_string(&i).unwrap();
    assert_eq!(serde_json::from_str::<Input>(&text).unwrap(), i);
    let short: Input = serde_json::from_str("{\"OpenHmp\": {\"monitor\": 3}}").unwrap();
    assert_eq!(short, i);
}

/// A session with human monitors, recorded with `Recorder::for_server`, replays to the same
/// digest: the header carries the HMP commands and `human-monitor-command`.
#[test]
fn hmp_sessions_record_and_replay() {
    use qmp_core::server::trace::{replay, Recorder};
    let mut w = W::new();
    w.s.register_human_monitor_command().unwrap();
    let mut rec = Recorder::for_server(&w.s, None);
    assert!(rec.text().contains("\"hmp_commands\""));
    let mut inputs = vec![
        Input::OpenHmp {
            monitor: MonitorId(1),
            options: HmpOptions::default(),
        },
        Input::Receive {
            monitor: MonitorId(1),
            bytes: b"cpu 1+1\ninfo st\t\n".to_vec(),
            fds: vec![],
        },
        Input::NextInBand,
    ];
    let mut now = 0;
    while let Some(i) = (!inputs.is_empty()).then(|| inputs.remove(0)) {
        now += 10;
        rec.handle(&mut w.s, Instant(now), i).unwrap();
        while let Some(o) = w.s.poll_output() {
            if let Output::Call(c) = o {
                inputs.push(Input::Complete {
                    call: c.id,
                    result: text("done\n"),
                });
                inputs.push(Input::NextInBand);
            }
        }
    }
    let before = w.s.pending_output(MonitorId(1)).to_vec();
    assert!(String::from_utf8_lossy(&before).contains("done\r\n(qemu) "));
    let trace = rec.finish(&w.s);
    let report = replay(&trace).expect("replays");
    assert_eq!(Some(report.digest.hex()), report.expected);
    assert_eq!(report.digest, w.s.digest());
    assert!(report.misuse.is_empty());
}
