//! What qmpd's demo machine declares for `query-qmp-schema` beyond its argument schemas: the
//! QAPI return types of its commands, its special features, and the events it emits, all as
//! QEMU 7.2 declares them (`tests/compat/schema_export.py` compares the structure).

use qmp_core::server::{ArgType, EventSpec, FlatUnion, Member, Variant};

fn enum_of(values: &[&str]) -> ArgType {
    ArgType::Enum(values.iter().map(|v| (*v).to_owned()).collect())
}

/// QAPI `RunState`.
fn run_state() -> ArgType {
    enum_of(&[
        "debug",
        "inmigrate",
        "internal-error",
        "io-error",
        "paused",
        "postmigrate",
        "prelaunch",
        "finish-migrate",
        "restore-vm",
        "running",
        "save-vm",
        "shutdown",
        "suspended",
        "watchdog",
        "guest-panicked",
        "colo",
    ])
}

/// QAPI `ShutdownCause`.
fn shutdown_cause() -> ArgType {
    enum_of(&[
        "none",
        "host-error",
        "host-qmp-quit",
        "host-qmp-system-reset",
        "host-signal",
        "host-ui",
        "guest-shutdown",
        "guest-reset",
        "guest-panic",
        "subsystem-reset",
        "snapshot-load",
    ])
}

/// QAPI `YankInstance` (the demo's `yank` takes a list of it).
pub fn yank_instance() -> ArgType {
    let variant = |value: &str, members: Vec<Member>| Variant {
        value: value.into(),
        members,
    };
    ArgType::Union {
        base: vec![Member::required(
            "type",
            enum_of(&["block-node", "chardev", "migration"]),
        )],
        union: FlatUnion {
            discriminator: "type".into(),
            variants: vec![
                variant(
                    "block-node",
                    vec![Member::required("node-name", ArgType::String)],
                ),
                variant("chardev", vec![Member::required("id", ArgType::String)]),
                variant("migration", vec![]),
            ],
        },
    }
}

/// QAPI `SchemaInfo` (the result of `query-qmp-schema` is a list of it).
pub fn schema_info() -> ArgType {
    use ArgType::{Any, Bool, List, Object, String};
    let strs = || List(Box::new(String));
    let variant = |value: &str, members: Vec<Member>| Variant {
        value: value.into(),
        members,
    };
    let list_of = |members: Vec<Member>| List(Box::new(Object(members)));
    let req = Member::required;
    let opt = Member::optional;
    let meta = [
        "builtin",
        "enum",
        "array",
        "object",
        "alternate",
        "command",
        "event",
    ];
    let json_type = [
        "string", "number", "int", "boolean", "null", "object", "array", "value",
    ];
    ArgType::Union {
        base: vec![
            req("name", String),
            req("meta-type", enum_of(&meta)),
            opt("features", strs()),
        ],
        union: FlatUnion {
            discriminator: "meta-type".into(),
            variants: vec![
                variant("builtin", vec![req("json-type", enum_of(&json_type))]),
                variant(
                    "enum",
                    vec![
                        req(
                            "members",
                            list_of(vec![req("name", String), opt("features", strs())]),
                        ),
                        req("values", strs()).feature("deprecated"),
                    ],
                ),
                variant("array", vec![req("element-type", String)]),
                variant(
                    "object",
                    vec![
                        req(
                            "members",
                            list_of(vec![
                                req("name", String),
                                req("type", String),
                                opt("default", Any),
                                opt("features", strs()),
                            ]),
                        ),
                        opt("tag", String),
                        opt(
                            "variants",
                            list_of(vec![req("case", String), req("type", String)]),
                        ),
                    ],
                ),
                variant(
                    "alternate",
                    vec![req("members", list_of(vec![req("type", String)]))],
                ),
                variant(
                    "command",
                    vec![
                        req("arg-type", String),
                        req("ret-type", String),
                        opt("allow-oob", Bool),
                    ],
                ),
                variant("event", vec![req("arg-type", String)]),
            ],
        },
    }
}

/// The return type QEMU declares for a command of the demo machine, if any.
pub fn returns(command: &str) -> Option<ArgType> {
    use ArgType::{Bool, List, Object, String};
    Some(match command {
        "query-status" => Object(vec![
            Member::required("running", Bool),
            Member::required("singlestep", Bool),
            Member::required("status", run_state()),
        ]),
        "query-name" => Object(vec![Member::optional("name", String)]),
        "query-yank" => List(Box::new(yank_instance())),
        "human-monitor-command" => String,
        "query-qmp-schema" => List(Box::new(schema_info())),
        _ => return None,
    })
}

/// QAPI features of the demo's commands besides `deprecated` and `unstable`.
pub fn features(command: &str) -> Vec<std::string::String> {
    match command {
        "human-monitor-command" => vec!["savevm-monitor-nodes".into()],
        _ => Vec::new(),
    }
}

/// The events the demo machine emits by itself (`x-emit-event` can emit any other).
pub fn events() -> Vec<EventSpec> {
    vec![
        EventSpec::new("SHUTDOWN")
            .arg("guest", ArgType::Bool)
            .arg("reason", shutdown_cause()),
        EventSpec::new("POWERDOWN"),
        EventSpec::new("STOP"),
        EventSpec::new("RESUME"),
    ]
}
