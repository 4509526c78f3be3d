"""A minimal QMP client for many requests at once: connect to a Unix socket, negotiate, then
send a batch of requests while reading their replies (one line each, events skipped).

Used by scripts/qmp-schema-dump and tests/compat/schema_diff.py."""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time


class Link:
    def __init__(self, path, timeout=60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        # The socket file exists a moment before the server listens on it.
        deadline = time.monotonic() + 10.0
        while True:
            try:
                self.sock.connect(path)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()
        self.batch([{"execute": "qmp_capabilities"}])

    def batch(self, requests):
        """The raw reply line of each request, in order."""
        data = b"".join(json.dumps(r).encode() + b"\n" for r in requests)
        writer = threading.Thread(target=self.sock.sendall, args=(data,))
        writer.start()
        out = []
        while len(out) < len(requests):
            line = self.file.readline()
            if not line:
                raise EOFError("server closed the connection after %d replies" % len(out))
            if line.startswith(b'{"timestamp"'):
                continue
            out.append(line)
        writer.join()
        return out

    def close(self):
        self.file.close()
        self.sock.close()


class Process:
    """A server started for a while: `argv` with `{sock}` replaced by a fresh socket path."""

    def __init__(self, argv, start_timeout=10.0):
        self.dir = tempfile.mkdtemp(prefix="qmp-link-")
        self.path = os.path.join(self.dir, "qmp.sock")
        argv = [a.replace("{sock}", self.path) for a in argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("%s did not start" % argv[0])
            time.sleep(0.01)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.rmdir(self.dir)


def qemu_argv(binary):
    return [binary, "-machine", "none", "-nodefaults", "-display", "none",
            "-qmp", "unix:{sock},server=on,wait=off"]
