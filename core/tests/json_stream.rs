//! The streamer's incremental contract and QEMU's limits (spec §1.2–1.4, Appendix A group C).
//!
//! Limits are tested twice: scaled down through `JsonLimits` (the same code path, fast), and at
//! QEMU's real sizes where that runs in about a second in a debug build (C4, C5, C6).

use qmp_core::json::{
    parse_stream, parse_stream_with, to_compact, JsonErrorKind, JsonLimits, JsonStreamer,
    StreamItem, Value,
};

fn desc(item: &StreamItem) -> String {
    match item {
        StreamItem::Error(e) => e.desc.to_string_lossy(),
        StreamItem::Value(v) => format!("value {}", String::from_utf8_lossy(&to_compact(v))),
    }
}

fn descs(items: &[StreamItem]) -> Vec<String> {
    items.iter().map(desc).collect()
}

fn limits(size: usize, count: usize, nesting: usize) -> JsonLimits {
    JsonLimits {
        max_token_size: size,
        max_token_count: count,
        max_nesting: nesting,
    }
}

#[test]
fn defaults_are_qemus() {
    let l = JsonLimits::default();
    assert_eq!(l.max_token_size, 64 * 1024 * 1024);
    assert_eq!(l.max_token_count, 2_097_152);
    assert_eq!(l.max_nesting, 1024);
}

#[test]
fn feed_stops_right_after_the_completing_byte() {
    let mut s = JsonStreamer::new(JsonLimits::default());
    let input = b"{\"a\": 1}{\"b\": 2}";
    assert_eq!(s.feed(input), 8);
    assert!(s.has_ready());
    assert_eq!(desc(&s.pop().unwrap()), r#"value {"a": 1}"#);
    assert!(!s.has_ready());
    assert_eq!(s.feed(&input[8..]), 8);
    assert_eq!(desc(&s.pop().unwrap()), r#"value {"b": 2}"#);
    assert_eq!(s.pop(), None);
}

#[test]
fn one_byte_can_complete_two_messages() {
    let mut s = JsonStreamer::new(JsonLimits::default());
    assert_eq!(s.feed(b"1}2"), 2);
    let items: Vec<_> = std::iter::from_fn(|| s.pop()).collect();
    assert_eq!(
        descs(&items),
        ["value 1", "JSON parse error, expecting value"]
    );
}

#[test]
fn lookahead_byte_is_consumed_and_lexed_after_the_emission() {
    // `null{`: the `{` completes `null` and then opens an object; `feed` stops after it.
    let mut s = JsonStreamer::new(JsonLimits::default());
    assert_eq!(s.feed(b"null{}"), 5);
    assert_eq!(descs(&[s.pop().unwrap()]), ["value null"]);
    assert_eq!(s.feed(b"}"), 1);
    assert_eq!(descs(&[s.pop().unwrap()]), ["value {}"]);
    // A bare keyword waits for its lookahead byte.
    assert_eq!(s.feed(b"true"), 4);
    assert!(!s.has_ready());
    assert_eq!(s.feed(b"\n"), 1);
    assert_eq!(descs(&[s.pop().unwrap()]), ["value true"]);
}

#[test]
fn feed_without_completion_consumes_everything() {
    let mut s = JsonStreamer::new(JsonLimits::default());
    assert_eq!(s.feed(b"{\"execute\": \"x"), 14);
    assert!(!s.has_ready());
    assert!(s.buffered_bytes() > 0);
    assert_eq!(s.feed(b"\"}"), 2);
    assert!(s.has_ready());
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn reset_drops_partial_input_and_ready_messages() {
    let mut s = JsonStreamer::new(JsonLimits::default());
    s.feed(b"[1]");
    s.feed(b"{\"a\": [1, 2");
    assert!(s.has_ready());
    s.reset();
    assert!(!s.has_ready());
    assert_eq!(s.buffered_bytes(), 0);
    s.feed(b"]}");
    let items: Vec<_> = std::iter::from_fn(|| s.pop()).collect();
    assert_eq!(descs(&items), ["JSON parse error, expecting value"]);
}

#[test]
fn error_kinds() {
    let kinds = |input: &[u8], l: JsonLimits| -> Vec<JsonErrorKind> {
        parse_stream_with(input, l)
            .into_iter()
            .filter_map(|i| match i {
                StreamItem::Error(e) => Some(e.kind),
                StreamItem::Value(_) => None,
            })
            .collect()
    };
    let d = JsonLimits::default();
    assert_eq!(kinds(b"@", d), [JsonErrorKind::Lexical]);
    assert_eq!(kinds(b"}", d), [JsonErrorKind::Parse]);
    assert_eq!(
        kinds(b"[[[", limits(100, 100, 2)),
        [JsonErrorKind::NestingLimit]
    );
    assert_eq!(
        kinds(b"[1,2 ", limits(100, 3, 10)),
        [JsonErrorKind::TokenCountLimit]
    );
    assert_eq!(
        kinds(b"\"abcdef", limits(4, 100, 10)),
        [JsonErrorKind::TokenSizeLimit]
    );
}

#[test]
fn lexical_error_desc_keeps_raw_bytes_and_stops_at_nul() {
    let items = parse_stream(b"\"ab\xff\x00x");
    match &items[..] {
        [StreamItem::Error(a), StreamItem::Error(b)] => {
            assert_eq!(a.desc.as_bytes(), b"JSON parse error, stray '\"ab\xff'");
            assert_eq!(b.desc.as_bytes(), b"JSON parse error, stray ''");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nesting_limit_scaled_then_leftover_closers() {
    // Depth 3 allowed: like C1/C2 with MAX_NESTING = 3.
    let l = limits(1 << 20, 1 << 20, 3);
    assert_eq!(
        descs(&parse_stream_with(b"{\"a\": [[]]}", l)),
        [r#"value {"a": [[]]}"#]
    );
    assert_eq!(
        descs(&parse_stream_with(b"{\"a\": [[[]]]}", l)),
        [
            "JSON nesting depth limit exceeded",
            "JSON parse error, expecting value",
            "JSON parse error, expecting value",
            "JSON parse error, expecting value",
            "JSON parse error, expecting value",
        ]
    );
}

#[test]
fn nesting_limit_real_size_c2() {
    let mut input = b"{\"execute\": \"query-name\", \"id\": ".to_vec();
    input.extend(std::iter::repeat_n(b'[', 1024));
    input.extend(std::iter::repeat_n(b']', 1024));
    input.extend_from_slice(b"}\n");
    let items = parse_stream(&input);
    assert_eq!(items.len(), 1026);
    assert_eq!(desc(&items[0]), "JSON nesting depth limit exceeded");
    assert!(items[1..]
        .iter()
        .all(|i| desc(i) == "JSON parse error, expecting value"));
}

#[test]
fn token_count_limit_scaled() {
    // `[0,0]` is 5 tokens.
    assert_eq!(
        descs(&parse_stream_with(b"[0,0]", limits(100, 5, 10))),
        ["value [0, 0]"]
    );
    assert_eq!(
        descs(&parse_stream_with(b"[0,0] ", limits(100, 4, 10))),
        ["JSON token count limit exceeded"]
    );
}

fn zeros_request(n: usize) -> Vec<u8> {
    let mut input = b"{\"execute\":\"query-name\",\"id\":[".to_vec();
    input.reserve(2 * n + 4);
    for i in 0..n {
        if i > 0 {
            input.push(b',');
        }
        input.push(b'0');
    }
    input.extend_from_slice(b"]}\n");
    input
}

#[test]
fn token_count_limit_real_size_c4_c5() {
    // C4: 8 + 1048571 zeros + 1048570 commas + 2 = 2 097 151 tokens: accepted.
    let items = parse_stream(&zeros_request(1_048_571));
    assert_eq!(items.len(), 1);
    match &items[0] {
        StreamItem::Value(Value::Object(o)) => {
            assert_eq!(
                o.get("id").and_then(Value::as_array).map(Vec::len),
                Some(1_048_571)
            );
        }
        other => panic!("{}", desc(other)),
    }
    // C5: 2 097 153 tokens: refused at the final token, nothing else follows.
    assert_eq!(
        descs(&parse_stream(&zeros_request(1_048_572))),
        ["JSON token count limit exceeded"]
    );
}

#[test]
fn token_size_limit_scaled_restarts_mid_token() {
    // C6 scaled to a 16-byte limit: `"` + 16 x's exceeds it; the 10 remaining x's are a
    // keyword, the final quote opens a string that the newline aborts.
    let l = limits(16, 1 << 20, 1024);
    let mut input = b"{\"id\":\"".to_vec();
    input.extend(std::iter::repeat_n(b'x', 26));
    input.extend_from_slice(b"\"}\n{\"id\":\"after\"}\n");
    assert_eq!(
        descs(&parse_stream_with(&input, l)),
        [
            "JSON token size limit exceeded",
            "JSON parse error, invalid keyword 'xxxxxxxxxx'",
            "JSON parse error, stray '\"}\n'",
            r#"value {"id": "after"}"#,
        ]
    );
}

#[test]
fn token_size_limit_counts_the_whole_message() {
    // Two 6-byte strings: 1 + 6 + 1 + 6 = 14 stored bytes; the `]` pushes it over 15 and is
    // discarded with the rest, so nothing follows the error.
    let l = limits(15, 1 << 20, 1024);
    assert_eq!(
        descs(&parse_stream_with(b"[\"abcd\",\"efgh\"]", l)),
        ["JSON token size limit exceeded"]
    );
    let l = limits(16, 1 << 20, 1024);
    assert_eq!(
        descs(&parse_stream_with(b"[\"abcd\",\"efgh\"]", l)),
        [r#"value ["abcd", "efgh"]"#]
    );
    // A token of exactly the limit is refused by the streamer (len + 1 > limit) but not cut.
    let l = limits(6, 1 << 20, 1024);
    assert_eq!(
        descs(&parse_stream_with(b"\"abcd\" \"abc\"", l)),
        ["JSON token size limit exceeded", "value \"abc\""]
    );
}

#[test]
fn token_size_limit_real_size_c6() {
    let mut input = b"{\"execute\":\"query-name\",\"id\":\"".to_vec();
    input.resize(input.len() + 64 * 1024 * 1024 + 10, b'x');
    input.extend_from_slice(b"\"}\n{\"execute\":\"query-name\",\"id\":\"after\"}\n");
    let items = parse_stream(&input);
    assert_eq!(
        descs(&items),
        [
            "JSON token size limit exceeded",
            "JSON parse error, invalid keyword 'xxxxxxxxxx'",
            "JSON parse error, stray '\"}\n'",
            r#"value {"execute": "query-name", "id": "after"}"#,
        ]
    );
}

#[test]
fn big_object_duplicate_detection_is_not_quadratic() {
    // 100 000 members plus a duplicate of the first at the end (quadratic would take minutes).
    let n = 100_000;
    let mut input = b"{".to_vec();
    for i in 0..n {
        input.extend_from_slice(format!("\"k{i}\":{i},").as_bytes());
    }
    input.extend_from_slice(b"\"k0\":1}");
    assert_eq!(
        descs(&parse_stream(&input)),
        ["JSON parse error, duplicate key"]
    );
    *input.last_mut().unwrap() = b' ';
    let len = input.len();
    input[len - 7..].copy_from_slice(b"\"kk\":1}");
    match &parse_stream(&input)[..] {
        [StreamItem::Value(Value::Object(o))] => assert_eq!(o.len(), n + 1),
        other => panic!("{:?}", descs(other)),
    }
}

#[test]
fn parse_error_message_part_is_cut_at_1023_bytes() {
    let mut input = vec![b'a'; 1100];
    input.push(b' ');
    let items = parse_stream(&input);
    let d = desc(&items[0]);
    assert_eq!(d.len(), 18 + 1023);
    assert!(d.starts_with("JSON parse error, invalid keyword 'aaa"));
    assert!(d.ends_with('a'));
}
