"""qemu.qmp.legacy.QEMUMonitorProtocol, the synchronous client many scripts still use."""

import os

from qemu.qmp.legacy import QEMUMonitorProtocol

from harness import test


@test
def legacy_connect_and_commands(server):
    with QEMUMonitorProtocol(server.path) as qmp:
        greeting = qmp.connect(negotiate=True)
        assert greeting["QMP"]["capabilities"] == ["oob"], greeting
        assert qmp.cmd("query-status")["status"] == "running"
        raw = qmp.cmd_obj({"execute": "query-name", "id": "cookie#1"})
        assert raw == {"return": {}, "id": "cookie#1"}, raw
        err = qmp.cmd_raw("no-such-command")
        assert err["error"] == {"class": "CommandNotFound",
                                "desc": "The command no-such-command has not been found"}, err
        hmp = qmp.cmd_raw("human-monitor-command", {"command-line": "frobnicate"})
        assert hmp["return"] == "unknown command: 'frobnicate'\r\n", hmp


@test
def legacy_events(server):
    with QEMUMonitorProtocol(server.path) as qmp:
        qmp.connect()
        qmp.cmd("stop")
        ev = qmp.pull_event(wait=5.0)
        assert ev is not None and ev["event"] == "STOP", ev
        qmp.cmd("cont")
        events = qmp.get_events(wait=5.0)
        assert [e["event"] for e in events] == ["RESUME"], events
        qmp.clear_events()
        assert qmp.get_events() == []


@test
def legacy_fd_passing(server):
    r, w = os.pipe()
    try:
        with QEMUMonitorProtocol(server.path) as qmp:
            qmp.connect()
            qmp.send_fd_scm(r)
            assert qmp.cmd_raw("getfd", {"fdname": "p"}) == {"return": {}}
            again = qmp.cmd_raw("getfd", {"fdname": "q"})
            assert again["error"]["desc"] == "No file descriptor supplied via SCM_RIGHTS", again
            assert qmp.cmd_raw("closefd", {"fdname": "p"}) == {"return": {}}
    finally:
        os.close(r)
        os.close(w)
