#!/usr/bin/env python3
"""Record QEMU 7.2's human monitor byte for byte, for core/tests/hmp_transcripts.rs.

Starts `qemu-system-x86_64 -machine none -nodefaults -display none -monitor unix:...` (once
per session, so every session starts with an empty history), sends each chunk of a session,
waits until QEMU has been quiet for a moment, and records what came back. Also records the
command table as QEMU lists it (`help`, `info`, and both again under `-preconfig`), from
which the test builds the same table.

Output: core/tests/data/hmp/qemu72.json. Bytes are stored as strings with one char per byte
(U+0000..U+00FF), as the core's traces store them.

    python3 scripts/hmp_capture.py            # needs qemu-system-x86_64 7.2
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

QUIET = 0.25

SESSIONS = {
    "echo_and_errors": ([], [
        b"stop\n", b"foo\n", b"cont 1\n", b"info status\r", b"cont\r\n", b"info status x\n",
        b"info foo\n", b"getfd\n", b"  \n", b"help stop\n", b"help info status\n",
        b"help foo bar\n", b"help info foo\n", b"  cont 1\n", b"s\n", b"c\n", b"info name\n",
        b"info version\n", b"info history\n",
    ]),
    "editing": ([], [
        b"abc", b"\x7f", b"\x08", b"\x1b[D", b"X", b"\x01", b"\x05", b"\x1b[1~", b"\x1b[4~",
        b"\x1bOH", b"\x1bOF", b"\x1b[D\x1b[D\x04", b"\x1b[3~", b" def  ghi\x17", b"\x17",
        b"\x0b\x15", b"\x9bD", b"\x1b[C", b"\x1bx", b"\x1b[12;5D", b"\x00\x02\x7f\x7f\x7f", b"\r",
    ]),
    "history": ([], [
        b"stop\n", b"info status\n", b"\x1b[A", b"\x1b[A", b"\x1b[A", b"\x1b[B", b"\x1b[B",
        b"\x1b[B", b"\x1b[A\n", b"\x1b[A\x1b[A\x1b[D\x7f\n", b"info history\n",
    ]),
    "completion": ([], [
        b"\t", b"st\t", b"\x01\x1b[3~\x1b[3~\x1b[3~\x1b[3~", b"info \t", b"sta\t", b"\n",
        b"help in\t", b"ver\t", b"\n", b"c\t", b"\x17q\t", b"\x17sys\t", b"\x17info xyz\t",
        b"\x17\x17help help \t", b"\x17\x17\x17\x17x\t", b"\x17\"stop\t", b"\n",
    ]),
    "typed_ahead": ([], [
        b"info st", b"atus\ninfo version\nfoo\n", b"stop\r\n\r\ninfo status\n",
    ]),
    "help_listing": ([], [b"help\n", b"info\n", b"help info\n", b"?\n"]),
    "args": ([], [
        b"cpu x\n", b"cpu 1+\n", b"cpu (1\n", b"cpu 0x100000000\n",
        b"cpu 99999999999999999999\n", b"cpu 1/0\n", b"cpu 'a\n", b"cpu 1 2\n", b"cpu\n",
        b"balloon -1\n", b"memsave 0 0x100000000 f\n", b"memsave\n", b"set_link foo maybe\n",
        b"eject -x foo\n", b"info block -z\n", b"x /z 0\n", b"xp /3q 0\n",
        b"getfd \"abc\n", b"getfd \"a\\x\"\n", b"closefd \"a b\"\n", b"closefd a\\\"b\n",
        b"getfd x\n", b"getfd a b\n", b"cpu ~-(2*3)%4|1^'A' 9\n", b"block_resize x 1.5b\n",
        b"block_resize x 12q\n", b"block_resize x -1\n", b"block_resize x\n",
        b"expire_password vnc now -d\n", b"expire_password vnc now -q x\n", b"cpu -\n",
    ]),
    "exit_preconfig": (["-preconfig"], [
        b"stop\n", b"info status\n", b"exit_preconfig\n", b"info status\n", b"stop\n",
        b"info status\n", b"exit_preconfig\n", b"help exit_preconfig\n",
    ]),
    "preconfig": (["-preconfig"], [
        b"help\n", b"info\n", b"stop\n", b"info cpus\n", b"info status\n", b"help stop\n",
        b"help info cpus\n", b"\t", b"info \t", b"\x17\x17s\t", b"\n",
    ]),
}


# QMP `human-monitor-command` lines, run on a QMP monitor after `qmp_capabilities`.
PASSTHROUGH = [
    {"execute": "human-monitor-command", "arguments": {"command-line": "help stop"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "info history"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "getfd x"}, "id": 1},
    {"execute": "human-monitor-command", "arguments": {"command-line": "closefd x"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "cont 1"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "  foo bar"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": ""}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "stop"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "info status"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "cpu x"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "help info name"}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "info"}},
    {"execute": "human-monitor-command",
     "arguments": {"command-line": "info status", "cpu-index": 0}},
    {"execute": "human-monitor-command", "arguments": {"command-line": "c\u0000ont"}},
]


def passthrough():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "q.sock")
    p = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
         "-qmp", f"unix:{path},server=on,wait=off"])
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(QUIET)
        drain(s)
        s.sendall(b'{"execute": "qmp_capabilities"}\n')
        drain(s)
        steps = []
        for req in PASSTHROUGH:
            line = json.dumps(req).encode() + b"\n"
            s.sendall(line)
            steps.append([line.decode("latin-1"), drain(s).decode("latin-1")])
        s.close()
        return steps
    finally:
        p.kill()
        p.wait()
        os.unlink(path) if os.path.exists(path) else None
        os.rmdir(d)


def drain(s):
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            return out
        if not d:
            return out
        out += d


def session(extra, chunks):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "m.sock")
    p = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
         "-monitor", f"unix:{path},server=on,wait=off"] + extra)
    try:
        for _ in range(200):
            if os.path.exists(path):
                break
            time.sleep(0.05)
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(QUIET)
        steps = [["", drain(s).decode("latin-1")]]
        for c in chunks:
            s.sendall(c)
            steps.append([c.decode("latin-1"), drain(s).decode("latin-1")])
        s.close()
        return steps
    finally:
        p.kill()
        p.wait()
        os.unlink(path) if os.path.exists(path) else None
        os.rmdir(d)


def main():
    out = {"qemu": subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0], "sessions": {}}
    for name, (extra, chunks) in SESSIONS.items():
        out["sessions"][name] = {"args": extra, "steps": session(extra, chunks)}
        print(name, file=sys.stderr)
    out["passthrough"] = passthrough()
    here = os.path.dirname(os.path.abspath(__file__))
    dst = os.path.join(here, "..", "core", "tests", "data", "hmp", "qemu72.json")
    with open(dst, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=True)
        f.write("\n")


if __name__ == "__main__":
    main()
