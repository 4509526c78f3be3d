//! An imported QAPI schema: QEMU's `query-qmp-schema` reply (a list of `SchemaInfo`) turned into
//! a table of types that command arguments are checked against (`qapi_check.rs`), plus the
//! commands and events it declares.
//!
//! Invariants: every type id in the table indexes the table (dangling names are refused at
//! import), so checking never fails to resolve a type; the `SchemaInfo` entries are kept as they
//! were read, in file order, so the schema can be answered again and recorded in traces.
//!
//! # The import format
//!
//! Exactly what QEMU answers to `query-qmp-schema` (the reply object or its `return` list),
//! with two optional refinements that QEMU's introspection leaves out but its marshallers
//! enforce. A file without them checks everything QEMU checks except the ranges of the narrow
//! integer types and the type names in alternates' error texts:
//!
//! * Integer types: QEMU's introspection shows every integer type as `int`. An entry may name
//!   a sized QAPI builtin instead (`int8` ... `int64`, `uint8` ... `uint64`, `size`) when a
//!   builtin entry of that name with `"json-type": "int"` is in the list; the member is then
//!   range-checked as QEMU checks it. Exporting masks these back to `int`.
//! * An alternate may carry `"x-qapi-name"`: the QAPI type name QEMU prints when no branch fits
//!   (`Invalid parameter type for 'file', expected: BlockdevRef`). Without it the (masked) name
//!   is printed.
//!
//! `scripts/qmp-schema-dump` produces such a file from a running QEMU (it learns both
//! refinements by sending QEMU invalid calls, which never reach a handler).
//!
//! Not modelled: member features under a `-compat deprecated-input=reject` policy (QEMU then
//! refuses deprecated members; commands' `deprecated`/`unstable` features are honoured through
//! [`super::CommandSpec`]), and commands QEMU does not check with a generated marshaller
//! (`'gen': false`, e.g. `device_add`, whose unknown members are device properties): they are
//! checked like any other.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

/// Index of a type in [`QapiSchema`]'s table.
pub(crate) type TypeId = u32;

/// The sized integer types of QAPI (all shown as `int` by QEMU's introspection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntKind {
    /// `int`, `int64`
    Int64,
    /// `int8`, `int16`, `int32`: checked as int64, then the range (`expects int8_t`).
    Signed(&'static str, i64, i64),
    /// `uint64`, `size`: any integer (a negative one is accepted, as QEMU does).
    UInt64,
    /// `uint8`, `uint16`, `uint32`: checked as uint64, then the range (`expects uint8_t`).
    Unsigned(&'static str, u64),
}

impl IntKind {
    fn from_builtin(name: &str) -> Option<IntKind> {
        Some(match name {
            "int" | "int64" => IntKind::Int64,
            "int8" => IntKind::Signed("int8_t", i8::MIN.into(), i8::MAX.into()),
            "int16" => IntKind::Signed("int16_t", i16::MIN.into(), i16::MAX.into()),
            "int32" => IntKind::Signed("int32_t", i32::MIN.into(), i32::MAX.into()),
            "uint64" | "size" => IntKind::UInt64,
            "uint8" => IntKind::Unsigned("uint8_t", u8::MAX.into()),
            "uint16" => IntKind::Unsigned("uint16_t", u16::MAX.into()),
            "uint32" => IntKind::Unsigned("uint32_t", u32::MAX.into()),
            _ => return None,
        })
    }
}

/// One type of the table.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TypeDef {
    Str,
    Any,
    Bool,
    Null,
    Number,
    Int(IntKind),
    Enum(Vec<String>),
    Array(TypeId),
    Object {
        members: Vec<Field>,
        /// Flat union: the index of the tag among `members` and the cases.
        variants: Option<(usize, Vec<(String, TypeId)>)>,
    },
    Alternate {
        /// The name QEMU's error text prints.
        error_name: String,
        branches: Vec<TypeId>,
    },
}

/// A member of an object type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) ty: TypeId,
    pub(crate) optional: bool,
}

/// A command the schema declares.
#[derive(Clone, Debug, PartialEq)]
pub struct QapiCommand {
    /// The command name.
    pub name: String,
    /// `allow-oob`
    pub allow_oob: bool,
    /// Its features (`deprecated`, `unstable`, ...).
    pub features: Vec<String>,
    pub(crate) arg_type: TypeId,
}

/// Why a schema could not be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad QAPI schema: {}", self.0)
    }
}

impl std::error::Error for SchemaError {}

/// An imported `query-qmp-schema` reply. Shared (`Arc`) by the commands it declares.
#[derive(Debug, PartialEq)]
pub struct QapiSchema {
    pub(crate) types: Vec<TypeDef>,
    /// The `SchemaInfo` entries of the types, by type id.
    type_entries: Vec<Json>,
    by_name: BTreeMap<String, TypeId>,
    /// Every entry as read, in file order.
    entries: Vec<Json>,
    commands: Vec<QapiCommand>,
}

fn err<T>(what: impl Into<String>) -> Result<T, SchemaError> {
    Err(SchemaError(what.into()))
}

fn field<'a>(entry: &'a Json, key: &str) -> Result<&'a str, SchemaError> {
    match entry.get(key).and_then(Json::as_str) {
        Some(s) => Ok(s),
        None => err(format!("entry without string '{key}': {entry}")),
    }
}

fn list<'a>(entry: &'a Json, key: &str) -> Result<&'a [Json], SchemaError> {
    match entry.get(key).and_then(Json::as_array) {
        Some(a) => Ok(a),
        None => err(format!("entry without list '{key}': {entry}")),
    }
}

fn features(entry: &Json) -> Vec<String> {
    entry
        .get("features")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl QapiSchema {
    /// Import a `query-qmp-schema` reply: the whole reply object (`{"return": [...]}`) or the
    /// list. Entries of unknown meta-types are kept (and answered again) but not used.
    pub fn from_json(reply: &Json) -> Result<QapiSchema, SchemaError> {
        let list = match reply {
            Json::Array(a) => a.as_slice(),
            Json::Object(o) => match o.get("return").and_then(Json::as_array) {
                Some(a) => a.as_slice(),
                None => return err("an object without a 'return' list"),
            },
            _ => return err("neither a list nor a reply object"),
        };
        let mut by_name = BTreeMap::new();
        let mut type_entries = Vec::new();
        for e in list {
            let meta = field(e, "meta-type")?;
            if matches!(meta, "command" | "event") {
                continue;
            }
            let name = field(e, "name")?;
            let id = TypeId::try_from(type_entries.len())
                .map_err(|_| SchemaError("too many types".into()))?;
            if by_name.insert(name.to_owned(), id).is_some() {
                return err(format!("type '{name}' declared twice"));
            }
            type_entries.push(e.clone());
        }
        let resolve = |name: &str| -> Result<TypeId, SchemaError> {
            match by_name.get(name) {
                Some(&id) => Ok(id),
                None => err(format!("unknown type '{name}'")),
            }
        };
        let mut types = Vec::with_capacity(type_entries.len());
        for e in &type_entries {
            types.push(Self::type_def(e, &resolve)?);
        }
        let mut commands = Vec::new();
        for e in list {
            if field(e, "meta-type")? != "command" {
                continue;
            }
            let arg_type = resolve(field(e, "arg-type")?)?;
            if !matches!(types[arg_type as usize], TypeDef::Object { .. }) {
                return err(format!("arguments of {e} are not an object type"));
            }
            resolve(field(e, "ret-type")?)?;
            commands.push(QapiCommand {
                name: field(e, "name")?.to_owned(),
                allow_oob: e.get("allow-oob").and_then(Json::as_bool) == Some(true),
                features: features(e),
                arg_type,
            });
        }
        Ok(QapiSchema {
            types,
            type_entries,
            by_name,
            entries: list.to_vec(),
            commands,
        })
    }

    fn type_def(
        e: &Json,
        resolve: &dyn Fn(&str) -> Result<TypeId, SchemaError>,
    ) -> Result<TypeDef, SchemaError> {
        let name = field(e, "name")?;
        Ok(match field(e, "meta-type")? {
            "builtin" => match (field(e, "json-type")?, name) {
                ("string", _) => TypeDef::Str,
                ("value", _) => TypeDef::Any,
                ("boolean", _) => TypeDef::Bool,
                ("null", _) => TypeDef::Null,
                ("number", _) => TypeDef::Number,
                ("int", n) => match IntKind::from_builtin(n) {
                    Some(k) => TypeDef::Int(k),
                    None => return err(format!("unknown integer builtin '{n}'")),
                },
                (j, _) => return err(format!("unknown json-type '{j}'")),
            },
            "enum" => TypeDef::Enum(
                list(e, "values")?
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| SchemaError(format!("enum values of {name}")))?,
            ),
            "array" => TypeDef::Array(resolve(field(e, "element-type")?)?),
            "object" => {
                let mut members = Vec::new();
                for m in list(e, "members")? {
                    members.push(Field {
                        name: field(m, "name")?.to_owned(),
                        ty: resolve(field(m, "type")?)?,
                        // Introspection marks an optional member with `default` (null).
                        optional: m.get("default").is_some(),
                    });
                }
                let variants = match e.get("tag") {
                    None => None,
                    Some(tag) => {
                        let tag = tag.as_str().unwrap_or_default();
                        let Some(at) = members.iter().position(|m| m.name == tag) else {
                            return err(format!("tag '{tag}' of {name} is not a member"));
                        };
                        let mut cases = Vec::new();
                        for v in list(e, "variants")? {
                            cases.push((field(v, "case")?.to_owned(), resolve(field(v, "type")?)?));
                        }
                        Some((at, cases))
                    }
                };
                TypeDef::Object { members, variants }
            }
            "alternate" => TypeDef::Alternate {
                error_name: e
                    .get("x-qapi-name")
                    .and_then(Json::as_str)
                    .unwrap_or(name)
                    .to_owned(),
                branches: list(e, "members")?
                    .iter()
                    .map(|m| resolve(field(m, "type")?))
                    .collect::<Result<_, _>>()?,
            },
            other => return err(format!("unknown meta-type '{other}'")),
        })
    }

    /// The commands the schema declares, in its order.
    pub fn commands(&self) -> &[QapiCommand] {
        &self.commands
    }

    /// Every `SchemaInfo` entry as imported, in file order (refinements included).
    pub fn entries(&self) -> &[Json] {
        &self.entries
    }

    /// The arguments of `command`, ready for a [`super::CommandSpec`]'s `qapi` field.
    pub fn arguments(self: &Arc<Self>, command: &QapiCommand) -> QapiArgs {
        QapiArgs {
            schema: Arc::clone(self),
            ty: command.arg_type,
        }
    }

    /// A spec for the schema's command `name`: `allow-oob`, the `deprecated` and `unstable`
    /// features, and its arguments checked against the imported type.
    pub fn command_spec(self: &Arc<Self>, name: &str) -> Option<super::CommandSpec> {
        let c = self.commands.iter().find(|c| c.name == name)?;
        let mut spec = super::CommandSpec::new(name).qapi(self.arguments(c));
        spec.allow_oob = c.allow_oob;
        spec.deprecated = c.features.iter().any(|f| f == "deprecated");
        spec.unstable = c.features.iter().any(|f| f == "unstable");
        Some(spec)
    }

    /// The type named `name`, if the schema has it.
    pub(crate) fn type_id(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).copied()
    }

    /// The name of a type as the file spells it.
    pub(crate) fn type_name(&self, id: TypeId) -> &str {
        self.type_entries[id as usize]
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or_default()
    }

    /// The `SchemaInfo` entries of `root` and every type it reaches, in table order.
    pub(crate) fn closure(&self, roots: &[TypeId]) -> Vec<TypeId> {
        let mut seen = vec![false; self.types.len()];
        let mut stack: Vec<TypeId> = roots.to_vec();
        while let Some(t) = stack.pop() {
            if std::mem::replace(&mut seen[t as usize], true) {
                continue;
            }
            match &self.types[t as usize] {
                TypeDef::Array(e) => stack.push(*e),
                TypeDef::Object { members, variants } => {
                    stack.extend(members.iter().map(|m| m.ty));
                    if let Some((_, cases)) = variants {
                        stack.extend(cases.iter().map(|c| c.1));
                    }
                }
                TypeDef::Alternate { branches, .. } => stack.extend(branches),
                _ => {}
            }
        }
        (0..self.types.len() as TypeId)
            .filter(|&t| seen[t as usize])
            .collect()
    }

    /// The `SchemaInfo` entry of a type.
    pub(crate) fn type_entry(&self, id: TypeId) -> &Json {
        &self.type_entries[id as usize]
    }
}

/// A command's arguments described by an imported schema: its argument type in a shared
/// [`QapiSchema`]. Serialises (for traces) as the argument type's name and the `SchemaInfo`
/// entries of every type it reaches, which deserialise to an equivalent schema.
#[derive(Clone, Debug)]
pub struct QapiArgs {
    pub(crate) schema: Arc<QapiSchema>,
    pub(crate) ty: TypeId,
}

impl QapiArgs {
    /// The schema the argument type belongs to.
    pub fn schema(&self) -> &Arc<QapiSchema> {
        &self.schema
    }

    /// The name of the argument type (masked, as in the file).
    pub fn type_name(&self) -> &str {
        self.schema.type_name(self.ty)
    }

    fn reached_entries(&self) -> Vec<&Json> {
        self.schema
            .closure(&[self.ty])
            .into_iter()
            .map(|t| self.schema.type_entry(t))
            .collect()
    }
}

impl PartialEq for QapiArgs {
    fn eq(&self, other: &Self) -> bool {
        (Arc::ptr_eq(&self.schema, &other.schema) && self.ty == other.ty)
            || (self.type_name() == other.type_name()
                && self.reached_entries() == other.reached_entries())
    }
}

#[derive(Serialize, Deserialize)]
struct QapiArgsForm {
    #[serde(rename = "arg-type")]
    arg_type: String,
    types: Vec<Json>,
}

impl Serialize for QapiArgs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        QapiArgsForm {
            arg_type: self.type_name().to_owned(),
            types: self.reached_entries().into_iter().cloned().collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for QapiArgs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let form = QapiArgsForm::deserialize(d)?;
        let schema =
            QapiSchema::from_json(&Json::Array(form.types)).map_err(serde::de::Error::custom)?;
        let ty = schema
            .type_id(&form.arg_type)
            .ok_or_else(|| serde::de::Error::custom("arg-type not among the types"))?;
        Ok(QapiArgs {
            schema: Arc::new(schema),
            ty,
        })
    }
}
