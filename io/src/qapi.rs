//! `query-qmp-schema` for a server built with [`QmpServerBuilder`].
//!
//! Two ways: [`serve_query_qmp_schema`] describes the registered commands (their argument
//! specs and declared return types) and the declared events; [`serve_schema`] serves an
//! imported QEMU schema (`qmpd --schema FILE`): every command it declares is registered with
//! argument checking against it, and `query-qmp-schema` answers with it. There, commands
//! already registered keep their handler and get the imported argument type; the core's
//! built-in commands keep the core's own checking; any other declared command answers a valid
//! call with [`not_implemented_text`] (an invalid call gets QEMU's argument error first).

use std::path::Path;
use std::sync::Arc;

use qmp_core::server::qapi::QapiSchema;
use qmp_core::server::{
    builtin_command_names, builtin_command_specs, schema_info, ArgType, CallResult, CommandSpec,
    ErrorClass, EventSpec,
};

use crate::server::QmpServerBuilder;

/// Read and import a `query-qmp-schema` reply (or its `return` list) from `path`.
pub fn load_schema(path: &Path) -> Result<Arc<QapiSchema>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    QapiSchema::from_json(&json)
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The error text of a valid call to a declared command without a handler.
pub fn not_implemented_text(command: &str) -> String {
    format!("Command '{command}' is declared by the schema but not implemented by this server")
}

/// Register `schema`'s commands on `builder` (see the module doc) and `query-qmp-schema`.
pub fn serve_schema(mut builder: QmpServerBuilder, schema: &Arc<QapiSchema>) -> QmpServerBuilder {
    let builtins = builtin_command_names();
    for command in schema.commands() {
        if builtins.contains(&command.name) {
            continue;
        }
        let Some(imported) = schema.command_spec(&command.name) else {
            continue;
        };
        // A command registered already keeps its options and return type.
        let mut spec = builder
            .specs()
            .iter()
            .find(|s| s.name == command.name)
            .cloned()
            .unwrap_or_else(|| imported.clone());
        spec.allow_oob = imported.allow_oob;
        spec.deprecated = imported.deprecated;
        spec.unstable = imported.unstable;
        spec.qapi = imported.qapi;
        builder = match builder.registry().handler(&command.name) {
            Some(handler) => {
                builder.command_with_context(spec, move |ctx, args| handler(ctx, args))
            }
            None if command.name == "query-qmp-schema" => {
                let answer = schema.schema_info();
                builder.command(spec, move |_| CallResult::Return(answer.clone()))
            }
            None => {
                let desc = not_implemented_text(&command.name);
                builder.command(spec, move |_| CallResult::Error {
                    class: ErrorClass::GenericError,
                    desc: desc.clone(),
                })
            }
        };
    }
    builder
}

/// Give registered commands their declared return types and extra QAPI features (for
/// [`serve_query_qmp_schema`]), keeping their handlers.
pub fn declare_returns(
    mut builder: QmpServerBuilder,
    returns: impl Fn(&str) -> Option<ArgType>,
    features: impl Fn(&str) -> Vec<String>,
) -> QmpServerBuilder {
    let specs: Vec<CommandSpec> = builder.specs().to_vec();
    for mut spec in specs {
        let Some(handler) = builder.registry().handler(&spec.name) else {
            continue;
        };
        spec.returns = returns(&spec.name).or(spec.returns);
        spec.features.extend(features(&spec.name));
        builder = builder.command_with_context(spec, move |ctx, args| handler(ctx, args));
    }
    builder
}

/// Register `spec` (normally `query-qmp-schema`) answering with the `SchemaInfo` list of the
/// core's built-in commands, every command registered so far, `spec` itself and `events`.
pub fn serve_query_qmp_schema(
    builder: QmpServerBuilder,
    spec: CommandSpec,
    events: &[EventSpec],
) -> QmpServerBuilder {
    let mut commands = builtin_command_specs();
    commands.extend(builder.specs().iter().cloned());
    commands.push(spec.clone());
    let answer = schema_info(&commands, events);
    builder.command(spec, move |_| CallResult::Return(answer.clone()))
}
