"""The list of known differences, read from docs/compat.md (the single place they are written).

A known difference is a row of the table under the heading "## Known differences" whose first
cell is a case name in backquotes. The runner reports such cases as "known" instead of failing
them; a listed case that now matches is reported too, so the list does not rot.
"""

import re

_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")


def load(path):
    """Return {case name: reason} from the Known differences table of `path`."""
    known = {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return known
    in_section = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_section = line.strip().lower() == "## known differences"
            continue
        if not in_section:
            continue
        m = _ROW.match(line)
        if m:
            cells = [c.strip() for c in m.group(2).split("|")]
            known[m.group(1)] = cells[-1] if cells else ""
    return known
