"""Byte-level driver: runs one case's steps against one live target and records what every
connection receives, step by step.

It owns sockets, SCM_RIGHTS sending and the "collect until quiescence" rule. It knows nothing
about QEMU or qmpd (targets.py) nor about masking (masking.py).

Collection rule after every step: wait until each connection named in the step's `expect`
has received that many complete messages in this step (bounded by EXPECT_TIMEOUT), then keep
reading until no connection has received anything for `quiet` seconds (bounded by
STEP_MAX). The expected counts are only a way to stop waiting early; the comparison is done on
the bytes, so a wrong hint costs time, never correctness.
"""

import os
import re
import select
import socket
import time

# Upper bound on waiting for the hinted number of messages in one step.
EXPECT_TIMEOUT = 5.0
# Upper bound on one step's whole collection (a target that never goes quiet).
STEP_MAX = 20.0
# Default silence that ends a step once the hinted messages have arrived.
QUIET_AFTER_HINT = 0.08
# Default silence that ends a step that has no hint (or expects nothing).
QUIET_NO_HINT = 0.25
# Upper bound on the bytes kept per connection and step (a runaway target).
MAX_STEP_BYTES = 8 << 20
# Bound on connect retries while a listener is coming up (each retry sleeps RETRY_SLEEP).
CONNECT_RETRIES = 400
RETRY_SLEEP = 0.01

EOF_MARK = b"<EOF>"

# `$FD1`, `$FD2`... in sent bytes stand for the fd numbers the target reported, in order of
# first appearance in its replies (add-fd returns the target's own descriptor numbers).
_FD_SEEN = re.compile(rb'"fd": (\d+)')
_FD_REF = re.compile(rb"\$FD(\d+)")


def count_messages(data):
    """Complete QMP messages in `data`: lines ending in `}` that do not start with a space.

    Compact messages are one such line; a pretty message ends with a bare `}` line, and its
    inner lines are indented, so the rule counts both kinds once each.
    """
    n = 0
    for line in data.split(b"\r\n")[:-1]:
        if line.endswith(b"}") and not line.startswith(b" "):
            n += 1
    return n


class Step:
    """One action of a case. kind: connect | send | close | pause | fdprobe.

    fdprobe reports, as pseudo-connection "fds", whether the server still holds each
    descriptor the case has passed so far (in order): `open`, or `closed` when writing to the
    test's end of that pipe fails with EPIPE because the server closed the read end."""

    def __init__(self, kind, conn, data=b"", fds=0, monitor=0, expect=None, quiet=None,
                 chunks=None):
        self.kind = kind
        self.conn = conn
        self.data = data
        self.fds = fds
        self.monitor = monitor
        self.expect = expect if expect is not None else {}
        self.quiet = quiet
        self.chunks = chunks

    def describe(self):
        if self.kind == "send":
            shown = self.data if len(self.data) <= 120 else (
                self.data[:80] + b"...(%d bytes)..." % len(self.data) + self.data[-30:])
            extra = " +%d fd" % self.fds if self.fds else ""
            return "send %s%s: %r" % (self.conn, extra, shown)
        if self.kind == "connect":
            return "connect %s to monitor %d" % (self.conn, self.monitor)
        return "%s %s" % (self.kind, self.conn)


class Session:
    """The live connections of one case against one target."""

    def __init__(self, paths):
        self.paths = paths
        self.socks = {}
        self.eof = set()
        self.pipes = []
        self.fd_numbers = []

    def close_all(self):
        for s in self.socks.values():
            try:
                s.close()
            except OSError:
                pass
        for fd in self.pipes:
            try:
                os.close(fd)
            except OSError:
                pass

    def _connect(self, name, monitor):
        path = self.paths[monitor]
        last = None
        for _ in range(CONNECT_RETRIES):
            family = socket.AF_UNIX if isinstance(path, str) else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.connect(path)
                s.setblocking(False)
                self.socks[name] = s
                return
            except (FileNotFoundError, ConnectionRefusedError) as e:
                last = e
                s.close()
                time.sleep(RETRY_SLEEP)
        raise RuntimeError("cannot connect to %s: %s" % (path, last))

    def _substitute(self, data):
        def sub(m):
            i = int(m.group(1)) - 1
            return self.fd_numbers[i] if i < len(self.fd_numbers) else b"-1"
        return _FD_REF.sub(sub, data)

    def _send(self, step):
        s = self.socks[step.conn]
        chunks = [self._substitute(c) for c in (step.chunks or [step.data])]
        for i, chunk in enumerate(chunks):
            if i and step.chunks:
                time.sleep(0.03)
            fds = []
            if step.fds and i == 0:
                for _ in range(step.fds):
                    r, w = os.pipe()
                    self.pipes.append(w)
                    fds.append(r)
            s.setblocking(True)
            try:
                if fds:
                    socket.send_fds(s, [chunk[:1]], fds)
                    for fd in fds:
                        os.close(fd)
                    s.sendall(chunk[1:])
                else:
                    s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                s.setblocking(False)

    def run_step(self, step):
        """Apply one step and return {conn: bytes received during it}."""
        if step.kind == "connect":
            self._connect(step.conn, step.monitor)
        elif step.kind == "send":
            self._send(step)
        elif step.kind == "close":
            s = self.socks.pop(step.conn)
            s.close()
        elif step.kind == "pause":
            pass
        elif step.kind == "fdprobe":
            got = self._collect(step)
            got["fds"] = self._probe()
            return got
        else:
            raise ValueError(step.kind)
        return self._collect(step)

    def _probe(self):
        states = []
        for fd in self.pipes:
            os.set_blocking(fd, False)
            try:
                os.write(fd, b"x")
                states.append(b"open")
            except BlockingIOError:
                states.append(b"open")
            except BrokenPipeError:
                states.append(b"closed")
        return b" ".join(states)

    def _collect(self, step):
        got = {name: bytearray() for name in self.socks}
        start = time.monotonic()
        hint = {c: n for c, n in step.expect.items() if n}
        if step.quiet is not None:
            quiet = step.quiet
        else:
            quiet = QUIET_AFTER_HINT if hint else QUIET_NO_HINT
        last_rx = start

        def satisfied():
            return all(
                c in self.eof or count_messages(bytes(got.get(c, b""))) >= n
                for c, n in hint.items())

        hint_deadline = start + EXPECT_TIMEOUT
        while True:
            now = time.monotonic()
            if now - start > STEP_MAX:
                break
            hinted = satisfied()
            if hint and not hinted and now < hint_deadline:
                timeout = min(0.05, hint_deadline - now)
            else:
                # Hint met (or none, or timed out): stop after a silence.
                silence = quiet if hinted else QUIET_NO_HINT
                remaining = silence - (now - last_rx)
                if remaining <= 0:
                    break
                timeout = remaining
            live = [s for n, s in self.socks.items() if n not in self.eof]
            if not live:
                break
            ready, _, _ = select.select(live, [], [], timeout)
            for s in ready:
                name = next(n for n, x in self.socks.items() if x is s)
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                if not data:
                    self.eof.add(name)
                    got[name] += EOF_MARK
                else:
                    if len(got[name]) < MAX_STEP_BYTES:
                        got[name] += data
                last_rx = time.monotonic()
        for b in got.values():
            for m in _FD_SEEN.finditer(b):
                if m.group(1) not in self.fd_numbers:
                    self.fd_numbers.append(m.group(1))
        return {n: bytes(b) for n, b in got.items() if b}


def run_case(case, paths):
    """Run every step of `case` against listeners at `paths` (one per monitor).

    Returns the transcript: a list of (step description, {conn: bytes}).
    """
    session = Session(paths)
    transcript = []
    try:
        for step in case.steps:
            transcript.append((step.describe(), session.run_step(step)))
    finally:
        session.close_all()
    return transcript
