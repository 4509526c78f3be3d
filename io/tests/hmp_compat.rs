//! The human monitor, byte for byte against QEMU 7.2: qmpd with `--listen
//! unix:PATH,mode=readline` and `qemu-system-x86_64 -machine none -monitor unix:PATH` get the
//! same typed bytes, step by step, and must send back the same bytes (echo and redraws, tab
//! completion, history, errors, help texts, prompts, typed-ahead lines), for every HMP command
//! qmpd implements. Skipped (with a message) when QEMU is not installed.
//!
//! Not compared: listings of every command (`help`, `info`, tab on an empty line), since QEMU
//! has ~150 commands and qmpd implements a few. The last step is `quit` (no prompt, then EOF).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const QEMU: &str = "qemu-system-x86_64";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `(version, package)` of the installed QEMU (`QEMU emulator version 7.2.22 (Debian ...)`),
/// or `None` without QEMU.
fn qemu_version() -> Option<(String, String)> {
    let out = Command::new(QEMU).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?;
    let rest = first.strip_prefix("QEMU emulator version ")?;
    let (version, package) = match rest.split_once(" (") {
        Some((v, p)) => (v, p.trim_end_matches(')')),
        None => (rest, ""),
    };
    Some((version.to_owned(), package.to_owned()))
}

/// Read until the peer has been quiet for a while (and, when `prompt`, until the output
/// ends with the prompt).
fn read_step(s: &mut UnixStream, prompt: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + TIMEOUT;
    s.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !prompt || out.ends_with(b"(qemu) ") || Instant::now() > deadline {
                    return out;
                }
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn connect(path: &PathBuf) -> UnixStream {
    wait_for(path);
    UnixStream::connect(path).expect("connect")
}

/// The steps: bytes typed at once, each ending a line or not.
const STEPS: &[&[u8]] = &[
    b"info status\n",
    b"info version\n",
    b"info name\n",
    b"stop\n",
    b"info status\n",
    b"cont\r",
    b"info status\r\n",
    b"s\n",
    b"c\n",
    b"help stop\n",
    b"help info status\n",
    b"help cont\n",
    b"help quit\n",
    b"help info version\n",
    b"help info name\n",
    b"help getfd\n",
    b"help closefd\n",
    b"help help\n",
    b"help ?\n",
    b"? s\n",
    b"help foo\n",
    b"help info foo\n",
    b"help info status extra words\n",
    b"foo\n",
    b"info foo\n",
    b"cont 1\n",
    b"stop x\n",
    b"info status x\n",
    b"  s  \n",
    b"  info   version  \n",
    b"system_powerdown\n",
    b"getfd\n",
    b"getfd x\n",
    b"closefd x\n",
    b"getfd \"a b\n",
    b"closefd \"a b\"\n",
    b"getfd a b\n",
    b"abc",
    b"\x7f\x7fX\x01\x05",
    b"\x1b[D\x1b[C\x1b[1~\x1b[4~\x1bOH\x1bOF\x04\x1b[3~",
    b" def  ghi\x17\x17",
    b"\x0b\x15\x9bD\x1bx\x00\x02",
    b"\n",
    b"qu\t",
    b"\x17\x17",
    b"info ver\t",
    b"\n",
    b"help info vers\t",
    b"\n",
    b"clo\t",
    b"\x17\x17\x17",
    b"\x1b[A",
    b"\x1b[A\x1b[A",
    b"\x1b[B",
    b"\n",
    b"info history\n",
    b"info status\ninfo version\nfoo\n",
    b"stop\r\n\r\n",
    b"info status\n",
    b"cont\n",
    b"quit\n",
];

/// Steps in the preconfig state (`-preconfig` / `--preconfig`), then after `exit_preconfig`.
const PRECONFIG_STEPS: &[&[u8]] = &[
    b"info status\n",
    b"stop\n",
    b"cont\n",
    b"help stop\n",
    b"help quit\n",
    b"help exit_preconfig\n",
    b"help info status\n",
    b"info version\n",
    b"qu\t",
    b"\x17\x17",
    b"exit_preconfig\n",
    b"info status\n",
    b"stop\n",
    b"info status\n",
    b"exit_preconfig\n",
    b"help stop\n",
    b"cont\n",
];

#[test]
fn hmp_sessions_match_qemu_byte_for_byte() {
    compare(&[], STEPS);
}

#[test]
fn hmp_preconfig_matches_qemu_byte_for_byte() {
    compare(&["-preconfig"], PRECONFIG_STEPS);
}

/// Run QEMU (with `qemu_args`) and qmpd (with the matching flags) side by side and compare
/// every step's bytes.
fn compare(qemu_args: &[&str], steps: &[&[u8]]) {
    let Some((version, package)) = qemu_version() else {
        eprintln!("{QEMU} not installed: HMP differential test skipped");
        return;
    };
    let preconfig = qemu_args.contains(&"-preconfig");
    let dir = temp_dir();
    let (q_path, d_path) = (dir.join("qemu.sock"), dir.join("qmpd.sock"));
    let _qemu = Proc(
        Command::new(QEMU)
            .args(["-machine", "none", "-nodefaults", "-display", "none"])
            .args(qemu_args)
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", q_path.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn qemu"),
    );
    let _qmpd = Proc(
        Command::new(env!("CARGO_BIN_EXE_qmpd"))
            .arg("--listen")
            .arg(format!("unix:{},mode=readline", d_path.display()))
            .args([
                "--qemu-version",
                &version,
                "--package",
                &package,
                "--log",
                "warn",
            ])
            .args(if preconfig { &["--preconfig"][..] } else { &[] })
            // QMPD_RUNTIME=tokio compares the tokio adapter's human monitor.
            .args(
                std::env::var("QMPD_RUNTIME")
                    .map(|r| vec!["--runtime".to_string(), r])
                    .unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn qmpd"),
    );
    let mut q = connect(&q_path);
    let mut d = connect(&d_path);
    let banner = read_step(&mut q, true);
    assert!(banner.starts_with(b"QEMU "), "{banner:?}");
    assert_eq!(
        String::from_utf8_lossy(&read_step(&mut d, true)),
        String::from_utf8_lossy(&banner)
    );
    for step in steps {
        q.write_all(step).unwrap();
        d.write_all(step).unwrap();
        let ends_line = step.ends_with(b"\n") || step.ends_with(b"\r");
        let want = read_step(&mut q, ends_line);
        let got = read_step(&mut d, ends_line);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "typed {:?}",
            String::from_utf8_lossy(step)
        );
    }
}
