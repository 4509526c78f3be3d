"""A QAPI schema as QEMU's `query-qmp-schema` returns it, and the values that reach each part
of it: a minimal valid value per type, and every place ("location") inside a command's
arguments with the arguments that reach it.

Shared by scripts/qmp-schema-dump (which refines a schema by probing QEMU) and
tests/compat/schema_diff.py (the differential test over every command). Nothing here talks to
a server.
"""

import json

# Integer builtins QEMU's introspection shows as `int`; the refined schema names them.
SIZED_INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "size"]
# Commands whose arguments QEMU does not check with a generated marshaller ('gen': false):
# device_add passes unknown members on as device properties.
UNCHECKED = {"device_add"}
# How deep `locations` looks inside a command's arguments (objects, lists, alternates).
MAX_DEPTH = 4
# Most locations `locations` yields per command (blockdev-add and object-add reach thousands).
MAX_LOCATIONS = 400
# A member name no QAPI type has.
GUARD = "x-guard"


class Schema:
    def __init__(self, entries):
        if isinstance(entries, dict):
            entries = entries["return"]
        self.entries = entries
        self.types = {e["name"]: e for e in entries if e["meta-type"] not in ("command", "event")}
        self.commands = [e for e in entries if e["meta-type"] == "command"]

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    def kind(self, t):
        """builtin json-type, or the meta-type."""
        e = self.types[t]
        if e["meta-type"] == "builtin":
            return e["json-type"]
        return e["meta-type"]

    def members(self, t, case=None):
        """Base members, and the variant members of `case` (a flat union's tag value)."""
        e = self.types[t]
        out = list(e["members"])
        if case is not None:
            for v in e.get("variants", []):
                if v["case"] == case:
                    out += self.types[v["type"]]["members"]
        return out

    def cases(self, t):
        """The tag values of a flat union: every value of the tag's enum."""
        e = self.types[t]
        if "tag" not in e:
            return [None]
        tag = [m for m in e["members"] if m["name"] == e["tag"]][0]
        return self.types[tag["type"]]["values"]

    def valid(self, t, depth=0, case=None):
        """A small value of type `t` that QEMU's input visitor accepts."""
        k = self.kind(t)
        if k == "string":
            return "x"
        if k in ("int", "number"):
            return 0
        if k == "boolean":
            return False
        if k == "null":
            return None
        if k == "value":
            return 0
        if k == "enum":
            return self.types[t]["values"][0]
        if k == "array":
            return []
        if k == "alternate":
            branches = [b["type"] for b in self.types[t]["members"]]
            scalar = [b for b in branches if self.kind(b) not in ("object", "array")]
            return self.valid((scalar or branches)[0], depth + 1)
        if k == "object":
            if depth > 12:
                raise ValueError("no finite valid value for %s" % t)
            e = self.types[t]
            if "tag" in e and case is None:
                case = self.simplest_case(t, depth)
            out = {}
            for m in self.members(t, case):
                if "default" in m:
                    continue
                if m["name"] == e.get("tag"):
                    out[m["name"]] = case
                else:
                    out[m["name"]] = self.valid(m["type"], depth + 1)
            return out
        raise ValueError("unknown kind %s" % k)

    def simplest_case(self, t, depth):
        best = None
        for c in self.cases(t):
            n = sum(1 for m in self.members(t, c) if "default" not in m)
            if best is None or n < best[0]:
                best = (n, c)
        return best[1]

    def locations(self, cmd):
        """Places inside `cmd`'s arguments, breadth first: (steps, type, name), where steps lead
        from the arguments object to the place and name is the member name there (None for a
        list element). A step is ("m", member, case) into an object's member (case: the union
        tag value that member needs, else None), ("i",) into a list's only element, or
        ("a", branch type) into an alternate's branch."""
        root = cmd["arg-type"]
        out = []
        queue = [((), root, None)]
        while queue and len(out) < MAX_LOCATIONS:
            steps, t, name = queue.pop(0)
            out.append((steps, t, name))
            if len(steps) >= MAX_DEPTH:
                continue
            k = self.kind(t)
            if k == "object":
                e = self.types[t]
                base = {m["name"] for m in e["members"]}
                for c in self.cases(t):
                    for m in self.members(t, c):
                        if m["name"] in base and c != self.cases(t)[0]:
                            continue
                        case = c if m["name"] not in base else None
                        queue.append((steps + (("m", m["name"], case),), m["type"], m["name"]))
            elif k == "array":
                queue.append((steps + (("i",),), self.types[t]["element-type"], None))
            elif k == "alternate":
                for b in self.types[t]["members"]:
                    queue.append((steps + (("a", b["type"]),), b["type"], name))
        return out

    def build(self, t, steps, leaf, case=None):
        """A value of type `t` that is valid except that the place `steps` leads to holds
        `leaf` (a function of nothing, or the value itself)."""
        if not steps:
            return leaf() if callable(leaf) else leaf
        step = steps[0]
        if step[0] == "i":
            return [self.build(self.types[t]["element-type"], steps[1:], leaf)]
        if step[0] == "a":
            return self.build(step[1], steps[1:], leaf)
        _, member, case = step
        obj = self.valid(t, case=case)
        mt = [m for m in self.members(t, case) if m["name"] == member][0]["type"]
        obj[member] = self.build(mt, steps[1:], leaf)
        return obj

    def path_text(self, steps):
        """QEMU's full name of a place (`a.b[0].c`)."""
        out = ""
        for s in steps:
            if s[0] == "m":
                out += ("." if out else "") + s[1]
            elif s[0] == "i":
                out += "[0]"
        return out


def wrong_kinds(schema, t):
    """JSON values of kinds that type `t` does not accept (none for `any`)."""
    samples = {"string": "x", "number": 1, "boolean": True, "null": None, "array": [],
               "object": {}}
    k = schema.kind(t)
    accepts = {
        "string": {"string"}, "enum": {"string"}, "int": {"number"}, "number": {"number"},
        "boolean": {"boolean"}, "null": {"null"}, "array": {"array"}, "object": {"object"},
        "value": set(samples),
    }
    if k == "alternate":
        ok = set()
        for b in schema.types[t]["members"]:
            ok |= accepts.get(schema.kind(b["type"]), {"object"})
    else:
        ok = accepts[k]
    out = [v for kind, v in samples.items() if kind not in ok]
    if k in ("int",):
        out.append(1.5)
    return out
