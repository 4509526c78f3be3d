"""The two servers under comparison: real QEMU 7.2 and qmpd, each started fresh for one case
with the same set of QMP monitors (one listening Unix socket per monitor).

It owns process start-up and tear-down and the mapping from a monitor description to command
line flags; it knows nothing about the bytes exchanged.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# How long a target may take to create its sockets before the case is failed.
START_TIMEOUT = 10.0
# How long a target gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 3.0


class Monitor:
    """One QMP monitor: a listening Unix socket (or loopback TCP port), compact or pretty."""

    def __init__(self, pretty=False, tcp=False, clients=1):
        self.pretty = pretty
        self.tcp = tcp
        # qmpd only (`,clients=N`): QEMU's socket chardevs serve one client at a time.
        self.clients = clients


def free_port():
    """A loopback TCP port that was free a moment ago (the target binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def addresses(tmpdir, monitors):
    """Where each monitor listens: a socket path, or ("127.0.0.1", port) for TCP."""
    return [("127.0.0.1", free_port()) if m.tcp else os.path.join(tmpdir, "m%d.sock" % i)
            for i, m in enumerate(monitors)]


def spec(addr):
    return "unix:%s" % addr if isinstance(addr, str) else "tcp:%s:%d" % addr


class Running:
    """A started target: its socket paths and its process."""

    def __init__(self, proc, paths, tmpdir, stderr_path):
        self.proc = proc
        self.paths = paths
        self.tmpdir = tmpdir
        self.stderr_path = stderr_path

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class Daemon(Running):
    """A started target that detached itself; known by the pid it wrote."""

    def __init__(self, pidfile, paths, tmpdir, stderr_path):
        super().__init__(None, paths, tmpdir, stderr_path)
        try:
            with open(pidfile) as f:
                self.pid = int(f.read().strip())
        except (OSError, ValueError):
            self.pid = None

    def _alive(self):
        # A detached child may linger as a zombie of a subreaper: that counts as gone.
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def stop(self):
        if self.pid is not None and self._alive():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self._alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            if self._alive():
                os.kill(self.pid, signal.SIGKILL)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class Target:
    """Base: build an argv for a list of monitors, start it, wait for every socket."""

    name = "?"

    def argv(self, paths, monitors):
        raise NotImplementedError

    def start(self, monitors):
        tmpdir = tempfile.mkdtemp(prefix="compat-%s-" % self.name)
        paths = addresses(tmpdir, monitors)
        stderr_path = os.path.join(tmpdir, "stderr")
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(self.argv(paths, monitors), stdin=subprocess.DEVNULL,
                                    stdout=err, stderr=err)
        running = Running(proc, paths, tmpdir, stderr_path)
        deadline = time.monotonic() + START_TIMEOUT
        # TCP listeners cannot be watched without connecting: the client retries instead.
        while not all(os.path.exists(p) for p in paths if isinstance(p, str)):
            if proc.poll() is not None or time.monotonic() > deadline:
                msg = running.stderr()
                running.stop()
                raise RuntimeError("%s did not start: %s" % (self.name, msg))
            time.sleep(0.005)
        return running


class Qemu(Target):
    """`qemu-system-x86_64 -machine none` with one socket chardev + QMP monitor per monitor.

    It is started with -daemonize: the parent exits only once initialisation is over, after the
    start-up RESUME event. Connecting earlier (the sockets exist before that) lets that RESUME
    reach a client before its greeting."""

    name = "qemu"

    def __init__(self, binary):
        self.binary = binary

    def start(self, monitors):
        tmpdir = tempfile.mkdtemp(prefix="compat-qemu-")
        paths = addresses(tmpdir, monitors)
        pidfile = os.path.join(tmpdir, "pid")
        stderr_path = os.path.join(tmpdir, "stderr")
        argv = self.argv(paths, monitors) + ["-daemonize", "-pidfile", pidfile]
        with open(stderr_path, "wb") as err:
            parent = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    timeout=START_TIMEOUT, check=False)
        running = Daemon(pidfile, paths, tmpdir, stderr_path)
        if parent.returncode != 0 or running.pid is None:
            msg = running.stderr()
            running.stop()
            raise RuntimeError("qemu did not start: %s" % msg)
        return running

    def argv(self, paths, monitors):
        # -qmp / -qmp-pretty name their chardevs compat_monitor0, 1, ... in order, as qmpd
        # names its listeners (visible in query-yank and usable by yank).
        argv = [self.binary, "-machine", "none", "-nodefaults", "-display", "none"]
        for path, mon in zip(paths, monitors):
            flag = "-qmp-pretty" if mon.pretty else "-qmp"
            argv += [flag, "%s,server=on,wait=off" % spec(path)]
        return argv


class Qmpd(Target):
    """qmpd with one `--listen unix:PATH[,pretty=on]` per monitor, QEMU 7.2 dialect; with
    `--test-commands` (x-oob-test, x-emit-event) when `test_commands` is set (the client tests
    use them; the differential suite does not, so qmpd offers exactly QEMU's commands there).
    `runtime` is qmpd's adapter (`--runtime std|tokio`), by default $QMPD_RUNTIME or std, so
    every suite that starts qmpd runs against either adapter."""

    name = "qmpd"

    def __init__(self, binary, test_commands=False, runtime=None):
        self.binary = binary
        self.test_commands = test_commands
        self.runtime = runtime or os.environ.get("QMPD_RUNTIME", "std")

    def argv(self, paths, monitors):
        argv = [self.binary, "--dialect", "qemu-7.2", "--log", "warn", "--runtime", self.runtime]
        if self.test_commands:
            argv.append("--test-commands")
        for path, mon in zip(paths, monitors):
            listen = spec(path)
            if mon.pretty:
                listen += ",pretty=on"
            if mon.clients != 1:
                listen += ",clients=%d" % mon.clients
            argv += ["--listen", listen]
        return argv
