#!/usr/bin/env python3
"""Record JSON-layer transcripts from a real QEMU 7.2 (the oracle).

Usage: python3 gen_transcripts.py > transcripts.txt
Each case: fresh connection, greeting read, {"enable": ["oob"]} negotiated, the chunks sent one
by one (with a short pause between them), then every byte QEMU sends until 0.4 s of silence.
Cases marked "pretty: yes" ran on a second monitor with pretty=on.
Only two kinds of request appear, so the Rust test can play the server's part exactly:
non-objects ("QMP input must be a JSON object") and {"execute": "query-name"[, "id": X]}.
"""
import os, socket, subprocess, sys, time, tempfile

QN = b'{"execute": "query-name", "id": %s}\n'

def idcase(name, idtext):
    return (name, [QN % idtext])

def strcase(name, body, quote=b'"'):
    # body: the raw bytes between the quotes of the id string
    return (name, [QN % (quote + body + quote)])

CASES = []
def add(name, *chunks):
    CASES.append((name, list(chunks)))

# --- Appendix A group B (framing, ids, JSON edge cases) ---
add("B3 message split across writes", b'{"execute": "query', b'-name", "id": "sp', b'lit"}')
add("B4' three messages in one write, no separators", b'{"execute":"query-name","id":1}{"execute":"query-name","id":2}\n{"execute":"query-name","id":3}')
for n, t in [("B5", b'"str"'), ("B6", b'42'), ("B7", b'-7'), ("B8", b'3.5'), ("B9", b'true'),
             ("B10", b'false'), ("B11", b'null'), ("B12", b'[1, "a", {}]'), ("B13", b'{"k": ["v"]}'),
             ("B14", b'9223372036854775807'), ("B15", b'9223372036854775808'),
             ("B16", b'18446744073709551615'), ("B17", b'18446744073709551616'),
             ("B18", b'-9223372036854775809'), ("B19", b'1e400'), ("B20", b'-1e400'),
             ("B21", b'-0'), ("B22", b'1E2'), ("B23", b'0.1'), ("B24", b'1.5e-7'),
             ("B25", b'100000000000000000000.0')]:
    CASES.append(idcase("%s id = %s" % (n, t.decode()), t))
add("B38 array", b'[]\n')
add("B39 string at top level", b'"hello"\n')
add("B40 number at top level", b'123\n')
add("B41 null at top level", b'null\n')
add("B42 keyword without lookahead byte", b'null')
add("B42+B43 keyword then lookahead byte", b'null', b' ')
add("B44 missing value", b'{"execute": }\n')
add("B45 mismatched bracket", b'{]\n')
add("B46 stray closing brace", b'}\n')
add("B47 stray closing bracket", b']\n')
add("B48 stray colon", b':\n')
add("stray comma", b',\n')
add("B49 unknown keyword", b'abc\n')
add("B50 capitalised keyword", b'True\n')
add("B51 0xFF byte", b'\xff')
add("B52 0xFF inside object then recovery", b'{"execute": \xff "query-name"}\n{"execute": "query-name", "id": "after"}\n')
add("B53 NUL byte", b'\x00')
add("B54 two NUL bytes", b'\x00\x00')
add("B55 control char 0x01 after {", b'{\x01')
add("B56 ESC inside pending object", b'{"execute": "query-name"\x1b')
add("B57 invalid UTF-8 in string", b'{"execute": "query-name", "id": "\xc3("}\n')
add("B58 overlong NUL C0 80 accepted", b'{"execute": "query-name", "id": "a\xc0\x80b"}\n')
add("B59 valid UTF-8 in string", b'{"execute": "query-name", "id": "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"}\n')
add("B60 0xFF inside string", b'{"execute": "query-name", "id": "ab\xffcd"}\n')
add("B61 raw newline inside string", b'{"execute": "query-name", "id": "a\nb"}\n')
add("B62 tab inside string", b'{"execute": "query-name", "id": "a\tb"}\n')
add("B63 DEL inside string", b'{"execute": "query-name", "id": "a\x7fb"}\n')
add("B64 escapes in string", b'{"execute": "query-name", "id": "\\u0000\\u00e9\\/\\b\\f\\n\\r\\t\\"\\\\\\u001f"}\n')
add("B65 surrogate pair escape", b'{"execute": "query-name", "id": "\\uD834\\uDD1E"}\n')
add("B66 unpaired surrogate escape", b'{"execute": "query-name", "id": "\\uD800"}\n')
add("B67 noncharacter escape", b'{"execute": "query-name", "id": "\\uFFFF"}\n')
add("B68 bad escape \\z", b'{"execute": "query-name", "id": "\\z"}\n')
add("B69 bad \\u escape", b'{"execute": "query-name", "id": "\\u12x4"}\n')
add("B70 single-quoted strings", b'{\'execute\': \'query-name\', \'id\': \'sq\\\'x"y\'}\n')
add("B71 duplicate key", b'{"execute": "query-name", "execute": "query-status"}\n')
add("B72 non-string key", b'{1: 2}\n')
add("B73 trailing comma in object", b'{"execute": "query-name",}\n')
add("B74 leading zero 01", b'{"execute": "query-name", "id": 01}\n')
add("B75 number 1. then }", b'{"execute": "query-name", "id": 1.}\n')
add("B76 plus sign number", b'{"execute": "query-name", "id": +1}\n')
add("B77 interpolation %p", b'%p\n')
add("B78 whitespace only", b' \t\r\n\n')

# --- Appendix A group P ---
add("P1 keys re-ordered (bucket order)", b'{"execute": "query-name", "id": {"b": 0, "a": 1, "c": 2, "zz": 3, "id": 4, "return": 5, "error": 6}}\n')
add("P2 two 0xFF bytes", b'\xff\xff')
add("P3 [{] waits", b'[{]')
add("P3+P4 [{] then }", b'[{]', b'}')
add("P5 missing colon", b'{"execute" "query-name"}\n')
add("P6 missing comma in list", b'{"execute": "query-name", "id": [1 2]}\n')
add("P7 missing comma in object", b'{"execute": "query-name" "id": 1}\n')
add("P8 key is an object", b'{{}: 1}\n')
add("P9 minus without digits", b'-a\n')
add("P10 exponent without digits", b'{"id": 1e}\n')
add("P11 control char right after error", b'@\x01\n')
add("P12 tab during recovery", b'@\tabc\n')
add("P13 long unknown keyword cut at 1023", b'a' * 1100 + b'\n')
add("P14 printable ASCII and DEL", b'{"execute": "query-name", "id": " !#$%&\'()*+,-./09:;<=>?@AZ[]^_`az{|}~\x7f"}\n')
add("P15 escaped single quote in dq string", b'{"execute": "query-name", "id": "it\\\'s"}\n')

# --- Appendix A group C, small enough to record ---
add("C1 nesting 1024 accepted", b'{"execute": "query-name", "id": ' + b'[' * 1023 + b']' * 1023 + b'}\n')
add("C2 nesting 1025: 1026 replies", b'{"execute": "query-name", "id": ' + b'[' * 1024 + b']' * 1024 + b'}\n')
add("C nesting by braces 1025", b'{"a":' * 1025 + b'1' + b'}' * 1025 + b'\n')

# --- check-qjson escaped strings (both quote styles) ---
ESC = [b'\\"', b"\\'", b'\\\\', b'\\/', b'\\b', b'\\f', b'\\n', b'\\r', b'\\t', b'\\u0020',
       b'\\u00C9', b'\\u0800', b'\\uD834\\uDD1E', b'\\u12345', b'\\u0000x', b'\\u00e9',
       b'\\', b'\\z', b'\\ux', b'\\u1x', b'\\u12x', b'\\u123x', b'\\uDBFF\\uDFFF',
       b'\\uD800', b'\\uDC00', b'\\uD800x', b'\\uD800\\u0041', b'\\uDC00\\uD800',
       b'\\uFDD0', b'\\uFDEF', b'\\uD83F\\uDFFE', b'\\uDBFF\\uDFFD', b'\\uFFFE', b'\\u',
       b'\\u1', b'\\uD800\\u', b'\\uD800\\uDC', b'\\uFFFD', b'\\uD7FF', b'\\uE000']
for i, e in enumerate(ESC):
    for q in (b'"', b"'"):
        # "\\" at the end escapes the closing quote: the string goes on to the next quote.
        CASES.append(strcase("qjson escape %s in %s" % (e.decode(), q.decode()), e, q))
add("qjson quotes: the bee's knees", b'{"execute": "query-name", "id": "the bee\'s knees"}\n')
add("qjson quotes: double quote in sq", b'{"execute": "query-name", "id": \'double quote "\'}\n')

# --- check-qjson UTF-8 (Kuhn stress test excerpts), raw bytes inside an id string ---
UTF8 = [
    ("German", "Falsches Üben von Xylophonmusik quält jeden größeren Zwerg".encode()),
    ("Greek", "Ξεσκεπάζω τὴν ψυχοφθόρα βδελυγμία".encode()),
    ("100%", b'100%'),
    ("U+0080", b'\xc2\x80'), ("U+0800", b'\xe0\xa0\x80'), ("U+10000", b'\xf0\x90\x80\x80'),
    ("U+007F", b'\x7f'), ("U+07FF", b'\xdf\xbf'), ("U+FFFC", b'\xef\xbf\xbc'),
    ("U+D7FF", b'\xed\x9f\xbf'), ("U+E000", b'\xee\x80\x80'), ("U+FFFD", b'\xef\xbf\xbd'),
    ("U+10FFFD", b'\xf4\x8f\xbf\xbd'),
    ("5-byte U+200000", b'\xf8\x88\x80\x80\x80'), ("6-byte U+4000000", b'\xfc\x84\x80\x80\x80\x80'),
    ("4-byte U+1FFFFF", b'\xf7\xbf\xbf\xbf'), ("U+110000", b'\xf4\x90\x80\x80'),
    ("unexpected continuation 80", b'\x80'), ("unexpected continuation bf", b'\xbf'),
    ("lonely start c0 space", b'\xc0 '), ("lonely start e0 space", b'\xe0 '),
    ("truncated 2-byte", b'\xc2'), ("truncated 3-byte", b'\xe0\x80'), ("truncated 4-byte", b'\xf0\x80\x80'),
    ("concatenated truncated", b'\xc0\xe0\x80\xf0\x80\x80'),
    ("overlong /", b'\xc0\xaf'), ("overlong / 3", b'\xe0\x80\xaf'), ("overlong NUL 3", b'\xe0\x80\x80'),
    ("overlong max 2", b'\xc1\xbf'), ("UTF-16 surrogate D800", b'\xed\xa0\x80'),
    ("UTF-16 pair", b'\xed\xa0\x80\xed\xb0\x80'), ("noncharacter U+FFFE", b'\xef\xbf\xbe'),
    ("noncharacter U+FDD0", b'\xef\xb7\x90'), ("noncharacter U+10FFFF", b'\xf4\x8f\xbf\xbf'),
    ("C0 80 then text", b'\xc0\x80abc'),
]
for n, body in UTF8:
    CASES.append(strcase("qjson utf8 %s" % n, body))
for c in list(range(1, 0x20)):
    CASES.append(strcase("qjson control 0x%02x raw" % c, bytes([c])))
CASES.append(strcase("all controls escaped", b''.join(b'\\u%04x' % c for c in range(1, 0x20))))

# --- check-qjson numbers and keywords ---
for t in [b'0', b'1234', b'1', b'-32', b'-0', b'9223372036854775808', b'18446744073709551615',
          b'32.43', b'0.222', b'-32.12313', b'-32.20e-10', b'18446744073709551616',
          b'-9223372036854775809', b'-9223372036854775808', b'1.5E+3', b'1e-2', b'0.0', b'-0.0',
          b'2.5e-324', b'1.7976931348623157e308', b'0e0', b'123456789012345678901234567890',
          b'true', b'false', b'null', b'[]', b'{}', b'[[], {}, [{}]]', b'{"a": {"b": []}}']:
    CASES.append(idcase("qjson number/keyword %s" % t.decode(), t))
add("whitespace around tokens", b' \t\r\n{ \t\r\n"execute"\n:\r"query-name"\t,  "id"  :  [ 1 , 2 ]\n}\n')
add("qjson errors: junk @", b'@\n')
add("qjson errors: [0 0xFF]", b'[0\xff]\n')
add("qjson errors: 00", b'00\n')
add("qjson errors: [1e", b'[1e', b'\n')
add("qjson errors: truer", b'truer\n')
add("qjson errors: unterminated \"abc then newline", b'"abc\n')
add("qjson errors: [32 waits", b'[32')
add("qjson errors: [32,}", b'[32,}\n')
add("qjson errors: {'abc':32,}", b"{'abc':32,}\n")
add("qjson errors: {32:'abc'}", b"{32:'abc'}\n")
add("qjson errors: nul then space", b'nul ')
add("qjson multiple values: false true", b'false true ')
add("qjson multiple values: } true", b'} true ')

# --- more framing and lexer edge cases ---
add("number ends at } (two messages, one byte)", b'1}')
add("keyword ends at {", b'null{}')
add("0x10: three tokens", b'0x10 ')
add("-01", b'-01\n')
add("1.e5", b'1.e5\n')
add(".5", b'.5\n')
add("1E+ then }", b'1E+}\n')
add("[} completes at once", b'[}\n')
add("{\"a\":1] completes", b'{"a":1]\n')
add("[{]} expecting value", b'[{]}\n')
add("nested key error wins", b'{{"a" 1}: 2}\n')
add("duplicate key after nested", b'{"execute": "query-name", "id": {"x": 1, "x": {"y": "\\uD800"}}}\n')
add("error inside value before dup check", b'{"a": 1, "a": "\\z"}\n')
add("key is number after member", b'{"execute": "query-name", 1: 2}\n')
add("array then junk", b'[1, 2]x\n')
add("uppercase after keyword", b'nulL\n')
add("CR ends recovery", b'@abc\r{"execute": "query-name", "id": 1}\n')
add("0xFE in recovery", b'@\xfe\n')
add("DEL in start state", b'\x7f\n')
add("0x80 in start state", b'\x80abc\n')
add("recovery skips quotes and digits", b'@"12 3\'x\n{"execute": "query-name", "id": 7}\n')
add("error in sq string", b"'ab\x01")
add("escape then control", b'"\\\x01')
add("escape then 0xFF", b'"\\\xff')
add("big object ids", b'{"execute": "query-name", "id": {"minor": 2, "micro": 22, "major": 7, "qemu": 1, "package": "p"}}\n')
add("empty key and empty string", b'{"execute": "query-name", "id": {"": ""}}\n')
add("key with \\u0000", b'{"execute": "query-name", "id": {"\\u0000": 1, "a\\u0000": 2}}\n')
add("deep mixed id", b'{"execute": "query-name", "id": [{"a": [{"b": null}]}, [], {}, "x", 1.25]}\n')
add("long string id 3000", b'{"execute": "query-name", "id": "' + b'y' * 3000 + b'"}\n')
add("long bad escape text in long string", b'{"execute": "query-name", "id": "' + b'y' * 2000 + b'\\q"}\n')
add("invalid keyword exactly 1006", b'b' * 1006 + b' ')
add("invalid keyword 1007", b'c' * 1007 + b' ')
add("invalid keyword inside object", b'{"execute": "query-name", "id": nan}\n')
add("inf keyword", b'inf ')
add("id = 1e-400 underflow", QN % b'1e-400')
add("id = 4.9e-324", QN % b'4.9e-324')
add("id = 1e16", QN % b'1e16')
add("id = 1e17", QN % b'1e17')
add("id = 0.0001", QN % b'0.0001')
add("id = 0.00001", QN % b'0.00001')
add("id = 123456.789e3", QN % b'123456.789e3')
add("id = -1.0", QN % b'-1.0')


# --- the same kind of requests on a pretty=on monitor ---
PRETTY = []
def addp(name, *chunks):
    PRETTY.append((name, list(chunks)))

for t in [b'1', b'"s"', b'[]', b'{}', b'[1, "a", {}]', b'{"k": ["v"]}', b'[[]]', b'[{}, []]',
          b'{"b": 0, "a": {"c": [1, {"d": null}]}}', b'{"minor": 2, "micro": 22}', b'1.5e-7']:
    addp("pretty id = %s" % t.decode(), QN % t)
addp("pretty parse error", b'{"execute": }\n')
addp("pretty stray byte", b'\xff')
addp("pretty non-object", b'[1]\n')


def pyrepr(b):
    return repr(bytes(b))


def main():
    d = tempfile.mkdtemp()
    sock = os.path.join(d, "qmp.sock")
    psock = os.path.join(d, "pretty.sock")
    q = subprocess.Popen(["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display",
                          "none", "-qmp", "unix:%s,server=on,wait=off" % sock,
                          "-chardev", "socket,id=pretty,path=%s,server=on,wait=off" % psock,
                          "-mon", "chardev=pretty,mode=control,pretty=on"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(sock) and os.path.exists(psock):
                break
            time.sleep(0.1)
        print("# Generated by gen_transcripts.py from a live QEMU; do not edit by hand.")
        for name, chunks, path in [(n, c, sock) for n, c in CASES] + [(n, c, psock) for n, c in PRETTY]:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = b''
            while not (f.endswith(b'}\r\n') and f.count(b'{') == f.count(b'}')):
                f += s.recv(4096)
            s.sendall(b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}\n')
            r = b''
            while not (r.endswith(b'}\r\n') and r.count(b'{') == r.count(b'}')):
                r += s.recv(4096)
            assert r in (b'{"return": {}}\r\n', b'{\r\n    "return": {\r\n    }\r\n}\r\n'), r
            for c in chunks:
                s.sendall(c)
                time.sleep(0.05)
            out = b''
            s.settimeout(0.4)
            big = sum(len(c) for c in chunks) > 4000
            while True:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    if big and not out:
                        s.settimeout(2.0)
                        big = False
                        continue
                    break
                if not data:
                    break
                out += data
            s.close()
            print()
            print("case: " + name)
            if path == psock:
                print("pretty: yes")
            print("src: live QEMU 7.2.22")
            for c in chunks:
                print("in: " + pyrepr(c))
            print("out: " + pyrepr(out))
            sys.stdout.flush()
    finally:
        q.kill()

if __name__ == "__main__":
    main()
