"""Spec §1.1 and §5.4: several connections, the one-client-at-a-time backlog, disconnect and
reconnect (Appendix A groups H and Q)."""

from cases import Case, close, connect, neg, pause, send
from targets import Monitor

CAPS = b'{"execute": "qmp_capabilities"}\n'

CASES = [
    Case("Q1", "second client waits in the backlog until the first leaves", [
        connect("a"), connect("b", expect=0, quiet=0.3),
        send(CAPS, conn="b", n=0, quiet=0.3),
        close("a", expect={"b": 2})]),
    Case("Q3", "backlogged client's pipelined input is answered in order after takeover", [
        connect("a"), neg("a"), connect("b", expect=0, quiet=0.3),
        send(CAPS + b'{"execute": "query-name", "id": 1}{"execute": "stop", "id": 2}', conn="b",
             n=0, quiet=0.3),
        send(b'{"execute": "query-status"}\n', conn="a"),
        close("a", expect={"b": 5})]),
    Case("Q4", "three clients queue up one after another", [
        connect("a"), connect("b", expect=0, quiet=0.2), connect("c", expect=0, quiet=0.2),
        close("a", expect={"b": 1}), send(CAPS, conn="b"),
        close("b", expect={"c": 1}), send(CAPS, conn="c")]),
    Case("H1", "reconnect after disconnect mid-message: fresh greeting, state reset", [
        connect(), neg(), send(b'{"execute": "query-name", "id": "par', n=0, quiet=0.15),
        close(), pause(0.2), connect(),
        send(b'tial"}\n{"execute": "query-name"}\n', n=3)]),
    Case("H3", "capabilities reset at reconnect", [
        connect(), neg(), close(), pause(0.2), connect(), neg(oob=False),
        send(b'{"exec-oob": "query-yank", "id": 1}\n')]),
    Case("H4", "run state survives a reconnect", [
        connect(), neg(), send(b'{"execute": "stop"}\n', n=2), close(), pause(0.2), connect(),
        neg(), send(b'{"execute": "query-status"}\n')]),
    Case("H5", "queued requests of a vanished client are dropped", [
        connect(), neg(oob=False),
        send(b"".join(b'{"execute": "query-name", "id": %d}' % i for i in range(10)), n=0,
             quiet=0.0),
        close(), pause(0.3), connect(), neg(),
        send(b'{"execute": "query-name", "id": "fresh"}\n')]),
    Case("H6", "two monitors negotiate independently", [
        connect("a", 0), neg("a"), connect("b", 1),
        send(b'{"execute": "query-name", "id": "b"}\n', conn="b"),
        send(b'{"execute": "query-name", "id": "a"}\n', conn="a"),
        send(b'{"exec-oob": "query-yank", "id": "b"}\n', conn="b")],
        monitors=[Monitor(), Monitor()]),
    Case("H7", "a partial message on one monitor does not block another", [
        connect("a", 0), neg("a"), connect("b", 1), neg("b"),
        send(b'{"execute": "query-name", ', conn="a", n=0, quiet=0.15),
        send(b'{"execute": "query-name", "id": "b"}\n', conn="b"),
        send(b'"id": "a"}\n', conn="a")],
        monitors=[Monitor(), Monitor()]),
    Case("H8", "after a reconnect the session is in negotiation mode again", [
        connect(), neg(), send(b'{"execute": "query-name", "id": 1}\n'), close(), pause(0.1),
        connect(), send(b'{"execute": "query-status"}\n')]),
    Case("T1", "TCP monitor: greeting, negotiation, commands", [
        connect(), neg(), send(b'{"execute": "query-status", "id": 1}\n'),
        send(b'{"exec-oob": "query-yank", "id": 2}\n'),
        send(b'{"execute": "getfd", "arguments": {"fdname": "x"}}\n')],
        monitors=[Monitor(tcp=True)]),
    Case("T2", "TCP monitor: second client waits in the backlog", [
        connect("a"), connect("b", expect=0, quiet=0.3),
        send(CAPS, conn="b", n=0, quiet=0.3), close("a", expect={"b": 2})],
        monitors=[Monitor(tcp=True)]),
    Case("T3", "events reach Unix and TCP monitors alike", [
        connect("u", 0), neg("u"), connect("t", 1), neg("t"),
        send(b'{"execute": "stop"}\n', conn="t", expect={"t": 2, "u": 1})],
        monitors=[Monitor(), Monitor(tcp=True)]),
]
