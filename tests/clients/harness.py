"""A small test runner for the real-client tests: each test gets a freshly started server
(qmpd, or QEMU 7.2 for a sanity run) with one QMP Unix socket, and the server is stopped after.

It reuses tests/compat/targets.py to start either server. Prints one line per test and
`N passed, M failed, S skipped` last; the exit status is 1 when a test failed.
"""

import asyncio
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "compat"))

from targets import Monitor, Qemu, Qmpd  # noqa: E402

# Bound on one test (a client that hangs must not hang CI).
TEST_TIMEOUT = 30.0

TESTS = []


class Skip(Exception):
    """Raised by a test that does not apply to this server."""


def test(fn=None, monitors=None, qmpd_only=None):
    """Register a test; `monitors` (default: one Unix socket) are started for it, and a test
    that needs qmpd-only features names the reason in `qmpd_only`."""
    def register(f):
        f.monitors = monitors or [Monitor()]
        f.qmpd_only = qmpd_only
        TESTS.append(f)
        return f
    return register(fn) if fn is not None else register


class Server:
    """What a test sees: the socket path, the kind of server, the process."""

    def __init__(self, kind, running):
        self.kind = kind
        self.paths = running.paths
        self.path = running.paths[0]
        self.running = running

    def exited(self, timeout=5.0):
        """Wait for the server process to end by itself (after quit)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if getattr(self.running, "proc", None) is not None:
                if self.running.proc.poll() is not None:
                    return True
            elif not self.running._alive():
                return True
            time.sleep(0.02)
        return False


def run(target, names=None):
    passed = failed = skipped = 0
    for fn in TESTS:
        if names and not any(n in fn.__name__ for n in names):
            continue
        if fn.qmpd_only and target.name != "qmpd":
            skipped += 1
            print("SKIP  %s (%s)" % (fn.__name__, fn.qmpd_only))
            continue
        running = target.start(fn.monitors)
        server = Server(target.name, running)
        started = time.monotonic()
        try:
            if inspect.iscoroutinefunction(fn):
                asyncio.run(asyncio.wait_for(fn(server), TEST_TIMEOUT))
            else:
                fn(server)
            passed += 1
            print("ok    %s (%.2f s)" % (fn.__name__, time.monotonic() - started))
        except Skip as e:
            skipped += 1
            print("SKIP  %s (%s)" % (fn.__name__, e))
        except BaseException:  # noqa: B902 - report every failure, including timeouts
            failed += 1
            print("FAIL  %s" % fn.__name__)
            traceback.print_exc(file=sys.stdout)
            print("  server stderr: %s" % running.stderr()[-500:])
        finally:
            running.stop()
        sys.stdout.flush()
    return passed, failed, skipped


def main():
    import argparse
    ap = argparse.ArgumentParser(description="real QMP clients against qmpd (or QEMU)")
    ap.add_argument("--qmpd")
    ap.add_argument("--qemu")
    ap.add_argument("-k", action="append", dest="names")
    args = ap.parse_args()
    import test_qmpclient  # noqa: F401  (registers tests)
    import test_legacy  # noqa: F401
    import test_qmp_shell  # noqa: F401
    import test_schema  # noqa: F401
    totals = [0, 0, 0]
    for target in ([Qmpd(args.qmpd, test_commands=True)] if args.qmpd else []) + ([Qemu(args.qemu)] if args.qemu else []):
        print("== %s" % target.name)
        for i, n in enumerate(run(target, args.names)):
            totals[i] += n
    print("%d passed, %d failed, %d skipped" % tuple(totals))
    return 1 if totals[1] or not totals[0] else 0


if __name__ == "__main__":
    # The test modules import `harness`: make that this very module, not a second copy.
    sys.modules["harness"] = sys.modules[__name__]
    sys.exit(main())
