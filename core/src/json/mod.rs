//! QEMU 7.2's JSON dialect: lexer, streamer, parser and writer, byte for byte.
//!
//! This is hand-written rather than built on serde_json because QMP's wire behaviour depends on
//! details no general JSON library reproduces: single-quoted strings, the lookahead rule for
//! numbers and keywords, error tokens and the recovery state, two independent brace/bracket
//! counters, QEMU's limits and error texts, modified UTF-8, three number kinds and `%.17g`
//! output, and hash-bucket member order. See `shared/spec/QMP-BEHAVIOR.md` §1.
//!
//! Files: [`stream`] (lexer + streamer, the incremental API), `fast` (its one-pass path for
//! whole plain messages), `parser` (tokens → value), `scan` (word-at-a-time string scans),
//! `utf8` (modified UTF-8), `number` (integer kinds, `%.17g`), [`hash`] (tdb hash, bucket
//! order), [`writer`] (compact/pretty text and wire framing), `text` ([`JsonText`]: a typed
//! serde value written straight to that text), `de` (a serde `Deserializer` over [`Value`]:
//! typed arguments), `exact` (the lossless serde form used by traces),
//! [`value`] (the value model).
//!
//! Documented departures and limits of this module:
//!
//! * A value written and parsed again comes back with its object members in hash-bucket order
//!   and with integral doubles as integers (`1E2` is echoed as `100`), exactly as QEMU echoes
//!   them; the lossless form for traces is the serde one (`exact`).
//! * Interpolation (`%d`, `%s`, ...) is never enabled for QMP, so it is not implemented; `%` is
//!   a stray byte. `premature EOI` cannot happen on a stream but is kept in the parser.
//! * The parser is iterative; the writer, `Clone`, `PartialEq` and `Drop` of [`Value`] recurse
//!   once per nesting level, which `max_nesting` bounds for parsed values. Keep `max_nesting`
//!   near QEMU's 1024 (each level costs a few hundred bytes of native stack).
//!
//! ```
//! use qmp_core::json::{JsonStreamer, JsonLimits, StreamItem, write_message};
//! let mut s = JsonStreamer::new(JsonLimits::default());
//! let input = b"{\"execute\": \"query-status\", \"id\": 1}[}";
//! let n = s.feed(input); // stops right after the byte that completed the first message
//! assert_eq!(n, input.len() - 2);
//! let Some(StreamItem::Value(v)) = s.pop() else { panic!() };
//! let mut out = Vec::new();
//! write_message(&v, false, &mut out);
//! assert_eq!(out, b"{\"execute\": \"query-status\", \"id\": 1}\r\n");
//! s.feed(&input[n..]);
//! let Some(StreamItem::Error(e)) = s.pop() else { panic!() };
//! assert_eq!(e.desc, "JSON parse error, expecting value");
//! ```

mod de;
mod exact;
mod fast;
mod field_names;
pub mod hash;
mod number;
mod parser;
mod scan;
pub mod stream;
mod text;
mod utf8;
pub mod value;
pub mod writer;

pub use de::{from_object, from_value, DeError};
pub use hash::{bucket, bucket_order, tdb_hash};
pub use stream::JsonStreamer;
pub use text::{JsonText, TextError};
pub use value::{JsonString, Object, Value, INLINE_CAPACITY};
pub use writer::{error_reply, to_compact, write_compact, write_message, write_pretty};

/// QEMU's three streamer limits; defaults are QEMU's (64 MiB, 2_097_152 tokens, 1024 nesting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JsonLimits {
    /// Longest single token, and longest summed token text of one message
    /// (`MAX_TOKEN_SIZE`, 64 MiB).
    pub max_token_size: usize,
    /// Most tokens in one message (`MAX_TOKEN_COUNT`, 2 MiB = 2 097 152).
    pub max_token_count: usize,
    /// Deepest `{`/`[` nesting, braces and brackets summed (`MAX_NESTING`, 1024).
    pub max_nesting: usize,
}

impl JsonLimits {
    /// QEMU's `MAX_TOKEN_SIZE`.
    pub const QEMU_MAX_TOKEN_SIZE: usize = 64 << 20;
    /// QEMU's `MAX_TOKEN_COUNT`.
    pub const QEMU_MAX_TOKEN_COUNT: usize = 2 << 20;
    /// QEMU's `MAX_NESTING`.
    pub const QEMU_MAX_NESTING: usize = 1 << 10;
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits {
            max_token_size: Self::QEMU_MAX_TOKEN_SIZE,
            max_token_count: Self::QEMU_MAX_TOKEN_COUNT,
            max_nesting: Self::QEMU_MAX_NESTING,
        }
    }
}

/// Which stage refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// An error token from the lexer (`stray '...'`).
    Lexical,
    /// `JSON token size limit exceeded`.
    TokenSizeLimit,
    /// `JSON token count limit exceeded`.
    TokenCountLimit,
    /// `JSON nesting depth limit exceeded`.
    NestingLimit,
    /// A parser error (`JSON parse error, ...`).
    Parse,
}

/// A message the streamer could not turn into a value.
///
/// `desc` is the exact C-string text QEMU puts in the error reply, e.g.
/// `b"JSON parse error, stray '\xff'"` (raw offending bytes included; NUL-truncated like C; the
/// writer turns invalid UTF-8 into `\uFFFD`) or `b"JSON nesting depth limit exceeded"`.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonError {
    /// Which stage refused the message.
    pub kind: JsonErrorKind,
    /// QEMU's error text.
    pub desc: JsonString,
}

/// One complete message from the streamer.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamItem {
    /// A parsed value.
    Value(Value),
    /// A lexical, limit or parse error.
    Error(JsonError),
}

/// Feed everything, collect every message (no end-of-input flush, as on a live connection: a
/// trailing `null` without a following byte stays pending).
pub fn parse_stream(input: &[u8]) -> Vec<StreamItem> {
    parse_stream_with(input, JsonLimits::default())
}

/// [`parse_stream`] with explicit limits.
pub fn parse_stream_with(input: &[u8], limits: JsonLimits) -> Vec<StreamItem> {
    let mut s = JsonStreamer::new(limits);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = s.feed(rest);
        rest = &rest[n..];
        while let Some(item) = s.pop() {
            out.push(item);
        }
    }
    out
}

/// Parse one complete value from `text`, as if a space followed it (so a trailing number or
/// keyword ends). `None` unless the text holds exactly one value and nothing else.
pub fn parse_value(text: &[u8]) -> Option<Value> {
    let mut s = JsonStreamer::default();
    let mut items = Vec::new();
    let mut rest = text;
    loop {
        let n = s.feed(rest);
        rest = &rest[n..];
        items.extend(std::iter::from_fn(|| s.pop()));
        if rest.is_empty() {
            break;
        }
    }
    s.feed(b" ");
    items.extend(std::iter::from_fn(|| s.pop()));
    if items.len() != 1 || !s.is_idle() {
        return None;
    }
    match items.pop() {
        Some(StreamItem::Value(v)) => Some(v),
        _ => None,
    }
}
