//! Target `json_stream`: raw bytes through the incremental JSON streamer.
//!
//! Input format: a header byte `h`, then `h & 7` chunk-length bytes, then the payload.
//! * `h & 7 == n > 0`: a third feed gives the streamer chunks of `len[i % n] + 1` bytes,
//!   cycling through the lengths; with `n == 0` there are only the one-call and byte-wise feeds.
//! * `h & 8`: small limits ([`SMALL_LIMITS`]), so that the token-size, token-count and nesting
//!   paths are reached by short inputs; otherwise QEMU's limits.
//!
//! Properties:
//! 1. Feeding the payload in one call sequence, one byte per call, and in the fuzzer's chunks
//!    yields identical messages (values and error texts), in the same order. The one-call feed
//!    takes the streamer's fast path for every message that is whole in the buffer; one byte
//!    per call never does (the token path, QEMU's pace), so this is where the fast path is
//!    checked against the reference; the fuzzer's chunks mix both.
//! 2. `feed` makes progress on non-empty input, never claims more than it was given, and when it
//!    stops early a message is ready (it stops *after* a completing byte, never elsewhere).
//! 3. One `feed` call queues at most [`MAX_ITEMS_PER_BYTE`] messages.
//! 4. Every error text is one of QEMU's (`JSON parse error, ...` or a limit text).

use qmp_core::json::stream::MAX_ITEMS_PER_BYTE;
use qmp_core::json::{to_compact, JsonLimits, JsonStreamer, StreamItem};

use crate::cursor::Cursor;

/// Limits small enough for a fuzzer to cross with inputs of a few hundred bytes.
pub const SMALL_LIMITS: JsonLimits = JsonLimits {
    max_token_size: 24,
    max_token_count: 12,
    max_nesting: 4,
};

/// Bound on `feed` calls per chunk: each call consumes at least one byte of a non-empty chunk,
/// so more calls than bytes means the streamer stopped making progress.
fn max_calls(chunk: &[u8]) -> usize {
    chunk.len() + 1
}

/// Feed `chunk` completely, popping after every call; checks properties 2 and 3.
fn feed_all(s: &mut JsonStreamer, chunk: &[u8], out: &mut Vec<StreamItem>) {
    let mut rest = chunk;
    let mut calls = 0;
    while !rest.is_empty() {
        calls += 1;
        assert!(calls <= max_calls(chunk), "feed stopped making progress");
        let n = s.feed(rest);
        assert!(n >= 1, "feed consumed nothing of {} bytes", rest.len());
        assert!(n <= rest.len(), "feed claims {n} of {} bytes", rest.len());
        if n < rest.len() {
            assert!(
                s.has_ready(),
                "feed stopped at byte {n} without a completed message"
            );
        }
        rest = &rest[n..];
        let before = out.len();
        out.extend(std::iter::from_fn(|| s.pop()));
        assert!(
            out.len() - before <= MAX_ITEMS_PER_BYTE,
            "one feed call queued {} messages",
            out.len() - before
        );
    }
}

fn check_error_text(item: &StreamItem) {
    if let StreamItem::Error(e) = item {
        let d = e.desc.as_bytes();
        let known = d.starts_with(b"JSON parse error, ")
            || d == b"JSON token size limit exceeded"
            || d == b"JSON token count limit exceeded"
            || d == b"JSON nesting depth limit exceeded";
        assert!(known, "unexpected error text {:?}", e.desc);
    }
}

/// The target body.
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let header = c.u8();
    let lens: Vec<usize> = c
        .bytes(usize::from(header & 7))
        .iter()
        .map(|&b| usize::from(b) + 1)
        .collect();
    let limits = if header & 8 != 0 {
        SMALL_LIMITS
    } else {
        JsonLimits::default()
    };
    let payload = c.rest();

    let mut whole = Vec::new();
    feed_all(&mut JsonStreamer::new(limits), payload, &mut whole);
    let bytewise = feed_chunked(limits, payload, &[1]);
    compare(&whole, &bytewise, "one feed and one byte per call");
    if !lens.is_empty() {
        let chunked = feed_chunked(limits, payload, &lens);
        compare(&whole, &chunked, "one feed and the fuzzer's chunks");
    }
}

/// Feed `payload` to a fresh streamer in chunks of `lens[0]`, `lens[1]`, ... (cycling);
/// `lens` is non-empty.
fn feed_chunked(limits: JsonLimits, payload: &[u8], lens: &[usize]) -> Vec<StreamItem> {
    let mut out = Vec::new();
    let mut s = JsonStreamer::new(limits);
    let mut rest = payload;
    for &len in lens.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        feed_all(&mut s, chunk, &mut out);
        rest = tail;
    }
    out
}

/// Property 1 for one pair of feeds (and property 4 on the first).
fn compare(a: &[StreamItem], b: &[StreamItem], what: &str) {
    assert_eq!(a.len(), b.len(), "message count differs: {what}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "messages differ: {what}");
        // `PartialEq` on doubles says 0.0 == -0.0: the written text tells them apart.
        if let (StreamItem::Value(v), StreamItem::Value(w)) = (x, y) {
            assert_eq!(
                to_compact(v),
                to_compact(w),
                "values print differently: {what}"
            );
        }
        check_error_text(x);
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    #[test]
    fn accepts_every_chunking_of_a_transcript() {
        let msg = b"{\"execute\": \"query-name\", \"id\": 'a'}1}[{]}\x1b{\"a\": 1e400}";
        for header in [0u8, 1, 2, 8, 9] {
            let mut data = vec![header];
            data.extend(std::iter::repeat_n(3, usize::from(header & 7)));
            data.extend_from_slice(msg);
            run(&data);
        }
    }
}
