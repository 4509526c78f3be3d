//! The lossless serde form of [`Value`] and [`Object`], used by traces.
//!
//! QEMU's own text is lossy in a few places (doubles with integral values print without a
//! point and re-parse as integers, `inf`/`nan` do not parse, a `UInt` at or below `i64::MAX`
//! re-parses as `Int`, invalid UTF-8 becomes `\uFFFD`, a NUL byte truncates, objects come out in
//! bucket order), so the form is chosen per value:
//!
//! * **text form** — a string holding the compact QEMU text with members in *insertion* order,
//!   used whenever parsing that text gives back exactly the same value (the common case:
//!   `"{\"execute\": \"query-status\", \"id\": 1}"`);
//! * **tagged form** — otherwise, a map `{"qmp-exact": T}` where `T` is built recursively:
//!   `null`, booleans and `Int` as themselves; `UInt` as `{"u64": n}`; `Double` as
//!   `{"f64": "<16 hex digits of the IEEE bits>"}`; a string as a JSON string when it is valid
//!   UTF-8, else `{"bytes": "<hex>"}`; an array as an array of `T`; an object as
//!   `{"object": [[key, T], ...]}` in insertion order (keys as strings are).
//!
//! Deserialising accepts both forms (it needs a self-describing format such as JSON).

use serde::de::Error as _;
use serde_json::{json, Map};

use super::number::{float_value, write_g17};
use super::parse_value;
use super::utf8::is_exact_modified_utf8;
use super::value::{JsonString, Object, Value};
use super::writer::to_compact_insertion_order;

const TAG: &str = "qmp-exact";

/// True when the insertion-order compact text of `v` parses back to exactly `v`.
fn text_exact(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::Int(_) => true,
        Value::UInt(u) => *u > i64::MAX as u64,
        Value::Double(d) => {
            if !d.is_finite() {
                return false;
            }
            let mut t = Vec::new();
            write_g17(*d, &mut t);
            t.iter().any(|&c| c == b'.' || c == b'e') && float_value(&t).to_bits() == d.to_bits()
        }
        Value::String(s) => is_exact_modified_utf8(s.as_bytes()),
        Value::Array(a) => a.iter().all(text_exact),
        Value::Object(o) => {
            let keys_unique = if o.len() <= 16 {
                o.entries()
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| o.entries()[..i].iter().all(|(k2, _)| k2 != k))
            } else {
                let mut seen = std::collections::BTreeSet::new();
                o.keys().all(|k| seen.insert(k))
            };
            keys_unique
                && o.iter()
                    .all(|(k, v)| is_exact_modified_utf8(k.as_bytes()) && text_exact(v))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn tag_string(s: &JsonString) -> serde_json::Value {
    match s.as_str() {
        Some(t) => serde_json::Value::String(t.to_owned()),
        None => json!({ "bytes": hex(s.as_bytes()) }),
    }
}

fn tagged(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!({ "u64": u }),
        Value::Double(d) => json!({ "f64": format!("{:016x}", d.to_bits()) }),
        Value::String(s) => tag_string(s),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(tagged).collect()),
        Value::Object(o) => {
            let members: Vec<serde_json::Value> = o
                .iter()
                .map(|(k, v)| serde_json::Value::Array(vec![tag_string(k), tagged(v)]))
                .collect();
            json!({ "object": members })
        }
    }
}

fn untag_string(t: &serde_json::Value) -> Result<JsonString, String> {
    match t {
        serde_json::Value::String(s) => Ok(JsonString::from(s.as_str())),
        serde_json::Value::Object(m) => m
            .get("bytes")
            .and_then(|b| b.as_str())
            .and_then(unhex)
            .map(JsonString::from)
            .ok_or_else(|| format!("bad tagged string {t}")),
        _ => Err(format!("bad tagged string {t}")),
    }
}

fn single<'a>(m: &'a Map<String, serde_json::Value>, key: &str) -> Option<&'a serde_json::Value> {
    if m.len() == 1 {
        m.get(key)
    } else {
        None
    }
}

fn untagged(t: &serde_json::Value) -> Result<Value, String> {
    Ok(match t {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Int(n.as_i64().ok_or("tagged Int out of range")?),
        serde_json::Value::String(s) => Value::string(s.as_str()),
        serde_json::Value::Array(a) => {
            Value::Array(a.iter().map(untagged).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(m) => {
            if let Some(u) = single(m, "u64") {
                Value::UInt(u.as_u64().ok_or("bad tagged u64")?)
            } else if let Some(f) = single(m, "f64") {
                let bits = f
                    .as_str()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or("bad tagged f64")?;
                Value::Double(f64::from_bits(bits))
            } else if single(m, "bytes").is_some() {
                Value::String(untag_string(t)?)
            } else if let Some(members) = single(m, "object").and_then(|o| o.as_array()) {
                let mut obj = Object::with_capacity(members.len());
                for member in members {
                    let pair = member
                        .as_array()
                        .filter(|p| p.len() == 2)
                        .ok_or("bad member")?;
                    // Kept as given (even duplicates), so the value round-trips exactly.
                    obj.push_unchecked(untag_string(&pair[0])?, untagged(&pair[1])?);
                }
                Value::Object(obj)
            } else {
                return Err(format!("unknown tagged value {t}"));
            }
        }
    })
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if text_exact(self) {
            let text = to_compact_insertion_order(self);
            // The writer's output is ASCII.
            s.serialize_str(&String::from_utf8_lossy(&text))
        } else {
            json!({ TAG: tagged(self) }).serialize(s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(text) => parse_value(text.as_bytes())
                .ok_or_else(|| D::Error::custom(format!("not one QEMU JSON value: {text:?}"))),
            serde_json::Value::Object(m) => match single(&m, TAG) {
                Some(t) => untagged(t).map_err(D::Error::custom),
                None => Err(D::Error::custom(
                    "expected a string or {\"qmp-exact\": ...}",
                )),
            },
            other => Err(D::Error::custom(format!("unexpected {other}"))),
        }
    }
}

impl serde::Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Value::Object(self.clone()).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(o) => Ok(o),
            _ => Err(D::Error::custom("expected a JSON object")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: &Value) -> (String, Value) {
        let text = serde_json::to_string(v).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        (text, back)
    }

    #[test]
    fn text_form_for_plain_values() {
        let mut o = Object::new();
        o.insert("execute", Value::from("query-status"));
        o.insert("id", Value::Int(1));
        let v = Value::Object(o);
        let (text, back) = round(&v);
        assert_eq!(text, r#""{\"execute\": \"query-status\", \"id\": 1}""#);
        assert_eq!(back, v);
    }

    #[test]
    fn tagged_form_for_lossy_values() {
        let mut o = Object::new();
        o.insert("b", Value::Double(100.0));
        o.insert("a", Value::Double(f64::NAN));
        o.insert("c", Value::UInt(5));
        o.insert("d", Value::string(&b"x\xffy\x00"[..]));
        o.insert("e", Value::Double(-0.0));
        o.insert("f", Value::Double(f64::NEG_INFINITY));
        let v = Value::Object(o);
        let (text, back) = round(&v);
        assert!(text.starts_with(r#"{"qmp-exact":"#), "{text}");
        // Compare bitwise through the tagged form (NaN != NaN under PartialEq).
        assert_eq!(tagged(&back), tagged(&v));
        assert_eq!(
            back.as_object().unwrap().keys().collect::<Vec<_>>(),
            v.as_object().unwrap().keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn object_order_is_insertion_order() {
        let mut o = Object::new();
        for k in ["b", "a", "minor", "micro"] {
            o.insert(k, Value::Null);
        }
        let (_, back) = round(&Value::Object(o.clone()));
        assert_eq!(back, Value::Object(o));
    }
}
