//! Human monitor sessions recorded from live QEMU 7.2 (`scripts/hmp_capture.py` writes
//! `data/hmp/qemu72.json`) replayed through the core: every chunk of typed bytes must give the
//! same bytes back, echo, redraws, completions, listings, errors and prompts included.
//!
//! The command table is QEMU's own, read from the recorded `help` and `info` listings (and the
//! `-preconfig` ones for the `p` flag); the argument types of the commands the sessions run
//! are QEMU 7.2's (`hmp-commands.hx`). A small fake machine answers `stop`, `cont` and the
//! `info` commands the sessions run with QEMU's texts.

use std::collections::BTreeSet;

use qmp_core::hmp::HmpCommand;
use qmp_core::json::Value;
use qmp_core::server::{
    CallResult, Config, ErrorClass, Input, Instant, MonitorId, MonitorOptions, Output, RunState,
    Server,
};

fn data() -> serde_json::Value {
    let text = include_str!("data/hmp/qemu72.json");
    serde_json::from_str(text).expect("transcript file")
}

fn bytes(s: &serde_json::Value) -> Vec<u8> {
    s.as_str()
        .expect("string")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
        .collect()
}

fn steps(d: &serde_json::Value, session: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    d["sessions"][session]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| (bytes(&s[0]), bytes(&s[1])))
        .collect()
}

/// The listing printed by a command: what follows the echo's `\x1b[K\r\n`, up to the prompt.
fn listing(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(out);
    let start = s.find("\x1b[K\r\n").expect("echo") + 5;
    let end = s.rfind("(qemu) ").expect("prompt");
    s[start..end].replace("\r\n", "\n")
}

/// Entries of a `help`-style listing: `name params -- help` lines, where a help text or
/// parameter list may run over several lines. An entry starts at a line whose first word is
/// a command name (every alias in `names`).
fn entries(text: &str, prefix: &str, names: &BTreeSet<String>) -> Vec<(String, String, String)> {
    let mut chunks: Vec<String> = Vec::new();
    for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
        let body = line.strip_prefix(prefix).unwrap_or(line);
        let first = body.split(' ').next().unwrap_or("");
        let starts = line.starts_with(prefix)
            && !first.is_empty()
            && first.split('|').all(|n| names.contains(n))
            && body.len() > first.len();
        if starts {
            chunks.push(body.to_owned());
        } else {
            let last = chunks.last_mut().expect("continuation after an entry");
            last.push('\n');
            last.push_str(line);
        }
    }
    chunks
        .into_iter()
        .map(|c| {
            let (head, help) = c.split_once(" -- ").expect("' -- '");
            let (name, params) = head.split_once(' ').expect("name");
            (name.to_owned(), params.to_owned(), help.to_owned())
        })
        .collect()
}

fn words(out: &[u8]) -> BTreeSet<String> {
    let s = String::from_utf8_lossy(out);
    let list = &s[s.find("\r\n").expect("list") + 2..s.rfind("(qemu) ").expect("prompt")];
    list.split_whitespace().map(str::to_owned).collect()
}

/// QEMU 7.2's `args_type` of the commands the sessions run (hmp-commands.hx).
fn args_type(info: bool, name: &str) -> &'static str {
    match (info, name) {
        (false, "cpu") => "index:i",
        (false, "balloon") => "value:M",
        (false, "memsave") => "val:l,size:i,filename:s",
        (false, "set_link") => "name:s,up:b",
        (false, "eject") => "force:-f,device:B",
        (false, "block_resize") => "device:B,size:o",
        (false, "expire_password") => "protocol:s,time:s,display:-ds",
        (false, "x" | "xp") => "fmt:/,addr:l",
        (true, "block") => "nodes:-n,verbose:-v,device:B?",
        _ => "",
    }
}

const BUILTINS: [&str; 5] = ["help|?", "info", "history", "getfd", "closefd"];

/// A server with QEMU 7.2's HMP table, read from the recordings.
fn qemu_server(d: &serde_json::Value, preconfig: bool) -> Server {
    let all = steps(d, "help_listing");
    let comp = steps(d, "completion");
    let top_names = words(&comp[1].1);
    let info_names = words(&comp[4].1);
    let pre = steps(d, "preconfig");
    let pre_top: BTreeSet<String> = entries(&listing(&pre[1].1), "", &top_names)
        .into_iter()
        .map(|e| e.0)
        .collect();
    let pre_info: BTreeSet<String> = entries(&listing(&pre[2].1), "info ", &info_names)
        .into_iter()
        .map(|e| e.0)
        .collect();
    let mut config = Config::default();
    if preconfig {
        config.run_state = RunState::Preconfig;
    }
    let mut server = Server::new(config);
    let tables = [
        (
            false,
            entries(&listing(&all[1].1), "", &top_names),
            &pre_top,
        ),
        (
            true,
            entries(&listing(&all[2].1), "info ", &info_names),
            &pre_info,
        ),
    ];
    for (info, list, pre) in tables {
        for (name, params, help) in list {
            if BUILTINS.contains(&name.as_str()) {
                continue;
            }
            let at = args_type(info, &name);
            let cmd = if info {
                HmpCommand::info(&name, at, &params, &help)
            } else {
                HmpCommand::new(&name, at, &params, &help)
            };
            let flags = if pre.contains(&name) { "p" } else { "" };
            server.register_hmp(cmd.flags(flags)).expect("register");
        }
    }
    server
}

/// The fake machine behind the HMP commands the sessions run.
struct Machine {
    server: Server,
    now: Instant,
    running: bool,
    prelaunch: bool,
}

impl Machine {
    fn run(&mut self, input: Input) {
        self.now = self.now.plus_nanos(1_000);
        self.server.handle(self.now, input).expect("input");
        loop {
            let mut progressed = false;
            while let Some(o) = self.server.poll_output() {
                progressed = true;
                if let Output::Call(c) = o {
                    let mut result = None;
                    let text = match c.command.as_str() {
                        "hmp exit_preconfig" if self.prelaunch => {
                            self.prelaunch = false;
                            self.now = self.now.plus_nanos(1_000);
                            let input = Input::SetRunState(RunState::Running);
                            self.server.handle(self.now, input).expect("run state");
                            String::new()
                        }
                        "hmp exit_preconfig" => {
                            result = Some(CallResult::Error {
                                class: ErrorClass::GenericError,
                                desc: "The command is permitted only before machine \
                                       initialization"
                                    .into(),
                            });
                            String::new()
                        }
                        "hmp stop" => {
                            self.running = false;
                            String::new()
                        }
                        "hmp cont" => {
                            self.running = true;
                            String::new()
                        }
                        "hmp info status" => format!(
                            "VM status: {}\n",
                            if self.prelaunch {
                                "paused (prelaunch)"
                            } else if self.running {
                                "running"
                            } else {
                                "paused"
                            }
                        ),
                        "hmp info version" => "7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\n".into(),
                        "hmp info name" => String::new(),
                        other => panic!("unexpected call {other} {:?}", c.arguments),
                    };
                    self.now = self.now.plus_nanos(1_000);
                    let result = result.unwrap_or(CallResult::Return(Value::string(text)));
                    self.server
                        .handle(self.now, Input::Complete { call: c.id, result })
                        .expect("complete");
                }
            }
            if self.server.dispatcher_ready() {
                self.now = self.now.plus_nanos(1_000);
                self.server
                    .handle(self.now, Input::NextInBand)
                    .expect("next");
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    fn take(&mut self, m: MonitorId) -> Vec<u8> {
        let out = self.server.pending_output(m).to_vec();
        let n = out.len();
        self.server
            .handle(self.now, Input::Written { monitor: m, n })
            .expect("written");
        out
    }
}

fn replay(session: &str) {
    let d = data();
    let preconfig = d["sessions"][session]["args"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "-preconfig"));
    let mut w = Machine {
        server: qemu_server(&d, preconfig),
        now: Instant(0),
        running: true,
        prelaunch: preconfig,
    };
    let m = MonitorId(1);
    for (i, (sent, expected)) in steps(&d, session).into_iter().enumerate() {
        if i == 0 {
            w.run(Input::OpenHmp {
                monitor: m,
                options: Default::default(),
            });
        } else {
            w.run(Input::Receive {
                monitor: m,
                bytes: sent.clone(),
                fds: vec![],
            });
        }
        let got = w.take(m);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "session {session}, step {i}: sent {:?}",
            String::from_utf8_lossy(&sent)
        );
    }
}

#[test]
fn echo_and_errors() {
    replay("echo_and_errors");
}

#[test]
fn editing() {
    replay("editing");
}

#[test]
fn history() {
    replay("history");
}

#[test]
fn completion() {
    replay("completion");
}

#[test]
fn typed_ahead() {
    replay("typed_ahead");
}

#[test]
fn help_listing() {
    replay("help_listing");
}

#[test]
fn args() {
    replay("args");
}

#[test]
fn preconfig() {
    replay("preconfig");
}

#[test]
fn exit_preconfig() {
    replay("exit_preconfig");
}

/// QMP `human-monitor-command` runs the same table on a non-interactive monitor. (QEMU's
/// `stop` also sends a STOP event; the fake machine sends none, so event lines are left out
/// of the comparison.)
#[test]
fn human_monitor_command() {
    let d = data();
    let mut w = Machine {
        server: qemu_server(&d, false),
        now: Instant(0),
        running: true,
        prelaunch: false,
    };
    w.server.register_human_monitor_command().expect("register");
    let m = MonitorId(7);
    w.run(Input::Open {
        monitor: m,
        options: MonitorOptions::default(),
    });
    w.run(Input::Receive {
        monitor: m,
        bytes: b"{\"execute\": \"qmp_capabilities\"}\n".to_vec(),
        fds: vec![],
    });
    w.take(m);
    let steps = d["passthrough"].as_array().expect("passthrough");
    assert!(steps.len() > 10);
    for s in steps {
        let (sent, expected) = (bytes(&s[0]), bytes(&s[1]));
        let expected: String = String::from_utf8_lossy(&expected)
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with("{\"timestamp\""))
            .collect();
        w.run(Input::Receive {
            monitor: m,
            bytes: sent.clone(),
            fds: vec![],
        });
        let got = w.take(m);
        assert_eq!(
            String::from_utf8_lossy(&got),
            expected,
            "sent {}",
            String::from_utf8_lossy(&sent)
        );
    }
}
