//! The simulator's own, independent picture of QMP wire bytes: a tiny JSON value type, a writer
//! that reproduces QEMU's output layout (hash-bucket member order, compact and pretty forms,
//! CRLF framing), a request encoder with the client-side variations the sim generates, and a
//! validator for server output lines.
//!
//! Deliberately shares no code with `qmp_core`: expected bytes are computed here from the spec
//! (§1.6) so that a writer bug in the core shows up as a mismatch instead of being mirrored.

use std::fmt::Write as _;

/// A JSON value as the simulator builds it. Objects keep insertion order; the writer reorders
/// members the way QEMU's hash table does.
#[derive(Clone, Debug, PartialEq)]
pub enum J {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string (the sim only builds printable ASCII strings).
    Str(String),
    /// An array.
    Arr(Vec<J>),
    /// An object, members in insertion order.
    Obj(Vec<(String, J)>),
}

impl J {
    /// An object from `(key, value)` pairs.
    pub fn obj(members: Vec<(&str, J)>) -> J {
        J::Obj(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A string value.
    pub fn s(text: &str) -> J {
        J::Str(text.to_string())
    }

    /// The text, if this is a string.
    pub fn as_str_opt(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The same value as `serde_json` sees it (member order aside).
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            J::Null => serde_json::Value::Null,
            J::Bool(b) => serde_json::Value::Bool(*b),
            J::Int(i) => serde_json::Value::from(*i),
            J::Str(s) => serde_json::Value::String(s.clone()),
            J::Arr(a) => serde_json::Value::Array(a.iter().map(J::to_serde).collect()),
            J::Obj(m) => serde_json::Value::Object(
                m.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect(),
            ),
        }
    }
}

/// QEMU's dictionary bucket of `key` (tdb hash modulo 512, spec §1.6.4).
pub fn bucket(key: &str) -> u32 {
    let bytes = key.as_bytes();
    let mut h: u32 = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, &b) in bytes.iter().enumerate() {
        h = h.wrapping_add((b as u32) << ((i * 5) % 24));
    }
    h = 1_103_515_243u32.wrapping_mul(h).wrapping_add(12345);
    h % 512
}

/// Members in QEMU output order: ascending bucket, newest first within a bucket.
fn qemu_order(members: &[(String, J)]) -> Vec<&(String, J)> {
    let mut idx: Vec<(u32, usize)> = members
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (bucket(k), i))
        .collect();
    // Same bucket: the most recently inserted (higher index) first.
    idx.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    idx.into_iter().map(|(_, i)| &members[i]).collect()
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04X}", u);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("    ");
    }
}

fn write_value(out: &mut String, v: &J, pretty: bool, level: usize) {
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Int(i) => {
            let _ = write!(out, "{i}");
        }
        J::Str(s) => write_str(out, s),
        J::Arr(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(if pretty { "," } else { ", " });
                }
                if pretty {
                    out.push('\n');
                    indent(out, level + 1);
                }
                write_value(out, item, pretty, level + 1);
            }
            if pretty {
                out.push('\n');
                indent(out, level);
            }
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (n, (k, val)) in qemu_order(members).into_iter().enumerate() {
                if n > 0 {
                    out.push_str(if pretty { "," } else { ", " });
                }
                if pretty {
                    out.push('\n');
                    indent(out, level + 1);
                }
                write_str(out, k);
                out.push_str(": ");
                write_value(out, val, pretty, level + 1);
            }
            if pretty {
                out.push('\n');
                indent(out, level);
            }
            out.push('}');
        }
    }
}

/// The exact bytes QEMU sends for message `v` on a monitor with the given `pretty` setting,
/// CRLF framing included (spec §1.6.1).
pub fn server_message(v: &J, pretty: bool) -> Vec<u8> {
    let mut s = String::new();
    write_value(&mut s, v, pretty, 0);
    s.push('\n');
    s.replace('\n', "\r\n").into_bytes()
}

/// How a client spells a request on the wire.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// `{"a":1,"b":2}`
    Tight,
    /// `{"a": 1, "b": 2}` plus a trailing newline, as most clients send.
    Spaced,
    /// Single-quoted strings (a QEMU extension).
    SingleQuoted,
}

fn encode_into(out: &mut String, v: &J, sp: Spelling) {
    let sep = if sp == Spelling::Tight { "," } else { ", " };
    let colon = if sp == Spelling::Tight { ":" } else { ": " };
    match v {
        J::Null | J::Bool(_) | J::Int(_) => write_value(out, v, false, 0),
        J::Str(s) => {
            if sp == Spelling::SingleQuoted {
                out.push('\'');
                for ch in s.chars() {
                    match ch {
                        '\'' => out.push_str("\\'"),
                        '\\' => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
                out.push('\'');
            } else {
                write_str(out, s)
            }
        }
        J::Arr(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(sep);
                }
                encode_into(out, item, sp);
            }
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (n, (k, val)) in members.iter().enumerate() {
                if n > 0 {
                    out.push_str(sep);
                }
                encode_into(out, &J::Str(k.clone()), sp);
                out.push_str(colon);
                encode_into(out, val, sp);
            }
            out.push('}');
        }
    }
}

/// Client request bytes for `v` in member insertion order.
pub fn encode_request(v: &J, sp: Spelling) -> Vec<u8> {
    let mut s = String::new();
    encode_into(&mut s, v, sp);
    if sp != Spelling::Tight {
        s.push('\n');
    }
    s.into_bytes()
}

/// Bound on nesting the output validator follows before it calls a line invalid; QEMU's own
/// input limit is 1024, and an echoed id cannot be deeper than its request.
pub const MAX_VALIDATE_DEPTH: usize = 1100;

/// Why an output message is not acceptable QMP output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// Byte offset of the problem inside the message.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

struct Validator<'a> {
    b: &'a [u8],
    i: usize,
}

impl Validator<'_> {
    fn err<T>(&self, what: &'static str) -> Result<T, LineError> {
        Err(LineError { at: self.i, what })
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), LineError> {
        if depth > MAX_VALIDATE_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        let Some(&c) = self.b.get(self.i) else {
            return self.err("unexpected end");
        };
        match c {
            b'{' => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected key");
                    }
                    self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    self.value(depth + 1)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            b'"' => self.string(),
            b't' if self.lit(b"true") => Ok(()),
            b'f' if self.lit(b"false") => Ok(()),
            b'n' if self.lit(b"null") => Ok(()),
            // QEMU's %.17g of non-finite doubles (spec §1.6.3): documented, not JSON.
            b'i' if self.lit(b"inf") => Ok(()),
            b'n' if self.lit(b"nan") => Ok(()),
            b'-' if self.lit(b"-inf") || self.lit(b"-nan") => Ok(()),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.err("unexpected byte"),
        }
    }

    fn string(&mut self) -> Result<(), LineError> {
        self.i += 1;
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return Ok(()),
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4);
                            // QEMU writes upper-case hex only (spec §1.6.2).
                            let ok = hex.is_some_and(|h| {
                                h.iter()
                                    .all(|x| x.is_ascii_digit() || (b'A'..=b'F').contains(x))
                            });
                            if !ok {
                                return self.err("bad \\u escape");
                            }
                            self.i += 4;
                        }
                        _ => return self.err("escape QEMU never writes"),
                    }
                }
                0x20..=0x7e => {}
                _ => return self.err("raw byte QEMU would escape"),
            }
        }
    }

    fn number(&mut self) -> Result<(), LineError> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = |v: &mut Self| {
            let s = v.i;
            while v.b.get(v.i).is_some_and(u8::is_ascii_digit) {
                v.i += 1;
            }
            v.i > s
        };
        if !digits(self) {
            return self.err("bad number");
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !digits(self) {
                return self.err("bad fraction");
            }
        }
        if matches!(self.b.get(self.i), Some(b'e') | Some(b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+') | Some(b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return self.err("bad exponent");
            }
        }
        if self.i == start {
            return self.err("bad number");
        }
        Ok(())
    }
}

/// Checks one complete server message (compact line or pretty block, `\r\n` included): valid
/// JSON (or QEMU's documented `inf`/`nan`), a top-level object, pure printable ASCII, and every
/// line ending in CRLF with no bare CR or LF.
pub fn validate_message(msg: &[u8]) -> Result<(), LineError> {
    if !msg.ends_with(b"\r\n") {
        return Err(LineError {
            at: msg.len(),
            what: "message does not end with CRLF",
        });
    }
    for (i, &c) in msg.iter().enumerate() {
        let ok = match c {
            b'\n' => i > 0 && msg[i - 1] == b'\r',
            b'\r' => msg.get(i + 1) == Some(&b'\n'),
            0x20..=0x7e => true,
            _ => false,
        };
        if !ok {
            return Err(LineError {
                at: i,
                what: "bare CR/LF or non-ASCII byte",
            });
        }
    }
    let mut v = Validator { b: msg, i: 0 };
    v.ws();
    if v.b.get(v.i) != Some(&b'{') {
        return v.err("message is not an object");
    }
    v.value(0)?;
    v.ws();
    if v.i != msg.len() {
        return v.err("trailing bytes after message");
    }
    Ok(())
}

/// Splits complete messages off the front of `buf` (bytes received so far from one monitor).
/// Compact messages are single lines; a pretty message ends with a line that is exactly `}`.
/// Returns the messages and leaves the incomplete tail in `buf`.
pub fn split_messages(buf: &mut Vec<u8>, pretty: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut line_start = 0;
    for i in 0..buf.len() {
        if buf[i] == b'\n' {
            let line = &buf[line_start..=i];
            let complete = !pretty || line == b"}\r\n";
            line_start = i + 1;
            if complete {
                out.push(buf[start..=i].to_vec());
                start = i + 1;
            }
        }
    }
    buf.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_qemu_bucket_order() {
        let reply = J::obj(vec![("return", J::obj(vec![])), ("id", J::Int(1))]);
        assert_eq!(
            server_message(&reply, false),
            b"{\"return\": {}, \"id\": 1}\r\n"
        );
        let err = J::obj(vec![
            (
                "error",
                J::obj(vec![("class", J::s("GenericError")), ("desc", J::s("x"))]),
            ),
            ("id", J::s("a")),
        ]);
        assert_eq!(
            server_message(&err, false),
            b"{\"id\": \"a\", \"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\r\n"
        );
        // Spec §1.6.4 live example P1.
        let id = J::obj(vec![
            ("b", J::Int(0)),
            ("a", J::Int(1)),
            ("c", J::Int(2)),
            ("zz", J::Int(3)),
            ("id", J::Int(4)),
            ("return", J::Int(5)),
            ("error", J::Int(6)),
        ]);
        assert_eq!(
            server_message(&id, false),
            b"{\"a\": 1, \"zz\": 3, \"b\": 0, \"return\": 5, \"c\": 2, \"id\": 4, \"error\": 6}\r\n"
        );
        let version = J::obj(vec![
            ("major", J::Int(7)),
            ("minor", J::Int(2)),
            ("micro", J::Int(22)),
        ]);
        assert_eq!(
            server_message(&version, false),
            b"{\"micro\": 22, \"minor\": 2, \"major\": 7}\r\n"
        );
    }

    #[test]
    fn pretty_layout_matches_live_transcript() {
        let reply = J::obj(vec![("return", J::obj(vec![]))]);
        assert_eq!(
            server_message(&reply, true),
            b"{\r\n    \"return\": {\r\n    }\r\n}\r\n"
        );
        let e5 = J::obj(vec![
            (
                "return",
                // QAPI StatusInfo member order; status and singlestep share bucket 202.
                J::obj(vec![
                    ("running", J::Bool(true)),
                    ("singlestep", J::Bool(false)),
                    ("status", J::s("running")),
                ]),
            ),
            ("id", J::Arr(vec![J::Int(1)])),
        ]);
        assert_eq!(
            server_message(&e5, true),
            &b"{\r\n    \"return\": {\r\n        \"status\": \"running\",\r\n        \"singlestep\": false,\r\n        \"running\": true\r\n    },\r\n    \"id\": [\r\n        1\r\n    ]\r\n}\r\n"[..]
        );
    }

    #[test]
    fn validator_accepts_qemu_output_and_rejects_damage() {
        assert!(validate_message(b"{\"return\": {}, \"id\": inf}\r\n").is_ok());
        assert!(validate_message(b"{\"a\": [1, -2.5e+07, null, true]}\r\n").is_ok());
        assert!(validate_message(b"{\"a\": 1}\n").is_err());
        assert!(validate_message(b"{\"a\": 1\r\n").is_err());
        assert!(validate_message(b"{\"a\": \"\xc3\xa9\"}\r\n").is_err());
        assert!(validate_message(b"[1]\r\n").is_err());
        assert!(validate_message(b"{\"a\": \"\\u00e9\"}\r\n").is_err());
    }

    #[test]
    fn splitting_keeps_incomplete_tail() {
        let mut buf = b"{\"a\": 1}\r\n{\"b\"".to_vec();
        assert_eq!(
            split_messages(&mut buf, false),
            vec![b"{\"a\": 1}\r\n".to_vec()]
        );
        assert_eq!(buf, b"{\"b\"");
        let mut p = b"{\r\n    \"a\": 1\r\n}\r\n{\r\n".to_vec();
        assert_eq!(
            split_messages(&mut p, true),
            vec![b"{\r\n    \"a\": 1\r\n}\r\n".to_vec()]
        );
        assert_eq!(p, b"{\r\n");
    }
}
