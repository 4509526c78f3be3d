//! The streamer's fast path: a whole message that is already in the input buffer is framed and
//! parsed in one pass over its bytes, with no token list.
//!
//! It makes no decision of its own. It accepts only messages on which QEMU's lexer, streamer and
//! parser cannot take an unusual turn — an object or array of double-quoted strings, numbers,
//! `true`/`false`/`null`, JSON whitespace, every limit out of reach, no duplicate key — and
//! builds exactly the value the token path builds, with the same helpers (`parse_string`,
//! `integer_value`, `float_value`, the parser's container scratch). On anything else (an error
//! of any kind, single quotes, a message that does not end within the buffer, a big object) it
//! gives up having changed nothing visible, and the token path in `stream` takes the message
//! byte by byte from the same position. Every byte is looked at by at most one failed attempt:
//! the streamer tries only at the start of a message, and after a failed attempt the token path
//! owns the message until it ends.
//!
//! Why it is exact for what it accepts: for a balanced object or array the streamer's two
//! counters reach zero together exactly at the closing bracket that ends the value, so the
//! message boundary is the grammatical end; whitespace between tokens is skipped by the lexer;
//! numbers and keywords inside a container always end at a byte of the same message; and the
//! limits are checked against the message's length, which bounds both its token count and its
//! summed token size. The equivalence is tested by feeding the same bytes whole (fast path) and
//! one byte at a time (token path only): `tests/json_props.rs`, the transcript suite, and the
//! `json_stream` fuzz target.
//!
//! Where the time goes, and why the code looks the way it does (issue 2, the 300-byte
//! `blockdev-add` object): a short plain string (a key, a name) is scanned a word at a time and
//! kept as those words, with its key fingerprint, until it is written into its member slot;
//! members are written in place into placeholder slots of the scratch and moved out at the
//! closing brace. A string or member built on the stack in narrow stores and then copied with
//! wide loads (what `Vec::push` of a fresh value compiles to) stalls the CPU's store forwarding,
//! and those stalls cost more than the parse itself. Duplicate keys are found by comparing
//! fingerprints, and keys only where two agree.
//!
//! Memory: the scratch keeps at most `FAST_MAX_DEPTH * LINEAR_DUP_SCAN` member slots (the most
//! members the open objects of one accepted message can hold) between messages.

use super::number::{float_value, integer_value};
use super::parser::{self, take_tail, Frame, Scratch, LINEAR_DUP_SCAN};
use super::scan::{special_bits, string_run_end};
use super::value::{JsonString, Object, Value, INLINE_CAPACITY};
use super::JsonLimits;

/// Deepest nesting the fast path follows; deeper messages take the token path (which has the
/// same iterative parser and the limit check). Real QMP requests nest a handful of levels.
/// With `LINEAR_DUP_SCAN` it bounds the scratch's member slots.
const FAST_MAX_DEPTH: usize = 64;

/// Parse the message that starts at `input[0]` (an opening `{` or `[`) if it is complete within
/// `input` and plain. Returns the value and the number of bytes it spans, closing bracket
/// included; `None` leaves everything as it was (the scratch is emptied either way).
pub(crate) fn parse_message(
    input: &[u8],
    limits: &JsonLimits,
    scratch: &mut Scratch,
) -> Option<(Value, usize)> {
    // A message of n bytes has at most n tokens whose summed size is at most n: within this
    // window no limit can be reached (the size check is `sum + 1 > max`).
    let window = input
        .len()
        .min(limits.max_token_size.saturating_sub(1))
        .min(limits.max_token_count);
    let max_depth = limits.max_nesting.min(FAST_MAX_DEPTH);
    let result = parse_window(&input[..window], max_depth, scratch);
    scratch.clear();
    result
}

/// Index of the first byte at or after `pos` that is not JSON whitespace (as the lexer's start
/// state skips it).
#[inline(always)]
fn skip_ws(s: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\r' | b'\n') = s.get(pos) {
        pos += 1;
    }
    pos
}

/// Where a run of members or elements stopped.
enum Next {
    /// The container closed; the position after its closing bracket.
    Closed(usize),
    /// The value of the member or element just begun is a container opening at this position
    /// (an object member is parked with a `Null` placeholder value).
    Open(usize),
}

fn parse_window(s: &[u8], max_depth: usize, sc: &mut Scratch) -> Option<(Value, usize)> {
    // `pos` is at an opening bracket whenever the outer loop starts over (the caller's first
    // byte, then a position `Next::Open` reported).
    let mut pos = 0usize;
    'open: loop {
        if sc.stack.len() >= max_depth {
            return None;
        }
        // The container's frame (what it has collected so far) and where its first run stopped.
        let first = skip_ws(s, pos + 1);
        let (mut frame, mut next) = if *s.get(pos)? == b'{' {
            let start = sc.fingerprints.len();
            let next = object_members(s, first, start, true, sc)?;
            (
                Frame::ObjectValue {
                    start,
                    indexed: false,
                },
                next,
            )
        } else {
            let start = sc.items.len();
            (Frame::Array { start }, array_elements(s, first, true, sc)?)
        };
        loop {
            match next {
                Next::Open(at) => {
                    sc.stack.push(frame);
                    pos = at;
                    continue 'open;
                }
                Next::Closed(end) => {
                    // Hand the finished container to its parent and go on with the parent.
                    let v = finish(sc, &frame)?;
                    let Some(parent) = sc.stack.pop() else {
                        return Some((v, end));
                    };
                    next = resume(s, end, &parent, v, sc)?;
                    frame = parent;
                }
            }
        }
    }
}

/// The container whose frame is `frame`, taken out of the scratch.
#[inline(always)]
fn finish(sc: &mut Scratch, frame: &Frame) -> Option<Value> {
    match *frame {
        Frame::ObjectValue { start, .. } => {
            let used = sc.fingerprints.len();
            sc.fingerprints.truncate(start);
            // Moved out one by one, leaving placeholders for the next members.
            let entries = sc
                .slots
                .get_mut(start..used)?
                .iter_mut()
                .map(std::mem::take);
            Some(Value::Object(Object::from_unique_entries(
                entries.collect(),
            )))
        }
        Frame::Array { start } => Some(Value::Array(take_tail(&mut sc.items, start))),
        Frame::ObjectKey { .. } => None, // never pushed here
    }
}

/// Put the finished value `v` into the container of `frame` (as the value of its parked member,
/// or as its next element) and run on from `pos`, just after `v`.
#[inline(always)]
fn resume(s: &[u8], pos: usize, frame: &Frame, v: Value, sc: &mut Scratch) -> Option<Next> {
    match *frame {
        Frame::ObjectValue { start, .. } => {
            let (_, slot) = sc.slots.get_mut(sc.fingerprints.len().checked_sub(1)?)?;
            // The placeholder is a `Null`: nothing to drop, so no drop call.
            std::mem::forget(std::mem::replace(slot, v));
            object_members(s, pos, start, false, sc)
        }
        Frame::Array { .. } => {
            sc.items.push(v);
            array_elements(s, pos, false, sc)
        }
        Frame::ObjectKey { .. } => None, // never pushed here
    }
}

/// Members of the object whose earlier members are `sc.slots[start..]`, from `pos`: at the
/// first key or the closing brace (`at_key`, right after `{`) or after a member (a separator
/// follows). Scalar values are parsed here; a container value stops the run with its key
/// parked.
#[inline]
fn object_members(
    s: &[u8],
    mut pos: usize,
    start: usize,
    at_key: bool,
    sc: &mut Scratch,
) -> Option<Next> {
    if at_key {
        if *s.get(pos)? == b'}' {
            return Some(Next::Closed(pos + 1));
        }
    } else {
        match separator(s, pos, b'}')? {
            Ok(next) => pos = next,
            Err(end) => return Some(Next::Closed(end)),
        }
    }
    loop {
        // `pos` is at the key's first byte; `skip_ws` has run unless the byte was past a space.
        if *s.get(pos)? != b'"' {
            return None;
        }
        // The member's slot exists before its parts are built: no call between building them
        // and storing them, so they go from registers straight into the slot.
        if sc.fingerprints.len() >= sc.slots.len() {
            more_slots(&mut sc.slots);
        }
        let (key, fp) = key(s, &mut pos)?;
        pos = colon(s, pos)?;
        // Big objects need the token path's key index; small ones are checked here with the
        // key fingerprints, comparing keys only where those agree. (QEMU checks after the
        // value; any error here means the token path decides, so the order does not matter.)
        let earlier = sc.fingerprints.get(start..)?;
        if earlier.len() >= LINEAR_DUP_SCAN || (earlier.contains(&fp) && duplicate(sc, start, &key))
        {
            return None;
        }
        sc.fingerprints.push(fp);
        let c = *s.get(pos)?;
        // The common value, a string; like the key, it is built right where it is stored.
        if c == b'"' {
            // Each arm stores its own string: a value merged from both would be built on the
            // stack and copied.
            match short_string(s, pos) {
                Ok((len, words)) => {
                    pos += len + 2;
                    let v = JsonString::inline_from_words(words, len);
                    put_member(sc, key, Value::String(v))?;
                }
                Err(plain_to) => {
                    let v = string_general(s, &mut pos, plain_to)?;
                    put_member(sc, key, Value::String(v))?;
                }
            }
        } else if c == b'{' || c == b'[' {
            put_member(sc, key, Value::Null)?;
            return Some(Next::Open(pos));
        } else {
            let v = scalar(s, c, &mut pos)?;
            put_member(sc, key, v)?;
        }
        match separator(s, pos, b'}')? {
            Ok(next) => pos = next,
            Err(end) => return Some(Next::Closed(end)),
        }
    }
}

/// True when `key` is among the keys of `sc.slots[start..]` (their fingerprints matched).
#[cold]
#[inline(never)]
fn duplicate(sc: &Scratch, start: usize, key: &Pending) -> bool {
    let key = match key {
        Pending::Words(len, words) => &JsonString::inline_from_words(*words, *len),
        Pending::Built(k) => k,
    };
    let used = sc.fingerprints.len();
    sc.slots[start..used].iter().any(|(k, _)| k == key)
}

/// Store the member whose fingerprint was pushed last into its slot, in parts and straight
/// into the slot: a member built on the stack and copied in whole (as `Vec::push` does) is
/// read back with wider loads than it was written with, which stalls the CPU's store
/// forwarding.
#[inline(always)]
fn put_member(sc: &mut Scratch, key: Pending, v: Value) -> Option<()> {
    let i = sc.fingerprints.len().checked_sub(1)?;
    let (k, slot) = sc.slots.get_mut(i)?;
    // The slot holds placeholders, which own nothing: no drop call.
    std::mem::forget(std::mem::replace(k, key.build()));
    std::mem::forget(std::mem::replace(slot, v));
    Some(())
}

/// One more placeholder slot (the scratch keeps them between messages).
#[cold]
#[inline(never)]
fn more_slots(slots: &mut Vec<(JsonString, Value)>) {
    slots.push(Default::default());
}

/// A string scanned but not stored yet. A short one stays as words (in registers) until it is
/// built in its final place: a string built on the stack by narrow stores and moved on by wide
/// loads stalls the CPU's store forwarding, which costs more than the rest of its parse.
enum Pending {
    /// Length and bytes, as [`JsonString::inline_from_words`] takes them.
    Words(usize, [u64; 3]),
    /// A string from the general path.
    Built(JsonString),
}

impl Pending {
    #[inline(always)]
    fn build(self) -> JsonString {
        match self {
            Pending::Words(len, words) => JsonString::inline_from_words(words, len),
            Pending::Built(s) => s,
        }
    }
}

/// Elements of an array (pushed to `sc.items`), from `pos`: at the first element or the
/// closing bracket (`at_value`, right after `[`) or after one (a separator follows).
#[inline]
fn array_elements(s: &[u8], mut pos: usize, at_value: bool, sc: &mut Scratch) -> Option<Next> {
    if at_value {
        if *s.get(pos)? == b']' {
            return Some(Next::Closed(pos + 1));
        }
    } else {
        match separator(s, pos, b']')? {
            Ok(next) => pos = next,
            Err(end) => return Some(Next::Closed(end)),
        }
    }
    loop {
        let c = *s.get(pos)?;
        if c == b'{' || c == b'[' {
            return Some(Next::Open(pos));
        }
        let v = scalar(s, c, &mut pos)?;
        sc.items.push(v);
        match separator(s, pos, b']')? {
            Ok(next) => pos = next,
            Err(end) => return Some(Next::Closed(end)),
        }
    }
}

/// `pos` moved past whitespace, cheaply in the common cases: no whitespace, or one space.
#[inline(always)]
fn skip_ws_short(s: &[u8], mut pos: usize) -> usize {
    if s.get(pos) == Some(&b' ') {
        pos += 1;
    }
    // Every whitespace byte is at most a space; anything else above it ends the run at once.
    match s.get(pos) {
        Some(&c) if c <= b' ' => skip_ws(s, pos),
        _ => pos,
    }
}

/// After a key at `pos`: the colon and the whitespace around it; the position of the value.
#[inline(always)]
fn colon(s: &[u8], mut pos: usize) -> Option<usize> {
    if s.get(pos) != Some(&b':') {
        pos = skip_ws(s, pos);
        if *s.get(pos)? != b':' {
            return None;
        }
    }
    Some(skip_ws_short(s, pos + 1))
}

/// What follows a member or element at `pos`: a comma (`Ok` with the position of the next
/// one, whitespace skipped) or the container's closing bracket (`Err` with the position after
/// it).
#[inline(always)]
fn separator(s: &[u8], pos: usize, close: u8) -> Option<Result<usize, usize>> {
    let pos = skip_ws_short(s, pos);
    match *s.get(pos)? {
        b',' => Some(Ok(skip_ws_short(s, pos + 1))),
        c if c == close => Some(Err(pos + 1)),
        _ => None,
    }
}

/// The string, number or keyword at `s[*pos]`, whose first byte is `c`; `*pos` moves past it.
#[inline(always)]
fn scalar(s: &[u8], c: u8, pos: &mut usize) -> Option<Value> {
    let at = *pos;
    match c {
        b'"' => string(s, pos).map(Value::String),
        b'-' | b'0'..=b'9' => {
            let (end, float) = number_end(s, at)?;
            let text = &s[at..end];
            *pos = end;
            Some(if float {
                Value::Double(float_value(text))
            } else {
                integer_value(text)
            })
        }
        b't' | b'f' | b'n' => {
            let (v, len) = match s.get(at..at + 4)? {
                b"true" => (Value::Bool(true), 4),
                b"null" => (Value::Null, 4),
                b"fals" if s.get(at + 4) == Some(&b'e') => (Value::Bool(false), 5),
                _ => return None,
            };
            // The byte after it is not looked at here: a letter would extend the keyword, but
            // no separator or bracket is a letter, so the caller refuses it anyway.
            *pos = at + len;
            Some(v)
        }
        _ => None,
    }
}

/// The double-quoted string at `s[*pos]`; `*pos` moves past its closing quote.
#[inline(always)]
fn string(s: &[u8], pos: &mut usize) -> Option<JsonString> {
    match short_string(s, *pos) {
        Ok((len, words)) => {
            *pos += len + 2;
            Some(JsonString::inline_from_words(words, len))
        }
        Err(plain_to) => string_general(s, pos, plain_to),
    }
}

/// [`string`] for a key, not built yet, with its fingerprint (`JsonString::fingerprint`),
/// taken from the words already in registers when the key is short.
#[inline(always)]
fn key(s: &[u8], pos: &mut usize) -> Option<(Pending, u64)> {
    match short_string(s, *pos) {
        Ok((len, words)) => {
            *pos += len + 2;
            Some((
                Pending::Words(len, words),
                JsonString::fingerprint_words(words, len),
            ))
        }
        Err(plain_to) => {
            let k = string_general(s, pos, plain_to)?;
            let fp = k.fingerprint();
            Some((Pending::Built(k), fp))
        }
    }
}

/// The common string (a key, a name) at `s[at]`: plain ASCII, short enough to be stored inline.
/// It is scanned a word at a time, and built from the words scanned: `Ok` with its length and
/// its bytes as three little-endian words, zero past the length; else `Err` with the end of the
/// plain bytes found, where the general scan goes on.
#[inline(always)]
fn short_string(s: &[u8], at: usize) -> Result<(usize, [u64; 3]), usize> {
    let Some(span) = s.get(at + 1..at + 1 + SHORT_SPAN) else {
        return Err(at + 1);
    };
    let word = |k: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&span[8 * k..8 * k + 8]);
        u64::from_le_bytes(w)
    };
    // The first word holding a byte that is not plain ends the scan; the bytes from that one
    // on are cleared (a string stores zeros past its length).
    let below = |hits: u64| (1u64 << (hits.trailing_zeros() & 56)) - 1;
    let w0 = word(0);
    let h0 = special_bits::<false>(w0);
    let (len, words) = if h0 != 0 {
        (at_bit(h0), [w0 & below(h0), 0, 0])
    } else {
        let w1 = word(1);
        let h1 = special_bits::<false>(w1);
        if h1 != 0 {
            (8 + at_bit(h1), [w0, w1 & below(h1), 0])
        } else {
            let w2 = word(2);
            let h2 = special_bits::<false>(w2);
            // No hit at all: 24 plain bytes, longer than any inline string.
            (16 + at_bit(h2), [w0, w1, w2 & below(h2)])
        }
    };
    if len <= INLINE_CAPACITY && span[len] == b'"' {
        Ok((len, words))
    } else {
        Err(at + 1 + len)
    }
}

/// Index of the byte of the lowest flag of `special_bits` (8 when there is none).
#[inline(always)]
fn at_bit(hits: u64) -> usize {
    (hits.trailing_zeros() / 8) as usize
}

/// Bytes a short string's body is scanned in: three words, enough for an inline string
/// ([`INLINE_CAPACITY`]) and its closing quote.
const SHORT_SPAN: usize = 24;

/// [`string`] for the rest: long, near the end of the window, escaped or not ASCII. The bytes
/// of `s[*pos + 1..plain_to]` are known to be plain.
#[inline(never)]
fn string_general(s: &[u8], pos: &mut usize, plain_to: usize) -> Option<JsonString> {
    let at = *pos;
    let (end, plain) = string_end(s, plain_to)?;
    *pos = end;
    if plain {
        Some(JsonString::from_bytes(&s[at + 1..end - 1]))
    } else {
        // Escapes and non-ASCII bytes need the parser's decoding and checks.
        parser::parse_string(&s[at..end]).ok()
    }
}

/// End (after the closing quote) of the double-quoted string token whose bytes before `from`
/// (the opening quote and some of the body) are plain, by the lexer's rules (bytes
/// `0x20..=0xFD`; a backslash takes any such byte with it), and whether the body is plain:
/// ASCII without escapes, stored as it is. `None` where the lexer would raise an error or the
/// string does not end within `s`.
#[inline(always)]
fn string_end(s: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut i = from;
    let mut plain = true;
    loop {
        i = string_run_end::<false>(s, i);
        match *s.get(i)? {
            b'"' => return Some((i + 1, plain)),
            b'\\' if matches!(s.get(i + 1), Some(0x20..=0xFD)) => i += 2,
            0x80..=0xFD => i += 1,
            _ => return None,
        }
        plain = false;
    }
}

/// End of the number token at `s[pos]` and whether it is a float, by the lexer's number states.
/// `None` where the lexer would raise an error (`01`, `-x`, `1.`, `1e`) or the token reaches the
/// end of `s` (its end would be decided by a byte not yet here).
#[inline]
fn number_end(s: &[u8], pos: usize) -> Option<(usize, bool)> {
    let digits = |i: usize| i + s[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = pos;
    if s[i] == b'-' {
        i += 1;
    }
    // QEMU's zero state knows only `.`: `0e5` is the integer 0 followed by a keyword.
    let zero = *s.get(i)? == b'0';
    match *s.get(i)? {
        b'0' => {
            i += 1;
            if s.get(i)?.is_ascii_digit() {
                return None;
            }
        }
        b'1'..=b'9' => i = digits(i + 1),
        _ => return None,
    }
    let mut float = false;
    if *s.get(i)? == b'.' {
        let j = digits(i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
        float = true;
    }
    if (float || !zero) && matches!(*s.get(i)?, b'e' | b'E') {
        i += 1;
        if let b'+' | b'-' = *s.get(i)? {
            i += 1;
        }
        let j = digits(i);
        if j == i {
            return None;
        }
        i = j;
        float = true;
    }
    // The byte that ends the token must be here (it is lexed again from the start state).
    s.get(i)?;
    Some((i, float))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(text: &[u8]) -> Option<(Value, usize)> {
        parse_message(text, &JsonLimits::default(), &mut Scratch::default())
    }

    #[test]
    fn takes_plain_messages_and_reports_their_length() {
        let text = br#"{"execute": "query-status", "arguments": {"a": [1, -2.5e3, true, null, "\u00e9"]}, "id": 18446744073709551615} rest"#;
        let (v, n) = fast(text).expect("plain message");
        assert_eq!(n, text.len() - 5);
        let Value::Object(o) = v else { panic!() };
        assert_eq!(o.get("id"), Some(&Value::UInt(u64::MAX)));
        let Some(Value::Object(args)) = o.get("arguments") else {
            panic!()
        };
        let Some(Value::Array(a)) = args.get("a") else {
            panic!()
        };
        assert_eq!(a[1], Value::Double(-2500.0));
        assert_eq!(a[4], Value::string("é"));
    }

    #[test]
    fn gives_up_where_the_token_path_must_decide() {
        for text in [
            &b"{\"a\": 1"[..],       // incomplete
            b"{'a': 1}",             // single quotes
            b"{\"a\": 01}",          // lexical error
            b"{\"a\": 0e5}",         // QEMU: 0, then the keyword e5
            b"{\"a\": 1.}",          // lexical error
            b"{\"a\": tru}",         // invalid keyword
            b"{\"a\": 1, \"a\": 2}", // duplicate key
            b"{\"a\" 1}",            // missing colon
            b"{1: 1}",               // key not a string
            b"[1 2]",                // missing separator
            b"{\"a\": \"\x01\"}",    // control byte in a string
            b"{\"a\": \"\xC3(\"}",   // invalid UTF-8
            b"{\"a\": \"\\q\"}",     // invalid escape
            b"{\"a\": 1,}",          // trailing comma
            b"{\"a\": [1}]",         // mismatched brackets
            b"{\"a\": \"x\\",        // escape at the end of the buffer
        ] {
            assert!(fast(text).is_none(), "{:?}", String::from_utf8_lossy(text));
        }
        // The closing bracket may be the last byte; what follows is the next message's.
        assert_eq!(fast(b"{\"a\": 1}").map(|(_, n)| n), Some(8));
        assert_eq!(fast(b"[1]\x00").map(|(_, n)| n), Some(3));
    }

    #[test]
    fn limits_keep_messages_off_the_fast_path() {
        let mut sc = Scratch::default();
        let text = b"{\"a\": [[1]]}";
        let n = text.len();
        let with = |max_token_size, max_token_count, max_nesting| JsonLimits {
            max_token_size,
            max_token_count,
            max_nesting,
        };
        let accepts = |l: JsonLimits, sc: &mut Scratch| parse_message(text, &l, sc).is_some();
        assert!(accepts(with(n + 1, n, 3), &mut sc));
        assert!(!accepts(with(n + 1, n, 2), &mut sc));
        assert!(!accepts(with(n + 1, n - 1, 3), &mut sc));
        assert!(!accepts(with(n, n, 3), &mut sc));
        let deep = [vec![b'['; 65], vec![b']'; 65]].concat();
        assert!(fast(&deep).is_none());
        assert!(fast(&deep[1..deep.len() - 1]).is_some());
    }
}
