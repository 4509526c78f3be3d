#!/usr/bin/env python3
"""qmpd's `query-qmp-schema` against QEMU 7.2's: for every command and event qmpd declares
that QEMU has, the entry and every type it reaches must be the same once masked type names
are matched up (one consistent mapping of qmpd's numbers to QEMU's over the whole schema).

Usage: schema_export.py --qemu PATH --qmpd PATH
Prints one line per entry and `N entries, M identical` last; exits 1 on a difference not in
KNOWN.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))

from qmp_link import Link, Process, qemu_argv  # noqa: E402

# Differences with a reason (entry -> what differs).
KNOWN = {}


class Mismatch(Exception):
    pass


class Matcher:
    """Walks two schemas in step, building one mapping of type names."""

    def __init__(self, mine, theirs):
        self.mine = {e["name"]: e for e in mine}
        self.theirs = {e["name"]: e for e in theirs}
        self.to_theirs, self.to_mine = {}, {}

    def same_type(self, m, t, where):
        if m.startswith("[") != t.startswith("["):
            raise Mismatch("%s: %s vs %s" % (where, m, t))
        if self.to_theirs.get(m, t) != t or self.to_mine.get(t, m) != m:
            raise Mismatch("%s: %s is mapped to %s already, not to %s"
                           % (where, m, self.to_theirs.get(m), t))
        if m in self.to_theirs:
            return
        self.to_theirs[m], self.to_mine[t] = t, m
        self.same_entry(self.mine[m], self.theirs[t], where)

    def same_entry(self, a, b, where):
        where = "%s > %s" % (where, a["name"])
        keys = set(a) | set(b)
        if a["meta-type"] != b["meta-type"]:
            raise Mismatch("%s: meta-type %s vs %s" % (where, a["meta-type"], b["meta-type"]))
        if a["meta-type"] == "builtin" and a["name"] != b["name"]:
            raise Mismatch("%s: builtin %s vs %s" % (where, a["name"], b["name"]))
        for k in sorted(keys - {"name"}):
            x, y = a.get(k), b.get(k)
            if k in ("arg-type", "ret-type", "element-type"):
                if x is None or y is None:
                    raise Mismatch("%s: %s missing" % (where, k))
                self.same_type(x, y, "%s.%s" % (where, k))
            elif k in ("members", "variants"):
                x, y = x or [], y or []
                if len(x) != len(y):
                    raise Mismatch("%s: %d %s vs %d" % (where, len(x), k, len(y)))
                for i, (p, q) in enumerate(zip(x, y)):
                    if set(p) != set(q):
                        raise Mismatch("%s: %s[%d] keys %s vs %s"
                                       % (where, k, i, sorted(p), sorted(q)))
                    for kk in p:
                        if kk == "type":
                            self.same_type(p[kk], q[kk], "%s.%s[%d]" % (where, k, i))
                        elif p[kk] != q[kk]:
                            raise Mismatch("%s: %s[%d].%s %r vs %r"
                                           % (where, k, i, kk, p[kk], q[kk]))
            elif x != y:
                raise Mismatch("%s: %s %r vs %r" % (where, k, x, y))


def fetch(argv):
    proc = Process(argv)
    try:
        link = Link(proc.path)
        reply = json.loads(link.batch([{"execute": "query-qmp-schema"}])[0])
        link.close()
    finally:
        proc.stop()
    return reply["return"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--qmpd", required=True)
    args = ap.parse_args()
    theirs = fetch(qemu_argv(args.qemu))
    mine = fetch([args.qmpd, "--dialect", "qemu-7.2", "--log", "warn",
                  "--listen", "unix:{sock}"])
    matcher = Matcher(mine, theirs)
    qemu_entities = {e["name"]: e for e in theirs if e["meta-type"] in ("command", "event")}
    compared = same = 0
    unexplained = []
    for e in mine:
        if e["meta-type"] not in ("command", "event"):
            continue
        other = qemu_entities.get(e["name"])
        if other is None:
            print("-     %s %s (not in QEMU's schema)" % (e["meta-type"], e["name"]))
            continue
        compared += 1
        try:
            matcher.same_entry(e, other, e["name"])
            same += 1
            print("ok    %s %s" % (e["meta-type"], e["name"]))
        except Mismatch as m:
            if e["name"] in KNOWN:
                print("KNOWN %s %s: %s (%s)" % (e["meta-type"], e["name"], m, KNOWN[e["name"]]))
            else:
                unexplained.append(e["name"])
                print("FAIL  %s %s: %s" % (e["meta-type"], e["name"], m))
    print("%d entries compared, %d identical after mapping %d type names"
          % (compared, same, len(matcher.to_theirs)))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
