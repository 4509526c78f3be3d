//! QEMU's JSON parser (`json-parser.c`): turns the tokens of one complete message into a value
//! or the first error's message.
//!
//! The C parser is recursive; this one keeps an explicit stack so that a configured nesting limit
//! far above QEMU's 1024 cannot exhaust the native stack, but it raises exactly the error the
//! recursive one raises first (later errors are ignored there, so the first one wins).
//! Duplicate keys are found with a linear scan in small objects and an ordered index in big ones,
//! so a 1M-member object is not quadratic.

use std::collections::BTreeSet;

use super::number::{float_value, integer_value};
use super::utf8;
use super::value::{JsonString, Object, Value};

/// Token kinds the streamer stores (error tokens are never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    String,
}

/// One stored token; text tokens (numbers, keywords, strings) span `text[start..end]` of the
/// streamer's message buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tok {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

/// Objects with more members than this get an ordered key index for duplicate detection.
pub(super) const LINEAR_DUP_SCAN: usize = 16;

/// Reusable parser state, so a message does not allocate its stack, and containers are built
/// once with their exact size: elements and members of all open containers are collected in
/// two shared vectors (nesting is last-in first-out, so each container owns a tail of them).
#[derive(Default, Debug)]
pub(crate) struct Scratch {
    pub(super) stack: Vec<Frame>,
    pub(super) items: Vec<Value>,
    pub(super) members: Vec<(JsonString, Value)>,
    /// The fast path's object members: `slots[..fingerprints.len()]` are the members of its
    /// open objects (each owns a tail, as in `members`), the rest are placeholders (empty key,
    /// `Null`) kept for the next ones. Members are written into their slot in place.
    pub(super) slots: Vec<(JsonString, Value)>,
    /// The fast path's key fingerprints (`JsonString::fingerprint`), one per member in `slots`.
    pub(super) fingerprints: Vec<u64>,
    /// Key indexes of the open big objects, innermost last (see `Frame::indexed`).
    indexes: Vec<BTreeSet<JsonString>>,
}

impl Clone for Scratch {
    fn clone(&self) -> Self {
        // Always empty between messages: nothing to copy.
        Scratch::default()
    }
}

/// One open container. Kept to two words: frames are pushed and popped for every value.
#[derive(Debug)]
pub(super) enum Frame {
    /// An open array whose elements are `items[start..]`.
    Array { start: usize },
    /// An open object whose members are `members[start..]`, waiting for a key. `indexed`: the
    /// object is big and its keys are in `indexes.last()`.
    ObjectKey { start: usize, indexed: bool },
    /// The same, waiting for the value of the last member, whose key is parked in `members`
    /// with a placeholder value (so the frame need not carry the key).
    ObjectValue { start: usize, indexed: bool },
}

/// The parser's error messages (the part after `JSON parse error, `).
type Msg = Vec<u8>;

fn msg(s: &str) -> Msg {
    s.as_bytes().to_vec()
}

/// Parse the tokens of one message. `Err` holds the first error's message, uncut.
pub(crate) fn parse(text: &[u8], toks: &[Tok], scratch: &mut Scratch) -> Result<Value, Msg> {
    let result = parse_with(text, toks, scratch);
    scratch.clear();
    result
}

impl Scratch {
    /// Drop partly built containers of a refused message; the capacity stays for the next.
    pub(super) fn clear(&mut self) {
        self.stack.clear();
        self.items.clear();
        self.members.clear();
        // Back to placeholders; the slots stay for the next message.
        let used = self.fingerprints.len().min(self.slots.len());
        for m in &mut self.slots[..used] {
            *m = Default::default();
        }
        self.fingerprints.clear();
        self.indexes.clear();
    }
}

fn parse_with(text: &[u8], toks: &[Tok], sc: &mut Scratch) -> Result<Value, Msg> {
    let mut pos = 0usize;
    let peek = |pos: usize| toks.get(pos).copied();
    'value: loop {
        // parse_value: a token must start a value.
        let Some(t) = peek(pos) else {
            return Err(msg("premature EOI"));
        };
        let mut v = match t.kind {
            TokKind::LCurly => {
                pos += 1;
                match peek(pos) {
                    None => return Err(msg("premature EOI")),
                    Some(p) if p.kind == TokKind::RCurly => {
                        pos += 1;
                        Value::Object(Object::new())
                    }
                    Some(_) => {
                        sc.stack.push(Frame::ObjectKey {
                            start: sc.members.len(),
                            indexed: false,
                        });
                        continue 'value;
                    }
                }
            }
            TokKind::LSquare => {
                pos += 1;
                match peek(pos) {
                    None => return Err(msg("premature EOI")),
                    Some(p) if p.kind == TokKind::RSquare => {
                        pos += 1;
                        Value::Array(Vec::new())
                    }
                    Some(_) => {
                        sc.stack.push(Frame::Array {
                            start: sc.items.len(),
                        });
                        continue 'value;
                    }
                }
            }
            TokKind::Integer => {
                pos += 1;
                integer_value(&text[t.start..t.end])
            }
            TokKind::Float => {
                pos += 1;
                Value::Double(float_value(&text[t.start..t.end]))
            }
            TokKind::String => {
                pos += 1;
                Value::String(parse_string(&text[t.start..t.end])?)
            }
            TokKind::Keyword => {
                pos += 1;
                match &text[t.start..t.end] {
                    b"true" => Value::Bool(true),
                    b"false" => Value::Bool(false),
                    b"null" => Value::Null,
                    word => {
                        let mut m = msg("invalid keyword '");
                        m.extend_from_slice(word);
                        m.push(b'\'');
                        return Err(m);
                    }
                }
            }
            TokKind::RCurly | TokKind::RSquare | TokKind::Colon | TokKind::Comma => {
                return Err(msg("expecting value"));
            }
        };
        // Hand the finished value to the enclosing container, closing containers as they end.
        loop {
            match sc.stack.pop() {
                None => return Ok(v),
                Some(Frame::Array { start }) => {
                    sc.items.push(v);
                    let Some(t) = peek(pos) else {
                        return Err(msg("premature EOI"));
                    };
                    pos += 1;
                    match t.kind {
                        TokKind::RSquare => v = Value::Array(take_tail(&mut sc.items, start)),
                        TokKind::Comma => {
                            sc.stack.push(Frame::Array { start });
                            continue 'value;
                        }
                        _ => return Err(msg("expected separator in list")),
                    }
                }
                Some(Frame::ObjectKey { start, indexed }) => {
                    let Value::String(key) = v else {
                        return Err(msg("key is not a string in object"));
                    };
                    let Some(t) = peek(pos) else {
                        return Err(msg("premature EOI"));
                    };
                    pos += 1;
                    if t.kind != TokKind::Colon {
                        return Err(msg("missing : in object pair"));
                    }
                    sc.members.push((key, Value::Null));
                    sc.stack.push(Frame::ObjectValue { start, indexed });
                    continue 'value;
                }
                Some(Frame::ObjectValue { start, mut indexed }) => {
                    // QEMU checks for a duplicate only once the value parsed without error.
                    // The parked key is the last member.
                    let parked = sc.members.len().saturating_sub(start + 1);
                    let (earlier, last) = sc.members[start..].split_at_mut(parked);
                    let Some((key, slot)) = last.first_mut() else {
                        return Err(msg("premature EOI")); // unreachable: a key was parked
                    };
                    let duplicate = match sc.indexes.last_mut() {
                        Some(set) if indexed => !set.insert(key.clone()),
                        _ => earlier.iter().any(|(k, _)| k == key),
                    };
                    if duplicate {
                        return Err(msg("duplicate key"));
                    }
                    *slot = v;
                    if !indexed && sc.members.len() - start > LINEAR_DUP_SCAN {
                        sc.indexes
                            .push(sc.members[start..].iter().map(|(k, _)| k.clone()).collect());
                        indexed = true;
                    }
                    let Some(t) = peek(pos) else {
                        return Err(msg("premature EOI"));
                    };
                    pos += 1;
                    match t.kind {
                        TokKind::RCurly => {
                            if indexed {
                                sc.indexes.pop();
                            }
                            let entries: Vec<(JsonString, Value)> =
                                take_tail(&mut sc.members, start);
                            v = Value::Object(Object::from_unique_entries(entries));
                        }
                        TokKind::Comma => {
                            sc.stack.push(Frame::ObjectKey { start, indexed });
                            continue 'value;
                        }
                        _ => return Err(msg("expected separator in dict")),
                    }
                }
            }
        }
    }
}

/// Move `v[start..]` into a vector of exactly that size (`split_off(0)` would hand over the
/// scratch buffer's whole capacity instead).
pub(super) fn take_tail<T>(v: &mut Vec<T>, start: usize) -> Vec<T> {
    if start == 0 {
        // The outermost container: move everything out, the scratch keeps its capacity.
        let mut out = Vec::with_capacity(v.len());
        out.append(v);
        out
    } else {
        // One allocation of exactly the tail's size and one copy (cheaper than `drain`).
        v.split_off(start.min(v.len()))
    }
}

/// `cvt4hex`: four hex digits, or -1 at the first non-hex byte (the token's end reads as NUL).
fn cvt4hex(s: &[u8], at: usize) -> i64 {
    let mut cp = 0i64;
    for i in 0..4 {
        let d = match s.get(at + i) {
            Some(c @ b'0'..=b'9') => c - b'0',
            Some(c @ b'a'..=b'f') => c - b'a' + 10,
            Some(c @ b'A'..=b'F') => c - b'A' + 10,
            _ => return -1,
        };
        cp = (cp << 4) | i64::from(d);
    }
    cp
}

/// `parse_string` on a complete string token (quotes included).
pub(crate) fn parse_string(tok: &[u8]) -> Result<JsonString, Msg> {
    let Some(&quote) = tok.first() else {
        return Ok(JsonString::default());
    };
    // The common string (keys, command names, ids): ASCII without escapes, copied as is after
    // one pass over it.
    if let Some(body) = tok.get(1..tok.len() - 1) {
        if body.len() <= SHORT_PLAIN && is_plain_ascii(body) {
            return Ok(JsonString::from_bytes(body));
        }
    }
    parse_string_general(tok, quote)
}

/// `parse_string` for strings with escapes, non-ASCII bytes or a long body. Kept out of line
/// so that the fast path above stays small where it is inlined.
#[inline(never)]
fn parse_string_general(tok: &[u8], quote: u8) -> Result<JsonString, Msg> {
    let mut out = Vec::with_capacity(tok.len().saturating_sub(2));
    let mut i = 1;
    loop {
        // Plain run: everything up to the next backslash, validated as modified UTF-8. The
        // lexer guarantees that an unescaped quote of the opening kind only ends the token.
        let body_end = tok.len() - 1;
        let rest = &tok[i.min(body_end)..body_end];
        let run = if rest.len() < 32 {
            rest.iter().position(|&c| c == b'\\')
        } else {
            memchr::memchr(b'\\', rest)
        }
        .unwrap_or(rest.len());
        copy_validated(&tok[i..i + run], &mut out)?;
        i += run;
        match tok.get(i) {
            None => break,
            Some(&c) if c == quote => break,
            Some(_) => {}
        }
        // A backslash escape.
        let beg = i;
        i += 1;
        let c = tok.get(i).copied();
        i += 1;
        match c {
            Some(b'"') => out.push(b'"'),
            Some(b'\'') => out.push(b'\''),
            Some(b'\\') => out.push(b'\\'),
            Some(b'/') => out.push(b'/'),
            Some(b'b') => out.push(0x08),
            Some(b'f') => out.push(0x0C),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'u') => {
                let mut cp = cvt4hex(tok, i);
                i += 4;
                if (0xD800..=0xDBFF).contains(&cp)
                    && tok.get(i) == Some(&b'\\')
                    && tok.get(i + 1) == Some(&b'u')
                {
                    cp = 0x10000 + ((cp & 0x3FF) << 10);
                    let trailing = cvt4hex(tok, i + 2);
                    if (0xDC00..=0xDFFF).contains(&trailing) {
                        cp |= trailing & 0x3FF;
                        i += 6;
                    } else {
                        cp = -1;
                    }
                }
                if !utf8::encode(cp, &mut out) {
                    // "%.*s" of the escape text; the C string ends with the token.
                    let end = i.min(tok.len());
                    let mut m = tok[beg..end].to_vec();
                    m.extend_from_slice(b" is not a valid Unicode character");
                    return Err(m);
                }
            }
            _ => return Err(msg("invalid escape sequence in string")),
        }
    }
    Ok(JsonString::from(out))
}

/// Strings up to this long take the one-pass fast path; longer ones go through the memchr
/// and vectorised ASCII scans of the general path, which win over a long run.
const SHORT_PLAIN: usize = 64;

/// True when `s` is ASCII without a backslash, tested eight bytes at a time.
fn is_plain_ascii(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(w.try_into().unwrap_or([0x80; 8]));
        let bs = x ^ (ONES * u64::from(b'\\'));
        // A high bit is set by a byte >= 0x80, or, when all are ASCII, by a zero byte of
        // `bs` (the classic has-zero-byte test), i.e. a backslash.
        if (x | (bs.wrapping_sub(ONES) & !bs)) & HIGH != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|&c| c != b'\\' && c < 0x80)
}

/// Copy raw string bytes, checking them as modified UTF-8 like `mod_utf8_codepoint`.
fn copy_validated(seg: &[u8], out: &mut Vec<u8>) -> Result<(), Msg> {
    if seg.is_ascii() {
        out.extend_from_slice(seg);
        return Ok(());
    }
    let mut i = 0;
    while i < seg.len() {
        let a = utf8::ascii_prefix_len(&seg[i..]);
        out.extend_from_slice(&seg[i..i + a]);
        i += a;
        if i >= seg.len() {
            break;
        }
        // The segment ends at a backslash or quote (or the token's end), none of which is a
        // continuation byte, so decoding within it equals decoding the rest of the token.
        let (cp, n) = utf8::decode(&seg[i..]);
        if cp < 0 {
            return Err(msg("invalid UTF-8 sequence in string"));
        }
        // A valid sequence re-encodes to the same bytes (C0 80 included).
        out.extend_from_slice(&seg[i..i + n]);
        i += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(t: &[u8]) -> Result<Vec<u8>, String> {
        parse_string(t)
            .map(JsonString::into_bytes)
            .map_err(|m| String::from_utf8(m).unwrap())
    }

    #[test]
    fn plain_ascii_blocks() {
        for len in 0..40 {
            for at in 0..len {
                for bad in [b'\\', 0x80, 0xFF] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    assert!(!is_plain_ascii(&v), "{len} {at} {bad}");
                }
            }
            assert!(is_plain_ascii(&vec![0x7F; len]));
            assert!(is_plain_ascii(&vec![0x5D; len]));
        }
    }

    #[test]
    fn containers_are_exact_size() {
        // Values can live long (the server keeps requests); no scratch capacity rides along.
        let text = br#"{"a": [1, 2, 3], "b": {"c": [4]}, "d": "e"}"#;
        let Some(Value::Object(o)) = crate::json::parse_value(text) else {
            panic!("not an object");
        };
        assert_eq!(o.entries().len(), 3);
        let Some(Value::Array(a)) = o.get("a") else {
            panic!("a")
        };
        assert_eq!(a.capacity(), 3);
        let Some(Value::Object(b)) = o.get("b") else {
            panic!("b")
        };
        let Some(Value::Array(c)) = b.get("c") else {
            panic!("c")
        };
        assert_eq!(c.capacity(), 1);
    }

    #[test]
    fn escapes() {
        assert_eq!(ps(br#""\u0000x""#).unwrap(), b"\xC0\x80x");
        assert_eq!(ps(br#""\u12345""#).unwrap(), "\u{1234}5".as_bytes());
        assert_eq!(ps(br#""\uD834\uDD1E""#).unwrap(), "𝄞".as_bytes());
        assert_eq!(ps(br#"'\'"'"#).unwrap(), b"'\"");
        assert_eq!(
            ps(br#""\u1""#).unwrap_err(),
            r#"\u1" is not a valid Unicode character"#
        );
        assert_eq!(
            ps(br#""\u""#).unwrap_err(),
            r#"\u" is not a valid Unicode character"#
        );
        assert_eq!(
            ps(br#""\uD800x""#).unwrap_err(),
            r#"\uD800 is not a valid Unicode character"#
        );
        assert_eq!(
            ps(br#""\uDBFF\uDFFF""#).unwrap_err(),
            r#"\uDBFF\uDFFF is not a valid Unicode character"#
        );
        assert_eq!(
            ps(br#""\uD800\u0041""#).unwrap_err(),
            r#"\uD800 is not a valid Unicode character"#
        );
        assert_eq!(
            ps(br#""\z""#).unwrap_err(),
            "invalid escape sequence in string"
        );
        assert_eq!(
            ps(b"\"\xC3(\"").unwrap_err(),
            "invalid UTF-8 sequence in string"
        );
    }
}
