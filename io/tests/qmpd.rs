//! The `qmpd` binary: flags, QEMU-identical greeting with `--qemu-version`/`--package`,
//! shutdown on `quit` and on SIGTERM, and `--record` traces that replay to the same digest.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A qmpd child process, killed if a test fails before it exits.
struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn spawn(extra: &[&str]) -> Daemon {
        let dir = temp_dir();
        let sock = dir.join("qmp.sock");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("unix:{}", sock.display()),
            "--log".into(),
            "warn".into(),
        ];
        args.extend(
            extra
                .iter()
                .map(|s| s.replace("$DIR", &dir.display().to_string())),
        );
        // QMPD_RUNTIME=tokio runs every test here on the tokio adapter.
        if let Ok(runtime) = std::env::var("QMPD_RUNTIME") {
            args.extend(["--runtime".to_string(), runtime]);
        }
        let child = Command::new(env!("CARGO_BIN_EXE_qmpd"))
            .args(&args)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn qmpd");
        let d = Daemon { child, dir };
        let deadline = Instant::now() + TIMEOUT;
        while !d.sock().exists() {
            assert!(Instant::now() < deadline, "qmpd did not create its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        d
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// Wait for exit; the exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const QEMU_GREETING: &str = "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n";

#[test]
fn quit_sends_shutdown_then_the_return_then_eof_and_exits() {
    let mut d = Daemon::spawn(&[
        "--qemu-version",
        "7.2.22",
        "--package",
        "Debian 1:7.2+dfsg-7+deb12u18+b3",
    ]);
    let mut c = Client::connect(&d.sock());
    assert_eq!(c.read_msg(), QEMU_GREETING);
    c.send("{\"execute\": \"qmp_capabilities\"}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    c.send("{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"info version\"}, \"id\": \"h\"}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": \"7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\\r\\n\", \"id\": \"h\"}\r\n"
    );
    c.send("{\"execute\": \"quit\", \"id\": \"bye\"}\n");
    assert_eq!(
        mask_ts(&c.read_msg()),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n"
    );
    assert_eq!(c.read_msg(), "{\"return\": {}, \"id\": \"bye\"}\r\n");
    assert!(c.eof_within(TIMEOUT), "EOF after quit");
    assert_eq!(d.wait_exit(), Some(0));
    assert!(!d.sock().exists(), "socket file removed at exit");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut d = Daemon::spawn(&[]);
    let mut c = Client::connect(&d.sock());
    let g = c.read_msg();
    assert!(
        g.contains("\"package\": \"qmpd\""),
        "own version by default: {g}"
    );
    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    assert!(c.eof_within(TIMEOUT), "clients see EOF at shutdown");
    assert_eq!(d.wait_exit(), Some(0));
    assert!(!d.sock().exists());
}

/// QEMU 7.2 on SIGTERM (checked by hand: `-machine none -qmp unix:...`, negotiate, kill -TERM):
/// `SHUTDOWN {guest: false, reason: "host-signal"}` to every negotiated client, then EOF; a
/// client that has not negotiated gets no event.
#[test]
fn sigterm_sends_shutdown_host_signal_to_negotiated_clients_before_eof() {
    let mut d = Daemon::spawn(&[]);
    let mut c = Client::connect(&d.sock());
    c.negotiate(false);
    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    assert_eq!(
        mask_ts(&c.read_msg()),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"SHUTDOWN\", \
         \"data\": {\"guest\": false, \"reason\": \"host-signal\"}}\r\n"
    );
    assert!(c.eof_within(TIMEOUT), "EOF after the event");
    assert_eq!(d.wait_exit(), Some(0));
}

#[test]
fn test_commands_only_with_the_flag() {
    let requests = [
        (
            "x-oob-test",
            "{\"execute\": \"x-oob-test\", \"arguments\": {\"lock\": false}}\n",
        ),
        (
            "x-emit-event",
            "{\"execute\": \"x-emit-event\", \"arguments\": {\"event\": \"X\"}}\n",
        ),
    ];
    for (flag, offered) in [(&[][..], false), (&["--test-commands"][..], true)] {
        let d = Daemon::spawn(flag);
        let mut c = Client::connect(&d.sock());
        c.negotiate(false);
        for (name, request) in requests {
            c.send(request);
            let mut reply = c.read_msg();
            if offered && name == "x-emit-event" {
                assert!(reply.contains("\"event\": \"X\""), "{reply}");
                reply = c.read_msg();
            }
            let want = if offered {
                "{\"return\": {}}\r\n".to_string()
            } else {
                format!(
                    "{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"The command \
                     {name} has not been found\"}}}}\r\n"
                )
            };
            assert_eq!(reply, want, "{flag:?}");
        }
    }
}

/// Under umask 000 the socket must still never be connectable by others: whenever the path
/// exists, its mode is 0600 (it is bound in a private directory and renamed into place).
#[test]
fn the_socket_is_never_visible_with_wider_rights_than_0600() {
    use std::os::unix::fs::PermissionsExt;
    for _ in 0..5 {
        let dir = temp_dir();
        let sock = dir.join("qmp.sock");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask 000; exec {} --listen unix:{} --log warn",
                env!("CARGO_BIN_EXE_qmpd"),
                sock.display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            if let Ok(meta) = std::fs::symlink_metadata(&sock) {
                assert_eq!(meta.permissions().mode() & 0o777, 0o600);
                seen = true;
            }
        }
        assert!(seen, "no socket");
        let mut c = Client::connect(&sock);
        assert!(c.read_msg().starts_with("{\"QMP\""));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("qmp.sock")]);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// CPU time (user + system, clock ticks) of process `pid`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Out of descriptors, `accept` fails with EMFILE while clients wait: qmpd backs off instead of
/// retrying in a tight loop, and serves a waiting client once a descriptor is free again.
#[test]
fn accept_out_of_descriptors_backs_off_and_recovers() {
    let dir = temp_dir();
    let sock = dir.join("qmp.sock");
    // In a `Daemon`, so that qmpd is killed even when an assertion below fails.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 16; exec {} --listen unix:{},clients=32 --log error",
            env!("CARGO_BIN_EXE_qmpd"),
            sock.display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let d = Daemon { child, dir };
    let deadline = Instant::now() + TIMEOUT;
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    // More clients than descriptors: the first few are served, the rest wait in the backlog.
    let mut served = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..16 {
        let mut c = Client::connect(&sock);
        match c.read_msg_within(Duration::from_millis(300)) {
            Some(g) => {
                assert!(g.starts_with("{\"QMP\""));
                served.push(c);
            }
            None => waiting.push(c),
        }
    }
    assert!(
        !served.is_empty() && !waiting.is_empty(),
        "{} served",
        served.len()
    );
    // While accept keeps failing, qmpd must not spin: well under half a CPU over a second.
    let before = cpu_ticks(d.child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(d.child.id()) - before;
    assert!(
        used < 50,
        "{used} ticks of CPU in one second while out of descriptors"
    );
    // A served client leaves: a waiting one gets its greeting.
    drop(served.pop());
    let got = waiting
        .iter_mut()
        .any(|c| c.read_msg_within(Duration::from_secs(2)).is_some());
    assert!(
        got,
        "no waiting client was served after a descriptor was freed"
    );
}

#[test]
fn version_object_flag_is_used_verbatim() {
    let d = Daemon::spawn(&[
        "--version-object",
        "{\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 22}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}",
    ]);
    let mut c = Client::connect(&d.sock());
    assert_eq!(c.read_msg(), QEMU_GREETING);
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_qmpd"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "oob=",
        "pretty=on",
        "clients=N",
        "--dialect",
        "qemu-2.12",
        "--record",
        "--log",
        "--allow-remote",
        "--max-connections",
        "--qemu-version",
        "--package",
        "--version-object",
        "--test-commands",
        "--runtime",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn bad_flags_are_refused() {
    for args in [
        &["--listen", "udp:1"][..],
        &["--listen", "unix:/tmp/x,clients=0"],
        &["--dialect", "qemu-9"],
        &["--listen", "unix:/tmp/x", "--runtime", "async-std"],
        &[],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_qmpd"))
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} accepted");
    }
}

fn record_session(d: &Daemon) {
    let mut c = Client::connect(&d.sock());
    c.negotiate(true);
    c.send("{\"execute\": \"stop\"}\n{\"execute\": \"query-status\", \"id\": 1}\n");
    assert!(c.read_msg().contains("STOP"));
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    assert!(c.read_msg().contains("\"paused\""));
    c.send("{\"exec-oob\": \"migrate-pause\", \"id\": 2}\n{\"execute\": \"nope\"}\n{]\n");
    // The exec-oob reply may overtake the in-band ones or not (see docs/compat.md D8).
    let got: Vec<String> = (0..3).map(|_| c.read_msg()).collect();
    for want in ["postcopy-active", "CommandNotFound", "JSON parse error"] {
        assert!(got.iter().any(|m| m.contains(want)), "{want} in {got:?}");
    }
    c.send("{\"execute\": \"quit\"}\n");
    assert!(c.eof_within(TIMEOUT));
}

#[test]
fn recorded_session_replays_to_the_same_digest() {
    let mut d = Daemon::spawn(&["--record", "$DIR/trace.jsonl"]);
    record_session(&d);
    assert_eq!(d.wait_exit(), Some(0));
    let text = std::fs::read_to_string(d.dir.join("trace.jsonl")).expect("trace");
    let report = qmp_core::server::trace::replay(&text).expect("replay");
    assert!(
        report.expected.is_some(),
        "the trace ends with a digest line"
    );
    assert!(report.misuse.is_empty(), "{:?}", report.misuse);
    assert!(report.inputs > 10, "{}", report.inputs);
    assert!(
        report.matches(),
        "digest {} vs {:?}",
        report.digest.hex(),
        report.expected
    );
    // The digest covers the output: change one received byte and it no longer matches.
    let tampered = text.replacen("query-status", "query-statvs", 1);
    assert_ne!(tampered, text);
    let r2 = qmp_core::server::trace::replay(&tampered).expect("replay");
    assert!(!r2.matches());
}

/// `--preconfig` as QEMU 7.2's `-preconfig` (spec appendix A group L, checked live): only
/// `allow-preconfig` commands run until `x-exit-preconfig`, which starts the machine (RESUME)
/// and is refused after.
#[test]
fn preconfig_until_x_exit_preconfig() {
    let d = Daemon::spawn(&["--preconfig"]);
    let mut c = Client::connect(&d.sock());
    c.read_msg();
    c.send("{\"execute\": \"qmp_capabilities\"}\n");
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    c.send("{\"execute\": \"cont\", \"id\": 1}\n");
    assert_eq!(
        c.read_msg(),
        "{\"id\": 1, \"error\": {\"class\": \"GenericError\", \"desc\": \"The command 'cont' is permitted only after machine initialization has completed\"}}\r\n"
    );
    c.send("{\"execute\": \"query-status\"}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}\r\n"
    );
    c.send("{\"execute\": \"x-exit-preconfig\"}\n");
    assert_eq!(
        mask_ts(&c.read_msg()),
        "{\"timestamp\": {\"seconds\": S, \"microseconds\": U}, \"event\": \"RESUME\"}\r\n"
    );
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    c.send("{\"execute\": \"query-status\"}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}\r\n"
    );
    c.send("{\"execute\": \"x-exit-preconfig\"}\n");
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command is permitted only before machine initialization\"}}\r\n"
    );
}

/// A human monitor's session recorded with `--record` replays to the same digest (the trace
/// header carries the HMP commands and the core's `human-monitor-command`).
#[test]
fn recorded_hmp_session_replays_to_the_same_digest() {
    use std::io::{Read, Write};
    let mut d = Daemon::spawn(&[
        "--record",
        "$DIR/trace.jsonl",
        "--listen",
        "unix:$DIR/hmp.sock,mode=readline",
    ]);
    let hmp_path = d.dir.join("hmp.sock");
    let deadline = Instant::now() + TIMEOUT;
    while !hmp_path.exists() {
        assert!(Instant::now() < deadline, "no HMP socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut h = std::os::unix::net::UnixStream::connect(&hmp_path).expect("connect");
    h.write_all(b"info status\nstop\ninfo st\t\n").unwrap();
    h.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("VM status: paused\r\n(qemu) ") {
        let n = h.read(&mut buf).expect("read");
        assert!(n > 0, "EOF: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let mut c = Client::connect(&d.sock());
    c.read_msg();
    c.send("{\"execute\": \"qmp_capabilities\"}\n");
    c.read_msg();
    c.send("{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"info status\"}}\n");
    assert_eq!(
        c.read_msg(),
        "{\"return\": \"VM status: paused\\r\\n\"}\r\n"
    );
    c.send("{\"execute\": \"quit\"}\n");
    assert_eq!(d.wait_exit(), Some(0));
    let text = std::fs::read_to_string(d.dir.join("trace.jsonl")).expect("trace");
    assert!(
        text.contains("\"OpenHmp\""),
        "the HMP session is in the trace"
    );
    let report = qmp_core::server::trace::replay(&text).expect("replay");
    assert!(report.misuse.is_empty(), "{:?}", report.misuse);
    assert!(report.matches(), "replay digest differs");
}
