//! Argument checking with an imported QAPI schema against the same command's hand-written
//! schema (issue 17: the imported one may cost at most twice as much): `yank` (a list of a
//! flat union), `human-monitor-command` (two scalars), and a call with an unexpected member.
//!
//! Run: `cargo bench -p qmp-core --bench qapi`.

use std::sync::Arc;

use criterion::{black_box, criterion_group, Criterion};
use qmp_core::json::{parse_value, Object, Value};
use qmp_core::server::qapi::QapiSchema;
use qmp_core::server::*;

/// QEMU 7.2's entries for the two commands (as `query-qmp-schema` masks them).
fn imported() -> Arc<QapiSchema> {
    let json = serde_json::json!([
        {"name": "yank", "meta-type": "command", "arg-type": "221", "ret-type": "0",
         "allow-oob": true},
        {"name": "human-monitor-command", "meta-type": "command", "arg-type": "226",
         "ret-type": "str"},
        {"name": "0", "meta-type": "object", "members": []},
        {"name": "221", "meta-type": "object", "members": [{"name": "instances", "type": "[222]"}]},
        {"name": "[222]", "meta-type": "array", "element-type": "222"},
        {"name": "222", "meta-type": "object", "tag": "type",
         "members": [{"name": "type", "type": "487"}],
         "variants": [{"case": "block-node", "type": "488"}, {"case": "chardev", "type": "489"},
                      {"case": "migration", "type": "0"}]},
        {"name": "487", "meta-type": "enum", "members": [{"name": "block-node"},
         {"name": "chardev"}, {"name": "migration"}],
         "values": ["block-node", "chardev", "migration"]},
        {"name": "488", "meta-type": "object", "members": [{"name": "node-name", "type": "str"}]},
        {"name": "489", "meta-type": "object", "members": [{"name": "id", "type": "str"}]},
        {"name": "226", "meta-type": "object", "members": [
            {"name": "command-line", "type": "str"},
            {"name": "cpu-index", "type": "int", "default": null}]},
        {"name": "str", "meta-type": "builtin", "json-type": "string"},
        {"name": "int", "meta-type": "builtin", "json-type": "int"}
    ]);
    Arc::new(QapiSchema::from_json(&json).expect("imports"))
}

fn hand_written(name: &str) -> CommandSpec {
    match name {
        "yank" => {
            let variant = |value: &str, members: Vec<Member>| Variant {
                value: value.into(),
                members,
            };
            let instance = ArgType::Union {
                base: vec![Member::required(
                    "type",
                    ArgType::Enum(vec![
                        "block-node".into(),
                        "chardev".into(),
                        "migration".into(),
                    ]),
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
            };
            CommandSpec::new("yank")
                .allow_oob()
                .arg("instances", ArgType::List(Box::new(instance)))
        }
        _ => CommandSpec::new(name)
            .arg("command-line", ArgType::String)
            .opt("cpu-index", ArgType::Int),
    }
}

fn args(text: &str) -> Object {
    match parse_value(text.as_bytes()) {
        Some(Value::Object(o)) => o,
        _ => panic!("not an object"),
    }
}

fn checking(c: &mut Criterion) {
    let schema = imported();
    let cases = [
        (
            "yank",
            "yank",
            r#"{"instances": [{"type": "chardev", "id": "compat_monitor0"},
                              {"type": "block-node", "node-name": "drive0"}]}"#,
        ),
        (
            "hmp",
            "human-monitor-command",
            r#"{"command-line": "info status", "cpu-index": 0}"#,
        ),
        (
            "unexpected",
            "human-monitor-command",
            r#"{"command-line": "info status", "cpu": 0}"#,
        ),
    ];
    let mut g = c.benchmark_group("check");
    for (label, command, text) in cases {
        let a = args(text);
        let hand = hand_written(command);
        let imp = schema.command_spec(command).expect("declared");
        // Both schemas give the same answer, or the comparison means nothing.
        assert_eq!(
            hand.check_arguments(Dialect::Qemu72, &a),
            imp.check_arguments(Dialect::Qemu72, &a),
            "{label}"
        );
        g.bench_function(format!("{label}/hand-written"), |b| {
            b.iter(|| black_box(&hand).check_arguments(Dialect::Qemu72, black_box(&a)))
        });
        g.bench_function(format!("{label}/imported"), |b| {
            b.iter(|| black_box(&imp).check_arguments(Dialect::Qemu72, black_box(&a)))
        });
    }
    g.finish();
}

criterion_group!(benches, checking);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
