"""The case vocabulary (a case = monitors + steps) and the list of every case, by spec group.

Each group module exports CASES. A case names the spec section it exercises in its title;
Appendix A names (A1, B52, ...) are kept where a case replays a live transcript of the spec.
"""

from wire import Step
from targets import Monitor


class Case:
    def __init__(self, name, title, steps, monitors=None, hmp_version=False, fds=False,
                 normalize=None, skip=None):
        self.name = name
        self.title = title
        self.steps = steps
        self.monitors = monitors or [Monitor()]
        self.hmp_version = hmp_version
        self.fds = fds
        self.normalize = normalize
        self.skip = skip


NEG_OOB = b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}\n'
NEG_PLAIN = b'{"execute": "qmp_capabilities"}\n'


def connect(conn="a", monitor=0, expect=1, quiet=None):
    """Connect a new client; by default wait for its greeting."""
    return Step("connect", conn, monitor=monitor, expect={conn: expect}, quiet=quiet)


def send(data, n=1, conn="a", fds=0, quiet=None, chunks=None, expect=None):
    """Send bytes on one connection; `n` is the number of messages to wait for on it."""
    return Step("send", conn, data=data, fds=fds, quiet=quiet, chunks=chunks,
                expect=expect if expect is not None else {conn: n})


def close(conn="a", expect=None, quiet=None):
    return Step("close", conn, expect=expect or {}, quiet=quiet)


def pause(quiet=0.3, expect=None):
    return Step("pause", "-", quiet=quiet, expect=expect or {})


def fdprobe(quiet=0.15):
    """Which passed descriptors the server still holds (see wire.Step)."""
    return Step("fdprobe", "-", quiet=quiet)


def neg(conn="a", oob=True):
    return send(NEG_OOB if oob else NEG_PLAIN, conn=conn)


def _as_step(item):
    if isinstance(item, Step):
        return item
    if isinstance(item, tuple):
        return send(item[0], n=item[1])
    return send(item)


def cmd(name, title, *items, oob=True, negotiate=True, **kw):
    """A one-connection case: connect, negotiate (with OOB unless told otherwise), then each
    item in turn (bytes: expect one message; (bytes, n): expect n; or a ready Step)."""
    steps = [connect()]
    if negotiate:
        steps.append(neg(oob=oob))
    steps += [_as_step(i) for i in items]
    return Case(name, title, steps, **kw)


def all_cases():
    from cases import (a_negotiation, b_validation, b_json, c_limits, d_pipelining, e_events,
                       f_fds, g_commands, h_connections)
    out = []
    for mod in (a_negotiation, b_validation, b_json, c_limits, d_pipelining, e_events, f_fds,
                g_commands, h_connections):
        out += mod.CASES
    names = [c.name for c in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError("duplicate case names: %s" % sorted(dup))
    return out
