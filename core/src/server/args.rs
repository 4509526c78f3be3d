//! Argument checking against a command's schema, with the texts of QEMU's generated
//! marshallers and QObject input visitor (spec §4.5).
//!
//! The walk follows the visitor: members in schema order (missing / wrong type reported at the
//! member), the variant members of a flat union after its base, then leftover members
//! (`is unexpected`) once a struct is complete. Recursion depth is bounded by the schema the
//! embedder registered, never by the input.
//!
//! The texts are 7.2's; the 2.12 dialect differs in one: a value outside an enum was
//! `Invalid parameter '<value>'` (`QERR_INVALID_PARAMETER` in 2.12's `input_type_enum`; 7.2
//! says `Parameter '<name>' does not accept value '<value>'`).

use super::config::Dialect;
use super::schema::{ArgType, FlatUnion, Member};
use crate::json::{Object, Value};

/// An error description (bytes: member names come from the client and may be any bytes).
pub(crate) type Desc = Vec<u8>;

/// Check `args` against a command's members (and flat union, if any).
pub(crate) fn check_arguments(
    d: Dialect,
    members: &[Member],
    union: Option<&FlatUnion>,
    args: &Object,
) -> Result<(), Desc> {
    // No arguments against a schema that requires none (most queries): nothing can be missing,
    // unexpected or mistyped, and no union tag can be present.
    if args.is_empty() && members.iter().all(|m| m.optional) {
        return Ok(());
    }
    let mut path = Vec::new();
    visit_struct(d, &mut path, members, union, args)
}

pub(crate) fn full_name(path: &[u8], name: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(path.len() + name.len() + 1);
    if !path.is_empty() {
        s.extend_from_slice(path);
        s.push(b'.');
    }
    s.extend_from_slice(name);
    s
}

pub(crate) fn text(parts: &[&[u8]]) -> Desc {
    parts.concat()
}

pub(crate) fn invalid_type(path: &[u8], expected: &str) -> Desc {
    text(&[
        b"Invalid parameter type for '",
        path,
        b"', expected: ",
        expected.as_bytes(),
    ])
}

/// Visit member `name` of an object: absent and optional is fine, absent and required is QEMU's
/// "is missing" text, present is `visit` with `path` extended by `.name` for the duration.
pub(crate) fn visit_member_with(
    path: &mut Vec<u8>,
    name: &str,
    optional: bool,
    obj: &Object,
    visit: impl FnOnce(&mut Vec<u8>, &Value) -> Result<(), Desc>,
) -> Result<(), Desc> {
    match obj.get(name) {
        None if optional => Ok(()),
        None => {
            let name = full_name(path, name.as_bytes());
            Err(text(&[b"Parameter '", &name, b"' is missing"]))
        }
        Some(v) => {
            let saved = path.len();
            if !path.is_empty() {
                path.push(b'.');
            }
            path.extend_from_slice(name.as_bytes());
            let r = visit(path, v);
            path.truncate(saved);
            r
        }
    }
}

/// Visit a list's elements in order, `path` extended by `[i]` for each; the first error wins.
pub(crate) fn visit_elements(
    path: &mut Vec<u8>,
    items: &[Value],
    mut visit: impl FnMut(&mut Vec<u8>, &Value) -> Result<(), Desc>,
) -> Result<(), Desc> {
    for (i, item) in items.iter().enumerate() {
        let saved = path.len();
        path.push(b'[');
        path.extend_from_slice(i.to_string().as_bytes());
        path.push(b']');
        let r = visit(path, item);
        path.truncate(saved);
        r?;
    }
    Ok(())
}

/// An enum value: a string naming one of `values`, else QEMU's text (7.2 names the member,
/// `null` for a list element; 2.12 names only the value).
pub(crate) fn check_enum(
    d: Dialect,
    path: &[u8],
    bare: &[u8],
    values: &[String],
    v: &Value,
) -> Result<(), Desc> {
    match v {
        Value::String(s) if values.iter().any(|e| e.as_bytes() == s.as_bytes()) => Ok(()),
        Value::String(s) if d == Dialect::Qemu212 => {
            Err(text(&[b"Invalid parameter '", s.as_bytes(), b"'"]))
        }
        Value::String(s) => Err(text(&[
            b"Parameter '",
            bare,
            b"' does not accept value '",
            s.as_bytes(),
            b"'",
        ])),
        _ => Err(invalid_type(path, "string")),
    }
}

fn visit_struct(
    d: Dialect,
    path: &mut Vec<u8>,
    members: &[Member],
    union: Option<&FlatUnion>,
    obj: &Object,
) -> Result<(), Desc> {
    for m in members {
        visit_member(d, path, m, obj)?;
    }
    let mut variant: &[Member] = &[];
    if let Some(u) = union {
        let tag = obj.get(&u.discriminator).and_then(Value::as_str);
        if let Some(v) = u.variants.iter().find(|v| Some(v.value.as_str()) == tag) {
            variant = &v.members;
            for m in variant {
                visit_member(d, path, m, obj)?;
            }
        }
    }
    // Leftovers: QEMU's input visitor keeps the members still unvisited in a GLib hash table
    // and reports the first one its iterator yields.
    let visited: Vec<&[u8]> = members
        .iter()
        .chain(variant.iter())
        .map(|m| m.name.as_bytes())
        .collect();
    if let Some(key) = first_unvisited(obj, &visited) {
        let name = full_name(path, key);
        return Err(text(&[b"Parameter '", &name, b"' is unexpected"]));
    }
    Ok(())
}

/// GLib's `prime_mod` table (`ghash.c`), indexed by shift.
const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];

/// `g_str_hash` (djb2 over signed chars), made "real" as `ghash.c` does (values 0 and 1 are
/// reserved for empty and deleted slots).
fn g_str_hash(key: &[u8]) -> u32 {
    let mut h: u32 = 5381;
    for &b in key {
        if b == 0 {
            break;
        }
        h = (h << 5).wrapping_add(h).wrapping_add(b as i8 as i32 as u32);
    }
    if h < 2 {
        2
    } else {
        h
    }
}

/// A model of a `GHashTable` used as a set: open addressing with quadratic probing from
/// `(hash * 11) % mod`, growth when the table is 15/16 full, shrinking below 1/4; iteration is
/// slot order. Resizes are modelled as re-insertion in slot order (exact while no resize
/// happens, i.e. for up to 7 members).
struct GSet {
    shift: u32,
    slots: Vec<Option<(u32, usize)>>,
    nnodes: usize,
}

impl GSet {
    fn new() -> GSet {
        GSet {
            shift: 3,
            slots: vec![None; 8],
            nnodes: 0,
        }
    }

    fn place(&mut self, hash: u32, item: usize) {
        let mask = self.slots.len() - 1;
        let mut i = (hash.wrapping_mul(11) % PRIME_MOD[self.shift as usize]) as usize;
        let mut step = 0;
        while self.slots[i].is_some() {
            step += 1;
            i = (i + step) & mask;
        }
        self.slots[i] = Some((hash, item));
    }

    fn resize(&mut self) {
        let want = (self.nnodes as f64 * 1.333) as usize;
        let mut shift = 0;
        let mut n = want;
        while n > 0 {
            n >>= 1;
            shift += 1;
        }
        self.shift = shift.clamp(3, 31);
        let old = std::mem::replace(&mut self.slots, vec![None; 1 << self.shift]);
        for (hash, item) in old.into_iter().flatten() {
            self.place(hash, item);
        }
    }

    fn insert(&mut self, hash: u32, item: usize) {
        self.place(hash, item);
        self.nnodes += 1;
        let n = self.nnodes;
        if self.slots.len() <= n + n / 16 {
            self.resize();
        }
    }

    fn remove(&mut self, item: usize) {
        if let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.is_some_and(|(_, i)| i == item))
        {
            *slot = None;
            self.nnodes -= 1;
            if self.slots.len() > self.nnodes * 4 && self.slots.len() > 8 {
                self.resize();
            }
        }
    }
}

/// The member QEMU's `qobject_input_check_struct` would name: members enter the set in QDict
/// order, visited ones leave in schema order, the first left in slot order is reported.
pub(crate) fn first_unvisited<'a>(obj: &'a Object, visited: &[&[u8]]) -> Option<&'a [u8]> {
    let entries = obj.entries();
    if entries
        .iter()
        .all(|(k, _)| visited.iter().any(|v| *v == k.as_bytes()))
    {
        return None;
    }
    let mut set = GSet::new();
    for i in crate::json::bucket_order(obj) {
        set.insert(g_str_hash(entries[i].0.as_bytes()), i);
    }
    for name in visited {
        if let Some(i) = entries.iter().position(|(k, _)| k.as_bytes() == *name) {
            set.remove(i);
        }
    }
    set.slots
        .iter()
        .flatten()
        .next()
        .map(|&(_, i)| entries[i].0.as_bytes())
}

fn visit_member(d: Dialect, path: &mut Vec<u8>, m: &Member, obj: &Object) -> Result<(), Desc> {
    visit_member_with(path, &m.name, m.optional, obj, |path, v| {
        visit_value(d, path, Some(m.name.as_bytes()), &m.ty, v)
    })
}

/// Visit one value; `path` already names it, `name` is its member name (`None` for list
/// elements, which QEMU's enum error prints as `null`).
fn visit_value(
    d: Dialect,
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
        ArgType::Enum(values) => check_enum(d, path, name.unwrap_or(b"null"), values, v),
        ArgType::List(elem) => match v {
            Value::Array(items) => visit_elements(path, items, |path, item| {
                visit_value(d, path, None, elem, item)
            }),
            _ => Err(invalid_type(path, "array")),
        },
        ArgType::Object(members) => match v {
            Value::Object(o) => visit_struct(d, path, members, None, o),
            _ => Err(invalid_type(path, "object")),
        },
        ArgType::Union { base, union } => match v {
            Value::Object(o) => visit_struct(d, path, base, Some(union), o),
            _ => Err(invalid_type(path, "object")),
        },
        ArgType::Alternate {
            name: tname,
            branches,
        } => match branches.iter().find(|b| branch_fits(b, v)) {
            Some(b) => visit_value(d, path, name, b, v),
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
