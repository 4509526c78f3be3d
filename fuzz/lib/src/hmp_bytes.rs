//! Target `hmp_bytes`: a human monitor (HMP) fed raw typed bytes, in chunks.
//!
//! Input format: one header byte, then the bytes a person types.
//! * bit 0: the machine is in the preconfig phase; bit 1: a QMP monitor holds the dispatcher
//!   with an in-band call during the first [`HOLD_INPUTS`] inputs (HMP lines must wait for
//!   it); bits 4–7: chunk size, an index into [`CHUNKS`](crate::server_bytes::CHUNKS).
//!
//! The table has the core's built-ins and a few commands using every argument type the
//! parser supports; the embedder completes each call at once with a text naming the
//! arguments (with `\n`s in it), or with an error for one of them.
//!
//! Properties:
//! 1. No panic; no input is refused as misuse by a driver that follows the contract.
//! 2. The monitor's output never has a bare `\n` (every line end is `\r\n`).
//! 3. The output is the same bytes whatever the chunking: readline redraws after every byte
//!    and a line runs only when the previous one is done, so splitting the input differently
//!    must not change a single byte (compared with one byte per input).
//! 4. After the last input the monitor reads again (`wants_read`), nothing is queued and no
//!    call is outstanding.

use qmp_core::hmp::HmpCommand;
use qmp_core::json::{Object, Value};
use qmp_core::server::{
    CallResult, CommandSpec, Config, ErrorClass, HmpOptions, Input, Instant, MonitorId,
    MonitorOptions, Output, RunState, Server,
};

use crate::cursor::Cursor;
use crate::server_bytes::CHUNKS;

const HMP: MonitorId = MonitorId(1);
const QMP: MonitorId = MonitorId(2);

/// Inputs during which the QMP monitor's in-band call holds the dispatcher (bit 1).
const HOLD_INPUTS: usize = 3;

fn server(preconfig: bool) -> Server {
    let mut config = Config::default();
    if preconfig {
        config.run_state = RunState::Preconfig;
    }
    let mut s = Server::new(config);
    s.register(CommandSpec::new("sim-hold")).expect("register");
    let cmds = [
        HmpCommand::new("stop|s", "", "", "stop emulation"),
        HmpCommand::new("cont|c", "", "", "resume emulation").flags("p"),
        HmpCommand::new("strs", "a:s,b:S?", "a [rest]", "strings"),
        HmpCommand::new("nums", "i:i,l:l.,m:M?", "i [.l] [m]", "numbers"),
        HmpCommand::new("size", "o:o?,t:T?", "[size] [secs]", "size and time"),
        HmpCommand::new(
            "opts",
            "f:-f,n:-ns,d:B?,on:b",
            "[-f] [-n x] [dev] on|off",
            "options",
        ),
        HmpCommand::new("x", "fmt:/,addr:l", "/fmt addr", "memory dump"),
        HmpCommand::new("fail", "", "", "always fails").flags("p"),
        HmpCommand::info("status", "", "", "show the current VM status").flags("p"),
        HmpCommand::info("nothing", "", "", "no handler").without_handler(),
    ];
    for c in cmds {
        s.register_hmp(c).expect("register");
    }
    s
}

/// Runs the inputs with an embedder that completes calls at once (except the QMP hold) and
/// writes everything; returns the HMP monitor's bytes.
fn drive(preconfig: bool, hold: bool, pieces: &[&[u8]]) -> Vec<u8> {
    let mut s = server(preconfig);
    let mut now = 0u64;
    let mut out = Vec::new();
    let mut held = None;
    let mut step = |s: &mut Server, input: Input, out: &mut Vec<u8>, held: &mut Option<_>| {
        now += 1_000;
        s.handle(Instant(now), input).expect("contract followed");
        loop {
            let mut calls = Vec::new();
            while let Some(o) = s.poll_output() {
                if let Output::Call(c) = o {
                    calls.push(c);
                }
            }
            let mut progressed = !calls.is_empty();
            for c in calls {
                if c.command == "sim-hold" {
                    *held = Some(c.id);
                    continue;
                }
                let result = if c.command == "hmp fail" {
                    CallResult::Error {
                        class: ErrorClass::GenericError,
                        desc: "it failed".into(),
                    }
                } else {
                    let mut t = format!("{}:", c.command);
                    for (k, v) in c.arguments.iter() {
                        t.push_str(&format!(
                            "\n {}={:?}",
                            String::from_utf8_lossy(k.as_bytes()),
                            v
                        ));
                    }
                    CallResult::Return(Value::string(t))
                };
                now += 1_000;
                s.handle(Instant(now), Input::Complete { call: c.id, result })
                    .expect("complete");
            }
            if s.dispatcher_ready() {
                now += 1_000;
                s.handle(Instant(now), Input::NextInBand).expect("next");
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        for m in [HMP, QMP] {
            let n = s.pending_output(m).len();
            if n > 0 {
                if m == HMP {
                    out.extend_from_slice(s.pending_output(m));
                }
                now += 1_000;
                s.handle(Instant(now), Input::Written { monitor: m, n })
                    .expect("written");
            }
        }
    };
    step(
        &mut s,
        Input::OpenHmp {
            monitor: HMP,
            options: HmpOptions::default(),
        },
        &mut out,
        &mut held,
    );
    if hold {
        let open = Input::Open {
            monitor: QMP,
            options: MonitorOptions::default(),
        };
        step(&mut s, open, &mut out, &mut held);
        let negotiate = b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"sim-hold\"}";
        let recv = Input::Receive {
            monitor: QMP,
            bytes: negotiate.to_vec(),
            fds: Vec::new(),
        };
        step(&mut s, recv, &mut out, &mut held);
    }
    for (i, piece) in pieces.iter().enumerate() {
        if i == HOLD_INPUTS {
            if let Some(call) = held.take() {
                let result = CallResult::Return(Value::Object(Object::new()));
                step(
                    &mut s,
                    Input::Complete { call, result },
                    &mut out,
                    &mut held,
                );
            }
        }
        let recv = Input::Receive {
            monitor: HMP,
            bytes: piece.to_vec(),
            fds: Vec::new(),
        };
        step(&mut s, recv, &mut out, &mut held);
    }
    if let Some(call) = held.take() {
        let result = CallResult::Return(Value::Object(Object::new()));
        step(
            &mut s,
            Input::Complete { call, result },
            &mut out,
            &mut held,
        );
    }
    assert!(s.wants_read(HMP), "the human monitor still waits");
    assert_eq!(s.queue_len(HMP), 0);
    assert_eq!(s.outstanding_calls().count(), 0);
    out
}

/// The target body.
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let typed = c.rest();
    let preconfig = flags & 1 != 0;
    let hold = flags & 2 != 0;
    let chunk = CHUNKS[usize::from(flags >> 4)].max(1);
    let pieces: Vec<&[u8]> = typed.chunks(chunk).collect();
    let out = drive(preconfig, hold, &pieces);
    for (i, &b) in out.iter().enumerate() {
        assert!(
            b != b'\n' || (i > 0 && out[i - 1] == b'\r'),
            "bare \\n at {i} of the output"
        );
    }
    if chunk != 1 {
        let bytes: Vec<&[u8]> = typed.chunks(1).collect();
        let one = drive(preconfig, hold, &bytes);
        // With a held dispatcher the hold ends after a number of inputs, at different points
        // of the text in the two runs; it only delays lines, so the bytes must still agree.
        assert!(
            one == out,
            "output depends on how the typed bytes were split"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    #[test]
    fn typed_lines_in_any_chunking() {
        let typed: &[u8] = b"help\ninfo\ninfo status\nstrs a \"b c\" rest of it\n\
            nums 1 .2 3\nsize 1.5G 10ms\nopts -f -n foo dev on\nx /4xb 0x10\nfail\n\
            info nothing\nst\tc\t\x1b[A\x1b[A\x1b[B\r\n\x01\x17\x08abc\x1b[D\x04\n";
        for flags in [0x00u8, 0x01, 0x02, 0x33, 0xF0, 0x92] {
            let mut data = vec![flags];
            data.extend_from_slice(typed);
            run(&data);
        }
    }
}
