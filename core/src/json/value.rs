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

/// Strings of up to this many bytes are stored inside the [`JsonString`] itself, without a heap
/// allocation: QMP's keys, command names, enum values and most ids are that short, and a parsed
/// request is then one allocation per object instead of one per string as well.
pub const INLINE_CAPACITY: usize = 22;

/// A JSON string as QEMU stores it: bytes, normally (modified) UTF-8.
///
/// Parsed strings are always valid modified UTF-8; `\u0000` is stored as `C0 80`. Strings up to
/// [`INLINE_CAPACITY`] bytes live inline (the type is 24 bytes either way).
///
/// ```
/// use qmp_core::json::JsonString;
/// let s = JsonString::from("query-status");
/// assert_eq!(s.as_bytes(), b"query-status");
/// assert_eq!(s.heap_bytes(), 0);
/// let long = JsonString::from("/var/lib/libvirt/images/guest-disk-0.qcow2");
/// assert_eq!(long.heap_bytes(), long.len());
/// assert_eq!(long.into_bytes(), b"/var/lib/libvirt/images/guest-disk-0.qcow2".to_vec());
/// ```
#[derive(Clone)]
pub struct JsonString(Repr);

// The inline form costs no space: a string is as big as a `Vec<u8>`, a value 32 bytes.
const _: () = assert!(std::mem::size_of::<JsonString>() == 24);
const _: () = assert!(std::mem::size_of::<Value>() == 32);

#[derive(Clone)]
enum Repr {
    /// Short strings, stored in place.
    Inline(Inline),
    /// Longer strings, exactly sized.
    Heap(Box<[u8]>),
}

/// `bytes[..len]`; the bytes past `len` are zero (equality compares whole arrays).
///
/// Laid out for word access: the bytes start at offset 0 of an 8-aligned string, so building
/// one from scanned words, moving it and comparing it are whole-word loads and stores at the
/// same offsets (mixed-size accesses at odd offsets defeat the CPU's store forwarding). The
/// length's spare values are the niche that tells the variants apart, so no tag byte is needed
/// and the string stays 24 bytes.
#[derive(Clone)]
#[repr(C, align(8))]
struct Inline {
    bytes: [u8; INLINE_CAPACITY],
    len: Len,
}

/// A length `0..=INLINE_CAPACITY`, as a type whose other byte values are invalid (the niche).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[rustfmt::skip]
enum Len {
    L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16, L17, L18, L19, L20,
    L21, L22,
}

const _: () = assert!(Len::L22 as usize == INLINE_CAPACITY);

impl Len {
    /// `n.min(INLINE_CAPACITY)`.
    #[inline(always)]
    fn new(n: usize) -> Len {
        use Len::*;
        const ALL: [Len; INLINE_CAPACITY + 1] = [
            L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16, L17, L18,
            L19, L20, L21, L22,
        ];
        ALL[n.min(INLINE_CAPACITY)]
    }

    #[inline(always)]
    fn get(self) -> usize {
        self as usize
    }
}

impl JsonString {
    /// The bytes as stored.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(Inline { len, bytes }) => &bytes[..len.get()],
            Repr::Heap(b) => b,
        }
    }

    /// Number of bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True for the empty string.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The string as `&str` when the bytes are plain UTF-8 (no `C0 80`, nothing invalid).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    /// A lossy text form for logs and error texts.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    /// The bytes, moved out.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.0 {
            Repr::Inline(Inline { len, bytes }) => bytes[..len.get()].to_vec(),
            Repr::Heap(b) => b.into_vec(),
        }
    }

    /// The inline bytes (zero past `len()`), when the string is stored inline.
    #[inline(always)]
    pub(crate) fn inline_bytes(&self) -> Option<&[u8; INLINE_CAPACITY]> {
        match &self.0 {
            Repr::Inline(Inline { bytes, .. }) => Some(bytes),
            Repr::Heap(_) => None,
        }
    }

    /// Heap memory owned by this string (0 when stored inline).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Inline(_) => 0,
            Repr::Heap(b) => b.len(),
        }
    }

    /// A copy of `s`, inline when it fits.
    #[inline(always)]
    pub fn from_bytes(s: &[u8]) -> JsonString {
        if s.len() <= INLINE_CAPACITY {
            let mut bytes = [0; INLINE_CAPACITY];
            copy_short(&mut bytes, s);
            JsonString(Repr::Inline(Inline {
                len: Len::new(s.len()),
                bytes,
            }))
        } else {
            JsonString::on_heap(s)
        }
    }

    /// The string of the first `len` bytes (`len <= INLINE_CAPACITY`) of three little-endian
    /// words whose bytes from `len` on are zero: three stores, no length-dependent branch or
    /// copy (the parser's fast path has the words loaded already, from its scan).
    #[inline(always)]
    pub(crate) fn inline_from_words(words: [u64; 3], len: usize) -> JsonString {
        let mut bytes = [0; INLINE_CAPACITY];
        bytes[..8].copy_from_slice(&words[0].to_le_bytes());
        bytes[8..16].copy_from_slice(&words[1].to_le_bytes());
        bytes[16..].copy_from_slice(&words[2].to_le_bytes()[..INLINE_CAPACITY - 16]);
        JsonString(Repr::Inline(Inline {
            len: Len::new(len),
            bytes,
        }))
    }

    /// A 64-bit digest of the bytes: equal strings have equal fingerprints (the converse need
    /// not hold), for the parser fast path's duplicate-key test.
    #[inline(always)]
    pub(crate) fn fingerprint(&self) -> u64 {
        match &self.0 {
            Repr::Inline(Inline { len, bytes }) => {
                let word = |at: usize, n: usize| {
                    let mut w = [0; 8];
                    w[..n].copy_from_slice(&bytes[at..at + n]);
                    u64::from_le_bytes(w)
                };
                let words = [word(0, 8), word(8, 8), word(16, INLINE_CAPACITY - 16)];
                JsonString::fingerprint_words(words, len.get())
            }
            // Heap strings are longer than any inline one; their length alone tells them apart
            // from those (a shared fingerprint only costs a full comparison).
            Repr::Heap(b) => (b.len() as u64) ^ (1 << 63),
        }
    }

    /// [`JsonString::fingerprint`] of the inline string that [`JsonString::inline_from_words`]
    /// builds from the same arguments.
    #[inline(always)]
    pub(crate) fn fingerprint_words(words: [u64; 3], len: usize) -> u64 {
        words[0]
            ^ words[1].rotate_left(21)
            ^ words[2].rotate_left(42)
            ^ (len as u64).rotate_right(8)
    }

    #[inline(never)]
    fn on_heap(s: &[u8]) -> JsonString {
        JsonString(Repr::Heap(s.into()))
    }
}

/// `dst[..s.len()] = s` for `s.len() <= INLINE_CAPACITY` with fixed-size, overlapping copies:
/// a variable-length `copy_from_slice` is a `memcpy` call, which costs more than the copy of a
/// QMP key.
#[inline(always)]
fn copy_short(dst: &mut [u8; INLINE_CAPACITY], s: &[u8]) {
    let n = s.len();
    if n >= 8 {
        dst[..8].copy_from_slice(&s[..8]);
        if n > 16 {
            dst[8..16].copy_from_slice(&s[8..16]);
        }
        dst[n - 8..n].copy_from_slice(&s[n - 8..n]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&s[..4]);
        dst[n - 4..n].copy_from_slice(&s[n - 4..n]);
    } else {
        for (d, &b) in dst.iter_mut().zip(s) {
            *d = b;
        }
    }
}

/// The inline bytes as three words, for equality without a `memcmp` call.
#[inline(always)]
fn inline_words(bytes: &[u8; INLINE_CAPACITY]) -> (u64, u64, u64) {
    let word = |at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    // The last word overlaps the second (22 = 8 + 8 + 6).
    (word(0), word(8), word(INLINE_CAPACITY - 8))
}

impl Default for JsonString {
    fn default() -> Self {
        JsonString(Repr::Inline(Inline {
            len: Len::L0,
            bytes: [0; INLINE_CAPACITY],
        }))
    }
}

impl PartialEq for JsonString {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Fixed-size compares, no length-dependent call: the bytes past `len` are zero.
            (
                Repr::Inline(Inline { len: a, bytes: x }),
                Repr::Inline(Inline { len: b, bytes: y }),
            ) => a == b && inline_words(x) == inline_words(y),
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for JsonString {}

impl PartialOrd for JsonString {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for JsonString {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for JsonString {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl AsRef<[u8]> for JsonString {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::borrow::Borrow<[u8]> for JsonString {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for JsonString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl From<&str> for JsonString {
    fn from(s: &str) -> Self {
        JsonString::from_bytes(s.as_bytes())
    }
}

impl From<String> for JsonString {
    fn from(s: String) -> Self {
        JsonString::from(s.into_bytes())
    }
}

impl From<&[u8]> for JsonString {
    fn from(s: &[u8]) -> Self {
        JsonString::from_bytes(s)
    }
}

impl From<Vec<u8>> for JsonString {
    fn from(s: Vec<u8>) -> Self {
        if s.len() <= INLINE_CAPACITY {
            JsonString::from_bytes(&s)
        } else {
            JsonString(Repr::Heap(s.into_boxed_slice()))
        }
    }
}

impl PartialEq<str> for JsonString {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for JsonString {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
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
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, v)| v)
    }

    /// Mutable member by key.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.as_bytes() == key.as_bytes())
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
            .position(|(k, _)| k.as_bytes() == key.as_bytes())?;
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
            Value::String(s) => serde_json::Value::String(decode_modified_utf8_lossy(s.as_bytes())),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_serde).collect()),
            Value::Object(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, v)| (decode_modified_utf8_lossy(k.as_bytes()), v.to_serde()))
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
