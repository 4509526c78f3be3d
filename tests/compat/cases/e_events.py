"""Spec §8-§9: events (shape, order before replies, broadcast, not before negotiation) and the
pretty monitor (Appendix A groups E, J, N)."""

from cases import Case, close, cmd, connect, neg, pause, send
from targets import Monitor

STOP = b'{"execute": "stop", "id": "s"}\n'
CONT = b'{"execute": "cont", "id": "c"}\n'
STATUS = b'{"execute": "query-status", "id": "st"}\n'
TWO = [Monitor(), Monitor()]
PRETTY = [Monitor(pretty=True), Monitor()]

CASES = [
    cmd("E1", "stop: STOP event then reply", (STOP, 2)),
    cmd("E3", "stop, cont: RESUME event then reply", (STOP, 2), (CONT, 2)),
    cmd("E8", "stop twice: no second STOP", (STOP, 2), STOP),
    cmd("E9", "cont while running: no RESUME", CONT),
    cmd("E10", "query-status while paused", (STOP, 2), STATUS),
    cmd("E11", "events also reach a session negotiated without OOB", (STOP, 2), oob=False),
    cmd("E12", "system_powerdown: POWERDOWN event", (b'{"execute": "system_powerdown"}\n', 2)),
    Case("E2", "monitor in negotiation mode gets no event, none buffered", [
        connect("a", 0), neg("a"), connect("b", 1),
        send(STOP, conn="a", expect={"a": 2}, quiet=0.3),
        neg("b"),
        send(STATUS, conn="b")], monitors=TWO),
    Case("N1", "event broadcast to every negotiated monitor", [
        connect("a", 0), neg("a"), connect("b", 1), neg("b", oob=False),
        send(STOP, conn="a", expect={"a": 2, "b": 1}),
        send(CONT, conn="b", expect={"a": 1, "b": 2})], monitors=TWO),
    Case("N3", "event reaches a reconnected monitor only after it negotiates", [
        connect("a", 0), neg("a"), connect("b", 1), neg("b"), close("b"),
        send(STOP, conn="a", expect={"a": 2}), connect("b2", 1),
        send(CONT, conn="a", expect={"a": 2}, quiet=0.3), neg("b2"),
        send(STOP, conn="a", expect={"a": 2, "b2": 1})], monitors=TWO),
    Case("E4", "pretty monitor: greeting and negotiation reply", [
        connect("p", 0), send(b'{"execute": "qmp_capabilities"}\n', conn="p")],
        monitors=PRETTY),
    Case("E5", "pretty monitor: query-status with id [1]", [
        connect("p", 0), neg("p"),
        send(b'{"execute": "query-status", "id": [1]}\n', conn="p")], monitors=PRETTY),
    Case("E6", "pretty monitor: STOP caused by another monitor", [
        connect("p", 0), neg("p"), connect("a", 1), neg("a"),
        send(STOP, conn="a", expect={"a": 2, "p": 1})], monitors=PRETTY),
    Case("E7", "pretty monitor: error reply", [
        connect("p", 0), neg("p"), send(b'{"execute": "nope"}\n', conn="p")],
        monitors=PRETTY),
    Case("E13", "pretty monitor: nested empty containers in id", [
        connect("p", 0), neg("p"),
        send(b'{"execute": "query-name", "id": {"a": {}, "b": [], "c": [{}, [[]]], "d": "x"}}\n',
             conn="p")], monitors=PRETTY),
    Case("E14", "pretty monitor: JSON error and stop event + reply", [
        connect("p", 0), neg("p"), send(b'{]\n', conn="p"), send(STOP, n=2, conn="p")],
        monitors=PRETTY),
    Case("E15", "pretty monitor: query-version and query-yank", [
        connect("p", 0), neg("p"), send(b'{"execute": "query-version"}\n', conn="p"),
        send(b'{"exec-oob": "query-yank"}\n', conn="p")],
        monitors=[Monitor(pretty=True)]),
    Case("E16", "pretty monitor: human-monitor-command text", [
        connect("p", 0), neg("p"), send(b'{"execute": "human-monitor-command", "arguments": '
                                        b'{"command-line": "info status"}}\n', conn="p")],
        monitors=[Monitor(pretty=True)]),
    cmd("J1", "quit: SHUTDOWN, reply, EOF", (b'{"execute": "quit", "id": "bye"}\n', 2)),
    Case("J2", "quit seen by another monitor: SHUTDOWN then EOF", [
        connect("a", 0), neg("a"), connect("b", 1), neg("b"),
        send(b'{"execute": "quit"}\n', conn="a", expect={"a": 2, "b": 1})], monitors=TWO),
    Case("J3", "quit before negotiation is refused", [
        connect(), send(b'{"execute": "quit"}\n'), pause(0.2)]),
]
