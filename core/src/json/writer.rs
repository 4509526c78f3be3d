//! QEMU's JSON writer (`json-writer.c`, `qjson.c`) and the monitor's line framing
//! (`monitor_puts`): compact and pretty layouts, members in hash-bucket order, ASCII-only strings.
//!
//! Strings are C strings in QEMU: output stops at a NUL byte (parsed strings never hold one; the
//! parser stores NUL as `C0 80`). Invalid (modified) UTF-8 becomes one `\uFFFD` per bad sequence.
//! The writer recurses once per nesting level; parsed values are at most `max_nesting` deep.

use super::hash::for_each_in_bucket_order;
use super::number::{write_g17, write_i64, write_u64};
use super::scan::{inline_run_end, string_run_end};
use super::utf8;
use super::value::{JsonString, Object, Value, INLINE_CAPACITY};

/// How a value is laid out.
#[derive(Clone, Copy)]
pub(crate) struct Layout {
    /// 4-space indented lines (QEMU's `pretty=on`).
    pub pretty: bool,
    /// Line end used by pretty output (`\n`, or `\r\n` when framing a wire message).
    pub newline: &'static [u8],
    /// Members in QEMU's bucket order (true) or insertion order (exact trace form).
    pub bucket_order: bool,
}

const COMPACT: Layout = Layout {
    pretty: false,
    newline: b"\n",
    bucket_order: true,
};

/// Append the compact text of `v` (`qobject_to_json`).
pub fn write_compact(v: &Value, out: &mut Vec<u8>) {
    write_value(v, out, COMPACT, 0);
}

/// Append the pretty text of `v` (`qobject_to_json_pretty`), lines ending in `\n`.
pub fn write_pretty(v: &Value, out: &mut Vec<u8>) {
    write_value(
        v,
        out,
        Layout {
            pretty: true,
            ..COMPACT
        },
        0,
    );
}

/// Append one wire message: the value, then `\n`, every `\n` sent as `\r\n`.
pub fn write_message(v: &Value, pretty: bool, out: &mut Vec<u8>) {
    // Compact text never holds a raw newline (strings escape it), so the CRLF rewrite only
    // concerns the pretty layout's own line ends: emit them as CRLF directly.
    let layout = Layout {
        pretty,
        newline: b"\r\n",
        bucket_order: true,
    };
    write_value(v, out, layout, 0);
    out.extend_from_slice(b"\r\n");
}

/// [`write_message`] of a value whose compact text is `compact` (a [`super::JsonText`], or a
/// reply built around one): the same bytes.
pub(crate) fn write_message_text(compact: &[u8], pretty: bool, out: &mut Vec<u8>) {
    if pretty {
        super::text::write_pretty_text(compact, b"\r\n", out);
    } else {
        out.extend_from_slice(compact);
    }
    out.extend_from_slice(b"\r\n");
}

/// The compact text of `v` as a byte vector.
pub fn to_compact(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_compact(v, &mut out);
    out
}

/// The compact text of `v` with members in insertion order (the exact trace form's text).
pub(crate) fn to_compact_insertion_order(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_value(
        v,
        &mut out,
        Layout {
            bucket_order: false,
            ..COMPACT
        },
        0,
    );
    out
}

fn newline_indent(out: &mut Vec<u8>, layout: Layout, depth: usize) {
    out.extend_from_slice(layout.newline);
    out.resize(out.len() + 4 * depth, b' ');
}

pub(crate) fn write_value(v: &Value, out: &mut Vec<u8>, layout: Layout, depth: usize) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(*i, out),
        Value::UInt(u) => write_u64(*u, out),
        Value::Double(d) => write_g17(*d, out),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                member_prefix(n, out, layout, depth + 1);
                write_value(item, out, layout, depth + 1);
            }
            close(b']', out, layout, depth);
        }
        Value::Object(o) => {
            out.push(b'{');
            let mut n = 0;
            let member = |i: usize| {
                let (k, val) = &o.entries()[i];
                member_prefix(n, out, layout, depth + 1);
                write_json_string(k, out);
                out.extend_from_slice(b": ");
                write_value(val, out, layout, depth + 1);
                n += 1;
            };
            if layout.bucket_order {
                for_each_in_bucket_order(o, member);
            } else {
                (0..o.len()).for_each(member);
            }
            close(b'}', out, layout, depth);
        }
    }
}

/// Separator before member `n` (`maybe_comma_before_member`).
#[inline]
fn member_prefix(n: usize, out: &mut Vec<u8>, layout: Layout, depth: usize) {
    if n > 0 {
        out.push(b',');
        if !layout.pretty {
            out.push(b' ');
        }
    }
    if layout.pretty {
        newline_indent(out, layout, depth);
    }
}

/// Closing bracket; in pretty mode always on its own line, even for an empty container
/// (QEMU's `{`, newline, indentation, `}` quirk).
#[inline]
fn close(bracket: u8, out: &mut Vec<u8>, layout: Layout, depth: usize) {
    if layout.pretty {
        newline_indent(out, layout, depth);
    }
    out.push(bracket);
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_u4(cp: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&[
        b'\\',
        b'u',
        HEX[(cp >> 12) as usize & 15],
        HEX[(cp >> 8) as usize & 15],
        HEX[(cp >> 4) as usize & 15],
        HEX[cp as usize & 15],
    ]);
}

/// [`write_string`] of a [`JsonString`]. A plain inline string (the usual key or short value)
/// is written with fixed-size copies: quote, the 22 inline bytes, then the length is cut back.
#[inline]
pub(crate) fn write_json_string(s: &JsonString, out: &mut Vec<u8>) {
    if let Some(bytes) = s.inline_bytes() {
        let n = s.len();
        if inline_run_end(bytes) >= n {
            let mut buf = [0u8; INLINE_CAPACITY + 2];
            buf[0] = b'"';
            buf[1..=INLINE_CAPACITY].copy_from_slice(bytes);
            buf[n + 1] = b'"';
            out.extend_from_slice(&buf);
            out.truncate(out.len() - (INLINE_CAPACITY - n));
            return;
        }
    }
    write_string(s.as_bytes(), out);
}

/// `quoted_str`: a C string (stops at NUL), ASCII-only output.
pub(crate) fn write_string(s: &[u8], out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let start = i;
        i = string_run_end::<true>(s, i);
        out.extend_from_slice(&s[start..i]);
        if i >= s.len() {
            break;
        }
        let b = s[i];
        match b {
            0 => break,
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ if b < 0x80 => push_u4(u32::from(b), out),
            _ => {
                let (cp, n) = utf8::decode(&s[i..]);
                let cp = if cp < 0 { 0xFFFD } else { cp as u32 };
                if cp > 0xFFFF {
                    push_u4(0xD800 + ((cp - 0x10000) >> 10), out);
                    push_u4(0xDC00 + ((cp - 0x10000) & 0x3FF), out);
                } else {
                    push_u4(cp, out);
                }
                i += n;
                continue;
            }
        }
        i += 1;
    }
    out.push(b'"');
}

/// The desc of an error reply as a wire message, as the monitor sends a JSON error:
/// `{"error": {"class": "GenericError", "desc": ...}}` (used by tests and tools).
pub fn error_reply(desc: &super::value::JsonString) -> Value {
    let mut inner = Object::with_capacity(2);
    inner.push_unchecked("class".into(), Value::string("GenericError"));
    inner.push_unchecked("desc".into(), Value::String(desc.clone()));
    let mut outer = Object::with_capacity(1);
    outer.push_unchecked("error".into(), Value::Object(inner));
    Value::Object(outer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonString;

    fn s(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_string(bytes, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_qemu() {
        assert_eq!(s(b"a\"b\\c/"), r#""a\"b\\c/""#);
        assert_eq!(
            s(b"\x01\x08\t\n\x0b\x0c\r\x1f\x7f"),
            r#""\u0001\b\t\n\u000B\f\r\u001F\u007F""#
        );
        assert_eq!(s("é€𝄞".as_bytes()), r#""\u00E9\u20AC\uD834\uDD1E""#);
        assert_eq!(s(b"a\xC0\x80b"), r#""a\u0000b""#);
        assert_eq!(s(b"ab\x00cd"), r#""ab""#);
        assert_eq!(s(b"\xC3(\xE2\x82"), r#""\uFFFD(\uFFFD""#);
        assert_eq!(s(b"\xEF\xBF\xBF"), r#""\uFFFD""#);
    }

    #[test]
    fn pretty_empty_containers() {
        let mut o = Object::new();
        o.insert("return", Value::Object(Object::new()));
        let mut out = Vec::new();
        write_message(&Value::Object(o), true, &mut out);
        assert_eq!(out, b"{\r\n    \"return\": {\r\n    }\r\n}\r\n");
        let mut out = Vec::new();
        write_pretty(&Value::Array(vec![]), &mut out);
        assert_eq!(out, b"[\n]");
    }

    #[test]
    fn error_reply_shape() {
        let v = error_reply(&JsonString::from("x"));
        assert_eq!(
            to_compact(&v),
            br#"{"error": {"class": "GenericError", "desc": "x"}}"#
        );
    }
}
