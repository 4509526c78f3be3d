//! Values already written: [`JsonText`], the compact QEMU text of one value, made straight from
//! a serde data type (a handler's typed result) or from a [`Value`]; and the re-layout of such
//! text for pretty monitors.
//!
//! A handler can return its result as a [`Value`] or, with [`JsonText::serialize`] (through
//! `CallResult::serialize`), as the serde data type it has anyway (a QAPI struct, say the `qapi`
//! crate's). The typed path writes the text in one pass and builds no value. Struct field
//! names, the same `&'static str`s on every call, are written once per thread and copied after
//! that ([`super::field_names`]), which removes the largest share of a typed result's cost.
//!
//! The text is exactly what the writer gives for the equivalent value: the same string escapes
//! (ASCII only, a NUL ends a string), the same numbers (`%.17g` doubles) and the same member
//! order (QEMU's hash buckets, see [`super::hash`]), so a reply built from it is the same bytes.
//! The serialiser maps serde's data model as serde_json does: structs and maps are objects
//! (members given in declaration order, which the bucket order then rearranges as QEMU's
//! `QDict` would), sequences and tuples arrays, `None` and unit `null`, unit variants strings,
//! other enum variants one-member objects, bytes arrays of numbers; map keys must be strings,
//! characters or integers (written as strings).

use std::fmt;

use serde::ser::{self, Serialize};

use super::field_names::write_field_name;
use super::hash::{bucket, bucket_of};
use super::number::{write_g17, write_i64, write_u64};
use super::parse_value;
use super::value::{JsonString, Value, INLINE_CAPACITY};
use super::writer::{to_compact, to_compact_insertion_order, write_json_string, write_string};

/// The compact QEMU text of one JSON value, as [`write_compact`](super::write_compact) writes
/// it. Only this module makes one, so the text is always what the writer would give for some
/// value: a reply built from it is byte for byte the reply built from that value.
///
/// ```
/// use qmp_core::json::{JsonText, Object, Value, to_compact};
///
/// #[derive(serde::Serialize)]
/// struct StatusInfo {
///     running: bool,
///     singlestep: bool,
///     status: &'static str,
/// }
///
/// let text = JsonText::serialize(&StatusInfo { running: true, singlestep: false, status: "running" })
///     .unwrap();
/// // QEMU's member order (hash buckets), not the declaration order.
/// assert_eq!(
///     text.as_bytes(),
///     br#"{"status": "running", "singlestep": false, "running": true}"#
/// );
///
/// // The same text as the equivalent value, built in declaration order.
/// let mut o = Object::new();
/// o.insert("running", Value::Bool(true));
/// o.insert("singlestep", Value::Bool(false));
/// o.insert("status", Value::string("running"));
/// assert_eq!(text.as_bytes(), to_compact(&Value::Object(o)));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Vec<u8>);

impl JsonText {
    /// Serialise `value` (a plain data type: a struct, a map, a sequence, a scalar) to QEMU's
    /// compact text.
    ///
    /// Not for [`Value`]: its serde form is the traces' lossless form (`exact`), not plain JSON;
    /// use [`JsonText::from_value`].
    pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<JsonText, TextError> {
        let mut ser = TextSerializer {
            out: Vec::with_capacity(INITIAL_CAPACITY),
            members: MemberStack::default(),
        };
        value.serialize(&mut ser)?;
        Ok(JsonText(ser.out))
    }

    /// The compact text of `value`.
    pub fn from_value(value: &Value) -> JsonText {
        JsonText(to_compact(value))
    }

    /// The text (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `text` if it is canonical: one value in the writer's compact layout, every object's
    /// members in ascending bucket order (the order within a bucket is not checked: it
    /// depends on the order members were added). Used to read traces back.
    fn from_canonical(text: &[u8]) -> Option<JsonText> {
        // Numbers are checked one by one: a parsed number does not say how it was written
        // (`-0`, `1e+100`, `nan`).
        let checked = numbers_as_zero(text)?;
        let v = parse_value(&checked)?;
        (to_compact_insertion_order(&v) == checked && buckets_ascend(&v))
            .then(|| JsonText(text.to_vec()))
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonText({})", String::from_utf8_lossy(&self.0))
    }
}

/// In traces: a string holding the text.
impl Serialize for JsonText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The writer's output is ASCII.
        s.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        JsonText::from_canonical(text.as_bytes()).ok_or_else(|| {
            <D::Error as serde::de::Error>::custom(format!(
                "not a value's compact QEMU text: {text:?}"
            ))
        })
    }
}

/// `text` with every number replaced by `0`, or `None` if a number is not one the writer
/// writes (`write_i64`, `write_u64`, `%.17g` doubles including `nan` and `inf`, which no
/// parser reads back and whose re-parse would not say how they were written).
fn numbers_as_zero(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b == b'"' {
            let start = i;
            i = string_end(text, i);
            out.extend_from_slice(&text[start..i]);
        } else if b == b'-'
            || b.is_ascii_digit()
            || text[i..].starts_with(b"nan")
            || text[i..].starts_with(b"inf")
        {
            let start = i;
            while i < text.len() && !matches!(text[i], b',' | b']' | b'}' | b' ') {
                i += 1;
            }
            if !number_as_written(&text[start..i]) {
                return None;
            }
            out.push(b'0');
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// `token` is how the writer writes some integer or double.
fn number_as_written(token: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(token) else {
        return false;
    };
    // `-0` is a double (an integer zero has no sign), so every reading is tried.
    let written = |write: &dyn Fn(&mut Vec<u8>)| {
        let mut again = Vec::with_capacity(token.len());
        write(&mut again);
        again == token
    };
    s.parse::<i64>()
        .is_ok_and(|i| written(&|o| write_i64(i, o)))
        || s.parse::<u64>()
            .is_ok_and(|u| written(&|o| write_u64(u, o)))
        || s.parse::<f64>()
            .is_ok_and(|d| written(&|o| write_g17(d, o)))
}

/// The index just past the string that starts (with its quote) at `i`: escapes are `\` and one
/// byte, or `\uXXXX`, whose hex digits are never a quote.
fn string_end(text: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < text.len() && text[i] != b'"' {
        i += if text[i] == b'\\' { 2 } else { 1 };
    }
    (i + 1).min(text.len())
}

/// Every object in `v` has its members in ascending bucket order.
fn buckets_ascend(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().all(buckets_ascend),
        Value::Object(o) => {
            o.entries()
                .windows(2)
                .all(|w| bucket(w[0].0.as_bytes()) <= bucket(w[1].0.as_bytes()))
                && o.iter().all(|(_, v)| buckets_ascend(v))
        }
        _ => true,
    }
}

/// Why a value could not be serialised (a map key that is not a string, an integer beyond 64
/// bits, or the value's own `Serialize` failing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextError(String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

impl ser::Error for TextError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TextError(msg.to_string())
    }
}

/// Output capacity reserved up front: a typical query result fits.
const INITIAL_CAPACITY: usize = 128;

/// Members of the objects being written, kept in place (no allocation) up to this many at once
/// across the nesting levels; more spill to the heap.
const INLINE_MEMBERS: usize = 16;

/// Objects of up to this many members are sorted on the stack.
const SMALL_OBJECT: usize = 16;

/// One written member of an object under construction: where its `"key": value` text lies in
/// the output, and its sort key (bucket ascending, then the newest member first).
#[derive(Clone, Copy, Default)]
struct Member {
    order: u64,
    start: usize,
    end: usize,
}

impl Member {
    /// The sort key: the bucket, then the ordinal inverted (newest first), which also says where
    /// the member is once sorted. Ordinals fit in 32 bits: an object of 2^32 members would be
    /// over 24 GB of text.
    fn order(bucket: usize, ordinal: usize) -> u64 {
        ((bucket as u64) << 32) | u64::from(u32::MAX - ordinal as u32)
    }
}

/// A stack of [`Member`]s shared by the nesting levels: an object's members are the top ones
/// while it is written.
struct MemberStack {
    inline: [Member; INLINE_MEMBERS],
    len: usize,
    spill: Vec<Member>,
}

impl Default for MemberStack {
    fn default() -> Self {
        MemberStack {
            inline: [Member::default(); INLINE_MEMBERS],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl MemberStack {
    fn push(&mut self, m: Member) {
        if self.len < INLINE_MEMBERS {
            self.inline[self.len] = m;
        } else {
            self.spill.push(m);
        }
        self.len += 1;
    }

    fn get(&self, i: usize) -> Member {
        if i < INLINE_MEMBERS {
            self.inline[i]
        } else {
            self.spill[i - INLINE_MEMBERS]
        }
    }

    fn truncate(&mut self, len: usize) {
        self.len = len;
        self.spill.truncate(len.saturating_sub(INLINE_MEMBERS));
    }
}

struct TextSerializer {
    out: Vec<u8>,
    members: MemberStack,
}

impl TextSerializer {
    fn begin_object(&mut self) -> Compound<'_> {
        self.begin(b'{', false)
    }

    fn begin_array(&mut self) -> Compound<'_> {
        self.begin(b'[', false)
    }

    /// An enum variant's array or object (`open`), inside the variant's one-member object
    /// `{"variant": ...}`, which the compound's end closes too.
    fn begin_variant_compound(&mut self, variant: &str, open: u8) -> Compound<'_> {
        self.begin_variant(variant);
        self.begin(open, true)
    }

    fn begin(&mut self, open: u8, in_variant: bool) -> Compound<'_> {
        self.out.push(open);
        Compound {
            base: self.members.len,
            start: self.out.len(),
            n: 0,
            pending: None,
            in_variant,
            ser: self,
        }
    }

    /// `{"variant": ` — an enum variant with data is a one-member object.
    fn begin_variant(&mut self, variant: &str) {
        self.out.push(b'{');
        write_string(variant.as_bytes(), &mut self.out);
        self.out.extend_from_slice(b": ");
    }
}

/// An array or object being written.
struct Compound<'a> {
    ser: &'a mut TextSerializer,
    /// The object's first member on the member stack.
    base: usize,
    /// Where the members' text starts (after the opening bracket).
    start: usize,
    /// Elements or members so far.
    n: usize,
    /// An object member whose key is written and value not yet: its start and bucket.
    pending: Option<(usize, usize)>,
    /// The compound is an enum variant's content: its end also closes `{"variant": ...}`.
    in_variant: bool,
}

impl<'a> Compound<'a> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TextError> {
        if self.n > 0 {
            self.ser.out.extend_from_slice(b", ");
        }
        self.n += 1;
        value.serialize(&mut *self.ser)
    }

    fn end_array(self) {
        self.ser.out.push(b']');
        if self.in_variant {
            self.ser.out.push(b'}');
        }
    }

    /// Write a map key: `"key": `.
    #[inline]
    fn key_bytes(&mut self, key: &[u8]) {
        let start = self.ser.out.len();
        let bucket = write_key(key, &mut self.ser.out);
        self.pending = Some((start, bucket));
    }

    /// Write a struct field's name: `"name": `, remembered per thread (see [`super::field_names`]).
    #[inline]
    fn field_name(&mut self, name: &'static str) {
        let start = self.ser.out.len();
        let bucket = write_field_name(name, &mut self.ser.out, write_key);
        self.pending = Some((start, bucket));
    }

    #[inline]
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TextError> {
        let Some((start, bucket)) = self.pending.take() else {
            return Err(TextError("a map value without its key".into()));
        };
        value.serialize(&mut *self.ser)?;
        self.ser.members.push(Member {
            order: Member::order(bucket, self.n),
            start,
            end: self.ser.out.len(),
        });
        self.n += 1;
        Ok(())
    }

    /// Close the object: its members, written one after another, are put in bucket order with
    /// the separators between them.
    fn end_object(self) {
        let Compound {
            ser,
            base,
            start,
            n,
            in_variant,
            ..
        } = self;
        if n >= 2 {
            let mut small = [0u64; SMALL_OBJECT];
            let mut large = Vec::new();
            let order: &mut [u64] = if n <= SMALL_OBJECT {
                &mut small[..n]
            } else {
                large.resize(n, 0);
                &mut large
            };
            for (i, slot) in order.iter_mut().enumerate() {
                *slot = ser.members.get(base + i).order;
            }
            order.sort_unstable();
            // The members in order, with their separators, after the text as written; then
            // moved down over it.
            let written = ser.out.len();
            ser.out.reserve(written - start + 2 * (n - 1));
            for (k, slot) in order.iter().enumerate() {
                // The low half of the sort key is the member's ordinal, inverted.
                let m = ser.members.get(base + (u32::MAX - *slot as u32) as usize);
                if k > 0 {
                    ser.out.extend_from_slice(b", ");
                }
                ser.out.extend_from_within(m.start..m.end);
            }
            ser.out.copy_within(written.., start);
            let len = ser.out.len() - (written - start);
            ser.out.truncate(len);
        }
        ser.members.truncate(base);
        ser.out.push(b'}');
        if in_variant {
            ser.out.push(b'}');
        }
    }
}

/// The narrower integers as `i64` and `u64`, in both serialisers.
macro_rules! widen_ints {
    () => {
        widen_ints!(serialize_i64: serialize_i8(i8), serialize_i16(i16), serialize_i32(i32));
        widen_ints!(serialize_u64: serialize_u8(u8), serialize_u16(u16), serialize_u32(u32));
    };
    ($wide:ident: $($method:ident($ty:ty)),*) => {$(
        fn $method(self, v: $ty) -> Result<(), TextError> {
            self.$wide(v.into())
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut TextSerializer {
    type Ok = ();
    type Error = TextError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), TextError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    widen_ints!();
    fn serialize_i64(self, v: i64) -> Result<(), TextError> {
        write_i64(v, &mut self.out);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), TextError> {
        write_u64(v, &mut self.out);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), TextError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), TextError> {
        write_g17(v, &mut self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), TextError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), TextError> {
        match short(v.as_bytes()) {
            Some(s) => write_json_string(&s, &mut self.out),
            None => write_string(v.as_bytes(), &mut self.out),
        }
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), TextError> {
        let mut seq = self.begin_array();
        for b in v {
            seq.element(b)?;
        }
        seq.end_array();
        Ok(())
    }
    fn serialize_none(self) -> Result<(), TextError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), TextError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), TextError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), TextError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), TextError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), TextError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), TextError> {
        self.begin_variant(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a>, TextError> {
        Ok(self.begin_array())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, TextError> {
        Ok(self.begin_array())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, TextError> {
        Ok(self.begin_array())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, TextError> {
        Ok(self.begin_variant_compound(variant, b'['))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a>, TextError> {
        Ok(self.begin_object())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a>, TextError> {
        Ok(self.begin_object())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, TextError> {
        Ok(self.begin_variant_compound(variant, b'{'))
    }
}

/// Sequences, tuples, tuple structs and tuple variants are all arrays (a variant's inside its
/// one-member object, which `end_array` closes).
macro_rules! array_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = TextError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TextError> {
                self.element(value)
            }
            fn end(self) -> Result<(), TextError> {
                self.end_array();
                Ok(())
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// Structs and struct variants are objects whose member names are `&'static str`s (see
/// [`super::field_names`]).
macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = TextError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), TextError> {
                self.field_name(key);
                self.value(value)
            }
            fn end(self) -> Result<(), TextError> {
                self.end_object();
                Ok(())
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = TextError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), TextError> {
        let mut text = KeyText(Vec::new());
        key.serialize(&mut text)?;
        self.key_bytes(&text.0);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), TextError> {
        self.value(value)
    }
    fn end(self) -> Result<(), TextError> {
        self.end_object();
        Ok(())
    }
}

/// Append `"key": ` to `out` and return the key's bucket.
#[inline]
fn write_key(key: &[u8], out: &mut Vec<u8>) -> usize {
    let bucket = match short(key) {
        Some(k) => {
            write_json_string(&k, out);
            bucket_of(&k)
        }
        None => {
            write_string(key, out);
            bucket(key)
        }
    };
    out.extend_from_slice(b": ");
    bucket
}

/// `s` as an inline [`JsonString`] when it fits one, so that it is written (and a key's bucket
/// computed) the writer's fast way, with fixed-size copies; longer strings go the general way.
#[inline(always)]
fn short(s: &[u8]) -> Option<JsonString> {
    (s.len() <= INLINE_CAPACITY).then(|| JsonString::from_bytes(s))
}

/// Scalar kinds a map key cannot be.
macro_rules! refuse_keys {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, _: $ty) -> Result<(), TextError> {
            Err(key_error())
        }
    )*};
}

/// A map key's text: strings and characters as they are, integers in decimal (as serde_json).
struct KeyText(Vec<u8>);

fn key_error() -> TextError {
    TextError("a map key must be a string, a character or an integer".into())
}

impl ser::Serializer for &mut KeyText {
    type Ok = ();
    type Error = TextError;
    type SerializeSeq = ser::Impossible<(), TextError>;
    type SerializeTuple = ser::Impossible<(), TextError>;
    type SerializeTupleStruct = ser::Impossible<(), TextError>;
    type SerializeTupleVariant = ser::Impossible<(), TextError>;
    type SerializeMap = ser::Impossible<(), TextError>;
    type SerializeStruct = ser::Impossible<(), TextError>;
    type SerializeStructVariant = ser::Impossible<(), TextError>;

    fn serialize_str(self, v: &str) -> Result<(), TextError> {
        self.0.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), TextError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    widen_ints!();
    fn serialize_i64(self, v: i64) -> Result<(), TextError> {
        write_i64(v, &mut self.0);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), TextError> {
        write_u64(v, &mut self.0);
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), TextError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), TextError> {
        value.serialize(self)
    }
    refuse_keys!(
        serialize_bool(bool),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_bytes(&[u8])
    );
    fn serialize_none(self) -> Result<(), TextError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), TextError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<(), TextError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), TextError> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), TextError> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, TextError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, TextError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, TextError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, TextError> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, TextError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, TextError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, TextError> {
        Err(key_error())
    }
}

/// Append compact `text` re-laid out as the pretty writer lays out the same value
/// ([`write_pretty`](super::write_pretty) with `newline` as the line end): compact and pretty
/// text differ only in the whitespace outside strings.
pub(crate) fn write_pretty_text(text: &[u8], newline: &[u8], out: &mut Vec<u8>) {
    let indent = |out: &mut Vec<u8>, depth: usize| {
        out.extend_from_slice(newline);
        out.resize(out.len() + 4 * depth, b' ');
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        match b {
            b'"' => {
                let start = i;
                i = string_end(text, i);
                out.extend_from_slice(&text[start..i]);
                continue;
            }
            b'{' | b'[' => {
                out.push(b);
                let close = if b == b'{' { b'}' } else { b']' };
                if text.get(i + 1) == Some(&close) {
                    // QEMU's empty container: the bracket on its own line all the same.
                    indent(out, depth);
                    out.push(close);
                    i += 1;
                } else {
                    depth += 1;
                    indent(out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                indent(out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b',');
                indent(out, depth);
                // The compact separator's space.
                if text.get(i + 1) == Some(&b' ') {
                    i += 1;
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;
    use crate::json::{write_pretty, JsonString, Object};

    /// A value as plain serde data (what a typed handler result looks like to the serialiser):
    /// objects as maps in insertion order.
    struct Plain<'a>(&'a Value);

    impl Serialize for Plain<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{SerializeMap, SerializeSeq};
            match self.0 {
                Value::Null => s.serialize_unit(),
                Value::Bool(b) => s.serialize_bool(*b),
                Value::Int(i) => s.serialize_i64(*i),
                Value::UInt(u) => s.serialize_u64(*u),
                Value::Double(d) => s.serialize_f64(*d),
                Value::String(t) => {
                    s.serialize_str(t.as_str().expect("valid UTF-8 in these tests"))
                }
                Value::Array(items) => {
                    let mut seq = s.serialize_seq(Some(items.len()))?;
                    for v in items {
                        seq.serialize_element(&Plain(v))?;
                    }
                    seq.end()
                }
                Value::Object(o) => {
                    let mut map = s.serialize_map(Some(o.len()))?;
                    for (k, v) in o.iter() {
                        map.serialize_entry(k.as_str().expect("valid UTF-8"), &Plain(v))?;
                    }
                    map.end()
                }
            }
        }
    }

    /// Objects as structs: member names as `&'static str`s through `SerializeStruct`, interned
    /// so that a name comes at the same address from case to case and the field-name memo is
    /// hit (`field_names`); other values as [`Plain`].
    struct Fields<'a>(&'a Value);

    fn interned(name: &str) -> &'static str {
        static NAMES: std::sync::Mutex<BTreeMap<String, &'static str>> =
            std::sync::Mutex::new(BTreeMap::new());
        let mut names = NAMES.lock().unwrap();
        if let Some(n) = names.get(name) {
            return n;
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(name.to_owned(), leaked);
        leaked
    }

    impl Serialize for Fields<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{SerializeSeq, SerializeStruct};
            match self.0 {
                Value::Array(items) => {
                    let mut seq = s.serialize_seq(Some(items.len()))?;
                    for v in items {
                        seq.serialize_element(&Fields(v))?;
                    }
                    seq.end()
                }
                Value::Object(o) => {
                    let mut st = s.serialize_struct("Fields", o.len())?;
                    for (k, v) in o.iter() {
                        st.serialize_field(interned(k.as_str().expect("valid UTF-8")), &Fields(v))?;
                    }
                    st.end()
                }
                v => Plain(v).serialize(s),
            }
        }
    }

    fn key() -> impl Strategy<Value = String> {
        // Short keys share buckets often; a few long or escaped ones too.
        prop_oneof![
            "[a-z]{1,3}",
            "[a-z-]{4,30}",
            Just("status".to_string()),
            Just("singlestep".to_string()),
            "[ -~\u{e9}\u{1F600}\n\t]{0,8}",
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (i64::MAX as u64..=u64::MAX).prop_map(Value::UInt),
            any::<f64>().prop_map(Value::Double),
            "[ -~\u{e9}\u{20AC}\u{1F600}\u{0}\u{7f}\n\"\\\\]{0,40}"
                .prop_map(|s| Value::string(s.as_str())),
        ];
        leaf.prop_recursive(4, 64, 24, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..24).prop_map(|members| {
                    let mut o = Object::new();
                    for (k, v) in members {
                        o.insert(JsonString::from(k.as_str()), v);
                    }
                    Value::Object(o)
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn serialised_text_is_the_writers_text(v in value()) {
            let text = JsonText::serialize(&Plain(&v)).unwrap();
            let expected = to_compact(&v);
            prop_assert_eq!(
                String::from_utf8_lossy(text.as_bytes()),
                String::from_utf8_lossy(&expected)
            );
        }

        #[test]
        fn struct_fields_give_the_writers_text_first_and_from_the_memo(v in value()) {
            let expected = to_compact(&v);
            for _ in 0..2 {
                let text = JsonText::serialize(&Fields(&v)).unwrap();
                prop_assert_eq!(
                    String::from_utf8_lossy(text.as_bytes()),
                    String::from_utf8_lossy(&expected)
                );
            }
        }

        #[test]
        fn pretty_relayout_is_the_pretty_writers_text(v in value()) {
            let mut relaid = Vec::new();
            write_pretty_text(JsonText::from_value(&v).as_bytes(), b"\n", &mut relaid);
            let mut pretty = Vec::new();
            write_pretty(&v, &mut pretty);
            prop_assert_eq!(String::from_utf8_lossy(&relaid), String::from_utf8_lossy(&pretty));
        }

        #[test]
        fn texts_come_back_from_traces(v in value()) {
            let text = JsonText::from_value(&v);
            let json = serde_json::to_string(&text).unwrap();
            let back: JsonText = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, text);
        }
    }

    #[derive(Serialize)]
    struct StatusInfo {
        running: bool,
        singlestep: bool,
        status: &'static str,
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(u8, i8),
        Struct { id: &'static str, b: f64 },
    }

    #[test]
    fn serde_data_model_maps_as_serde_json_does() {
        let t = |v: &dyn erased::Ser| String::from_utf8(v.text().as_bytes().to_vec()).unwrap();
        assert_eq!(
            t(&StatusInfo {
                running: false,
                singlestep: false,
                status: "paused"
            }),
            r#"{"status": "paused", "singlestep": false, "running": false}"#
        );
        // A name too long for the field-name memo, twice: written afresh each time.
        #[derive(Serialize)]
        struct Long {
            #[serde(rename = "a-field-name-longer-than-the-memo-keeps-for-sure")]
            long: u8,
            b: u8,
        }
        for _ in 0..2 {
            assert_eq!(
                t(&Long { long: 1, b: 2 }),
                r#"{"a-field-name-longer-than-the-memo-keeps-for-sure": 1, "b": 2}"#
            );
        }
        assert_eq!(t(&Shape::Unit), r#""Unit""#);
        assert_eq!(t(&Shape::Newtype(7)), r#"{"Newtype": 7}"#);
        assert_eq!(t(&Shape::Tuple(1, -1)), r#"{"Tuple": [1, -1]}"#);
        assert_eq!(
            t(&Shape::Struct { id: "x", b: 0.5 }),
            r#"{"Struct": {"b": 0.5, "id": "x"}}"#
        );
        assert_eq!(t(&Option::<u8>::None), "null");
        assert_eq!(t(&(1u8, "a\u{e9}")), r#"[1, "a\u00E9"]"#);
        assert_eq!(t(&serde_bytes_like()), "[0, 255]");
        let mut m = BTreeMap::new();
        m.insert(5u32, "five");
        m.insert(12u32, "twelve");
        let mut o = Object::new();
        o.insert("5", Value::string("five"));
        o.insert("12", Value::string("twelve"));
        assert_eq!(t(&m).as_bytes(), to_compact(&Value::Object(o)));
        assert_eq!(t(&Vec::<u8>::new()), "[]");
        assert_eq!(t(&BTreeMap::<String, u8>::new()), "{}");
    }

    /// Bytes through `serialize_bytes`.
    fn serde_bytes_like() -> impl Serialize {
        struct B;
        impl Serialize for B {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&[0, 255])
            }
        }
        B
    }

    #[test]
    fn map_keys_must_be_strings_or_integers() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1u8);
        let e = JsonText::serialize(&m).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a map key must be a string, a character or an integer"
        );
    }

    #[test]
    fn traces_refuse_text_the_writer_would_not_write() {
        for text in [
            r#"{"a":1}"#,
            r#"{"running": true, "status": "x"}"#,
            "1e2",
            r#""\u00e9""#,
            "[1,2]",
            "1 2",
        ] {
            let json = serde_json::to_string(text).unwrap();
            assert!(
                serde_json::from_str::<JsonText>(&json).is_err(),
                "{text} accepted"
            );
        }
        let ok = serde_json::to_string(r#"{"status": "x", "running": true}"#).unwrap();
        assert!(serde_json::from_str::<JsonText>(&ok).is_ok());
    }

    #[test]
    fn large_objects_reorder_through_the_heap() {
        // More members than the inline stack, and more text than the inline reorder buffer.
        let mut o = Object::new();
        for i in 0..100 {
            o.insert(
                format!("member-{i}").as_str(),
                Value::string("x".repeat(i).as_str()),
            );
        }
        let v = Value::Object(o);
        assert_eq!(
            JsonText::serialize(&Plain(&v)).unwrap().as_bytes(),
            to_compact(&v)
        );
    }

    /// `&dyn Serialize` for the table above.
    mod erased {
        use super::*;
        pub trait Ser {
            fn text(&self) -> JsonText;
        }
        impl<T: Serialize> Ser for T {
            fn text(&self) -> JsonText {
                JsonText::serialize(self).unwrap()
            }
        }
    }
}
