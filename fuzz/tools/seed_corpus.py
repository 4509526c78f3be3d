#!/usr/bin/env python3
"""Build the committed seed corpus of every fuzz target from the spec's live transcripts.

Usage: python3 fuzz/tools/seed_corpus.py PATH/TO/QMP-BEHAVIOR.md

Every `C: b'...'` line of Appendix A (Python byte literals, possibly joined with `+` and
repeated with `*`) is client input that real QEMU 7.2 answered. Each transcript entry (A1, B3,
P12...) becomes one seed: the concatenation of its client lines. Entries bigger than
MAX_SEED bytes (the 64 MiB token test) are left out: the fuzzers reach limits through the
small limits the targets configure, not through huge inputs.

Each target reads its input in its own format (see ../lib/src/*.rs); this script writes the
header each one expects in front of the transcript bytes. Run it by hand; its output is
committed and replayed by `cargo test` in fuzz/lib. It only ever adds or overwrites `seed-*`
files, so minimised corpus entries found by the fuzzers stay.
"""

import ast
import hashlib
import os
import re
import sys

MAX_SEED = 4096  # bytes of client input per seed; keeps the committed corpus small
HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")


def eval_bytes(node):
    """Evaluate a byte-literal expression made of constants, `+` and `*` only."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, int)):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = eval_bytes(node.left), eval_bytes(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(left, int) and isinstance(right, int):
            return left * right
        count = right if isinstance(right, int) else left
        if count > MAX_SEED:
            raise ValueError("too big")
        return left * right
    raise ValueError("not a byte expression")


def transcripts(spec):
    """Yield (entry name, client bytes) for every Appendix A entry with byte literals."""
    text = open(spec, encoding="utf-8").read()
    appendix = text[text.index("## Appendix A."):]
    appendix = appendix[: appendix.index("## Appendix B.")]
    name, chunks = None, []
    for line in appendix.splitlines():
        m = re.match(r"\*\*([A-Z][0-9]+)\.", line)
        if m:
            if name and chunks:
                yield name, b"".join(chunks)
            name, chunks = m.group(1), []
            continue
        if not line.startswith("C: b") and not line.startswith("C: b'"):
            continue
        expr = line[3:]
        # "... followed later by b'...'" lines: keep the first expression only.
        expr = expr.split("   followed")[0].strip()
        try:
            value = eval_bytes(ast.parse(expr, mode="eval").body)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, bytes):
            chunks.append(value)
    if name and chunks:
        yield name, b"".join(chunks)


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def scenario_seed(config, payload):
    """A `scenario` input (see lib/src/scenario.rs): open monitor 0 (OOB-capable), negotiate
    with OOB, receive `payload` in pieces of at most 255 bytes, let the dispatcher run, write
    everything."""
    out = bytearray([config])
    out += bytes([0, 0, 1])  # op 0 open, monitor 0, options: oob-capable
    out += bytes([2, 0, 0])  # op 2 canned request 0 (qmp_capabilities with oob)
    for start in range(0, len(payload), 255):
        piece = payload[start : start + 255]
        out += bytes([1, 0, len(piece), 0]) + piece  # op 1 receive, no fds
        out += bytes([13, 0, 0])  # op 13 dispatcher pass
    out += bytes([12, 0])  # op 12 write everything
    return bytes(out)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    seen = set()
    count = 0
    for name, data in transcripts(sys.argv[1]):
        if len(data) > MAX_SEED:
            continue
        digest = hashlib.sha1(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        count += 1
        # json_stream: header 0 = feed one byte at a time (the hardest chunking).
        write("json_stream", name, bytes([0]) + data)
        # json_roundtrip: the raw bytes.
        write("json_roundtrip", name, data)
        # server_bytes: flags (OOB-capable, OOB negotiated; 2.12 dialect too; one without OOB
        # fed byte by byte), then the second header byte (default limits).
        write("server_bytes", name, bytes([0b1000_0110, 0]) + data)
        write("server_bytes", name + "-2.12", bytes([0b1000_0111, 0]) + data)
        write("server_bytes", name + "-nooob", bytes([0b0000_0000, 0]) + data)
        write("scenario", name, scenario_seed(0, data))
        write("trace_roundtrip", name, bytes([0]) + scenario_seed(1, data))
    print(f"{count} transcript entries written to {os.path.normpath(CORPUS)}")


if __name__ == "__main__":
    main()
