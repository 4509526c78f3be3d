//! Argument checking against an imported QAPI schema ([`super::qapi`]), with the texts and the
//! order of QEMU 7.2's generated marshallers and its QObject input visitor.
//!
//! The walk is that of `args.rs` (members in schema order, a flat union's variant members after
//! its base, leftovers reported when a struct is complete) over the schema's type table, plus
//! what only imported schemas have: the sized integer types (`qapi-visit-core.c`'s
//! `visit_type_intN`/`uintN`: the int64/uint64 check with the full path, then the range with the
//! bare member name) and `null`. Recursion follows the value, so its depth is bounded by the
//! parser's nesting limit, whatever cycles the schema's types form.

use super::args::{
    check_enum, first_unvisited, full_name, invalid_type, text, visit_elements, visit_member_with,
    Desc,
};
use super::config::Dialect;
use super::qapi::{IntKind, QapiArgs, TypeDef, TypeId};
use crate::json::{Object, Value};

/// Check `args` (the request's `arguments`) against a command's imported argument type.
pub(crate) fn check_qapi_arguments(
    dialect: Dialect,
    spec: &QapiArgs,
    args: &Object,
) -> Result<(), Desc> {
    let mut path = Vec::new();
    Walk {
        types: &spec.schema.types,
        dialect,
    }
    .visit_struct(&mut path, spec.ty, args)
}

struct Walk<'s> {
    types: &'s [TypeDef],
    /// Only the bad-enum text differs between the dialects.
    dialect: Dialect,
}

impl Walk<'_> {
    fn ty(&self, id: TypeId) -> &TypeDef {
        &self.types[id as usize]
    }

    fn visit_struct(&self, path: &mut Vec<u8>, id: TypeId, obj: &Object) -> Result<(), Desc> {
        let TypeDef::Object { members, variants } = self.ty(id) else {
            // Import only lets object types be argument types or object branches.
            return Ok(());
        };
        for m in members {
            self.visit_member(path, &m.name, m.ty, m.optional, obj)?;
        }
        let mut variant: &[super::qapi::Field] = &[];
        if let Some((tag, cases)) = variants {
            // The tag is a member (an enum): it was checked above, so it is present and valid
            // unless optional and absent, when no variant applies.
            let tag = obj.get(&members[*tag].name).and_then(Value::as_str);
            if let Some((_, ty)) = cases.iter().find(|(c, _)| Some(c.as_str()) == tag) {
                if let TypeDef::Object { members: vm, .. } = self.ty(*ty) {
                    variant = vm;
                    for m in vm {
                        self.visit_member(path, &m.name, m.ty, m.optional, obj)?;
                    }
                }
            }
        }
        if obj.len() > members.len() + variant.len() || !self.all_known(obj, members, variant) {
            let visited: Vec<&[u8]> = members
                .iter()
                .chain(variant)
                .map(|m| m.name.as_bytes())
                .collect();
            if let Some(key) = first_unvisited(obj, &visited) {
                let name = full_name(path, key);
                return Err(text(&[b"Parameter '", &name, b"' is unexpected"]));
            }
        }
        Ok(())
    }

    /// Every key of `obj` is a member (the common case, checked without allocating).
    fn all_known(
        &self,
        obj: &Object,
        members: &[super::qapi::Field],
        variant: &[super::qapi::Field],
    ) -> bool {
        obj.keys().all(|k| {
            members
                .iter()
                .chain(variant)
                .any(|m| m.name.as_bytes() == k.as_bytes())
        })
    }

    fn visit_member(
        &self,
        path: &mut Vec<u8>,
        name: &str,
        ty: TypeId,
        optional: bool,
        obj: &Object,
    ) -> Result<(), Desc> {
        visit_member_with(path, name, optional, obj, |path, v| {
            self.visit_value(path, Some(name.as_bytes()), ty, v)
        })
    }

    /// Visit one value; `path` already names it, `name` is its member name (`None` for list
    /// elements, which QEMU's bare-name texts print as `null`).
    fn visit_value(
        &self,
        path: &mut Vec<u8>,
        name: Option<&[u8]>,
        id: TypeId,
        v: &Value,
    ) -> Result<(), Desc> {
        let bare = name.unwrap_or(b"null");
        match self.ty(id) {
            TypeDef::Any => Ok(()),
            TypeDef::Str => match v {
                Value::String(_) => Ok(()),
                _ => Err(invalid_type(path, "string")),
            },
            TypeDef::Bool => match v {
                Value::Bool(_) => Ok(()),
                _ => Err(invalid_type(path, "boolean")),
            },
            TypeDef::Null => match v {
                Value::Null => Ok(()),
                _ => Err(invalid_type(path, "null")),
            },
            TypeDef::Number => match v {
                Value::Int(_) | Value::UInt(_) | Value::Double(_) => Ok(()),
                _ => Err(invalid_type(path, "number")),
            },
            TypeDef::Int(kind) => check_int(path, bare, *kind, v),
            TypeDef::Enum(values) => check_enum(self.dialect, path, bare, values, v),
            TypeDef::Array(elem) => match v {
                Value::Array(items) => visit_elements(path, items, |path, item| {
                    self.visit_value(path, None, *elem, item)
                }),
                _ => Err(invalid_type(path, "array")),
            },
            TypeDef::Object { .. } => match v {
                Value::Object(o) => self.visit_struct(path, id, o),
                _ => Err(invalid_type(path, "object")),
            },
            TypeDef::Alternate {
                error_name,
                branches,
            } => match branches.iter().find(|b| self.branch_fits(**b, v)) {
                Some(b) => self.visit_value(path, name, *b, v),
                None => Err(text(&[
                    b"Invalid parameter type for '",
                    bare,
                    b"', expected: ",
                    error_name.as_bytes(),
                ])),
            },
        }
    }

    /// QEMU picks an alternate's branch by the value's QType alone.
    fn branch_fits(&self, b: TypeId, v: &Value) -> bool {
        matches!(
            (self.ty(b), v),
            (TypeDef::Str | TypeDef::Enum(_), Value::String(_))
                | (
                    TypeDef::Int(_) | TypeDef::Number,
                    Value::Int(_) | Value::UInt(_) | Value::Double(_)
                )
                | (TypeDef::Bool, Value::Bool(_))
                | (TypeDef::Null, Value::Null)
                | (TypeDef::Array(_), Value::Array(_))
                | (TypeDef::Object { .. }, Value::Object(_))
                | (TypeDef::Any, _)
        )
    }
}

/// `visit_type_int64`/`uint64` (`qobject-input-visitor.c`), then `visit_type_intN`/`uintN`'s
/// range check (`qapi-visit-core.c`), which names the member bare and the C type.
fn check_int(path: &[u8], bare: &[u8], kind: IntKind, v: &Value) -> Result<(), Desc> {
    let out_of_range = |c_type: &str| {
        Err(text(&[
            b"Parameter '",
            bare,
            b"' expects ",
            c_type.as_bytes(),
        ]))
    };
    match kind {
        IntKind::Int64 | IntKind::Signed(..) => {
            let Value::Int(i) = v else {
                return Err(invalid_type(path, "integer"));
            };
            match kind {
                IntKind::Signed(c_type, min, max) if *i < min || *i > max => out_of_range(c_type),
                _ => Ok(()),
            }
        }
        IntKind::UInt64 | IntKind::Unsigned(..) => {
            // A negative int64 is accepted as its two's complement, for compatibility.
            let u = match v {
                Value::UInt(u) => *u,
                Value::Int(i) => *i as u64,
                _ => return Err(text(&[b"Parameter '", path, b"' expects uint64"])),
            };
            match kind {
                IntKind::Unsigned(c_type, max) if u > max => out_of_range(c_type),
                _ => Ok(()),
            }
        }
    }
}
