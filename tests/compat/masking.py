"""What may differ between QEMU and qmpd without being a difference, and how it is hidden.

Masked, in compact and pretty layouts alike:
- event timestamps (wall-clock time): the two numbers become `S` and `U`;
- the version object (greeting and query-version) and the text of HMP `info version`;
- file descriptor numbers in `add-fd` / `query-fdsets` / `remove-fd` replies: each distinct number becomes
  `FD<n>` in order of first appearance, so equality between replies is still checked.

Nothing else is touched: every other byte is compared as received.
"""

import re

_TIMESTAMP = re.compile(
    rb'("timestamp": \{\s*"seconds": )-?\d+(,\s*"microseconds": )-?\d+')
_VERSION = re.compile(
    rb'\{(\s*)"qemu": \{\s*"micro": \d+,\s*"minor": \d+,\s*"major": \d+\s*\},'
    rb'\s*"package": "(?:[^"\\]|\\.)*"(\s*)\}')
_HMP_VERSION = re.compile(rb'"return": "\d+\.\d+\.\d+(?:[^"\\]|\\.)*?\\r\\n"')
_FD = re.compile(rb'("fd": |, fd:)(\d+)')


def mask(data, hmp_version=False, fds=False, fd_names=None):
    """Mask one connection's bytes of one step. `fd_names` carries the FD renumbering across
    the steps of a case (a dict, updated in place)."""
    data = _TIMESTAMP.sub(rb"\1S\2U", data)
    data = _VERSION.sub(rb"<VERSION>", data)
    if hmp_version:
        data = _HMP_VERSION.sub(rb'"return": "<VERSION>\\r\\n"', data)
    if fds:
        names = fd_names if fd_names is not None else {}

        def rename(m):
            n = m.group(2)
            if n not in names:
                names[n] = b"FD%d" % (len(names) + 1)
            return m.group(1) + names[n]

        data = _FD.sub(rename, data)
    return data


def mask_transcript(transcript, hmp_version=False, fds=False):
    fd_names = {}
    out = []
    for desc, per_conn in transcript:
        out.append((desc, {c: mask(b, hmp_version, fds, fd_names)
                           for c, b in sorted(per_conn.items())}))
    return out
