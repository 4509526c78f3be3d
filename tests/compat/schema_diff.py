#!/usr/bin/env python3
"""Differential test over QEMU's whole QAPI schema: every command, invalid arguments only.

Takes the schema from the QEMU under test (scripts/qmp-schema-dump, not committed), starts
`qmpd --schema` on it, generates invalid argument sets for every command (missing required
members, an unexpected member, a wrong JSON kind for every member reachable within
qapi_schema.MAX_DEPTH levels, out-of-range integers of every sized type, bad enum values, bad
union discriminators, unexpected and missing members inside nested objects) and sends each
set to both over one connection each, in batches. Every reply must be byte-identical.

Valid edge values (integer bounds, every enum value, every union case) are sent too, so a
server that refuses a valid value differs as well. Every request also carries the unexpected
member `x-guard` at the top level, which QEMU only
reports once everything else passed: no request can ever reach a command's handler, so the
test is safe for every command (`quit` included).

Usage: schema_diff.py --qemu PATH --qmpd PATH [--show N]
Prints `N cases, M identical` last; exits 1 when a reply differs.
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))

import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402

from qapi_schema import GUARD, UNCHECKED, Schema, wrong_kinds  # noqa: E402
from qmp_link import Link, Process, qemu_argv  # noqa: E402

# Requests per batch (each side reads while it writes, so this only bounds memory).
BATCH = 2000


def load_dump():
    path = os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts", "qmp-schema-dump")
    loader = importlib.machinery.SourceFileLoader("qmp_schema_dump", path)
    spec = importlib.util.spec_from_loader("qmp_schema_dump", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# Out-of-range (or wrong-kind) integers per refined integer type, beyond `wrong_kinds`.
RANGES = {
    "int": [2**63, -2**63 - 1, 1.5],
    "int64": [2**63, 1.5],
    "int8": [128, -129], "int16": [32768, -32769], "int32": [2**31, -2**31 - 1],
    "uint8": [256, -1], "uint16": [65536, -1], "uint32": [2**32, -1],
    "uint64": [2**64, -1, 1.5], "size": [2**64, 1.5],
}


# Valid edge values per refined integer type: a server that refuses one differs from QEMU
# (which then names only `x-guard`).
EDGES = {
    "int": [2**63 - 1, -2**63], "int64": [2**63 - 1, -2**63],
    "int8": [127, -128], "int16": [32767, -32768], "int32": [2**31 - 1, -2**31],
    "uint8": [255, 0], "uint16": [65535], "uint32": [2**32 - 1],
    "uint64": [2**64 - 1, -1], "size": [2**64 - 1, -1],
}


def cases_for(schema, cmd):
    """(label, arguments) of invalid calls of `cmd`."""
    root = cmd["arg-type"]
    out = []

    def add(label, steps, leaf):
        args = schema.build(root, steps, leaf)
        args[GUARD] = 0
        out.append((label, args))

    for steps, t, name in schema.locations(cmd):
        where = schema.path_text(steps) or "(arguments)"
        kind = schema.kind(t)
        if steps:
            for v in wrong_kinds(schema, t):
                add("%s: %s" % (where, json.dumps(v)), steps, v)
        if kind == "int":
            for v in RANGES.get(t, []):
                add("%s: %s" % (where, v), steps, v)
            for v in EDGES.get(t, []):
                add("%s: valid %s" % (where, v), steps, v)
        if kind == "enum":
            add("%s: bad enum" % where, steps, "x-bad-value")
            for v in schema.types[t]["values"]:
                add("%s: valid %s" % (where, v), steps, v)
        if kind == "object":
            e = schema.types[t]
            base = schema.valid(t)
            if steps:
                add("%s: unexpected inside" % where, steps, dict(base, **{"x-inner": 1}))
            for m in e["members"]:
                if "default" not in m:
                    add("%s: missing %s" % (where, m["name"]), steps,
                        {k: v for k, v in base.items() if k != m["name"]})
            if "tag" in e:
                add("%s: bad discriminator" % where, steps,
                    dict(base, **{e["tag"]: "x-bad-value"}))
                for c in schema.cases(t):
                    add("%s: valid case %s" % (where, c), steps, schema.valid(t, case=c))
            if not steps:
                add("only the guard", steps, base)
                # Every optional member too, and more unexpected ones: which of several
                # leftovers QEMU names depends on its hash table's order and size.
                full = dict(base)
                for m in schema.members(t):
                    if m["name"] != e.get("tag") and m["name"] not in full:
                        full[m["name"]] = schema.valid(m["type"])
                add("all members, three unexpected", steps,
                    dict(full, **{"x-extra-a": 1, "zz-extra": 2}))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--qmpd", required=True)
    ap.add_argument("--show", type=int, default=20, help="differences to print")
    args = ap.parse_args()
    started = time.monotonic()
    dump = load_dump()
    qemu = Process(qemu_argv(args.qemu))
    qmpd = None
    try:
        qlink = Link(qemu.path)
        entries, _, _ = dump.dump(qlink)
        fd, schema_path = tempfile.mkstemp(prefix="qemu-schema-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"return": entries if not os.environ.get("SCHEMA_DIFF_RAW") else [e for e in entries if e["meta-type"] != "builtin" or e["name"] in ("str","any","bool","int","null","number")]}, f)
        qmpd = Process([args.qmpd, "--dialect", "qemu-7.2", "--log", "warn",
                        "--schema", schema_path, "--listen", "unix:{sock}"])
        mlink = Link(qmpd.path)
        schema = Schema(entries)
        cases, per_command = [], {}
        for cmd in schema.commands:
            if cmd["name"] in UNCHECKED:
                continue
            got = cases_for(schema, cmd)
            per_command[cmd["name"]] = len(got)
            cases += [(cmd["name"], label, a) for label, a in got]
        same, shown = 0, 0
        failed_commands = set()
        for at in range(0, len(cases), BATCH):
            chunk = cases[at:at + BATCH]
            requests = [{"execute": c, "arguments": a} for c, _, a in chunk]
            # Both servers at once: the run takes as long as the slower one.
            with ThreadPoolExecutor(max_workers=2) as pool:
                fa = pool.submit(qlink.batch, requests)
                fb = pool.submit(mlink.batch, requests)
                a, b = fa.result(), fb.result()
            for (c, label, _), x, y in zip(chunk, a, b):
                if x == y:
                    same += 1
                    continue
                failed_commands.add(c)
                if shown < args.show:
                    shown += 1
                    print("DIFF %s %s\n  qemu: %r\n  qmpd: %r" % (c, label, x, y))
        os.unlink(schema_path)
    finally:
        qemu.stop()
        if qmpd:
            qmpd.stop()
    print("schema: %d commands (%s not generated: not checked by a marshaller in QEMU), "
          "%.1f s" % (len(per_command), ", ".join(sorted(UNCHECKED)),
                      time.monotonic() - started))
    if failed_commands:
        print("commands with differences: %s" % " ".join(sorted(failed_commands)))
    print("%d cases, %d identical replies" % (len(cases), same))
    return 0 if same == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main())
