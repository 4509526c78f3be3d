"""Spec §5-§6: in-band ordering, pipelining with and without OOB, exec-oob overtaking.

Only cases whose output order is fixed on both servers are here: without a way to block
QEMU's main loop portably, an exec-oob sent after in-band requests races with the
dispatcher, so OOB-overtakes-in-band is covered only where the OOB request comes first (its
reply is written before the following bytes are even read) or in a later write."""

from cases import cmd, send


def _names(n, prefix=b"q"):
    return b"".join(b'{"execute": "query-name", "id": "%s%d"}' % (prefix, i) for i in range(n))


OOB_YANK = b'{"exec-oob": "query-yank", "id": "oob"}'

CASES = [
    cmd("B4", "three messages in one write, no separators",
        (b'{"execute":"query-name","id":1}{"execute":"query-status","id":2}\n'
         b'{"execute":"query-version","id":3}', 3)),
    cmd("D5", "20 pipelined requests with OOB on (queue fills, reading suspends)",
        (_names(20), 20)),
    cmd("D6", "20 pipelined requests with OOB off", (_names(20), 20), oob=False),
    cmd("D7", "JSON and shape errors stay in order with commands (OOB on)",
        (b'{"execute": "query-name", "id": 1}{]{"id": "err"}{"execute": "query-name", "id": 2}'
         b'[]{"execute": "nope", "id": 3}', 6)),
    cmd("D7a", "JSON and shape errors stay in order with commands (OOB off)",
        (b'{"execute": "query-name", "id": 1}{]{"id": "err"}{"execute": "query-name", "id": 2}'
         b'[]{"execute": "nope", "id": 3}', 6), oob=False),
    cmd("D8", "exec-oob first, then in-band in the same write",
        (OOB_YANK + _names(3), 4)),
    cmd("D9", "exec-oob in a later write after in-band replies",
        (_names(2), 2), OOB_YANK),
    cmd("D10", "several exec-oob in one write keep their order",
        (b'{"exec-oob": "query-yank", "id": 1}{"exec-oob": "migrate-pause", "id": 2}'
         b'{"exec-oob": "query-status", "id": 3}{"exec-oob": "yank", "arguments": '
         b'{"instances": []}, "id": 4}', 4)),
    cmd("D11", "stop/cont pipelined: each event before its reply",
        (b'{"execute": "stop", "id": 1}{"execute": "cont", "id": 2}{"execute": "stop", "id": 3}'
         b'{"execute": "query-status", "id": 4}{"execute": "cont", "id": 5}', 9)),
    cmd("D12", "exec-oob rejected for an in-band command, then in-band",
        (b'{"exec-oob": "query-name", "id": "x"}' + _names(2), 3)),
    cmd("D13", "pipelined across split writes",
        send(b"", n=3, chunks=[_names(1) + b'{"execute": "query-', b'name", "id": "mid"}' +
                                _names(1, b"z")])),
    cmd("D14", "exec-oob ignored when OOB off: unexpected member, in order",
        (_names(1) + b'{"exec-oob": "query-yank", "id": "o"}' + _names(1, b"z"), 3),
        oob=False),
]
