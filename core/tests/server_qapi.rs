//! An imported QAPI schema (`server::qapi`): argument checking with QEMU's texts and order,
//! the schema answered again, and specs that survive a trace. The texts were taken from QEMU
//! 7.2 (`tests/compat/schema_diff.py` compares every command of its schema with it).

use std::sync::Arc;

use qmp_core::json::{Object, Value};
use qmp_core::server::qapi::QapiSchema;
use qmp_core::server::*;

/// A schema with one of everything an argument type can hold, refinements included.
fn schema_json() -> serde_json::Value {
    serde_json::json!({"return": [
        {"name": "cmd", "meta-type": "command", "arg-type": "0", "ret-type": "9"},
        {"name": "oob-cmd", "meta-type": "command", "arg-type": "9", "ret-type": "9",
         "allow-oob": true, "features": ["unstable"]},
        {"name": "EV", "meta-type": "event", "arg-type": "9"},
        {"name": "0", "meta-type": "object", "members": [
            {"name": "s", "type": "1"},
            {"name": "u", "type": "3", "default": null},
            {"name": "alt", "type": "6", "default": null},
            {"name": "alt2", "type": "7", "default": null},
            {"name": "any", "type": "any", "default": null},
            {"name": "n", "type": "number", "default": null},
            {"name": "big", "type": "uint64", "default": null},
            {"name": "i", "type": "int", "default": null}]},
        {"name": "1", "meta-type": "object", "members": [
            {"name": "name", "type": "str"},
            {"name": "levels", "type": "[uint8]", "default": null},
            {"name": "nested", "type": "2", "default": null}]},
        {"name": "2", "meta-type": "object", "members": [
            {"name": "deep", "type": "bool"},
            {"name": "e", "type": "8", "default": null}]},
        {"name": "3", "meta-type": "object", "tag": "kind", "members": [
            {"name": "kind", "type": "8"},
            {"name": "common", "type": "int", "default": null}],
         "variants": [{"case": "a", "type": "4"}]},
        {"name": "4", "meta-type": "object", "members": [{"name": "x", "type": "int16"}]},
        {"name": "6", "meta-type": "alternate", "members": [{"type": "str"}, {"type": "2"}],
         "x-qapi-name": "StrOrThing"},
        {"name": "7", "meta-type": "alternate", "members": [{"type": "null"}, {"type": "int"}]},
        {"name": "8", "meta-type": "enum", "members": [{"name": "a"}, {"name": "b"}],
         "values": ["a", "b"]},
        {"name": "9", "meta-type": "object", "members": []},
        {"name": "[uint8]", "meta-type": "array", "element-type": "uint8"},
        {"name": "[int]", "meta-type": "array", "element-type": "int"},
        {"name": "str", "meta-type": "builtin", "json-type": "string"},
        {"name": "int", "meta-type": "builtin", "json-type": "int"},
        {"name": "bool", "meta-type": "builtin", "json-type": "boolean"},
        {"name": "null", "meta-type": "builtin", "json-type": "null"},
        {"name": "number", "meta-type": "builtin", "json-type": "number"},
        {"name": "any", "meta-type": "builtin", "json-type": "value"},
        {"name": "uint8", "meta-type": "builtin", "json-type": "int"},
        {"name": "int16", "meta-type": "builtin", "json-type": "int"},
        {"name": "uint64", "meta-type": "builtin", "json-type": "int"}
    ]})
}

fn server_with_schema() -> (Server, Arc<QapiSchema>) {
    let schema = Arc::new(QapiSchema::from_json(&schema_json()).expect("imports"));
    let mut server = Server::new(Config::default());
    for c in schema.commands() {
        let mut spec = CommandSpec::new(&c.name).qapi(schema.arguments(c));
        spec.allow_oob = c.allow_oob;
        server.register(spec).unwrap();
    }
    (server, schema)
}

/// The reply to `request` in command mode (calls answered with `{}`).
fn reply(server: &mut Server, request: &str) -> String {
    let m = MonitorId(1);
    let now = Instant(1);
    if !server.monitors().any(|x| x == m) {
        let options = MonitorOptions {
            oob_capable: true,
            pretty: false,
        };
        server
            .handle(
                now,
                Input::Open {
                    monitor: m,
                    options,
                },
            )
            .unwrap();
        let neg = br#"{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}"#.to_vec();
        drive(server, m, neg);
    }
    drive(server, m, request.as_bytes().to_vec())
}

fn drive(server: &mut Server, m: MonitorId, bytes: Vec<u8>) -> String {
    let now = Instant(1);
    let mut wire = Vec::new();
    server
        .handle(
            now,
            Input::Receive {
                monitor: m,
                bytes,
                fds: vec![],
            },
        )
        .unwrap();
    loop {
        while let Some(out) = server.poll_output() {
            match out {
                Output::Call(call) => {
                    let result = CallResult::Return(Value::Object(Object::new()));
                    server
                        .handle(
                            now,
                            Input::Complete {
                                call: call.id,
                                result,
                            },
                        )
                        .unwrap();
                }
                Output::Transmit(m) => {
                    let b = server.pending_output(m).to_vec();
                    wire.extend_from_slice(&b);
                    server
                        .handle(
                            now,
                            Input::Written {
                                monitor: m,
                                n: b.len(),
                            },
                        )
                        .unwrap();
                }
                _ => {}
            }
        }
        if !server.dispatcher_ready() {
            break;
        }
        server.handle(now, Input::NextInBand).unwrap();
    }
    String::from_utf8(wire).unwrap()
}

fn error(desc: &str) -> String {
    format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}\r\n")
}

#[test]
fn arguments_are_checked_with_qemus_texts_in_visit_order() {
    let (mut server, _) = server_with_schema();
    let ok = "{\"return\": {}}\r\n";
    let s = r#""s": {"name": "x"}"#;
    let cases: Vec<(String, String)> = vec![
        (r#"{}"#.into(), error("Parameter 's' is missing")),
        (format!(r#"{{{s}}}"#), ok.into()),
        (
            r#"{"s": 1}"#.into(),
            error("Invalid parameter type for 's', expected: object"),
        ),
        (
            r#"{"s": {}}"#.into(),
            error("Parameter 's.name' is missing"),
        ),
        (
            r#"{"s": {"name": 1}}"#.into(),
            error("Invalid parameter type for 's.name', expected: string"),
        ),
        // Nested two levels: the path is the full name; an enum names the bare member.
        (
            r#"{"s": {"name": "x", "nested": {"deep": 1}}}"#.into(),
            error("Invalid parameter type for 's.nested.deep', expected: boolean"),
        ),
        (
            r#"{"s": {"name": "x", "nested": {"deep": true, "e": "c"}}}"#.into(),
            error("Parameter 'e' does not accept value 'c'"),
        ),
        // The inner struct is checked for leftovers when it ends, before later members.
        (
            r#"{"s": {"name": "x", "nested": {"deep": true, "zz": 1}}, "n": "x"}"#.into(),
            error("Parameter 's.nested.zz' is unexpected"),
        ),
        // Sized integers: the uint64 check with the full path, the range with the bare name
        // (`null` for a list element) and the C type.
        (
            r#"{"s": {"name": "x", "levels": [1, 256]}}"#.into(),
            error("Parameter 'null' expects uint8_t"),
        ),
        (
            r#"{"s": {"name": "x", "levels": [-1]}}"#.into(),
            error("Parameter 'null' expects uint8_t"),
        ),
        (
            r#"{"s": {"name": "x", "levels": ["a"]}}"#.into(),
            error("Parameter 's.levels[0]' expects uint64"),
        ),
        (
            format!(r#"{{{s}, "big": -1, "i": 9223372036854775807}}"#),
            ok.into(),
        ),
        (
            format!(r#"{{{s}, "big": 18446744073709551616}}"#),
            error("Parameter 'big' expects uint64"),
        ),
        (
            format!(r#"{{{s}, "i": 9223372036854775808}}"#),
            error("Invalid parameter type for 'i', expected: integer"),
        ),
        (
            format!(r#"{{{s}, "i": 1.0}}"#),
            error("Invalid parameter type for 'i', expected: integer"),
        ),
        // A flat union: base members, then the variant's, then leftovers.
        (
            format!(r#"{{{s}, "u": {{"kind": "a"}}}}"#),
            error("Parameter 'u.x' is missing"),
        ),
        (
            format!(r#"{{{s}, "u": {{"kind": "a", "x": 32768}}}}"#),
            error("Parameter 'x' expects int16_t"),
        ),
        (
            format!(r#"{{{s}, "u": {{"kind": "a", "x": -32768, "common": "c"}}}}"#),
            error("Invalid parameter type for 'u.common', expected: integer"),
        ),
        (
            format!(r#"{{{s}, "u": {{"kind": "z", "x": 1}}}}"#),
            error("Parameter 'kind' does not accept value 'z'"),
        ),
        (
            format!(r#"{{{s}, "u": {{"kind": "b", "x": 1}}}}"#),
            error("Parameter 'u.x' is unexpected"),
        ),
        // Alternates: the branch by JSON kind; QAPI's type name when none fits.
        (
            format!(r#"{{{s}, "alt": 1}}"#),
            error("Invalid parameter type for 'alt', expected: StrOrThing"),
        ),
        (
            format!(r#"{{{s}, "alt": {{"deep": null}}}}"#),
            error("Invalid parameter type for 'alt.deep', expected: boolean"),
        ),
        (format!(r#"{{{s}, "alt": "str", "alt2": null}}"#), ok.into()),
        (
            format!(r#"{{{s}, "alt2": 1.5}}"#),
            error("Invalid parameter type for 'alt2', expected: integer"),
        ),
        (
            format!(r#"{{{s}, "alt2": "x"}}"#),
            error("Invalid parameter type for 'alt2', expected: 7"),
        ),
        (
            format!(r#"{{{s}, "any": [{{"z": null}}], "n": 1e300}}"#),
            ok.into(),
        ),
        (
            format!(r#"{{{s}, "n": true}}"#),
            error("Invalid parameter type for 'n', expected: number"),
        ),
        (
            format!(r#"{{{s}, "zz": 1}}"#),
            error("Parameter 'zz' is unexpected"),
        ),
    ];
    for (args, want) in cases {
        let req = format!(r#"{{"execute": "cmd", "arguments": {args}}}"#);
        assert_eq!(reply(&mut server, &req), want, "{args}");
    }
    // A command without arguments, and the command's options from the schema.
    assert_eq!(
        reply(
            &mut server,
            r#"{"execute": "oob-cmd", "arguments": {"a": 1}}"#
        ),
        error("Parameter 'a' is unexpected")
    );
    assert_eq!(
        reply(&mut server, r#"{"exec-oob": "oob-cmd", "id": 1}"#),
        "{\"return\": {}, \"id\": 1}\r\n"
    );
}

#[test]
fn the_schema_is_answered_as_qemu_wrote_it_with_refinements_masked() {
    let (_, schema) = server_with_schema();
    let mut out = Vec::new();
    qmp_core::json::write_compact(&schema.schema_info(), &mut out);
    let text = String::from_utf8(out).unwrap();
    // The sized integers are `int` again, their builtin and array entries are gone, and so is
    // the alternate's name.
    assert!(!text.contains("uint8") && !text.contains("int16") && !text.contains("uint64"));
    assert!(!text.contains("x-qapi-name"));
    assert_eq!(text.matches("\"[int]\"").count(), 2, "{text}");
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = back.as_array().unwrap();
    assert_eq!(entries.len(), schema.entries().len() - 4);
    assert_eq!(entries[0]["name"], "cmd");
    assert_eq!(entries[1]["allow-oob"], true);
    assert_eq!(entries[1]["features"], serde_json::json!(["unstable"]));
    // Importing the answer again gives the same commands (without the refinements).
    let again = QapiSchema::from_json(&back).unwrap();
    assert_eq!(again.commands(), schema.commands());
}

#[test]
fn specs_with_an_imported_type_survive_serialisation() {
    let (server, _) = server_with_schema();
    let specs: Vec<CommandSpec> = server.registered_commands().cloned().collect();
    let text = serde_json::to_string(&specs).unwrap();
    let back: Vec<CommandSpec> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, specs);
    // The copy checks as the original does.
    let mut copy = Server::new(Config::default());
    for s in back {
        copy.register(s).unwrap();
    }
    let req = r#"{"execute": "cmd", "arguments": {"s": {"name": "x", "levels": [300]}}}"#;
    assert_eq!(
        reply(&mut copy, req),
        error("Parameter 'null' expects uint8_t")
    );
}

#[test]
fn bad_schemas_are_refused_with_the_reason() {
    let bad = [
        (serde_json::json!(3), "neither a list nor a reply object"),
        (
            serde_json::json!([{"name": "c", "meta-type": "command", "arg-type": "x",
                                "ret-type": "x"}]),
            "unknown type 'x'",
        ),
        (
            serde_json::json!([{"name": "int", "meta-type": "builtin", "json-type": "int"},
                               {"name": "c", "meta-type": "command", "arg-type": "int",
                                "ret-type": "int"}]),
            "are not an object type",
        ),
        (
            serde_json::json!([{"name": "int7", "meta-type": "builtin", "json-type": "int"}]),
            "unknown integer builtin 'int7'",
        ),
        (
            serde_json::json!([{"name": "o", "meta-type": "object", "tag": "t",
                                "members": [], "variants": []}]),
            "tag 't' of o is not a member",
        ),
    ];
    for (json, want) in bad {
        let e = QapiSchema::from_json(&json).unwrap_err();
        assert!(e.to_string().contains(want), "{e} lacks {want}");
    }
}

#[test]
fn specs_are_described_with_names_masked_in_first_use_order() {
    let x = ArgType::Object(vec![Member::required(
        "x",
        ArgType::Enum(vec!["p".into(), "q".into()]),
    )]);
    let commands = [
        CommandSpec::new("a").returns(x.clone()),
        CommandSpec::new("b")
            .arg("n", ArgType::UInt)
            .opt("l", ArgType::List(Box::new(x.clone())))
            .allow_oob()
            .deprecated(),
        // Same arguments as `b`, but its own (implicit) argument type, as in QAPI.
        CommandSpec::new("c")
            .arg("n", ArgType::UInt)
            .opt("l", ArgType::List(Box::new(x))),
    ];
    let events = [
        EventSpec::new("E"),
        EventSpec {
            data: vec![Member::optional("s", ArgType::String).feature("deprecated")],
            ..EventSpec::new("F")
        },
    ];
    let got = schema_info(&commands, &events).to_serde();
    let want = serde_json::json!([
        {"name": "a", "meta-type": "command", "arg-type": "0", "ret-type": "1"},
        {"name": "b", "meta-type": "command", "arg-type": "2", "ret-type": "0",
         "allow-oob": true, "features": ["deprecated"]},
        {"name": "c", "meta-type": "command", "arg-type": "3", "ret-type": "0"},
        {"name": "E", "meta-type": "event", "arg-type": "0"},
        {"name": "F", "meta-type": "event", "arg-type": "4"},
        {"name": "0", "meta-type": "object", "members": []},
        {"name": "1", "meta-type": "object", "members": [{"name": "x", "type": "5"}]},
        {"name": "2", "meta-type": "object", "members": [
            {"name": "n", "type": "int"}, {"name": "l", "type": "[1]", "default": null}]},
        {"name": "3", "meta-type": "object", "members": [
            {"name": "n", "type": "int"}, {"name": "l", "type": "[1]", "default": null}]},
        {"name": "4", "meta-type": "object", "members": [
            {"name": "s", "type": "str", "default": null, "features": ["deprecated"]}]},
        {"name": "5", "meta-type": "enum", "members": [{"name": "p"}, {"name": "q"}],
         "values": ["p", "q"]},
        {"name": "int", "meta-type": "builtin", "json-type": "int"},
        {"name": "[1]", "meta-type": "array", "element-type": "1"},
        {"name": "str", "meta-type": "builtin", "json-type": "string"}
    ]);
    assert_eq!(got, want);
    // A flat union lists every value of its discriminator, the undeclared ones with the empty
    // object (here "1": "0" is `d`'s own argument type).
    let union = ArgType::Union {
        base: vec![Member::required(
            "t",
            ArgType::Enum(vec!["u".into(), "v".into()]),
        )],
        union: FlatUnion {
            discriminator: "t".into(),
            variants: vec![Variant {
                value: "v".into(),
                members: vec![Member::required("w", ArgType::Bool)],
            }],
        },
    };
    let got = schema_info(&[CommandSpec::new("d").arg("i", union)], &[]).to_serde();
    let d_union = &got.as_array().unwrap()[3];
    assert_eq!(
        d_union,
        &serde_json::json!({"name": "2", "meta-type": "object", "tag": "t",
            "members": [{"name": "t", "type": "3"}],
            "variants": [{"case": "v", "type": "4"}, {"case": "u", "type": "1"}]})
    );
}

/// The test schema's `cmd` arguments written by hand, for the equivalence property below
/// (sized integers have no hand-written form, so `levels` is `[uint64]` on both sides there).
fn hand_written_cmd() -> CommandSpec {
    use ArgType::*;
    let e = Enum(vec!["a".into(), "b".into()]);
    let thing = Object(vec![
        Member::required("deep", Bool),
        Member::optional("e", e.clone()),
    ]);
    let s = Object(vec![
        Member::required("name", String),
        Member::optional("levels", List(Box::new(UInt))),
        Member::optional("nested", thing.clone()),
    ]);
    let u = Union {
        base: vec![Member::required("kind", e), Member::optional("common", Int)],
        union: FlatUnion {
            discriminator: "kind".into(),
            variants: vec![Variant {
                value: "a".into(),
                members: vec![Member::required("x", Int)],
            }],
        },
    };
    CommandSpec::new("cmd")
        .arg("s", s)
        .opt("u", u)
        .opt(
            "alt",
            Alternate {
                name: "StrOrThing".into(),
                branches: vec![String, thing],
            },
        )
        .opt("any", Any)
        .opt("n", Number)
        .opt("big", UInt)
        .opt("i", Int)
}

fn imported_cmd() -> CommandSpec {
    let mut json = schema_json();
    // `levels` as uint64 and `x` as int, to match what a hand-written spec can say.
    let entries = json["return"].as_array_mut().unwrap();
    for e in entries.iter_mut() {
        if e["name"] == "1" {
            e["members"][1]["type"] = "[uint64]".into();
        }
        if e["name"] == "4" {
            e["members"][0]["type"] = "int".into();
        }
    }
    entries.push(serde_json::json!({"name": "[uint64]", "meta-type": "array",
                                    "element-type": "uint64"}));
    let schema = Arc::new(QapiSchema::from_json(&json).unwrap());
    schema.command_spec("cmd").unwrap()
}

mod equivalence {
    use super::*;
    use proptest::prelude::*;

    /// Values over the names and kinds the schema knows, nested a few levels.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            prop_oneof![Just(-1i64), Just(0), Just(300), Just(i64::MIN)].prop_map(Value::Int),
            Just(Value::UInt(u64::MAX)),
            Just(Value::Double(1.5)),
            prop_oneof![Just("a"), Just("b"), Just("z"), Just("x")].prop_map(Value::string),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..5).prop_map(|kv| {
                    let mut o = Object::new();
                    for (k, v) in kv {
                        o.insert(k, v);
                    }
                    Value::Object(o)
                }),
            ]
        })
    }

    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "s", "u", "alt", "any", "n", "big", "i", "name", "levels", "nested", "deep", "e",
            "kind", "common", "x", "zz",
        ])
    }

    fn arguments() -> impl Strategy<Value = Object> {
        // Mostly well-formed `s`, so that the walk goes past the first member.
        let s = prop_oneof![
            Just(Value::Object({
                let mut o = Object::new();
                o.insert("name", Value::string("n"));
                o
            })),
            value(),
        ];
        (s, prop::collection::vec((key(), value()), 0..5)).prop_map(|(s, rest)| {
            let mut o = Object::new();
            o.insert("s", s);
            for (k, v) in rest {
                o.insert(k, v);
            }
            o
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The imported checker and the hand-written one agree on every argument object, in
        /// both dialects.
        #[test]
        fn imported_and_hand_written_agree(args in arguments(), v212 in any::<bool>()) {
            let d = if v212 { Dialect::Qemu212 } else { Dialect::Qemu72 };
            let hand = hand_written_cmd();
            let imported = imported_cmd();
            prop_assert_eq!(hand.check_arguments(d, &args), imported.check_arguments(d, &args));
        }
    }
}
