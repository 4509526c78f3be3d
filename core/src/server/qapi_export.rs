//! `query-qmp-schema`'s answer: `SchemaInfo` entries as QEMU 7.2 builds them, for an imported
//! schema ([`QapiSchema::schema_info`]) and for hand-written command and event specs
//! ([`schema_info`]).
//!
//! QEMU's introspection data is a literal whose dicts `scripts/qapi/introspect.py` writes with
//! sorted keys; the wire order of a dict follows from that insertion order, so entries are built
//! with sorted keys here. Type names are masked as introspect.py masks them: builtins by name,
//! lists as `[element]`, every other type by a number given in the order of first use (each
//! command's argument type, then its return type, commands and events in order; then the types
//! those reach, breadth first, members before variants). Every integer type is `int`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::qapi::QapiSchema;
use super::schema::{ArgType, CommandSpec, EventSpec, FlatUnion, Member};
use crate::json::{Object, Value};

/// Integer builtins QEMU's introspection shows as `int`.
const SIZED_INTS: [&str; 9] = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "size",
];

/// `int` for a sized integer builtin, `[int]` for a list of one; anything else unchanged.
fn masked_type(name: &str) -> &str {
    let inner = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if SIZED_INTS.contains(&inner) {
        if inner.len() == name.len() {
            "int"
        } else {
            "[int]"
        }
    } else {
        name
    }
}

/// An entry the import's refinements added (a sized integer builtin, or a list of one).
fn is_refinement(e: &Json) -> bool {
    let name = e.get("name").and_then(Json::as_str).unwrap_or_default();
    masked_type(name) != name
}

/// A dict with its keys inserted in sorted order, as QEMU's literal has them.
fn dict(pairs: BTreeMap<&str, Value>) -> Value {
    let mut out = Object::with_capacity(pairs.len());
    for (k, v) in pairs {
        out.insert(k, v);
    }
    Value::Object(out)
}

/// One imported dict (an entry or a nested member), masked.
fn rebuild(v: &Json) -> Value {
    let Json::Object(o) = v else {
        return Value::from_serde(v);
    };
    let mut out = BTreeMap::new();
    for (k, val) in o {
        let val = match (k.as_str(), val) {
            ("x-qapi-name", _) => continue,
            ("type" | "element-type" | "arg-type" | "ret-type", Json::String(t)) => {
                Value::string(masked_type(t))
            }
            ("members" | "variants", Json::Array(items)) => {
                Value::Array(items.iter().map(rebuild).collect())
            }
            _ => Value::from_serde(val),
        };
        out.insert(k.as_str(), val);
    }
    dict(out)
}

impl QapiSchema {
    /// The schema as QEMU answers `query-qmp-schema`: every entry in file order, refinements
    /// masked away.
    pub fn schema_info(&self) -> Value {
        Value::Array(
            self.entries()
                .iter()
                .filter(|e| !is_refinement(e))
                .map(rebuild)
                .collect(),
        )
    }
}

/// The `query-qmp-schema` answer describing `commands` (their arguments and declared return
/// types) and `events`, in that order, then the types they use. Commands whose arguments come
/// from an imported schema (`qapi` set) are left out: answer with that schema instead.
/// Structurally equal types are one type (QEMU's are equal by name, which specs lack).
pub fn schema_info(commands: &[CommandSpec], events: &[EventSpec]) -> Value {
    let mut ex = Exporter::default();
    let mut out = Vec::new();
    let features = |deprecated: bool, unstable: bool, others: &[String]| {
        let f: Vec<Value> = [(deprecated, "deprecated"), (unstable, "unstable")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| Value::string(name))
            .chain(others.iter().map(|n| Value::string(n.as_str())))
            .collect();
        (!f.is_empty()).then_some(Value::Array(f))
    };
    for c in commands.iter().filter(|c| c.qapi.is_none()) {
        let args = match &c.union {
            Some(u) => ArgType::Union {
                base: c.arguments.clone(),
                union: u.clone(),
            },
            None => ArgType::Object(c.arguments.clone()),
        };
        let mut e = BTreeMap::new();
        let args = Key::arguments(&c.name, args);
        e.insert("arg-type", Value::string(ex.use_key(&args)));
        let ret = c.returns.clone().unwrap_or(ArgType::Object(Vec::new()));
        e.insert("ret-type", Value::string(ex.use_type(&ret)));
        if c.allow_oob {
            e.insert("allow-oob", Value::Bool(true));
        }
        e.insert("name", Value::string(c.name.as_str()));
        e.insert("meta-type", Value::string("command"));
        if let Some(f) = features(c.deprecated, c.unstable, &c.features) {
            e.insert("features", f);
        }
        out.push(dict(e));
    }
    for ev in events {
        let mut e = BTreeMap::new();
        let data = Key::arguments(&ev.name, ArgType::Object(ev.data.clone()));
        e.insert("arg-type", Value::string(ex.use_key(&data)));
        e.insert("name", Value::string(ev.name.as_str()));
        e.insert("meta-type", Value::string("event"));
        if let Some(f) = features(ev.deprecated, ev.unstable, &[]) {
            e.insert("features", f);
        }
        out.push(dict(e));
    }
    let mut at = 0;
    while at < ex.used.len() {
        let t = ex.used[at].clone();
        at += 1;
        out.push(ex.entry(&t));
    }
    Value::Array(out)
}

/// introspect.py's name map and work queue of used types.
#[derive(Default)]
struct Exporter {
    /// Masked names, in the order they were given.
    named: Vec<Key>,
    /// Types used so far, in first-use order (the queue of entries to write).
    used: Vec<Key>,
}

/// A type's identity: its structure, and for the implicit argument type of a command or an
/// event the entity's name (QAPI gives each its own `q_obj_NAME-arg` type; an empty one is
/// QAPI's shared `q_empty`).
#[derive(Clone, PartialEq)]
struct Key {
    owner: Option<String>,
    ty: ArgType,
}

impl Key {
    fn plain(ty: &ArgType) -> Key {
        Key {
            owner: None,
            ty: ty.clone(),
        }
    }

    /// The implicit argument type of entity `owner`.
    fn arguments(owner: &str, ty: ArgType) -> Key {
        let empty = matches!(&ty, ArgType::Object(m) if m.is_empty());
        Key {
            owner: (!empty).then(|| owner.to_owned()),
            ty,
        }
    }
}

fn builtin_name(t: &ArgType) -> Option<&'static str> {
    Some(match t {
        ArgType::String => "str",
        ArgType::Int | ArgType::UInt => "int",
        ArgType::Number => "number",
        ArgType::Bool => "bool",
        ArgType::Any => "any",
        _ => return None,
    })
}

impl Exporter {
    /// `_use_type` of a member's type.
    fn use_type(&mut self, t: &ArgType) -> String {
        let key = if matches!(t, ArgType::UInt) {
            Key::plain(&ArgType::Int)
        } else {
            Key::plain(t)
        };
        self.use_key(&key)
    }

    /// `_use_type`: queue the type if new, and its name on the wire.
    fn use_key(&mut self, key: &Key) -> String {
        if !self.used.contains(key) {
            self.used.push(key.clone());
        }
        if let Some(name) = builtin_name(&key.ty) {
            return name.to_owned();
        }
        if let ArgType::List(elem) = &key.ty {
            return format!("[{}]", self.use_type(elem));
        }
        self.name(key)
    }

    /// `_name`: the number of a type, given on first use.
    fn name(&mut self, key: &Key) -> String {
        let i = match self.named.iter().position(|n| n == key) {
            Some(i) => i,
            None => {
                self.named.push(key.clone());
                self.named.len() - 1
            }
        };
        i.to_string()
    }

    fn members(&mut self, members: &[Member]) -> Value {
        Value::Array(
            members
                .iter()
                .map(|m| {
                    let mut e = BTreeMap::new();
                    e.insert("name", Value::string(m.name.as_str()));
                    e.insert("type", Value::string(self.use_type(&m.ty)));
                    if m.optional {
                        e.insert("default", Value::Null);
                    }
                    if !m.features.is_empty() {
                        let f = m.features.iter().map(|f| Value::string(f.as_str()));
                        e.insert("features", Value::Array(f.collect()));
                    }
                    dict(e)
                })
                .collect(),
        )
    }

    /// The variants of a flat union: the declared ones, then (as QAPI adds them) one with the
    /// empty object for every other value of the discriminator's enum.
    fn variants(&mut self, base: &[Member], u: &FlatUnion) -> Value {
        let mut cases: Vec<(&str, ArgType)> = u
            .variants
            .iter()
            .map(|v| (v.value.as_str(), ArgType::Object(v.members.clone())))
            .collect();
        let tag = base.iter().find(|m| m.name == u.discriminator);
        if let Some(ArgType::Enum(values)) = tag.map(|m| &m.ty) {
            for v in values {
                if !cases.iter().any(|(c, _)| c == v) {
                    cases.push((v.as_str(), ArgType::Object(Vec::new())));
                }
            }
        }
        Value::Array(
            cases
                .into_iter()
                .map(|(case, ty)| {
                    let mut e = BTreeMap::new();
                    e.insert("case", Value::string(case));
                    e.insert("type", Value::string(self.use_type(&ty)));
                    dict(e)
                })
                .collect(),
        )
    }

    /// The `SchemaInfo` entry of a used type.
    fn entry(&mut self, key: &Key) -> Value {
        let mut e = BTreeMap::new();
        let meta = match &key.ty {
            ArgType::List(elem) => {
                let elem = self.use_type(elem);
                e.insert("name", Value::string(format!("[{elem}]")));
                e.insert("element-type", Value::string(elem));
                "array"
            }
            ArgType::Enum(values) => {
                let names = values.iter().map(|v| {
                    let mut m = BTreeMap::new();
                    m.insert("name", Value::string(v.as_str()));
                    dict(m)
                });
                e.insert("members", Value::Array(names.collect()));
                let values = values.iter().map(|v| Value::string(v.as_str()));
                e.insert("values", Value::Array(values.collect()));
                "enum"
            }
            ArgType::Object(members) => {
                e.insert("members", self.members(members));
                "object"
            }
            ArgType::Union { base, union } => {
                e.insert("members", self.members(base));
                e.insert("tag", Value::string(union.discriminator.as_str()));
                e.insert("variants", self.variants(base, union));
                "object"
            }
            ArgType::Alternate { branches, .. } => {
                let members = branches.iter().map(|b| {
                    let mut m = BTreeMap::new();
                    m.insert("type", Value::string(self.use_type(b)));
                    dict(m)
                });
                e.insert("members", Value::Array(members.collect()));
                "alternate"
            }
            builtin => {
                let json_type = match builtin {
                    ArgType::String => "string",
                    ArgType::Int | ArgType::UInt => "int",
                    ArgType::Number => "number",
                    ArgType::Bool => "boolean",
                    _ => "value",
                };
                e.insert("json-type", Value::string(json_type));
                e.insert(
                    "name",
                    Value::string(builtin_name(builtin).unwrap_or("any")),
                );
                "builtin"
            }
        };
        if !e.contains_key("name") {
            e.insert("name", Value::string(self.name(key)));
        }
        e.insert("meta-type", Value::string(meta));
        dict(e)
    }
}
