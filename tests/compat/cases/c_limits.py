"""Spec §1.3.5 and §1.4: nesting, token size and token count limits (Appendix A group C).

QEMU reads one byte per recvmsg (about 190 KB/s here), so only what runs in a few seconds is
compared; the size and count limits proper (64 MiB token, 2 Mi tokens) take minutes on QEMU and
are skipped with that reason (qmpd's own tests cover them)."""

from cases import cmd, send

SLOW = "QEMU reads one byte per syscall: %s takes %s on QEMU 7.2"


def _nested(depth):
    return b'{"execute": "query-name", "id": ' + b"[" * depth + b"]" * depth + b"}\n"


CASES = [
    cmd("C1", "nesting depth 1024 accepted", _nested(1023)),
    # 1 nesting error + 1024 stray closers + the final brace, then the next command works.
    cmd("C2", "nesting depth 1025 rejected, leftovers are errors", (_nested(1024), 1026),
        b'{"execute": "query-name", "id": "after"}\n'),
    cmd("C2a", "nesting limit with braces and brackets mixed",
        (b'{"a": ' * 512 + b"[" * 513 + b"]" * 513 + b"}" * 512 + b"\n", 1026)),
    cmd("C2b", "deep nesting without closing, then ESC resync",
        (b"[" * 1030 + b"\x1b", 2), b'{"execute": "query-name", "id": "ok"}\n'),
    cmd("C3", "64 KiB string id echoed",
        send(b'{"execute": "query-name", "id": "' + b"x" * 65536 + b'"}\n', quiet=0.3)),
    cmd("C3a", "many small tokens (40 000) in one message",
        send(b'{"execute": "query-name", "id": [' + b"0," * 19999 + b"0]}\n", quiet=0.3)),
    cmd("C3b", "1 MiB string id echoed", b'{"execute": "query-name", "id": "' +
        b"x" * (1 << 20) + b'"}\n', skip=SLOW % ("1 MiB", "about 6 s")),
    cmd("C4", "token count 2097152 accepted", b'{"execute": "query-name", "id": [' +
        b"0," * 1048570 + b"0]}\n", skip=SLOW % ("2 Mi tokens", "about 12 s")),
    cmd("C5", "token count 2097153 rejected", b'{"execute": "query-name", "id": [' +
        b"0," * 1048571 + b"0]}\n", skip=SLOW % ("2 Mi tokens", "about 13 s")),
    cmd("C6", "64 MiB string token cut", b"", skip=SLOW % ("a 64 MiB token", "about 270 s")),
]
