//! The value model of QEMU's QObject world, as far as the wire can see it.
//!
//! Why not `serde_json::Value`: QEMU keeps three number kinds apart (int64, uint64 above
//! `i64::MAX`, double) and echoes them differently (`%.17g`, `inf`); strings are byte strings in
//! *modified* UTF-8 (a NUL is stored as `C0 80`) and an embedder-made string may even hold invalid
//! UTF-8, which the writer turns into `\uFFFD`; objects keep insertion order because QEMU's output
//! order (hash buckets, newest first within a bucket) depends on it. `serde_json::Value` can hold
//! none of that faithfully, so it is converted at the edges ([`Value::from_serde`],
//! [`Value::to_serde`]).

use std::fmt;

/// A JSON string as QEMU stores it: bytes, normally (modified) UTF-8.
///
/// Parsed strings are always valid modified UTF-8; `\u0000` is stored as `C0 80`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct JsonString(pub Vec<u8>);

impl JsonString {
    /// The bytes as stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The string as `&str` when the bytes are plain UTF-8 (no `C0 80`, nothing invalid).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// A lossy text form for logs and error texts.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for JsonString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl From<&str> for JsonString {
    fn from(s: &str) -> Self {
        JsonString(s.as_bytes().to_vec())
    }
}

impl From<String> for JsonString {
    fn from(s: String) -> Self {
        JsonString(s.into_bytes())
    }
}

impl From<&[u8]> for JsonString {
    fn from(s: &[u8]) -> Self {
        JsonString(s.to_vec())
    }
}

impl From<Vec<u8>> for JsonString {
    fn from(s: Vec<u8>) -> Self {
        JsonString(s)
    }
}

impl PartialEq<str> for JsonString {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for JsonString {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

/// A JSON object in insertion order, keys unique.
///
/// Insertion order is what QEMU's writer needs to reproduce its hash-bucket member order
/// (see `writer`); lookups are linear, which is what small QMP objects want. Parsed objects
/// are checked for duplicate keys by the parser, which may use its own index for big objects.
#[derive(Clone, PartialEq, Default)]
pub struct Object {
    entries: Vec<(JsonString, Value)>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Object {
            entries: Vec::new(),
        }
    }

    /// An empty object with room for `n` members.
    pub fn with_capacity(n: usize) -> Self {
        Object {
            entries: Vec::with_capacity(n),
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Member by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.get_bytes(key.as_bytes())
    }

    /// Member by key given as bytes.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.0 == key)
            .map(|(_, v)| v)
    }

    /// Mutable member by key.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.0 == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// True when `key` is a member.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Insert or replace. A replaced member keeps its position, as in QEMU's `qdict_put`
    /// (which replaces the value in place).
    pub fn insert(&mut self, key: impl Into<JsonString>, value: Value) -> Option<Value> {
        let key = key.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        self.entries.push((key, value));
        None
    }

    /// Append without checking for an existing key. The caller guarantees uniqueness
    /// (the parser does, after its own duplicate check).
    pub fn push_unchecked(&mut self, key: JsonString, value: Value) {
        self.entries.push((key, value));
    }

    /// An object from members whose keys the caller guarantees to be unique (the parser
    /// checks them itself).
    pub(crate) fn from_unique_entries(entries: Vec<(JsonString, Value)>) -> Self {
        Object { entries }
    }

    /// Remove a member, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let pos = self
            .entries
            .iter()
            .position(|(k, _)| k.0 == key.as_bytes())?;
        Some(self.entries.remove(pos).1)
    }

    /// Members in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&JsonString, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Members in insertion order, as a slice.
    pub fn entries(&self) -> &[(JsonString, Value)] {
        &self.entries
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &JsonString> {
        self.entries.iter().map(|(k, _)| k)
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl IntoIterator for Object {
    type Item = (JsonString, Value);
    type IntoIter = std::vec::IntoIter<(JsonString, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(JsonString, Value)> for Object {
    fn from_iter<T: IntoIterator<Item = (JsonString, Value)>>(iter: T) -> Self {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

/// A JSON value as QEMU's QObject holds it.
#[derive(Clone, PartialEq, Default)]
pub enum Value {
    /// `null`
    #[default]
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// An integer above `i64::MAX` that fits `u64` (QEMU's `QNUM_U64`).
    UInt(u64),
    /// A double (QEMU's `QNUM_DOUBLE`), written with `%.17g`; may be infinite or NaN.
    Double(f64),
    /// A string (bytes, modified UTF-8 when parsed).
    String(JsonString),
    /// An array.
    Array(Vec<Value>),
    /// An object in insertion order.
    Object(Object),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}u"),
            Value::Double(d) => write!(f, "{d:?}"),
            Value::String(s) => fmt::Debug::fmt(s, f),
            Value::Array(a) => f.debug_list().entries(a).finish(),
            Value::Object(o) => fmt::Debug::fmt(o, f),
        }
    }
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<JsonString>) -> Value {
        Value::String(s.into())
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The string's bytes, if this is a string.
    pub fn as_json_string(&self) -> Option<&JsonString> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The string as `&str`, if this is a plain UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        self.as_json_string().and_then(JsonString::as_str)
    }

    /// The integer, if this is an `Int`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Convert from `serde_json::Value`. Numbers map to the kind QEMU's parser would give the
    /// same text (i64, then u64, then double); object order is kept as serde_json iterates it
    /// (sorted unless serde_json's `preserve_order` is on).
    pub fn from_serde(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::UInt(u)
                } else {
                    Value::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::string(s.as_str()),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from_serde).collect()),
            serde_json::Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (JsonString::from(k.as_str()), Value::from_serde(v)))
                    .collect(),
            ),
        }
    }

    /// Convert to `serde_json::Value`, for embedders that prefer it. Lossy where serde_json
    /// cannot follow: non-finite doubles become `null`; strings that are not plain UTF-8 are
    /// decoded with `C0 80` as NUL and invalid sequences as U+FFFD.
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::UInt(u) => serde_json::Value::from(*u),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(decode_modified_utf8_lossy(&s.0)),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_serde).collect()),
            Value::Object(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, v)| (decode_modified_utf8_lossy(&k.0), v.to_serde()))
                    .collect(),
            ),
        }
    }
}

/// Decode modified UTF-8 (`C0 80` is NUL) lossily into a Rust `String`.
pub fn decode_modified_utf8_lossy(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match rest.windows(2).position(|w| w == [0xC0, 0x80]) {
            Some(p) => {
                out.push_str(&String::from_utf8_lossy(&rest[..p]));
                out.push('\0');
                rest = &rest[p + 2..];
            }
            None => {
                out.push_str(&String::from_utf8_lossy(rest));
                break;
            }
        }
    }
    out
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::string(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::string(s)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}

// serde: see `exact.rs` (lossless text or tagged form).
