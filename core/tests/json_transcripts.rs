//! Transcript suite: input bytes -> the exact bytes QEMU 7.2 sent back.
//!
//! Cases live in `data/json/transcripts.txt`, recorded from a live QEMU 7.2.22 by
//! `data/json/gen_transcripts.py` (Appendix A groups B, C, P; check-qjson's strings, UTF-8,
//! numbers, keywords and errors; more framing edge cases). Cases whose text is known only from
//! QEMU's source are marked `src: source` (none so far: every case was recorded live).
//!
//! The test plays the server's part for the two request shapes the recordings use, exactly as
//! QEMU builds those replies: `{}` gets `QMP input lacks member 'execute'`, a non-object gets
//! `{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}`, a
//! `{"execute": "query-name"[, "id": X]}` gets `{"return": {}}` plus the echoed id, and a JSON
//! error gets `{"error": {"class": "GenericError", "desc": <desc>}}`. Every reply goes through
//! `write_message`, so the bytes compared are the JSON layer's own output.

use qmp_core::json::{
    error_reply, write_message, JsonLimits, JsonStreamer, JsonString, Object, StreamItem, Value,
};

struct Case {
    name: String,
    chunks: Vec<Vec<u8>>,
    out: Vec<u8>,
}

/// Decode a Python `repr()` of bytes: `b'...'` or `b"..."` with `\\ \' \" \n \r \t \xHH`.
fn py_bytes(lit: &str) -> Vec<u8> {
    let lit = lit.trim();
    let body = &lit.as_bytes()[2..lit.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let c = body[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'x' => {
                let h = std::str::from_utf8(&body[i..i + 2]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                i += 2;
            }
            other => out.push(other),
        }
    }
    out
}

fn load() -> Vec<Case> {
    let text = include_str!("data/json/transcripts.txt");
    let mut cases = Vec::new();
    let mut cur: Option<Case> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("case: ") {
            cases.extend(cur.take());
            cur = Some(Case {
                name: name.to_owned(),
                chunks: Vec::new(),
                out: Vec::new(),
            });
        } else if let Some(lit) = line.strip_prefix("in: ") {
            cur.as_mut().unwrap().chunks.push(py_bytes(lit));
        } else if let Some(lit) = line.strip_prefix("out: ") {
            cur.as_mut().unwrap().out = py_bytes(lit);
        }
    }
    cases.extend(cur);
    cases
}

/// The reply QEMU sends for one streamer result, for the request shapes the cases use.
fn reply(item: &StreamItem, out: &mut Vec<u8>) {
    let v = match item {
        StreamItem::Error(e) => error_reply(&e.desc),
        StreamItem::Value(Value::Object(o)) if o.is_empty() => {
            error_reply(&JsonString::from("QMP input lacks member 'execute'"))
        }
        StreamItem::Value(Value::Object(o)) => {
            assert_eq!(
                o.get("execute").and_then(Value::as_str),
                Some("query-name"),
                "unexpected request {o:?}"
            );
            assert!(o.keys().all(|k| k == "execute" || k == "id"), "{o:?}");
            let mut r = Object::new();
            r.insert("return", Value::Object(Object::new()));
            if let Some(id) = o.get("id") {
                r.insert("id", id.clone());
            }
            Value::Object(r)
        }
        StreamItem::Value(_) => error_reply(&JsonString::from("QMP input must be a JSON object")),
    };
    write_message(&v, false, out);
}

/// Feed `chunks` with the given split size (0 = as recorded), reply to every message.
fn run(chunks: &[Vec<u8>], split: usize) -> Vec<u8> {
    let mut s = JsonStreamer::new(JsonLimits::default());
    let mut out = Vec::new();
    for chunk in chunks {
        let pieces: Vec<&[u8]> = if split == 0 {
            vec![&chunk[..]]
        } else {
            chunk.chunks(split).collect()
        };
        for piece in pieces {
            let mut rest = piece;
            while !rest.is_empty() {
                let n = s.feed(rest);
                assert!(n > 0, "feed made no progress");
                rest = &rest[n..];
                while let Some(item) = s.pop() {
                    reply(&item, &mut out);
                }
            }
        }
    }
    out
}

fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

#[test]
fn transcripts_match_live_qemu() {
    let cases = load();
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        for split in [0, 1, 7] {
            let got = run(&case.chunks, split);
            if got != case.out {
                failures.push(format!(
                    "{} (split {split}):\n  want {}\n  got  {}",
                    case.name,
                    show(&case.out[..case.out.len().min(600)]),
                    show(&got[..got.len().min(600)])
                ));
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
