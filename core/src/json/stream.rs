//! The incremental front end: QEMU's lexer (`json-lexer.c`) and streamer (`json-streamer.c`)
//! fused into one state machine that eats bytes and queues complete messages (values or errors).
//!
//! Semantics are QEMU's byte-at-a-time ones (spec §1.3–1.4): lookahead tokens are completed by
//! the next byte, which is then lexed again from the start state; error tokens include the
//! offending byte and switch to the recovery state; braces and brackets are two independent
//! counters; the three limits are checked before a token is stored; a token longer than the
//! size limit is cut and the lexer restarts in the middle of it.
//!
//! Speed without changing those semantics: a message that starts in the start state and ends
//! within the bytes of one `feed` call goes through `fast` (one pass, no tokens), which hands
//! anything unusual back to the token path here; on the token path the bytes of a string are
//! scanned a block at a time (the common case: nothing but plain bytes), token text is kept as
//! spans into one message buffer reused across messages, and single-character tokens carry no
//! text at all.

use std::collections::VecDeque;

use super::fast;
use super::parser::{self, Tok, TokKind};
use super::scan::block_run_end;
use super::value::JsonString;
use super::{JsonError, JsonErrorKind, JsonLimits, StreamItem};

/// Lexer states (`enum json_lexer_state`, without interpolation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    Start,
    Recovery,
    DqString,
    DqEscape,
    SqString,
    SqEscape,
    Zero,
    Sign,
    Digits,
    Mantissa,
    MantissaDigits,
    ExpE,
    ExpSign,
    ExpDigits,
    Keyword,
}

/// Most messages one byte can complete: a lookahead token ending a message, the byte itself as
/// a one-token message or an error, and a token-size cut. `feed` stops after such a byte, so
/// the ready queue grows by at most this much per `feed` call.
pub const MAX_ITEMS_PER_BYTE: usize = 3;

/// The parser's message part is formatted into a 1024-byte C buffer (`parse_error`).
const PARSE_MESSAGE_MAX: usize = 1023;

/// Incremental lexer + streamer + parser with QEMU's byte-at-a-time semantics.
///
/// Memory is bounded by the limits: the pending message holds at most `max_token_size` bytes of
/// stored token text plus one partial token of at most `max_token_size + 1` bytes, and at most
/// `max_token_count` tokens. Ready messages stay queued until `pop`; see [`MAX_ITEMS_PER_BYTE`].
#[derive(Clone, Debug)]
pub struct JsonStreamer {
    limits: JsonLimits,
    lex: Lex,
    /// Text of stored tokens, then the partial token from `cur` on.
    msg: Vec<u8>,
    /// Start of the partial token in `msg`.
    cur: usize,
    /// Stored tokens of the pending message.
    tokens: Vec<Tok>,
    braces: i64,
    brackets: i64,
    /// Summed length of the stored tokens (`parser->token_size`).
    token_size: usize,
    ready: VecDeque<StreamItem>,
    /// Set when the current byte completed a message.
    completed: bool,
    /// The parser's stack, kept between messages.
    scratch: parser::Scratch,
}

impl Default for JsonStreamer {
    fn default() -> Self {
        JsonStreamer::new(JsonLimits::default())
    }
}

impl JsonStreamer {
    /// A streamer in QEMU's initial state.
    pub fn new(limits: JsonLimits) -> Self {
        JsonStreamer {
            limits,
            lex: Lex::Start,
            msg: Vec::new(),
            cur: 0,
            tokens: Vec::new(),
            braces: 0,
            brackets: 0,
            token_size: 0,
            ready: VecDeque::new(),
            completed: false,
            scratch: parser::Scratch::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> JsonLimits {
        self.limits
    }

    /// Consume bytes from `input` as QEMU would one at a time, but stop right after the first
    /// byte whose processing completed one or more messages (so the caller can act on them,
    /// e.g. suspend, before any further byte is looked at), or at the end of input.
    /// Returns the number of bytes consumed. Completed messages are queued for [`pop`].
    ///
    /// One byte can complete two messages (`1}`: the `}` ends the number, then is itself a
    /// one-token message). A byte that ends a lookahead token is consumed, as in QEMU.
    ///
    /// [`pop`]: JsonStreamer::pop
    pub fn feed(&mut self, input: &[u8]) -> usize {
        self.completed = false;
        let mut i = 0;
        while i < input.len() {
            match self.lex {
                Lex::Start => {
                    // The start state's common bytes, without the general state dispatch.
                    let b = input[i];
                    i += 1;
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => continue,
                        // A new message whose bytes are all here: the fast path frames and
                        // parses it in one pass, or leaves it to the token path (see `fast`).
                        b'{' | b'[' if self.tokens.is_empty() => {
                            match fast::parse_message(
                                &input[i - 1..],
                                &self.limits,
                                &mut self.scratch,
                            ) {
                                Some((v, len)) => {
                                    i += len - 1;
                                    self.emit(StreamItem::Value(v));
                                }
                                None if b == b'{' => self.single(TokKind::LCurly),
                                None => self.single(TokKind::LSquare),
                            }
                        }
                        b'{' => self.single(TokKind::LCurly),
                        b'}' => self.single(TokKind::RCurly),
                        b'[' => self.single(TokKind::LSquare),
                        b']' => self.single(TokKind::RSquare),
                        b':' => self.single(TokKind::Colon),
                        b',' => self.single(TokKind::Comma),
                        // A string usually ends within the same input: scan it at once.
                        // (With a zero size limit the quote alone is too long: `step`.)
                        b'"' if self.limits.max_token_size > 0 => {
                            self.begin(b, Lex::DqString);
                            i = self.string_run(input, i, b'"');
                        }
                        _ => self.step(b),
                    }
                }
                Lex::DqString | Lex::SqString => {
                    let quote = if self.lex == Lex::DqString {
                        b'"'
                    } else {
                        b'\''
                    };
                    i = self.string_run(input, i, quote);
                    // Still open with input left: the byte there escapes or ends the string
                    // with an error, or crosses the size limit; `step` decides.
                    if self.lex != Lex::Start && i < input.len() {
                        let b = input[i];
                        i += 1;
                        self.step(b);
                    }
                }
                Lex::Digits | Lex::Keyword => {
                    // The run of bytes that only extend the token, up to the size limit (the
                    // byte crossing it goes through `step` and its check, as do the byte
                    // ending the token and `.`/`e` of a number).
                    let room = self
                        .limits
                        .max_token_size
                        .saturating_sub(self.msg.len() - self.cur);
                    let end = input.len().min(i.saturating_add(room));
                    let span = &input[i..end];
                    // Two monomorphic scans, not a function pointer: no call per byte.
                    let run = if self.lex == Lex::Digits {
                        span.iter().position(|c| !c.is_ascii_digit())
                    } else {
                        span.iter().position(|c| !c.is_ascii_lowercase())
                    }
                    .unwrap_or(span.len());
                    self.msg.extend_from_slice(&input[i..i + run]);
                    i += run;
                    if i < input.len() {
                        let b = input[i];
                        i += 1;
                        self.step(b);
                    }
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    self.step(b);
                }
            }
            if self.completed {
                break;
            }
        }
        i
    }

    /// In a string at `input[i..]`: copy the run of plain bytes and, when the closing quote
    /// follows within the size limit, finish the token. Returns the position after what was
    /// consumed.
    #[inline(always)]
    fn string_run(&mut self, input: &[u8], mut i: usize, quote: u8) -> usize {
        // Stop the bulk copy where the token would exceed the size limit, so the byte that
        // crosses it goes through `step` and its check.
        let room = self
            .limits
            .max_token_size
            .saturating_sub(self.msg.len() - self.cur);
        let end = input.len().min(i.saturating_add(room));
        let run = plain_run(&input[i..end], quote);
        self.msg.extend_from_slice(&input[i..i + run]);
        i += run;
        // The usual next byte is the closing quote: finish the token right here.
        if i < input.len()
            && input[i] == quote
            && self.msg.len() - self.cur < self.limits.max_token_size
        {
            i += 1;
            self.msg.push(quote);
            self.lex = Lex::Start;
            self.text_token(TokKind::String);
        }
        i
    }

    /// Next completed message, in order.
    pub fn pop(&mut self) -> Option<StreamItem> {
        self.ready.pop_front()
    }

    /// True when a message is waiting in `pop`.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Forget all partial state and ready messages (QEMU resets the parser on disconnect).
    pub fn reset(&mut self) {
        self.lex = Lex::Start;
        self.discard();
        self.ready.clear();
    }

    /// Bytes currently held for an incomplete message: token text plus per-token bookkeeping.
    pub fn buffered_bytes(&self) -> usize {
        self.msg.len() + self.tokens.len() * std::mem::size_of::<Tok>()
    }

    /// True when nothing is pending: start state, no stored tokens.
    pub(crate) fn is_idle(&self) -> bool {
        self.lex == Lex::Start && self.tokens.is_empty()
    }

    /// Drop the pending message (tokens, counters, partial token).
    fn discard(&mut self) {
        self.msg.clear();
        self.cur = 0;
        self.tokens.clear();
        self.braces = 0;
        self.brackets = 0;
        self.token_size = 0;
    }

    fn emit(&mut self, item: StreamItem) {
        self.ready.push_back(item);
        self.completed = true;
    }

    #[cold]
    fn emit_error(&mut self, kind: JsonErrorKind, desc: Vec<u8>) {
        self.discard();
        self.emit(StreamItem::Error(JsonError {
            kind,
            desc: JsonString::from(desc),
        }));
    }

    /// `json_lexer_feed_char` for one byte.
    #[inline(always)]
    fn step(&mut self, b: u8) {
        loop {
            match self.lex {
                Lex::Start => {
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b'{' => self.single(TokKind::LCurly),
                        b'}' => self.single(TokKind::RCurly),
                        b'[' => self.single(TokKind::LSquare),
                        b']' => self.single(TokKind::RSquare),
                        b':' => self.single(TokKind::Colon),
                        b',' => self.single(TokKind::Comma),
                        b'"' => self.begin(b, Lex::DqString),
                        b'\'' => self.begin(b, Lex::SqString),
                        b'0' => self.begin(b, Lex::Zero),
                        b'1'..=b'9' => self.begin(b, Lex::Digits),
                        b'-' => self.begin(b, Lex::Sign),
                        b'a'..=b'z' => self.begin(b, Lex::Keyword),
                        _ => self.lex_error(b),
                    }
                    break;
                }
                Lex::Recovery => {
                    let resync = matches!(b, 0..=0x08 | 0x0A..=0x1F | 0xFE | 0xFF)
                        || matches!(b, b'[' | b']' | b'{' | b'}' | b':' | b',');
                    if resync {
                        self.lex = Lex::Start;
                        continue;
                    }
                    break;
                }
                Lex::DqString | Lex::SqString => {
                    let quote = if self.lex == Lex::DqString {
                        b'"'
                    } else {
                        b'\''
                    };
                    match b {
                        _ if b == quote => {
                            self.msg.push(b);
                            self.lex = Lex::Start;
                            self.text_token(TokKind::String);
                        }
                        b'\\' => {
                            self.msg.push(b);
                            self.lex = if quote == b'"' {
                                Lex::DqEscape
                            } else {
                                Lex::SqEscape
                            };
                        }
                        0x20..=0xFD => self.msg.push(b),
                        _ => self.lex_error(b),
                    }
                    break;
                }
                Lex::DqEscape | Lex::SqEscape => {
                    if (0x20..=0xFD).contains(&b) {
                        self.msg.push(b);
                        self.lex = if self.lex == Lex::DqEscape {
                            Lex::DqString
                        } else {
                            Lex::SqString
                        };
                    } else {
                        self.lex_error(b);
                    }
                    break;
                }
                Lex::Zero => match b {
                    b'0'..=b'9' => {
                        self.lex_error(b);
                        break;
                    }
                    b'.' => {
                        self.advance(b, Lex::Mantissa);
                        break;
                    }
                    _ => self.lookahead_token(TokKind::Integer),
                },
                Lex::Sign => {
                    match b {
                        b'0' => self.advance(b, Lex::Zero),
                        b'1'..=b'9' => self.advance(b, Lex::Digits),
                        _ => self.lex_error(b),
                    }
                    break;
                }
                Lex::Digits => match b {
                    b'0'..=b'9' => {
                        self.msg.push(b);
                        break;
                    }
                    b'e' | b'E' => {
                        self.advance(b, Lex::ExpE);
                        break;
                    }
                    b'.' => {
                        self.advance(b, Lex::Mantissa);
                        break;
                    }
                    _ => self.lookahead_token(TokKind::Integer),
                },
                Lex::Mantissa => {
                    match b {
                        b'0'..=b'9' => self.advance(b, Lex::MantissaDigits),
                        _ => self.lex_error(b),
                    }
                    break;
                }
                Lex::MantissaDigits => match b {
                    b'0'..=b'9' => {
                        self.msg.push(b);
                        break;
                    }
                    b'e' | b'E' => {
                        self.advance(b, Lex::ExpE);
                        break;
                    }
                    _ => self.lookahead_token(TokKind::Float),
                },
                Lex::ExpE => {
                    match b {
                        b'+' | b'-' => self.advance(b, Lex::ExpSign),
                        b'0'..=b'9' => self.advance(b, Lex::ExpDigits),
                        _ => self.lex_error(b),
                    }
                    break;
                }
                Lex::ExpSign => {
                    match b {
                        b'0'..=b'9' => self.advance(b, Lex::ExpDigits),
                        _ => self.lex_error(b),
                    }
                    break;
                }
                Lex::ExpDigits => match b {
                    b'0'..=b'9' => {
                        self.msg.push(b);
                        break;
                    }
                    _ => self.lookahead_token(TokKind::Float),
                },
                Lex::Keyword => match b {
                    b'a'..=b'z' => {
                        self.msg.push(b);
                        break;
                    }
                    _ => self.lookahead_token(TokKind::Keyword),
                },
            }
        }
        // A single token may not grow beyond the size limit: hand the partial token to the
        // streamer (whose size check then always fails) and restart in the start state.
        if self.msg.len() - self.cur > self.limits.max_token_size {
            self.lex = Lex::Start;
            self.emit_error(
                JsonErrorKind::TokenSizeLimit,
                b"JSON token size limit exceeded".to_vec(),
            );
        }
    }

    #[inline]
    fn begin(&mut self, b: u8, next: Lex) {
        self.cur = self.msg.len();
        self.msg.push(b);
        self.lex = next;
    }

    #[inline]
    fn advance(&mut self, b: u8, next: Lex) {
        self.msg.push(b);
        self.lex = next;
    }

    /// A number or keyword ended at a byte that is not part of it: emit it; the byte is then
    /// lexed again from the start state (the caller's loop continues).
    #[inline]
    fn lookahead_token(&mut self, kind: TokKind) {
        self.lex = Lex::Start;
        self.text_token(kind);
    }

    /// An error token: the partial token plus the offending byte, then recovery.
    fn lex_error(&mut self, b: u8) {
        let start = if self.lex == Lex::Start {
            self.msg.len()
        } else {
            self.cur
        };
        let text = &self.msg[start..];
        // "stray '%s'": a C string, so the text stops at the first NUL.
        let mut desc = Vec::with_capacity(text.len() + 28);
        desc.extend_from_slice(b"JSON parse error, stray '");
        let nul = memchr::memchr(0, text);
        match nul {
            Some(n) => desc.extend_from_slice(&text[..n]),
            None => {
                desc.extend_from_slice(text);
                if b != 0 {
                    desc.push(b);
                }
            }
        }
        desc.push(b'\'');
        self.lex = Lex::Recovery;
        self.emit_error(JsonErrorKind::Lexical, desc);
    }

    #[inline]
    fn single(&mut self, kind: TokKind) {
        let at = self.msg.len();
        self.store(
            Tok {
                kind,
                start: at,
                end: at,
            },
            1,
        );
    }

    #[inline]
    fn text_token(&mut self, kind: TokKind) {
        let tok = Tok {
            kind,
            start: self.cur,
            end: self.msg.len(),
        };
        self.store(tok, tok.end - tok.start);
    }

    /// `json_message_process_token` for a valid token of `len` bytes.
    #[inline(always)]
    fn store(&mut self, tok: Tok, len: usize) {
        let opens = match tok.kind {
            TokKind::LCurly => {
                self.braces += 1;
                true
            }
            TokKind::LSquare => {
                self.brackets += 1;
                true
            }
            TokKind::RCurly => {
                self.braces -= 1;
                false
            }
            TokKind::RSquare => {
                self.brackets -= 1;
                false
            }
            _ => false,
        };
        let limits = self.limits;
        if self.token_size.saturating_add(len).saturating_add(1) > limits.max_token_size {
            return self.emit_error(
                JsonErrorKind::TokenSizeLimit,
                b"JSON token size limit exceeded".to_vec(),
            );
        }
        if self.tokens.len().saturating_add(1) > limits.max_token_count {
            return self.emit_error(
                JsonErrorKind::TokenCountLimit,
                b"JSON token count limit exceeded".to_vec(),
            );
        }
        // Only an opening token can raise the depth: every stored state is within the limit
        // (a deeper one was refused and the counters reset), so the others need no check.
        if opens && self.braces + self.brackets > limits.max_nesting as i64 {
            return self.emit_error(
                JsonErrorKind::NestingLimit,
                b"JSON nesting depth limit exceeded".to_vec(),
            );
        }
        self.tokens.push(tok);
        self.token_size += len;
        self.cur = self.msg.len();
        if (self.braces > 0 || self.brackets > 0) && self.braces >= 0 && self.brackets >= 0 {
            return;
        }
        self.complete();
    }

    /// The stored tokens form a message: parse it and emit the value or the error.
    #[inline(never)]
    fn complete(&mut self) {
        let result = parser::parse(&self.msg, &self.tokens, &mut self.scratch);
        self.discard();
        match result {
            Ok(v) => self.emit(StreamItem::Value(v)),
            Err(m) => {
                let cut = &m[..m.len().min(PARSE_MESSAGE_MAX)];
                let mut desc = Vec::with_capacity(cut.len() + 18);
                desc.extend_from_slice(b"JSON parse error, ");
                desc.extend_from_slice(cut);
                self.emit_error(JsonErrorKind::Parse, desc);
            }
        }
    }
}

/// Length of the leading run of bytes that keep a string going without any decision:
/// `0x20..=0xFD` except the closing quote and the backslash.
#[inline]
fn plain_run(s: &[u8], quote: u8) -> usize {
    let stop = if quote == b'"' { &DQ_STOP } else { &SQ_STOP };
    // Most strings (keys, command names) are short: look at the first bytes one by one
    // before switching to whole blocks.
    let head = s.len().min(SHORT_STRING);
    let mut i = 0;
    while i < head {
        if stop[s[i] as usize] {
            return i;
        }
        i += 1;
    }
    // The same stop set as the table, as arithmetic the compiler can vectorise.
    i = block_run_end(s, i, |b| {
        !(0x20..0xFE).contains(&b) | (b == quote) | (b == b'\\')
    });
    while i < s.len() && !stop[s[i] as usize] {
        i += 1;
    }
    i
}

/// Bytes examined one at a time before the block scan starts.
const SHORT_STRING: usize = 16;

/// Bytes that stop a plain run in a double-quoted (`DQ_STOP`) or single-quoted string.
const DQ_STOP: [bool; 256] = stop_table(b'"');
const SQ_STOP: [bool; 256] = stop_table(b'\'');

const fn stop_table(quote: u8) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i < 0x20 || i >= 0xFE || i == quote as usize || i == b'\\' as usize;
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_run_stops_at_special_bytes() {
        for special in [b'"', b'\\', 0x00, 0x1F, 0xFE, 0xFF] {
            for at in 0..70 {
                let mut s = vec![b'x'; 70];
                s[at] = special;
                assert_eq!(plain_run(&s, b'"'), at, "byte {special:#x} at {at}");
            }
        }
        let s = [b'\''; 9];
        assert_eq!(plain_run(&s, b'"'), 9);
        assert_eq!(plain_run(&s, b'\''), 0);
        let s: Vec<u8> = (0x20..=0xFD).filter(|&b| b != b'"' && b != b'\\').collect();
        assert_eq!(plain_run(&s, b'"'), s.len());
    }
}
