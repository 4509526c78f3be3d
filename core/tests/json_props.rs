//! Property tests of the JSON layer: chunking invariance, writer/parser round trip, and
//! agreement with serde_json on plain standard JSON. Case counts keep this under a few seconds
//! in a debug build.
//!
//! Round trip: `parse(write(v))` equals `v` up to two documented QEMU effects, so both sides are
//! compared in a canonical form: objects come back in hash-bucket order (members are compared
//! as a set), and a double whose `%.17g` text has no `.` or exponent (`1E2` -> `100`) comes
//! back as an integer, exactly as QEMU echoes it.

use proptest::prelude::*;
use qmp_core::json::{
    parse_stream, parse_value, to_compact, write_message, write_pretty, JsonLimits, JsonStreamer,
    JsonString, Object, StreamItem, Value,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Bytes that exercise every lexer state, including errors and recovery.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b" ",
        b"\n",
        b"\t",
        b"\"",
        b"'",
        b"\\",
        b"a",
        b"null",
        b"true",
        b"0",
        b"1",
        b"-",
        b".",
        b"e",
        b"+",
        b"\"id\"",
        b"\"execute\"",
        b"\xff",
        b"\x00",
        b"\x1b",
        b"\xc3\xa9",
        b"\xc3",
        b"\\u00e9",
        b"\\uD834\\uDD1E",
        b"\\uD800",
        b"@",
        b"x",
    ];
    prop::collection::vec(prop::sample::select(pieces), 0..40).prop_map(|v| v.concat())
}

fn feed_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<StreamItem> {
    feed_in_pieces_to(&mut JsonStreamer::new(JsonLimits::default()), input, cuts)
}

/// Feed `input` to `s` cut at `cuts` (taken modulo the length), collecting every message.
fn feed_in_pieces_to(s: &mut JsonStreamer, input: &[u8], cuts: &[usize]) -> Vec<StreamItem> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    for end in bounds {
        let mut rest = &input[pos.min(end)..end];
        while !rest.is_empty() {
            let n = s.feed(rest);
            assert!(n > 0);
            rest = &rest[n..];
            out.extend(std::iter::from_fn(|| s.pop()));
        }
        pos = pos.max(end);
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn chunking_does_not_change_messages(input in wire_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let whole = parse_stream(&input);
        prop_assert_eq!(&feed_in_pieces(&input, &cuts), &whole);
        let bytewise: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(&feed_in_pieces(&input, &bytewise), &whole);
    }

    #[test]
    fn any_bytes_any_limits_never_panic_and_chunk_invariantly(
        input in prop::collection::vec(any::<u8>(), 0..64),
        size in 0usize..12, count in 0usize..8, nesting in 0usize..4,
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let l = JsonLimits { max_token_size: size, max_token_count: count, max_nesting: nesting };
        let whole = qmp_core::json::parse_stream_with(&input, l);
        let mut s = JsonStreamer::new(l);
        let got = feed_in_pieces_to(&mut s, &input, &cuts);
        prop_assert_eq!(&got, &whole);
        // Pending memory stays within the limits (token text plus one partial token).
        prop_assert!(s.buffered_bytes() <= 2 * size + 2 + count * 64);
    }

    #[test]
    fn feed_stops_only_after_completing_bytes(input in wire_bytes()) {
        // Every `feed` that stops early has just completed a message, and stopping never
        // loses or reorders bytes (checked by the equality above); here: no early stop
        // without a message.
        let mut s = JsonStreamer::new(JsonLimits::default());
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = s.feed(rest);
            prop_assert!(n == rest.len() || s.has_ready());
            rest = &rest[n..];
            while s.pop().is_some() {}
        }
    }
}

/// Values the parser can produce: modified-UTF-8 strings (NUL as C0 80), the three number
/// kinds (uint64 only above i64::MAX, finite doubles), unique keys.
fn parsed_value() -> impl Strategy<Value = Value> {
    let string = prop::collection::vec(
        prop_oneof![
            any::<char>().prop_filter("noncharacter", |c| {
                let c = *c as u32;
                !(0xFDD0..=0xFDEF).contains(&c) && c & 0xFFFE != 0xFFFE
            }),
            Just('\0'),
            Just('"'),
            Just('\\'),
            Just('\n'),
        ],
        0..8,
    )
    .prop_map(|chars| {
        let mut bytes = Vec::new();
        for c in chars {
            if c == '\0' {
                bytes.extend_from_slice(b"\xC0\x80");
            } else {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        JsonString::from(bytes)
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Value::UInt),
        any::<f64>()
            .prop_filter("finite", |d| d.is_finite())
            .prop_map(Value::Double),
        prop_oneof![Just(100.0), Just(-0.0), Just(1e20), Just(0.1)].prop_map(Value::Double),
        string.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((string.clone(), inner), 0..6).prop_map(|members| {
                let mut o = Object::new();
                for (k, v) in members {
                    o.insert(k, v);
                }
                Value::Object(o)
            }),
        ]
    })
}

/// Canonical form: members sorted by key, doubles as QEMU's text re-reads them.
fn canon(v: &Value) -> Value {
    match v {
        Value::Double(_) => parse_value(&to_compact(v)).expect("finite double text parses"),
        Value::Array(a) => Value::Array(a.iter().map(canon).collect()),
        Value::Object(o) => {
            let mut members: Vec<(JsonString, Value)> =
                o.iter().map(|(k, v)| (k.clone(), canon(v))).collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            let mut c = Object::new();
            for (k, v) in members {
                c.push_unchecked(k, v);
            }
            Value::Object(c)
        }
        other => other.clone(),
    }
}

/// A serde_json value without QEMU's documented departures (NUL, noncharacters).
fn standard_json() -> impl Strategy<Value = serde_json::Value> {
    let string = "[a-z \"\\\\\u{e9}\u{20ac}\u{1d11e}\n\t/]{0,8}";
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |d| d.is_finite())
            .prop_map(serde_json::Value::from),
        string.prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(string, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Short texts over JSON's alphabet (no single quotes: that is QEMU's extension).
fn json_like_text() -> impl Strategy<Value = String> {
    "[\\[\\]{}:, \"a0-9.eE+\\-tnulfs\\\\]{0,16}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn write_then_parse_round_trips(v in parsed_value()) {
        let text = to_compact(&v);
        prop_assert!(text.is_ascii());
        let back = parse_value(&text);
        prop_assert!(back.is_some(), "{}", String::from_utf8_lossy(&text));
        prop_assert_eq!(canon(&back.unwrap()), canon(&v));
        // The wire message is the same text plus CRLF; pretty text parses to the same value.
        let mut wire = Vec::new();
        write_message(&v, false, &mut wire);
        prop_assert_eq!(&wire[..wire.len() - 2], &text[..]);
        let mut pretty = Vec::new();
        write_pretty(&v, &mut pretty);
        prop_assert_eq!(canon(&parse_value(&pretty).unwrap()), canon(&v));
    }

    #[test]
    fn serde_form_is_exact(v in parsed_value()) {
        let text = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, v);
    }

    #[test]
    fn agrees_with_serde_json_on_standard_values(j in standard_json()) {
        let text = serde_json::to_string(&j).unwrap();
        let ours = parse_value(text.as_bytes());
        prop_assert_eq!(ours.map(|v| canon(&v)), Some(canon(&Value::from_serde(&j))), "{}", text);
    }

    #[test]
    fn agrees_with_serde_json_on_accept_reject(text in json_like_text()) {
        let theirs = serde_json::from_str::<serde_json::Value>(&text);
        let ours = parse_value(text.as_bytes());
        match (&theirs, &ours) {
            (Ok(j), Some(v)) => prop_assert_eq!(canon(v), canon(&Value::from_serde(j))),
            (Err(_), None) => {}
            // serde_json refuses numbers beyond f64; QEMU reads them as inf.
            (Err(e), Some(_)) => prop_assert!(e.to_string().contains("out of range"), "{text:?}: {e}"),
            (Ok(_), None) => {
                // serde_json keeps the last of duplicate keys; QEMU refuses them.
                let dup = parse_stream(format!("{text} ").as_bytes()).iter().any(|i| {
                    matches!(i, StreamItem::Error(e) if e.desc == "JSON parse error, duplicate key")
                });
                // QEMU's lexer leaves its zero state only on `.`: `0e5` is the integer 0 and
                // then the keyword `e5`, an error (json-lexer.c, IN_ZERO; fast.rs tests `0e5` too).
                let b = text.as_bytes();
                let zero_exponent = (0..b.len().saturating_sub(1)).any(|i| {
                    b[i] == b'0'
                        && matches!(b[i + 1], b'e' | b'E')
                        && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b'.'))
                });
                prop_assert!(dup || zero_exponent, "{:?} accepted by serde_json only", text);
            }
        }
    }
}

/// Every message with the input offset right after the byte that completed it.
fn completions(input: &[u8], bytewise: bool) -> Vec<(usize, StreamItem)> {
    let mut s = JsonStreamer::new(JsonLimits::default());
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let end = if bytewise { pos + 1 } else { input.len() };
        pos += s.feed(&input[pos..end]);
        out.extend(std::iter::from_fn(|| s.pop()).map(|item| (pos, item)));
    }
    out
}

/// Whole messages written by the writer (compact or pretty), one in three damaged by an edit
/// that the lexer or parser must refuse or read differently, then run together.
fn whole_messages() -> impl Strategy<Value = Vec<u8>> {
    let edits: Vec<&'static [u8]> = vec![
        b"'", b"\\", b"\"", b",", b":", b"}", b"]", b"{", b"[", b"0", b"e", b".", b"-", b"x",
        b"\x01", b"\xff", b"\xc3", b" ", b"nul", b"\\u", b"\\uD800", b"0e5", b"01", b"1.", b"1e",
        b"-x", b"truex", b"1E+2", b"-0.5e-3", b"\\\x01", b"\\",
    ];
    // Members drawn from a small key set, so duplicate keys are common; now and then an odd
    // separator or a member the lexer or parser refuses.
    let keys = prop::sample::select(b"abcdefghijkl".to_vec());
    let values: Vec<&'static [u8]> = vec![
        b"1",
        b"{}",
        b"[1, 2.5, -0, true]",
        b"null",
        b"\"\\u00e9\\n\"",
        b"\"x\"",
        b"{\"a\": [], \"b\": -1e3}",
    ];
    let plain = (keys, prop::sample::select(values)).prop_map(|(k, v)| {
        let mut m = vec![b'"', k, b'"', b':', b' '];
        m.extend_from_slice(v);
        m
    });
    let odd: Vec<&'static [u8]> = vec![
        b",",
        b" ",
        b"\"b\": [0e5]",
        b"\"f\": {\"a\": 1, \"a\": 2}",
        b"\"g\": 1}",
        b"\"e\": \"\\\x01\"",
        b"\"e\": \"\\\xfe\"",
    ];
    let members = prop_oneof![8 => plain, 1 => prop::sample::select(odd).prop_map(<[u8]>::to_vec)];
    let object = prop::collection::vec(members, 0..24).prop_map(|parts| {
        let mut text = b"{".to_vec();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 && p.starts_with(b"\"") && !parts[i - 1].ends_with(b",") {
                text.extend_from_slice(b", ");
            }
            text.extend_from_slice(p);
        }
        text.push(b'}');
        text
    });
    let message = (
        parsed_value(),
        any::<bool>(),
        prop::option::weighted(
            0.3,
            (any::<usize>(), 0usize..2, prop::sample::select(edits)),
        ),
    )
        .prop_map(|(v, pretty, edit)| {
            let v = match v {
                Value::Object(_) | Value::Array(_) => v,
                leaf => Value::Array(vec![leaf]),
            };
            let mut text = Vec::new();
            if pretty {
                write_pretty(&v, &mut text);
            } else {
                text = to_compact(&v);
            }
            if let Some((at, cut, bytes)) = edit {
                let at = at % (text.len() + 1);
                let end = (at + cut).min(text.len());
                text.splice(at..end, bytes.iter().copied());
            }
            text
        });
    let message = prop_oneof![message, object];
    (
        prop::collection::vec(message, 1..4),
        prop::sample::select(vec![&b""[..], b" ", b"\n", b"\r\n"]),
    )
        .prop_map(|(msgs, sep)| msgs.join(sep))
}

proptest! {
    #![proptest_config(config())]

    /// The fast path (a whole message in one buffer) against the token path alone (one byte at
    /// a time never holds a whole message): same messages, completed at the same byte.
    #[test]
    fn fast_path_agrees_with_the_token_path(input in whole_messages()) {
        prop_assert_eq!(completions(&input, false), completions(&input, true),
            "{}", String::from_utf8_lossy(&input));
    }
}

/// A string token of the lengths and contents the fast path's word scan and inline build
/// distinguish: bodies of 0 to 30 bytes (around the 8/16/22/24-byte edges), now and then with a
/// byte it must hand to the general path (escape, non-ASCII, control, DEL) at any position.
fn edge_string() -> impl Strategy<Value = Vec<u8>> {
    let specials: Vec<&'static [u8]> = vec![
        b"\\n",
        b"\\u00e9",
        b"\xc3\xa9",
        b"\x7f",
        b"\x01",
        b"\xff",
        b"'",
        b"\\\"",
    ];
    (
        0usize..31,
        prop::sample::select(b"abxyz-_09".to_vec()),
        prop::option::weighted(0.25, (any::<usize>(), prop::sample::select(specials))),
    )
        .prop_map(|(len, fill, special)| {
            let mut body = vec![fill; len];
            // Vary the bytes so that equal-length keys differ in some word.
            for (i, b) in body.iter_mut().enumerate() {
                if i % 5 == 3 {
                    *b = b'a' + (len % 7) as u8;
                }
            }
            if let Some((at, bytes)) = special {
                let at = at % (body.len() + 1);
                body.splice(at..at, bytes.iter().copied());
            }
            let mut s = vec![b'"'];
            s.extend_from_slice(&body);
            s.push(b'"');
            s
        })
}

/// Objects and arrays built from [`edge_string`] keys and values, keywords and numbers, with
/// the separators written in every way the lexer skips (none, one space, tabs and newlines),
/// then cut at an arbitrary length so that messages end anywhere near the end of the buffer.
fn edge_messages() -> impl Strategy<Value = Vec<u8>> {
    let ws = prop::sample::select(vec![&b""[..], b" ", b" ", b"  ", b"\t", b"\r\n ", b"\x0b"]);
    let scalar = prop_oneof![
        4 => edge_string().boxed(),
        1 => prop::sample::select(vec![
            &b"true"[..], b"false", b"null", b"nul", b"truex", b"fals", b"falsy", b"0", b"-12", b"3.5e2",
            b"01", b"[]", b"{}", b"[true, null]", b"{\"k\": false}",
        ])
        .prop_map(<[u8]>::to_vec)
        .boxed(),
    ]
    .boxed();
    let member = (
        edge_string(),
        ws.clone(),
        ws.clone(),
        scalar.clone(),
        (ws.clone(), ws.clone()),
    );
    let object = prop::collection::vec(member, 0..20)
        .prop_map(|members| {
            let mut t = b"{".to_vec();
            for (i, (k, w1, w2, v, (w3, w4))) in members.iter().enumerate() {
                if i > 0 {
                    t.push(b',');
                }
                t.extend_from_slice(w3);
                t.extend_from_slice(k);
                t.extend_from_slice(w1);
                t.push(b':');
                t.extend_from_slice(w2);
                t.extend_from_slice(v);
                t.extend_from_slice(w4);
            }
            t.push(b'}');
            t
        })
        .boxed();
    let array = prop::collection::vec((scalar, ws), 0..8)
        .prop_map(|items| {
            let mut t = b"[".to_vec();
            for (i, (v, w)) in items.iter().enumerate() {
                if i > 0 {
                    t.push(b',');
                    t.extend_from_slice(w);
                }
                t.extend_from_slice(v);
            }
            t.push(b']');
            t
        })
        .boxed();
    let nested = (object.clone(), array.clone(), edge_string()).prop_map(|(o, a, k)| {
        let mut t = b"{".to_vec();
        t.extend_from_slice(&k);
        t.extend_from_slice(b": ");
        t.extend_from_slice(&o);
        t.extend_from_slice(b", \"~\": ");
        t.extend_from_slice(&a);
        t.push(b'}');
        t
    });
    (
        prop::collection::vec(prop_oneof![object, array, nested], 1..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(msgs, cut, whole)| {
            let text = msgs.concat();
            if whole {
                text
            } else {
                let n = cut.index(text.len() + 1);
                text[..n].to_vec()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The fast path's word-at-a-time strings, short separators and keyword reads against the
    /// token path, on messages whose strings end at every word and inline-capacity edge and
    /// whose buffers end at every byte.
    #[test]
    fn fast_path_agrees_at_word_and_buffer_edges(input in edge_messages()) {
        prop_assert_eq!(completions(&input, false), completions(&input, true),
            "{}", String::from_utf8_lossy(&input));
    }
}

/// Keys that share a length and their first words (a fingerprint may agree) but differ
/// further on, and true duplicates among long keys, decided the same way by both paths.
#[test]
fn fast_path_duplicate_keys_of_equal_length() {
    let long_a = "k".repeat(30);
    let mut long_b = long_a.clone();
    long_b.replace_range(29..30, "z");
    let short_a = "abcdefghijklmnopqrstuv"; // 22 bytes, inline
    let short_b = "abcdefghijklmnopqrstuw";
    for text in [
        format!("{{\"{long_a}\": 1, \"{long_b}\": 2}} "),
        format!("{{\"{long_a}\": 1, \"{long_a}\": 2}} "),
        format!("{{\"{short_a}\": 1, \"{short_b}\": 2}} "),
        format!("{{\"{short_a}\": 1, \"x\": {{}}, \"{short_a}\": 2}} "),
        "{\"a\\u0062\": 1, \"ab\": 2} ".to_string(),
    ] {
        let input = text.as_bytes();
        let whole = completions(input, false);
        assert_eq!(whole, completions(input, true), "{text}");
        assert_eq!(whole.len(), 1, "{text}");
    }
    // The same key written with and without an escape (general and word paths) at every
    // length around the word and inline edges: a duplicate either way.
    for n in [1, 6, 7, 8, 9, 15, 16, 17, 21, 22, 23, 24, 30] {
        let p = "p".repeat(n - 1);
        for text in [
            format!("{{\"{p}\\u0041\": 1, \"{p}A\": 2}} "),
            format!("{{\"{p}A\": 1, \"{p}\\u0041\": 2}} "),
        ] {
            let input = text.as_bytes();
            let whole = completions(input, false);
            assert_eq!(whole, completions(input, true), "{text}");
            assert!(
                matches!(&whole[..], [(_, StreamItem::Error(e))] if e.desc == "JSON parse error, duplicate key"),
                "{text}"
            );
        }
    }
    let ok = format!("{{\"{long_a}\": 1, \"{long_b}\": 2}}");
    let Some(Value::Object(o)) = parse_value(ok.as_bytes()) else {
        panic!("distinct keys")
    };
    assert_eq!(o.len(), 2);
    let dup = format!("{{\"{short_a}\": 1, \"x\": {{}}, \"{short_a}\": 2}}");
    assert!(
        matches!(&parse_stream(dup.as_bytes())[..], [StreamItem::Error(e)] if e.desc == "JSON parse error, duplicate key")
    );
}
