//! A serde `Deserializer` over [`Value`]: a handler's checked arguments as any
//! `serde::Deserialize` type ([`from_value`], [`from_object`]).
//!
//! The mapping is serde_json's: objects are maps and structs (members by name, in any order;
//! a missing `Option` member is `None`), arrays are sequences and tuples, strings are strings,
//! unit enum variants and byte strings, an object with one member is an externally tagged enum
//! variant, `null` is `None` and `()`. The three number kinds reach the visitor as they are
//! (`i64`, `u64`, `f64`), so a `u8` field refuses 300 as serde_json would. Strings that are not
//! plain UTF-8 (a NUL stored as `C0 80`, or an embedder-made invalid sequence) are decoded
//! lossily for `str` fields; their exact bytes reach `deserialize_bytes`.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::value::{decode_modified_utf8_lossy, JsonString, Object, Value};

/// Why a value does not fit the requested type (serde's message, e.g.
/// `missing field `name``).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeError(pub String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

/// `T` from a value.
///
/// ```
/// use qmp_core::json::{from_value, parse_value};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// #[serde(rename_all = "kebab-case")]
/// struct Args { command_line: String, cpu_index: Option<u32> }
/// let v = parse_value(br#"{"command-line": "info status"}"#).unwrap();
/// let args: Args = from_value(&v).unwrap();
/// assert_eq!(args, Args { command_line: "info status".into(), cpu_index: None });
/// ```
pub fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, DeError> {
    T::deserialize(v)
}

/// `T` from an object (a request's `arguments`).
pub fn from_object<T: DeserializeOwned>(o: &Object) -> Result<T, DeError> {
    T::deserialize(ObjectDe(o))
}

fn string_of(s: &JsonString) -> Result<&str, String> {
    s.as_str()
        .ok_or_else(|| decode_modified_utf8_lossy(s.as_bytes()))
}

fn visit_str<'de, V: Visitor<'de>>(s: &'de JsonString, visitor: V) -> Result<V::Value, DeError> {
    match string_of(s) {
        Ok(text) => visitor.visit_borrowed_str(text),
        Err(decoded) => visitor.visit_string(decoded),
    }
}

impl<'de> de::Deserializer<'de> for &'de Value {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::UInt(u) => visitor.visit_u64(*u),
            Value::Double(d) => visitor.visit_f64(*d),
            Value::String(s) => visit_str(s, visitor),
            Value::Array(a) => visitor.visit_seq(Seq(a.iter())),
            Value::Object(o) => visitor.visit_map(Map {
                entries: o.entries().iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            Value::String(s) => visitor.visit_borrowed_bytes(s.as_bytes()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self {
            Value::String(s) => visitor.visit_enum(Enum {
                variant: s,
                content: None,
            }),
            Value::Object(o) if o.len() == 1 => {
                let (k, v) = &o.entries()[0];
                visitor.visit_enum(Enum {
                    variant: k,
                    content: Some(v),
                })
            }
            _ => Err(de::Error::invalid_type(
                unexpected(self),
                &"an enum variant",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A request's arguments as a deserializer (a map).
struct ObjectDe<'a>(&'a Object);

impl<'de> de::Deserializer<'de> for ObjectDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Map {
            entries: self.0.entries().iter(),
            value: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Int(i) => de::Unexpected::Signed(*i),
        Value::UInt(u) => de::Unexpected::Unsigned(*u),
        Value::Double(d) => de::Unexpected::Float(*d),
        Value::String(s) => de::Unexpected::Bytes(s.as_bytes()),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Seq<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.0.next().map(|v| seed.deserialize(v)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (JsonString, Value)>,
    value: Option<&'a Value>,
}

/// A member name as a deserializer (struct field identifiers, map keys).
struct Key<'a>(&'a JsonString);

impl<'de> de::Deserializer<'de> for Key<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visit_str(self.0, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(Key(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::custom("a value without its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum<'a> {
    variant: &'a JsonString,
    content: Option<&'a Value>,
}

impl<'de> EnumAccess<'de> for Enum<'de> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let v = seed.deserialize(Key(self.variant))?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for Enum<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.content {
            None | Some(Value::Null) => Ok(()),
            Some(v) => Err(de::Error::invalid_type(unexpected(v), &"a unit variant")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.content {
            Some(v) => seed.deserialize(v),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.content {
            Some(v) => de::Deserializer::deserialize_seq(v, visitor),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.content {
            Some(v) => de::Deserializer::deserialize_map(v, visitor),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a struct variant",
            )),
        }
    }
}

impl<'de> IntoDeserializer<'de, DeError> for &'de Value {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_value;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "kebab-case")]
    enum Kind {
        BlockNode,
        Chardev,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(tag = "type", rename_all = "kebab-case")]
    enum Instance {
        BlockNode {
            #[serde(rename = "node-name")]
            node_name: String,
        },
        Chardev {
            id: String,
        },
        Migration,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "kebab-case")]
    struct Args {
        name: String,
        level: u8,
        big: u64,
        neg: i64,
        ratio: f64,
        on: bool,
        kind: Kind,
        maybe: Option<String>,
        absent: Option<Vec<u16>>,
        instances: Vec<Instance>,
        raw: serde_json::Value,
        pair: (i32, String),
    }

    fn v(text: &str) -> Value {
        parse_value(text.as_bytes()).expect("json")
    }

    #[test]
    fn every_kind_of_member_deserialises() {
        let value = v(
            r#"{"name": "n", "level": 7, "big": 18446744073709551615, "neg": -3,
            "ratio": 1.5, "on": true, "kind": "block-node", "maybe": null,
            "instances": [{"type": "chardev", "id": "c"}, {"type": "migration"},
                          {"node-name": "x", "type": "block-node"}],
            "raw": {"a": [1, "b"]}, "pair": [1, "two"]}"#,
        );
        let args: Args = from_value(&value).unwrap();
        assert_eq!(
            args,
            Args {
                name: "n".into(),
                level: 7,
                big: u64::MAX,
                neg: -3,
                ratio: 1.5,
                on: true,
                kind: Kind::BlockNode,
                maybe: None,
                absent: None,
                instances: vec![
                    Instance::Chardev { id: "c".into() },
                    Instance::Migration,
                    Instance::BlockNode {
                        node_name: "x".into()
                    },
                ],
                raw: serde_json::json!({"a": [1, "b"]}),
                pair: (1, "two".into()),
            }
        );
        let Value::Object(o) = &value else { panic!() };
        assert_eq!(from_object::<Args>(o).unwrap(), args);
    }

    #[test]
    fn mismatches_are_serdes_errors() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Small {
            level: u8,
        }
        let e = from_value::<Small>(&v(r#"{"level": 300}"#)).unwrap_err();
        assert_eq!(e.0, "invalid value: integer `300`, expected u8");
        let e = from_value::<Small>(&v(r#"{}"#)).unwrap_err();
        assert_eq!(e.0, "missing field `level`");
        let e = from_value::<Kind>(&v(r#""nope""#)).unwrap_err();
        assert!(e.0.starts_with("unknown variant `nope`"), "{e}");
    }

    #[test]
    fn strings_that_are_not_plain_utf8_are_decoded() {
        // `\u0000` is stored as C0 80; a `String` field gets the NUL back, bytes the storage.
        let value = v(r#""a\u0000b""#);
        assert_eq!(from_value::<String>(&value).unwrap(), "a\0b");
        #[derive(Deserialize)]
        struct Bytes(#[serde(with = "serde_bytes_like")] Vec<u8>);
        mod serde_bytes_like {
            pub fn deserialize<'de, D: serde::Deserializer<'de>>(
                d: D,
            ) -> Result<Vec<u8>, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Vec<u8>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, b: &[u8]) -> Result<Vec<u8>, E> {
                        Ok(b.to_vec())
                    }
                }
                d.deserialize_bytes(V)
            }
        }
        assert_eq!(from_value::<Bytes>(&value).unwrap().0, b"a\xC0\x80b");
    }
}
