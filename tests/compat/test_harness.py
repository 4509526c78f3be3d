"""Self-test of the harness's own rules (masking, message counting, the known-differences
table), so a harness bug cannot make two different servers look equal. Run by run.sh before
the suite: `python3 -m unittest tests/compat/test_harness.py`."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import known  # noqa: E402
import masking  # noqa: E402
from wire import count_messages  # noqa: E402


class Masking(unittest.TestCase):
    def test_compact_event_timestamp(self):
        got = masking.mask(b'{"timestamp": {"seconds": 1795610467, "microseconds": 629642}, '
                           b'"event": "STOP"}\r\n')
        self.assertEqual(got, b'{"timestamp": {"seconds": S, "microseconds": U}, '
                              b'"event": "STOP"}\r\n')

    def test_pretty_event_timestamp(self):
        got = masking.mask(b'{\r\n    "timestamp": {\r\n        "seconds": 17,\r\n'
                           b'        "microseconds": 34551\r\n    },\r\n')
        self.assertEqual(got, b'{\r\n    "timestamp": {\r\n        "seconds": S,\r\n'
                              b'        "microseconds": U\r\n    },\r\n')

    def test_timestamps_elsewhere_are_kept(self):
        # Only the event timestamp object is masked, not a "seconds" member of a reply.
        data = b'{"return": {"seconds": 5, "microseconds": 6}}\r\n'
        self.assertEqual(masking.mask(data), data)

    def test_version_object_greeting_and_reply(self):
        greeting = (b'{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, '
                    b'"package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}')
        self.assertEqual(masking.mask(greeting),
                         b'{"QMP": {"version": <VERSION>, "capabilities": ["oob"]}}')
        reply = b'{"return": {"qemu": {"micro": 0, "minor": 1, "major": 0}, "package": ""}}'
        self.assertEqual(masking.mask(reply), b'{"return": <VERSION>}')

    def test_capabilities_are_not_masked(self):
        a = masking.mask(b'{"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 3}, '
                         b'"package": "x"}, "capabilities": ["oob"]}}')
        b = masking.mask(b'{"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 3}, '
                         b'"package": "x"}, "capabilities": []}}')
        self.assertNotEqual(a, b)

    def test_hmp_version_only_when_asked(self):
        data = b'{"return": "7.2.22Debian 1:7.2+dfsg\\r\\n", "id": "h"}'
        self.assertEqual(masking.mask(data), data)
        self.assertEqual(masking.mask(data, hmp_version=True),
                         b'{"return": "<VERSION>\\r\\n", "id": "h"}')

    def test_fd_numbers_renumbered_consistently(self):
        transcript = [
            ("s1", {"a": b'{"return": {"fd": 14, "fdset-id": 0}}'}),
            ("s2", {"a": b'{"return": {"fd": 15, "fdset-id": 5}}'}),
            ("s3", {"a": b'{"return": [{"fds": [{"fd": 15}]}, {"fds": [{"fd": 14}]}]}'}),
            ("s4", {"a": b'"desc": "File descriptor named \'fdset-id:5, fd:15\' not found"'}),
        ]
        out = masking.mask_transcript(transcript, fds=True)
        self.assertEqual(out[2][1]["a"], b'{"return": [{"fds": [{"fd": FD2}]}, '
                                         b'{"fds": [{"fd": FD1}]}]}')
        self.assertIn(b"fd:FD2'", out[3][1]["a"])
        # Without fds=True the numbers are compared as they are.
        self.assertEqual(masking.mask_transcript(transcript)[0][1]["a"], transcript[0][1]["a"])


class Counting(unittest.TestCase):
    def test_compact_and_pretty(self):
        self.assertEqual(count_messages(b'{"return": {}}\r\n{"return": {}}\r\n'), 2)
        pretty = b'{\r\n    "return": {\r\n    }\r\n}\r\n'
        self.assertEqual(count_messages(pretty * 3), 3)
        self.assertEqual(count_messages(b'{"return": {}}'), 0)  # no CRLF yet
        self.assertEqual(count_messages(b'{\r\n    "return": {\r\n'), 0)


class Known(unittest.TestCase):
    def test_table_is_read_only_under_its_heading(self):
        text = ("# t\n\n## Other\n\n| `X1` | a | b |\n\n## Known differences\n\n"
                "| case | difference | reason |\n|---|---|---|\n| `D10` | order | core |\n"
                "| `D8` | intermittent: x | same |\n\n## Later\n\n| `Y1` | c | d |\n")
        with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as f:
            f.write(text)
        try:
            self.assertEqual(known.load(f.name), {"D10": "core", "D8": "same"})
        finally:
            os.unlink(f.name)

    def test_project_doc_lists_only_real_case_names(self):
        from cases import all_cases
        names = {c.name for c in all_cases()}
        doc = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "docs", "compat.md")
        listed = known.load(doc)
        self.assertTrue(listed)
        self.assertEqual(set(listed) - names, set())


if __name__ == "__main__":
    unittest.main()
