#!/usr/bin/env python3
"""Feed the same byte chunks to QEMU 7.2 and to qmpd after the same negotiation, print both.

Usage: scripts/sim-oracle.py CHUNKS.json {0|1} [QMPD]
CHUNKS.json is a JSON list of strings, each one write; the second argument negotiates OOB (1)
or not (0). Used to decide simulator disagreements with real QEMU as the oracle
(docs/sim-oracle.md). QEMU's own order varies between runs when OOB is negotiated.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def run(argv_for, chunks, oob, settle=0.3):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "qmp.sock")
        p = subprocess.Popen(argv_for(path), stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                if os.path.exists(path):
                    break
                time.sleep(0.05)
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = s.makefile("rb")
            f.readline()
            caps = b',"arguments":{"enable":["oob"]}' if oob else b""
            s.sendall(b'{"execute":"qmp_capabilities"%s}' % caps)
            f.readline()
            for c in chunks:
                s.sendall(c)
                time.sleep(0.02)
            s.settimeout(settle)
            out = b""
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    out += d
            except socket.timeout:
                pass
            s.close()
            return out.decode()
        finally:
            p.terminate()
            p.wait()


def main():
    chunks = [c.encode() for c in json.load(open(sys.argv[1]))]
    oob = sys.argv[2] == "1"
    qmpd = sys.argv[3] if len(sys.argv) > 3 else "target/release/qmpd"
    qemu = lambda p: ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display",
                      "none", "-qmp", "unix:%s,server=on,wait=off" % p]
    ours = lambda p: [qmpd, "--listen", "unix:%s" % p, "--log", "off"]
    for name, argv in (("qemu", qemu), ("qmpd", ours)):
        print("== " + name)
        print(run(argv, chunks, oob), end="")


if __name__ == "__main__":
    main()
