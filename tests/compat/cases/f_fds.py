"""Spec §10: fd passing with SCM_RIGHTS, named fds, fd sets (Appendix A group F).

Descriptors are pipe read ends created by the test; add-fd returns the server's own numbers,
which are masked (renumbered in order of appearance) and can be sent back as `$FD1`...
The fdprobe steps check which passed descriptors the server has closed (spec §10.1: each one is
either kept or closed, exactly when QEMU does it)."""

from cases import Case, close, cmd, connect, fdprobe, neg, pause, send
from targets import Monitor

GETFD = b'{"execute": "getfd", "arguments": {"fdname": "%s"}, "id": "g"}\n'
CLOSEFD = b'{"execute": "closefd", "arguments": {"fdname": "%s"}}\n'
QUERY = b'{"execute": "query-fdsets"}\n'
ADD = b'{"execute": "add-fd"}\n'
ADD_CLIENT = b'{"execute": "add_client", "arguments": {"protocol": "bogus", "fdname": "%s"}}\n'
ADD_CLIENT_TO = b'{"execute": "add_client", "arguments": {"protocol": "%s", "fdname": "x"}}\n'


def add(args):
    return b'{"execute": "add-fd", "arguments": ' + args + b"}\n"


def fcase(name, title, *items, **kw):
    return cmd(name, title, *items, fds=True, **kw)


CASES = [
    fcase("F1", "getfd without SCM_RIGHTS", GETFD % b"f1"),
    fcase("F2", "getfd with fd, closefd, closefd again",
          send(GETFD % b"f1", fds=1), fdprobe(), CLOSEFD % b"f1", fdprobe(), CLOSEFD % b"f1"),
    fcase("F3", "getfd with a name starting with a digit", send(GETFD % b"1x", fds=1),
          fdprobe()),
    fcase("F3a", "getfd digit name consumed the fd: next getfd has none",
          send(GETFD % b"9", fds=1), GETFD % b"ok"),
    fcase("F3b", "getfd same name twice replaces", send(GETFD % b"f", fds=1),
          send(GETFD % b"f", fds=1), fdprobe(), CLOSEFD % b"f", CLOSEFD % b"f", fdprobe()),
    fcase("F5", "closefd unknown name", CLOSEFD % b"nope"),
    fcase("F6", "add-fd without SCM_RIGHTS", ADD),
    fcase("F7", "add-fd auto id, query-fdsets", send(ADD, fds=1), QUERY),
    fcase("F8", "add-fd set 5 with opaque, then auto id takes 0, sets listed descending",
          send(add(b'{"fdset-id": 5, "opaque": "five"}'), fds=1), send(ADD, fds=1),
          send(add(b'{"fdset-id": 5}'), fds=1), QUERY),
    fcase("F8a", "auto id fills the lowest gap", send(add(b'{"fdset-id": 0}'), fds=1),
          send(add(b'{"fdset-id": 2}'), fds=1), send(ADD, fds=1), send(ADD, fds=1), QUERY),
    fcase("F9", "add-fd negative fdset-id", send(add(b'{"fdset-id": -1}'), fds=1),
          send(ADD, n=1), QUERY, fdprobe()),
    fcase("F10", "query-fdsets empty", QUERY),
    fcase("F11", "remove-fd unknown fdset",
          b'{"execute": "remove-fd", "arguments": {"fdset-id": 7}}\n'),
    fcase("F12", "remove-fd unknown fd in an existing set",
          send(add(b'{"fdset-id": 5}'), fds=1),
          b'{"execute": "remove-fd", "arguments": {"fdset-id": 5, "fd": 999}}\n'),
    fcase("F13", "remove-fd whole set, then query",
          send(add(b'{"fdset-id": 5}'), fds=1), send(add(b'{"fdset-id": 6}'), fds=1),
          b'{"execute": "remove-fd", "arguments": {"fdset-id": 5}}\n', QUERY, fdprobe()),
    fcase("F13a", "remove-fd one fd by number",
          send(add(b'{"fdset-id": 1}'), fds=1), send(add(b'{"fdset-id": 1}'), fds=1),
          b'{"execute": "remove-fd", "arguments": {"fdset-id": 1, "fd": $FD1}}\n', QUERY,
          b'{"execute": "remove-fd", "arguments": {"fdset-id": 1, "fd": $FD1}}\n'),
    fcase("F15", "fd sent with a command that does not use it stays pending",
          send(b'{"execute": "query-name", "id": 1}\n', fds=1), GETFD % b"late",
          fdprobe(), CLOSEFD % b"late", fdprobe()),
    fcase("F16", "two fds with one getfd: one is kept, the other closed",
          send(GETFD % b"two", fds=2), fdprobe(), GETFD % b"more", CLOSEFD % b"two",
          fdprobe()),
    fcase("F17", "getfd parameter errors",
          b'{"execute": "getfd"}\n', b'{"execute": "getfd", "arguments": {"fdname": 1}}\n',
          b'{"execute": "closefd", "arguments": {}}\n',
          b'{"execute": "getfd", "arguments": {"fdname": "a", "x": 1}}\n'),
    fcase("F18", "add-fd / remove-fd parameter errors",
          add(b'{"fdset-id": "x"}'), add(b'{"opaque": 1}'), add(b'{"fdset-id": 1.5}'),
          add(b'{"fdset-id": 18446744073709551615}'), b'{"execute": "remove-fd"}\n',
          b'{"execute": "remove-fd", "arguments": {"fdset-id": 1, "fd": "x"}}\n'),
    fcase("F19", "exec-oob getfd is not allowed", b'{"exec-oob": "getfd", "arguments": '
          b'{"fdname": "x"}}\n'),
    Case("F20", "named fds survive a reconnect", [
        connect(), neg(), send(GETFD % b"keep", fds=1), close(), pause(0.2),
        connect(), neg(), send(CLOSEFD % b"keep")], fds=True),
    Case("F21", "fd sets are cleaned up at disconnect while running", [
        connect(), neg(), send(add(b'{"fdset-id": 3}'), fds=1), close(), pause(0.2),
        connect(), neg(), send(QUERY), fdprobe()], fds=True),
    Case("F22", "fd sets survive a disconnect while paused", [
        connect(), neg(), send(b'{"execute": "stop"}\n', n=2),
        send(add(b'{"fdset-id": 3}'), fds=1), close(), pause(0.2),
        connect(), neg(), send(QUERY), fdprobe()], fds=True),
    Case("F23", "fd sets are global: seen from another monitor", [
        connect("a", 0), neg("a"), connect("b", 1), neg("b"),
        send(add(b'{"fdset-id": 4, "opaque": "o"}'), conn="a", fds=1),
        send(QUERY, conn="b")], fds=True, monitors=[Monitor(), Monitor()]),
    Case("F24", "named fds are per monitor", [
        connect("a", 0), neg("a"), connect("b", 1), neg("b"),
        send(GETFD % b"mine", conn="a", fds=1), send(CLOSEFD % b"mine", conn="b"),
        send(CLOSEFD % b"mine", conn="a")], fds=True, monitors=[Monitor(), Monitor()]),
    fcase("F25", "a newer pending fd replaces (closes) an unclaimed older one",
          send(b'{"execute": "query-name"}\n', fds=1), send(b'{"execute": "query-name"}\n', fds=1),
          fdprobe(), GETFD % b"n", fdprobe(), CLOSEFD % b"n", fdprobe()),
    fcase("F26", "two getfd in one write with one fd: the second has none",
          send(b'{"execute": "getfd", "arguments": {"fdname": "a"}}'
               b'{"execute": "getfd", "arguments": {"fdname": "b"}}', n=2, fds=1), fdprobe()),
    Case("F28", "named fds are kept across a disconnect (still open)", [
        connect(), neg(), send(GETFD % b"k", fds=1), close(), pause(0.2), fdprobe()], fds=True),
    # Issue 16: the named fd of client 1 is open for client 2, whose closefd closes it; a
    # getfd of the same name from client 2 replaces (closes) client 1's.
    Case("F29", "a reconnected client closes and replaces the previous client's named fds", [
        connect(), neg(), send(GETFD % b"a", fds=1), send(GETFD % b"b", fds=1), close(),
        pause(0.2), connect(), neg(), fdprobe(), send(CLOSEFD % b"a"), fdprobe(),
        send(GETFD % b"b", fds=1), fdprobe(), send(CLOSEFD % b"b"), send(CLOSEFD % b"a"),
        fdprobe()], fds=True),
    # A command that consumes a named fd (QEMU's monitor_get_fd): add_client takes it before
    # looking at the protocol, so even a refused add_client has used (and closed) it.
    fcase("F30", "add_client with a name getfd never gave", ADD_CLIENT % b"nope"),
    Case("F31", "add_client takes the named fd a previous client passed", [
        connect(), neg(), send(GETFD % b"x", fds=1), close(), pause(0.2),
        connect(), neg(), fdprobe(), send(ADD_CLIENT % b"x"), fdprobe(), send(CLOSEFD % b"x")],
        fds=True),
    # add_client's other refusals: each has taken the fd and closed it. (The success path, a
    # socket becoming a client of a chardev, is tested on real sockets in io/tests/fds.rs: the
    # suite passes pipes.)
    fcase("F32", "add_client to the caller's own one-client chardev: failed, fd closed",
          send(GETFD % b"x", fds=1), ADD_CLIENT_TO % b"compat_monitor0", fdprobe(),
          CLOSEFD % b"x"),
    cmd("F33", "add_client of a pipe to a free chardev: not a socket, failed, fd closed",
        send(GETFD % b"x", fds=1), ADD_CLIENT_TO % b"compat_monitor1", fdprobe(),
        monitors=[Monitor(), Monitor()], fds=True),
    fcase("F34", "add_client spice and @dbus-display: not in use, fd closed",
          send(GETFD % b"x", fds=1), ADD_CLIENT_TO % b"spice", fdprobe(),
          send(GETFD % b"x", fds=1), ADD_CLIENT_TO % b"@dbus-display", fdprobe()),
]
