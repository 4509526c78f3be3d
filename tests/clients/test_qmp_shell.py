"""qmp-shell (from qemu.qmp) driven through stdin.

Its HMP mode (-H) is not tested: it always sends `cpu-index: 0`, which QEMU 7.2 `-machine none`
(no CPUs) rejects with "Parameter 'cpu-index' expects a CPU number", so qmp-shell -H fails at
start-up against QEMU itself; qmpd mirrors that machine."""

import subprocess
import sys

from harness import test


def _shell(server, lines, *flags):
    proc = subprocess.run(
        [sys.executable, "-m", "qemu.qmp.qmp_shell", *flags, server.path],
        input="".join(line + "\n" for line in lines), capture_output=True, text=True,
        timeout=20)
    return proc.returncode, proc.stdout, proc.stderr


@test
def qmp_shell_runs_commands(server):
    rc, out, err = _shell(server, [
        "query-status",
        "human-monitor-command command-line=frobnicate",
        "getfd fdname=x",
        "nope",
    ])
    assert rc == 0, (rc, err)
    assert "Welcome to the QMP low-level shell!" in out, out
    assert "Connected to QEMU " in out, out
    # Without a terminal qmp-shell prints each reply as one line of JSON after its prompt.
    assert ('(QEMU) {"return": {"status": "running", "singlestep": false, "running": true}}\n'
            in out), out
    assert '(QEMU) {"return": "unknown command: \'frobnicate\'\\r\\n"}\n' in out, out
    assert ('(QEMU) {"error": {"class": "GenericError", '
            '"desc": "No file descriptor supplied via SCM_RIGHTS"}}\n') in out, out
    assert ('(QEMU) {"error": {"class": "CommandNotFound", '
            '"desc": "The command nope has not been found"}}\n') in out, out


@test
def qmp_shell_pretty_and_verbose(server):
    rc, out, err = _shell(server, ["query-name", "stop"], "-p", "-v")
    assert rc == 0, (rc, err)
    # -v echoes what was sent; -p pretty-prints as JSON.
    assert '"execute": "query-name"' in out, out
    assert '"return": {}' in out, out
