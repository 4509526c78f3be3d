#!/usr/bin/env python3
"""Differential suite: every case runs against a fresh QEMU 7.2 and a fresh qmpd, and the bytes
each connection receives, step by step, must be equal after masking (masking.py).

Usage: compat.py --qemu PATH [--qmpd PATH] [-k REGEX] [--jobs N] [--show]
Without --qmpd only QEMU runs (to develop cases; hints that QEMU does not meet are reported).
Prints `N passed, M failed, S skipped` last; exits 1 when a case fails that docs/compat.md
does not list as a known difference.
"""

import argparse
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import known  # noqa: E402
import masking  # noqa: E402
import wire  # noqa: E402
from cases import all_cases  # noqa: E402
from targets import Qemu, Qmpd  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "compat.md")
# Retries of a case whose transcripts differ, to tell a timing accident from a difference.
RETRIES = int(os.environ.get("COMPAT_RETRIES", "1"))


def run_on(target, case):
    running = target.start(case.monitors)
    try:
        transcript = wire.run_case(case, running.paths)
    finally:
        running.stop()
    out = masking.mask_transcript(transcript, case.hmp_version, case.fds)
    if case.normalize:
        out = [(d, {c: case.normalize(b) for c, b in per.items()}) for d, per in out]
    return out


def unmet_hints(case, transcript):
    notes = []
    for step, (_, per_conn) in zip(case.steps, transcript):
        for conn, n in step.expect.items():
            got = wire.count_messages(per_conn.get(conn, b""))
            if got != n and not (got < n and wire.EOF_MARK in per_conn.get(conn, b"")):
                notes.append("%s: hint %d on %s, got %d" % (step.describe()[:60], n, conn, got))
        for conn, data in per_conn.items():
            if conn not in step.expect and wire.count_messages(data):
                notes.append("%s: no hint on %s, got %d" % (step.describe()[:60], conn,
                                                          wire.count_messages(data)))
    return notes


def diff(a, b, names=("qemu", "qmpd")):
    lines = []
    for i in range(max(len(a), len(b))):
        sa = a[i] if i < len(a) else ("(missing step)", {})
        sb = b[i] if i < len(b) else ("(missing step)", {})
        if sa[1] == sb[1]:
            continue
        lines.append("  step %d: %s" % (i + 1, sa[0]))
        for conn in sorted(set(sa[1]) | set(sb[1])):
            x, y = sa[1].get(conn, b""), sb[1].get(conn, b"")
            if x != y:
                lines.append("    [%s] %s: %r" % (conn, names[0], x[:1500]))
                lines.append("    [%s] %s: %r" % (conn, names[1], y[:1500]))
    return "\n".join(lines)


def compare(case, qemu, qmpd, retries=RETRIES):
    last = None
    for attempt in range(retries + 1):
        a = run_on(qemu, case)
        b = run_on(qmpd, case)
        if a == b:
            return True, attempt, ""
        last = diff(a, b)
    return False, retries, last


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", required=True)
    ap.add_argument("--qmpd")
    ap.add_argument("-k", dest="pattern", help="regex on case names")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("COMPAT_JOBS", "3")))
    ap.add_argument("--show", action="store_true", help="print QEMU transcripts")
    ap.add_argument("--self-check", action="store_true",
                    help="compare QEMU with itself (finds timing-dependent cases)")
    args = ap.parse_args()

    cases = all_cases()
    if args.pattern:
        cases = [c for c in cases if re.search(args.pattern, c.name)]
    known_diffs = known.load(DOC)
    qemu = Qemu(args.qemu)
    qmpd = Qmpd(args.qmpd) if args.qmpd else None
    if args.self_check:
        qmpd = Qemu(args.qemu)
    started = time.monotonic()
    passed, failed, skipped, known_hit, stale, retried = [], [], [], [], [], []

    def job(case):
        if case.skip:
            return case, "skip", case.skip
        try:
            if qmpd is None:
                t = run_on(qemu, case)
                text = "\n".join("  %s\n    %r" % (d, per) for d, per in t) if args.show else ""
                notes = unmet_hints(case, t)
                return case, "pass", (text + ("\n  hints: " + "; ".join(notes) if notes else ""))
            ok, attempt, text = compare(case, qemu, qmpd, 0 if args.self_check else RETRIES)
            return case, ("pass" if ok else "fail"), ("retried" if ok and attempt else text)
        except Exception as e:  # a case that cannot run is a failure, with the reason
            return case, "fail", "  error: %s: %s" % (type(e).__name__, e)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for case, status, text in pool.map(job, cases):
            if status == "skip":
                skipped.append(case)
                print("SKIP  %-6s %s (%s)" % (case.name, case.title, text))
            elif status == "pass":
                if (case.name in known_diffs and qmpd is not None
                        and not known_diffs[case.name].lower().startswith("intermittent")):
                    stale.append(case)
                if text == "retried":
                    retried.append(case)
                passed.append(case)
                print("ok    %-6s %s%s" % (case.name, case.title,
                                           " (passed on retry)" if text == "retried" else ""))
                if text and text != "retried":
                    print(text)
            elif case.name in known_diffs:
                known_hit.append(case)
                print("KNOWN %-6s %s -- %s" % (case.name, case.title, known_diffs[case.name]))
                print(text)
            else:
                failed.append(case)
                print("FAIL  %-6s %s" % (case.name, case.title))
                print(text)
            sys.stdout.flush()

    print()
    print("%.1f s, %d cases, targets: qemu%s" % (time.monotonic() - started, len(cases),
                                                 ", qmpd" if qmpd else " only"))
    if known_hit:
        print("known differences (docs/compat.md, counted as skipped): %s"
              % " ".join(c.name for c in known_hit))
    if stale:
        print("listed as known but now equal (remove from docs/compat.md): %s"
              % " ".join(c.name for c in stale))
    if retried:
        print("passed only on retry (timing-dependent): %s" % " ".join(c.name for c in retried))
    if failed:
        print("failed: %s" % " ".join(c.name for c in failed))
    print("%d passed, %d failed, %d skipped" % (len(passed), len(failed),
                                                len(skipped) + len(known_hit)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
