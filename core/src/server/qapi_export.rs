//! `query-qmp-schema`'s answer: `SchemaInfo` entries as QEMU 7.2 builds them.
//!
//! QEMU's introspection data is a literal whose dicts are filled in the order
//! `scripts/qapi/introspect.py` writes their keys (the type-specific keys, then `name`,
//! `meta-type`, `features`); the wire order of a dict follows from that insertion order, so
//! the entries are rebuilt here in it. The refinements an import accepts (sized integer
//! builtins, `x-qapi-name`, see [`super::qapi`]) are masked back as QEMU masks them: every
//! integer type is `int`.

use serde_json::Value as Json;

use super::qapi::QapiSchema;
use crate::json::{Object, Value};

/// Integer builtins QEMU's introspection shows as `int`.
const SIZED_INTS: [&str; 9] = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "size",
];

/// Keys in the order introspect.py inserts them, per kind of dict.
fn key_order(meta: &str) -> &'static [&'static str] {
    match meta {
        "builtin" => &["json-type", "name", "meta-type"],
        "enum" => &["members", "values", "name", "meta-type", "features"],
        "array" => &["element-type", "name", "meta-type"],
        "object" => &[
            "members",
            "tag",
            "variants",
            "name",
            "meta-type",
            "features",
        ],
        "alternate" => &["members", "name", "meta-type", "features"],
        "command" => &[
            "arg-type",
            "ret-type",
            "allow-oob",
            "name",
            "meta-type",
            "features",
        ],
        "event" => &["arg-type", "name", "meta-type", "features"],
        // Object members, enum members, variants, alternate branches.
        _ => &["name", "case", "type", "default", "features"],
    }
}

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

/// One dict (an entry or a nested member), keys in QEMU's insertion order, masked.
fn rebuild(v: &Json, meta: &str) -> Value {
    let Json::Object(o) = v else {
        return Value::from_serde(v);
    };
    let order = key_order(meta);
    let mut out = Object::with_capacity(o.len());
    let known = order.iter().filter_map(|k| o.get_key_value(*k));
    let others = o.iter().filter(|(k, _)| !order.contains(&k.as_str()));
    for (k, val) in known.chain(others) {
        let val = match (k.as_str(), val) {
            ("x-qapi-name", _) => continue,
            ("type" | "element-type" | "arg-type" | "ret-type", Json::String(t)) => {
                Value::string(masked_type(t))
            }
            ("members" | "variants", Json::Array(items)) => {
                Value::Array(items.iter().map(|m| rebuild(m, "")).collect())
            }
            _ => Value::from_serde(val),
        };
        out.insert(k.as_str(), val);
    }
    Value::Object(out)
}

impl QapiSchema {
    /// The schema as QEMU answers `query-qmp-schema`: every entry in file order, refinements
    /// masked away, each dict in QEMU's key order.
    pub fn schema_info(&self) -> Value {
        Value::Array(
            self.entries()
                .iter()
                .filter(|e| !is_refinement(e))
                .map(|e| {
                    let meta = e
                        .get("meta-type")
                        .and_then(Json::as_str)
                        .unwrap_or_default();
                    rebuild(e, meta)
                })
                .collect(),
        )
    }
}
