"""Self-test of the schema case generator (scripts/qapi_schema.py): valid skeletons, the
places it finds, and the values that reach them."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))

from qapi_schema import Schema, wrong_kinds  # noqa: E402

ENTRIES = [
    {"name": "cmd", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
    {"name": "0", "meta-type": "object", "members": [
        {"name": "u", "type": "1"}, {"name": "o", "type": "[int]", "default": None},
        {"name": "alt", "type": "4", "default": None}]},
    {"name": "1", "meta-type": "object", "tag": "k", "members": [{"name": "k", "type": "2"}],
     "variants": [{"case": "a", "type": "3"}, {"case": "b", "type": "5"}]},
    {"name": "2", "meta-type": "enum", "values": ["a", "b"], "members": []},
    {"name": "3", "meta-type": "object", "members": [{"name": "x", "type": "str"}]},
    {"name": "5", "meta-type": "object", "members": []},
    {"name": "4", "meta-type": "alternate", "members": [{"type": "str"}, {"type": "null"}]},
    {"name": "[int]", "meta-type": "array", "element-type": "int"},
    {"name": "int", "meta-type": "builtin", "json-type": "int"},
    {"name": "str", "meta-type": "builtin", "json-type": "string"},
    {"name": "null", "meta-type": "builtin", "json-type": "null"},
]


class Generator(unittest.TestCase):
    def setUp(self):
        self.s = Schema(ENTRIES)
        self.cmd = self.s.commands[0]

    def test_valid_takes_the_union_case_with_fewest_required_members(self):
        self.assertEqual(self.s.valid("0"), {"u": {"k": "b"}})
        self.assertEqual(self.s.valid("1", case="a"), {"k": "a", "x": "x"})

    def test_places_and_values_that_reach_them(self):
        places = {self.s.path_text(steps): (steps, t) for steps, t, _ in self.s.locations(self.cmd)}
        self.assertEqual(sorted(places), ["", "alt", "o", "o[0]", "u", "u.k", "u.x"])
        steps, t = places["u.x"]
        self.assertEqual(t, "str")
        self.assertEqual(self.s.build("0", steps, 7), {"u": {"k": "a", "x": 7}})
        steps, _ = places["o[0]"]
        self.assertEqual(self.s.build("0", steps, "z"), {"u": {"k": "b"}, "o": ["z"]})

    def test_wrong_kinds_avoid_every_branch(self):
        self.assertNotIn("x", wrong_kinds(self.s, "4"))
        self.assertNotIn(None, wrong_kinds(self.s, "4"))
        self.assertIn(1.5, wrong_kinds(self.s, "int"))
        self.assertEqual(wrong_kinds(self.s, "str"), [1, True, None, [], {}])


if __name__ == "__main__":
    unittest.main()
