//! `query-qmp-schema` and typed handlers on a real socket: an imported schema served with
//! `qapi::serve_schema` (arguments checked against it, the schema answered, undeclared
//! handlers refused), typed handlers from `TypedCommands`, and the demo machine's own schema.

mod common;

use std::sync::Arc;

use common::*;
use qmp_core::server::qapi::QapiSchema;
use qmp_core::server::{CommandError, Empty};
use qmp_io::TypedCommands;

fn schema() -> Arc<QapiSchema> {
    let json = serde_json::json!([
        {"name": "query-status", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
        {"name": "set-level", "meta-type": "command", "arg-type": "1", "ret-type": "0"},
        {"name": "query-qmp-schema", "meta-type": "command", "arg-type": "0",
         "ret-type": "any"},
        {"name": "no-handler", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
        {"name": "0", "meta-type": "object", "members": []},
        {"name": "1", "meta-type": "object", "members": [
            {"name": "level", "type": "uint8"},
            {"name": "label", "type": "str", "default": null}]},
        {"name": "int", "meta-type": "builtin", "json-type": "int"},
        {"name": "str", "meta-type": "builtin", "json-type": "string"},
        {"name": "any", "meta-type": "builtin", "json-type": "value"},
        {"name": "uint8", "meta-type": "builtin", "json-type": "int"}
    ]);
    Arc::new(QapiSchema::from_json(&json).expect("imports"))
}

#[derive(serde::Deserialize)]
struct SetLevel {
    level: u8,
    label: Option<String>,
}

#[test]
fn an_imported_schema_checks_arguments_and_typed_handlers_get_them() {
    let s = schema();
    let spec = s.command_spec("set-level").expect("declared");
    let demo = start_with(&["unix:q.sock"], qmp_core::server::Dialect::Qemu72, |b| {
        let b = b.command_typed(spec, |a: SetLevel| -> Result<Vec<String>, CommandError> {
            match a.level {
                0 => Err(CommandError::generic("level 0 is off")),
                n => Ok(vec![a.label.unwrap_or_default(); usize::from(n)]),
            }
        });
        b.commands(|r| qmp_io::qapi::serve_schema(r, &s))
    });
    let mut c = Client::connect(&demo.path("q.sock"));
    c.negotiate(false);
    for (args, want) in [
        (r#"{"level": 2, "label": "x"}"#, r#"{"return": ["x", "x"]}"#),
        (
            r#"{"level": 0}"#,
            r#"{"error": {"class": "GenericError", "desc": "level 0 is off"}}"#,
        ),
        (
            r#"{"level": 256}"#,
            r#"{"error": {"class": "GenericError", "desc": "Parameter 'level' expects uint8_t"}}"#,
        ),
        (
            r#"{"level": 1, "lable": "x"}"#,
            r#"{"error": {"class": "GenericError", "desc": "Parameter 'lable' is unexpected"}}"#,
        ),
    ] {
        c.send(&format!(
            r#"{{"execute": "set-level", "arguments": {args}}}"#
        ));
        assert_eq!(c.read_msg(), format!("{want}\r\n"), "{args}");
    }
    // The demo's query-status keeps its handler, now checked against the imported type.
    c.send(r#"{"execute": "query-status", "arguments": {"x": 1}}"#);
    assert_eq!(
        c.read_msg(),
        "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'x' is unexpected\"}}\r\n"
    );
    c.send(r#"{"execute": "query-status"}"#);
    assert!(c
        .read_msg()
        .starts_with("{\"return\": {\"status\": \"running\""));
    // A declared command without a handler.
    c.send(r#"{"execute": "no-handler"}"#);
    let want = qmp_io::qapi::not_implemented_text("no-handler");
    assert_eq!(
        c.read_msg(),
        format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{want}\"}}}}\r\n")
    );
    // The schema comes back as imported, the refinement (uint8) masked as `int`.
    c.send(r#"{"execute": "query-qmp-schema"}"#);
    let reply: serde_json::Value = serde_json::from_str(&c.read_msg()).unwrap();
    let entries = reply["return"].as_array().unwrap();
    assert_eq!(entries.len(), 9);
    assert_eq!(entries[5]["members"][0]["type"], "int");
    assert_eq!(entries[1]["name"], "set-level");
}

#[test]
fn typed_handlers_without_arguments_and_with_context() {
    let demo = start_with(&["unix:q.sock"], qmp_core::server::Dialect::Qemu72, |b| {
        b.command_typed(
            qmp_core::server::CommandSpec::new("x-nothing"),
            |_: Empty| Ok::<_, CommandError>(Empty {}),
        )
        .command_typed_with_context(
            qmp_core::server::CommandSpec::new("x-where"),
            |ctx, _: Empty| Ok::<_, CommandError>(ctx.command().to_owned()),
        )
    });
    let mut c = Client::connect(&demo.path("q.sock"));
    c.negotiate(false);
    c.send(r#"{"execute": "x-nothing"}"#);
    assert_eq!(c.read_msg(), "{\"return\": {}}\r\n");
    c.send(r#"{"execute": "x-where"}"#);
    assert_eq!(c.read_msg(), "{\"return\": \"x-where\"}\r\n");
}
