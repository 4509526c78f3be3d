//! Argument checking against a command's schema, with the texts of QEMU's generated
//! marshallers and QObject input visitor (spec §4.5).
//!
//! The walk follows the visitor: members in schema order (missing / wrong type reported at the
//! member), the variant members of a flat union after its base, then leftover members
//! (`is unexpected`) once a struct is complete. Recursion depth is bounded by the schema the
//! embedder registered, never by the input.

use super::schema::{ArgType, FlatUnion, Member};
use crate::json::{Object, Value};

/// An error description (bytes: member names come from the client and may be any bytes).
pub(crate) type Desc = Vec<u8>;

/// Check `args` against a command's members (and flat union, if any).
pub(crate) fn check_arguments(
    members: &[Member],
    union: Option<&FlatUnion>,
    args: &Object,
) -> Result<(), Desc> {
    let mut path = Vec::new();
    visit_struct(&mut path, members, union, args)
}

fn full_name(path: &[u8], name: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(path.len() + name.len() + 1);
    if !path.is_empty() {
        s.extend_from_slice(path);
        s.push(b'.');
    }
    s.extend_from_slice(name);
    s
}

fn text(parts: &[&[u8]]) -> Desc {
    parts.concat()
}

fn invalid_type(path: &[u8], expected: &str) -> Desc {
    text(&[
        b"Invalid parameter type for '",
        path,
        b"', expected: ",
        expected.as_bytes(),
    ])
}

fn visit_struct(
    path: &mut Vec<u8>,
    members: &[Member],
    union: Option<&FlatUnion>,
    obj: &Object,
) -> Result<(), Desc> {
    for m in members {
        visit_member(path, m, obj)?;
    }
    let mut variant: &[Member] = &[];
    if let Some(u) = union {
        let tag = obj.get(&u.discriminator).and_then(Value::as_str);
        if let Some(v) = u.variants.iter().find(|v| Some(v.value.as_str()) == tag) {
            variant = &v.members;
            for m in variant {
                visit_member(path, m, obj)?;
            }
        }
    }
    // Leftovers: QEMU reports the first in GLib hash order; we report the first in QDict
    // bucket order (documented deviation when several are left over).
    for i in crate::json::bucket_order(obj) {
        let (key, _) = &obj.entries()[i];
        let known = members
            .iter()
            .chain(variant.iter())
            .any(|m| m.name.as_bytes() == key.as_bytes());
        if !known {
            let name = full_name(path, key.as_bytes());
            return Err(text(&[b"Parameter '", &name, b"' is unexpected"]));
        }
    }
    Ok(())
}

fn visit_member(path: &mut Vec<u8>, m: &Member, obj: &Object) -> Result<(), Desc> {
    match obj.get(&m.name) {
        None if m.optional => Ok(()),
        None => {
            let name = full_name(path, m.name.as_bytes());
            Err(text(&[b"Parameter '", &name, b"' is missing"]))
        }
        Some(v) => {
            let saved = path.len();
            if !path.is_empty() {
                path.push(b'.');
            }
            path.extend_from_slice(m.name.as_bytes());
            let r = visit_value(path, Some(m.name.as_bytes()), &m.ty, v);
            path.truncate(saved);
            r
        }
    }
}

/// Visit one value; `path` already names it, `name` is its member name (`None` for list
/// elements, which QEMU's enum error prints as `null`).
fn visit_value(
    path: &mut Vec<u8>,
    name: Option<&[u8]>,
    ty: &ArgType,
    v: &Value,
) -> Result<(), Desc> {
    match ty {
        ArgType::Any => Ok(()),
        ArgType::String => match v {
            Value::String(_) => Ok(()),
            _ => Err(invalid_type(path, "string")),
        },
        ArgType::Int => match v {
            Value::Int(_) => Ok(()),
            _ => Err(invalid_type(path, "integer")),
        },
        ArgType::UInt => match v {
            Value::Int(_) | Value::UInt(_) => Ok(()),
            _ => Err(text(&[b"Parameter '", path, b"' expects uint64"])),
        },
        ArgType::Number => match v {
            Value::Int(_) | Value::UInt(_) | Value::Double(_) => Ok(()),
            _ => Err(invalid_type(path, "number")),
        },
        ArgType::Bool => match v {
            Value::Bool(_) => Ok(()),
            _ => Err(invalid_type(path, "boolean")),
        },
        ArgType::Enum(values) => match v {
            Value::String(s) => {
                if values.iter().any(|e| e.as_bytes() == s.as_bytes()) {
                    Ok(())
                } else {
                    Err(text(&[
                        b"Parameter '",
                        name.unwrap_or(b"null"),
                        b"' does not accept value '",
                        s.as_bytes(),
                        b"'",
                    ]))
                }
            }
            _ => Err(invalid_type(path, "string")),
        },
        ArgType::List(elem) => match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let saved = path.len();
                    path.push(b'[');
                    path.extend_from_slice(i.to_string().as_bytes());
                    path.push(b']');
                    let r = visit_value(path, None, elem, item);
                    path.truncate(saved);
                    r?;
                }
                Ok(())
            }
            _ => Err(invalid_type(path, "array")),
        },
        ArgType::Object(members) => match v {
            Value::Object(o) => visit_struct(path, members, None, o),
            _ => Err(invalid_type(path, "object")),
        },
        ArgType::Union { base, union } => match v {
            Value::Object(o) => visit_struct(path, base, Some(union), o),
            _ => Err(invalid_type(path, "object")),
        },
        ArgType::Alternate {
            name: tname,
            branches,
        } => match branches.iter().find(|b| branch_fits(b, v)) {
            Some(b) => visit_value(path, name, b, v),
            None => Err(text(&[
                b"Invalid parameter type for '",
                name.unwrap_or(b"null"),
                b"', expected: ",
                tname.as_bytes(),
            ])),
        },
    }
}

/// QEMU picks an alternate's branch by the value's QType alone.
fn branch_fits(b: &ArgType, v: &Value) -> bool {
    matches!(
        (b, v),
        (ArgType::String | ArgType::Enum(_), Value::String(_))
            | (
                ArgType::Int | ArgType::UInt | ArgType::Number,
                Value::Int(_) | Value::UInt(_) | Value::Double(_)
            )
            | (ArgType::Bool, Value::Bool(_))
            | (ArgType::List(_), Value::Array(_))
            | (ArgType::Object(_) | ArgType::Union { .. }, Value::Object(_))
            | (ArgType::Any, _)
    )
}
