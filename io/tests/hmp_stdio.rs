//! The human monitor on standard input and output, byte for byte against QEMU 7.2:
//! `qmpd --monitor stdio` and `qemu-system-x86_64 -machine none -monitor stdio` run side by side
//! on both runtimes, on pipes (the same typed bytes, step by step, must bring back the same
//! bytes; EOF on standard input must leave both running after answering what came before it;
//! `quit` must end both the same way) and on a pseudo-terminal (the same terminal settings while
//! they run, restored the same way when they exit, the same bytes, ctrl-c stopping both).
//! Skipped (with a message) when QEMU is not installed.
//!
//! EOF read while lines are still queued (the case where closing the monitor would lose
//! answers) cannot be forced on a real process, since qmpd reads no further while a line runs;
//! the driver's unit tests (`qmp_driver`'s `stdio_tests`) pin that rule with scripted facts.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::TIMEOUT;
use rustix::termios::{tcgetattr, LocalModes, Termios};

const QEMU: &str = "qemu-system-x86_64";

/// How long a process must be quiet for a step's answer to be over.
const STEP_QUIET: Duration = Duration::from_millis(150);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// The exit status, waiting up to [`TIMEOUT`]; `None` if still running then.
    fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `(version, package)` of the installed QEMU, or `None` without QEMU.
fn qemu_version() -> Option<(String, String)> {
    let out = Command::new(QEMU).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text
        .lines()
        .next()?
        .strip_prefix("QEMU emulator version ")?;
    let (version, package) = match rest.split_once(" (") {
        Some((v, p)) => (v, p.trim_end_matches(')')),
        None => (rest, ""),
    };
    Some((version.to_owned(), package.to_owned()))
}

/// QEMU's command line for a human monitor on standard input and output.
fn qemu() -> Command {
    let mut c = Command::new(QEMU);
    c.args(["-machine", "none", "-nodefaults", "-display", "none"])
        .args(["-monitor", "stdio"]);
    c
}

/// qmpd's command line for the same, on `runtime`, reporting QEMU's version.
fn qmpd(runtime: &str, (version, package): &(String, String)) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qmpd"));
    c.args(["--monitor", "stdio", "--runtime", runtime])
        .args(["--qemu-version", version, "--package", package])
        .args(["--log", "warn"]);
    c
}

/// Everything a descriptor delivers, chunk by chunk, from a thread (`None`: end of stream or a
/// read error, such as EIO on a terminal's master once the last slave is gone).
fn reader(mut r: impl Read + Send + 'static) -> Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Read until the process has been quiet for [`STEP_QUIET`] (and, when `prompt`, until the
/// output ends with the prompt), or its output ended. `(bytes, ended)`.
fn read_step(rx: &Receiver<Option<Vec<u8>>>, prompt: bool) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match rx.recv_timeout(STEP_QUIET) {
            Ok(Some(bytes)) => out.extend_from_slice(&bytes),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => return (out, true),
            Err(RecvTimeoutError::Timeout) => {
                if !prompt || out.ends_with(b"(qemu) ") || Instant::now() > deadline {
                    return (out, false);
                }
            }
        }
    }
}

/// A process with its standard input and output on pipes.
struct Piped {
    proc: Proc,
    stdin: Option<ChildStdin>,
    out: Receiver<Option<Vec<u8>>>,
}

fn spawn_piped(mut cmd: Command) -> Piped {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdin = child.stdin.take();
    let out = reader(child.stdout.take().unwrap());
    Piped {
        proc: Proc(child),
        stdin,
        out,
    }
}

impl Piped {
    fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }
}

/// Typed on both, step by step: commands, errors, help, and QEMU's line editing (backspace,
/// cursor keys, ctrl-a/e/d/k/u/w, history, tab completion, lines typed ahead).
const STEPS: &[&[u8]] = &[
    b"info status\n",
    b"stop\n",
    b"info status\n",
    b"cont\r",
    b"info status\r\n",
    b"help stop\n",
    b"help info status\n",
    b"foo\n",
    b"info foo\n",
    b"cont 1\n",
    b"abc",
    b"\x7f\x7fX\x01\x05",
    b"\x1b[D\x1b[C\x1b[1~\x1b[4~\x1bOH\x1bOF\x04\x1b[3~",
    b" def  ghi\x17\x17",
    b"\x0b\x15",
    b"\n",
    b"qu\t",
    b"\x17\x17",
    b"info ver\t",
    b"\n",
    b"\x1b[A",
    b"\x1b[A\x1b[A",
    b"\x1b[B",
    b"\n",
    b"info history\n",
    b"info status\ninfo version\nfoo\n",
];

/// The banner, every step of [`STEPS`], then lines followed at once by EOF on standard input:
/// the same bytes from both, and both still running afterwards.
fn pipe_session(runtime: &str) {
    let Some(version) = qemu_version() else {
        eprintln!("{QEMU} not installed: stdio HMP differential test skipped");
        return;
    };
    let mut q = spawn_piped(qemu());
    let mut d = spawn_piped(qmpd(runtime, &version));
    let (banner, _) = read_step(&q.out, true);
    assert!(banner.starts_with(b"QEMU "), "{banner:?}");
    assert_eq!(
        String::from_utf8_lossy(&read_step(&d.out, true).0),
        String::from_utf8_lossy(&banner)
    );
    for step in STEPS {
        q.type_bytes(step);
        d.type_bytes(step);
        let ends_line = step.ends_with(b"\n") || step.ends_with(b"\r");
        let (want, _) = read_step(&q.out, ends_line);
        let (got, _) = read_step(&d.out, ends_line);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "typed {:?}",
            String::from_utf8_lossy(step)
        );
    }
    // Two lines and EOF at once: both lines are answered, and EOF ends the input only.
    for p in [&mut q, &mut d] {
        p.type_bytes(b"stop\ninfo status\n");
        drop(p.stdin.take());
    }
    let (want, q_ended) = read_step(&q.out, true);
    let (got, d_ended) = read_step(&d.out, true);
    assert!(
        want.ends_with(b"VM status: paused\r\n(qemu) "),
        "{:?}",
        String::from_utf8_lossy(&want)
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "after EOF on standard input"
    );
    assert!(!q_ended && !d_ended, "standard output stays open");
    std::thread::sleep(Duration::from_millis(300));
    assert!(q.proc.0.try_wait().unwrap().is_none(), "QEMU goes on");
    assert!(d.proc.0.try_wait().unwrap().is_none(), "qmpd goes on");
}

#[test]
fn stdio_pipe_matches_qemu_byte_for_byte_std() {
    pipe_session("std");
}

#[test]
fn stdio_pipe_matches_qemu_byte_for_byte_tokio() {
    pipe_session("tokio");
}

/// `quit` on standard input: the same last bytes, standard output closed, exit status 0.
fn pipe_quit(runtime: &str) {
    let Some(version) = qemu_version() else {
        eprintln!("{QEMU} not installed: stdio HMP differential test skipped");
        return;
    };
    let mut q = spawn_piped(qemu());
    let mut d = spawn_piped(qmpd(runtime, &version));
    for p in [&mut q, &mut d] {
        read_step(&p.out, true);
        p.type_bytes(b"info status\nquit\n");
    }
    let (want, q_ended) = read_step(&q.out, false);
    let (got, d_ended) = read_step(&d.out, false);
    assert!(want.ends_with(b"quit\x1b[K\r\n"), "{want:?}");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    assert!(q_ended && d_ended, "standard output closed");
    let q_status = q.proc.exit_within(TIMEOUT).expect("QEMU exits");
    let d_status = d.proc.exit_within(TIMEOUT).expect("qmpd exits");
    assert_eq!(d_status.code(), q_status.code());
    assert_eq!(d_status.code(), Some(0));
}

#[test]
fn stdio_quit_ends_both_the_same_way_std() {
    pipe_quit("std");
}

#[test]
fn stdio_quit_ends_both_the_same_way_tokio() {
    pipe_quit("tokio");
}

/// A pseudo-terminal: the master (the test's side) and the slave (the process's standard
/// input and output; the test keeps a copy to read its settings).
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn pty() -> Pty {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(name.to_str().unwrap())
        .expect("open the slave");
    Pty {
        master,
        slave: slave.into(),
    }
}

/// What a process did on a terminal.
#[derive(Debug, PartialEq)]
struct OnTerminal {
    banner: String,
    /// The terminal's settings while it ran (input, output, control, local modes; VMIN, VTIME).
    during: (u64, u64, u64, u64, u8, u8),
    answer: String,
    /// Its settings after it exited, equal to those before.
    restored: bool,
    /// The file status flags after it exited, equal to those before (O_NONBLOCK put back).
    flags_restored: bool,
    exit: Option<i32>,
}

fn modes(t: &Termios) -> (u64, u64, u64, u64, u8, u8) {
    use rustix::termios::SpecialCodeIndex as I;
    (
        u64::from(t.input_modes.bits()),
        u64::from(t.output_modes.bits()),
        u64::from(t.control_modes.bits()),
        u64::from(t.local_modes.bits()),
        t.special_codes[I::VMIN],
        t.special_codes[I::VTIME],
    )
}

/// Run `cmd` on a fresh terminal: read the banner, look at the terminal's settings, type
/// `info status` with a carriage return as a terminal sends Enter, then `end` (`quit\r`, or
/// ctrl-c when `cmd` runs with the terminal as its controlling terminal), and look again once
/// it exited.
fn on_terminal(mut cmd: Command, end: &[u8]) -> OnTerminal {
    let Pty { master, slave } = pty();
    let before = tcgetattr(&slave).unwrap();
    let flags_before = rustix::fs::fcntl_getfl(&slave).unwrap();
    let child = cmd
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut proc = Proc(child);
    let out = reader(File::from(master.try_clone().unwrap()));
    let mut master = File::from(master);
    let (banner, _) = read_step(&out, true);
    let during = modes(&tcgetattr(&slave).unwrap());
    master.write_all(b"info status\r").unwrap();
    let (answer, _) = read_step(&out, true);
    master.write_all(end).unwrap();
    let exit = proc.exit_within(TIMEOUT).and_then(|s| s.code());
    OnTerminal {
        banner: String::from_utf8_lossy(&banner).into_owned(),
        during,
        answer: String::from_utf8_lossy(&answer).into_owned(),
        restored: modes(&tcgetattr(slave.as_fd()).unwrap()) == modes(&before),
        flags_restored: rustix::fs::fcntl_getfl(&slave).unwrap() == flags_before,
        exit,
    }
}

fn terminal_session(runtime: &str) {
    let Some(version) = qemu_version() else {
        eprintln!("{QEMU} not installed: stdio HMP terminal test skipped");
        return;
    };
    let want = on_terminal(qemu(), b"quit\r");
    let got = on_terminal(qmpd(runtime, &version), b"quit\r");
    // QEMU's raw mode: no local echo, no line editing by the terminal, signals on.
    let local = |m: LocalModes| want.during.3 & u64::from(m.bits()) != 0;
    assert!(!local(LocalModes::ECHO) && !local(LocalModes::ICANON) && local(LocalModes::ISIG));
    assert!(want.answer.ends_with("VM status: running\r\r\n(qemu) "));
    assert!(want.restored && want.exit == Some(0), "{want:?}");
    assert_eq!(got, want);
}

#[test]
fn stdio_terminal_matches_qemu_std() {
    terminal_session("std");
}

#[test]
fn stdio_terminal_matches_qemu_tokio() {
    terminal_session("tokio");
}

/// ctrl-c on the terminal (its controlling terminal, through util-linux `setsid --ctty`)
/// stops both, which put the terminal back.
#[test]
fn ctrl_c_on_the_terminal_stops_both_and_restores_it() {
    let Some(version) = qemu_version() else {
        eprintln!("{QEMU} not installed: stdio HMP terminal test skipped");
        return;
    };
    if Command::new("setsid").arg("--version").output().is_err() {
        eprintln!("setsid (util-linux) not installed: ctrl-c test skipped");
        return;
    }
    let in_session = |cmd: Command| {
        let mut c = Command::new("setsid");
        c.args(["--ctty", "--wait"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        c
    };
    let want = on_terminal(in_session(qemu()), b"\x03");
    assert!(want.restored && want.exit == Some(0), "{want:?}");
    for runtime in ["std", "tokio"] {
        let got = on_terminal(in_session(qmpd(runtime, &version)), b"\x03");
        assert_eq!(got, want, "{runtime}");
    }
}
