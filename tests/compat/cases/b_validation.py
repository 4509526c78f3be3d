"""Spec §4: request shape and check order, id echo and number output (Appendix A group B
validation part, P1, P14-P18)."""

from cases import cmd, send

_IDS = [
    ("B5", b'"str"'), ("B6", b"42"), ("B7", b"-7"), ("B8", b"3.5"), ("B9", b"true"),
    ("B10", b"false"), ("B11", b"null"), ("B12", b'[1, "a", {}]'), ("B13", b'{"k": ["v"]}'),
    ("B14", b"9223372036854775807"), ("B15", b"9223372036854775808"),
    ("B16", b"18446744073709551615"), ("B17", b"18446744073709551616"),
    ("B18", b"-9223372036854775809"), ("B19", b"1e400"), ("B20", b"-1e400"), ("B21", b"-0"),
    ("B22", b"1E2"), ("B23", b"0.1"), ("B24", b"1.5e-7"), ("B25", b"100000000000000000000.0"),
    ("B25a", b"-32.20e-10"), ("B25b", b"1e-400"), ("B25c", b"-0.0"), ("B25d", b"[]"),
    ("P1", b'{"b": 0, "a": 1, "c": 2, "zz": 3, "id": 4, "return": 5, "error": 6}'),
]

CASES = [
    cmd("B2", "simple command, no id", b'{"execute": "query-status"}\n'),
    cmd("B3", "message split across writes",
        send(b"", chunks=[b'{"execute": "query', b'-name", "id": "sp', b'lit"}'])),
] + [
    cmd(name, "id = %s echoed (%s)" % (raw.decode(), "§1.6"),
        b'{"execute": "query-name", "id": ' + raw + b"}\n")
    for name, raw in _IDS
] + [
    cmd("B26", "unknown command with id", b'{"execute": "no-such-command", "id": "u1"}\n'),
    cmd("B27", "exec-oob with non-OOB command", b'{"exec-oob": "query-status", "id": "o1"}\n'),
    cmd("B28", "exec-oob migrate-pause", b'{"exec-oob": "migrate-pause", "id": "o2"}\n'),
    cmd("B30", "execute and exec-oob both present (oob enabled)",
        b'{"execute": "query-status", "exec-oob": "query-status", "id": 9}\n'),
    cmd("B31", "execute not a string", b'{"execute": 1, "id": 10}\n'),
    cmd("B32", "exec-oob not a string", b'{"exec-oob": ["x"], "id": 11}\n'),
    cmd("B33", "arguments not an object",
        b'{"execute": "query-status", "arguments": [], "id": 12}\n'),
    cmd("B34", "unexpected top-level member", b'{"execute": "query-status", "foo": 1, "id": 13}\n'),
    cmd("B35", "old 2.12 control member",
        b'{"execute": "query-status", "control": {"run-oob": true}, "id": 14}\n'),
    cmd("B36", "no execute, with id", b'{"id": "x"}\n'),
    cmd("B37", "empty object", b"{}\n"),
    cmd("B38", "array", b"[]\n"),
    cmd("B39", "string at top level", b'"hello"\n'),
    cmd("B40", "number at top level", b"123\n"),
    cmd("B41", "null at top level", b"null\n"),
    cmd("B79", "member walk in bucket order: unknown member in a low bucket wins over "
        "non-string execute", b'{"execute": 1, "name": 2}\n'),
    cmd("B80", "member walk: arguments (447) checked after execute (299)",
        b'{"arguments": 1, "execute": 2}\n'),
    cmd("B81", "exec-oob plus execute, both bad types", b'{"execute": 1, "exec-oob": 2}\n'),
    cmd("B82", "several unexpected members: lowest bucket reported",
        b'{"zzz": 1, "execute": "query-name", "aaa": 2, "name": 3}\n'),
    cmd("P14", "id string with all ASCII printable and DEL",
        b'{"execute": "query-name", "id": " !#$%&\'()*+,-./09:;<=>?@AZ[]^_`az{|}~\x7f"}\n'),
    cmd("P16", "arguments null", b'{"execute": "query-name", "arguments": null}\n'),
    cmd("P17", "id only but with arguments", b'{"arguments": {}, "id": 1}\n'),
    cmd("P18", "execute empty string", b'{"execute": ""}\n'),
    cmd("P19", "exec-oob empty string", b'{"exec-oob": "", "id": "e"}\n'),
    cmd("P20", "exec-oob unknown command", b'{"exec-oob": "nope", "id": "e2"}\n'),
]
